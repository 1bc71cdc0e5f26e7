//! The OSC control service end to end with Rust clients: UDP and TCP (both framings),
//! QLab-style replies, `/convoy/status`, patterns, the security policy, bundles at their
//! timetag, feedback, outbound OSC and the WLED audio-sync stream. The node is a test
//! `NodeHandle` whose inbox records what arrives and when.

use std::time::Duration;

use convoy::clock::{TimeNow, WallClock};
use convoy::control::{Command, Meters, Origin};
use convoy::osc::codec::{
    self, Epoch, LengthPrefixDecoder, OscBundle, OscPacket, OscType, SlipDecoder, IMMEDIATE,
};
use convoy::osc::wled::AudioSyncFrame;
use convoy::osc::TcpFraming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::osc::{self as t, client, msg, recv_until, reply_json, send};

fn is_reply(addr: &'static str) -> impl FnMut(&codec::OscMessage) -> bool {
    move |m| m.addr == addr
}

#[tokio::test]
async fn udp_commands_patterns_and_replies() {
    let (svc, mut node, guard) = t::start(&t::config(), None).await;
    let to = svc.udp_addr();
    let c = client().await;
    let me = c.local_addr().unwrap();

    send(&c, to, &msg("/convoy/seek", vec![OscType::Int(1500)])).await;
    let got = node.next(2.0).await;
    assert_eq!(
        got.command,
        Command::Seek {
            position_ms: 1500.0
        }
    );
    assert_eq!(got.origin, Origin::Osc(me.to_string()));
    let r = recv_until(&c, 2.0, is_reply("/reply/convoy/seek")).await;
    assert_eq!(reply_json(&r)["status"], "ok");

    // The node's refusal comes back as an error reply carrying its reason.
    send(&c, to, &msg("/go", vec![])).await;
    assert_eq!(node.next(2.0).await.command, Command::Go);
    let r = reply_json(&recv_until(&c, 2.0, is_reply("/reply/go")).await);
    assert_eq!(r["status"], "error");
    assert_eq!(r["message"], "no cue list loaded");

    // A pattern selects every method it matches; a release (0) does nothing.
    send(&c, to, &msg("/convoy/{pause,next}", vec![])).await;
    let mut two = node.take(2, 2.0).await;
    two.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(two, vec![Command::Next, Command::Pause]);
    send(&c, to, &msg("/convoy/stop", vec![OscType::Float(0.0)])).await;

    // Bad input: an error reply naming the address and what was expected.
    send(
        &c,
        to,
        &msg("/convoy/seek", vec![OscType::String("x".into())]),
    )
    .await;
    let r = reply_json(&recv_until(&c, 2.0, is_reply("/reply/convoy/seek")).await);
    assert_eq!(r["status"], "error");
    assert!(
        r["message"].as_str().unwrap().contains("position_ms"),
        "{r}"
    );
    send(&c, to, &msg("/nope", vec![])).await;
    let r = reply_json(&recv_until(&c, 2.0, is_reply("/reply/nope")).await);
    assert!(r["message"].as_str().unwrap().contains("/nope"), "{r}");
    c.send_to(b"not osc at all", to).await.unwrap();

    // Status carries the node's snapshot.
    node.state.send_modify(|s| {
        s.track = Some("demo".into());
        s.playing = true;
    });
    send(&c, to, &msg("/convoy/status", vec![])).await;
    let r = reply_json(&recv_until(&c, 2.0, is_reply("/reply/convoy/status")).await);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["data"]["track"], "demo");
    assert_eq!(r["data"]["playing"], true);

    node.assert_quiet(0.2).await;
    assert_eq!(guard.lock().unwrap().stats().snapshot().malformed, 1);
    svc.shutdown().await;
}

#[tokio::test]
async fn policy_refusals_get_no_reply_and_reach_nothing() {
    let (svc, mut node, guard) = t::start(&t::config(), Some("pw")).await;
    let c = client().await;
    send(&c, svc.udp_addr(), &msg("/convoy/stop", vec![])).await;
    send(&c, svc.udp_addr(), &msg("/pw/convoy/pause", vec![])).await;
    assert_eq!(node.next(2.0).await.command, Command::Pause);
    // The only reply is for the accepted message, under its address without the secret.
    let r = recv_until(&c, 2.0, |m| m.addr.starts_with("/reply")).await;
    assert_eq!(r.addr, "/reply/convoy/pause");
    node.assert_quiet(0.2).await;
    assert_eq!(guard.lock().unwrap().stats().snapshot().control_denied, 1);
    svc.shutdown().await;
}

/// Reads frames from a TCP stream until `want` messages arrived.
async fn read_tcp(s: &mut TcpStream, framing: TcpFraming, want: usize) -> Vec<codec::OscMessage> {
    let mut lp = LengthPrefixDecoder::new(65_536);
    let mut slip = SlipDecoder::new(65_536);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("TCP reply in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        let mut push = |r: Result<OscPacket, codec::FrameError>| {
            if let Ok(OscPacket::Message(m)) = r {
                out.push(m);
            }
        };
        match framing {
            TcpFraming::Slip => slip.feed(&buf[..n], &mut push),
            _ => lp.feed(&buf[..n], &mut push),
        }
    }
    out
}

#[tokio::test]
async fn tcp_length_prefix_and_slip_connections() {
    let mut cfg = t::config();
    cfg.feedback = false; // only replies on these streams
    let (svc, mut node, _) = t::start(&cfg, None).await;
    let to = svc.tcp_addr().expect("TCP on");
    assert_eq!(to.port(), svc.udp_addr().port());
    for (framing, position) in [(TcpFraming::Length, 10), (TcpFraming::Slip, 20)] {
        let mut s = TcpStream::connect(to).await.unwrap();
        let seek = msg("/convoy/seek", vec![OscType::Int(position)]);
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: IMMEDIATE,
            content: vec![msg("/convoy/pause", vec![]), msg("/convoy/status", vec![])],
        });
        let mut bytes = Vec::new();
        for p in [&seek, &bundle] {
            bytes.extend(match framing {
                TcpFraming::Slip => codec::encode_slip(p).unwrap(),
                _ => codec::encode_length_prefixed(p).unwrap(),
            });
        }
        // Dribble the bytes to exercise reassembly.
        for chunk in bytes.chunks(5) {
            s.write_all(chunk).await.unwrap();
        }
        let cmds = node.take(2, 2.0).await;
        assert_eq!(
            cmds,
            vec![
                Command::Seek {
                    position_ms: f64::from(position)
                },
                Command::Pause
            ]
        );
        let mut replies: Vec<String> = read_tcp(&mut s, framing, 3)
            .await
            .into_iter()
            .map(|m| m.addr)
            .collect();
        replies.sort();
        assert_eq!(
            replies,
            [
                "/reply/convoy/pause",
                "/reply/convoy/seek",
                "/reply/convoy/status"
            ],
            "{framing:?}"
        );
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_bundles_fire_at_their_timetag() {
    let (svc, mut node, _) = t::start(&t::config(), None).await;
    let c = client().await;
    let to = svc.udp_addr();
    // 20 bundles, 60..250 ms ahead, sent in reverse order: they must fire in time order.
    let base = WallClock.now_ns() + 60_000_000;
    let dues: Vec<u64> = (0..20u64).map(|i| base + i * 10_000_000).collect();
    for (i, &due) in dues.iter().enumerate().rev() {
        let b = OscPacket::Bundle(OscBundle {
            timetag: codec::timetag_from_nanos(due, Epoch::UNIX).unwrap(),
            content: vec![msg("/convoy/seek", vec![OscType::Int(i as i32)])],
        });
        send(&c, to, &b).await;
    }
    let mut late_us = Vec::new();
    for (i, &due) in dues.iter().enumerate() {
        let g = node.next(2.0).await;
        assert_eq!(
            g.command,
            Command::Seek {
                position_ms: i as f64
            }
        );
        late_us.push((g.at_ns as f64 - due as f64) / 1e3);
    }
    let mut sorted = late_us.clone();
    sorted.sort_by(f64::total_cmp);
    let (min, p50, p90, max) = (sorted[0], sorted[10], sorted[18], sorted[19]);
    eprintln!(
        "timetag lateness over 20 bundles (µs): min {min:.0} p50 {p50:.0} p90 {p90:.0} max {max:.0}"
    );
    // Never early; typically ~0.2 ms late. The median is asserted, not the tail: on a CI
    // machine running the whole suite in parallel, an occasional wake-up waits one CPU
    // time slice (~4 ms) for a core (figures: docs/osc.md).
    assert!(min > -100.0, "a bundle fired early: {late_us:?}");
    assert!(p50 < 2_000.0, "bundles fired late: {late_us:?}");

    // Too far ahead: refused with an error naming the setting; nothing reaches the node.
    let far = WallClock.now_ns() + 7_200_000_000_000;
    let b = OscPacket::Bundle(OscBundle {
        timetag: codec::timetag_from_nanos(far, Epoch::UNIX).unwrap(),
        content: vec![msg("/convoy/stop", vec![])],
    });
    send(&c, to, &b).await;
    let r = reply_json(&recv_until(&c, 2.0, is_reply("/reply/convoy/stop")).await);
    assert!(
        r["message"].as_str().unwrap().contains("osc.max_future_s"),
        "{r}"
    );
    // In the past: at once.
    let past = OscPacket::Bundle(OscBundle {
        timetag: codec::timetag_from_nanos(WallClock.now_ns() - 5_000_000_000, Epoch::UNIX)
            .unwrap(),
        content: vec![msg("/convoy/next", vec![])],
    });
    send(&c, to, &past).await;
    assert_eq!(node.next(0.5).await.command, Command::Next);
    // A pending bundle is dropped (and counted) at shutdown.
    let later = OscPacket::Bundle(OscBundle {
        timetag: codec::timetag_from_nanos(WallClock.now_ns() + 60_000_000_000, Epoch::UNIX)
            .unwrap(),
        content: vec![msg("/convoy/next", vec![])],
    });
    send(&c, to, &later).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(svc.shutdown().await, 1);
}

#[tokio::test]
async fn feedback_follows_the_snapshot() {
    let (svc, node, _) = t::start(&t::config(), None).await;
    let to = svc.udp_addr();
    let phone = client().await;
    // A second socket on the same host subscribes by port (TouchOSC's receive port).
    let labels = client().await;
    let labels_port = labels.local_addr().unwrap().port();
    node.state.send_modify(|s| s.track = Some("intro".into()));
    send(
        &phone,
        to,
        &msg("/convoy/subscribe", vec![OscType::Int(labels_port.into())]),
    )
    .await;
    let m = recv_until(&labels, 2.0, |m| m.addr == "/convoy/fb/track").await;
    assert_eq!(m.args, vec![OscType::String("intro".into())]);
    // The phone itself was heard, so it gets feedback too.
    recv_until(&phone, 2.0, |m| m.addr == "/convoy/fb/track").await;
    node.state.send_modify(|s| {
        s.light.bright = 0.5;
        s.light.hue = 120;
    });
    // The change arrives (after the full state, which had hue 0).
    recv_until(&labels, 2.0, |m| {
        m.addr == "/convoy/fb/hue" && m.args == vec![OscType::Float(120.0)]
    })
    .await;
    assert_eq!(svc.feedback_clients(), 2);
    send(
        &phone,
        to,
        &msg(
            "/convoy/unsubscribe",
            vec![OscType::Int(labels_port.into())],
        ),
    )
    .await;
    recv_until(&phone, 2.0, |m| m.addr == "/reply/convoy/unsubscribe").await;
    assert_eq!(svc.feedback_clients(), 1);
    svc.shutdown().await;
}

#[tokio::test]
async fn outbound_streams_and_wled_packets() {
    let visuals = client().await;
    let lamp = client().await;
    let mut cfg = t::config();
    cfg.outbound = vec![visuals.local_addr().unwrap().to_string()];
    cfg.wled.enabled = true;
    cfg.wled.destination = lamp.local_addr().unwrap().to_string();
    cfg.wled.rate_hz = 100.0;
    let (svc, node, _) = t::start(&cfg, None).await;
    node.state.send_modify(|s| {
        s.playing = true;
        s.meters = Meters {
            beat: 1,
            beat_in_bar: Some(1),
            bands: vec![0.9, 0.5, 0.1],
        };
    });
    let beat = recv_until(&visuals, 2.0, |m| m.addr == "/convoy/out/beat").await;
    assert_eq!(beat.args, vec![OscType::Int(1), OscType::Int(1)]);
    // Sent in this order within one update: beat, bar, then the levels.
    let bar = recv_until(&visuals, 2.0, |m| m.addr == "/convoy/out/bar").await;
    assert_eq!(bar.args, vec![OscType::Int(1)]);
    let bands = recv_until(&visuals, 2.0, |m| m.addr == "/convoy/out/bands").await;
    assert_eq!(bands.args.len(), 3);
    let mut buf = [0u8; 128];
    let mut frame = None;
    for _ in 0..50 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), lamp.recv_from(&mut buf))
            .await
            .expect("WLED packet in time")
            .unwrap();
        assert_eq!(n, 44);
        let f = AudioSyncFrame::decode(&buf[..n]).expect("a V2 packet");
        if f.fft[0] > 0 {
            frame = Some(f);
            break;
        }
    }
    let f = frame.expect("a frame with levels");
    assert!(
        f.fft[0] > f.fft[15],
        "low band loud, high band quiet: {f:?}"
    );
    svc.shutdown().await;
}
