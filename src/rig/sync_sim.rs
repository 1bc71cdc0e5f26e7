//! A deterministic, simulated-time model of one follower joining a leader (issue #23): the
//! real [`ClockFilter`] fed SNTP exchanges whose one-way delays come from the relay's
//! seeded [`Model`], the real [`FollowerController`] (PI, join seek, lock) driving a
//! virtual DAC with its own crystal error behind a ring buffer, and the leader's playback
//! as the timeline says. Minutes of simulated time take a fraction of a second of CPU, so
//! filter and loop changes can be measured over many seeds and profiles before a real
//! `convoy tool scenario` run (`examples/sync_sim.rs`).
//!
//! Modelled as the scenario runs it: the follower's SNTP client opens with a burst of
//! [`BURST`] exchanges [`BURST_GAP`] apart, then polls at `poll_hz`, one exchange at a time,
//! each waiting for its reply as the node does ([`ReplyTimeout`], at most 500 ms); the
//! relay's model sees every request (Up) and reply (Down) at the time it arrives; `sntpc`
//! timestamps to the microsecond; the PLL sees a report per sink period (256 frames) and a
//! speed or seek takes effect when the audio written now is heard (the 120 ms ring). Not modelled: the leader's own timeline regression (its line is
//! exact here), process scheduling (the real run adds host jitter on a loaded machine:
//! `host_jitter_ms` adds an exponential delay to every timestamp read on either side).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audio::{Control, Controller, PlaybackReport};
use crate::clock::{Basis, FleetClock, LocalClock};
use crate::rig::impair::{Dir, Model, Profile, Rng};
use crate::rig::measure::{after_lock_ms, quantile};
use crate::sync::filter::{ClockFilter, Exchange, FilterConfig};
use crate::sync::follower::{BURST, BURST_GAP};
use crate::sync::pll::{FollowerController, LockStatus, NetState, PllConfig};
use crate::sync::sntp::ReplyTimeout;
use crate::sync::timeline::Timeline;

/// Sample rate of the simulated track and DACs.
const RATE: f64 = 48_000.0;
/// Sink period, ns (256 frames at 48 kHz).
const PERIOD_NS: u64 = 5_333_333;
/// Ring: audio written now is heard this much later, ns.
const RING_NS: u64 = 120_000_000;
/// The node's SNTP reply timeout ceiling (`node::roles`); each wait is [`ReplyTimeout`]'s.
const TIMEOUT: Duration = Duration::from_millis(500);
/// The server's hold time between T2 and T3, ns.
const HOLD_NS: u64 = 30_000;
/// Offsets are sampled this often, as the scenario does.
const SAMPLE_NS: u64 = 100_000_000;

/// One simulated follower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Network model of the SNTP relay.
    pub profile: Profile,
    /// Relay seed.
    pub seed: u64,
    /// Simulated seconds after the follower starts.
    pub seconds: f64,
    /// Leader clock against the monotonic clock, ppm.
    pub leader_ppm: f64,
    /// Follower clock against the monotonic clock, ppm.
    pub follower_ppm: f64,
    /// Follower clock minus leader clock at the start, s.
    pub offset_s: f64,
    /// Leader DAC crystal error, ppm.
    pub leader_dac_ppm: f64,
    /// Follower DAC crystal error, ppm.
    pub follower_dac_ppm: f64,
    /// Monotonic second at which the follower starts (the relay's clock starts at 0).
    pub start_s: f64,
    /// SNTP polls per second after the opening burst.
    pub poll_hz: f64,
    /// Mean of an exponential delay added to every timestamp read (a loaded host), ms.
    pub host_jitter_ms: f64,
    /// Filter settings.
    pub filter: FilterConfig,
    /// Loop settings.
    pub pll: PllConfig,
}

impl SimConfig {
    /// The scenario's bike-`k` of `nodes` (its clock, DAC and relay seed, `--seed 1`),
    /// under `profile`.
    pub fn scenario_bike(profile: Profile, nodes: usize, k: usize, seed: u64) -> SimConfig {
        // As `rig::scenario::spread`: distinct values in [-1, 1] per node.
        let spread = |k: usize| {
            if nodes <= 1 {
                0.0
            } else {
                2.0 * ((k * 7 + 3) % nodes) as f64 / (nodes - 1) as f64 - 1.0
            }
        };
        SimConfig {
            profile,
            // The SNTP relay of follower k: seed·1000 + 2k + 1.
            seed: seed.wrapping_mul(1000) + 2 * k as u64 + 1,
            seconds: 60.0,
            leader_ppm: 200.0 * spread(1),
            follower_ppm: 200.0 * spread(k + 1),
            offset_s: 3.0 * (spread(k) - spread(0)),
            leader_dac_ppm: 150.0 * spread(2),
            follower_dac_ppm: 150.0 * spread(k + 2),
            start_s: 1.0,
            poll_hz: 10.0,
            host_jitter_ms: 0.0,
            filter: FilterConfig::default(),
            pll: PllConfig::default(),
        }
    }
}

/// What one run measured. Times are seconds after the follower started; errors in ms.
#[derive(Debug, Clone, Default)]
pub struct SimResult {
    /// |fleet estimate − leader clock| over the first 10 s after the first estimate.
    pub est_early_ms: Vec<f64>,
    /// The same from then on.
    pub est_steady_ms: Vec<f64>,
    /// Lock as the scenario counts it (|offset| < 1 ms held 2 s), s after start.
    pub lock_s: Option<f64>,
    /// |playback offset| from lock to lock + 10 s.
    pub play_early_ms: Vec<f64>,
    /// |playback offset| from lock + 10 s on.
    pub play_steady_ms: Vec<f64>,
    /// (s, estimate ppm error) once a second: the frequency's path.
    pub ppm_err: Vec<(f64, f64)>,
    /// (s, estimate error ms, playback offset ms, speed ppm) every 100 ms, signed.
    pub trace: Vec<(f64, f64, f64, f64)>,
    /// Exchanges fed to the filter.
    pub exchanges: usize,
    /// Hard seeks after the PLL's own first lock.
    pub seeks_after_lock: u64,
    /// Largest |speed|, ppm.
    pub max_speed_ppm: f64,
}

/// p50, p99, max of `v` (NaN when empty).
pub fn q3(v: &[f64]) -> (f64, f64, f64) {
    (
        quantile(v, 0.5),
        quantile(v, 0.99),
        v.iter().copied().fold(f64::NAN, f64::max),
    )
}

/// The SNTP client's state between events.
enum Sntp {
    /// Next request goes out at this monotonic ns.
    Idle { next: u64 },
    /// A reply (or timeout) is due at `at`.
    Waiting { at: u64, ex: Option<Exchange> },
}

/// Run one follower for `cfg.seconds` of simulated time.
pub fn run(cfg: &SimConfig) -> SimResult {
    let ms = 1e6;
    let start = (cfg.start_s * 1e9) as u64;
    let end = start + (cfg.seconds * 1e9) as u64;
    let leader = LocalClock {
        offset_ns: 1_000_000_000_000,
        ppm: cfg.leader_ppm,
        ..LocalClock::IDEAL
    };
    let follower = LocalClock {
        offset_ns: leader.offset_ns + (cfg.offset_s * 1e9) as i64,
        ppm: cfg.follower_ppm,
        ..LocalClock::IDEAL
    };
    let mut model = Model::new(cfg.profile.config(cfg.seed));
    let mut host = Rng(cfg.seed ^ 0x05ee_d0f4_057a);
    let jitter = |rng: &mut Rng| -> u64 {
        if cfg.host_jitter_ms <= 0.0 {
            return 0;
        }
        let u = (1.0 - rng.next()).max(f64::MIN_POSITIVE);
        (-cfg.host_jitter_ms * ms * u.ln()) as u64
    };
    let mut filter = ClockFilter::new(cfg.filter);
    let fleet = FleetClock::new(follower, 0, Basis::Follow(None));
    // The leader has played frame 0 at monotonic 0.5 s; its DAC sets the rate.
    let leader_rate = RATE * (1.0 + cfg.leader_dac_ppm * 1e-6);
    let leader_pos = |mono: u64| (mono as f64 - 0.5e9) * 1e-9 * leader_rate;
    let timeline = Timeline {
        leader: "leader".into(),
        incarnation: 1,
        seq: 1,
        track: "sim".into(),
        track_rate: RATE as u32,
        anchor_frame: 0.0,
        anchor_fleet_ns: leader.from_mono(500_000_000),
        frames_per_sec: leader_rate / (1.0 + cfg.leader_ppm * 1e-6),
        playing: true,
        tempo_bpm: 0.0,
        epoch: 1,
    };
    let net = Arc::new(Mutex::new(NetState {
        timeline: Some(timeline),
        heard_mono_ns: start,
        ..NetState::default()
    }));
    let status = Arc::new(Mutex::new(LockStatus::default()));
    let mut pll = FollowerController::new(cfg.pll, fleet.clone(), net.clone(), status.clone());

    // The follower's playback: the track frame heard at `pos_at`, advancing at the DAC's rate
    // times the speed; speed changes and seeks land when the ring's audio is heard.
    let dac_rate = RATE * (1.0 + cfg.follower_dac_ppm * 1e-6);
    let mut pos = leader_pos(start) - 0.3 * RATE; // joined 300 ms off: a seek
    let mut pos_at = start;
    let mut speed = 0.0f64;
    let mut pending: VecDeque<(u64, Control)> = VecDeque::new();

    let mut sntp = Sntp::Idle { next: start };
    let mut burst = BURST;
    let mut wait = ReplyTimeout::new(TIMEOUT);
    let mut next_tick: Option<u64> = None;
    let mut next_report = start;
    let mut next_sample = start;
    let mut first_est: Option<u64> = None;
    let mut series: Vec<(u64, f64)> = Vec::new();
    let mut out = SimResult::default();
    let poll_ns = (1e9 / cfg.poll_hz.max(0.05)) as u64;
    let mut next_ppm = start;
    loop {
        let sntp_at = match &sntp {
            Sntp::Idle { next } => *next,
            Sntp::Waiting { at, .. } => *at,
        };
        let pend_at = pending.front().map_or(u64::MAX, |p| p.0);
        let now = sntp_at.min(next_report).min(next_sample).min(pend_at);
        if now >= end {
            break;
        }
        // Advance playback to `now`.
        pos += (now - pos_at) as f64 * 1e-9 * dac_rate * (1.0 + speed * 1e-6);
        pos_at = now;
        if pend_at == now {
            if let Some((_, c)) = pending.pop_front() {
                match c {
                    Control::Speed(p) => speed = p,
                    Control::Seek(f) => pos = f as f64,
                    _ => {}
                }
            }
            continue;
        }
        if sntp_at == now {
            sntp = match std::mem::replace(&mut sntp, Sntp::Idle { next: 0 }) {
                Sntp::Idle { .. } => {
                    let timeout_ns = wait.next().as_nanos() as u64;
                    let t1_mono = now + jitter(&mut host);
                    let t_s = now as f64 * 1e-9;
                    let up = model.fate(t_s, Dir::Up).delays_s.first().copied();
                    let ex = up.and_then(|up| {
                        let at_leader = now + (up * 1e9) as u64;
                        let t2_mono = at_leader + jitter(&mut host);
                        let t3_mono = t2_mono + HOLD_NS;
                        let down = model
                            .fate(t3_mono as f64 * 1e-9, Dir::Down)
                            .delays_s
                            .first()
                            .copied()?;
                        let t4_mono = t3_mono + (down * 1e9) as u64 + jitter(&mut host);
                        let t1 = follower.from_mono(t1_mono) as f64;
                        let t2 = leader.from_mono(t2_mono) as f64;
                        let t3 = leader.from_mono(t3_mono) as f64;
                        let t4 = follower.from_mono(t4_mono) as f64;
                        // sntpc reports whole microseconds.
                        let us = |ns: f64| (ns / 1e3).round() as i64 * 1_000;
                        (t4_mono - now < timeout_ns).then_some((
                            t4_mono,
                            Exchange {
                                local_ns: t4 as i64,
                                offset_ns: us(((t2 - t1) + (t3 - t4)) / 2.0),
                                delay_ns: us((t4 - t1) - (t3 - t2)),
                            },
                        ))
                    });
                    match ex {
                        Some((at, ex)) => Sntp::Waiting { at, ex: Some(ex) },
                        None => Sntp::Waiting {
                            at: now + timeout_ns,
                            ex: None,
                        },
                    }
                }
                Sntp::Waiting { ex, .. } => {
                    match ex {
                        None => wait.timed_out(),
                        Some(ex) => {
                            wait.answered(&ex);
                            out.exchanges += 1;
                            fleet.set_estimate(filter.add(ex));
                            first_est.get_or_insert(now);
                        }
                    }
                    let next = if burst > 0 {
                        burst -= 1;
                        now + BURST_GAP.as_nanos() as u64
                    } else {
                        // tokio's interval: the first tick at once, a missed one delayed.
                        let n = next_tick.filter(|t| *t >= now).unwrap_or(now);
                        next_tick = Some(n + poll_ns);
                        n
                    };
                    Sntp::Idle { next }
                }
            };
            continue;
        }
        if next_sample == now {
            next_sample += SAMPLE_NS;
            if let (Some(f0), Some(est)) = (first_est, fleet.estimate()) {
                let local = follower.from_mono(now);
                let err = (est.fleet_at(local) - leader.from_mono(now)) as f64 / ms;
                if now < f0 + 10_000_000_000 {
                    out.est_early_ms.push(err.abs());
                } else {
                    out.est_steady_ms.push(err.abs());
                }
                if now >= next_ppm {
                    next_ppm += 1_000_000_000;
                    // Truth: leader rate over follower rate.
                    let truth = ((1.0 + cfg.leader_ppm * 1e-6) / (1.0 + cfg.follower_ppm * 1e-6)
                        - 1.0)
                        * 1e6;
                    out.ppm_err
                        .push(((now - start) as f64 * 1e-9, est.ppm - truth));
                }
            }
            series.push((now - start, (leader_pos(now) - pos) / RATE));
            let est_err = fleet.estimate().map_or(f64::NAN, |est| {
                (est.fleet_at(follower.from_mono(now)) - leader.from_mono(now)) as f64 / ms
            });
            out.trace.push((
                (now - start) as f64 * 1e-9,
                est_err,
                (leader_pos(now) - pos) / RATE * 1e3,
                speed,
            ));
            continue;
        }
        // A sink period: report what is heard now.
        next_report += PERIOD_NS;
        let report = PlaybackReport {
            heard_at_ns: now,
            track_frame: Some(pos),
            track_rate: RATE as u32,
            write_heard_at_ns: now + RING_NS,
            speed_ppm: speed,
            device_frame: 0,
        };
        net.lock().map(|mut n| n.heard_mono_ns = now).ok();
        match pll.on_report(&report) {
            Control::Keep => {}
            Control::Seek(f) => {
                // The seeked frame is heard at write_heard_at; until then the old audio.
                pending.push_back((now + RING_NS, Control::Seek(f)));
            }
            c => pending.push_back((now + RING_NS, c)),
        }
    }
    let (lock, after) = after_lock_ms(&series);
    out.lock_s = lock.map(|l| l as f64 * 1e-9);
    if let Some(l) = lock {
        for ((t, _), a) in series.iter().filter(|(t, _)| *t >= l).zip(after) {
            if *t < l + 10_000_000_000 {
                out.play_early_ms.push(a);
            } else {
                out.play_steady_ms.push(a);
            }
        }
    }
    if let Ok(s) = status.lock() {
        out.seeks_after_lock = s.seeks_after_lock;
        out.max_speed_ppm = s.max_abs_speed_ppm;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model joins, locks and holds: at the default network, a follower locks within a
    /// few seconds and stays within a millisecond.
    #[test]
    fn a_simulated_follower_joins_and_locks() {
        let mut cfg = SimConfig::scenario_bike(Profile::Default, 5, 4, 1);
        cfg.seconds = 30.0;
        let r = run(&cfg);
        assert!(r.exchanges > 200, "exchanges {}", r.exchanges);
        let lock = r.lock_s.expect("locks");
        assert!(lock < 5.0, "lock {lock}");
        let (_, _, max) = q3(&r.play_steady_ms);
        assert!(max < 1.0, "steady max {max} ms");
        assert_eq!(r.seeks_after_lock, 0);
    }
}
