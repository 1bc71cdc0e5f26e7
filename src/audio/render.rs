//! The real-time boundary. [`RenderCore::render`] is the *whole* body of every sink's audio
//! callback: copy what the ring holds, zero-fill the rest, count frames, leave a timing
//! sample. REAL-TIME PATH: nothing in this file allocates, locks, logs or blocks; the ring
//! and the timing queue are wait-free SPSC queues (rtrb) and the counters are atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters shared between the audio callback (writer) and the rest of the program (readers).
#[derive(Debug, Default)]
pub struct PlaybackShared {
    /// Frames the device has consumed since the sink started, silence included. This is the
    /// playback clock.
    pub device_frames: AtomicU64,
    /// Frames taken out of the ring since the sink started (real audio, no fill).
    pub ring_frames: AtomicU64,
    /// Callbacks that found fewer frames in the ring than the device asked for.
    pub underruns: AtomicU64,
    /// Frames of silence inserted by underruns.
    pub underrun_frames: AtomicU64,
    /// Callbacks served.
    pub callbacks: AtomicU64,
}

impl PlaybackShared {
    /// A fresh set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// When a callback's first frame reaches the listener, and which frame that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimingSample {
    /// Monotonic time (ns) at which the buffer's first frame is heard at the DAC output.
    pub heard_at_ns: u64,
    /// Device frame index of that frame.
    pub device_frame: u64,
    /// Ring frame index of that frame (equal to the number of ring frames consumed before it).
    pub ring_frame: u64,
    /// Frames of real audio in this buffer (the rest was underrun silence).
    pub frames: u32,
}

/// The callback side of the audio path.
pub struct RenderCore {
    audio: rtrb::Consumer<f32>,
    timing: rtrb::Producer<TimingSample>,
    shared: Arc<PlaybackShared>,
    channels: usize,
}

impl RenderCore {
    /// Wrap the consumer end of the audio ring and the producer end of the timing queue.
    pub fn new(
        audio: rtrb::Consumer<f32>,
        timing: rtrb::Producer<TimingSample>,
        shared: Arc<PlaybackShared>,
        channels: usize,
    ) -> Self {
        RenderCore {
            audio,
            timing,
            shared,
            channels: channels.max(1),
        }
    }

    /// Channels per frame in the ring and in `out`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames ready in the ring.
    pub fn ready_frames(&self) -> usize {
        self.audio.slots() / self.channels
    }

    /// Ring frames consumed so far (the index of the next ring frame to be rendered).
    pub fn shared_ring_frames(&self) -> u64 {
        self.shared.ring_frames.load(Ordering::Relaxed)
    }

    /// Whether the producer side has gone away (player stopped).
    pub fn is_abandoned(&self) -> bool {
        self.audio.is_abandoned()
    }

    /// Fill `out` (interleaved, whole frames) from the ring; `heard_at_ns` is when `out[0]`
    /// will be heard. REAL-TIME: no allocation, no locks, no logging, no blocking.
    #[inline]
    pub fn render(&mut self, out: &mut [f32], heard_at_ns: u64) {
        let ch = self.channels;
        let want = out.len() / ch * ch;
        let device_frame = self.shared.device_frames.load(Ordering::Relaxed);
        let ring_frame = self.shared.ring_frames.load(Ordering::Relaxed);
        let take = (self.audio.slots() / ch * ch).min(want);
        let mut copied = 0;
        if let Ok(chunk) = self.audio.read_chunk(take) {
            let (a, b) = chunk.as_slices();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..a.len() + b.len()].copy_from_slice(b);
            copied = a.len() + b.len();
            chunk.commit_all();
        }
        out[copied..].fill(0.0);
        let frames = (want / ch) as u64;
        let real = (copied / ch) as u64;
        // Timing sample first: it describes the frame counts *before* this buffer. A full
        // queue means nobody is reading; dropping the sample is the right thing.
        let _ = self.timing.push(TimingSample {
            heard_at_ns,
            device_frame,
            ring_frame,
            frames: real as u32,
        });
        if real < frames && !self.audio.is_abandoned() {
            self.shared.underruns.fetch_add(1, Ordering::Relaxed);
            self.shared
                .underrun_frames
                .fetch_add(frames - real, Ordering::Relaxed);
        }
        self.shared.ring_frames.fetch_add(real, Ordering::Relaxed);
        self.shared
            .device_frames
            .fetch_add(frames, Ordering::Relaxed);
        self.shared.callbacks.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_then_zero_fills_and_counts_underruns() {
        let (mut prod, cons) = rtrb::RingBuffer::<f32>::new(64);
        let (tprod, mut tcons) = rtrb::RingBuffer::<TimingSample>::new(8);
        let shared = PlaybackShared::new();
        let mut core = RenderCore::new(cons, tprod, shared.clone(), 2);
        for i in 0..6 {
            prod.push(i as f32).expect("room");
        }
        let mut out = [9.0f32; 8];
        core.render(&mut out, 1000);
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]);
        assert_eq!(shared.device_frames.load(Ordering::Relaxed), 4);
        assert_eq!(shared.ring_frames.load(Ordering::Relaxed), 3);
        assert_eq!(shared.underruns.load(Ordering::Relaxed), 1);
        assert_eq!(shared.underrun_frames.load(Ordering::Relaxed), 1);
        let t = tcons.pop().expect("timing sample");
        assert_eq!(
            (t.heard_at_ns, t.device_frame, t.ring_frame, t.frames),
            (1000, 0, 0, 3)
        );
        core.render(&mut out, 2000);
        let t = tcons.pop().expect("timing sample");
        assert_eq!((t.device_frame, t.ring_frame, t.frames), (4, 3, 0));
    }
}
