//! A follower's two network tasks: SNTP discipline of its view of the leader's clock, and
//! the timeline link — subscribe, take each newer timeline, and make the player do what
//! it says (start a track at a scheduled fleet time, join one already playing, pause, stop,
//! follow seeks) while the PLL steers the fine timing. The same socket relays control
//! commands given to this bike to the leader. In hierarchical mode the server and the link
//! may be a sub-leader's: its SNTP answers with its estimate of the leader's time and its
//! timeline is the leader's, unchanged, so nothing here needs to know which it is.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

use super::lights::{self, FleetLights};
use super::Counters;
use crate::audio::{self, Player};
use crate::clock::{mono_ns, LocalClock};
use crate::library::{TrackError, Tracks};
use crate::osc::command::CommandParser;
use crate::security::{FleetSecurity, TrafficClass};
use crate::sync::filter::{ClockEstimate, ClockFilter};
use crate::sync::pll::NetState;
use crate::sync::sntp::SntpClient;
use crate::sync::timeline::{self, Timeline};

/// SNTP exchanges at `hz`, into the clock filter. The filter outlives the task: a node
/// that changes leader keeps its estimate (offset and frequency) and carries on from it.
pub async fn discipline(
    client: SntpClient,
    server: SocketAddr,
    filter: Arc<Mutex<ClockFilter>>,
    hz: f64,
    net: Arc<Mutex<NetState>>,
    c: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz.max(0.05)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match client.exchange(server).await {
            Ok(ex) => {
                c.sntp_ok.fetch_add(1, Relaxed);
                let Ok(est) = filter.lock().map(|mut f| f.add(ex)) else {
                    return;
                };
                if let Ok(mut n) = net.lock() {
                    n.estimate = est;
                }
            }
            Err(e) => {
                c.sntp_failed.fetch_add(1, Relaxed);
                tracing::debug!("{e}");
            }
        }
    }
}

/// A node's clock plus its output latency: turns fleet time into the monotonic instant at
/// which the DAC must play.
#[derive(Debug, Clone, Copy)]
pub struct LocalTime {
    /// This node's clock.
    pub clock: LocalClock,
    /// Output latency after the DAC, ns.
    pub latency_ns: i64,
}

/// What the follower has told its player to do. It outlives one link: a node that changes
/// leader (or stops leading) knows what its player is already doing, so a timeline that
/// continues the same track and epoch changes nothing.
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
            },
            Some(t) => Applied {
                epoch: Some(t.epoch),
                ..Applied::default()
            },
            None => Applied::default(),
        }
    }
}

/// Everything the timeline link needs.
pub struct Link {
    /// Socket (ephemeral port).
    pub sock: UdpSocket,
    /// The leader's timeline address.
    pub leader: SocketAddr,
    /// Our vehicle id.
    pub id: String,
    /// Our clock.
    pub local: LocalTime,
    /// Shared with the PLL.
    pub net: Arc<Mutex<NetState>>,
    /// The player.
    pub player: Arc<Player>,
    /// Opens (and fetches) the fleet's tracks.
    pub tracks: Tracks,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Sealing and checking.
    pub security: Arc<FleetSecurity>,
    /// Payloads to seal and send to the leader (relayed commands, light fields).
    pub relay: mpsc::Receiver<Vec<u8>>,
    /// What the player was told (shared with the next link).
    pub applied: Arc<Mutex<Applied>>,
    /// The fleet's light state: merged from every timeline, ours sent back when newer.
    pub lights: Arc<FleetLights>,
    /// Woken on every newer timeline: a sub-leader's publisher re-publishes it at once.
    pub wake: Arc<Notify>,
}

/// Subscribe to the leader, follow its timeline, relay commands; runs until aborted.
pub async fn follow_timeline(mut link: Link) {
    let Ok(hello) = timeline::subscribe_message(&link.id) else {
        return;
    };
    let mut resubscribe = tokio::time::interval(Duration::from_secs(1));
    let parser = CommandParser::new();
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            _ = resubscribe.tick() => link.send(&hello).await,
            Some(bytes) = link.relay.recv() => link.send(&bytes).await,
            r = link.sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let now = link.fleet_now();
                let Ok(v) = link.security.open(src, &buf[..n], TrafficClass::Timing, now) else {
                    continue; // refused and counted by the guard
                };
                let Ok((tl, extra)) = Timeline::decode(v.payload) else {
                    tracing::debug!("ignoring a fleet datagram that is not a timeline");
                    continue;
                };
                // The leader's light state: take what is newer, send back what is ours.
                for newer in link.lights.merge(&lights::entries(&parser, &extra)) {
                    if let Some(bytes) = newer.encode() {
                        link.send(&bytes).await;
                    }
                }
                link.counters.timelines.fetch_add(1, Relaxed);
                let (newer, est) = {
                    let Ok(mut state) = link.net.lock() else { continue };
                    let newer = state
                        .timeline
                        .as_ref()
                        .is_none_or(|old| old.leader != tl.leader || tl.seq > old.seq);
                    if newer {
                        state.timeline = Some(tl.clone());
                    }
                    (newer, state.estimate)
                };
                if newer {
                    link.wake.notify_one();
                    if let Ok(mut applied) = link.applied.lock() {
                        link.apply(&tl, est, &mut applied);
                    }
                }
            }
        }
    }
}

impl Link {
    /// Fleet time now, once SNTP has given an estimate.
    fn fleet_now(&self) -> Option<u64> {
        let est = self.net.lock().ok()?.estimate?;
        Some(est.fleet_at(self.local.clock.now()).max(0) as u64)
    }

    async fn send(&self, payload: &[u8]) {
        // Stamped with fleet time when known, so the leader's freshness check holds
        // whatever this bike's own clock says.
        let now = self
            .fleet_now()
            .unwrap_or(self.local.clock.now().max(0) as u64);
        match self.security.seal(payload, now) {
            Ok(bytes) => {
                if let Err(e) = self.sock.send_to(&bytes, self.leader).await {
                    tracing::debug!("to the leader {}: {e}", self.leader);
                }
            }
            Err(e) => tracing::warn!("cannot seal a fleet message: {e}"),
        }
    }

    /// Open the fleet's track, logging a failure once per track. A shared track still
    /// downloading is not an error: the next timeline tries again and joins mid-track.
    fn open(&self, track: &str, applied: &mut Applied) -> Option<Box<dyn audio::Source>> {
        match self.tracks.open(track) {
            Ok(source) => Some(source),
            Err(e) => {
                if applied.failed.as_deref() != Some(track) {
                    match e {
                        TrackError::Fetching(_) => tracing::info!("{e}"),
                        e => tracing::error!("cannot open the fleet's track {track}: {e}"),
                    }
                    applied.failed = Some(track.to_string());
                }
                None
            }
        }
    }

    /// Make the player do what the timeline says, if it does not already.
    fn apply(&self, tl: &Timeline, est: Option<ClockEstimate>, applied: &mut Applied) {
        let same_track = applied.track.as_deref() == Some(tl.track.as_str());
        if tl.track.is_empty() {
            if applied.track.is_some() {
                let _ = self.player.send(audio::PlayerCommand::Unload);
                *applied = Applied {
                    epoch: Some(tl.epoch),
                    ..Applied::default()
                };
            }
            return;
        }
        if !tl.playing {
            if same_track && applied.paused {
                if applied.epoch != Some(tl.epoch) {
                    let frame = tl.anchor_frame.max(0.0).round() as u64;
                    let _ = self.player.send(audio::PlayerCommand::Seek(frame));
                    applied.epoch = Some(tl.epoch);
                }
                return;
            }
            let sent = if same_track {
                self.player.send(audio::PlayerCommand::Pause(true))
            } else {
                let Some(source) = self.open(&tl.track, applied) else {
                    return;
                };
                self.player.send(audio::PlayerCommand::Load {
                    source,
                    start_frame: tl.anchor_frame.max(0.0).round() as u64,
                    paused: true,
                    at_heard_ns: None,
                })
            };
            if sent.is_ok() {
                *applied = Applied {
                    track: Some(tl.track.clone()),
                    epoch: Some(tl.epoch),
                    paused: true,
                    failed: None,
                };
            }
            return;
        }
        if same_track && applied.epoch == Some(tl.epoch) && !applied.paused {
            return; // already following; the PLL does the rest
        }
        // Without a clock estimate we cannot tell whether the start is still ahead: wait
        // for SNTP (the next timeline retries).
        let Some(est) = est else { return };
        let heard_mono = self
            .local
            .clock
            .to_mono(est.local_at(tl.anchor_fleet_ns))
            .saturating_add_signed(-self.local.latency_ns);
        let now = mono_ns();
        let sent = if heard_mono > now + 50_000_000 {
            // A scheduled start (play, seek, resume): start on the same sample as the leader.
            let Some(src) = self.open(&tl.track, applied) else {
                return;
            };
            self.player
                .load_at(src, tl.anchor_frame.max(0.0).round() as u64, heard_mono)
        } else if same_track && applied.paused {
            // Resume late: the PLL's join seeks to where the fleet is.
            self.player.send(audio::PlayerCommand::Pause(false))
        } else if same_track {
            Ok(()) // a new epoch while playing: the PLL joins afresh (seek if needed)
        } else {
            // Join a track already playing: open it near where the fleet is; the PLL's join
            // puts it on the exact frame.
            let here = tl.frame_at(est.fleet_at(self.local.clock.now()));
            let Some(src) = self.open(&tl.track, applied) else {
                return;
            };
            self.player.load(src, here.max(0.0).round() as u64)
        };
        if sent.is_ok() {
            *applied = Applied {
                track: Some(tl.track.clone()),
                epoch: Some(tl.epoch),
                paused: false,
                failed: None,
            };
        }
    }
}
