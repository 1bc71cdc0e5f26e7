//! Quick throughput figures: `cargo run --release --example security_bench`.
//! Prints ns per operation for seal, open, Guard::check, the cost of rejecting forged
//! input through a node's `FleetSecurity::open` (the flood path) and OSC decode.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use convoy::osc::codec;
use convoy::osc::pattern::Pattern;
use convoy::security::ratelimit::{ClassRates, Rate, RateLimitConfig};
use convoy::security::{
    envelope, FleetKey, FleetSecurity, Guard, GuardConfig, Keyring, TrafficClass,
};

fn time<F: FnMut(u64)>(name: &str, iters: u64, mut f: F) {
    for i in 0..iters / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / iters as f64;
    println!("{name:<44} {ns:>9.1} ns/op");
}

fn main() {
    let ring = Keyring::new(FleetKey::from_bytes(1, &[7; 32]).unwrap());
    for size in [64usize, 512, 1356] {
        let payload = vec![0xA5u8; size];
        let mut buf = Vec::with_capacity(1400);
        time(&format!("seal_into ({size} B payload)"), 200_000, |i| {
            buf.clear();
            envelope::seal_into(&ring, 1, i, i, black_box(&payload), &mut buf).unwrap();
        });
        let d = envelope::seal(&ring, 1, 1, 1, &payload).unwrap();
        time(&format!("open ({size} B payload)"), 200_000, |_| {
            black_box(envelope::open(&ring, black_box(&d)).unwrap());
        });
    }
    let d = envelope::seal(&ring, 1, 1, 1, &[0u8; 64]).unwrap();
    let mut forged = d.clone();
    forged[40] ^= 1;
    time("open, forged tag (64 B)", 200_000, |_| {
        black_box(envelope::open(&ring, black_box(&forged)).is_err());
    });

    // Full guard path with generous limits so nothing is rate limited.
    let big = Rate::new(1e12, 1e12);
    let rates = ClassRates {
        timing: big,
        membership: big,
        control: big,
        sntp: big,
    };
    let cfg = GuardConfig {
        rate: RateLimitConfig {
            per_peer: rates,
            per_ip: rates,
            ..RateLimitConfig::default()
        },
        ..GuardConfig::default()
    };
    let mut g = Guard::new(ring.clone(), &cfg);
    let src: SocketAddr = "192.168.4.2:7000".parse().unwrap();
    let now = 1_750_000_000_000_000_000u64;
    let packets: Vec<Vec<u8>> = (1..=200_000u64)
        .map(|s| envelope::seal(&ring, 1, s, now, &[0u8; 64]).unwrap())
        .collect();
    let t = Instant::now();
    for p in &packets {
        g.check_class(src, p, TrafficClass::Timing, now).unwrap();
    }
    println!(
        "{:<44} {:>9.1} ns/op",
        "Guard::check accept (64 B payload)",
        t.elapsed().as_nanos() as f64 / packets.len() as f64
    );
    let mut g2 = Guard::new(ring.clone(), &GuardConfig::default());
    time(
        "Guard::check forged, new src each (HMAC runs)",
        1_000_000,
        |i| {
            let src = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9));
            black_box(
                g2.check_class(src, &forged, TrafficClass::Timing, now)
                    .is_err(),
            );
        },
    );

    // What a flood costs a node: its FleetSecurity (guard behind a mutex, stats counted)
    // with the default limits, fed forged datagrams.
    let node = FleetSecurity::with_guard(Guard::new(ring.clone(), &GuardConfig::default()), "lead");
    time(
        "FleetSecurity::open forged, new src each (HMAC)",
        1_000_000,
        |i| {
            let src = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9));
            black_box(
                node.open(src, &forged, TrafficClass::Timing, Some(now))
                    .is_err(),
            );
        },
    );
    let flooder: SocketAddr = "192.168.4.66:9".parse().unwrap();
    time(
        "FleetSecurity::open forged, one src over rate",
        1_000_000,
        |_| {
            black_box(
                node.open(flooder, &forged, TrafficClass::Timing, Some(now))
                    .is_err(),
            );
        },
    );
    let garbage = vec![0x5Au8; 120];
    time(
        "FleetSecurity::open garbage, new src each",
        1_000_000,
        |i| {
            let src = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9));
            black_box(
                node.open(src, &garbage, TrafficClass::Timing, Some(now))
                    .is_err(),
            );
        },
    );
    println!("rejections counted: {}", node.stats().total_rejected());

    let msg = codec::encode(&codec::OscPacket::Message(codec::OscMessage {
        addr: "/convoy/color".into(),
        args: vec![
            codec::OscType::Float(1.0),
            codec::OscType::Float(0.5),
            codec::OscType::Int(3),
        ],
    }))
    .unwrap();
    time("osc decode (/convoy/color fff)", 500_000, |_| {
        black_box(codec::decode(black_box(&msg)).unwrap());
    });
    let p = Pattern::compile("/cue/*/st{art,op}").unwrap();
    time("pattern match /cue/*/st{art,op}", 1_000_000, |_| {
        black_box(p.matches(black_box("/cue/12/start")));
    });
}
