//! Replay and freshness protection for authenticated envelopes.
//!
//! Each sender gets an IPsec/DTLS-style sliding window: the highest sequence
//! number seen plus a 64-bit bitmap of the 64 numbers below it, so packets
//! reordered by up to 63 positions are still accepted once while duplicates
//! and anything older are refused. Independently, the envelope timestamp must
//! lie within `max_skew_ns` of the receiver's fleet clock (supplied by the
//! caller, or through a [`TimeNow`]). The table of tracked senders
//! is bounded and evicts the least recently used entry; only authenticated
//! packets reach this step, so a stranger without the key cannot fill it. An
//! evicted sender's window restarts, which is safe because the timestamp
//! window still bounds how old a replay can be.

use std::collections::HashMap;

use super::envelope::SenderId;

use crate::clock::TimeNow;

/// Why a packet failed the replay or freshness check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// This sequence number was already accepted.
    #[error("duplicate seq {seq} from sender {sender}")]
    Duplicate {
        /// Sender id.
        sender: SenderId,
        /// Repeated sequence number.
        seq: u64,
    },
    /// The sequence number is below the window.
    #[error("seq {seq} from sender {sender} is older than the window (highest {highest})")]
    TooOld {
        /// Sender id.
        sender: SenderId,
        /// Offending sequence number.
        seq: u64,
        /// Highest accepted so far.
        highest: u64,
    },
    /// The timestamp is too far from the receiver's clock.
    #[error("timestamp from sender {sender} is {skew_ms} ms off (limit {limit_ms} ms)")]
    Stale {
        /// Sender id.
        sender: SenderId,
        /// Signed skew, packet minus local, in ms.
        skew_ms: i64,
        /// Allowed absolute skew in ms.
        limit_ms: u64,
    },
}

/// Sliding 64-packet anti-replay window for one sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i` set = `highest - i` already accepted.
    bitmap: u64,
    started: bool,
}

/// Width of the reordering window.
pub const WINDOW_BITS: u64 = 64;

impl ReplayWindow {
    /// An empty window (accepts any first sequence number).
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest accepted sequence number, if any.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }

    /// Checks `seq` without recording it.
    pub fn check(&self, sender: SenderId, seq: u64) -> Result<(), ReplayError> {
        if !self.started || seq > self.highest {
            return Ok(());
        }
        let age = self.highest - seq;
        if age >= WINDOW_BITS {
            return Err(ReplayError::TooOld {
                sender,
                seq,
                highest: self.highest,
            });
        }
        if self.bitmap & (1u64 << age) != 0 {
            return Err(ReplayError::Duplicate { sender, seq });
        }
        Ok(())
    }

    /// Records `seq` as accepted (call only after [`ReplayWindow::check`] passed).
    pub fn commit(&mut self, seq: u64) {
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.bitmap = 1;
        } else if seq > self.highest {
            let shift = seq - self.highest;
            self.bitmap = if shift >= WINDOW_BITS {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.highest = seq;
        } else {
            let age = self.highest - seq;
            if age < WINDOW_BITS {
                self.bitmap |= 1u64 << age;
            }
        }
    }
}

/// Replay-protection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayConfig {
    /// Largest accepted |timestamp − now| in ns.
    pub max_skew_ns: u64,
    /// Largest number of senders tracked at once (LRU eviction beyond).
    pub max_senders: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_skew_ns: 5_000_000_000,
            max_senders: 256,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    window: ReplayWindow,
    last_used: u64,
}

/// Per-sender replay windows plus the timestamp check.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    cfg: ReplayConfig,
    senders: HashMap<SenderId, Slot>,
    tick: u64,
}

impl ReplayGuard {
    /// A guard with the given settings (`max_senders` is at least 1).
    pub fn new(mut cfg: ReplayConfig) -> Self {
        cfg.max_senders = cfg.max_senders.max(1);
        Self {
            cfg,
            senders: HashMap::with_capacity(cfg.max_senders.min(1024)),
            tick: 0,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ReplayConfig {
        &self.cfg
    }

    /// Number of senders currently tracked.
    pub fn tracked(&self) -> usize {
        self.senders.len()
    }

    /// Checks freshness only: |`timestamp_ns` − `now_ns`| ≤ `max_skew_ns`.
    pub fn check_fresh(
        &self,
        sender: SenderId,
        timestamp_ns: u64,
        now_ns: u64,
    ) -> Result<(), ReplayError> {
        let skew = i128::from(timestamp_ns) - i128::from(now_ns);
        if skew.unsigned_abs() > u128::from(self.cfg.max_skew_ns) {
            let skew_ms = (skew / 1_000_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
            return Err(ReplayError::Stale {
                sender,
                skew_ms: skew_ms as i64,
                limit_ms: self.cfg.max_skew_ns / 1_000_000,
            });
        }
        Ok(())
    }

    /// Full check for an authenticated packet: freshness, then the window;
    /// on success the sequence number is recorded.
    pub fn check_and_commit(
        &mut self,
        sender: SenderId,
        seq: u64,
        timestamp_ns: u64,
        now_ns: u64,
    ) -> Result<(), ReplayError> {
        self.check_fresh(sender, timestamp_ns, now_ns)?;
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.senders.get_mut(&sender) {
            slot.window.check(sender, seq)?;
            slot.window.commit(seq);
            slot.last_used = tick;
            return Ok(());
        }
        if self.senders.len() >= self.cfg.max_senders {
            let lru = self
                .senders
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            if let Some(id) = lru {
                tracing::debug!(evicted = id, "replay table full, evicting LRU sender");
                self.senders.remove(&id);
            }
        }
        let mut window = ReplayWindow::new();
        window.commit(seq);
        self.senders.insert(
            sender,
            Slot {
                window,
                last_used: tick,
            },
        );
        Ok(())
    }

    /// Same as [`ReplayGuard::check_and_commit`] reading time from `clock`.
    pub fn check_with_clock(
        &mut self,
        clock: &impl TimeNow,
        sender: SenderId,
        seq: u64,
        timestamp_ns: u64,
    ) -> Result<(), ReplayError> {
        self.check_and_commit(sender, seq, timestamp_ns, clock.now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_reorder_rejects_duplicates_and_old() {
        let mut w = ReplayWindow::new();
        let accept = |w: &mut ReplayWindow, s| {
            let r = w.check(1, s);
            if r.is_ok() {
                w.commit(s);
            }
            r
        };
        assert!(accept(&mut w, 10).is_ok());
        assert!(accept(&mut w, 12).is_ok());
        assert!(accept(&mut w, 11).is_ok()); // reordered, inside window
        assert_eq!(
            accept(&mut w, 11),
            Err(ReplayError::Duplicate { sender: 1, seq: 11 })
        );
        assert_eq!(
            accept(&mut w, 12),
            Err(ReplayError::Duplicate { sender: 1, seq: 12 })
        );
        assert!(accept(&mut w, 100).is_ok());
        assert!(accept(&mut w, 37).is_ok()); // age 63: last slot
        assert!(matches!(
            accept(&mut w, 36),
            Err(ReplayError::TooOld { .. })
        ));
        assert!(matches!(
            accept(&mut w, 12),
            Err(ReplayError::TooOld { .. })
        ));
        assert!(accept(&mut w, 1000).is_ok()); // big jump clears bitmap
        assert!(accept(&mut w, 999).is_ok());
        assert!(accept(&mut w, u64::MAX).is_ok());
        assert!(accept(&mut w, u64::MAX).is_err());
    }

    /// Model check: the window agrees with an exact set for every arrival
    /// order within its span.
    #[test]
    fn window_matches_exact_model() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (highest + 8).saturating_sub(x % 80);
            let expect_ok = if seen.is_empty() || s > highest {
                true
            } else {
                highest - s < 64 && !seen.contains(&s)
            };
            let got = w.check(1, s);
            assert_eq!(got.is_ok(), expect_ok, "seq {s} highest {highest}");
            if got.is_ok() {
                w.commit(s);
                seen.insert(s);
                highest = highest.max(s);
            }
        }
    }

    #[test]
    fn stale_timestamps_rejected_both_directions() {
        let g = ReplayGuard::new(ReplayConfig::default());
        let now = 1_000_000_000_000;
        assert!(g.check_fresh(1, now + 5_000_000_000, now).is_ok());
        assert!(g.check_fresh(1, now - 5_000_000_000, now).is_ok());
        assert!(matches!(
            g.check_fresh(1, now - 5_000_000_001, now),
            Err(ReplayError::Stale { skew_ms: -5000, .. })
        ));
        assert!(matches!(
            g.check_fresh(1, u64::MAX, 0),
            Err(ReplayError::Stale { .. })
        ));
        assert!(matches!(
            g.check_fresh(1, 0, u64::MAX),
            Err(ReplayError::Stale { .. })
        ));
    }

    #[test]
    fn stale_packet_does_not_advance_window() {
        let mut g = ReplayGuard::new(ReplayConfig::default());
        let now = 10_000_000_000_000;
        assert!(g.check_and_commit(1, u64::MAX - 1, 0, now).is_err());
        assert!(g.check_and_commit(1, 5, now, now).is_ok());
        assert!(g.check_and_commit(1, 6, now, now).is_ok());
    }

    #[test]
    fn sender_table_is_bounded_lru() {
        let mut g = ReplayGuard::new(ReplayConfig {
            max_skew_ns: 1,
            max_senders: 4,
        });
        for id in 0..4 {
            g.check_and_commit(id, 1, 0, 0).unwrap();
        }
        g.check_and_commit(0, 2, 0, 0).unwrap(); // 0 becomes most recent
        for id in 100..10_000 {
            g.check_and_commit(id, 1, 0, 0).unwrap();
            assert!(g.tracked() <= 4);
        }
        let mut g = ReplayGuard::new(ReplayConfig {
            max_skew_ns: 1,
            max_senders: 3,
        });
        for id in 0..3 {
            g.check_and_commit(id, 1, 0, 0).unwrap();
        }
        g.check_and_commit(0, 2, 0, 0).unwrap();
        g.check_and_commit(9, 1, 0, 0).unwrap(); // evicts 1 (LRU), keeps 0
        assert!(g.check_and_commit(0, 2, 0, 0).is_err(), "0 still tracked");
        assert!(g.check_and_commit(1, 1, 0, 0).is_ok(), "1 was evicted");
    }

    #[test]
    fn clock_hook() {
        let mut g = ReplayGuard::new(ReplayConfig::default());
        let clock = || 42_000_000_000u64;
        assert!(g.check_with_clock(&clock, 1, 1, 42_000_000_000).is_ok());
        assert!(g.check_with_clock(&clock, 1, 2, 1).is_err());
        assert!(crate::clock::WallClock.now_ns() > 1_600_000_000_000_000_000);
    }
}
