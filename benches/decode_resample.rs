//! Decode + resample benchmark: how much CPU the player's decode thread needs per second of
//! audio, without real-time pacing.
//!
//! ```text
//! decode_resample FILE [--stage decode|resample|both|all] [--resampler sinc|fast]
//!                      [--taps N] [--chunk N] [--rate HZ] [--repeat N]
//! ```
//!
//! It uses `convoy::audio::decode::FileSource` and `convoy::audio::resample::RateConverter`
//! the way the player thread does (`audio::engine::Worker::produce_track_chunk`): read up to
//! 2048 frames at a time, map channels to stereo, push into the converter until it has what
//! the next chunk needs, convert one chunk of `--chunk` output frames (the default
//! `audio.period_frames`, 256), scale by the volume into an output buffer standing in for
//! the ring. Stages:
//!
//! - `decode`: open + decode + channel map only;
//! - `resample`: the file is decoded to memory first (not measured), then only the
//!   converter runs over it;
//! - `both`: decode and resample interleaved, as the player does.
//!
//! Each stage runs in its own `#[inline(never)]` function (`stage_decode`,
//! `stage_resample`, `stage_both`) so `valgrind --tool=callgrind
//! --toggle-collect='*stage_both*'` counts the instructions of that stage alone
//! (`tools/bench-decode.sh` does that). Wall time is the median of `--repeat` runs.
//!
//! Built with `harness = false`; run it through `tools/bench-decode.sh`, or
//! `cargo bench --bench decode_resample -- FILE`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use convoy::audio::decode::FileSource;
use convoy::audio::engine::map_channels;
use convoy::audio::resample::RateConverter;
use convoy::audio::Source;
use convoy::config::ResamplerKind;

/// Frames per `Source::read`, as in the player.
const READ_FRAMES: usize = 2048;
/// Output channels (the sink's default layout).
const OUT_CHANNELS: usize = 2;
/// Speed range the converter accepts (`audio.max_rate_ppm`).
const MAX_PPM: f64 = 1000.0;

struct Opts {
    file: PathBuf,
    stages: Vec<String>,
    kind: ResamplerKind,
    taps: usize,
    chunk: usize,
    rate: u32,
    repeat: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: decode_resample FILE [--stage decode|resample|both|all] [--resampler sinc|fast] \
         [--taps N] [--chunk N] [--rate HZ] [--repeat N]"
    );
    std::process::exit(2)
}

fn parse() -> Option<Opts> {
    let mut file = None;
    let mut stage = "all".to_string();
    let mut kind = ResamplerKind::Sinc;
    let mut taps = 128;
    let mut chunk = 256;
    let mut rate = 48_000;
    let mut repeat = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            // Passed by `cargo bench`.
            "--bench" => {}
            "--stage" => stage = value(),
            "--resampler" => {
                kind = match value().as_str() {
                    "sinc" => ResamplerKind::Sinc,
                    "fast" => ResamplerKind::Fast,
                    _ => usage(),
                }
            }
            "--taps" => taps = value().parse().unwrap_or_else(|_| usage()),
            "--chunk" => chunk = value().parse().unwrap_or_else(|_| usage()),
            "--rate" => rate = value().parse().unwrap_or_else(|_| usage()),
            "--repeat" => repeat = value().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            s => file = Some(PathBuf::from(s)),
        }
    }
    let stages = match stage.as_str() {
        "all" => vec!["decode".into(), "resample".into(), "both".into()],
        "decode" | "resample" | "both" => vec![stage],
        _ => usage(),
    };
    Some(Opts {
        file: file?,
        stages,
        kind,
        taps,
        chunk,
        rate,
        repeat: repeat.max(1),
    })
}

fn open(path: &Path) -> FileSource {
    FileSource::open(path).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    })
}

fn converter(o: &Opts, in_rate: u32) -> RateConverter {
    RateConverter::new(
        o.kind,
        o.taps,
        in_rate,
        o.rate,
        OUT_CHANNELS,
        o.chunk,
        MAX_PPM,
    )
    .expect("converter")
}

/// Open, decode and channel-map the whole file. Returns (source frames, checksum).
#[inline(never)]
fn stage_decode(path: &Path) -> (u64, f32) {
    let mut src = open(path);
    let ch = src.spec().channels;
    let (mut scratch, mut mapped) = (Vec::new(), Vec::new());
    let (mut frames, mut sum) = (0u64, 0.0f32);
    loop {
        scratch.clear();
        let n = src.read(&mut scratch, READ_FRAMES).expect("decode");
        if n == 0 {
            break;
        }
        map_channels(&scratch, ch, &mut mapped, OUT_CHANNELS);
        frames += n as u64;
        sum += mapped[0];
    }
    (frames, black_box(sum))
}

/// Resample `input` (interleaved stereo at `in_rate`), fed in player-sized blocks. Returns
/// (output frames, checksum).
#[inline(never)]
fn stage_resample(o: &Opts, input: &[f32], in_rate: u32) -> (u64, f32) {
    let mut conv = converter(o, in_rate);
    let end = (input.len() / OUT_CHANNELS) as f64;
    let mut ring = vec![0.0f32; o.chunk * OUT_CHANNELS];
    let (mut at, mut frames, mut sum) = (0usize, 0u64, 0.0f32);
    loop {
        while at < input.len() && conv.buffered() < conv.input_needed() {
            let n = (input.len() - at).min(READ_FRAMES * OUT_CHANNELS);
            conv.push_input(&input[at..at + n]);
            at += n;
        }
        let done = at >= input.len();
        let Some((audio, pos)) = conv.process(done).expect("resample") else {
            break;
        };
        if done && pos.start >= end {
            break;
        }
        for (d, s) in ring.iter_mut().zip(audio) {
            *d = s * 1.0;
        }
        frames += (audio.len() / OUT_CHANNELS) as u64;
        sum += black_box(&ring)[0];
    }
    (frames, black_box(sum))
}

/// Decode and resample interleaved, exactly as the player thread does. Returns
/// (output frames, checksum).
#[inline(never)]
fn stage_both(o: &Opts, path: &Path) -> (u64, f32) {
    let mut src = open(path);
    let spec = src.spec();
    let mut conv = converter(o, spec.sample_rate);
    let end = spec.frames.map(|f| f as f64).unwrap_or(f64::INFINITY);
    let (mut scratch, mut mapped) = (Vec::new(), Vec::new());
    let mut ring = vec![0.0f32; o.chunk * OUT_CHANNELS];
    let (mut done, mut frames, mut sum) = (false, 0u64, 0.0f32);
    loop {
        while !done && conv.buffered() < conv.input_needed() {
            scratch.clear();
            let n = src.read(&mut scratch, READ_FRAMES).expect("decode");
            if n == 0 {
                done = true;
                break;
            }
            map_channels(&scratch, spec.channels, &mut mapped, OUT_CHANNELS);
            conv.push_input(&mapped);
        }
        let Some((audio, pos)) = conv.process(done).expect("resample") else {
            break;
        };
        if done && pos.start >= end {
            break;
        }
        for (d, s) in ring.iter_mut().zip(audio) {
            *d = s * 1.0;
        }
        frames += (audio.len() / OUT_CHANNELS) as u64;
        sum += black_box(&ring)[0];
    }
    (frames, black_box(sum))
}

/// The whole file, decoded and mapped to stereo (input of the `resample` stage).
fn decode_all(path: &Path) -> (Vec<f32>, u32) {
    let mut src = open(path);
    let spec = src.spec();
    let (mut scratch, mut mapped, mut all) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        scratch.clear();
        if src.read(&mut scratch, READ_FRAMES).expect("decode") == 0 {
            break;
        }
        map_channels(&scratch, spec.channels, &mut mapped, OUT_CHANNELS);
        all.extend_from_slice(&mapped);
    }
    (all, spec.sample_rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let Some(o) = parse() else {
        // `cargo bench` with no file: nothing to measure.
        eprintln!("decode_resample: no input file given (see tools/bench-decode.sh)");
        return;
    };
    let spec = open(&o.file).spec();
    let needs_pcm = o.stages.iter().any(|s| s == "resample");
    let (pcm, in_rate) = if needs_pcm {
        decode_all(&o.file)
    } else {
        (Vec::new(), spec.sample_rate)
    };
    let kind = match o.kind {
        ResamplerKind::Sinc => format!("sinc{}", o.taps),
        ResamplerKind::Fast => "fast".to_string(),
    };
    println!(
        "# file={} rate={} channels={} -> {} Hz x{} resampler={} chunk={}",
        o.file.display(),
        spec.sample_rate,
        spec.channels,
        o.rate,
        OUT_CHANNELS,
        kind,
        o.chunk
    );
    println!("stage\tresampler\taudio_s\tmedian_wall_s\trtf\tx_realtime\tframes");
    for stage in &o.stages {
        let mut times = Vec::with_capacity(o.repeat);
        let mut result = (0, 0.0);
        for _ in 0..o.repeat {
            let t = Instant::now();
            result = match stage.as_str() {
                "decode" => stage_decode(&o.file),
                "resample" => stage_resample(&o, &pcm, in_rate),
                _ => stage_both(&o, &o.file),
            };
            times.push(t.elapsed().as_secs_f64());
        }
        let (frames, _) = result;
        let audio_s = if stage == "decode" {
            frames as f64 / spec.sample_rate as f64
        } else {
            frames as f64 / o.rate as f64
        };
        let wall = median(times);
        let resampler = if stage == "decode" { "-" } else { &kind };
        println!(
            "{stage}\t{resampler}\t{audio_s:.3}\t{wall:.6}\t{:.6}\t{:.1}\t{frames}",
            wall / audio_s,
            audio_s / wall
        );
    }
}
