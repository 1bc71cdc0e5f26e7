#!/usr/bin/env bash
# Ableton Link figures (docs/link.md): the gated tests of tests/link.rs against a real aalink
# peer in a network namespace, SECONDS per direction and for the fleet run (default 60).
# Needs root, iproute2 and aalink (tools/setup.sh --test). Prints the follow, lead and loss
# figures of `convoy tool link`, the LED journals of a 3-bike fleet in follow mode against
# aalink's beat (`link fleet`), and `convoy status` against aalink (`link status`).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
CONVOY_LINK_SECONDS="${1:-60}" cargo test --locked --test tests link:: -- --include-ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^link (follow|lead|loss|fleet|status)|test result|panicked'
