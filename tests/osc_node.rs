//! Outbound OSC and WLED audio sync from a running `convoy node` with the demo show: the
//! beats, bars, band levels and position a visuals program or a WLED lamp would receive,
//! checked on real UDP sockets against the demo song's 124 BPM.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rosc::{OscPacket, OscType};

use crate::util::node::Node;

fn messages(packet: OscPacket, out: &mut Vec<rosc::OscMessage>) {
    match packet {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| messages(p, out)),
    }
}

#[test]
fn a_node_sends_beats_bands_and_wled_frames_in_time_with_the_song() {
    let osc_out = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let wled = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&osc_out, &wled] {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
    }
    let show = concat!(env!("CARGO_MANIFEST_DIR"), "/shows/demo.toml");
    let port = 28_000 + (std::process::id() % 1000) as u16;
    let _node = Node::spawn(
        "visuals",
        "solo",
        port,
        &[
            format!("osc.outbound=[\"{}\"]", osc_out.local_addr().expect("addr")),
            "osc.wled.enabled=true".into(),
            format!(
                "osc.wled.destination=\"{}\"",
                wled.local_addr().expect("addr")
            ),
        ],
        &["--show", show],
    );
    let mut beats: Vec<(Instant, i32)> = Vec::new();
    let (mut bars, mut bands, mut positions, mut frames) = (0, 0, 0, Vec::new());
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(12);
    while Instant::now() < end && beats.len() < 12 {
        if let Ok(n) = osc_out.recv(&mut buf) {
            let at = Instant::now();
            let Ok((_, packet)) = rosc::decoder::decode_udp(&buf[..n]) else {
                panic!("outbound OSC that does not decode");
            };
            let mut msgs = Vec::new();
            messages(packet, &mut msgs);
            for m in msgs {
                match (m.addr.as_str(), m.args.first()) {
                    ("/convoy/out/beat", Some(OscType::Int(b))) => beats.push((at, *b)),
                    ("/convoy/out/bar", _) => bars += 1,
                    ("/convoy/out/bands", _) => {
                        assert!(m
                            .args
                            .iter()
                            .all(|a| matches!(a, OscType::Float(v) if (0.0..=1.0).contains(v))));
                        bands += 1;
                    }
                    ("/convoy/out/position", Some(OscType::Float(_))) => positions += 1,
                    _ => {}
                }
            }
        }
        if let Ok(n) = wled.recv(&mut buf) {
            frames.push(buf[..n].to_vec());
        }
    }
    assert!(beats.len() >= 8, "beats heard: {beats:?}");
    assert!(
        bars >= 2 && bands > 10 && positions > 10,
        "bars {bars}, bands {bands}, positions {positions}"
    );
    // Consecutive beat numbers, one every 60/124 s (as heard here, ±60 ms of UDP and
    // scheduling jitter on a loaded machine).
    let period = 60.0 / 124.0;
    let steady: Vec<f64> = beats
        .windows(2)
        .filter(|w| w[1].1 == w[0].1 + 1)
        .map(|w| w[1].0.duration_since(w[0].0).as_secs_f64())
        .collect();
    assert!(steady.len() >= 6, "consecutive beats: {beats:?}");
    let mut sorted = steady.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        (median - period).abs() < 0.06,
        "median beat interval {median:.3} s, expected {period:.3} s ({steady:?})"
    );
    // WLED audio sync V2: 44 bytes, header "00002".
    assert!(frames.len() > 20, "{} WLED frames", frames.len());
    assert!(frames
        .iter()
        .all(|f| f.len() == 44 && f.starts_with(b"00002")));
}
