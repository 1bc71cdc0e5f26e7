//! Lock-free counters of accepted packets and of every rejection reason.
//!
//! [`SecurityStats`] is shared (`Arc`) between the receive path, which bumps
//! relaxed atomics, and `convoy status`, which takes a [`StatsSnapshot`]
//! (serde `Serialize`) at any time. Each rejected datagram is counted under
//! exactly one [`RejectReason`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a datagram or control message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Envelope magic wrong (not a Convoy datagram).
    BadMagic,
    /// HMAC tag did not verify (forged, wrong key, corrupted).
    BadTag,
    /// Key id not in the keyring.
    UnknownKey,
    /// Duplicate or too-old sequence number.
    Replay,
    /// Timestamp outside the freshness window.
    Stale,
    /// Over a per-address or per-peer rate.
    RateLimited,
    /// Authenticated vehicle not on the whitelist.
    NotWhitelisted,
    /// Structurally invalid (too short, oversized, bad length, bad version, bad OSC).
    Malformed,
    /// External control message refused by the control-port policy.
    ControlDenied,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::BadMagic,
        RejectReason::BadTag,
        RejectReason::UnknownKey,
        RejectReason::Replay,
        RejectReason::Stale,
        RejectReason::RateLimited,
        RejectReason::NotWhitelisted,
        RejectReason::Malformed,
        RejectReason::ControlDenied,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Atomic counters; share behind an `Arc`.
#[derive(Debug, Default)]
pub struct SecurityStats {
    accepted: AtomicU64,
    accepted_previous_key: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl SecurityStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one rejection.
    pub fn record(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one accepted packet (and whether the previous key verified it).
    pub fn record_accepted(&self, previous_key: bool) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if previous_key {
            self.accepted_previous_key.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Current count for one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// A consistent-enough copy of every counter for reporting.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |x| self.rejected(x);
        StatsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            accepted_previous_key: self.accepted_previous_key.load(Ordering::Relaxed),
            bad_magic: r(RejectReason::BadMagic),
            bad_tag: r(RejectReason::BadTag),
            unknown_key: r(RejectReason::UnknownKey),
            replay: r(RejectReason::Replay),
            stale: r(RejectReason::Stale),
            rate_limited: r(RejectReason::RateLimited),
            not_whitelisted: r(RejectReason::NotWhitelisted),
            malformed: r(RejectReason::Malformed),
            control_denied: r(RejectReason::ControlDenied),
        }
    }
}

/// Plain copy of the counters, for `convoy status` (JSON via serde).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Packets accepted.
    pub accepted: u64,
    /// Of those, verified with the previous (rotating-out) key.
    pub accepted_previous_key: u64,
    /// Rejected: bad magic.
    pub bad_magic: u64,
    /// Rejected: bad HMAC tag.
    pub bad_tag: u64,
    /// Rejected: unknown key id.
    pub unknown_key: u64,
    /// Rejected: replayed or too old.
    pub replay: u64,
    /// Rejected: stale timestamp.
    pub stale: u64,
    /// Rejected: rate limited.
    pub rate_limited: u64,
    /// Rejected: vehicle not whitelisted.
    pub not_whitelisted: u64,
    /// Rejected: malformed.
    pub malformed: u64,
    /// Rejected: control-port policy.
    pub control_denied: u64,
}

impl StatsSnapshot {
    /// The rejection counters by reason name (`bad_tag`, `replay`, …), non-zero ones only.
    pub fn by_reason(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) {
            for (k, v) in fields {
                match v.as_u64() {
                    Some(n) if n > 0 && !k.starts_with("accepted") => {
                        m.insert(k, n);
                    }
                    _ => {}
                }
            }
        }
        m
    }

    /// Sum of all rejection counters.
    pub fn total_rejected(&self) -> u64 {
        self.bad_magic
            + self.bad_tag
            + self.unknown_key
            + self.replay
            + self.stale
            + self.rate_limited
            + self.not_whitelisted
            + self.malformed
            + self.control_denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_serializes() {
        let s = SecurityStats::new();
        for r in RejectReason::ALL {
            s.record(r);
        }
        s.record(RejectReason::BadTag);
        s.record_accepted(true);
        let snap = s.snapshot();
        assert_eq!(snap.bad_tag, 2);
        assert_eq!(snap.total_rejected(), 10);
        assert_eq!(snap.accepted_previous_key, 1);
        let json = serde_json::to_value(snap).unwrap();
        assert_eq!(json["bad_tag"], 2);
        assert_eq!(json["control_denied"], 1);
    }
}
