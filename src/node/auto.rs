//! `sync.role = "auto"`: fleet membership drives the node. The node runs
//! [`Membership`] with its own guard (heartbeats carry their own envelope sequence) and
//! its fleet clock (so heartbeat freshness is judged on fleet time, whatever the bike's own
//! clock says once it is disciplined), and on every [`FleetView`] change switches role
//! through [`Roles`]: lead when elected, follow the view's upstream otherwise — the leader,
//! or with `fleet.group_size > 0` a sub-leader — and serve a group when the view says we
//! publish without leading. While
//! nobody leads, a follower holds over (plays on its last lock) and any other node plays
//! alone. The playlist waits for the election: the first leader starts it, and a node that
//! hears no leader at all within the startup grace plus the peer timeout starts it alone.
//! Every status tick advertises the playback error in the heartbeat.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::roles::{Current, Roles};
use super::{sntp_source, start_playlist, NodeError, NodeOptions};
use crate::clock::{realtime_ns, FleetClock};
use crate::config::{Config, SyncConfig};
use crate::control::Refusal;
use crate::fleet::{
    self, AdvertisedRole, FleetConfig, FleetHandle, FleetView, MemberInfo, Membership,
};
use crate::security::{FleetSecurity, Sealer, SecurityStats};
use crate::sync::pll::LockStatus;

/// The membership task and what the node does with its views.
pub struct Fleet {
    handle: FleetHandle,
    views: watch::Receiver<FleetView>,
    sync: SyncConfig,
    started: Instant,
    alone_after: Duration,
    /// The playlist has not been started (nor has a leader told us what plays).
    pending_start: bool,
    /// The role our heartbeats advertise.
    advertised: AdvertisedRole,
    /// Since when we follow (for "the leader plays nothing"), and the readiness to take
    /// over that the election was last told.
    following_since: Option<Instant>,
    ready: bool,
}

/// A leader whose timeline has not played for this long, while we follow it, plays
/// nothing: a better-ranked node may take over at once (there is no music to jump).
const NOTHING_PLAYS_AFTER: Duration = Duration::from_secs(2);

impl Fleet {
    /// Start membership for this node.
    pub fn start(
        config: &Config,
        security: &FleetSecurity,
        stats: &Arc<SecurityStats>,
        clock: &FleetClock,
        has_tracks: bool,
    ) -> Result<Fleet, NodeError> {
        let cfg = FleetConfig::from_config(config)?;
        let mut me = MemberInfo::from_config(config, security.fingerprint().to_string());
        // A bike with something to play leads before an equal one without (docs/fleet.md).
        me.has_tracks = has_tracks;
        let guard = Arc::new(Mutex::new(FleetSecurity::guard_from_config(
            &config.security,
            stats.clone(),
        )?));
        let sealer = Sealer::new(fleet::sender_id(&me.id), realtime_ns().max(1) as u64);
        let alone_after = cfg.startup_grace + cfg.peer_timeout;
        let (handle, views) = Membership::spawn(cfg, me, guard, sealer, clock.clone())?;
        Ok(Fleet {
            handle,
            views,
            sync: config.sync.clone(),
            started: Instant::now(),
            alone_after,
            pending_start: true,
            advertised: AdvertisedRole::Solo,
            following_since: None,
            ready: false,
        })
    }

    /// The latest view.
    pub fn view(&self) -> FleetView {
        self.views.borrow().clone()
    }

    /// Take the role the latest view gives us.
    pub async fn follow_view(&mut self, roles: &mut Roles, opts: &NodeOptions) {
        let v = self.views.borrow_and_update().clone();
        let result = if v.i_am_leader {
            self.lead(roles, opts).await
        } else if let (Some(up), Some(_)) = (v.upstream.as_ref(), v.leader.as_ref()) {
            // The leader says what plays; our own playlist no longer starts by itself. We
            // take time and timeline from our upstream: the leader, or in hierarchical mode
            // our sub-leader; a sub-leader serves its group besides.
            self.pending_start = false;
            let timeline = SocketAddr::new(up.addr, up.sync_port);
            let followed = match sntp_source(&self.sync, up.addr, up.sntp_port) {
                Ok((sntp, signed)) => roles.follow(timeline, sntp, signed).await,
                Err(e) => Err(e),
            };
            let served = match followed {
                Ok(()) => roles.serve_group(v.publishes).await,
                Err(e) => Err(e),
            };
            served.map(|()| self.advertise(AdvertisedRole::Follower))
        } else if roles.current == Current::Leader {
            // Nobody leads, not even us (a better claimant came and went): play alone.
            roles.solo().await;
            self.advertise(AdvertisedRole::Solo);
            Ok(())
        } else {
            // A follower whose leader vanished holds over on its last lock until the
            // fleet elects the next one; a solo node carries on alone.
            Ok(())
        };
        if let Err(e) = result {
            tracing::error!("cannot take the role the fleet gave us: {e}; playing alone");
            roles.solo().await;
            self.advertise(AdvertisedRole::Solo);
        }
    }

    async fn lead(&mut self, roles: &mut Roles, opts: &NodeOptions) -> Result<(), NodeError> {
        if roles.current != Current::Leader {
            roles.lead().await?;
            self.advertise(AdvertisedRole::Leader);
        }
        self.start_if_pending(roles, opts);
        Ok(())
    }

    /// The status tick: advertise our playback error, and start the playlist alone if no
    /// leader has shown up.
    pub async fn tick(&mut self, roles: &mut Roles, opts: &NodeOptions, lock: &Mutex<LockStatus>) {
        let error_ms = match roles.current {
            Current::Follower(_) => lock.lock().ok().map(|l| l.error_ns as f64 / 1e6),
            _ => None,
        };
        if let Err(e) = self.handle.set_playback_error(error_ms) {
            tracing::debug!("{e}");
        }
        if roles.current == Current::Solo && self.started.elapsed() >= self.alone_after {
            self.start_if_pending(roles, opts);
        }
    }

    /// Tell the election whether we could lead without a jump in what the fleet hears:
    /// following, and locked on the leader's timeline (verified fresh) or the leader has
    /// played nothing for [`NOTHING_PLAYS_AFTER`]. A restarted better-ranked bike thus
    /// joins the music first and takes the lead on from there, instead of starting its
    /// playlist from the top under everyone (docs/fleet.md).
    pub fn update_ready(&mut self, roles: &Roles, lock: &Mutex<LockStatus>) {
        let ready = match roles.current {
            Current::Follower(_) => {
                let since = *self.following_since.get_or_insert_with(Instant::now);
                let status = lock.lock().map(|l| l.clone()).unwrap_or_default();
                let now = crate::clock::mono_ns();
                let (playing, locked) = roles
                    .ctx
                    .net
                    .lock()
                    .map(|n| {
                        let playing = n
                            .timeline
                            .as_ref()
                            .is_some_and(|t| t.playing && !t.track.is_empty());
                        (playing, status.verified(&n, now).locked)
                    })
                    .unwrap_or((false, false));
                locked || (!playing && since.elapsed() >= NOTHING_PLAYS_AFTER)
            }
            _ => {
                self.following_since = None;
                false
            }
        };
        if std::mem::replace(&mut self.ready, ready) != ready {
            if let Err(e) = self.handle.set_ready(ready) {
                tracing::debug!("{e}");
            }
        }
    }

    fn start_if_pending(&mut self, roles: &mut Roles, opts: &NodeOptions) {
        if !std::mem::take(&mut self.pending_start) {
            return;
        }
        let has_timeline = roles
            .ctx
            .net
            .lock()
            .is_ok_and(|n| n.timeline.as_ref().is_some_and(|t| !t.track.is_empty()));
        if !has_timeline {
            if let Err(e) = start_playlist(roles, opts) {
                tracing::error!("{e}");
            }
        }
    }

    /// Advertise `role` if it is news: every change sends a heartbeat at once, and views
    /// change with every heartbeat heard (our own included), so repeating it would loop.
    fn advertise(&mut self, role: AdvertisedRole) {
        if std::mem::replace(&mut self.advertised, role) == role {
            return;
        }
        if let Err(e) = self.handle.set_role(role) {
            tracing::debug!("{e}");
        }
    }

    /// Say goodbye to the fleet (peers drop us at once) and stop membership.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

/// `/convoy/fleet/lead`: this bike leads whatever the priorities (`on`), or gives the
/// override up. Only a node whose role the fleet decides can be told to lead.
pub fn force_leader(fleet: Option<&Fleet>, on: bool) -> Result<(), Refusal> {
    let f = fleet.ok_or(Refusal::FixedRole)?;
    f.handle
        .force_leader(on)
        .map_err(|e| Refusal::Fleet(e.to_string()))
}

/// Resolves when the view changes (never without membership, or once it has stopped).
pub async fn changed(fleet: Option<&mut Fleet>) -> Option<()> {
    match fleet {
        Some(f) => match f.views.changed().await {
            Ok(()) => Some(()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
