#!/usr/bin/env bash
# Peak memory and speed of `convoy analyze` on a long file, before and after a change.
#
#   tools/bench-analyze.sh BEFORE AFTER [--minutes 60] [--out DIR]
#
# BEFORE and AFTER are convoy binaries (e.g. main's target/release/convoy copied aside, and
# this tree's). Generates MINUTES of the built-in demo song (44.1 kHz stereo 16-bit WAV,
# ~10 MB a minute, kept in DIR for reruns), analyses it with each binary under
# /usr/bin/time -v (one at a time, -j 1), and prints peak RSS (MiB), wall time and × real
# time, then whether the two beatmaps are byte-identical. Heavy: run it niced, alone.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
before=$(realpath "$1")
after=$(realpath "$2")
shift 2
minutes=60
out=${CARGO_TARGET_DIR:-target}/bench-analyze
while (($#)); do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-analyze: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
wav=$out/mix_${minutes}min.wav
[ -s "$wav" ] || "$after" tool gen demo "$wav" --seconds $((minutes * 60)) --pcm16 >/dev/null
secs=$((minutes * 60))
printf '%-8s %10s %9s %8s\n' build "peak MiB" "wall s" "×RT"
for side in before after; do
  bin=$before
  [ $side = after ] && bin=$after
  rm -rf "$out/$side"
  /usr/bin/time -v "$bin" analyze --force -j 1 -o "$out/$side" "$wav" >/dev/null 2>"$out/$side.time"
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$side.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/$side.time" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  printf '%-8s %10.1f %9.1f %8.0f\n' $side "$(echo "$kib / 1024" | bc -l)" "$wall" \
    "$(echo "$secs / $wall" | bc -l)"
done
name=$(basename "$wav").beatmap.json
if cmp -s "$out/before/$name" "$out/after/$name"; then
  echo "beatmaps: identical ($(wc -c <"$out/after/$name") bytes)"
else
  echo "beatmaps: DIFFERENT"
  exit 1
fi
