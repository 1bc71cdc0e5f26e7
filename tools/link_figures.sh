#!/usr/bin/env bash
# Ableton Link interop figures (docs/link.md): tests/link.rs against a real aalink peer in
# a network namespace, SECONDS per direction (default 60). Needs root, iproute2 and aalink
# (tools/setup.sh --test). Prints the follow, lead and loss figures.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVOY_LINK_SECONDS="${1:-60}" cargo test --locked --test tests link:: -- --include-ignored --nocapture 2>&1 \
  | grep -E '^link (follow|lead|loss)|test result'
