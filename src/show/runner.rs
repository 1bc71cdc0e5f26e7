//! The show runner: a tokio task that follows the local player and drives the lights.
//!
//! It reads the player's (position, heard_at_ns, rate, speed) mapping, resolves the cues
//! of whichever show track is playing ([`super::schedule`]), and sends each LED command
//! `[led] latency_ms` before its beat is heard. Beats are streamed to the controller,
//! band levels at `[show] bands_hz` (and through the track's audio-reactive mappings), and
//! a seek, restart or track change re-resolves the look at the new position. Because
//! cues are resolved against the local player, which the sync PLL keeps on the fleet
//! timeline, leader and followers fire on the same beat. Control-surface light commands
//! (pattern, hue, bright, colour) hold a manual look until `Go`; `CueStart` fires a cue
//! by name. The current cue and meters are published in a [`ShowStatus`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::live::{LiveBands, LiveFeed, LiveMsg};
use super::model::{ReactTarget, Show, ShowTrack, VehicleInfo, VehicleOverride};
use super::schedule::{
    live_beat_events, look_at, onset_events, resolve_beatmap, Action, Due, Lights, PlayClock,
    Scheduler,
};
use crate::audio::{Player, PlayerStatus};
use crate::clock::link::{FleetBeats, LinkTime};
use crate::clock::{mono_ns, FleetClock};
use crate::config::Config;
use crate::control::{Command, LightState, Meters, Refusal, Snapshot};
use crate::led::protocol::{Command as Led, LedState, Pattern, Rgb};
use crate::led::serial::LedError;
use crate::led::LedOutput;
use crate::live::{Beat, Books, LiveBus};

/// Anything that reports what the player hears when (the [`Player`], or a test double).
pub trait PlayerClock: Send + Sync + 'static {
    /// The player's current status.
    fn status(&self) -> PlayerStatus;

    /// How to open the track playing now (a path, `demo`), for live analysis of a track
    /// that is not in the show; `None`: only the show's own tracks are followed.
    fn source(&self) -> Option<String> {
        None
    }
}

impl PlayerClock for Player {
    fn status(&self) -> PlayerStatus {
        Player::status(self)
    }
}

/// One LED command the runner sent for a beat or cue (for tools and tests measuring timing).
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The command.
    pub command: Led,
    /// The cue, for cue commands.
    pub cue: Option<String>,
    /// When the beat or cue is heard, monotonic ns.
    pub heard_ns: f64,
    /// When the command was handed to the LED output, monotonic ns.
    pub sent_ns: u64,
    /// Handed out later than `[show] late_ms`.
    pub late: bool,
}

/// One command handed to the LED output: every command, not only beats and cues, so a
/// journal of them can replay the strip (`convoy demo` draws and measures from one).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handed {
    /// When it was handed over, monotonic ns (a simulated strip shows it at that moment).
    pub at_ns: u64,
    /// The command.
    pub command: Led,
    /// Cue commands: the cue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue: Option<String>,
    /// Beat and cue commands: when their beat is heard, monotonic ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_ns: Option<f64>,
}

/// Runner settings (from `[led]` and `[show]`).
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Commands are sent this early.
    pub led_latency: Duration,
    /// Band/reactive updates per second.
    pub bands_hz: f64,
    /// Live-analysis read-ahead, seconds.
    pub live_ahead_s: f64,
    /// Lateness after which flashes are skipped.
    pub late: Duration,
    /// Position error treated as a seek.
    pub jump: Duration,
    /// Every beat/cue command sent, if someone listens.
    pub trace: Option<std::sync::mpsc::Sender<Fired>>,
    /// Every command handed to the LED output, if someone listens (journals).
    pub tap: Option<std::sync::mpsc::Sender<Handed>>,
    /// The live plane to post the player's books, beats, levels and tempo into.
    pub live: Option<LiveBus>,
    /// Beats are announced on the live plane this long before they are heard.
    pub live_lead: Duration,
    /// The look of a track that is not in the show (`[led] default_look`): `None`, such a
    /// track gets no lights.
    pub default_look: Option<String>,
    /// `[link] mode = "follow"|"both"`: flash on the Link session's beats while the player
    /// plays nothing (or always).
    pub link: Option<LinkFollow>,
}

/// The Link beat the lights follow (`[link]`, `docs/link.md`): the fleet's grid, which the
/// bike that leads the fleet takes from its Link session and every bike gets with the
/// timeline, whether it hears Link or not; this bike's own session only while the fleet
/// shares none (its leader hears no Link).
#[derive(Debug, Clone)]
pub struct LinkFollow {
    /// The fleet's Link grid on fleet time (`src/fleet/link.rs`).
    pub fleet: watch::Receiver<Option<crate::fleet::link::Held>>,
    /// This bike's fleet time (puts the grid on its monotonic clock).
    pub clock: FleetClock,
    /// This bike's own Link peer, when `[link] mode` follows here.
    pub own: Option<OwnLink>,
}

/// This bike's own Link session, as `[link]` follows it.
#[derive(Debug, Clone)]
pub struct OwnLink {
    /// The Link peer's state.
    pub status: watch::Receiver<crate::link::LinkStatus>,
    /// Beats per bar.
    pub quantum: f64,
    /// Follow even while a track plays (`follow_link`).
    pub always: bool,
}

/// Where the Link beats fall on this bike's monotonic clock, now.
enum LinkBeats<'a> {
    /// The fleet's grid, through the fleet clock.
    Fleet(FleetBeats, &'a FleetClock),
    /// This bike's own Link view.
    Own(LinkTime),
}

impl LinkBeats<'_> {
    /// A beat's length, ns.
    fn period_ns(&self) -> f64 {
        match self {
            LinkBeats::Fleet(g, _) => g.ns_per_beat,
            LinkBeats::Own(t) => t.timeline.micros_per_beat as f64 * 1e3,
        }
    }

    /// Monotonic ns of session beat `beat`.
    fn mono_at(&self, beat: f64) -> Option<u64> {
        match self {
            LinkBeats::Fleet(g, clock) => g.mono_at_beat(beat, clock),
            LinkBeats::Own(t) => Some(t.mono_at_beat(beat)),
        }
    }

    /// The first whole beat after monotonic `mono`.
    fn next_beat(&self, mono: u64) -> Option<(i64, u64)> {
        match self {
            LinkBeats::Fleet(g, clock) => g.next_beat(mono, clock),
            LinkBeats::Own(t) => Some(t.next_beat(mono)),
        }
    }
}

impl LinkFollow {
    /// The beats to flash on at monotonic `now`, the quantum and whether to flash while a
    /// track plays: the fleet's fresh grid, else this bike's own session while it has
    /// peers, else none.
    fn beats(&self, now: u64) -> Option<(LinkBeats<'_>, f64, bool)> {
        if let Some(g) = self.fleet.borrow().and_then(|h| h.fresh(now)) {
            return Some((LinkBeats::Fleet(g.beats, &self.clock), g.quantum, g.always));
        }
        let own = self.own.as_ref()?;
        let st = own.status.borrow();
        (st.peers > 0).then(|| (LinkBeats::Own(st.time), own.quantum, own.always))
    }
}

impl RunnerOptions {
    /// Settings from the configuration.
    pub fn from_config(c: &Config) -> RunnerOptions {
        RunnerOptions {
            led_latency: Duration::from_secs_f64(c.led.latency_ms / 1000.0),
            bands_hz: c.show.bands_hz,
            live_ahead_s: c.show.live_ahead_s,
            late: Duration::from_secs_f64(c.show.late_ms / 1000.0),
            jump: Duration::from_secs_f64(c.show.jump_ms / 1000.0),
            trace: None,
            tap: None,
            live: None,
            live_lead: Duration::from_secs_f64(c.show.live_lead_ms / 1000.0),
            default_look: Some(c.led.default_look.clone()).filter(|l| !l.is_empty() && l != "off"),
            link: None,
        }
    }
}

/// What the show is doing, for the node's snapshot and the CLI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShowStatus {
    /// Show name.
    pub show: String,
    /// Index of the playlist track playing, if the player plays one of the show's.
    pub track: Option<usize>,
    /// Last cue fired (or restored after a seek).
    pub cue: Option<String>,
    /// Beat counter, beat in bar, band levels.
    pub meters: Meters,
    /// Tempo of the track at the heard position (beatmap), or the live estimate.
    pub tempo_bpm: Option<f64>,
    /// The lights as last sent.
    pub light: LightState,
    /// A manual look from the control surface is held (until `Go`).
    pub hold: bool,
    /// Beat and cue commands sent.
    pub sent: u64,
    /// Of which handed out late.
    pub late: u64,
    /// LED commands refused by a full queue (re-sent as a whole state).
    pub led_queue_full: u64,
}

impl ShowStatus {
    /// Copy the show's fields into a node snapshot (`show`, `cue`, `meters`, `light`,
    /// `tempo_bpm` when the show knows it).
    pub fn apply_to(&self, snap: &mut Snapshot) {
        snap.show = Some(self.show.clone()).filter(|s| !s.is_empty());
        snap.cue = self.cue.clone();
        snap.meters = self.meters.clone();
        snap.light = self.light.clone();
        if self.tempo_bpm.is_some() {
            snap.tempo_bpm = self.tempo_bpm;
        }
    }
}

#[derive(Debug, Clone)]
enum Control {
    Pattern(Pattern),
    Hue(f64),
    Bright(f64),
    Color(Rgb),
    Go,
    CueStart(String),
}

/// Handle to a running show.
#[derive(Debug)]
pub struct ShowHandle {
    control: mpsc::Sender<Control>,
    status: watch::Receiver<ShowStatus>,
    /// The runner's thread; it ends when `control` closes.
    task: Option<std::thread::JoinHandle<()>>,
}

impl ShowHandle {
    /// Offer a control-surface command. `Ok(true)`: the show took it (`Pattern`, `Hue`,
    /// `Bright`, `Color`, `Go`, `CueStart`); `Ok(false)`: not a show command, the node
    /// handles it.
    pub fn control(&self, cmd: &Command) -> Result<bool, Refusal> {
        let c = match cmd {
            Command::Pattern { name } => Control::Pattern(
                Pattern::from_name(name).ok_or_else(|| Refusal::UnknownPattern(name.clone()))?,
            ),
            Command::Hue { degrees } => Control::Hue(f64::from(*degrees)),
            Command::Bright { level } => Control::Bright(f64::from(level.clamp(0.0, 1.0))),
            Command::Color { r, g, b } => Control::Color(Rgb::new(*r, *g, *b)),
            Command::Go => Control::Go,
            Command::CueStart { cue } => Control::CueStart(cue.clone()),
            _ => return Ok(false),
        };
        self.control.try_send(c).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refusal::Busy("the show"),
            mpsc::error::TrySendError::Closed(_) => Refusal::ShowStopped,
        })?;
        Ok(true)
    }

    /// The latest status.
    pub fn status(&self) -> ShowStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on status changes.
    pub fn watch(&self) -> watch::Receiver<ShowStatus> {
        self.status.clone()
    }

    /// Stop the show (the lights keep their last state) and wait for its thread.
    pub fn stop(self) {
        drop(self.control);
        if let Some(t) = self.task {
            let _ = t.join();
        }
    }
}

/// Spawns show runners.
#[derive(Debug)]
pub struct ShowRunner;

impl ShowRunner {
    /// Run `show` against `player` on a thread of its own (its timing is precise to tens of
    /// µs, so it sleeps the last stretch before each event, which must not hold up a shared
    /// runtime), sending to `led` as `vehicle`. The runner follows whatever the player
    /// plays: it acts when the player's track is one of the show's (by the name the player
    /// reports), or gives any other track the default look. Must be called inside a tokio
    /// runtime (the LED output's serial link lives there).
    pub fn spawn<P: PlayerClock>(
        show: Arc<Show>,
        player: Arc<P>,
        led: LedOutput,
        vehicle: VehicleInfo,
        opts: RunnerOptions,
    ) -> ShowHandle {
        let (control_tx, control_rx) = mpsc::channel(32);
        let (status_tx, status) = watch::channel(ShowStatus {
            show: show.name.clone(),
            ..ShowStatus::default()
        });
        let runner = Runner::new(show, player, led, vehicle, opts, status_tx);
        let task = std::thread::Builder::new()
            .name("convoy-show".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(runner.run(control_rx)),
                    Err(e) => tracing::error!("the show runner cannot start: {e}"),
                }
            })
            .map_err(|e| tracing::error!("the show runner cannot start: {e}"))
            .ok();
        ShowHandle {
            control: control_tx,
            status,
            task,
        }
    }
}

/// How often the runner posts levels (and looks for beats to announce) on the live plane.
const LIVE_PERIOD_NS: u64 = 10_000_000;

/// Idle poll period (track changes, pause, status).
const IDLE: Duration = Duration::from_millis(20);

/// How late the tokio timer may fire (its resolution): the last stretch before an event
/// is waited out with [`wait_precisely`].
const TIMER_SLACK: Duration = Duration::from_micros(1_200);

/// Sleep until `deadline_ns` with the OS's precision (tens of µs), at most
/// [`TIMER_SLACK`]: the runner has its thread to itself, so nothing else waits.
fn wait_precisely(deadline_ns: u64) {
    crate::clock::sleep_until_mono(deadline_ns);
}

struct Active {
    index: usize,
    name: String,
    sched: Scheduler,
    /// The show's look (what cues made it), whatever is held.
    lights: Lights,
    live: Option<LiveFeed>,
    /// Live band levels from the heard hop to the newest.
    live_bands: LiveBands,
    /// Live beats seen: (reference frame, index) of the last, and the beat period in frames.
    live_ref: Option<(f64, u64)>,
    live_period: Option<f64>,
    onsets: u32,
    last_bands: Option<[u8; 3]>,
    next_bands_ns: u64,
    /// Band levels for the moment being lit and that moment (s), for reactive mappings.
    levels: Option<([f32; 3], f64)>,
    /// Beats up to this frame have been announced on the live plane.
    announced: f64,
}

struct Runner<P> {
    /// The show as loaded.
    base: Arc<Show>,
    /// The show followed now: `base`, or the default look of a track not in it.
    show: Arc<Show>,
    player: Arc<P>,
    led: LedOutput,
    vehicle: VehicleInfo,
    vo: VehicleOverride,
    opts: RunnerOptions,
    status: watch::Sender<ShowStatus>,
    active: Option<Active>,
    /// The controller state last handed over successfully.
    sent: Option<LedState>,
    /// A manual look from the control surface.
    hold: Option<Lights>,
    due: Vec<Due>,
    live_events: Vec<super::schedule::Event>,
    /// The last track the default look could not be made for (said once).
    default_failed: Option<String>,
    /// The next Link beat to flash on: its number and when it is heard (monotonic ns).
    link_next: Option<(i64, u64)>,
    /// When the last Link beat flashed was heard (monotonic ns).
    link_fired: Option<u64>,
}

impl<P: PlayerClock> Runner<P> {
    /// A runner that has done nothing yet: no cue active, nothing sent, nothing held.
    fn new(
        show: Arc<Show>,
        player: Arc<P>,
        led: LedOutput,
        vehicle: VehicleInfo,
        opts: RunnerOptions,
        status: watch::Sender<ShowStatus>,
    ) -> Runner<P> {
        Runner {
            base: show.clone(),
            vo: show.vehicle_override(&vehicle),
            show,
            player,
            led,
            vehicle,
            opts,
            status,
            active: None,
            sent: None,
            hold: None,
            due: Vec::new(),
            live_events: Vec::new(),
            default_failed: None,
            link_next: None,
            link_fired: None,
        }
    }

    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let mut wake = tokio::time::Instant::now();
        loop {
            tokio::select! {
                c = control.recv() => match c {
                    Some(c) => self.on_control(c),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            let mut next = self.step(mono_ns());
            // The tokio timer fires on its 1 ms tick, up to 1 ms after a deadline, which
            // made commands late by 0–1 ms (and bikes disagree by as much). So the timer
            // wakes the runner `TIMER_SLACK` early and the rest is slept precisely.
            // One reading: between two, `next` may pass and `next - now` underflow.
            while (1..=TIMER_SLACK.as_nanos() as u64).contains(&next.saturating_sub(mono_ns())) {
                wait_precisely(next);
                next = self.step(mono_ns());
            }
            let after =
                Duration::from_nanos(next.saturating_sub(mono_ns())).saturating_sub(TIMER_SLACK);
            wake = tokio::time::Instant::now() + after.min(IDLE);
        }
    }

    /// One pass: follow the player, hand out due events, stream bands. Returns when to
    /// run again (monotonic ns).
    fn step(&mut self, now: u64) -> u64 {
        let st = self.player.status();
        self.post_books(&st);
        self.follow_track(&st);
        let lead = self.opts.led_latency.as_nanos() as u64;
        let plays = st.position.is_some() && !st.paused && !st.finished;
        if let Some(at) = self.follow_link(now, plays) {
            return at;
        }
        let (Some(position), false, false) = (st.position, st.paused, st.finished) else {
            return now + IDLE.as_nanos() as u64;
        };
        if self.active.is_none() {
            return now + IDLE.as_nanos() as u64;
        }
        let clock = PlayClock {
            position,
            heard_at_ns: st.heard_at_ns,
            rate: st.track_rate.max(1),
            speed_ppm: st.speed_ppm,
        };
        self.drain_live(&clock, now);
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        let poll = match self.active.as_mut() {
            Some(a) => a.sched.poll(&clock, now, &mut due),
            None => return now + IDLE.as_nanos() as u64,
        };
        if let Some(frame) = poll.jumped {
            self.jumped(frame);
        }
        for d in &due {
            self.fire(d);
        }
        self.due = due;
        let announce_at = self.announce_beats(&clock, now);
        self.post_bands(&clock, now);
        let bands_at = self.stream_bands(&clock, now, lead);
        if let Some(a) = self.active.as_mut() {
            a.sched.compact(64);
        }
        self.publish(&clock, now);
        poll.next_due_ns
            .unwrap_or(u64::MAX)
            .min(bands_at)
            .min(announce_at)
    }

    /// `[link]` follow: while the player plays nothing (or always), hand the strip a beat
    /// flash `[led] latency_ms` before each Link beat is heard, as a beatmap's beat would
    /// be. `None`: not following now; else when to run again.
    fn follow_link(&mut self, now: u64, plays: bool) -> Option<u64> {
        let link = self.opts.link.as_ref()?;
        let Some((beats, q, _)) = link.beats(now).filter(|(_, _, a)| !plays || *a) else {
            self.link_next = None;
            return None;
        };
        let lead = self.opts.led_latency.as_nanos() as u64;
        let half = (beats.period_ns() / 2.0) as u64;
        // The beat planned, where the beats fall now (the grid is refreshed, and a
        // follower's clock estimate moves by µs); re-found when it moved by half a beat
        // or more (another session, a jump), never within half a beat of the last flash.
        let planned = self.link_next.and_then(|(n, was)| {
            let at = beats.mono_at(n as f64)?;
            (at.abs_diff(was) < half).then_some((n, at))
        });
        let next = planned.or_else(|| {
            let after = (now + lead).max(self.link_fired.map_or(0, |f| f + half));
            beats.next_beat(after)
        });
        let Some((n, at)) = next else {
            self.link_next = None;
            return None;
        };
        if now + lead < at {
            self.link_next = Some((n, at));
            return Some((at - lead).min(now + IDLE.as_nanos() as u64));
        }
        self.link_next = beats.mono_at((n + 1) as f64).map(|a| (n + 1, a));
        self.link_fired = Some(at);
        if now + lead > at + self.opts.late.as_nanos() as u64 {
            return Some(now + 1); // a stall: a flash this late is skipped, as a cue's would be
        }
        let in_bar = crate::link::timeline::phase(n as f64, q).floor() as u8;
        let cmd = Led::Beat {
            beat_in_bar: in_bar,
            strength: if in_bar == 0 { 255 } else { 160 },
        };
        self.status.send_modify(|s| {
            s.meters.beat = n.max(0) as u64;
            s.meters.beat_in_bar = Some(in_bar.saturating_add(1));
        });
        self.send_tagged(cmd, None, Some(at as f64));
        Some(now + 1)
    }

    /// Post the player's books on the live plane.
    fn post_books(&self, st: &PlayerStatus) {
        let Some(live) = &self.opts.live else { return };
        match (&st.track, st.position) {
            (Some(_), Some(frame)) => live.set_books(Books {
                track: st.track.clone(),
                frame,
                heard_at_ns: st.heard_at_ns,
                rate: st.track_rate,
                speed_ppm: st.speed_ppm,
                playing: !st.paused && !st.finished,
                frames: st.track_frames,
            }),
            (None, _) => live.clear(),
            _ => {}
        }
    }

    /// Announce on the live plane every beat heard within `live_lead` from now; returns
    /// when to look again.
    fn announce_beats(&mut self, clock: &PlayClock, now: u64) -> u64 {
        let lead = self.opts.live_lead.as_nanos() as u64;
        let (Some(live), Some(a)) = (&self.opts.live, self.active.as_mut()) else {
            return u64::MAX;
        };
        let horizon = clock.frame_at(now + lead);
        let events = a.sched.events();
        let from = events.partition_point(|e| e.frame <= a.announced);
        for e in &events[from..] {
            if e.frame > horizon {
                break;
            }
            if let Action::Beat { index, in_bar } = e.action {
                live.announce(Beat {
                    number: index + 1,
                    in_bar: Some(in_bar.saturating_add(1)),
                    heard_ns: clock.heard_ns(e.frame).max(0.0) as u64,
                });
            }
        }
        a.announced = a.announced.max(horizon);
        // Live beats arrive from the feed as it reads ahead, and the levels move: post
        // again soon.
        now + LIVE_PERIOD_NS
    }

    /// Post the band levels heard now on the live plane (the LED stream sends them at
    /// `bands_hz`, the plane carries them at every pass).
    fn post_bands(&self, clock: &PlayClock, now: u64) {
        let Some(live) = &self.opts.live else { return };
        let t = clock.frame_at(now) / f64::from(clock.rate.max(1));
        if let Some(levels) = self.bands_now(t) {
            live.set_bands(&levels);
        }
    }

    fn follow_track(&mut self, st: &PlayerStatus) {
        let name = st.track.as_deref();
        if self.active.as_ref().map(|a| a.name.as_str()) == name {
            return;
        }
        self.active = None;
        self.show = self.base.clone();
        if name.is_some_and(|n| self.base.track_by_player_name(n).is_none()) {
            if let Some(fallback) = self.default_show(name.unwrap_or_default()) {
                self.show = fallback;
            }
        }
        self.vo = self.show.vehicle_override(&self.vehicle);
        let show = self.show.clone();
        let Some((index, track)) = name.and_then(|n| show.track_by_player_name(n)) else {
            self.status.send_modify(|s| s.track = None);
            return;
        };
        let lead = self.opts.led_latency.as_nanos() as u64;
        let events = resolve_beatmap(track);
        tracing::info!(
            track = %track.player_name,
            events = events.len(),
            live = track.beatmap.is_none(),
            "show track"
        );
        let sched = Scheduler::new(
            events,
            lead,
            self.opts.late.as_nanos() as u64,
            self.opts.jump.as_secs_f64(),
        );
        let mut lights = Lights::default();
        lights.apply(&track.look);
        self.active = Some(Active {
            index,
            name: track.player_name.clone(),
            sched,
            lights,
            live: None,
            live_bands: Default::default(),
            live_ref: None,
            live_period: None,
            onsets: 0,
            last_bands: None,
            next_bands_ns: 0,
            levels: None,
            announced: f64::NEG_INFINITY,
        });
        self.status.send_modify(|s| {
            s.track = Some(index);
            s.cue = None;
            s.meters = Meters::default();
        });
        // The scheduler's first poll reports a jump, which sends the look and starts the
        // live feed at the heard position.
    }

    /// The default look for the track the player calls `name` (not in the show): a
    /// one-track show in `[led] default_look`'s pattern (the runner sends every beat to the
    /// strip, which `beatflash` flashes on) with brightness following the bass,
    /// on the track's beatmap beside it (`<file>.beatmap.json`, or `beatmaps/<file name>.beatmap.json`,
    /// or the older `beatmaps/<stem>.beatmap.json` when its content hash matches)
    /// or on live analysis. Opening the track to probe it is the runner thread's to wait on.
    fn default_show(&mut self, name: &str) -> Option<Arc<Show>> {
        let pattern = self.opts.default_look.clone()?;
        let source = self.player.source()?;
        if self.default_failed.as_deref() == Some(source.as_str()) {
            return None;
        }
        match default_look(&source, name, &pattern) {
            Ok(show) => {
                tracing::info!(track = %source, look = %pattern, "no show for this track: the default look");
                Some(Arc::new(show))
            }
            Err(e) => {
                tracing::warn!(track = %source, "no default look for this track: {e}");
                self.default_failed = Some(source);
                None
            }
        }
    }

    fn track(&self) -> Option<&ShowTrack> {
        self.active
            .as_ref()
            .and_then(|a| self.show.tracks.get(a.index))
    }

    /// Playback is at `frame` and did not get there by playing: restore the look there.
    fn jumped(&mut self, frame: f64) {
        let show = self.show.clone();
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(track) = show.tracks.get(a.index) else {
            return;
        };
        let (lights, last) = look_at(&show, track, a.sched.events(), frame, &self.vehicle);
        a.lights = lights;
        let beats = a
            .sched
            .events()
            .iter()
            .take_while(|e| e.frame <= frame)
            .filter(|e| matches!(e.action, Action::Beat { .. }))
            .count() as u64;
        a.announced = frame;
        if let Some(live) = &self.opts.live {
            live.retract_after(mono_ns());
        }
        let needs_live = track.beatmap.is_none() || track.needs_onsets();
        if needs_live {
            let ahead = (self.opts.live_ahead_s * f64::from(track.sample_rate)) as u64;
            a.live = LiveFeed::start(&track.source, frame.max(0.0) as u64, ahead)
                .map_err(|e| tracing::warn!(error = %e, "cannot start live analysis"))
                .ok();
            a.live_bands.clear();
        }
        let cue = last.and_then(|i| track.cues.get(i)).map(|c| c.name.clone());
        tracing::debug!(frame, ?cue, "show position jumped; look restored");
        self.status.send_modify(|s| {
            s.cue = cue;
            if track.beatmap.is_some() {
                s.meters.beat = beats;
            }
        });
        if self.hold.is_none() {
            self.send_lights(None, false);
        }
    }

    /// Move live-analysis results into the scheduler.
    fn drain_live(&mut self, clock: &PlayClock, now: u64) {
        let show = self.show.clone();
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(track) = show.tracks.get(a.index) else {
            return;
        };
        let Some(feed) = a.live.as_ref() else { return };
        let heard = clock.frame_at(now).max(0.0) as u64;
        feed.horizon
            .store(heard, std::sync::atomic::Ordering::Release);
        let live_beats = track.beatmap.is_none();
        let mut failed = false;
        self.live_events.clear();
        while let Ok(msg) = feed.rx.try_recv() {
            match msg {
                LiveMsg::Beat(f) if live_beats => {
                    let f = f as f64;
                    let index = match (a.live_ref, a.live_period) {
                        (Some((rf, ri)), Some(p)) if p > 0.0 => {
                            ri + ((f - rf) / p).round().max(1.0) as u64
                        }
                        (Some((_, ri)), _) => ri + 1,
                        (None, _) => 0,
                    };
                    if let Some((rf, _)) = a.live_ref {
                        a.live_period = Some(f - rf);
                    }
                    a.live_ref = Some((f, index));
                    live_beat_events(track, index, f, &mut self.live_events);
                }
                LiveMsg::Beat(_) => {}
                LiveMsg::Onset(f) => {
                    onset_events(track, f as f64, a.onsets, &mut self.live_events);
                    a.onsets += 1;
                }
                LiveMsg::Bands(f, b) => {
                    a.live_bands.push(f, b);
                }
                LiveMsg::Tempo(bpm) => {
                    if live_beats {
                        self.status
                            .send_modify(|s| s.tempo_bpm = Some(f64::from(bpm)));
                        if let Some(live) = &self.opts.live {
                            live.set_tempo(Some(f64::from(bpm)));
                        }
                    }
                }
                LiveMsg::Failed => failed = true,
            }
        }
        for e in self.live_events.drain(..) {
            a.sched.insert(e);
        }
        a.live_bands.heard(heard);
        if failed {
            a.live = None;
        }
    }

    fn fire(&mut self, d: &Due) {
        let show = self.show.clone();
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(track) = show.tracks.get(a.index) else {
            return;
        };
        match d.event.action {
            Action::Beat { index, in_bar } => {
                self.status.send_modify(|s| {
                    s.meters.beat = index + 1;
                    s.meters.beat_in_bar = Some(in_bar.saturating_add(1));
                });
                if !d.late {
                    let cmd = Led::Beat {
                        beat_in_bar: in_bar,
                        strength: if in_bar == 0 { 255 } else { 160 },
                    };
                    self.send_traced(cmd, None, d);
                }
            }
            Action::Cue { cue, .. } => {
                let Some(c) = track.cues.get(cue) else { return };
                a.lights.fire(&show, c, &self.vehicle);
                let name = c.name.clone();
                self.status.send_modify(|s| s.cue = Some(name.clone()));
                if self.hold.is_none() {
                    self.send_lights(Some((name.clone(), d)), false);
                }
                if c.flash && !d.late {
                    let cmd = Led::Beat {
                        beat_in_bar: 0,
                        strength: 255,
                    };
                    self.send_traced(cmd, Some(name), d);
                }
            }
        }
    }

    fn send_traced(&mut self, cmd: Led, cue: Option<String>, d: &Due) {
        // Only what reaches a controller counts as sent: not what a disconnected serial
        // link holds for its reconnect.
        let delivered = self.send_tagged(cmd, cue.clone(), Some(d.heard_ns));
        if delivered == Some(crate::led::serial::Delivery::Queued) {
            self.status.send_modify(|s| {
                s.sent += 1;
                s.late += u64::from(d.late);
            });
            if let Some(t) = &self.opts.trace {
                let _ = t.send(Fired {
                    command: cmd,
                    cue,
                    heard_ns: d.heard_ns,
                    sent_ns: mono_ns(),
                    late: d.late,
                });
            }
        }
    }

    /// Hand one command to the LED output without waiting.
    fn send(&mut self, cmd: Led) -> bool {
        self.send_tagged(cmd, None, None).is_some()
    }

    /// [`Self::send`] for a cue or beat (`heard_ns`: when its beat is heard).
    fn send_tagged(
        &mut self,
        cmd: Led,
        cue: Option<String>,
        heard_ns: Option<f64>,
    ) -> Option<crate::led::serial::Delivery> {
        match self.hand(cmd, cue, heard_ns) {
            Ok(d) => Some(d),
            Err(LedError::QueueFull { .. }) => {
                // A state command found the queue full: forget what was sent so the whole
                // state goes out with the next update.
                self.sent = None;
                self.status.send_modify(|s| s.led_queue_full += 1);
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "LED output refused a command");
                None
            }
        }
    }

    /// The one place commands reach the LED output; a delivered command goes to the tap.
    fn hand(
        &self,
        cmd: Led,
        cue: Option<String>,
        heard_ns: Option<f64>,
    ) -> Result<crate::led::serial::Delivery, LedError> {
        let delivered = self.led.try_send(cmd)?;
        if let Some(tap) = &self.opts.tap {
            let _ = tap.send(Handed {
                at_ns: mono_ns(),
                command: cmd,
                cue,
                heard_ns,
            });
        }
        Ok(delivered)
    }

    /// The state the controller should show now: the held or show look, the vehicle's
    /// adjustment, then the audio-reactive mappings with `bands` at `t` seconds.
    fn target_state(&self, bands: Option<([f32; 3], f64)>) -> Option<LedState> {
        let lights = self
            .hold
            .or_else(|| self.active.as_ref().map(|a| a.lights))?;
        let mut state = lights.to_led(&self.vo);
        let (Some((levels, t)), Some(track)) = (bands, self.track()) else {
            return Some(state);
        };
        let mut adjusted = lights;
        let mut any = false;
        for r in &track.react {
            let time_of = |p: &super::model::Pos| match p {
                super::model::Pos::Time(t) => Some(*t),
                super::model::Pos::Bar { bar, beat } => track
                    .beatmap
                    .as_ref()
                    .and_then(|m| m.beat_time(*bar, *beat)),
            };
            let after = r.from.as_ref().and_then(time_of).is_none_or(|lo| t >= lo);
            let before = r.until.as_ref().and_then(time_of).is_none_or(|hi| t < hi);
            if !(after && before) || self.hold.is_some() {
                continue;
            }
            let v = r.min + (r.max - r.min) * f64::from(levels[r.band].clamp(0.0, 1.0));
            match r.target {
                ReactTarget::Bright => adjusted.bright = v,
                ReactTarget::Hue => adjusted.hue = v,
            }
            any = true;
        }
        if any {
            state = adjusted.to_led(&self.vo);
        }
        Some(state)
    }

    /// Send the lights if they differ from what the controller has: one command when one
    /// field changed, the whole state otherwise. Reactive updates (`reactive`) skip
    /// changes smaller than `min_step` so a noisy band does not flood the acked link.
    fn send_lights(&mut self, cue: Option<(String, &Due)>, reactive: bool) {
        let levels = self.active.as_ref().and_then(|a| a.levels);
        let Some(target) = self.target_state(levels) else {
            return;
        };
        let cmd = match self.sent {
            None => Some(Led::State(target)),
            Some(prev) => diff(&prev, &target, reactive),
        };
        let Some(cmd) = cmd else { return };
        let ok = match cue {
            Some((name, d)) => {
                let before = self.status.borrow().sent;
                self.send_traced(cmd, Some(name), d);
                self.status.borrow().sent > before
            }
            None => self.send(cmd),
        };
        if ok {
            self.sent = Some(target);
            let hue = self.shown_hue();
            self.status
                .send_modify(|s| s.light = light_state(&target, hue, &self.led));
        }
    }

    /// The hue shown, in whole degrees as commanded (the controller's byte loses a degree
    /// in three).
    fn shown_hue(&self) -> u16 {
        let lights = self.hold.or_else(|| self.active.as_ref().map(|a| a.lights));
        let deg = lights.map_or(0.0, |l| l.hue) + self.vo.hue_offset;
        (deg.rem_euclid(360.0).round() as u16) % 360
    }

    fn bands_now(&self, t: f64) -> Option<[f32; 3]> {
        let a = self.active.as_ref()?;
        let track = self.show.tracks.get(a.index)?;
        if let Some(map) = &track.beatmap {
            let v = map.envelope_at(t);
            return Some([
                v.first().copied().unwrap_or(0.0),
                v.get(1).copied().unwrap_or(0.0),
                v.get(2).copied().unwrap_or(0.0),
            ]);
        }
        let frame = (t * f64::from(track.sample_rate)) as u64;
        a.live_bands.at(frame)
    }

    /// Stream band levels for the moment heard `lead` from now; returns the next time.
    fn stream_bands(&mut self, clock: &PlayClock, now: u64, lead: u64) -> u64 {
        let period = (1e9 / self.opts.bands_hz.max(1.0)) as u64;
        let Some(a) = self.active.as_mut() else {
            return now + period;
        };
        if now < a.next_bands_ns {
            return a.next_bands_ns;
        }
        a.next_bands_ns = now + period;
        let next = a.next_bands_ns;
        let rate = f64::from(clock.rate.max(1));
        let t = clock.frame_at(now + lead) / rate;
        let Some(levels) = self.bands_now(t) else {
            return next;
        };
        let q = levels.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
        let changed = self.active.as_mut().is_some_and(|a| {
            a.levels = Some((levels, t));
            let changed = a.last_bands != Some(q);
            a.last_bands = Some(q);
            changed
        });
        if changed {
            let _ = self.hand(Led::Bands3(q), None, None);
        }
        self.status
            .send_modify(|s| s.meters.bands = levels.to_vec());
        if self.track().is_some_and(|tr| !tr.react.is_empty()) && self.hold.is_none() {
            self.send_lights(None, true);
        }
        next
    }

    fn publish(&mut self, clock: &PlayClock, now: u64) {
        let Some(track) = self.track() else { return };
        if let Some(map) = &track.beatmap {
            let t = clock.frame_at(now) / f64::from(clock.rate.max(1));
            let bpm = map.tempo_at(t);
            if let Some(live) = &self.opts.live {
                live.set_tempo(Some(bpm));
            }
            self.status.send_if_modified(|s| {
                let changed = s.tempo_bpm != Some(bpm);
                s.tempo_bpm = Some(bpm);
                changed
            });
        }
    }

    fn on_control(&mut self, c: Control) {
        let base = self
            .hold
            .or_else(|| self.active.as_ref().map(|a| a.lights))
            .unwrap_or_default();
        let mut manual = base;
        match c {
            Control::Pattern(p) => manual.pattern = p,
            Control::Hue(h) => manual.hue = h - self.vo.hue_offset,
            Control::Bright(b) => manual.bright = b,
            Control::Color(rgb) => manual.color = rgb,
            Control::Go => {
                self.hold = None;
                self.status.send_modify(|s| s.hold = false);
                self.send_lights(None, false);
                return;
            }
            Control::CueStart(name) => {
                let show = self.show.clone();
                let vehicle = self.vehicle.clone();
                let found = self.active.as_mut().and_then(|a| {
                    let track = show.tracks.get(a.index)?;
                    let cue = track.cues.iter().find(|c| c.name == name)?;
                    a.lights.fire(&show, cue, &vehicle);
                    Some(cue.name.clone())
                });
                match found {
                    Some(cue) => {
                        self.hold = None;
                        self.status.send_modify(|s| {
                            s.hold = false;
                            s.cue = Some(cue);
                        });
                        self.send_lights(None, false);
                    }
                    None => tracing::warn!(cue = %name, "no such cue in the playing track"),
                }
                return;
            }
        }
        self.hold = Some(manual);
        self.status.send_modify(|s| s.hold = true);
        self.send_lights(None, false);
    }
}

/// The command that turns `prev` into `next`: nothing, one field, or the whole state.
/// With `reactive`, brightness/hue moves of less than 4 steps are ignored.
fn diff(prev: &LedState, next: &LedState, reactive: bool) -> Option<Led> {
    let close = |a: u8, b: u8| reactive && a.abs_diff(b) < 4;
    let mut changes = Vec::with_capacity(5);
    if prev.pattern != next.pattern {
        changes.push(Led::Pattern(next.pattern));
    }
    if prev.hue != next.hue && !close(prev.hue, next.hue) {
        changes.push(Led::Hue(next.hue));
    }
    if prev.bright != next.bright && !close(prev.bright, next.bright) {
        changes.push(Led::Bright(next.bright));
    }
    if prev.speed != next.speed {
        changes.push(Led::Speed(next.speed));
    }
    if prev.color != next.color {
        changes.push(Led::Color(next.color));
    }
    match changes.len() {
        0 => None,
        1 => changes.pop(),
        _ => Some(Led::State(*next)),
    }
}

fn light_state(s: &LedState, hue: u16, led: &LedOutput) -> LightState {
    LightState {
        pattern: s.pattern.name().to_string(),
        hue,
        bright: f32::from(s.bright) / 255.0,
        color: [s.color.r, s.color.g, s.color.b],
        link: led.link_label().to_string(),
    }
}

/// The default look as a one-track show for `source` (the player calls it `name`).
fn default_look(source: &str, name: &str, pattern: &str) -> Result<Show, String> {
    if Pattern::from_name(pattern).is_none() {
        return Err(format!("led.default_look: unknown pattern {pattern:?}"));
    }
    let path = std::path::Path::new(source);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    let file_name = path.file_name().and_then(|s| s.to_str()).unwrap_or(name);
    let beside = format!("{source}.beatmap.json");
    let shared = format!("beatmaps/{file_name}.beatmap.json");
    // The name `convoy analyze` used to write; shared by `song.flac` and `song.ogg`, so the
    // show loader's content_hash check decides whether it belongs to this file.
    let legacy = format!("beatmaps/{stem}.beatmap.json");
    let beatmap = [beside, shared, legacy]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .map(|p| format!("beatmap = {p:?}\n"))
        .unwrap_or_default();
    let text = format!(
        "format = \"convoy-show\"\nversion = 1\nname = \"default look\"\n\
         [[track]]\nfile = {source:?}\n{beatmap}\
         look = {{ pattern = {pattern:?}, hue = 200, bright = 0.8 }}\n\
         [[track.react]]\nband = \"low\"\nto = \"bright\"\nmin = 0.35\nmax = 1.0\n"
    );
    let cwd = std::env::current_dir().unwrap_or_default();
    Show::parse(&text, &cwd.join("default-look.toml")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_sends_one_field_or_the_whole_state() {
        let a = LedState::default();
        assert_eq!(diff(&a, &a, false), None);
        let b = LedState {
            hue: a.hue.wrapping_add(2),
            ..a
        };
        assert_eq!(diff(&a, &b, false), Some(Led::Hue(b.hue)));
        assert_eq!(diff(&a, &b, true), None);
        let c = LedState {
            pattern: Pattern::Chase,
            bright: 7,
            ..a
        };
        assert_eq!(diff(&a, &c, false), Some(Led::State(c)));
    }

    /// A player that plays nothing.
    struct Idle;

    impl PlayerClock for Idle {
        fn status(&self) -> PlayerStatus {
            PlayerStatus::default()
        }
    }

    fn idle_runner(link: LinkFollow, tap: std::sync::mpsc::Sender<Handed>) -> Runner<Idle> {
        let show = Arc::new(Show::empty());
        let vehicle = VehicleInfo {
            id: "b".into(),
            leader: false,
        };
        let mut opts = RunnerOptions::from_config(&Config::builtin().expect("built-in config"));
        opts.led_latency = Duration::from_millis(20);
        opts.late = Duration::from_millis(50);
        opts.tap = Some(tap);
        opts.link = Some(link);
        Runner::new(
            show,
            Arc::new(Idle),
            LedOutput::sim(8),
            vehicle,
            opts,
            watch::channel(ShowStatus::default()).0,
        )
    }

    /// Step the runner from `from` to `to` (monotonic ns, simulated) at each wake it asks
    /// for; the beats it flashed: (beat in bar, heard at).
    fn run(
        r: &mut Runner<Idle>,
        rx: &std::sync::mpsc::Receiver<Handed>,
        from: u64,
        to: u64,
    ) -> Vec<(u8, u64)> {
        let mut now = from;
        while now < to {
            now = r.step(now).max(now + 1);
        }
        rx.try_iter()
            .filter_map(|h| match h.command {
                Led::Beat { beat_in_bar, .. } => Some((beat_in_bar, h.heard_ns? as u64)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_bike_flashes_on_the_fleets_link_grid_and_its_own_session_only_without_one() {
        use crate::clock::LocalClock;
        use crate::fleet::link::{FleetLink, Grid};
        // This bike's fleet time is its monotonic clock + 1 s (as an estimate of the
        // leader's would be); the grid: beat 100 at fleet 11 s, 120 BPM, quantum 4.
        let clock = FleetClock::own(LocalClock {
            offset_ns: 1_000_000_000,
            ..LocalClock::IDEAL
        });
        let shared = FleetLink::default();
        let grid = |fleet_ns| Grid {
            beats: FleetBeats {
                beat: 100.0,
                fleet_ns,
                ns_per_beat: 500_000_000.0,
            },
            quantum: 4.0,
            always: false,
        };
        // This bike's own Link view: another phase (beat 0 at mono 0.1 s, 100 BPM).
        let own = watch::channel(crate::link::LinkStatus {
            peers: 1,
            time: LinkTime {
                timeline: crate::link::Timeline {
                    micros_per_beat: 600_000,
                    beat_origin: 0,
                    time_origin: 100_000,
                },
                ..LinkTime::default()
            },
            ..Default::default()
        });
        let (tap, rx) = std::sync::mpsc::channel();
        let mut r = idle_runner(
            LinkFollow {
                fleet: shared.watch(),
                clock: clock.clone(),
                own: Some(OwnLink {
                    status: own.1,
                    quantum: 4.0,
                    always: false,
                }),
            },
            tap,
        );
        // Mono 10 s = fleet 11 s = beat 100 (a downbeat).
        shared.set(Some(grid(11_000_000_000)), 9_000_000_000);
        let fleet_beats = run(&mut r, &rx, 9_000_000_000, 11_100_000_000);
        // The first beat after the LED lead is 99 at mono 9.5 s.
        let want: Vec<(u8, u64)> = (0..4)
            .map(|i| (((99 + i) % 4) as u8, 9_500_000_000 + i as u64 * 500_000_000))
            .collect();
        assert_eq!(fleet_beats, want, "the grid's beats, the own view ignored");
        // The grid heard again a few µs off (the leader's re-measured ghost time): no beat
        // twice or lost.
        shared.hear(&[grid(11_000_004_000).to_osc()], 11_100_000_000);
        let beats = run(&mut r, &rx, 11_100_000_000, 12_100_000_000);
        let at: Vec<u64> = beats.iter().map(|b| b.1).collect();
        assert_eq!(at, [11_500_004_000, 12_000_004_000]);
        // The fleet shares no grid any more: this bike's own session (100 BPM, beat b at
        // mono 0.1 s + 0.6 s·b), its first beat at least half a beat after the last flash.
        shared.hear(&[], 12_100_000_000);
        let beats = run(&mut r, &rx, 12_100_000_000, 13_400_000_000);
        assert_eq!(beats, [(1, 12_700_000_000), (2, 13_300_000_000)]);
    }
}
