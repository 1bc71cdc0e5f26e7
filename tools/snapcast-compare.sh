#!/usr/bin/env bash
# Snapcast side by side with Convoy, through the same impairment (issue #23; docs/sync.md,
# "Snapcast side by side"). Not part of CI: it needs root (network namespaces, TUN),
# Debian's snapserver/snapclient (installed here with apt if missing) and a few minutes.
#
#   sudo bash tools/snapcast-compare.sh --profile default --nodes 5 --seconds 60
#   sudo bash tools/snapcast-compare.sh --profile wifi-city --nodes 5 --seconds 90
#
# Every option goes to `tools/snapcast_compare.py run` (see its --help): --profile, --nodes,
# --seconds, --seed, --out (default target/snapcast-compare/PROFILE), --clocks
# (perfect,drift), --clock-ppm (200), --snap-buffer-ms. What it does:
#   1. snapserver plays a position-coded raw source (each frame carries its counter) with the
#      pcm codec; one reference snapclient runs next to it unimpaired (Convoy's leader),
#      NODES-1 clients each in a network namespace of their own, reaching the server only
#      through `convoy tool impair-tun` — the same seeded Model (src/rig/impair.rs) that
#      impairs the scenario's UDP, here packet by packet on TCP;
#   2. every client plays with `--player file` into a FIFO; a recorder timestamps each
#      50 ms chunk on CLOCK_MONOTONIC and decodes its first frame;
#   3. `convoy tool scenario` runs the same profile and seed with the same clocks;
#   4. with --clocks drift, both again with every player's clock off by up to ±200 ppm
#      (spread as the scenario spreads it; Snapcast clients through libfaketime);
#   5. one table: lock time, |offset| after lock and in steady state, with load average.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
  echo "snapcast-compare: run as root (sudo): network namespaces and TUN devices" >&2
  exit 1
fi

need=()
command -v snapserver >/dev/null || need+=(snapserver)
command -v snapclient >/dev/null || need+=(snapclient)
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]] || need+=(libfaketime)
if ((${#need[@]})); then
  echo "snapcast-compare: installing ${need[*]} (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
# The packages enable system services; on a machine running systemd they would hold port
# 1704 in the root namespace (harmless: ours runs in its own) and play to ALSA.
if command -v systemctl >/dev/null && systemctl is-active --quiet snapserver 2>/dev/null; then
  echo "snapcast-compare: note: the system snapserver service is running (not used)" >&2
fi

profile=default
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ ${args[i]} == --profile ]] && profile=${args[i + 1]:-default}
  [[ ${args[i]} == --profile=* ]] && profile=${args[i]#--profile=}
done
out=()
[[ " $* " == *" --out "* || " $* " == *" --out="* ]] || out=(--out "target/snapcast-compare/$profile")

# A debug build, as for the other figures of docs/sync.md; as the invoking user when
# run with sudo (SUDO_USER), so target/ stays theirs.
if [[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]]; then
  sudo -u "$SUDO_USER" nice cargo build --bin convoy
else
  nice cargo build --bin convoy
fi
python3 tools/snapcast_compare.py selftest
exec python3 tools/snapcast_compare.py run --convoy target/debug/convoy "${out[@]}" "$@"
