//! A `convoy node` process for integration tests: spawned with the test fleet key, its
//! JSON status lines collected as they come, OSC commands sent to its control port.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rosc::{OscMessage, OscPacket, OscType};
use serde_json::Value;

use super::convoy_bin;

pub const KEY: &str = "6b0e8f3c2a1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";

/// The settings of bike `k` in a loopback fleet of `sync.role=auto` nodes: its own
/// address 127.0.0.(k+1) (the security guard rate-limits per source address, as bikes on
/// a WiFi have one each), timeline, SNTP and membership ports `base + 10k` (+1, +2), no
/// mDNS, heartbeats unicast to every membership address in `fleet`.
pub fn auto_sets(name: &str, k: u16, base: u16, fleet: &[String]) -> Vec<String> {
    let port = base + 10 * k;
    let broadcast = fleet
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        format!("node.id={name}"),
        "sync.role=auto".to_string(),
        format!("sync.bind=127.0.0.{}", k + 1),
        format!("sync.osc_port={port}"),
        format!("sync.sntp_port={}", port + 1),
        format!("fleet.port={}", port + 2),
        "fleet.mdns=false".to_string(),
        format!("fleet.broadcast=[{broadcast}]"),
    ]
}

/// The membership addresses of bikes `ks` of an [`auto_sets`] fleet.
pub fn auto_fleet(ks: std::ops::Range<u16>, base: u16) -> Vec<String> {
    ks.map(|k| format!("127.0.0.{}:{}", k + 1, base + 10 * k + 2))
        .collect()
}

/// A node process whose status lines are collected as they come.
pub struct Node {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
    pub osc_port: u16,
}

impl Node {
    pub fn spawn(name: &str, role: &str, osc_port: u16, sets: &[String], args: &[&str]) -> Node {
        let mut cmd = Command::new(convoy_bin());
        let mut all = vec![
            format!("node.id={name}"),
            "audio.sink=null".to_string(),
            "sync.bind=127.0.0.1".to_string(),
            format!("sync.role={role}"),
            "osc.enabled=true".to_string(),
            "osc.bind=127.0.0.1".to_string(),
            format!("osc.port={osc_port}"),
            "sync.start_lead_ms=300".to_string(),
        ];
        all.extend(sets.iter().cloned());
        for s in &all {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--log", "warn", "node", "--status-every", "0.1"])
            .args(args);
        Node::launch(cmd, osc_port)
    }

    /// Start `cmd` (a `convoy … node` command line) with the test fleet key and collect
    /// its JSON status lines; `osc_port` is where [`Node::send`] sends (0: nowhere).
    pub fn launch(mut cmd: Command, osc_port: u16) -> Node {
        cmd.env("CONVOY_KEY", KEY);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("lines").push(v);
                }
            }
        });
        Node {
            child,
            lines,
            osc_port,
        }
    }

    /// SIGTERM (a clean shutdown: the node flushes its recording) and wait for the exit.
    pub fn terminate(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM to our own child");
        let _ = self.child.wait();
    }

    /// Every status line so far.
    pub fn all(&self) -> Vec<Value> {
        self.lines.lock().expect("lines").clone()
    }

    /// Status lines whose `mono_ns` lies in `[from, to)`.
    pub fn between(&self, from: u64, to: u64) -> Vec<Value> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|v| v["mono_ns"].as_u64().is_some_and(|t| t >= from && t < to))
            .cloned()
            .collect()
    }

    pub fn last(&self) -> Option<Value> {
        self.lines.lock().expect("lines").last().cloned()
    }

    /// Wait until the latest status satisfies `f`; panics with the last status on timeout.
    pub fn wait(&self, what: &str, secs: f64, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(v) = self.last().filter(|v| f(v)) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; last status {:?}",
                self.last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn send(&self, addr: &str, args: Vec<OscType>) {
        let bytes = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: addr.to_string(),
            args,
        }))
        .expect("encode");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.send_to(&bytes, ("127.0.0.1", self.osc_port))
            .expect("send");
    }
}

impl Node {
    /// Send a message from a socket of its own and return the text of the node's
    /// `/reply…` to it (needs `osc.reply = true`), or panic after `secs`.
    pub fn ask(&self, addr: &str, args: Vec<OscType>, secs: f64) -> String {
        let bytes = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: addr.to_string(),
            args,
        }))
        .expect("encode");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs_f64(secs)))
            .expect("timeout");
        sock.send_to(&bytes, ("127.0.0.1", self.osc_port))
            .expect("send");
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = sock
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("no reply to {addr} within {secs} s: {e}"));
            let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else {
                continue;
            };
            if m.addr.starts_with("/reply") {
                return match m.args.first() {
                    Some(OscType::String(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
