//! Transport control of a running fleet: a leader and a follower as separate `convoy node`
//! processes on loopback, sharing a fleet key, each with its OSC control port. Commands
//! sent to either bike (the follower relays to the leader) pause, seek, resume and stop
//! both; the test reads each node's JSON status lines.

use std::process::Command;
use std::time::Duration;

use rosc::OscType;
use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::node::Node;

fn playing(v: &Value) -> bool {
    v["playing"].as_bool() == Some(true)
}

fn position(v: &Value) -> f64 {
    v["position_s"].as_f64().unwrap_or(f64::NAN)
}

/// A leader (its timeline on `base`, SNTP on `base + 1`, control port `base + 2`, started
/// with `leader_args`) and a follower of it (control port `base + 3`), both with `sets`.
fn leader_and_follower(base: u16, sets: &[String], leader_args: &[&str]) -> (Node, Node) {
    let with =
        |own: Vec<String>| -> Vec<String> { own.into_iter().chain(sets.iter().cloned()).collect() };
    let leader = Node::spawn(
        "lead",
        "leader",
        base + 2,
        &with(vec![
            format!("sync.osc_port={base}"),
            format!("sync.sntp_port={}", base + 1),
        ]),
        leader_args,
    );
    let follower = Node::spawn(
        "bike2",
        "follower",
        base + 3,
        &with(vec![
            format!("sync.leader=127.0.0.1:{base}"),
            format!("sync.sntp_port={}", base + 1),
        ]),
        &[],
    );
    (leader, follower)
}

#[test]
fn pause_seek_resume_and_stop_reach_every_bike() {
    let base = 24_000 + (std::process::id() % 500) as u16 * 10;
    let (leader, follower) =
        leader_and_follower(base, &[], &["--track", "demo", "--start-in", "1.0"]);
    follower.wait("the follower to play the demo", 15.0, |v| {
        playing(v) && v["track"] == "demo" && position(v) > 1.0
    });
    // Pause, sent to the follower: relayed to the leader, which pauses the fleet.
    follower.send("/convoy/pause", vec![]);
    leader.wait("the leader to pause", 3.0, |v| !playing(v));
    follower.wait("the follower to pause", 3.0, |v| !playing(v));
    // The audio already queued for the DAC (tens of ms) still plays out after the pause
    // command; from then on the position holds.
    std::thread::sleep(Duration::from_millis(300));
    let held = position(&follower.last().expect("status"));
    std::thread::sleep(Duration::from_millis(500));
    let still = position(&follower.last().expect("status"));
    assert!(
        (still - held).abs() < 0.05,
        "paused position moved {held} → {still}"
    );
    // Seek while paused, then resume: both bikes go on from 20 s, together.
    leader.send("/convoy/seek", vec![OscType::Int(20_000)]);
    std::thread::sleep(Duration::from_millis(300));
    leader.send("/convoy/play", vec![]);
    let l = leader.wait("the leader to resume at 20 s", 4.0, |v| {
        playing(v) && position(v) > 20.0
    });
    let f = follower.wait("the follower to resume at 20 s", 4.0, |v| {
        playing(v) && position(v) > 20.0
    });
    assert!(position(&l) < 22.5 && position(&f) < 22.5, "{l} / {f}");
    // Same instant, same position: compare the lines nearest in monotonic time.
    std::thread::sleep(Duration::from_millis(1500));
    let l = leader.last().expect("leader status");
    let f = follower.last().expect("follower status");
    let dt = (l["mono_ns"].as_f64().unwrap_or(0.0) - f["mono_ns"].as_f64().unwrap_or(0.0)) / 1e9;
    let gap = (position(&l) + (-dt)) - position(&f);
    assert!(
        gap.abs() < 0.05,
        "leader and follower apart by {gap:.4} s after the resume"
    );
    assert_eq!(f["lock"]["seeks_after_lock"].as_u64(), Some(0), "{f}");
    // Stop: the track is unloaded everywhere.
    follower.send("/convoy/stop", vec![]);
    leader.wait("the leader to stop", 3.0, |v| v["track"].is_null());
    follower.wait("the follower to stop", 3.0, |v| v["track"].is_null());
    assert_eq!(leader.last().expect("status")["rejected"].as_u64(), Some(0));
}

/// Issue #27: `/convoy/play` sent to a follower replied `ok` while the leader logged
/// "refused: nothing to play". A relayed command is answered with the leader's verdict.
#[test]
fn a_relayed_command_is_answered_with_the_leaders_verdict() {
    let base = 26_000 + (std::process::id() % 500) as u16 * 10;
    let (leader, follower) = leader_and_follower(base, &["osc.reply=true".to_string()], &[]);
    follower.wait("the follower to run", 10.0, |v| v["role"] == "follower");
    leader.wait("the leader to run", 10.0, |v| v["role"] == "leader");
    // The leader has nothing to play: the follower's answer is the leader's refusal.
    let reply = follower.ask("/convoy/play", vec![], 5.0);
    assert!(
        reply.contains("the leader refused: nothing to play"),
        "{reply}"
    );
    // A command the leader carries out is answered ok, and the fleet plays it.
    let reply = follower.ask("/convoy/play", vec![OscType::String("demo".into())], 5.0);
    assert!(reply.contains("\"ok\""), "{reply}");
    leader.wait("the leader to play the demo", 5.0, |v| {
        playing(v) && v["track"] == "demo"
    });
}

#[test]
fn a_follower_without_the_key_gets_nothing_and_is_counted() {
    let base = 29_000 + (std::process::id() % 500) as u16 * 10;
    let leader = Node::spawn(
        "lead",
        "leader",
        base + 2,
        &[
            format!("sync.osc_port={base}"),
            format!("sync.sntp_port={}", base + 1),
        ],
        &["--track", "demo"],
    );
    let mut cmd = Command::new(convoy_bin());
    cmd.env(
        "CONVOY_KEY",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
    let stranger = cmd
        .args([
            "--set",
            "audio.sink=null",
            "--set",
            "sync.role=follower",
            "--set",
            &format!("sync.leader=127.0.0.1:{base}"),
            "--set",
            &format!("sync.sntp_port={}", base + 1),
            "--log",
            "error",
            "node",
            "--seconds",
            "3",
            "--status-every",
            "0.5",
        ])
        .output()
        .expect("stranger runs");
    let last: Value = String::from_utf8_lossy(&stranger.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("status");
    assert!(last["track"].is_null(), "stranger played: {last}");
    assert_eq!(last["sntp_ok"].as_u64(), Some(0), "{last}");
    assert_eq!(last["timelines"].as_u64(), Some(0), "{last}");
    let l = leader.wait("the leader to count the refusals", 3.0, |v| {
        v["rejected"].as_u64().unwrap_or(0) >= 5
    });
    assert!(playing(&l), "the leader must keep playing: {l}");
}

#[test]
fn a_fleet_role_without_a_key_is_a_clear_error() {
    let out = Command::new(convoy_bin())
        .env_remove("CONVOY_KEY")
        .args([
            "--set",
            "audio.sink=null",
            "node",
            "--role",
            "leader",
            "--seconds",
            "1",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pre-shared key") && err.contains("keygen"),
        "{err}"
    );
}
