//! `convoy tool …`: generate the signals the tests, benchmarks and sync rig use, make fleet
//! keys, and (with the `rig` feature) run the sync scenario and the impairment relay.

use std::path::PathBuf;

use anyhow::Context;

use crate::audio::synth::{GeneratedSource, Signal};
use crate::audio::Source;

/// `convoy tool --help` examples (each `  convoy …` line parses; tested in `cli`).
pub(super) const EXAMPLES: &str = "\
Examples:
  convoy tool keygen fleet.key           a new fleet key (copy it to every bike)
  convoy tool gen sine:440 tone.wav --seconds 5 --pcm16
  convoy tool scenario --nodes 3 --seconds 30 --loss 0.05
  convoy tool impair 127.0.0.1:7000 127.0.0.1:7001 --delay-ms 20
  convoy tool impair 127.0.0.1:7000 127.0.0.1:7001 --profile wifi-city";

/// Utility subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ToolCommand {
    /// Run only the fleet membership layer and print the fleet view as JSON lines
    /// (tests and failover measurements).
    #[command(hide = true)]
    Member(super::member::MemberArgs),
    /// Join the Ableton Link session and print what Convoy sees as JSON lines (the Link
    /// interop tests).
    #[command(hide = true)]
    Link(super::link::LinkArgs),
    /// Run the fleet-sync rig: N node processes with skewed clocks and DACs behind an
    /// impaired network; prints measured playback offsets.
    #[cfg(feature = "rig")]
    Scenario(crate::rig::scenario::ScenarioArgs),
    /// A UDP impairment relay (delay, jitter, loss, duplication, stalls, or a named WiFi
    /// profile: heavy delay tails, bursty loss, a loaded direction, power save, outages,
    /// mesh hops) between a listen address and an upstream.
    #[cfg(feature = "rig")]
    Impair {
        /// Listen address, e.g. 127.0.0.1:7000.
        listen: std::net::SocketAddr,
        /// Upstream address.
        upstream: std::net::SocketAddr,
        /// One-way delay, ms.
        #[arg(long, default_value_t = 5.0)]
        delay_ms: f64,
        /// Jitter ±, ms.
        #[arg(long, default_value_t = 3.0)]
        jitter_ms: f64,
        /// Loss probability.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Duplication probability.
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// Stall every N s (0 = never).
        #[arg(long, default_value_t = 0.0)]
        stall_every_s: f64,
        /// Stall length, ms.
        #[arg(long, default_value_t = 100.0)]
        stall_ms: f64,
        /// A named impairment profile instead of the flags above (docs/sync.md,
        /// "Impairment profiles").
        #[arg(long, value_enum, conflicts_with_all = ["delay_ms", "jitter_ms", "loss", "duplicate", "stall_every_s", "stall_ms"])]
        profile: Option<crate::rig::impair::Profile>,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Reach upstream from this local address (e.g. 127.2.0.3), so that upstream sees
        /// the clients of this relay at an address of their own (its per-address rate
        /// limits then apply to them alone, as on a real network). Default: any.
        #[arg(long)]
        from: Option<std::net::IpAddr>,
    },
    /// The impairment relay at the IP layer: TUN devices for a server and its clients
    /// (each moved into its own network namespace by the caller), one seeded model per
    /// client, so TCP crosses the same network as the scenario's UDP
    /// (`tools/snapcast-compare.sh`). Linux, root.
    #[cfg(all(feature = "rig", target_os = "linux"))]
    #[command(hide = true)]
    ImpairTun {
        /// The server side's TUN device name.
        server: String,
        /// One TUN device name per client (client k is impaired like the scenario's
        /// follower k + 1: seed × 1000 + 2(k + 1)).
        #[arg(required = true)]
        clients: Vec<String>,
        /// The impairment profile.
        #[arg(long, value_enum, default_value = "default")]
        profile: crate::rig::impair::Profile,
        /// Random seed (the scenario's --seed).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Make a fleet key: 32 random bytes as hex in a new file readable only by its owner.
    /// Copy the same file to every bike (`security.key_file`).
    Keygen {
        /// Key file to create (never overwritten).
        out: PathBuf,
    },
    /// Write a generated signal to a WAV file (32-bit float, or 16-bit with `--pcm16`).
    Gen {
        /// `demo`, `pilot` or `sine:HZ`.
        signal: String,
        /// Output WAV path.
        out: PathBuf,
        /// Length in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Sample rate.
        #[arg(long, default_value_t = 44_100)]
        rate: u32,
        /// Channels (1 or 2).
        #[arg(long, default_value_t = 2)]
        channels: u16,
        /// 16-bit integer samples instead of 32-bit float.
        #[arg(long)]
        pcm16: bool,
    },
}

/// Parse `demo`, `pilot`, `sine:440`.
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    match s {
        "demo" => Ok(Signal::Demo),
        "pilot" => Ok(Signal::Pilot),
        _ => match s.strip_prefix("sine:") {
            Some(hz) => {
                let f: f64 = hz
                    .parse()
                    .with_context(|| format!("bad frequency in {s:?}"))?;
                anyhow::ensure!(
                    f > 0.0 && f.is_finite(),
                    "frequency must be positive: {s:?}"
                );
                Ok(Signal::Sine(f))
            }
            None => anyhow::bail!("unknown signal {s:?} (expected demo, pilot or sine:HZ)"),
        },
    }
}

/// Run a tool subcommand.
pub fn run(cmd: &ToolCommand) -> anyhow::Result<()> {
    match cmd {
        ToolCommand::Member(_) => anyhow::bail!("`tool member` needs the configuration"),
        ToolCommand::Link(args) => super::link::run(args),
        #[cfg(feature = "rig")]
        ToolCommand::Scenario(args) => crate::rig::scenario::run(args).map(|_| ()),
        #[cfg(feature = "rig")]
        ToolCommand::Impair {
            listen,
            upstream,
            delay_ms,
            jitter_ms,
            loss,
            duplicate,
            stall_every_s,
            stall_ms,
            profile,
            seed,
            from,
        } => {
            let cfg = match profile {
                Some(p) => p.config(*seed),
                None => crate::rig::impair::ImpairConfig {
                    delay_ms: *delay_ms,
                    jitter_ms: *jitter_ms,
                    loss: *loss,
                    duplicate: *duplicate,
                    stall_every_s: *stall_every_s,
                    stall_ms: *stall_ms,
                    seed: *seed,
                    ..Default::default()
                },
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let sock = tokio::net::UdpSocket::bind(listen)
                    .await
                    .with_context(|| format!("cannot bind {listen}"))?;
                let from = *from;
                crate::rig::impair::relay_as(sock, *upstream, cfg, Default::default(), |_| from)
                    .await?;
                Ok(())
            })
        }
        #[cfg(all(feature = "rig", target_os = "linux"))]
        ToolCommand::ImpairTun {
            server,
            clients,
            profile,
            seed,
        } => crate::rig::tun::relay(server, clients, |k| {
            profile.config(seed.wrapping_mul(1000) + 2 * (k as u64 + 1))
        }),
        ToolCommand::Keygen { out } => keygen(out),
        ToolCommand::Gen {
            signal,
            out,
            seconds,
            rate,
            channels,
            pcm16,
        } => {
            anyhow::ensure!(matches!(channels, 1 | 2), "--channels must be 1 or 2");
            let signal = parse_signal(signal)?;
            let mut src = GeneratedSource::new(signal, *rate, *seconds);
            let spec = hound::WavSpec {
                channels: *channels,
                sample_rate: *rate,
                bits_per_sample: if *pcm16 { 16 } else { 32 },
                sample_format: if *pcm16 {
                    hound::SampleFormat::Int
                } else {
                    hound::SampleFormat::Float
                },
            };
            let mut w = hound::WavWriter::create(out, spec)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if src.read(&mut buf, 4096)? == 0 {
                    break;
                }
                for frame in buf.chunks_exact(2) {
                    let samples: &[f32] = if *channels == 1 { &frame[..1] } else { frame };
                    for &x in samples {
                        if *pcm16 {
                            w.write_sample((x.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
                        } else {
                            w.write_sample(x)?;
                        }
                    }
                }
            }
            w.finalize()
                .with_context(|| format!("cannot finish {}", out.display()))?;
            Ok(())
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create key file {} (it must not exist yet)",
                out.display()
            )
        })?;
    writeln!(f, "{hex}").with_context(|| format!("cannot write {}", out.display()))?;
    let key = crate::security::FleetKey::from_text(1, &hex)?;
    println!(
        "wrote {} (fingerprint {})",
        out.display(),
        key.fingerprint()
    );
    Ok(())
}
