//! Scores Convoy's offline and live beat trackers and prints their cost.
//!
//! `cargo run --release --example analysis_eval [-- --corpus DIR] [--dump DIR] [--no-live] [--live KEY=VALUE]… [--offline KEY=VALUE]… [--tempo KEY=VALUE]…`
//!
//! Without `--corpus` it uses the built-in synthetic corpus ([`synth::corpus`]); with
//! `--corpus DIR` it reads a `tools/beat-eval` corpus (`DIR/clips/*.wav` or `DIR/*.wav`,
//! each with its `.truth.json`), so the MIDI corpus can be scored without Python. For
//! every clip it prints the offline and live F-measure (±70 ms), CMLt and AMLt (beats
//! before 5 s ignored, as `mir_eval.beat.evaluate` does), the offline downbeat F-measure,
//! the live beat-phase error after 8 s (p50/p95 to the nearest reference beat) and the
//! time the live tracker needs to lock (first beat of a run of four correct ones). It
//! then prints the phase error of beats extrapolated 2 s ahead from the live beat grid
//! (what the show scheduler uses), how far ahead of the audio the live beat events are
//! announced, and the cost of each path per audio second. `--no-live` skips the live
//! tracker (its columns print 0) for a quick look at the offline beats and downbeats. `--dump DIR` writes each clip as raw little-endian f32
//! with its ground truth and both trackers' beats. `--live KEY=VALUE` (repeatable) overrides a
//! [`LiveConfig`](convoy::analysis::LiveConfig) setting, e.g. `--live switch_margin=0.3`, to compare settings without rebuilding; `--offline KEY=VALUE` does the same for the offline
//! tracker's [`BeatConfig`](convoy::analysis::BeatConfig), e.g. `--offline high_weight=0`;
//! `--tempo KEY=VALUE` sets both trackers' [`TempoConfig`](convoy::analysis::TempoConfig),
//! e.g. `--tempo pulse_floor=0`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use convoy::analysis::{analyze_offline, synth, AnalysisParams, Event, LiveAnalyzer};
use convoy::rig::eval;

/// Live phase errors are counted once the tracker has heard this much music.
const SETTLE_S: f64 = 8.0;
/// Block size fed to the live analyser (about what the playback tap delivers).
const LIVE_BLOCK: usize = 1024;
/// How far ahead the show scheduler asks the live beat grid for a beat.
const AHEAD_S: f64 = 2.0;

struct Clip {
    name: String,
    sample_rate: u32,
    samples: Vec<f32>,
    bpm_label: String,
    beats: Vec<f64>,
    downbeats: Vec<f64>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let clips = match opt("--corpus") {
        Some(dir) => match load_corpus(Path::new(&dir)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("analysis_eval: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => synthetic_corpus(),
    };
    let mut params = AnalysisParams::default();
    for (i, a) in args.iter().enumerate() {
        let set = args.get(i + 1).map(String::as_str).unwrap_or_default();
        let applied = match a.as_str() {
            "--live" => params.live.set(set),
            "--offline" => params.beat.set(set),
            // Both trackers' tempo settings (the offline one and the live one's copy).
            "--tempo" => params
                .tempo
                .set(set)
                .and_then(|()| params.live.tempo.set(set)),
            _ => continue,
        };
        if let Err(e) = applied {
            eprintln!("analysis_eval: {a} {set}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if opt("--corpus").is_none() {
        onset_calibration(&clips[0], &params);
    }
    let no_live = args.iter().any(|a| a == "--no-live");
    run(&clips, &params, opt("--dump").as_deref(), no_live);
    ExitCode::SUCCESS
}

fn synthetic_corpus() -> Vec<Clip> {
    let sr = 44_100;
    synth::corpus(sr)
        .into_iter()
        .map(|c| Clip {
            name: c.name,
            sample_rate: sr,
            samples: c.samples,
            bpm_label: format!("{:.0}", c.bpm),
            beats: c.beats,
            downbeats: c.downbeats,
        })
        .collect()
}

fn load_corpus(dir: &Path) -> Result<Vec<Clip>, String> {
    let clips_dir = if dir.join("clips").is_dir() {
        dir.join("clips")
    } else {
        dir.to_path_buf()
    };
    let mut wavs: Vec<PathBuf> = std::fs::read_dir(&clips_dir)
        .map_err(|e| format!("cannot read {}: {e}", clips_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    wavs.sort();
    if wavs.is_empty() {
        return Err(format!("no .wav clips in {}", clips_dir.display()));
    }
    let mut out = Vec::with_capacity(wavs.len());
    for wav in wavs {
        let truth_path = wav.with_extension("truth.json");
        let text = std::fs::read_to_string(&truth_path)
            .map_err(|e| format!("cannot read {}: {e}", truth_path.display()))?;
        let truth: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", truth_path.display()))?;
        let times = |key: &str| -> Result<Vec<f64>, String> {
            truth[key]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .ok_or_else(|| format!("{} has no `{key}` array", truth_path.display()))
        };
        let mut src = convoy::audio::open_track(&wav.to_string_lossy())
            .map_err(|e| format!("{}: {e}", wav.display()))?;
        let sample_rate = src.spec().sample_rate;
        let samples = convoy::audio::read_mono(src.as_mut(), &mut |_| {})
            .map_err(|e| format!("{}: {e}", wav.display()))?;
        let bpm_label = match &truth["tempo"] {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        out.push(Clip {
            name: wav
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sample_rate,
            samples,
            bpm_label,
            beats: times("beats")?,
            downbeats: times("downbeats")?,
        });
    }
    Ok(out)
}

/// Onset timing on the click track of the synthetic corpus.
fn onset_calibration(clip: &Clip, params: &AnalysisParams) {
    let sr = clip.sample_rate;
    let mut live = LiveAnalyzer::new(sr, params);
    let mut onsets = Vec::new();
    for block in clip.samples.chunks(LIVE_BLOCK) {
        for ev in live.process(block) {
            if let Event::Onset(o) = ev {
                onsets.push(o.sample_pos as f64 / sr as f64);
            }
        }
    }
    let errs: Vec<f64> = onsets
        .iter()
        .map(|&o| {
            let n = clip
                .beats
                .iter()
                .copied()
                .min_by(|a, b| (a - o).abs().total_cmp(&(b - o).abs()))
                .unwrap_or(0.0);
            o - n
        })
        .collect();
    let mean = errs.iter().sum::<f64>() / errs.len().max(1) as f64;
    println!(
        "onsets on {}: {} detected / {} clicks, mean signed error {:+.1} ms\n",
        clip.name,
        onsets.len(),
        clip.beats.len(),
        mean * 1000.0
    );
}

/// What the live tracker produced for one clip.
struct LiveRun {
    beats: Vec<f64>,
    /// For every beat: how far ahead of the audio it was announced (s).
    leads: Vec<f64>,
    /// After every block: the first beat at least [`AHEAD_S`] ahead of the
    /// audio, extrapolated from the live beat grid (s).
    ahead: Vec<f64>,
    bpm: f32,
    seconds: f64,
}

fn run_live(clip: &Clip, params: &AnalysisParams) -> LiveRun {
    let sr = clip.sample_rate as f64;
    let mut live = LiveAnalyzer::new(clip.sample_rate, params);
    let (mut beats, mut leads, mut ahead) = (Vec::new(), Vec::new(), Vec::new());
    let t0 = Instant::now();
    for block in clip.samples.chunks(LIVE_BLOCK) {
        let consumed = live.samples_consumed() + block.len() as u64;
        for ev in live.process(block) {
            if let Event::Beat(b) = ev {
                beats.push(b.sample_pos as f64 / sr);
                leads.push((b.sample_pos as f64 - consumed as f64) / sr);
            }
        }
        if let Some(g) = live.beat_grid() {
            let horizon = consumed as f64 + AHEAD_S * sr;
            let k = ((horizon - g.next_beat as f64) / g.period_samples)
                .ceil()
                .max(0.0);
            ahead.push(g.beat(k as u32) as f64 / sr);
        }
    }
    LiveRun {
        beats,
        leads,
        ahead,
        bpm: live.bpm(),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Whether the live tracker's beats after the settling time run at the
/// reference's metrical level: the median interval between them within 10 % of
/// the reference's median interval over the same span. (The phase statistics
/// "at the right level" leave out clips where the tracker follows half or
/// double the tempo, whose every other beat is off by half a beat by
/// construction; a tracker at the right level on the wrong phase stays in.)
fn at_level(reference: &[f64], after: &[f64]) -> bool {
    let (Some(&first), Some(&last)) = (after.first(), after.last()) else {
        return false;
    };
    let span: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|&r| r >= first && r <= last)
        .collect();
    match (median_interval(&span), median_interval(after)) {
        (Some(r), Some(e)) => (e / r - 1.0).abs() <= 0.1,
        _ => false,
    }
}

fn median_interval(beats: &[f64]) -> Option<f64> {
    let mut d: Vec<f64> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(f64::total_cmp);
    Some(d[d.len() / 2])
}

/// Estimated beats up to half a beat after the last reference beat (clips end in
/// silence or a reverb tail, where a tracker rightly keeps predicting), as
/// `tools/beat-eval/evaluate.py` does.
fn until_end(reference: &[f64], est: &[f64]) -> Vec<f64> {
    let n = reference.len();
    if n < 2 {
        return est.to_vec();
    }
    let end = reference[n - 1] + 0.5 * (reference[n - 1] - reference[n - 2]);
    est.iter().copied().filter(|&b| b <= end).collect()
}

/// Time of the first live beat that starts a run of four beats each within
/// ±70 ms of a distinct reference beat at the annotated period.
fn lock_time(reference: &[f64], est: &[f64]) -> Option<f64> {
    let ok = |e: f64| {
        eval::phase_errors(reference, &[e])
            .first()
            .is_some_and(|d| *d <= 0.07)
    };
    let good: Vec<bool> = est.iter().map(|&e| ok(e)).collect();
    (0..est.len().saturating_sub(3)).find_map(|i| {
        let run = good[i..i + 4].iter().all(|g| *g);
        let period_ok = est[i..i + 4].windows(2).all(|w| {
            let d = w[1] - w[0];
            let r = reference
                .partition_point(|&r| r < w[0])
                .min(reference.len() - 1);
            let rp = if r + 1 < reference.len() {
                reference[r + 1] - reference[r]
            } else {
                d
            };
            (d / rp - 1.0).abs() < 0.175
        });
        (run && period_ok).then_some(est[i])
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn run(clips: &[Clip], params: &AnalysisParams, dump: Option<&str>, no_live: bool) {
    println!(
        "{:<22} {:>7} | {:>7} {:>5} {:>5} {:>5} {:>5} {:>3} | {:>7} {:>5} {:>5} {:>5} {:>6} {:>6} {:>5}",
        "clip",
        "bpm",
        "off.bpm",
        "F",
        "CMLt",
        "AMLt",
        "dbF",
        "bar",
        "liv.bpm",
        "F",
        "CMLt",
        "AMLt",
        "p50ms",
        "p95ms",
        "lock"
    );
    let (mut audio_s, mut off_s, mut live_s) = (0.0f64, 0.0f64, 0.0f64);
    let (mut all_err, mut ok_err, mut leads) = (Vec::new(), Vec::new(), Vec::new());
    let (mut all_ahead, mut ok_ahead) = (Vec::new(), Vec::new());
    let mut off_scores = Vec::new();
    let mut live_scores = Vec::new();
    for clip in clips {
        let sr = clip.sample_rate;
        audio_s += clip.samples.len() as f64 / sr as f64;
        let t0 = Instant::now();
        let map = analyze_offline(&clip.samples, sr, params);
        off_s += t0.elapsed().as_secs_f64();
        let off = eval::evaluate(&clip.beats, &until_end(&clip.beats, &map.beats));
        // NaN where the reference has no bar annotation (some real clips).
        let db_f = if clip.downbeats.is_empty() {
            f64::NAN
        } else {
            eval::f_measure(
                &eval::trim_beats(&clip.downbeats, 5.0),
                &eval::trim_beats(&until_end(&clip.beats, &map.downbeats), 5.0),
                0.07,
            )
        };

        let live = if no_live {
            LiveRun {
                beats: Vec::new(),
                leads: Vec::new(),
                ahead: Vec::new(),
                bpm: 0.0,
                seconds: 0.0,
            }
        } else {
            run_live(clip, params)
        };
        live_s += live.seconds;
        leads.extend(live.leads.iter().copied());
        let beats = until_end(&clip.beats, &live.beats);
        let lv = eval::evaluate(&clip.beats, &beats);
        let after: Vec<f64> = beats.iter().copied().filter(|&b| b >= SETTLE_S).collect();
        let errs = eval::phase_errors(&clip.beats, &after);
        all_err.extend(errs.iter().copied());
        let ahead: Vec<f64> = until_end(&clip.beats, &live.ahead)
            .into_iter()
            .filter(|&b| b >= SETTLE_S + AHEAD_S)
            .collect();
        let ahead_errs = eval::phase_errors(&clip.beats, &ahead);
        all_ahead.extend(ahead_errs.iter().copied());
        if at_level(&clip.beats, &after) {
            ok_err.extend(errs.iter().copied());
            ok_ahead.extend(ahead_errs.iter().copied());
        }
        let lock = lock_time(&clip.beats, &beats)
            .map(|t| format!("{t:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:>7} | {:>7.2} {:>5.3} {:>5.3} {:>5.3} {:>5.3} {:>3} | {:>7.2} {:>5.3} {:>5.3} {:>5.3} {:>6.1} {:>6.1} {:>5}",
            clip.name,
            clip.bpm_label,
            map.tempo_bpm,
            off.f_measure,
            off.cmlt,
            off.amlt,
            db_f,
            map.beats_per_bar,
            live.bpm,
            lv.f_measure,
            lv.cmlt,
            lv.amlt,
            eval::percentile(&errs, 50.0) * 1000.0,
            eval::percentile(&errs, 95.0) * 1000.0,
            lock
        );
        off_scores.push(off);
        live_scores.push(lv);
        if let Some(dir) = dump {
            dump_clip(dir, clip, &map.beats, &live.beats);
        }
    }
    let avg = |s: &[eval::BeatScores], f: fn(&eval::BeatScores) -> f64| {
        mean(&s.iter().map(f).collect::<Vec<_>>())
    };
    println!(
        "{:<22} {:>7} | {:>7} {:>5.3} {:>5.3} {:>5.3} {:>5} {:>3} | {:>7} {:>5.3} {:>5.3} {:>5.3}",
        "mean",
        "",
        "",
        avg(&off_scores, |s| s.f_measure),
        avg(&off_scores, |s| s.cmlt),
        avg(&off_scores, |s| s.amlt),
        "",
        "",
        "",
        avg(&live_scores, |s| s.f_measure),
        avg(&live_scores, |s| s.cmlt),
        avg(&live_scores, |s| s.amlt),
    );
    println!();
    println!(
        "live phase error after {SETTLE_S:.0} s: all clips ({} beats) p50 {:.1} ms, p95 {:.1} ms; \
         clips with the live tempo at the reference's level ({} beats) p50 {:.1} ms, p95 {:.1} ms",
        all_err.len(),
        eval::percentile(&all_err, 50.0) * 1000.0,
        eval::percentile(&all_err, 95.0) * 1000.0,
        ok_err.len(),
        eval::percentile(&ok_err, 50.0) * 1000.0,
        eval::percentile(&ok_err, 95.0) * 1000.0,
    );
    println!(
        "live beats extrapolated {AHEAD_S:.0} s ahead from the beat grid: all clips p50 {:.1} ms, \
         p95 {:.1} ms; clips at the reference's level p50 {:.1} ms, p95 {:.1} ms",
        eval::percentile(&all_ahead, 50.0) * 1000.0,
        eval::percentile(&all_ahead, 95.0) * 1000.0,
        eval::percentile(&ok_ahead, 50.0) * 1000.0,
        eval::percentile(&ok_ahead, 95.0) * 1000.0,
    );
    println!(
        "live beats announced ahead of the audio: min {:.1} ms, p50 {:.1} ms, max {:.1} ms, \
         {} of {} after their time (blocks of {LIVE_BLOCK} samples)",
        leads.iter().copied().fold(f64::INFINITY, f64::min) * 1000.0,
        eval::percentile(&leads, 50.0) * 1000.0,
        leads.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 1000.0,
        leads.iter().filter(|&&l| l < 0.0).count(),
        leads.len(),
    );
    println!(
        "offline: {:.1} s of audio in {:.2} s = {:.0}x real time ({:.2} ms per audio second; this machine, 1 thread)",
        audio_s,
        off_s,
        audio_s / off_s.max(1e-9),
        1000.0 * off_s / audio_s.max(1e-9)
    );
    println!(
        "live:    {:.1} s of audio in {:.2} s = {:.0}x real time ({:.2} ms per audio second = {:.2} % of one core here)",
        audio_s,
        live_s,
        audio_s / live_s.max(1e-9),
        1000.0 * live_s / audio_s.max(1e-9),
        100.0 * live_s / audio_s.max(1e-9)
    );
}

fn dump_clip(dir: &str, clip: &Clip, offline: &[f64], live: &[f64]) {
    let write = |ext: &str, bytes: Vec<u8>| {
        let path = format!("{dir}/{}.{ext}", clip.name);
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("analysis_eval: cannot write {path}: {e}");
        }
    };
    let lines = |v: &[f64]| {
        v.iter()
            .map(|b| format!("{b:.6}"))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("analysis_eval: cannot create {dir}: {e}");
        return;
    }
    write(
        "f32",
        clip.samples.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    write("beats", lines(&clip.beats));
    write("offline", lines(offline));
    write("live", lines(live));
}
