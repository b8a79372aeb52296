//! in_tcp, in_udp, in_syslog and filter_parser against real senders: `nc`, `socat`,
//! Python sockets, util-linux `logger` (RFC 3164/5424, UDP/TCP, octet counting),
//! rsyslog forwarding to spate, and nginx access-log lines. Events are checked at a
//! Forward test sink behind out_forward. A sender that is not installed is a skip with
//! the reason (`.ci/run` installs them all; SPATE_REQUIRE_TOOLS=1 turns skips into
//! failures there).

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, Received, Sink, Spate};
use serde_json::{json, Value};
use spate_protocol::{RecordRef, ValueRef};

fn tool(name: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        common::skip_unless_required(
            "SPATE_REQUIRE_TOOLS",
            &format!("{name} is not installed (apt-get install it; .ci/run does)"),
        );
    }
    ok
}

fn to_json(r: &Received) -> Value {
    let mut out = Vec::new();
    ValueRef::new(RecordRef::new(&r.record).unwrap().as_bytes()).unwrap().write_json(&mut out);
    serde_json::from_slice(&out).unwrap()
}

/// spate with `sources` (ports as {P1}, {P2}...), everything forwarded to a test sink.
fn start(name: &str, sources: &str, ports: &[u16], sink: &Sink) -> Spate {
    let mut s = sources.to_string();
    for (i, p) in ports.iter().enumerate() {
        s = s.replace(&format!("{{P{}}}", i + 1), &p.to_string());
    }
    let cfg = format!(
        "<source>\n@type forward\nbind 127.0.0.1\nport {{PORT}}\n</source>\n{s}\n<match **>\n@type forward\n<server>\nhost 127.0.0.1\nport {}\n</server>\n<buffer>\nflush_interval 0.1s\n</buffer>\n</match>\n",
        sink.addr.port()
    );
    let s = Spate::start(name, &cfg, Stdio::null());
    // spate is ready once in_forward listens; the other inputs bind in the same start-up
    // step, not necessarily before it.
    for &p in ports {
        wait_bound(p);
    }
    s
}

/// Waits until some socket is bound to port `p` on this host (a TCP listener or a UDP
/// socket), as /proc/net says: a UDP datagram sent before that is lost without an error,
/// and probing with a connection would be a client of its own to the input under test.
fn wait_bound(p: u16) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let bound = || {
        ["tcp", "tcp6", "udp", "udp6"].iter().any(|f| {
            let t = std::fs::read_to_string(format!("/proc/net/{f}")).unwrap_or_default();
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let port = cols.get(1).and_then(|a| a.rsplit(':').next()).and_then(|h| u16::from_str_radix(h, 16).ok());
                // TCP: in LISTEN (0A); UDP: any.
                port == Some(p) && (f.starts_with("udp") || cols.get(3) == Some(&"0A"))
            })
        })
    };
    while !bound() {
        assert!(std::time::Instant::now() < end, "nothing bound to port {p}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait(sink: &Sink, n: usize) -> Vec<Received> {
    let got = sink.wait_for(n, Duration::from_secs(15));
    assert!(
        got.len() >= n,
        "expected {n} events, got {}: {:?}",
        got.len(),
        got.iter().map(to_json).collect::<Vec<_>>()
    );
    // Nothing more arrives.
    std::thread::sleep(Duration::from_millis(300));
    sink.events.lock().unwrap().clone()
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "{cmd}");
}

#[test]
fn in_tcp_with_nc_socat_python_and_bad_input() {
    let sink = Sink::start();
    let p = free_port();
    let spate = start(
        "tcp",
        "<source>\n@type tcp\ntag tcp.json\nbind 127.0.0.1\nport {P1}\nsource_address_key addr\nmessage_length_limit 1k\n<parse>\n@type json\n</parse>\n</source>",
        &[p],
        &sink,
    );
    let mut n = 0;
    if tool("nc") {
        sh(&format!("printf '{{\"via\":\"nc\",\"i\":1}}\\n{{\"via\":\"nc\",\"i\":2}}\\n' | nc -q1 127.0.0.1 {p}"));
        n += 2;
    }
    if tool("socat") {
        sh(&format!("printf '{{\"via\":\"socat\",\"time\":1362020400}}\\n' | socat - TCP:127.0.0.1:{p}"));
        n += 1;
    }
    // Python sockets: one connection with garbage, a line over the limit, invalid
    // UTF-8 inside JSON, a message without its newline at close...
    let bad = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let mut bad2 = bad.try_clone().unwrap();
    bad2.write_all(b"\x00\xff\xfe garbage\n").unwrap();
    bad2.write_all(&[b'x'; 5000]).unwrap();
    bad2.write_all(b"\n{\"k\":\"\xff\"}\n{\"after\":\"bad\"}\n{\"unterminated\":1}").unwrap();
    drop(bad2);
    drop(bad);
    n += 1; // {"after":"bad"}
            // ...while a well-behaved client is served.
    let py = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{p}))\nfor i in range(100):\n    s.sendall(b'{{\"via\":\"python\",\"i\":%d}}\\n' % i)\ns.close()\n"
    );
    let st = Command::new("python3").args(["-c", &py]).status().unwrap();
    assert!(st.success());
    n += 100;
    let got = wait(&sink, n);
    assert_eq!(got.len(), n);
    let recs: Vec<Value> = got.iter().map(to_json).collect();
    assert!(got.iter().all(|r| r.tag == b"tcp.json"));
    assert!(recs.iter().all(|r| r["addr"] == json!("127.0.0.1")));
    assert_eq!(recs.iter().filter(|r| r["via"] == json!("python")).count(), 100);
    assert!(recs.iter().any(|r| r["after"] == json!("bad")));
    if let Some(s) = got.iter().find(|r| to_json(r)["via"] == json!("socat")) {
        assert_eq!(s.time.sec, 1362020400);
    }
    let (_, _, err) = spate.stop();
    assert!(err.contains("pattern not matched"), "{err}");
    // Which of the two lines depends on whether the newline after the 5000 bytes came in
    // the same read (dropped whole) or a later one (buffer cleared, rest discarded).
    assert!(
        err.contains("larger than message_length_limit 1024") || err.contains("exceeds message_length_limit 1024"),
        "{err}"
    );
    assert!(err.contains("in the middle of a message"), "{err}");
}

#[test]
fn in_udp_with_socat_and_python() {
    let sink = Sink::start();
    let p = free_port();
    let spate = start(
        "udp",
        "<source>\n@type udp\ntag udp.kv\nbind 127.0.0.1\nport {P1}\nmessage_length_limit 200\nsource_hostname_key host\n<parse>\n@type regexp\nexpression /^(?<k>\\w+)=(?<v>.*)$/\n</parse>\n</source>",
        &[p],
        &sink,
    );
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = 0;
    for i in 0..50 {
        u.send_to(format!("key{i}=value {i}\n").as_bytes(), ("127.0.0.1", p)).unwrap();
        n += 1;
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    u.send_to(&[b'a'; 300], ("127.0.0.1", p)).unwrap(); // over the limit: dropped
    u.send_to(b"no match here", ("127.0.0.1", p)).unwrap();
    if tool("socat") {
        sh(&format!("printf 'from=socat\\n' | socat - UDP:127.0.0.1:{p}"));
        n += 1;
    }
    let got = wait(&sink, n);
    assert_eq!(got.len(), n);
    let recs: Vec<Value> = got.iter().map(to_json).collect();
    assert!(recs.contains(&json!({"k":"key7","v":"value 7","host":"127.0.0.1"})), "{recs:?}");
    let (_, _, err) = spate.stop();
    assert!(err.contains("larger than message_length_limit 200"), "{err}");
    assert!(err.contains("pattern not matched"), "{err}");
}

#[test]
fn in_syslog_with_logger() {
    if !tool("logger") {
        return;
    }
    let sink = Sink::start();
    let (pu, pt, po) = (free_port(), free_port(), free_port());
    let spate = start(
        "syslog",
        "<source>\n@type syslog\ntag su\nbind 127.0.0.1\nport {P1}\nseverity_key severity\nfacility_key facility\n<parse>\nmessage_format auto\n</parse>\n</source>\n\
         <source>\n@type syslog\ntag st\nbind 127.0.0.1\nport {P2}\nsource_address_key addr\n<transport tcp>\n</transport>\n<parse>\nmessage_format auto\n</parse>\n</source>\n\
         <source>\n@type syslog\ntag so\nbind 127.0.0.1\nport {P3}\nframe_type octet_count\n<transport tcp>\n</transport>\n<parse>\nmessage_format rfc5424\n</parse>\n</source>",
        &[pu, pt, po],
        &sink,
    );
    let l = |args: &str| sh(&format!("logger -n 127.0.0.1 {args}"));
    l(&format!("--udp --rfc3164 -P {pu} -t app1 -p local3.warning 'udp 3164 message'"));
    l(&format!("--udp --rfc5424 -P {pu} -t app2 -p user.err 'udp 5424 message'"));
    l(&format!("--tcp --rfc3164 -P {pt} -t app3 -p mail.info 'tcp 3164 message'"));
    l(&format!("--tcp --rfc5424 -P {pt} -t app4 -p daemon.debug 'tcp 5424 message'"));
    l(&format!("--tcp --rfc5424 --octet-count -P {po} -t app5 -p auth.crit 'octet counted\nwith a newline'"));
    let got = wait(&sink, 5);
    assert_eq!(got.len(), 5);
    let by_tag = |t: &str| {
        got.iter().find(|r| r.tag == t.as_bytes()).map(to_json).unwrap_or_else(|| {
            panic!("no {t}: {:?}", got.iter().map(|r| String::from_utf8_lossy(&r.tag).into_owned()).collect::<Vec<_>>())
        })
    };
    let r = by_tag("su.local3.warn");
    assert_eq!(
        (&r["ident"], &r["message"], &r["severity"], &r["facility"]),
        (&json!("app1"), &json!("udp 3164 message"), &json!("warn"), &json!("local3"))
    );
    assert!(r.get("pri").is_none());
    let r = by_tag("su.user.err");
    assert_eq!((&r["ident"], &r["message"]), (&json!("app2"), &json!("udp 5424 message")));
    assert!(r["extradata"].as_str().unwrap().contains("timeQuality"));
    assert_eq!(by_tag("st.mail.info")["addr"], json!("127.0.0.1"));
    assert_eq!(by_tag("st.daemon.debug")["message"], json!("tcp 5424 message"));
    assert_eq!(by_tag("so.auth.crit")["message"], json!("octet counted\nwith a newline"));
    // A lying octet count closes that connection, logged; the port keeps serving.
    let mut c = TcpStream::connect(("127.0.0.1", po)).unwrap();
    c.write_all(b"99999999 x").unwrap();
    drop(c);
    l(&format!("--tcp --rfc5424 --octet-count -P {po} -t app6 'after the liar'"));
    let got = wait(&sink, 6);
    assert!(got.iter().any(|r| to_json(r)["message"] == json!("after the liar")));
    let (_, _, err) = spate.stop();
    assert!(err.contains("exceeds the frame limit"), "{err}");
}

/// rsyslogd relaying what arrives on UDP port `udp` to spate's port `to` over TCP,
/// octet-counted RFC 5424; `tls`: over TLS with its openssl driver, checking spate's
/// certificate against `tls` (a CA file). Killed on drop.
struct RsyslogRelay {
    child: std::process::Child,
    _dir: common::tempdir::Dir,
}

impl RsyslogRelay {
    fn start(udp: u16, to: u16, tls: Option<&str>) -> RsyslogRelay {
        let dir = common::tempdir::Dir::new("rsyslog");
        let (global, driver) = match tls {
            Some(ca) => (
                format!(" DefaultNetstreamDriverCAFile=\"{ca}\""),
                " StreamDriver=\"ossl\" StreamDriverMode=\"1\" StreamDriverAuthMode=\"x509/certvalid\"",
            ),
            None => (String::new(), ""),
        };
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{d}\"{global})\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
                 *.* action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{to}\" protocol=\"tcp\"{driver} TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let pid = dir.path().join("rsyslogd.pid");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f", conf.to_str().unwrap(), "-i", pid.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_bound(udp);
        RsyslogRelay { child, _dir: dir }
    }
}

impl Drop for RsyslogRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rsyslog_forwards_to_in_syslog() {
    if !tool("rsyslogd") || !tool("logger") {
        return;
    }
    let sink = Sink::start();
    let (p, rs) = (free_port(), free_port());
    let spate = start(
        "rsyslog",
        "<source>\n@type syslog\ntag rs\nbind 127.0.0.1\nport {P1}\nframe_type octet_count\n<transport tcp>\n</transport>\n<parse>\nmessage_format rfc5424\n</parse>\n</source>",
        &[p],
        &sink,
    );
    let relay = RsyslogRelay::start(rs, p, None);
    for i in 0..20 {
        sh(&format!("logger --udp --rfc3164 -n 127.0.0.1 -P {rs} -t relayed -p local0.notice 'through rsyslog {i}'"));
    }
    let got = sink.wait_for(20, Duration::from_secs(20));
    drop(relay);
    let ours: Vec<Value> = got.iter().filter(|r| r.tag == b"rs.local0.notice").map(to_json).collect();
    assert_eq!(ours.len(), 20, "{:?}", got.iter().map(to_json).collect::<Vec<_>>());
    assert!(ours.iter().all(|r| r["ident"] == json!("relayed")));
    // rsyslog's RFC 5424 template keeps the blank that followed the 3164 tag (`%msg%`
    // starts with it), and fluentd's parser keeps it too.
    assert!(ours.iter().any(|r| r["message"] == json!(" through rsyslog 7")), "{:?}", ours[0]);
    spate.stop();
}

#[test]
fn nginx_access_log_lines_parse_with_nginx_and_apache2() {
    if !tool("nginx") || !tool("curl") {
        return;
    }
    let dir = common::tempdir::Dir::new("nginx");
    let np = free_port();
    let log = dir.path().join("access.log");
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log {log} combined;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  server {{\n    listen 127.0.0.1:{np};\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
            d = dir.path().display(),
            log = log.display()
        ),
    )
    .unwrap();
    let mut nginx = Command::new("nginx")
        .args(["-c", conf.to_str().unwrap(), "-p", dir.path().to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_bound(np);
    for path in ["/", "/a?b=c", "/x%20y", "/missing.png"] {
        sh(&format!("curl -s -o /dev/null -A 'spate-test/1.0' -e http://ref.example/ 'http://127.0.0.1:{np}{path}'"));
    }
    sh(&format!("curl -s -o /dev/null -X POST -d x=1 'http://127.0.0.1:{np}/post'"));
    std::thread::sleep(Duration::from_millis(300));
    let _ = nginx.kill();
    let _ = nginx.wait();
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");

    let sink = Sink::start();
    let (p1, p2) = (free_port(), free_port());
    let spate = start(
        "nginx",
        "<source>\n@type tcp\ntag ng\nbind 127.0.0.1\nport {P1}\n<parse>\n@type nginx\n</parse>\n</source>\n<source>\n@type tcp\ntag ap\nbind 127.0.0.1\nport {P2}\n<parse>\n@type apache2\n</parse>\n</source>",
        &[p1, p2],
        &sink,
    );
    for p in [p1, p2] {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.write_all(lines.as_bytes()).unwrap();
    }
    let got = wait(&sink, 10);
    assert_eq!(got.len(), 10);
    let ng: Vec<Value> = got.iter().filter(|r| r.tag == b"ng").map(to_json).collect();
    let ap: Vec<Value> = got.iter().filter(|r| r.tag == b"ap").map(to_json).collect();
    assert!(ng.iter().all(|r| r["remote"] == json!("127.0.0.1") && r["agent"] != Value::Null));
    assert!(ng.iter().any(|r| r["path"] == json!("/a?b=c")
        && r["code"] == json!("200")
        && r["referer"] == json!("http://ref.example/")));
    assert!(ng.iter().any(|r| r["method"] == json!("POST")));
    assert!(ap.iter().any(|r| r["path"] == json!("/x%20y") && r["code"] == json!(200) && r["user"] == Value::Null));
    // The time is the log's (now, within a minute).
    let now = spate_protocol::EventTime::now().sec;
    assert!(got.iter().all(|r| now.abs_diff(r.time.sec) < 60));
    spate.stop();
}

#[test]
fn filter_parser_sends_failures_to_the_error_label() {
    let sink = Sink::start();
    let p = free_port();
    let cfg = format!(
        "<source>\n@type forward\nbind 127.0.0.1\nport {{PORT}}\n</source>\n\
         <source>\n@type tcp\ntag raw\nbind 127.0.0.1\nport {p}\n<parse>\n@type json\n</parse>\n</source>\n\
         <filter raw>\n@type parser\nkey_name log\nreserve_data true\n<parse>\n@type apache2\n</parse>\n</filter>\n\
         <match raw>\n@type forward\n<server>\nhost 127.0.0.1\nport {s}\n</server>\n<buffer>\nflush_interval 0.1s\n</buffer>\n</match>\n\
         <label @ERROR>\n<match **>\n@type forward\n<server>\nhost 127.0.0.1\nport {s}\n</server>\n<buffer>\nflush_interval 0.1s\n</buffer>\n</match>\n</label>\n",
        s = sink.addr.port()
    );
    let spate = Spate::start("filter_parser", &cfg, Stdio::null());
    wait_bound(p);
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    c.write_all(b"{\"log\":\"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] \\\"GET / HTTP/1.1\\\" 200 777 \\\"-\\\" \\\"Opera/12.0\\\"\",\"stream\":\"stdout\"}\n{\"log\":\"not an access log\",\"stream\":\"stderr\"}\n{\"other\":1}\n").unwrap();
    drop(c);
    let got = wait(&sink, 4);
    let recs: Vec<Value> = got.iter().map(to_json).collect();
    // Parsed, merged (reserve_data), with the log's time.
    let ok = got.iter().find(|r| to_json(r)["method"] == json!("GET")).unwrap();
    assert_eq!(ok.time.sec, 1362020400);
    assert_eq!(to_json(ok)["stream"], json!("stdout"));
    // The unparsable line is kept (reserve_data) and also sent to @ERROR, as the key-less record.
    assert_eq!(recs.iter().filter(|r| r["log"] == json!("not an access log")).count(), 2);
    assert!(recs.iter().filter(|r| r["other"] == json!(1)).count() >= 2, "{recs:?}");
    spate.stop();
}

/// v0.12's flat parser parameters (`format`, `time_format`, `time_key`...) work as the
/// `<parse>` fluentd's compat layer makes of them: each flat source below is paired with
/// the same source written with `<parse>`, and both must give the same events (in_syslog
/// `format none`, in_tcp `format /regexp/` + `time_format`, filter_parser `format ltsv`);
/// in_http's flat `time_key`/`time_format` set the event time from the JSON body. (The
/// filters keep in_tcp's time: `reserve_time`, else ltsv's missing time would be now.)
#[test]
fn v012_flat_parser_parameters_equal_their_parse_sections() {
    let sink = Sink::start();
    let (sf, ss, tf, ts, hp) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let re = r"/^(?<host>[^ ]+) (?<at>[^ ]+) (?<msg>.*)$/";
    let re_bare = &re[1..re.len() - 1];
    let sources = format!(
        "<source>\n@type syslog\ntag flat\nbind 127.0.0.1\nport {{P1}}\n<transport tcp>\n</transport>\nformat none\n</source>\n\
         <source>\n@type syslog\ntag sect\nbind 127.0.0.1\nport {{P2}}\n<transport tcp>\n</transport>\n<parse>\n@type none\n</parse>\n</source>\n\
         <source>\n@type tcp\ntag tflat\nbind 127.0.0.1\nport {{P3}}\nformat {re}\ntime_key at\ntime_format %Y-%m-%dT%H:%M:%S%z\n</source>\n\
         <source>\n@type tcp\ntag tsect\nbind 127.0.0.1\nport {{P4}}\n<parse>\n@type regexp\nexpression {re_bare}\ntime_key at\ntime_format %Y-%m-%dT%H:%M:%S%z\n</parse>\n</source>\n\
         <source>\n@type http\nbind 127.0.0.1\nport {{P5}}\ntime_key date\ntime_format %Y-%m-%dT%H:%M:%S%z\n</source>\n\
         <filter tflat>\n@type parser\nkey_name msg\nreserve_data true\nreserve_time true\nformat ltsv\n</filter>\n\
         <filter tsect>\n@type parser\nkey_name msg\nreserve_data true\nreserve_time true\n<parse>\n@type ltsv\n</parse>\n</filter>"
    );
    let spate = start("v012-parse", &sources, &[sf, ss, tf, ts, hp], &sink);
    for p in [sf, ss] {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.write_all(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick\n").unwrap();
    }
    for p in [tf, ts] {
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        c.write_all(b"web1 2020-01-02T03:04:05+0000 user:alice\tstatus:200\n").unwrap();
    }
    let body = r#"{"date":"2021-06-07T08:09:10+0000","k":1}"#;
    let mut c = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    write!(c, "POST /app.http HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut c, &mut resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = wait(&sink, 5);
    assert_eq!(got.len(), 5);
    let by = |prefix: &str| {
        got.iter().find(|r| r.tag.starts_with(prefix.as_bytes())).unwrap_or_else(|| {
            panic!(
                "no {prefix}: {:?}",
                got.iter().map(|r| String::from_utf8_lossy(&r.tag).into_owned()).collect::<Vec<_>>()
            )
        })
    };
    let (f, s) = (by("flat."), by("sect."));
    assert_eq!(to_json(f), to_json(s));
    assert_eq!(f.tag, b"flat.auth.crit");
    assert_eq!(to_json(f)["message"], json!("Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick"));
    let (f, s) = (by("tflat"), by("tsect"));
    assert_eq!((to_json(f), f.time), (to_json(s), s.time));
    assert_eq!(f.time.sec, 1577934245);
    assert_eq!(to_json(f), json!({"host": "web1", "msg": "user:alice\tstatus:200", "user": "alice", "status": "200"}));
    let h = by("app.http");
    assert_eq!((h.time.sec, to_json(h)), (1623053350, json!({"k": 1})));
    let (_, _, err) = spate.stop();
    assert!(!err.contains("is not used"), "{err}");
}

/// fluent-plugin-parser's out_parser as real configs write it (v0.12 `type`, in a copy
/// `<store>`, flat `format`): parsed events are re-emitted under the new tag and routed
/// again; a parsed record without a time keeps the event's; a missing key is a warning;
/// with `reserve_data` an unmatched event goes on unparsed.
#[test]
fn out_parser_reemits_parsed_events_under_the_new_tag() {
    let sink = Sink::start();
    let (p1, p2) = (free_port(), free_port());
    let sources = "<source>\n@type tcp\ntag fwg001.a\nbind 127.0.0.1\nport {P1}\n<parse>\n@type json\n</parse>\n</source>\n\
         <source>\n@type tcp\ntag ns001.a\nbind 127.0.0.1\nport {P2}\n<parse>\n@type json\n</parse>\n</source>\n\
         <match fwg001.*>\n  type copy\n  <store>\n    type parser\n    format ltsv\n    time_key time\n    time_format %Y-%m-%dT%H:%M:%S%:z\n    add_prefix parsed\n    key_name message\n  </store>\n</match>\n\
         <match ns001.*>\n  @type parser\n  format /^(?<user>[a-z]+) (?<code>\\d+)$/\n  key_name message\n  reserve_data true\n  remove_prefix ns001\n  add_prefix parsed\n</match>";
    let spate = start("out-parser", sources, &[p1, p2], &sink);
    let mut c = TcpStream::connect(("127.0.0.1", p1)).unwrap();
    c.write_all(b"{\"message\":\"time:2020-01-02T03:04:05+00:00\\tuser:alice\",\"host\":\"h\"}\n{\"time\":1362020400,\"message\":\"user:bob\"}\n{\"other\":1}\n").unwrap();
    drop(c);
    let mut c = TcpStream::connect(("127.0.0.1", p2)).unwrap();
    c.write_all(b"{\"time\":1362020400,\"message\":\"carol 200\"}\n{\"time\":1362020401,\"message\":\"nomatch\"}\n")
        .unwrap();
    drop(c);
    let got = wait(&sink, 4);
    assert_eq!(got.len(), 4, "{:?}", got.iter().map(to_json).collect::<Vec<_>>());
    let find =
        |k: &str, v: &str| got.iter().find(|r| to_json(r)[k] == json!(v)).unwrap_or_else(|| panic!("no {k}={v}"));
    let a = find("user", "alice");
    assert_eq!(
        (a.tag.as_slice(), a.time.sec, to_json(a)),
        (&b"parsed.fwg001.a"[..], 1577934245, json!({"user": "alice"}))
    );
    let b = find("user", "bob");
    assert_eq!((b.tag.as_slice(), b.time.sec), (&b"parsed.fwg001.a"[..], 1362020400), "no time: the event's");
    let c = find("user", "carol");
    assert_eq!((c.tag.as_slice(), c.time.sec), (&b"parsed.a"[..], 1362020400));
    assert_eq!(to_json(c), json!({"message": "carol 200", "user": "carol", "code": "200"}));
    let n = find("message", "nomatch");
    assert_eq!(
        (n.tag.as_slice(), n.time.sec, to_json(n)),
        (&b"parsed.a"[..], 1362020401, json!({"message": "nomatch"}))
    );
    let (_, _, err) = spate.stop();
    assert!(err.contains("message does not exist"), "{err}");
    assert!(err.contains("pattern not matched with data 'nomatch'"), "{err}");
    assert!(!err.contains("is not used"), "{err}");
}

/// `<transport tls>` on in_syslog and in_tcp (in_forward's TLS parameters): rsyslog
/// forwards over TLS (its openssl driver, checking spate's certificate against the test CA:
/// `x509/certvalid`) to in_syslog, Python's ssl module sends JSON lines to in_tcp; a plain-TCP client on the TLS port gets
/// nothing in and the port keeps serving; a connection closed before any ClientHello (a
/// TCP health check) is not logged as a failed handshake.
#[test]
fn tls_syslog_from_rsyslog_and_tcp_from_python() {
    if !tool("rsyslogd") || !tool("logger") {
        return;
    }
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so").exists() {
        assert!(std::env::var_os("SPATE_REQUIRE_TOOLS").is_none(), "rsyslog-openssl is required");
        eprintln!("skipped: rsyslog's openssl driver is not installed (apt-get install rsyslog-openssl)");
        return;
    }
    let dir = common::tempdir::Dir::new("tls-text");
    let pki = common::test_pki(dir.path());
    let (ca_pem, cert, key) = (pki.ca, pki.cert, pki.key);
    let sink = Sink::start();
    let (ps, pt, rs) = (free_port(), free_port(), free_port());
    let tls = format!("<transport tls>\ncert_path {cert}\nprivate_key_path {key}\n</transport>");
    let spate = start(
        "tls-text",
        &format!(
            "<source>\n@type syslog\ntag ts\nbind 127.0.0.1\nport {{P1}}\nframe_type octet_count\n{tls}\n<parse>\nmessage_format rfc5424\n</parse>\n</source>\n\
             <source>\n@type tcp\ntag tt\nbind 127.0.0.1\nport {{P2}}\n{tls}\n<parse>\n@type json\n</parse>\n</source>"
        ),
        &[ps, pt],
        &sink,
    );
    // Plain TCP on the TLS port: the handshake fails, nothing is emitted.
    let mut plain = TcpStream::connect(("127.0.0.1", pt)).unwrap();
    let _ = plain.write_all(b"{\"via\":\"plain\"}\n");
    drop(plain);
    // A TCP health check on the syslog port (connect, close): not a failed handshake.
    drop(TcpStream::connect(("127.0.0.1", ps)).unwrap());
    let relay = RsyslogRelay::start(rs, ps, Some(&ca_pem));
    for i in 0..5 {
        sh(&format!("logger --udp --rfc3164 -n 127.0.0.1 -P {rs} -t overtls -p local1.info 'tls syslog {i}'"));
    }
    let py = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile='{ca_pem}')\ns = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {pt})), server_hostname='127.0.0.1')\nfor i in range(3):\n    s.sendall(b'{{\"via\":\"python\",\"i\":%d}}\\n' % i)\ns.close()\n"
    );
    let st = Command::new("python3").args(["-c", &py]).status().unwrap();
    assert!(st.success());
    let got = wait(&sink, 8);
    drop(relay);
    let recs: Vec<(String, Value)> =
        got.iter().map(|r| (String::from_utf8_lossy(&r.tag).into_owned(), to_json(r))).collect();
    let syslog: Vec<&Value> = recs.iter().filter(|(t, _)| t == "ts.local1.info").map(|(_, r)| r).collect();
    assert_eq!(syslog.len(), 5, "{recs:?}");
    assert!(syslog.iter().all(|r| r["ident"] == json!("overtls")), "{recs:?}");
    let tcp: Vec<&Value> = recs.iter().filter(|(t, _)| t == "tt").map(|(_, r)| r).collect();
    assert_eq!(tcp.len(), 3, "{recs:?}");
    assert!(recs.iter().all(|(_, r)| r["via"] != json!("plain")), "{recs:?}");
    let (_, _, err) = spate.stop();
    // The plain client's failed handshake is logged; the health check is not.
    assert_eq!(err.matches("TLS handshake with").count(), 1, "{err}");
}
