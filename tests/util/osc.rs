//! A test node behind a `NodeHandle` and an OSC service in front of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use convoy::clock::{TimeNow, WallClock};
use convoy::config::{Config, OscConfig};
use convoy::control::{Command, NodeHandle, Origin, Snapshot};
use convoy::osc::codec::{self, OscMessage, OscPacket};
use convoy::osc::OscService;
use convoy::security::key::{FleetKey, Keyring};
use convoy::security::policy::{ControlPolicyConfig, ControlPortPolicy};
use convoy::security::ratelimit::{ClassRates, RateLimitConfig};
use convoy::security::{Guard, GuardConfig};
use tokio::sync::{mpsc, watch};

/// A command as the node received it, with the fleet time (Unix ns) it arrived.
#[derive(Debug, Clone)]
pub struct Got {
    pub command: Command,
    pub origin: Origin,
    pub at_ns: u64,
}

/// The node side: what arrived, and the snapshot to publish.
pub struct TestNode {
    pub got: mpsc::UnboundedReceiver<Got>,
    pub state: watch::Sender<Snapshot>,
}

impl TestNode {
    /// The next command, or a panic after `secs`.
    pub async fn next(&mut self, secs: f64) -> Got {
        tokio::time::timeout(Duration::from_secs_f64(secs), self.got.recv())
            .await
            .expect("a command reaches the node in time")
            .expect("node open")
    }

    /// The next `n` commands.
    pub async fn take(&mut self, n: usize, secs: f64) -> Vec<Command> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.next(secs).await.command);
        }
        v
    }

    /// Nothing more arrives within `secs`.
    pub async fn assert_quiet(&mut self, secs: f64) {
        if let Ok(Some(g)) =
            tokio::time::timeout(Duration::from_secs_f64(secs), self.got.recv()).await
        {
            panic!("unexpected command {g:?}");
        }
    }
}

/// A node that accepts everything except `/go` ("no cue list loaded").
pub fn test_node(initial: Snapshot) -> (NodeHandle, TestNode) {
    let (handle, inbox) = NodeHandle::channel(initial);
    let (tx, got) = mpsc::unbounded_channel();
    let mut requests = inbox.requests;
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let at_ns = WallClock.now_ns();
            let verdict = match req.command {
                Command::Go => Err(convoy::control::Refusal::NoShow),
                _ => Ok(()),
            };
            let _ = tx.send(Got {
                command: req.command.clone(),
                origin: req.origin.clone(),
                at_ns,
            });
            req.answer(verdict);
        }
    });
    (
        handle,
        TestNode {
            got,
            state: inbox.state,
        },
    )
}

/// A guard allowing 127.0.0.0/8 (optionally behind a secret), with room for test bursts.
pub fn guard(secret: Option<&str>) -> Arc<Mutex<Guard>> {
    guard_allowing(&["127.0.0.0/8"], secret)
}

/// A guard allowing the networks `allow` (optionally behind a secret).
pub fn guard_allowing(allow: &[&str], secret: Option<&str>) -> Arc<Mutex<Guard>> {
    let ring = Keyring::new(FleetKey::from_bytes(1, &[7; 32]).expect("key"));
    let policy = ControlPortPolicy::from_config(&ControlPolicyConfig {
        enabled: true,
        allow: allow.iter().map(|a| a.to_string()).collect(),
        secret: secret.map(str::to_string),
    })
    .expect("policy");
    let rates = ClassRates::default().scaled(50.0);
    let cfg = GuardConfig {
        rate: RateLimitConfig {
            per_peer: rates,
            per_ip: rates,
            ..RateLimitConfig::default()
        },
        ..GuardConfig::default()
    };
    Arc::new(Mutex::new(
        Guard::new(ring, &cfg).with_control_policy(policy),
    ))
}

/// The built-in `[osc]` section on 127.0.0.1, any port, enabled.
pub fn config() -> OscConfig {
    let mut c = Config::builtin().expect("defaults").osc;
    c.enabled = true;
    c.bind = "127.0.0.1".into();
    c.port = 0;
    c
}

/// A service with a test node, on the system (Unix) clock.
pub async fn start(
    cfg: &OscConfig,
    secret: Option<&str>,
) -> (OscService, TestNode, Arc<Mutex<Guard>>) {
    let (handle, node) = test_node(Snapshot::default());
    let g = guard(secret);
    let svc = convoy::osc::serve(cfg, handle, g.clone(), WallClock)
        .await
        .expect("OSC service starts");
    (svc, node, g)
}

/// A message packet.
pub fn msg(addr: &str, args: Vec<codec::OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

/// A UDP client socket on loopback, as a control surface has.
pub async fn client() -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind client")
}

/// Sends one encoded packet from `sock` to `to`.
pub async fn send(sock: &tokio::net::UdpSocket, to: SocketAddr, p: &OscPacket) {
    sock.send_to(&codec::encode(p).expect("encode"), to)
        .await
        .expect("send");
}

/// Receives datagrams on `sock` until `pred` matches one message (or panics after `secs`).
pub async fn recv_until(
    sock: &tokio::net::UdpSocket,
    secs: f64,
    mut pred: impl FnMut(&OscMessage) -> bool,
) -> OscMessage {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .expect("expected message arrives in time")
            .expect("recv");
        if let Ok(OscPacket::Message(m)) = codec::decode(&buf[..n]) {
            if pred(&m) {
                return m;
            }
        }
    }
}

/// The JSON string of a `/reply/...` message.
pub fn reply_json(m: &OscMessage) -> serde_json::Value {
    match m.args.as_slice() {
        [codec::OscType::String(s)] => serde_json::from_str(s).expect("reply is JSON"),
        other => panic!("reply args {other:?}"),
    }
}

/// A free UDP port on 127.0.0.1 (for tools that need one given to them).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
