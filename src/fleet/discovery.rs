//! Zero-config discovery over mDNS/DNS-SD (`mdns-sd`): each node advertises
//! `<id>._convoy._udp.local.` on its membership port with a TXT record (vehicle id, role,
//! protocol version, priority, sync and SNTP ports, key fingerprint — never the key) and
//! browses for the others. mDNS is unauthenticated, so what it finds is only an address
//! to greet: a discovered peer gets an immediate unicast hello, and counts as a member
//! only once its sealed heartbeat verifies. Peers advertising another key fingerprint or
//! protocol are ignored (another fleet on the same WiFi).

use std::collections::HashMap;
use std::net::IpAddr;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

use super::wire::{AdvertisedRole, PROTOCOL};

/// The DNS-SD service type Convoy advertises.
pub const SERVICE_TYPE: &str = "_convoy._udp.local.";

/// Why mDNS discovery failed or a record was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon could not start or refused a request.
    #[error("mDNS: {0}")]
    Daemon(String),
    /// A TXT key is missing or malformed.
    #[error("mDNS record {instance}: TXT `{key}` {why}")]
    Txt {
        /// Service instance.
        instance: String,
        /// TXT key.
        key: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// What this node advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Vehicle id (also the instance name).
    pub id: String,
    /// Sync role it runs.
    pub role: AdvertisedRole,
    /// Election priority.
    pub priority: u8,
    /// Membership (heartbeat) port.
    pub port: u16,
    /// Timeline port.
    pub sync_port: u16,
    /// SNTP port.
    pub sntp_port: u16,
    /// Fleet key fingerprint (`FleetKey::fingerprint`).
    pub fingerprint: String,
}

/// A peer found by browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Vehicle id.
    pub id: String,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// Its membership port.
    pub port: u16,
    /// Its key fingerprint.
    pub fingerprint: String,
    /// Its membership protocol.
    pub proto: u8,
    /// Its advertised priority.
    pub priority: u8,
    /// Its timeline port.
    pub sync_port: u16,
    /// Its SNTP port.
    pub sntp_port: u16,
    /// Its sync role.
    pub role: AdvertisedRole,
}

impl Discovered {
    /// Whether it belongs to our fleet (same key fingerprint, same protocol).
    pub fn same_fleet(&self, fingerprint: &str) -> bool {
        self.fingerprint == fingerprint && self.proto == PROTOCOL
    }
}

/// The TXT record for `a`.
pub fn txt(a: &Advert) -> Vec<(&'static str, String)> {
    vec![
        ("id", a.id.clone()),
        ("role", a.role.as_str().to_string()),
        ("proto", PROTOCOL.to_string()),
        ("prio", a.priority.to_string()),
        ("sync", a.sync_port.to_string()),
        ("sntp", a.sntp_port.to_string()),
        ("fp", a.fingerprint.clone()),
    ]
}

/// Parses a resolved record (TXT key → value, membership port, addresses).
pub fn parse(
    instance: &str,
    props: &HashMap<String, String>,
    port: u16,
    addrs: Vec<IpAddr>,
) -> Result<Discovered, DiscoveryError> {
    let get = |key: &'static str| {
        props.get(key).ok_or(DiscoveryError::Txt {
            instance: instance.to_string(),
            key,
            why: "is missing",
        })
    };
    let bad = |key: &'static str, why: &'static str| DiscoveryError::Txt {
        instance: instance.to_string(),
        key,
        why,
    };
    let id = get("id")?.clone();
    super::wire::check_id(&id).map_err(|_| bad("id", "is empty or too long"))?;
    Ok(Discovered {
        id,
        addrs,
        port,
        fingerprint: get("fp")?.clone(),
        proto: get("proto")?
            .parse()
            .map_err(|_| bad("proto", "is not a number"))?,
        priority: get("prio")?
            .parse()
            .map_err(|_| bad("prio", "is not 0..=255"))?,
        sync_port: get("sync")?
            .parse()
            .map_err(|_| bad("sync", "is not a port"))?,
        sntp_port: get("sntp")?
            .parse()
            .map_err(|_| bad("sntp", "is not a port"))?,
        role: get("role")?
            .parse()
            .map_err(|_| bad("role", "is not solo, leader or follower"))?,
    })
}

/// A running mDNS responder and browser.
pub struct Mdns {
    daemon: ServiceDaemon,
    fullname: String,
    events: mdns_sd::Receiver<ServiceEvent>,
}

impl std::fmt::Debug for Mdns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdns")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Mdns {
    /// Starts the daemon, advertises `a` and browses for the fleet.
    pub fn start(a: &Advert) -> Result<Self, DiscoveryError> {
        let err = |e: mdns_sd::Error| DiscoveryError::Daemon(e.to_string());
        let daemon = ServiceDaemon::new().map_err(err)?;
        let info = service_info(a)?;
        let fullname = info.get_fullname().to_string();
        daemon.register(info).map_err(err)?;
        let events = daemon.browse(SERVICE_TYPE).map_err(err)?;
        Ok(Self {
            daemon,
            fullname,
            events,
        })
    }

    /// Re-advertises after a change (role, priority).
    pub fn update(&self, a: &Advert) -> Result<(), DiscoveryError> {
        self.daemon
            .register(service_info(a)?)
            .map_err(|e| DiscoveryError::Daemon(e.to_string()))
    }

    /// The next resolved peer record (malformed ones are returned as errors, our own
    /// record is skipped). `None` when the daemon stopped.
    pub async fn next(&self) -> Option<Result<Discovered, DiscoveryError>> {
        loop {
            let ev = self.events.recv_async().await.ok()?;
            if let ServiceEvent::ServiceResolved(r) = ev {
                if r.get_fullname() == self.fullname {
                    continue;
                }
                let props: HashMap<String, String> = r
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_string(), p.val_str().to_string()))
                    .collect();
                let addrs = r.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                return Some(parse(r.get_fullname(), &props, r.get_port(), addrs));
            }
        }
    }

    /// Withdraws the advertisement and stops the daemon.
    pub fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_millis(200));
        }
        let _ = self.daemon.shutdown();
    }
}

fn service_info(a: &Advert) -> Result<ServiceInfo, DiscoveryError> {
    let host = format!("{}.local.", a.id);
    let props = txt(a);
    ServiceInfo::new(SERVICE_TYPE, &a.id, &host, "", a.port, &props[..])
        .map(ServiceInfo::enable_addr_auto)
        .map_err(|e| DiscoveryError::Daemon(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> Advert {
        Advert {
            id: "bike-3".into(),
            role: AdvertisedRole::Follower,
            priority: 7,
            port: 9125,
            sync_port: 9123,
            sntp_port: 9124,
            fingerprint: "0123456789abcdef".into(),
        }
    }

    fn props(a: &Advert) -> HashMap<String, String> {
        txt(a)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn txt_round_trips_and_never_holds_a_key() {
        let a = advert();
        let d = parse("bike-3", &props(&a), a.port, vec![]).unwrap();
        assert_eq!(
            (d.id.as_str(), d.priority, d.sync_port, d.sntp_port, d.role),
            ("bike-3", 7, 9123, 9124, AdvertisedRole::Follower)
        );
        assert!(d.same_fleet("0123456789abcdef"));
        assert!(!d.same_fleet("fedcba9876543210"));
        let keys: Vec<&str> = txt(&a).iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["id", "role", "proto", "prio", "sync", "sntp", "fp"]);
        assert!(service_info(&a).is_ok());
    }

    #[test]
    fn bad_txt_names_the_key() {
        let a = advert();
        let mut p = props(&a);
        p.remove("fp");
        assert!(matches!(
            parse("x", &p, 1, vec![]),
            Err(DiscoveryError::Txt { key: "fp", .. })
        ));
        let mut p = props(&a);
        p.insert("prio".into(), "300".into());
        let e = parse("x", &p, 1, vec![]).unwrap_err().to_string();
        assert!(e.contains("prio"), "{e}");
        let mut p = props(&a);
        p.insert("role".into(), "king".into());
        assert!(matches!(
            parse("x", &p, 1, vec![]),
            Err(DiscoveryError::Txt { key: "role", .. })
        ));
    }
}
