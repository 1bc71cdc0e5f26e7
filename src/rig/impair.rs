//! A userspace UDP impairment relay — the `netem` this kernel lacks. Each relay listens on
//! one address and forwards to one upstream; every client gets its own upstream socket, so
//! replies find their way back, and both directions suffer the same impairments: a base
//! delay with uniform jitter (which reorders packets whose spacing is below the jitter),
//! random loss, duplication, and WiFi-like stalls during which everything is held and then
//! delivered in a burst. Deterministic for a given seed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Impairments applied to every datagram, each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpairConfig {
    /// Base one-way delay, ms.
    pub delay_ms: f64,
    /// Uniform jitter ± this, ms.
    pub jitter_ms: f64,
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// A stall starts every this many seconds (0 = never).
    pub stall_every_s: f64,
    /// Stall length, ms: datagrams arriving during a stall are held to its end.
    pub stall_ms: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        ImpairConfig {
            delay_ms: 0.0,
            jitter_ms: 0.0,
            loss: 0.0,
            duplicate: 0.0,
            stall_every_s: 0.0,
            stall_ms: 0.0,
            seed: 1,
        }
    }
}

/// Relay counters.
#[derive(Debug, Default)]
pub struct ImpairStats {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Dropped on purpose.
    pub dropped: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Held by a stall.
    pub stalled: AtomicU64,
}

/// Deterministic xorshift noise, uniform in [0, 1): the relay's dice, also used by the
/// sync simulations in tests. Seed must be non-zero.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shaper {
    cfg: ImpairConfig,
    rng: Mutex<Rng>,
    start: Instant,
    stats: Arc<ImpairStats>,
}

impl Shaper {
    /// Delivery times for one datagram arriving now (empty: dropped).
    fn schedule(&self) -> Vec<Instant> {
        let now = Instant::now();
        let mut rng = match self.rng.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if rng.next() < self.cfg.loss {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let copies = if rng.next() < self.cfg.duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let d =
                    (self.cfg.delay_ms + self.cfg.jitter_ms * (2.0 * rng.next() - 1.0)).max(0.0);
                let mut at = now + Duration::from_secs_f64(d / 1e3);
                if self.cfg.stall_every_s > 0.0 && self.cfg.stall_ms > 0.0 {
                    let t = (at - self.start).as_secs_f64();
                    let phase = t % self.cfg.stall_every_s;
                    let stall = self.cfg.stall_ms / 1e3;
                    if t >= self.cfg.stall_every_s && phase < stall {
                        self.stats.stalled.fetch_add(1, Ordering::Relaxed);
                        at += Duration::from_secs_f64(stall - phase);
                    }
                }
                at
            })
            .collect()
    }
}

/// A datagram waiting for its delivery time.
struct Pending {
    at: std::time::Instant,
    socket: Arc<std::net::UdpSocket>,
    to: Option<SocketAddr>,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at) // min-heap on delivery time
    }
}

/// Delivers datagrams at their times from a plain thread: tokio's timer wheel has 1 ms
/// granularity, which would add its own jitter on top of the configured one.
fn spawn_courier() -> std::sync::mpsc::Sender<Pending> {
    let (tx, rx) = std::sync::mpsc::channel::<Pending>();
    let _ = std::thread::Builder::new()
        .name("convoy-impair".into())
        .spawn(move || {
            let mut heap = std::collections::BinaryHeap::new();
            loop {
                let wait = heap
                    .peek()
                    .map(|p: &Pending| p.at.saturating_duration_since(std::time::Instant::now()));
                let next = match wait {
                    Some(d) if d.is_zero() => None,
                    Some(d) => match rx.recv_timeout(d.min(Duration::from_millis(2))) {
                        Ok(p) => Some(p),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if heap.is_empty() => {
                            return
                        }
                        Err(_) => None,
                    },
                    None => match rx.recv() {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    },
                };
                if let Some(p) = next {
                    heap.push(p);
                }
                while heap
                    .peek()
                    .is_some_and(|p| p.at <= std::time::Instant::now())
                {
                    if let Some(p) = heap.pop() {
                        let _ = match p.to {
                            Some(addr) => p.socket.send_to(&p.data, addr),
                            None => p.socket.send(&p.data),
                        };
                    }
                }
            }
        });
    tx
}

fn send_later(
    shaper: &Shaper,
    courier: &std::sync::mpsc::Sender<Pending>,
    socket: &Arc<std::net::UdpSocket>,
    to: Option<SocketAddr>,
    data: &[u8],
) {
    for at in shaper.schedule() {
        let _ = courier.send(Pending {
            at: at.into_std(),
            socket: socket.clone(),
            to,
            data: data.to_vec(),
        });
    }
}

fn std_clone(s: &UdpSocket) -> std::io::Result<Arc<std::net::UdpSocket>> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = s.as_fd().try_clone_to_owned()?;
    Ok(Arc::new(std::net::UdpSocket::from(fd)))
}

/// Relay datagrams arriving on `listen` to `upstream` and back, impaired, until dropped.
pub async fn relay(
    listen: UdpSocket,
    upstream: SocketAddr,
    cfg: ImpairConfig,
    stats: Arc<ImpairStats>,
) -> std::io::Result<()> {
    relay_as(listen, upstream, cfg, stats, |_| None).await
}

/// [`relay`], with the upstream socket of each client bound to the address `source`
/// gives for it (None: any). Upstream then sees every client at an address of its own,
/// and a reply to it, or a later datagram to that address, comes back through a relay
/// listening there: how the auto scenario puts a relay on every path between two nodes
/// whose addresses they learn from each other's heartbeats.
pub async fn relay_as(
    listen: UdpSocket,
    upstream: SocketAddr,
    cfg: ImpairConfig,
    stats: Arc<ImpairStats>,
    source: impl Fn(SocketAddr) -> Option<IpAddr>,
) -> std::io::Result<()> {
    let listen_std = std_clone(&listen)?;
    let courier = spawn_courier();
    let shaper = Arc::new(Shaper {
        cfg,
        rng: Mutex::new(Rng(cfg.seed.max(1))),
        start: Instant::now(),
        stats,
    });
    let mut clients: HashMap<SocketAddr, Arc<std::net::UdpSocket>> = HashMap::new();
    let any: IpAddr = if upstream.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = listen.recv_from(&mut buf).await?;
        let up = match clients.get(&client) {
            Some(s) => s.clone(),
            None => {
                if clients.len() >= 1024 {
                    clients.clear();
                }
                let ip = source(client).unwrap_or(any);
                let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
                s.connect(upstream).await?;
                let s_std = std_clone(&s)?;
                clients.insert(client, s_std.clone());
                // Replies from upstream go back to this client, impaired too.
                let (back, sh, c2) = (listen_std.clone(), shaper.clone(), courier.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65_536];
                    while let Ok(m) = s.recv(&mut b).await {
                        send_later(&sh, &c2, &back, Some(client), &b[..m]);
                    }
                });
                s_std
            }
        };
        send_later(&shaper, &courier, &up, None, &buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delays_drops_and_returns_replies() {
        // Upstream echo server.
        let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, p)) = echo.recv_from(&mut b).await {
                let _ = echo.send_to(&b[..n], p).await;
            }
        });
        let listen = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let relay_addr = listen.local_addr().expect("addr");
        let stats = Arc::new(ImpairStats::default());
        let cfg = ImpairConfig {
            delay_ms: 20.0,
            jitter_ms: 5.0,
            loss: 0.2,
            seed: 7,
            ..ImpairConfig::default()
        };
        tokio::spawn(relay(listen, echo_addr, cfg, stats.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut got = 0;
        let mut min_rtt = Duration::from_secs(1);
        for i in 0..50u8 {
            let t = Instant::now();
            client.send_to(&[i], relay_addr).await.expect("send");
            let mut b = [0u8; 8];
            if let Ok(Ok((1, _))) =
                tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut b)).await
            {
                got += 1;
                min_rtt = min_rtt.min(t.elapsed());
            }
        }
        // Two passes at 20 % loss each: ~64 % arrive.
        assert!((20..=45).contains(&got), "{got} of 50 round trips");
        // Each way ≥ 15 ms.
        assert!(min_rtt >= Duration::from_millis(30), "min rtt {min_rtt:?}");
        assert!(stats.dropped.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn upstream_sees_each_client_at_the_address_it_is_given() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, p)) = echo.recv_from(&mut b).await {
                let _ = seen_tx.send(p.ip());
                let _ = echo.send_to(&b[..n], p).await;
            }
        });
        let listen = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let relay_addr = listen.local_addr().expect("addr");
        let stats = Arc::new(ImpairStats::default());
        let as_77 = |_: SocketAddr| Some(IpAddr::from([127, 0, 0, 77]));
        tokio::spawn(relay_as(
            listen,
            echo_addr,
            ImpairConfig::default(),
            stats,
            as_77,
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        client.send_to(b"hi", relay_addr).await.expect("send");
        let mut b = [0u8; 8];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut b))
            .await
            .expect("a reply in time")
            .expect("recv");
        assert_eq!((&b[..n], from), (&b"hi"[..], relay_addr));
        assert_eq!(seen.recv().await, Some(IpAddr::from([127, 0, 0, 77])));
    }
}
