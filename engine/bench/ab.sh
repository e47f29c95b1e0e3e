#!/usr/bin/env bash
# A/B of two stent-bench binaries: runs them alternately ROUNDS times with
# the same arguments, prints every value of FIELD from each one's JSON line
# and their medians, and the load average at the end.
#
#   OLD=/tmp/bench-before NEW=./target/release/stent-bench \
#     engine/bench/ab.sh 6 per_sec sequential --backend postgres --n 2000
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: OLD=binary NEW=binary $0 ROUNDS FIELD scenario [args...]" >&2
  exit 2
fi
rounds=$1 field=$2
shift 2
: "${OLD:?set OLD to the binary before the change}"
: "${NEW:?set NEW to the binary after it}"
value() { "$@" 2>/dev/null | tail -1 | grep -o "\"$field\":[0-9.]*" | cut -d: -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
old=() new=()
for _ in $(seq "$rounds"); do
  old+=("$(value "$OLD" "$@")")
  new+=("$(value "$NEW" "$@")")
done
echo "$* | $field"
echo "  old: ${old[*]} -> median $(median "${old[@]}")"
echo "  new: ${new[*]} -> median $(median "${new[@]}")"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
