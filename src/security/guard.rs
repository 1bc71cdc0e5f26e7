//! The single entry point that fleet sockets call for every datagram.
//!
//! [`Guard::check`] runs, in order: the envelope's structure (size, magic,
//! version, key id, length; no crypto, so junk costs next to nothing), the shared
//! budget of unauthenticated datagrams for a source address that has not
//! authenticated yet (bounding the HMACs a flood of forgeries can cost), HMAC
//! verification, the vehicle whitelist, timestamp freshness and the replay
//! window (which records the sequence number), and finally the per-address and
//! per-peer rate limits. Both limits count only datagrams that authenticated
//! and were neither stale nor replayed: a spoofed source address or a replayed
//! copy cannot drain a genuine peer's budget, and an address that has
//! authenticated is always verified, never refused for others' junk. Every
//! rejection is counted in the shared [`SecurityStats`] under exactly one reason. [`Guard::check_control`] applies
//! the control-port policy and an address rate limit to unsigned OSC.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::envelope::{self, EnvelopeError, Opened, HEADER_LEN};
use super::key::Keyring;
use super::policy::{ControlPortPolicy, PolicyError, VehicleWhitelist};
use super::ratelimit::{FleetRateLimiter, RateLimitConfig, RateLimited, TrafficClass};
use super::replay::{ReplayConfig, ReplayError, ReplayGuard};
use super::stats::{RejectReason, SecurityStats};

/// Settings for a [`Guard`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GuardConfig {
    /// Replay window and freshness settings.
    pub replay: ReplayConfig,
    /// Rate limits.
    pub rate: RateLimitConfig,
    /// Allowed vehicle ids (empty = every key holder).
    pub whitelist: Vec<u32>,
}

/// Why [`Guard`] dropped a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Envelope parsing or authentication failed.
    #[error("from {src}: {source}")]
    Envelope {
        /// Source socket address.
        src: SocketAddr,
        /// The envelope error.
        #[source]
        source: EnvelopeError,
    },
    /// Rate limit exceeded.
    #[error("from {src}: {source}")]
    RateLimited {
        /// Source socket address.
        src: SocketAddr,
        /// Which limit.
        #[source]
        source: RateLimited,
    },
    /// Replay or freshness failure.
    #[error("from {src}: {source}")]
    Replay {
        /// Source socket address.
        src: SocketAddr,
        /// The replay error.
        #[source]
        source: ReplayError,
    },
    /// Whitelist or control-port policy refusal.
    #[error("from {src}: {source}")]
    Policy {
        /// Source socket address.
        src: SocketAddr,
        /// The policy error.
        #[source]
        source: PolicyError,
    },
}

impl Rejection {
    /// The stats bucket this rejection is counted under.
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::Envelope { source, .. } => match source {
                EnvelopeError::BadMagic { .. } => RejectReason::BadMagic,
                EnvelopeError::BadTag { .. } => RejectReason::BadTag,
                EnvelopeError::UnknownKeyId(_) => RejectReason::UnknownKey,
                EnvelopeError::TooShort { .. }
                | EnvelopeError::UnsupportedVersion(_)
                | EnvelopeError::LengthMismatch { .. }
                | EnvelopeError::Oversized { .. } => RejectReason::Malformed,
            },
            Rejection::RateLimited { .. } => RejectReason::RateLimited,
            Rejection::Replay { source, .. } => match source {
                ReplayError::Stale { .. } => RejectReason::Stale,
                ReplayError::Duplicate { .. } | ReplayError::TooOld { .. } => RejectReason::Replay,
            },
            Rejection::Policy { source, .. } => match source {
                PolicyError::NotWhitelisted(_) => RejectReason::NotWhitelisted,
                _ => RejectReason::ControlDenied,
            },
        }
    }
}

/// An authenticated, fresh, non-replayed, within-rate datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// Where it came from.
    pub src: SocketAddr,
    /// The class it was charged to.
    pub class: TrafficClass,
    /// The opened envelope (sender, seq, timestamp, payload).
    pub envelope: Opened<'a>,
}

/// Classifies a datagram's (not yet authenticated) payload into a traffic class.
pub type Classifier = Box<dyn Fn(&[u8]) -> TrafficClass + Send + Sync>;

/// Composition of envelope, replay, rate-limit, whitelist and stats.
pub struct Guard {
    keyring: Keyring,
    replay: ReplayGuard,
    rate: FleetRateLimiter,
    whitelist: VehicleWhitelist,
    control: ControlPortPolicy,
    stats: Arc<SecurityStats>,
    classifier: Classifier,
    /// The "set a control secret" warning was logged (once per guard).
    warned_no_secret: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("keyring", &self.keyring)
            .field("replay", &self.replay)
            .field("whitelist", &self.whitelist)
            .field("control", &self.control)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard with fresh stats; [`Guard::check`] charges everything to
    /// [`TrafficClass::Control`] until a classifier is installed.
    pub fn new(keyring: Keyring, cfg: &GuardConfig) -> Self {
        Self {
            keyring,
            replay: ReplayGuard::new(cfg.replay),
            rate: FleetRateLimiter::new(&cfg.rate),
            whitelist: VehicleWhitelist::new(cfg.whitelist.iter().copied()),
            control: ControlPortPolicy::Disabled,
            stats: Arc::new(SecurityStats::new()),
            classifier: Box::new(|_| TrafficClass::Control),
            warned_no_secret: false,
        }
    }

    /// Installs the payload classifier used by [`Guard::check`].
    pub fn with_classifier(
        mut self,
        f: impl Fn(&[u8]) -> TrafficClass + Send + Sync + 'static,
    ) -> Self {
        self.classifier = Box::new(f);
        self
    }

    /// Installs the external control-port policy (default: disabled).
    pub fn with_control_policy(mut self, policy: ControlPortPolicy) -> Self {
        self.control = policy;
        self
    }

    /// Shares counters with another component (e.g. the status server).
    pub fn with_stats(mut self, stats: Arc<SecurityStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<SecurityStats> {
        &self.stats
    }

    /// The keyring (to sign outgoing datagrams).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Mutable keyring, for rotation.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// Checks a datagram, classifying it with the installed classifier.
    pub fn check<'a>(
        &mut self,
        src: SocketAddr,
        bytes: &'a [u8],
        now_ns: u64,
    ) -> Result<Accepted<'a>, Rejection> {
        let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
        let class = (self.classifier)(payload);
        self.check_class(src, bytes, class, now_ns)
    }

    /// Checks a datagram whose class the caller knows (e.g. per socket).
    pub fn check_class<'a>(
        &mut self,
        src: SocketAddr,
        bytes: &'a [u8],
        class: TrafficClass,
        now_ns: u64,
    ) -> Result<Accepted<'a>, Rejection> {
        let r = self.check_inner(src, bytes, class, now_ns);
        match &r {
            Ok(a) => self.stats.record_accepted(a.envelope.with_previous_key),
            Err(e) => {
                self.stats.record(e.reason());
                tracing::trace!(error = %e, "fleet datagram rejected");
            }
        }
        r
    }

    fn check_inner<'a>(
        &mut self,
        src: SocketAddr,
        bytes: &'a [u8],
        class: TrafficClass,
        now_ns: u64,
    ) -> Result<Accepted<'a>, Rejection> {
        let limited = |source| Rejection::RateLimited { src, source };
        envelope::precheck(&self.keyring, bytes)
            .map_err(|source| Rejection::Envelope { src, source })?;
        if !self.rate.is_known(src.ip(), class) {
            self.rate.check_unauthenticated(now_ns).map_err(limited)?;
        }
        let env = envelope::open(&self.keyring, bytes)
            .map_err(|source| Rejection::Envelope { src, source })?;
        self.whitelist
            .check(env.sender)
            .map_err(|source| Rejection::Policy { src, source })?;
        self.replay
            .check_and_commit(env.sender, env.seq, env.timestamp_ns, now_ns)
            .map_err(|source| Rejection::Replay { src, source })?;
        self.rate
            .check_addr(src.ip(), class, now_ns)
            .map_err(limited)?;
        self.rate
            .check_peer(env.sender, class, now_ns)
            .map_err(limited)?;
        Ok(Accepted {
            src,
            class,
            envelope: env,
        })
    }

    /// Checks an unsigned control-port OSC message: address rate limit
    /// (control class), then the control-port policy. Returns the address to
    /// dispatch (secret prefix stripped). Rejections are counted.
    pub fn check_control<'a>(
        &mut self,
        src: SocketAddr,
        address: &'a str,
        now_ns: u64,
    ) -> Result<&'a str, Rejection> {
        let ip: IpAddr = src.ip();
        let r = self
            .rate
            .check_addr(ip, TrafficClass::Control, now_ns)
            .map_err(|source| Rejection::RateLimited { src, source })
            .and_then(|()| {
                self.control
                    .check(ip, address)
                    .map_err(|source| Rejection::Policy { src, source })
            });
        if let Err(e) = &r {
            self.stats.record(e.reason());
            if let Rejection::Policy {
                source: PolicyError::SecretRequired(_),
                ..
            } = e
            {
                if !std::mem::replace(&mut self.warned_no_secret, true) {
                    tracing::warn!("{e}");
                }
            }
        }
        r
    }

    /// The control-port policy alone, without the rate limit: for a followed DAW's
    /// transport reports (`osc.follow`), which Reaper sends ~30 times a second, several
    /// to a bundle, and which cost a state update each (docs/osc.md, "DAW follow").
    /// Returns the address to dispatch (secret prefix stripped), or `None` when the policy
    /// refuses it (not counted here: the caller then asks [`Guard::check_control`], which
    /// counts it).
    pub fn control_policy_allows<'a>(&self, src: SocketAddr, address: &'a str) -> Option<&'a str> {
        self.control.check(src.ip(), address).ok()
    }

    /// Is a control sender at `ip` to be believed about its address: loopback (the kernel
    /// drops loopback sources arriving from off-host), or every accepted message carries
    /// the control secret?
    pub fn control_trusted(&self, ip: IpAddr) -> bool {
        super::policy::is_loopback(ip) || self.control.requires_secret()
    }
}
