#!/usr/bin/env bash
# cairn against etcd on this machine: three etcd members, then three cairn nodes (never both at
# once), all on loopback; the same load matrix against each, driven by `cairn bench` and by
# `hey`; one table of cairn/etcd ratios. See bench/README.md.
#
#   bench/compare.sh                  # installs etcd-server, etcd-client, hey, jq if missing (apt)
#   BENCH_DURATION=30s bench/compare.sh
#
# Environment: BENCH_DURATION (each run, default 10s), BENCH_WORK (data directories, default
# target/bench; keep it on a real disk, not tmpfs, since both systems fsync), CAIRN_BIN (default:
# build target/release/cairn), BENCH_NOTE (a line added to the results, e.g. other load).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WORK=${BENCH_WORK:-$ROOT/target/bench}
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
RESULTS=$ROOT/bench/results
RAW=$RESULTS/$STAMP
KEY=00000000            # what `cairn bench --key-space 1 --key-size 8` uses, so hey hits the same key
VALUE_SIZE=256
CDF_CLIENTS=64          # the put row whose latency distribution is charted
CLK_TCK=$(getconf CLK_TCK)

# name | mode | clients | consistency | node
ROWS=(
  "put, 1 client|put|1||leader"
  "put, 4 clients|put|4||leader"
  "put, 16 clients|put|16||leader"
  "put, 64 clients|put|64||leader"
  "put, 256 clients|put|256||leader"
  "linearizable get, 1 client|get|1|linearizable|leader"
  "linearizable get, 64 clients|get|64|linearizable|leader"
  "serializable get on a follower, 64 clients|get|64|stale|follower"
)

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
log() { printf '\n== %s\n' "$*" >&2; }

install_tools() {
  local missing=() tool package
  for tool in etcd:etcd-server etcdctl:etcd-client hey:hey jq:jq curl:curl; do
    package=${tool#*:}
    command -v "${tool%%:*}" >/dev/null || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run as root or: sudo apt-get install -y ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian's etcd-server enables a system etcd on 2379; it would share the CPU with the run.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    echo "warning: a system etcd is running (systemctl stop etcd to keep it out of the measurement)" >&2
  fi
}


# ---- etcd: client ports 21379, 22379, 23379; peer ports 21380, 22380, 23380.
etcd_client() { echo "127.0.0.1:2${1}379"; }

start_etcd() {
  local cluster="" i
  for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:2${i}380"; done
  for i in 1 2 3; do
    port_free "2${i}379" && port_free "2${i}380" || die "port 2${i}379 or 2${i}380 is in use"
    rm -rf "$WORK/etcd$i"
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
      --listen-client-urls "http://$(etcd_client $i)" --advertise-client-urls "http://$(etcd_client $i)" \
      --listen-peer-urls "http://127.0.0.1:2${i}380" --initial-advertise-peer-urls "http://127.0.0.1:2${i}380" \
      --initial-cluster "$cluster" --initial-cluster-token cairn-bench --initial-cluster-state new \
      --logger zap --log-level warn >"$WORK/etcd$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do
    wait_for 30 "etcd member $i" sh -c "curl -sf http://$(etcd_client $i)/health | grep -q '\"true\"'"
  done
}

etcd_is_leader() { # member number
  curl -sf -X POST -d '{}' "http://$(etcd_client "$1")/v3/maintenance/status" |
    jq -e '.header.member_id == .leader' >/dev/null
}

# ---- cairn: HTTP 7710, 7720, 7730; peers 7711, 7721, 7731.
cairn_http() { echo "127.0.0.1:77${1}0"; }

start_cairn() {
  local cluster="" i
  for i in 1 2 3; do cluster+="${cluster:+,}$i=127.0.0.1:77${i}1@$(cairn_http $i)"; done
  for i in 1 2 3; do
    port_free "77${i}0" && port_free "77${i}1" || die "port 77${i}0 or 77${i}1 is in use"
    rm -rf "$WORK/cairn$i"
    "$CAIRN" serve --id "$i" --http "$(cairn_http $i)" --peer "127.0.0.1:77${i}1" --data "$WORK/cairn$i" \
      --initial-cluster "$cluster" --log warn >"$WORK/cairn$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do
    wait_for 30 "cairn node $i to know a leader" sh -c "curl -sf http://$(cairn_http $i)/v1/status | jq -e '.leader != null'"
  done
}

cairn_is_leader() { curl -sf "http://$(cairn_http "$1")/v1/status" | jq -e '.leader == .id' >/dev/null; }

# Sets LEADER and FOLLOWER (host:port) for system $1.
find_roles() {
  local i
  LEADER="" FOLLOWER=""
  for i in 1 2 3; do
    if "${1}_is_leader" "$i"; then LEADER=$("${1}_address" "$i"); else FOLLOWER=$("${1}_address" "$i"); fi
  done
  [ -n "$LEADER" ] && [ -n "$FOLLOWER" ] || die "$1: no single leader among the three nodes"
}
etcd_address() { etcd_client "$1"; }
cairn_address() { cairn_http "$1"; }

# hey's request for system $1, mode $2, consistency $3, endpoint $4: prints hey's flags and URL.
hey_request() {
  case "$1/$2" in
    cairn/put) echo "-m PUT -D $WORK/value.bin http://$4/v1/kv/$KEY" ;;
    cairn/get) echo "http://$4/v1/kv/$KEY?consistency=$3" ;;
    etcd/put) echo "-m POST -T application/json -D $WORK/etcd-put.json http://$4/v3/kv/put" ;;
    etcd/get) echo "-m POST -T application/json -D $WORK/etcd-range-$3.json http://$4/v3/kv/range" ;;
  esac
}

write_bodies() {
  head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'v' >"$WORK/value.bin"
  local key value
  key=$(printf '%s' "$KEY" | base64 -w0)
  value=$(base64 -w0 <"$WORK/value.bin")
  printf '{"key":"%s","value":"%s"}' "$key" "$value" >"$WORK/etcd-put.json"
  printf '{"key":"%s"}' "$key" >"$WORK/etcd-range-linearizable.json"
  printf '{"key":"%s","serializable":true}' "$key" >"$WORK/etcd-range-stale.json"
}

# utime + stime so far (fields 14 and 15 of /proc/<pid>/stat, in clock ticks) of each server of
# system $1, one "address pid ticks" line per server.
servers_cpu() {
  local i pid
  for i in 1 2 3; do
    pid=${PIDS[i - 1]}
    echo "$("${1}_address" "$i") $pid $(cpu_ticks "$pid")"
  done
}

# Runs the matrix against system $1, which is up; writes $RAW/$1-<row>.{json,hey.txt}, and for
# put rows $RAW/$1-<row>.cpu.txt.
run_matrix() {
  local system=$1 index=0 row name mode clients consistency node endpoint flags sampler
  find_roles "$system"
  echo "$system: leader $LEADER, follower $FOLLOWER" >>"$RAW/notes.txt"
  # Warm-up, not recorded: connections, the leader's replication streams, caches. It also writes
  # the key that hey's reads find.
  "$CAIRN" bench put --target "$system" --endpoints "$LEADER" --clients 16 --duration 3s --json >/dev/null ||
    die "$system: the warm-up writes failed"
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    IFS='|' read -r name mode clients consistency node <<<"$row"
    if [ "$node" = leader ]; then endpoint=$LEADER; else endpoint=$FOLLOWER; fi
    flags=(--target "$system" --endpoints "$endpoint" --clients "$clients" --duration "$DURATION"
      --key-space 1 --key-size 8 --value-size "$VALUE_SIZE" --json)
    [ -n "$consistency" ] && flags+=(--consistency "$consistency")
    log "$system: $name (cairn bench, $DURATION)"
    (sleep 3 && echo "$system, $name: $(other_load)" >>"$RAW/notes.txt") &
    sampler=$!
    servers_cpu "$system" >"$WORK/cpu-before.txt"
    "$CAIRN" bench "$mode" "${flags[@]}" >"$RAW/$system-$index.json" || echo "  (some requests failed)" >&2
    wait "$sampler"
    jq -r '"  \(.ops_per_s | floor) ops/s, mean \(.latency.all.mean_ms) ms, p99 \(.latency.all.p99_ms) ms, failed \(.failed)"' \
      "$RAW/$system-$index.json" >&2
    # The pause is inside the CPU window of a put row: the servers finish there what the puts
    # left them (a follower catching up, etcd's batched backend commits).
    sleep 2
    if [ "$mode" = put ]; then
      {
        echo "# address pid: CPU ticks (1/$CLK_TCK s) before and after cairn bench and the 2 s after it"
        paste -d' ' "$WORK/cpu-before.txt" <(servers_cpu "$system") | awk '{ print $1, $2 ":", $3, $6 }'
      } >"$RAW/$system-$index.cpu.txt"
      echo "  server CPU per put: $(cpu_per_put "$system" "$index") µs" >&2
    fi
    log "$system: $name (hey, $DURATION)"
    # shellcheck disable=SC2046 # hey_request prints separate flags on purpose
    hey -z "$DURATION" -c "$clients" $(hey_request "$system" "$mode" "${consistency:-linearizable}" "$endpoint") \
      >"$RAW/$system-$index.hey.txt" 2>&1 || echo "  (hey failed)" >&2
    grep -E 'Requests/sec|Average' "$RAW/$system-$index.hey.txt" >&2 || true
    sleep 2
  done
}

# cairn only (etcd's gateway watch is a different protocol): 16 writers spread over the nodes, one watch
# stream on each node, event latency from put sent to event received.
run_watch() {
  log "cairn: watch, 16 writers, 3 watchers (cairn bench, $DURATION)"
  "$CAIRN" bench watch --endpoints "$(cairn_http 1),$(cairn_http 2),$(cairn_http 3)" --watchers 3 \
    --clients 16 --conns 16 --duration "$DURATION" --key-prefix watch/ --key-size 14 --key-space 1000 \
    --value-size "$VALUE_SIZE" --json >"$RAW/cairn-watch.json" || echo "  (some requests or events failed)" >&2
}

watch_line() {
  [ -s "$RAW/cairn-watch.json" ] || { echo "cairn watch: no result"; return; }
  jq -r 'def ms: . * 10 | round / 10;
    "cairn watch (16 writers spread over the three nodes, one watcher per node, 1,000 keys): \(.ops_per_s | floor) puts/s, put mean \(.latency.all.mean_ms | ms) ms; event latency (put sent → event received) mean \(.events.latency.mean_ms | ms) ms, p50 \(.events.latency.p50_ms | ms) ms, p99 \(.events.latency.p99_ms | ms) ms, max \(.events.latency.max_ms | ms) ms; \(.events.delivered) events delivered, \(.events.missing) missing, \(.failed) puts failed."' "$RAW/cairn-watch.json"
}

# Other processes using more than 10% of a CPU over one second (not this run's servers, cairn
# bench or hey): the machine may be shared, and their load is part of what a run measured.
other_load() {
  local busy
  busy=$(top -b -c -n 2 -d 1 -w 512 | awk -v ours=" ${PIDS[*]} " -v bench="$CAIRN" '
    /^top -/ { sample++ }
    sample == 2 && $1 ~ /^[0-9]+$/ && $9 > 10 && index(ours, " " $1 " ") == 0 &&
      !($12 == bench && $13 == "bench") && $12 !~ /(^|\/)(hey|top)$/ {
      name = $12; sub(/.*\//, "", name); printf "%s %.0f%%, ", name, $9 }')
  busy=${busy%, }
  echo "other processes during cairn bench: ${busy:-none above 10% of a CPU}"
}

# hey's summary as "ops mean_ms p99_ms errors": errors are non-2xx answers plus failed requests
# other than those hey cancels itself when -z ends.
hey_summary() {
  awk '
    /Requests\/sec:/ { ops = $2 }
    /Average:/ { mean = $2 * 1000 }
    /99% in/ { p99 = sprintf("%.1f", $3 * 1000) }
    /^Status code distribution:/ { section = "status"; next }
    /^Error distribution:/ { section = "error"; next }
    section == "status" && /\[[0-9]+\]/ { if ($1 !~ /^\[2/) errors += $2 }
    section == "error" && /\[[0-9]+\]/ { if ($0 !~ /request canceled|context deadline/) errors += substr($1, 2) + 0 }
    END { printf "%.0f %.2f %s %d\n", ops, mean, p99 == "" ? "n/a" : p99, errors }
  ' "$1"
}

# Server CPU in µs per acknowledged put of row $2 on system $1: the three servers' ticks over the
# row's CPU window, divided by the puts its cairn bench report counts as ok.
cpu_per_put() {
  local ok
  ok=$(jq -r '.ok' "$RAW/$1-$2.json")
  awk -v ok="$ok" -v hz="$CLK_TCK" '
    !/^#/ { ticks += $4 - $3 }
    END { if (ok > 0) printf "%.0f", ticks / hz * 1e6 / ok; else printf "n/a" }
  ' "$RAW/$1-$2.cpu.txt"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

print_table() {
  local index=0 row name mode cpu
  echo "| load | etcd ops/s | cairn ops/s | cairn/etcd | etcd mean / p99 | cairn mean / p99 | server CPU per put, etcd / cairn | etcd ops/s / p99 (hey) | cairn ops/s / p99 (hey) | cairn/etcd (hey) | failed etcd / cairn |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    IFS='|' read -r name mode _ <<<"$row"
    read -r e_ops e_mean e_p99 e_failed < <(jq -r '"\(.ops_per_s) \(.latency.all.mean_ms) \(.latency.all.p99_ms) \(.failed)"' "$RAW/etcd-$index.json")
    read -r c_ops c_mean c_p99 c_failed < <(jq -r '"\(.ops_per_s) \(.latency.all.mean_ms) \(.latency.all.p99_ms) \(.failed)"' "$RAW/cairn-$index.json")
    read -r eh_ops _ eh_p99 eh_failed < <(hey_summary "$RAW/etcd-$index.hey.txt")
    read -r ch_ops _ ch_p99 ch_failed < <(hey_summary "$RAW/cairn-$index.hey.txt")
    cpu="–"
    [ "$mode" != put ] || cpu="$(cpu_per_put etcd "$index") / $(cpu_per_put cairn "$index") µs"
    printf '| %s | %.0f | %.0f | %s | %.1f / %.1f ms | %.1f / %.1f ms | %s | %s / %s ms | %s / %s ms | %s | %s / %s (hey %s / %s) |\n' \
      "$name" "$e_ops" "$c_ops" "$(ratio "$c_ops" "$e_ops")" "$e_mean" "$e_p99" "$c_mean" "$c_p99" "$cpu" \
      "$eh_ops" "$eh_p99" "$ch_ops" "$ch_p99" "$(ratio "$ch_ops" "$eh_ops")" "$e_failed" "$c_failed" "$eh_failed" "$ch_failed"
  done
}

# The put rows' reports drawn by `cairn bench chart` into $RAW: throughput against clients, and
# the latency CDF of the $CDF_CLIENTS-client row. Prints the Markdown that shows them.
draw_charts() {
  local index=0 row mode reports=()
  for row in "${ROWS[@]}"; do
    index=$((index + 1))
    IFS='|' read -r _ mode _ <<<"$row"
    [ "$mode" != put ] || reports+=("$RAW/etcd-$index.json" "$RAW/cairn-$index.json")
  done
  if "$CAIRN" bench chart --out "$RAW" --cdf-clients "$CDF_CLIENTS" "${reports[@]}" >&2; then
    echo "![put throughput against clients]($STAMP/put-throughput.svg)"
    echo "![put latency CDF, $CDF_CLIENTS clients]($STAMP/put-latency-$CDF_CLIENTS-clients.svg)"
  else
    echo "(charts not drawn: \`cairn bench chart\` failed)"
  fi
}

describe_machine() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- uname -a: $(uname -a)"
  echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); memory: $(free -g | awk '/Mem:/ { print $2 }') GiB"
  echo "- data directories: $WORK on $(df -h "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }')"
  echo "- etcd $(etcd --version | awk '/etcd Version/ { print $3 }') (Debian package), hey $(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo '?'), $("$CAIRN" --version)"
  echo "- cairn binary: $CAIRN, built $(date -u -r "$CAIRN" '+%Y-%m-%d %H:%M UTC'); the repository was at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
  echo "- each run: $DURATION; one key ($KEY), $VALUE_SIZE-byte values; cairn bench and hey run on the same machine"
  [ -z "${BENCH_NOTE:-}" ] || echo "- note: $BENCH_NOTE"
}

main() {
  install_tools
  if [ -z "${CAIRN_BIN:-}" ]; then
    log "building cairn (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    CAIRN=$ROOT/target/release/cairn
  else
    CAIRN=$CAIRN_BIN
  fi
  mkdir -p "$WORK" "$RAW"
  write_bodies
  echo "load average before starting: $(cut -d' ' -f1-3 /proc/loadavg)" >"$RAW/notes.txt"
  echo "durable floor: $("$ROOT/bench/fsync.sh" "$WORK")" >>"$RAW/notes.txt"

  log "etcd: starting three members"
  start_etcd
  run_matrix etcd
  stop_all

  log "cairn: starting three nodes"
  start_cairn
  run_matrix cairn
  run_watch
  stop_all

  {
    echo "# cairn vs etcd, $STAMP"
    echo
    describe_machine
    sed 's/^/- /' "$RAW/notes.txt"
    echo
    echo "ops/s and latency from \`cairn bench\` (same client for both systems); the hey columns (ops/s and p99) are a second opinion."
    echo "Server CPU per put: user and system time of the three server processes over the row's cairn bench run and the 2 s after it, divided by the puts it acknowledged."
    echo "Stale reads on cairn are the counterpart of etcd's serializable reads. Raw outputs: [$STAMP/]($STAMP/)."
    echo
    print_table
    echo
    draw_charts
    echo
    watch_line
  } >"$RESULTS/$STAMP.md"
  log "results: bench/results/$STAMP.md"
  cat "$RESULTS/$STAMP.md"
}

main "$@"
