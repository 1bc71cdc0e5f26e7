//! The first ride (issue #27): three bikes installed with `tools/pi/install.sh` into
//! staging roots, started in network namespaces from the installed files only — the
//! installed `convoy.toml` and `convoy.env`, the fleet key where docs/pi.md puts it
//! (`/etc/convoy/fleet.key`, copied to the other bikes with `--key`), one host name for
//! all three (flashed from one image) but a machine id each, no default route — and bike
//! 0's LED port on a pty running the real firmware in simavr. They elect one leader, play,
//! light the strip, with unique ids; the bikes without an Arduino say so once.
//! Needs root (namespaces, `/etc/netns`) and simavr: ignored under plain `cargo test`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::convoy_bin;
use crate::util::netns::Lab;

/// simrun with the firmware, its UART on a pty linked at `link`, and the latest UART
/// count it printed: `[rx lines, rx frames, tx lines, tx frames]` (tools/arduino/simrun.c).
struct Firmware(Child, Arc<Mutex<[u64; 4]>>);

impl Firmware {
    /// What crossed the simulated UART so far: received from Convoy, sent back (acks).
    fn uart(&self) -> [u64; 4] {
        *self.1.lock().expect("uart counts")
    }
}

impl Drop for Firmware {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn firmware(link: &Path) -> Firmware {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = root.join("tools/arduino/build");
    let status = Command::new("bash")
        .arg(root.join("tools/arduino/build.sh"))
        .env("CONVOY_FW_BUILD_DIR", &build)
        .status()
        .expect("run tools/arduino/build.sh");
    assert!(
        status.success(),
        "the firmware did not build ({status}): tools/arduino/build.sh --install-deps"
    );
    let mut child = Command::new(build.join("simrun"))
        .arg(build.join("convoy_led.elf"))
        .arg(link)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn simrun");
    let out = child.stdout.take().expect("simrun stdout");
    let mut lines = BufReader::new(out).lines();
    let pty = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("PTY "));
    let uart = Arc::new(Mutex::new([0u64; 4]));
    let counts = uart.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let n: Vec<u64> = line
                .strip_prefix("UART rx ")
                .map(|rest| rest.split(' ').filter_map(|w| w.parse().ok()).collect())
                .unwrap_or_default();
            if let [rl, rf, tl, tf] = n[..] {
                *counts.lock().expect("uart counts") = [rl, rf, tl, tf];
            }
        }
    });
    assert!(pty.is_some() && link.exists(), "simrun made no pty");
    Firmware(child, uart)
}

/// One bike's node: its status lines and its log.
struct Bike {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
    config: PathBuf,
    ns: String,
}

impl Bike {
    fn last(&self) -> Option<Value> {
        self.lines.lock().ok()?.last().cloned()
    }

    fn wait(&self, what: &str, secs: f64, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(v) = self.last().filter(|v| f(v)) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "{}: timed out waiting for {what}; last status {:?}\nlog:\n{}",
                self.ns,
                self.last(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `convoy status --json` in the bike's namespace (its control port, its secret).
    fn status(&self) -> Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(convoy_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["status", "--json"])
            .output()
            .expect("convoy status");
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }
}

impl Drop for Bike {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn install(root: &Path, key: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pi/install.sh"))
        .arg("--binary")
        .arg(convoy_bin())
        .arg("--root")
        .arg(root);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    let out = cmd.output().expect("install.sh runs");
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `CONVOY_NODE_ARGS` of an installed convoy.env, split on blanks.
fn node_args(root: &Path) -> Vec<String> {
    let env = std::fs::read_to_string(root.join("etc/convoy/convoy.env")).expect("convoy.env");
    let line = env
        .lines()
        .find_map(|l| l.strip_prefix("CONVOY_NODE_ARGS="))
        .expect("CONVOY_NODE_ARGS");
    line.trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The per-namespace files `ip netns exec` mounts over /etc: one image's host name, a
/// machine id of its own. Removed on drop.
struct NetnsEtc(Vec<PathBuf>);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
#[ignore = "needs root (netns) and simavr"]
fn first_ride_three_installed_bikes_elect_one_leader_play_and_light_the_strip() {
    let _slot = crate::util::realtime_slot();
    let lab = Lab::new(3).expect("create the namespace lab (root and iproute2)");
    let dir = tempfile::tempdir().expect("temp dir");

    // Bike 0 is installed first (its key is generated), the others get a copy.
    let roots: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("bike{i}")))
        .collect();
    let first = install(&roots[0], None);
    assert!(first.contains("web PIN: "), "{first}");
    let key = roots[0].join("etc/convoy/fleet.key");
    for r in &roots[1..] {
        install(r, Some(&key));
    }

    let mut etc = NetnsEtc(Vec::new());
    for (i, h) in lab.hosts.iter().enumerate() {
        let d = PathBuf::from("/etc/netns").join(&h.ns);
        std::fs::create_dir_all(&d).expect("/etc/netns/NS");
        std::fs::write(d.join("hostname"), "raspberrypi\n").expect("hostname");
        std::fs::write(
            d.join("machine-id"),
            format!("{:032x}\n", 0xb1ce_0000u128 + i as u128),
        )
        .expect("machine-id");
        etc.0.push(d);
    }

    let led = dir.path().join("convoy-led");
    let fw = firmware(&led);

    let bikes: Vec<Bike> = lab
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let root = &roots[i];
            let config = root.join("etc/convoy/convoy.toml");
            let mut args = node_args(root);
            if let Some(p) = args.iter().position(|a| a == "--status-every") {
                args.drain(p..(p + 2).min(args.len()));
            }
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &h.ns])
                .arg(convoy_bin())
                .arg("--config")
                .arg(&config)
                // What systemd's LoadCredential= does: the key, readable by the service.
                .arg("--set")
                .arg(format!("security.key_file={}", key.display()))
                // No speaker in CI.
                .args(["--set", "audio.sink=null"]);
            if i == 0 {
                // The Arduino's udev link, here the simulated one.
                cmd.arg("--set").arg(format!("led.port={}", led.display()));
            }
            cmd.arg("node")
                .args(&args)
                .args(["--status-every", "0.2"])
                .env(
                    "CONVOY_LOG",
                    std::env::var("FIRST_RIDE_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .env_remove("CONVOY_KEY")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("start convoy node");
            let lines = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::new(Mutex::new(String::new()));
            let (out, err) = (child.stdout.take(), child.stderr.take());
            let sink = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out.expect("stdout"))
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Ok(v) = serde_json::from_str::<Value>(&l) {
                        sink.lock().expect("lines").push(v);
                    }
                }
            });
            let sink = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(err.expect("stderr"))
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut s = sink.lock().expect("log");
                    s.push_str(&l);
                    s.push('\n');
                }
            });
            Bike {
                child,
                lines,
                log,
                config,
                ns: h.ns.clone(),
            }
        })
        .collect();

    // One leader, everyone playing, everyone agreeing on it.
    let leader = |v: &Value| v["fleet"]["leader"].as_str().map(String::from);
    for b in &bikes {
        b.wait("a leader and playing", 40.0, |v| {
            leader(v).is_some() && v["playing"] == true
        });
    }
    // The fleet settles (a better-ranked bike that started later takes over): every bike
    // names the same leader, exactly one leads, the others are locked, all play.
    let end = Instant::now() + Duration::from_secs(40);
    let settled = loop {
        let last: Vec<Value> = bikes.iter().filter_map(Bike::last).collect();
        let lead = last.first().and_then(leader);
        let agreed = last.len() == bikes.len()
            && lead.is_some()
            && last
                .iter()
                .all(|v| leader(v) == lead && v["playing"] == true)
            && last.iter().filter(|v| v["role"] == "leader").count() == 1
            && last
                .iter()
                .all(|v| v["role"] == "leader" || v["lock"]["locked"] == true);
        if agreed {
            break last;
        }
        assert!(
            Instant::now() < end,
            "the fleet did not settle on one playing leader: {:?}\nlogs:\n{}",
            last.iter()
                .map(|v| (
                    v["node"].clone(),
                    v["role"].clone(),
                    v["playing"].clone(),
                    v["fleet"].clone()
                ))
                .collect::<Vec<_>>(),
            bikes.iter().map(Bike::log).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for v in &settled {
        println!(
            "first ride: {} role {} leader {} position {:.1} s heartbeats sent {}",
            v["node"].as_str().unwrap_or("?"),
            v["role"].as_str().unwrap_or("?"),
            leader(v).unwrap_or_default(),
            v["position_s"].as_f64().unwrap_or(f64::NAN),
            v["fleet"]["heartbeats_sent"]
        );
        assert!(v["fleet"]["heartbeats_sent"].as_u64() > Some(0), "{v}");
    }

    // Unique ids, from one host name and three machine ids.
    let statuses: Vec<Value> = bikes.iter().map(Bike::status).collect();
    let mut ids: Vec<String> = statuses
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect();
    println!("first ride: ids {ids:?}");
    for id in &ids {
        assert!(id.starts_with("raspberrypi-"), "{id}");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids collide: {ids:?}");

    // Bike 0 drives the firmware: handshake done, the default look on the strip.
    let light = &statuses[0]["light"];
    println!("first ride: bike 0 light {light}");
    assert_eq!(light["link"], "connected", "{light}");
    // ... and keeps driving it while the music plays: the firmware's UART receives lines
    // or frames from Convoy (beats, levels) and acknowledges them, second after second.
    let before = fw.uart();
    std::thread::sleep(Duration::from_secs(3));
    let after = fw.uart();
    println!("first ride: firmware UART over 3 s: {before:?} -> {after:?} (rx lines, rx frames, tx lines, tx frames)");
    let received = (after[0] + after[1]).saturating_sub(before[0] + before[1]);
    let acked = (after[2] + after[3]).saturating_sub(before[2] + before[3]);
    assert!(
        received >= 3 && acked >= 1,
        "the Arduino was not driven while playing: {before:?} -> {after:?}"
    );
    // The others have no Arduino: one warning with the fix, no silence.
    for b in &bikes[1..] {
        let log = b.log();
        assert_eq!(
            log.matches("LED port /dev/convoy-led missing: is the Arduino plugged in?")
                .count(),
            1,
            "{}:\n{log}",
            b.ns
        );
    }
    // No default route, and heartbeats still flow (the interface's own broadcast).
    for b in &bikes {
        let log = b.log();
        assert!(!log.contains("ENETUNREACH"), "{}:\n{log}", b.ns);
        assert!(!log.contains("duplicate vehicle id"), "{}:\n{log}", b.ns);
    }
    drop(etc);
}

/// Issue #27: without a route, every heartbeat send failed with no word at the default
/// log level. Now one warning naming the destination, the cause and the fix.
#[test]
#[ignore = "needs root (netns)"]
fn a_fleet_broadcast_without_a_route_warns_once() {
    let lab = Lab::new(1).expect("create the namespace lab (root and iproute2)");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.hosts[0].ns])
        .arg(convoy_bin())
        .args(["--set", "node.id=lonely"])
        .args(["--set", "fleet.mdns=false"])
        .args(["--set", "fleet.broadcast=[\"10.99.0.255\"]"])
        .args(["tool", "member", "--seconds", "2", "--every", "1"])
        .env("CONVOY_FLEET_KEY", "33".repeat(32))
        .env("CONVOY_LOG", "warn")
        .output()
        .expect("convoy tool member");
    let err = String::from_utf8_lossy(&out.stderr);
    let warning = "fleet broadcast to 10.99.0.255:9125 failed: ENETUNREACH — no route";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
}
