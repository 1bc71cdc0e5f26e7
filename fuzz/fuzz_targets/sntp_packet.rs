//! Fuzz the SNTP server's request handling (what the leader answers on its time port):
//! no panic on any bytes; only a well-formed client request gets a reply; the reply is a
//! 48-byte server packet, never larger than the request (no amplification), carries the
//! request's transmit time as its originate time, and is itself never answered.
#![no_main]

use convoy::clock::NtpTime;
use convoy::sync::sntp::{is_client_request, reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (stamps, request) = data.split_at(data.len().min(16));
    let mut t = [0u8; 16];
    t[..stamps.len()].copy_from_slice(stamps);
    let t2 = NtpTime(u64::from_be_bytes(t[..8].try_into().expect("8 bytes")));
    let t3 = NtpTime(u64::from_be_bytes(t[8..].try_into().expect("8 bytes")));
    let Some(out) = reply(request, t2, t3) else {
        assert!(!is_client_request(request));
        return;
    };
    assert!(is_client_request(request));
    assert!(out.len() <= request.len(), "reply larger than the request");
    assert_eq!(out[0] & 0x7, 4, "server mode");
    assert_eq!(out[24..32], request[40..48], "originate = client's transmit");
    assert_eq!(out[40..48], t3.0.to_be_bytes());
    assert!(reply(&out, t2, t3).is_none(), "a reply is never answered");
});
