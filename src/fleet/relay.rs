//! Fleet messages besides the timeline: a follower relays control commands it receives
//! (from its own control port or web app) to the leader, which alone decides what the
//! fleet plays. A relayed command travels as the same OSC message a control surface would
//! send, inside `/convoy/fleet/command` with the original address as first argument, so
//! the leader parses it with the one control parser. All of it is sealed like every fleet
//! datagram.

use rosc::{OscMessage, OscPacket, OscType};

use crate::control::Command;
use crate::osc::command::CommandParser;

/// Address of a relayed command.
pub const RELAY_ADDR: &str = "/convoy/fleet/command";

/// The control-surface message equivalent to `cmd`, if it is a fleet-wide command.
pub fn to_osc(cmd: &Command) -> Option<OscMessage> {
    let (addr, args) = match cmd {
        Command::Play { track } => (
            "/convoy/play",
            track.iter().map(|t| OscType::String(t.clone())).collect(),
        ),
        Command::Stop => ("/convoy/stop", vec![]),
        Command::Pause => ("/convoy/pause", vec![]),
        Command::Seek { position_ms } => ("/convoy/seek", vec![OscType::Double(*position_ms)]),
        Command::Next => ("/convoy/next", vec![]),
        Command::ShowLoad { name } => ("/convoy/show/load", vec![OscType::String(name.clone())]),
        Command::Pattern { name } => ("/convoy/pattern", vec![OscType::String(name.clone())]),
        Command::Hue { degrees } => ("/convoy/hue", vec![OscType::Int(i32::from(*degrees))]),
        Command::Bright { level } => ("/convoy/bright", vec![OscType::Float(*level)]),
        Command::Color { r, g, b } => (
            "/convoy/color",
            vec![
                OscType::Int(i32::from(*r)),
                OscType::Int(i32::from(*g)),
                OscType::Int(i32::from(*b)),
            ],
        ),
        Command::Go => ("/go", vec![]),
        Command::CueStart { cue } => return Some(msg(&format!("/cue/{cue}/start"), vec![])),
        _ => return None,
    };
    Some(msg(addr, args))
}

fn msg(addr: &str, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.to_string(),
        args,
    }
}

/// Encode a relayed command (the payload to seal).
pub fn encode(cmd: &Command) -> Option<Vec<u8>> {
    let inner = to_osc(cmd)?;
    let mut args = vec![OscType::String(inner.addr)];
    args.extend(inner.args);
    rosc::encoder::encode(&OscPacket::Message(msg(RELAY_ADDR, args))).ok()
}

/// Decode a relayed command; `None` if `payload` is not one or does not parse.
pub fn decode(parser: &CommandParser, payload: &[u8]) -> Option<Command> {
    let (_, OscPacket::Message(m)) = rosc::decoder::decode_udp(payload).ok()? else {
        return None;
    };
    if m.addr != RELAY_ADDR {
        return None;
    }
    let mut args = m.args.into_iter();
    let Some(OscType::String(addr)) = args.next() else {
        return None;
    };
    parser.parse(&msg(&addr, args.collect())).ok()
}

/// Is this (authenticated or not yet) payload a relayed command or a stamped light field
/// (control traffic, not timing)? Used to pick the rate class before authentication.
pub fn is_relay(payload: &[u8]) -> bool {
    payload.starts_with(RELAY_ADDR.as_bytes())
        || payload.starts_with(super::lights::LIGHT_ADDR.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_commands_round_trip() {
        let parser = CommandParser::new();
        for cmd in [
            Command::Play {
                track: Some("demo".into()),
            },
            Command::Play { track: None },
            Command::Stop,
            Command::Pause,
            Command::Seek {
                position_ms: 1234.5,
            },
            Command::Next,
            Command::Pattern {
                name: "rainbow".into(),
            },
            Command::Hue { degrees: 200 },
            Command::Color { r: 1, g: 2, b: 3 },
            Command::Go,
            Command::CueStart { cue: "7".into() },
        ] {
            let bytes = encode(&cmd).expect("encodes");
            assert!(is_relay(&bytes));
            assert_eq!(decode(&parser, &bytes), Some(cmd));
        }
        assert!(encode(&Command::DawTempo { bpm: 120.0 }).is_none());
        assert_eq!(decode(&parser, b"garbage"), None);
    }
}
