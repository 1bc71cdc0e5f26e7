//! Fleet membership through real networking: `convoy tool member` processes in separate
//! network namespaces on a bridge (tests/util/netns.rs), killed, partitioned, healed,
//! joined late and re-addressed; plus forged heartbeats against a member on loopback.
//! The discovery and failover figures are printed (run with `--nocapture` to see them).
//! The namespace tests need root: they are ignored under plain `cargo test` and run by
//! tools/test.sh with `--include-ignored`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use convoy::clock::{mono_ns, LocalClock};
use convoy::fleet::sender_id;
use convoy::fleet::wire::{AdvertisedRole, Heartbeat};
use convoy::security::{envelope, FleetKey, Keyring};

use crate::util::netns::{leader_of, mono_of, Lab, Member, KEY};

const S: Duration = Duration::from_secs(1);

/// A lab of `n` namespaces (needs root and iproute2).
fn lab(n: usize) -> Lab {
    Lab::new(n).expect("create the namespace lab (root and iproute2)")
}

/// The first line printed after `since` in which `m` follows `leader`, as its `mono_ns`.
fn follows_at(m: &Member, leader: &str, since: u64, timeout: Duration) -> Option<u64> {
    m.wait_for(timeout, |v| {
        mono_of(v) >= since && leader_of(v) == Some(leader)
    })
    .map(|v| mono_of(&v))
}

/// Milliseconds until every member follows `leader` (the slowest one), after `since`.
fn all_follow(members: &[&Member], leader: &str, since: u64, timeout: Duration) -> f64 {
    let mut worst = 0u64;
    for m in members {
        let at = follows_at(m, leader, since, timeout)
            .unwrap_or_else(|| panic!("no agreement on {leader}: last {:?}", m.last()));
        worst = worst.max(at.saturating_sub(since));
    }
    worst as f64 / 1e6
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "needs root and iproute2 for network namespaces"]
fn discovery_and_leader_failover_figures() {
    let lab = lab(4);
    let prio = |p: u32| format!("fleet.priority={p}");
    let t0 = mono_ns();
    let mut nodes: Vec<Member> = (0..4)
        .map(|i| lab.member(i, &format!("n{i}"), &[&prio(10 * (i as u32 + 1))]))
        .collect();
    let fresh = all_follow(&nodes.iter().collect::<Vec<_>>(), "n3", t0, 5 * S);
    println!(
        "fleet: fresh 4-node fleet agrees on its leader after {fresh:.0} ms (startup grace 300 ms)"
    );

    // Late joiners: restart the lowest-priority node; time until it knows the leader.
    let mut join = Vec::new();
    for _ in 0..10 {
        nodes[0].kill();
        let t = mono_ns();
        nodes[0] = lab.member(0, "n0", &[&prio(10)]);
        let at = follows_at(&nodes[0], "n3", t, 3 * S).expect("joiner learns the leader");
        join.push((at - t) as f64 / 1e6);
    }
    let (p50, p99) = (percentile(&mut join, 0.5), percentile(&mut join, 0.99));
    println!("fleet: joiner to first 'leader known' over {} starts: median {p50:.0} ms, p99 {p99:.0} ms (process start included)", join.len());
    assert!(p99 < 2000.0, "discovery p99 {p99} ms");

    // Failover: kill the leader (no goodbye); the next-best must lead everywhere < 1.5 s.
    let mut failover = Vec::new();
    for _ in 0..3 {
        nodes[3].kill();
        let t = mono_ns();
        let rest: Vec<&Member> = nodes[..3].iter().collect();
        failover.push(all_follow(&rest, "n2", t, 3 * S));
        nodes[3] = lab.member(3, "n3", &[&prio(40)]);
        all_follow(&nodes.iter().collect::<Vec<_>>(), "n3", mono_ns(), 5 * S);
    }
    let worst = failover.iter().copied().fold(0.0, f64::max);
    println!("fleet: leader killed → every follower follows the new leader after {failover:.0?} ms (peer timeout 1000 ms)");
    assert!(worst < 1500.0, "failover took {worst} ms");
}

#[test]
#[ignore = "needs root and iproute2 for network namespaces"]
fn partition_heals_to_one_leader_over_broadcast_only() {
    let lab = lab(4);
    // mDNS off: the UDP broadcast heartbeat alone carries membership.
    let set = |p: u32| {
        vec![
            format!("fleet.priority={p}"),
            "fleet.mdns=false".to_string(),
        ]
    };
    let nodes: Vec<Member> = (0..4)
        .map(|i| {
            let s = set(10 * (i as u32 + 1));
            let refs: Vec<&str> = s.iter().map(String::as_str).collect();
            lab.member(i, &format!("n{i}"), &refs)
        })
        .collect();
    all_follow(&nodes.iter().collect::<Vec<_>>(), "n3", 0, 5 * S);

    // Cut the leader off: the majority elects n2, the lone n3 keeps leading itself.
    lab.link(3, false);
    let t = mono_ns();
    let took = all_follow(&nodes[..3].iter().collect::<Vec<_>>(), "n2", t, 3 * S);
    assert!(took < 1500.0, "partition re-election took {took} ms");
    let alone = nodes[3]
        .wait_for(3 * S, |v| {
            mono_of(v) > t && v["view"]["peers"].as_array().is_some_and(|p| p.is_empty())
        })
        .expect("the cut-off leader sees its peers expire");
    assert_eq!(alone["view"]["i_am_leader"], true);

    // Heal: exactly one leader survives (the best-ranked), in one term everywhere.
    lab.link(3, true);
    let t = mono_ns();
    let healed = all_follow(&nodes.iter().collect::<Vec<_>>(), "n3", t, 5 * S);
    println!("fleet: partition healed to one leader in {healed:.0} ms");
    std::thread::sleep(Duration::from_millis(600));
    let last: Vec<_> = nodes.iter().map(|m| m.last().expect("a line")).collect();
    let leaders = last
        .iter()
        .filter(|v| v["view"]["i_am_leader"] == true)
        .count();
    assert_eq!(leaders, 1, "{last:?}");
    let terms: Vec<u64> = last
        .iter()
        .map(|v| v["view"]["term"].as_u64().unwrap_or(0))
        .collect();
    assert!(terms.iter().all(|t| *t == terms[0]), "terms {terms:?}");
}

#[test]
#[ignore = "needs root and iproute2 for network namespaces"]
fn late_joiner_and_restart_with_a_new_address() {
    let mut lab = lab(3);
    let mut n0 = lab.member(0, "n0", &["fleet.priority=10"]);
    let n1 = lab.member(1, "n1", &["fleet.priority=20"]);
    all_follow(&[&n0, &n1], "n1", 0, 5 * S);

    let t = mono_ns();
    let n2 = lab.member(2, "n2", &["fleet.priority=5"]);
    let joined = all_follow(&[&n2], "n1", t, 3 * S);
    println!("fleet: late joiner knows the leader after {joined:.0} ms");
    let seen = n1
        .wait_for(3 * S, |v| peer_addr(v, "n2").is_some())
        .expect("the leader sees the joiner");
    assert_eq!(peer_addr(&seen, "n2").as_deref(), Some("10.77.0.3"));

    // n0 restarts with another address: the fleet must reach it at the new one.
    n0.kill();
    lab.readdress(0, 50);
    let t = mono_ns();
    let n0 = lab.member(0, "n0", &["fleet.priority=10"]);
    all_follow(&[&n0], "n1", t, 3 * S);
    let moved = n1
        .wait_for(3 * S, |v| {
            mono_of(v) > t && peer_addr(v, "n0").as_deref() == Some("10.77.0.50")
        })
        .expect("the leader sees n0 at its new address");
    assert_eq!(moved["view"]["peers"].as_array().map(Vec::len), Some(2));
}

fn peer_addr(v: &serde_json::Value, id: &str) -> Option<String> {
    v["view"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
        .and_then(|p| p["addr"].as_str().map(String::from))
}

/// A free UDP port on loopback.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn heartbeat(id: &str) -> Vec<u8> {
    let hb = Heartbeat {
        id: id.into(),
        priority: 255,
        forced: true,
        claims: true,
        hello: false,
        leaving: false,
        has_tracks: false,
        role: AdvertisedRole::Leader,
        term: 1_000,
        lamport: 1,
        port: 9,
        sync_port: 9123,
        sntp_port: 9124,
        playback_error_us: None,
        leader: id.into(),
        version: "evil".into(),
    };
    let mut payload = Vec::new();
    hb.encode_into(&mut payload).expect("encode");
    payload
}

#[test]
fn forged_unsigned_and_replayed_heartbeats_are_rejected_and_counted() {
    let port = free_port();
    let mut child = std::process::Command::new(crate::util::convoy_bin())
        .args(["--set", "node.id=victim", "--set", "fleet.mdns=false"])
        .args([
            "--set",
            "sync.bind=127.0.0.1",
            "--set",
            &format!("fleet.port={port}"),
        ])
        .args(["--set", "fleet.broadcast=[\"127.0.0.1:9\"]"])
        .args(["tool", "member", "--every", "0.1", "--seconds", "20"])
        .env("CONVOY_FLEET_KEY", KEY)
        .env("CONVOY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("convoy tool member");
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let (Ok(v), Ok(mut s)) = (serde_json::from_str(&l), sink.lock()) {
                s.push(v);
            }
        }
    });
    let wait = |f: &dyn Fn(&serde_json::Value) -> bool| {
        let end = std::time::Instant::now() + 5 * S;
        while std::time::Instant::now() < end {
            if let Some(v) = lines
                .lock()
                .ok()
                .and_then(|l| l.iter().rev().find(|v| f(v)).cloned())
            {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    let victim: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait(&|v| v["view"]["i_am_leader"] == true).expect("the victim leads itself");

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let now = LocalClock::unix(0, 0.0).now() as u64;
    let right = Keyring::new(FleetKey::from_text(1, KEY).expect("key"));
    let wrong = Keyring::new(FleetKey::from_bytes(1, &[7; 32]).expect("key"));
    // Unsigned: the bare payload (bad magic), and junk shorter than an envelope.
    sock.send_to(&heartbeat("mallory"), victim).expect("send");
    sock.send_to(b"hello, I am the leader now", victim)
        .expect("send");
    // Forged: a well-formed envelope under the wrong key, claiming forced leadership.
    let forged =
        envelope::seal(&wrong, sender_id("mallory"), 1, now, &heartbeat("mallory")).expect("seal");
    sock.send_to(&forged, victim).expect("send");
    // Genuine once, then replayed: the copy is refused.
    let genuine =
        envelope::seal(&right, sender_id("friend"), 1, now, &heartbeat("friend")).expect("seal");
    sock.send_to(&genuine, victim).expect("send");
    sock.send_to(&genuine, victim).expect("send");

    let v = wait(&|v| {
        let s = &v["security"];
        s["bad_magic"].as_u64() >= Some(1)
            && s["malformed"].as_u64() >= Some(1)
            && s["bad_tag"].as_u64() >= Some(1)
            && s["replay"].as_u64() >= Some(1)
    })
    .expect("every bad datagram is counted");
    let _ = child.kill();
    let _ = child.wait();
    assert!(v["view"]["stats"]["rejected"].as_u64() >= Some(4), "{v}");
    let peers: Vec<&str> = v["view"]["peers"]
        .as_array()
        .map(|p| p.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !peers.contains(&"mallory"),
        "a forged member was admitted: {peers:?}"
    );
    assert!(
        peers.contains(&"friend"),
        "the genuine heartbeat was accepted: {peers:?}"
    );
}
