//! Serving a library track over HTTP: `GET /api/tracks/{sha256}` with single-range support,
//! which is what a follower's resumable download asks for (`Range: bytes=<have>-`).
//!
//! The library finds the file and paces its bytes
//! ([`crate::library::Library::read_paced`], one token bucket shared by every connection);
//! this module answers the request: `Range` per RFC 9110 ([`super::range`]: one `bytes` range; a header it
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

use super::range::{parse_range, RangeRequest};
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
