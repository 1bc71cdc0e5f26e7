//! Full `convoy node` processes (`sync.role=auto`) through real networking: each bike in
//! its own network namespace on the lab bridge (tests/util/netns.rs), heartbeats broadcast
//! on it, a virtual DAC of its own crystal error recording what it really played (decoded
//! from the position pilot), its own clock offset and skew. The fleet is split in two
//! sides that each elect a leader and play on, then healed: one leader survives and the
//! demoted side re-locks without a seek. A late joiner whose clock is 90 s off locks to a
//! playing fleet, and a follower killed, re-addressed and restarted rejoins while the
//! others never notice.
//! Offsets come from the recordings on the shared monotonic clock, not from the nodes'
//! belief; the figures are printed (`--nocapture`).
//! The namespace tests need root: they are ignored under plain `cargo test` and run by
//! tools/test.sh with `--include-ignored`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use convoy::clock::mono_ns;
use convoy::rig::measure::{offsets, Trace};
use serde_json::Value;

use crate::util::netns::Lab;
use crate::util::node::Node;

const RATE: f64 = 44_100.0;
const SAMPLE_NS: u64 = 50_000_000;

/// A lab of `n` namespaces (needs root and iproute2).
fn lab(n: usize) -> Lab {
    Lab::new(n).expect("create the namespace lab (root and iproute2)")
}

/// A temp dir for one test's recordings, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("convoy-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One bike: a node process in the lab and where it records.
struct Bike {
    name: String,
    node: Node,
    rec: PathBuf,
}

impl Bike {
    /// Vehicle `name` on host `i` with election `priority`; `k` picks its crystal errors.
    fn start(lab: &Lab, dir: &Path, i: usize, name: &str, priority: u32, k: usize) -> Bike {
        Bike::start_with(lab, dir, i, name, priority, k, &[])
    }

    /// [`Bike::start`] with `extra` settings last (they override).
    fn start_with(
        lab: &Lab,
        dir: &Path,
        i: usize,
        name: &str,
        priority: u32,
        k: usize,
        extra: &[&str],
    ) -> Bike {
        let rec = dir.join(format!("{name}.csv"));
        let dac = [60.0, -45.0, 25.0, -80.0][k % 4];
        let skew = [35.0, -50.0, 10.0, 70.0][k % 4];
        let offset_ms = [400.0, -300.0, 150.0, -600.0][k % 4];
        let mut sets = vec![
            format!("fleet.priority={priority}"),
            format!("audio.virtual.rate_error_ppm={dac}"),
            format!("clock.ppm={skew}"),
            format!("clock.offset_ms={offset_ms}"),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        Bike {
            name: name.to_string(),
            node: lab.node(i, name, &rec, &sets),
            rec,
        }
    }

    fn wait(&self, what: &str, secs: f64, f: impl Fn(&Value) -> bool) -> Value {
        self.node.wait(&format!("{} {what}", self.name), secs, f)
    }

    /// Waits until it follows `leader`, locked and playing.
    fn locks_to(&self, leader: &str, secs: f64) -> Value {
        self.wait(&format!("locking to {leader}"), secs, |v| {
            locked(v) && leader_of(v) == Some(leader)
        })
    }

    /// SIGTERM and wait: the node flushes its recording. Its status lines and what it
    /// played.
    fn stop(mut self) -> Stopped {
        self.node.terminate();
        let trace = Trace::load(&self.rec, RATE)
            .unwrap_or_else(|e| panic!("{}'s recording: {e}", self.name));
        Stopped {
            name: self.name.clone(),
            lines: self.node.all(),
            trace,
        }
    }
}

/// A bike after it stopped.
struct Stopped {
    name: String,
    lines: Vec<Value>,
    trace: Trace,
}

impl Stopped {
    fn last(&self) -> &Value {
        self.lines.last().expect("a status line")
    }

    /// The first status line from `since` on that satisfies `f`, as its `mono_ns`.
    fn first(&self, since: u64, f: impl Fn(&Value) -> bool) -> Option<u64> {
        self.lines
            .iter()
            .filter(|v| mono(v) >= since)
            .find(|v| f(v))
            .map(mono)
    }

    /// Every status line from the first one playing on says it plays: it never stopped.
    fn played_throughout(&self) -> bool {
        self.lines
            .iter()
            .skip_while(|v| v["playing"] != true)
            .all(|v| v["playing"] == true)
    }

    /// |offset| against `reference` in ms, sampled every 50 ms over `[from, to)`.
    fn offsets_ms(&self, reference: &Stopped, from: u64, to: u64) -> Vec<(u64, f64)> {
        offsets(&reference.trace, &self.trace, SAMPLE_NS)
            .into_iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(t, o)| (t, o.abs() * 1e3))
            .collect()
    }
}

fn mono(v: &Value) -> u64 {
    v["mono_ns"].as_u64().unwrap_or(0)
}

fn leader_of(v: &Value) -> Option<&str> {
    v["fleet"]["leader"].as_str()
}

fn locked(v: &Value) -> bool {
    v["role"] == "follower" && v["lock"]["locked"] == true && v["playing"] == true
}

fn leading(v: &Value) -> bool {
    v["role"] == "leader" && v["playing"] == true
}

fn worst(samples: &[(u64, f64)]) -> f64 {
    samples.iter().map(|s| s.1).fold(0.0, f64::max)
}

/// Seconds from `from` to the first sample after which every sample stays below `ms`:
/// 0 when none reaches it, None when the last one still does.
fn settles_after(samples: &[(u64, f64)], from: u64, ms: f64) -> Option<f64> {
    match samples.iter().rposition(|s| s.1 >= ms) {
        None => Some(0.0),
        Some(i) => Some(samples.get(i + 1)?.0.saturating_sub(from) as f64 / 1e9),
    }
}

#[test]
#[ignore = "needs root and iproute2 for network namespaces"]
fn partition_then_heal_leaves_one_leader_and_the_demoted_side_relocks_without_a_seek() {
    let _slot = crate::util::realtime_slot();
    let lab = lab(4);
    let dir = Dir::new("netns-heal");
    let bikes: Vec<Bike> = (0..4)
        .map(|i| Bike::start(&lab, &dir.0, i, &format!("n{i}"), 10 * (i as u32 + 1), i))
        .collect();
    bikes[3].wait("leading", 15.0, leading);
    for b in &bikes[..3] {
        b.locks_to("n3", 25.0);
    }
    std::thread::sleep(Duration::from_secs(2));

    // Split n0 and n1 off: n1 takes over its side, n3 keeps leading n2.
    let split_at = mono_ns();
    lab.split(&[0, 1]);
    let promoted = bikes[1].wait("leading its side", 5.0, leading);
    bikes[0].wait("following n1", 5.0, |v| {
        v["role"] == "follower" && leader_of(v) == Some("n1")
    });
    bikes[3].wait("seeing only n2", 5.0, |v| {
        leading(v) && v["fleet"]["peers"].as_array().map(Vec::len) == Some(1)
    });
    let side_term = promoted["fleet"]["term"].as_u64().unwrap_or(0);
    println!(
        "netns heal: split → n1 leads its side after {:.0} ms (term {side_term})",
        (mono(&promoted) - split_at) as f64 / 1e6
    );
    // Both sides play on for a while, each on its own leader's clock.
    std::thread::sleep(Duration::from_secs(5));

    let heal_at = mono_ns();
    lab.heal();
    for b in &bikes[..3] {
        b.wait("following n3 again", 5.0, |v| {
            v["role"] == "follower" && leader_of(v) == Some("n3")
        });
    }
    for b in &bikes[..3] {
        b.locks_to("n3", 20.0);
    }
    std::thread::sleep(Duration::from_secs(3));
    let end = mono_ns() - 200_000_000;
    let mut stopped: Vec<Stopped> = bikes.into_iter().map(Bike::stop).collect();
    let n3 = stopped.pop().expect("n3");

    // One leader, one term, everyone follows it; nobody ever stopped playing.
    assert!(leading(n3.last()), "n3 leads at the end: {}", n3.last());
    let term = n3.last()["fleet"]["term"].as_u64();
    for s in stopped.iter().chain([&n3]) {
        assert!(s.played_throughout(), "{} stopped playing", s.name);
        assert_eq!(s.last()["fleet"]["term"].as_u64(), term, "{}", s.last());
    }
    let healed_ms = stopped
        .iter()
        .filter_map(|s| s.first(heal_at, |v| leader_of(v) == Some("n3")))
        .max()
        .map_or(f64::NAN, |t| (t - heal_at) as f64 / 1e6);
    println!("netns heal: every node follows n3 {healed_ms:.0} ms after the heal");

    let mut settle = Vec::new();
    for s in &stopped {
        let lock = &s.last()["lock"];
        assert!(
            locked(s.last()),
            "{} not locked at the end: {}",
            s.name,
            s.last()
        );
        assert_eq!(lock["seeks_after_lock"], 0, "{} seeked: {lock}", s.name);
        let before = s.lines.iter().rev().find(|v| mono(v) < split_at);
        assert_eq!(
            before.map(|v| &v["lock"]["seeks"]),
            Some(&lock["seeks"]),
            "{} seeked during the split or after the heal",
            s.name
        );
        let split = s.offsets_ms(&n3, split_at, heal_at);
        let after = s.offsets_ms(&n3, heal_at, end);
        let at_heal = after.first().map_or(f64::NAN, |x| x.1);
        let took = settles_after(&after, heal_at, 1.0)
            .unwrap_or_else(|| panic!("{} never agrees < 1 ms with n3 after the heal", s.name));
        println!(
            "netns heal: {} vs n3: max {:.3} ms while split, {at_heal:.3} ms at the heal, \
             max {:.3} ms after it, < 1 ms from {:.0} ms after it on (last 2 s: max {:.3} ms); \
             seeks {} (after lock {}), max |speed| {:.0} ppm",
            s.name,
            worst(&split),
            worst(&after),
            took * 1e3,
            worst(&s.offsets_ms(&n3, end - 2_000_000_000, end)),
            lock["seeks"],
            lock["seeks_after_lock"],
            lock["max_abs_speed_ppm"].as_f64().unwrap_or(f64::NAN),
        );
        assert!(
            split.len() > 60 && after.len() > 60,
            "{} too few samples",
            s.name
        );
        settle.push(took);
    }
    let converged = settle.iter().copied().fold(0.0, f64::max);
    println!(
        "netns heal: all four agree < 1 ms {:.0} ms after the heal",
        converged * 1e3
    );
    assert!(
        converged < 10.0,
        "converged only {converged:.1} s after the heal"
    );
}

#[test]
#[ignore = "needs root and iproute2 for network namespaces"]
fn a_late_joiner_locks_and_a_readdressed_restart_rejoins_unnoticed() {
    let _slot = crate::util::realtime_slot();
    let mut lab = lab(4);
    let dir = Dir::new("netns-join");
    let n0 = Bike::start(&lab, &dir.0, 0, "n0", 10, 0);
    let n1 = Bike::start(&lab, &dir.0, 1, "n1", 20, 1);
    let n2 = Bike::start(&lab, &dir.0, 2, "n2", 30, 2);
    n2.wait("leading", 15.0, leading);
    n0.locks_to("n2", 25.0);
    n1.locks_to("n2", 25.0);
    std::thread::sleep(Duration::from_secs(1));

    // A late joiner (lower priority: it must not take over) locks to the playing fleet,
    // although its clock is 90 s behind (no RTC, no internet on the ride): far outside the
    // heartbeats' ±5 s freshness window.
    let join_at = mono_ns();
    let n3 = Bike::start_with(&lab, &dir.0, 3, "n3", 5, 3, &["clock.offset_ms=-90000"]);
    let joined = n3.locks_to("n2", 20.0);
    println!(
        "netns join: late joiner, clock 90 s off, locked {:.0} ms after its process started",
        (mono(&joined) - join_at) as f64 / 1e6
    );
    n2.wait("hearing the joiner", 5.0, |v| {
        v["fleet"]["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|m| m["id"] == "n3"))
    });

    // n0 vanishes, comes back at another address, and rejoins.
    std::thread::sleep(Duration::from_secs(1));
    let mut n0 = n0;
    let _ = n0.node.child.kill();
    let _ = n0.node.child.wait();
    let killed_at = mono_ns();
    lab.readdress(0, 50);
    let n0 = Bike::start(&lab, &dir.0, 0, "n0-again", 10, 0);
    let back = n0.locks_to("n2", 20.0);
    println!(
        "netns join: n0 restarted at 10.77.0.50 and locked {:.0} ms after it was killed",
        (mono(&back) - killed_at) as f64 / 1e6
    );
    let seen = n2.wait("seeing n0 at its new address", 5.0, |v| {
        v["fleet"]["peers"].as_array().is_some_and(|p| {
            p.iter()
                .any(|m| m["id"] == "n0-again" && m["addr"] == "10.77.0.50")
        })
    });
    assert!(mono(&seen) >= killed_at);
    std::thread::sleep(Duration::from_secs(2));
    let end = mono_ns() - 200_000_000;
    let n0 = n0.stop();
    let n1 = n1.stop();
    let n3 = n3.stop();
    let n2 = n2.stop();

    // The others never noticed: no seek, the leader led throughout, and from each one's
    // lock to the end (the kill and the restart included) every follower stays < 1 ms.
    assert!(n2.lines.iter().skip_while(|v| !leading(v)).all(leading));
    for s in [&n1, &n3, &n0] {
        assert!(
            locked(s.last()),
            "{} not locked at the end: {}",
            s.name,
            s.last()
        );
        assert_eq!(
            s.last()["lock"]["seeks_after_lock"],
            0,
            "{} seeked: {}",
            s.name,
            s.last()
        );
        let lock = s.first(0, locked).expect("locked");
        let after = s.offsets_ms(&n2, lock, end);
        let through_restart = s.offsets_ms(&n2, killed_at.max(lock), end);
        println!(
            "netns join: {} vs n2 from its lock on: max {:.3} ms over {} samples \
             (from the kill of n0 on: max {:.3} ms)",
            s.name,
            worst(&after),
            after.len(),
            worst(&through_restart)
        );
        assert!(after.len() > 20, "{} too few samples", s.name);
        assert!(
            worst(&after) < 1.0,
            "{} {:.3} ms off",
            s.name,
            worst(&after)
        );
    }
}
