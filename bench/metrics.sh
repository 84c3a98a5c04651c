#!/usr/bin/env bash
# What scraping /metrics costs: three cairn nodes on loopback, put with 16 clients and
# linearizable get with 64 on the leader, each row run without a scraper and with one that
# fetches /metrics from every node once a second (as a Prometheus server would), in one run on
# one cluster. Each row runs off, on, on, off, so that a steady drift (put throughput falls by
# several percent from one 10 s round to the next on this machine) falls equally on both sides.
# See bench/README.md.
#
#   bench/metrics.sh
#   BENCH_DURATION=30s bench/metrics.sh
#
# Environment: BENCH_DURATION (each measurement, default 10s), BENCH_WORK (data directories,
# default target/bench-metrics; a real disk, not tmpfs), CAIRN_BIN (default: build
# target/release/cairn), SCRAPE_EVERY (seconds between scrapes, default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WORK=${BENCH_WORK:-$ROOT/target/bench-metrics}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
OUT=$ROOT/bench/results/$STAMP-metrics.txt
ROWS=("put, 16 clients|put|16" "linearizable get, 64 clients|get|64")
ROUNDS=(off on on off)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in curl jq; do command -v "$tool" >/dev/null || die "needs $tool"; done

if [ -n "${CAIRN_BIN:-}" ]; then
  CAIRN=$CAIRN_BIN
else
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  CAIRN=$ROOT/target/release/cairn
fi
mkdir -p "$WORK" "$ROOT/bench/results"

# HTTP 7910, 7920, 7930; peers 7911, 7921, 7931.
cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}$i=127.0.0.1:79${i}1@127.0.0.1:79${i}0"; done
for i in 1 2 3; do
  rm -rf "$WORK/node$i"
  "$CAIRN" serve --id "$i" --http "127.0.0.1:79${i}0" --peer "127.0.0.1:79${i}1" --data "$WORK/node$i" \
    --initial-cluster "$cluster" --log warn >"$WORK/node$i.log" 2>&1 &
  PIDS+=($!)
done

leader() {
  local i
  for i in 1 2 3; do
    if curl -sf "http://127.0.0.1:79${i}0/v1/status" | jq -e '.role == "leader"' >/dev/null; then
      echo "127.0.0.1:79${i}0"
      return 0
    fi
  done
  return 1
}
deadline=$((SECONDS + 30))
until LEADER=$(leader); do
  [ $SECONDS -lt $deadline ] || die "timed out waiting for a leader"
  sleep 0.2
done

# Scrapes every node every $SCRAPE_EVERY seconds until killed; counts the scrapes in a file.
scrape_loop() {
  local i
  while true; do
    for i in 1 2 3; do
      curl -sf "http://127.0.0.1:79${i}0/metrics" >/dev/null && echo >>"$WORK/scrapes"
    done
    sleep "$SCRAPE_EVERY"
  done
}

"$CAIRN" bench put --endpoints "http://$LEADER" --clients 16 --duration 3s --json >/dev/null ||
  die "the warm-up writes failed"
: >"$WORK/scrapes"
index=0
for row in "${ROWS[@]}"; do
  index=$((index + 1))
  IFS='|' read -r name bench clients <<<"$row"
  round=0
  for scraping in "${ROUNDS[@]}"; do
    round=$((round + 1))
    scraper=""
    if [ "$scraping" = on ]; then
      scrape_loop &
      scraper=$!
    fi
    printf '== %s, scraper %s (%s)\n' "$name" "$scraping" "$DURATION" >&2
    "$CAIRN" bench "$bench" --endpoints "http://$LEADER" --clients "$clients" --duration "$DURATION" \
      --key-space 1 --key-size 8 --value-size 256 --json >"$WORK/$index-$round-$scraping.json" ||
      echo "  (some requests failed)" >&2
    if [ -n "$scraper" ]; then
      kill "$scraper"
      wait "$scraper" 2>/dev/null || true
    fi
    jq -r '"  \(.ops_per_s | floor) ops/s, p99 \(.latency.all.p99_ms) ms, failed \(.failed)"' \
      "$WORK/$index-$round-$scraping.json" >&2
    sleep 2
  done
done
scrape_bytes=$(curl -sf "http://$LEADER/metrics" | wc -c)
stop_all

{
  echo "# Scraping /metrics every ${SCRAPE_EVERY}s against not scraping, $STAMP, $DURATION per measurement,"
  echo "# 3 nodes on loopback, 256-byte values; $(wc -l <"$WORK/scrapes") scrapes in all (every node each round), $scrape_bytes bytes each"
  echo "| row | without ops/s (p99 ms) | with ops/s (p99 ms) | with against without |"
  echo "|---|---:|---:|---:|"
  index=0
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    jq -rn --arg name "${row%%|*}" \
      --slurpfile off1 "$WORK/$index-1-off.json" --slurpfile on1 "$WORK/$index-2-on.json" \
      --slurpfile on2 "$WORK/$index-3-on.json" --slurpfile off2 "$WORK/$index-4-off.json" \
      'def mean($a; $b; f): (($a[0] | f) + ($b[0] | f)) / 2;
       def cell($a; $b): "\(mean($a; $b; .ops_per_s) | floor) (\(mean($a; $b; .latency.all.p99_ms) * 100 | round / 100))";
       (mean($off1; $off2; .ops_per_s)) as $off | (mean($on1; $on2; .ops_per_s)) as $on |
       "| \($name) | \(cell($off1; $off2)) | \(cell($on1; $on2)) | \((($on - $off) / $off * 1000 | round) / 10)% |"'
  done
} | tee "$OUT"
