//! The player: one thread that decodes, maps channels, resamples (at the speed the controller
//! asks for) and keeps the SPSC ring to the sink full; and the bookkeeping that turns the
//! sink's timing samples into "track frame X was heard at monotonic time T". That report is
//! what a [`Controller`] (the sync layer's PLL, or nothing) sees after every device period,
//! and its answer — keep going, change speed, hard-seek — is applied here, on this thread,
//! never in the audio callback.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::output::{Sink, SinkHandle};
use super::render::{PlaybackShared, RenderCore, TimingSample};
use super::resample::RateConverter;
use super::source::{AudioError, Source};
use crate::config::{AudioConfig, ResamplerKind};

/// How the engine is built.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// Resampler kind.
    pub resampler: ResamplerKind,
    /// Sinc taps.
    pub sinc_len: usize,
    /// Speed adjustment range, ppm.
    pub max_ppm: f64,
    /// Output frames per resampler chunk.
    pub chunk_frames: usize,
    /// Ring capacity in frames.
    pub ring_frames: usize,
    /// Linear gain.
    pub volume: f32,
}

impl EngineOptions {
    /// From `[audio]`.
    pub fn from_config(cfg: &AudioConfig) -> Self {
        EngineOptions {
            resampler: cfg.resampler,
            sinc_len: cfg.sinc_len as usize,
            max_ppm: cfg.max_rate_ppm,
            chunk_frames: cfg.period_frames as usize,
            ring_frames: (cfg.ring_ms as usize * cfg.sample_rate as usize / 1000)
                .max(cfg.period_frames as usize * 2),
            volume: cfg.volume,
        }
    }
}

/// What is heard now, measured at the sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaybackReport {
    /// Monotonic time (ns) at which `track_frame` is heard.
    pub heard_at_ns: u64,
    /// Track position (source frames, fractional) heard at `heard_at_ns`; `None` when what
    /// is heard is not a track (idle, paused silence).
    pub track_frame: Option<f64>,
    /// Source sample rate of the current track.
    pub track_rate: u32,
    /// Monotonic time (ns) at which the next frame the engine writes will be heard: where a
    /// seek issued now takes effect.
    pub write_heard_at_ns: u64,
    /// Current speed adjustment, ppm.
    pub speed_ppm: f64,
    /// Device frames consumed.
    pub device_frame: u64,
}

/// A controller's decision after a report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// Carry on.
    Keep,
    /// Set the playback speed to `1 + ppm/1e6` (ramped, clamped).
    Speed(f64),
    /// Hard seek: the next frame written is this track frame (heard at the report's
    /// `write_heard_at_ns`).
    Seek(u64),
}

/// Decides speed and seeks from playback reports; runs on the player thread.
pub trait Controller: Send {
    /// Called after each device period that played track audio.
    fn on_report(&mut self, report: &PlaybackReport) -> Control;
}

/// A controller that leaves playback alone.
pub struct FreeRun;

impl Controller for FreeRun {
    fn on_report(&mut self, _report: &PlaybackReport) -> Control {
        Control::Keep
    }
}

/// Commands to the player thread.
pub enum Command {
    /// Replace the current track; start at `start_frame`, paused or not.
    Load {
        /// The track.
        source: Box<dyn Source>,
        /// First frame to play.
        start_frame: u64,
        /// Start paused.
        paused: bool,
        /// Start so that `start_frame` is heard exactly at this monotonic time (ns); silence
        /// until then. `None`: as soon as possible.
        at_heard_ns: Option<u64>,
    },
    /// Jump to a track frame.
    Seek(u64),
    /// Set speed, ppm.
    Speed(f64),
    /// Pause (silence, position held) or resume.
    Pause(bool),
    /// Unload the track.
    Unload,
    /// Replace the controller.
    SetController(Box<dyn Controller>),
}

/// Player state as seen from outside.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PlayerStatus {
    /// Track name, if loaded.
    pub track: Option<String>,
    /// Source rate.
    pub track_rate: u32,
    /// Track length in frames, when known.
    pub track_frames: Option<u64>,
    /// Last heard track frame.
    pub position: Option<f64>,
    /// Monotonic time (ns) at which `position` was heard: with `track_rate` and
    /// `speed_ppm` it maps any track frame to the instant it will be heard.
    pub heard_at_ns: u64,
    /// Paused.
    pub paused: bool,
    /// The track has played to its end (all of it heard).
    pub finished: bool,
    /// Speed adjustment, ppm.
    pub speed_ppm: f64,
    /// Corrupt packets skipped in the current track.
    pub corrupt_packets: u64,
    /// Hard seeks performed (commands and controller).
    pub seeks: u64,
    /// A fatal decode error that stopped the track.
    pub error: Option<String>,
}

/// Handle to the player thread and its sink.
pub struct Player {
    tx: mpsc::Sender<Command>,
    status: Arc<Mutex<PlayerStatus>>,
    shared: Arc<PlaybackShared>,
    out_rate: u32,
    sink_desc: String,
    thread: Option<std::thread::JoinHandle<()>>,
    sink: Option<SinkHandle>,
}

impl Player {
    /// Start the player thread and the sink.
    pub fn start(
        sink: Box<dyn Sink>,
        opts: EngineOptions,
        controller: Box<dyn Controller>,
    ) -> Result<Player, AudioError> {
        let ch = sink.channels();
        let out_rate = sink.sample_rate();
        let sink_desc = sink.describe();
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(opts.ring_frames * ch);
        let (timing_tx, timing_rx) = rtrb::RingBuffer::<TimingSample>::new(1024);
        let shared = PlaybackShared::new();
        let status = Arc::new(Mutex::new(PlayerStatus::default()));
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            opts,
            out_rate,
            channels: ch,
            ring: producer,
            timing: timing_rx,
            status: status.clone(),
            controller,
            track: None,
            segments: VecDeque::new(),
            written: 0,
            scratch: Vec::new(),
            mapped: Vec::new(),
            seeks: 0,
            last_timing: None,
        };
        // Prime the ring with silence so the sink does not start on an underrun.
        worker.fill()?;
        let thread = std::thread::Builder::new()
            .name("convoy-player".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| AudioError::Output(format!("cannot start player thread: {e}")))?;
        let core = RenderCore::new(consumer, timing_tx, shared.clone(), ch);
        let sink = sink.start(core)?;
        tracing::info!("audio output: {sink_desc}");
        Ok(Player {
            tx,
            status,
            shared,
            out_rate,
            sink_desc,
            thread: Some(thread),
            sink: Some(sink),
        })
    }

    /// Send a command to the player thread.
    pub fn send(&self, cmd: Command) -> Result<(), AudioError> {
        self.tx
            .send(cmd)
            .map_err(|_| AudioError::Output("player thread has stopped".into()))
    }

    /// Load a track and start it at `start_frame`.
    pub fn load(&self, source: Box<dyn Source>, start_frame: u64) -> Result<(), AudioError> {
        self.send(Command::Load {
            source,
            start_frame,
            paused: false,
            at_heard_ns: None,
        })
    }

    /// Load a track so that `start_frame` is heard exactly at monotonic time `at_heard_ns`
    /// (a scheduled start; to within one frame once the sink has reported its timing).
    pub fn load_at(
        &self,
        source: Box<dyn Source>,
        start_frame: u64,
        at_heard_ns: u64,
    ) -> Result<(), AudioError> {
        self.send(Command::Load {
            source,
            start_frame,
            paused: false,
            at_heard_ns: Some(at_heard_ns),
        })
    }

    /// Current status.
    pub fn status(&self) -> PlayerStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Callback counters.
    pub fn shared(&self) -> &Arc<PlaybackShared> {
        &self.shared
    }

    /// Device rate.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Sink description.
    pub fn sink_description(&self) -> &str {
        &self.sink_desc
    }

    /// Underruns so far.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// Stop the sink, then the player thread; reports the sink's error, if any.
    pub fn stop(mut self) -> Result<(), AudioError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AudioError> {
        let result = match self.sink.take() {
            Some(s) => s.stop(),
            None => Ok(()),
        };
        // Dropping the sender ends the worker loop.
        let (dead_tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead_tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Ring frames `[ring_start, ring_start + frames)` hold track frames `pos + i·step`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ring_start: u64,
    frames: u64,
    pos: Option<f64>,
    step: f64,
}

struct Track {
    source: Box<dyn Source>,
    converter: RateConverter,
    rate: u32,
    src_channels: usize,
    frames: Option<u64>,
    source_done: bool,
    /// All of the track has been written to the ring; position of the end.
    written_out: bool,
    paused: bool,
    /// Ring frame after the last frame of track audio.
    end_ring_frame: Option<u64>,
    /// Track position where the next paused/silent segment sits.
    hold_pos: f64,
    /// Scheduled start: monotonic ns at which the first frame must be heard.
    start_at: Option<u64>,
}

struct Worker {
    opts: EngineOptions,
    out_rate: u32,
    channels: usize,
    ring: rtrb::Producer<f32>,
    timing: rtrb::Consumer<TimingSample>,
    status: Arc<Mutex<PlayerStatus>>,
    controller: Box<dyn Controller>,
    track: Option<Track>,
    segments: VecDeque<Segment>,
    /// Ring frames written so far.
    written: u64,
    scratch: Vec<f32>,
    mapped: Vec<f32>,
    seeks: u64,
    /// Latest timing sample from the sink (for scheduled starts).
    last_timing: Option<TimingSample>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let period =
            Duration::from_secs_f64(self.opts.chunk_frames as f64 / self.out_rate as f64 / 2.0);
        loop {
            match rx.recv_timeout(period) {
                Ok(cmd) => {
                    self.handle(cmd);
                    while let Ok(cmd) = rx.try_recv() {
                        self.handle(cmd);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.observe();
            if let Err(e) = self.fill() {
                tracing::error!("{e}");
                self.set_status(|s| s.error = Some(e.to_string()));
                self.track = None;
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        let result = match cmd {
            Command::Load {
                source,
                start_frame,
                paused,
                at_heard_ns,
            } => self.load(source, start_frame, paused, at_heard_ns),
            Command::Seek(frame) => self.seek(frame),
            Command::Speed(ppm) => {
                if let Some(t) = self.track.as_mut() {
                    t.converter.set_speed_ppm(ppm);
                }
                Ok(())
            }
            Command::Pause(p) => {
                let write_pos = self.write_position();
                if let Some(t) = self.track.as_mut() {
                    if p && !t.paused {
                        t.hold_pos = write_pos.unwrap_or(t.hold_pos);
                    }
                    if !p && t.paused {
                        let at = t.hold_pos.max(0.0).round() as u64;
                        t.paused = false;
                        let r = self.seek(at);
                        self.set_status(|s| s.paused = false);
                        return r.unwrap_or_else(|e| tracing::error!("{e}"));
                    }
                    t.paused = p;
                }
                self.set_status(|s| s.paused = p);
                Ok(())
            }
            Command::Unload => {
                self.track = None;
                self.set_status(|s| *s = PlayerStatus::default());
                Ok(())
            }
            Command::SetController(c) => {
                self.controller = c;
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!("{e}");
            self.set_status(|s| s.error = Some(e.to_string()));
        }
    }

    fn load(
        &mut self,
        mut source: Box<dyn Source>,
        start_frame: u64,
        paused: bool,
        start_at: Option<u64>,
    ) -> Result<(), AudioError> {
        let spec = source.spec();
        let mut converter = RateConverter::new(
            self.opts.resampler,
            self.opts.sinc_len,
            spec.sample_rate,
            self.out_rate,
            self.channels,
            self.opts.chunk_frames,
            self.opts.max_ppm,
        )?;
        if start_frame > 0 {
            source.seek(start_frame)?;
        }
        converter.reset(start_frame);
        let name = source.name();
        self.track = Some(Track {
            source,
            converter,
            rate: spec.sample_rate,
            src_channels: spec.channels,
            frames: spec.frames,
            source_done: false,
            written_out: false,
            paused,
            end_ring_frame: None,
            hold_pos: start_frame as f64,
            start_at,
        });
        self.set_status(|s| {
            *s = PlayerStatus {
                track: Some(name),
                track_rate: spec.sample_rate,
                track_frames: spec.frames,
                paused,
                ..PlayerStatus::default()
            }
        });
        Ok(())
    }

    fn seek(&mut self, frame: u64) -> Result<(), AudioError> {
        let Some(t) = self.track.as_mut() else {
            return Ok(());
        };
        t.source.seek(frame)?;
        t.converter.reset(frame);
        t.source_done = false;
        t.written_out = false;
        t.end_ring_frame = None;
        t.hold_pos = frame as f64;
        self.seeks += 1;
        let seeks = self.seeks;
        self.set_status(|s| {
            s.seeks = seeks;
            s.finished = false;
        });
        Ok(())
    }

    /// Track position of the next ring frame to be written.
    fn write_position(&self) -> Option<f64> {
        let seg = self.segments.back()?;
        seg.pos.map(|p| p + seg.frames as f64 * seg.step)
    }

    /// Read timing samples, build the report, ask the controller.
    fn observe(&mut self) {
        let mut latest = None;
        while let Ok(t) = self.timing.pop() {
            latest = Some(t);
        }
        let Some(t) = latest else { return };
        self.last_timing = Some(t);
        // Forget segments that have been played entirely.
        while self.segments.len() > 1
            && self.segments[0].ring_start + self.segments[0].frames <= t.ring_frame
        {
            self.segments.pop_front();
        }
        let heard = self.lookup(t.ring_frame).filter(|_| t.frames > 0);
        let Some(track) = self.track.as_ref() else {
            return;
        };
        let ns_per_frame = 1e9 / self.out_rate as f64;
        let report = PlaybackReport {
            heard_at_ns: t.heard_at_ns,
            track_frame: heard,
            track_rate: track.rate,
            write_heard_at_ns: t.heard_at_ns
                + ((self.written.saturating_sub(t.ring_frame)) as f64 * ns_per_frame) as u64,
            speed_ppm: track.converter.speed_ppm(),
            device_frame: t.device_frame,
        };
        let corrupt = track.source.corrupt_packets();
        let finished = track.end_ring_frame.is_some_and(|end| t.ring_frame >= end);
        let speed = report.speed_ppm;
        self.set_status(|s| {
            if heard.is_some() {
                s.position = heard;
                s.heard_at_ns = t.heard_at_ns;
            }
            s.corrupt_packets = corrupt;
            s.finished = finished;
            s.speed_ppm = speed;
        });
        if heard.is_none() || track.paused || finished {
            return;
        }
        match self.controller.on_report(&report) {
            Control::Keep => {}
            Control::Speed(ppm) => {
                if let Some(t) = self.track.as_mut() {
                    t.converter.set_speed_ppm(ppm);
                }
            }
            Control::Seek(frame) => {
                if let Err(e) = self.seek(frame) {
                    tracing::error!("{e}");
                }
            }
        }
    }

    fn lookup(&self, ring_frame: u64) -> Option<f64> {
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.ring_start <= ring_frame && ring_frame < s.ring_start + s.frames)?;
        seg.pos
            .map(|p| p + (ring_frame - seg.ring_start) as f64 * seg.step)
    }

    /// Keep the ring full: track audio when playing, silence otherwise.
    fn fill(&mut self) -> Result<(), AudioError> {
        let ch = self.channels;
        let chunk = self.opts.chunk_frames;
        // At most one ring's worth per call, so reports keep flowing even when the sink
        // consumes as fast as we produce (the virtual sink's simulated time).
        let mut budget = self.opts.ring_frames;
        while self.ring.slots() >= chunk * ch && budget >= chunk {
            budget -= chunk;
            if let Some(wait) = self.frames_until_start() {
                // Scheduled start: silence up to the exact frame, then the track.
                let n = wait.min(chunk as u64) as usize;
                if n > 0 {
                    self.push_silence(n, None);
                    budget = budget.saturating_sub(n);
                    continue;
                }
                if let Some(t) = self.track.as_mut() {
                    t.start_at = None;
                }
            }
            let produced = match self.track.as_ref() {
                Some(t) if !t.paused && !t.written_out => self.produce_track_chunk()?,
                _ => false,
            };
            if !produced {
                let hold = self.track.as_ref().filter(|t| t.paused).map(|t| t.hold_pos);
                self.push_silence(chunk, hold);
            }
        }
        Ok(())
    }

    /// For a scheduled start: ring frames of silence still to write before the track's
    /// first frame (`Some(0)`: start now); `None` when no start is pending. Until the sink
    /// has reported its timing, a whole chunk of silence at a time.
    fn frames_until_start(&self) -> Option<u64> {
        let track = self.track.as_ref()?;
        let at = track.start_at?;
        let lead = track.converter.output_lead();
        let Some(t) = self.last_timing else {
            return Some(self.opts.chunk_frames as u64);
        };
        let ns_per_frame = 1e9 / self.out_rate as f64;
        let write_heard =
            t.heard_at_ns as f64 + self.written.saturating_sub(t.ring_frame) as f64 * ns_per_frame;
        Some(
            ((at as f64 - write_heard) / ns_per_frame - lead)
                .round()
                .max(0.0) as u64,
        )
    }

    fn push_silence(&mut self, frames: usize, hold: Option<f64>) {
        let n = frames * self.channels;
        if let Ok(mut w) = self.ring.write_chunk_uninit(n) {
            let (a, b) = w.as_mut_slices();
            for x in a.iter_mut().chain(b.iter_mut()) {
                x.write(0.0);
            }
            // SAFETY: every slot of the chunk was initialised just above.
            unsafe { w.commit_all() };
            self.push_segment(frames as u64, hold, 0.0);
        }
    }

    fn push_segment(&mut self, frames: u64, pos: Option<f64>, step: f64) {
        self.segments.push_back(Segment {
            ring_start: self.written,
            frames,
            pos,
            step,
        });
        self.written += frames;
        // Bound the history: the ring never holds more than its capacity.
        while self.segments.len() > 4096 {
            self.segments.pop_front();
        }
    }

    /// Decode as needed and write one resampled chunk. Returns false when the track has
    /// nothing more to write.
    fn produce_track_chunk(&mut self) -> Result<bool, AudioError> {
        let ch = self.channels;
        let Some(t) = self.track.as_mut() else {
            return Ok(false);
        };
        while !t.source_done && t.converter.buffered() < t.converter.input_needed() {
            self.scratch.clear();
            let n = t.source.read(&mut self.scratch, 2048)?;
            if n == 0 {
                t.source_done = true;
                break;
            }
            map_channels(&self.scratch, t.src_channels, &mut self.mapped, ch);
            t.converter.push_input(&self.mapped);
        }
        let end = t.frames.map(|f| f as f64).unwrap_or(f64::INFINITY);
        let Some((audio, pos)) = t.converter.process(t.source_done)? else {
            return Ok(false);
        };
        if t.source_done && pos.start >= end {
            // Everything up to the end has been written; what remains is resampler tail.
            t.written_out = true;
            t.end_ring_frame = Some(self.written);
            return Ok(false);
        }
        let frames = audio.len() / ch;
        let volume = self.opts.volume;
        let mut w = match self.ring.write_chunk_uninit(audio.len()) {
            Ok(w) => w,
            Err(_) => return Ok(false),
        };
        let (a, b) = w.as_mut_slices();
        for (dst, src) in a.iter_mut().chain(b.iter_mut()).zip(audio) {
            dst.write(src * volume);
        }
        // SAFETY: the ring chunk has exactly `audio.len()` slots and the zip wrote them all.
        unsafe { w.commit_all() };
        t.hold_pos = pos.start + frames as f64 * pos.step;
        if t.source_done && t.hold_pos >= end {
            t.written_out = true;
            t.end_ring_frame = Some(self.written + frames as u64);
        }
        self.push_segment(frames as u64, Some(pos.start), pos.step);
        Ok(true)
    }

    fn set_status(&self, f: impl FnOnce(&mut PlayerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

/// Interleaved `src_ch` → interleaved `dst_ch`: mono is copied to every output channel,
/// extra source channels are folded into the first two, a mono output gets the average.
pub fn map_channels(input: &[f32], src_ch: usize, out: &mut Vec<f32>, dst_ch: usize) {
    out.clear();
    let frames = input.len() / src_ch.max(1);
    out.reserve(frames * dst_ch);
    for f in input.chunks_exact(src_ch.max(1)) {
        match (src_ch, dst_ch) {
            (s, d) if s == d => out.extend_from_slice(f),
            (1, d) => out.extend(std::iter::repeat_n(f[0], d)),
            (s, 1) => out.push(f.iter().sum::<f32>() / s as f32),
            (_, d) => {
                // Fold: channel i goes to output i % 2 (front pairs), others silent.
                let mut l = 0.0;
                let mut r = 0.0;
                for (i, x) in f.iter().enumerate() {
                    if i % 2 == 0 {
                        l += x
                    } else {
                        r += x
                    }
                }
                let pairs = (f.len() as f32 / 2.0).ceil();
                out.push(l / pairs);
                out.push(r / pairs);
                out.extend(std::iter::repeat_n(0.0, d.saturating_sub(2)));
            }
        }
    }
}
