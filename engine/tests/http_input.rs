//! in_http against real clients: curl (JSON, batches, forms, gzip, keep-alive with
//! `--next`), Python's urllib and requests (msgpack from PyPI's `msgpack`, sessions),
//! raw pipelined requests over a socket, fluent-bit's out_http when fluent-bit is on PATH
//! (or $FLUENT_BIT), and bad input: bodies that do not parse, Content-Length lies,
//! oversized and over-inflating bodies, a slow client; the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, python, Received, Sink, Spate};
use serde_json::{json, Value};
use spate_protocol::{RecordRef, ValueRef};

fn to_json(r: &Received) -> Value {
    let mut out = Vec::new();
    ValueRef::new(RecordRef::new(&r.record).unwrap().as_bytes()).unwrap().write_json(&mut out);
    serde_json::from_slice(&out).unwrap()
}

fn start(extra: &str, sink: &Sink) -> (Spate, u16) {
    let p = free_port();
    let cfg = format!(
        "<source>\n@type forward\nbind 127.0.0.1\nport {{PORT}}\n</source>\n<source>\n@type http\nbind 127.0.0.1\nport {p}\nbody_size_limit 64k\ndecompression_size_limit 256k\nkeepalive_timeout 2s\n{extra}\n</source>\n<match **>\n@type forward\n<server>\nhost 127.0.0.1\nport {}\n</server>\n<buffer>\nflush_interval 0.1s\n</buffer>\n</match>\n",
        sink.addr.port()
    );
    let s = Spate::start("http", &cfg, Stdio::null());
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", p)).is_err() {
        assert!(std::time::Instant::now() < end, "in_http did not listen on {p}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (s, p)
}

fn curl(args: &[&str]) -> String {
    let out =
        Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code} "]).args(args).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn settle(sink: &Sink, n: usize) -> Vec<Received> {
    let got = sink.wait_for(n, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(300));
    assert!(got.len() >= n, "{} < {n}", got.len());
    sink.events.lock().unwrap().clone()
}

/// Sends raw bytes and returns everything the server answers until it closes (or 2 s).
fn raw(p: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn curl_json_batches_forms_gzip_and_keepalive() {
    let sink = Sink::start();
    let (spate, p) = start("add_remote_addr true", &sink);
    let u = |path: &str| format!("http://127.0.0.1:{p}{path}");
    assert_eq!(
        curl(&["-H", "Content-Type: application/json", "-d", r#"{"a":1,"time":1362020400}"#, &u("/app.one")]),
        "200"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"[{"b":1},{"b":2},{"b":3}]"#,
            &u("/app/batch?time=1362020400.5")
        ]),
        "200"
    );
    assert_eq!(curl(&["-d", r#"json={"form":true}"#, &u("/form")]), "200");
    // gzip body.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"gz":"yes"}"#).unwrap();
    let gz = gz.finish().unwrap();
    let dir = common::tempdir::Dir::new("http-gz");
    let f = dir.path().join("body.gz");
    std::fs::write(&f, &gz).unwrap();
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &format!("@{}", f.display()),
            &u("/gz")
        ]),
        "200"
    );
    // Two requests on one connection (curl --next reuses it).
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} ",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"ka":1}"#,
            &u("/ka"),
        ])
        .args([
            "--next",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"ka":2}"#,
            &u("/ka"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 0", "the second request reused the connection");
    // A body that does not parse: 400 with the reason, nothing emitted.
    let out = Command::new("curl")
        .args(["-s", "-w", " %{http_code}", "-H", "Content-Type: application/json", "-d", r#"{"bad"#, &u("/bad")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("400 Bad Request\ninvalid JSON") && text.ends_with(" 400"), "{text}");
    assert_eq!(curl(&["-d", "nothing=here", &u("/noparam")]), "400");
    let got = settle(&sink, 8);
    assert_eq!(got.len(), 8, "{:?}", got.iter().map(to_json).collect::<Vec<_>>());
    let tag = |t: &str| got.iter().filter(|r| r.tag == t.as_bytes()).collect::<Vec<_>>();
    let one = tag("app.one");
    assert_eq!((one[0].time.sec, to_json(one[0])), (1362020400, json!({"a":1,"REMOTE_ADDR":"127.0.0.1"})));
    let batch = tag("app.batch");
    assert_eq!(batch.len(), 3);
    assert!(batch.iter().all(|r| r.time.sec == 1362020400 && r.time.nsec == 500_000_000));
    assert_eq!(to_json(tag("form")[0])["form"], json!(true));
    assert_eq!(to_json(tag("gz")[0])["gz"], json!("yes"));
    assert_eq!(tag("ka").len(), 2);
    assert!(tag("bad").is_empty());
    spate.stop();
}

#[test]
fn python_urllib_and_requests_with_msgpack() {
    if !python(&["msgpack", "requests"], true) {
        return;
    }
    let py = "python3";
    let sink = Sink::start();
    let (spate, p) = start("", &sink);
    let script = format!(
        r#"
import msgpack, urllib.request, requests
u = 'http://127.0.0.1:{p}'
r = urllib.request.urlopen(urllib.request.Request(u + '/py.mp', data=msgpack.packb([{{'m': 1}}, {{'m': 2, 'time': 1362020400}}]), headers={{'Content-Type': 'application/msgpack'}}))
assert r.status == 200, r.status
r = urllib.request.urlopen(urllib.request.Request(u + '/py.one', data=msgpack.packb({{'single': True}}), headers={{'Content-Type': 'application/msgpack'}}))
assert r.status == 200
s = requests.Session()
for i in range(50):
    assert s.post(u + '/py.session', json={{'i': i}}).status_code == 200
assert s.post(u + '/py.ndjson', data=b'{{"n":1}}\n{{"n":2}}\n', headers={{'Content-Type': 'application/x-ndjson'}}).status_code == 200
r = s.post(u + '/py.bad', data=b'\x93\x01', headers={{'Content-Type': 'application/msgpack'}})
assert r.status_code == 400, r.status_code
"#
    );
    let st = Command::new(py).args(["-c", &script]).status().unwrap();
    assert!(st.success());
    let got = settle(&sink, 55);
    assert_eq!(got.len(), 55);
    let mp: Vec<&Received> = got.iter().filter(|r| r.tag == b"py.mp").collect();
    assert_eq!(mp.len(), 2);
    assert!(mp.iter().any(|r| r.time.sec == 1362020400 && to_json(r) == json!({"m":2})));
    assert_eq!(got.iter().filter(|r| r.tag == b"py.session").count(), 50);
    assert_eq!(got.iter().filter(|r| r.tag == b"py.ndjson").count(), 2);
    spate.stop();
}

#[test]
fn pipelining_and_bad_input() {
    let sink = Sink::start();
    let (spate, p) = start("use_204_response true", &sink);
    // Three pipelined requests in one write; answered in order.
    let req = |path: &str, body: &str, close: bool| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    let all = format!(
        "{}{}{}",
        req("/pipe", r#"{"p":1}"#, false),
        req("/pipe", r#"{"p":2}"#, false),
        req("/pipe", r#"{"p":3}"#, true)
    );
    let answer = raw(p, all.as_bytes());
    assert_eq!(answer.matches("HTTP/1.1 204 No Content").count(), 3, "{answer}");
    // Content-Length larger than what is sent, then close: nothing emitted.
    let lie = raw(p, b"POST /lie HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"x\":1}");
    assert!(lie.is_empty(), "{lie}");
    // Content-Length shorter than the body: the rest is a malformed next request.
    let short = raw(
        p,
        b"POST /short HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"s\":1}garbage\r\n\r\n",
    );
    assert!(short.contains("204") && short.contains("400 Bad Request"), "{short}");
    // Over body_size_limit (64k): 413 without reading the body.
    let big = raw(p, b"POST /big HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{");
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    // A gzip body that inflates past decompression_size_limit (256k): 400.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 10 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let mut r = format!(
        "POST /bomb HTTP/1.1\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    r.extend_from_slice(&bomb);
    let ans = raw(p, &r);
    assert!(ans.starts_with("HTTP/1.1 400") && ans.contains("decompression_size_limit"), "{ans}");
    // Binary garbage and a chunked body.
    assert!(raw(p, b"\x00\x01\x02\xff\r\n\r\n").starts_with("HTTP/1.1 400"));
    let chunked = raw(p, b"POST /chunked HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{\"c\"\r\n3\r\n:1}\r\n0\r\n\r\n");
    assert!(chunked.starts_with("HTTP/1.1 204"), "{chunked}");
    // A slow client (one byte at a time) does not stop a fast one.
    let mut slow = TcpStream::connect(("127.0.0.1", p)).unwrap();
    slow.write_all(b"POST /slow HTTP/1.1\r\n").unwrap();
    let fast = raw(p, req("/fast", r#"{"f":1}"#, true).as_bytes());
    assert!(fast.starts_with("HTTP/1.1 204"));
    // Idle past keepalive_timeout (2s): closed by the server.
    std::thread::sleep(Duration::from_millis(2500));
    slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(slow.read(&mut b), Ok(0) | Err(_)));
    let got = settle(&sink, 6);
    let tags: Vec<String> = got.iter().map(|r| String::from_utf8_lossy(&r.tag).into_owned()).collect();
    assert_eq!(tags.iter().filter(|t| *t == "pipe").count(), 3);
    for t in ["short", "chunked", "fast"] {
        assert_eq!(tags.iter().filter(|x| *x == t).count(), 1, "{tags:?}");
    }
    assert!(!tags.iter().any(|t| t == "lie" || t == "big" || t == "bomb" || t == "slow"));
    spate.stop();
}

#[test]
fn cors_and_custom_parser() {
    let sink = Sink::start();
    let (spate, p) = start("cors_allow_origins [\"https://*.example.com\"]\n<parse>\n@type ltsv\n</parse>", &sink);
    let pre = raw(
        p,
        b"OPTIONS /x HTTP/1.1\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    );
    assert!(
        pre.starts_with("HTTP/1.1 200") && pre.contains("Access-Control-Allow-Origin: https://app.example.com"),
        "{pre}"
    );
    let no = raw(p, b"OPTIONS /x HTTP/1.1\r\nOrigin: https://evil.test\r\nAccess-Control-Request-Method: POST\r\n\r\n");
    assert!(no.starts_with("HTTP/1.1 403"), "{no}");
    let denied = raw(p, b"POST /ltsv HTTP/1.1\r\nOrigin: https://evil.test\r\nContent-Length: 3\r\n\r\na:1");
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let ok = raw(p, b"POST /ltsv HTTP/1.1\r\nOrigin: https://app.example.com\r\nConnection: close\r\nContent-Length: 7\r\n\r\na:1\tb:2");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let got = settle(&sink, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(to_json(&got[0]), json!({"a":"1","b":"2"}));
    spate.stop();
}

#[test]
fn fluent_bit_out_http_into_in_http() {
    let Some(fb) = common::peer_or_skip("FLUENT_BIT", "fluent-bit") else { return };
    let sink = Sink::start();
    let (spate, p) = start("", &sink);
    let child = Command::new(fb)
        .args([
            "-i",
            "dummy",
            "-p",
            "dummy={\"from\":\"fluent-bit\"}",
            "-p",
            "samples=5",
            "-o",
            "http",
            "-p",
            "host=127.0.0.1",
        ])
        .args([
            "-p",
            &format!("port={p}"),
            "-p",
            "uri=/fb.events",
            "-p",
            "format=json",
            "-p",
            "json_date_key=time",
            "-p",
            "json_date_format=epoch",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    let got = sink.wait_for(5, Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.len() >= 5);
    assert!(got.iter().all(|r| r.tag == b"fb.events" && to_json(r)["from"] == json!("fluent-bit")));
    spate.stop();
}

/// `<transport tls>` (in_forward's TLS parameters): curl and Python's requests post
/// over HTTPS with the CA; a client that does not trust the CA, and plain HTTP to the
/// TLS port, get nothing in and leave the server serving; with `client_cert_auth` only
/// a client with a certificate the CA signed gets in.
#[test]
fn https_with_curl_and_python_requests() {
    let dir = common::tempdir::Dir::new("http-tls");
    let pki = common::test_pki(dir.path());
    let (ca_pem, cert, key, ccert, ckey) = (pki.ca, pki.cert, pki.key, pki.client_cert, pki.client_key);
    let sink = Sink::start();
    let mtls = free_port();
    let extra = format!(
        "<transport tls>\ncert_path {cert}\nprivate_key_path {key}\n</transport>\n</source>\n<source>\n@type http\nbind 127.0.0.1\nport {mtls}\n<transport tls>\ncert_path {cert}\nprivate_key_path {key}\nca_path {ca_pem}\nclient_cert_auth true\n</transport>"
    );
    let (spate, p) = start(&extra, &sink);
    let url = |path: &str| format!("https://127.0.0.1:{p}/{path}");
    let json = ["-H", "Content-Type: application/json"];
    assert_eq!(
        curl(
            &[&["--cacert", ca_pem.as_str(), "-d", r#"{"via":"curl"}"#][..], &json, &[url("app.tls").as_str()]]
                .concat()
        ),
        "200"
    );
    // Not trusted by the client, and plain HTTP on the TLS port: nothing gets in.
    assert_eq!(curl(&[&["-d", r#"{"via":"untrusted"}"#][..], &json, &[url("app.tls").as_str()]].concat()), "000");
    assert_eq!(curl(&["-d", r#"{"via":"plain"}"#, &format!("http://127.0.0.1:{p}/app.tls")]), "000");
    let py = format!(
        "import requests\nr = requests.post('https://127.0.0.1:{p}/app.py', json={{'via': 'requests'}}, verify='{ca_pem}')\nassert r.status_code == 200, r.status_code\n"
    );
    let with_py = python(&["requests"], true);
    if with_py {
        let st = Command::new("python3").args(["-c", &py]).status().unwrap();
        assert!(st.success(), "requests over HTTPS");
    }
    // client_cert_auth: with the client certificate, and without it.
    let murl = format!("https://127.0.0.1:{mtls}/app.mtls");
    assert_eq!(
        curl(
            &[
                &[
                    "--cacert",
                    ca_pem.as_str(),
                    "--cert",
                    ccert.as_str(),
                    "--key",
                    ckey.as_str(),
                    "-d",
                    r#"{"via":"mtls"}"#
                ][..],
                &json,
                &[murl.as_str()]
            ]
            .concat()
        ),
        "200"
    );
    assert_eq!(
        curl(&[&["--cacert", ca_pem.as_str(), "-d", r#"{"via":"no cert"}"#][..], &json, &[murl.as_str()]].concat()),
        "000"
    );
    let got = settle(&sink, if with_py { 3 } else { 2 });
    let vias: Vec<Value> = got.iter().map(|r| to_json(r)["via"].clone()).collect();
    assert!(vias.contains(&json!("curl")) && vias.contains(&json!("mtls")), "{vias:?}");
    assert!(!with_py || vias.contains(&json!("requests")), "{vias:?}");
    assert!(
        !vias.contains(&json!("untrusted")) && !vias.contains(&json!("plain")) && !vias.contains(&json!("no cert")),
        "{vias:?}"
    );
    spate.stop();
}
