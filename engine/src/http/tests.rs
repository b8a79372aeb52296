//! The client against canned servers (std threads on loopback): framing, keep-alive,
//! stale connections, limits and timeouts.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use super::chunked::Decoder;
use super::*;

fn run<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).expect("executor").join().expect("join")
}

/// Reads one request (head + Content-Length body) from a std stream.
fn read_request(s: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0usize);
            let mut body = buf[i + 4..].to_vec();
            while body.len() < len {
                let n = s.read(&mut b).ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&b[..n]);
            }
            return Some((head, body));
        }
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

/// A server answering each request on each connection with the next canned response;
/// reports (connection number, request head, body).
fn server(answers: Vec<Vec<u8>>, close_after_each: bool) -> (u16, mpsc::Receiver<(usize, String, Vec<u8>)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for (conn, s) in l.incoming().enumerate() {
            let mut s = s.unwrap();
            while let Some((head, body)) = read_request(&mut s) {
                let _ = tx.send((conn, head, body));
                let Some(a) = answers.next() else { return };
                s.write_all(&a).unwrap();
                if close_after_each {
                    break;
                }
            }
        }
    });
    (port, rx)
}

fn url(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}/base")).unwrap()
}

#[test]
fn lengths_chunked_and_keepalive() {
    let (port, rx) = server(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n".to_vec(),
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ],
        false,
    );
    let u = url(port);
    let (a, b, c) = run(move || async move {
        let c = Client::new(ClientConf::default());
        let h = vec![
            ("Content-Type".to_string(), "application/x-ndjson".to_string()),
            ("Bad".into(), "x\r\nInjected: 1".into()),
        ];
        let t = u.target("/_bulk");
        let req = Request { method: "POST", url: &u, target: &t, headers: &h, body: b"{}\n" };
        let a = c.send(&req).await.unwrap();
        let b = c.send(&req).await.unwrap();
        let cc = c.send(&Request { method: "GET", body: b"", ..req }).await.unwrap();
        (a, b, cc)
    });
    assert_eq!((a.status, a.body.as_slice(), a.header("x-a")), (200, &b"hello"[..], Some("b")));
    assert_eq!((b.status, b.body.as_slice()), (201, &b"abcde"[..]));
    assert_eq!(c.status, 503);
    let reqs: Vec<_> = rx.try_iter().collect();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.0 == 0), "one kept-alive connection");
    assert!(reqs[0].1.starts_with("POST /base/_bulk HTTP/1.1\r\nHost: 127.0.0.1:"), "{}", reqs[0].1);
    assert!(reqs[0].1.contains("\r\nContent-Length: 3\r\nContent-Type: application/x-ndjson"));
    assert!(!reqs[0].1.contains("Injected"), "header injection is dropped");
    assert_eq!(reqs[0].2, b"{}\n");
}

#[test]
fn stale_keepalive_connection_is_retried_once() {
    // The server closes after each answer without saying so: the second request finds
    // the kept connection dead and goes out again on a new one.
    let (port, rx) = server(
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ],
        true,
    );
    let u = url(port);
    let r = run(move || async move {
        let c = Client::new(ClientConf::default());
        let t = u.target("/");
        let req = Request { method: "POST", url: &u, target: &t, headers: &[], body: b"x" };
        c.send(&req).await.unwrap();
        glommio::timer::sleep(Duration::from_millis(50)).await;
        c.send(&req).await.unwrap()
    });
    assert_eq!(r.body, b"ok");
    let conns: Vec<usize> = rx.try_iter().map(|r| r.0).collect();
    assert_eq!(conns, vec![0, 1]);
}

#[test]
fn limits_timeouts_and_bad_responses() {
    let (port, _rx) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec()], false);
    let u = url(port);
    let e = run(move || async move {
        let c = Client::new(ClientConf { max_body: 10, ..Default::default() });
        let t = u.target("/");
        c.send(&Request { method: "GET", url: &u, target: &t, headers: &[], body: b"" }).await.unwrap_err()
    });
    assert!(matches!(e, HttpError::TooLarge { limit: 10, .. }), "{e}");
    // A server that never answers.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (_s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    let u = url(port);
    let e = run(move || async move {
        let c = Client::new(ClientConf { timeout: Duration::from_millis(200), ..Default::default() });
        let t = u.target("/");
        c.send(&Request { method: "GET", url: &u, target: &t, headers: &[], body: b"" }).await.unwrap_err()
    });
    assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
    let (port, _rx) = server(vec![b"SMTP ready\r\n\r\n".to_vec()], false);
    let u = url(port);
    let e = run(move || async move {
        let c = Client::new(ClientConf::default());
        let t = u.target("/");
        c.send(&Request { method: "GET", url: &u, target: &t, headers: &[], body: b"" }).await.unwrap_err()
    });
    assert!(matches!(e, HttpError::BadResponse { .. }), "{e}");
    // Nothing listening.
    let u = Url::parse("http://127.0.0.1:1/").unwrap();
    let e = run(move || async move {
        let c = Client::new(ClientConf::default());
        c.send(&Request { method: "GET", url: &u, target: "/", headers: &[], body: b"" }).await.unwrap_err()
    });
    assert!(matches!(e, HttpError::Connect { .. }), "{e}");
}

#[test]
fn chunked_decoder_in_pieces() {
    let wire = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
    for step in 1..wire.len() {
        let mut d = Decoder::default();
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let mut done = false;
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            if d.feed(&mut buf, &mut out, 1000).unwrap() {
                done = true;
            }
        }
        assert!(done);
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(buf, b"NEXT");
    }
    let mut d = Decoder::default();
    assert_eq!(d.feed(&mut b"ffffffff\r\n".to_vec(), &mut Vec::new(), 100), Err(super::chunked::TOO_LARGE));
    let mut d = Decoder::default();
    assert!(d.feed(&mut b"zz\r\n".to_vec(), &mut Vec::new(), 100).is_err());
}

#[test]
fn urls() {
    let u = Url::parse("https://john:p%40ss@es.example.com:9243/elastic/?x=1").unwrap();
    assert_eq!(
        (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
        (Scheme::Https, "es.example.com", 9243, "/elastic")
    );
    assert_eq!((u.user.as_deref(), u.password.as_deref()), (Some("john"), Some("p@ss")));
    assert_eq!(u.target("/_bulk"), "/elastic/_bulk?x=1");
    let u = Url::parse("http://[::1]:9200").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.target("")), ("[::1]", 9200, "/".to_string()));
    assert!(Url::parse("ftp://x").is_err());
    assert!(Url::parse("http://x:99999").is_err());
    assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
}
