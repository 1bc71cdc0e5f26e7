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

/// Poll `GET /api/playback/status` on `port` every 20 ms until `until`: (the middle of
/// each request on the monotonic clock, its round trip, the `position_ms` it answered).
fn poll_status(port: u16, until: Instant) -> std::thread::JoinHandle<Vec<(u64, u64, f64)>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let t0 = mono_ns();
            let req = "GET /api/playback/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if c.write_all(req.as_bytes()).is_err() {
                continue;
            }
            let mut body = String::new();
            let _ = c.read_to_string(&mut body);
            let t1 = mono_ns();
            let json = body.split("\r\n\r\n").nth(1).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                if v["playing"] == true {
                    if let Some(ms) = v["position_ms"].as_f64() {
                        got.push(((t0 + t1) / 2, t1 - t0, ms));
                    }
                }
            }
        }
        got
    })
}

/// The position (ms) the books say was heard at monotonic `at`.
fn heard_ms(rows: &[(u64, f64)], at: u64, rate: f64) -> Option<f64> {
    let i = rows.partition_point(|r| r.0 < at);
    let (a, b) = (rows.get(i.checked_sub(1)?)?, rows.get(i)?);
    let frame = a.1 + (at - a.0) as f64 / (b.0 - a.0) as f64 * (b.1 - a.1);
    Some(frame / rate * 1e3)
}

/// What a node under test sends to: outbound OSC, WLED, feedback.
struct Sinks {
    outbound: UdpSocket,
    wled: UdpSocket,
    fb: UdpSocket,
}

impl Sinks {
    fn bind() -> Sinks {
        let b = || UdpSocket::bind("127.0.0.1:0").expect("bind");
        Sinks {
            outbound: b(),
            wled: b(),
            fb: b(),
        }
    }

    /// The `--set`s that point a node's outputs here, with its strip journal at `journal`.
    fn sets(&self, journal: &std::path::Path) -> Vec<String> {
        let addr = |s: &UdpSocket| s.local_addr().expect("addr");
        vec![
            format!("osc.outbound=[\"{}\"]", addr(&self.outbound)),
            "osc.outbound_hz=30.0".into(),
            "osc.wled.enabled=true".into(),
            format!("osc.wled.destination=\"{}\"", addr(&self.wled)),
            format!("show.journal=\"{}\"", journal.display()),
        ]
    }

    /// Capture for `secs`, subscribing `node`'s feedback after 0.8 s; check every output
    /// against the beats the node heard (its journal's playback log).
    fn run_and_check(self, node: &mut Node, journal: &std::path::Path, secs: u64) {
        let fb_port = self.fb.local_addr().expect("addr").port();
        let until = Instant::now() + Duration::from_secs(secs);
        let (out_rx, wled_rx, fb_rx) = (
            capture(self.outbound, until),
            capture(self.wled, until),
            capture(self.fb, until),
        );
        std::thread::sleep(Duration::from_millis(800));
        node.send("/convoy/subscribe", vec![OscType::Int(i32::from(fb_port))]);
        let (out, frames, fbs) = (
            out_rx.join().expect("outbound"),
            wled_rx.join().expect("wled"),
            fb_rx.join().expect("feedback"),
        );
        node.terminate();
        check(journal, &out, &frames, &fbs);
    }
}

fn check(
    journal: &std::path::Path,
    out: &[(u64, Vec<u8>)],
    frames: &[(u64, Vec<u8>)],
    fbs: &[(u64, Vec<u8>)],
) {
    let rows = books(&journal.with_extension("jsonl.playback.csv"));
    assert!(rows.len() > 100, "the player's books: {} rows", rows.len());
    let beats = heard_beats(&rows);
    let (first, last) = (rows[0].0, rows[rows.len() - 1].0);
    assert!(beats.len() >= 16, "heard beats {}", beats.len());
    // The window where every output is up: 2 s after the first heard frame to 0.5 s
    // before the capture ends.
    let (from, to) = (first + 2_000_000_000, last.min(mono_ns()) - 500_000_000);

    // /convoy/out/beat: one message per beat, consecutive numbers, on the beat.
    let mut out_beats = Vec::new();
    let mut numbers = Vec::new();
    let mut positions = Vec::new();
    for (at, bytes) in out {
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
    let in_window = |t: &&u64| **t >= from && **t <= to;
    let window_numbers: Vec<i32> = out_beats
        .iter()
        .zip(&numbers)
        .filter(|(t, _)| in_window(t))
        .map(|(_, n)| *n)
        .collect();
    assert!(
        window_numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "beat numbers skip or repeat: {numbers:?}"
    );
    let window_out: Vec<u64> = out_beats.iter().filter(in_window).copied().collect();
    let out_err = errors_ms(&window_out, &beats);
    let out_missed = missed(&beats, &out_beats, from, to, 40.0);
    // WLED: one peak per beat, on the beat; levels move while the music plays.
    let peaks: Vec<u64> = frames
        .iter()
        .filter(|(_, b)| b.len() == 44 && b[16] != 0)
        .map(|(at, _)| *at)
        .collect();
    let window_peaks: Vec<u64> = peaks.iter().filter(in_window).copied().collect();
    let wled_err = errors_ms(&window_peaks, &beats);
    let wled_missed = missed(&beats, &peaks, from, to, 40.0);
    let window_beats = beats.iter().filter(in_window).count();
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
    for (at, bytes) in fbs {
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
    let pos_rate = positions.iter().filter(in_window).count() as f64 / secs;
    // The strip: the look flashed on the beats.
    let strip = convoy::show::journal::read(journal).expect("journal");
    let strip_heard: Vec<u64> = strip
        .iter()
        .filter(|h| matches!(h.command, convoy::led::protocol::Command::Beat { .. }))
        .filter_map(|h| h.heard_ns.map(|t| t as u64))
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let strip_beats = strip_heard.len();
    let strip_err = errors_ms(&strip_heard, &beats);
    println!(
        "heard beats {} ({window_beats} in the window); outbound: {} beats, p99 {:.1} ms, \
         missed {out_missed}; WLED: {} peaks, p99 {:.1} ms, missed {wled_missed}, levels \
         change in {:.0} % of packets; feedback: {} beats, missed {fb_missed}, {fb_positions} \
         positions; outbound position {pos_rate:.1}/s; strip {strip_beats} beats, p99 {:.2} ms",
        beats.len(),
        window_out.len(),
        p99(&out_err),
        window_peaks.len(),
        p99(&wled_err),
        change * 100.0,
        fb_beats.len(),
        p99(&strip_err),
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
        window_peaks.len() <= window_beats + 1,
        "WLED peaks {} for {window_beats} beats: duplicates",
        window_peaks.len(),
    );
    assert!(
        change > 0.6,
        "WLED levels change in {:.0} % of packets",
        change * 100.0
    );
    assert!(
        (24.0..=36.0).contains(&pos_rate),
        "outbound position {pos_rate:.1}/s"
    );
    assert!(fb_positions >= 50, "feedback positions {fb_positions}");
    assert!(
        strip_beats >= beats.len() / 2,
        "strip beat flashes {strip_beats}"
    );
}

#[test]
fn a_plain_track_lights_up_and_every_output_moves_on_the_beat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("strip.jsonl");
    let sinks = Sinks::bind();
    let port = 29_000 + (std::process::id() % 1000) as u16;
    let mut sets = vec![
        "node.id=solo".to_string(),
        "audio.sink=null".into(),
        "osc.enabled=true".into(),
        "osc.bind=127.0.0.1".into(),
        format!("osc.port={port}"),
    ];
    sets.extend(sinks.sets(&journal));
    let web = port + 1000;
    sets.extend([
        "web.enabled=true".to_string(),
        "web.bind=\"127.0.0.1\"".into(),
        format!("web.port={web}"),
    ]);
    let mut cmd = std::process::Command::new(crate::util::convoy_bin());
    for s in &sets {
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
    let mut node = Node::launch(cmd, port);
    let status = poll_status(web, Instant::now() + Duration::from_secs(14));
    sinks.run_and_check(&mut node, &journal, 15);
    // The EchoFlux-style API: the position it answers is the one heard as it answers.
    let rows = books(&journal.with_extension("jsonl.playback.csv"));
    let polls = status.join().expect("poller");
    let errors: Vec<f64> = polls
        .iter()
        .filter(|(_, rtt, _)| *rtt < 5_000_000)
        .filter_map(|&(at, _, ms)| Some((ms - heard_ms(&rows, at, 44_100.0)?).abs()))
        .collect();
    println!(
        "EchoFlux status: {} polls, position error p99 {:.2} ms",
        errors.len(),
        p99(&errors)
    );
    assert!(errors.len() > 100, "{} status polls answered", errors.len());
    assert!(
        p99(&errors) < 10.0,
        "EchoFlux position error p99 {:.2} ms",
        p99(&errors)
    );
}

/// A follower of a leader, both with no show: the follower's outputs move on the beats it
/// hears, which its PLL keeps on the leader's.
#[test]
fn a_follower_with_no_show_moves_on_the_fleet_beat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = 31_000 + (std::process::id() % 500) as u16 * 4;
    let mut leader = Node::spawn(
        "lead",
        "leader",
        base + 2,
        &[
            format!("sync.osc_port={base}"),
            format!("sync.sntp_port={}", base + 1),
        ],
        &["--track", "demo", "--start-in", "1.0", "--seconds", "20"],
    );
    let journal = dir.path().join("follow.jsonl");
    let sinks = Sinks::bind();
    let mut sets = vec![
        format!("sync.leader=127.0.0.1:{base}"),
        format!("sync.sntp_port={}", base + 1),
        "clock.offset_ms=1200.0".into(),
        "clock.ppm=40.0".into(),
    ];
    sets.extend(sinks.sets(&journal));
    let mut follower = Node::spawn("bike2", "follower", base + 3, &sets, &["--seconds", "19"]);
    sinks.run_and_check(&mut follower, &journal, 18);
    leader.terminate();
}

/// A node following another through the EchoFlux-style API (`web.follow_url`) seeks once
/// to join and never again: the positions both answer are the ones heard as they answer
/// (before the live plane, the 1 s snapshot made the follower seek about every 2 s).
#[test]
fn an_echoflux_follower_joins_once_and_never_seeks_again() {
    // Its positions are answered over HTTP every 100 ms: not beside the heavy fleets.
    let _slot = crate::util::realtime_slot();
    let base = 33_000 + (std::process::id() % 500) as u16 * 4;
    let web = base + 1;
    let _played = Node::spawn(
        "player",
        "solo",
        base,
        &[
            "web.enabled=true".into(),
            "web.bind=\"127.0.0.1\"".into(),
            format!("web.port={web}"),
        ],
        &["--track", "demo", "--seconds", "26"],
    );
    let follower = Node::spawn(
        "echo",
        "solo",
        base + 2,
        &[
            format!("web.follow_url=\"http://127.0.0.1:{web}\""),
            "web.follow_poll_ms=100.0".into(),
        ],
        &["--seconds", "25"],
    );
    follower.wait("the follower to play along", 10.0, |v| {
        v["playing"] == true && v["track"] == "demo"
    });
    let joined = mono_ns();
    std::thread::sleep(Duration::from_secs(20));
    let epochs: std::collections::BTreeSet<i64> = follower
        .all()
        .iter()
        .filter(|v| {
            v["mono_ns"]
                .as_u64()
                .is_some_and(|t| t > joined + 2_000_000_000)
        })
        .filter(|v| v["playing"] == true)
        .filter_map(|v| v["epoch"].as_i64())
        .collect();
    println!("EchoFlux follower: epochs after joining {epochs:?}");
    assert_eq!(
        epochs.len(),
        1,
        "the follower seeked after joining: epochs {epochs:?}"
    );
}
