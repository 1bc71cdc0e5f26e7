//! The Link wire format, pure: discovery messages (`_asdp_v1`: Alive, Response, ByeBye, each
//! a header and a payload of tagged entries) and the clock-measurement messages (`_link_v1`:
//! Ping, Pong). Big-endian throughout; a payload is a run of `key:u32 size:u32 value`
//! entries, unknown keys skipped by their size, an absent entry meaning "no value". Written
//! from the facts in `structuresound/link-wire-spec` (chapters 0–2, CC-BY-4.0) and checked
//! against its captured vectors (CC0); see `docs/link.md`. Nothing here allocates without
//! bound or panics on hostile bytes: every read is bounds-checked and a datagram is capped
//! at [`MAX_MESSAGE`] bytes.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A peer's (and a session's) 8-byte identifier.
pub type NodeId = [u8; 8];

/// First 8 bytes of every discovery datagram.
pub const DISCOVERY_MAGIC: [u8; 8] = *b"_asdp_v\x01";
/// First 8 bytes of every measurement datagram.
pub const MEASURE_MAGIC: [u8; 8] = *b"_link_v\x01";
/// The IPv4 discovery group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 76, 78, 75);
/// The discovery port.
pub const PORT: u16 = 20808;
/// Receivers accept datagrams up to this size; senders stay below it.
pub const MAX_MESSAGE: usize = 512;
/// A responder answers pings whose payload is at most this long (`__ht` + `_pgt`).
pub const MAX_PING_PAYLOAD: usize = 32;

const fn fourcc(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

/// Payload keys.
pub mod key {
    use super::fourcc;
    /// Session timeline: tempo, beat origin, time origin.
    pub const TIMELINE: u32 = fourcc(b"tmln");
    /// Session membership.
    pub const SESSION: u32 = fourcc(b"sess");
    /// Start/stop state.
    pub const START_STOP: u32 = fourcc(b"stst");
    /// Measurement endpoint, IPv4.
    pub const MEASURE_V4: u32 = fourcc(b"mep4");
    /// Host time (ping).
    pub const HOST_TIME: u32 = fourcc(b"__ht");
    /// Ghost time (pong).
    pub const GHOST_TIME: u32 = fourcc(b"__gt");
    /// Previous ghost time (ping).
    pub const PREV_GHOST_TIME: u32 = fourcc(b"_pgt");
}

/// Why a datagram was dropped. All are recoverable: drop and count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header, or not this protocol's magic.
    #[error("not a Link datagram")]
    NotLink,
    /// A discovery message for another session group.
    #[error("session group {0} (only 0 is used)")]
    Group(u16),
    /// A message type this version does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// An entry runs past the end of the datagram.
    #[error("entry {key:#010x} runs past the end")]
    Truncated {
        /// The entry's key.
        key: u32,
    },
    /// A known entry whose size is not its value's size.
    #[error("entry {key:#010x} has size {size}")]
    BadSize {
        /// The entry's key.
        key: u32,
        /// Its declared size.
        size: u32,
    },
    /// Longer than [`MAX_MESSAGE`].
    #[error("{0} bytes is over the 512-byte limit")]
    TooLarge(usize),
}

/// A session timeline: `tempo` µs per beat, and beat `beat_origin` (µbeats) falls at ghost
/// time `time_origin` (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeline {
    /// Microseconds per beat (120 BPM: 500000).
    pub micros_per_beat: i64,
    /// Beat origin, µbeats; also the timeline's priority (larger wins).
    pub beat_origin: i64,
    /// Ghost time of the beat origin, µs.
    pub time_origin: i64,
}

/// The session's transport: playing or not, from which beat, and when that was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartStop {
    /// Playing.
    pub playing: bool,
    /// Beat (µbeats) at which it started or stopped.
    pub beats: i64,
    /// Ghost time (µs) of the action; the latest wins.
    pub timestamp: i64,
}

/// What a peer says about itself in an Alive or Response. Every entry is optional on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerState {
    /// Its session's timeline.
    pub timeline: Option<Timeline>,
    /// Its session.
    pub session: Option<NodeId>,
    /// Its session's start/stop state.
    pub start_stop: Option<StartStop>,
    /// Where it answers pings.
    pub measure: Option<SocketAddrV4>,
}

/// Discovery message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Multicast state announcement (answered with a Response).
    Alive = 1,
    /// Unicast answer to an Alive.
    Response = 2,
    /// Leaving.
    ByeBye = 3,
}

/// One discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// Its type.
    pub kind: Kind,
    /// Seconds the state stays valid (0 in a ByeBye).
    pub ttl: u8,
    /// The sender.
    pub node: NodeId,
    /// The sender's state (empty in a ByeBye).
    pub state: PeerState,
}

fn put_entry(out: &mut Vec<u8>, key: u32, value: &[u8]) {
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn i64s<const N: usize>(vals: [i64; N]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Encode a discovery message. The state's entries go in the order reference peers use
/// (`tmln sess stst mep4`); absent ones are left out.
pub fn encode_discovery(m: &Discovery) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&DISCOVERY_MAGIC);
    out.push(m.kind as u8);
    out.push(m.ttl);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&m.node);
    if m.kind == Kind::ByeBye {
        return out;
    }
    let s = &m.state;
    if let Some(t) = s.timeline {
        put_entry(
            &mut out,
            key::TIMELINE,
            &i64s([t.micros_per_beat, t.beat_origin, t.time_origin]),
        );
    }
    if let Some(id) = s.session {
        put_entry(&mut out, key::SESSION, &id);
    }
    if let Some(st) = s.start_stop {
        let mut v = vec![u8::from(st.playing)];
        v.extend(i64s([st.beats, st.timestamp]));
        put_entry(&mut out, key::START_STOP, &v);
    }
    if let Some(ep) = s.measure {
        let mut v = ep.ip().octets().to_vec();
        v.extend_from_slice(&ep.port().to_be_bytes());
        put_entry(&mut out, key::MEASURE_V4, &v);
    }
    out
}

/// The entries of a payload, in order: `(key, value)`. Fails on an entry that runs past
/// the end.
pub fn entries(mut payload: &[u8]) -> Result<Vec<(u32, &[u8])>, WireError> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        if payload.len() < 8 {
            return Err(WireError::Truncated { key: 0 });
        }
        let key = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let rest = &payload[8..];
        if size as usize > rest.len() {
            return Err(WireError::Truncated { key });
        }
        out.push((key, &rest[..size as usize]));
        payload = &rest[size as usize..];
    }
    Ok(out)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

fn sized(key: u32, v: &[u8], size: usize) -> Result<&[u8], WireError> {
    if v.len() == size {
        Ok(v)
    } else {
        Err(WireError::BadSize {
            key,
            size: v.len() as u32,
        })
    }
}

/// Decode a discovery datagram (its own node is not filtered here: the session does that).
pub fn decode_discovery(d: &[u8]) -> Result<Discovery, WireError> {
    if d.len() < 20 || d[..8] != DISCOVERY_MAGIC {
        return Err(WireError::NotLink);
    }
    if d.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(d.len()));
    }
    let kind = match d[8] {
        1 => Kind::Alive,
        2 => Kind::Response,
        3 => Kind::ByeBye,
        t => return Err(WireError::UnknownType(t)),
    };
    let group = u16::from_be_bytes([d[10], d[11]]);
    if group != 0 {
        return Err(WireError::Group(group));
    }
    let mut node = [0u8; 8];
    node.copy_from_slice(&d[12..20]);
    let mut state = PeerState::default();
    if kind != Kind::ByeBye {
        for (k, v) in entries(&d[20..])? {
            match k {
                key::TIMELINE => {
                    let v = sized(k, v, 24)?;
                    state.timeline = Some(Timeline {
                        micros_per_beat: be_i64(v),
                        beat_origin: be_i64(&v[8..]),
                        time_origin: be_i64(&v[16..]),
                    });
                }
                key::SESSION => {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(sized(k, v, 8)?);
                    state.session = Some(id);
                }
                key::START_STOP => {
                    let v = sized(k, v, 17)?;
                    state.start_stop = Some(StartStop {
                        playing: v[0] != 0,
                        beats: be_i64(&v[1..]),
                        timestamp: be_i64(&v[9..]),
                    });
                }
                key::MEASURE_V4 => {
                    let v = sized(k, v, 6)?;
                    state.measure = Some(SocketAddrV4::new(
                        Ipv4Addr::new(v[0], v[1], v[2], v[3]),
                        u16::from_be_bytes([v[4], v[5]]),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(Discovery {
        kind,
        ttl: d[9],
        node,
        state,
    })
}

/// A measurement message, with the entries Convoy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// "What is your ghost time?"
    Ping {
        /// The initiator's host time at sending, µs.
        host: i64,
        /// The ghost time of the previous pong in this chain, when there was one.
        prev_ghost: Option<i64>,
    },
    /// The answer, with the ping's entries echoed.
    Pong {
        /// The responder's session.
        session: Option<NodeId>,
        /// The responder's ghost time at answering, µs.
        ghost: i64,
        /// The echoed host time.
        host: i64,
        /// The echoed previous ghost time.
        prev_ghost: Option<i64>,
    },
}

/// Encode a ping.
pub fn encode_ping(host: i64, prev_ghost: Option<i64>) -> Vec<u8> {
    let mut out = MEASURE_MAGIC.to_vec();
    out.push(1);
    put_entry(&mut out, key::HOST_TIME, &host.to_be_bytes());
    if let Some(g) = prev_ghost {
        put_entry(&mut out, key::PREV_GHOST_TIME, &g.to_be_bytes());
    }
    out
}

/// The answer to a ping datagram: `session` and `ghost`, then the ping's payload echoed
/// verbatim. `None` when `ping` is not a ping a responder answers.
pub fn answer_ping(ping: &[u8], session: NodeId, ghost: i64) -> Option<Vec<u8>> {
    if ping.len() < 9 || ping[..8] != MEASURE_MAGIC || ping[8] != 1 {
        return None;
    }
    let payload = &ping[9..];
    if payload.len() > MAX_PING_PAYLOAD {
        return None;
    }
    let mut out = MEASURE_MAGIC.to_vec();
    out.push(2);
    put_entry(&mut out, key::SESSION, &session);
    put_entry(&mut out, key::GHOST_TIME, &ghost.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Decode a measurement datagram.
pub fn decode_measure(d: &[u8]) -> Result<Measure, WireError> {
    if d.len() < 9 || d[..8] != MEASURE_MAGIC {
        return Err(WireError::NotLink);
    }
    if d.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(d.len()));
    }
    let (mut host, mut ghost, mut prev_ghost, mut session) = (0, 0, None, None);
    for (k, v) in entries(&d[9..])? {
        match k {
            key::HOST_TIME => host = be_i64(sized(k, v, 8)?),
            key::GHOST_TIME => ghost = be_i64(sized(k, v, 8)?),
            key::PREV_GHOST_TIME => prev_ghost = Some(be_i64(sized(k, v, 8)?)),
            key::SESSION => {
                let mut id = [0u8; 8];
                id.copy_from_slice(sized(k, v, 8)?);
                session = Some(id);
            }
            _ => {}
        }
    }
    match d[8] {
        1 => Ok(Measure::Ping { host, prev_ghost }),
        2 => Ok(Measure::Pong {
            session,
            ghost,
            host,
            prev_ghost,
        }),
        t => Err(WireError::UnknownType(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Datagrams from the captured vectors of structuresound/link-wire-spec (CC0; see
    // docs/link.md): reference peers on loopback.

    /// `discovery-join-leave.pcap`: peer A's first Alive (107 bytes).
    const ALIVE: &str = "5f617364705f7601010500006841524e5a542331746d6c6e00000018000000000007a12000000000000f41a2000000000000000073657373000000086841524e5a542331737473740000001100000000000000000000000000000000006d657034000000067f000001a732";
    /// `sync-start-stop.pcap`: an Alive while the session plays.
    const PLAYING: &str = "5f617364705f760101050000433b772b6423615b746d6c6e00000018000000000007a12000000000000f42d0000000000000000073657373000000083833783e483a5d5c7374737400000011010000000000897cd200000000003d1d036d657034000000067f0000018a86";
    /// `sync-tempo-change.pcap`: an Alive after a tempo change (122 BPM).
    const TEMPO: &str = "5f617364705f7601010500005840706a4d546f64746d6c6e0000001800000000000790fc00000000006ae06000000000002dceb773657373000000083a222d7934583c2a737473740000001100000000000000000000000000000000006d657034000000067f000001b1e9";
    /// `discovery-join-leave.pcap`: a ByeBye (20 bytes).
    const BYEBYE: &str = "5f617364705f760103000000457a3b5f4c6e7b4c";
    /// `discovery-join-leave.pcap`: the first ping, its pong, the next ping and pong.
    const PING1: &str = "5f6c696e6b5f7601015f5f68740000000800000000c4f64bca";
    const PONG1: &str = "5f6c696e6b5f7601027365737300000008457a3b5f4c6e7b4c5f5f67740000000800000000000002d45f5f68740000000800000000c4f64bca";
    const PING2: &str =
        "5f6c696e6b5f7601015f5f68740000000800000000c4f64cbb5f7067740000000800000000000002d4";
    const PONG2: &str = "5f6c696e6b5f7601027365737300000008457a3b5f4c6e7b4c5f5f67740000000800000000000003355f5f68740000000800000000c4f64cbb5f7067740000000800000000000002d4";

    #[test]
    fn decodes_and_reencodes_a_captured_alive_byte_for_byte() {
        let bytes = hex(ALIVE);
        let m = decode_discovery(&bytes).unwrap();
        assert_eq!(m.kind, Kind::Alive);
        assert_eq!(m.ttl, 5);
        assert_eq!(&m.node, b"hARNZT#1");
        let t = m.state.timeline.unwrap();
        assert_eq!(t.micros_per_beat, 500_000);
        assert_eq!(t.beat_origin, 999_842);
        assert_eq!(t.time_origin, 0);
        assert_eq!(m.state.session, Some(*b"hARNZT#1"));
        assert_eq!(m.state.start_stop, Some(StartStop::default()));
        assert_eq!(
            m.state.measure,
            Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 42802))
        );
        assert_eq!(encode_discovery(&m), bytes);
    }

    #[test]
    fn decodes_start_stop_and_tempo_vectors() {
        let p = decode_discovery(&hex(PLAYING)).unwrap();
        let st = p.state.start_stop.unwrap();
        assert!(st.playing);
        assert_eq!(st.beats, 0x897cd2);
        assert_eq!(st.timestamp, 0x3d1d03);
        // A member of another peer's session.
        assert_ne!(p.state.session, Some(p.node));
        assert_eq!(encode_discovery(&p), hex(PLAYING));
        let t = decode_discovery(&hex(TEMPO))
            .unwrap()
            .state
            .timeline
            .unwrap();
        assert_eq!(t.micros_per_beat, 495_868);
        assert!((60e6 / t.micros_per_beat as f64 - 121.0).abs() < 0.001);
        assert_eq!(
            encode_discovery(&decode_discovery(&hex(TEMPO)).unwrap()),
            hex(TEMPO)
        );
    }

    #[test]
    fn decodes_a_byebye() {
        let m = decode_discovery(&hex(BYEBYE)).unwrap();
        assert_eq!(m.kind, Kind::ByeBye);
        assert_eq!(m.ttl, 0);
        assert_eq!(encode_discovery(&m), hex(BYEBYE));
    }

    #[test]
    fn ping_pong_chain_matches_the_vectors() {
        assert_eq!(encode_ping(0xc4f64bca, None), hex(PING1));
        assert_eq!(
            decode_measure(&hex(PING1)).unwrap(),
            Measure::Ping {
                host: 0xc4f64bca,
                prev_ghost: None
            }
        );
        let session = *b"Ez;_Ln{L";
        assert_eq!(
            answer_ping(&hex(PING1), session, 0x2d4).unwrap(),
            hex(PONG1)
        );
        assert_eq!(
            decode_measure(&hex(PONG1)).unwrap(),
            Measure::Pong {
                session: Some(session),
                ghost: 0x2d4,
                host: 0xc4f64bca,
                prev_ghost: None
            }
        );
        assert_eq!(encode_ping(0xc4f64cbb, Some(0x2d4)), hex(PING2));
        assert_eq!(
            answer_ping(&hex(PING2), session, 0x335).unwrap(),
            hex(PONG2)
        );
        assert_eq!(
            decode_measure(&hex(PONG2)).unwrap(),
            Measure::Pong {
                session: Some(session),
                ghost: 0x335,
                host: 0xc4f64cbb,
                prev_ghost: Some(0x2d4)
            }
        );
    }

    #[test]
    fn hostile_datagrams_are_refused_not_panicked_on() {
        let alive = hex(ALIVE);
        // Every truncation is refused or decodes to less; none panics.
        for n in 0..alive.len() {
            let _ = decode_discovery(&alive[..n]);
        }
        assert_eq!(decode_discovery(&alive[..19]), Err(WireError::NotLink));
        let mut big = alive.clone();
        big[20 + 7] = 0xff; // tmln size 255: past the end
        assert_eq!(
            decode_discovery(&big),
            Err(WireError::Truncated { key: key::TIMELINE })
        );
        let mut group = alive.clone();
        group[11] = 1;
        assert_eq!(decode_discovery(&group), Err(WireError::Group(1)));
        let mut kind = alive.clone();
        kind[8] = 9;
        assert_eq!(decode_discovery(&kind), Err(WireError::UnknownType(9)));
        // An unknown entry is skipped.
        let mut extra = alive.clone();
        put_entry(&mut extra, fourcc(b"zzzz"), &[1, 2, 3]);
        assert_eq!(
            decode_discovery(&extra).unwrap(),
            decode_discovery(&alive).unwrap()
        );
        // A long ping payload is not answered.
        let mut long = hex(PING2);
        put_entry(&mut long, fourcc(b"zzzz"), &[0; 4]);
        assert!(answer_ping(&long, [0; 8], 1).is_none());
        for n in 0..hex(PONG2).len() {
            let _ = decode_measure(&hex(PONG2)[..n]);
        }
    }
}
