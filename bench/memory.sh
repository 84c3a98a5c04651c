#!/usr/bin/env bash
# Memory of one node holding a million 256-byte values (the issue's target: under 1 GiB RSS).
# Starts a single release node on a fresh data directory, writes MEMORY_KEYS distinct keys once
# with `cairn bench put --sequential-keys`, reads VmRSS/VmHWM from /proc, restarts the node on
# the same directory (it recovers from its snapshot and the WAL behind it) and reads them again.
# See bench/README.md.
#
#   bench/memory.sh
#   MEMORY_KEYS=100000 bench/memory.sh     # a quicker, smaller run
#
# Environment: MEMORY_KEYS (default 1000000), MEMORY_VALUE_SIZE (default 256), MEMORY_KEY_SIZE
# (default 8), MEMORY_CLIENTS (writers, default 64), BENCH_WORK (data directory parent, default target/bench), CAIRN_BIN
# (default: build target/release/cairn), BENCH_NOTE (a line added to the results).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${MEMORY_KEYS:-1000000}
VALUE_SIZE=${MEMORY_VALUE_SIZE:-256}
CLIENTS=${MEMORY_CLIENTS:-64}
WORK=${BENCH_WORK:-$ROOT/target/bench}
DATA=$WORK/memory-node
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
RESULTS=$ROOT/bench/results
RAW=$RESULTS/memory-$STAMP
# Ports apart from compare.sh's, so the two scripts never meet.
HTTP=127.0.0.1:7740
PEER=127.0.0.1:7741
# Keys are 00000000, 00000001, … as in compare.sh; eight digits cover up to 10^8 keys.
KEY_SIZE=${MEMORY_KEY_SIZE:-8}

NODE=""
READY_SECONDS=0
log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench/memory.sh: %s\n' "$*" >&2; exit 1; }

stop_node() {
  [ -n "$NODE" ] || return 0
  kill "$NODE" 2>/dev/null || true
  wait "$NODE" 2>/dev/null || true
  NODE=""
}
trap stop_node EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

status() { curl -sf "http://$HTTP/v1/status"; }

# Starts the node on $DATA and waits until it leads and has applied everything it holds; sets
# NODE and READY_SECONDS (not run in a subshell, so that both stay set).
start_node() {
  local started=$SECONDS
  "$CAIRN" serve --id 1 --http "$HTTP" --peer "$PEER" --data "$DATA" --log warn >>"$RAW/node.log" 2>&1 &
  NODE=$!
  local deadline=$((SECONDS + 600))
  until status 2>/dev/null | jq -e '.leader == .id and .applied_index == .commit_index' >/dev/null; do
    kill -0 "$NODE" 2>/dev/null || die "the node exited; see $RAW/node.log"
    [ $SECONDS -lt $deadline ] || die "the node did not become ready within 600 s"
    sleep 0.2
  done
  READY_SECONDS=$((SECONDS - started))
}

# "VmRSS VmHWM RssAnon RssFile" of the node, in KiB.
memory() {
  awk '/^(VmRSS|VmHWM|RssAnon|RssFile):/ { value[$1] = $2 }
    END { print value["VmRSS:"], value["VmHWM:"], value["RssAnon:"], value["RssFile:"] }' "/proc/$NODE/status"
}

mib() { awk -v kib="$1" 'BEGIN { printf "%.0f MiB", kib / 1024 }'; }

# A line of the results table: moment, then memory() fields.
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$(mib "$2")" "$(mib "$3")" "$(mib "$4")" "$(mib "$5")"; }

# How many keys the node holds, counted by a stale listing (one page; total counts them all).
key_count() { curl -sf "http://$HTTP/v1/kv?prefix=&limit=1&consistency=stale" | jq -r '.total'; }

main() {
  command -v jq >/dev/null && command -v curl >/dev/null || die "needs jq and curl"
  if [ -z "${CAIRN_BIN:-}" ]; then
    log "building cairn (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    CAIRN=$ROOT/target/release/cairn
  else
    CAIRN=$CAIRN_BIN
  fi
  port_free 7740 && port_free 7741 || die "port 7740 or 7741 is in use"
  mkdir -p "$WORK" "$RAW"
  rm -rf "$DATA"
  : >"$RAW/node.log"
  load=$(cut -d' ' -f1-3 /proc/loadavg)

  log "starting one node on a fresh $DATA"
  start_node
  read -r rss0 hwm0 anon0 file0 < <(memory)

  log "writing $KEYS distinct keys, $VALUE_SIZE-byte values, $CLIENTS clients"
  "$CAIRN" bench put --endpoints "$HTTP" --clients "$CLIENTS" --sequential-keys --key-space "$KEYS" \
    --total "$KEYS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json >"$RAW/put.json" ||
    die "some writes failed; see $RAW/put.json"
  # The last snapshot is written in the background; let it finish so it is counted.
  sleep 5
  read -r rss1 hwm1 anon1 file1 < <(memory)
  keys1=$(key_count)
  revision1=$(status | jq -r '.revision')
  [ "$keys1" = "$KEYS" ] || die "the node holds $keys1 keys, not $KEYS"
  read -r rss1b hwm1b anon1b file1b < <(memory)
  disk1=$(du -sh "$DATA" | cut -f1)

  log "restarting the node on the same data"
  stop_node
  start_node
  recovery=$READY_SECONDS
  sleep 5
  read -r rss2 hwm2 anon2 file2 < <(memory)
  keys2=$(key_count)
  [ "$keys2" = "$KEYS" ] || die "after the restart the node holds $keys2 keys, not $KEYS"
  stop_node

  {
    echo "# cairn memory, $STAMP"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- uname -a: $(uname -a)"
    echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); memory: $(free -g | awk '/Mem:/ { print $2 }') GiB"
    echo "- $("$CAIRN" --version); binary $CAIRN, built $(date -u -r "$CAIRN" '+%Y-%m-%d %H:%M UTC'); the repository was at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    echo "- one node with the default settings of \`cairn serve\`; data on $(df -h "$WORK" | awk 'NR == 2 { print $1 }'); load average before starting: $load"
    echo "- load: \`cairn bench put --clients $CLIENTS --sequential-keys --key-space $KEYS --total $KEYS --key-size $KEY_SIZE --value-size $VALUE_SIZE\`: $(jq -r '"\(.ok) ok, \(.failed) failed, \(.ops_per_s | floor) puts/s"' "$RAW/put.json")"
    echo "- after the writes the node held $keys1 keys at revision $revision1; its data directory was $disk1; after the restart it held $keys2 keys and took ${recovery} s to be ready"
    [ -z "${BENCH_NOTE:-}" ] || echo "- note: $BENCH_NOTE"
    echo
    echo "VmHWM is the peak RSS since the process started; RssAnon is heap, RssFile mapped files (the binary)."
    echo
    echo "| moment | VmRSS | VmHWM | RssAnon | RssFile |"
    echo "|---|---:|---:|---:|---:|"
    row "started, empty" "$rss0" "$hwm0" "$anon0" "$file0"
    row "after $KEYS writes (+5 s)" "$rss1" "$hwm1" "$anon1" "$file1"
    row "after counting the keys" "$rss1b" "$hwm1b" "$anon1b" "$file1b"
    row "restarted, recovered (+5 s)" "$rss2" "$hwm2" "$anon2" "$file2"
  } >"$RESULTS/memory-$STAMP.md"
  log "results: bench/results/memory-$STAMP.md"
  cat "$RESULTS/memory-$STAMP.md"
}

main "$@"
