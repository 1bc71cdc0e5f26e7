//! The command line: one file per subcommand, `anyhow` context at this edge only. Errors
//! print as one line naming the cause and exit non-zero.

mod analyze;
#[cfg(feature = "rig")]
mod demo;
mod doctor;
mod link;
mod member;
mod node;
mod play;
mod show;
mod status;
mod tool;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, SinkKind};

/// Convoy: synchronized music and lights for a fleet of vehicles.
#[derive(Debug, Parser)]
#[command(name = "convoy", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file layered over the built-in defaults.
    #[arg(long, short = 'c', global = true, env = "CONVOY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set audio.sink=null` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or `convoy::audio=trace`.
    #[arg(long, global = true, env = "CONVOY_LOG", default_value = "info")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `convoy --help` examples (every `  convoy …` line parses; see the unit test below).
const EXAMPLES: &str = "\
Examples:
  convoy play demo --seconds 10          the built-in song on this machine
  convoy show --check shows/demo.toml    validate a show file
  convoy node --role auto --track demo   a bike's daemon, fleet role decided by election
  convoy status --addr 10.0.0.2:8000   what a running node is doing
  convoy doctor                          what is wrong on this bike
  convoy --set audio.sink=null config    the effective configuration, with an override";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play one track (a file, or `demo`, the built-in song) on this node.
    #[command(after_help = play::EXAMPLES)]
    Play(play::PlayArgs),
    /// Run this vehicle's daemon: player plus fleet sync (leader, follower or solo).
    #[command(after_help = node::EXAMPLES)]
    Node(node::NodeArgs),
    /// Play a show (tracks plus lighting cues) solo on this machine, or `--check` it.
    #[command(after_help = show::EXAMPLES)]
    Show(show::ShowArgs),
    /// Run a 3-bike fleet with lights on this machine (no hardware or network needed) and
    /// print how well the bikes agree.
    #[cfg(feature = "rig")]
    Demo(demo::DemoArgs),
    /// Ask a running node (its OSC control port) what it is doing: track, sync, peers,
    /// rejected input.
    Status(status::StatusArgs),
    /// Say what is wrong on this bike and how to fix it: fleet key, duplicate vehicle id,
    /// route for the fleet broadcast, LED port, sound card, the running node's clock.
    /// Exits non-zero when something is wrong.
    Doctor(doctor::DoctorArgs),
    /// Analyse tracks offline (tempo, beats, bars, sections, envelopes) into beatmaps.
    #[command(after_help = analyze::EXAMPLES)]
    Analyze(analyze::AnalyzeArgs),
    /// Print the effective configuration (defaults + file + overrides) as TOML.
    Config,
    /// Utilities: the sync scenario and the impairment relay (built with the `rig` feature),
    /// fleet keys, and generated test-signal WAV files.
    #[command(subcommand, after_help = tool::EXAMPLES)]
    Tool(tool::ToolCommand),
}

/// Options shared by commands that open an audio output.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Output: auto, cpal, null or virtual (overrides `audio.sink`).
    #[arg(long)]
    pub sink: Option<SinkKind>,
}

/// Entry point used by `main`.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convoy: error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    // Our error messages already embed their cause; skip chain links that repeat it.
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

fn init_tracing(filter: &str) {
    use std::io::IsTerminal;
    let mut env = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // symphonia logs "probe reached EOF at N bytes" at ERROR for every file that is not
    // audio; our own error names the file and says so, once. Asked for by name, it stays.
    if !filter.contains("symphonia") {
        if let Ok(quiet) = "symphonia_core::formats::probe=off".parse() {
            env = env.add_directive(quiet);
        }
    }
    let filter = env;
    // Colour only on a terminal: no escape codes in files or the journal.
    let tty = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogLine {
            tty,
            started: false,
        })
        .with_ansi(tty)
        .with_target(false)
        .try_init();
}

/// One log line to stderr; on a terminal where a simulated strip is drawn it first clears
/// the strip's line, so the log line is not overwritten by the next frame.
struct LogLine {
    tty: bool,
    started: bool,
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if !self.started {
            self.started = true;
            err.write_all(crate::led::term::log_prefix(self.tty).as_bytes())?;
        }
        err.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = || Config::load(cli.config.as_deref(), &cli.set);
    match &cli.command {
        Command::Play(args) => play::run(config()?, args),
        Command::Node(args) => node::run(config()?, args),
        Command::Show(args) => show::run(config()?, args),
        Command::Analyze(args) => analyze::run(args),
        #[cfg(feature = "rig")]
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => status::run(&config()?, args),
        Command::Doctor(args) => doctor::run(&config()?, args),
        Command::Config => {
            let text = toml::to_string_pretty(&config()?)?;
            print!("{text}");
            Ok(())
        }
        Command::Tool(tool::ToolCommand::Member(args)) => member::run(config()?, args),
        Command::Tool(cmd) => tool::run(cmd),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// The command of every `  convoy …` example line (up to a two-space gap before its note).
    fn example_commands(help: &str) -> Vec<Vec<String>> {
        help.lines()
            .filter_map(|l| l.strip_prefix("  convoy "))
            .map(|l| {
                let cmd = l.split("  ").next().unwrap_or_default();
                std::iter::once("convoy")
                    .chain(cmd.split_whitespace())
                    .map(String::from)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_help_example_parses() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut helps = vec![("convoy".to_string(), cmd.render_long_help().to_string())];
        for sub in ["play", "node", "show", "analyze", "tool"] {
            let sc = cmd.find_subcommand_mut(sub).expect("subcommand exists");
            helps.push((sub.to_string(), sc.render_long_help().to_string()));
        }
        for (name, help) in helps {
            let examples = example_commands(&help);
            assert!(examples.len() >= 3, "{name}: too few examples:\n{help}");
            for argv in examples {
                let rig_only = argv.iter().any(|a| a == "scenario" || a == "impair");
                if rig_only && !cfg!(feature = "rig") {
                    continue;
                }
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("{name} --help example {argv:?} does not parse: {e}");
                }
            }
        }
    }

    #[test]
    fn tool_help_lists_what_tool_does_in_order() {
        let help = Cli::command()
            .find_subcommand_mut("tool")
            .expect("tool")
            .render_help()
            .to_string();
        let first = help.lines().next().unwrap_or_default();
        assert!(first.starts_with("Utilities: the sync scenario"), "{first}");
    }
}
