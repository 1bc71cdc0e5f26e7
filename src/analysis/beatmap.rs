//! The versioned, serialisable result of offline analysis.
//!
//! A [`Beatmap`] (`format = "convoy-beatmap"`, `version = 1`) holds track
//! info, the global tempo and a tempo curve, beat and downbeat times, numbered
//! bars, labelled sections with an energy level, and low/mid/high envelopes at
//! a fixed frame rate quantised to `u8`. It serialises to deterministic JSON
//! (times are rounded to 0.1 ms and every collection is ordered), and
//! [`Beatmap::from_json`] is a validating loader that rejects other formats,
//! unknown versions and malformed content with a [`BeatmapError`]. Lookup
//! helpers (`beat_time`, `section_by_label`, `beats_in`, …) serve the show
//! scheduler.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Value of [`Beatmap::format`].
pub const BEATMAP_FORMAT: &str = "convoy-beatmap";
/// The beatmap version this code writes and reads.
pub const BEATMAP_VERSION: u32 = 1;
/// Densest beat grid a beatmap may hold: 20 beats per second (1200 BPM), far above any
/// tempo the analysis reports, so only a corrupt or hostile file hits it.
pub const MAX_BEATS_PER_S: f64 = 20.0;
/// Longest track a beatmap may describe: 3 hours.
pub const MAX_DURATION_S: f64 = 3.0 * 3600.0;
/// Most beats a beatmap may hold (the two limits above together): 216 000.
pub const MAX_BEATS: usize = (MAX_BEATS_PER_S * MAX_DURATION_S) as usize;
/// Highest envelope frame rate accepted (the analysis writes 20 Hz).
pub const MAX_ENVELOPE_HZ: f64 = 1000.0;
/// Largest beatmap file read: a beatmap at every limit above is a few MB of JSON.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Seconds a beat, section or envelope may lie past the track's stated end.
pub const END_SLACK_S: f64 = 1.0;

/// Errors from loading or validating a beatmap.
#[derive(Debug, thiserror::Error)]
pub enum BeatmapError {
    /// The text is not JSON of the expected shape.
    #[error("beatmap is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// The `format` field is not `convoy-beatmap`.
    #[error("not a convoy beatmap (format = {0:?})")]
    WrongFormat(String),
    /// The `version` is not one this code understands.
    #[error("unsupported beatmap version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u64,
        /// Version this build supports.
        supported: u32,
    },
    /// The content violates an invariant.
    #[error("invalid beatmap: {0}")]
    Invalid(String),
    /// The file could not be read, or is larger than [`MAX_FILE_BYTES`].
    #[error("cannot read beatmap {path}: {why}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
}

/// Information about the analysed track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Sample rate of the analysed samples in Hz.
    pub sample_rate: u32,
    /// Number of (mono) samples analysed.
    pub num_samples: u64,
    /// Duration in seconds.
    pub duration_s: f64,
    /// Content hash supplied by the caller (empty when unknown).
    pub content_hash: String,
}

/// A bar: its 1-based number, start time and beat indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// 1-based bar number; 0 is a pickup (anacrusis) before the first downbeat.
    pub number: u32,
    /// Time of the bar's first beat in seconds.
    pub start_s: f64,
    /// Index into [`Beatmap::beats`] of the bar's first beat.
    pub first_beat: u32,
    /// Number of beats in the bar.
    pub beat_count: u32,
}

/// A labelled section of the track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Start time in seconds.
    pub start_s: f64,
    /// End time in seconds.
    pub end_s: f64,
    /// Label: `intro`, `outro` or `A`, `B`, … (equal letters = similar material).
    pub label: String,
    /// Loudness relative to the loudest section, `0..=1`.
    pub energy: f32,
}

/// Band envelopes at a fixed frame rate, quantised to `0..=255`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelopes {
    /// Frames per second.
    pub frame_rate_hz: f64,
    /// Band names, parallel to `values`.
    pub bands: Vec<String>,
    /// One vector per band, all of equal length; frame `i` covers
    /// `[i / frame_rate_hz, (i + 1) / frame_rate_hz)`.
    pub values: Vec<Vec<u8>>,
}

/// The result of offline analysis of one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beatmap {
    /// Always [`BEATMAP_FORMAT`].
    pub format: String,
    /// Always [`BEATMAP_VERSION`].
    pub version: u32,
    /// Track information.
    pub track: TrackInfo,
    /// Global tempo in BPM (0 when no beat was found).
    pub tempo_bpm: f64,
    /// Local tempo as `(time_s, bpm)` points, a new point whenever it changes.
    pub tempo_curve: Vec<(f64, f64)>,
    /// Beat times in seconds, ascending.
    pub beats: Vec<f64>,
    /// Downbeat times in seconds (a subset of `beats`).
    pub downbeats: Vec<f64>,
    /// Beats per bar (4 or 3).
    pub beats_per_bar: u32,
    /// Bars in order.
    pub bars: Vec<Bar>,
    /// Sections in order, contiguous.
    pub sections: Vec<Section>,
    /// Low/mid/high envelopes.
    pub envelopes: Envelopes,
    /// How sure the beat grid is, `0..=1` ([`crate::analysis::beat::grid_confidence`]);
    /// below [`LOW_CONFIDENCE`] the beats and tempo are a guess. Absent in beatmaps
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// Beat-grid confidence below which `analyze` warns that the beats are a guess.
pub const LOW_CONFIDENCE: f32 = 0.3;

#[derive(Deserialize)]
struct Probe {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

/// Rounds seconds to 0.1 ms so the JSON is compact and stable.
pub(crate) fn round_time(t: f64) -> f64 {
    if t.is_finite() {
        (t * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

impl Beatmap {
    /// An empty beatmap (no beats) for a track.
    pub fn empty(track: TrackInfo) -> Self {
        Self {
            format: BEATMAP_FORMAT.into(),
            version: BEATMAP_VERSION,
            track,
            tempo_bpm: 0.0,
            tempo_curve: Vec::new(),
            beats: Vec::new(),
            downbeats: Vec::new(),
            beats_per_bar: 4,
            bars: Vec::new(),
            sections: Vec::new(),
            envelopes: Envelopes {
                frame_rate_hz: 20.0,
                bands: vec!["low".into(), "mid".into(), "high".into()],
                values: vec![Vec::new(), Vec::new(), Vec::new()],
            },
            confidence: None,
        }
    }

    /// Compact, deterministic JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers/strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and validates a beatmap file, refusing files larger than
    /// [`MAX_FILE_BYTES`] before reading them.
    pub fn load(path: &std::path::Path) -> Result<Self, BeatmapError> {
        use std::io::Read;
        let read_err = |why: String| BeatmapError::Read {
            path: path.to_path_buf(),
            why,
        };
        let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| read_err(e.to_string()))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(read_err(format!(
                "larger than {} MiB (a beatmap of a 3-hour track is a few MB)",
                MAX_FILE_BYTES >> 20
            )));
        }
        Self::from_json(&text)
    }

    /// Parses and validates a beatmap.
    pub fn from_json(text: &str) -> Result<Self, BeatmapError> {
        let probe: Probe = serde_json::from_str(text)?;
        match probe.format {
            Some(serde_json::Value::String(f)) if f == BEATMAP_FORMAT => {}
            Some(other) => return Err(BeatmapError::WrongFormat(other.to_string())),
            None => return Err(BeatmapError::WrongFormat("<missing>".into())),
        }
        match probe.version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(BEATMAP_VERSION as u64) => {}
            Some(serde_json::Value::Number(n)) => {
                return Err(BeatmapError::UnsupportedVersion {
                    found: n.as_u64().unwrap_or(u64::MAX),
                    supported: BEATMAP_VERSION,
                })
            }
            _ => {
                return Err(BeatmapError::Invalid(
                    "missing or non-numeric version".into(),
                ))
            }
        }
        let map: Beatmap = serde_json::from_str(text)?;
        map.validate()?;
        Ok(map)
    }

    /// Checks every invariant of the format.
    pub fn validate(&self) -> Result<(), BeatmapError> {
        let bad = |m: String| Err(BeatmapError::Invalid(m));
        if self.format != BEATMAP_FORMAT {
            return Err(BeatmapError::WrongFormat(self.format.clone()));
        }
        if self.version != BEATMAP_VERSION {
            return Err(BeatmapError::UnsupportedVersion {
                found: self.version as u64,
                supported: BEATMAP_VERSION,
            });
        }
        let dur = self.track.duration_s;
        if !(dur.is_finite() && dur >= 0.0) {
            return bad(format!(
                "duration_s {dur} is not a finite non-negative number"
            ));
        }
        if dur > MAX_DURATION_S {
            return bad(format!(
                "duration_s {dur} is longer than the {} hours a beatmap may describe",
                MAX_DURATION_S / 3600.0
            ));
        }
        let slack = END_SLACK_S;
        // Bounds on every list before walking them: no beat grid denser than
        // MAX_BEATS_PER_S over the track, and nothing else longer than the beats allow.
        let most_beats = ((dur + slack) * MAX_BEATS_PER_S).ceil() as usize;
        if self.beats.len() > most_beats.min(MAX_BEATS) {
            return bad(format!(
                "{} beats in a {dur:.1} s track: more than {MAX_BEATS_PER_S} beats per second \
                 (at most {} beats)",
                self.beats.len(),
                most_beats.min(MAX_BEATS)
            ));
        }
        let min_gap = 1.0 / MAX_BEATS_PER_S - 2e-4;
        if let Some(i) =
            (1..self.beats.len()).find(|&i| self.beats[i] - self.beats[i - 1] < min_gap)
        {
            return bad(format!(
                "beats[{i}] is {:.1} ms after the previous beat: denser than {MAX_BEATS_PER_S} beats per second",
                (self.beats[i] - self.beats[i - 1]) * 1000.0
            ));
        }
        let most_items = self.beats.len() + 16;
        for (name, len) in [
            ("tempo_curve", self.tempo_curve.len()),
            ("sections", self.sections.len()),
            ("bars", self.bars.len()),
        ] {
            if len > most_items {
                return bad(format!(
                    "{len} {name} entries for {} beats (at most {most_items})",
                    self.beats.len()
                ));
            }
        }
        if !(self.tempo_bpm.is_finite() && self.tempo_bpm >= 0.0 && self.tempo_bpm <= 1000.0) {
            return bad(format!("tempo_bpm {} out of range", self.tempo_bpm));
        }
        if !self.beats.is_empty() && self.tempo_bpm == 0.0 {
            return bad("beats present but tempo_bpm is 0".into());
        }
        let check_times = |name: &str, v: &[f64]| -> Result<(), BeatmapError> {
            for (i, &t) in v.iter().enumerate() {
                if !(t.is_finite() && t >= 0.0 && t <= dur + slack) {
                    return Err(BeatmapError::Invalid(format!(
                        "{name}[{i}] = {t} outside the track"
                    )));
                }
                if i > 0 && t <= v[i - 1] {
                    return Err(BeatmapError::Invalid(format!(
                        "{name} not strictly ascending at index {i}"
                    )));
                }
            }
            Ok(())
        };
        check_times("beats", &self.beats)?;
        check_times("downbeats", &self.downbeats)?;
        let curve_t: Vec<f64> = self.tempo_curve.iter().map(|p| p.0).collect();
        check_times("tempo_curve", &curve_t)?;
        if let Some(p) = self
            .tempo_curve
            .iter()
            .find(|p| !(p.1.is_finite() && p.1 > 0.0 && p.1 <= 1000.0))
        {
            return bad(format!("tempo_curve bpm {} out of range", p.1));
        }
        for d in &self.downbeats {
            if self.beats.binary_search_by(|b| b.total_cmp(d)).is_err() {
                return bad(format!("downbeat {d} is not a beat"));
            }
        }
        if !(1..=16).contains(&self.beats_per_bar) {
            return bad(format!("beats_per_bar {} out of range", self.beats_per_bar));
        }
        let mut next_beat = 0u64;
        for (i, bar) in self.bars.iter().enumerate() {
            if i > 0 && bar.number != self.bars[i - 1].number + 1 {
                return bad(format!("bar numbers not consecutive at index {i}"));
            }
            if bar.first_beat as u64 != next_beat || bar.beat_count == 0 {
                return bad(format!(
                    "bar {} does not continue the beat list",
                    bar.number
                ));
            }
            let fb = bar.first_beat as usize;
            match self.beats.get(fb) {
                Some(&t) if (t - bar.start_s).abs() < 1e-6 => {}
                _ => return bad(format!("bar {} start does not match its beat", bar.number)),
            }
            next_beat += bar.beat_count as u64;
            if next_beat > self.beats.len() as u64 {
                return bad(format!("bar {} runs past the last beat", bar.number));
            }
        }
        for (i, s) in self.sections.iter().enumerate() {
            if !(s.start_s.is_finite() && s.end_s.is_finite() && s.start_s < s.end_s) {
                return bad(format!("section {i} has an empty or invalid span"));
            }
            if s.end_s > dur + slack || s.start_s < 0.0 {
                return bad(format!("section {i} lies outside the track"));
            }
            if i > 0 && s.start_s < self.sections[i - 1].end_s - 1e-6 {
                return bad(format!("section {i} overlaps the previous one"));
            }
            if !(s.energy.is_finite() && (0.0..=1.0).contains(&s.energy)) {
                return bad(format!("section {i} energy {} not in 0..=1", s.energy));
            }
            if s.label.is_empty() {
                return bad(format!("section {i} has an empty label"));
            }
        }
        let env = &self.envelopes;
        if !(env.frame_rate_hz.is_finite()
            && env.frame_rate_hz > 0.0
            && env.frame_rate_hz <= MAX_ENVELOPE_HZ)
        {
            return bad(format!(
                "envelope frame rate {} Hz is not within 0..={MAX_ENVELOPE_HZ} Hz",
                env.frame_rate_hz
            ));
        }
        if env.bands.len() > 16 {
            return bad(format!("{} envelope bands (at most 16)", env.bands.len()));
        }
        let most_frames = ((dur + slack) * env.frame_rate_hz).ceil() as usize + 1;
        if let Some(v) = env.values.iter().find(|v| v.len() > most_frames) {
            return bad(format!(
                "{} envelope frames at {} Hz for a {dur:.1} s track (at most {most_frames})",
                v.len(),
                env.frame_rate_hz
            ));
        }
        if env.bands.len() != env.values.len() {
            return bad("envelope band names and values differ in count".into());
        }
        if let Some(first) = env.values.first() {
            if env.values.iter().any(|v| v.len() != first.len()) {
                return bad("envelope bands differ in length".into());
            }
        }
        Ok(())
    }

    /// Time of beat `beat` (1-based) of bar `bar` (1-based; 0 = pickup bar).
    pub fn beat_time(&self, bar: u32, beat: u32) -> Option<f64> {
        if beat == 0 {
            return None;
        }
        let b = self.bar(bar)?;
        if beat > b.beat_count {
            return None;
        }
        self.beats.get((b.first_beat + beat - 1) as usize).copied()
    }

    /// The bar with this number.
    pub fn bar(&self, number: u32) -> Option<&Bar> {
        let first = self.bars.first()?.number;
        self.bars.get(number.checked_sub(first)? as usize)
    }

    /// The bar containing time `t` (seconds).
    pub fn bar_at(&self, t: f64) -> Option<&Bar> {
        let i = self.bars.partition_point(|b| b.start_s <= t);
        if i == 0 {
            None
        } else {
            self.bars.get(i - 1)
        }
    }

    /// The first section with this label.
    pub fn section_by_label(&self, label: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.label == label)
    }

    /// Every section with this label, in order.
    pub fn sections_by_label<'a>(&'a self, label: &'a str) -> impl Iterator<Item = &'a Section> {
        self.sections.iter().filter(move |s| s.label == label)
    }

    /// The section containing time `t` (seconds).
    pub fn section_at(&self, t: f64) -> Option<&Section> {
        self.sections.iter().find(|s| s.start_s <= t && t < s.end_s)
    }

    /// Beats with `range.start <= t < range.end`.
    pub fn beats_in(&self, range: Range<f64>) -> &[f64] {
        let s = self.beats.partition_point(|&b| b < range.start);
        let e = self.beats.partition_point(|&b| b < range.end).max(s);
        &self.beats[s..e]
    }

    /// Local tempo (BPM) at time `t` from the tempo curve (global tempo if empty).
    pub fn tempo_at(&self, t: f64) -> f64 {
        let i = self.tempo_curve.partition_point(|p| p.0 <= t);
        if i == 0 {
            self.tempo_curve
                .first()
                .map(|p| p.1)
                .unwrap_or(self.tempo_bpm)
        } else {
            self.tempo_curve[i - 1].1
        }
    }

    /// Envelope values (`0..=1`) of every band at time `t`.
    pub fn envelope_at(&self, t: f64) -> Vec<f32> {
        let env = &self.envelopes;
        let i = if t.is_finite() && t > 0.0 {
            (t * env.frame_rate_hz) as usize
        } else {
            0
        };
        env.values
            .iter()
            .map(|v| v.get(i).map(|&x| x as f32 / 255.0).unwrap_or(0.0))
            .collect()
    }
}
