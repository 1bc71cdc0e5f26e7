//! `convoy demo`: the whole product on one machine, with no sound card, Arduino or network
//! setup. It writes a fresh fleet key and the built-in show (`shows/demo.toml` with the
//! demo song's beatmap, embedded in the binary) to a temporary directory and starts three
//! bikes as separate `convoy node` processes on loopback — a leader and two followers, each
//! with its own injected clock offset and drift and a virtual DAC with its own crystal
//! error, exactly as real bikes differ. Every bike plays the song and runs the show on a
//! simulated strip, journalling what its strip showed and what its player heard when; the
//! demo replays the light journals as one terminal row per bike while they run (or prints
//! each bike's cues when stdout is not a terminal). At the end it compares the playback
//! logs on the shared monotonic clock (lock time and playback offset, with the measures of
//! `convoy tool scenario`) and the light journals (when each strip showed each beat and
//! cue) and prints the figures.
//!
//! Separate processes rather than in-process nodes: each bike then has its own player,
//! clock, sockets and status output, as on the road, and the demo process only watches.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::mono_ns;
use crate::led::sim::SimStrip;
use crate::rig::measure::{after_lock_ms, offsets, quantile, Trace};
use crate::show::journal::{self, Tail};
use crate::show::Show;

/// The show and beatmap `convoy demo` runs when given no `--show`.
const DEMO_SHOW: &str = include_str!("../../shows/demo.toml");
const DEMO_BEATMAP: &str = include_str!("../../beatmaps/demo.beatmap.json");

/// Arguments of `convoy demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Seconds of music (default: the whole show).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Run this show instead of the built-in one (its tracks must exist on this machine).
    #[arg(long)]
    pub show: Option<PathBuf>,
    /// Keep the run's files (key, journals, playback logs, node logs, summary.json) in this
    /// directory instead of a temporary one that is removed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds between starting the bikes and the first note (they find the fleet clock
    /// meanwhile and start on the same sample).
    #[arg(long, default_value_t = 1.5)]
    pub start_in: f64,
    /// Let the lead bike play through the sound card (`audio.sink = auto`: the null sink
    /// when there is none) instead of a silent virtual DAC.
    #[arg(long)]
    pub hear: bool,
}

/// One simulated bike: its injected imperfections and the files it leaves.
struct Bike {
    name: String,
    leader: bool,
    /// Injected clock offset (ms) and drift (ppm), and DAC crystal error (ppm).
    clock_offset_ms: f64,
    clock_ppm: f64,
    dac_ppm: f64,
    journal: PathBuf,
    child: Option<Child>,
}

/// What the summary reports for one follower against the leader.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BikeFigures {
    /// Bike name.
    pub bike: String,
    /// Seconds from the first note to playback lock (|offset| < 1 ms held 2 s).
    pub lock_s: Option<f64>,
    /// |playback offset| to the leader after lock, ms: p50, p99, max.
    pub offset_ms: [f64; 3],
    /// |light time difference| to the leader for the same beat or cue, ms: p50, p99, max.
    pub lights_ms: [f64; 3],
    /// Beats and cues matched on the leader's strip, of this bike's.
    pub matched: usize,
    /// This bike's beat and cue commands.
    pub events: usize,
}

/// Run `convoy demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let (dir, keep) = match &args.out {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!("convoy-demo-{}", std::process::id())),
            false,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(args, &dir);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(args: &DemoArgs, dir: &Path) -> anyhow::Result<()> {
    let show_path = match &args.show {
        Some(p) => p.clone(),
        None => write_builtin_show(dir)?,
    };
    let show = Show::load(&show_path)?;
    let music_s = match args.seconds {
        Some(s) => s.max(1.0),
        None => show
            .tracks
            .iter()
            .map(|t| t.duration_s.unwrap_or(30.0))
            .sum(),
    };
    let track_rate = f64::from(show.tracks.first().map_or(44_100, |t| t.sample_rate));
    let key = write_key(dir)?;
    let (osc_port, sntp_port) = (free_udp_port()?, free_udp_port()?);
    let exe = std::env::current_exe().context("cannot find the convoy binary")?;
    let mut bikes: Vec<Bike> = [
        ("bike-1", true, 0.0, 0.0, 0.0),
        ("bike-2", false, 1_200.0, 40.0, 90.0),
        ("bike-3", false, -800.0, -60.0, -70.0),
    ]
    .into_iter()
    .map(|(name, leader, clock_offset_ms, clock_ppm, dac_ppm)| Bike {
        name: name.to_string(),
        leader,
        clock_offset_ms,
        clock_ppm,
        dac_ppm,
        journal: dir.join(format!("{name}.lights.jsonl")),
        child: None,
    })
    .collect();
    let start_in = args.start_in.clamp(0.5, 30.0);
    // The children stop by themselves a little after the demo would stop them.
    let lifetime = start_in + music_s + 10.0;
    eprintln!(
        "convoy demo: 3 bikes on loopback (fleet key {}), show {:?}, {music_s:.1} s of music",
        key.display(),
        show.name
    );
    for bike in &mut bikes {
        let sink = if bike.leader && args.hear {
            "auto"
        } else {
            "virtual"
        };
        let mut sets = vec![
            format!("node.id={}", bike.name),
            format!("audio.sink={sink}"),
            format!("audio.virtual.rate_error_ppm={}", bike.dac_ppm),
            format!("clock.offset_ms={}", bike.clock_offset_ms),
            format!("clock.ppm={}", bike.clock_ppm),
            format!("security.key_file={}", key.display()),
            "sync.bind=127.0.0.1".to_string(),
            format!("sync.osc_port={osc_port}"),
            format!("sync.sntp_port={sntp_port}"),
            format!("show.file={}", show_path.display()),
            format!("show.journal={}", bike.journal.display()),
            "led.output=sim".to_string(),
            // A simulated strip shows a command the moment it gets it.
            "led.latency_ms=0".to_string(),
            "fleet.enabled=false".to_string(),
            "osc.enabled=false".to_string(),
            "web.enabled=false".to_string(),
        ];
        if bike.leader {
            sets.push("sync.role=leader".to_string());
        } else {
            sets.push("sync.role=follower".to_string());
            sets.push(format!("sync.leader=127.0.0.1:{osc_port}"));
        }
        let mut cmd = Command::new(&exe);
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--log", "warn", "node", "--status-every", "0.5"]);
        cmd.args(["--seconds", &format!("{lifetime:.1}")]);
        if bike.leader {
            cmd.args(["--start-in", &format!("{start_in}")]);
        }
        let log = |ext: &str| -> anyhow::Result<std::fs::File> {
            let path = dir.join(format!("{}.{ext}", bike.name));
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log("log")?))
            .stderr(Stdio::from(log("err")?))
            .spawn()
            .with_context(|| format!("cannot start {}", bike.name))?;
        bike.child = Some(child);
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = super::play::ctrlc_handler(move || stop.store(true, Ordering::Release));
    }
    let watched = watch(&mut bikes, dir, start_in + music_s, &stop);
    for bike in &bikes {
        if let Some(child) = &bike.child {
            crate::rig::terminate(child);
        }
    }
    for bike in &mut bikes {
        if let Some(child) = bike.child.as_mut() {
            wait_or_kill(child, Duration::from_secs(5));
        }
    }
    watched?;
    let (figures, pairs) = measure(&bikes, track_rate)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    print_summary(&figures);
    print_followers(&pairs);
    if let Some((catch_ups, underruns)) = leader_device(&dir.join("bike-1.log")) {
        if catch_ups > 0 || underruns > 0 {
            println!(
                "bike-1's sound device: {catch_ups} outage(s) or late start(s) caught up by \
                 seeking back onto the fleet's timeline, {underruns} underrun(s); the figures \
                 above, taken against bike-1, include those moments"
            );
        }
    }
    Ok(())
}

/// The leader's catch-up seeks and underruns, from the last status line of its log.
fn leader_device(log: &Path) -> Option<(u64, u64)> {
    let v = crate::rig::scenario::last_status(log)?;
    Some((v["catch_ups"].as_u64()?, v["underruns"].as_u64()?))
}

/// Write the embedded demo show and its beatmap where the show expects it.
fn write_builtin_show(dir: &Path) -> anyhow::Result<PathBuf> {
    let (shows, maps) = (dir.join("shows"), dir.join("beatmaps"));
    for d in [&shows, &maps] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let path = shows.join("demo.toml");
    std::fs::write(&path, DEMO_SHOW)?;
    std::fs::write(maps.join("demo.beatmap.json"), DEMO_BEATMAP)?;
    Ok(path)
}

/// A fresh 256-bit fleet key, readable only by us.
fn write_key(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("fleet.key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{hex}")?;
    Ok(path)
}

/// A UDP port on loopback that is free now.
fn free_udp_port() -> anyhow::Result<u16> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").context("cannot bind on loopback")?;
    Ok(sock.local_addr()?.port())
}

fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One bike's strip as the demo replays it from its journal.
struct Replay {
    tail: Tail,
    strip: Mutex<SimStrip>,
    cue: Option<String>,
    beat: Option<u64>,
    /// Beat times (ms on the demo's clock) seen, for the live light difference.
    beats: Vec<u64>,
}

/// Follow the bikes until `run_s` has passed, one of them fails, or Ctrl-C: draw their
/// strips (terminal) or print their cues (otherwise).
fn watch(bikes: &mut [Bike], dir: &Path, run_s: f64, stop: &AtomicBool) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal();
    let epoch = Instant::now();
    let epoch_ns = mono_ns();
    let ms_of = |ns: u64| (ns.saturating_sub(epoch_ns) / 1_000_000) as u32;
    let mut replays: Vec<Replay> = bikes
        .iter()
        .map(|b| Replay {
            tail: Tail::new(&b.journal),
            strip: Mutex::new(SimStrip::new(48)),
            cue: None,
            beat: None,
            beats: Vec::new(),
        })
        .collect();
    let period = Duration::from_millis(40);
    let mut out = std::io::stdout();
    let mut drawn = false;
    while epoch.elapsed().as_secs_f64() < run_s && !stop.load(Ordering::Acquire) {
        for (bike, r) in bikes.iter_mut().zip(replays.iter_mut()) {
            if let Some(status) = bike
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let err = std::fs::read_to_string(dir.join(format!("{}.err", bike.name)))
                    .unwrap_or_default();
                anyhow::bail!(
                    "{} stopped early ({status}): {}",
                    bike.name,
                    err.lines().last().unwrap_or("no message")
                );
            }
            for h in r.tail.poll()? {
                let at = ms_of(h.at_ns);
                if let Ok(mut s) = r.strip.lock() {
                    s.apply(&h.command, at);
                }
                if h.heard_ns.is_some() && h.cue.is_none() {
                    r.beat = Some(r.beat.map_or(1, |b| b + 1));
                    r.beats.push(u64::from(at));
                }
                if let Some(cue) = &h.cue {
                    if r.cue.as_ref() != Some(cue) && !tty {
                        println!("{:7.3} s  {:<7} cue {cue}", f64::from(at) / 1e3, bike.name);
                    }
                    r.cue = Some(cue.clone());
                }
            }
        }
        if tty {
            let lead_beats = replays.first().map(|r| r.beats.clone()).unwrap_or_default();
            let mut frame = String::new();
            if drawn {
                frame.push_str(&format!("\x1b[{}A", bikes.len()));
            }
            for (bike, r) in bikes.iter().zip(&replays) {
                let lag = (!bike.leader)
                    .then(|| {
                        let last = *r.beats.last()?;
                        let near = lead_beats
                            .iter()
                            .min_by_key(|&&b| b.abs_diff(last))
                            .filter(|&&b| b.abs_diff(last) < 200)?;
                        Some(last as i64 - *near as i64)
                    })
                    .flatten()
                    .map_or(String::new(), |d| format!("  lights {d:+} ms"));
                let status = format!(
                    "{} {:<8} beat {:>3}  cue {:<9}{lag}",
                    bike.name,
                    if bike.leader { "(lead)" } else { "" },
                    r.beat.unwrap_or(0),
                    r.cue.as_deref().unwrap_or("-"),
                );
                frame.push_str(&crate::led::term::frame_line(&r.strip, &epoch, &status));
                frame.push('\n');
            }
            let _ = out.write_all(frame.as_bytes()).and_then(|_| out.flush());
            drawn = true;
        }
        std::thread::sleep(period);
    }
    Ok(())
}

/// Compare every follower with the leader, and every pair of followers with each other:
/// playback logs for playback, journals for lights. When the leader plays through a real
/// (or PulseAudio) device, its own glitches show in the figures against it, while what the
/// fleet hears is how the others agree.
fn measure(
    bikes: &[Bike],
    track_rate: f64,
) -> anyhow::Result<(Vec<BikeFigures>, Vec<PairFigures>)> {
    let Some(lead) = bikes.iter().find(|b| b.leader) else {
        anyhow::bail!("no leader bike");
    };
    let lead_trace = Trace::load(&playback(&lead.journal), track_rate)?;
    let lead_lights = journal::read(&lead.journal)?;
    let first_note = lead_trace.span().map(|s| s.0);
    let mut followers = Vec::new();
    for bike in bikes.iter().filter(|b| !b.leader) {
        followers.push((
            bike.name.as_str(),
            Trace::load(&playback(&bike.journal), track_rate)?,
            journal::read(&bike.journal)?,
        ));
    }
    let mut figures = Vec::new();
    for (name, trace, lights) in &followers {
        let series = offsets(&lead_trace, trace, 10_000_000);
        let (lock, after) = after_lock_ms(&series);
        let events = lights.iter().filter(|h| h.heard_ns.is_some()).count();
        let diffs: Vec<f64> = journal::agreement(&lead_lights, lights, 200_000_000)
            .into_iter()
            .map(f64::abs)
            .collect();
        figures.push(BikeFigures {
            bike: name.to_string(),
            lock_s: lock
                .zip(first_note)
                .map(|(l, f)| l.saturating_sub(f) as f64 * 1e-9),
            offset_ms: stats(&after),
            lights_ms: stats(&diffs),
            matched: diffs.len(),
            events,
        });
    }
    let mut pairs = Vec::new();
    for (i, (a_name, a, a_lights)) in followers.iter().enumerate() {
        for (b_name, b, b_lights) in &followers[i + 1..] {
            let (_, after) = after_lock_ms(&offsets(a, b, 10_000_000));
            let lights: Vec<f64> = journal::agreement(a_lights, b_lights, 200_000_000)
                .into_iter()
                .map(f64::abs)
                .collect();
            pairs.push(PairFigures {
                bikes: format!("{a_name} vs {b_name}"),
                offset_ms: stats(&after),
                lights_ms: stats(&lights),
            });
        }
    }
    Ok((figures, pairs))
}

/// One pair of followers: how far apart they played and lit, ms (p50, p99, max), from
/// when they came within 1 ms of each other for 2 s.
struct PairFigures {
    bikes: String,
    offset_ms: [f64; 3],
    lights_ms: [f64; 3],
}

fn print_followers(pairs: &[PairFigures]) {
    for p in pairs {
        println!(
            "{}: playback offset p50/p99/max {} ms; lights {} ms",
            p.bikes,
            triple(&p.offset_ms),
            triple(&p.lights_ms)
        );
    }
}

fn triple(v: &[f64; 3]) -> String {
    v.map(ms).join("/")
}

/// A figure in ms to the µs, `-` where there is none.
fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{v:.3}")
    }
}

/// The playback log a node writes beside its light journal.
fn playback(journal: &Path) -> PathBuf {
    PathBuf::from(format!("{}.playback.csv", journal.display()))
}

fn stats(v: &[f64]) -> [f64; 3] {
    [
        quantile(v, 0.5),
        quantile(v, 0.99),
        v.iter().copied().fold(f64::NAN, f64::max),
    ]
}

fn print_summary(figures: &[BikeFigures]) {
    println!();
    println!(
        "{:<8} {:>8}   {:>28}   {:>36}",
        "vs bike-1", "lock", "playback offset ms p50/p99/max", "lights ms p50/p99/max (matched)"
    );
    for b in figures {
        println!(
            "{:<9} {:>8}   {:>8} {:>8} {:>8}     {:>8} {:>8} {:>8} ({}/{})",
            b.bike,
            b.lock_s.map_or("never".into(), |l| format!("{l:.2} s")),
            ms(b.offset_ms[0]),
            ms(b.offset_ms[1]),
            ms(b.offset_ms[2]),
            ms(b.lights_ms[0]),
            ms(b.lights_ms[1]),
            ms(b.lights_ms[2]),
            b.matched,
            b.events
        );
    }
    let worst = |g: fn(&BikeFigures) -> f64| figures.iter().map(g).fold(f64::NAN, f64::max);
    println!(
        "fleet: lock {}; playback offset p99 {} ms; lights p99 {} ms (max {} ms)",
        figures
            .iter()
            .map(|b| b.lock_s)
            .try_fold(0.0f64, |m, l| l.map(|l| m.max(l)))
            .map_or("never".into(), |l| format!("{l:.2} s")),
        ms(worst(|b| b.offset_ms[1])),
        ms(worst(|b| b.lights_ms[1])),
        ms(worst(|b| b.lights_ms[2])),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_show_loads_from_where_the_demo_writes_it() {
        let dir = std::env::temp_dir().join(format!("convoy-demo-test-{}", std::process::id()));
        let path = write_builtin_show(&dir).expect("write");
        let show = Show::load(&path).expect("the built-in show is valid");
        assert_eq!(show.name, "demo");
        assert!(show.tracks[0].beatmap.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn figures_are_nan_free_quantiles_or_nan_when_empty() {
        assert_eq!(stats(&[1.0, 3.0, 2.0]), [2.0, 3.0, 3.0]);
        assert!(stats(&[]).iter().all(|v| v.is_nan()));
    }
}
