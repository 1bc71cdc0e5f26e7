//! Track sharing: a content-addressed track library and the resumable, throttled downloader.
//!
//! A [`Library`] keeps tracks in one directory as `<sha256>.<format>` (the SHA-256 of the
//! file's bytes, as in beatmaps, and the format sniffed from its first bytes) and show
//! files under `shows/`. Nothing ever appears under a final name until it is complete and
//! verified: uploads and downloads are written to temporary `.part` files, hashed as they
//! arrive and renamed into place at the end. [`Library::ensure`] is what a follower that
//! lacks the fleet's track calls: it tries each peer's `GET /api/tracks/{sha256}` in turn,
//! resumes an interrupted transfer with a `Range` request from the `.part` length, rejects
//! (and deletes) a transfer whose hash does not match, and paces itself with a token bucket
//! so fleet sync traffic keeps priority on the WiFi. Serving uses the same bucket, so a
//! leader feeding several followers at once stays within the configured rate too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::{ClientError, HttpClient};

/// The SHA-256 of a track's bytes, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackHash(pub [u8; 32]);

impl TrackHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for TrackHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrackHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrackHash({self})")
    }
}

impl FromStr for TrackHash {
    type Err = ShareError;
    fn from_str(s: &str) -> Result<Self, ShareError> {
        let bad = || ShareError::BadHash(s.chars().take(80).collect());
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// Why a library operation or a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not 64 hex digits.
    #[error("{0:?} is not a SHA-256 (64 hex digits)")]
    BadHash(String),
    /// A show file name that is not a plain `name.json` / `name.toml`.
    #[error("bad show name {0:?}: use 1-64 characters [A-Za-z0-9._-] ending in .json or .toml")]
    BadName(String),
    /// The bytes are not a track Convoy can play (or a show that does not parse).
    #[error("{0}")]
    Unsupported(String),
    /// Larger than the library accepts.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was too large (upload, download from a peer).
        what: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// No track with this hash in the library.
    #[error("no track {0} in the library")]
    NotFound(TrackHash),
    /// A peer answered with an unexpected status.
    #[error("peer {peer}: HTTP {status} for track {hash}")]
    Status {
        /// Peer base URL.
        peer: String,
        /// Status code.
        status: u16,
        /// Track asked for.
        hash: TrackHash,
    },
    /// A peer's response made no sense (a range we did not ask for…).
    #[error("peer {peer}: {detail}")]
    BadResponse {
        /// Peer base URL.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection failed or dropped; the `.part` file is kept for a resume.
    #[error("peer {peer}: transfer interrupted at {have} bytes: {source}")]
    Interrupted {
        /// Peer base URL.
        peer: String,
        /// Bytes held in the `.part` file.
        have: u64,
        /// What happened.
        source: ClientError,
    },
    /// The complete transfer does not hash to what was asked; it was deleted.
    #[error("peer {peer}: track {expected} arrived with SHA-256 {got}; discarded")]
    HashMismatch {
        /// Peer base URL.
        peer: String,
        /// Hash asked for.
        expected: TrackHash,
        /// Hash of what arrived.
        got: TrackHash,
    },
    /// No peer to ask.
    #[error("track {0} is missing and no peer is known to fetch it from")]
    NoPeers(TrackHash),
    /// Every peer failed every attempt; the last error says why.
    #[error("track {hash} could not be fetched from {peers} peer(s) in {attempts} attempt(s); last: {last}")]
    Unavailable {
        /// Track asked for.
        hash: TrackHash,
        /// Peers tried.
        peers: usize,
        /// Rounds over the peer list.
        attempts: u32,
        /// The last failure.
        last: Box<ShareError>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShareError + '_ {
    move |source| ShareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The audio container a track's first bytes announce, as a file extension.
pub fn sniff_format(head: &[u8]) -> Option<&'static str> {
    match head {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => Some("wav"),
        [b'R', b'F', b'6', b'4', ..] => Some("wav"),
        [b'f', b'L', b'a', b'C', ..] => Some("flac"),
        [b'O', b'g', b'g', b'S', ..] => Some("ogg"),
        [b'I', b'D', b'3', ..] => Some("mp3"),
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some("mp3"),
        _ => None,
    }
}

const FORMATS: [&str; 4] = ["wav", "flac", "ogg", "mp3"];

/// Pacing for shared bytes: a token bucket that lets a debt build up and sleeps it off, so
/// the average rate is the configured one and bursts are at most `burst` bytes.
#[derive(Debug)]
pub struct Throttle {
    /// Bytes per second; 0 means unlimited.
    rate: f64,
    /// Largest burst, bytes.
    burst: f64,
    /// Available bytes (negative: debt to sleep off).
    tokens: f64,
    /// Last refill.
    last: Instant,
}

impl Throttle {
    /// `rate` bytes/s (0 = unlimited) with bursts of at most `burst` bytes.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Account for `n` bytes, sleeping as long as the rate requires.
    pub async fn take(&mut self, n: usize) {
        let wait = self.debit(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Charge `n` bytes at time `now`; returns how long to wait before sending more. The
    /// wait is charged up front (the bucket is left empty at `now + wait`).
    pub fn debit(&mut self, n: usize, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst) - n as f64;
        self.last = now;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64(-self.tokens / self.rate);
        self.tokens = 0.0;
        self.last = now + wait;
        wait
    }
}

/// How a [`Library`] stores and fetches.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// Directory holding the tracks (created if missing).
    pub dir: PathBuf,
    /// Largest track or show accepted, by upload or download, bytes.
    pub max_bytes: u64,
    /// Share bandwidth, bytes/s, for downloads and for serving (0 = unlimited).
    pub rate: u64,
    /// Timeout of each network wait during a download.
    pub timeout: Duration,
    /// Rounds over the peer list before giving up.
    pub attempts: u32,
    /// PIN sent to peers (`X-Convoy-Pin`) when their reads are closed.
    pub pin: Option<String>,
}

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

/// A track in the library.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackInfo {
    /// Content hash, hex.
    pub sha256: String,
    /// Container (`wav`, `flac`, `ogg`, `mp3`).
    pub format: String,
    /// Size, bytes.
    pub bytes: u64,
}

/// Content-addressed tracks plus named show files in one directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Library {
    inner: Arc<LibraryInner>,
}

#[derive(Debug)]
struct LibraryInner {
    cfg: LibraryConfig,
    /// One download at a time: they share the bandwidth anyway, and two fetches of one
    /// track must not write the same `.part`.
    download: Mutex<()>,
    /// Pacing of downloads.
    down_throttle: Mutex<Throttle>,
    /// Pacing of everything served to peers, shared by all connections.
    up_throttle: Arc<Mutex<Throttle>>,
}

/// Burst of the share token bucket: a quarter second at the rate, at least one 16 KiB frame.
fn burst_for(rate: u64) -> u64 {
    (rate / 4).max(16 * 1024)
}

impl Library {
    /// Open (creating if needed) the library directory.
    pub fn open(cfg: LibraryConfig) -> Result<Library, ShareError> {
        let shows = cfg.dir.join("shows");
        std::fs::create_dir_all(&shows).map_err(io_err(&shows))?;
        let burst = burst_for(cfg.rate);
        Ok(Library {
            inner: Arc::new(LibraryInner {
                down_throttle: Mutex::new(Throttle::new(cfg.rate, burst)),
                up_throttle: Arc::new(Mutex::new(Throttle::new(cfg.rate, burst))),
                download: Mutex::new(()),
                cfg,
            }),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &LibraryConfig {
        &self.inner.cfg
    }

    /// The library directory.
    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// Where the track with `hash` is, if the library has it.
    pub fn path(&self, hash: &TrackHash) -> Option<PathBuf> {
        FORMATS
            .iter()
            .map(|ext| self.dir().join(format!("{hash}.{ext}")))
            .find(|p| p.is_file())
    }

    /// Every complete track, sorted by hash.
    pub fn tracks(&self) -> Result<Vec<TrackInfo>, ShareError> {
        let dir = self.dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some((stem, ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            if stem.parse::<TrackHash>().is_err() || !FORMATS.contains(&ext) {
                continue;
            }
            let bytes = entry.metadata().map_err(io_err(&entry.path()))?.len();
            out.push(TrackInfo {
                sha256: stem.to_string(),
                format: ext.to_string(),
                bytes,
            });
        }
        out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(out)
    }

    /// A fresh temporary file in the library (never a final name).
    async fn temp_file(&self, tag: &str) -> Result<(tokio::fs::File, PathBuf), ShareError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir()
            .join(format!(".{tag}-{}-{n}.part", std::process::id()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        Ok((file, path))
    }

    /// Store a track arriving as `chunks`, hashing it on the way. Returns its hash and
    /// final path. The bytes must be a WAV, FLAC, Ogg or MP3 file of at most `max_bytes`;
    /// otherwise nothing is kept.
    pub async fn store_track<S, E>(&self, mut chunks: S) -> Result<(TrackHash, PathBuf), ShareError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        use futures_util::StreamExt;
        let (mut file, tmp) = self.temp_file("upload").await?;
        let result = async {
            let mut hasher = Sha256::new();
            let mut head = Vec::with_capacity(16);
            let mut total = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| {
                    ShareError::Unsupported(format!("upload interrupted after {total} bytes: {e}"))
                })?;
                total += chunk.len() as u64;
                if total > self.inner.cfg.max_bytes {
                    return Err(ShareError::TooLarge {
                        what: "upload".into(),
                        limit: self.inner.cfg.max_bytes,
                    });
                }
                if head.len() < 16 {
                    let take = (16 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io_err(&tmp))?;
            }
            let format = sniff_format(&head).ok_or_else(|| {
                ShareError::Unsupported(
                    "not a track Convoy plays: expected a WAV, FLAC, Ogg/Vorbis or MP3 file".into(),
                )
            })?;
            file.sync_all().await.map_err(io_err(&tmp))?;
            let hash = TrackHash(hasher.finalize().into());
            let dest = self.dir().join(format!("{hash}.{format}"));
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(io_err(&dest))?;
            Ok((hash, dest))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Store a show file as `shows/<name>` (atomically replacing an older one). The name must
    /// be plain and end in `.json` or `.toml`, and the text must parse as such.
    pub async fn store_show(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, ShareError> {
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        if !plain || !matches!(ext, Some("json" | "toml")) {
            return Err(ShareError::BadName(name.chars().take(80).collect()));
        }
        if bytes.len() as u64 > self.inner.cfg.max_bytes {
            return Err(ShareError::TooLarge {
                what: format!("show {name}"),
                limit: self.inner.cfg.max_bytes,
            });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ShareError::Unsupported(format!("show {name} is not UTF-8 text")))?;
        let parsed = if ext == Some("json") {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())
        } else {
            text.parse::<toml::Table>()
                .map(|_| serde_json::Value::Null)
                .map_err(|e| e.to_string().trim().replace('\n', " "))
        };
        parsed.map_err(|e| ShareError::Unsupported(format!("show {name} does not parse: {e}")))?;
        let (mut file, tmp) = self.temp_file("show").await?;
        let dest = self.dir().join("shows").join(name);
        let written = async {
            file.write_all(bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, &dest).await
        }
        .await;
        if let Err(source) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ShareError::Io { path: dest, source });
        }
        Ok(dest)
    }

    /// The shared pacing for bytes served to peers.
    pub fn serve_throttle(&self) -> Arc<Mutex<Throttle>> {
        self.inner.up_throttle.clone()
    }

    /// The track's path, fetching it from `peers` (base URLs such as
    /// `http://192.168.4.1:8080`) when the library lacks it.
    pub async fn ensure(&self, hash: TrackHash, peers: &[String]) -> Result<PathBuf, ShareError> {
        self.ensure_with(hash, peers, |_| {}).await
    }

    /// [`Library::ensure`], reporting progress after every chunk received.
    pub async fn ensure_with(
        &self,
        hash: TrackHash,
        peers: &[String],
        mut progress: impl FnMut(&Progress),
    ) -> Result<PathBuf, ShareError> {
        if let Some(path) = self.path(&hash) {
            return Ok(path);
        }
        let _one_at_a_time = self.inner.download.lock().await;
        if let Some(path) = self.path(&hash) {
            return Ok(path);
        }
        if peers.is_empty() {
            return Err(ShareError::NoPeers(hash));
        }
        let cfg = &self.inner.cfg;
        let mut client = HttpClient::new(cfg.timeout);
        if cfg.rate > 0 {
            client = client.with_recv_buffer(burst_for(cfg.rate).min(256 * 1024) as u32);
        }
        if let Some(pin) = &cfg.pin {
            client = client.with_header("x-convoy-pin", pin).map_err(|source| {
                ShareError::Interrupted {
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
        Err(ShareError::Unavailable {
            hash,
            peers: peers.len(),
            attempts,
            last: Box::new(last.unwrap_or(ShareError::NoPeers(hash))),
        })
    }

    /// One attempt at one peer, resuming the `.part` file if there is one.
    async fn fetch_from(
        &self,
        client: &HttpClient,
        peer: &str,
        hash: TrackHash,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<PathBuf, ShareError> {
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
        let interrupted = |have, source| ShareError::Interrupted {
            peer: peer.to_string(),
            have,
            source,
        };
        let bad = |detail: String| ShareError::BadResponse {
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
                return Err(ShareError::Status {
                    peer: peer.to_string(),
                    status,
                    hash,
                })
            }
        };
        if total > self.inner.cfg.max_bytes {
            return Err(ShareError::TooLarge {
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
            return Err(ShareError::HashMismatch {
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
            return Err(ShareError::Unsupported(format!(
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

async fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> Result<(), ShareError> {
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

async fn read_head(path: &Path, head: &mut [u8]) -> Result<usize, ShareError> {
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
pub fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// What a `Range` request header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single byte range: send the whole file (RFC 9110 allows ignoring).
    Full,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// The range lies outside the file: 416.
    Unsatisfiable,
}

/// Interpret a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`; one range only).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let span = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeRequest::Full,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            Err(_) => return RangeRequest::Full,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeRequest::Full;
            };
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(end) if end >= start => end.min(len.saturating_sub(1)),
                    _ => return RangeRequest::Full,
                }
            };
            (start, end)
        }
    };
    if len == 0 || span.0 >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part {
        start: span.0,
        end: span.1,
    }
}

/// Stream `len` bytes of `file` from its current position in 64 KiB chunks, paced by
/// `throttle`.
pub fn file_stream(
    file: tokio::fs::File,
    len: u64,
    throttle: Arc<Mutex<Throttle>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(
        (file, len, throttle),
        |(mut file, left, throttle)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; (64 * 1024).min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "track shrank while being served",
                    )),
                    (file, 0, throttle),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    throttle.lock().await.take(n).await;
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64, throttle)))
                }
                Err(e) => Some((Err(e), (file, 0, throttle))),
            }
        },
    )
}

/// Open a library track positioned at `start`.
pub async fn open_at(path: &Path, start: u64) -> Result<tokio::fs::File, ShareError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io_err(path))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = TrackHash::of(b"abc");
        let text = h.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text.to_uppercase().parse::<TrackHash>().ok(), Some(h));
        assert!("ba78".parse::<TrackHash>().is_err());
        assert!("zz".repeat(32).parse::<TrackHash>().is_err());
        assert!("é".repeat(32).parse::<TrackHash>().is_err());
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100),
            Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-500"), 100),
            Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-500"), 100),
            Part { start: 0, end: 99 }
        );
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-"), 100), Full);
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, 99, 100)));
        assert_eq!(parse_content_range("bytes */100"), None);
    }

    #[test]
    fn formats_are_sniffed_from_magic_bytes() {
        assert_eq!(sniff_format(b"RIFF\0\0\0\0WAVEfmt "), Some("wav"));
        assert_eq!(sniff_format(b"fLaC\0\0\0\x22"), Some("flac"));
        assert_eq!(sniff_format(b"OggS\0\x02"), Some("ogg"));
        assert_eq!(sniff_format(b"ID3\x04\0"), Some("mp3"));
        assert_eq!(sniff_format(&[0xFF, 0xFB, 0x90, 0x64]), Some("mp3"));
        assert_eq!(sniff_format(b"<html>"), None);
        assert_eq!(sniff_format(b"RIFF"), None);
        assert_eq!(sniff_format(b""), None);
    }

    fn library(dir: &Path, max_bytes: u64) -> Library {
        Library::open(LibraryConfig {
            dir: dir.to_path_buf(),
            max_bytes,
            rate: 0,
            timeout: Duration::from_secs(2),
            attempts: 1,
            pin: None,
        })
        .expect("library opens")
    }

    fn wav_bytes(n: usize) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend((0..n).map(|i| (i * 7) as u8));
        v
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn uploads_are_stored_by_hash_and_rejects_leave_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1000);
        let bytes = wav_bytes(500);
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (hash, path) = lib
            .store_track(futures_util::stream::iter(chunks))
            .await
            .expect("stored");
        assert_eq!(hash, TrackHash::of(&bytes));
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
        assert_eq!(lib.path(&hash), Some(path));
        assert_eq!(lib.tracks().expect("list").len(), 1);

        let html = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"<html>nope</html>",
        ))]);
        let err = lib.store_track(html).await.expect_err("not audio");
        assert!(err.to_string().contains("WAV, FLAC"), "{err}");
        let big =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(wav_bytes(2000)))]);
        assert!(matches!(
            lib.store_track(big).await,
            Err(ShareError::TooLarge { limit: 1000, .. })
        ));
        assert_eq!(
            names(tmp.path()),
            vec![format!("{hash}.wav"), "shows".into()]
        );
    }

    #[tokio::test]
    async fn shows_need_a_plain_name_and_parseable_text() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1000);
        let p = lib
            .store_show("night-ride.json", br#"{"cues": []}"#)
            .await
            .expect("stored");
        assert!(p.ends_with("shows/night-ride.json"));
        lib.store_show("a.toml", b"[show]\nname = \"x\"\n")
            .await
            .expect("toml");
        for bad in ["../x.json", ".hidden.json", "x.txt", "", "a/b.json"] {
            assert!(
                matches!(
                    lib.store_show(bad, b"{}").await,
                    Err(ShareError::BadName(_))
                ),
                "{bad}"
            );
        }
        let err = lib
            .store_show("b.json", b"{oops")
            .await
            .expect_err("bad json");
        assert!(err.to_string().contains("b.json"), "{err}");
        assert_eq!(
            names(&tmp.path().join("shows")),
            vec!["a.toml", "night-ride.json"]
        );
        assert_eq!(names(tmp.path()), vec!["shows"]);
    }

    #[test]
    fn a_throttle_paces_to_its_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100_000, 10_000);
        let mut now = t0;
        for _ in 0..100 {
            now += t.debit(10_000, now);
        }
        // 1 MB at 100 kB/s, minus the initial 10 kB burst: 9.9 s of waiting.
        let took = (now - t0).as_secs_f64();
        assert!((took - 9.9).abs() < 1e-6, "{took}");
        // Idle time refills at most one burst.
        now += Duration::from_secs(60);
        assert_eq!(t.debit(10_000, now), Duration::ZERO);
        assert_eq!(t.debit(10_000, now), Duration::from_millis(100));
        assert_eq!(Throttle::new(0, 0).debit(1 << 30, now), Duration::ZERO);
    }
}
