//! Prints beat-tracking metrics of the offline and live trackers over the
//! synthetic corpus, plus offline throughput. Optional: `--dump DIR` writes
//! each clip as raw little-endian f32 plus its ground truth (for comparing
//! with other trackers such as aubio).

use std::time::Instant;

use convoy::analysis::{analyze_offline, eval, synth, AnalysisParams, Event, LiveAnalyzer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dump = args
        .iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1).cloned());
    let sr = 44_100;
    let corpus = synth::corpus(sr);
    let params = AnalysisParams::default();

    // Onset timing calibration on the click track.
    {
        let clip = &corpus[0];
        let mut live = LiveAnalyzer::new(sr, &params);
        let mut onsets = Vec::new();
        for block in clip.samples.chunks(1024) {
            for ev in live.process(block) {
                if let Event::Onset(o) = ev {
                    onsets.push(o.sample_pos as f64 / sr as f64);
                }
            }
        }
        let errs: Vec<f64> = onsets
            .iter()
            .map(|&o| {
                let n = clip
                    .beats
                    .iter()
                    .copied()
                    .min_by(|a, b| (a - o).abs().total_cmp(&(b - o).abs()))
                    .unwrap_or(0.0);
                o - n
            })
            .collect();
        let mean = errs.iter().sum::<f64>() / errs.len().max(1) as f64;
        println!(
            "onsets on click128: {} detected / {} clicks, mean signed error {:+.1} ms",
            onsets.len(),
            clip.beats.len(),
            mean * 1000.0
        );
    }

    println!();
    println!(
        "{:<18} {:>6} | {:>7} {:>5} {:>5} {:>5} {:>6} {:>4} | {:>7} {:>5} {:>5} {:>5} {:>7}",
        "clip",
        "bpm",
        "off.bpm",
        "F",
        "CMLt",
        "AMLt",
        "dbF",
        "bar",
        "liv.bpm",
        "F",
        "CMLt",
        "AMLt",
        "p95 ms"
    );
    let mut total_audio = 0.0f64;
    let mut total_time = 0.0f64;
    let mut all_live_err = Vec::new();
    for clip in &corpus {
        let dur = clip.samples.len() as f64 / sr as f64;
        let t0 = Instant::now();
        let map = analyze_offline(&clip.samples, sr, &params);
        let el = t0.elapsed().as_secs_f64();
        total_audio += dur;
        total_time += el;
        let off = eval::evaluate(&clip.beats, &map.beats);
        let db_f = eval::f_measure(&clip.downbeats, &map.downbeats, 0.07);

        let mut live = LiveAnalyzer::new(sr, &params);
        let mut beats = Vec::new();
        for block in clip.samples.chunks(1000) {
            for ev in live.process(block) {
                if let Event::Beat(b) = ev {
                    beats.push(b.sample_pos as f64 / sr as f64);
                }
            }
        }
        // Only the annotated span counts (the clips end with 0.5 s of silence
        // in which the tracker correctly keeps predicting beats).
        let last = clip.beats.last().copied().unwrap_or(0.0) + 0.1;
        beats.retain(|&b| b <= last);
        let lv = eval::evaluate(&clip.beats, &beats);
        let after8: Vec<f64> = beats.iter().copied().filter(|&b| b >= 8.0).collect();
        let errs = eval::phase_errors(&clip.beats, &after8);
        all_live_err.extend(errs.iter().copied());
        let p95 = eval::percentile(&errs, 95.0) * 1000.0;
        println!(
            "{:<18} {:>6.1} | {:>7.2} {:>5.3} {:>5.3} {:>5.3} {:>6.3} {:>4} | {:>7.2} {:>5.3} {:>5.3} {:>5.3} {:>7.1}",
            clip.name,
            clip.bpm,
            map.tempo_bpm,
            off.f_measure,
            off.cmlt,
            off.amlt,
            db_f,
            map.beats_per_bar,
            live.bpm(),
            lv.f_measure,
            lv.cmlt,
            lv.amlt,
            p95
        );
        if std::env::var("VERBOSE").is_ok() {
            println!(
                "   sections: {:?}",
                map.sections
                    .iter()
                    .map(|s| (s.start_s, s.end_s, s.label.clone(), s.energy))
                    .collect::<Vec<_>>()
            );
            println!("   tempo curve: {:?}", map.tempo_curve);
            println!("   first beats: {:?}", &map.beats[..map.beats.len().min(8)]);
            println!(
                "   first truth: {:?}",
                &clip.beats[..clip.beats.len().min(8)]
            );
            println!("   live first: {:?}", &beats[..beats.len().min(8)]);
        }
        if let Some(dir) = &dump {
            let bytes: Vec<u8> = clip.samples.iter().flat_map(|v| v.to_le_bytes()).collect();
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(format!("{dir}/{}.f32", clip.name), bytes);
            let truth: Vec<String> = clip.beats.iter().map(|b| format!("{b:.6}")).collect();
            let _ = std::fs::write(format!("{dir}/{}.beats", clip.name), truth.join("\n"));
            let off: Vec<String> = map.beats.iter().map(|b| format!("{b:.6}")).collect();
            let _ = std::fs::write(format!("{dir}/{}.offline", clip.name), off.join("\n"));
            let lv: Vec<String> = beats.iter().map(|b| format!("{b:.6}")).collect();
            let _ = std::fs::write(format!("{dir}/{}.live", clip.name), lv.join("\n"));
        }
    }
    println!();
    println!(
        "live phase error after 8 s, all clips: p50 {:.1} ms, p95 {:.1} ms",
        eval::percentile(&all_live_err, 50.0) * 1000.0,
        eval::percentile(&all_live_err, 95.0) * 1000.0
    );
    println!(
        "offline throughput: {:.1} s of audio in {:.2} s = {:.0}x real time (this machine, 1 thread)",
        total_audio,
        total_time,
        total_audio / total_time.max(1e-9)
    );
}
