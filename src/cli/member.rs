//! `convoy tool member`: run only the fleet membership layer and print the [`FleetView`]
//! as JSON lines — the probe the netns tests and the failover measurements drive. A line
//! is printed whenever the leader, term or peer set changes, and every `--every` seconds.
//! Lines on stdin steer it: `lead` / `release` (the manual override API), `quit`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use crate::clock::{mono_ns, FleetClock, LocalClock};
use crate::config::Config;
use crate::fleet::{self, FleetConfig, FleetView, MemberInfo, Membership};
use crate::security::{FleetKey, Guard, GuardConfig, Keyring, Sealer};

/// Arguments of `convoy tool member`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemberArgs {
    /// Fleet key (hex or base64 text, as in a key file).
    #[arg(long, env = "CONVOY_FLEET_KEY", hide_env_values = true)]
    pub key: String,
    /// Stop after this many seconds (default: until stdin says `quit`, or SIGTERM).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Also print the view at this interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub every: f64,
}

/// One output line.
#[derive(serde::Serialize)]
struct Line<'a> {
    /// Monotonic time of the line (shared by every network namespace on the host).
    mono_ns: u64,
    view: &'a FleetView,
    security: crate::security::StatsSnapshot,
}

/// The part of a view whose change is worth a line.
fn shape(v: &FleetView) -> (Option<String>, u64, bool, Vec<String>) {
    (
        v.leader.as_ref().map(|m| m.id.clone()),
        v.term,
        v.i_am_leader,
        v.peers.iter().map(|m| m.id.clone()).collect(),
    )
}

/// Run `convoy tool member`.
pub fn run(config: Config, args: &MemberArgs) -> anyhow::Result<()> {
    let key = FleetKey::from_text(1, &args.key).context("--key / CONVOY_FLEET_KEY")?;
    let me = MemberInfo::from_config(&config, key.fingerprint());
    let cfg = FleetConfig::from_config(&config)?;
    let guard = Guard::new(Keyring::new(key), &GuardConfig::default());
    let stats = guard.stats().clone();
    let guard = Arc::new(Mutex::new(guard));
    let clock = LocalClock::unix(0, 0.0);
    // A restarted member must not look like a replayer: start seq at the clock.
    let sealer = Sealer::new(fleet::sender_id(&me.id), clock.now().max(0) as u64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (handle, mut views) = Membership::spawn(cfg, me, guard, sealer, FleetClock::own(clock))?;
        // The probe plays nothing, so it can always take the lead without a jump (a node
        // judges this from its timeline: node/auto.rs, Election::set_ready).
        handle.set_ready(true)?;
        let print = |v: &FleetView| {
            let line = Line {
                mono_ns: mono_ns(),
                view: v,
                security: stats.snapshot(),
            };
            if let Ok(text) = serde_json::to_string(&line) {
                println!("{text}");
            }
        };
        let mut last = shape(&views.borrow());
        print(&views.borrow());
        let mut every = tokio::time::interval(Duration::from_secs_f64(args.every.max(0.05)));
        let stop = async {
            match args.seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                r = views.changed() => {
                    if r.is_err() { break }
                    let v = views.borrow_and_update().clone();
                    if shape(&v) != last {
                        last = shape(&v);
                        print(&v);
                    }
                }
                _ = every.tick() => print(&views.borrow()),
                l = stdin.next_line(), if stdin_open => match l {
                    Ok(Some(cmd)) => match cmd.trim() {
                        "lead" => handle.force_leader(true)?,
                        "release" => handle.force_leader(false)?,
                        "quit" => break,
                        other => eprintln!("convoy tool member: unknown command {other:?} (lead, release, quit)"),
                    },
                    // Stdin closed: keep running until --seconds (tests may not feed it).
                    _ => stdin_open = false,
                },
            }
        }
        handle.shutdown().await;
        anyhow::Ok(())
    })
}
