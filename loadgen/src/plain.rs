//! Senders for the non-Forward inputs (`run --protocol http|tcp|udp|syslog`), one thread
//! per connection like `threaded.rs`, sharing its counters, `--rate` schedule,
//! `--events` budget and warmup. Batches are pre-rendered (`lines.rs`); a send only
//! slices them.
//!
//! - HTTP: one request in flight per keep-alive connection; its events count as sent
//!   (and acked) only when a 2xx response came back, and the response's latency from the
//!   intended send time goes into the ack histogram. Another status is an error (the
//!   first one is printed with the response body); a connection the server closes is
//!   reopened.
//! - TCP and syslog: `batch` lines per write; counted once written to the socket.
//! - UDP: one datagram per line; counted once handed to the kernel (best effort: the
//!   target may drop datagrams).

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::generator::Ctx;
use crate::lines::{BatchSet, Params, Protocol};
use crate::stats::{wall_ns, LocalHist};
use crate::tls::Conn;

/// Largest response head and body kept (a response is read whole before the next
/// request; bodies are usually empty).
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection closed before a whole response arrived")]
    Closed,
    #[error("reading the response: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid HTTP response: {0}")]
    Parse(#[from] httparse::Error),
    #[error("invalid chunked response body")]
    Chunk,
    #[error("response head or body too large (limits {MAX_HEAD} and {MAX_BODY} bytes)")]
    TooLarge,
}

/// A response read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The server closes the connection after it.
    pub close: bool,
    /// The start of the body, for error messages.
    pub body: String,
}

fn more(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), HttpError> {
    let mut tmp = [0u8; 8192];
    match s.read(&mut tmp)? {
        0 => Err(HttpError::Closed),
        n => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(())
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response from `s`; bytes after it stay in `buf`.
pub fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<Response, HttpError> {
    let (status, hdr, length, chunked, mut close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(buf)? {
            httparse::Status::Complete(n) => {
                let (mut length, mut chunked, mut close) = (None, false, r.version == Some(0));
                for h in r.headers.iter() {
                    let v = std::str::from_utf8(h.value).unwrap_or("").trim().to_ascii_lowercase();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(v.parse::<usize>().map_err(|_| httparse::Error::HeaderValue)?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = v.contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = v.contains("close");
                    }
                }
                break (r.code.unwrap_or(0), n, length, chunked, close);
            }
            httparse::Status::Partial => {
                if buf.len() > MAX_HEAD {
                    return Err(HttpError::TooLarge);
                }
                more(s, buf)?;
            }
        }
    };
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let (body, end) = if no_body {
        (Vec::new(), hdr)
    } else if chunked {
        let mut body = Vec::new();
        let mut pos = hdr;
        loop {
            let Some(nl) = find(&buf[pos..], b"\r\n") else {
                if buf.len() - pos > 1024 {
                    return Err(HttpError::Chunk);
                }
                more(s, buf)?;
                continue;
            };
            let line = std::str::from_utf8(&buf[pos..pos + nl]).map_err(|_| HttpError::Chunk)?;
            let size =
                usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| HttpError::Chunk)?;
            if size == 0 {
                // Trailers (usually none) end with an empty line.
                let from = pos + nl;
                let end = loop {
                    if let Some(e) = find(&buf[from..], b"\r\n\r\n") {
                        break from + e + 4;
                    }
                    if buf.len() - from > MAX_HEAD {
                        return Err(HttpError::TooLarge);
                    }
                    more(s, buf)?;
                };
                break (body, end);
            }
            if size > MAX_BODY || body.len() + size > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            let data = pos + nl + 2;
            while buf.len() < data + size + 2 {
                more(s, buf)?;
            }
            body.extend_from_slice(&buf[data..data + size]);
            pos = data + size + 2;
        }
    } else if let Some(len) = length {
        if len > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        while buf.len() < hdr + len {
            more(s, buf)?;
        }
        (buf[hdr..hdr + len].to_vec(), hdr + len)
    } else {
        // No length: the body ends with the connection.
        close = true;
        loop {
            if buf.len() - hdr > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            match more(s, buf) {
                Ok(()) => {}
                Err(HttpError::Closed) => break,
                Err(e) => return Err(e),
            }
        }
        (buf[hdr..].to_vec(), buf.len())
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    buf.drain(..end.min(buf.len()));
    Ok(Response { status, close, body: text })
}

enum Sock {
    Stream(Conn),
    Udp(UdpSocket),
}

fn open_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    Ok(s)
}

/// One connection slot of a non-Forward run: (re)connects and sends until the run ends.
pub(crate) fn connection(id: u32, addr: SocketAddr, ctx: Arc<Ctx>) {
    let (cfg, sh) = (&ctx.cfg, &ctx.sh);
    let c = &sh.c;
    let wall = wall_ns();
    let now = ((wall / 1_000_000_000) as i64, (wall % 1_000_000_000 / 1000) as u32);
    let params = Params { protocol: cfg.protocol, format: cfg.format(), tag: cfg.tag.clone(), host: addr.to_string() };
    let mut set = BatchSet::new(params, &ctx.tpls, id as usize * 7, cfg.batch, now);
    let batch = set.batch();
    let interval = ctx.rate_of(id).map(|r| Duration::from_secs_f64(batch as f64 / r.max(1e-9)));
    let mut next_due = ctx.start;
    let mut left = crate::stats::share(cfg.events, id, cfg.connections);
    let mut local = LocalHist::default();
    let mut rbuf = Vec::with_capacity(4096);
    let mut first = true;
    'outer: while !c.stopping() {
        let mut sock = if cfg.protocol == Protocol::Udp {
            match open_udp(addr) {
                Ok(s) => {
                    sh.record_connect(Duration::ZERO);
                    Sock::Udp(s)
                }
                Err(e) => {
                    c.connect_failed(cfg.quiet, format_args!("cannot open a UDP socket to {addr}: {e}"));
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        } else {
            match crate::threaded::connect(addr, cfg, sh) {
                Some(s) => {
                    // A hung server must not hold the run past its end.
                    let _ = s.set_read_timeout(Some(cfg.ack_timeout));
                    Sock::Stream(s)
                }
                None => break,
            }
        };
        if !first {
            c.add(&c.reconnects, 1);
        }
        first = false;
        rbuf.clear();
        let finished = loop {
            if c.stopping() {
                break true;
            }
            // Open loop: wait for the intended send time (never skip a slot).
            let intended = match interval {
                Some(iv) => {
                    let now = Instant::now();
                    if next_due > now {
                        std::thread::sleep(next_due - now);
                    }
                    let t = next_due;
                    next_due += iv;
                    t
                }
                None => Instant::now(),
            };
            let events = c.take(&mut left, batch as u64) as u32;
            if events == 0 {
                break true;
            }
            let measured = c.measuring();
            let b = set.take(events);
            let count = |n: u64, bytes: u64, writes: u64| {
                c.add(&c.sent_total, n);
                if measured {
                    c.add(&c.sent_events, n);
                    c.add(&c.sent_bytes, bytes);
                    c.add(&c.sent_frames, writes);
                    sh.per_conn_add(id, n);
                }
            };
            match &mut sock {
                Sock::Udp(u) => {
                    let (mut start, mut sent, mut bytes) = (0, 0u64, 0u64);
                    let mut failed = 0u64;
                    for &end in &b.ends {
                        match u.send(&b.bytes[start..end]) {
                            Ok(_) => {
                                sent += 1;
                                bytes += (end - start) as u64;
                            }
                            Err(_) => failed += 1,
                        }
                        start = end;
                    }
                    count(sent, bytes, sent);
                    if failed > 0 {
                        if measured {
                            c.add(&c.errors, failed);
                        }
                        // An ICMP "port unreachable" fails the next sends: do not spin.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Sock::Stream(s) => {
                    if s.write_all(&b.bytes).is_err() {
                        if measured {
                            c.add(&c.errors, 1);
                        }
                        break false;
                    }
                    if cfg.protocol != Protocol::Http {
                        count(events as u64, b.bytes.len() as u64, 1);
                        continue;
                    }
                    let n = b.bytes.len() as u64;
                    match read_response(s, &mut rbuf) {
                        Ok(r) if (200..300).contains(&r.status) => {
                            count(events as u64, n, 1);
                            c.add(&c.acked_total, events as u64);
                            if measured {
                                c.add(&c.acked_events, events as u64);
                                let intended_ns = ctx.start_wall + intended.duration_since(ctx.start).as_nanos() as u64;
                                local.record(sh, wall_ns().saturating_sub(intended_ns) / 1000);
                            }
                            local.maybe_flush(sh, false);
                            if r.close {
                                break false;
                            }
                        }
                        Ok(r) => {
                            if measured {
                                c.add(&c.errors, 1);
                            }
                            if !cfg.quiet && !c.warned.swap(true, Ordering::Relaxed) {
                                eprintln!("spate-loadgen: {addr} answered HTTP {}: {}", r.status, r.body);
                            }
                            if r.close {
                                break false;
                            }
                        }
                        Err(e) => {
                            if measured {
                                c.add(&c.errors, 1);
                            }
                            if !cfg.quiet && !c.warned.swap(true, Ordering::Relaxed) {
                                eprintln!("spate-loadgen: {addr}: {e} (reconnecting)");
                            }
                            break false;
                        }
                    }
                }
            }
        };
        if let Sock::Stream(s) = &sock {
            s.shutdown();
        }
        if finished {
            break 'outer;
        }
    }
    local.maybe_flush(sh, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<(Response, Vec<u8>), HttpError> {
        let mut src = raw;
        let mut buf = Vec::new();
        let r = read_response(&mut src, &mut buf)?;
        Ok((r, buf))
    }

    #[test]
    fn responses_with_length_chunks_or_close() {
        let (r, rest) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1").unwrap();
        assert_eq!((r.status, r.close, r.body.as_str()), (200, false, "ok"));
        assert_eq!(rest, b"HTTP/1.1");
        let (r, rest) =
            parse(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n2\r\n!!\r\n0\r\n\r\nX")
                .unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "bad!!"));
        assert_eq!(rest, b"X");
        let (r, _) = parse(b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nbye").unwrap();
        assert_eq!((r.status, r.close, r.body.as_str()), (201, true, "bye"));
        let (r, _) = parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.close), (204, false));
    }

    #[test]
    fn bad_responses_are_errors_not_panics() {
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), Err(HttpError::Closed)));
        assert!(matches!(parse(b"garbage\r\n\r\n"), Err(HttpError::Parse(_))));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(HttpError::Parse(_))));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), Err(HttpError::Chunk)));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"), Err(HttpError::TooLarge)));
        assert!(matches!(parse(b"HTTP/1.1 200"), Err(HttpError::Closed)));
    }
}
