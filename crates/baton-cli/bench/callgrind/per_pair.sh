#!/bin/bash
# Instructions per claim + complete pair, by thread group, counted by
# callgrind (repeatable on a loaded machine, unlike wall-clock figures).
#
#   crates/baton-cli/bench/callgrind/per_pair.sh target/release/baton [N1 N2] [-- extra bench args]
#
# Runs `baton bench queue` twice under callgrind, draining N1 then N2
# prefilled items (no enqueueing over HTTP) with 64 operators, the server
# on its own runtime (`--server-threads 2`), and prints
# (count(N2) - count(N1)) / (N2 - N1) per thread group: the server's
# Tokio workers, the SQLite writer thread, the readers, the bench's
# client; start-up and prefill cancel out. Build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for readable profiles
# (callgrind_annotate OUT/cg.PID-TID).
set -euo pipefail
BIN=$1; N1=${2:-500}; N2=${3:-2500}
shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift
OUT=${OUT:-$(mktemp -d)}
here=$(dirname "$0")
for n in $N1 $N2; do
  mkdir -p "$OUT/$n"
  BATON_LOG=warn valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$OUT/$n/cg.%p" \
    "$BIN" bench queue --items 0 --ready "$n" --operators 64 --duration 3600 \
    --server-threads 2 "$@" > "$OUT/$n/bench.txt" 2> "$OUT/$n/valgrind.txt"
  grep -q "verdict: OK" "$OUT/$n/bench.txt" || { cat "$OUT/$n/bench.txt"; exit 1; }
  python3 "$here/split.py" "$OUT/$n" > "$OUT/$n/split.txt"
done
echo "instructions per claim+complete pair ($OUT)"
join <(sort "$OUT/$N1/split.txt") <(sort "$OUT/$N2/split.txt") |
  awk -v d=$((N2 - N1)) '{ printf "%-16s %10.0f\n", $1, ($3 - $2) / d }'
