//! `convoy analyze FILE…`: decode each track to mono and stream it through the offline
//! analysis ([`crate::analysis::OfflineAnalyzer`], in bounded memory: the samples are not
//! held, the wide per-frame features are spilled to an unlinked file in the output
//! directory; a file shorter than its header says is analysed as far as it goes, with a
//! warning), and write `<out>/<file name>.beatmap.json`
//! (`song.flac.beatmap.json`; `demo.beatmap.json` for the built-in song) atomically,
//! several files in parallel, with progress on stderr and a summary table on stdout. A file
//! that fails is reported on one line naming it; the others still complete and the exit
//! status is non-zero.

use std::cell::{Cell, RefCell};
use std::fs;
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::analysis::{AnalysisParams, Beatmap, OfflineAnalyzer, RowStore, LOW_CONFIDENCE};
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
    /// Beat-grid confidence, `0..=1`.
    confidence: f32,
    beats: usize,
    bars: usize,
    sections: usize,
    duration_s: f64,
    elapsed: Duration,
    /// Printed with the file's line (a truncated file).
    warnings: Vec<String>,
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
    // Decode and analyse in one stream: only frame-rate features are held, and the wide
    // per-frame rows go to a spill file next to the beatmap.
    let mut rows = SpillRows::create(&args.out, stem)?;
    // A generated track has no file: hash its mono samples instead.
    let mut samples_hash = hash.is_none().then(Sha256::new);
    let mut analyzer =
        OfflineAnalyzer::new(spec.sample_rate, &AnalysisParams::default(), &mut rows);
    let decoded = audio::for_each_mono_block(source.as_mut(), &mut |block| {
        if let Some(h) = &mut samples_hash {
            for x in block {
                h.update(x.to_le_bytes());
            }
        }
        analyzer.push(block);
        progress
            .decoded
            .store(analyzer.samples(), Ordering::Relaxed);
    })
    .with_context(|| format!("cannot analyse {file}"))?;
    anyhow::ensure!(decoded > 0, "{file}: no audio samples");
    let mut warnings: Vec<String> = truncation(decoded, spec.frames, spec.sample_rate)
        .into_iter()
        .collect();
    progress.stage.store(2, Ordering::Release);
    let mut map = analyzer.finish();
    let confidence = map.confidence.unwrap_or(0.0);
    warnings.extend(low_confidence(&map));
    rows.check()
        .with_context(|| format!("cannot analyse {file}"))?;
    map.track.content_hash = match (hash, samples_hash) {
        (Some(h), _) => h,
        (None, Some(h)) => hex(&h.finalize()),
        (None, None) => String::new(),
    };
    write_atomically(&out_path, format!("{}\n", map.to_json()).as_bytes())?;
    Ok(Outcome::Written(Summary {
        bpm: map.tempo_bpm,
        confidence,
        beats: map.beats.len(),
        bars: map.bars.iter().filter(|b| b.number >= 1).count(),
        sections: map.sections.len(),
        duration_s: map.track.duration_s,
        elapsed: began.elapsed(),
        warnings,
    }))
}

/// The warning for a beatmap whose beat grid is a guess (issue #27: a 1 s sine was
/// reported as 60.8 BPM with nothing to say it meant nothing).
fn low_confidence(map: &Beatmap) -> Option<String> {
    let c = map.confidence.unwrap_or(0.0);
    if c >= LOW_CONFIDENCE {
        return None;
    }
    Some(if map.beats.is_empty() {
        "no beat found: shows on this track can cue by time, not by bar".to_string()
    } else {
        format!(
            "low beat confidence {c:.2} (below {LOW_CONFIDENCE}): the {:.1} BPM and its {} \
             beats are a guess; check them by ear before cueing a show by bar",
            map.tempo_bpm,
            map.beats.len()
        )
    })
}

/// Frames a track may fall short of its header's length without a warning (10 ms at
/// 44.1 kHz): containers that count the encoder's padding promise a few frames more.
const TRUNCATION_SLACK_FRAMES: u64 = 441;

/// The warning for a file that holds fewer frames than its header promised, if it does.
fn truncation(decoded: u64, promised: Option<u64>, sample_rate: u32) -> Option<String> {
    let promised = promised?;
    if decoded + TRUNCATION_SLACK_FRAMES >= promised {
        return None;
    }
    let secs = |frames: u64| frames as f64 / f64::from(sample_rate.max(1));
    Some(format!(
        "truncated: the header promises {:.1} s ({promised} frames) but the file holds \
         {:.1} s ({decoded} frames); analysed the {:.1} s present",
        secs(promised),
        secs(decoded),
        secs(decoded)
    ))
}

/// The wide per-frame rows of one analysis (log band levels, bass spectrum, chroma: 160
/// bytes a frame, 50 MB an hour at 44.1 kHz), spilled to a file in the output directory
/// instead of memory. The file is unlinked as soon as it is open, so nothing is left
/// behind whatever happens; where the system cannot unlink an open file it is removed
/// when the store is dropped. Written once in order, then read back in spans.
struct SpillRows {
    file: RefCell<BufWriter<fs::File>>,
    /// Still to remove on drop (the early unlink failed).
    path: Option<PathBuf>,
    width: usize,
    rows: usize,
    /// The writer may hold unflushed rows and the file position is at its end.
    writing: Cell<bool>,
    /// The first I/O error; the rows read after it are skipped.
    error: RefCell<Option<std::io::Error>>,
    buf: RefCell<(Vec<u8>, Vec<f32>)>,
}

impl SpillRows {
    fn create(dir: &Path, stem: &str) -> anyhow::Result<SpillRows> {
        let path = dir.join(format!(".{stem}.rows.{}.tmp", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let path = fs::remove_file(&path).is_err().then_some(path);
        Ok(SpillRows {
            file: RefCell::new(BufWriter::with_capacity(1 << 16, file)),
            path,
            width: 0,
            rows: 0,
            writing: Cell::new(true),
            error: RefCell::new(None),
            buf: RefCell::new((Vec::new(), Vec::new())),
        })
    }

    fn fail(&self, e: std::io::Error) {
        self.error.borrow_mut().get_or_insert(e);
    }

    /// The first I/O error of the spill file, if any.
    fn check(&self) -> anyhow::Result<()> {
        match self.error.borrow_mut().take() {
            Some(e) => Err(anyhow::anyhow!("spill file: {e}")),
            None => Ok(()),
        }
    }
}

impl RowStore for SpillRows {
    fn push(&mut self, row: &[f32]) {
        self.width = row.len();
        self.rows += 1;
        let w = self.file.get_mut();
        let mut write = || -> std::io::Result<()> {
            if !self.writing.get() {
                w.seek(SeekFrom::End(0))?;
                self.writing.set(true);
            }
            row.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))
        };
        if let Err(e) = write() {
            self.fail(e);
        }
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn visit(&self, start: usize, end: usize, f: &mut dyn FnMut(&[f32])) {
        const CHUNK_ROWS: usize = 1024;
        let end = end.min(self.rows);
        if self.error.borrow().is_some() || start >= end {
            return;
        }
        if self.width == 0 {
            (start..end).for_each(|_| f(&[]));
            return;
        }
        let mut file = self.file.borrow_mut();
        let mut buf = self.buf.borrow_mut();
        let (bytes, row) = &mut *buf;
        let mut read = || -> std::io::Result<()> {
            if self.writing.get() {
                file.flush()?;
                self.writing.set(false);
            }
            let file = file.get_mut();
            file.seek(SeekFrom::Start((start * self.width * 4) as u64))?;
            let mut at = start;
            while at < end {
                let n = (end - at).min(CHUNK_ROWS);
                bytes.resize(n * self.width * 4, 0);
                file.read_exact(bytes)?;
                for r in bytes.chunks_exact(self.width * 4) {
                    row.clear();
                    row.extend(
                        r.chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    f(row);
                }
                at += n;
            }
            Ok(())
        };
        if let Err(e) = read() {
            self.fail(e);
        }
    }
}

impl Drop for SpillRows {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
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
    if let Ok(Outcome::Written(s)) = res {
        for w in &s.warnings {
            eprintln!("{clear}convoy: warning: {file}: {w}");
        }
    }
    match res {
        Ok(Outcome::Written(s)) => eprintln!(
            "{clear}[{n}/{total}] {file}: {:.1} BPM (confidence {:.2}), {} beats ({:.1}× real time)",
            s.bpm,
            s.confidence,
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
        "{:<32} {:>8} {:>5} {:>6} {:>5} {:>8} {:>8} {:>8}",
        "file", "BPM", "conf", "beats", "bars", "sections", "time", "×RT"
    );
    for (file, r) in files.iter().zip(results) {
        let Ok(r) = r.lock() else { continue };
        match &*r {
            Some(Ok(Outcome::Written(s))) => println!(
                "{:<32} {:>8.2} {:>5.2} {:>6} {:>5} {:>8} {:>7.2}s {:>8.1}",
                file,
                s.bpm,
                s.confidence,
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
