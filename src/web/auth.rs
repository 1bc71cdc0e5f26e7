//! Who may change things through the web server: the PIN, login sessions and the failure gate.
//!
//! The policy mirrors the OSC control port's shared secret: with `[web] pin` set, every
//! state-changing request must carry the PIN (`X-Convoy-Pin` header, for scripts and fleet
//! peers) or the session cookie handed out by `POST /api/login` (for the phone app); reads
//! are open or closed by `open_reads`. The PIN is kept only as a SHA-256 digest and compared
//! in constant time ([`SecretPrefix`]); sessions are one random 256-bit token per server
//! run, compared the same way. Wrong PINs are charged to a token bucket per source address
//! (IPv6 per /64), and once it is empty the address is refused with 429 before its guess is
//! even looked at, so the PIN cannot be brute-forced. A stale session cookie (after a
//! restart) is simply unauthorised, not charged: it is not a guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::security::policy::SecretPrefix;
use crate::security::ratelimit::{bucket_addr, Rate, TokenBucket};

/// Header carrying the PIN.
pub const PIN_HEADER: &str = "x-convoy-pin";
/// Cookie carrying the session token.
pub const SESSION_COOKIE: &str = "convoy_session";

/// Most source buckets remembered; beyond it the table is cleared (a flood of spoofed
/// addresses cannot grow memory, and a cleared bucket starts full but small).
const MAX_BUCKETS: usize = 4096;

/// Why a request was not authorised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No PIN and no session were presented.
    #[error("this bike's web control needs the PIN: log in first (POST /api/login) or send X-Convoy-Pin")]
    Required,
    /// The PIN was wrong.
    #[error("wrong PIN")]
    WrongPin,
    /// The session cookie is not this server's (it restarted, or the cookie is forged).
    #[error("session expired: log in again")]
    BadSession,
    /// Too many wrong PINs from this address.
    #[error("too many wrong PINs from {addr}; try again in {retry_s} s")]
    Locked {
        /// The (bucketed) source address.
        addr: IpAddr,
        /// Seconds until one more attempt is allowed.
        retry_s: u64,
    },
    /// The configured PIN is unusable.
    #[error("web.pin: {0}")]
    BadConfig(String),
    /// No randomness for session tokens.
    #[error("cannot read /dev/urandom for session tokens: {0}")]
    Random(String),
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Look (status, WebSocket, track downloads).
    Read,
    /// Change something (transport, lights, uploads).
    Write,
}

/// The auth settings from `[web]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// The PIN; empty means no PIN (everything open).
    pub pin: String,
    /// Reads need no PIN even when one is set.
    pub open_reads: bool,
    /// Wrong PINs allowed in a burst per address.
    pub login_burst: u32,
    /// Wrong PINs allowed per minute per address, sustained.
    pub login_per_minute: f64,
}

/// The web server's authorisation state.
#[derive(Debug)]
pub struct Auth {
    /// Digest of the PIN; None: no PIN configured.
    pin: Option<SecretPrefix>,
    /// Reads allowed without credentials.
    open_reads: bool,
    /// This run's session token (hex), and its digest for constant-time comparison.
    session: String,
    session_digest: [u8; 32],
    /// Wrong-PIN budget per source.
    rate: Rate,
    gate: Mutex<Gate>,
}

#[derive(Debug)]
struct Gate {
    epoch: Instant,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl Auth {
    /// Authorisation from config; fails on an unusable PIN or without randomness.
    pub fn new(cfg: &AuthConfig) -> Result<Auth, AuthError> {
        let pin = if cfg.pin.is_empty() {
            None
        } else {
            Some(SecretPrefix::new(&cfg.pin).map_err(|e| AuthError::BadConfig(e.to_string()))?)
        };
        let mut token = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut token))
            .map_err(|e| AuthError::Random(e.to_string()))?;
        let session: String = token.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Auth {
            pin,
            open_reads: cfg.open_reads,
            session_digest: Sha256::digest(session.as_bytes()).into(),
            session,
            rate: Rate::new(
                cfg.login_per_minute.max(0.0) / 60.0,
                f64::from(cfg.login_burst),
            ),
            gate: Mutex::new(Gate {
                epoch: Instant::now(),
                buckets: HashMap::new(),
            }),
        })
    }

    /// No PIN: everything open.
    pub fn open() -> Result<Auth, AuthError> {
        Self::new(&AuthConfig {
            pin: String::new(),
            open_reads: true,
            login_burst: 5,
            login_per_minute: 3.0,
        })
    }

    /// A PIN is configured.
    pub fn pin_required(&self) -> bool {
        self.pin.is_some()
    }

    /// Reads need no credentials.
    pub fn open_reads(&self) -> bool {
        self.open_reads || self.pin.is_none()
    }

    /// Authorise a request from `from` with `headers` for `access`.
    pub fn check(
        &self,
        from: IpAddr,
        headers: &HeaderMap,
        access: Access,
    ) -> Result<(), AuthError> {
        let Some(pin) = &self.pin else {
            return Ok(());
        };
        if access == Access::Read && self.open_reads {
            return Ok(());
        }
        if let Some(given) = headers.get(PIN_HEADER) {
            let given = given.to_str().unwrap_or_default();
            return self.try_pin(pin, from, given);
        }
        match session_cookie(headers) {
            Some(token) if self.is_session(token) => Ok(()),
            Some(_) => Err(AuthError::BadSession),
            None => Err(AuthError::Required),
        }
    }

    /// Check a PIN typed at the login screen; on success, the session token for the cookie.
    pub fn login(&self, from: IpAddr, given: &str) -> Result<&str, AuthError> {
        match &self.pin {
            None => Ok(&self.session),
            Some(pin) => self
                .try_pin(pin, from, given)
                .map(|()| self.session.as_str()),
        }
    }

    /// Whether `headers` carry a valid credential (never charges the gate).
    pub fn is_authorised(&self, headers: &HeaderMap) -> bool {
        self.pin.is_none() || session_cookie(headers).is_some_and(|t| self.is_session(t))
    }

    fn is_session(&self, token: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        d.ct_eq(&self.session_digest).into()
    }

    fn try_pin(&self, pin: &SecretPrefix, from: IpAddr, given: &str) -> Result<(), AuthError> {
        let key = bucket_addr(from);
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let now_ns = u64::try_from(gate.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if gate.buckets.len() >= MAX_BUCKETS && !gate.buckets.contains_key(&key) {
            gate.buckets.clear();
        }
        let rate = self.rate;
        let bucket = gate
            .buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(rate, now_ns));
        // Probe on a copy: only a wrong PIN spends the token.
        let mut probe = *bucket;
        if !probe.try_take(rate, now_ns) {
            let missing = 1.0 - probe.tokens();
            let retry_s = if rate.per_sec > 0.0 {
                (missing / rate.per_sec).ceil().max(1.0) as u64
            } else {
                u64::MAX
            };
            return Err(AuthError::Locked { addr: key, retry_s });
        }
        if pin.matches(given) {
            Ok(())
        } else {
            *bucket = probe;
            Err(AuthError::WrongPin)
        }
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth(pin: &str, open_reads: bool) -> Auth {
        Auth::new(&AuthConfig {
            pin: pin.into(),
            open_reads,
            login_burst: 3,
            login_per_minute: 60.0,
        })
        .expect("auth")
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("value"));
        h
    }

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 4, 20));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 4, 21));

    #[test]
    fn without_a_pin_everything_is_open() {
        let a = auth("", false);
        assert!(!a.pin_required());
        assert_eq!(a.check(ME, &HeaderMap::new(), Access::Write), Ok(()));
        assert!(a.open_reads());
    }

    #[test]
    fn writes_need_the_pin_or_a_session() {
        let a = auth("4321", true);
        let none = HeaderMap::new();
        assert_eq!(a.check(ME, &none, Access::Read), Ok(()));
        assert_eq!(a.check(ME, &none, Access::Write), Err(AuthError::Required));
        assert_eq!(
            a.check(ME, &with(PIN_HEADER, "4321"), Access::Write),
            Ok(())
        );
        assert_eq!(
            a.check(ME, &with(PIN_HEADER, "1234"), Access::Write),
            Err(AuthError::WrongPin)
        );
        let token = a.login(ME, "4321").expect("login").to_string();
        let cookie = with("cookie", &format!("theme=dark; {SESSION_COOKIE}={token}"));
        assert_eq!(a.check(ME, &cookie, Access::Write), Ok(()));
        assert!(a.is_authorised(&cookie));
        let stale = with("cookie", &format!("{SESSION_COOKIE}={}", "0".repeat(64)));
        assert_eq!(
            a.check(ME, &stale, Access::Write),
            Err(AuthError::BadSession)
        );
    }

    #[test]
    fn closed_reads_need_credentials_too() {
        let a = auth("4321", false);
        assert_eq!(
            a.check(ME, &HeaderMap::new(), Access::Read),
            Err(AuthError::Required)
        );
        assert_eq!(a.check(ME, &with(PIN_HEADER, "4321"), Access::Read), Ok(()));
    }

    #[test]
    fn wrong_pins_lock_out_the_source_even_for_the_right_pin() {
        let a = auth("4321", true);
        for _ in 0..3 {
            assert_eq!(a.login(ME, "0000"), Err(AuthError::WrongPin));
        }
        match a.login(ME, "4321") {
            Err(AuthError::Locked { addr, retry_s }) => {
                assert_eq!(addr, ME);
                assert!((1..=2).contains(&retry_s), "{retry_s}");
            }
            other => panic!("expected a lockout, got {other:?}"),
        }
        // Other addresses are unaffected; right PINs cost nothing.
        for _ in 0..10 {
            assert!(a.login(OTHER, "4321").is_ok());
        }
        // A stale cookie is not a guess and is never charged.
        let stale = with("cookie", &format!("{SESSION_COOKIE}=nope"));
        for _ in 0..10 {
            assert_eq!(
                a.check(OTHER, &stale, Access::Write),
                Err(AuthError::BadSession)
            );
        }
        assert!(a.login(OTHER, "4321").is_ok());
    }

    #[test]
    fn unusable_pins_are_config_errors() {
        let err = Auth::new(&AuthConfig {
            pin: "12/34".into(),
            open_reads: true,
            login_burst: 3,
            login_per_minute: 1.0,
        })
        .expect_err("slash");
        assert!(err.to_string().contains("web.pin"), "{err}");
    }
}
