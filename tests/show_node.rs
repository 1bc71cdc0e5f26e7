//! Shows inside `convoy node`: a leader and a follower (separate processes, with the
//! follower's clock 1.5 s off and 50 ppm fast) run the demo show on simulated strips and
//! journal what their strips showed; the follower's beats and cues, fired from fleet time,
//! land within a few milliseconds of the leader's. A solo node takes light commands through
//! its `NodeHandle` and reports the show in its snapshot. `convoy demo --seconds 8` runs
//! its three-bike fleet and prints its figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::Duration;

use convoy::config::Config;
use convoy::control::{Command as NodeCommand, NodeHandle, Origin, Snapshot};
use convoy::node::{self, NodeOptions};
use convoy::show::journal;

use crate::util::{convoy_bin, run_convoy};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn spawn_node(dir: &Path, name: &str, sets: &[String], args: &[&str]) -> Child {
    let mut cmd = Proc::new(convoy_bin());
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd.args(["--log", "warn", "node"]).args(args);
    cmd.env(
        "CONVOY_KEY",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(dir.join(format!("{name}.err"))).expect("log"),
    ))
    .spawn()
    .expect("convoy node starts")
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// |x| quantile, nearest rank.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Bounds on |follower − leader| for the same beat or cue. Each strip is lit by its own
/// runner when its own clock says the beat is heard: the runner sleeps to the deadline
/// with the OS's precision (tens of µs), the follower's SNTP estimate on loopback is good
/// to well under 0.1 ms, so the median stays under `P50_BOUND_MS`. What remains is a
/// process not being scheduled in time, which on a shared 2-core machine under load 11
/// was seen to delay single cues by up to 190 ms: so the tail is bounded by a share, not
/// a maximum — at least 80 % of the beats and cues within `MOST_BOUND_MS`.
const P50_BOUND_MS: f64 = 2.0;
const MOST_BOUND_MS: f64 = 5.0;

#[test]
fn a_leader_and_a_follower_fire_the_same_cues_on_fleet_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (osc, sntp) = (free_port(), free_port());
    let show = repo("shows/demo.toml");
    let common = |name: &str| {
        vec![
            format!("node.id={name}"),
            "audio.sink=virtual".to_string(),
            "sync.bind=127.0.0.1".to_string(),
            format!("sync.osc_port={osc}"),
            format!("sync.sntp_port={sntp}"),
            format!("show.file={}", show.display()),
            format!(
                "show.journal={}",
                dir.path().join(format!("{name}.jsonl")).display()
            ),
            "led.output=sim".to_string(),
            "led.latency_ms=0".to_string(),
            "fleet.enabled=false".to_string(),
        ]
    };
    let mut leader_sets = common("lead");
    leader_sets.push("sync.role=leader".into());
    let mut follower_sets = common("follow");
    follower_sets.extend([
        "sync.role=follower".to_string(),
        format!("sync.leader=127.0.0.1:{osc}"),
        "clock.offset_ms=1500".to_string(),
        "clock.ppm=50".to_string(),
        "audio.virtual.rate_error_ppm=80".to_string(),
    ]);
    let mut leader = spawn_node(
        dir.path(),
        "lead",
        &leader_sets,
        &["--start-in", "1.5", "--seconds", "9"],
    );
    let mut follower = spawn_node(dir.path(), "follow", &follower_sets, &["--seconds", "9"]);
    let lead_ok = leader.wait().expect("leader exits");
    let follow_ok = follower.wait().expect("follower exits");
    let err =
        |n: &str| std::fs::read_to_string(dir.path().join(format!("{n}.err"))).unwrap_or_default();
    assert!(lead_ok.success(), "leader: {}", err("lead"));
    assert!(follow_ok.success(), "follower: {}", err("follow"));

    let lead = journal::read(&dir.path().join("lead.jsonl")).expect("leader journal");
    let follow = journal::read(&dir.path().join("follow.jsonl")).expect("follower journal");
    let timed = |j: &[convoy::show::Handed]| j.iter().filter(|h| h.heard_ns.is_some()).count();
    // ~7 s of a 124 BPM song: 14 beats plus the intro's flashes and the drop.
    assert!(
        timed(&lead) >= 12,
        "leader showed {} beats/cues",
        timed(&lead)
    );
    let d = journal::agreement(&lead, &follow, 200_000_000);
    assert!(
        d.len() + 2 >= timed(&follow) && d.len() >= 12,
        "only {} of the follower's {} beats/cues match the leader's",
        d.len(),
        timed(&follow)
    );
    let drop = follow.iter().any(|h| h.cue.as_deref() == Some("drop"));
    assert!(drop, "the follower never showed the drop (bar 3)");
    let (p50, p80) = (quantile(&d, 0.5), quantile(&d, 0.8));
    eprintln!(
        "follower − leader lights: n {} p50 {p50:.3} ms p80 {p80:.3} ms p99 {:.3} ms max {:.3} ms",
        d.len(),
        quantile(&d, 0.99),
        quantile(&d, 1.0)
    );
    assert!(p50 < P50_BOUND_MS, "p50 {p50:.3} ms: {d:?}");
    assert!(p80 < MOST_BOUND_MS, "p80 {p80:.3} ms: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_node_with_a_show_takes_light_commands_and_reports_the_show() {
    let show = repo("shows/demo.toml");
    let config = Config::load(
        None,
        &[
            "audio.sink=null".into(),
            format!("show.file={}", show.display()),
            "led.output=sim".into(),
            "fleet.enabled=false".into(),
        ],
    )
    .expect("config");
    let (handle, inbox) = NodeHandle::channel(Snapshot::default());
    let node = tokio::spawn(node::run_with(
        config,
        NodeOptions {
            playlist: vec!["demo".into()],
            duration: Some(Duration::from_secs(6)),
            status_every: Duration::from_millis(50),
            start_in: Duration::from_millis(100),
            exit_at_end: false,
            console: false,
        },
        handle.clone(),
        inbox,
    ));
    let watch = handle.watch();
    let wait_for = |f: fn(&Snapshot) -> bool| {
        let mut w = watch.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(4), w.wait_for(f))
                .await
                .map(|r| r.map(|s| s.clone()).ok())
                .ok()
                .flatten()
        }
    };
    // The show is running: its name, the beat meter and the track's look.
    let snap = wait_for(|s| s.show.as_deref() == Some("demo") && s.meters.beat > 0).await;
    let snap = snap.expect("the snapshot reports the show and its beats");
    assert_eq!(snap.light.link, "sim");
    assert_eq!(snap.light.pattern, "pulse", "{snap:?}");

    let pattern = |name: &str| NodeCommand::Pattern { name: name.into() };
    assert_eq!(
        handle.execute(pattern("chase"), Origin::Internal).await,
        Ok(())
    );
    let held = wait_for(|s| s.light.pattern == "chase").await;
    assert!(held.is_some(), "the manual pattern reaches the lights");
    let refused = handle.execute(pattern("lava"), Origin::Internal).await;
    assert!(
        matches!(
            &refused,
            Err(convoy::control::HandleError::Refused(
                convoy::control::Refusal::UnknownPattern(_)
            ))
        ),
        "{refused:?}"
    );
    // `Go` hands the lights back to the show (the drop at 3.9 s makes it beatflash).
    assert_eq!(
        handle.execute(NodeCommand::Go, Origin::Internal).await,
        Ok(())
    );
    let back = wait_for(|s| s.light.pattern != "chase").await;
    assert!(back.is_some(), "Go returns to the show's look");
    // Transport commands still reach the node.
    assert_eq!(
        handle.execute(NodeCommand::Pause, Origin::Internal).await,
        Ok(())
    );
    drop(handle);
    node.await.expect("joins").expect("node ran");
}

#[test]
fn convoy_demo_runs_a_three_bike_fleet_and_prints_its_figures() {
    let (ok, out, err) = run_convoy(&["demo", "--seconds", "8"]);
    assert!(ok, "convoy demo failed: {err}\n{out}");
    // Not a terminal: every bike's cues as lines, then the figures.
    for bike in ["bike-1", "bike-2", "bike-3"] {
        let drop = |l: &&str| l.contains(bike) && l.contains("cue drop");
        assert!(out.lines().any(|l| drop(&l)), "{bike}: {out}");
    }
    for bike in ["bike-2", "bike-3"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(bike))
            .unwrap_or_else(|| panic!("no figures for {bike}: {out}"));
        // Lock time and playback offsets (or "never" and "-" on a machine too loaded to
        // lock in 8 s), then the lights' p50/p99/max and the matched count.
        let numbers: Vec<f64> = row
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(numbers.len() >= 3, "{row}");
        assert!(row.contains('/') && row.ends_with(')'), "{row}");
    }
    assert!(out.contains("fleet: lock"), "{out}");
}
