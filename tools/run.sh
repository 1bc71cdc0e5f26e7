#!/usr/bin/env bash
# Set up and run Convoy's main job on the embedded defaults: no sound card, Arduino or
# network needed (the `auto` sink falls back to the null sink). Extra arguments go to
# `convoy play`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/convoy" play "${@:-demo}"
