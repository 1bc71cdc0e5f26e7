//! The control plane, below every surface that drives a node: the typed [`Command`] set, the
//! cloneable [`NodeHandle`] front ends send commands through (one bounded channel in, one
//! [`Snapshot`] watch out), and the typed [`Refusal`] the node answers with. OSC, the web
//! app, the EchoFlux-style API, DAW follow, the fleet relay and the show runner all speak
//! this and nothing of each other; none of them reaches into the node.

mod command;
mod fade;
mod handle;
mod refusal;
mod snapshot;

pub use command::Command;
pub use fade::{fade_out, FADE_STEPS};
pub use handle::{HandleError, NodeHandle, NodeInbox, Origin, Request};
pub use refusal::Refusal;
pub use snapshot::{LightState, LinkState, Meters, PeerState, Snapshot, SyncState};
