//! Spectral-flux onset detection with adaptive thresholding and peak picking.
//!
//! Each magnitude spectrum is reduced to a bank of log-spaced bands whose
//! energies are log-compressed (`ln(1 + gamma * e)`); the onset strength of a
//! frame is the weighted mean of the half-wave rectified band-wise increase
//! over the previous frame. A separate low-frequency strength (bands below the
//! low/mid edge) is kept for metrical-level and downbeat estimation, and a
//! high-frequency one (bands above `high_hz`: snare, hats) for the beat phase,
//! and a kick strength: the rectified increase of the plain (uncompressed)
//! amplitude below `kick_hz` (75 Hz), where the loudest low hit, the kick, outweighs a
//! quieter bass stab that log compression would make its equal. Onsets are picked where the
//! (peak-normalised) strength is a local maximum that exceeds a moving median
//! plus an offset; picking needs `post` frames of look-ahead, so an onset is
//! reported a few hops after it happened, stamped with its own sample position.
//! Nothing here allocates after construction.

/// How far (in samples) the onset-strength peak of frame `k` (position
/// `k * hop`) lags the true onset, for an STFT of `fft_size` points: onset
/// and beat times are `k * hop - envelope_delay_samples(fft_size)`.
///
/// The lag is an eighth of the window whatever the hop: with the strong log
/// compression the flux peaks once an onset is about an eighth into the Hann
/// window. Calibrated on the synthetic clicks and drums of
/// [`super::synth::corpus`] (median signed error of the live beats): −1.8 ms
/// at 2048/512 and −0.1 ms at 2048/256 (the live geometry). Half a hop, as
/// this once was, is the same at hop 512 but left hop 256 +2.8 ms late.
pub fn envelope_delay_samples(fft_size: usize) -> f64 {
    fft_size as f64 / 8.0
}

/// Onset detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnsetConfig {
    /// Number of log-spaced bands the flux is computed on (default 40).
    pub n_bands: usize,
    /// Lowest band edge in Hz (default 30).
    pub min_hz: f32,
    /// Highest band edge in Hz (default 16000, capped at Nyquist).
    pub max_hz: f32,
    /// Compression factor of `ln(1 + gamma * energy)` (default 1e4).
    pub gamma: f32,
    /// Bands below this frequency form the low-frequency strength (default 250).
    pub low_hz: f32,
    /// Bands above this frequency form the high-frequency strength (default 3000):
    /// snare and hi-hat, which mark the beat where kick and bass are syncopated.
    pub high_hz: f32,
    /// The kick strength is the amplitude increase of the bins from `min_hz`
    /// up to this frequency (default 75 Hz: the sub-bass of a kick, below
    /// most bass lines' fundamentals; at 120 Hz an off-beat bass stab at
    /// 87–110 Hz weighed as much as the kick).
    pub kick_hz: f32,
    /// Weight of the low bands in the overall strength (default 1.0 = flat).
    pub low_weight: f32,
    /// Moving-median window before the candidate, seconds (default 0.3).
    pub median_pre_s: f32,
    /// Look-ahead frames used for peak picking (default 3).
    pub post_frames: usize,
    /// Local-maximum window before the candidate, frames (default 3).
    pub max_pre_frames: usize,
    /// Threshold offset above the median, in units of the running peak (default 0.1).
    pub delta: f32,
    /// Minimum spacing of two onsets in seconds (default 0.04).
    pub min_gap_s: f32,
    /// Decay time constant of the running peak used for normalisation, s (default 6).
    pub peak_release_s: f32,
}

impl Default for OnsetConfig {
    fn default() -> Self {
        Self {
            n_bands: 40,
            min_hz: 30.0,
            max_hz: 16000.0,
            gamma: 1e6,
            low_hz: 250.0,
            high_hz: 3000.0,
            kick_hz: 75.0,
            low_weight: 1.0,
            median_pre_s: 0.3,
            post_frames: 3,
            max_pre_frames: 3,
            delta: 0.1,
            min_gap_s: 0.04,
            peak_release_s: 6.0,
        }
    }
}

/// A detected onset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Onset {
    /// Estimated sample position of the onset in the input stream.
    pub sample_pos: u64,
    /// Peak-normalised strength (about `0..=1`, can exceed 1 on sudden peaks).
    pub strength: f32,
}

/// Per-frame output of the onset detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnsetFrame {
    /// Sample position of the frame (first sample of its hop).
    pub sample_pos: u64,
    /// Onset strength (weighted mean rectified log-flux); `>= 0`.
    pub strength: f32,
    /// Low-frequency part of the strength; `>= 0`.
    pub low_strength: f32,
    /// High-frequency part of the strength (bands above `high_hz`); `>= 0`.
    pub high_strength: f32,
    /// Kick strength: increase of the plain amplitude below `kick_hz` over
    /// the previous frame, in the spectrum's magnitude units; `>= 0`.
    pub kick_strength: f32,
    /// Onset picked at an earlier frame (peak picking has look-ahead).
    pub onset: Option<Onset>,
}

/// Streaming spectral-flux onset detector fed by magnitude spectra.
#[derive(Debug, Clone)]
pub struct OnsetDetector {
    cfg: OnsetConfig,
    bin_band: Vec<u16>,
    n_bands: usize,
    weights: Vec<f32>,
    low: Vec<bool>,
    high: Vec<bool>,
    weight_sum: f32,
    low_count: f32,
    high_count: f32,
    /// Bins of the kick strength (`kick_bins.0..kick_bins.1`).
    kick_bins: (usize, usize),
    prev_kick: f32,
    energies: Vec<f32>,
    prev: Vec<f32>,
    have_prev: bool,
    /// Ring of normalised strengths (for picking).
    hist: Vec<f32>,
    hist_pos: Vec<u64>,
    hist_len: usize,
    head: usize,
    scratch: Vec<f32>,
    peak: f32,
    peak_decay: f32,
    median_pre: usize,
    min_gap: u64,
    last_onset_frame: Option<u64>,
    frames: u64,
    /// Offset subtracted from frame positions to estimate onset positions.
    lag_samples: i64,
}

impl OnsetDetector {
    /// Creates a detector for spectra with `n_bins` bins at `sample_rate`,
    /// produced every `hop` samples by an FFT of `(n_bins - 1) * 2` points.
    pub fn new(sample_rate: u32, n_bins: usize, hop: usize, cfg: &OnsetConfig) -> Self {
        let sr = sample_rate.max(1) as f32;
        let nyq = sr / 2.0;
        let n_fft = (n_bins.max(2) - 1) * 2;
        let bin_hz = sr / n_fft as f32;
        let n_bands = cfg.n_bands.clamp(1, 256);
        let min_hz = if cfg.min_hz.is_finite() {
            cfg.min_hz.max(1.0).min(nyq * 0.5)
        } else {
            30.0f32.min(nyq * 0.5)
        };
        let max_hz = if cfg.max_hz.is_finite() {
            cfg.max_hz.max(min_hz * 1.01).min(nyq.max(min_hz * 1.01))
        } else {
            nyq.max(min_hz * 1.01)
        };
        let ratio = (max_hz / min_hz).ln();
        let mut bin_band = Vec::with_capacity(n_bins);
        for b in 0..n_bins {
            let f = b as f32 * bin_hz;
            if f < min_hz || f > max_hz {
                bin_band.push(u16::MAX);
            } else {
                let x = ((f / min_hz).ln() / ratio * n_bands as f32) as usize;
                bin_band.push(x.min(n_bands - 1) as u16);
            }
        }
        let mut counts = vec![0usize; n_bands];
        for &b in &bin_band {
            if b != u16::MAX {
                counts[b as usize] += 1;
            }
        }
        let low_w = if cfg.low_weight.is_finite() {
            cfg.low_weight.max(0.0)
        } else {
            1.0
        };
        let mut weights = vec![0.0f32; n_bands];
        let mut low = vec![false; n_bands];
        let mut high = vec![false; n_bands];
        for i in 0..n_bands {
            let hi_edge = min_hz * (((i + 1) as f32) / n_bands as f32 * ratio).exp();
            let lo_edge = min_hz * ((i as f32) / n_bands as f32 * ratio).exp();
            low[i] = hi_edge <= cfg.low_hz.max(min_hz * 1.5);
            high[i] = cfg.high_hz.is_finite() && lo_edge >= cfg.high_hz;
            // Empty bands (narrower than a bin) carry no weight.
            weights[i] = if counts[i] == 0 {
                0.0
            } else if low[i] {
                low_w
            } else {
                1.0
            };
        }
        let weight_sum = weights.iter().sum::<f32>().max(1e-6);
        // Non-empty bands in a group (at least 1, a divisor).
        let group_count = |group: &[bool]| {
            group
                .iter()
                .zip(&counts)
                .filter(|(g, c)| **g && **c > 0)
                .count()
                .max(1) as f32
        };
        let (low_count, high_count) = (group_count(&low), group_count(&high));
        let kick_hz = if cfg.kick_hz.is_finite() {
            cfg.kick_hz.clamp(min_hz, max_hz)
        } else {
            120.0f32.clamp(min_hz, max_hz)
        };
        let kick_lo = ((min_hz / bin_hz).ceil() as usize).min(n_bins);
        let kick_hi = ((kick_hz / bin_hz).floor() as usize + 1).clamp(kick_lo, n_bins);
        let frame_rate = sr / hop.max(1) as f32;
        let post = cfg.post_frames.min(32);
        let median_pre = ((cfg.median_pre_s.max(0.0) * frame_rate) as usize).clamp(1, 1024);
        let pre = median_pre.max(cfg.max_pre_frames.min(1024));
        let hist_len = pre + post + 1;
        let peak_decay = if cfg.peak_release_s > 0.0 {
            (-1.0 / (cfg.peak_release_s * frame_rate)).exp()
        } else {
            0.0
        };
        Self {
            cfg: *cfg,
            bin_band,
            n_bands,
            weights,
            low,
            high,
            weight_sum,
            low_count,
            high_count,
            kick_bins: (kick_lo, kick_hi),
            prev_kick: 0.0,
            energies: vec![0.0; n_bands],
            prev: vec![0.0; n_bands],
            have_prev: false,
            hist: vec![0.0; hist_len],
            hist_pos: vec![0; hist_len],
            hist_len,
            head: 0,
            scratch: vec![0.0; hist_len],
            peak: 0.0,
            peak_decay,
            median_pre,
            min_gap: ((cfg.min_gap_s.max(0.0) * frame_rate).round() as u64).max(1),
            last_onset_frame: None,
            frames: 0,
            lag_samples: envelope_delay_samples(n_fft).round() as i64,
        }
    }

    /// Frames of delay between a frame and the moment an onset in it is reported.
    pub fn latency_frames(&self) -> usize {
        self.cfg.post_frames.min(32)
    }

    /// Offset (samples) between a frame's position and the onset time it represents.
    pub fn lag_samples(&self) -> i64 {
        self.lag_samples
    }

    /// Processes one magnitude spectrum.
    pub fn process(&mut self, sample_pos: u64, mags: &[f32]) -> OnsetFrame {
        self.energies.iter_mut().for_each(|e| *e = 0.0);
        let mut total = 0.0f32;
        for (&b, &m) in self.bin_band.iter().zip(mags.iter()) {
            if b != u16::MAX && m.is_finite() {
                self.energies[b as usize] += m * m;
                total += m * m;
            }
        }
        let mut flux = 0.0f32;
        let mut low_flux = 0.0f32;
        let mut high_flux = 0.0f32;
        let g = if self.cfg.gamma.is_finite() && self.cfg.gamma > 0.0 {
            self.cfg.gamma
        } else {
            1e4
        };
        for i in 0..self.n_bands {
            let l = (1.0 + g * self.energies[i]).ln();
            let d = if self.have_prev {
                (l - self.prev[i]).max(0.0)
            } else {
                0.0
            };
            self.prev[i] = l;
            flux += d * self.weights[i];
            if self.low[i] && self.weights[i] > 0.0 {
                low_flux += d;
            }
            if self.high[i] && self.weights[i] > 0.0 {
                high_flux += d;
            }
        }
        let kick_amp = mags
            .get(self.kick_bins.0..self.kick_bins.1)
            .unwrap_or(&[])
            .iter()
            .filter(|m| m.is_finite())
            .map(|m| m * m)
            .sum::<f32>()
            .sqrt();
        // Only a frame the sub-bass dominates counts: a click or a snare
        // leaks into the lowest bins too, but a kick is most of the frame.
        let kick_strength = if self.have_prev && kick_amp >= KICK_SHARE * total.sqrt() {
            (kick_amp - self.prev_kick).max(0.0)
        } else {
            0.0
        };
        self.prev_kick = kick_amp;
        let kick_strength = if kick_strength.is_finite() {
            kick_strength
        } else {
            0.0
        };
        self.have_prev = true;
        let strength = flux / self.weight_sum;
        let low_strength = low_flux / self.low_count;
        let strength = if strength.is_finite() { strength } else { 0.0 };
        let low_strength = if low_strength.is_finite() {
            low_strength
        } else {
            0.0
        };
        let high_strength = high_flux / self.high_count;
        let high_strength = if high_strength.is_finite() {
            high_strength
        } else {
            0.0
        };

        // Peak-normalise for picking.
        self.peak = (self.peak * self.peak_decay).max(strength);
        let norm = strength / self.peak.max(1e-3);
        self.hist[self.head] = norm;
        self.hist_pos[self.head] = sample_pos;
        self.head = (self.head + 1) % self.hist_len;
        self.frames += 1;
        let onset = self.pick();
        OnsetFrame {
            sample_pos,
            strength,
            low_strength,
            high_strength,
            kick_strength,
            onset,
        }
    }

    fn pick(&mut self) -> Option<Onset> {
        let post = self.cfg.post_frames.min(32);
        if self.frames < (post + 1) as u64 {
            return None;
        }
        let len = self.hist_len;
        // Index of the newest entry is head-1; candidate is `post` older.
        let at = |k_back: usize| (self.head + len - 1 - k_back) % len;
        let c = at(post);
        let v = self.hist[c];
        let avail = (self.frames as usize).min(len);
        // Local maximum over [c - max_pre, c + post].
        let max_pre = self.cfg.max_pre_frames.min(len - 1 - post);
        for k in 0..=(post + max_pre) {
            if k >= avail {
                break;
            }
            if k == post {
                continue;
            }
            let o = self.hist[at(k)];
            // Ties resolve to the earliest frame.
            if (k < post && o > v) || (k > post && o >= v) {
                return None;
            }
        }
        // Moving median over [c - median_pre, c + post].
        let n = (post + self.median_pre + 1).min(avail);
        for k in 0..n {
            self.scratch[k] = self.hist[at(k)];
        }
        let s = &mut self.scratch[..n];
        let mid = n / 2;
        s.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
        let median = s[mid];
        let delta = if self.cfg.delta.is_finite() {
            self.cfg.delta
        } else {
            0.1
        };
        if v <= median + delta {
            return None;
        }
        let frame_idx = self.frames - 1 - post as u64;
        if let Some(last) = self.last_onset_frame {
            if frame_idx.saturating_sub(last) < self.min_gap {
                return None;
            }
        }
        self.last_onset_frame = Some(frame_idx);
        let pos = (self.hist_pos[c] as i64 - self.lag_samples).max(0) as u64;
        Some(Onset {
            sample_pos: pos,
            strength: v,
        })
    }
}

/// How far (in samples) the kick strength lags the full-band onset strength
/// for an STFT of `fft_size` points: three quarters of the window. The
/// plain amplitude of the sub-bass rises while the kick's body fills the
/// window, so its increase peaks later than the log-compressed flux (an
/// eighth of the window, [`envelope_delay_samples`]): unaligned, the live
/// beats on a kick-led house groove (`tools/beat-eval/gen_dance.py`) came
/// 36 ms late, at half the window 19 ms.
pub fn kick_delay_samples(fft_size: usize) -> f64 {
    fft_size as f64 * 0.75
}

/// Share of a frame's amplitude (all bins) the bins below `kick_hz` must
/// carry for the frame's kick strength to count: a flat spectrum (a click,
/// noise) puts about 4 % there, a kick most of its energy.
pub const KICK_SHARE: f32 = 0.1;

/// Most grid points [`kick_is_regular`] looks at (on and off the grid each).
pub const KICK_GRID_MAX: usize = 32;

/// How much stronger the kick must be on one side (its weakest quarter of
/// points) than on the other for [`kick_is_regular`]: a bass line or stab
/// as loud as the kick on the other side leaves the phase to the full band.
pub const KICK_DOMINANCE: f32 = 1.5;

/// Share of the kick's typical strength that the weakest quarter of one
/// grid's points must reach for its kick to count as regular (see
/// [`kick_is_regular`]).
pub const KICK_REGULAR: f32 = 0.5;

/// Whether the kick strength is a regular pulse on a beat grid: at the grid's
/// points (`on`) or half-way between them (`off`), each value the strongest
/// kick strength within a sixteenth of a beat (half a 32nd either side) of
/// its point. Regular means that even the weakest quarter
/// of one side's points carries at least [`KICK_REGULAR`] of the kick's
/// typical strength (the upper quartile of all points): a kick on every beat
/// (house, techno, disco), not one on 1 and 3 (rock) or syncopated (funk,
/// breaks), where every other point is empty; and the other side's weakest
/// quarter must be [`KICK_DOMINANCE`] times weaker (an off-beat bass as loud
/// as the kick leaves the question open). Where the kick is regular it
/// shows where the beat is better than the full-band flux, in which off-beat
/// hats and bass stabs can weigh as much: both trackers then weigh it into
/// the envelope their phase follows. At most [`KICK_GRID_MAX`] values per
/// side are used and at least 4 are needed; does not allocate.
pub fn kick_is_regular(on: &[f32], off: &[f32]) -> bool {
    let (n_on, n_off) = (on.len().min(KICK_GRID_MAX), off.len().min(KICK_GRID_MAX));
    if n_on < 4 || n_off < 4 {
        return false;
    }
    let clean = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let mut all = [0.0f32; 2 * KICK_GRID_MAX];
    let quartile = |vals: &[f32], q: f32, buf: &mut [f32]| -> f32 {
        let n = vals.len();
        for (b, v) in buf.iter_mut().zip(vals) {
            *b = clean(*v);
        }
        let s = &mut buf[..n];
        let k = ((n - 1) as f32 * q).round() as usize;
        s.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        s[k]
    };
    let q_on = quartile(&on[..n_on], 0.25, &mut all);
    let q_off = quartile(&off[..n_off], 0.25, &mut all);
    for (b, v) in all.iter_mut().zip(on[..n_on].iter().chain(&off[..n_off])) {
        *b = clean(*v);
    }
    let n = n_on + n_off;
    let k = ((n - 1) as f32 * 0.75).round() as usize;
    all[..n].select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    let typical = all[k];
    let (strong, weak) = (q_on.max(q_off), q_on.min(q_off));
    typical > 0.0 && strong >= KICK_REGULAR * typical && strong >= KICK_DOMINANCE * weak
}
