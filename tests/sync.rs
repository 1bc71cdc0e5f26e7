//! Fleet sync through the real rig: separate `convoy node` processes on loopback, skewed
//! clocks and DACs, an impaired network, offsets measured from the virtual sinks' pilot
//! recordings. Short run and looser bounds than the scenario figures (noisy 2-core CI).

use std::process::Command;

use crate::util::convoy_bin;

fn scenario(name: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join(name);
    let status = Command::new(convoy_bin())
        .args(["tool", "scenario", "--out"])
        .arg(&out)
        .args(["--base-port", &port.to_string()])
        .args(extra)
        .status()
        .expect("scenario runs");
    assert!(status.success(), "scenario {name} failed");
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary");
    serde_json::from_str(&text).expect("json")
}

fn port_base(slot: u16) -> u16 {
    20_000 + (std::process::id() % 200) as u16 * 100 + slot * 50
}

#[test]
fn three_bikes_lock_within_a_millisecond_through_an_impaired_network() {
    let s = scenario("basic", port_base(0), &["--nodes", "3", "--seconds", "25"]);
    let nodes = s["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        let lock = n["join_to_lock_s"].as_f64().unwrap_or(f64::INFINITY);
        assert!(lock < 10.0, "{} locked after {lock} s", n["node"]);
        assert_eq!(
            n["seeks_after_lock"].as_u64(),
            Some(0),
            "{}: hard seek after lock",
            n["node"]
        );
        assert!(
            n["max_speed_ppm"].as_f64().unwrap_or(1e9) <= 1000.0 + 1e-6,
            "speed beyond the join clamp (sync.join_max_ppm)"
        );
    }
    let (p50, p99, max) = (
        s["p50_ms"].as_f64().expect("p50"),
        s["p99_ms"].as_f64().expect("p99"),
        s["max_ms"].as_f64().expect("max"),
    );
    eprintln!("3 bikes: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms");
    assert!(
        p50 < 0.5 && p99 < 2.0 && max < 4.0,
        "offsets p50 {p50} p99 {p99} max {max} ms"
    );
}

#[test]
fn a_leader_clock_step_does_not_make_followers_jump() {
    let s = scenario(
        "step",
        port_base(1),
        &[
            "--nodes",
            "2",
            "--seconds",
            "30",
            "--leader-step-at-s",
            "12",
            "--leader-step-ms",
            "2000",
            "--loss",
            "0",
            "--jitter-ms",
            "1",
        ],
    );
    let n = &s["nodes"][0];
    assert_eq!(
        n["seeks_after_lock"].as_u64(),
        Some(0),
        "follower seeked on the leader's clock step"
    );
    let max = s["max_ms"].as_f64().expect("max");
    eprintln!("after a +2 s leader clock step: max offset {max:.3} ms");
    assert!(max < 4.0, "max offset {max} ms");
}

#[test]
fn a_scheduled_start_is_played_on_the_same_sample_by_every_bike() {
    // The leader announces its start 5 s ahead; followers (running from 2 s) start with it.
    let s = scenario(
        "scheduled",
        port_base(2),
        &["--nodes", "3", "--seconds", "15", "--start-in-s", "5"],
    );
    for n in s["nodes"].as_array().expect("nodes") {
        assert_eq!(
            n["seeks"].as_u64(),
            Some(0),
            "{} needed a seek: it did not start on schedule",
            n["node"]
        );
        let first = n["first_second_max_ms"].as_f64().unwrap_or(f64::INFINITY);
        eprintln!(
            "{}: worst offset in the first second {first:.3} ms",
            n["node"]
        );
        assert!(first < 3.0, "{}: {first} ms off at the start", n["node"]);
    }
}

#[test]
fn a_leader_device_outage_is_not_heard_by_the_fleet() {
    // The leader's sound device stops for 300 ms (a stream being rebuilt). The leader seeks
    // itself back onto the timeline it publishes; the followers neither seek nor part.
    let s = scenario(
        "outage",
        port_base(3),
        &[
            "--nodes",
            "3",
            "--seconds",
            "20",
            "--leader-audio-stall-at-s",
            "10",
            "--leader-audio-stall-ms",
            "300",
        ],
    );
    let o = &s["leader_outage"];
    assert_eq!(o["gaps"].as_u64(), Some(1), "{o}");
    assert_eq!(o["leader_catch_ups"].as_u64(), Some(1), "{o}");
    let apart = o["followers_max_ms"].as_f64().unwrap_or(f64::INFINITY);
    eprintln!("leader outage: followers apart by at most {apart:.3} ms meanwhile");
    assert!(apart < 2.0, "followers {apart} ms apart during the outage");
    assert_eq!(s["seeks_after_lock"].as_u64(), Some(0), "a follower seeked");
    let p99 = s["p99_ms"].as_f64().expect("p99");
    assert!(
        p99 < 2.0,
        "p99 {p99} ms against the leader outside the outage"
    );
}

/// The `wifi-city` profile (two mesh hops, heavy delay tails, bursty loss, a queued
/// downlink, power save; its first outage comes at 40 s, after this run): followers say
/// they are locked only under a verified clock bound, the true clock error stays within
/// it, and nobody seeks after locking. The offsets themselves are not asserted: the
/// filter keeps a 1–1.6 ms bias on this downlink (docs/sync.md), so a follower may never
/// meet the rig's 1 ms lock criterion.
#[test]
fn wifi_city_is_locked_only_under_a_verified_bound() {
    let s = scenario(
        "wifi-city",
        port_base(3),
        &["--nodes", "3", "--seconds", "30", "--profile", "wifi-city"],
    );
    for n in s["nodes"].as_array().expect("nodes") {
        assert_eq!(n["seeks_after_lock"].as_u64(), Some(0), "{}", n["node"]);
        assert_eq!(n["locked_unbounded"].as_u64(), Some(0), "{}", n["node"]);
        let bound = n["bound_max_us"].as_f64().unwrap_or(f64::INFINITY);
        assert!(bound <= 25_000.0, "{}: bound {bound} us", n["node"]);
        let err = n["sntp_err_max_us"].as_f64().unwrap_or(f64::INFINITY);
        eprintln!(
            "{}: clock error max {err:.0} us, bound max {bound:.0} us",
            n["node"]
        );
        assert!(
            err <= bound,
            "{}: clock error {err} us beyond its bound {bound} us",
            n["node"]
        );
    }
}

/// A 30 s link outage (`--profile outage`): followers free-run on their learned frequency
/// and the last timeline, drift little, and take the link back without a seek.
#[test]
fn a_thirty_second_outage_is_held_over_without_a_seek() {
    let s = scenario(
        "outage",
        port_base(4),
        &["--nodes", "2", "--seconds", "58", "--profile", "outage"],
    );
    let h = &s["holdover"];
    let (max, drift) = (
        h["max_ms"].as_f64().expect("holdover max"),
        h["drift_ms"].as_f64().expect("holdover drift"),
    );
    eprintln!("outage 30 s: max {max:.3} ms, drift {drift:.3} ms");
    assert!(
        drift < 2.0 && max < 4.0,
        "holdover drift {drift} max {max} ms"
    );
    assert_eq!(s["seeks_after_lock"].as_u64(), Some(0));
}

/// Every other named profile (`convoy tool scenario --profile`, docs/sync.md "Impairment
/// profiles") at looser bounds than its documented figures: 3 bikes, 25 s each. The
/// followers lock (|offset| < 1 ms held 2 s) within 20 s (`asym` and `slow` took 9–11 s
/// in one run at load 8: a one-sided queue biases the clock estimate towards the 1 ms
/// criterion), stay within 5 ms after it at
/// p99, never seek after it, never say "locked" without a verified clock bound, and their
/// true clock error stays inside that bound.
#[test]
fn every_impairment_profile_locks_under_a_verified_bound() {
    // Six 3-bike scenarios in a row: not beside the other timing-sensitive tests.
    let _slot = crate::util::realtime_slot();
    let mut failures = Vec::new();
    for profile in ["slow", "tail", "bursty", "asym", "powersave", "hops"] {
        let s = scenario(
            profile,
            port_base(5),
            &["--nodes", "3", "--seconds", "25", "--profile", profile],
        );
        for n in s["nodes"].as_array().expect("nodes") {
            let node = n["node"].as_str().unwrap_or("?");
            let lock = n["join_to_lock_s"].as_f64().unwrap_or(f64::INFINITY);
            let p99 = n["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
            let err = n["sntp_err_max_us"].as_f64().unwrap_or(f64::INFINITY);
            let bound = n["bound_max_us"].as_f64().unwrap_or(f64::INFINITY);
            eprintln!(
                "{profile} {node}: lock {lock:.2} s, after lock p99 {p99:.3} ms, clock error max {err:.0} us, bound max {bound:.0} us"
            );
            if lock >= 20.0 {
                failures.push(format!("{profile} {node}: locked after {lock} s"));
            }
            if p99 >= 5.0 {
                failures.push(format!("{profile} {node}: after-lock p99 {p99} ms"));
            }
            if n["seeks_after_lock"].as_u64() != Some(0) {
                failures.push(format!("{profile} {node}: sought after lock"));
            }
            if n["locked_unbounded"].as_u64() != Some(0) {
                failures.push(format!("{profile} {node}: locked without a bound"));
            }
            if err > bound {
                failures.push(format!(
                    "{profile} {node}: clock error {err} us beyond its bound {bound} us"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
