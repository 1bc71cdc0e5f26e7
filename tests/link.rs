//! Ableton Link interop (issue #24): `convoy tool link` against a real Link peer — the
//! `aalink` Python package (its wheel bundles Ableton's Link library), run as its own process
//! by `tools/link_peer.py`, never linked — in a network namespace whose loopback carries the
//! Link multicast group (`ip route add 224.0.0.0/4 dev lo`). Both processes print what they
//! see against `CLOCK_MONOTONIC`, so the beat each reports is compared at the same
//! monotonic instant. One run covers both directions: Convoy joins aalink's session and
//! follows its tempo changes and start/stop; aalink is killed (loss by ttl); a new aalink
//! joins Convoy's session and follows Convoy's tempo changes and start/stop; it quits
//! (ByeBye). Figures are printed (`--nocapture`); `CONVOY_LINK_SECONDS` sets each
//! direction's length (default 20; `tools/link_figures.sh` runs 60). Needs root, iproute2
//! and aalink: ignored under plain `cargo test`, run by tools/test.sh.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::convoy_bin;

/// The gated tests need aalink (`tools/setup.sh --test`); they are `#[ignore]`d under plain
/// `cargo test` and say what is missing when run anyway.
fn require_aalink() {
    if Command::new("python3")
        .args(["-c", "import aalink"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("aalink is not installed (tools/setup.sh --test)");
    }
}

struct Ns(String);

impl Ns {
    fn new() -> Result<Ns, String> {
        // One namespace per test: the tests of this file run in parallel in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("cvlink{}-{k}", std::process::id());
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = Ns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.0, "route", "add", "224.0.0.0/4", "dev", "lo"])?;
        Ok(ns)
    }

    fn spawn(&self, program: &str, args: &[&str]) -> Proc {
        self.spawn_env(program, args, &[])
    }

    /// [`Ns::spawn`] with environment variables (the fleet key).
    fn spawn_env(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if let Ok(v) = serde_json::from_str(&l) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Proc {
    fn say(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}");
            let _ = s.flush();
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The first status line (not a command echo) after `since` for which `f` holds.
    fn wait(&self, since: u64, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<u64> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(v) = self
                .lines()
                .iter()
                .find(|v| v.get("beat").is_some() && mono(v) >= since && f(v))
            {
                return Some(mono(v));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn did(&self, cmd: &str) -> u64 {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Some(v) = self
                .lines()
                .iter()
                .rev()
                .find(|v| v["did"].as_str() == Some(cmd))
            {
                return mono(v);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{cmd:?} not acknowledged");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn quit(&mut self) {
        self.say("quit");
        self.stdin = None;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn mono(v: &Value) -> u64 {
    v["mono_ns"].as_u64().unwrap_or(0)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Convoy's session beat at monotonic `at`, from its last status line at or before `at`
/// (the timeline and ghost intercept it printed define its beat at any instant).
fn convoy_beat(lines: &[Value], at: u64) -> Option<(f64, f64)> {
    let i = lines.partition_point(|v| mono(v) <= at);
    let v = lines[..i].iter().rev().find(|v| v.get("tl").is_some())?;
    let tl = v["tl"].as_array()?;
    let (mpb, bo, to) = (tl[0].as_f64()?, tl[1].as_f64()?, tl[2].as_f64()?);
    let ghost = at as f64 / 1e3 + v["intercept"].as_f64()?;
    Some((bo * 1e-6 + (ghost - to) / mpb, 60e6 / mpb))
}

/// The quantum both peers print their phase in.
const QUANTUM: f64 = 4.0;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Beat-phase error (ms, absolute) and tempo disagreement (BPM) between the aalink samples and
/// Convoy's beat at the same instants, over monotonic `[from, to)`, leaving out one beat
/// after each tempo change (`changes`).
fn agreement(
    aalink: &[Value],
    convoy: &[Value],
    from: u64,
    to: u64,
    changes: &[u64],
) -> (f64, f64, f64, usize) {
    let convoy: Vec<Value> = convoy
        .iter()
        .filter(|v| v.get("tl").is_some())
        .cloned()
        .collect();
    let mut errs = Vec::new();
    let mut tempo = 0.0f64;
    for v in aalink.iter().filter(|v| v.get("beat").is_some()) {
        let t = mono(v);
        if t < from || t >= to || changes.iter().any(|&c| t >= c && t < c + 1_500_000_000) {
            continue;
        }
        let Some((b, bpm)) = convoy_beat(&convoy, t) else {
            continue;
        };
        // aalink reports the app-visible beat, which Link may shift by whole quanta
        // against the session's beats (a joiner keeps its own bar count): compare the
        // phase in the quantum both use (4).
        let mut d = (f(v, "beat") - b).rem_euclid(QUANTUM);
        if d >= QUANTUM / 2.0 {
            d -= QUANTUM;
        }
        errs.push((d * 60e3 / bpm).abs());
        tempo = tempo.max((f(v, "tempo") - bpm).abs());
    }
    assert!(errs.len() > 100, "only {} samples", errs.len());
    let n = errs.len();
    let p50 = percentile(&mut errs, 0.5);
    let p99 = percentile(&mut errs, 0.99);
    (p50, p99, tempo, n)
}

fn seconds() -> u64 {
    std::env::var("CONVOY_LINK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn aalink(ns: &Ns) -> Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/link_peer.py");
    ns.spawn("python3", &[script, "--bpm", "120", "--every-ms", "10"])
}

/// A tempo change or transport change made on `from` reaches `to` (the first status line
/// of `to` that satisfies `f`): the delay, ms.
fn follows(to: &Proc, since: u64, f: impl Fn(&Value) -> bool) -> f64 {
    let at = to
        .wait(since, Duration::from_secs(5), f)
        .expect("the change never arrived");
    (at.saturating_sub(since)) as f64 / 1e6
}

/// How fast one peer followed a transport round the other drove, and when the tempo changed.
struct Round {
    tempo_at: u64,
    tempo_ms: f64,
    play_ms: f64,
    stop_ms: f64,
}

/// `driver` changes the tempo to `bpm`, plays and stops (a third, a sixth and a sixth of
/// `d` apart, a second after the join, then a third of `d` to settle); `follower` is timed
/// on each.
fn transport_round(driver: &mut Proc, follower: &Proc, bpm: u32, d: u64) -> Round {
    std::thread::sleep(Duration::from_nanos(d / 3 + 1_000_000_000));
    let tempo = format!("tempo {bpm}");
    driver.say(&tempo);
    let tempo_at = driver.did(&tempo);
    let tempo_ms = follows(follower, tempo_at, |v| {
        (f(v, "tempo") - f64::from(bpm)).abs() < 0.01
    });
    let mut step = |cmd: &str, playing: bool| {
        std::thread::sleep(Duration::from_nanos(d / 6));
        driver.say(cmd);
        let at = driver.did(cmd);
        follows(follower, at, |v| v["playing"].as_bool() == Some(playing))
    };
    let play_ms = step("play", true);
    let stop_ms = step("stop", false);
    std::thread::sleep(Duration::from_nanos(d / 3));
    Round {
        tempo_at,
        tempo_ms,
        play_ms,
        stop_ms,
    }
}

#[test]
#[ignore = "needs root, iproute2 and aalink (tools/setup.sh --test) for a network namespace"]
fn link_interop_with_aalink_both_directions() {
    require_aalink();
    let ns = Ns::new().expect("network namespace (root and iproute2)");
    let d = seconds() * 1_000_000_000;
    let bin = convoy_bin();
    let bin = bin.to_str().expect("path");

    // Follow: aalink founds the session, Convoy joins it and follows.
    let mut a = aalink(&ns);
    a.wait(0, Duration::from_secs(10), |_| true)
        .expect("aalink did not start");
    // Older by more than Link's ε (500 ms), so joining does not come down to the ids.
    std::thread::sleep(Duration::from_millis(2000));
    let mut c = ns.spawn(bin, &["tool", "link", "--bpm", "90", "--every-ms", "10"]);
    let c0 = c
        .wait(0, Duration::from_secs(10), |_| true)
        .expect("convoy did not start");
    let joined = c
        .wait(c0, Duration::from_secs(5), |v| {
            v["peers"].as_u64() == Some(1) && v["measured"].as_u64() >= Some(1)
        })
        .expect("convoy never joined aalink's session");
    let join_follow_ms = (joined - c0) as f64 / 1e6;
    let start = joined + 1_000_000_000;
    let Round {
        tempo_at: t1,
        tempo_ms: tempo_follow_ms,
        play_ms: play_follow_ms,
        stop_ms: stop_follow_ms,
    } = transport_round(&mut a, &c, 130, d);
    let (f50, f99, ftempo, fn_) = agreement(&a.lines(), &c.lines(), start, start + d, &[t1]);

    // Loss as Link specifies: aalink dies without a ByeBye; Convoy drops it after the 5 s
    // ttl (+ up to 1 s) and founds a fresh session.
    a.kill();
    let last = a.lines().iter().map(mono).max().unwrap_or(0);
    let lost = c
        .wait(last, Duration::from_secs(10), |v| {
            v["heard"].as_u64() == Some(0)
        })
        .expect("convoy never dropped the dead peer");
    let loss_s = (lost - last) as f64 / 1e9;

    // Lead: a new aalink joins Convoy's (older) session and follows Convoy.
    std::thread::sleep(Duration::from_millis(500));
    let mut b = aalink(&ns);
    let b0 = b
        .wait(0, Duration::from_secs(10), |_| true)
        .expect("aalink did not start");
    let bjoined = b
        .wait(b0, Duration::from_secs(5), |v| {
            v["peers"].as_u64() == Some(1) && (f(v, "tempo") - 130.0).abs() < 0.01
        })
        .expect("aalink never joined convoy's session");
    let join_lead_ms = (bjoined - b0) as f64 / 1e6;
    let start2 = bjoined + 1_000_000_000;
    let Round {
        tempo_at: t2,
        tempo_ms: tempo_lead_ms,
        play_ms: play_lead_ms,
        stop_ms: stop_lead_ms,
    } = transport_round(&mut c, &b, 100, d);
    let (l50, l99, ltempo, ln) = agreement(&b.lines(), &c.lines(), start2, start2 + d, &[t2]);

    // A ByeBye drops the peer at once.
    b.quit();
    let blast = b.lines().iter().map(mono).max().unwrap_or(0);
    let bye = c
        .wait(blast, Duration::from_secs(3), |v| {
            v["heard"].as_u64() == Some(0)
        })
        .expect("convoy never dropped the departed peer");
    let bye_ms = (bye.saturating_sub(blast)) as f64 / 1e6;
    c.quit();

    println!(
        "link follow ({} s, {fn_} samples): join {join_follow_ms:.0} ms; phase error p50 {f50:.3} ms p99 {f99:.3} ms; \
         tempo disagreement max {ftempo:.4} BPM; tempo change followed in {tempo_follow_ms:.1} ms, \
         play in {play_follow_ms:.1} ms, stop in {stop_follow_ms:.1} ms",
        seconds()
    );
    println!(
        "link lead ({} s, {ln} samples): aalink joined in {join_lead_ms:.0} ms; phase error p50 {l50:.3} ms p99 {l99:.3} ms; \
         tempo disagreement max {ltempo:.4} BPM; tempo change followed in {tempo_lead_ms:.1} ms, \
         play in {play_lead_ms:.1} ms, stop in {stop_lead_ms:.1} ms",
        seconds()
    );
    println!("link loss: silent peer dropped after {loss_s:.2} s (ttl 5 s + ≤ 1 s); ByeBye'd peer after {bye_ms:.0} ms");
    assert!(join_follow_ms < 1000.0 && join_lead_ms < 1000.0);
    assert!(ftempo < 0.01 && ltempo < 0.01);
    assert!(f99 < 1.0 && l99 < 1.0, "phase p99 {f99} / {l99} ms");
    // Within one beat (at the new tempo).
    assert!(tempo_follow_ms < 60e3 / 130.0 && tempo_lead_ms < 60e3 / 100.0);
    assert!(play_follow_ms < 1000.0 && stop_follow_ms < 1000.0);
    assert!(play_lead_ms < 1000.0 && stop_lead_ms < 1000.0);
    assert!((4.9..=6.5).contains(&loss_s), "{loss_s}");
    assert!(bye_ms < 500.0);
}

/// `convoy status` against a node's snapshot: runs `convoy status --addr … [--json]` in
/// the namespace, as a person would; `None` until the node answers.
fn status(ns: &Ns, port: u16, json: bool) -> Option<String> {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["netns", "exec", &ns.0];
    let bin = convoy_bin();
    args.push(bin.to_str().expect("path"));
    args.extend(["status", "--addr", &addr, "--timeout-ms", "500"]);
    if json {
        args.push("--json");
    }
    let out = Command::new("ip").args(&args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The node's status until `f` holds of its `link` entry (JSON), within `timeout`.
fn status_until(ns: &Ns, port: u16, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < end {
        if let Some(v) = status(ns, port, true).and_then(|t| serde_json::from_str(&t).ok()) {
            last = v;
            if f(&last["link"]) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the node's status never showed it; last:\n{last:#}");
}

#[test]
#[ignore = "needs root, iproute2 and aalink (tools/setup.sh --test) for a network namespace"]
fn convoy_status_shows_the_link_session_a_node_joined() {
    require_aalink();
    let ns = Ns::new().expect("network namespace (root and iproute2)");
    // aalink founds a session at 127.5 BPM; a node with `[link] enabled` (its own session
    // at 90 BPM until it hears an older one) joins it.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/link_peer.py");
    let mut a = ns.spawn("python3", &[script, "--bpm", "127.5", "--every-ms", "50"]);
    a.wait(0, Duration::from_secs(10), |_| true)
        .expect("aalink did not start");
    // Link joins the older session only when it is older by more than ε = 500 ms (the
    // lesser id breaks closer ties): 500 ms here left it to the ids on a quiet machine.
    std::thread::sleep(Duration::from_millis(2000));
    let port = 19_480;
    let bin = convoy_bin();
    let sets = [
        "node.id=linkbike".to_string(),
        "audio.sink=null".into(),
        "sync.role=solo".into(),
        "osc.enabled=true".into(),
        "osc.bind=127.0.0.1".into(),
        format!("osc.port={port}"),
        "link.enabled=true".into(),
        "link.mode=follow".into(),
        "link.bpm=90".into(),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(["--log", "warn", "node", "--status-every", "0.1"]);
    let mut node = ns.spawn(bin.to_str().expect("path"), &args);

    let v = status_until(&ns, port, Duration::from_secs(15), |l| {
        l["peers"].as_u64() == Some(1) && l["timeline"] == "follow"
    });
    let l = &v["link"];
    let aalink_tempo = a
        .lines()
        .iter()
        .rev()
        .find(|v| v.get("tempo").is_some())
        .map(|v| f(v, "tempo"))
        .expect("aalink's tempo");
    assert!((aalink_tempo - 127.5).abs() < 1e-6, "{aalink_tempo}");
    let tempo = f(l, "tempo_bpm");
    assert!(
        (tempo - aalink_tempo).abs() < 0.01,
        "status tempo {tempo}, aalink {aalink_tempo}"
    );
    assert_eq!(l["mode"], "follow");
    assert_eq!(l["heard"].as_u64(), Some(1), "{l}");
    assert_eq!(
        l["session"], l["timeline_from"],
        "led by aalink, the founder: {l}"
    );
    assert_ne!(l["session"], l["node"], "{l}");
    assert_eq!(l["playing"], false);
    let phase = f(l, "phase");
    assert!((0.0..4.0).contains(&phase), "{phase}");
    // aalink announces every 250 ms: heard well within a second.
    assert!(
        l["last_heard_ms"].as_u64().is_some_and(|ms| ms < 1000),
        "{l}"
    );

    // The table a person reads.
    let text = status(&ns, port, false).expect("convoy status");
    let line = text
        .lines()
        .find(|l| l.starts_with("link "))
        .unwrap_or_else(|| panic!("no link line in\n{text}"));
    let aalink_id = l["session"].as_str().unwrap_or("?").to_string();
    assert_eq!(l["peer_ids"], serde_json::json!([aalink_id]), "{l}");
    assert!(
        line.starts_with(&format!(
            "link      follow · 1 peer {aalink_id} · 127.50 BPM · beat "
        )),
        "{line}"
    );
    assert!(line.contains("/4 · stopped · led by "), "{line}");
    assert!(
        line.contains(l["session"].as_str().unwrap_or("?")),
        "{line}"
    );

    // The phase the status shows, at the instant it names, is aalink's at that instant.
    let err = phase_error_ms(&a.lines(), l).expect("aalink samples around the status");
    assert!(err < 1.0, "status phase {err:.3} ms off aalink's");

    // aalink starts its transport: the status shows the session playing.
    a.say("play");
    a.did("play");
    let v = status_until(&ns, port, Duration::from_secs(3), |l| l["playing"] == true);
    println!("link status (follow): {line}; phase vs aalink's at its instant {err:.3} ms");
    println!("after aalink's play: {}", v["link"]);
    node.kill();
    a.quit();
}

/// aalink's (beat, tempo) at monotonic `at`, from its sample nearest `at` (within 20 ms),
/// carried to `at` at its tempo.
fn aalink_at(lines: &[Value], at: u64) -> Option<(f64, f64)> {
    let v = lines
        .iter()
        .filter(|v| v.get("beat").is_some())
        .min_by_key(|v| mono(v).abs_diff(at))
        .filter(|v| mono(v).abs_diff(at) < 20_000_000)?;
    let bpm = f(v, "tempo");
    let dt = (at as f64 - mono(v) as f64) / 60e9;
    Some((f(v, "beat") + dt * bpm, bpm))
}

/// How far (ms) the phase a node's status shows (`link` object) is from aalink's at the
/// instant the status names (`at_mono_ns`), in the shared quantum.
fn phase_error_ms(aalink: &[Value], l: &Value) -> Option<f64> {
    let at = l["at_mono_ns"].as_u64()?;
    let (beat, bpm) = aalink_at(aalink, at)?;
    let mut d = (beat - f(l, "phase")).rem_euclid(QUANTUM);
    if d >= QUANTUM / 2.0 {
        d -= QUANTUM;
    }
    Some((d * 60e3 / bpm).abs())
}

#[test]
#[ignore = "needs root, iproute2 and aalink (tools/setup.sh --test) for a network namespace"]
fn aalink_follows_the_tempo_a_leading_node_shows() {
    require_aalink();
    let ns = Ns::new().expect("network namespace (root and iproute2)");
    // aalink founds a session at 90 BPM; a solo node plays the demo show (124 BPM, from its
    // beatmap) with `[link] mode = "lead"`: the music leads the session.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/link_peer.py");
    let mut a = ns.spawn("python3", &[script, "--bpm", "90", "--every-ms", "10"]);
    a.wait(0, Duration::from_secs(10), |_| true)
        .expect("aalink did not start");
    let port = 19_490;
    let show = concat!(env!("CARGO_MANIFEST_DIR"), "/shows/demo.toml");
    let sets = [
        "node.id=leadbike".to_string(),
        "audio.sink=null".into(),
        "sync.role=solo".into(),
        "osc.enabled=true".into(),
        "osc.bind=127.0.0.1".into(),
        format!("osc.port={port}"),
        format!("show.file={show}"),
        "link.enabled=true".into(),
        "link.mode=lead".into(),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(["--log", "warn", "node", "--status-every", "0.1"]);
    let bin = convoy_bin();
    let mut node = ns.spawn(bin.to_str().expect("path"), &args);

    let v = status_until(&ns, port, Duration::from_secs(20), |l| {
        l["timeline"] == "lead"
            && l["peers"].as_u64() == Some(1)
            && (f(l, "tempo_bpm") - 124.0).abs() < 0.5
    });
    let l = &v["link"];
    assert_eq!(l["mode"], "lead");
    assert_eq!(l["timeline_from"], l["node"], "{l}");
    assert_eq!(l["peer_ids"].as_array().map(Vec::len), Some(1), "{l}");
    assert_ne!(l["peer_ids"][0], l["node"], "{l}");
    assert!(
        l["at_fleet_ns"].as_i64().is_some(),
        "a solo node has fleet time: {l}"
    );
    // Over two seconds of status snapshots: aalink's tempo at each snapshot's instant is the
    // tempo the status shows, and so is its phase.
    let end = Instant::now() + Duration::from_secs(2);
    let (mut tempo_max, mut phases) = (0.0f64, Vec::new());
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(150));
        let Some(v) = status(&ns, port, true).and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        let l = &v["link"];
        let at = l["at_mono_ns"].as_u64().expect("at_mono_ns");
        // aalink prints every 10 ms: wait for its sample after the instant.
        std::thread::sleep(Duration::from_millis(30));
        let lines = a.lines();
        let (_, bpm) = aalink_at(&lines, at).expect("an aalink sample at the status instant");
        tempo_max = tempo_max.max((bpm - f(l, "tempo_bpm")).abs());
        phases.extend(phase_error_ms(&lines, l));
    }
    assert!(phases.len() >= 5, "only {} snapshots", phases.len());
    phases.sort_by(f64::total_cmp);
    let (median, worst) = (phases[phases.len() / 2], phases[phases.len() - 1]);
    println!(
        "link status (lead): {} snapshots; aalink's tempo vs the status's max {tempo_max:.4} BPM, \
         phase median {median:.3} ms, max {worst:.3} ms ({phases:.3?})",
        phases.len()
    );
    assert!(
        tempo_max < 0.01,
        "aalink's tempo {tempo_max} BPM off the status's"
    );
    // The status and aalink agree on the phase. A single snapshot may catch the moment the
    // leading node re-publishes its timeline (the music moved > 2 ms from the session: on a
    // loaded CI machine the live plane's beat can) before aalink has heard it (Link sends a
    // change at most every 50 ms), hence the looser bound on the worst one (one run of the
    // whole suite at load ~10 saw 7.1 ms once in 11 snapshots, the rest < 1 ms).
    assert!(
        median < 1.0,
        "aalink's phase {median:.3} ms off the status's (median)"
    );
    assert!(
        worst < 25.0,
        "aalink's phase {worst:.3} ms off the status's (worst)"
    );
    node.kill();
    a.quit();
}

/// The instants (monotonic ns) of aalink's whole beats with their numbers, from its
/// samples: each sample carries its beat on to the next whole one at its tempo; the median
/// of those predictions is the beat's instant.
fn aalink_beats(lines: &[Value]) -> Vec<(i64, u64)> {
    let mut by: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
    for v in lines.iter().filter(|v| v.get("beat").is_some()) {
        let (b, bpm) = (f(v, "beat"), f(v, "tempo"));
        if !b.is_finite() || bpm.is_nan() || bpm <= 0.0 {
            continue;
        }
        let k = b.ceil();
        by.entry(k as i64)
            .or_default()
            .push(mono(v) as f64 + (k - b) * 60e9 / bpm);
    }
    by.into_iter()
        .map(|(k, mut t)| (k, percentile(&mut t, 0.5) as u64))
        .collect()
}

/// One bike's flashes against aalink's beats over monotonic `[from, to)`: (absolute errors
/// in ms, flashes whose beat in the bar is not aalink's, aalink beats without a flash).
fn flashes_vs_link(
    journal: &[convoy::show::runner::Handed],
    beats: &[(i64, u64)],
    from: u64,
    to: u64,
) -> (Vec<f64>, usize, usize) {
    use convoy::led::protocol::Command as Led;
    let (mut errs, mut wrong_bar, mut hit) = (Vec::new(), 0, std::collections::HashSet::new());
    for h in journal.iter().filter(|h| (from..to).contains(&h.at_ns)) {
        let Led::Beat { beat_in_bar, .. } = h.command else {
            continue;
        };
        let i = beats.partition_point(|&(_, t)| t < h.at_ns);
        let Some(&(k, t)) = [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|i| beats.get(i))
            .min_by_key(|(_, t)| t.abs_diff(h.at_ns))
        else {
            continue;
        };
        errs.push(t.abs_diff(h.at_ns) as f64 / 1e6);
        hit.insert(k);
        if i64::from(beat_in_bar) != k.rem_euclid(QUANTUM as i64) {
            wrong_bar += 1;
        }
    }
    let missed = beats
        .iter()
        .filter(|(k, t)| (from + 50_000_000..to - 50_000_000).contains(t) && !hit.contains(k))
        .count();
    (errs, wrong_bar, missed)
}

#[test]
#[ignore = "needs root, iproute2 and aalink (tools/setup.sh --test) for a network namespace"]
fn a_fleet_in_follow_mode_flashes_on_the_link_beat() {
    use crate::util::node::{auto_fleet, auto_sets, KEY};
    require_aalink();
    let ns = Ns::new().expect("network namespace (root and iproute2)");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = seconds() * 1_000_000_000;
    // aalink: the Link session, 120 BPM, playing.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/link_peer.py");
    let mut a = ns.spawn("python3", &[script, "--bpm", "120", "--every-ms", "10"]);
    a.wait(0, Duration::from_secs(10), |_| true)
        .expect("aalink did not start");
    a.say("play");
    a.did("play");
    // Three bikes on the namespace's loopback, playing nothing: the leader follows Link;
    // a follower with its own Link peer; a follower with Link off.
    let base = 21_000;
    let fleet = auto_fleet(0..3, base);
    let bikes = [
        ("lk-lead", 200, true),
        ("lk-own", 100, true),
        ("lk-none", 100, false),
    ];
    let journal = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let bin = convoy_bin();
    let mut procs = Vec::new();
    for (k, (name, priority, link)) in bikes.iter().enumerate() {
        let mut sets = auto_sets(name, k as u16, base, &fleet);
        sets.extend([
            format!("fleet.priority={priority}"),
            "audio.sink=null".to_string(),
            "led.output=sim".to_string(),
            "led.latency_ms=0".to_string(),
            format!("show.journal={}", journal(name).display()),
            format!("link.enabled={link}"),
            "link.mode=follow".to_string(),
        ]);
        let mut args: Vec<&str> = Vec::new();
        for s in &sets {
            args.extend(["--set", s]);
        }
        args.extend(["--log", "warn", "node", "--status-every", "0.2"]);
        procs.push(ns.spawn_env(bin.to_str().expect("path"), &args, &[("CONVOY_KEY", KEY)]));
    }
    // Wait until lk-lead leads and both followers have its fleet time and its timeline
    // (idle: nothing plays, but it carries the Link grid).
    let end = Instant::now() + Duration::from_secs(30);
    let ready = |p: &Proc, follower: bool| {
        p.lines()
            .iter()
            .rev()
            .find(|v| v.get("role").is_some())
            .is_some_and(|v| {
                v["fleet"]["leader"] == "lk-lead"
                    && (!follower
                        || (v["fleet_ns"].is_number() && v["timelines"].as_u64() > Some(0)))
            })
    };
    while !(ready(&procs[0], false) && ready(&procs[1], true) && ready(&procs[2], true)) {
        assert!(
            Instant::now() < end,
            "the fleet never formed under lk-lead: {:?}",
            procs
                .iter()
                .map(|p| p.lines().last().cloned())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the followers' clock filters settle, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let from = convoy::clock::mono_ns();
    std::thread::sleep(Duration::from_nanos(d));
    let to = convoy::clock::mono_ns();
    std::thread::sleep(Duration::from_millis(300));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(procs);
    let beats = aalink_beats(&a.lines());
    a.quit();
    let expected = beats.iter().filter(|(_, t)| (from..to).contains(t)).count();
    assert!(
        expected as u64 >= seconds() * 2 - 2,
        "aalink printed {expected} beats"
    );
    let mut report = Vec::new();
    for (name, _, link) in bikes {
        let lines = convoy::show::journal::read(&journal(name)).expect("journal");
        let (mut errs, wrong_bar, missed) = flashes_vs_link(&lines, &beats, from, to);
        assert!(
            errs.len() + 2 >= expected,
            "{name}: {} flashes for {expected} Link beats",
            errs.len()
        );
        let n = errs.len();
        let (p50, p99) = (percentile(&mut errs, 0.5), percentile(&mut errs, 0.99));
        let max = errs.last().copied().unwrap_or(f64::NAN);
        report.push(format!(
            "{name}{}: {n} flashes / {expected} beats, {missed} missed, {wrong_bar} off the bar; \
             |flash − Link beat| p50 {p50:.3} ms p99 {p99:.3} ms max {max:.3} ms",
            if link { "" } else { " (Link off)" }
        ));
        assert!(missed <= 1 && wrong_bar == 0, "{}", report.join("\n"));
        // The demo's light agreement is p99 < 1 ms on a quiet machine. Here, on a loaded
        // 2-core CI machine, a single flash can be written late when the runner's timer
        // fires late (one of 40 at 12 ms in a run beside a cross build): the bulk is held
        // to the demo's figure, the worst to the field target (LED sync < 50 ms).
        let p90 = percentile(&mut errs, 0.9);
        assert!(p50 < 1.0 && p90 < 5.0, "{}", report.join("\n"));
        assert!(max < 50.0, "{}", report.join("\n"));
    }
    println!(
        "link fleet ({} s, load {}): {}",
        seconds(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        report.join("; ")
    );
}
