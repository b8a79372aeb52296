//! A minimal HTTP/1.1 client on glommio for the outputs that speak HTTP
//! (out_elasticsearch, out_opensearch, out_http): one request at a time per
//! connection, plain TCP or TLS (rustls), keep-alive (an idle connection per server is
//! reused; a reused connection that fails before any answer byte is retried once on a
//! fresh one), a connect timeout and a timeout for the whole exchange, `Content-Length`
//! request bodies (gzip is the caller's choice), and responses with `Content-Length`,
//! chunked or read-to-close bodies, parsed with `httparse`. Response headers and bodies
//! are bounded ([`MAX_HEAD`], `max_body`); nothing a server sends can make the client
//! panic or allocate past them.
//!
//! Host names are resolved on glommio's blocking pool, never on the shard thread.

mod chunked;
pub mod url;

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::tls::{ClientTls, Stream};
pub use url::{Scheme, Url, UrlError};

/// Bytes of status line and headers accepted in a response.
pub const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 64;

/// Why a request failed. Every variant means "no usable answer": the caller retries.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connect to {addr} failed: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: no response within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
    #[error("{host}: {reason}")]
    Io { host: String, reason: String },
    #[error("{host}: malformed response: {reason}")]
    BadResponse { host: String, reason: String },
    #[error("{host}: response body larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{scheme}://{host}: https needs TLS settings")]
    NoTls { scheme: &'static str, host: String },
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConf {
    /// For `https` URLs.
    pub tls: Option<ClientTls>,
    pub connect_timeout: Duration,
    /// Sending the request and reading the whole response.
    pub timeout: Duration,
    /// Keep connections open between requests.
    pub keepalive: bool,
    /// An idle connection older than this is not reused.
    pub idle_timeout: Duration,
    /// Largest response body read.
    pub max_body: usize,
}

impl Default for ClientConf {
    fn default() -> Self {
        ClientConf {
            tls: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            keepalive: true,
            idle_timeout: Duration::from_secs(30),
            max_body: 64 << 20,
        }
    }
}

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    /// Path and query, starting with `/` (the URL's own path is not added).
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `"<status> <reason> <first 500 bytes of the body>"`, for log lines and retry
    /// reasons about a response that was not a success (the body is the server's own
    /// explanation, cut so that a huge error page cannot flood the log).
    pub fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(500)]);
        format!("{} {} {}", self.status, self.reason.trim(), body.trim()).trim_end().to_string()
    }
}

struct Idle {
    key: (String, u16, bool),
    stream: Stream,
    since: Instant,
}

/// An HTTP client for one shard (not `Send`; nothing is shared between shards).
pub struct Client {
    pub conf: ClientConf,
    idle: RefCell<Vec<Idle>>,
}

impl Client {
    pub fn new(conf: ClientConf) -> Client {
        Client { conf, idle: RefCell::new(Vec::new()) }
    }

    /// Drops kept-alive connections (after an error, or `reconnect_on_error`).
    pub fn reset(&self) {
        self.idle.borrow_mut().clear();
    }

    /// Sends a request and reads the response.
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, HttpError> {
        let u = req.url;
        let key = (u.host.clone(), u.port, u.scheme == Scheme::Https);
        let reused = {
            let mut idle = self.idle.borrow_mut();
            let now = Instant::now();
            idle.retain(|c| now.duration_since(c.since) < self.conf.idle_timeout);
            idle.iter().position(|c| c.key == key).map(|i| idle.swap_remove(i).stream)
        };
        if let Some(stream) = reused {
            match self.exchange(stream, req).await {
                Ok(r) => return Ok(r),
                // The server closed the idle connection: nothing was processed.
                Err((HttpError::Io { .. }, false)) => {}
                Err((e, _)) => return Err(e),
            }
        }
        let stream = self.connect(u).await?;
        self.exchange(stream, req).await.map_err(|(e, _)| e)
    }

    async fn connect(&self, u: &Url) -> Result<Stream, HttpError> {
        let addrs = resolve(&u.host, u.port).await?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(addr, self.conf.connect_timeout).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    if u.scheme == Scheme::Http {
                        return Ok(Stream::Plain(tcp));
                    }
                    let Some(tls) = &self.conf.tls else {
                        return Err(HttpError::NoTls { scheme: "https", host: u.host.clone() });
                    };
                    return Stream::connect(tcp, tls, &u.host, self.conf.connect_timeout)
                        .await
                        .map_err(|e| HttpError::Tls { host: u.host.clone(), reason: e.to_string() });
                }
                Err(e) => last = Some(HttpError::Connect { addr: addr.to_string(), reason: e.to_string() }),
            }
        }
        Err(last.unwrap_or(HttpError::Resolve { host: u.host.clone(), reason: "no address".into() }))
    }

    /// One request on `stream`; the error says whether any response byte arrived.
    async fn exchange(&self, mut stream: Stream, req: &Request<'_>) -> Result<Response, (HttpError, bool)> {
        let host = req.url.host.clone();
        let timeout = self.conf.timeout;
        let head = request_head(req);
        let max_body = self.conf.max_body;
        let r = glommio::timer::timeout(timeout, async {
            let r = async {
                stream.write_all(&head).await?;
                if !req.body.is_empty() {
                    stream.write_all(req.body).await?;
                }
                stream.flush().await
            }
            .await;
            if let Err(e) = r {
                return Ok(Err((HttpError::Io { host: host.clone(), reason: e.to_string() }, false)));
            }
            Ok(read_response(&mut stream, &host, req.method == "HEAD", max_body).await)
        })
        .await;
        match r {
            Ok(Ok((resp, reusable))) => {
                if reusable && self.conf.keepalive {
                    let key = (req.url.host.clone(), req.url.port, req.url.scheme == Scheme::Https);
                    self.idle.borrow_mut().push(Idle { key, stream, since: Instant::now() });
                }
                Ok(resp)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err((HttpError::Timeout { host: req.url.host.clone(), timeout }, true)),
        }
    }
}

/// The addresses of `host` (a name, an IP literal, or an IPv6 literal in brackets),
/// looked up on a blocking thread so that the shard does not wait on DNS. Also used by
/// outputs that are not HTTP (out_gelf).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    let h = host.trim_start_matches('[').trim_end_matches(']').to_string();
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = h.clone();
    let r = glommio::executor()
        .spawn_blocking(move || (name.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
        .await;
    match r {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(HttpError::Resolve { host: h, reason: "no address".into() }),
        Err(e) => Err(HttpError::Resolve { host: h, reason: e.to_string() }),
    }
}

/// `METHOD target HTTP/1.1`, `Host`, `Content-Length`, the caller's headers.
fn request_head(req: &Request<'_>) -> Vec<u8> {
    use std::io::Write;
    let u = req.url;
    let mut h = Vec::with_capacity(256);
    let _ = write!(h, "{} {} HTTP/1.1\r\nHost: {}", req.method, req.target, u.host);
    if u.port != u.scheme.default_port() {
        let _ = write!(h, ":{}", u.port);
    }
    h.extend_from_slice(b"\r\n");
    if !req.body.is_empty() || matches!(req.method, "POST" | "PUT" | "PATCH") {
        let _ = write!(h, "Content-Length: {}\r\n", req.body.len());
    }
    for (k, v) in req.headers {
        // Header injection: a CR or LF in a configured value would start a new header.
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            continue;
        }
        let _ = write!(h, "{k}: {v}\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

/// Reads one response (skipping 1xx); returns it and whether the connection can be
/// reused. Errors carry whether any byte arrived.
async fn read_response(
    s: &mut Stream,
    host: &str,
    head_only: bool,
    max_body: usize,
) -> Result<(Response, bool), (HttpError, bool)> {
    let io_err = |e: io::Error, got: bool| (HttpError::Io { host: host.to_string(), reason: e.to_string() }, got);
    let bad = |m: String| (HttpError::BadResponse { host: host.to_string(), reason: m }, true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 << 10];
    loop {
        // Status line and headers.
        let (status, reason, headers, used, version) = loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    break (
                        r.code.unwrap_or(0),
                        r.reason.unwrap_or("").to_string(),
                        headers,
                        n,
                        r.version.unwrap_or(1),
                    );
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(bad(format!("{e}"))),
            }
            if buf.len() > MAX_HEAD {
                return Err(bad(format!("headers longer than {MAX_HEAD} bytes")));
            }
            let n = s.read(&mut chunk).await.map_err(|e| io_err(e, !buf.is_empty()))?;
            if n == 0 {
                return Err((
                    HttpError::Io { host: host.to_string(), reason: "connection closed before a response".into() },
                    !buf.is_empty(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..used);
        if (100..200).contains(&status) {
            continue;
        }
        let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || (version == 0 && !get("connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")));
        let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match get("content-length") {
            Some(v) => Some(v.trim().parse::<usize>().map_err(|_| bad(format!("content-length {v:?}")))?),
            None => None,
        };
        let too_large = || (HttpError::TooLarge { host: host.to_string(), limit: max_body }, true);
        let mut body = Vec::new();
        let reusable;
        if head_only || status == 204 || status == 304 {
            reusable = !close && buf.is_empty();
        } else if chunked {
            let mut dec = chunked::Decoder::default();
            loop {
                let done = dec.feed(&mut buf, &mut body, max_body).map_err(|m| {
                    if m == chunked::TOO_LARGE {
                        too_large()
                    } else {
                        bad(m.to_string())
                    }
                })?;
                if done {
                    break;
                }
                let n = s.read(&mut chunk).await.map_err(|e| io_err(e, true))?;
                if n == 0 {
                    return Err(bad("connection closed inside a chunked body".into()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            reusable = !close && buf.is_empty();
        } else if let Some(len) = length {
            if len > max_body {
                return Err(too_large());
            }
            body.reserve(len.min(1 << 20));
            while buf.len() < len {
                let n = s.read(&mut chunk).await.map_err(|e| io_err(e, true))?;
                if n == 0 {
                    return Err(bad(format!("connection closed after {} of {len} body bytes", buf.len())));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&buf[..len]);
            reusable = !close && buf.len() == len;
        } else {
            // Until the server closes.
            body.append(&mut buf);
            loop {
                if body.len() > max_body {
                    return Err(too_large());
                }
                let n = s.read(&mut chunk).await.map_err(|e| io_err(e, true))?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            reusable = false;
        }
        return Ok((Response { status, reason, headers, body }, reusable));
    }
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Gzip-compresses a request body (off the shard when it is large).
pub async fn gzip(body: Vec<u8>, level: u32) -> Vec<u8> {
    if body.len() < 256 << 10 {
        return spate_protocol::compress::gzip(&body, level);
    }
    glommio::executor().spawn_blocking(move || spate_protocol::compress::gzip(&body, level)).await
}

#[cfg(test)]
mod tests;
