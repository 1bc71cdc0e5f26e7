//! Link's music time, pure: the session timeline (beats ↔ ghost time), tempo changes that
//! keep the beat continuous, quantum phase, and the ghost transform (host µs ↔ ghost µs)
//! with the median filter over ping/pong offset samples. Ghost time is the session's
//! shared time base; host time here is the monotonic clock in µs, converted from and to
//! nanoseconds only in `clock::link`.

use super::wire::Timeline;

/// Tempo limits receivers clamp into, BPM.
pub const MIN_BPM: f64 = 20.0;
/// Tempo limits receivers clamp into, BPM.
pub const MAX_BPM: f64 = 999.0;

/// Microseconds per beat of `bpm` (clamped to Link's range).
pub fn micros_per_beat(bpm: f64) -> i64 {
    (60e6 / bpm.clamp(MIN_BPM, MAX_BPM)).round() as i64
}

impl Timeline {
    /// A new session's timeline: beat 0 at ghost time 0.
    pub fn founding(bpm: f64) -> Timeline {
        Timeline {
            micros_per_beat: micros_per_beat(bpm),
            beat_origin: 0,
            time_origin: 0,
        }
    }

    /// The tempo, BPM (clamped as receivers must).
    pub fn bpm(&self) -> f64 {
        (60e6 / self.micros_per_beat.max(1) as f64).clamp(MIN_BPM, MAX_BPM)
    }

    /// This timeline with its tempo clamped into Link's range.
    pub fn clamped(self) -> Timeline {
        Timeline {
            micros_per_beat: self
                .micros_per_beat
                .clamp(micros_per_beat(MAX_BPM), micros_per_beat(MIN_BPM)),
            ..self
        }
    }

    /// Beats (not µbeats) at ghost time `ghost` µs, exactly.
    pub fn beat_at(&self, ghost: f64) -> f64 {
        self.beat_origin as f64 * 1e-6
            + (ghost - self.time_origin as f64) / self.micros_per_beat.max(1) as f64
    }

    /// Ghost time (µs) of beat `beat`, exactly.
    pub fn ghost_at(&self, beat: f64) -> f64 {
        self.time_origin as f64
            + (beat - self.beat_origin as f64 * 1e-6) * self.micros_per_beat as f64
    }

    /// Beat at `ghost` in µbeats, rounded as on the wire.
    pub fn micro_beats_at(&self, ghost: i64) -> i64 {
        (self.beat_at(ghost as f64) * 1e6).round() as i64
    }

    /// The timeline after changing the tempo to `bpm` at ghost time `now`: the beat at
    /// `now` stays where it is, and the beat origin grows (so the change wins everywhere).
    pub fn with_tempo(&self, bpm: f64, now: i64) -> Timeline {
        let origin = self.micro_beats_at(now).max(self.beat_origin + 1);
        Timeline {
            micros_per_beat: micros_per_beat(bpm),
            beat_origin: origin,
            time_origin: self.ghost_at(origin as f64 * 1e-6).round() as i64,
        }
    }

    /// The timeline with `bpm` whose beat at ghost time `at` has the phase of `beat` in
    /// `quantum` and lies nearest the present beat, taking over from this one (its beat
    /// origin exceeds this one's): how a lead publishes the music's beat and bar.
    pub fn anchored(&self, bpm: f64, beat: f64, at: f64, quantum: f64) -> Timeline {
        let mpb = micros_per_beat(bpm);
        let now = self.beat_at(at);
        let q = if quantum > 0.0 { quantum } else { 1.0 };
        let mut target = beat + q * ((now - beat) / q).round();
        while ((target * 1e6).round() as i64) <= self.beat_origin {
            target += q;
        }
        let origin = (target * 1e6).round() as i64;
        Timeline {
            micros_per_beat: mpb,
            beat_origin: origin,
            time_origin: (at + (origin as f64 * 1e-6 - target) * mpb as f64).round() as i64,
        }
    }
}

/// Phase of `beat` within a quantum of `quantum` beats, in `[0, quantum)` (0 for q ≤ 0).
pub fn phase(beat: f64, quantum: f64) -> f64 {
    if quantum <= 0.0 {
        return 0.0;
    }
    beat.rem_euclid(quantum)
}

/// Ghost time against host time: `ghost = host + intercept` (Link fixes the slope at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GhostXform {
    /// Ghost minus host, µs.
    pub intercept: i64,
}

impl GhostXform {
    /// The transform of a session founded at host time `now`: ghost 0 is now.
    pub fn founding(now: i64) -> GhostXform {
        GhostXform { intercept: -now }
    }

    /// Ghost time at host time `host` (µs).
    pub fn ghost(&self, host: i64) -> i64 {
        host + self.intercept
    }

    /// Host time at ghost time `ghost` (µs).
    pub fn host(&self, ghost: i64) -> i64 {
        ghost - self.intercept
    }
}

/// Samples a measurement needs (it completes at more than this many).
pub const SAMPLES: usize = 100;

/// The offset filter of one measurement: midpoint estimates of ghost − host from each
/// pong, and their median once there are more than [`SAMPLES`].
#[derive(Debug, Clone, Default)]
pub struct OffsetFilter {
    samples: Vec<f64>,
}

impl OffsetFilter {
    /// Add the samples of one pong received at host time `now`: its ghost time `ghost`,
    /// the echoed host time `sent` of its ping and the echoed previous ghost time.
    pub fn add(&mut self, now: i64, ghost: i64, sent: i64, prev_ghost: Option<i64>) {
        if self.samples.len() > 4 * SAMPLES {
            return;
        }
        if ghost != 0 && sent != 0 {
            self.samples
                .push(ghost as f64 - (now as f64 + sent as f64) / 2.0);
            if let Some(pg) = prev_ghost.filter(|&g| g != 0) {
                self.samples
                    .push((ghost as f64 + pg as f64) / 2.0 - sent as f64);
            }
        }
    }

    /// Samples so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The transform, once there are enough samples.
    pub fn result(&self) -> Option<GhostXform> {
        if self.samples.len() <= SAMPLES {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(GhostXform {
            intercept: median.round() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tempo_is_a_period() {
        assert_eq!(micros_per_beat(120.0), 500_000);
        assert_eq!(micros_per_beat(121.0), 495_868); // as in sync-tempo-change.pcap
        assert_eq!(micros_per_beat(5000.0), 60_060);
        assert!((Timeline::founding(124.0).bpm() - 124.0).abs() < 1e-3);
        let wild = Timeline {
            micros_per_beat: 1,
            ..Timeline::default()
        };
        assert_eq!(wild.bpm(), MAX_BPM);
        assert_eq!(wild.clamped().micros_per_beat, 60_060);
    }

    #[test]
    fn beats_and_ghost_time_are_inverse() {
        let t = Timeline {
            micros_per_beat: 495_868,
            beat_origin: 7_000_178,
            time_origin: 3_001_015,
        };
        for g in [0.0, 3_001_015.0, 1e9 + 0.5] {
            assert!((t.ghost_at(t.beat_at(g)) - g).abs() < 1e-3);
        }
        assert!((t.beat_at(3_001_015.0 + 495_868.0) - 8.000178).abs() < 1e-9);
    }

    #[test]
    fn a_tempo_change_keeps_the_beat_and_raises_the_origin() {
        let t = Timeline {
            micros_per_beat: 500_000,
            beat_origin: 1_000_000,
            time_origin: 0,
        };
        let now = 10_000_000; // beat 21
        let u = t.with_tempo(130.0, now);
        assert!(u.beat_origin > t.beat_origin);
        assert!((u.beat_at(now as f64) - t.beat_at(now as f64)).abs() < 1e-6);
        assert!((u.bpm() - 130.0).abs() < 1e-3);
        // Before the origin: the origin still grows by at least one µbeat.
        assert_eq!(t.with_tempo(90.0, -10_000_000).beat_origin, 1_000_001);
    }

    #[test]
    fn anchoring_puts_the_given_beat_at_the_given_time() {
        let t = Timeline {
            micros_per_beat: 500_000,
            beat_origin: 3_000_000,
            time_origin: 1_000_000,
        };
        let u = t.anchored(128.0, 101.25, 7_777_777.0, 4.0);
        assert!(u.beat_origin > t.beat_origin);
        // Beat 17.5 on the old timeline: the nearest beat with 101.25's phase is 17.25.
        assert!((u.beat_at(7_777_777.0) - 17.25).abs() < 1e-5, "{u:?}");
        assert!((u.bpm() - 128.0).abs() < 1e-3);
    }

    #[test]
    fn phase_wraps_into_the_quantum() {
        assert_eq!(phase(5.5, 4.0), 1.5);
        assert_eq!(phase(-0.5, 4.0), 3.5);
        assert_eq!(phase(3.0, 0.0), 0.0);
    }

    #[test]
    fn the_filter_takes_the_median_after_a_hundred_samples() {
        let mut f = OffsetFilter::default();
        // A responder 1000 µs ahead, 100 µs each way, and a few delayed pongs.
        // Each ping leaves as the previous pong arrives.
        let (mut prev, mut sent) = (None, 1_000_000i64);
        for i in 0..60i64 {
            let late = if i % 10 == 3 { 5_000 } else { 0 };
            let ghost = sent + 100 + 1000;
            f.add(sent + 200 + late, ghost, sent, prev);
            prev = Some(ghost);
            sent += 200 + late;
            if f.len() > SAMPLES {
                break;
            }
        }
        assert_eq!(f.result(), Some(GhostXform { intercept: 1000 }));
        assert!(OffsetFilter::default().result().is_none());
    }
}
