//! DAW follow: the DAW's transport drives the fleet (`osc.follow`, docs/osc.md "DAW follow").
//!
//! [`Follower`] is a pure state machine. It is fed what the DAW reports — Reaper's default
//! OSC pattern (`Default.ReaperOSC`: `/play`, `/pause`, `/stop`, `/record` as `t` toggles
//! sent as a float 0/1, `/time f` seconds, `/beat/str s`, `/tempo/raw f`) or AbletonOSC's
//! listener replies (`/live/song/get/is_playing`, `/beat`, `/tempo`) — as [`DawEvent`]s,
//! together with what the fleet plays now ([`Ours`]), and answers with the node
//! [`Command`]s that make the fleet follow:
//! - play (and record) starts at the DAW's cursor, the last position it reported;
//! - pause pauses where the fleet is; stop pauses and rewinds to where play started (Reaper
//!   keeps the project and returns the play cursor to the edit cursor), so the track stays;
//! - a reported position further than `seek_ms` from the fleet's is sought, otherwise left
//!   alone: the leader's playback runs on its own sample clock with no external rate input
//!   (the PLL slews followers onto the leader's timeline, not the leader onto a DAW), so a
//!   DAW whose audio clock drifts against ours is caught by a seek once the drift reaches
//!   the threshold.
//!
//! Starting and seeking while playing take effect `lead_ms` after the command (a scheduled
//! start, `sync.start_lead_ms`, so every bike starts on the same sample): the target is the
//! DAW's position *then*, and the comparison waits until it has happened (`holdoff`).

/// What the DAW reported.
#[derive(Debug, Clone, PartialEq)]
pub enum DawEvent {
    /// Reaper's transport toggles, each with the state Reaper reports (1 on, 0 off). Reaper
    /// sends only the ones that changed, in the order record, stop, pause, play (its OSC
    /// surface's `SetPlayState`): paused is `/stop 1 /pause 1 /play 0`, stopped is
    /// `/stop 1 /play 0`, so the transport is judged from all four flags together.
    Play(bool),
    /// Reaper `/pause`.
    Pause(bool),
    /// Reaper `/stop`.
    Stop(bool),
    /// Reaper `/record` (records and plays).
    Record(bool),
    /// AbletonOSC `is_playing`: Live plays, or does not (Live's stop keeps the position: a
    /// pause).
    IsPlaying(bool),
    /// The DAW's position, seconds.
    Time(f64),
    /// Reaper `/beat/str`, `"bar.beat.hundredths"` (used when `/time` never comes).
    BeatString(String),
    /// AbletonOSC's song beat (integer beats from the song start).
    Beat(f64),
    /// Tempo, BPM.
    Tempo(f64),
}

/// The DAW's transport as its flags add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DawState {
    /// Stopped.
    Stopped,
    /// Paused.
    Paused,
    /// Playing or recording.
    Playing,
}

/// What the fleet plays now (from the node's snapshot on the live plane).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ours {
    /// A track is loaded (paused or playing).
    pub loaded: bool,
    /// It plays.
    pub playing: bool,
    /// The position heard now, ms.
    pub position_ms: Option<f64>,
}

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowConfig {
    /// A difference above this is sought, ms (`osc.follow_seek_ms`).
    pub seek_ms: f64,
    /// A start or a seek while playing is heard this long after it is asked, ms
    /// (`sync.start_lead_ms`).
    pub lead_ms: f64,
    /// After a command, positions are not compared for `lead_ms` plus this, ms.
    pub settle_ms: f64,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            seek_ms: 30.0,
            lead_ms: 300.0,
            settle_ms: 150.0,
        }
    }
}

/// The DAW's transport as reported, and what the fleet was told.
#[derive(Debug, Clone, Default)]
pub struct Follower {
    cfg: FollowConfig,
    /// Reaper's flags as last reported: play, pause, stop, record.
    flags: [bool; 4],
    /// The transport they add up to (`None`: nothing reported yet, so the first report
    /// acts whatever it is).
    state: Option<DawState>,
    /// The DAW plays (or records).
    playing: bool,
    /// Its last reported position, s, and when it was reported (ns, any monotonic clock).
    cursor: Option<(f64, u64)>,
    /// Where the current play started, s (stop rewinds there).
    started_at: Option<f64>,
    /// The DAW's tempo, BPM (for `/beat/str` and AbletonOSC beats).
    tempo: Option<f64>,
    /// `/time` was heard: `/beat/str` is then ignored.
    has_time: bool,
    /// No comparisons before this instant (ns).
    holdoff_until: u64,
    /// Seeks asked for (a figure for the tools).
    pub seeks: u64,
}

impl Follower {
    /// A follower with nothing heard yet.
    pub fn new(cfg: FollowConfig) -> Self {
        Follower {
            cfg,
            ..Follower::default()
        }
    }

    /// The DAW's position at `now_ns`, s, extrapolated while it plays.
    pub fn daw_position(&self, now_ns: u64) -> Option<f64> {
        self.cursor.map(|(s, at)| {
            if self.playing {
                s + now_ns.saturating_sub(at) as f64 / 1e9
            } else {
                s
            }
        })
    }

    /// The DAW's transport, as last reported.
    pub fn state(&self) -> Option<DawState> {
        self.state
    }

    /// Feed one report heard at `now_ns`; returns the commands to send, in order.
    pub fn event(&mut self, ev: DawEvent, now_ns: u64, ours: Ours) -> Vec<crate::control::Command> {
        use crate::control::Command as C;
        let [play, pause, stop, record] = &mut self.flags;
        match ev {
            DawEvent::Play(on) => *play = on,
            DawEvent::Pause(on) => *pause = on,
            DawEvent::Stop(on) => *stop = on,
            DawEvent::Record(on) => *record = on,
            DawEvent::IsPlaying(on) => self.flags = [on, !on, false, false],
            other => return self.report(other, now_ns, ours),
        }
        let [play, pause, stop, record] = self.flags;
        let state = match () {
            _ if play || record => DawState::Playing,
            _ if pause => DawState::Paused,
            _ if stop => DawState::Stopped,
            // Between two messages of one change (`/stop 0` before `/play 1`).
            _ => return Vec::new(),
        };
        if Some(state) == self.state {
            return Vec::new();
        }
        self.state = Some(state);
        match state {
            DawState::Playing => {
                self.playing = true;
                let at = self.cursor.map_or(0.0, |(s, _)| s);
                self.cursor = Some((at, now_ns));
                self.started_at = Some(at);
                self.hold(now_ns, true);
                // Heard lead_ms from now, when the DAW will be lead_ms further on.
                let target = C::Seek {
                    position_ms: at * 1e3 + self.cfg.lead_ms,
                };
                match (ours.loaded, ours.playing) {
                    // Paused: move the anchor (exact while paused), then resume from it.
                    (true, false) => vec![target, C::Play { track: None }],
                    (true, true) => vec![target],
                    // Nothing loaded: the playlist's track starts, then moves to the cursor.
                    (false, _) => vec![C::Play { track: None }, target],
                }
            }
            DawState::Paused => {
                self.stop_clock(now_ns);
                vec![C::Pause]
            }
            DawState::Stopped => {
                self.stop_clock(now_ns);
                let back = self.started_at.or(self.daw_position(now_ns)).unwrap_or(0.0);
                self.cursor = Some((back, now_ns));
                self.hold(now_ns, false);
                if ours.loaded {
                    vec![
                        C::Pause,
                        C::Seek {
                            position_ms: back * 1e3,
                        },
                    ]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// A position or tempo report.
    fn report(&mut self, ev: DawEvent, now_ns: u64, ours: Ours) -> Vec<crate::control::Command> {
        use crate::control::Command as C;
        match ev {
            DawEvent::Time(s) if s.is_finite() && s >= 0.0 => {
                self.has_time = true;
                self.position(s, now_ns, ours)
            }
            DawEvent::BeatString(b) if !self.has_time => match (beats_of(&b), self.tempo) {
                (Some(beats), Some(bpm)) => self.position(beats * 60.0 / bpm, now_ns, ours),
                _ => Vec::new(),
            },
            DawEvent::Beat(beats) => match self.tempo {
                Some(bpm) if beats.is_finite() && beats >= 0.0 => {
                    self.position(beats * 60.0 / bpm, now_ns, ours)
                }
                _ => Vec::new(),
            },
            DawEvent::Tempo(bpm) if bpm.is_finite() && bpm > 0.0 => {
                self.tempo = Some(bpm);
                vec![C::DawTempo { bpm: bpm as f32 }]
            }
            _ => Vec::new(),
        }
    }

    /// A reported position `s` at `now_ns`.
    fn position(&mut self, s: f64, now_ns: u64, ours: Ours) -> Vec<crate::control::Command> {
        use crate::control::Command as C;
        self.cursor = Some((s, now_ns));
        if now_ns < self.holdoff_until || !ours.loaded {
            return Vec::new();
        }
        let want_ms = s * 1e3;
        let off = ours.position_ms.map(|p| (p - want_ms).abs());
        if off.is_some_and(|d| d <= self.cfg.seek_ms) {
            return Vec::new();
        }
        self.seeks += 1;
        let playing = self.playing && ours.playing;
        self.hold(now_ns, playing);
        vec![C::Seek {
            position_ms: if playing {
                want_ms + self.cfg.lead_ms
            } else {
                want_ms
            },
        }]
    }

    fn stop_clock(&mut self, now_ns: u64) {
        if self.playing {
            self.cursor = self.daw_position(now_ns).map(|s| (s, now_ns));
        }
        self.playing = false;
    }

    /// After a start or a seek while playing (heard `lead_ms` later), positions are not
    /// compared until it has been heard and settled. A seek while paused is exact at once
    /// and repeating it is harmless, so it holds nothing off (a stopped DAW reports its
    /// cursor only when it moves: no report may be ignored then).
    fn hold(&mut self, now_ns: u64, scheduled: bool) {
        if scheduled {
            let ms = self.cfg.settle_ms + self.cfg.lead_ms;
            self.holdoff_until = now_ns + (ms * 1e6) as u64;
        }
    }
}

/// Beats from the song start in Reaper's `/beat/str` (`"bar.beat.hundredths"`, 1-based bar
/// and beat; 4 beats to the bar, as Reaper's default project).
pub fn beats_of(s: &str) -> Option<f64> {
    let mut it = s.trim().split('.');
    let bar: f64 = it.next()?.parse().ok()?;
    let beat: f64 = it.next()?.parse().ok()?;
    let frac: f64 = match it.next() {
        Some(f) if !f.is_empty() => format!("0.{f}").parse().ok()?,
        _ => 0.0,
    };
    let beats = (bar - 1.0) * 4.0 + (beat - 1.0) + frac;
    (beats.is_finite() && beats >= 0.0).then_some(beats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Command as C;

    const MS: u64 = 1_000_000;

    fn follower() -> Follower {
        Follower::new(FollowConfig {
            seek_ms: 30.0,
            lead_ms: 300.0,
            settle_ms: 150.0,
        })
    }

    fn paused(at_ms: f64) -> Ours {
        Ours {
            loaded: true,
            playing: false,
            position_ms: Some(at_ms),
        }
    }

    #[test]
    fn play_starts_at_the_daws_cursor_heard_after_the_lead() {
        let mut f = follower();
        assert_eq!(
            f.event(DawEvent::Time(12.5), 0, paused(0.0)),
            vec![C::Seek {
                position_ms: 12_500.0
            }],
            "the cursor moved while stopped: seek there (paused)"
        );
        assert_eq!(
            f.event(DawEvent::Stop(false), 200 * MS, paused(12_500.0)),
            vec![],
            "between two messages of one change"
        );
        assert_eq!(
            f.event(DawEvent::Play(true), 200 * MS, paused(12_500.0)),
            vec![
                C::Seek {
                    position_ms: 12_800.0
                },
                C::Play { track: None }
            ]
        );
        // Nothing loaded yet: the track starts, then moves to the cursor.
        let mut g = follower();
        g.event(DawEvent::Time(12.5), 0, Ours::default());
        assert_eq!(
            g.event(DawEvent::Play(true), 0, Ours::default()),
            vec![
                C::Play { track: None },
                C::Seek {
                    position_ms: 12_800.0
                }
            ]
        );
    }

    #[test]
    fn positions_within_the_threshold_are_left_alone_and_a_jump_is_sought() {
        let mut f = follower();
        f.event(DawEvent::Time(10.0), 0, paused(10_000.0));
        f.event(DawEvent::Play(true), 0, paused(10_000.0));
        let playing = |ms| Ours {
            loaded: true,
            playing: true,
            position_ms: Some(ms),
        };
        // Within the hold-off (lead + settle = 450 ms) nothing is compared.
        assert!(f
            .event(DawEvent::Time(10.1), 100 * MS, playing(0.0))
            .is_empty());
        assert!(f
            .event(DawEvent::Time(11.0), 1000 * MS, playing(11_020.0))
            .is_empty());
        assert_eq!(
            f.event(DawEvent::Time(25.0), 1030 * MS, playing(11_050.0)),
            vec![C::Seek {
                position_ms: 25_300.0
            }]
        );
        assert_eq!(f.seeks, 1);
    }

    #[test]
    fn stop_keeps_the_track_and_rewinds_to_where_play_started() {
        let mut f = follower();
        f.event(DawEvent::Time(4.0), 0, paused(4000.0));
        f.event(DawEvent::Play(true), 0, paused(4000.0));
        // Reaper stopping: `/stop 1 /play 0`.
        assert_eq!(
            f.event(DawEvent::Stop(true), 5000 * MS, paused(9000.0)),
            vec![]
        );
        assert_eq!(
            f.event(DawEvent::Play(false), 5000 * MS, paused(9000.0)),
            vec![
                C::Pause,
                C::Seek {
                    position_ms: 4000.0
                }
            ]
        );
        assert_eq!(f.state(), Some(DawState::Stopped));
        assert_eq!(f.daw_position(9000 * MS), Some(4.0));
        // Reaper pausing: `/stop 1 /pause 1 /play 0` keeps the place.
        let mut g = follower();
        g.event(DawEvent::Time(4.0), 0, paused(4000.0));
        g.event(DawEvent::Play(true), 0, paused(4000.0));
        assert!(g
            .event(DawEvent::Stop(true), 2000 * MS, paused(6000.0))
            .is_empty());
        assert!(g
            .event(DawEvent::Pause(true), 2000 * MS, paused(6000.0))
            .is_empty());
        assert_eq!(
            g.event(DawEvent::Play(false), 2000 * MS, paused(6000.0)),
            vec![C::Pause]
        );
        assert_eq!(g.state(), Some(DawState::Paused));
        assert_eq!(g.daw_position(3000 * MS), Some(6.0));
        // From paused to stopped Reaper sends only `/pause 0`.
        assert_eq!(
            g.event(DawEvent::Pause(false), 3000 * MS, paused(6000.0)),
            vec![
                C::Pause,
                C::Seek {
                    position_ms: 4000.0
                }
            ]
        );
        // AbletonOSC: is_playing 0 is Live's stop, which keeps the position.
        let mut h = follower();
        h.event(DawEvent::IsPlaying(true), 0, paused(0.0));
        assert_eq!(
            h.event(DawEvent::IsPlaying(false), 0, paused(0.0)),
            vec![C::Pause]
        );
    }

    #[test]
    fn tempo_and_beats() {
        assert_eq!(beats_of("1.1.00"), Some(0.0));
        assert_eq!(beats_of("4.2.50"), Some(13.5));
        assert_eq!(beats_of("x"), None);
        let mut f = follower();
        assert_eq!(
            f.event(DawEvent::Tempo(120.0), 0, Ours::default()),
            vec![C::DawTempo { bpm: 120.0 }]
        );
        assert_eq!(
            f.event(DawEvent::BeatString("4.2.50".into()), 0, paused(0.0)),
            vec![C::Seek {
                position_ms: 6750.0
            }]
        );
        assert_eq!(
            f.event(DawEvent::Beat(16.0), 1000 * MS, paused(0.0)),
            vec![C::Seek {
                position_ms: 8000.0
            }]
        );
    }
}
