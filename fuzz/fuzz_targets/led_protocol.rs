//! Fuzz the Arduino LED protocol decoders (text lines and COBS/CRC-8 frames), host and
//! controller side, with arbitrary chunking: no panic, every byte consumed, the fixed
//! buffer never overflows.
#![no_main]

use convoy::led::protocol::{Command, Decoder, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut commands = Decoder::<Command>::new();
    let mut replies = Decoder::<Reply>::new();
    for chunk in rest.chunks(step) {
        for packet in commands.push(chunk) {
            let _ = std::hint::black_box(packet);
        }
        for packet in replies.push(chunk) {
            let _ = std::hint::black_box(packet);
        }
    }
    assert_eq!(commands.bytes_consumed(), rest.len() as u64);
    assert_eq!(replies.bytes_consumed(), rest.len() as u64);
});
