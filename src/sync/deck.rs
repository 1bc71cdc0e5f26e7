//! What the sync state machines ask of this bike: open a track, tell the player, read its
//! status. The node hands them its player and track library behind this trait; the unit
//! tests hand them `tests::FakeDeck`, which records every command, so the leader's
//! transport and the follower's timeline state machine are tested without a sound device.

use crate::audio::{PlayerCommand, PlayerStatus, Source};
use crate::control::Refusal;

/// This bike's player and tracks, as the transport and the follower use them.
pub trait Deck: Send + Sync {
    /// Open `track` to play (a built-in, a file, a library track by hash).
    /// [`Refusal::Fetching`] means it is on its way from another bike: try again later.
    fn open(&self, track: &str) -> Result<Box<dyn Source>, Refusal>;
    /// Tell the player (never blocks).
    fn send(&self, cmd: PlayerCommand) -> Result<(), Refusal>;
    /// The player's status now.
    fn status(&self) -> PlayerStatus;
}

#[cfg(test)]
pub mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audio::{AudioError, TrackSpec};

    /// A silent track of `frames` frames at 48 kHz.
    pub struct Silence {
        name: String,
        frames: u64,
    }

    impl Source for Silence {
        fn spec(&self) -> TrackSpec {
            TrackSpec {
                sample_rate: 48_000,
                channels: 2,
                frames: Some(self.frames),
            }
        }
        fn read(&mut self, _out: &mut Vec<f32>, _max: usize) -> Result<usize, AudioError> {
            Ok(0)
        }
        fn seek(&mut self, _frame: u64) -> Result<(), AudioError> {
            Ok(())
        }
        fn name(&self) -> String {
            self.name.clone()
        }
    }

    /// A deck whose tracks are 60 s of silence (`missing` cannot be opened, `shared` is
    /// being fetched) and whose player records what it was told.
    #[derive(Default)]
    pub struct FakeDeck {
        /// Every command, as text: `load t@F paused at=N`, `pause true`, `seek F`, `unload`.
        pub log: Mutex<Vec<String>>,
        /// What `status` answers.
        pub status: Mutex<PlayerStatus>,
    }

    impl FakeDeck {
        /// The commands so far, emptied.
        pub fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().expect("log"))
        }
    }

    impl Deck for FakeDeck {
        fn open(&self, track: &str) -> Result<Box<dyn Source>, Refusal> {
            match track {
                "missing" => Err(Refusal::Track(format!("{track}: No such file"))),
                "shared" => Err(Refusal::Fetching(track.to_string())),
                _ => Ok(Box::new(Silence {
                    name: track.to_string(),
                    frames: 60 * 48_000,
                })),
            }
        }
        fn send(&self, cmd: PlayerCommand) -> Result<(), Refusal> {
            let line = match cmd {
                PlayerCommand::Load {
                    source,
                    start_frame,
                    paused,
                    at_heard_ns,
                } => format!(
                    "load {}@{start_frame}{}{}",
                    source.name(),
                    if paused { " paused" } else { "" },
                    at_heard_ns.map_or(String::new(), |t| format!(" at={t}"))
                ),
                PlayerCommand::Pause(p) => format!("pause {p}"),
                PlayerCommand::Seek(f) => format!("seek {f}"),
                PlayerCommand::Unload => "unload".to_string(),
                _ => "other".to_string(),
            };
            self.log.lock().expect("log").push(line);
            Ok(())
        }
        fn status(&self) -> PlayerStatus {
            self.status.lock().expect("status").clone()
        }
    }
}
