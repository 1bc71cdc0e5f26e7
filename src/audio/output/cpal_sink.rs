//! The `cpal` sink: real ALSA output (a USB speaker on the Pi). The stream lives on its own
//! thread (cpal streams are not `Send` on every host). When the device reports an error (a
//! USB speaker unplugged, an ALSA I/O error) the stream is rebuilt with backoff and the
//! music goes on where the ring is: the callback's [`RenderCore`] is handed back when the
//! old stream drops its callback, so no state is lost. REAL-TIME PATH: the data callback is
//! [`RenderCore::render`] plus, for integer devices, a conversion through a buffer allocated
//! before the stream starts; the heard-at time is `now + (playback − callback)` from cpal's
//! stream timestamps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::{Sink, SinkHandle};
use crate::audio::render::RenderCore;
use crate::audio::source::AudioError;
use crate::clock::mono_ns;
use crate::config::AudioConfig;

/// An ALSA device opened through cpal.
pub struct CpalSink {
    device: cpal::Device,
    name: String,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
}

impl CpalSink {
    /// Find the configured device and check it can play at the configured rate.
    pub fn open(cfg: &AudioConfig) -> Result<CpalSink, AudioError> {
        let host = cpal::default_host();
        let device = if cfg.device == "default" {
            host.default_output_device()
                .ok_or_else(|| AudioError::Output("no default output device".into()))?
        } else {
            host.output_devices()
                .map_err(|e| AudioError::Output(e.to_string()))?
                .find(|d| {
                    d.description()
                        .map(|n| n.name() == cfg.device)
                        .unwrap_or(false)
                })
                .ok_or_else(|| {
                    AudioError::Output(format!("no output device named {:?}", cfg.device))
                })?
        };
        let name = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| cfg.device.clone());
        let default = device
            .default_output_config()
            .map_err(|e| AudioError::Output(format!("{name}: {e}")))?;
        let format = match default.sample_format() {
            cpal::SampleFormat::I16 => cpal::SampleFormat::I16,
            _ => cpal::SampleFormat::F32,
        };
        let config = cpal::StreamConfig {
            channels: cfg.channels,
            sample_rate: cfg.sample_rate,
            // ALSA picks period and buffer; a fixed 256-frame request makes the PulseAudio
            // plugin fail with I/O errors. The timing samples carry the real delay anyway.
            buffer_size: cpal::BufferSize::Default,
        };
        Ok(CpalSink {
            device,
            name,
            config,
            format,
        })
    }
}

impl Sink for CpalSink {
    fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    fn channels(&self) -> usize {
        self.config.channels as usize
    }

    fn describe(&self) -> String {
        format!(
            "cpal sink {:?} {} Hz × {} ch ({:?})",
            self.name, self.config.sample_rate, self.config.channels, self.format
        )
    }

    fn start(self: Box<Self>, core: RenderCore) -> Result<SinkHandle, AudioError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), AudioError>>();
        let thread = std::thread::Builder::new()
            .name("convoy-cpal".into())
            .spawn(move || {
                let (back_tx, back_rx) = std::sync::mpsc::channel::<RenderCore>();
                let mut core = Some(core);
                let mut ready = Some(ready_tx);
                let mut backoff = Backoff::default();
                while !stop_flag.load(Ordering::Acquire) {
                    let Some(c) = core
                        .take()
                        .or_else(|| back_rx.recv_timeout(Duration::from_secs(2)).ok())
                    else {
                        return Err(AudioError::Output(format!(
                            "{}: stream did not release its callback",
                            self.name
                        )));
                    };
                    let failed = Arc::new(AtomicBool::new(false));
                    let slot = CoreSlot {
                        core: Some(c),
                        back: back_tx.clone(),
                    };
                    let shape = Arc::new(CallbackShape::default());
                    let started = build_stream(&self, slot, failed.clone(), shape.clone())
                        .and_then(|stream| {
                            stream
                                .play()
                                .map(|()| stream)
                                .map_err(|e| AudioError::Output(format!("{}: {e}", self.name)))
                        });
                    let wait = match started {
                        Ok(stream) => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(Ok(()));
                            }
                            let playing = std::time::Instant::now();
                            let mut logged = false;
                            while !stop_flag.load(Ordering::Acquire)
                                && !failed.load(Ordering::Acquire)
                            {
                                std::thread::sleep(Duration::from_millis(20));
                                if !logged && playing.elapsed() >= Duration::from_millis(500) {
                                    logged = true;
                                    shape.log(&self.name, self.config.sample_rate);
                                }
                            }
                            drop(stream);
                            let wait = backoff.after_failure(Some(playing.elapsed()));
                            if !stop_flag.load(Ordering::Acquire) {
                                tracing::warn!(
                                    "{}: stream failed; reopening in {wait:?}",
                                    self.name
                                );
                            }
                            wait
                        }
                        Err(e) => {
                            if let Some(tx) = ready.take() {
                                // The first start failing is the caller's error (no device).
                                let msg = e.to_string();
                                let _ = tx.send(Err(e));
                                return Err(AudioError::Output(msg));
                            }
                            let wait = backoff.after_failure(None);
                            tracing::warn!("{e}; retrying in {wait:?}");
                            wait
                        }
                    };
                    if !stop_flag.load(Ordering::Acquire) {
                        std::thread::sleep(wait);
                    }
                }
                Ok(())
            })
            .map_err(|e| AudioError::Output(format!("cannot start cpal thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(SinkHandle::new(stop, thread)),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(AudioError::Output(
                "cpal stream did not start within 5 s".into(),
            )),
        }
    }
}

/// How long to wait before reopening a failed stream: 20 ms, doubling up to 2 s while
/// reopening keeps failing, and 20 ms again after a stream that played for 5 s (an
/// underrun half a minute into a song must not inherit the wait of an earlier outage: the
/// player is silent for all of it). The first retries are quick because the common failure
/// is transient: PulseAudio's ALSA plugin fails a fresh stream with an I/O error now and
/// then, two or three times in a row, and a 100 ms first wait made that a second of
/// silence; a device that is really gone still settles at one attempt every 2 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_secs(2);
    const HEALTHY: Duration = Duration::from_secs(5);

    /// The wait after a failure; `played` is how long the stream ran (`None`: it never
    /// started).
    fn after_failure(&mut self, played: Option<Duration>) -> Duration {
        if played.is_some_and(|p| p >= Self::HEALTHY) {
            self.next = Self::FIRST;
        }
        let wait = self.next;
        self.next = (wait * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// Owns the callback's [`RenderCore`] inside a stream's data callback and hands it back when
/// cpal drops that callback (stream teardown, never in the real-time path), so a rebuilt
/// stream carries on with the same ring and counters.
struct CoreSlot {
    core: Option<RenderCore>,
    back: std::sync::mpsc::Sender<RenderCore>,
}

impl CoreSlot {
    #[inline]
    fn render(&mut self, out: &mut [f32], heard_at_ns: u64) {
        match self.core.as_mut() {
            Some(core) => core.render(out, heard_at_ns),
            None => out.fill(0.0),
        }
    }

    fn channels(&self) -> usize {
        self.core.as_ref().map_or(1, RenderCore::channels)
    }
}

impl Drop for CoreSlot {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            let _ = self.back.send(core);
        }
    }
}

fn build_stream(
    sink: &CpalSink,
    mut core: CoreSlot,
    failed: Arc<AtomicBool>,
    shape: Arc<CallbackShape>,
) -> Result<cpal::Stream, AudioError> {
    let on_error = move |e: cpal::Error| {
        // Not the real-time callback: cpal reports errors from its own thread. Only the
        // first error of a stream is logged; the sink thread then rebuilds the stream.
        if !failed.swap(true, Ordering::AcqRel) {
            tracing::warn!("audio device error: {e}");
        }
    };
    let name = sink.name.clone();
    let result = match sink.format {
        cpal::SampleFormat::I16 => {
            // Preallocated conversion buffer; a larger device request is served in slices.
            let mut scratch = vec![0.0f32; 16_384 * sink.config.channels as usize];
            sink.device.build_output_stream::<i16, _, _>(
                sink.config,
                move |out: &mut [i16], info: &cpal::OutputCallbackInfo| {
                    let ch = core.channels();
                    let heard = heard_at(info, out.len() / ch, &shape);
                    let mut done = 0;
                    while done < out.len() {
                        let n = (out.len() - done).min(scratch.len()) / ch * ch;
                        if n == 0 {
                            break;
                        }
                        core.render(&mut scratch[..n], heard);
                        for (d, s) in out[done..done + n].iter_mut().zip(&scratch[..n]) {
                            *d = (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16;
                        }
                        done += n;
                    }
                },
                on_error,
                None,
            )
        }
        _ => sink.device.build_output_stream::<f32, _, _>(
            sink.config,
            move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let frames = out.len() / core.channels();
                core.render(out, heard_at(info, frames, &shape));
            },
            on_error,
            None,
        ),
    };
    result.map_err(|e| AudioError::Output(format!("{name}: {e}")))
}

/// What the device's callbacks look like (frames asked for, and how far ahead of being
/// heard they are asked), written by the callback and logged once a stream has played a
/// moment: the figures that tell a sensible device buffer from one seconds deep.
#[derive(Debug, Default)]
struct CallbackShape {
    frames: AtomicU64,
    delay_ns: AtomicU64,
}

impl CallbackShape {
    fn log(&self, name: &str, rate: u32) {
        let frames = self.frames.load(Ordering::Relaxed);
        let delay_ms = self.delay_ns.load(Ordering::Relaxed) as f64 * 1e-6;
        tracing::info!(
            "{name}: callbacks of {frames} frames ({:.1} ms), heard {delay_ms:.1} ms after the callback",
            frames as f64 * 1e3 / rate.max(1) as f64
        );
    }
}

/// When the buffer cpal hands us will be heard, on the monotonic clock.
#[inline]
fn heard_at(info: &cpal::OutputCallbackInfo, frames: usize, shape: &CallbackShape) -> u64 {
    let ts = info.timestamp();
    let delay = ts.playback.duration_since(ts.callback).as_nanos() as u64;
    shape.frames.store(frames as u64, Ordering::Relaxed);
    shape.delay_ns.store(delay, Ordering::Relaxed);
    mono_ns() + delay
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_while_reopening_fails_and_starts_over_after_a_healthy_stream() {
        let ms = Duration::from_millis;
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..9).map(|_| b.after_failure(None)).collect();
        assert_eq!(
            waits,
            [
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1280),
                ms(2000),
                ms(2000)
            ]
        );
        // A stream that failed again within a second keeps the long wait …
        assert_eq!(b.after_failure(Some(ms(900))), ms(2000));
        // … one that played for half a minute starts over.
        assert_eq!(b.after_failure(Some(Duration::from_secs(30))), ms(20));
        assert_eq!(b.after_failure(Some(ms(50))), ms(40));
    }
}
