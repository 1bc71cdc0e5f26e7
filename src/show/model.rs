//! The show file: `shows/*.toml` (`format = "convoy-show"`, `version = 1`), parsed with
//! spans and validated into a [`Show`].
//!
//! Parsing keeps a [`toml::Spanned`] around every value that can be wrong, so each problem
//! is reported as `file:line: problem` (unknown pattern, a cue beyond the track's end, a
//! missing beatmap, a bar or beat the beatmap does not have, …). Every problem in the file
//! is collected before giving up, so `convoy show --check` lists them all at once. The
//! format is documented in `docs/shows.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::analysis::beatmap::{Beatmap, END_SLACK_S};
use crate::led::protocol::{Pattern, Rgb};

/// Value of the `format` key.
pub const SHOW_FORMAT: &str = "convoy-show";
/// The show format version this code reads.
pub const SHOW_VERSION: u32 = 1;
/// Beats per bar assumed for tracks followed live (no beatmap), unless the track says.
pub const LIVE_BEATS_PER_BAR: u32 = 4;

/// One problem in a show file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the show file (0 when the whole file is concerned).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Something in a show file that loads but is probably not what its author meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line in the show file (0 when the whole file is concerned).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// What kind of warning (`convoy show --check` refuses [`WarningKind::BeatmapMismatch`]).
    pub kind: WarningKind,
}

/// Kinds of [`Warning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A field that no pattern it is shown under reads (`color` under `beatflash`, …).
    NoEffect,
    /// The beatmap was made for other audio (its `content_hash` differs from the
    /// track's): the track is followed by live analysis instead.
    BeatmapMismatch,
}

impl Show {
    /// The warnings, one `file:line: warning: …` line each.
    pub fn render_warnings(&self) -> String {
        let mut s = String::new();
        for w in &self.warnings {
            s.push_str(&format!(
                "{}:{}: warning: {}\n",
                self.path.display(),
                w.line,
                w.message
            ));
        }
        s
    }
}

/// Why a show could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The file could not be read.
    #[error("cannot read show {path}: {source}")]
    Read {
        /// The show file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; each names its line.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The show file.
        path: PathBuf,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut s = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!("{}:{}: {}", path.display(), p.line, p.message));
    }
    s
}

/// A position in a track, as written in a show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pos {
    /// `bar N beat M` (1-based; beat 1 if omitted).
    Bar {
        /// Bar number as the beatmap numbers bars (0 is a pickup).
        bar: u32,
        /// Beat within the bar, 1-based.
        beat: u32,
    },
    /// `m:ss.mmm` or seconds.
    Time(f64),
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pos::Bar { bar, beat } => write!(f, "bar {bar} beat {beat}"),
            Pos::Time(t) => write!(f, "{}:{:06.3}", (*t / 60.0).floor(), t % 60.0),
        }
    }
}

/// Parse `bar 17 beat 1`, `bar 17`, `1:23.500`, `83.5` or `83.5s`.
pub fn parse_pos(text: &str) -> Result<Pos, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    if words.first() == Some(&"bar") {
        let num = |w: Option<&&str>, what: &str| -> Result<u32, String> {
            w.and_then(|w| w.parse::<u32>().ok())
                .ok_or_else(|| format!("bad {what} number in {text:?} (expected `bar 17 beat 1`)"))
        };
        let bar = num(words.get(1), "bar")?;
        let beat = match words.get(2) {
            None => 1,
            Some(&"beat") if words.len() == 4 => num(words.get(3), "beat")?,
            Some(_) => return Err(format!("bad position {text:?} (expected `bar 17 beat 1`)")),
        };
        if beat == 0 {
            return Err(format!("{text:?}: beats are numbered from 1"));
        }
        return Ok(Pos::Bar { bar, beat });
    }
    let secs = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let body = t.strip_suffix('s').unwrap_or(t);
    let value = match body.split_once(':') {
        Some((m, s)) => match (m.parse::<u32>().ok(), secs(s)) {
            (Some(m), Some(s)) if s < 60.0 => Some(f64::from(m) * 60.0 + s),
            _ => None,
        },
        None => secs(body),
    };
    value.map(Pos::Time).ok_or_else(|| {
        format!("bad position {text:?} (expected `bar 17 beat 1`, `1:23.500` or `83.5`)")
    })
}

/// What an `every` cue repeats on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Every beat.
    Beat,
    /// Every downbeat.
    Bar,
    /// Every onset the live analyser detects.
    Onset,
}

/// When a cue fires.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// Once, at a position.
    At(Pos),
    /// At the start of every section with this label.
    Section(String),
    /// Repeatedly, within an optional range.
    Every {
        /// What it repeats on.
        unit: Unit,
        /// First position (inclusive).
        from: Option<Pos>,
        /// Last position (exclusive).
        until: Option<Pos>,
        /// Only inside sections with this label.
        section: Option<String>,
    },
}

/// A partial light state: what a cue changes. `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Look {
    /// Pattern.
    pub pattern: Option<Pattern>,
    /// Colour.
    pub color: Option<Rgb>,
    /// Hue, degrees 0..360.
    pub hue: Option<f64>,
    /// Degrees added to the hue (after `hue`).
    pub hue_offset: Option<f64>,
    /// Brightness 0..=1.
    pub bright: Option<f64>,
    /// Animation speed 0..=255.
    pub speed: Option<u8>,
}

impl Look {
    /// `other`'s fields over ours.
    pub fn merged(&self, other: &Look) -> Look {
        Look {
            pattern: other.pattern.or(self.pattern),
            color: other.color.or(self.color),
            hue: other.hue.or(self.hue),
            hue_offset: other.hue_offset.or(self.hue_offset),
            bright: other.bright.or(self.bright),
            speed: other.speed.or(self.speed),
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Look::default()
    }
}

/// A lighting cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    /// Its name (`name = …`), or its 1-based number within the track.
    pub name: String,
    /// Line of the cue in the show file.
    pub line: usize,
    /// When it fires.
    pub when: When,
    /// What it sets.
    pub look: Look,
    /// Send a beat flash (`BEAT`) when it fires.
    pub flash: bool,
    /// Degrees added to the hue at each repetition of an `every` cue.
    pub hue_step: f64,
    /// Per-vehicle versions of the look, by vehicle id or group.
    pub overrides: BTreeMap<String, Look>,
}

/// What a band drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactTarget {
    /// Brightness follows the band.
    Bright,
    /// Hue follows the band.
    Hue,
}

/// An audio-reactive mapping: a band level (0..=1) scaled into `min..=max` of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    /// Band index: 0 low, 1 mid, 2 high.
    pub band: usize,
    /// What it drives.
    pub target: ReactTarget,
    /// Value at band level 0 (brightness 0..=1, hue degrees).
    pub min: f64,
    /// Value at band level 1.
    pub max: f64,
    /// Active from (inclusive); whole track if `None`.
    pub from: Option<Pos>,
    /// Active until (exclusive).
    pub until: Option<Pos>,
    /// Line in the show file.
    pub line: usize,
}

/// Whole-show adjustments for one vehicle or group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VehicleOverride {
    /// Degrees added to every hue.
    pub hue_offset: f64,
    /// Factor on every brightness.
    pub bright_scale: f64,
    /// Pattern used instead of every cue's pattern.
    pub pattern: Option<Pattern>,
}

/// One track of the playlist.
#[derive(Debug, Clone)]
pub struct ShowTrack {
    /// What to play: a path (resolved against the show file) or `demo`.
    pub source: String,
    /// The name the player reports for it (file name, or `demo`).
    pub player_name: String,
    /// Its beatmap; `None`: beats come from live analysis.
    pub beatmap: Option<Arc<Beatmap>>,
    /// Sample rate and length of the track.
    pub sample_rate: u32,
    /// Length in seconds, when known.
    pub duration_s: Option<f64>,
    /// Beats per bar (beatmap's, or the track's `beats_per_bar` for live tracks).
    pub beats_per_bar: u32,
    /// Look at the start of the track.
    pub look: Look,
    /// Line of the track's `look` (of its `[[track]]` when it has none).
    pub look_line: usize,
    /// Cues, in file order.
    pub cues: Vec<Cue>,
    /// Audio-reactive mappings.
    pub react: Vec<Reaction>,
}

impl ShowTrack {
    /// Whether some cue repeats on onsets (the live analyser must run).
    pub fn needs_onsets(&self) -> bool {
        self.cues.iter().any(|c| {
            matches!(
                c.when,
                When::Every {
                    unit: Unit::Onset,
                    ..
                }
            )
        })
    }
}

/// A validated show.
#[derive(Debug, Clone)]
pub struct Show {
    /// Show name (`name`, or the file stem).
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// Vehicle groups: name → vehicle ids (`lead` and `followers` are built in).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Whole-show per-vehicle adjustments, by vehicle id or group.
    pub vehicles: BTreeMap<String, VehicleOverride>,
    /// The playlist.
    pub tracks: Vec<ShowTrack>,
    /// What loads but looks wrong (fields with no effect, beatmaps of other audio).
    pub warnings: Vec<Warning>,
}

// ---------------------------------------------------------------------------
// Raw file structure

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShow {
    format: Spanned<String>,
    version: Spanned<i64>,
    name: Option<String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    vehicle: BTreeMap<String, Spanned<RawVehicle>>,
    #[serde(default)]
    track: Vec<Spanned<RawTrack>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVehicle {
    hue_offset: Option<f64>,
    bright_scale: Option<f64>,
    pattern: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    file: Spanned<String>,
    beatmap: Option<Spanned<String>>,
    beats_per_bar: Option<u32>,
    look: Option<Spanned<RawLook>>,
    #[serde(default)]
    cue: Vec<Spanned<RawCue>>,
    #[serde(default)]
    react: Vec<Spanned<RawReact>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLook {
    pattern: Option<Spanned<String>>,
    color: Option<Spanned<String>>,
    hue: Option<f64>,
    hue_offset: Option<f64>,
    bright: Option<f64>,
    speed: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCue {
    name: Option<String>,
    at: Option<Spanned<String>>,
    section: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    color: Option<Spanned<String>>,
    hue: Option<f64>,
    hue_offset: Option<f64>,
    bright: Option<f64>,
    speed: Option<i64>,
    #[serde(default)]
    flash: bool,
    #[serde(default)]
    hue_step: f64,
    #[serde(default, rename = "for")]
    overrides: BTreeMap<String, Spanned<RawLook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReact {
    band: Spanned<String>,
    to: Spanned<String>,
    min: f64,
    max: f64,
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Loading

/// Byte offset → 1-based line. The line starts are found once, so each lookup is a
/// binary search: a show with 100k cues used to take minutes because every value
/// recounted the newlines from the start of the file.
struct Lines {
    /// Byte offset of the first character of each line after the first.
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        Lines {
            starts: line_starts(text.as_bytes()),
        }
    }
    fn of(&self, offset: usize) -> usize {
        // Lines that start at or before `offset`, plus the first line.
        self.starts.partition_point(|&s| s <= offset) + 1
    }
    fn at<T>(&self, s: &Spanned<T>) -> usize {
        self.of(s.span().start)
    }
}

/// The offsets just after each `\n`.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect()
}

impl Show {
    /// A show with no tracks: every track the node plays gets the default look.
    pub fn empty() -> Show {
        Show {
            name: String::new(),
            path: PathBuf::new(),
            groups: BTreeMap::new(),
            vehicles: BTreeMap::new(),
            tracks: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Read and validate a show file. Relative track and beatmap paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Show, ShowError> {
        let text = std::fs::read_to_string(path).map_err(|source| ShowError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Show::parse(&text, path)
    }

    /// Validate show text as if it were the file `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Show, ShowError> {
        let lines = Lines::new(text);
        let invalid = |problems: Vec<Problem>| ShowError::Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let raw: RawShow = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| lines.of(s.start));
            invalid(vec![Problem {
                line,
                message: e.message().trim().replace('\n', " "),
            }])
        })?;
        let mut cx = Loader {
            lines: &lines,
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            problems: Vec::new(),
            warnings: Vec::new(),
            vehicle_lines: BTreeMap::new(),
        };
        let mut show = cx.show(raw, path);
        if cx.problems.is_empty() {
            show.warnings = cx.warnings;
            show.warnings
                .extend(super::lint::no_effect(&show, &cx.vehicle_lines));
            show.warnings.sort_by_key(|w| w.line);
            Ok(show)
        } else {
            cx.problems.sort_by_key(|p| p.line);
            Err(invalid(cx.problems))
        }
    }

    /// Whether `group` (a group name or a vehicle id) names this vehicle.
    pub fn matches(&self, target: &str, vehicle: &VehicleInfo) -> bool {
        target == vehicle.id
            || (target == "lead" && vehicle.leader)
            || (target == "followers" && !vehicle.leader)
            || self
                .groups
                .get(target)
                .is_some_and(|ids| ids.contains(&vehicle.id))
    }

    /// The whole-show adjustment for this vehicle: every matching `[vehicle.X]` table, in
    /// name order, offsets added and scales multiplied (a pattern from the last match).
    pub fn vehicle_override(&self, vehicle: &VehicleInfo) -> VehicleOverride {
        let mut o = VehicleOverride {
            bright_scale: 1.0,
            ..VehicleOverride::default()
        };
        for (target, v) in &self.vehicles {
            if self.matches(target, vehicle) {
                o.hue_offset += v.hue_offset;
                o.bright_scale *= v.bright_scale;
                o.pattern = v.pattern.or(o.pattern);
            }
        }
        o
    }

    /// The playlist track the player reports by this name.
    pub fn track_by_player_name(&self, name: &str) -> Option<(usize, &ShowTrack)> {
        self.tracks
            .iter()
            .enumerate()
            .find(|(_, t)| t.player_name == name)
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Which vehicle runs the show, for per-vehicle overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VehicleInfo {
    /// Vehicle id (`node.id`).
    pub id: String,
    /// Whether it is the fleet leader (built-in group `lead`; otherwise `followers`).
    pub leader: bool,
}

struct Loader<'a> {
    lines: &'a Lines,
    dir: PathBuf,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
    /// Line of each `[vehicle.X]` table.
    vehicle_lines: BTreeMap<String, usize>,
}

impl Loader<'_> {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    fn show(&mut self, raw: RawShow, path: &Path) -> Show {
        if raw.format.get_ref() != SHOW_FORMAT {
            let line = self.lines.at(&raw.format);
            self.problem(
                line,
                format!(
                    "format is {:?}, expected {SHOW_FORMAT:?}",
                    raw.format.get_ref()
                ),
            );
        }
        if *raw.version.get_ref() != i64::from(SHOW_VERSION) {
            let line = self.lines.at(&raw.version);
            self.problem(
                line,
                format!(
                    "show format version {} is not supported (this Convoy reads version {SHOW_VERSION})",
                    raw.version.get_ref()
                ),
            );
        }
        if raw.track.is_empty() {
            self.problem(0, "the show has no [[track]]");
        }
        let mut vehicles = BTreeMap::new();
        for (target, v) in raw.vehicle {
            let line = self.lines.at(&v);
            self.vehicle_lines.insert(target.clone(), line);
            let v = v.into_inner();
            let pattern = v.pattern.and_then(|p| self.pattern(&p));
            let bright_scale = v.bright_scale.unwrap_or(1.0);
            if !(0.0..=4.0).contains(&bright_scale) {
                self.problem(
                    line,
                    format!("[vehicle.{target}] bright_scale {bright_scale} is outside 0..=4"),
                );
            }
            vehicles.insert(
                target,
                VehicleOverride {
                    hue_offset: v.hue_offset.unwrap_or(0.0),
                    bright_scale,
                    pattern,
                },
            );
        }
        let tracks = raw.track.into_iter().map(|t| self.track(t)).collect();
        Show {
            name: raw.name.unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "show".into())
            }),
            path: path.to_path_buf(),
            groups: raw.groups,
            vehicles,
            tracks,
            warnings: Vec::new(),
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    fn track(&mut self, raw: Spanned<RawTrack>) -> ShowTrack {
        let raw = raw.into_inner();
        let file_line = self.lines.at(&raw.file);
        let file = raw.file.get_ref();
        let source = if matches!(file.as_str(), "demo" | "builtin:demo") {
            "demo".to_string()
        } else {
            self.resolve_path(file).display().to_string()
        };
        let (player_name, sample_rate, mut duration_s, opened) =
            match crate::audio::open_track(&source) {
                Ok(src) => {
                    let spec = src.spec();
                    let rate = spec.sample_rate.max(1);
                    (
                        src.name(),
                        rate,
                        spec.frames.map(|f| f as f64 / f64::from(rate)),
                        true,
                    )
                }
                Err(e) => {
                    self.problem(file_line, format!("track {file:?}: {e}"));
                    (file.clone(), 44_100, None, false)
                }
            };
        let mut mismatch = None;
        let beatmap = raw.beatmap.as_ref().and_then(|b| {
            let line = self.lines.at(b);
            let p = self.resolve_path(b.get_ref());
            if !p.exists() {
                self.problem(line, format!("missing beatmap {}: no such file", p.display()));
                return None;
            }
            let map = match Beatmap::load(&p) {
                Ok(map) => map,
                Err(e) => {
                    self.problem(line, format!("beatmap {}: {e}", p.display()));
                    return None;
                }
            };
            // A beatmap is checked against the audio it is attached to.
            if let Some(d) = duration_s {
                if map.track.duration_s > d + END_SLACK_S {
                    self.problem(
                        line,
                        format!(
                            "beatmap {} describes a {:.1} s track, but {file:?} is {d:.1} s long",
                            p.display(),
                            map.track.duration_s
                        ),
                    );
                    return None;
                }
            }
            if opened && !map.track.content_hash.is_empty() {
                if let Ok(hash) = crate::audio::content_hash(&source) {
                    if !hash.eq_ignore_ascii_case(&map.track.content_hash) {
                        mismatch = Some(Warning {
                            line,
                            message: format!(
                                "beatmap {} was made for other audio than {file:?} (its content_hash \
                                 {} is not the track's {}); the track is followed by live analysis \
                                 (run `convoy analyze {file}`)",
                                p.display(),
                                short(&map.track.content_hash),
                                short(&hash)
                            ),
                            kind: WarningKind::BeatmapMismatch,
                        });
                    }
                }
            }
            Some(Arc::new(map))
        });
        if let Some(map) = &beatmap {
            duration_s = Some(duration_s.unwrap_or(map.track.duration_s));
        }
        let beats_per_bar = beatmap
            .as_ref()
            .map(|m| m.beats_per_bar)
            .or(raw.beats_per_bar)
            .unwrap_or(LIVE_BEATS_PER_BAR)
            .max(1);
        let mut track = ShowTrack {
            source,
            player_name,
            beatmap,
            sample_rate,
            duration_s,
            beats_per_bar,
            look: Look::default(),
            look_line: file_line,
            cues: Vec::new(),
            react: Vec::new(),
        };
        // Beatmap-dependent checks only make sense with a beatmap that loaded.
        let map_missing = raw.beatmap.is_some() && track.beatmap.is_none();
        if let Some(look) = raw.look {
            let line = self.lines.at(&look);
            track.look_line = line;
            track.look = self.look(look.into_inner(), line);
        }
        for (i, cue) in raw.cue.into_iter().enumerate() {
            if let Some(c) = self.cue(cue, i + 1, &track, map_missing) {
                track.cues.push(c);
            }
        }
        for r in raw.react {
            if let Some(r) = self.react(r, &track, map_missing) {
                track.react.push(r);
            }
        }
        if let Some(w) = mismatch {
            // Cues were checked against the beatmap; playing uses live beats rather than
            // beats of other audio.
            track.beatmap = None;
            self.warnings.push(w);
        }
        track
    }

    fn pattern(&mut self, name: &Spanned<String>) -> Option<Pattern> {
        let p = Pattern::from_name(name.get_ref());
        if p.is_none() {
            let known: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
            let line = self.lines.at(name);
            self.problem(
                line,
                format!(
                    "unknown pattern {:?} (the firmware knows: {})",
                    name.get_ref(),
                    known.join(", ")
                ),
            );
        }
        p
    }

    fn color(&mut self, text: &Spanned<String>) -> Option<Rgb> {
        let t = text.get_ref().trim();
        let parsed = if let Some(hex) = t.strip_prefix('#') {
            (hex.len() == 6)
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
                .map(|v| Rgb::new((v >> 16) as u8, (v >> 8) as u8, v as u8))
        } else {
            let parts: Vec<Option<u8>> = t.split(',').map(|p| p.trim().parse().ok()).collect();
            match parts.as_slice() {
                [Some(r), Some(g), Some(b)] => Some(Rgb::new(*r, *g, *b)),
                _ => None,
            }
        };
        if parsed.is_none() {
            let line = self.lines.at(text);
            self.problem(
                line,
                format!("bad colour {t:?} (expected \"#ff8000\" or \"255,128,0\")"),
            );
        }
        parsed
    }

    #[allow(clippy::too_many_arguments)]
    fn look_fields(
        &mut self,
        line: usize,
        pattern: Option<Spanned<String>>,
        color: Option<Spanned<String>>,
        hue: Option<f64>,
        hue_offset: Option<f64>,
        bright: Option<f64>,
        speed: Option<i64>,
    ) -> Look {
        let pattern = pattern.and_then(|p| self.pattern(&p));
        let color = color.and_then(|c| self.color(&c));
        for (key, v) in [("hue", hue), ("hue_offset", hue_offset)] {
            if v.is_some_and(|v| !v.is_finite()) {
                self.problem(line, format!("{key} must be a number of degrees"));
            }
        }
        let bright = bright.filter(|b| {
            let ok = (0.0..=1.0).contains(b);
            if !ok {
                self.problem(line, format!("bright {b} is outside 0..=1"));
            }
            ok
        });
        let speed = speed.and_then(|s| {
            let v = u8::try_from(s).ok();
            if v.is_none() {
                self.problem(line, format!("speed {s} is outside 0..=255"));
            }
            v
        });
        Look {
            pattern,
            color,
            hue,
            hue_offset,
            bright,
            speed,
        }
    }

    fn look(&mut self, raw: RawLook, line: usize) -> Look {
        self.look_fields(
            line,
            raw.pattern,
            raw.color,
            raw.hue,
            raw.hue_offset,
            raw.bright,
            raw.speed,
        )
    }

    /// Parse a position and check it against the track.
    fn pos(&mut self, text: &Spanned<String>, track: &ShowTrack, map_missing: bool) -> Option<Pos> {
        let line = self.lines.at(text);
        let pos = match parse_pos(text.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                self.problem(line, e);
                return None;
            }
        };
        match (pos, &track.beatmap) {
            (Pos::Time(t), _) => {
                if let Some(d) = track.duration_s.filter(|d| t > *d) {
                    self.problem(
                        line,
                        format!("cue at {pos} is beyond the end of the track ({d:.3} s)"),
                    );
                }
            }
            (Pos::Bar { bar, beat }, Some(map)) => {
                if map.beat_time(bar, beat).is_none() {
                    let (first, last) = (
                        map.bars.first().map_or(0, |b| b.number),
                        map.bars.last().map_or(0, |b| b.number),
                    );
                    let why = match map.bar(bar) {
                        None if bar > last => format!(
                            "bar {bar} is beyond the end of the track (the beatmap has bars {first}–{last})"
                        ),
                        None => format!("bar {bar} does not exist (the beatmap has bars {first}–{last})"),
                        Some(b) => format!("bar {bar} has {} beats, not {beat}", b.beat_count),
                    };
                    self.problem(line, why);
                }
            }
            (Pos::Bar { beat, .. }, None) => {
                if !map_missing && beat > track.beats_per_bar {
                    self.problem(
                        line,
                        format!(
                            "beat {beat} does not exist: this live track has {} beats per bar",
                            track.beats_per_bar
                        ),
                    );
                }
            }
        }
        Some(pos)
    }

    fn section(&mut self, label: &Spanned<String>, track: &ShowTrack, map_missing: bool) {
        let line = self.lines.at(label);
        match &track.beatmap {
            Some(map) if map.section_by_label(label.get_ref()).is_none() => {
                let known: Vec<&str> = map.sections.iter().map(|s| s.label.as_str()).collect();
                self.problem(
                    line,
                    format!(
                        "section {:?} is not in the beatmap (it has: {})",
                        label.get_ref(),
                        known.join(", ")
                    ),
                );
            }
            None if !map_missing => self.problem(
                line,
                format!(
                    "section {:?} needs a beatmap; this track is followed live",
                    label.get_ref()
                ),
            ),
            _ => {}
        }
    }

    fn cue(
        &mut self,
        raw: Spanned<RawCue>,
        number: usize,
        track: &ShowTrack,
        map_missing: bool,
    ) -> Option<Cue> {
        let line = self.lines.at(&raw);
        let c = raw.into_inner();
        let given = [c.at.is_some(), c.section.is_some(), c.every.is_some()];
        let when = match given {
            [true, false, false] => {
                let at = c.at.as_ref()?;
                When::At(self.pos(at, track, map_missing)?)
            }
            [false, true, false] => {
                let s = c.section.as_ref()?;
                self.section(s, track, map_missing);
                When::Section(s.get_ref().clone())
            }
            [_, _, true] => {
                let every = c.every.as_ref()?;
                let unit = match every.get_ref().as_str() {
                    "beat" => Unit::Beat,
                    "bar" => Unit::Bar,
                    "onset" => Unit::Onset,
                    other => {
                        let l = self.lines.at(every);
                        self.problem(
                            l,
                            format!("every = {other:?}: expected \"beat\", \"bar\" or \"onset\""),
                        );
                        return None;
                    }
                };
                if let Some(at) = &c.at {
                    let l = self.lines.at(at);
                    self.problem(l, "a cue has either `at` or `every`, not both");
                }
                if let Some(s) = &c.section {
                    self.section(s, track, map_missing);
                }
                let from = c
                    .from
                    .as_ref()
                    .and_then(|p| self.pos(p, track, map_missing));
                let until = c
                    .until
                    .as_ref()
                    .and_then(|p| self.pos(p, track, map_missing));
                When::Every {
                    unit,
                    from,
                    until,
                    section: c.section.as_ref().map(|s| s.get_ref().clone()),
                }
            }
            _ => {
                self.problem(
                    line,
                    "a cue needs exactly one of `at`, `section` or `every`",
                );
                return None;
            }
        };
        if !matches!(when, When::Every { .. }) {
            for r in [&c.from, &c.until].into_iter().flatten() {
                let l = self.lines.at(r);
                self.problem(l, "`from`/`until` only apply to `every` cues");
            }
        }
        let sets_something = c.pattern.is_some()
            || c.color.is_some()
            || c.hue.is_some()
            || c.hue_offset.is_some()
            || c.bright.is_some()
            || c.speed.is_some()
            || c.flash
            || c.hue_step != 0.0
            || !c.overrides.is_empty();
        let look = self.look_fields(
            line,
            c.pattern,
            c.color,
            c.hue,
            c.hue_offset,
            c.bright,
            c.speed,
        );
        let mut overrides = BTreeMap::new();
        for (target, o) in c.overrides {
            let l = self.lines.at(&o);
            let look = self.look(o.into_inner(), l);
            overrides.insert(target, look);
        }
        if !sets_something {
            self.problem(line, "this cue changes nothing (give a pattern, colour, hue, bright, speed, flash or hue_step)");
        }
        if !c.hue_step.is_finite() {
            self.problem(line, "hue_step must be a number of degrees");
        }
        Some(Cue {
            name: c.name.unwrap_or_else(|| number.to_string()),
            line,
            when,
            look,
            flash: c.flash,
            hue_step: c.hue_step,
            overrides,
        })
    }

    fn react(
        &mut self,
        raw: Spanned<RawReact>,
        track: &ShowTrack,
        map_missing: bool,
    ) -> Option<Reaction> {
        let line = self.lines.at(&raw);
        let r = raw.into_inner();
        let band = match r.band.get_ref().as_str() {
            "low" => 0,
            "mid" => 1,
            "high" => 2,
            other => {
                let l = self.lines.at(&r.band);
                self.problem(
                    l,
                    format!("band {other:?}: expected \"low\", \"mid\" or \"high\""),
                );
                return None;
            }
        };
        let target = match r.to.get_ref().as_str() {
            "bright" => ReactTarget::Bright,
            "hue" => ReactTarget::Hue,
            other => {
                let l = self.lines.at(&r.to);
                self.problem(l, format!("to = {other:?}: expected \"bright\" or \"hue\""));
                return None;
            }
        };
        if target == ReactTarget::Bright
            && !((0.0..=1.0).contains(&r.min) && (0.0..=1.0).contains(&r.max))
        {
            self.problem(line, "brightness min and max must be within 0..=1");
        }
        if !(r.min.is_finite() && r.max.is_finite()) {
            self.problem(line, "min and max must be numbers");
        }
        let from = r
            .from
            .as_ref()
            .and_then(|p| self.pos(p, track, map_missing));
        let until = r
            .until
            .as_ref()
            .and_then(|p| self.pos(p, track, map_missing));
        Some(Reaction {
            band,
            target,
            min: r.min,
            max: r.max,
            from,
            until,
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_map_path() -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("beatmaps/demo.beatmap.json")
            .display()
            .to_string()
    }

    fn show(body: &str) -> Result<Show, ShowError> {
        let text = format!(
            "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\nbeatmap = {:?}\n{body}",
            demo_map_path()
        );
        Show::parse(&text, Path::new("/shows/t.toml"))
    }

    fn problems(body: &str) -> Vec<Problem> {
        match show(body) {
            Err(ShowError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn line_lookup_matches_counting_newlines() {
        let text = "a\nbb\n\nccc\n";
        let lines = Lines::new(text);
        for offset in 0..=text.len() + 3 {
            let counted = text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            assert_eq!(lines.of(offset), counted, "offset {offset}");
        }
        assert_eq!(Lines::new("").of(0), 1);
    }

    fn warnings(body: &str) -> Vec<String> {
        show(body)
            .expect("valid")
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.line, w.message))
            .collect()
    }

    #[test]
    fn fields_no_pattern_shows_are_warnings() {
        // issue 27: `flash = true` under `pulse` (the old demo "count-in" cue).
        let w = warnings(
            "look = { pattern = \"pulse\", color = \"#3040ff\", bright = 0.4, speed = 80 }\n\
             [[track.cue]]\nname = \"count-in\"\nevery = \"beat\"\nsection = \"intro\"\nflash = true\n",
        );
        assert_eq!(
            w,
            ["7: cue \"count-in\": `flash` has no effect under pulse (only beatflash draws beats)"]
        );
        // `color` under beatflash (it follows the hue), `hue_step` under pulse.
        let w = warnings(
            "look = { pattern = \"pulse\", color = \"#3040ff\" }\n\
             [[track.cue]]\nevery = \"bar\"\nuntil = \"bar 3\"\nhue_step = 15\n\
             [[track.cue]]\nat = \"bar 3\"\npattern = \"beatflash\"\ncolor = \"#ff0000\"\nhue = 10\n",
        );
        assert_eq!(
            w,
            [
                "7: cue \"1\": `hue_step` has no effect under pulse (hue is read by rainbow, vu, beatflash)",
                "11: cue \"2\": `color` has no effect under beatflash (colour is read by solid, pulse, strobe, chase, sparkle)",
            ]
        );
        // A colour set under beatflash and shown by a later solid is not a no-op.
        let w = warnings(
            "[[track.cue]]\nat = \"bar 3\"\npattern = \"beatflash\"\ncolor = \"#ff0000\"\nhue = 10\n\
             [[track.cue]]\nat = \"bar 5\"\npattern = \"solid\"\n",
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_vehicle_hue_offset_under_colour_patterns_is_a_warning() {
        let text = |pattern: &str| {
            format!(
                "format = \"convoy-show\"\nversion = 1\n[groups]\nleft = [\"b2\"]\n\
                 [vehicle.left]\nhue_offset = 180\n\
                 [[track]]\nfile = \"demo\"\nlook = {{ pattern = {pattern:?}, color = \"#ff0000\", hue = 0 }}\n"
            )
        };
        let s = Show::parse(&text("chase"), Path::new("x.toml")).expect("valid");
        let w: Vec<&str> = s.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(
            w.contains(&"[vehicle.left] `hue_offset` has no effect: these vehicles only show chase (hue is read by rainbow, vu, beatflash)"),
            "{w:?}"
        );
        assert_eq!(s.warnings[0].line, 5);
        let s = Show::parse(&text("rainbow"), Path::new("x.toml")).expect("valid");
        assert!(
            !s.warnings
                .iter()
                .any(|w| w.message.contains("vehicle.left")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn the_shipped_shows_have_no_warnings() {
        for name in ["demo", "live"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("shows/{name}.toml"));
            let s = Show::load(&path).expect("loads");
            assert!(s.warnings.is_empty(), "{}", s.render_warnings());
        }
    }

    fn write_tone(path: &Path, seconds: u32) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("wav");
        for i in 0..seconds * 8000 {
            w.write_sample(((i as f32 * 0.3).sin() * 8000.0) as i16)
                .expect("sample");
        }
        w.finalize().expect("wav");
    }

    #[test]
    fn beatmaps_are_checked_against_their_track() {
        let dir = tempfile::tempdir().expect("tmp");
        // Another file under the demo's beatmap: a mismatch warning, and live beats.
        let wav = dir.path().join("other.wav");
        write_tone(&wav, 40);
        let text = format!(
            "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"other.wav\"\nbeatmap = {:?}\n\
             [[track.cue]]\nat = \"bar 3\"\npattern = \"strobe\"\n",
            demo_map_path()
        );
        let s = Show::parse(&text, &dir.path().join("x.toml")).expect("loads");
        assert!(s.tracks[0].beatmap.is_none(), "falls back to live analysis");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert_eq!(s.warnings[0].kind, WarningKind::BeatmapMismatch);
        assert_eq!(s.warnings[0].line, 5);
        assert!(
            s.warnings[0]
                .message
                .contains("was made for other audio than \"other.wav\""),
            "{}",
            s.warnings[0].message
        );
        // The demo song under its own beatmap matches.
        let s = show("").expect("demo");
        assert!(s.tracks[0].beatmap.is_some() && s.warnings.is_empty());
        // A beatmap of a longer track than the file is refused.
        let short = dir.path().join("short.wav");
        write_tone(&short, 5);
        let text = text.replace("other.wav", "short.wav");
        let err = Show::parse(&text, &dir.path().join("x.toml"))
            .expect_err("too long")
            .to_string();
        assert!(
            err.contains(":5: beatmap ")
                && err.contains("describes a 31.0 s track, but \"short.wav\" is 5.0 s long"),
            "{err}"
        );
    }

    #[test]
    fn positions_parse() {
        assert_eq!(
            parse_pos("bar 17 beat 3"),
            Ok(Pos::Bar { bar: 17, beat: 3 })
        );
        assert_eq!(parse_pos("Bar 2"), Ok(Pos::Bar { bar: 2, beat: 1 }));
        assert_eq!(parse_pos("1:23.500"), Ok(Pos::Time(83.5)));
        assert_eq!(parse_pos("12.25s"), Ok(Pos::Time(12.25)));
        assert!(parse_pos("bar x").is_err());
        assert!(parse_pos("bar 3 beat 0").is_err());
        assert!(parse_pos("1:75").is_err());
        assert!(parse_pos("soon").is_err());
    }

    #[test]
    fn a_good_show_loads() {
        let s = show(
            "look = { pattern = \"rainbow\", bright = 0.5 }\n\
             [[track.cue]]\nname = \"drop\"\nat = \"bar 5 beat 1\"\npattern = \"chase\"\ncolor = \"#ff8000\"\n\
             [track.cue.for.left]\ncolor = \"0,0,255\"\n\
             [[track.cue]]\nevery = \"beat\"\nfrom = \"bar 5\"\nuntil = \"bar 9\"\nflash = true\nhue_step = 15\n\
             [[track.cue]]\nsection = \"A\"\nspeed = 200\n\
             [[track.react]]\nband = \"low\"\nto = \"bright\"\nmin = 0.2\nmax = 1.0\n",
        )
        .expect("valid");
        let t = &s.tracks[0];
        assert_eq!(t.player_name, "demo");
        assert_eq!(t.cues.len(), 3);
        assert_eq!(t.cues[0].name, "drop");
        assert_eq!(t.cues[0].look.color, Some(Rgb::new(255, 128, 0)));
        assert_eq!(t.cues[0].overrides["left"].color, Some(Rgb::new(0, 0, 255)));
        assert_eq!(t.cues[1].name, "2");
        assert_eq!(t.look.pattern, Some(Pattern::Rainbow));
        assert_eq!(t.react[0].target, ReactTarget::Bright);
    }

    #[test]
    fn problems_name_their_lines() {
        // Line 6 is the first line after the header written by `show`.
        let p = problems(
            "[[track.cue]]\n\
             at = \"bar 99 beat 1\"\n\
             pattern = \"disco\"\n\
             [[track.cue]]\n\
             at = \"0:45.000\"\n\
             bright = 2\n\
             [[track.cue]]\n\
             at = \"bar 3 beat 7\"\n\
             flash = true\n\
             [[track.cue]]\n\
             section = \"chorus\"\n\
             pattern = \"off\"\n",
        );
        let line_of = |needle: &str| {
            p.iter()
                .find(|p| p.message.contains(needle))
                .map(|p| p.line)
                .unwrap_or_else(|| panic!("no problem mentioning {needle:?} in {p:?}"))
        };
        assert_eq!(p.len(), 6, "{p:?}");
        assert_eq!(line_of("bar 99 is beyond the end"), 7);
        assert_eq!(line_of("unknown pattern \"disco\""), 8);
        assert!(p.iter().any(|p| p.message.contains("beatflash")), "{p:?}");
        assert_eq!(line_of("cue at 0:45.000 is beyond the end"), 10);
        // Range problems of plain numbers name the cue's `[[track.cue]]` line.
        assert_eq!(line_of("bright 2 is outside"), 9);
        assert_eq!(line_of("has 4 beats, not 7"), 13);
        assert_eq!(line_of("section \"chorus\""), 16);
    }

    #[test]
    fn missing_beatmap_and_unknown_key_are_reported() {
        let text = "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\nbeatmap = \"nope.json\"\n";
        let err = Show::parse(text, Path::new("/tmp/x.toml"))
            .expect_err("missing")
            .to_string();
        assert!(
            err.starts_with("/tmp/x.toml:5: missing beatmap /tmp/nope.json"),
            "{err}"
        );
        let text =
            "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\ncolour = 1\n";
        let err = Show::parse(text, Path::new("x.toml"))
            .expect_err("unknown")
            .to_string();
        assert!(
            err.starts_with("x.toml:5:") && err.contains("colour"),
            "{err}"
        );
        let text = "format = \"convoy-show\"\nversion = 2\n[[track]]\nfile = \"demo\"\n";
        let err = Show::parse(text, Path::new("x.toml"))
            .expect_err("version")
            .to_string();
        assert!(
            err.starts_with("x.toml:2:") && err.contains("version 2"),
            "{err}"
        );
    }

    #[test]
    fn live_tracks_reject_sections_but_take_bars() {
        let text = "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\n\
                    [[track.cue]]\nat = \"bar 3\"\npattern = \"strobe\"\n";
        let s = Show::parse(text, Path::new("x.toml")).expect("live bar cue is fine");
        assert!(s.tracks[0].beatmap.is_none());
        let text = "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\n\
                    [[track.cue]]\nsection = \"A\"\npattern = \"strobe\"\n";
        let err = Show::parse(text, Path::new("x.toml"))
            .expect_err("section")
            .to_string();
        assert!(
            err.contains("x.toml:6:") && err.contains("needs a beatmap"),
            "{err}"
        );
    }

    #[test]
    fn vehicle_overrides_combine() {
        let text = "format = \"convoy-show\"\nversion = 1\n[groups]\nleft = [\"b2\"]\n\
                    [vehicle.left]\nhue_offset = 90\n[vehicle.lead]\nbright_scale = 0.5\npattern = \"strobe\"\n\
                    [[track]]\nfile = \"demo\"\n";
        let s = Show::parse(text, Path::new("x.toml")).expect("valid");
        let b2 = VehicleInfo {
            id: "b2".into(),
            leader: true,
        };
        let o = s.vehicle_override(&b2);
        assert_eq!((o.hue_offset, o.bright_scale), (90.0, 0.5));
        assert_eq!(o.pattern, Some(Pattern::Strobe));
        let b3 = VehicleInfo {
            id: "b3".into(),
            leader: false,
        };
        assert_eq!(s.vehicle_override(&b3).bright_scale, 1.0);
        assert!(s.matches("followers", &b3) && !s.matches("left", &b3));
    }
}
