#!/usr/bin/env bash
# What TLS and ACLs cost: three cairn nodes on loopback, plain, then with TLS on both ports
# (certificates from `cairn tls init`), then with TLS and ACLs bootstrapped, driven with a token
# of an ordinary policy (not the management one, so every request resolves its rules). The same
# two rows run against each, in one run: put with 16 clients and linearizable get with 64, on
# the leader. See bench/README.md.
#
#   bench/secure.sh
#   BENCH_DURATION=30s bench/secure.sh
#
# Environment: BENCH_DURATION (each row, default 10s), BENCH_WORK (data directories, default
# target/bench-secure; a real disk, not tmpfs), CAIRN_BIN (default: build target/release/cairn).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WORK=${BENCH_WORK:-$ROOT/target/bench-secure}
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
OUT=$ROOT/bench/results/$STAMP-secure.txt
ROWS=("put, 16 clients|put|16" "linearizable get, 64 clients|get|64")

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


# start_cluster plain|secure: HTTP 7810, 7820, 7830; peers 7811, 7821, 7831.
start_cluster() {
  local mode=$1 cluster="" i flags
  for i in 1 2 3; do cluster+="${cluster:+,}$i=127.0.0.1:78${i}1@127.0.0.1:78${i}0"; done
  for i in 1 2 3; do
    rm -rf "$WORK/node$i"
    flags=()
    if [ "$mode" = secure ]; then
      flags=(--cert-file "$WORK/certs/node-$i.crt" --key-file "$WORK/certs/node-$i.key"
        --trusted-ca-file "$WORK/certs/ca.crt" --peer-cert-file "$WORK/certs/node-$i.crt"
        --peer-key-file "$WORK/certs/node-$i.key" --peer-trusted-ca-file "$WORK/certs/ca.crt")
    fi
    "$CAIRN" serve --id "$i" --http "127.0.0.1:78${i}0" --peer "127.0.0.1:78${i}1" --data "$WORK/node$i" \
      --initial-cluster "$cluster" --log warn "${flags[@]}" >"$WORK/node$i-$mode.log" 2>&1 &
    PIDS+=($!)
  done
}

# Prints the leader's HTTP address once the cluster has one (curl flags in $CURL).
leader() {
  local i
  for i in 1 2 3; do
    if curl -sf "${CURL[@]}" "$SCHEME://127.0.0.1:78${i}0/v1/status" | jq -e '.role == "leader"' >/dev/null; then
      echo "127.0.0.1:78${i}0"
      return 0
    fi
  done
  return 1
}

# Prints the leader's address, asking until one node says it leads (a fresh cluster may hold a
# second election right after its first).
find_leader() {
  local deadline=$((SECONDS + 30))
  until leader; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for a leader ($1)"
    sleep 0.2
  done
}

# run_rows NAME BENCH-FLAGS...: writes $WORK/<name>-<row>.json
run_rows() {
  local mode=$1 index=0 row name bench clients
  shift
  "$CAIRN" bench put --endpoints "$SCHEME://$LEADER" --clients 16 --duration 3s --json "$@" >/dev/null ||
    die "$mode: the warm-up writes failed"
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    IFS='|' read -r name bench clients <<<"$row"
    printf '== %s: %s (%s)\n' "$mode" "$name" "$DURATION" >&2
    "$CAIRN" bench "$bench" --endpoints "$SCHEME://$LEADER" --clients "$clients" --duration "$DURATION" \
      --key-space 1 --key-size 8 --value-size 256 --json "$@" >"$WORK/$mode-$index.json" ||
      echo "  (some requests failed)" >&2
    jq -r '"  \(.ops_per_s | floor) ops/s, p99 \(.latency.all.p99_ms) ms, failed \(.failed)"' "$WORK/$mode-$index.json" >&2
    sleep 2
  done
}

SCHEME=http CURL=()
start_cluster plain
LEADER=$(find_leader plain)
run_rows plain
stop_all

rm -rf "$WORK/certs"
"$CAIRN" tls init "$WORK/certs" --nodes 3 >/dev/null
SCHEME=https CURL=(--cacert "$WORK/certs/ca.crt")
start_cluster secure
LEADER=$(find_leader tls)
run_rows tls --cacert "$WORK/certs/ca.crt"
stop_all

start_cluster secure
LEADER=$(find_leader tls+acl)
ROOT_TOKEN=$(curl -sf "${CURL[@]}" -X POST "https://$LEADER/v1/acl/bootstrap" | jq -r .secret)
curl -sf "${CURL[@]}" -H "X-Cairn-Token: $ROOT_TOKEN" -X POST "https://$LEADER/v1/acl/policies" \
  -d '{"name":"bench","rules":[{"prefix":"","access":"write"},{"prefix":"secret/","access":"deny"}],"cluster":"read"}' \
  >/dev/null || die "creating the bench policy failed"
TOKEN=$(curl -sf "${CURL[@]}" -H "X-Cairn-Token: $ROOT_TOKEN" -X POST "https://$LEADER/v1/acl/tokens" \
  -d '{"policies":["bench"]}' | jq -r .secret)
run_rows tls+acl --cacert "$WORK/certs/ca.crt" --token "$TOKEN"
stop_all

{
  echo "# TLS and ACLs against plain, $STAMP, $DURATION per row, 3 nodes on loopback, 256-byte values"
  echo "| row | plain ops/s (p99 ms) | TLS ops/s (p99 ms) | TLS+ACL ops/s (p99 ms) | TLS+ACL against plain |"
  echo "|---|---:|---:|---:|---:|"
  index=0
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    jq -rn --arg name "${row%%|*}" --slurpfile plain "$WORK/plain-$index.json" \
      --slurpfile tls "$WORK/tls-$index.json" --slurpfile acl "$WORK/tls+acl-$index.json" \
      'def cell($r): "\($r[0].ops_per_s | floor) (\($r[0].latency.all.p99_ms))";
       "| \($name) | \(cell($plain)) | \(cell($tls)) | \(cell($acl)) | \((($acl[0].ops_per_s - $plain[0].ops_per_s) / $plain[0].ops_per_s * 100) | floor)% |"'
  done
} | tee "$OUT"
