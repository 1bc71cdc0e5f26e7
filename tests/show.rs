//! Shows: `convoy show --check` reports problems by file and line, `convoy show` plays the
//! demo show on the simulated strip, and a show drives a serial controller through a
//! socat pty pair — measuring when each beat and cue command arrives at the far end
//! against when its beat is heard, and surviving the port vanishing for 3 s.
//!
//! The serial test needs `socat` (in `tools/setup.sh --test`); it fails naming it when
//! absent, like `led_reconnect`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convoy::audio::{output, EngineOptions, FreeRun, Player};
use convoy::clock::mono_ns;
use convoy::config::{Config, SinkKind};
use convoy::led::protocol::{Command, Decoder, LedState};
use convoy::led::serial::{spawn_serial, LinkState, LinkTiming, SerialConfig};
use convoy::led::sim::SimDevice;
use convoy::led::LedOutput;
use convoy::show::schedule::look_at;
use convoy::show::{Fired, RunnerOptions, Show, ShowRunner, VehicleInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;

use crate::util::run_convoy;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn check_accepts_the_shipped_shows_and_names_lines_of_problems() {
    for show in ["shows/demo.toml", "shows/live.toml"] {
        let path = repo(show);
        let (ok, out, err) = run_convoy(&["show", "--check", path.to_str().unwrap_or("")]);
        assert!(ok, "{show}: {err}");
        assert!(out.contains(": ok"), "{out}");
    }
    let (_, out, _) = run_convoy(&[
        "show",
        "--check",
        repo("shows/demo.toml").to_str().unwrap_or(""),
    ]);
    assert!(
        out.contains("cue drop") && out.contains("beatmap, 124.0 BPM"),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "format = \"convoy-show\"\nversion = 1\n[[track]]\nfile = \"demo\"\nbeatmap = {:?}\n\
             [[track.cue]]\nat = \"bar 40\"\npattern = \"lava\"\n",
            repo("beatmaps/demo.beatmap.json").display().to_string()
        ),
    )
    .expect("write");
    let (ok, _, err) = run_convoy(&["show", "--check", bad.to_str().unwrap_or("")]);
    assert!(!ok);
    let name = bad.display().to_string();
    assert!(
        err.contains(&format!("{name}:7: bar 40 is beyond the end")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:8: unknown pattern \"lava\"")),
        "{err}"
    );
}

#[test]
fn the_demo_show_plays_on_the_simulated_strip() {
    let path = repo("shows/demo.toml");
    let (ok, out, err) = run_convoy(&[
        "show",
        path.to_str().unwrap_or(""),
        "--sink",
        "null",
        "--led",
        "sim",
        "--seconds",
        "5",
    ]);
    assert!(ok, "{err}");
    // Not a terminal: one line per cue. The intro flashes, and the drop (bar 3, 3.87 s).
    assert!(out.contains("cue count-in"), "{out}");
    let drop = out
        .lines()
        .find(|l| l.contains("cue drop"))
        .unwrap_or_else(|| panic!("no drop cue in {out}"));
    // Show units, not raw structs (issue 27): degrees, percent, bar and beat.
    assert!(
        drop.contains("bar 3 beat 1") && drop.contains("pattern beatflash, hue 0°, bright 100%"),
        "{drop}"
    );
    assert!(!out.contains("LedState"), "{out}");
    assert!(err.contains("light commands sent"), "{err}");
}

/// Issue #27: `--led serial` without the Arduino said "16 light commands sent" and only
/// `--log debug` named the missing port. Now one warning with the fix, and nothing counts
/// as sent.
#[test]
fn a_missing_led_port_warns_once_and_nothing_counts_as_sent() {
    let path = repo("shows/demo.toml");
    let port = "/nonexistent/convoy-led";
    let (ok, _, err) = run_convoy(&[
        "show",
        path.to_str().unwrap_or(""),
        "--sink",
        "null",
        "--led",
        "serial",
        "--port",
        port,
        "--seconds",
        "3",
    ]);
    assert!(ok, "{err}");
    let warning = format!("LED port {port} missing: is the Arduino plugged in?");
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    assert!(err.contains("0 light commands sent"), "{err}");
}

#[test]
fn logs_off_a_terminal_carry_no_colour_codes() {
    // issue 27: colour codes went into files.
    let path = repo("shows/demo.toml");
    let (ok, out, err) = run_convoy(&[
        "--log",
        "debug",
        "show",
        path.to_str().unwrap_or(""),
        "--sink",
        "null",
        "--led",
        "sim",
        "--seconds",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("DEBUG"), "no log lines to check: {err}");
    assert!(!err.contains('\x1b') && !out.contains('\x1b'), "{err:?}");
}

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
                panic!("cannot run socat ({e}); install it: apt-get install socat")
            });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(host.exists() && device.exists()) {
            assert!(Instant::now() < deadline, "socat made no pty links");
            std::thread::sleep(Duration::from_millis(10));
        }
        Socat(child)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A packet the fake controller decoded, with the monotonic time its bytes were read.
type Arrival = (u64, Command);

/// Play the controller on `path`: answer like the firmware, log each command's arrival.
fn fake_controller(path: PathBuf, log: Arc<Mutex<Vec<Arrival>>>) -> Arc<Mutex<SimDevice>> {
    let dev = Arc::new(Mutex::new(SimDevice::new(30, "fake-show")));
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
        let mut decoder = Decoder::<Command>::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match port.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = mono_ns();
            if let Ok(mut l) = log.lock() {
                for &b in &buf[..n] {
                    if let Some(Ok(p)) = decoder.feed(b) {
                        l.push((at, p.body));
                    }
                }
            }
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

/// The built-in configuration, a free-running player on the null sink and the demo show.
fn demo_on_null_sink() -> (Config, Arc<Player>, Arc<Show>) {
    let config = Config::builtin().expect("config");
    let sink = output::open_sink(&config.audio, SinkKind::Null).expect("null sink");
    let player = Arc::new(
        Player::start(
            sink,
            EngineOptions::from_config(&config.audio),
            Box::new(FreeRun),
        )
        .expect("player"),
    );
    let show = Arc::new(Show::load(&repo("shows/demo.toml")).expect("demo show"));
    (config, player, show)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Arrival minus heard time (ms) for every fired command matched to its arrival.
fn arrival_errors(fired: &[Fired], arrivals: &[Arrival]) -> Vec<f64> {
    let mut used = vec![false; arrivals.len()];
    let mut errs = Vec::new();
    for f in fired {
        // The first unused arrival of the same command within 100 ms of its send.
        let hit = arrivals.iter().enumerate().find(|(i, (at, c))| {
            !used[*i]
                && *at + 1_000_000 >= f.sent_ns
                && *at < f.sent_ns + 100_000_000
                && (*c == f.command
                    // State changes travel as STATE frames in binary mode.
                    || (!f.command.is_stream() && matches!(c, Command::State(_))))
        });
        if let Some((i, (at, _))) = hit {
            used[i] = true;
            errs.push((*at as f64 - f.heard_ns) / 1e6);
        }
    }
    errs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_on_a_serial_controller_lands_on_the_beat_and_survives_a_3s_unplug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = dir.path().join("led-host");
    let device = dir.path().join("led-dev");
    let socat = Socat::start(&host, &device);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let dev1 = fake_controller(device.clone(), arrivals.clone());

    let mut sc = SerialConfig::new(&host);
    sc.reconnect_interval = Duration::from_millis(100);
    sc.timing = LinkTiming {
        ack_timeout: Duration::from_millis(200),
        max_retries: 2,
        write_timeout: Duration::from_millis(500),
    };
    let (led, _task) = spawn_serial(sc);
    let mut link = led.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        link.wait_for(|s| s.link == LinkState::Connected),
    )
    .await
    .expect("connect")
    .expect("status");

    let (config, player, show) = demo_on_null_sink();
    let (trace_tx, trace_rx) = std::sync::mpsc::channel();
    let mut opts = RunnerOptions::from_config(&config);
    // A pty has no serial line delay: the compensation covers queue and task wake-ups.
    opts.led_latency = Duration::from_millis(1);
    opts.trace = Some(trace_tx);
    let vehicle = VehicleInfo {
        id: "bike-1".into(),
        leader: true,
    };
    let handle = ShowRunner::spawn(
        show.clone(),
        player.clone(),
        LedOutput::Serial(led.clone()),
        vehicle.clone(),
        opts,
    );
    player
        .load(convoy::audio::open_track("demo").expect("demo"), 0)
        .expect("load");

    // 7 s of show, then the cable is pulled for 3 s, then 6 s more.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before_unplug: Vec<Fired> = trace_rx.try_iter().collect();
    let pos_before = player.status().position.unwrap_or(0.0);
    drop(socat);
    tokio::time::timeout(
        Duration::from_secs(2),
        link.wait_for(|s| s.link == LinkState::Disconnected),
    )
    .await
    .expect("the unplug is noticed")
    .expect("status");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pos_unplugged = player.status().position.unwrap_or(0.0);
    let arrivals2 = Arc::new(Mutex::new(Vec::new()));
    let socat = Socat::start(&host, &device);
    let dev2 = fake_controller(device.clone(), arrivals2.clone());
    let replug = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        link.wait_for(|s| s.link == LinkState::Connected && s.connects >= 2),
    )
    .await
    .expect("reconnect")
    .expect("status");
    let reconnect_s = replug.elapsed().as_secs_f64();
    // Commands fired while unplugged never reached a controller.
    let unplugged = trace_rx.try_iter().count();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after: Vec<Fired> = trace_rx.try_iter().collect();

    // Music uninterrupted: no underruns, and the position advanced ~3 s while unplugged.
    let rate = f64::from(player.status().track_rate.max(1));
    let advanced = (pos_unplugged - pos_before) / rate;
    assert_eq!(player.underruns(), 0, "player underran during the unplug");
    assert!(
        advanced > 2.9,
        "position advanced only {advanced:.2} s while unplugged"
    );

    // Lights resume on the right cue: the new controller holds the look the show has now.
    let st = player.status();
    let now_frame = st.position.unwrap_or(0.0);
    let track = &show.tracks[0];
    let events = convoy::show::schedule::resolve_beatmap(track);
    let (expected, cue) = look_at(&show, track, &events, now_frame, &vehicle);
    let want: LedState = expected.to_led(&show.vehicle_override(&vehicle));
    let got = dev2.lock().map(|d| d.strip().state()).expect("device");
    assert_eq!(
        got.pattern, want.pattern,
        "pattern after reconnect (cue {cue:?})"
    );
    assert_eq!(
        handle.status().cue.as_deref(),
        cue.and_then(|i| track.cues.get(i)).map(|c| c.name.as_str())
    );
    assert!(dev1
        .lock()
        .map(|d| !d.received().is_empty())
        .unwrap_or(false));

    // Timing, both connections: arrival at the controller minus the instant heard.
    let a1 = arrivals.lock().map(|v| v.clone()).unwrap_or_default();
    let a2 = arrivals2.lock().map(|v| v.clone()).unwrap_or_default();
    let mut errs = arrival_errors(&before_unplug, &a1);
    errs.extend(arrival_errors(&after, &a2));
    errs.sort_by(f64::total_cmp);
    let fired = before_unplug.len() + after.len();
    assert!(
        errs.len() * 10 >= fired * 8,
        "matched only {} of {fired} commands ({unplugged} more fired while unplugged)",
        errs.len()
    );
    let abs: Vec<f64> = {
        let mut v: Vec<f64> = errs.iter().map(|e| e.abs()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    println!(
        "show timing (pty, latency 1 ms): n={} of {fired} arrival-heard p50 {:+.2} ms, min {:+.2}, max {:+.2}; |err| p99 {:.2} ms; reconnect {reconnect_s:.2} s",
        errs.len(),
        percentile(&errs, 0.5),
        errs[0],
        errs[errs.len() - 1],
        percentile(&abs, 0.99),
    );
    handle.stop();
    drop(socat);
}

/// Feedback shows what was commanded (issue #20): a hue sent in whole degrees comes back
/// as exactly those degrees, not through the controller's byte (100 used to read 99).
#[tokio::test]
async fn a_commanded_hue_reads_back_exactly() {
    let (config, player, show) = demo_on_null_sink();
    let handle = ShowRunner::spawn(
        show,
        player,
        LedOutput::sim(60),
        VehicleInfo {
            id: "bike-1".into(),
            leader: true,
        },
        RunnerOptions::from_config(&config),
    );
    for degrees in [0u16, 1, 100, 181, 359] {
        handle
            .control(&convoy::control::Command::Hue { degrees })
            .expect("taken");
        let deadline = Instant::now() + Duration::from_secs(2);
        while handle.status().light.hue != degrees && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handle.status().light.hue, degrees);
    }
    handle.stop();
}
