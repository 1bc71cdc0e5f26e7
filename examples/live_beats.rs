//! Runs the live tracker ([`convoy::analysis::LiveAnalyzer`]) over a track as if it were
//! playing, and prints its beat and tempo events as JSON on stdout (times in seconds of the
//! track): `cargo run --release --example live_beats -- FILE|demo [--block N]`. Used by
//! `tools/beat-eval` to score the live path against ground truth.

use std::process::ExitCode;

use convoy::analysis::{AnalysisParams, Event, LiveAnalyzer};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(track) = args.first() else {
        eprintln!("usage: live_beats FILE|demo [--block N]");
        return ExitCode::FAILURE;
    };
    let block = args
        .iter()
        .position(|a| a == "--block")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(512)
        .max(1);
    let mut src = match convoy::audio::open_track(track) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("live_beats: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sr = src.spec().sample_rate;
    let mono = match convoy::audio::read_mono(src.as_mut(), &mut |_| {}) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("live_beats: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut live = LiveAnalyzer::new(sr, &AnalysisParams::default());
    let (mut beats, mut tempo) = (Vec::new(), Vec::new());
    for chunk in mono.chunks(block) {
        for ev in live.process(chunk) {
            match ev {
                Event::Beat(b) => beats.push(format!("{:.6}", b.sample_pos as f64 / sr as f64)),
                Event::Tempo(t) => tempo.push(format!(
                    "[{:.6},{:.3},{:.3}]",
                    t.sample_pos as f64 / sr as f64,
                    t.bpm,
                    t.confidence
                )),
                _ => {}
            }
        }
    }
    println!(
        "{{\"sample_rate\":{sr},\"beats\":[{}],\"tempo\":[{}]}}",
        beats.join(","),
        tempo.join(",")
    );
    ExitCode::SUCCESS
}
