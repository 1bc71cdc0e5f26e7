//! Role switching at run time. The player is made once; what changes with the role is the
//! half of the playback loop it runs (the [`SwitchController`](crate::sync::SwitchController),
//! told through the [`FleetClock`]'s basis) and the network tasks around it ([`Roles`]): a leader serves SNTP and publishes the
//! timeline, a follower disciplines its clock and follows a leader's timeline, a solo node
//! runs neither. In hierarchical mode a sub-leader is a follower that also serves its
//! group ([`Roles::serve_group`]): SNTP from its disciplined estimate of fleet time
//! (its [`FleetClock`] while it follows) and the timeline it follows, re-published unchanged; a
//! follower whose upstream changes re-homes like one that changes leader. Leadership moves without a jump. A follower that is promoted keeps
//! serving the fleet time it had disciplined (its last offset and frequency, free-running
//! from then on, [`FleetClock::serving_clock`]), keeps the timeline's track and epoch, and only
//! re-measures its anchor from its own playback — so the other followers' clock estimates
//! and PLLs carry on undisturbed. A follower that changes leader keeps its clock filter and
//! its lock, and plays on them until the new leader's timeline arrives. A leader that is
//! demoted (a better-ranked leader after a partition heals) starts a fresh clock filter
//! against its new leader and lets the PLL converge; it seeks only if the error really
//! exceeds `sync.hard_seek_ms`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::{bind, NodeError};
use crate::clock::{mono_ns, FleetClock};
use crate::config::{Role, SyncConfig};
use crate::control::NodeHandle;
use crate::fleet::lights::FleetLights;
use crate::fleet::relay;
use crate::library::Tracks;
use crate::security::FleetSecurity;
use crate::sync::filter::{ClockFilter, FilterConfig};
use crate::sync::follow::{Applied, FollowConfig};
use crate::sync::follower::{self, Link};
use crate::sync::pll::NetState;
use crate::sync::publisher::{publish_timeline, Publisher};
use crate::sync::sntp::{self, SntpClient};
use crate::sync::{Counters, Deck, Transport};

/// The role the node runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// Plays alone; serves nothing.
    Solo,
    /// Serves SNTP and the timeline.
    Leader,
    /// Follows the leader whose timeline is at this address.
    Follower(SocketAddr),
}

impl Current {
    /// As a config role (for status).
    pub fn role(self) -> Role {
        match self {
            Current::Solo => Role::Solo,
            Current::Leader => Role::Leader,
            Current::Follower(_) => Role::Follower,
        }
    }
}

/// Everything the role tasks are made from.
pub struct Ctx {
    /// `[sync]`.
    pub sync: SyncConfig,
    /// Address the sockets bind to.
    pub bind_ip: IpAddr,
    /// Vehicle id.
    pub id: String,
    /// Fleet security (None: solo only).
    pub security: Option<Arc<FleetSecurity>>,
    /// Fleet time as this node knows it (its basis says whether it leads or follows).
    pub fleet: FleetClock,
    /// Shared with the controllers.
    pub net: Arc<Mutex<NetState>>,
    /// The player and the tracks, as the sync state machines drive them.
    pub deck: Arc<dyn Deck>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The node's own handle (relayed commands come in through it).
    pub handle: NodeHandle,
    /// Wakes the publisher.
    pub wake: Arc<Notify>,
    /// The playlist a leader or solo node plays.
    pub playlist: Vec<String>,
    /// Opens (and fetches) tracks; a follower fetches from its leader.
    pub tracks: Tracks,
    /// The web port every bike serves on (shared tracks come from the leader's; 0: none).
    pub web_port: u16,
    /// The fleet's light state.
    pub lights: Arc<FleetLights>,
    /// `show.cue_lead_ms`: a manual cue fires this long after it is given, on every bike.
    pub cue_lead_ns: i64,
}

/// The running role: its tasks, the leader's transport or the follower's relay.
pub struct Roles {
    /// What everything is made from.
    pub ctx: Ctx,
    /// The role now.
    pub current: Current,
    /// A leader's or solo node's authority over what plays.
    pub transport: Option<Transport>,
    /// A follower's relay to its leader: sealed and sent as they are (relayed commands,
    /// stamped light fields).
    pub relay: Option<mpsc::Sender<Vec<u8>>>,
    /// Relayed requests waiting for the leader's verdict (kept across roles: a verdict
    /// that no longer comes times out).
    pub pending: Arc<relay::Pending>,
    tasks: Vec<JoinHandle<()>>,
    /// A sub-leader's serving tasks (SNTP and re-publishing), apart from its follower
    /// tasks so either can change without the other.
    group: Vec<JoinHandle<()>>,
    filter: Arc<Mutex<ClockFilter>>,
    applied: Arc<Mutex<Applied>>,
}

impl Roles {
    /// Nothing running yet; call [`Roles::solo`], [`Roles::lead`] or [`Roles::follow`].
    pub fn new(ctx: Ctx) -> Self {
        let filter = Arc::new(Mutex::new(ClockFilter::new(FilterConfig::from_config(
            &ctx.sync,
        ))));
        Roles {
            ctx,
            current: Current::Solo,
            transport: None,
            relay: None,
            pending: Arc::default(),
            tasks: Vec::new(),
            group: Vec::new(),
            filter,
            applied: Arc::new(Mutex::new(Applied::default())),
        }
    }

    /// Play alone on our own clock (or the fleet clock we served): keep the transport,
    /// serve nothing.
    pub async fn solo(&mut self) {
        self.stop_tasks().await;
        self.become_authority();
        self.current = Current::Solo;
    }

    /// Lead: serve SNTP and publish the timeline from the fleet clock we keep.
    pub async fn lead(&mut self) -> Result<(), NodeError> {
        let was = self.current;
        self.stop_tasks().await;
        self.become_authority();
        if was != Current::Solo {
            tracing::info!("now leading the fleet");
        }
        // The timeline goes on under our name: same track, same anchor and epoch.
        if let Ok(mut n) = self.ctx.net.lock() {
            if let Some(t) = n.timeline.as_mut() {
                if t.leader != self.ctx.id || t.incarnation != crate::clock::incarnation() {
                    t.leader.clone_from(&self.ctx.id);
                    t.incarnation = crate::clock::incarnation();
                    t.seq += 1;
                }
            }
        }
        self.current = Current::Leader;
        let serving = self.serve().await?;
        self.tasks.extend(serving);
        Ok(())
    }

    /// Hierarchical mode: while following, also serve our group (`on`) — SNTP from our
    /// disciplined estimate of fleet time, and the timeline we receive, re-published
    /// unchanged — or stop serving it (`!on`: demoted to a plain follower). Serving already
    /// (or not) changes nothing; a node that does not follow serves no group.
    pub async fn serve_group(&mut self, on: bool) -> Result<(), NodeError> {
        let wanted = on && matches!(self.current, Current::Follower(_));
        if wanted && self.group.is_empty() {
            self.group = self.serve().await?;
            if !self.group.is_empty() {
                tracing::info!("serving a group as sub-leader");
            }
        } else if !wanted && !self.group.is_empty() {
            stop(&mut self.group).await;
            self.ctx.counters.subscribers.store(0, Relaxed);
            tracing::info!("no longer serving a group");
        }
        Ok(())
    }

    /// Bind and start the SNTP server and the timeline publisher, both on the node's fleet
    /// clock (its own time when leading, its estimate of the leader's as a sub-leader).
    async fn serve(&mut self) -> Result<Vec<JoinHandle<()>>, NodeError> {
        let Some(sec) = self.ctx.security.clone() else {
            return Ok(Vec::new()); // no key: nothing to serve
        };
        let y = &self.ctx.sync;
        let mut tasks = Vec::new();
        if y.sntp_port != 0 {
            let sock = bind(
                "SNTP server",
                SocketAddr::new(self.ctx.bind_ip, y.sntp_port),
            )
            .await?;
            tasks.push(tokio::spawn(sntp::serve(
                sock,
                self.ctx.fleet.clone(),
                Some(sec.clone()),
                self.ctx.counters.sntp.clone(),
            )));
        }
        let sock = match bind("timeline", SocketAddr::new(self.ctx.bind_ip, y.osc_port)).await {
            Ok(sock) => sock,
            Err(e) => {
                stop(&mut tasks).await;
                return Err(e);
            }
        };
        tasks.push(tokio::spawn(publish_timeline(Publisher {
            sock,
            net: self.ctx.net.clone(),
            hz: y.publish_hz,
            clock: self.ctx.fleet.clone(),
            security: sec,
            wake: self.ctx.wake.clone(),
            handle: self.ctx.handle.clone(),
            counters: self.ctx.counters.clone(),
            lights: self.ctx.lights.clone(),
            expiry: Duration::from_secs_f64(y.subscriber_expiry_s),
        })));
        self.ctx.wake.notify_one();
        Ok(tasks)
    }

    /// Follow the publisher (the leader, or in hierarchical mode our sub-leader) whose
    /// timeline is at `leader`, disciplining our clock against the SNTP server `sntp`
    /// (sealed when `signed`). Following the same publisher again changes nothing; a
    /// follower that changes publisher keeps its clock filter, its lock and what its player
    /// does, and keeps serving its group if it is a sub-leader.
    pub async fn follow(
        &mut self,
        leader: SocketAddr,
        sntp: SocketAddr,
        signed: bool,
    ) -> Result<(), NodeError> {
        if self.current == Current::Follower(leader) {
            return Ok(());
        }
        let Some(sec) = self.ctx.security.clone() else {
            return Ok(());
        };
        let was = self.current;
        if matches!(was, Current::Follower(_)) {
            // Re-homing: only the link changes; a sub-leader's group keeps being served.
            self.relay = None;
            stop(&mut self.tasks).await;
        } else {
            self.stop_tasks().await;
        }
        if !matches!(was, Current::Follower(_)) {
            // We were the authority: our player plays what our timeline says, and our
            // clock estimate (if any) is of someone else's clock.
            self.transport = None;
            let tl = self.ctx.net.lock().ok().and_then(|n| n.timeline.clone());
            if let Ok(mut a) = self.applied.lock() {
                *a = Applied::from_timeline(tl.as_ref());
            }
            if let Ok(mut f) = self.filter.lock() {
                *f = ClockFilter::new(FilterConfig::from_config(&self.ctx.sync));
            }
            self.ctx.fleet.follow();
        } else {
            tracing::info!("following a new upstream at {leader}");
        }
        self.current = Current::Follower(leader);
        // Shared tracks this bike lacks come from the leader's web server.
        if self.ctx.web_port != 0 {
            let web = SocketAddr::new(leader.ip(), self.ctx.web_port);
            self.ctx.tracks.set_peers(vec![format!("http://{web}")]);
        }
        let y = &self.ctx.sync;
        let sock = bind("SNTP client", SocketAddr::new(self.ctx.bind_ip, 0)).await?;
        let client = SntpClient::with_security(
            sock,
            self.ctx.fleet.local(),
            Duration::from_millis(500),
            signed.then(|| sec.clone()),
        );
        self.tasks.push(tokio::spawn(follower::discipline(
            client,
            sntp,
            self.filter.clone(),
            y.poll_hz,
            self.ctx.fleet.clone(),
            self.ctx.counters.clone(),
        )));
        let (relay_tx, relay_rx) = mpsc::channel(64);
        self.relay = Some(relay_tx);
        let sock = bind("timeline", SocketAddr::new(self.ctx.bind_ip, 0)).await?;
        self.tasks
            .push(tokio::spawn(follower::follow_timeline(Link {
                sock,
                leader,
                id: self.ctx.id.clone(),
                fleet: self.ctx.fleet.clone(),
                net: self.ctx.net.clone(),
                deck: self.ctx.deck.clone(),
                follow: FollowConfig::from_config(&self.ctx.sync),
                counters: self.ctx.counters.clone(),
                security: sec,
                relay: relay_rx,
                applied: self.applied.clone(),
                lights: self.ctx.lights.clone(),
                wake: self.ctx.wake.clone(),
                filter: self.filter.clone(),
                pending: self.pending.clone(),
            })));
        Ok(())
    }

    /// Stop every task of the role and wait until their sockets are closed (so the next
    /// role can bind the same ports).
    pub async fn stop_tasks(&mut self) {
        self.relay = None;
        stop(&mut self.tasks).await;
        stop(&mut self.group).await;
        self.ctx.counters.subscribers.store(0, Relaxed);
    }

    /// Own what plays: serve fleet time from the clock we keep (our own, the one we already
    /// serve, or — promoted from follower — our estimate held over) and take the transport.
    /// A transport we already have is kept.
    fn become_authority(&mut self) {
        let fleet = &self.ctx.fleet;
        fleet.lead(fleet.serving_clock(mono_ns()));
        if self.transport.is_some() {
            return;
        }
        self.transport = Some(Transport::new(
            self.ctx.deck.clone(),
            self.ctx.net.clone(),
            fleet.clone(),
            self.ctx.id.clone(),
            (self.ctx.sync.start_lead_ms * 1e6) as u64,
            self.ctx.playlist.clone(),
            self.ctx.wake.clone(),
        ));
    }
}

/// Abort `tasks` and wait until they are gone (their sockets closed).
async fn stop(tasks: &mut Vec<JoinHandle<()>>) {
    for t in tasks.drain(..) {
        t.abort();
        let _ = t.await;
    }
}
