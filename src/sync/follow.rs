//! The follower's timeline state machine: given the newest timeline the leader published,
//! make the player do what it says — start a track at a scheduled fleet time, join one
//! already playing near where the fleet is, pause, resume, follow a seek, unload — and only
//! when it does not already (the PLL does the fine timing). [`Applied`] remembers what the
//! player was told; it outlives one link, so a node that changes leader, or stops leading,
//! changes nothing while the timeline continues the same track and epoch. Pure apart from
//! the [`Deck`] it drives: unit-tested with a recording fake.

use std::time::Duration;

use super::deck::Deck;
use crate::audio::PlayerCommand;
use crate::clock::{mono_ns, FleetClock};
use crate::config::SyncConfig;
use crate::control::Refusal;
use crate::sync::timeline::Timeline;

/// `[sync]` settings of the follower's link and state machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowConfig {
    /// A start heard further ahead than this is scheduled on the exact sample; closer (or
    /// past), the track is joined where the fleet is and the PLL puts it on the sample.
    pub schedule_margin_ns: u64,
    /// How often the follower re-subscribes to its leader's timeline.
    pub resubscribe: Duration,
}

impl FollowConfig {
    /// From `[sync]`.
    pub fn from_config(y: &SyncConfig) -> Self {
        FollowConfig {
            schedule_margin_ns: (y.schedule_margin_ms * 1e6) as u64,
            resubscribe: Duration::from_secs_f64(y.resubscribe_s.max(0.05)),
        }
    }
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            schedule_margin_ns: 50_000_000,
            resubscribe: Duration::from_secs(1),
        }
    }
}

/// What [`Applied::apply`] did with a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Done, or nothing to do, or a failure already reported (a track that cannot be
    /// opened is tried again with the next newer timeline).
    Done,
    /// Waiting for the first clock estimate: apply the same timeline again.
    NoEstimate,
}

/// What the follower has told its player to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// Track loaded.
    pub track: Option<String>,
    /// Timeline epoch it follows.
    pub epoch: Option<i32>,
    /// Paused.
    pub paused: bool,
    /// The last track that could not be opened (its error is logged once, not 5 times/s).
    pub failed: Option<String>,
    /// The leader and incarnation of the timeline followed: a restart of that leader (same
    /// id, another incarnation) begins a new timeline, applied like a new epoch.
    pub source: Option<(String, u64)>,
}

impl Applied {
    /// What a player that has been playing `tl` itself (as leader) is doing.
    pub fn from_timeline(tl: Option<&Timeline>) -> Applied {
        match tl {
            Some(t) if !t.track.is_empty() => Applied {
                track: Some(t.track.clone()),
                epoch: Some(t.epoch),
                paused: !t.playing,
                failed: None,
                source: Some((t.leader.clone(), t.incarnation)),
            },
            Some(t) => Applied {
                epoch: Some(t.epoch),
                source: Some((t.leader.clone(), t.incarnation)),
                ..Applied::default()
            },
            None => Applied::default(),
        }
    }

    /// Make the player do what `tl` says, if it does not already. Returns
    /// [`Apply::NoEstimate`] when that needs a clock estimate the follower does not have
    /// yet: the caller applies the same timeline again once it has one (a leader
    /// republishes a timeline under the same `seq`, so "apply only what is newer" would
    /// miss a scheduled start heard before the first SNTP exchange).
    pub fn apply(
        &mut self,
        tl: &Timeline,
        fleet: &FleetClock,
        deck: &dyn Deck,
        cfg: &FollowConfig,
    ) -> Apply {
        let same_track = self.track.as_deref() == Some(tl.track.as_str());
        // A restarted leader's timeline is new whatever its epoch number says.
        let restarted = self
            .source
            .as_ref()
            .is_some_and(|(leader, inc)| tl.restarts(leader, *inc));
        let same_epoch = self.epoch == Some(tl.epoch) && !restarted;
        if tl.track.is_empty() {
            if self.track.is_some() && deck.send(PlayerCommand::Unload).is_ok() {
                *self = Applied {
                    epoch: Some(tl.epoch),
                    source: Some((tl.leader.clone(), tl.incarnation)),
                    ..Applied::default()
                };
            }
            return Apply::Done;
        }
        let anchor = tl.anchor_frame.max(0.0).round() as u64;
        if !tl.playing {
            if same_track && self.paused {
                if !same_epoch && deck.send(PlayerCommand::Seek(anchor)).is_ok() {
                    self.now_following(tl, true);
                }
                return Apply::Done;
            }
            let sent = if same_track {
                deck.send(PlayerCommand::Pause(true))
            } else {
                let Some(source) = self.open(deck, &tl.track) else {
                    return Apply::Done;
                };
                deck.send(PlayerCommand::Load {
                    source,
                    start_frame: anchor,
                    paused: true,
                    at_heard_ns: None,
                })
            };
            if sent.is_ok() {
                self.now_following(tl, true);
            }
            return Apply::Done;
        }
        if same_track && same_epoch && !self.paused {
            // Already following; the PLL does the rest. A timeline continued by another
            // leader (a promotion) is the same timeline: only whom it comes from changes.
            if self.source.as_ref().is_none_or(|(l, _)| *l != tl.leader) {
                self.source = Some((tl.leader.clone(), tl.incarnation));
            }
            return Apply::Done;
        }
        // Without a clock estimate we cannot tell whether the start is still ahead: wait
        // for SNTP (the next timeline retries).
        let Some(play_mono) = fleet.play_at(tl.anchor_fleet_ns) else {
            return Apply::NoEstimate;
        };
        let sent = if play_mono > mono_ns() + cfg.schedule_margin_ns {
            // A scheduled start (play, seek, resume): start on the same sample as the leader.
            let Some(source) = self.open(deck, &tl.track) else {
                return Apply::Done;
            };
            deck.send(PlayerCommand::Load {
                source,
                start_frame: anchor,
                paused: false,
                at_heard_ns: Some(play_mono),
            })
        } else if same_track && self.paused {
            // Resume late: the PLL's join seeks to where the fleet is.
            deck.send(PlayerCommand::Pause(false))
        } else if same_track {
            Ok(()) // a new epoch while playing: the PLL joins afresh (seek if needed)
        } else {
            // Join a track already playing: open it near where the fleet is; the PLL's join
            // puts it on the exact frame.
            let Some(here) = fleet.now().map(|now| tl.frame_at(now)) else {
                return Apply::NoEstimate;
            };
            let Some(source) = self.open(deck, &tl.track) else {
                return Apply::Done;
            };
            deck.send(PlayerCommand::Load {
                source,
                start_frame: here.max(0.0).round() as u64,
                paused: false,
                at_heard_ns: None,
            })
        };
        if sent.is_ok() {
            self.now_following(tl, false);
        }
        Apply::Done
    }

    fn now_following(&mut self, tl: &Timeline, paused: bool) {
        *self = Applied {
            track: Some(tl.track.clone()),
            epoch: Some(tl.epoch),
            paused,
            failed: None,
            source: Some((tl.leader.clone(), tl.incarnation)),
        };
    }

    /// Open the fleet's track, logging a failure once per track. A shared track still
    /// downloading is not an error: the next timeline tries again and joins mid-track.
    fn open(&mut self, deck: &dyn Deck, track: &str) -> Option<Box<dyn crate::audio::Source>> {
        match deck.open(track) {
            Ok(source) => Some(source),
            Err(e) => {
                if self.failed.as_deref() != Some(track) {
                    match e {
                        Refusal::Fetching(_) => tracing::info!("{e}"),
                        e => tracing::error!("cannot open the fleet's track {track}: {e}"),
                    }
                    self.failed = Some(track.to_string());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Basis, ClockEstimate, LocalClock};
    use crate::sync::deck::tests::FakeDeck;

    fn tl(track: &str, playing: bool, epoch: i32, anchor_fleet_ns: i64) -> Timeline {
        Timeline {
            leader: "lead".into(),
            incarnation: 1,
            seq: 1,
            track: track.into(),
            track_rate: 48_000,
            anchor_frame: 96_000.0,
            anchor_fleet_ns,
            frames_per_sec: 48_000.0,
            playing,
            tempo_bpm: 0.0,
            epoch,
        }
    }

    /// A follower whose estimate says fleet time = its monotonic clock.
    fn synced() -> FleetClock {
        let est = ClockEstimate {
            samples: 8,
            ..ClockEstimate::default()
        };
        FleetClock::new(LocalClock::IDEAL, 0, Basis::Follow(Some(est)))
    }

    fn run(
        applied: &mut Applied,
        t: &Timeline,
        fleet: &FleetClock,
        deck: &FakeDeck,
    ) -> Vec<String> {
        applied.apply(t, fleet, deck, &FollowConfig::default());
        deck.take()
    }

    #[test]
    fn a_scheduled_start_loads_for_the_exact_instant_once() {
        let (deck, fleet, mut a) = (FakeDeck::default(), synced(), Applied::default());
        let at = mono_ns() as i64 + 500_000_000;
        let log = run(&mut a, &tl("song", true, 1, at), &fleet, &deck);
        assert_eq!(log, [format!("load song@96000 at={at}")]);
        assert!(
            run(&mut a, &tl("song", true, 1, at), &fleet, &deck).is_empty(),
            "same epoch"
        );
    }

    #[test]
    fn joining_a_track_already_playing_opens_it_near_where_the_fleet_is() {
        let (deck, fleet, mut a) = (FakeDeck::default(), synced(), Applied::default());
        let ten_s_ago = mono_ns() as i64 - 10_000_000_000;
        let log = run(&mut a, &tl("song", true, 1, ten_s_ago), &fleet, &deck);
        let frame: f64 = log[0]
            .strip_prefix("load song@")
            .and_then(|f| f.parse().ok())
            .expect("a load without a start time");
        assert!((frame - (96_000.0 + 480_000.0)).abs() < 4_800.0, "{frame}");
    }

    #[test]
    fn nothing_is_started_before_the_clock_estimate() {
        let deck = FakeDeck::default();
        let fleet = FleetClock::new(LocalClock::IDEAL, 0, Basis::Follow(None));
        let mut a = Applied::default();
        assert!(run(&mut a, &tl("song", true, 1, 0), &fleet, &deck).is_empty());
        assert_eq!(a, Applied::default());
    }

    /// A start scheduled 3 s ahead, heard before the first SNTP exchange: the apply asks
    /// to be retried, and the same timeline (republished under the same seq) applied once
    /// the estimate exists loads the track for the exact instant, not as a late join.
    #[test]
    fn a_start_heard_before_the_estimate_is_scheduled_once_it_arrives() {
        let deck = FakeDeck::default();
        let fleet = FleetClock::new(LocalClock::IDEAL, 0, Basis::Follow(None));
        let mut a = Applied::default();
        let at = mono_ns() as i64 + 3_000_000_000;
        let start = tl("song", true, 1, at);
        let cfg = FollowConfig::default();
        assert_eq!(a.apply(&start, &fleet, &deck, &cfg), Apply::NoEstimate);
        assert!(deck.take().is_empty());
        fleet.set_estimate(Some(ClockEstimate {
            samples: 1,
            ..ClockEstimate::default()
        }));
        assert_eq!(a.apply(&start, &fleet, &deck, &cfg), Apply::Done);
        assert_eq!(deck.take(), [format!("load song@96000 at={at}")]);
        assert_eq!(a.apply(&start, &fleet, &deck, &cfg), Apply::Done);
        assert!(deck.take().is_empty(), "loaded twice");
    }

    #[test]
    fn pause_resume_seek_and_stop() {
        let (deck, fleet, mut a) = (FakeDeck::default(), synced(), Applied::default());
        let past = mono_ns() as i64 - 1_000_000_000;
        run(&mut a, &tl("song", true, 1, past), &fleet, &deck);
        assert_eq!(
            run(&mut a, &tl("song", false, 2, past), &fleet, &deck),
            ["pause true"]
        );
        assert_eq!(
            run(&mut a, &tl("song", false, 3, past), &fleet, &deck),
            ["seek 96000"]
        );
        assert_eq!(
            run(&mut a, &tl("song", true, 4, past), &fleet, &deck),
            ["pause false"]
        );
        assert_eq!(
            run(&mut a, &tl("", false, 5, past), &fleet, &deck),
            ["unload"]
        );
        assert_eq!(a.track, None);
        assert_eq!(a.epoch, Some(5));
    }

    /// A paused timeline for a track the player lacks loads it paused at the anchor; a
    /// track that cannot be opened is tried again with each timeline, but reported once.
    #[test]
    fn a_paused_load_and_an_unopenable_track() {
        let (deck, fleet, mut a) = (FakeDeck::default(), synced(), Applied::default());
        assert_eq!(
            run(&mut a, &tl("song", false, 1, 0), &fleet, &deck),
            ["load song@96000 paused"]
        );
        let now = mono_ns() as i64;
        for _ in 0..3 {
            assert!(run(&mut a, &tl("missing", true, 2, now), &fleet, &deck).is_empty());
        }
        assert_eq!(a.failed.as_deref(), Some("missing"));
        assert_eq!(a.track.as_deref(), Some("song"), "what plays is kept");
    }

    /// The leader restarted under the same id: its timeline (same track, same epoch
    /// number, another incarnation, a start scheduled ahead) is applied like a new epoch,
    /// on the exact sample; its next timelines change nothing.
    #[test]
    fn a_restarted_leaders_timeline_is_applied_like_a_new_epoch() {
        let (deck, fleet, mut a) = (FakeDeck::default(), synced(), Applied::default());
        let past = mono_ns() as i64 - 26_000_000_000;
        run(&mut a, &tl("song", true, 0, past), &fleet, &deck);
        let at = mono_ns() as i64 + 500_000_000;
        let restarted = Timeline {
            incarnation: 2,
            ..tl("song", true, 0, at)
        };
        assert_eq!(
            run(&mut a, &restarted, &fleet, &deck),
            [format!("load song@96000 at={at}")]
        );
        assert!(run(&mut a, &restarted, &fleet, &deck).is_empty());
        // Another leader continuing the timeline (a promotion) is not a restart.
        let promoted = Timeline {
            leader: "next".into(),
            incarnation: 7,
            ..restarted
        };
        assert!(run(&mut a, &promoted, &fleet, &deck).is_empty());
    }

    /// A promoted follower's player already plays the timeline: nothing to do.
    #[test]
    fn a_former_leader_changes_nothing_on_the_same_timeline() {
        let (deck, fleet) = (FakeDeck::default(), synced());
        let t = tl("song", true, 7, 0);
        let mut a = Applied::from_timeline(Some(&t));
        assert!(run(&mut a, &t, &fleet, &deck).is_empty());
    }
}
