//! A follower's two network tasks: SNTP discipline of its view of the leader's clock, and
//! the timeline link — subscribe, take each newer timeline, and make the player do what
//! it says (start a track at a scheduled fleet time, join one already playing, pause, stop,
//! follow seeks) while the PLL steers the fine timing. The same socket relays control
//! commands given to this bike to the leader. In hierarchical mode the server and the link
//! may be a sub-leader's: its SNTP answers with its estimate of the leader's time and its
//! timeline is the leader's, unchanged, so nothing here needs to know which it is.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

use super::deck::Deck;
use super::follow::{Applied, Apply, FollowConfig};
use super::Counters;
use crate::clock::{mono_ns, FleetClock};
use crate::fleet::lights::{self, FleetLights};
use crate::osc::command::CommandParser;
use crate::security::{FleetSecurity, TrafficClass};
use crate::sync::filter::ClockFilter;
use crate::sync::pll::NetState;
use crate::sync::sntp::{ReplyTimeout, SntpClient, SntpError};
use crate::sync::timeline::{self, Timeline};

/// Exchanges a discipline starts with back to back, [`BURST_GAP`] apart (chrony's
/// `iburst`): the filter holds several within a few round trips, so a joining bike seeks
/// on the fastest of them rather than on whichever came first, and its verified bound
/// (`sync::filter`) is tight from the start. Within the leader's SNTP burst allowance
/// (`security.rate`: 20 at once, 10/s sustained, which the 10 Hz poll then keeps).
pub const BURST: u32 = 6;

/// Pause between the exchanges of the opening burst.
pub const BURST_GAP: Duration = Duration::from_millis(15);

/// SNTP exchanges at `hz`, into the clock filter, after an opening burst of [`BURST`].
/// The filter outlives the task: a node that changes leader keeps its estimate (offset
/// and frequency) and carries on from it.
pub async fn discipline(
    client: SntpClient,
    server: SocketAddr,
    filter: Arc<Mutex<ClockFilter>>,
    hz: f64,
    fleet: FleetClock,
    c: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz.max(0.05)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut burst = BURST;
    let mut wait = ReplyTimeout::new(client.timeout());
    loop {
        if burst > 0 {
            burst -= 1;
            tokio::time::sleep(BURST_GAP).await;
        } else {
            tick.tick().await;
        }
        match client.exchange_within(server, wait.next()).await {
            Ok(ex) => {
                wait.answered(&ex);
                c.sntp_ok.fetch_add(1, Relaxed);
                let Ok(est) = filter.lock().map(|mut f| f.add(ex)) else {
                    return;
                };
                fleet.set_estimate(est);
            }
            Err(e) => {
                if matches!(e, SntpError::Timeout(_)) {
                    wait.timed_out();
                }
                c.sntp_failed.fetch_add(1, Relaxed);
                tracing::debug!("{e}");
            }
        }
    }
}

/// Everything the timeline link needs.
pub struct Link {
    /// Socket (ephemeral port).
    pub sock: UdpSocket,
    /// The leader's timeline address.
    pub leader: SocketAddr,
    /// Our vehicle id.
    pub id: String,
    /// Fleet time as this node knows it.
    pub fleet: FleetClock,
    /// Shared with the PLL.
    pub net: Arc<Mutex<NetState>>,
    /// The player and the fleet's tracks.
    pub deck: Arc<dyn Deck>,
    /// `[sync]` settings of the timeline state machine.
    pub follow: FollowConfig,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Sealing and checking.
    pub security: Arc<FleetSecurity>,
    /// Payloads to seal and send to the leader (relayed commands, light fields).
    pub relay: mpsc::Receiver<Vec<u8>>,
    /// What the player was told (shared with the next link).
    pub applied: Arc<Mutex<Applied>>,
    /// The fleet's light state: merged from every timeline, ours sent back when newer.
    pub lights: Arc<FleetLights>,
    /// Woken on every newer timeline: a sub-leader's publisher re-publishes it at once.
    pub wake: Arc<Notify>,
    /// The clock filter the SNTP task feeds: told when the leader restarts.
    pub filter: Arc<Mutex<ClockFilter>>,
    /// Relayed requests waiting for the leader's verdict.
    pub pending: Arc<crate::fleet::relay::Pending>,
}

/// Subscribe to the leader, follow its timeline, relay commands; runs until aborted.
pub async fn follow_timeline(mut link: Link) {
    let Ok(hello) = timeline::subscribe_message(&link.id) else {
        return;
    };
    let mut resubscribe = tokio::time::Instant::now();
    let parser = CommandParser::new();
    let mut buf = [0u8; 1500];
    let mut waiting = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(resubscribe) => {
                link.send(&hello).await;
                let fresh = link.net.lock().is_ok_and(|n| n.fresh(mono_ns()));
                resubscribe = tokio::time::Instant::now() + resubscribe_period(fresh, link.follow.resubscribe);
            }
            Some(bytes) = link.relay.recv() => link.send(&bytes).await,
            r = link.sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let now = link.fleet_now();
                let Ok(v) = link.security.open(src, &buf[..n], TrafficClass::Timing, now) else {
                    continue; // refused and counted by the guard
                };
                if let Some((id, verdict)) = crate::fleet::relay::decode_verdict(v.payload) {
                    if !link.pending.settle(id, verdict) {
                        tracing::debug!("a verdict for request {id} came too late");
                    }
                    continue;
                }
                let Ok((tl, extra)) = Timeline::decode(v.payload) else {
                    tracing::debug!("ignoring a fleet datagram that is not a timeline");
                    continue;
                };
                // The leader's light state: take what is newer, send back what is ours.
                for newer in link.lights.merge(&lights::entries(&parser, &extra)) {
                    if let Some(bytes) = newer.encode() {
                        link.send(&bytes).await;
                    }
                }
                // The Link beat the fleet flashes on: the leader's, or none.
                link.lights.link().hear(&extra, mono_ns());
                link.counters.timelines.fetch_add(1, Relaxed);
                let Ok(Take { newer, restarted }) =
                    link.net.lock().map(|mut state| take(&mut state, &tl, mono_ns()))
                else {
                    continue;
                };
                if restarted {
                    tracing::info!(
                        "{} restarted (incarnation {}): re-joining its new timeline",
                        tl.leader,
                        tl.incarnation
                    );
                    if let Ok(mut f) = link.filter.lock() {
                        f.expect_step();
                    }
                }
                if newer {
                    link.wake.notify_one();
                }
                // A timeline that needed a clock estimate we did not have yet is applied
                // again when it is republished (same seq), so a start scheduled before
                // our first SNTP exchange is still started on its sample.
                if newer || waiting {
                    // Applying may open a track (file I/O): off the runtime's workers, and
                    // awaited, so timelines still apply in order.
                    let (applied, fleet, deck, follow) =
                        (link.applied.clone(), link.fleet.clone(), link.deck.clone(), link.follow);
                    let done = tokio::task::spawn_blocking(move || {
                        applied
                            .lock()
                            .map_or(Apply::Done, |mut a| a.apply(&tl, &fleet, deck.as_ref(), &follow))
                    })
                    .await;
                    waiting = matches!(done, Ok(Apply::NoEstimate));
                }
            }
        }
    }
}

/// How often a follower asks for the timeline while it holds none heard within
/// `sync.timeline_fresh_ms` (joining, or its leader silent): the subscription or the answer
/// may be lost, and waiting a whole `resubscribe_s` for the next try is what made a
/// joining bike lock a second late (docs/sync.md). Five a second stays within the leader's
/// sustained allowance for timing datagrams (`security.rate`, 10/s).
pub const JOIN_RESUBSCRIBE: Duration = Duration::from_millis(200);

/// The pause before the next subscription: `normal` (`sync.resubscribe_s`) while the
/// timeline held is fresh, [`JOIN_RESUBSCRIBE`] at most while it is not.
pub fn resubscribe_period(fresh: bool, normal: Duration) -> Duration {
    if fresh {
        normal
    } else {
        normal.min(JOIN_RESUBSCRIBE)
    }
}

/// What a received timeline did to the follower's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// It replaced the timeline held (apply it).
    pub newer: bool,
    /// It comes from a restart of the leader that published the one held (same id, another
    /// incarnation).
    pub restarted: bool,
}

/// Take an authentic timeline heard from upstream at monotonic `now` into `state`. It
/// replaces the one held when it [supersedes](Timeline::supersedes) it (another leader, a
/// later incarnation, a higher `seq`), or when the one held is stale (not heard within
/// `state.fresh_ns`: whatever upstream says now beats it, even a restarted leader whose
/// wall clock went back and whose incarnation is therefore lower). Any timeline of the
/// held one's incarnation refreshes it (a paused leader republishes the same `seq`).
pub fn take(state: &mut NetState, tl: &Timeline, now: u64) -> Take {
    let fresh = state.fresh(now);
    let (newer, refresh, restarted) = match state.timeline.as_ref() {
        None => (true, true, false),
        Some(old) => {
            let newer = tl.supersedes(old) || !fresh;
            let restarted = newer && tl.restarts(&old.leader, old.incarnation);
            (newer, newer || tl.same_source(old), restarted)
        }
    };
    if newer {
        state.timeline = Some(tl.clone());
    }
    if refresh {
        state.heard_mono_ns = now;
    }
    Take { newer, restarted }
}

impl Link {
    /// Fleet time now, once SNTP has given an estimate.
    fn fleet_now(&self) -> Option<u64> {
        Some(self.fleet.now()?.max(0) as u64)
    }

    async fn send(&self, payload: &[u8]) {
        // Stamped with fleet time when known, so the leader's freshness check holds
        // whatever this bike's own clock says.
        let now = self.fleet.now_or_local().max(0) as u64;
        match self.security.seal(payload, now) {
            Ok(bytes) => {
                if let Err(e) = self.sock.send_to(&bytes, self.leader).await {
                    tracing::debug!("to the leader {}: {e}", self.leader);
                }
            }
            Err(e) => tracing::warn!("cannot seal a fleet message: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(incarnation: u64, seq: i64) -> Timeline {
        Timeline {
            leader: "lead".into(),
            incarnation,
            seq,
            track: "song".into(),
            track_rate: 48_000,
            anchor_frame: 0.0,
            anchor_fleet_ns: 0,
            frames_per_sec: 48_000.0,
            playing: true,
            tempo_bpm: 0.0,
            epoch: 0,
        }
    }

    const S: u64 = 1_000_000_000;

    fn held(state: &NetState) -> (u64, i64) {
        let t = state.timeline.as_ref().expect("a timeline");
        (t.incarnation, t.seq)
    }

    /// The probe's case: a leader 26 s into its run (seq 500) restarts under the same id
    /// (seq 1). Its first timeline replaces the old one at once; stragglers of the old
    /// incarnation change nothing and refresh nothing.
    #[test]
    fn a_new_incarnation_at_seq_1_replaces_an_old_timeline_at_seq_500() {
        let mut state = NetState::default();
        assert!(take(&mut state, &tl(1_000, 500), 10 * S).newer);
        let got = take(&mut state, &tl(2_000, 1), 10 * S + S / 2);
        assert_eq!(
            got,
            Take {
                newer: true,
                restarted: true
            }
        );
        assert_eq!(held(&state), (2_000, 1));
        let straggler = take(&mut state, &tl(1_000, 501), 11 * S);
        assert!(!straggler.newer && !straggler.restarted);
        assert_eq!(held(&state), (2_000, 1));
        assert_eq!(state.heard_mono_ns, 10 * S + S / 2, "not refreshed by it");
        assert!(take(&mut state, &tl(2_000, 2), 11 * S).newer);
    }

    /// Joining (no timeline yet) or with a stale one, a follower asks again within 200 ms
    /// instead of a whole `resubscribe_s`; once it hears its leader, at the configured pace.
    #[test]
    fn a_follower_without_a_fresh_timeline_resubscribes_within_200_ms() {
        let normal = Duration::from_secs(1);
        let mut state = NetState::default();
        assert_eq!(resubscribe_period(state.fresh(S), normal), JOIN_RESUBSCRIBE);
        take(&mut state, &tl(1_000, 1), S);
        assert_eq!(resubscribe_period(state.fresh(S + S / 2), normal), normal);
        assert_eq!(
            resubscribe_period(state.fresh(3 * S), normal),
            JOIN_RESUBSCRIBE
        );
        // A configured pace faster than that is kept.
        let fast = Duration::from_millis(100);
        assert_eq!(resubscribe_period(false, fast), fast);
    }

    /// A paused leader republishes the same seq: that refreshes the timeline without
    /// replacing it. Another leader (a promotion) replaces it and is no restart.
    #[test]
    fn republished_copies_refresh_and_another_leader_is_no_restart() {
        let mut state = NetState::default();
        take(&mut state, &tl(1_000, 7), S);
        let again = take(&mut state, &tl(1_000, 7), 2 * S);
        assert!(!again.newer);
        assert_eq!(state.heard_mono_ns, 2 * S);
        assert!(state.fresh(2 * S + S / 2));
        let other = Timeline {
            leader: "next".into(),
            incarnation: 5,
            seq: 8,
            ..tl(5, 8)
        };
        assert_eq!(
            take(&mut state, &other, 3 * S),
            Take {
                newer: true,
                restarted: false
            }
        );
    }

    /// A leader restarted with its wall clock set back (a lower incarnation) is taken
    /// once the timeline held is stale, and from then on its own seq order holds.
    #[test]
    fn a_lower_incarnation_is_taken_once_the_old_timeline_is_stale() {
        let mut state = NetState::default();
        take(&mut state, &tl(9_000, 300), S);
        assert!(!take(&mut state, &tl(4_000, 1), S + S / 2).newer);
        let got = take(&mut state, &tl(4_000, 2), 2 * S + S / 10);
        assert_eq!(
            got,
            Take {
                newer: true,
                restarted: true
            }
        );
        assert!(take(&mut state, &tl(4_000, 3), 2 * S + S / 5).newer);
        assert!(!take(&mut state, &tl(4_000, 2), 2 * S + S / 4).newer);
    }
}
