//! The `convoy node` daemon, wiring only: one player, one [`FleetClock`], the fleet-sync
//! sockets, the lights and the control surface, built from the configuration and wired
//! together. What they do lives in their domains: the leader's plans in
//! [`crate::sync::transport`], the follower's timeline state machine in
//! [`crate::sync::follow`], the role switch in `roles` (tasks) and
//! [`crate::sync::switch`] (the playback loop), the relay and shared lights in
//! [`crate::fleet`]. Front ends reach the node through a [`NodeHandle`] and answer with a
//! [`Refusal`] when they must; the lights post into the live plane. Status goes to stdout
//! as one JSON line per interval (for humans, journald and the scenario tool). Network
//! code takes already-bound sockets, so tests can bind port 0.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;

mod auto;
mod deck;
pub mod link;
mod roles;
pub mod show;
pub mod web;

use crate::audio::{self, output, EngineOptions, Player};
use crate::clock::{mono_ns, Basis, FleetClock, LocalClock};
use crate::config::{Config, Role};
use crate::control::{Command as NodeCommand, NodeHandle, NodeInbox, Refusal, Request, Snapshot};
use crate::fleet::lights::{self, FleetLights};
use crate::fleet::relay;
use crate::library::{LibraryConfig, Tracks};
use crate::security::{FleetSecurity, SecurityError, SecurityStats};
use crate::sync::pll::{LockStatus, NetState, PllConfig};
use crate::sync::{Counters, SwitchController, Transport};
use deck::NodeDeck;
use roles::Roles;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Audio setup failed.
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A configured address is invalid.
    #[error("bad address {0:?}")]
    Address(String),
    /// Fleet security could not be set up (no key, unreadable key, bad policy).
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The OSC control port could not be started.
    #[error("OSC control port: {0}")]
    Osc(#[from] crate::osc::ServeError),
    /// The web app or the EchoFlux follower could not be started.
    #[error(transparent)]
    Web(#[from] web::WebStartError),
    /// Fleet membership could not start (`sync.role = "auto"`).
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The first track could not be started.
    #[error("cannot play {track}: {why}")]
    Track {
        /// The track.
        track: String,
        /// Why.
        why: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Tracks the leader (or a solo node) plays in order; empty: start idle and wait for
    /// commands.
    pub playlist: Vec<String>,
    /// Stop after this long (None: until signalled).
    pub duration: Option<Duration>,
    /// Status line interval.
    pub status_every: Duration,
    /// Leader/solo: start the first track this long after startup, announced to followers
    /// in advance, so every bike starts on the same sample (a scheduled start).
    pub start_in: Duration,
    /// Leader/solo: exit when the playlist has played to its end.
    pub exit_at_end: bool,
    /// Status as one human line redrawn in place (a terminal) instead of a JSON line per
    /// interval (journald, pipes, `--json`).
    pub console: bool,
}

/// One status line.
#[derive(Debug, Clone, serde::Serialize)]
struct Status<'a> {
    mono_ns: u64,
    /// This node's clock at `mono_ns`.
    local_ns: i64,
    /// Its estimate of fleet (leader) time at `mono_ns`.
    fleet_ns: Option<i64>,
    node: &'a str,
    role: Role,
    track: Option<String>,
    playing: bool,
    epoch: Option<i32>,
    position_s: Option<f64>,
    offset_ns: Option<f64>,
    clock_ppm: Option<f64>,
    dispersion_ns: Option<f64>,
    min_delay_ns: Option<i64>,
    /// Verified bound on the clock estimate's error, ns (`sync::filter`).
    clock_bound_ns: Option<f64>,
    clock_steps: Option<u64>,
    sntp_ok: u64,
    sntp_failed: u64,
    timelines: u64,
    rejected: u64,
    lock: LockStatus,
    underruns: u64,
    /// Leading: times its own playback fell off the published timeline (a device outage)
    /// and was seeked back onto it.
    catch_ups: u64,
    /// The fleet's light state (src/node/lights.rs).
    lights: lights::Summary,
    /// Serving (leader or sub-leader): timeline datagrams sent, live subscribers, SNTP
    /// requests answered.
    timelines_sent: u64,
    subscribers: u64,
    sntp_served: u64,
    /// `sync.role = "auto"`: the fleet's leader, term and live peers as membership sees
    /// them (absent with a fixed role).
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<FleetStatus<'a>>,
}

/// The membership part of a status line.
#[derive(Debug, Clone, serde::Serialize)]
struct FleetStatus<'a> {
    leader: Option<&'a str>,
    term: u64,
    /// Hierarchical mode: whom we take the timeline from, and whether we re-publish it.
    upstream: Option<&'a str>,
    publishes: bool,
    heartbeats_sent: u64,
    heartbeats_received: u64,
    peers: Vec<crate::control::PeerState>,
}

/// Run a node until the duration passes or SIGINT/SIGTERM arrives.
pub async fn run(config: Config, opts: NodeOptions) -> Result<(), NodeError> {
    let (handle, inbox) = NodeHandle::channel(Snapshot::default());
    run_with(config, opts, handle, inbox).await
}

/// [`run`] with the node's handle made by the caller (front ends and tests keep a clone).
pub async fn run_with(
    config: Config,
    opts: NodeOptions,
    handle: NodeHandle,
    mut inbox: NodeInbox,
) -> Result<(), NodeError> {
    let id = config.node_id();
    let c = &config.clock;
    let mut clock = LocalClock::unix((c.offset_ms * 1e6) as i64, c.ppm);
    if c.step_at_s > 0.0 {
        clock = clock.with_step(
            mono_ns() + (c.step_at_s * 1e9) as u64,
            (c.step_ms * 1e6) as i64,
        );
    }
    let y = config.sync.clone();
    let stats = Arc::new(SecurityStats::new());
    let security = match y.role {
        Role::Solo => None,
        // Leader, follower, auto: the fleet channel is always sealed.
        _ => Some(Arc::new(FleetSecurity::from_config(
            &config.security,
            &id,
            stats.clone(),
        )?)),
    };
    if let Some(sec) = &security {
        tracing::info!("fleet key fingerprint {}", sec.fingerprint());
    }
    let latency_ns = (config.node.output_latency_ms * 1e6) as i64;
    let fleet_clock = FleetClock::new(
        clock,
        latency_ns,
        match y.role {
            Role::Follower => Basis::Follow(None),
            _ => Basis::Own(clock),
        },
    );
    // This process's incarnation, fixed from its start: the timelines it publishes as a
    // leader carry it, so followers know a restart from an old timeline.
    tracing::debug!("incarnation {}", crate::clock::incarnation());
    let net = Arc::new(Mutex::new(NetState::with_fresh_ns(
        (y.timeline_fresh_ms * 1e6) as u64,
    )));
    let lock = Arc::new(Mutex::new(LockStatus::default()));
    let sink = output::open_sink(&config.audio, config.audio.sink)?;
    let engine = EngineOptions::from_config(&config.audio);
    let controller = Box::new(SwitchController::new(
        PllConfig::from_config(&y),
        fleet_clock.clone(),
        net.clone(),
        lock.clone(),
    ));
    let player = Arc::new(Player::start(sink, engine, controller)?);
    // The web app and the track library come first: the first track may be a shared one.
    let tracks = Tracks::new(LibraryConfig::from_config(&config.web));
    tracks.allow_dirs(config.web.music_dirs.iter().map(std::path::PathBuf::from));
    tracks.allow_dirs(crate::library::MusicDirs::dirs_of(&opts.playlist));
    let web = web::WebService::start(&config.web, handle.clone(), &tracks).await?;
    let wake = Arc::new(Notify::new());
    let bind_ip: std::net::IpAddr = y
        .bind
        .parse()
        .map_err(|_| NodeError::Address(y.bind.clone()))?;
    let counters = Arc::new(Counters::default());
    // The fleet's light state and manual cues, shared by every role's tasks
    // (src/node/lights.rs).
    let shared_lights = FleetLights::new(&id);
    let mut cues = lights::CueQueue::default();
    // Tasks other parts of the node start; aborted at shutdown.
    let tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut roles = Roles::new(roles::Ctx {
        sync: y.clone(),
        bind_ip,
        id: id.clone(),
        security: security.clone(),
        fleet: fleet_clock.clone(),
        net: net.clone(),
        deck: Arc::new(NodeDeck::new(player.clone(), tracks.clone())),
        counters: counters.clone(),
        handle: handle.clone(),
        wake: wake.clone(),
        playlist: opts.playlist.clone(),
        tracks: tracks.clone(),
        web_port: config.web.port,
        lights: shared_lights.clone(),
        cue_lead_ns: (config.show.cue_lead_ms * 1e6) as i64,
    });
    // Auto: the fleet decides (below); until then the node is solo, and its playlist waits
    // for the election (it may join a fleet already playing).
    let mut fleet = None;
    match (y.role, &security) {
        (Role::Leader, Some(_)) => roles.lead().await?,
        (Role::Follower, Some(_)) => {
            let leader: SocketAddr = y
                .leader
                .parse()
                .map_err(|_| NodeError::Address(y.leader.clone()))?;
            let (sntp_server, signed) = sntp_source(&y, leader.ip(), y.sntp_port)?;
            roles.follow(leader, sntp_server, signed).await?;
        }
        (Role::Auto, Some(sec)) => {
            roles.solo().await;
            let has_tracks = !opts.playlist.is_empty();
            fleet = Some(auto::Fleet::start(
                &config,
                sec,
                &stats,
                &fleet_clock,
                has_tracks,
            )?);
        }
        _ => roles.solo().await,
    }
    if y.role != Role::Auto {
        start_playlist(&mut roles, &opts)?;
    }
    let osc = if config.osc.enabled {
        let guard = match &security {
            Some(sec) => sec.guard().clone(),
            None => Arc::new(Mutex::new(crate::security::fleet::control_guard(
                &config.security,
                stats.clone(),
            )?)),
        };
        let service = crate::osc::serve_with(
            &config.osc,
            handle.clone(),
            guard,
            fleet_clock.clone(),
            config.sync.start_lead_ms,
        )
        .await?;
        Some(service)
    } else {
        None
    };
    // Show and lights (src/node/show.rs): cues on fleet time, light commands to the runner.
    // Ableton Link (src/node/link.rs): the lights follow its beat, or the music leads it.
    // Every bike flashes on the fleet's Link grid (the leader's session on fleet time),
    // whether it hears Link or not.
    let link = link::start(
        &config.link,
        &link::Fleet {
            live: handle.live().clone(),
            clock: fleet_clock.clone(),
            lights: shared_lights.clone(),
            wake: wake.clone(),
        },
    );
    let lights = Some(show::start(
        &config,
        &player,
        &fleet_clock,
        &net,
        handle.live(),
        Some(crate::show::runner::LinkFollow {
            fleet: shared_lights.link().watch(),
            clock: fleet_clock.clone(),
            own: link.as_ref().and_then(|l| l.follow()),
        }),
    )?);
    let mut view = View {
        id: &id,
        fleet: &fleet_clock,
        player: &player,
        net: &net,
        lock: &lock,
        counters: &counters,
        stats: &stats,
        lights: &shared_lights,
        show: lights.is_some(),
        console: opts.console.then(|| config.sync.leader.clone()),
        strip: false,
        console_text: Arc::default(),
        link: link.as_ref().map(link::NodeLink::report),
    };
    // On a terminal with the simulated strip: the strip drawn at `led.fps`, the status
    // line after it (issue #27: `convoy node` drew no strip).
    let strip = match (&view.console, &lights) {
        (Some(_), Some(l)) => {
            let text = view.console_text.clone();
            crate::led::term::TerminalStrip::spawn(l.led(), config.led.fps, move || {
                text.lock().map(|t| t.clone()).unwrap_or_default()
            })
        }
        _ => None,
    };
    view.strip = strip.is_some();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(opts.status_every);
    // Readiness to take the lead over (auto roles) is judged faster than status lines.
    let mut ready_ticker = tokio::time::interval(Duration::from_millis(200));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // `/convoy/play track` being opened on the blocking pool, with its request.
    type Opening = (
        Request,
        String,
        Result<Box<dyn crate::audio::Source>, Refusal>,
    );
    let mut opening: tokio::task::JoinSet<Opening> = tokio::task::JoinSet::new();
    // What the runner shows, so a light change reaches the snapshot (feedback, status)
    // when the runner has shown it, not at the next status line.
    let mut shown = lights.as_ref().map(show::NodeShow::watch);
    loop {
        let light_now = inbox.state.borrow().light.clone();
        tokio::select! {
            _ = show::light_changed(&mut shown, &light_now) => {
                view.publish(&inbox, roles.current.role(), fleet.as_ref(), lights.as_ref());
            }
            _ = ticker.tick() => {
                if let Some(t) = roles.transport.as_mut() {
                    t.tick();
                }
                if let Some(f) = fleet.as_mut() {
                    f.tick(&mut roles, &opts, &lock).await;
                }
                let fv = fleet.as_ref().map(auto::Fleet::view);
                view.print_status(roles.current.role(), fv.as_ref());
                view.publish_view(&inbox, roles.current.role(), fv.as_ref(), lights.as_ref());
                let at_end = opts.exit_at_end && roles.transport.as_ref().is_some_and(Transport::finished);
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) || at_end {
                    break;
                }
            }
            _ = ready_ticker.tick(), if fleet.is_some() => {
                if let Some(f) = fleet.as_mut() {
                    f.update_ready(&roles, &lock);
                }
            }
            Some(()) = auto::changed(fleet.as_mut()) => {
                if let Some(f) = fleet.as_mut() {
                    f.follow_view(&mut roles, &opts).await;
                }
            }
            Some(req) = inbox.requests.recv() => {
                // A named track is opened (probed) on the blocking pool, never here.
                let mut shown = None;
                if let (NodeCommand::Play { track: Some(track) }, Some(t)) = (&req.command, roles.transport.as_ref()) {
                    shown = show::control(lights.as_ref(), &req.command);
                    if shown.is_none() {
                        let (deck, track) = (t.deck(), track.clone());
                        opening.spawn_blocking(move || {
                            let opened = deck.open(&track);
                            (req, track, opened)
                        });
                        continue;
                    }
                }
                let verdict = match (shown, &req.command) {
                    (Some(verdict), _) => verdict,
                    (None, NodeCommand::Lead { on }) => auto::force_leader(fleet.as_ref(), *on),
                    (None, NodeCommand::Panic { fade_ms }) => {
                        let from = inbox.state.borrow().light.bright;
                        let fade = Duration::from_millis(*fade_ms);
                        tokio::spawn(crate::control::fade_out(handle.clone(), from, fade));
                        Ok(())
                    }
                    (None, cmd) if lights::is_shared(cmd) => {
                        let now = fleet_clock.now_or_local();
                        // `/go` needs a show, except to hand a held manual look back to the
                        // default look; a cue must be one (or a pattern over them).
                        show::cues(lights.as_ref(), cmd)
                            .or_else(|refusal| match (cmd, refusal) {
                                (NodeCommand::Go, Refusal::NoShow) if shared_lights.holds_look() => Ok(Vec::new()),
                                (_, refusal) => Err(refusal),
                            })
                            .and_then(|named| match named.as_slice() {
                            [] => share_light(cmd, now, &shared_lights, &roles, lights.as_ref(), &mut cues),
                            _ => named.into_iter().try_for_each(|cue| {
                                let cmd = NodeCommand::CueStart { cue };
                                share_light(&cmd, now, &shared_lights, &roles, lights.as_ref(), &mut cues)
                            }),
                        })
                    }
                    (None, cmd) => match show::control(lights.as_ref(), cmd) {
                        Some(verdict) => verdict,
                        None => {
                            let executed = execute(&req, &mut roles, &counters);
                            answer(req, executed);
                            view.publish(&inbox, roles.current.role(), fleet.as_ref(), lights.as_ref());
                            continue;
                        }
                    },
                };
                answer(req, Executed::Now(verdict));
                view.publish(&inbox, roles.current.role(), fleet.as_ref(), lights.as_ref());
            }
            Some(done) = opening.join_next(), if !opening.is_empty() => {
                let Ok((req, track, opened)) = done else { continue };
                let verdict = match opened {
                    Err(e) => Err(e),
                    Ok(source) => match roles.transport.as_mut() {
                        Some(t) => t.play_opened(&track, source),
                        // The role changed while it opened: relay it as any command.
                        None => {
                            let executed = execute(&req, &mut roles, &counters);
                            answer(req, executed);
                            continue;
                        }
                    },
                };
                answer(req, Executed::Now(verdict));
                view.publish(&inbox, roles.current.role(), fleet.as_ref(), lights.as_ref());
            }
            _ = shared_lights.changed() => {
                // Another bike's newer light command or cue won: show it here too.
                let now = fleet_clock.now_or_local();
                for apply in shared_lights.take_unapplied() {
                    show_shared(apply, now, lights.as_ref(), &mut cues);
                }
                roles.ctx.wake.notify_one(); // a (sub-)leader passes it on at once
            }
            _ = tokio::time::sleep(cues.next_in(fleet_clock.now_or_local()).unwrap_or(Duration::from_secs(3600))) => {
                let now = fleet_clock.now_or_local();
                for cue in cues.take_due(now) {
                    if let Some(Err(e)) = show::control(lights.as_ref(), &cue) {
                        tracing::warn!("the fleet's {cue:?} cannot be shown: {e}");
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
        }
    }
    for t in tasks {
        t.abort();
    }
    roles.stop_tasks().await;
    if let Some(f) = fleet {
        f.shutdown().await;
    }
    if let Some(osc) = osc {
        osc.shutdown().await;
    }
    if let Some(link) = link {
        link.stop().await;
    }
    if let Some(web) = web {
        web.shutdown().await;
    }
    if let Some(lights) = lights {
        lights.stop();
    }
    if let Some(strip) = strip {
        strip.stop();
        view.strip = false;
    }
    view.print_status(roles.current.role(), None);
    if view.console.is_some() {
        println!();
        crate::led::term::set_drawing(false);
    }
    drop(roles);
    // Stop the sink cleanly (flushes a virtual sink's recording).
    match Arc::try_unwrap(player) {
        Ok(p) => p.stop()?,
        Err(p) => drop(p),
    }
    Ok(())
}

/// Where a follower gets fleet time: the leader's own (sealed) SNTP server at
/// `leader_ip:leader_sntp_port`, or the configured `sync.sntp_server` (a named third-party
/// NTP server such as chrony cannot sign, so it is queried in plain NTP unless
/// `sync.sntp_server_signed`).
fn sntp_source(
    y: &crate::config::SyncConfig,
    leader_ip: std::net::IpAddr,
    leader_sntp_port: u16,
) -> Result<(SocketAddr, bool), NodeError> {
    if y.sntp_server.is_empty() {
        return Ok((SocketAddr::new(leader_ip, leader_sntp_port), true));
    }
    let addr = y
        .sntp_server
        .parse()
        .map_err(|_| NodeError::Address(y.sntp_server.clone()))?;
    if !y.sntp_server_signed {
        tracing::warn!("time from {addr} is not authenticated (sync.sntp_server)");
    }
    Ok((addr, y.sntp_server_signed))
}

/// Leader/solo: start the playlist's first track `start_in` from now (a scheduled start:
/// frame 0 is heard then, and the plan is published at once so followers start on the
/// same sample).
fn start_playlist(roles: &mut Roles, opts: &NodeOptions) -> Result<(), NodeError> {
    if let (Some(t), Some(first)) = (roles.transport.as_mut(), opts.playlist.first()) {
        t.schedule(first, 0, opts.start_in.as_nanos() as u64)
            .map_err(|why| NodeError::Track {
                track: first.clone(),
                why: why.to_string(),
            })?;
    }
    Ok(())
}

/// A light command or manual cue given to this bike (`now`: fleet time): stamped, shown
/// here (a cue when its fleet time comes), and shared — a follower sends it up to its
/// leader, a leader's next timeline carries it to the fleet.
fn share_light(
    cmd: &NodeCommand,
    now: i64,
    shared: &FleetLights,
    roles: &Roles,
    show: Option<&show::NodeShow>,
    cues: &mut lights::CueQueue,
) -> Result<(), Refusal> {
    let (entries, apply) = shared.local(cmd, now, roles.ctx.cue_lead_ns)?;
    show_shared(apply, now, show, cues);
    if let Some(tx) = roles.relay.as_ref() {
        for bytes in entries.iter().filter_map(lights::Entry::encode) {
            if tx.try_send(bytes).is_err() {
                // The state is kept: the next timeline's reply carries it up.
                tracing::debug!("the link to the leader is busy; {cmd:?} goes with the next reply");
            }
        }
    }
    roles.ctx.wake.notify_one();
    Ok(())
}

/// Show a shared light change now, or queue a shared cue for its fleet time.
fn show_shared(
    apply: lights::Apply,
    now: i64,
    show: Option<&show::NodeShow>,
    cues: &mut lights::CueQueue,
) {
    match apply {
        lights::Apply::Now(cmd) => {
            if let Some(Err(e)) = show::control(show, &cmd) {
                tracing::warn!("{cmd:?} cannot be shown: {e}");
            }
        }
        lights::Apply::Cue { command, at_ns } => {
            if !cues.push(at_ns, command, now) {
                tracing::info!(
                    "a manual cue {:.1} s old was not fired",
                    (now - at_ns) as f64 / 1e9
                );
            }
        }
    }
}

/// How long a follower waits for the leader's verdict on a relayed command before saying
/// none came (the round trip is a few ms on a working link).
const RELAY_VERDICT_WAIT: Duration = Duration::from_millis(1500);

/// What became of a request: decided here, or relayed with the leader's verdict to come.
enum Executed {
    Now(Result<(), Refusal>),
    Relayed(relay::Waiter),
}

/// Carry out one request: the leader applies transport commands itself, a follower relays
/// them to the leader and answers with the leader's verdict.
fn execute(req: &Request, roles: &mut Roles, counters: &Counters) -> Executed {
    match (roles.transport.as_mut(), roles.relay.as_ref()) {
        (Some(t), _) => Executed::Now(t.apply(&req.command)),
        (None, None) => Executed::Now(Err(Refusal::NoLeader)),
        (None, Some(relay_tx)) => {
            let waiter = match roles.pending.open() {
                Ok(w) => w,
                Err(why) => return Executed::Now(Err(why)),
            };
            let Some(bytes) = relay::encode_request(&req.command, waiter.id) else {
                return Executed::Now(Err(Refusal::NotRelayable(format!("{:?}", req.command))));
            };
            if relay_tx.try_send(bytes).is_err() {
                return Executed::Now(Err(Refusal::Busy("the link to the leader")));
            }
            counters.relayed.fetch_add(1, Relaxed);
            Executed::Relayed(waiter)
        }
    }
}

/// Answer a request now, or once the leader's verdict on it arrives (never holding up the
/// command loop).
fn answer(req: Request, executed: Executed) {
    match executed {
        Executed::Now(verdict) => {
            if let Err(e) = &verdict {
                tracing::warn!("{:?} from {:?} refused: {e}", req.command, req.origin);
            }
            req.answer(verdict);
        }
        Executed::Relayed(waiter) => {
            tokio::spawn(async move {
                let verdict = waiter.verdict(RELAY_VERDICT_WAIT).await;
                if let Err(e) = &verdict {
                    tracing::warn!("{:?} from {:?}: {e}", req.command, req.origin);
                }
                req.answer(verdict);
            });
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<UdpSocket, NodeError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// A follower's lock as of monotonic `now`: not locked without a fresh timeline.
fn verified(lock: LockStatus, net: &NetState, role: Role, now: u64) -> LockStatus {
    match role {
        Role::Follower => lock.verified(net, now),
        _ => lock,
    }
}

/// Everything status and snapshots are made of.
struct View<'a> {
    id: &'a str,
    fleet: &'a FleetClock,
    player: &'a Player,
    net: &'a Mutex<NetState>,
    lock: &'a Mutex<LockStatus>,
    counters: &'a Counters,
    stats: &'a SecurityStats,
    lights: &'a FleetLights,
    /// A show drives the lights (the snapshot's light state is the show's).
    show: bool,
    /// Print the human status line instead of JSON; the leader address it waits for.
    console: Option<String>,
    /// A terminal strip is drawn: the status line goes into `console_text`, which it
    /// prints after every frame.
    strip: bool,
    console_text: Arc<Mutex<String>>,
    /// The Link session, for the snapshot (`[link] enabled`).
    link: Option<link::LinkReport>,
}

impl View<'_> {
    fn print_status(&self, role: Role, fleet: Option<&crate::fleet::FleetView>) {
        let mono = mono_ns();
        let lock = self.lock.lock().map(|l| l.clone()).unwrap_or_default();
        let (tl, catch_ups, lock) = self
            .net
            .lock()
            .map(|n| {
                (
                    n.timeline.clone(),
                    n.catch_ups,
                    verified(lock.clone(), &n, role, mono),
                )
            })
            .unwrap_or((None, 0, lock));
        let est = self.fleet.estimate();
        let st = self.player.status();
        let local = self.fleet.local().from_mono(mono);
        let c = self.counters;
        let line = Status {
            mono_ns: mono,
            local_ns: local,
            fleet_ns: self.fleet.at_mono(mono),
            node: self.id,
            role,
            position_s: st.position.map(|p| p / st.track_rate.max(1) as f64),
            track: st.track,
            playing: tl.as_ref().is_some_and(|t| t.playing) && !st.paused,
            epoch: tl.as_ref().map(|t| t.epoch),
            offset_ns: est.map(|e| e.offset_ns),
            clock_ppm: est.map(|e| e.ppm),
            dispersion_ns: est.map(|e| e.dispersion_ns),
            min_delay_ns: est.map(|e| e.min_delay_ns),
            clock_bound_ns: est.and_then(|e| e.bound_ns),
            clock_steps: est.map(|e| e.steps),
            sntp_ok: c.sntp_ok.load(Relaxed),
            sntp_failed: c.sntp_failed.load(Relaxed),
            timelines: c.timelines.load(Relaxed),
            rejected: self.stats.snapshot().total_rejected(),
            lock,
            underruns: self.player.underruns(),
            catch_ups,
            lights: self.lights.summary(),
            timelines_sent: c.timelines_sent.load(Relaxed),
            subscribers: c.subscribers.load(Relaxed),
            sntp_served: c.sntp.served.load(Relaxed),
            fleet: fleet.map(|v| FleetStatus {
                leader: v.leader.as_ref().map(|m| m.id.as_str()),
                term: v.term,
                upstream: v.upstream.as_ref().map(|m| m.id.as_str()),
                publishes: v.publishes,
                heartbeats_sent: v.stats.sent,
                heartbeats_received: v.stats.received,
                peers: v.peer_states(mono),
            }),
        };
        if let Some(leader) = &self.console {
            use std::io::Write;
            if self.strip {
                if let Ok(mut text) = self.console_text.lock() {
                    *text = console_line(&line, leader);
                }
                return;
            }
            crate::led::term::set_drawing(true);
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{}", console_line(&line, leader));
            let _ = out.flush();
            return;
        }
        if let Ok(text) = serde_json::to_string(&line) {
            println!("{text}");
        }
    }

    /// Publishes the node's snapshot, with what its show runner shows, to the inbox that
    /// status requests, feedback and the web app read.
    fn publish(
        &self,
        inbox: &NodeInbox,
        role: Role,
        fleet: Option<&auto::Fleet>,
        lights: Option<&show::NodeShow>,
    ) {
        self.publish_view(inbox, role, fleet.map(auto::Fleet::view).as_ref(), lights);
    }

    /// [`Self::publish`] with the fleet view already taken.
    fn publish_view(
        &self,
        inbox: &NodeInbox,
        role: Role,
        fleet: Option<&crate::fleet::FleetView>,
        lights: Option<&show::NodeShow>,
    ) {
        inbox
            .state
            .send_replace(show::snapshot(lights, self.snapshot(role, fleet)));
    }

    fn snapshot(&self, role: Role, fleet: Option<&crate::fleet::FleetView>) -> Snapshot {
        let lock = self.lock.lock().map(|l| l.clone()).unwrap_or_default();
        let (tl, lock) = self
            .net
            .lock()
            .map(|n| {
                (
                    n.timeline.clone(),
                    verified(lock.clone(), &n, role, mono_ns()),
                )
            })
            .unwrap_or((None, lock));
        let est = self.fleet.estimate();
        let st = self.player.status();
        let rate = f64::from(st.track_rate.max(1));
        let stats = self.stats.snapshot();
        let following = role == Role::Follower;
        Snapshot {
            id: self.id.to_string(),
            role: format!("{role:?}").to_lowercase(),
            leader: match fleet {
                Some(v) => v.leader.as_ref().map(|m| m.id.clone()),
                None => tl.as_ref().map(|t| t.leader.clone()),
            },
            term: fleet.map(|v| v.term),
            upstream: fleet.and_then(|v| v.upstream.as_ref().map(|m| m.id.clone())),
            publishes: fleet.is_some_and(|v| v.publishes),
            peers: fleet.map(|v| v.peer_states(mono_ns())).unwrap_or_default(),
            playing: tl.as_ref().is_some_and(|t| t.playing) && !st.paused && st.track.is_some(),
            position_ms: st.position.map(|p| p / rate * 1e3),
            duration_ms: st.track_frames.map(|f| f as f64 / rate * 1e3),
            tempo_bpm: tl
                .as_ref()
                .map(|t| f64::from(t.tempo_bpm))
                .filter(|&b| b > 0.0),
            track: st.track,
            sync: crate::control::SyncState {
                offset_ms: est.filter(|_| following).map(|e| e.offset_ns / 1e6),
                clock_ppm: est.filter(|_| following).map(|e| e.ppm),
                playback_error_ms: following.then_some(lock.error_ns as f64 / 1e6),
                locked: !following || lock.locked,
                clock_bound_ms: est
                    .filter(|_| following)
                    .and_then(|e| e.bound_ns)
                    .map(|b| b / 1e6),
            },
            rejected: stats.by_reason(),
            light: if self.show {
                crate::control::LightState::default() // the show fills it in
            } else {
                let l = self.lights.summary();
                crate::control::LightState {
                    pattern: l.pattern.unwrap_or_default(),
                    hue: l.hue.unwrap_or_default(),
                    bright: l.bright.unwrap_or(1.0),
                    color: l.color.unwrap_or_default(),
                    link: "none".to_string(),
                }
            },
            link: self.link.as_ref().map(|l| {
                let now = mono_ns();
                l.state(now, self.fleet.at_mono(now))
            }),
            ..Snapshot::default()
        }
    }
}

/// The human status line of `convoy node` on a terminal: who we are, the sync state in
/// words ("waiting for leader 127.0.0.1:9123", "locked ±0.1 ms"), what plays and the lights.
fn console_line(s: &Status<'_>, leader_addr: &str) -> String {
    let sync = match s.role {
        Role::Follower if s.epoch.is_none() => {
            let who = s
                .fleet
                .as_ref()
                .and_then(|f| f.leader)
                .map_or_else(|| leader_addr.to_string(), str::to_string);
            format!("waiting for leader {who}")
        }
        Role::Follower if s.lock.locked => {
            format!(
                "locked ±{:.1} ms",
                s.lock.error_ns.unsigned_abs() as f64 / 1e6
            )
        }
        Role::Follower => format!("locking (error {:.1} ms)", s.lock.error_ns as f64 / 1e6),
        Role::Leader => format!("leading, {} subscriber(s)", s.subscribers),
        other => format!("{other:?}").to_lowercase(),
    };
    let playing = match (&s.track, s.position_s) {
        (Some(t), Some(p)) if s.playing => format!("playing {t} {p:.1} s"),
        (Some(t), _) => format!("{t} (paused)"),
        _ => "idle".to_string(),
    };
    let underruns = if s.underruns > 0 {
        format!(" · {} underruns", s.underruns)
    } else {
        String::new()
    };
    format!("{} · {sync} · {playing}{underruns}", s.node)
}

#[cfg(test)]
mod console_tests {
    use super::*;

    fn status(role: Role) -> Status<'static> {
        Status {
            mono_ns: 0,
            local_ns: 0,
            fleet_ns: None,
            node: "bike-2",
            role,
            track: None,
            playing: false,
            epoch: None,
            position_s: None,
            offset_ns: None,
            clock_ppm: None,
            dispersion_ns: None,
            min_delay_ns: None,
            clock_bound_ns: None,
            clock_steps: None,
            sntp_ok: 0,
            sntp_failed: 0,
            timelines: 0,
            rejected: 0,
            lock: LockStatus::default(),
            underruns: 0,
            catch_ups: 0,
            lights: lights::Summary::default(),
            timelines_sent: 0,
            subscribers: 0,
            sntp_served: 0,
            fleet: None,
        }
    }

    #[test]
    fn the_console_says_what_a_follower_waits_for_and_when_it_is_locked() {
        let s = status(Role::Follower);
        assert_eq!(
            console_line(&s, "127.0.0.1:9123"),
            "bike-2 · waiting for leader 127.0.0.1:9123 · idle"
        );
        let mut s = status(Role::Follower);
        s.epoch = Some(1);
        s.track = Some("demo".into());
        s.playing = true;
        s.position_s = Some(12.34);
        s.lock.locked = true;
        s.lock.error_ns = -120_000;
        assert_eq!(
            console_line(&s, "127.0.0.1:9123"),
            "bike-2 · locked ±0.1 ms · playing demo 12.3 s"
        );
    }
}
