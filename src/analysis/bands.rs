//! Streaming short-time Fourier analysis and band-energy extraction.
//!
//! [`Stft`] turns an arbitrarily chunked mono sample stream into Hann-windowed
//! magnitude spectra, one per hop, each tagged with the sample position of the
//! first sample of its newest hop. [`BandMapper`] reduces such a spectrum to a
//! 3-band (low/mid/high) view and an N-band log-spaced view, applies per-band
//! attack/release smoothing, a slow-tracking peak normaliser (automatic gain
//! control, so outputs live in `0..=1` whatever the loudness of the track) and a
//! noise gate. [`BandAnalyzer`] glues the two together. Nothing here allocates
//! after construction.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Largest number of log-spaced bands a [`BandFrame`] can carry.
pub const MAX_LOG_BANDS: usize = 32;

/// Frame geometry of the short-time Fourier transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StftConfig {
    /// FFT (and window) length in samples; rounded up to a power of two and
    /// clamped to `256..=65536`.
    pub fft_size: usize,
    /// Hop between successive frames in samples (clamped to
    /// `fft_size / 16..=fft_size`).
    pub hop: usize,
}

impl Default for StftConfig {
    fn default() -> Self {
        Self {
            fft_size: 2048,
            hop: 512,
        }
    }
}

impl StftConfig {
    /// The live analyser's geometry: the same 2048-point window as offline,
    /// at twice the frame rate (hop 256, 5.8 ms at 44.1 kHz). The live beat
    /// phase can only be as fine as the onset envelope it follows: at hop 256
    /// the live phase error on the beat-eval corpus (clips at the right tempo
    /// level, after 8 s) has p95 14.7 ms against 22.7 ms at hop 512, and the
    /// live beat F rises from 0.893 to 0.913 (`tools/beat-eval/history.md`,
    /// 2026-12-03). It costs 2.4 times the live analysis's instructions
    /// (aarch64: 2.9 % → 7.05 % of a Pi Zero 2 W core). Offline,
    /// which sees the whole track, keeps hop 512: its beats gain nothing from
    /// a finer hop (F 0.949 → 0.940).
    pub fn live() -> Self {
        Self {
            fft_size: 2048,
            hop: 256,
        }
    }

    /// Returns the config with sizes clamped to usable values.
    pub fn sanitized(self) -> Self {
        let fft_size = self.fft_size.clamp(256, 1 << 16).next_power_of_two();
        let hop = self.hop.clamp(fft_size / 16, fft_size);
        Self { fft_size, hop }
    }
}

/// Streaming Hann-windowed STFT producing magnitude spectra.
///
/// Frame `k` covers input samples `[k*hop + hop - fft_size, k*hop + hop)`
/// (samples before the stream start count as zero), so its newest hop starts
/// at sample `k*hop`, which is the position reported with the frame.
pub struct Stft {
    cfg: StftConfig,
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// Circular history of the last `fft_size` samples.
    ring: Vec<f32>,
    ring_pos: usize,
    /// Samples accumulated in the current hop.
    fill: usize,
    /// Total samples consumed.
    consumed: u64,
    buf: Vec<Complex32>,
    scratch: Vec<Complex32>,
    mags: Vec<f32>,
    norm: f32,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("cfg", &self.cfg)
            .field("consumed", &self.consumed)
            .finish()
    }
}

impl Stft {
    /// Creates a new STFT; all buffers are allocated here.
    pub fn new(cfg: StftConfig) -> Self {
        let cfg = cfg.sanitized();
        let n = cfg.fft_size;
        let mut planner = FftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let window: Vec<f32> = (0..n)
            .map(|i| {
                let x = std::f32::consts::PI * 2.0 * i as f32 / n as f32;
                0.5 - 0.5 * x.cos()
            })
            .collect();
        let wsum: f32 = window.iter().sum();
        let scratch = vec![Complex32::default(); fft.get_inplace_scratch_len()];
        Self {
            cfg,
            fft,
            window,
            ring: vec![0.0; n],
            ring_pos: 0,
            fill: 0,
            consumed: 0,
            buf: vec![Complex32::default(); n],
            scratch,
            mags: vec![0.0; n / 2 + 1],
            // A full-scale sine then has a peak magnitude of about 1.0.
            norm: 2.0 / wsum,
        }
    }

    /// The (sanitized) frame geometry.
    pub fn config(&self) -> StftConfig {
        self.cfg
    }

    /// Number of magnitude bins per frame (`fft_size / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.mags.len()
    }

    /// Total number of samples consumed so far.
    pub fn samples_consumed(&self) -> u64 {
        self.consumed
    }

    /// Feeds samples; calls `on_frame(sample_pos, magnitudes)` for every
    /// completed hop. Non-finite samples are treated as silence.
    pub fn push(&mut self, block: &[f32], mut on_frame: impl FnMut(u64, &[f32])) {
        let n = self.cfg.fft_size;
        for &s in block {
            let s = if s.is_finite() {
                s.clamp(-16.0, 16.0)
            } else {
                0.0
            };
            self.ring[self.ring_pos] = s;
            self.ring_pos = (self.ring_pos + 1) % n;
            self.fill += 1;
            self.consumed += 1;
            if self.fill == self.cfg.hop {
                self.fill = 0;
                self.compute();
                let pos = self.consumed - self.cfg.hop as u64;
                on_frame(pos, &self.mags);
            }
        }
    }

    fn compute(&mut self) {
        // The ring's oldest sample is at `ring_pos`: unroll it in two runs.
        let (newer, older) = self.ring.split_at(self.ring_pos);
        let samples = older.iter().chain(newer);
        for ((b, &s), &w) in self.buf.iter_mut().zip(samples).zip(&self.window) {
            *b = Complex32::new(s * w, 0.0);
        }
        self.fft
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        for (m, c) in self.mags.iter_mut().zip(self.buf.iter()) {
            // `norm` is `hypot`, overflow-safe and several times slower;
            // windowed audio samples cannot overflow a square.
            *m = c.norm_sqr().sqrt() * self.norm;
        }
    }
}

/// Which bands are computed and where their edges lie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandLayout {
    /// Upper edge of the low band in Hz (default 250).
    pub low_mid_hz: f32,
    /// Upper edge of the mid band in Hz (default 4000).
    pub mid_high_hz: f32,
    /// Number of log-spaced bands (default 16, at most [`MAX_LOG_BANDS`]).
    pub n_log_bands: usize,
    /// Lowest frequency considered in Hz (default 30).
    pub min_hz: f32,
    /// Highest frequency considered in Hz (default 16000, capped at Nyquist).
    pub max_hz: f32,
}

impl Default for BandLayout {
    fn default() -> Self {
        Self {
            low_mid_hz: 250.0,
            mid_high_hz: 4000.0,
            n_log_bands: 16,
            min_hz: 30.0,
            max_hz: 16000.0,
        }
    }
}

/// Smoothing, gain-control and gate settings for [`BandMapper`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandConfig {
    /// Band edges.
    pub layout: BandLayout,
    /// Attack time constant in seconds (rising values), default 0.01.
    pub attack_s: f32,
    /// Release time constant in seconds (falling values), default 0.15.
    pub release_s: f32,
    /// Time constant of the AGC peak tracker's decay in seconds, default 8.
    pub agc_release_s: f32,
    /// Smallest level (dBFS-ish) the AGC will normalise up to, default -50.
    pub agc_floor_db: f32,
    /// Bands whose level (dBFS-ish) is below this are output as 0, default -70.
    pub gate_db: f32,
}

impl Default for BandConfig {
    fn default() -> Self {
        Self {
            layout: BandLayout::default(),
            attack_s: 0.01,
            release_s: 0.15,
            agc_release_s: 8.0,
            agc_floor_db: -50.0,
            gate_db: -70.0,
        }
    }
}

/// One analysed hop: normalised band levels in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandFrame {
    /// Index (in the input stream) of the first sample of this frame's hop.
    pub sample_pos: u64,
    /// Smoothed, gain-controlled low/mid/high levels in `0..=1`.
    pub bands3: [f32; 3],
    /// Smoothed, gain-controlled log-spaced levels; the first `n_log` are used.
    pub log_bands: [f32; MAX_LOG_BANDS],
    /// Number of valid entries in `log_bands`.
    pub n_log: usize,
    /// Raw (un-normalised) low/mid/high levels in dBFS-ish units.
    pub raw_db3: [f32; 3],
}

impl BandFrame {
    /// The valid log-band levels.
    pub fn log_bands(&self) -> &[f32] {
        &self.log_bands[..self.n_log.min(MAX_LOG_BANDS)]
    }
}

/// Reduces magnitude spectra to smoothed, gain-controlled band levels.
#[derive(Debug, Clone)]
pub struct BandMapper {
    /// For each bin: (3-band index or 255, log-band index or 255).
    bin_map: Vec<(u8, u8)>,
    /// Log bands narrower than a bin borrow the bin nearest their centre.
    extra_bins: [Option<usize>; MAX_LOG_BANDS],
    n_log: usize,
    raw3: [f32; 3],
    rawn: [f32; MAX_LOG_BANDS],
    smooth3: [f32; 3],
    smoothn: [f32; MAX_LOG_BANDS],
    peak3: [f32; 3],
    peakn: [f32; MAX_LOG_BANDS],
    a_att: f32,
    a_rel: f32,
    a_agc: f32,
    agc_floor: f32,
    gate: f32,
}

fn coef(time_s: f32, frame_rate: f32) -> f32 {
    if !(time_s.is_finite() && time_s > 0.0 && frame_rate > 0.0) {
        return 0.0;
    }
    (-1.0 / (time_s * frame_rate)).exp()
}

fn db_to_lin(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

impl BandMapper {
    /// Builds the bin-to-band map for spectra of `n_bins` bins at
    /// `sample_rate`, produced every `hop` samples.
    pub fn new(sample_rate: u32, n_bins: usize, hop: usize, cfg: &BandConfig) -> Self {
        let sr = sample_rate.max(1) as f32;
        let nyq = sr / 2.0;
        let n_fft = (n_bins.max(2) - 1) * 2;
        let bin_hz = sr / n_fft as f32;
        let lay = cfg.layout;
        let n_log = lay.n_log_bands.clamp(1, MAX_LOG_BANDS);
        let min_hz = if lay.min_hz.is_finite() {
            lay.min_hz.max(1.0).min(nyq * 0.5)
        } else {
            30.0f32.min(nyq * 0.5)
        };
        let max_hz = if lay.max_hz.is_finite() {
            lay.max_hz.max(min_hz * 1.01).min(nyq.max(min_hz * 1.01))
        } else {
            nyq
        };
        let lm = if lay.low_mid_hz.is_finite() {
            lay.low_mid_hz
        } else {
            250.0
        };
        let mh = if lay.mid_high_hz.is_finite() {
            lay.mid_high_hz.max(lm)
        } else {
            4000.0f32.max(lm)
        };
        let ratio = (max_hz / min_hz).ln();
        let mut bin_map = Vec::with_capacity(n_bins);
        for b in 0..n_bins {
            let f = b as f32 * bin_hz;
            let b3 = if f < min_hz || f > max_hz {
                255
            } else if f < lm {
                0
            } else if f < mh {
                1
            } else {
                2
            };
            let bn = if f < min_hz || f > max_hz {
                255
            } else {
                let x = ((f / min_hz).ln() / ratio * n_log as f32) as usize;
                x.min(n_log - 1) as u8
            };
            bin_map.push((b3, bn));
        }
        // Every log band that got no bin (narrower than a bin) borrows the
        // bin closest to its centre so the spectrum has no holes.
        let mut counts = [0usize; MAX_LOG_BANDS];
        for &(_, bn) in &bin_map {
            if bn != 255 {
                counts[bn as usize] += 1;
            }
        }
        let mut extra: [Option<usize>; MAX_LOG_BANDS] = [None; MAX_LOG_BANDS];
        for (i, slot) in extra.iter_mut().enumerate().take(n_log) {
            if counts[i] == 0 {
                let centre = min_hz * ((i as f32 + 0.5) / n_log as f32 * ratio).exp();
                let bin = ((centre / bin_hz).round() as usize).min(n_bins.saturating_sub(1));
                *slot = Some(bin);
            }
        }
        let frame_rate = sr / hop.max(1) as f32;
        Self {
            bin_map,
            extra_bins: extra,
            n_log,
            raw3: [0.0; 3],
            rawn: [0.0; MAX_LOG_BANDS],
            smooth3: [0.0; 3],
            smoothn: [0.0; MAX_LOG_BANDS],
            peak3: [0.0; 3],
            peakn: [0.0; MAX_LOG_BANDS],
            a_att: coef(cfg.attack_s, frame_rate),
            a_rel: coef(cfg.release_s, frame_rate),
            a_agc: coef(cfg.agc_release_s, frame_rate),
            agc_floor: db_to_lin(cfg.agc_floor_db.clamp(-150.0, 0.0)),
            gate: db_to_lin(cfg.gate_db.clamp(-150.0, 0.0)),
        }
    }

    /// Number of log bands produced.
    pub fn n_log_bands(&self) -> usize {
        self.n_log
    }

    /// Processes one magnitude spectrum into a [`BandFrame`].
    pub fn process(&mut self, sample_pos: u64, mags: &[f32]) -> BandFrame {
        let mut p3 = [0.0f32; 3];
        let mut pn = [0.0f32; MAX_LOG_BANDS];
        for (&(b3, bn), &m) in self.bin_map.iter().zip(mags.iter()) {
            // Divide by the Hann window's equivalent noise bandwidth (1.5 bins)
            // so a sine's band level equals its peak amplitude.
            let p = if m.is_finite() { m * m / 1.5 } else { 0.0 };
            if b3 != 255 {
                p3[b3 as usize] += p;
            }
            if bn != 255 {
                pn[bn as usize] += p;
            }
        }
        for (i, e) in self.extra_bins.iter().enumerate().take(self.n_log) {
            if let Some(b) = *e {
                let m = mags.get(b).copied().unwrap_or(0.0);
                if m.is_finite() {
                    pn[i] += m * m / 1.5;
                }
            }
        }
        let mut frame = BandFrame {
            sample_pos,
            bands3: [0.0; 3],
            log_bands: [0.0; MAX_LOG_BANDS],
            n_log: self.n_log,
            raw_db3: [0.0; 3],
        };
        for (i, &p) in p3.iter().enumerate() {
            let amp = p.sqrt();
            self.raw3[i] = amp;
            frame.raw_db3[i] = 20.0 * (amp + 1e-9).log10();
            frame.bands3[i] = Self::step(
                amp,
                &mut self.smooth3[i],
                &mut self.peak3[i],
                (
                    self.a_att,
                    self.a_rel,
                    self.a_agc,
                    self.agc_floor,
                    self.gate,
                ),
            );
        }
        for (i, &p) in pn.iter().enumerate().take(self.n_log) {
            let amp = p.sqrt();
            self.rawn[i] = amp;
            frame.log_bands[i] = Self::step(
                amp,
                &mut self.smoothn[i],
                &mut self.peakn[i],
                (
                    self.a_att,
                    self.a_rel,
                    self.a_agc,
                    self.agc_floor,
                    self.gate,
                ),
            );
        }
        frame
    }

    /// Raw (unsmoothed, un-normalised) amplitudes of the last processed frame
    /// for the log bands.
    pub fn raw_log(&self) -> &[f32] {
        &self.rawn[..self.n_log]
    }

    /// Raw (unsmoothed, un-normalised) amplitudes of the last processed frame
    /// for the three bands.
    pub fn raw3(&self) -> [f32; 3] {
        self.raw3
    }

    fn step(amp: f32, smooth: &mut f32, peak: &mut f32, k: (f32, f32, f32, f32, f32)) -> f32 {
        let (a_att, a_rel, a_agc, floor, gate) = k;
        let a = if amp > *smooth { a_att } else { a_rel };
        *smooth = a * *smooth + (1.0 - a) * amp;
        if !smooth.is_finite() {
            *smooth = 0.0;
        }
        *peak = (*peak * a_agc).max(*smooth);
        if amp < gate && *smooth < gate {
            return 0.0;
        }
        (*smooth / peak.max(floor)).clamp(0.0, 1.0)
    }
}

/// Streaming band analyser: [`Stft`] followed by [`BandMapper`].
#[derive(Debug)]
pub struct BandAnalyzer {
    stft: Stft,
    mapper: BandMapper,
}

impl BandAnalyzer {
    /// Creates an analyser for `sample_rate` with the given geometry and bands.
    pub fn new(sample_rate: u32, stft: StftConfig, bands: &BandConfig) -> Self {
        let stft = Stft::new(stft);
        let mapper = BandMapper::new(sample_rate, stft.n_bins(), stft.config().hop, bands);
        Self { stft, mapper }
    }

    /// Feeds a block of any size; appends one [`BandFrame`] per completed hop.
    pub fn process(&mut self, block: &[f32], out: &mut Vec<BandFrame>) {
        let mapper = &mut self.mapper;
        self.stft
            .push(block, |pos, mags| out.push(mapper.process(pos, mags)));
    }

    /// Frame geometry in use.
    pub fn stft_config(&self) -> StftConfig {
        self.stft.config()
    }
}
