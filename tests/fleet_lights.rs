//! Light commands are fleet-wide and Lamport-ordered, and a bike can be told to lead: three
//! `convoy node` processes with `sync.role=auto` on loopback (as in `fleet_node`), each
//! with its own OSC control port. A pattern given to one follower reaches every bike; two
//! followers given different patterns at the same moment end up showing the same one; the
//! state survives a change of leader made with `/convoy/fleet/lead`, and giving the
//! override up hands the lead back to the best-ranked bike; `/go` releases the manual look
//! everywhere. With the demo show running on every bike, a manual cue given to one
//! follower lights every strip at the same moment (from the bikes' LED journals). The
//! status lines carry each bike's light state (`lights`) and its newest Lamport stamp.

use std::process::Command;
use std::time::{Duration, Instant};

use rosc::OscType;
use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::node::{auto_fleet, auto_sets, Node};

/// One bike on 127.0.0.(k+1), heartbeats to every bike in `fleet`, control port
/// `base + 10k + 3` on 127.0.0.1.
fn bike(name: &str, k: u16, base: u16, fleet: &[String], priority: u32) -> Node {
    bike_with(name, k, base, fleet, priority, &[], &["--track", "pilot"])
}

fn bike_with(
    name: &str,
    k: u16,
    base: u16,
    fleet: &[String],
    priority: u32,
    extra: &[String],
    args: &[&str],
) -> Node {
    let port = base + 10 * k;
    let mut sets = auto_sets(name, k, base, fleet);
    sets.extend([
        format!("fleet.priority={priority}"),
        "osc.enabled=true".to_string(),
        "osc.bind=127.0.0.1".to_string(),
        format!("osc.port={}", port + 3),
        "audio.sink=null".to_string(),
    ]);
    sets.extend(extra.iter().cloned());
    let mut cmd = Command::new(convoy_bin());
    for s in &sets {
        cmd.arg("--set").arg(s);
    }
    cmd.args(["--log", "warn", "node"]).args(args).args([
        "--status-every",
        "0.1",
        "--start-in",
        "0.5",
    ]);
    Node::launch(cmd, port + 3)
}

fn pattern(v: &Value) -> Option<&str> {
    v["lights"]["pattern"].as_str()
}

/// Wait until every bike's latest status satisfies `f`; returns how long it took.
fn all(bikes: &[&Node], what: &str, secs: f64, f: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    for b in bikes {
        let left = secs - start.elapsed().as_secs_f64();
        b.wait(what, left.max(0.0), &f);
    }
    start.elapsed()
}

#[test]
fn light_commands_reach_every_bike_and_concurrent_ones_converge() {
    let base = 20_000 + (std::process::id() % 200) as u16 * 50;
    let fleet = auto_fleet(0..3, base);
    let lead = bike("bike-l", 0, base, &fleet, 200);
    let a = bike("bike-a", 1, base, &fleet, 100);
    let b = bike("bike-b", 2, base, &fleet, 100);
    let bikes = [&lead, &a, &b];
    all(&bikes, "the fleet to form under bike-l", 20.0, |v| {
        v["fleet"]["leader"] == "bike-l"
            && (v["role"] == "leader" || v["timelines"].as_u64() > Some(0))
    });

    // One command to one follower: every bike shows it, stamped by that follower.
    a.send("/convoy/pattern", vec![OscType::String("strobe".into())]);
    let took = all(&bikes, "strobe everywhere", 5.0, |v| {
        pattern(v) == Some("strobe")
    });
    eprintln!("a follower's pattern reached every bike in {took:?}");
    let newest = |v: &Value| v["lights"]["newest"].as_str().map(str::to_string);
    let stamp = newest(&lead.last().expect("status")).expect("a stamp");
    assert!(stamp.ends_with("@bike-a"), "{stamp}");

    // An unknown pattern is refused where it was given and changes nothing anywhere.
    b.send("/convoy/pattern", vec![OscType::String("disco".into())]);
    std::thread::sleep(Duration::from_millis(400));
    for n in bikes {
        let v = n.last().expect("status");
        assert_eq!(
            (pattern(&v), newest(&v)),
            (Some("strobe"), Some(stamp.clone())),
            "{v}"
        );
    }

    // Two followers change the pattern at the same moment: both show their own at once,
    // then all three converge on one of the two, the same everywhere.
    a.send("/convoy/pattern", vec![OscType::String("chase".into())]);
    b.send("/convoy/pattern", vec![OscType::String("rainbow".into())]);
    let agreed = |v: &Value| matches!(pattern(v), Some("chase" | "rainbow"));
    all(&bikes, "a new pattern everywhere", 5.0, agreed);
    let end = Instant::now() + Duration::from_secs(5);
    let same = loop {
        let states: Vec<(Option<String>, Option<String>)> = bikes
            .iter()
            .map(|n| {
                let v = n.last().expect("status");
                (pattern(&v).map(str::to_string), newest(&v))
            })
            .collect();
        if states.iter().all(|s| *s == states[0]) {
            break states[0].clone();
        }
        assert!(Instant::now() < end, "no convergence: {states:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("concurrent patterns converged on {same:?}");
    // It stays converged.
    std::thread::sleep(Duration::from_millis(600));
    for n in bikes {
        let v = n.last().expect("status");
        assert_eq!((pattern(&v).map(str::to_string), newest(&v)), same, "{v}");
    }

    // bike-a takes the lead by command; the lights carry on under it.
    a.send("/convoy/fleet/lead", vec![]);
    let took = all(&bikes, "bike-a leading", 5.0, |v| {
        v["fleet"]["leader"] == "bike-a"
    });
    eprintln!("/convoy/fleet/lead: bike-a leads after {took:?}");
    a.wait("bike-a in the leader role", 3.0, |v| v["role"] == "leader");
    for n in bikes {
        let v = n.last().expect("status");
        assert_eq!(pattern(&v).map(str::to_string), same.0, "{v}");
    }
    b.send(
        "/convoy/color",
        vec![OscType::Int(255), OscType::Int(0), OscType::Int(64)],
    );
    all(&bikes, "the colour everywhere", 5.0, |v| {
        v["lights"]["color"] == serde_json::json!([255, 0, 64])
    });

    // Giving the override up hands the lead back to the best-ranked bike.
    a.send("/convoy/fleet/lead", vec![OscType::Int(0)]);
    let took = all(&bikes, "bike-l leading again", 5.0, |v| {
        v["fleet"]["leader"] == "bike-l"
    });
    eprintln!("released: bike-l leads again after {took:?}");
    for n in bikes {
        let v = n.last().expect("status");
        assert_eq!(v["lights"]["color"], serde_json::json!([255, 0, 64]), "{v}");
    }

    // `/go` on one bike hands every bike's lights back to the show.
    lead.send("/go", vec![]);
    all(&bikes, "the manual look released everywhere", 5.0, |v| {
        v["lights"]["pattern"].is_null() && v["lights"]["color"].is_null()
    });
}

#[test]
fn a_manual_cue_given_to_one_follower_lights_every_strip_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bikes 3..=5 of the same port block as the other test (which uses 0..=2).
    let base = 20_000 + (std::process::id() % 200) as u16 * 50;
    let fleet = auto_fleet(3..6, base);
    let show = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shows/demo.toml");
    let journal = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let sets = |name: &str| {
        vec![
            format!("show.file={}", show.display()),
            format!("show.journal={}", journal(name).display()),
            "led.output=sim".to_string(),
            "led.latency_ms=0".to_string(),
        ]
    };
    let names = ["cue-l", "cue-a", "cue-b"];
    let bikes: Vec<Node> = names
        .iter()
        .zip([200, 100, 100])
        .enumerate()
        .map(|(k, (name, prio))| {
            bike_with(name, k as u16 + 3, base, &fleet, prio, &sets(name), &[])
        })
        .collect();
    let refs: Vec<&Node> = bikes.iter().collect();
    all(&refs, "the demo show playing under cue-l", 20.0, |v| {
        v["fleet"]["leader"] == "cue-l"
            && v["playing"] == true
            && (v["role"] == "leader" || v["lock"]["locked"] == true)
    });
    // Well before the show's own strobe (bar 14), a follower fires it by hand.
    let sent = convoy::clock::mono_ns();
    bikes[1].send("/cue/strobe/start", vec![]);
    std::thread::sleep(Duration::from_millis(1500));
    drop(bikes);
    let mut at = Vec::new();
    for name in names {
        let lines = convoy::show::journal::read(&journal(name)).expect("journal");
        let first = lines
            .iter()
            .find(|h| {
                h.at_ns > sent
                    && serde_json::to_string(&h.command).is_ok_and(|c| c.contains("strobe"))
            })
            .unwrap_or_else(|| panic!("{name} never showed the manual strobe"));
        at.push(first.at_ns);
    }
    let spread = (at.iter().max().expect("3") - at.iter().min().expect("3")) as f64 / 1e6;
    let after = (at.iter().min().expect("3") - sent) as f64 / 1e6;
    eprintln!("manual cue: on every strip {after:.1} ms after it was given, spread {spread:.3} ms");
    assert!(
        after >= 100.0,
        "fired {after:.1} ms after it was given, before its lead time"
    );
    assert!(spread < 20.0, "strips {spread:.3} ms apart: {at:?}");
}
