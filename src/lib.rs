//! # Convoy
//!
//! A synchronized music-and-light show controller for fleets of vehicles: every bike decodes
//! and plays the track itself, locked to one fleet timeline, and drives its LED strip from
//! the music.
//!
//! # Layout
//!
//! - [`clock`] — the monotonic clock, injectable local clock skew, NTP/OSC timestamps: the
//!   only place that converts between kinds of time.
//! - [`config`] — `config/default.toml` (embedded) layered with a user file and `--set`
//!   overrides; one validation for every entry point.
//! - [`audio`] — decode (symphonia) → resample with live speed adjustment (rubato) →
//!   lock-free ring → sink (`cpal`, `null`, `virtual`); the player reports which track frame
//!   is heard when, and takes speed/seek decisions from a controller.
//! - [`cli`] — the command-line front door; the only place that uses `anyhow`.

pub mod audio;
pub mod cli;
pub mod clock;
pub mod config;
