//! Fuzz the fleet timeline decoder (what a follower reads from the leader once the
//! datagram's envelope verified): no panic on any bytes, and whatever decodes re-encodes
//! to a bundle that decodes to the same timeline and the same extra messages (the anchor
//! may move by the 1 ns the NTP timetag cannot hold).
#![no_main]

use convoy::sync::timeline::Timeline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((first, extra)) = Timeline::decode(data) else {
        return;
    };
    let Ok(bytes) = first.to_osc_with(extra.clone()) else {
        return;
    };
    let (mut again, extra_again) =
        Timeline::decode(&bytes).expect("a timeline we encoded decodes");
    assert!(
        (again.anchor_fleet_ns - first.anchor_fleet_ns).abs() <= 1,
        "anchor moved: {} -> {}",
        first.anchor_fleet_ns,
        again.anchor_fleet_ns
    );
    assert_eq!(again.tempo_bpm.to_bits(), first.tempo_bpm.to_bits());
    let mut first = first;
    again.anchor_fleet_ns = first.anchor_fleet_ns;
    // Bit-equal above; zeroed so a NaN tempo does not fail the whole comparison.
    (again.tempo_bpm, first.tempo_bpm) = (0.0, 0.0);
    assert_eq!(again, first);
    assert_eq!(extra_again.len(), extra.len());
});
