//! SNTP (RFC 4330 / RFC 5905 packet format). The leader serves time from its local clock,
//! a sub-leader its disciplined estimate of the leader's (the node's [`FleetClock`]), with a
//! small, correct server: it answers client-mode (3) requests of version 3 or 4 with
//! a server-mode (4) reply carrying the request's transmit time as originate, the receive
//! time taken on arrival and the transmit time taken just before sending. Followers query it
//! (or any NTP server, e.g. chrony) with the sntpc client, timestamped by their own local
//! clock, and feed each exchange to the [`ClockFilter`](super::filter::ClockFilter).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::clock::{FleetClock, LocalClock, NtpTime};
use crate::security::{FleetSecurity, TrafficClass};
use crate::sync::filter::Exchange;

/// NTP packet length without extensions.
pub const PACKET_LEN: usize = 48;

/// Why an SNTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    /// Socket error.
    #[error("SNTP socket: {0}")]
    Io(#[from] std::io::Error),
    /// No (valid) answer in time.
    #[error("SNTP request to {0} timed out")]
    Timeout(SocketAddr),
    /// The answer was rejected by sntpc (wrong originate time, kiss-o'-death, bad mode…).
    #[error("SNTP reply from {server} rejected: {reason}")]
    Rejected {
        /// The server.
        server: SocketAddr,
        /// sntpc's reason.
        reason: String,
    },
}

/// Build the server's reply to `request` (or `None` if it is not a valid client request).
/// `t2`/`t3`: receive and transmit times in NTP format.
pub fn reply(request: &[u8], t2: NtpTime, t3: NtpTime) -> Option<[u8; PACKET_LEN]> {
    if !is_client_request(request) {
        return None;
    }
    let version = (request[0] >> 3) & 0x7;
    let mut out = [0u8; PACKET_LEN];
    out[0] = (version << 3) | 4; // LI = 0, VN = request's, mode = server
    out[1] = 1; // stratum 1: we are the fleet's reference
    out[2] = request[2]; // poll
    out[3] = (-20i8) as u8; // precision ~1 µs
                            // Root delay 0, root dispersion ~1 ms (16.16 fixed point).
    out[8..12].copy_from_slice(&(65u32).to_be_bytes());
    out[12..16].copy_from_slice(b"CNVY");
    out[16..24].copy_from_slice(&t2.0.to_be_bytes()); // reference time
    out[24..32].copy_from_slice(&request[40..48]); // originate = client's transmit
    out[32..40].copy_from_slice(&t2.0.to_be_bytes());
    out[40..48].copy_from_slice(&t3.0.to_be_bytes());
    Some(out)
}

/// Is `request` an SNTP client request (mode 3, version 1 to 4) a server answers?
pub fn is_client_request(request: &[u8]) -> bool {
    let version = request.first().map(|b| (b >> 3) & 0x7);
    let mode = request.first().map(|b| b & 0x7);
    request.len() >= PACKET_LEN && mode == Some(3) && version.is_some_and(|v| (1..=4).contains(&v))
}

/// What an SNTP server has done, for status and tests.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Requests answered.
    pub served: AtomicU64,
    /// Datagrams refused: malformed, unsealed or failing authentication.
    pub rejected: AtomicU64,
    /// Valid requests left unanswered because the source had no time to serve yet.
    pub unanswered: AtomicU64,
}

/// Serve SNTP on `socket` from `source` until the task is dropped. With `security`,
/// requests must be sealed fleet envelopes and replies are sealed (plain NTP clients are
/// then refused: fleet ports never take unsigned datagrams). Malformed or refused
/// datagrams are counted in `stats.rejected` (and, when sealed, in the security counters)
/// and ignored.
pub async fn serve(
    socket: UdpSocket,
    source: FleetClock,
    security: Option<Arc<FleetSecurity>>,
    stats: Arc<ServeStats>,
) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let t2 = source.now();
        let request = match &security {
            None => Some(&buf[..n]),
            Some(sec) => sec
                .open(peer, &buf[..n], TrafficClass::Sntp, None)
                .ok()
                .map(|v| v.payload),
        };
        let Some(req) = request.filter(|r| is_client_request(r)) else {
            stats.rejected.fetch_add(1, Relaxed);
            continue;
        };
        let (Some(t2), Some(t3)) = (t2, source.now()) else {
            stats.unanswered.fetch_add(1, Relaxed);
            continue;
        };
        let Some(out) = reply(req, NtpTime::from_fleet_ns(t2), NtpTime::from_fleet_ns(t3)) else {
            continue; // checked above
        };
        let sent = match &security {
            None => socket.send_to(&out, peer).await,
            Some(sec) => match sec.seal(&out, t3.max(0) as u64) {
                Ok(bytes) => socket.send_to(&bytes, peer).await,
                Err(_) => continue,
            },
        };
        match sent {
            Ok(_) => {
                stats.served.fetch_add(1, Relaxed);
            }
            Err(e) => tracing::debug!("SNTP reply to {peer}: {e}"),
        }
    }
}

/// The client's socket: plain NTP, or sealed in fleet envelopes (datagrams that fail
/// authentication are dropped and counted, and the wait goes on until the timeout).
struct ClientSocket {
    socket: UdpSocket,
    security: Option<Arc<FleetSecurity>>,
    clock: LocalClock,
}

impl sntpc::NtpUdpSocket for ClientSocket {
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> sntpc::Result<usize> {
        let sent = match &self.security {
            None => self.socket.send_to(buf, addr).await,
            Some(sec) => {
                let bytes = sec
                    .seal(buf, self.clock.now().max(0) as u64)
                    .map_err(|_| sntpc::Error::Network)?;
                self.socket.send_to(&bytes, addr).await.map(|_| buf.len())
            }
        };
        sent.map_err(|_| sntpc::Error::Network)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> sntpc::Result<(usize, SocketAddr)> {
        let mut raw = [0u8; 1500];
        loop {
            let (n, peer) = self
                .socket
                .recv_from(&mut raw)
                .await
                .map_err(|_| sntpc::Error::Network)?;
            let payload = match &self.security {
                None => &raw[..n],
                Some(sec) => match sec.open(peer, &raw[..n], TrafficClass::Sntp, None) {
                    Ok(v) => v.payload,
                    Err(_) => continue,
                },
            };
            let len = payload.len().min(buf.len());
            buf[..len].copy_from_slice(&payload[..len]);
            return Ok((len, peer));
        }
    }
}

/// sntpc timestamp source reading a node's local clock (Unix time).
#[derive(Debug, Clone, Copy)]
struct LocalTimestamps {
    clock: LocalClock,
    now_ns: i64,
}

impl sntpc::NtpTimestampGenerator for LocalTimestamps {
    fn init(&mut self) {
        self.now_ns = self.clock.now();
    }

    fn timestamp_sec(&self) -> u64 {
        (self.now_ns.max(0) / 1_000_000_000) as u64
    }

    fn timestamp_subsec_micros(&self) -> u32 {
        ((self.now_ns.max(0) % 1_000_000_000) / 1_000) as u32
    }
}

/// How long a disciplining client waits for each reply: a few round trips of the path as
/// recently measured, not a fixed ceiling. A lost request or reply then costs about that
/// long instead of the whole ceiling (500 ms), which is what made a joining bike that lost
/// one of its opening burst's exchanges lock half a second late per loss (docs/sync.md).
/// A reply that comes later than its wait is skipped by the next exchange
/// ([`SntpClient::exchange_within`]); a slow reply is also the least useful to the clock
/// filter, which keeps the fastest. After a timeout the wait doubles (to the ceiling), so
/// a path that became slower is followed within a few exchanges.
#[derive(Debug, Clone)]
pub struct ReplyTimeout {
    ceiling: Duration,
    recent: std::collections::VecDeque<Duration>,
    backoff: u32,
}

impl ReplyTimeout {
    /// Round trips remembered; the wait follows their median.
    const RECENT: usize = 8;
    /// Wait before any round trip is known (at most the ceiling).
    pub const FIRST: Duration = Duration::from_millis(250);
    /// Shortest wait: room for a loaded host's scheduling on top of any LAN round trip.
    pub const FLOOR: Duration = Duration::from_millis(100);
    /// The wait is this many median round trips plus [`ReplyTimeout::MARGIN`].
    const ROUND_TRIPS: u32 = 3;
    const MARGIN: Duration = Duration::from_millis(50);

    /// Waits never longer than `ceiling` (the client's configured timeout).
    pub fn new(ceiling: Duration) -> Self {
        ReplyTimeout {
            ceiling,
            recent: std::collections::VecDeque::with_capacity(Self::RECENT),
            backoff: 0,
        }
    }

    /// The wait for the next reply.
    pub fn next(&self) -> Duration {
        let base = if self.recent.is_empty() {
            Self::FIRST
        } else {
            let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
            sorted.sort();
            (sorted[sorted.len() / 2] * Self::ROUND_TRIPS + Self::MARGIN).max(Self::FLOOR)
        };
        (base * 2u32.pow(self.backoff)).min(self.ceiling)
    }

    /// `ex` was answered: its round trip counts.
    pub fn answered(&mut self, ex: &Exchange) {
        if self.recent.len() == Self::RECENT {
            self.recent.pop_front();
        }
        self.recent
            .push_back(Duration::from_nanos(ex.delay_ns.max(0) as u64));
        self.backoff = 0;
    }

    /// An exchange timed out.
    pub fn timed_out(&mut self) {
        self.backoff = (self.backoff + 1).min(4);
    }
}

/// An SNTP client bound to one socket, timestamping with `clock`.
pub struct SntpClient {
    socket: ClientSocket,
    clock: LocalClock,
    timeout: Duration,
}

impl SntpClient {
    /// A plain (RFC 4330) client on `socket` (bind it to port 0), for any NTP server.
    pub fn new(socket: UdpSocket, clock: LocalClock, timeout: Duration) -> Self {
        Self::with_security(socket, clock, timeout, None)
    }

    /// A client whose exchanges are sealed fleet envelopes when `security` is given (the
    /// leader's own SNTP server), plain otherwise.
    pub fn with_security(
        socket: UdpSocket,
        clock: LocalClock,
        timeout: Duration,
        security: Option<Arc<FleetSecurity>>,
    ) -> Self {
        SntpClient {
            socket: ClientSocket {
                socket,
                security,
                clock,
            },
            clock,
            timeout,
        }
    }

    /// One exchange with `server`.
    ///
    /// A reply that is not to this request (a late answer to an earlier exchange that
    /// outlived its timeout, or a datagram from another address) is skipped and the wait
    /// goes on until the timeout. Taking it as the answer would fail this exchange and
    /// leave this request's own reply queued for the next one, which would then fail the
    /// same way: one reply later than the timeout used to cost every exchange after it
    /// until a request was lost (seen after a partition healed: 202 failed in a row).
    pub async fn exchange(&self, server: SocketAddr) -> Result<Exchange, SntpError> {
        self.exchange_within(server, self.timeout).await
    }

    /// The client's longest wait for a reply (what [`SntpClient::exchange`] waits).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// [`SntpClient::exchange`], waiting at most `timeout` for the reply.
    pub async fn exchange_within(
        &self,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<Exchange, SntpError> {
        let ctx = sntpc::NtpContext::new(LocalTimestamps {
            clock: self.clock,
            now_ns: 0,
        });
        let answer = async {
            let sent = sntpc::sntp_send_request(server, &self.socket, ctx).await?;
            loop {
                match sntpc::sntp_process_response(server, &self.socket, ctx, sent).await {
                    Err(
                        sntpc::Error::IncorrectOriginTimestamp
                        | sntpc::Error::ResponseAddressMismatch,
                    ) => tracing::trace!("SNTP: skipped a reply that is not to this request"),
                    other => return other,
                }
            }
        };
        let result = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| SntpError::Timeout(server))?
            .map_err(|e| SntpError::Rejected {
                server,
                reason: format!("{e:?}"),
            })?;
        let t4 = self.clock.now();
        Ok(Exchange {
            local_ns: t4,
            offset_ns: result.offset() * 1_000,
            delay_ns: result.roundtrip() as i64 * 1_000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_mirrors_the_request_and_rejects_non_clients() {
        let mut req = [0u8; 48];
        req[0] = (4 << 3) | 3;
        req[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        let r = reply(&req, NtpTime(10), NtpTime(11)).expect("reply");
        assert_eq!(r[0] & 7, 4);
        assert_eq!((r[0] >> 3) & 7, 4);
        assert_eq!(&r[24..32], &req[40..48]);
        assert_eq!(u64::from_be_bytes(r[32..40].try_into().expect("8")), 10);
        assert_eq!(u64::from_be_bytes(r[40..48].try_into().expect("8")), 11);
        let mut server_mode = req;
        server_mode[0] = (4 << 3) | 4;
        assert!(reply(&server_mode, NtpTime(1), NtpTime(1)).is_none());
        assert!(reply(&req[..47], NtpTime(1), NtpTime(1)).is_none());
    }

    /// Our client against our server over loopback, the server's clock 1.5 s ahead and
    /// running 250 ppm fast: the measured offset is right to well under a millisecond.
    #[tokio::test]
    async fn client_measures_the_servers_offset() {
        let server_clock = LocalClock::unix(1_500_000_000, 250.0);
        let client_clock = LocalClock::unix(0, 0.0);
        let srv = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = srv.local_addr().expect("addr");
        let task = tokio::spawn(serve(
            srv,
            FleetClock::own(server_clock),
            None,
            Default::default(),
        ));
        let client = SntpClient::new(
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            client_clock,
            Duration::from_secs(1),
        );
        for _ in 0..5 {
            let ex = client.exchange(addr).await.expect("exchange");
            let truth = server_clock.now() - client_clock.now();
            // NTP's own guarantee: the error is at most half the round trip (whatever
            // the path's asymmetry), plus the 250 ppm the server drifts meanwhile. On an
            // idle machine the round trip is tens of microseconds; under qemu or a loaded
            // CI box it can be milliseconds, and the bound follows it honestly.
            let bound = ex.delay_ns / 2 + 100_000;
            assert!(
                (ex.offset_ns - truth).abs() <= bound,
                "offset {} vs truth {truth}, delay {}",
                ex.offset_ns,
                ex.delay_ns
            );
            assert!(ex.delay_ns >= 0 && ex.delay_ns < 50_000_000);
        }
        task.abort();
    }

    /// A reply that arrives after its exchange timed out is skipped by the next exchange,
    /// which takes its own reply: one late answer costs one exchange, not every one after
    /// it (the stale reply used to be read as the next exchange's answer, fail its origin
    /// check, and leave that exchange's reply queued for the one after, and so on).
    #[tokio::test]
    async fn a_late_reply_costs_one_exchange_not_the_ones_after_it() {
        let clock = LocalClock::unix(0, 0.0);
        let srv = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = srv.local_addr().expect("addr");
        let client = SntpClient::new(
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            clock,
            Duration::from_millis(100),
        );
        // Answers the first request only once the client has given up on it, together
        // with a stray datagram from another address; then answers every request at once.
        let server = tokio::spawn(async move {
            let answer = |req: &[u8]| {
                let now = NtpTime::from_fleet_ns(clock.now());
                reply(req, now, now).expect("a client request")
            };
            let mut buf = [0u8; 64];
            let (n, peer) = srv.recv_from(&mut buf).await.expect("first request");
            let late = answer(&buf[..n]);
            let (n2, peer2) = srv.recv_from(&mut buf).await.expect("second request");
            srv.send_to(&late, peer).await.expect("late reply");
            let stray = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            stray
                .send_to(&answer(&buf[..n2]), peer2)
                .await
                .expect("stray");
            srv.send_to(&answer(&buf[..n2]), peer2)
                .await
                .expect("reply");
            loop {
                let (n, peer) = srv.recv_from(&mut buf).await.expect("request");
                srv.send_to(&answer(&buf[..n]), peer).await.expect("reply");
            }
        });
        assert!(matches!(
            client.exchange(addr).await,
            Err(SntpError::Timeout(_))
        ));
        for k in 0..5 {
            let ex = client.exchange(addr).await;
            assert!(ex.is_ok(), "exchange {k} after the late reply: {ex:?}");
        }
        server.abort();
    }

    /// The wait follows the path: a quarter second before any round trip is known, then
    /// three median round trips plus 50 ms (never under 100 ms), doubled per timeout up
    /// to the ceiling, and back once answered.
    #[test]
    fn the_reply_timeout_follows_the_measured_round_trip() {
        let ms = Duration::from_millis;
        let rtt = |ms: i64| Exchange {
            local_ns: 0,
            offset_ns: 0,
            delay_ns: ms * 1_000_000,
        };
        let mut t = ReplyTimeout::new(ms(500));
        assert_eq!(t.next(), ms(250));
        for r in [4, 9, 6, 15, 7] {
            t.answered(&rtt(r));
        }
        assert_eq!(t.next(), ReplyTimeout::FLOOR); // 3 × 7 + 50 < 100
        t.timed_out();
        assert_eq!(t.next(), ms(200));
        t.timed_out();
        t.timed_out();
        assert_eq!(t.next(), ms(500));
        // The path slowed down: the median follows within a few answers.
        for _ in 0..5 {
            t.answered(&rtt(120));
        }
        assert_eq!(t.next(), ms(410));
        assert_eq!(ReplyTimeout::new(ms(80)).next(), ms(80));
    }

    /// A server whose source moves (a sub-leader's estimate of fleet time updating)
    /// answers with what the source reads at that moment; a source with no time yet
    /// leaves requests unanswered, and counts them.
    #[tokio::test]
    async fn the_server_tracks_a_moving_source_and_waits_for_one() {
        use crate::clock::{Basis, ClockEstimate};
        let local = LocalClock::unix(0, 0.0);
        let source = FleetClock::new(local, 0, Basis::Follow(None)); // no estimate yet
        let srv = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = srv.local_addr().expect("addr");
        let stats = Arc::new(ServeStats::default());
        let task = tokio::spawn(serve(srv, source.clone(), None, stats.clone()));
        let client = SntpClient::new(
            UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            local,
            Duration::from_millis(300),
        );
        assert!(matches!(
            client.exchange(addr).await,
            Err(SntpError::Timeout(_))
        ));
        assert_eq!(stats.unanswered.load(Relaxed), 1);
        for d in [2_000_000_000i64, -750_000_000] {
            source.set_estimate(Some(ClockEstimate {
                ref_local_ns: local.now(),
                offset_ns: d as f64,
                ..ClockEstimate::default()
            }));
            let ex = client.exchange(addr).await.expect("exchange");
            assert!(
                (ex.offset_ns - d).abs() <= ex.delay_ns / 2 + 100_000,
                "{ex:?} for a source {d} ns ahead"
            );
        }
        assert_eq!(stats.served.load(Relaxed), 2);
        assert_eq!(stats.rejected.load(Relaxed), 0);
        task.abort();
    }

    fn security(me: &str, key: u8) -> Arc<FleetSecurity> {
        use crate::security::{FleetKey, Guard, GuardConfig, Keyring};
        let ring = Keyring::new(FleetKey::from_bytes(1, &[key; 32]).expect("key"));
        Arc::new(FleetSecurity::with_guard(
            Guard::new(ring, &GuardConfig::default()),
            me,
        ))
    }

    /// Sealed exchanges work; a plain client and a client with the wrong key get nothing
    /// from a sealed server, and every refused request is counted.
    #[tokio::test]
    async fn sealed_sntp_needs_the_fleet_key() {
        let clock = LocalClock::unix(0, 0.0);
        let srv = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = srv.local_addr().expect("addr");
        let server_sec = security("lead", 1);
        let stats = Arc::new(ServeStats::default());
        let task = tokio::spawn(serve(
            srv,
            FleetClock::own(clock),
            Some(server_sec.clone()),
            stats.clone(),
        ));
        let client = |sec| async move {
            SntpClient::with_security(
                UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
                clock,
                Duration::from_millis(200),
                sec,
            )
        };
        let good = client(Some(security("bike2", 1))).await;
        let ex = good.exchange(addr).await.expect("sealed exchange");
        assert!(ex.offset_ns.abs() < 2_000_000, "{ex:?}");
        let plain = client(None).await;
        assert!(matches!(
            plain.exchange(addr).await,
            Err(SntpError::Timeout(_))
        ));
        let stranger = client(Some(security("bike3", 2))).await;
        assert!(stranger.exchange(addr).await.is_err());
        assert_eq!(stats.rejected.load(Relaxed), 2);
        assert_eq!(stats.served.load(Relaxed), 1);
        assert_eq!(server_sec.stats().total_rejected(), 2);
        task.abort();
    }
}
