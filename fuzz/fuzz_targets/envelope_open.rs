//! Fuzz `envelope::open` and the full `Guard::check` on arbitrary bytes, and
//! check that seal → open round-trips for arbitrary payloads.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use convoy::security::{envelope, FleetKey, Guard, GuardConfig, Keyring};
use libfuzzer_sys::fuzz_target;

fn ring() -> &'static Keyring {
    static R: OnceLock<Keyring> = OnceLock::new();
    R.get_or_init(|| {
        Keyring::with_previous(
            FleetKey::from_bytes(2, &[0x42; 32]).unwrap(),
            FleetKey::from_bytes(1, &[0x41; 32]).unwrap(),
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let r = ring();
    let _ = envelope::open(r, data);
    let mut g = Guard::new(r.clone(), &GuardConfig::default());
    let src: SocketAddr = "192.0.2.1:9000".parse().unwrap();
    let _ = g.check(src, data, 0);
    if data.len() >= 20 {
        let sender = u32::from_le_bytes(data[0..4].try_into().unwrap());
        let seq = u64::from_le_bytes(data[4..12].try_into().unwrap());
        let ts = u64::from_le_bytes(data[12..20].try_into().unwrap());
        let payload = &data[20..];
        match envelope::seal(r, sender, seq, ts, payload) {
            Ok(d) => {
                let o = envelope::open(r, &d).expect("sealed envelope must open");
                assert_eq!(
                    (o.sender, o.seq, o.timestamp_ns, o.payload),
                    (sender, seq, ts, payload)
                );
            }
            Err(_) => assert!(payload.len() > envelope::MAX_PAYLOAD),
        }
    }
});
