//! The WLED audio-sync V2 packet, so WLED lamps react to the fleet's music.
//!
//! WLED's audioreactive usermod (0.14 and later, and the MoonModules fork) receives one
//! 44-byte UDP datagram per audio frame, by default on multicast 239.0.0.1:11988. The layout
//! is WLED's packed C struct `audioSyncPacket`, little-endian (ESP32):
//!
//! | offset | size | field | Convoy sends |
//! |---|---|---|---|
//! | 0 | 6 | `header` `"00002\0"` | the V2 header |
//! | 6 | 2 | reserved | 0 |
//! | 8 | 4 | `sampleRaw` f32 | mean band level × 255 |
//! | 12 | 4 | `sampleSmth` f32 | the same, exponentially smoothed (α = 0.2) |
//! | 16 | 1 | `samplePeak` u8 | 1 when a beat fell since the previous packet |
//! | 17 | 1 | reserved (frame counter in the MoonModules fork) | rolling counter |
//! | 18 | 16 | `fftResult[16]` u8 | the node's band levels spread over WLED's 16 GEQ channels |
//! | 34 | 2 | reserved | 0 |
//! | 36 | 4 | `FFT_Magnitude` f32 | strongest channel × 16 (a level, not a raw FFT magnitude) |
//! | 40 | 4 | `FFT_MajorPeak` f32 | centre frequency (Hz) of the strongest channel, ≥ 1 |
//!
//! [`WledEncoder`] turns the node's [`Meters`] into frames (pure, no I/O); [`run_sender`]
//! sends them at a fixed rate from a socket the caller binds, reading the live plane at the
//! instant of each packet, and one more packet at the instant each beat is heard, so the
//! peak flag lands on the beat.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::clock::mono_ns;
use crate::control::{Meters, NodeHandle};

/// Bytes in a V2 audio-sync packet.
pub const PACKET_LEN: usize = 44;
/// The V2 header, NUL included.
pub const HEADER: &[u8; 6] = b"00002\0";
/// WLED's default audio-sync destination.
pub const DEFAULT_DESTINATION: &str = "239.0.0.1:11988";

/// Edges (Hz) of WLED's 16 GEQ channels, as its FFT code sums them (43–86 Hz sub-bass up
/// to 7106–9259 Hz).
const CHANNEL_EDGES_HZ: [f32; 17] = [
    43.0, 86.0, 129.0, 216.0, 301.0, 430.0, 560.0, 818.0, 1120.0, 1421.0, 1895.0, 2412.0, 3015.0,
    3704.0, 4479.0, 7106.0, 9259.0,
];

/// Geometric centre frequency of GEQ channel `i` (0..16), Hz.
pub fn channel_hz(i: usize) -> f32 {
    let i = i.min(15);
    (CHANNEL_EDGES_HZ[i] * CHANNEL_EDGES_HZ[i + 1]).sqrt()
}

/// One audio-sync frame, field by field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioSyncFrame {
    /// Current level, 0..=255.
    pub sample_raw: f32,
    /// Smoothed level, 0..=255.
    pub sample_smth: f32,
    /// Non-zero: a beat (peak) since the previous frame.
    pub sample_peak: u8,
    /// Rolling frame counter (MoonModules uses it to drop duplicates; WLED ignores it).
    pub frame_counter: u8,
    /// The 16 GEQ channels, 0..=255, low to high.
    pub fft: [u8; 16],
    /// Magnitude of the strongest channel.
    pub fft_magnitude: f32,
    /// Frequency of the strongest channel, Hz.
    pub fft_major_peak: f32,
}

impl AudioSyncFrame {
    /// A silent frame (what WLED sees while nothing plays).
    pub const SILENT: AudioSyncFrame = AudioSyncFrame {
        sample_raw: 0.0,
        sample_smth: 0.0,
        sample_peak: 0,
        frame_counter: 0,
        fft: [0; 16],
        fft_magnitude: 0.0,
        fft_major_peak: 1.0,
    };

    /// The 44 wire bytes.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..6].copy_from_slice(HEADER);
        b[8..12].copy_from_slice(&self.sample_raw.to_le_bytes());
        b[12..16].copy_from_slice(&self.sample_smth.to_le_bytes());
        b[16] = self.sample_peak;
        b[17] = self.frame_counter;
        b[18..34].copy_from_slice(&self.fft);
        b[36..40].copy_from_slice(&self.fft_magnitude.to_le_bytes());
        b[40..44].copy_from_slice(&self.fft_major_peak.to_le_bytes());
        b
    }

    /// Parses a V2 packet (what a WLED receiver accepts); `None` if it is not one.
    pub fn decode(b: &[u8]) -> Option<AudioSyncFrame> {
        if b.len() < PACKET_LEN || &b[0..6] != HEADER {
            return None;
        }
        let f32_at = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut fft = [0u8; 16];
        fft.copy_from_slice(&b[18..34]);
        Some(AudioSyncFrame {
            sample_raw: f32_at(8),
            sample_smth: f32_at(12),
            sample_peak: b[16],
            frame_counter: b[17],
            fft,
            fft_magnitude: f32_at(36),
            fft_major_peak: f32_at(40),
        })
    }
}

/// Turns successive meter readings into frames: smoothing, beat edges, frame counter.
#[derive(Debug, Clone, Default)]
pub struct WledEncoder {
    smth: f32,
    last_beat: Option<u64>,
    counter: u8,
}

impl WledEncoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frame for the meters now. Not playing gives a silent frame.
    pub fn frame(&mut self, meters: &Meters, playing: bool) -> AudioSyncFrame {
        let beat_edge = matches!(self.last_beat, Some(b) if meters.beat > b);
        self.last_beat = Some(meters.beat);
        self.counter = self.counter.wrapping_add(1);
        if !playing {
            self.smth = 0.0;
            return AudioSyncFrame {
                frame_counter: self.counter,
                ..AudioSyncFrame::SILENT
            };
        }
        let fft = spread_bands(&meters.bands);
        let raw = if meters.bands.is_empty() {
            0.0
        } else {
            let mean =
                meters.bands.iter().map(|v| level(*v)).sum::<f32>() / meters.bands.len() as f32;
            mean * 255.0
        };
        self.smth += 0.2 * (raw - self.smth);
        let (peak_bin, peak) =
            fft.iter().enumerate().fold(
                (0, 0u8),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            );
        AudioSyncFrame {
            sample_raw: raw,
            sample_smth: self.smth,
            sample_peak: u8::from(beat_edge),
            frame_counter: self.counter,
            fft,
            fft_magnitude: f32::from(peak) * 16.0,
            fft_major_peak: if peak == 0 { 1.0 } else { channel_hz(peak_bin) },
        }
    }
}

/// A level clamped to 0..=1 (NaN counts as silence).
fn level(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

/// Spreads `n` band levels (0..=1, low to high) over 16 channels by linear interpolation
/// between band centres.
pub fn spread_bands(bands: &[f32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = bands.len();
    if n == 0 {
        return out;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        let x = ((i as f32 + 0.5) * n as f32 / 16.0 - 0.5).clamp(0.0, (n - 1) as f32);
        let lo = x.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let t = x - lo as f32;
        let v = level(bands[lo]) * (1.0 - t) + level(bands[hi]) * t;
        *slot = (v * 255.0).round() as u8;
    }
    out
}

/// Sends one frame every `1/rate_hz` s, and one at the instant each beat is heard, to
/// `dest` from `socket` until the task is dropped. Levels and the beat are the live plane's
/// at the instant of sending. A failed send is logged once per streak and retried on the
/// next frame.
pub async fn run_sender(
    socket: Arc<UdpSocket>,
    dest: SocketAddr,
    rate_hz: f64,
    handle: NodeHandle,
) {
    let mut encoder = WledEncoder::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_hz));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failing = false;
    let live = handle.live().clone();
    let mut announced = live.announcements();
    let mut last = mono_ns();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::live::next_beat(&live, last) => {}
            r = announced.changed() => {
                if r.is_err() {
                    return;
                }
                continue; // a beat was announced: plan the next wake again
            }
        }
        last = mono_ns();
        let frame = {
            let s = handle.snapshot_now();
            encoder.frame(&s.meters, s.playing)
        };
        match socket.send_to(&frame.encode(), dest).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(%dest, error = %e, "WLED audio-sync send failed");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_layout_matches_wled_audio_sync_packet() {
        let mut fft = [0u8; 16];
        for (i, v) in fft.iter_mut().enumerate() {
            *v = (i * 16) as u8;
        }
        let f = AudioSyncFrame {
            sample_raw: 1.5,
            sample_smth: -2.0,
            sample_peak: 1,
            frame_counter: 7,
            fft,
            fft_magnitude: 1024.0,
            fft_major_peak: 440.0,
        };
        let b = f.encode();
        assert_eq!(b.len(), 44);
        assert_eq!(&b[0..8], b"00002\0\0\0");
        assert_eq!(&b[8..12], &[0x00, 0x00, 0xC0, 0x3F]); // 1.5f LE
        assert_eq!(&b[12..16], &[0x00, 0x00, 0x00, 0xC0]); // -2.0f LE
        assert_eq!((b[16], b[17]), (1, 7));
        assert_eq!(&b[18..34], &fft);
        assert_eq!(&b[34..36], &[0, 0]);
        assert_eq!(&b[36..40], &[0x00, 0x00, 0x80, 0x44]); // 1024.0f LE
        assert_eq!(&b[40..44], &[0x00, 0x00, 0xDC, 0x43]); // 440.0f LE
        assert_eq!(AudioSyncFrame::decode(&b), Some(f));
        assert_eq!(AudioSyncFrame::decode(&b[..43]), None);
        let mut v1 = b;
        v1[4] = b'1';
        assert_eq!(AudioSyncFrame::decode(&v1), None);
    }

    #[test]
    fn bands_spread_over_sixteen_channels() {
        // Three bands low/mid/high: the low band fills the bottom channels, the high the top.
        let s = spread_bands(&[1.0, 0.0, 0.5]);
        assert_eq!(s[0], 255);
        assert!(s[7] < 40 && s[8] < 40, "{s:?}");
        assert_eq!(s[15], 128);
        // Sixteen bands map one to one; out-of-range values clamp.
        let sixteen: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let s = spread_bands(&sixteen);
        for (i, &v) in s.iter().enumerate() {
            assert_eq!(v, (i as f32 / 15.0 * 255.0).round() as u8);
        }
        assert_eq!(spread_bands(&[f32::NAN, 7.0]), {
            let mut e = [0u8; 16];
            for (i, v) in e.iter_mut().enumerate() {
                let x = ((i as f32 + 0.5) * 2.0 / 16.0 - 0.5).clamp(0.0, 1.0);
                *v = (x * 255.0).round() as u8;
            }
            e
        });
        assert_eq!(spread_bands(&[]), [0; 16]);
    }

    #[test]
    fn encoder_marks_beats_and_the_strongest_channel() {
        let mut e = WledEncoder::new();
        let mut m = Meters {
            beat: 4,
            beat_in_bar: Some(4),
            bands: vec![0.2, 0.9, 0.1],
        };
        let first = e.frame(&m, true);
        assert_eq!(first.sample_peak, 0, "no previous beat to compare with");
        assert!((first.sample_raw - 0.4 * 255.0).abs() < 1e-3);
        assert!((first.sample_smth - 0.2 * first.sample_raw).abs() < 1e-3);
        // The mid band wins: the major peak is a mid channel's centre frequency.
        let top = first.fft.iter().copied().max().unwrap_or(0);
        assert_eq!(first.fft_magnitude, f32::from(top) * 16.0);
        assert!((300.0..2000.0).contains(&first.fft_major_peak), "{first:?}");
        m.beat = 5;
        let second = e.frame(&m, true);
        assert_eq!(second.sample_peak, 1);
        assert_eq!(second.frame_counter, first.frame_counter.wrapping_add(1));
        assert_eq!(e.frame(&m, true).sample_peak, 0, "same beat: no new peak");
        let stopped = e.frame(&m, false);
        assert_eq!(stopped.fft, [0; 16]);
        assert_eq!((stopped.sample_raw, stopped.fft_major_peak), (0.0, 1.0));
    }
}
