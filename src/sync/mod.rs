//! Fleet time and playback lock. Followers estimate the leader's clock (offset and
//! frequency) from SNTP exchanges ([`sntp`], [`filter`]); the leader publishes the timeline
//! — which track frame is heard at which fleet time, at what rate — over OSC ([`timeline`]);
//! a PI loop on each follower steers the resampler's speed so its speaker plays the frame
//! the timeline says, seeking only on join or after a large persistent error ([`pll`]).
//! The fleet-sync state machines live here too, pure and unit-tested over a [`Deck`] (the
//! player and tracks): the leader's [`Transport`] (commands → plans on the timeline), the
//! follower's timeline state machine ([`follow`]) and the [`SwitchController`] that runs
//! the leader's or the follower's half of the playback loop as the role changes; and their
//! network tasks ([`publisher`], [`follower`]). The impairment relay and the
//! playback-offset measures the tests and the scenario use live in `rig` (`rig::impair`,
//! `rig::measure`).

pub mod deck;
pub mod filter;
pub mod follow;
pub mod follower;
pub mod pll;
pub mod position;
pub mod publisher;
pub mod sntp;
pub mod switch;
pub mod timeline;
pub mod transport;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use deck::Deck;
pub use switch::SwitchController;
pub use transport::Transport;

/// Network counters shared by the node's tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// SNTP exchanges that gave a sample.
    pub sntp_ok: AtomicU64,
    /// SNTP exchanges that failed (timeout, refused).
    pub sntp_failed: AtomicU64,
    /// Timelines received.
    pub timelines: AtomicU64,
    /// Commands relayed to (follower) or from (leader) the fleet link.
    pub relayed: AtomicU64,
    // Hierarchical mode: what this node serves as leader or sub-leader.
    /// Timeline datagrams sent to subscribers.
    pub timelines_sent: AtomicU64,
    /// Live timeline subscribers now.
    pub subscribers: AtomicU64,
    /// The SNTP server's counters.
    pub sntp: Arc<sntp::ServeStats>,
}
