//! Shows: playlists of tracks with lighting cues tagged to musical positions, and the
//! runner that plays them on the lights in time with the local player.
//!
//! [`model`] reads and validates `shows/*.toml` (errors name file, line and problem),
//! [`schedule`] is the pure cue resolution and scheduling logic (beatmap or live beats →
//! track frames → monotonic send times, with seek detection), [`live`] follows tracks
//! without a beatmap by analysing them a little ahead of playback, and [`runner`] is the
//! tokio task that ties player, schedule and [`crate::led::LedOutput`] together;
//! [`journal`] records what the runner handed to the lights, so runs on several bikes can
//! be compared; [`lint`] warns about show fields no pattern ever shows. The format and the
//! measured timing are documented in `docs/shows.md`.

pub mod journal;
pub mod lint;
pub mod live;
pub mod model;
pub mod runner;
pub mod schedule;

pub use model::{Show, ShowError, VehicleInfo, Warning, WarningKind};
pub use runner::{Fired, Handed, PlayerClock, RunnerOptions, ShowHandle, ShowRunner, ShowStatus};
