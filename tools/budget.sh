#!/usr/bin/env bash
# Resource budget of a full Convoy node on a Pi Zero 2 W (docs/pi.md explains the method
# and records the figures).
#
#   tools/budget.sh [--seconds 25] [--track demo|FILE] [--ipc 0.7] [--no-qemu]
#                   [--followers N] [--profile P] [--set key=value]... [--out DIR]
#
# Runs a leader and a follower (`convoy node`, virtual sinks in real time, 127.0.0.1) twice:
#   1. the native release build: startup to playing and peak RSS of each process;
#   2. the aarch64 release build (tools/cross.sh; the cpal one) under qemu-aarch64 with
#      the instruction-counting plugin (tools/qemu-insn): instructions per second, as a
#      share of one 1 GHz Cortex-A53 core at IPC --ipc.
# --followers N runs N followers (only the leader and the first are emulated); --profile P
# puts every follower behind `convoy tool impair --profile P` (default, wifi-city, ...: docs/sync.md).
# --set adds a config override to every node (e.g. --set audio.resampler=fast). Prints a
# table; DIR (default $CARGO_TARGET_DIR/budget) keeps budget.json and the nodes' logs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=25
track=demo
ipc=0.7
qemu=1
out=""
sets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --track) track=$2; shift 2 ;;
    --ipc) ipc=$2; shift 2 ;;
    --no-qemu) qemu=0; shift ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --followers) sets+=(--followers "$2"); shift 2 ;;
    --profile) sets+=(--profile "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "budget: unknown argument $1" >&2; exit 2 ;;
  esac
done
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
out=${out:-$target_dir/budget}
mkdir -p "$out"

echo "budget: building the native release binary" >&2
cargo build --release --locked --bin convoy -q
args=(--native "$target_dir/release/convoy")
if ((qemu)); then
  echo "budget: building the aarch64 binary (tools/cross.sh)" >&2
  tools/cross.sh aarch64 --variant cpal >&2
  gcc -O2 -shared -fPIC -o "$out/insn.so" tools/qemu-insn/insn.c
  # The shipping (cpal) build when libasound2-dev:arm64 was installable, else the nocpal one.
  aarch64=$target_dir/cross-dist/convoy-aarch64
  [[ -x $aarch64 ]] || aarch64=$aarch64-nocpal
  args+=(--aarch64 "$aarch64" --plugin "$out/insn.so")
fi
# A file track is opened by both nodes (the follower takes the leader's track name).
[[ $track == demo || $track == pilot || -f $track ]] ||
  { echo "budget: --track $track: no such file" >&2; exit 2; }
[[ -f $track ]] && track=$(realpath "$track")
python3 tools/budget.py "${args[@]}" --track "$track" --seconds "$seconds" --ipc "$ipc" \
  "${sets[@]}" --workdir "$out" --json "$out/budget.json"
echo "budget: figures in $out/budget.json" >&2
