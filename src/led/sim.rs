//! Simulated LED strip and simulated controller firmware.
//!
//! [`SimStrip`] applies the same [`Command`]s as the Arduino to an in-memory
//! model of N RGB LEDs, renders frames at a given time with the shared
//! pattern maths of [`super::patterns`], and can print the strip as a line of
//! 24-bit-colour ANSI blocks. [`SimDevice`] wraps a strip in a byte-level
//! model of the firmware's protocol behaviour (line/binary modes, acks,
//! banner, autonomy), which is what tests use to play a fake Arduino.

use super::patterns::{self, ShowState, AUTONOMY_TIMEOUT_MS, BINARY_TIMEOUT_MS};
use super::protocol::{
    encode_frame, encode_line, Command, Decoder, DeviceInfo, ErrorCode, Framing, LedState, Packet,
    Reply, PROTOCOL_VERSION,
};

/// In-memory strip of `n` RGB LEDs driven by protocol commands.
#[derive(Debug, Clone)]
pub struct SimStrip {
    show: ShowState,
    leds: Vec<super::protocol::Rgb>,
    /// Time (ms) of the last host message, `None` before the first.
    last_host_ms: Option<u32>,
}

impl SimStrip {
    /// A strip of `num_leds` LEDs in the power-on state.
    pub fn new(num_leds: u16) -> SimStrip {
        SimStrip {
            show: ShowState::default(),
            leds: vec![super::protocol::Rgb::default(); usize::from(num_leds)],
            last_host_ms: None,
        }
    }

    /// Number of LEDs.
    pub fn len(&self) -> usize {
        self.leds.len()
    }

    /// Whether the strip has no LEDs.
    pub fn is_empty(&self) -> bool {
        self.leds.is_empty()
    }

    /// Current persistent state.
    pub fn state(&self) -> LedState {
        self.show.state
    }

    /// Current render inputs (state plus bands and beat).
    pub fn show(&self) -> &ShowState {
        &self.show
    }

    /// Apply a command received at `now_ms` (also counts as host activity).
    pub fn apply(&mut self, cmd: &Command, now_ms: u32) {
        self.last_host_ms = Some(now_ms);
        if self.show.state.apply(cmd) {
            return;
        }
        match *cmd {
            Command::Bands3(b) => {
                self.show.bands[..3].copy_from_slice(&b);
                self.show.num_bands = 3;
            }
            Command::Bands16(b) => {
                self.show.bands = b;
                self.show.num_bands = 16;
            }
            Command::Beat {
                beat_in_bar,
                strength,
            } => {
                self.show.beat_at_ms = Some(now_ms);
                self.show.beat_in_bar = beat_in_bar;
                self.show.beat_strength = strength;
            }
            _ => {}
        }
    }

    /// Record host activity without a state change (pings, handshakes).
    pub fn touch(&mut self, now_ms: u32) {
        self.last_host_ms = Some(now_ms);
    }

    /// Whether the strip runs its default pattern because the host has been
    /// silent for [`AUTONOMY_TIMEOUT_MS`] (counting from boot at t = 0).
    pub fn autonomous(&self, now_ms: u32) -> bool {
        now_ms.wrapping_sub(self.last_host_ms.unwrap_or(0)) >= AUTONOMY_TIMEOUT_MS
    }

    /// Render the frame for time `now_ms` and return the LEDs.
    pub fn render(&mut self, now_ms: u32) -> &[super::protocol::Rgb] {
        let auto = self.autonomous(now_ms);
        patterns::render(&self.show, auto, now_ms, &mut self.leds);
        &self.leds
    }

    /// The last rendered frame.
    pub fn leds(&self) -> &[super::protocol::Rgb] {
        &self.leds
    }

    /// The last rendered frame as one terminal line of 24-bit ANSI blocks
    /// (ends with a colour reset, no newline).
    pub fn to_ansi(&self) -> String {
        let mut s = String::with_capacity(self.leds.len() * 22 + 8);
        for c in &self.leds {
            s.push_str(&format!("\x1b[38;2;{};{};{}m\u{2588}", c.r, c.g, c.b));
        }
        s.push_str("\x1b[0m");
        s
    }
}

/// Byte-level model of the controller firmware: feed it host bytes, get the
/// reply bytes the Arduino would send. Mirrors `convoy_led.ino`.
#[derive(Debug, Clone)]
pub struct SimDevice {
    strip: SimStrip,
    decoder: Decoder<Command>,
    binary: bool,
    last_frame_ms: u32,
    firmware: String,
    /// Every valid command received, in order (for tests).
    received: Vec<Packet<Command>>,
    /// Maximum number of commands kept in the received log.
    log_cap: usize,
}

impl SimDevice {
    /// A simulated controller with `num_leds` LEDs and firmware version `firmware`.
    pub fn new(num_leds: u16, firmware: &str) -> SimDevice {
        SimDevice {
            strip: SimStrip::new(num_leds),
            decoder: Decoder::new(),
            binary: false,
            last_frame_ms: 0,
            firmware: firmware.to_string(),
            received: Vec::new(),
            log_cap: 10_000,
        }
    }

    /// The identity this device reports.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            firmware: self.firmware.clone(),
            protocol: PROTOCOL_VERSION,
            num_leds: u16::try_from(self.strip.len()).unwrap_or(u16::MAX),
        }
    }

    /// Bytes the firmware prints at boot (unsolicited banner without seq).
    pub fn boot_banner(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding a banner cannot fail.
        let _ = encode_line(&Reply::Hello(self.info()), None, &mut out);
        out
    }

    /// The strip model.
    pub fn strip(&self) -> &SimStrip {
        &self.strip
    }

    /// Mutable strip (to render frames).
    pub fn strip_mut(&mut self) -> &mut SimStrip {
        &mut self.strip
    }

    /// Whether the device is in binary mode.
    pub fn binary_mode(&self) -> bool {
        self.binary
    }

    /// Valid commands received so far (bounded log).
    pub fn received(&self) -> &[Packet<Command>] {
        &self.received
    }

    /// Periodic housekeeping: binary-mode timeout.
    pub fn tick(&mut self, now_ms: u32) {
        if self.binary && now_ms.wrapping_sub(self.last_frame_ms) >= BINARY_TIMEOUT_MS {
            self.binary = false;
        }
    }

    /// Process host bytes received at `now_ms`, appending replies to `out`.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u32, out: &mut Vec<u8>) {
        self.tick(now_ms);
        let mut results = Vec::new();
        for r in self.decoder.push(bytes) {
            results.push(r);
        }
        for r in results {
            match r {
                Ok(p) => self.handle(p, now_ms, out),
                Err(e) => {
                    // Line errors are reported as ERR lines; broken frames are
                    // dropped silently (the host does not wait on stream frames).
                    if !self.binary {
                        let reply = Reply::Err {
                            code: e.error_code(),
                            text: e.to_string(),
                        };
                        let _ = encode_line(&reply, None, out);
                    }
                }
            }
        }
    }

    fn handle(&mut self, p: Packet<Command>, now_ms: u32, out: &mut Vec<u8>) {
        if self.received.len() < self.log_cap {
            self.received.push(p.clone());
        }
        match p.framing {
            Framing::Line => {
                self.binary = false;
                self.strip.touch(now_ms);
                let reply = match p.body {
                    Command::Hello { .. } => Reply::Hello(self.info()),
                    Command::Binary => {
                        self.binary = true;
                        self.last_frame_ms = now_ms;
                        Reply::Ok
                    }
                    Command::Bands16(_) => Reply::Err {
                        code: ErrorCode::WrongMode,
                        text: "binary only".into(),
                    },
                    cmd => {
                        self.strip.apply(&cmd, now_ms);
                        Reply::Ok
                    }
                };
                let _ = encode_line(&reply, p.seq, out);
            }
            Framing::Binary => {
                let seq = p.seq.unwrap_or(0);
                if !self.binary {
                    let _ = encode_frame(
                        &Reply::Err {
                            code: ErrorCode::WrongMode,
                            text: String::new(),
                        },
                        seq,
                        false,
                        out,
                    );
                    return;
                }
                self.last_frame_ms = now_ms;
                self.strip.touch(now_ms);
                match p.body {
                    Command::Exit => self.binary = false,
                    cmd => self.strip.apply(&cmd, now_ms),
                }
                if p.ack_requested {
                    let _ = encode_frame(&Reply::Ok, seq, false, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::protocol::{Pattern, Rgb};

    fn replies(bytes: &[u8]) -> Vec<Packet<Reply>> {
        let mut d = Decoder::<Reply>::new();
        d.push(bytes).filter_map(Result::ok).collect()
    }

    #[test]
    fn strip_applies_commands_and_renders_solid() {
        let mut s = SimStrip::new(8);
        s.apply(&Command::Pattern(Pattern::Solid), 0);
        s.apply(&Command::Color(Rgb::new(255, 0, 0)), 0);
        s.apply(&Command::Bright(255), 0);
        let leds = s.render(10).to_vec();
        assert!(leds.iter().all(|c| *c == Rgb::new(255, 0, 0)));
        let ansi = s.to_ansi();
        assert_eq!(ansi.matches("\x1b[38;2;255;0;0m").count(), 8);
        assert!(ansi.ends_with("\x1b[0m"));
    }

    #[test]
    fn strip_goes_autonomous_after_silence() {
        let mut s = SimStrip::new(10);
        assert!(!s.autonomous(100));
        assert!(s.autonomous(AUTONOMY_TIMEOUT_MS));
        s.apply(&Command::Pattern(Pattern::Off), 6000);
        assert!(!s.autonomous(6000));
        assert!(s.render(6001).iter().all(|c| *c == Rgb::default()));
        // After silence the default pattern shows, but the host state is kept.
        let lit = s
            .render(6000 + AUTONOMY_TIMEOUT_MS)
            .iter()
            .filter(|c| **c != Rgb::default())
            .count();
        assert!(lit > 0);
        assert_eq!(s.state().pattern, Pattern::Off);
    }

    #[test]
    fn device_answers_hello_and_acks_lines() {
        let mut d = SimDevice::new(30, "sim-1");
        let mut inb = Vec::new();
        Command::Hello { protocol: 1 }
            .encode_line(Some(7), &mut inb)
            .unwrap();
        Command::Hue(9).encode_line(Some(8), &mut inb).unwrap();
        let mut out = Vec::new();
        d.receive(&inb, 0, &mut out);
        let r = replies(&out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].body, Reply::Hello(d.info()));
        assert_eq!(r[0].seq, Some(7));
        assert_eq!((r[1].body.clone(), r[1].seq), (Reply::Ok, Some(8)));
        assert_eq!(d.strip().state().hue, 9);
    }

    #[test]
    fn device_binary_mode_switch_and_timeout() {
        let mut d = SimDevice::new(30, "sim-1");
        let mut out = Vec::new();
        let mut inb = Vec::new();
        // A frame in line mode is refused.
        Command::Bands3([1, 2, 3])
            .encode_frame(1, true, &mut inb)
            .unwrap();
        d.receive(&inb, 0, &mut out);
        let r = replies(&out);
        assert!(matches!(
            r[0].body,
            Reply::Err {
                code: ErrorCode::WrongMode,
                ..
            }
        ));
        inb.clear();
        out.clear();
        Command::Binary.encode_line(Some(2), &mut inb).unwrap();
        Command::Bands3([1, 2, 3])
            .encode_frame(3, true, &mut inb)
            .unwrap();
        Command::Beat {
            beat_in_bar: 2,
            strength: 99,
        }
        .encode_frame(4, false, &mut inb)
        .unwrap();
        d.receive(&inb, 10, &mut out);
        let r = replies(&out);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            (r[1].body.clone(), r[1].seq, r[1].framing),
            (Reply::Ok, Some(3), Framing::Binary)
        );
        assert_eq!(d.strip().show().bands[..3], [1, 2, 3]);
        assert_eq!(d.strip().show().beat_in_bar, 2);
        assert!(d.binary_mode());
        d.tick(10 + BINARY_TIMEOUT_MS);
        assert!(!d.binary_mode());
    }
}
