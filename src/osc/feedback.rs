//! Feedback: fleet state pushed to control surfaces so faders and labels stay true.
//!
//! [`feedback_messages`] (pure) lists the `/convoy/fb/...` messages whose value differs
//! between two [`Snapshot`]s, or all of them for a newcomer. [`Clients`] is the bounded table
//! of who gets them: any client whose message passed the control policy in the last
//! `feedback_idle` (implicit), and clients that sent `/convoy/subscribe` in the last
//! `subscribe_ttl` (explicit, optionally to another UDP port of the same host). When the
//! table is full the least recently heard client is dropped; a closed TCP connection leaves
//! at once. Only verified addresses enter the table (`dispatch` decides: a TCP connection,
//! a sender that cannot be spoofed from off-host or used the control secret, or a UDP
//! address that echoed its [`Clients::cookie`]), so a spoofed datagram starts no stream. [`run_feedback`] wakes on every snapshot change, every new client, at
//! `feedback_hz` and at the instant each beat is heard, reads position, beat and levels
//! from the live plane at that instant, and sends only what changed to settled clients and
//! the whole state to new ones: a phone gets the position at `feedback_hz` and the beat on
//! the beat.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

use super::codec;
use crate::clock::mono_ns;
use crate::control::{NodeHandle, Snapshot};

/// Where replies and feedback for one client go. Sending never blocks: a full TCP queue or
/// a full socket buffer drops the message (a slow phone must not stall the control port).
#[derive(Debug, Clone)]
pub enum Peer {
    /// A UDP client: datagrams from the control socket to `addr`.
    Udp {
        /// The control socket.
        socket: Arc<UdpSocket>,
        /// The client's address.
        addr: SocketAddr,
    },
    /// A TCP connection: packets to its writer task, framed as the connection is.
    Tcp {
        /// Connection number (unique for the server's lifetime).
        id: u64,
        /// The client's address.
        addr: SocketAddr,
        /// The writer's queue.
        tx: mpsc::Sender<OscPacket>,
    },
}

/// Identity of a feedback client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A UDP address.
    Udp(SocketAddr),
    /// A TCP connection number.
    Tcp(u64),
}

impl Peer {
    /// The client's address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp { addr, .. } | Peer::Tcp { addr, .. } => *addr,
        }
    }

    /// Its key in the client table.
    pub fn key(&self) -> ClientKey {
        match self {
            Peer::Udp { addr, .. } => ClientKey::Udp(*addr),
            Peer::Tcp { id, .. } => ClientKey::Tcp(*id),
        }
    }

    /// Sends one message without blocking; false if it was dropped.
    pub fn send(&self, msg: OscMessage) -> bool {
        self.send_within(msg, None)
    }

    /// Sends one message without blocking unless, over UDP, it is larger than `limit`
    /// bytes (an address not yet verified gets nothing larger than what it sent); false
    /// if it was dropped.
    pub fn send_within(&self, msg: OscMessage, limit: Option<usize>) -> bool {
        let packet = OscPacket::Message(msg);
        match self {
            Peer::Udp { socket, addr } => codec::encode(&packet).ok().is_some_and(|bytes| {
                limit.is_none_or(|l| bytes.len() <= l) && socket.try_send_to(&bytes, *addr).is_ok()
            }),
            Peer::Tcp { tx, .. } => tx.try_send(packet).is_ok(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    peer: Peer,
    last_seen: Instant,
    subscribed: bool,
    /// Has not had the full state yet.
    fresh: bool,
}

/// Settings of the client table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLimits {
    /// Register senders implicitly (`osc.feedback`).
    pub implicit: bool,
    /// Implicit clients expire after this silence.
    pub idle: Duration,
    /// Subscriptions expire after this long without renewal.
    pub ttl: Duration,
    /// Most clients.
    pub max: usize,
}

/// The bounded table of feedback clients.
#[derive(Debug)]
pub struct Clients {
    table: Mutex<HashMap<ClientKey, Entry>>,
    wake: Notify,
    limits: ClientLimits,
    /// Keyed with this process's random SipHash keys: the subscribe cookie of an address.
    cookies: std::collections::hash_map::RandomState,
}

impl Clients {
    /// An empty table.
    pub fn new(limits: ClientLimits) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            limits,
            cookies: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The cookie a subscriber must echo to prove it receives at `addr`: 24 bits, so a
    /// float argument (TouchOSC) carries it exactly; stable for this process's lifetime.
    pub fn cookie(&self, addr: SocketAddr) -> i32 {
        (self.cookies.hash_one(addr) & 0x00FF_FFFF) as i32
    }

    /// Is `key` in the table (it proved its address, or could not have spoofed it)?
    pub fn listed(&self, key: &ClientKey) -> bool {
        self.lock().contains_key(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Entry>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client was heard: registers it (implicit feedback) or refreshes it.
    pub fn touch(&self, peer: &Peer, now: Instant) {
        if !self.limits.implicit {
            if let Some(e) = self.lock().get_mut(&peer.key()) {
                e.last_seen = now;
            }
            return;
        }
        self.upsert(peer, now, false);
    }

    /// An explicit subscription (renewed by every call).
    pub fn subscribe(&self, peer: Peer, now: Instant) {
        self.upsert(&peer, now, true);
    }

    /// Ends a client's feedback; true if it was registered.
    pub fn remove(&self, key: &ClientKey) -> bool {
        self.lock().remove(key).is_some()
    }

    /// Registered clients.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No client registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn upsert(&self, peer: &Peer, now: Instant, subscribe: bool) {
        let mut t = self.lock();
        let key = peer.key();
        if let Some(e) = t.get_mut(&key) {
            e.last_seen = now;
            if subscribe {
                e.subscribed = true;
                e.fresh = true;
            }
        } else {
            if t.len() >= self.limits.max {
                if let Some(oldest) = t.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| *k) {
                    t.remove(&oldest);
                }
            }
            t.insert(
                key,
                Entry {
                    peer: peer.clone(),
                    last_seen: now,
                    subscribed: subscribe,
                    fresh: true,
                },
            );
        }
        let fresh = t.get(&key).is_some_and(|e| e.fresh);
        drop(t);
        if fresh {
            self.wake.notify_one();
        }
    }

    /// Drops expired clients and returns (settled, new) peers; new ones are settled after.
    pub fn targets(&self, now: Instant) -> (Vec<Peer>, Vec<Peer>) {
        let ClientLimits { idle, ttl, .. } = self.limits;
        let mut t = self.lock();
        t.retain(|_, e| {
            let life = if e.subscribed { ttl.max(idle) } else { idle };
            now.saturating_duration_since(e.last_seen) <= life
        });
        let (mut settled, mut fresh) = (Vec::new(), Vec::new());
        for e in t.values_mut() {
            if std::mem::take(&mut e.fresh) {
                fresh.push(e.peer.clone());
            } else {
                settled.push(e.peer.clone());
            }
        }
        (settled, fresh)
    }
}

type Field = (&'static str, fn(&Snapshot) -> Vec<OscType>);

fn s(v: &Option<String>) -> Vec<OscType> {
    vec![OscType::String(v.clone().unwrap_or_default())]
}

fn f(v: f64) -> Vec<OscType> {
    vec![OscType::Float(v as f32)]
}

fn i(v: i64) -> Vec<OscType> {
    vec![OscType::Int(
        v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    )]
}

/// The feedback address space: address and the arguments it carries for a snapshot.
pub const FIELDS: &[Field] = &[
    ("/convoy/fb/track", |x| s(&x.track)),
    ("/convoy/fb/playing", |x| i(x.playing.into())),
    ("/convoy/fb/position", |x| {
        f(x.position_ms.unwrap_or(0.0) / 1000.0)
    }),
    ("/convoy/fb/progress", progress),
    ("/convoy/fb/duration", |x| {
        f(x.duration_ms.unwrap_or(0.0) / 1000.0)
    }),
    ("/convoy/fb/tempo", |x| f(x.tempo_bpm.unwrap_or(0.0))),
    ("/convoy/fb/beat", |x| {
        vec![
            OscType::Int(x.meters.beat.min(i32::MAX as u64) as i32),
            OscType::Int(x.meters.beat_in_bar.map_or(0, i32::from)),
        ]
    }),
    ("/convoy/fb/show", |x| s(&x.show)),
    ("/convoy/fb/cue", |x| s(&x.cue)),
    ("/convoy/fb/pattern", |x| {
        vec![OscType::String(x.light.pattern.clone())]
    }),
    ("/convoy/fb/bright", |x| f(x.light.bright.into())),
    ("/convoy/fb/hue", |x| f(x.light.hue.into())),
    ("/convoy/fb/color", |x| {
        x.light
            .color
            .iter()
            .map(|&c| OscType::Int(c.into()))
            .collect()
    }),
    ("/convoy/fb/role", |x| vec![OscType::String(x.role.clone())]),
    ("/convoy/fb/leader", |x| s(&x.leader)),
    ("/convoy/fb/locked", |x| i(x.sync.locked.into())),
    ("/convoy/fb/sync_error", |x| {
        f(x.sync.playback_error_ms.unwrap_or(0.0))
    }),
    ("/convoy/fb/peers", |x| i(x.peers.len() as i64)),
    // Echoes on the TouchOSC controls' own addresses: a TouchOSC (Mk1) control moves only
    // on a message to its own address, so the layout's faders and XY pad follow the fleet
    // (another phone, a show cue, playback) instead of staying where the finger left them.
    ("/convoy/seek/norm", progress),
    ("/convoy/hue/norm", |x| f(f64::from(x.light.hue) / 360.0)),
    ("/convoy/bright", |x| f(x.light.bright.into())),
    ("/convoy/color/xy", |x| {
        vec![
            OscType::Float((f64::from(x.light.hue) / 360.0) as f32),
            OscType::Float(x.light.bright),
        ]
    }),
];

/// Playback progress, `0..=1` of the track (0 with nothing loaded).
fn progress(x: &Snapshot) -> Vec<OscType> {
    match (x.position_ms, x.duration_ms) {
        (Some(p), Some(d)) if d > 0.0 => f((p / d).clamp(0.0, 1.0)),
        _ => f(0.0),
    }
}

/// Messages for the fields that differ between `prev` and `now` (all of them without `prev`).
pub fn feedback_messages(prev: Option<&Snapshot>, now: &Snapshot) -> Vec<OscMessage> {
    FIELDS
        .iter()
        .filter_map(|(addr, get)| {
            let args = get(now);
            match prev {
                Some(p) if get(p) == args => None,
                _ => Some(OscMessage {
                    addr: (*addr).to_string(),
                    args,
                }),
            }
        })
        .collect()
}

/// Pushes feedback until the node's snapshot channel closes.
pub async fn run_feedback(handle: NodeHandle, clients: Arc<Clients>, period: Duration) {
    let mut rx = handle.watch();
    let mut last: Option<Snapshot> = None;
    let live = handle.live().clone();
    let mut announced = live.announcements();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut woke = mono_ns();
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = clients.wake.notified() => {}
            _ = tick.tick() => {}
            _ = crate::live::next_beat(&live, woke) => {}
            r = announced.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        }
        woke = mono_ns();
        rx.borrow_and_update();
        let snap = handle.snapshot_now();
        let (settled, fresh) = clients.targets(Instant::now());
        if !settled.is_empty() {
            for m in feedback_messages(last.as_ref(), &snap) {
                for p in &settled {
                    p.send(m.clone());
                }
            }
        }
        if !fresh.is_empty() {
            for m in feedback_messages(None, &snap) {
                for p in &fresh {
                    p.send(m.clone());
                }
            }
        }
        last = Some(snap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_peer(sock: &Arc<UdpSocket>, port: u16) -> Peer {
        Peer::Udp {
            socket: sock.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn only_changed_fields_are_sent() {
        let a = Snapshot::default();
        let all = feedback_messages(None, &a);
        assert_eq!(all.len(), FIELDS.len());
        assert!(feedback_messages(Some(&a), &a).is_empty());
        let mut b = a.clone();
        b.playing = true;
        b.position_ms = Some(30_000.0);
        b.duration_ms = Some(120_000.0);
        b.light.hue = 200;
        let d = feedback_messages(Some(&a), &b);
        let addrs: Vec<&str> = d.iter().map(|m| m.addr.as_str()).collect();
        assert_eq!(
            addrs,
            [
                "/convoy/fb/playing",
                "/convoy/fb/position",
                "/convoy/fb/progress",
                "/convoy/fb/duration",
                "/convoy/fb/hue",
                "/convoy/seek/norm",
                "/convoy/hue/norm",
                "/convoy/color/xy"
            ]
        );
        // The TouchOSC controls' own addresses carry what their faders and pad show.
        assert_eq!(d[5].args, vec![OscType::Float(0.25)]);
        let hue = (200.0f64 / 360.0) as f32;
        assert_eq!(d[6].args, vec![OscType::Float(hue)]);
        assert_eq!(d[7].args, vec![OscType::Float(hue), OscType::Float(0.0)]);
        assert_eq!(d[1].args, vec![OscType::Float(30.0)]);
        assert_eq!(d[2].args, vec![OscType::Float(0.25)]);
        assert_eq!(d[4].args, vec![OscType::Float(200.0)]);
    }

    #[tokio::test]
    async fn table_is_bounded_expires_and_marks_newcomers() {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let clients = Clients::new(ClientLimits {
            implicit: true,
            idle: Duration::from_secs(10),
            ttl: Duration::from_secs(100),
            max: 2,
        });
        let t0 = Instant::now();
        clients.touch(&udp_peer(&sock, 1001), t0);
        clients.subscribe(udp_peer(&sock, 1002), t0 + Duration::from_secs(1));
        let (settled, fresh) = clients.targets(t0 + Duration::from_secs(2));
        assert_eq!((settled.len(), fresh.len()), (0, 2));
        let (settled, fresh) = clients.targets(t0 + Duration::from_secs(2));
        assert_eq!((settled.len(), fresh.len()), (2, 0));
        // A third client evicts the least recently heard (1001).
        clients.touch(&udp_peer(&sock, 1003), t0 + Duration::from_secs(3));
        assert_eq!(clients.len(), 2);
        assert!(!clients.remove(&ClientKey::Udp(SocketAddr::from(([127, 0, 0, 1], 1001)))));
        // After 20 s the implicit client is gone, the subscription remains until 101 s.
        let (settled, _) = clients.targets(t0 + Duration::from_secs(20));
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].addr().port(), 1002);
        assert!(clients.targets(t0 + Duration::from_secs(102)).0.is_empty());
        assert!(clients.is_empty());
    }

    #[tokio::test]
    async fn without_implicit_feedback_only_subscribers_register() {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let clients = Clients::new(ClientLimits {
            implicit: false,
            idle: Duration::from_secs(10),
            ttl: Duration::from_secs(100),
            max: 4,
        });
        let now = Instant::now();
        clients.touch(&udp_peer(&sock, 2001), now);
        assert!(clients.is_empty());
        clients.subscribe(udp_peer(&sock, 2002), now);
        assert_eq!(clients.len(), 1);
    }
}
