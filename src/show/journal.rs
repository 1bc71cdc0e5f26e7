//! The light journal: every command a show hands to its LED output, one JSON line each
//! ([`Handed`]: monotonic time, command, and for beats and cues when their beat is heard).
//! A node writes it when `[show] journal` is set; since all processes on a machine share
//! the monotonic clock, the journals of several nodes can be replayed side by side
//! ([`Tail`] follows one while it grows) and compared: [`agreement`] matches each beat
//! and cue of one bike to the same one on another and gives the difference in when
//! their strips showed it.

use std::io::{BufRead, BufReader, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::runner::Handed;

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file cannot be created, read or written.
    #[error("light journal {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a journal entry.
    #[error("{path}:{line}: not a light journal entry: {why}")]
    Malformed {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's complaint.
        why: String,
    },
}

/// Create `path` and start a thread that writes every [`Handed`] sent to the returned
/// sender as one line, flushed at once (so a reader sees whole lines while it grows). The
/// thread ends when every sender is dropped.
pub fn spawn_writer(path: &Path) -> Result<mpsc::Sender<Handed>, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let (tx, rx) = mpsc::channel::<Handed>();
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("convoy-journal".into())
        .spawn(move || {
            let mut out = LineWriter::new(file);
            for entry in rx {
                let written = serde_json::to_string(&entry)
                    .map_err(std::io::Error::other)
                    .and_then(|line| writeln!(out, "{line}"));
                if let Err(e) = written {
                    tracing::warn!("light journal {shown}: {e}; journal stopped");
                    return;
                }
            }
        })
        .map_err(io)?;
    Ok(tx)
}

/// Read a whole journal. A last line without its newline (a writer still running) is
/// left out; any other line that is not an entry is an error naming it.
pub fn read(path: &Path) -> Result<Vec<Handed>, JournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| JournalError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                why: e.to_string(),
            })
        })
        .collect()
}

/// Follows a journal that is still being written: each [`Tail::poll`] returns the entries
/// completed since the last one. A file that does not exist yet is waited for.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    reader: Option<BufReader<std::fs::File>>,
    partial: String,
    line: usize,
}

impl Tail {
    /// Follow `path` (it may not exist yet).
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            reader: None,
            partial: String::new(),
            line: 0,
        }
    }

    /// The entries completed since the last poll.
    pub fn poll(&mut self) -> Result<Vec<Handed>, JournalError> {
        if self.reader.is_none() {
            match std::fs::File::open(&self.path) {
                Ok(f) => self.reader = Some(BufReader::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(source) => {
                    return Err(JournalError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        let mut out = Vec::new();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(out);
        };
        loop {
            let n = reader
                .read_line(&mut self.partial)
                .map_err(|source| JournalError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 || !self.partial.ends_with('\n') {
                return Ok(out); // the rest of the line is not written yet
            }
            self.line += 1;
            let line = std::mem::take(&mut self.partial);
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(&line).map_err(|e| JournalError::Malformed {
                    path: self.path.clone(),
                    line: self.line,
                    why: e.to_string(),
                })?,
            );
        }
    }
}

/// What a timed entry is: a cue (by name) or a beat.
fn event_key(h: &Handed) -> Option<&str> {
    h.heard_ns?;
    Some(h.cue.as_deref().unwrap_or("\u{0}beat"))
}

/// How far apart two bikes showed the same beats and cues: for every beat or cue entry of
/// `other`, the nearest entry of the same cue (or beat) in `reference` within `window_ns`
/// is its match, and the result holds `other − reference` in ms for each match. A window
/// under half a beat keeps neighbouring beats apart. Unmatched entries are left out (the
/// caller compares counts).
pub fn agreement(reference: &[Handed], other: &[Handed], window_ns: u64) -> Vec<f64> {
    let window = window_ns as i128;
    other
        .iter()
        .filter_map(|o| {
            let key = event_key(o)?;
            reference
                .iter()
                .filter(|r| event_key(r) == Some(key))
                .map(|r| o.at_ns as i128 - r.at_ns as i128)
                .filter(|d| d.abs() <= window)
                .min_by_key(|d| d.abs())
                .map(|d| d as f64 / 1e6)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::protocol::{Command, Pattern};

    fn beat(at_ns: u64) -> Handed {
        Handed {
            at_ns,
            command: Command::Beat {
                beat_in_bar: 0,
                strength: 255,
            },
            cue: None,
            heard_ns: Some(at_ns as f64),
        }
    }

    fn cue(at_ns: u64, name: &str) -> Handed {
        Handed {
            at_ns,
            command: Command::Pattern(Pattern::Chase),
            cue: Some(name.into()),
            heard_ns: Some(at_ns as f64),
        }
    }

    #[test]
    fn entries_round_trip_and_a_partial_last_line_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let tx = spawn_writer(&path).expect("writer");
        let mut tail = Tail::new(&path);
        let entries = [beat(1_000), cue(2_000, "drop")];
        for e in &entries {
            tx.send(e.clone()).expect("send");
        }
        drop(tx);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = Vec::new();
        while seen.len() < 2 && std::time::Instant::now() < deadline {
            seen.extend(tail.poll().expect("poll"));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen, entries);
        assert_eq!(read(&path).expect("read"), entries);

        // A line still being written is not an error, and is read once it is complete.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        let line = serde_json::to_string(&beat(3_000)).expect("json");
        let (head, rest) = line.split_at(10);
        write!(f, "{head}").expect("write");
        assert_eq!(tail.poll().expect("poll"), vec![]);
        assert_eq!(read(&path).expect("read").len(), 2);
        writeln!(f, "{rest}").expect("write");
        assert_eq!(tail.poll().expect("poll"), vec![beat(3_000)]);

        writeln!(f, "{{\"at_ns\": \"soon\"}}").expect("write");
        let err = read(&path).expect_err("malformed").to_string();
        assert!(err.contains(":4: not a light journal entry"), "{err}");
    }

    #[test]
    fn agreement_matches_the_same_cue_or_beat_nearest_in_time() {
        let ms = 1_000_000;
        let lead = vec![
            beat(1_000 * ms),
            beat(1_500 * ms),
            cue(1_500 * ms, "drop"),
            beat(2_000 * ms),
        ];
        let follower = vec![
            beat(1_002 * ms),        // +2 ms
            beat(1_499 * ms),        // −1 ms
            cue(1_503 * ms, "drop"), // +3 ms: a cue matches the cue, not the beat
            cue(1_700 * ms, "spin"), // no such cue on the lead bike
            beat(2_300 * ms),        // 300 ms from any beat: outside the window
            Handed {
                heard_ns: None, // a band update: not timed
                ..beat(2_000 * ms)
            },
        ];
        let d = agreement(&lead, &follower, 200 * ms);
        assert_eq!(d, vec![2.0, -1.0, 3.0]);
    }
}
