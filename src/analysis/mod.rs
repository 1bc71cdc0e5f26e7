//! Music analysis for Convoy: pure DSP on mono `f32` samples.
//!
//! Offline, [`analyze_offline`] turns a whole track into a [`Beatmap`] (tempo,
//! tempo curve, beats, downbeats, bars, sections and band envelopes) that the
//! show scheduler reads; live, [`LiveAnalyzer`] turns blocks of samples into a
//! stream of [`Event`]s (band levels every hop, onsets, tempo updates and
//! predicted beats) for tracks without a beatmap. Both share one STFT front
//! end ([`bands`]), spectral-flux onsets ([`onset`]) and the autocorrelation
//! tempo estimator ([`tempo`]); the offline path adds Ellis' dynamic-programming
//! beat tracker, meter and section analysis ([`beat`]). Nothing in this module
//! does I/O, spawns threads or uses async; the caller runs it on its own thread.
//! Positions are sample indices in the analysed stream so every bike that
//! analyses the same samples derives the same events.

pub mod bands;
pub mod beat;
pub mod beatmap;
pub mod features;
pub mod live;
pub mod onset;
pub mod synth;
pub mod tempo;

#[cfg(test)]
mod tests;

pub use bands::{BandAnalyzer, BandConfig, BandFrame, BandLayout, StftConfig};
pub use beat::{BeatConfig, MeterEstimate};
pub use beatmap::{Bar, Beatmap, BeatmapError, Envelopes, Section, TrackInfo, LOW_CONFIDENCE};
pub use live::{BeatGrid, LiveAnalyzer, LiveBeatTracker, LiveConfig};
pub use onset::{Onset, OnsetConfig};
pub use tempo::{TempoConfig, TempoEstimate};

pub use features::{FrameRows, MemoryRows, RowStore};

use beatmap::round_time;
use features::{Frames, FrontEnd};
use onset::envelope_delay_samples;

/// All analysis settings; `Default` gives the tuned values.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisParams {
    /// STFT geometry of the offline analysis (default 2048-point FFT, hop 512).
    pub stft: StftConfig,
    /// STFT geometry of the live analysis (default 2048-point FFT, hop 256;
    /// see [`StftConfig::live`]).
    pub live_stft: StftConfig,
    /// Band layout, smoothing, AGC and gate.
    pub bands: BandConfig,
    /// Onset detection.
    pub onset: OnsetConfig,
    /// Tempo search range and prior.
    pub tempo: TempoConfig,
    /// Offline beat tracker.
    pub beat: BeatConfig,
    /// Live tracker.
    pub live: LiveConfig,
    /// Window of the offline local-tempo estimate in seconds (default 8).
    pub tempo_window_s: f32,
    /// Hop of the offline local-tempo estimate in seconds (default 1).
    pub tempo_hop_s: f32,
    /// Consider 3/4 when it is clearly better than 4/4 (default true).
    pub allow_triple_meter: bool,
    /// Frame rate of the beatmap envelopes in Hz (default 20).
    pub envelope_rate_hz: f32,
    /// Content hash copied into [`TrackInfo::content_hash`].
    pub content_hash: String,
}

impl Default for AnalysisParams {
    fn default() -> Self {
        Self {
            stft: StftConfig::default(),
            live_stft: StftConfig::live(),
            bands: BandConfig::default(),
            onset: OnsetConfig::default(),
            tempo: TempoConfig::default(),
            beat: BeatConfig::default(),
            live: LiveConfig::default(),
            tempo_window_s: 8.0,
            tempo_hop_s: 1.0,
            allow_triple_meter: true,
            envelope_rate_hz: 20.0,
            content_hash: String::new(),
        }
    }
}

/// A predicted beat from the live tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// Sample position of the beat in the track (may be slightly ahead of the
    /// samples consumed so far: beats are emitted shortly before they occur).
    pub sample_pos: u64,
    /// Tempo at the time of the prediction.
    pub bpm: f32,
    /// Confidence of the tempo estimate, `0..=1`.
    pub confidence: f32,
}

/// A live tempo re-estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempoUpdate {
    /// Sample position of the frame at which the estimate was made.
    pub sample_pos: u64,
    /// Estimated tempo in BPM.
    pub bpm: f32,
    /// Normalised autocorrelation at the beat period, `0..=1`.
    pub confidence: f32,
}

/// An event from the [`LiveAnalyzer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// Band levels of one hop.
    Bands(BandFrame),
    /// A detected onset.
    Onset(Onset),
    /// A predicted beat.
    Beat(Beat),
    /// A tempo re-estimate.
    Tempo(TempoUpdate),
}

/// Analyses a whole track into a [`Beatmap`]. Never panics: empty, silent,
/// very short or non-finite input yields a valid beatmap without beats. The same
/// as feeding `samples` to an [`OfflineAnalyzer`] (in memory) in one block.
pub fn analyze_offline(samples: &[f32], sample_rate: u32, params: &AnalysisParams) -> Beatmap {
    let mut rows = MemoryRows::default();
    let mut analyzer = OfflineAnalyzer::new(sample_rate, params, &mut rows);
    analyzer.push(samples);
    analyzer.finish()
}

/// The offline analysis of a track fed in blocks: [`push`](Self::push) its mono samples
/// in order (blocks of any size), then [`finish`](Self::finish) for the [`Beatmap`], the
/// same one [`analyze_offline`] gives for the whole track at once. Only frame-rate
/// features are kept (see [`features`]): a track of any length is analysed without
/// holding its samples, and the wide per-frame rows go to the caller's [`RowStore`].
pub struct OfflineAnalyzer<'a> {
    params: AnalysisParams,
    sample_rate: u32,
    num_samples: u64,
    env_rate: f64,
    /// `None` when the sample rate is 0 (nothing to analyse).
    front: Option<FrontEnd<'a>>,
}

impl<'a> OfflineAnalyzer<'a> {
    /// An analyser for a track at `sample_rate` that keeps its wide per-frame rows in
    /// `rows` (which should be empty).
    pub fn new(sample_rate: u32, params: &AnalysisParams, rows: &'a mut dyn RowStore) -> Self {
        let env_rate = if params.envelope_rate_hz.is_finite() && params.envelope_rate_hz > 0.0 {
            params.envelope_rate_hz.min(1000.0) as f64
        } else {
            20.0
        };
        let front = (sample_rate > 0).then(|| FrontEnd::new(sample_rate, params, env_rate, rows));
        Self {
            params: params.clone(),
            sample_rate,
            num_samples: 0,
            env_rate,
            front,
        }
    }

    /// Feeds the next mono samples of the track.
    pub fn push(&mut self, samples: &[f32]) {
        self.num_samples += samples.len() as u64;
        if let Some(front) = &mut self.front {
            front.push(samples);
        }
    }

    /// Samples fed so far.
    pub fn samples(&self) -> u64 {
        self.num_samples
    }

    /// The beatmap of the samples fed.
    pub fn finish(self) -> Beatmap {
        let (sample_rate, params, env_rate) = (self.sample_rate, &self.params, self.env_rate);
        let sr = sample_rate.max(1);
        let duration = if sample_rate == 0 {
            0.0
        } else {
            self.num_samples as f64 / sr as f64
        };
        let track = TrackInfo {
            sample_rate,
            num_samples: self.num_samples,
            duration_s: round_time(duration),
            content_hash: params.content_hash.clone(),
        };
        let mut map = Beatmap::empty(track);
        map.envelopes.frame_rate_hz = env_rate;
        map.confidence = Some(0.0);
        let Some(front) = self.front.filter(|_| self.num_samples > 0) else {
            return map;
        };
        let cfg = front.config();
        let fr = front.finish();
        decide(map, &fr, cfg, sr, duration, params)
    }
}

/// The decisions on a track's frame features: tempo, beats, meter, bars and sections.
fn decide(
    mut map: Beatmap,
    fr: &Frames<'_>,
    cfg: StftConfig,
    sr: u32,
    duration: f64,
    params: &AnalysisParams,
) -> Beatmap {
    let env_rate = map.envelopes.frame_rate_hz;
    let hop = cfg.hop as f64;
    let frame_rate = sr as f32 / cfg.hop as f32;
    let delay_s = envelope_delay_samples(cfg.fft_size) / sr as f64;
    let frame_time = |k: usize| -> f64 { (k as f64 * hop / sr as f64 - delay_s).max(0.0) };

    map.envelopes.values = envelopes(&fr.slots, duration, env_rate);

    // Tempo curve and beats.
    let mut curve = tempo::tempo_curve(
        &fr.env,
        frame_rate,
        &params.tempo,
        params.tempo_window_s,
        params.tempo_hop_s,
    );
    if !curve.is_empty() {
        let mut sorted = curve.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let med = sorted[sorted.len() / 2];
        // Metrical-level decision on the whole track, applied to the whole curve.
        let resolved = tempo::resolve_level(&fr.env, &fr.low, frame_rate, med, &params.tempo);
        let factor = resolved / med;
        if (factor - 1.0).abs() > 0.01 {
            curve.iter_mut().for_each(|b| *b *= factor);
            sorted.iter_mut().for_each(|b| *b *= factor);
        }
        let med = resolved;
        let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
        if hi / lo < 1.04 {
            // Steady tempo: use one estimate over the whole track.
            let g = tempo::estimate_tempo(&fr.env, frame_rate, &params.tempo);
            let g = [1.0, 2.0, 0.5]
                .iter()
                .map(|f| g.bpm * f)
                .find(|b| *b > 0.0 && (b / med - 1.0).abs() < 0.04)
                .unwrap_or(med);
            curve = vec![g];
        }
    }
    let beat_env = beat::beat_envelope(&fr.env, &fr.high, params.beat.high_weight);
    let mut beat_frames = beat::track_beats(&beat_env, &curve, frame_rate, &params.beat);
    // Where the kick is a regular pulse, the beat is where the kick is.
    if let Some(env) =
        beat::kick_envelope(&beat_env, &fr.kick, &beat_frames, params.beat.kick_weight)
    {
        beat_frames = beat::track_beats(&env, &curve, frame_rate, &params.beat);
    }
    let mut beats: Vec<f64> = Vec::with_capacity(beat_frames.len());
    let mut kept_frames: Vec<usize> = Vec::with_capacity(beat_frames.len());
    for &b in &beat_frames {
        let t = round_time(frame_time(b));
        if t <= duration && beats.last().is_none_or(|&l| t > l) {
            beats.push(t);
            kept_frames.push(b);
        }
    }
    map.confidence = Some(beat::grid_confidence(&beat_env, &kept_frames));
    if beats.len() < 2 {
        map.sections = sections_without_beats(fr, cfg, sr, duration);
        return map;
    }
    map.tempo_bpm = round_bpm(global_tempo(&beats));
    map.tempo_curve = tempo_curve_points(&beats);

    // Meter, bars, downbeats.
    let meter = beat::estimate_meter(
        &kept_frames,
        &fr.low,
        &fr.bass_spec(),
        &fr.chroma(),
        params.allow_triple_meter,
    );
    let m = meter.beats_per_bar;
    map.beats_per_bar = m as u32;
    let mut bars = Vec::new();
    let mut starts: Vec<usize> = meter.downbeats.clone();
    starts.retain(|&i| i < beats.len());
    if starts.first().is_none_or(|&f| f > 0) {
        // A pickup (bar 0) before the first downbeat.
        starts.insert(0, 0);
    }
    let pickup = meter.downbeats.first().is_none_or(|&f| f > 0);
    for (k, &first) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(beats.len());
        bars.push(Bar {
            number: if pickup { k as u32 } else { k as u32 + 1 },
            start_s: beats[first],
            first_beat: first as u32,
            beat_count: (end - first) as u32,
        });
    }
    map.downbeats = bars
        .iter()
        .filter(|b| b.number >= 1)
        .map(|b| b.start_s)
        .collect();
    // Sections on bar boundaries.
    let bar_frames: Vec<usize> = bars
        .iter()
        .map(|b| kept_frames[b.first_beat as usize])
        .collect();
    let spans = beat::segment(&bar_frames, &fr.log_db(), &fr.level, fr.env.len());
    map.sections = spans_to_sections(&spans, &frame_time, duration);
    map.bars = bars;
    map.beats = beats;
    map
}

fn round_bpm(b: f64) -> f64 {
    if b.is_finite() {
        (b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// Robust global tempo: mean of the inter-beat intervals within 10% of the median.
fn global_tempo(beats: &[f64]) -> f64 {
    let mut ibi: Vec<f64> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    if ibi.is_empty() {
        return 0.0;
    }
    ibi.sort_by(|a, b| a.total_cmp(b));
    let med = ibi[ibi.len() / 2];
    let good: Vec<f64> = ibi
        .iter()
        .copied()
        .filter(|v| (v / med - 1.0).abs() < 0.1)
        .collect();
    let mean = good.iter().sum::<f64>() / good.len().max(1) as f64;
    if mean > 0.0 {
        60.0 / mean
    } else {
        0.0
    }
}

/// Local tempo at each beat (±4 beats), emitted when it moves by more than 1.5 BPM.
fn tempo_curve_points(beats: &[f64]) -> Vec<(f64, f64)> {
    let n = beats.len();
    let mut out: Vec<(f64, f64)> = Vec::new();
    for i in 0..n {
        let a = i.saturating_sub(4);
        let b = (i + 4).min(n - 1);
        if b <= a {
            continue;
        }
        let bpm = 60.0 * (b - a) as f64 / (beats[b] - beats[a]);
        if !bpm.is_finite() {
            continue;
        }
        let bpm = (bpm * 10.0).round() / 10.0;
        if out.last().is_none_or(|l| (l.1 - bpm).abs() > 1.5) {
            out.push((beats[i], bpm));
        }
    }
    out
}

fn spans_to_sections(
    spans: &[beat::SectionSpan],
    frame_time: &dyn Fn(usize) -> f64,
    duration: f64,
) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::with_capacity(spans.len());
    let n = spans.len();
    for (i, s) in spans.iter().enumerate() {
        let start = if i == 0 {
            0.0
        } else {
            round_time(frame_time(s.start_frame))
        };
        let end = if i + 1 == n {
            round_time(duration)
        } else {
            round_time(frame_time(s.end_frame))
        };
        if end > start {
            out.push(Section {
                start_s: start,
                end_s: end,
                label: s.label.clone(),
                energy: ((s.energy * 1000.0).round() / 1000.0).clamp(0.0, 1.0),
            });
        }
    }
    out
}

fn sections_without_beats(
    fr: &Frames<'_>,
    cfg: StftConfig,
    sr: u32,
    duration: f64,
) -> Vec<Section> {
    let _ = (cfg, sr);
    if duration <= 0.0 {
        return Vec::new();
    }
    let loud = fr.level.iter().any(|v| *v > 1e-4);
    vec![Section {
        start_s: 0.0,
        end_s: round_time(duration),
        label: "A".into(),
        energy: if loud { 1.0 } else { 0.0 },
    }]
}

/// Low/mid/high envelopes at `rate` Hz as `u8`, linear amplitude relative to
/// each band's 99th percentile over the track. `slots` holds the loudest raw
/// amplitude of each band in each envelope frame (see [`features`]).
fn envelopes(slots: &[[f32; 3]], duration: f64, rate: f64) -> Vec<Vec<u8>> {
    let n_out = (duration * rate).ceil() as usize;
    let mut slots = slots.to_vec();
    slots.resize(n_out, [0.0; 3]);
    (0..3)
        .map(|b| {
            let mut v: Vec<f32> = slots.iter().map(|s| s[b]).collect();
            v.sort_by(|a, c| a.total_cmp(c));
            let p99 = v
                .get(((v.len() as f64 * 0.99) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0);
            slots
                .iter()
                .map(|s| {
                    if p99 > 1e-4 {
                        ((s[b] / p99).clamp(0.0, 1.0) * 255.0).round() as u8
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

/// Apply one `KEY=VALUE` override of a numeric setting (the evaluation tools' `--live` and
/// `--offline`): `field` maps a key to its setting, `what` names the settings in the error.
fn set_numeric<'a>(
    assignment: &str,
    what: &str,
    field: impl FnOnce(&str) -> Option<&'a mut f32>,
) -> Result<(), String> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{assignment}`"))?;
    let v: f32 = value
        .parse()
        .map_err(|e| format!("{key}: `{value}` is not a number: {e}"))?;
    *field(key).ok_or_else(|| format!("unknown {what} setting `{key}`"))? = v;
    Ok(())
}
