//! Fuzz the membership heartbeat decoder (the payload of a discovery/heartbeat datagram
//! once its envelope verified): no panic, and whatever decodes re-encodes to a heartbeat
//! that decodes to the same value.
#![no_main]

use convoy::fleet::wire::Heartbeat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(beat) = Heartbeat::decode(data) else {
        return;
    };
    let mut out = Vec::new();
    if beat.encode_into(&mut out).is_ok() {
        assert_eq!(Heartbeat::decode(&out).ok(), Some(beat));
    }
});
