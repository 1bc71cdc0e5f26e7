//! Where a track named by a command may be read from: the library directory and the
//! allowed music directories, nothing else.
//!
//! A track name arrives from the network (OSC, the web app, a relayed fleet command, the
//! leader's timeline), so it is never opened as the path it claims to be. [`MusicDirs`]
//! resolves it: a relative name is looked up in each allowed directory, an absolute one is
//! taken as is; either way the result is canonicalized (symlinks and `..` resolved) and
//! must lie inside an allowed directory (itself canonicalized), and it is opened with
//! `O_NONBLOCK | O_NOCTTY | O_NOFOLLOW` and checked with `fstat` to be a regular file
//! before a byte is read, so a FIFO, a serial port or a terminal can neither block the
//! caller nor become the daemon's controlling terminal. Every way of not finding a track
//! (missing, outside, not a regular file, unreadable) is the same [`NotInLibrary`] for the
//! caller, so a remote sender cannot probe the filesystem; the log says which it was.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A track name that resolves to no readable regular file in an allowed directory. The
/// text is all a remote caller learns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such track in the library: {0}")]
pub struct NotInLibrary(pub String);

/// The directories tracks may be read from (as configured; canonicalized on each lookup,
/// so a directory created later, like the library's, counts once it exists).
#[derive(Debug, Clone, Default)]
pub struct MusicDirs {
    dirs: Vec<PathBuf>,
}

impl MusicDirs {
    /// Allows `dirs`.
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut m = MusicDirs::default();
        m.extend(dirs);
        m
    }

    /// Also allows `dirs` (duplicates ignored).
    pub fn extend(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        for d in dirs {
            if !self.dirs.contains(&d) {
                self.dirs.push(d);
            }
        }
    }

    /// The allowed directories as configured.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The directory of each file track in `tracks` (built-ins and content names have
    /// none; a bare file name's is the working directory).
    pub fn dirs_of<'a>(tracks: impl IntoIterator<Item = &'a String>) -> Vec<PathBuf> {
        tracks
            .into_iter()
            .filter(|t| !crate::audio::is_builtin(t) && super::content_name(t).is_none())
            .map(|t| match Path::new(t).parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect()
    }

    /// Open the track `name` names, if it is a regular file inside an allowed directory.
    /// Never blocks on what the file is (see the module docs).
    pub fn open(&self, name: &str) -> Result<(File, PathBuf), NotInLibrary> {
        let refuse = |why: &str| {
            tracing::warn!("track {name:?} refused: {why}");
            NotInLibrary(name.to_string())
        };
        let roots: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        if roots.is_empty() || name.is_empty() || name.contains('\0') {
            return Err(refuse("no allowed music directory holds it"));
        }
        let asked = Path::new(name);
        let candidates: Vec<PathBuf> = if asked.is_absolute() {
            vec![asked.to_path_buf()]
        } else {
            roots.iter().map(|r| r.join(asked)).collect()
        };
        let mut why = "it does not exist";
        for c in candidates {
            let Ok(real) = c.canonicalize() else { continue };
            if !roots.iter().any(|r| real.starts_with(r)) {
                why = "it lies outside the allowed music directories";
                continue;
            }
            match open_regular(&real) {
                Ok(file) => return Ok((file, real)),
                Err(e) => {
                    tracing::warn!("track {name:?} refused: {}: {e}", real.display());
                    return Err(NotInLibrary(name.to_string()));
                }
            }
        }
        Err(refuse(why))
    }
}

/// Opens `path` without following a final symlink, without blocking on a FIFO or device
/// and without acquiring a controlling terminal; refuses anything but a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn refused(m: &MusicDirs, name: &str) {
        assert_eq!(
            m.open(name).map(|(_, p)| p).unwrap_err().to_string(),
            format!("no such track in the library: {name}"),
        );
    }

    #[test]
    fn only_regular_files_inside_the_allowed_dirs_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let music = tmp.path().join("music");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(music.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(music.join("sub/a.wav"), b"RIFF").expect("write");
        std::fs::write(outside.join("secret.wav"), b"RIFF").expect("write");
        std::os::unix::fs::symlink(outside.join("secret.wav"), music.join("link.wav"))
            .expect("symlink");
        std::os::unix::fs::symlink(music.join("sub/a.wav"), music.join("inside.wav"))
            .expect("symlink");
        let m = MusicDirs::new([music.clone()]);

        assert!(m.open("sub/a.wav").is_ok());
        let abs = music.join("sub/a.wav");
        assert!(m.open(&abs.to_string_lossy()).is_ok());
        assert!(
            m.open("inside.wav").is_ok(),
            "a symlink staying inside is fine"
        );
        refused(&m, "/etc/passwd");
        refused(&m, "../outside/secret.wav");
        refused(&m, &format!("{}/../outside/secret.wav", music.display()));
        refused(&m, "link.wav");
        refused(&m, "missing.wav");
        refused(&m, "sub");
        refused(&m, "");
        refused(&MusicDirs::default(), "sub/a.wav");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fifo = tmp.path().join("song.wav");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let m = MusicDirs::new([tmp.path().to_path_buf()]);
        let started = Instant::now();
        refused(&m, "song.wav");
        // A blocking open would never return (no writer); this is no timing claim.
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn the_dirs_of_a_playlist() {
        let tracks: Vec<String> = vec![
            "demo".into(),
            "/srv/music/a.flac".into(),
            "b.wav".into(),
            "ab".repeat(32),
        ];
        assert_eq!(
            MusicDirs::dirs_of(&tracks),
            vec![PathBuf::from("/srv/music"), PathBuf::from(".")]
        );
    }
}
