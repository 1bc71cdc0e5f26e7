//! Audio outputs. Every sink runs [`RenderCore::render`](super::render::RenderCore::render)
//! as its callback body, so the real-time rules live in one place: `cpal` (ALSA, a USB
//! speaker on the Pi), `null` (silent, paced by the monotonic clock) and `virtual` (a
//! simulated DAC with its own crystal error and output latency that records what it played
//! — the measuring instrument of the sync tests). `auto` tries cpal and falls back to null.

mod paced;

#[cfg(feature = "cpal-output")]
mod cpal_sink;

pub use paced::{PacedSink, PacedSinkOptions};

use super::render::RenderCore;
use super::source::AudioError;
use crate::config::{AudioConfig, SinkKind};

/// An output device that has not started yet.
pub trait Sink: Send {
    /// Frames per second the device consumes (nominal).
    fn sample_rate(&self) -> u32;
    /// Channels per frame.
    fn channels(&self) -> usize;
    /// Human description for logs and status.
    fn describe(&self) -> String;
    /// Start consuming through `core`. The returned handle stops the device when dropped.
    fn start(self: Box<Self>, core: RenderCore) -> Result<SinkHandle, AudioError>;
}

/// A running output. Dropping it stops the device and joins its thread.
pub struct SinkHandle {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), AudioError>>>,
}

impl SinkHandle {
    pub(crate) fn new(
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: std::thread::JoinHandle<Result<(), AudioError>>,
    ) -> Self {
        SinkHandle {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop the device and report any error its thread hit (e.g. a recording write failure).
    pub fn stop(mut self) -> Result<(), AudioError> {
        self.shutdown()
    }

    /// Whether the device thread has ended on its own (device lost, input finished).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn shutdown(&mut self) -> Result<(), AudioError> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(AudioError::Output("sink thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("audio output stopped with an error: {e}");
        }
    }
}

/// Open the sink the configuration asks for. `auto` falls back to `null` with a warning
/// when cpal finds no usable device.
pub fn open_sink(cfg: &AudioConfig, kind: SinkKind) -> Result<Box<dyn Sink>, AudioError> {
    let paced = |virtual_sink: bool| -> Box<dyn Sink> {
        Box::new(PacedSink::new(PacedSinkOptions::from_config(
            cfg,
            virtual_sink,
        )))
    };
    match kind {
        SinkKind::Null => Ok(paced(false)),
        SinkKind::Virtual => Ok(paced(true)),
        SinkKind::Cpal => open_cpal(cfg),
        SinkKind::Auto => match open_cpal(cfg) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!("no usable sound card ({e}); playing into the null sink");
                Ok(paced(false))
            }
        },
    }
}

#[cfg(feature = "cpal-output")]
fn open_cpal(cfg: &AudioConfig) -> Result<Box<dyn Sink>, AudioError> {
    Ok(Box::new(cpal_sink::CpalSink::open(cfg)?))
}

#[cfg(not(feature = "cpal-output"))]
fn open_cpal(_cfg: &AudioConfig) -> Result<Box<dyn Sink>, AudioError> {
    Err(AudioError::Output(
        "built without the cpal-output feature".into(),
    ))
}
