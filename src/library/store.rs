//! Storage: the library directory, its content-addressed tracks and named show files.
//!
//! Tracks are `<sha256>.<wav|flac|ogg|mp3>`, shows `shows/<name>.toml`. An upload streams
//! chunk by chunk into a temporary `.part` file in its destination directory, hashed and
//! checked as it arrives (its size cap and the library quota), then checked as a whole (a
//! track must probe as audio, a show must pass the caller's show check), fsynced and renamed
//! into place only when complete and valid, so a final name always holds a whole, verified
//! file; a rejected or interrupted upload leaves nothing behind and replaces nothing.

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
        let dir = self.dir().to_path_buf();
        self.temp_file_in(&dir, tag).await
    }

    /// A fresh temporary file in `dir` (never a final name, hidden from listings).
    async fn temp_file_in(
        &self,
        dir: &Path,
        tag: &str,
    ) -> Result<(tokio::fs::File, PathBuf), LibraryError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(".{tag}-{}-{n}.part", std::process::id()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        Ok((file, path))
    }

    /// Bytes the library directory holds: tracks, shows and any partial files.
    pub fn usage(&self) -> Result<u64, LibraryError> {
        let mut total = 0;
        for dir in [self.dir().to_path_buf(), self.dir().join("shows")] {
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                if let Ok(meta) = entry.metadata() {
                    if meta.is_file() {
                        total += meta.len();
                    }
                }
            }
        }
        Ok(total)
    }

    /// The quota check of an upload: measures the library now and yields a [`Room`] that
    /// refuses once `limit` would be passed.
    fn room(&self, max_bytes: u64, what: String, quota: Option<u64>) -> Result<Room, LibraryError> {
        let quota = match quota {
            Some(limit) => {
                let used = self.usage()?;
                if used >= limit {
                    return Err(LibraryError::QuotaExceeded { limit, used });
                }
                Some((limit, used))
            }
            None => None,
        };
        Ok(Room {
            max_bytes,
            what,
            quota,
        })
    }

    /// Store a track arriving as `chunks`, hashing it on the way. Returns its hash and
    /// final path. The bytes must be a WAV, FLAC, Ogg or MP3 file of at most `max_bytes`;
    /// otherwise nothing is kept.
    pub async fn store_track<S, E>(&self, chunks: S) -> Result<(TrackHash, PathBuf), LibraryError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        self.store_track_within(chunks, None).await
    }

    /// [`Library::store_track`], refusing (and keeping nothing) once the library as a whole
    /// would hold more than `quota` bytes. The body streams to a temporary file in the
    /// library and is probed as audio (the decoder's own probe, not only its first bytes)
    /// before it is renamed into place.
    pub async fn store_track_within<S, E>(
        &self,
        chunks: S,
        quota: Option<u64>,
    ) -> Result<(TrackHash, PathBuf), LibraryError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let room = self.room(self.inner.cfg.max_bytes, "upload".into(), quota)?;
        let (file, tmp) = self.temp_file("upload").await?;
        let result = async {
            let mut hasher = Sha256::new();
            let mut head = Vec::with_capacity(16);
            let mut file = file;
            stream_to(&mut file, &tmp, chunks, &room, |chunk| {
                if head.len() < 16 {
                    let take = (16 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(chunk);
            })
            .await?;
            let format = sniff_format(&head).ok_or_else(|| {
                LibraryError::Unsupported(
                    "not a track Convoy plays: expected a WAV, FLAC, Ogg/Vorbis or MP3 file".into(),
                )
            })?;
            // tokio's `write_all` may leave the last chunk in flight: everything must be in
            // the file before the decoder reads it (an unflushed tail probed as "no format").
            file.flush().await.map_err(io_err(&tmp))?;
            file.sync_all().await.map_err(io_err(&tmp))?;
            let probe = tmp.clone();
            tokio::task::spawn_blocking(move || crate::audio::decode::FileSource::open(&probe))
                .await
                .map_err(|e| LibraryError::Unsupported(format!("audio probe failed: {e}")))?
                .map_err(|e| {
                    let why = match e {
                        crate::audio::AudioError::NotAudio { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    LibraryError::Unsupported(format!(
                        "not a track Convoy plays: the {format} file does not decode ({why})"
                    ))
                })?;
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

    /// Store a show file arriving as `chunks` as `shows/<name>`, atomically replacing an
    /// older one only once the new one is complete and valid. The name must be plain and
    /// end in `.toml`; the text must be at most `max_bytes` and pass `check` (the show
    /// model's own validation, given the text and the path it will have), which runs on a
    /// blocking thread. Nothing is held in memory beyond the file itself (≤ `max_bytes`),
    /// and a refused or interrupted upload leaves nothing behind.
    pub async fn store_show<S, E, F>(
        &self,
        name: &str,
        chunks: S,
        max_bytes: u64,
        quota: Option<u64>,
        check: F,
    ) -> Result<(PathBuf, u64), LibraryError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
        F: FnOnce(&str, &Path) -> Result<(), String> + Send + 'static,
    {
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        if !plain || ext != Some("toml") {
            return Err(LibraryError::BadName(name.chars().take(80).collect()));
        }
        let room = self.room(max_bytes, format!("show {name}"), quota)?;
        let shows = self.dir().join("shows");
        let dest = shows.join(name);
        let (mut file, tmp) = self.temp_file_in(&shows, "show").await?;
        let result = async {
            let total = stream_to(&mut file, &tmp, chunks, &room, |_| {}).await?;
            file.sync_all().await.map_err(io_err(&tmp))?;
            drop(file);
            let text = tokio::fs::read(&tmp).await.map_err(io_err(&tmp))?;
            let text = String::from_utf8(text)
                .map_err(|_| LibraryError::Unsupported(format!("show {name} is not UTF-8 text")))?;
            let at = dest.clone();
            tokio::task::spawn_blocking(move || check(&text, &at))
                .await
                .map_err(|e| LibraryError::Unsupported(format!("show {name}: check failed: {e}")))?
                .map_err(|why| {
                    LibraryError::Unsupported(format!("show {name} is not a valid show: {why}"))
                })?;
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(io_err(&dest))?;
            Ok((dest.clone(), total))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
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

/// How much one upload may write: its own cap, and the library quota with the use measured
/// when it began (so two uploads at once can pass the quota by at most one file's cap).
#[derive(Debug)]
struct Room {
    /// Largest file, bytes.
    max_bytes: u64,
    /// What is being uploaded, for the refusal.
    what: String,
    /// (quota, bytes in use when the upload began).
    quota: Option<(u64, u64)>,
}

/// Write `chunks` to `file` (at `path`) one chunk at a time, showing each to `each`, until
/// the stream ends; refuse as soon as the file or the library would exceed `room`. Only
/// one chunk is ever held. Returns the bytes written.
async fn stream_to<S, E>(
    file: &mut tokio::fs::File,
    path: &Path,
    mut chunks: S,
    room: &Room,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, LibraryError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: fmt::Display,
{
    use futures_util::StreamExt;
    let mut total = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            LibraryError::Unsupported(format!("upload interrupted after {total} bytes: {e}"))
        })?;
        total += chunk.len() as u64;
        if total > room.max_bytes {
            return Err(LibraryError::TooLarge {
                what: room.what.clone(),
                limit: room.max_bytes,
            });
        }
        if let Some((limit, used)) = room.quota {
            if used + total > limit {
                return Err(LibraryError::QuotaExceeded { limit, used });
            }
        }
        each(&chunk);
        file.write_all(&chunk).await.map_err(io_err(path))?;
    }
    Ok(total)
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

    /// A real 8 kHz 16-bit mono WAV file with about `n` bytes of samples.
    fn wav_bytes(n: usize) -> Vec<u8> {
        let n = n & !1;
        let mut v = b"RIFF".to_vec();
        v.extend(((36 + n) as u32).to_le_bytes());
        v.extend(b"WAVEfmt ");
        v.extend(16u32.to_le_bytes());
        v.extend(1u16.to_le_bytes()); // PCM
        v.extend(1u16.to_le_bytes()); // mono
        v.extend(8000u32.to_le_bytes());
        v.extend(16_000u32.to_le_bytes());
        v.extend(2u16.to_le_bytes());
        v.extend(16u16.to_le_bytes());
        v.extend(b"data");
        v.extend((n as u32).to_le_bytes());
        v.extend((0..n).map(|i| (i * 7) as u8));
        v
    }

    fn one<T: Into<Bytes>>(
        b: T,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter([Ok(b.into())])
    }

    /// A stand-in for the show model's check: a show needs a `[[track]]`.
    fn needs_track(text: &str, _: &Path) -> Result<(), String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        if table.contains_key("track") {
            Ok(())
        } else {
            Err("the show has no [[track]]".into())
        }
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
    async fn a_riff_header_over_garbage_is_not_a_track() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1 << 20);
        let mut fake = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        fake.extend(std::iter::repeat_n(0x5a, 5000));
        let err = lib.store_track(one(fake)).await.expect_err("not decodable");
        assert!(err.to_string().contains("does not decode"), "{err}");
        assert_eq!(names(tmp.path()), vec!["shows"]);
    }

    #[tokio::test]
    async fn uploads_stop_at_the_library_quota_and_name_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1 << 20);
        let (_, first) = lib
            .store_track_within(one(wav_bytes(3000)), Some(10_000))
            .await
            .expect("fits");
        let used = std::fs::metadata(&first).expect("stored").len();
        let err = lib
            .store_track_within(one(wav_bytes(8000)), Some(10_000))
            .await
            .expect_err("over the quota");
        assert!(
            matches!(err, LibraryError::QuotaExceeded { limit: 10_000, used: u } if u == used),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("10000-byte quota") && text.contains(&format!("{used} bytes in use")),
            "{text}"
        );
        assert_eq!(lib.usage().expect("usage"), used, "nothing else was kept");
        let err = lib
            .store_show("s.toml", one("[[track]]\n"), 1000, Some(used), needs_track)
            .await
            .expect_err("full");
        assert!(matches!(err, LibraryError::QuotaExceeded { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn shows_need_a_plain_name_a_cap_and_a_valid_show() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lib = library(tmp.path(), 1 << 20);
        let good = "[[track]]\nfile = \"demo\"\n";
        let (p, n) = lib
            .store_show("night-ride.toml", one(good), 1000, None, needs_track)
            .await
            .expect("stored");
        assert!(p.ends_with("shows/night-ride.toml"));
        assert_eq!(n, good.len() as u64);
        for bad in [
            "../x.toml",
            ".hidden.toml",
            "x.txt",
            "x.json",
            "",
            "a/b.toml",
        ] {
            assert!(
                matches!(
                    lib.store_show(bad, one(good), 1000, None, needs_track)
                        .await,
                    Err(LibraryError::BadName(_))
                ),
                "{bad}"
            );
        }
        // Only comments: refused with the checker's message, the stored show untouched.
        let err = lib
            .store_show(
                "night-ride.toml",
                one("# nothing\n# here\n"),
                1000,
                None,
                needs_track,
            )
            .await
            .expect_err("no track");
        assert!(
            err.to_string().contains("the show has no [[track]]"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).expect("kept"), good);
        // Past the cap: refused while streaming.
        let big = "#".repeat(1500);
        assert!(matches!(
            lib.store_show("big.toml", one(big), 1000, None, needs_track)
                .await,
            Err(LibraryError::TooLarge { limit: 1000, .. })
        ));
        // An interrupted upload leaves nothing.
        let broken = futures_util::stream::iter([
            Ok(Bytes::from_static(b"[[track]]\n")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = lib
            .store_show("cut.toml", broken, 1000, None, needs_track)
            .await
            .expect_err("interrupted");
        assert!(err.to_string().contains("interrupted"), "{err}");
        assert_eq!(names(&tmp.path().join("shows")), vec!["night-ride.toml"]);
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
