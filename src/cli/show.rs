//! `convoy show FILE`: play a show solo on this machine — the player (as `convoy play`
//! sets it up), the show runner and the LED output (`sim` by default, drawn in the
//! terminal). `convoy show --check FILE` only validates the file and summarises it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::SinkArgs;
use crate::audio::{self, output, EngineOptions, FreeRun, Player};
use crate::config::{Config, LedOutputKind};
use crate::led::term::TerminalStrip;
use crate::show::model::When;
use crate::show::{RunnerOptions, Show, ShowRunner, VehicleInfo};

/// Arguments of `convoy show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The show file (`shows/NAME.toml`).
    pub file: PathBuf,
    /// Only validate the show (every problem with its line), then exit.
    #[arg(long)]
    pub check: bool,
    /// LED output: sim, serial or none (overrides `led.output`).
    #[arg(long)]
    pub led: Option<LedOutputKind>,
    /// Serial port of the LED controller (overrides `led.port`).
    #[arg(long)]
    pub port: Option<String>,
    /// Output selection.
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Start at this playlist track (1-based).
    #[arg(long, default_value_t = 1)]
    pub track: usize,
    /// Start at this position in the first track, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub start: f64,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Play as a follower for per-vehicle overrides (default: the lead vehicle).
    #[arg(long)]
    pub follower: bool,
}

/// Run `convoy show`.
pub fn run(config: Config, args: &ShowArgs) -> anyhow::Result<()> {
    let show = Show::load(&args.file)?;
    if args.check {
        print!("{}", summary(&show));
        return Ok(());
    }
    let mut config = config;
    if let Some(kind) = args.led {
        config.led.output = kind;
    }
    if let Some(port) = &args.port {
        config.led.port = port.clone();
    }
    let first = args
        .track
        .checked_sub(1)
        .filter(|i| *i < show.tracks.len())
        .with_context(|| {
            format!(
                "--track {}: the show has tracks 1..={}",
                args.track,
                show.tracks.len()
            )
        })?;
    let kind = args.sink.sink.unwrap_or(config.audio.sink);
    let sink = output::open_sink(&config.audio, kind)?;
    let player = Arc::new(Player::start(
        sink,
        EngineOptions::from_config(&config.audio),
        Box::new(FreeRun),
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("convoy-show")
        .build()
        .context("cannot start the async runtime")?;
    let guard = rt.enter();
    let led = crate::led::open_output(&config.led);
    let vehicle = VehicleInfo {
        id: config.node_id(),
        leader: !args.follower,
    };
    let show = Arc::new(show);
    // Without a terminal to draw on, every cue is printed as a line instead.
    let drawn = led_is_drawn(&led);
    let (trace_tx, trace) = std::sync::mpsc::channel();
    let mut opts = RunnerOptions::from_config(&config);
    if !drawn {
        opts.trace = Some(trace_tx);
    }
    let handle = ShowRunner::spawn(show.clone(), player.clone(), led.clone(), vehicle, opts);
    let status_rx = handle.watch();
    let p = player.clone();
    let term = TerminalStrip::spawn(&led, config.led.fps, move || {
        let s = status_rx.borrow().clone();
        let pos = p.status().position.unwrap_or(0.0) / f64::from(p.status().track_rate.max(1));
        format!(
            "{pos:7.2} s  beat {:>3}{}  cue {}",
            s.meters.beat,
            s.meters
                .beat_in_bar
                .map(|b| format!(".{b}"))
                .unwrap_or_default(),
            s.cue.as_deref().unwrap_or("-")
        )
    });
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = super::play::ctrlc_handler(move || stop.store(true, Ordering::Release));
    }
    let began = Instant::now();
    let mut result = Ok(());
    'playlist: for (i, track) in show.tracks.iter().enumerate().skip(first) {
        let source = audio::open_track(&track.source)
            .with_context(|| format!("cannot play {}", track.source))?;
        let start = if i == first {
            (args.start.max(0.0) * f64::from(track.sample_rate)) as u64
        } else {
            0
        };
        player.load(source, start)?;
        eprintln!(
            "show {}: track {} — {}",
            show.name,
            i + 1,
            track.player_name
        );
        // Wait for the player to report the new track before watching for its end.
        let loaded = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let st = player.status();
            if let Some(err) = &st.error {
                result = Err(anyhow::anyhow!("{err}"));
                break 'playlist;
            }
            for f in trace.try_iter() {
                if let Some(cue) = &f.cue {
                    println!(
                        "{:8.3} s  cue {cue}  {:?}",
                        st.position.unwrap_or(0.0) / f64::from(st.track_rate.max(1)),
                        f.command
                    );
                }
            }
            let fresh = st.track.as_deref() == Some(track.player_name.as_str())
                || loaded.elapsed() > Duration::from_secs(2);
            if stop.load(Ordering::Acquire)
                || args
                    .seconds
                    .is_some_and(|s| began.elapsed().as_secs_f64() >= s)
            {
                break 'playlist;
            }
            if fresh && st.finished {
                break;
            }
        }
    }
    if let Some(t) = term {
        t.stop();
    }
    let status = handle.status();
    handle.stop();
    drop(guard);
    rt.shutdown_timeout(Duration::from_secs(1));
    let underruns = player.underruns();
    if let Ok(p) = Arc::try_unwrap(player) {
        p.stop()?;
    }
    eprintln!(
        "show {}: {} light commands sent ({} late); underruns {underruns}",
        show.name, status.sent, status.late
    );
    result
}

/// Whether the terminal strip will draw `led` (a simulated strip on a terminal).
fn led_is_drawn(led: &crate::led::LedOutput) -> bool {
    use std::io::IsTerminal;
    matches!(led, crate::led::LedOutput::Sim { .. }) && std::io::stdout().is_terminal()
}

/// What `--check` prints: the show, its tracks and what each cue is tied to.
fn summary(show: &Show) -> String {
    let mut s = format!(
        "{}: ok — show {:?}, {} track(s)\n",
        show.path.display(),
        show.name,
        show.tracks.len()
    );
    for (i, t) in show.tracks.iter().enumerate() {
        let timing = match &t.beatmap {
            Some(m) => format!("beatmap, {:.1} BPM, {} bars", m.tempo_bpm, m.bars.len()),
            None => "live analysis".to_string(),
        };
        s.push_str(&format!(
            "  {}. {} ({timing}{}): {} cue(s), {} reactive mapping(s)\n",
            i + 1,
            t.player_name,
            t.duration_s
                .map(|d| format!(", {d:.1} s"))
                .unwrap_or_default(),
            t.cues.len(),
            t.react.len()
        ));
        for c in &t.cues {
            let when = match &c.when {
                When::At(p) => format!("at {p}"),
                When::Section(l) => format!("section {l}"),
                When::Every { unit, .. } => format!("every {unit:?}").to_lowercase(),
            };
            s.push_str(&format!(
                "     cue {:<10} line {:<4} {when}\n",
                c.name, c.line
            ));
        }
    }
    s
}
