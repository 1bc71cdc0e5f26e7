//! Live analysis benchmark: how much CPU the node's live analyser (`analysis::LiveAnalyzer`:
//! STFT, bands, onsets, tempo and beat phase) needs per second of audio.
//!
//! ```text
//! live_analysis [--seconds N] [--rate HZ] [--block N] [--repeat N] [--passes N] [--live KEY=VALUE]…
//! ```
//!
//! The input is the built-in synthetic corpus (`analysis::synth::corpus`, drums with tempo
//! changes), concatenated and cut or repeated to `--seconds` (default 60), mono at `--rate`
//! (default 44 100 Hz), fed in blocks of `--block` samples (default 1024, about what the
//! playback tap delivers) to a fresh analyser with the default settings, as
//! `show::live` runs it; `--live KEY=VALUE` changes a `LiveConfig` setting (the names of
//! `examples/analysis_eval.rs`), so the cost of two settings can be compared in one build.
//!
//! The analysis runs in the `#[inline(never)]` function `stage_live`, `--passes` times per
//! run (default 1), so instructions can be counted for that stage alone:
//! `valgrind --tool=callgrind --toggle-collect='*stage_live*'` on x86-64, or, under
//! `qemu-aarch64` with the counting plugin (`tools/qemu-insn`), the difference between a
//! run with `--passes 2` and one with `--passes 1`. `tools/beat-eval/live-cpu.sh` does
//! both and turns the counts into a share of a Pi Zero 2 W core. Wall time is the median of
//! `--repeat` runs (default 5) on this machine.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use convoy::analysis::{synth, AnalysisParams, Event, LiveAnalyzer};

struct Opts {
    seconds: f64,
    rate: u32,
    block: usize,
    repeat: usize,
    passes: usize,
    params: AnalysisParams,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 60.0,
        rate: 44_100,
        block: 1024,
        repeat: 5,
        passes: 1,
        params: AnalysisParams::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // `cargo bench` passes `--bench` to harness-less benches.
        if a == "--bench" {
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{a} needs a value"))?
            .as_str();
        let num = |what: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{what} must be a positive number, got `{v}`"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = num("--seconds")?,
            "--rate" => o.rate = num("--rate")? as u32,
            "--block" => o.block = num("--block")? as usize,
            "--repeat" => o.repeat = num("--repeat")? as usize,
            "--passes" => o.passes = num("--passes")? as usize,
            "--live" => o.params.live.set(v).map_err(|e| format!("--live {e}"))?,
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    o.block = o.block.max(1);
    o.repeat = o.repeat.max(1);
    o.passes = o.passes.max(1);
    Ok(o)
}

/// The synthetic corpus, concatenated and repeated or cut to `seconds`.
fn input(seconds: f64, rate: u32) -> Vec<f32> {
    let all: Vec<f32> = synth::corpus(rate)
        .into_iter()
        .flat_map(|c| c.samples)
        .collect();
    let want = (seconds * rate as f64).round() as usize;
    if all.is_empty() {
        return vec![0.0; want];
    }
    all.iter().copied().cycle().take(want).collect()
}

/// One pass of the live analyser over `samples`; returns the number of beats (so the work
/// cannot be optimised away).
#[inline(never)]
fn stage_live(samples: &[f32], rate: u32, block: usize, params: &AnalysisParams) -> usize {
    let mut live = LiveAnalyzer::new(rate, params);
    let mut beats = 0;
    for b in samples.chunks(block) {
        for ev in live.process(black_box(b)) {
            if let Event::Beat(_) = ev {
                beats += 1;
            }
        }
    }
    beats
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("live_analysis: {e}");
            return ExitCode::FAILURE;
        }
    };
    let samples = input(o.seconds, o.rate);
    let audio_s = samples.len() as f64 / o.rate as f64;
    let mut times = Vec::with_capacity(o.repeat);
    let mut beats = 0;
    for _ in 0..o.repeat {
        let t = Instant::now();
        for _ in 0..o.passes {
            beats = black_box(stage_live(&samples, o.rate, o.block, &o.params));
        }
        times.push(t.elapsed().as_secs_f64() / o.passes as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let us_per_s = 1e6 * median / audio_s;
    println!(
        "live analysis: {audio_s:.1} s of audio at {} Hz in blocks of {}, {beats} beats; \
         median of {} runs: {:.1} us per audio second = {:.3} % of one core here ({:.0}x real time)",
        o.rate,
        o.block,
        o.repeat,
        us_per_s,
        us_per_s / 1e4,
        audio_s / median.max(1e-12),
    );
    ExitCode::SUCCESS
}
