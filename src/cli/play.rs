//! `convoy play [TRACK]`: play one track on this node, with a status line once a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::SinkArgs;
use crate::audio::{self, output, EngineOptions, FreeRun, Player};
use crate::config::Config;

/// `convoy play --help` examples (each `  convoy …` line parses; tested in `cli`).
pub(super) const EXAMPLES: &str = "\
Examples:
  convoy play                            the built-in song (demo) on the default output
  convoy play song.flac --start 30       a file, from 0:30
  convoy play demo --sink null --seconds 5
  convoy play demo --speed-ppm 200       200 ppm fast (resampler check)";

/// Arguments of `convoy play`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlayArgs {
    /// Audio file (WAV, FLAC, MP3, Ogg/Vorbis, …), or `demo` for the built-in song.
    #[arg(default_value = "demo")]
    pub track: String,
    /// Output selection.
    #[command(flatten)]
    pub sink: SinkArgs,
    /// Stop after this many seconds of playback.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Start at this position, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub start: f64,
    /// Play this many ppm fast (+) or slow (−): exercises the resampler's speed control.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub speed_ppm: f64,
    /// Print a status line every second.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub progress: bool,
}

/// Run `convoy play`.
pub fn run(config: Config, args: &PlayArgs) -> anyhow::Result<()> {
    let source =
        audio::open_track(&args.track).with_context(|| format!("cannot play {}", args.track))?;
    let spec = source.spec();
    let length_s = spec
        .frames
        .map(|f| f as f64 / f64::from(spec.sample_rate.max(1)));
    if let Some(len) = length_s.filter(|len| args.start >= *len) {
        anyhow::bail!(
            "--start {} is past the end of {} ({len:.2} s long): nothing to play",
            args.start,
            args.track
        );
    }
    let max_ppm = config.audio.max_rate_ppm;
    if args.speed_ppm.abs() > max_ppm {
        tracing::warn!(
            "--speed-ppm {} is clamped to {:+} (audio.max_rate_ppm)",
            args.speed_ppm,
            args.speed_ppm.signum() * max_ppm
        );
    }
    let kind = args.sink.sink.unwrap_or(config.audio.sink);
    let sink = output::open_sink(&config.audio, kind)?;
    let player = Player::start(
        sink,
        EngineOptions::from_config(&config.audio),
        Box::new(FreeRun),
    )?;
    let start = (args.start.max(0.0) * spec.sample_rate as f64) as u64;
    player.load(source, start)?;
    if args.speed_ppm != 0.0 {
        player.send(audio::engine::Command::Speed(args.speed_ppm))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc_handler(move || stop.store(true, Ordering::Release));
    }
    let began = Instant::now();
    let mut next_print = Duration::from_secs(1);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let status = player.status();
        if let Some(err) = &status.error {
            anyhow::bail!("{err}");
        }
        let elapsed = began.elapsed();
        if args.progress && elapsed >= next_print {
            next_print += Duration::from_secs(1);
            let pos = status.position.unwrap_or(0.0) / spec.sample_rate as f64;
            eprintln!(
                "{}  {:7.2} s{}  speed {:+.0} ppm  underruns {}  corrupt packets {}",
                status.track.as_deref().unwrap_or("-"),
                pos,
                spec.frames
                    .map(|f| format!(" / {:.2} s", f as f64 / spec.sample_rate as f64))
                    .unwrap_or_default(),
                status.speed_ppm,
                player.underruns(),
                status.corrupt_packets
            );
        }
        if status.finished
            || stop.load(Ordering::Acquire)
            || args.seconds.is_some_and(|s| elapsed.as_secs_f64() >= s)
        {
            break;
        }
    }
    let status = player.status();
    let underruns = player.underruns();
    player.stop()?;
    eprintln!(
        "played {} to {:.2} s; underruns {underruns}; corrupt packets skipped {}",
        status.track.as_deref().unwrap_or("-"),
        status.position.unwrap_or(0.0) / spec.sample_rate as f64,
        status.corrupt_packets
    );
    Ok(())
}

/// Install a SIGINT/SIGTERM handler that calls `f` once: signal-hook sets a flag (the
/// only async-signal-safe thing to do) and a watcher thread polls it.
pub(super) fn ctrlc_handler(f: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone())?;
    }
    std::thread::Builder::new()
        .name("convoy-signal".into())
        .spawn(move || loop {
            if flag.load(Ordering::Acquire) {
                f();
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        })?;
    Ok(())
}
