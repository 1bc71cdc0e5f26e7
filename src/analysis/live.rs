//! Streaming analysis: live tempo and beat-phase tracking for tracks without a beatmap.
//!
//! [`LiveAnalyzer`] feeds blocks of any size through the shared STFT into the
//! band mapper, the onset detector and a [`LiveBeatTracker`], and emits
//! [`Event`]s (bands every hop, onsets, tempo updates, beats). The tracker keeps
//! the onset envelope of the last `window_s` seconds in a ring buffer,
//! re-estimates tempo every `update_s` seconds (favouring continuity with the
//! previous estimate, and choosing the metrical level from the low-band onsets
//! it keeps alongside, see [`super::tempo::resolve_level`]), and every hop re-estimates the beat phase with a
//! decaying comb over the recent envelope; a phase-locked loop nudges the next
//! predicted beat towards that estimate, and jumps to a different phase only
//! when the comb finds it clearly stronger than the current one (by
//! [`LiveConfig::switch_margin`]) for [`LiveConfig::relock_periods`] periods,
//! so near-equal on- and off-beat accents cannot make the grid flip. While
//! the tempo estimates ramp, the comb spaces its beats by the ramp's rate and
//! fits the latest period itself, so an accelerando does not leave the grid
//! late (see [`LiveConfig::ramp_search`]). The
//! phase confidence (`1 - anti / on`, the comb half a period after the grid's
//! beats against on them) gates the output: while it is below
//! [`LiveConfig::min_phase_confidence`] (off by default) no beat is announced and
//! [`LiveAnalyzer::beat_grid`] is `None`. Each beat is emitted shortly
//! before it happens with its sample position in the track, so every bike
//! that plays the same samples derives the same beats. Memory is bounded and
//! nothing is allocated per block once the event buffer has warmed up.

use super::bands::{BandMapper, Stft, StftConfig};
use super::onset::{envelope_delay_samples, OnsetDetector};
use super::tempo::{LevelEvidence, TempoConfig, TempoEstimator};
use super::{AnalysisParams, Beat, Event, TempoUpdate};

/// The live tracker's current beat grid: the next beat it will announce and
/// the beat period, from which the show scheduler extrapolates as many future
/// beats as it needs (a light cue must be sent before its beat is heard).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatGrid {
    /// Sample position (track) of the next beat not yet announced.
    pub next_beat: u64,
    /// Beat period in samples.
    pub period_samples: f64,
    /// Tempo in BPM.
    pub bpm: f32,
    /// Confidence of the tempo estimate, `0..=1`.
    pub confidence: f32,
    /// Confidence of the beat phase, `0..=1`: how much more onset strength
    /// the comb finds on the grid's beats than half a period away (see
    /// [`LiveConfig::min_phase_confidence`]).
    pub phase_confidence: f32,
}

impl BeatGrid {
    /// Sample position of the `k`-th beat from [`Self::next_beat`] (`k = 0` is
    /// the next beat itself), assuming the tempo holds.
    pub fn beat(&self, k: u32) -> u64 {
        (self.next_beat as f64 + k as f64 * self.period_samples).round() as u64
    }
}

/// Live tracker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveConfig {
    /// Length of the envelope history used for tempo and phase (default 8 s).
    pub window_s: f32,
    /// Interval between tempo re-estimates (default 1 s).
    pub update_s: f32,
    /// Envelope needed before the first tempo estimate (default 3 s).
    pub warmup_s: f32,
    /// Beats are emitted this long before their position (default 0.05 s).
    pub lookahead_s: f32,
    /// Per-hop gain of the phase-locked loop, `0..=1` (default 0.1; at the
    /// live hop of 256 samples, 0.05 and 0.2 give the same corpus beat F and
    /// the same phase p95 within 0.1 ms).
    pub phase_gain: f32,
    /// Weight decay per beat period of the phase comb (default 0.8).
    pub comb_decay: f32,
    /// Width (octaves) of the continuity preference for the previous tempo
    /// (default 0.3): a tempo 5/4 away (0.32 octave) keeps 83 % of its score,
    /// one an octave away 60 %. At 0.1 the 5/4 tempo kept 60 %, so once a
    /// syncopated funk bar's first estimate was 5/4 too slow, the right tempo
    /// had to score 1.66x as much to take over and never did. Octave jumps are
    /// confirmed separately (three estimates in a row).
    pub continuity_octaves: f32,
    /// Beats are announced (and the grid offered) only while the phase
    /// confidence is at least this, `0..=1` (default 0, no gate): when the
    /// beats and the points half-way between them carry about the same onset
    /// strength (even eighths, an intro of off-beat hats), the phase is a
    /// guess, and a light on the wrong half of the beat may look worse than
    /// none. Until issue #26's third round the default was 0.05 (chosen on
    /// house's off-beat-hat intro); once real 94-100 BPM rock and metal were
    /// tracked at their beat rather than their eighths, straight eighths made
    /// the gate withhold runs of right beats (hainsworth live CMLt 0.42 with
    /// it, 0.61 without), and without it every corpus scores higher (GM live
    /// F 0.909 -> 0.920, real-wide 0.604 -> 0.623; house's intro 0.758 ->
    /// 0.746), so the tracker now announces its best guess.
    pub min_phase_confidence: f32,
    /// The comb must find this much more strength (relative) at a new phase
    /// than at the current one before the tracker counts towards switching
    /// (default 0.15): near-equal phases (kick on the beat, bass and open hat
    /// off it) must not make the grid flip back and forth.
    pub switch_margin: f32,
    /// Periods a better phase must persist before the grid jumps to it
    /// (default 2); halved when the new phase is more than twice as strong.
    pub relock_periods: f32,
    /// Weight of the high-band onset strength (snare, hats) in the envelope
    /// the phase comb follows, both bands divided by their running mean
    /// (default 0 = the full band alone; see [`super::BeatConfig::high_weight`]).
    pub high_weight: f32,
    /// Half-width (relative) of the local period search the phase comb makes
    /// while the tempo ramps (default 0.03; 0 = off). On an accelerando the
    /// tempo estimate (an 8 s window) trails the music, and the comb, which
    /// assumes one period over its memory, peaks late; each next beat, one
    /// trailing period after the last, comes late again (10–60 ms on a
    /// 100→140 BPM ramp). While ramping, the comb's beats are spaced by the
    /// ramp's rate (wider further back, from the trend of the tempo
    /// estimates), its period is fitted locally, and the grid advances by the
    /// fitted period.
    pub ramp_search: f32,
    /// The tempo counts as ramping when the last four tempo estimates move
    /// the same way at every update and by at least this much in all
    /// (relative; default 0.01). A steady tempo, a step, or a first estimate
    /// settling do not qualify: there the local fit only adds freedom, and a
    /// syncopated bar (funk's 16th-note accents) fits a slightly wrong period
    /// at the wrong phase better than the right period at the right one.
    pub ramp_threshold: f32,
    /// A beat is withheld when the onsets of the last three beat periods
    /// favour another phase over the grid's by more than this factor
    /// (default 2; 0 = never): what was just heard contradicts the grid, as
    /// after a tempo step, before the tempo estimate (an 8 s window) follows.
    /// At 1.5 or less, funk's syncopated bars withhold right beats too.
    pub withhold_lead: f32,
    /// Weight of the kick strength in the envelope the phase comb follows,
    /// scaled to the full band's running mean, while the kick is a regular
    /// pulse on the grid or half-way between its beats over the last
    /// [`KICK_PERIODS`] periods (see [`super::onset::kick_is_regular`];
    /// default 2, 0 = never). Judged once per beat. On a four-on-the-floor
    /// groove the off-beat hats (and bass stabs) carry as much full-band flux
    /// as the kicks, and the comb alone may lock to them.
    pub kick_weight: f32,
    /// No beat is announced while no frame of the last two beat periods had
    /// an onset strength of at least this share of its running mean (over
    /// the window; default 0.3, 0 = never): beats stop when the music stops
    /// (silence, or the decaying tail after the last note) and resume with
    /// its first onset.
    pub silence_gate: f32,
    /// Share of the metrical-level evidence kept from one tempo update to
    /// the next, `0..=1` (default 0.9: at one update a second, the decision
    /// rests on about the last 10 s of windows; 0 = the last 8 s window alone).
    /// The level is decided by [`super::tempo::resolve_level`]'s rule, as
    /// offline; offline it sees the whole track, and one 8 s window's
    /// statistics sit near the rule's thresholds often enough that a 66 BPM
    /// ballad's level flipped between 66 and 132 every few seconds and stayed
    /// at 132.
    pub level_memory: f32,
    /// Tempo search settings.
    pub tempo: TempoConfig,
}

impl LiveConfig {
    /// Apply one `KEY=VALUE` override (the evaluation tools' `--live`): any numeric
    /// setting by its field name.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        super::set_numeric(assignment, "live", move |key| match key {
            "window_s" => Some(&mut self.window_s),
            "update_s" => Some(&mut self.update_s),
            "warmup_s" => Some(&mut self.warmup_s),
            "lookahead_s" => Some(&mut self.lookahead_s),
            "phase_gain" => Some(&mut self.phase_gain),
            "comb_decay" => Some(&mut self.comb_decay),
            "continuity_octaves" => Some(&mut self.continuity_octaves),
            "min_phase_confidence" => Some(&mut self.min_phase_confidence),
            "switch_margin" => Some(&mut self.switch_margin),
            "relock_periods" => Some(&mut self.relock_periods),
            "high_weight" => Some(&mut self.high_weight),
            "ramp_search" => Some(&mut self.ramp_search),
            "ramp_threshold" => Some(&mut self.ramp_threshold),
            "withhold_lead" => Some(&mut self.withhold_lead),
            "kick_weight" => Some(&mut self.kick_weight),
            "silence_gate" => Some(&mut self.silence_gate),
            "level_memory" => Some(&mut self.level_memory),
            _ => None,
        })
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            window_s: 8.0,
            update_s: 1.0,
            warmup_s: 3.0,
            lookahead_s: 0.05,
            phase_gain: 0.1,
            comb_decay: 0.8,
            continuity_octaves: 0.3,
            min_phase_confidence: 0.0,
            switch_margin: 0.15,
            relock_periods: 2.0,
            high_weight: 0.0,
            ramp_search: 0.03,
            ramp_threshold: 0.01,
            withhold_lead: 2.0,
            kick_weight: 2.0,
            silence_gate: 0.3,
            level_memory: 0.9,
            tempo: TempoConfig::default(),
        }
    }
}

/// Per-hop gain of the grid's period towards the local fit on a tempo ramp
/// (see [`LiveConfig::ramp_search`]): the fit moves in steps of 0.75 %, the
/// grid follows it over about 20 hops (0.12 s at the live hop of 256 samples;
/// tuned at hop 512, where that was a quarter of a second: at hop 256 the
/// same time constant, 0.025, moves pop's ramp p95 from 13.9 to 15.2 ms).
const RAMP_PERIOD_GAIN: f64 = 0.05;

/// Tempo estimates that must move the same way for the tempo to count as
/// ramping (see [`LiveConfig::ramp_threshold`]).
const RAMP_UPDATES: usize = 4;

/// Beat periods back over which the kick's regularity is judged (see
/// [`LiveConfig::kick_weight`]).
pub const KICK_PERIODS: usize = 16;

/// Streaming tempo and beat-phase tracker fed one onset-strength value per hop.
#[derive(Debug, Clone)]
pub struct LiveBeatTracker {
    cfg: LiveConfig,
    hop: f64,
    delay_samples: f64,
    ring: Vec<f32>,
    /// Low-band (kick/bass) onset strength, same frames as `ring`: the
    /// evidence for the metrical level.
    low_ring: Vec<f32>,
    /// The envelope the phase comb follows, same frames as `ring`: the full
    /// band, plus the high band (snare/hats) when `high_weight` is set.
    phase_ring: Vec<f32>,
    /// Kick strength over its running mean, times the full band's running
    /// mean (the scale of `phase_ring`), same frames as `ring`.
    kick_ring: Vec<f32>,
    kick_mean: f32,
    /// Frames the kick strength lags the full band (see
    /// [`super::onset::kick_delay_samples`]).
    kick_lag: usize,
    /// The kick's current weight in the phase envelope (0 or
    /// [`LiveConfig::kick_weight`]).
    kick_gain: f32,
    /// Frames since the last one whose strength passed the silence gate.
    quiet_frames: u64,
    /// Running means of the full and high band strengths (their scales in
    /// the phase envelope) and the per-frame decay of those means.
    env_mean: f32,
    high_mean: f32,
    mean_decay: f32,
    count: u64,
    /// Ring index of the newest frame (`count - 1`).
    newest: usize,
    linear: Vec<f32>,
    low_linear: Vec<f32>,
    est: TempoEstimator,
    update_frames: u64,
    warmup_frames: u64,
    since_update: u64,
    bpm: f32,
    confidence: f32,
    /// Beat period in frames.
    period: Option<f64>,
    /// Next beat to emit, in (fractional) frame units.
    next_beat: Option<f64>,
    lookahead_frames: f64,
    frame_rate: f32,
    /// Frames in a row in which the comb disagreed strongly with the PLL.
    outlier_frames: u32,
    /// Phase confidence of the current grid, `0..=1`.
    phase_confidence: f32,
    /// An octave change waiting for confirmation, and how often it was seen.
    pending: Option<(f32, u8)>,
    /// The metrical-level evidence of the recent windows (see
    /// [`LiveConfig::level_memory`]).
    level: Option<LevelEvidence>,
    /// The last [`RAMP_UPDATES`] tempo estimates, oldest first (0 = none yet).
    recent_bpm: [f32; RAMP_UPDATES],
    /// The locally fitted beat period (frames) while the tempo is changing.
    ramp_period: Option<f64>,
    /// Whether the last beat periods contradicted the grid when the last beat
    /// was due (its beats are withheld meanwhile).
    contradicted: bool,
}

impl LiveBeatTracker {
    /// Creates a tracker for an onset envelope from an STFT of geometry `stft`
    /// (one value every `stft.hop` samples) at `sample_rate`.
    pub fn new(sample_rate: u32, stft: StftConfig, cfg: &LiveConfig) -> Self {
        let hop = stft.hop.max(1);
        let frame_rate = sample_rate.max(1) as f32 / hop as f32;
        let win = ((cfg.window_s.clamp(1.0, 60.0) * frame_rate) as usize).max(16);
        Self {
            cfg: *cfg,
            hop: hop as f64,
            delay_samples: envelope_delay_samples(stft.fft_size),
            ring: vec![0.0; win],
            low_ring: vec![0.0; win],
            phase_ring: vec![0.0; win],
            kick_ring: vec![0.0; win],
            kick_mean: 0.0,
            kick_lag: ((super::onset::kick_delay_samples(stft.fft_size)
                - envelope_delay_samples(stft.fft_size))
                / hop as f64)
                .round() as usize,
            kick_gain: 0.0,
            quiet_frames: u64::MAX / 2,
            env_mean: 0.0,
            high_mean: 0.0,
            mean_decay: 1.0 - 1.0 / win as f32,
            count: 0,
            newest: 0,
            linear: vec![0.0; win],
            low_linear: vec![0.0; win],
            est: TempoEstimator::new(frame_rate, &cfg.tempo, win),
            update_frames: ((cfg.update_s.clamp(0.05, 60.0) * frame_rate) as u64).max(1),
            warmup_frames: ((cfg.warmup_s.clamp(0.5, 60.0) * frame_rate) as u64).max(8),
            since_update: 0,
            bpm: 0.0,
            confidence: 0.0,
            period: None,
            next_beat: None,
            lookahead_frames: (cfg.lookahead_s.clamp(0.0, 1.0) * frame_rate) as f64,
            frame_rate,
            outlier_frames: 0,
            phase_confidence: 0.0,
            pending: None,
            level: None,
            recent_bpm: [0.0; RAMP_UPDATES],
            ramp_period: None,
            contradicted: false,
        }
    }

    /// Current tempo estimate in BPM (0 before warm-up).
    pub fn bpm(&self) -> f32 {
        self.bpm
    }

    /// The tempo the grid advances at: the local fit while the tempo is
    /// changing, the estimate otherwise.
    fn beat_bpm(&self) -> f32 {
        match self.ramp_period {
            Some(p) if p > 0.0 => (60.0 * self.frame_rate as f64 / p) as f32,
            _ => self.bpm,
        }
    }

    /// The current beat grid, once the tracker has a tempo and a phase it is
    /// confident of (see [`LiveConfig::min_phase_confidence`]) and while what
    /// it just heard does not contradict it (see [`LiveConfig::withhold_lead`]).
    pub fn grid(&self) -> Option<BeatGrid> {
        self.grid_unchecked()
            .filter(|g| g.phase_confidence >= self.cfg.min_phase_confidence && !self.contradicted)
    }

    /// The current beat grid even while its phase is uncertain.
    pub fn grid_unchecked(&self) -> Option<BeatGrid> {
        let (p, nb) = (self.ramp_period.or(self.period)?, self.next_beat?);
        Some(BeatGrid {
            next_beat: self.frame_to_sample(nb),
            period_samples: p * self.hop,
            bpm: self.beat_bpm(),
            confidence: self.confidence,
            phase_confidence: self.phase_confidence,
        })
    }

    /// Decaying comb: onset strength at `x`, `x - p`, … (`k_max` terms, the
    /// weight multiplied by `decay` per period).
    fn comb(&self, x: f64, p: f64, k_max: usize, decay: f32) -> f32 {
        let mut s = 0.0f32;
        let mut w = 1.0f32;
        for k in 0..k_max {
            s += w * self.env_interp(x - k as f64 * p);
            w *= decay;
        }
        s
    }

    /// The phase envelope at `frame` (0 outside the history).
    /// The comb reads the envelope at a few thousand points per hop, so this
    /// and [`Self::env_interp`] avoid a division and a `floor` call each.
    fn env(&self, frame: i64) -> f32 {
        let len = self.phase_ring.len() as i64;
        // Frames back from the newest one, which sits at ring index `newest`.
        let back = self.count as i64 - 1 - frame;
        if frame < 0 || back < 0 || back >= len {
            return 0.0;
        }
        let idx = self.newest as i64 - back;
        let idx = if idx < 0 { idx + len } else { idx } as usize;
        if self.kick_gain > 0.0 {
            self.phase_ring[idx] + self.kick_gain * self.kick_ring[idx]
        } else {
            self.phase_ring[idx]
        }
    }

    fn env_interp(&self, x: f64) -> f32 {
        if x.is_nan() || x <= -1.0 {
            return 0.0;
        }
        if x < 0.0 {
            // Before the stream: only frame 0 contributes.
            return self.env(0) * (1.0 + x) as f32;
        }
        // Truncation is the floor for x >= 0.
        let i = x as i64;
        let f = (x - i as f64) as f32;
        self.env(i) * (1.0 - f) + self.env(i + 1) * f
    }

    fn frame_to_sample(&self, x: f64) -> u64 {
        let s = x * self.hop - self.delay_samples;
        if s.is_finite() && s > 0.0 {
            s.round() as u64
        } else {
            0
        }
    }

    /// Pushes the onset strength of the frame at `sample_pos` without a
    /// low-band strength (the metrical level is then chosen from the full band
    /// alone); appends tempo updates and beats to `out`.
    pub fn push(&mut self, sample_pos: u64, strength: f32, out: &mut Vec<Event>) {
        self.push_with_low(sample_pos, strength, 0.0, out);
    }

    /// Pushes the onset strength and the low-band (kick/bass) onset strength
    /// of the frame at `sample_pos`; appends tempo updates and beats to `out`.
    pub fn push_with_low(
        &mut self,
        sample_pos: u64,
        strength: f32,
        low_strength: f32,
        out: &mut Vec<Event>,
    ) {
        self.push_bands(sample_pos, strength, low_strength, 0.0, 0.0, out);
    }

    /// Pushes the onset strength, its low-band (kick/bass) and high-band
    /// (snare/hats) parts, and the kick strength
    /// ([`super::onset::OnsetFrame::kick_strength`]) of the frame at
    /// `sample_pos`; appends tempo updates and beats to `out`.
    pub fn push_bands(
        &mut self,
        sample_pos: u64,
        strength: f32,
        low_strength: f32,
        high_strength: f32,
        kick_strength: f32,
        out: &mut Vec<Event>,
    ) {
        let len = self.ring.len();
        let idx = (self.count % len as u64) as usize;
        let clean = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
        let (strength, high) = (clean(strength), clean(high_strength));
        self.ring[idx] = strength;
        self.low_ring[idx] = clean(low_strength);
        // The phase envelope: each band over its running mean when the high
        // band is weighted in, the full band as it is otherwise.
        let d = self.mean_decay;
        self.env_mean = d * self.env_mean + (1.0 - d) * strength;
        self.high_mean = d * self.high_mean + (1.0 - d) * high;
        let kick = clean(kick_strength);
        self.kick_mean = d * self.kick_mean + (1.0 - d) * kick;
        // The kick strength lags the full band by `kick_lag` frames: it is
        // stored with the frame it belongs to, and the newest frames wait.
        self.kick_ring[idx] = 0.0;
        let back = (idx + len - self.kick_lag.min(len - 1)) % len;
        self.kick_ring[back] = if self.kick_mean > 1e-12 {
            kick / self.kick_mean * self.env_mean
        } else {
            0.0
        };
        let gate = self.cfg.silence_gate;
        if gate <= 0.0 || (strength > 0.0 && strength >= gate * self.env_mean) {
            self.quiet_frames = 0;
        } else {
            self.quiet_frames = self.quiet_frames.saturating_add(1);
        }
        let w = self.cfg.high_weight;
        self.phase_ring[idx] = if w > 0.0 {
            strength / self.env_mean.max(1e-9) + w * high / self.high_mean.max(1e-9)
        } else {
            strength
        };
        self.count += 1;
        self.newest = idx;
        self.since_update += 1;
        if self.count >= self.warmup_frames
            && (self.period.is_none() || self.since_update >= self.update_frames)
        {
            self.since_update = 0;
            self.update_tempo(sample_pos, out);
        }
        let Some(p) = self.period else {
            return;
        };
        let now = (self.count - 1) as f64;
        // Phase comb over the recent envelope.
        let avail = (self.count as usize).min(len) as f64;
        let k_max = (((avail - 1.0) / p).floor() as usize).clamp(1, 16);
        let decay = self.cfg.comb_decay.clamp(0.0, 1.0);
        let (mut best_x, best_s) = self.best_phase(now, p, k_max, decay);
        // While the tempo changes, the phase and the period the grid advances
        // by come from the local fit; the trailing estimate would put every
        // next beat late by its error.
        let p = if best_s > 0.0 && self.tempo_changing() {
            let (x, fit) = self.ramp_phase(best_x, best_s, p, now, k_max, decay);
            best_x = x;
            let prev = self.ramp_period.unwrap_or(p);
            let lim = self.cfg.ramp_search as f64 * p;
            let local = (prev + RAMP_PERIOD_GAIN * (fit - prev)).clamp(p - lim, p + lim);
            self.ramp_period = Some(local);
            local
        } else {
            self.ramp_period = None;
            p
        };
        if best_s <= 0.0 {
            // Silence: keep free-running at the current period.
            best_x = self.next_beat.unwrap_or(now);
        }
        let next = match self.next_beat {
            None => {
                let n = best_x + p;
                if n < now {
                    n + ((now - n) / p).ceil() * p
                } else {
                    n
                }
            }
            Some(nb) => {
                let m = ((nb - best_x) / p).round();
                let pred = best_x + m * p;
                let err = pred - nb;
                let g = self.cfg.phase_gain.clamp(0.0, 1.0) as f64;
                let mut nb = nb;
                if err.abs() <= 0.15 * p {
                    self.outlier_frames = 0;
                    nb += g * err;
                } else {
                    // How much more the best phase scores than the grid's own
                    // beat in the same search range, searched as finely (half a
                    // frame either side) so interpolation does not favour it.
                    let cur_x = nb - ((nb - now) / p).ceil() * p;
                    let cur_s = [cur_x - 0.5, cur_x, cur_x + 0.5]
                        .into_iter()
                        .filter(|&x| x <= now)
                        .map(|x| self.comb(x, p, k_max, decay))
                        .fold(0.0f32, f32::max);
                    let lead = best_s / cur_s.max(f32::MIN_POSITIVE);
                    if lead > 1.0 + self.cfg.switch_margin.max(0.0) {
                        // A single syncopated hit must not drag the phase; a
                        // clearly better phase lasting `relock_periods` is a
                        // real phase change (a tempo step, the drums entering).
                        self.outlier_frames += 1;
                        let mut need = self.cfg.relock_periods.max(0.0) as f64 * p;
                        if lead > 2.0 {
                            need /= 2.0;
                        }
                        if self.outlier_frames as f64 > need {
                            self.outlier_frames = 0;
                            nb = pred;
                        }
                    } else {
                        self.outlier_frames = 0;
                    }
                }
                if nb < now - p / 2.0 {
                    nb += ((now - p / 2.0 - nb) / p).ceil() * p;
                }
                nb
            }
        };
        self.next_beat = Some(next);
        self.phase_confidence = self.measure_phase_confidence(next, now, p, k_max, decay);
        // Emit every beat that is now within the look-ahead horizon.
        let horizon = (self.count as f64) + self.lookahead_frames;
        // Whether the last periods contradict the grid is asked once per beat,
        // when one is due, and holds until the next.
        if next <= horizon {
            self.contradicted = self.contradicted(next, now, p);
            self.kick_gain = if self.kick_regular(next, now, p) {
                self.cfg.kick_weight.max(0.0)
            } else {
                0.0
            };
        }
        let confident = self.phase_confidence >= self.cfg.min_phase_confidence
            && !self.contradicted
            && !self.silent(p);
        // The period is at least two frames, so at most one beat is due per
        // frame; the bound is a safety net.
        for _ in 0..4 {
            let Some(nb) = self.next_beat else { break };
            if nb > horizon {
                break;
            }
            if confident {
                out.push(Event::Beat(Beat {
                    sample_pos: self.frame_to_sample(nb),
                    bpm: self.beat_bpm(),
                    confidence: self.confidence,
                }));
            }
            self.next_beat = Some(nb + p);
        }
    }

    /// Whether no onset has passed the silence gate for two beat periods
    /// (see [`LiveConfig::silence_gate`]).
    fn silent(&self, p: f64) -> bool {
        self.quiet_frames as f64 > 2.0 * p
    }

    /// Whether the kick is a regular pulse on the grid or half-way between
    /// its beats over the last [`KICK_PERIODS`] heard periods (see
    /// [`LiveConfig::kick_weight`]).
    fn kick_regular(&self, next: f64, now: f64, p: f64) -> bool {
        use super::onset::{kick_is_regular, KICK_GRID_MAX};
        if self.cfg.kick_weight <= 0.0 {
            return false;
        }
        let len = self.kick_ring.len() as f64;
        let w = (p / 16.0).max(1.0) as i64;
        let kick_near = |x: f64| -> f32 {
            let c = x.round() as i64;
            let mut m = 0.0f32;
            for f in c - w..=c + w {
                let back = self.count as i64 - 1 - f;
                if f < 0 || back < 0 || back as f64 >= len {
                    continue;
                }
                let idx = self.newest as i64 - back;
                let idx = if idx < 0 { idx + len as i64 } else { idx } as usize;
                m = m.max(self.kick_ring[idx]);
            }
            m
        };
        let (mut on, mut off) = ([0.0f32; KICK_GRID_MAX], [0.0f32; KICK_GRID_MAX]);
        // The last grid beat whose half-period point has been heard.
        let mut x = next - ((next - (now - p / 2.0 - w as f64)) / p).ceil() * p;
        let oldest = now - len + 1.0;
        let mut m = 0;
        while m < KICK_PERIODS.min(KICK_GRID_MAX) && x - (w as f64) >= oldest {
            on[m] = kick_near(x);
            off[m] = kick_near(x + p / 2.0);
            m += 1;
            x -= p;
        }
        kick_is_regular(&on[..m], &off[..m])
    }

    /// Whether the last few beat periods contradict the grid (see
    /// [`LiveConfig::withhold_lead`]): a short comb finds more than that many
    /// times the onset strength at its best phase of the last period than on
    /// the grid's last beat.
    fn contradicted(&self, next: f64, now: f64, p: f64) -> bool {
        /// Periods the short comb spans, and its weight decay per period.
        const BEATS: usize = 3;
        const DECAY: f32 = 0.7;
        let ratio = self.cfg.withhold_lead;
        if ratio <= 0.0 {
            return false;
        }
        let last = next - ((next - now) / p).ceil() * p;
        let on_grid = [last - 0.5, last, last + 0.5]
            .into_iter()
            .map(|x| self.comb(x, p, BEATS, DECAY))
            .fold(0.0f32, f32::max);
        self.best_phase(now, p, BEATS, DECAY).1 > ratio * on_grid
    }

    /// The comb's strongest phase over the last period (half-frame steps up
    /// to `now`) and its strength.
    fn best_phase(&self, now: f64, p: f64, k_max: usize, decay: f32) -> (f64, f32) {
        let (mut best_x, mut best_s) = (now, f32::NEG_INFINITY);
        let mut x = now - p + 0.5;
        while x <= now + 1e-9 {
            let s = self.comb(x, p, k_max, decay);
            if s > best_s {
                (best_x, best_s) = (x, s);
            }
            x += 0.5;
        }
        (best_x, best_s)
    }

    /// Whether the tempo is ramping (see [`LiveConfig::ramp_threshold`]).
    fn tempo_changing(&self) -> bool {
        let b = &self.recent_bpm;
        if self.cfg.ramp_search <= 0.0 || b.iter().any(|&v| v <= 0.0) {
            return false;
        }
        // A ramp moves the estimate the same way at every update; a step, or
        // a first estimate settling, moves it once or twice and then holds.
        let last = b[RAMP_UPDATES - 1];
        let total = last / b[0] - 1.0;
        total.abs() >= self.cfg.ramp_threshold && b.windows(2).all(|w| (w[1] - w[0]) * total > 0.0)
    }

    /// The comb's best phase near `x0` on a tempo ramp, with beats spaced by
    /// the ramp's rate and the latest spacing fitted within
    /// [`LiveConfig::ramp_search`] of `p`; returns that phase and the period
    /// to the next beat.
    fn ramp_phase(
        &self,
        x0: f64,
        s0: f32,
        p: f64,
        now: f64,
        k_max: usize,
        decay: f32,
    ) -> (f64, f64) {
        /// Period step of the search, relative.
        const STEP: f64 = 0.0075;
        /// Phase range searched either side of `x0`, in periods.
        const REACH: f64 = 0.06;
        let n = (self.cfg.ramp_search as f64 / STEP).round() as i64;
        let r = self.ramp_rate(p);
        // The estimate trails the ramp: the latest spacing is shorter than
        // `p` while the tempo rises, longer while it falls.
        let range = if r >= 0.0 { -n..=0 } else { 0..=n };
        let (mut best_x, mut best_s, mut best_p) = (x0, s0, p);
        for j in range {
            let pp = p * (1.0 + j as f64 * STEP);
            let mut x = x0 - REACH * p;
            while x <= (x0 + REACH * p).min(now + 1e-9) {
                let s = self.chirp_comb(x, pp, r, k_max, decay);
                if s > best_s {
                    (best_x, best_s, best_p) = (x, s, pp);
                }
                x += 0.5;
            }
        }
        (best_x, best_p / (1.0 + r))
    }

    /// Relative lengthening of the beat period per beat back in time, from
    /// the trend of the last four tempo estimates (positive while the tempo
    /// rises).
    fn ramp_rate(&self, p: f64) -> f64 {
        let b = &self.recent_bpm;
        let last = b[RAMP_UPDATES - 1];
        if b[0] <= 0.0 || last <= 0.0 {
            return 0.0;
        }
        let span_s = (RAMP_UPDATES - 1) as f64 * self.cfg.update_s.max(0.05) as f64;
        let bpm_per_s = (last - b[0]) as f64 / span_s;
        let beat_s = p / self.frame_rate as f64;
        (bpm_per_s * beat_s / last as f64).clamp(-0.05, 0.05)
    }

    /// [`Self::comb`] over beats whose spacing grows by `r` per beat back:
    /// `p` between `x` and the beat before it, `p (1 + r)` before that, …
    fn chirp_comb(&self, x: f64, p: f64, r: f64, k_max: usize, decay: f32) -> f32 {
        let (mut s, mut w, mut pos, mut gap) = (0.0f32, 1.0f32, x, p);
        for _ in 0..k_max {
            s += w * self.env_interp(pos);
            w *= decay;
            pos -= gap;
            gap *= 1.0 + r;
        }
        s
    }

    /// How much more the comb finds on the grid's last fully heard beat than
    /// half a period later: `1 - anti / on`, clamped to `0..=1` (0 when the
    /// envelope is silent).
    fn measure_phase_confidence(
        &self,
        next: f64,
        now: f64,
        p: f64,
        k_max: usize,
        decay: f32,
    ) -> f32 {
        // The last grid beat at least a period in the past, so the onset
        // half a period after it has been heard too.
        let on_x = next - ((next - (now - p)) / p).ceil() * p;
        let on = self.comb(on_x, p, k_max, decay);
        let anti = self.comb(on_x + p / 2.0, p, k_max, decay);
        if on > 0.0 {
            (1.0 - anti / on).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn update_tempo(&mut self, sample_pos: u64, out: &mut Vec<Event>) {
        let len = self.ring.len();
        let n = (self.count as usize).min(len);
        let start = self.count as usize - n;
        // Recent frames weigh more (time constant of half the window) so a
        // tempo change is picked up within a few seconds.
        let tau = (len as f32 / 2.0).max(1.0);
        for i in 0..n {
            let age = (n - 1 - i) as f32;
            self.linear[i] = self.ring[(start + i) % len] * (-age / tau).exp();
        }
        let prev = if self.bpm > 0.0 { Some(self.bpm) } else { None };
        let e = self
            .est
            .estimate_near(&self.linear[..n], prev, self.cfg.continuity_octaves);
        let fr = self.frame_rate;
        let min_period_ok = move |bpm: f32| 60.0 * fr / bpm >= 2.0;
        if e.bpm > 0.0 && min_period_ok(e.bpm) {
            // The metrical-level decision looks at the unweighted window.
            for i in 0..n {
                self.linear[i] = self.ring[(start + i) % len];
                self.low_linear[i] = self.low_ring[(start + i) % len];
            }
            // The same evidence and rule as offline, averaged over the recent
            // windows while the pair of candidate levels stays the same.
            let mut bpm = e.bpm;
            if let Some(ev) = super::tempo::level_evidence(
                &self.linear[..n],
                &self.low_linear[..n],
                self.frame_rate,
                e.bpm,
                &self.cfg.tempo,
            ) {
                // A window that has not filled yet is that much less music:
                // the first one (3 s after the start) outweighed a full 8 s
                // window and held a 174 BPM break at 87 for two updates.
                let mut ev = ev;
                ev.weight = n as f32 / len.max(1) as f32;
                let acc = match self.level {
                    Some(mut acc) if acc.same_pair(&ev) => {
                        acc.merge(&ev, self.cfg.level_memory);
                        acc
                    }
                    _ => ev,
                };
                self.level = Some(acc);
                bpm = if acc.level() == acc.fast {
                    ev.fast
                } else {
                    ev.slow
                };
            }
            // An octave jump away from the running tempo must be confirmed by
            // three consecutive estimates.
            if self.bpm > 0.0 {
                let ratio = bpm / self.bpm;
                let octave_jump = (ratio - 2.0).abs() < 0.2 || (ratio - 0.5).abs() < 0.05;
                if octave_jump {
                    let seen = match self.pending {
                        Some((b, c)) if (b / bpm - 1.0).abs() < 0.05 => c + 1,
                        _ => 1,
                    };
                    if seen < 3 {
                        self.pending = Some((bpm, seen));
                        bpm = if ratio > 1.0 { bpm / 2.0 } else { bpm * 2.0 };
                    } else {
                        self.pending = None;
                    }
                } else {
                    self.pending = None;
                }
            }
            let e = super::tempo::TempoEstimate {
                bpm,
                confidence: e.confidence,
            };
            if !min_period_ok(e.bpm) {
                return;
            }
            self.bpm = e.bpm;
            self.recent_bpm.rotate_left(1);
            self.recent_bpm[RAMP_UPDATES - 1] = e.bpm;
            self.confidence = e.confidence;
            self.period = Some(60.0 * self.frame_rate as f64 / e.bpm as f64);
            out.push(Event::Tempo(TempoUpdate {
                sample_pos,
                bpm: e.bpm,
                confidence: e.confidence,
            }));
        }
    }
}

/// Streaming analyser: bands, onsets, tempo and beats from blocks of samples.
#[derive(Debug)]
pub struct LiveAnalyzer {
    stft: Stft,
    bands: BandMapper,
    onset: OnsetDetector,
    tracker: LiveBeatTracker,
    events: Vec<Event>,
}

impl LiveAnalyzer {
    /// Creates an analyser for mono input at `sample_rate` (0 is treated as 1).
    pub fn new(sample_rate: u32, params: &AnalysisParams) -> Self {
        let sample_rate = sample_rate.max(1);
        let stft = Stft::new(params.live_stft);
        let cfg = stft.config();
        let bands = BandMapper::new(sample_rate, stft.n_bins(), cfg.hop, &params.bands);
        let onset = OnsetDetector::new(sample_rate, stft.n_bins(), cfg.hop, &params.onset);
        let tracker = LiveBeatTracker::new(sample_rate, cfg, &params.live);
        Self {
            stft,
            bands,
            onset,
            tracker,
            events: Vec::with_capacity(256),
        }
    }

    /// Feeds a block and appends the resulting events to `out`.
    pub fn process_into(&mut self, block: &[f32], out: &mut Vec<Event>) {
        let Self {
            stft,
            bands,
            onset,
            tracker,
            ..
        } = self;
        stft.push(block, |pos, mags| {
            out.push(Event::Bands(bands.process(pos, mags)));
            let of = onset.process(pos, mags);
            if let Some(o) = of.onset {
                out.push(Event::Onset(o));
            }
            tracker.push_bands(
                pos,
                of.strength,
                of.low_strength,
                of.high_strength,
                of.kick_strength,
                out,
            );
        });
    }

    /// Feeds a block and returns its events; the internal buffer is reused.
    pub fn process(&mut self, block: &[f32]) -> std::vec::Drain<'_, Event> {
        let mut ev = std::mem::take(&mut self.events);
        ev.clear();
        self.process_into(block, &mut ev);
        self.events = ev;
        self.events.drain(..)
    }

    /// Current tempo estimate in BPM (0 before warm-up).
    pub fn bpm(&self) -> f32 {
        self.tracker.bpm()
    }

    /// The current beat grid (next beat and period) for scheduling ahead;
    /// `None` until the tracker has a tempo and while its phase is uncertain
    /// (see [`LiveConfig::min_phase_confidence`]).
    pub fn beat_grid(&self) -> Option<BeatGrid> {
        self.tracker.grid()
    }

    /// The beat tracker, e.g. for [`LiveBeatTracker::grid_unchecked`].
    pub fn tracker(&self) -> &LiveBeatTracker {
        &self.tracker
    }

    /// Total samples consumed.
    pub fn samples_consumed(&self) -> u64 {
        self.stft.samples_consumed()
    }
}

#[cfg(test)]
mod tests {
    use super::LiveConfig;
    use crate::analysis::StftConfig;

    #[test]
    fn overrides_name_the_setting_and_refuse_bad_input() {
        let mut c = LiveConfig::default();
        assert_eq!(c.set("switch_margin=0.25"), Ok(()));
        assert_eq!(c.switch_margin, 0.25);
        assert!(c
            .set("switch_margin")
            .is_err_and(|e| e.contains("KEY=VALUE")));
        assert!(c
            .set("phase_gain=x")
            .is_err_and(|e| e.contains("phase_gain")));
        assert!(c
            .set("tempo=120")
            .is_err_and(|e| e.contains("unknown live setting `tempo`")));
    }

    /// Full-band pulses strongest a quarter period before each beat, the high
    /// band only on the beats: the grid follows the full band at the default
    /// `high_weight` 0 and the high band when it is weighted in.
    #[test]
    fn high_weight_puts_the_phase_on_the_high_band() {
        let (sr, hop) = (44_100u32, 512usize);
        let period = 44_100.0 / 512.0 * 0.5; // 120 BPM in frames
        let grid_offset = |high_weight: f32| {
            let cfg = LiveConfig {
                high_weight,
                ..LiveConfig::default()
            };
            let stft = StftConfig {
                hop,
                ..StftConfig::default()
            };
            let mut t = super::LiveBeatTracker::new(sr, stft, &cfg);
            let mut out = Vec::new();
            let on_beat = |k: usize, shift: f64| {
                let x = (k as f64 - 10.0 + shift).rem_euclid(period);
                x < 0.5 || x > period - 0.5
            };
            for k in 0..(20.0 * 44_100.0 / 512.0) as usize {
                let full = if on_beat(k, period / 4.0) {
                    1.0
                } else if on_beat(k, 0.0) {
                    0.6
                } else {
                    0.0
                };
                let high = if on_beat(k, 0.0) { 1.0 } else { 0.0 };
                t.push_bands((k * hop) as u64, full, 0.0, high, 0.0, &mut out);
                out.clear();
            }
            let g = t.grid_unchecked().expect("a grid after 20 s");
            let frame = (g.next_beat as f64 + t.delay_samples) / hop as f64;
            // Offset of the grid from the beats, in (-period/2, period/2].
            let x = (frame - 10.0).rem_euclid(period);
            if x > period / 2.0 {
                x - period
            } else {
                x
            }
        };
        let quarter = period / 4.0;
        let full_only = grid_offset(0.0);
        assert!((full_only + quarter).abs() < 2.0, "{full_only} frames");
        let with_high = grid_offset(2.0);
        assert!(with_high.abs() < 2.0, "{with_high} frames");
    }
}

#[cfg(test)]
mod ramp_tests {
    use super::{LiveBeatTracker, LiveConfig};
    use crate::analysis::{Event, StftConfig};
    use crate::rig::eval;

    /// Beat times (s) of a tempo ramping linearly from `b0` to `b1` BPM over
    /// `seconds`: beat `k` is where the integral of the tempo reaches `k`.
    fn ramp_beats(b0: f64, b1: f64, seconds: f64) -> Vec<f64> {
        let a = (b1 - b0) / seconds / 120.0; // beats per s²  (½ · dBPM/dt / 60)
        let b = b0 / 60.0;
        (0..)
            .map(|k| (-b + (b * b + 4.0 * a * k as f64).sqrt()) / (2.0 * a))
            .take_while(|&t| t < seconds)
            .collect()
    }

    /// Signed phase errors (s, positive = late) of the beats announced after
    /// 15 s on a minute-long ramp from `b0` to `b1` BPM of kicks with softer
    /// eighth-note hats between them.
    fn ramp_errors(cfg: &LiveConfig, b0: f64, b1: f64) -> Vec<f64> {
        let seconds = 60.0;
        errors_after(cfg, &ramp_beats(b0, b1, seconds), seconds, 15.0)
    }

    /// Signed phase errors (s) of the beats announced from `from_s` to a
    /// second before `seconds` when the kicks fall on `beats` and softer hats
    /// half-way between them.
    fn errors_after(cfg: &LiveConfig, beats: &[f64], seconds: f64, from_s: f64) -> Vec<f64> {
        let (sr, hop) = (44_100u32, 512usize);
        let fr = sr as f64 / hop as f64;
        // Kicks on the beats, hats half-way between them, as triangular
        // pulses at their exact fractional frames.
        let mut env = vec![0.0f32; (seconds * fr) as usize + 2];
        let mut pulse = |t: f64, h: f32| {
            let x = t * fr;
            let i = x.floor() as usize;
            let f = (x - x.floor()) as f32;
            env[i] += h * (1.0 - f);
            env[i + 1] += h * f;
        };
        for w in beats.windows(2) {
            pulse(w[0], 1.0);
            pulse((w[0] + w[1]) / 2.0, 0.4);
        }
        let stft = StftConfig {
            hop,
            ..StftConfig::default()
        };
        let mut t = LiveBeatTracker::new(sr, stft, cfg);
        let mut out = Vec::new();
        for (i, &v) in env.iter().enumerate() {
            t.push((i * hop) as u64, v, &mut out);
        }
        let announced: Vec<f64> = out
            .iter()
            .filter_map(|e| match e {
                Event::Beat(b) => Some((b.sample_pos as f64 + t.delay_samples) / sr as f64),
                _ => None,
            })
            .filter(|&s| s >= from_s && s < seconds - 1.0)
            .collect();
        assert!(announced.len() > 30, "{} beats", announced.len());
        announced
            .iter()
            .map(|&a| {
                let i = beats.partition_point(|&r| r < a).clamp(1, beats.len() - 1);
                let (e0, e1) = (a - beats[i - 1], a - beats[i]);
                if e0.abs() < e1.abs() {
                    e0
                } else {
                    e1
                }
            })
            .collect()
    }

    fn stats(errs: &[f64]) -> (f64, f64) {
        let abs: Vec<f64> = errs.iter().map(|e| e.abs()).collect();
        let mut signed = errs.to_vec();
        signed.sort_by(f64::total_cmp);
        (signed[signed.len() / 2], eval::percentile(&abs, 95.0))
    }

    /// On an accelerando (and a ritardando) the trailing tempo estimate put
    /// the grid late (early); the ramp search keeps it on the beat.
    #[test]
    fn a_tempo_ramp_is_followed_without_lag() {
        let off = LiveConfig {
            ramp_search: 0.0,
            ..LiveConfig::default()
        };
        for (b0, b1) in [(100.0, 140.0), (140.0, 100.0)] {
            let (median, p95) = stats(&ramp_errors(&LiveConfig::default(), b0, b1));
            let (off_median, off_p95) = stats(&ramp_errors(&off, b0, b1));
            eprintln!(
                "{b0}->{b1} BPM: median {median:+.4} s, p95 {p95:.4} s; \
                 without the search {off_median:+.4} s, {off_p95:.4} s"
            );
            assert!(median.abs() < 0.003 && p95 < 0.012, "{b0}->{b1}");
            assert!(
                off_median.abs() > 0.007,
                "{b0}->{b1}: the test no longer shows the lag"
            );
        }
        // A steady tempo does not switch the search on.
        let (median, p95) = stats(&ramp_errors(&LiveConfig::default(), 120.0, 120.001));
        assert!(
            median.abs() < 0.004 && p95 < 0.008,
            "steady: {median} {p95}"
        );
    }

    /// After a tempo step the grid runs on at the old tempo until the tempo
    /// estimate follows; once the new beats outweigh the old in the last three
    /// periods, its beats are withheld rather than flashed between the real
    /// ones. (The first two beats after the step still come at the old tempo:
    /// one new beat is no evidence yet.)
    #[test]
    fn beats_are_withheld_while_a_tempo_step_contradicts_the_grid() {
        let step_s = 20.0;
        let mut beats: Vec<f64> = (0..)
            .map(|k| k as f64 * 60.0 / 132.0)
            .take_while(|&t| t < step_s)
            .collect();
        let mut t = beats.last().copied().unwrap_or(0.0);
        while t < 40.0 {
            t += 60.0 / 108.0;
            beats.push(t);
        }
        // The worst error of the beats from 1.2 s after the step on, and the
        // number of beats announced after 8 s.
        let worst_after_step = |cfg: &LiveConfig| {
            let errs = errors_after(cfg, &beats, 40.0, 8.0);
            let n = errs.len();
            let late = errors_after(cfg, &beats, 40.0, step_s + 1.2);
            (late.iter().fold(0.0f64, |m, e| m.max(e.abs())), n)
        };
        let (on, n_on) = worst_after_step(&LiveConfig::default());
        let (off, n_off) = worst_after_step(&LiveConfig {
            withhold_lead: 0.0,
            ..LiveConfig::default()
        });
        eprintln!(
            "tempo step: worst {on:.4} s ({n_on} beats); never withheld {off:.4} s ({n_off} beats)"
        );
        assert!(on < 0.02, "worst beat {on} s off");
        assert!(off > 0.1, "the test no longer shows the step ({off} s)");
        assert!(n_on + 5 >= n_off, "{n_on} of {n_off} beats announced");
    }
}
