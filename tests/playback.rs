//! The whole playback path through the virtual sink, whose recording is the measuring
//! instrument of every sync test: it must be exact.

use std::time::{Duration, Instant};

use convoy::audio::output::{PacedSink, PacedSinkOptions};
use convoy::audio::synth::{GeneratedSource, Signal};
use convoy::audio::{EngineOptions, Player};
use convoy::config::Config;

use crate::util::{fit, read_recording, Recording};

fn virtual_sink(ppm: f64, latency_ms: f64, record: &std::path::Path, fast: bool) -> Box<PacedSink> {
    Box::new(PacedSink::new(PacedSinkOptions {
        sample_rate: 48_000,
        channels: 2,
        period_frames: 256,
        rate_error_ppm: ppm,
        latency_ns: (latency_ms * 1e6) as u64,
        record: Some(record.to_path_buf()),
        pilot: true,
        fast,
        label: "virtual",
        stall: None,
    }))
}

fn play_to_end(player: &Player, limit: Duration) {
    let start = Instant::now();
    while !player.status().finished {
        assert!(
            start.elapsed() < limit,
            "playback did not finish: {:?}",
            player.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 60 s of the pilot through a DAC running 120 ppm fast with 5 ms latency: the recording's
/// sample clock and the *decoded* track position both advance at exactly the DAC's rate
/// (within 1 ppm), and what the engine believes it played matches what the pilot says was
/// played, frame for frame.
#[test]
fn virtual_sink_timeline_matches_its_rate_error_within_1_ppm() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = dir.path().join("rec.csv");
    let cfg = Config::builtin().expect("defaults");
    let reports = Recording::default();
    let player = Player::start(
        virtual_sink(120.0, 5.0, &rec, true),
        EngineOptions::from_config(&cfg.audio),
        Box::new(reports.clone()),
    )
    .expect("player");
    player
        .load(
            Box::new(GeneratedSource::new(Signal::Pilot, 44_100, 60.0)),
            0,
        )
        .expect("load");
    play_to_end(&player, Duration::from_secs(120));
    player.stop().expect("stop");

    let rows = read_recording(&rec);
    let played: Vec<_> = rows.iter().filter(|r| r.track_frame.is_some()).collect();
    assert!(played.len() > 10_000, "{} rows with pilot", played.len());
    let t0 = rows[0].heard_at_ns as f64;
    // Device clock: frames per second of the monotonic clock.
    let dev: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| ((r.heard_at_ns as f64 - t0) / 1e9, r.device_frame as f64))
        .collect();
    let (dev_rate, _) = fit(&dev);
    let dev_ppm = (dev_rate / 48_000.0 - 1.0) * 1e6;
    // Track clock, decoded from the audio itself (skip the resampler's start-up).
    let track: Vec<(f64, f64)> = played
        .iter()
        .filter_map(|r| {
            r.track_frame
                .map(|f| ((r.heard_at_ns as f64 - t0) / 1e9, f))
        })
        .filter(|(_, f)| *f > 1_000.0 && *f < 59.0 * 44_100.0)
        .collect();
    let (track_rate, _) = fit(&track);
    let track_ppm = (track_rate / 44_100.0 - 1.0) * 1e6;
    eprintln!(
        "device clock {dev_ppm:+.4} ppm, decoded track clock {track_ppm:+.4} ppm (configured +120)"
    );
    assert!(
        (dev_ppm - 120.0).abs() < 1.0,
        "device clock off: {dev_ppm} ppm"
    );
    assert!(
        (track_ppm - 120.0).abs() < 1.0,
        "track clock off: {track_ppm} ppm"
    );
    let span = track.last().map(|p| p.0).unwrap_or(0.0) - track[0].0;
    assert!(span > 55.0, "covers {span} s");

    // The engine's bookkeeping (its reports) against the pilot, at the same instants.
    let reports = reports.0.lock().expect("reports").clone();
    let by_time: std::collections::HashMap<u64, f64> = played
        .iter()
        .filter_map(|r| r.track_frame.map(|f| (r.heard_at_ns, f)))
        .collect();
    let errs: Vec<f64> = reports
        .iter()
        .filter_map(|r| Some(r.track_frame? - by_time.get(&r.heard_at_ns)?))
        .filter(|e| e.is_finite())
        .collect();
    assert!(
        errs.len() > 300,
        "{} matched of {} reports",
        errs.len(),
        reports.len()
    );
    let worst = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    eprintln!(
        "engine books vs pilot over {} periods: worst {worst:.3} frames",
        errs.len()
    );
    assert!(
        worst < 0.5,
        "engine believes it played something else: off by {worst} frames"
    );
}

/// In real time, the virtual DAC's latency shows up in the recording: frame n of the track
/// is heard `latency` after the DAC consumed it.
#[test]
fn latency_shifts_heard_time_and_speed_changes_are_followed() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = dir.path().join("rec.csv");
    let cfg = Config::builtin().expect("defaults");
    let reports = Recording::default();
    let player = Player::start(
        virtual_sink(-150.0, 40.0, &rec, true),
        EngineOptions::from_config(&cfg.audio),
        Box::new(reports.clone()),
    )
    .expect("player");
    player
        .load(
            Box::new(GeneratedSource::new(Signal::Pilot, 44_100, 20.0)),
            44_100 * 3,
        )
        .expect("load");
    player
        .send(convoy::audio::engine::Command::Speed(800.0))
        .expect("speed");
    play_to_end(&player, Duration::from_secs(60));
    player.stop().expect("stop");
    let rows = read_recording(&rec);
    let first = rows
        .iter()
        .find(|r| r.track_frame.is_some())
        .expect("played");
    // Started 3 s in. The first period whose first sample carries a readable pilot can be up
    // to one period (256 output = 235 track frames) after the start, plus the resampler's
    // ramp-in from silence.
    let f = first.track_frame.unwrap_or(0.0);
    assert!(
        (132_300.0 - 1.0..132_300.0 + 300.0).contains(&f),
        "first frame {f}"
    );
    // Speed: +800 ppm over a DAC running −150 ppm.
    let t0 = rows[0].heard_at_ns as f64;
    let track: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.track_frame
                .map(|f| ((r.heard_at_ns as f64 - t0) / 1e9, f))
        })
        .filter(|(_, f)| *f > 140_000.0 && *f < 19.0 * 44_100.0)
        .collect();
    let (rate, _) = fit(&track);
    let ppm = (rate / 44_100.0 - 1.0) * 1e6;
    let want = ((1.0 + 800e-6) * (1.0 - 150e-6) - 1.0) * 1e6;
    eprintln!("track clock {ppm:+.3} ppm, want {want:+.3}");
    assert!((ppm - want).abs() < 1.0);
}

/// A scheduled start: frame 44 100 of the track is heard at the requested monotonic instant
/// (through the DAC's 25 ms latency), to a fraction of a millisecond.
#[test]
fn a_scheduled_start_is_heard_at_the_requested_instant() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = dir.path().join("rec.csv");
    let cfg = Config::builtin().expect("defaults");
    let player = Player::start(
        virtual_sink(90.0, 25.0, &rec, false),
        EngineOptions::from_config(&cfg.audio),
        Box::new(Recording::default()),
    )
    .expect("player");
    let at = convoy::clock::mono_ns() + 400_000_000;
    player
        .load_at(
            Box::new(GeneratedSource::new(Signal::Pilot, 44_100, 2.0)),
            44_100,
            at,
        )
        .expect("load");
    play_to_end(&player, Duration::from_secs(10));
    player.stop().expect("stop");
    let rows = read_recording(&rec);
    // Fit the first second of decoded positions and find when frame 44 100 was heard.
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.track_frame.map(|f| (r.heard_at_ns as f64 - at as f64, f)))
        .filter(|(_, f)| *f > 44_100.0 + 100.0 && *f < 44_100.0 * 1.8)
        .collect();
    assert!(pts.len() > 50, "{} pilot rows", pts.len());
    let (slope, intercept) = fit(&pts);
    let heard_ns = (44_100.0 - intercept) / slope;
    eprintln!(
        "frame 44100 heard {:+.1} us from the requested instant",
        heard_ns / 1e3
    );
    assert!(
        heard_ns.abs() < 200_000.0,
        "started {heard_ns} ns off schedule"
    );
}
