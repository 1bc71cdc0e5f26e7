//! `convoy analyze`: beatmaps for good files, one-line errors for bad ones, deterministic
//! bytes, and the embedded demo song analysed against its known beats.

use std::path::Path;
use std::process::Command;

use convoy::analysis::Beatmap;
use convoy::rig::eval;

use crate::util::{convoy_bin, fixture};

fn analyze(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    crate::util::run_convoy(&all)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Eight seconds of the demo song as a 16-bit WAV in `dir`.
fn demo_wav(dir: &Path) -> std::path::PathBuf {
    let wav = dir.join("song.wav");
    let ok = Command::new(convoy_bin())
        .args(["tool", "gen", "demo", s(&wav), "--seconds", "8", "--pcm16"])
        .status()
        .expect("runs")
        .success();
    assert!(ok);
    wav
}

#[test]
fn good_files_get_beatmaps_and_a_corrupt_one_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let song = demo_wav(dir.path());
    let broken = dir.path().join("broken.wav");
    std::fs::write(
        &broken,
        b"RIFF\x10\x00\x00\x00WAVEjunk, not a wave file at all",
    )
    .expect("write");
    let flac = fixture("sine440_44k.flac");
    let out = dir.path().join("maps");
    let (ok, stdout, stderr) =
        analyze(&[s(&song), s(&broken), s(&flac), "-o", s(&out), "--jobs", "2"]);
    assert!(!ok, "a failed file must make the exit status non-zero");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("convoy: error:"))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors[0].contains("broken.wav") && errors[0].contains("not playable audio"),
        "{stderr}"
    );
    assert!(errors[1].contains("1 of 3 files"), "{stderr}");
    for stem in ["song.wav", "sine440_44k.flac"] {
        let text = std::fs::read_to_string(out.join(format!("{stem}.beatmap.json")))
            .unwrap_or_else(|e| panic!("{stem}: {e}\n{stderr}"));
        let map = Beatmap::from_json(&text).expect("valid beatmap");
        assert_eq!(map.track.content_hash.len(), 64);
    }
    assert!(!out.join("broken.wav.beatmap.json").exists());
    let names: Vec<_> = std::fs::read_dir(&out)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    assert!(
        stdout.contains("song.wav") && stdout.contains("FAILED"),
        "{stdout}"
    );
}

#[test]
fn output_is_byte_identical_across_runs_and_job_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let song = demo_wav(dir.path());
    let flac = fixture("sine440_44k.flac");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (ok, _, err) = analyze(&[s(&song), s(&flac), "-o", s(&a), "--jobs", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = analyze(&[s(&flac), s(&song), "-o", s(&b), "--jobs", "2"]);
    assert!(ok, "{err}");
    for name in ["song.wav.beatmap.json", "sine440_44k.flac.beatmap.json"] {
        let x = std::fs::read(a.join(name)).expect("first run");
        let y = std::fs::read(b.join(name)).expect("second run");
        assert!(x == y, "{name} differs between runs");
    }
    // A third run finds the beatmaps up to date; --force rewrites them identically.
    let (ok, out, err) = analyze(&[s(&song), "-o", s(&a)]);
    assert!(ok && out.contains("up to date"), "{out}{err}");
    let (ok, _, err) = analyze(&[s(&song), "-o", s(&a), "--force"]);
    assert!(ok, "{err}");
    let x = std::fs::read(a.join("song.wav.beatmap.json")).expect("forced run");
    let y = std::fs::read(b.join("song.wav.beatmap.json")).expect("second run");
    assert!(x == y);
}

#[test]
fn a_beatmap_of_other_content_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("maps");
    let flac = fixture("sine440_44k.flac");
    let (ok, _, err) = analyze(&[s(&flac), "-o", s(&out)]);
    assert!(ok, "{err}");
    let ogg_dir = dir.path().join("other");
    std::fs::create_dir(&ogg_dir).expect("mkdir");
    let other = ogg_dir.join("sine440_44k.flac");
    std::fs::copy(fixture("sine440_44k.ogg"), &other).expect("copy");
    let (ok, _, err) = analyze(&[s(&other), "-o", s(&out)]);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, _, err) = analyze(&[s(&other), "-o", s(&out), "--force"]);
    assert!(ok, "{err}");
}

#[test]
fn the_demo_song_is_124_bpm_with_its_beats_found() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ok, stdout, err) = analyze(&["demo", "-o", s(dir.path())]);
    assert!(ok, "{err}");
    assert!(stdout.contains("demo"), "{stdout}");
    let text = std::fs::read_to_string(dir.path().join("demo.beatmap.json")).expect("beatmap");
    let map = Beatmap::from_json(&text).expect("valid");
    assert!(
        (map.tempo_bpm - 124.0).abs() <= 0.5,
        "tempo {}",
        map.tempo_bpm
    );
    let period = 60.0 / convoy::audio::synth::DEMO_BPM;
    let truth: Vec<f64> = (0..64).map(|k| k as f64 * period).collect();
    let scores = eval::evaluate(&truth, &map.beats);
    assert!(scores.f_measure > 0.95, "{scores:?}");
    assert_eq!(map.beats_per_bar, 4);
    // The beatmap the demo show ships is what the analyser writes today.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("beatmaps/demo.beatmap.json");
    let shipped = std::fs::read_to_string(&shipped).expect("shipped demo beatmap");
    assert!(
        shipped == text,
        "beatmaps/demo.beatmap.json is stale: regenerate it with `convoy analyze demo -o beatmaps/`"
    );
}

/// issue 26: a WAV whose header promises 52.9 s but holds 2.8 s was analysed without a
/// word. It is analysed as far as it goes, with a warning naming both lengths.
#[test]
fn a_truncated_wav_is_analysed_with_a_warning_naming_what_is_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sr, promised, present) = (44_100u32, 2_332_890u32, 123_480u32);
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + promised * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&sr.to_le_bytes());
    wav.extend_from_slice(&(sr * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(promised * 2).to_le_bytes());
    for i in 0..present {
        let x = (std::f32::consts::TAU * 440.0 * i as f32 / sr as f32).sin();
        wav.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
    }
    let file = dir.path().join("cut.wav");
    std::fs::write(&file, &wav).expect("write");
    let out = dir.path().join("maps");
    let (ok, _, stderr) = analyze(&[s(&file), "-o", s(&out)]);
    assert!(ok, "{stderr}");
    let warning = format!(
        "convoy: warning: {}: truncated: the header promises 52.9 s (2332890 frames) but \
         the file holds 2.8 s (123480 frames); analysed the 2.8 s present",
        s(&file)
    );
    assert!(stderr.lines().any(|l| l == warning), "{stderr}");
    let map = Beatmap::from_json(
        &std::fs::read_to_string(out.join("cut.wav.beatmap.json")).expect("beatmap"),
    )
    .expect("valid beatmap");
    assert_eq!(map.track.num_samples, u64::from(present));
    // A whole file gets no truncation warning.
    let (ok, _, stderr) = analyze(&[s(&fixture("sine440_44k.wav")), "-o", s(&out)]);
    assert!(ok && !stderr.contains("truncated"), "{stderr}");
}

/// Issue #27: a steady sine was reported as 60.8 BPM with nothing to say it meant
/// nothing. Beatmaps carry a confidence; the sine's is low and `analyze` says its beats
/// are a guess, the demo song's is high and draws no warning.
#[test]
fn a_beatmap_says_how_sure_its_beats_are() {
    let dir = tempfile::tempdir().expect("tmp");
    let song = demo_wav(dir.path());
    let out = dir.path().join("maps");
    let sine = fixture("sine440_44k.wav");
    let (ok, stdout, stderr) = analyze(&[s(&song), s(&sine), "-o", s(&out), "--jobs", "1"]);
    assert!(ok, "{stderr}");
    let load = |name: &str| {
        Beatmap::from_json(&std::fs::read_to_string(out.join(name)).expect("beatmap"))
            .expect("valid beatmap")
    };
    let song_map = load("song.wav.beatmap.json");
    let sine_map = load("sine440_44k.wav.beatmap.json");
    let song_c = song_map.confidence.expect("a confidence");
    let sine_c = sine_map.confidence.expect("a confidence");
    assert!(song_c >= 0.6, "demo song confidence {song_c}");
    assert!(
        sine_c < convoy::analysis::LOW_CONFIDENCE,
        "sine confidence {sine_c}"
    );
    let warned = |file: &Path| {
        stderr.lines().any(|l| {
            l.starts_with(&format!("convoy: warning: {}: ", s(file)))
                && (l.contains("are a guess") || l.contains("no beat found"))
        })
    };
    assert!(warned(&sine), "{stderr}");
    assert!(!warned(&song), "{stderr}");
    assert!(stdout.contains("conf"), "{stdout}");
}
