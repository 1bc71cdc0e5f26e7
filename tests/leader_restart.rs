//! A restarted or stalled leader, with fixed roles (issue #21, item 2): a leader and a
//! follower as `convoy node` processes on loopback, each with a virtual DAC recording what
//! it really played (decoded from the position pilot). The leader is SIGKILLed after 8 s
//! and restarted 2 s later with the same id: its timeline starts again at sequence 1 and
//! frame 0. The follower must re-join the new leader at once (a new incarnation replaces
//! the old timeline), and must never say "locked" while it plays far from the leader.
//! Then the leader is SIGSTOPped for 5 s and continued: the follower holds over, says so
//! (not locked), and again never reports a lock it does not have. The offsets are measured
//! on the shared monotonic clock from the recordings, not taken from the nodes' belief.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convoy::clock::mono_ns;
use convoy::rig::measure::{offsets, Trace};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::node::Node;

const RATE: f64 = 44_100.0;

fn spawn(dir: &Path, name: &str, rec: &str, sets: &[String], args: &[&str]) -> (Node, PathBuf) {
    let rec = dir.join(rec);
    let mut all = vec![
        format!("node.id={name}"),
        "sync.bind=127.0.0.1".to_string(),
        "audio.sink=virtual".to_string(),
        format!("audio.virtual.record={}", rec.display()),
        "audio.virtual.pilot=true".to_string(),
    ];
    all.extend(sets.iter().cloned());
    let mut cmd = Command::new(convoy_bin());
    for s in &all {
        cmd.arg("--set").arg(s);
    }
    cmd.args(["--log", "warn", "node", "--status-every", "0.1"])
        .args(args);
    (Node::launch(cmd, 0), rec)
}

fn leader(dir: &Path, rec: &str, port: u16) -> (Node, PathBuf) {
    spawn(
        dir,
        "lead",
        rec,
        &[
            "sync.role=leader".to_string(),
            format!("sync.osc_port={port}"),
            format!("sync.sntp_port={}", port + 1),
            "audio.virtual.rate_error_ppm=40".to_string(),
            "clock.ppm=25".to_string(),
        ],
        &["--track", "pilot", "--start-in", "0.5"],
    )
}

fn signal(node: &Node, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(node.child.id()).expect("pid fits in i32"));
    kill(pid, sig).expect("signal to our own child");
}

fn locked(v: &Value) -> bool {
    v["lock"]["locked"] == true
}

/// The follower's measured offset (s) against `lead` at each of its status lines in
/// `[from, to)` that says locked: (mono_ns, offset).
fn locked_offsets(lines: &[Value], series: &[(u64, f64)], from: u64, to: u64) -> Vec<(u64, f64)> {
    lines
        .iter()
        .filter(|v| locked(v))
        .filter_map(|v| v["mono_ns"].as_u64())
        .filter(|t| (from..to).contains(t))
        .filter_map(|t| {
            // The nearest measured sample within 60 ms.
            let i = series.partition_point(|s| s.0 < t);
            [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|k| series.get(k))
                .filter(|s| s.0.abs_diff(t) < 60_000_000)
                .min_by_key(|s| s.0.abs_diff(t))
                .map(|s| (t, s.1))
        })
        .collect()
}

#[test]
fn a_restarted_or_stalled_leader_is_rejoined_and_never_reported_locked_while_far() {
    // Sub-millisecond bounds on a stopped and restarted leader: not beside the heavy fleets.
    let _slot = crate::util::realtime_slot();
    let dir = std::env::temp_dir().join(format!("convoy-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Apart from the other tests' ports and below the ephemeral range.
    let port = 10_000 + (std::process::id() % 190) as u16 * 10;
    let (old, _) = leader(&dir, "lead-1.csv", port);
    let (follower, frec) = spawn(
        &dir,
        "bike-1",
        "bike-1.csv",
        &[
            "sync.role=follower".to_string(),
            format!("sync.leader=127.0.0.1:{port}"),
            format!("sync.sntp_port={}", port + 1),
            "audio.virtual.rate_error_ppm=-60".to_string(),
            "clock.ppm=-35".to_string(),
            "clock.offset_ms=250".to_string(),
        ],
        &[],
    );
    follower.wait("the follower to lock", 20.0, |v| {
        locked(v) && v["playing"] == true
    });
    std::thread::sleep(Duration::from_secs(6));
    // SIGKILL: no goodbye, the recording is lost; 2 s later the same id starts again.
    let killed_at = mono_ns();
    drop(old);
    std::thread::sleep(Duration::from_secs(2));
    let restarted_at = mono_ns();
    let (new, nrec) = leader(&dir, "lead-2.csv", port);
    let rejoined = follower.wait("the follower to lock to the restarted leader", 15.0, |v| {
        locked(v) && v["mono_ns"].as_u64() > Some(restarted_at)
    });
    let relocked_at = rejoined["mono_ns"].as_u64().expect("mono_ns");
    std::thread::sleep(Duration::from_secs(3));
    // SIGSTOP 5 s, then SIGCONT: the follower holds over meanwhile.
    let stopped_at = mono_ns();
    signal(&new, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(5));
    signal(&new, Signal::SIGCONT);
    let continued_at = mono_ns();
    std::thread::sleep(Duration::from_secs(6));
    let end = mono_ns();
    let mut new = new;
    let mut follower = follower;
    follower.terminate();
    new.terminate();
    std::thread::sleep(Duration::from_millis(100));
    let lines = follower.all();

    // Truth from the recordings: the follower against the restarted leader.
    let tn = Trace::load(&nrec, RATE).expect("restarted leader's recording");
    let tf = Trace::load(&frec, RATE).expect("follower's recording");
    let series = offsets(&tn, &tf, 20_000_000);
    assert!(series.len() > 200, "too few samples: {}", series.len());
    let rejoin_s = series
        .iter()
        .find(|(t, o)| *t > restarted_at && o.abs() < 0.05)
        .map_or(f64::INFINITY, |(t, _)| (t - restarted_at) as f64 / 1e9);
    let relock_s = (relocked_at - restarted_at) as f64 / 1e9;
    let worst = |from: u64, to: u64| {
        locked_offsets(&lines, &series, from, to)
            .iter()
            .map(|(_, o)| o.abs())
            .fold(0.0, f64::max)
    };
    let restart_worst = worst(restarted_at, stopped_at);
    // From SIGCONT on. While the leader is stopped, its virtual sink is stopped too (a real
    // DAC would keep clocking): the rows it writes after SIGCONT carry heard times computed
    // from its frame count, some of them inside the stall, where a follower may still say
    // locked for the freshness bound (counted below). Comparing those lines with such rows
    // measured the rig, not the follower: 633 ms once at load ~9, at a locked line 0.6 s
    // after SIGSTOP. Locked lines during the stall are held to the freshness bound instead.
    let stall_worst = worst(continued_at, end);
    // While the leader was dead or stopped, nothing was verified: no lock after the bound
    // (1 s without a fresh timeline, and a status interval of slack).
    let silent_locked = |from: u64, to: u64| {
        lines
            .iter()
            .filter(|v| locked(v))
            .filter_map(|v| v["mono_ns"].as_u64())
            .filter(|t| (from + 1_300_000_000..to).contains(t))
            .count()
    };
    let (dead_locked, stopped_locked) = (
        silent_locked(killed_at, restarted_at),
        silent_locked(stopped_at, continued_at),
    );
    let max_after_cont = series
        .iter()
        .filter(|(t, _)| *t > continued_at)
        .map(|(_, o)| o.abs())
        .fold(0.0, f64::max);
    eprintln!(
        "leader restart: re-joined (|offset| < 50 ms) {rejoin_s:.2} s and locked {relock_s:.2} s \
         after the restart; max |offset| while reporting locked: {:.3} ms after the restart, \
         {:.3} ms around the 5 s stall (max |offset| after SIGCONT {:.1} ms); locked lines while \
         the leader was dead {dead_locked}, stopped {stopped_locked}",
        restart_worst * 1e3,
        stall_worst * 1e3,
        max_after_cont * 1e3,
    );
    assert!(
        rejoin_s < 4.0,
        "re-joined {rejoin_s:.2} s after the restart"
    );
    assert!(
        restart_worst < 0.05,
        "reported locked {:.3} ms away from the restarted leader",
        restart_worst * 1e3
    );
    assert!(
        stall_worst < 0.05,
        "reported locked {:.3} ms away from the leader around its stall",
        stall_worst * 1e3
    );
    assert_eq!(
        (dead_locked, stopped_locked),
        (0, 0),
        "reported locked without a fresh timeline"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
