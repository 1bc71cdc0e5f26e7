//! A network-namespace lab: N hosts, each in its own namespace with one veth attached to
//! a private bridge, addressed 10.77.0.x/24 (test hosts only this process can reach).
//! Hosts run `convoy tool member` ([`Lab::member`]) or a full `convoy node`
//! ([`Lab::node`]); a host can be cut off ([`Lab::link`]), moved to a second bridge so the
//! fleet splits in two sides that each still talk among themselves ([`Lab::split`]), and
//! re-addressed ([`Lab::readdress`]). Names carry the test process id and a counter, so
//! labs in parallel tests never collide; `Drop` kills every process the lab started and
//! deletes the namespaces and the bridges, also when a test panics. Needs root and
//! iproute2: [`Lab::new`] returns `Err` with the reason otherwise, and the caller skips
//! with that message.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};
use serde_json::Value;

use super::node::Node;

static LABS: AtomicU32 = AtomicU32::new(0);

/// The fleet key every lab member uses (hex text).
pub const KEY: &str = "4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Root-namespace end of its veth (on the bridge): down = host cut off.
    pub link: String,
    /// Interface inside the namespace.
    pub dev: String,
    /// Current address.
    pub addr: String,
}

/// A running `convoy tool member` and the JSON lines it printed.
pub struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
    /// (line, parsed) in arrival order.
    pub lines: Arc<Mutex<Vec<Value>>>,
}

impl Member {
    /// Sends a control line (`lead`, `release`, `quit`).
    pub fn say(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// SIGKILL: vanish without a goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last printed view.
    pub fn last(&self) -> Option<Value> {
        self.lines.lock().ok()?.last().cloned()
    }

    /// Waits until a printed line satisfies `f`; returns it.
    pub fn wait_for(&self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(lines) = self.lines.lock() {
                if let Some(v) = lines.iter().find(|v| f(v)) {
                    return Some(v.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The leader id in a printed line.
pub fn leader_of(v: &Value) -> Option<&str> {
    v["view"]["leader"]["id"].as_str()
}

/// The `mono_ns` of a printed line.
pub fn mono_of(v: &Value) -> u64 {
    v["mono_ns"].as_u64().unwrap_or(0)
}

/// A lab of namespaces on a bridge.
pub struct Lab {
    bridge: String,
    /// The other side of a split ([`Lab::split`]).
    bridge_b: String,
    /// Hosts, index i at 10.77.0.(i+1).
    pub hosts: Vec<Host>,
    created_ns: Vec<String>,
}

impl Lab {
    /// Creates `n` hosts. `Err` (with why) when not root or iproute2 is missing.
    pub fn new(n: usize) -> Result<Lab, String> {
        if !geteuid().is_root() {
            return Err("network-namespace tests need root".into());
        }
        let tag = format!(
            "{:x}{:x}",
            std::process::id() & 0xfff,
            LABS.fetch_add(1, Ordering::Relaxed) & 0xff
        );
        let mut lab = Lab {
            bridge: format!("cvb{tag}"),
            bridge_b: format!("cvs{tag}"),
            hosts: Vec::new(),
            created_ns: Vec::new(),
        };
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        ip(&["link", "add", &lab.bridge_b, "type", "bridge"])?;
        ip(&["link", "set", &lab.bridge_b, "up"])?;
        for i in 0..n {
            let host = Host {
                ns: format!("cv-{tag}-{i}"),
                link: format!("cv{tag}h{i}"),
                dev: format!("cv{tag}p{i}"),
                addr: format!("10.77.0.{}", i + 1),
            };
            ip(&["netns", "add", &host.ns])?;
            lab.created_ns.push(host.ns.clone());
            ip(&[
                "link", "add", &host.link, "type", "veth", "peer", "name", &host.dev,
            ])?;
            ip(&["link", "set", &host.dev, "netns", &host.ns])?;
            ip(&["link", "set", &host.link, "master", &lab.bridge, "up"])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                &host.dev,
            ])?;
            ip(&["-n", &host.ns, "link", "set", &host.dev, "up"])?;
            lab.hosts.push(host);
        }
        Ok(lab)
    }

    /// Starts `convoy tool member` on host `i` as vehicle `id`, with extra `--set`s.
    pub fn member(&self, i: usize, id: &str, sets: &[&str]) -> Member {
        let h = &self.hosts[i];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.ns])
            .arg(super::convoy_bin())
            .args(["--set", &format!("node.id={id}")])
            .args(["--set", "fleet.broadcast=[\"10.77.0.255\"]"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd.args(["tool", "member", "--every", "0.25"])
            .env("CONVOY_FLEET_KEY", KEY)
            .env("CONVOY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("ip netns exec convoy");
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if let Ok(mut l) = sink.lock() {
                            l.push(v);
                        }
                    }
                }
            });
        }
        Member {
            child,
            stdin,
            lines,
        }
    }

    /// Starts a full `convoy node` on host `i` as vehicle `id`: `sync.role=auto` with the
    /// test fleet key, heartbeats broadcast on the bridge (no mDNS), the `pilot` track on a
    /// virtual sink recording what it really played into `rec`, status every 0.1 s; then
    /// the extra `--set`s (clock and DAC errors, priority).
    pub fn node(&self, i: usize, id: &str, rec: &Path, sets: &[String]) -> Node {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].ns])
            .arg(super::convoy_bin());
        let base = [
            format!("node.id={id}"),
            "sync.role=auto".into(),
            "fleet.mdns=false".into(),
            "fleet.broadcast=[\"10.77.0.255\"]".into(),
            "audio.sink=virtual".into(),
            format!("audio.virtual.record={}", rec.display()),
            "audio.virtual.pilot=true".into(),
        ];
        for s in base.iter().chain(sets) {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--log", "warn", "node", "--track", "pilot"])
            .args(["--status-every", "0.1", "--start-in", "0.5"]);
        // `ip netns exec` execs the command: the child is the node itself, so signals
        // (SIGTERM to flush the recording, SIGKILL to vanish) reach it.
        Node::launch(cmd, 0)
    }

    /// Splits the fleet: the hosts in `side` move to a second bridge, the others stay.
    /// Each side still talks among itself; nothing crosses. [`Lab::heal`] undoes it.
    pub fn split(&self, side: &[usize]) {
        for &i in side {
            ip(&["link", "set", &self.hosts[i].link, "master", &self.bridge_b])
                .expect("ip link set master");
        }
    }

    /// Puts every host back on the main bridge.
    pub fn heal(&self) {
        for h in &self.hosts {
            ip(&["link", "set", &h.link, "master", &self.bridge]).expect("ip link set master");
        }
    }

    /// Cuts host `i` off the bridge (`up = false`) or reconnects it.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.hosts[i].link, state]).expect("ip link set");
    }

    /// Gives host `i` a new address (10.77.0.`last`).
    pub fn readdress(&mut self, i: usize, last: u8) {
        let h = &mut self.hosts[i];
        ip(&["-n", &h.ns, "addr", "flush", "dev", &h.dev]).expect("flush");
        h.addr = format!("10.77.0.{last}");
        ip(&[
            "-n",
            &h.ns,
            "addr",
            "add",
            &format!("{}/24", h.addr),
            "dev",
            &h.dev,
        ])
        .expect("addr add");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.created_ns {
            // Kill anything still running in the namespace, then remove it (its veth
            // end goes with it, and the peer end with that).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // The pid runs in a namespace this lab created.
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = ip(&["link", "del", &self.bridge_b]);
    }
}
