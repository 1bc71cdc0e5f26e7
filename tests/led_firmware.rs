//! Firmware-in-the-loop test: the real `convoy_led` firmware runs in simavr
//! with its UART on a pty, and `led::serial` talks to it.
//!
//! Ignored under plain `cargo test`; tools/test.sh installs the toolchain and
//! runs it with `--include-ignored`. Run without the toolchain, it fails with
//! instructions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use convoy::led::protocol::{Command, ErrorCode, LedState, Pattern, Reply, Rgb};
use convoy::led::serial::{spawn_serial, LedError, LedLink, LinkState, LinkTiming, SerialConfig};

struct Sim {
    child: Child,
    link: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Proc::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_firmware() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tools/arduino/build.sh");
    let out = root.join("tools/arduino/build");
    let status = Proc::new("bash")
        .arg(&script)
        .env("CONVOY_FW_BUILD_DIR", &out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) if s.code() == Some(3) => panic!(
            "the firmware toolchain is missing: run `{} --install-deps` \
             (needs arduino-mk arduino-core-avr simavr libsimavr-dev)",
            script.display()
        ),
        Ok(s) => panic!("{} failed with {s}", script.display()),
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    }
    out
}

fn start_sim(build: &Path) -> Sim {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("convoy-led-uart0");
    let mut child = Proc::new(build.join("simrun"))
        .arg(build.join("convoy_led.elf"))
        .arg(&link)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn simrun");
    let stdout = child.stdout.take().expect("simrun stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut pty = None;
    for line in lines.by_ref() {
        let line = line.expect("read simrun output");
        if let Some(p) = line.strip_prefix("PTY ") {
            pty = Some(p.to_string());
            break;
        }
    }
    // Keep draining simrun's stdout so it never blocks.
    std::thread::spawn(move || for _ in lines {});
    assert!(pty.is_some(), "simrun did not report its pty");
    assert!(link.exists(), "simrun did not create {}", link.display());
    Sim {
        child,
        link,
        _dir: dir,
    }
}

fn stats(name: &str, v: &mut [Duration]) -> Duration {
    v.sort();
    let pct = |p: usize| v[(v.len() - 1) * p / 100];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "{name}: n={} mean={:.2?} p50={:.2?} p95={:.2?} max={:.2?}",
        v.len(),
        mean,
        pct(50),
        pct(95),
        pct(100)
    );
    pct(50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the AVR toolchain and simavr (tools/test.sh installs them)"]
async fn firmware_in_the_loop() {
    let build = build_firmware();
    if let Ok(size) = std::fs::read_to_string(build.join("size.txt")) {
        println!("firmware size:\n{size}");
    }
    let sim = start_sim(&build);
    let timing = LinkTiming {
        ack_timeout: Duration::from_millis(500),
        max_retries: 3,
        write_timeout: Duration::from_secs(2),
    };
    let mut link = LedLink::open(&sim.link, 115_200, timing).expect("open pty");
    let (info, hello_rtt) = link
        .handshake(Duration::from_secs(5))
        .await
        .expect("handshake with firmware");
    println!("handshake: {info:?} in {hello_rtt:.2?}");
    assert_eq!(info.protocol, 1);
    assert_eq!(info.num_leds, 60);

    // Every line command is acked.
    let mut line_cmds = vec![
        Command::Ping,
        Command::Hue(200),
        Command::Bright(255),
        Command::Speed(10),
        Command::Color(Rgb::new(1, 2, 3)),
        Command::Beat {
            beat_in_bar: 2,
            strength: 100,
        },
        Command::Bands3([10, 20, 30]),
        Command::State(LedState {
            pattern: Pattern::Vu,
            hue: 1,
            bright: 2,
            speed: 3,
            color: Rgb::new(4, 5, 6),
        }),
        Command::Exit,
    ];
    line_cmds.extend(Pattern::ALL.iter().map(|p| Command::Pattern(*p)));
    let mut line_rtts = Vec::new();
    for cmd in &line_cmds {
        let ack = link
            .request(cmd)
            .await
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert_eq!(ack.reply, Reply::Ok, "{cmd:?}");
        line_rtts.push(ack.rtt);
    }
    // Rejections are typed.
    match link.request(&Command::Bands16([1; 16])).await {
        Err(LedError::Encode { .. }) => {}
        other => panic!("BANDS16 as a line must not encode: {other:?}"),
    }
    for _ in 0..50 {
        line_rtts.push(link.request(&Command::Ping).await.expect("ping").rtt);
    }
    let line_p50 = stats("line round trip (send -> OK)", &mut line_rtts);

    // Binary mode: every binary command, acked.
    let enter = link.enter_binary().await.expect("enter binary");
    assert!(link.is_binary());
    println!("BINARY switch acked in {:.2?}", enter.rtt);
    let bin_cmds = [
        Command::Bands3([1, 2, 3]),
        Command::Bands16([9; 16]),
        Command::Beat {
            beat_in_bar: 0,
            strength: 255,
        },
        Command::State(LedState {
            pattern: Pattern::BeatFlash,
            hue: 10,
            bright: 200,
            speed: 100,
            color: Rgb::new(255, 0, 0),
        }),
        Command::Ping,
    ];
    let mut bin_rtts = Vec::new();
    for cmd in &bin_cmds {
        let ack = link
            .request(cmd)
            .await
            .unwrap_or_else(|e| panic!("binary {cmd:?}: {e}"));
        assert_eq!(ack.reply, Reply::Ok);
        bin_rtts.push(ack.rtt);
    }
    for _ in 0..50 {
        bin_rtts.push(link.request(&Command::Ping).await.expect("binary ping").rtt);
    }
    stats("binary round trip (frame -> ACK)", &mut bin_rtts);

    // Sustained band stream: windows of fire-and-forget frames, each closed
    // by one acked frame (which proves the firmware consumed the window:
    // the link is in order), so the host never floods the UART.
    async fn stream<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        link: &mut LedLink<S>,
        sixteen: bool,
    ) -> f64 {
        let (windows, per) = (20u32, 25u32);
        let t0 = Instant::now();
        for w in 0..windows {
            for k in 0..per {
                let v = ((w * per + k) % 256) as u8;
                let cmd = if sixteen {
                    Command::Bands16([v; 16])
                } else {
                    Command::Bands3([v, v, v])
                };
                link.send_stream(&cmd).await.expect("stream");
            }
            link.request(&Command::Ping)
                .await
                .expect("ack closing a window");
        }
        let el = t0.elapsed();
        let n = windows * (per + 1);
        let rate = f64::from(n) / el.as_secs_f64();
        println!(
            "sustained binary {} stream: {n} frames in {el:.2?} = {rate:.0} updates/s",
            if sixteen { "BANDS16" } else { "BANDS3" }
        );
        rate
    }
    let rate = stream(&mut link, true).await;
    let rate3 = stream(&mut link, false).await;
    assert!(
        rate3 >= 50.0,
        "binary BANDS3 stream below 50 updates/s: {rate3:.1}"
    );
    assert!(rate >= 50.0, "binary stream below 50 updates/s: {rate:.1}");

    // Leave binary mode with an EXIT frame; lines work again.
    link.exit_binary().await.expect("exit binary");
    assert!(!link.is_binary());
    link.request(&Command::Hue(3))
        .await
        .expect("line after exit");

    // Binary mode times out on the firmware after 1 s without frames.
    link.enter_binary().await.expect("enter binary again");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match link.request(&Command::Ping).await {
        Err(LedError::Rejected {
            code: ErrorCode::WrongMode,
            ..
        }) => {}
        other => panic!("expected WrongMode after binary timeout, got {other:?}"),
    }
    assert!(!link.is_binary());
    assert!(line_p50 < Duration::from_secs(1));
    drop(link);

    // The reconnecting task against the firmware too: connect and ack.
    let mut cfg = SerialConfig::new(&sim.link);
    cfg.timing = timing;
    let (handle, join) = spawn_serial(cfg);
    let mut st = handle.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| s.link == LinkState::Connected),
    )
    .await
    .expect("task connects")
    .expect("status channel");
    handle
        .send(Command::Pattern(Pattern::Chase))
        .await
        .expect("queue");
    for k in 0..100u8 {
        handle
            .try_send(Command::Bands3([k, k, k]))
            .expect("queue bands");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(
        Duration::from_secs(5),
        st.wait_for(|s| s.acks >= 2 && s.stream_sent >= 10),
    )
    .await
    .expect("task acks and streams")
    .expect("status channel");
    let s = handle.current_status();
    println!(
        "task vs firmware: acks={} stream_sent={} dropped={} rtt_avg={:?}",
        s.acks, s.stream_sent, s.stream_dropped, s.rtt_avg
    );
    drop(handle);
    let _ = tokio::time::timeout(Duration::from_secs(3), join).await;
    drop(sim);
}
