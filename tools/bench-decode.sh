#!/usr/bin/env bash
# Decode + resample benchmark (docs/benchmarks.md explains the method and the figures).
#
#   tools/bench-decode.sh [--seconds 30] [--repeat 5] [--no-callgrind] [--out DIR]
#
# Makes N seconds of the demo song at 44.1 kHz stereo (16-bit WAV), encodes it to MP3
# (lame -b 192) and FLAC (flac, default level), then for each format runs
# benches/decode_resample.rs:
#   - wall time, median of --repeat runs: decode alone, resample alone, decode+resample,
#     with the sinc resampler (128 taps) and the `fast` cubic one;
#   - instructions per audio-second from valgrind --tool=callgrind (deterministic), counted
#     only inside the measured stage (--toggle-collect on the stage function).
# The table goes to stdout and to DIR/results.tsv. Installs lame, flac and valgrind when
# missing (sudo when not root). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
repeat=5
callgrind=1
out=""
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --no-callgrind) callgrind=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-decode: unknown argument $1" >&2; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-target}
out=${out:-$target_dir/bench-decode}
mkdir -p "$out"

need=()
command -v lame >/dev/null || need+=(lame)
command -v flac >/dev/null || need+=(flac)
((callgrind)) && ! command -v valgrind >/dev/null && need+=(valgrind)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  echo "bench-decode: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "bench-decode: building (release)" >&2
cargo build --release --locked --bin convoy -q
bench=$(cargo build --release --locked --bench decode_resample --message-format=json -q |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "decode_resample" and m.get("executable"):
        print(m["executable"])')
convoy=$target_dir/release/convoy
[[ -x "$bench" && -x "$convoy" ]] || { echo "bench-decode: build failed" >&2; exit 1; }

wav=$out/demo-${seconds}s.wav
if [[ ! -s "$wav" ]]; then
  "$convoy" --log warn tool gen demo "$wav" --seconds "$seconds" --rate 44100 --pcm16
fi
[[ -s ${wav%.wav}.mp3 ]] || lame --quiet -b 192 "$wav" "${wav%.wav}.mp3"
[[ -s ${wav%.wav}.flac ]] || flac --silent -f -o "${wav%.wav}.flac" "$wav"

results=$out/results.tsv
printf 'format\tstage\tresampler\taudio_s\tmedian_wall_s\trtf\tx_realtime\tinstructions\tinsn_per_audio_s\n' >"$results"

# One measurement: wall time (median of $repeat) and, unless disabled, callgrind's count.
measure() {
  local file=$1 fmt=$2 stage=$3 kind=$4
  local args=("$file" --stage "$stage" --resampler "$kind" --taps 128)
  local row
  row=$("$bench" "${args[@]}" --repeat "$repeat" | tail -n 1)
  local audio_s wall rtf xrt
  IFS=$'\t' read -r _ _ audio_s wall rtf xrt _ <<<"$row"
  local insn="" per=""
  if ((callgrind)); then
    local log=$out/callgrind-$fmt-$stage-$kind.log
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      --toggle-collect="*stage_${stage}*" \
      "$bench" "${args[@]}" --repeat 1 >/dev/null 2>"$log"
    insn=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    per=$(python3 -c "print(round($insn / $audio_s))")
  fi
  local resampler=$kind
  [[ $stage == decode ]] && resampler=-
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$fmt" "$stage" "$resampler" "$audio_s" \
    "$wall" "$rtf" "$xrt" "$insn" "$per" | tee -a "$results"
}

echo "bench-decode: $seconds s of the demo song; wall = median of $repeat runs" >&2
printf 'format\tstage\tresampler\taudio_s\tmedian_wall_s\trtf\tx_realtime\tinstructions\tinsn_per_audio_s\n'
for fmt in wav flac mp3; do
  file=${wav%.wav}.$fmt
  measure "$file" "$fmt" decode sinc
  for kind in sinc fast; do
    measure "$file" "$fmt" resample "$kind"
    measure "$file" "$fmt" both "$kind"
  done
done
echo "bench-decode: results in $results" >&2
