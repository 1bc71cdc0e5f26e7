//! The OSC service against software we did not write: liblo's `oscsend`/`oscdump` and
//! python-osc (clients in `tests/fixtures/osc_client.py`, a fake Reaper/AbletonOSC in
//! `tests/fixtures/fake_daw.py`) send messages and bundles over UDP and TCP (liblo: length
//! prefix; python-osc: OSC 1.0 length prefix and OSC 1.1 SLIP) to a live service whose node
//! is a test inbox, and receive its replies, feedback and outbound streams. Ignored under
//! plain `cargo test`: tools/test.sh installs liblo-tools and python-osc and runs them with
//! `--include-ignored`.

use std::process::Stdio;
use std::time::Duration;

use convoy::control::{Command, Meters};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command as Process;

use crate::util::fixture;
use crate::util::osc as t;

async fn run(program: &str, args: &[&str]) -> String {
    let out = Process::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs (installed by tools/setup.sh --test): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs liblo-tools' oscsend (tools/test.sh installs it)"]
async fn liblo_oscsend_over_udp_and_tcp_reaches_the_node() {
    let (svc, mut node, _) = t::start(&t::config(), None).await;
    let port = svc.udp_addr().port().to_string();
    run(
        "oscsend",
        &["127.0.0.1", &port, "/convoy/seek", "i", "1500"],
    )
    .await;
    assert_eq!(
        node.next(3.0).await.command,
        Command::Seek {
            position_ms: 1500.0
        }
    );
    run(
        "oscsend",
        &["127.0.0.1", &port, "/convoy/color", "fff", "1", "0.5", "0"],
    )
    .await;
    assert_eq!(
        node.next(3.0).await.command,
        Command::Color {
            r: 255,
            g: 128,
            b: 0
        }
    );
    let tcp = format!("osc.tcp://127.0.0.1:{port}");
    run("oscsend", &[&tcp, "/convoy/play", "s", "intro"]).await;
    assert_eq!(
        node.next(3.0).await.command,
        Command::Play {
            track: Some("intro".into())
        }
    );
    run("oscsend", &[&tcp, "/convoy/{pause,next}", "T"]).await;
    let mut two = node.take(2, 3.0).await;
    two.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(two, vec![Command::Next, Command::Pause]);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs liblo-tools' oscdump (tools/test.sh installs it)"]
async fn liblo_oscdump_receives_feedback_and_outbound() {
    let dump_port = t::free_udp_port();
    let mut cfg = t::config();
    cfg.outbound = vec![t::local(dump_port).to_string()];
    let (svc, node, _) = t::start(&cfg, None).await;
    let mut dump = Process::new("oscdump")
        .args(["-L", &dump_port.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("oscdump runs (liblo-tools)");
    let mut lines = BufReader::new(dump.stdout.take().expect("stdout")).lines();
    tokio::time::sleep(Duration::from_millis(300)).await; // let oscdump bind
    let port = svc.udp_addr().port().to_string();
    let sub = dump_port.to_string();
    run(
        "oscsend",
        &["127.0.0.1", &port, "/convoy/subscribe", "i", &sub],
    )
    .await;
    node.state.send_modify(|s| {
        s.track = Some("intro".into());
        s.playing = true;
        s.meters = Meters {
            beat: 1,
            beat_in_bar: Some(1),
            bands: vec![0.25, 0.5],
        };
    });
    let wanted = [
        "/convoy/fb/track s \"intro\"",
        "/convoy/fb/playing i 1",
        "/convoy/out/beat ii 1 1",
        "/convoy/out/bar i 1",
        "/convoy/out/bands ff 0.25",
    ];
    let mut seen = vec![false; wanted.len()];
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.iter().all(|&s| s) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("oscdump printed {all:#?}, missing some of {wanted:?}"))
            .expect("read")
            .expect("oscdump running");
        for (w, s) in wanted.iter().zip(seen.iter_mut()) {
            *s |= line.contains(w);
        }
        all.push(line);
    }
    svc.shutdown().await;
}

/// Runs the python-osc client script; returns (timetag_ns if timed, messages received).
async fn python_client(
    port: u16,
    transport: &str,
    timed_ms: Option<u32>,
) -> (Option<u64>, Vec<Value>) {
    let script = fixture("osc_client.py");
    let mut args = vec![
        script.display().to_string(),
        port.to_string(),
        transport.to_string(),
    ];
    if let Some(ms) = timed_ms {
        args.extend(["--timed-ms".to_string(), ms.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("python3", &args).await;
    let mut timetag = None;
    let mut msgs = Vec::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        match v.get("timetag_ns").and_then(Value::as_u64) {
            Some(ns) => timetag = Some(ns),
            None => msgs.push(v),
        }
    }
    (timetag, msgs)
}

fn reply(msgs: &[Value], addr: &str) -> Value {
    let m = msgs
        .iter()
        .find(|m| m["addr"] == addr)
        .unwrap_or_else(|| panic!("no {addr} among {msgs:#?}"));
    serde_json::from_str(m["args"][0].as_str().expect("JSON string arg")).expect("reply JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with python-osc (tools/test.sh installs it)"]
async fn python_osc_udp_and_both_tcp_framings() {
    let (svc, mut node, _) = t::start(&t::config(), None).await;
    node.state.send_modify(|s| s.track = Some("demo".into()));
    let port = svc.udp_addr().port();
    for transport in ["udp", "tcp1.0", "tcp1.1"] {
        let timed = (transport == "udp").then_some(300);
        let (timetag, msgs) = python_client(port, transport, timed).await;
        let want = vec![
            Command::Seek {
                position_ms: 1500.0,
            },
            Command::Pause,
            Command::Play {
                track: Some("intro".into()),
            },
        ];
        assert_eq!(node.take(3, 3.0).await, want, "{transport}");
        if let Some(due) = timetag {
            let g = node.next(3.0).await;
            assert_eq!(g.command, Command::Next);
            let late_ms = (g.at_ns as f64 - due as f64) / 1e6;
            eprintln!("python-osc timed bundle: ran {late_ms:.3} ms after its timetag");
            // One sample: bounded loosely here (CPU contention in a parallel suite); the
            // 2 ms claim is measured over 20 bundles in osc_service.
            assert!((-0.1..10.0).contains(&late_ms), "{late_ms} ms");
        }
        assert_eq!(
            reply(&msgs, "/reply/convoy/seek")["status"],
            "ok",
            "{transport}"
        );
        assert_eq!(
            reply(&msgs, "/reply/convoy/play")["status"],
            "ok",
            "{transport}"
        );
        let status = reply(&msgs, "/reply/convoy/status");
        assert_eq!(status["data"]["track"], "demo", "{transport}");
        // Having been heard, the client also gets feedback on the same transport.
        assert!(
            msgs.iter().any(|m| m["addr"] == "/convoy/fb/track"),
            "{transport}: {msgs:#?}"
        );
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with python-osc (tools/test.sh installs it)"]
async fn fake_reaper_and_abletonosc_drive_tempo_and_transport() {
    let (svc, mut node, _) = t::start(&t::config(), None).await;
    let script = fixture("fake_daw.py");
    let port = svc.udp_addr().port().to_string();
    run("python3", &[&script.display().to_string(), &port]).await;
    let got = node.take(11, 3.0).await;
    let beat = |s: &str| Command::DawBeatString { beat: s.into() };
    let time = |i: u32| Command::DawTime {
        seconds: f64::from((12.5 + f64::from(i) * 60.0 / 124.0) as f32),
    };
    assert_eq!(
        got,
        vec![
            Command::Play { track: None },
            Command::DawTempo { bpm: 124.0 },
            time(0),
            beat("5.1.00"),
            time(1),
            beat("5.2.00"),
            time(2),
            beat("5.3.00"),
            Command::LiveTempo { bpm: 128.0 },
            Command::LiveBeat { beat: 17 },
            Command::Stop,
        ]
    );
    svc.shutdown().await;
}
