//! A minimal HTTP/1.1 client over hyper's connection API, for fleet peers and followed players.
//!
//! Convoy only talks plain `http://` to machines on the bike's own network (peers sharing
//! tracks, an EchoFlux-style player, chromedriver in the tests), so one request per
//! connection with explicit timeouts is all it needs; hyper's low-level `client::conn`
//! gives that without reqwest's dependency tree. Every wait — connect, response head, each
//! body frame — is bounded by the client's timeout, so a peer that stalls is an error, not a
//! hang. Bodies are read either whole (capped, [`read_body`]) or frame by frame by the caller
//! (the track downloader, which throttles and writes as it goes). It lives here because
//! the downloader is its main user; `web`'s EchoFlux follower uses it too.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// Why a request failed before a usable response arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse or is not `http://host[:port]/…`.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Name resolution or the TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("{what} from {addr} timed out after {after:?}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// What was awaited (connect, response, body).
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// HTTP-level failure (connection reset, malformed response, closed mid-body).
    #[error("HTTP error with {addr}: {source}")]
    Http {
        /// `host:port`.
        addr: String,
        /// Underlying hyper error.
        source: hyper::Error,
    },
    /// The request could not be built (a header value with control characters…).
    #[error("cannot build request: {0}")]
    Build(String),
    /// A body was larger than the caller allows.
    #[error("response body from {addr} exceeds {limit} bytes")]
    TooLarge {
        /// `host:port`.
        addr: String,
        /// The cap.
        limit: usize,
    },
}

/// One-request-per-connection HTTP client with a uniform timeout.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Bound on connect, on the response head and on each body frame.
    timeout: Duration,
    /// Kernel receive buffer for new connections (None: the OS default). A small buffer
    /// makes a throttled reader throttle the sender too, instead of letting the kernel
    /// soak up megabytes at full WiFi speed.
    recv_buffer: Option<u32>,
    /// Headers sent with every request (e.g. the fleet PIN).
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// A response whose body has not been read yet, with the address it came from.
#[derive(Debug)]
pub struct Fetched {
    /// Status, headers and the streaming body.
    pub response: Response<Incoming>,
    /// `host:port` of the server, for error messages.
    pub addr: String,
    /// The client's timeout, applied to each body frame by [`Fetched::next_chunk`].
    pub timeout: Duration,
}

impl HttpClient {
    /// A client whose every wait is bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            recv_buffer: None,
            headers: Vec::new(),
        }
    }

    /// Use a kernel receive buffer of `bytes` on new connections.
    pub fn with_recv_buffer(mut self, bytes: u32) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Send `name: value` with every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, ClientError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::Build(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ClientError::Build(format!("header {name}: {e}")))?;
        self.headers.push((name, value));
        Ok(self)
    }

    /// The per-wait timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET url` with extra `headers`.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Fetched, ClientError> {
        self.send(Method::GET, url, headers, None).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(&self, url: &str, body: &[u8]) -> Result<Fetched, ClientError> {
        self.send(
            Method::POST,
            url,
            &[(CONTENT_TYPE.as_str(), "application/json")],
            Some(Bytes::copy_from_slice(body)),
        )
        .await
    }

    /// Any request; `body` None sends no body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Fetched, ClientError> {
        let bad = |reason| ClientError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or(bad("no host"))?.clone();
        let addr = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.host()),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());

        let stream = self.within(&addr, "connect", self.connect(&addr)).await??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http {
                addr: addr.clone(),
                source,
            })?;
        // The connection task ends when the response body is dropped or finished.
        tokio::spawn(async move {
            let _ = conn.await;
        });

        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let response = self
            .within(&addr, "response", sender.send_request(request))
            .await?
            .map_err(|source| ClientError::Http {
                addr: addr.clone(),
                source,
            })?;
        Ok(Fetched {
            response,
            addr,
            timeout: self.timeout,
        })
    }

    async fn connect(&self, addr: &str) -> Result<TcpStream, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = None;
        for sock_addr in tokio::net::lookup_host(addr).await.map_err(connect_err)? {
            let socket = if sock_addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(connect_err)?;
            if let Some(bytes) = self.recv_buffer {
                socket.set_recv_buffer_size(bytes).map_err(connect_err)?;
            }
            match socket.connect(sock_addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(connect_err)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(connect_err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })))
    }

    async fn within<F: std::future::Future>(
        &self,
        addr: &str,
        what: &'static str,
        f: F,
    ) -> Result<F::Output, ClientError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                what,
                after: self.timeout,
            })
    }
}

impl Fetched {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// A header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name)?.to_str().ok()
    }

    /// The next data chunk of the body; `None` at its end. Each wait is bounded by the
    /// client's timeout; a connection closed before the announced length is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let frame = tokio::time::timeout(self.timeout, self.response.body_mut().frame())
                .await
                .map_err(|_| ClientError::Timeout {
                    addr: self.addr.clone(),
                    what: "body",
                    after: self.timeout,
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Http {
                        addr: self.addr.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// The whole body, refusing more than `limit` bytes.
pub async fn read_body(fetched: &mut Fetched, limit: usize) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = fetched.next_chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(ClientError::TooLarge {
                addr: fetched.addr.clone(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
