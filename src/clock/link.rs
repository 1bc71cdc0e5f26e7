//! Link time against the machine's clocks, in one place: a Link peer's host time is the
//! monotonic clock in µs ([`host_us`]); its ghost transform turns that into the session's
//! ghost time and the session timeline turns ghost time into beats ([`LinkTime`]). Fleet
//! time comes from the [`FleetClock`] at the same monotonic instant, so a Link beat lands
//! on the fleet's timeline (and the fleet's beat on Link's) through the monotonic clock,
//! never through ad hoc offsets. [`FleetBeats`] is the session's beat grid on fleet time,
//! as the fleet leader publishes it: a bike maps it back onto its own monotonic clock
//! through its estimate of fleet time, so it flashes on the Link beat without hearing Link.

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

/// A Link session's beat grid on fleet time: session beat `beat` falls at fleet time
/// `fleet_ns`, and a beat lasts `ns_per_beat` fleet ns. Made by the bike that leads the
/// fleet from its own Link view ([`FleetBeats::of`]); read by every bike through its own
/// [`FleetClock`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetBeats {
    /// A whole session beat near the moment the grid was made.
    pub beat: f64,
    /// Fleet ns at which `beat` falls.
    pub fleet_ns: i64,
    /// Fleet ns per beat.
    pub ns_per_beat: f64,
}

impl FleetBeats {
    /// The grid of `time` on `fleet`, anchored at the whole beat at or before monotonic
    /// `now` (`None` until the fleet clock is set, or with a degenerate tempo).
    pub fn of(time: &LinkTime, now: u64, fleet: &FleetClock) -> Option<FleetBeats> {
        let beat = time.beat_at_mono(now).floor();
        // Two points 1024 beats apart carry the fleet clock's rate against the monotonic one.
        let f0 = time.fleet_at_beat(beat, fleet)?;
        let f1 = time.fleet_at_beat(beat + 1024.0, fleet)?;
        let ns_per_beat = (f1 - f0) as f64 / 1024.0;
        (ns_per_beat.is_finite() && ns_per_beat > 0.0).then_some(FleetBeats {
            beat,
            fleet_ns: f0,
            ns_per_beat,
        })
    }

    /// Tempo, BPM of fleet time.
    pub fn bpm(&self) -> f64 {
        60e9 / self.ns_per_beat
    }

    /// Fleet ns of session beat `beat`.
    pub fn fleet_at_beat(&self, beat: f64) -> i64 {
        self.fleet_ns + ((beat - self.beat) * self.ns_per_beat).round() as i64
    }

    /// Session beat at fleet time `fleet_ns`.
    pub fn beat_at_fleet(&self, fleet_ns: i64) -> f64 {
        self.beat + (fleet_ns - self.fleet_ns) as f64 / self.ns_per_beat
    }

    /// Monotonic ns of session beat `beat` on this bike (`None` until its fleet clock is set).
    pub fn mono_at_beat(&self, beat: f64, fleet: &FleetClock) -> Option<u64> {
        fleet.mono_at(self.fleet_at_beat(beat))
    }

    /// The first whole beat after monotonic `mono_ns` on this bike: (its number, when it
    /// falls, monotonic ns).
    pub fn next_beat(&self, mono_ns: u64, fleet: &FleetClock) -> Option<(i64, u64)> {
        let b = self.beat_at_fleet(fleet.at_mono(mono_ns)?).floor() + 1.0;
        Some((b as i64, self.mono_at_beat(b, fleet)?))
    }

    /// Does `other` put the beats elsewhere, by more than `tolerance_ns` at this grid's
    /// beat or 64 beats on (a tempo change, a new beat origin, a re-measured ghost time)?
    pub fn moved(&self, other: &FleetBeats, tolerance_ns: i64) -> bool {
        [self.beat, self.beat + 64.0]
            .iter()
            .any(|&b| (self.fleet_at_beat(b) - other.fleet_at_beat(b)).abs() > tolerance_ns)
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

    #[test]
    fn the_fleet_grid_puts_link_beats_on_every_bikes_clock() {
        let t = time();
        // The leader's fleet time is its monotonic clock shifted by 1.7e18 ns, 100 ppm fast.
        let leader = FleetClock::own(LocalClock {
            offset_ns: 1_700_000_000_000_000_000,
            ppm: 100.0,
            ..LocalClock::IDEAL
        });
        let grid = FleetBeats::of(&t, 6_100_000_000, &leader).unwrap();
        assert_eq!(grid.beat, 2.0);
        assert_eq!(grid.fleet_ns, leader.at_mono(6_000_000_000).unwrap());
        // A beat lasts 100 ppm more fleet ns than monotonic ns.
        assert!((grid.bpm() - 120.0 / 1.0001).abs() < 1e-6, "{}", grid.bpm());
        // Any bike whose clock agrees on fleet time maps the grid back onto the Link beats.
        assert_eq!(
            grid.next_beat(6_100_000_000, &leader),
            Some((3, 6_500_000_000))
        );
        for b in [3.0, 10.0, 1000.0] {
            let m = grid.mono_at_beat(b, &leader).unwrap();
            assert!(m.abs_diff(t.mono_at_beat(b)) <= 2, "{b}");
        }
        // The same session re-anchored a beat later is the same grid; a tempo change is not.
        let later = FleetBeats::of(&t, 6_600_000_000, &leader).unwrap();
        assert_eq!(later.beat, 3.0);
        assert!(!grid.moved(&later, 1_000));
        let mut faster = t;
        faster.timeline.micros_per_beat = 499_000;
        let moved = FleetBeats::of(&faster, 6_100_000_000, &leader).unwrap();
        assert!(grid.moved(&moved, 1_000));
        // No fleet clock yet (a follower before SNTP): no grid, no beats.
        let follower = FleetClock::new(LocalClock::IDEAL, 0, crate::clock::Basis::Follow(None));
        assert_eq!(FleetBeats::of(&t, 6_100_000_000, &follower), None);
        assert_eq!(grid.next_beat(6_100_000_000, &follower), None);
    }
}
