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
