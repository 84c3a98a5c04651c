#!/usr/bin/env bash
# The durable floor of this disk: the mean time of one small write made durable (dd with
# O_DSYNC, which is a write plus an fdatasync), measured two ways, since the difference is what
# a write-ahead log pays for growing its file:
#   append     each write extends the file, so the sync also commits its new size (ext4: a
#              journal commit); cairn's WAL appends to segments this way
#   overwrite  each write lands in blocks already written, so the sync is the data alone
#
#   bench/fsync.sh [DIR]        # DIR: where to measure (default target/bench); keep it on the
#                               # disk the data directories use
#
# Environment: FSYNC_WRITES (per measurement, default 1000). Prints one line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-${BENCH_WORK:-$ROOT/target/bench}}
WRITES=${FSYNC_WRITES:-1000}
FILE=$DIR/fsync-probe.$$
mkdir -p "$DIR"
trap 'rm -f "$FILE"' EXIT

# Mean milliseconds per O_DSYNC write of 512 bytes; extra dd flags in "$@".
per_write() {
  dd if=/dev/zero of="$FILE" bs=512 count="$WRITES" oflag=dsync "$@" 2>&1 |
    awk -v n="$WRITES" '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") printf "%.2f", $(i - 1) * 1000 / n }'
}

rm -f "$FILE"
append=$(per_write)
# Written and synced beforehand, so that the measured writes change no metadata (fallocate would
# leave unwritten extents, whose first write is a metadata change too).
dd if=/dev/zero of="$FILE" bs=512 count="$WRITES" conv=fsync status=none
overwrite=$(per_write conv=notrunc)
echo "write + fdatasync of 512 B (mean of $WRITES, dd oflag=dsync on $(df -P "$DIR" | awk 'NR == 2 { print $1 }')): append ${append} ms, overwrite ${overwrite} ms"
