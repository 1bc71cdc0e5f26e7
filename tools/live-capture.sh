#!/usr/bin/env bash
# The live plane's figures (issue #20, docs/live.md): runs a solo node playing a plain track
# with no show and a follower of a leader, captures every output at once (outbound OSC,
# WLED, OSC feedback, the strip's journal, the EchoFlux-style status polled at 50 Hz) on
# the shared monotonic clock and compares each with the beats and positions the node's
# player heard. Prints one line of figures per node; the tests assert looser bounds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --release --test tests -- live_plane --nocapture --test-threads 1 2>&1 |
  grep -E "^(heard beats|EchoFlux|test )"
