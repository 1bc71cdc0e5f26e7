//! Pure codec for the Convoy LED wire protocol (no I/O, no async).
//!
//! The host (Convoy on the Raspberry Pi) and the Arduino firmware exchange two
//! kinds of message on one byte stream: human-readable, newline-terminated
//! *lines* (`PATTERN:rainbow#12*4B`) with an optional `#<seq>` sequence number
//! and an optional NMEA-style `*XX` XOR checksum, and compact *binary frames*
//! (`0x00`, COBS-encoded `type | seq | payload | crc8`, `0x00`) used for
//! band/beat streams at 50+ updates per second. Lines never contain `0x00`,
//! so a [`Decoder`] can tell the two apart without knowing the link mode and
//! resynchronizes at the next newline or frame delimiter after any garbage.
//! [`Command`] is what the host sends, [`Reply`] what the firmware answers;
//! both share the same framing and the same [`Decoder`]. The specification
//! lives in `docs/led-protocol.md`; `tools/arduino/convoy_led/convoy_led.ino`
//! implements the firmware side of it.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Protocol version announced in `HELLO:<version>` and in the firmware banner.
pub const PROTOCOL_VERSION: u8 = 1;
/// Maximum length of one line in bytes, excluding the terminating `\n`
/// (a `\r` is ignored and not counted).
pub const MAX_LINE_LEN: usize = 64;
/// Maximum raw payload of a binary frame (16 band levels).
pub const MAX_PAYLOAD_LEN: usize = 16;
/// Maximum raw (decoded) frame size: type + seq + payload + CRC.
pub const MAX_RAW_FRAME_LEN: usize = MAX_PAYLOAD_LEN + 3;
/// Maximum COBS-encoded frame length between delimiters.
pub const MAX_FRAME_LEN: usize = 32;
/// Byte that opens and closes every binary frame.
pub const FRAME_DELIMITER: u8 = 0x00;
/// Flag bit in a frame's type byte asking the firmware for an ACK frame.
pub const FRAME_ACK_REQUEST: u8 = 0x80;
/// A partial binary frame older than this (no byte received for this long)
/// is discarded: frames are sent in one burst, so a gap means it was cut.
/// Lines have no such timeout (humans type slowly).
pub const FRAME_GAP_MS: u32 = 50;
/// Firmware version string length cap in the `CONVOY-LED` banner.
pub const MAX_FIRMWARE_LEN: usize = 16;

/// Binary frame type codes (low 7 bits of the type byte).
pub mod frame_type {
    /// Three band levels (low, mid, high).
    pub const BANDS3: u8 = 0x01;
    /// Sixteen band levels.
    pub const BANDS16: u8 = 0x02;
    /// Beat event: beat-in-bar, strength.
    pub const BEAT: u8 = 0x03;
    /// Full pattern state: pattern id, hue, bright, speed, r, g, b.
    pub const STATE: u8 = 0x04;
    /// Leave binary mode.
    pub const EXIT: u8 = 0x05;
    /// Keepalive.
    pub const PING: u8 = 0x06;
    /// Firmware acknowledgement: payload is one status byte (0 = OK).
    pub const ACK: u8 = 0x10;
}

/// Errors produced while decoding or encoding protocol messages.
///
/// `offset` is the position in the decoder's input stream (bytes fed since
/// creation) of the first byte of the offending message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A line exceeded [`MAX_LINE_LEN`]; the rest is skipped up to the newline.
    #[error("line at byte offset {offset} is longer than {max} bytes")]
    LineTooLong {
        /// Stream offset of the line start.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// A frame exceeded [`MAX_FRAME_LEN`]; the rest is skipped.
    #[error("frame at byte offset {offset} is longer than {max} bytes")]
    FrameTooLong {
        /// Stream offset of the frame start.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// A line contained a byte outside printable ASCII.
    #[error("line at byte offset {offset} contains non-printable byte 0x{byte:02X}")]
    NotPrintable {
        /// Stream offset of the line start.
        offset: u64,
        /// The offending byte.
        byte: u8,
    },
    /// A NUL byte appeared inside a line (it starts a binary frame instead).
    #[error("line at byte offset {offset} was cut by a frame delimiter")]
    NulInLine {
        /// Stream offset of the line start.
        offset: u64,
    },
    /// The `*XX` suffix is not two hex digits.
    #[error("line at byte offset {offset} has a malformed checksum suffix")]
    BadChecksumSyntax {
        /// Stream offset of the line start.
        offset: u64,
    },
    /// The `*XX` checksum does not match the line.
    #[error("line at byte offset {offset}: checksum says {expected:02X}, computed {computed:02X}")]
    BadChecksum {
        /// Stream offset of the line start.
        offset: u64,
        /// Checksum written in the line.
        expected: u8,
        /// Checksum computed over the line.
        computed: u8,
    },
    /// The `#<seq>` suffix is not a number 0..=255.
    #[error("line at byte offset {offset} has a malformed sequence number")]
    BadSequence {
        /// Stream offset of the line start.
        offset: u64,
    },
    /// Unknown command or reply keyword.
    #[error("unknown message {name:?} at byte offset {offset}")]
    UnknownMessage {
        /// Stream offset of the message start.
        offset: u64,
        /// The keyword seen (at most [`MAX_LINE_LEN`] bytes).
        name: String,
    },
    /// A known keyword with missing or out-of-range arguments.
    #[error("bad argument for {what} at byte offset {offset}")]
    BadArgument {
        /// Stream offset of the message start.
        offset: u64,
        /// Which message / argument.
        what: &'static str,
    },
    /// COBS decoding failed.
    #[error("frame at byte offset {offset} is not valid COBS")]
    BadCobs {
        /// Stream offset of the frame start.
        offset: u64,
    },
    /// Frame shorter than type + seq + CRC.
    #[error("frame at byte offset {offset} is too short ({len} bytes)")]
    FrameTooShort {
        /// Stream offset of the frame start.
        offset: u64,
        /// Decoded length.
        len: usize,
    },
    /// CRC-8 mismatch.
    #[error("frame at byte offset {offset}: CRC says {expected:02X}, computed {computed:02X}")]
    BadCrc {
        /// Stream offset of the frame start.
        offset: u64,
        /// CRC carried in the frame.
        expected: u8,
        /// CRC computed over the frame.
        computed: u8,
    },
    /// Unknown frame type for this direction.
    #[error("frame at byte offset {offset} has unknown type 0x{kind:02X}")]
    UnknownFrameType {
        /// Stream offset of the frame start.
        offset: u64,
        /// Type byte (without the ACK-request flag).
        kind: u8,
    },
    /// Payload length does not fit the frame type.
    #[error("frame at byte offset {offset} of type 0x{kind:02X} has a {len}-byte payload")]
    BadPayloadLength {
        /// Stream offset of the frame start.
        offset: u64,
        /// Frame type.
        kind: u8,
        /// Payload length.
        len: usize,
    },
    /// The message has no line form (e.g. 16 bands).
    #[error("{what} cannot be sent as a line")]
    NoLineForm {
        /// Message kind.
        what: &'static str,
    },
    /// The message has no binary form (e.g. `HELLO`).
    #[error("{what} cannot be sent as a binary frame")]
    NoBinaryForm {
        /// Message kind.
        what: &'static str,
    },
}

impl ProtocolError {
    /// The error code the firmware reports for this decoding error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ProtocolError::LineTooLong { .. } | ProtocolError::FrameTooLong { .. } => {
                ErrorCode::TooLong
            }
            ProtocolError::BadChecksum { .. } | ProtocolError::BadChecksumSyntax { .. } => {
                ErrorCode::BadChecksum
            }
            ProtocolError::UnknownMessage { .. } => ErrorCode::UnknownCommand,
            ProtocolError::BadArgument { .. }
            | ProtocolError::BadSequence { .. }
            | ProtocolError::NotPrintable { .. }
            | ProtocolError::NulInLine { .. } => ErrorCode::BadArgument,
            ProtocolError::BadCobs { .. }
            | ProtocolError::FrameTooShort { .. }
            | ProtocolError::BadCrc { .. }
            | ProtocolError::UnknownFrameType { .. }
            | ProtocolError::BadPayloadLength { .. } => ErrorCode::BadFrame,
            ProtocolError::NoLineForm { .. } | ProtocolError::NoBinaryForm { .. } => {
                ErrorCode::WrongMode
            }
        }
    }
}

/// Pattern library shared with the firmware. The numeric id is used in
/// binary frames; the lowercase name in `PATTERN:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// All LEDs dark.
    Off = 0,
    /// Whole strip in the `COLOR`.
    Solid = 1,
    /// Moving rainbow starting at `HUE`.
    Rainbow = 2,
    /// `COLOR` breathing up and down.
    Pulse = 3,
    /// `COLOR` flashing on and off.
    Strobe = 4,
    /// A lit segment with a fading tail running along the strip.
    Chase = 5,
    /// Random twinkles of `COLOR` on a dim background.
    Sparkle = 6,
    /// Level meter driven by `BANDS`.
    Vu = 7,
    /// Flash on every `BEAT`, decaying at `SPEED`.
    BeatFlash = 8,
}

impl Pattern {
    /// Every pattern, in id order.
    pub const ALL: [Pattern; 9] = [
        Pattern::Off,
        Pattern::Solid,
        Pattern::Rainbow,
        Pattern::Pulse,
        Pattern::Strobe,
        Pattern::Chase,
        Pattern::Sparkle,
        Pattern::Vu,
        Pattern::BeatFlash,
    ];

    /// Numeric id used in binary frames.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Pattern with the given numeric id.
    pub fn from_id(id: u8) -> Option<Pattern> {
        Pattern::ALL.get(usize::from(id)).copied()
    }

    /// Name used in line commands.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Off => "off",
            Pattern::Solid => "solid",
            Pattern::Rainbow => "rainbow",
            Pattern::Pulse => "pulse",
            Pattern::Strobe => "strobe",
            Pattern::Chase => "chase",
            Pattern::Sparkle => "sparkle",
            Pattern::Vu => "vu",
            Pattern::BeatFlash => "beatflash",
        }
    }

    /// Pattern with the given name (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Pattern> {
        Pattern::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::from_name(s).ok_or(ProtocolError::BadArgument {
            offset: 0,
            what: "pattern name",
        })
    }
}

/// A 24-bit colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Rgb {
    /// Red 0-255.
    pub r: u8,
    /// Green 0-255.
    pub g: u8,
    /// Blue 0-255.
    pub b: u8,
}

impl Rgb {
    /// Build a colour.
    pub const fn new(r: u8, g: u8, b: u8) -> Rgb {
        Rgb { r, g, b }
    }
}

/// The persistent look of the strip: what Convoy re-sends after a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LedState {
    /// Active pattern.
    pub pattern: Pattern,
    /// Base hue 0-255.
    pub hue: u8,
    /// Global brightness 0-255.
    pub bright: u8,
    /// Animation speed 0-255.
    pub speed: u8,
    /// Pattern colour.
    pub color: Rgb,
}

impl Default for LedState {
    /// The firmware's power-on state (also its autonomous look).
    fn default() -> Self {
        LedState {
            pattern: Pattern::Rainbow,
            hue: 0,
            bright: 128,
            speed: 64,
            color: Rgb::new(255, 255, 255),
        }
    }
}

impl LedState {
    /// Apply a command's effect on the persistent state; returns whether the
    /// command is a state command (stream and control commands are ignored).
    pub fn apply(&mut self, cmd: &Command) -> bool {
        match *cmd {
            Command::Pattern(p) => self.pattern = p,
            Command::Hue(v) => self.hue = v,
            Command::Bright(v) => self.bright = v,
            Command::Speed(v) => self.speed = v,
            Command::Color(c) => self.color = c,
            Command::State(s) => *self = s,
            _ => return false,
        }
        true
    }
}

/// Error codes carried by `ERR <code> <text>` and binary ACK status bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 1: checksum or CRC mismatch.
    BadChecksum,
    /// 2: unknown command keyword or frame type.
    UnknownCommand,
    /// 3: bad or missing argument.
    BadArgument,
    /// 4: line or frame too long.
    TooLong,
    /// 5: malformed binary frame.
    BadFrame,
    /// 6: message not valid in the current mode (e.g. a frame in line mode).
    WrongMode,
    /// Any other (non-zero) code.
    Other(u8),
}

impl ErrorCode {
    /// Numeric code (never 0: 0 means success in ACK frames).
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::BadChecksum => 1,
            ErrorCode::UnknownCommand => 2,
            ErrorCode::BadArgument => 3,
            ErrorCode::TooLong => 4,
            ErrorCode::BadFrame => 5,
            ErrorCode::WrongMode => 6,
            ErrorCode::Other(0) => 255,
            ErrorCode::Other(c) => c,
        }
    }

    /// Code from its number.
    pub fn from_code(code: u8) -> ErrorCode {
        match code {
            1 => ErrorCode::BadChecksum,
            2 => ErrorCode::UnknownCommand,
            3 => ErrorCode::BadArgument,
            4 => ErrorCode::TooLong,
            5 => ErrorCode::BadFrame,
            6 => ErrorCode::WrongMode,
            c => ErrorCode::Other(c),
        }
    }
}

/// Commands from the host to the LED controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// `HELLO:<protocol version>`: handshake; answered by the banner.
    Hello {
        /// Host protocol version.
        protocol: u8,
    },
    /// `PING` / binary PING: keepalive, acked.
    Ping,
    /// `PATTERN:<name>`.
    Pattern(Pattern),
    /// `HUE:<0-255>`.
    Hue(u8),
    /// `BRIGHT:<0-255>`.
    Bright(u8),
    /// `SPEED:<0-255>`.
    Speed(u8),
    /// `COLOR:<r>,<g>,<b>`.
    Color(Rgb),
    /// `BEAT` or `BEAT:<beat in bar>,<strength>`; `BEAT` alone is beat 0 at
    /// strength 255.
    Beat {
        /// Beat index within the bar (0 = downbeat).
        beat_in_bar: u8,
        /// Strength 0-255.
        strength: u8,
    },
    /// `BANDS:<b0>,<b1>,<b2>`: low/mid/high levels.
    Bands3([u8; 3]),
    /// Sixteen band levels (binary only).
    Bands16([u8; 16]),
    /// `STATE:<pattern>,<hue>,<bright>,<speed>,<r>,<g>,<b>`: whole state.
    State(LedState),
    /// `BINARY`: switch the link to binary mode.
    Binary,
    /// `EXIT` / binary EXIT: switch back to line mode.
    Exit,
}

impl Command {
    /// Whether this is a stream update (bands, beat) that may be dropped
    /// when stale, as opposed to a state or control command.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Command::Bands3(_) | Command::Bands16(_) | Command::Beat { .. }
        )
    }

    /// Short name for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Hello { .. } => "HELLO",
            Command::Ping => "PING",
            Command::Pattern(_) => "PATTERN",
            Command::Hue(_) => "HUE",
            Command::Bright(_) => "BRIGHT",
            Command::Speed(_) => "SPEED",
            Command::Color(_) => "COLOR",
            Command::Beat { .. } => "BEAT",
            Command::Bands3(_) => "BANDS",
            Command::Bands16(_) => "BANDS16",
            Command::State(_) => "STATE",
            Command::Binary => "BINARY",
            Command::Exit => "EXIT",
        }
    }

    /// Append the line form (always with checksum, and `#seq` if given).
    pub fn encode_line(&self, seq: Option<u8>, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        encode_line(self, seq, out)
    }

    /// Append the binary frame form.
    pub fn encode_frame(&self, seq: u8, ack: bool, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        encode_frame(self, seq, ack, out)
    }
}

/// Identity reported by the firmware banner
/// `CONVOY-LED <firmware> <protocol> <num leds>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Firmware version (no spaces, at most [`MAX_FIRMWARE_LEN`] bytes).
    pub firmware: String,
    /// Protocol version spoken by the firmware.
    pub protocol: u8,
    /// Number of LEDs on the strip.
    pub num_leds: u16,
}

/// Replies from the LED controller to the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reply {
    /// `OK <seq>` (line) or ACK frame with status 0.
    Ok,
    /// `ERR <code> <text>` (line) or ACK frame with a non-zero status
    /// (binary ACKs carry no text).
    Err {
        /// Error code.
        code: ErrorCode,
        /// Human-readable reason (may be empty).
        text: String,
    },
    /// `CONVOY-LED <fw> <protocol> <leds>`: HELLO answer, also sent
    /// unsolicited (without `#seq`) at boot.
    Hello(DeviceInfo),
}

/// How a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Framing {
    /// Newline-terminated text line.
    Line,
    /// COBS binary frame.
    Binary,
}

/// A decoded message with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T> {
    /// The message.
    pub body: T,
    /// For commands, the command's sequence number; for replies, the
    /// sequence number of the command being answered.
    pub seq: Option<u8>,
    /// Line or frame.
    pub framing: Framing,
    /// Binary frames only: whether the sender asked for an ACK.
    pub ack_requested: bool,
    /// Whether a line carried a `*XX` checksum (always true for frames).
    pub checked: bool,
}

/// A message type that can be carried on the link (implemented by
/// [`Command`] and [`Reply`]).
pub trait Message: Sized {
    /// Write the line text (without checksum or newline), including the
    /// sequence number in whatever form this message uses.
    fn write_line(&self, seq: Option<u8>, out: &mut String) -> Result<(), ProtocolError>;
    /// Parse a line body (checksum already stripped and verified). `seq` is
    /// the `#<seq>` suffix if any; returns the message and the effective seq.
    fn parse_line(
        body: &str,
        seq: Option<u8>,
        offset: u64,
    ) -> Result<(Self, Option<u8>), ProtocolError>;
    /// Frame type byte (without ACK flag) and payload.
    fn frame_parts(&self) -> Result<(u8, FramePayload), ProtocolError>;
    /// Parse a frame of the given type (ACK flag removed).
    fn parse_frame(kind: u8, payload: &[u8], offset: u64) -> Result<Self, ProtocolError>;
}

/// Fixed-capacity frame payload buffer (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePayload {
    buf: [u8; MAX_PAYLOAD_LEN],
    len: usize,
}

impl FramePayload {
    /// Payload from a slice; at most [`MAX_PAYLOAD_LEN`] bytes are kept.
    pub fn from_slice(data: &[u8]) -> FramePayload {
        let mut buf = [0u8; MAX_PAYLOAD_LEN];
        let len = data.len().min(MAX_PAYLOAD_LEN);
        buf[..len].copy_from_slice(&data[..len]);
        FramePayload { buf, len }
    }

    /// The payload bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

// ---------------------------------------------------------------------------
// Checksums and COBS

/// NMEA-style XOR of all bytes (the `*XX` line checksum).
pub fn line_checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// CRC-8 with polynomial 0x07, init 0x00, no reflection, no final XOR
/// (CRC-8/SMBUS; check value for `"123456789"` is 0xF4).
pub fn crc8(bytes: &[u8]) -> u8 {
    let mut crc: u8 = 0;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// COBS-encode `input` (no delimiters) and append to `out`.
pub fn cobs_encode(input: &[u8], out: &mut Vec<u8>) {
    let mut code_pos = out.len();
    out.push(0);
    let mut code: u8 = 1;
    for &b in input {
        if b == 0 {
            out[code_pos] = code;
            code_pos = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_pos] = code;
                code_pos = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_pos] = code;
}

/// COBS-decode `input` (no delimiters) into `out`; returns the decoded
/// length, or `None` if the input is malformed or does not fit.
pub fn cobs_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut i = 0;
    let mut n = 0;
    while i < input.len() {
        let code = input[i];
        if code == 0 {
            return None;
        }
        i += 1;
        for _ in 1..code {
            let b = *input.get(i)?;
            if b == 0 {
                return None;
            }
            *out.get_mut(n)? = b;
            n += 1;
            i += 1;
        }
        if code != 0xFF && i < input.len() {
            *out.get_mut(n)? = 0;
            n += 1;
        }
    }
    Some(n)
}

// ---------------------------------------------------------------------------
// Encoding

/// Append `msg` as a checksummed line (`body[#seq]*XX\n`).
pub fn encode_line<T: Message>(
    msg: &T,
    seq: Option<u8>,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let mut text = String::with_capacity(MAX_LINE_LEN);
    msg.write_line(seq, &mut text)?;
    let sum = line_checksum(text.as_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(b'*');
    out.extend_from_slice(&hex2(sum));
    out.push(b'\n');
    Ok(())
}

/// Append `msg` as a delimited binary frame (`0x00 cobs(type seq payload crc) 0x00`).
pub fn encode_frame<T: Message>(
    msg: &T,
    seq: u8,
    ack: bool,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let (kind, payload) = msg.frame_parts()?;
    let mut raw = [0u8; MAX_RAW_FRAME_LEN];
    raw[0] = kind | if ack { FRAME_ACK_REQUEST } else { 0 };
    raw[1] = seq;
    let p = payload.as_slice();
    raw[2..2 + p.len()].copy_from_slice(p);
    let crc_at = 2 + p.len();
    raw[crc_at] = crc8(&raw[..crc_at]);
    out.push(FRAME_DELIMITER);
    cobs_encode(&raw[..=crc_at], out);
    out.push(FRAME_DELIMITER);
    Ok(())
}

fn hex2(v: u8) -> [u8; 2] {
    const H: &[u8; 16] = b"0123456789ABCDEF";
    [H[usize::from(v >> 4)], H[usize::from(v & 15)]]
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_u8(s: &str) -> Option<u8> {
    let v = parse_u16(s)?;
    u8::try_from(v).ok()
}

fn parse_u16(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_list<const N: usize>(
    s: &str,
    offset: u64,
    what: &'static str,
) -> Result<[u8; N], ProtocolError> {
    let bad = ProtocolError::BadArgument { offset, what };
    let mut out = [0u8; N];
    let mut parts = s.split(',');
    for slot in out.iter_mut() {
        *slot = parts.next().and_then(parse_u8).ok_or(bad.clone())?;
    }
    if parts.next().is_some() {
        return Err(bad);
    }
    Ok(out)
}

fn push_seq(seq: Option<u8>, out: &mut String) {
    if let Some(s) = seq {
        out.push('#');
        out.push_str(&s.to_string());
    }
}

impl Message for Command {
    fn write_line(&self, seq: Option<u8>, out: &mut String) -> Result<(), ProtocolError> {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = match *self {
            Command::Hello { protocol } => write!(out, "HELLO:{protocol}"),
            Command::Ping => write!(out, "PING"),
            Command::Pattern(p) => write!(out, "PATTERN:{}", p.name()),
            Command::Hue(v) => write!(out, "HUE:{v}"),
            Command::Bright(v) => write!(out, "BRIGHT:{v}"),
            Command::Speed(v) => write!(out, "SPEED:{v}"),
            Command::Color(c) => write!(out, "COLOR:{},{},{}", c.r, c.g, c.b),
            Command::Beat {
                beat_in_bar,
                strength,
            } => write!(out, "BEAT:{beat_in_bar},{strength}"),
            Command::Bands3([a, b, c]) => write!(out, "BANDS:{a},{b},{c}"),
            Command::Bands16(_) => return Err(ProtocolError::NoLineForm { what: "BANDS16" }),
            Command::State(s) => write!(
                out,
                "STATE:{},{},{},{},{},{},{}",
                s.pattern.name(),
                s.hue,
                s.bright,
                s.speed,
                s.color.r,
                s.color.g,
                s.color.b
            ),
            Command::Binary => write!(out, "BINARY"),
            Command::Exit => write!(out, "EXIT"),
        };
        push_seq(seq, out);
        Ok(())
    }

    fn parse_line(
        body: &str,
        seq: Option<u8>,
        offset: u64,
    ) -> Result<(Self, Option<u8>), ProtocolError> {
        let (name, args) = match body.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (body, None),
        };
        let upper = name.to_ascii_uppercase();
        let arg = |what: &'static str| args.ok_or(ProtocolError::BadArgument { offset, what });
        let num = |what: &'static str| -> Result<u8, ProtocolError> {
            args.and_then(parse_u8)
                .ok_or(ProtocolError::BadArgument { offset, what })
        };
        let no_args = |cmd: Command, what: &'static str| match args {
            None => Ok(cmd),
            Some(_) => Err(ProtocolError::BadArgument { offset, what }),
        };
        let cmd = match upper.as_str() {
            "HELLO" => Command::Hello {
                protocol: num("HELLO version")?,
            },
            "PING" => no_args(Command::Ping, "PING")?,
            "PATTERN" => Command::Pattern(Pattern::from_name(arg("PATTERN name")?).ok_or(
                ProtocolError::BadArgument {
                    offset,
                    what: "PATTERN name",
                },
            )?),
            "HUE" => Command::Hue(num("HUE value")?),
            "BRIGHT" => Command::Bright(num("BRIGHT value")?),
            "SPEED" => Command::Speed(num("SPEED value")?),
            "COLOR" => {
                let [r, g, b] = parse_list::<3>(arg("COLOR")?, offset, "COLOR r,g,b")?;
                Command::Color(Rgb { r, g, b })
            }
            "BEAT" => match args {
                None => Command::Beat {
                    beat_in_bar: 0,
                    strength: 255,
                },
                Some(a) => {
                    let [beat_in_bar, strength] = parse_list::<2>(a, offset, "BEAT beat,strength")?;
                    Command::Beat {
                        beat_in_bar,
                        strength,
                    }
                }
            },
            "BANDS" => Command::Bands3(parse_list::<3>(arg("BANDS")?, offset, "BANDS b0,b1,b2")?),
            "STATE" => {
                let a = arg("STATE")?;
                let (pname, rest) = a.split_once(',').ok_or(ProtocolError::BadArgument {
                    offset,
                    what: "STATE",
                })?;
                let pattern = Pattern::from_name(pname).ok_or(ProtocolError::BadArgument {
                    offset,
                    what: "STATE pattern",
                })?;
                let [hue, bright, speed, r, g, b] =
                    parse_list::<6>(rest, offset, "STATE hue,bright,speed,r,g,b")?;
                Command::State(LedState {
                    pattern,
                    hue,
                    bright,
                    speed,
                    color: Rgb { r, g, b },
                })
            }
            "BINARY" => no_args(Command::Binary, "BINARY")?,
            "EXIT" => no_args(Command::Exit, "EXIT")?,
            _ => {
                return Err(ProtocolError::UnknownMessage {
                    offset,
                    name: name.chars().take(MAX_LINE_LEN).collect(),
                })
            }
        };
        Ok((cmd, seq))
    }

    fn frame_parts(&self) -> Result<(u8, FramePayload), ProtocolError> {
        use frame_type::*;
        Ok(match *self {
            Command::Bands3(b) => (BANDS3, FramePayload::from_slice(&b)),
            Command::Bands16(b) => (BANDS16, FramePayload::from_slice(&b)),
            Command::Beat {
                beat_in_bar,
                strength,
            } => (BEAT, FramePayload::from_slice(&[beat_in_bar, strength])),
            Command::State(s) => (
                STATE,
                FramePayload::from_slice(&[
                    s.pattern.id(),
                    s.hue,
                    s.bright,
                    s.speed,
                    s.color.r,
                    s.color.g,
                    s.color.b,
                ]),
            ),
            Command::Exit => (EXIT, FramePayload::from_slice(&[])),
            Command::Ping => (PING, FramePayload::from_slice(&[])),
            other => return Err(ProtocolError::NoBinaryForm { what: other.kind() }),
        })
    }

    fn parse_frame(kind: u8, p: &[u8], offset: u64) -> Result<Self, ProtocolError> {
        use frame_type::*;
        let bad_len = ProtocolError::BadPayloadLength {
            offset,
            kind,
            len: p.len(),
        };
        match (kind, p) {
            (BANDS3, &[a, b, c]) => Ok(Command::Bands3([a, b, c])),
            (BANDS16, p) if p.len() == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(p);
                Ok(Command::Bands16(b))
            }
            (BEAT, &[beat_in_bar, strength]) => Ok(Command::Beat {
                beat_in_bar,
                strength,
            }),
            (STATE, &[id, hue, bright, speed, r, g, b]) => Ok(Command::State(LedState {
                pattern: Pattern::from_id(id).ok_or(ProtocolError::BadArgument {
                    offset,
                    what: "STATE pattern id",
                })?,
                hue,
                bright,
                speed,
                color: Rgb { r, g, b },
            })),
            (EXIT, &[]) => Ok(Command::Exit),
            (PING, &[]) => Ok(Command::Ping),
            (BANDS3 | BANDS16 | BEAT | STATE | EXIT | PING, _) => Err(bad_len),
            _ => Err(ProtocolError::UnknownFrameType { offset, kind }),
        }
    }
}

impl Message for Reply {
    fn write_line(&self, seq: Option<u8>, out: &mut String) -> Result<(), ProtocolError> {
        match self {
            Reply::Ok => {
                out.push_str("OK");
                if let Some(s) = seq {
                    out.push(' ');
                    out.push_str(&s.to_string());
                }
            }
            Reply::Err { code, text } => {
                out.push_str("ERR ");
                out.push_str(&code.code().to_string());
                // Keep the whole line within MAX_LINE_LEN: "ERR ccc " + text
                // + "#sss" + "*XX".
                let room = MAX_LINE_LEN.saturating_sub(out.len() + 1 + 4 + 3);
                let clean: String = text
                    .chars()
                    .filter(|c| (' '..='~').contains(c) && *c != '#' && *c != '*')
                    .take(room)
                    .collect();
                let clean = clean.trim();
                if !clean.is_empty() {
                    out.push(' ');
                    out.push_str(clean);
                }
                push_seq(seq, out);
            }
            Reply::Hello(info) => {
                out.push_str("CONVOY-LED ");
                let fw: String = info
                    .firmware
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '#' && *c != '*')
                    .take(MAX_FIRMWARE_LEN)
                    .collect();
                out.push_str(if fw.is_empty() { "?" } else { &fw });
                out.push_str(&format!(" {} {}", info.protocol, info.num_leds));
                push_seq(seq, out);
            }
        }
        Ok(())
    }

    fn parse_line(
        body: &str,
        seq: Option<u8>,
        offset: u64,
    ) -> Result<(Self, Option<u8>), ProtocolError> {
        let mut words = body.split(' ');
        let head = words.next().unwrap_or_default();
        match head {
            "OK" => {
                let seq = match (words.next(), seq) {
                    (Some(s), None) => {
                        Some(parse_u8(s).ok_or(ProtocolError::BadSequence { offset })?)
                    }
                    (None, s) => s,
                    (Some(_), Some(_)) => return Err(ProtocolError::BadSequence { offset }),
                };
                if words.next().is_some() {
                    return Err(ProtocolError::BadArgument { offset, what: "OK" });
                }
                Ok((Reply::Ok, seq))
            }
            "ERR" => {
                let code = words.next().and_then(parse_u8).filter(|c| *c != 0).ok_or(
                    ProtocolError::BadArgument {
                        offset,
                        what: "ERR code",
                    },
                )?;
                let text = body
                    .splitn(3, ' ')
                    .nth(2)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                Ok((
                    Reply::Err {
                        code: ErrorCode::from_code(code),
                        text,
                    },
                    seq,
                ))
            }
            "CONVOY-LED" => {
                let bad = ProtocolError::BadArgument {
                    offset,
                    what: "CONVOY-LED banner",
                };
                let firmware = words
                    .next()
                    .filter(|f| !f.is_empty() && f.len() <= MAX_FIRMWARE_LEN)
                    .ok_or(bad.clone())?;
                let protocol = words.next().and_then(parse_u8).ok_or(bad.clone())?;
                let num_leds = words.next().and_then(parse_u16).ok_or(bad.clone())?;
                if words.next().is_some() {
                    return Err(bad);
                }
                Ok((
                    Reply::Hello(DeviceInfo {
                        firmware: firmware.to_string(),
                        protocol,
                        num_leds,
                    }),
                    seq,
                ))
            }
            _ => Err(ProtocolError::UnknownMessage {
                offset,
                name: head.chars().take(MAX_LINE_LEN).collect(),
            }),
        }
    }

    fn frame_parts(&self) -> Result<(u8, FramePayload), ProtocolError> {
        match self {
            Reply::Ok => Ok((frame_type::ACK, FramePayload::from_slice(&[0]))),
            Reply::Err { code, .. } => {
                Ok((frame_type::ACK, FramePayload::from_slice(&[code.code()])))
            }
            Reply::Hello(_) => Err(ProtocolError::NoBinaryForm { what: "CONVOY-LED" }),
        }
    }

    fn parse_frame(kind: u8, p: &[u8], offset: u64) -> Result<Self, ProtocolError> {
        match (kind, p) {
            (frame_type::ACK, &[0]) => Ok(Reply::Ok),
            (frame_type::ACK, &[code]) => Ok(Reply::Err {
                code: ErrorCode::from_code(code),
                text: String::new(),
            }),
            (frame_type::ACK, _) => Err(ProtocolError::BadPayloadLength {
                offset,
                kind,
                len: p.len(),
            }),
            _ => Err(ProtocolError::UnknownFrameType { offset, kind }),
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding

const BUF_LEN: usize = if MAX_LINE_LEN > MAX_FRAME_LEN {
    MAX_LINE_LEN
} else {
    MAX_FRAME_LEN
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    Idle,
    Line,
    SkipLine,
    Frame,
    SkipFrame,
}

/// Incremental decoder: feed bytes, get complete [`Packet`]s or typed errors.
///
/// Uses a fixed buffer (no allocation grows with input). After an error it
/// resynchronizes at the next `\n` (lines) or `0x00` (frames).
#[derive(Debug, Clone)]
pub struct Decoder<T> {
    state: DecState,
    buf: [u8; BUF_LEN],
    len: usize,
    /// Bytes consumed so far.
    pos: u64,
    /// Stream offset of the current message's first byte.
    start: u64,
    _msg: PhantomData<fn() -> T>,
}

impl<T: Message> Default for Decoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Message> Decoder<T> {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Decoder {
            state: DecState::Idle,
            buf: [0; BUF_LEN],
            len: 0,
            pos: 0,
            start: 0,
            _msg: PhantomData,
        }
    }

    /// Drop any partial message (e.g. after reconnecting). The byte offset
    /// keeps counting.
    pub fn reset(&mut self) {
        self.state = DecState::Idle;
        self.len = 0;
    }

    /// Tell the decoder the line has been quiet for [`FRAME_GAP_MS`]: a
    /// partial (or skipped) binary frame is dropped so that the next byte
    /// starts fresh. Returns whether anything was dropped. Partial lines are
    /// kept.
    pub fn expire_partial_frame(&mut self) -> bool {
        match self.state {
            DecState::Frame | DecState::SkipFrame => {
                self.reset();
                true
            }
            _ => false,
        }
    }

    /// Total bytes fed so far.
    pub fn bytes_consumed(&self) -> u64 {
        self.pos
    }

    /// Whether a message is partially received.
    pub fn in_message(&self) -> bool {
        self.state != DecState::Idle
    }

    /// Feed one byte; returns a message or an error when one completes.
    pub fn feed(&mut self, byte: u8) -> Option<Result<Packet<T>, ProtocolError>> {
        let at = self.pos;
        self.pos += 1;
        match self.state {
            DecState::Idle => match byte {
                FRAME_DELIMITER => self.begin(DecState::Frame, at),
                b'\n' | b'\r' => {}
                b => {
                    self.begin(DecState::Line, at);
                    self.push_byte(b);
                }
            },
            DecState::Line => match byte {
                b'\n' => {
                    self.state = DecState::Idle;
                    return Some(self.parse_line());
                }
                b'\r' => {}
                FRAME_DELIMITER => {
                    let offset = self.start;
                    self.begin(DecState::Frame, at);
                    return Some(Err(ProtocolError::NulInLine { offset }));
                }
                b => {
                    if self.len >= MAX_LINE_LEN {
                        self.state = DecState::SkipLine;
                        return Some(Err(ProtocolError::LineTooLong {
                            offset: self.start,
                            max: MAX_LINE_LEN,
                        }));
                    }
                    self.push_byte(b);
                }
            },
            DecState::SkipLine | DecState::SkipFrame => match byte {
                b'\n' => self.state = DecState::Idle,
                FRAME_DELIMITER => self.begin(DecState::Frame, at),
                _ => {}
            },
            DecState::Frame => match byte {
                FRAME_DELIMITER if self.len == 0 => self.start = at,
                FRAME_DELIMITER => {
                    self.state = DecState::Idle;
                    return Some(self.parse_frame());
                }
                b => {
                    if self.len >= MAX_FRAME_LEN {
                        self.state = DecState::SkipFrame;
                        return Some(Err(ProtocolError::FrameTooLong {
                            offset: self.start,
                            max: MAX_FRAME_LEN,
                        }));
                    }
                    self.push_byte(b);
                }
            },
        }
        None
    }

    /// Feed a slice; the returned iterator yields every completed message
    /// or error. Bytes not consumed when the iterator is dropped are lost.
    pub fn push<'a>(&'a mut self, bytes: &'a [u8]) -> Decoded<'a, T> {
        Decoded {
            decoder: self,
            bytes: bytes.iter(),
        }
    }

    fn begin(&mut self, state: DecState, at: u64) {
        self.state = state;
        self.len = 0;
        self.start = at;
    }

    fn push_byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn parse_line(&self) -> Result<Packet<T>, ProtocolError> {
        let offset = self.start;
        let line = &self.buf[..self.len];
        if let Some(&byte) = line.iter().find(|b| !(0x20..=0x7E).contains(*b)) {
            return Err(ProtocolError::NotPrintable { offset, byte });
        }
        let (body, checked) = match line.iter().rposition(|&b| b == b'*') {
            Some(star) => {
                let hex = &line[star + 1..];
                let expected = match hex {
                    [h, l] => match (hex_val(*h), hex_val(*l)) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(ProtocolError::BadChecksumSyntax { offset }),
                    },
                    _ => return Err(ProtocolError::BadChecksumSyntax { offset }),
                };
                let computed = line_checksum(&line[..star]);
                if computed != expected {
                    return Err(ProtocolError::BadChecksum {
                        offset,
                        expected,
                        computed,
                    });
                }
                (&line[..star], true)
            }
            None => (line, false),
        };
        // Printable ASCII was checked above, so this is valid UTF-8.
        let body = std::str::from_utf8(body)
            .map_err(|_| ProtocolError::NotPrintable { offset, byte: 0xFF })?;
        let (body, seq) = match body.rsplit_once('#') {
            Some((b, s)) => (
                b,
                Some(parse_u8(s).ok_or(ProtocolError::BadSequence { offset })?),
            ),
            None => (body, None),
        };
        let (msg, seq) = T::parse_line(body.trim_end(), seq, offset)?;
        Ok(Packet {
            body: msg,
            seq,
            framing: Framing::Line,
            ack_requested: false,
            checked,
        })
    }

    fn parse_frame(&self) -> Result<Packet<T>, ProtocolError> {
        let offset = self.start;
        let mut raw = [0u8; MAX_FRAME_LEN];
        let n = cobs_decode(&self.buf[..self.len], &mut raw)
            .ok_or(ProtocolError::BadCobs { offset })?;
        if n < 3 {
            return Err(ProtocolError::FrameTooShort { offset, len: n });
        }
        let (data, crc) = raw[..n].split_at(n - 1);
        let computed = crc8(data);
        if computed != crc[0] {
            return Err(ProtocolError::BadCrc {
                offset,
                expected: crc[0],
                computed,
            });
        }
        let kind = data[0] & !FRAME_ACK_REQUEST;
        let msg = T::parse_frame(kind, &data[2..], offset)?;
        Ok(Packet {
            body: msg,
            seq: Some(data[1]),
            framing: Framing::Binary,
            ack_requested: data[0] & FRAME_ACK_REQUEST != 0,
            checked: true,
        })
    }
}

/// Iterator returned by [`Decoder::push`].
#[derive(Debug)]
pub struct Decoded<'a, T> {
    decoder: &'a mut Decoder<T>,
    bytes: std::slice::Iter<'a, u8>,
}

impl<T: Message> Iterator for Decoded<'_, T> {
    type Item = Result<Packet<T>, ProtocolError>;
    fn next(&mut self) -> Option<Self::Item> {
        for &b in self.bytes.by_ref() {
            if let Some(r) = self.decoder.feed(b) {
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
