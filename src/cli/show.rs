//! `convoy show FILE`: play a show solo on this machine — the player (as `convoy play`
//! sets it up), the show runner and the LED output (`sim` by default, drawn in the
//! terminal). `convoy show --check FILE` only validates the file and summarises it.

use std::io::IsTerminal;
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
use crate::show::{RunnerOptions, Show, ShowRunner, VehicleInfo, WarningKind};

/// `convoy show --help` examples (each `  convoy …` line parses; tested in `cli`).
pub(super) const EXAMPLES: &str = "\
Examples:
  convoy show --check shows/demo.toml    validate: every problem with its line
  convoy show shows/demo.toml --led sim  play it with a simulated LED strip
  convoy show shows/live.toml --led serial --port /dev/ttyACM0 --track 2";

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
    eprint!("{}", show.render_warnings());
    if args.check {
        // A beatmap of other audio is played around (live analysis), but a check fails.
        let mismatched = show
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::BeatmapMismatch)
            .count();
        anyhow::ensure!(
            mismatched == 0,
            "{}: {mismatched} beatmap(s) do not belong to their track",
            args.file.display()
        );
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
    let drawn_show = show.clone();
    let term = TerminalStrip::spawn(&led, config.led.fps, move || {
        let s = status_rx.borrow().clone();
        let st = p.status();
        let pos = st.position.unwrap_or(0.0) / f64::from(st.track_rate.max(1));
        let track = s.track.and_then(|i| drawn_show.tracks.get(i));
        format!(
            "{pos:7.2} s  {:<14}  cue {}",
            musical_position(track, pos, &s.meters),
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
            "{}show {}: track {} — {}",
            crate::led::term::log_prefix(std::io::stderr().is_terminal()),
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
                    // Where the cue is heard (it is handed out ahead of that).
                    let ahead_s = (f.heard_ns - st.heard_at_ns as f64) / 1e9;
                    let pos = st.position.unwrap_or(0.0) / f64::from(st.track_rate.max(1))
                        + if st.position.is_some() { ahead_s } else { 0.0 };
                    let meters = handle.status().meters;
                    println!(
                        "{pos:8.3} s  {:<14}  cue {cue}  {}",
                        musical_position(Some(track), pos, &meters),
                        describe(&f.command)
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

/// Where in the music `t` (track seconds) is, as cues say it: `bar 4 beat 1` (from the
/// beatmap, or counted from the first beat on a live track); `-` before the first beat.
/// A beat counts from [`BEAT_EARLY_S`] before it: a cue is handed out (and read off the
/// player) a few milliseconds ahead of the beat it belongs to.
fn musical_position(
    track: Option<&crate::show::model::ShowTrack>,
    t: f64,
    meters: &crate::control::Meters,
) -> String {
    let t = t + BEAT_EARLY_S;
    if let Some(map) = track.and_then(|t| t.beatmap.as_ref()) {
        return match map.bar_at(t) {
            Some(bar) => {
                let first = bar.first_beat as usize;
                let end = (first + bar.beat_count as usize).min(map.beats.len());
                let beat = map.beats[first.min(end)..end]
                    .iter()
                    .filter(|&&b| b <= t)
                    .count()
                    .max(1);
                format!("bar {} beat {beat}", bar.number)
            }
            None => "-".into(),
        };
    }
    let bpb = track.map_or(4, |t| u64::from(t.beats_per_bar.max(1)));
    match (meters.beat, meters.beat_in_bar) {
        (0, _) => "-".into(),
        (n, Some(b)) => format!("bar {} beat {b}", (n - 1) / bpb + 1),
        (n, None) => format!("bar {} beat {}", (n - 1) / bpb + 1, (n - 1) % bpb + 1),
    }
}

/// How early a position still names the coming beat, seconds.
const BEAT_EARLY_S: f64 = 0.025;

/// A light command in show units: hue in degrees, brightness in percent, colours as hex.
pub fn describe(cmd: &crate::led::protocol::Command) -> String {
    use crate::led::protocol::Command;
    let deg = |h: u8| (f64::from(h) * 360.0 / 256.0).round() as u32;
    let pct = |b: u8| (f64::from(b) * 100.0 / 255.0).round() as u32;
    let hex = |c: crate::led::protocol::Rgb| format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b);
    match cmd {
        Command::Pattern(p) => format!("pattern {}", p.name()),
        Command::Hue(h) => format!("hue {}°", deg(*h)),
        Command::Bright(b) => format!("bright {}%", pct(*b)),
        Command::Speed(v) => format!("speed {v}"),
        Command::Color(c) => format!("color {}", hex(*c)),
        Command::Beat {
            beat_in_bar,
            strength,
        } => format!("flash (beat {}, {}%)", beat_in_bar + 1, pct(*strength)),
        Command::State(s) => format!(
            "pattern {}, hue {}°, bright {}%, speed {}, color {}",
            s.pattern.name(),
            deg(s.hue),
            pct(s.bright),
            s.speed,
            hex(s.color)
        ),
        other => other.kind().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::protocol::{Command, LedState, Pattern, Rgb};

    #[test]
    fn commands_read_in_show_units() {
        // A show's `hue = 200` is 142 on the wire; it prints as 200°, not 142.
        let s = LedState {
            pattern: Pattern::BeatFlash,
            hue: 142,
            bright: 255,
            speed: 140,
            color: Rgb::new(0x30, 0x40, 0xff),
        };
        assert_eq!(
            describe(&Command::State(s)),
            "pattern beatflash, hue 200°, bright 100%, speed 140, color #3040ff"
        );
        assert_eq!(describe(&Command::Bright(217)), "bright 85%");
        assert_eq!(
            describe(&Command::Beat {
                beat_in_bar: 0,
                strength: 255
            }),
            "flash (beat 1, 100%)"
        );
    }

    #[test]
    fn positions_read_as_bar_and_beat() {
        let show =
            Show::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shows/demo.toml"))
                .expect("demo show");
        let track = &show.tracks[0];
        let map = track.beatmap.as_ref().expect("beatmap");
        let meters = crate::control::Meters::default();
        let bar4 = map.beat_time(4, 1).expect("bar 4");
        assert_eq!(musical_position(Some(track), bar4, &meters), "bar 4 beat 1");
        // The drop, read 8 ms before its beat (as `convoy show` printed it), is bar 3.
        let bar3 = map.beat_time(3, 1).expect("bar 3");
        assert_eq!(
            musical_position(Some(track), bar3 - 0.008, &meters),
            "bar 3 beat 1"
        );
        let b = map.beat_time(4, 3).expect("bar 4 beat 3");
        assert_eq!(
            musical_position(Some(track), b + 0.1, &meters),
            "bar 4 beat 3"
        );
        let live = crate::control::Meters {
            beat: 13,
            beat_in_bar: Some(1),
            bands: Vec::new(),
        };
        assert_eq!(musical_position(None, 0.0, &live), "bar 4 beat 1");
    }
}
