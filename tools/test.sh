#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need, starts
# the PulseAudio null sink that the cpal test plays into, then formatting, lints and tests.
# Tests that need something plain `cargo test` cannot assume (the null sink, simavr, liblo,
# python-osc, chrony, chromium, systemd-analyze, root for network namespaces) are
# `#[ignore = "needs …"]`; `--include-ignored` runs them here, so none can pass by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --test
tools/pulse-null.sh
cargo fmt --check
# No GPL in Cargo.lock (the Link library and its Rust ports are GPL: docs/link.md).
python3 tools/license_check.py
cargo clippy --all-targets --locked -- -D warnings
# The Pi binaries' feature set (no `rig`, src/rig/mod.rs): it must lint and build on its own;
# the targets that need the rigs are skipped (required-features).
cargo clippy --all-targets --locked --no-default-features --features cpal-output -- -D warnings
cargo test --locked -- --include-ignored
# Pi release builds (docs/cross.md): aarch64 with its unit tests under qemu-aarch64, armv7
# built and smoke-run under qemu-arm (its tests would double the time for little news).
tools/cross.sh aarch64 --variant cpal --test
tools/cross.sh armv7 --variant cpal
