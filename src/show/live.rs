//! Live analysis for shows: a thread that decodes the playing track a little ahead of the
//! player with a second decoder and runs [`LiveAnalyzer`] on it, so beats, onsets and band
//! levels of tracks without a beatmap are known — at track frames — before they are heard.
//! It reads at most `ahead` frames past the heard position (the runner moves the horizon),
//! so it costs one extra decode of the track spread over its length.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::analysis::{AnalysisParams, Event, LiveAnalyzer};

/// What the feed reports, at track frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiveMsg {
    /// A predicted beat.
    Beat(u64),
    /// A detected onset.
    Onset(u64),
    /// Low/mid/high levels 0..=1 of the hop starting at this frame.
    Bands(u64, [f32; 3]),
    /// A tempo estimate.
    Tempo(f32),
    /// The track could not be read; no more messages.
    Failed,
}

/// Messages buffered between the feed and the runner (a few seconds of hops).
const QUEUE: usize = 1024;

/// Band levels the feed has delivered, kept from the one heard now to the
/// newest (the feed reads up to `ahead` frames past what is heard, one entry
/// per analysis hop: 2 s ahead at hop 256 is 345 entries). Entries are
/// dropped once a later one is heard, not by count: a count cap that was
/// right for one hop and read-ahead lost the heard levels at another.
#[derive(Debug, Default)]
pub struct LiveBands {
    levels: std::collections::VecDeque<(u64, [f32; 3])>,
}

impl LiveBands {
    /// Entries kept at most, whatever the feed sends (30 s of 5.8 ms hops
    /// is about 5200): a bound on memory, not a working limit.
    const MAX: usize = 8192;

    /// Appends the levels of the hop starting at `frame` (frames ascend).
    pub fn push(&mut self, frame: u64, levels: [f32; 3]) {
        if self.levels.len() >= Self::MAX {
            self.levels.pop_front();
        }
        self.levels.push_back((frame, levels));
    }

    /// Drops every entry before the one covering `heard`.
    pub fn heard(&mut self, heard: u64) {
        while self.levels.get(1).is_some_and(|&(f, _)| f <= heard) {
            self.levels.pop_front();
        }
    }

    /// The levels of the hop covering `frame`, if the feed has delivered it.
    pub fn at(&self, frame: u64) -> Option<[f32; 3]> {
        let i = self.levels.partition_point(|&(f, _)| f <= frame);
        i.checked_sub(1)
            .and_then(|i| self.levels.get(i))
            .map(|&(_, b)| b)
    }

    /// Forgets everything (a seek or a new track).
    pub fn clear(&mut self) {
        self.levels.clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}
/// Frames decoded per read.
const BLOCK: usize = 1024;

/// A running live-analysis thread; stops when dropped.
#[derive(Debug)]
pub struct LiveFeed {
    /// Messages, in track order.
    pub rx: Receiver<LiveMsg>,
    /// The feed reads up to `horizon + ahead` frames; the runner stores the heard frame.
    pub horizon: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveFeed {
    /// Start analysing track `source` (as for [`crate::audio::open_track`]) from
    /// `start_frame`, reading at most `ahead_frames` past the horizon.
    pub fn start(source: &str, start_frame: u64, ahead_frames: u64) -> std::io::Result<LiveFeed> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let horizon = Arc::new(AtomicU64::new(start_frame));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, src) = (horizon.clone(), stop.clone(), source.to_string());
        let thread = std::thread::Builder::new()
            .name("convoy-show-live".into())
            .spawn(move || {
                if run(&src, start_frame, ahead_frames, &h, &s, &tx).is_err() {
                    let _ = tx.send(LiveMsg::Failed);
                }
            })?;
        Ok(LiveFeed {
            rx,
            horizon,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    source: &str,
    start: u64,
    ahead: u64,
    horizon: &AtomicU64,
    stop: &AtomicBool,
    tx: &SyncSender<LiveMsg>,
) -> Result<(), ()> {
    let mut src = crate::audio::open_track(source).map_err(|e| {
        tracing::warn!(track = source, error = %e, "live analysis cannot open the track");
    })?;
    if start > 0 {
        src.seek(start).map_err(|e| {
            tracing::warn!(track = source, error = %e, "live analysis cannot seek");
        })?;
    }
    let spec = src.spec();
    let ch = spec.channels.max(1);
    let mut analyzer = LiveAnalyzer::new(spec.sample_rate, &AnalysisParams::default());
    let (mut block, mut mono, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let mut read = start;
    let mut last_tempo = 0.0f32;
    while !stop.load(Ordering::Acquire) {
        if read > horizon.load(Ordering::Acquire) + ahead {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        block.clear();
        let n = src.read(&mut block, BLOCK).map_err(|e| {
            tracing::warn!(track = source, error = %e, "live analysis decode failed");
        })?;
        if n == 0 {
            return Ok(());
        }
        read += n as u64;
        mono.clear();
        mono.extend(
            block
                .chunks_exact(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32),
        );
        events.clear();
        analyzer.process_into(&mono, &mut events);
        for e in &events {
            let msg = match *e {
                Event::Beat(b) => LiveMsg::Beat(start + b.sample_pos),
                Event::Onset(o) => LiveMsg::Onset(start + o.sample_pos),
                Event::Bands(b) => LiveMsg::Bands(start + b.sample_pos, b.bands3),
                Event::Tempo(t) if (t.bpm - last_tempo).abs() > 0.05 => {
                    last_tempo = t.bpm;
                    LiveMsg::Tempo(t.bpm)
                }
                Event::Tempo(_) => continue,
            };
            // Beats and onsets must arrive; band levels may be dropped when the runner lags.
            let sent = match msg {
                LiveMsg::Bands(..) => match tx.try_send(msg) {
                    Err(TrySendError::Disconnected(_)) => Err(()),
                    _ => Ok(()),
                },
                _ => tx.send(msg).map_err(|_| ()),
            };
            if sent.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bands_keep_the_heard_hop_however_far_the_feed_reads_ahead() {
        // The feed 30 s ahead at hop 256 (44.1 kHz): 5168 hops past the heard one.
        let (hop, ahead) = (256u64, 30 * 44_100u64);
        let mut bands = LiveBands::default();
        let level = |f: u64| [(f / hop) as f32, 0.0, 0.0];
        for f in (0..=ahead).step_by(hop as usize) {
            bands.push(f, level(f));
        }
        assert_eq!(bands.at(1000), Some(level(768)), "heard hop lost");
        assert_eq!(bands.at(ahead + 10), Some(level(ahead - ahead % hop)));
        bands.heard(1000);
        assert_eq!(
            bands.at(1000),
            Some(level(768)),
            "the heard hop itself stays"
        );
        assert_eq!(bands.at(700), None, "hops before it are gone");
        assert_eq!(bands.len(), (ahead / hop + 1 - 3) as usize);
        bands.heard(ahead + hop * 4);
        assert_eq!(bands.len(), 1, "the newest stays until a later one comes");
        bands.clear();
        assert!(bands.is_empty() && bands.at(0).is_none());
        // A runaway feed is bounded.
        for f in 0..(LiveBands::MAX as u64 + 100) {
            bands.push(f, [0.0; 3]);
        }
        assert_eq!(bands.len(), LiveBands::MAX);
    }

    #[test]
    fn the_demo_track_yields_beats_near_124_bpm_ahead_of_the_horizon() {
        let rate = 44_100u64;
        let feed = LiveFeed::start("demo", 0, 12 * rate).expect("thread");
        let mut beats = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            match feed.rx.recv_timeout(Duration::from_secs(5)) {
                Ok(LiveMsg::Beat(f)) => beats.push(f),
                Ok(LiveMsg::Failed) => panic!("live feed failed"),
                Ok(_) => {}
                Err(_) => break, // reached horizon + ahead
            }
        }
        assert!(beats.len() >= 8, "only {} beats", beats.len());
        assert!(
            *beats.last().unwrap_or(&0) <= 13 * rate,
            "read past the horizon"
        );
        let tail = &beats[beats.len() - 6..];
        let period = (tail[5] - tail[0]) as f64 / 5.0 / rate as f64;
        let bpm = 60.0 / period;
        assert!((bpm - 124.0).abs() < 3.0, "{bpm} BPM");
    }
}
