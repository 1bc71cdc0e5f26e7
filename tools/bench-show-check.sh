#!/usr/bin/env bash
# `convoy show --check` on generated shows with many cues (issue #21.4: the line lookup
# was quadratic in the file size).
#
#   tools/bench-show-check.sh [CONVOY_BINARY] [CUES...]
#
# Writes a show with N cues on the built-in demo song and its beatmap (cues cycle over
# bars 1–16, beats 1–4, each setting a hue) to a temporary directory and prints the wall
# time and peak RSS of `convoy show --check` on it, one line per N (default: 16000 and
# 141000, the two sizes of the report). The binary defaults to target/release/convoy,
# then target/debug/convoy.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
shift || true
if [[ -z $bin ]]; then
  bin=target/release/convoy
  [[ -x $bin ]] || bin=target/debug/convoy
fi
sizes=("$@")
((${#sizes[@]})) || sizes=(16000 141000)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
map=$(pwd)/beatmaps/demo.beatmap.json
printf '%-8s %-10s %-10s %s\n' cues bytes seconds max_rss_kb
for n in "${sizes[@]}"; do
  show=$dir/show-$n.toml
  {
    printf 'format = "convoy-show"\nversion = 1\n[[track]]\nfile = "demo"\nbeatmap = "%s"\n' "$map"
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
      printf "[[track.cue]]\nat = \"bar %d beat %d\"\nhue = %d\n", 1 + (i / 4) % 16, 1 + i % 4, i % 360 }'
  } >"$show"
  start=$(date +%s.%N)
  /usr/bin/time -f %M -o "$dir/rss" "$bin" show --check "$show" >/dev/null
  end=$(date +%s.%N)
  printf '%-8s %-10s %-10.2f %s\n' "$n" "$(stat -c %s "$show")" "$(echo "$end - $start" | bc)" "$(cat "$dir/rss")"
done
