//! Fuzz `osc::codec::decode`; anything that decodes must re-encode and the
//! re-encoding must decode to the same packet.
#![no_main]

use convoy::osc::{codec, command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = codec::decode(data) {
        if let codec::OscPacket::Message(m) = &p {
            let _ = command::parse(m);
        }
        if let Ok(bytes) = codec::encode(&p) {
            if let Ok(again) = codec::decode(&bytes) {
                // NaN floats compare unequal; compare encodings instead.
                assert_eq!(codec::encode(&again).ok(), Some(bytes));
            }
        }
    }
});
