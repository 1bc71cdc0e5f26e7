//! Following Ableton Live through AbletonOSC (`osc.follow = "ableton"`).
//!
//! AbletonOSC (github.com/ideoforms/AbletonOSC, README "Usage") listens on port 11000 and
//! answers on port 11001 of the asking host; a listener started with
//! `/live/song/start_listen/<property>` pushes every change as `/live/song/get/<property>`
//! (its current value at once, then each change). [`run`] owns a socket bound to
//! `osc.ableton_reply_port`, subscribes from it to Live's `beat`, `tempo` and `is_playing`
//! at `osc.ableton_host:osc.ableton_port`, and hands what comes back from that host to the
//! [`Executor`]'s DAW [`Follower`](super::follow::Follower). A beat listener is silent while
//! Live is stopped, so liveness is asked for: every [`PING`] a `/live/song/get/tempo` (a
//! getter is always answered). Live that has not answered for [`LOST_AFTER`] has gone (quit,
//! crashed, restarted, the script reloaded); the first answer after that — a fresh Live —
//! is re-subscribed at once, since a new Live has forgotten the old listeners, and so is a
//! `/live/startup` (which newer AbletonOSC sends when it starts). Until a listener has
//! answered (`is_playing`, which only the listener sends: AbletonOSC answers
//! `start_listen` with the current value), the listeners are asked for again at every
//! [`PING`]: Live started after Convoy answers the ping within [`LOST_AFTER`] but never
//! heard the first requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;

use super::codec;
use super::dispatch::Executor;
use super::feedback::Peer;
use super::follow::DawEvent;

/// How often Live is asked for its tempo (liveness).
pub const PING: Duration = Duration::from_secs(1);
/// Live is taken for gone after this long without a word.
pub const LOST_AFTER: Duration = Duration::from_secs(3);
/// The listeners Convoy starts.
pub const LISTEN: [&str; 3] = [
    "/live/song/start_listen/beat",
    "/live/song/start_listen/tempo",
    "/live/song/start_listen/is_playing",
];
const GET_TEMPO: &str = "/live/song/get/tempo";
/// Only a listener sends it: proof the listeners run.
const IS_PLAYING: &str = "/live/song/get/is_playing";
/// Sent by AbletonOSC when it starts (README, "Application status messages").
const STARTUP: &str = "/live/startup";

/// What one message from Live means to the follower.
pub fn event(m: &OscMessage) -> Option<DawEvent> {
    let v = match m.args.last()? {
        OscType::Int(i) => f64::from(*i),
        OscType::Float(f) => f64::from(*f),
        OscType::Double(d) => *d,
        OscType::Long(l) => *l as f64,
        OscType::Bool(b) => f64::from(u8::from(*b)),
        _ => return None,
    };
    match m.addr.as_str() {
        "/live/song/get/beat" => Some(DawEvent::Beat(v)),
        GET_TEMPO => Some(DawEvent::Tempo(v)),
        IS_PLAYING => Some(DawEvent::IsPlaying(v != 0.0)),
        _ => None,
    }
}

async fn send(socket: &UdpSocket, to: SocketAddr, addr: &str) {
    let p = OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args: Vec::new(),
    });
    if let Ok(bytes) = codec::encode(&p) {
        if let Err(e) = socket.send_to(&bytes, to).await {
            tracing::debug!(%to, error = %e, "AbletonOSC send failed");
        }
    }
}

/// Subscribe to `live` from `socket` and follow what it sends until the task is aborted.
pub async fn run(socket: UdpSocket, live: SocketAddr, exec: Arc<Executor>) {
    let socket = Arc::new(socket);
    let subscribe = |s: Arc<UdpSocket>| async move {
        for a in LISTEN {
            send(&s, live, a).await;
        }
    };
    subscribe(socket.clone()).await;
    tracing::info!(%live, "following Ableton Live through AbletonOSC");
    let mut heard = tokio::time::Instant::now();
    let mut lost = false;
    // A listener has answered since the last subscription.
    let mut listening = false;
    let mut ping = tokio::time::interval(PING);
    ping.tick().await; // the first tick is now: the subscription above
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if !lost && heard.elapsed() > LOST_AFTER {
                    lost = true;
                    tracing::warn!(%live, "Ableton Live stopped answering; waiting for it");
                }
                if !listening {
                    subscribe(socket.clone()).await;
                }
                send(&socket, live, GET_TEMPO).await;
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                if from.ip() != live.ip() {
                    tracing::debug!(%from, "datagram on the AbletonOSC port from another host ignored");
                    continue;
                }
                heard = tokio::time::Instant::now();
                if std::mem::replace(&mut lost, false) {
                    tracing::info!(%live, "Ableton Live answers again; listening anew");
                    listening = false;
                    subscribe(socket.clone()).await;
                }
                let Ok(packet) = codec::decode(&buf[..n]) else { continue };
                let mut msgs = Vec::new();
                flatten(packet, &mut msgs);
                // Newer AbletonOSC announces a (re)start.
                if msgs.iter().any(|m| m.addr == STARTUP) {
                    tracing::info!(%live, "AbletonOSC started; listening anew");
                    listening = false;
                    subscribe(socket.clone()).await;
                }
                if msgs.iter().any(|m| m.addr == IS_PLAYING) {
                    listening = true;
                }
                let peer = Peer::Udp { socket: socket.clone(), addr: from };
                for ev in msgs.iter().filter_map(event) {
                    exec.follow(&peer, ev);
                }
            }
        }
    }
}

fn flatten(p: OscPacket, out: &mut Vec<OscMessage>) {
    match p {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|c| flatten(c, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_replies_become_follow_events() {
        let m = |a: &str, args| OscMessage {
            addr: a.into(),
            args,
        };
        assert_eq!(
            event(&m("/live/song/get/beat", vec![OscType::Int(17)])),
            Some(DawEvent::Beat(17.0))
        );
        assert_eq!(
            event(&m("/live/song/get/tempo", vec![OscType::Float(128.0)])),
            Some(DawEvent::Tempo(128.0))
        );
        assert_eq!(
            event(&m("/live/song/get/is_playing", vec![OscType::Bool(false)])),
            Some(DawEvent::IsPlaying(false))
        );
        assert_eq!(event(&m("/live/song/get/beat", vec![])), None);
        assert_eq!(
            event(&m("/live/test", vec![OscType::String("ok".into())])),
            None
        );
    }
}
