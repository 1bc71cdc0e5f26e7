//! Seeded randomized robustness loop (runs in plain `cargo test`, complementing
//! the cargo-fuzz targets in `fuzz/`): mutated and random inputs to the OSC
//! decoder, command parser, pattern compiler and both TCP framers must never
//! panic, and the framers must never buffer more than their cap.

use convoy::osc::codec::{
    self, LengthPrefixDecoder, OscBundle, OscMessage, OscPacket, OscType, SlipDecoder, IMMEDIATE,
};
use convoy::osc::{command, pattern::Pattern};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n.max(1)) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let m = |a: &str, args: Vec<OscType>| {
        OscPacket::Message(OscMessage {
            addr: a.into(),
            args,
        })
    };
    let packets = [
        m("/convoy/play", vec![OscType::String("x".into())]),
        m(
            "/convoy/color",
            vec![OscType::Float(1.0), OscType::Int(2), OscType::Double(0.5)],
        ),
        m(
            "/b",
            vec![OscType::Blob(vec![1, 2, 3, 4, 5]), OscType::Long(9)],
        ),
        OscPacket::Bundle(OscBundle {
            timetag: IMMEDIATE,
            content: vec![
                m("/go", vec![]),
                OscPacket::Bundle(OscBundle {
                    timetag: IMMEDIATE,
                    content: vec![m("/cue/1/start", vec![OscType::Bool(true)])],
                }),
            ],
        }),
    ];
    packets.iter().map(|p| codec::encode(p).unwrap()).collect()
}

fn mutate(rng: &mut Rng, mut d: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len() as u64);
                d[i] = rng.next() as u8;
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len() as u64);
                d.truncate(i);
            }
            2 => {
                let i = rng.below(d.len() as u64 + 1);
                let interesting = [
                    0u8, 0xff, 0x7f, 0x80, b',', b'[', b']', b'#', b'/', 0xC0, 0xDB,
                ];
                d.insert(i, interesting[rng.below(interesting.len() as u64)]);
            }
            _ => {
                let n = rng.below(8);
                d.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    d
}

#[test]
fn decoder_and_parser_survive_mutations() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let seeds = seeds();
    let mut decoded = 0;
    for i in 0..200_000u64 {
        let d = if i % 8 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let s = seeds[rng.below(seeds.len() as u64)].clone();
            mutate(&mut rng, s)
        };
        if let Ok(p) = codec::decode(&d) {
            decoded += 1;
            if let OscPacket::Message(m) = &p {
                let _ = command::parse(m);
            }
            let _ = codec::encode(&p);
        }
    }
    assert!(
        decoded > 1000,
        "mutations should often stay valid: {decoded}"
    );
}

#[test]
fn framers_survive_random_streams() {
    let mut rng = Rng(0xFEED_FACE_1234_5678);
    let seeds = seeds();
    for _ in 0..300 {
        let mut stream = Vec::new();
        for _ in 0..50 {
            let s = seeds[rng.below(seeds.len() as u64)].clone();
            let p = codec::decode(&s).unwrap();
            let framed = if rng.below(2) == 0 {
                codec::encode_slip(&p).unwrap()
            } else {
                codec::encode_length_prefixed(&p).unwrap()
            };
            stream.extend(mutate(&mut rng, framed));
        }
        let mut lp = LengthPrefixDecoder::new(256);
        let mut slip = SlipDecoder::new(256);
        let mut at = 0;
        while at < stream.len() {
            let n = (rng.below(64) + 1).min(stream.len() - at);
            lp.feed(&stream[at..at + n], |_| {});
            slip.feed(&stream[at..at + n], |_| {});
            assert!(lp.buffered() <= 256 && slip.buffered() <= 256);
            at += n;
        }
    }
}

#[test]
fn pattern_compiler_survives_random_text() {
    let mut rng = Rng(42);
    let alphabet = b"/ab*?[]{},!-c#";
    for _ in 0..100_000 {
        let len = rng.below(40);
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64)] as char)
            .collect();
        if let Ok(p) = Pattern::compile(&s) {
            let _ = p.matches("/ab/cab/a");
        }
    }
}
