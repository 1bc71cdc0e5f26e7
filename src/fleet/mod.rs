//! Fleet membership: who is on the ride, who leads, and in what order commands apply.
//! Bikes find each other with mDNS ([`discovery`]) and a UDP broadcast heartbeat that
//! works where multicast is filtered; every heartbeat ([`wire`]) is sealed in a
//! `security::envelope` and checked by the shared `security::Guard`. A pure state machine
//! ([`election`]) runs a Bully election with terms over those heartbeats — peers expire
//! after a timeout, a dead leader is replaced, healed partitions keep exactly one leader,
//! a manual override wins — and [`lamport`] orders competing commands. What bikes tell
//! each other besides heartbeats travels with the timeline: the replicated manual light
//! state and cues ([`lights`], last-writer-wins registers on Lamport stamps) and control
//! commands a follower relays to its leader ([`relay`]), and the Link beat grid the leader
//! follows ([`link`]). The async driver
//! ([`membership`]) owns the socket and publishes a [`FleetView`] on a `watch` channel;
//! the node reads it to pick its sync role and leader address, and fills
//! `control::PeerState` from it; [`netif`] turns the limited broadcast into each
//! interface's own. Protocol and rules: `docs/fleet.md`.

pub mod discovery;
pub mod election;
pub mod lamport;
pub mod lights;
pub mod link;
pub mod membership;
pub mod netif;
pub mod relay;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use election::{Election, Placement, Rank};
pub use lamport::{LamportClock, Ordered, Stamp};
pub use membership::{FleetHandle, Membership};
pub use wire::AdvertisedRole;

use crate::config::Config;
use crate::control::PeerState;
use crate::security::SenderId;

/// Why membership could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The membership socket could not be set up.
    #[error("cannot bind the fleet membership socket on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A `[fleet]` value is unusable.
    #[error("fleet.{key}: {message}")]
    Config {
        /// Key under `[fleet]`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The vehicle id cannot be carried in heartbeats.
    #[error("vehicle id {id:?}: {source}")]
    Id {
        /// The id.
        id: String,
        /// Why.
        source: wire::WireError,
    },
    /// The sealer signs as another vehicle than `MemberInfo::id`.
    #[error("the sealer signs as sender {sealer} but vehicle {id:?} is sender {expected}")]
    Sender {
        /// Vehicle id.
        id: String,
        /// `sender_id(id)`.
        expected: SenderId,
        /// What the sealer carries.
        sealer: SenderId,
    },
    /// mDNS could not start.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The membership task has stopped.
    #[error("fleet membership is not running")]
    Stopped,
}

/// The envelope sender id of a vehicle (one mapping for the whole fleet channel, so the
/// whitelist and the heartbeat binding agree).
pub use crate::security::sender_id;

/// Resolved `[fleet]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Advertise and browse with mDNS.
    pub mdns: bool,
    /// Address the membership socket binds to.
    pub bind: IpAddr,
    /// Membership (heartbeat) port.
    pub port: u16,
    /// Where heartbeats go: broadcast addresses (or unicast peers) with ports.
    pub destinations: Vec<SocketAddr>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// A peer silent this long is gone.
    pub peer_timeout: Duration,
    /// Wait this long after start before claiming leadership.
    pub startup_grace: Duration,
    /// Hierarchical mode: followers per publisher (0 = flat).
    pub group_size: usize,
}

impl FleetConfig {
    /// From a validated configuration (`[fleet]` and `sync.bind`).
    pub fn from_config(c: &Config) -> Result<Self, FleetError> {
        let f = &c.fleet;
        let bad = |key: &'static str, message: String| FleetError::Config { key, message };
        let bind: IpAddr = c
            .sync
            .bind
            .parse()
            .map_err(|_| bad("bind", format!("{:?} is not an IP address", c.sync.bind)))?;
        let destinations = f
            .broadcast
            .iter()
            .map(|d| {
                parse_destination(d, f.port).ok_or_else(|| {
                    bad(
                        "broadcast",
                        format!("{d:?} is not an address like 192.168.4.255 or 10.0.0.255:9125"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            mdns: f.mdns,
            bind,
            port: f.port,
            destinations,
            heartbeat: Duration::from_millis(f.heartbeat_ms),
            peer_timeout: Duration::from_millis(f.peer_timeout_ms),
            startup_grace: Duration::from_millis(f.startup_grace_ms),
            group_size: f.group_size as usize,
        })
    }
}

/// `10.0.0.255` (the fleet port) or `10.0.0.255:9200`.
pub fn parse_destination(s: &str, default_port: u16) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

/// What this node is and advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Vehicle id.
    pub id: String,
    /// Election priority (0: never lead unless forced).
    pub priority: u8,
    /// Manual override: lead regardless of priority (`fleet.leader = true`).
    pub leader: bool,
    /// Sync role it runs now.
    pub role: AdvertisedRole,
    /// Timeline port it serves when leading.
    pub sync_port: u16,
    /// SNTP port it serves when leading (0: none).
    pub sntp_port: u16,
    /// Software version.
    pub version: String,
    /// Fleet key fingerprint (advertised over mDNS; peers with another one are ignored).
    pub fingerprint: String,
    /// It has tracks to play (set by the node; ranks it above equal priorities).
    pub has_tracks: bool,
}

impl MemberInfo {
    /// This node as configured (`[node]`, `[sync]`, `[fleet]`), with the key fingerprint.
    pub fn from_config(c: &Config, fingerprint: String) -> Self {
        MemberInfo {
            id: c.node_id(),
            priority: u8::try_from(c.fleet.priority).unwrap_or(u8::MAX),
            leader: c.fleet.leader,
            role: match c.sync.role {
                crate::config::Role::Solo => AdvertisedRole::Solo,
                crate::config::Role::Leader => AdvertisedRole::Leader,
                crate::config::Role::Follower => AdvertisedRole::Follower,
                // Until the election has spoken the node plays alone.
                crate::config::Role::Auto => AdvertisedRole::Solo,
            },
            sync_port: c.sync.osc_port,
            sntp_port: c.sync.sntp_port,
            version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint,
            has_tracks: false,
        }
    }
}

/// One member of the fleet as this node sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Member {
    /// Vehicle id.
    pub id: String,
    /// Address its heartbeats come from (loopback for this node itself).
    pub addr: IpAddr,
    /// Its membership port.
    pub port: u16,
    /// Its timeline port.
    pub sync_port: u16,
    /// Its SNTP port (0: none).
    pub sntp_port: u16,
    /// Its priority.
    pub priority: u8,
    /// Leadership forced on it.
    pub forced: bool,
    /// It has tracks to play.
    pub has_tracks: bool,
    /// It claims to lead.
    pub claims: bool,
    /// Its term.
    pub term: u64,
    /// Sync role it runs.
    pub role: AdvertisedRole,
    /// Its playback error against the timeline, ms.
    pub playback_error_ms: Option<f64>,
    /// Its software version.
    pub version: String,
    /// Whom it follows.
    pub follows: String,
    /// Monotonic time it was last heard, ns (`clock::mono_ns`).
    pub last_heard_ns: u64,
}

impl Member {
    /// The node-status view of this member at monotonic time `now_ns`.
    pub fn peer_state(&self, now_ns: u64) -> PeerState {
        PeerState {
            id: self.id.clone(),
            addr: self.addr.to_string(),
            role: if self.claims {
                "leader".to_string()
            } else if self.role == AdvertisedRole::Solo {
                "solo".to_string()
            } else {
                "follower".to_string()
            },
            last_heard_ms: now_ns.saturating_sub(self.last_heard_ns) / 1_000_000,
            playback_error_ms: self.playback_error_ms,
            version: self.version.clone(),
        }
    }
}

/// Counters of the membership layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetStats {
    /// Heartbeats sent (each destination counted).
    pub sent: u64,
    /// Heartbeats accepted.
    pub received: u64,
    /// Datagrams the security guard rejected (forged, unsigned, replayed, stale, flooding).
    pub rejected: u64,
    /// Authenticated datagrams whose payload was not a valid heartbeat, or whose id does
    /// not match the envelope's sender.
    pub malformed: u64,
    /// Our own broadcasts heard back (dropped before the guard).
    pub own: u64,
    /// mDNS records of other fleets or malformed ones (ignored).
    pub foreign: u64,
    /// Heartbeat sends that failed.
    pub send_errors: u64,
    /// Datagrams carrying this node's own id from another address: another bike uses
    /// the same vehicle id.
    pub duplicate_id: u64,
    /// Authentic heartbeats of a better-ranked leader taken although they failed the
    /// freshness check, while no fresh one came: how a bike whose clock is far off joins.
    pub stale_leader: u64,
}

/// The fleet as this node sees it, published after every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    /// This node's id.
    pub me: String,
    /// The leader (this node, at loopback, when it leads); `None` while nobody leads.
    pub leader: Option<Member>,
    /// This node leads.
    pub i_am_leader: bool,
    /// Term in force.
    pub term: u64,
    /// This node's Lamport clock.
    pub lamport: u64,
    /// Live peers (not this node), by id.
    pub peers: Vec<Member>,
    /// Hierarchical mode: whom this node takes the timeline from (the leader when flat);
    /// `None` when it leads or nobody does.
    pub upstream: Option<Member>,
    /// Hierarchical mode: this node re-publishes the timeline (leader or sub-leader).
    pub publishes: bool,
    /// Counters.
    pub stats: FleetStats,
}

use serde::Serialize;

impl FleetView {
    /// `control::PeerState`s of the live peers at monotonic time `now_ns`.
    pub fn peer_states(&self, now_ns: u64) -> Vec<PeerState> {
        self.peers.iter().map(|m| m.peer_state(now_ns)).collect()
    }

    /// Where to reach the leader's timeline, unless this node leads.
    pub fn leader_sync_addr(&self) -> Option<SocketAddr> {
        match &self.leader {
            Some(m) if !self.i_am_leader => Some(SocketAddr::new(m.addr, m.sync_port)),
            _ => None,
        }
    }

    /// The loopback address used for this node itself in [`Member::addr`].
    pub const SELF_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_take_the_fleet_port_by_default() {
        assert_eq!(
            parse_destination("10.77.0.255", 9125),
            Some("10.77.0.255:9125".parse().unwrap())
        );
        assert_eq!(
            parse_destination("127.0.0.1:7000", 9125),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(parse_destination("bikes.local", 9125), None);
    }

    #[test]
    fn config_resolves_and_peer_state_converts() {
        let c = Config::load(
            None,
            &["fleet.broadcast=[\"10.77.0.255\", \"127.0.0.1:9\"]".into()],
        )
        .unwrap();
        let f = FleetConfig::from_config(&c).unwrap();
        assert_eq!(f.destinations.len(), 2);
        assert_eq!(f.destinations[0].port(), c.fleet.port);
        assert!(f.peer_timeout > f.heartbeat);
        let m = Member {
            id: "b".into(),
            addr: "10.77.0.2".parse().unwrap(),
            port: 1,
            sync_port: 2,
            sntp_port: 3,
            priority: 1,
            forced: false,
            has_tracks: false,
            claims: true,
            term: 4,
            role: AdvertisedRole::Leader,
            playback_error_ms: Some(0.5),
            version: "0.1.0".into(),
            follows: "b".into(),
            last_heard_ns: 1_000_000_000,
        };
        let p = m.peer_state(1_250_000_000);
        assert_eq!(
            (
                p.id.as_str(),
                p.addr.as_str(),
                p.role.as_str(),
                p.last_heard_ms
            ),
            ("b", "10.77.0.2", "leader", 250)
        );
        assert_eq!(p.playback_error_ms, Some(0.5));
    }
}
