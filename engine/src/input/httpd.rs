//! A small HTTP/1.1 server for spate's own endpoints (monitor_agent, Prometheus, RPC),
//! run as tasks on a shard. Requests are parsed with `httparse`; everything a client
//! controls is bounded: header bytes ([`MAX_HEADER_BYTES`], else 431), header count,
//! body size ([`MAX_BODY`], else 413), the time to send a request ([`REQUEST_TIMEOUT`]:
//! a slow client is disconnected), idle keep-alive time and connections per server
//! ([`MAX_CONNECTIONS`], else 503). A malformed request gets 400 and the connection is
//! closed; nothing a client sends can panic the shard or disturb the other listeners.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::input::net::Listener;
use crate::plugin::LocalFuture;

/// Request line and headers together.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 64;
/// Request bodies (the endpoints take none; RPC clients may send a small one).
pub const MAX_BODY: usize = 64 << 10;
/// Time a client has to send a whole request once it started (or connected).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a keep-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent connections per server.
pub const MAX_CONNECTIONS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, percent-decoded.
    pub path: String,
    /// Query parameters in order, percent-decoded (`a` alone gives `("a", "")`).
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `k`.
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, content_type, headers: Vec::new(), body: body.into() }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "application/json", body)
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "text/plain", body)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Answers a request (on the server's shard).
pub type Handler = Rc<dyn Fn(Request) -> LocalFuture<'static, Response>>;

/// A running server: dropping it does not stop it; [`Server::stop`] does.
pub struct Server {
    task: JoinHandle<()>,
    conns: Rc<Cell<usize>>,
}

impl Server {
    /// Serves `listener` with `handler`; `name` prefixes log lines.
    pub fn start(listener: Listener, name: String, handler: Handler) -> Server {
        let conns = Rc::new(Cell::new(0usize));
        let c2 = conns.clone();
        let task = glommio::spawn_local(async move {
            loop {
                let stream = listener.accept().await;
                if c2.get() >= MAX_CONNECTIONS {
                    let mut s = stream;
                    let _ = write_response(&mut s, &Response::text(503, "too many connections\n"), false).await;
                    let _ = s.close().await;
                    continue;
                }
                c2.set(c2.get() + 1);
                let (h, n, c3) = (handler.clone(), name.clone(), c2.clone());
                glommio::spawn_local(async move {
                    serve(stream, &n, &h).await;
                    c3.set(c3.get().saturating_sub(1));
                })
                .detach();
            }
        })
        .detach();
        Server { task, conns }
    }

    /// Stops accepting (connections being served finish their request).
    pub fn stop(&self) {
        self.task.cancel();
    }

    pub fn connections(&self) -> usize {
        self.conns.get()
    }
}

/// What reading one request gave.
enum Read {
    Request(Request, bool),
    /// The peer closed between requests.
    Closed,
    /// Answer this and close.
    Reject(u16, String),
}

async fn serve(mut s: TcpStream, name: &str, h: &Handler) {
    let peer = s.peer_addr().map_or_else(|_| "?".to_string(), |p| p.to_string());
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut first = true;
    loop {
        let wait = if first { REQUEST_TIMEOUT } else { IDLE_TIMEOUT };
        first = false;
        match read_request(&mut s, &mut buf, wait).await {
            Read::Closed => break,
            Read::Reject(status, why) => {
                crate::debug!("{name}: bad request from {peer}: {why}");
                let _ = write_response(&mut s, &Response::text(status, format!("{why}\n")), false).await;
                break;
            }
            Read::Request(req, keep) => {
                let head = req.method == "HEAD";
                let mut resp = h(req).await;
                if head {
                    resp.body.clear();
                }
                if write_response(&mut s, &resp, keep).await.is_err() || !keep {
                    break;
                }
            }
        }
    }
    let _ = s.close().await;
}

/// Reads one request. `buf` keeps bytes after it (pipelining).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>, idle: Duration) -> Read {
    let start = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Request::new(&mut headers);
            match r.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = match Head::of(&r) {
                        Ok(h) => h,
                        Err(why) => return Read::Reject(400, why),
                    };
                    return finish(s, buf, n, head, start).await;
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Read::Reject(431, format!("more than {MAX_HEADERS} headers"))
                }
                Err(e) => return Read::Reject(400, format!("malformed request: {e}")),
            }
            if buf.len() > MAX_HEADER_BYTES {
                return Read::Reject(431, format!("request headers larger than {MAX_HEADER_BYTES} bytes"));
            }
        }
        // The whole request must arrive within REQUEST_TIMEOUT of its first byte; a
        // connection may idle `idle` before that.
        let limit = if buf.is_empty() { idle } else { REQUEST_TIMEOUT };
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return if buf.is_empty() {
                Read::Closed
            } else {
                Read::Reject(408, "request not received in time".into())
            };
        }
        match glommio::timer::timeout(left, async { s.read(&mut chunk).await.map_err(glommio::GlommioError::from) })
            .await
        {
            Ok(0) => return Read::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(glommio::GlommioError::TimedOut(_)) => {
                return if buf.is_empty() {
                    Read::Closed
                } else {
                    Read::Reject(408, "request not received in time".into())
                }
            }
            Err(_) => return Read::Closed,
        }
    }
}

/// What of a parsed request head is kept once the buffer moves on.
struct Head {
    method: String,
    target: String,
    len: usize,
    keep: bool,
}

impl Head {
    fn of(r: &httparse::Request<'_, '_>) -> Result<Head, String> {
        let mut h = Head {
            method: r.method.unwrap_or("").to_string(),
            target: r.path.unwrap_or("/").to_string(),
            len: 0,
            keep: r.version == Some(1),
        };
        for x in r.headers.iter() {
            let v = std::str::from_utf8(x.value).unwrap_or("").trim();
            if x.name.eq_ignore_ascii_case("content-length") {
                h.len = v.parse::<usize>().map_err(|_| "invalid Content-Length".to_string())?;
            } else if x.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked request bodies are not supported".into());
            } else if x.name.eq_ignore_ascii_case("connection") {
                if v.eq_ignore_ascii_case("close") {
                    h.keep = false;
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    h.keep = true;
                }
            }
        }
        Ok(h)
    }
}

async fn finish(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize, head: Head, start: Instant) -> Read {
    let Head { method, target, len, keep } = head;
    if len > MAX_BODY {
        return Read::Reject(413, format!("request body larger than {MAX_BODY} bytes"));
    }
    buf.drain(..n);
    let mut chunk = [0u8; 4096];
    while buf.len() < len {
        let left = REQUEST_TIMEOUT.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Read::Reject(408, "request body not received in time".into());
        }
        match glommio::timer::timeout(left, async { s.read(&mut chunk).await.map_err(glommio::GlommioError::from) })
            .await
        {
            Ok(0) | Err(_) => return Read::Reject(408, "request body not received in time".into()),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target.as_str(), Vec::new()),
    };
    let Some(path) = percent_decode(path) else { return Read::Reject(400, "invalid percent-encoding in path".into()) };
    Read::Request(Request { method, path, query, body }, keep)
}

async fn write_response(s: &mut TcpStream, r: &Response, keep: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep { "keep-alive" } else { "close" }
    );
    for (k, v) in &r.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    s.write_all(&out).await
}

/// `a=1&b=x%20y&c`: pairs, percent- and `+`-decoded; undecodable pairs are skipped.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(&k.replace('+', " "))?, percent_decode(&v.replace('+', " "))?))
        })
        .collect()
}

/// Percent-decoding; `None` for a bad escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("with_config=yes&with_retry&%40type=forward&x=a+b%2C"),
            vec![
                ("with_config".into(), "yes".into()),
                ("with_retry".into(), "".into()),
                ("@type".into(), "forward".into()),
                ("x".into(), "a b,".into())
            ]
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("/api/plugins.json"), Some("/api/plugins.json".into()));
    }
}
