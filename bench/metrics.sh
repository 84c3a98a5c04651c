#!/usr/bin/env bash
# What scraping /metrics costs: three cairn nodes on loopback, put with 16 clients and
# linearizable get with 64 on the leader, each row run without a scraper and with one that
# fetches /metrics from every node once a second (as a Prometheus server would), in one run on
# one cluster; then the nodes' own CPU time per scrape, measured directly. See bench/README.md.
#
# Rounds run off, on, on, off, off, on, on, off, so that a steady drift falls equally on both
# sides; the warm-up writes until the watch history is full and a snapshot has been taken,
# because put throughput falls until then whether or not anyone scrapes.
#
#   bench/metrics.sh
#   BENCH_DURATION=30s bench/metrics.sh
#
# Environment: BENCH_DURATION (each measurement, default 10s), BENCH_WARMUP (writes before the
# first measurement, default 40s), BENCH_WORK (data directories, default target/bench-metrics; a
# real disk, not tmpfs), CAIRN_BIN (default: build target/release/cairn), SCRAPE_EVERY (seconds
# between scrapes, default 1), CPU_SCRAPES (scrapes of each node for the CPU measurement,
# default 1000).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WORK=${BENCH_WORK:-$ROOT/target/bench-metrics}
WARMUP=${BENCH_WARMUP:-40s}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
CPU_SCRAPES=${CPU_SCRAPES:-1000}
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
OUT=$ROOT/bench/results/$STAMP-metrics.txt
ROWS=("put, 16 clients|put|16" "linearizable get, 64 clients|get|64")
ROUNDS=(off on on off off on on off)

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
rm -f "$WORK"/*.json

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

# One curl process scrapes every node once every $SCRAPE_EVERY seconds (three transfers spread
# over the period, on kept-alive connections, as a Prometheus server does) until killed. A curl
# process per scrape would cost the loaded machine more CPU than the nodes spend answering.
for _ in $(seq 3600); do
  for i in 1 2 3; do printf 'url = "http://127.0.0.1:79%s0/metrics"\noutput = "/dev/null"\n' "$i"; done
done >"$WORK/scrape.conf"

printf '== warm-up: put, 16 clients (%s)\n' "$WARMUP" >&2
"$CAIRN" bench put --endpoints "http://$LEADER" --clients 16 --duration "$WARMUP" --key-space 1 --key-size 8 \
  --value-size 256 --json >/dev/null ||
  die "the warm-up writes failed"
index=0
for row in "${ROWS[@]}"; do
  index=$((index + 1))
  IFS='|' read -r name bench clients <<<"$row"
  round=0
  for scraping in "${ROUNDS[@]}"; do
    round=$((round + 1))
    scraper=""
    if [ "$scraping" = on ]; then
      curl -s --config "$WORK/scrape.conf" --rate "$((180 / SCRAPE_EVERY))/m" &
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
# Scrapes answered in the rounds, by the nodes' own count (which a scrape reports before it counts itself).
scrapes=0
for i in 1 2 3; do
  answered=$(curl -sf "http://127.0.0.1:79${i}0/metrics" |
    awk '/^cairn_http_requests_total\{route="\/metrics",method="GET",code="200"\}/ { print $2 }')
  scrapes=$((scrapes + answered))
done
scrape_bytes=$(curl -sf "http://$LEADER/metrics" | wc -c)
snapshots=$(curl -sf "http://$LEADER/metrics" | awk '/^cairn_snapshot_save_duration_seconds_count/ { print $2 }')

# The nodes' side of a scrape, measured directly: CPU time of each node over $CPU_SCRAPES scrapes
# of it in a row, on the loaded cluster now idle (its registry holds every series the rounds made).
CLK_TCK=$(getconf CLK_TCK)
printf '== CPU per scrape (%s scrapes of each node)\n' "$CPU_SCRAPES" >&2
cpu_rows=()
for i in 1 2 3; do
  pid=${PIDS[i - 1]}
  before=$(cpu_ticks "$pid")
  for _ in $(seq "$CPU_SCRAPES"); do
    printf 'url = "http://127.0.0.1:79%s0/metrics"\noutput = "/dev/null"\n' "$i"
  done | curl -sf --config - || die "scraping node $i failed"
  after=$(cpu_ticks "$pid")
  cpu_rows+=("$i $((after - before))")
done
stop_all

{
  echo "# Scraping /metrics every ${SCRAPE_EVERY}s against not scraping, $STAMP, $DURATION per measurement after $WARMUP of writes,"
  echo "# 3 nodes on loopback, 256-byte values; $scrapes scrapes in all (every node each round), $scrape_bytes bytes each;"
  echo "# the leader took $snapshots snapshots in all; rounds ${ROUNDS[*]}"
  echo "| row | without ops/s (p99 ms) | with ops/s (p99 ms) | with against without | rounds without | rounds with |"
  echo "|---|---:|---:|---:|---|---|"
  index=0
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    jq -rn --arg name "${row%%|*}" \
      --slurpfile off <(cat "$WORK/$index"-*-off.json) --slurpfile on <(cat "$WORK/$index"-*-on.json) \
      'def mean(f): map(f) | add / length;
       def cell($r): "\($r | mean(.ops_per_s) | floor) (\($r | mean(.latency.all.p99_ms) * 100 | round / 100))";
       def each($r): $r | map(.ops_per_s | floor | tostring) | join(", ");
       ($off | mean(.ops_per_s)) as $o | ($on | mean(.ops_per_s)) as $w |
       "| \($name) | \(cell($off)) | \(cell($on)) | \((($w - $o) / $o * 1000 | round) / 10)% | \(each($off)) | \(each($on)) |"'
  done
  echo
  echo "# CPU time of each node per scrape ($CPU_SCRAPES scrapes of it in a row, after the rounds; $(nproc) CPUs)"
  echo "| node | ms of CPU per scrape | share of the machine at one scrape of every node per ${SCRAPE_EVERY}s |"
  echo "|---|---:|---:|"
  for cpu_row in "${cpu_rows[@]}"; do
    read -r i ticks <<<"$cpu_row"
    awk -v i="$i" -v t="$ticks" -v n="$CPU_SCRAPES" -v hz="$CLK_TCK" -v cpus="$(nproc)" -v every="$SCRAPE_EVERY" \
      'BEGIN { ms = t / hz * 1000 / n; printf "| %s | %.3f | %.3f%% |\n", i, ms, 3 * ms / (every * 1000 * cpus) * 100 }'
  done
} | tee "$OUT"
