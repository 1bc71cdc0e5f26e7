//! The live plane, measured at the edges a user touches (issue #20): a node playing a plain
//! track with no show, its status line at the default 1 s, must light its strip and send
//! WLED frames, `/convoy/out/*` and `/convoy/fb/*` that move with the music — every beat,
//! on the beat. The truth is what the node's player heard: its playback log (the player's
//! books, `<journal>.playback.csv`) maps the demo song's beats (its beatmap) to the
//! monotonic instants they were heard; every packet is timestamped on arrival with the
//! same monotonic clock. Bounds are looser than the figures in docs/live.md (this machine
//! is shared); `tools/live-capture.sh` prints the figures.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use convoy::clock::mono_ns;
use rosc::{OscMessage, OscPacket, OscType};

use crate::util::node::Node;

fn messages(packet: OscPacket, out: &mut Vec<OscMessage>) {
    match packet {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| messages(p, out)),
    }
}

/// Every datagram `sock` receives until `until`, with its arrival on the monotonic clock.
fn capture(sock: UdpSocket, until: Instant) -> std::thread::JoinHandle<Vec<(u64, Vec<u8>)>> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push((mono_ns(), buf[..n].to_vec()));
            }
        }
        got
    })
}

/// (monotonic ns heard, track frame) rows of a playback log.
fn books(path: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(path)
        .expect("playback log")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let at = f.next()?.parse().ok()?;
            let frame = f.nth(2)?.parse().ok()?;
            Some((at, frame))
        })
        .collect()
}

/// The monotonic instants the node heard the demo song's beats, from its books.
fn heard_beats(rows: &[(u64, f64)]) -> Vec<u64> {
    let map: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/beatmaps/demo.beatmap.json"
        ))
        .expect("beatmap"),
    )
    .expect("json");
    let rate = map["track"]["sample_rate"].as_f64().expect("rate");
    let beats = map["beats"].as_array().expect("beats");
    beats
        .iter()
        .filter_map(|b| {
            let frame = b.as_f64()? * rate;
            let i = rows.partition_point(|r| r.1 < frame);
            let (a, b) = (rows.get(i.checked_sub(1)?)?, rows.get(i)?);
            let t = a.0 as f64 + (frame - a.1) / (b.1 - a.1) * (b.0 - a.0) as f64;
            Some(t as u64)
        })
        .collect()
}

/// |arrival − nearest heard beat| for each arrival, ms.
fn errors_ms(arrivals: &[u64], beats: &[u64]) -> Vec<f64> {
    arrivals
        .iter()
        .map(|&a| {
            let i = beats.partition_point(|&b| b < a);
            [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|j| beats.get(j))
                .map(|&b| (a as f64 - b as f64).abs() / 1e6)
                .fold(f64::MAX, f64::min)
        })
        .collect()
}

fn p99(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(f64::MAX)
}

/// Beats heard in `[from, to]` with no arrival within `tol_ms` of them.
fn missed(beats: &[u64], arrivals: &[u64], from: u64, to: u64, tol_ms: f64) -> usize {
    beats
        .iter()
        .filter(|&&b| b >= from && b <= to)
        .filter(|&&b| {
            !arrivals
                .iter()
                .any(|&a| (a as f64 - b as f64).abs() / 1e6 <= tol_ms)
        })
        .count()
}

#[test]
fn a_plain_track_lights_up_and_every_output_moves_on_the_beat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("strip.jsonl");
    let outbound = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let wled = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let fb = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = 29_000 + (std::process::id() % 1000) as u16;
    let mut node = Node::launch(
        {
            let mut cmd = std::process::Command::new(crate::util::convoy_bin());
            for s in [
                "node.id=solo".to_string(),
                "audio.sink=null".into(),
                "osc.enabled=true".into(),
                "osc.bind=127.0.0.1".into(),
                format!("osc.port={port}"),
                format!(
                    "osc.outbound=[\"{}\"]",
                    outbound.local_addr().expect("addr")
                ),
                "osc.outbound_hz=30.0".into(),
                "osc.wled.enabled=true".into(),
                format!(
                    "osc.wled.destination=\"{}\"",
                    wled.local_addr().expect("addr")
                ),
                format!("show.journal=\"{}\"", journal.display()),
            ] {
                cmd.arg("--set").arg(s);
            }
            // No --show, and the status line at its default 1 s.
            cmd.args([
                "--log",
                "warn",
                "node",
                "--track",
                "demo",
                "--seconds",
                "16",
            ]);
            cmd
        },
        port,
    );
    // Feedback to `fb` (TouchOSC-style: another port than the one we send from).
    let fb_port = fb.local_addr().expect("addr").port();
    let until = Instant::now() + Duration::from_secs(15);
    let (out_rx, wled_rx, fb_rx) = (
        capture(outbound, until),
        capture(wled, until),
        capture(fb, until),
    );
    std::thread::sleep(Duration::from_millis(800));
    node.send("/convoy/subscribe", vec![OscType::Int(i32::from(fb_port))]);
    let (out, frames, fbs) = (
        out_rx.join().expect("outbound"),
        wled_rx.join().expect("wled"),
        fb_rx.join().expect("feedback"),
    );
    node.terminate();
    let rows = books(&dir.path().join("strip.jsonl.playback.csv"));
    assert!(rows.len() > 100, "the player's books: {} rows", rows.len());
    let beats = heard_beats(&rows);
    let (first, last) = (rows[0].0, rows[rows.len() - 1].0);
    assert!(beats.len() >= 20, "heard beats {}", beats.len());
    // The window where every output is up: 2 s after the first heard frame to 0.5 s
    // before the capture ends.
    let (from, to) = (first + 2_000_000_000, last.min(mono_ns()) - 500_000_000);

    // /convoy/out/beat: one message per beat, consecutive numbers, on the beat.
    let mut out_beats = Vec::new();
    let mut numbers = Vec::new();
    let mut positions = Vec::new();
    for (at, bytes) in &out {
        let (_, p) = rosc::decoder::decode_udp(bytes).expect("outbound decodes");
        let mut ms = Vec::new();
        messages(p, &mut ms);
        for m in ms {
            match (m.addr.as_str(), m.args.first()) {
                ("/convoy/out/beat", Some(OscType::Int(n))) => {
                    out_beats.push(*at);
                    numbers.push(*n);
                }
                ("/convoy/out/position", Some(OscType::Float(_))) => positions.push(*at),
                _ => {}
            }
        }
    }
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "beat numbers skip or repeat: {numbers:?}"
    );
    let out_err = errors_ms(&out_beats, &beats);
    let out_missed = missed(&beats, &out_beats, from, to, 40.0);
    // WLED: one peak per beat, on the beat; levels move while the music plays.
    let peaks: Vec<u64> = frames
        .iter()
        .filter(|(_, b)| b.len() == 44 && b[16] != 0)
        .map(|(at, _)| *at)
        .collect();
    let wled_err = errors_ms(&peaks, &beats);
    let wled_missed = missed(&beats, &peaks, from, to, 40.0);
    let playing: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(_, b)| b)
        .collect();
    let changed = playing
        .windows(2)
        .filter(|w| w[0][8..16] != w[1][8..16] || w[0][18..34] != w[1][18..34])
        .count();
    let change = changed as f64 / playing.len().saturating_sub(1).max(1) as f64;
    // Feedback: the beat on the beat, the position at feedback_hz.
    let mut fb_beats = Vec::new();
    let mut fb_positions = 0;
    for (at, bytes) in &fbs {
        let Ok((_, p)) = rosc::decoder::decode_udp(bytes) else {
            continue;
        };
        let mut ms = Vec::new();
        messages(p, &mut ms);
        for m in ms {
            match m.addr.as_str() {
                "/convoy/fb/beat" => fb_beats.push(*at),
                "/convoy/fb/position" => fb_positions += 1,
                _ => {}
            }
        }
    }
    let fb_missed = missed(&beats, &fb_beats, from + 1_000_000_000, to, 40.0);
    let secs = (to - from) as f64 / 1e9;
    let pos_rate = positions.iter().filter(|&&t| t >= from && t <= to).count() as f64 / secs;
    // The strip: the default look flashed on the beats.
    let strip = convoy::show::journal::read(&journal).expect("journal");
    let strip_beats = strip
        .iter()
        .filter(|h| {
            h.heard_ns.is_some() && matches!(h.command, convoy::led::protocol::Command::Beat { .. })
        })
        .count();
    println!(
        "heard beats {}; outbound: {} beats, p99 {:.1} ms, missed {out_missed}; WLED: {} peaks, \
         p99 {:.1} ms, missed {wled_missed}, levels change in {:.0} % of packets; feedback: {} \
         beats, missed {fb_missed}, {fb_positions} positions; outbound position {pos_rate:.1}/s; \
         strip {strip_beats} beat flashes",
        beats.len(),
        out_beats.len(),
        p99(&out_err),
        peaks.len(),
        p99(&wled_err),
        change * 100.0,
        fb_beats.len(),
    );
    assert_eq!(out_missed, 0, "outbound beats missed");
    assert_eq!(wled_missed, 0, "WLED beats missed");
    assert_eq!(fb_missed, 0, "feedback beats missed");
    assert!(
        p99(&out_err) < 25.0,
        "outbound beat error p99 {:.1} ms",
        p99(&out_err)
    );
    assert!(
        p99(&wled_err) < 25.0,
        "WLED beat error p99 {:.1} ms",
        p99(&wled_err)
    );
    assert!(
        peaks.len() <= beats.len() + 1,
        "WLED peaks {} for {} beats: duplicates",
        peaks.len(),
        beats.len()
    );
    assert!(
        change > 0.6,
        "WLED levels change in {:.0} % of packets",
        change * 100.0
    );
    assert!(
        (20.0..=40.0).contains(&pos_rate),
        "outbound position {pos_rate:.1}/s"
    );
    assert!(fb_positions >= 50, "feedback positions {fb_positions}");
    assert!(
        strip_beats >= beats.len() / 2,
        "strip beat flashes {strip_beats}"
    );
}
