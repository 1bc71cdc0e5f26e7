//! Following an external player through the EchoFlux-style HTTP playback API.
//!
//! The API is three calls — `GET /api/playback/status` → `{"position_ms", "track",
//! "playing"}`, `POST /api/playback/seek {"position_ms"}` and `POST /api/playback/play
//! {"track"}` — which Convoy serves itself (see [`super::api`]) and which a [`Follower`]
//! polls on another player. Each poll compares what the player reports (its position moved
//! on by half the measured round trip) with this node's [`Snapshot`] and, through the
//! [`NodeHandle`], starts the player's track, seeks when the positions diverge beyond the
//! threshold, or stops when the player stops. After acting it holds off for a while, because
//! the node's snapshot shows the effect only once the node republishes. The decision itself
//! is the pure [`decide`], tested on its own. An unreachable player changes nothing: the
//! fleet keeps playing what it plays.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::WebConfig;
use crate::control::{Command, HandleError, NodeHandle, Origin, Snapshot};
use crate::library::client::{read_body, ClientError, HttpClient};

/// The player state the API exchanges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybackStatus {
    /// Position heard now, ms (0 when nothing is loaded).
    pub position_ms: f64,
    /// Track playing or loaded, if any.
    #[serde(default)]
    pub track: Option<String>,
    /// Playing (not paused or stopped).
    pub playing: bool,
}

impl PlaybackStatus {
    /// What a Convoy node reports.
    pub fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            position_ms: s.position_ms.unwrap_or(0.0),
            track: s.track.clone(),
            playing: s.playing,
        }
    }
}

/// How a [`Follower`] polls and when it acts.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowerConfig {
    /// Base URL of the followed player, e.g. `http://192.168.4.10:8000`.
    pub url: String,
    /// Time between polls.
    pub poll: Duration,
    /// Position difference that triggers a seek, ms.
    pub threshold_ms: f64,
    /// Quiet time after a command before deciding again.
    pub holdoff: Duration,
    /// Timeout of each request.
    pub timeout: Duration,
}

impl FollowerConfig {
    /// The follower settings of `[web]`, or None when `follow_url` is empty.
    pub fn from_web(cfg: &WebConfig) -> Option<Self> {
        (!cfg.follow_url.is_empty()).then(|| Self {
            url: cfg.follow_url.trim_end_matches('/').to_string(),
            poll: Duration::from_secs_f64(cfg.follow_poll_ms / 1000.0),
            threshold_ms: cfg.follow_threshold_ms,
            holdoff: Duration::from_secs_f64(cfg.follow_holdoff_ms / 1000.0),
            timeout: Duration::from_secs_f64(cfg.share_timeout_s),
        })
    }
}

/// What one poll decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// In step (or both stopped): nothing to do.
    Keep,
    /// Start the player's track (or resume) at its position.
    Start {
        /// Track to play (None: whatever is loaded).
        track: Option<String>,
        /// Where to seek after starting, ms.
        position_ms: f64,
    },
    /// Same track, too far apart: seek.
    Seek {
        /// Target, ms.
        position_ms: f64,
    },
    /// The player stopped: stop too.
    Stop,
    /// A recent command may not show in our snapshot yet: wait.
    HoldOff,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The player could not be reached.
    #[error("followed player: {0}")]
    Client(#[from] ClientError),
    /// It answered, but not with a playback status.
    #[error("followed player at {url}: {detail}")]
    BadStatus {
        /// URL polled.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Our node refused or is gone.
    #[error("node: {0}")]
    Node(#[from] HandleError),
}

/// Decide what to do given the player's status (already moved on to now) and ours.
pub fn decide(player: &PlaybackStatus, ours: &Snapshot, threshold_ms: f64) -> Action {
    if !player.playing {
        return if ours.playing {
            Action::Stop
        } else {
            Action::Keep
        };
    }
    let other_track = player.track.is_some() && player.track != ours.track;
    if other_track || !ours.playing {
        return Action::Start {
            track: player.track.clone(),
            position_ms: player.position_ms,
        };
    }
    match ours.position_ms {
        Some(p) if (p - player.position_ms).abs() <= threshold_ms => Action::Keep,
        _ => Action::Seek {
            position_ms: player.position_ms,
        },
    }
}

/// Polls an external player and steers the node after it.
#[derive(Debug)]
pub struct Follower {
    cfg: FollowerConfig,
    handle: NodeHandle,
    client: HttpClient,
    /// When the last command was sent (for the hold-off).
    last_command: Option<Instant>,
}

impl Follower {
    /// A follower of `cfg.url` steering `handle`.
    pub fn new(cfg: FollowerConfig, handle: NodeHandle) -> Self {
        let client = HttpClient::new(cfg.timeout);
        Self {
            cfg,
            handle,
            client,
            last_command: None,
        }
    }

    /// The follower `[web] follow_url` asks for, if any.
    pub fn from_config(cfg: &WebConfig, handle: NodeHandle) -> Option<Self> {
        FollowerConfig::from_web(cfg).map(|c| Self::new(c, handle))
    }

    /// Fetch the player's status; its position is moved on by half the round trip.
    pub async fn fetch(&self) -> Result<PlaybackStatus, FollowError> {
        let url = format!("{}/api/playback/status", self.cfg.url);
        let sent = Instant::now();
        let mut resp = self.client.get(&url, &[]).await?;
        let body = read_body(&mut resp, 64 * 1024).await?;
        let bad = |detail: String| FollowError::BadStatus {
            url: url.clone(),
            detail,
        };
        if resp.status() != 200 {
            return Err(bad(format!("HTTP {}", resp.status())));
        }
        let mut status: PlaybackStatus =
            serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if !status.position_ms.is_finite() || status.position_ms < 0.0 {
            return Err(bad(format!(
                "position_ms {} is unusable",
                status.position_ms
            )));
        }
        if status.playing {
            status.position_ms += sent.elapsed().as_secs_f64() * 1000.0 / 2.0;
        }
        Ok(status)
    }

    /// One poll: fetch, decide, and send the commands. Returns what was done.
    pub async fn poll_once(&mut self) -> Result<Action, FollowError> {
        let player = self.fetch().await?;
        if self
            .last_command
            .is_some_and(|t| t.elapsed() < self.cfg.holdoff)
        {
            return Ok(Action::HoldOff);
        }
        let action = decide(&player, &self.handle.snapshot_now(), self.cfg.threshold_ms);
        let origin = || Origin::Web(self.cfg.url.clone());
        match &action {
            Action::Keep | Action::HoldOff => return Ok(action),
            Action::Stop => self.handle.execute(Command::Stop, origin()).await?,
            Action::Seek { position_ms } => {
                self.handle
                    .execute(
                        Command::Seek {
                            position_ms: *position_ms,
                        },
                        origin(),
                    )
                    .await?
            }
            Action::Start { track, position_ms } => {
                self.handle
                    .execute(
                        Command::Play {
                            track: track.clone(),
                        },
                        origin(),
                    )
                    .await?;
                self.handle
                    .execute(
                        Command::Seek {
                            position_ms: *position_ms,
                        },
                        origin(),
                    )
                    .await?;
            }
        }
        self.last_command = Some(Instant::now());
        Ok(action)
    }

    /// Poll until `shutdown` completes, logging failures (at most one warning per outage).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.cfg.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            match self.poll_once().await {
                Ok(action) => {
                    if failing {
                        tracing::info!("followed player {} reachable again", self.cfg.url);
                        failing = false;
                    }
                    if !matches!(action, Action::Keep | Action::HoldOff) {
                        tracing::info!("following {}: {action:?}", self.cfg.url);
                    }
                }
                Err(e) if !failing => {
                    tracing::warn!("{e}");
                    failing = true;
                }
                Err(e) => tracing::debug!("{e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(track: Option<&str>, playing: bool, position_ms: Option<f64>) -> Snapshot {
        Snapshot {
            track: track.map(Into::into),
            playing,
            position_ms,
            ..Snapshot::default()
        }
    }

    fn player(track: Option<&str>, playing: bool, position_ms: f64) -> PlaybackStatus {
        PlaybackStatus {
            position_ms,
            track: track.map(Into::into),
            playing,
        }
    }

    #[test]
    fn decisions_cover_start_seek_stop_and_keep() {
        let p = player(Some("a.flac"), true, 10_000.0);
        assert_eq!(
            decide(&p, &ours(None, false, None), 100.0),
            Action::Start {
                track: Some("a.flac".into()),
                position_ms: 10_000.0
            }
        );
        assert!(matches!(
            decide(&p, &ours(Some("b.flac"), true, Some(10_000.0)), 100.0),
            Action::Start { .. }
        ));
        assert_eq!(
            decide(&p, &ours(Some("a.flac"), true, Some(10_050.0)), 100.0),
            Action::Keep
        );
        assert_eq!(
            decide(&p, &ours(Some("a.flac"), true, Some(10_500.0)), 100.0),
            Action::Seek {
                position_ms: 10_000.0
            }
        );
        assert_eq!(
            decide(&p, &ours(Some("a.flac"), true, None), 100.0),
            Action::Seek {
                position_ms: 10_000.0
            }
        );
        let stopped = player(Some("a.flac"), false, 0.0);
        assert_eq!(
            decide(&stopped, &ours(Some("a.flac"), true, Some(1.0)), 100.0),
            Action::Stop
        );
        assert_eq!(
            decide(&stopped, &ours(None, false, None), 100.0),
            Action::Keep
        );
        // A player that names no track resumes whatever we have loaded.
        assert_eq!(
            decide(
                &player(None, true, 5.0),
                &ours(Some("x"), false, Some(0.0)),
                100.0
            ),
            Action::Start {
                track: None,
                position_ms: 5.0
            }
        );
    }

    #[test]
    fn status_json_matches_the_api() {
        let s: PlaybackStatus =
            serde_json::from_str(r#"{"position_ms": 1500, "track": "song.mp3", "playing": true}"#)
                .expect("parse");
        assert_eq!(s, player(Some("song.mp3"), true, 1500.0));
        let s: PlaybackStatus =
            serde_json::from_str(r#"{"position_ms": 0, "track": null, "playing": false}"#)
                .expect("parse");
        assert_eq!(s.track, None);
    }
}
