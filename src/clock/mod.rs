//! Time, in one place. Every other module speaks in *track sample positions* or in
//! nanoseconds of one of three clocks, and only this module converts between them:
//! the machine's monotonic clock ([`mono_ns`], shared by every process on the host, which
//! is what makes multi-process measurements exact), a node's *local* clock (monotonic plus
//! an injectable offset and frequency error, [`LocalClock`], used to simulate bikes whose
//! crystals disagree), and *fleet* time (local time corrected by the sync layer's offset
//! and frequency estimate). [`NtpTime`] is the 64-bit NTP format shared by SNTP packets and
//! OSC timetags.

mod ntp;

pub use ntp::NtpTime;

/// Nanoseconds of `CLOCK_MONOTONIC`. The same clock for every process on the machine, so
/// recordings from different Convoy processes can be compared directly. Lock-free and
/// allocation-free (vDSO), so it is allowed in the audio callback.
#[inline]
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on
    // Linux, so the call cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleep until the monotonic clock reads `deadline_ns` (returns at once if it has passed).
pub fn sleep_until_mono(deadline_ns: u64) {
    let now = mono_ns();
    if deadline_ns > now {
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

/// A node's local clock: the monotonic clock seen through an injected offset and frequency
/// error, `local = mono * (1 + ppm/1e6) + offset`. Real nodes run with zero skew; the test
/// rig gives each simulated bike its own, so the sync layer has real work to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalClock {
    /// Constant offset added to the monotonic clock, in nanoseconds.
    pub offset_ns: i64,
    /// Frequency error of this clock relative to the monotonic clock, in parts per million.
    pub ppm: f64,
}

impl Default for LocalClock {
    fn default() -> Self {
        Self::IDEAL
    }
}

impl LocalClock {
    /// The unskewed clock: local time equals monotonic time.
    pub const IDEAL: LocalClock = LocalClock {
        offset_ns: 0,
        ppm: 0.0,
    };

    /// Local time at the given monotonic time.
    pub fn from_mono(&self, mono_ns: u64) -> i64 {
        let skew = (mono_ns as f64 * self.ppm * 1e-6).round() as i64;
        mono_ns as i64 + skew + self.offset_ns
    }

    /// Monotonic time at which this clock reads `local_ns` (inverse of [`Self::from_mono`]).
    pub fn to_mono(&self, local_ns: i64) -> u64 {
        let x = (local_ns - self.offset_ns) as f64 / (1.0 + self.ppm * 1e-6);
        x.max(0.0) as u64
    }

    /// Local time now.
    pub fn now(&self) -> i64 {
        self.from_mono(mono_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_monotonic() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
        assert!(a > 0);
    }

    #[test]
    fn local_clock_round_trips() {
        let c = LocalClock {
            offset_ns: -3_000_000_000,
            ppm: 187.5,
        };
        for mono in [5_000_000_000u64, 123_456_789_012, 9_000_000_000_000] {
            let local = c.from_mono(mono);
            let back = c.to_mono(local);
            assert!(
                (back as i64 - mono as i64).abs() <= 2,
                "{mono} -> {local} -> {back}"
            );
        }
        // 1000 s of monotonic time is 1000 s + 187.5 ms of local time.
        let d = c.from_mono(2_000_000_000_000) - c.from_mono(1_000_000_000_000);
        assert!((d - 1_000_187_500_000).abs() <= 1, "{d}");
    }
}
