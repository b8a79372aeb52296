//! A test HTTP server standing in for the servers HTTP outputs post to (out_http's
//! endpoints, Loki): answers chosen statuses in turn and records every request.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        let b = if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out).unwrap();
            out
        } else {
            self.body.clone()
        };
        String::from_utf8(b).unwrap()
    }
}

/// Answers requests with the given statuses in turn (then 200), recording them.
pub fn server(statuses: Vec<u16>) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (g, st) = (g.clone(), statuses.clone());
            std::thread::spawn(move || serve(s, g, st));
        }
    });
    (port, got)
}

pub fn serve(mut s: TcpStream, got: Arc<Mutex<Vec<Got>>>, st: Arc<Mutex<std::vec::IntoIter<u16>>>) {
    let mut buf = Vec::new();
    while let Some(r) = read_request(&mut s, &mut buf) {
        got.lock().unwrap().push(r);
        let code = st.lock().unwrap().next().unwrap_or(200);
        let msg = format!("status {code}");
        let _ = write!(s, "HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\n\r\n{msg}", msg.len());
    }
}

/// Reads the next request from `s` (`buf` keeps what was read past it); None when
/// the connection closes first.
pub fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Got> {
    let mut b = [0u8; 65536];
    let i = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..i]).to_string();
    let mut lines = head.split("\r\n");
    let first: Vec<String> = lines.next().unwrap().split(' ').map(str::to_string).collect();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let len: usize =
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[i + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&b[..n]),
        }
    }
    *buf = body.split_off(len);
    Some(Got { method: first[0].clone(), path: first[1].clone(), headers, body })
}

/// The requests so far once there are `n` (or after 20 s).
pub fn wait(got: &Arc<Mutex<Vec<Got>>>, n: usize) -> Vec<Got> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let g = got.lock().unwrap().clone();
        if g.len() >= n || Instant::now() > end {
            return g;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
