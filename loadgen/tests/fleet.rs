//! Fleets on the event-loop path: 5,000 connections against the loadgen sink and
//! against spate (relaying to a sink: every acked event arrives, exactly once), churn
//! with a fresh TLS and shared-key handshake per connection against spate, and
//! fairness over every connection. The spate binary is the workspace's
//! `target/<profile>/spate` (built here if `cargo test -p spate-loadgen` ran alone).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate_loadgen::generator::{run, Auth, IoMode, RunConfig};
use spate_loadgen::report::RunReport;
use spate_loadgen::sink::{self, SinkConfig, SinkHandle};
use spate_loadgen::tls::TlsConf;

fn spate_bin() -> PathBuf {
    spate_testkit::process::workspace_bin("spate-engine", "spate")
}

use spate_testkit::net::free_port;

struct Spate {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Spate {
    fn start(name: &str, conf: &str) -> Spate {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("lg-fleet-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cf = dir.join("fluent.conf");
        std::fs::write(&cf, conf.replace("{PORT}", &port.to_string())).unwrap();
        let child = Command::new(spate_bin())
            .args(["-c", cf.to_str().unwrap(), "--workers", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "spate did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Spate { child, addr, dir }
    }
}

impl Drop for Spate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn relay_conf(source_extra: &str, sink: u16) -> String {
    format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n{source_extra}</source>\n<match **>\n  @type forward\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {sink}\n  </server>\n  <buffer>\n    flush_interval 100ms\n  </buffer>\n</match>\n"
    )
}

/// Every connection connected and sent; all that was sent was acked, and arrived once.
fn check_fleet(r: &RunReport, s: &SinkHandle, connections: u64, what: &str) {
    eprintln!(
        "{what}: {} connects, connect latency {:?}, fairness {:?}, ack {:?}, {:.2} s",
        r.connects, r.connect_latency_us, r.fairness, r.ack_latency_us, r.duration_s
    );
    assert_eq!(r.errors, 0, "{what}: {r:?}");
    assert_eq!(r.io, "loop", "{what}");
    assert!(r.connects >= connections, "{what}: {} connects", r.connects);
    assert_eq!(r.connect_latency_us.count, r.connects, "{what}");
    assert_eq!(r.events_acked, r.events_sent, "{what}");
    assert_eq!(r.fairness.connections, connections, "{what}");
    assert!(r.fairness.min >= 1, "{what}: a connection sent nothing: {:?}", r.fairness);
    let ours = |s: &SinkHandle| s.report().by_tag.get("spate.loadgen").map_or(0, |t| t.events);
    let end = Instant::now() + Duration::from_secs(30);
    while ours(s) < r.events_sent_total && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ours(s), r.events_sent_total, "{what}: exactly once at the sink");
}

fn fleet_cfg(target: SocketAddr, connections: u32) -> RunConfig {
    RunConfig {
        targets: vec![target],
        connections,
        batch: 1,
        ack: true,
        io: IoMode::Loop,
        // Two events per connection, one a second: each connection sends its share
        // however long the ramp to 5,000 connections takes (debug builds, busy CI).
        rate: Some(connections as f64),
        events: Some(2 * connections as u64),
        ack_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(20),
        quiet: true,
        ..Default::default()
    }
}

#[test]
fn five_thousand_connections_against_the_sink() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let r = run(fleet_cfg(s.addr(), 5000)).unwrap();
    assert_eq!((r.events_sent, r.fairness.min, r.fairness.max), (10_000, 2, 2));
    check_fleet(&r, &s, 5000, "sink");
    assert_eq!(s.report().connections, 5000, "one connection each, no reconnects");
}

#[test]
fn five_thousand_connections_against_spate() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start("5k", &relay_conf("", s.addr().port()));
    let r = run(fleet_cfg(spate.addr, 5000)).unwrap();
    assert_eq!((r.events_sent, r.fairness.min, r.fairness.max), (10_000, 2, 2));
    check_fleet(&r, &s, 5000, "spate");
    drop(spate);
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`.
fn pki(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "loadgen test CA");
    let ck = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ck).unwrap();
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "loadgen test server");
    let sk = KeyPair::generate().unwrap();
    let server = sp.signed_by(&sk, &ca, &ck).unwrap();
    let w = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    (w("ca.pem", ca.pem()), w("server.pem", server.pem()), w("server.key", sk.serialize_pem()))
}

#[test]
fn churn_reconnects_with_tls_and_shared_key_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("lg-churn-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = pki(&dir);
    let s = sink::start(SinkConfig::default()).unwrap();
    let extra = format!(
        "  <transport tls>\n    cert_path {cert}\n    private_key_path {key}\n  </transport>\n  <security>\n    self_hostname spate.server\n    shared_key s3cret\n  </security>\n"
    );
    let spate = Spate::start("churn", &relay_conf(&extra, s.addr().port()));
    let cfg = RunConfig {
        targets: vec![spate.addr],
        connections: 40,
        batch: 5,
        ack: true,
        rate: Some(2000.0),
        churn: Some(25.0),
        duration: Some(Duration::from_secs(2)),
        tls: Some(TlsConf::new(Some(Path::new(&ca)), None, false, None).unwrap()),
        auth: Some(Auth {
            self_hostname: "lg".into(),
            shared_key: "s3cret".into(),
            username: String::new(),
            password: String::new(),
        }),
        quiet: true,
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert!(r.churned >= 10, "churned {}", r.churned);
    // Churn is not a failure: no reconnects, and each churned connection came back.
    assert_eq!(r.reconnects, 0);
    assert!(r.connects >= 40 + r.churned - 40.min(r.churned), "{} connects, {} churned", r.connects, r.churned);
    check_fleet(&r, &s, 40, "churn");
    drop(spate);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn churn_against_the_sink_counts_every_connect() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let cfg = RunConfig {
        targets: vec![s.addr()],
        connections: 20,
        batch: 10,
        ack: true,
        rate: Some(4000.0),
        churn: Some(50.0),
        duration: Some(Duration::from_millis(1500)),
        quiet: true,
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert!(r.churned >= 20, "churned {}", r.churned);
    // Every connection the sink accepted was one the generator counted as a connect.
    check_fleet(&r, &s, 20, "churn sink");
    assert_eq!(s.report().connections, r.connects);
}
