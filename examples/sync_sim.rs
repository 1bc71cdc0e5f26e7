//! Simulated-time sync runs (issue #23): the real clock filter and follower PLL against the
//! relay's seeded network model, many seeds and profiles in seconds of CPU
//! (`convoy::rig::sync_sim`). Prints, per profile, every run's clock-estimate error and
//! playback offset (first 10 s / steady) and the pooled quantiles.
//!
//! `cargo run --example sync_sim -- [--profiles default,slow,wifi-city,hops] [--seeds 8]
//! [--seconds 60] [--host-jitter-ms 0] [--quiet] [--trace PROFILE:BIKE:SEED]`

use clap::{Parser, ValueEnum};
use convoy::rig::impair::Profile;
use convoy::rig::sync_sim::{q3, run, SimConfig, SimResult};

#[derive(Parser)]
struct Args {
    /// Profiles, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default,slow,wifi-city,hops"
    )]
    profiles: Vec<String>,
    /// Seeds per follower (the scenario's `--seed`, 1..=N).
    #[arg(long, default_value_t = 8)]
    seeds: u64,
    /// Nodes, as the scenario's `--nodes` (followers 1..nodes, their clocks and DACs).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Simulated seconds per run.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Mean exponential host delay on every timestamp, ms (a loaded machine).
    #[arg(long, default_value_t = 0.0)]
    host_jitter_ms: f64,
    /// PI proportional gain, 1/s (`sync.kp`).
    #[arg(long)]
    kp: Option<f64>,
    /// PI integral gain, 1/s² (`sync.ki`).
    #[arg(long)]
    ki: Option<f64>,
    /// Only the pooled lines.
    #[arg(long)]
    quiet: bool,
    /// Print one run's ppm error and offsets second by second: PROFILE:BIKE:SEED.
    #[arg(long)]
    trace: Option<String>,
}

fn fmt3((a, b, c): (f64, f64, f64)) -> String {
    format!("{a:6.3} {b:6.3} {c:6.3}")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg_of = |p: Profile, k: usize, seed: u64| {
        let mut c = SimConfig::scenario_bike(p, args.nodes, k, seed);
        c.seconds = args.seconds;
        c.host_jitter_ms = args.host_jitter_ms;
        c.pll.kp = args.kp.unwrap_or(c.pll.kp);
        c.pll.ki = args.ki.unwrap_or(c.pll.ki);
        c
    };
    if let Some(t) = &args.trace {
        let parts: Vec<&str> = t.split(':').collect();
        anyhow::ensure!(parts.len() == 3, "--trace PROFILE:BIKE:SEED");
        let p = Profile::from_str(parts[0], true).map_err(anyhow::Error::msg)?;
        let c = cfg_of(p, parts[1].parse()?, parts[2].parse()?);
        let r = run(&c);
        println!("{c:?}\nlock {:?} s, exchanges {}", r.lock_s, r.exchanges);
        for (s, e) in &r.ppm_err {
            println!("t {s:5.1} s  ppm error {e:+8.2}");
        }
        for (s, est, play, speed) in r
            .trace
            .iter()
            .filter(|p| p.0 < 20.0 || (p.0 * 10.0).round() as i64 % 10 == 0)
        {
            println!("t {s:5.1} s  estimate error {est:+7.3} ms  playback {play:+7.3} ms  speed {speed:+7.1} ppm");
        }
        return Ok(());
    }
    println!(
        "est = |clock estimate − leader| ms, play = |playback offset| ms after lock; p50 p99 max"
    );
    for name in &args.profiles {
        let p = Profile::from_str(name, true).map_err(anyhow::Error::msg)?;
        let mut all = SimResult::default();
        let mut locks = Vec::new();
        let mut ppm0_10 = Vec::new();
        for seed in 1..=args.seeds {
            for k in 1..args.nodes {
                let r = run(&cfg_of(p, k, seed));
                let worst_ppm = r
                    .ppm_err
                    .iter()
                    .filter(|(t, _)| *t >= 2.0 && *t < 10.0)
                    .map(|(_, e)| e.abs())
                    .fold(0.0, f64::max);
                if !args.quiet {
                    println!(
                        "{name:9} seed {seed:3} bike-{k}: lock {:5.2} s | est 0-10 s {} | est steady {} | play lock+10 s {} | play steady {} | |ppm err| 2-10 s max {worst_ppm:6.1} | seeks {}",
                        r.lock_s.unwrap_or(f64::NAN),
                        fmt3(q3(&r.est_early_ms)),
                        fmt3(q3(&r.est_steady_ms)),
                        fmt3(q3(&r.play_early_ms)),
                        fmt3(q3(&r.play_steady_ms)),
                        r.seeks_after_lock
                    );
                }
                locks.push(r.lock_s.unwrap_or(f64::INFINITY));
                ppm0_10.push(worst_ppm);
                all.est_early_ms.extend(r.est_early_ms);
                all.est_steady_ms.extend(r.est_steady_ms);
                all.play_early_ms.extend(r.play_early_ms);
                all.play_steady_ms.extend(r.play_steady_ms);
                all.seeks_after_lock += r.seeks_after_lock;
            }
        }
        let after: Vec<f64> = all
            .play_early_ms
            .iter()
            .chain(&all.play_steady_ms)
            .copied()
            .collect();
        println!(
            "{name:9} ALL ({} runs): lock p50/p99 {:.2}/{:.2} s | est 0-10 s {} | est steady {} | play lock+10 s {} | play steady {} | play after lock {} | worst |ppm err| 2-10 s p50/max {:.1}/{:.1} | seeks after lock {}",
            locks.len(),
            convoy::rig::measure::quantile(&locks, 0.5),
            convoy::rig::measure::quantile(&locks, 0.99),
            fmt3(q3(&all.est_early_ms)),
            fmt3(q3(&all.est_steady_ms)),
            fmt3(q3(&all.play_early_ms)),
            fmt3(q3(&all.play_steady_ms)),
            fmt3(q3(&after)),
            convoy::rig::measure::quantile(&ppm0_10, 0.5),
            ppm0_10.iter().copied().fold(0.0, f64::max),
            all.seeks_after_lock
        );
    }
    Ok(())
}
