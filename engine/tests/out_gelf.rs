//! out_gelf (`@type gelf`: fluent-plugin-gelf-hs's, and fluent-plugin-gelf-best's when
//! the config uses what only it accepts) through a live spate, against
//! test receivers standing in for Graylog's GELF inputs (Graylog is not packaged for
//! Debian, PyPI or crates.io; see the README): UDP datagrams are zlib-inflated and
//! GELF chunks reassembled as Graylog does, TCP messages split at their NUL bytes. The
//! messages must be what the plugin and gelf-rb send: gelf-rb's default fields first,
//! the record's fields `_`-prefixed, levels mapped, the short message found.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;
const BUF: &str = "<buffer>\n    flush_mode interval\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

/// A GELF UDP receiver: whole messages (inflated, chunks reassembled) as JSON text.
fn udp_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut parts: HashMap<[u8; 8], Vec<Option<Vec<u8>>>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok(n) = sock.recv(&mut buf) else { return };
            let d = &buf[..n];
            let whole = if d.starts_with(&[0x1e, 0x0f]) {
                let id: [u8; 8] = d[2..10].try_into().unwrap();
                let (seq, count) = (d[10] as usize, d[11] as usize);
                let slots = parts.entry(id).or_insert_with(|| vec![None; count]);
                slots[seq] = Some(d[12..].to_vec());
                if slots.iter().any(Option::is_none) {
                    continue;
                }
                parts.remove(&id).unwrap().into_iter().flatten().flatten().collect()
            } else {
                d.to_vec()
            };
            let mut json = String::new();
            flate2::read::ZlibDecoder::new(&whole[..]).read_to_string(&mut json).expect("zlib-deflated GELF");
            // Chunked messages are marked, so that the test can see chunking happened.
            let mark = if d.starts_with(&[0x1e, 0x0f]) { "chunked " } else { "" };
            g.lock().unwrap().push(format!("{mark}{json}"));
        }
    });
    (port, got)
}

/// A GELF TCP receiver: NUL-terminated messages, one connection after another.
fn tcp_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let g = g.clone();
            std::thread::spawn(move || {
                let (mut buf, mut tmp) = (Vec::new(), [0u8; 65536]);
                while let Ok(n) = s.read(&mut tmp) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(i) = buf.iter().position(|&b| b == 0) {
                        let m: Vec<u8> = buf.drain(..=i).collect();
                        g.lock().unwrap().push(String::from_utf8(m[..i].to_vec()).unwrap());
                    }
                }
            });
        }
    });
    (port, got)
}

fn wait(got: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < n && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    got.lock().unwrap().clone()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn udp_messages_as_gelf_rb_sends_them_with_chunking() {
    let (port, got) = udp_receiver();
    let conf = format!(
        "{SRC}<match app.**>\n  @type gelf\n  host 127.0.0.1\n  port {port}\n  include_tag_key true\n  {BUF}</match>\n"
    );
    let spate = Spate::start("gelf-udp", &conf, Stdio::null());
    // Letters that deflate cannot squeeze below 1420 bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let long: String = (0..4000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let recs = [
        r#"{"host":"web-1","level":"ERROR","message":"boom","status":500,"kubernetes":{"pod":"p"},"gone":null}"#
            .to_string(),
        r#"{"log":"from log","level":"6","facility":"app"}"#.to_string(),
        format!(r#"{{"short_message":"big","blob":"{long}"}}"#),
    ];
    send_json(&spate, "app.web", EventTime::new(T, 250_000_000), &recs, "g1");
    let msgs = wait(&got, 3);
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let h = hostname();
    assert_eq!(
        msgs[0],
        format!(
            r#"{{"facility":"fluentd","protocol":0,"version":"1.0","host":"{h}","level":3,"_tag":"app.web","timestamp":1700000000.25,"_host":"web-1","_status":500,"_kubernetes":{{"pod":"p"}},"short_message":"boom"}}"#
        )
    );
    assert_eq!(
        msgs[1],
        format!(
            r#"{{"facility":"app","protocol":0,"version":"1.0","host":"{h}","level":6,"_tag":"app.web","timestamp":1700000001.25,"short_message":"from log"}}"#
        )
    );
    // Over 1420 deflated bytes: sent as GELF chunks, reassembled here.
    let v: Value = serde_json::from_str(msgs[2].strip_prefix("chunked ").expect("sent in GELF chunks")).unwrap();
    assert_eq!(
        (v["short_message"].as_str(), v["_blob"].as_str(), v["level"].as_i64()),
        (Some("big"), Some(&long[..]), Some(1))
    );
    drop(spate);
}

#[test]
fn tcp_messages_are_nul_terminated_and_use_the_record_host() {
    let (port, got) = tcp_receiver();
    let conf = format!(
        "{SRC}<match app.**>\n  @type gelf\n  host 127.0.0.1\n  port {port}\n  protocol tcp\n  use_record_host true\n  {BUF}</match>\n"
    );
    let spate = Spate::start("gelf-tcp", &conf, Stdio::null());
    let recs = [
        r#"{"host":"web-2","msg":"m","level":"warn"}"#,
        r#"{"host":"","msg":"dropped: gelf-rb refuses an empty host"}"#,
        r#"{"n":1}"#,
    ];
    send_json(&spate, "app.api", EventTime::new(T, 0), &recs, "t1");
    let msgs = wait(&got, 2);
    assert_eq!(
        msgs,
        vec![
            r#"{"facility":"fluentd","protocol":1,"version":"1.0","host":"web-2","level":4,"_tag":"app.api","timestamp":1700000000.0,"short_message":"m"}"#.to_string(),
            format!(
                r#"{{"facility":"fluentd","protocol":1,"version":"1.0","host":"{}","level":1,"_tag":"app.api","timestamp":1700000002.0,"_n":1,"short_message":"(no message)"}}"#,
                hostname()
            ),
        ]
    );
    // A second chunk goes over the same connection.
    send_json(&spate, "app.api", EventTime::new(T, 0), &[r#"{"short_message":"again"}"#], "t2");
    assert_eq!(wait(&got, 3).len(), 3);
    let (_, _, err) = spate.stop();
    assert!(err.contains("host is missing"), "{err}");
}

#[test]
fn gelf_best_is_chosen_by_its_config_and_builds_its_messages() {
    let (port, got) = tcp_receiver();
    // logging-operator's shape: chunk keys, which only gelf-best accepts.
    let conf = format!(
        "{SRC}<match app.**>\n  @type gelf\n  host 127.0.0.1\n  port {port}\n  protocol tcp\n  max_bytes 12\n  <buffer tag,time>\n    timekey 1\n    timekey_wait 0\n    flush_interval 100ms\n  </buffer>\n</match>\n"
    );
    let spate = Spate::start("gelf-best", &conf, Stdio::null());
    let recs = [
        r#"{"hostname":"web-3","level":"verbose","message":"   ","log":"0123456789abcdef","version":"1.1"}"#,
        r#"{"time":"2024-01-02T03:04:05.678+09:00","short_message":"s","level":"trace"}"#,
    ];
    send_json(&spate, "app.best", EventTime::new(T, 0), &recs, "b1");
    let msgs = wait(&got, 1);
    assert_eq!(
        msgs,
        vec![
            r#"{"facility":"fluentd","protocol":1,"version":"1.1","host":"web-3","level":1,"_fluentd_tag":"app.best","timestamp":1700000000.0,"_host":"web-3","_message":"   ","short_message":"012345678..."}"#
        ]
    );
    let (_, _, err) = spate.stop();
    assert!(err.contains("read as fluent-plugin-gelf-best's (the config uses <buffer tag,time>"), "{err}");
    assert!(err.contains("its level is neither a known level nor a number"), "{err}");
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want, line) in [
        ("port 1\n", "'host' parameter (hostname or address of Graylog2 server) is required", 1),
        ("host h\n  protocol http\n", "'protocol' parameter should be either 'udp' (default) or 'tcp'", 4),
        ("host h\n  tls true\n", "tls true is not supported", 4),
        ("host h\n  udp_transport_type MAN\n", "'udp_transport_type' parameter should be either 'WAN' or 'LAN'", 4),
    ] {
        let (ok, err) = dry_run(&format!("<match x>\n  @type gelf\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains(&format!("fluent.conf:{line}")), "{body}: {err}");
    }
}
