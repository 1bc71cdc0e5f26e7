//! Deterministic synthetic test material with ground truth.
//!
//! Generates sines, click tracks and drum tracks (synthesised kick, snare,
//! hi-hat and a bass line that changes note on every downbeat) from step
//! patterns, optionally with a quiet intro and a tempo change, together with
//! the exact beat and downbeat times. Used by the tests, the evaluation table
//! and anyone who wants a reproducible signal; it uses a fixed-seed xorshift
//! noise source so the same call always yields the same samples.

/// A generated clip and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthClip {
    /// Short name for tables.
    pub name: String,
    /// Mono samples in `-1..=1`.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Ground-truth beat times in seconds.
    pub beats: Vec<f64>,
    /// Ground-truth downbeat times in seconds.
    pub downbeats: Vec<f64>,
    /// Beats per bar.
    pub beats_per_bar: u32,
    /// Tempo in BPM of the first part of the clip.
    pub bpm: f64,
    /// End of the quiet intro in seconds (0 when none).
    pub intro_end_s: f64,
}

/// A drum pattern on a grid of four steps per beat.
#[derive(Debug, Clone, PartialEq)]
pub struct DrumPattern {
    /// Name for tables.
    pub name: String,
    /// Beats per bar.
    pub beats_per_bar: u32,
    /// Kick steps and velocities.
    pub kick: Vec<(u32, f32)>,
    /// Snare steps and velocities.
    pub snare: Vec<(u32, f32)>,
    /// Hi-hat steps and velocities.
    pub hat: Vec<(u32, f32)>,
    /// Bass stab steps and velocities: a short note of the bar's bass note
    /// an octave up (house's off-beat stab); empty for most patterns.
    pub stab: Vec<(u32, f32)>,
}

/// Parameters of [`drum_track`].
#[derive(Debug, Clone, PartialEq)]
pub struct DrumSpec {
    /// Pattern to repeat.
    pub pattern: DrumPattern,
    /// Tempo in BPM.
    pub bpm: f64,
    /// Bars in total (including intro).
    pub bars: u32,
    /// Bars of quiet intro (quiet quarter-note hats only).
    pub intro_bars: u32,
    /// Optional tempo change: (first bar at the new tempo, new BPM).
    pub tempo_change: Option<(u32, f64)>,
    /// Sample rate.
    pub sample_rate: u32,
    /// Noise seed.
    pub seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A sine of `freq` Hz, `duration_s` long, amplitude `amp`.
pub fn sine(freq: f32, duration_s: f32, sample_rate: u32, amp: f32) -> Vec<f32> {
    let n = (duration_s.max(0.0) * sample_rate as f32) as usize;
    (0..n)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / sample_rate as f32).sin())
        .collect()
}

fn add(buf: &mut [f32], at: f64, sr: u32, sound: &[f32], gain: f32) {
    let start = (at * sr as f64).round() as usize;
    for (i, &s) in sound.iter().enumerate() {
        if let Some(b) = buf.get_mut(start + i) {
            *b += s * gain;
        }
    }
}

fn kick(sr: u32) -> Vec<f32> {
    let n = (0.35 * sr as f32) as usize;
    let mut phase = 0.0f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            let f = 50.0 + 110.0 * (-t / 0.03).exp();
            phase += 2.0 * std::f32::consts::PI * f / sr as f32;
            let env = (-t / 0.12).exp() * (t * 2000.0).min(1.0);
            phase.sin() * env
        })
        .collect()
}

fn snare(sr: u32, rng: &mut Rng) -> Vec<f32> {
    let n = (0.25 * sr as f32) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            let tone = (2.0 * std::f32::consts::PI * 190.0 * t).sin() * (-t / 0.05).exp();
            let noise = rng.next() * (-t / 0.07).exp();
            (0.5 * tone + 0.6 * noise) * (t * 4000.0).min(1.0)
        })
        .collect()
}

fn hat(sr: u32, rng: &mut Rng) -> Vec<f32> {
    let n = (0.08 * sr as f32) as usize;
    let mut prev = 0.0f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            let x = rng.next();
            let hp = x - prev;
            prev = x;
            hp * 0.5 * (-t / 0.018).exp()
        })
        .collect()
}

fn bass(freq: f32, dur: f32, sr: u32) -> Vec<f32> {
    let n = (dur * sr as f32) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            let env = (t / 0.01).min(1.0) * (-t / 1.5).exp() * ((dur - t) / 0.02).clamp(0.0, 1.0);
            let w = 2.0 * std::f32::consts::PI * freq * t;
            env * (w.sin() + 0.4 * (2.0 * w).sin())
        })
        .collect()
}

/// A click track: a short 2 kHz + noise click on every beat.
pub fn click_track(bpm: f64, duration_s: f64, sample_rate: u32) -> SynthClip {
    let sr = sample_rate.max(1);
    let n = (duration_s.max(0.0) * sr as f64) as usize;
    let mut buf = vec![0.0f32; n];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let click: Vec<f32> = (0..(0.01 * sr as f32) as usize)
        .map(|i| {
            let t = i as f32 / sr as f32;
            ((2.0 * std::f32::consts::PI * 2000.0 * t).sin() * 0.7 + rng.next() * 0.3)
                * (-t / 0.002).exp()
        })
        .collect();
    let period = 60.0 / bpm;
    let mut beats = Vec::new();
    let mut t = 0.0;
    while t < duration_s {
        add(&mut buf, t, sr, &click, 0.8);
        beats.push(t);
        t += period;
    }
    let downbeats = beats.iter().step_by(4).copied().collect();
    SynthClip {
        name: format!("click{}", bpm.round()),
        samples: buf,
        sample_rate: sr,
        beats,
        downbeats,
        beats_per_bar: 4,
        bpm,
        intro_end_s: 0.0,
    }
}

/// Renders a drum track with bass from a spec.
pub fn drum_track(spec: &DrumSpec) -> SynthClip {
    let sr = spec.sample_rate.max(1);
    let p = &spec.pattern;
    let bpb = p.beats_per_bar.max(1);
    // Bar start times.
    let mut bar_starts = Vec::with_capacity(spec.bars as usize + 1);
    let mut t = 0.0f64;
    let mut bar_bpm = Vec::with_capacity(spec.bars as usize);
    for b in 0..spec.bars {
        let bpm = match spec.tempo_change {
            Some((at, nb)) if b >= at => nb,
            _ => spec.bpm,
        };
        bar_starts.push(t);
        bar_bpm.push(bpm);
        t += bpb as f64 * 60.0 / bpm;
    }
    let total = t + 0.5;
    let mut buf = vec![0.0f32; (total * sr as f64) as usize];
    let mut rng = Rng(spec.seed.max(1));
    let k = kick(sr);
    let notes = [55.0f32, 65.41, 49.0, 73.42];
    let mut beats = Vec::new();
    let mut downbeats = Vec::new();
    for b in 0..spec.bars as usize {
        let beat_dur = 60.0 / bar_bpm[b];
        let step = beat_dur / 4.0;
        let t0 = bar_starts[b];
        downbeats.push(t0);
        for i in 0..bpb {
            beats.push(t0 + i as f64 * beat_dur);
        }
        if (b as u32) < spec.intro_bars {
            for i in 0..bpb {
                let h = hat(sr, &mut rng);
                add(&mut buf, t0 + i as f64 * beat_dur, sr, &h, 0.08);
            }
            continue;
        }
        for &(s, v) in &p.kick {
            add(&mut buf, t0 + s as f64 * step, sr, &k, 0.7 * v);
        }
        for &(s, v) in &p.snare {
            let sn = snare(sr, &mut rng);
            add(&mut buf, t0 + s as f64 * step, sr, &sn, 0.5 * v);
        }
        for &(s, v) in &p.hat {
            let h = hat(sr, &mut rng);
            add(&mut buf, t0 + s as f64 * step, sr, &h, 0.5 * v);
        }
        for &(s, v) in &p.stab {
            let st = bass(2.0 * notes[b % notes.len()], 0.12, sr);
            add(&mut buf, t0 + s as f64 * step, sr, &st, 0.3 * v);
        }
        let bar_len = (bpb as f64 * beat_dur) as f32;
        let bs = bass(notes[b % notes.len()], bar_len, sr);
        add(&mut buf, t0, sr, &bs, 0.25);
    }
    // Normalise to a peak of 0.9.
    let peak = buf.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak > 0.0 {
        buf.iter_mut().for_each(|v| *v *= 0.9 / peak);
    }
    let name = match spec.tempo_change {
        Some((_, nb)) => format!("{}{}to{}", p.name, spec.bpm.round(), nb.round()),
        None => format!("{}{}", p.name, spec.bpm.round()),
    };
    SynthClip {
        name,
        samples: buf,
        sample_rate: sr,
        beats,
        downbeats,
        beats_per_bar: bpb,
        bpm: spec.bpm,
        intro_end_s: if spec.intro_bars > 0 {
            bar_starts
                .get(spec.intro_bars as usize)
                .copied()
                .unwrap_or(0.0)
        } else {
            0.0
        },
    }
}

fn steps(list: &[u32], v: f32) -> Vec<(u32, f32)> {
    list.iter().map(|&s| (s, v)).collect()
}

/// Rock/pop: kick on 1 and 3, snare on 2 and 4, eighth-note hats.
pub fn pattern_rock() -> DrumPattern {
    DrumPattern {
        name: "rock".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 8], 1.0),
        snare: steps(&[4, 12], 1.0),
        hat: steps(&[0, 2, 4, 6, 8, 10, 12, 14], 0.6),
        stab: Vec::new(),
    }
}

/// Hip-hop: kick on 1, the "a" of 2 and the "and" of 3.
pub fn pattern_hiphop() -> DrumPattern {
    DrumPattern {
        name: "hiphop".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 7, 10], 1.0),
        snare: steps(&[4, 12], 1.0),
        hat: steps(&[0, 2, 4, 6, 8, 10, 12, 14], 0.6),
        stab: Vec::new(),
    }
}

/// House: four-on-the-floor kick, clap on 2 and 4, off-beat hats.
pub fn pattern_house() -> DrumPattern {
    DrumPattern {
        name: "house".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 4, 8, 12], 1.0),
        snare: steps(&[4, 12], 0.8),
        hat: steps(&[2, 6, 10, 14], 0.8),
        stab: Vec::new(),
    }
}

/// House as DJs play it: a kick on every beat, open-ish hats and a bass stab
/// on every off-beat, no clap. The full band carries as much flux off the beat
/// as on it; only the kick says where the beat is.
pub fn pattern_house_offbeat() -> DrumPattern {
    DrumPattern {
        name: "house_offbeat".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 4, 8, 12], 1.0),
        snare: Vec::new(),
        hat: steps(&[2, 6, 10, 14], 1.0),
        stab: steps(&[2, 6, 10, 14], 1.0),
    }
}

/// Half-time: kick on 1 and the "a" of 2, snare on 3 only, eighth hats (as
/// 140 BPM dubstep and trap are counted).
pub fn pattern_halftime() -> DrumPattern {
    DrumPattern {
        name: "halftime".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 7], 1.0),
        snare: steps(&[8], 1.0),
        hat: steps(&[0, 2, 4, 6, 8, 10, 12, 14], 0.5),
        stab: Vec::new(),
    }
}

/// Drum and bass two-step: kick on 1 and the "and" of 3, snare on 2 and 4.
pub fn pattern_dnb() -> DrumPattern {
    DrumPattern {
        name: "dnb".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 10], 1.0),
        snare: steps(&[4, 12], 1.0),
        hat: steps(&[0, 2, 4, 6, 8, 10, 12, 14], 0.5),
        stab: Vec::new(),
    }
}

/// Syncopated funk: kicks off the beat, ghost snares, sixteenth hats.
pub fn pattern_funk() -> DrumPattern {
    let mut snare = steps(&[4, 12], 1.0);
    snare.extend(steps(&[7, 9, 15], 0.3));
    let mut hat = steps(&[0, 2, 4, 6, 8, 10, 12, 14], 0.6);
    hat.extend(steps(&[1, 3, 5, 7, 9, 11, 13, 15], 0.25));
    DrumPattern {
        name: "funk".into(),
        beats_per_bar: 4,
        kick: steps(&[0, 3, 6, 10], 1.0),
        snare,
        hat,
        stab: Vec::new(),
    }
}

/// Waltz: kick on 1, snare on 2 and 3, eighth hats.
pub fn pattern_waltz() -> DrumPattern {
    DrumPattern {
        name: "waltz".into(),
        beats_per_bar: 3,
        kick: steps(&[0], 1.0),
        snare: steps(&[4, 8], 0.5),
        hat: steps(&[0, 2, 4, 6, 8, 10], 0.5),
        stab: Vec::new(),
    }
}

fn bars_for(bpm: f64, beats_per_bar: u32, seconds: f64) -> u32 {
    ((seconds * bpm / 60.0 / beats_per_bar as f64).round() as u32).max(2)
}

fn intro_bars_for(bpm: f64, beats_per_bar: u32) -> u32 {
    ((4.0 * bpm / 60.0 / beats_per_bar as f64).round() as u32).max(1)
}

/// The evaluation corpus: a 128 BPM click track; rock 120, hip-hop 90, house
/// 150 and drum-and-bass 174 with a quiet ~4 s intro; syncopated funk 120; a
/// 120→140 tempo change; and a 3/4 waltz at 100 BPM. About 32 s each.
pub fn corpus(sample_rate: u32) -> Vec<SynthClip> {
    let mut out = vec![click_track(128.0, 30.0, sample_rate)];
    let with_intro = [
        (pattern_hiphop(), 90.0),
        (pattern_rock(), 120.0),
        (pattern_house(), 150.0),
        (pattern_dnb(), 174.0),
    ];
    for (i, (p, bpm)) in with_intro.into_iter().enumerate() {
        let bpb = p.beats_per_bar;
        out.push(drum_track(&DrumSpec {
            bars: bars_for(bpm, bpb, 32.0),
            intro_bars: intro_bars_for(bpm, bpb),
            pattern: p,
            bpm,
            tempo_change: None,
            sample_rate,
            seed: 17 + i as u64,
        }));
    }
    out.push(drum_track(&DrumSpec {
        pattern: pattern_funk(),
        bpm: 120.0,
        bars: bars_for(120.0, 4, 32.0),
        intro_bars: 0,
        tempo_change: None,
        sample_rate,
        seed: 31,
    }));
    out.push(drum_track(&DrumSpec {
        pattern: pattern_rock(),
        bpm: 120.0,
        bars: 28,
        intro_bars: 0,
        tempo_change: Some((14, 140.0)),
        sample_rate,
        seed: 41,
    }));
    out.push(drum_track(&DrumSpec {
        pattern: pattern_waltz(),
        bpm: 100.0,
        bars: bars_for(100.0, 3, 32.0),
        intro_bars: 0,
        tempo_change: None,
        sample_rate,
        seed: 53,
    }));
    out
}
