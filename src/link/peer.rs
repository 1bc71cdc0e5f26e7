//! The thin socket layer: three UDP sockets on one IPv4 gateway (the discovery group
//! `224.76.78.75:20808` joined with address reuse, so several Link processes share a host;
//! an ephemeral unicast socket that sends every discovery datagram and takes Responses; an
//! ephemeral measurement socket, announced as `mep4`), one tokio task that feeds them and a
//! 5 ms tick to the pure [`Session`], and a [`LinkPeer`] handle: requests in over a channel,
//! the session's state out on a watch channel. Host time is the monotonic clock
//! (`clock::link`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::session::{Action, Counters, Session};
use super::wire::{NodeId, StartStop, GROUP, MAX_MESSAGE, PORT};
use super::LinkError;
use crate::clock::link::{host_us_now, mono_of_host_us, LinkTime};

/// The three sockets of one gateway, bound.
#[derive(Debug)]
pub struct LinkSockets {
    multicast: std::net::UdpSocket,
    unicast: std::net::UdpSocket,
    measure: std::net::UdpSocket,
    /// The gateway's address, announced with the measurement port.
    pub address: Ipv4Addr,
}

fn udp(e: std::io::Error, what: &'static str) -> LinkError {
    LinkError::Bind { what, source: e }
}

/// The address this host sends multicast from (the route to the group decides), or
/// loopback when there is none.
fn gateway_address() -> Ipv4Addr {
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((GROUP, PORT))?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a {
            SocketAddr::V4(v) if !v.ip().is_unspecified() => Some(*v.ip()),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

impl LinkSockets {
    /// Bind on the gateway with address `address` (`0.0.0.0`: the one the route to the
    /// discovery group goes out of).
    pub fn bind(address: Ipv4Addr) -> Result<LinkSockets, LinkError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let address = if address.is_unspecified() {
            gateway_address()
        } else {
            address
        };
        let mc = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| udp(e, "discovery"))?;
        mc.set_reuse_address(true)
            .map_err(|e| udp(e, "discovery"))?;
        mc.set_reuse_port(true).map_err(|e| udp(e, "discovery"))?;
        mc.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())
            .map_err(|e| udp(e, "discovery"))?;
        mc.join_multicast_v4(&GROUP, &address)
            .map_err(|e| udp(e, "discovery group"))?;
        mc.set_nonblocking(true).map_err(|e| udp(e, "discovery"))?;
        let uc = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| udp(e, "unicast"))?;
        uc.bind(&SocketAddr::from((address, 0)).into())
            .or_else(|_| uc.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into()))
            .map_err(|e| udp(e, "unicast"))?;
        uc.set_multicast_if_v4(&address)
            .map_err(|e| udp(e, "unicast"))?;
        // Peers on this host hear us (our own datagrams are dropped by node id).
        uc.set_multicast_loop_v4(true)
            .map_err(|e| udp(e, "unicast"))?;
        uc.set_nonblocking(true).map_err(|e| udp(e, "unicast"))?;
        let ms = std::net::UdpSocket::bind((address, 0))
            .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .map_err(|e| udp(e, "measurement"))?;
        ms.set_nonblocking(true)
            .map_err(|e| udp(e, "measurement"))?;
        Ok(LinkSockets {
            multicast: mc.into(),
            unicast: uc.into(),
            measure: ms,
            address,
        })
    }
}

/// What the session looks like now (published on every change).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkStatus {
    /// Our node id.
    pub node: NodeId,
    /// The session we are in (its founder's id).
    pub session: NodeId,
    /// Peers in our session (not counting us).
    pub peers: usize,
    /// Their node ids, sorted.
    pub peer_ids: Vec<NodeId>,
    /// Peers heard in any session.
    pub heard: usize,
    /// The session's timeline and our view of its ghost time.
    pub time: LinkTime,
    /// The session's transport.
    pub start_stop: StartStop,
    /// Who last set the timeline.
    pub tempo_from: NodeId,
    /// Monotonic ns at which a peer in our session was last heard (`None`: nobody is in
    /// it).
    pub last_heard_ns: Option<u64>,
    /// Counters.
    pub counters: Counters,
}

impl LinkStatus {
    /// We set the session's tempo and phase last.
    pub fn leads(&self) -> bool {
        self.tempo_from == self.node
    }

    /// We founded the session.
    pub fn founded(&self) -> bool {
        self.session == self.node
    }
}

/// Printable form of a node id.
pub fn show_id(id: &NodeId) -> String {
    id.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

#[derive(Debug)]
enum Request {
    Tempo(f64),
    Beat {
        bpm: f64,
        beat: f64,
        at_mono_ns: u64,
        quantum: f64,
    },
    Playing(bool),
}

/// Changes to the session, sent to a running peer (dropped when its queue is full).
#[derive(Debug, Clone)]
pub struct LinkControl {
    requests: mpsc::Sender<Request>,
}

impl LinkControl {
    /// Change the session's tempo now, keeping the beat.
    pub fn set_tempo(&self, bpm: f64) {
        let _ = self.requests.try_send(Request::Tempo(bpm));
    }

    /// Publish the music's tempo and beat: `beat` (its phase in `quantum`) is heard at
    /// monotonic `at_mono_ns`.
    pub fn set_beat(&self, bpm: f64, beat: f64, at_mono_ns: u64, quantum: f64) {
        let _ = self.requests.try_send(Request::Beat {
            bpm,
            beat,
            at_mono_ns,
            quantum,
        });
    }

    /// Start or stop the session's transport now.
    pub fn set_playing(&self, playing: bool) {
        let _ = self.requests.try_send(Request::Playing(playing));
    }
}

/// A running Link peer.
#[derive(Debug)]
pub struct LinkPeer {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<LinkStatus>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LinkPeer {
    /// Join the network on `sockets` with tempo `bpm` (our own session until we hear an
    /// older one). Must be called inside a tokio runtime.
    pub fn spawn(sockets: LinkSockets, bpm: f64) -> Result<LinkPeer, LinkError> {
        let conv = |s: std::net::UdpSocket, what| UdpSocket::from_std(s).map_err(|e| udp(e, what));
        let mc = conv(sockets.multicast, "discovery")?;
        let uc = conv(sockets.unicast, "unicast")?;
        let ms = conv(sockets.measure, "measurement")?;
        let now = host_us_now();
        let seed = format!(
            "{}:{}:{}:{:?}",
            crate::clock::realtime_ns(),
            std::process::id(),
            crate::clock::mono_ns(),
            ms.local_addr().ok()
        );
        let mut session = Session::new(seed.as_bytes(), bpm, now);
        if let Ok(SocketAddr::V4(a)) = ms.local_addr() {
            session.measure_ep = Some(SocketAddrV4::new(sockets.address, a.port()));
        }
        let (tx, rx) = mpsc::channel(32);
        let (status_tx, status) = watch::channel(status_of(&session));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(session, mc, uc, ms, rx, status_tx, stop_rx));
        Ok(LinkPeer {
            requests: tx,
            status,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The session now.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// The session, on a watch channel.
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// A handle that changes the session (for tasks beside the owner).
    pub fn control(&self) -> LinkControl {
        LinkControl {
            requests: self.requests.clone(),
        }
    }

    /// Change the session's tempo now, keeping the beat.
    pub fn set_tempo(&self, bpm: f64) {
        let _ = self.control().requests.try_send(Request::Tempo(bpm));
    }

    /// Publish the music's tempo and beat: `beat` (its phase in `quantum`) is heard at
    /// monotonic `at_mono_ns`.
    pub fn set_beat(&self, bpm: f64, beat: f64, at_mono_ns: u64, quantum: f64) {
        let _ = self.control().requests.try_send(Request::Beat {
            bpm,
            beat,
            at_mono_ns,
            quantum,
        });
    }

    /// Start or stop the session's transport now.
    pub fn set_playing(&self, playing: bool) {
        let _ = self.control().requests.try_send(Request::Playing(playing));
    }

    /// Leave: send our ByeBye and stop.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for LinkPeer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn status_of(s: &Session) -> LinkStatus {
    LinkStatus {
        node: s.node,
        session: s.session,
        peers: s.members(),
        peer_ids: s.member_ids(),
        heard: s.peers().len(),
        time: LinkTime {
            timeline: s.timeline,
            ghost: s.ghost,
        },
        start_stop: s.start_stop,
        tempo_from: s.timeline_from,
        last_heard_ns: s.last_heard().map(mono_of_host_us),
        counters: s.counters,
    }
}

async fn send(uc: &UdpSocket, ms: &UdpSocket, actions: Vec<Action>) {
    for a in actions {
        let r = match a {
            Action::Multicast(d) => uc.send_to(&d, (GROUP, PORT)).await,
            Action::Discovery(to, d) => uc.send_to(&d, to).await,
            Action::Measure(to, d) => ms.send_to(&d, to).await,
        };
        if let Err(e) = r {
            tracing::debug!("link: send failed: {e}");
        }
    }
}

async fn run(
    mut session: Session,
    mc: UdpSocket,
    uc: UdpSocket,
    ms: UdpSocket,
    mut requests: mpsc::Receiver<Request>,
    status: watch::Sender<LinkStatus>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut b1, mut b2, mut b3) = ([0u8; MAX_MESSAGE], [0u8; MAX_MESSAGE], [0u8; MAX_MESSAGE]);
    loop {
        let actions = tokio::select! {
            _ = &mut stop => break,
            r = mc.recv_from(&mut b1) => match r {
                Ok((n, from)) => session.on_discovery(&b1[..n], from, host_us_now()),
                Err(_) => Vec::new(),
            },
            r = uc.recv_from(&mut b2) => match r {
                Ok((n, from)) => session.on_discovery(&b2[..n], from, host_us_now()),
                Err(_) => Vec::new(),
            },
            r = ms.recv_from(&mut b3) => match r {
                Ok((n, from)) => session.on_measure(&b3[..n], from, host_us_now()),
                Err(_) => Vec::new(),
            },
            r = requests.recv() => {
                let now = host_us_now();
                match r {
                    Some(Request::Tempo(bpm)) => session.set_tempo(bpm, now),
                    Some(Request::Beat { bpm, beat, at_mono_ns, quantum }) => {
                        session.set_beat(bpm, beat, crate::clock::link::host_us(at_mono_ns), quantum)
                    }
                    Some(Request::Playing(p)) => session.set_playing(p, now),
                    None => break,
                }
                session.tick(now)
            }
            _ = tick.tick() => session.tick(host_us_now()),
        };
        send(&uc, &ms, actions).await;
        let next = status_of(&session);
        status.send_if_modified(|s| {
            if *s == next {
                false
            } else {
                *s = next;
                true
            }
        });
    }
    let _ = uc.send_to(&session.byebye(), (GROUP, PORT)).await;
}
