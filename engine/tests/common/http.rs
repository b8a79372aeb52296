//! A minimal HTTP/1.1 client for the tests of spate's own endpoints (monitor_agent,
//! Prometheus, RPC): one request per connection, the whole response read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, headers (lowercase names), body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` as is and reads until the server closes (or 10 s pass).
pub fn raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(raw)?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(out)
}

/// Parses a full response.
pub fn parse(bytes: &[u8]) -> Option<Resp> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Resp { status, headers, body: bytes[end + 4..].to_vec() })
}

/// `METHOD path` with `Connection: close`.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Resp {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let bytes = raw(addr, req.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse(&bytes)
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP response in {:?}", String::from_utf8_lossy(&bytes)))
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path)
}

/// GETs `path` until `ok` accepts the response (or `within` passes; then panics with
/// the last response).
pub fn get_until(addr: SocketAddr, path: &str, within: Duration, ok: impl Fn(&Resp) -> bool) -> Resp {
    let end = std::time::Instant::now() + within;
    loop {
        let r = raw(addr, format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
            .ok()
            .and_then(|b| parse(&b));
        if let Some(r) = &r {
            if ok(r) {
                return r.clone();
            }
        }
        assert!(
            std::time::Instant::now() < end,
            "GET {path}: not as expected within {within:?}: {:?}",
            r.map(|r| r.text())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
