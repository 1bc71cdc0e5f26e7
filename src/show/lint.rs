//! Fields that do nothing: a show check that plays every track's cues through for every
//! kind of vehicle and warns about each value no pattern ever shows.
//!
//! Which pattern reads which light field is [`reads`], taken from the renderer
//! (`led::patterns::pixel`, mirrored by the firmware; a test renders every pattern with each
//! field changed and checks the table). A field a cue sets stays in the light state until
//! another cue replaces it, so a value is only a no-op if it is replaced (or the track
//! ends) before any pattern that reads it is showing: `color` set under `beatflash` and
//! then shown by a later `solid` cue is fine; `hue_step` on a `pulse` that is never
//! followed by a hue pattern is not. `flash` is shown at once or never (only `beatflash`
//! draws beats). Vehicle-wide `hue_offset` is a no-op when the vehicles it applies to never
//! show a hue pattern. Warnings name the field, the pattern(s) and which patterns would
//! read the field; `docs/shows.md` carries the same table.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Cue, Look, Show, ShowTrack, Unit, VehicleInfo, Warning, WarningKind, When};
use super::schedule::{self, Action, Event, Lights};
use crate::led::protocol::Pattern;

/// A light field a pattern may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `color` (RGB).
    Color,
    /// `hue` (and everything added to it: `hue_offset`, `hue_step`).
    Hue,
    /// `bright`.
    Bright,
    /// `speed`.
    Speed,
    /// Beats, including a cue's `flash`.
    Beats,
}

/// The fields `pattern` reads when it draws (from `led::patterns::pixel`).
pub fn reads(pattern: Pattern) -> &'static [Field] {
    use Field::*;
    match pattern {
        Pattern::Off => &[],
        Pattern::Solid => &[Color, Bright],
        Pattern::Rainbow => &[Hue, Speed, Bright],
        Pattern::Pulse | Pattern::Strobe | Pattern::Chase | Pattern::Sparkle => {
            &[Color, Speed, Bright]
        }
        Pattern::Vu => &[Hue, Bright],
        Pattern::BeatFlash => &[Hue, Speed, Bright, Beats],
    }
}

/// The patterns that read `field`, by name.
fn readers(field: Field) -> String {
    let names: Vec<&str> = Pattern::ALL
        .iter()
        .filter(|p| reads(**p).contains(&field))
        .map(|p| p.name())
        .collect();
    names.join(", ")
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    /// The track's `look`.
    Look(usize),
    /// A cue's own field (track, cue).
    Cue(usize, usize),
    /// A cue's `for.TARGET` field (track, cue, target).
    For(usize, usize, String),
}

/// One value written: where, which key, which field it feeds.
type Key = (Src, &'static str);

/// A set of patterns, one bit per [`Pattern::ALL`] entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Patterns(u16);

impl Patterns {
    fn insert(&mut self, p: Pattern) {
        if let Some(i) = Pattern::ALL.iter().position(|q| *q == p) {
            self.0 |= 1 << i;
        }
    }
    fn iter(self) -> impl Iterator<Item = Pattern> {
        Pattern::ALL
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, p)| p)
    }
}

#[derive(Default)]
struct Seen {
    field: Option<Field>,
    used: bool,
    patterns: Patterns,
}

/// Most cue firings simulated per track and vehicle before the check gives up on a track.
const MAX_EVENTS: usize = 2_000_000;
/// Most kinds of vehicle simulated.
const MAX_CONTEXTS: usize = 64;

/// Warnings for every field of `show` that never has an effect. `vehicle_lines` gives the
/// line of each `[vehicle.X]` table.
pub fn no_effect(show: &Show, vehicle_lines: &BTreeMap<String, usize>) -> Vec<Warning> {
    let mut seen: BTreeMap<Key, Seen> = BTreeMap::new();
    // Per vehicle table: the patterns its vehicles show, and whether one read the hue.
    let mut vehicle_shown: BTreeMap<&str, (bool, Patterns)> = BTreeMap::new();
    let contexts = contexts(show);
    for (ti, track) in show.tracks.iter().enumerate() {
        let events = events(track);
        if events.len() > MAX_EVENTS {
            continue;
        }
        for vehicle in &contexts {
            let shown = simulate(show, ti, track, &events, vehicle, &mut seen);
            for target in show.vehicles.keys() {
                if show.matches(target, vehicle) {
                    let e = vehicle_shown.entry(target.as_str()).or_default();
                    e.0 |= shown.iter().any(|p| reads(p).contains(&Field::Hue));
                    e.1 .0 |= shown.0;
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((src, key), s) in &seen {
        if s.used {
            continue;
        }
        let (line, who) = match src {
            Src::Look(ti) => (show.tracks[*ti].look_line, format!("track {} look", ti + 1)),
            Src::Cue(ti, ci) => {
                let c = &show.tracks[*ti].cues[*ci];
                (c.line, format!("cue {:?}", c.name))
            }
            Src::For(ti, ci, target) => {
                let c = &show.tracks[*ti].cues[*ci];
                (c.line, format!("cue {:?} for.{target}", c.name))
            }
        };
        let pats = names(s.patterns);
        let why = match s.field {
            Some(Field::Beats) => "only beatflash draws beats".to_string(),
            Some(f @ Field::Color) => format!("colour is read by {}", readers(f)),
            Some(f @ Field::Hue) => format!("hue is read by {}", readers(f)),
            Some(f @ Field::Speed) => format!("speed is read by {}", readers(f)),
            Some(f @ Field::Bright) => format!("brightness is read by {}", readers(f)),
            None => continue,
        };
        out.push(Warning {
            line,
            message: format!("{who}: `{key}` has no effect under {pats} ({why})"),
            kind: WarningKind::NoEffect,
        });
    }
    for (target, v) in &show.vehicles {
        if v.hue_offset == 0.0 {
            continue;
        }
        if let Some((false, patterns)) = vehicle_shown.get(target.as_str()) {
            out.push(Warning {
                line: vehicle_lines.get(target).copied().unwrap_or(0),
                message: format!(
                    "[vehicle.{target}] `hue_offset` has no effect: these vehicles only show {} \
                     (hue is read by {})",
                    names(*patterns),
                    readers(Field::Hue)
                ),
                kind: WarningKind::NoEffect,
            });
        }
    }
    out
}

fn names(patterns: Patterns) -> String {
    let v: Vec<&str> = patterns.iter().map(|p| p.name()).collect();
    if v.is_empty() {
        "the power-on pattern".into()
    } else {
        v.join(", ")
    }
}

/// One vehicle for every distinct set of targets (`lead`, `followers`, groups, ids) it
/// can match.
fn contexts(show: &Show) -> Vec<VehicleInfo> {
    let mut targets: BTreeSet<&str> = show.vehicles.keys().map(String::as_str).collect();
    for t in &show.tracks {
        for c in &t.cues {
            targets.extend(c.overrides.keys().map(String::as_str));
        }
    }
    let mut ids: BTreeSet<&str> = show.groups.values().flatten().map(String::as_str).collect();
    ids.extend(
        targets
            .iter()
            .filter(|t| !matches!(**t, "lead" | "followers") && !show.groups.contains_key(**t)),
    );
    ids.insert("");
    let mut out = Vec::new();
    let mut signatures = BTreeSet::new();
    for id in ids {
        for leader in [true, false] {
            let v = VehicleInfo {
                id: id.to_string(),
                leader,
            };
            let sig: Vec<&str> = targets
                .iter()
                .copied()
                .filter(|t| show.matches(t, &v))
                .collect();
            if signatures.insert(sig) && out.len() < MAX_CONTEXTS {
                out.push(v);
            }
        }
    }
    out
}

/// Cue firings in play order: from the beatmap, or on a live track on a 120 BPM grid
/// (positions in bars only make sense relative to each other there). Onset cues are not
/// simulated.
fn events(track: &ShowTrack) -> Vec<Event> {
    if track.beatmap.is_some() {
        return schedule::resolve_beatmap(track);
    }
    let mut events = schedule::resolve_static(track);
    let rate = f64::from(track.sample_rate);
    let seconds = track.duration_s.unwrap_or(600.0).min(4.0 * 3600.0);
    let beats = (seconds * 2.0) as u64;
    let repeating = track.cues.iter().any(|c| {
        matches!(
            c.when,
            When::At(super::model::Pos::Bar { .. })
                | When::Every {
                    unit: Unit::Beat | Unit::Bar,
                    ..
                }
        )
    });
    if repeating {
        for i in 0..beats {
            schedule::live_beat_events(track, i, i as f64 * 0.5 * rate, &mut events);
            if events.len() > MAX_EVENTS {
                break;
            }
        }
    }
    events.sort_by(|a, b| a.frame.total_cmp(&b.frame));
    events
}

/// Play one track for one vehicle; returns the patterns it showed.
fn simulate(
    show: &Show,
    ti: usize,
    track: &ShowTrack,
    events: &[Event],
    vehicle: &VehicleInfo,
    seen: &mut BTreeMap<Key, Seen>,
) -> Patterns {
    let pattern_override = show.vehicle_override(vehicle).pattern;
    let mut lights = Lights::default();
    let mut pending: BTreeMap<Field, Vec<Key>> = BTreeMap::new();
    let mut shown = Patterns::default();
    let mut step = |lights: &mut Lights,
                    writes: Vec<(Key, Field, bool)>,
                    look: &Look,
                    hue_step: f64,
                    pending: &mut BTreeMap<Field, Vec<Key>>| {
        lights.apply(look);
        lights.hue += hue_step;
        let p = pattern_override.unwrap_or(lights.pattern);
        shown.insert(p);
        for (key, field, absolute) in writes {
            let s = seen.entry(key.clone()).or_default();
            s.field = Some(field);
            s.patterns.insert(p);
            if field == Field::Beats {
                s.used |= p == Pattern::BeatFlash;
                continue;
            }
            let list = pending.entry(field).or_default();
            if absolute {
                list.clear();
            }
            list.push(key);
        }
        for (field, keys) in pending.iter_mut() {
            let used = reads(p).contains(field);
            for k in std::mem::take(keys) {
                let s = seen.entry(k.clone()).or_default();
                s.patterns.insert(p);
                if used {
                    s.used = true;
                } else {
                    keys.push(k);
                }
            }
        }
    };
    let writes = look_writes(&track.look, Src::Look(ti));
    step(&mut lights, writes, &track.look, 0.0, &mut pending);
    for e in events {
        let Action::Cue { cue, .. } = e.action else {
            continue;
        };
        let Some(c) = track.cues.get(cue) else {
            continue;
        };
        let (look, mut writes) = cue_look(show, ti, cue, c, vehicle);
        if c.hue_step != 0.0 {
            writes.push(((Src::Cue(ti, cue), "hue_step"), Field::Hue, false));
        }
        if c.flash {
            writes.push(((Src::Cue(ti, cue), "flash"), Field::Beats, false));
        }
        step(&mut lights, writes, &look, c.hue_step, &mut pending);
    }
    shown
}

/// The look a cue sets on this vehicle, and where each field of it came from.
fn cue_look(
    show: &Show,
    ti: usize,
    ci: usize,
    cue: &Cue,
    vehicle: &VehicleInfo,
) -> (Look, Vec<(Key, Field, bool)>) {
    let mut look = cue.look;
    let mut writes = look_writes(&cue.look, Src::Cue(ti, ci));
    for (target, o) in &cue.overrides {
        if show.matches(target, vehicle) {
            look = look.merged(o);
            let over = look_writes(o, Src::For(ti, ci, target.clone()));
            writes.retain(|(k, _, _)| !over.iter().any(|(o, _, _)| o.1 == k.1));
            writes.extend(over);
        }
    }
    (look, writes)
}

/// The fields a look sets: (key, field read, whether it replaces the value).
fn look_writes(look: &Look, src: Src) -> Vec<(Key, Field, bool)> {
    let mut w = Vec::new();
    if look.color.is_some() {
        w.push(((src.clone(), "color"), Field::Color, true));
    }
    if look.hue.is_some() {
        w.push(((src.clone(), "hue"), Field::Hue, true));
    }
    if look.hue_offset.is_some() {
        w.push(((src.clone(), "hue_offset"), Field::Hue, false));
    }
    if look.bright.is_some() {
        w.push(((src.clone(), "bright"), Field::Bright, true));
    }
    if look.speed.is_some() {
        w.push(((src.clone(), "speed"), Field::Speed, true));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::patterns::{render, ShowState};
    use crate::led::protocol::Rgb;

    /// The table is what the renderer does: changing a field a pattern reads changes some
    /// pixel at some time; changing one it does not read changes none.
    #[test]
    fn the_table_is_what_the_renderer_reads() {
        for p in Pattern::ALL {
            let mut base = ShowState {
                beat_at_ms: Some(1000),
                beat_strength: 255,
                beat_in_bar: 1,
                bands: [128; 16],
                ..ShowState::default()
            };
            base.state.pattern = p;
            base.state.bright = 200;
            base.state.speed = 100;
            base.state.hue = 10;
            base.state.color = Rgb::new(200, 100, 50);
            let frames = |s: &ShowState| {
                let mut all = Vec::new();
                // Enough instants to catch every pattern's on-phase (strobe is dark most
                // of the time) and a beat flash before it decays.
                for t in (0..600u32).map(|k| 1000 + k * 7) {
                    let mut buf = vec![Rgb::default(); 30];
                    render(s, false, t, &mut buf);
                    all.extend(buf);
                }
                all
            };
            let changes = |f: Field| {
                let mut s = base;
                match f {
                    Field::Color => s.state.color = Rgb::new(10, 250, 90),
                    Field::Hue => s.state.hue = 140,
                    Field::Bright => s.state.bright = 60,
                    Field::Speed => s.state.speed = 7,
                    Field::Beats => s.beat_at_ms = None,
                }
                frames(&s) != frames(&base)
            };
            for f in [
                Field::Color,
                Field::Hue,
                Field::Bright,
                Field::Speed,
                Field::Beats,
            ] {
                assert_eq!(
                    changes(f),
                    reads(p).contains(&f),
                    "{} and {f:?}: the table says {:?}",
                    p.name(),
                    reads(p)
                );
            }
        }
    }
}
