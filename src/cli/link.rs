//! `convoy tool link`: join the Link session on this host's network and print what Convoy
//! sees as JSON lines, taking `tempo BPM`, `play`, `stop`, `quit` on stdin — the Link
//! interop tests and `tools/link_figures.py` drive it against a real Link peer.

use std::io::{BufRead, Write};

use crate::clock::link::LinkTime;
use crate::clock::mono_ns;
use crate::link::{show_id, LinkPeer, LinkSockets, LinkStatus};

/// `convoy tool link` arguments.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// Tempo of our own session until we join one.
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
    /// Quantum for the printed phase.
    #[arg(long, default_value_t = 4.0)]
    pub quantum: f64,
    /// Print every this many ms.
    #[arg(long, default_value_t = 10.0)]
    pub every_ms: f64,
    /// Gateway address (0.0.0.0: the route to the Link group decides).
    #[arg(long, default_value = "0.0.0.0")]
    pub address: std::net::Ipv4Addr,
}

fn line(s: &LinkStatus, quantum: f64) -> serde_json::Value {
    let now = mono_ns();
    let LinkTime { timeline: t, ghost } = s.time;
    serde_json::json!({
        "mono_ns": now,
        "beat": s.time.beat_at_mono(now),
        "phase": s.time.phase_at_mono(now, quantum),
        "tempo": s.time.bpm(),
        "playing": s.start_stop.playing,
        "peers": s.peers,
        "heard": s.heard,
        "node": show_id(&s.node),
        "session": show_id(&s.session),
        "leads": s.leads(),
        "tl": [t.micros_per_beat, t.beat_origin, t.time_origin],
        "intercept": ghost.intercept,
        "measured": s.counters.measured,
        "timed_out": s.counters.timed_out,
    })
}

/// Run the tool until `quit` or the end of stdin.
pub fn run(args: &LinkArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let peer = LinkPeer::spawn(LinkSockets::bind(args.address)?, args.bpm)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for l in std::io::stdin().lock().lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    return;
                }
            }
            let _ = tx.send("quit".into());
        });
        let mut tick =
            tokio::time::interval(std::time::Duration::from_secs_f64(args.every_ms / 1e3));
        let mut out = std::io::stdout().lock();
        loop {
            tokio::select! {
                c = rx.recv() => {
                    let c = c.unwrap_or_else(|| "quit".into());
                    let words: Vec<&str> = c.split_whitespace().collect();
                    match words.as_slice() {
                        ["quit"] => break,
                        ["tempo", bpm] => peer.set_tempo(bpm.parse()?),
                        ["play"] => peer.set_playing(true),
                        ["stop"] => peer.set_playing(false),
                        [] => continue,
                        _ => anyhow::bail!("unknown command {c:?}"),
                    }
                    writeln!(out, "{}", serde_json::json!({"did": c, "mono_ns": mono_ns()}))?;
                }
                _ = tick.tick() => {
                    writeln!(out, "{}", line(&peer.status(), args.quantum))?;
                    out.flush()?;
                }
            }
        }
        peer.shutdown().await;
        Ok(())
    })
}
