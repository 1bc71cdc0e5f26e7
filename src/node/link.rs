//! Ableton Link in the node (`[link]`, `docs/link.md`): the node joins the Link session on
//! its network. *Follow* (`mode = "follow"`/`"both"`): the show runner flashes the strip on
//! the session's beats while the player plays nothing, or always with `follow_link`
//! ([`NodeLink::follow`]); every bike joins the same session, so their flashes agree to
//! Link's accuracy. *Lead* (`"lead"`/`"both"`): while a track plays, the tempo and beat the
//! runner posts on the live plane (beatmap or live analysis) become the session timeline,
//! re-published only when the session drifts from the music by more than 2 ms or 0.01 BPM
//! (so bikes that play in sync leave it to whoever moved first), and the transport follows
//! playing. *Status*: [`LinkReport`] turns the session into the snapshot's
//! [`LinkState`] (peers, tempo, phase, transport, who set the timeline) for `convoy status`.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::clock::mono_ns;
use crate::config::{LinkConfig, LinkMode};
use crate::control::LinkState;
use crate::link::{show_id, LinkControl, LinkPeer, LinkSockets, LinkStatus};
use crate::live::LiveBus;
use crate::show::runner::LinkFollow;

/// The node's Link peer and its lead task.
#[derive(Debug)]
pub struct NodeLink {
    peer: LinkPeer,
    config: LinkConfig,
    lead: Option<tokio::task::JoinHandle<()>>,
}

/// Join Link when `[link] enabled`; a socket failure is logged and Link stays off.
pub fn start(config: &LinkConfig, live: &LiveBus) -> Option<NodeLink> {
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
    let lead = matches!(config.mode, LinkMode::Lead | LinkMode::Both).then(|| {
        tokio::spawn(lead(
            peer.control(),
            peer.watch(),
            live.clone(),
            config.clone(),
        ))
    });
    Some(NodeLink {
        peer,
        config: config.clone(),
        lead,
    })
}

impl NodeLink {
    /// What the show runner follows, in follow mode.
    pub fn follow(&self) -> Option<LinkFollow> {
        matches!(self.config.mode, LinkMode::Follow | LinkMode::Both).then(|| LinkFollow {
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
        if let Some(t) = self.lead {
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
    /// The session at monotonic `now_ns`.
    pub fn state(&self, now_ns: u64) -> LinkState {
        state_of(&self.status.borrow(), self.mode, self.quantum, now_ns)
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
        heard: status.heard,
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
