//! The fleet's manual light state and cues: one pattern, hue, brightness and colour that
//! every bike ends up showing, and manual cues that fire at the same fleet time on every
//! bike, whoever gave them and in whatever order they crossed the network. Each field is a
//! last-writer-wins register ordered by a Lamport [`Stamp`] (Lamport time, then vehicle id):
//! a command given to any bike is stamped there and shown at once ([`FleetLights::local`]);
//! it travels up to the leader as a sealed `/convoy/fleet/light` message; the leader (and
//! every sub-leader) sends its whole register with every timeline
//! ([`FleetLights::messages`]); a follower merges what it hears ([`FleetLights::merge`])
//! and sends back any field it holds a newer stamp for — so two bikes that change the
//! pattern at once, or two partitions that heal, converge on the same state everywhere.
//! `Go` hands the lights back to the show: it is a write that releases every light field.
//! A manual cue (`/cue/{n}/start`) is a write to the cue field carrying the fleet time it
//! fires at (`show.cue_lead_ms` after it was given, so it reaches every bike first); it
//! releases the light fields too, as the show's runner does. The node loop hands what won
//! to the show ([`FleetLights::take_unapplied`]). The same bundle carries the Link beat
//! grid the fleet flashes on ([`FleetLights::link`], `src/fleet/link.rs`).

use std::sync::{Arc, Mutex};

use rosc::{OscMessage, OscPacket, OscType};
use tokio::sync::Notify;

use super::relay;
use super::{LamportClock, Ordered, Stamp};
use crate::control::{Command, Refusal};
use crate::led::protocol::Pattern;
use crate::osc::command::CommandParser;

/// Address of a stamped field: `lamport:h origin:s field:i at_ns:h [address:s args…]`,
/// the command's own OSC address and arguments last (none: the field was released).
pub const LIGHT_ADDR: &str = "/convoy/fleet/light";

/// Pattern, hue, brightness, colour: the light fields, each its own register, so a
/// pattern change and a colour change made at once on two bikes both survive.
const LIGHT_FIELDS: usize = 4;
/// The manual cue's register.
const CUE: usize = 4;
const FIELDS: usize = 5;

fn field(cmd: &Command) -> Option<usize> {
    match cmd {
        Command::Pattern { .. } => Some(0),
        Command::Hue { .. } => Some(1),
        Command::Bright { .. } => Some(2),
        Command::Color { .. } => Some(3),
        Command::CueStart { .. } => Some(CUE),
        _ => None,
    }
}

/// Is `cmd` part of the fleet-wide light state (pattern, hue, brightness, colour, `Go`,
/// a manual cue)?
pub fn is_shared(cmd: &Command) -> bool {
    field(cmd).is_some() || *cmd == Command::Go
}

/// Why a light command is not shared.
fn check(cmd: &Command) -> Result<usize, Refusal> {
    let i = field(cmd).ok_or_else(|| Refusal::not_for(cmd, "light"))?;
    match cmd {
        Command::Pattern { name } if Pattern::from_name(name).is_none() => {
            Err(Refusal::UnknownPattern(name.clone()))
        }
        _ => Ok(i),
    }
}

/// The fleet's light state as status lines show it (fields nobody holds are absent).
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
    /// The last manual cue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cue: Option<String>,
    /// The newest stamp in the state, `lamport@origin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
}

/// One field as last written somewhere in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When and where it was written.
    pub stamp: Stamp,
    /// Which register.
    pub field: usize,
    /// The write (`None`: released by `Go` or a cue).
    pub value: Value,
}

/// A register's value: the command in force (`None`: released) and, for a cue, the fleet
/// time it fires at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Value {
    /// The command.
    pub command: Option<Command>,
    /// Fleet time the cue fires at, ns (0 for light fields).
    pub at_ns: i64,
}

impl Entry {
    /// As an OSC message.
    pub fn to_osc(&self) -> Option<OscMessage> {
        let mut args = vec![
            OscType::Long(i64::try_from(self.stamp.lamport).ok()?),
            OscType::String(self.stamp.origin.clone()),
            OscType::Int(i32::try_from(self.field).ok()?),
            OscType::Long(self.value.at_ns),
        ];
        if let Some(cmd) = &self.value.command {
            let inner = relay::to_osc(cmd)?;
            args.push(OscType::String(inner.addr));
            args.extend(inner.args);
        }
        Some(OscMessage {
            addr: LIGHT_ADDR.to_string(),
            args,
        })
    }

    /// The payload a follower seals and sends upstream.
    pub fn encode(&self) -> Option<Vec<u8>> {
        rosc::encoder::encode(&OscPacket::Message(self.to_osc()?)).ok()
    }

    /// Parse one message; `None` unless it is a well-formed stamped field whose command
    /// belongs to that field.
    pub fn from_osc(parser: &CommandParser, msg: &OscMessage) -> Option<Entry> {
        if msg.addr != LIGHT_ADDR {
            return None;
        }
        let mut args = msg.args.iter().cloned();
        let (
            Some(OscType::Long(lamport)),
            Some(OscType::String(origin)),
            Some(OscType::Int(field_no)),
            Some(OscType::Long(at_ns)),
        ) = (args.next(), args.next(), args.next(), args.next())
        else {
            return None;
        };
        let i = usize::try_from(field_no).ok().filter(|&i| i < FIELDS)?;
        if origin.is_empty() || origin.len() > 64 {
            return None;
        }
        let command = match args.next() {
            None => None,
            Some(OscType::String(addr)) => Some(
                parser
                    .parse(&OscMessage {
                        addr,
                        args: args.collect(),
                    })
                    .ok()
                    .filter(|c| check(c) == Ok(i))?,
            ),
            Some(_) => return None,
        };
        Some(Entry {
            stamp: Stamp {
                lamport: u64::try_from(lamport).ok()?,
                origin,
            },
            field: i,
            value: Value { command, at_ns },
        })
    }

    /// Decode a sealed payload's content (`None` if it is not a stamped field).
    pub fn decode(parser: &CommandParser, payload: &[u8]) -> Option<Entry> {
        match rosc::decoder::decode_udp(payload).ok()?.1 {
            OscPacket::Message(m) => Entry::from_osc(parser, &m),
            OscPacket::Bundle(_) => None,
        }
    }
}

/// Every stamped field among `messages` (the extra messages of a timeline bundle).
pub fn entries(parser: &CommandParser, messages: &[OscMessage]) -> Vec<Entry> {
    messages
        .iter()
        .filter_map(|m| Entry::from_osc(parser, m))
        .collect()
}

/// What the show must do after a merge.
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    /// Show this light command now (`Go`: hand the lights back to the show).
    Now(Command),
    /// Fire this cue at fleet time `at_ns`.
    Cue {
        /// The cue command.
        command: Command,
        /// When, fleet ns.
        at_ns: i64,
    },
}

#[derive(Debug, Default)]
struct Field {
    register: Option<Ordered<Value>>,
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
    /// The Link beat the fleet flashes on, sent with the light state.
    link: super::link::FleetLink,
}

impl FleetLights {
    /// An empty state for vehicle `id`.
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(FleetLights {
            id: id.to_string(),
            clock: LamportClock::new(0),
            fields: Mutex::new(Default::default()),
            changed: Notify::new(),
            link: Default::default(),
        })
    }

    /// A command given to this bike (by a control surface, the web app, or a follower's
    /// unstamped relay): stamp it and keep it; `now_ns` is fleet time now (a cue fires at
    /// `now_ns + cue_lead_ns`). The caller shows it ([`Apply`]) and sends the returned
    /// entries on. Refused: not a shared command, or a pattern no strip knows.
    pub fn local(
        &self,
        cmd: &Command,
        now_ns: i64,
        cue_lead_ns: i64,
    ) -> Result<(Vec<Entry>, Apply), Refusal> {
        let checked = match cmd {
            Command::Go => None,
            cmd => Some(check(cmd)?),
        };
        let stamp = self.clock.stamp(&self.id);
        let (writes, apply) = match checked {
            None => (release(&stamp), Apply::Now(Command::Go)),
            Some(i) => {
                if i == CUE {
                    let at_ns = now_ns.saturating_add(cue_lead_ns);
                    let mut w = release(&stamp);
                    w.push(Entry {
                        stamp: stamp.clone(),
                        field: CUE,
                        value: Value {
                            command: Some(cmd.clone()),
                            at_ns,
                        },
                    });
                    let apply = Apply::Cue {
                        command: cmd.clone(),
                        at_ns,
                    };
                    (w, apply)
                } else {
                    let value = Value {
                        command: Some(cmd.clone()),
                        at_ns: 0,
                    };
                    let w = vec![Entry {
                        stamp: stamp.clone(),
                        field: i,
                        value,
                    }];
                    (w, Apply::Now(cmd.clone()))
                }
            }
        };
        let mut fields = self
            .fields
            .lock()
            .map_err(|_| Refusal::Internal("light state poisoned"))?;
        for e in &writes {
            let f = &mut fields[e.field];
            f.register
                .get_or_insert_with(|| Ordered::new(Value::default()))
                .apply(e.stamp.clone(), e.value.clone());
            f.applied = true;
        }
        Ok((writes, apply))
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
            let Some(f) = fields.get_mut(e.field) else {
                continue;
            };
            self.clock.observe(e.stamp.lamport);
            theirs[e.field] = theirs[e.field].max(Some(&e.stamp));
            let reg = f
                .register
                .get_or_insert_with(|| Ordered::new(Value::default()));
            if reg.apply(e.stamp.clone(), e.value.clone()) {
                f.applied = false;
                won = true;
            }
        }
        if won {
            self.changed.notify_one();
        }
        fields
            .iter()
            .enumerate()
            .zip(theirs)
            .filter_map(|((i, f), heard)| {
                let reg = f.register.as_ref()?;
                let ours = reg.stamp()?;
                (Some(ours) > heard).then(|| Entry {
                    stamp: ours.clone(),
                    field: i,
                    value: reg.get().clone(),
                })
            })
            .collect()
    }

    /// The whole state, as the messages a publisher adds to every timeline bundle (the
    /// Link grid last, when the fleet follows one).
    pub fn messages(&self) -> Vec<OscMessage> {
        let mut out: Vec<OscMessage> = self.entries().iter().filter_map(Entry::to_osc).collect();
        out.extend(self.link.message(crate::clock::mono_ns()));
        out
    }

    /// The Link beat grid the fleet flashes on (`src/fleet/link.rs`).
    pub fn link(&self) -> &super::link::FleetLink {
        &self.link
    }

    /// The vehicle id this state stamps its writes with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole state.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(fields) = self.fields.lock() else {
            return Vec::new();
        };
        fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let reg = f.register.as_ref()?;
                Some(Entry {
                    stamp: reg.stamp()?.clone(),
                    field: i,
                    value: reg.get().clone(),
                })
            })
            .collect()
    }

    /// Whether the fleet holds a manual look (a light field or a manual cue) that `/go`
    /// would hand back to the show or the default look.
    pub fn holds_look(&self) -> bool {
        self.entries().iter().any(|e| e.value.command.is_some())
    }

    /// The state for status lines.
    pub fn summary(&self) -> Summary {
        let mut out = Summary::default();
        let mut newest: Option<Stamp> = None;
        for e in self.entries() {
            match e.value.command {
                Some(Command::Pattern { name }) => out.pattern = Some(name),
                Some(Command::Hue { degrees }) => out.hue = Some(degrees),
                Some(Command::Bright { level }) => out.bright = Some(level),
                Some(Command::Color { r, g, b }) => out.color = Some([r, g, b]),
                Some(Command::CueStart { cue }) => out.cue = Some(cue),
                _ => {}
            }
            newest = newest.max(Some(e.stamp));
        }
        out.newest = newest.map(|s| format!("{}@{}", s.lamport, s.origin));
        out
    }

    /// What the show must do to show the merges' winners (marked shown). A light field
    /// released by the fleet hands the lights back to the show (`Go`), and the fields
    /// still held are shown again on top.
    pub fn take_unapplied(&self) -> Vec<Apply> {
        let Ok(mut fields) = self.fields.lock() else {
            return Vec::new();
        };
        let value = |f: &Field| f.register.as_ref().map(|r| r.get().clone());
        let lights = &fields[..LIGHT_FIELDS];
        let released = lights
            .iter()
            .any(|f| !f.applied && value(f).is_some_and(|v| v.command.is_none()));
        let mut out: Vec<Apply> = Vec::new();
        if released {
            out.push(Apply::Now(Command::Go));
        }
        for f in lights {
            if let Some(cmd) = value(f).and_then(|v| v.command) {
                if released || !f.applied {
                    out.push(Apply::Now(cmd));
                }
            }
        }
        let cue = &fields[CUE];
        if !cue.applied {
            if let Some(Value {
                command: Some(command),
                at_ns,
            }) = value(cue)
            {
                out.push(Apply::Cue { command, at_ns });
            }
        }
        for f in fields.iter_mut() {
            f.applied = true;
        }
        out
    }

    /// Resolves after a merge changed the state.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Manual cues waiting for their fleet time.
#[derive(Debug, Default)]
pub struct CueQueue {
    due: Vec<(i64, Command)>,
}

/// A cue heard this late (a bike joining, a link back after an outage) is not fired.
const STALE_NS: i64 = 1_000_000_000;

impl CueQueue {
    /// Queue `command` to fire at fleet time `at_ns`; `false` (dropped) when it is more
    /// than a second late at `now_ns`.
    pub fn push(&mut self, at_ns: i64, command: Command, now_ns: i64) -> bool {
        if at_ns < now_ns.saturating_sub(STALE_NS) {
            return false;
        }
        self.due.push((at_ns, command));
        true
    }

    /// How long from fleet time `now_ns` until the next cue is due (`None`: none queued).
    pub fn next_in(&self, now_ns: i64) -> Option<std::time::Duration> {
        let at = self.due.iter().map(|(at, _)| *at).min()?;
        Some(std::time::Duration::from_nanos(
            at.saturating_sub(now_ns).max(0) as u64,
        ))
    }

    /// The cues due at `now_ns`, in time order.
    pub fn take_due(&mut self, now_ns: i64) -> Vec<Command> {
        let mut due: Vec<(i64, Command)> = Vec::new();
        self.due.retain(|(at, c)| {
            let ready = *at <= now_ns;
            if ready {
                due.push((*at, c.clone()));
            }
            !ready
        });
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, c)| c).collect()
    }
}

/// Writes that release every light field.
fn release(stamp: &Stamp) -> Vec<Entry> {
    (0..LIGHT_FIELDS)
        .map(|field| Entry {
            stamp: stamp.clone(),
            field,
            value: Value::default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(name: &str) -> Command {
        Command::Pattern { name: name.into() }
    }

    /// A command given to `n` (fleet time 0, cues 150 ns ahead); its entries.
    fn give(n: &FleetLights, cmd: Command) -> Vec<Entry> {
        n.local(&cmd, 0, 150).expect("shared").0
    }

    fn pattern_of(n: &FleetLights) -> Option<String> {
        n.summary().pattern
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
            Command::CueStart { cue: "drop".into() },
            Command::Go,
        ] {
            let (entries, _) = lights.local(&cmd, 1_000, 150).expect("shared");
            assert!(!entries.is_empty());
            for e in entries {
                let bytes = e.encode().expect("encodes");
                assert!(bytes.starts_with(LIGHT_ADDR.as_bytes()));
                assert_eq!(Entry::decode(&parser, &bytes), Some(e));
            }
        }
        assert!(
            lights.local(&Command::Stop, 0, 0).is_err(),
            "transport is not light state"
        );
        assert_eq!(
            lights.local(&pattern("disco-inferno"), 0, 0).map(|_| ()),
            Err(Refusal::UnknownPattern("disco-inferno".into()))
        );
        let s = lights.summary();
        assert_eq!(
            (s.pattern, s.cue.as_deref(), s.newest.as_deref()),
            (None, Some("drop"), Some("6@bike-7")),
            "Go released the light fields; the cue is remembered"
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
            field: 0,
            value: Value {
                command: Some(pattern("solid")),
                at_ns: 0,
            },
        }
        .to_osc()
        .expect("encodes");
        let with = |f: &dyn Fn(&mut Vec<OscType>)| {
            let mut args = good.args.clone();
            f(&mut args);
            OscMessage {
                addr: LIGHT_ADDR.into(),
                args,
            }
        };
        for bad in [
            with(&|a| a[0] = OscType::Long(-1)),
            with(&|a| a[1] = OscType::String(String::new())),
            with(&|a| a[2] = OscType::Int(7)),
            with(&|a| a[2] = OscType::Int(1)), // a pattern in the hue field
            with(&|a| a[4] = OscType::String("/convoy/stop".into())),
            with(&|a| a[4] = OscType::Int(3)),
            with(&|a| a.truncate(3)),
            OscMessage {
                addr: "/convoy/pattern".into(),
                args: good.args.clone(),
            },
        ] {
            assert_eq!(Entry::from_osc(&parser, &bad), None, "{bad:?}");
        }
        assert!(Entry::from_osc(&parser, &good).is_some());
        assert!(
            Entry::from_osc(&parser, &with(&|a| a.truncate(4))).is_some(),
            "a released field"
        );
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
        let ea = give(&a, pattern("chase"));
        let eb = give(&b, pattern("strobe"));
        assert_eq!(ea[0].stamp.lamport, eb[0].stamp.lamport, "concurrent");
        // Whatever order they reach the leader in, the leader keeps B's (the id breaks the tie).
        for order in [[&ea, &eb], [&eb, &ea]] {
            let l2 = FleetLights::new("L");
            for e in order {
                l2.merge(e);
            }
            assert_eq!(pattern_of(&l2).as_deref(), Some("strobe"));
        }
        l.merge(&eb);
        l.merge(&ea);
        // The timeline carries it back: A switches to strobe, B keeps it.
        exchange(&l, &a);
        exchange(&l, &b);
        for n in [&l, &a, &b] {
            assert_eq!(pattern_of(n).as_deref(), Some("strobe"));
        }
        assert_eq!(
            a.take_unapplied(),
            vec![Apply::Now(pattern("strobe"))],
            "A's show must change"
        );
        assert!(b.take_unapplied().is_empty(), "B already shows it");
        assert!(a.take_unapplied().is_empty(), "shown once");
    }

    #[test]
    fn a_change_made_after_seeing_another_wins_even_with_a_lower_id() {
        let (l, z) = (FleetLights::new("L"), FleetLights::new("zzz"));
        give(&l, pattern("rainbow"));
        give(&z, Command::Hue { degrees: 10 });
        exchange(&l, &z);
        // "aaa" sees the fleet's state (through L) before changing the pattern.
        let a = FleetLights::new("aaa");
        exchange(&l, &a);
        let later = give(&a, pattern("sparkle"));
        assert!(later[0].stamp > l.entries()[0].stamp);
        exchange(&l, &a); // a's reply carries it up
        exchange(&l, &z);
        assert_eq!(pattern_of(&z).as_deref(), Some("sparkle"));
        assert_eq!(z.summary().hue, Some(10));
    }

    #[test]
    fn a_healed_partition_converges_on_the_newest_write_of_either_side() {
        // Two leaders, each with followers, changed the lights apart.
        let (l1, f1) = (FleetLights::new("L1"), FleetLights::new("f1"));
        let (l2, f2) = (FleetLights::new("L2"), FleetLights::new("f2"));
        give(&l1, pattern("pulse"));
        give(&l1, Command::Bright { level: 0.2 });
        exchange(&l1, &f1);
        for _ in 0..5 {
            give(&l2, pattern("vu")); // L2's Lamport clock runs ahead
        }
        exchange(&l2, &f2);
        // Heal: L1 now follows L2 (and f1 follows L2 too).
        for n in [&l1, &f1] {
            exchange(&l2, n);
        }
        exchange(&l2, &f2);
        for n in [&l1, &f1, &l2, &f2] {
            let s = n.summary();
            assert_eq!(
                (s.pattern.as_deref(), s.bright),
                (Some("vu"), Some(0.2)),
                "the brightness set on the losing side survives: fields are separate"
            );
        }
    }

    #[test]
    fn go_hands_the_lights_back_to_the_show_on_every_bike_and_a_joiner_holds_nothing() {
        let (l, a, b) = (
            FleetLights::new("L"),
            FleetLights::new("A"),
            FleetLights::new("B"),
        );
        give(&l, pattern("chase"));
        give(&l, Command::Hue { degrees: 90 });
        exchange(&l, &a);
        exchange(&l, &b);
        a.take_unapplied();
        assert!(b.holds_look() && !FleetLights::new("N").holds_look());
        let go = b.local(&Command::Go, 0, 0).expect("shared");
        assert_eq!(go.1, Apply::Now(Command::Go));
        l.merge(&go.0);
        exchange(&l, &a);
        assert_eq!(a.take_unapplied(), vec![Apply::Now(Command::Go)]);
        assert_eq!(pattern_of(&a), None);
        assert!(!a.holds_look(), "nothing held after go");
        // A pattern given after Go is held again, on top of the show.
        give(&a, pattern("vu"));
        exchange(&l, &a);
        let j = FleetLights::new("J");
        exchange(&l, &j);
        let s = j.summary();
        assert_eq!((s.pattern.as_deref(), s.hue), (Some("vu"), None), "{s:?}");
        assert_eq!(
            j.take_unapplied(),
            vec![Apply::Now(Command::Go), Apply::Now(pattern("vu"))]
        );
    }

    #[test]
    fn the_cue_queue_fires_in_time_order_and_drops_stale_cues() {
        let cue = |n: &str| Command::CueStart { cue: n.into() };
        let mut q = CueQueue::default();
        assert_eq!(q.next_in(0), None);
        assert!(q.push(2_000, cue("b"), 0));
        assert!(q.push(1_000, cue("a"), 0));
        assert!(
            !q.push(-2_000_000_000, cue("old"), 0),
            "a second late: dropped"
        );
        assert!(
            q.push(-500_000_000, cue("late"), 0),
            "half a second late: fired at once"
        );
        assert_eq!(q.next_in(0), Some(std::time::Duration::ZERO));
        assert_eq!(q.take_due(0), vec![cue("late")]);
        assert_eq!(q.next_in(400), Some(std::time::Duration::from_nanos(600)));
        assert_eq!(q.take_due(5_000), vec![cue("a"), cue("b")]);
        assert_eq!(q.next_in(0), None);
    }

    #[test]
    fn a_manual_cue_fires_at_one_fleet_time_everywhere_and_releases_the_lights() {
        let (l, a, b) = (
            FleetLights::new("L"),
            FleetLights::new("A"),
            FleetLights::new("B"),
        );
        give(&l, pattern("chase"));
        exchange(&l, &a);
        exchange(&l, &b);
        a.take_unapplied();
        b.take_unapplied();
        let cue = Command::CueStart { cue: "drop".into() };
        let (entries, apply) = a.local(&cue, 5_000, 150).expect("shared");
        let fire = Apply::Cue {
            command: cue.clone(),
            at_ns: 5_150,
        };
        assert_eq!(apply, fire);
        l.merge(&entries);
        assert_eq!(
            l.take_unapplied(),
            vec![Apply::Now(Command::Go), fire.clone()]
        );
        exchange(&l, &b);
        assert_eq!(b.take_unapplied(), vec![Apply::Now(Command::Go), fire]);
        assert_eq!(pattern_of(&b), None);
        exchange(&l, &b);
        assert!(b.take_unapplied().is_empty(), "a cue fires once");
    }
}
