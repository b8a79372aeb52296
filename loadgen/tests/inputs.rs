//! `run --protocol http|tcp|udp|syslog` against spate's in_http, in_tcp, in_udp and
//! in_syslog, relaying to the loadgen sink: every format the protocol carries is parsed
//! by the real input, and exactly `--events` events arrive (by tag), none twice. UDP
//! sends a few hundred small datagrams, far below the socket's receive buffer, so
//! loopback does not drop any. The spate binary is the workspace's
//! `target/<profile>/spate` (built here if it is missing).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate_loadgen::generator::{run, RunConfig};
use spate_loadgen::lines::{Format, Protocol};
use spate_loadgen::sink::{self, SinkConfig, SinkHandle};

fn spate_bin() -> PathBuf {
    spate_testkit::process::workspace_bin("spate-engine", "spate")
}

use spate_testkit::net::free_port;

struct Spate {
    child: Child,
    dir: PathBuf,
}

impl Drop for Spate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One input per case, each with its own port and tag.
struct Case {
    protocol: Protocol,
    format: Format,
    tag: &'static str,
    port: u16,
    /// The tag events arrive with at the sink.
    arrives_as: &'static str,
}

fn source(c: &Case) -> String {
    let parse = |t: &str| format!("  <parse>\n    @type {t}\n  </parse>\n");
    let (ty, extra) = match (c.protocol, c.format) {
        (Protocol::Http, _) => ("http", String::new()),
        (Protocol::Syslog, f) => {
            let mf = if f == Format::Syslog5424 { "rfc5424" } else { "rfc3164" };
            (
                "syslog",
                format!(
                    "  tag {}\n  <transport tcp>\n  </transport>\n  <parse>\n    @type syslog\n    message_format {mf}\n  </parse>\n",
                    c.tag
                ),
            )
        }
        (p, f) => {
            let ty = if p == Protocol::Udp { "udp" } else { "tcp" };
            let parser = match f {
                Format::Syslog3164 | Format::Syslog5424 => "syslog",
                other => other.name(),
            };
            (ty, format!("  tag {}\n{}", c.tag, parse(parser)))
        }
    };
    format!("<source>\n  @type {ty}\n  bind 127.0.0.1\n  port {}\n{extra}</source>\n", c.port)
}

fn start(cases: &[Case], sink: u16) -> Spate {
    let dir = std::env::temp_dir().join(format!("lg-inputs-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut conf: String = cases.iter().map(source).collect();
    conf += &format!(
        "<match **>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {sink}\n  </server>\n  <buffer>\n    flush_interval 100ms\n  </buffer>\n</match>\n"
    );
    let cf = dir.join("fluent.conf");
    std::fs::write(&cf, conf).unwrap();
    let child = Command::new(spate_bin())
        .args(["-c", cf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut sp = Spate { child, dir };
    let end = Instant::now() + Duration::from_secs(30);
    for c in cases.iter().filter(|c| c.protocol != Protocol::Udp) {
        while TcpStream::connect(("127.0.0.1", c.port)).is_err() {
            assert!(Instant::now() < end, "spate did not listen on {}", c.port);
            assert!(sp.child.try_wait().unwrap().is_none(), "spate exited");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    sp
}

fn arrived(s: &SinkHandle, tag: &str) -> u64 {
    s.report().by_tag.get(tag).map_or(0, |t| t.events)
}

fn drive(cases: &[Case], events: u64) {
    let s = sink::start(SinkConfig::default()).unwrap();
    let _spate = start(cases, s.addr().port());
    // UDP has no connection to wait for: the TCP inputs listening means spate is up.
    for c in cases {
        let what = format!("{}/{}", c.protocol.name(), c.format.name());
        let udp = c.protocol == Protocol::Udp;
        let cfg = RunConfig {
            targets: vec![SocketAddr::from(([127, 0, 0, 1], c.port))],
            connections: 2,
            batch: 37,
            tag: c.tag.into(),
            events: Some(events),
            rate: udp.then_some(2000.0),
            protocol: c.protocol,
            format: Some(c.format),
            quiet: true,
            ..Default::default()
        };
        let r = run(cfg).unwrap();
        assert_eq!(r.events_sent, events, "{what}: {r:?}");
        assert_eq!(r.errors, 0, "{what}");
        assert_eq!(r.mode, what);
        if c.protocol == Protocol::Http {
            assert!(r.ack, "{what}: responses are acks");
            assert_eq!(r.events_acked, events, "{what}");
            assert_eq!(r.ack_latency_us.count, r.frames_sent, "{what}: a latency per request");
        }
        let end = Instant::now() + Duration::from_secs(20);
        while arrived(&s, c.arrives_as) < events && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(arrived(&s, c.arrives_as), events, "{what}: exactly, no duplicates: {:?}", s.report().by_tag);
    }
}

#[test]
fn every_protocol_and_format_arrives_exactly() {
    let case = |protocol, format, tag, arrives_as| Case { protocol, format, tag, port: free_port(), arrives_as };
    let cases = [
        case(Protocol::Http, Format::Json, "lg.http.json", "lg.http.json"),
        case(Protocol::Http, Format::Msgpack, "lg.http.msgpack", "lg.http.msgpack"),
        // in_syslog tags `<tag>.<facility>.<severity>`: the lines are user.info.
        case(Protocol::Syslog, Format::Syslog5424, "lg.s5424", "lg.s5424.user.info"),
        case(Protocol::Syslog, Format::Syslog3164, "lg.s3164", "lg.s3164.user.info"),
        case(Protocol::Tcp, Format::Json, "lg.tcp.json", "lg.tcp.json"),
        case(Protocol::Tcp, Format::Ltsv, "lg.tcp.ltsv", "lg.tcp.ltsv"),
        case(Protocol::Tcp, Format::Apache2, "lg.tcp.apache2", "lg.tcp.apache2"),
        case(Protocol::Udp, Format::Json, "lg.udp.json", "lg.udp.json"),
    ];
    drive(&cases, 500);
}

#[test]
fn forward_only_options_are_rejected_for_other_protocols() {
    let base = RunConfig { protocol: Protocol::Syslog, events: Some(1), quiet: true, ..Default::default() };
    let e = run(RunConfig { ack: true, ..base.clone() }).unwrap_err().to_string();
    assert!(e.contains("--protocol syslog does not support --ack"), "{e}");
    let e = run(RunConfig { format: Some(Format::Json), ..base.clone() }).unwrap_err().to_string();
    assert!(e.contains("choose one of syslog3164, syslog5424"), "{e}");
    let e = run(RunConfig { format: Some(Format::Json), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("--format goes with --protocol"), "{e}");
}
