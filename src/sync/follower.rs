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

use super::deck::Deck;
use super::follow::{Applied, FollowConfig};
use super::Counters;
use crate::clock::FleetClock;
use crate::fleet::lights::{self, FleetLights};
use crate::osc::command::CommandParser;
use crate::security::{FleetSecurity, TrafficClass};
use crate::sync::filter::ClockFilter;
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
    fleet: FleetClock,
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
                fleet.set_estimate(est);
            }
            Err(e) => {
                c.sntp_failed.fetch_add(1, Relaxed);
                tracing::debug!("{e}");
            }
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
    /// Fleet time as this node knows it.
    pub fleet: FleetClock,
    /// Shared with the PLL.
    pub net: Arc<Mutex<NetState>>,
    /// The player and the fleet's tracks.
    pub deck: Arc<dyn Deck>,
    /// `[sync]` settings of the timeline state machine.
    pub follow: FollowConfig,
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
    let mut resubscribe = tokio::time::interval(link.follow.resubscribe);
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
                let newer = {
                    let Ok(mut state) = link.net.lock() else { continue };
                    let newer = state
                        .timeline
                        .as_ref()
                        .is_none_or(|old| old.leader != tl.leader || tl.seq > old.seq);
                    if newer {
                        state.timeline = Some(tl.clone());
                    }
                    newer
                };
                if newer {
                    link.wake.notify_one();
                    // Applying may open a track (file I/O): off the runtime's workers, and
                    // awaited, so timelines still apply in order.
                    let (applied, fleet, deck, follow) =
                        (link.applied.clone(), link.fleet.clone(), link.deck.clone(), link.follow);
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Ok(mut a) = applied.lock() {
                            a.apply(&tl, &fleet, deck.as_ref(), &follow);
                        }
                    })
                    .await;
                }
            }
        }
    }
}

impl Link {
    /// Fleet time now, once SNTP has given an estimate.
    fn fleet_now(&self) -> Option<u64> {
        Some(self.fleet.now()?.max(0) as u64)
    }

    async fn send(&self, payload: &[u8]) {
        // Stamped with fleet time when known, so the leader's freshness check holds
        // whatever this bike's own clock says.
        let now = self.fleet.now_or_local().max(0) as u64;
        match self.security.seal(payload, now) {
            Ok(bytes) => {
                if let Err(e) = self.sock.send_to(&bytes, self.leader).await {
                    tracing::debug!("to the leader {}: {e}", self.leader);
                }
            }
            Err(e) => tracing::warn!("cannot seal a fleet message: {e}"),
        }
    }
}
