//! One Link peer's state machine, pure: fed datagrams and the host time (µs), it answers
//! with datagrams to send ([`Action`]). It keeps the peer table (each entry lives the ttl
//! its Alive carried, pruned a second after), answers every Alive with a Response and every
//! ping with a pong, measures a foreign session's ghost time with a ping chain (50 ms retry
//! timer, 5 retries over the measurement, median of > 100 samples) and joins it when the
//! session is older (ε = 500 ms, the lesser id breaking ties), adopts timelines with a
//! greater beat origin and start/stop states with a later timestamp, re-measures a joined
//! session every 30 s, founds a fresh session under a new node id when the last other
//! member is gone, and announces itself every 250 ms and on every change (at most every
//! 50 ms).

use std::net::{SocketAddr, SocketAddrV4};

use sha2::{Digest, Sha256};

use super::timeline::{GhostXform, OffsetFilter};
use super::wire::{
    answer_ping, decode_discovery, decode_measure, encode_discovery, encode_ping, Discovery, Kind,
    Measure, NodeId, PeerState, StartStop, Timeline,
};

/// Seconds an announcement stays valid.
pub const TTL_S: u8 = 5;
/// Alive period, µs (ttl / 20).
pub const ALIVE_PERIOD_US: i64 = 250_000;
/// Minimum spacing of announcements, µs.
pub const MIN_SPACING_US: i64 = 50_000;
/// Padding after a peer's deadline before it is pruned, µs.
pub const PRUNE_PAD_US: i64 = 1_000_000;
/// Ping retry timer, µs.
pub const RETRY_US: i64 = 50_000;
/// Retries per measurement.
pub const RETRIES: u8 = 5;
/// Re-measurement period of a joined session, µs.
pub const REMEASURE_US: i64 = 30_000_000;
/// Ghost times closer than this are a tie, broken by session id, µs.
pub const JOIN_EPSILON_US: i64 = 500_000;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// To the discovery group, from the unicast discovery socket.
    Multicast(Vec<u8>),
    /// To a peer's discovery socket, from ours.
    Discovery(SocketAddr, Vec<u8>),
    /// To a measurement endpoint, from our measurement socket.
    Measure(SocketAddr, Vec<u8>),
}

/// A peer heard on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its node id.
    pub node: NodeId,
    /// What it last said.
    pub state: PeerState,
    /// Host µs after which its state is stale.
    pub deadline: i64,
    /// Host µs at which it was last heard.
    pub heard: i64,
}

#[derive(Debug, Clone)]
struct Measuring {
    session: NodeId,
    target: SocketAddrV4,
    filter: OffsetFilter,
    retries: u8,
    timer: i64,
}

/// A session this peer has measured (and not joined, or left for an older one).
#[derive(Debug, Clone, Copy)]
struct Known {
    session: NodeId,
}

/// Counters worth showing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams dropped as malformed.
    pub malformed: u64,
    /// Measurements completed.
    pub measured: u64,
    /// Measurements failed.
    pub failed: u64,
    /// Sessions joined.
    pub joined: u64,
    /// Peers lost by timeout (no ByeBye).
    pub timed_out: u64,
}

/// One Link peer.
#[derive(Debug, Clone)]
pub struct Session {
    /// Our node id (changes when we found a fresh session after losing every peer).
    pub node: NodeId,
    /// The session we are in.
    pub session: NodeId,
    /// Its timeline.
    pub timeline: Timeline,
    /// Its start/stop state.
    pub start_stop: StartStop,
    /// Our host time → its ghost time.
    pub ghost: GhostXform,
    /// Who last set the timeline (our node id when we did).
    pub timeline_from: NodeId,
    /// Our measurement endpoint, announced.
    pub measure_ep: Option<SocketAddrV4>,
    /// Counters.
    pub counters: Counters,
    peers: Vec<Peer>,
    known: Vec<Known>,
    measuring: Option<Measuring>,
    next_alive: i64,
    last_sent: i64,
    dirty: bool,
    remeasure_at: Option<i64>,
    had_members: bool,
    /// No new foreign measurement before this host µs (one Alive period after a failure).
    hold_until: i64,
    seed: [u8; 32],
    ids: u64,
}

fn printable(d: &[u8]) -> NodeId {
    let mut id = [0u8; 8];
    for (o, b) in id.iter_mut().zip(d) {
        *o = 0x21 + b % 94;
    }
    id
}

impl Session {
    /// Enable Link at host time `now` with `bpm`: a fresh session of our own. `seed` makes
    /// the node ids (pass something random; tests pass constants).
    pub fn new(seed: &[u8], bpm: f64, now: i64) -> Session {
        let seed: [u8; 32] = Sha256::digest(seed).into();
        let node = printable(&seed);
        Session {
            node,
            session: node,
            timeline: Timeline::founding(bpm),
            start_stop: StartStop::default(),
            ghost: GhostXform::founding(now),
            timeline_from: node,
            measure_ep: None,
            counters: Counters::default(),
            peers: Vec::new(),
            known: Vec::new(),
            measuring: None,
            next_alive: now,
            last_sent: i64::MIN / 2,
            dirty: true,
            remeasure_at: None,
            had_members: false,
            hold_until: i64::MIN,
            seed,
            ids: 0,
        }
    }

    /// Peers we hear (whatever their session).
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Peers in our session.
    pub fn members(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.state.session == Some(self.session))
            .count()
    }

    /// The node ids of the peers in our session, sorted.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|p| p.state.session == Some(self.session))
            .map(|p| p.node)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Host µs at which a peer in our session was last heard (`None`: nobody is in it).
    pub fn last_heard(&self) -> Option<i64> {
        self.peers
            .iter()
            .filter(|p| p.state.session == Some(self.session))
            .map(|p| p.heard)
            .max()
    }

    /// A measurement is under way.
    pub fn measuring(&self) -> bool {
        self.measuring.is_some()
    }

    fn state(&self) -> PeerState {
        PeerState {
            timeline: Some(self.timeline),
            session: Some(self.session),
            start_stop: Some(self.start_stop),
            measure: self.measure_ep,
        }
    }

    fn message(&self, kind: Kind) -> Vec<u8> {
        encode_discovery(&Discovery {
            kind,
            ttl: if kind == Kind::ByeBye { 0 } else { TTL_S },
            node: self.node,
            state: self.state(),
        })
    }

    /// Our ByeBye (send it when leaving).
    pub fn byebye(&self) -> Vec<u8> {
        self.message(Kind::ByeBye)
    }

    /// A discovery datagram from `from` at host time `now`.
    pub fn on_discovery(&mut self, d: &[u8], from: SocketAddr, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let m = match decode_discovery(d) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return out;
            }
        };
        if m.node == self.node {
            return out;
        }
        match m.kind {
            Kind::ByeBye => {
                self.peers.retain(|p| p.node != m.node);
                self.after_loss(now);
            }
            Kind::Alive | Kind::Response => {
                if m.kind == Kind::Alive {
                    out.push(Action::Discovery(from, self.message(Kind::Response)));
                }
                let deadline = now + i64::from(m.ttl) * 1_000_000;
                match self.peers.iter_mut().find(|p| p.node == m.node) {
                    Some(p) => {
                        p.state = m.state;
                        p.deadline = deadline;
                        p.heard = now;
                    }
                    None => self.peers.push(Peer {
                        node: m.node,
                        state: m.state,
                        deadline,
                        heard: now,
                    }),
                }
                self.heard(&m, now, &mut out);
            }
        }
        out
    }

    fn heard(&mut self, m: &Discovery, now: i64, out: &mut Vec<Action>) {
        let Some(sess) = m.state.session else { return };
        if sess == self.session {
            self.had_members = true;
            if let Some(t) = m.state.timeline {
                if t.beat_origin > self.timeline.beat_origin {
                    self.timeline = t.clamped();
                    self.timeline_from = m.node;
                    self.dirty = true;
                }
            }
            if let Some(st) = m.state.start_stop {
                if st.timestamp > self.start_stop.timestamp {
                    self.start_stop = st;
                    self.dirty = true;
                }
            }
        } else if self.measuring.is_none()
            && now >= self.hold_until
            && !self.known.iter().any(|k| k.session == sess)
        {
            if let Some(target) = self.target(sess) {
                self.start_measuring(sess, target, now, out);
            }
        }
    }

    /// Whom to measure for `session`: its founder if we hear it, else any member.
    fn target(&self, session: NodeId) -> Option<SocketAddrV4> {
        let members = || {
            self.peers
                .iter()
                .filter(move |p| p.state.session == Some(session))
        };
        members()
            .find(|p| p.node == session)
            .or_else(|| members().next())
            .and_then(|p| p.state.measure)
    }

    fn start_measuring(
        &mut self,
        session: NodeId,
        target: SocketAddrV4,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        self.measuring = Some(Measuring {
            session,
            target,
            filter: OffsetFilter::default(),
            retries: 0,
            timer: now + RETRY_US,
        });
        out.push(Action::Measure(target.into(), encode_ping(now, None)));
    }

    /// A measurement datagram from `from` at host time `now`.
    pub fn on_measure(&mut self, d: &[u8], from: SocketAddr, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        match decode_measure(d) {
            Ok(Measure::Ping { .. }) => {
                if let Some(pong) = answer_ping(d, self.session, self.ghost.ghost(now)) {
                    out.push(Action::Measure(from, pong));
                }
            }
            Ok(Measure::Pong {
                session,
                ghost,
                host,
                prev_ghost,
            }) => {
                let Some(m) = self.measuring.as_mut() else {
                    return out;
                };
                if SocketAddr::from(m.target) != from {
                    return out;
                }
                if session != Some(m.session) {
                    self.fail(now);
                    return out;
                }
                m.filter.add(now, ghost, host, prev_ghost);
                m.timer = now + RETRY_US;
                match m.filter.result() {
                    Some(x) => {
                        let s = m.session;
                        self.measuring = None;
                        self.measured(s, x, now);
                    }
                    None => out.push(Action::Measure(from, encode_ping(now, Some(ghost)))),
                }
            }
            Err(_) => self.counters.malformed += 1,
        }
        out
    }

    fn fail(&mut self, now: i64) {
        self.counters.failed += 1;
        self.hold_until = now + ALIVE_PERIOD_US;
        if let Some(m) = self.measuring.take() {
            if m.session == self.session {
                self.remeasure_at = self.remeasure_at.map(|t| t + REMEASURE_US);
            }
        }
    }

    fn measured(&mut self, session: NodeId, x: GhostXform, now: i64) {
        self.counters.measured += 1;
        if session == self.session {
            self.ghost = x;
            self.remeasure_at = Some(now + REMEASURE_US);
            return;
        }
        let (g_cur, g_new) = (self.ghost.ghost(now), x.ghost(now));
        let join = g_new - g_cur > JOIN_EPSILON_US
            || ((g_new - g_cur).abs() < JOIN_EPSILON_US && session < self.session);
        self.known.retain(|k| k.session != session);
        if !join {
            self.known.push(Known { session });
            return;
        }
        self.known.push(Known {
            session: self.session,
        });
        self.known.retain(|k| k.session != session);
        self.session = session;
        self.ghost = x;
        self.counters.joined += 1;
        if let Some(p) = self
            .peers
            .iter()
            .filter(|p| p.state.session == Some(session))
            .filter(|p| p.state.timeline.is_some())
            .max_by_key(|p| p.state.timeline.map(|t| t.beat_origin))
        {
            self.timeline = p.state.timeline.unwrap_or(self.timeline).clamped();
            self.timeline_from = p.node;
        }
        self.start_stop = StartStop::default();
        for p in &self.peers {
            if p.state.session == Some(session) {
                if let Some(st) = p.state.start_stop {
                    if st.timestamp > self.start_stop.timestamp {
                        self.start_stop = st;
                    }
                }
            }
        }
        self.had_members = true;
        self.remeasure_at = Some(now + REMEASURE_US);
        self.dirty = true;
    }

    /// Time passes: prune, retry, re-measure, announce. Call every few ms.
    pub fn tick(&mut self, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let before = self.peers.len();
        self.peers.retain(|p| now < p.deadline + PRUNE_PAD_US);
        if self.peers.len() != before {
            self.counters.timed_out += (before - self.peers.len()) as u64;
            self.after_loss(now);
        }
        if let Some(m) = self.measuring.as_mut() {
            if now >= m.timer {
                if m.retries >= RETRIES {
                    self.fail(now);
                } else {
                    m.retries += 1;
                    m.timer = now + RETRY_US;
                    out.push(Action::Measure(m.target.into(), encode_ping(now, None)));
                }
            }
        }
        if self.measuring.is_none() && self.remeasure_at.is_some_and(|t| now >= t) {
            match self.target(self.session) {
                Some(target) => self.start_measuring(self.session, target, now, &mut out),
                None => self.remeasure_at = Some(now + REMEASURE_US),
            }
        }
        if self.measuring.is_none() && now >= self.hold_until {
            // A foreign session we heard while busy, or whose measurement failed.
            let foreign = self.peers.iter().find_map(|p| {
                p.state
                    .session
                    .filter(|s| *s != self.session && !self.known.iter().any(|k| k.session == *s))
            });
            if let Some(s) = foreign {
                if let Some(target) = self.target(s) {
                    self.start_measuring(s, target, now, &mut out);
                }
            }
        }
        if now >= self.next_alive || (self.dirty && now >= self.last_sent + MIN_SPACING_US) {
            out.push(Action::Multicast(self.message(Kind::Alive)));
            self.last_sent = now;
            self.next_alive = now + ALIVE_PERIOD_US;
            self.dirty = false;
        }
        out
    }

    /// After peers went: forget sessions nobody is in; if the last other member of ours
    /// is gone, found a fresh session that carries the beat on.
    fn after_loss(&mut self, now: i64) {
        let peers = &self.peers;
        self.known
            .retain(|k| peers.iter().any(|p| p.state.session == Some(k.session)));
        if self.had_members && self.members() == 0 {
            self.had_members = false;
            self.ids += 1;
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.ids.to_be_bytes());
            self.node = printable(&h.finalize());
            let beats = self.timeline.micro_beats_at(self.ghost.ghost(now));
            self.session = self.node;
            self.ghost = GhostXform::founding(now);
            self.timeline = Timeline {
                micros_per_beat: self.timeline.micros_per_beat,
                beat_origin: beats,
                time_origin: 0,
            };
            self.timeline_from = self.node;
            self.remeasure_at = None;
            self.measuring = None;
            self.dirty = true;
        }
    }

    /// Change the session's tempo at host time `now`, keeping the beat.
    pub fn set_tempo(&mut self, bpm: f64, now: i64) {
        self.timeline = self.timeline.with_tempo(bpm, self.ghost.ghost(now));
        self.timeline_from = self.node;
        self.dirty = true;
    }

    /// Publish `bpm` with beat `beat` (phase in `quantum`) heard at host time `at` (lead).
    pub fn set_beat(&mut self, bpm: f64, beat: f64, at: f64, quantum: f64) {
        let ghost = at + self.ghost.intercept as f64;
        self.timeline = self.timeline.anchored(bpm, beat, ghost, quantum);
        self.timeline_from = self.node;
        self.dirty = true;
    }

    /// Start or stop the session's transport at host time `now`.
    pub fn set_playing(&mut self, playing: bool, now: i64) {
        let ghost = self.ghost.ghost(now);
        self.start_stop = StartStop {
            playing,
            beats: self.timeline.micro_beats_at(ghost),
            timestamp: ghost.max(self.start_stop.timestamp + 1),
        };
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ep(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    /// Two pure peers wired back to back: deliver every action of one to the other.
    struct Pair {
        a: Session,
        b: Session,
    }

    const A_DISC: u16 = 1001;
    const A_MEAS: u16 = 1002;
    const B_DISC: u16 = 2001;
    const B_MEAS: u16 = 2002;

    impl Pair {
        fn new(a_at: i64, b_at: i64) -> Pair {
            let mut a = Session::new(b"a", 120.0, a_at);
            let mut b = Session::new(b"b", 90.0, b_at);
            a.measure_ep = Some(ep(A_MEAS));
            b.measure_ep = Some(ep(B_MEAS));
            Pair { a, b }
        }

        /// Run both for `us` µs of host time from `t`, 1 ms steps, instant delivery.
        fn run(&mut self, t: &mut i64, us: i64) {
            let end = *t + us;
            while *t < end {
                let mut q: Vec<(bool, Action)> = Vec::new();
                q.extend(self.a.tick(*t).into_iter().map(|x| (true, x)));
                q.extend(self.b.tick(*t).into_iter().map(|x| (false, x)));
                let mut n = 0;
                while let Some((from_a, act)) = q.pop() {
                    n += 1;
                    assert!(n < 10_000);
                    let (src_d, src_m) = if from_a {
                        (ep(A_DISC), ep(A_MEAS))
                    } else {
                        (ep(B_DISC), ep(B_MEAS))
                    };
                    let to = if from_a { &mut self.b } else { &mut self.a };
                    let more = match act {
                        Action::Multicast(d) | Action::Discovery(_, d) => {
                            to.on_discovery(&d, src_d.into(), *t)
                        }
                        Action::Measure(_, d) => to.on_measure(&d, src_m.into(), *t),
                    };
                    q.extend(more.into_iter().map(|x| (!from_a, x)));
                }
                *t += 1000;
            }
        }
    }

    #[test]
    fn a_newcomer_joins_the_older_session_and_shares_its_beat() {
        // A founded 10 s before B; host clocks differ by an arbitrary offset.
        let mut p = Pair::new(0, 10_000_000);
        let mut t = 10_001_000;
        p.run(&mut t, 1_000_000);
        assert_eq!(p.b.session, p.a.node);
        assert_eq!(p.a.session, p.a.node);
        assert_eq!(p.b.timeline, p.a.timeline);
        assert_eq!(p.b.ghost, p.a.ghost);
        assert_eq!((p.a.members(), p.b.members()), (1, 1));
        assert_eq!(
            (p.a.member_ids(), p.b.member_ids()),
            (vec![p.b.node], vec![p.a.node])
        );
        assert_eq!(p.b.counters.joined, 1);
        // Each heard the other within the last Alive period.
        for s in [&p.a, &p.b] {
            let heard = s.last_heard().expect("a member was heard");
            assert!(t - heard <= ALIVE_PERIOD_US + 1000, "{}", t - heard);
        }
        // B changes the tempo: A follows, with the beat continuous.
        let g = p.a.ghost.ghost(t);
        let before = p.a.timeline.beat_at(g as f64);
        p.b.set_tempo(140.0, t);
        p.run(&mut t, 100_000);
        assert!((p.a.timeline.bpm() - 140.0).abs() < 1e-3);
        assert!((p.a.timeline.beat_at(g as f64) - before).abs() < 1e-5);
        assert_eq!(p.a.timeline_from, p.b.node);
        // A starts the transport: B sees it.
        p.a.set_playing(true, t);
        p.run(&mut t, 100_000);
        assert!(p.b.start_stop.playing);
    }

    #[test]
    fn a_silent_peer_is_dropped_between_ttl_and_ttl_plus_one_and_the_survivor_refounds() {
        let mut p = Pair::new(0, 10_000_000);
        let mut t = 10_001_000;
        p.run(&mut t, 1_000_000);
        let old = p.b.node;
        let beat = p.b.timeline.beat_at(p.b.ghost.ghost(t) as f64);
        // A goes silent: B keeps it for ttl … ttl + 1 s.
        let last = t;
        let mut lost = None;
        while t < last + 8_000_000 {
            p.b.tick(t);
            if p.b.peers().is_empty() && lost.is_none() {
                lost = Some(t - last);
            }
            t += 10_000;
        }
        let lost = lost.expect("peer never dropped");
        assert!((5_000_000..=6_100_000).contains(&lost), "{lost}");
        assert_ne!(p.b.node, old);
        assert_eq!(p.b.session, p.b.node);
        // The beat carried on through the new session.
        let now = p.b.timeline.beat_at(p.b.ghost.ghost(t) as f64);
        assert!((now - beat - (t - last) as f64 / 1e6 * 2.0).abs() < 1e-3);
    }

    #[test]
    fn a_byebye_drops_the_peer_at_once() {
        let mut p = Pair::new(0, 10_000_000);
        let mut t = 10_001_000;
        p.run(&mut t, 1_000_000);
        let bye = p.a.byebye();
        assert_eq!(bye.len(), 20);
        p.b.on_discovery(&bye, ep(A_DISC).into(), t);
        assert!(p.b.peers().is_empty());
    }

    #[test]
    fn a_measurement_fails_after_five_retries() {
        let mut s = Session::new(b"s", 120.0, 0);
        let other = Session::new(b"o", 120.0, 0);
        let mut alive = other.clone();
        alive.measure_ep = Some(ep(9));
        let d = alive.message(Kind::Alive);
        let acts = s.on_discovery(&d, ep(8).into(), 0);
        assert!(matches!(acts[0], Action::Discovery(..)));
        assert!(matches!(acts[1], Action::Measure(..)));
        let mut pings = 1;
        let mut t = 0;
        while s.measuring() && t < 1_000_000 {
            t += 1000;
            pings += s
                .tick(t)
                .iter()
                .filter(|a| matches!(a, Action::Measure(..)))
                .count();
        }
        assert_eq!(pings, 6);
        assert_eq!(s.counters.failed, 1);
        assert!((299_000..=301_000).contains(&t), "{t}");
    }
}
