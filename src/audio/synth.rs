//! Generated tracks: the embedded demo song (so `convoy play` works on any machine with no
//! files), the position pilot, and test tones. Each is a pure function of the frame index,
//! so they stream without memory, seek exactly, and come out identical on every node.

use super::pilot;
use super::source::{AudioError, Source, TrackSpec};

/// Tempo of the demo song, BPM.
pub const DEMO_BPM: f64 = 124.0;
/// Bars in the demo song (4/4).
pub const DEMO_BARS: u64 = 16;

/// What a generated track plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// The demo song: kick on every beat, clap on 2 and 4, off-beat hats, a bass line and a
    /// pad over Am–F–C–G, with a two-bar intro. Beats fall exactly on multiples of 60/124 s.
    Demo,
    /// The position pilot ([`pilot`]).
    Pilot,
    /// A sine at this frequency (Hz), amplitude 0.5, on every channel.
    Sine(f64),
}

/// A track computed sample by sample.
pub struct GeneratedSource {
    signal: Signal,
    spec: TrackSpec,
    next: u64,
}

impl GeneratedSource {
    /// `seconds` of `signal` at `sample_rate`, stereo.
    pub fn new(signal: Signal, sample_rate: u32, seconds: f64) -> Self {
        GeneratedSource {
            signal,
            spec: TrackSpec {
                sample_rate,
                channels: 2,
                frames: Some((seconds * sample_rate as f64).round() as u64),
            },
            next: 0,
        }
    }

    /// The embedded demo song at its native 44.1 kHz.
    pub fn demo() -> Self {
        let seconds = DEMO_BARS as f64 * 4.0 * 60.0 / DEMO_BPM;
        Self::new(Signal::Demo, 44_100, seconds)
    }

    /// One stereo frame of `signal` at `frame`.
    pub fn frame(signal: Signal, frame: u64, rate: u32) -> [f32; 2] {
        match signal {
            Signal::Pilot => pilot::encode(frame as f64),
            Signal::Sine(f) => {
                let v =
                    (0.5 * (std::f64::consts::TAU * f * frame as f64 / rate as f64).sin()) as f32;
                [v, v]
            }
            Signal::Demo => demo_frame(frame, rate),
        }
    }
}

impl Source for GeneratedSource {
    fn spec(&self) -> TrackSpec {
        self.spec
    }

    fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, AudioError> {
        let end = self.spec.frames.unwrap_or(u64::MAX);
        let n = (end.saturating_sub(self.next)).min(max_frames as u64) as usize;
        out.reserve(n * 2);
        for i in 0..n as u64 {
            out.extend_from_slice(&Self::frame(
                self.signal,
                self.next + i,
                self.spec.sample_rate,
            ));
        }
        self.next += n as u64;
        Ok(n)
    }

    fn seek(&mut self, frame: u64) -> Result<(), AudioError> {
        self.next = frame.min(self.spec.frames.unwrap_or(u64::MAX));
        Ok(())
    }

    fn name(&self) -> String {
        match self.signal {
            Signal::Demo => "demo".into(),
            Signal::Pilot => "pilot".into(),
            Signal::Sine(f) => format!("sine {f} Hz"),
        }
    }
}

/// Deterministic white noise in [-1, 1) from an index (a 64-bit mix, no state).
fn noise(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn midi_hz(note: f64) -> f64 {
    440.0 * 2f64.powf((note - 69.0) / 12.0)
}

fn demo_frame(frame: u64, rate: u32) -> [f32; 2] {
    use std::f64::consts::TAU;
    let rate_f = rate as f64;
    let t = frame as f64 / rate_f;
    let beat_len = 60.0 / DEMO_BPM;
    let beat_f = t / beat_len;
    let beat = beat_f.floor();
    let tb = t - beat * beat_len; // time since the beat
    let bar = (beat / 4.0).floor() as u64;
    let beat_in_bar = (beat as u64) % 4;
    let intro = bar < 2;
    // Am, F, C, G roots (MIDI) per bar.
    let roots = [57.0, 53.0, 48.0, 55.0];
    let root = roots[(bar % 4) as usize];

    let mut mono = 0.0;
    if !intro {
        // Kick: pitch sweep 150 → 45 Hz, 120 ms decay; phase is the integral of the sweep.
        let f0 = 45.0;
        let f1 = 105.0;
        let k = 30.0;
        let phase = TAU * (f0 * tb + f1 * (1.0 - (-k * tb).exp()) / k);
        mono += 0.9 * phase.sin() * (-tb / 0.12).exp();
        // Clap on 2 and 4.
        if beat_in_bar % 2 == 1 {
            mono += 0.35 * noise(frame) * (-tb / 0.06).exp();
        }
        // Bass: eighth notes on the root, an octave down.
        let te = t % (beat_len / 2.0);
        let bf = midi_hz(root - 24.0);
        let saw = 2.0 * (bf * t).fract() - 1.0;
        mono += 0.22 * saw * (-te / 0.15).exp();
    }
    // Off-beat hat: differenced noise is a cheap high-pass.
    let th = (tb - beat_len / 2.0).max(0.0);
    if tb >= beat_len / 2.0 {
        let hat = noise(frame) - noise(frame.wrapping_sub(1));
        mono += 0.12 * hat * (-th / 0.025).exp();
    }
    // Pad: minor/major triad by bar, slow swell, slightly detuned left/right.
    let third = if bar % 4 == 0 { 3.0 } else { 4.0 };
    let mut left = mono;
    let mut right = mono;
    for (i, interval) in [0.0, third, 7.0].iter().enumerate() {
        let f = midi_hz(root + interval);
        let amp = 0.05 * (1.0 - (-((t % (4.0 * beat_len)) / 0.8)).exp());
        left += amp * (TAU * f * t + i as f64).sin();
        right += amp * (TAU * f * 1.003 * t + i as f64).sin();
    }
    [
        (0.8 * left).clamp(-1.0, 1.0) as f32,
        (0.8 * right).clamp(-1.0, 1.0) as f32,
    ]
}
