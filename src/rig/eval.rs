//! Beat-tracking evaluation metrics in the style of `mir_eval.beat`.
//!
//! Implements the F-measure with a ±70 ms window (one-to-one matching of
//! estimated to reference beats), and the continuity-based CMLc/CMLt/AMLc/AMLt
//! of Davies et al. (2009) exactly as `mir_eval.beat.continuity` computes them
//! (phase and period thresholds of 17.5 %, allowed metrical variations: the
//! reference, its off-beat, double tempo, and the two half-tempo versions).
//! [`evaluate`] mirrors `mir_eval.beat.evaluate` by first discarding beats
//! before 5 s. Also provides phase-error statistics for the live tracker.

/// Scores of one estimated beat sequence against a reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BeatScores {
    /// F-measure with a ±70 ms window.
    pub f_measure: f64,
    /// Correct metrical level, longest continuous segment.
    pub cmlc: f64,
    /// Correct metrical level, total.
    pub cmlt: f64,
    /// Any allowed metrical level, longest continuous segment.
    pub amlc: f64,
    /// Any allowed metrical level, total.
    pub amlt: f64,
}

/// Drops beats before `min_time` seconds (mir_eval uses 5 s).
pub fn trim_beats(beats: &[f64], min_time: f64) -> Vec<f64> {
    beats.iter().copied().filter(|&b| b >= min_time).collect()
}

/// Number of one-to-one matches within `window` seconds between two ascending
/// sequences (greedy in time order, which is optimal for a uniform window).
pub fn match_count(reference: &[f64], estimated: &[f64], window: f64) -> usize {
    let (mut i, mut j, mut n) = (0usize, 0usize, 0usize);
    while i < reference.len() && j < estimated.len() {
        let d = estimated[j] - reference[i];
        if d.abs() <= window {
            n += 1;
            i += 1;
            j += 1;
        } else if d < 0.0 {
            j += 1;
        } else {
            i += 1;
        }
    }
    n
}

/// F-measure of `estimated` against `reference` with tolerance `window` (s).
pub fn f_measure(reference: &[f64], estimated: &[f64], window: f64) -> f64 {
    if reference.is_empty() || estimated.is_empty() {
        return 0.0;
    }
    let m = match_count(reference, estimated, window) as f64;
    let p = m / estimated.len() as f64;
    let r = m / reference.len() as f64;
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

fn variations(reference: &[f64]) -> Vec<Vec<f64>> {
    let n = reference.len();
    // Double-tempo sequence: reference interleaved with midpoints.
    let mut double = Vec::with_capacity(2 * n);
    for i in 0..n {
        double.push(reference[i]);
        if i + 1 < n {
            double.push(0.5 * (reference[i] + reference[i + 1]));
        }
    }
    let offbeat: Vec<f64> = double.iter().skip(1).step_by(2).copied().collect();
    let half_odd: Vec<f64> = reference.iter().step_by(2).copied().collect();
    let half_even: Vec<f64> = reference.iter().skip(1).step_by(2).copied().collect();
    vec![reference.to_vec(), offbeat, double, half_odd, half_even]
}

fn continuity_one(
    reference: &[f64],
    estimated: &[f64],
    phase_thr: f64,
    period_thr: f64,
) -> (f64, f64) {
    let nr = reference.len();
    let ne = estimated.len();
    if nr < 2 || ne < 2 {
        return (0.0, 0.0);
    }
    let n_ann = nr.max(ne);
    let mut used = vec![false; nr];
    let mut success = vec![false; n_ann];
    for m in 0..ne {
        let (nearest, min_diff) = reference
            .iter()
            .enumerate()
            .map(|(i, r)| (i, (estimated[m] - r).abs()))
            .fold(
                (0usize, f64::INFINITY),
                |a, b| if b.1 < a.1 { b } else { a },
            );
        if used[nearest] {
            continue;
        }
        let (phase, period) = if m == 0 || nearest == 0 {
            let ref_int = if nearest + 1 < nr {
                reference[nearest + 1] - reference[nearest]
            } else {
                reference[nearest] - reference[nearest - 1]
            };
            let est_int = if m + 1 < ne {
                estimated[m + 1] - estimated[m]
            } else {
                estimated[m] - estimated[m - 1]
            };
            if ref_int == 0.0 {
                (
                    if min_diff == 0.0 { 1.0 } else { f64::INFINITY },
                    if est_int == 0.0 { 0.0 } else { f64::INFINITY },
                )
            } else {
                ((min_diff / ref_int).abs(), (1.0 - est_int / ref_int).abs())
            }
        } else {
            let ref_int = reference[nearest] - reference[nearest - 1];
            let est_int = estimated[m] - estimated[m - 1];
            if ref_int == 0.0 {
                (f64::INFINITY, f64::INFINITY)
            } else {
                ((min_diff / ref_int).abs(), (1.0 - est_int / ref_int).abs())
            }
        };
        if phase < phase_thr && period < period_thr {
            used[nearest] = true;
            success[m] = true;
        }
    }
    let mut longest = 0usize;
    let mut run = 0usize;
    for &s in &success {
        if s {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let total = success.iter().filter(|s| **s).count();
    (longest as f64 / n_ann as f64, total as f64 / n_ann as f64)
}

/// Continuity metrics `(cmlc, cmlt, amlc, amlt)` as in `mir_eval.beat.continuity`.
pub fn continuity(
    reference: &[f64],
    estimated: &[f64],
    phase_thr: f64,
    period_thr: f64,
) -> (f64, f64, f64, f64) {
    if reference.is_empty() || estimated.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let mut cont = Vec::new();
    let mut tot = Vec::new();
    for v in variations(reference) {
        let (c, t) = continuity_one(&v, estimated, phase_thr, period_thr);
        cont.push(c);
        tot.push(t);
    }
    let amlc = cont.iter().cloned().fold(0.0, f64::max);
    let amlt = tot.iter().cloned().fold(0.0, f64::max);
    (cont[0], tot[0], amlc, amlt)
}

/// All scores, without trimming.
pub fn score(reference: &[f64], estimated: &[f64]) -> BeatScores {
    let (cmlc, cmlt, amlc, amlt) = continuity(reference, estimated, 0.175, 0.175);
    BeatScores {
        f_measure: f_measure(reference, estimated, 0.07),
        cmlc,
        cmlt,
        amlc,
        amlt,
    }
}

/// All scores after dropping beats before 5 s, as `mir_eval.beat.evaluate` does.
pub fn evaluate(reference: &[f64], estimated: &[f64]) -> BeatScores {
    score(&trim_beats(reference, 5.0), &trim_beats(estimated, 5.0))
}

/// Absolute distance (s) from each estimated beat to its nearest reference beat.
pub fn phase_errors(reference: &[f64], estimated: &[f64]) -> Vec<f64> {
    if reference.is_empty() {
        return Vec::new();
    }
    estimated
        .iter()
        .map(|&e| {
            let i = reference.partition_point(|&r| r < e);
            let a = if i > 0 {
                (e - reference[i - 1]).abs()
            } else {
                f64::INFINITY
            };
            let b = reference
                .get(i)
                .map(|r| (r - e).abs())
                .unwrap_or(f64::INFINITY);
            a.min(b)
        })
        .collect()
}

/// The `p`-th percentile (0..=100, nearest-rank) of `values`; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(start: f64, period: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| start + i as f64 * period).collect()
    }

    #[test]
    fn perfect_estimate_scores_one() {
        let r = grid(0.5, 0.5, 40);
        let s = score(&r, &r);
        assert_eq!(s.f_measure, 1.0);
        assert_eq!(s.cmlc, 1.0);
        assert_eq!(s.cmlt, 1.0);
        assert_eq!(s.amlt, 1.0);
    }

    #[test]
    fn f_measure_window_edges() {
        let r = grid(1.0, 0.5, 10);
        let inside: Vec<f64> = r.iter().map(|x| x + 0.069).collect();
        let outside: Vec<f64> = r.iter().map(|x| x + 0.071).collect();
        assert_eq!(f_measure(&r, &inside, 0.07), 1.0);
        assert_eq!(f_measure(&r, &outside, 0.07), 0.0);
    }

    #[test]
    fn f_measure_half_tempo_and_extras() {
        let r = grid(1.0, 0.5, 20);
        let half: Vec<f64> = r.iter().step_by(2).copied().collect();
        // precision 1, recall 0.5 -> F = 2/3
        assert!((f_measure(&r, &half, 0.07) - 2.0 / 3.0).abs() < 1e-12);
        // Each reference can be matched only once.
        let dup: Vec<f64> = r.iter().flat_map(|&x| [x - 0.01, x + 0.01]).collect();
        assert!((f_measure(&r, &dup, 0.07) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f_measure(&[], &r, 0.07), 0.0);
    }

    #[test]
    fn continuity_offbeat_and_double() {
        let r = grid(1.0, 0.5, 40);
        let off: Vec<f64> = r.iter().map(|x| x + 0.25).collect();
        let (cmlc, cmlt, amlc, amlt) = continuity(&r, &off, 0.175, 0.175);
        assert_eq!((cmlc, cmlt), (0.0, 0.0));
        // mir_eval 0.8.2 gives (0, 0, 0.975, 0.975) here.
        assert!((amlt - 0.975).abs() < 1e-12 && (amlc - 0.975).abs() < 1e-12);
        let double = grid(1.0, 0.25, 79);
        // mir_eval 0.8.2 gives (0, 0, 1, 1) here.
        let c = continuity(&r, &double, 0.175, 0.175);
        assert_eq!(c, (0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn continuity_break_halves_cmlc() {
        let r = grid(1.0, 0.5, 40);
        let mut e = r.clone();
        // Shift the middle beat by 40 % of a period: a discontinuity.
        e[20] += 0.2;
        let (cmlc, cmlt, _, _) = continuity(&r, &e, 0.175, 0.175);
        // mir_eval 0.8.2 gives (0.5, 0.95, 0.5, 0.95) here.
        assert!((cmlt - 0.95).abs() < 1e-12, "{cmlt}");
        assert!((cmlc - 0.5).abs() < 1e-12, "{cmlc}");
    }

    #[test]
    fn matches_mir_eval_on_jittered_case() {
        // Reference values from mir_eval 0.8.2 `beat.evaluate` on the same input.
        let r = grid(5.0, 0.5, 20);
        let e: Vec<f64> = r
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7)
            .map(|(i, x)| x + if i % 3 == 0 { 0.05 } else { -0.02 })
            .collect();
        let s = evaluate(&r, &e);
        assert!((s.f_measure - 2.0 * 19.0 / 39.0).abs() < 1e-9);
        assert!((s.cmlt - 0.9).abs() < 1e-9, "{}", s.cmlt);
        assert!((s.cmlc - 0.55).abs() < 1e-9, "{}", s.cmlc);
        assert!((s.amlt - 0.9).abs() < 1e-9 && (s.amlc - 0.55).abs() < 1e-9);
    }

    #[test]
    fn percentile_and_phase_errors() {
        let r = grid(0.0, 1.0, 5);
        let pe = phase_errors(&r, &[0.1, 1.95, 3.5]);
        assert!((pe[0] - 0.1).abs() < 1e-12 && (pe[1] - 0.05).abs() < 1e-12);
        assert!((pe[2] - 0.5).abs() < 1e-12);
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }
}
