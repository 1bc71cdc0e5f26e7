//! Token-bucket rate limiting per peer id and per source address, and one shared budget
//! for datagrams that have not authenticated.
//!
//! An address or a peer is charged only for datagrams that authenticated (and were
//! fresh, not replays): a source address costs nothing to forge, so a budget that
//! unauthenticated datagrams could drain would let anyone silence a real peer by spoofing
//! its address. What the unauthenticated cost is bounded by instead is the shared
//! [`RateLimitConfig::unauthenticated`] budget, which pays for the HMAC of every
//! well-formed envelope from an address that has not authenticated yet; an address that
//! has (it holds a bucket) is always verified, so no flood can starve it.
//!
//! Traffic is split into [`TrafficClass`]es (timing, membership heartbeats,
//! control commands, SNTP), each with its own configurable rate and burst, so
//! a flood of one kind cannot starve another. Buckets are kept per (key,
//! class) in a table of bounded size with O(1) approximately-LRU eviction
//! (two generations). There is no clock inside: every call takes the caller's `now_ns`, a
//! clock that goes backwards simply refills nothing, and tests are fully
//! deterministic. IPv6 sources are bucketed per /64 (one host usually owns a
//! whole /64) and IPv4-mapped IPv6 addresses per their IPv4 address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

use super::envelope::SenderId;

/// Kind of fleet traffic, each limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficClass {
    /// Clock/show timing beacons from the leader.
    Timing,
    /// Membership heartbeats.
    Membership,
    /// Control commands (play, stop, show changes…).
    Control,
    /// SNTP requests and replies.
    Sntp,
}

impl TrafficClass {
    /// All classes, in a fixed order.
    pub const ALL: [TrafficClass; 4] = [
        TrafficClass::Timing,
        TrafficClass::Membership,
        TrafficClass::Control,
        TrafficClass::Sntp,
    ];
}

/// Sustained rate and burst of one bucket. `per_sec = burst = 0` blocks the class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Bucket capacity (largest burst).
    pub burst: f64,
}

impl Rate {
    /// A rate of `per_sec` with capacity `burst`.
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst }
    }
}

/// One [`Rate`] per [`TrafficClass`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassRates {
    /// Timing traffic.
    pub timing: Rate,
    /// Membership heartbeats.
    pub membership: Rate,
    /// Control commands.
    pub control: Rate,
    /// SNTP.
    pub sntp: Rate,
}

impl ClassRates {
    /// The rate for `class`.
    pub fn get(&self, class: TrafficClass) -> Rate {
        match class {
            TrafficClass::Timing => self.timing,
            TrafficClass::Membership => self.membership,
            TrafficClass::Control => self.control,
            TrafficClass::Sntp => self.sntp,
        }
    }

    /// Every rate multiplied by `k` (used to derive per-address limits).
    pub fn scaled(&self, k: f64) -> Self {
        let s = |r: Rate| Rate::new(r.per_sec * k, r.burst * k);
        Self {
            timing: s(self.timing),
            membership: s(self.membership),
            control: s(self.control),
            sntp: s(self.sntp),
        }
    }
}

impl Default for ClassRates {
    fn default() -> Self {
        Self {
            timing: Rate::new(50.0, 100.0),
            membership: Rate::new(5.0, 10.0),
            control: Rate::new(20.0, 40.0),
            sntp: Rate::new(10.0, 20.0),
        }
    }
}

/// Rate-limiter settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateLimitConfig {
    /// Limits per authenticated peer id.
    pub per_peer: ClassRates,
    /// Limits per source address (charged after authentication).
    pub per_ip: ClassRates,
    /// All datagrams from addresses that have not authenticated yet, together: how many
    /// HMACs a flood of well-formed forgeries can cost per second.
    #[serde(default = "default_unauthenticated")]
    pub unauthenticated: Rate,
    /// Bound on tracked (peer, class) buckets.
    pub max_peer_buckets: usize,
    /// Bound on tracked (address, class) buckets.
    pub max_ip_buckets: usize,
}

fn default_unauthenticated() -> Rate {
    Rate::new(200.0, 400.0)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let per_peer = ClassRates::default();
        Self {
            per_peer,
            per_ip: per_peer.scaled(2.0),
            unauthenticated: default_unauthenticated(),
            max_peer_buckets: 1024,
            max_ip_buckets: 4096,
        }
    }
}

/// A token bucket driven by caller-supplied time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` at time `now_ns`.
    pub fn full(rate: Rate, now_ns: u64) -> Self {
        Self {
            tokens: rate.burst.max(0.0),
            last_ns: now_ns,
        }
    }

    /// Refills for the time elapsed since the last call and takes one token.
    pub fn try_take(&mut self, rate: Rate, now_ns: u64) -> bool {
        if now_ns > self.last_ns {
            let elapsed = (now_ns - self.last_ns) as f64;
            let refill = elapsed * rate.per_sec.max(0.0) / 1e9;
            self.tokens = (self.tokens + refill).min(rate.burst.max(0.0));
            self.last_ns = now_ns;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens currently available (as of the last call).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// Buckets keyed by `(K, TrafficClass)` in a bounded, approximately-LRU
/// table: two generations of at most `max_entries / 2` each; when the young
/// generation fills, the old one is dropped wholesale and the young one ages.
/// A bucket touched in the old generation moves to the young one. Every
/// operation is O(1), so a flood of spoofed source addresses costs constant
/// work per packet, and memory never exceeds `max_entries` buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    rates: ClassRates,
    generation_cap: usize,
    young: HashMap<(K, TrafficClass), TokenBucket>,
    old: HashMap<(K, TrafficClass), TokenBucket>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// A limiter with `rates` tracking at most `max_entries` buckets (≥ 2).
    pub fn new(rates: ClassRates, max_entries: usize) -> Self {
        let generation_cap = (max_entries / 2).max(1);
        Self {
            rates,
            generation_cap,
            young: HashMap::with_capacity(generation_cap.min(4096)),
            old: HashMap::new(),
        }
    }

    /// Takes one token for `key` in `class`; false means rate limited.
    pub fn allow(&mut self, key: K, class: TrafficClass, now_ns: u64) -> bool {
        let rate = self.rates.get(class);
        if let Some(b) = self.young.get_mut(&(key, class)) {
            return b.try_take(rate, now_ns);
        }
        let mut bucket = self
            .old
            .remove(&(key, class))
            .unwrap_or_else(|| TokenBucket::full(rate, now_ns));
        let ok = bucket.try_take(rate, now_ns);
        if self.young.len() >= self.generation_cap {
            self.old = std::mem::take(&mut self.young);
            self.young.reserve(self.generation_cap.min(4096));
        }
        self.young.insert((key, class), bucket);
        ok
    }

    /// Is a bucket tracked for `key` in `class` (without touching it)?
    pub fn contains(&self, key: K, class: TrafficClass) -> bool {
        self.young.contains_key(&(key, class)) || self.old.contains_key(&(key, class))
    }

    /// Number of buckets currently tracked.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// True when no bucket is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which limit refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateLimited {
    /// The source address exceeded its budget for the class.
    #[error("source address {addr} exceeded its {class:?} rate")]
    Address {
        /// Source address (normalised bucket key).
        addr: IpAddr,
        /// Traffic class.
        class: TrafficClass,
    },
    /// The authenticated peer exceeded its budget for the class.
    #[error("peer {peer} exceeded its {class:?} rate")]
    Peer {
        /// Peer vehicle id.
        peer: SenderId,
        /// Traffic class.
        class: TrafficClass,
    },
    /// Datagrams from addresses that have not authenticated exceeded their shared budget.
    #[error("unauthenticated datagrams exceeded their shared budget")]
    Unauthenticated,
}

/// The limiters the fleet sockets use: per address and per peer, both charged after the
/// HMAC, and the shared budget that pays for verifying datagrams from addresses that have
/// not authenticated (bounding the CPU a flood of forgeries can cost).
#[derive(Debug, Clone)]
pub struct FleetRateLimiter {
    ips: RateLimiter<IpAddr>,
    peers: RateLimiter<SenderId>,
    unauthenticated: (Rate, TokenBucket),
}

impl FleetRateLimiter {
    /// Limiters built from `cfg`.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self {
            ips: RateLimiter::new(cfg.per_ip, cfg.max_ip_buckets),
            peers: RateLimiter::new(cfg.per_peer, cfg.max_peer_buckets),
            unauthenticated: (
                cfg.unauthenticated,
                TokenBucket::full(cfg.unauthenticated, 0),
            ),
        }
    }

    /// Has `addr` sent an authentic datagram of `class` lately (it holds an address
    /// bucket; only authentic datagrams make one)?
    pub fn is_known(&self, addr: IpAddr, class: TrafficClass) -> bool {
        self.ips.contains(bucket_addr(addr), class)
    }

    /// Takes one token from the shared budget of datagrams not yet authenticated.
    pub fn check_unauthenticated(&mut self, now_ns: u64) -> Result<(), RateLimited> {
        let (rate, bucket) = &mut self.unauthenticated;
        if bucket.try_take(*rate, now_ns) {
            Ok(())
        } else {
            Err(RateLimited::Unauthenticated)
        }
    }

    /// Charges one authentic packet to the source address.
    pub fn check_addr(
        &mut self,
        addr: IpAddr,
        class: TrafficClass,
        now_ns: u64,
    ) -> Result<(), RateLimited> {
        let addr = bucket_addr(addr);
        if self.ips.allow(addr, class, now_ns) {
            Ok(())
        } else {
            Err(RateLimited::Address { addr, class })
        }
    }

    /// Charges one packet to the authenticated peer.
    pub fn check_peer(
        &mut self,
        peer: SenderId,
        class: TrafficClass,
        now_ns: u64,
    ) -> Result<(), RateLimited> {
        if self.peers.allow(peer, class, now_ns) {
            Ok(())
        } else {
            Err(RateLimited::Peer { peer, class })
        }
    }

    /// (address buckets, peer buckets) currently tracked.
    pub fn sizes(&self) -> (usize, usize) {
        (self.ips.len(), self.peers.len())
    }
}

/// Normalises an address to its bucket key: IPv4-mapped → IPv4, IPv6 → /64.
pub fn bucket_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn bucket_burst_then_rate() {
        let r = Rate::new(10.0, 5.0);
        let mut b = TokenBucket::full(r, 0);
        assert_eq!((0..20).filter(|_| b.try_take(r, 0)).count(), 5);
        // 1 s later: 10 tokens accrue but the cap is 5.
        assert_eq!((0..20).filter(|_| b.try_take(r, SEC)).count(), 5);
        // 100 ms later: exactly one.
        assert_eq!((0..20).filter(|_| b.try_take(r, SEC + SEC / 10)).count(), 1);
        // Clock going backwards refills nothing and does not panic.
        assert_eq!((0..20).filter(|_| b.try_take(r, 0)).count(), 0);
        let zero = Rate::new(0.0, 0.0);
        let mut z = TokenBucket::full(zero, 0);
        assert!(!z.try_take(zero, u64::MAX));
    }

    #[test]
    fn classes_and_keys_are_independent() {
        let mut l = RateLimiter::new(ClassRates::default(), 64);
        let burst = ClassRates::default().control.burst as usize;
        let passed = (0..1000)
            .filter(|_| l.allow(1u32, TrafficClass::Control, 0))
            .count();
        assert_eq!(passed, burst);
        assert!(l.allow(1u32, TrafficClass::Timing, 0));
        assert!(l.allow(2u32, TrafficClass::Control, 0));
    }

    #[test]
    fn recently_used_buckets_survive_eviction() {
        let mut l = RateLimiter::new(ClassRates::default(), 8);
        // Drain key 0, then keep touching it while 1000 other keys stream by.
        while l.allow(0u32, TrafficClass::Control, 0) {}
        for k in 1..1000u32 {
            assert!(
                !l.allow(0, TrafficClass::Control, 0),
                "drained bucket was evicted"
            );
            l.allow(k, TrafficClass::Control, 0);
        }
    }

    #[test]
    fn table_is_bounded() {
        let mut l = RateLimiter::new(ClassRates::default(), 100);
        for k in 0..100_000u32 {
            l.allow(k, TrafficClass::Timing, u64::from(k));
            assert!(l.len() <= 100);
        }
    }

    #[test]
    fn ipv6_bucketed_per_64_and_mapped_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(bucket_addr(a), bucket_addr(b));
        let m: IpAddr = "::ffff:192.168.4.7".parse().unwrap();
        assert_eq!(bucket_addr(m), "192.168.4.7".parse::<IpAddr>().unwrap());
        let mut f = FleetRateLimiter::new(&RateLimitConfig {
            per_ip: ClassRates::default().scaled(0.02), // control burst 0.8 → blocked
            ..RateLimitConfig::default()
        });
        assert!(f.check_addr(a, TrafficClass::Control, 0).is_err());
    }
}
