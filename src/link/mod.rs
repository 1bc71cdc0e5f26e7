//! Ableton Link: Convoy as a peer in a Link session, so DJ, DAW, VJ and lighting apps and
//! the fleet share one tempo and beat phase. Written clean-room from the facts in
//! `structuresound/link-wire-spec` (CC-BY-4.0) and its captured vectors (CC0), and from
//! traffic captured from the `aalink` test peer — no code of the GPL reference or its ports
//! (`docs/link.md`). Pure core: [`wire`] (the discovery and measurement datagrams),
//! [`timeline`] (the session timeline, quantum phase, the ghost transform and its median
//! filter) and [`session`] (one peer's state machine: peer table and timeouts, measuring
//! and joining sessions, timeline and start/stop gossip). Adapter: [`peer`] (three UDP
//! sockets and a tokio task driving the session, a handle with the state on a watch
//! channel). Link time becomes fleet time only in `clock::link`; the node wires it to the
//! lights (`[link] mode = "follow"`) and to the playing track (`"lead"`).

pub mod peer;
pub mod session;
pub mod timeline;
pub mod wire;

pub use peer::{show_id, LinkControl, LinkPeer, LinkSockets, LinkStatus};
pub use wire::{NodeId, StartStop, Timeline};

/// Errors of the Link adapter (the pure core drops bad datagrams and counts them).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A socket could not be set up: fatal for Link (the node runs on without it).
    #[error("link: cannot bind the {what} socket: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}
