//! Decoding files with symphonia: WAV, FLAC, MP3, Ogg/Vorbis (and whatever else symphonia's
//! `all-codecs` brings) at any rate and channel count. A corrupt packet is skipped with a
//! warning and counted; a file that is not audio is an error naming the file. Seeks are
//! sample-accurate: symphonia seeks to a packet at or before the target and we drop the
//! frames in between.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{TimeBase, Timestamp};

use super::source::{AudioError, Source, TrackSpec};

/// Consecutive undecodable packets after which a track is declared broken.
const MAX_CONSECUTIVE_CORRUPT: u32 = 64;

/// A track decoded from a file.
pub struct FileSource {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    spec: TrackSpec,
    time_base: Option<TimeBase>,
    /// Decoded frames not yet handed out (interleaved, `spec.channels` wide).
    pending: Vec<f32>,
    /// Read index into `pending`, in samples.
    pending_at: usize,
    /// Track frame of the next frame `read` returns.
    position: u64,
    /// After a seek: frames still to drop before `position` is the requested frame.
    skip_to: Option<u64>,
    corrupt: u64,
    ended: bool,
    /// Track frame the next packet should start at; a later one means the demuxer dropped
    /// packets it could not parse (FLAC resyncs silently), which we fill with silence so the
    /// track's timeline — what fleet sync relies on — is unchanged.
    expected_frame: Option<u64>,
}

/// Largest gap (seconds) filled with silence; a larger jump re-anchors the position instead.
const MAX_GAP_FILL_SECS: u64 = 10;

impl FileSource {
    /// Open and probe a file.
    pub fn open(path: &Path) -> Result<FileSource, AudioError> {
        let file = File::open(path).map_err(|source| AudioError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file(file, path)
    }

    /// Probe an already opened `file` (named `path` in errors; its extension is a hint).
    pub fn from_file(file: File, path: &Path) -> Result<FileSource, AudioError> {
        let not_audio = |reason: String| AudioError::NotAudio {
            path: path.to_path_buf(),
            reason,
        };
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| not_audio(e.to_string()))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| not_audio("no audio track".into()))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| not_audio("no audio codec parameters".into()))?;
        let sample_rate = params
            .sample_rate
            .filter(|r| (1_000..=768_000).contains(r))
            .ok_or_else(|| not_audio("missing or absurd sample rate".into()))?;
        let channels = params
            .channels
            .as_ref()
            .map(|c| c.count())
            .filter(|c| (1..=32).contains(c))
            .ok_or_else(|| not_audio("missing or absurd channel count".into()))?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| not_audio(e.to_string()))?;
        let spec = TrackSpec {
            sample_rate,
            channels,
            frames: track.num_frames,
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            track_id: track.id,
            time_base: track.time_base,
            format,
            decoder,
            spec,
            pending: Vec::new(),
            pending_at: 0,
            position: 0,
            skip_to: None,
            corrupt: 0,
            ended: false,
            expected_frame: None,
        })
    }

    fn ts_to_frame(&self, ts: Timestamp) -> u64 {
        let ts = ts.get().max(0) as u128;
        match self.time_base {
            Some(tb) => {
                (ts * tb.numer.get() as u128 * self.spec.sample_rate as u128
                    / tb.denom.get() as u128) as u64
            }
            None => ts as u64,
        }
    }

    fn frame_to_ts(&self, frame: u64) -> Timestamp {
        let f = frame as u128;
        let ts = match self.time_base {
            Some(tb) => {
                f * tb.denom.get() as u128
                    / (tb.numer.get() as u128 * self.spec.sample_rate as u128)
            }
            None => f,
        };
        Timestamp::new(ts.min(i64::MAX as u128) as i64)
    }

    /// Decode the next packet into `pending`. Returns false at the end of the track.
    fn decode_next(&mut self) -> Result<bool, AudioError> {
        let mut consecutive = 0u32;
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false)
                }
                Err(SymError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(SymError::DecodeError(msg)) => {
                    self.note_corrupt(msg, &mut consecutive)?;
                    continue;
                }
                Err(e) => {
                    return Err(AudioError::Decode {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let packet_frame = self.ts_to_frame(packet.pts);
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    let channels = buf.spec().channels().count();
                    if channels != self.spec.channels || buf.frames() == 0 {
                        if channels != self.spec.channels {
                            self.note_corrupt(
                                "channel count changed mid-stream",
                                &mut consecutive,
                            )?;
                        }
                        continue;
                    }
                    let frames = buf.frames() as u64;
                    let gap = match (self.expected_frame, self.skip_to) {
                        (Some(e), None) if packet_frame > e => packet_frame - e,
                        _ => 0,
                    };
                    let gap = if gap > MAX_GAP_FILL_SECS * self.spec.sample_rate as u64 {
                        tracing::warn!(file = %self.path.display(), "timestamps jump by {gap} frames");
                        0
                    } else {
                        gap
                    };
                    if gap > 0 {
                        self.corrupt += 1;
                        tracing::warn!(file = %self.path.display(), "{gap} frames lost to a corrupt packet; playing silence");
                    }
                    self.expected_frame = Some(packet_frame + frames);
                    self.pending.clear();
                    self.pending_at = 0;
                    let silence = gap as usize * channels;
                    self.pending
                        .resize(silence + buf.samples_interleaved(), 0.0);
                    buf.copy_to_slice_interleaved(&mut self.pending[silence..]);
                    if let Some(target) = self.skip_to {
                        // First packet after a seek: anchor the position on its timestamp and
                        // drop the frames before the target.
                        self.position = packet_frame;
                        let frames = (self.pending.len() / channels) as u64;
                        if self.position + frames <= target {
                            self.position += frames;
                            self.pending.clear();
                            continue;
                        }
                        let drop = target.saturating_sub(self.position);
                        self.pending_at = drop as usize * channels;
                        self.position += drop;
                        self.skip_to = None;
                    }
                    return Ok(true);
                }
                Err(SymError::DecodeError(msg)) => self.note_corrupt(msg, &mut consecutive)?,
                Err(SymError::IoError(_)) => {
                    self.note_corrupt("truncated packet", &mut consecutive)?
                }
                Err(e) => {
                    return Err(AudioError::Decode {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    fn note_corrupt(&mut self, msg: &str, consecutive: &mut u32) -> Result<(), AudioError> {
        self.corrupt += 1;
        *consecutive += 1;
        tracing::warn!(file = %self.path.display(), "skipping corrupt packet: {msg}");
        if *consecutive >= MAX_CONSECUTIVE_CORRUPT {
            return Err(AudioError::Decode {
                path: self.path.clone(),
                reason: format!("{consecutive} consecutive corrupt packets (last: {msg})"),
            });
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn spec(&self) -> TrackSpec {
        self.spec
    }

    fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, AudioError> {
        let ch = self.spec.channels;
        while self.pending_at >= self.pending.len() {
            if self.ended || !self.decode_next()? {
                self.ended = true;
                return Ok(0);
            }
        }
        let available = (self.pending.len() - self.pending_at) / ch;
        let n = available.min(max_frames);
        out.extend_from_slice(&self.pending[self.pending_at..self.pending_at + n * ch]);
        self.pending_at += n * ch;
        self.position += n as u64;
        Ok(n)
    }

    fn seek(&mut self, frame: u64) -> Result<(), AudioError> {
        let ts = self.frame_to_ts(frame);
        let result = self.format.seek(
            SeekMode::Accurate,
            SeekTo::Timestamp {
                ts,
                track_id: self.track_id,
            },
        );
        self.decoder.reset();
        self.pending.clear();
        self.pending_at = 0;
        self.expected_frame = None;
        match result {
            Ok(_) => {
                self.ended = false;
                self.skip_to = Some(frame);
                Ok(())
            }
            Err(SymError::SeekError(_)) if self.spec.frames.is_some_and(|n| frame >= n) => {
                self.ended = true;
                Ok(())
            }
            Err(e) => Err(AudioError::Seek {
                path: self.path.clone(),
                frame,
                reason: e.to_string(),
            }),
        }
    }

    fn corrupt_packets(&self) -> u64 {
        self.corrupt
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}
