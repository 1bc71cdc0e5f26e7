//! Fleet messages besides the timeline: a follower relays control commands it receives
//! (from its own control port or web app) to the leader, which alone decides what the
//! fleet plays. A relayed command travels as the same OSC message a control surface would
//! send, inside `/convoy/fleet/command` with the original address as first argument, so
//! the leader parses it with the one control parser. A follower that wants the leader's
//! verdict sends it as `/convoy/fleet/request` with a request id first; the leader answers
//! `/convoy/fleet/verdict id text` (empty text: carried out) to the sender, and the
//! follower hands the verdict to whoever asked ([`Pending`]), so a command given to any bike
//! is answered with what the leader did. All of it is sealed like every fleet datagram.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rosc::{OscMessage, OscPacket, OscType};
use tokio::sync::oneshot;

use crate::control::{Command, Refusal};
use crate::osc::command::CommandParser;

/// Address of a relayed command (no verdict wanted).
pub const RELAY_ADDR: &str = "/convoy/fleet/command";
/// Address of a relayed command whose verdict the follower waits for.
pub const REQUEST_ADDR: &str = "/convoy/fleet/request";
/// Address of the leader's verdict on a request.
pub const VERDICT_ADDR: &str = "/convoy/fleet/verdict";
/// Requests waiting for a verdict at once, at most (more are refused as busy).
const MAX_PENDING: usize = 256;

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

/// Encode a relayed command that wants verdict `id` back (the payload to seal).
pub fn encode_request(cmd: &Command, id: u64) -> Option<Vec<u8>> {
    let inner = to_osc(cmd)?;
    let mut args = vec![OscType::Long(id as i64), OscType::String(inner.addr)];
    args.extend(inner.args);
    rosc::encoder::encode(&OscPacket::Message(msg(REQUEST_ADDR, args))).ok()
}

/// Decode a relayed command and the id its sender waits on (`None`: an old-style command
/// that wants no verdict); `None` if `payload` is not one or does not parse.
pub fn decode(parser: &CommandParser, payload: &[u8]) -> Option<(Option<u64>, Command)> {
    let (_, OscPacket::Message(m)) = rosc::decoder::decode_udp(payload).ok()? else {
        return None;
    };
    let mut args = m.args.into_iter();
    let id = match m.addr.as_str() {
        RELAY_ADDR => None,
        REQUEST_ADDR => match args.next() {
            Some(OscType::Long(id)) => Some(id as u64),
            _ => return None,
        },
        _ => return None,
    };
    let Some(OscType::String(addr)) = args.next() else {
        return None;
    };
    let cmd = parser.parse(&msg(&addr, args.collect())).ok()?;
    Some((id, cmd))
}

/// The leader's verdict on request `id`: `Ok` or the refusal's text (the payload to seal).
pub fn encode_verdict(id: u64, verdict: &Result<(), String>) -> Option<Vec<u8>> {
    let text = match verdict {
        Ok(()) => String::new(),
        Err(why) if why.is_empty() => "refused".to_string(),
        Err(why) => why.chars().take(512).collect(),
    };
    let args = vec![OscType::Long(id as i64), OscType::String(text)];
    rosc::encoder::encode(&OscPacket::Message(msg(VERDICT_ADDR, args))).ok()
}

/// A verdict: its request id and `Ok` or the leader's refusal text.
pub fn decode_verdict(payload: &[u8]) -> Option<(u64, Result<(), String>)> {
    if !payload.starts_with(VERDICT_ADDR.as_bytes()) {
        return None;
    }
    let (_, OscPacket::Message(m)) = rosc::decoder::decode_udp(payload).ok()? else {
        return None;
    };
    match (m.addr.as_str(), m.args.as_slice()) {
        (VERDICT_ADDR, [OscType::Long(id), OscType::String(text)]) => Some((
            *id as u64,
            if text.is_empty() {
                Ok(())
            } else {
                Err(text.clone())
            },
        )),
        _ => None,
    }
}

/// A follower's requests waiting for the leader's verdict, by id.
#[derive(Debug, Default)]
pub struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<(), String>>>>,
}

impl Pending {
    /// A new request id and the waiter for its verdict; refused when too many wait.
    pub fn open(self: &Arc<Self>) -> Result<Waiter, Refusal> {
        let id = self.next.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut waiting = self
            .waiting
            .lock()
            .map_err(|_| Refusal::Internal("relay verdicts lock poisoned"))?;
        if waiting.len() >= MAX_PENDING {
            return Err(Refusal::Busy("the link to the leader"));
        }
        waiting.insert(id, tx);
        Ok(Waiter {
            id,
            rx,
            pending: self.clone(),
        })
    }

    /// Hand verdict `id` to its waiter; false if nobody waits for it (late or unknown).
    pub fn settle(&self, id: u64, verdict: Result<(), String>) -> bool {
        let tx = self.waiting.lock().ok().and_then(|mut w| w.remove(&id));
        tx.is_some_and(|tx| tx.send(verdict).is_ok())
    }

    fn forget(&self, id: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&id);
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// No request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request's wait for its verdict.
#[derive(Debug)]
pub struct Waiter {
    /// The request id the leader answers.
    pub id: u64,
    rx: oneshot::Receiver<Result<(), String>>,
    pending: Arc<Pending>,
}

impl Waiter {
    /// The leader's verdict, or a refusal saying none came within `wait` (the command
    /// may still have been carried out).
    pub async fn verdict(self, wait: Duration) -> Result<(), Refusal> {
        let got = tokio::time::timeout(wait, self.rx).await;
        self.pending.forget(self.id);
        match got {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(Refusal::Leader(why)),
            Ok(Err(_)) | Err(_) => Err(Refusal::NoVerdict(wait.as_millis() as u64)),
        }
    }
}

/// Is this (authenticated or not yet) payload a relayed command or a stamped light field
/// (control traffic, not timing)? Used to pick the rate class before authentication.
pub fn is_relay(payload: &[u8]) -> bool {
    payload.starts_with(RELAY_ADDR.as_bytes())
        || payload.starts_with(REQUEST_ADDR.as_bytes())
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
            let bytes = encode_request(&cmd, 77).expect("encodes");
            assert!(is_relay(&bytes));
            assert_eq!(decode(&parser, &bytes), Some((Some(77), cmd)));
        }
        assert!(encode_request(&Command::DawTempo { bpm: 120.0 }, 1).is_none());
        assert_eq!(decode(&parser, b"garbage"), None);
        // An old-style relayed command (no id) still decodes, wanting no verdict.
        let old = rosc::encoder::encode(&OscPacket::Message(msg(
            RELAY_ADDR,
            vec![OscType::String("/convoy/stop".into())],
        )))
        .expect("encodes");
        assert_eq!(decode(&parser, &old), Some((None, Command::Stop)));
    }

    #[test]
    fn verdicts_round_trip_and_reach_their_waiter() {
        for v in [Ok(()), Err("nothing to play: name a track".to_string())] {
            let bytes = encode_verdict(9, &v).expect("encodes");
            assert_eq!(decode_verdict(&bytes), Some((9, v)));
        }
        assert_eq!(decode_verdict(b"/convoy/fleet/verdict junk"), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let pending = Arc::new(Pending::default());
        let w = pending.open().expect("room");
        assert!(pending.settle(w.id, Err("nothing to play: name a track".into())));
        assert_eq!(
            rt.block_on(w.verdict(Duration::from_secs(1))),
            Err(Refusal::Leader("nothing to play: name a track".into()))
        );
        // No answer: says so, and forgets the request.
        let w = pending.open().expect("room");
        let id = w.id;
        assert_eq!(
            rt.block_on(w.verdict(Duration::from_millis(10))),
            Err(Refusal::NoVerdict(10))
        );
        assert!(pending.is_empty());
        assert!(!pending.settle(id, Ok(())), "a late verdict finds nobody");
    }
}
