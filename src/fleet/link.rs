//! The Link beat the fleet shares (`[link]` follow, `docs/link.md`): the bike that leads the
//! fleet (or plays alone) follows the Link session and sets its beat grid on fleet time
//! ([`FleetBeats`], made in `src/clock/link.rs`) here ([`FleetLink::set`]); the grid
//! travels down with every timeline bundle, beside the fleet's light state, as one
//! `/convoy/fleet/link` message ([`FleetLink::message`]); a follower takes what its
//! upstream sent ([`FleetLink::hear`]: no message, no grid) and a sub-leader passes it on.
//! Every bike's show runner flashes on the grid through its own estimate of fleet time, so
//! the whole fleet flashes on the Link beat, bikes that do not hear Link included, and a
//! follower's own Link view (which may be stale or in another session) never overrides
//! it. A grid not heard or refreshed for [`FRESH_NS`] is gone.

use rosc::{OscMessage, OscType};
use tokio::sync::watch;

use crate::clock::link::FleetBeats;

/// Address of the grid: `beat:d fleet_ns:h ns_per_beat:d quantum:d always:T|F`.
pub const LINK_ADDR: &str = "/convoy/fleet/link";

/// A grid older than this is gone: the leader refreshes its own every 50 ms and sends it
/// with every timeline (`sync.publish_hz`, several a second), so only a leader that lost
/// its Link session, or a fleet that lost its leader, leaves one this old.
pub const FRESH_NS: u64 = 3_000_000_000;

/// The leader re-sends its grid at once when the beats moved by more than this (a tempo
/// change, a new beat origin); smaller moves (a re-measured ghost time) go with the next
/// timeline.
pub const MOVED_NS: i64 = 20_000;

/// What the fleet flashes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// The Link beats on fleet time.
    pub beats: FleetBeats,
    /// Beats per bar (the leader's `[link] quantum`): the first beat of each is the
    /// brighter flash on every bike.
    pub quantum: f64,
    /// Flash even while a track plays (the leader's `[link] follow_link`).
    pub always: bool,
}

impl Grid {
    /// As an OSC message.
    pub fn to_osc(&self) -> OscMessage {
        OscMessage {
            addr: LINK_ADDR.to_string(),
            args: vec![
                OscType::Double(self.beats.beat),
                OscType::Long(self.beats.fleet_ns),
                OscType::Double(self.beats.ns_per_beat),
                OscType::Double(self.quantum),
                OscType::Bool(self.always),
            ],
        }
    }

    /// Parse one message; `None` unless it is a well-formed grid with a tempo Link allows
    /// (20–999 BPM) and a quantum of 1/16 to 64 beats.
    pub fn from_osc(msg: &OscMessage) -> Option<Grid> {
        if msg.addr != LINK_ADDR {
            return None;
        }
        let [OscType::Double(beat), OscType::Long(fleet_ns), OscType::Double(ns_per_beat), OscType::Double(quantum), OscType::Bool(always)] =
            msg.args.as_slice()
        else {
            return None;
        };
        let tempo_ok = (60e9 / 999.0..=60e9 / 20.0).contains(ns_per_beat);
        let ok = beat.is_finite() && tempo_ok && (0.0625..=64.0).contains(quantum);
        ok.then_some(Grid {
            beats: FleetBeats {
                beat: *beat,
                fleet_ns: *fleet_ns,
                ns_per_beat: *ns_per_beat,
            },
            quantum: *quantum,
            always: *always,
        })
    }
}

/// A grid and when it was last set or heard (monotonic ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    /// The grid.
    pub grid: Grid,
    /// Set (leader) or heard (follower) at this monotonic instant.
    pub at_ns: u64,
}

impl Held {
    /// The grid, if it is fresh at monotonic `now`.
    pub fn fresh(&self, now: u64) -> Option<Grid> {
        (now.saturating_sub(self.at_ns) < FRESH_NS).then_some(self.grid)
    }
}

/// This bike's copy of the fleet's Link grid.
#[derive(Debug)]
pub struct FleetLink {
    held: watch::Sender<Option<Held>>,
}

impl Default for FleetLink {
    fn default() -> Self {
        FleetLink {
            held: watch::channel(None).0,
        }
    }
}

impl FleetLink {
    /// The bike that leads the fleet sets its own grid (`None`: it follows no Link beat) at
    /// monotonic `now`. Returns whether the grid changed enough to send it at once; a grid
    /// that moved less than [`MOVED_NS`] is kept as it was, refreshed.
    pub fn set(&self, grid: Option<Grid>, now: u64) -> bool {
        let mut changed = false;
        self.held.send_modify(|held| {
            let same = match (held.as_ref(), grid.as_ref()) {
                (Some(h), Some(g)) => {
                    h.grid.quantum == g.quantum
                        && h.grid.always == g.always
                        && !h.grid.beats.moved(&g.beats, MOVED_NS)
                }
                (None, None) => true,
                _ => false,
            };
            changed = !same;
            *held = match (held.take(), grid) {
                (Some(h), Some(_)) if same => Some(Held { at_ns: now, ..h }),
                (_, g) => g.map(|grid| Held { grid, at_ns: now }),
            };
        });
        changed
    }

    /// A timeline bundle's other messages, heard from upstream at monotonic `now`: the
    /// grid it carries, or none.
    pub fn hear(&self, messages: &[OscMessage], now: u64) {
        let grid = messages.iter().find_map(Grid::from_osc);
        self.held
            .send_replace(grid.map(|grid| Held { grid, at_ns: now }));
    }

    /// The grid, if fresh at monotonic `now`.
    pub fn current(&self, now: u64) -> Option<Grid> {
        self.held.borrow().and_then(|h| h.fresh(now))
    }

    /// The message a publisher adds to every timeline bundle (`None`: no fresh grid).
    pub fn message(&self, now: u64) -> Option<OscMessage> {
        self.current(now).map(|g| g.to_osc())
    }

    /// The grid on a watch channel (the show runner reads it).
    pub fn watch(&self) -> watch::Receiver<Option<Held>> {
        self.held.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(fleet_ns: i64, ns_per_beat: f64) -> Grid {
        Grid {
            beats: FleetBeats {
                beat: 1024.0,
                fleet_ns,
                ns_per_beat,
            },
            quantum: 4.0,
            always: false,
        }
    }

    #[test]
    fn the_grid_travels_as_one_message_and_nonsense_is_refused() {
        let g = grid(1_700_000_000_123_456_789, 500_000_000.0);
        let msg = g.to_osc();
        assert_eq!(Grid::from_osc(&msg), Some(g));
        // Through the encoder, as it goes on the wire.
        let bytes = rosc::encoder::encode(&rosc::OscPacket::Message(msg.clone())).unwrap();
        let rosc::OscPacket::Message(back) = rosc::decoder::decode_udp(&bytes).unwrap().1 else {
            panic!("not a message");
        };
        assert_eq!(Grid::from_osc(&back), Some(g));
        // 1000 BPM, a zero quantum, a missing argument, another address: refused.
        assert_eq!(Grid::from_osc(&grid(0, 60e6).to_osc()), None);
        let mut zero_q = g;
        zero_q.quantum = 0.0;
        assert_eq!(Grid::from_osc(&zero_q.to_osc()), None);
        let mut short = msg.clone();
        short.args.pop();
        assert_eq!(Grid::from_osc(&short), None);
        let mut other = msg;
        other.addr = "/convoy/fleet/light".into();
        assert_eq!(Grid::from_osc(&other), None);
    }

    #[test]
    fn the_leader_resends_only_when_the_beats_moved_and_a_silent_grid_goes() {
        let link = FleetLink::default();
        let g = grid(5_000_000_000, 500_000_000.0);
        assert!(link.set(Some(g), 1_000), "a new grid goes at once");
        // The same beats a few µs off (a re-measured ghost time): kept, refreshed.
        assert!(!link.set(Some(grid(5_000_005_000, 500_000_000.0)), 2_000));
        let held = (*link.watch().borrow()).expect("held");
        assert_eq!((held.grid, held.at_ns), (g, 2_000));
        // A tempo change moves beat 64 by 64 µs: sent.
        assert!(link.set(Some(grid(5_000_000_000, 500_001_000.0)), 3_000));
        assert!(link.set(None, 4_000), "the session gone: the grid goes");
        assert!(!link.set(None, 5_000));
        assert_eq!(link.message(5_000), None);
        // Fresh for three seconds after it was set, then gone.
        link.set(Some(g), 10_000);
        assert!(link.message(10_000 + FRESH_NS - 1).is_some());
        assert_eq!(link.current(10_000 + FRESH_NS), None);
    }

    #[test]
    fn a_follower_takes_what_upstream_sent_and_no_message_means_no_grid() {
        let link = FleetLink::default();
        let g = grid(5_000_000_000, 468_750_000.0);
        let light = OscMessage {
            addr: "/convoy/fleet/light".into(),
            args: vec![],
        };
        link.hear(&[light.clone(), g.to_osc()], 7);
        assert_eq!(link.current(7), Some(g));
        assert_eq!(
            link.message(7),
            Some(g.to_osc()),
            "a sub-leader passes it on"
        );
        link.hear(&[light], 8);
        assert_eq!(link.current(8), None);
    }
}
