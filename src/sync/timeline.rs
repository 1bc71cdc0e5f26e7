//! The fleet timeline: "track T, frame S is heard at fleet time X, advancing R frames per
//! fleet second". The leader measures it from its own playback and publishes it over OSC
//! (UDP) several times a second as a bundle whose timetag is X (OSC timetags share the NTP
//! format); followers compute where they should be at any fleet time from it. A timetag in
//! the future is a scheduled start.

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::clock::NtpTime;

/// OSC address of timeline messages.
pub const TIMELINE_ADDR: &str = "/convoy/sync/timeline";
/// OSC address followers use to ask the leader for the timeline.
pub const SUBSCRIBE_ADDR: &str = "/convoy/sync/subscribe";

/// One published timeline point.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Leader's vehicle id.
    pub leader: String,
    /// The leader's incarnation: its process's boot id ([`crate::clock::incarnation`]),
    /// so a leader restarted under the same id, whose `seq` starts again at 1, is told
    /// apart from the one before it (0: a sender that predates the field).
    pub incarnation: u64,
    /// Publication counter within one incarnation (newer wins).
    pub seq: i64,
    /// Track identifier (what every node opens).
    pub track: String,
    /// Track sample rate.
    pub track_rate: u32,
    /// Track frame heard at `anchor_fleet_ns`.
    pub anchor_frame: f64,
    /// Fleet time (ns) of the anchor.
    pub anchor_fleet_ns: i64,
    /// Track frames per fleet second.
    pub frames_per_sec: f64,
    /// Playing (false: paused/stopped at `anchor_frame`).
    pub playing: bool,
    /// Tempo, BPM (0 if unknown).
    pub tempo_bpm: f32,
    /// Playback epoch: the leader bumps it whenever its position jumps (track start, seek).
    /// A follower seeing a new epoch re-joins at once; any other large disagreement (for
    /// instance a leader clock step not yet seen through SNTP) is waited out first.
    pub epoch: i32,
}

/// Why a datagram is not a timeline message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimelineError {
    /// Not OSC.
    #[error("not an OSC packet: {0}")]
    Osc(String),
    /// OSC, but not a timeline bundle.
    #[error("not a timeline message")]
    NotTimeline,
    /// A timeline message with missing or mistyped arguments.
    #[error("malformed timeline message: {0}")]
    Malformed(&'static str),
}

impl Timeline {
    /// A leader's timeline before anything played, at fleet time `now_ns`: no track, not
    /// playing, `seq` 0 (so the first real timeline of the same incarnation supersedes it).
    pub fn idle(leader: &str, incarnation: u64, now_ns: i64) -> Timeline {
        Timeline {
            leader: leader.to_string(),
            incarnation,
            seq: 0,
            track: String::new(),
            track_rate: 48_000,
            anchor_frame: 0.0,
            anchor_fleet_ns: now_ns,
            frames_per_sec: 0.0,
            playing: false,
            tempo_bpm: 0.0,
            epoch: 0,
        }
    }

    /// Where the track is at fleet time `fleet_ns` (frames; may be negative before a
    /// scheduled start).
    pub fn frame_at(&self, fleet_ns: i64) -> f64 {
        if !self.playing {
            return self.anchor_frame;
        }
        self.anchor_frame + (fleet_ns - self.anchor_fleet_ns) as f64 * 1e-9 * self.frames_per_sec
    }

    /// Does this timeline replace `old` on a follower? Timelines are ordered by (leader,
    /// incarnation, seq): another leader's always does (a promoted follower continues the
    /// fleet's timeline under its own name), a later incarnation of the same leader does
    /// at once whatever its `seq` (a restarted leader counts from 1 again), and within
    /// one incarnation the higher `seq` does.
    pub fn supersedes(&self, old: &Timeline) -> bool {
        self.leader != old.leader
            || self.incarnation > old.incarnation
            || (self.incarnation == old.incarnation && self.seq > old.seq)
    }

    /// Is this from the same leader incarnation as `old` (a republished copy, or a
    /// newer point of the same timeline)?
    pub fn same_source(&self, old: &Timeline) -> bool {
        self.leader == old.leader && self.incarnation == old.incarnation
    }

    /// Is this timeline from a restart of the leader that published `old` (same id,
    /// another incarnation)? A follower treats it as a new epoch: it re-joins at once.
    pub fn restarts(&self, leader: &str, incarnation: u64) -> bool {
        self.leader == leader && self.incarnation != incarnation
    }

    /// Encode as an OSC bundle timetagged with the anchor's fleet time.
    pub fn to_osc(&self) -> Result<Vec<u8>, TimelineError> {
        self.to_osc_with(Vec::new())
    }

    /// [`Timeline::to_osc`] with more messages in the bundle after the timeline (the
    /// fleet's light state); a receiver that does not know them ignores them.
    pub fn to_osc_with(&self, extra: Vec<OscMessage>) -> Result<Vec<u8>, TimelineError> {
        let t = NtpTime::from_fleet_ns(self.anchor_fleet_ns);
        let msg = OscMessage {
            addr: TIMELINE_ADDR.to_string(),
            args: vec![
                OscType::String(self.leader.clone()),
                OscType::Long(self.seq),
                OscType::String(self.track.clone()),
                OscType::Int(self.track_rate as i32),
                OscType::Double(self.anchor_frame),
                OscType::Double(self.frames_per_sec),
                OscType::Bool(self.playing),
                OscType::Float(self.tempo_bpm),
                OscType::Int(self.epoch),
                // Bit-for-bit: OSC has no unsigned 64-bit type.
                OscType::Long(self.incarnation as i64),
            ],
        };
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: OscTime {
                seconds: t.seconds(),
                fractional: t.fraction(),
            },
            content: std::iter::once(msg)
                .chain(extra)
                .map(OscPacket::Message)
                .collect(),
        });
        rosc::encoder::encode(&bundle).map_err(|e| TimelineError::Osc(e.to_string()))
    }

    /// Decode a timeline bundle.
    pub fn from_osc(bytes: &[u8]) -> Result<Timeline, TimelineError> {
        Timeline::decode(bytes).map(|(t, _)| t)
    }

    /// Decode a timeline bundle and the other messages it carries.
    pub fn decode(bytes: &[u8]) -> Result<(Timeline, Vec<OscMessage>), TimelineError> {
        let (_, packet) =
            rosc::decoder::decode_udp(bytes).map_err(|e| TimelineError::Osc(e.to_string()))?;
        let OscPacket::Bundle(bundle) = packet else {
            return Err(TimelineError::NotTimeline);
        };
        let Some(OscPacket::Message(msg)) = bundle.content.first() else {
            return Err(TimelineError::NotTimeline);
        };
        if msg.addr != TIMELINE_ADDR {
            return Err(TimelineError::NotTimeline);
        }
        let a = &msg.args;
        let (
            Some(OscType::String(leader)),
            Some(OscType::Long(seq)),
            Some(OscType::String(track)),
            Some(OscType::Int(rate)),
            Some(OscType::Double(frame)),
            Some(OscType::Double(fps)),
            Some(OscType::Bool(playing)),
            Some(OscType::Float(tempo)),
            Some(OscType::Int(epoch)),
        ) = (
            a.first(),
            a.get(1),
            a.get(2),
            a.get(3),
            a.get(4),
            a.get(5),
            a.get(6),
            a.get(7),
            a.get(8),
        )
        else {
            return Err(TimelineError::Malformed("expected s h s i d d T/F f i [h]"));
        };
        if *rate <= 0 || !frame.is_finite() || !fps.is_finite() || *fps < 0.0 {
            return Err(TimelineError::Malformed(
                "rate, frame or speed out of range",
            ));
        }
        // Added after the first format: a sender without it is incarnation 0.
        let incarnation = match a.get(9) {
            Some(OscType::Long(i)) => *i as u64,
            None => 0,
            Some(_) => return Err(TimelineError::Malformed("incarnation is not an h")),
        };
        let t = NtpTime::from_parts(bundle.timetag.seconds, bundle.timetag.fractional);
        let timeline = Timeline {
            leader: leader.clone(),
            incarnation,
            seq: *seq,
            track: track.clone(),
            track_rate: *rate as u32,
            anchor_frame: *frame,
            anchor_fleet_ns: t.to_fleet_ns(),
            frames_per_sec: *fps,
            playing: *playing,
            tempo_bpm: *tempo,
            epoch: *epoch,
        };
        let extra = bundle
            .content
            .into_iter()
            .skip(1)
            .filter_map(|p| match p {
                OscPacket::Message(m) => Some(m),
                OscPacket::Bundle(_) => None,
            })
            .collect();
        Ok((timeline, extra))
    }
}

/// A follower's subscription request: `/convoy/sync/subscribe <vehicle id>`.
pub fn subscribe_message(vehicle: &str) -> Result<Vec<u8>, TimelineError> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: SUBSCRIBE_ADDR.to_string(),
        args: vec![OscType::String(vehicle.to_string())],
    }))
    .map_err(|e| TimelineError::Osc(e.to_string()))
}

/// The vehicle id in a subscription request, if `bytes` is one.
pub fn parse_subscribe(bytes: &[u8]) -> Option<String> {
    match rosc::decoder::decode_udp(bytes).ok()?.1 {
        OscPacket::Message(m) if m.addr == SUBSCRIBE_ADDR => match m.args.first() {
            Some(OscType::String(s)) if s.len() <= 64 => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_osc_with_a_nanosecond_timetag() {
        let t = Timeline {
            leader: "bike-1".into(),
            incarnation: 1,
            seq: 42,
            track: "pilot".into(),
            track_rate: 44_100,
            anchor_frame: 1_234_567.25,
            anchor_fleet_ns: 1_764_000_000_123_456_789,
            frames_per_sec: 44_100.0 * (1.0 + 37e-6),
            playing: true,
            tempo_bpm: 124.0,
            epoch: 3,
        };
        let back = Timeline::from_osc(&t.to_osc().expect("encode")).expect("decode");
        assert!((back.anchor_fleet_ns - t.anchor_fleet_ns).abs() <= 1);
        assert_eq!(
            Timeline {
                anchor_fleet_ns: t.anchor_fleet_ns,
                ..back
            },
            t
        );
        assert!(
            (t.frame_at(t.anchor_fleet_ns + 1_000_000_000) - t.anchor_frame - t.frames_per_sec)
                .abs()
                < 1e-6
        );
    }

    #[test]
    fn extra_messages_ride_along_and_old_readers_ignore_them() {
        let t = Timeline {
            leader: "bike-1".into(),
            incarnation: 1,
            seq: 1,
            track: "a.wav".into(),
            track_rate: 48_000,
            anchor_frame: 0.0,
            anchor_fleet_ns: 1_764_000_000_000_000_000,
            frames_per_sec: 48_000.0,
            playing: true,
            tempo_bpm: 0.0,
            epoch: 1,
        };
        let extra = OscMessage {
            addr: "/convoy/fleet/light".into(),
            args: vec![OscType::Long(7), OscType::String("bike-2".into())],
        };
        let bytes = t.to_osc_with(vec![extra.clone()]).expect("encode");
        let (back, got) = Timeline::decode(&bytes).expect("decode");
        assert_eq!((back.seq, back.epoch), (1, 1));
        assert_eq!(got, vec![extra]);
        assert_eq!(Timeline::from_osc(&bytes).map(|b| b.seq), Ok(1));
        assert!(Timeline::decode(&t.to_osc().expect("encode"))
            .expect("decode")
            .1
            .is_empty());
    }

    /// The incarnation rides along; a sender that predates it (nine arguments) decodes
    /// as incarnation 0, and old readers ignore the tenth argument.
    #[test]
    fn the_incarnation_round_trips_and_the_old_format_still_decodes() {
        let t = Timeline {
            leader: "bike-1".into(),
            incarnation: u64::MAX - 5,
            seq: 1,
            track: "a.wav".into(),
            track_rate: 48_000,
            anchor_frame: 0.0,
            anchor_fleet_ns: 1_764_000_000_000_000_000,
            frames_per_sec: 48_000.0,
            playing: true,
            tempo_bpm: 0.0,
            epoch: 1,
        };
        let bytes = t.to_osc().expect("encode");
        assert_eq!(
            Timeline::from_osc(&bytes).map(|b| b.incarnation),
            Ok(u64::MAX - 5)
        );
        let (_, packet) = rosc::decoder::decode_udp(&bytes).expect("osc");
        let OscPacket::Bundle(mut bundle) = packet else {
            panic!("a bundle");
        };
        if let Some(OscPacket::Message(m)) = bundle.content.first_mut() {
            m.args.truncate(9);
        }
        let old = rosc::encoder::encode(&OscPacket::Bundle(bundle)).expect("encode");
        assert_eq!(Timeline::from_osc(&old).map(|b| b.incarnation), Ok(0));
    }

    /// Ordered by (leader, incarnation, seq): a restart wins at seq 1.
    #[test]
    fn timelines_are_ordered_by_leader_incarnation_and_seq() {
        let t = |leader: &str, incarnation: u64, seq: i64| Timeline {
            leader: leader.into(),
            incarnation,
            seq,
            track: "a".into(),
            track_rate: 48_000,
            anchor_frame: 0.0,
            anchor_fleet_ns: 0,
            frames_per_sec: 48_000.0,
            playing: true,
            tempo_bpm: 0.0,
            epoch: 0,
        };
        let old = t("lead", 10, 500);
        assert!(t("lead", 11, 1).supersedes(&old));
        assert!(t("lead", 11, 1).restarts("lead", 10));
        assert!(!t("lead", 10, 499).supersedes(&old));
        assert!(t("lead", 10, 501).supersedes(&old));
        assert!(!t("lead", 9, 9_999).supersedes(&old));
        assert!(t("next", 1, 1).supersedes(&old));
        assert!(!t("next", 1, 1).restarts("lead", 10));
    }

    #[test]
    fn an_idle_timeline_decodes_and_the_first_real_one_supersedes_it() {
        let idle = Timeline::idle("lead", 10, 1_700_000_000_000_000_000);
        let bytes = idle.to_osc().expect("encode");
        let back = Timeline::from_osc(&bytes).expect("decode");
        assert_eq!(back, idle);
        assert!((back.track.is_empty(), back.playing) == (true, false));
        let mut first = idle.clone();
        first.seq = 1;
        first.track = "a".into();
        assert!(first.supersedes(&back));
        assert!(!back.supersedes(&first));
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert!(Timeline::from_osc(b"\x00\x01garbage").is_err());
        assert!(Timeline::from_osc(&subscribe_message("x").expect("enc")).is_err());
        assert_eq!(
            parse_subscribe(&subscribe_message("bike-7").expect("enc")).as_deref(),
            Some("bike-7")
        );
    }
}
