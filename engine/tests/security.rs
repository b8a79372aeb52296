//! The shared-key / user handshake on a live server, with our client and, when
//! installed, with Ruby fluentd on both sides (fluentd -> spate and spate -> fluentd).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use spate_engine::security::{ClientCredentials, ClientHandshake};
use spate_loadgen::generator::{run, RunConfig};
use spate_loadgen::sink::{self, SinkConfig};
use spate_protocol::encode::{self};

fn secure_conf(sink_port: u16) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{PORT}}
  <security>
    self_hostname spate.server
    shared_key s3cret
    user_auth true
    <user>
      username alice
      password wonderland
    </user>
  </security>
</source>
<match fluent.**>
  # spate's own log lines (the refused logins' warnings): not for the sink.
  @type null
</match>
<match **>
  @type forward
  <server>
    host 127.0.0.1
    port {sink_port}
  </server>
  <buffer>
    flush_interval 50ms
  </buffer>
</match>
"#
    )
}

/// Connects, authenticates with `cred`, and returns the stream and the PONG verdict.
fn login(addr: std::net::SocketAddr, cred: &ClientCredentials) -> (TcpStream, Result<(), String>) {
    let mut c = Client::connect(addr);
    let helo = c.read_value().expect("HELO");
    let mut ping = Vec::new();
    let hs = ClientHandshake::ping(cred, &helo, &mut ping).unwrap();
    c.send(&ping).unwrap();
    let pong = c.read_value().expect("PONG");
    let v = hs.verify(cred, &pong);
    (c.s, v)
}

fn cred(key: &str, pw: &str) -> ClientCredentials {
    ClientCredentials {
        self_hostname: "client.host".into(),
        shared_key: key.into(),
        username: "alice".into(),
        password: pw.into(),
    }
}

#[test]
fn shared_key_and_user_auth_gate_the_events() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start("security", &secure_conf(s.addr().port()), Stdio::null());

    // Right key and password: events flow and are acked.
    let (mut c, v) = login(spate.addr(), &cred("s3cret", "wonderland"));
    assert_eq!(v, Ok(()));
    let f = acked_frame(b"secure", &packed_entries(10, 0), 10, "c1");
    c.write_all(&f).unwrap();
    let mut cl = Client::new(c);
    assert_eq!(cl.read_ack().unwrap(), b"c1");

    // Wrong key, wrong password: PONG says why and the connection is closed.
    for (k, pw, why) in
        [("nope", "wonderland", "shared_key mismatch"), ("s3cret", "nope", "username/password mismatch")]
    {
        let (mut c, v) = login(spate.addr(), &cred(k, pw));
        assert_eq!(v, Err(format!("authentication failed: {why}")));
        let mut b = [0u8; 16];
        let _ = c.write_all(&f);
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "closed after a failed handshake");
    }
    // A client that sends events without a handshake is refused too.
    let mut raw = TcpStream::connect(spate.addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&f).unwrap();
    let mut b = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = raw.read(&mut b) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&b[..n]);
    }
    // The server's HELO (random hex) comes back, but never the ack map for "c1".
    let mut ack = Vec::new();
    encode::ack(&mut ack, b"c1");
    assert!(!got.windows(ack.len()).any(|w| w == ack.as_slice()), "no ack without authentication");

    assert!(s.wait_for(10, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.events(), 10, "only the authenticated client's events arrived");
    let (st, _, err) = spate.stop();
    assert!(st.success());
    assert!(
        err.contains("shared_key mismatch") && err.contains("username/password mismatch"),
        "failures are logged: {err}"
    );
}

#[test]
fn loadgen_authenticates_with_a_shared_key() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start("sec-loadgen", &secure_conf(s.addr().port()), Stdio::null());
    let auth = |pw: &str| spate_loadgen::generator::Auth {
        self_hostname: "lg".into(),
        shared_key: "s3cret".into(),
        username: "alice".into(),
        password: pw.into(),
    };
    let good = RunConfig {
        targets: vec![spate.addr()],
        connections: 2,
        batch: 100,
        ack: true,
        events: Some(2000),
        quiet: true,
        auth: Some(auth("wonderland")),
        ..Default::default()
    };
    let r = run(good).unwrap();
    assert_eq!((r.events_acked, r.errors), (2000, 0));
    assert!(s.wait_for(2000, Duration::from_secs(10)));
    let bad = RunConfig {
        targets: vec![spate.addr()],
        batch: 100,
        ack: true,
        duration: Some(Duration::from_millis(500)),
        quiet: true,
        auth: Some(auth("wrong")),
        ..Default::default()
    };
    let r = run(bad).unwrap();
    assert_eq!(r.events_acked, 0);
    assert!(r.errors > 0, "refused handshakes are counted");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.events(), 2000);
    spate.stop();
}

fn start_fluentd(cmd: &std::path::Path, dir: &std::path::Path, conf: &str, port: u16) -> Proc {
    let cf = dir.join("fluent.conf");
    std::fs::write(&cf, conf).unwrap();
    Proc::start_peer("fluentd", cmd, &cf, port)
}

/// generator -> fluentd (out_forward with shared key + user) -> spate (in_forward
/// <security>) -> sink.
#[test]
fn ruby_fluentd_authenticates_to_spate() {
    let Some(cmd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start("sec-fluentd-in", &secure_conf(s.addr().port()), Stdio::null());
    let p = free_port();
    let dir = tempdir::Dir::new("fluentd-sec");
    let conf = format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {p}\n</source>\n<match spate.**>\n  @type forward\n  require_ack_response true\n  <security>\n    self_hostname fluentd.client\n    shared_key s3cret\n  </security>\n  <server>\n    host 127.0.0.1\n    port {}\n    username alice\n    password wonderland\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n", spate.port);
    let _f = start_fluentd(&cmd, dir.path(), &conf, p);
    let r = run(RunConfig {
        targets: vec![format!("127.0.0.1:{p}").parse().unwrap()],
        batch: 100,
        ack: true,
        events: Some(3000),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.events_acked, 3000);
    assert_eq!(
        wait_loadgen_events(&s, 3000),
        3000,
        "fluentd's authenticated out_forward delivered everything through spate"
    );
    spate.stop();
}

/// generator -> spate (out_forward <security>) -> fluentd (in_forward <security>) -> sink.
#[test]
fn spate_authenticates_to_ruby_fluentd() {
    let Some(cmd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    let s = sink::start(SinkConfig::default()).unwrap();
    let p = free_port();
    let dir = tempdir::Dir::new("fluentd-sec2");
    let fconf = format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {p}\n  <security>\n    self_hostname fluentd.server\n    shared_key s3cret\n    user_auth true\n    <user>\n      username bob\n      password builder\n    </user>\n  </security>\n</source>\n<match spate.**>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n", s.addr().port());
    let _f = start_fluentd(&cmd, dir.path(), &fconf, p);
    let sconf = format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match **>\n  @type forward\n  require_ack_response true\n  <security>\n    self_hostname spate.client\n    shared_key s3cret\n  </security>\n  <server>\n    host 127.0.0.1\n    port {p}\n    username bob\n    password builder\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n");
    let spate = Spate::start("sec-fluentd-out", &sconf, Stdio::null());
    let r = run(RunConfig {
        targets: vec![spate.addr()],
        batch: 100,
        ack: true,
        events: Some(3000),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.events_acked, 3000);
    assert_eq!(
        wait_loadgen_events(&s, 3000),
        3000,
        "spate's authenticated out_forward delivered everything through fluentd"
    );
    spate.stop();
}

/// fluent-plugin-secure-forward's input, `secure false`: TLS with a self-signed
/// certificate clients do not verify, the same handshake (its `authentication` and
/// `<user>`), then events. The client is spate's out_forward in `tls_insecure_mode`
/// with `<security>`, as out_secure_forward connects (Ruby's out_secure_forward 0.4.5
/// was checked against it by hand, see the README); and the plugin's config rules.
#[test]
fn in_secure_forward_insecure_mode_authenticates() {
    let server = "<source>\n  @type secure_forward\n  secure no\n  bind 127.0.0.1\n  port {PORT}\n  self_hostname sf-${hostname}\n  shared_key s3cret\n  authentication yes\n  <user>\n    username alice\n    password wonderland\n  </user>\n</source>\n<match app.**>\n  @type stdout\n</match>\n";
    let client = |port: u16, pw: &str| {
        format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match app.**>\n  @type forward\n  transport tls\n  tls_insecure_mode true\n  <security>\n    self_hostname client.host\n    shared_key s3cret\n  </security>\n  <server>\n    host 127.0.0.1\n    port {port}\n    username alice\n    password {pw}\n  </server>\n  <buffer>\n    flush_interval 0\n    retry_wait 0.2s\n  </buffer>\n</match>\n"
        )
    };
    let b = Spate::start("sf-server", server, Stdio::piped());
    let a = Spate::start("sf-client", &client(b.port, "wonderland"), Stdio::null());
    let mut c = Client::connect(a.addr());
    c.send(&kv_frame(b"app.x", 7..9, kv_time(0), "s1")).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"s1");
    let bad = Spate::start("sf-bad", &client(b.port, "nope"), Stdio::null());
    let mut c = Client::connect(bad.addr());
    c.send(&kv_frame(b"app.bad", 1..2, kv_time(0), "s2")).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"s2");
    std::thread::sleep(Duration::from_millis(1500));
    drop((a, bad));
    let (st, out, err) = b.stop();
    assert!(st.success(), "{err}");
    assert!(out.contains("app.x: {\"k\":7") && out.contains("app.x: {\"k\":8"), "{out}\n{err}");
    assert!(!out.contains("app.bad"), "a wrong password delivers nothing: {out}");
    assert!(err.contains("username/password mismatch"), "{err}");
    assert!(err.contains("'insecure' mode has vulnerability"), "{err}");

    for (body, want) in [
        ("self_hostname h\n  shared_key k\n", "'secure' parameter is required"),
        ("secure true\n  self_hostname h\n  shared_key k\n", "cert_path or ca_cert_path required"),
        ("secure true\n  self_hostname h\n  shared_key k\n  cert_path /c\n  private_key_path /k\n", "private_key_passphrase required"),
        (
            "secure true\n  self_hostname h\n  shared_key k\n  ca_cert_path /c\n  ca_private_key_path /k\n  ca_private_key_passphrase p\n",
            "ca_cert_path is not supported",
        ),
        ("secure false\n  shared_key k\n", "'self_hostname' parameter is required"),
    ] {
        let (ok, err) = dry_run(&format!("<source>\n  @type secure_forward\n  {body}</source>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:"), "{body}: {err}");
    }
}
