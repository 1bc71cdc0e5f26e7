//! A simulated node for the web app: serves a [`NodeInbox`] by applying each [`Command`] to
//! the [`Snapshot`] it publishes, and animates position, beat and band meters and a small
//! fleet of peers. It stands in for `convoy node` when developing the app
//! (`cargo run --example web_demo`) and in the browser tests, where every command it
//! accepts is also copied to a channel the test reads.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::control::{
    Command, LightState, Meters, NodeInbox, PeerState, Refusal, Snapshot, SyncState,
};
use crate::led::protocol::Pattern;

/// Tempo of the simulated track.
const BPM: f64 = 124.0;
/// Tracks `next` cycles through.
const TRACKS: [&str; 3] = ["demo", "night-ride.flac", "sunset-cruise.mp3"];

/// The snapshot a demo node starts from: a leader with three followers.
pub fn initial_snapshot() -> Snapshot {
    let peer = |id: &str, addr: &str, err: f64| PeerState {
        id: id.into(),
        addr: addr.into(),
        role: "follower".into(),
        last_heard_ms: 120,
        playback_error_ms: Some(err),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    Snapshot {
        id: "bike-1".into(),
        role: "leader".into(),
        leader: Some("bike-1".into()),
        term: Some(1),
        upstream: None,
        publishes: true,
        track: Some(TRACKS[0].into()),
        playing: false,
        position_ms: Some(0.0),
        duration_ms: Some(16.0 * 4.0 * 60_000.0 / BPM),
        tempo_bpm: Some(BPM),
        show: Some("night-ride".into()),
        cue: None,
        light: LightState {
            pattern: "rainbow".into(),
            hue: 200,
            bright: 0.8,
            color: [255, 120, 0],
            link: "sim".into(),
        },
        sync: SyncState {
            offset_ms: Some(0.0),
            clock_ppm: Some(0.0),
            playback_error_ms: Some(0.0),
            locked: true,
            clock_bound_ms: Some(2.0),
        },
        peers: vec![
            peer("bike-2", "192.168.4.2:9123", 0.12),
            peer("bike-3", "192.168.4.3:9123", -0.31),
            peer("bike-4", "192.168.4.4:9123", 0.48),
        ],
        meters: Meters {
            beat: 0,
            beat_in_bar: Some(1),
            bands: vec![0.0; 3],
        },
        rejected: Default::default(),
        link: None,
    }
}

/// Apply `command` to `s`, or say why the demo node refuses it.
pub fn apply(s: &mut Snapshot, command: &Command) -> Result<(), Refusal> {
    match command {
        Command::Play { track } => {
            if let Some(t) = track {
                s.track = Some(t.clone());
            }
            s.playing = true;
        }
        Command::Stop => {
            s.playing = false;
            s.position_ms = Some(0.0);
        }
        Command::Pause => s.playing = false,
        Command::Seek { position_ms } => {
            let end = s.duration_ms.unwrap_or(f64::MAX);
            if *position_ms > end {
                return Err(Refusal::BeyondEnd {
                    track: s.track.clone().unwrap_or_default(),
                    position_s: position_ms / 1e3,
                    length_s: end / 1e3,
                });
            }
            s.position_ms = Some(*position_ms);
        }
        Command::Next => {
            let i = TRACKS
                .iter()
                .position(|t| Some(*t) == s.track.as_deref())
                .map_or(0, |i| (i + 1) % TRACKS.len());
            s.track = Some(TRACKS[i].into());
            s.position_ms = Some(0.0);
        }
        Command::ShowLoad { name } => s.show = Some(name.clone()),
        Command::Pattern { name } => {
            let p =
                Pattern::from_name(name).ok_or_else(|| Refusal::UnknownPattern(name.clone()))?;
            s.light.pattern = p.name().into();
        }
        Command::Hue { degrees } => s.light.hue = degrees % 360,
        Command::Bright { level } => s.light.bright = level.clamp(0.0, 1.0),
        Command::Color { r, g, b } => s.light.color = [*r, *g, *b],
        other => return Err(Refusal::not_for(other, "demo node")),
    }
    Ok(())
}

/// Serve `inbox` until every handle is dropped, copying accepted commands to `seen`.
pub async fn run(mut inbox: NodeInbox, seen: Option<mpsc::UnboundedSender<Command>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut t = 0.0f64;
    loop {
        tokio::select! {
            request = inbox.requests.recv() => {
                let Some(request) = request else { return };
                let mut verdict = Ok(());
                inbox.state.send_modify(|s| verdict = apply(s, &request.command));
                if verdict.is_ok() {
                    if let Some(seen) = &seen {
                        let _ = seen.send(request.command.clone());
                    }
                }
                request.answer(verdict);
            }
            _ = tick.tick() => {
                t += 0.05;
                inbox.state.send_modify(|s| animate(s, t, 50.0));
            }
        }
    }
}

/// Move the simulated show on by `dt_ms` at time `t` seconds.
fn animate(s: &mut Snapshot, t: f64, dt_ms: f64) {
    for (i, p) in s.peers.iter_mut().enumerate() {
        let phase = t * 0.7 + i as f64 * 2.1;
        p.playback_error_ms = Some(0.4 * phase.sin() + 0.1 * (3.0 * phase).cos());
        p.last_heard_ms = (80.0 + 60.0 * (t * 1.3 + i as f64).sin().abs()) as u64;
    }
    s.sync.playback_error_ms = Some(0.05 * (t * 0.9).sin());
    if !s.playing {
        s.meters.bands.iter_mut().for_each(|b| *b *= 0.8);
        return;
    }
    let pos = s.position_ms.unwrap_or(0.0) + dt_ms;
    let end = s.duration_ms.unwrap_or(f64::MAX);
    s.position_ms = Some(if pos >= end { 0.0 } else { pos });
    let beat_ms = 60_000.0 / BPM;
    let beats = (pos / beat_ms).floor();
    s.meters.beat = beats as u64;
    s.meters.beat_in_bar = Some((beats as u64 % 4) as u8 + 1);
    let since_beat = (pos - beats * beat_ms) / beat_ms;
    let kick = (1.0 - since_beat).powi(3);
    s.meters.bands = vec![
        (0.25 + 0.7 * kick) as f32,
        (0.45 + 0.3 * (t * 2.3).sin().abs()) as f32,
        (0.3 + 0.35 * (t * 5.1).sin().abs() * (1.0 - kick * 0.5)) as f32,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_change_the_snapshot_and_nonsense_is_refused() {
        let mut s = initial_snapshot();
        apply(&mut s, &Command::Play { track: None }).expect("play");
        assert!(s.playing);
        apply(&mut s, &Command::Next).expect("next");
        assert_eq!(s.track.as_deref(), Some(TRACKS[1]));
        apply(
            &mut s,
            &Command::Pattern {
                name: "Chase".into(),
            },
        )
        .expect("pattern");
        assert_eq!(s.light.pattern, "chase");
        assert!(apply(&mut s, &Command::Seek { position_ms: 1e12 }).is_err());
        assert!(apply(&mut s, &Command::Go).is_err());
        apply(&mut s, &Command::Stop).expect("stop");
        assert!(!s.playing);
    }

    #[test]
    fn playing_moves_position_and_beats() {
        let mut s = initial_snapshot();
        s.playing = true;
        for i in 0..40 {
            animate(&mut s, f64::from(i) * 0.05, 50.0);
        }
        assert_eq!(s.position_ms, Some(2000.0));
        assert_eq!(s.meters.beat, (2000.0 / (60_000.0 / BPM)) as u64);
        assert_eq!(s.meters.bands.len(), 3);
    }
}
