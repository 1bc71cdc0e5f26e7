//! Measuring sync from virtual-sink recordings. Every node's sink records, per period, the
//! monotonic time a frame is heard and the track frame decoded from the position pilot;
//! since all processes share the monotonic clock, the difference between two nodes' track
//! positions at the same instant is their true playback offset. Pure: parse and compute.

use std::path::Path;

/// A node's playback trace: (heard_at_ns, track_frame), time-ordered.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    points: Vec<(u64, f64)>,
    /// Track sample rate the frames are counted in.
    pub track_rate: f64,
}

/// Trace parsing errors.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Malformed line.
    #[error("{path}:{line}: malformed recording line")]
    Malformed {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
    },
}

impl Trace {
    /// Load a virtual-sink CSV (rows without a pilot reading are skipped).
    pub fn load(path: &Path, track_rate: f64) -> Result<Trace, MeasureError> {
        let text = std::fs::read_to_string(path).map_err(|source| MeasureError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.starts_with("heard_at") || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let bad = || MeasureError::Malformed {
                path: path.display().to_string(),
                line: i + 1,
            };
            if f.len() < 4 {
                return Err(bad());
            }
            let t: u64 = f[0].parse().map_err(|_| bad())?;
            if let Ok(frame) = f[3].parse::<f64>() {
                points.push((t, frame));
            }
        }
        Ok(Trace { points, track_rate })
    }

    /// From points directly (tests).
    pub fn from_points(points: Vec<(u64, f64)>, track_rate: f64) -> Trace {
        Trace { points, track_rate }
    }

    /// First and last heard time.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.points.first()?.0, self.points.last()?.0))
    }

    /// Silences of the device: `(last heard before, first heard after)` for every pair of
    /// neighbouring periods heard more than `min_ns` apart.
    pub fn gaps(&self, min_ns: u64) -> Vec<(u64, u64)> {
        self.points
            .windows(2)
            .filter(|w| w[1].0 - w[0].0 > min_ns)
            .map(|w| (w[0].0, w[1].0))
            .collect()
    }

    /// Track position heard at `t` (linear between the two neighbouring periods), if `t`
    /// lies inside continuous playback (no gap or seek between the neighbours).
    pub fn position_at(&self, t: u64) -> Option<f64> {
        let i = self.points.partition_point(|p| p.0 <= t);
        if i == 0 || i >= self.points.len() {
            return None;
        }
        let (t0, f0) = self.points[i - 1];
        let (t1, f1) = self.points[i];
        let dt = (t1 - t0) as f64 * 1e-9;
        if dt <= 0.0 || dt > 0.05 {
            return None;
        }
        let expected = dt * self.track_rate;
        if ((f1 - f0) - expected).abs() > expected * 0.01 + 2.0 {
            return None; // a seek or a gap
        }
        Some(f0 + (f1 - f0) * ((t - t0) as f64 * 1e-9 / dt))
    }
}

/// `follower − leader` playback offset in seconds (positive: follower ahead), sampled every
/// `step_ns` over their common span.
pub fn offsets(leader: &Trace, follower: &Trace, step_ns: u64) -> Vec<(u64, f64)> {
    let (Some((a0, a1)), Some((b0, b1))) = (leader.span(), follower.span()) else {
        return Vec::new();
    };
    let (start, end) = (a0.max(b0), a1.min(b1));
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        if let (Some(l), Some(f)) = (leader.position_at(t), follower.position_at(t)) {
            out.push((t, (f - l) / leader.track_rate));
        }
        t += step_ns.max(1);
    }
    out
}

/// Time of the first sample from which |offset| stays below `threshold_s` for `hold_ns`.
pub fn lock_time(series: &[(u64, f64)], threshold_s: f64, hold_ns: u64) -> Option<u64> {
    let mut start: Option<u64> = None;
    for &(t, off) in series {
        if off.abs() < threshold_s {
            let s = *start.get_or_insert(t);
            if t - s >= hold_ns {
                return Some(s);
            }
        } else {
            start = None;
        }
    }
    None
}

/// Lock as the rigs count it (|offset| < 1 ms held for 2 s) and every |offset| from then
/// on, in ms: (lock time, offsets after lock). Empty when the series never locks.
pub fn after_lock_ms(series: &[(u64, f64)]) -> (Option<u64>, Vec<f64>) {
    let lock = lock_time(series, 1e-3, 2_000_000_000);
    let after = series
        .iter()
        .filter(|(t, _)| lock.is_some_and(|l| *t >= l))
        .map(|(_, o)| o.abs() * 1e3)
        .collect();
    (lock, after)
}

/// The `q`-quantile (0..=1) of `values` (nearest rank); NaN for an empty slice.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_of_two_shifted_traces() {
        let rate = 48_000.0;
        let mk = |shift_frames: f64| {
            Trace::from_points(
                (0..1000u64)
                    .map(|i| {
                        (
                            1_000_000_000 + i * 5_333_333,
                            10_000.0 + shift_frames + i as f64 * 256.0,
                        )
                    })
                    .collect(),
                rate,
            )
        };
        let o = offsets(&mk(0.0), &mk(24.0), 100_000_000);
        assert!(!o.is_empty());
        for (_, off) in &o {
            assert!((off - 0.0005).abs() < 1e-9, "{off}");
        }
        assert_eq!(lock_time(&o, 0.001, 1_000_000_000), Some(o[0].0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
    }
}
