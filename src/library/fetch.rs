//! Fetching a shared track from another bike: [`Library::ensure`] is what a follower that
//! lacks the fleet's track calls.
//!
//! It tries each peer's `GET /api/tracks/{sha256}` in turn for up to `attempts` rounds,
//! one download at a time. An interrupted transfer keeps its `<sha256>.part` file and the
//! next attempt resumes it with `Range: bytes=<part length>-` (a `200` answer restarts it,
//! a `416` means the part is already whole); the bytes are hashed as they arrive (the part
//! is hashed first on a resume), paced by the library's download bucket, and the file is
//! renamed to `<sha256>.<format>` only if it hashes to what was asked and is a format
//! Convoy plays, and is deleted otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::HttpClient;
use super::hash::sniff_format;
use super::throttle::burst_for;
use super::{io_err, Library, LibraryError, TrackHash};

/// A transfer in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Track being fetched.
    pub hash: TrackHash,
    /// Peer it comes from.
    pub peer: String,
    /// Bytes held so far (including a resumed `.part`).
    pub received: u64,
    /// Total size, once the peer said.
    pub total: Option<u64>,
}

impl Library {
    /// The track's path, fetching it from `peers` (base URLs such as
    /// `http://192.168.4.1:8080`) when the library lacks it.
    pub async fn ensure(&self, hash: TrackHash, peers: &[String]) -> Result<PathBuf, LibraryError> {
        self.ensure_with(hash, peers, |_| {}).await
    }

    /// [`Library::ensure`], reporting progress after every chunk received.
    pub async fn ensure_with(
        &self,
        hash: TrackHash,
        peers: &[String],
        mut progress: impl FnMut(&Progress),
    ) -> Result<PathBuf, LibraryError> {
        if let Some(path) = self.path(&hash) {
            return Ok(path);
        }
        let _one_at_a_time = self.inner.download.lock().await;
        if let Some(path) = self.path(&hash) {
            return Ok(path);
        }
        if peers.is_empty() {
            return Err(LibraryError::NoPeers(hash));
        }
        let cfg = &self.inner.cfg;
        let mut client = HttpClient::new(cfg.timeout);
        if cfg.rate > 0 {
            client = client.with_recv_buffer(burst_for(cfg.rate).min(256 * 1024) as u32);
        }
        if let Some(pin) = &cfg.pin {
            client = client.with_header("x-convoy-pin", pin).map_err(|source| {
                LibraryError::Interrupted {
                    peer: String::new(),
                    have: 0,
                    source,
                }
            })?;
        }
        let attempts = cfg.attempts.max(1);
        let mut last = None;
        for round in 0..attempts {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(250 * u64::from(round))).await;
            }
            for peer in peers {
                match self.fetch_from(&client, peer, hash, &mut progress).await {
                    Ok(path) => return Ok(path),
                    Err(e) => {
                        tracing::warn!("track {hash}: {e}");
                        last = Some(e);
                    }
                }
            }
        }
        Err(LibraryError::Unavailable {
            hash,
            peers: peers.len(),
            attempts,
            last: Box::new(last.unwrap_or(LibraryError::NoPeers(hash))),
        })
    }

    /// One attempt at one peer, resuming the `.part` file if there is one.
    async fn fetch_from(
        &self,
        client: &HttpClient,
        peer: &str,
        hash: TrackHash,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<PathBuf, LibraryError> {
        let part = self.dir().join(format!("{hash}.part"));
        let mut have = match tokio::fs::metadata(&part).await {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        let url = format!("{}/api/tracks/{hash}", peer.trim_end_matches('/'));
        let range = format!("bytes={have}-");
        let headers: &[(&str, &str)] = if have > 0 {
            &[("range", range.as_str())]
        } else {
            &[]
        };
        let interrupted = |have, source| LibraryError::Interrupted {
            peer: peer.to_string(),
            have,
            source,
        };
        let bad = |detail: String| LibraryError::BadResponse {
            peer: peer.to_string(),
            detail,
        };
        let mut resp = client
            .get(&url, headers)
            .await
            .map_err(|e| interrupted(have, e))?;
        let total = match resp.status() {
            206 => {
                let cr = resp.header("content-range").unwrap_or_default();
                let (start, _, total) = parse_content_range(cr)
                    .ok_or_else(|| bad(format!("bad Content-Range {cr:?}")))?;
                if start != have {
                    return Err(bad(format!("asked for bytes {have}- but got {cr:?}")));
                }
                total
            }
            200 => {
                have = 0;
                resp.header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("no Content-Length".into()))?
            }
            416 if have > 0 => {
                // Our part is at least as long as the track: verify it as it is, or
                // start over if it is too long.
                let total = resp
                    .header("content-range")
                    .and_then(|cr| cr.strip_prefix("bytes */"))
                    .and_then(|t| t.parse::<u64>().ok());
                if total != Some(have) {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(bad(format!(
                        "our partial copy ({have} bytes) is longer than the track; restarting"
                    )));
                }
                have
            }
            status => {
                return Err(LibraryError::Status {
                    peer: peer.to_string(),
                    status,
                    hash,
                })
            }
        };
        if total > self.inner.cfg.max_bytes {
            return Err(LibraryError::TooLarge {
                what: format!("track {hash} from {peer}"),
                limit: self.inner.cfg.max_bytes,
            });
        }

        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(have > 0)
            .write(true)
            .truncate(have == 0)
            .open(&part)
            .await
            .map_err(io_err(&part))?;
        let mut hasher = Sha256::new();
        if have > 0 {
            hash_prefix(&part, have, &mut hasher).await?;
        }
        let mut received = have;
        let mut report = Progress {
            hash,
            peer: peer.to_string(),
            received,
            total: Some(total),
        };
        progress(&report);
        while received < total {
            let chunk = match resp.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    file.flush().await.map_err(io_err(&part))?;
                    return Err(interrupted(received, e));
                }
            };
            if received + chunk.len() as u64 > total {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(bad(format!("sent more than the announced {total} bytes")));
            }
            self.inner
                .down_throttle
                .lock()
                .await
                .take(chunk.len())
                .await;
            file.write_all(&chunk).await.map_err(io_err(&part))?;
            hasher.update(&chunk);
            received += chunk.len() as u64;
            report.received = received;
            progress(&report);
        }
        file.flush().await.map_err(io_err(&part))?;
        if received < total {
            return Err(bad(format!(
                "response ended at {received} of {total} bytes"
            )));
        }
        let got = TrackHash(hasher.finalize().into());
        if got != hash {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(LibraryError::HashMismatch {
                peer: peer.to_string(),
                expected: hash,
                got,
            });
        }
        file.sync_all().await.map_err(io_err(&part))?;
        drop(file);
        let mut head = [0u8; 16];
        let n = read_head(&part, &mut head).await?;
        let Some(format) = sniff_format(&head[..n]) else {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(LibraryError::Unsupported(format!(
                "track {hash} from {peer} is not a WAV, FLAC, Ogg or MP3 file; discarded"
            )));
        };
        let dest = self.dir().join(format!("{hash}.{format}"));
        tokio::fs::rename(&part, &dest)
            .await
            .map_err(io_err(&dest))?;
        tracing::info!("track {hash} fetched from {peer} ({total} bytes)");
        Ok(dest)
    }
}

async fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> Result<(), LibraryError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file.read(&mut buf[..want]).await.map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

async fn read_head(path: &Path, head: &mut [u8]) -> Result<usize, LibraryError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut n = 0;
    while n < head.len() {
        let got = file.read(&mut head[n..]).await.map_err(io_err(path))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// `bytes a-b/total` → `(a, b, total)`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_only_when_whole() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, 99, 100)));
        assert_eq!(parse_content_range(" bytes 0-0/1 "), Some((0, 0, 1)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("bytes 10-99/*"), None);
        assert_eq!(parse_content_range("items 10-99/100"), None);
        assert_eq!(parse_content_range("bytes 10/100"), None);
    }
}
