//! Connections: the accept loop with a connection cap, a header/idle timeout, WebSocket
//! upgrades and a graceful stop.
//!
//! `axum::serve` accepts every connection and keeps an idle one for hyper's default 30 s,
//! so 200 idle clients held 200 file descriptors for 30 s. Here each connection takes a
//! permit of a semaphore of `max_connections`; without one it gets a canned 503 JSON answer
//! (written without waiting) and is closed at once, so the descriptors a client can hold are
//! bounded. hyper's `header_read_timeout` closes a connection that has not sent a request's
//! headers within `header_timeout`; hyper also arms it while a keep-alive connection waits
//! for its next request, so it is the idle timeout too. An upgraded connection (a
//! WebSocket) leaves this loop and is limited by `max_websockets` instead.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::Limits;

/// How long to wait for in-flight requests after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Serve `app` on `listener` within `limits` until `shutdown` completes.
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin, and keep serving.
                    tracing::debug!("web: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(&stream, cap);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        let timeout = limits.header_timeout;
        tokio::spawn(async move {
            serve_one(stream, peer, app, timeout, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Every connection gives its permit back when its last request is answered.
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(cap as u32)).await;
    Ok(())
}

/// One HTTP/1.1 connection, until the client closes it, it times out or the server stops.
async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let inner = TowerToHyperService::new(app);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&inner, req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("web: connection from {peer}: {e}");
            }
        }
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answer a connection over the cap with a 503 and close it, without waiting for it.
fn refuse(stream: &TcpStream, cap: usize) {
    let body = format!(
        "{{\"error\":\"too many connections: at most {cap} at once (web.max_connections); try \
         again shortly\"}}"
    );
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A fresh socket's send buffer takes this at once; if not, closing is answer enough.
    let _ = stream.try_write(reply.as_bytes());
}
