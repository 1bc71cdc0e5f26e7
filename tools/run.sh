#!/usr/bin/env bash
# Set up and run Convoy's main job on the embedded defaults: `convoy demo`, a 3-bike fleet
# on loopback playing the built-in song and show, the bikes' LED strips drawn in the
# terminal, then the sync figures. No sound card, Arduino or network needed: the lead bike
# plays through the sound card when there is one (`--hear`; otherwise the null sink), the
# others on virtual DACs. Extra arguments go to `convoy demo` (e.g. `--seconds 10`).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/convoy" demo --hear "$@"
