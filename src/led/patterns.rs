//! The pattern library maths, in one place, integer-only.
//!
//! Every formula here is mirrored line for line in the firmware
//! (`tools/arduino/convoy_led/convoy_led.ino`, section "pattern maths"), so
//! the simulator and the real strip look alike. Only 8/16/32-bit unsigned
//! integer arithmetic with wrapping is used, as the ATmega328P does it; when
//! changing a pattern, change both files.

use super::protocol::{LedState, Pattern, Rgb};

/// Quiet time after which the firmware goes autonomous (ms).
pub const AUTONOMY_TIMEOUT_MS: u32 = 5000;
/// Binary mode falls back to line mode after this long without a valid frame (ms).
pub const BINARY_TIMEOUT_MS: u32 = 1000;
/// Pattern the firmware shows when autonomous.
pub const AUTONOMOUS_PATTERN: Pattern = Pattern::Rainbow;

/// Everything a pattern needs to render a frame: the persistent state plus
/// the latest stream inputs (bands, beat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowState {
    /// Pattern, hue, brightness, speed, colour.
    pub state: LedState,
    /// Latest band levels (first `num_bands` are valid).
    pub bands: [u8; 16],
    /// 3 or 16.
    pub num_bands: u8,
    /// Time of the last beat (ms, wrapping), if any.
    pub beat_at_ms: Option<u32>,
    /// Beat index within the bar of the last beat.
    pub beat_in_bar: u8,
    /// Strength of the last beat.
    pub beat_strength: u8,
}

impl Default for ShowState {
    fn default() -> Self {
        ShowState {
            state: LedState::default(),
            bands: [0; 16],
            num_bands: 3,
            beat_at_ms: None,
            beat_in_bar: 0,
            beat_strength: 0,
        }
    }
}

/// `v * (s + 1) / 256`: scales 0-255 by 0-255 with `scale8(v, 255) == v`.
pub fn scale8(v: u8, s: u8) -> u8 {
    ((u16::from(v) * (u16::from(s) + 1)) >> 8) as u8
}

/// Scale all channels.
pub fn scale_rgb(c: Rgb, s: u8) -> Rgb {
    Rgb::new(scale8(c.r, s), scale8(c.g, s), scale8(c.b, s))
}

/// Triangle wave 0 → 255 → 0 over one byte period.
pub fn tri8(x: u8) -> u8 {
    if x < 128 {
        x << 1
    } else {
        255 - ((x - 128) << 1)
    }
}

/// Integer HSV → RGB (six 43-wide sectors).
pub fn hsv(h: u8, s: u8, v: u8) -> Rgb {
    if s == 0 {
        return Rgb::new(v, v, v);
    }
    let region = h / 43;
    let rem = (h - region * 43) as u16 * 6;
    let (s16, v16) = (u16::from(s), u16::from(v));
    let p = ((v16 * (255 - s16)) >> 8) as u8;
    let q = ((v16 * (255 - ((s16 * rem) >> 8))) >> 8) as u8;
    let t = ((v16 * (255 - ((s16 * (255 - rem)) >> 8))) >> 8) as u8;
    match region {
        0 => Rgb::new(v, t, p),
        1 => Rgb::new(q, v, p),
        2 => Rgb::new(p, v, t),
        3 => Rgb::new(p, q, v),
        4 => Rgb::new(t, p, v),
        _ => Rgb::new(v, p, q),
    }
}

/// Animation phase: `(t * (speed + 1)) >> shift`, truncated to a byte.
pub fn phase(t_ms: u32, speed: u8, shift: u32) -> u8 {
    (t_ms.wrapping_mul(u32::from(speed) + 1) >> shift) as u8
}

/// 16-bit integer hash used by `sparkle`.
pub fn hash16(i: u16, frame: u16) -> u16 {
    let mut x = i.wrapping_mul(40503) ^ frame.wrapping_mul(2473);
    x ^= x >> 7;
    x = x.wrapping_mul(0x2F5B);
    x ^ (x >> 9)
}

/// Colour of LED `i` of `n` at time `t_ms` (before global brightness).
pub fn pixel(show: &ShowState, pattern: Pattern, t_ms: u32, i: u16, n: u16) -> Rgb {
    let st = &show.state;
    let n = n.max(1);
    let (i32_, n32) = (u32::from(i), u32::from(n));
    match pattern {
        Pattern::Off => Rgb::default(),
        Pattern::Solid => st.color,
        Pattern::Rainbow => {
            let h = st
                .hue
                .wrapping_add(phase(t_ms, st.speed, 6))
                .wrapping_add((i32_ * 256 / n32) as u8);
            hsv(h, 255, 255)
        }
        Pattern::Pulse => scale_rgb(st.color, tri8(phase(t_ms, st.speed, 5))),
        Pattern::Strobe => {
            if phase(t_ms, st.speed, 4) < 48 {
                st.color
            } else {
                Rgb::default()
            }
        }
        Pattern::Chase => {
            let pos = (t_ms.wrapping_mul(u32::from(st.speed) + 1) >> 12) % n32;
            let width = (n32 / 6).max(2);
            let d = (pos + n32 - i32_) % n32;
            if d < width {
                scale_rgb(st.color, (255 - d * 255 / width) as u8)
            } else {
                Rgb::default()
            }
        }
        Pattern::Sparkle => {
            let frame = (t_ms.wrapping_mul(u32::from(st.speed) + 1) >> 12) as u16;
            if hash16(i, frame) & 15 == 0 {
                st.color
            } else {
                scale_rgb(st.color, 12)
            }
        }
        Pattern::Vu => {
            let nb = u32::from(show.num_bands.clamp(1, 16)).min(n32);
            let band = i32_ * nb / n32;
            let seg_start = band * n32 / nb;
            let seg_len = ((band + 1) * n32 / nb - seg_start).max(1);
            let j = i32_ - seg_start;
            let level = u32::from(show.bands[band as usize]);
            if j * 255 < level * seg_len {
                hsv(st.hue.wrapping_add(96 - (j * 96 / seg_len) as u8), 255, 255)
            } else {
                Rgb::default()
            }
        }
        Pattern::BeatFlash => match show.beat_at_ms {
            None => Rgb::default(),
            Some(at) => {
                let since = t_ms.wrapping_sub(at);
                let decay = (since.wrapping_mul(u32::from(st.speed) + 1) >> 6).min(255);
                let v = scale8(255 - decay as u8, show.beat_strength);
                let sat = if show.beat_in_bar == 0 { 128 } else { 255 };
                hsv(
                    st.hue.wrapping_add(show.beat_in_bar.wrapping_mul(64)),
                    sat,
                    v,
                )
            }
        },
    }
}

/// Render a whole strip into `out` (one entry per LED), applying global
/// brightness. `autonomous` selects [`AUTONOMOUS_PATTERN`].
pub fn render(show: &ShowState, autonomous: bool, t_ms: u32, out: &mut [Rgb]) {
    let pattern = if autonomous {
        AUTONOMOUS_PATTERN
    } else {
        show.state.pattern
    };
    let n = u16::try_from(out.len()).unwrap_or(u16::MAX);
    for (i, px) in out.iter_mut().enumerate().take(usize::from(n)) {
        let c = pixel(show, pattern, t_ms, i as u16, n);
        *px = scale_rgb(c, show.state.bright);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_and_tri_edges() {
        assert_eq!(scale8(255, 255), 255);
        assert_eq!(scale8(200, 0), 0);
        assert_eq!(scale8(0, 255), 0);
        assert_eq!(tri8(0), 0);
        assert_eq!(tri8(128), 255);
        assert!(tri8(255) < 4);
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv(0, 255, 255), Rgb::new(255, 0, 0));
        let g = hsv(86, 255, 255);
        assert!(g.g == 255 && g.r < 10 && g.b < 10, "{g:?}");
        let b = hsv(171, 255, 255);
        assert!(b.b == 255 && b.r < 10 && b.g < 10, "{b:?}");
        assert_eq!(hsv(42, 0, 77), Rgb::new(77, 77, 77));
    }

    #[test]
    fn every_pattern_renders_every_size_without_panic() {
        let mut show = ShowState {
            beat_at_ms: Some(10),
            bands: [200; 16],
            ..Default::default()
        };
        for &p in &Pattern::ALL {
            show.state.pattern = p;
            for n in [0usize, 1, 2, 3, 17, 60, 300] {
                let mut buf = vec![Rgb::default(); n];
                for t in [0u32, 1, 999, 123_456, u32::MAX] {
                    for speed in [0u8, 64, 255] {
                        show.state.speed = speed;
                        render(&show, false, t, &mut buf);
                    }
                }
            }
        }
    }

    #[test]
    fn vu_lights_proportionally() {
        let mut show = ShowState::default();
        show.state.pattern = Pattern::Vu;
        show.state.bright = 255;
        show.bands[..3].copy_from_slice(&[0, 128, 255]);
        let mut buf = vec![Rgb::default(); 30];
        render(&show, false, 0, &mut buf);
        let lit =
            |r: std::ops::Range<usize>| buf[r].iter().filter(|c| **c != Rgb::default()).count();
        assert_eq!(lit(0..10), 0);
        assert!((4..=6).contains(&lit(10..20)));
        assert_eq!(lit(20..30), 10);
    }

    #[test]
    fn beatflash_decays() {
        let mut show = ShowState::default();
        show.state.pattern = Pattern::BeatFlash;
        show.state.bright = 255;
        show.beat_at_ms = Some(1000);
        show.beat_strength = 255;
        show.beat_in_bar = 1;
        let level = |t| {
            let c = pixel(&show, Pattern::BeatFlash, t, 0, 10);
            u16::from(c.r) + u16::from(c.g) + u16::from(c.b)
        };
        assert!(level(1000) > level(1100));
        assert!(level(1100) > level(1200));
        assert_eq!(level(5000), 0);
    }
}
