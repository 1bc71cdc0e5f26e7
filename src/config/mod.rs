//! Configuration: the embedded `config/default.toml`, layered with an optional user file and
//! command-line overrides, resolved into typed structs and validated in one place. Layering
//! merges TOML tables key by key, so a user file holds only what it changes; unknown keys and
//! wrong types are errors that name the key and the file they came from. The same
//! [`Config::load`] and [`Config::validate`] serve the CLI, the daemon and the tests.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The built-in configuration, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// File (or "built-in defaults", "--set") the text came from.
        origin: String,
        /// Parser message, with line and column.
        message: String,
    },
    /// A key is unknown or has the wrong type.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the offending key came from.
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Values are individually fine but make no sense together or are out of range.
    #[error("{origin}: {key}: {message}")]
    Range {
        /// Where the configuration came from.
        origin: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Which output the audio goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// cpal, falling back to null when no device exists.
    Auto,
    /// Real ALSA output through cpal.
    Cpal,
    /// Silent, paced by the monotonic clock.
    Null,
    /// Simulated DAC with rate error, latency and recording.
    Virtual,
}

/// Resampler quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResamplerKind {
    /// Windowed-sinc interpolation.
    Sinc,
    /// Cubic polynomial interpolation.
    Fast,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This vehicle.
    pub node: NodeConfig,
    /// Decoding, resampling and output.
    pub audio: AudioConfig,
    /// Injected clock error (tests).
    pub clock: ClockConfig,
    /// Fleet sync.
    pub sync: SyncConfig,
    /// Fleet authentication and the control-port policy.
    pub security: SecurityConfig,
    /// The OSC control port, feedback and outbound streams.
    pub osc: OscConfig,
    /// LED output.
    pub led: LedConfig,
    /// Show runner.
    pub show: ShowConfig,
    /// Fleet membership: discovery, heartbeats, election.
    pub fleet: FleetSection,
    /// Web app, HTTP API and track sharing.
    pub web: WebConfig,
    /// Ableton Link (`docs/link.md`).
    #[serde(default)]
    pub link: LinkConfig,
}

/// Which way the beat goes between the fleet and a Link session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// The lights follow the Link session when the fleet plays nothing (or always, with
    /// `follow_link`).
    Follow,
    /// The leader publishes the playing track's tempo and beat as the session timeline.
    Lead,
    /// Lead while a track plays, follow otherwise.
    Both,
}

/// `[link]`: Convoy as an Ableton Link peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// Join the Link session on the local network.
    pub enabled: bool,
    /// Follow, lead or both.
    pub mode: LinkMode,
    /// Beats per bar for phase (Link's quantum; never sent on the wire).
    pub quantum: f64,
    /// Follow the Link session's beat even while a track plays.
    pub follow_link: bool,
    /// Tempo of our own session until we join one, BPM.
    pub bpm: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            enabled: false,
            mode: LinkMode::Follow,
            quantum: 4.0,
            follow_link: false,
            bpm: 120.0,
        }
    }
}

/// How a TCP control connection delimits OSC packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpFraming {
    /// Per connection, from its first byte.
    Auto,
    /// OSC 1.0: an int32 big-endian length before each packet.
    Length,
    /// OSC 1.1: double-END SLIP.
    Slip,
}

/// Whose transport the OSC port follows (`osc.follow`, docs/osc.md "DAW follow").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowMode {
    /// Reaper and AbletonOSC addresses are plain commands (as before issue #22).
    #[default]
    None,
    /// Reaper's default OSC pattern drives the transport with Reaper's semantics.
    Reaper,
    /// Subscribe to AbletonOSC on `osc.ableton_host` and follow Live's beat and tempo.
    Ableton,
}

/// `[osc]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OscConfig {
    /// Serve the control port at all.
    pub enabled: bool,
    /// Bind address (UDP and TCP).
    pub bind: String,
    /// Port (UDP and TCP; 0 = any).
    pub port: u16,
    /// Also serve TCP.
    pub tcp: bool,
    /// TCP framing.
    pub tcp_framing: TcpFraming,
    /// Most TCP connections at once.
    pub max_tcp_clients: u32,
    /// Largest packet, bytes.
    pub max_packet: u32,
    /// Answer accepted messages with `/reply/...`.
    pub reply: bool,
    /// Wait for the node's verdict this long, ms.
    pub reply_timeout_ms: u64,
    /// Send feedback to recent and subscribed clients.
    pub feedback: bool,
    /// Most feedback updates per second.
    pub feedback_hz: f64,
    /// A silent client stops getting feedback after this long, s.
    pub feedback_idle_s: f64,
    /// A subscription lasts this long unless renewed, s.
    pub subscribe_ttl_s: f64,
    /// Most feedback clients.
    pub max_clients: u32,
    /// Furthest accepted bundle timetag ahead of now, s.
    pub max_future_s: f64,
    /// Most timed bundles waiting.
    pub max_pending: u32,
    /// Outbound destinations, `ip:port`.
    pub outbound: Vec<String>,
    /// Outbound band/position updates per second.
    pub outbound_hz: f64,
    /// `/panic` fades the lights to black over this long, then stops, ms.
    pub panic_fade_ms: u64,
    /// Whose transport the fleet follows: `none`, `reaper` or `ableton`.
    pub follow: FollowMode,
    /// Following: a reported position further than this from the fleet's is sought, ms.
    pub follow_seek_ms: f64,
    /// `follow = "ableton"`: Live's host running AbletonOSC, its port, and the local port
    /// AbletonOSC answers on.
    pub ableton_host: String,
    /// AbletonOSC's listening port (11000).
    pub ableton_port: u16,
    /// The port AbletonOSC replies to (11001).
    pub ableton_reply_port: u16,
    /// `[osc.wled]`.
    pub wled: WledConfig,
}

/// `[osc.wled]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WledConfig {
    /// Send WLED audio-sync packets.
    pub enabled: bool,
    /// Destination `ip:port`.
    pub destination: String,
    /// Packets per second.
    pub rate_hz: f64,
    /// Multicast TTL.
    pub multicast_ttl: u32,
}

/// Which LED output lights are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LedOutputKind {
    /// An in-process simulated strip.
    Sim,
    /// The Arduino controller on a serial port.
    Serial,
    /// No lights.
    None,
}

/// `[led]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    /// Output kind.
    pub output: LedOutputKind,
    /// Serial port path.
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Stream beats and bands as binary frames.
    pub binary_stream: bool,
    /// LEDs on the simulated strip.
    pub num_leds: u16,
    /// Command-to-light latency the scheduler compensates, ms.
    pub latency_ms: f64,
    /// Terminal frames per second for the simulated strip.
    pub fps: f64,
    /// The look of a track no show covers (a pattern name; empty or `off`: no lights).
    pub default_look: String,
}

/// `[show]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShowConfig {
    /// Beat/band stream updates per second.
    pub bands_hz: f64,
    /// Live analysis read-ahead, s.
    pub live_ahead_s: f64,
    /// Lateness after which a cue's flash is skipped, ms.
    pub late_ms: f64,
    /// Position error counted as a seek, ms.
    pub jump_ms: f64,
    /// The show `convoy node` runs (empty: none).
    #[serde(default)]
    pub file: String,
    /// Journal of every LED command the show hands over (empty: none).
    #[serde(default)]
    pub journal: String,
    /// A manual cue fires this long after it is given, on every bike, ms.
    #[serde(default = "default_cue_lead_ms")]
    pub cue_lead_ms: f64,
    /// Beats are announced on the live plane this long before they are heard, ms.
    pub live_lead_ms: f64,
}

fn default_cue_lead_ms() -> f64 {
    150.0
}

/// `[fleet]`: membership (resolved into `fleet::FleetConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// Run the membership layer.
    pub enabled: bool,
    /// mDNS advertising and browsing.
    pub mdns: bool,
    /// Heartbeat port.
    pub port: u16,
    /// Heartbeat destinations (`ip` or `ip:port`).
    pub broadcast: Vec<String>,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Peer expiry, ms.
    pub peer_timeout_ms: u64,
    /// Listen before claiming leadership, ms.
    pub startup_grace_ms: u64,
    /// Election priority 0..=255 (0 = never lead).
    pub priority: u32,
    /// Manual leadership override.
    pub leader: bool,
    /// Followers per publisher in hierarchical mode (0 = flat).
    pub group_size: u32,
}

/// `[web]`: the phone web app, HTTP API, track sharing and the EchoFlux follower.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the web app and API.
    pub enabled: bool,
    /// Bind address.
    pub bind: String,
    /// TCP port (0 = any).
    pub port: u16,
    /// PIN for state-changing requests ("" = none).
    pub pin: String,
    /// Reads need no PIN.
    pub open_reads: bool,
    /// Wrong PINs allowed in a burst per address.
    pub login_burst: u32,
    /// Wrong PINs allowed per minute per address.
    pub login_per_minute: f64,
    /// Track library directory.
    pub library: String,
    /// More directories a remote command (OSC, web, fleet) may play files from, besides
    /// the library and the directories of the node's own `--track`s.
    pub music_dirs: Vec<String>,
    /// Largest upload or download, MiB.
    pub upload_max_mib: u64,
    /// Largest show upload, KiB.
    pub show_max_kib: u64,
    /// Total size the library may grow to by uploads, MiB.
    pub library_max_mib: u64,
    /// Uploads at once; more get 503.
    pub max_uploads: u32,
    /// Open HTTP connections at once; more are closed with 503.
    pub max_connections: u32,
    /// WebSocket clients at once; more get 503 before the upgrade.
    pub max_websockets: u32,
    /// Time to send a request's headers (and the longest an idle connection or a stalled
    /// upload is kept), s.
    pub header_timeout_s: f64,
    /// Origins besides the bike's own allowed to send state-changing requests.
    pub allowed_origins: Vec<String>,
    /// Sharing bandwidth, KiB/s (0 = unlimited).
    pub share_rate_kib: u64,
    /// Per-wait network timeout while sharing, s.
    pub share_timeout_s: f64,
    /// Rounds over the peer list per download.
    pub share_attempts: u32,
    /// EchoFlux-style player to follow ("" = none).
    pub follow_url: String,
    /// Poll interval, ms.
    pub follow_poll_ms: f64,
    /// Divergence that triggers a seek, ms.
    pub follow_threshold_ms: f64,
    /// Quiet time after a command, ms.
    pub follow_holdoff_ms: f64,
}

/// `[clock]`: injected error for the test rig.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// Offset, ms.
    pub offset_ms: f64,
    /// Frequency error, ppm.
    pub ppm: f64,
    /// Step time after start, s (0 = none).
    pub step_at_s: f64,
    /// Step size, ms.
    pub step_ms: f64,
}

/// A node's role in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Alone, on its own clock.
    Solo,
    /// Serves time and publishes the timeline.
    Leader,
    /// Locks to a leader.
    Follower,
    /// Decided by fleet membership (`[fleet]`): leads when elected, follows the elected
    /// leader otherwise, and plays alone on its own clock while no leader is known.
    Auto,
}

/// `[sync]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Role.
    pub role: Role,
    /// Bind address.
    pub bind: String,
    /// `sntp_server` is a Convoy node (sealed SNTP).
    pub sntp_server_signed: bool,
    /// Leader: scheduling lead of transport commands, ms.
    pub start_lead_ms: f64,
    /// Timeline port (leader).
    pub osc_port: u16,
    /// SNTP port (leader; 0 = off).
    pub sntp_port: u16,
    /// Leader timeline address (follower).
    pub leader: String,
    /// SNTP server (follower; empty = leader host).
    pub sntp_server: String,
    /// Timeline publications per second.
    pub publish_hz: f64,
    /// SNTP exchanges per second.
    pub poll_hz: f64,
    /// Filter window, s.
    pub filter_window_s: f64,
    /// Filter bucket, s.
    pub filter_bucket_s: f64,
    /// Step threshold, ms.
    pub step_threshold_ms: f64,
    /// Exchanges making a step.
    pub step_count: u32,
    /// PI proportional gain, 1/s.
    pub kp: f64,
    /// PI integral gain, 1/s².
    pub ki: f64,
    /// Speed clamp, ppm.
    pub max_ppm: f64,
    /// Speed clamp before a follower's first lock (pulling a join in), ppm.
    pub join_max_ppm: f64,
    /// Hard-seek threshold, ms.
    pub hard_seek_ms: f64,
    /// Updates above threshold before seeking.
    pub hard_seek_updates: u32,
    /// Lock threshold, ms.
    pub lock_ms: f64,
    /// PLL update interval, ms.
    pub update_ms: f64,
    /// Reports ignored after a seek until the new audio has been heard this long, ms.
    pub seek_holdoff_ms: f64,
    /// |error| under `lock_ms` for this long before playback counts as locked, s.
    pub lock_stable_s: f64,
    /// Leader: how often it measures its own playback, ms.
    pub leader_point_ms: f64,
    /// Leader: a jump of its own playback (ms of audio) that it catches up by a seek.
    pub jump_ms: f64,
    /// Leader: a second jump within this long after a catch-up moves the line instead, s.
    pub catch_up_window_s: f64,
    /// Follower: a start heard further ahead than this is scheduled on the exact sample;
    /// closer, the track is joined where the fleet is, ms.
    pub schedule_margin_ms: f64,
    /// Follower: timeline re-subscription interval, s.
    pub resubscribe_s: f64,
    /// Leader: a subscriber silent this long is dropped, s.
    pub subscriber_expiry_s: f64,
    /// Follower: a timeline not heard again for this long is stale: playback holds over
    /// on it and is not reported locked, ms.
    pub timeline_fresh_ms: f64,
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Vehicle id; empty means the host name.
    pub id: String,
    /// Sound-system latency after the sound card, ms.
    pub output_latency_ms: f64,
}

/// `[audio]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// Output kind.
    pub sink: SinkKind,
    /// cpal device name.
    pub device: String,
    /// Output sample rate, Hz.
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u16,
    /// Frames per sink period.
    pub period_frames: u32,
    /// Audio buffered ahead of the device, ms.
    pub ring_ms: u32,
    /// Resampler kind.
    pub resampler: ResamplerKind,
    /// Sinc length in taps.
    pub sinc_len: u32,
    /// Largest rate adjustment, ppm.
    pub max_rate_ppm: f64,
    /// Linear gain.
    pub volume: f32,
    /// `[audio.virtual]`.
    #[serde(rename = "virtual")]
    pub virtual_sink: VirtualSinkConfig,
}

/// `[audio.virtual]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualSinkConfig {
    /// DAC rate error, ppm.
    pub rate_error_ppm: f64,
    /// DAC output latency, ms.
    pub latency_ms: f64,
    /// Recording path ("" = none).
    pub record: String,
    /// Decode the position pilot.
    pub pilot: bool,
    /// Simulated time, unpaced.
    pub fast: bool,
    /// Injected outage: seconds after the sink starts (0 = none).
    pub stall_at_s: f64,
    /// Outage length, ms.
    pub stall_ms: f64,
}

impl Config {
    /// The built-in defaults alone.
    pub fn builtin() -> Result<Config, ConfigError> {
        Self::load(None, &[])
    }

    /// Defaults, then `file` (if any), then `overrides` (`key.path=value` TOML snippets, as
    /// given to `--set`), validated.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut merged = parse_table(DEFAULT_TOML, "built-in defaults")?;
        let defaults = merged.clone();
        let mut origin = "built-in defaults".to_string();
        // Every layer over the defaults, so an error names the file or `--set` it came from.
        let mut layers: Vec<(String, toml::Table)> = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let user = parse_table(&text, &path.display().to_string())?;
            check_known(&merged, &user, "", &path.display().to_string())?;
            layers.push((path.display().to_string(), user.clone()));
            merge(&mut merged, user);
            origin = path.display().to_string();
        }
        for item in overrides {
            let snippet = override_to_toml(item)?;
            let mut table = parse_table(&snippet, &format!("--set {item}"))?;
            unquoted_strings(&merged, &mut table);
            check_known(&merged, &table, "", &format!("--set {item}"))?;
            layers.push((format!("--set {item}"), table.clone()));
            merge(&mut merged, table);
        }
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| blame(&defaults, &layers, &origin, &e))?;
        config.validate(&origin).map_err(|e| match e {
            // A range error names its key: blame the last layer that set it.
            ConfigError::Range {
                origin,
                key,
                message,
            } => ConfigError::Range {
                origin: layers
                    .iter()
                    .rev()
                    .find(|(_, t)| leaves(t, "").iter().any(|(k, _)| *k == key))
                    .map_or(origin, |(o, _)| o.clone()),
                key,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Range and consistency checks shared by every entry point.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let range = |key: &str, message: String| ConfigError::Range {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let l = &self.link;
        if !(l.quantum > 0.0 && l.quantum <= 64.0) {
            return Err(range(
                "link.quantum",
                format!("{} is outside (0, 64] beats", l.quantum),
            ));
        }
        if !(20.0..=999.0).contains(&l.bpm) {
            return Err(range(
                "link.bpm",
                format!("{} is outside Link's 20..=999 BPM", l.bpm),
            ));
        }
        let a = &self.audio;
        if !(8_000..=384_000).contains(&a.sample_rate) {
            return Err(range(
                "audio.sample_rate",
                format!("{} Hz is outside 8000..=384000", a.sample_rate),
            ));
        }
        if !(1..=8).contains(&a.channels) {
            return Err(range(
                "audio.channels",
                format!("{} is outside 1..=8", a.channels),
            ));
        }
        if !(16..=8192).contains(&a.period_frames) {
            return Err(range(
                "audio.period_frames",
                format!("{} is outside 16..=8192", a.period_frames),
            ));
        }
        if !(10..=2000).contains(&a.ring_ms) {
            return Err(range(
                "audio.ring_ms",
                format!("{} is outside 10..=2000", a.ring_ms),
            ));
        }
        if !(16..=1024).contains(&a.sinc_len) {
            return Err(range(
                "audio.sinc_len",
                format!("{} is outside 16..=1024", a.sinc_len),
            ));
        }
        if !(a.max_rate_ppm.is_finite() && (1.0..=50_000.0).contains(&a.max_rate_ppm)) {
            return Err(range(
                "audio.max_rate_ppm",
                format!("{} is outside 1..=50000", a.max_rate_ppm),
            ));
        }
        if !(a.volume.is_finite() && (0.0..=4.0).contains(&a.volume)) {
            return Err(range(
                "audio.volume",
                format!("{} is outside 0..=4", a.volume),
            ));
        }
        let v = &a.virtual_sink;
        if !(v.rate_error_ppm.is_finite() && v.rate_error_ppm.abs() <= 10_000.0) {
            return Err(range(
                "audio.virtual.rate_error_ppm",
                format!("{} is outside ±10000", v.rate_error_ppm),
            ));
        }
        if !(v.latency_ms.is_finite() && (0.0..=10_000.0).contains(&v.latency_ms)) {
            return Err(range(
                "audio.virtual.latency_ms",
                format!("{} is outside 0..=10000", v.latency_ms),
            ));
        }
        for (key, value, hi) in [
            ("audio.virtual.stall_at_s", v.stall_at_s, 1e6),
            ("audio.virtual.stall_ms", v.stall_ms, 60_000.0),
        ] {
            if !(value.is_finite() && (0.0..=hi).contains(&value)) {
                return Err(range(key, format!("{value} is outside 0..={hi}")));
            }
        }
        let y = &self.sync;
        for (key, v, lo, hi) in [
            ("sync.publish_hz", y.publish_hz, 0.1, 100.0),
            ("sync.poll_hz", y.poll_hz, 0.05, 100.0),
            ("sync.filter_window_s", y.filter_window_s, 1.0, 3600.0),
            ("sync.filter_bucket_s", y.filter_bucket_s, 0.05, 600.0),
            ("sync.step_threshold_ms", y.step_threshold_ms, 0.1, 1e6),
            ("sync.kp", y.kp, 0.0, 100.0),
            ("sync.ki", y.ki, 0.0, 100.0),
            ("sync.hard_seek_ms", y.hard_seek_ms, 1.0, 1e6),
            ("sync.lock_ms", y.lock_ms, 0.001, 1e4),
            ("sync.update_ms", y.update_ms, 1.0, 10_000.0),
            ("sync.start_lead_ms", y.start_lead_ms, 0.0, 10_000.0),
            ("sync.seek_holdoff_ms", y.seek_holdoff_ms, 0.0, 1_000.0),
            ("sync.lock_stable_s", y.lock_stable_s, 0.0, 60.0),
            ("sync.leader_point_ms", y.leader_point_ms, 1.0, 1_000.0),
            ("sync.jump_ms", y.jump_ms, 1.0, 1_000.0),
            ("sync.catch_up_window_s", y.catch_up_window_s, 0.0, 60.0),
            (
                "sync.schedule_margin_ms",
                y.schedule_margin_ms,
                0.0,
                5_000.0,
            ),
            ("sync.resubscribe_s", y.resubscribe_s, 0.05, 60.0),
            (
                "sync.subscriber_expiry_s",
                y.subscriber_expiry_s,
                0.5,
                600.0,
            ),
            (
                "sync.timeline_fresh_ms",
                y.timeline_fresh_ms,
                50.0,
                60_000.0,
            ),
            ("clock.ppm", self.clock.ppm, -10_000.0, 10_000.0),
            ("led.latency_ms", self.led.latency_ms, 0.0, 2_000.0),
            ("led.fps", self.led.fps, 1.0, 120.0),
            ("show.bands_hz", self.show.bands_hz, 1.0, 200.0),
            ("show.live_ahead_s", self.show.live_ahead_s, 0.5, 30.0),
            ("show.late_ms", self.show.late_ms, 1.0, 10_000.0),
            ("show.jump_ms", self.show.jump_ms, 5.0, 60_000.0),
            ("show.cue_lead_ms", self.show.cue_lead_ms, 0.0, 10_000.0),
            ("show.live_lead_ms", self.show.live_lead_ms, 0.0, 2_000.0),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(range(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        if !(y.max_ppm.is_finite() && y.max_ppm > 0.0 && y.max_ppm <= a.max_rate_ppm) {
            return Err(range(
                "sync.max_ppm",
                format!(
                    "{} must be in (0, audio.max_rate_ppm = {}]",
                    y.max_ppm, a.max_rate_ppm
                ),
            ));
        }
        if !(y.join_max_ppm.is_finite()
            && y.join_max_ppm >= y.max_ppm
            && y.join_max_ppm <= a.max_rate_ppm)
        {
            return Err(range(
                "sync.join_max_ppm",
                format!(
                    "{} must be in [sync.max_ppm = {}, audio.max_rate_ppm = {}]",
                    y.join_max_ppm, y.max_ppm, a.max_rate_ppm
                ),
            ));
        }
        if y.role == Role::Follower && y.leader.parse::<std::net::SocketAddr>().is_err() {
            return Err(range(
                "sync.leader",
                format!("{:?} is not an address like 192.168.4.1:9123", y.leader),
            ));
        }
        if y.role == Role::Auto && !self.fleet.enabled {
            return Err(range(
                "sync.role",
                "\"auto\" needs fleet membership: set fleet.enabled = true, or pick a fixed role"
                    .to_string(),
            ));
        }
        if !y.sntp_server.is_empty() && y.sntp_server.parse::<std::net::SocketAddr>().is_err() {
            return Err(range(
                "sync.sntp_server",
                format!("{:?} is not an address like 192.168.4.1:123", y.sntp_server),
            ));
        }
        if y.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(range(
                "sync.bind",
                format!("{:?} is not an IP address", y.bind),
            ));
        }
        if let Err((key, message)) = self.security.check() {
            return Err(range(&key, message));
        }
        self.validate_osc(origin)?;
        let l = &self.led;
        if !(1..=1024).contains(&l.num_leds) {
            return Err(range(
                "led.num_leds",
                format!("{} is outside 1..=1024", l.num_leds),
            ));
        }
        if !(1_200..=4_000_000).contains(&l.baud) {
            return Err(range(
                "led.baud",
                format!("{} is outside 1200..=4000000", l.baud),
            ));
        }
        if l.output == LedOutputKind::Serial && l.port.trim().is_empty() {
            return Err(range(
                "led.port",
                "is empty but led.output is \"serial\"".to_string(),
            ));
        }
        // `[show] file`: the node loads it at start (errors name the show's own lines); here
        // only that it is there, so a typo is caught before anything starts.
        if !self.show.file.is_empty() && !std::path::Path::new(&self.show.file).is_file() {
            return Err(range(
                "show.file",
                format!("{:?} is not a show file that exists", self.show.file),
            ));
        }
        self.validate_fleet(origin)?;
        self.web.validate(origin)?;
        let n = &self.node;
        if !(n.output_latency_ms.is_finite() && (-1000.0..=10_000.0).contains(&n.output_latency_ms))
        {
            return Err(range(
                "node.output_latency_ms",
                format!("{} is outside -1000..=10000", n.output_latency_ms),
            ));
        }
        Ok(())
    }

    /// `[osc]` ranges and addresses.
    fn validate_osc(&self, origin: &str) -> Result<(), ConfigError> {
        let range = |key: &str, message: String| ConfigError::Range {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let o = &self.osc;
        if o.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(range(
                "osc.bind",
                format!("{:?} is not an IP address", o.bind),
            ));
        }
        for (key, v, lo, hi) in [
            ("osc.max_tcp_clients", o.max_tcp_clients, 1, 1024),
            ("osc.max_packet", o.max_packet, 64, 65_507),
            ("osc.max_clients", o.max_clients, 1, 1024),
            ("osc.max_pending", o.max_pending, 1, 65_536),
            ("osc.wled.multicast_ttl", o.wled.multicast_ttl, 1, 255),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(range(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        if o.panic_fade_ms > 60_000 {
            return Err(range(
                "osc.panic_fade_ms",
                format!("{} is outside 0..=60000", o.panic_fade_ms),
            ));
        }
        if !(o.follow_seek_ms.is_finite() && (1.0..=10_000.0).contains(&o.follow_seek_ms)) {
            return Err(range(
                "osc.follow_seek_ms",
                format!("{} is outside 1..=10000", o.follow_seek_ms),
            ));
        }
        if o.follow == FollowMode::Ableton && o.ableton_host.parse::<std::net::IpAddr>().is_err() {
            return Err(range(
                "osc.ableton_host",
                format!(
                    "{:?} is not an IP address (follow = \"ableton\" needs Live's host)",
                    o.ableton_host
                ),
            ));
        }
        if !(1..=60_000).contains(&o.reply_timeout_ms) {
            return Err(range(
                "osc.reply_timeout_ms",
                format!("{} is outside 1..=60000", o.reply_timeout_ms),
            ));
        }
        for (key, v, lo, hi) in [
            ("osc.feedback_hz", o.feedback_hz, 0.1, 200.0),
            ("osc.feedback_idle_s", o.feedback_idle_s, 0.1, 86_400.0),
            ("osc.subscribe_ttl_s", o.subscribe_ttl_s, 0.1, 604_800.0),
            ("osc.max_future_s", o.max_future_s, 0.0, 31_622_400.0),
            ("osc.outbound_hz", o.outbound_hz, 0.1, 200.0),
            ("osc.wled.rate_hz", o.wled.rate_hz, 0.1, 200.0),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(range(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        for d in &o.outbound {
            if d.parse::<std::net::SocketAddr>().is_err() {
                return Err(range(
                    "osc.outbound",
                    format!("{d:?} is not an address like 192.168.4.20:7000"),
                ));
            }
        }
        if o.wled.destination.parse::<std::net::SocketAddr>().is_err() {
            return Err(range(
                "osc.wled.destination",
                format!(
                    "{:?} is not an address like 239.0.0.1:11988",
                    o.wled.destination
                ),
            ));
        }
        Ok(())
    }

    /// `[fleet]` ranges and addresses.
    fn validate_fleet(&self, origin: &str) -> Result<(), ConfigError> {
        let range = |key: &str, message: String| ConfigError::Range {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let f = &self.fleet;
        if f.port == 0 {
            return Err(range("fleet.port", "0 is not a usable port".into()));
        }
        if f.enabled && f.broadcast.is_empty() && !f.mdns {
            return Err(range(
                "fleet.broadcast",
                "is empty and fleet.mdns is off: no peer could ever be reached".into(),
            ));
        }
        for d in &f.broadcast {
            let ok =
                d.parse::<std::net::SocketAddr>().is_ok() || d.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                return Err(range(
                    "fleet.broadcast",
                    format!("{d:?} is not an address like 192.168.4.255 or 10.0.0.255:9125"),
                ));
            }
        }
        if !(20..=10_000).contains(&f.heartbeat_ms) {
            return Err(range(
                "fleet.heartbeat_ms",
                format!("{} is outside 20..=10000", f.heartbeat_ms),
            ));
        }
        if f.peer_timeout_ms < 2 * f.heartbeat_ms || f.peer_timeout_ms > 600_000 {
            return Err(range(
                "fleet.peer_timeout_ms",
                format!(
                    "{} must be at least 2 × fleet.heartbeat_ms ({}) and at most 600000",
                    f.peer_timeout_ms,
                    2 * f.heartbeat_ms
                ),
            ));
        }
        if f.startup_grace_ms > 60_000 {
            return Err(range(
                "fleet.startup_grace_ms",
                format!("{} is above 60000", f.startup_grace_ms),
            ));
        }
        if f.priority > 255 {
            return Err(range(
                "fleet.priority",
                format!("{} is outside 0..=255", f.priority),
            ));
        }
        if f.group_size == 1 || f.group_size > 10_000 {
            return Err(range(
                "fleet.group_size",
                format!("{} must be 0 (flat) or 2..=10000", f.group_size),
            ));
        }
        if self.node.id.len() > 64 {
            return Err(range(
                "node.id",
                format!("{:?} is longer than 64 bytes", self.node.id),
            ));
        }
        Ok(())
    }

    /// The vehicle id: the configured one, or the host name and six hex digits of the
    /// machine id (`/etc/machine-id`), so bikes flashed from one image (one host name,
    /// a machine id each, made at first boot) never share an id.
    pub fn node_id(&self) -> String {
        if !self.node.id.is_empty() {
            return self.node.id.clone();
        }
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let host = read("/etc/hostname").unwrap_or_else(|| "convoy".to_string());
        let machine = read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id"));
        default_node_id(&host, machine.as_deref())
    }
}

/// `host-abcdef`: the host name and the first six hex digits of SHA-256 of the machine id
/// (the id itself is not published: systemd asks for it to be kept private); the host name
/// alone without a machine id.
pub fn default_node_id(host: &str, machine_id: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match machine_id {
        Some(m) => {
            let h = Sha256::digest(m.as_bytes());
            // 64 bytes is the id limit: keep the host part short enough.
            let host: String = host.chars().take(48).collect();
            format!("{host}-{:02x}{:02x}{:02x}", h[0], h[1], h[2])
        }
        None => host.to_string(),
    }
}

impl WebConfig {
    /// Range checks of `[web]`.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let range = |key: &str, message: String| ConfigError::Range {
            origin: origin.to_string(),
            key: format!("web.{key}"),
            message,
        };
        if self.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(range(
                "bind",
                format!("{:?} is not an IP address", self.bind),
            ));
        }
        if !self.pin.is_empty() {
            check_secret(&self.pin).map_err(|e| range("pin", e.to_string()))?;
        }
        if !(1..=1000).contains(&self.login_burst) {
            return Err(range(
                "login_burst",
                format!("{} is outside 1..=1000", self.login_burst),
            ));
        }
        if !(1..=65_536).contains(&self.upload_max_mib) {
            return Err(range(
                "upload_max_mib",
                format!("{} is outside 1..=65536", self.upload_max_mib),
            ));
        }
        for (key, v, lo, hi) in [
            ("show_max_kib", self.show_max_kib, 1, 65_536),
            ("library_max_mib", self.library_max_mib, 1, 16_777_216),
            ("max_uploads", u64::from(self.max_uploads), 1, 64),
            ("max_connections", u64::from(self.max_connections), 4, 4096),
            ("max_websockets", u64::from(self.max_websockets), 1, 1024),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(range(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        for o in &self.allowed_origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && !o.contains(char::is_whitespace);
            if !ok {
                return Err(range(
                    "allowed_origins",
                    format!("{o:?} is not an origin like \"http://192.168.4.1:8080\""),
                ));
            }
        }
        if self.share_rate_kib > 10_000_000 {
            return Err(range(
                "share_rate_kib",
                format!("{} is above 10000000", self.share_rate_kib),
            ));
        }
        if !(1..=100).contains(&self.share_attempts) {
            return Err(range(
                "share_attempts",
                format!("{} is outside 1..=100", self.share_attempts),
            ));
        }
        if self.library.trim().is_empty() {
            return Err(range("library", "must name a directory".into()));
        }
        for (key, v, lo, hi) in [
            ("login_per_minute", self.login_per_minute, 0.01, 6000.0),
            ("share_timeout_s", self.share_timeout_s, 0.1, 3600.0),
            ("header_timeout_s", self.header_timeout_s, 0.1, 600.0),
            ("follow_poll_ms", self.follow_poll_ms, 10.0, 60_000.0),
            (
                "follow_threshold_ms",
                self.follow_threshold_ms,
                1.0,
                60_000.0,
            ),
            ("follow_holdoff_ms", self.follow_holdoff_ms, 0.0, 60_000.0),
        ] {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(range(key, format!("{v} is outside {lo}..={hi}")));
            }
        }
        if !self.follow_url.is_empty() {
            let ok = self
                .follow_url
                .parse::<axum::http::Uri>()
                .ok()
                .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some());
            if ok.is_none() {
                return Err(range(
                    "follow_url",
                    format!(
                        "{:?} is not a URL like http://192.168.4.10:8000",
                        self.follow_url
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    // The parser's message keeps its lines: line and column, the line itself, a caret.
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim().to_string(),
        })
}

/// Every leaf of `table` as (dotted key, value).
fn leaves(table: &toml::Table, prefix: &str) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => out.extend(leaves(t, &path)),
            v => out.push((path, v.clone())),
        }
    }
    out
}

/// Set `parts` (a dotted key split) in `table` when its parent tables exist.
fn set_leaf(table: &mut toml::Table, parts: &[&str], value: toml::Value) -> bool {
    match parts {
        [] => false,
        [last] => {
            table.insert((*last).to_string(), value);
            true
        }
        [first, rest @ ..] => match table.get_mut(*first) {
            Some(toml::Value::Table(t)) => set_leaf(t, rest, value),
            _ => false,
        },
    }
}

/// A value the configuration cannot take (`--set audio.sink=nul`): find the layer and key
/// by applying each set value alone to the defaults, newest layer first, and name both.
fn blame(
    defaults: &toml::Table,
    layers: &[(String, toml::Table)],
    origin: &str,
    err: &toml::de::Error,
) -> ConfigError {
    for (layer, table) in layers.iter().rev() {
        for (key, value) in leaves(table, "") {
            let mut alone = defaults.clone();
            let parts: Vec<&str> = key.split('.').collect();
            if !set_leaf(&mut alone, &parts, value) {
                continue;
            }
            if let Err(e) = toml::Value::Table(alone).try_into::<Config>() {
                return ConfigError::Invalid {
                    origin: layer.clone(),
                    message: format!("`{key}`: {}", e.message().trim()),
                };
            }
        }
    }
    ConfigError::Invalid {
        origin: origin.to_string(),
        message: err.message().trim().to_string(),
    }
}

/// Every key of `user` must exist in `base` (the defaults name every key), so a typo is
/// reported against the file that made it, with its full dotted path.
fn check_known(
    base: &toml::Table,
    user: &toml::Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (key, value) in user {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get(key), value) {
            (None, _) => {
                let known: Vec<&str> = base.keys().map(String::as_str).collect();
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    message: format!("unknown key `{path}` (known here: {})", known.join(", ")),
                });
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => {
                check_known(b, u, &path, origin)?
            }
            (Some(toml::Value::Table(_)), _) => {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    message: format!("`{path}` must be a table"),
                })
            }
            (Some(b), u)
                if std::mem::discriminant(b) != std::mem::discriminant(u)
                    && !numeric_pair(b, u) =>
            {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    message: format!(
                        "`{path}` must be a {}, not a {}",
                        b.type_str(),
                        u.type_str()
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// On the command line a string key takes any bare value as text: `--set web.pin=2468`
/// means the PIN "2468", not a type error (a config file still needs the quotes).
fn unquoted_strings(base: &toml::Table, user: &mut toml::Table) {
    for (key, value) in user.iter_mut() {
        match (base.get(key), &mut *value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => unquoted_strings(b, u),
            (
                Some(toml::Value::String(_)),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_),
            ) => *value = toml::Value::String(value.to_string()),
            _ => {}
        }
    }
}

/// An integer where a float is expected is fine (`latency_ms = 5`).
fn numeric_pair(base: &toml::Value, user: &toml::Value) -> bool {
    matches!(
        (base, user),
        (toml::Value::Float(_), toml::Value::Integer(_))
    )
}

fn merge(base: &mut toml::Table, user: toml::Table) {
    for (key, value) in user {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(u)) => merge(b, u),
            (Some(slot @ toml::Value::Float(_)), toml::Value::Integer(i)) => {
                *slot = toml::Value::Float(i as f64)
            }
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// `audio.virtual.latency_ms=5` → `[audio.virtual]\nlatency_ms = 5`. Bare words become strings.
fn override_to_toml(item: &str) -> Result<String, ConfigError> {
    let bad = |m: &str| ConfigError::Syntax {
        origin: format!("--set {item}"),
        message: m.to_string(),
    };
    let (path, value) = item
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE"))?;
    let path = path.trim();
    let (table, key) = match path.rsplit_once('.') {
        Some((t, k)) => (Some(t), k),
        None => (None, path),
    };
    if key.is_empty()
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(bad("key must be a dotted path like audio.sink"));
    }
    let value = value.trim();
    let literal = if value.parse::<toml::Value>().is_ok()
        || format!("x = {value}").parse::<toml::Table>().is_ok()
    {
        value.to_string()
    } else {
        format!("{value:?}")
    };
    Ok(match table {
        Some(t) => format!("[{t}]\n{key} = {literal}\n"),
        None => format!("{key} = {literal}\n"),
    })
}

/// `[security]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Key file (empty: use `key_env`).
    pub key_file: String,
    /// Environment variable holding the key as hex/base64 text.
    pub key_env: String,
    /// Id of the current key.
    pub key_id: u8,
    /// Outgoing key during a rotation (accepted, never used to sign).
    pub previous_key_file: String,
    /// Its id.
    pub previous_key_id: u8,
    /// Allowed vehicle ids (empty: every key holder).
    pub whitelist: Vec<String>,
    /// Largest |timestamp − now| accepted, s.
    pub max_skew_s: f64,
    /// External control-port policy.
    pub control: ControlSection,
}

/// `[security.control]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// False refuses every external control message.
    pub enabled: bool,
    /// Allowed source networks.
    pub allow: Vec<String>,
    /// Required first address segment (empty: none).
    pub secret: String,
}

/// Is `secret` usable as a shared secret OSC address segment (the control port's `secret`,
/// the web PIN): 1..=128 bytes of printable ASCII without `/`, `#` or OSC pattern
/// characters? The one rule; `security::policy::SecretPrefix` applies it too.
pub fn check_secret(secret: &str) -> Result<(), &'static str> {
    if secret.is_empty() || secret.len() > 128 {
        return Err("must be 1..=128 bytes");
    }
    if !secret
        .bytes()
        .all(|c| c.is_ascii_graphic() && !b"/#*?[]{},!".contains(&c))
    {
        return Err("must be printable ASCII without '/', '#', or pattern characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn default_vehicle_ids_differ_per_machine_and_keep_the_host_name() {
        let a = default_node_id("raspberrypi", Some("0123456789abcdef0123456789abcdef"));
        let b = default_node_id("raspberrypi", Some("fedcba9876543210fedcba9876543210"));
        assert!(
            a.starts_with("raspberrypi-") && a.len() == "raspberrypi-".len() + 6,
            "{a}"
        );
        assert_ne!(a, b, "two machines flashed from one image share an id");
        assert_eq!(default_node_id("raspberrypi", None), "raspberrypi");
        let c = Config::load(None, &["node.id=left".to_string()]).expect("config");
        assert_eq!(c.node_id(), "left", "node.id overrides");
    }

    #[test]
    fn bare_values_given_to_string_keys_on_the_command_line_are_text() {
        let c = Config::load(None, &["web.pin=2468".to_string()]).expect("a digit PIN");
        assert_eq!(c.web.pin, "2468");
        let e = Config::load(None, &["web.port=abc".to_string()]).expect_err("not a port");
        assert!(e.to_string().contains("web.port"), "{e}");
    }

    #[test]
    fn builtin_defaults_load_and_validate() {
        let c = Config::builtin().expect("defaults");
        assert_eq!(c.audio.sink, SinkKind::Auto);
        assert_eq!(c.audio.sample_rate, 48_000);
    }

    #[test]
    fn user_file_overrides_only_what_it_names() {
        let f = write("[audio]\nsink = \"virtual\"\n[audio.virtual]\nrate_error_ppm = 120\n");
        let c = Config::load(Some(f.path()), &[]).expect("load");
        assert_eq!(c.audio.sink, SinkKind::Virtual);
        assert_eq!(c.audio.virtual_sink.rate_error_ppm, 120.0);
        assert_eq!(c.audio.sample_rate, 48_000);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let f = write("[audio]\nsinc_lenght = 64\n");
        let err = Config::load(Some(f.path()), &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("audio.sinc_lenght"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let f = write("[audio]\nsample_rate = \"fast\"\n");
        let err = Config::load(Some(f.path()), &[])
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("audio.sample_rate") && err.contains("integer"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key_and_where_they_were_set() {
        // issue 27: `--set audio.sink=nul` blamed "built-in defaults" and named no key.
        let err = Config::load(None, &["audio.sink=nul".into()])
            .expect_err("bad sink")
            .to_string();
        assert!(
            err.starts_with("--set audio.sink=nul: `audio.sink`: unknown variant `nul`"),
            "{err}"
        );
        let f = write("[sync]\nrole = \"boss\"\n");
        let err = Config::load(Some(f.path()), &["audio.sink=null".into()])
            .expect_err("bad role")
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: `sync.role`: unknown variant `boss`",
                f.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_keep_line_column_and_caret() {
        let f = write("[audio]\nsink = \n");
        let err = Config::load(Some(f.path()), &[])
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("line 2, column") && err.contains('^') && err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_file() {
        let f = write("[audio\n");
        let err = Config::load(Some(f.path()), &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn overrides_apply_last_and_are_checked() {
        let c = Config::load(
            None,
            &[
                "audio.sink=null".into(),
                "audio.virtual.latency_ms=5".into(),
            ],
        )
        .expect("load");
        assert_eq!(c.audio.sink, SinkKind::Null);
        assert_eq!(c.audio.virtual_sink.latency_ms, 5.0);
        let err = Config::load(None, &["audio.nope=1".into()])
            .expect_err("fail")
            .to_string();
        assert!(err.contains("audio.nope"), "{err}");
    }

    #[test]
    fn osc_section_is_validated_by_key() {
        let c = Config::builtin().expect("defaults");
        assert!(!c.osc.enabled);
        assert_eq!(c.osc.tcp_framing, TcpFraming::Auto);
        assert_eq!(c.osc.wled.destination, "239.0.0.1:11988");
        let c = Config::load(None, &["osc.outbound=[\"127.0.0.1:7000\"]".into()]).expect("load");
        assert_eq!(c.osc.outbound, vec!["127.0.0.1:7000".to_string()]);
        for (set, key) in [
            ("osc.outbound=[\"visuals:7000\"]", "osc.outbound"),
            ("osc.wled.destination=nowhere", "osc.wled.destination"),
            ("osc.feedback_hz=0", "osc.feedback_hz"),
            ("osc.max_packet=10", "osc.max_packet"),
            ("osc.bind=lan", "osc.bind"),
            ("osc.tcp_framing=cobs", "cobs"),
        ] {
            let err = Config::load(None, &[set.into()])
                .expect_err(set)
                .to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
    }

    #[test]
    fn led_and_show_sections_load_and_validate() {
        let c = Config::builtin().expect("defaults");
        assert_eq!(c.led.output, LedOutputKind::Sim);
        assert_eq!(c.led.baud, 115_200);
        let c = Config::load(
            None,
            &["led.output=serial".into(), "led.latency_ms=7".into()],
        )
        .expect("load");
        assert_eq!(
            (c.led.output, c.led.latency_ms),
            (LedOutputKind::Serial, 7.0)
        );
        let err = Config::load(None, &["led.num_leds=0".into()])
            .expect_err("fail")
            .to_string();
        assert!(err.contains("led.num_leds"), "{err}");
        let err = Config::load(None, &["show.bands_hz=0".into()])
            .expect_err("fail")
            .to_string();
        assert!(err.contains("show.bands_hz"), "{err}");
        assert_eq!((c.show.file.as_str(), c.show.journal.as_str()), ("", ""));
        let err = Config::load(None, &["show.file=no/such/show.toml".into()])
            .expect_err("fail")
            .to_string();
        assert!(
            err.contains("show.file") && err.contains("no/such/show.toml"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_is_rejected() {
        let err = Config::load(None, &["audio.sample_rate=1".into()])
            .expect_err("fail")
            .to_string();
        assert!(err.contains("audio.sample_rate"), "{err}");
        let err = Config::load(None, &["audio.sink=loud".into()])
            .expect_err("fail")
            .to_string();
        assert!(err.contains("loud"), "{err}");
    }

    #[test]
    fn fleet_keys_are_validated_by_name() {
        let c = Config::builtin().expect("defaults");
        assert!(c.fleet.enabled && c.fleet.peer_timeout_ms >= 2 * c.fleet.heartbeat_ms);
        for (set, key) in [
            ("fleet.heartbeat_ms=5", "fleet.heartbeat_ms"),
            ("fleet.peer_timeout_ms=300", "fleet.peer_timeout_ms"),
            ("fleet.broadcast=[\"nowhere\"]", "fleet.broadcast"),
            ("fleet.group_size=1", "fleet.group_size"),
            ("fleet.port=0", "fleet.port"),
        ] {
            let err = Config::load(None, &[set.into()])
                .expect_err(set)
                .to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        let err = Config::load(None, &["fleet.priority=300".into()])
            .expect_err("u8")
            .to_string();
        assert!(err.contains("priority"), "{err}");
        let c = Config::load(None, &["fleet.broadcast=[\"10.77.0.255:9200\"]".into()]).expect("ok");
        assert_eq!(c.fleet.broadcast, ["10.77.0.255:9200"]);
    }

    #[test]
    fn auto_role_needs_fleet_membership() {
        let c = Config::load(None, &["sync.role=auto".into()]).expect("auto loads");
        assert_eq!(c.sync.role, Role::Auto);
        let err = Config::load(
            None,
            &["sync.role=auto".into(), "fleet.enabled=false".into()],
        )
        .expect_err("auto without membership")
        .to_string();
        assert!(
            err.contains("sync.role") && err.contains("fleet.enabled"),
            "{err}"
        );
    }

    #[test]
    fn web_section_is_validated_naming_the_key() {
        let c = Config::builtin().expect("defaults");
        assert!(!c.web.enabled);
        assert_eq!(c.web.share_rate_kib, 1024);
        for (set, key) in [
            ("web.pin=12/34", "web.pin"),
            ("web.bind=somewhere", "web.bind"),
            ("web.follow_url=ftp://x", "web.follow_url"),
            ("web.follow_poll_ms=0", "web.follow_poll_ms"),
            ("web.upload_max_mib=0", "web.upload_max_mib"),
            ("web.max_connections=0", "web.max_connections"),
            ("web.max_uploads=0", "web.max_uploads"),
            ("web.header_timeout_s=0", "web.header_timeout_s"),
            (
                "web.allowed_origins=[\"evil.example\"]",
                "web.allowed_origins",
            ),
        ] {
            let err = Config::load(None, &[set.into()])
                .expect_err(set)
                .to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        let c = Config::load(
            None,
            &[
                "web.pin=\"4321\"".into(),
                "web.follow_url=http://127.0.0.1:8000".into(),
            ],
        )
        .expect("valid");
        assert_eq!(c.web.pin, "4321");
    }
}
