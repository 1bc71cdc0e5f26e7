//! Unit tests of the codec: round trips, checksums, resync, limits, fuzz.

use super::*;

fn all_commands() -> Vec<Command> {
    let mut v = vec![
        Command::Hello { protocol: 1 },
        Command::Ping,
        Command::Hue(0),
        Command::Hue(255),
        Command::Bright(17),
        Command::Speed(200),
        Command::Color(Rgb::new(255, 0, 128)),
        Command::Beat {
            beat_in_bar: 3,
            strength: 200,
        },
        Command::Bands3([0, 128, 255]),
        Command::Bands16([7; 16]),
        Command::State(LedState {
            pattern: Pattern::BeatFlash,
            hue: 255,
            bright: 255,
            speed: 255,
            color: Rgb::new(255, 255, 255),
        }),
        Command::Binary,
        Command::Exit,
    ];
    v.extend(Pattern::ALL.iter().map(|p| Command::Pattern(*p)));
    v
}

fn decode_all<T: Message>(bytes: &[u8]) -> Vec<Result<Packet<T>, ProtocolError>> {
    let mut d = Decoder::<T>::new();
    d.push(bytes).collect()
}

fn one<T: Message + fmt::Debug>(bytes: &[u8]) -> Packet<T> {
    let mut r = decode_all::<T>(bytes);
    assert_eq!(r.len(), 1, "expected one message from {bytes:?}, got {r:?}");
    match r.remove(0) {
        Ok(p) => p,
        Err(e) => panic!("decode of {:?} failed: {e}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn every_command_round_trips_as_line() {
    for cmd in all_commands() {
        let mut buf = Vec::new();
        match cmd.encode_line(Some(42), &mut buf) {
            Ok(()) => {}
            Err(ProtocolError::NoLineForm { .. }) => {
                assert!(
                    matches!(cmd, Command::Bands16(_)),
                    "{cmd:?} must have a line form"
                );
                continue;
            }
            Err(e) => panic!("{cmd:?}: {e}"),
        }
        assert!(buf.len() <= MAX_LINE_LEN + 1, "{cmd:?} line too long");
        assert!(!buf.contains(&0));
        let p = one::<Command>(&buf);
        assert_eq!(p.body, cmd);
        assert_eq!(p.seq, Some(42));
        assert_eq!(p.framing, Framing::Line);
        assert!(p.checked);
        // Without seq too.
        buf.clear();
        cmd.encode_line(None, &mut buf).ok();
        let p = one::<Command>(&buf);
        assert_eq!((p.body, p.seq), (cmd, None));
    }
}

#[test]
fn every_binary_command_round_trips_as_frame() {
    let mut binary = 0;
    for cmd in all_commands() {
        for (seq, ack) in [(0u8, false), (255, true), (0x00, true), (13, false)] {
            let mut buf = Vec::new();
            match cmd.encode_frame(seq, ack, &mut buf) {
                Ok(()) => {}
                Err(ProtocolError::NoBinaryForm { .. }) => continue,
                Err(e) => panic!("{cmd:?}: {e}"),
            }
            binary += 1;
            assert_eq!(buf.first(), Some(&0));
            assert_eq!(buf.last(), Some(&0));
            assert!(!buf[1..buf.len() - 1].contains(&0));
            assert!(buf.len() - 2 <= MAX_FRAME_LEN);
            let p = one::<Command>(&buf);
            assert_eq!(p.body, cmd);
            assert_eq!(p.seq, Some(seq));
            assert_eq!(p.ack_requested, ack);
            assert_eq!(p.framing, Framing::Binary);
        }
    }
    // bands3, bands16, beat, state, exit, ping × 4 variants
    assert_eq!(binary, 6 * 4);
}

#[test]
fn line_only_commands_refuse_binary() {
    for cmd in [
        Command::Hello { protocol: 1 },
        Command::Hue(1),
        Command::Pattern(Pattern::Vu),
        Command::Binary,
    ] {
        let mut buf = Vec::new();
        assert!(matches!(
            cmd.encode_frame(1, false, &mut buf),
            Err(ProtocolError::NoBinaryForm { .. })
        ));
        assert!(buf.is_empty());
    }
}

#[test]
fn every_reply_round_trips() {
    let replies = [
        Reply::Ok,
        Reply::Err {
            code: ErrorCode::UnknownCommand,
            text: "unknown command".into(),
        },
        Reply::Err {
            code: ErrorCode::Other(77),
            text: String::new(),
        },
        Reply::Hello(DeviceInfo {
            firmware: "0.3.1".into(),
            protocol: 1,
            num_leds: 300,
        }),
    ];
    for r in &replies {
        for seq in [None, Some(0), Some(255)] {
            let mut buf = Vec::new();
            encode_line(r, seq, &mut buf).ok();
            let p = one::<Reply>(&buf);
            assert_eq!(
                (&p.body, p.seq),
                (r, seq),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
    // Binary ACKs: status 0 is OK, others are errors without text.
    for (r, seq) in [(Reply::Ok, 9u8), (replies[1].clone(), 10)] {
        let mut buf = Vec::new();
        encode_frame(&r, seq, false, &mut buf).ok();
        let p = one::<Reply>(&buf);
        assert_eq!(p.seq, Some(seq));
        match (&r, &p.body) {
            (Reply::Ok, Reply::Ok) => {}
            (Reply::Err { code: a, .. }, Reply::Err { code: b, text }) => {
                assert_eq!(a, b);
                assert!(text.is_empty());
            }
            other => panic!("mismatch {other:?}"),
        }
    }
}

#[test]
fn exact_wire_forms() {
    let mut buf = Vec::new();
    Command::Pattern(Pattern::Rainbow)
        .encode_line(Some(12), &mut buf)
        .ok();
    let sum = line_checksum(b"PATTERN:rainbow#12");
    assert_eq!(buf, format!("PATTERN:rainbow#12*{sum:02X}\n").into_bytes());
    buf.clear();
    encode_line(&Reply::Ok, Some(5), &mut buf).ok();
    assert!(buf.starts_with(b"OK 5*"));
    // Humans: lowercase, no checksum, no seq, CRLF.
    let p = one::<Command>(b"pattern:Chase\r\n");
    assert_eq!(p.body, Command::Pattern(Pattern::Chase));
    assert!(!p.checked);
    assert_eq!(
        one::<Command>(b"BEAT\n").body,
        Command::Beat {
            beat_in_bar: 0,
            strength: 255
        }
    );
    // The firmware's replies may omit the checksum.
    assert_eq!(one::<Reply>(b"OK 7\n").seq, Some(7));
    assert_eq!(one::<Reply>(b"OK\n").seq, None);
}

#[test]
fn crc8_check_value_and_cobs_vectors() {
    assert_eq!(crc8(b"123456789"), 0xF4);
    let cases: [(&[u8], &[u8]); 4] = [
        (&[0x00], &[0x01, 0x01]),
        (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
        (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        (&[], &[0x01]),
    ];
    for (raw, enc) in cases {
        let mut out = Vec::new();
        cobs_encode(raw, &mut out);
        assert_eq!(out, enc);
        let mut dec = [0u8; 8];
        assert_eq!(cobs_decode(enc, &mut dec), Some(raw.len()));
        assert_eq!(&dec[..raw.len()], raw);
    }
    let mut small = [0u8; 1];
    assert_eq!(
        cobs_decode(&[0x03, 1, 2], &mut small),
        None,
        "output overflow is an error"
    );
    assert_eq!(
        cobs_decode(&[0x05, 1], &mut [0u8; 8]),
        None,
        "truncated block"
    );
}

#[test]
fn checksum_mismatch_is_rejected() {
    let mut buf = Vec::new();
    Command::Hue(100).encode_line(Some(3), &mut buf).ok();
    // Corrupt a digit of the value, keep the checksum.
    let pos = buf.iter().position(|&b| b == b'1').unwrap_or(0);
    buf[pos] = b'2';
    let r = decode_all::<Command>(&buf);
    assert!(
        matches!(
            r.as_slice(),
            [Err(ProtocolError::BadChecksum { offset: 0, .. })]
        ),
        "{r:?}"
    );
    assert_eq!(
        r[0].as_ref().err().map(|e| e.error_code()),
        Some(ErrorCode::BadChecksum)
    );
    for bad in [&b"HUE:1*G1\n"[..], b"HUE:1*1\n", b"HUE:1*123\n"] {
        assert!(matches!(
            decode_all::<Command>(bad).as_slice(),
            [Err(ProtocolError::BadChecksumSyntax { .. })]
        ));
    }
}

#[test]
fn frame_crc_and_cobs_errors_are_typed() {
    let mut buf = Vec::new();
    Command::Bands3([10, 20, 30])
        .encode_frame(1, false, &mut buf)
        .ok();
    let mut flipped = buf.clone();
    flipped[3] ^= 0x40;
    let r = decode_all::<Command>(&flipped);
    assert!(
        matches!(
            r.as_slice(),
            [Err(
                ProtocolError::BadCrc { .. } | ProtocolError::BadCobs { .. }
            )]
        ),
        "{r:?}"
    );
    // Valid CRC but unknown type 0x33.
    let mut raw = vec![0x33, 1, 5];
    raw.push(crc8(&raw));
    let mut f = vec![0];
    cobs_encode(&raw, &mut f);
    f.push(0);
    assert!(matches!(
        decode_all::<Command>(&f).as_slice(),
        [Err(ProtocolError::UnknownFrameType { kind: 0x33, .. })]
    ));
    // Known type, wrong payload length.
    let mut raw = vec![frame_type::BANDS3, 1, 5];
    raw.push(crc8(&raw));
    let mut f = vec![0];
    cobs_encode(&raw, &mut f);
    f.push(0);
    assert!(matches!(
        decode_all::<Command>(&f).as_slice(),
        [Err(ProtocolError::BadPayloadLength { len: 1, .. })]
    ));
    // Too short.
    assert!(matches!(
        decode_all::<Command>(&[0, 2, 9, 0]).as_slice(),
        [Err(ProtocolError::FrameTooShort { .. })]
    ));
}

#[test]
fn bad_arguments_are_typed() {
    for bad in [
        &b"HUE:256\n"[..],
        b"HUE:-1\n",
        b"HUE:\n",
        b"HUE\n",
        b"COLOR:1,2\n",
        b"COLOR:1,2,3,4\n",
        b"PATTERN:disco\n",
        b"BANDS:1,2,x\n",
        b"STATE:vu,1,2,3\n",
        b"PING:1\n",
        b"BEAT:1\n",
    ] {
        let r = decode_all::<Command>(bad);
        assert!(
            matches!(r.as_slice(), [Err(ProtocolError::BadArgument { .. })]),
            "{}: {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(matches!(
        decode_all::<Command>(b"DANCE:1\n").as_slice(),
        [Err(ProtocolError::UnknownMessage { .. })]
    ));
    assert!(matches!(
        decode_all::<Command>(b"HUE:1#300\n").as_slice(),
        [Err(ProtocolError::BadSequence { .. })]
    ));
    assert!(matches!(
        decode_all::<Command>(b"HUE:\x011\n").as_slice(),
        [Err(ProtocolError::NotPrintable { byte: 1, .. })]
    ));
}

#[test]
fn resyncs_after_garbage() {
    let mut stream = b"\xff\xfe garbage!! \x07\n".to_vec();
    Command::Hue(5).encode_line(Some(1), &mut stream).ok();
    stream.extend_from_slice(b"half a line then a frame");
    Command::Bands3([1, 2, 3])
        .encode_frame(2, false, &mut stream)
        .ok();
    stream.extend_from_slice(&[0, 0x05, 0x44]); // truncated frame ...
    stream.extend_from_slice(&[0]); // ... closed early
    Command::Beat {
        beat_in_bar: 1,
        strength: 2,
    }
    .encode_frame(3, false, &mut stream)
    .ok();
    Command::Ping.encode_line(Some(4), &mut stream).ok();
    let good: Vec<_> = decode_all::<Command>(&stream)
        .into_iter()
        .filter_map(Result::ok)
        .map(|p| (p.body, p.seq))
        .collect();
    assert_eq!(
        good,
        vec![
            (Command::Hue(5), Some(1)),
            (Command::Bands3([1, 2, 3]), Some(2)),
            (
                Command::Beat {
                    beat_in_bar: 1,
                    strength: 2
                },
                Some(3)
            ),
            (Command::Ping, Some(4)),
        ]
    );
}

#[test]
fn errors_carry_stream_offsets() {
    let mut d = Decoder::<Command>::new();
    let first: Vec<_> = d.push(b"PING\n").collect();
    assert!(first[0].is_ok());
    let r: Vec<_> = d.push(b"NOPE\n").collect();
    assert!(
        matches!(
            r.as_slice(),
            [Err(ProtocolError::UnknownMessage { offset: 5, .. })]
        ),
        "{r:?}"
    );
    assert_eq!(d.bytes_consumed(), 10);
}

#[test]
fn max_line_length_is_enforced() {
    let mut exact = vec![b'A'; MAX_LINE_LEN];
    exact.push(b'\n');
    // 64 bytes is accepted by the framer (then rejected as unknown).
    assert!(matches!(
        decode_all::<Command>(&exact).as_slice(),
        [Err(ProtocolError::UnknownMessage { .. })]
    ));
    let mut long = vec![b'A'; 10_000];
    long.push(b'\n');
    Command::Ping.encode_line(Some(9), &mut long).ok();
    let r = decode_all::<Command>(&long);
    assert_eq!(
        r.len(),
        2,
        "one error for the whole long line, then the next line"
    );
    assert!(matches!(
        r[0],
        Err(ProtocolError::LineTooLong {
            offset: 0,
            max: MAX_LINE_LEN
        })
    ));
    assert_eq!(r[1].as_ref().ok().map(|p| p.body), Some(Command::Ping));
}

#[test]
fn max_frame_length_is_enforced() {
    let mut s = vec![0u8];
    s.extend(std::iter::repeat_n(0x11, 500));
    s.push(b'\n'); // a human's newline ends the skip too
    Command::Ping.encode_line(None, &mut s).ok();
    Command::Exit.encode_frame(1, true, &mut s).ok();
    let r = decode_all::<Command>(&s);
    assert!(
        matches!(r[0], Err(ProtocolError::FrameTooLong { offset: 0, .. })),
        "{r:?}"
    );
    let ok: Vec<_> = r
        .iter()
        .filter_map(|x| x.as_ref().ok())
        .map(|p| p.body)
        .collect();
    assert_eq!(ok, vec![Command::Ping, Command::Exit]);
}

#[test]
fn quiet_gap_expires_an_open_frame_but_not_a_line() {
    let mut d = Decoder::<Command>::new();
    assert_eq!(d.push(&[0, 0x05, 0x11]).count(), 0);
    assert!(d.expire_partial_frame());
    let mut s = Vec::new();
    Command::Hue(3).encode_line(None, &mut s).ok();
    let (a, b) = s.split_at(3);
    assert_eq!(d.push(a).count(), 0);
    assert!(!d.expire_partial_frame(), "slow typists keep their line");
    let r: Vec<_> = d.push(b).collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].as_ref().ok().map(|p| p.body), Some(Command::Hue(3)));
}

#[test]
fn nul_cuts_a_line_and_starts_a_frame() {
    let mut s = b"HUE:1".to_vec();
    Command::Bands3([4, 5, 6])
        .encode_frame(7, false, &mut s)
        .ok();
    let r = decode_all::<Command>(&s);
    assert!(matches!(r[0], Err(ProtocolError::NulInLine { offset: 0 })));
    assert_eq!(
        r[1].as_ref().ok().map(|p| p.body),
        Some(Command::Bands3([4, 5, 6]))
    );
}

#[test]
fn err_reply_text_is_sanitized_and_bounded() {
    let r = Reply::Err {
        code: ErrorCode::BadArgument,
        text: "x#y*z\n".repeat(50),
    };
    let mut buf = Vec::new();
    encode_line(&r, Some(200), &mut buf).ok();
    assert!(buf.len() <= MAX_LINE_LEN + 1, "{} bytes", buf.len());
    let p = one::<Reply>(&buf);
    assert_eq!(p.seq, Some(200));
    assert!(matches!(
        p.body,
        Reply::Err {
            code: ErrorCode::BadArgument,
            ..
        }
    ));
}

#[test]
fn pattern_ids_and_names_are_stable() {
    let names: Vec<_> = Pattern::ALL.iter().map(|p| (p.id(), p.name())).collect();
    assert_eq!(
        names,
        vec![
            (0, "off"),
            (1, "solid"),
            (2, "rainbow"),
            (3, "pulse"),
            (4, "strobe"),
            (5, "chase"),
            (6, "sparkle"),
            (7, "vu"),
            (8, "beatflash")
        ]
    );
    for p in Pattern::ALL {
        assert_eq!(Pattern::from_id(p.id()), Some(p));
        assert_eq!(p.name().to_uppercase().parse::<Pattern>().ok(), Some(p));
    }
    assert_eq!(Pattern::from_id(9), None);
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut cmd_dec = Decoder::<Command>::new();
    let mut rep_dec = Decoder::<Reply>::new();
    let mut produced = 0usize;
    let mut fed = 0usize;
    for round in 0..2000 {
        let len = (rng.next() % 200) as usize;
        // Bias towards protocol-looking bytes now and then.
        let alphabet: &[u8] = b"0123456789,:#*\n\0OKERRHUEPATTERNBANDSCONVOY-LED ";
        let chunk: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if round % 2 == 0 {
                    r as u8
                } else {
                    alphabet[(r % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        fed += chunk.len();
        for r in cmd_dec.push(&chunk) {
            produced += 1;
            if let Ok(p) = r {
                // Anything accepted must re-encode within the limits.
                let mut out = Vec::new();
                let _ = p.body.encode_line(p.seq, &mut out);
                assert!(out.len() <= MAX_LINE_LEN + 1);
            }
        }
        produced += rep_dec.push(&chunk).count();
    }
    assert!(
        produced <= 2 * fed,
        "at most one result per input byte per decoder"
    );
    // Still in sync after all that garbage, once the line went quiet
    // (which drops an open frame) and a newline ended any partial line.
    cmd_dec.expire_partial_frame();
    let mut tail = b"\n".to_vec();
    Command::Hue(1).encode_line(Some(1), &mut tail).ok();
    let last = cmd_dec.push(&tail).last();
    assert_eq!(
        last.and_then(Result::ok).map(|p| p.body),
        Some(Command::Hue(1))
    );
}

#[test]
fn mutated_valid_messages_never_panic() {
    let mut rng = XorShift(12345);
    let mut base = Vec::new();
    for cmd in all_commands() {
        let _ = cmd.encode_line(Some(1), &mut base);
        let _ = cmd.encode_frame(2, true, &mut base);
    }
    let mut d = Decoder::<Command>::new();
    let mut accepted = 0;
    for _ in 0..300 {
        let mut m = base.clone();
        for _ in 0..(rng.next() % 8) {
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
        }
        accepted += d.push(&m).filter(|r| r.is_ok()).count();
    }
    assert!(accepted > 0, "most messages survive a few mutations");
}
