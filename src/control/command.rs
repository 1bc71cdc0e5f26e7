//! The typed control set: every surface (OSC, web, DAW follow, the fleet relay, the show
//! runner) turns what it receives into a [`Command`]; the node applies it and answers with
//! `Ok` or a [`Refusal`](super::Refusal). The OSC addresses named in each variant's doc are
//! the native ones; `osc::command` parses them and the DAW/cue-tool dialects.

/// A parsed control command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/convoy/play [track:s]`, Reaper `/play`: start (optionally a track).
    Play {
        /// Track to play, if named.
        track: Option<String>,
    },
    /// `/convoy/stop`, Reaper `/stop`.
    Stop,
    /// `/convoy/pause`.
    Pause,
    /// `/convoy/seek position_ms:i|f`.
    Seek {
        /// Target position in milliseconds (finite, ≥ 0).
        position_ms: f64,
    },
    /// `/convoy/next`.
    Next,
    /// `/convoy/show/load name:s`.
    ShowLoad {
        /// Show name.
        name: String,
    },
    /// `/convoy/pattern name:s`.
    Pattern {
        /// Light pattern name.
        name: String,
    },
    /// `/convoy/hue i` (degrees, wrapped into 0..360).
    Hue {
        /// Hue in degrees.
        degrees: u16,
    },
    /// `/convoy/bright i|f`: float 0..1 as is, int 0..255 scaled; clamped.
    Bright {
        /// Brightness 0.0..=1.0.
        level: f32,
    },
    /// `/convoy/color r g b`: ints 0..255 or floats 0..1 (clamped).
    Color {
        /// Red.
        r: u8,
        /// Green.
        g: u8,
        /// Blue.
        b: u8,
    },
    /// QLab-style `/go`.
    Go,
    /// QLab-style `/cue/{n}/start`.
    CueStart {
        /// Cue number/name (the `{n}` segment).
        cue: String,
    },
    /// QLab-style `/panic`: fade the fleet's lights to black over `fade_ms`, then stop
    /// ([`fade_out`](super::fade_out)).
    Panic {
        /// How long the fade takes, ms (`osc.panic_fade_ms`).
        fade_ms: u64,
    },
    /// A trigger address sent with a zero value (button release): ignore.
    Release {
        /// The address released.
        address: String,
    },
    /// Reaper `/tempo/raw f`.
    DawTempo {
        /// Beats per minute.
        bpm: f32,
    },
    /// Reaper `/time f`.
    DawTime {
        /// Transport position in seconds.
        seconds: f64,
    },
    /// Reaper `/beat/str s` (e.g. `"4.2.00"`).
    DawBeatString {
        /// Bar.beat string as sent.
        beat: String,
    },
    /// AbletonOSC `/live/song/get/beat` reply.
    LiveBeat {
        /// Current beat number.
        beat: i32,
    },
    /// AbletonOSC `/live/song/get/tempo` reply.
    LiveTempo {
        /// Beats per minute.
        bpm: f32,
    },
    /// `/convoy/fleet/lead [on:i|f|T|F]`: this bike leads the fleet whatever the
    /// priorities (no argument or non-zero), or gives the override up (zero): a TouchOSC
    /// toggle maps onto it directly.
    Lead {
        /// Take (`true`) or release (`false`) the override.
        on: bool,
    },
}
