//! The position pilot: a test signal that carries its own track position. The left channel
//! is `A·sin(2πn/P)`, the right `A·cos(2πn/P)` for track frame `n`, with a period `P` of 2^24
//! frames (about six minutes at 44.1 kHz). Any gain the resampler or a volume stage applies
//! hits both channels alike, so `atan2` recovers `n mod P` to a fraction of a frame whatever
//! the level, and unwrapping against the previous reading gives the absolute position. The
//! virtual sink decodes it, which turns every recording into a measurement of what was
//! really played.

/// Pilot period in track frames.
pub const PERIOD_FRAMES: f64 = (1u64 << 24) as f64;
/// Pilot amplitude.
pub const AMPLITUDE: f64 = 0.5;

/// The stereo pilot sample for track frame `frame` (fractional frames allowed).
pub fn encode(frame: f64) -> [f32; 2] {
    let phase = std::f64::consts::TAU * (frame / PERIOD_FRAMES).fract();
    [
        (AMPLITUDE * phase.sin()) as f32,
        (AMPLITUDE * phase.cos()) as f32,
    ]
}

/// Decodes positions from pilot samples, unwrapping across periods.
#[derive(Debug, Clone, Default)]
pub struct PilotDecoder {
    last: Option<f64>,
}

impl PilotDecoder {
    /// A decoder that assumes the first reading lies in the first period.
    pub fn new() -> Self {
        Self::default()
    }

    /// Track frame carried by one stereo sample, or `None` where there is no pilot (silence,
    /// or a level far from the pilot's).
    pub fn decode(&mut self, left: f32, right: f32) -> Option<f64> {
        let (s, c) = (left as f64, right as f64);
        let level = (s * s + c * c).sqrt();
        if !(0.2 * AMPLITUDE..=2.0 * AMPLITUDE).contains(&level) {
            return None;
        }
        let frac = s.atan2(c) / std::f64::consts::TAU;
        let modulo = frac.rem_euclid(1.0) * PERIOD_FRAMES;
        let pos = match self.last {
            Some(prev) => modulo + ((prev - modulo) / PERIOD_FRAMES).round() * PERIOD_FRAMES,
            None => modulo,
        };
        self.last = Some(pos);
        Some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_to_a_fraction_of_a_frame_across_wraps() {
        let mut d = PilotDecoder::new();
        let mut worst: f64 = 0.0;
        let mut n = 0.0;
        while n < 3.0 * PERIOD_FRAMES {
            let [l, r] = encode(n);
            // A gain error common to both channels must not matter.
            let got = d.decode(l * 0.93, r * 0.93).expect("pilot present");
            worst = worst.max((got - n).abs());
            n += 9_973.25;
        }
        assert!(worst < 0.5, "worst error {worst} frames");
    }

    #[test]
    fn silence_is_not_a_position() {
        assert_eq!(PilotDecoder::new().decode(0.0, 0.0), None);
    }
}
