//! Link time against the machine's clocks, in one place: a Link peer's host time is the
//! monotonic clock in µs ([`host_us`]); its ghost transform turns that into the session's
//! ghost time and the session timeline turns ghost time into beats ([`LinkTime`]). Fleet
//! time comes from the [`FleetClock`] at the same monotonic instant, so a Link beat lands
//! on the fleet's timeline (and the fleet's beat on Link's) through the monotonic clock,
//! never through ad hoc offsets.

use super::{mono_ns, FleetClock};
use crate::link::timeline::{phase, GhostXform};
use crate::link::Timeline;

/// Link host time (µs, fractional) at monotonic `mono_ns`.
pub fn host_us(mono_ns: u64) -> f64 {
    mono_ns as f64 / 1e3
}

/// Link host time now, whole µs.
pub fn host_us_now() -> i64 {
    (mono_ns() / 1000) as i64
}

/// Monotonic ns at Link host time `us` (whole µs, as the session stamps what it hears).
pub fn mono_of_host_us(us: i64) -> u64 {
    us.max(0) as u64 * 1000
}

/// A Link session's time as one peer sees it: its timeline and its ghost transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkTime {
    /// The session timeline (beats ↔ ghost µs).
    pub timeline: Timeline,
    /// Host µs → ghost µs.
    pub ghost: GhostXform,
}

impl LinkTime {
    /// Tempo, BPM.
    pub fn bpm(&self) -> f64 {
        self.timeline.bpm()
    }

    /// Ghost µs at monotonic `mono_ns`.
    pub fn ghost_at_mono(&self, mono_ns: u64) -> f64 {
        host_us(mono_ns) + self.ghost.intercept as f64
    }

    /// Session beat heard at monotonic `mono_ns`.
    pub fn beat_at_mono(&self, mono_ns: u64) -> f64 {
        self.timeline.beat_at(self.ghost_at_mono(mono_ns))
    }

    /// Monotonic ns at which session beat `beat` falls.
    pub fn mono_at_beat(&self, beat: f64) -> u64 {
        let ghost = self.timeline.ghost_at(beat);
        ((ghost - self.ghost.intercept as f64) * 1e3).max(0.0) as u64
    }

    /// Phase (beats into the quantum) at monotonic `mono_ns`.
    pub fn phase_at_mono(&self, mono_ns: u64, quantum: f64) -> f64 {
        phase(self.beat_at_mono(mono_ns), quantum)
    }

    /// The first whole beat after monotonic `mono_ns`: (its number, when it falls).
    pub fn next_beat(&self, mono_ns: u64) -> (i64, u64) {
        let b = self.beat_at_mono(mono_ns).floor() + 1.0;
        (b as i64, self.mono_at_beat(b))
    }

    /// Fleet time (ns) of session beat `beat`, when the fleet clock is set.
    pub fn fleet_at_beat(&self, beat: f64, fleet: &FleetClock) -> Option<i64> {
        fleet.at_mono(self.mono_at_beat(beat))
    }

    /// Session beat at fleet time `fleet_ns`, when the fleet clock is set.
    pub fn beat_at_fleet(&self, fleet_ns: i64, fleet: &FleetClock) -> Option<f64> {
        fleet.mono_at(fleet_ns).map(|m| self.beat_at_mono(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::LocalClock;

    fn time() -> LinkTime {
        LinkTime {
            timeline: Timeline {
                micros_per_beat: 500_000,
                beat_origin: 2_000_000,
                time_origin: 1_000_000,
            },
            ghost: GhostXform {
                intercept: -5_000_000,
            },
        }
    }

    #[test]
    fn beats_map_onto_the_monotonic_clock_and_back() {
        let t = time();
        // Host 6 s = ghost 1 s = beat 2.
        assert!((t.beat_at_mono(6_000_000_000) - 2.0).abs() < 1e-12);
        assert_eq!(t.mono_at_beat(2.5), 6_250_000_000);
        assert_eq!(t.next_beat(6_100_000_000), (3, 6_500_000_000));
        assert!((t.phase_at_mono(6_750_000_000, 4.0) - 3.5).abs() < 1e-12);
        for b in [0.0, 3.25, 1e4 + 0.125] {
            let m = t.mono_at_beat(b);
            assert!((t.beat_at_mono(m) - b).abs() < 1e-8, "{b}");
        }
    }

    #[test]
    fn a_link_beat_lands_on_fleet_time_through_the_monotonic_clock() {
        let t = time();
        let local = LocalClock {
            offset_ns: 1_700_000_000_000_000_000,
            ..LocalClock::IDEAL
        };
        let fleet = FleetClock::own(local);
        let f = t.fleet_at_beat(2.5, &fleet).unwrap();
        assert_eq!(f, local.from_mono(6_250_000_000));
        assert!((t.beat_at_fleet(f, &fleet).unwrap() - 2.5).abs() < 1e-8);
    }
}
