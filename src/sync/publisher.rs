//! The leader's (and a sub-leader's) timeline socket: it answers subscriptions at once,
//! sends the timeline — with the fleet's light state — to every live subscriber at
//! `sync.publish_hz` and immediately after every change, forgets subscribers that stop
//! renewing, and takes what followers send up (relayed commands, light writes). Every
//! datagram is sealed and checked by [`FleetSecurity`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::pll::NetState;
use super::timeline;
use super::Counters;
use crate::clock::FleetClock;
use crate::control::{HandleError, NodeHandle, Origin};
use crate::fleet::lights::FleetLights;
use crate::osc::command::CommandParser;
use crate::security::{FleetSecurity, TrafficClass};

/// The leader's timeline socket and what it serves.
pub struct Publisher {
    pub sock: UdpSocket,
    pub net: Arc<Mutex<NetState>>,
    pub hz: f64,
    pub clock: FleetClock,
    pub security: Arc<FleetSecurity>,
    pub wake: Arc<Notify>,
    pub handle: NodeHandle,
    pub counters: Arc<Counters>,
    /// The fleet's light state, sent with every timeline.
    pub lights: Arc<FleetLights>,
    /// A subscriber silent this long is dropped.
    pub expiry: Duration,
}

/// Leader: answer subscriptions, take relayed commands, and send the timeline to every
/// live subscriber at `hz` and at once after every change.
pub async fn publish_timeline(p: Publisher) {
    let mut subscribers: HashMap<SocketAddr, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / p.hz.max(0.1)));
    let parser = CommandParser::new();
    let mut buf = [0u8; 1500];
    // Verdicts on relayed requests, from the tasks that await them, to seal and send.
    let (verdict_tx, mut verdict_rx) = tokio::sync::mpsc::channel::<(SocketAddr, Vec<u8>)>(64);
    loop {
        tokio::select! {
            r = p.sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                let bytes = &buf[..n];
                let payload = bytes.get(crate::security::envelope::HEADER_LEN..).unwrap_or_default();
                let class = if crate::fleet::relay::is_relay(payload) { TrafficClass::Control } else { TrafficClass::Timing };
                let now = p.clock.now_or_local().max(0) as u64;
                let Ok(v) = p.security.open(peer, bytes, class, Some(now)) else { continue };
                if let Some(entry) = crate::fleet::lights::Entry::decode(&parser, v.payload) {
                    // A light command given to a follower: the newest write wins.
                    p.lights.merge(std::slice::from_ref(&entry));
                } else if let Some((id, cmd)) = crate::fleet::relay::decode(&parser, v.payload) {
                    p.counters.relayed.fetch_add(1, Relaxed);
                    let origin = Origin::Fleet(format!("{:08x}@{peer}", v.sender));
                    match id {
                        None => {
                            if let Err(e) = p.handle.submit(cmd, origin) {
                                tracing::warn!("relayed command from {peer} dropped: {e}");
                            }
                        }
                        // The sender waits for the verdict: answer it once the node decided.
                        Some(id) => {
                            let (handle, verdicts) = (p.handle.clone(), verdict_tx.clone());
                            tokio::spawn(async move {
                                let verdict = handle.execute(cmd, origin).await.map_err(|e| match e {
                                    HandleError::Refused(why) => why.to_string(),
                                    other => other.to_string(),
                                });
                                if let Some(bytes) = crate::fleet::relay::encode_verdict(id, &verdict) {
                                    let _ = verdicts.try_send((peer, bytes));
                                }
                            });
                        }
                    }
                } else if timeline::parse_subscribe(v.payload).is_some() {
                    if subscribers.len() < 1024 || subscribers.contains_key(&peer) {
                        subscribers.insert(peer, tokio::time::Instant::now());
                    }
                    // Answer at once, so a joiner need not wait for the next tick.
                    if let Some(bytes) = sealed_timeline(&p) {
                        let _ = p.sock.send_to(&bytes, peer).await;
                    }
                }
            }
            Some((peer, verdict)) = verdict_rx.recv() => {
                if let Ok(bytes) = p.security.seal(&verdict, p.clock.now_or_local().max(0) as u64) {
                    let _ = p.sock.send_to(&bytes, peer).await;
                }
            }
            _ = tick.tick() => {
                expire(&mut subscribers, &p.counters, p.expiry);
                send_all(&p, &subscribers).await;
            }
            _ = p.wake.notified() => {
                expire(&mut subscribers, &p.counters, p.expiry);
                send_all(&p, &subscribers).await;
                // The next tick a full period later: a sub-leader re-publishing every
                // timeline it hears sends at its leader's rate, not twice it.
                tick.reset();
            }
        }
    }
}

/// Forget subscribers silent for `expiry` (they resubscribe every `sync.resubscribe_s`).
fn expire(
    subscribers: &mut HashMap<SocketAddr, tokio::time::Instant>,
    counters: &Counters,
    expiry: Duration,
) {
    let now = tokio::time::Instant::now();
    subscribers.retain(|_, seen| now.duration_since(*seen) < expiry);
    counters
        .subscribers
        .store(subscribers.len() as u64, Relaxed);
}

async fn send_all(p: &Publisher, subscribers: &HashMap<SocketAddr, tokio::time::Instant>) {
    if let Some(bytes) = sealed_timeline(p) {
        for peer in subscribers.keys() {
            if p.sock.send_to(&bytes, peer).await.is_ok() {
                p.counters.timelines_sent.fetch_add(1, Relaxed);
            }
        }
    }
}

fn sealed_timeline(p: &Publisher) -> Option<Vec<u8>> {
    let extra = p.lights.messages();
    let tl = match p.net.lock().ok()?.timeline.clone() {
        Some(tl) => tl,
        // Nothing has played yet, but the fleet shares a light state or a Link beat:
        // an idle timeline carries it (the first real one supersedes it).
        None if !extra.is_empty() => {
            let now = p.clock.now_or_local();
            timeline::Timeline::idle(p.lights.id(), crate::clock::incarnation(), now)
        }
        None => return None,
    };
    let osc = tl.to_osc_with(extra).ok()?;
    p.security
        .seal(&osc, p.clock.now_or_local().max(0) as u64)
        .ok()
}
