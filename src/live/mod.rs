//! The live plane: what moves with the music, apart from the 1 Hz status snapshot. The show
//! runner (with a show, or the default look on any track) is its one producer: it posts the
//! player's *books* (which track frame is heard at which monotonic instant, at what rate),
//! the band levels and tempo as streams, and every beat as an *event* stamped with the
//! instant it is heard, announced `show.live_lead_ms` before that instant. Consumers — the
//! WLED sender, OSC feedback and outbound, the WebSocket, the EchoFlux-style API — each read
//! it at their own pace: they wake at their own rate and at each beat's heard instant, and
//! compute the position for the instant they send ([`LiveBus::view`]), never from a stale
//! copy. Lock-light: one short-held mutex and a watch channel that wakes consumers when a
//! beat is announced; nothing here runs in the audio callback.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Beats kept (announced ahead and recently heard).
const BEATS: usize = 64;

/// The player's books: track frame `frame` is heard at monotonic `heard_at_ns`, and the
/// track advances `rate · (1 + speed_ppm·1e-6)` frames per second from there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Books {
    /// Track playing (the player's name for it).
    pub track: Option<String>,
    /// A track frame and the instant it is heard.
    pub frame: f64,
    /// Monotonic ns `frame` is heard at.
    pub heard_at_ns: u64,
    /// Track sample rate.
    pub rate: u32,
    /// Playback speed adjustment, ppm.
    pub speed_ppm: f64,
    /// Playing (not paused, not finished).
    pub playing: bool,
    /// Track length in frames, when known.
    pub frames: Option<u64>,
}

impl Books {
    /// The frame heard at monotonic `now` (it stands still unless playing).
    pub fn frame_at(&self, now: u64) -> f64 {
        if !self.playing {
            return self.frame;
        }
        let dt = (now as i64 - self.heard_at_ns as i64) as f64 * 1e-9;
        self.frame + dt * f64::from(self.rate.max(1)) * (1.0 + self.speed_ppm * 1e-6)
    }

    /// The position heard at `now`, ms (clamped to the track).
    pub fn position_ms_at(&self, now: u64) -> f64 {
        let mut frame = self.frame_at(now).max(0.0);
        if let Some(len) = self.frames {
            frame = frame.min(len as f64);
        }
        frame / f64::from(self.rate.max(1)) * 1e3
    }
}

/// One beat, stamped with the instant it is heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// Beats since the track started, 1-based.
    pub number: u64,
    /// Beat within the bar, 1-based, when known.
    pub in_bar: Option<u8>,
    /// Monotonic ns it is heard at.
    pub heard_ns: u64,
}

/// What the live plane says at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveView {
    /// The player's books (None: nothing has been posted yet).
    pub books: Option<Books>,
    /// Position heard at the instant asked for, ms.
    pub position_ms: Option<f64>,
    /// The last beat heard by then.
    pub beat: Option<Beat>,
    /// Band levels 0..=1, low to high (empty: none yet).
    pub bands: Vec<f32>,
    /// Tempo, BPM.
    pub tempo_bpm: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    books: Option<Books>,
    beats: VecDeque<Beat>,
    bands: Vec<f32>,
    tempo_bpm: Option<f64>,
}

/// The node's live plane; cheap to clone, every clone is the same plane.
#[derive(Debug, Clone)]
pub struct LiveBus {
    state: Arc<Mutex<State>>,
    /// Bumped when a beat is announced (or the beats are reset), so consumers re-plan
    /// their next wake.
    announced: Arc<watch::Sender<u64>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        LiveBus {
            state: Arc::default(),
            announced: Arc::new(watch::channel(0).0),
        }
    }
}

impl LiveBus {
    /// An empty plane.
    pub fn new() -> Self {
        Self::default()
    }

    /// Post the player's books (the producer does so on every pass, tens of times a second).
    pub fn set_books(&self, books: Books) {
        if let Ok(mut s) = self.state.lock() {
            let new_track = s.books.as_ref().map(|b| &b.track) != Some(&books.track);
            s.books = Some(books);
            if new_track {
                s.beats.clear();
                s.bands.clear();
                s.tempo_bpm = None;
                drop(s);
                self.announced.send_modify(|n| *n += 1);
            }
        }
    }

    /// Nothing is playing any more.
    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::default();
        }
        self.announced.send_modify(|n| *n += 1);
    }

    /// Announce a beat heard at `beat.heard_ns` (ahead of it where the producer can). A
    /// beat not after the last one announced replaces what followed it (a seek).
    pub fn announce(&self, beat: Beat) {
        if let Ok(mut s) = self.state.lock() {
            while s.beats.back().is_some_and(|b| b.heard_ns >= beat.heard_ns) {
                s.beats.pop_back();
            }
            if s.beats.len() >= BEATS {
                s.beats.pop_front();
            }
            s.beats.push_back(beat);
        }
        self.announced.send_modify(|n| *n += 1);
    }

    /// Forget announced beats not yet heard at `now` (a seek or a jump made them wrong).
    pub fn retract_after(&self, now: u64) {
        if let Ok(mut s) = self.state.lock() {
            while s.beats.back().is_some_and(|b| b.heard_ns > now) {
                s.beats.pop_back();
            }
        }
        self.announced.send_modify(|n| *n += 1);
    }

    /// Post band levels (low to high, 0..=1).
    pub fn set_bands(&self, bands: &[f32]) {
        if let Ok(mut s) = self.state.lock() {
            s.bands.clear();
            s.bands.extend_from_slice(bands);
        }
    }

    /// Post the tempo.
    pub fn set_tempo(&self, bpm: Option<f64>) {
        if let Ok(mut s) = self.state.lock() {
            s.tempo_bpm = bpm;
        }
    }

    /// Everything at monotonic instant `now`.
    pub fn view(&self, now: u64) -> LiveView {
        let Ok(s) = self.state.lock() else {
            return LiveView::default();
        };
        LiveView {
            position_ms: s.books.as_ref().map(|b| b.position_ms_at(now)),
            books: s.books.clone(),
            beat: s.beats.iter().rev().find(|b| b.heard_ns <= now).copied(),
            bands: s.bands.clone(),
            tempo_bpm: s.tempo_bpm,
        }
    }

    /// The first beat heard after `after` (monotonic ns), if one is announced.
    pub fn next_beat_after(&self, after: u64) -> Option<Beat> {
        let s = self.state.lock().ok()?;
        s.beats.iter().find(|b| b.heard_ns > after).copied()
    }

    /// A receiver that changes whenever beats are announced or reset.
    pub fn announcements(&self) -> watch::Receiver<u64> {
        self.announced.subscribe()
    }
}

/// Sleep until monotonic instant `at_ns` on the tokio timer (which fires up to ~1 ms late);
/// at once if it has passed.
pub async fn sleep_until_mono(at_ns: u64) {
    let now = crate::clock::mono_ns();
    if at_ns > now {
        tokio::time::sleep(std::time::Duration::from_nanos(at_ns - now)).await;
    }
}

/// Sleep until the first beat heard after `after`, if one is announced (else forever: the
/// caller also waits on [`LiveBus::announcements`]).
pub async fn next_beat(bus: &LiveBus, after: u64) -> Beat {
    match bus.next_beat_after(after) {
        Some(b) => {
            sleep_until_mono(b.heard_ns).await;
            b
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(frame: f64, at: u64, playing: bool) -> Books {
        Books {
            track: Some("t".into()),
            frame,
            heard_at_ns: at,
            rate: 48_000,
            speed_ppm: 0.0,
            playing,
            frames: Some(480_000),
        }
    }

    #[test]
    fn the_position_is_computed_for_the_instant_asked() {
        let bus = LiveBus::new();
        assert_eq!(bus.view(0).position_ms, None);
        bus.set_books(books(48_000.0, 1_000_000_000, true));
        let at = |ns| bus.view(ns).position_ms.expect("position");
        assert!((at(1_000_000_000) - 1000.0).abs() < 1e-9);
        assert!((at(1_250_000_000) - 1250.0).abs() < 1e-9);
        assert!(
            (at(99_000_000_000) - 10_000.0).abs() < 1e-9,
            "clamped to the end"
        );
        bus.set_books(books(48_000.0, 1_000_000_000, false));
        assert!(
            (at(5_000_000_000) - 1000.0).abs() < 1e-9,
            "paused stands still"
        );
    }

    #[test]
    fn beats_count_when_heard_and_a_seek_replaces_the_announced_ones() {
        let bus = LiveBus::new();
        bus.set_books(books(0.0, 0, true));
        let mut rx = bus.announcements();
        for n in 1..=4u64 {
            bus.announce(Beat {
                number: n,
                in_bar: Some(((n - 1) % 4 + 1) as u8),
                heard_ns: n * 500,
            });
        }
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        assert_eq!(bus.view(999).beat.map(|b| b.number), Some(1));
        assert_eq!(bus.view(1000).beat.map(|b| b.number), Some(2));
        assert_eq!(bus.next_beat_after(1000).map(|b| b.number), Some(3));
        // A seek back: the new beat at 1200 replaces those announced after it.
        bus.announce(Beat {
            number: 9,
            in_bar: None,
            heard_ns: 1200,
        });
        assert_eq!(bus.next_beat_after(1000).map(|b| b.number), Some(9));
        assert_eq!(bus.next_beat_after(1200), None);
        bus.retract_after(1000);
        assert_eq!(bus.next_beat_after(1000), None);
        assert!(rx.has_changed().expect("open"));
    }

    #[test]
    fn a_new_track_starts_the_plane_afresh() {
        let bus = LiveBus::new();
        bus.set_books(books(0.0, 0, true));
        bus.set_bands(&[0.5, 0.25, 0.1]);
        bus.set_tempo(Some(124.0));
        bus.announce(Beat {
            number: 1,
            in_bar: None,
            heard_ns: 10,
        });
        let mut other = books(0.0, 0, true);
        other.track = Some("u".into());
        bus.set_books(other);
        let v = bus.view(100);
        assert_eq!((v.beat, v.bands.len(), v.tempo_bpm), (None, 0, None));
    }
}
