//! Lamport clocks and a last-writer-wins register, so competing commands end the same
//! everywhere. Every fleet message carries its sender's [`LamportClock`] value; a node
//! [`observe`](LamportClock::observe)s what it receives and [`tick`](LamportClock::tick)s
//! for what it originates. A command is stamped `(lamport, origin id)`; an [`Ordered`]
//! register keeps the value with the greatest [`Stamp`], so two bikes that change the
//! pattern at once converge on the same one whatever order the messages arrive in.

use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free Lamport clock, shared between the membership task and command senders.
#[derive(Debug, Default)]
pub struct LamportClock(AtomicU64);

impl LamportClock {
    /// A clock starting at `value`.
    pub fn new(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    /// The current value (for outgoing heartbeats).
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A local event: advances and returns the new value.
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel).saturating_add(1)
    }

    /// A received value: moves past it (`max(local, seen) + 1`) and returns the new value.
    pub fn observe(&self, seen: u64) -> u64 {
        let step = |c: u64| Some(c.max(seen).saturating_add(1));
        let prev = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
            .unwrap_or_else(|c| c);
        prev.max(seen).saturating_add(1)
    }

    /// Stamps a command this node originates.
    pub fn stamp(&self, origin: &str) -> Stamp {
        Stamp {
            lamport: self.tick(),
            origin: origin.to_string(),
        }
    }
}

/// Total order of fleet commands: Lamport time, then the originating vehicle id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Stamp {
    /// Lamport time at the origin.
    pub lamport: u64,
    /// Originating vehicle id (the tie-break).
    pub origin: String,
}

/// A last-writer-wins register ordered by [`Stamp`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ordered<T> {
    value: T,
    stamp: Option<Stamp>,
}

impl<T> Ordered<T> {
    /// A register holding `initial`, older than any stamped write.
    pub fn new(initial: T) -> Self {
        Self {
            value: initial,
            stamp: None,
        }
    }

    /// Applies a write; returns whether it won (was newer than the current value).
    pub fn apply(&mut self, stamp: Stamp, value: T) -> bool {
        if self.stamp.as_ref().is_some_and(|s| *s >= stamp) {
            return false;
        }
        self.stamp = Some(stamp);
        self.value = value;
        true
    }

    /// The current value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The stamp of the current value (`None`: still the initial one).
    pub fn stamp(&self) -> Option<&Stamp> {
        self.stamp.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_past_what_it_sees() {
        let c = LamportClock::new(3);
        assert_eq!(c.tick(), 4);
        assert_eq!(c.observe(10), 11);
        assert_eq!(c.observe(2), 12, "an old value still advances");
        assert_eq!(c.now(), 12);
        assert_eq!(c.stamp("a").lamport, 13);
    }

    #[test]
    fn causally_later_commands_win() {
        // b saw a's command before issuing its own: b's stamp is greater.
        let a = LamportClock::new(0);
        let b = LamportClock::new(0);
        let first = a.stamp("zzz");
        b.observe(first.lamport);
        let second = b.stamp("aaa");
        assert!(second > first, "even though its id sorts lower");
    }

    #[test]
    fn concurrent_writes_converge_in_any_order() {
        // Two bikes change the pattern at once (same Lamport time); five nodes receive the
        // writes in every order, with duplicates and stale copies, and end up equal.
        let writes = [
            (
                Stamp {
                    lamport: 7,
                    origin: "bike-2".into(),
                },
                "chase",
            ),
            (
                Stamp {
                    lamport: 7,
                    origin: "bike-9".into(),
                },
                "rainbow",
            ),
            (
                Stamp {
                    lamport: 5,
                    origin: "bike-4".into(),
                },
                "strobe",
            ),
        ];
        let orders: [&[usize]; 5] = [
            &[0, 1, 2],
            &[1, 0, 2],
            &[2, 1, 0],
            &[1, 1, 0, 2],
            &[2, 0, 1, 0],
        ];
        let finals: Vec<&str> = orders
            .iter()
            .map(|order| {
                let mut r = Ordered::new("off");
                for &i in order.iter() {
                    r.apply(writes[i].0.clone(), writes[i].1);
                }
                *r.get()
            })
            .collect();
        assert!(finals.iter().all(|v| *v == "rainbow"), "{finals:?}");
    }

    #[test]
    fn a_duplicate_or_older_write_loses() {
        let mut r = Ordered::new(0);
        let s = Stamp {
            lamport: 1,
            origin: "a".into(),
        };
        assert!(r.apply(s.clone(), 1));
        assert!(!r.apply(s.clone(), 2), "same stamp: first write stays");
        assert!(!r.apply(
            Stamp {
                lamport: 0,
                origin: "z".into()
            },
            3
        ));
        assert_eq!((*r.get(), r.stamp()), (1, Some(&s)));
    }

    #[test]
    fn concurrent_ticks_are_unique() {
        let c = std::sync::Arc::new(LamportClock::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).map(|_| c.tick()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }
}
