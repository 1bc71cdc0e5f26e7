#!/usr/bin/env bash
# CPU cost of the live analyser (benches/live_analysis.rs) per second of audio, and its
# share of one Pi Zero 2 W core estimated from instruction counts (docs/pi.md's method).
#
#   tools/beat-eval/live-cpu.sh [--seconds 60] [--ipc 0.7] [--no-aarch64] [-- BENCH ARGS…]
#
# 1. wall time of the x86-64 release build on this machine (median of 5 runs);
# 2. x86-64 instructions of the analysis alone: valgrind --tool=callgrind with
#    --toggle-collect='*stage_live*' (deterministic);
# 3. aarch64 instructions (unless --no-aarch64): the release build for
#    aarch64-unknown-linux-gnu (.cargo/config.toml's linker; tools/cross.sh installs it)
#    under qemu-aarch64 with the counting plugin (tools/qemu-insn), run with --passes 1
#    and --passes 2: the difference is one pass of the analysis without startup and input
#    generation.
# Instructions per audio second ÷ (1 GHz × IPC) = share of one Cortex-A53 core at 1 GHz;
# IPC 0.7 as in docs/pi.md and docs/benchmarks.md (0.6–0.8 plausible: scale by 0.7/IPC).
# Arguments after `--` go to the bench, e.g. `-- --live continuity_octaves=0.1`.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=60
ipc=0.7
aarch64=1
bench_args=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --ipc) ipc=$2; shift 2 ;;
    --no-aarch64) aarch64=0; shift ;;
    --) shift; bench_args=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "live-cpu: unknown argument $1" >&2; exit 2 ;;
  esac
done
target_dir=${CARGO_TARGET_DIR:-target}
out=$target_dir/live-cpu
mkdir -p "$out"

# Path of the bench executable cargo built (from its JSON messages).
bench_exe() {
  cargo build --release --bench live_analysis --message-format=json "$@" |
    python3 -c 'import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("executable")
       and m["target"]["name"] == "live_analysis"]
print(exe[-1])'
}

pct() { python3 -c "import sys; n = float(sys.argv[1]); print(f'{n / 1e6:.2f} M insn per audio second = {100 * n / (1e9 * float(sys.argv[2])):.2f} % of a Pi Zero 2 W core (IPC {sys.argv[2]})')" "$1" "$ipc"; }

exe=$(bench_exe)
echo "== wall time, x86-64 release, this machine"
"$exe" --seconds "$seconds" --repeat 5 "${bench_args[@]}"

echo "== x86-64 instructions (callgrind, stage_live only)"
command -v valgrind >/dev/null || { echo "live-cpu: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
valgrind --tool=callgrind --toggle-collect='*stage_live*' --callgrind-out-file="$out/callgrind.out" \
  "$exe" --seconds "$seconds" --repeat 1 "${bench_args[@]}" >/dev/null 2>"$out/callgrind.log"
ir=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$out/callgrind.out" | head -1)
[[ -n $ir ]] || { echo "live-cpu: no totals in $out/callgrind.out" >&2; exit 1; }
x86_per_s=$(python3 -c "print(int($ir) / float($seconds))")
echo "x86-64: $ir instructions for $seconds s: $(pct "$x86_per_s")"

if ((aarch64)); then
  echo "== aarch64 instructions (qemu-aarch64 + tools/qemu-insn, passes 2 − passes 1)"
  gcc -O2 -shared -fPIC -o "$out/insn.so" tools/qemu-insn/insn.c
  # No ALSA needed: the nocpal variant, as tools/cross.sh builds for the qemu tests.
  aexe=$(bench_exe --target aarch64-unknown-linux-gnu --no-default-features)
  count() {
    qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
      -plugin "$out/insn.so" -d plugin \
      "$aexe" --seconds "$seconds" --repeat 1 --passes "$1" "${bench_args[@]}" \
      >/dev/null 2>"$out/qemu-$1.log"
    sed -n 's/^insns: \([0-9]*\)$/\1/p' "$out/qemu-$1.log" | tail -1
  }
  one=$(count 1)
  two=$(count 2)
  [[ -n $one && -n $two ]] || { echo "live-cpu: no instruction count in $out/qemu-*.log" >&2; exit 1; }
  a_per_s=$(python3 -c "print((int($two) - int($one)) / float($seconds))")
  echo "aarch64: $one (1 pass), $two (2 passes): $(pct "$a_per_s")"
fi
