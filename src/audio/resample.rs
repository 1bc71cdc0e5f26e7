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

/// Sinc table oversampling: positions resolve to 1/256 of a frame.
const SINC_OVERSAMPLING: usize = 256;

/// Where an output chunk sits in the track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkPosition {
    /// Track position (source frames, fractional) of the chunk's first output frame.
    pub start: f64,
    /// Source frames advanced per output frame at the chunk's start
    /// (≈ `in_rate / out_rate / (1 + ppm)`).
    pub step: f64,
    /// Change of `step` per output frame while a speed change ramps (0 otherwise).
    pub ramp: f64,
}

impl ChunkPosition {
    /// Track position of output frame `j` of the chunk (exact through a ramp).
    pub fn at(&self, j: f64) -> f64 {
        self.start + j * self.step + self.ramp * (j * j + 3.0 * j) / 2.0
    }
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
    /// Output lag behind the first input, in track frames, at the start of a stream: rubato's
    /// initial index sits a whole sinc window (`sinc_len − 1`) before the first input frame,
    /// and the sinc kernel is centred `sinc_len/2 − 1` frames after the index, so the first
    /// output frame is the track at `−sinc_len/2 + t` (plus one step of the oversampled sinc
    /// table, measured). The cubic polynomial starts half its
    /// 4-point window (2 frames) back and is centred on its index.
    kernel_lead: f64,
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
                    oversampling_factor: SINC_OVERSAMPLING,
                    interpolation: SincInterpolationType::Linear,
                    window: WindowFunction::BlackmanHarris2,
                };
                Async::new_sinc(
                    nominal_ratio,
                    max_rel,
                    &params,
                    chunk,
                    channels,
                    FixedAsync::Output,
                )
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
            kernel_lead: match kind {
                ResamplerKind::Sinc => (sinc_len / 2) as f64 - 1.0 / SINC_OVERSAMPLING as f64,
                ResamplerKind::Fast => 2.0,
            },
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
        // rubato's reset returns to the nominal ratio: re-apply the speed, without a ramp.
        let rel = 1.0 / (1.0 + self.speed_ppm * 1e-6);
        if self.inner.set_resample_ratio_relative(rel, false).is_err() {
            self.speed_ppm = 0.0;
        }
        self.fifo.clear();
        self.t_ratio = 1.0 / self.ratio();
        // rubato starts its index `init_last_index` frames before the first input and its
        // kernel is centred further on; `kernel_lead` folds both into one constant (checked
        // against the position pilot in this module's tests).
        self.index = track_frame as f64 - self.kernel_lead;
    }

    /// Output frames between the first frame after a [`Self::reset`] and the frame that
    /// carries the reset's track frame (the interpolation kernel's lead): a scheduled start
    /// begins this much earlier so the requested frame lands on time.
    pub fn output_lead(&self) -> f64 {
        (self.kernel_lead - self.t_ratio) / self.t_ratio
    }

    /// Current speed adjustment, ppm.
    pub fn speed_ppm(&self) -> f64 {
        self.speed_ppm
    }

    /// Set the playback speed to `1 + ppm/1e6` of nominal (clamped to the configured range),
    /// ramped over the next chunk. Returns the value applied.
    pub fn set_speed_ppm(&mut self, ppm: f64) -> f64 {
        let ppm = if ppm.is_finite() {
            ppm.clamp(-self.max_ppm, self.max_ppm)
        } else {
            0.0
        };
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
        let step = self.t_ratio;
        self.t_ratio = target_t;
        Ok(Some((
            &self.out[..produced * ch],
            ChunkPosition {
                start,
                step,
                ramp: inc,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::pilot::{self, PilotDecoder};

    /// Run `seconds` of a generated signal through a converter, changing the speed with
    /// `speed(chunk_index)` before every chunk; returns output frames and chunk positions.
    fn run(
        kind: ResamplerKind,
        sinc_len: usize,
        signal: impl Fn(u64) -> [f32; 2],
        in_rate: u32,
        out_rate: u32,
        seconds: f64,
        speed: impl Fn(usize) -> f64,
    ) -> (Vec<f32>, Vec<ChunkPosition>) {
        let mut conv = RateConverter::new(kind, sinc_len, in_rate, out_rate, 2, 256, 1000.0)
            .expect("converter");
        let total_in = (seconds * in_rate as f64) as u64;
        let mut next_in = 0u64;
        let mut out = Vec::new();
        let mut positions = Vec::new();
        let mut k = 0;
        loop {
            conv.set_speed_ppm(speed(k));
            while conv.buffered() < conv.input_needed() && next_in < total_in {
                let frame = signal(next_in);
                conv.push_input(&frame);
                next_in += 1;
            }
            let done = next_in >= total_in;
            match conv.process(done).expect("process") {
                Some((audio, pos)) => {
                    out.extend_from_slice(audio);
                    positions.push(pos);
                }
                None => break,
            }
            k += 1;
            if done && positions.last().is_some_and(|p| p.start > total_in as f64) {
                break;
            }
        }
        (out, positions)
    }

    /// The books kept by the converter agree with the position pilot decoded from its
    /// output, through a random walk of speed changes.
    #[test]
    fn chunk_positions_match_the_pilot_through_speed_changes() {
        for (kind, taps) in [
            (ResamplerKind::Sinc, 64),
            (ResamplerKind::Sinc, 128),
            (ResamplerKind::Fast, 0),
        ] {
            let speed = |k: usize| ((k as f64 * 0.37).sin() * 900.0).round();
            let (out, positions) = run(
                kind,
                taps,
                |n| pilot::encode(n as f64),
                44_100,
                48_000,
                20.0,
                speed,
            );
            let mut dec = PilotDecoder::new();
            let mut errs = Vec::new();
            for (i, pos) in positions.iter().enumerate() {
                for j in [0usize, 100, 255] {
                    let idx = (i * 256 + j) * 2;
                    let Some(got) = dec.decode(out[idx], out[idx + 1]) else {
                        continue;
                    };
                    let want = pos.at(j as f64);
                    if want > 2_000.0 && want < 19.0 * 44_100.0 {
                        errs.push(got - want);
                    }
                }
            }
            let mean = errs.iter().sum::<f64>() / errs.len() as f64;
            let worst = errs.iter().fold(0.0f64, |m, e| m.max(e.abs()));
            eprintln!(
                "{kind:?}: {} checks, mean error {mean:+.4} frames, worst {worst:.4}",
                errs.len()
            );
            assert!(errs.len() > 1000);
            // The pilot itself resolves ~0.2 frame in f32 (2^-24 of a 2^24-frame period).
            assert!(
                worst < 0.5,
                "{kind:?}: bookkeeping off by up to {worst} frames (mean {mean})"
            );
        }
    }

    /// A 1 kHz sine resampled while the speed jumps between −1000 and +1000 ppm every 20
    /// chunks (~107 ms, harsher than any PLL) equals, sample for sample, the ideal sine at
    /// the converter's own track positions: whatever a speed change does, it adds no error
    /// (a click is a large, broadband error). The same measures flag a single dropped sample.
    #[test]
    fn speed_changes_are_click_free() {
        let rate_in = 44_100.0;
        let w_in = std::f64::consts::TAU * 1000.0 / rate_in;
        let tone = |n: u64| {
            let v = (0.5 * (w_in * n as f64).sin()) as f32;
            [v, v]
        };
        let speed = |k: usize| if (k / 20) % 2 == 0 { 1000.0 } else { -1000.0 };
        for taps in [64, 128] {
            let (out, positions) = run(ResamplerKind::Sinc, taps, tone, 44_100, 48_000, 4.0, speed);
            let left: Vec<f64> = out.iter().step_by(2).map(|&x| x as f64).collect();
            let ideal: Vec<f64> = positions
                .iter()
                .flat_map(|p| (0..256).map(move |j| 0.5 * (w_in * p.at(j as f64)).sin()))
                .collect();
            // Skip the resampler's start-up and the flushed end.
            let range = 4_800..4_800 + 131_072;
            let (sig, want) = (&left[range.clone()], &ideal[range]);
            // A constant sub-frame delay (the sinc table's oversampling grid) is not a click:
            // estimate it by regression on the ideal's slope, check it is tiny, remove it.
            let slope: Vec<f64> = positions
                .iter()
                .flat_map(|p| (0..256).map(move |j| 0.5 * w_in * (w_in * p.at(j as f64)).cos()))
                .collect();
            let slope = &slope[4_800..4_800 + 131_072];
            let num: f64 = sig
                .iter()
                .zip(want)
                .zip(slope)
                .map(|((s, w), d)| (s - w) * d)
                .sum();
            let den: f64 = slope.iter().map(|d| d * d).sum();
            let delay = num / den;
            let aligned: Vec<f64> = want.iter().zip(slope).map(|(w, d)| w + delay * d).collect();
            let error_db = residual_db(sig, &aligned);
            eprintln!("error vs ideal sine through speed jumps: {error_db:.1} dB (after a {delay:+.5}-frame delay)");
            assert!(delay.abs() < 0.01, "books off by {delay} frames");
            assert!(
                error_db < -80.0,
                "speed changes add {error_db:.1} dB of error"
            );
            let want = &aligned[..];
            // Spectrum: the residual is not concentrated anywhere either (no click spike).
            let spectrum_db = spurious_db(sig, 48_000.0, 1000.0);
            eprintln!(
            "energy >50 Hz from the tone (incl. the FM of the speed jumps): {spectrum_db:.1} dB"
        );

            // Curvature bound: |x[n+1] − 2x[n] + x[n−1]| ≤ A·(2 − 2cos ω) for a clean sine.
            let w = std::f64::consts::TAU * 1000.0 * 1.001 / 48_000.0;
            let bound = 0.5 * (2.0 - 2.0 * w.cos()) * 1.01 + 1e-4;
            let curvature = |x: &[f64]| {
                x.windows(3)
                    .map(|s| (s[2] - 2.0 * s[1] + s[0]).abs())
                    .fold(0.0, f64::max)
            };
            assert!(
                curvature(sig) <= bound,
                "discontinuity {} > {bound}",
                curvature(sig)
            );

            // The same measures catch a click: drop one sample.
            let mut clicked = sig.to_vec();
            clicked.remove(30_000);
            clicked.push(0.0);
            assert!(curvature(&clicked[..clicked.len() - 1]) > 2.0 * bound);
            assert!(residual_db(&clicked[..100_000], &want[..100_000]) > -20.0);
            eprintln!(
                "with one dropped sample: curvature {:.4} (bound {bound:.4}), spectrum {:.1} dB",
                curvature(&clicked[..clicked.len() - 1]),
                spurious_db(&clicked, 48_000.0, 1000.0)
            );
        }
    }

    fn residual_db(sig: &[f64], want: &[f64]) -> f64 {
        let e: f64 = sig.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
        let p: f64 = want.iter().map(|b| b * b).sum();
        10.0 * (e / p).log10()
    }

    /// Energy outside ±50 Hz of `tone`, relative to the total, in dB (Blackman-Harris window).
    fn spurious_db(sig: &[f64], rate: f64, tone: f64) -> f64 {
        use rustfft::{num_complex::Complex, FftPlanner};
        let n = sig.len();
        let mut buf: Vec<Complex<f64>> = sig
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let p = std::f64::consts::TAU * i as f64 / n as f64;
                let w = 0.35875 - 0.48829 * p.cos() + 0.14128 * (2.0 * p).cos()
                    - 0.01168 * (3.0 * p).cos();
                Complex::new(x * w, 0.0)
            })
            .collect();
        FftPlanner::new().plan_fft_forward(n).process(&mut buf);
        let (mut total, mut off) = (0.0, 0.0);
        for (k, c) in buf.iter().enumerate().take(n / 2).skip(1) {
            let f = k as f64 * rate / n as f64;
            let e = c.norm_sqr();
            total += e;
            if (f - tone).abs() > 50.0 {
                off += e;
            }
        }
        10.0 * (off / total).log10()
    }
}
