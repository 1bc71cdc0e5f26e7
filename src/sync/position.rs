//! What the show runner sees as "the player" on a fleet bike. On a follower that knows the
//! fleet clock and timeline, the heard position comes from the timeline ("frame F is heard
//! at fleet time X") mapped through its clock estimate, so its cues fire on fleet time —
//! in step with the leader's lights even while its own audio is still converging;
//! otherwise (leader, solo, no estimate yet) from the local player, shifted by the output
//! latency.

use std::sync::{Arc, Mutex};

use super::pll::NetState;
use crate::audio::{Player, PlayerStatus};
use crate::clock::{mono_ns, FleetClock};
use crate::show::PlayerClock;

/// What the show runner sees as "the player": the local player's status, with the heard
/// position taken from the fleet timeline when this node follows one.
pub struct FleetPosition {
    player: Arc<Player>,
    /// Fleet time; its output latency says when the local player's frames are really
    /// heard (the timeline already includes it).
    fleet: FleetClock,
    net: Arc<Mutex<NetState>>,
    /// (source, name the player reports) of every show track, and of other tracks the
    /// timeline played (learnt by opening them once).
    names: Mutex<Vec<(String, String)>>,
}

/// Tracks outside the show whose player names are remembered.
const LEARNT: usize = 16;

impl FleetPosition {
    /// The position of `player`, on the timeline in `net` when following; `names` pairs
    /// each show track's source with the name the player reports for it.
    pub fn new(
        player: Arc<Player>,
        fleet: FleetClock,
        net: Arc<Mutex<NetState>>,
        names: Vec<(String, String)>,
    ) -> Self {
        FleetPosition {
            player,
            fleet,
            net,
            names: Mutex::new(names),
        }
    }

    /// The name the player reports for timeline track `source`.
    fn player_name(&self, source: &str) -> Option<String> {
        let mut names = self.names.lock().ok()?;
        if let Some((_, name)) = names.iter().find(|(src, _)| src == source) {
            return Some(name.clone()).filter(|n| !n.is_empty());
        }
        // A track outside the show (the default look): open it once to learn its name (a
        // track that does not open is remembered as nameless, not retried every pass).
        let name = crate::audio::open_track(source)
            .map(|s| s.name())
            .unwrap_or_default();
        if names.len() >= LEARNT {
            names.remove(0);
        }
        names.push((source.to_string(), name.clone()));
        Some(name).filter(|n| !n.is_empty())
    }

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
        let track = timeline.track.clone();
        drop(net);
        let name = self.player_name(&track)?;
        if st.track.as_deref() != Some(name.as_str()) {
            return None;
        }
        let net = self.net.lock().ok()?;
        let timeline = net.timeline.as_ref().filter(|t| t.track == track)?;
        let frame_at = |mono: u64| Some(timeline.frame_at(self.fleet.at_mono(mono)?));
        let here = frame_at(now)?;
        let per_s = frame_at(now + 1_000_000_000)? - here;
        (per_s > 0.0).then_some((here, per_s))
    }
}

impl PlayerClock for FleetPosition {
    fn source(&self) -> Option<String> {
        let net = self.net.lock().ok()?;
        net.timeline
            .as_ref()
            .map(|t| t.track.clone())
            .filter(|t| !t.is_empty())
    }

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
