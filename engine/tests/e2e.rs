//! End-to-end tests of the `spate` binary: real clients in, stdout and a Forward sink
//! out, acks on both hops, signals.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::encode::OptionsOut;
use spate_protocol::EventTime;

fn relay_config(sink: std::net::SocketAddr, flush: &str) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{PORT}}
</source>
<match **>
  @type forward
  require_ack_response true
  ack_response_timeout 5s
  <server>
    host 127.0.0.1
    port {}
  </server>
  <buffer>
    flush_interval {flush}
  </buffer>
</match>
"#,
        sink.port()
    )
}

/// Collects a child's stdout in a background thread.
fn collect_stdout(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let mut so = child.stdout.take().unwrap();
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match so.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    out
}

/// Starts spate on `cfg` (its `{PORT}` replaced by a free port) from a file in `dir`,
/// with TZ=UTC and its stdout collected; returns once the port listens.
fn spawn_to_stdout(cfg: &str, dir: &tempdir::Dir) -> (Proc, Arc<Mutex<String>>, u16) {
    let port = free_port();
    let path = dir.path().join("fluent.conf");
    std::fs::write(&path, cfg.replace("{PORT}", &port.to_string())).unwrap();
    let mut spate =
        Proc::spawn("spate", spate_cmd(&path, 1).env("TZ", "UTC").stdout(Stdio::piped()).stderr(Stdio::null()));
    let out = collect_stdout(spate.child_mut());
    spate.wait_listening(port, Duration::from_secs(20));
    (spate, out, port)
}

/// Waits (10 s at most) until `want.len()` whole event lines are on stdout, then
/// requires exactly those. spate's own log lines are events too (fluentd's fluent.*
/// events reach `<match **>`), so they are left out; stdout is read in pieces, so only
/// whole lines count.
fn expect_stdout_lines(out: &Mutex<String>, want: &[&str]) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got = out.lock().unwrap().clone();
        let whole = got.rfind('\n').map_or("", |i| &got[..i]);
        let lines: Vec<&str> = whole.lines().filter(|l| !l.contains(" fluent.")).collect();
        if lines.len() >= want.len() {
            assert_eq!(lines, want);
            return;
        }
        assert!(Instant::now() < end, "stdout so far: {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn python_fluent_logger_to_stdout_line_by_line() {
    if !python(&["fluent.sender", "msgpack"], true) {
        return;
    }
    let cfg =
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n</source>\n<match **>\n  @type stdout\n</match>\n";
    let dir = tempdir::Dir::new("stdout");
    let (mut spate, out, port) = spawn_to_stdout(cfg, &dir);
    let script = format!(
        r#"
from fluent import sender
ns = sender.FluentSender('app', host='127.0.0.1', port={port}, nanosecond_precision=True)
assert ns.emit_with_time('web', 1700000000.5, {{'a': 1, 's': 'h\u00e9llo "q"\n', 'n': None, 'f': 1.5, 'b': True, 'arr': [1, 2], 'm': {{'x': 'y'}}}}), ns.last_error
ns.close()
s = sender.FluentSender('app', host='127.0.0.1', port={port})
assert s.emit_with_time('int', 1700000001, {{'level': 'info', 'big': 12345678901234}}), s.last_error
assert s.emit_with_time('int', 1700000002, {{'neg': -5}}), s.last_error
s.close()
"#
    );
    let st = Command::new("python3").args(["-c", &script]).status().unwrap();
    assert!(st.success(), "python client failed");
    let want = [
        "2023-11-14 22:13:20.500000000 +0000 app.web: {\"a\":1,\"s\":\"héllo \\\"q\\\"\\n\",\"n\":null,\"f\":1.5,\"b\":true,\"arr\":[1,2],\"m\":{\"x\":\"y\"}}",
        "2023-11-14 22:13:21.000000000 +0000 app.int: {\"level\":\"info\",\"big\":12345678901234}",
        "2023-11-14 22:13:22.000000000 +0000 app.int: {\"neg\":-5}",
    ];
    expect_stdout_lines(&out, &want);
    let (st, _, _) = spate.stop(Duration::from_secs(30));
    assert!(st.success(), "spate exit status {st:?}");
}

#[test]
fn every_mode_relayed_event_by_event_with_acks_on_both_hops() {
    let sink = Sink::start();
    let spate = Spate::start("relay", &relay_config(sink.addr, "100ms"), Stdio::null());
    let mut c = Client::connect(spate.addr());
    let mut sent = Vec::new();
    let mut base = 0u64;
    for (i, wire) in Wire::ALL.into_iter().enumerate() {
        let mode = wire.name();
        let tag = format!("test.{mode}");
        let chunk = format!("chunk-{i}\n");
        let opt = OptionsOut { chunk: Some(chunk.as_bytes()), ..Default::default() };
        let n = if wire == Wire::Message { 1 } else { 50 };
        let frame = wire::frame(wire, tag.as_bytes(), kv_events(base..base + n), &opt);
        for j in base..base + n {
            sent.push(Received {
                tag: tag.clone().into_bytes(),
                time: EventTime::new(1_700_000_000 + j as u32, j as u32 * 7),
                record: kv_record(j),
            });
        }
        base += n;
        c.send(&frame).unwrap();
        assert_eq!(c.read_ack().unwrap(), chunk.as_bytes(), "ack for {mode} echoes the chunk id byte for byte");
    }
    let got = sink.wait_for(sent.len(), Duration::from_secs(15));
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(|r| (r.time, r.tag.clone()));
    sent.sort_by_key(|r| (r.time, r.tag.clone()));
    assert_eq!(got_sorted, sent, "every event arrives with its tag, nanosecond time and record bytes");
    assert!(*sink.acks_sent.lock().unwrap() >= 1, "out_forward asked the sink for acks");
    let (st, _, _) = spate.stop();
    assert!(st.success());
}

#[test]
fn json_stream_on_the_forward_port_gets_json_acks() {
    let sink = Sink::start();
    let spate = Spate::start("json", &relay_config(sink.addr, "50ms"), Stdio::null());
    let mut s = std::net::TcpStream::connect(spate.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::Write;
    s.write_all(br#"["json.test", 1700000000, {"a": 1, "b": "x"}, {"chunk": "j1"}]"#).unwrap();
    s.write_all(b"\n").unwrap();
    s.write_all(br#"["json.test", [[1700000001, {"a": 2}], [1700000002, {"a": 3}]], {"chunk": "j2"}]"#).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("j2") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), r#"{"ack":"j1"}{"ack":"j2"}"#);
    let ev = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0].tag, b"json.test");
    spate.stop();
}

#[test]
fn udp_heartbeat_is_answered_with_a_zero_byte() {
    let spate = Spate::start(
        "udp",
        "<source>\n@type forward\nbind 127.0.0.1\nport {PORT}\n</source>\n<match **>\n@type null\n</match>\n",
        Stdio::null(),
    );
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 8];
    let mut ok = false;
    for _ in 0..10 {
        u.send_to(b"\0", spate.addr()).unwrap();
        if let Ok((n, _)) = u.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"\0");
            ok = true;
            break;
        }
    }
    assert!(ok, "no heartbeat reply");
    spate.stop();
}

#[test]
fn sigusr1_flushes_and_sigterm_flushes_memory_buffers_before_exit() {
    let sink = Sink::start();
    let spate = Spate::start("signals", &relay_config(sink.addr, "1h"), Stdio::null());
    let mut c = Client::connect(spate.addr());
    let f = acked_frame(b"sig.a", &packed_entries(10, 0), 10, "c1");
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"c1");
    std::thread::sleep(Duration::from_millis(300));
    assert!(sink.events.lock().unwrap().is_empty(), "flush_interval 1h: nothing flushed yet");
    spate.signal(libc::SIGUSR1);
    assert_eq!(sink.wait_for(10, Duration::from_secs(10)).len(), 10, "SIGUSR1 flushed the buffer");
    let f = acked_frame(b"sig.b", &packed_entries(20, 100), 20, "c2");
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"c2");
    drop(c);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "exit status {st:?}: {err}");
    assert_eq!(sink.events.lock().unwrap().len(), 30, "SIGTERM flushed the memory buffer before exit; stderr: {err}");
}

#[test]
fn dry_run_prints_the_graph_and_rejects_unknown_types_with_file_line() {
    let dir = tempdir::Dir::new("dry");
    let good = dir.path().join("good.conf");
    std::fs::write(&good, "<source>\n  @type forward\n</source>\n<filter app.**>\n  @type grep\n  <regexp>\n    key message\n    pattern /error/\n  </regexp>\n</filter>\n<match app.**>\n  @type null\n</match>\n").unwrap();
    let o = Command::new(spate_bin()).args(["--dry-run", "-c", good.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("<match app.**> null"), "{out}");
    assert!(out.contains("grep"), "{out}");

    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "<source>\n  @type forward\n</source>\n\n<match **>\n  @type mongo\n</match>\n").unwrap();
    let o = Command::new(spate_bin()).args(["--dry-run", "-c", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.conf:5"), "{err}");
    assert!(err.contains("mongo") && err.contains("forward") && err.contains("stdout"), "{err}");
}

#[test]
fn fluentd_example_configs_are_accepted_or_rejected_with_file_line() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/fluentd-examples");
    let Ok(rd) = std::fs::read_dir(dir) else {
        eprintln!("skipped: {dir} not found");
        return;
    };
    let mut files: Vec<_> =
        rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
    files.sort();
    assert!(files.len() > 20);
    let mut accepted = 0;
    for f in &files {
        let o = Command::new(spate_bin()).args(["--dry-run", "-c", f.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match o.status.code() {
            Some(0) => accepted += 1,
            Some(1) => {
                assert!(err.contains(&format!("{name}:")), "{name}: rejection must name file:line: {err}");
                // What spate does not support, or what fluentd rejects too (and why).
                assert!(
                    err.contains("not supported")
                        || err.contains("spate supports")
                        || err.contains("fluentd raises")
                        || err.contains("fluentd fails"),
                    "{name}: rejection must say what is unsupported: {err}"
                );
            }
            other => panic!("{name}: exit {other:?} (a crash?): {err}"),
        }
    }
    eprintln!("{accepted} of {} fluentd example configs accepted", files.len());
    assert!(accepted >= 5);
}

#[test]
fn json_log_format_and_version() {
    let dir = tempdir::Dir::new("jsonlog");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "<match **>\n  @type nope\n</match>\n").unwrap();
    let o = Command::new(spate_bin())
        .args(["--log-format", "json", "--dry-run", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "error");
    assert!(v["message"].as_str().unwrap().contains("unknown output plugin type 'nope'"));
    let o = Command::new(spate_bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("spate "));
}

#[test]
fn source_address_key_and_tag_options_rewrite_events() {
    let sink = Sink::start();
    let conf = relay_config(sink.addr, "50ms")
        .replace("  port {PORT}\n", "  port {PORT}\n  source_address_key client_ip\n  add_tag_prefix relayed\n");
    let spate = Spate::start("srcaddr", &conf, Stdio::null());
    let mut c = Client::connect(spate.addr());
    let f = acked_frame(b"app", &packed_entries(3, 0), 3, "s1");
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"s1");
    let got = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(got.len(), 3);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.tag, b"relayed.app");
        let rec = spate_protocol::RecordRef::new(&r.record).unwrap();
        assert_eq!(rec.get(b"client_ip").and_then(|v| v.as_str()), Some(&b"127.0.0.1"[..]));
        assert_eq!(rec.get(b"k").and_then(|v| v.as_i64()), Some(i as i64), "original fields kept");
        assert_eq!(r.time, EventTime::new(1_700_000_000 + i as u32, i as u32 * 7), "time kept to the nanosecond");
    }
    spate.stop();
}

/// out_stdout with a `<buffer>` prints each chunk when it is flushed (not at emit), and
/// as a `<secondary>` prints the chunk out_forward could not deliver, as fluentd's does.
#[test]
fn stdout_buffered_and_as_a_secondary() {
    let dead = free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match later.**>\n  @type stdout\n  <buffer>\n    flush_mode interval\n    flush_interval 1s\n  </buffer>\n</match>\n\
         <match lost.**>\n  @type forward\n  connect_timeout 1s\n  <server>\n    host 127.0.0.1\n    port {dead}\n  </server>\n  <buffer>\n    flush_interval 0.1s\n    retry_wait 0.1s\n    retry_max_times 1\n  </buffer>\n  <secondary>\n    @type stdout\n  </secondary>\n</match>\n"
    );
    let mut spate = Spate::start("stdout-buffered", &conf, Stdio::piped());
    let out = collect_stdout(spate.proc.child_mut());
    let t0 = spate_protocol::EventTime::new(1362020400, 0);
    send_json(&spate, "later.a", t0, &[r#"{"k":"buffered"}"#], "l1");
    // Acked into the buffer, not printed yet: the flush is a second away.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!out.lock().unwrap().contains("buffered"), "printed at emit: {}", out.lock().unwrap());
    send_json(&spate, "lost.a", t0, &[r#"{"k":"undeliverable"}"#], "s1");
    let end = Instant::now() + Duration::from_secs(20);
    while !(out.lock().unwrap().contains(r#"later.a: {"k":"buffered"}"#)
        && out.lock().unwrap().contains(r#"lost.a: {"k":"undeliverable"}"#))
    {
        assert!(Instant::now() < end, "stdout: {}", out.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, err) = spate.stop();
    assert!(err.contains("written to <secondary> stdout"), "{err}");
}

/// out_record_reformer between a real client and stdout: the new tag from the tag's parts
/// and a record field, flat parameters as fields, Ruby on by default (a bare name is the
/// record's field), `remove_keys`.
#[test]
fn record_reformer_retags_python_fluent_logger_events() {
    if !python(&["fluent.sender", "msgpack"], true) {
        return;
    }
    let cfg = r#"<source>
  @type forward
  bind 127.0.0.1
  port {PORT}
</source>
<match app.**>
  @type record_reformer
  tag reformed.${tag_parts[1]}.${level}
  container_id ${tag_parts[-1]}
  shout ${message.upcase}
  remove_keys level
</match>
<match reformed.**>
  @type stdout
</match>
"#;
    let dir = tempdir::Dir::new("reformer");
    let (mut spate, out, port) = spawn_to_stdout(cfg, &dir);
    let script = format!(
        r#"
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port={port})
assert s.emit_with_time('web', 1700000000, {{'level': 'info', 'message': 'hi'}}), s.last_error
assert s.emit_with_time('db.x', 1700000001, {{'level': 'warn', 'message': 'disk'}}), s.last_error
s.close()
"#
    );
    let st = Command::new("python3").args(["-c", &script]).status().unwrap();
    assert!(st.success(), "python client failed");
    let want = [
        "2023-11-14 22:13:20.000000000 +0000 reformed.web.info: {\"message\":\"hi\",\"container_id\":\"web\",\"shout\":\"HI\"}",
        "2023-11-14 22:13:21.000000000 +0000 reformed.db.warn: {\"message\":\"disk\",\"container_id\":\"x\",\"shout\":\"DISK\"}",
    ];
    expect_stdout_lines(&out, &want);
    let (st, _, _) = spate.stop(Duration::from_secs(30));
    assert!(st.success(), "spate exit status {st:?}");
}
