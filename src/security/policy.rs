//! Who may talk to a bike: the vehicle whitelist and the control-port policy.
//!
//! [`VehicleWhitelist`] restricts authenticated fleet traffic to known vehicle
//! ids (an empty list allows every key holder). [`ControlPortPolicy`] governs
//! the external OSC control port, whose clients (TouchOSC, DAWs) cannot sign:
//! it is either disabled, or limited to source subnets ([`Cidr`], IPv4 and
//! IPv6; an empty list allows nobody, write `0.0.0.0/0` and `::/0` to allow
//! all), optionally also requiring a shared secret as the first address
//! segment (`/<secret>/convoy/play`), which is compared in constant time (via
//! SHA-256 digests, so not even its length leaks) and stripped before
//! dispatch. Without a secret only loopback may send commands: another host
//! gets the read methods ([`OPEN_READS`]) and nothing else. The secret travels
//! in clear text: it stops casual strangers, not an eavesdropper on the same
//! WiFi.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::envelope::SenderId;

/// Errors from policy checks and policy parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The vehicle id is not on the whitelist.
    #[error("vehicle {0} is not whitelisted")]
    NotWhitelisted(SenderId),
    /// The external control port is disabled.
    #[error("external control port is disabled")]
    ControlDisabled,
    /// The source address is outside every allowed subnet.
    #[error("control source {0} is not in an allowed subnet")]
    SourceNotAllowed(IpAddr),
    /// The secret address prefix is missing or wrong.
    #[error("control message lacks the shared-secret address prefix")]
    BadSecret,
    /// A command from another host while no secret is configured.
    #[error(
        "control command from {0} refused: with no security.control.secret set only this \
         machine may send commands; set security.control.secret and prefix addresses with \
         it (`/SECRET/convoy/play`) to control from other hosts"
    )]
    SecretRequired(IpAddr),
    /// A CIDR string did not parse.
    #[error("invalid CIDR {input:?}: {reason}")]
    BadCidr {
        /// The input text.
        input: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The configured secret is unusable.
    #[error("invalid control secret: {0}")]
    BadSecretConfig(&'static str),
}

/// Set of vehicle ids allowed to send fleet traffic; empty allows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VehicleWhitelist {
    ids: HashSet<SenderId>,
}

impl VehicleWhitelist {
    /// A whitelist of `ids` (empty = allow every authenticated sender).
    pub fn new(ids: impl IntoIterator<Item = SenderId>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
        }
    }

    /// Ok when `id` may send.
    pub fn check(&self, id: SenderId) -> Result<(), PolicyError> {
        if self.ids.is_empty() || self.ids.contains(&id) {
            Ok(())
        } else {
            Err(PolicyError::NotWhitelisted(id))
        }
    }
}

/// An IPv4 or IPv6 network such as `192.168.4.0/24` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a network, masking host bits; `prefix` must fit the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, PolicyError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(PolicyError::BadCidr {
                input: format!("{addr}/{prefix}"),
                reason: "prefix length too large",
            });
        }
        let net = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
        };
        Ok(Self { net, prefix })
    }

    /// True when `addr` lies in this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`, as seen on dual-stack sockets) match IPv4 networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = PolicyError;

    /// Parses `addr/prefix`, or a bare address as a single host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| PolicyError::BadCidr {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad("not an IP address"))?;
        let prefix = match p {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) => p.parse::<u8>().map_err(|_| bad("prefix is not a number"))?,
        };
        Self::new(addr, prefix).map_err(|_| bad("prefix length too large"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// A shared secret expected as the first OSC address segment. Only its
/// SHA-256 digest is kept; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPrefix {
    digest: [u8; 32],
}

impl SecretPrefix {
    /// A secret segment: non-empty, at most 128 bytes, printable ASCII
    /// without `/` or OSC pattern characters.
    pub fn new(secret: &str) -> Result<Self, PolicyError> {
        crate::config::check_secret(secret).map_err(PolicyError::BadSecretConfig)?;
        Ok(Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Constant-time check of one address segment.
    pub fn matches(&self, segment: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(segment.as_bytes()).into();
        d.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for SecretPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPrefix(<redacted>)")
    }
}

/// Methods another host may call without the secret: reads, answered no larger than
/// the request until the sender proves its address (`osc::dispatch`).
pub const OPEN_READS: &[&str] = &["/convoy/status", "/convoy/subscribe", "/convoy/unsubscribe"];

/// Loopback, IPv4-mapped loopback included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Serde-friendly form of [`ControlPortPolicy`] for the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlPolicyConfig {
    /// False disables the external control port entirely.
    pub enabled: bool,
    /// Allowed source networks (`"192.168.4.0/24"`, `"fd00::/8"`, bare addresses).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Optional shared-secret first address segment.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Policy for unsigned OSC arriving on the external control port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ControlPortPolicy {
    /// Every external control message is refused.
    #[default]
    Disabled,
    /// Accepted from these networks, optionally requiring a secret prefix.
    Allow {
        /// Allowed source networks (empty = nobody).
        subnets: Vec<Cidr>,
        /// Required first address segment, if any.
        secret: Option<SecretPrefix>,
    },
}

impl ControlPortPolicy {
    /// Builds the policy from its config form.
    pub fn from_config(cfg: &ControlPolicyConfig) -> Result<Self, PolicyError> {
        if !cfg.enabled {
            return Ok(Self::Disabled);
        }
        let subnets = cfg
            .allow
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        let secret = cfg.secret.as_deref().map(SecretPrefix::new).transpose()?;
        Ok(Self::Allow { subnets, secret })
    }

    /// Every accepted message carries the secret.
    pub fn requires_secret(&self) -> bool {
        matches!(
            self,
            Self::Allow {
                secret: Some(_),
                ..
            }
        )
    }

    /// Checks a control message from `src` with OSC address `address`; on
    /// success returns the address to dispatch (secret segment stripped).
    pub fn check<'a>(&self, src: IpAddr, address: &'a str) -> Result<&'a str, PolicyError> {
        let Self::Allow { subnets, secret } = self else {
            return Err(PolicyError::ControlDisabled);
        };
        if !subnets.iter().any(|n| n.contains(src)) {
            return Err(PolicyError::SourceNotAllowed(src));
        }
        let Some(secret) = secret else {
            if is_loopback(src) || OPEN_READS.contains(&address) {
                return Ok(address);
            }
            return Err(PolicyError::SecretRequired(src));
        };
        let rest = address.strip_prefix('/').ok_or(PolicyError::BadSecret)?;
        let (segment, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if secret.matches(segment) && !tail.is_empty() {
            Ok(tail)
        } else {
            Err(PolicyError::BadSecret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let n: Cidr = "192.168.4.0/24".parse().unwrap();
        assert!(n.contains(ip("192.168.4.1")));
        assert!(n.contains(ip("192.168.4.255")));
        assert!(!n.contains(ip("192.168.5.1")));
        assert!(n.contains(ip("::ffff:192.168.4.9")));
        assert!(!n.contains(ip("fe80::1")));
        let m: Cidr = "192.168.4.77/24".parse().unwrap();
        assert_eq!(m.to_string(), "192.168.4.0/24");
        let v6: Cidr = "fd00:abcd::/32".parse().unwrap();
        assert!(v6.contains(ip("fd00:abcd:1::5")));
        assert!(!v6.contains(ip("fd00:abce::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(ip("8.8.8.8")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        let host: Cidr = "10.1.2.3".parse().unwrap();
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
        for bad in [
            "",
            "192.168.4.0/33",
            "::/129",
            "foo/8",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn whitelist() {
        assert!(VehicleWhitelist::default().check(99).is_ok());
        let w = VehicleWhitelist::new([1, 2]);
        assert!(w.check(1).is_ok());
        assert_eq!(w.check(3), Err(PolicyError::NotWhitelisted(3)));
    }

    #[test]
    fn control_policy() {
        assert_eq!(
            ControlPortPolicy::Disabled.check(ip("127.0.0.1"), "/convoy/play"),
            Err(PolicyError::ControlDisabled)
        );
        let p = ControlPortPolicy::from_config(&ControlPolicyConfig {
            enabled: true,
            allow: vec!["192.168.4.0/24".into(), "fd00::/8".into()],
            secret: Some("s3cret".into()),
        })
        .unwrap();
        let lan = ip("192.168.4.20");
        assert_eq!(p.check(lan, "/s3cret/convoy/play"), Ok("/convoy/play"));
        assert_eq!(p.check(ip("fd12::1"), "/s3cret/go"), Ok("/go"));
        assert_eq!(p.check(lan, "/convoy/play"), Err(PolicyError::BadSecret));
        assert_eq!(
            p.check(lan, "/s3cre/convoy/play"),
            Err(PolicyError::BadSecret)
        );
        assert_eq!(p.check(lan, "/s3cret"), Err(PolicyError::BadSecret));
        assert_eq!(p.check(lan, "s3cret/x"), Err(PolicyError::BadSecret));
        assert_eq!(p.check(lan, "/*/convoy/play"), Err(PolicyError::BadSecret));
        assert_eq!(
            p.check(ip("10.0.0.1"), "/s3cret/convoy/play"),
            Err(PolicyError::SourceNotAllowed(ip("10.0.0.1")))
        );
        assert!(!format!("{p:?}").contains("s3cret"));
        let open = ControlPortPolicy::from_config(&ControlPolicyConfig {
            enabled: true,
            allow: vec!["0.0.0.0/0".into(), "::/0".into()],
            secret: None,
        })
        .unwrap();
        // Issue 21 item 8: without a secret another host reads but does not command.
        assert_eq!(
            open.check(lan, "/convoy/play"),
            Err(PolicyError::SecretRequired(lan))
        );
        assert_eq!(open.check(lan, "/convoy/status"), Ok("/convoy/status"));
        assert_eq!(
            open.check(lan, "/convoy/subscribe"),
            Ok("/convoy/subscribe")
        );
        assert_eq!(
            open.check(lan, "/convoy/*"),
            Err(PolicyError::SecretRequired(lan))
        );
        assert_eq!(
            open.check(ip("127.0.0.1"), "/convoy/play"),
            Ok("/convoy/play")
        );
        assert_eq!(open.check(ip("::1"), "/convoy/play"), Ok("/convoy/play"));
        assert_eq!(
            open.check(ip("::ffff:127.0.0.1"), "/convoy/play"),
            Ok("/convoy/play")
        );
        assert!(PolicyError::SecretRequired(lan)
            .to_string()
            .contains("set security.control.secret"));
        assert!(!open.requires_secret() && p.requires_secret());
        let nobody = ControlPortPolicy::from_config(&ControlPolicyConfig {
            enabled: true,
            ..Default::default()
        })
        .unwrap();
        assert!(nobody.check(lan, "/convoy/play").is_err());
        assert!(SecretPrefix::new("a/b").is_err());
        assert!(SecretPrefix::new("").is_err());
    }
}
