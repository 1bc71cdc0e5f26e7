//! The leader's (and a solo node's) authority over what the fleet plays. Every transport
//! command becomes a *plan*: "track T from frame F, heard at fleet time X", where X lies a
//! short lead in the future so every bike — the leader included — starts on the same
//! sample. The plan is written into the shared timeline with a new epoch and pushed to
//! the followers at once; the [`LeaderController`](crate::sync::pll::LeaderController)
//! then keeps its anchor and rate measured from the leader's own playback. Pause and stop
//! take effect immediately and are published as `playing = false` (stop: no track).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::handle::Command;
use crate::audio::{self, Player};
use crate::clock::{mono_ns, LocalClock};
use crate::sync::pll::NetState;
use crate::sync::timeline::Timeline;

/// The leader's transport state and its playlist.
pub struct Transport {
    pub(super) player: Arc<Player>,
    pub(super) net: Arc<Mutex<NetState>>,
    pub(super) clock: LocalClock,
    pub(super) latency_ns: i64,
    pub(super) id: String,
    pub(super) lead_ns: u64,
    pub(super) playlist: Vec<String>,
    pub(super) index: usize,
    /// Wakes the publisher to send the timeline now.
    pub(super) wake: Arc<Notify>,
    /// Opens tracks (files, built-ins, shared library tracks by hash).
    pub(super) tracks: crate::library::Tracks,
}

impl Transport {
    /// Start `track` at `frame`, heard `lead_ns` from now, on every bike.
    pub fn schedule(&mut self, track: &str, frame: u64, lead_ns: u64) -> Result<(), String> {
        let source = self.tracks.open(track).map_err(|e| e.to_string())?;
        let spec = source.spec();
        if let Some(len) = spec.frames.filter(|&len| frame >= len) {
            return Err(format!(
                "position {:.3} s is beyond the end of {track} ({:.3} s)",
                frame as f64 / spec.sample_rate as f64,
                len as f64 / spec.sample_rate as f64
            ));
        }
        let at = mono_ns() + lead_ns;
        self.player
            .load_at(source, frame, at)
            .map_err(|e| e.to_string())?;
        let heard_fleet = self
            .clock
            .from_mono(at.saturating_add_signed(self.latency_ns));
        let rate = spec.sample_rate;
        self.update(|n, next_epoch, seq| {
            n.hold_until_ns = at;
            let tempo = n.timeline.as_ref().map_or(0.0, |t| t.tempo_bpm);
            n.timeline = Some(Timeline {
                leader: String::new(),
                seq,
                track: track.to_string(),
                track_rate: rate,
                anchor_frame: frame as f64,
                anchor_fleet_ns: heard_fleet,
                frames_per_sec: rate as f64,
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
    pub fn apply(&mut self, cmd: &Command) -> Result<(), String> {
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
                        .ok_or("nothing to play: name a track")?;
                    self.schedule(&track, 0, self.lead_ns)
                }
            },
            Command::Pause => {
                let Some(tl) = self.current().filter(|t| t.playing) else {
                    return Ok(());
                };
                self.player
                    .send(audio::PlayerCommand::Pause(true))
                    .map_err(|e| e.to_string())?;
                let here = tl.frame_at(self.clock.now());
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
                self.player
                    .send(audio::PlayerCommand::Unload)
                    .map_err(|e| e.to_string())?;
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
                    .ok_or("nothing to seek in: no track loaded")?;
                let frame = (position_ms / 1e3 * f64::from(tl.track_rate)).round() as u64;
                if tl.playing {
                    return self.schedule(&tl.track, frame, self.lead_ns);
                }
                self.player
                    .send(audio::PlayerCommand::Seek(frame))
                    .map_err(|e| e.to_string())?;
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
                let next = self.index + 1;
                let track =
                    self.playlist.get(next).cloned().ok_or_else(|| {
                        format!("no track after #{} in the playlist", self.index + 1)
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
            other => Err(format!("{other:?} is not a transport command")),
        }
    }

    /// Called at the status interval: at the end of a track, go on to the next one in the
    /// playlist, or stop there.
    pub fn tick(&mut self) {
        let playing = self.current().is_some_and(|t| t.playing);
        if !playing || !self.player.status().finished {
            return;
        }
        if self.index + 1 < self.playlist.len() {
            if let Err(e) = self.apply(&Command::Next) {
                tracing::error!("cannot go on to the next track: {e}");
            }
        } else {
            let end = self.player.status().position.unwrap_or(0.0);
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
        self.current().is_none_or(|t| !t.playing) && self.player.status().finished
    }

    fn current(&self) -> Option<Timeline> {
        self.net.lock().ok()?.timeline.clone()
    }

    /// Change the timeline under the lock with the next epoch and sequence number, then
    /// push it to the fleet.
    fn update(&self, f: impl FnOnce(&mut NetState, i32, i64)) {
        if let Ok(mut n) = self.net.lock() {
            let (epoch, seq) = n
                .timeline
                .as_ref()
                .map_or((0, 1), |t| (t.epoch.wrapping_add(1), t.seq + 1));
            f(&mut n, epoch, seq);
            if let Some(t) = n.timeline.as_mut() {
                t.leader.clone_from(&self.id);
            }
        }
        self.wake.notify_one();
    }
}
