//! Naming tracks by content: the SHA-256 [`TrackHash`] (64 lowercase hex digits, as in
//! beatmaps), the container a file's first bytes announce ([`sniff_format`]), and which
//! timeline track names are content names ([`content_name`]) rather than paths or built-ins.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::LibraryError;

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
    type Err = LibraryError;
    fn from_str(s: &str) -> Result<Self, LibraryError> {
        let bad = || LibraryError::BadHash(s.chars().take(80).collect());
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

/// A track named by its content (64 hex digits), if `name` is one.
pub fn content_name(name: &str) -> Option<TrackHash> {
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| name.to_ascii_lowercase().parse().ok())
        .flatten()
}

/// The containers the library keeps, as file extensions.
pub(super) const FORMATS: [&str; 4] = ["wav", "flac", "ogg", "mp3"];

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
    fn only_64_hex_digits_are_content_names() {
        let h = "ab".repeat(32);
        assert_eq!(content_name(&h).map(|t| t.to_string()), Some(h.clone()));
        assert!(content_name(&h.to_uppercase()).is_some());
        assert!(content_name("demo").is_none());
        assert!(content_name(&"g".repeat(64)).is_none());
        assert!(content_name(&"a".repeat(63)).is_none());
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
}
