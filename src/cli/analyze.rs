//! `convoy analyze FILE…`: decode each track to mono, run the offline analysis
//! ([`crate::analysis::analyze_offline`]) and write `<out>/<file name>.beatmap.json`
//! (`song.flac.beatmap.json`; `demo.beatmap.json` for the built-in song) atomically,
//! several files in parallel, with progress on stderr and a summary table on stdout. A file
//! that fails is reported on one line naming it; the others still complete and the exit
//! status is non-zero.

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::analysis::{analyze_offline, AnalysisParams, Beatmap};
use crate::audio;

/// `convoy analyze --help` examples (each `  convoy …` line parses; tested in `cli`).
pub(super) const EXAMPLES: &str = "\
Examples:
  convoy analyze demo                    the built-in song into beatmaps/
  convoy analyze -o maps -j 2 a.flac b.mp3
  convoy analyze --force song.flac       re-analyse even when up to date";

/// Arguments of `convoy analyze`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// Audio files (WAV, FLAC, MP3, Ogg/Vorbis, …), or `demo` for the built-in song.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Directory the beatmaps are written to (created if missing).
    #[arg(long, short = 'o', default_value = "beatmaps")]
    pub out: PathBuf,
    /// Files analysed at once (default: the number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Re-analyse even when an up-to-date beatmap exists, and overwrite a beatmap that
    /// belongs to different content.
    #[arg(long)]
    pub force: bool,
}

/// What happened to one file.
enum Outcome {
    Written(Summary),
    UpToDate,
}

/// Figures printed in the summary table.
struct Summary {
    bpm: f64,
    beats: usize,
    bars: usize,
    sections: usize,
    duration_s: f64,
    elapsed: Duration,
}

/// Progress of one file, shared with the display thread.
struct Progress {
    name: String,
    /// Frames in the track when the container says, else 0.
    total_frames: AtomicU64,
    decoded: AtomicU64,
    /// 0 waiting, 1 decoding, 2 analysing, 3 done.
    stage: AtomicUsize,
}

/// Run `convoy analyze`.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.files.len().max(1));

    let progress: Vec<Arc<Progress>> = args
        .files
        .iter()
        .map(|f| {
            Arc::new(Progress {
                name: f.clone(),
                total_frames: AtomicU64::new(0),
                decoded: AtomicU64::new(0),
                stage: AtomicUsize::new(0),
            })
        })
        .collect();
    let results: Vec<Mutex<Option<anyhow::Result<Outcome>>>> =
        args.files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let tty = std::io::stderr().is_terminal();
    let stems = output_names(&args.files);

    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = args.files.get(i) else { break };
                let res = match &stems[i] {
                    Ok(stem) => analyze_one(file, stem, args, &progress[i]),
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                };
                progress[i].stage.store(3, Ordering::Release);
                let n = finished.fetch_add(1, Ordering::AcqRel) + 1;
                report_done(file, &res, n, args.files.len(), tty);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(res);
                }
            });
        }
        if tty {
            s.spawn(|| {
                while finished.load(Ordering::Acquire) < args.files.len() {
                    std::thread::sleep(Duration::from_millis(200));
                    draw_progress(&progress);
                }
                eprint!("\r\x1b[K");
            });
        }
    });

    print_summary(&args.files, &results);
    let failed = results
        .iter()
        .filter(|r| r.lock().map_or(true, |r| !matches!(*r, Some(Ok(_)))))
        .count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} files could not be analysed",
        args.files.len()
    );
    Ok(())
}

/// The beatmap name of every input (its file name); a name used twice is an error for the
/// later files.
fn output_names(files: &[String]) -> Vec<Result<String, String>> {
    let mut seen: Vec<String> = Vec::new();
    files
        .iter()
        .map(|f| {
            // The whole file name: `song.flac` and `song.ogg` get separate beatmaps.
            let stem = if is_builtin(f) {
                "demo".to_string()
            } else {
                Path::new(f)
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{f}: has no file name"))?
            };
            if seen.contains(&stem) {
                return Err(format!(
                    "{f}: another input also writes {stem}.beatmap.json; rename one"
                ));
            }
            seen.push(stem.clone());
            Ok(stem)
        })
        .collect()
}

fn is_builtin(track: &str) -> bool {
    matches!(track, "demo" | "builtin:demo")
}

fn analyze_one(
    file: &str,
    stem: &str,
    args: &AnalyzeArgs,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let began = Instant::now();
    let out_path = args.out.join(format!("{stem}.beatmap.json"));
    let mut source = audio::open_track(file).with_context(|| format!("cannot analyse {file}"))?;
    let spec = source.spec();
    // The hash comes first so an up-to-date beatmap is found without decoding.
    let hash = if is_builtin(file) {
        None
    } else {
        Some(file_sha256(Path::new(file)).with_context(|| format!("cannot read {file}"))?)
    };
    if let (Some(h), false) = (&hash, args.force) {
        if let Ok(text) = fs::read_to_string(&out_path) {
            match Beatmap::from_json(&text) {
                Ok(old) if &old.track.content_hash == h => return Ok(Outcome::UpToDate),
                _ => anyhow::bail!(
                    "{}: {} exists for other content (use --force to overwrite)",
                    file,
                    out_path.display()
                ),
            }
        }
    }

    progress
        .total_frames
        .store(spec.frames.unwrap_or(0), Ordering::Relaxed);
    progress.stage.store(1, Ordering::Release);
    let mono = audio::read_mono(source.as_mut(), &mut |done| {
        progress.decoded.store(done, Ordering::Relaxed);
    })
    .with_context(|| format!("cannot analyse {file}"))?;
    anyhow::ensure!(!mono.is_empty(), "{file}: no audio samples");
    let hash = match hash {
        Some(h) => h,
        // A generated track has no file: hash its mono samples instead.
        None => {
            let mut h = Sha256::new();
            for x in &mono {
                h.update(x.to_le_bytes());
            }
            hex(&h.finalize())
        }
    };
    progress.stage.store(2, Ordering::Release);
    let params = AnalysisParams {
        content_hash: hash,
        ..AnalysisParams::default()
    };
    let map = analyze_offline(&mono, spec.sample_rate, &params);
    drop(mono);
    write_atomically(&out_path, format!("{}\n", map.to_json()).as_bytes())?;
    Ok(Outcome::Written(Summary {
        bpm: map.tempo_bpm,
        beats: map.beats.len(),
        bars: map.bars.iter().filter(|b| b.number >= 1).count(),
        sections: map.sections.len(),
        duration_s: map.track.duration_s,
        elapsed: began.elapsed(),
    }))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`,
/// so a reader never sees a half-written beatmap.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

fn report_done(file: &str, res: &anyhow::Result<Outcome>, n: usize, total: usize, tty: bool) {
    let clear = if tty { "\r\x1b[K" } else { "" };
    match res {
        Ok(Outcome::Written(s)) => eprintln!(
            "{clear}[{n}/{total}] {file}: {:.1} BPM, {} beats ({:.1}× real time)",
            s.bpm,
            s.beats,
            realtime(s)
        ),
        Ok(Outcome::UpToDate) => eprintln!("{clear}[{n}/{total}] {file}: beatmap up to date"),
        Err(e) => eprintln!("{clear}convoy: error: {}", super::one_line(e)),
    }
}

fn draw_progress(progress: &[Arc<Progress>]) {
    let active: Vec<String> = progress
        .iter()
        .filter_map(|p| match p.stage.load(Ordering::Acquire) {
            1 => Some(match p.total_frames.load(Ordering::Relaxed) {
                0 => format!("{} decoding", p.name),
                t => format!(
                    "{} {:.0}%",
                    p.name,
                    100.0 * p.decoded.load(Ordering::Relaxed) as f64 / t as f64
                ),
            }),
            2 => Some(format!("{} analysing", p.name)),
            _ => None,
        })
        .collect();
    if !active.is_empty() {
        eprint!("\r\x1b[K{}", active.join(" | "));
        let _ = std::io::stderr().flush();
    }
}

fn realtime(s: &Summary) -> f64 {
    s.duration_s / s.elapsed.as_secs_f64().max(1e-9)
}

fn print_summary(files: &[String], results: &[Mutex<Option<anyhow::Result<Outcome>>>]) {
    println!(
        "{:<32} {:>8} {:>6} {:>5} {:>8} {:>8} {:>8}",
        "file", "BPM", "beats", "bars", "sections", "time", "×RT"
    );
    for (file, r) in files.iter().zip(results) {
        let Ok(r) = r.lock() else { continue };
        match &*r {
            Some(Ok(Outcome::Written(s))) => println!(
                "{:<32} {:>8.2} {:>6} {:>5} {:>8} {:>7.2}s {:>8.1}",
                file,
                s.bpm,
                s.beats,
                s.bars,
                s.sections,
                s.elapsed.as_secs_f64(),
                realtime(s)
            ),
            Some(Ok(Outcome::UpToDate)) => println!("{file:<32} (up to date)"),
            _ => println!("{file:<32} FAILED"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beatmap_names_keep_the_extension() {
        // issue 27: song.flac and song.ogg both mapped to song.beatmap.json.
        let names = output_names(&[
            "a/song.flac".into(),
            "a/song.ogg".into(),
            "demo".into(),
            "b/song.flac".into(),
        ]);
        assert_eq!(names[0], Ok("song.flac".to_string()));
        assert_eq!(names[1], Ok("song.ogg".to_string()));
        assert_eq!(names[2], Ok("demo".to_string()));
        assert_eq!(
            names[3],
            Err("b/song.flac: another input also writes song.flac.beatmap.json; rename one".into())
        );
    }
}
