//! Role switching at run time. The player is made once; what changes with the role is the
//! half of the playback loop it runs ([`SwitchController`], told through a [`ModeCell`])
//! and the network tasks around it ([`Roles`]): a leader serves SNTP and publishes the
//! timeline, a follower disciplines its clock and follows a leader's timeline, a solo node
//! runs neither. In hierarchical mode a sub-leader is a follower that also serves its
//! group ([`Roles::serve_group`]): SNTP from its disciplined estimate of fleet time
//! ([`FleetClock::Disciplined`]) and the timeline it follows, re-published unchanged; a
//! follower whose upstream changes re-homes like one that changes leader. Leadership moves without a jump. A follower that is promoted keeps
//! serving the fleet time it had disciplined (its last offset and frequency, free-running
//! from then on, [`LocalClock::anchored`]), keeps the timeline's track and epoch, and only
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

use super::follower::{self, Applied, Link, LocalTime};
use super::leader::Transport;
use super::lights::FleetLights;
use super::{bind, publish_timeline, Counters, NodeError, NodeHandle, Publisher};
use crate::audio::{Control, Controller, PlaybackReport, Player};
use crate::clock::{mono_ns, LocalClock};
use crate::config::{Role, SyncConfig};
use crate::library::Tracks;
use crate::security::FleetSecurity;
use crate::sync::filter::{ClockEstimate, ClockFilter, FilterConfig};
use crate::sync::pll::{FollowerController, LeaderController, NetState, PllConfig};
use crate::sync::sntp::{self, SntpClient, TimeSource};

/// The fleet time a node serves (SNTP) and stamps its fleet messages with: a leader's own
/// clock, or a sub-leader's disciplined estimate of the leader's, read afresh every time
/// so it tracks the estimate as the clock filter updates it.
#[derive(Debug, Clone)]
pub enum FleetClock {
    /// The clock this node serves as leader.
    Own(LocalClock),
    /// The estimate in `net` applied to this node's clock `local`.
    Disciplined {
        /// This node's clock.
        local: LocalClock,
        /// Holds the clock estimate.
        net: Arc<Mutex<NetState>>,
    },
}

impl FleetClock {
    /// Fleet time now; a sub-leader without an estimate yet stamps with its own clock
    /// (as a follower does).
    pub fn now(&self) -> i64 {
        match self {
            FleetClock::Own(c) => c.now(),
            FleetClock::Disciplined { local, .. } => self.time_now().unwrap_or_else(|| local.now()),
        }
    }
}

impl TimeSource for FleetClock {
    fn time_now(&self) -> Option<i64> {
        match self {
            FleetClock::Own(c) => Some(c.now()),
            FleetClock::Disciplined { local, net } => {
                let est = net.lock().ok()?.estimate?;
                Some(est.fleet_at(local.now()))
            }
        }
    }
}

/// Which half of the playback loop runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Measure our own playback against this fleet clock (leader, solo).
    Lead(LocalClock),
    /// Steer our playback onto the leader's timeline.
    Follow,
}

/// The current [`Mode`] and a generation that changes with every switch, shared by the
/// node and the player thread.
#[derive(Debug)]
pub struct ModeCell(Mutex<(Mode, u64)>);

impl ModeCell {
    /// Starts in `mode`.
    pub fn new(mode: Mode) -> Self {
        ModeCell(Mutex::new((mode, 0)))
    }

    /// The mode now and its generation.
    pub fn get(&self) -> (Mode, u64) {
        self.0.lock().map(|m| *m).unwrap_or((Mode::Follow, 0))
    }

    fn set(&self, mode: Mode) {
        if let Ok(mut m) = self.0.lock() {
            *m = (mode, m.1 + 1);
        }
    }

    /// Fleet time at monotonic time `mono` (None: a follower without a clock estimate
    /// yet): the clock we serve when leading, our estimate of the leader's otherwise.
    pub fn fleet_at_mono(
        &self,
        mono: u64,
        local: &LocalClock,
        net: &Mutex<NetState>,
    ) -> Option<i64> {
        match self.get().0 {
            Mode::Lead(clock) => Some(clock.from_mono(mono)),
            Mode::Follow => Some(net.lock().ok()?.estimate?.fleet_at(local.from_mono(mono))),
        }
    }

    /// Fleet time now (see [`ModeCell::fleet_at_mono`]).
    pub fn fleet_now(&self, local: &LocalClock, net: &Mutex<NetState>) -> Option<i64> {
        self.fleet_at_mono(mono_ns(), local, net)
    }
}

/// The player's controller: both halves of the playback loop, one chosen by the
/// [`ModeCell`] on every report.
pub struct SwitchController {
    mode: Arc<ModeCell>,
    generation: u64,
    follower: FollowerController,
    leader: LeaderController,
    latency_ns: i64,
    net: Arc<Mutex<NetState>>,
}

impl SwitchController {
    /// Both halves, reading `net`; the follower publishes into `lock`.
    pub fn new(
        mode: Arc<ModeCell>,
        pll: PllConfig,
        local: LocalClock,
        latency_ns: i64,
        net: Arc<Mutex<NetState>>,
        lock: Arc<Mutex<crate::sync::pll::LockStatus>>,
    ) -> Self {
        let (m, generation) = mode.get();
        let lead_clock = match m {
            Mode::Lead(c) => c,
            Mode::Follow => local,
        };
        SwitchController {
            follower: FollowerController::new(pll, local, latency_ns, net.clone(), lock),
            leader: LeaderController::new(lead_clock, latency_ns, net.clone()),
            mode,
            generation,
            latency_ns,
            net,
        }
    }
}

impl Controller for SwitchController {
    fn on_report(&mut self, r: &PlaybackReport) -> Control {
        let (mode, generation) = self.mode.get();
        if generation != self.generation {
            self.generation = generation;
            match mode {
                // Measure afresh against the clock we now serve; the speed the PLL last set
                // stays, so our playback keeps the fleet's rate.
                Mode::Lead(clock) => {
                    self.leader = LeaderController::new(clock, self.latency_ns, self.net.clone());
                }
                Mode::Follow => self.follower.resume(),
            }
        }
        match mode {
            Mode::Lead(_) => self.leader.on_report(r),
            Mode::Follow => self.follower.on_report(r),
        }
    }
}

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
    /// This node's own clock.
    pub local: LocalClock,
    /// Output latency, ns.
    pub latency_ns: i64,
    /// Shared with the controllers.
    pub net: Arc<Mutex<NetState>>,
    /// The player.
    pub player: Arc<Player>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The node's own handle (relayed commands come in through it).
    pub handle: NodeHandle,
    /// Wakes the publisher.
    pub wake: Arc<Notify>,
    /// The playlist a leader or solo node plays.
    pub playlist: Vec<String>,
    /// The controller's mode.
    pub mode: Arc<ModeCell>,
    /// Opens (and fetches) tracks.
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
        let filter = Arc::new(Mutex::new(ClockFilter::new(filter_config(&ctx.sync))));
        Roles {
            ctx,
            current: Current::Solo,
            transport: None,
            relay: None,
            tasks: Vec::new(),
            group: Vec::new(),
            filter,
            applied: Arc::new(Mutex::new(Applied::default())),
        }
    }

    /// The fleet clock this node serves if it leads from now on: the one it serves
    /// already, or — when it follows — its disciplined estimate of the leader's clock,
    /// free-running from now on. Without an estimate, its own clock.
    fn serving_clock(&self) -> LocalClock {
        match (self.current, self.ctx.mode.get().0) {
            (Current::Follower(_), _) => {
                let est = self.ctx.net.lock().ok().and_then(|n| n.estimate);
                est.map_or(self.ctx.local, |e| {
                    held_over(&self.ctx.local, &e, mono_ns())
                })
            }
            (_, Mode::Lead(clock)) => clock,
            (_, Mode::Follow) => self.ctx.local,
        }
    }

    /// Play alone on our own clock (or the fleet clock we served): keep the transport,
    /// serve nothing.
    pub async fn solo(&mut self) {
        let clock = self.serving_clock();
        self.stop_tasks().await;
        self.become_authority(clock);
        self.current = Current::Solo;
    }

    /// Lead: serve SNTP and publish the timeline from the fleet clock we keep.
    pub async fn lead(&mut self) -> Result<(), NodeError> {
        let clock = self.serving_clock();
        let was = self.current;
        self.stop_tasks().await;
        self.become_authority(clock);
        if was != Current::Solo {
            tracing::info!("now leading the fleet");
        }
        // The timeline goes on under our name: same track, same anchor and epoch.
        if let Ok(mut n) = self.ctx.net.lock() {
            if let Some(t) = n.timeline.as_mut() {
                if t.leader != self.ctx.id {
                    t.leader.clone_from(&self.ctx.id);
                    t.seq += 1;
                }
            }
        }
        self.current = Current::Leader;
        let serving = self.serve(FleetClock::Own(clock)).await?;
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
            let clock = FleetClock::Disciplined {
                local: self.ctx.local,
                net: self.ctx.net.clone(),
            };
            self.group = self.serve(clock).await?;
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

    /// Bind and start the SNTP server (from `clock`) and the timeline publisher.
    async fn serve(&mut self, clock: FleetClock) -> Result<Vec<JoinHandle<()>>, NodeError> {
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
                clock.clone(),
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
            clock,
            security: sec,
            wake: self.ctx.wake.clone(),
            handle: self.ctx.handle.clone(),
            counters: self.ctx.counters.clone(),
            lights: self.ctx.lights.clone(),
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
                *f = ClockFilter::new(filter_config(&self.ctx.sync));
            }
            if let Ok(mut n) = self.ctx.net.lock() {
                n.estimate = None;
            }
            self.ctx.mode.set(Mode::Follow);
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
            self.ctx.local,
            Duration::from_millis(500),
            signed.then(|| sec.clone()),
        );
        self.tasks.push(tokio::spawn(follower::discipline(
            client,
            sntp,
            self.filter.clone(),
            y.poll_hz,
            self.ctx.net.clone(),
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
                local: LocalTime {
                    clock: self.ctx.local,
                    latency_ns: self.ctx.latency_ns,
                },
                net: self.ctx.net.clone(),
                player: self.ctx.player.clone(),
                tracks: self.ctx.tracks.clone(),
                counters: self.ctx.counters.clone(),
                security: sec,
                relay: relay_rx,
                applied: self.applied.clone(),
                lights: self.ctx.lights.clone(),
                wake: self.ctx.wake.clone(),
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

    /// Own what plays, timed by `clock`: the controller measures against it and the
    /// transport schedules on it. A transport that already uses it is kept.
    fn become_authority(&mut self, clock: LocalClock) {
        self.ctx.mode.set(Mode::Lead(clock));
        if self.transport.as_ref().is_some_and(|t| t.clock == clock) {
            return;
        }
        let playing = self
            .ctx
            .net
            .lock()
            .ok()
            .and_then(|n| n.timeline.as_ref().map(|t| t.track.clone()));
        let index = playing
            .and_then(|t| self.ctx.playlist.iter().position(|p| *p == t))
            .unwrap_or(0);
        self.transport = Some(Transport {
            player: self.ctx.player.clone(),
            net: self.ctx.net.clone(),
            clock,
            latency_ns: self.ctx.latency_ns,
            id: self.ctx.id.clone(),
            lead_ns: (self.ctx.sync.start_lead_ms * 1e6) as u64,
            playlist: self.ctx.playlist.clone(),
            index,
            wake: self.ctx.wake.clone(),
            tracks: self.ctx.tracks.clone(),
        });
    }
}

/// Abort `tasks` and wait until they are gone (their sockets closed).
async fn stop(tasks: &mut Vec<JoinHandle<()>>) {
    for t in tasks.drain(..) {
        t.abort();
        let _ = t.await;
    }
}

/// The fleet clock a follower keeps serving once it leads: what its estimate `est` says
/// fleet time is at monotonic `now`, running from then on at the rate of its own clock
/// corrected by the estimate's frequency.
pub fn held_over(local: &LocalClock, est: &ClockEstimate, now: u64) -> LocalClock {
    let ppm = ((1.0 + local.ppm * 1e-6) * (1.0 + est.ppm * 1e-6) - 1.0) * 1e6;
    LocalClock::anchored(now, est.fleet_at(local.from_mono(now)), ppm)
}

/// The clock filter settings from `[sync]`.
pub fn filter_config(y: &SyncConfig) -> FilterConfig {
    FilterConfig {
        window_s: y.filter_window_s,
        bucket_s: y.filter_bucket_s,
        step_threshold_ns: (y.step_threshold_ms * 1e6) as i64,
        step_count: y.step_count.max(2) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower promoted at `now` serves exactly the time its estimate gave, and keeps
    /// running at the leader's rate: an hour later it is as close to the estimate's
    /// extrapolation as rounding allows.
    #[test]
    fn a_promoted_follower_serves_the_fleet_time_it_had_disciplined() {
        let local = LocalClock {
            offset_ns: 1_700_000_000_000_000_000,
            ppm: 83.0,
            ..LocalClock::IDEAL
        };
        let now = 5_000_000_000_000u64;
        let est = ClockEstimate {
            ref_local_ns: local.from_mono(now) - 30_000_000_000,
            offset_ns: -2_345_678_901.0,
            ppm: -121.5,
            dispersion_ns: 50_000.0,
            min_delay_ns: 200_000,
            samples: 40,
            steps: 0,
        };
        let served = held_over(&local, &est, now);
        for later in [0u64, 1_000_000_000, 3_600_000_000_000] {
            let t = now + later;
            let want = est.fleet_at(local.from_mono(t));
            let got = served.from_mono(t);
            assert!((got - want).abs() <= 2, "after {later} ns: {got} vs {want}");
        }
    }

    /// A sub-leader serves its estimate of fleet time as it is now: nothing before the
    /// first estimate, and every update at once.
    #[test]
    fn a_disciplined_fleet_clock_tracks_the_estimate() {
        let local = LocalClock::unix(0, 0.0);
        let net = Arc::new(Mutex::new(NetState::default()));
        let clock = FleetClock::Disciplined {
            local,
            net: net.clone(),
        };
        assert_eq!(clock.time_now(), None);
        let own = clock.now() - local.now();
        assert!(
            own.abs() < 50_000_000,
            "stamps with its own clock meanwhile"
        );
        for offset in [1_250_000_000.0, -40_000_000.0] {
            let est = ClockEstimate {
                ref_local_ns: local.now(),
                offset_ns: offset,
                ppm: 0.0,
                dispersion_ns: 0.0,
                min_delay_ns: 0,
                samples: 8,
                steps: 0,
            };
            net.lock().expect("net").estimate = Some(est);
            let served = clock.time_now().expect("an estimate") - local.now();
            assert!(
                (served as f64 - offset).abs() < 50e6,
                "{served} vs {offset}"
            );
        }
    }

    #[test]
    fn the_mode_cell_counts_switches_and_tells_fleet_time() {
        let net = Mutex::new(NetState::default());
        let local = LocalClock::IDEAL;
        let cell = ModeCell::new(Mode::Follow);
        assert_eq!(cell.get().1, 0);
        assert_eq!(
            cell.fleet_at_mono(10, &local, &net),
            None,
            "no estimate yet"
        );
        let served = LocalClock::anchored(1_000, 9_000, 0.0);
        cell.set(Mode::Lead(served));
        assert_eq!(cell.get(), (Mode::Lead(served), 1));
        assert_eq!(cell.fleet_at_mono(2_000, &local, &net), Some(10_000));
    }
}
