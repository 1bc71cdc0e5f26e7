//! Playback: decode (symphonia, on the player thread) → channel map → rate conversion with a
//! live speed adjustment (rubato) → lock-free SPSC ring → the sink's real-time callback. The
//! playback clock is the count of frames the device consumed; every callback leaves a timing
//! sample, from which the player reports which track frame is heard at which monotonic
//! instant — the measurement the sync layer's PLL steers on.

pub mod decode;
pub mod engine;
pub mod output;
pub mod pilot;
pub mod render;
pub mod resample;
pub mod source;
pub mod synth;

pub use engine::{
    Command as PlayerCommand, Control, Controller, EngineOptions, FreeRun, PlaybackReport, Player,
    PlayerStatus,
};
pub use source::{read_mono, AudioError, Source, TrackSpec};

use std::path::Path;

/// Open a track: a file path, or `demo` / `pilot` for the generated tracks.
pub fn open_track(spec: &str) -> Result<Box<dyn Source>, AudioError> {
    match spec {
        "demo" | "builtin:demo" => Ok(Box::new(synth::GeneratedSource::demo())),
        "pilot" | "builtin:pilot" => Ok(Box::new(synth::GeneratedSource::new(
            synth::Signal::Pilot,
            44_100,
            600.0,
        ))),
        path => Ok(Box::new(decode::FileSource::open(Path::new(path))?)),
    }
}

/// Is `spec` one of the generated tracks [`open_track`] knows (no file behind it)?
pub fn is_builtin(spec: &str) -> bool {
    matches!(spec, "demo" | "builtin:demo" | "pilot" | "builtin:pilot")
}
