//! The show and its lights inside the node. With `[show] file` set, [`start`] loads the
//! show and spawns a [`ShowRunner`] on the node's player, driving `[led]`'s output as this
//! vehicle (the leader or a solo node is the `lead` bike). The runner reads positions
//! through [`FleetPosition`], so a follower's cues fire on fleet time. Light commands from the control surface
//! (pattern, hue, bright, colour, go, cue) go to the runner ([`control`]), and the show's
//! cue, light, meters and tempo go into the node's snapshot ([`snapshot`]). With
//! `[show] journal` set, the lights and the playback are logged for comparison between
//! bikes (`convoy demo`).

use std::sync::{Arc, Mutex};

use super::NodeError;
use crate::audio::Player;
use crate::clock::FleetClock;
use crate::config::{Config, Role};
use crate::control::{Command, Refusal, Snapshot};
use crate::live::LiveBus;
use crate::show::{journal, RunnerOptions, Show, ShowHandle, ShowRunner, VehicleInfo};
use crate::sync::pll::NetState;
use crate::sync::position::FleetPosition;

/// A running show in the node.
#[derive(Debug)]
pub struct NodeShow {
    handle: ShowHandle,
    /// Where the lights go (the console draws a simulated strip from it).
    led: crate::led::LedOutput,
    /// The show as loaded (cue names and numbers for `/cue/{n}/start`).
    show: Arc<Show>,
    /// A show file is loaded (else only the default look runs).
    loaded: bool,
    /// The playback log beside a journal.
    playback: Option<tokio::task::JoinHandle<()>>,
}

/// The playlist a leader or solo node plays when it was given none: the show's tracks.
pub fn playlist(show: &Show) -> Vec<String> {
    show.tracks.iter().map(|t| t.source.clone()).collect()
}

/// Start the lights: the configured show, or with `[show] file` empty none, so every track
/// gets `[led] default_look`. The runner posts into the node's live plane `live`. Must run
/// inside the node's tokio runtime (a serial LED output is a task on it).
pub fn start(
    config: &Config,
    player: &Arc<Player>,
    fleet: &FleetClock,
    net: &Arc<Mutex<NetState>>,
    live: &LiveBus,
    link: Option<crate::show::runner::LinkFollow>,
) -> Result<NodeShow, NodeError> {
    let file = &config.show.file;
    let failed = |why: String| NodeError::Track {
        track: file.clone(),
        why,
    };
    let show = if file.is_empty() {
        Arc::new(Show::empty())
    } else {
        Arc::new(Show::load(std::path::Path::new(file)).map_err(|e| failed(e.to_string()))?)
    };
    let mut opts = RunnerOptions::from_config(config);
    opts.live = Some(live.clone());
    opts.link = link;
    let mut playback = None;
    if !config.show.journal.is_empty() {
        let path = std::path::Path::new(&config.show.journal);
        opts.tap = Some(journal::spawn_writer(path).map_err(|e| failed(e.to_string()))?);
        let log = format!("{}.playback.csv", config.show.journal);
        let file = std::fs::File::create(&log).map_err(|e| failed(format!("{log}: {e}")))?;
        playback = Some(tokio::spawn(log_playback(player.clone(), file)));
    }
    let names = show
        .tracks
        .iter()
        .map(|t| (t.source.clone(), t.player_name.clone()))
        .collect();
    let position = FleetPosition::new(player.clone(), fleet.clone(), net.clone(), names);
    let vehicle = VehicleInfo {
        id: config.node_id(),
        leader: config.sync.role != Role::Follower,
    };
    tracing::info!(
        show = %show.name,
        tracks = show.tracks.len(),
        lead = vehicle.leader,
        "show started"
    );
    let led = crate::led::open_output(&config.led);
    let handle = ShowRunner::spawn(show.clone(), Arc::new(position), led.clone(), vehicle, opts);
    Ok(NodeShow {
        handle,
        led,
        show,
        playback,
        loaded: !file.is_empty(),
    })
}

/// Beside a journal, `<journal>.playback.csv`: what the player's books say was heard when
/// (`heard_at_ns,device_frame,ring_frame,track_frame`, the virtual sink's recording format,
/// device and ring frames 0), every 20 ms, so playback on several bikes playing real music
/// (no position pilot) can be compared with `sync::measure`. The books are exact to a
/// fraction of a frame against the pilot (`tests/playback.rs`).
async fn log_playback(player: Arc<Player>, file: std::fs::File) {
    use std::io::Write;
    let mut out = std::io::LineWriter::new(file);
    let _ = writeln!(out, "heard_at_ns,device_frame,ring_frame,track_frame");
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut last = 0;
    loop {
        tick.tick().await;
        let st = player.status();
        let Some(frame) = st.position.filter(|_| !st.paused && st.heard_at_ns != last) else {
            continue;
        };
        last = st.heard_at_ns;
        if writeln!(out, "{},0,0,{frame:.3}", st.heard_at_ns).is_err() {
            return;
        }
    }
}

/// Offer a command to the show: `Some(verdict)` when it is a show command (pattern, hue,
/// bright, colour, go, cue), `None` when the node should handle it.
pub fn control(show: Option<&NodeShow>, command: &Command) -> Option<Result<(), Refusal>> {
    let show = show?;
    if !show.loaded && matches!(command, Command::Go | Command::CueStart { .. }) {
        return Some(Err(Refusal::NoShow));
    }
    match show.handle.control(command) {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The cues a QLab-style `/cue/{n}/start` (and `/go`) fire, checked before the command is
/// shared with the fleet so that a typo is refused rather than warned about later: `/go`
/// needs a loaded show; `n` is a cue of the track playing now, by name or by its 1-based
/// number within the track, or a pattern (`*`, `{drop,chase}`, as QLab accepts cue-number
/// wildcards) over both. `Ok(vec![])` for a command that is not a cue.
pub fn cues(show: Option<&NodeShow>, command: &Command) -> Result<Vec<String>, Refusal> {
    let (Command::Go | Command::CueStart { .. }) = command else {
        return Ok(Vec::new());
    };
    let show = show.filter(|s| s.loaded).ok_or(Refusal::NoShow)?;
    let Command::CueStart { cue } = command else {
        return Ok(Vec::new());
    };
    let track = show
        .handle
        .status()
        .track
        .and_then(|i| show.show.tracks.get(i))
        .ok_or_else(|| Refusal::NoShowTrack(cue.clone()))?;
    let numbered = || track.cues.iter().enumerate().map(|(i, c)| (i + 1, c));
    let found: Vec<String> = if crate::osc::pattern::has_wildcards(cue) {
        let p = crate::osc::pattern::Pattern::compile(&format!("/{cue}"))
            .map_err(|e| Refusal::UnknownCue(cue.clone(), e.to_string()))?;
        numbered()
            .filter(|(n, c)| p.matches(&format!("/{}", c.name)) || p.matches(&format!("/{n}")))
            .map(|(_, c)| c.name.clone())
            .collect()
    } else if let Some(c) = track.cues.iter().find(|c| c.name == *cue) {
        vec![c.name.clone()]
    } else {
        numbered()
            .filter(|(n, _)| cue.parse::<usize>() == Ok(*n))
            .map(|(_, c)| c.name.clone())
            .collect()
    };
    if found.is_empty() {
        let names: Vec<&str> = track.cues.iter().map(|c| c.name.as_str()).collect();
        let known = if names.is_empty() {
            "it has none".to_string()
        } else {
            format!("its cues: {}", names.join(", "))
        };
        return Err(Refusal::UnknownCue(
            cue.clone(),
            format!("not in {} ({known})", track.source),
        ));
    }
    Ok(found)
}

/// The node's snapshot with the show's fields (show, cue, light, meters, tempo) filled in.
pub fn snapshot(show: Option<&NodeShow>, mut snap: Snapshot) -> Snapshot {
    if let Some(s) = show {
        s.handle.status().apply_to(&mut snap);
    }
    snap
}

/// Waits until the light the runner shows differs from `shown` (the snapshot's); never
/// returns without a runner or once it has stopped.
pub async fn light_changed(
    rx: &mut Option<tokio::sync::watch::Receiver<crate::show::ShowStatus>>,
    shown: &crate::control::LightState,
) {
    if let Some(rx) = rx {
        if rx.borrow_and_update().light != *shown {
            return;
        }
        while rx.changed().await.is_ok() {
            if rx.borrow_and_update().light != *shown {
                return;
            }
        }
    }
    std::future::pending().await
}

impl NodeShow {
    /// A receiver that wakes when the runner's status changes.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<crate::show::ShowStatus> {
        self.handle.watch()
    }

    /// Where the lights go.
    pub fn led(&self) -> &crate::led::LedOutput {
        &self.led
    }

    /// Stop the runner (the lights keep their last state; a journal is complete, since
    /// it is written line by line).
    pub fn stop(self) {
        self.handle.stop();
        if let Some(p) = self.playback {
            p.abort();
        }
    }
}
