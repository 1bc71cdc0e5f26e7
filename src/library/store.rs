//! Storage: the library directory, its content-addressed tracks and named show files.
//!
//! Tracks are `<sha256>.<wav|flac|ogg|mp3>`, shows `shows/<name>.json|.toml`. An upload is
//! written to a temporary `.part` file, hashed and checked as it arrives (size cap, a format
//! Convoy plays, a show that parses) and renamed into place only when complete, so a final
//! name always holds a whole, verified file; a rejected upload leaves nothing behind.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::hash::{sniff_format, FORMATS};
use super::throttle::{self, burst_for, Throttle};
use super::{io_err, LibraryConfig, LibraryError, TrackHash};

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
    pub(super) inner: Arc<LibraryInner>,
}

#[derive(Debug)]
pub(super) struct LibraryInner {
    /// How it was opened: directory, size cap, rate, download settings.
    pub(super) cfg: LibraryConfig,
    /// One download at a time: they share the bandwidth anyway, and two fetches of one
    /// track must not write the same `.part`.
    pub(super) download: Mutex<()>,
    /// Pacing of downloads.
    pub(super) down_throttle: Mutex<Throttle>,
    /// Pacing of everything served to peers, shared by all connections.
    up_throttle: Arc<Mutex<Throttle>>,
}

impl Library {
    /// Open (creating if needed) the library directory.
    pub fn open(cfg: LibraryConfig) -> Result<Library, LibraryError> {
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
    pub fn tracks(&self) -> Result<Vec<TrackInfo>, LibraryError> {
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
    async fn temp_file(&self, tag: &str) -> Result<(tokio::fs::File, PathBuf), LibraryError> {
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
    pub async fn store_track<S, E>(
        &self,
        mut chunks: S,
    ) -> Result<(TrackHash, PathBuf), LibraryError>
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
                    LibraryError::Unsupported(format!(
                        "upload interrupted after {total} bytes: {e}"
                    ))
                })?;
                total += chunk.len() as u64;
                if total > self.inner.cfg.max_bytes {
                    return Err(LibraryError::TooLarge {
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
                LibraryError::Unsupported(
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
    pub async fn store_show(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, LibraryError> {
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        if !plain || !matches!(ext, Some("json" | "toml")) {
            return Err(LibraryError::BadName(name.chars().take(80).collect()));
        }
        if bytes.len() as u64 > self.inner.cfg.max_bytes {
            return Err(LibraryError::TooLarge {
                what: format!("show {name}"),
                limit: self.inner.cfg.max_bytes,
            });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| LibraryError::Unsupported(format!("show {name} is not UTF-8 text")))?;
        let parsed = if ext == Some("json") {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())
        } else {
            text.parse::<toml::Table>()
                .map(|_| serde_json::Value::Null)
                .map_err(|e| e.to_string().trim().replace('\n', " "))
        };
        parsed
            .map_err(|e| LibraryError::Unsupported(format!("show {name} does not parse: {e}")))?;
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
            return Err(LibraryError::Io { path: dest, source });
        }
        Ok(dest)
    }

    /// The track with `hash` as it is to be served: its path and size in bytes.
    pub async fn track_file(&self, hash: &TrackHash) -> Result<(PathBuf, u64), LibraryError> {
        let path = self.path(hash).ok_or(LibraryError::NotFound(*hash))?;
        let len = tokio::fs::metadata(&path)
            .await
            .map_err(io_err(&path))?
            .len();
        Ok((path, len))
    }

    /// `count` bytes of the track file at `path` from byte `start`, in 64 KiB chunks paced
    /// by the bucket every connection served to peers shares.
    pub async fn read_paced(
        &self,
        path: &Path,
        start: u64,
        count: u64,
    ) -> Result<
        impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        LibraryError,
    > {
        let file = throttle::open_at(path, start).await?;
        Ok(throttle::file_stream(
            file,
            count,
            self.inner.up_throttle.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            Err(LibraryError::TooLarge { limit: 1000, .. })
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
                    Err(LibraryError::BadName(_))
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

    #[tokio::test]
    async fn a_stored_track_is_served_by_hash_from_any_byte() {
        use futures_util::StreamExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1 << 20);
        let bytes = wav_bytes(300_000);
        let one = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(bytes.clone()))]);
        let (hash, path) = lib.store_track(one).await.expect("stored");
        let (found, len) = lib.track_file(&hash).await.expect("found");
        assert_eq!((&found, len), (&path, bytes.len() as u64));
        let mut served = Vec::new();
        let mut stream = std::pin::pin!(lib.read_paced(&found, 1000, 70_000).await.expect("open"));
        while let Some(chunk) = stream.next().await {
            served.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(served, &bytes[1000..71_000]);
        let missing = TrackHash::of(b"not here");
        assert!(matches!(
            lib.track_file(&missing).await,
            Err(LibraryError::NotFound(h)) if h == missing
        ));
    }
}
