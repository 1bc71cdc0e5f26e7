//! Offline beat tracking, downbeat (bar phase) estimation and sectioning.
//!
//! [`track_beats`] is the dynamic-programming tracker of Ellis (2007): the
//! onset envelope ([`beat_envelope`]: the full band plus the high band, where
//! snare and hats keep the beat when kick and bass are syncopated) is normalised and smoothed into a local score, and the
//! cumulative score of a beat at frame `t` is its local score plus the best
//! predecessor score penalised by `tightness * ln((t - p) / tau)^2`, with the
//! period `tau` taken per frame from a local tempo curve so tempo changes are
//! followed. [`estimate_meter`] picks the bar length (4, or 3 when clearly
//! better) and the downbeats that maximise low-frequency onset strength, bass
//! change and chord change (chroma, over one beat and over half a bar) on the
//! downbeats, counting beats across silences and letting the bar phase move
//! where a bar is cut short or lengthened (a Viterbi path over the position
//! in the bar). [`segment`] finds
//! section boundaries as peaks of a checkerboard novelty curve on the
//! bar-level self-similarity of band-energy features, snaps them to bars, and
//! labels sections (`intro`, `A`, `B`, …, `outro`).

use super::features::FrameRows;

/// Beat tracker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatConfig {
    /// Weight of the tempo-deviation penalty (default 100, as in librosa).
    pub tightness: f32,
    /// Leading/trailing beats whose local score is below this fraction of the
    /// RMS beat score are dropped (default 0.03, low enough to keep beats in
    /// quiet intros; 0 disables trimming).
    pub trim_threshold: f32,
    /// Runs of at least this many such weak beats inside the track are
    /// dropped too (default 2; 0 = never): where the music stops, the beats
    /// stop until it returns.
    pub silence_beats: f32,
    /// Weight of the high-band onset strength (snare, hi-hat) added to the
    /// full-band strength the tracker follows, both normalised to unit
    /// standard deviation (see [`beat_envelope`]); default 1. The full band is
    /// dominated by kick and bass, which funk and other syncopated styles
    /// play a sixteenth ahead of the beat, while the backbeat snare and the
    /// hats stay on it. 0 follows the full band alone.
    pub high_weight: f32,
    /// Weight of the kick strength (see [`super::onset::OnsetFrame::kick_strength`])
    /// added, normalised to unit standard deviation, where the kick is a
    /// regular pulse on the first pass's beats or half-way between them
    /// ([`super::onset::kick_is_regular`]); the beats are then tracked again
    /// (see [`kick_envelope`]). Default 2; 0 keeps the first pass.
    pub kick_weight: f32,
}

impl Default for BeatConfig {
    fn default() -> Self {
        Self {
            tightness: 100.0,
            trim_threshold: 0.03,
            silence_beats: 2.0,
            high_weight: 1.0,
            kick_weight: 2.0,
        }
    }
}

impl BeatConfig {
    /// Apply one `KEY=VALUE` override (the evaluation tools' `--offline`): any
    /// numeric setting by its field name.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        super::set_numeric(assignment, "offline beat", move |key| match key {
            "tightness" => Some(&mut self.tightness),
            "trim_threshold" => Some(&mut self.trim_threshold),
            "silence_beats" => Some(&mut self.silence_beats),
            "high_weight" => Some(&mut self.high_weight),
            "kick_weight" => Some(&mut self.kick_weight),
            _ => None,
        })
    }
}

/// The envelope the beat tracker follows: the full-band onset strength `env`
/// plus `high_weight` times the high-band strength `high`, each divided by
/// its standard deviation so the weight does not depend on the mix's
/// spectral balance. Non-finite values count as 0; a silent band adds nothing.
pub fn beat_envelope(env: &[f32], high: &[f32], high_weight: f32) -> Vec<f32> {
    let inv_std = |v: &[f32]| -> f32 {
        let clean = || {
            v.iter()
                .map(|x| if x.is_finite() { *x as f64 } else { 0.0 })
        };
        let n = v.len().max(1) as f64;
        let mean = clean().sum::<f64>() / n;
        let var = clean().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt();
        if std > 1e-9 {
            (1.0 / std) as f32
        } else {
            0.0
        }
    };
    let w = if high_weight.is_finite() {
        high_weight.max(0.0)
    } else {
        0.0
    };
    let (ke, kh) = (inv_std(env), w * inv_std(high));
    let clean = |x: f32| if x.is_finite() { x } else { 0.0 };
    env.iter()
        .enumerate()
        .map(|(i, &e)| ke * clean(e) + kh * high.get(i).copied().map_or(0.0, clean))
        .collect()
}

/// Beats either side of a beat whose kicks [`kick_envelope`] looks at.
const KICK_REACH: usize = 8;

/// The strongest value of `v` within `w` frames of `x` (0 outside).
fn max_near(v: &[f32], x: usize, w: usize) -> f32 {
    let hi = (x + w + 1).min(v.len());
    v.get(x.saturating_sub(w)..hi)
        .unwrap_or(&[])
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(*v))
}

/// The beat envelope `env` with the kick strength `kick` weighed in (divided
/// by its standard deviation, times `weight`) wherever the kick is a regular
/// pulse on the `beats` of a first pass or half-way between them (judged on
/// the [`KICK_REACH`] beats either side of each beat, see
/// [`super::onset::kick_is_regular`]); `None` when it is nowhere, or when
/// `weight` is 0. On a four-on-the-floor groove the full band can carry as
/// much flux on the off-beat hats (and bass stabs) as on the kicks, and the
/// first pass may follow the hats; where the kick is regular, the beat is
/// where it is.
pub fn kick_envelope(env: &[f32], kick: &[f32], beats: &[usize], weight: f32) -> Option<Vec<f32>> {
    use super::onset::{kick_is_regular, KICK_GRID_MAX};
    if !(weight.is_finite() && weight > 0.0) || beats.len() < 6 || kick.len() != env.len() {
        return None;
    }
    let n = env.len();
    let mut gain = vec![false; n];
    let mut any = false;
    for i in 0..beats.len() - 1 {
        let lo = i.saturating_sub(KICK_REACH);
        let hi = (i + KICK_REACH).min(beats.len() - 1);
        let (mut on, mut off) = ([0.0f32; KICK_GRID_MAX], [0.0f32; KICK_GRID_MAX]);
        let mut m = 0;
        for j in lo..hi {
            if m == KICK_GRID_MAX {
                break;
            }
            let (a, b) = (beats[j], beats[j + 1]);
            let w = ((b - a) / 16).max(1);
            on[m] = max_near(kick, a, w);
            off[m] = max_near(kick, (a + b) / 2, w);
            m += 1;
        }
        if kick_is_regular(&on[..m], &off[..m]) {
            any = true;
            let end = if i + 2 == beats.len() {
                n
            } else {
                beats[i + 1]
            };
            let start = if i == 0 { 0 } else { beats[i] };
            gain[start..end].iter_mut().for_each(|g| *g = true);
        }
    }
    if !any {
        return None;
    }
    let clean = |x: f32| if x.is_finite() { x } else { 0.0 };
    let mean = kick.iter().map(|x| clean(*x) as f64).sum::<f64>() / n as f64;
    let var = kick
        .iter()
        .map(|x| (clean(*x) as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    let std = var.sqrt();
    if std.is_nan() || std <= 1e-12 {
        return None;
    }
    let k = weight / std as f32;
    Some(
        env.iter()
            .zip(kick)
            .zip(&gain)
            .map(|((e, x), g)| if *g { e + k * clean(*x) } else { *e })
            .collect(),
    )
}

/// Tracks beats in `env` (one value per frame). `bpm` gives the local tempo
/// per frame (a single value is used for every frame; an empty slice yields no
/// beats). Returns ascending frame indices of beats.
pub fn track_beats(env: &[f32], bpm: &[f32], frame_rate: f32, cfg: &BeatConfig) -> Vec<usize> {
    let n = env.len();
    if n < 4 || bpm.is_empty() || !(frame_rate.is_finite() && frame_rate > 0.0) {
        return Vec::new();
    }
    let period_at = |t: usize| -> f32 {
        let b = if bpm.len() == 1 {
            bpm[0]
        } else {
            bpm[t.min(bpm.len() - 1)]
        };
        let b = if b.is_finite() && b > 1.0 { b } else { 120.0 };
        (60.0 * frame_rate / b).max(2.0)
    };
    // Normalise by standard deviation.
    let clean: Vec<f32> = env
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect();
    let mean = clean.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
    let var = clean
        .iter()
        .map(|v| (*v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n as f64 - 1.0).max(1.0);
    let std = var.sqrt() as f32;
    if !(std.is_finite() && std > 1e-9) {
        return Vec::new();
    }
    let norm: Vec<f32> = clean.iter().map(|v| v / std).collect();
    // Local score: Gaussian smoothing with width tied to the median period.
    let mut ps: Vec<f32> = (0..n).step_by((n / 64).max(1)).map(period_at).collect();
    ps.sort_by(|a, b| a.total_cmp(b));
    let tau_med = ps[ps.len() / 2];
    let radius = tau_med.round() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| {
            let x = i as f32 * 32.0 / tau_med;
            (-0.5 * x * x).exp()
        })
        .collect();
    let mut local = vec![0.0f32; n];
    for (t, l) in local.iter_mut().enumerate() {
        let mut s = 0.0;
        for (k, &w) in kernel.iter().enumerate() {
            let j = t as isize + k as isize - radius;
            if j >= 0 && (j as usize) < n {
                s += w * norm[j as usize];
            }
        }
        *l = s;
    }
    let max_local = local.iter().cloned().fold(0.0f32, f32::max);
    if max_local <= 0.0 {
        return Vec::new();
    }
    let tight = if cfg.tightness.is_finite() && cfg.tightness >= 0.0 {
        cfg.tightness
    } else {
        100.0
    };
    let mut cum = vec![0.0f32; n];
    let mut back = vec![usize::MAX; n];
    let mut first_beat = true;
    for t in 0..n {
        let tau = period_at(t);
        let lo = t as isize - (2.0 * tau).round() as isize;
        let hi = t as isize - (tau / 2.0).round() as isize;
        let mut best = f32::NEG_INFINITY;
        let mut arg = usize::MAX;
        if hi >= 0 {
            for p in lo.max(0)..=hi {
                let p = p as usize;
                let r = ((t - p) as f32 / tau).ln();
                let v = cum[p] - tight * r * r;
                if v > best {
                    best = v;
                    arg = p;
                }
            }
        }
        if arg == usize::MAX {
            cum[t] = local[t];
        } else {
            cum[t] = local[t] + best;
            back[t] = arg;
        }
        if first_beat && local[t] < 0.01 * max_local {
            back[t] = usize::MAX;
        } else {
            first_beat = false;
        }
    }
    // Last beat: last local maximum of cum above half the median of maxima.
    let mut maxima = Vec::new();
    for t in 0..n {
        let l = if t > 0 { cum[t - 1] } else { f32::NEG_INFINITY };
        let r = if t + 1 < n {
            cum[t + 1]
        } else {
            f32::NEG_INFINITY
        };
        if cum[t] > l && cum[t] >= r {
            maxima.push(t);
        }
    }
    if maxima.is_empty() {
        return Vec::new();
    }
    let mut mv: Vec<f32> = maxima.iter().map(|&t| cum[t]).collect();
    mv.sort_by(|a, b| a.total_cmp(b));
    let med = mv[mv.len() / 2];
    let last = maxima
        .iter()
        .rev()
        .find(|&&t| cum[t] >= 0.5 * med)
        .copied()
        .unwrap_or(maxima[maxima.len() - 1]);
    let mut beats = vec![last];
    let mut t = last;
    while back[t] != usize::MAX && beats.len() <= n {
        t = back[t];
        beats.push(t);
    }
    beats.reverse();
    // Trim weak leading/trailing beats.
    if cfg.trim_threshold > 0.0 && !beats.is_empty() {
        let rms =
            (beats.iter().map(|&b| local[b] * local[b]).sum::<f32>() / beats.len() as f32).sqrt();
        let thr = cfg.trim_threshold * rms;
        let s = beats
            .iter()
            .position(|&b| local[b] > thr)
            .unwrap_or(beats.len());
        let e = beats
            .iter()
            .rposition(|&b| local[b] > thr)
            .map(|i| i + 1)
            .unwrap_or(s);
        beats = beats[s..e.max(s)].to_vec();
        // The same inside the track: where the music stops (a run of weak
        // beats), the beats stop until it returns.
        let run_min = cfg.silence_beats;
        if run_min.is_finite() && run_min >= 1.0 {
            let run_min = run_min as usize;
            let mut keep = vec![true; beats.len()];
            let mut i = 0;
            while i < beats.len() {
                let j = (i..beats.len())
                    .find(|&j| local[beats[j]] > thr)
                    .unwrap_or(beats.len());
                if j - i >= run_min {
                    keep[i..j].iter_mut().for_each(|k| *k = false);
                }
                i = j + 1;
            }
            let mut k = keep.iter();
            beats.retain(|_| k.next().copied().unwrap_or(true));
        }
    }
    beats
}

/// Beats below which [`grid_confidence`] is scaled down: a few beats fit anything.
const CONFIDENT_BEATS: usize = 16;

/// How sure a beat grid is, `0..=1`: how far the onset envelope `env` stands out on the
/// beats from the rest of the span they cover, `(on - base) / on`, where `on` is the mean
/// of the envelope's peak within ±2 frames of each beat and `base` the same peak taken
/// at every frame between the first and last beat (so a grid that merely picks the
/// local maxima of noise gains nothing); scaled by `beats / 16` below 16 beats. A grid
/// on a clear pulse scores near 1, also with busy eighth notes between the beats (those
/// are a few frames of each period); a steady tone, noise or a grid off the pulse scores
/// near 0, and a few beats fit anything.
pub fn grid_confidence(env: &[f32], beats: &[usize]) -> f32 {
    let (Some(&first), Some(&last)) = (beats.first(), beats.last()) else {
        return 0.0;
    };
    if beats.len() < 2 || env.is_empty() || last <= first {
        return 0.0;
    }
    let peak = |f: usize| -> f32 {
        let lo = f.saturating_sub(2).min(env.len());
        let hi = (f + 3).min(env.len());
        env[lo..hi]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f32, f32::max)
    };
    let on = beats.iter().map(|&b| peak(b)).sum::<f32>() / beats.len() as f32;
    let base = (first..=last).map(peak).sum::<f32>() / (last - first + 1) as f32;
    if !(on.is_finite() && base.is_finite() && on > 1e-9) {
        return 0.0;
    }
    let contrast = ((on - base) / on).clamp(0.0, 1.0);
    let support = (beats.len() as f32 / CONFIDENT_BEATS as f32).min(1.0);
    contrast * support
}

/// Bar length and downbeats of a beat sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterEstimate {
    /// Beats per bar (4, or 3).
    pub beats_per_bar: usize,
    /// Index (into the beat list) of the first downbeat, `downbeats[0]`
    /// (`< beats_per_bar` unless the first bars are cut by a gap).
    pub phase: usize,
    /// Contrast of the downbeat feature, `>= 0` (0 = no evidence).
    pub confidence: f32,
    /// Indices (into the beat list) of every downbeat, ascending. Usually
    /// `beats_per_bar` apart; a bar is shorter where beats were dropped in a
    /// silence, or where the bar phase moves ([`BAR_SWITCH_COST`]).
    pub downbeats: Vec<usize>,
}

/// Chooses meter (4/4, or 3/4 when clearly better) and the downbeats that
/// maximise low-frequency onset strength plus bass change plus chord change
/// (over one beat and over half a bar) on the downbeats. Beats are counted
/// across gaps ([`beat_numbers`]), and the bar phase may move where a bar is
/// cut short or lengthened ([`downbeat_path`]). `low` is a per-frame low-frequency onset strength,
/// `bass[t]` a per-frame vector of low-frequency log magnitudes and
/// `chroma[t]` a per-frame pitch-class profile (either may be empty), and
/// `beats` are frame indices.
pub fn estimate_meter(
    beats: &[usize],
    low: &[f32],
    bass: &(impl FrameRows + ?Sized),
    chroma: &(impl FrameRows + ?Sized),
    allow_triple: bool,
) -> MeterEstimate {
    let fallback = MeterEstimate {
        beats_per_bar: 4,
        phase: 0,
        confidence: 0.0,
        downbeats: (0..beats.len()).step_by(4).collect(),
    };
    if beats.len() < 4 || low.is_empty() {
        return fallback;
    }
    let feat: Vec<f32> = beats
        .iter()
        .map(|&b| {
            let lo = b.saturating_sub(2);
            let hi = (b + 3).min(low.len());
            low.get(lo..hi)
                .map(|s| {
                    s.iter()
                        .cloned()
                        .filter(|v| v.is_finite())
                        .fold(0.0f32, f32::max)
                })
                .unwrap_or(0.0)
        })
        .collect();
    let chord_spans = span_means(beats, chroma);
    let cues = [
        feat,
        bass_change(beats, bass),
        span_change(&chord_spans, 1, chroma_distance),
        span_change(&chord_spans, 2, chroma_distance),
    ];
    // Sum of the cues, each normalised to a mean of 1 (an absent or flat
    // cue adds nothing).
    let mut feat = vec![0.0f32; beats.len()];
    for (cue, w) in cues
        .iter()
        .zip([1.0, 1.0, CHORD_WEIGHT, HALF_BAR_CHORD_WEIGHT])
    {
        let mean = cue.iter().sum::<f32>() / cue.len().max(1) as f32;
        if mean > 1e-9 {
            for (f, c) in feat.iter_mut().zip(cue) {
                *f += w * c / mean;
            }
        }
    }
    let mean_all = feat.iter().sum::<f32>() / feat.len() as f32;
    if !(mean_all.is_finite() && mean_all > 1e-9) {
        return fallback;
    }
    let numbers = beat_numbers(beats);
    let contrast = |m: usize, ph: usize| -> f32 {
        let (mut on, mut n_on, mut off, mut n_off) = (0.0f32, 0usize, 0.0f32, 0usize);
        for (&f, &n) in feat.iter().zip(&numbers) {
            if n % m == ph {
                on += f;
                n_on += 1;
            } else {
                off += f;
                n_off += 1;
            }
        }
        if n_on == 0 || n_off == 0 {
            return 0.0;
        }
        (on / n_on as f32 - off / n_off as f32) / mean_all
    };
    let best_of = |m: usize| -> (usize, f32) {
        (0..m)
            .map(|ph| (ph, contrast(m, ph)))
            .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
    };
    let (_, c4) = best_of(4);
    let (mut m, mut confidence) = (4, c4.max(0.0));
    if allow_triple && beats.len() >= 6 {
        let (_, c3) = best_of(3);
        if c3 > 0.1 && c3 > 1.5 * c4.max(0.0) {
            (m, confidence) = (3, c3);
        }
    }
    let downbeats = downbeat_path(&feat, &numbers, m, mean_all);
    MeterEstimate {
        beats_per_bar: m,
        phase: downbeats.first().copied().unwrap_or(0),
        confidence,
        downbeats,
    }
}

/// Cost, in units of the mean downbeat feature, of a bar that does not follow
/// from the one before (a beat lost or gained by the tracker, a bar of 2 or 6):
/// the phase moves only when the new one is clearly better over several bars.
const BAR_SWITCH_COST: f32 = 3.0;

/// Each beat's count from the first, where an interval of `k` local beat
/// periods (median of the 16 intervals around it) counts `k`: beats the tracker
/// dropped in a silence still count, so the bars after it keep their phase.
fn beat_numbers(beats: &[usize]) -> Vec<usize> {
    let mut numbers = Vec::with_capacity(beats.len());
    let mut n = 0usize;
    for i in 0..beats.len() {
        if i > 0 {
            let (lo, hi) = (i.saturating_sub(8), (i + 8).min(beats.len() - 1));
            let mut iv: Vec<usize> = beats[lo..=hi].windows(2).map(|w| w[1] - w[0]).collect();
            iv.sort_unstable();
            let period = iv[iv.len() / 2].max(1) as f32;
            let k = ((beats[i] - beats[i - 1]) as f32 / period).round();
            n += (k as usize).max(1);
        }
        numbers.push(n);
    }
    numbers
}

/// Indices of the downbeats: the bar position of every beat that maximises the
/// downbeat feature on position 0, where each position follows from the one
/// before by the beats counted between them ([`beat_numbers`]) or, at
/// [`BAR_SWITCH_COST`], jumps (Viterbi); a jump never leaves a bar of one
/// beat (without that, a strong cue on the last beat of the demo song's intro
/// bought a downbeat there and another on the next beat).
fn downbeat_path(feat: &[f32], numbers: &[usize], m: usize, mean: f32) -> Vec<usize> {
    let n = feat.len();
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let gain = |i: usize, s: usize| if s == 0 { (feat[i] - mean) / mean } else { 0.0 };
    let mut score: Vec<f32> = (0..m).map(|s| gain(0, s)).collect();
    let mut back = vec![0u8; n * m];
    let mut next = vec![0.0f32; m];
    for i in 1..n {
        let adv = numbers[i] - numbers[i - 1];
        for (s, slot) in next.iter_mut().enumerate() {
            let (mut best, mut arg) = (f32::NEG_INFINITY, 0usize);
            for (p, &sc) in score.iter().enumerate() {
                let v = if (p + adv) % m == s {
                    sc
                } else if p == 0 && s == 0 && adv == 1 {
                    // A bar of one beat: never.
                    f32::NEG_INFINITY
                } else {
                    sc - BAR_SWITCH_COST
                };
                if v > best {
                    (best, arg) = (v, p);
                }
            }
            *slot = best + gain(i, s);
            back[i * m + s] = arg as u8;
        }
        std::mem::swap(&mut score, &mut next);
    }
    let mut s = (0..m).fold(0, |a, b| if score[b] > score[a] { b } else { a });
    let mut path = vec![0usize; n];
    for i in (0..n).rev() {
        path[i] = s;
        if i > 0 {
            s = back[i * m + s] as usize;
        }
    }
    (0..n).filter(|&i| path[i] == 0).collect()
}

/// Mean of `frames[s..e]`, non-finite values counting as `nonfinite`; zeros when empty.
fn mean_frame(
    frames: &(impl FrameRows + ?Sized),
    s: usize,
    e: usize,
    dim: usize,
    nonfinite: f32,
) -> Vec<f32> {
    frames.mean(s, e, dim, nonfinite)
}

/// Mean feature of every beat span (beat `i` to beat `i + 1`) without its
/// attack (first quarter); `beats.len() - 1` rows.
fn span_means(beats: &[usize], frames: &(impl FrameRows + ?Sized)) -> Vec<Vec<f32>> {
    let dim = frames.dim();
    let q = |a: usize, b: usize| a + (b - a) / 4;
    beats
        .windows(2)
        .map(|w| mean_frame(frames, q(w[0], w[1]), w[1], dim, 0.0))
        .collect()
}

/// For each beat, `distance` between the mean of the `k` span means
/// ([`span_means`]) that start there and of the `k` before it; 0 where fewer
/// than `k` spans lie on either side.
fn span_change(spans: &[Vec<f32>], k: usize, distance: impl Fn(&[f32], &[f32]) -> f32) -> Vec<f32> {
    let n = spans.len() + 1;
    if spans.is_empty() || spans[0].is_empty() || k == 0 {
        return Vec::new();
    }
    let mean = |rows: &[Vec<f32>]| -> Vec<f32> {
        let mut m = vec![0.0f32; rows[0].len()];
        for r in rows {
            m.iter_mut().zip(r).for_each(|(a, b)| *a += b);
        }
        m.iter_mut().for_each(|a| *a /= rows.len() as f32);
        m
    };
    (0..n)
        .map(|i| {
            if i < k || i + k >= n {
                return 0.0;
            }
            distance(&mean(&spans[i - k..i]), &mean(&spans[i..i + k]))
        })
        .collect()
}

/// RMS difference of two feature vectors of the same length.
fn rms_distance(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len().max(1) as f32).sqrt()
}

/// Bass change: RMS difference of the mean low-frequency log spectra.
fn bass_change(beats: &[usize], bass: &(impl FrameRows + ?Sized)) -> Vec<f32> {
    span_change(&span_means(beats, bass), 1, rms_distance)
}

/// Weight of the chord-change cue in [`estimate_meter`], against 1 for the
/// low-band onsets and 1 for the bass change. Chords change on the downbeat
/// in most popular music, and this cue alone sets pop's bar phase right
/// (kick on 1 and 3 alike, bass moving on 1, 3 and 4). It is held below the
/// others because a pad with a slow attack shows its change a beat late at
/// fast tempi: at weight 1 or more it moves drum & bass's bars (174 BPM, a
/// warm pad) one beat late. On the evaluation corpus every weight from 0.25
/// to 0.75 gives the same downbeats.
const CHORD_WEIGHT: f32 = 0.5;

/// Weight of the half-bar chord change in [`estimate_meter`]: the chroma of
/// the two beats after a beat against the two before it. A chord usually holds
/// through its bar, so the two halves of a bar sound alike and the halves on
/// either side of a bar line do not, even where a strum or an alternating bass
/// (boom-chick: root on 1, fifth on 3) makes every beat differ from the one
/// before it and the low band is as strong on 3 as on 1. Held at half the
/// one-beat cue: averaging two beats also spreads a slow pad's late change
/// over the beat after the bar line (at 0.5 it moves the 174 BPM drum & bass
/// clip's bars a beat late).
const HALF_BAR_CHORD_WEIGHT: f32 = 0.25;

/// Cosine distance of two chroma vectors, `0..=1` (0 when either is silent).
fn chroma_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na > 1e-9 && nb > 1e-9 {
        (1.0 - dot / (na * nb)).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Pitch class (0 = C) of every FFT bin between 100 Hz and 2 kHz, as
/// `(bin, class)` pairs, for [`chroma`]. Below 100 Hz a 2048-point frame's
/// bins are wider than a semitone.
pub fn chroma_bins(bin_hz: f32, n_bins: usize) -> Vec<(usize, usize)> {
    if !(bin_hz.is_finite() && bin_hz > 0.0) {
        return Vec::new();
    }
    let lo = (100.0 / bin_hz).ceil() as usize;
    let hi = ((2000.0 / bin_hz).floor() as usize).min(n_bins.saturating_sub(1));
    (lo.max(1)..=hi)
        .map(|k| {
            let midi = 69.0 + 12.0 * (k as f32 * bin_hz / 440.0).log2();
            (k, (midi.round() as i64).rem_euclid(12) as usize)
        })
        .collect()
}

/// Chroma of one magnitude spectrum: the log-compressed magnitude of each
/// bin (`ln(1 + 100 m)`) summed into its pitch class.
pub fn chroma(bins: &[(usize, usize)], mags: &[f32]) -> [f32; 12] {
    let mut c = [0.0f32; 12];
    for &(k, pc) in bins {
        if let Some(&m) = mags.get(k) {
            if m.is_finite() && m > 0.0 {
                c[pc] += (100.0 * m).ln_1p();
            }
        }
    }
    c
}

/// A section found by [`segment`], in frame units.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionSpan {
    /// First frame of the section.
    pub start_frame: usize,
    /// One past the last frame of the section.
    pub end_frame: usize,
    /// Label: `intro`, `outro`, or a letter `A`, `B`, … (equal letters = similar).
    pub label: String,
    /// Mean loudness relative to the loudest section, `0..=1`.
    pub energy: f32,
}

/// Splits a track into sections. `bar_starts` are the frame indices of bar
/// starts (ascending); `features[t]` is a per-frame feature vector (band
/// levels in dB) and `level[t]` a per-frame linear amplitude. `n_frames` is
/// the total frame count.
pub fn segment(
    bar_starts: &[usize],
    features: &(impl FrameRows + ?Sized),
    level: &[f32],
    n_frames: usize,
) -> Vec<SectionSpan> {
    let n_frames = n_frames.min(features.len()).min(level.len());
    if n_frames == 0 {
        return Vec::new();
    }
    // Bar boundaries covering the whole track.
    let mut edges: Vec<usize> = vec![0];
    for &b in bar_starts {
        if b > *edges.last().unwrap_or(&0) && b < n_frames {
            edges.push(b);
        }
    }
    edges.push(n_frames);
    let n_bars = edges.len() - 1;
    let dim = features.dim();
    let bar_feat: Vec<Vec<f32>> = (0..n_bars)
        .map(|i| mean_frame(features, edges[i], edges[i + 1], dim, -100.0))
        .collect();
    let bar_level: Vec<f32> = (0..n_bars)
        .map(|i| {
            let (s, e) = (edges[i], edges[i + 1]);
            let p: f32 = level[s..e].iter().map(|v| v * v).sum::<f32>() / (e - s).max(1) as f32;
            p.sqrt()
        })
        .collect();
    let mut bounds: Vec<usize> = vec![0];
    if n_bars >= 4 {
        // Self-similarity with a Gaussian kernel on RMS dB distance. The kernel only
        // reaches 4 bars from the diagonal, so the similarities are computed where it
        // reads them, and the scale (the median of all distances) is selected without
        // holding the n² of them: an hour-long mix has thousands of bars.
        let dist = |i: usize, j: usize| rms_distance(&bar_feat[i], &bar_feat[j]);
        let sigma = median_pair_distance(n_bars, &dist).max(1.0);
        let sim = |x: usize, y: usize| {
            let v = dist(x, y);
            (-0.5 * (v / sigma) * (v / sigma)).exp()
        };
        let l = 4isize;
        let mut nov = vec![0.0f32; n_bars + 1];
        for (b, nv) in nov.iter_mut().enumerate().take(n_bars).skip(1) {
            let (mut s, mut wsum) = (0.0f32, 0.0f32);
            for i in -l..l {
                for j in -l..l {
                    let (x, y) = (b as isize + i, b as isize + j);
                    if x < 0 || y < 0 || x >= n_bars as isize || y >= n_bars as isize {
                        continue;
                    }
                    let sign = if (i < 0) == (j < 0) { 1.0 } else { -1.0 };
                    let g = (-(((i as f32 + 0.5).powi(2) + (j as f32 + 0.5).powi(2))
                        / (2.0 * (l as f32 * 0.6).powi(2))))
                    .exp();
                    s += sign * g * sim(x as usize, y as usize);
                    wsum += g;
                }
            }
            *nv = if wsum > 0.0 { (s / wsum).max(0.0) } else { 0.0 };
        }
        let thr = 0.15f32;
        for b in 2..n_bars.saturating_sub(1) {
            let v = nov[b];
            let is_peak = (b.saturating_sub(2)..=(b + 2).min(n_bars))
                .all(|k| k == b || nov[k] < v || (nov[k] == v && k > b));
            if is_peak && v > thr && b - bounds[bounds.len() - 1] >= 2 {
                bounds.push(b);
            }
        }
    }
    bounds.push(n_bars);
    // Section features and levels.
    let n_sec = bounds.len() - 1;
    let sec_feat: Vec<Vec<f32>> = (0..n_sec)
        .map(|k| mean_frame(&bar_feat, bounds[k], bounds[k + 1], dim, 0.0))
        .collect();
    let sec_level: Vec<f32> = (0..n_sec)
        .map(|k| {
            let s = &bar_level[bounds[k]..bounds[k + 1]];
            (s.iter().map(|v| v * v).sum::<f32>() / s.len().max(1) as f32).sqrt()
        })
        .collect();
    let max_level = sec_level.iter().cloned().fold(0.0f32, f32::max);
    let energy: Vec<f32> = sec_level
        .iter()
        .map(|l| {
            if max_level > 0.0 {
                (l / max_level).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    // Labels.
    let mut labels: Vec<String> = vec![String::new(); n_sec];
    if n_sec >= 2 && energy[0] < 0.6 {
        labels[0] = "intro".into();
    }
    if n_sec >= 3 && energy[n_sec - 1] < 0.6 {
        labels[n_sec - 1] = "outro".into();
    }
    let mut protos: Vec<(usize, String)> = Vec::new();
    for k in 0..n_sec {
        if !labels[k].is_empty() {
            continue;
        }
        let found = protos
            .iter()
            .find(|(p, _)| rms_distance(&sec_feat[*p], &sec_feat[k]) < 3.0)
            .map(|(_, l)| l.clone());
        labels[k] = match found {
            Some(l) => l,
            None => {
                let l = letter_label(protos.len());
                protos.push((k, l.clone()));
                l
            }
        };
    }
    (0..n_sec)
        .map(|k| SectionSpan {
            start_frame: edges[bounds[k]],
            end_frame: edges[bounds[k + 1]],
            label: labels[k].clone(),
            energy: energy[k],
        })
        .collect()
}

/// `A`, `B`, …, `Z`, `A2`, `B2`, …
/// The median (the element at index `m / 2` of the `m` sorted values, as
/// `total_cmp` sorts them) of `dist(i, j)` over all pairs `i < j < n`, found by
/// two counting passes over the pairs (16 bits of the value's order key each)
/// instead of holding and sorting them. `n` must be at least 2.
fn median_pair_distance(n: usize, dist: &dyn Fn(usize, usize) -> f32) -> f32 {
    // Order key: the integer whose unsigned order is `total_cmp`'s order.
    let key = |v: f32| {
        let b = v.to_bits();
        if b >> 31 == 1 {
            !b
        } else {
            b | 1 << 31
        }
    };
    let pairs = n * (n - 1) / 2;
    let mut rank = pairs / 2;
    let mut counts = vec![0usize; 1 << 16];
    for i in 0..n {
        for j in i + 1..n {
            counts[(key(dist(i, j)) >> 16) as usize] += 1;
        }
    }
    let high = pick_bucket(&counts, &mut rank);
    counts.iter_mut().for_each(|c| *c = 0);
    for i in 0..n {
        for j in i + 1..n {
            let k = key(dist(i, j));
            if k >> 16 == high {
                counts[(k & 0xffff) as usize] += 1;
            }
        }
    }
    let low = pick_bucket(&counts, &mut rank);
    let k = high << 16 | low;
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

/// The bucket holding the value of rank `rank` (0-based) in a histogram; `rank`
/// becomes the rank inside that bucket.
fn pick_bucket(counts: &[usize], rank: &mut usize) -> u32 {
    for (b, &c) in counts.iter().enumerate() {
        if *rank < c {
            return b as u32;
        }
        *rank -= c;
    }
    counts.len() as u32 - 1
}

fn letter_label(i: usize) -> String {
    let c = (b'A' + (i % 26) as u8) as char;
    if i < 26 {
        c.to_string()
    } else {
        format!("{c}{}", i / 26 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_confidence_is_high_on_a_pulse_and_low_off_it() {
        // A pulse every 20 frames with a weaker hi-hat on the eighths.
        let mut env = vec![0.05f32; 1000];
        for k in (0..1000).step_by(20) {
            env[k] = 1.0;
            if k + 10 < 1000 {
                env[k + 10] = 0.3;
            }
        }
        let on: Vec<usize> = (0..1000).step_by(20).collect();
        let quarter_off: Vec<usize> = (5..1000).step_by(20).collect();
        let c_on = grid_confidence(&env, &on);
        assert!(c_on > 0.6, "on the pulse: {c_on}");
        let c_off = grid_confidence(&env, &quarter_off);
        assert!(c_off < 0.05, "a quarter beat off: {c_off}");
        let flat = vec![0.5f32; 1000];
        assert!(grid_confidence(&flat, &on) < 0.05, "no pulse");
        // Noise: a grid on its local maxima is no better than any other frame's peak.
        let mut x = 0x2545_f491_u32;
        let noise: Vec<f32> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 1000) as f32 / 1000.0
            })
            .collect();
        let maxima: Vec<usize> = (0..1000)
            .step_by(20)
            .map(|k| (k..(k + 5).min(1000)).fold(k, |a, j| if noise[j] > noise[a] { j } else { a }))
            .collect();
        let c_noise = grid_confidence(&noise, &maxima);
        assert!(c_noise < 0.25, "noise: {c_noise}");
        // A few beats prove little even on a pulse.
        let few = grid_confidence(&env, &on[..4]);
        assert!(few < 0.3 && few > 0.0, "4 beats: {few}");
        assert_eq!(grid_confidence(&env, &[]), 0.0);
        assert_eq!(grid_confidence(&[], &on), 0.0);
    }

    #[test]
    fn chroma_bins_name_the_pitch_class_of_each_bin() {
        let bins = chroma_bins(440.0 / 20.0, 1025);
        let class_of = |k: usize| bins.iter().find(|b| b.0 == k).map(|b| b.1);
        assert_eq!(class_of(20), Some(9), "440 Hz is an A");
        assert_eq!(class_of(40), Some(9), "880 Hz is an A");
        assert_eq!(class_of(4), None, "88 Hz is below the chroma range");
        assert!(chroma_bins(0.0, 1025).is_empty());
    }

    /// Kick on beats 1 and 3 alike, so the low band cannot tell 1 from 3;
    /// the chord changing on the downbeat can.
    #[test]
    fn the_chord_change_decides_between_equal_kicks_on_one_and_three() {
        let (period, n_beats) = (20usize, 32usize);
        let beats: Vec<usize> = (0..n_beats).map(|i| 10 + i * period).collect();
        let frames = 10 + n_beats * period;
        let mut low = vec![0.0f32; frames];
        for (i, &b) in beats.iter().enumerate() {
            low[b] = if i % 2 == 1 { 1.0 } else { 0.3 };
        }
        let meter_with_chords_on = |phase: usize| {
            let chroma: Vec<[f32; 12]> = (0..frames)
                .map(|t| {
                    let beat = (t.saturating_sub(10) / period) as isize;
                    let bar = (beat - phase as isize).div_euclid(4);
                    let mut c = [0.1f32; 12];
                    c[(bar * 5).rem_euclid(12) as usize] = 1.0;
                    c
                })
                .collect();
            estimate_meter(&beats, &low, &Vec::<Vec<f32>>::new(), &chroma, false)
        };
        assert_eq!(meter_with_chords_on(1).phase, 1);
        assert_eq!(meter_with_chords_on(3).phase, 3);
        let m = meter_with_chords_on(3);
        assert_eq!(m.beats_per_bar, 4);
        assert!(m.confidence > 0.1, "{m:?}");
    }

    /// Boom-chick: the low band is stronger on 3 (the fifth) than on 1 (the
    /// root), and every beat's chroma differs from the one before it (bass
    /// note, then strum), so low onsets and the one-beat chord change put the
    /// bars on beat 3. The chord holds through its bar: the two beats after the
    /// bar line differ from the two before it, those after beat 3 do not.
    #[test]
    fn the_half_bar_chord_change_puts_boom_chick_bars_on_one() {
        let (period, n_beats) = (20usize, 48usize);
        let beats: Vec<usize> = (0..n_beats).map(|i| 10 + i * period).collect();
        let frames = 10 + n_beats * period;
        let mut low = vec![0.0f32; frames];
        for (i, &b) in beats.iter().enumerate() {
            low[b] = [0.8, 0.3, 1.0, 0.3][i % 4];
        }
        // Bar k: its bass note (one pitch class) on 1 and 3, its chord (three
        // others) on 2 and 4; consecutive bars share no pitch class.
        let chroma: Vec<[f32; 12]> = (0..frames)
            .map(|t| {
                let beat = t.saturating_sub(10) / period;
                let base = 6 * ((beat / 4) % 2);
                let mut c = [0.0f32; 12];
                if beat % 2 == 0 {
                    c[base] = 1.0;
                } else {
                    c[base + 1..base + 4].iter_mut().for_each(|v| *v = 1.0);
                }
                c
            })
            .collect();
        let m = estimate_meter(&beats, &low, &Vec::<Vec<f32>>::new(), &chroma, false);
        assert_eq!(m.beats_per_bar, 4);
        assert_eq!(m.phase, 0, "{m:?}");
        assert!(m.downbeats.iter().all(|d| d % 4 == 0), "{m:?}");
        assert_eq!(m.downbeats.len(), n_beats / 4);
    }

    /// Beats dropped in a silence still count: the bars after it keep their
    /// phase; and a bar of two beats between two stretches of 4/4 moves it.
    #[test]
    fn beats_count_across_gaps_and_the_bar_phase_follows_a_short_bar() {
        let mut beats: Vec<usize> = (0..20).map(|i| 10 + 20 * i).collect();
        // Six beats missing, then 20 more.
        beats.extend((26..46).map(|i| 10 + 20 * i));
        let numbers = beat_numbers(&beats);
        assert_eq!(numbers[19], 19);
        assert_eq!(numbers[20], 26);
        assert_eq!(numbers[39], 45);
        // Downbeat feature on every 4th counted beat of the first stretch,
        // then two beats later in the second (a 2/4 bar at the join).
        let n: Vec<usize> = (0..60).collect();
        let feat: Vec<f32> = n
            .iter()
            .map(|&i| {
                let on = if i < 30 { i % 4 == 0 } else { (i - 2) % 4 == 0 };
                if on {
                    3.0
                } else {
                    1.0
                }
            })
            .collect();
        let mean = feat.iter().sum::<f32>() / feat.len() as f32;
        let down = downbeat_path(&feat, &n, 4, mean);
        let want: Vec<usize> = n
            .iter()
            .copied()
            .filter(|&i| if i < 30 { i % 4 == 0 } else { (i - 2) % 4 == 0 })
            .collect();
        assert_eq!(down, want);
    }

    /// `segment` once sorted all n² bar distances for their median (70 MB for an hour of
    /// drum & bass); the counting selection must give the same float.
    #[test]
    fn median_pair_distance_is_the_sorted_median() {
        for n in [2usize, 3, 4, 7, 64, 301] {
            let v: Vec<f32> = (0..n)
                .map(|i| match i % 11 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 5.0,
                    k => ((i * 7919) % 1000) as f32 * 0.013 - k as f32,
                })
                .collect();
            let dist = |i: usize, j: usize| {
                (v[i] - v[j]).abs() * if (i + j) % 5 == 0 { -1.0 } else { 1.0 }
            };
            let mut all: Vec<f32> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .map(|(i, j)| dist(i, j))
                .collect();
            all.sort_by(|a, b| a.total_cmp(b));
            assert_eq!(
                median_pair_distance(n, &dist).to_bits(),
                all[all.len() / 2].to_bits(),
                "{n} values"
            );
        }
    }
}
