//! Reconnect test without firmware: a socat pty pair stands in for the USB
//! serial port, and this test plays the Arduino (a `SimDevice`) on the far
//! end. socat is killed (the port vanishes) for ~1.5 s, then a new pair is
//! created on the same link paths; the transport must notice, report
//! `Disconnected`, reopen, re-handshake and re-send the pattern state.
//!
//! Needs `socat` (apt-get install socat); fails with that message if absent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convoy::led::protocol::{Command, LedState, Pattern, Rgb};
use convoy::led::serial::{spawn_serial, LinkState, LinkTiming, SerialConfig};
use convoy::led::sim::SimDevice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;

struct Socat(Child);

impl Socat {
    fn start(host: &Path, device: &Path) -> Socat {
        let child = Proc::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", host.display()))
            .arg(format!("pty,raw,echo=0,link={}", device.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run socat ({e}); install it with: apt-get install socat")
            });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(host.exists() && device.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create its pty links"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Socat(child)
    }

    /// Simulate the USB cable being pulled.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a fake Arduino on `path` until the port dies. Returns the shared device.
fn fake_arduino(path: PathBuf) -> Arc<Mutex<SimDevice>> {
    let dev = Arc::new(Mutex::new(SimDevice::new(30, "fake-1")));
    let shared = dev.clone();
    tokio::spawn(async move {
        let Ok(mut port) =
            tokio_serial::new(path.display().to_string(), 115_200).open_native_async()
        else {
            return;
        };
        let epoch = Instant::now();
        let banner = shared.lock().map(|d| d.boot_banner()).unwrap_or_default();
        if port.write_all(&banner).await.is_err() {
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            let n = match port.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = Vec::new();
            if let Ok(mut d) = shared.lock() {
                d.receive(&buf[..n], epoch.elapsed().as_millis() as u32, &mut out);
            }
            if !out.is_empty() && port.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    dev
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_restores_state_after_port_vanishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = dir.path().join("led-host");
    let device = dir.path().join("led-dev");
    let socat = Socat::start(&host, &device);
    let dev1 = fake_arduino(device.clone());

    let mut cfg = SerialConfig::new(&host);
    cfg.reconnect_interval = Duration::from_millis(100);
    cfg.handshake_timeout = Duration::from_secs(2);
    cfg.timing = LinkTiming {
        ack_timeout: Duration::from_millis(200),
        max_retries: 2,
        write_timeout: Duration::from_millis(500),
    };
    let (handle, join) = spawn_serial(cfg);
    let mut status = handle.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.link == LinkState::Connected),
    )
    .await
    .expect("first connect")
    .expect("status");

    handle
        .send(Command::Pattern(Pattern::Chase))
        .await
        .expect("queue");
    handle.send(Command::Hue(42)).await.expect("queue");
    handle
        .try_send(Command::Bands3([7, 8, 9]))
        .expect("queue bands");
    let d1 = dev1.clone();
    wait_until(
        "first device to get the state and bands",
        Duration::from_secs(5),
        || {
            d1.lock()
                .map(|d| {
                    let s = d.strip().state();
                    s.pattern == Pattern::Chase
                        && s.hue == 42
                        && d.strip().show().bands[..3] == [7, 8, 9]
                })
                .unwrap_or(false)
        },
    )
    .await;
    assert!(
        dev1.lock().map(|d| d.binary_mode()).unwrap_or(false),
        "bands switch to binary mode"
    );

    // Pull the plug.
    socat.kill();
    let t_unplug = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(3),
        status.wait_for(|s| s.link == LinkState::Disconnected),
    )
    .await
    .expect("disconnect noticed")
    .expect("status");
    let detect = t_unplug.elapsed();
    let err = handle.current_status().last_error.unwrap_or_default();
    println!("disconnect detected after {detect:.2?}: {err}");
    assert!(err.contains("led-host"), "error names the port: {err}");

    // While unplugged: state commands are remembered, stream updates dropped,
    // and the caller is never blocked.
    let t_send = Instant::now();
    handle
        .send(Command::Color(Rgb::new(1, 2, 3)))
        .await
        .expect("queue while down");
    for k in 0..200u8 {
        handle
            .try_send(Command::Bands3([k, k, k]))
            .expect("stream never errors");
    }
    assert!(
        t_send.elapsed() < Duration::from_secs(1),
        "sending while disconnected must not block"
    );
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(t_unplug.elapsed())).await;

    // Plug back in: a new pty pair on the same paths, a freshly booted device.
    let _socat2 = Socat::start(&host, &device);
    let t_replug = Instant::now();
    let dev2 = fake_arduino(device.clone());
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| s.link == LinkState::Connected && s.connects >= 2),
    )
    .await
    .expect("reconnect")
    .expect("status");
    let reconnected = t_replug.elapsed();
    let d2 = dev2.clone();
    let want = LedState {
        pattern: Pattern::Chase,
        hue: 42,
        color: Rgb::new(1, 2, 3),
        ..LedState::default()
    };
    wait_until(
        "state re-sent to the new device",
        Duration::from_secs(5),
        || {
            d2.lock()
                .map(|d| d.strip().state() == want)
                .unwrap_or(false)
        },
    )
    .await;
    let restored = t_replug.elapsed();
    println!(
        "reconnect: handshake {reconnected:.2?} after replug, state restored after {restored:.2?}"
    );

    let log: Vec<Command> = dev2
        .lock()
        .map(|d| d.received().iter().map(|p| p.body).collect())
        .unwrap_or_default();
    assert!(
        matches!(log.first(), Some(Command::Hello { .. })),
        "re-handshake first: {log:?}"
    );
    assert!(
        log.contains(&Command::State(want)),
        "state re-sent: {log:?}"
    );
    // The device logs the re-sent state before the host has its ack; the counter follows
    // the ack.
    wait_until("the state re-send's ack", Duration::from_secs(2), || {
        handle.current_status().state_resends >= 1
    })
    .await;
    let s = handle.current_status();
    println!(
        "status: connects={} resends={} acks={} dropped={} rtt_avg={:?}",
        s.connects, s.state_resends, s.acks, s.stream_dropped, s.rtt_avg
    );
    assert!(s.connects >= 2 && s.state_resends >= 1);
    assert!(
        s.stream_dropped >= 200,
        "bands sent while down were dropped"
    );

    drop(handle);
    tokio::time::timeout(Duration::from_secs(3), join)
        .await
        .expect("task ends when handles drop")
        .expect("task did not panic");
}
