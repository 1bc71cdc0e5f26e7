//! The `null` and `virtual` sinks: one simulated DAC. It consumes one period every
//! `period / (rate · (1 + error))` seconds of the monotonic clock, starting at a fixed
//! instant, so its sample clock is exact by construction; each period is "heard" a fixed
//! latency after it is consumed. `null` is this DAC with no error, latency or recording.
//! `virtual` adds a crystal error, a latency, and a CSV recording of every period:
//! `heard_at_ns,device_frame,ring_frame,track_frame`, where `track_frame` is decoded from
//! the position pilot in the audio itself when `pilot` is on, so the recording states what
//! was *really* played, not what the engine believes it played. In `fast` mode the clock is
//! simulated and the DAC consumes as fast as the player fills the ring (tests, benchmarks).
//!
//! The DAC thread calls the real-time [`RenderCore::render`]; recording happens after it, on
//! this simulation thread, which is not a real device callback.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Sink, SinkHandle};
use crate::audio::pilot::PilotDecoder;
use crate::audio::render::RenderCore;
use crate::audio::source::AudioError;
use crate::clock::{mono_ns, sleep_until_mono};
use crate::config::AudioConfig;

/// Settings of a paced sink.
#[derive(Debug, Clone, PartialEq)]
pub struct PacedSinkOptions {
    /// Nominal rate, Hz.
    pub sample_rate: u32,
    /// Channels per frame.
    pub channels: usize,
    /// Frames per period.
    pub period_frames: usize,
    /// Crystal error, ppm (positive consumes faster).
    pub rate_error_ppm: f64,
    /// Consumption-to-sound latency, ns.
    pub latency_ns: u64,
    /// CSV recording destination.
    pub record: Option<PathBuf>,
    /// Decode the position pilot into the recording.
    pub pilot: bool,
    /// Simulated time.
    pub fast: bool,
    /// Name for logs: "null" or "virtual".
    pub label: &'static str,
    /// Injected outage: (ns after the sink starts, length ns); the DAC consumes nothing
    /// meanwhile, as a device whose stream is being rebuilt.
    pub stall: Option<(u64, u64)>,
}

impl PacedSinkOptions {
    /// From `[audio]`; `virtual_sink` selects the virtual DAC's error, latency and recording.
    pub fn from_config(cfg: &AudioConfig, virtual_sink: bool) -> Self {
        let v = &cfg.virtual_sink;
        PacedSinkOptions {
            sample_rate: cfg.sample_rate,
            channels: cfg.channels as usize,
            period_frames: cfg.period_frames as usize,
            rate_error_ppm: if virtual_sink { v.rate_error_ppm } else { 0.0 },
            latency_ns: if virtual_sink {
                (v.latency_ms * 1e6) as u64
            } else {
                0
            },
            record: (virtual_sink && !v.record.is_empty()).then(|| PathBuf::from(&v.record)),
            pilot: virtual_sink && v.pilot,
            fast: virtual_sink && v.fast,
            label: if virtual_sink { "virtual" } else { "null" },
            stall: (virtual_sink && v.stall_at_s > 0.0 && v.stall_ms > 0.0)
                .then_some(((v.stall_at_s * 1e9) as u64, (v.stall_ms * 1e6) as u64)),
        }
    }
}

/// A simulated DAC paced by the monotonic clock.
pub struct PacedSink {
    opts: PacedSinkOptions,
}

impl PacedSink {
    /// A sink with these options.
    pub fn new(opts: PacedSinkOptions) -> Self {
        PacedSink { opts }
    }
}

impl Sink for PacedSink {
    fn sample_rate(&self) -> u32 {
        self.opts.sample_rate
    }

    fn channels(&self) -> usize {
        self.opts.channels
    }

    fn describe(&self) -> String {
        let o = &self.opts;
        format!(
            "{} sink {} Hz × {} ch, rate error {:+.1} ppm, latency {:.3} ms{}",
            o.label,
            o.sample_rate,
            o.channels,
            o.rate_error_ppm,
            o.latency_ns as f64 / 1e6,
            if o.fast { ", simulated time" } else { "" }
        )
    }

    fn start(self: Box<Self>, core: RenderCore) -> Result<SinkHandle, AudioError> {
        let opts = self.opts;
        let recorder = match &opts.record {
            Some(path) => Some(Recorder::create(path.clone(), &opts)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("convoy-{}-dac", opts.label))
            .spawn(move || run_dac(opts, core, recorder, &stop_flag))
            .map_err(|e| AudioError::Output(format!("cannot start sink thread: {e}")))?;
        Ok(SinkHandle::new(stop, thread))
    }
}

fn run_dac(
    opts: PacedSinkOptions,
    mut core: RenderCore,
    mut recorder: Option<Recorder>,
    stop: &AtomicBool,
) -> Result<(), AudioError> {
    let ch = opts.channels.max(1);
    let period = opts.period_frames.max(1);
    let mut buf = vec![0.0f32; period * ch];
    let actual_rate = opts.sample_rate as f64 * (1.0 + opts.rate_error_ppm * 1e-6);
    let ns_per_frame = 1e9 / actual_rate;
    let mut t0 = mono_ns() + 2_000_000;
    let mut stall = opts.stall;
    let mut consumed: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let mut consume_at = t0 + (consumed as f64 * ns_per_frame).round() as u64;
        if let Some((at, len)) = stall.filter(|&(at, _)| consume_at >= t0 + at) {
            tracing::warn!(
                "{} sink: injected outage of {:.0} ms at {:.3} s",
                opts.label,
                len as f64 / 1e6,
                at as f64 / 1e9
            );
            stall = None;
            t0 += len;
            consume_at += len;
        }
        if opts.fast {
            // Simulated time: wait for a full period of audio instead of for the clock.
            while core.ready_frames() < period
                && !core.is_abandoned()
                && !stop.load(Ordering::Acquire)
            {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            if core.ready_frames() == 0 && core.is_abandoned() {
                break;
            }
        } else {
            sleep_until_mono(consume_at);
        }
        let heard_at = consume_at + opts.latency_ns;
        let ring_before = core.shared_ring_frames();
        core.render(&mut buf, heard_at);
        if let Some(rec) = recorder.as_mut() {
            rec.record(heard_at, consumed, ring_before, &buf, ch)?;
        }
        consumed += period as u64;
    }
    if let Some(rec) = recorder {
        rec.finish()?;
    }
    Ok(())
}

/// CSV writer for the virtual sink's timeline.
struct Recorder {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    pilot: Option<PilotDecoder>,
}

impl Recorder {
    fn create(path: PathBuf, opts: &PacedSinkOptions) -> Result<Self, AudioError> {
        let err = |source| AudioError::Record {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = std::fs::File::create(&path).map_err(err)?;
        let mut out = std::io::BufWriter::new(file);
        writeln!(
            out,
            "# convoy virtual sink: rate={} rate_error_ppm={} latency_ns={} period={} pilot={}",
            opts.sample_rate, opts.rate_error_ppm, opts.latency_ns, opts.period_frames, opts.pilot
        )
        .map_err(err)?;
        writeln!(out, "heard_at_ns,device_frame,ring_frame,track_frame").map_err(err)?;
        Ok(Recorder {
            path,
            out,
            pilot: opts.pilot.then(PilotDecoder::new),
        })
    }

    fn record(
        &mut self,
        heard_at: u64,
        device_frame: u64,
        ring_frame: u64,
        buf: &[f32],
        ch: usize,
    ) -> Result<(), AudioError> {
        let track = match (&mut self.pilot, ch >= 2) {
            (Some(p), true) => p.decode(buf[0], buf[1]).map(|f| format!("{f:.3}")),
            _ => None,
        };
        writeln!(
            self.out,
            "{heard_at},{device_frame},{ring_frame},{}",
            track.as_deref().unwrap_or("")
        )
        .map_err(|source| AudioError::Record {
            path: self.path.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<(), AudioError> {
        self.out.flush().map_err(|source| AudioError::Record {
            path: self.path.clone(),
            source,
        })
    }
}
