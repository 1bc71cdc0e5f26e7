#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each with cargo-fuzz.
# Needs a nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
SECS="${1:-60}"
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
TARGETS=(envelope_open osc_decode framer_length_prefix framer_slip osc_pattern led_protocol fleet_heartbeat timeline_decode sntp_packet http_range)
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "=== $t (${SECS}s)"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 2>&1 \
    | tee "/tmp/fuzz-$t.log" | grep -E "stat::number_of_executed_units|Done|ERROR|panicked" || true
  if grep -qE "^==[0-9]+== ERROR|panicked|SUMMARY: libFuzzer" "/tmp/fuzz-$t.log"; then
    echo "!!! $t found a crash, see /tmp/fuzz-$t.log and fuzz/artifacts/$t" >&2
    exit 1
  fi
done
