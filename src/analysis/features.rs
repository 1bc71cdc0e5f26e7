//! The streaming front end of the offline analysis: mono samples in, per-frame features out.
//!
//! [`FrontEnd`] runs the STFT, band mapper and onset detector over a track fed in blocks of
//! any size and keeps only frame-rate features: the onset strengths the tempo and beat
//! decisions read (full, low, high band and kick), the frame level and the beatmap's
//! envelope slots, about 20 bytes a hop (86 hops a second at 44.1 kHz). The wide per-frame
//! vectors the meter and section decisions read as span means (log band levels, the bass
//! spectrum and chroma, 40-odd floats a hop) go to a [`RowStore`] the caller chooses:
//! [`MemoryRows`] in memory, or a store that spills them to a file (`convoy analyze` does,
//! so an hour-long mix is analysed in bounded memory). The decisions read them through
//! [`FrameRows`], whose span mean adds the rows in frame order, so every store gives the
//! same floats, bit for bit. Nothing here does I/O itself.

use super::bands::{BandMapper, Stft, StftConfig};
use super::onset::{self, envelope_delay_samples, OnsetDetector};
use super::{beat, AnalysisParams};

/// Per-frame feature vectors, read as means over spans of frames.
pub trait FrameRows {
    /// Number of frames.
    fn len(&self) -> usize;

    /// True when there are no frames.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of a frame's vector (that of the first frame; 0 when there is none).
    fn dim(&self) -> usize;

    /// Mean of frames `s..e` (`e` clamped to [`len`](Self::len)) as a vector of `dim`
    /// values, non-finite values counting as `nonfinite`; zeros when the span is empty.
    /// The frames are added in order, then divided by their count.
    fn mean(&self, s: usize, e: usize, dim: usize, nonfinite: f32) -> Vec<f32>;
}

/// The one summation every [`FrameRows`] shares, so the means are the same floats whatever
/// holds the rows.
fn add_row(acc: &mut [f32], row: &[f32], nonfinite: f32) {
    for (a, b) in acc.iter_mut().zip(row) {
        *a += if b.is_finite() { *b } else { nonfinite };
    }
}

fn divide(mut acc: Vec<f32>, count: usize) -> Vec<f32> {
    acc.iter_mut().for_each(|a| *a /= count as f32);
    acc
}

impl<V: AsRef<[f32]>> FrameRows for [V] {
    fn len(&self) -> usize {
        <[V]>::len(self)
    }

    fn dim(&self) -> usize {
        self.first().map(|v| v.as_ref().len()).unwrap_or(0)
    }

    fn mean(&self, s: usize, e: usize, dim: usize, nonfinite: f32) -> Vec<f32> {
        let e = e.min(<[V]>::len(self));
        let mut v = vec![0.0f32; dim];
        if e <= s {
            return v;
        }
        for f in &self[s..e] {
            add_row(&mut v, f.as_ref(), nonfinite);
        }
        divide(v, e - s)
    }
}

impl<V: AsRef<[f32]>> FrameRows for Vec<V> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn dim(&self) -> usize {
        FrameRows::dim(self.as_slice())
    }

    fn mean(&self, s: usize, e: usize, dim: usize, nonfinite: f32) -> Vec<f32> {
        self.as_slice().mean(s, e, dim, nonfinite)
    }
}

/// Where the front end keeps its wide per-frame rows (all of one width): appended once,
/// frame by frame, then read back in spans.
pub trait RowStore {
    /// Appends one row.
    fn push(&mut self, row: &[f32]);

    /// Rows stored so far.
    fn rows(&self) -> usize;

    /// Calls `f` with rows `start..end` (`end` at most [`rows`](Self::rows)) in order.
    /// A store that cannot read them (a spill file gone bad) calls `f` for none and
    /// remembers the failure for its owner to report.
    fn visit(&self, start: usize, end: usize, f: &mut dyn FnMut(&[f32]));
}

/// A [`RowStore`] in memory (one flat vector).
#[derive(Debug, Default, Clone)]
pub struct MemoryRows {
    data: Vec<f32>,
    width: usize,
    rows: usize,
}

impl RowStore for MemoryRows {
    fn push(&mut self, row: &[f32]) {
        self.width = row.len();
        self.data.extend_from_slice(row);
        self.rows += 1;
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn visit(&self, start: usize, end: usize, f: &mut dyn FnMut(&[f32])) {
        let w = self.width;
        let end = end.min(self.rows);
        for r in start..end {
            f(&self.data[r * w..(r + 1) * w]);
        }
    }
}

/// Columns `from..from + dim` of every row of a [`RowStore`], as [`FrameRows`].
#[derive(Clone, Copy)]
pub struct Columns<'a> {
    store: &'a dyn RowStore,
    from: usize,
    dim: usize,
}

impl FrameRows for Columns<'_> {
    fn len(&self) -> usize {
        self.store.rows()
    }

    fn dim(&self) -> usize {
        if self.store.rows() == 0 {
            0
        } else {
            self.dim
        }
    }

    fn mean(&self, s: usize, e: usize, dim: usize, nonfinite: f32) -> Vec<f32> {
        let e = e.min(self.store.rows());
        let mut v = vec![0.0f32; dim];
        if e <= s {
            return v;
        }
        let cols = self.from..self.from + self.dim;
        self.store.visit(s, e, &mut |row| {
            add_row(&mut v, row.get(cols.clone()).unwrap_or(&[]), nonfinite)
        });
        divide(v, e - s)
    }
}

/// The frame-rate series [`FrontEnd`] keeps in memory.
#[derive(Default)]
pub(super) struct Series {
    /// Full-band onset strength.
    pub env: Vec<f32>,
    /// Low-band onset strength.
    pub low: Vec<f32>,
    /// High-band onset strength (snare, hi-hat).
    pub high: Vec<f32>,
    /// Kick strength (plain amplitude increase below 75 Hz), aligned with its frames.
    pub kick: Vec<f32>,
    /// Linear amplitude of the low, mid and high band together.
    pub level: Vec<f32>,
    /// Loudest raw low/mid/high amplitude in each beatmap envelope slot.
    pub slots: Vec<[f32; 3]>,
}

/// Per-frame features of a whole track, gathered by [`FrontEnd`].
pub(super) struct Frames<'a> {
    /// The series kept in memory.
    pub series: Series,
    rows: &'a dyn RowStore,
    n_log: usize,
    n_bass: usize,
}

impl std::ops::Deref for Frames<'_> {
    type Target = Series;

    fn deref(&self) -> &Series {
        &self.series
    }
}

impl<'a> Frames<'a> {
    /// Log band levels in dB (`-100` floor), for sections.
    pub fn log_db(&self) -> Columns<'a> {
        self.columns(0, self.n_log)
    }

    /// Log magnitudes of the FFT bins between 30 and 300 Hz (bass/harmony).
    pub fn bass_spec(&self) -> Columns<'a> {
        self.columns(self.n_log, self.n_bass)
    }

    /// Pitch-class profile (chroma) of 100 Hz–2 kHz, for chord changes.
    pub fn chroma(&self) -> Columns<'a> {
        self.columns(self.n_log + self.n_bass, 12)
    }

    fn columns(&self, from: usize, dim: usize) -> Columns<'a> {
        Columns {
            store: self.rows,
            from,
            dim,
        }
    }
}

/// The streaming front end: feed blocks with [`push`](Self::push), then
/// [`finish`](Self::finish) for the [`Frames`].
pub(super) struct FrontEnd<'a> {
    stft: Stft,
    mapper: BandMapper,
    det: OnsetDetector,
    pitch_class: Vec<(usize, usize)>,
    bass: (usize, usize),
    sample_rate: u32,
    envelope_rate: f64,
    series: Series,
    n_log: usize,
    n_bass: usize,
    store: &'a mut dyn RowStore,
    /// One wide row, reused.
    row: Vec<f32>,
}

impl<'a> FrontEnd<'a> {
    /// A front end for a track at `sample_rate` (at least 1) whose beatmap envelopes run at
    /// `envelope_rate` Hz, keeping its wide rows in `store` (which should be empty).
    pub fn new(
        sample_rate: u32,
        params: &AnalysisParams,
        envelope_rate: f64,
        store: &'a mut dyn RowStore,
    ) -> Self {
        let stft = Stft::new(params.stft);
        let cfg = stft.config();
        let mapper = BandMapper::new(sample_rate, stft.n_bins(), cfg.hop, &params.bands);
        let det = OnsetDetector::new(sample_rate, stft.n_bins(), cfg.hop, &params.onset);
        let bin_hz = sample_rate as f32 / cfg.fft_size as f32;
        let bass_lo = ((30.0 / bin_hz).ceil() as usize).max(1);
        let bass_hi = ((300.0 / bin_hz).floor() as usize).max(bass_lo);
        let pitch_class = beat::chroma_bins(bin_hz, stft.n_bins());
        let n_log = mapper.raw_log().len();
        // The bass bins a frame of `n_bins` magnitudes has (none when the range is empty).
        let last = stft.n_bins().saturating_sub(1);
        let n_bass = if bass_lo <= bass_hi.min(last) {
            bass_hi.min(last) + 1 - bass_lo
        } else {
            0
        };
        Self {
            stft,
            mapper,
            det,
            pitch_class,
            bass: (bass_lo, bass_hi),
            sample_rate,
            envelope_rate,
            series: Series::default(),
            n_log,
            n_bass,
            store,
            row: Vec::with_capacity(n_log + n_bass + 12),
        }
    }

    /// The STFT geometry in use.
    pub fn config(&self) -> StftConfig {
        self.stft.config()
    }

    /// Feeds the next mono samples of the track.
    pub fn push(&mut self, samples: &[f32]) {
        let Self {
            stft,
            mapper,
            det,
            pitch_class,
            bass: (bass_lo, bass_hi),
            sample_rate,
            envelope_rate,
            series: f,
            store,
            row,
            ..
        } = self;
        let cfg = stft.config();
        stft.push(samples, |pos, mags| {
            mapper.process(pos, mags);
            let r = mapper.raw3();
            // Envelope slot of this frame: the centre of its analysis window.
            let k = f.level.len();
            let centre = (k * cfg.hop + cfg.hop) as f64 - cfg.fft_size as f64 / 2.0;
            let t = centre.max(0.0) / *sample_rate as f64;
            let i = (t * *envelope_rate) as usize;
            if f.slots.len() <= i {
                f.slots.resize(i + 1, [0.0; 3]);
            }
            let s = &mut f.slots[i];
            for b in 0..3 {
                s[b] = s[b].max(r[b]);
            }
            f.level
                .push((r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt());
            row.clear();
            row.extend(
                mapper
                    .raw_log()
                    .iter()
                    .map(|a| (20.0 * (a + 1e-5).log10()).max(-100.0)),
            );
            row.extend(
                mags.get(*bass_lo..=(*bass_hi).min(mags.len().saturating_sub(1)))
                    .unwrap_or(&[])
                    .iter()
                    .map(|m| (m + 1e-4).ln()),
            );
            row.extend_from_slice(&beat::chroma(pitch_class, mags));
            store.push(row);
            let o = det.process(pos, mags);
            f.env.push(o.strength);
            f.low.push(o.low_strength);
            f.high.push(o.high_strength);
            f.kick.push(o.kick_strength);
        });
    }

    /// Flushes the tail and returns the features of every frame.
    pub fn finish(mut self) -> Frames<'a> {
        let cfg = self.stft.config();
        // Flush the tail so the last samples are seen by a frame.
        self.push(&vec![0.0f32; cfg.hop]);
        let FrontEnd {
            series: mut f,
            store,
            n_log,
            n_bass,
            ..
        } = self;
        // The kick strength lags the full band: align it with its frames.
        let lag = onset::kick_delay_samples(cfg.fft_size) - envelope_delay_samples(cfg.fft_size);
        let lag = ((lag / cfg.hop as f64).round() as usize).min(f.kick.len());
        f.kick.drain(..lag);
        f.kick.extend(std::iter::repeat_n(0.0, lag));
        Frames {
            series: f,
            rows: store,
            n_log,
            n_bass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::synth::{self, DrumSpec};
    use super::super::{analyze_offline, AnalysisParams, OfflineAnalyzer};
    use super::*;

    /// A store laid out differently from [`MemoryRows`] (one vector a row), standing in for
    /// the CLI's spill file.
    #[derive(Default)]
    struct RowPerVec(Vec<Vec<f32>>);

    impl RowStore for RowPerVec {
        fn push(&mut self, row: &[f32]) {
            self.0.push(row.to_vec());
        }

        fn rows(&self) -> usize {
            self.0.len()
        }

        fn visit(&self, start: usize, end: usize, f: &mut dyn FnMut(&[f32])) {
            self.0[start..end.min(self.0.len())]
                .iter()
                .for_each(|r| f(r));
        }
    }

    /// 40 s of rock with a quiet intro and a tempo change: beats, bars, sections.
    fn song() -> Vec<f32> {
        synth::drum_track(&DrumSpec {
            pattern: synth::pattern_rock(),
            bpm: 120.0,
            bars: 20,
            intro_bars: 2,
            tempo_change: Some((12, 132.0)),
            sample_rate: 44_100,
            seed: 11,
        })
        .samples
    }

    #[test]
    fn streaming_in_any_blocks_gives_the_whole_track_beatmap() {
        let samples = song();
        let params = AnalysisParams::default();
        let whole = analyze_offline(&samples, 44_100, &params);
        assert!(
            whole.beats.len() > 60 && whole.sections.len() >= 2,
            "{whole:?}"
        );
        let whole = whole.to_json();
        for block in [1, 511, 512, 8192, samples.len()] {
            let mut rows = RowPerVec::default();
            let mut an = OfflineAnalyzer::new(44_100, &params, &mut rows);
            for b in samples.chunks(block) {
                an.push(b);
            }
            assert_eq!(an.samples(), samples.len() as u64);
            assert!(an.finish().to_json() == whole, "blocks of {block}");
        }
    }

    #[test]
    fn empty_and_rateless_tracks_stream_to_empty_beatmaps() {
        let params = AnalysisParams::default();
        for (rate, samples) in [(44_100, vec![]), (0, vec![0.5f32; 1000])] {
            let mut rows = MemoryRows::default();
            let mut an = OfflineAnalyzer::new(rate, &params, &mut rows);
            an.push(&samples);
            let map = an.finish();
            assert!(map.beats.is_empty() && map.sections.is_empty());
            assert_eq!(
                map.to_json(),
                analyze_offline(&samples, rate, &params).to_json()
            );
            assert_eq!(rows.rows(), 0);
        }
    }

    #[test]
    fn column_means_are_the_slice_means_bit_for_bit() {
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                (0..7)
                    .map(|j| match (i * 7 + j) % 23 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        k => (k as f32 * 0.37).sin() * 1e3 + 0.1 / (i + 1) as f32,
                    })
                    .collect()
            })
            .collect();
        let mut store = MemoryRows::default();
        rows.iter().for_each(|r| store.push(r));
        let (left, right): (Vec<Vec<f32>>, Vec<Vec<f32>>) = rows
            .iter()
            .map(|r| (r[..3].to_vec(), r[3..].to_vec()))
            .unzip();
        let cols = |from, dim| Columns {
            store: &store,
            from,
            dim,
        };
        for (s, e) in [(0, 50), (3, 17), (10, 10), (12, 9), (40, 80)] {
            for nonfinite in [0.0, -100.0] {
                let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(cols(0, 3).mean(s, e, 3, nonfinite)),
                    bits(left.mean(s, e, 3, nonfinite))
                );
                assert_eq!(
                    bits(cols(3, 4).mean(s, e, 4, nonfinite)),
                    bits(right.mean(s, e, 4, nonfinite))
                );
            }
        }
        assert_eq!((cols(3, 4).dim(), cols(3, 4).len()), (4, 50));
        let empty = MemoryRows::default();
        let none = Columns {
            store: &empty,
            from: 0,
            dim: 4,
        };
        assert_eq!((none.dim(), none.len()), (0, 0));
    }
}
