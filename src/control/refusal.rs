//! Why the node refused a command: one typed reason per way a command can fail, so a surface
//! can map it (an OSC `/reply` status, an HTTP status) and a user reads what to do. The
//! `Display` text is what the user sees.

/// A command the node did not carry out, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Play with no track named, none loaded and an empty playlist.
    #[error("nothing to play: name a track")]
    NothingToPlay,
    /// Seek with no track loaded.
    #[error("nothing to seek in: no track loaded")]
    NoTrack,
    /// A position past the end of the track.
    #[error("position {position_s:.3} s is past the end of {track} ({length_s:.3} s)")]
    BeyondEnd {
        /// The track.
        track: String,
        /// Where it was asked to play from, s.
        position_s: f64,
        /// Its length, s.
        length_s: f64,
    },
    /// `Next` at the last track of the playlist (`number` is 1-based).
    #[error("no track after #{number} in the playlist")]
    EndOfPlaylist {
        /// The playlist entry playing now, 1-based.
        number: usize,
    },
    /// A track that cannot be opened (missing, not audio, still downloading).
    #[error("{0}")]
    Track(String),
    /// A library track on its way from another bike; it plays once it is here.
    #[error("track {0} is being fetched from the fleet")]
    Fetching(String),
    /// The player thread has stopped.
    #[error("the player has stopped")]
    PlayerStopped,
    /// A command the receiving part does not carry out (the debug form of the command).
    #[error("{0} is not a {1} command")]
    NotFor(String, &'static str),
    /// A follower has no leader yet to relay a transport command to.
    #[error("no leader to relay the command to yet")]
    NoLeader,
    /// A command that does not travel over the fleet link.
    #[error("{0} cannot be relayed to the leader")]
    NotRelayable(String),
    /// The fleet link (or the show's queue) is full; the command was dropped.
    #[error("{0} is busy; command dropped")]
    Busy(&'static str),
    /// A show command (`/go`, a cue) with no show loaded.
    #[error("no cue list loaded")]
    NoShow,
    /// `/cue/{n}/start` naming no cue of the playing track (`.1`: where it was looked for).
    #[error("no cue {0:?}: {1}")]
    UnknownCue(String, String),
    /// `/cue/{n}/start` while no track of the show plays (a cue has nothing to fire in).
    #[error("cue {0:?}: no track of the show is playing")]
    NoShowTrack(String),
    /// Not a light pattern the firmware knows.
    #[error("unknown pattern {0:?}")]
    UnknownPattern(String),
    /// The show has stopped.
    #[error("the show is not running")]
    ShowStopped,
    /// `/convoy/fleet/lead` on a bike whose role is fixed by its config.
    #[error("this bike has a fixed role: lead needs sync.role = \"auto\"")]
    FixedRole,
    /// Something inside the node broke (a poisoned lock); the command was not applied.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The leader refused a command this bike relayed to it (the leader's own words).
    #[error("the leader refused: {0}")]
    Leader(String),
    /// A relayed command got no verdict back in time (it may still have been carried out).
    #[error("relayed to the leader, which did not answer within {0} ms")]
    NoVerdict(u64),
    /// Fleet membership could not take the command.
    #[error("fleet membership: {0}")]
    Fleet(String),
}

impl Refusal {
    /// "`cmd` is not a `what` command".
    pub fn not_for(cmd: &impl std::fmt::Debug, what: &'static str) -> Self {
        Refusal::NotFor(format!("{cmd:?}"), what)
    }
}
