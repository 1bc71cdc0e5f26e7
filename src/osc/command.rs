//! The Convoy OSC control address space as a typed [`Command`].
//!
//! A [`CommandParser`] compiles its method table once (literal addresses in a
//! hash map, parameterised ones such as `/cue/*/start` as [`Pattern`]s) and
//! turns an [`OscMessage`] into a [`Command`], or a [`CommandError`] naming the
//! address and the expected signature. Besides the native `/convoy/...` space
//! it understands QLab-style `/go` and `/cue/{n}/start`, Reaper's default
//! pattern (`/play`, `/stop`, `/tempo/raw`, `/time`, `/beat/str`) and
//! AbletonOSC's `/live/song/get/beat|tempo` replies. Trigger-style commands
//! also accept one numeric argument, as sent by TouchOSC buttons and Reaper
//! feedback: non-zero triggers, zero yields [`Command::Release`] (ignore it).
//! Incoming addresses that are themselves patterns are not dispatched by
//! [`CommandParser::parse`]; [`CommandParser::matching_methods`] lists the
//! literal methods such a pattern selects. [`reply`] builds QLab-style
//! `/reply/<address>` messages.

use std::collections::HashMap;
use std::sync::OnceLock;

use rosc::{OscMessage, OscType};

use super::pattern::{has_wildcards, Pattern, PatternError};
pub use crate::control::Command;
use crate::led::protocol::Pattern as LightPattern;

/// Why a message is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No method at this address.
    #[error("unknown OSC address {0:?}")]
    UnknownAddress(String),
    /// Argument count or types do not fit the method.
    #[error("{address}: expected {expected}, got type tags {got:?}")]
    BadArgs {
        /// Message address.
        address: String,
        /// Expected signature, e.g. `/convoy/seek position_ms:i|f`.
        expected: &'static str,
        /// Type tags received, e.g. `",s"`.
        got: String,
    },
    /// Types fit but a value is unusable (NaN, negative position…).
    #[error("{address}: bad value ({detail}); expected {expected}")]
    BadValue {
        /// Message address.
        address: String,
        /// Expected signature.
        expected: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The address contains pattern characters; see `matching_methods`.
    #[error("address {0:?} is a pattern; dispatch via matching_methods")]
    PatternAddress(String),
    /// The address is not one node command (several, or one that needs the node's state):
    /// see [`CommandParser::parse_request`].
    #[error("{0}: not a single node command; dispatch via parse_request")]
    NotOneCommand(String),
}

/// What one control message asks the node for. Most addresses are one [`Command`]; the
/// TouchOSC conveniences are several (`/convoy/color/xy`: the hue, then the brightness) or
/// are resolved against what plays when they run (`/convoy/seek/norm`).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// One node command.
    Node(Command),
    /// Node commands to apply in order (answered once: ok if all were).
    Nodes(Vec<Command>),
    /// `/convoy/seek/norm`: seek to this fraction (0..=1) of the loaded track's length, a
    /// [`Command::Seek`] once the length is known; refused when no track is loaded.
    SeekFraction(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Play,
    Stop,
    Pause,
    Seek,
    Next,
    ShowLoad,
    LightPattern,
    Hue,
    Bright,
    Color,
    Go,
    DawPlay,
    DawStop,
    DawTempo,
    DawTime,
    DawBeat,
    LiveBeat,
    LiveTempo,
    Lead,
    Resume,
    Panic,
    SeekNorm,
    HueNorm,
    ColorXy,
}

/// Method table: (address, kind, signature shown in errors).
const METHODS: &[(&str, Kind, &str)] = &[
    ("/convoy/play", Kind::Play, "/convoy/play [track:s]"),
    ("/convoy/stop", Kind::Stop, "/convoy/stop"),
    ("/convoy/pause", Kind::Pause, "/convoy/pause"),
    ("/convoy/seek", Kind::Seek, "/convoy/seek position_ms:i|f"),
    ("/convoy/next", Kind::Next, "/convoy/next"),
    (
        "/convoy/show/load",
        Kind::ShowLoad,
        "/convoy/show/load name:s",
    ),
    (
        "/convoy/pattern",
        Kind::LightPattern,
        "/convoy/pattern name:s|index:i|f",
    ),
    ("/convoy/hue", Kind::Hue, "/convoy/hue degrees:i|f"),
    ("/convoy/bright", Kind::Bright, "/convoy/bright level:i|f"),
    (
        "/convoy/seek/norm",
        Kind::SeekNorm,
        "/convoy/seek/norm fraction:f|i (0..1 of the track)",
    ),
    (
        "/convoy/hue/norm",
        Kind::HueNorm,
        "/convoy/hue/norm fraction:f|i (0..1 = 0..360 degrees)",
    ),
    (
        "/convoy/color/xy",
        Kind::ColorXy,
        "/convoy/color/xy hue:f|i brightness:f|i (both 0..1)",
    ),
    (
        "/convoy/color",
        Kind::Color,
        "/convoy/color r:i|f g:i|f b:i|f",
    ),
    ("/go", Kind::Go, "/go"),
    ("/pause", Kind::Pause, "/pause [state:f]"),
    ("/resume", Kind::Resume, "/resume"),
    ("/panic", Kind::Panic, "/panic"),
    ("/play", Kind::DawPlay, "/play [state:f]"),
    ("/stop", Kind::DawStop, "/stop [state:f]"),
    ("/tempo/raw", Kind::DawTempo, "/tempo/raw bpm:f|i"),
    ("/time", Kind::DawTime, "/time seconds:f|i"),
    ("/beat/str", Kind::DawBeat, "/beat/str beat:s"),
    (
        "/live/song/get/beat",
        Kind::LiveBeat,
        "/live/song/get/beat beat:i|f",
    ),
    (
        "/live/song/get/tempo",
        Kind::LiveTempo,
        "/live/song/get/tempo bpm:f|i",
    ),
    (
        "/convoy/fleet/lead",
        Kind::Lead,
        "/convoy/fleet/lead [on:i|f|T|F]",
    ),
];

const CUE_PATTERN: &str = "/cue/*/start";
const CUE_SIG: &str = "/cue/{n}/start";

/// Compiled method table; build once, parse many.
#[derive(Debug, Clone)]
pub struct CommandParser {
    literal: HashMap<&'static str, (Kind, &'static str)>,
    cue: Pattern,
    /// `/panic` fades over this long (`osc.panic_fade_ms`).
    panic_fade_ms: u64,
}

/// `/panic`'s fade when no configuration says otherwise (`osc.panic_fade_ms`), ms.
pub const DEFAULT_PANIC_FADE_MS: u64 = 2000;

impl Default for CommandParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandParser {
    /// Compiles the method table.
    pub fn new() -> Self {
        Self {
            literal: METHODS.iter().map(|&(a, k, s)| (a, (k, s))).collect(),
            // A constant, valid pattern.
            cue: Pattern::compile(CUE_PATTERN).unwrap_or_else(|_| unreachable!()),
            panic_fade_ms: DEFAULT_PANIC_FADE_MS,
        }
    }

    /// This parser with `/panic` fading over `ms`.
    pub fn with_panic_fade(mut self, ms: u64) -> Self {
        self.panic_fade_ms = ms;
        self
    }

    /// Every literal method address this parser knows.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        METHODS.iter().map(|m| m.0)
    }

    /// Literal method addresses selected by an incoming address pattern
    /// (parameterised `/cue/{n}/start` is never selected this way).
    pub fn matching_methods(&self, pattern: &str) -> Result<Vec<&'static str>, PatternError> {
        let p = Pattern::compile(pattern)?;
        Ok(self.methods().filter(|m| p.matches(m)).collect())
    }

    /// Parses one message that is one node command (anything but the addresses
    /// [`parse_request`](Self::parse_request) answers with several or a seek fraction).
    pub fn parse(&self, msg: &OscMessage) -> Result<Command, CommandError> {
        match self.parse_request(msg)? {
            Request::Node(cmd) => Ok(cmd),
            _ => Err(CommandError::NotOneCommand(msg.addr.clone())),
        }
    }

    /// Parses one message into what it asks the node for.
    pub fn parse_request(&self, msg: &OscMessage) -> Result<Request, CommandError> {
        let addr = msg.addr.as_str();
        if let Some(&(kind, sig)) = self.literal.get(addr) {
            if kind == Kind::Panic {
                return Ok(Request::Node(match trigger(sig, addr, &msg.args)? {
                    true => Command::Panic {
                        fade_ms: self.panic_fade_ms,
                    },
                    false => release(addr),
                }));
            }
            return match kind {
                Kind::SeekNorm => Ok(Request::SeekFraction(fraction(sig, addr, &msg.args)?)),
                Kind::HueNorm => Ok(Request::Node(Command::Hue {
                    degrees: norm_hue(fraction(sig, addr, &msg.args)?),
                })),
                Kind::ColorXy => match msg.args.as_slice() {
                    [x, y] => {
                        let (x, y) = (
                            unit(sig, addr, x, &msg.args)?,
                            unit(sig, addr, y, &msg.args)?,
                        );
                        Ok(Request::Nodes(vec![
                            Command::Hue {
                                degrees: norm_hue(x),
                            },
                            Command::Bright { level: y as f32 },
                        ]))
                    }
                    _ => Err(bad_args(sig, addr, &msg.args)),
                },
                _ => parse_kind(kind, sig, addr, &msg.args).map(Request::Node),
            };
        }
        self.parse_addressed(msg).map(Request::Node)
    }

    fn parse_addressed(&self, msg: &OscMessage) -> Result<Command, CommandError> {
        let addr = msg.addr.as_str();
        // QLab cue-number wildcards (`/cue/*/start`, `/cue/{drop,chase}/start`): the node
        // matches the pattern against the playing track's cues.
        if let Some(cue) = cue_segment(addr) {
            return match trigger(CUE_SIG, addr, &msg.args)? {
                true => Ok(Command::CueStart {
                    cue: cue.to_string(),
                }),
                false => Ok(release(addr)),
            };
        }
        if has_wildcards(addr) {
            return Err(CommandError::PatternAddress(addr.to_string()));
        }
        if self.cue.matches(addr) {
            let cue = addr.split('/').nth(2).unwrap_or_default();
            if cue.is_empty() {
                return Err(CommandError::UnknownAddress(addr.to_string()));
            }
            return match trigger(CUE_SIG, addr, &msg.args)? {
                true => Ok(Command::CueStart {
                    cue: cue.to_string(),
                }),
                false => Ok(release(addr)),
            };
        }
        Err(CommandError::UnknownAddress(addr.to_string()))
    }
}

/// The `{n}` of `/cue/{n}/start` when it is a pattern and the rest of the address is
/// literal (a cue-number wildcard, resolved by the node against the show's cues).
pub fn cue_segment(addr: &str) -> Option<&str> {
    let mut parts = addr.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(""), Some("cue"), Some(cue), Some("start"), None) if has_wildcards(cue) => Some(cue),
        _ => None,
    }
}

fn parser() -> &'static CommandParser {
    static PARSER: OnceLock<CommandParser> = OnceLock::new();
    PARSER.get_or_init(CommandParser::new)
}

/// Parses with a process-wide parser compiled on first use.
pub fn parse(msg: &OscMessage) -> Result<Command, CommandError> {
    parser().parse(msg)
}

/// [`CommandParser::parse_request`] with a process-wide parser compiled on first use.
pub fn parse_request(msg: &OscMessage) -> Result<Request, CommandError> {
    parser().parse_request(msg)
}

/// QLab-style reply: address `/reply<address>` with the JSON status string.
pub fn reply(address: &str, json_status: &str) -> OscMessage {
    let addr = if address.starts_with('/') {
        format!("/reply{address}")
    } else {
        format!("/reply/{address}")
    };
    OscMessage {
        addr,
        args: vec![OscType::String(json_status.to_string())],
    }
}

fn type_tags(args: &[OscType]) -> String {
    let mut s = String::from(",");
    for a in args.iter().take(32) {
        s.push(match a {
            OscType::Int(_) => 'i',
            OscType::Float(_) => 'f',
            OscType::String(_) => 's',
            OscType::Blob(_) => 'b',
            OscType::Time(_) => 't',
            OscType::Long(_) => 'h',
            OscType::Double(_) => 'd',
            OscType::Char(_) => 'c',
            OscType::Color(_) => 'r',
            OscType::Midi(_) => 'm',
            OscType::Bool(true) => 'T',
            OscType::Bool(false) => 'F',
            OscType::Array(_) => '[',
            OscType::Nil => 'N',
            OscType::Inf => 'I',
        });
    }
    s
}

fn bad_args(sig: &'static str, addr: &str, args: &[OscType]) -> CommandError {
    CommandError::BadArgs {
        address: addr.to_string(),
        expected: sig,
        got: type_tags(args),
    }
}

fn bad_value(sig: &'static str, addr: &str, detail: &'static str) -> CommandError {
    CommandError::BadValue {
        address: addr.to_string(),
        expected: sig,
        detail,
    }
}

fn release(addr: &str) -> Command {
    Command::Release {
        address: addr.to_string(),
    }
}

/// A numeric argument as f64 (int, float, double, long, bool).
fn number(a: &OscType) -> Option<f64> {
    match a {
        OscType::Int(i) => Some(f64::from(*i)),
        OscType::Float(f) => Some(f64::from(*f)),
        OscType::Double(d) => Some(*d),
        OscType::Long(l) => Some(*l as f64),
        OscType::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// Trigger semantics: no args → true; one numeric → value != 0.
fn trigger(sig: &'static str, addr: &str, args: &[OscType]) -> Result<bool, CommandError> {
    match args {
        [] => Ok(true),
        [a] => number(a)
            .map(|v| v != 0.0)
            .ok_or_else(|| bad_args(sig, addr, args)),
        _ => Err(bad_args(sig, addr, args)),
    }
}

fn one_string(sig: &'static str, addr: &str, args: &[OscType]) -> Result<String, CommandError> {
    match args {
        [OscType::String(s)] => Ok(s.clone()),
        _ => Err(bad_args(sig, addr, args)),
    }
}

fn one_number(sig: &'static str, addr: &str, args: &[OscType]) -> Result<f64, CommandError> {
    let v = match args {
        [a] => number(a).ok_or_else(|| bad_args(sig, addr, args))?,
        _ => return Err(bad_args(sig, addr, args)),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(bad_value(sig, addr, "not a finite number"))
    }
}

/// A normalized value (a TouchOSC fader's 0..1): one number, int or float, within 0..=1;
/// anything outside is refused naming the range (a fader cannot send it: a misconfigured
/// surface should learn, not be silently clamped).
fn fraction(sig: &'static str, addr: &str, args: &[OscType]) -> Result<f64, CommandError> {
    match args {
        [a] => unit(sig, addr, a, args),
        _ => Err(bad_args(sig, addr, args)),
    }
}

fn unit(sig: &'static str, addr: &str, a: &OscType, args: &[OscType]) -> Result<f64, CommandError> {
    let v = number(a).ok_or_else(|| bad_args(sig, addr, args))?;
    if !v.is_finite() {
        return Err(bad_value(sig, addr, "not a finite number"));
    }
    if !(0.0..=1.0).contains(&v) {
        return Err(bad_value(sig, addr, "outside 0..1"));
    }
    Ok(v)
}

/// 0..=1 onto whole degrees 0..360 (1.0 is 360, the same hue as 0). Rounded to the
/// nearest degree, so `100/360` is exactly hue 100.
fn norm_hue(f: f64) -> u16 {
    ((f * 360.0).round() as u16) % 360
}

/// Colour channel: ints are 0..255, floats 0..1; clamped.
fn channel(a: &OscType) -> Option<u8> {
    match a {
        OscType::Int(i) => Some((*i).clamp(0, 255) as u8),
        OscType::Long(l) => Some((*l).clamp(0, 255) as u8),
        OscType::Float(f) if f.is_finite() => Some((f.clamp(0.0, 1.0) * 255.0).round() as u8),
        OscType::Double(d) if d.is_finite() => Some((d.clamp(0.0, 1.0) * 255.0).round() as u8),
        _ => None,
    }
}

fn parse_kind(
    kind: Kind,
    sig: &'static str,
    addr: &str,
    args: &[OscType],
) -> Result<Command, CommandError> {
    let trig = |cmd: Command| -> Result<Command, CommandError> {
        Ok(if trigger(sig, addr, args)? {
            cmd
        } else {
            release(addr)
        })
    };
    match kind {
        Kind::Play => match args {
            [OscType::String(s)] => Ok(Command::Play {
                track: Some(s.clone()),
            }),
            _ => trig(Command::Play { track: None }),
        },
        Kind::DawPlay => trig(Command::Play { track: None }),
        Kind::Stop | Kind::DawStop => trig(Command::Stop),
        Kind::Pause => trig(Command::Pause),
        Kind::Next => trig(Command::Next),
        Kind::Go => trig(Command::Go),
        Kind::Resume => trig(Command::Play { track: None }),
        Kind::Panic => trig(Command::Panic {
            fade_ms: DEFAULT_PANIC_FADE_MS,
        }),
        Kind::Lead => Ok(Command::Lead {
            on: trigger(sig, addr, args)?,
        }),
        Kind::Seek => {
            let v = match args {
                [a @ (OscType::Int(_)
                | OscType::Float(_)
                | OscType::Double(_)
                | OscType::Long(_))] => number(a).unwrap_or(f64::NAN),
                _ => return Err(bad_args(sig, addr, args)),
            };
            if !v.is_finite() || v < 0.0 {
                return Err(bad_value(sig, addr, "position must be finite and >= 0"));
            }
            Ok(Command::Seek { position_ms: v })
        }
        Kind::ShowLoad => Ok(Command::ShowLoad {
            name: one_string(sig, addr, args)?,
        }),
        Kind::LightPattern => match args {
            [OscType::String(s)] => Ok(Command::Pattern { name: s.clone() }),
            // A TouchOSC radio or fader sends the pattern's place in the list.
            _ => {
                let i = one_number(sig, addr, args)?.round();
                let p = (i >= 0.0)
                    .then(|| LightPattern::ALL.get(i as usize))
                    .flatten()
                    .ok_or_else(|| bad_value(sig, addr, "no pattern at that index"))?;
                Ok(Command::Pattern {
                    name: p.name().to_string(),
                })
            }
        },
        Kind::Hue => Ok(Command::Hue {
            degrees: one_number(sig, addr, args)?.round().rem_euclid(360.0) as u16 % 360,
        }),
        Kind::Bright => match args {
            [OscType::Int(_) | OscType::Long(_)] => Ok(Command::Bright {
                level: (one_number(sig, addr, args)?.clamp(0.0, 255.0) / 255.0) as f32,
            }),
            [OscType::Float(_) | OscType::Double(_)] => Ok(Command::Bright {
                level: one_number(sig, addr, args)?.clamp(0.0, 1.0) as f32,
            }),
            _ => Err(bad_args(sig, addr, args)),
        },
        Kind::Color => match args {
            [r, g, b] => match (channel(r), channel(g), channel(b)) {
                (Some(r), Some(g), Some(b)) => Ok(Command::Color { r, g, b }),
                _ => Err(bad_args(sig, addr, args)),
            },
            _ => Err(bad_args(sig, addr, args)),
        },
        // Answered by `CommandParser::parse_request` before this.
        Kind::SeekNorm | Kind::HueNorm | Kind::ColorXy => {
            Err(CommandError::NotOneCommand(addr.to_string()))
        }
        Kind::DawTempo => Ok(Command::DawTempo {
            bpm: one_number(sig, addr, args)? as f32,
        }),
        Kind::DawTime => Ok(Command::DawTime {
            seconds: one_number(sig, addr, args)?,
        }),
        Kind::DawBeat => Ok(Command::DawBeatString {
            beat: one_string(sig, addr, args)?,
        }),
        Kind::LiveBeat => Ok(Command::LiveBeat {
            beat: one_number(sig, addr, args)? as i32,
        }),
        Kind::LiveTempo => Ok(Command::LiveTempo {
            bpm: one_number(sig, addr, args)? as f32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OscType::*;

    fn p(addr: &str, args: Vec<OscType>) -> Result<Command, CommandError> {
        parse(&OscMessage {
            addr: addr.into(),
            args,
        })
    }

    #[test]
    fn convoy_space() {
        assert_eq!(p("/convoy/play", vec![]), Ok(Command::Play { track: None }));
        assert_eq!(
            p("/convoy/play", vec![String("intro".into())]),
            Ok(Command::Play {
                track: Some("intro".into())
            })
        );
        assert_eq!(p("/convoy/stop", vec![]), Ok(Command::Stop));
        assert_eq!(p("/convoy/pause", vec![]), Ok(Command::Pause));
        assert_eq!(p("/convoy/next", vec![]), Ok(Command::Next));
        assert_eq!(
            p("/convoy/seek", vec![Int(1500)]),
            Ok(Command::Seek {
                position_ms: 1500.0
            })
        );
        assert_eq!(
            p("/convoy/seek", vec![Float(2.5)]),
            Ok(Command::Seek { position_ms: 2.5 })
        );
        assert_eq!(
            p("/convoy/show/load", vec![String("night".into())]),
            Ok(Command::ShowLoad {
                name: "night".into()
            })
        );
        assert_eq!(
            p("/convoy/pattern", vec![String("chase".into())]),
            Ok(Command::Pattern {
                name: "chase".into()
            })
        );
        assert_eq!(
            p("/convoy/hue", vec![Int(-30)]),
            Ok(Command::Hue { degrees: 330 })
        );
        assert_eq!(
            p("/convoy/bright", vec![Int(255)]),
            Ok(Command::Bright { level: 1.0 })
        );
        assert_eq!(
            p("/convoy/bright", vec![Float(0.25)]),
            Ok(Command::Bright { level: 0.25 })
        );
        assert_eq!(
            p("/convoy/color", vec![Int(255), Float(0.5), Int(-3)]),
            Ok(Command::Color {
                r: 255,
                g: 128,
                b: 0
            })
        );
        assert_eq!(p("/go", vec![]), Ok(Command::Go));
        assert_eq!(
            p("/cue/12/start", vec![]),
            Ok(Command::CueStart { cue: "12".into() })
        );
        assert_eq!(
            p("/cue/intro.b/start", vec![Float(1.0)]),
            Ok(Command::CueStart {
                cue: "intro.b".into()
            })
        );
    }

    #[test]
    fn touchosc_buttons_and_daw_dialects() {
        assert_eq!(p("/convoy/stop", vec![Float(1.0)]), Ok(Command::Stop));
        assert_eq!(
            p("/convoy/stop", vec![Float(0.0)]),
            Ok(Command::Release {
                address: "/convoy/stop".into()
            })
        );
        assert_eq!(
            p("/convoy/play", vec![Int(1)]),
            Ok(Command::Play { track: None })
        );
        assert_eq!(
            p("/play", vec![Float(1.0)]),
            Ok(Command::Play { track: None })
        );
        assert_eq!(p("/stop", vec![]), Ok(Command::Stop));
        assert_eq!(
            p("/tempo/raw", vec![Float(120.0)]),
            Ok(Command::DawTempo { bpm: 120.0 })
        );
        assert_eq!(
            p("/time", vec![Float(12.5)]),
            Ok(Command::DawTime { seconds: 12.5 })
        );
        assert_eq!(
            p("/beat/str", vec![String("4.2.00".into())]),
            Ok(Command::DawBeatString {
                beat: "4.2.00".into()
            })
        );
        assert_eq!(
            p("/live/song/get/beat", vec![Int(17)]),
            Ok(Command::LiveBeat { beat: 17 })
        );
        assert_eq!(
            p("/live/song/get/tempo", vec![Float(128.0)]),
            Ok(Command::LiveTempo { bpm: 128.0 })
        );
        assert_eq!(
            p("/convoy/fleet/lead", vec![]),
            Ok(Command::Lead { on: true })
        );
        assert_eq!(
            p("/convoy/fleet/lead", vec![Bool(true)]),
            Ok(Command::Lead { on: true })
        );
        assert_eq!(
            p("/convoy/fleet/lead", vec![Float(0.0)]),
            Ok(Command::Lead { on: false }),
            "a toggle switched off gives the override up"
        );
        assert!(matches!(
            p("/convoy/fleet/lead", vec![String("yes".into())]),
            Err(CommandError::BadArgs { .. })
        ));
    }

    #[test]
    fn a_number_is_an_int_or_a_float_wherever_one_is_meant() {
        // TouchOSC faders send floats, Reaper and liblo often ints (issue #22).
        assert_eq!(
            p("/convoy/hue", vec![Float(100.0)]),
            Ok(Command::Hue { degrees: 100 })
        );
        assert_eq!(
            p("/convoy/hue", vec![Float(359.6)]),
            Ok(Command::Hue { degrees: 0 })
        );
        assert_eq!(
            p("/convoy/hue", vec![Double(-90.0)]),
            Ok(Command::Hue { degrees: 270 })
        );
        assert_eq!(
            p("/tempo/raw", vec![Int(120)]),
            Ok(Command::DawTempo { bpm: 120.0 })
        );
        assert_eq!(
            p("/time", vec![Int(12)]),
            Ok(Command::DawTime { seconds: 12.0 })
        );
        assert_eq!(
            p("/live/song/get/beat", vec![Double(17.0)]),
            Ok(Command::LiveBeat { beat: 17 })
        );
        assert_eq!(
            p("/convoy/bright", vec![Double(0.5)]),
            Ok(Command::Bright { level: 0.5 })
        );
        assert_eq!(
            p("/convoy/pattern", vec![Float(2.0)]),
            Ok(Command::Pattern {
                name: LightPattern::ALL[2].name().into()
            })
        );
        assert_eq!(
            p("/convoy/pattern", vec![Int(99)])
                .unwrap_err()
                .to_string(),
            "/convoy/pattern: bad value (no pattern at that index); expected /convoy/pattern name:s|index:i|f"
        );
        assert!(matches!(
            p("/convoy/hue", vec![Float(f32::NAN)]),
            Err(CommandError::BadValue { .. })
        ));
    }

    fn req(addr: &str, args: Vec<OscType>) -> Result<Request, CommandError> {
        parse_request(&OscMessage {
            addr: addr.into(),
            args,
        })
    }

    #[test]
    fn touchosc_normalized_controls() {
        // A fader's 0..1, as a float or an int, onto the native commands (issue #22).
        assert_eq!(
            req("/convoy/seek/norm", vec![Float(0.25)]),
            Ok(Request::SeekFraction(0.25))
        );
        assert_eq!(
            req("/convoy/seek/norm", vec![Int(1)]),
            Ok(Request::SeekFraction(1.0))
        );
        // Exact degrees: the float nearest 100/360 is hue 100, not 99.
        assert_eq!(
            req("/convoy/hue/norm", vec![Float(100.0 / 360.0)]),
            Ok(Request::Node(Command::Hue { degrees: 100 }))
        );
        assert_eq!(
            req("/convoy/hue/norm", vec![Float(1.0)]),
            Ok(Request::Node(Command::Hue { degrees: 0 }))
        );
        assert_eq!(
            req("/convoy/hue/norm", vec![Int(0)]),
            Ok(Request::Node(Command::Hue { degrees: 0 }))
        );
        assert_eq!(
            req("/convoy/hue/norm", vec![Double(0.5)]),
            Ok(Request::Node(Command::Hue { degrees: 180 }))
        );
        // The XY pad: hue from x, brightness from y, in that order.
        assert_eq!(
            req("/convoy/color/xy", vec![Float(0.75), Float(0.5)]),
            Ok(Request::Nodes(vec![
                Command::Hue { degrees: 270 },
                Command::Bright { level: 0.5 }
            ]))
        );
        assert_eq!(
            req("/convoy/color/xy", vec![Int(0), Int(1)]),
            Ok(Request::Nodes(vec![
                Command::Hue { degrees: 0 },
                Command::Bright { level: 1.0 }
            ]))
        );
        // Brightness: a float 0..1 as is, an int 0..255.
        assert_eq!(
            req("/convoy/bright", vec![Float(0.5)]),
            Ok(Request::Node(Command::Bright { level: 0.5 }))
        );
        assert_eq!(
            req("/convoy/bright", vec![Int(51)]),
            Ok(Request::Node(Command::Bright { level: 0.2 }))
        );
        // Every other address is one node command through parse_request too.
        assert_eq!(
            req("/convoy/stop", vec![]),
            Ok(Request::Node(Command::Stop))
        );
        assert_eq!(
            req("/cue/3/start", vec![]),
            Ok(Request::Node(Command::CueStart { cue: "3".into() }))
        );
    }

    #[test]
    fn normalized_values_outside_0_1_are_refused_naming_the_range() {
        assert_eq!(
            req("/convoy/seek/norm", vec![Float(1.5)])
                .unwrap_err()
                .to_string(),
            "/convoy/seek/norm: bad value (outside 0..1); expected /convoy/seek/norm fraction:f|i (0..1 of the track)"
        );
        assert_eq!(
            req("/convoy/hue/norm", vec![Float(-0.1)])
                .unwrap_err()
                .to_string(),
            "/convoy/hue/norm: bad value (outside 0..1); expected /convoy/hue/norm fraction:f|i (0..1 = 0..360 degrees)"
        );
        assert_eq!(
            req("/convoy/color/xy", vec![Float(0.5), Float(2.0)])
                .unwrap_err()
                .to_string(),
            "/convoy/color/xy: bad value (outside 0..1); expected /convoy/color/xy hue:f|i brightness:f|i (both 0..1)"
        );
        assert!(matches!(
            req("/convoy/seek/norm", vec![Float(f32::NAN)]),
            Err(CommandError::BadValue { .. })
        ));
        assert!(matches!(
            req("/convoy/color/xy", vec![Float(0.5)]),
            Err(CommandError::BadArgs { .. })
        ));
        assert!(matches!(
            req("/convoy/hue/norm", vec![String("red".into())]),
            Err(CommandError::BadArgs { .. })
        ));
        // Not one command: `parse` says to dispatch via parse_request.
        assert_eq!(
            p("/convoy/color/xy", vec![Float(0.5), Float(0.5)]),
            Err(CommandError::NotOneCommand("/convoy/color/xy".into()))
        );
    }

    #[test]
    fn typed_errors_name_address_and_signature() {
        let e = p("/convoy/seek", vec![String("x".into())]).unwrap_err();
        assert_eq!(
            e,
            CommandError::BadArgs {
                address: "/convoy/seek".into(),
                expected: "/convoy/seek position_ms:i|f",
                got: ",s".into()
            }
        );
        assert!(e.to_string().contains("/convoy/seek position_ms:i|f"));
        assert!(matches!(
            p("/convoy/seek", vec![Int(-1)]),
            Err(CommandError::BadValue { .. })
        ));
        assert!(matches!(
            p("/convoy/seek", vec![Float(f32::NAN)]),
            Err(CommandError::BadValue { .. })
        ));
        assert!(matches!(
            p("/convoy/hue", vec![String("red".into())]),
            Err(CommandError::BadArgs { .. })
        ));
        assert!(matches!(
            p("/convoy/show/load", vec![]),
            Err(CommandError::BadArgs { .. })
        ));
        assert!(matches!(
            p("/convoy/color", vec![Int(1), Int(2)]),
            Err(CommandError::BadArgs { .. })
        ));
        assert!(matches!(
            p("/convoy/stop", vec![String("x".into())]),
            Err(CommandError::BadArgs { .. })
        ));
        assert!(matches!(
            p("/tempo/raw", vec![String("120".into())]),
            Err(CommandError::BadArgs { .. })
        ));
        assert_eq!(
            p("/nope", vec![]),
            Err(CommandError::UnknownAddress("/nope".into()))
        );
        assert!(matches!(
            p("/cue//start", vec![]),
            Err(CommandError::UnknownAddress(_))
        ));
        assert!(matches!(
            p("/convoy/*", vec![]),
            Err(CommandError::PatternAddress(_))
        ));
    }

    #[test]
    fn cue_number_wildcards_go_to_the_node() {
        assert_eq!(
            p("/cue/*/start", vec![]),
            Ok(Command::CueStart { cue: "*".into() })
        );
        assert_eq!(
            p("/cue/{drop,chase}/start", vec![Float(1.0)]),
            Ok(Command::CueStart {
                cue: "{drop,chase}".into()
            })
        );
        assert_eq!(cue_segment("/cue/1/start"), None);
        assert_eq!(p("/pause", vec![Float(1.0)]), Ok(Command::Pause));
        assert_eq!(p("/resume", vec![]), Ok(Command::Play { track: None }));
        assert_eq!(
            CommandParser::new()
                .with_panic_fade(500)
                .parse(&OscMessage {
                    addr: "/panic".into(),
                    args: vec![]
                }),
            Ok(Command::Panic { fade_ms: 500 })
        );
        assert_eq!(cue_segment("/cue/*/stop"), None);
        assert!(matches!(
            p("/c*/1/start", vec![]),
            Err(CommandError::PatternAddress(_))
        ));
    }

    #[test]
    fn pattern_dispatch_and_reply() {
        let parser = CommandParser::new();
        let mut m = parser.matching_methods("/convoy/{play,stop}").unwrap();
        m.sort();
        assert_eq!(m, vec!["/convoy/play", "/convoy/stop"]);
        assert_eq!(
            parser.matching_methods("/live/song/get/*").unwrap().len(),
            2
        );
        let r = reply("/convoy/status", r#"{"status":"ok"}"#);
        assert_eq!(r.addr, "/reply/convoy/status");
        assert_eq!(r.args, vec![String(r#"{"status":"ok"}"#.into())]);
        assert_eq!(reply("go", "{}").addr, "/reply/go");
    }
}
