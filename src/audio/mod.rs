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
pub use source::{for_each_mono_block, read_mono, AudioError, Source, TrackSpec};

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

/// The content hash a beatmap of this track carries (`track.content_hash`, as
/// `convoy analyze` writes it): the SHA-256 of a file's bytes, or of a generated track's
/// mono samples (`f32` little-endian), as 64 lowercase hex digits. The built-in tracks are
/// generated once per process.
pub fn content_hash(spec: &str) -> Result<String, AudioError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if matches!(spec, "demo" | "builtin:demo") {
        static DEMO: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
        let hash = DEMO.get_or_init(|| {
            let mut src = open_track(spec).map_err(|e| e.to_string())?;
            let mono = read_mono(src.as_mut(), &mut |_| {}).map_err(|e| e.to_string())?;
            let mut h = Sha256::new();
            for x in &mono {
                h.update(x.to_le_bytes());
            }
            Ok(hex(&h.finalize()))
        });
        return hash.clone().map_err(|reason| AudioError::Decode {
            path: spec.into(),
            reason,
        });
    }
    let open_err = |source| AudioError::Open {
        path: spec.into(),
        source,
    };
    let mut f = std::fs::File::open(spec).map_err(open_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(open_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}
