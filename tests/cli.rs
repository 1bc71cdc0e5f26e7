//! The binary's front door: help, errors, config handling.

use crate::util::run_convoy as run;

#[test]
fn help_lists_the_commands() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for word in ["play", "config", "tool"] {
        assert!(out.contains(word), "help lacks {word}: {out}");
    }
}

#[test]
fn playing_a_non_audio_file_fails_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "not audio at all, just words\n".repeat(50)).expect("write");
    let (ok, _, err) = run(&["play", p.to_str().expect("utf8"), "--sink", "null"]);
    assert!(!ok);
    let line = err
        .lines()
        .rfind(|l| l.starts_with("convoy: error:"))
        .expect("error line");
    assert!(
        line.contains("notes.txt") && line.contains("not playable audio"),
        "{err}"
    );
    // Issue #27: symphonia's own "probe reached EOF" ERROR no longer doubles our line.
    assert!(!err.contains("probe reached EOF"), "{err}");
    assert_eq!(err.matches("ERROR").count(), 0, "{err}");
}

#[test]
fn plays_the_embedded_demo_on_the_null_sink() {
    let (ok, _, err) = run(&[
        "play",
        "--sink",
        "null",
        "--seconds",
        "1.2",
        "--progress",
        "false",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("played demo"), "{err}");
    assert!(err.contains("underruns 0"), "{err}");
}

#[test]
fn a_typo_in_a_config_file_names_key_and_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("bike.toml");
    std::fs::write(&p, "[audio]\nsamplerate = 44100\n").expect("write");
    let (ok, _, err) = run(&["--config", p.to_str().expect("utf8"), "config"]);
    assert!(!ok);
    assert!(
        err.contains("audio.samplerate") && err.contains("bike.toml"),
        "{err}"
    );
}

#[test]
fn config_prints_the_effective_values() {
    let (ok, out, err) = run(&[
        "--set",
        "audio.sink=virtual",
        "--set",
        "audio.virtual.rate_error_ppm=120",
        "config",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("sink = \"virtual\"") && out.contains("rate_error_ppm = 120.0"),
        "{out}"
    );
}

#[test]
fn a_start_past_the_end_fails_and_a_clamped_speed_is_said() {
    // issue 27: `play --start 100` on a short file exited 0 having played nothing.
    let (ok, _, err) = run(&["play", "demo", "--sink", "null", "--start", "100"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            "convoy: error: --start 100 is past the end of demo (30.97 s long): nothing to play"
        ),
        "{err}"
    );
    // issue 27: `--speed-ppm 5000000` was clamped to +1000 silently.
    let (ok, _, err) = run(&[
        "play",
        "--sink",
        "null",
        "--seconds",
        "0.3",
        "--progress",
        "false",
        "--speed-ppm",
        "5000000",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("--speed-ppm 5000000 is clamped to +1000 (audio.max_rate_ppm)"),
        "{err}"
    );
}

/// Issue #27: `convoy node` on a terminal printed a long JSON line every second and drew
/// no strip. Now, with the simulated strip, every frame is the strip in 24-bit colour
/// followed by the one human status line. `script` (util-linux) gives it a terminal.
#[test]
fn node_on_a_terminal_draws_the_strip_and_one_status_line() {
    let cmd = format!(
        "{} --set audio.sink=null --set led.output=sim node --track demo --seconds 2.5 --status-every 0.5",
        crate::util::convoy_bin().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("run convoy node under script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let frames: Vec<&str> = text
        .split("\r\x1b[2K")
        .filter(|f| f.contains("\x1b[38;2;"))
        .collect();
    assert!(
        frames.len() >= 10,
        "{} strip frames: {text:?}",
        frames.len()
    );
    assert!(
        frames.iter().any(|f| f.contains("playing demo")),
        "no status line after the strip: {text:?}"
    );
    assert!(
        !text.contains("\"mono_ns\""),
        "JSON on a terminal: {text:?}"
    );
}
