//! `convoy tool scenario`: the sync test rig. Starts a leader and N−1 followers as separate
//! `convoy node` processes on loopback, each with its own injected clock offset and drift
//! and a virtual sink with its own crystal error that records what it played (decoded from
//! the position pilot); puts a userspace impairment relay (delay, jitter, loss, duplication,
//! stalls) between every follower and the leader; then compares the recordings on the
//! shared monotonic clock and prints the true inter-node playback offsets. With `--auto`
//! every node elects its role, and every datagram between two nodes (heartbeats, SNTP,
//! timeline) crosses a relay in front of the receiving node's ports (`AutoNet`). With
//! `--flood-pps` a stranger ([`crate::rig::flood`]) floods the leader's timeline, SNTP
//! and control ports for a while, and the summary compares the followers' offsets and the
//! leader's CPU before and during the flood.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::rig::impair::{self, ImpairConfig, ImpairStats};
use crate::rig::measure::{after_lock_ms, offsets, quantile, Trace};

/// Scenario parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Nodes including the leader.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Run time, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// One-way delay, ms.
    #[arg(long, default_value_t = 5.0)]
    pub delay_ms: f64,
    /// Uniform jitter ±, ms.
    #[arg(long, default_value_t = 3.0)]
    pub jitter_ms: f64,
    /// Loss probability per datagram and direction.
    #[arg(long, default_value_t = 0.02)]
    pub loss: f64,
    /// Duplication probability.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate: f64,
    /// Network stall every N seconds (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub stall_every_s: f64,
    /// Stall length, ms.
    #[arg(long, default_value_t = 100.0)]
    pub stall_ms: f64,
    /// Largest injected clock drift, ±ppm (spread over the nodes).
    #[arg(long, default_value_t = 200.0)]
    pub clock_ppm: f64,
    /// Largest injected clock offset, ±seconds.
    #[arg(long, default_value_t = 3.0)]
    pub clock_offset_s: f64,
    /// Largest DAC rate error, ±ppm.
    #[arg(long, default_value_t = 150.0)]
    pub dac_ppm: f64,
    /// Step the leader's clock at this time (s; 0: never).
    #[arg(long, default_value_t = 0.0)]
    pub leader_step_at_s: f64,
    /// Leader clock step size, ms.
    #[arg(long, default_value_t = 2000.0)]
    pub leader_step_ms: f64,
    /// The leader's sound device stops for --leader-audio-stall-ms at this time (s after
    /// the followers start; 0: never), as a stream being rebuilt.
    #[arg(long, default_value_t = 0.0)]
    pub leader_audio_stall_at_s: f64,
    /// Length of the leader's device outage, ms.
    #[arg(long, default_value_t = 300.0)]
    pub leader_audio_stall_ms: f64,
    /// The leader starts its track this many seconds after it starts (a scheduled start
    /// announced to followers that are already running, when larger than --join-after-s).
    #[arg(long, default_value_t = 0.5)]
    pub start_in_s: f64,
    /// Followers start this many seconds after the leader.
    #[arg(long, default_value_t = 2.0)]
    pub join_after_s: f64,
    /// Output directory (recordings, logs, offsets.csv, summary.json, offsets.png).
    #[arg(long, default_value = "target/scenario")]
    pub out: PathBuf,
    /// First UDP port used.
    #[arg(long, default_value_t = 19_100)]
    pub base_port: u16,
    /// Random seed for the impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A named impairment profile instead of --delay-ms, --jitter-ms, --loss,
    /// --duplicate and the stall flags (docs/sync.md, "Impairment profiles").
    #[arg(long, value_enum, conflicts_with_all = ["delay_ms", "jitter_ms", "loss", "duplicate", "stall_every_s", "stall_ms"])]
    pub profile: Option<impair::Profile>,
    /// Every node runs `sync.role=auto`: the fleet elects its leader (the first node has
    /// the highest priority, the next ones less and less). Every node's ports sit behind
    /// impairment relays, so heartbeats, SNTP and the timeline are impaired whoever leads.
    #[arg(long)]
    pub auto: bool,
    /// With `--auto`: SIGKILL the leader this many seconds after it started (0: never);
    /// the next node takes over and becomes the reference the others are measured against.
    #[arg(long, default_value_t = 0.0)]
    pub kill_leader_at_s: f64,
    /// Extra `--set KEY=VALUE` for every node (repeatable).
    #[arg(long = "node-set", value_name = "KEY=VALUE")]
    pub node_set: Vec<String>,
    /// Flood the leader's timeline, SNTP and OSC control ports with hostile datagrams at
    /// this total rate, per second (0: no flood).
    #[arg(long, default_value_t = 0.0)]
    pub flood_pps: f64,
    /// The flood starts this many seconds after the followers (the same length before it
    /// is the calm reference).
    #[arg(long, default_value_t = 20.0)]
    pub flood_at_s: f64,
    /// Flood length, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub flood_s: f64,
    /// Loopback source addresses the flood comes from (127.0.66.1, …).
    #[arg(long, default_value_t = 32)]
    pub flood_sources: u8,
}

/// What the flood did and cost (`--flood-pps`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodSummary {
    /// Achieved rate, datagrams/s.
    pub rate_pps: f64,
    /// Datagrams sent.
    pub sent: u64,
    /// Seconds.
    pub seconds: f64,
    /// Rejections the leader counted by the end of the run (all reasons).
    pub leader_rejected: u64,
    /// Leader CPU (% of one core) over the same length before the flood, and during it.
    pub leader_cpu_calm_pct: f64,
    /// During.
    pub leader_cpu_flood_pct: f64,
    /// All followers' |offset| p99 over the same length before the flood (after lock),
    /// and during it, ms.
    pub p99_calm_ms: f64,
    /// During.
    pub p99_flood_ms: f64,
    /// Largest |offset| during the flood, ms.
    pub max_flood_ms: f64,
}

/// The flood window on the shared monotonic clock, with what it measured.
struct FloodRun {
    calm_from_mono: u64,
    from_mono: u64,
    to_mono: u64,
    report: crate::rig::flood::FloodReport,
    cpu_calm_pct: f64,
    cpu_flood_pct: f64,
}

/// Per-follower results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeResult {
    /// Node name.
    pub node: String,
    /// Injected clock offset (s), drift (ppm), DAC error (ppm).
    pub clock_offset_s: f64,
    /// Injected drift.
    pub clock_ppm: f64,
    /// Injected DAC error.
    pub dac_ppm: f64,
    /// Seconds from process start to lock (|offset| < 1 ms held 2 s).
    pub join_to_lock_s: Option<f64>,
    /// |offset| after lock, ms: p50, p99, max.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// Max.
    pub max_ms: f64,
    /// Samples after lock.
    pub samples: usize,
    /// Hard seeks after lock (from the node's status).
    pub seeks_after_lock: u64,
    /// Hard seeks in all (the join seek included).
    pub seeks: u64,
    /// |offset| over the first second of playback, ms (max): how well a start lined up.
    pub first_second_max_ms: f64,
    /// Largest |speed| the PLL applied, ppm.
    pub max_speed_ppm: f64,
    /// SNTP estimate error vs injected truth, µs: p50 and max of |error|.
    pub sntp_err_p50_us: f64,
    /// Max.
    pub sntp_err_max_us: f64,
    /// The verified clock bound its status lines reported while locked, µs: p50 and max.
    pub bound_p50_us: f64,
    /// Max.
    pub bound_max_us: f64,
    /// Status lines that said locked without a verified bound (always 0: the lock needs one).
    pub locked_unbounded: usize,
}

/// Whole-scenario summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Per follower.
    pub nodes: Vec<NodeResult>,
    /// All followers after lock: p50/p99/max |offset| ms.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// Max.
    pub max_ms: f64,
    /// Worst join-to-lock, s.
    pub worst_lock_s: Option<f64>,
    /// Hard seeks after lock, all followers.
    pub seeks_after_lock: u64,
    /// Largest |speed|, ppm.
    pub max_speed_ppm: f64,
    /// Median and worst (p99 over the nodes) process start → lock, s.
    pub lock_median_s: Option<f64>,
    /// p99.
    pub lock_p99_s: Option<f64>,
    /// `--kill-leader-at-s`: the old leader's death → the next one's first status line as
    /// leader, ms.
    pub failover_ms: Option<f64>,
    /// Largest |offset| of any survivor against the new leader from 1 s before the kill to
    /// 5 s after it, ms.
    pub failover_max_ms: Option<f64>,
    /// Datagrams dropped / received by the relays.
    pub relay_dropped: u64,
    /// Received.
    pub relay_received: u64,
    /// The flood, when there was one.
    pub flood: Option<FloodSummary>,
    /// `--leader-audio-stall-at-s`: the leader's device outage.
    pub leader_outage: Option<OutageSummary>,
    /// A profile with a link outage: how the followers held over through the first one.
    pub holdover: Option<HoldoverSummary>,
}

/// The followers through the first link outage of the profile: they free-run on their
/// learned frequency and the timeline they last heard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HoldoverSummary {
    /// Outage length, s.
    pub seconds: f64,
    /// Largest |offset| of any follower during the outage, ms.
    pub max_ms: f64,
    /// Largest drift over the outage: |mean offset over its last second − mean offset
    /// over the second before it|, ms.
    pub drift_ms: f64,
    /// Largest |offset| in the 5 s after the link returned, ms.
    pub rejoin_max_ms: f64,
}

/// What the leader's device outage did to the fleet. Each outage window runs from the
/// leader's last period heard before it to 2 s after its first period heard after it (the
/// old contents of its ring, then its catch-up seek); the followers' offsets against the
/// leader in these windows are left out of the figures above and replaced by their
/// offsets against each other.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutageSummary {
    /// Silences found in the leader's recording.
    pub gaps: usize,
    /// The leader's catch-up seeks (its last status).
    pub leader_catch_ups: u64,
    /// Largest |offset| between two followers in the windows, ms (NaN with one follower).
    pub followers_max_ms: f64,
}

fn spread(k: usize, n: usize) -> f64 {
    // Deterministic, distinct values in [-1, 1] per node.
    if n <= 1 {
        return 0.0;
    }
    let x = ((k * 7 + 3) % n) as f64 / (n - 1) as f64;
    2.0 * x - 1.0
}

struct Node {
    name: String,
    child: Child,
    log: PathBuf,
    rec: PathBuf,
    clock_offset_s: f64,
    clock_ppm: f64,
    dac_ppm: f64,
    start_mono: u64,
}

/// Run a scenario and return its summary (also written to `out/summary.json`).
pub fn run(args: &ScenarioArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    anyhow::ensure!(
        args.flood_pps == 0.0 || args.flood_at_s + args.flood_s <= args.seconds,
        "the flood (--flood-at-s + --flood-s) must end within --seconds"
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let exe = std::env::current_exe().context("cannot find the convoy binary")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    let stats = Arc::new(ImpairStats::default());
    let leader_osc = args.base_port;
    let leader_sntp = args.base_port + 1;
    let mut nodes = Vec::new();
    // One fleet key for the run, handed to every node in its environment.
    let key: String = {
        use std::io::Read;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .context("cannot read /dev/urandom")?;
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let spawn = |k: usize, extra: Vec<String>| -> anyhow::Result<Node> {
        let name = if k == 0 {
            "leader".to_string()
        } else {
            format!("bike-{k}")
        };
        let clock_offset_s = args.clock_offset_s * spread(k, args.nodes);
        let clock_ppm = args.clock_ppm * spread(k + 1, args.nodes);
        let dac_ppm = args.dac_ppm * spread(k + 2, args.nodes);
        let rec = args.out.join(format!("{name}.csv"));
        let log = args.out.join(format!("{name}.log"));
        let mut sets = vec![
            format!("node.id={name}"),
            "audio.sink=virtual".into(),
            format!("audio.virtual.record={}", rec.display()),
            "audio.virtual.pilot=true".into(),
            format!("audio.virtual.rate_error_ppm={dac_ppm}"),
            format!("clock.offset_ms={}", clock_offset_s * 1e3),
            format!("clock.ppm={clock_ppm}"),
            "sync.bind=127.0.0.1".into(),
        ];
        sets.extend(extra);
        sets.extend(args.node_set.iter().cloned());
        let mut cmd = Command::new(&exe);
        cmd.env("CONVOY_KEY", &key);
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args([
            "--log",
            "warn",
            "node",
            "--track",
            "pilot",
            "--status-every",
            "0.5",
        ]);
        if k == 0 {
            cmd.args(["--start-in", &args.start_in_s.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::File::create(
                args.out.join(format!("{name}.err")),
            )?))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Node {
            name,
            child,
            log,
            rec,
            clock_offset_s,
            clock_ppm,
            dac_ppm,
            start_mono: crate::clock::mono_ns(),
        })
    };
    anyhow::ensure!(
        args.kill_leader_at_s <= 0.0 || (args.auto && args.nodes >= 3),
        "--kill-leader-at-s needs --auto and at least 3 nodes"
    );
    anyhow::ensure!(
        args.flood_pps <= 0.0 || !args.auto,
        "--flood-pps runs with fixed roles (without --auto)"
    );
    // Auto: every node's timeline, SNTP and membership ports, behind relays; heartbeats
    // go to every node's relayed membership port.
    let net = AutoNet {
        nodes: args.nodes,
        base_port: args.base_port,
    };
    let broadcast = (0..args.nodes)
        .map(|k| format!("\"{}\"", net.relayed(k, net.ports(k)[2])))
        .collect::<Vec<_>>()
        .join(",");
    let auto_sets = |k: usize| -> Vec<String> {
        let [osc, sntp, fleet] = net.ports(k);
        vec![
            "sync.role=auto".to_string(),
            format!("sync.bind={}", net.ip(k)),
            format!("sync.osc_port={osc}"),
            format!("sync.sntp_port={sntp}"),
            format!("fleet.port={fleet}"),
            "fleet.mdns=false".to_string(),
            format!("fleet.broadcast=[{broadcast}]"),
            format!("fleet.priority={}", 200usize.saturating_sub(k).max(1)),
        ]
    };
    let mut leader_sets = if args.auto {
        auto_sets(0)
    } else {
        vec![
            "sync.role=leader".to_string(),
            format!("sync.osc_port={leader_osc}"),
            format!("sync.sntp_port={leader_sntp}"),
        ]
    };
    let leader_control = args.base_port + 2;
    if args.flood_pps > 0.0 {
        // The control port is open, to this machine's own address only.
        leader_sets.extend([
            "osc.enabled=true".to_string(),
            "osc.bind=127.0.0.1".to_string(),
            format!("osc.port={leader_control}"),
            r#"security.control.allow=["127.0.0.1/32"]"#.to_string(),
        ]);
    }
    if args.leader_step_at_s > 0.0 {
        leader_sets.push(format!(
            "clock.step_at_s={}",
            args.leader_step_at_s + args.join_after_s
        ));
        leader_sets.push(format!("clock.step_ms={}", args.leader_step_ms));
    }
    if args.leader_audio_stall_at_s > 0.0 {
        leader_sets.push(format!(
            "audio.virtual.stall_at_s={}",
            args.leader_audio_stall_at_s + args.join_after_s
        ));
        leader_sets.push(format!(
            "audio.virtual.stall_ms={}",
            args.leader_audio_stall_ms
        ));
    }
    let impair = |seed: u64| {
        let seed = args.seed.wrapping_mul(1000) + seed;
        match args.profile {
            Some(p) => p.config(seed),
            None => ImpairConfig {
                delay_ms: args.delay_ms,
                jitter_ms: args.jitter_ms,
                loss: args.loss,
                duplicate: args.duplicate,
                stall_every_s: args.stall_every_s,
                stall_ms: args.stall_ms,
                seed,
                ..ImpairConfig::default()
            },
        }
    };
    // The relays' clock starts about here (outage windows are timed from it).
    let relays_mono = crate::clock::mono_ns();
    if args.auto {
        net.spawn_relays(&rt, &impair, &stats)?;
    }
    let mut leader = spawn(0, leader_sets)?;
    // Relays: one timeline and one SNTP relay per follower, each with its own seed.
    let mut relay_ports = Vec::new();
    for k in (1..args.nodes).filter(|_| !args.auto) {
        let osc = args.base_port + 10 + 2 * k as u16;
        let sntp = osc + 1;
        for (listen, upstream, salt) in [(osc, leader_osc, 0u64), (sntp, leader_sntp, 1)] {
            let cfg = impair(2 * k as u64 + salt);
            let listen_addr: SocketAddr = ([127, 0, 0, 1], listen).into();
            let up: SocketAddr = ([127, 0, 0, 1], upstream).into();
            let sock = rt
                .block_on(tokio::net::UdpSocket::bind(listen_addr))
                .with_context(|| format!("cannot bind relay {listen_addr}"))?;
            // Upstream, follower k is at an address of its own (127.2.0.k), as a bike
            // is on a real network: the leader's per-address SNTP allowance is then each
            // follower's own, not shared by all of them through 127.0.0.1.
            let own = IpAddr::V4(Ipv4Addr::new(127, 2, 0, k as u8));
            rt.spawn(impair::relay_as(sock, up, cfg, stats.clone(), move |_| {
                Some(own)
            }));
        }
        relay_ports.push((osc, sntp));
    }
    std::thread::sleep(Duration::from_secs_f64(args.join_after_s));
    for k in (1..args.nodes).filter(|_| args.auto) {
        nodes.push(spawn(k, auto_sets(k))?);
    }
    for (k, (osc, sntp)) in relay_ports.iter().enumerate() {
        nodes.push(spawn(
            k + 1,
            vec![
                "sync.role=follower".into(),
                format!("sync.leader=127.0.0.1:{osc}"),
                format!("sync.sntp_server=127.0.0.1:{sntp}"),
                "sync.sntp_server_signed=true".into(),
            ],
        )?);
    }
    if args.auto {
        eprintln!(
            "scenario: {} nodes with sync.role=auto, every node behind its relays",
            args.nodes
        );
    }
    let network = match args.profile {
        Some(p) => format!("profile {p:?}"),
        None => format!(
            "delay {} ± {} ms, loss {:.1} %",
            args.delay_ms,
            args.jitter_ms,
            args.loss * 100.0
        ),
    };
    eprintln!(
        "scenario: leader + {} followers for {:.0} s ({network}, clocks ±{} ppm / ±{} s, DACs ±{} ppm)",
        args.nodes - 1,
        args.seconds,
        args.clock_ppm,
        args.clock_offset_s,
        args.dac_ppm
    );
    let joined = std::time::Instant::now();
    let deadline = joined + Duration::from_secs_f64(args.seconds);
    let flood = if args.flood_pps > 0.0 {
        let ports = (leader_osc, leader_sntp, leader_control);
        Some(flood_leader(args, &key, leader.child.id(), ports, joined)?)
    } else {
        None
    };
    let kill_at = (args.kill_leader_at_s > 0.0)
        .then(|| leader.start_mono + (args.kill_leader_at_s * 1e9) as u64);
    let mut killed_at = None;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        if killed_at.is_none() && kill_at.is_some_and(|k| crate::clock::mono_ns() >= k) {
            // No goodbye: the fleet notices by the heartbeat timeout.
            leader.child.kill().context("cannot kill the leader")?;
            killed_at = Some(crate::clock::mono_ns());
            eprintln!("scenario: leader killed");
        }
    }
    // SIGTERM: nodes flush their recordings and exit.
    for n in nodes.iter().chain(std::iter::once(&leader)) {
        super::terminate(&n.child);
    }
    for n in nodes.iter_mut().chain(std::iter::once(&mut leader)) {
        let _ = n.child.wait();
    }
    drop(rt);
    match killed_at {
        // The killed leader left no recording: measure against its successor.
        Some(at) => analyse(
            args,
            &nodes[0],
            &nodes[1..],
            &stats,
            None,
            Some(at),
            relays_mono,
        ),
        None => analyse(
            args,
            &leader,
            &nodes,
            &stats,
            flood.as_ref(),
            None,
            relays_mono,
        ),
    }
}

/// Where the nodes of an `--auto` scenario live and how they reach each other. Node k
/// binds its timeline, SNTP and membership ports on its own loopback address
/// 127.0.x.y (the guard rate-limits per source address, as bikes on a WiFi have one each);
/// a relay for each port listens on its *relayed* address 127.1.x.y and forwards to it.
/// Heartbeats go to the relayed membership ports, and each relay sends on from the
/// sender's relayed address, so a node learns every peer at its relayed address and
/// reaches whoever leads (SNTP, timeline, and the replies) through that peer's relays:
/// every datagram between two nodes crosses exactly one relay, each direction impaired.
struct AutoNet {
    nodes: usize,
    base_port: u16,
}

impl AutoNet {
    /// Node k's own address.
    fn ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, (k / 250) as u8, (k % 250 + 1) as u8)
    }

    /// Node k's timeline, SNTP and membership ports.
    fn ports(&self, k: usize) -> [u16; 3] {
        let p = self.base_port + 10 * k as u16;
        [p, p + 1, p + 2]
    }

    /// Where the others reach node k's `port`.
    fn relayed(&self, k: usize, port: u16) -> SocketAddr {
        let [_, _, c, d] = self.ip(k).octets();
        SocketAddr::from(([127, 1, c, d], port))
    }

    /// A sender's relayed address, from its own (None: not a node's).
    fn relayed_ip(from: SocketAddr) -> Option<IpAddr> {
        match from.ip() {
            IpAddr::V4(ip) if ip.octets()[..2] == [127, 0] => {
                let [_, _, c, d] = ip.octets();
                Some(Ipv4Addr::new(127, 1, c, d).into())
            }
            _ => None,
        }
    }

    /// One relay in front of each port of every node, each with its own seed.
    fn spawn_relays(
        &self,
        rt: &tokio::runtime::Runtime,
        impair: &dyn Fn(u64) -> ImpairConfig,
        stats: &Arc<ImpairStats>,
    ) -> anyhow::Result<()> {
        for k in 0..self.nodes {
            for (i, port) in self.ports(k).into_iter().enumerate() {
                let listen = self.relayed(k, port);
                let sock = rt
                    .block_on(tokio::net::UdpSocket::bind(listen))
                    .with_context(|| format!("cannot bind relay {listen}"))?;
                let up = SocketAddr::new(self.ip(k).into(), port);
                let cfg = impair(3 * k as u64 + i as u64);
                rt.spawn(impair::relay_as(
                    sock,
                    up,
                    cfg,
                    stats.clone(),
                    AutoNet::relayed_ip,
                ));
            }
        }
        Ok(())
    }
}

/// Waits until `flood_at_s` after `joined`, then floods the leader's timeline, SNTP and
/// control ports for `flood_s`, measuring its CPU over the flood and the same length
/// before it. Among the datagrams are replays of genuine ones (sealed here with the run's
/// key, as a sniffer would have recorded them).
fn flood_leader(
    args: &ScenarioArgs,
    key: &str,
    leader_pid: u32,
    (timeline, sntp, control): (u16, u16, u16),
    joined: std::time::Instant,
) -> anyhow::Result<FloodRun> {
    use crate::rig::flood::{self, Flood, Target};
    use crate::security::{envelope, sender_id, FleetKey, Keyring};
    let calm_at = joined + Duration::from_secs_f64((args.flood_at_s - args.flood_s).max(0.0));
    let start_at = joined + Duration::from_secs_f64(args.flood_at_s);
    std::thread::sleep(calm_at.saturating_duration_since(std::time::Instant::now()));
    let calm_cpu = flood::cpu_seconds(leader_pid)?;
    let calm_mono = crate::clock::mono_ns();
    std::thread::sleep(start_at.saturating_duration_since(std::time::Instant::now()));
    let ring = Keyring::new(FleetKey::from_text(1, key)?);
    let hello = crate::sync::timeline::subscribe_message("bike-1")?;
    let now = crate::clock::realtime_ns().max(0) as u64;
    let captured = (1..=4)
        .map(|seq| envelope::seal(&ring, sender_id("bike-1"), seq, now, &hello))
        .collect::<Result<Vec<_>, _>>()?;
    let to = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let attack = Flood {
        targets: vec![
            (to(timeline), Target::Fleet),
            (to(sntp), Target::Fleet),
            (to(control), Target::Control),
        ],
        rate_pps: args.flood_pps,
        duration: Duration::from_secs_f64(args.flood_s),
        sources: flood::loopback_sources(args.flood_sources),
        captured,
        impersonate: "leader".into(),
        seed: args.seed.max(1),
    };
    let flood_cpu = flood::cpu_seconds(leader_pid)?;
    let from_mono = crate::clock::mono_ns();
    eprintln!(
        "scenario: flooding the leader at {:.0} datagrams/s for {:.0} s",
        args.flood_pps, args.flood_s
    );
    let report = attack.run(&std::sync::atomic::AtomicBool::new(false))?;
    let to_mono = crate::clock::mono_ns();
    let pct = |cpu: f64, from: u64, to: u64| 100.0 * cpu / ((to - from).max(1) as f64 / 1e9);
    Ok(FloodRun {
        calm_from_mono: calm_mono,
        from_mono,
        to_mono,
        cpu_calm_pct: pct(flood_cpu - calm_cpu, calm_mono, from_mono),
        cpu_flood_pct: pct(
            flood::cpu_seconds(leader_pid)? - flood_cpu,
            from_mono,
            to_mono,
        ),
        report,
    })
}

/// The last status line (JSON) of a node's log.
pub(crate) fn last_status(log: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

fn statuses(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn analyse(
    args: &ScenarioArgs,
    leader: &Node,
    nodes: &[Node],
    stats: &ImpairStats,
    flood: Option<&FloodRun>,
    killed_at: Option<u64>,
    relays_mono: u64,
) -> anyhow::Result<Summary> {
    use std::sync::atomic::Ordering::Relaxed;
    let rate = 44_100.0;
    let lead = Trace::load(&leader.rec, rate)?;
    // Fleet clock the reference serves (mono → fleet), from its status lines, to check
    // SNTP estimates (a leader's fleet time is its local time unless it was promoted).
    let leader_statuses = statuses(&leader.log);
    let leader_clock: Vec<(f64, f64)> = leader_statuses
        .iter()
        .filter(|s| s["role"] == "leader")
        .filter_map(|s| Some((s["mono_ns"].as_f64()?, s["fleet_ns"].as_f64()?)))
        .collect();
    let failover_ms = killed_at.and_then(|k| {
        let t = leader_statuses
            .iter()
            .filter(|s| s["role"] == "leader")
            .find_map(|s| s["mono_ns"].as_u64().filter(|&t| t > k))?;
        Some((t - k) as f64 / 1e6)
    });
    let mut failover_max: Option<f64> = None;
    let leader_local_at = |mono: f64| -> Option<f64> {
        let i = leader_clock.partition_point(|p| p.0 <= mono);
        let (a, b) = (leader_clock.get(i.checked_sub(1)?)?, leader_clock.get(i)?);
        if b.1 - a.1 > (b.0 - a.0) * 1.01 + 1e7 || b.1 < a.1 {
            return None; // across the leader's clock step
        }
        Some(a.1 + (b.1 - a.1) * (mono - a.0) / (b.0 - a.0))
    };
    // The leader's device outages, each with the time it needs to play out its ring's old
    // contents and seek back onto the line.
    let outages: Vec<(u64, u64)> = if args.leader_audio_stall_at_s > 0.0 {
        lead.gaps((args.leader_audio_stall_ms * 0.5e6) as u64)
            .into_iter()
            .map(|(a, b)| (a, b + 2_000_000_000))
            .collect()
    } else {
        Vec::new()
    };
    let in_outage = |t: u64| outages.iter().any(|&(a, b)| (a..=b).contains(&t));
    let mut csv = std::fs::File::create(args.out.join("offsets.csv"))?;
    writeln!(csv, "t_s,node,offset_ms")?;
    let t_origin = lead.span().map_or(0, |s| s.0);
    let mut results = Vec::new();
    let mut all_after = Vec::new();
    let (mut calm, mut flooded) = (Vec::new(), Vec::new());
    let mut traces = Vec::with_capacity(nodes.len());
    let outage = args.profile.and_then(|p| p.config(1).outage).map(|o| {
        let at = relays_mono + (o.at_s * 1e9) as u64;
        (o.length_s, at, at + (o.length_s * 1e9) as u64)
    });
    let mut holdover: Option<HoldoverSummary> = None;
    for n in nodes {
        let trace = Trace::load(&n.rec, rate)?;
        let series = offsets(&lead, &trace, 100_000_000);
        if let Some((seconds, from, to)) = outage {
            let within = |a: u64, b: u64| -> Vec<f64> {
                series
                    .iter()
                    .filter(|(t, _)| (a..b).contains(t))
                    .map(|(_, o)| o * 1e3)
                    .collect()
            };
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let during = within(from, to);
            let (before, last) = (
                within(from - 1_000_000_000, from),
                within(to - 1_000_000_000, to),
            );
            let after = within(to, to + 5_000_000_000);
            if !during.is_empty() && !before.is_empty() && !last.is_empty() {
                let h = holdover.get_or_insert(HoldoverSummary {
                    seconds,
                    max_ms: 0.0,
                    drift_ms: 0.0,
                    rejoin_max_ms: 0.0,
                });
                h.max_ms = during.iter().fold(h.max_ms, |m, o| m.max(o.abs()));
                h.drift_ms = h.drift_ms.max((mean(&last) - mean(&before)).abs());
                h.rejoin_max_ms = after.iter().fold(h.rejoin_max_ms, |m, o| m.max(o.abs()));
            }
        }
        for (t, off) in &series {
            writeln!(
                csv,
                "{:.3},{},{:.6}",
                (*t as f64 - t_origin as f64) * 1e-9,
                n.name,
                off * 1e3
            )?;
        }
        if let Some(k) = killed_at {
            let around = series
                .iter()
                .filter(|(t, _)| (k.saturating_sub(1_000_000_000)..k + 5_000_000_000).contains(t))
                .map(|(_, o)| o.abs() * 1e3);
            failover_max = around.fold(failover_max, |m, o| Some(m.map_or(o, |m: f64| m.max(o))));
        }
        let outside: Vec<(u64, f64)> = series
            .iter()
            .copied()
            .filter(|(t, _)| !in_outage(*t))
            .collect();
        let (lock, after) = after_lock_ms(&outside);
        all_after.extend(after.iter().copied());
        if let Some(f) = flood {
            for (t, o) in series.iter().filter(|(t, _)| lock.is_some_and(|l| *t >= l)) {
                if (f.from_mono..f.to_mono).contains(t) {
                    flooded.push(o.abs() * 1e3);
                } else if (f.calm_from_mono..f.from_mono).contains(t) {
                    calm.push(o.abs() * 1e3);
                }
            }
        }
        let status = last_status(&n.log);
        let locked_lines: Vec<serde_json::Value> = statuses(&n.log)
            .into_iter()
            .filter(|s| s["lock"]["locked"].as_bool() == Some(true))
            .collect();
        let bounds: Vec<f64> = locked_lines
            .iter()
            .filter_map(|s| s["clock_bound_ns"].as_f64())
            .map(|b| b / 1e3)
            .collect();
        let sntp_errs: Vec<f64> = statuses(&n.log)
            .iter()
            .filter(|s| s["lock"]["locked"].as_bool() == Some(true))
            .filter_map(|s| {
                let truth = leader_local_at(s["mono_ns"].as_f64()?)?;
                Some((s["fleet_ns"].as_f64()? - truth).abs() / 1e3)
            })
            .collect();
        results.push(NodeResult {
            node: n.name.clone(),
            clock_offset_s: n.clock_offset_s,
            clock_ppm: n.clock_ppm,
            dac_ppm: n.dac_ppm,
            join_to_lock_s: lock.map(|l| (l.saturating_sub(n.start_mono)) as f64 * 1e-9),
            p50_ms: quantile(&after, 0.5),
            p99_ms: quantile(&after, 0.99),
            max_ms: after.iter().copied().fold(f64::NAN, f64::max),
            samples: after.len(),
            seeks_after_lock: status
                .as_ref()
                .and_then(|s| s["lock"]["seeks_after_lock"].as_u64())
                .unwrap_or(0),
            seeks: status
                .as_ref()
                .and_then(|s| s["lock"]["seeks"].as_u64())
                .unwrap_or(0),
            first_second_max_ms: series
                .iter()
                .take_while(|(t, _)| series.first().is_some_and(|f| *t < f.0 + 1_000_000_000))
                .map(|(_, o)| o.abs() * 1e3)
                .fold(f64::NAN, f64::max),
            max_speed_ppm: status
                .as_ref()
                .and_then(|s| s["lock"]["max_abs_speed_ppm"].as_f64())
                .unwrap_or(0.0),
            sntp_err_p50_us: quantile(&sntp_errs, 0.5),
            sntp_err_max_us: sntp_errs.iter().copied().fold(f64::NAN, f64::max),
            bound_p50_us: quantile(&bounds, 0.5),
            bound_max_us: bounds.iter().copied().fold(f64::NAN, f64::max),
            locked_unbounded: locked_lines.len() - bounds.len(),
        });
        traces.push(trace);
    }
    let leader_outage = if args.leader_audio_stall_at_s > 0.0 {
        let mut followers_max_ms = f64::NAN;
        for (i, a) in traces.iter().enumerate() {
            for b in &traces[i + 1..] {
                for (_, o) in offsets(a, b, 10_000_000)
                    .iter()
                    .filter(|(t, _)| in_outage(*t))
                {
                    followers_max_ms = followers_max_ms.max(o.abs() * 1e3);
                }
            }
        }
        Some(OutageSummary {
            gaps: outages.len(),
            leader_catch_ups: last_status(&leader.log)
                .and_then(|s| s["catch_ups"].as_u64())
                .unwrap_or(0),
            followers_max_ms,
        })
    } else {
        None
    };
    let locks: Vec<f64> = results.iter().filter_map(|r| r.join_to_lock_s).collect();
    let summary = Summary {
        lock_median_s: (!locks.is_empty()).then(|| quantile(&locks, 0.5)),
        lock_p99_s: (!locks.is_empty()).then(|| quantile(&locks, 0.99)),
        failover_ms,
        failover_max_ms: failover_max,
        p50_ms: quantile(&all_after, 0.5),
        p99_ms: quantile(&all_after, 0.99),
        max_ms: all_after.iter().copied().fold(f64::NAN, f64::max),
        worst_lock_s: results
            .iter()
            .map(|r| r.join_to_lock_s)
            .try_fold(0.0f64, |m, v| v.map(|v| m.max(v))),
        seeks_after_lock: results.iter().map(|r| r.seeks_after_lock).sum(),
        max_speed_ppm: results.iter().map(|r| r.max_speed_ppm).fold(0.0, f64::max),
        relay_dropped: stats.dropped.load(Relaxed),
        relay_received: stats.received.load(Relaxed),
        flood: flood.map(|f| FloodSummary {
            rate_pps: f.report.rate_pps(),
            sent: f.report.sent,
            seconds: f.report.seconds,
            leader_rejected: last_status(&leader.log)
                .and_then(|s| s["rejected"].as_u64())
                .unwrap_or(0),
            leader_cpu_calm_pct: f.cpu_calm_pct,
            leader_cpu_flood_pct: f.cpu_flood_pct,
            p99_calm_ms: quantile(&calm, 0.99),
            p99_flood_ms: quantile(&flooded, 0.99),
            max_flood_ms: flooded.iter().copied().fold(f64::NAN, f64::max),
        }),
        nodes: results,
        leader_outage,
        holdover,
    };
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    print_summary(&summary);
    let plot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/plot-offsets.py");
    if plot.exists() {
        let _ = Command::new("python3")
            .arg(plot)
            .arg(args.out.join("offsets.csv"))
            .arg(args.out.join("offsets.png"))
            .status();
    }
    Ok(summary)
}

fn print_summary(s: &Summary) {
    println!(
        "{:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>10} {:>11}",
        "node",
        "clock s",
        "clk ppm",
        "dac ppm",
        "lock s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "seeks",
        "max|ppm|",
        "sntp err us",
        "bound us"
    );
    for r in &s.nodes {
        println!(
            "{:<8} {:>+9.3} {:>+8.1} {:>+8.1} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>6} {:>9.1} {:>5.0}/{:<5.0} {:>5.0}/{:<5.0}",
            r.node,
            r.clock_offset_s,
            r.clock_ppm,
            r.dac_ppm,
            r.join_to_lock_s.map_or("never".into(), |l| format!("{l:.2}")),
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.seeks_after_lock,
            r.max_speed_ppm,
            r.sntp_err_p50_us,
            r.sntp_err_max_us,
            r.bound_p50_us,
            r.bound_max_us
        );
    }
    println!(
        "ALL      after lock: p50 {:.4} ms  p99 {:.4} ms  max {:.4} ms; worst join→lock {}; hard seeks after lock {}; max |speed| {:.0} ppm; relays dropped {}/{} datagrams",
        s.p50_ms,
        s.p99_ms,
        s.max_ms,
        s.worst_lock_s.map_or("never".into(), |l| format!("{l:.2} s")),
        s.seeks_after_lock,
        s.max_speed_ppm,
        s.relay_dropped,
        s.relay_received
    );
    if let Some(f) = &s.flood {
        println!(
            "FLOOD    {:.0} datagrams/s for {:.1} s ({} sent), leader rejected {}; followers p99 |offset| calm {:.4} ms, flooded {:.4} ms (max {:.4} ms); leader CPU calm {:.1} %, flooded {:.1} %",
            f.rate_pps,
            f.seconds,
            f.sent,
            f.leader_rejected,
            f.p99_calm_ms,
            f.p99_flood_ms,
            f.max_flood_ms,
            f.leader_cpu_calm_pct,
            f.leader_cpu_flood_pct
        );
    }
    if let Some(o) = &s.leader_outage {
        println!(
            "OUTAGE   leader device silent {} time(s), {} catch-up seek(s); followers against each other meanwhile: max {:.4} ms",
            o.gaps, o.leader_catch_ups, o.followers_max_ms
        );
    }
    if let Some(h) = &s.holdover {
        println!(
            "HOLDOVER link down {:.0} s: followers max |offset| {:.4} ms, drift {:.4} ms; 5 s after: max {:.4} ms",
            h.seconds, h.max_ms, h.drift_ms, h.rejoin_max_ms
        );
    }
    if let (Some(m), Some(p)) = (s.lock_median_s, s.lock_p99_s) {
        println!("start → lock: median {m:.2} s, p99 {p:.2} s");
    }
    if let Some(f) = s.failover_ms {
        println!(
            "failover: new leader {f:.0} ms after the old one was killed; max |offset| from 1 s before to 5 s after: {} ms",
            s.failover_max_ms.map_or("n/a".into(), |m| format!("{m:.3}"))
        );
    }
}
