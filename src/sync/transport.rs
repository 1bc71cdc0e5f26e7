//! The leader's (and a solo node's) authority over what the fleet plays. Every transport
//! command becomes a *plan*: "track T from frame F, heard at fleet time X", where X lies a
//! short lead in the future so every bike — the leader included — starts on the same
//! sample. The plan is written into the shared timeline with a new epoch and pushed to
//! the followers at once; the [`LeaderController`](crate::sync::pll::LeaderController)
//! then keeps its anchor and rate measured from the leader's own playback. Pause and stop
//! take effect immediately and are published as `playing = false` (stop: no track).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::deck::Deck;
use crate::audio::PlayerCommand;
use crate::clock::{mono_ns, FleetClock};
use crate::control::{Command, Refusal};
use crate::sync::pll::NetState;
use crate::sync::timeline::Timeline;

/// The leader's transport state and its playlist.
pub struct Transport {
    deck: Arc<dyn Deck>,
    net: Arc<Mutex<NetState>>,
    /// The clock this node serves (its basis is its own while it leads).
    fleet: FleetClock,
    id: String,
    /// How far ahead a plan starts, ns (`sync.start_lead_ms`).
    lead_ns: u64,
    playlist: Vec<String>,
    index: usize,
    /// Wakes the publisher to send the timeline now.
    wake: Arc<Notify>,
}

impl Transport {
    /// The authority over `net`'s timeline for vehicle `id`; when the timeline already
    /// plays a playlist track (a promoted follower), the playlist goes on from there.
    pub fn new(
        deck: Arc<dyn Deck>,
        net: Arc<Mutex<NetState>>,
        fleet: FleetClock,
        id: String,
        lead_ns: u64,
        playlist: Vec<String>,
        wake: Arc<Notify>,
    ) -> Self {
        let playing = net
            .lock()
            .ok()
            .and_then(|n| n.timeline.as_ref().map(|t| t.track.clone()));
        let index = playing
            .and_then(|t| playlist.iter().position(|p| *p == t))
            .unwrap_or(0);
        Transport {
            deck,
            net,
            fleet,
            id,
            lead_ns,
            playlist,
            index,
            wake,
        }
    }

    /// Start `track` at `frame`, heard `lead_ns` from now, on every bike.
    pub fn schedule(&mut self, track: &str, frame: u64, lead_ns: u64) -> Result<(), Refusal> {
        let source = self.deck.open(track)?;
        self.schedule_source(track, source, frame, lead_ns)
    }

    /// `/convoy/play track` with the track already opened (off the command loop, on the
    /// blocking pool: see `node`).
    pub fn play_opened(
        &mut self,
        track: &str,
        source: Box<dyn crate::audio::Source>,
    ) -> Result<(), Refusal> {
        self.schedule_source(track, source, 0, self.lead_ns)
    }

    /// The deck tracks are opened from.
    pub fn deck(&self) -> Arc<dyn Deck> {
        self.deck.clone()
    }

    fn schedule_source(
        &mut self,
        track: &str,
        source: Box<dyn crate::audio::Source>,
        frame: u64,
        lead_ns: u64,
    ) -> Result<(), Refusal> {
        let spec = source.spec();
        let rate = spec.sample_rate;
        if let Some(len) = spec.frames.filter(|&len| frame >= len) {
            return Err(Refusal::BeyondEnd {
                track: track.to_string(),
                position_s: frame as f64 / f64::from(rate),
                length_s: len as f64 / f64::from(rate),
            });
        }
        let at = mono_ns() + lead_ns;
        let heard_fleet = self
            .fleet
            .heard_at(at)
            .ok_or(Refusal::Internal("no fleet time"))?;
        self.deck.send(PlayerCommand::Load {
            source,
            start_frame: frame,
            paused: false,
            at_heard_ns: Some(at),
        })?;
        self.update(|n, next_epoch, seq| {
            n.hold_until_ns = at;
            let tempo = n.timeline.as_ref().map_or(0.0, |t| t.tempo_bpm);
            n.timeline = Some(Timeline {
                leader: String::new(),
                incarnation: 0,
                seq,
                track: track.to_string(),
                track_rate: rate,
                anchor_frame: frame as f64,
                anchor_fleet_ns: heard_fleet,
                frames_per_sec: f64::from(rate),
                playing: true,
                tempo_bpm: tempo,
                epoch: next_epoch,
            });
        });
        if let Some(i) = self.playlist.iter().position(|t| t == track) {
            self.index = i;
        }
        Ok(())
    }

    /// Apply a transport command. Light and show commands are not the transport's.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), Refusal> {
        match cmd {
            Command::Play { track: Some(t) } => self.schedule(t, 0, self.lead_ns),
            Command::Play { track: None } => match self.current() {
                Some(tl) if tl.playing => Ok(()),
                Some(tl) if !tl.track.is_empty() => {
                    let frame = tl.anchor_frame.max(0.0).round() as u64;
                    self.schedule(&tl.track, frame, self.lead_ns)
                }
                _ => {
                    let track = self
                        .playlist
                        .get(self.index)
                        .cloned()
                        .ok_or(Refusal::NothingToPlay)?;
                    self.schedule(&track, 0, self.lead_ns)
                }
            },
            Command::Pause => {
                let Some(tl) = self.current().filter(|t| t.playing) else {
                    return Ok(());
                };
                self.deck.send(PlayerCommand::Pause(true))?;
                let here = tl.frame_at(self.fleet.now_or_local());
                self.update(|n, epoch, seq| {
                    if let Some(t) = n.timeline.as_mut() {
                        t.playing = false;
                        t.anchor_frame = here;
                        t.epoch = epoch;
                        t.seq = seq;
                    }
                });
                Ok(())
            }
            Command::Stop => {
                self.deck.send(PlayerCommand::Unload)?;
                self.update(|n, epoch, seq| {
                    if let Some(t) = n.timeline.as_mut() {
                        t.playing = false;
                        t.track.clear();
                        t.anchor_frame = 0.0;
                        t.epoch = epoch;
                        t.seq = seq;
                    }
                });
                Ok(())
            }
            Command::Seek { position_ms } => {
                let tl = self
                    .current()
                    .filter(|t| !t.track.is_empty())
                    .ok_or(Refusal::NoTrack)?;
                let frame = (position_ms / 1e3 * f64::from(tl.track_rate)).round() as u64;
                if tl.playing {
                    return self.schedule(&tl.track, frame, self.lead_ns);
                }
                self.deck.send(PlayerCommand::Seek(frame))?;
                self.update(|n, epoch, seq| {
                    if let Some(t) = n.timeline.as_mut() {
                        t.anchor_frame = frame as f64;
                        t.epoch = epoch;
                        t.seq = seq;
                    }
                });
                Ok(())
            }
            Command::Next => {
                let track =
                    self.playlist
                        .get(self.index + 1)
                        .cloned()
                        .ok_or(Refusal::EndOfPlaylist {
                            number: self.index + 1,
                        })?;
                self.schedule(&track, 0, self.lead_ns)
            }
            Command::DawTempo { bpm } | Command::LiveTempo { bpm } => {
                let bpm = *bpm;
                self.update(|n, _, seq| {
                    if let Some(t) = n.timeline.as_mut() {
                        t.tempo_bpm = bpm;
                        t.seq = seq;
                    }
                });
                Ok(())
            }
            other => Err(Refusal::not_for(other, "transport")),
        }
    }

    /// Called at the status interval: at the end of a track, go on to the next one in the
    /// playlist, or stop there.
    pub fn tick(&mut self) {
        let playing = self.current().is_some_and(|t| t.playing);
        let status = self.deck.status();
        if !playing || !status.finished {
            return;
        }
        if self.index + 1 < self.playlist.len() {
            if let Err(e) = self.apply(&Command::Next) {
                tracing::error!("cannot go on to the next track: {e}");
            }
        } else {
            let end = status.position.unwrap_or(0.0);
            self.update(|n, epoch, seq| {
                if let Some(t) = n.timeline.as_mut() {
                    t.playing = false;
                    t.anchor_frame = end;
                    t.epoch = epoch;
                    t.seq = seq;
                }
            });
        }
    }

    /// Is the playlist over (played to its end, nothing playing)?
    pub fn finished(&self) -> bool {
        self.current().is_none_or(|t| !t.playing) && self.deck.status().finished
    }

    fn current(&self) -> Option<Timeline> {
        self.net.lock().ok()?.timeline.clone()
    }

    /// Change the timeline under the lock with the next epoch and sequence number, in this
    /// process's name (id and incarnation), then push it to the fleet.
    fn update(&self, f: impl FnOnce(&mut NetState, i32, i64)) {
        if let Ok(mut n) = self.net.lock() {
            let (epoch, seq) = n
                .timeline
                .as_ref()
                .map_or((0, 1), |t| (t.epoch.wrapping_add(1), t.seq + 1));
            f(&mut n, epoch, seq);
            if let Some(t) = n.timeline.as_mut() {
                t.leader.clone_from(&self.id);
                t.incarnation = crate::clock::incarnation();
            }
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::LocalClock;
    use crate::sync::deck::tests::FakeDeck;

    const LEAD: u64 = 300_000_000;

    fn transport(playlist: &[&str]) -> (Transport, Arc<FakeDeck>, Arc<Mutex<NetState>>) {
        let deck = Arc::new(FakeDeck::default());
        let net = Arc::new(Mutex::new(NetState::default()));
        let t = Transport::new(
            deck.clone(),
            net.clone(),
            FleetClock::own(LocalClock::IDEAL),
            "lead".into(),
            LEAD,
            playlist.iter().map(|s| s.to_string()).collect(),
            Arc::new(Notify::new()),
        );
        (t, deck, net)
    }

    fn timeline(net: &Mutex<NetState>) -> Timeline {
        net.lock()
            .expect("net")
            .timeline
            .clone()
            .expect("a timeline")
    }

    /// Play: the plan starts `LEAD` ahead on the leader's own clock, under a new epoch and
    /// sequence, in the leader's name; the player is loaded for that instant.
    #[test]
    fn play_schedules_the_first_playlist_track_ahead() {
        let (mut t, deck, net) = transport(&["a", "b"]);
        let before = mono_ns();
        t.apply(&Command::Play { track: None }).expect("play");
        let tl = timeline(&net);
        assert_eq!((tl.track.as_str(), tl.epoch, tl.seq), ("a", 0, 1));
        assert_eq!(tl.leader, "lead");
        assert!(tl.playing);
        let ahead = tl.anchor_fleet_ns - before as i64;
        assert!(
            (LEAD as i64..LEAD as i64 + 50_000_000).contains(&ahead),
            "{ahead}"
        );
        let log = deck.take();
        assert_eq!(log.len(), 1);
        assert!(log[0].starts_with("load a@0 at="), "{log:?}");
        assert_eq!(
            net.lock().expect("net").hold_until_ns,
            tl.anchor_fleet_ns as u64
        );
    }

    #[test]
    fn pause_stop_and_seek_are_new_epochs() {
        let (mut t, deck, net) = transport(&["a"]);
        t.apply(&Command::Play {
            track: Some("a".into()),
        })
        .expect("play");
        t.apply(&Command::Pause).expect("pause");
        let tl = timeline(&net);
        assert!(!tl.playing);
        assert_eq!(tl.epoch, 1);
        t.apply(&Command::Seek {
            position_ms: 1500.0,
        })
        .expect("seek paused");
        let tl = timeline(&net);
        assert_eq!(
            (tl.anchor_frame, tl.epoch, tl.playing),
            (72_000.0, 2, false)
        );
        t.apply(&Command::Stop).expect("stop");
        let tl = timeline(&net);
        assert_eq!((tl.track.as_str(), tl.epoch), ("", 3));
        let log = deck.take();
        assert_eq!(&log[1..], ["pause true", "seek 72000", "unload"]);
    }

    #[test]
    fn refusals_say_why() {
        let (mut t, _, _) = transport(&[]);
        assert_eq!(
            t.apply(&Command::Play { track: None }),
            Err(Refusal::NothingToPlay)
        );
        assert_eq!(
            t.apply(&Command::Seek { position_ms: 0.0 }),
            Err(Refusal::NoTrack)
        );
        assert!(matches!(
            t.apply(&Command::Play {
                track: Some("missing".into())
            }),
            Err(Refusal::Track(_))
        ));
        t.apply(&Command::Play {
            track: Some("a".into()),
        })
        .expect("play");
        assert!(matches!(
            t.apply(&Command::Seek {
                position_ms: 61_000.0
            }),
            Err(Refusal::BeyondEnd { .. })
        ));
        assert_eq!(
            t.apply(&Command::Next),
            Err(Refusal::EndOfPlaylist { number: 1 })
        );
        assert!(matches!(t.apply(&Command::Go), Err(Refusal::NotFor(..))));
    }

    /// At the end of a track the playlist goes on; at the end of the playlist the timeline
    /// stops where the track ended.
    #[test]
    fn the_playlist_advances_at_the_end_of_a_track() {
        let (mut t, deck, net) = transport(&["a", "b"]);
        t.apply(&Command::Play { track: None }).expect("play");
        deck.status.lock().expect("status").finished = true;
        t.tick();
        assert_eq!(timeline(&net).track, "b");
        deck.status.lock().expect("status").position = Some(2_880_000.0);
        t.tick();
        let tl = timeline(&net);
        assert!(!tl.playing);
        assert_eq!(tl.anchor_frame, 2_880_000.0);
        assert!(t.finished());
    }

    /// A promoted follower's transport goes on with the playlist from the track playing.
    #[test]
    fn a_new_authority_continues_the_playlist_where_the_timeline_is() {
        let (mut t, _, net) = transport(&["a", "b", "c"]);
        t.apply(&Command::Play {
            track: Some("b".into()),
        })
        .expect("play");
        let t2 = Transport::new(
            Arc::new(FakeDeck::default()),
            net.clone(),
            FleetClock::own(LocalClock::IDEAL),
            "other".into(),
            LEAD,
            t.playlist.clone(),
            Arc::new(Notify::new()),
        );
        assert_eq!(t2.index, 1);
    }
}
