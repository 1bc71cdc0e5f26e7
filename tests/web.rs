//! The web server end to end over real TCP: control requests reach the node as commands,
//! the PIN policy holds, the WebSocket pushes snapshots, uploads and ranged downloads work,
//! track sharing resumes, rejects corruption and keeps to its bandwidth cap, and the
//! EchoFlux follower steers a node after another player.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use convoy::control::{Command, NodeHandle, Snapshot};
use convoy::library::client::{read_body, HttpClient};
use convoy::library::{Library, LibraryConfig, TrackHash};
use convoy::web::echoflux::{Action, Follower, FollowerConfig};
use convoy::web::{self, Auth, AuthConfig, Limits, WebState};
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A running server on 127.0.0.1:0 with a demo node behind it.
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub handle: NodeHandle,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub library: Library,
    _dir: tempfile::TempDir,
}

pub async fn start(pin: &str, open_reads: bool, rate: u64) -> Server {
    start_with(pin, open_reads, rate, 2, Limits::default(), None).await
}

/// [`start`] with the library's download `attempts`, the server's `limits`, and with
/// `peer`, every request appearing to come from that address (axum's `MockConnectInfo`),
/// as a phone on the WiFi would.
pub async fn start_with(
    pin: &str,
    open_reads: bool,
    rate: u64,
    attempts: u32,
    limits: Limits,
    peer: Option<SocketAddr>,
) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let library = Library::open(LibraryConfig {
        dir: dir.path().join("library"),
        max_bytes: 8 * 1024 * 1024,
        rate,
        timeout: Duration::from_secs(2),
        attempts,
        pin: None,
    })
    .expect("library");
    let auth = Auth::new(&AuthConfig {
        pin: pin.into(),
        open_reads,
        login_burst: 3,
        login_per_minute: 6.0,
    })
    .expect("auth");
    let (handle, inbox) = NodeHandle::channel(convoy::rig::web_sim::initial_snapshot());
    let (seen, commands) = mpsc::unbounded_channel();
    tokio::spawn(convoy::rig::web_sim::run(inbox, Some(seen)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = WebState::with_limits(handle.clone(), auth, library.clone(), limits);
    match peer {
        None => {
            tokio::spawn(web::serve(listener, state));
        }
        Some(peer) => {
            let app = web::router(state).layer(axum::extract::connect_info::MockConnectInfo(peer));
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
    }
    Server {
        base: format!("http://{addr}"),
        addr,
        handle,
        commands,
        library,
        _dir: dir,
    }
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub set_cookie: Option<String>,
    pub retry_after: Option<String>,
}

pub async fn http(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client = HttpClient::new(Duration::from_secs(5));
    let body = (!body.is_empty()).then(|| body.to_string().into());
    let mut headers = headers.to_vec();
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let mut resp = client
        .send(method, url, &headers, body)
        .await
        .expect("request");
    let set_cookie = resp.header("set-cookie").map(str::to_string);
    let retry_after = resp.header("retry-after").map(str::to_string);
    let bytes = read_body(&mut resp, 1 << 20).await.expect("body");
    Reply {
        status: resp.status(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        set_cookie,
        retry_after,
    }
}

async fn post(url: &str, body: &str) -> Reply {
    http(Method::POST, url, &[], body).await
}

fn error_of(reply: &Reply) -> String {
    let v: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON error body");
    v["error"].as_str().expect("error field").to_string()
}

#[tokio::test]
async fn control_requests_become_commands_and_bad_ones_say_why() {
    let mut s = start("", true, 0).await;
    for (path, body, want) in [
        ("/api/transport/play", "", Command::Play { track: None }),
        (
            "/api/transport/play",
            r#"{"track":"song.flac"}"#,
            Command::Play {
                track: Some("song.flac".into()),
            },
        ),
        (
            "/api/transport/seek",
            r#"{"position_ms": 1500}"#,
            Command::Seek {
                position_ms: 1500.0,
            },
        ),
        ("/api/transport/pause", "", Command::Pause),
        ("/api/transport/next", "", Command::Next),
        ("/api/transport/stop", "", Command::Stop),
        (
            "/api/show/load",
            r#"{"name":"night-ride"}"#,
            Command::ShowLoad {
                name: "night-ride".into(),
            },
        ),
        (
            "/api/light/pattern",
            r#"{"name":"Chase"}"#,
            Command::Pattern {
                name: "chase".into(),
            },
        ),
        (
            "/api/light/hue",
            r#"{"degrees": -30}"#,
            Command::Hue { degrees: 330 },
        ),
        (
            "/api/light/bright",
            r#"{"level": 0.5}"#,
            Command::Bright { level: 0.5 },
        ),
        (
            "/api/light/color",
            r#"{"r":255,"g":0,"b":64}"#,
            Command::Color {
                r: 255,
                g: 0,
                b: 64,
            },
        ),
        (
            "/api/playback/seek",
            r#"{"position_ms": 2000.5}"#,
            Command::Seek {
                position_ms: 2000.5,
            },
        ),
        (
            "/api/playback/play",
            r#"{"track":"demo"}"#,
            Command::Play {
                track: Some("demo".into()),
            },
        ),
    ] {
        let r = post(&format!("{}{path}", s.base), body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(s.commands.recv().await, Some(want), "{path}");
    }

    for (path, body, status, needle) in [
        (
            "/api/transport/seek",
            r#"{"position_ms": -1}"#,
            400,
            "position_ms",
        ),
        (
            "/api/transport/seek",
            "{}",
            400,
            "missing field `position_ms`",
        ),
        ("/api/transport/rewind", "", 404, "rewind"),
        (
            "/api/light/pattern",
            r#"{"name":"disco"}"#,
            400,
            "known: off",
        ),
        ("/api/light/color", r#"{"r":256,"g":0,"b":0}"#, 400, "256"),
        (
            "/api/light/bright",
            r#"{"level": 2}"#,
            400,
            "between 0 and 1",
        ),
        ("/api/transport/stop", r#"{"now":true}"#, 400, "now"),
        ("/api/show/load", "not json", 400, "show/load"),
        // The node itself refuses: 409 with its reason.
        (
            "/api/transport/seek",
            r#"{"position_ms": 1e12}"#,
            409,
            "past the end",
        ),
    ] {
        let r = post(&format!("{}{path}", s.base), body).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        assert!(error_of(&r).contains(needle), "{path}: {}", r.body);
    }
    assert!(
        s.commands.try_recv().is_err(),
        "no command from a bad request"
    );

    let st = http(Method::GET, &format!("{}/api/status", s.base), &[], "").await;
    let snap: Snapshot = serde_json::from_str(&st.body).expect("snapshot JSON");
    assert_eq!(snap.id, "bike-1");
    assert_eq!(snap.light.pattern, "chase");
    let pb = http(
        Method::GET,
        &format!("{}/api/playback/status", s.base),
        &[],
        "",
    )
    .await;
    let pb: serde_json::Value = serde_json::from_str(&pb.body).expect("json");
    assert_eq!(pb["track"], "demo");
    assert!(pb["position_ms"].is_number() && pb["playing"].is_boolean());
    let app = http(Method::GET, &format!("{}/", s.base), &[], "").await;
    assert!(app.status == 200 && app.body.contains("/app.js"));
    let spec = http(
        Method::GET,
        &format!("{}/api/openapi.yaml", s.base),
        &[],
        "",
    )
    .await;
    assert!(spec.body.contains("/api/playback/status"));
}

#[tokio::test]
async fn with_a_pin_nothing_changes_without_it() {
    let mut s = start("4321", true, 0).await;
    let play = format!("{}/api/transport/play", s.base);
    // No credentials, wrong PIN, forged cookie: 401, and the node hears nothing.
    assert_eq!(post(&play, "").await.status, 401);
    let wrong = http(Method::POST, &play, &[("x-convoy-pin", "0000")], "").await;
    assert_eq!(
        (wrong.status, error_of(&wrong).as_str()),
        (401, "wrong PIN")
    );
    let forged = http(
        Method::POST,
        &play,
        &[("cookie", "convoy_session=deadbeef")],
        "",
    )
    .await;
    assert_eq!(forged.status, 401);
    let upload = http(
        Method::POST,
        &format!("{}/api/upload", s.base),
        &[],
        "RIFF\0\0\0\0WAVE",
    )
    .await;
    assert_eq!(upload.status, 401);
    assert!(s.commands.try_recv().is_err());
    // Reads stay open.
    let st = http(Method::GET, &format!("{}/api/status", s.base), &[], "").await;
    assert_eq!(st.status, 200);

    // The header works, and so does the cookie from a login.
    let ok = http(Method::POST, &play, &[("x-convoy-pin", "4321")], "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(s.commands.recv().await, Some(Command::Play { track: None }));
    let login = post(&format!("{}/api/login", s.base), r#"{"pin":"4321"}"#).await;
    assert_eq!(login.status, 200);
    let cookie = login.set_cookie.expect("set-cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().expect("pair").to_string();
    let info = http(
        Method::GET,
        &format!("{}/api/info", s.base),
        &[("cookie", &session)],
        "",
    )
    .await;
    assert!(info.body.contains(r#""authorized":true"#), "{}", info.body);
    let stop = http(
        Method::POST,
        &format!("{}/api/transport/stop", s.base),
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(stop.status, 200);
    assert_eq!(s.commands.recv().await, Some(Command::Stop));

    // Wrong PINs are rate-limited: after the burst even the right PIN is refused (429).
    for _ in 0..2 {
        let r = post(&format!("{}/api/login", s.base), r#"{"pin":"1111"}"#).await;
        assert_eq!(r.status, 401);
    }
    let locked = post(&format!("{}/api/login", s.base), r#"{"pin":"4321"}"#).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.retry_after.is_some());
    let locked = http(Method::POST, &play, &[("x-convoy-pin", "4321")], "").await;
    assert_eq!(locked.status, 429);
    assert!(s.commands.try_recv().is_err());
}

#[tokio::test]
async fn closed_reads_need_the_pin_too() {
    let s = start("4321", false, 0).await;
    let url = format!("{}/api/status", s.base);
    assert_eq!(http(Method::GET, &url, &[], "").await.status, 401);
    assert_eq!(
        http(Method::GET, &url, &[("x-convoy-pin", "4321")], "")
            .await
            .status,
        200
    );
    // The app shell and /api/info stay reachable so the phone can show the PIN sheet.
    assert_eq!(http(Method::GET, &s.base, &[], "").await.status, 200);
    let info = http(Method::GET, &format!("{}/api/info", s.base), &[], "").await;
    assert!(info.body.contains(r#""open_reads":false"#), "{}", info.body);
}

#[tokio::test]
async fn the_websocket_pushes_every_change_at_most_fifty_per_second() {
    use futures_util::StreamExt;
    let s = start("", true, 0).await;
    let ws_url = format!("{}/api/ws", s.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connects");
    let first = ws.next().await.expect("message").expect("ok");
    let snap: Snapshot = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(snap.id, "bike-1");
    // The demo node publishes every 50 ms (20/s); count what arrives in 1.5 s.
    let start = Instant::now();
    let mut n = 0;
    let mut playing_seen = false;
    s.handle
        .execute(
            Command::Play { track: None },
            convoy::control::Origin::Internal,
        )
        .await
        .expect("play");
    while start.elapsed() < Duration::from_millis(1500) {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(msg))) => {
                n += 1;
                let snap: Snapshot =
                    serde_json::from_str(msg.to_text().expect("text")).expect("json");
                playing_seen |= snap.playing;
            }
            other => panic!("websocket ended: {other:?}"),
        }
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    eprintln!("websocket: {n} snapshots in 1.5 s ({rate:.1}/s)");
    assert!(
        playing_seen,
        "the play command shows up in a pushed snapshot"
    );
    // Every change goes out (the live plane's 20 Hz and more), coalesced at 50/s at most.
    assert!((15.0..=50.5).contains(&rate), "{rate}/s");
}

/// A real 8 kHz 16-bit mono WAV file with `n` bytes of noise (uploads are probed as audio).
pub fn wav(n: usize, seed: u8) -> Vec<u8> {
    let n = n & !1;
    let mut v = b"RIFF".to_vec();
    v.extend(((36 + n) as u32).to_le_bytes());
    v.extend(b"WAVEfmt ");
    for field in [16u32, 0x0001_0001, 8000, 16_000, 0x0010_0002] {
        v.extend(field.to_le_bytes());
    }
    v.extend(b"data");
    v.extend((n as u32).to_le_bytes());
    let mut x = u32::from(seed) | 1;
    v.extend((0..n).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    v
}

#[tokio::test]
async fn uploads_land_in_the_library_and_download_with_ranges() {
    let s = start("", true, 0).await;
    let bytes = wav(300_000, 7);
    let client = HttpClient::new(Duration::from_secs(5));
    let mut resp = client
        .send(
            Method::POST,
            &format!("{}/api/upload?kind=track", s.base),
            &[],
            Some(bytes.clone().into()),
        )
        .await
        .expect("upload");
    let body = read_body(&mut resp, 1 << 16).await.expect("body");
    assert_eq!(resp.status(), 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let hash = TrackHash::of(&bytes).to_string();
    assert_eq!(v["sha256"], hash);
    assert_eq!(v["format"], "wav");

    let url = format!("{}/api/tracks/{hash}", s.base);
    let mut full = client.get(&url, &[]).await.expect("get");
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(read_body(&mut full, 1 << 20).await.expect("body"), bytes);
    let mut part = client
        .get(&url, &[("range", "bytes=1000-1999")])
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000-1999/{}", bytes.len()).as_str())
    );
    assert_eq!(
        read_body(&mut part, 1 << 20).await.expect("body"),
        &bytes[1000..2000]
    );
    let past = client
        .get(&url, &[("range", "bytes=999999999-")])
        .await
        .expect("416");
    assert_eq!(past.status(), 416);
    let missing = http(
        Method::GET,
        &format!("{}/api/tracks/{}", s.base, "0".repeat(64)),
        &[],
        "",
    )
    .await;
    assert_eq!(missing.status, 404);
    let bad = http(Method::GET, &format!("{}/api/tracks/xyz", s.base), &[], "").await;
    assert_eq!(bad.status, 400);

    let html = post(&format!("{}/api/upload", s.base), "<html></html>").await;
    assert_eq!(html.status, 415, "{}", html.body);
    let show = post(
        &format!("{}/api/upload?kind=show&name=night.toml", s.base),
        "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\n",
    )
    .await;
    assert_eq!(show.status, 201, "{}", show.body);
    assert!(s.library.dir().join("shows/night.toml").is_file());
    let list = http(Method::GET, &format!("{}/api/tracks", s.base), &[], "").await;
    assert!(list.body.contains(&hash));
}

/// A one-shot fake peer: answers the first request with `first_len` bytes of `body` under a
/// full Content-Length and then drops the connection; later requests are served properly
/// (honouring `Range`). Every request's Range header is reported.
async fn flaky_peer(
    body: Vec<u8>,
    first_len: usize,
) -> (String, mpsc::UnboundedReceiver<Option<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_lowercase();
            let range = text
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .map(|r| r.trim().to_string());
            let _ = tx.send(range.clone());
            let start: usize = range
                .as_deref()
                .and_then(|r| r.trim_end_matches('-').parse().ok())
                .unwrap_or(0);
            let rest = &body[start..];
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{}\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", rest.len())
            };
            let _ = sock.write_all(head.as_bytes()).await;
            let send = if first { &rest[..first_len] } else { rest };
            first = false;
            let _ = sock.write_all(send).await;
            let _ = sock.shutdown().await;
        }
    });
    (base, rx)
}

fn plain_library(dir: &Path, rate: u64) -> Library {
    Library::open(LibraryConfig {
        dir: dir.to_path_buf(),
        max_bytes: 16 * 1024 * 1024,
        rate,
        timeout: Duration::from_secs(2),
        attempts: 3,
        pin: None,
    })
    .expect("library")
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "shows")
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_from_the_part_file() {
    let body = wav(400_000, 3);
    let hash = TrackHash::of(&body);
    let (peer, mut ranges) = flaky_peer(body.clone(), 150_000).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = plain_library(tmp.path(), 0);
    let mut last = None;
    let path = lib
        .ensure_with(hash, &[peer], |p| last = Some(p.clone()))
        .await
        .expect("fetched after a resume");
    assert_eq!(std::fs::read(&path).expect("read"), body);
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(format!("{hash}.wav").as_str())
    );
    assert_eq!(ranges.recv().await, Some(None), "first request: whole file");
    assert_eq!(
        ranges.recv().await,
        Some(Some("150000-".into())),
        "second request resumes at the part length"
    );
    let last = last.expect("progress reported");
    let n = body.len() as u64;
    assert_eq!((last.received, last.total), (n, Some(n)));
    assert_eq!(file_names(tmp.path()), vec![format!("{hash}.wav")]);
    // Already there: no network at all.
    assert_eq!(lib.ensure(hash, &[]).await.expect("cached"), path);
}

#[tokio::test]
async fn a_corrupt_transfer_is_rejected_and_not_kept() {
    let good = wav(200_000, 5);
    let mut bad = good.clone();
    bad[100_000] ^= 0x40;
    let hash = TrackHash::of(&good);
    let (peer, _ranges) = flaky_peer(bad.clone(), bad.len()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = plain_library(tmp.path(), 0);
    let err = lib
        .ensure(hash, std::slice::from_ref(&peer))
        .await
        .expect_err("corrupt");
    assert!(err.to_string().contains("discarded"), "{err}");
    assert!(lib.path(&hash).is_none());
    assert!(
        file_names(tmp.path()).is_empty(),
        "{:?}",
        file_names(tmp.path())
    );

    // A second, honest peer later in the list supplies it.
    let s = start("", true, 0).await;
    s.library
        .store_track(futures_util::stream::iter([Ok::<_, std::io::Error>(
            good.clone().into(),
        )]))
        .await
        .expect("seed");
    let path = lib
        .ensure(hash, &[peer, s.base.clone()])
        .await
        .expect("from the honest peer");
    assert_eq!(std::fs::read(path).expect("read"), good);
}

#[tokio::test]
async fn sharing_keeps_to_its_bandwidth_cap() {
    const CAP: u64 = 512 * 1024;
    let body = wav(1024 * 1024, 9);
    let hash = TrackHash::of(&body);
    // The serving node is uncapped here; the downloader's own bucket must hold the rate.
    let s = start("", true, 0).await;
    s.library
        .store_track(futures_util::stream::iter([Ok::<_, std::io::Error>(
            body.clone().into(),
        )]))
        .await
        .expect("seed");
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = plain_library(tmp.path(), CAP);
    let start = Instant::now();
    lib.ensure(hash, std::slice::from_ref(&s.base))
        .await
        .expect("fetched");
    let secs = start.elapsed().as_secs_f64();
    let rate = body.len() as f64 / secs;
    eprintln!(
        "share cap {} KiB/s: {} KiB in {secs:.2} s = {:.0} KiB/s",
        CAP / 1024,
        body.len() / 1024,
        rate / 1024.0
    );
    // The first burst (a quarter second of rate) is free; beyond it the bucket holds.
    let burst = (CAP / 4) as f64;
    let bound = CAP as f64 * 1.05;
    assert!(
        (body.len() as f64 - burst) / secs <= bound,
        "{rate} B/s over a {CAP} B/s cap"
    );
    assert!(rate >= CAP as f64 * 0.7, "{rate} B/s is far under the cap");
}

#[tokio::test]
async fn the_echoflux_follower_steers_a_node_after_another_player() {
    // The "external player" is a Convoy web server whose demo node we drive directly.
    let player = start("", true, 0).await;
    let (handle, inbox) = NodeHandle::channel(Snapshot::default());
    let (seen, mut commands) = mpsc::unbounded_channel();
    tokio::spawn(convoy::rig::web_sim::run(inbox, Some(seen)));
    let mut follower = Follower::new(
        FollowerConfig {
            url: player.base.clone(),
            poll: Duration::from_millis(50),
            threshold_ms: 150.0,
            holdoff: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
        },
        handle.clone(),
    );
    // Both stopped: nothing to do.
    assert_eq!(follower.poll_once().await.expect("poll"), Action::Keep);
    let origin = convoy::control::Origin::Internal;
    player
        .handle
        .execute(
            Command::Seek {
                position_ms: 12_000.0,
            },
            origin.clone(),
        )
        .await
        .expect("seek");
    player
        .handle
        .execute(
            Command::Play {
                track: Some("night-ride.flac".into()),
            },
            origin.clone(),
        )
        .await
        .expect("play");
    match follower.poll_once().await.expect("poll") {
        Action::Start { track, position_ms } => {
            assert_eq!(track.as_deref(), Some("night-ride.flac"));
            assert!((12_000.0..13_000.0).contains(&position_ms), "{position_ms}");
        }
        other => panic!("expected a start, got {other:?}"),
    }
    assert_eq!(
        commands.recv().await,
        Some(Command::Play {
            track: Some("night-ride.flac".into())
        })
    );
    assert!(matches!(commands.recv().await, Some(Command::Seek { .. })));
    assert_eq!(follower.poll_once().await.expect("poll"), Action::HoldOff);

    // The player jumps; after the hold-off the follower seeks after it.
    player
        .handle
        .execute(
            Command::Seek {
                position_ms: 25_000.0,
            },
            origin.clone(),
        )
        .await
        .expect("seek");
    tokio::time::sleep(Duration::from_millis(350)).await;
    match follower.poll_once().await.expect("poll") {
        Action::Seek { position_ms } => assert!((25_000.0..26_000.0).contains(&position_ms)),
        other => panic!("expected a seek, got {other:?}"),
    }
    assert!(
        matches!(commands.recv().await, Some(Command::Seek { position_ms }) if position_ms >= 25_000.0)
    );

    // The player stops; so do we.
    player
        .handle
        .execute(Command::Stop, origin)
        .await
        .expect("stop");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(follower.poll_once().await.expect("poll"), Action::Stop);
    assert_eq!(commands.recv().await, Some(Command::Stop));

    // An unreachable player is an error and changes nothing.
    let mut lost = Follower::new(
        FollowerConfig {
            url: "http://127.0.0.1:9".into(),
            poll: Duration::from_millis(50),
            threshold_ms: 150.0,
            holdoff: Duration::ZERO,
            timeout: Duration::from_millis(500),
        },
        handle,
    );
    assert!(lost.poll_once().await.is_err());
    assert!(commands.try_recv().is_err());
}
