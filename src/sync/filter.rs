//! The network clock filter: turns noisy SNTP exchanges into an estimate of the leader's
//! clock as a function of ours — offset *and* frequency. Exchanges are grouped in buckets of
//! a few seconds; each bucket keeps only its lowest-delay exchange (the one least disturbed
//! by queueing and asymmetric jitter); a weighted line through the bucket minima gives offset
//! and ppm; residual outliers are dropped and the line refitted. From a window of 1 s on
//! (fully at 3 s), that line hands over to the *causal band* every exchange bounds (the
//! leader's clock read T2 after T1 and T3 before T4), which pins offset and frequency an order
//! of magnitude tighter through jitter (see [`Band`]); a prior on the band's slope keeps a
//! short window's frequency from swinging. A persistent disagreement of
//! several consecutive good exchanges is a clock *step* (the leader's clock was set): the
//! window restarts at once instead of dragging a median along for minutes. Pure: no I/O.

use std::collections::VecDeque;

pub use crate::clock::ClockEstimate;

/// One SNTP exchange, in nanoseconds of the local clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange {
    /// Local time the reply arrived (T4).
    pub local_ns: i64,
    /// Server minus local clock, `((T2−T1)+(T3−T4))/2`.
    pub offset_ns: i64,
    /// Round-trip network delay, `(T4−T1)−(T3−T2)`.
    pub delay_ns: i64,
}

/// Filter settings (all from `[sync]` config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterConfig {
    /// History kept, seconds.
    pub window_s: f64,
    /// Bucket length, seconds (one best exchange each).
    pub bucket_s: f64,
    /// Disagreement that counts towards a step, ns.
    pub step_threshold_ns: i64,
    /// Consecutive disagreeing exchanges that make a step.
    pub step_count: usize,
}

impl FilterConfig {
    /// From `[sync]`.
    pub fn from_config(y: &crate::config::SyncConfig) -> Self {
        FilterConfig {
            window_s: y.filter_window_s,
            bucket_s: y.filter_bucket_s,
            step_threshold_ns: (y.step_threshold_ms * 1e6) as i64,
            step_count: y.step_count.max(2) as usize,
        }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            window_s: 60.0,
            bucket_s: 1.0,
            step_threshold_ns: 50_000_000,
            step_count: 4,
        }
    }
}

/// Offset/frequency estimator.
#[derive(Debug, Clone)]
pub struct ClockFilter {
    cfg: FilterConfig,
    history: VecDeque<Exchange>,
    estimate: Option<ClockEstimate>,
    disagreeing: Vec<Exchange>,
    steps: u64,
    /// The server was restarted ([`ClockFilter::expect_step`]): the next good exchange
    /// that disagrees is a step at once, not after `step_count` of them.
    expect_step: bool,
}

/// Spread of clock frequency differences expected a priori, ppm (crystals are ±100 ppm;
/// two of them ±200; margin for the test rig's injected skews).
const PRIOR_PPM: f64 = 300.0;

/// Exchanges kept at most, whatever the window (bounded memory under a flood).
const MAX_HISTORY: usize = 4096;

impl ClockFilter {
    /// An empty filter.
    pub fn new(cfg: FilterConfig) -> Self {
        ClockFilter {
            cfg,
            history: VecDeque::new(),
            estimate: None,
            disagreeing: Vec::new(),
            steps: 0,
            expect_step: false,
        }
    }

    /// The server is a new incarnation (the leader restarted under the same id): its clock
    /// may have a new basis (a promoted leader's held-over time gives way to its own clock
    /// on restart, say). The next good exchange decides: one that disagrees by more than
    /// the step threshold restarts the window at once, so no sample of the old incarnation
    /// outlives it; one that agrees keeps the window (same basis, nothing lost).
    pub fn expect_step(&mut self) {
        self.expect_step = true;
    }

    /// The current estimate, once there is one.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        self.estimate
    }

    /// Feed one exchange; returns the updated estimate.
    pub fn add(&mut self, ex: Exchange) -> Option<ClockEstimate> {
        if ex.delay_ns < 0 {
            return self.estimate;
        }
        if let Some(est) = self.estimate {
            let predicted = est.fleet_at(ex.local_ns) - ex.local_ns;
            let residual = ex.offset_ns - predicted;
            let good = ex.delay_ns <= est.min_delay_ns.saturating_mul(2) + 10_000_000;
            if good && residual.abs() > self.cfg.step_threshold_ns {
                let same_side = self
                    .disagreeing
                    .last()
                    .is_none_or(|d| (d.offset_ns - predicted).signum() == residual.signum());
                if !same_side {
                    self.disagreeing.clear();
                }
                self.disagreeing.push(ex);
                if self.disagreeing.len() >= self.cfg.step_count || self.expect_step {
                    self.expect_step = false;
                    // A step: restart the window from the disagreeing exchanges, keep the ppm.
                    self.steps += 1;
                    self.history = self.disagreeing.drain(..).collect();
                    let keep_ppm = est.ppm;
                    self.estimate = self.fit().map(|mut e| {
                        if e.samples < 3 {
                            e.ppm = keep_ppm;
                        }
                        e
                    });
                    return self.estimate;
                }
                // Not (yet) believed: an outlier, kept out of the history.
                return self.estimate;
            }
            if good {
                self.disagreeing.clear();
                self.expect_step = false;
            }
        }
        self.history.push_back(ex);
        let horizon = ex.local_ns - (self.cfg.window_s * 1e9) as i64;
        while self.history.len() > MAX_HISTORY
            || self.history.front().is_some_and(|e| e.local_ns < horizon)
        {
            self.history.pop_front();
        }
        let keep_ppm = self.estimate.map(|e| e.ppm);
        self.estimate = self.fit().map(|mut e| {
            if let (Some(ppm), true) = (keep_ppm, e.samples < 3) {
                e.ppm = ppm;
            }
            e
        });
        self.estimate
    }

    /// Best exchange per bucket, then a weighted line through them; from a window of
    /// [`BAND_FROM_S`] on, blended into the causal band's centre line (see [`Band`]).
    fn fit(&self) -> Option<ClockEstimate> {
        let last = *self.history.back()?;
        let min_delay = self.history.iter().map(|e| e.delay_ns).min()?;
        let bucket_ns = (self.cfg.bucket_s * 1e9).max(1.0) as i64;
        let mut best: Vec<Exchange> = Vec::new();
        for ex in &self.history {
            let b = (last.local_ns - ex.local_ns) / bucket_ns;
            match best.last_mut() {
                Some(cur) if (last.local_ns - cur.local_ns) / bucket_ns == b => {
                    if ex.delay_ns < cur.delay_ns {
                        *cur = *ex;
                    }
                }
                _ => best.push(*ex),
            }
        }
        let ref_ns = last.local_ns;
        let weight = |e: &Exchange| {
            let excess = (e.delay_ns - min_delay) as f64 + 200_000.0;
            1.0 / (excess * excess)
        };
        let line = |pts: &[Exchange]| -> (f64, f64) {
            let span = pts.last().map_or(0, |l| l.local_ns) - pts.first().map_or(0, |f| f.local_ns);
            let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
            for e in pts {
                let w = weight(e);
                sw += w;
                sx += w * (e.local_ns - ref_ns) as f64;
                sy += w * e.offset_ns as f64;
            }
            let (mx, my) = (sx / sw, sy / sw);
            if pts.len() < 3 || span < 3 * bucket_ns / 2 {
                // Too short to tell frequency: lowest-delay exchange's offset.
                let b = pts
                    .iter()
                    .min_by_key(|e| e.delay_ns)
                    .map_or(my, |e| e.offset_ns as f64);
                return (b, f64::NAN);
            }
            let (mut sxx, mut sxy) = (0.0, 0.0);
            for e in pts {
                let w = weight(e);
                let dx = (e.local_ns - ref_ns) as f64 - mx;
                sxx += w * dx * dx;
                sxy += w * dx * (e.offset_ns as f64 - my);
            }
            let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
            // Shrink the slope towards 0 by its own uncertainty (a ridge / Bayesian prior of
            // ±`prior_ppm`): a short, noisy window cannot fling the frequency around, a long
            // one is believed. var(slope) ≈ σ² / Σw·dx² with σ² the weighted residual variance.
            let res: f64 = pts
                .iter()
                .map(|e| {
                    let dx = (e.local_ns - ref_ns) as f64 - mx;
                    weight(e) * (e.offset_ns as f64 - my - slope * dx).powi(2)
                })
                .sum::<f64>()
                / sw;
            // With weights normalised to mean 1: σ² = N·res/(N−2), Σŵdx² = N·sxx/sw.
            let dof = (pts.len() as f64 - 2.0).max(1.0);
            let var_slope = res * sw / (dof * sxx.max(f64::MIN_POSITIVE));
            let prior = (PRIOR_PPM * 1e-6).powi(2);
            let shrink = prior / (prior + var_slope);
            let slope = slope * shrink;
            (my - slope * mx, slope)
        };
        let (mut a, mut b) = line(&best);
        let residual = |e: &Exchange, a: f64, b: f64| {
            let b = if b.is_nan() { 0.0 } else { b };
            e.offset_ns as f64 - (a + b * (e.local_ns - ref_ns) as f64)
        };
        // Drop outliers (beyond 3× the median absolute residual) and refit.
        if best.len() >= 5 {
            let mut abs: Vec<f64> = best.iter().map(|e| residual(e, a, b).abs()).collect();
            abs.sort_by(f64::total_cmp);
            let mad = abs[abs.len() / 2].max(20_000.0);
            let kept: Vec<Exchange> = best
                .iter()
                .copied()
                .filter(|e| residual(e, a, b).abs() <= 3.0 * mad)
                .collect();
            if kept.len() >= 3 && kept.len() < best.len() {
                (a, b) = line(&kept);
                best = kept;
            }
        }
        let dispersion = (best.iter().map(|e| residual(e, a, b).powi(2)).sum::<f64>()
            / best.len() as f64)
            .sqrt();
        // Once the window is long enough for the band's slope to beat the bucket line's, hand
        // over to the band, gradually, so the estimate does not jump at the switch.
        let span_s = (last.local_ns - self.history.front().map_or(last.local_ns, |f| f.local_ns))
            as f64
            * 1e-9;
        let w = ((span_s - BAND_FROM_S) / (BAND_FULL_S - BAND_FROM_S)).clamp(0.0, 1.0);
        if w > 0.0 {
            if let Some(band) = Band::fit(&self.history, ref_ns) {
                if band.gap_ns >= -BAND_TOLERANCE_NS {
                    // Below 1.5 s the bucket line has no slope yet: blend from 0.
                    let b0 = if b.is_nan() { 0.0 } else { b };
                    (a, b) = (a + w * (band.offset_ns - a), b0 + w * (band.slope - b0));
                }
            }
        }
        Some(ClockEstimate {
            ref_local_ns: ref_ns,
            offset_ns: a,
            bound_ns: verified_bound(&self.history, ref_ns, a),
            ppm: if b.is_nan() { 0.0 } else { b * 1e6 },
            dispersion_ns: dispersion,
            min_delay_ns: min_delay,
            samples: self.history.len(),
            steps: self.steps,
        })
    }
}

/// Window span (s) from which the band starts to take over from the bucket line, and the
/// span at which it has. With the slope prior below ([`BAND_PRIOR_NS_PER_PPM`]) the band
/// beats the bucket line from the first exchanges: its offset takes each direction's
/// fastest datagram separately, where the bucket line's first second is one round trip's.
/// In `rig::sync_sim` (120 followers, 40 s) starting at 0 and fully at 1 s instead of 1–3 s
/// cut the default's clock error p99 over the first 10 s from 1.55 to 1.25 ms and the
/// followers locking later than 2 s from 14 to 7; in the real scenario (8 seeds, 32
/// followers) the lock went from p50 / max 1.33 / 4.14 s to 1.05 / 2.34 s (docs/sync.md,
/// "Stop 32").
const BAND_FROM_S: f64 = 0.0;
const BAND_FULL_S: f64 = 1.0;

/// The band's slope prior, ns of gap per ppm away from 0: a short window's gap hardly
/// changes with the slope (1 s of exchanges: 1 µs per ppm), so its widest-gap slope may be
/// anywhere within hundreds of ppm; this cost keeps it near 0 until the exchanges say
/// otherwise. Over a long window the gap's slope is far steeper (tens of µs per ppm at
/// 60 s) and the prior does not move the peak at all (an L1 cost on a piecewise-linear
/// concave function). With the band from the first exchange, 300 let one simulated
/// follower's 0.8 s window take a slope 550 ppm off (lock 6.8 s); 1000 holds it.
const BAND_PRIOR_NS_PER_PPM: f64 = 1000.0;

/// Slopes whose score is within this of the best are equally good; the band takes the
/// middle of them, ns. Timestamps are whole µs (`sntpc`), so a few µs is what the
/// exchanges cannot tell apart. 30 µs did better still in simulation, but in a real run
/// it held one follower's frequency 5 ppm off for 25 s (a flat side of the score makes the
/// near-best interval lopsided); 5 µs bounds that.
const BAND_SLOPE_TOLERANCE_NS: f64 = 5_000.0;

/// How far the band may be inverted (upper bounds below lower ones) and still be believed:
/// timestamp granularity and the server's processing time, not network delay.
const BAND_TOLERANCE_NS: f64 = 10_000.0;

/// Steepest slope the band search considers (beyond any crystal pair or injected skew).
const BAND_MAX_SLOPE: f64 = 2_000e-6;

/// The causal band of a window of exchanges. Whatever the network does, the leader read T2
/// *after* we sent at T1 and T3 *before* we received at T4, so the offset line θ(t) (leader
/// minus local) passes below every `T2−T1` at T1 and above every `T3−T4` at T4. Queueing only
/// loosens a bound; the fastest packet each way sets it. The slope that leaves the widest gap
/// between the two envelopes gives the frequency, and the middle of that gap the offset
/// (assuming, like SNTP itself, equal fastest delays both ways) — so every exchange's lucky
/// direction counts, not one round trip per bucket: the hull method of clock-skew estimation
/// (Moon, Skelly & Towsley 1999), two-sided. If the window holds a rate change or a small step
/// that no line fits, the gap turns negative and the caller keeps the bucket line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Band {
    /// θ at the reference time, ns.
    offset_ns: f64,
    /// dθ/dt (the frequency offset as a ratio).
    slope: f64,
    /// Width of the band at that slope (the sum of the fastest one-way delays), ns.
    gap_ns: f64,
}

impl Band {
    /// The widest band over `history`, times relative to `ref_ns`.
    fn fit(history: &VecDeque<Exchange>, ref_ns: i64) -> Option<Band> {
        if history.is_empty() {
            return None;
        }
        // The gap is a minimum of lines minus a maximum of lines: concave in the slope, and
        // so is the gap less the prior's |ppm| cost.
        let score = |b: f64| {
            let (top, bottom) = edges(history.iter(), ref_ns, b);
            top - bottom - BAND_PRIOR_NS_PER_PPM * (b * 1e6).abs()
        };
        let peak = golden_max(-BAND_MAX_SLOPE, BAND_MAX_SLOPE, score);
        // The middle of the slopes that score within `BAND_SLOPE_TOLERANCE_NS` of the peak:
        // the peak is a vertex of a piecewise-linear function, which flips from one
        // supporting exchange to the next as the window moves; the middle of the near-best
        // interval moves less.
        let best = score(peak);
        let near = |x: f64| score(x) >= best - BAND_SLOPE_TOLERANCE_NS;
        let edge = |mut inside: f64, mut outside: f64| {
            if near(outside) {
                return outside;
            }
            for _ in 0..50 {
                let mid = (inside + outside) / 2.0;
                if near(mid) {
                    inside = mid;
                } else {
                    outside = mid;
                }
            }
            inside
        };
        let b = (edge(peak, -BAND_MAX_SLOPE) + edge(peak, BAND_MAX_SLOPE)) / 2.0;
        let (top, bottom) = edges(history.iter(), ref_ns, b);
        Some(Band {
            offset_ns: (top + bottom) / 2.0,
            slope: b,
            gap_ns: top - bottom,
        })
    }
}

/// Top and bottom of the band at slope `b`, moved to the reference time: the lowest upper
/// bound `T2−T1 = offset + delay/2` at T1 ≈ T4 − delay (off by the server's hold time,
/// whose effect through the slope is below a nanosecond) and the highest lower bound
/// `T3−T4 = offset − delay/2` at T4.
fn edges<'a>(exchanges: impl Iterator<Item = &'a Exchange>, ref_ns: i64, b: f64) -> (f64, f64) {
    let (mut top, mut bottom) = (f64::INFINITY, f64::NEG_INFINITY);
    for e in exchanges {
        let x = (e.local_ns - ref_ns) as f64;
        let (offset, delay) = (e.offset_ns as f64, e.delay_ns as f64);
        top = top.min(offset + delay / 2.0 - b * (x - delay));
        bottom = bottom.max(offset - delay / 2.0 - b * x);
    }
    (top, bottom)
}

/// The recent past (s) the verified bound is computed over: long enough to hold a few
/// fast packets each way, short enough that the leader's rate cannot have wandered in it.
/// Should no straight line fit it (a sub-leader serves its own estimate, which bends a
/// little with every update), the last [`BOUND_SHORT_S`] are tried.
const BOUND_SPAN_S: f64 = 10.0;

/// The fallback span, s.
const BOUND_SHORT_S: f64 = 2.0;

/// A verified bound on |estimate − leader's clock| at `ref_ns`, ns, for an estimate of
/// `offset_ns` there: whatever the path's asymmetry, the leader read T2 after T1 and T3
/// before T4, so on any straight clock line that every exchange of the last
/// [`BOUND_SPAN_S`] (or [`BOUND_SHORT_S`]) allows (slopes within ±[`BAND_MAX_SLOPE`]), the offset at `ref_ns` lies
/// between the lowest and the highest such line's value there. The bound is the farther of
/// the two from the estimate, plus the timestamps' granularity. It is at least half the
/// sum of the fastest one-way delays (a two-way exchange cannot tell how a round trip
/// splits), and shrinks no further with more exchanges. None when no straight line fits
/// the recent exchanges (a step or rate change being taken in): nothing is verified then.
fn verified_bound(history: &VecDeque<Exchange>, ref_ns: i64, offset_ns: f64) -> Option<f64> {
    bound_over(history, ref_ns, offset_ns, BOUND_SPAN_S)
        .or_else(|| bound_over(history, ref_ns, offset_ns, BOUND_SHORT_S))
}

/// [`verified_bound`] over the last `span_s`.
fn bound_over(
    history: &VecDeque<Exchange>,
    ref_ns: i64,
    offset_ns: f64,
    span_s: f64,
) -> Option<f64> {
    let from = ref_ns - (span_s * 1e9) as i64;
    let recent: Vec<Exchange> = history
        .iter()
        .filter(|e| e.local_ns >= from)
        .copied()
        .collect();
    if recent.is_empty() {
        return None;
    }
    let at = |b: f64| edges(recent.iter(), ref_ns, b);
    let gap = |b: f64| {
        let (top, bottom) = at(b);
        top - bottom + BAND_TOLERANCE_NS
    };
    let best = golden_max(-BAND_MAX_SLOPE, BAND_MAX_SLOPE, gap);
    if gap(best) < 0.0 {
        return None;
    }
    // The slopes every exchange allows: an interval around `best` (the gap is concave).
    let edge = |mut inside: f64, mut outside: f64| {
        if gap(outside) >= 0.0 {
            return outside;
        }
        for _ in 0..60 {
            let mid = (inside + outside) / 2.0;
            if gap(mid) >= 0.0 {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        inside
    };
    let (lo, hi) = (edge(best, -BAND_MAX_SLOPE), edge(best, BAND_MAX_SLOPE));
    // The top edge is concave in the slope and the bottom one convex: their extremes over
    // the allowed slopes by golden section.
    let highest = at(golden_max(lo, hi, |b| at(b).0)).0 + BAND_TOLERANCE_NS / 2.0;
    let lowest = at(golden_max(lo, hi, |b| -at(b).1)).1 - BAND_TOLERANCE_NS / 2.0;
    Some((highest - offset_ns).max(offset_ns - lowest).max(0.0))
}

/// Where a concave function peaks on `[lo, hi]`, by golden-section search (to ~1e-13 of the
/// interval).
fn golden_max(mut lo: f64, mut hi: f64, f: impl Fn(f64) -> f64) -> f64 {
    const INV_PHI: f64 = 0.618_033_988_749_895;
    let mut x1 = hi - INV_PHI * (hi - lo);
    let mut x2 = lo + INV_PHI * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..60 {
        if f1 < f2 {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + INV_PHI * (hi - lo);
            f2 = f(x2);
        } else {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - INV_PHI * (hi - lo);
            f1 = f(x1);
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rig::impair::Rng;

    /// Exchange interval of the simulation: the default `sync.poll_hz` of 10.
    const POLL_NS: f64 = 100e6;

    /// A simulated leader: `offset0 + ppm` away from us, its rate changing by
    /// `ppm_change.1` at local second `ppm_change.0`.
    struct Leader {
        offset0_ns: f64,
        ppm: f64,
        ppm_change: (f64, f64),
    }

    impl Leader {
        fn steady(offset0_ns: f64, ppm: f64) -> Self {
            Leader {
                offset0_ns,
                ppm,
                ppm_change: (f64::INFINITY, 0.0),
            }
        }

        fn at(&self, local: f64) -> f64 {
            let (at_s, extra) = self.ppm_change;
            local
                + self.offset0_ns
                + local * self.ppm * 1e-6
                + (local - at_s * 1e9).max(0.0) * extra * 1e-6
        }

        fn ppm_at(&self, local: f64) -> f64 {
            self.ppm
                + if local >= self.ppm_change.0 * 1e9 {
                    self.ppm_change.1
                } else {
                    0.0
                }
        }
    }

    /// Simulate exchanges with `leader`, one-way delays `base ± jitter` drawn independently
    /// each way, 2 % loss; returns |offset error| (ns) of every estimate from `settle_s` to
    /// `seconds`, and the worst ppm error then.
    fn run(
        leader: &Leader,
        base_ms: f64,
        jitter_ms: f64,
        seconds: f64,
        settle_s: f64,
    ) -> (Vec<f64>, f64) {
        run_seeded(
            leader,
            base_ms,
            jitter_ms,
            seconds,
            settle_s,
            0x1234_5678_9abc_def1,
        )
    }

    /// [`run`] with another draw of the network.
    fn run_seeded(
        leader: &Leader,
        base_ms: f64,
        jitter_ms: f64,
        seconds: f64,
        settle_s: f64,
        seed: u64,
    ) -> (Vec<f64>, f64) {
        let mut f = ClockFilter::new(FilterConfig::default());
        let mut rng = Rng(seed);
        let mut errors = Vec::new();
        let mut worst_ppm: f64 = 0.0;
        let mut t = 1_000_000_000.0f64;
        while t < seconds * 1e9 {
            let d_up = (base_ms + jitter_ms * (2.0 * rng.next() - 1.0)) * 1e6;
            let d_down = (base_ms + jitter_ms * (2.0 * rng.next() - 1.0)) * 1e6;
            let t1 = t;
            let t2 = leader.at(t1 + d_up);
            let t4 = t1 + d_up + d_down + 50_000.0;
            let t3 = leader.at(t4 - d_down);
            let ex = Exchange {
                local_ns: t4 as i64,
                offset_ns: (((t2 - t1) + (t3 - t4)) / 2.0) as i64,
                delay_ns: ((t4 - t1) - (t3 - t2)) as i64,
            };
            if rng.next() < 0.02 {
                t += POLL_NS;
                continue; // lost
            }
            let est = f.add(ex).expect("estimate");
            if t > settle_s * 1e9 {
                let now = t4 as i64;
                let truth = leader.at(now as f64) - now as f64;
                errors.push(((est.fleet_at(now) - now) as f64 - truth).abs());
                worst_ppm = worst_ppm.max((est.ppm - leader.ppm_at(now as f64)).abs());
            }
            t += POLL_NS;
        }
        (errors, worst_ppm)
    }

    /// (p50, p99, max) of errors in µs.
    fn quantiles(mut errors: Vec<f64>) -> (f64, f64, f64) {
        errors.sort_by(f64::total_cmp);
        let q = |p: f64| errors[((errors.len() as f64 * p) as usize).min(errors.len() - 1)] / 1e3;
        (q(0.5), q(0.99), q(1.0))
    }

    /// The network (5 ± 3 ms each way, 2 % loss) and a leader 2.5 s off running
    /// 187 ppm fast: after 15 s the estimate of the leader's clock is within tens of
    /// microseconds (the bucket line alone managed p50 111 / p99 423 µs and 29 ppm here).
    #[test]
    fn tracks_offset_and_frequency_through_jitter() {
        let (errors, ppm_err) = run(&Leader::steady(2.5e9, 187.0), 5.0, 3.0, 120.0, 15.0);
        let (p50, p99, max) = quantiles(errors);
        eprintln!("offset error p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us; worst ppm error {ppm_err:.1}");
        assert!(
            p50 < 30.0 && p99 < 100.0 && max < 150.0,
            "offset error p50 {p50} p99 {p99} max {max} us"
        );
        assert!(ppm_err < 3.0, "ppm error {ppm_err}");
    }

    /// The first seconds: the bucket line's figures up to 1 s, then the band's (what a
    /// joining bike seeks on).
    #[test]
    fn the_first_seconds_are_within_a_millisecond_or_so() {
        let leader = Leader::steady(2.5e9, 187.0);
        let (p50, _, max) = quantiles(run(&leader, 5.0, 3.0, 3.0, 1.5).0);
        eprintln!("1.5-3 s: offset error p50 {p50:.0} us, max {max:.0} us");
        assert!(
            p50 < 800.0 && max < 1_500.0,
            "1.5-3 s: p50 {p50} max {max} us"
        );
        // The band takes over at 1–3 s now (5–10 s before): the median fell, and on this
        // draw the worst moment rose to 1.6 ms (see the_first_ten_seconds_do_not_swing for
        // many draws).
        let (p50, _, max) = quantiles(run(&leader, 5.0, 3.0, 12.0, 3.0).0);
        eprintln!("3-12 s: offset error p50 {p50:.0} us, max {max:.0} us");
        assert!(
            p50 < 300.0 && max < 2_000.0,
            "3-12 s: p50 {p50} max {max} us"
        );
    }

    /// The first ten seconds after a join, over many draws of the network, with the
    /// scenario's largest clock pair (300 ppm): the band takes over from the first second
    /// and its slope prior keeps a short window's frequency from swinging by hundreds of
    /// ppm. Measured: p50 115 µs, p99 985 µs, max 1.7 ms; the worst ppm error of a run in
    /// 3–10 s has a median of 251 ppm (the first seconds hold too few fast exchanges for
    /// better: see docs/sync.md, "Settling after lock").
    #[test]
    fn the_first_ten_seconds_do_not_swing() {
        let leader = Leader::steady(-1.5e9, -300.0);
        let (mut errors, mut worst_ppm) = (Vec::new(), Vec::new());
        for seed in 1..=16u64 {
            let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            errors.extend(run_seeded(&leader, 5.0, 3.0, 10.0, 2.0, seed).0);
            worst_ppm.push(run_seeded(&leader, 5.0, 3.0, 10.0, 3.0, seed).1);
        }
        let (p50, p99, max) = quantiles(errors);
        worst_ppm.sort_by(f64::total_cmp);
        let (ppm50, ppm_max) = (
            worst_ppm[worst_ppm.len() / 2],
            worst_ppm[worst_ppm.len() - 1],
        );
        eprintln!("2-10 s: offset error p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us; worst ppm error 3-10 s per run: median {ppm50:.0}, max {ppm_max:.0}");
        assert!(
            p50 < 150.0 && p99 < 1_200.0,
            "2-10 s: p50 {p50} p99 {p99} us"
        );
        assert!(ppm50 < 350.0, "ppm error {ppm50} (median of runs)");
    }

    /// The leader's crystal warms up: its rate moves by 3 ppm at once (a far faster change
    /// than a real crystal's). The window then holds two slopes; the estimate stays within
    /// a small fraction of a millisecond while the old rate leaves the window.
    #[test]
    fn a_rate_change_is_followed() {
        let leader = Leader {
            offset0_ns: -0.7e9,
            ppm: -120.0,
            ppm_change: (40.0, 3.0),
        };
        let (errors, ppm_err) = run(&leader, 5.0, 3.0, 160.0, 30.0);
        let (p50, p99, max) = quantiles(errors);
        eprintln!("rate change: offset error p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us; worst ppm error {ppm_err:.1}");
        assert!(
            p50 < 30.0 && max < 150.0,
            "offset error p50 {p50} p99 {p99} max {max} us"
        );
        assert!(ppm_err < 5.0, "ppm error {ppm_err}");
    }

    #[test]
    fn a_step_is_followed_at_once() {
        let mut f = ClockFilter::new(FilterConfig::default());
        let mut t = 1_000_000_000i64;
        for _ in 0..80 {
            f.add(Exchange {
                local_ns: t,
                offset_ns: 1_000_000,
                delay_ns: 4_000_000,
            });
            t += 250_000_000;
        }
        // The leader's clock jumps by +2 s.
        for i in 0..6 {
            let est = f
                .add(Exchange {
                    local_ns: t,
                    offset_ns: 2_001_000_000,
                    delay_ns: 4_000_000,
                })
                .expect("est");
            if i < 3 {
                assert!(
                    (est.fleet_at(t) - t - 1_000_000).abs() < 1_000,
                    "believed an outlier"
                );
            }
            t += 250_000_000;
        }
        let est = f.estimate().expect("est");
        assert_eq!(est.steps, 1);
        assert!((est.fleet_at(t) - t - 2_001_000_000).abs() < 100_000);
    }

    /// A restarted server (a new incarnation of the leader) on another clock basis: the
    /// first good exchange that disagrees restarts the window, so no sample of the old
    /// incarnation is kept; on the same basis, the window is kept whole.
    #[test]
    fn a_restarted_server_is_believed_at_its_first_disagreeing_exchange() {
        let steady = |f: &mut ClockFilter, t: &mut i64, offset_ns: i64, n: usize| {
            for _ in 0..n {
                f.add(Exchange {
                    local_ns: *t,
                    offset_ns,
                    delay_ns: 4_000_000,
                });
                *t += 250_000_000;
            }
        };
        let mut f = ClockFilter::new(FilterConfig::default());
        let mut t = 1_000_000_000i64;
        steady(&mut f, &mut t, 1_000_000, 80);
        f.expect_step();
        steady(&mut f, &mut t, 1_000_000, 1);
        assert_eq!(f.estimate().map(|e| (e.steps, e.samples)), Some((0, 81)));
        // Armed again, the new incarnation serves another basis, 3 s away.
        f.expect_step();
        let est = f
            .add(Exchange {
                local_ns: t,
                offset_ns: 3_001_000_000,
                delay_ns: 4_000_000,
            })
            .expect("est");
        assert_eq!((est.steps, est.samples), (1, 1));
        assert!((est.fleet_at(t) - t - 3_001_000_000).abs() < 1_000);
        // Disarmed by the step: a later wild exchange is an outlier again.
        t += 250_000_000;
        f.add(Exchange {
            local_ns: t,
            offset_ns: 9_000_000_000,
            delay_ns: 4_000_000,
        });
        assert_eq!(f.estimate().map(|e| e.steps), Some(1));
    }

    /// Exchanges with `leader` at 10 Hz, one-way delays `base ± jitter` plus `extra_down`
    /// on the way back (a loaded direction); returns (|error|, bound) in ns for every
    /// estimate after `settle_s`.
    fn bounded(
        leader: &Leader,
        jitter_ms: f64,
        extra_down_ms: f64,
        settle_s: f64,
    ) -> Vec<(f64, f64)> {
        let mut f = ClockFilter::new(FilterConfig::default());
        let mut rng = Rng(0x0dd_ba11);
        let mut out = Vec::new();
        let mut t = 1e9f64;
        while t < 40e9 {
            let d_up = (5.0 + jitter_ms * (2.0 * rng.next() - 1.0)) * 1e6;
            let d_down = (5.0 + extra_down_ms + jitter_ms * (2.0 * rng.next() - 1.0)) * 1e6;
            let t2 = leader.at(t + d_up);
            let t4 = t + d_up + d_down + 50_000.0;
            let t3 = leader.at(t4 - d_down);
            // sntpc reports whole microseconds.
            let us = |ns: f64| (ns / 1e3).round() as i64 * 1_000;
            let est = f
                .add(Exchange {
                    local_ns: t4 as i64,
                    offset_ns: us(((t2 - t) + (t3 - t4)) / 2.0),
                    delay_ns: us((t4 - t) - (t3 - t2)),
                })
                .expect("estimate");
            if t > settle_s * 1e9 {
                let now = est.ref_local_ns;
                let truth = leader.at(now as f64) - now as f64;
                let err = ((est.fleet_at(now) - now) as f64 - truth).abs();
                out.push((err, est.bound_ns.expect("a verified bound")));
            }
            t += POLL_NS;
        }
        out
    }

    /// The bound holds at every estimate, from the first exchange on, and is about half
    /// the fastest round trip: 5 ± 3 ms each way puts the fastest at ~2 ms, so 2–4 ms.
    #[test]
    fn the_verified_bound_holds_and_is_half_the_fastest_round_trip() {
        let leader = Leader::steady(2.5e9, 187.0);
        let all = bounded(&leader, 3.0, 0.0, 0.0);
        for (i, (err, bound)) in all.iter().enumerate() {
            assert!(
                err <= bound,
                "exchange {i}: error {err} ns beyond bound {bound} ns"
            );
        }
        // The first: half its own round trip (≤ 8 ms each way).
        assert!(all[0].1 <= 8.1e6, "first bound {}", all[0].1);
        let late: Vec<f64> = all[all.len() / 2..].iter().map(|p| p.1).collect();
        let worst = late.iter().copied().fold(0.0, f64::max);
        let best = late.iter().copied().fold(f64::INFINITY, f64::min);
        // Measured: 2.3 .. 3.6 ms (the estimate is not the middle of the recent band).
        assert!(
            worst < 4.0e6 && best > 1.9e6,
            "settled bounds {best} .. {worst} ns"
        );
    }

    /// A loaded way back (+4 ms every time): the estimate is 2 ms off, which no two-way
    /// exchange can see, and the bound still covers it.
    #[test]
    fn the_verified_bound_covers_an_invisible_asymmetry() {
        let all = bounded(&Leader::steady(-1.0e9, -120.0), 3.0, 4.0, 10.0);
        let worst_err = all.iter().map(|p| p.0).fold(0.0, f64::max);
        assert!(worst_err > 1.5e6, "asymmetry error {worst_err} ns");
        for (err, bound) in &all {
            assert!(err <= bound, "error {err} ns beyond bound {bound} ns");
        }
    }

    #[test]
    fn a_single_wild_exchange_is_ignored() {
        let mut f = ClockFilter::new(FilterConfig::default());
        let mut t = 1_000_000_000i64;
        for i in 0..80 {
            let off = if i == 50 { 900_000_000 } else { 1_000_000 };
            f.add(Exchange {
                local_ns: t,
                offset_ns: off,
                delay_ns: 4_000_000,
            });
            t += 250_000_000;
        }
        let est = f.estimate().expect("est");
        assert!((est.fleet_at(t) - t - 1_000_000).abs() < 10_000);
        assert_eq!(est.steps, 0);
    }
}
