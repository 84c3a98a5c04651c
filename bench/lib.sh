# Shell helpers the bench scripts share: servers started in the background are remembered in
# PIDS and stopped on exit. Sourced, not run.

PIDS=()
die() { printf 'bench/%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

# utime + stime so far of process $1 (fields 14 and 15 of /proc/<pid>/stat), in clock ticks
# (getconf CLK_TCK per second).
cpu_ticks() {
  local stat fields
  stat=$(<"/proc/$1/stat")
  # The fields are counted after the command name, which is in parentheses and may hold spaces.
  read -r -a fields <<<"${stat##*) }"
  echo $((fields[11] + fields[12]))
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # seconds, description, command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
    sleep 0.2
  done
}
