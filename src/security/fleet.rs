//! A node's fleet security context: the keyring from config, its own sender id and
//! sequence numbers, and the shared [`Guard`] every fleet socket checks datagrams with.
//!
//! Vehicle ids are strings in config and on the command line; envelopes carry a fixed
//! 32-bit sender id, derived here as the FNV-1a hash of the id (collisions among a
//! fleet's few dozen names are vanishingly unlikely, and the whitelist is hashed the same
//! way). Sequence numbers start from the wall clock in ns at startup, so a restarted node
//! is not taken for a replayer by peers that remember it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::{ControlSection, SecurityConfig};

use super::envelope::{EnvelopeError, Sealer, SenderId};
use super::guard::{Guard, GuardConfig, Rejection};
use super::key::{FleetKey, KeyError, Keyring};
use super::policy::{ControlPolicyConfig, ControlPortPolicy};
use super::ratelimit::TrafficClass;
use super::replay::ReplayConfig;
use super::stats::{SecurityStats, StatsSnapshot};

impl ControlSection {
    /// The policy this section describes.
    pub fn policy(&self) -> Result<ControlPortPolicy, super::policy::PolicyError> {
        ControlPortPolicy::from_config(&ControlPolicyConfig {
            enabled: self.enabled,
            allow: self.allow.clone(),
            secret: (!self.secret.is_empty()).then(|| self.secret.clone()),
        })
    }
}

impl SecurityConfig {
    /// Checks what can be checked without reading key material; `(key, problem)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(self.max_skew_s.is_finite() && (0.1..=3600.0).contains(&self.max_skew_s)) {
            return Err((
                "security.max_skew_s".into(),
                format!("{} is outside 0.1..=3600", self.max_skew_s),
            ));
        }
        if !self.previous_key_file.is_empty() && self.previous_key_id == self.key_id {
            return Err((
                "security.previous_key_id".into(),
                format!("must differ from security.key_id ({})", self.key_id),
            ));
        }
        self.control
            .policy()
            .map_err(|e| ("security.control".into(), e.to_string()))?;
        Ok(())
    }

    /// Loads the keyring: `key_file`, else the `key_env` variable; plus the previous key.
    pub fn keyring(&self) -> Result<Keyring, SecurityError> {
        let current = if !self.key_file.is_empty() {
            FleetKey::from_file(self.key_id, &self.key_file)?
        } else if !self.key_env.is_empty() && std::env::var_os(&self.key_env).is_some() {
            FleetKey::from_env(self.key_id, &self.key_env)?
        } else {
            return Err(SecurityError::NoKey {
                env: self.key_env.clone(),
            });
        };
        if self.previous_key_file.is_empty() {
            return Ok(Keyring::new(current));
        }
        let previous = FleetKey::from_file(self.previous_key_id, &self.previous_key_file)?;
        Ok(Keyring::with_previous(current, previous)?)
    }
}

/// Why fleet security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// No key configured.
    #[error(
        "fleet roles need a pre-shared key: set security.key_file, or the {env} environment \
         variable (hex or base64); `convoy tool keygen FILE` makes one"
    )]
    NoKey {
        /// The variable that was looked at.
        env: String,
    },
    /// The key could not be loaded.
    #[error("fleet key: {0}")]
    Key(#[from] KeyError),
    /// The control policy is invalid.
    #[error("security.control: {0}")]
    Policy(#[from] super::policy::PolicyError),
}

/// A guard for the external control port of a node that has no fleet key (a solo bike):
/// it applies the control policy and rate limits; it can verify no fleet datagram (its
/// key is random and never leaves the process).
pub fn control_guard(
    cfg: &SecurityConfig,
    stats: Arc<SecurityStats>,
) -> Result<Guard, SecurityError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| KeyError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    let ring = Keyring::new(FleetKey::from_bytes(0, &bytes)?);
    Ok(Guard::new(ring, &GuardConfig::default())
        .with_control_policy(cfg.control.policy()?)
        .with_stats(stats))
}

/// The 32-bit envelope sender id of a vehicle id (FNV-1a).
pub fn sender_id(vehicle: &str) -> SenderId {
    vehicle.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A datagram that passed the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    /// Sender id.
    pub sender: SenderId,
    /// The authenticated payload.
    pub payload: &'a [u8],
}

/// Sealing and checking for one node; cheap to share (`Arc`).
#[derive(Debug)]
pub struct FleetSecurity {
    guard: Arc<Mutex<Guard>>,
    sealer: Mutex<Sealer>,
    fingerprint: String,
}

impl FleetSecurity {
    /// Set up from config for vehicle `me`, counting into `stats`.
    pub fn from_config(
        cfg: &SecurityConfig,
        me: &str,
        stats: Arc<SecurityStats>,
    ) -> Result<FleetSecurity, SecurityError> {
        Ok(Self::with_guard(Self::guard_from_config(cfg, stats)?, me))
    }

    /// The guard [`FleetSecurity::from_config`] builds: key, whitelist, freshness, replay
    /// windows and rate limits from `[security]`, counting into `stats`. The node gives
    /// fleet membership a guard of its own, because heartbeats carry their own envelope
    /// sequence (their sealer is the membership task's), and one replay window per sender
    /// cannot hold two sequences.
    pub fn guard_from_config(
        cfg: &SecurityConfig,
        stats: Arc<SecurityStats>,
    ) -> Result<Guard, SecurityError> {
        let keyring = cfg.keyring()?;
        let guard_cfg = GuardConfig {
            replay: ReplayConfig {
                max_skew_ns: (cfg.max_skew_s * 1e9) as u64,
                ..ReplayConfig::default()
            },
            whitelist: cfg.whitelist.iter().map(|v| sender_id(v)).collect(),
            ..GuardConfig::default()
        };
        Ok(Guard::new(keyring, &guard_cfg)
            .with_control_policy(cfg.control.policy()?)
            .with_stats(stats))
    }

    /// Wrap an existing guard (tests, tools).
    pub fn with_guard(guard: Guard, me: &str) -> FleetSecurity {
        let fingerprint = guard.keyring().current().fingerprint();
        let first_seq = crate::clock::realtime_ns().max(1) as u64;
        FleetSecurity {
            guard: Arc::new(Mutex::new(guard)),
            sealer: Mutex::new(Sealer::new(sender_id(me), first_seq)),
            fingerprint,
        }
    }

    /// Seal `payload` stamped with `now_ns` (our fleet/wall clock, ns since the epoch).
    pub fn seal(&self, payload: &[u8], now_ns: u64) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::with_capacity(payload.len() + super::envelope::OVERHEAD);
        let guard = lock(&self.guard);
        lock(&self.sealer).seal_into(guard.keyring(), now_ns, payload, &mut out)?;
        Ok(out)
    }

    /// Authenticate a datagram of a known class; every rejection is counted. `now_ns` is
    /// our fleet time for the freshness check, or `None` when we do not know fleet time
    /// yet (then only the signature and the per-sender sequence window protect). SNTP is
    /// never checked for freshness: a node's clock is not yet disciplined when it asks for
    /// time, and the NTP originate timestamp, echoed by the server and matched by the
    /// client, already makes a replayed reply useless.
    pub fn open<'a>(
        &self,
        src: SocketAddr,
        bytes: &'a [u8],
        class: TrafficClass,
        now_ns: Option<u64>,
    ) -> Result<Verified<'a>, Rejection> {
        let stamped = bytes
            .get(18..26)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        let now_ns = match now_ns {
            Some(now) if class != TrafficClass::Sntp => now,
            _ => stamped,
        };
        let a = lock(&self.guard).check_class(src, bytes, class, now_ns)?;
        Ok(Verified {
            sender: a.envelope.sender,
            payload: a.envelope.payload,
        })
    }

    /// The guard, for the control port and the counters.
    pub fn guard(&self) -> &Arc<Mutex<Guard>> {
        &self.guard
    }

    /// Counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        lock(&self.guard).stats().snapshot()
    }

    /// Fingerprint of the current key (safe to show and advertise).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(me: &str, key: &[u8]) -> FleetSecurity {
        let ring = Keyring::new(FleetKey::from_bytes(1, key).expect("key"));
        FleetSecurity::with_guard(Guard::new(ring, &GuardConfig::default()), me)
    }

    #[test]
    fn sender_ids_are_stable_and_distinct() {
        assert_eq!(sender_id(""), 0x811c_9dc5);
        assert_eq!(sender_id("a"), 0xe40c_292c); // FNV-1a test vector
        let ids: std::collections::HashSet<_> =
            (0..200).map(|i| sender_id(&format!("bike{i}"))).collect();
        assert_eq!(ids.len(), 200);
    }

    #[test]
    fn sealed_by_one_opened_by_another_and_replays_refused() {
        let key = [7u8; 32];
        let (a, b) = (sec("lead", &key), sec("bike2", &key));
        let src: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let now = 1_700_000_000_000_000_000;
        let bytes = a.seal(b"/convoy/sync/timeline", now).expect("seal");
        let v = b
            .open(src, &bytes, TrafficClass::Timing, Some(now))
            .expect("verifies");
        assert_eq!(v.payload, b"/convoy/sync/timeline");
        assert_eq!(v.sender, sender_id("lead"));
        assert!(b
            .open(src, &bytes, TrafficClass::Timing, Some(now))
            .is_err());
        let stranger = sec("lead", &[9u8; 32]);
        let forged = stranger.seal(b"x", now).expect("seal");
        assert!(b
            .open(src, &forged, TrafficClass::Timing, Some(now))
            .is_err());
        assert_eq!(b.stats().total_rejected(), 2);
    }

    #[test]
    fn config_without_a_key_says_how_to_get_one() {
        let cfg: crate::config::Config = crate::config::Config::builtin().expect("defaults");
        let mut s = cfg.security.clone();
        s.key_env = "CONVOY_TEST_SURELY_UNSET".into();
        let e = s.keyring().expect_err("no key");
        assert!(e.to_string().contains("keygen"), "{e}");
    }
}
