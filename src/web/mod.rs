//! The web server: the phone app, its REST + WebSocket API, the EchoFlux-style playback API
//! and the HTTP side of track sharing, all on one axum router.
//!
//! [`serve`] takes an already-bound listener and a [`WebState`] (a [`NodeHandle`], the
//! [`Auth`] policy, the node's track [`Library`], which [`crate::library`] owns: storage,
//! hashing, downloads and pacing, and the server's [`Limits`]); it never touches the player
//! or the sockets itself. Each control request becomes one [`Command`] sent with
//! `handle.execute(cmd, Origin::Web(addr))`, and the node's verdict becomes the HTTP status
//! (`{"error": "..."}` with 4xx/5xx on failure, every error status included). A middleware
//! ([`guard`]) refuses cross-site requests, form-typed bodies and, without a PIN, changes
//! from anywhere but the bike itself, then applies the auth policy by method, before any
//! handler runs. The accept loop (`serve`) caps connections and times out idle and slow
//! clients; WebSocket clients and uploads have caps of their own. The app itself
//! (`src/web/app/`) is plain HTML, CSS and JS compiled into the binary. The API is specified
//! in `docs/web-api.yaml` (also served at `/api/openapi.yaml`) and described in
//! `docs/web.md`. Submodules: [`auth`] (PIN, sessions, failure gate), [`guard`] (the request
//! guard), `serve` (connections), [`range`] (the `Range` header), `tracks` (serving a library track) and
//! [`echoflux`] (following an external player). The simulated node the app demo and the
//! web tests serve is `rig::web_sim`.
//!
//! [`Command`]: crate::control::Command

pub mod auth;
pub mod echoflux;
pub mod guard;

mod api;
pub mod range;
mod serve;
mod tracks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::config::WebConfig;
use crate::control::{HandleError, NodeHandle};
use crate::library::{Library, LibraryError};
pub use auth::{Access, Auth, AuthConfig, AuthError};
pub use guard::{GuardError, SitePolicy};

/// The server's resource limits: connections, WebSockets, uploads and the library quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open HTTP connections at once; more are closed with a 503 (`web.max_connections`).
    pub max_connections: usize,
    /// WebSocket clients at once; more get 503 before the upgrade (`web.max_websockets`).
    pub max_websockets: usize,
    /// Time to send a request's headers, and the longest an idle keep-alive connection or
    /// a stalled upload is kept (`web.header_timeout_s`).
    pub header_timeout: Duration,
    /// Uploads at once; more get 503 (`web.max_uploads`).
    pub max_uploads: usize,
    /// Largest show upload, bytes (`web.show_max_kib`).
    pub show_max_bytes: u64,
    /// The library may not grow past this by uploads, bytes (`web.library_max_mib`).
    pub library_max_bytes: u64,
    /// Origins besides the bike's own allowed to change things (`web.allowed_origins`).
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    /// The defaults of `config/default.toml`.
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_websockets: 16,
            header_timeout: Duration::from_secs(10),
            max_uploads: 2,
            show_max_bytes: 1024 * 1024,
            library_max_bytes: 4096 * 1024 * 1024,
            allowed_origins: Vec::new(),
        }
    }
}

impl Limits {
    /// The limits of a `[web]` section.
    pub fn from_config(cfg: &WebConfig) -> Self {
        Self {
            max_connections: cfg.max_connections as usize,
            max_websockets: cfg.max_websockets as usize,
            header_timeout: Duration::from_secs_f64(cfg.header_timeout_s),
            max_uploads: cfg.max_uploads as usize,
            show_max_bytes: cfg.show_max_kib.saturating_mul(1024),
            library_max_bytes: cfg.library_max_mib.saturating_mul(1024 * 1024),
            allowed_origins: cfg.allowed_origins.clone(),
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The node's control surface.
    handle: NodeHandle,
    /// Who may do what.
    auth: Auth,
    /// Tracks and shows.
    library: Library,
    /// Connection, WebSocket and upload limits.
    limits: Limits,
    /// Which pages may send state-changing requests.
    site: SitePolicy,
    /// One permit per WebSocket client.
    websockets: Arc<tokio::sync::Semaphore>,
    /// One permit per upload in progress.
    uploads: Arc<tokio::sync::Semaphore>,
}

impl WebState {
    /// State from its parts, with the default [`Limits`].
    pub fn new(handle: NodeHandle, auth: Auth, library: Library) -> Self {
        Self::with_limits(handle, auth, library, Limits::default())
    }

    /// State from its parts and `limits`.
    pub fn with_limits(handle: NodeHandle, auth: Auth, library: Library, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                handle,
                auth,
                library,
                site: SitePolicy::new(&limits.allowed_origins),
                websockets: Arc::new(tokio::sync::Semaphore::new(limits.max_websockets)),
                uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_uploads)),
                limits,
            }),
        }
    }

    /// State from the `[web]` section (checks the PIN) and the node's library.
    pub fn from_config(
        cfg: &WebConfig,
        handle: NodeHandle,
        library: Library,
    ) -> Result<Self, WebError> {
        let auth = Auth::new(&AuthConfig {
            pin: cfg.pin.clone(),
            open_reads: cfg.open_reads,
            login_burst: cfg.login_burst,
            login_per_minute: cfg.login_per_minute,
        })?;
        Ok(Self::with_limits(
            handle,
            auth,
            library,
            Limits::from_config(cfg),
        ))
    }

    /// The server's limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The cross-site policy.
    pub fn site(&self) -> &SitePolicy {
        &self.inner.site
    }

    /// A WebSocket slot, if one is free.
    fn websocket_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, WebError> {
        self.inner
            .websockets
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                WebError::Unavailable(format!(
                    "too many WebSocket clients: at most {} at once (web.max_websockets); close \
                 another tab or phone",
                    self.inner.limits.max_websockets
                ))
            })
    }

    /// An upload slot, if one is free.
    fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, WebError> {
        self.inner.uploads.clone().try_acquire_owned().map_err(|_| {
            WebError::Unavailable(format!(
                "busy: {} uploads are already in progress (web.max_uploads); try again when \
                 they finish",
                self.inner.limits.max_uploads
            ))
        })
    }

    /// The node handle.
    pub fn handle(&self) -> &NodeHandle {
        &self.inner.handle
    }

    /// The auth policy.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The track library.
    pub fn library(&self) -> &Library {
        &self.inner.library
    }
}

/// Why a web request failed (the HTTP status follows from the variant) or the server could
/// not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The request is malformed: bad JSON, a missing field, a value out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The auth policy refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request guard refused it (cross-site, body type, no PIN and not loopback).
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// Nothing at this address.
    #[error("{0}")]
    NotFound(String),
    /// The node refused the command (unknown track, nothing to seek in…).
    #[error("the node refused: {0}")]
    Refused(String),
    /// The node is not running or its queue is full.
    #[error("{0}")]
    Unavailable(String),
    /// The requested byte range lies outside the track.
    #[error("range not satisfiable: the track has {len} bytes")]
    RangeNotSatisfiable {
        /// Track length, bytes.
        len: u64,
    },
    /// The library failed (storage, or a rejected upload).
    #[error(transparent)]
    Library(#[from] LibraryError),
}

impl From<HandleError> for WebError {
    fn from(e: HandleError) -> Self {
        match e {
            HandleError::Refused(why) => WebError::Refused(why.to_string()),
            other => WebError::Unavailable(other.to_string()),
        }
    }
}

impl WebError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Auth(AuthError::Locked { .. }) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Auth(AuthError::BadConfig(_) | AuthError::Random(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            WebError::Auth(_) => StatusCode::UNAUTHORIZED,
            WebError::Guard(GuardError::BodyType(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::Guard(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Refused(_) => StatusCode::CONFLICT,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            WebError::Library(e) => match e {
                LibraryError::BadHash(_) | LibraryError::BadName(_) => StatusCode::BAD_REQUEST,
                LibraryError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                LibraryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                LibraryError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
                LibraryError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut resp = (status, body).into_response();
        match &self {
            WebError::Auth(AuthError::Locked { retry_s, .. }) => {
                if let Ok(v) = retry_s.to_string().parse() {
                    resp.headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, v);
                }
            }
            WebError::RangeNotSatisfiable { len } => {
                if let Ok(v) = format!("bytes */{len}").parse() {
                    resp.headers_mut()
                        .insert(axum::http::header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// The router with every route and the auth middleware, ready for axum.
pub fn router(state: WebState) -> axum::Router {
    api::router(state)
}

/// Serve the app and API on `listener` until the listener fails.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
) -> impl Future<Output = std::io::Result<()>> {
    serve_with_shutdown(listener, state, std::future::pending())
}

/// Serve until `shutdown` completes, then finish in-flight requests and return. At most
/// `max_connections` connections are served at once (more are answered 503 and closed), and
/// a connection that does not send a request's headers within `header_timeout` (also
/// between keep-alive requests) is closed.
pub fn serve_with_shutdown(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = std::io::Result<()>> {
    let limits = state.limits().clone();
    let app = router(state);
    serve::run(listener, app, limits, shutdown)
}
