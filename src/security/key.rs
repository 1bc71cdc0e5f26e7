//! Fleet pre-shared keys: loading, redaction, fingerprints and rotation.
//!
//! A [`FleetKey`] is the symmetric secret every bike of a ride shares; it is
//! loaded from a key file (hex text, base64 text, or raw bytes) or from an
//! environment variable, must be at least [`MIN_KEY_LEN`] bytes, and never
//! prints its bytes (`Debug`/`Display` show only the id and fingerprint). Key
//! files that are accessible to "other" users (any of the `o` permission bits)
//! are **rejected with an error**, group-readable files are accepted with a
//! `tracing` warning. A [`Keyring`] holds the current key (used to sign) and an
//! optional previous key (still accepted while a rotation rolls through the
//! fleet), each identified by a one-byte [`KeyId`].

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA256 as used for every envelope tag.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// One-byte key identifier carried in every envelope (rotation selector).
pub type KeyId = u8;

/// Minimum accepted key length in bytes (128 bits).
pub const MIN_KEY_LEN: usize = 16;
/// Maximum accepted key length in bytes (keeps key files sane).
pub const MAX_KEY_LEN: usize = 1024;
/// Largest key file read from disk (text encodings of [`MAX_KEY_LEN`] plus slack).
pub const MAX_KEY_FILE_LEN: u64 = 4096;

/// Errors while loading or building a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is accessible to other users.
    #[error("key file {path} has insecure permissions {mode:o} (accessible to others); run `chmod 600 {path}`", path = .path.display())]
    InsecurePermissions {
        /// File that failed.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is larger than [`MAX_KEY_FILE_LEN`].
    #[error("key file {path} is {len} bytes, larger than the {max} byte limit", path = .path.display())]
    FileTooLarge {
        /// File that failed.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The environment variable is not set (or not unicode).
    #[error("environment variable {0} is not set or not valid unicode")]
    EnvMissing(String),
    /// Text that claimed an encoding (`hex:`/`base64:`) did not decode.
    #[error("key text is not valid {encoding}: {detail}")]
    BadEncoding {
        /// `hex` or `base64`.
        encoding: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The decoded key is too short.
    #[error("key is {len} bytes, at least {min} required")]
    TooShort {
        /// Decoded length.
        len: usize,
        /// Required minimum.
        min: usize,
    },
    /// The decoded key is too long.
    #[error("key is {len} bytes, at most {max} allowed")]
    TooLong {
        /// Decoded length.
        len: usize,
        /// Allowed maximum.
        max: usize,
    },
    /// Previous and current key share an id, so a receiver could not tell them apart.
    #[error("previous key id {0} equals the current key id")]
    DuplicateKeyId(KeyId),
}

/// A pre-shared fleet key with its id. Bytes are wiped (best effort) on drop.
#[derive(Clone)]
pub struct FleetKey {
    id: KeyId,
    bytes: Vec<u8>,
    /// HMAC state with the key already absorbed; cloned per packet.
    mac: HmacSha256,
}

impl FleetKey {
    /// Builds a key from raw bytes; enforces [`MIN_KEY_LEN`]..=[`MAX_KEY_LEN`].
    pub fn from_bytes(id: KeyId, bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                len: bytes.len(),
                min: MIN_KEY_LEN,
            });
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: bytes.len(),
                max: MAX_KEY_LEN,
            });
        }
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(bytes).map_err(|_| KeyError::TooShort {
            len: bytes.len(),
            min: MIN_KEY_LEN,
        })?;
        Ok(Self {
            id,
            bytes: bytes.to_vec(),
            mac,
        })
    }

    /// Parses key text: `hex:<hex>`, `base64:<b64>`, bare hex (even length,
    /// only hex digits) or bare standard/URL-safe base64. Surrounding
    /// whitespace is ignored.
    pub fn from_text(id: KeyId, text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let bytes = if let Some(h) = t.strip_prefix("hex:") {
            decode_hex(h.trim())?
        } else if let Some(b) = t.strip_prefix("base64:") {
            decode_base64(b.trim())?
        } else if t.len() % 2 == 0 && !t.is_empty() && t.bytes().all(|c| c.is_ascii_hexdigit()) {
            decode_hex(t)?
        } else {
            decode_base64(t)?
        };
        let key = Self::from_bytes(id, &bytes);
        wipe(&mut { bytes });
        key
    }

    /// Loads a key file. Text content (valid UTF-8 made only of printable
    /// ASCII and whitespace) is parsed as in [`FleetKey::from_text`]; anything
    /// else is taken as raw key bytes. Files accessible to others are rejected.
    pub fn from_file(id: KeyId, path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        check_permissions(path, &meta)?;
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(KeyError::FileTooLarge {
                path: path.to_path_buf(),
                len: meta.len(),
                max: MAX_KEY_FILE_LEN,
            });
        }
        let mut raw = std::fs::read(path).map_err(io)?;
        let is_text = raw
            .iter()
            .all(|&c| c.is_ascii_graphic() || c.is_ascii_whitespace());
        let key = if is_text {
            // Printable ASCII is valid UTF-8.
            let text = std::str::from_utf8(&raw).unwrap_or_default();
            Self::from_text(id, text)
        } else {
            Self::from_bytes(id, &raw)
        };
        wipe(&mut raw);
        key
    }

    /// Loads a key from an environment variable (hex or base64 text).
    pub fn from_env(id: KeyId, var: &str) -> Result<Self, KeyError> {
        let text = std::env::var(var).map_err(|_| KeyError::EnvMissing(var.to_string()))?;
        Self::from_text(id, &text)
    }

    /// The key id carried in envelopes signed with this key.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// First 8 bytes of SHA-256(key) as 16 lowercase hex chars; safe to publish.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.bytes);
        to_hex(&digest[..8])
    }

    /// A fresh HMAC instance keyed with this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl Drop for FleetKey {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetKey")
            .field("id", &self.id)
            .field("fingerprint", &self.fingerprint())
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key#{} ({})", self.id, self.fingerprint())
    }
}

/// Current signing key plus an optional previous key accepted during rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: FleetKey,
    previous: Option<FleetKey>,
}

impl Keyring {
    /// A keyring with only a current key.
    pub fn new(current: FleetKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// A keyring accepting `previous` as well; the ids must differ.
    pub fn with_previous(current: FleetKey, previous: FleetKey) -> Result<Self, KeyError> {
        if previous.id == current.id {
            return Err(KeyError::DuplicateKeyId(previous.id));
        }
        Ok(Self {
            current,
            previous: Some(previous),
        })
    }

    /// Starts a rotation: `next` becomes current, the old current becomes previous.
    pub fn rotate(&mut self, next: FleetKey) -> Result<(), KeyError> {
        if next.id == self.current.id {
            return Err(KeyError::DuplicateKeyId(next.id));
        }
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some(old);
        Ok(())
    }

    /// Ends a rotation: the previous key is no longer accepted.
    pub fn retire_previous(&mut self) {
        self.previous = None;
    }

    /// The key used to sign.
    pub fn current(&self) -> &FleetKey {
        &self.current
    }

    /// The previous key, if a rotation is in progress.
    pub fn previous(&self) -> Option<&FleetKey> {
        self.previous.as_ref()
    }

    /// The accepted key with this id, if any.
    pub fn get(&self, id: KeyId) -> Option<&FleetKey> {
        if self.current.id == id {
            Some(&self.current)
        } else {
            self.previous.as_ref().filter(|k| k.id == id)
        }
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if mode & 0o070 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "fleet key file is group-accessible");
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// Best-effort wipe that the optimiser may not elide.
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn decode_hex(s: &str) -> Result<Vec<u8>, KeyError> {
    let bad = |detail| KeyError::BadEncoding {
        encoding: "hex",
        detail,
    };
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return Err(bad("odd number of digits"));
    }
    let nib = |c: u8| -> Result<u8, KeyError> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(bad("non-hex character"))
    };
    s.chunks_exact(2)
        .map(|p| Ok(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

fn decode_base64(s: &str) -> Result<Vec<u8>, KeyError> {
    let bad = |detail| KeyError::BadEncoding {
        encoding: "base64",
        detail,
    };
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return Err(bad("too much padding"));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(bad("character outside the base64 alphabet")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err(bad("truncated final quantum"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn hex_base64_and_prefixes_agree() {
        let a = FleetKey::from_text(1, HEX32).unwrap();
        let b =
            FleetKey::from_text(1, "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let c = FleetKey::from_text(1, &format!("  hex:{HEX32}\n")).unwrap();
        let d = FleetKey::from_text(1, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        assert_eq!(a.bytes, (0u8..32).collect::<Vec<_>>());
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes, c.bytes);
        assert_eq!(a.bytes, d.bytes);
    }

    #[test]
    fn short_and_bad_keys_rejected() {
        assert!(matches!(
            FleetKey::from_text(1, "00112233"),
            Err(KeyError::TooShort { len: 4, .. })
        ));
        assert!(matches!(
            FleetKey::from_text(1, "hex:zz"),
            Err(KeyError::BadEncoding {
                encoding: "hex",
                ..
            })
        ));
        assert!(matches!(
            FleetKey::from_text(1, "not base64 at all!"),
            Err(KeyError::BadEncoding { .. })
        ));
        assert!(FleetKey::from_bytes(1, &[7u8; 15]).is_err());
        assert!(FleetKey::from_bytes(1, &[7u8; 16]).is_ok());
    }

    #[test]
    fn debug_and_display_redact() {
        let k = FleetKey::from_bytes(3, &[0xAB; 32]).unwrap();
        for s in [
            format!("{k:?}"),
            format!("{k}"),
            format!("{:?}", Keyring::new(k.clone())),
        ] {
            assert!(!s.to_lowercase().contains("abab"), "{s}");
            assert!(!s.contains("171"), "{s}");
            assert!(s.contains(&k.fingerprint()));
        }
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // SHA-256 of 32 zero bytes = 66687aadf862bd77...
        let k = FleetKey::from_bytes(0, &[0u8; 32]).unwrap();
        assert_eq!(k.fingerprint(), "66687aadf862bd77");
    }

    #[test]
    fn keyring_rotation() {
        let k1 = FleetKey::from_bytes(1, &[1; 16]).unwrap();
        let k2 = FleetKey::from_bytes(2, &[2; 16]).unwrap();
        let mut ring = Keyring::new(k1.clone());
        assert!(ring.rotate(k1.clone()).is_err());
        ring.rotate(k2).unwrap();
        assert_eq!(ring.current().id(), 2);
        assert_eq!(ring.get(1).map(FleetKey::id), Some(1));
        ring.retire_previous();
        assert!(ring.get(1).is_none());
        assert!(Keyring::with_previous(k1.clone(), k1).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("secosc-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("fleet.key");
        std::fs::write(&p, format!("{HEX32}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            FleetKey::from_file(1, &p),
            Err(KeyError::InsecurePermissions { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(FleetKey::from_file(1, &p).unwrap().bytes.len(), 32);
        // Raw binary key file.
        let raw: Vec<u8> = (0u8..24).map(|i| i.wrapping_mul(37) | 0x80).collect();
        std::fs::write(&p, &raw).unwrap();
        assert_eq!(FleetKey::from_file(1, &p).unwrap().bytes, raw);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
