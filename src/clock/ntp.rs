//! The 64-bit NTP timestamp: seconds since 1900-01-01 in the high 32 bits, a binary fraction
//! in the low 32. SNTP packets and OSC timetags share it, so Convoy uses it for fleet time on
//! the wire. Fleet time in nanoseconds maps onto it with a fixed era: fleet time 0 is NTP
//! time [`NtpTime::FLEET_EPOCH_SECS`], which keeps every value far from both zero (the OSC
//! "immediately" timetag is 1) and the 2036 era rollover.

/// An NTP/OSC 64-bit timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// NTP seconds at which fleet time 0 lies (the Unix epoch, 1970-01-01T00:00:00Z).
    pub const FLEET_EPOCH_SECS: u64 = 2_208_988_800;
    /// The OSC timetag meaning "immediately".
    pub const IMMEDIATELY: NtpTime = NtpTime(1);

    /// From seconds and fraction parts.
    pub fn from_parts(seconds: u32, fraction: u32) -> Self {
        NtpTime(((seconds as u64) << 32) | fraction as u64)
    }

    /// Seconds part.
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Fraction part (units of 2^-32 s).
    pub fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Fleet time in nanoseconds → NTP timestamp (exact to within 1 ns, by 128-bit maths).
    pub fn from_fleet_ns(fleet_ns: i64) -> Self {
        let total = (Self::FLEET_EPOCH_SECS as i128) * 1_000_000_000 + fleet_ns as i128;
        let total = total.max(0) as u128;
        let secs = total / 1_000_000_000;
        let nanos = total % 1_000_000_000;
        let frac = ((nanos << 32) + 500_000_000) / 1_000_000_000;
        NtpTime(((secs as u64) << 32).wrapping_add(frac as u64))
    }

    /// NTP timestamp → fleet time in nanoseconds.
    pub fn to_fleet_ns(self) -> i64 {
        let secs = (self.0 >> 32) as i128 - Self::FLEET_EPOCH_SECS as i128;
        let frac = (self.0 & 0xffff_ffff) as i128;
        let nanos = (frac * 1_000_000_000 + (1 << 31)) >> 32;
        (secs * 1_000_000_000 + nanos) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_nanosecond_exact() {
        for ns in [
            0i64,
            1,
            999_999_999,
            1_234_567_890_123,
            -5_000_000_000,
            86_400_000_000_017,
        ] {
            let t = NtpTime::from_fleet_ns(ns);
            assert!(
                (t.to_fleet_ns() - ns).abs() <= 1,
                "{ns} -> {t:?} -> {}",
                t.to_fleet_ns()
            );
        }
    }

    #[test]
    fn half_second_is_half_fraction() {
        let t = NtpTime::from_fleet_ns(500_000_000);
        assert_eq!(t.seconds() as u64, NtpTime::FLEET_EPOCH_SECS);
        assert_eq!(t.fraction(), 1 << 31);
    }
}
