//! Hierarchical fleet mode through processes: seven `convoy node` processes with
//! `sync.role=auto` and `fleet.group_size=3` on 127.0.0.1–7, each with a virtual DAC of its
//! own crystal error recording what it played. The fleet elects a leader and two
//! sub-leaders; every other bike takes time and timeline from the publisher the tree deals
//! it. The test checks the tree from the status lines, that the leader serves only its
//! direct subscribers (timeline subscribers and SNTP requests per second), and — from the
//! recordings, on the shared monotonic clock — that every bike plays within 1 ms of the
//! leader once locked. Then a sub-leader is SIGKILLed: its group re-homes within the peer
//! timeout plus a little, nobody seeks, and every bike stays within 5 ms of the leader.
//! `CONVOY_HIER_NODES=9` runs the same with nine bikes (how `docs/fleet.md`'s figures were
//! taken; `--nocapture` prints them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convoy::clock::mono_ns;
use convoy::rig::measure::{offsets, Trace};
use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::node::{auto_fleet, auto_sets, Node};

const RATE: f64 = 44_100.0;
const GROUP: usize = 3;

/// One bike: a node process, its status lines and its recording.
struct Bike {
    name: String,
    node: Node,
    rec: PathBuf,
}

impl Bike {
    /// Bike `k` on 127.0.0.k+1 with ports from `base + 10 k`; heartbeats go to `fleet`.
    fn spawn(dir: &Path, k: usize, base: u16, fleet: &[String]) -> Bike {
        let name = format!("hier-{}", char::from(b'a' + k as u8));
        let rec = dir.join(format!("{name}.csv"));
        let dac = [60.0, -45.0, 25.0, -80.0, 15.0][k % 5];
        let skew = [35.0, -50.0, 10.0, 70.0, -20.0][k % 5];
        let offset_ms = [400.0, -300.0, 150.0, -600.0, 250.0][k % 5];
        let mut sets = auto_sets(&name, k as u16, base, fleet);
        sets.extend([
            format!("fleet.group_size={GROUP}"),
            "audio.sink=virtual".to_string(),
            format!("audio.virtual.record={}", rec.display()),
            "audio.virtual.pilot=true".to_string(),
            format!("audio.virtual.rate_error_ppm={dac}"),
            format!("clock.ppm={skew}"),
            format!("clock.offset_ms={offset_ms}"),
        ]);
        let mut cmd = Command::new(convoy_bin());
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--log", "warn", "node", "--track", "pilot"])
            .args(["--status-every", "0.1", "--start-in", "0.5"]);
        Bike {
            name,
            node: Node::launch(cmd, 0),
            rec,
        }
    }

    fn last(&self) -> Value {
        self.node.last().unwrap_or_default()
    }

    /// The last status line at or before monotonic time `t`.
    fn at(&self, t: u64) -> Value {
        self.node
            .all()
            .into_iter()
            .rev()
            .find(|v| v["mono_ns"].as_u64().is_some_and(|m| m <= t))
            .unwrap_or_default()
    }

    /// SIGTERM and wait: the node flushes its recording.
    fn stop(mut self) -> (Vec<Value>, PathBuf) {
        self.node.terminate();
        (self.node.all(), self.rec.clone())
    }
}

fn upstream(v: &Value) -> Option<&str> {
    v["fleet"]["upstream"].as_str()
}

fn locked(v: &Value) -> bool {
    v["role"] == "follower" && v["lock"]["locked"] == true && v["playing"] == true
}

/// Wait until `f` holds for every bike's latest status at once.
fn wait_all(bikes: &[Bike], what: &str, secs: f64, f: impl Fn(&Bike, &Value) -> bool) {
    let end = mono_ns() + (secs * 1e9) as u64;
    loop {
        let lasts: Vec<Value> = bikes.iter().map(Bike::last).collect();
        if bikes.iter().zip(&lasts).all(|(b, v)| f(b, v)) {
            return;
        }
        if mono_ns() > end {
            let show: Vec<String> = bikes
                .iter()
                .zip(&lasts)
                .map(|(b, v)| {
                    format!(
                        "{}: role {} up {:?} publishes {} locked {} playing {} leader {} \
                         term {} peers {} rejected {} fleet-mono {:.1} ms",
                        b.name,
                        v["role"],
                        upstream(v),
                        v["fleet"]["publishes"],
                        v["lock"]["locked"],
                        v["playing"],
                        v["fleet"]["leader"],
                        v["fleet"]["term"],
                        v["fleet"]["peers"].as_array().map_or(0, Vec::len),
                        v["rejected"],
                        (v["fleet_ns"].as_f64().unwrap_or(0.0)
                            - v["mono_ns"].as_f64().unwrap_or(0.0))
                            / 1e6
                    )
                })
                .collect();
            panic!("timed out waiting for {what}:\n{}", show.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Per-second rate of counter `key` (a status field path) over `[from, to]`.
fn rate(b: &Bike, key: &[&str], from: u64, to: u64) -> f64 {
    let read = |v: &Value| key.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0);
    let (a, z) = (b.at(from), b.at(to));
    let dt = (z["mono_ns"].as_f64().unwrap_or(0.0) - a["mono_ns"].as_f64().unwrap_or(0.0)) / 1e9;
    (read(&z) - read(&a)) / dt.max(1e-3)
}

/// Messages per second at a bike, in and out: timeline datagrams (sent as publisher,
/// received as subscriber), SNTP (answered as server, exchanges as client — two
/// datagrams each way counted once per side), heartbeats sent and received.
fn messages(b: &Bike, from: u64, to: u64) -> [f64; 3] {
    let timeline = rate(b, &["timelines_sent"], from, to) + rate(b, &["timelines"], from, to);
    let sntp = rate(b, &["sntp_served"], from, to) + rate(b, &["sntp_ok"], from, to);
    let heart = rate(b, &["fleet", "heartbeats_sent"], from, to)
        + rate(b, &["fleet", "heartbeats_received"], from, to);
    [timeline, 2.0 * sntp, heart]
}

#[test]
fn sub_leaders_republish_and_their_groups_rehome_when_one_dies() {
    let n: usize = std::env::var("CONVOY_HIER_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .clamp(7, 20);
    let dir = std::env::temp_dir().join(format!("convoy-fleet-hier-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let base = 52_000 + (std::process::id() % 60) as u16 * 10 * 20;
    let fleet = auto_fleet(0..n as u16, base);
    let mut bikes: Vec<Bike> = (0..n).map(|k| Bike::spawn(&dir, k, base, &fleet)).collect();
    let leader_name = bikes[n - 1].name.clone(); // same priority: the highest id leads
    let publishers = n.div_ceil(GROUP);
    // The tree: every bike locked to the publisher it was dealt.
    wait_all(&bikes, "the tree to form and lock", 40.0, |b, v| {
        if b.name == leader_name {
            v["role"] == "leader" && v["playing"] == true
        } else {
            locked(v) && upstream(v).is_some()
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let lasts: Vec<Value> = bikes.iter().map(Bike::last).collect();
    let subs: Vec<String> = bikes
        .iter()
        .zip(&lasts)
        .filter(|(b, v)| b.name != leader_name && v["fleet"]["publishes"] == true)
        .map(|(b, _)| b.name.clone())
        .collect();
    assert_eq!(subs.len(), publishers - 1, "sub-leaders {subs:?}");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (b, v) in bikes.iter().zip(&lasts) {
        if let Some(up) = upstream(v) {
            groups
                .entry(up.to_string())
                .or_default()
                .push(b.name.clone());
        }
    }
    for sub in &subs {
        let group = groups.get(sub).map_or(0, Vec::len);
        assert!((1..=GROUP).contains(&group), "sub-leader {sub}: {groups:?}");
        assert_eq!(
            upstream(&lasts[bikes.iter().position(|b| b.name == *sub).unwrap_or(0)]),
            Some(leader_name.as_str()),
            "a sub-leader follows the leader"
        );
    }
    assert!(
        groups.keys().all(|p| *p == leader_name || subs.contains(p)),
        "every upstream publishes: {groups:?}"
    );
    eprintln!("tree: {groups:?}");
    // Each publisher serves exactly its direct subscribers, timeline and SNTP (a bike that
    // re-homed while the tree formed stays on its old publisher's list until it has not
    // resubscribed for 5 s).
    let direct = |b: &Bike| groups.get(&b.name).map_or(0, Vec::len) as u64;
    wait_all(&bikes, "publishers to serve their groups", 8.0, |b, v| {
        v["subscribers"].as_u64() == Some(direct(b))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let lasts: Vec<Value> = bikes.iter().map(Bike::last).collect();
    let (from, to) = (mono_ns() - 1_500_000_000, mono_ns());
    for (b, v) in bikes.iter().zip(&lasts) {
        let direct = direct(b);
        let sntp = rate(b, &["sntp_served"], from, to);
        let [tl, sn, hb] = messages(b, from, to);
        eprintln!(
            "{} ({} direct): {} subscribers, SNTP answered {sntp:.1}/s; messages/s timeline \
             {tl:.1} + SNTP {sn:.1} + heartbeats {hb:.1} = {:.1}",
            b.name,
            direct,
            v["subscribers"],
            tl + sn + hb
        );
        assert_eq!(v["subscribers"].as_u64(), Some(direct), "{}", b.name);
        // poll_hz = 10 per direct subscriber (scheduling slack either way).
        assert!(
            sntp >= 6.0 * direct as f64 && sntp <= 12.0 * direct as f64 + 1.0,
            "{} answered {sntp:.1} SNTP requests/s for {direct} subscribers",
            b.name
        );
    }
    let lock_end = mono_ns();
    // Kill a sub-leader without a goodbye: its group re-homes and plays on.
    std::thread::sleep(Duration::from_millis(500));
    let victim = subs[0].to_string();
    let orphans = groups[&victim].clone();
    let killed_at = mono_ns();
    let pos = bikes.iter().position(|b| b.name == victim).expect("victim");
    drop(bikes.remove(pos)); // SIGKILL
    wait_all(&bikes, "the group to re-home", 10.0, |b, v| {
        b.name == leader_name || (locked(v) && upstream(v).is_some_and(|u| u != victim))
    });
    let rehomed_ms = bikes
        .iter()
        .filter(|b| orphans.contains(&b.name))
        .map(|b| {
            let t = b
                .node
                .all()
                .iter()
                .find(|v| {
                    v["mono_ns"].as_u64() > Some(killed_at)
                        && upstream(v).is_some_and(|u| u != victim)
                })
                .and_then(|v| v["mono_ns"].as_u64())
                .unwrap_or(u64::MAX);
            t.saturating_sub(killed_at) as f64 / 1e6
        })
        .fold(0.0, f64::max);
    eprintln!("{victim} killed: its group {orphans:?} re-homed within {rehomed_ms:.0} ms");
    // The peer timeout is 1 s; the view changes when it expires.
    assert!(rehomed_ms < 2_500.0, "re-homing took {rehomed_ms:.0} ms");
    std::thread::sleep(Duration::from_secs(2));
    let end = mono_ns();
    let stopped: Vec<(String, Vec<Value>, PathBuf)> = bikes
        .drain(..)
        .map(|b| {
            let name = b.name.clone();
            let (lines, rec) = b.stop();
            (name, lines, rec)
        })
        .collect();
    let (_, _, leader_rec) = stopped
        .iter()
        .find(|(name, _, _)| *name == leader_name)
        .expect("leader");
    let lead = Trace::load(leader_rec, RATE).expect("leader recording");
    // The pilot carries positions modulo 2^24 frames, and a decoder whose first reading is
    // a hair below frame 0 (the leader starts the track there) unwraps one period up: compare
    // modulo the period.
    let period_s = convoy::audio::pilot::PERIOD_FRAMES / RATE;
    let window = |s: &[(u64, f64)], from: u64, to: u64| -> Vec<f64> {
        s.iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, o)| (o - (o / period_s).round() * period_s).abs() * 1e3)
            .collect()
    };
    for (name, lines, rec) in stopped.iter().filter(|(n, _, _)| *n != leader_name) {
        let last = lines.last().expect("status");
        assert_eq!(last["lock"]["seeks_after_lock"], 0, "{name} seeked: {last}");
        assert!(
            lines
                .iter()
                .filter(|v| v["mono_ns"].as_u64() > Some(killed_at))
                .all(|v| v["playing"] == true),
            "{name} stopped playing after the kill"
        );
        let trace = Trace::load(rec, RATE).expect("recording");
        let off = offsets(&lead, &trace, 50_000_000);
        let locked_at = lines
            .iter()
            .find(|v| locked(v))
            .and_then(|v| v["mono_ns"].as_u64())
            .expect("locked");
        // Once locked, well settled: within 1 ms of the leader until the kill.
        let settled = window(&off, (locked_at + 1_000_000_000).min(lock_end), killed_at);
        let after = window(&off, killed_at, end - 200_000_000);
        let worst = settled.iter().copied().fold(0.0, f64::max);
        let worst_after = after.iter().copied().fold(0.0, f64::max);
        let role = if subs.contains(name) {
            "sub-leader"
        } else if groups[&leader_name].contains(name) {
            "leader's group"
        } else {
            "a sub-leader's group"
        };
        let mean = settled.iter().sum::<f64>() / settled.len().max(1) as f64;
        eprintln!(
            "{name} ({role}): vs leader |offset| mean {mean:.3} max {worst:.3} ms locked \
             ({} samples), max {worst_after:.3} ms after the kill",
            settled.len()
        );
        assert!(settled.len() > 20, "{name}: too few samples");
        assert!(worst < 1.0, "{name} {worst:.3} ms from the leader");
        assert!(after.len() > 20, "{name}: too few samples after the kill");
        assert!(
            worst_after < 5.0,
            "{name} {worst_after:.3} ms off after the kill"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
