//! Pure cue scheduling: no threads, no I/O, no clocks read.
//!
//! A track's cues are resolved to [`Event`]s at track frames — from the beatmap when there
//! is one ([`resolve_beatmap`]), or as the live analyser reports beats and onsets
//! ([`live_beat_events`], [`onset_events`]). [`PlayClock`] is the player's
//! (position, heard_at_ns, rate, speed) mapping between track frames and monotonic time,
//! and the [`Scheduler`] hands out each event `lead_ns` before it will be heard, so the
//! LED command lands on the beat after the serial and firmware latency. It notices seeks
//! and track jumps from the clock itself and reports them, so the runner can re-resolve
//! the look at the new position ([`look_at`]).

use super::model::{Cue, Look, Pos, Show, ShowTrack, Unit, VehicleInfo, VehicleOverride, When};
use crate::led::protocol::{LedState, Pattern, Rgb};

/// What happens at an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// A beat: `index` counts from the track's first beat, `in_bar` is 0 on downbeats.
    Beat {
        /// Beat number in the track (0-based).
        index: u64,
        /// Beat within the bar (0-based).
        in_bar: u8,
    },
    /// Cue number `cue` (index into the track's cues) fires for the `rep`-th time.
    Cue {
        /// Index into [`ShowTrack::cues`].
        cue: usize,
        /// Repetition (0 for one-shot cues).
        rep: u32,
    },
}

/// An action at a track position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Track frame (at the track's own rate) at which it should be heard.
    pub frame: f64,
    /// What happens.
    pub action: Action,
}

fn sort_events(events: &mut [Event]) {
    // Beats before cues at the same instant, cues in file order.
    let key = |e: &Event| match e.action {
        Action::Beat { .. } => (0, 0),
        Action::Cue { cue, rep } => (1 + cue, rep as usize),
    };
    events.sort_by(|a, b| a.frame.total_cmp(&b.frame).then(key(a).cmp(&key(b))));
}

/// Seconds of a position on a beatmap track (the model validated it).
fn map_time(track: &ShowTrack, pos: &Pos) -> Option<f64> {
    match *pos {
        Pos::Time(t) => Some(t),
        Pos::Bar { bar, beat } => track.beatmap.as_ref()?.beat_time(bar, beat),
    }
}

/// Every event of a track with a beatmap, sorted: each beat, and every cue occurrence
/// except onset cues (those come from the live analyser).
pub fn resolve_beatmap(track: &ShowTrack) -> Vec<Event> {
    let Some(map) = track.beatmap.as_ref() else {
        return resolve_static(track);
    };
    let rate = f64::from(track.sample_rate);
    let mut events = Vec::with_capacity(map.beats.len() * 2);
    let mut in_bar = vec![0u8; map.beats.len()];
    for bar in &map.bars {
        for k in 0..bar.beat_count {
            if let Some(slot) = in_bar.get_mut((bar.first_beat + k) as usize) {
                *slot = k.min(255) as u8;
            }
        }
    }
    for (i, &t) in map.beats.iter().enumerate() {
        events.push(Event {
            frame: t * rate,
            action: Action::Beat {
                index: i as u64,
                in_bar: in_bar[i],
            },
        });
    }
    for (ci, cue) in track.cues.iter().enumerate() {
        let mut push = |rep: usize, t: f64| {
            events.push(Event {
                frame: t * rate,
                action: Action::Cue {
                    cue: ci,
                    rep: rep as u32,
                },
            })
        };
        match &cue.when {
            When::At(pos) => {
                if let Some(t) = map_time(track, pos) {
                    push(0, t);
                }
            }
            When::Section(label) => {
                for (rep, s) in map.sections_by_label(label).enumerate() {
                    push(rep, s.start_s);
                }
            }
            When::Every {
                unit,
                from,
                until,
                section,
            } => {
                let times: &[f64] = match unit {
                    Unit::Beat => &map.beats,
                    Unit::Bar => &map.downbeats,
                    Unit::Onset => &[],
                };
                let lo = from.as_ref().and_then(|p| map_time(track, p));
                let hi = until.as_ref().and_then(|p| map_time(track, p));
                let mut rep = 0;
                for &t in times {
                    let in_range = lo.is_none_or(|lo| t >= lo - 1e-6)
                        && hi.is_none_or(|hi| t < hi - 1e-6)
                        && section.as_ref().is_none_or(|label| {
                            map.section_at(t).is_some_and(|s| s.label == *label)
                        });
                    if in_range {
                        push(rep, t);
                        rep += 1;
                    }
                }
            }
        }
    }
    sort_events(&mut events);
    events
}

/// The events a live track knows before any beat is heard: cues at fixed times.
pub fn resolve_static(track: &ShowTrack) -> Vec<Event> {
    let rate = f64::from(track.sample_rate);
    let mut events: Vec<Event> = track
        .cues
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| match c.when {
            When::At(Pos::Time(t)) => Some(Event {
                frame: t * rate,
                action: Action::Cue { cue: ci, rep: 0 },
            }),
            _ => None,
        })
        .collect();
    sort_events(&mut events);
    events
}

/// Whether a live position (`beat` = beat index from the first beat, `t` seconds) is at
/// or after `pos`.
fn live_reached(pos: &Pos, beat: u64, t: f64, bpb: u32) -> bool {
    match *pos {
        Pos::Time(at) => t >= at - 1e-6,
        Pos::Bar { bar, beat: b } => beat >= live_index(bar, b, bpb),
    }
}

/// Beat index of `bar N beat M` on a live track (bar 1 starts at the first beat).
fn live_index(bar: u32, beat: u32, bpb: u32) -> u64 {
    u64::from(bar.saturating_sub(1)) * u64::from(bpb) + u64::from(beat.saturating_sub(1))
}

/// Events for live beat number `index` (0-based from the first beat) at `frame`.
pub fn live_beat_events(track: &ShowTrack, index: u64, frame: f64, out: &mut Vec<Event>) {
    let bpb = u64::from(track.beats_per_bar.max(1));
    let t = frame / f64::from(track.sample_rate);
    out.push(Event {
        frame,
        action: Action::Beat {
            index,
            in_bar: (index % bpb).min(255) as u8,
        },
    });
    for (ci, cue) in track.cues.iter().enumerate() {
        let fire = match &cue.when {
            When::At(Pos::Bar { bar, beat }) => {
                (live_index(*bar, *beat, bpb as u32) == index).then_some(0)
            }
            When::Every {
                unit: unit @ (Unit::Beat | Unit::Bar),
                from,
                until,
                ..
            } => {
                let on_unit = *unit == Unit::Beat || index % bpb == 0;
                let after = from
                    .as_ref()
                    .is_none_or(|p| live_reached(p, index, t, bpb as u32));
                let before = until
                    .as_ref()
                    .is_none_or(|p| !live_reached(p, index, t, bpb as u32));
                (on_unit && after && before).then(|| match unit {
                    Unit::Bar => (index / bpb) as u32,
                    _ => index as u32,
                })
            }
            _ => None,
        };
        if let Some(rep) = fire {
            out.push(Event {
                frame,
                action: Action::Cue { cue: ci, rep },
            });
        }
    }
}

/// Events for an onset at `frame` (onset cues in range), numbered by `count`.
pub fn onset_events(track: &ShowTrack, frame: f64, count: u32, out: &mut Vec<Event>) {
    let t = frame / f64::from(track.sample_rate);
    for (ci, cue) in track.cues.iter().enumerate() {
        if let When::Every {
            unit: Unit::Onset,
            from,
            until,
            section,
        } = &cue.when
        {
            let time_of = |p: &Pos| match (p, &track.beatmap) {
                (Pos::Time(t), _) => Some(*t),
                (Pos::Bar { bar, beat }, Some(m)) => m.beat_time(*bar, *beat),
                (Pos::Bar { .. }, None) => None,
            };
            let after = from.as_ref().and_then(time_of).is_none_or(|lo| t >= lo);
            let before = until.as_ref().and_then(time_of).is_none_or(|hi| t < hi);
            let in_section = section.as_ref().is_none_or(|label| {
                track
                    .beatmap
                    .as_ref()
                    .and_then(|m| m.section_at(t))
                    .is_some_and(|s| s.label == *label)
            });
            if after && before && in_section {
                out.push(Event {
                    frame,
                    action: Action::Cue {
                        cue: ci,
                        rep: count,
                    },
                });
            }
        }
    }
}

/// The show's light state in show units (degrees, 0..=1), before per-vehicle adjustment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lights {
    /// Pattern.
    pub pattern: Pattern,
    /// Colour.
    pub color: Rgb,
    /// Hue, degrees (any value; wrapped on output).
    pub hue: f64,
    /// Brightness 0..=1.
    pub bright: f64,
    /// Speed 0..=255.
    pub speed: u8,
}

impl Default for Lights {
    /// The controller's power-on state.
    fn default() -> Self {
        let s = LedState::default();
        Lights {
            pattern: s.pattern,
            color: s.color,
            hue: f64::from(s.hue) * 360.0 / 256.0,
            bright: f64::from(s.bright) / 255.0,
            speed: s.speed,
        }
    }
}

impl Lights {
    /// Apply a (partial) look.
    pub fn apply(&mut self, look: &Look) {
        if let Some(p) = look.pattern {
            self.pattern = p;
        }
        if let Some(c) = look.color {
            self.color = c;
        }
        if let Some(h) = look.hue {
            self.hue = h;
        }
        if let Some(o) = look.hue_offset {
            self.hue += o;
        }
        if let Some(b) = look.bright {
            self.bright = b;
        }
        if let Some(s) = look.speed {
            self.speed = s;
        }
    }

    /// Fire a cue for this vehicle: its look, the vehicle's version of it, the hue step.
    pub fn fire(&mut self, show: &Show, cue: &Cue, vehicle: &VehicleInfo) {
        let mut look = cue.look;
        for (target, o) in &cue.overrides {
            if show.matches(target, vehicle) {
                look = look.merged(o);
            }
        }
        self.apply(&look);
        self.hue += cue.hue_step;
    }

    /// The controller state, after the vehicle's whole-show adjustment.
    pub fn to_led(&self, o: &VehicleOverride) -> LedState {
        let hue = (self.hue + o.hue_offset).rem_euclid(360.0);
        LedState {
            pattern: o.pattern.unwrap_or(self.pattern),
            hue: ((hue * 256.0 / 360.0).round() as u32 % 256) as u8,
            bright: ((self.bright * o.bright_scale).clamp(0.0, 1.0) * 255.0).round() as u8,
            speed: self.speed,
            color: self.color,
        }
    }
}

/// The look at track frame `frame`: the track's starting look, then every cue event at
/// or before it, in order. Used at track start and after seeks.
pub fn look_at(
    show: &Show,
    track: &ShowTrack,
    events: &[Event],
    frame: f64,
    vehicle: &VehicleInfo,
) -> (Lights, Option<usize>) {
    let mut lights = Lights::default();
    lights.apply(&track.look);
    let mut last = None;
    for e in events.iter().take_while(|e| e.frame <= frame) {
        if let Action::Cue { cue, .. } = e.action {
            if let Some(c) = track.cues.get(cue) {
                lights.fire(show, c, vehicle);
                last = Some(cue);
            }
        }
    }
    (lights, last)
}

/// The player's mapping between track frames and the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayClock {
    /// A track frame…
    pub position: f64,
    /// …heard at this monotonic time (ns).
    pub heard_at_ns: u64,
    /// Track frames per second.
    pub rate: u32,
    /// Playback speed adjustment, ppm.
    pub speed_ppm: f64,
}

impl PlayClock {
    fn frames_per_ns(&self) -> f64 {
        f64::from(self.rate.max(1)) * (1.0 + self.speed_ppm * 1e-6) * 1e-9
    }

    /// When `frame` will be (or was) heard, monotonic ns.
    pub fn heard_ns(&self, frame: f64) -> f64 {
        self.heard_at_ns as f64 + (frame - self.position) / self.frames_per_ns()
    }

    /// The frame heard at monotonic time `ns`.
    pub fn frame_at(&self, ns: u64) -> f64 {
        self.position + (ns as f64 - self.heard_at_ns as f64) * self.frames_per_ns()
    }
}

/// An event handed out by [`Scheduler::poll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Due {
    /// The event.
    pub event: Event,
    /// When it will be heard, monotonic ns.
    pub heard_ns: f64,
    /// It is already being heard later than `late_ns` ago (send its state, skip flashes).
    pub late: bool,
}

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Poll {
    /// Playback jumped (seek, hard resync, restart): the frame heard now. Events before it
    /// were skipped; the caller re-resolves the look with [`look_at`].
    pub jumped: Option<f64>,
    /// When the next event falls due, monotonic ns.
    pub next_due_ns: Option<u64>,
}

/// Hands out events `lead_ns` before they are heard.
#[derive(Debug, Clone)]
pub struct Scheduler {
    events: Vec<Event>,
    next: usize,
    lead_ns: f64,
    late_ns: f64,
    jump_s: f64,
    /// (now, frame heard then) at the last poll, to detect jumps.
    last: Option<(u64, f64)>,
}

impl Scheduler {
    /// A scheduler over sorted `events` that sends `lead_ns` early, calls an event late
    /// once it was heard more than `late_ns` ago, and treats a position change of more
    /// than `jump_s` seconds from the expected one as a jump.
    pub fn new(events: Vec<Event>, lead_ns: u64, late_ns: u64, jump_s: f64) -> Scheduler {
        Scheduler {
            events,
            next: 0,
            lead_ns: lead_ns as f64,
            late_ns: late_ns as f64,
            jump_s,
            last: None,
        }
    }

    /// All events (sorted).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Forget what was sent: the next event is the first after `frame`.
    pub fn seek(&mut self, frame: f64) {
        self.next = self.events.partition_point(|e| e.frame <= frame);
    }

    /// Add an event found later (live beats and onsets), keeping the order. Events before
    /// the next pending one are ignored: their moment has been handed out.
    pub fn insert(&mut self, event: Event) {
        if self
            .events
            .get(self.next.wrapping_sub(1))
            .is_some_and(|prev| event.frame < prev.frame)
        {
            return;
        }
        let i = self.next + self.events[self.next..].partition_point(|e| e.frame <= event.frame);
        self.events.insert(i, event);
    }

    /// Drop events already handed out, keeping memory bounded on long live tracks.
    pub fn compact(&mut self, keep: usize) {
        if self.next > keep * 2 {
            let cut = self.next - keep;
            self.events.drain(..cut);
            self.next -= cut;
        }
    }

    /// Hand out every event that is due at `now_ns` into `due`.
    pub fn poll(&mut self, clock: &PlayClock, now_ns: u64, due: &mut Vec<Due>) -> Poll {
        let mut result = Poll::default();
        let heard_now = clock.frame_at(now_ns);
        let jump_frames = self.jump_s * f64::from(clock.rate);
        match self.last {
            Some((then, frame_then)) => {
                let expected =
                    frame_then + (now_ns.saturating_sub(then)) as f64 * clock.frames_per_ns();
                if (heard_now - expected).abs() > jump_frames {
                    result.jumped = Some(heard_now);
                }
            }
            None => result.jumped = Some(heard_now),
        }
        self.last = Some((now_ns, heard_now));
        if result.jumped.is_some() {
            // Everything before the new position is history; the caller restores the look.
            self.seek(heard_now);
        }
        while let Some(e) = self.events.get(self.next) {
            let heard = clock.heard_ns(e.frame);
            if heard - self.lead_ns > now_ns as f64 {
                result.next_due_ns = Some((heard - self.lead_ns).max(0.0) as u64);
                break;
            }
            due.push(Due {
                event: *e,
                heard_ns: heard,
                late: heard < now_ns as f64 - self.late_ns,
            });
            self.next += 1;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::show::model::Show;
    use std::path::Path;

    fn demo_show(cues: &str) -> Show {
        let map = Path::new(env!("CARGO_MANIFEST_DIR")).join("beatmaps/demo.beatmap.json");
        let text = format!(
            "format = \"convoy-show\"\nversion = 1\n[groups]\nleft = [\"b2\"]\n\
             [[track]]\nfile = \"demo\"\nbeatmap = {:?}\nlook = {{ pattern = \"rainbow\" }}\n{cues}",
            map.display().to_string()
        );
        Show::parse(&text, Path::new("t.toml")).expect("valid show")
    }

    fn cue_events(ev: &[Event]) -> Vec<(f64, usize, u32)> {
        ev.iter()
            .filter_map(|e| match e.action {
                Action::Cue { cue, rep } => Some((e.frame, cue, rep)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn beatmap_cues_land_on_beats() {
        let show = demo_show(
            "[[track.cue]]\nat = \"bar 3 beat 2\"\npattern = \"chase\"\n\
             [[track.cue]]\nevery = \"bar\"\nfrom = \"bar 2\"\nuntil = \"bar 5\"\nflash = true\n\
             [[track.cue]]\nsection = \"A\"\nspeed = 9\n\
             [[track.cue]]\nevery = \"beat\"\nsection = \"intro\"\nhue_step = 10\n",
        );
        let t = &show.tracks[0];
        let map = t.beatmap.as_ref().expect("map");
        let rate = f64::from(t.sample_rate);
        let ev = resolve_beatmap(t);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e.action, Action::Beat { .. }))
                .count(),
            map.beats.len()
        );
        let cues = cue_events(&ev);
        let at = |bar, beat| map.beat_time(bar, beat).expect("beat") * rate;
        assert!(cues.contains(&(at(3, 2), 0, 0)));
        let bars: Vec<f64> = cues.iter().filter(|c| c.1 == 1).map(|c| c.0).collect();
        assert_eq!(bars, vec![at(2, 1), at(3, 1), at(4, 1)]);
        let a = map.section_by_label("A").expect("A").start_s * rate;
        assert!(cues.contains(&(a, 2, 0)));
        // The intro holds the first 8 beats (bars 1 and 2).
        assert_eq!(cues.iter().filter(|c| c.1 == 3).count(), 8);
        assert!(ev.windows(2).all(|w| w[0].frame <= w[1].frame));
    }

    #[test]
    fn the_look_folds_cues_and_vehicle_overrides() {
        let show = demo_show(
            "[[track.cue]]\nat = \"bar 2\"\npattern = \"chase\"\nhue = 100\n\
             [track.cue.for.left]\nhue = 200\n\
             [[track.cue]]\nat = \"bar 3\"\nhue_offset = 20\nbright = 0.5\n",
        );
        let t = &show.tracks[0];
        let ev = resolve_beatmap(t);
        let map = t.beatmap.as_ref().expect("map");
        let f3 = map.beat_time(3, 1).expect("bar 3") * f64::from(t.sample_rate);
        let b1 = VehicleInfo {
            id: "b1".into(),
            leader: true,
        };
        let b2 = VehicleInfo {
            id: "b2".into(),
            leader: false,
        };
        let (l1, last) = look_at(&show, t, &ev, f3, &b1);
        assert_eq!(
            (l1.pattern, l1.hue, l1.bright, last),
            (Pattern::Chase, 120.0, 0.5, Some(1))
        );
        let (l2, _) = look_at(&show, t, &ev, f3, &b2);
        assert_eq!(l2.hue, 220.0);
        let (before, last) = look_at(&show, t, &ev, f3 - 1.0, &b1);
        assert_eq!((before.hue, last), (100.0, Some(0)));
        let led = l2.to_led(&VehicleOverride {
            hue_offset: 180.0,
            bright_scale: 0.5,
            pattern: None,
        });
        assert_eq!((led.hue, led.bright), (28, 64)); // 400° → 40° → 28/256; 0.25 → 64
    }

    #[test]
    fn live_beats_fire_bar_cues() {
        let text = "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\n\
                    [[track.cue]]\nat = \"bar 2 beat 3\"\npattern = \"strobe\"\n\
                    [[track.cue]]\nevery = \"bar\"\nfrom = \"bar 2\"\nflash = true\n\
                    [[track.cue]]\nat = \"0:01.000\"\npattern = \"vu\"\n";
        let show = Show::parse(text, Path::new("t.toml")).expect("valid");
        let t = &show.tracks[0];
        assert_eq!(
            cue_events(&resolve_static(t)),
            vec![(f64::from(t.sample_rate), 2, 0)]
        );
        let mut out = Vec::new();
        live_beat_events(t, 6, 1000.0, &mut out); // bar 2 beat 3
        assert!(out
            .iter()
            .any(|e| e.action == Action::Cue { cue: 0, rep: 0 }));
        assert!(!out
            .iter()
            .any(|e| matches!(e.action, Action::Cue { cue: 1, .. })));
        out.clear();
        live_beat_events(t, 8, 2000.0, &mut out); // bar 3 beat 1
        assert_eq!(
            out[0].action,
            Action::Beat {
                index: 8,
                in_bar: 0
            }
        );
        assert!(out
            .iter()
            .any(|e| e.action == Action::Cue { cue: 1, rep: 2 }));
        out.clear();
        live_beat_events(t, 0, 0.0, &mut out); // bar 1: before `from`
        assert_eq!(out.len(), 1);
    }

    fn clock(position: f64, heard_at_ns: u64) -> PlayClock {
        PlayClock {
            position,
            heard_at_ns,
            rate: 1000,
            speed_ppm: 0.0,
        }
    }

    fn beat(frame: f64, index: u64) -> Event {
        Event {
            frame,
            action: Action::Beat { index, in_bar: 0 },
        }
    }

    #[test]
    fn events_are_handed_out_lead_ahead() {
        const MS: u64 = 1_000_000;
        // Frames are ms at rate 1000; lead 5 ms.
        let mut s = Scheduler::new(vec![beat(100.0, 0), beat(200.0, 1)], 5 * MS, 20 * MS, 0.05);
        let mut due = Vec::new();
        let c = clock(0.0, 1_000 * MS); // frame 0 heard at t = 1 s
        let p = s.poll(&c, 1_000 * MS, &mut due);
        assert_eq!(p.jumped, Some(0.0)); // the first poll positions the scheduler
        assert!(due.is_empty());
        assert_eq!(p.next_due_ns, Some(1_095 * MS));
        let p = s.poll(&c, 1_094 * MS, &mut due);
        assert!(due.is_empty() && p.jumped.is_none());
        s.poll(&c, 1_095 * MS, &mut due);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].heard_ns, (1_100 * MS) as f64);
        assert!(!due[0].late);
        // With speed +1e5 ppm (10 % fast) frame 200 is heard at 1 s + 200/1.1 ms.
        let fast = PlayClock {
            speed_ppm: 1e5,
            ..c
        };
        let heard = fast.heard_ns(200.0);
        assert!((heard - (1_000 * MS) as f64 - 200.0 / 1.1 * MS as f64).abs() < 1.0);
        assert!((fast.frame_at(heard as u64) - 200.0).abs() < 1e-3);
    }

    #[test]
    fn seeks_skip_history_and_are_reported() {
        const MS: u64 = 1_000_000;
        let events: Vec<Event> = (0..10).map(|i| beat(100.0 * i as f64, i)).collect();
        let mut s = Scheduler::new(events, 5 * MS, 20 * MS, 0.05);
        let mut due = Vec::new();
        s.poll(&clock(0.0, 0), 0, &mut due);
        due.clear();
        // Playing on: no jump, the event at 100 falls due.
        let p = s.poll(&clock(0.0, 0), 96 * MS, &mut due);
        assert_eq!((p.jumped, due.len()), (None, 1));
        due.clear();
        // Seek to frame 650 heard at 100 ms: a jump; 100..600 are skipped, 700 is next.
        let p = s.poll(&clock(650.0, 100 * MS), 100 * MS, &mut due);
        assert_eq!(p.jumped, Some(650.0));
        assert!(due.is_empty());
        assert_eq!(p.next_due_ns, Some(145 * MS)); // 700 heard at 150 ms
                                                   // A late event (heard 30 ms ago) is marked late.
        let mut s = Scheduler::new(vec![beat(100.0, 0)], 5 * MS, 20 * MS, 0.05);
        s.poll(&clock(0.0, 0), 0, &mut due);
        let p = s.poll(&clock(0.0, 0), 130 * MS, &mut due);
        assert_eq!(p.jumped, None);
        assert!(due.len() == 1 && due[0].late);
    }

    #[test]
    fn live_events_insert_in_order_and_compact() {
        const MS: u64 = 1_000_000;
        let mut s = Scheduler::new(Vec::new(), 0, 20 * MS, 0.05);
        s.insert(beat(300.0, 2));
        s.insert(beat(100.0, 0));
        s.insert(beat(200.0, 1));
        let frames: Vec<f64> = s.events().iter().map(|e| e.frame).collect();
        assert_eq!(frames, vec![100.0, 200.0, 300.0]);
        let mut due = Vec::new();
        s.poll(&clock(0.0, 0), 0, &mut due);
        s.poll(&clock(0.0, 0), 250 * MS, &mut due);
        assert_eq!(due.len(), 2);
        s.insert(beat(150.0, 9)); // its moment has passed: ignored
        assert_eq!(s.events().len(), 3);
        for i in 0..100 {
            s.insert(beat(400.0 + f64::from(i), 3));
        }
        s.poll(&clock(0.0, 0), 1_000 * MS, &mut due);
        s.compact(10);
        assert!(s.events().len() <= 20);
    }
}
