//! Outbound OSC: the fleet's musical clock and levels for visuals software and DAWs.
//!
//! Configured destinations (`osc.outbound`) receive, from the control socket:
//!
//! | address | args | when |
//! |---|---|---|
//! | `/convoy/out/beat` | `i beat, i beat_in_bar` (0 = unknown) | every new beat |
//! | `/convoy/out/bar` | `i bar` (1-based, counted from the track start) | every downbeat |
//! | `/convoy/out/bands` | `f…` levels 0..1, low to high | on change, at most `outbound_hz` |
//! | `/convoy/out/position` | `f seconds` | on change, at most `outbound_hz` |
//! | `/convoy/out/playing` | `i 0/1` | on change |
//! | `/convoy/out/track` | `s name` | on change |
//! | `/convoy/out/tempo` | `f bpm` (0 = unknown) | on change |
//!
//! [`OutboundState`] is the pure part (what to send for a snapshot at an instant);
//! [`run_outbound`] drives it from snapshot changes, a tick at `outbound_hz` and the instant
//! each beat is heard (the live plane announces beats ahead), reading position, beat and
//! levels from the live plane at the instant of sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use tokio::net::UdpSocket;

use super::codec;
use crate::clock::mono_ns;
use crate::control::{NodeHandle, Snapshot};

/// What was last sent, to send only changes.
#[derive(Debug, Clone, Default)]
pub struct OutboundState {
    beat: u64,
    bar: u64,
    bands: Vec<f32>,
    position_ms: Option<f64>,
    playing: Option<bool>,
    track: Option<Option<String>>,
    tempo: Option<Option<f64>>,
    last_stream: Option<Instant>,
}

fn msg(addr: &str, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.to_string(),
        args,
    }
}

impl OutboundState {
    /// A state that has sent nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages due for `s` at `now`; band levels and position at most once per `period`.
    pub fn update(&mut self, s: &Snapshot, now: Instant, period: Duration) -> Vec<OscMessage> {
        let mut out = Vec::new();
        if self.playing != Some(s.playing) {
            self.playing = Some(s.playing);
            out.push(msg(
                "/convoy/out/playing",
                vec![OscType::Int(s.playing.into())],
            ));
        }
        if self.track.as_ref() != Some(&s.track) {
            self.track = Some(s.track.clone());
            let name = s.track.clone().unwrap_or_default();
            out.push(msg("/convoy/out/track", vec![OscType::String(name)]));
        }
        if self.tempo != Some(s.tempo_bpm) {
            self.tempo = Some(s.tempo_bpm);
            let bpm = s.tempo_bpm.unwrap_or(0.0) as f32;
            out.push(msg("/convoy/out/tempo", vec![OscType::Float(bpm)]));
        }
        let m = &s.meters;
        if m.beat < self.beat {
            // A new track (or a seek back): count beats and bars afresh.
            self.beat = 0;
            self.bar = 0;
        }
        if m.beat > self.beat {
            self.beat = m.beat;
            let in_bar = m.beat_in_bar.unwrap_or(0);
            out.push(msg(
                "/convoy/out/beat",
                vec![
                    OscType::Int(m.beat.min(i32::MAX as u64) as i32),
                    OscType::Int(in_bar.into()),
                ],
            ));
            if in_bar == 1 {
                self.bar += 1;
                out.push(msg(
                    "/convoy/out/bar",
                    vec![OscType::Int(self.bar.min(i32::MAX as u64) as i32)],
                ));
            }
        }
        // A quarter period of slack: a tick that fires a little early still sends, so the
        // streams go out at `outbound_hz`, not every other tick.
        let due = self
            .last_stream
            .is_none_or(|t| now.saturating_duration_since(t) >= period - period / 4);
        let bands_changed = self.bands != m.bands;
        let position_changed = self.position_ms != s.position_ms;
        if due && (bands_changed || position_changed) {
            self.last_stream = Some(now);
            if bands_changed {
                self.bands.clone_from(&m.bands);
                let levels = m.bands.iter().map(|&v| OscType::Float(v)).collect();
                out.push(msg("/convoy/out/bands", levels));
            }
            if position_changed {
                self.position_ms = s.position_ms;
                let secs = s.position_ms.unwrap_or(0.0) / 1000.0;
                out.push(msg(
                    "/convoy/out/position",
                    vec![OscType::Float(secs as f32)],
                ));
            }
        }
        out
    }
}

/// Sends outbound messages to `dests` from `socket` until the node's snapshot channel
/// closes. Send errors (an unreachable destination) are logged once per streak.
pub async fn run_outbound(
    socket: Arc<UdpSocket>,
    dests: Vec<SocketAddr>,
    handle: NodeHandle,
    period: Duration,
) {
    let mut rx = handle.watch();
    let mut state = OutboundState::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let live = handle.live().clone();
    let mut announced = live.announcements();
    let mut last = mono_ns();
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
            _ = crate::live::next_beat(&live, last) => {}
            r = announced.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        }
        last = mono_ns();
        rx.borrow_and_update();
        let snap = handle.snapshot_now();
        for m in state.update(&snap, Instant::now(), period) {
            let Ok(bytes) = codec::encode(&OscPacket::Message(m)) else {
                continue;
            };
            for d in &dests {
                match socket.send_to(&bytes, d).await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(dest = %d, error = %e, "outbound OSC send failed");
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Meters;

    fn addrs(v: &[OscMessage]) -> Vec<&str> {
        v.iter().map(|m| m.addr.as_str()).collect()
    }

    #[test]
    fn beats_bars_and_throttled_streams() {
        let period = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut st = OutboundState::new();
        let mut s = Snapshot {
            playing: true,
            track: Some("demo".into()),
            tempo_bpm: Some(124.0),
            position_ms: Some(0.0),
            ..Snapshot::default()
        };
        let first = st.update(&s, t0, period);
        assert_eq!(
            addrs(&first),
            [
                "/convoy/out/playing",
                "/convoy/out/track",
                "/convoy/out/tempo",
                "/convoy/out/position"
            ]
        );
        // Beats 1..=5 in 4/4: two downbeats, so bars 1 and 2.
        let mut bars = Vec::new();
        for b in 1..=5u64 {
            s.meters = Meters {
                beat: b,
                beat_in_bar: Some(((b - 1) % 4 + 1) as u8),
                bands: vec![],
            };
            for m in st.update(&s, t0, period) {
                if m.addr == "/convoy/out/bar" {
                    bars.push(m.args[0].clone());
                } else {
                    assert_eq!(m.addr, "/convoy/out/beat");
                    assert_eq!(m.args[0], OscType::Int(b as i32));
                }
            }
        }
        assert_eq!(bars, vec![OscType::Int(1), OscType::Int(2)]);
        // Levels: sent, then held back within the period, then the latest goes out.
        s.meters.bands = vec![0.5, 0.25];
        let t1 = t0 + Duration::from_millis(150);
        assert_eq!(addrs(&st.update(&s, t1, period)), ["/convoy/out/bands"]);
        s.meters.bands = vec![0.6, 0.2];
        assert!(st
            .update(&s, t1 + Duration::from_millis(50), period)
            .is_empty());
        let late = st.update(&s, t1 + Duration::from_millis(100), period);
        assert_eq!(late[0].args, vec![OscType::Float(0.6), OscType::Float(0.2)]);
        // A new track restarts the bar count.
        s.meters = Meters {
            beat: 1,
            beat_in_bar: Some(1),
            bands: vec![0.6, 0.2],
        };
        s.track = Some("next".into());
        let m = st.update(&s, t1 + Duration::from_secs(1), period);
        assert_eq!(
            addrs(&m),
            ["/convoy/out/track", "/convoy/out/beat", "/convoy/out/bar"]
        );
        assert_eq!(m[2].args, vec![OscType::Int(1)]);
    }
}
