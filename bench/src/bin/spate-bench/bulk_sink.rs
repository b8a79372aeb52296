//! S12's bulk endpoint: an HTTP/1.1 server on loopback that takes Elasticsearch Bulk API
//! requests (`POST [/<index>]/_bulk`, `Content-Length` or chunked bodies, gzip counted
//! as is), counts the documents of the load generator (source lines carrying its
//! `_spate_ts` stamp; fluentd also ships its own logs) and answers
//! `{"errors":false}` at once, so the system under test is what is measured. `GET /`
//! answers an Elasticsearch 8 version document.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct BulkSink {
    pub addr: SocketAddr,
    /// Documents of the load generator received.
    pub docs: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
}

impl BulkSink {
    pub fn start() -> std::io::Result<BulkSink> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let docs = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (d, r) = (docs.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (d, r) = (d.clone(), r.clone());
                std::thread::spawn(move || serve(s, &d, &r));
            }
        });
        Ok(BulkSink { addr, docs, requests })
    }

    pub fn docs(&self) -> u64 {
        self.docs.load(Ordering::Relaxed)
    }
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn serve(mut s: TcpStream, docs: &AtomicU64, requests: &AtomicU64) {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut tmp = vec![0u8; 1 << 20];
    loop {
        let Some(i) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..i]).to_string();
        let mut rest = buf.split_off(i + 4);
        let body: Vec<u8> = if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(e) = find(&rest, b"\r\n") else {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => rest.extend_from_slice(&tmp[..n]),
                    }
                    continue;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&rest[..e]).split(';').next().unwrap_or("0").trim(),
                    16,
                )
                .unwrap_or(0);
                while rest.len() < e + 2 + size + 2 {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => rest.extend_from_slice(&tmp[..n]),
                    }
                }
                body.extend_from_slice(&rest[e + 2..e + 2 + size]);
                rest.drain(..e + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let len = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            while rest.len() < len {
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => rest.extend_from_slice(&tmp[..n]),
                }
            }
            let tail = rest.split_off(len);
            std::mem::replace(&mut rest, tail)
        };
        buf = rest;
        let reply = if head.starts_with("GET / ") {
            r#"{"name":"bench","version":{"number":"8.11.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#
        } else {
            requests.fetch_add(1, Ordering::Relaxed);
            let n = body.split(|b| *b == b'\n').filter(|l| find(l, b"\"_spate_ts\"").is_some()).count();
            docs.fetch_add(n as u64, Ordering::Relaxed);
            r#"{"took":1,"errors":false,"items":[]}"#
        };
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Elastic-Product: Elasticsearch\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
    }
}
