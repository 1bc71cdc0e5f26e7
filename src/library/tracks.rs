//! Turning the track names on the timeline into audio sources, fetching shared tracks.
//!
//! A timeline names its track either as the player understands it (`demo`, a file in an
//! allowed music directory every bike has: [`MusicDirs`]) or by content: the 64-hex SHA-256 of a track in the library (what the
//! phone app's library plays). A node asked to open a content name it does not have starts
//! one background download from its peers' web servers ([`Library::ensure`]: resumable,
//! SHA-256-checked, bandwidth-capped) and answers [`TrackError::Fetching`] until the file is
//! complete; the follower keeps applying the timeline, so once the track is here it joins
//! the fleet mid-track at the right sample. Nothing playing is touched while it fetches.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use super::hash::content_name;
use super::music::{MusicDirs, NotInLibrary};
use super::{Library, LibraryConfig, LibraryError, TrackHash};
use crate::audio::{self, AudioError, Source};

/// Why a track could not be opened (yet).
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The source could not be opened or decoded.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// A shared track is being downloaded; try again later.
    #[error("track {0} is being fetched from the fleet")]
    Fetching(TrackHash),
    /// A shared track is missing and no peer is known to fetch it from.
    #[error("track {0} is not in the library and no peer is known to fetch it from")]
    Missing(TrackHash),
    /// The library directory is unusable.
    #[error("track library: {0}")]
    Library(String),
    /// Not a built-in, a library track or a regular file in an allowed music directory;
    /// the one answer for missing, outside and not-a-file alike.
    #[error(transparent)]
    NotInLibrary(#[from] NotInLibrary),
}

/// The node's track resolver. Cheap to clone; clones share downloads and peers.
#[derive(Debug, Clone)]
pub struct Tracks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: LibraryConfig,
    /// Opened on first use, so a node that never sees a shared track creates no directory.
    library: OnceLock<Result<Library, String>>,
    /// Base URLs (`http://host:port`) to fetch missing tracks from.
    peers: Mutex<Vec<String>>,
    /// Downloads in flight.
    fetching: Mutex<HashSet<TrackHash>>,
    /// Where file tracks may come from besides the library directory.
    music: Mutex<MusicDirs>,
}

impl Tracks {
    /// A resolver whose library is opened from `cfg` when first needed.
    pub fn new(cfg: LibraryConfig) -> Self {
        let cfg_dir = cfg.dir.clone();
        Self {
            inner: Arc::new(Inner {
                cfg,
                library: OnceLock::new(),
                peers: Mutex::new(Vec::new()),
                fetching: Mutex::new(HashSet::new()),
                music: Mutex::new(MusicDirs::new([cfg_dir])),
            }),
        }
    }

    /// Where missing tracks come from (the leader's web server first).
    pub fn set_peers(&self, peers: Vec<String>) {
        if let Ok(mut p) = self.inner.peers.lock() {
            *p = peers;
        }
    }

    /// Also read file tracks from `dirs` (the library directory is always allowed).
    pub fn allow_dirs(&self, dirs: impl IntoIterator<Item = std::path::PathBuf>) {
        if let Ok(mut m) = self.inner.music.lock() {
            m.extend(dirs);
        }
    }

    /// The directories file tracks may come from.
    pub fn music_dirs(&self) -> Vec<std::path::PathBuf> {
        self.inner
            .music
            .lock()
            .map(|m| m.dirs().to_vec())
            .unwrap_or_default()
    }

    /// Open `name`: a built-in, a content hash from the library (fetching it when
    /// missing), or a regular file inside the library or an allowed music directory.
    /// Never an arbitrary path: every name may come from the network.
    pub fn open(&self, name: &str) -> Result<Box<dyn Source>, TrackError> {
        if audio::is_builtin(name) {
            return Ok(audio::open_track(name)?);
        }
        let Some(hash) = content_name(name) else {
            let music = self
                .inner
                .music
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            let (file, path) = music.open(name)?;
            return Ok(Box::new(audio::decode::FileSource::from_file(file, &path)?));
        };
        let library = self.library()?;
        if let Some(path) = library.path(&hash) {
            let file = super::open_regular(&path)
                .map_err(|_| TrackError::NotInLibrary(NotInLibrary(name.to_string())))?;
            return Ok(Box::new(audio::decode::FileSource::from_file(file, &path)?));
        }
        self.fetch(library, hash)
    }

    /// The library, opened now if it is not yet: the web server serves the same one, so
    /// uploads, downloads and serving share its buckets. An error here is not remembered.
    pub fn open_library(&self) -> Result<Library, LibraryError> {
        if let Some(Ok(library)) = self.inner.library.get() {
            return Ok(library.clone());
        }
        let opened = Library::open(self.inner.cfg.clone())?;
        match self.inner.library.get_or_init(|| Ok(opened.clone())) {
            Ok(library) => Ok(library.clone()),
            Err(_) => Ok(opened),
        }
    }

    fn library(&self) -> Result<Library, TrackError> {
        self.inner
            .library
            .get_or_init(|| Library::open(self.inner.cfg.clone()).map_err(|e| e.to_string()))
            .clone()
            .map_err(TrackError::Library)
    }

    /// Start (once) a background download of `hash`; always answers why it is not
    /// playable yet.
    fn fetch(&self, library: Library, hash: TrackHash) -> Result<Box<dyn Source>, TrackError> {
        let peers = self
            .inner
            .peers
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        if peers.is_empty() {
            return Err(TrackError::Missing(hash));
        }
        let Ok(mut fetching) = self.inner.fetching.lock() else {
            return Err(TrackError::Fetching(hash));
        };
        if !fetching.insert(hash) {
            return Err(TrackError::Fetching(hash));
        }
        drop(fetching);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(TrackError::Library("no runtime to download on".into()));
        };
        tracing::info!("fetching shared track {hash} from {}", peers.join(", "));
        let inner = self.inner.clone();
        runtime.spawn(async move {
            let started = std::time::Instant::now();
            match library.ensure(hash, &peers).await {
                Ok(path) => tracing::info!(
                    "shared track {hash} fetched in {:.1} s: {}",
                    started.elapsed().as_secs_f64(),
                    path.display()
                ),
                Err(e) => tracing::warn!("cannot fetch shared track {hash}: {e}"),
            }
            if let Ok(mut f) = inner.fetching.lock() {
                f.remove(&hash);
            }
        });
        Err(TrackError::Fetching(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(dir: &std::path::Path) -> LibraryConfig {
        LibraryConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            rate: 0,
            timeout: Duration::from_secs(2),
            attempts: 1,
            pin: None,
        }
    }

    #[test]
    fn plain_names_never_create_the_library() {
        let dir = std::env::temp_dir().join(format!("convoy-tracks-{}", std::process::id()));
        let tracks = Tracks::new(config(&dir));
        assert!(tracks.open("demo").is_ok());
        assert!(matches!(
            tracks.open("/nonexistent/song.flac"),
            Err(TrackError::NotInLibrary(_))
        ));
        assert!(!dir.exists(), "the library was created for a plain name");
    }

    #[tokio::test]
    async fn a_missing_shared_track_needs_a_peer_then_is_fetched_once() {
        let dir = std::env::temp_dir().join(format!("convoy-tracks-m-{}", std::process::id()));
        let tracks = Tracks::new(config(&dir));
        let name = "cd".repeat(32);
        assert!(matches!(tracks.open(&name), Err(TrackError::Missing(_))));
        // A peer that refuses connections: the first open starts the download, a second
        // open while it runs does not start another.
        tracks.set_peers(vec!["http://127.0.0.1:9".into()]);
        assert!(matches!(tracks.open(&name), Err(TrackError::Fetching(_))));
        let again = tracks.open(&name);
        assert!(matches!(again, Err(TrackError::Fetching(_))));
        for _ in 0..100 {
            if tracks
                .inner
                .fetching
                .lock()
                .map(|f| f.is_empty())
                .unwrap_or(false)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            tracks
                .inner
                .fetching
                .lock()
                .map(|f| f.is_empty())
                .unwrap_or(false),
            "a failed download is forgotten so it can be retried"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_library_opens_once_and_is_shared() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("lib");
        let tracks = Tracks::new(config(&dir));
        let served = tracks.open_library().expect("opens");
        assert!(dir.join("shows").is_dir());
        let again = tracks.open_library().expect("again");
        let played = tracks.library().expect("the same for playing");
        assert!(Arc::ptr_eq(&served.inner, &again.inner));
        assert!(Arc::ptr_eq(&served.inner, &played.inner));

        // A file where the directory should be: opening fails, and so do shared tracks.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let broken = Tracks::new(config(&file.join("lib")));
        assert!(matches!(
            broken.open_library(),
            Err(LibraryError::Io { .. })
        ));
        assert!(matches!(
            broken.open(&"ab".repeat(32)),
            Err(TrackError::Library(_))
        ));
    }
}
