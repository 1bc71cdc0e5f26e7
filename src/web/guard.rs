//! Who may change things, before any handler runs: cross-site requests, body types, the
//! no-PIN default and the PIN policy ([`super::auth`]), in one middleware.
//!
//! A state-changing request is anything but GET, HEAD and OPTIONS; the WebSocket upgrade
//! (`GET /api/ws`) is checked like one, since a page elsewhere could otherwise hold the
//! bike's WebSocket slots. In order:
//!
//! 1. **Cross-site** ([`check_site`]). A browser names the page that sent a request in
//!    `Origin` (and, recent ones, `Sec-Fetch-Site`). It must be the bike's own address
//!    (the `Host` the request was sent to) or one of `web.allowed_origins`; otherwise 403.
//!    Without either header the client is not a browser page (curl, the CLI, another bike)
//!    and nothing is checked: only a browser carries a rider's session or network
//!    position into a request someone else wrote.
//! 2. **Body type** ([`check_body_type`]). A JSON route with a body, or any `Content-Type`,
//!    takes only `application/json`; an upload takes anything but the three types a page
//!    may send cross-site without asking (`text/plain`, `multipart/form-data`,
//!    `application/x-www-form-urlencoded`). 415 otherwise. A browser must then ask first
//!    (a CORS preflight) before it could send such a request, and this server grants none.
//! 3. **No PIN** ([`loopback_only`]). With `web.pin` empty, state-changing requests come
//!    only from the bike itself (loopback). Others get 403 "set web.pin to control from
//!    other devices", logged once at warn; reads and the app stay open.
//! 4. **PIN** ([`super::Auth::check`]) under `/api/`, as before.
//!
//! Refusals are `{"error": "..."}` like every other API error.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Access;
use super::{WebError, WebState};

/// Why the guard refused a request before any handler saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A page on another site sent it.
    #[error("cross-site request refused: {0}")]
    CrossSite(String),
    /// The body type is one a page elsewhere may send without asking.
    #[error("{0}")]
    BodyType(String),
    /// No PIN is set and the request is not from this bike.
    #[error("set web.pin to control from other devices (without a PIN only this bike itself may change anything; {from} may look)")]
    NoPin {
        /// Where the request came from.
        from: IpAddr,
    },
}

/// The cross-site policy: the bike's own address plus `web.allowed_origins`.
#[derive(Debug, Default)]
pub struct SitePolicy {
    /// Extra allowed origins, lowercased, as `scheme://host[:port]`.
    allowed: Vec<String>,
    /// The no-PIN refusal was logged (it is logged once per server).
    warned: AtomicBool,
}

impl SitePolicy {
    /// A policy allowing the bike's own address and `allowed` (`http://host:port`).
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: allowed
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            warned: AtomicBool::new(false),
        }
    }
}

/// Whether a request with this method changes something.
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuse a request a browser sent from a page that is not this bike's (nor allowed).
pub fn check_site(headers: &HeaderMap, policy: &SitePolicy) -> Result<(), GuardError> {
    let text = |name: header::HeaderName| {
        headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or("(not text)")
                .trim()
                .to_ascii_lowercase()
        })
    };
    let origin = text(header::ORIGIN);
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let host = text(header::HOST).unwrap_or_default();
    let allowed = |o: &str| {
        let authority = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        authority.is_some_and(|a| !host.is_empty() && a == host)
            || policy.allowed.iter().any(|x| x == o)
    };
    match (&origin, fetch_site.as_deref()) {
        (Some(o), _) if allowed(o) => Ok(()),
        (Some(o), _) => Err(GuardError::CrossSite(format!(
            "the page at {o} is not this bike ({}) nor in web.allowed_origins",
            if host.is_empty() { "no Host" } else { &host }
        ))),
        // No Origin: a browser still says where a request came from in Sec-Fetch-Site.
        (None, Some("cross-site" | "same-site")) => Err(GuardError::CrossSite(format!(
            "Sec-Fetch-Site is {} and there is no Origin",
            fetch_site.as_deref().unwrap_or_default()
        ))),
        (None, _) => Ok(()),
    }
}

/// The three body types a page may send anywhere without a CORS preflight.
fn simple_type(mime: &str) -> bool {
    matches!(
        mime,
        "text/plain" | "multipart/form-data" | "application/x-www-form-urlencoded"
    )
}

/// Refuse a body type that a page elsewhere could send without asking first.
pub fn check_body_type(headers: &HeaderMap, upload: bool) -> Result<(), GuardError> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("(not text)")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if upload {
        return match content_type {
            Some(t) if simple_type(&t) => Err(GuardError::BodyType(format!(
                "an upload is sent as Content-Type: application/octet-stream (or the file's \
                 own type), not {t}"
            ))),
            _ => Ok(()),
        };
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    match content_type {
        Some(t) if t == "application/json" => Ok(()),
        Some(t) => Err(GuardError::BodyType(format!(
            "this API takes Content-Type: application/json, not {t}"
        ))),
        None if has_body => Err(GuardError::BodyType(
            "this API takes a JSON body with Content-Type: application/json".into(),
        )),
        None => Ok(()),
    }
}

/// Without a PIN, only the bike itself may change anything.
pub fn loopback_only(from: IpAddr) -> Result<(), GuardError> {
    let local = match from {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    };
    if local {
        Ok(())
    } else {
        Err(GuardError::NoPin { from })
    }
}

/// The middleware: the checks above, by method and path, then the handler.
pub(super) async fn guard(
    State(s): State<WebState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, WebError> {
    let path = request.uri().path();
    let method = request.method();
    let headers = request.headers();
    let writes = changes_state(method);
    if writes || path == "/api/ws" {
        check_site(headers, s.site())?;
    }
    let session = matches!(path, "/api/login" | "/api/logout");
    if writes {
        check_body_type(headers, path == "/api/upload")?;
        if !s.auth().pin_required() && !session {
            if let Err(e) = loopback_only(addr.ip()) {
                if !s.site().warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "web: refused {method} {path} from {}: no web.pin is set, so only this \
                         bike may change anything (logged once)",
                        addr.ip()
                    );
                }
                return Err(e.into());
            }
        }
    }
    let open =
        !path.starts_with("/api/") || session || matches!(path, "/api/info" | "/api/openapi.yaml");
    if !open {
        let access = if writes { Access::Write } else { Access::Read };
        s.auth().check(addr.ip(), headers, access)?;
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn only_the_bikes_own_pages_and_allowed_origins_pass() {
        let p = SitePolicy::new(&["http://Bike1.local:8080/".to_string()]);
        let host = ("host", "192.168.4.1:8080");
        assert_eq!(check_site(&headers(&[host]), &p), Ok(()), "curl, the CLI");
        assert_eq!(
            check_site(&headers(&[host, ("origin", "http://192.168.4.1:8080")]), &p),
            Ok(())
        );
        assert_eq!(
            check_site(&headers(&[host, ("origin", "http://bike1.local:8080")]), &p),
            Ok(())
        );
        let evil =
            check_site(&headers(&[host, ("origin", "http://evil.example")]), &p).expect_err("evil");
        assert_eq!(
            evil.to_string(),
            "cross-site request refused: the page at http://evil.example is not this bike \
             (192.168.4.1:8080) nor in web.allowed_origins"
        );
        // Same address, another port: another site's page.
        assert!(check_site(&headers(&[host, ("origin", "http://192.168.4.1:9000")]), &p).is_err());
        assert!(check_site(&headers(&[host, ("origin", "null")]), &p).is_err());
        let no_origin = check_site(&headers(&[host, ("sec-fetch-site", "cross-site")]), &p);
        assert!(no_origin.is_err(), "{no_origin:?}");
        assert_eq!(
            check_site(&headers(&[host, ("sec-fetch-site", "same-origin")]), &p),
            Ok(())
        );
    }

    #[test]
    fn json_routes_take_json_and_uploads_no_form_types() {
        let json = ("content-type", "application/json; charset=utf-8");
        let plain = ("content-type", "text/plain;charset=UTF-8");
        assert_eq!(
            check_body_type(&headers(&[json, ("content-length", "2")]), false),
            Ok(())
        );
        assert_eq!(check_body_type(&headers(&[]), false), Ok(()), "no body");
        let e = check_body_type(&headers(&[plain, ("content-length", "2")]), false)
            .expect_err("text/plain");
        assert_eq!(
            e.to_string(),
            "this API takes Content-Type: application/json, not text/plain"
        );
        assert!(check_body_type(&headers(&[("content-length", "9")]), false).is_err());
        assert!(check_body_type(&headers(&[plain]), true).is_err());
        for ok in ["application/octet-stream", "audio/wav", "application/toml"] {
            assert_eq!(
                check_body_type(&headers(&[("content-type", ok)]), true),
                Ok(())
            );
        }
        assert_eq!(check_body_type(&headers(&[]), true), Ok(()));
    }

    #[test]
    fn without_a_pin_only_loopback_changes_things() {
        assert_eq!(loopback_only("127.0.0.1".parse().expect("ip")), Ok(()));
        assert_eq!(loopback_only("::1".parse().expect("ip")), Ok(()));
        assert_eq!(
            loopback_only("::ffff:127.0.0.1".parse().expect("ip")),
            Ok(())
        );
        let e = loopback_only("192.168.4.20".parse().expect("ip")).expect_err("remote");
        assert!(
            e.to_string()
                .starts_with("set web.pin to control from other devices"),
            "{e}"
        );
    }
}
