//! A small tokio UDP listener for the external (unsigned) OSC control port.
//!
//! [`run_control_server`] receives datagrams, decodes them with the bounded
//! codec, passes each message address through [`Guard::check_control`]
//! (address rate limit, source subnets, optional secret prefix; refusals are
//! counted), parses the stripped address into a [`Command`] and hands it to
//! an mpsc channel without ever blocking the socket loop (a full channel
//! drops the command with a warning). Address patterns are expanded to the
//! literal methods they select. Bundle timetags are not scheduled: bundle
//! contents are dispatched on arrival. With `reply` enabled, every message
//! that passed the policy is answered with a QLab-style `/reply/<address>`
//! JSON status.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rosc::{OscMessage, OscPacket};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::codec::{self, DecodeLimits};
use super::command::{self, Command, CommandParser};
use super::pattern::has_wildcards;
use crate::security::guard::Guard;
use crate::security::replay::FleetClock;
use crate::security::stats::RejectReason;

/// A command received on the control port.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlEvent {
    /// Who sent it.
    pub src: SocketAddr,
    /// What they asked for.
    pub command: Command,
}

/// Control-server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlServerConfig {
    /// Decode limits for incoming packets.
    pub limits: DecodeLimits,
    /// Answer each accepted message with `/reply/<address>`.
    pub reply: bool,
}

impl Default for ControlServerConfig {
    fn default() -> Self {
        Self {
            limits: DecodeLimits {
                max_packet: 8192,
                ..DecodeLimits::default()
            },
            reply: false,
        }
    }
}

/// Serves the control port until the receiver of `tx` is dropped or the
/// socket fails. `guard` is shared with whoever else needs its counters.
pub async fn run_control_server(
    socket: UdpSocket,
    guard: Arc<Mutex<Guard>>,
    clock: impl FleetClock,
    cfg: ControlServerConfig,
    tx: mpsc::Sender<ControlEvent>,
) -> std::io::Result<()> {
    let parser = CommandParser::new();
    let mut buf = vec![0u8; cfg.limits.max_packet + 1];
    let mut replies = Vec::new();
    while !tx.is_closed() {
        let (len, src) = socket.recv_from(&mut buf).await?;
        let now = clock.now_ns();
        let packet = match codec::decode_with(&buf[..len], &cfg.limits) {
            Ok(p) => p,
            Err(e) => {
                lock(&guard).stats().record(RejectReason::Malformed);
                tracing::debug!(%src, error = %e, "malformed control packet");
                continue;
            }
        };
        let mut messages = Vec::new();
        flatten(packet, &mut messages);
        replies.clear();
        for msg in messages {
            let checked = lock(&guard)
                .check_control(src, &msg.addr, now)
                .map(str::to_owned);
            let addr = match checked {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "control message refused");
                    continue;
                }
            };
            let results = dispatch(&parser, &addr, msg.args);
            for r in results {
                match r {
                    Ok(Command::Release { .. }) => {}
                    Ok(command) => {
                        if tx.try_send(ControlEvent { src, command }).is_err() {
                            tracing::warn!(%src, "control channel full or closed, command dropped");
                        }
                        replies.push(command::reply(&addr, r#"{"status":"ok"}"#));
                    }
                    Err(e) => {
                        tracing::debug!(%src, error = %e, "bad control command");
                        let json = format!(
                            r#"{{"status":"error","message":"{}"}}"#,
                            json_escape(&e.to_string())
                        );
                        replies.push(command::reply(&addr, &json));
                    }
                }
            }
        }
        if cfg.reply {
            for r in replies.drain(..) {
                if let Ok(bytes) = codec::encode(&OscPacket::Message(r)) {
                    let _ = socket.send_to(&bytes, src).await;
                }
            }
        }
    }
    Ok(())
}

fn lock(g: &Mutex<Guard>) -> std::sync::MutexGuard<'_, Guard> {
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bundle contents in order (depth already bounded by the codec).
fn flatten(p: OscPacket, out: &mut Vec<OscMessage>) {
    match p {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => {
            for c in b.content {
                flatten(c, out);
            }
        }
    }
}

fn dispatch(
    parser: &CommandParser,
    addr: &str,
    args: Vec<rosc::OscType>,
) -> Vec<Result<Command, command::CommandError>> {
    if has_wildcards(addr) {
        match parser.matching_methods(addr) {
            Ok(methods) => methods
                .into_iter()
                .map(|m| {
                    parser.parse(&OscMessage {
                        addr: m.to_string(),
                        args: args.clone(),
                    })
                })
                .collect(),
            Err(_) => vec![Err(command::CommandError::UnknownAddress(addr.to_string()))],
        }
    } else {
        vec![parser.parse(&OscMessage {
            addr: addr.to_string(),
            args,
        })]
    }
}

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::key::{FleetKey, Keyring};
    use crate::security::policy::{ControlPolicyConfig, ControlPortPolicy};
    use crate::security::GuardConfig;
    use rosc::{OscBundle, OscType};

    #[tokio::test]
    async fn serves_policy_checked_commands() {
        let ring = Keyring::new(FleetKey::from_bytes(1, &[1; 32]).unwrap());
        let policy = ControlPortPolicy::from_config(&ControlPolicyConfig {
            enabled: true,
            allow: vec!["127.0.0.0/8".into()],
            secret: Some("pw".into()),
        })
        .unwrap();
        let guard = Arc::new(Mutex::new(
            Guard::new(ring, &GuardConfig::default()).with_control_policy(policy),
        ));
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let cfg = ControlServerConfig {
            reply: true,
            ..Default::default()
        };
        let task = tokio::spawn(run_control_server(server, guard.clone(), || 0u64, cfg, tx));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let send = |p: OscPacket| codec::encode(&p).unwrap();
        let msg = |a: &str, args| {
            OscPacket::Message(OscMessage {
                addr: a.into(),
                args,
            })
        };
        client.send_to(b"junk", addr).await.unwrap();
        client
            .send_to(&send(msg("/convoy/stop", vec![])), addr)
            .await
            .unwrap();
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: codec::IMMEDIATE,
            content: vec![
                msg("/pw/convoy/seek", vec![OscType::Int(10)]),
                msg("/pw/convoy/{pause,next}", vec![]),
            ],
        });
        client.send_to(&send(bundle), addr).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap().command);
        }
        assert_eq!(got[0], Command::Seek { position_ms: 10.0 });
        assert!(got.contains(&Command::Pause) && got.contains(&Command::Next));
        let mut rbuf = [0u8; 1024];
        let (n, _) = client.recv_from(&mut rbuf).await.unwrap();
        match codec::decode(&rbuf[..n]).unwrap() {
            OscPacket::Message(m) => assert_eq!(m.addr, "/reply/convoy/seek"),
            other => panic!("unexpected reply {other:?}"),
        }
        let snap = guard.lock().unwrap().stats().snapshot();
        assert_eq!(snap.malformed, 1);
        assert_eq!(snap.control_denied, 1); // missing secret
        drop(rx);
        task.abort();
    }
}
