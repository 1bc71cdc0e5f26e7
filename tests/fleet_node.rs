//! Fleet membership drives the node: three `convoy node` processes with `sync.role=auto`
//! on loopback (heartbeats to each other's membership ports, no mDNS), each with a virtual
//! DAC of its own crystal error recording what it really played (decoded from the position
//! pilot). They elect one leader and lock to it; the leader is SIGKILLed; a new leader must
//! be elected within 1.5 s, and the two survivors must keep playing, within 5 ms of each
//! other during and after the failover, without a hard seek. A late joiner then locks to
//! the new leader. The offsets are measured on the shared monotonic clock from the
//! recordings, not taken from the nodes' own belief.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convoy::clock::mono_ns;
use convoy::rig::measure::{offsets, Trace};
use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::node::{auto_fleet, auto_sets, Node};

const RATE: f64 = 44_100.0;

/// One bike: a `convoy node` process and its status lines.
struct Bike {
    name: String,
    node: Node,
    rec: PathBuf,
}

impl Bike {
    /// `k` picks the bike's address (127.0.0.k+1: the security guard rate-limits per source
    /// address, as bikes on a WiFi have one each) and ports; heartbeats go to `fleet`.
    fn spawn(dir: &Path, name: &str, k: u16, base: u16, fleet: &[String], extra: &[&str]) -> Bike {
        let rec = dir.join(format!("{name}.csv"));
        // Each bike its own DAC crystal error and clock skew, so the loop has work to do.
        let dac = [60.0, -45.0, 25.0, -80.0][usize::from(k) % 4];
        let skew = [35.0, -50.0, 10.0, 70.0][usize::from(k) % 4];
        let offset_ms = [400.0, -300.0, 150.0, -600.0][usize::from(k) % 4];
        let mut sets = auto_sets(name, k, base, fleet);
        sets.extend([
            "audio.sink=virtual".to_string(),
            format!("audio.virtual.record={}", rec.display()),
            "audio.virtual.pilot=true".to_string(),
            format!("audio.virtual.rate_error_ppm={dac}"),
            format!("clock.ppm={skew}"),
            format!("clock.offset_ms={offset_ms}"),
        ]);
        sets.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(convoy_bin());
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--log", "warn", "node", "--track", "pilot"])
            .args(["--status-every", "0.1", "--start-in", "0.5"]);
        Bike {
            name: name.to_string(),
            node: Node::launch(cmd, 0),
            rec,
        }
    }

    /// Wait until the latest status satisfies `f`; panics with it on timeout.
    fn wait(&self, what: &str, secs: f64, f: impl Fn(&Value) -> bool) -> Value {
        self.node.wait(&format!("{} {what}", self.name), secs, f)
    }

    /// SIGTERM and wait: the node flushes its recording.
    fn stop(mut self) -> (Vec<Value>, PathBuf) {
        self.node.terminate();
        std::thread::sleep(Duration::from_millis(100));
        (self.node.all(), self.rec.clone())
    }
}

fn leader_of(v: &Value) -> Option<&str> {
    v["fleet"]["leader"].as_str()
}

fn locked(v: &Value) -> bool {
    v["role"] == "follower" && v["lock"]["locked"] == true && v["playing"] == true
}

#[test]
fn leader_failover_keeps_the_fleet_together_and_a_late_joiner_locks() {
    let dir = std::env::temp_dir().join(format!("convoy-fleet-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let base = 31_000 + (std::process::id() % 400) as u16 * 10 * 5;
    let fleet = auto_fleet(0..4, base);
    let a = Bike::spawn(&dir, "bike-a", 0, base, &fleet, &[]);
    let b = Bike::spawn(&dir, "bike-b", 1, base, &fleet, &[]);
    let c = Bike::spawn(&dir, "bike-c", 2, base, &fleet, &[]);
    // Same priority: the highest id leads.
    c.wait("leading", 10.0, |v| {
        v["role"] == "leader" && v["playing"] == true
    });
    for bike in [&a, &b] {
        bike.wait("locking to bike-c", 20.0, |v| {
            locked(v) && leader_of(v) == Some("bike-c")
        });
    }
    // Locked for a while, then the leader dies without a goodbye.
    std::thread::sleep(Duration::from_secs(2));
    let killed_at = mono_ns();
    drop(c);
    let promoted = b.wait("taking over", 3.0, |v| v["role"] == "leader");
    a.wait("following bike-b", 3.0, |v| {
        v["role"] == "follower" && leader_of(v) == Some("bike-b")
    });
    let became_leader = b
        .node
        .all()
        .iter()
        .find(|v| v["role"] == "leader")
        .and_then(|v| v["mono_ns"].as_u64())
        .expect("a leader line");
    let failover_ms = became_leader.saturating_sub(killed_at) as f64 / 1e6;
    eprintln!("failover: bike-b leads {failover_ms:.0} ms after bike-c was killed");
    assert!(failover_ms < 1500.0, "failover took {failover_ms:.0} ms");
    assert!(promoted["fleet"]["term"].as_u64() >= Some(2), "{promoted}");
    // Play on under the new leader, then a late joiner (lower priority, so it does not
    // take over) locks to it.
    std::thread::sleep(Duration::from_secs(3));
    let d = Bike::spawn(&dir, "bike-d", 3, base, &fleet, &["fleet.priority=50"]);
    let joined = d.wait("the late joiner to lock", 20.0, |v| {
        locked(v) && leader_of(v) == Some("bike-b")
    });
    assert_eq!(
        joined["fleet"]["peers"].as_array().map(Vec::len),
        Some(2),
        "{joined}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let end = mono_ns();
    let (a_lines, a_rec) = a.stop();
    let (b_lines, b_rec) = b.stop();
    let (d_lines, d_rec) = d.stop();
    for (name, lines) in [("bike-a", &a_lines), ("bike-b", &b_lines)] {
        let last = lines.last().expect("status");
        assert_eq!(last["lock"]["seeks_after_lock"], 0, "{name} seeked: {last}");
        assert!(
            lines
                .iter()
                .filter(|v| v["mono_ns"].as_u64() > Some(killed_at))
                .all(|v| v["playing"] == true),
            "{name} stopped playing during the failover"
        );
    }
    // The truth, from what the DACs played: the survivors stay within 5 ms of each other
    // from 1 s before the kill to the end.
    let ta = Trace::load(&a_rec, RATE).expect("bike-a recording");
    let tb = Trace::load(&b_rec, RATE).expect("bike-b recording");
    let window = |s: &[(u64, f64)], from: u64, to: u64| -> Vec<f64> {
        s.iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, o)| o.abs() * 1e3)
            .collect()
    };
    let ab = offsets(&ta, &tb, 50_000_000);
    let around = window(&ab, killed_at - 1_000_000_000, end - 200_000_000);
    let worst = around.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "bike-a vs bike-b through the failover: {} samples, max |offset| {worst:.3} ms",
        around.len()
    );
    assert!(around.len() > 80, "too few samples: {}", around.len());
    assert!(worst < 5.0, "survivors {worst:.3} ms apart during failover");
    let td = Trace::load(&d_rec, RATE).expect("bike-d recording");
    let lock_at = d_lines
        .iter()
        .find(|v| locked(v))
        .and_then(|v| v["mono_ns"].as_u64())
        .expect("bike-d locked");
    let bd = window(&offsets(&tb, &td, 50_000_000), lock_at, end - 200_000_000);
    let worst_d = bd.iter().copied().fold(0.0, f64::max);
    eprintln!("late joiner after lock: max |offset| {worst_d:.3} ms");
    assert!(
        !bd.is_empty() && worst_d < 5.0,
        "late joiner {worst_d:.3} ms off"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
