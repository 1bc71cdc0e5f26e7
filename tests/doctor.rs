//! `convoy doctor` (issue #27): one command that names what is wrong on a bike and how to
//! fix it, and exits non-zero when something is.

use crate::util::run_convoy;

/// A bike config with `extra` lines: the null sink, no OSC node to ask.
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("convoy.toml");
    let text = format!(
        "[audio]\nsink = \"null\"\n[osc]\nenabled = false\n[sync]\nrole = \"auto\"\n{extra}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn doctor_names_a_missing_key_and_a_missing_led_port_with_their_fixes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("fleet.key");
    let extra = format!(
        "[security]\nkey_file = \"{}\"\n[led]\noutput = \"serial\"\nport = \"/nonexistent/convoy-led\"\n",
        key.display()
    );
    let cfg = config(dir.path(), &extra);
    let c = cfg.to_str().expect("utf-8");
    let (ok, out, err) = run_convoy(&["--config", c, "doctor", "--listen", "0"]);
    assert!(!ok, "doctor passed a broken bike:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL  fleet key: ")
            && l.contains(&key.display().to_string())
            && l.contains("install.sh --key")),
        "{out}"
    );
    assert!(
        out.contains(
            "FAIL  LED: LED port /nonexistent/convoy-led missing: is the Arduino plugged in?"
        ),
        "{out}"
    );
    assert!(err.contains("2 problem(s) on this bike"), "{err}");

    // With a key (mode 600) and the simulated strip, nothing is wrong.
    let (ok, _, err) = run_convoy(&["tool", "keygen", key.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let extra = format!(
        "[security]\nkey_file = \"{}\"\n[led]\noutput = \"sim\"\n[fleet]\nbroadcast = [\"127.0.0.1:9\"]\n",
        key.display()
    );
    let cfg = config(dir.path(), &extra);
    let (ok, out, err) = run_convoy(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "doctor",
        "--listen",
        "0",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.lines().any(|l| l.starts_with("ok    fleet key: ")),
        "{out}"
    );
}

/// A free UDP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Issue #27: a bike with the wrong key heard the fleet fail authentication and said
/// nothing. Now each side warns once, naming the source and the fix.
#[test]
fn a_bike_with_another_key_warns_once_that_authentication_fails() {
    let (pa, pb) = (free_port(), free_port());
    let member = |id: &str, port: u16, peer: u16, key: &str| {
        std::process::Command::new(crate::util::convoy_bin())
            .args(["--set", &format!("node.id={id}")])
            .args(["--set", "sync.bind=127.0.0.1"])
            .args(["--set", &format!("fleet.port={port}")])
            .args(["--set", "fleet.mdns=false"])
            .args(["--set", &format!("fleet.broadcast=[\"127.0.0.1:{peer}\"]")])
            .args(["tool", "member", "--seconds", "3", "--every", "1"])
            .env("CONVOY_FLEET_KEY", key)
            .env("CONVOY_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("convoy tool member")
    };
    let a = member("a", pa, pb, &"11".repeat(32));
    let b = member("b", pb, pa, &"22".repeat(32));
    let err_a = String::from_utf8_lossy(&a.wait_with_output().expect("a").stderr).into_owned();
    let _ = b.wait_with_output();
    let warning = format!("3 fleet datagrams from 127.0.0.1:{pb} failed authentication: does this bike have the fleet key?");
    assert_eq!(err_a.matches(&warning).count(), 1, "{err_a}");
}
