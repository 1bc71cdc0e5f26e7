//! From a decoded packet to node commands, scheduled bundles and QLab-style replies.
//!
//! [`Dispatcher::packet`] is called by every transport (UDP datagram, TCP frame of either
//! framing) with the sender as a [`Peer`]. For each message, in order, it asks
//! [`Guard::check_control`] (rate limit, source subnets, secret prefix; refusals are counted
//! there and get no reply, so a stranger learns nothing and floods are not amplified),
//! registers the sender for feedback, and resolves the address — a pattern such as
//! `/convoy/{play,stop}` selects every literal method it matches — into [`Call`]s. Messages
//! of a bundle whose timetag lies ahead go to the [`Scheduler`] as one job per timetag
//! (within `max_future`); everything else runs at once. Errors (unknown address, bad
//! arguments, a timetag too far ahead, a full scheduler) are answered at once.
//!
//! [`Executor::run`] performs calls: node commands go to [`NodeHandle::send`] with
//! [`Origin::Osc`], in order, without blocking (the scheduler thread calls it too); the
//! verdict is awaited on the runtime (up to `reply_timeout`) and answered as
//! `/reply/<address> {"address":…,"status":"ok"|"error",…}`. The server's own methods —
//! `/convoy/status` (the node's snapshot as `data`), `/convoy/subscribe [port:i [cookie:i]]`,
//! `/convoy/unsubscribe [port:i]` — are handled here without the node.
//!
//! No amplification to an address that has not proved it asked: a UDP sender is verified
//! when it cannot be spoofed from off-host (loopback), used the control secret, or is a
//! feedback client already; anything else gets no reply larger than its request. A
//! subscription starts only for a verified target: otherwise the node sends
//! `/convoy/cookie i` (24 bytes, never more than the request) to the target, and the
//! subscriber proves it receives there by echoing it, `/convoy/subscribe port cookie`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use serde_json::json;
use tokio::net::UdpSocket;

use super::codec::{self, Epoch};
use super::command::{self, Command, CommandParser, Request};
use super::feedback::{Clients, Peer};
use super::follow::{DawEvent, Follower, Ours};
use super::pattern::{has_wildcards, Pattern};
use super::schedule::Scheduler;
use crate::clock::TimeNow;
use crate::config::FollowMode;
use crate::control::{NodeHandle, Origin};
use crate::security::guard::Guard;

/// The server's own methods (handled without the node).
pub const LOCAL_METHODS: &[&str] = &[STATUS, SUBSCRIBE, UNSUBSCRIBE];
const STATUS: &str = "/convoy/status";
const SUBSCRIBE: &str = "/convoy/subscribe";
const UNSUBSCRIBE: &str = "/convoy/unsubscribe";
/// Sent to a subscription target that has not proved it receives there.
pub const COOKIE: &str = "/convoy/cookie";

/// What one resolved message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A node command.
    Node(Command),
    /// Node commands in order, answered once (`/convoy/color/xy`).
    Nodes(Vec<Command>),
    /// Seek to this fraction of the loaded track's length (`/convoy/seek/norm`).
    SeekFraction(f64),
    /// Reply with the node's snapshot.
    Status,
    /// Feedback to the sender, or to its host at this UDP port, with the cookie that
    /// target was sent (if echoed).
    Subscribe {
        /// The target's UDP port (`None`: the sender itself).
        port: Option<u16>,
        /// The echoed `/convoy/cookie`.
        cookie: Option<i32>,
    },
    /// Stop feedback to the sender, or to its host at this UDP port.
    Unsubscribe(Option<u16>),
    /// A DAW's transport report while following it (`osc.follow`).
    Follow(DawEvent),
    /// Answer this error.
    Fail(String),
}

/// One method call: the literal address it answers to and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Address for the reply (secret prefix stripped; the method, not the pattern).
    pub address: String,
    /// What to do.
    pub action: Action,
}

/// Calls from one sender to run together (one packet, or one timetag of a bundle).
#[derive(Debug, Clone)]
pub struct Job {
    /// Who sent them; replies go here.
    pub peer: Peer,
    /// In order.
    pub calls: Vec<Call>,
    /// How far the sender's address is to be believed.
    pub trust: Trust,
}

/// What the sender of a job proved about its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// Bytes of the datagram (or frame) that carried the job: the most an unverified UDP
    /// sender is sent back per reply.
    pub request_len: usize,
    /// Its source address cannot be forged from off-host (loopback) or it used the control
    /// secret: its own address is verified.
    pub trusted: bool,
}

/// Performs calls; shared by the transports and the timetag scheduler.
#[derive(Debug)]
pub struct Executor {
    /// The node.
    pub handle: NodeHandle,
    /// Feedback clients.
    pub clients: Arc<Clients>,
    /// The control UDP socket (subscriptions to another port are sent from it).
    pub udp: Arc<UdpSocket>,
    /// Where verdicts are awaited.
    pub rt: tokio::runtime::Handle,
    /// Answer accepted commands (`osc.reply`).
    pub reply: bool,
    /// Longest wait for a verdict.
    pub reply_timeout: Duration,
    /// The DAW being followed (`osc.follow`), if any.
    pub follow: Option<Mutex<Follower>>,
}

fn reply_msg(address: &str, body: serde_json::Value) -> OscMessage {
    command::reply(address, &body.to_string())
}

fn ok_body(address: &str) -> serde_json::Value {
    json!({"address": address, "status": "ok"})
}

fn error_body(address: &str, message: &str) -> serde_json::Value {
    json!({"address": address, "status": "error", "message": message})
}

impl Executor {
    /// Runs a job's calls in order.
    pub fn run(&self, job: Job) {
        let limit = self.reply_limit(&job.peer, job.trust);
        for call in job.calls {
            self.call(&job.peer, call, job.trust, limit);
        }
    }

    /// The largest reply `peer` may be sent: unlimited once its address is verified (a
    /// TCP connection, a trusted sender, a feedback client), else its request's size.
    fn reply_limit(&self, peer: &Peer, trust: Trust) -> Option<usize> {
        let verified =
            matches!(peer, Peer::Tcp { .. }) || trust.trusted || self.clients.listed(&peer.key());
        (!verified).then_some(trust.request_len)
    }

    fn answer(&self, peer: &Peer, address: &str, body: serde_json::Value, limit: Option<usize>) {
        if !peer.send_within(reply_msg(address, body), limit) {
            tracing::debug!(peer = %peer.addr(), address, "reply dropped (queue full, or larger than the request of an unverified sender)");
        }
    }

    fn call(&self, peer: &Peer, call: Call, trust: Trust, limit: Option<usize>) {
        let Call { address, action } = call;
        match action {
            Action::Node(cmd) => self.node(peer, address, vec![cmd], limit),
            Action::Nodes(cmds) => self.node(peer, address, cmds, limit),
            Action::SeekFraction(f) => {
                // The node's state now: a fader's 0..1 of the track that is loaded.
                let snap = self.handle.snapshot_now();
                match (snap.track.as_ref(), snap.duration_ms) {
                    (Some(_), Some(d)) if d > 0.0 => {
                        let cmd = Command::Seek { position_ms: f * d };
                        self.node(peer, address, vec![cmd], limit)
                    }
                    _ => {
                        let why = "nothing is playing: a 0..1 seek needs a loaded track's length";
                        self.answer(peer, &address, error_body(&address, why), limit)
                    }
                }
            }
            Action::Status => {
                let data =
                    serde_json::to_value(self.handle.snapshot()).unwrap_or(serde_json::Value::Null);
                let body = json!({"address": address, "status": "ok", "data": data});
                self.answer(peer, &address, body, limit);
            }
            Action::Subscribe { port, cookie } => {
                let target = self.target(peer, port);
                // Verified: a TCP connection, the trusted sender's own host, or the
                // target's cookie echoed.
                let verified = match &target {
                    Peer::Tcp { .. } => true,
                    Peer::Udp { addr, .. } => {
                        let own_host = addr.ip() == peer.addr().ip()
                            && (trust.trusted || matches!(peer, Peer::Tcp { .. }));
                        own_host || cookie == Some(self.clients.cookie(*addr))
                    }
                };
                if verified {
                    self.clients.subscribe(target, Instant::now());
                    let limit = self.reply_limit(peer, trust);
                    self.answer(peer, &address, ok_body(&address), limit);
                    return;
                }
                let to = target.addr();
                let proof = OscMessage {
                    addr: COOKIE.to_string(),
                    args: vec![OscType::Int(self.clients.cookie(to))],
                };
                target.send_within(proof, Some(trust.request_len));
                let why = format!(
                    "verify first: echo the {COOKIE} sent to {to} as {SUBSCRIBE} {} cookie",
                    port.unwrap_or(0)
                );
                self.answer(peer, &address, error_body(&address, &why), limit);
            }
            Action::Unsubscribe(port) => {
                self.clients.remove(&self.target(peer, port).key());
                self.answer(peer, &address, ok_body(&address), limit);
            }
            Action::Follow(ev) => self.follow(peer, ev),
            Action::Fail(message) => {
                self.answer(peer, &address, error_body(&address, &message), limit)
            }
        }
    }

    /// A DAW report: the follower turns it into commands, sent in order without replies
    /// (a DAW does not read them; the node logs what it refuses).
    pub fn follow(&self, peer: &Peer, ev: DawEvent) {
        let Some(follower) = &self.follow else { return };
        let snap = self.handle.snapshot_now();
        let ours = Ours {
            loaded: snap.track.is_some(),
            playing: snap.playing,
            position_ms: snap.position_ms,
        };
        let commands = follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .event(ev, crate::clock::mono_ns(), ours);
        let origin = Origin::Osc(peer.addr().to_string());
        for cmd in commands {
            tracing::debug!(?cmd, "following the DAW");
            if let Err(e) = self.handle.submit(cmd, origin.clone()) {
                tracing::warn!(peer = %peer.addr(), error = %e, "DAW follow command dropped");
            }
        }
    }

    /// The sender, or its host at `port` over UDP.
    fn target(&self, peer: &Peer, port: Option<u16>) -> Peer {
        match port {
            None => peer.clone(),
            Some(p) => Peer::Udp {
                socket: self.udp.clone(),
                addr: SocketAddr::new(peer.addr().ip(), p),
            },
        }
    }

    /// Sends `cmds` to the node in order and answers once: `ok` when every one was carried
    /// out, else the first refusal.
    fn node(&self, peer: &Peer, address: String, cmds: Vec<Command>, limit: Option<usize>) {
        let origin = Origin::Osc(peer.addr().to_string());
        if !self.reply {
            for cmd in cmds {
                if let Err(e) = self.handle.submit(cmd, origin.clone()) {
                    tracing::warn!(peer = %peer.addr(), %address, error = %e, "OSC command dropped");
                }
            }
            return;
        }
        let mut verdicts = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            match self.handle.send(cmd, origin.clone()) {
                Ok(v) => verdicts.push(v),
                Err(e) => {
                    self.answer(peer, &address, error_body(&address, &e.to_string()), limit);
                    return;
                }
            }
        }
        let peer = peer.clone();
        let wait = self.reply_timeout;
        self.rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + wait;
            let mut body = ok_body(&address);
            for verdict in verdicts {
                let why = match tokio::time::timeout_at(deadline, verdict).await {
                    Ok(Ok(Ok(()))) => continue,
                    Ok(Ok(Err(why))) => why.to_string(),
                    Ok(Err(_)) => "the node is not running".to_string(),
                    Err(_) => format!("no verdict from the node within {} ms", wait.as_millis()),
                };
                body = error_body(&address, &why);
                break;
            }
            peer.send_within(reply_msg(&address, body), limit);
        });
    }
}

/// Receives packets from every transport; see the module docs.
pub struct Dispatcher<C> {
    parser: CommandParser,
    /// Whose transport reports become [`Action::Follow`].
    follow: FollowMode,
    guard: Arc<Mutex<Guard>>,
    clock: C,
    exec: Arc<Executor>,
    scheduler: Scheduler<Job>,
    max_future_ns: u64,
}

impl<C> std::fmt::Debug for Dispatcher<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("scheduler", &self.scheduler)
            .field("max_future_ns", &self.max_future_ns)
            .finish_non_exhaustive()
    }
}

impl<C: TimeNow + Clone + Send + 'static> Dispatcher<C> {
    /// A dispatcher with its timetag scheduler thread running.
    pub fn new(
        guard: Arc<Mutex<Guard>>,
        clock: C,
        exec: Arc<Executor>,
        max_pending: usize,
        max_future: Duration,
    ) -> std::io::Result<Self> {
        let runner = exec.clone();
        let scheduler = Scheduler::spawn(clock.clone(), max_pending, move |job: Job, late| {
            if late > 2_000_000 {
                tracing::warn!(late_ms = late as f64 / 1e6, "timed OSC bundle ran late");
            }
            runner.run(job);
        })?;
        Ok(Self {
            parser: CommandParser::new(),
            follow: FollowMode::None,
            guard,
            clock,
            exec,
            scheduler,
            max_future_ns: u64::try_from(max_future.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// This dispatcher with `parser` (e.g. its `/panic` fade configured) and `follow`ing
    /// a DAW's reports.
    pub fn with(mut self, parser: CommandParser, follow: FollowMode) -> Self {
        self.parser = parser;
        self.follow = follow;
        self
    }

    /// Stops the scheduler; returns how many timed bundles were dropped.
    pub fn stop(&self) -> usize {
        self.scheduler.stop()
    }

    /// Handles one decoded packet from `peer`, `len` bytes on the wire.
    pub fn packet(&self, packet: OscPacket, peer: &Peer, len: usize) {
        let now = self.clock.now_ns();
        let trust = Trust {
            request_len: len,
            trusted: lock(&self.guard).control_trusted(peer.addr().ip()),
        };
        // Implicit feedback only for an address that proved itself.
        let heard = self.exec.reply_limit(peer, trust).is_none();
        let mut timed = Vec::new();
        flatten(packet, None, &mut timed);
        let mut immediate = Vec::new();
        let mut later: Vec<(u64, Vec<Call>)> = Vec::new();
        for (due, msg) in timed {
            let checked = {
                let mut guard = lock(&self.guard);
                // A followed DAW's transport reports: the policy, not the rate limit.
                let report = |a: &str| {
                    daw_event(self.follow, a, &msg.args).is_some()
                        || (self.follow == FollowMode::Reaper && REAPER_IGNORED.contains(&a))
                };
                match guard.control_policy_allows(peer.addr(), &msg.addr) {
                    Some(a) if report(a) => Ok(a.to_owned()),
                    _ => guard
                        .check_control(peer.addr(), &msg.addr, now)
                        .map(str::to_owned),
                }
            };
            let address = match checked {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "control message refused");
                    continue;
                }
            };
            if heard {
                self.exec.clients.touch(peer, Instant::now());
            }
            let calls = self.resolve(&address, msg.args);
            match due.filter(|&d| d > now) {
                None => immediate.extend(calls),
                Some(d) if d - now > self.max_future_ns => {
                    let ahead = (d - now) as f64 / 1e9;
                    let why = format!(
                        "timetag {ahead:.1} s ahead exceeds osc.max_future_s = {:.1}",
                        self.max_future_ns as f64 / 1e9
                    );
                    immediate.extend(calls.into_iter().map(|c| Call {
                        action: Action::Fail(why.clone()),
                        address: c.address,
                    }));
                }
                Some(d) => {
                    let (fails, ok): (Vec<Call>, Vec<Call>) = calls
                        .into_iter()
                        .partition(|c| matches!(c.action, Action::Fail(_)));
                    immediate.extend(fails);
                    match later.iter_mut().find(|(t, _)| *t == d) {
                        Some((_, v)) => v.extend(ok),
                        None => later.push((d, ok)),
                    }
                }
            }
        }
        if !immediate.is_empty() {
            self.exec.run(Job {
                peer: peer.clone(),
                calls: immediate,
                trust,
            });
        }
        for (due, calls) in later.into_iter().filter(|(_, c)| !c.is_empty()) {
            let job = Job {
                peer: peer.clone(),
                calls,
                trust,
            };
            if let Err(job) = self.scheduler.schedule(due, job) {
                let why = "too many timed bundles pending (osc.max_pending)";
                let calls = job
                    .calls
                    .into_iter()
                    .map(|c| Call {
                        action: Action::Fail(why.into()),
                        address: c.address,
                    })
                    .collect();
                self.exec.run(Job {
                    peer: peer.clone(),
                    calls,
                    trust,
                });
            }
        }
    }

    /// A packet of `len` bytes over the `max` byte limit (never decoded): an error reply
    /// naming the limit, on `address` (its first message's, when readable), to a sender the
    /// control policy allows and whose address is verified; anyone else gets nothing, as
    /// for any refused message.
    pub fn oversized(&self, peer: &Peer, address: &str, len: usize, max: usize) {
        let now = self.clock.now_ns();
        let trust = Trust {
            request_len: len,
            trusted: lock(&self.guard).control_trusted(peer.addr().ip()),
        };
        let checked = lock(&self.guard)
            .check_control(peer.addr(), address, now)
            .map(str::to_owned);
        let Ok(address) = checked else { return };
        if self.exec.reply_limit(peer, trust).is_some() {
            return;
        }
        let why = format!("OSC packet of {len} bytes exceeds osc.max_packet = {max} bytes");
        self.exec
            .answer(peer, &address, error_body(&address, &why), None);
    }

    /// The calls an address selects (a pattern may select several, or none: an error).
    pub fn resolve(&self, address: &str, args: Vec<OscType>) -> Vec<Call> {
        if !has_wildcards(address) || command::cue_segment(address).is_some() {
            return self.literal(address, args).into_iter().collect();
        }
        let methods = Pattern::compile(address).and_then(|p| {
            let mut m: Vec<&str> = LOCAL_METHODS
                .iter()
                .copied()
                .filter(|l| p.matches(l))
                .collect();
            m.extend(self.parser.matching_methods(address)?);
            Ok(m)
        });
        match methods {
            Ok(m) if !m.is_empty() => m
                .into_iter()
                .filter_map(|m| self.literal(m, args.clone()))
                .collect(),
            Ok(_) => vec![fail(address, format!("no method matches {address:?}"))],
            Err(e) => vec![fail(
                address,
                format!("bad address pattern {address:?}: {e}"),
            )],
        }
    }

    /// One literal method; `None` for a button release (nothing to do, no reply).
    fn literal(&self, address: &str, args: Vec<OscType>) -> Option<Call> {
        let action = match address {
            STATUS => Action::Status,
            SUBSCRIBE | UNSUBSCRIBE => {
                let (port, cookie) = match args.as_slice() {
                    [] => (None, None),
                    [OscType::Int(p)] if (1..=65_535).contains(p) => (Some(*p as u16), None),
                    // A TouchOSC button: 1 pressed (this address), 0 released.
                    [OscType::Float(v)] if *v == 0.0 => return None,
                    [OscType::Float(v)] if *v == 1.0 => (None, None),
                    // TouchOSC sends every number as a float, ports too.
                    [p @ OscType::Float(_)] => match whole(p) {
                        Some(p @ 2..=65_535) => (Some(p as u16), None),
                        _ => {
                            return Some(fail(
                                address,
                                format!("{address}: expected [port:i|f] with port 1..=65535"),
                            ))
                        }
                    },
                    [p, c] if address == SUBSCRIBE => match (whole(p), whole(c)) {
                        // Port 0: the sender's own address.
                        (Some(0), Some(c)) => (None, Some(c as i32)),
                        (Some(p), Some(c)) if p <= 65_535 => (Some(p as u16), Some(c as i32)),
                        _ => {
                            return Some(fail(
                                address,
                                format!("{address}: expected port:i (0..=65535) cookie:i"),
                            ))
                        }
                    },
                    _ => {
                        return Some(fail(
                            address,
                            format!("{address}: expected [port:i|f] with port 1..=65535"),
                        ))
                    }
                };
                if address == SUBSCRIBE {
                    Action::Subscribe { port, cookie }
                } else {
                    Action::Unsubscribe(port)
                }
            }
            // Reaper's other transport feedback (Default.ReaperOSC): nothing to follow.
            _ if self.follow == FollowMode::Reaper && REAPER_IGNORED.contains(&address) => {
                return None
            }
            _ if daw_event(self.follow, address, &args).is_some() => {
                match daw_event(self.follow, address, &args) {
                    Some(Ok(ev)) => Action::Follow(ev),
                    Some(Err(why)) => Action::Fail(why),
                    None => return None,
                }
            }
            _ => match self.parser.parse_request(&OscMessage {
                addr: address.to_string(),
                args,
            }) {
                Ok(Request::Node(Command::Release { .. })) => return None,
                Ok(Request::Node(cmd)) => Action::Node(cmd),
                Ok(Request::Nodes(cmds)) => Action::Nodes(cmds),
                Ok(Request::SeekFraction(f)) => Action::SeekFraction(f),
                Err(e) => Action::Fail(e.to_string()),
            },
        };
        Some(Call {
            address: address.to_string(),
            action,
        })
    }
}

/// Transport feedback of Reaper's default pattern (`Default.ReaperOSC`: TIME, SAMPLES,
/// FRAMES, TEMPO, PLAY_RATE, METRONOME, REPEAT, REPLACE) that a follower does not need:
/// dropped without a reply while following Reaper, so Reaper is not sent errors.
const REAPER_IGNORED: &[&str] = &[
    "/time/str",
    "/samples",
    "/samples/str",
    "/frames/str",
    "/tempo",
    "/tempo/rotary",
    "/tempo/str",
    "/playrate",
    "/playrate/raw",
    "/playrate/rotary",
    "/playrate/str",
    "/click",
    "/repeat",
    "/replace",
];

/// A DAW transport report while following `mode`: `None` when the address is not one
/// (it is then an ordinary command), else the event or why its arguments do not fit.
/// Addresses and types: Reaper's `Default.ReaperOSC` (`t` toggles as a float state,
/// `f` time and tempo, `s` beat string), AbletonOSC's listener replies
/// (`/live/song/get/{is_playing,beat,tempo}`, the value after any leading ids).
fn daw_event(
    mode: FollowMode,
    address: &str,
    args: &[OscType],
) -> Option<Result<DawEvent, String>> {
    let num = |a: &OscType| match *a {
        OscType::Int(i) => Some(f64::from(i)),
        OscType::Float(f) => Some(f64::from(f)),
        OscType::Double(d) => Some(d),
        OscType::Long(l) => Some(l as f64),
        OscType::Bool(b) => Some(f64::from(u8::from(b))),
        _ => None,
    };
    // A toggle's state: none (a bare trigger) is on.
    let state = |args: &[OscType]| match args {
        [] => Some(true),
        [a] => num(a).map(|v| v != 0.0),
        _ => None,
    };
    let last_num = |args: &[OscType]| args.last().and_then(num);
    let bad = |sig: &str| Err(format!("{address}: expected {sig}"));
    let ev = match (mode, address) {
        (FollowMode::Reaper, "/play") => state(args).map(DawEvent::Play).ok_or(()),
        (FollowMode::Reaper, "/pause") => state(args).map(DawEvent::Pause).ok_or(()),
        (FollowMode::Reaper, "/stop") => state(args).map(DawEvent::Stop).ok_or(()),
        (FollowMode::Reaper, "/record") => state(args).map(DawEvent::Record).ok_or(()),
        (FollowMode::Reaper, "/time") => last_num(args).map(DawEvent::Time).ok_or(()),
        (FollowMode::Reaper, "/tempo/raw") => last_num(args).map(DawEvent::Tempo).ok_or(()),
        (FollowMode::Reaper, "/beat/str") => match args {
            [OscType::String(s)] => Ok(DawEvent::BeatString(s.clone())),
            _ => Err(()),
        },
        (FollowMode::Ableton, "/live/song/get/is_playing") => last_num(args)
            .map(|v| DawEvent::IsPlaying(v != 0.0))
            .ok_or(()),
        (FollowMode::Ableton, "/live/song/get/beat") => {
            last_num(args).map(DawEvent::Beat).ok_or(())
        }
        (FollowMode::Ableton, "/live/song/get/tempo") => {
            last_num(args).map(DawEvent::Tempo).ok_or(())
        }
        _ => return None,
    };
    Some(ev.or_else(|()| bad("one number (or a string for /beat/str)")))
}

/// A non-negative whole number below 2^24 sent as an int or a float (TouchOSC sends
/// floats; 2^24 is where floats stop being exact).
fn whole(v: &OscType) -> Option<u32> {
    match *v {
        OscType::Int(i) => u32::try_from(i).ok().filter(|&i| i < 1 << 24),
        OscType::Float(f) if f.fract() == 0.0 && (0.0..16_777_216.0).contains(&f) => Some(f as u32),
        _ => None,
    }
}

fn fail(address: &str, message: String) -> Call {
    Call {
        address: address.to_string(),
        action: Action::Fail(message),
    }
}

fn lock(g: &Mutex<Guard>) -> std::sync::MutexGuard<'_, Guard> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Messages in order with their due fleet time (`None`: immediately). A nested bundle runs
/// no earlier than the one containing it (OSC 1.0).
fn flatten(p: OscPacket, due: Option<u64>, out: &mut Vec<(Option<u64>, OscMessage)>) {
    match p {
        OscPacket::Message(m) => out.push((due, m)),
        OscPacket::Bundle(b) => {
            let own = codec::nanos_from_timetag(b.timetag, Epoch::UNIX);
            let due = match (due, own) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            for c in b.content {
                flatten(c, due, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osc::codec::{OscBundle, OscTime, IMMEDIATE};

    fn m(addr: &str) -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: addr.into(),
            args: vec![],
        })
    }

    #[test]
    fn nested_bundles_never_run_before_their_parent() {
        let at = |s: u64| codec::timetag_from_nanos(s * 1_000_000_000, Epoch::UNIX).unwrap();
        let p = OscPacket::Bundle(OscBundle {
            timetag: at(100),
            content: vec![
                m("/a"),
                OscPacket::Bundle(OscBundle {
                    timetag: at(50),
                    content: vec![m("/b")],
                }),
                OscPacket::Bundle(OscBundle {
                    timetag: at(200),
                    content: vec![m("/c")],
                }),
                OscPacket::Bundle(OscBundle {
                    timetag: IMMEDIATE,
                    content: vec![m("/d")],
                }),
            ],
        });
        let mut out = Vec::new();
        flatten(p, None, &mut out);
        let got: Vec<(Option<u64>, &str)> =
            out.iter().map(|(d, m)| (*d, m.addr.as_str())).collect();
        let s = |x: u64| Some(x * 1_000_000_000);
        assert_eq!(
            got,
            vec![
                (s(100), "/a"),
                (s(100), "/b"),
                (s(200), "/c"),
                (s(100), "/d")
            ]
        );
        let mut out = Vec::new();
        flatten(
            OscPacket::Bundle(OscBundle {
                timetag: OscTime {
                    seconds: 0,
                    fractional: 1,
                },
                content: vec![m("/e")],
            }),
            None,
            &mut out,
        );
        assert_eq!(out[0].0, None);
    }
}
