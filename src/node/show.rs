//! The show and its lights inside the node. With `[show] file` set, [`start`] loads the
//! show and spawns a [`ShowRunner`] on the node's player, driving `[led]`'s output as this
//! vehicle (the leader or a solo node is the `lead` bike). The runner reads positions
//! through [`FleetPosition`]: on a follower that knows the fleet clock and timeline, the
//! heard position comes from the timeline ("frame F is heard at fleet time X") mapped
//! through its SNTP estimate, so its cues fire on fleet time — in step with the leader's
//! lights even while its own audio is still converging; otherwise (leader, solo, no lock
//! on the fleet clock yet) from the local player. Light commands from the control surface
//! (pattern, hue, bright, colour, go, cue) go to the runner ([`control`]), and the show's
//! cue, light, meters and tempo go into the node's snapshot ([`snapshot`]). With
//! `[show] journal` set, the lights and the playback are logged for comparison between
//! bikes (`convoy demo`).

use std::sync::{Arc, Mutex};

use super::NodeError;
use crate::audio::{Player, PlayerStatus};
use crate::clock::{mono_ns, FleetClock};
use crate::config::{Config, Role};
use crate::control::{Command, Refusal, Snapshot};
use crate::show::{journal, PlayerClock, RunnerOptions, Show, ShowHandle, ShowRunner, VehicleInfo};
use crate::sync::pll::NetState;

/// A running show in the node.
#[derive(Debug)]
pub struct NodeShow {
    handle: ShowHandle,
    /// The playback log beside a journal.
    playback: Option<tokio::task::JoinHandle<()>>,
}

/// The playlist a leader or solo node plays when it was given none: the show's tracks.
pub fn playlist(show: &Show) -> Vec<String> {
    show.tracks.iter().map(|t| t.source.clone()).collect()
}

/// Start the configured show (`None` when `[show] file` is empty). Must run inside the
/// node's tokio runtime (the runner and a serial LED output are tasks on it).
pub fn start(
    config: &Config,
    player: &Arc<Player>,
    fleet: &FleetClock,
    net: &Arc<Mutex<NetState>>,
) -> Result<Option<NodeShow>, NodeError> {
    let file = &config.show.file;
    if file.is_empty() {
        return Ok(None);
    }
    let failed = |why: String| NodeError::Track {
        track: file.clone(),
        why,
    };
    let show = Arc::new(Show::load(std::path::Path::new(file)).map_err(|e| failed(e.to_string()))?);
    let mut opts = RunnerOptions::from_config(config);
    let mut playback = None;
    if !config.show.journal.is_empty() {
        let path = std::path::Path::new(&config.show.journal);
        opts.tap = Some(journal::spawn_writer(path).map_err(|e| failed(e.to_string()))?);
        let log = format!("{}.playback.csv", config.show.journal);
        let file = std::fs::File::create(&log).map_err(|e| failed(format!("{log}: {e}")))?;
        playback = Some(tokio::spawn(log_playback(player.clone(), file)));
    }
    let position = FleetPosition {
        player: player.clone(),
        fleet: fleet.clone(),
        net: net.clone(),
        names: show
            .tracks
            .iter()
            .map(|t| (t.source.clone(), t.player_name.clone()))
            .collect(),
    };
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
    let handle = ShowRunner::spawn(show, Arc::new(position), led, vehicle, opts);
    Ok(Some(NodeShow { handle, playback }))
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
    match show?.handle.control(command) {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The node's snapshot with the show's fields (show, cue, light, meters, tempo) filled in.
pub fn snapshot(show: Option<&NodeShow>, mut snap: Snapshot) -> Snapshot {
    if let Some(s) = show {
        s.handle.status().apply_to(&mut snap);
    }
    snap
}

impl NodeShow {
    /// Stop the runner (the lights keep their last state; a journal is complete, since
    /// it is written line by line).
    pub fn stop(self) {
        self.handle.stop();
        if let Some(p) = self.playback {
            p.abort();
        }
    }
}

/// What the show runner sees as "the player": the local player's status, with the heard
/// position taken from the fleet timeline when this node follows one.
struct FleetPosition {
    player: Arc<Player>,
    /// Fleet time; its output latency says when the local player's frames are really
    /// heard (the timeline already includes it).
    fleet: FleetClock,
    net: Arc<Mutex<NetState>>,
    /// (show source, name the player reports) of every show track.
    names: Vec<(String, String)>,
}

impl FleetPosition {
    /// (frame heard at `now`, frames per second on this node's monotonic clock) from the
    /// timeline, when this node has a fleet clock estimate and plays the timeline's track.
    fn on_timeline(&self, st: &PlayerStatus, now: u64) -> Option<(f64, f64)> {
        // Only a follower with a clock estimate: a leader's own player is the timeline.
        self.fleet.estimate()?;
        let net = self.net.lock().ok()?;
        let timeline = net.timeline.as_ref()?;
        if !timeline.playing {
            return None;
        }
        let (_, name) = self.names.iter().find(|(src, _)| *src == timeline.track)?;
        if st.track.as_deref() != Some(name.as_str()) {
            return None;
        }
        let frame_at = |mono: u64| Some(timeline.frame_at(self.fleet.at_mono(mono)?));
        let here = frame_at(now)?;
        let per_s = frame_at(now + 1_000_000_000)? - here;
        (per_s > 0.0).then_some((here, per_s))
    }
}

impl PlayerClock for FleetPosition {
    fn status(&self) -> PlayerStatus {
        let mut st = self.player.status();
        let now = mono_ns();
        match self.on_timeline(&st, now) {
            Some((frame, per_s)) => {
                st.position = Some(frame);
                st.heard_at_ns = now;
                st.speed_ppm = (per_s / f64::from(st.track_rate.max(1)) - 1.0) * 1e6;
            }
            None => {
                st.heard_at_ns = st
                    .heard_at_ns
                    .saturating_add_signed(self.fleet.latency_ns());
            }
        }
        st
    }
}
