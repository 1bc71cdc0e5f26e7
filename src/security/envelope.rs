//! The authenticated envelope wrapped around every fleet datagram.
//!
//! Layout (all integers big-endian, fixed 28-byte header, 16-byte tag):
//!
//! ```text
//! off len field
//!   0   4 magic        "CVY1"
//!   4   1 version      1
//!   5   1 key_id       selects the key in the receiver's Keyring
//!   6   4 sender_id    u32 vehicle id (fixed width: no parsing ambiguity)
//!  10   8 seq          u64, strictly increasing per sender (replay window)
//!  18   8 timestamp    u64 ns since the Unix epoch on the sender's fleet clock
//!  26   2 payload_len  u16, must equal the bytes actually present
//!  28   n payload
//! 28+n 16 tag          HMAC-SHA256(key, bytes[0 .. 28+n]) truncated to 128 bits
//! ```
//!
//! The tag is truncated to its leftmost 16 bytes as in RFC 4868 (IPsec
//! HMAC-SHA-256-128) and RFC 2104 section 5: forging still needs ~2^128 online
//! attempts, each of which is rate limited and counted, while every datagram
//! saves 16 bytes. The whole datagram is capped at [`MAX_DATAGRAM`] so it
//! never fragments on a WiFi MTU. [`open`] checks cheap structure first, then
//! the tag with a constant-time comparison, and never panics on any input.

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::key::{KeyId, Keyring};

/// Magic bytes opening every envelope.
pub const MAGIC: [u8; 4] = *b"CVY1";
/// Envelope format version produced and accepted.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 28;
/// Bytes of the truncated HMAC tag.
pub const TAG_LEN: usize = 16;
/// Envelope bytes besides the payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest datagram sealed or opened.
pub const MAX_DATAGRAM: usize = 1400;
/// Largest payload that fits in [`MAX_DATAGRAM`].
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - OVERHEAD;

/// Vehicle id of a sender (the `sender_id` field).
pub type SenderId = u32;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer bytes than an empty envelope.
    #[error("datagram of {len} bytes is shorter than the {min} byte envelope minimum")]
    TooShort {
        /// Received length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The first four bytes are not `CVY1`.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version this build does not speak.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// No key in the keyring has this id.
    #[error("unknown key id {0}")]
    UnknownKeyId(KeyId),
    /// `payload_len` disagrees with the datagram size.
    #[error("payload_len says {declared} bytes but {actual} are present")]
    LengthMismatch {
        /// Declared payload length.
        declared: usize,
        /// Bytes actually present for the payload.
        actual: usize,
    },
    /// Datagram or payload larger than allowed.
    #[error("{len} bytes exceed the {max} byte limit")]
    Oversized {
        /// Offending length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The authentication tag does not verify.
    #[error("authentication tag mismatch (sender {sender}, key id {key_id})")]
    BadTag {
        /// Claimed (unauthenticated) sender id.
        sender: SenderId,
        /// Key id used to verify.
        key_id: KeyId,
    },
}

/// An authenticated envelope borrowed from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Key that verified the tag.
    pub key_id: KeyId,
    /// True when verified with the keyring's previous (rotating-out) key.
    pub with_previous_key: bool,
    /// Sender vehicle id.
    pub sender: SenderId,
    /// Sender sequence number.
    pub seq: u64,
    /// Sender fleet-clock timestamp, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// The payload.
    pub payload: &'a [u8],
}

/// Appends a sealed envelope to `out` (signed with the current key).
pub fn seal_into(
    keyring: &Keyring,
    sender: SenderId,
    seq: u64,
    timestamp_ns: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EnvelopeError::Oversized {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let key = keyring.current();
    let start = out.len();
    out.reserve(OVERHEAD + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(key.id());
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp_ns.to_be_bytes());
    // Fits: MAX_PAYLOAD < u16::MAX.
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    let mut mac = key.mac();
    mac.update(&out[start..]);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(&tag[..TAG_LEN]);
    Ok(())
}

/// Seals `payload` into a new envelope signed with the keyring's current key.
pub fn seal(
    keyring: &Keyring,
    sender: SenderId,
    seq: u64,
    timestamp_ns: u64,
    payload: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    seal_into(keyring, sender, seq, timestamp_ns, payload, &mut out)?;
    Ok(out)
}

/// Per-sender sealing state: keeps `seq` strictly increasing.
///
/// Start `first_seq` from the fleet clock in ns at daemon start so a restarted
/// sender is not mistaken for a replayer by receivers that remember it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealer {
    sender: SenderId,
    next_seq: u64,
}

impl Sealer {
    /// A sealer for `sender` whose first datagram uses `first_seq`.
    pub fn new(sender: SenderId, first_seq: u64) -> Self {
        Self {
            sender,
            next_seq: first_seq,
        }
    }

    /// The sender id every datagram carries.
    pub fn sender(&self) -> SenderId {
        self.sender
    }

    /// The sequence number the next datagram will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Seals `payload` into `out` with the next sequence number.
    pub fn seal_into(
        &mut self,
        keyring: &Keyring,
        timestamp_ns: u64,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        seal_into(
            keyring,
            self.sender,
            self.next_seq,
            timestamp_ns,
            payload,
            out,
        )?;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }
}

/// The checks [`open`] makes before the tag, alone: size, magic, version, a key id the
/// keyring holds and a consistent length. No cryptography: this is what a receiver can
/// afford on every datagram of a flood, so junk is refused before it costs an HMAC.
pub fn precheck(keyring: &Keyring, bytes: &[u8]) -> Result<(), EnvelopeError> {
    parse(keyring, bytes).map(|_| ())
}

/// Parses and authenticates an envelope. Does not check replay or freshness.
pub fn open<'a>(keyring: &Keyring, bytes: &'a [u8]) -> Result<Opened<'a>, EnvelopeError> {
    let h = parse(keyring, bytes)?;
    let body_end = HEADER_LEN + h.payload_len;
    let mut mac = h.key.mac();
    mac.update(&bytes[..body_end]);
    let expected = mac.finalize().into_bytes();
    let ok: bool = expected[..TAG_LEN].ct_eq(&bytes[body_end..]).into();
    if !ok {
        return Err(EnvelopeError::BadTag {
            sender: h.sender,
            key_id: h.key_id,
        });
    }
    Ok(Opened {
        key_id: h.key_id,
        with_previous_key: h.key_id != keyring.current().id(),
        sender: h.sender,
        seq: h.seq,
        timestamp_ns: h.timestamp_ns,
        payload: &bytes[HEADER_LEN..body_end],
    })
}

/// A header that passed [`precheck`], not yet authenticated.
struct Header<'k> {
    key: &'k super::key::FleetKey,
    key_id: KeyId,
    sender: SenderId,
    seq: u64,
    timestamp_ns: u64,
    payload_len: usize,
}

fn parse<'k>(keyring: &'k Keyring, bytes: &[u8]) -> Result<Header<'k>, EnvelopeError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(EnvelopeError::Oversized {
            len: bytes.len(),
            max: MAX_DATAGRAM,
        });
    }
    if bytes.len() < OVERHEAD {
        return Err(EnvelopeError::TooShort {
            len: bytes.len(),
            min: OVERHEAD,
        });
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&bytes[0..4]);
    if magic != MAGIC {
        return Err(EnvelopeError::BadMagic { found: magic });
    }
    if bytes[4] != VERSION {
        return Err(EnvelopeError::UnsupportedVersion(bytes[4]));
    }
    let key_id = bytes[5];
    let key = keyring
        .get(key_id)
        .ok_or(EnvelopeError::UnknownKeyId(key_id))?;
    let sender = u32::from_be_bytes(field(bytes, 6));
    let seq = u64::from_be_bytes(field(bytes, 10));
    let timestamp_ns = u64::from_be_bytes(field(bytes, 18));
    let declared = usize::from(u16::from_be_bytes(field(bytes, 26)));
    let actual = bytes.len() - OVERHEAD;
    if declared != actual {
        return Err(EnvelopeError::LengthMismatch { declared, actual });
    }
    Ok(Header {
        key,
        key_id,
        sender,
        seq,
        timestamp_ns,
        payload_len: actual,
    })
}

/// Copies `N` bytes at `at`; callers have checked `bytes.len() >= HEADER_LEN`.
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        a.copy_from_slice(src);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::key::FleetKey;

    fn ring(id: u8, fill: u8) -> Keyring {
        Keyring::new(FleetKey::from_bytes(id, &[fill; 32]).unwrap())
    }

    #[test]
    fn roundtrip_and_layout() {
        let r = ring(7, 1);
        let d = seal(&r, 0xA1B2C3D4, 42, 1_700_000_000_000_000_000, b"hello").unwrap();
        assert_eq!(d.len(), OVERHEAD + 5);
        assert_eq!(&d[..4], b"CVY1");
        assert_eq!(d[4], 1);
        assert_eq!(d[5], 7);
        assert_eq!(&d[6..10], &[0xA1, 0xB2, 0xC3, 0xD4]);
        assert_eq!(&d[26..28], &[0, 5]);
        let o = open(&r, &d).unwrap();
        assert_eq!(
            (
                o.sender,
                o.seq,
                o.timestamp_ns,
                o.payload,
                o.with_previous_key
            ),
            (
                0xA1B2C3D4,
                42,
                1_700_000_000_000_000_000,
                &b"hello"[..],
                false
            )
        );
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let r = ring(1, 9);
        let d = seal(&r, 5, 6, 7, b"payload!").unwrap();
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut m = d.clone();
                m[i] ^= 1 << bit;
                assert!(open(&r, &m).is_err(), "flip byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn structural_errors() {
        let r = ring(1, 9);
        let d = seal(&r, 5, 6, 7, b"abc").unwrap();
        assert!(matches!(
            open(&r, &d[..10]),
            Err(EnvelopeError::TooShort { len: 10, .. })
        ));
        let mut m = d.clone();
        m[0] = b'X';
        assert!(matches!(open(&r, &m), Err(EnvelopeError::BadMagic { .. })));
        m = d.clone();
        m[4] = 2;
        assert_eq!(open(&r, &m), Err(EnvelopeError::UnsupportedVersion(2)));
        m = d.clone();
        m[5] = 99;
        assert_eq!(open(&r, &m), Err(EnvelopeError::UnknownKeyId(99)));
        m = d.clone();
        m.push(0);
        assert!(matches!(
            open(&r, &m),
            Err(EnvelopeError::LengthMismatch {
                declared: 3,
                actual: 4
            })
        ));
        assert!(matches!(
            open(&r, &vec![0u8; 1401]),
            Err(EnvelopeError::Oversized { .. })
        ));
        assert!(matches!(
            seal(&r, 1, 1, 1, &[0u8; MAX_PAYLOAD + 1]),
            Err(EnvelopeError::Oversized { .. })
        ));
        assert_eq!(
            seal(&r, 1, 1, 1, &[0u8; MAX_PAYLOAD]).unwrap().len(),
            MAX_DATAGRAM
        );
    }

    #[test]
    fn sealer_increments_seq() {
        let r = ring(1, 1);
        let mut s = Sealer::new(9, 1000);
        let mut a = Vec::new();
        let mut b = Vec::new();
        s.seal_into(&r, 5, b"a", &mut a).unwrap();
        s.seal_into(&r, 5, b"b", &mut b).unwrap();
        assert_eq!(open(&r, &a).unwrap().seq, 1000);
        assert_eq!(open(&r, &b).unwrap().seq, 1001);
        assert_eq!(s.next_seq(), 1002);
    }

    #[test]
    fn wrong_key_same_id_is_bad_tag() {
        let d = seal(&ring(1, 1), 5, 6, 7, b"x").unwrap();
        assert_eq!(
            open(&ring(1, 2), &d),
            Err(EnvelopeError::BadTag {
                sender: 5,
                key_id: 1
            })
        );
    }
}
