//! Where audio comes from: the [`Source`] trait (a decoded track, streamed in blocks, with
//! sample-accurate seeking) and the errors of the audio domain.

use std::path::PathBuf;

/// Shape of a track as its source delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSpec {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels per frame.
    pub channels: usize,
    /// Length in frames, when the container says.
    pub frames: Option<u64>,
}

/// Errors of the audio domain. Decode problems inside a track are not errors (the packet is
/// skipped and counted); these are the ones the caller must act on.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not audio Convoy can decode.
    #[error("{path} is not playable audio: {reason}")]
    NotAudio {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The stream broke beyond repair while playing.
    #[error("{path}: decoding failed: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// A seek the source could not perform.
    #[error("{path}: cannot seek to frame {frame}: {reason}")]
    Seek {
        /// The file.
        path: PathBuf,
        /// Requested frame.
        frame: u64,
        /// Why.
        reason: String,
    },
    /// The resampler rejected its configuration or a ratio.
    #[error("resampler: {0}")]
    Resampler(String),
    /// The output device failed or does not exist.
    #[error("audio output: {0}")]
    Output(String),
    /// Writing a sink recording failed.
    #[error("cannot write recording {path}: {source}")]
    Record {
        /// Recording path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A track, decoded in blocks. Implemented by files (symphonia) and by generated signals.
/// Runs on the decode thread, never in the audio callback.
pub trait Source: Send {
    /// Rate, channels and length.
    fn spec(&self) -> TrackSpec;

    /// Append up to `max_frames` interleaved frames to `out`; returns how many were appended.
    /// `Ok(0)` means the end of the track.
    fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, AudioError>;

    /// Position the source so that the next frame read is track frame `frame`
    /// (sample-accurate). Seeking past the end leaves the source at its end.
    fn seek(&mut self, frame: u64) -> Result<(), AudioError>;

    /// Packets that were corrupt and skipped so far.
    fn corrupt_packets(&self) -> u64 {
        0
    }

    /// A short human name (file name, "demo").
    fn name(&self) -> String;
}

/// Frames decoded per [`read_mono`] block.
const MONO_BLOCK_FRAMES: usize = 8192;

/// Decodes a whole source, mixing every frame to mono (the mean of its channels) at the
/// source's own rate. Streams in blocks: apart from one block of interleaved frames only
/// the mono samples are held. `on_progress` is called after every block with the frames
/// decoded so far (compare with [`TrackSpec::frames`] for a percentage).
pub fn read_mono(
    src: &mut dyn Source,
    on_progress: &mut dyn FnMut(u64),
) -> Result<Vec<f32>, AudioError> {
    // Trust the container's length only as a capacity hint, and not beyond an hour at 48 kHz.
    let hint = src.spec().frames.unwrap_or(0).min(3600 * 48_000) as usize;
    let mut mono = Vec::with_capacity(hint);
    for_each_mono_block(src, &mut |block| {
        mono.extend_from_slice(block);
        on_progress(mono.len() as u64);
    })?;
    Ok(mono)
}

/// Decodes a whole source like [`read_mono`] without holding it: `on_block` gets each
/// block of mono samples in order (at most 8192 of them) and may keep what it needs.
/// Returns the frames decoded, which a truncated file makes fewer than
/// [`TrackSpec::frames`] promised.
pub fn for_each_mono_block(
    src: &mut dyn Source,
    on_block: &mut dyn FnMut(&[f32]),
) -> Result<u64, AudioError> {
    let ch = src.spec().channels.max(1);
    let mut block = Vec::with_capacity(MONO_BLOCK_FRAMES * ch);
    let mut mono = Vec::with_capacity(MONO_BLOCK_FRAMES);
    let scale = 1.0 / ch as f32;
    let mut frames = 0u64;
    loop {
        block.clear();
        if src.read(&mut block, MONO_BLOCK_FRAMES)? == 0 {
            break;
        }
        mono.clear();
        mono.extend(
            block
                .chunks_exact(ch)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        frames += mono.len() as u64;
        on_block(&mono);
    }
    Ok(frames)
}
