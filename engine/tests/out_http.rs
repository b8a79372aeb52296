//! out_http through a live spate: against a test HTTP server that answers chosen status
//! codes (retryable codes retried, other errors unrecoverable -> `<secondary>`), bodies
//! as fluentd builds them (NDJSON, `json_array`, gzip, other formatters), headers and
//! basic auth; and against Ruby fluentd's in_http when `fluentd` is on PATH (or
//! `$FLUENTD`). spate's own in_http does not exist yet.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http_server::*;
use common::*;
use spate_protocol::encode::{self, EntriesType, OptionsOut};
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;

fn send(spate: &Spate, tag: &str, n: u32, id: &str) {
    let recs: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i},"m":"x"}}"#)).collect();
    send_json(spate, tag, EventTime::new(T, 0), &recs, id)
}

// The <match>es name the tags sent: with `**`, spate's own log lines (fluent.* events,
// as fluentd routes its logs) would be posted too.
const BUF: &str = "<buffer>\n    flush_mode interval\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

#[test]
fn ndjson_with_headers_auth_gzip_and_retry_on_503() {
    let (port, got) = server(vec![503, 200]);
    let conf = format!(
        "{SRC}<match app.**>\n  @type http\n  endpoint http://127.0.0.1:{port}/api/${{tag}}\n  headers {{\"X-Static\":\"s\"}}\n  headers_from_placeholders {{\"X-Tag\":\"${{tag}}\"}}\n  compress gzip\n  <auth>\n    method basic\n    username u\n    password p\n  </auth>\n  {BUF}</match>\n"
    );
    let spate = Spate::start("http-ndjson", &conf, Stdio::null());
    send(&spate, "app.a", 2, "h1");
    let reqs = wait(&got, 2);
    assert_eq!(reqs.len(), 2, "503 then the retry");
    let r = &reqs[1];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/app.a"));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("authorization"), Some("Basic dTpw"));
    assert_eq!((r.header("x-static"), r.header("x-tag")), (Some("s"), Some("app.a")));
    assert_eq!(r.text(), "{\"n\":0,\"m\":\"x\"}\n{\"n\":1,\"m\":\"x\"}\n");
    assert_eq!(reqs[0].text(), r.text());
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn json_array_and_other_formatters() {
    let (port, got) = server(vec![]);
    let conf = format!(
        "{SRC}<match arr>\n  @type http\n  endpoint http://127.0.0.1:{port}/arr\n  json_array true\n  http_method put\n  {BUF}</match>\n\
         <match csv>\n  @type http\n  endpoint http://127.0.0.1:{port}/csv\n  <format>\n    @type csv\n    fields n,m\n  </format>\n  {BUF}</match>\n"
    );
    let spate = Spate::start("http-array", &conf, Stdio::null());
    send(&spate, "arr", 2, "a1");
    send(&spate, "csv", 2, "c1");
    let reqs = wait(&got, 2);
    let arr = reqs.iter().find(|r| r.path == "/arr").unwrap();
    assert_eq!(arr.method, "PUT");
    assert_eq!(arr.header("content-type"), Some("application/json"));
    // fluentd: "[" + each json line + "," ... with the last "," chopped + "]".
    assert_eq!(arr.text(), "[{\"n\":0,\"m\":\"x\"}\n,{\"n\":1,\"m\":\"x\"}\n]");
    let csv = reqs.iter().find(|r| r.path == "/csv").unwrap();
    assert_eq!(csv.header("content-type"), Some("text/csv"));
    assert_eq!(csv.text(), "\"0\",\"x\"\n\"1\",\"x\"\n");
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn error_statuses_are_unrecoverable_and_go_to_secondary() {
    // 500 is retried (listed), 400 is not: the chunk goes to <secondary> at once.
    let (port, got) = server(vec![500, 400]);
    let dir = tempdir::Dir::new("http-sec");
    let d = dir.path().display().to_string();
    let conf = format!(
        "{SRC}<match t>\n  @type http\n  endpoint http://127.0.0.1:{port}/x\n  retryable_response_codes [500, 502]\n  {BUF}  <secondary>\n    @type secondary_file\n    directory {d}\n    basename failed\n  </secondary>\n</match>\n"
    );
    let spate = Spate::start("http-sec", &conf, Stdio::null());
    send(&spate, "t", 3, "s1");
    let end = Instant::now() + Duration::from_secs(20);
    let mut files = Vec::new();
    while files.is_empty() && Instant::now() < end {
        files = glob::glob(&format!("{d}/failed*")).unwrap().flatten().collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files.len(), 1, "the chunk reached <secondary>");
    let data = std::fs::read(&files[0]).unwrap();
    assert_eq!(spate_protocol::Events::new(&data, spate_protocol::EntriesFormat::Packed).count(), 3);
    assert_eq!(got.lock().unwrap().len(), 2, "one retry after the 500, none after the 400");
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("400 Whatever status 400"), "{err}");
}

#[test]
fn placeholder_hosts_need_allowed_hosts() {
    let (port, got) = server(vec![]);
    let conf = format!(
        "{SRC}<match 127.0.0.1>\n  @type http\n  endpoint http://${{tag}}:{port}/x\n  allowed_hosts [\"127.0.0.1\"]\n  {BUF}</match>\n"
    );
    let spate = Spate::start("http-hosts", &conf, Stdio::null());
    send(&spate, "127.0.0.1", 1, "p1");
    assert_eq!(wait(&got, 1).len(), 1);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

/// spate's out_http into Ruby fluentd's in_http (fluentd writes what it got to a file).
#[test]
fn into_fluentd_in_http() {
    let Some(fluentd) = find_peer("FLUENTD", "fluentd") else {
        eprintln!(
            "skipped: fluentd not on PATH and $FLUENTD unset (Ruby fluentd cannot be installed from a registry here)"
        );
        return;
    };
    let dir = tempdir::Dir::new("http-fluentd");
    let d = dir.path().display().to_string();
    let port = free_port();
    let fconf = dir.path().join("fluentd.conf");
    std::fs::write(
        &fconf,
        format!(
            "<source>\n  @type http\n  bind 127.0.0.1\n  port {port}\n</source>\n<match spate.**>\n  @type file\n  path {d}/got\n  <format>\n    @type json\n  </format>\n  <buffer>\n    flush_mode immediate\n  </buffer>\n</match>\n"
        ),
    )
    .unwrap();
    let _peer = Proc::start_peer("fluentd", &fluentd, &fconf, port);
    let conf = format!(
        "{SRC}<match spate.**>\n  @type http\n  endpoint http://127.0.0.1:{port}/${{tag}}\n  json_array true\n  {BUF}</match>\n"
    );
    let spate = Spate::start("http-fluentd-spate", &conf, Stdio::null());
    send(&spate, "spate.test", 3, "f1");
    let end = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while lines.len() < 3 && Instant::now() < end {
        lines = glob::glob(&format!("{d}/got*"))
            .unwrap()
            .flatten()
            .flat_map(|p| {
                std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("\"n\":0"));
    let _ = spate.stop();
}

/// In flight now, the most in flight at once, and the bodies (behind a lock, with a
/// condition variable for the requests that wait at the gate).
type Gate = Arc<(Mutex<(usize, usize, Vec<String>)>, std::sync::Condvar)>;

/// A server that holds each response until `hold` requests are in flight at once (or
/// `patience` passed), recording the most it saw in flight and the bodies.
fn gate_server(hold: usize, patience: Duration) -> (u16, Gate) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let state = Arc::new((Mutex::new((0usize, 0usize, Vec::new())), std::sync::Condvar::new()));
    let st = state.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let st = st.clone();
            std::thread::spawn(move || {
                // One request at a time per connection: read it, then wait at the gate.
                let (mut s, mut buf) = (s, Vec::new());
                while let Some(r) = read_request(&mut s, &mut buf) {
                    let body = r.text();
                    let (m, cv) = &*st;
                    let mut x = m.lock().unwrap();
                    x.0 += 1;
                    x.1 = x.1.max(x.0);
                    x.2.push(body);
                    cv.notify_all();
                    let until = Instant::now() + patience;
                    while x.0 < hold && Instant::now() < until {
                        x = cv.wait_timeout(x, until.saturating_duration_since(Instant::now())).unwrap().0;
                    }
                    x.0 -= 1;
                    drop(x);
                    if write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, state)
}

/// `flush_thread_count 3`: one shard posts its three chunks (three tags) at once, each
/// on its own connection; with the default (1) never more than one is in flight.
#[test]
fn flush_thread_count_overlaps_writes() {
    for (threads, want) in [(3, 3), (1, 1)] {
        let (port, state) = gate_server(3, Duration::from_millis(if threads == 1 { 300 } else { 5000 }));
        let buf = BUF.replace("flush_mode interval", &format!("flush_mode interval\n    flush_thread_count {threads}"));
        let conf = format!("{SRC}<match app.**>\n  @type http\n  endpoint http://127.0.0.1:{port}/\n  {buf}</match>\n");
        let spate = Spate::start("http-threads", &conf, Stdio::null());
        // One connection, so one shard holds the three chunks (spate runs two shards
        // here, and each shard flushes on its own).
        let mut c = Client::connect(spate.addr());
        for (i, tag) in ["app.a", "app.b", "app.c"].iter().enumerate() {
            let mut entries = Vec::new();
            for n in 0..2 {
                let r = spate_protocol::json::to_msgpack(format!(r#"{{"n":{n},"m":"x"}}"#).as_bytes()).unwrap();
                encode::entry(&mut entries, EventTime::new(T + n, 0), encode::TimeFormat::EventTime, &r);
            }
            let id = format!("t{i}");
            let opt = OptionsOut { chunk: Some(id.as_bytes()), size: None, compressed: None };
            let mut f = Vec::new();
            encode::packed_forward(&mut f, tag.as_bytes(), &entries, EntriesType::Bin, &opt);
            c.send(&f).unwrap();
            assert_eq!(c.read_ack().unwrap(), id.as_bytes());
        }
        let end = Instant::now() + Duration::from_secs(20);
        while state.0.lock().unwrap().2.len() < 3 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(400));
        let (max, mut bodies) = {
            let x = state.0.lock().unwrap();
            (x.1, x.2.clone())
        };
        bodies.sort();
        assert_eq!(bodies.len(), 3, "flush_thread_count {threads}: every chunk posted once: {bodies:?}");
        assert!(bodies.iter().all(|b| b == "{\"n\":0,\"m\":\"x\"}\n{\"n\":1,\"m\":\"x\"}\n"), "{bodies:?}");
        assert_eq!(max, want, "flush_thread_count {threads}: requests in flight at once");
        let (st, _, err) = spate.stop();
        assert!(st.success(), "{err}");
        if threads > 1 {
            assert!(!err.contains("flush_thread_count"), "no warning for out_http: {err}");
        }
    }
}
