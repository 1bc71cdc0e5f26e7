//! The real cpal/ALSA output path, on a machine without a sound card: `tools/test.sh` starts
//! a PulseAudio null sink (ALSA's default routed to Pulse) and runs this ignored test
//! (`--include-ignored`); it plays a tone through `--sink cpal` while `parec` records the sink's monitor,
//! and checks the recording holds that tone.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{convoy_bin, rms, zero_crossing_hz};

#[test]
#[ignore = "needs a PulseAudio null sink and parec (tools/test.sh starts them)"]
fn cpal_output_plays_into_the_pulseaudio_null_sink() {
    let _slot = crate::util::realtime_slot();
    let dir = tempfile::tempdir().expect("tmp");
    let wav = dir.path().join("tone.wav");
    let gen = Command::new(convoy_bin())
        .args([
            "tool",
            "gen",
            "sine:1000",
            wav.to_str().expect("utf8"),
            "--seconds",
            "6",
        ])
        .status()
        .expect("gen");
    assert!(gen.success());
    let monitor =
        std::env::var("CONVOY_PULSE_MONITOR").unwrap_or_else(|_| "convoy_null.monitor".into());
    let capture = dir.path().join("capture.raw");
    let mut rec = Command::new("parec")
        .args([
            "-d",
            &monitor,
            "--format=float32le",
            "--rate=48000",
            "--channels=2",
            "--raw",
        ])
        .stdout(Stdio::from(
            std::fs::File::create(&capture).expect("capture file"),
        ))
        .spawn()
        .expect("parec (pulseaudio-utils) runs");
    std::thread::sleep(Duration::from_millis(300));
    let play = Command::new(convoy_bin())
        .args([
            "play",
            wav.to_str().expect("utf8"),
            "--sink",
            "cpal",
            // A null sink nobody reads at low latency stalls a new stream 0.4–2 s after its
            // first three callbacks (tools/pulse-null.sh keeps it paced, a PulseAudio run
            // elsewhere may not), and parec drops what it buffered when killed; 5 s leaves
            // seconds of tone either way.
            "--seconds",
            "5",
            "--progress",
            "false",
        ])
        .output()
        .expect("play");
    let _ = rec.kill();
    let _ = rec.wait();
    let captured = std::fs::read(&capture).expect("capture");
    let stderr = String::from_utf8_lossy(&play.stderr);
    assert!(play.status.success(), "{stderr}");
    assert!(stderr.contains("cpal sink"), "did not use cpal: {stderr}");
    let samples: Vec<f32> = captured
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let left: Vec<f32> = samples.iter().step_by(2).copied().collect();
    // Keep the loud part (the capture starts before and ends after playback).
    let loud: Vec<f32> = left
        .chunks(4_800)
        .filter(|c| rms(c) > 0.1)
        .flatten()
        .copied()
        .collect();
    assert!(
        loud.len() > 48_000,
        "only {} loud samples captured; convoy play said: {stderr}",
        loud.len()
    );
    // The pitch is measured on the longest stretch without a gap: PulseAudio's ALSA plugin
    // fails a fresh stream with an I/O error now and then, and the 20–60 ms until the sink
    // has reopened it would read as missing cycles. That stretch must still be seconds long.
    let run = longest_unbroken(&left);
    assert!(
        run.len() > 48_000 + 9_600,
        "the longest unbroken tone is {} samples; convoy play said: {stderr}",
        run.len()
    );
    let hz = zero_crossing_hz(&run[4_800..run.len() - 4_800], 48_000.0);
    let level = rms(&loud);
    eprintln!(
        "captured {:.2} s of tone ({:.2} s unbroken): {hz:.2} Hz, rms {level:.3}",
        loud.len() as f64 / 48_000.0,
        run.len() as f64 / 48_000.0
    );
    assert!((hz - 1000.0).abs() < 1.0, "{hz} Hz");
    assert!((level - 0.3536).abs() < 0.03, "rms {level}");
}

/// The longest stretch of `x` without a gap (1 ms or more below 0.01: a 1 kHz sine at
/// 0.5 passes that level for under 7 µs at each crossing).
fn longest_unbroken(x: &[f32]) -> &[f32] {
    const GAP: usize = 48;
    let (mut best, mut start, mut quiet) = (0..0, 0, 0);
    for (i, v) in x.iter().enumerate() {
        if v.abs() < 0.01 {
            quiet += 1;
            if quiet >= GAP {
                start = i + 1;
            }
        } else {
            quiet = 0;
            if i + 1 - start > best.len() {
                best = start..i + 1;
            }
        }
    }
    &x[best]
}
