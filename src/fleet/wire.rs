//! The heartbeat payload (sealed in a `security::envelope` by the driver): a small,
//! versioned, fixed-order binary record. Layout, integers big-endian:
//!
//! ```text
//! off len field
//!   0   1 kind            1 = heartbeat
//!   1   1 proto           PROTOCOL (a receiver drops other versions, counted)
//!   2   1 flags           bit0 claims leadership, bit1 forced, bit2 hello, bit3 leaving
//!   3   1 priority
//!   4   1 role            0 solo, 1 leader, 2 follower (the sync role it runs)
//!   5   8 term
//!  13   8 lamport
//!  21   2 port            membership port (unicast answers)
//!  23   2 sync_port       timeline (OSC) port
//!  25   2 sntp_port       SNTP port, 0 = none
//!  27   4 playback_error  i32 µs against the timeline, i32::MIN = unknown
//!  31   …  id, leader, version: each a u8 length + UTF-8 (≤ 64 bytes)
//! ```
//!
//! [`Heartbeat::decode`] checks every length before reading and never panics.

use super::election::{Beat, Rank};

/// Membership protocol version carried in heartbeats and mDNS TXT records.
pub const PROTOCOL: u8 = 1;
/// Kind byte of a heartbeat.
pub const KIND_HEARTBEAT: u8 = 1;
/// Longest id, leader id or version string.
pub const MAX_TEXT: usize = 64;
const FIXED: usize = 31;

const CLAIMS: u8 = 1;
const FORCED: u8 = 2;
const HELLO: u8 = 4;
const LEAVING: u8 = 8;
/// The sender has tracks to play (older nodes ignore the bit).
const TRACKS: u8 = 16;

/// Why a heartbeat payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its fields say.
    #[error("heartbeat truncated at byte {at} ({len} bytes)")]
    Truncated {
        /// Where the reader ran out.
        at: usize,
        /// Payload length.
        len: usize,
    },
    /// Not a heartbeat.
    #[error("payload kind {0} is not a heartbeat")]
    Kind(u8),
    /// A membership protocol this build does not speak.
    #[error("membership protocol {0} (this build speaks {PROTOCOL})")]
    Protocol(u8),
    /// Unknown role code.
    #[error("unknown role code {0}")]
    Role(u8),
    /// A text field is not UTF-8, empty where required, or too long.
    #[error("bad {field}: {why}")]
    Text {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// Bytes after the last field.
    #[error("{0} trailing bytes after the heartbeat")]
    Trailing(usize),
}

/// The sync role a member runs (what it advertises, not what the election decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvertisedRole {
    /// Plays on its own clock.
    Solo,
    /// Serves time and the timeline.
    Leader,
    /// Locks to a leader.
    Follower,
}

impl AdvertisedRole {
    fn code(self) -> u8 {
        match self {
            AdvertisedRole::Solo => 0,
            AdvertisedRole::Leader => 1,
            AdvertisedRole::Follower => 2,
        }
    }

    fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            0 => Ok(AdvertisedRole::Solo),
            1 => Ok(AdvertisedRole::Leader),
            2 => Ok(AdvertisedRole::Follower),
            other => Err(WireError::Role(other)),
        }
    }

    /// `solo`, `leader` or `follower`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdvertisedRole::Solo => "solo",
            AdvertisedRole::Leader => "leader",
            AdvertisedRole::Follower => "follower",
        }
    }
}

impl std::str::FromStr for AdvertisedRole {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        match s {
            "solo" => Ok(AdvertisedRole::Solo),
            "leader" => Ok(AdvertisedRole::Leader),
            "follower" => Ok(AdvertisedRole::Follower),
            _ => Err(WireError::Text {
                field: "role",
                why: "expected solo, leader or follower",
            }),
        }
    }
}

/// One membership heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Vehicle id.
    pub id: String,
    /// Election priority.
    pub priority: u8,
    /// Leadership forced on the sender.
    pub forced: bool,
    /// The sender leads.
    pub claims: bool,
    /// The sender just started: answer at once.
    pub hello: bool,
    /// The sender is shutting down.
    pub leaving: bool,
    /// The sender has tracks to play (it ranks above a bike of equal priority without).
    pub has_tracks: bool,
    /// Sync role it runs.
    pub role: AdvertisedRole,
    /// Its term.
    pub term: u64,
    /// Its Lamport clock.
    pub lamport: u64,
    /// Its membership port.
    pub port: u16,
    /// Its timeline port.
    pub sync_port: u16,
    /// Its SNTP port (0: none).
    pub sntp_port: u16,
    /// Its playback error, µs (`None`: not playing or unknown).
    pub playback_error_us: Option<i32>,
    /// Whom it follows (empty: nobody yet).
    pub leader: String,
    /// Its software version.
    pub version: String,
}

impl Heartbeat {
    /// The election's view of this heartbeat.
    pub fn beat(&self) -> Beat {
        Beat {
            rank: Rank {
                forced: self.forced,
                priority: self.priority,
                has_tracks: self.has_tracks,
                id: self.id.clone(),
            },
            claims: self.claims,
            term: self.term,
            leaving: self.leaving,
            hello: self.hello,
        }
    }

    /// Appends the encoded payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let flags = [
            (self.claims, CLAIMS),
            (self.forced, FORCED),
            (self.hello, HELLO),
            (self.leaving, LEAVING),
            (self.has_tracks, TRACKS),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0u8, |f, (_, bit)| f | bit);
        out.extend_from_slice(&[KIND_HEARTBEAT, PROTOCOL, flags, self.priority]);
        out.push(self.role.code());
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.lamport.to_be_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.sync_port.to_be_bytes());
        out.extend_from_slice(&self.sntp_port.to_be_bytes());
        out.extend_from_slice(&self.playback_error_us.unwrap_or(i32::MIN).to_be_bytes());
        put_text(out, "id", &self.id, false)?;
        put_text(out, "leader", &self.leader, true)?;
        put_text(out, "version", &self.version, true)
    }

    /// Decodes a payload, checking every length.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes, at: 0 };
        let kind = r.u8()?;
        if kind != KIND_HEARTBEAT {
            return Err(WireError::Kind(kind));
        }
        let proto = r.u8()?;
        if proto != PROTOCOL {
            return Err(WireError::Protocol(proto));
        }
        let flags = r.u8()?;
        let priority = r.u8()?;
        let role = AdvertisedRole::from_code(r.u8()?)?;
        let term = u64::from_be_bytes(r.array()?);
        let lamport = u64::from_be_bytes(r.array()?);
        let port = u16::from_be_bytes(r.array()?);
        let sync_port = u16::from_be_bytes(r.array()?);
        let sntp_port = u16::from_be_bytes(r.array()?);
        let err = i32::from_be_bytes(r.array()?);
        debug_assert_eq!(r.at, FIXED);
        let id = r.text("id", false)?;
        let leader = r.text("leader", true)?;
        let version = r.text("version", true)?;
        if r.at != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - r.at));
        }
        Ok(Heartbeat {
            id,
            priority,
            forced: flags & FORCED != 0,
            claims: flags & CLAIMS != 0,
            hello: flags & HELLO != 0,
            leaving: flags & LEAVING != 0,
            has_tracks: flags & TRACKS != 0,
            role,
            term,
            lamport,
            port,
            sync_port,
            sntp_port,
            playback_error_us: (err != i32::MIN).then_some(err),
            leader,
            version,
        })
    }
}

/// Checks a vehicle id as heartbeats carry it (non-empty, ≤ [`MAX_TEXT`] bytes).
pub fn check_id(id: &str) -> Result<(), WireError> {
    check_text("id", id, false)
}

fn check_text(field: &'static str, s: &str, may_be_empty: bool) -> Result<(), WireError> {
    if s.is_empty() && !may_be_empty {
        return Err(WireError::Text {
            field,
            why: "empty",
        });
    }
    if s.len() > MAX_TEXT {
        return Err(WireError::Text {
            field,
            why: "longer than 64 bytes",
        });
    }
    Ok(())
}

fn put_text(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
    may_be_empty: bool,
) -> Result<(), WireError> {
    check_text(field, s, may_be_empty)?;
    // Fits: checked ≤ MAX_TEXT above.
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.saturating_add(n);
        let s = self.bytes.get(self.at..end).ok_or(WireError::Truncated {
            at: self.at,
            len: self.bytes.len(),
        })?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn text(&mut self, field: &'static str, may_be_empty: bool) -> Result<String, WireError> {
        let n = usize::from(self.u8()?);
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::Text {
            field,
            why: "not UTF-8",
        })?;
        check_text(field, s, may_be_empty)?;
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Heartbeat {
        Heartbeat {
            id: "bike-7".into(),
            priority: 42,
            forced: true,
            claims: true,
            hello: false,
            leaving: false,
            has_tracks: false,
            role: AdvertisedRole::Leader,
            term: 0x0102_0304_0506_0708,
            lamport: 99,
            port: 9125,
            sync_port: 9123,
            sntp_port: 9124,
            playback_error_us: Some(-1234),
            leader: "bike-7".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_has_tracks_flag_round_trips() {
        let hb = Heartbeat {
            has_tracks: true,
            ..sample()
        };
        let mut out = Vec::new();
        hb.encode_into(&mut out).expect("encodes");
        assert_eq!(out[2], CLAIMS | FORCED | TRACKS);
        let back = Heartbeat::decode(&out).expect("decodes");
        assert!(back.has_tracks && back.beat().rank.has_tracks);
    }

    #[test]
    fn round_trip_and_layout() {
        let mut out = Vec::new();
        sample().encode_into(&mut out).unwrap();
        assert_eq!(
            &out[..5],
            &[KIND_HEARTBEAT, PROTOCOL, CLAIMS | FORCED, 42, 1]
        );
        assert_eq!(&out[5..13], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(out.len(), FIXED + 1 + 6 + 1 + 6 + 1 + 5);
        assert_eq!(Heartbeat::decode(&out).unwrap(), sample());
        let mut quiet = sample();
        quiet.playback_error_us = None;
        quiet.leader.clear();
        out.clear();
        quiet.encode_into(&mut out).unwrap();
        assert_eq!(Heartbeat::decode(&out).unwrap(), quiet);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let mut out = Vec::new();
        sample().encode_into(&mut out).unwrap();
        for n in 0..out.len() {
            assert!(Heartbeat::decode(&out[..n]).is_err(), "prefix {n} accepted");
        }
        out.push(0);
        assert_eq!(Heartbeat::decode(&out), Err(WireError::Trailing(1)));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut out = Vec::new();
        sample().encode_into(&mut out).unwrap();
        let mut m = out.clone();
        m[1] = 9;
        assert_eq!(Heartbeat::decode(&m), Err(WireError::Protocol(9)));
        m = out.clone();
        m[0] = 3;
        assert_eq!(Heartbeat::decode(&m), Err(WireError::Kind(3)));
        m = out.clone();
        m[4] = 7;
        assert_eq!(Heartbeat::decode(&m), Err(WireError::Role(7)));
        m = out.clone();
        m[FIXED + 1] = 0xff;
        assert!(matches!(
            Heartbeat::decode(&m),
            Err(WireError::Text { field: "id", .. })
        ));
        m = out.clone();
        m[FIXED] = 0;
        assert!(Heartbeat::decode(&m).is_err(), "an empty id is refused");
        let mut long = sample();
        long.id = "x".repeat(65);
        assert!(long.encode_into(&mut Vec::new()).is_err());
    }

    #[test]
    fn arbitrary_bytes_decode_to_errors_or_exact_round_trips() {
        // Random tails behind a valid header reach every field decoder; whatever decodes
        // must re-encode to the very same bytes (no lossy or ambiguous parse).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        let mut decoded = 0;
        for len in 0..4000usize {
            let mut bytes = vec![KIND_HEARTBEAT, PROTOCOL, 0, 1, 2];
            bytes.extend((0..len % 60).map(|_| next()));
            if len % 3 == 0 {
                bytes.truncate(FIXED);
                bytes.resize(FIXED, 0);
                let n = usize::from(next() % 8) + 1;
                bytes.push(n as u8);
                bytes.extend((0..n).map(|_| b'a' + next() % 26));
                bytes.extend([0, 0]);
            }
            if let Ok(hb) = Heartbeat::decode(&bytes) {
                decoded += 1;
                let mut again = Vec::new();
                hb.encode_into(&mut again).unwrap();
                assert_eq!(again, bytes);
            }
        }
        assert!(
            decoded > 100,
            "the generator must reach valid records ({decoded})"
        );
    }
}
