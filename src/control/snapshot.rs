//! What a node is doing, as front ends show it: the [`Snapshot`] the node publishes after
//! every change and at the status interval (for humans, `convoy status` and journald; live
//! beats and levels travel on the live plane, not here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::live::LiveView;

/// Light state as the node last commanded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LightState {
    /// Pattern name (`rainbow`, `chase`, …).
    pub pattern: String,
    /// Hue, degrees.
    pub hue: u16,
    /// Brightness 0..=1.
    pub bright: f32,
    /// Solid colour, RGB.
    pub color: [u8; 3],
    /// LED link: `sim`, `connected`, `disconnected`, `none`.
    pub link: String,
}

/// Sync quality of this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// Estimated offset of the fleet clock from ours, ms.
    pub offset_ms: Option<f64>,
    /// Our clock's frequency error against the fleet, ppm.
    pub clock_ppm: Option<f64>,
    /// Last playback error against the timeline, ms.
    pub playback_error_ms: Option<f64>,
    /// Playback locked to the timeline.
    pub locked: bool,
    /// Verified bound on the error of the fleet clock estimate, ms (None: leading, or
    /// nothing verified): a lock is reported only under a bound (`sync::pll`).
    #[serde(default)]
    pub clock_bound_ms: Option<f64>,
}

/// A fleet peer as seen by this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerState {
    /// Vehicle id.
    pub id: String,
    /// Address it was heard from.
    pub addr: String,
    /// `leader`, `follower`, `solo`.
    pub role: String,
    /// Milliseconds since it was last heard.
    pub last_heard_ms: u64,
    /// Its playback error against the timeline (from its heartbeat), ms.
    pub playback_error_ms: Option<f64>,
    /// Software/protocol version.
    pub version: String,
}

/// This node's Ableton Link session (`[link]`, `docs/link.md`), as of the snapshot instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkState {
    /// `[link] mode`: `follow`, `lead` or `both`.
    pub mode: String,
    /// Our Link node id.
    pub node: String,
    /// The session we are in (its founder's node id; ours while we are alone).
    pub session: String,
    /// Other Link peers in our session.
    pub peers: usize,
    /// Their Link node ids (8 characters each), sorted.
    pub peer_ids: Vec<String>,
    /// Link peers heard in any session (ours or one not joined).
    pub heard: usize,
    /// Session tempo, BPM.
    pub tempo_bpm: f64,
    /// The snapshot instant `beat` and `phase` are taken at: `CLOCK_MONOTONIC`, ns (so a
    /// tool on the same machine can compare them with another peer's at that instant).
    pub at_mono_ns: u64,
    /// Fleet time (ns) of the same instant, once this node has one.
    pub at_fleet_ns: Option<i64>,
    /// Session beat at the snapshot instant.
    pub beat: f64,
    /// Beats into the quantum at the snapshot instant, `0 ≤ phase < quantum`.
    pub phase: f64,
    /// `[link] quantum`, beats.
    pub quantum: f64,
    /// The session's transport is playing (Link start/stop).
    pub playing: bool,
    /// Who set the session timeline last: `lead` (this bike) or `follow` (a peer).
    pub timeline: String,
    /// The node id of whoever set the timeline last (ours when `lead`).
    pub timeline_from: String,
    /// Milliseconds since a peer in our session was last heard (`None`: nobody is in it).
    pub last_heard_ms: Option<u64>,
}

/// Live music meters (beat counter and band levels) for lights and UIs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meters {
    /// Beats seen since the track started.
    pub beat: u64,
    /// Beat within the bar (1-based), when known.
    pub beat_in_bar: Option<u8>,
    /// Band levels 0..=1, low to high.
    pub bands: Vec<f32>,
}

/// What a node is doing, published after every change and at the status interval.
/// Missing fields read as their defaults, so `convoy status` can read older nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// This node's vehicle id.
    pub id: String,
    /// `leader`, `follower` or `solo`.
    pub role: String,
    /// The current leader's id, if any.
    pub leader: Option<String>,
    /// The fleet's election term (`sync.role = "auto"`; `None` with a fixed role).
    #[serde(default)]
    pub term: Option<u64>,
    /// Hierarchical mode: whom this node takes the timeline from (`None` when it leads,
    /// plays alone or has a fixed role).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Hierarchical mode: this node re-publishes the timeline (leader or sub-leader).
    #[serde(default)]
    pub publishes: bool,
    /// Track playing or loaded.
    pub track: Option<String>,
    /// Playing (not paused or stopped).
    pub playing: bool,
    /// Position heard now, ms.
    pub position_ms: Option<f64>,
    /// Track length, ms.
    pub duration_ms: Option<f64>,
    /// Tempo, when known.
    pub tempo_bpm: Option<f64>,
    /// Show loaded, if any.
    pub show: Option<String>,
    /// Last cue fired.
    pub cue: Option<String>,
    /// Lights.
    pub light: LightState,
    /// Sync quality.
    pub sync: SyncState,
    /// Known peers.
    pub peers: Vec<PeerState>,
    /// Meters.
    pub meters: Meters,
    /// Rejected-input counters by reason (security).
    pub rejected: BTreeMap<String, u64>,
    /// The Ableton Link session (`None`: Link is off).
    pub link: Option<LinkState>,
}

impl Snapshot {
    /// This snapshot with what moves with the music taken from the live plane `view`:
    /// position and length from the player's books at the view's instant, the last beat
    /// heard by then, the band levels and tempo. What the plane does not know is kept.
    pub fn live(mut self, view: &LiveView) -> Snapshot {
        if let (Some(books), Some(pos)) = (&view.books, view.position_ms) {
            if books.track.is_some() && self.track.is_some() {
                self.position_ms = Some(pos);
                if let Some(len) = books.frames {
                    self.duration_ms = Some(len as f64 / f64::from(books.rate.max(1)) * 1e3);
                }
            }
        }
        if let Some(beat) = view.beat {
            self.meters.beat = beat.number;
            self.meters.beat_in_bar = beat.in_bar;
        }
        if !view.bands.is_empty() {
            self.meters.bands.clone_from(&view.bands);
        }
        if view.tempo_bpm.is_some() {
            self.tempo_bpm = view.tempo_bpm;
        }
        self
    }
}
