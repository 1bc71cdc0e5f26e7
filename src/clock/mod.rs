//! Time, in one place. Every other module speaks in *track sample positions* or in
//! nanoseconds of one of three clocks, and only this module converts between them:
//! the machine's monotonic clock ([`mono_ns`], shared by every process on the host, which
//! is what makes multi-process measurements exact), a node's *local* clock (monotonic plus
//! an injectable offset and frequency error, [`LocalClock`], used to simulate bikes whose
//! crystals disagree), and *fleet* time ([`FleetClock`]: a leader's own clock, or a
//! follower's local time corrected by the sync layer's offset and frequency estimate,
//! published on a watch channel). [`NtpTime`] is the 64-bit NTP format shared by SNTP packets and
//! OSC timetags.

mod fleet;
pub mod link;
mod ntp;

pub use fleet::{Basis, ClockEstimate, FleetClock, FleetState};
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

/// This process's incarnation: the Unix time in ns at which it first asked (the node asks
/// at start), fixed for its life. A leader's timeline carries it, so a leader restarted under
/// the same id is a new timeline to its followers, not an old one whose sequence went
/// back (`sync::timeline`). Later restarts have larger incarnations while the wall clock
/// moves forward; a follower copes with one that went back (a Pi without an RTC) by taking
/// any timeline once the one it holds is stale.
pub fn incarnation() -> u64 {
    static INCARNATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(|| realtime_ns().max(1) as u64)
}

/// Nanoseconds of `CLOCK_REALTIME` (Unix time).
pub fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `mono_ns`; CLOCK_REALTIME always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
    }
    // time_t and c_long are 32-bit on armv7: widen explicitly (a no-op on 64-bit targets).
    #[allow(clippy::useless_conversion)]
    let (sec, nsec) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    sec * 1_000_000_000 + nsec
}

/// A node's local clock: the monotonic clock seen through an injected offset and frequency
/// error, `local = mono * (1 + ppm/1e6) + offset`. Real nodes run with zero skew; the test
/// rig gives each simulated bike its own, so the sync layer has real work to do. Nodes use
/// [`LocalClock::unix`], whose offset includes the Unix time of the monotonic clock's zero,
/// so local (and fleet) time reads as wall-clock time — what NTP servers and OSC senders
/// expect in timetags — while never stepping the way `CLOCK_REALTIME` can.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalClock {
    /// Constant offset added to the monotonic clock, in nanoseconds.
    pub offset_ns: i64,
    /// Frequency error of this clock relative to the monotonic clock, in parts per million.
    pub ppm: f64,
    /// Monotonic time (ns) at which the clock is stepped by `step_ns` (`u64::MAX`: never).
    /// Simulates a leader whose clock gets set while the fleet plays; a pure function of
    /// monotonic time, so every copy of the clock agrees without shared state.
    pub step_at_mono_ns: u64,
    /// Size of that step, ns.
    pub step_ns: i64,
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
        step_at_mono_ns: u64::MAX,
        step_ns: 0,
    };

    /// A Unix-time clock driven by the monotonic clock, with an injected extra offset and
    /// frequency error (both zero on a real bike). It reads Unix time plus the offset now
    /// and drifts from now on, as a crystal drifts from when its clock was last set: the
    /// injected drift does not scale with how long the host has been up (at 200 ppm and a
    /// day of uptime that would add 17 s to the offset).
    pub fn unix(extra_offset_ns: i64, ppm: f64) -> Self {
        let now = mono_ns();
        LocalClock::anchored(now, realtime_ns() + extra_offset_ns, ppm)
    }

    /// This clock, stepped by `step_ns` at monotonic time `at_mono_ns`.
    pub fn with_step(self, at_mono_ns: u64, step_ns: i64) -> Self {
        LocalClock {
            step_at_mono_ns: at_mono_ns,
            step_ns,
            ..self
        }
    }

    /// A clock that reads `reads_ns` at monotonic time `at_mono_ns` and runs `ppm` fast
    /// against the monotonic clock, never stepping: how a promoted follower keeps serving
    /// the fleet time it had disciplined (its last offset and frequency, free-running).
    pub fn anchored(at_mono_ns: u64, reads_ns: i64, ppm: f64) -> Self {
        let skew = (at_mono_ns as f64 * ppm * 1e-6).round() as i64;
        LocalClock {
            offset_ns: reads_ns - at_mono_ns as i64 - skew,
            ppm,
            ..Self::IDEAL
        }
    }

    /// Local time at the given monotonic time.
    pub fn from_mono(&self, mono_ns: u64) -> i64 {
        let skew = (mono_ns as f64 * self.ppm * 1e-6).round() as i64;
        let step = if mono_ns >= self.step_at_mono_ns {
            self.step_ns
        } else {
            0
        };
        mono_ns as i64 + skew + self.offset_ns + step
    }

    /// Monotonic time at which this clock reads `local_ns` (inverse of [`Self::from_mono`]).
    pub fn to_mono(&self, local_ns: i64) -> u64 {
        let unstep =
            |l: i64| ((l - self.offset_ns) as f64 / (1.0 + self.ppm * 1e-6)).max(0.0) as u64;
        let m = unstep(local_ns);
        if m >= self.step_at_mono_ns {
            unstep(local_ns - self.step_ns).max(self.step_at_mono_ns)
        } else {
            m
        }
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
    fn anchored_clock_reads_what_it_was_given_and_runs_at_its_rate() {
        let at = 7_000_000_000_000u64;
        let c = LocalClock::anchored(at, 1_764_000_000_123_456_789, -42.5);
        assert_eq!(c.from_mono(at), 1_764_000_000_123_456_789);
        // 100 s later it has run 100 s − 4.25 ms.
        let d = c.from_mono(at + 100_000_000_000) - c.from_mono(at);
        assert!((d - 99_995_750_000).abs() <= 1, "{d}");
    }

    /// However long the host has been up, a skewed Unix clock starts at Unix time plus its
    /// extra offset.
    #[test]
    fn a_skewed_unix_clock_starts_at_its_offset() {
        let c = LocalClock::unix(-600_000_000, 70.0);
        let err = c.now() - realtime_ns() + 600_000_000;
        assert!(err.abs() < 50_000_000, "{err} ns off");
    }

    #[test]
    fn local_clock_round_trips() {
        let c = LocalClock {
            offset_ns: -3_000_000_000,
            ppm: 187.5,
            ..LocalClock::IDEAL
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

    /// The injected offset is the offset now, whatever the host's uptime times the drift.
    #[test]
    fn an_injected_drift_starts_now() {
        let c = LocalClock::unix(2_000_000_000, 200.0);
        let off = c.now() - realtime_ns();
        assert!(
            (off - 2_000_000_000).abs() < 50_000_000,
            "offset now {off} ns"
        );
    }
}

/// Anything that tells the time in ns on the fleet's scale (Unix epoch): the node's
/// [`FleetClock`], the [`WallClock`] of a standalone tool, a test's stepped clock.
pub trait TimeNow {
    /// The time now, ns.
    fn now_ns(&self) -> u64;
}

impl TimeNow for FleetClock {
    fn now_ns(&self) -> u64 {
        self.now_or_local().max(0) as u64
    }
}

impl<F: Fn() -> u64> TimeNow for F {
    fn now_ns(&self) -> u64 {
        self()
    }
}

/// [`TimeNow`] reading the system wall clock (`CLOCK_REALTIME`).
#[derive(Debug, Default, Clone, Copy)]
pub struct WallClock;

impl TimeNow for WallClock {
    fn now_ns(&self) -> u64 {
        realtime_ns().max(0) as u64
    }
}
