//! The node's [`Deck`]: its player and its track library, as the sync state machines use
//! them.

use std::sync::Arc;

use crate::audio::{Player, PlayerCommand, PlayerStatus, Source};
use crate::control::Refusal;
use crate::library::{TrackError, Tracks};
use crate::sync::Deck;

/// The player and the tracks of this bike.
pub struct NodeDeck {
    player: Arc<Player>,
    tracks: Tracks,
}

impl NodeDeck {
    /// Over `player`, opening tracks through `tracks`.
    pub fn new(player: Arc<Player>, tracks: Tracks) -> Self {
        NodeDeck { player, tracks }
    }
}

impl Deck for NodeDeck {
    fn open(&self, track: &str) -> Result<Box<dyn Source>, Refusal> {
        self.tracks.open(track).map_err(|e| match e {
            TrackError::Fetching(hash) => Refusal::Fetching(hash.to_string()),
            e => Refusal::Track(e.to_string()),
        })
    }

    fn send(&self, cmd: PlayerCommand) -> Result<(), Refusal> {
        self.player.send(cmd).map_err(|_| Refusal::PlayerStopped)
    }

    fn status(&self) -> PlayerStatus {
        self.player.status()
    }
}
