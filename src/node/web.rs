//! The node's web front end: the phone app and HTTP API ([`crate::web`]) on `web.port`,
//! and, when `web.follow_url` names an external player, the EchoFlux-style follower that
//! keeps this node on that player's position. Both talk to the node only through its
//! [`NodeHandle`]; stopping them waits for in-flight requests to finish.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::WebConfig;
use crate::control::NodeHandle;
use crate::library::Tracks;
use crate::web::{self, echoflux, WebError};

/// Why the web front end could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebStartError {
    /// Bad `[web]` settings (PIN, library directory).
    #[error("[web]: {0}")]
    Config(#[from] WebError),
    /// The TCP port could not be bound.
    #[error("cannot bind the web server on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The running web server (and follower).
pub struct WebService {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WebService {
    /// Start what `[web]` asks for; `None` when the web server is off and no player is
    /// followed. The server shares the node's library (opened here, creating it).
    pub async fn start(
        cfg: &WebConfig,
        handle: NodeHandle,
        tracks: &Tracks,
    ) -> Result<Option<WebService>, WebStartError> {
        let follower = echoflux::Follower::from_config(cfg, handle.clone());
        if !cfg.enabled && follower.is_none() {
            return Ok(None);
        }
        let library = tracks.open_library().map_err(WebError::from)?;
        let state = web::WebState::from_config(cfg, handle, library)?;
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut tasks = Vec::new();
        let mut addr = SocketAddr::from(([0, 0, 0, 0], 0));
        if cfg.enabled {
            let want = format!("{}:{}", cfg.bind, cfg.port);
            let listener = tokio::net::TcpListener::bind(&want)
                .await
                .map_err(|source| WebStartError::Bind {
                    addr: want.clone(),
                    source,
                })?;
            addr = listener
                .local_addr()
                .map_err(|source| WebStartError::Bind { addr: want, source })?;
            tracing::info!("web app on http://{addr}/");
            let serving = web::serve_with_shutdown(listener, state, until_stopped(stopped.clone()));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!("web server stopped: {e}");
                }
            }));
        }
        if let Some(f) = follower {
            tracing::info!("following the player at {}", cfg.follow_url);
            tasks.push(tokio::spawn(f.run(until_stopped(stopped))));
        }
        Ok(Some(WebService { addr, stop, tasks }))
    }

    /// Where the web server listens (port 0 when only the follower runs).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: in-flight requests finish, the follower stops polling.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
        }
    }
}
