//! The async membership driver: one UDP socket, the election state machine, optional
//! mDNS, and a `watch` channel of [`FleetView`]s.
//!
//! Every `heartbeat` interval (and at once when the election asks) the task seals a
//! [`Heartbeat`] with the node's [`Sealer`] and sends it to every configured destination
//! (broadcast addresses) and to mDNS-discovered peers whose heartbeats do not reach us by
//! broadcast. Received datagrams go through the shared security [`Guard`] (HMAC, replay
//! window, freshness, rate limits) before anything reads them; our own broadcasts heard
//! back are dropped first. The election ticks every `heartbeat / 5` (10–50 ms), so a
//! vanished leader is replaced within `peer_timeout + tick`. Dropping every
//! [`FleetHandle`] or calling [`FleetHandle::shutdown`] sends a goodbye heartbeat, so
//! peers forget this node at once, and stops the task.
//!
//! A node whose clock is far off (a Pi without an RTC, minutes or days off after a ride
//! without internet) fails the freshness check on every heartbeat. While it has heard no
//! fresh heartbeat for a peer timeout, it therefore takes authentic heartbeats that fail
//! *only* freshness from a better-ranked claimant, and follows it: the node then learns the
//! fleet time by SNTP (exempt from freshness, its round trip proves it fresh), stamps and
//! checks heartbeats with it, and from then on hears the fleet fresh like everyone else.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::discovery::{Advert, Discovered, Mdns};
use super::election::{hierarchy, Action, Election, ElectionConfig, Rank};
use super::lamport::LamportClock;
use super::netif::{self, Iface};
use super::wire::{check_id, AdvertisedRole, Heartbeat};
use super::{sender_id, FleetConfig, FleetError, FleetStats, FleetView, Member, MemberInfo};
use crate::clock::{mono_ns, FleetClock};
use crate::security::envelope::MAX_DATAGRAM;
use crate::security::{envelope, Guard, RejectReason, Sealer, TrafficClass};

/// How long a better-ranked newcomer follows a leader in office before it displaces it
/// even if not locked (`ElectionConfig::takeover_wait_ns`): a lock takes 1–3 s.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// Requests from a [`FleetHandle`] to the task.
#[derive(Debug)]
enum Cmd {
    Role(AdvertisedRole),
    PlaybackError(Option<f64>),
    Ready(bool),
    Force(bool),
    Priority(u8),
    Shutdown(oneshot::Sender<()>),
}

/// Control of a running membership task (cloneable).
#[derive(Debug, Clone)]
pub struct FleetHandle {
    tx: mpsc::Sender<Cmd>,
    lamport: Arc<LamportClock>,
}

impl FleetHandle {
    fn send(&self, c: Cmd) -> Result<(), FleetError> {
        self.tx.try_send(c).map_err(|_| FleetError::Stopped)
    }

    /// Advertises the sync role this node now runs.
    pub fn set_role(&self, role: AdvertisedRole) -> Result<(), FleetError> {
        self.send(Cmd::Role(role))
    }

    /// Advertises the current playback error against the timeline, ms.
    pub fn set_playback_error(&self, ms: Option<f64>) -> Result<(), FleetError> {
        self.send(Cmd::PlaybackError(ms))
    }

    /// Says whether this node could lead without a jump (see [`Election::set_ready`]).
    pub fn set_ready(&self, ready: bool) -> Result<(), FleetError> {
        self.send(Cmd::Ready(ready))
    }

    /// Forces leadership onto this node (`true`) or releases the override (`false`): the
    /// hook for an OSC `/convoy/fleet/lead` command.
    pub fn force_leader(&self, on: bool) -> Result<(), FleetError> {
        self.send(Cmd::Force(on))
    }

    /// Changes the election priority.
    pub fn set_priority(&self, priority: u8) -> Result<(), FleetError> {
        self.send(Cmd::Priority(priority))
    }

    /// The node's Lamport clock: stamp locally originated fleet commands with
    /// `lamport().stamp(id)` and `observe` received ones.
    pub fn lamport(&self) -> Arc<LamportClock> {
        self.lamport.clone()
    }

    /// Says goodbye to the fleet and stops the task.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Entry points of the membership layer.
#[derive(Debug)]
pub struct Membership;

impl Membership {
    /// Binds `cfg.bind:cfg.port` (broadcast allowed, address reusable) and starts the
    /// task on the current tokio runtime. Heartbeats are stamped with, and checked for
    /// freshness against, the node's fleet `clock`, read afresh every time (a follower's
    /// disciplined estimate of the leader's time, a promoted leader's held-over time).
    pub fn spawn(
        cfg: FleetConfig,
        me: MemberInfo,
        guard: Arc<Mutex<Guard>>,
        sealer: Sealer,
        clock: FleetClock,
    ) -> Result<(FleetHandle, watch::Receiver<FleetView>), FleetError> {
        let addr = SocketAddr::new(cfg.bind, cfg.port);
        let sock = bind(addr).map_err(|source| FleetError::Bind { addr, source })?;
        Self::spawn_on(sock, cfg, me, guard, sealer, clock)
    }

    /// As [`Membership::spawn`], on an already-bound socket (tests bind port 0).
    pub fn spawn_on(
        sock: std::net::UdpSocket,
        cfg: FleetConfig,
        me: MemberInfo,
        guard: Arc<Mutex<Guard>>,
        sealer: Sealer,
        clock: FleetClock,
    ) -> Result<(FleetHandle, watch::Receiver<FleetView>), FleetError> {
        check_id(&me.id).map_err(|source| FleetError::Id {
            id: me.id.clone(),
            source,
        })?;
        let expected = sender_id(&me.id);
        if sealer.sender() != expected {
            return Err(FleetError::Sender {
                id: me.id.clone(),
                expected,
                sealer: sealer.sender(),
            });
        }
        let local = sock.local_addr().map_err(|source| FleetError::Bind {
            addr: SocketAddr::new(cfg.bind, cfg.port),
            source,
        })?;
        sock.set_broadcast(true)
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|source| FleetError::Bind {
                addr: local,
                source,
            })?;
        let sock = UdpSocket::from_std(sock).map_err(|source| FleetError::Bind {
            addr: local,
            source,
        })?;
        let lamport = Arc::new(LamportClock::new(0));
        let now = mono_ns();
        let election = Election::new(
            ElectionConfig {
                peer_timeout_ns: cfg.peer_timeout.as_nanos() as u64,
                startup_grace_ns: cfg.startup_grace.as_nanos() as u64,
                takeover_wait_ns: TAKEOVER_WAIT.as_nanos() as u64,
            },
            Rank {
                forced: me.leader,
                priority: me.priority,
                has_tracks: me.has_tracks,
                id: me.id.clone(),
            },
            now,
        );
        let mdns = if cfg.mdns {
            Some(Mdns::start(&advert(&me, local.port()))?)
        } else {
            None
        };
        let task = Task {
            port: local.port(),
            cfg,
            me,
            guard,
            sealer,
            clock,
            lamport: lamport.clone(),
            election,
            seen: HashMap::new(),
            mdns_peers: HashMap::new(),
            playback_error_ms: None,
            stats: FleetStats::default(),
            fresh_at: None,
            ifaces: (netif::interfaces(), now),
            warned_sends: Vec::new(),
            warned_duplicates: Vec::new(),
            bad_auth: HashMap::new(),
            out: Vec::with_capacity(MAX_DATAGRAM),
            payload: Vec::with_capacity(256),
        };
        let (view_tx, view_rx) = watch::channel(task.view());
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(task, sock, rx, view_tx, mdns));
        Ok((FleetHandle { tx, lamport }, view_rx))
    }
}

/// The warning for a heartbeat that could not be sent, with what to do about it.
pub fn send_failure(addr: SocketAddr, e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENETUNREACH) {
        format!(
            "fleet broadcast to {addr} failed: ENETUNREACH — no route: this bike has no \
             interface or route for that address (a WiFi profile without a gateway has no \
             route for 255.255.255.255 and no interface broadcast was found); set \
             fleet.broadcast to the fleet network's broadcast address, e.g. \"10.42.0.255\", \
             or add a route (`convoy doctor` checks). Peers will not hear this bike."
        )
    } else {
        format!(
            "fleet broadcast to {addr} failed: {e}; peers will not hear this bike \
             (`convoy doctor` checks the fleet network)"
        )
    }
}

/// The warning for fleet datagrams that fail authentication.
pub fn bad_auth_warning(n: u32, from: SocketAddr, fingerprint: &str) -> String {
    format!(
        "{n} fleet datagrams from {from} failed authentication: does this bike have the \
         fleet key? Every bike needs the same key file (/etc/convoy/fleet.key, docs/pi.md); \
         this bike's key fingerprint is {fingerprint} (`convoy doctor` shows it). Until the \
         keys match, neither bike hears the other."
    )
}

/// The warning for another bike heard using this bike's id.
pub fn duplicate_warning(id: &str, from: SocketAddr) -> String {
    format!(
        "duplicate vehicle id {id} from {from}: set node.id (two bikes with one id \
         confuse the election and the timeline; the default is the host name and a hash \
         of /etc/machine-id)"
    )
}

/// A UDP socket with `SO_REUSEADDR` (several members may share a host and port, each
/// receiving the broadcasts) and `SO_BROADCAST`.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn advert(me: &MemberInfo, port: u16) -> Advert {
    Advert {
        id: me.id.clone(),
        role: me.role,
        priority: me.priority,
        port,
        sync_port: me.sync_port,
        sntp_port: me.sntp_port,
        fingerprint: me.fingerprint.clone(),
    }
}

/// What the last heartbeat of a peer said, and where it came from.
#[derive(Debug, Clone)]
struct Seen {
    hb: Heartbeat,
    from: SocketAddr,
    at_ns: u64,
}

/// The task's state (everything but the socket and channels).
struct Task {
    cfg: FleetConfig,
    me: MemberInfo,
    port: u16,
    guard: Arc<Mutex<Guard>>,
    sealer: Sealer,
    clock: FleetClock,
    lamport: Arc<LamportClock>,
    election: Election,
    seen: HashMap<String, Seen>,
    /// Peers found by mDNS: id → membership address.
    mdns_peers: HashMap<String, SocketAddr>,
    playback_error_ms: Option<f64>,
    stats: FleetStats,
    /// Monotonic ns of the last heartbeat accepted fresh (None: none yet).
    fresh_at: Option<u64>,
    /// This machine's interfaces and when they were read (re-read every few seconds:
    /// the WiFi may come up after the node).
    ifaces: (Vec<Iface>, u64),
    /// Destinations whose failed send was warned about (until one succeeds again).
    warned_sends: Vec<SocketAddr>,
    /// Addresses heard using our own id (warned once each).
    warned_duplicates: Vec<SocketAddr>,
    /// Datagrams that failed authentication, per source address (bounded).
    bad_auth: HashMap<IpAddr, u32>,
    out: Vec<u8>,
    payload: Vec<u8>,
}

impl Task {
    fn heartbeat(&self, hello: bool, leaving: bool) -> Heartbeat {
        let r = self.election.me();
        Heartbeat {
            id: self.me.id.clone(),
            priority: r.priority,
            forced: r.forced,
            claims: self.election.is_leader() && !leaving,
            hello,
            leaving,
            has_tracks: r.has_tracks,
            role: self.me.role,
            term: self.election.term(),
            lamport: self.lamport.tick(),
            port: self.port,
            sync_port: self.me.sync_port,
            sntp_port: self.me.sntp_port,
            playback_error_us: self
                .playback_error_ms
                .filter(|e| e.is_finite())
                .map(|e| (e * 1000.0).clamp(-2e9, 2e9) as i32),
            leader: self.election.leader().unwrap_or_default().to_string(),
            version: self.me.version.clone(),
        }
    }

    /// Where periodic heartbeats go: the destinations, plus mDNS peers not heard lately
    /// (their broadcasts do not reach us, so ours may not reach them either).
    fn targets(&mut self, now: u64) -> Vec<SocketAddr> {
        let timeout = self.cfg.peer_timeout.as_nanos() as u64;
        self.refresh_interfaces(now);
        let mut t = netif::expand(&self.cfg.destinations, &self.ifaces.0, self.cfg.bind);
        for (id, addr) in &self.mdns_peers {
            let heard = self
                .seen
                .get(id)
                .is_some_and(|s| now.saturating_sub(s.at_ns) <= timeout);
            if !heard && !t.contains(addr) {
                t.push(*addr);
            }
        }
        t
    }

    /// Re-reads the interfaces when the last read is older than 2 s.
    fn refresh_interfaces(&mut self, now: u64) {
        if now.saturating_sub(self.ifaces.1) > 2_000_000_000 {
            self.ifaces = (netif::interfaces(), now);
        }
    }

    async fn send_to(&mut self, sock: &UdpSocket, hb: &Heartbeat, to: &[SocketAddr]) {
        self.payload.clear();
        if let Err(e) = hb.encode_into(&mut self.payload) {
            tracing::error!("cannot encode our heartbeat: {e}");
            return;
        }
        for addr in to {
            // Sealed per destination: each copy has its own sequence number, so a peer
            // reached twice sees two heartbeats, not a replay.
            self.out.clear();
            let ts = self.clock.now_or_local().max(0) as u64;
            let sealed = match self.guard.lock() {
                Ok(g) => self
                    .sealer
                    .seal_into(g.keyring(), ts, &self.payload, &mut self.out),
                Err(_) => return,
            };
            if let Err(e) = sealed {
                tracing::error!("cannot seal our heartbeat: {e}");
                return;
            }
            match sock.send_to(&self.out, addr).await {
                Ok(_) => {
                    self.stats.sent += 1;
                    self.warned_sends.retain(|a| a != addr);
                }
                Err(e) => {
                    self.stats.send_errors += 1;
                    if self.warned_sends.contains(addr) {
                        tracing::debug!("heartbeat to {addr}: {e}");
                    } else {
                        self.warned_sends.push(*addr);
                        tracing::warn!("{}", send_failure(*addr, &e));
                    }
                }
            }
        }
    }

    async fn beat(&mut self, sock: &UdpSocket, hello: bool, leaving: bool) {
        let hb = self.heartbeat(hello, leaving);
        let to = self.targets(mono_ns());
        self.send_to(sock, &hb, &to).await;
    }

    /// One received datagram; returns the election's actions.
    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) -> Vec<Action> {
        let me = self.sealer.sender().to_be_bytes();
        if bytes.get(6..10) == Some(&me[..]) {
            // Ours comes back from our own port on one of our addresses; anything else
            // carrying our id is another bike configured (or flashed) with the same one.
            let mut own = netif::is_local(from.ip(), &self.ifaces.0);
            if !own {
                // Our address may have changed since the interfaces were read.
                self.ifaces = (netif::interfaces(), mono_ns());
                own = netif::is_local(from.ip(), &self.ifaces.0);
            }
            if own && from.port() == self.port {
                self.stats.own += 1;
            } else {
                self.stats.duplicate_id += 1;
                if !self.warned_duplicates.contains(&from) {
                    self.warned_duplicates.push(from);
                    tracing::warn!("{}", duplicate_warning(&self.me.id, from));
                }
            }
            return Vec::new();
        }
        let now_fleet = self.clock.now_or_local().max(0) as u64;
        let now = mono_ns();
        let mut stale = false;
        let hb = {
            let Ok(mut guard) = self.guard.lock() else {
                return Vec::new();
            };
            let opened = match guard.check_class(from, bytes, TrafficClass::Membership, now_fleet) {
                Ok(a) => a.envelope,
                Err(e) if e.reason() == RejectReason::Stale && self.alone(now) => {
                    // Authentic (the guard checks the tag before freshness), only our
                    // clocks disagree: a candidate to learn the fleet's time from.
                    match envelope::open(guard.keyring(), bytes) {
                        Ok(env) => {
                            stale = true;
                            env
                        }
                        Err(_) => return Vec::new(),
                    }
                }
                Err(e) => {
                    self.stats.rejected += 1;
                    tracing::debug!("membership datagram rejected: {e}");
                    let bad_key =
                        matches!(e.reason(), RejectReason::BadTag | RejectReason::UnknownKey);
                    drop(guard);
                    if bad_key {
                        self.on_bad_auth(from);
                    }
                    return Vec::new();
                }
            };
            match Heartbeat::decode(opened.payload) {
                Ok(hb) if stale && !(hb.claims && hb.beat().rank > *self.election.me()) => {
                    // Only a better-ranked leader is followed on a stale heartbeat: one we
                    // outrank would never hear us lead it.
                    self.stats.rejected += 1;
                    return Vec::new();
                }
                Ok(hb) if sender_id(&hb.id) == opened.sender => hb,
                Ok(hb) => {
                    self.stats.malformed += 1;
                    tracing::debug!("{from}: heartbeat id {:?} is not its sender", hb.id);
                    return Vec::new();
                }
                Err(e) => {
                    self.stats.malformed += 1;
                    tracing::debug!("{from}: {e}");
                    return Vec::new();
                }
            }
        };
        self.stats.received += 1;
        if stale {
            self.stats.stale_leader += 1;
            tracing::debug!(
                "{} leads although our clocks disagree by more than the freshness window",
                hb.id
            );
        } else {
            self.fresh_at = Some(now);
        }
        self.lamport.observe(hb.lamport);
        let actions = self.election.on_heartbeat(&hb.beat(), now);
        if hb.leaving {
            self.seen.remove(&hb.id);
        } else {
            self.seen.insert(
                hb.id.clone(),
                Seen {
                    hb,
                    from,
                    at_ns: now,
                },
            );
        }
        actions
    }

    /// A datagram from `from` failed authentication: after a few from one address, warn
    /// once (a bike with another key hears the fleet and is never heard: it would
    /// otherwise sit silent with nothing in its log).
    fn on_bad_auth(&mut self, from: SocketAddr) {
        const WARN_AFTER: u32 = 3;
        let ip = from.ip();
        if !self.bad_auth.contains_key(&ip) && self.bad_auth.len() >= 64 {
            return; // bounded: a flood of spoofed sources cannot grow it
        }
        let n = self.bad_auth.entry(ip).or_insert(0);
        *n = n.saturating_add(1);
        if *n == WARN_AFTER {
            tracing::warn!("{}", bad_auth_warning(*n, from, &self.me.fingerprint));
        }
    }

    /// No fresh heartbeat for a peer timeout: our clock may be the odd one out.
    fn alone(&self, now: u64) -> bool {
        let timeout = self.cfg.peer_timeout.as_nanos() as u64;
        self.fresh_at
            .is_none_or(|t| now.saturating_sub(t) > timeout)
    }

    /// An mDNS record: remember where the peer lives and greet it if it is new to us.
    fn on_discovered(&mut self, d: Discovered) -> Option<SocketAddr> {
        if !d.same_fleet(&self.me.fingerprint) || d.id == self.me.id {
            self.stats.foreign += 1;
            return None;
        }
        let ip = d
            .addrs
            .iter()
            .copied()
            .find(IpAddr::is_ipv4)
            .or_else(|| d.addrs.first().copied())?;
        let addr = SocketAddr::new(ip, d.port);
        self.mdns_peers.insert(d.id.clone(), addr);
        (!self.election.peers().contains_key(&d.id)).then_some(addr)
    }

    fn member(&self, id: &str, now: u64) -> Option<Member> {
        let s = self.seen.get(id)?;
        let e = self.election.peers().get(id)?;
        Some(Member {
            id: id.to_string(),
            addr: s.from.ip(),
            port: s.hb.port,
            sync_port: s.hb.sync_port,
            sntp_port: s.hb.sntp_port,
            priority: s.hb.priority,
            forced: s.hb.forced,
            has_tracks: s.hb.has_tracks,
            claims: e.claims,
            term: s.hb.term,
            role: s.hb.role,
            playback_error_ms: s.hb.playback_error_us.map(|us| f64::from(us) / 1000.0),
            version: s.hb.version.clone(),
            follows: s.hb.leader.clone(),
            last_heard_ns: e.last_heard_ns.min(now),
        })
    }

    fn myself(&self, now: u64) -> Member {
        let r = self.election.me();
        Member {
            id: self.me.id.clone(),
            addr: FleetView::SELF_ADDR,
            port: self.port,
            sync_port: self.me.sync_port,
            sntp_port: self.me.sntp_port,
            priority: r.priority,
            forced: r.forced,
            has_tracks: r.has_tracks,
            claims: self.election.is_leader(),
            term: self.election.term(),
            role: self.me.role,
            playback_error_ms: self.playback_error_ms,
            version: self.me.version.clone(),
            follows: self.election.leader().unwrap_or_default().to_string(),
            last_heard_ns: now,
        }
    }

    fn view(&self) -> FleetView {
        let now = mono_ns();
        let lookup = |id: &str| {
            if id == self.me.id {
                Some(self.myself(now))
            } else {
                self.member(id, now)
            }
        };
        let leader = self.election.leader().and_then(lookup);
        let peers: Vec<Member> = self
            .election
            .peers()
            .keys()
            .filter_map(|id| self.member(id, now))
            .collect();
        // Hierarchy among the live members that follow the same leader as we do.
        let (upstream, publishes) = if self.cfg.group_size == 0 || leader.is_none() {
            (
                leader.clone().filter(|_| !self.election.is_leader()),
                self.election.is_leader(),
            )
        } else {
            let mut ranks: Vec<Rank> = peers
                .iter()
                .filter(|m| {
                    leader
                        .as_ref()
                        .is_some_and(|l| m.follows == l.id || m.id == l.id)
                })
                .map(|m| Rank {
                    forced: m.forced,
                    priority: m.priority,
                    has_tracks: m.has_tracks,
                    id: m.id.clone(),
                })
                .collect();
            ranks.push(self.election.me().clone());
            let h = hierarchy(&ranks, self.cfg.group_size);
            match h.get(&self.me.id) {
                Some(p) => (p.upstream.as_deref().and_then(lookup), p.publishes),
                None => (None, false),
            }
        };
        FleetView {
            me: self.me.id.clone(),
            i_am_leader: self.election.is_leader(),
            term: self.election.term(),
            lamport: self.lamport.now(),
            leader,
            peers,
            upstream,
            publishes,
            stats: self.stats.clone(),
        }
    }
}

/// Sends `t`'s heartbeat when the election asked for one.
async fn act(t: &mut Task, sock: &UdpSocket, actions: &[Action]) -> bool {
    for a in actions {
        match a {
            Action::PeerJoined(id) => tracing::info!("fleet: {id} joined"),
            Action::PeerLeft(id) => tracing::info!("fleet: {id} left"),
            Action::LeaderChanged { leader, term } => {
                tracing::info!(
                    "fleet: leader {} (term {term})",
                    leader.as_deref().unwrap_or("none")
                )
            }
            Action::SendHeartbeat => {}
        }
    }
    if actions.contains(&Action::SendHeartbeat) {
        t.beat(sock, false, false).await;
    }
    !actions.is_empty()
}

async fn run(
    mut t: Task,
    sock: UdpSocket,
    mut rx: mpsc::Receiver<Cmd>,
    view: watch::Sender<FleetView>,
    mdns: Option<Mdns>,
) {
    let hb = t.cfg.heartbeat;
    let mut tick =
        tokio::time::interval((hb / 5).clamp(Duration::from_millis(10), Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_beat = tokio::time::Instant::now() + hb;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    // Hello: peers answer at once, so we learn the fleet without waiting an interval.
    t.beat(&sock, true, false).await;
    let mut done: Option<oneshot::Sender<()>> = None;
    loop {
        let changed = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let acts = t.on_datagram(&buf[..n], from);
                    act(&mut t, &sock, &acts).await;
                    // Peer details (playback error, ages) change with every heartbeat.
                    true
                }
                Err(e) => {
                    tracing::debug!("membership socket: {e}");
                    false
                }
            },
            _ = tick.tick() => {
                let acts = t.election.on_tick(mono_ns());
                let changed = act(&mut t, &sock, &acts).await;
                if tokio::time::Instant::now() >= next_beat {
                    next_beat += hb;
                    t.beat(&sock, false, false).await;
                }
                changed
            }
            c = rx.recv() => match c {
                None => break,
                Some(Cmd::Shutdown(reply)) => {
                    done = Some(reply);
                    break;
                }
                Some(Cmd::Role(role)) => {
                    t.me.role = role;
                    if let Some(m) = &mdns {
                        if let Err(e) = m.update(&advert(&t.me, t.port)) {
                            tracing::warn!("{e}");
                        }
                    }
                    t.beat(&sock, false, false).await;
                    true
                }
                Some(Cmd::PlaybackError(ms)) => {
                    t.playback_error_ms = ms;
                    false
                }
                Some(Cmd::Ready(ready)) => {
                    let acts = t.election.set_ready(ready, mono_ns());
                    act(&mut t, &sock, &acts).await
                }
                Some(Cmd::Force(on)) => {
                    let acts = t.election.set_forced(on, mono_ns());
                    act(&mut t, &sock, &acts).await
                }
                Some(Cmd::Priority(p)) => {
                    t.me.priority = p;
                    let acts = t.election.set_priority(p, mono_ns());
                    act(&mut t, &sock, &acts).await
                }
            },
            d = next_discovery(mdns.as_ref()) => match d {
                Some(Ok(d)) => {
                    if let Some(addr) = t.on_discovered(d) {
                        let hello = t.heartbeat(true, false);
                        t.send_to(&sock, &hello, &[addr]).await;
                    }
                    false
                }
                Some(Err(e)) => {
                    t.stats.foreign += 1;
                    tracing::debug!("{e}");
                    false
                }
                None => false,
            },
        };
        if changed {
            let v = t.view();
            view.send_if_modified(|old| {
                let differ = *old != v;
                if differ {
                    *old = v;
                }
                differ
            });
        }
    }
    // Goodbye: peers drop us at once instead of waiting for the timeout.
    t.beat(&sock, false, true).await;
    if let Some(m) = mdns {
        let _ = tokio::task::spawn_blocking(move || m.stop()).await;
    }
    if let Some(reply) = done {
        let _ = reply.send(());
    }
}

async fn next_discovery(
    m: Option<&Mdns>,
) -> Option<Result<Discovered, super::discovery::DiscoveryError>> {
    match m {
        Some(m) => match m.next().await {
            Some(r) => Some(r),
            // The daemon stopped: stay quiet instead of spinning.
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
