#!/usr/bin/env bash
# Do two builds of `convoy analyze` write the same beatmaps, byte for byte?
#
#   tools/analyze-compare.sh BEFORE AFTER [DIR_OR_FILE...]
#
# BEFORE and AFTER are convoy binaries (e.g. main's target/release/convoy copied aside, and
# this tree's). Every audio file (wav, flac, mp3, ogg) under the given directories or
# files, plus tests/fixtures and the built-in demo song, is analysed by both (`--force`,
# one job at a time); the beatmaps are compared with cmp. Prints one line per file and
# exits non-zero when any differs or fails on one side only. Defaults to the beat-eval
# corpus when it is present (target/beat-eval/clips).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
before=$(realpath "$1")
after=$(realpath "$2")
shift 2
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || { [ -d target/beat-eval/clips ] && inputs=(target/beat-eval/clips); }
inputs+=(tests/fixtures)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
files=(demo)
while IFS= read -r -d '' f; do files+=("$f"); done < <(
  find "${inputs[@]}" -type f \( -name '*.wav' -o -name '*.flac' -o -name '*.mp3' -o -name '*.ogg' \) -print0 | sort -z)

same=0
differ=0
for f in "${files[@]}"; do
  name=$(basename "$f")
  rb=0 ra=0
  "$before" analyze --force -j 1 -o "$work/before" "$f" >/dev/null 2>"$work/before.err" || rb=$?
  "$after" analyze --force -j 1 -o "$work/after" "$f" >/dev/null 2>"$work/after.err" || ra=$?
  b=$work/before/$name.beatmap.json
  a=$work/after/$name.beatmap.json
  if [ "$rb" != 0 ] && [ "$ra" != 0 ]; then
    echo "both fail  $f"
  elif [ "$rb" != 0 ] || [ "$ra" != 0 ]; then
    echo "DIFFERS    $f (exit status before $rb, after $ra)"
    differ=$((differ + 1))
  elif cmp -s "$b" "$a"; then
    echo "identical  $f ($(wc -c <"$a") bytes)"
    same=$((same + 1))
  else
    echo "DIFFERS    $f"
    differ=$((differ + 1))
  fi
  rm -f "$b" "$a"
done
echo "$same identical, $differ different"
[ "$differ" = 0 ]
