//! Fuzz the HTTP `Range` header parser behind `GET /api/tracks/{sha256}`: no panic for
//! any header text and file length, and a partial answer always lies inside the file.
#![no_main]

use convoy::web::range::{parse_range, RangeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (len_bytes, header) = data.split_at(data.len().min(8));
    let mut l = [0u8; 8];
    l[..len_bytes.len()].copy_from_slice(len_bytes);
    // Lengths both tiny and huge: the low bits pick a small file half the time.
    let raw = u64::from_le_bytes(l);
    let len = if raw & 1 == 0 { (raw >> 1) & 0xffff } else { raw >> 1 };
    let header = String::from_utf8_lossy(header);
    let first = parse_range(Some(&header), len);
    match first {
        RangeRequest::Part { start, end } => {
            assert!(start <= end, "{header:?} of {len}: {start} > {end}");
            assert!(end < len, "{header:?} of {len}: end {end} past the file");
        }
        RangeRequest::Unsatisfiable | RangeRequest::Full => {}
    }
    assert_eq!(parse_range(Some(&header), len), first, "deterministic");
});
