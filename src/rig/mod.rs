//! Measuring rigs: what the tests, the benchmarks and the `convoy demo` / `convoy tool
//! scenario` / `convoy tool impair` commands use to put bikes under stress and measure them,
//! and what a bike on the road never runs. [`impair`] is the userspace UDP impairment relay
//! (delay, jitter, loss, duplication, stalls, and named WiFi profiles), [`measure`] reads the virtual sinks'
//! recordings and computes true playback offsets, `tun` carries the same model at the IP
//! layer between network namespaces (TCP: the Snapcast comparison), [`flood`] is the hostile sender of the
//! threat model, [`scenario`] starts a fleet of `convoy node` processes behind relays and
//! prints the figures, [`eval`] scores beat tracking like `mir_eval.beat`, [`sync_sim`] runs
//! one follower's real clock filter and PLL against the impairment model in simulated time,
//! and [`web_sim`] is a simulated node for the web app. Like `cli`, the scenario reports with `anyhow`: it
//! is a front door for a person running it, not a domain.
//!
//! The module is compiled only with the cargo feature `rig` (and for the library's own unit
//! tests, which use `impair::Rng` and [`eval`] whatever the features). `rig` is a
//! **default** feature, so a clean clone's `bash tools/run.sh` (`convoy demo`), `bash
//! tools/test.sh`, plain `cargo test` and the examples need no flags, and no integration
//! test is ever skipped for lack of a feature. The Pi binaries leave it out: `tools/cross.sh`
//! builds them with `--no-default-features --features cpal-output` (and
//! `--no-default-features` for the no-ALSA variant), so `convoy demo`, `tool scenario` and
//! `tool impair` do not exist there (`--help` does not list them). `tools/test.sh` also lints
//! and builds every target without the feature. Targets that need it say so with
//! `required-features = ["rig"]` in `Cargo.toml`. Measured 2026-12-07, x86-64 release
//! (cpal): 12.75 MB stripped with the rigs, 12.18 MB without (−0.59 MB, −4.6 %).

pub mod eval;
pub mod flood;
pub mod impair;
pub mod measure;
#[cfg(feature = "rig")]
pub mod scenario;
pub mod sync_sim;
#[cfg(all(feature = "rig", target_os = "linux"))]
pub mod tun;
pub mod web_sim;

/// Ask a child process (a `convoy node` the rig started) to shut down cleanly with SIGTERM,
/// so it flushes its recordings. Errors (the child already exited) are ignored: the caller
/// waits for the child next either way.
#[cfg(feature = "rig")]
pub fn terminate(child: &std::process::Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}
