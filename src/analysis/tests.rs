//! Property tests of the analysis module on synthetic signals with known truth.

use super::synth::{self, DrumSpec, SynthClip};
use super::*;
use crate::rig::eval;

const SR: u32 = 44_100;

fn drum(pattern: synth::DrumPattern, bpm: f64, intro: bool) -> SynthClip {
    let bpb = pattern.beats_per_bar;
    let bar_s = bpb as f64 * 60.0 / bpm;
    synth::drum_track(&DrumSpec {
        pattern,
        bpm,
        bars: (32.0 / bar_s).round() as u32,
        intro_bars: if intro {
            ((4.0 / bar_s).round() as u32).max(1)
        } else {
            0
        },
        tempo_change: None,
        sample_rate: SR,
        seed: 7,
    })
}

fn live_beats(samples: &[f32], sr: u32, block: usize) -> Vec<Beat> {
    let mut live = LiveAnalyzer::new(sr, &AnalysisParams::default());
    let mut out = Vec::new();
    for b in samples.chunks(block.max(1)) {
        for ev in live.process(b) {
            if let Event::Beat(beat) = ev {
                out.push(beat);
            }
        }
    }
    out
}

fn secs(beats: &[Beat], sr: u32) -> Vec<f64> {
    beats
        .iter()
        .map(|b| b.sample_pos as f64 / sr as f64)
        .collect()
}

fn last_frame(samples: &[f32]) -> BandFrame {
    let mut an = BandAnalyzer::new(SR, StftConfig::default(), &BandConfig::default());
    let mut frames = Vec::new();
    an.process(samples, &mut frames);
    *frames.last().expect("frames")
}

#[test]
fn sine_100hz_lands_in_low_band_and_5khz_in_high_band() {
    let low = last_frame(&synth::sine(100.0, 1.0, SR, 0.5));
    assert!(low.raw_db3[0] > low.raw_db3[1] + 30.0, "{:?}", low.raw_db3);
    assert!(low.raw_db3[0] > low.raw_db3[2] + 30.0, "{:?}", low.raw_db3);
    assert!(low.bands3[0] > 0.9 && low.bands3[1] < 0.2 && low.bands3[2] < 0.2);
    let high = last_frame(&synth::sine(5000.0, 1.0, SR, 0.5));
    assert!(
        high.raw_db3[2] > high.raw_db3[1] + 30.0,
        "{:?}",
        high.raw_db3
    );
    assert!(
        high.raw_db3[2] > high.raw_db3[0] + 30.0,
        "{:?}",
        high.raw_db3
    );
    assert!(high.bands3[2] > 0.9 && high.bands3[0] < 0.2);
    // A full-scale-ish sine reads near its level in dB (0.5 -> about -6 dB).
    assert!((low.raw_db3[0] - (-6.02)).abs() < 0.5, "{:?}", low.raw_db3);
}

#[test]
fn log_bands_peak_at_the_sine_frequency() {
    let f = last_frame(&synth::sine(1000.0, 1.0, SR, 0.5));
    let lay = BandLayout::default();
    let n = f.n_log;
    let (imax, _) = f
        .log_bands()
        .iter()
        .enumerate()
        .fold((0, -1.0f32), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    let edge = |i: usize| lay.min_hz * (lay.max_hz / lay.min_hz).powf(i as f32 / n as f32);
    assert!(
        edge(imax) <= 1000.0 && 1000.0 < edge(imax + 1),
        "band {imax}"
    );
}

#[test]
fn agc_normalises_loudness_and_gate_silences() {
    let loud = last_frame(&synth::sine(300.0, 3.0, SR, 0.9));
    let quiet = last_frame(&synth::sine(300.0, 3.0, SR, 0.009));
    assert!((loud.bands3[1] - quiet.bands3[1]).abs() < 0.05);
    assert!(quiet.raw_db3[1] < loud.raw_db3[1] - 35.0);
    let silent = last_frame(&vec![0.0; SR as usize]);
    assert_eq!(silent.bands3, [0.0; 3]);
    assert!(silent.log_bands().iter().all(|v| *v == 0.0));
}

#[test]
fn frames_carry_hop_positions_independent_of_block_size() {
    let x = synth::sine(440.0, 0.5, SR, 0.3);
    let run = |block: usize| {
        let mut an = BandAnalyzer::new(SR, StftConfig::default(), &BandConfig::default());
        let mut frames = Vec::new();
        for b in x.chunks(block) {
            an.process(b, &mut frames);
        }
        frames
    };
    let a = run(x.len());
    let b = run(37);
    assert_eq!(a, b);
    for (k, f) in a.iter().enumerate() {
        assert_eq!(f.sample_pos, (k * 512) as u64);
    }
}

#[test]
fn onsets_of_a_click_track_are_found_on_time() {
    let clip = synth::click_track(128.0, 10.0, SR);
    let mut live = LiveAnalyzer::new(SR, &AnalysisParams::default());
    let mut onsets = Vec::new();
    for b in clip.samples.chunks(1024) {
        for ev in live.process(b) {
            if let Event::Onset(o) = ev {
                onsets.push(o.sample_pos as f64 / SR as f64);
            }
        }
    }
    assert_eq!(onsets.len(), clip.beats.len());
    for (o, t) in onsets.iter().zip(&clip.beats) {
        assert!((o - t).abs() < 0.015, "onset {o} vs click {t}");
    }
}

#[test]
fn click_track_128_bpm() {
    let clip = synth::click_track(128.0, 30.0, SR);
    let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    assert!((map.tempo_bpm - 128.0).abs() < 0.5, "{}", map.tempo_bpm);
    assert!(eval::f_measure(&clip.beats, &map.beats, 0.07) > 0.99);
    // The raw estimator alone is within 1 %.
    let mut stft = bands::Stft::new(StftConfig::default());
    let mut det = onset::OnsetDetector::new(SR, stft.n_bins(), 512, &OnsetConfig::default());
    let mut env = Vec::new();
    stft.push(&clip.samples, |p, m| env.push(det.process(p, m).strength));
    let e = tempo::estimate_tempo(&env, SR as f32 / 512.0, &TempoConfig::default());
    assert!((e.bpm - 128.0).abs() < 1.28, "{}", e.bpm);
    assert!(e.confidence > 0.5);
}

fn check_drum_clip(clip: &SynthClip, intro: bool) {
    let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    let f = eval::f_measure(&clip.beats, &map.beats, 0.07);
    assert!(f > 0.9, "{}: beat F {f}", clip.name);
    assert!(
        (map.tempo_bpm / clip.bpm - 1.0).abs() < 0.01,
        "{}: tempo {}",
        clip.name,
        map.tempo_bpm
    );
    assert_eq!(map.beats_per_bar, clip.beats_per_bar, "{}", clip.name);
    let df = eval::f_measure(&clip.downbeats, &map.downbeats, 0.07);
    assert!(df > 0.9, "{}: downbeat F {df}", clip.name);
    if intro {
        let s = &map.sections[0];
        let beat = 60.0 / clip.bpm;
        assert_eq!(s.label, "intro", "{}: {:?}", clip.name, map.sections);
        assert!(
            (s.end_s - clip.intro_end_s).abs() < beat,
            "{}: intro ends {} vs {}",
            clip.name,
            s.end_s,
            clip.intro_end_s
        );
        assert!(s.energy < 0.3);
        assert!(map.sections.iter().skip(1).all(|x| x.label != "intro"));
    }
    map.validate().expect("valid beatmap");
}

#[test]
fn drum_patterns_with_quiet_intro_track_beats_and_downbeats() {
    for (p, bpm) in [
        (synth::pattern_hiphop(), 90.0),
        (synth::pattern_rock(), 120.0),
        (synth::pattern_house(), 150.0),
        (synth::pattern_dnb(), 174.0),
    ] {
        check_drum_clip(&drum(p, bpm, true), true);
    }
}

#[test]
fn syncopated_pattern_and_waltz() {
    check_drum_clip(&drum(synth::pattern_funk(), 120.0, false), false);
    check_drum_clip(&drum(synth::pattern_waltz(), 100.0, false), false);
}

#[test]
fn tempo_change_120_to_140_is_followed() {
    let clip = synth::drum_track(&DrumSpec {
        pattern: synth::pattern_rock(),
        bpm: 120.0,
        bars: 28,
        intro_bars: 0,
        tempo_change: Some((14, 140.0)),
        sample_rate: SR,
        seed: 3,
    });
    let change_s = 14.0 * 2.0;
    let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    let f = eval::f_measure(&clip.beats, &map.beats, 0.07);
    assert!(f > 0.9, "F {f}");
    assert!(
        (map.tempo_at(10.0) - 120.0).abs() < 2.0,
        "{:?}",
        map.tempo_curve
    );
    assert!(
        (map.tempo_at(45.0) - 140.0).abs() < 2.0,
        "{:?}",
        map.tempo_curve
    );
    // Every beat after the change is within 70 ms of the truth.
    let late: Vec<f64> = map.beats_in(change_s + 1.0..50.0).to_vec();
    let errs = eval::phase_errors(&clip.beats, &late);
    assert!(eval::percentile(&errs, 100.0) < 0.07);
    // The live tracker follows too, within about 8 s of the change.
    let lb = secs(&live_beats(&clip.samples, SR, 1024), SR);
    let after: Vec<f64> = lb
        .iter()
        .copied()
        .filter(|&t| t > change_s + 8.0 && t < 51.5)
        .collect();
    assert!(after.len() > 20);
    let errs = eval::phase_errors(&clip.beats, &after);
    assert!(eval::percentile(&errs, 95.0) < 0.03);
}

#[test]
fn live_tracker_locks_phase_within_8_seconds() {
    let clips = [
        synth::click_track(128.0, 30.0, SR),
        drum(synth::pattern_rock(), 120.0, true),
        drum(synth::pattern_dnb(), 174.0, true),
        drum(synth::pattern_funk(), 120.0, false),
    ];
    for clip in &clips {
        let beats = live_beats(&clip.samples, SR, 1000);
        let t = secs(&beats, SR);
        let last = clip.beats.last().copied().unwrap_or(0.0) + 0.1;
        let after8: Vec<f64> = t
            .iter()
            .copied()
            .filter(|&x| x >= 8.0 && x <= last)
            .collect();
        let errs = eval::phase_errors(&clip.beats, &after8);
        let p95 = eval::percentile(&errs, 95.0);
        assert!(p95 < 0.03, "{}: p95 {p95}", clip.name);
        let expected = clip.beats.iter().filter(|&&b| b >= 8.0).count();
        assert!(after8.len() + 1 >= expected && after8.len() <= expected + 1);
        let bpm = beats.last().map(|b| b.bpm).unwrap_or(0.0) as f64;
        assert!((bpm / clip.bpm - 1.0).abs() < 0.01, "{}: {bpm}", clip.name);
        assert!(beats.iter().all(|b| (0.0..=1.0).contains(&b.confidence)));
    }
}

#[test]
fn live_beats_do_not_depend_on_block_size() {
    let clip = drum(synth::pattern_house(), 150.0, false);
    let a = live_beats(&clip.samples, SR, 64);
    let b = live_beats(&clip.samples, SR, 4096);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn beatmap_is_deterministic_round_trips_and_answers_lookups() {
    let clip = drum(synth::pattern_rock(), 120.0, true);
    let params = AnalysisParams {
        content_hash: "sha256:test".into(),
        ..AnalysisParams::default()
    };
    let a = analyze_offline(&clip.samples, SR, &params).to_json();
    let b = analyze_offline(&clip.samples, SR, &params).to_json();
    assert_eq!(a, b);
    let map = Beatmap::from_json(&a).expect("loads");
    assert_eq!(map.to_json(), a);
    assert_eq!(map.format, "convoy-beatmap");
    assert_eq!(map.version, 1);
    assert_eq!(map.track.content_hash, "sha256:test");
    // 3 bands at 20 Hz covering the track.
    assert_eq!(map.envelopes.values.len(), 3);
    let want = (map.track.duration_s * 20.0).ceil() as usize;
    assert_eq!(map.envelopes.values[0].len(), want);
    // Bar 1 beat 1 is the first downbeat; bar 2 beat 3 is 6 beats later.
    assert_eq!(map.beat_time(1, 1), map.downbeats.first().copied());
    let b1 = map.bar(1).expect("bar 1").first_beat as usize;
    assert_eq!(map.beat_time(2, 3), map.beats.get(b1 + 6).copied());
    assert_eq!(map.beat_time(1, 0), None);
    assert_eq!(map.beat_time(1, 5), None);
    assert_eq!(map.beat_time(10_000, 1), None);
    let in_range = map.beats_in(10.25..12.25);
    assert_eq!(in_range.len(), 4);
    assert!(in_range.iter().all(|&t| (10.25..12.25).contains(&t)));
    assert!(map.section_by_label("intro").is_some());
    assert!(map.section_by_label("nope").is_none());
    // The drum part is louder in every band than the hat-only intro.
    let intro = map.envelope_at(1.0);
    let main = map.envelope_at(20.0);
    assert!(main[0] > intro[0]);
}

#[test]
fn loader_rejects_bad_input() {
    let clip = synth::click_track(120.0, 8.0, SR);
    let good = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    let json = good.to_json();
    let v2 = json.replacen("\"version\":1", "\"version\":2", 1);
    assert!(matches!(
        Beatmap::from_json(&v2),
        Err(BeatmapError::UnsupportedVersion { found: 2, .. })
    ));
    let wrong = json.replacen("convoy-beatmap", "other", 1);
    assert!(matches!(
        Beatmap::from_json(&wrong),
        Err(BeatmapError::WrongFormat(_))
    ));
    assert!(matches!(
        Beatmap::from_json("{not json"),
        Err(BeatmapError::Json(_))
    ));
    assert!(Beatmap::from_json("{\"format\":\"convoy-beatmap\",\"version\":1}").is_err());
    let mut m = good.clone();
    m.beats.reverse();
    assert!(matches!(
        Beatmap::from_json(&m.to_json()),
        Err(BeatmapError::Invalid(_))
    ));
    let mut m = good.clone();
    m.envelopes.values[1].pop();
    assert!(Beatmap::from_json(&m.to_json()).is_err());
    let mut m = good.clone();
    m.downbeats.push(m.track.duration_s + 0.5);
    assert!(Beatmap::from_json(&m.to_json()).is_err());
    let mut m = good;
    m.sections[0].energy = 2.0;
    let err = Beatmap::from_json(&m.to_json()).unwrap_err();
    assert!(err.to_string().contains("energy"));
}

#[test]
fn degenerate_input_never_panics() {
    let p = AnalysisParams::default();
    let mut noise = Vec::with_capacity(SR as usize * 3);
    let mut s = 1u32;
    for _ in 0..SR * 3 {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5);
    }
    let cases: Vec<(Vec<f32>, u32)> = vec![
        (vec![], SR),
        (vec![0.1; 10], SR),
        (vec![0.0; SR as usize * 5], SR),
        (vec![f32::NAN; 50_000], SR),
        (vec![f32::INFINITY; 50_000], SR),
        (
            (0..100_000)
                .map(|i| if i % 7 == 0 { f32::NAN } else { 0.3 })
                .collect(),
            SR,
        ),
        (vec![1e30; 20_000], SR),
        (noise.clone(), SR),
        (synth::sine(100.0, 2.0, 8000, 0.5), 8000),
        (synth::sine(100.0, 2.0, 96_000, 0.5), 96_000),
        (vec![0.5; 1000], 0),
        (vec![0.5; 1000], 1),
    ];
    for (x, sr) in &cases {
        let map = analyze_offline(x, *sr, &p);
        map.validate().expect("valid");
        Beatmap::from_json(&map.to_json()).expect("round trip");
        let mut live = LiveAnalyzer::new(*sr, &p);
        for b in x.chunks(777) {
            for ev in live.process(b) {
                if let Event::Bands(f) = ev {
                    assert!(f
                        .bands3
                        .iter()
                        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
                }
            }
        }
        let _ = live.process(&[]).count();
    }
    // Silence has no beats.
    assert!(analyze_offline(&vec![0.0; SR as usize * 5], SR, &p)
        .beats
        .is_empty());
    // Odd configurations are sanitised rather than rejected.
    let odd = AnalysisParams {
        stft: StftConfig {
            fft_size: 0,
            hop: 0,
        },
        tempo: TempoConfig {
            min_bpm: f32::NAN,
            max_bpm: -1.0,
            ..TempoConfig::default()
        },
        envelope_rate_hz: 0.0,
        ..AnalysisParams::default()
    };
    let clip = synth::click_track(120.0, 3.0, SR);
    analyze_offline(&clip.samples, SR, &odd)
        .validate()
        .expect("valid");
    let mut live = LiveAnalyzer::new(SR, &odd);
    let _ = live.process(&clip.samples).count();
}

/// An onset envelope at `fr` frames/s with a pulse of height `h(k)` at every
/// `k`-th multiple of the period of `bpm`.
fn pulses(fr: f32, seconds: f32, bpm: f32, h: impl Fn(usize) -> f32) -> Vec<f32> {
    let n = (fr * seconds) as usize;
    let p = 60.0 * fr / bpm;
    let mut v = vec![0.01f32; n];
    let mut k = 0usize;
    while (k as f32 * p).round() < n as f32 {
        let i = (k as f32 * p).round() as usize;
        v[i] += h(k);
        k += 1;
    }
    v
}

/// Like [`pulses`], every pulse of height `h`, shifted by `offset` periods.
fn pulses_at(fr: f32, seconds: f32, bpm: f32, offset: f32, h: f32) -> Vec<f32> {
    let n = (fr * seconds) as usize;
    let p = 60.0 * fr / bpm;
    let mut v = vec![0.0f32; n];
    let mut k = 0usize;
    while ((k as f32 + offset) * p).round() < n as f32 {
        v[((k as f32 + offset) * p).round() as usize] += h;
        k += 1;
    }
    v
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

#[test]
fn metrical_level_goes_up_to_an_even_walking_bass() {
    // Swing at 180: the full band is accented on every other beat (ride and
    // hi-hat on 2 and 4, at 90 BPM), the bass plays every beat evenly.
    let fr = 44_100.0 / 512.0;
    let accents = pulses(fr, 30.0, 90.0, |_| 1.0);
    let bass = pulses(fr, 30.0, 180.0, |_| 0.6);
    let env = add(&accents, &bass);
    let cfg = TempoConfig::default();
    let bpm = tempo::resolve_level(&env, &bass, fr, 90.0, &cfg);
    assert!((bpm - 180.0).abs() < 0.5, "{bpm}");
    // Without the low band, the full-band rule keeps the accented level.
    let silent = vec![0.0f32; env.len()];
    let bpm = tempo::resolve_level(&env, &silent, fr, 90.0, &cfg);
    assert!((bpm - 90.0).abs() < 0.5, "{bpm}");
}

#[test]
fn metrical_level_goes_down_when_only_the_treble_plays_eighths() {
    // A 72 BPM ballad: piano eighths (144 BPM) alternating strong/weak, kick
    // and bass only on the beat.
    let fr = 44_100.0 / 512.0;
    let piano = pulses(fr, 40.0, 144.0, |k| if k % 2 == 0 { 1.0 } else { 0.4 });
    let bass = pulses(fr, 40.0, 72.0, |_| 0.8);
    let env = add(&piano, &bass);
    let bpm = tempo::resolve_level(&env, &bass, fr, 144.0, &TempoConfig::default());
    assert!((bpm - 72.0).abs() < 0.5, "{bpm}");
}

#[test]
fn metrical_level_keeps_a_backbeat_with_eighth_hats() {
    // Rock at 120: kick on 1 and 3 only (uneven low band at 120), snare on 2
    // and 4, hats subdivide every beat, so the beat stays at 120 rather than
    // 60 (from either octave).
    let fr = 44_100.0 / 512.0;
    let kick = pulses(fr, 30.0, 120.0, |k| if k % 2 == 0 { 1.0 } else { 0.1 });
    let snare = pulses(fr, 30.0, 120.0, |k| if k % 2 == 1 { 0.8 } else { 0.0 });
    let hats = pulses(fr, 30.0, 240.0, |_| 0.5);
    let env = add(&add(&kick, &snare), &hats);
    for start in [60.0, 120.0] {
        let bpm = tempo::resolve_level(&env, &kick, fr, start, &TempoConfig::default());
        assert!((bpm - 120.0).abs() < 0.5, "from {start}: {bpm}");
    }
}

#[test]
fn metrical_level_is_the_same_from_either_octave() {
    // Issue #26: a 176 BPM drum & bass break (kick on 1 and the "and" of 2,
    // snare on 2 and 4, eighth hats) came out at 88 offline, where the tempo
    // estimate started at 88, and at 176 live, where it started at 176. The
    // decision now depends only on the pair of levels.
    let fr = 44_100.0 / 512.0;
    let secs = 30.0;
    let kick = add(
        &pulses(fr, secs, 44.0, |_| 1.0),
        &pulses_at(fr, secs, 44.0, 1.5 / 4.0, 0.8),
    );
    let snare = pulses_at(fr, secs, 88.0, 0.5, 1.0);
    let hats = pulses(fr, secs, 352.0, |k| if k % 2 == 0 { 0.3 } else { 0.2 });
    let bass = pulses(fr, secs, 22.0, |_| 0.6);
    let low = add(&kick, &bass);
    let env = add(&add(&low, &snare), &hats);
    let cfg = TempoConfig::default();
    for start in [88.0, 176.0] {
        let bpm = tempo::resolve_level(&env, &low, fr, start, &cfg);
        assert!((bpm - 176.0).abs() < 0.5, "from {start}: {bpm}");
    }
    // A 66 BPM ballad (eighth arpeggio, kick and bass on the beat) stays at
    // 66 from either octave.
    let piano = pulses(fr, secs, 132.0, |k| if k % 2 == 0 { 1.0 } else { 0.5 });
    let bass = pulses(fr, secs, 66.0, |_| 0.8);
    let env = add(&piano, &bass);
    for start in [66.0, 132.0] {
        let bpm = tempo::resolve_level(&env, &bass, fr, start, &cfg);
        assert!((bpm - 66.0).abs() < 0.5, "from {start}: {bpm}");
    }
}

#[test]
fn metrical_level_comes_down_from_eighths_over_a_recordings_background() {
    // An 84 BPM waltz as a recording gives it (issue #26: a ballroom waltz
    // and a country clip ran at 170 and 167 live): bass on 1, chords on 2 and
    // 3, quiet fills on some eighths, and reverb and sustained notes keeping
    // the onset strength well above zero between the onsets. The live
    // estimate lands on the eighth-note level, 168; the beat is 84.
    let fr = 44_100.0 / 512.0;
    let secs = 24.0;
    let floor = |v: Vec<f32>| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, x)| x + 0.4 + 0.05 * (i as f32 * 0.37).sin())
            .collect()
    };
    let chords = pulses(fr, secs, 84.0, |k| if k % 3 == 0 { 0.4 } else { 0.7 });
    let bass = pulses(fr, secs, 84.0, |k| if k % 3 == 0 { 0.8 } else { 0.0 });
    let fills = pulses(fr, secs, 168.0, |k| if k % 4 == 3 { 0.2 } else { 0.0 });
    let env = floor(add(&add(&chords, &bass), &fills));
    let low = floor(bass);
    let cfg = TempoConfig::default();
    let bpm = tempo::resolve_level(&env, &low, fr, 168.0, &cfg);
    assert!((bpm - 84.0).abs() < 0.5, "{bpm}");
    // Starting from the beat, it stays there (both trackers agree).
    let bpm = tempo::resolve_level(&env, &low, fr, 84.0, &cfg);
    assert!((bpm - 84.0).abs() < 0.5, "{bpm}");
    // Raw ratios (before issue #26) read the background between the eighths
    // as a subdivision; above the background it is a fraction of that.
    let raw = tempo::pulse_stats_above(&env, fr, 168.0, 0.0).expect("stats");
    let above = tempo::pulse_stats_above(&env, fr, 168.0, 1.0).expect("stats");
    assert!(raw.subdivision > 0.4, "{raw:?}");
    assert!(
        above.subdivision < 0.5 * raw.subdivision,
        "{above:?} {raw:?}"
    );
}

/// An 84 BPM waltz phrased in two-bar units, as [`super::live`] sees it: 8 s
/// windows a second apart, the evidence averaged as
/// [`LiveConfig::level_memory`] does. Bass on 1, louder in
/// the first bar of each pair; chords on 2 and 3; quiet sixteenth ornaments.
fn waltz_in_two_bar_phrases(fr: f32, secs: f32) -> (Vec<f32>, Vec<f32>) {
    let chords = pulses(fr, secs, 84.0, |k| if k % 3 == 0 { 0.0 } else { 0.7 });
    let bass = pulses(fr, secs, 84.0, |k| match k % 6 {
        0 => 1.0,
        3 => 0.6,
        _ => 0.0,
    });
    let ornaments = pulses(fr, secs, 336.0, |_| 0.15);
    (add(&add(&chords, &bass), &ornaments), bass)
}

#[test]
fn a_waltz_in_two_bar_phrases_stays_at_its_beat_window_by_window() {
    // Issue #26: a ballroom waltz at 84 went to 168 live. Its bass on 1 falls
    // on even and odd beats in turn, and in two-bar phrases the louder first
    // bar keeps landing on even beats: the low band's evenness at 84 is about
    // 0.6, which the half-time branch reads as "kick and bass do not mark
    // every slow beat evenly". The sixteenth ornaments subdivide the eighth
    // level (full-band subdivision at 168 about 0.3). What 168 lacks is its
    // own pulse: every other pulse at 168 (the eighths) is nearly empty.
    let fr = 44_100.0 / 256.0; // the live hop
    let (env, low) = waltz_in_two_bar_phrases(fr, 40.0);
    let cfg = TempoConfig::default();
    let whole = tempo::level_evidence(&env, &low, fr, 168.0, &cfg).expect("evidence");
    assert!(
        whole.full.subdivision > tempo::SUBDIVISION_THRESHOLD,
        "{whole:?}"
    );
    assert!(whole.low_slow.evenness < tempo::LOW_EVEN_FAIR, "{whole:?}");
    assert!(whole.full.evenness < tempo::FAST_PULSE_PLAYED, "{whole:?}");
    let win = (8.0 * fr) as usize;
    let hop = fr as usize;
    let mut acc: Option<tempo::LevelEvidence> = None;
    let mut start = 0;
    while start + win <= env.len() {
        let ev = tempo::level_evidence(
            &env[start..start + win],
            &low[start..start + win],
            fr,
            168.0,
            &cfg,
        )
        .expect("window evidence");
        let mut a = acc.unwrap_or(ev);
        if acc.is_some() {
            a.merge(&ev, LiveConfig::default().level_memory);
        }
        acc = Some(a);
        let t = start as f32 / fr;
        assert!((ev.level() - 84.0).abs() < 0.5, "window at {t} s: {ev:?}");
        assert!((a.level() - 84.0).abs() < 0.5, "average at {t} s: {a:?}");
        start += hop;
    }
    // The half-time groove the branch is for still goes up: kick on 1 and
    // snare on 3 at 140 (the snare leaking into the low band at half the
    // kick's strength), eighth hats, so 2 and 4 at 140 carry the hats alone.
    let kick = pulses(fr, 30.0, 70.0, |k| if k % 2 == 0 { 1.0 } else { 0.0 });
    let snare = pulses(fr, 30.0, 70.0, |k| if k % 2 == 1 { 1.0 } else { 0.0 });
    let hats = pulses(fr, 30.0, 280.0, |k| if k % 2 == 0 { 0.5 } else { 0.3 });
    let env = add(&add(&kick, &snare), &hats);
    let low = add(
        &kick,
        &pulses(fr, 30.0, 70.0, |k| if k % 2 == 1 { 0.5 } else { 0.0 }),
    );
    for start in [70.0, 140.0] {
        let ev = tempo::level_evidence(&env, &low, fr, start, &cfg).expect("evidence");
        assert!(ev.full.evenness > tempo::FAST_PULSE_PLAYED, "{ev:?}");
        assert!((ev.level() - 140.0).abs() < 0.5, "from {start}: {ev:?}");
    }
}

#[test]
fn metrical_level_goes_up_when_drums_and_bass_both_play_every_fast_beat() {
    // Issue #26: a rock groove at 120 (rock_120_gap) came out at 60 offline.
    // Kick on 1 and 3, snare on 2 and 4 about as loud, the bass on every beat
    // with quieter repeated eighths between, the hats too soft to count: at
    // 120 neither band is subdivided (< 0.25) and neither is even enough on
    // its own (full band 0.77 < 0.8, low band 0.8 < 0.9), but both play every
    // fast pulse with about the same weight, which an accented/unaccented
    // pair of eighths does not.
    let fr = 44_100.0 / 512.0;
    let secs = 30.0;
    let kick = pulses(fr, secs, 120.0, |k| if k % 2 == 0 { 0.2 } else { 0.0 });
    let snare = pulses(fr, secs, 120.0, |k| if k % 2 == 1 { 0.5 } else { 0.0 });
    let bass = pulses(fr, secs, 240.0, |k| if k % 2 == 0 { 0.8 } else { 0.1 });
    let hats = pulses_at(fr, secs, 120.0, 0.5, 0.1);
    let low = add(&kick, &bass);
    let env = add(&add(&low, &snare), &hats);
    let cfg = TempoConfig::default();
    for start in [60.0, 120.0] {
        let ev = tempo::level_evidence(&env, &low, fr, start, &cfg).expect("evidence");
        assert!(ev.full.subdivision < tempo::SUBDIVISION_THRESHOLD, "{ev:?}");
        assert!(ev.full.evenness < tempo::EVENNESS_THRESHOLD, "{ev:?}");
        assert!(ev.low.evenness < tempo::LOW_EVEN_STRONG, "{ev:?}");
        let bpm = tempo::resolve_level(&env, &low, fr, start, &cfg);
        assert!((bpm - 120.0).abs() < 0.5, "from {start}: {bpm}");
    }
    // A boom-chick at 84 whose chick is as loud as the boom: the full band is
    // as even at 168, but the bass plays only the boom, so the beat stays 84.
    let boom = pulses(fr, secs, 84.0, |_| 0.8);
    let chick = pulses_at(fr, secs, 84.0, 0.5, 0.6);
    let env = add(&boom, &chick);
    for start in [84.0, 168.0] {
        let bpm = tempo::resolve_level(&env, &boom, fr, start, &cfg);
        assert!((bpm - 84.0).abs() < 0.5, "boom-chick from {start}: {bpm}");
    }
}

#[test]
fn live_beat_grid_predicts_beats_two_seconds_ahead() {
    // What the show scheduler does: ask the grid for beats it has not heard yet.
    let clip = drum(synth::pattern_rock(), 120.0, false);
    let mut live = LiveAnalyzer::new(SR, &AnalysisParams::default());
    assert!(live.beat_grid().is_none());
    let mut errs = Vec::new();
    for block in clip.samples.chunks(1024) {
        live.process(block).for_each(drop);
        let now = live.samples_consumed() as f64 / SR as f64;
        let Some(g) = live.beat_grid() else { continue };
        assert!(g.period_samples > 0.0 && g.bpm > 0.0);
        assert!(g.beat(1) > g.beat(0));
        if now < 8.0 {
            continue;
        }
        let k = ((2.0 * SR as f64) / g.period_samples).ceil() as u32;
        let ahead = g.beat(k) as f64 / SR as f64;
        assert!(ahead >= now + 1.5, "{ahead} is not ahead of {now}");
        if ahead <= clip.beats.last().copied().unwrap_or(0.0) {
            errs.extend(eval::phase_errors(&clip.beats, &[ahead]));
        }
    }
    assert!(errs.len() > 100);
    let p95 = eval::percentile(&errs, 95.0);
    assert!(p95 < 0.03, "p95 {p95}");
}

#[test]
fn live_tracker_with_the_phase_gate_withholds_beats_while_the_phase_is_ambiguous() {
    // 12 s of identical clicks every 22 hops (about 235 per minute, every
    // click at the same place in its hop): the tempo (117.5, the prior's
    // choice) is clear, but whether the beat is on the odd or the even clicks
    // is not, so no beat may be announced. Then a kick (a decaying 70 Hz
    // burst) joins every other click: those are the beats, and they must come.
    let dt = 22.0 * 512.0 / SR as f64;
    let mut samples = synth::click_track(60.0 / dt, 24.0, SR).samples;
    let kick: Vec<f32> = synth::sine(70.0, 0.15, SR, 0.8)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (-(i as f32) / (0.04 * SR as f32)).exp())
        .collect();
    let first = (12.0 / (2.0 * dt)).ceil() as usize;
    let truth: Vec<f64> = (first..)
        .map(|m| 2.0 * m as f64 * dt)
        .take_while(|&t| t < 23.5)
        .collect();
    for &t in &truth {
        let at = (t * SR as f64).round() as usize;
        for (s, v) in samples[at..].iter_mut().zip(&kick) {
            *s += v;
        }
    }
    // The gate is a setting (off by default since issue #26's third round,
    // see `LiveConfig::min_phase_confidence`); this is what it does when set.
    let mut params = AnalysisParams::default();
    params.live.min_phase_confidence = 0.05;
    let mut live = LiveAnalyzer::new(SR, &params);
    let mut beats = Vec::new();
    let mut unchecked_seen = false;
    for block in samples.chunks(1024) {
        for ev in live.process(block) {
            if let Event::Beat(b) = ev {
                beats.push(b.sample_pos as f64 / SR as f64);
            }
        }
        let now = live.samples_consumed() as f64 / SR as f64;
        if (4.0..truth[0]).contains(&now) {
            assert!(live.beat_grid().is_none(), "grid offered at {now:.2} s");
            let g = live.tracker().grid_unchecked();
            unchecked_seen |= g.is_some_and(|g| g.phase_confidence < 0.05);
        }
    }
    assert!(
        unchecked_seen,
        "the tracker had no tempo in the ambiguous part"
    );
    assert!(
        beats.iter().all(|&b| b >= truth[0] - 0.03),
        "beats announced in the ambiguous part: {beats:?}"
    );
    // Locked within 4 s of the first kick, then on the kicks.
    let settled: Vec<f64> = beats
        .iter()
        .copied()
        .filter(|&b| b >= truth[0] + 4.0 && b <= truth[truth.len() - 1] + 0.1)
        .collect();
    assert!(settled.len() + 1 >= truth.len() - 8, "{beats:?}");
    let errs = eval::phase_errors(&truth, &settled);
    assert!(eval::percentile(&errs, 100.0) < 0.03, "{errs:?}");
}

/// Seconds after `from_s` until the live tracker's tempo is within 2 % of
/// `bpm` for good (`None`: never), on 30 s of a funk-like envelope: a pulse
/// every 5 sixteenths of `bpm` (strength 0.9) throughout, joined at `from_s`
/// by the beat itself (strength 1).
fn seconds_to_find_the_beat_under_five_sixteenths(
    bpm: f32,
    from_s: f32,
    cfg: &LiveConfig,
) -> Option<f32> {
    let hop = 512;
    let fr = SR as f32 / hop as f32;
    let five = pulses(fr, 30.0, bpm * 4.0 / 5.0, |_| 0.9);
    let beat = pulses(fr, 30.0, bpm, |_| 1.0);
    let start = (from_s * fr) as usize;
    let env: Vec<f32> = five
        .iter()
        .zip(&beat)
        .enumerate()
        .map(|(i, (f, b))| if i < start { *f } else { f + b })
        .collect();
    let stft = StftConfig {
        hop,
        ..StftConfig::default()
    };
    let mut tracker = LiveBeatTracker::new(SR, stft, cfg);
    let mut out = Vec::new();
    let mut settled_at = None;
    for (i, &v) in env.iter().enumerate() {
        tracker.push(i as u64 * hop as u64, v, &mut out);
        let t = i as f32 / fr;
        let near = (tracker.bpm() / bpm - 1.0).abs() < 0.02;
        match (near, settled_at) {
            (true, None) if t >= from_s => settled_at = Some(t - from_s),
            (false, Some(_)) => settled_at = None,
            _ => {}
        }
    }
    settled_at
}

#[test]
fn live_tempo_leaves_a_first_estimate_five_fourths_too_slow() {
    // Funk's kick and bass land every 5 sixteenths often enough that the
    // first estimate can be 5/4 of the beat period (83 instead of 104 BPM).
    // Once the beat is heard as well, the tracker must move to it: with the
    // old continuity width (0.1 octave) the 5/4 tempo kept 60 % of its score
    // and the beat never took over.
    let default = LiveConfig::default();
    let narrow = LiveConfig {
        continuity_octaves: 0.1,
        ..default
    };
    let now = seconds_to_find_the_beat_under_five_sixteenths(104.0, 4.0, &default);
    let before = seconds_to_find_the_beat_under_five_sixteenths(104.0, 4.0, &narrow);
    assert!(now.is_some_and(|s| s < 10.0), "{now:?}");
    assert_eq!(
        before, None,
        "continuity 0.1 was expected to stay at 83 BPM"
    );
}

/// Kick on the last sixteenth of every beat, snare on 2 and 4, hats on the
/// eighths: the full-band onset strength peaks a sixteenth early, and only the
/// high band (snare and hats) says where the beat is. The corpus funk clip
/// (kick, bass and accented guitar on the "a") failed the same way.
#[test]
fn offline_beats_follow_the_backbeat_when_the_kick_anticipates_it() {
    let mut hat: Vec<(u32, f32)> = (0..16).step_by(2).map(|s| (s, 0.6)).collect();
    hat.extend((1..16).step_by(2).map(|s| (s, 0.3)));
    let pattern = synth::DrumPattern {
        name: "anticipated".into(),
        beats_per_bar: 4,
        kick: vec![(3, 1.0), (7, 1.0), (11, 1.0), (15, 1.0)],
        snare: vec![(4, 1.0), (12, 1.0), (7, 0.3), (10, 0.3), (13, 0.3)],
        hat,
        stab: Vec::new(),
    };
    let clip = drum(pattern, 104.0, false);
    let beat_f = |high_weight: f32| {
        let mut params = AnalysisParams::default();
        params.beat.high_weight = high_weight;
        let map = analyze_offline(&clip.samples, SR, &params);
        eval::f_measure(&clip.beats, &map.beats, 0.07)
    };
    let with_high = beat_f(BeatConfig::default().high_weight);
    assert!(with_high > 0.95, "beat F {with_high}");
    // Without the high band the tracker sits on the kicks, a sixteenth early.
    let full_band_only = beat_f(0.0);
    assert!(full_band_only < 0.2, "beat F {full_band_only}");
}

#[test]
fn beat_envelope_weighs_bands_by_their_spread() {
    let env = [0.0, 4.0, 0.0, 4.0];
    let high = [1.0, 0.0, 1.0, 0.0];
    // Each band has a standard deviation of 2 and 0.5: both are scaled to 1.
    let e = beat::beat_envelope(&env, &high, 1.0);
    assert_eq!(e, vec![2.0, 2.0, 2.0, 2.0]);
    assert_eq!(
        beat::beat_envelope(&env, &high, 0.0),
        vec![0.0, 2.0, 0.0, 2.0]
    );
    // A silent band, a band shorter than the envelope or NaN add nothing.
    assert_eq!(
        beat::beat_envelope(&env, &[0.0; 4], 1.0),
        vec![0.0, 2.0, 0.0, 2.0]
    );
    assert_eq!(
        beat::beat_envelope(&env, &[], 1.0),
        vec![0.0, 2.0, 0.0, 2.0]
    );
    let nan = beat::beat_envelope(&[f32::NAN, 4.0, 0.0, 4.0], &high, f32::NAN);
    assert!(nan.iter().all(|v| v.is_finite()));
}

#[test]
fn offline_overrides_name_the_setting_and_refuse_bad_input() {
    let mut cfg = BeatConfig::default();
    cfg.set("high_weight=0.5").expect("known setting");
    assert_eq!(cfg.high_weight, 0.5);
    assert!(cfg
        .set("high_weight")
        .is_err_and(|e| e.contains("KEY=VALUE")));
    assert!(cfg
        .set("tightness=x")
        .is_err_and(|e| e.contains("tightness")));
    assert!(cfg.set("nope=1").is_err_and(|e| e.contains("nope")));
    assert_eq!(cfg.high_weight, 0.5);
}

/// Issue #26: a 128 BPM house groove (a kick on every beat, hats and, in one
/// version, a bass stab on every off-beat) gave beats on the hats, offline
/// and live. The beat is where the kick is.
#[test]
fn house_kick_on_every_beat_and_offbeat_hats_put_the_beats_on_the_kicks() {
    let with_stab = synth::pattern_house_offbeat();
    let without_stab = synth::DrumPattern {
        stab: Vec::new(),
        ..synth::pattern_house_offbeat()
    };
    for pattern in [without_stab, with_stab] {
        let stab = !pattern.stab.is_empty();
        let clip = drum(pattern, 128.0, false);
        let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
        let f = eval::f_measure(&clip.beats, &map.beats, 0.07);
        assert!(f > 0.9, "stab {stab}: offline beat F {f}");
        let live = secs(&live_beats(&clip.samples, SR, 1024), SR);
        let after: Vec<f64> = live.iter().copied().filter(|&t| t > 12.0).collect();
        let truth: Vec<f64> = clip.beats.iter().copied().filter(|&t| t > 12.0).collect();
        assert!(
            after.len() as f64 > 0.9 * truth.len() as f64,
            "stab {stab}: {} live beats after 12 s, {} true",
            after.len(),
            truth.len()
        );
        let f = eval::f_measure(&truth, &after, 0.07);
        assert!(f > 0.9, "stab {stab}: live beat F after 12 s {f}");
    }
}

/// Issue #26: fast breaks and half-time grooves keep their tempo offline.
#[test]
fn drum_and_bass_at_172_and_half_time_at_140_keep_their_tempo_offline() {
    for (pattern, bpm) in [
        (synth::pattern_dnb(), 172.0),
        (synth::pattern_halftime(), 140.0),
    ] {
        let clip = drum(pattern, bpm, false);
        let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
        assert!(
            (map.tempo_bpm / bpm - 1.0).abs() < 0.03,
            "{}: tempo {}",
            clip.name,
            map.tempo_bpm
        );
        let f = eval::f_measure(&clip.beats, &map.beats, 0.07);
        assert!(f > 0.9, "{}: beat F {f}", clip.name);
        let live = live_beats(&clip.samples, SR, 1024);
        let bpm_live = live.last().map_or(0.0, |b| b.bpm) as f64;
        assert!(
            (bpm_live / bpm - 1.0).abs() < 0.03,
            "{}: live tempo {bpm_live}",
            clip.name
        );
    }
}

/// Issue #26: a slow waltz must not settle on double tempo live.
#[test]
fn a_slow_waltz_keeps_its_tempo_live() {
    let clip = drum(synth::pattern_waltz(), 84.0, false);
    let live = live_beats(&clip.samples, SR, 1024);
    let late: Vec<f32> = live
        .iter()
        .filter(|b| b.sample_pos as f64 > 15.0 * SR as f64)
        .map(|b| b.bpm)
        .collect();
    assert!(!late.is_empty(), "no live beats after 15 s");
    let mut sorted = late.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2] as f64;
    assert!((median / 84.0 - 1.0).abs() < 0.05, "live tempo {median}");
    let map = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    assert!(
        (map.tempo_bpm / 84.0 - 1.0).abs() < 0.03,
        "offline tempo {}",
        map.tempo_bpm
    );
}

/// Issue #26: beats stop when the music stops and resume when it returns,
/// offline and live.
#[test]
fn beats_stop_in_a_silent_gap_and_resume_after_it() {
    let part = drum(synth::pattern_rock(), 120.0, false);
    let gap_s = 8.0;
    let end_a = part.samples.len() as f64 / SR as f64;
    let mut samples = part.samples.clone();
    samples.extend(std::iter::repeat_n(0.0f32, (gap_s * SR as f64) as usize));
    let start_b = samples.len() as f64 / SR as f64;
    samples.extend_from_slice(&part.samples);
    let last_a = part.beats.last().copied().unwrap_or(0.0);
    let truth: Vec<f64> = part
        .beats
        .iter()
        .copied()
        .chain(part.beats.iter().map(|b| b + start_b))
        .collect();
    let map = analyze_offline(&samples, SR, &AnalysisParams::default());
    let in_gap = |t: f64| t > last_a + 1.1 && t < start_b - 0.1;
    let offline_gap: Vec<f64> = map.beats.iter().copied().filter(|&t| in_gap(t)).collect();
    assert!(
        offline_gap.is_empty(),
        "offline beats in the gap: {offline_gap:?}"
    );
    let f = eval::f_measure(&truth, &map.beats, 0.07);
    assert!(f > 0.9, "offline beat F {f}");
    let live = secs(&live_beats(&samples, SR, 1024), SR);
    let live_gap: Vec<f64> = live.iter().copied().filter(|&t| in_gap(t)).collect();
    assert!(
        live_gap.len() <= 1,
        "live beats in the gap: {live_gap:?} (music ends {end_a:.2} s)"
    );
    let back: Vec<f64> = live
        .iter()
        .copied()
        .filter(|&t| t > start_b + 4.0)
        .collect();
    let truth_back: Vec<f64> = truth
        .iter()
        .copied()
        .filter(|&t| t > start_b + 4.0)
        .collect();
    let f = eval::f_measure(&truth_back, &back, 0.07);
    assert!(f > 0.9, "live beat F after the gap {f}");
}

#[test]
fn beatmaps_are_bounded_at_load() {
    // issue 21.4: a beatmap with 10 million beats was accepted (192 MB to check).
    let clip = synth::click_track(120.0, 8.0, SR);
    let good = analyze_offline(&clip.samples, SR, &AnalysisParams::default());
    let mut m = good.clone();
    m.beats = (0..1000).map(|i| f64::from(i) * 0.005).collect();
    m.downbeats.clear();
    m.bars.clear();
    let err = Beatmap::from_json(&m.to_json()).unwrap_err().to_string();
    assert!(
        err.contains(
            "1000 beats in a 8.0 s track: more than 20 beats per second (at most 180 beats)"
        ),
        "{err}"
    );
    let mut m = good.clone();
    m.beats = vec![1.0, 1.01];
    m.downbeats.clear();
    m.bars.clear();
    let err = Beatmap::from_json(&m.to_json()).unwrap_err().to_string();
    assert!(
        err.contains(
            "beats[1] is 10.0 ms after the previous beat: denser than 20 beats per second"
        ),
        "{err}"
    );
    let mut m = good.clone();
    m.track.duration_s = 1e7;
    let err = Beatmap::from_json(&m.to_json()).unwrap_err().to_string();
    assert!(err.contains("longer than the 3 hours"), "{err}");
    let mut m = good;
    m.envelopes.values = vec![vec![0; 100_000]; 3];
    let err = Beatmap::from_json(&m.to_json()).unwrap_err().to_string();
    assert!(err.contains("100000 envelope frames at 20 Hz"), "{err}");
    // A file larger than the cap is refused before it is parsed.
    let dir = tempfile::tempdir().expect("tmp");
    let big = dir.path().join("big.beatmap.json");
    std::fs::write(&big, vec![b' '; (beatmap::MAX_FILE_BYTES + 10) as usize]).expect("write");
    let err = Beatmap::load(&big).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot read beatmap {}: larger than 16 MiB",
            big.display()
        )),
        "{err}"
    );
}

/// Downbeat F-measure (±70 ms) of `map` against `truth`, counting only
/// downbeats (both sides) after `from_s`.
fn downbeat_f_after(truth: &[f64], map: &Beatmap, from_s: f64) -> f64 {
    let after = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|&t| t >= from_s).collect() };
    eval::f_measure(&after(truth), &after(&map.downbeats), 0.07)
}

/// Issue #26: the bars keep counting through a silence. Rock at 120 stops at
/// the end of a bar and comes back 6 beats later, on beat 3 of the next bar
/// but one; the beats the tracker drops in the silence still count, so the
/// bars after it start where they did before (they moved two beats late when
/// the bar phase counted the beats the tracker kept).
#[test]
fn bars_keep_counting_across_a_silence_of_six_beats() {
    let part = drum(synth::pattern_rock(), 120.0, false);
    let end_a = part.samples.len() as f64 / SR as f64;
    let bar_s = 2.0;
    let resume_s = (end_a / bar_s).ceil() * bar_s + 3.0; // beat 3 of the bar after next
    let skip = SR as usize; // the second part starts 2 beats (1 s) into its bar
    let mut samples = part.samples.clone();
    samples.resize((resume_s * SR as f64) as usize, 0.0);
    samples.extend_from_slice(&part.samples[skip..]);
    let shift = resume_s - 1.0;
    let truth: Vec<f64> = part
        .downbeats
        .iter()
        .copied()
        .chain(
            part.downbeats
                .iter()
                .filter(|&&d| d >= 1.0)
                .map(|d| d + shift),
        )
        .collect();
    let map = analyze_offline(&samples, SR, &AnalysisParams::default());
    map.validate().expect("valid beatmap");
    assert_eq!(map.beats_per_bar, 4);
    let before = downbeat_f_after(&part.downbeats, &map, 0.0).min(1.0);
    let after = downbeat_f_after(&truth, &map, resume_s);
    assert!(
        after > 0.9,
        "downbeat F after the silence {after} (before it {before}); downbeats {:?}",
        map.downbeats
    );
    assert!(downbeat_f_after(&truth, &map, 0.0) > 0.9);
}

/// Issue #26: one bar of 2/4 between two stretches of 4/4 (a common join
/// between sections). A single bar phase for the whole track puts one
/// stretch's bars on beat 3; the bar phase now moves after the short bar.
#[test]
fn a_bar_of_two_beats_moves_the_bar_phase() {
    let part = drum(synth::pattern_rock(), 120.0, false);
    let bar_s = 2.0;
    let end_a = (part.samples.len() as f64 / SR as f64 / bar_s).floor() * bar_s - bar_s;
    let a = (end_a * SR as f64) as usize;
    // Part A, then the first half of a bar, then part B from its start.
    let mut samples = part.samples[..a].to_vec();
    samples.extend_from_slice(&part.samples[..SR as usize]);
    samples.extend_from_slice(&part.samples[..a]);
    let start_b = end_a + 1.0;
    let truth: Vec<f64> = part
        .downbeats
        .iter()
        .copied()
        .filter(|&d| d < end_a + 0.5)
        .chain(
            part.downbeats
                .iter()
                .filter(|&&d| d < end_a - 0.5)
                .map(|d| d + start_b),
        )
        .collect();
    let map = analyze_offline(&samples, SR, &AnalysisParams::default());
    map.validate().expect("valid beatmap");
    let f_a = eval::f_measure(
        &truth
            .iter()
            .copied()
            .filter(|&t| t < end_a)
            .collect::<Vec<_>>(),
        &map.downbeats
            .iter()
            .copied()
            .filter(|&t| t < end_a - 0.5)
            .collect::<Vec<_>>(),
        0.07,
    );
    let f_b = downbeat_f_after(&truth, &map, start_b + 4.0);
    assert!(
        f_a > 0.9 && f_b > 0.9,
        "downbeat F before the short bar {f_a}, after it {f_b}; downbeats {:?}",
        map.downbeats
    );
}

#[test]
fn a_fast_level_above_the_limit_needs_an_evenly_accented_low_band() {
    // Issue #26, third round: a 100 BPM rock groove played by a band — kick on
    // 1 and 3 with 16th-note pickups, snare on 2 and 4, eighth-note bass,
    // 16th hats — reads at 200 like a drum & bass break at 176: the full band
    // plays every eighth and is subdivided, the low band is fairly even and
    // subdivided. Above `fast_level_max_bpm` that is not enough for 200.
    let fr = 44_100.0 / 512.0;
    let secs = 30.0;
    let kick = add(
        &pulses(fr, secs, 50.0, |_| 1.0),
        &pulses_at(fr, secs, 50.0, 0.875, 0.6),
    );
    let snare = pulses_at(fr, secs, 50.0, 0.5, 1.0);
    let bass = pulses(fr, secs, 200.0, |k| if k % 2 == 0 { 0.6 } else { 0.5 });
    let hats = pulses(fr, secs, 400.0, |k| if k % 2 == 0 { 0.5 } else { 0.3 });
    let low = add(&kick, &bass);
    let env = add(&add(&low, &snare), &hats);
    let cfg = TempoConfig::default();
    let ev = tempo::level_evidence(&env, &low, fr, 100.0, &cfg).expect("evidence");
    assert!(ev.low.evenness < tempo::LOW_EVEN_STRONG, "{ev:?}");
    for start in [100.0, 200.0] {
        let bpm = tempo::resolve_level(&env, &low, fr, start, &cfg);
        assert!((bpm - 100.0).abs() < 0.5, "from {start}: {bpm} ({ev:?})");
    }
    // Without the limit the same evidence takes the eighth-note level.
    let unlimited = TempoConfig {
        fast_level_max_bpm: 0.0,
        ..cfg
    };
    let bpm = tempo::resolve_level(&env, &low, fr, 100.0, &unlimited);
    assert!((bpm - 200.0).abs() < 0.5, "{bpm}");
    // A walking bass on every pulse of a 190 BPM swing still makes 190 the
    // beat, limit or not.
    let ride = pulses(fr, secs, 95.0, |_| 1.0);
    let walking = pulses(fr, secs, 190.0, |_| 0.6);
    let env = add(&ride, &walking);
    let bpm = tempo::resolve_level(&env, &walking, fr, 95.0, &cfg);
    assert!((bpm - 190.0).abs() < 0.5, "{bpm}");
}

#[test]
fn live_tempo_continuity_counts_the_octaves_of_the_running_level() {
    // The live tracker passes its running level as `previous`; the estimate
    // only names the pair of levels, so an estimate at twice the level must
    // keep the continuity the level itself has (issue #26: a country clip at
    // 84 whose estimate sits at 168 drifted to 135 for seconds at a time).
    let fr = 44_100.0 / 512.0;
    let env = add(
        &pulses(fr, 8.0, 168.0, |k| if k % 2 == 0 { 1.0 } else { 0.7 }),
        &pulses(fr, 8.0, 135.0, |_| 0.5),
    );
    let mut est = tempo::TempoEstimator::new(fr, &TempoConfig::default(), env.len());
    let at_level = est.estimate_near(&env, Some(84.0), 0.3);
    let at_estimate = est.estimate_near(&env, Some(168.0), 0.3);
    assert_eq!(at_level, at_estimate);
    let bpm = at_level.bpm;
    assert!(
        (bpm / 168.0 - 1.0).abs() < 0.02 || (bpm / 84.0 - 1.0).abs() < 0.02,
        "{bpm}"
    );
}
