//! Authentication and abuse resistance for fleet datagrams.
//!
//! Threat model: a stranger's phone on the ride's WiFi impersonates the
//! leader, floods, replays captured commands or sends malformed packets; none
//! of that may change a bike's show, stop its music or crash the daemon. Every
//! fleet datagram is wrapped in an HMAC-SHA256 [`envelope`] under a pre-shared
//! [`key`], checked against a per-sender [`replay`] window and timestamp
//! window, [`ratelimit`]ed per address and per peer, filtered by [`policy`],
//! and counted in [`stats`]; [`guard::Guard`] composes all of it behind one
//! call. The hostile sender the flood tests and the scenario use is `rig::flood`.
//! See `SECURITY.md` for what this does and does not protect.

pub mod envelope;
pub mod fleet;
pub mod guard;
pub mod key;
pub mod policy;
pub mod ratelimit;
pub mod replay;
pub mod stats;

pub use crate::config::SecurityConfig;
pub use envelope::{open, seal, EnvelopeError, Opened, Sealer, SenderId};
pub use fleet::{sender_id, FleetSecurity, SecurityError};
pub use guard::{Accepted, Guard, GuardConfig, Rejection};
pub use key::{FleetKey, KeyError, KeyId, Keyring};
pub use ratelimit::TrafficClass;
pub use stats::{RejectReason, SecurityStats, StatsSnapshot};
