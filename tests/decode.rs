//! Every supported format decodes to the generated reference signal; broken input is
//! handled as the foundation issue demands.

use std::io::Write;

use convoy::audio::decode::FileSource;
use convoy::audio::synth::{GeneratedSource, Signal};
use convoy::audio::{AudioError, Source};

use crate::util::{fixture, rms, zero_crossing_hz};

fn decode_all(src: &mut dyn Source) -> Vec<f32> {
    let mut out = Vec::new();
    while src.read(&mut out, 4096).expect("decodes") > 0 {}
    out
}

fn reference(rate: u32, seconds: f64) -> Vec<f32> {
    let mut g = GeneratedSource::new(Signal::Sine(440.0), rate, seconds);
    decode_all(&mut g)
}

fn left(x: &[f32], channels: usize) -> Vec<f32> {
    x.iter().step_by(channels).copied().collect()
}

#[test]
fn lossless_formats_decode_sample_exact() {
    let want = reference(44_100, 1.0);
    for name in ["sine440_44k.wav", "sine440_44k.flac"] {
        let mut src = FileSource::open(&fixture(name)).expect(name);
        let spec = src.spec();
        assert_eq!((spec.sample_rate, spec.channels), (44_100, 2), "{name}");
        let got = decode_all(&mut src);
        assert_eq!(got.len(), want.len(), "{name}: length");
        // 16-bit quantisation is the only difference.
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1.5 / 32768.0, "{name}: worst sample error {worst}");
        assert_eq!(src.corrupt_packets(), 0);
    }
}

#[test]
fn mono_at_another_rate_decodes() {
    let mut src = FileSource::open(&fixture("sine440_22k_mono.wav")).expect("open");
    let spec = src.spec();
    assert_eq!((spec.sample_rate, spec.channels), (22_050, 1));
    let got = decode_all(&mut src);
    let want = left(&reference(22_050, 1.0), 2);
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1.5 / 32768.0, "worst {worst}");
}

#[test]
fn lossy_formats_decode_to_the_reference_tone() {
    let want = reference(44_100, 1.0);
    let want_rms = rms(&want);
    for name in ["sine440_44k.mp3", "sine440_44k.ogg"] {
        let mut src = FileSource::open(&fixture(name)).expect(name);
        let spec = src.spec();
        assert_eq!((spec.sample_rate, spec.channels), (44_100, 2), "{name}");
        let got = decode_all(&mut src);
        let frames = got.len() / 2;
        assert!(
            (43_000..=47_000).contains(&frames),
            "{name}: {frames} frames"
        );
        // Away from the encoder's edges, the tone is the reference's.
        let body = &left(&got, 2)[4_000..40_000];
        let hz = zero_crossing_hz(body, 44_100.0);
        assert!((hz - 440.0).abs() < 0.5, "{name}: {hz} Hz");
        let level = rms(body);
        assert!(
            (level / want_rms - 1.0).abs() < 0.08,
            "{name}: rms {level} vs {want_rms}"
        );
        // Best-aligned correlation with the reference.
        let r = left(&want, 2);
        let best = (0..2_000)
            .map(|lag| {
                let n = 30_000;
                let (a, b) = (&body[..n], &r[4_000 + lag..4_000 + lag + n]);
                let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                dot / (rms(a) * rms(b) * n as f64)
            })
            .fold(f64::MIN, f64::max);
        assert!(best > 0.999, "{name}: correlation {best}");
    }
}

#[test]
fn seeking_is_sample_accurate() {
    for name in ["sine440_44k.wav", "sine440_44k.flac"] {
        let want = reference(44_100, 1.0);
        let mut src = FileSource::open(&fixture(name)).expect(name);
        for target in [0u64, 1, 12_345, 30_000, 44_099] {
            src.seek(target).expect("seek");
            let mut got = Vec::new();
            let n = src.read(&mut got, 16).expect("read");
            assert!(n > 0, "{name}@{target}");
            let w = &want[target as usize * 2..target as usize * 2 + n * 2];
            let worst = got
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1.5 / 32768.0,
                "{name}: seek to {target} landed elsewhere ({worst})"
            );
        }
        // Past the end: nothing more, no error.
        src.seek(10_000_000).expect("seek past end");
        assert_eq!(src.read(&mut Vec::new(), 16).expect("read"), 0);
    }
}

#[test]
fn a_corrupt_packet_is_skipped_and_counted() {
    let mut bytes = std::fs::read(fixture("sine440_44k.mp3")).expect("fixture");
    // Smash two frames' worth of bytes in the middle (headers and data).
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 900].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xA5;
    }
    let mut f = tempfile::Builder::new()
        .suffix(".mp3")
        .tempfile()
        .expect("tmp");
    f.write_all(&bytes).expect("write");
    let mut src = FileSource::open(f.path()).expect("still opens");
    let got = decode_all(&mut src);
    let frames = got.len() / 2;
    assert!(
        frames > 35_000,
        "most of the track still plays: {frames} frames"
    );
    assert!(
        frames < 44_100,
        "the smashed frames are gone: {frames} frames"
    );
    let flac = std::fs::read(fixture("sine440_44k.flac")).expect("fixture");
    let mut bad = flac.clone();
    let m = bad.len() / 2;
    for b in &mut bad[m..m + 64] {
        *b ^= 0x5A;
    }
    let mut f2 = tempfile::Builder::new()
        .suffix(".flac")
        .tempfile()
        .expect("tmp");
    f2.write_all(&bad).expect("write");
    let mut src2 = FileSource::open(f2.path()).expect("still opens");
    let got2 = decode_all(&mut src2);
    eprintln!(
        "corrupt FLAC: {} frames, {} corrupt packets",
        got2.len() / 2,
        src2.corrupt_packets()
    );
    assert!(
        src2.corrupt_packets() >= 1,
        "the corrupt FLAC frame was counted"
    );
    assert!(got2.len() / 2 > 30_000);
}

#[test]
fn a_file_that_is_not_audio_is_a_clear_error() {
    let mut f = tempfile::Builder::new()
        .suffix(".mp3")
        .tempfile()
        .expect("tmp");
    f.write_all(
        b"this is a shopping list, not a song\n"
            .repeat(100)
            .as_slice(),
    )
    .expect("write");
    match FileSource::open(f.path()) {
        Err(e @ AudioError::NotAudio { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("text decoded as audio"),
    }
    let missing = std::path::Path::new("/nonexistent/track.flac");
    let e = FileSource::open(missing).err().expect("missing file fails");
    assert!(e.to_string().contains("/nonexistent/track.flac"));
}
