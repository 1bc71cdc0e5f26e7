//! Clock filter benchmark: the CPU one `ClockFilter::add` costs with a full window (60 s of
//! exchanges at the default `sync.poll_hz` of 10, the 5 ± 3 ms network of the sync issue),
//! and what that is per second of following a leader.
//!
//! ```text
//! cargo bench --bench clock_filter [-- --seconds N --poll-hz HZ]
//! ```
//!
//! Built with `harness = false`; prints one line of figures.

use std::hint::black_box;
use std::time::Instant;

use convoy::sync::filter::{ClockFilter, Exchange, FilterConfig};

/// xorshift64*: deterministic delays without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg("--seconds", 300.0);
    let poll_hz = arg("--poll-hz", 10.0);
    let mut filter = ClockFilter::new(FilterConfig::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (offset0, ppm) = (2.5e9, 187.0);
    let leader = |local: f64| local + offset0 + local * ppm * 1e-6;
    let step_ns = 1e9 / poll_hz;
    let warm_s = FilterConfig::default().window_s;
    let (mut t, mut timed_ns, mut timed) = (1e9f64, 0u128, 0u64);
    while t < seconds * 1e9 {
        let d_up = (5.0 + 3.0 * (2.0 * rng.next() - 1.0)) * 1e6;
        let d_down = (5.0 + 3.0 * (2.0 * rng.next() - 1.0)) * 1e6;
        let (t1, t4) = (t, t + d_up + d_down + 50_000.0);
        let (t2, t3) = (leader(t1 + d_up), leader(t4 - d_down));
        let ex = Exchange {
            local_ns: t4 as i64,
            offset_ns: (((t2 - t1) + (t3 - t4)) / 2.0) as i64,
            delay_ns: ((t4 - t1) - (t3 - t2)) as i64,
        };
        let start = Instant::now();
        black_box(filter.add(black_box(ex)));
        if t > warm_s * 1e9 {
            timed_ns += start.elapsed().as_nanos();
            timed += 1;
        }
        t += step_ns;
    }
    let per_add_us = timed_ns as f64 / timed.max(1) as f64 / 1e3;
    let samples = filter.estimate().map_or(0, |e| e.samples);
    println!(
        "clock_filter: {per_add_us:.1} µs per exchange with {samples} in the window; \
         at {poll_hz} Hz {:.3} % of one core (this machine)",
        per_add_us * poll_hz / 1e6 * 100.0
    );
}
