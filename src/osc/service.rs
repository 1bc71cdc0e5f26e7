//! The OSC control service: sockets and tasks around the [`Dispatcher`].
//!
//! [`serve`] binds UDP on `osc.bind:osc.port` and, with `osc.tcp`, TCP on the same port,
//! then runs: the UDP receive loop; the TCP accept loop (at most `max_tcp_clients`
//! connections, each with a reader that detects or is told its framing — OSC 1.0 int32
//! length prefix or OSC 1.1 SLIP — and a writer that frames replies and feedback the same
//! way); the feedback task; the outbound task when destinations are configured; and the
//! WLED audio-sync sender when enabled. Outbound OSC and WLED packets leave from the control
//! socket, so a DAW or visuals tool can answer to the port it hears from. Malformed
//! datagrams and frames are dropped and counted under `malformed` in the guard's stats; a
//! desynchronised length-prefixed stream (negative length) is closed. [`OscService`] holds
//! the bound addresses; dropping it or calling [`OscService::shutdown`] stops everything.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rosc::OscPacket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::codec::{self, DecodeLimits, FrameError, LengthPrefixDecoder, SlipDecoder};
use super::command::CommandParser;
use super::dispatch::{Dispatcher, Executor};
use super::feedback::{self, ClientKey, ClientLimits, Clients, Peer};
use super::follow::{FollowConfig, Follower};
use super::{outbound, wled};
use crate::clock::TimeNow;
use crate::config::{FollowMode, OscConfig, TcpFraming};
use crate::control::NodeHandle;
use crate::security::guard::Guard;
use crate::security::stats::RejectReason;

/// Why the OSC service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be bound (port in use, address not local…).
    #[error("osc: cannot bind {what} on {addr}: {source}")]
    Bind {
        /// `UDP` or `TCP`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting is unusable (normally caught by config validation first).
    #[error("osc.{key}: {message}")]
    Config {
        /// Key under `[osc]`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The timetag scheduler thread could not start.
    #[error("osc: cannot start the timetag scheduler thread: {0}")]
    Thread(std::io::Error),
}

/// A running OSC service. Dropping it stops every task and the scheduler thread.
pub struct OscService {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    clients: Arc<Clients>,
    tasks: Vec<JoinHandle<()>>,
    stop_scheduler: Box<dyn Fn() -> usize + Send + Sync>,
}

impl std::fmt::Debug for OscService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OscService")
            .field("udp_addr", &self.udp_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl OscService {
    /// The bound UDP address (the actual port when `osc.port` was 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP address, when TCP is on (same port as UDP).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Clients currently receiving feedback.
    pub fn feedback_clients(&self) -> usize {
        self.clients.len()
    }

    /// Stops every task and the scheduler; returns how many timed bundles were dropped.
    pub async fn shutdown(mut self) -> usize {
        for t in &self.tasks {
            t.abort();
        }
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        (self.stop_scheduler)()
    }
}

impl Drop for OscService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        (self.stop_scheduler)();
    }
}

fn config_err(key: &'static str, message: impl Into<String>) -> ServeError {
    ServeError::Config {
        key,
        message: message.into(),
    }
}

/// Starts the OSC control service (the caller checks `osc.enabled`). Must run inside a
/// tokio runtime. `clock` is the fleet clock bundle timetags are read on (Unix-epoch ns).
/// A followed DAW's starts are assumed heard 300 ms after they are asked (the default
/// `sync.start_lead_ms`); the node says its own with [`serve_with`].
pub async fn serve<C>(
    cfg: &OscConfig,
    handle: NodeHandle,
    guard: Arc<Mutex<Guard>>,
    clock: C,
) -> Result<OscService, ServeError>
where
    C: TimeNow + Clone + Send + Sync + 'static,
{
    serve_with(cfg, handle, guard, clock, FollowConfig::default().lead_ms).await
}

/// [`serve`] with the node's `sync.start_lead_ms` (`lead_ms`): how long after a start or a
/// seek while playing it is heard, which DAW follow aims ahead by.
pub async fn serve_with<C>(
    cfg: &OscConfig,
    handle: NodeHandle,
    guard: Arc<Mutex<Guard>>,
    clock: C,
    lead_ms: f64,
) -> Result<OscService, ServeError>
where
    C: TimeNow + Clone + Send + Sync + 'static,
{
    let ip: IpAddr = cfg
        .bind
        .parse()
        .map_err(|_| config_err("bind", format!("{:?} is not an IP address", cfg.bind)))?;
    let (udp, listener) = bind_pair(ip, cfg.port, cfg.tcp).await?;
    let udp_addr = udp.local_addr().map_err(|source| ServeError::Bind {
        what: "UDP",
        addr: SocketAddr::new(ip, cfg.port),
        source,
    })?;
    let same_family = |a: &SocketAddr| a.is_ipv4() == udp_addr.is_ipv4();
    let mut dests = Vec::new();
    for d in &cfg.outbound {
        let a: SocketAddr = d
            .parse()
            .map_err(|_| config_err("outbound", format!("{d:?} is not an ip:port")))?;
        if !same_family(&a) {
            return Err(config_err(
                "outbound",
                format!("{a} is not reachable from the control socket {udp_addr}"),
            ));
        }
        dests.push(a);
    }
    let wled_dest: Option<SocketAddr> = if cfg.wled.enabled {
        let d = &cfg.wled.destination;
        let a: SocketAddr = d
            .parse()
            .map_err(|_| config_err("wled.destination", format!("{d:?} is not an ip:port")))?;
        if !same_family(&a) {
            return Err(config_err(
                "wled.destination",
                format!("{a} is not reachable from the control socket {udp_addr}"),
            ));
        }
        if a.ip().is_multicast() && a.is_ipv4() {
            udp.set_multicast_ttl_v4(cfg.wled.multicast_ttl)
                .map_err(|e| config_err("wled.multicast_ttl", e.to_string()))?;
        }
        Some(a)
    } else {
        None
    };
    let tcp_addr = listener.as_ref().and_then(|l| l.local_addr().ok());

    let udp = Arc::new(udp);
    let clients = Arc::new(Clients::new(ClientLimits {
        implicit: cfg.feedback,
        idle: Duration::from_secs_f64(cfg.feedback_idle_s),
        ttl: Duration::from_secs_f64(cfg.subscribe_ttl_s),
        max: cfg.max_clients as usize,
    }));
    let exec = Arc::new(Executor {
        handle: handle.clone(),
        clients: clients.clone(),
        udp: udp.clone(),
        rt: tokio::runtime::Handle::current(),
        reply: cfg.reply,
        reply_timeout: Duration::from_millis(cfg.reply_timeout_ms),
        follow: (cfg.follow != FollowMode::None).then(|| {
            Mutex::new(Follower::new(FollowConfig {
                seek_ms: cfg.follow_seek_ms,
                lead_ms,
                ..FollowConfig::default()
            }))
        }),
    });
    let ableton = match cfg.follow {
        FollowMode::Ableton => {
            let host: IpAddr = cfg.ableton_host.parse().map_err(|_| {
                config_err(
                    "ableton_host",
                    format!("{:?} is not an IP address", cfg.ableton_host),
                )
            })?;
            let at = SocketAddr::new(ip, cfg.ableton_reply_port);
            let sock = UdpSocket::bind(at)
                .await
                .map_err(|source| ServeError::Bind {
                    what: "UDP (AbletonOSC replies)",
                    addr: at,
                    source,
                })?;
            let live = SocketAddr::new(host, cfg.ableton_port);
            Some(tokio::spawn(super::ableton::run(sock, live, exec.clone())))
        }
        _ => None,
    };
    let dispatcher = Arc::new(
        Dispatcher::new(
            guard.clone(),
            clock,
            exec,
            cfg.max_pending as usize,
            Duration::from_secs_f64(cfg.max_future_s),
        )
        .map_err(ServeError::Thread)?
        .with(
            CommandParser::new().with_panic_fade(cfg.panic_fade_ms),
            cfg.follow,
        ),
    );
    let limits = DecodeLimits {
        max_packet: cfg.max_packet as usize,
        ..DecodeLimits::default()
    };

    let mut tasks: Vec<JoinHandle<()>> = ableton.into_iter().collect();
    tasks.push(tokio::spawn(udp_loop(
        udp.clone(),
        dispatcher.clone(),
        guard.clone(),
        limits,
    )));
    if let Some(l) = listener {
        let tcp = TcpSettings {
            framing: cfg.tcp_framing,
            max_frame: cfg.max_packet as usize,
            max_connections: cfg.max_tcp_clients as usize,
        };
        tasks.push(tokio::spawn(tcp_loop(
            l,
            dispatcher.clone(),
            clients.clone(),
            guard,
            tcp,
        )));
    }
    tasks.push(tokio::spawn(feedback::run_feedback(
        handle.clone(),
        clients.clone(),
        Duration::from_secs_f64(1.0 / cfg.feedback_hz),
    )));
    if !dests.is_empty() {
        tasks.push(tokio::spawn(outbound::run_outbound(
            udp.clone(),
            dests,
            handle.clone(),
            Duration::from_secs_f64(1.0 / cfg.outbound_hz),
        )));
    }
    if let Some(dest) = wled_dest {
        tasks.push(tokio::spawn(wled::run_sender(
            udp.clone(),
            dest,
            cfg.wled.rate_hz,
            handle,
        )));
    }
    tracing::info!(udp = %udp_addr, tcp = ?tcp_addr, "OSC control port listening");
    let d = dispatcher;
    Ok(OscService {
        udp_addr,
        tcp_addr,
        clients,
        tasks,
        stop_scheduler: Box::new(move || d.stop()),
    })
}

/// The address an oversized packet is answered on when its own cannot be read (a TCP frame
/// is skipped unread): `/reply/convoy/packet`.
const PACKET: &str = "/convoy/packet";

fn count_malformed(guard: &Mutex<Guard>) {
    guard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .stats()
        .record(RejectReason::Malformed);
}

async fn udp_loop<C: TimeNow + Clone + Send + 'static>(
    socket: Arc<UdpSocket>,
    dispatcher: Arc<Dispatcher<C>>,
    guard: Arc<Mutex<Guard>>,
    limits: DecodeLimits,
) {
    // Room for the largest datagram, so an oversized one is measured (and answered).
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "OSC UDP receive error");
                continue;
            }
        };
        let peer = Peer::Udp {
            socket: socket.clone(),
            addr: src,
        };
        match codec::decode_with(&buf[..len], &limits) {
            Ok(packet) => dispatcher.packet(packet, &peer, len),
            Err(e @ codec::OscError::TooLarge { len, max }) => {
                count_malformed(&guard);
                tracing::debug!(%src, error = %e, "oversized OSC datagram");
                let address = codec::first_address(&buf[..len]).unwrap_or(PACKET);
                dispatcher.oversized(&peer, address, len, max);
            }
            Err(e) => {
                count_malformed(&guard);
                tracing::debug!(%src, error = %e, "malformed OSC datagram");
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TcpSettings {
    framing: TcpFraming,
    max_frame: usize,
    max_connections: usize,
}

async fn tcp_loop<C: TimeNow + Clone + Send + Sync + 'static>(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher<C>>,
    clients: Arc<Clients>,
    guard: Arc<Mutex<Guard>>,
    cfg: TcpSettings,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    // Owned here, so aborting this task ends every connection.
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "OSC TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%addr, max = cfg.max_connections, "OSC TCP connection refused: too many");
                    continue;
                };
                next_id += 1;
                let (d, c, g) = (dispatcher.clone(), clients.clone(), guard.clone());
                let id = next_id;
                connections.spawn(async move {
                    connection(stream, addr, id, d, &g, cfg).await;
                    c.remove(&ClientKey::Tcp(id));
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

enum StreamDecoder {
    Length(LengthPrefixDecoder),
    Slip(SlipDecoder),
}

impl StreamDecoder {
    fn feed(&mut self, data: &[u8], out: &mut Vec<Result<OscPacket, FrameError>>) {
        match self {
            StreamDecoder::Length(d) => d.feed(data, |r| out.push(r)),
            StreamDecoder::Slip(d) => d.feed(data, |r| out.push(r)),
        }
    }
}

/// The framing a connection uses, from its configuration or its first byte.
fn framing_for(cfg: TcpFraming, first: u8) -> TcpFraming {
    match cfg {
        TcpFraming::Auto => match first {
            codec::SLIP_END | b'/' | b'#' => TcpFraming::Slip,
            _ => TcpFraming::Length,
        },
        fixed => fixed,
    }
}

async fn connection<C: TimeNow + Clone + Send + 'static>(
    stream: TcpStream,
    addr: SocketAddr,
    id: u64,
    dispatcher: Arc<Dispatcher<C>>,
    guard: &Mutex<Guard>,
    cfg: TcpSettings,
) {
    let _ = stream.set_nodelay(true);
    let (tx, rx) = mpsc::channel(64);
    let peer = Peer::Tcp { id, addr, tx };
    let mut buf = vec![0u8; 4096];
    let mut decoder: Option<StreamDecoder> = None;
    let mut rx = Some(rx);
    let (mut rd, wr) = stream.into_split();
    let mut wr = Some(wr);
    let mut frames = Vec::new();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let dec = decoder.get_or_insert_with(|| {
            let framing = framing_for(cfg.framing, buf[0]);
            if let (Some(rx), Some(wr)) = (rx.take(), wr.take()) {
                tokio::spawn(writer(wr, rx, framing));
            }
            tracing::debug!(%addr, ?framing, "OSC TCP connection");
            match framing {
                TcpFraming::Slip => StreamDecoder::Slip(SlipDecoder::new(cfg.max_frame)),
                _ => StreamDecoder::Length(LengthPrefixDecoder::new(cfg.max_frame)),
            }
        });
        dec.feed(&buf[..n], &mut frames);
        for f in frames.drain(..) {
            match f {
                Ok(packet) => dispatcher.packet(packet, &peer, usize::MAX),
                Err(FrameError::NegativeLength(len)) => {
                    count_malformed(guard);
                    tracing::debug!(%addr, len, "desynchronised OSC stream closed");
                    return;
                }
                Err(FrameError::Oversized { len, max }) => {
                    count_malformed(guard);
                    tracing::debug!(%addr, len, "oversized OSC frame skipped");
                    dispatcher.oversized(&peer, PACKET, len, max);
                }
                Err(e) => {
                    count_malformed(guard);
                    tracing::debug!(%addr, error = %e, "bad OSC frame");
                }
            }
        }
    }
}

async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<OscPacket>, framing: TcpFraming) {
    while let Some(p) = rx.recv().await {
        let bytes = match framing {
            TcpFraming::Slip => codec::encode_slip(&p),
            _ => codec::encode_length_prefixed(&p),
        };
        let Ok(bytes) = bytes else { continue };
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The control port's UDP socket and (with `tcp`) its TCP listener on the same port. With
/// port 0 the system picks the UDP port, and the TCP port may happen to be taken (by any
/// connection's ephemeral port): then another pair is tried, a few times.
async fn bind_pair(
    ip: IpAddr,
    port: u16,
    tcp: bool,
) -> Result<(UdpSocket, Option<TcpListener>), ServeError> {
    let mut tries = 0;
    loop {
        let udp_at = SocketAddr::new(ip, port);
        let udp = UdpSocket::bind(udp_at)
            .await
            .map_err(|source| ServeError::Bind {
                what: "UDP",
                addr: udp_at,
                source,
            })?;
        if !tcp {
            return Ok((udp, None));
        }
        let at = match udp.local_addr() {
            Ok(a) => a,
            Err(source) => {
                return Err(ServeError::Bind {
                    what: "UDP",
                    addr: udp_at,
                    source,
                })
            }
        };
        match TcpListener::bind(at).await {
            Ok(l) => return Ok((udp, Some(l))),
            Err(e) if port == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 16 => {
                tries += 1;
            }
            Err(source) => {
                return Err(ServeError::Bind {
                    what: "TCP",
                    addr: at,
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_detected_from_the_first_byte() {
        assert_eq!(framing_for(TcpFraming::Auto, 0xC0), TcpFraming::Slip);
        assert_eq!(framing_for(TcpFraming::Auto, b'/'), TcpFraming::Slip);
        assert_eq!(framing_for(TcpFraming::Auto, b'#'), TcpFraming::Slip);
        assert_eq!(framing_for(TcpFraming::Auto, 0x00), TcpFraming::Length);
        assert_eq!(framing_for(TcpFraming::Length, 0xC0), TcpFraming::Length);
        assert_eq!(framing_for(TcpFraming::Slip, 0x00), TcpFraming::Slip);
    }
}
