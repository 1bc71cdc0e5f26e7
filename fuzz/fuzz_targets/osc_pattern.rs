//! Fuzz pattern compilation and matching: input is "pattern\0address".
#![no_main]

use convoy::osc::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (p, a) = s.split_once('\0').unwrap_or((s, "/convoy/play"));
    if let Ok(p) = Pattern::compile(p) {
        let _ = p.matches(a);
    }
});
