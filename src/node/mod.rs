//! The `convoy node` daemon: one player, one clock, and the fleet-sync sockets, wired
//! together. The leader plays on its own clock, serves SNTP and publishes the timeline to
//! every follower that subscribed; a follower disciplines its view of the leader's clock
//! with SNTP, receives the timeline, opens the same track and lets the PLL steer its
//! playback. Status goes to stdout as one JSON line per interval (the scenario tool reads
//! it). Network code takes already-bound sockets, so tests can bind port 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

pub mod handle;

pub use handle::{Command as NodeCommand, HandleError, NodeHandle, Origin, Snapshot};

use crate::audio::{self, output, EngineOptions, Player};
use crate::clock::{mono_ns, LocalClock};
use crate::config::{Config, Role};
use crate::sync::filter::{ClockFilter, FilterConfig};
use crate::sync::pll::{FollowerController, LeaderController, LockStatus, NetState, PllConfig};
use crate::sync::sntp::{self, SntpClient};
use crate::sync::timeline::{self, Timeline};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Audio setup failed.
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configured address is invalid.
    #[error("bad address {0:?}")]
    Address(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Track the leader (or a solo node) plays.
    pub track: String,
    /// Stop after this long (None: until signalled).
    pub duration: Option<Duration>,
    /// Status line interval.
    pub status_every: Duration,
    /// Leader/solo: start the track this long after startup, announced to followers in
    /// advance, so every bike starts on the same sample (a scheduled start).
    pub start_in: Duration,
}

/// One status line.
#[derive(Debug, Clone, serde::Serialize)]
struct Status<'a> {
    mono_ns: u64,
    /// This node's clock at `mono_ns`.
    local_ns: i64,
    /// Its estimate of fleet (leader) time at `mono_ns`.
    fleet_ns: Option<i64>,
    node: &'a str,
    role: Role,
    track: Option<String>,
    position_s: Option<f64>,
    offset_ns: Option<f64>,
    clock_ppm: Option<f64>,
    dispersion_ns: Option<f64>,
    min_delay_ns: Option<i64>,
    clock_steps: Option<u64>,
    sntp_ok: u64,
    sntp_failed: u64,
    timelines: u64,
    lock: LockStatus,
    underruns: u64,
}

/// Run a node until the duration passes or SIGINT/SIGTERM arrives.
pub async fn run(config: Config, opts: NodeOptions) -> Result<(), NodeError> {
    let id = config.node_id();
    let c = &config.clock;
    let mut clock = LocalClock::unix((c.offset_ms * 1e6) as i64, c.ppm);
    if c.step_at_s > 0.0 {
        clock = clock.with_step(
            mono_ns() + (c.step_at_s * 1e9) as u64,
            (c.step_ms * 1e6) as i64,
        );
    }
    let y = config.sync.clone();
    let latency_ns = (config.node.output_latency_ms * 1e6) as i64;
    let net = Arc::new(Mutex::new(NetState::default()));
    let lock = Arc::new(Mutex::new(LockStatus::default()));
    let sink = output::open_sink(&config.audio, config.audio.sink)?;
    let engine = EngineOptions::from_config(&config.audio);
    let pll = PllConfig {
        kp: y.kp,
        ki: y.ki,
        max_ppm: y.max_ppm,
        hard_seek_ns: (y.hard_seek_ms * 1e6) as i64,
        hard_seek_updates: y.hard_seek_updates,
        lock_ns: (y.lock_ms * 1e6) as i64,
        update_ns: (y.update_ms * 1e6) as i64,
    };
    let controller: Box<dyn audio::Controller> = match y.role {
        Role::Follower => Box::new(FollowerController::new(
            pll,
            clock,
            latency_ns,
            net.clone(),
            lock.clone(),
        )),
        Role::Leader | Role::Solo => Box::new(LeaderController::new(
            clock,
            latency_ns,
            id.clone(),
            opts.track.clone(),
            net.clone(),
        )),
    };
    let player = Arc::new(Player::start(sink, engine, controller)?);
    if y.role != Role::Follower {
        let source = audio::open_track(&opts.track)?;
        let rate = source.spec().sample_rate;
        // Scheduled start: frame 0 is heard at `start`; the plan is published at once so
        // followers can start on the same sample. Measured timelines replace it as soon as
        // the leader plays.
        let start = mono_ns() + opts.start_in.as_nanos() as u64;
        player.load_at(source, 0, start)?;
        if let Ok(mut n) = net.lock() {
            n.timeline = Some(Timeline {
                leader: id.clone(),
                seq: 0,
                track: opts.track.clone(),
                track_rate: rate,
                anchor_frame: 0.0,
                anchor_fleet_ns: clock.from_mono(start.saturating_add_signed(latency_ns)),
                frames_per_sec: rate as f64,
                playing: true,
                tempo_bpm: 0.0,
                epoch: 0,
            });
        }
    }
    let bind_ip: std::net::IpAddr = y
        .bind
        .parse()
        .map_err(|_| NodeError::Address(y.bind.clone()))?;
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    match y.role {
        Role::Leader => {
            if y.sntp_port != 0 {
                let addr = SocketAddr::new(bind_ip, y.sntp_port);
                let sock = bind("SNTP server", addr).await?;
                tasks.push(tokio::spawn(sntp::serve(sock, clock, Default::default())));
            }
            let sock = bind("timeline", SocketAddr::new(bind_ip, y.osc_port)).await?;
            tasks.push(tokio::spawn(publish_timeline(
                sock,
                net.clone(),
                y.publish_hz,
            )));
        }
        Role::Follower => {
            let leader: SocketAddr = y
                .leader
                .parse()
                .map_err(|_| NodeError::Address(y.leader.clone()))?;
            let sntp_server = if y.sntp_server.is_empty() {
                SocketAddr::new(leader.ip(), y.sntp_port)
            } else {
                y.sntp_server
                    .parse()
                    .map_err(|_| NodeError::Address(y.sntp_server.clone()))?
            };
            let filter = FilterConfig {
                window_s: y.filter_window_s,
                bucket_s: y.filter_bucket_s,
                step_threshold_ns: (y.step_threshold_ms * 1e6) as i64,
                step_count: y.step_count.max(2) as usize,
            };
            let sock = bind("SNTP client", SocketAddr::new(bind_ip, 0)).await?;
            let client = SntpClient::new(sock, clock, Duration::from_millis(500));
            tasks.push(tokio::spawn(discipline(
                client,
                sntp_server,
                filter,
                y.poll_hz,
                net.clone(),
                counters.clone(),
            )));
            let sock = bind("timeline", SocketAddr::new(bind_ip, 0)).await?;
            let local = LocalTime { clock, latency_ns };
            tasks.push(tokio::spawn(follow_timeline(
                sock,
                leader,
                id.clone(),
                local,
                net.clone(),
                player.clone(),
                counters.clone(),
            )));
        }
        Role::Solo => {}
    }
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(opts.status_every);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                print_status(&id, y.role, &clock, &player, &net, &lock, &counters);
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) || player.status().finished {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
        }
    }
    for t in tasks {
        t.abort();
    }
    print_status(&id, y.role, &clock, &player, &net, &lock, &counters);
    // Stop the sink cleanly (flushes a virtual sink's recording).
    match Arc::try_unwrap(player) {
        Ok(p) => p.stop()?,
        Err(p) => drop(p),
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counters {
    sntp_ok: std::sync::atomic::AtomicU64,
    sntp_failed: std::sync::atomic::AtomicU64,
    timelines: std::sync::atomic::AtomicU64,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<UdpSocket, NodeError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

fn print_status(
    id: &str,
    role: Role,
    clock: &LocalClock,
    player: &Player,
    net: &Mutex<NetState>,
    lock: &Mutex<LockStatus>,
    c: &Counters,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let est = net.lock().ok().and_then(|n| n.estimate);
    let st = player.status();
    let mono = mono_ns();
    let local = clock.from_mono(mono);
    let line = Status {
        mono_ns: mono,
        local_ns: local,
        fleet_ns: match role {
            Role::Follower => est.map(|e| e.fleet_at(local)),
            _ => Some(local),
        },
        node: id,
        role,
        position_s: st.position.map(|p| p / st.track_rate.max(1) as f64),
        track: st.track,
        offset_ns: est.map(|e| e.offset_ns),
        clock_ppm: est.map(|e| e.ppm),
        dispersion_ns: est.map(|e| e.dispersion_ns),
        min_delay_ns: est.map(|e| e.min_delay_ns),
        clock_steps: est.map(|e| e.steps),
        sntp_ok: c.sntp_ok.load(Relaxed),
        sntp_failed: c.sntp_failed.load(Relaxed),
        timelines: c.timelines.load(Relaxed),
        lock: lock.lock().map(|l| l.clone()).unwrap_or_default(),
        underruns: player.underruns(),
    };
    if let Ok(text) = serde_json::to_string(&line) {
        println!("{text}");
    }
}

/// Leader: answer subscriptions and send the timeline to every live subscriber.
async fn publish_timeline(sock: UdpSocket, net: Arc<Mutex<NetState>>, hz: f64) {
    let mut subscribers: HashMap<SocketAddr, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz.max(0.1)));
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, peer)) = r {
                    if timeline::parse_subscribe(&buf[..n]).is_some() {
                        if subscribers.len() < 1024 || subscribers.contains_key(&peer) {
                            subscribers.insert(peer, tokio::time::Instant::now());
                        }
                        // Answer at once, so a joiner need not wait for the next tick.
                        if let Some(bytes) = current(&net) {
                            let _ = sock.send_to(&bytes, peer).await;
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                subscribers.retain(|_, seen| now.duration_since(*seen) < Duration::from_secs(5));
                if let Some(bytes) = current(&net) {
                    for peer in subscribers.keys() {
                        let _ = sock.send_to(&bytes, peer).await;
                    }
                }
            }
        }
    }
}

fn current(net: &Mutex<NetState>) -> Option<Vec<u8>> {
    let tl = net.lock().ok()?.timeline.clone()?;
    tl.to_osc().ok()
}

/// Follower: SNTP exchanges at `hz`, into the clock filter.
async fn discipline(
    client: SntpClient,
    server: SocketAddr,
    cfg: FilterConfig,
    hz: f64,
    net: Arc<Mutex<NetState>>,
    c: Arc<Counters>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut filter = ClockFilter::new(cfg);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz.max(0.05)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match client.exchange(server).await {
            Ok(ex) => {
                c.sntp_ok.fetch_add(1, Relaxed);
                let est = filter.add(ex);
                if let Ok(mut n) = net.lock() {
                    n.estimate = est;
                }
            }
            Err(e) => {
                c.sntp_failed.fetch_add(1, Relaxed);
                tracing::debug!("{e}");
            }
        }
    }
}

/// A node's clock plus its output latency: turns fleet time into the monotonic instant at
/// which the DAC must play.
#[derive(Debug, Clone, Copy)]
struct LocalTime {
    clock: LocalClock,
    latency_ns: i64,
}

/// Follower: subscribe to the leader, take its timeline, open its track — at the scheduled
/// sample when the timeline's anchor lies in the future.
async fn follow_timeline(
    sock: UdpSocket,
    leader: SocketAddr,
    id: String,
    local: LocalTime,
    net: Arc<Mutex<NetState>>,
    player: Arc<Player>,
    c: Arc<Counters>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let Ok(hello) = timeline::subscribe_message(&id) else {
        return;
    };
    let mut resubscribe = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 1500];
    let mut loaded: Option<String> = None;
    loop {
        tokio::select! {
            _ = resubscribe.tick() => {
                let _ = sock.send_to(&hello, leader).await;
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, _)) = r else { continue };
                let Ok(tl) = Timeline::from_osc(&buf[..n]) else {
                    tracing::debug!("ignoring a datagram that is not a timeline");
                    continue;
                };
                c.timelines.fetch_add(1, Relaxed);
                let newer = {
                    let Ok(mut state) = net.lock() else { continue };
                    let newer = state.timeline.as_ref().is_none_or(|old| old.leader != tl.leader || tl.seq > old.seq);
                    if newer {
                        state.timeline = Some(tl.clone());
                    }
                    newer
                };
                if newer && loaded.as_deref() != Some(tl.track.as_str()) {
                    // Without a clock estimate we cannot tell whether the start is still
                    // ahead: wait for SNTP (the next timeline retries).
                    let Some(est) = net.lock().ok().and_then(|n| n.estimate) else { continue };
                    let est = Some(est);
                    // When (monotonic) the anchor must be heard, if that is still ahead.
                    let scheduled = est.and_then(|e| {
                        let mono = local.clock.to_mono(e.local_at(tl.anchor_fleet_ns)).saturating_add_signed(-local.latency_ns);
                        (mono > mono_ns() + 50_000_000).then_some(mono)
                    });
                    match audio::open_track(&tl.track) {
                        Ok(src) => {
                            let start = tl.anchor_frame.max(0.0).round() as u64;
                            let sent = match scheduled {
                                Some(at) => player.load_at(src, start, at),
                                None => player.load(src, 0),
                            };
                            if sent.is_ok() {
                                loaded = Some(tl.track.clone());
                            }
                        }
                        Err(e) => tracing::error!("cannot open the fleet's track {}: {e}", tl.track),
                    }
                }
            }
        }
    }
}
