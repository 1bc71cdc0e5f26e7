//! Serving a library track over HTTP: `GET /api/tracks/{sha256}` with single-range support,
//! which is what a follower's resumable download asks for (`Range: bytes=<have>-`).
//!
//! The library finds the file and paces its bytes
//! ([`crate::library::Library::read_paced`], one token bucket shared by every connection);
//! this module answers the request: `Range` per RFC 9110 (one `bytes` range; a header it
//! cannot use is ignored and the whole track sent; a first byte past the end is `416` with
//! `Content-Range: bytes */len` and the API's JSON error), the audio type from the
//! extension, and since the name is the content, `ETag` = the hash and an immutable
//! `Cache-Control`.
//!
//! tower-http's `ServeFile` does not fit this route. Run (0.7.1,
//! `ignore_multi_range_requests` on) against the 13 cases of `ranges_follow_rfc_9110` below, it differs in 5: it answers
//! `416` to headers RFC 9110 says to ignore (`items=0-1`, `bytes=x-`, `bytes=5-2`; we send
//! the whole track) and to a suffix longer than the file (`bytes=-500` of 100 bytes, which
//! selects the whole file), and `206` with `Content-Range: bytes 0-0/0` to `bytes=0-` of an
//! empty file. Its `416` also has an empty body where every API error is `{"error": ...}`,
//! it adds `Last-Modified` handling that means nothing for a file named by its hash, and
//! its body would need re-wrapping to go through the shared bucket. No other route serves
//! files (the app is compiled in), so Convoy does not depend on tower-http.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::{WebError, WebState};
use crate::library::TrackHash;

/// A library track with single-range support (resumable downloads).
pub(super) async fn track(
    State(s): State<WebState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let hash: TrackHash = sha256.parse()?;
    let (path, len) = s.library().track_file(&hash).await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => return Err(WebError::RangeNotSatisfiable { len }),
    };
    let body = Body::from_stream(s.library().read_paced(&path, start, count).await?);
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("ogg") => "audio/ogg",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// What a `Range` request header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
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
fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
