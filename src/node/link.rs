//! Ableton Link in the node (`[link]`, `docs/link.md`): the node joins the Link session on
//! its network. *Follow* (`mode = "follow"`/`"both"`): while this bike leads the fleet (or
//! plays alone) and the player plays nothing, or always with `follow_link`, it puts the
//! session's beats on fleet time and shares them with the fleet ([`FleetLink`], sent with
//! every timeline, at once when they move); every bike's show runner flashes on that grid
//! through its own fleet clock, so the fleet flashes on the Link beat to the fleet's light
//! agreement, bikes without Link included. A follower's own session is flashed on only
//! while the fleet shares no grid ([`NodeLink::follow`]). *Lead* (`"lead"`/`"both"`): while a track plays, the tempo and beat the
//! runner posts on the live plane (beatmap or live analysis) become the session timeline,
//! re-published only when the session drifts from the music by more than 2 ms or 0.01 BPM
//! (so bikes that play in sync leave it to whoever moved first), and the transport follows
//! playing. *Status*: [`LinkReport`] turns the session into the snapshot's
//! [`LinkState`] (peers, tempo, phase, transport, who set the timeline) for `convoy status`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::link::FleetBeats;
use crate::clock::{mono_ns, Basis, FleetClock};
use crate::config::{LinkConfig, LinkMode};
use crate::control::LinkState;
use crate::fleet::lights::FleetLights;
use crate::fleet::link::{FleetLink, Grid};
use crate::link::{show_id, LinkControl, LinkPeer, LinkSockets, LinkStatus};
use crate::live::LiveBus;
use crate::show::runner::OwnLink;

/// The node's Link peer and its lead and share tasks.
#[derive(Debug)]
pub struct NodeLink {
    peer: LinkPeer,
    config: LinkConfig,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the Link tasks share the session with: the node's live plane, fleet clock, the
/// fleet's shared state (the grid goes with the light state) and the publisher's wake-up.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The live plane (the music's beats, the player's books).
    pub live: LiveBus,
    /// Fleet time; its basis says whether this bike leads (or plays alone).
    pub clock: FleetClock,
    /// The fleet's light state, which carries the Link grid.
    pub lights: Arc<FleetLights>,
    /// Wakes the timeline publisher (a moved grid goes out at once).
    pub wake: Arc<Notify>,
}

/// Join Link when `[link] enabled`; a socket failure is logged and Link stays off.
pub fn start(config: &LinkConfig, fleet: &Fleet) -> Option<NodeLink> {
    if !config.enabled {
        return None;
    }
    let peer = match LinkSockets::bind(Ipv4Addr::UNSPECIFIED)
        .and_then(|s| LinkPeer::spawn(s, config.bpm))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("{e}; Link is off");
            return None;
        }
    };
    tracing::info!(mode = ?config.mode, quantum = config.quantum, "link: joined the network");
    let mut tasks = Vec::new();
    if matches!(config.mode, LinkMode::Lead | LinkMode::Both) {
        tasks.push(tokio::spawn(lead(
            peer.control(),
            peer.watch(),
            fleet.live.clone(),
            config.clone(),
        )));
    }
    if matches!(config.mode, LinkMode::Follow | LinkMode::Both) {
        tasks.push(tokio::spawn(share(
            peer.watch(),
            fleet.clone(),
            config.clone(),
        )));
    }
    Some(NodeLink {
        peer,
        config: config.clone(),
        tasks,
    })
}

impl NodeLink {
    /// This bike's own session for the show runner, in follow mode (flashed on only while
    /// the fleet shares no grid).
    pub fn follow(&self) -> Option<OwnLink> {
        matches!(self.config.mode, LinkMode::Follow | LinkMode::Both).then(|| OwnLink {
            status: self.peer.watch(),
            quantum: self.config.quantum,
            always: self.config.follow_link,
        })
    }

    /// The session now.
    pub fn status(&self) -> LinkStatus {
        self.peer.status()
    }

    /// What the node's snapshot shows of the session (outlives the peer: reads as the
    /// session last stood).
    pub fn report(&self) -> LinkReport {
        LinkReport {
            status: self.peer.watch(),
            mode: self.config.mode,
            quantum: self.config.quantum,
        }
    }

    /// Leave the session (ByeBye).
    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        self.peer.shutdown().await;
    }
}

/// The session as the node's snapshot shows it.
#[derive(Debug, Clone)]
pub struct LinkReport {
    status: tokio::sync::watch::Receiver<LinkStatus>,
    mode: LinkMode,
    quantum: f64,
}

impl LinkReport {
    /// The session at monotonic `now_ns` (fleet time `fleet_ns`).
    pub fn state(&self, now_ns: u64, fleet_ns: Option<i64>) -> LinkState {
        LinkState {
            at_fleet_ns: fleet_ns,
            ..state_of(&self.status.borrow(), self.mode, self.quantum, now_ns)
        }
    }
}

/// `status` at monotonic `now_ns` as the snapshot shows it.
fn state_of(status: &LinkStatus, mode: LinkMode, quantum: f64, now_ns: u64) -> LinkState {
    let mode = match mode {
        LinkMode::Follow => "follow",
        LinkMode::Lead => "lead",
        LinkMode::Both => "both",
    };
    LinkState {
        mode: mode.into(),
        node: show_id(&status.node),
        session: show_id(&status.session),
        peers: status.peers,
        peer_ids: status.peer_ids.iter().map(show_id).collect(),
        heard: status.heard,
        at_mono_ns: now_ns,
        at_fleet_ns: None,
        tempo_bpm: status.time.bpm(),
        beat: status.time.beat_at_mono(now_ns),
        phase: status.time.phase_at_mono(now_ns, quantum),
        quantum,
        playing: status.start_stop.playing,
        timeline: if status.leads() { "lead" } else { "follow" }.into(),
        timeline_from: show_id(&status.tempo_from),
        last_heard_ms: status
            .last_heard_ns
            .map(|at| now_ns.saturating_sub(at) / 1_000_000),
    }
}

/// Session beat minus music beat at the same instant, wrapped into `[-q/2, q/2)`.
fn phase_error(session: f64, music: f64, quantum: f64) -> f64 {
    let d = (session - music).rem_euclid(quantum);
    if d >= quantum / 2.0 {
        d - quantum
    } else {
        d
    }
}

/// The grid this bike shares while it leads the fleet or plays alone, at monotonic `now`:
/// the session's beats on fleet time while it has peers and the player plays nothing (or
/// always, with `follow_link`); `None` otherwise.
fn grid_of(
    st: &LinkStatus,
    playing: bool,
    c: &LinkConfig,
    clock: &FleetClock,
    now: u64,
) -> Option<Grid> {
    if st.peers == 0 || (playing && !c.follow_link) {
        return None;
    }
    Some(Grid {
        beats: FleetBeats::of(&st.time, now, clock)?,
        quantum: c.quantum,
        always: c.follow_link,
    })
}

/// Follow: while this bike leads the fleet (its fleet clock is its own), share the
/// session's grid every 50 ms; the publisher sends it at once when it moved. A follower
/// leaves the grid to its upstream.
async fn share(status: tokio::sync::watch::Receiver<LinkStatus>, fleet: Fleet, c: LinkConfig) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let link: &FleetLink = fleet.lights.link();
    loop {
        tick.tick().await;
        if !matches!(fleet.clock.basis().0, Basis::Own(_)) {
            continue;
        }
        let now = mono_ns();
        let playing = fleet
            .live
            .view(now)
            .books
            .as_ref()
            .is_some_and(|b| b.playing);
        let grid = grid_of(&status.borrow(), playing, &c, &fleet.clock, now);
        if link.set(grid, now) {
            fleet.wake.notify_one();
        }
    }
}

async fn lead(
    ctl: LinkControl,
    status: tokio::sync::watch::Receiver<LinkStatus>,
    live: LiveBus,
    c: LinkConfig,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut was_playing = false;
    loop {
        tick.tick().await;
        let view = live.view(mono_ns());
        let playing = view.books.as_ref().is_some_and(|b| b.playing) && !c.follow_link;
        let st = status.borrow().clone();
        if playing != was_playing {
            was_playing = playing;
            ctl.set_playing(playing);
        }
        let (true, Some(bpm), Some(beat)) = (playing, view.tempo_bpm, view.beat) else {
            continue;
        };
        let music = match beat.in_bar {
            Some(b) => f64::from(b.saturating_sub(1)),
            None => beat.number.saturating_sub(1) as f64,
        };
        let err = phase_error(st.time.beat_at_mono(beat.heard_ns), music, c.quantum);
        if (st.time.bpm() - bpm).abs() > 0.01 || (err * 60e3 / bpm).abs() > 2.0 {
            ctl.set_beat(bpm, music, beat.heard_ns, c.quantum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_shows_the_session_at_its_instant() {
        use crate::clock::link::LinkTime;
        use crate::link::wire::Timeline;
        // 120 BPM, beat 0 at ghost 0, ghost = host: beat 9.5 at mono 4.75 s.
        let status = LinkStatus {
            node: *b"ourNode1",
            session: *b"aalinkSs",
            peers: 1,
            peer_ids: vec![*b"aalinkSs"],
            heard: 1,
            time: LinkTime {
                timeline: Timeline::founding(120.0),
                ..LinkTime::default()
            },
            start_stop: crate::link::StartStop {
                playing: true,
                ..Default::default()
            },
            tempo_from: *b"aalinkSs",
            last_heard_ns: Some(4_500_000_000),
            ..LinkStatus::default()
        };
        let s = state_of(&status, LinkMode::Both, 4.0, 4_750_000_000);
        assert_eq!((s.mode.as_str(), s.peers, s.heard), ("both", 1, 1));
        assert_eq!(
            (s.peer_ids, s.at_mono_ns),
            (vec!["aalinkSs".to_string()], 4_750_000_000)
        );
        assert_eq!(
            (s.node.as_str(), s.session.as_str()),
            ("ourNode1", "aalinkSs")
        );
        assert!((s.tempo_bpm - 120.0).abs() < 1e-9);
        assert!((s.beat - 9.5).abs() < 1e-9 && (s.phase - 1.5).abs() < 1e-9);
        assert!(s.playing);
        assert_eq!(
            (s.timeline.as_str(), s.timeline_from.as_str()),
            ("follow", "aalinkSs")
        );
        assert_eq!(s.last_heard_ms, Some(250));
        // Alone: our own session, our timeline, nobody heard.
        let alone = LinkStatus {
            session: status.node,
            tempo_from: status.node,
            peers: 0,
            peer_ids: Vec::new(),
            heard: 0,
            last_heard_ns: None,
            ..status
        };
        let s = state_of(&alone, LinkMode::Lead, 4.0, 4_750_000_000);
        assert_eq!((s.timeline.as_str(), s.last_heard_ms), ("lead", None));
    }

    #[test]
    fn phase_error_wraps_into_half_a_quantum() {
        assert!((phase_error(17.25, 1.0, 4.0) - 0.25).abs() < 1e-12);
        assert!((phase_error(16.75, 1.0, 4.0) + 0.25).abs() < 1e-12);
        assert!((phase_error(19.0, 1.0, 4.0) + 2.0).abs() < 1e-12);
    }
}
