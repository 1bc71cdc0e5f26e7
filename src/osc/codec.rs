//! Bounded OSC encode/decode over `rosc`, NTP timetags and TCP framings.
//!
//! [`decode`] first walks the packet's structure without allocating to
//! enforce [`DecodeLimits`] (packet size, bundle nesting depth, element and
//! argument counts), so hostile input can neither recurse deeply inside
//! `rosc` nor expand a small packet into a huge argument vector; only then is
//! `rosc` asked to decode, and trailing garbage is refused. Timetag helpers
//! convert between OSC/NTP 64-bit fixed point (seconds since 1900 plus a
//! 2^-32 fraction; `0.1` = immediate) and nanosecond counts on a
//! caller-chosen [`Epoch`]. [`LengthPrefixDecoder`] (OSC 1.0 streams: int32
//! big-endian size before each packet) and [`SlipDecoder`] (OSC 1.1 streams:
//! double-END SLIP) are incremental: feed them any chunks, they call back per
//! packet, never buffer more than `max_frame` bytes and resynchronise after
//! bad frames.

pub use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

/// Limits enforced by [`decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// Largest packet in bytes.
    pub max_packet: usize,
    /// Deepest bundle nesting (a bundle directly in a datagram is depth 1).
    pub max_depth: usize,
    /// Most bundles + messages in one packet.
    pub max_elements: usize,
    /// Most arguments in one message (array contents included).
    pub max_args: usize,
    /// Deepest `[` array nesting inside one message.
    pub max_array_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_packet: 65_536,
            max_depth: 8,
            max_elements: 512,
            max_args: 128,
            max_array_depth: 4,
        }
    }
}

/// Errors from the OSC codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OscError {
    /// Packet larger than the limit.
    #[error("OSC packet of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Packet length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bundles nested too deeply.
    #[error("OSC bundles nested deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Too many bundle elements.
    #[error("OSC packet has more than {max} elements")]
    TooManyElements {
        /// The limit.
        max: usize,
    },
    /// Too many arguments in one message.
    #[error("OSC message {address:?} has {count} arguments, limit {max}")]
    TooManyArgs {
        /// Message address.
        address: String,
        /// Argument count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Arrays nested too deeply.
    #[error("OSC message {address:?} nests arrays deeper than {max}")]
    ArrayTooDeep {
        /// Message address.
        address: String,
        /// The limit.
        max: usize,
    },
    /// Bytes left after a complete packet.
    #[error("{count} trailing bytes after the OSC packet")]
    TrailingBytes {
        /// Leftover byte count.
        count: usize,
    },
    /// `rosc` rejected the bytes.
    #[error("malformed OSC: {0}")]
    Malformed(String),
    /// `rosc` could not encode the packet.
    #[error("cannot encode OSC: {0}")]
    Encode(String),
}

/// Decodes one OSC packet (a UDP datagram) with default limits.
pub fn decode(bytes: &[u8]) -> Result<OscPacket, OscError> {
    decode_with(bytes, &DecodeLimits::default())
}

/// Decodes one OSC packet with explicit limits.
pub fn decode_with(bytes: &[u8], limits: &DecodeLimits) -> Result<OscPacket, OscError> {
    if bytes.len() > limits.max_packet {
        return Err(OscError::TooLarge {
            len: bytes.len(),
            max: limits.max_packet,
        });
    }
    let mut elements = 0;
    prescan(bytes, 0, limits, &mut elements)?;
    let tagged = with_type_tags(bytes);
    let bytes = tagged.as_deref().unwrap_or(bytes);
    let (rest, packet) =
        rosc::decoder::decode_udp(bytes).map_err(|e| OscError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(OscError::TrailingBytes { count: rest.len() });
    }
    Ok(packet)
}

/// The first message address in a packet's bytes (a bundle's first element's, nested up to
/// [`DecodeLimits::max_depth`]), without decoding the rest: how an oversized packet, which
/// is never decoded, is put through the control policy before it is answered.
pub fn first_address(b: &[u8]) -> Option<&str> {
    let mut b = b;
    for _ in 0..DecodeLimits::default().max_depth {
        if !b.starts_with(BUNDLE_TAG) {
            break;
        }
        let size = be_u32(b.get(16..)?)? as usize;
        b = b.get(20..)?;
        b = &b[..size.min(b.len())];
    }
    if b.first() != Some(&b'/') {
        return None;
    }
    let end = b.iter().take(256).position(|&c| c == 0)?;
    std::str::from_utf8(&b[..end]).ok()
}

/// Encodes a packet to bytes.
pub fn encode(packet: &OscPacket) -> Result<Vec<u8>, OscError> {
    rosc::encoder::encode(packet).map_err(|e| OscError::Encode(e.to_string()))
}

const BUNDLE_TAG: &[u8; 8] = b"#bundle\0";

/// The packet with an empty type tag string (`,` and padding) added to every message that
/// has none, or `None` when every message has one. OSC 1.0 asks receivers to take a message
/// without a type tag string (older senders) as one without arguments; `rosc` refuses it.
/// Called after [`prescan`], so the structure is bounded; anything it cannot make sense of
/// is left for `rosc` to reject.
fn with_type_tags(b: &[u8]) -> Option<Vec<u8>> {
    if b.starts_with(BUNDLE_TAG) {
        let mut out = b.get(..16)?.to_vec();
        let mut rest = &b[16..];
        let mut changed = false;
        while let Some(size) = be_u32(rest) {
            let elem = rest.get(4..4usize.saturating_add(size as usize))?;
            match with_type_tags(elem) {
                Some(fixed) => {
                    changed = true;
                    out.extend_from_slice(&u32::try_from(fixed.len()).ok()?.to_be_bytes());
                    out.extend_from_slice(&fixed);
                }
                None => out.extend_from_slice(&rest[..4 + elem.len()]),
            }
            rest = &rest[4 + elem.len()..];
        }
        out.extend_from_slice(rest);
        return changed.then_some(out);
    }
    if b.first() != Some(&b'/') {
        return None;
    }
    let addr_end = b.iter().position(|&c| c == 0)?;
    // The address string ends in at least one NUL, padded to a multiple of four.
    (((addr_end + 4) & !3) == b.len()).then(|| [b, b",\0\0\0"].concat())
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Structural walk that enforces `limits` without allocating. Anything it
/// cannot make sense of is left for `rosc` to reject.
fn prescan(
    b: &[u8],
    depth: usize,
    limits: &DecodeLimits,
    elements: &mut usize,
) -> Result<(), OscError> {
    *elements += 1;
    if *elements > limits.max_elements {
        return Err(OscError::TooManyElements {
            max: limits.max_elements,
        });
    }
    if b.starts_with(BUNDLE_TAG) {
        if depth + 1 > limits.max_depth {
            return Err(OscError::TooDeep {
                max: limits.max_depth,
            });
        }
        let mut rest = b.get(16..).unwrap_or_default();
        while let Some(size) = be_u32(rest) {
            let size = size as usize;
            let Some(elem) = rest.get(4..4usize.saturating_add(size)) else {
                return Ok(());
            };
            prescan(elem, depth + 1, limits, elements)?;
            rest = &rest[4 + size..];
        }
        return Ok(());
    }
    if b.first() != Some(&b'/') {
        return Ok(());
    }
    let Some(addr_end) = b.iter().position(|&c| c == 0) else {
        return Ok(());
    };
    let tags_at = (addr_end + 4) & !3;
    let Some(tags) = b.get(tags_at..) else {
        return Ok(());
    };
    if tags.first() != Some(&b',') {
        return Ok(());
    }
    let tags = &tags[1..tags.iter().position(|&c| c == 0).unwrap_or(tags.len())];
    let mut count = 0usize;
    let mut array_depth = 0usize;
    let address = || String::from_utf8_lossy(&b[..addr_end.min(64)]).into_owned();
    for &t in tags {
        match t {
            b'[' => {
                array_depth += 1;
                if array_depth > limits.max_array_depth {
                    return Err(OscError::ArrayTooDeep {
                        address: address(),
                        max: limits.max_array_depth,
                    });
                }
            }
            b']' => array_depth = array_depth.saturating_sub(1),
            _ => count += 1,
        }
    }
    if count > limits.max_args {
        return Err(OscError::TooManyArgs {
            address: address(),
            count,
            max: limits.max_args,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- timetags

/// The OSC "immediately" timetag (seconds 0, fraction 1).
pub const IMMEDIATE: OscTime = OscTime {
    seconds: 0,
    fractional: 1,
};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// The instant that nanosecond count 0 refers to, as an NTP 64-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch {
    ntp: u64,
}

impl Epoch {
    /// The Unix epoch (nanosecond counts are Unix time).
    pub const UNIX: Epoch = Epoch {
        ntp: NTP_UNIX_OFFSET_SECS << 32,
    };

    /// An epoch at a whole number of seconds after 1900-01-01.
    pub const fn from_ntp_seconds(seconds: u32) -> Self {
        Self {
            ntp: (seconds as u64) << 32,
        }
    }

    /// An epoch at an arbitrary timetag.
    pub const fn from_timetag(t: OscTime) -> Self {
        Self { ntp: to_ntp64(t) }
    }
}

/// Timetag conversion failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimetagError {
    /// The instant lies beyond NTP era 0 (after 2036-02-07).
    #[error("{nanos} ns after the epoch is beyond NTP era 0")]
    OutOfRange {
        /// The offending count.
        nanos: u64,
    },
}

const fn to_ntp64(t: OscTime) -> u64 {
    ((t.seconds as u64) << 32) | t.fractional as u64
}

fn from_ntp64(v: u64) -> OscTime {
    OscTime {
        seconds: (v >> 32) as u32,
        fractional: v as u32,
    }
}

/// Converts `nanos` after `epoch` to a timetag (rounded to the nearest 2^-32 s).
pub fn timetag_from_nanos(nanos: u64, epoch: Epoch) -> Result<OscTime, TimetagError> {
    let fixed = ((u128::from(nanos) << 32) + 500_000_000) / 1_000_000_000;
    u64::try_from(fixed)
        .ok()
        .and_then(|f| f.checked_add(epoch.ntp))
        .map(from_ntp64)
        .ok_or(TimetagError::OutOfRange { nanos })
}

/// Converts a timetag to nanoseconds after `epoch` (rounded). `None` for
/// [`IMMEDIATE`] and for instants before the epoch.
pub fn nanos_from_timetag(t: OscTime, epoch: Epoch) -> Option<u64> {
    if t == IMMEDIATE {
        return None;
    }
    let diff = to_ntp64(t).checked_sub(epoch.ntp)?;
    let ns = (u128::from(diff) * 1_000_000_000 + (1 << 31)) >> 32;
    u64::try_from(ns).ok()
}

// ---------------------------------------------------------------- framing

/// Errors reported per frame by the stream decoders (the stream continues).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame exceeded the decoder's `max_frame`; it was skipped.
    #[error("frame of {len}+ bytes exceeds the {max} byte limit")]
    Oversized {
        /// Frame length (declared, or bytes seen so far for SLIP).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A negative length prefix (the stream is probably desynchronised).
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    /// SLIP ESC followed by something other than ESC_END/ESC_ESC.
    #[error("invalid SLIP escape 0x{0:02x}")]
    BadEscape(u8),
    /// The frame was delimited fine but is not valid OSC.
    #[error(transparent)]
    Decode(#[from] OscError),
}

/// Default `max_frame` for the stream decoders.
pub const DEFAULT_MAX_FRAME: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LpState {
    Header,
    Body(usize),
    Skip(usize),
}

/// Incremental decoder for OSC 1.0 TCP streams (int32 BE length + packet).
///
/// Oversized frames are skipped by their declared length without being
/// buffered. A stream has no resync marker, so after a
/// [`FrameError::NegativeLength`] the decoder simply reads the next four bytes
/// as a new header; callers normally close such a connection.
#[derive(Debug, Clone)]
pub struct LengthPrefixDecoder {
    max_frame: usize,
    limits: DecodeLimits,
    buf: Vec<u8>,
    state: LpState,
}

impl LengthPrefixDecoder {
    /// A decoder refusing frames above `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            limits: DecodeLimits {
                max_packet: max_frame,
                ..DecodeLimits::default()
            },
            buf: Vec::new(),
            state: LpState::Header,
        }
    }

    /// Bytes currently buffered (never above `max(4, max_frame)`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes `data`, calling `on_frame` for each complete frame.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(Result<OscPacket, FrameError>),
    ) {
        while !data.is_empty() {
            match self.state {
                LpState::Header => {
                    let take = (4 - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == 4 {
                        let len = i32::from_be_bytes([
                            self.buf[0],
                            self.buf[1],
                            self.buf[2],
                            self.buf[3],
                        ]);
                        self.buf.clear();
                        if len < 0 {
                            on_frame(Err(FrameError::NegativeLength(len)));
                        } else if len as usize > self.max_frame {
                            on_frame(Err(FrameError::Oversized {
                                len: len as usize,
                                max: self.max_frame,
                            }));
                            self.state = LpState::Skip(len as usize);
                        } else if len > 0 {
                            self.state = LpState::Body(len as usize);
                        }
                    }
                }
                LpState::Body(len) => {
                    let take = (len - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == len {
                        on_frame(decode_with(&self.buf, &self.limits).map_err(FrameError::from));
                        self.buf.clear();
                        self.state = LpState::Header;
                    }
                }
                LpState::Skip(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.state = if left == take {
                        LpState::Header
                    } else {
                        LpState::Skip(left - take)
                    };
                }
            }
        }
    }

    /// Convenience: feeds `data` and collects the results.
    pub fn feed_collect(&mut self, data: &[u8]) -> Vec<Result<OscPacket, FrameError>> {
        let mut out = Vec::new();
        self.feed(data, |r| out.push(r));
        out
    }
}

/// Encodes a packet with the OSC 1.0 int32 length prefix.
pub fn encode_length_prefixed(packet: &OscPacket) -> Result<Vec<u8>, OscError> {
    let body = encode(packet)?;
    let len = i32::try_from(body.len()).map_err(|_| OscError::TooLarge {
        len: body.len(),
        max: i32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// SLIP frame delimiter.
pub const SLIP_END: u8 = 0xC0;
/// SLIP escape byte.
pub const SLIP_ESC: u8 = 0xDB;
/// Escaped END.
pub const SLIP_ESC_END: u8 = 0xDC;
/// Escaped ESC.
pub const SLIP_ESC_ESC: u8 = 0xDD;

/// Encodes a packet as an OSC 1.1 double-END SLIP frame.
pub fn encode_slip(packet: &OscPacket) -> Result<Vec<u8>, OscError> {
    let body = encode(packet)?;
    let mut out = Vec::with_capacity(body.len() + body.len() / 16 + 2);
    out.push(SLIP_END);
    for b in body {
        match b {
            SLIP_END => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_END]),
            SLIP_ESC => out.extend_from_slice(&[SLIP_ESC, SLIP_ESC_ESC]),
            _ => out.push(b),
        }
    }
    out.push(SLIP_END);
    Ok(out)
}

/// Incremental decoder for OSC 1.1 SLIP streams (RFC 1055, double END).
///
/// Empty frames (the back-to-back ENDs of double-END framing) are ignored. A
/// frame that grows beyond `max_frame` or contains a bad escape is reported
/// once and discarded up to the next END, where decoding resumes.
#[derive(Debug, Clone)]
pub struct SlipDecoder {
    max_frame: usize,
    limits: DecodeLimits,
    buf: Vec<u8>,
    escaped: bool,
    discarding: bool,
}

impl SlipDecoder {
    /// A decoder refusing frames above `max_frame` decoded bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            limits: DecodeLimits {
                max_packet: max_frame,
                ..DecodeLimits::default()
            },
            buf: Vec::new(),
            escaped: false,
            discarding: false,
        }
    }

    /// Bytes currently buffered (never above `max_frame`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes `data`, calling `on_frame` for each complete frame.
    pub fn feed(&mut self, data: &[u8], mut on_frame: impl FnMut(Result<OscPacket, FrameError>)) {
        for &b in data {
            if b == SLIP_END {
                if !self.discarding && !self.escaped && !self.buf.is_empty() {
                    on_frame(decode_with(&self.buf, &self.limits).map_err(FrameError::from));
                } else if self.escaped && !self.discarding {
                    on_frame(Err(FrameError::BadEscape(b)));
                }
                self.buf.clear();
                self.escaped = false;
                self.discarding = false;
                continue;
            }
            if self.discarding {
                continue;
            }
            let byte = if self.escaped {
                self.escaped = false;
                match b {
                    SLIP_ESC_END => SLIP_END,
                    SLIP_ESC_ESC => SLIP_ESC,
                    other => {
                        on_frame(Err(FrameError::BadEscape(other)));
                        self.discard();
                        continue;
                    }
                }
            } else if b == SLIP_ESC {
                self.escaped = true;
                continue;
            } else {
                b
            };
            if self.buf.len() >= self.max_frame {
                on_frame(Err(FrameError::Oversized {
                    len: self.buf.len() + 1,
                    max: self.max_frame,
                }));
                self.discard();
                continue;
            }
            self.buf.push(byte);
        }
    }

    fn discard(&mut self) {
        self.buf.clear();
        self.escaped = false;
        self.discarding = true;
    }

    /// Convenience: feeds `data` and collects the results.
    pub fn feed_collect(&mut self, data: &[u8]) -> Vec<Result<OscPacket, FrameError>> {
        let mut out = Vec::new();
        self.feed(data, |r| out.push(r));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        })
    }

    fn nest(depth: usize) -> OscPacket {
        let mut p = msg("/x", vec![]);
        for _ in 0..depth {
            p = OscPacket::Bundle(OscBundle {
                timetag: IMMEDIATE,
                content: vec![p],
            });
        }
        p
    }

    #[test]
    fn roundtrip() {
        let p = OscPacket::Bundle(OscBundle {
            timetag: OscTime {
                seconds: 5,
                fractional: 6,
            },
            content: vec![
                msg("/a", vec![OscType::Int(1), OscType::String("hé".into())]),
                msg(
                    "/b",
                    vec![OscType::Blob(vec![1, 2, 3]), OscType::Float(0.5)],
                ),
            ],
        });
        assert_eq!(decode(&encode(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn limits_enforced() {
        let lim = DecodeLimits::default();
        assert!(decode(&encode(&nest(lim.max_depth)).unwrap()).is_ok());
        assert_eq!(
            decode(&encode(&nest(lim.max_depth + 1)).unwrap()),
            Err(OscError::TooDeep { max: lim.max_depth })
        );
        // 3_000 nested bundles (60 kB): rejected before rosc recurses.
        let mut deep = Vec::new();
        for i in 0..3_000usize {
            deep.extend_from_slice(BUNDLE_TAG);
            deep.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            let rem = (3_000 - i - 1) * 20;
            deep.extend_from_slice(&(rem as u32).to_be_bytes());
        }
        assert!(matches!(decode(&deep), Err(OscError::TooDeep { .. })));
        let many = msg("/m", vec![OscType::Bool(true); lim.max_args + 1]);
        assert!(matches!(
            decode(&encode(&many).unwrap()),
            Err(OscError::TooManyArgs { count: 129, .. })
        ));
        let wide = OscPacket::Bundle(OscBundle {
            timetag: IMMEDIATE,
            content: vec![msg("/e", vec![]); lim.max_elements],
        });
        assert!(matches!(
            decode(&encode(&wide).unwrap()),
            Err(OscError::TooManyElements { .. })
        ));
        assert!(matches!(
            decode(&vec![0u8; lim.max_packet + 1]),
            Err(OscError::TooLarge { .. })
        ));
        let mut trailing = encode(&msg("/t", vec![])).unwrap();
        trailing.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode(&trailing), Err(OscError::TrailingBytes { count: 4 }));
        assert!(matches!(decode(b"garbage!"), Err(OscError::Malformed(_))));
        assert!(matches!(decode(&[]), Err(OscError::Malformed(_))));
    }

    #[test]
    fn a_message_without_a_type_tag_string_has_no_arguments() {
        // OSC 1.0: "an OSC message with no type tag string" is accepted as no arguments.
        let bare = b"/go\0".to_vec();
        assert_eq!(decode(&bare), Ok(msg("/go", vec![])));
        let bare = b"/convoy/stop\0\0\0\0".to_vec();
        assert_eq!(decode(&bare), Ok(msg("/convoy/stop", vec![])));
        // Inside a bundle too, next to a normal message.
        let normal = encode(&msg("/a", vec![OscType::Int(7)])).unwrap();
        let mut b = encode(&OscPacket::Bundle(OscBundle {
            timetag: IMMEDIATE,
            content: vec![],
        }))
        .unwrap();
        for e in [&b"/go\0"[..], &normal] {
            b.extend_from_slice(&(e.len() as u32).to_be_bytes());
            b.extend_from_slice(e);
        }
        assert_eq!(
            decode(&b),
            Ok(OscPacket::Bundle(OscBundle {
                timetag: IMMEDIATE,
                content: vec![msg("/go", vec![]), msg("/a", vec![OscType::Int(7)])],
            }))
        );
        assert_eq!(first_address(&b), Some("/go"));
        assert_eq!(first_address(&normal), Some("/a"));
        assert_eq!(first_address(b"#bundle\0"), None);
        // An unterminated address is still malformed.
        assert!(matches!(decode(b"/go!"), Err(OscError::Malformed(_))));
    }

    #[test]
    fn timetags() {
        assert_eq!(nanos_from_timetag(IMMEDIATE, Epoch::UNIX), None);
        let t = timetag_from_nanos(1_500_000_000, Epoch::UNIX).unwrap();
        assert_eq!(t.seconds as u64, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(t.fractional, 1 << 31);
        assert_eq!(nanos_from_timetag(t, Epoch::UNIX), Some(1_500_000_000));
        // Exact round trip for many values (resolution 0.23 ns < 1 ns).
        let mut x: u64 = 88172645463325252;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ns = x % 2_000_000_000_000_000_000;
            let tt = timetag_from_nanos(ns, Epoch::UNIX).unwrap();
            assert_eq!(nanos_from_timetag(tt, Epoch::UNIX), Some(ns));
        }
        let e = Epoch::from_ntp_seconds(100);
        assert_eq!(
            nanos_from_timetag(
                OscTime {
                    seconds: 99,
                    fractional: 0
                },
                e
            ),
            None
        );
        assert!(timetag_from_nanos(u64::MAX, Epoch::UNIX).is_err());
        let custom = Epoch::from_timetag(OscTime {
            seconds: 3_900_000_000,
            fractional: 7,
        });
        let tt = timetag_from_nanos(250, custom).unwrap();
        assert_eq!(nanos_from_timetag(tt, custom), Some(250));
    }

    #[test]
    fn length_prefix_incremental_and_resync() {
        let a = msg("/a", vec![OscType::Int(1)]);
        let b = msg("/b", vec![]);
        let mut stream = encode_length_prefixed(&a).unwrap();
        stream.extend_from_slice(&100_000i32.to_be_bytes());
        stream.extend_from_slice(&vec![0xAA; 100_000]);
        stream.extend_from_slice(&0i32.to_be_bytes());
        stream.extend_from_slice(&encode_length_prefixed(&b).unwrap());
        let mut d = LengthPrefixDecoder::new(1024);
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            d.feed(chunk, |r| got.push(r));
            assert!(d.buffered() <= 1024);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(a));
        assert!(matches!(
            got[1],
            Err(FrameError::Oversized { len: 100_000, .. })
        ));
        assert_eq!(got[2], Ok(b));
        let r = d.feed_collect(&(-5i32).to_be_bytes());
        assert_eq!(r, vec![Err(FrameError::NegativeLength(-5))]);
    }

    #[test]
    fn slip_incremental_escape_and_resync() {
        // Blob containing END and ESC bytes forces escaping.
        let a = msg("/a", vec![OscType::Blob(vec![SLIP_END, SLIP_ESC, 1])]);
        let b = msg("/b", vec![]);
        let ea = encode_slip(&a).unwrap();
        assert!(ea[1..ea.len() - 1].iter().all(|&c| c != SLIP_END));
        let mut stream = ea.clone();
        stream.extend_from_slice(&[SLIP_END, 1, 2, SLIP_ESC, 0x00, 3, 4, SLIP_END]); // bad escape
        stream.extend_from_slice(&vec![0x41; 5000]); // oversized, no END yet
        stream.push(SLIP_END);
        stream.extend_from_slice(&[b'/', b'x', SLIP_END]); // not OSC
        stream.extend_from_slice(&encode_slip(&b).unwrap());
        let mut d = SlipDecoder::new(1024);
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            d.feed(chunk, |r| got.push(r));
            assert!(d.buffered() <= 1024);
        }
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], Ok(a));
        assert_eq!(got[1], Err(FrameError::BadEscape(0)));
        assert!(matches!(got[2], Err(FrameError::Oversized { .. })));
        assert!(matches!(got[3], Err(FrameError::Decode(_))));
        assert_eq!(got[4], Ok(b));
    }
}
