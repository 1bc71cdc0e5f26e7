//! Routes and handlers: requests in, [`Command`]s to the node, JSON out. Every error
//! status, including the ones axum answers itself (405, 413, a bad path), is JSON.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::auth::SESSION_COOKIE;
use super::echoflux::PlaybackStatus;
use super::guard::guard;
use super::tracks::track;
use super::{WebError, WebState};
use crate::clock::mono_ns;
use crate::control::{Command, NodeHandle, Origin, Snapshot};
use crate::led::protocol::Pattern;
use crate::library::LibraryError;

const INDEX_HTML: &str = include_str!("app/index.html");
const APP_JS: &str = include_str!("app/app.js");
const APP_CSS: &str = include_str!("app/app.css");
const OPENAPI_YAML: &str = include_str!("../../docs/web-api.yaml");

/// Largest JSON control body.
const CONTROL_BODY_LIMIT: usize = 16 * 1024;
/// While something plays, the WebSocket carries the live position this often (25/s),
/// besides every change and every beat.
const WS_LIVE_INTERVAL: Duration = Duration::from_millis(40);
/// Pushes closer together than this coalesce (at most 50/s, whatever changes).
const WS_MIN_INTERVAL: Duration = Duration::from_millis(20);

pub(super) fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| asset(INDEX_HTML, "text/html; charset=utf-8")))
        .route(
            "/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/api/openapi.yaml",
            get(|| asset(OPENAPI_YAML, "application/yaml")),
        )
        .route("/api/info", get(info))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/status", get(status))
        .route("/api/ws", get(ws))
        .route("/api/transport/{action}", post(transport))
        .route("/api/show/load", post(show_load))
        .route("/api/light/{what}", post(light))
        .route(
            "/api/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/tracks", get(tracks))
        .route("/api/tracks/{sha256}", get(track))
        .route("/api/playback/status", get(playback_status))
        .route("/api/playback/seek", post(playback_seek))
        .route("/api/playback/play", post(playback_play))
        .fallback(|| async { WebError::NotFound("no such page or API route".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            let mut resp = (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({ "error": format!("method {method} is not allowed on this route") })),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            resp
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(CONTROL_BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Largest plain-text error body turned into JSON.
const ERROR_TEXT_LIMIT: usize = 4096;

/// Give every error status a `{"error": ...}` body: axum's own answers (413 from the body
/// limit, a path or query it cannot parse) are plain text or empty.
async fn json_errors(request: Request, next: Next) -> Response {
    let resp = next.run(request).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = match (status, text.as_str()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the request body is larger than this route's {CONTROL_BODY_LIMIT}-byte limit")
        }
        (_, "") => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
        (_, t) => t.to_string(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&json!({ "error": error })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Parse a JSON body; an empty body is `{}` (so optional fields may be left out).
fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, WebError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| WebError::BadRequest(format!("{what}: {e}")))
}

async fn run(s: &WebState, addr: SocketAddr, command: Command) -> Result<Json<Value>, WebError> {
    s.handle()
        .execute(command, Origin::Web(addr.to_string()))
        .await?;
    Ok(Json(json!({ "ok": true })))
}

fn text_field(value: &str, field: &str, max: usize) -> Result<String, WebError> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(WebError::BadRequest(format!(
            "{field} must be 1-{max} bytes of text without control characters"
        )));
    }
    Ok(v.to_string())
}

fn position(position_ms: f64) -> Result<f64, WebError> {
    if position_ms.is_finite() && position_ms >= 0.0 {
        Ok(position_ms)
    } else {
        Err(WebError::BadRequest(format!(
            "position_ms must be a finite number ≥ 0, not {position_ms}"
        )))
    }
}

async fn info(State(s): State<WebState>, headers: HeaderMap) -> Json<Value> {
    let snap = s.handle().snapshot();
    Json(json!({
        "id": snap.id,
        "version": env!("CARGO_PKG_VERSION"),
        "pin_required": s.auth().pin_required(),
        "open_reads": s.auth().open_reads(),
        "authorized": s.auth().is_authorised(&headers),
        "patterns": Pattern::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "upload_max_bytes": s.library().config().max_bytes,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    pin: String,
}

async fn login(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let Login { pin } = parse(&body, "login")?;
    let token = s.auth().login(addr.ip(), &pin)?;
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({ "ok": true }))).into_response())
}

async fn logout() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Json(json!({ "ok": true }))).into_response()
}

async fn status(State(s): State<WebState>) -> Json<Snapshot> {
    Json(s.handle().snapshot_now())
}

async fn ws(State(s): State<WebState>, upgrade: WebSocketUpgrade) -> Result<Response, WebError> {
    let slot = s.websocket_slot()?;
    let handle = s.handle().clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        push_snapshots(socket, handle).await;
        drop(slot);
    }))
}

/// Send the snapshot with the live plane's position, beat and levels now, after every
/// change, every [`WS_LIVE_INTERVAL`] while something plays and at the instant each beat
/// is heard, until the client goes away.
async fn push_snapshots(mut socket: WebSocket, handle: NodeHandle) {
    let mut rx: watch::Receiver<Snapshot> = handle.watch();
    let live = handle.live().clone();
    let mut announced = live.announcements();
    let mut tick = tokio::time::interval(WS_LIVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent: Option<Snapshot> = None;
    let mut woke = mono_ns();
    let mut next_allowed = tokio::time::Instant::now();
    loop {
        if last_sent.as_ref() != Some(&handle.snapshot_now()) {
            // Changes closer together than WS_MIN_INTERVAL coalesce (a beat waits at most
            // that long behind a burst of changes).
            tokio::time::sleep_until(next_allowed).await;
            let snap = handle.snapshot_now();
            let Ok(text) = serde_json::to_string(&snap) else {
                return;
            };
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
            next_allowed = tokio::time::Instant::now() + WS_MIN_INTERVAL;
            last_sent = Some(snap);
        }
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    rx.borrow_and_update();
                }
                _ = tick.tick() => {}
                _ = crate::live::next_beat(&live, woke) => {}
                r = announced.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue; // a beat was announced: plan the wake again
                }
                msg = socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                }
            }
            break;
        }
        woke = mono_ns();
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    #[serde(default)]
    track: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    position_ms: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn play_command(body: &[u8], what: &str) -> Result<Command, WebError> {
    let PlayBody { track } = parse(body, what)?;
    let track = track.map(|t| text_field(&t, "track", 512)).transpose()?;
    Ok(Command::Play { track })
}

async fn transport(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(action): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let what = format!("transport/{action}");
    let command = match action.as_str() {
        "play" => play_command(&body, &what)?,
        "seek" => {
            let SeekBody { position_ms } = parse(&body, &what)?;
            Command::Seek {
                position_ms: position(position_ms)?,
            }
        }
        "stop" | "pause" | "next" => {
            let Empty {} = parse(&body, &what)?;
            match action.as_str() {
                "stop" => Command::Stop,
                "pause" => Command::Pause,
                _ => Command::Next,
            }
        }
        other => {
            return Err(WebError::NotFound(format!(
                "no transport action '{other}' (play, stop, pause, seek, next)"
            )))
        }
    };
    run(&s, addr, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

async fn show_load(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let NameBody { name } = parse(&body, "show/load")?;
    let name = text_field(&name, "name", 128)?;
    run(&s, addr, Command::ShowLoad { name }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HueBody {
    degrees: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrightBody {
    level: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColorBody {
    r: u8,
    g: u8,
    b: u8,
}

async fn light(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(what): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let ctx = format!("light/{what}");
    let command = match what.as_str() {
        "pattern" => {
            let NameBody { name } = parse(&body, &ctx)?;
            let pattern = Pattern::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
                WebError::BadRequest(format!(
                    "unknown pattern '{name}' (known: {})",
                    known.join(", ")
                ))
            })?;
            Command::Pattern {
                name: pattern.name().to_string(),
            }
        }
        "hue" => {
            let HueBody { degrees } = parse(&body, &ctx)?;
            if !degrees.is_finite() {
                return Err(WebError::BadRequest(
                    "degrees must be a finite number".into(),
                ));
            }
            Command::Hue {
                degrees: degrees.rem_euclid(360.0) as u16 % 360,
            }
        }
        "bright" => {
            let BrightBody { level } = parse(&body, &ctx)?;
            if !(level.is_finite() && (0.0..=1.0).contains(&level)) {
                return Err(WebError::BadRequest(format!(
                    "level must be between 0 and 1, not {level}"
                )));
            }
            Command::Bright {
                level: level as f32,
            }
        }
        "color" => {
            let ColorBody { r, g, b } = parse(&body, &ctx)?;
            Command::Color { r, g, b }
        }
        other => {
            return Err(WebError::NotFound(format!(
                "no light setting '{other}' (pattern, hue, bright, color)"
            )))
        }
    };
    run(&s, addr, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn upload(
    State(s): State<WebState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let Query(q) = Query::<UploadQuery>::try_from_uri(&uri)
        .map_err(|e| WebError::BadRequest(format!("upload query: {}", e.body_text())))?;
    let kind = q.kind.as_deref().unwrap_or("track");
    let limits = s.limits();
    let limit = match kind {
        "track" => s.library().config().max_bytes,
        "show" => limits.show_max_bytes,
        other => {
            return Err(WebError::BadRequest(format!(
                "upload kind must be track or show, not '{other}'"
            )))
        }
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(LibraryError::TooLarge {
            what: format!("a {kind} upload"),
            limit,
        }
        .into());
    }
    let _slot = s.upload_slot()?;
    let quota = Some(limits.library_max_bytes);
    let chunks = std::pin::pin!(stalling_after(body, limits.header_timeout));
    if kind == "track" {
        let (hash, path) = s.library().store_track_within(chunks, quota).await?;
        let bytes = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let format = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        return Ok((
            StatusCode::CREATED,
            Json(json!({
                "kind": "track", "sha256": hash.to_string(), "format": format, "bytes": bytes,
            })),
        ));
    }
    let name = q
        .name
        .ok_or_else(|| WebError::BadRequest("a show upload needs ?name=<file>.toml".into()))?;
    let (_, bytes) = s
        .library()
        .store_show(&name, chunks, limit, quota, check_show)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "kind": "show", "name": name, "bytes": bytes })),
    ))
}

/// The show model's own check, as `convoy show --check` runs it, of an uploaded show that
/// will live at `path`. Its problems, one per line, are the refusal.
fn check_show(text: &str, path: &std::path::Path) -> Result<(), String> {
    crate::show::Show::parse(text, path)
        .map(|_| ())
        .map_err(|e| match e {
            crate::show::model::ShowError::Invalid { problems, .. } => problems
                .iter()
                .map(|p| format!("line {}: {}", p.line, p.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
}

/// The request body as a stream of chunks that fails when the client sends nothing for
/// `stall` (a slow or stalled upload does not hold its slot for ever).
fn stalling_after(
    body: Body,
    stall: Duration,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, String>> {
    let data = body.into_data_stream();
    futures_util::stream::unfold(Some(data), move |state| async move {
        use futures_util::StreamExt;
        let mut data = state?;
        match tokio::time::timeout(stall, data.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(data))),
            Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
            Err(_) => Some((
                Err(format!(
                    "nothing arrived for {:.0} s (web.header_timeout_s)",
                    stall.as_secs_f64()
                )),
                None,
            )),
        }
    })
}

async fn tracks(State(s): State<WebState>) -> Result<Json<Value>, WebError> {
    Ok(Json(json!({ "tracks": s.library().tracks()? })))
}

async fn playback_status(State(s): State<WebState>) -> Json<PlaybackStatus> {
    Json(PlaybackStatus::from_snapshot(&s.handle().snapshot_now()))
}

async fn playback_seek(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let SeekBody { position_ms } = parse(&body, "playback/seek")?;
    let command = Command::Seek {
        position_ms: position(position_ms)?,
    };
    run(&s, addr, command).await
}

async fn playback_play(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, WebError> {
    let command = play_command(&body, "playback/play")?;
    run(&s, addr, command).await
}
