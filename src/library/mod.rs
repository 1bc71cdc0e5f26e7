//! The track library: content-addressed tracks and show files on this bike, and sharing them
//! between bikes.
//!
//! A [`Library`] keeps tracks in one directory as `<sha256>.<format>` (the SHA-256 of the
//! file's bytes, as in beatmaps, and the format sniffed from its first bytes) and show files
//! under `shows/`; nothing appears under a final name until it is complete and verified
//! (`store`). A follower that lacks the fleet's track fetches it from a peer's web server
//! with [`Library::ensure`]: resumable from a `.part` file, SHA-256-checked and paced by a
//! token bucket so fleet sync traffic keeps priority on the WiFi (`fetch`, `throttle`, over
//! the small HTTP [`client`]). Serving reads through the library too, paced by one bucket
//! shared by every connection, so a leader feeding several followers stays within the rate;
//! the HTTP side of serving (routes, `Range`, headers) lives in `crate::web`. [`Tracks`]
//! turns the track names on the timeline (built-ins, content hashes, files in an allowed
//! music directory: `music`) into audio sources, starting a background download for a
//! shared track this bike lacks. The
//! library's settings live in `[web]` ([`LibraryConfig::from_config`]).

pub mod client;

mod fetch;
mod hash;
mod music;
mod store;
mod throttle;
mod tracks;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::ClientError;
pub use fetch::Progress;
pub use hash::{content_name, sniff_format, TrackHash};
pub use music::{open_regular, MusicDirs, NotInLibrary};
pub use store::{Library, TrackInfo};
pub use tracks::{TrackError, Tracks};

use crate::config::WebConfig;

/// How a [`Library`] stores and fetches.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// Directory holding the tracks (created if missing).
    pub dir: PathBuf,
    /// Largest track or show accepted, by upload or download, bytes.
    pub max_bytes: u64,
    /// Share bandwidth, bytes/s, for downloads and for serving (0 = unlimited).
    pub rate: u64,
    /// Timeout of each network wait during a download.
    pub timeout: Duration,
    /// Rounds over the peer list before giving up.
    pub attempts: u32,
    /// PIN sent to peers (`X-Convoy-Pin`) when their reads are closed.
    pub pin: Option<String>,
}

impl LibraryConfig {
    /// The library settings of a `[web]` section.
    pub fn from_config(cfg: &WebConfig) -> Self {
        Self {
            dir: PathBuf::from(&cfg.library),
            max_bytes: cfg.upload_max_mib.saturating_mul(1024 * 1024),
            rate: cfg.share_rate_kib.saturating_mul(1024),
            timeout: Duration::from_secs_f64(cfg.share_timeout_s),
            attempts: cfg.share_attempts,
            pin: (!cfg.pin.is_empty()).then(|| cfg.pin.clone()),
        }
    }
}

/// Why a library operation or a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not 64 hex digits.
    #[error("'{0}' is not a SHA-256 (64 hex digits)")]
    BadHash(String),
    /// A show file name that is not a plain `name.toml`.
    #[error("bad show name '{0}': use 1-64 characters [A-Za-z0-9._-] ending in .toml")]
    BadName(String),
    /// The bytes are not a track Convoy can play (or a show that does not parse).
    #[error("{0}")]
    Unsupported(String),
    /// Larger than the library accepts.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was too large (upload, download from a peer).
        what: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// Storing it would take the library past its quota (`web.library_max_mib`).
    #[error("the library is full: {used} bytes in use of its {limit}-byte quota (web.library_max_mib); delete tracks or raise the quota")]
    QuotaExceeded {
        /// The quota, bytes.
        limit: u64,
        /// Bytes in use when the upload began.
        used: u64,
    },
    /// No track with this hash in the library.
    #[error("no track {0} in the library")]
    NotFound(TrackHash),
    /// A peer answered with an unexpected status.
    #[error("peer {peer}: HTTP {status} for track {hash}")]
    Status {
        /// Peer base URL.
        peer: String,
        /// Status code.
        status: u16,
        /// Track asked for.
        hash: TrackHash,
    },
    /// A peer's response made no sense (a range we did not ask for…).
    #[error("peer {peer}: {detail}")]
    BadResponse {
        /// Peer base URL.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection failed or dropped; the `.part` file is kept for a resume.
    #[error("peer {peer}: transfer interrupted at {have} bytes: {source}")]
    Interrupted {
        /// Peer base URL.
        peer: String,
        /// Bytes held in the `.part` file.
        have: u64,
        /// What happened.
        source: ClientError,
    },
    /// The complete transfer does not hash to what was asked; it was deleted.
    #[error("peer {peer}: track {expected} arrived with SHA-256 {got}; discarded")]
    HashMismatch {
        /// Peer base URL.
        peer: String,
        /// Hash asked for.
        expected: TrackHash,
        /// Hash of what arrived.
        got: TrackHash,
    },
    /// No peer to ask.
    #[error("track {0} is missing and no peer is known to fetch it from")]
    NoPeers(TrackHash),
    /// Every peer failed every attempt; the last error says why.
    #[error("track {hash} could not be fetched from {peers} peer(s) in {attempts} attempt(s); last: {last}")]
    Unavailable {
        /// Track asked for.
        hash: TrackHash,
        /// Peers tried.
        peers: usize,
        /// Rounds over the peer list.
        attempts: u32,
        /// The last failure.
        last: Box<LibraryError>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LibraryError + '_ {
    move |source| LibraryError::Io {
        path: path.to_path_buf(),
        source,
    }
}
