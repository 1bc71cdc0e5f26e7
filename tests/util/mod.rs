//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub mod netns;
pub mod node;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use convoy::audio::{Control, Controller, PlaybackReport};

pub mod osc;

/// A slot for the tests whose figures depend on being scheduled in time: the
/// PulseAudio device (10 ms periods) and the netns fleets (sub-millisecond bounds).
/// They take it so that no two of them run side by side: on a 2-core CI machine,
/// four bikes in network namespaces starve PulseAudio into underruns, and a bike
/// into missing its samples (one CI run saw both at once). A test that panicked
/// while holding it does not poison it for the others.
pub fn realtime_slot() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Path of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The built `convoy` binary.
pub fn convoy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_convoy"))
}

/// Run the `convoy` binary with `args` (quiet logs): (success, stdout, stderr).
pub fn run_convoy(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(convoy_bin())
        .args(args)
        .env("CONVOY_LOG", "warn")
        .output()
        .expect("convoy runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A controller that only records what the engine reports.
#[derive(Clone, Default)]
pub struct Recording(pub Arc<Mutex<Vec<PlaybackReport>>>);

impl Controller for Recording {
    fn on_report(&mut self, report: &PlaybackReport) -> Control {
        if let Ok(mut v) = self.0.lock() {
            v.push(*report);
        }
        Control::Keep
    }
}

/// One row of a virtual-sink recording.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub heard_at_ns: u64,
    pub device_frame: u64,
    pub ring_frame: u64,
    pub track_frame: Option<f64>,
}

/// Parse a virtual-sink CSV.
pub fn read_recording(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("recording exists");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("heard_at"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                heard_at_ns: f[0].parse().expect("heard_at"),
                device_frame: f[1].parse().expect("device_frame"),
                ring_frame: f[2].parse().expect("ring_frame"),
                track_frame: f[3].parse().ok(),
            }
        })
        .collect()
}

/// Least-squares slope and intercept of y over x.
pub fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

/// Frequency of the dominant tone by counting rising zero crossings (after removing DC).
pub fn zero_crossing_hz(x: &[f32], rate: f64) -> f64 {
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let crossings: Vec<f64> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| (w[0] as f64 - mean) < 0.0 && (w[1] as f64 - mean) >= 0.0)
        .map(|(i, w)| {
            let a = w[0] as f64 - mean;
            let b = w[1] as f64 - mean;
            i as f64 + a / (a - b)
        })
        .collect();
    if crossings.len() < 2 {
        return 0.0;
    }
    (crossings.len() - 1) as f64 * rate / (crossings[crossings.len() - 1] - crossings[0])
}

/// Root mean square.
pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}
