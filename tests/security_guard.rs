//! End-to-end proofs for the fleet `Guard`: every attack in the threat model
//! is rejected and counted under the right reason, and legitimate traffic
//! (including rotation and reordering) passes.

use std::net::SocketAddr;

use convoy::security::envelope::{self, MAX_DATAGRAM, OVERHEAD};
use convoy::security::ratelimit::{ClassRates, RateLimitConfig};
use convoy::security::{
    FleetKey, Guard, GuardConfig, Keyring, RejectReason, Rejection, StatsSnapshot, TrafficClass,
};

const NOW: u64 = 1_750_000_000_000_000_000;
const LEADER: u32 = 1;

fn key(id: u8, fill: u8) -> FleetKey {
    FleetKey::from_bytes(id, &[fill; 32]).unwrap()
}

fn ring() -> Keyring {
    Keyring::new(key(1, 0x11))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn guard() -> Guard {
    Guard::new(ring(), &GuardConfig::default())
}

fn seal(ring: &Keyring, sender: u32, seq: u64, ts: u64) -> Vec<u8> {
    envelope::seal(ring, sender, seq, ts, b"/convoy/play").unwrap()
}

fn reason(r: Result<convoy::security::Accepted<'_>, Rejection>) -> RejectReason {
    r.expect_err("should be rejected").reason()
}

const SRC: &str = "192.168.4.10:7400";

#[test]
fn genuine_packet_accepted_and_counted() {
    let mut g = guard();
    let d = seal(&ring(), LEADER, 1, NOW);
    let a = g.check(addr(SRC), &d, NOW).unwrap();
    assert_eq!(a.envelope.payload, b"/convoy/play");
    assert_eq!(a.envelope.sender, LEADER);
    assert_eq!(g.stats().snapshot().accepted, 1);
}

#[test]
fn forged_signature_rejected() {
    let mut g = guard();
    let mut d = seal(&ring(), LEADER, 1, NOW);
    let n = d.len();
    d[n - 1] ^= 0x01; // tamper with the tag
    assert_eq!(reason(g.check(addr(SRC), &d, NOW)), RejectReason::BadTag);
    let mut d = seal(&ring(), LEADER, 2, NOW);
    d[30] ^= 0x20; // tamper with the payload
    assert_eq!(reason(g.check(addr(SRC), &d, NOW)), RejectReason::BadTag);
    assert_eq!(g.stats().snapshot().bad_tag, 2);
    assert_eq!(g.stats().snapshot().accepted, 0);
}

#[test]
fn wrong_key_rejected() {
    let mut g = guard();
    let stranger = Keyring::new(key(1, 0x66)); // same id, different secret
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&stranger, LEADER, 1, NOW), NOW)),
        RejectReason::BadTag
    );
    let other_id = Keyring::new(key(9, 0x11));
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&other_id, LEADER, 2, NOW), NOW)),
        RejectReason::UnknownKey
    );
    let s = g.stats().snapshot();
    assert_eq!((s.bad_tag, s.unknown_key, s.accepted), (1, 1, 0));
}

#[test]
fn previous_key_accepted_during_rotation_then_retired() {
    // Receiver has rotated to key 2 but still accepts key 1.
    let mut rx_ring = ring();
    rx_ring.rotate(key(2, 0x22)).unwrap();
    let mut g = Guard::new(rx_ring, &GuardConfig::default());
    let old_sender = ring();
    let d1 = seal(&old_sender, LEADER, 1, NOW);
    let a = g.check(addr(SRC), &d1, NOW).unwrap();
    assert!(a.envelope.with_previous_key);
    let new_sender = Keyring::new(key(2, 0x22));
    let d2 = seal(&new_sender, LEADER, 2, NOW);
    let a = g.check(addr(SRC), &d2, NOW).unwrap();
    assert!(!a.envelope.with_previous_key);
    // The receiver signs with its current key.
    assert_eq!(g.keyring().current().id(), 2);
    g.keyring_mut().retire_previous();
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&old_sender, LEADER, 3, NOW), NOW)),
        RejectReason::UnknownKey
    );
    let s = g.stats().snapshot();
    assert_eq!(
        (s.accepted, s.accepted_previous_key, s.unknown_key),
        (2, 1, 1)
    );
}

#[test]
fn replayed_packet_rejected() {
    let mut g = guard();
    let d = seal(&ring(), LEADER, 7, NOW);
    assert!(g.check(addr(SRC), &d, NOW).is_ok());
    assert_eq!(
        reason(g.check(addr(SRC), &d, NOW + 1)),
        RejectReason::Replay
    );
    // Replay from another address is still a replay.
    assert_eq!(
        reason(g.check(addr("192.168.4.99:1"), &d, NOW + 2)),
        RejectReason::Replay
    );
    assert_eq!(g.stats().snapshot().replay, 2);
}

#[test]
fn reordered_within_window_accepted_old_rejected() {
    let mut g = guard();
    let r = ring();
    for seq in [100u64, 103, 101, 102, 150, 90] {
        assert!(
            g.check(addr(SRC), &seal(&r, LEADER, seq, NOW), NOW).is_ok(),
            "seq {seq}"
        );
    }
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&r, LEADER, 86, NOW), NOW)),
        RejectReason::Replay,
        "age 64 is outside the window"
    );
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&r, LEADER, 102, NOW), NOW)),
        RejectReason::Replay
    );
    let s = g.stats().snapshot();
    assert_eq!((s.accepted, s.replay), (6, 2));
}

#[test]
fn stale_timestamp_rejected() {
    let mut g = guard();
    let r = ring();
    let six_s = 6_000_000_000;
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&r, LEADER, 1, NOW - six_s), NOW)),
        RejectReason::Stale
    );
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&r, LEADER, 2, NOW + six_s), NOW)),
        RejectReason::Stale
    );
    // A stale packet did not burn its sequence number.
    assert!(g.check(addr(SRC), &seal(&r, LEADER, 1, NOW), NOW).is_ok());
    assert_eq!(g.stats().snapshot().stale, 2);
}

/// Junk costs no budget at all: it fails the envelope's structure before any HMAC or
/// rate limit, and is counted as such; the genuine leader beside it passes.
#[test]
fn flood_from_one_address_is_refused_before_any_crypto_other_peer_timing_passes() {
    let cfg = GuardConfig {
        rate: RateLimitConfig {
            per_ip: ClassRates::default(),
            ..RateLimitConfig::default()
        },
        ..GuardConfig::default()
    };
    let mut g = Guard::new(ring(), &cfg);
    let r = ring();
    let attacker = addr("192.168.4.66:5000");
    let leader = addr("192.168.4.1:7400");
    let mut leader_ok = 0;
    // 10 000 junk packets and 100 genuine timing beacons interleaved, all
    // within the same simulated 100 ms.
    for i in 0..10_000u64 {
        let t = NOW + i * 10_000;
        let junk = vec![0x5Au8; 64];
        assert_eq!(
            reason(g.check_class(attacker, &junk, TrafficClass::Timing, t)),
            RejectReason::BadMagic
        );
        if i % 100 == 0 {
            let d = seal(&r, LEADER, i + 1, t);
            if g.check_class(leader, &d, TrafficClass::Timing, t).is_ok() {
                leader_ok += 1;
            }
        }
    }
    assert_eq!(leader_ok, 100, "every genuine timing beacon passes");
    let s = g.stats().snapshot();
    assert_eq!(
        (s.bad_magic, s.rate_limited, s.accepted),
        (10_000, 0, 100),
        "every flood packet counted once"
    );
}

/// Issue #21 (item 3): 200 datagrams/s of junk and forgeries with the leader's own
/// source address. The per-address budget used to be charged before the HMAC, so they
/// spent the leader's membership budget and its heartbeats were refused (the follower
/// dropped it after 1.5 s). Now the address is charged only for authentic datagrams: all
/// 20 heartbeats of 5 s pass, and every forgery is refused under its own reason.
#[test]
fn spoofed_junk_from_the_leaders_address_does_not_spend_its_budget() {
    let mut g = guard();
    let r = ring();
    let attacker_key = Keyring::new(key(1, 0x66));
    let leader = addr("192.168.4.1:9125");
    let mut heartbeats = 0;
    for i in 0..1_000u64 {
        let t = NOW + i * 5_000_000; // 200/s for 5 s
        let forged = match i % 3 {
            0 => vec![(i % 251) as u8; 64],
            1 => envelope::seal(&attacker_key, LEADER, 1_000_000 + i, t, b"junk").unwrap(),
            _ => {
                let mut d = seal(&r, LEADER, 1_000_000 + i, t);
                let n = d.len();
                d[n - 1] ^= 0x80;
                d
            }
        };
        assert!(g
            .check_class(leader, &forged, TrafficClass::Membership, t)
            .is_err());
        if i % 50 == 0 {
            // The genuine heartbeat, 4 a second.
            let d = seal(&r, LEADER, i + 1, t);
            if g.check_class(leader, &d, TrafficClass::Membership, t)
                .is_ok()
            {
                heartbeats += 1;
            }
        }
    }
    assert_eq!(heartbeats, 20, "every genuine heartbeat passes");
    let s = g.stats().snapshot();
    assert_eq!(s.rate_limited, 0, "{s:?}");
    assert_eq!(s.bad_magic + s.bad_tag, 1_000, "{s:?}");
}

/// Well-formed forgeries from addresses that never authenticated cost an HMAC each only
/// within the shared unauthenticated budget (burst 400, 200/s); beyond it they are refused
/// unverified. A peer that has authenticated is still verified and passes.
#[test]
fn forgeries_from_strangers_are_verified_only_within_the_shared_budget() {
    let mut g = guard();
    let r = ring();
    let peer = addr("192.168.4.1:7400");
    assert!(g.check(peer, &seal(&r, LEADER, 1, NOW), NOW).is_ok());
    let mut d = seal(&r, 9, 1, NOW);
    let n = d.len();
    d[n - 1] ^= 1;
    for i in 0..5_000u32 {
        let src = addr(&format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255));
        assert!(g.check(src, &d, NOW).is_err());
    }
    // The peer's own first datagram, before it had authenticated, took one token.
    let s = g.stats().snapshot();
    assert_eq!((s.bad_tag, s.rate_limited), (399, 4_601), "{s:?}");
    assert!(g.check(peer, &seal(&r, LEADER, 2, NOW), NOW).is_ok());
    // A second later the budget has 200 more.
    for i in 0..1_000u32 {
        let src = addr(&format!("10.9.{}.{}:1", i >> 8, i & 255));
        let _ = g.check(src, &d, NOW + 1_000_000_000);
    }
    assert_eq!(g.stats().snapshot().bad_tag, 599);
}

#[test]
fn peer_rate_limit_applies_after_auth() {
    let mut g = guard();
    let r = ring();
    let burst = ClassRates::default().control.burst as u64;
    let mut ok = 0;
    for seq in 1..=burst + 10 {
        // Each packet from a different address: the per-peer bucket still binds.
        let src = addr(&format!("10.0.{}.{}:1", seq / 200, seq % 200 + 1));
        if g.check(src, &seal(&r, LEADER, seq, NOW), NOW).is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, burst);
    assert_eq!(g.stats().snapshot().rate_limited, 10);
}

#[test]
fn oversized_and_truncated_rejected() {
    let mut g = guard();
    let r = ring();
    let d = seal(&r, LEADER, 1, NOW);
    let mut big = envelope::seal(&r, LEADER, 2, NOW, &vec![0u8; MAX_DATAGRAM - OVERHEAD]).unwrap();
    big.push(0);
    assert_eq!(
        reason(g.check(addr(SRC), &big, NOW)),
        RejectReason::Malformed
    );
    for cut in [0, 1, 4, 27, OVERHEAD - 1, d.len() - 1] {
        // Too short below OVERHEAD, length mismatch above: both malformed.
        assert_eq!(
            reason(g.check(addr(SRC), &d[..cut], NOW)),
            RejectReason::Malformed,
            "cut {cut}"
        );
    }
    let mut bad_magic = d.clone();
    bad_magic[..4].copy_from_slice(b"OSC!");
    assert_eq!(
        reason(g.check(addr(SRC), &bad_magic, NOW)),
        RejectReason::BadMagic
    );
    let s = g.stats().snapshot();
    assert_eq!((s.malformed, s.bad_magic), (7, 1));
    // The genuine packet still passes afterwards.
    assert!(g.check(addr(SRC), &d, NOW).is_ok());
}

#[test]
fn non_whitelisted_vehicle_rejected() {
    let cfg = GuardConfig {
        whitelist: vec![LEADER, 2],
        ..GuardConfig::default()
    };
    let mut g = Guard::new(ring(), &cfg);
    let r = ring();
    assert!(g.check(addr(SRC), &seal(&r, 2, 1, NOW), NOW).is_ok());
    assert_eq!(
        reason(g.check(addr(SRC), &seal(&r, 3, 1, NOW), NOW)),
        RejectReason::NotWhitelisted
    );
    assert_eq!(g.stats().snapshot().not_whitelisted, 1);
}

#[test]
fn classifier_and_snapshot_json() {
    let mut g = guard().with_classifier(|p| {
        if p.starts_with(b"T") {
            TrafficClass::Timing
        } else {
            TrafficClass::Control
        }
    });
    let r = ring();
    let d = envelope::seal(&r, LEADER, 1, NOW, b"T beacon").unwrap();
    assert_eq!(
        g.check(addr(SRC), &d, NOW).unwrap().class,
        TrafficClass::Timing
    );
    let json = serde_json::to_string(&g.stats().snapshot()).unwrap();
    let back: StatsSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back.accepted, 1);
}

/// Seeded random garbage and mutations of valid packets never panic, are
/// never accepted, and are always counted.
#[test]
fn random_garbage_never_accepted() {
    let mut g = guard();
    let r = ring();
    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = seal(&r, LEADER, 1, NOW);
    let n = 20_000u64;
    for i in 0..n {
        let mut d = if i % 2 == 0 {
            base.clone()
        } else {
            (0..next() % 1500).map(|_| next() as u8).collect()
        };
        if i % 2 == 0 {
            let k = (next() % 4 + 1) as usize;
            for _ in 0..k {
                let len = d.len();
                let at = next() as usize % len;
                d[at] ^= (next() as u8) | 1;
            }
            if d == base {
                d[0] ^= 1; // two flips cancelled out; keep it a mutation
            }
        }
        let src = addr(&format!("10.{}.{}.1:9", i % 250, (i / 250) % 250));
        assert!(g.check(src, &d, NOW).is_err());
    }
    assert_eq!(g.stats().snapshot().total_rejected(), n);
}
