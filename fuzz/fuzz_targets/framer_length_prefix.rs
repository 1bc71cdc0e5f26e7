//! Fuzz the OSC 1.0 length-prefix stream decoder with arbitrary chunking.
#![no_main]

use convoy::osc::codec::LengthPrefixDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut d = LengthPrefixDecoder::new(512);
    let step = usize::from(split).max(1);
    for chunk in rest.chunks(step) {
        d.feed(chunk, |_| {});
        assert!(d.buffered() <= 512);
    }
});
