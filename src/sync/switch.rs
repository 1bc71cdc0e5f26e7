//! The playback loop across role changes. The player is made once; what changes with the
//! role is which half of the loop runs on its reports: the leader's (measure our own
//! playback onto the timeline we publish) while this node is the source of fleet time, the
//! follower's PLL while it follows. The [`FleetClock`]'s basis decides, read on every
//! report; a switch (its generation changes) starts the new half afresh — a new leader
//! measures from scratch against the clock it now serves, a follower resumes with its lock
//! and learned frequency — and the speed last set stays, so playback keeps the fleet's rate
//! through the change.

use std::sync::{Arc, Mutex};

use crate::audio::{Control, Controller, PlaybackReport};
use crate::clock::{Basis, FleetClock};
use crate::sync::pll::{FollowerController, LeaderController, LockStatus, NetState, PllConfig};

/// The player's controller: both halves of the playback loop, one chosen by the fleet
/// clock's basis on every report.
pub struct SwitchController {
    fleet: FleetClock,
    cfg: PllConfig,
    net: Arc<Mutex<NetState>>,
    generation: u64,
    follower: FollowerController,
    leader: LeaderController,
}

impl SwitchController {
    /// Both halves, reading `net`; the follower publishes into `lock`.
    pub fn new(
        cfg: PllConfig,
        fleet: FleetClock,
        net: Arc<Mutex<NetState>>,
        lock: Arc<Mutex<LockStatus>>,
    ) -> Self {
        SwitchController {
            follower: FollowerController::new(cfg, fleet.clone(), net.clone(), lock),
            leader: LeaderController::new(cfg, fleet.clone(), net.clone()),
            generation: fleet.basis().1,
            fleet,
            cfg,
            net,
        }
    }
}

impl Controller for SwitchController {
    fn on_report(&mut self, r: &PlaybackReport) -> Control {
        let (basis, generation) = self.fleet.basis();
        if generation != self.generation {
            self.generation = generation;
            match basis {
                Basis::Own(_) => {
                    self.leader =
                        LeaderController::new(self.cfg, self.fleet.clone(), self.net.clone());
                }
                Basis::Follow(_) => self.follower.resume(),
            }
        }
        match basis {
            Basis::Own(_) => self.leader.on_report(r),
            Basis::Follow(_) => self.follower.on_report(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ClockEstimate, LocalClock};
    use crate::sync::timeline::Timeline;

    const RATE: u32 = 48_000;

    fn report(heard_at_ns: u64, frame: f64) -> PlaybackReport {
        PlaybackReport {
            heard_at_ns,
            write_heard_at_ns: heard_at_ns + 40_000_000,
            track_frame: Some(frame),
            track_rate: RATE,
            speed_ppm: 0.0,
            device_frame: 0,
        }
    }

    /// A timeline that says frame 0 is heard at fleet time `at`.
    fn playing(at: i64, epoch: i32) -> NetState {
        NetState {
            timeline: Some(Timeline {
                leader: "lead".into(),
                incarnation: 1,
                seq: 1,
                track: "t".into(),
                track_rate: RATE,
                anchor_frame: 0.0,
                anchor_fleet_ns: at,
                frames_per_sec: f64::from(RATE),
                playing: true,
                tempo_bpm: 0.0,
                epoch,
            }),
            ..NetState::default()
        }
    }

    fn estimate(offset_ns: f64) -> ClockEstimate {
        ClockEstimate {
            offset_ns,
            samples: 8,
            ..ClockEstimate::default()
        }
    }

    /// Following: nothing happens without a clock estimate; with one, a player far off the
    /// timeline is seeked onto it (the join).
    #[test]
    fn a_follower_waits_for_its_estimate_then_joins() {
        let fleet = FleetClock::new(LocalClock::IDEAL, 0, Basis::Follow(None));
        let net = Arc::new(Mutex::new(playing(1_000_000_000, 1)));
        let lock = Arc::new(Mutex::new(LockStatus::default()));
        let mut c = SwitchController::new(PllConfig::default(), fleet.clone(), net, lock.clone());
        assert_eq!(c.on_report(&report(3_000_000_000, 0.0)), Control::Keep);
        fleet.set_estimate(Some(estimate(0.0)));
        // Heard at 3.1 s, the timeline wants frame 2.1 s × 48k; written audio heard at
        // 3.14 s lands on 2.14 s.
        let Control::Seek(to) = c.on_report(&report(3_100_000_000, 0.0)) else {
            panic!("a join seeks");
        };
        assert!(
            (i64::try_from(to).expect("frame") - 102_720).abs() <= 1,
            "{to}"
        );
        assert_eq!(lock.lock().expect("lock").seeks, 1);
    }

    /// Promoted to lead, the node stops steering and measures its own playback onto the
    /// timeline instead: the anchor follows what it plays.
    #[test]
    fn a_switch_to_leading_measures_instead_of_steering() {
        let fleet = FleetClock::new(LocalClock::IDEAL, 0, Basis::Follow(Some(estimate(0.0))));
        let net = Arc::new(Mutex::new(playing(0, 1)));
        let lock = Arc::new(Mutex::new(LockStatus::default()));
        let mut c = SwitchController::new(PllConfig::default(), fleet.clone(), net.clone(), lock);
        fleet.lead(fleet.serving_clock(0));
        // 5 ms behind the line: a leader does not seek for that, it moves the line.
        let frame = 2.0 * f64::from(RATE) - 240.0;
        assert_eq!(c.on_report(&report(2_000_000_000, frame)), Control::Keep);
        let tl = net.lock().expect("net").timeline.clone().expect("timeline");
        assert_eq!(tl.anchor_fleet_ns, 2_000_000_000);
        assert!(
            (tl.anchor_frame - frame).abs() < 1e-6,
            "{}",
            tl.anchor_frame
        );
    }
}
