//! The fleet's light state: one pattern, hue, brightness and colour that every bike ends
//! up showing, whoever changed them and in whatever order the changes crossed the network.
//! Each field is a last-writer-wins register ordered by a Lamport [`Stamp`] (Lamport time,
//! then vehicle id): a light command given to any bike is stamped there and shown at once
//! ([`FleetLights::local`]); it travels up to the leader as a sealed `/convoy/fleet/light`
//! message; the leader (and every sub-leader) sends its whole register with every timeline
//! ([`FleetLights::messages`]); a follower merges what it hears ([`FleetLights::merge`]) and
//! sends back any field it holds a newer stamp for — so two bikes that change the pattern
//! at once, or two partitions that heal, converge on the same state everywhere. The node
//! loop hands the winners of merges to the show ([`FleetLights::take_unapplied`]).

use std::sync::{Arc, Mutex};

use rosc::{OscMessage, OscPacket, OscType};
use tokio::sync::Notify;

use super::handle::Command;
use super::relay;
use crate::fleet::{LamportClock, Ordered, Stamp};
use crate::led::protocol::Pattern;
use crate::osc::command::CommandParser;

/// Address of a stamped light field: `lamport:h origin:s address:s args…`, the command's
/// own OSC address and arguments after the stamp.
pub const LIGHT_ADDR: &str = "/convoy/fleet/light";

/// The light fields, each its own register: a pattern change and a colour change made at
/// once on two bikes both survive.
const FIELDS: usize = 4;

fn field(cmd: &Command) -> Option<usize> {
    match cmd {
        Command::Pattern { .. } => Some(0),
        Command::Hue { .. } => Some(1),
        Command::Bright { .. } => Some(2),
        Command::Color { .. } => Some(3),
        _ => None,
    }
}

/// Is `cmd` part of the fleet-wide light state (pattern, hue, brightness, colour)?
pub fn is_light_state(cmd: &Command) -> bool {
    field(cmd).is_some()
}

/// Why a light command is not shared.
fn check(cmd: &Command) -> Result<usize, String> {
    let i = field(cmd).ok_or_else(|| format!("{cmd:?} is not a light command"))?;
    match cmd {
        Command::Pattern { name } if Pattern::from_name(name).is_none() => {
            Err(format!("unknown pattern {name:?}"))
        }
        _ => Ok(i),
    }
}

/// The fleet's light state as status lines show it (fields nobody has set are absent).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Pattern name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Hue, degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hue: Option<u16>,
    /// Brightness 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bright: Option<f32>,
    /// Solid colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<[u8; 3]>,
    /// The newest stamp in the state, `lamport@origin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
}

/// One light field as last written somewhere in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When and where it was written.
    pub stamp: Stamp,
    /// The write: a light-state command.
    pub command: Command,
}

impl Entry {
    /// As an OSC message (`None` if the command is not a light-state command).
    pub fn to_osc(&self) -> Option<OscMessage> {
        field(&self.command)?;
        let inner = relay::to_osc(&self.command)?;
        let mut args = vec![
            OscType::Long(i64::try_from(self.stamp.lamport).ok()?),
            OscType::String(self.stamp.origin.clone()),
            OscType::String(inner.addr),
        ];
        args.extend(inner.args);
        Some(OscMessage {
            addr: LIGHT_ADDR.to_string(),
            args,
        })
    }

    /// The payload a follower seals and sends upstream.
    pub fn encode(&self) -> Option<Vec<u8>> {
        rosc::encoder::encode(&OscPacket::Message(self.to_osc()?)).ok()
    }

    /// Parse one message; `None` unless it is a well-formed stamped light-state command.
    pub fn from_osc(parser: &CommandParser, msg: &OscMessage) -> Option<Entry> {
        if msg.addr != LIGHT_ADDR {
            return None;
        }
        let mut args = msg.args.iter().cloned();
        let (
            Some(OscType::Long(lamport)),
            Some(OscType::String(origin)),
            Some(OscType::String(addr)),
        ) = (args.next(), args.next(), args.next())
        else {
            return None;
        };
        if origin.is_empty() || origin.len() > 64 {
            return None;
        }
        let command = parser
            .parse(&OscMessage {
                addr,
                args: args.collect(),
            })
            .ok()
            .filter(|c| check(c).is_ok())?;
        Some(Entry {
            stamp: Stamp {
                lamport: u64::try_from(lamport).ok()?,
                origin,
            },
            command,
        })
    }

    /// Decode a sealed payload's content (`None` if it is not a stamped light field).
    pub fn decode(parser: &CommandParser, payload: &[u8]) -> Option<Entry> {
        match rosc::decoder::decode_udp(payload).ok()?.1 {
            OscPacket::Message(m) => Entry::from_osc(parser, &m),
            OscPacket::Bundle(_) => None,
        }
    }
}

/// Every stamped light field among `messages` (the extra messages of a timeline bundle).
pub fn entries(parser: &CommandParser, messages: &[OscMessage]) -> Vec<Entry> {
    messages
        .iter()
        .filter_map(|m| Entry::from_osc(parser, m))
        .collect()
}

#[derive(Debug, Default)]
struct Field {
    register: Option<Ordered<Command>>,
    /// The show already shows the register's value.
    applied: bool,
}

/// This bike's copy of the fleet's light state (shared by the node loop, the timeline
/// link and the publisher).
#[derive(Debug)]
pub struct FleetLights {
    id: String,
    clock: LamportClock,
    fields: Mutex<[Field; FIELDS]>,
    changed: Notify,
}

impl FleetLights {
    /// An empty state for vehicle `id`.
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(FleetLights {
            id: id.to_string(),
            clock: LamportClock::new(0),
            fields: Mutex::new(Default::default()),
            changed: Notify::new(),
        })
    }

    /// A light command given to this bike (by a control surface, the web app, or a
    /// follower's unstamped relay): stamp it and keep it. The caller shows it at once and
    /// sends the returned entry on. Refused: not a light-state command, or a pattern no
    /// strip knows.
    pub fn local(&self, cmd: &Command) -> Result<Entry, String> {
        let i = check(cmd)?;
        let entry = Entry {
            stamp: self.clock.stamp(&self.id),
            command: cmd.clone(),
        };
        let mut fields = self.fields.lock().map_err(|_| "light state poisoned")?;
        let f = &mut fields[i];
        let reg = f.register.get_or_insert_with(|| Ordered::new(cmd.clone()));
        reg.apply(entry.stamp.clone(), cmd.clone());
        f.applied = true;
        Ok(entry)
    }

    /// Entries heard from the fleet: each newer one replaces ours and is queued for the
    /// show. Returns our entries that are newer than what was heard (or missing from it):
    /// a follower sends those upstream, so the newest write wins everywhere.
    pub fn merge(&self, heard: &[Entry]) -> Vec<Entry> {
        let Ok(mut fields) = self.fields.lock() else {
            return Vec::new();
        };
        let mut theirs: [Option<&Stamp>; FIELDS] = [None; FIELDS];
        let mut won = false;
        for e in heard {
            let Some(i) = field(&e.command) else { continue };
            self.clock.observe(e.stamp.lamport);
            theirs[i] = theirs[i].max(Some(&e.stamp));
            let f = &mut fields[i];
            let reg = f
                .register
                .get_or_insert_with(|| Ordered::new(e.command.clone()));
            if reg.apply(e.stamp.clone(), e.command.clone()) {
                f.applied = false;
                won = true;
            }
        }
        if won {
            self.changed.notify_one();
        }
        fields
            .iter()
            .zip(theirs)
            .filter_map(|(f, heard)| {
                let reg = f.register.as_ref()?;
                let ours = reg.stamp()?;
                (Some(ours) > heard).then(|| Entry {
                    stamp: ours.clone(),
                    command: reg.get().clone(),
                })
            })
            .collect()
    }

    /// The whole state, as the messages a publisher adds to every timeline bundle.
    pub fn messages(&self) -> Vec<OscMessage> {
        self.entries().iter().filter_map(Entry::to_osc).collect()
    }

    /// The whole state.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(fields) = self.fields.lock() else {
            return Vec::new();
        };
        fields
            .iter()
            .filter_map(|f| {
                let reg = f.register.as_ref()?;
                Some(Entry {
                    stamp: reg.stamp()?.clone(),
                    command: reg.get().clone(),
                })
            })
            .collect()
    }

    /// The state for status lines.
    pub fn summary(&self) -> Summary {
        let mut out = Summary::default();
        let mut newest: Option<Stamp> = None;
        for e in self.entries() {
            match e.command {
                Command::Pattern { name } => out.pattern = Some(name),
                Command::Hue { degrees } => out.hue = Some(degrees),
                Command::Bright { level } => out.bright = Some(level),
                Command::Color { r, g, b } => out.color = Some([r, g, b]),
                _ => {}
            }
            newest = newest.max(Some(e.stamp));
        }
        out.newest = newest.map(|s| format!("{}@{}", s.lamport, s.origin));
        out
    }

    /// The commands that won a merge and are not shown yet (marked shown).
    pub fn take_unapplied(&self) -> Vec<Command> {
        let Ok(mut fields) = self.fields.lock() else {
            return Vec::new();
        };
        fields
            .iter_mut()
            .filter(|f| !f.applied)
            .filter_map(|f| {
                f.applied = true;
                Some(f.register.as_ref()?.get().clone())
            })
            .collect()
    }

    /// Resolves after a merge changed the state.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(name: &str) -> Command {
        Command::Pattern { name: name.into() }
    }

    /// Delivers everything `from` holds to `to`, as a timeline would, and what `to` holds
    /// newer back to `from`, as the follower's reply would.
    fn exchange(from: &FleetLights, to: &FleetLights) {
        let back = to.merge(&from.entries());
        from.merge(&back);
    }

    #[test]
    fn entries_round_trip_through_osc() {
        let parser = CommandParser::new();
        let lights = FleetLights::new("bike-7");
        for cmd in [
            pattern("chase"),
            Command::Hue { degrees: 200 },
            Command::Bright { level: 0.5 },
            Command::Color { r: 1, g: 2, b: 3 },
        ] {
            let e = lights.local(&cmd).expect("a light-state command");
            assert_eq!(
                Entry::decode(&parser, &e.encode().expect("encodes")).map(|e| e.command),
                Some(cmd)
            );
            let bytes = e.encode().expect("encodes");
            assert!(bytes.starts_with(LIGHT_ADDR.as_bytes()));
            assert_eq!(Entry::decode(&parser, &bytes), Some(e));
        }
        assert_eq!(lights.entries().len(), 4);
        assert!(
            lights.local(&Command::Stop).is_err(),
            "transport is not light state"
        );
        assert_eq!(
            lights.local(&pattern("disco-inferno")),
            Err("unknown pattern \"disco-inferno\"".to_string())
        );
        let s = lights.summary();
        assert_eq!(
            (s.pattern.as_deref(), s.hue, s.color, s.newest.as_deref()),
            (Some("chase"), Some(200), Some([1, 2, 3]), Some("4@bike-7"))
        );
    }

    #[test]
    fn malformed_or_foreign_light_messages_are_refused() {
        let parser = CommandParser::new();
        let good = Entry {
            stamp: Stamp {
                lamport: 3,
                origin: "a".into(),
            },
            command: pattern("solid"),
        }
        .to_osc()
        .expect("encodes");
        let with = |args: Vec<OscType>| OscMessage {
            addr: LIGHT_ADDR.into(),
            args,
        };
        let mut negative = good.args.clone();
        negative[0] = OscType::Long(-1);
        let mut transport = good.args[..2].to_vec();
        transport.push(OscType::String("/convoy/stop".into()));
        let mut no_origin = good.args.clone();
        no_origin[1] = OscType::String(String::new());
        for bad in [
            with(negative),
            with(transport),
            with(no_origin),
            with(good.args[..2].to_vec()),
            OscMessage {
                addr: "/convoy/pattern".into(),
                args: good.args.clone(),
            },
        ] {
            assert_eq!(Entry::from_osc(&parser, &bad), None, "{bad:?}");
        }
        assert!(Entry::from_osc(&parser, &good).is_some());
        assert_eq!(Entry::decode(&parser, b"not osc"), None);
    }

    #[test]
    fn two_bikes_changing_the_pattern_at_once_end_in_the_same_state() {
        // Leader L; followers A and B change the pattern at the same Lamport time.
        let (l, a, b) = (
            FleetLights::new("L"),
            FleetLights::new("A"),
            FleetLights::new("B"),
        );
        let ea = a.local(&pattern("chase")).expect("stamped");
        let eb = b.local(&pattern("strobe")).expect("stamped");
        assert_eq!(ea.stamp.lamport, eb.stamp.lamport, "concurrent");
        // Whatever order they reach the leader in, the leader keeps B's (the id breaks the tie).
        for order in [[&ea, &eb], [&eb, &ea]] {
            let l2 = FleetLights::new("L");
            for e in order {
                l2.merge(std::slice::from_ref(e));
            }
            assert_eq!(l2.entries()[0].command, pattern("strobe"));
        }
        l.merge(std::slice::from_ref(&eb));
        l.merge(&[ea]);
        // The timeline carries it back: A switches to strobe, B keeps it.
        exchange(&l, &a);
        exchange(&l, &b);
        for n in [&l, &a, &b] {
            assert_eq!(n.entries()[0].command, pattern("strobe"));
        }
        assert_eq!(
            a.take_unapplied(),
            vec![pattern("strobe")],
            "A's show must change"
        );
        assert!(b.take_unapplied().is_empty(), "B already shows it");
        assert!(a.take_unapplied().is_empty(), "shown once");
    }

    #[test]
    fn a_change_made_after_seeing_another_wins_even_with_a_lower_id() {
        let (l, z) = (FleetLights::new("L"), FleetLights::new("zzz"));
        l.local(&pattern("rainbow")).expect("shared");
        z.local(&Command::Hue { degrees: 10 }).expect("shared");
        exchange(&l, &z);
        // "aaa" sees the fleet's state (through L) before changing the pattern.
        let a = FleetLights::new("aaa");
        exchange(&l, &a);
        let later = a.local(&pattern("sparkle")).expect("stamped");
        assert!(later.stamp > l.entries()[0].stamp);
        exchange(&l, &a); // a's reply carries it up
        exchange(&l, &z);
        assert_eq!(z.entries()[0].command, pattern("sparkle"));
    }

    #[test]
    fn a_healed_partition_converges_on_the_newest_write_of_either_side() {
        // Two leaders, each with followers, changed the lights apart.
        let (l1, f1) = (FleetLights::new("L1"), FleetLights::new("f1"));
        let (l2, f2) = (FleetLights::new("L2"), FleetLights::new("f2"));
        l1.local(&pattern("pulse")).expect("shared");
        l1.local(&Command::Bright { level: 0.2 }).expect("shared");
        exchange(&l1, &f1);
        for _ in 0..5 {
            l2.local(&pattern("vu")).expect("shared"); // L2's Lamport clock runs ahead
        }
        exchange(&l2, &f2);
        // Heal: L1 now follows L2 (and f1 follows L2 too).
        for n in [&l1, &f1] {
            exchange(&l2, n);
        }
        exchange(&l2, &f2);
        for n in [&l1, &f1, &l2, &f2] {
            let cmds: Vec<Command> = n.entries().into_iter().map(|e| e.command).collect();
            assert_eq!(
                cmds,
                vec![pattern("vu"), Command::Bright { level: 0.2 }],
                "the brightness set on the losing side survives: fields are separate"
            );
        }
    }
}
