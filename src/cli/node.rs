//! `convoy node`: run this vehicle's daemon (player + fleet sync).

use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Role};
use crate::node::{self, NodeOptions};

/// `convoy node --help` examples (each `  convoy …` line parses; tested in `cli`).
pub(super) const EXAMPLES: &str = "\
Examples:
  convoy node -c /etc/convoy/bike.toml   a bike's daemon with its configuration file
  convoy node --role leader              lead the fleet, idle until told to play
  convoy node --role follower            lock to the fleet's leader
  convoy node --role solo --track song.flac --exit-at-end";

/// Arguments of `convoy node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Role (overrides `sync.role`).
    #[arg(long)]
    pub role: Option<Role>,
    /// Tracks to play in order as leader or solo (repeat the flag): a file, `demo` or
    /// `pilot`. Without one the node starts idle and waits for commands.
    #[arg(long = "track")]
    pub tracks: Vec<String>,
    /// Leader/solo: exit when the playlist has played to its end.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Run this show (overrides `show.file`): cues and lights on every bike; a leader or
    /// solo node given no `--track` plays the show's playlist.
    #[arg(long)]
    pub show: Option<std::path::PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Status line interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub status_every: f64,
    /// Status as one JSON line per interval even on a terminal (the default when stdout is
    /// not a terminal, e.g. under systemd/journald).
    #[arg(long)]
    pub json: bool,
    /// Leader/solo: start the track this many seconds from now, announced to the fleet
    /// beforehand so every bike starts on the same sample.
    #[arg(long, default_value_t = 0.5)]
    pub start_in: f64,
}

/// Run `convoy node`.
pub fn run(mut config: Config, args: &NodeArgs) -> anyhow::Result<()> {
    if let Some(role) = args.role {
        config.sync.role = role;
        config.validate("--role")?;
    }
    if let Some(show) = &args.show {
        config.show.file = show.display().to_string();
        config.validate("--show")?;
    }
    let mut tracks = args.tracks.clone();
    if tracks.is_empty() && !config.show.file.is_empty() && config.sync.role != Role::Follower {
        let show = crate::show::Show::load(std::path::Path::new(&config.show.file))?;
        tracks = node::show::playlist(&show);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(node::run(
        config,
        NodeOptions {
            playlist: tracks,
            exit_at_end: args.exit_at_end,
            duration: args.seconds.map(Duration::from_secs_f64),
            status_every: Duration::from_secs_f64(args.status_every.max(0.05)),
            start_in: Duration::from_secs_f64(args.start_in.clamp(0.0, 3600.0)),
            console: !args.json && std::io::IsTerminal::is_terminal(&std::io::stdout()),
        },
    ))?;
    Ok(())
}
