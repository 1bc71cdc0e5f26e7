//! A userspace UDP impairment relay — the `netem` this kernel lacks. Each relay listens on
//! one address and forwards to one upstream; every client gets its own upstream socket, so
//! replies find their way back. What a datagram suffers is decided by a pure, seeded
//! [`Model`]: per hop a base delay with uniform jitter (which reorders packets whose
//! spacing is below the jitter), a heavy delay tail (Pareto or log-normal), independent and
//! Gilbert–Elliott bursty loss, and a queue loading one direction only; per path
//! duplication, WiFi-like stalls, power-save wake-ups on the way to the client and link
//! outages. A chain of `hops` relays (mesh hops) is modelled as that many independent hops
//! in one relay: the delays add and each hop may lose the datagram, which is what a chain
//! of relays does to it. [`Profile`] names the combinations `docs/sync.md` measures, each
//! with where its numbers come from. Deterministic for a given seed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Which way a datagram crosses a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to upstream (a follower's SNTP request, its subscription).
    Up,
    /// Upstream to client (the SNTP reply, the leader's timeline).
    Down,
}

/// Extra one-way delay on top of base ± jitter, per hop: the retransmissions and
/// contention of a busy 2.4 GHz channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tail {
    /// None.
    None,
    /// Lomax (Pareto type II): `scale · (U^(−1/alpha) − 1)`, capped at `cap_ms`. Quantile q
    /// is `scale · ((1 − q)^(−1/alpha) − 1)`: α below 1 gives p99 ≫ median.
    Pareto {
        /// Scale, ms.
        scale_ms: f64,
        /// Shape α.
        alpha: f64,
        /// Largest extra delay, ms.
        cap_ms: f64,
    },
    /// Log-normal: `median · exp(sigma · Z)`, capped at `cap_ms`.
    LogNormal {
        /// Median, ms.
        median_ms: f64,
        /// σ of the underlying normal.
        sigma: f64,
        /// Largest extra delay, ms.
        cap_ms: f64,
    },
}

/// Gilbert–Elliott bursty loss, per hop and direction: a two-state Markov chain stepped
/// once per datagram, losing with `loss_good` in the good state and `loss_bad` in the bad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// P(good → bad) per datagram.
    pub p: f64,
    /// P(bad → good) per datagram: the bad state lasts 1/r datagrams on average.
    pub r: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
}

impl GilbertElliott {
    /// Long-run loss rate: `π_bad · loss_bad + π_good · loss_good`, `π_bad = p / (p + r)`.
    pub fn loss_rate(&self) -> f64 {
        let bad = self.p / (self.p + self.r);
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }

    /// Mean length of a stay in the bad state, datagrams (1/r).
    pub fn mean_bad_run(&self) -> f64 {
        1.0 / self.r
    }
}

/// A queue loading one direction only, per hop: `floor + Exp(mean)` extra delay. A floor
/// above 0 is an asymmetry no two-way time protocol can see (it shifts every SNTP offset
/// by floor/2); the profiles keep it at 0, so the queue empties now and then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    /// The loaded direction.
    pub dir: Dir,
    /// Always-present part, ms.
    pub floor_ms: f64,
    /// Mean of the exponential part, ms.
    pub mean_ms: f64,
}

/// 802.11 power save on the client's side: a datagram towards a dozing client waits at
/// the access point for the next wake-up, on a grid of `interval_ms` (beacon interval ×
/// listen interval / DTIM period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSave {
    /// Wake-up interval, ms.
    pub interval_ms: f64,
    /// Probability the client is dozing when a datagram arrives for it.
    pub doze: f64,
}

/// The link is down (a bike out of range, a radio reset): everything is dropped from
/// `at_s` for `length_s`, again every `every_s` (0: once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// First outage, s after the relay started.
    pub at_s: f64,
    /// Length, s.
    pub length_s: f64,
    /// Period, s (0: once).
    pub every_s: f64,
}

impl Outage {
    /// Is the link down at `t_s` (s after the relay started)?
    pub fn down(&self, t_s: f64) -> bool {
        if t_s < self.at_s {
            return false;
        }
        let since = t_s - self.at_s;
        let phase = if self.every_s > 0.0 {
            since % self.every_s
        } else {
            since
        };
        phase < self.length_s
    }
}

/// Impairments applied to every datagram, each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpairConfig {
    /// Base one-way delay per hop, ms.
    pub delay_ms: f64,
    /// Uniform jitter ± this per hop, ms.
    pub jitter_ms: f64,
    /// Probability a datagram is dropped, per hop.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// A stall starts every this many seconds (0 = never).
    pub stall_every_s: f64,
    /// Stall length, ms: datagrams arriving during a stall are held to its end.
    pub stall_ms: f64,
    /// RNG seed.
    pub seed: u64,
    /// Heavy delay tail, per hop.
    pub tail: Tail,
    /// Bursty loss, per hop and direction (on top of `loss`).
    pub burst: Option<GilbertElliott>,
    /// One direction loaded, per hop.
    pub queue: Option<Queue>,
    /// Client power save (direction [`Dir::Down`]).
    pub power_save: Option<PowerSave>,
    /// Link outages.
    pub outage: Option<Outage>,
    /// Hops in the chain (mesh hops), at least 1.
    pub hops: u32,
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
            tail: Tail::None,
            burst: None,
            queue: None,
            power_save: None,
            outage: None,
            hops: 1,
        }
    }
}

/// Named impairment profiles (`--profile`). Where the numbers come from is in
/// `docs/sync.md` ("Impairment profiles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// 5 ± 3 ms, 2 % loss: the scenario's defaults.
    Default,
    /// 20 ± 10 ms, 5 % loss.
    Slow,
    /// 2 ± 1 ms plus a Pareto tail (α 0.9, scale 1.5 ms, cap 1 s): median ~4 ms, p90
    /// ~20 ms, p99 ~250 ms, as measured on busy campus WiFi.
    Tail,
    /// 5 ± 3 ms with Gilbert–Elliott loss: ~3.3 % lost, in bursts (bad state 4 datagrams).
    Bursty,
    /// 5 ± 3 ms, the leader-to-follower direction queued (+Exp(8 ms)).
    Asym,
    /// 5 ± 3 ms, 2 % loss, the client dozing a quarter of the time (wake every 204.8 ms).
    Powersave,
    /// 5 ± 3 ms, 2 % loss, the link down for 30 s from 20 s after the relay starts.
    Outage,
    /// Three mesh hops of 2 ± 1 ms, 1 % loss each.
    Hops,
    /// Two hops, each with a tail, bursty loss and a loaded downlink, client power save,
    /// and a 5 s outage every 60 s from 40 s.
    WifiCity,
}

impl Profile {
    /// The impairments of this profile, seeded with `seed`.
    pub fn config(self, seed: u64) -> ImpairConfig {
        let base = ImpairConfig {
            delay_ms: 5.0,
            jitter_ms: 3.0,
            loss: 0.02,
            seed,
            ..ImpairConfig::default()
        };
        match self {
            Profile::Default => base,
            Profile::Slow => ImpairConfig {
                delay_ms: 20.0,
                jitter_ms: 10.0,
                loss: 0.05,
                ..base
            },
            Profile::Tail => ImpairConfig {
                delay_ms: 2.0,
                jitter_ms: 1.0,
                loss: 0.01,
                tail: Tail::Pareto {
                    scale_ms: 1.5,
                    alpha: 0.9,
                    cap_ms: 1000.0,
                },
                ..base
            },
            Profile::Bursty => ImpairConfig {
                loss: 0.0,
                burst: Some(BURSTY),
                ..base
            },
            Profile::Asym => ImpairConfig {
                queue: Some(Queue {
                    dir: Dir::Down,
                    floor_ms: 0.0,
                    mean_ms: 8.0,
                }),
                ..base
            },
            Profile::Powersave => ImpairConfig {
                power_save: Some(PowerSave {
                    interval_ms: 204.8,
                    doze: 0.25,
                }),
                ..base
            },
            Profile::Outage => ImpairConfig {
                outage: Some(Outage {
                    at_s: 20.0,
                    length_s: 30.0,
                    every_s: 0.0,
                }),
                ..base
            },
            Profile::Hops => ImpairConfig {
                delay_ms: 2.0,
                jitter_ms: 1.0,
                loss: 0.01,
                hops: 3,
                ..base
            },
            Profile::WifiCity => ImpairConfig {
                delay_ms: 2.0,
                jitter_ms: 1.0,
                loss: 0.0,
                hops: 2,
                tail: Tail::Pareto {
                    scale_ms: 1.0,
                    alpha: 1.2,
                    cap_ms: 300.0,
                },
                burst: Some(GilbertElliott {
                    p: 0.005,
                    r: 0.3,
                    loss_bad: 0.7,
                    loss_good: 0.002,
                }),
                queue: Some(Queue {
                    dir: Dir::Down,
                    floor_ms: 0.0,
                    mean_ms: 3.0,
                }),
                power_save: Some(PowerSave {
                    interval_ms: 204.8,
                    doze: 0.1,
                }),
                outage: Some(Outage {
                    at_s: 40.0,
                    length_s: 5.0,
                    every_s: 60.0,
                }),
                ..base
            },
        }
    }
}

/// The `bursty` profile's chain: π_bad = 0.01/0.26 ≈ 3.8 %, loss ≈ 3.3 %.
const BURSTY: GilbertElliott = GilbertElliott {
    p: 0.01,
    r: 0.25,
    loss_bad: 0.8,
    loss_good: 0.002,
};

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

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.next().max(f64::MIN_POSITIVE);
        let v = self.next();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Fate {
    /// Delivery delays after arrival, s, one per copy (empty: dropped).
    pub delays_s: Vec<f64>,
    /// A copy was added.
    pub duplicated: bool,
    /// Held by a stall.
    pub stalled: bool,
}

/// The relay's dice: what each datagram suffers, given when it arrived and which way it
/// goes. Pure and seeded, so its statistics are unit-tested without sockets or timing.
pub struct Model {
    cfg: ImpairConfig,
    rng: Rng,
    /// Gilbert–Elliott state per hop and direction (true: bad).
    bad: Vec<[bool; 2]>,
}

impl Model {
    /// A model of `cfg`.
    pub fn new(cfg: ImpairConfig) -> Self {
        Model {
            cfg,
            rng: Rng(cfg.seed.max(1)),
            bad: vec![[false; 2]; cfg.hops.max(1) as usize],
        }
    }

    fn tail_ms(&mut self) -> f64 {
        match self.cfg.tail {
            Tail::None => 0.0,
            Tail::Pareto {
                scale_ms,
                alpha,
                cap_ms,
            } => {
                let u = (1.0 - self.rng.next()).max(f64::MIN_POSITIVE);
                (scale_ms * (u.powf(-1.0 / alpha) - 1.0)).min(cap_ms)
            }
            Tail::LogNormal {
                median_ms,
                sigma,
                cap_ms,
            } => (median_ms * (sigma * self.rng.normal()).exp()).min(cap_ms),
        }
    }

    /// One hop's delay for a datagram going `dir`, ms.
    fn hop_ms(&mut self, dir: Dir) -> f64 {
        let mut d = self.cfg.delay_ms + self.cfg.jitter_ms * (2.0 * self.rng.next() - 1.0);
        d += self.tail_ms();
        if let Some(q) = self.cfg.queue.filter(|q| q.dir == dir) {
            let u = (1.0 - self.rng.next()).max(f64::MIN_POSITIVE);
            d += q.floor_ms - q.mean_ms * u.ln();
        }
        d.max(0.0)
    }

    /// The fate of a datagram arriving `t_s` seconds after the relay started, going `dir`.
    pub fn fate(&mut self, t_s: f64, dir: Dir) -> Fate {
        let dropped = Fate {
            delays_s: Vec::new(),
            duplicated: false,
            stalled: false,
        };
        if self.cfg.outage.is_some_and(|o| o.down(t_s)) {
            return dropped;
        }
        let d = match dir {
            Dir::Up => 0,
            Dir::Down => 1,
        };
        for hop in 0..self.bad.len() {
            if let Some(ge) = self.cfg.burst {
                let state = &mut self.bad[hop][d];
                let flip = self.rng.next();
                *state = if *state { flip >= ge.r } else { flip < ge.p };
                let p = if *state { ge.loss_bad } else { ge.loss_good };
                if self.rng.next() < p {
                    return dropped;
                }
            }
            if self.rng.next() < self.cfg.loss {
                return dropped;
            }
        }
        let duplicated = self.rng.next() < self.cfg.duplicate;
        let mut stalled = false;
        let delays_s = (0..if duplicated { 2 } else { 1 })
            .map(|_| {
                let ms: f64 = (0..self.bad.len()).map(|_| self.hop_ms(dir)).sum();
                let mut at = t_s + ms / 1e3;
                if let Some(ps) = self.cfg.power_save.filter(|_| dir == Dir::Down) {
                    if self.rng.next() < ps.doze {
                        let interval = ps.interval_ms / 1e3;
                        at = (at / interval).ceil() * interval;
                    }
                }
                if self.cfg.stall_every_s > 0.0 && self.cfg.stall_ms > 0.0 {
                    let phase = at % self.cfg.stall_every_s;
                    let stall = self.cfg.stall_ms / 1e3;
                    if at >= self.cfg.stall_every_s && phase < stall {
                        stalled = true;
                        at += stall - phase;
                    }
                }
                at - t_s
            })
            .collect();
        Fate {
            delays_s,
            duplicated,
            stalled,
        }
    }
}

/// A [`Model`] on the wall: its clock, and the counters it feeds.
pub(crate) struct Shaper {
    pub(crate) model: Mutex<Model>,
    pub(crate) start: Instant,
    pub(crate) stats: Arc<ImpairStats>,
}

impl Shaper {
    /// Delivery times for one datagram arriving now going `dir` (empty: dropped).
    pub(crate) fn schedule(&self, dir: Dir) -> Vec<Instant> {
        let now = Instant::now();
        let mut model = match self.model.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let fate = model.fate((now - self.start).as_secs_f64(), dir);
        if fate.delays_s.is_empty() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if fate.duplicated {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        if fate.stalled {
            self.stats.stalled.fetch_add(1, Ordering::Relaxed);
        }
        fate.delays_s
            .iter()
            .map(|d| now + Duration::from_secs_f64(d.max(0.0)))
            .collect()
    }
}

/// Where a delayed datagram or packet goes.
pub(crate) enum Out {
    /// A UDP socket, to this address (None: its connected peer).
    Udp(Arc<std::net::UdpSocket>, Option<SocketAddr>),
    /// A TUN device (one write is one IP packet). Only `rig::tun` (Linux, `rig`) makes one.
    #[cfg_attr(not(all(feature = "rig", target_os = "linux")), allow(dead_code))]
    Tun(Arc<std::fs::File>),
}

impl Out {
    fn send(&self, data: &[u8]) {
        use std::io::Write;
        let _ = match self {
            Out::Udp(socket, Some(addr)) => socket.send_to(data, *addr),
            Out::Udp(socket, None) => socket.send(data),
            Out::Tun(file) => (&**file).write(data),
        };
    }
}

/// A datagram waiting for its delivery time.
pub(crate) struct Pending {
    pub(crate) at: std::time::Instant,
    pub(crate) out: Out,
    pub(crate) data: Vec<u8>,
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
pub(crate) fn spawn_courier() -> std::sync::mpsc::Sender<Pending> {
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
                        p.out.send(&p.data);
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
    dir: Dir,
) {
    for at in shaper.schedule(dir) {
        let _ = courier.send(Pending {
            at: at.into_std(),
            out: Out::Udp(socket.clone(), to),
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
        model: Mutex::new(Model::new(cfg)),
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
                        send_later(&sh, &c2, &back, Some(client), &b[..m], Dir::Down);
                    }
                });
                s_std
            }
        };
        send_later(&shaper, &courier, &up, None, &buf[..n], Dir::Up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-way delays (ms) of `n` datagrams going `dir`, one every 10 ms (dropped: none).
    fn delays(cfg: ImpairConfig, dir: Dir, n: usize) -> (Vec<f64>, usize) {
        let mut m = Model::new(cfg);
        let mut out = Vec::new();
        let mut lost = 0;
        for i in 0..n {
            let f = m.fate(1.0 + i as f64 * 0.01, dir);
            match f.delays_s.first() {
                Some(d) => out.push(d * 1e3),
                None => lost += 1,
            }
        }
        out.sort_by(f64::total_cmp);
        (out, lost)
    }

    fn q(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }

    #[test]
    fn pareto_tail_quantiles_match_the_lomax_formula() {
        let cfg = ImpairConfig {
            tail: Tail::Pareto {
                scale_ms: 1.5,
                alpha: 0.9,
                cap_ms: 1e9,
            },
            ..ImpairConfig::default()
        };
        let (d, lost) = delays(cfg, Dir::Up, 200_000);
        assert_eq!(lost, 0);
        for p in [0.5f64, 0.9, 0.99] {
            let want = 1.5 * ((1.0 - p).powf(-1.0 / 0.9) - 1.0);
            let got = q(&d, p);
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "p{p}: {got:.3} ms, formula {want:.3} ms"
            );
        }
    }

    #[test]
    fn the_tail_profile_has_p99_far_above_its_median() {
        let (d, _) = delays(Profile::Tail.config(3), Dir::Up, 100_000);
        let (p50, p90, p99) = (q(&d, 0.5), q(&d, 0.9), q(&d, 0.99));
        // Sui et al. (MobiSys 2016): median ~3 ms, p90 ~20 ms, p99 ~250 ms.
        assert!((3.0..4.5).contains(&p50), "p50 {p50}");
        assert!((16.0..24.0).contains(&p90), "p90 {p90}");
        assert!((200.0..300.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn lognormal_tail_has_its_median_and_sigma() {
        let cfg = ImpairConfig {
            tail: Tail::LogNormal {
                median_ms: 4.0,
                sigma: 1.0,
                cap_ms: 1e9,
            },
            ..ImpairConfig::default()
        };
        let (d, _) = delays(cfg, Dir::Up, 100_000);
        assert!(
            (q(&d, 0.5) / 4.0 - 1.0).abs() < 0.03,
            "median {}",
            q(&d, 0.5)
        );
        // p84 is one σ up: 4·e.
        let p84 = q(&d, 0.841_344_7);
        assert!((p84 / (4.0 * 1f64.exp()) - 1.0).abs() < 0.04, "p84 {p84}");
    }

    #[test]
    fn gilbert_elliott_loss_rate_and_burst_length() {
        // Loss only in the bad state: loss runs are the bad state's stays.
        let ge = GilbertElliott {
            p: 0.02,
            r: 0.25,
            loss_bad: 1.0,
            loss_good: 0.0,
        };
        let mut m = Model::new(ImpairConfig {
            burst: Some(ge),
            seed: 9,
            ..ImpairConfig::default()
        });
        let n = 400_000;
        let (mut lost, mut runs, mut run) = (0usize, 0usize, 0usize);
        for i in 0..n {
            if m.fate(i as f64 * 1e-3, Dir::Up).delays_s.is_empty() {
                lost += 1;
                run += 1;
            } else if run > 0 {
                runs += 1;
                run = 0;
            }
        }
        let rate = lost as f64 / n as f64;
        let mean_run = lost as f64 / runs as f64;
        assert!(
            (rate / ge.loss_rate() - 1.0).abs() < 0.05,
            "loss {rate:.4}, chain says {:.4}",
            ge.loss_rate()
        );
        assert!(
            (mean_run / ge.mean_bad_run() - 1.0).abs() < 0.05,
            "burst {mean_run:.2}, chain says {}",
            ge.mean_bad_run()
        );
        // The profile's own chain: the long-run rate its doc states.
        let (_, lost) = delays(Profile::Bursty.config(5), Dir::Down, 200_000);
        let rate = lost as f64 / 200_000.0;
        assert!((rate - BURSTY.loss_rate()).abs() < 0.004, "bursty {rate}");
        assert!((BURSTY.loss_rate() - 0.033).abs() < 0.001);
    }

    #[test]
    fn the_queue_loads_one_direction_only() {
        let cfg = Profile::Asym.config(4);
        let (up, _) = delays(cfg, Dir::Up, 50_000);
        let (down, _) = delays(cfg, Dir::Down, 50_000);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&up) - 5.0).abs() < 0.1, "up mean {}", mean(&up));
        assert!(
            (mean(&down) - 13.0).abs() < 0.3,
            "down mean {}",
            mean(&down)
        );
        // The fastest datagrams each way still see (almost) no queue.
        assert!(
            down[0] < 2.1 && up[0] < 2.1,
            "fastest {} / {}",
            down[0],
            up[0]
        );
    }

    #[test]
    fn power_save_holds_a_dozing_clients_datagrams_to_the_next_wake_up() {
        let cfg = Profile::Powersave.config(6);
        let (up, _) = delays(cfg, Dir::Up, 50_000);
        let (down, _) = delays(cfg, Dir::Down, 50_000);
        assert!(
            up[up.len() - 1] <= 8.0 + 1e-9,
            "uplink max {}",
            up[up.len() - 1]
        );
        let held = down.iter().filter(|&&d| d > 8.0 + 1e-9).count() as f64 / down.len() as f64;
        // Dozing 25 % of the time; a datagram that arrives just before a wake-up is not
        // held beyond its own delay.
        assert!((0.2..0.26).contains(&held), "held {held}");
        assert!(
            down[down.len() - 1] <= 204.8 + 8.0,
            "down max {}",
            down[down.len() - 1]
        );
        assert!(q(&down, 0.99) > 100.0, "down p99 {}", q(&down, 0.99));
    }

    #[test]
    fn an_outage_drops_everything_and_only_then() {
        let mut m = Model::new(ImpairConfig {
            outage: Some(Outage {
                at_s: 20.0,
                length_s: 30.0,
                every_s: 0.0,
            }),
            ..ImpairConfig::default()
        });
        for i in 0..7000 {
            let t = i as f64 * 0.01;
            let lost = m.fate(t, Dir::Down).delays_s.is_empty();
            assert_eq!(lost, (20.0..50.0).contains(&t), "t {t}");
        }
        let every = Outage {
            at_s: 40.0,
            length_s: 5.0,
            every_s: 60.0,
        };
        assert!(!every.down(39.9) && every.down(40.0) && every.down(44.9));
        assert!(!every.down(45.0) && every.down(100.0) && !every.down(105.1));
    }

    #[test]
    fn hops_add_their_delays_and_losses() {
        let cfg = Profile::Hops.config(8);
        let (d, lost) = delays(cfg, Dir::Up, 100_000);
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!((mean - 6.0).abs() < 0.05, "mean {mean}");
        assert!(
            d[0] >= 3.0 && d[d.len() - 1] <= 9.0,
            "{} .. {}",
            d[0],
            d[d.len() - 1]
        );
        let rate = lost as f64 / 100_000.0;
        let want = 1.0 - 0.99f64.powi(3);
        assert!(
            (rate - want).abs() < 0.003,
            "loss {rate}, 3 hops of 1 % {want}"
        );
    }

    #[test]
    fn wifi_city_combines_the_models() {
        let cfg = Profile::WifiCity.config(2);
        let (up, lost_up) = delays(cfg, Dir::Up, 200_000);
        let (down, _) = delays(cfg, Dir::Down, 200_000);
        // Two hops of 2 ± 1 ms with a tail: median ~5 ms, p99 far above.
        let (p50, p99) = (q(&up, 0.5), q(&up, 0.99));
        assert!(
            (4.0..7.0).contains(&p50) && p99 > 10.0 * p50,
            "up p50 {p50} p99 {p99}"
        );
        // The downlink is queued and dozes on top.
        assert!(q(&down, 0.5) > p50 + 3.0, "down p50 {}", q(&down, 0.5));
        // Loss: 5 s of every 60 s down (the runs span 2000 s) plus bursts on two hops.
        let rate = lost_up as f64 / 200_000.0;
        assert!((0.09..0.16).contains(&rate), "loss {rate}");
    }

    #[test]
    fn the_default_profile_is_the_scenarios_old_network() {
        let cfg = Profile::Default.config(1);
        assert_eq!(
            (cfg.delay_ms, cfg.jitter_ms, cfg.loss, cfg.hops),
            (5.0, 3.0, 0.02, 1)
        );
        let (d, lost) = delays(cfg, Dir::Down, 100_000);
        assert!(d[0] >= 2.0 && d[d.len() - 1] <= 8.0);
        assert!((lost as f64 / 1e5 - 0.02).abs() < 0.002);
    }

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
