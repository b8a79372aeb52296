//! TLS on in_forward (`<transport tls>`) and out_forward (`transport tls`) with
//! certificates generated here: exact counts through TLS on both hops (with acks, and
//! with the shared-key handshake inside TLS), client certificate authentication, a
//! wrong CA, a plain-TCP client on a TLS port, a client that never completes its
//! handshake (handshake_timeout); and Ruby fluentd's TLS out_forward/in_forward when it
//! is installed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use spate_protocol::EventTime;

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    other_ca: String,
}

/// common's [`TestPki`] (a CA, a server certificate for localhost/127.0.0.1, a client
/// certificate) and an unrelated CA, as PEM files in `dir`.
fn pki(dir: &Path) -> Pki {
    let t = test_pki(dir);
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "some other CA");
    let other = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();
    Pki {
        ca: t.ca,
        server_cert: t.cert,
        server_key: t.key,
        client_cert: t.client_cert,
        client_key: t.client_key,
        other_ca: other_ca.display().to_string(),
    }
}

/// A blocking TLS client (rustls) that sends acked PackedForward frames.
fn tls_client(
    addr: SocketAddr,
    ca: &str,
    client: Option<(&str, &str)>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c).unwrap().map(|x| x.unwrap()).collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "127.0.0.1".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now so failures show here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn frame(k0: u64, n: u64, id: &str) -> Vec<u8> {
    kv_frame(b"tls.test", k0..k0 + n, EventTime::new(T0, 1), id)
}

fn send_acked<S: Read + Write>(s: &mut S, k0: u64, frames: u64) {
    let mut c = Client::new(s);
    for i in 0..frames {
        let id = format!("tls-{k0}-{i}");
        c.send(&frame(k0 + i * 100, 100, &id)).unwrap();
        // One ack: {"ack": id}
        assert_eq!(c.read_ack().expect("an ack before the connection closed"), id.as_bytes());
    }
}

fn tls_source(p: &Pki, extra: &str) -> String {
    format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n{extra}  </transport>\n</source>\n",
        p.server_cert, p.server_key
    )
}

fn wait_all(sink: &FixedSink, n: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let g = sink.seen.lock().unwrap();
        if (0..n).all(|k| g.contains_key(&k)) {
            return true;
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn tls_on_both_hops_with_acks_and_shared_key() {
    let dir = tempdir::Dir::new("tls-chain");
    let p = pki(dir.path());
    let sink_port = free_port();
    let mut sink = FixedSink::new(sink_port);
    sink.start();
    let sec = "<security>\n  self_hostname b\n  shared_key s3cr3t\n</security>\n";
    // B: TLS + shared key in, plain out to the sink.
    let b = Spate::start(
        "tls-b",
        &format!(
            "{}<match **>\n  @type forward\n  require_ack_response true\n  heartbeat_type none\n  <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n",
            tls_source(&p, "").replace("</source>\n", &format!("{sec}</source>\n"))
        ),
        Stdio::null(),
    );
    // A: TLS in, TLS + shared key out to B.
    let a = Spate::start(
        "tls-a",
        &format!(
            "{}<match **>\n  @type forward\n  transport tls\n  tls_ca_cert_path {}\n  require_ack_response true\n  <security>\n    self_hostname a\n    shared_key s3cr3t\n  </security>\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n",
            tls_source(&p, ""),
            p.ca,
            b.port
        ),
        Stdio::null(),
    );
    let mut c = tls_client(a.addr(), &p.ca, None).expect("TLS to spate A");
    send_acked(&mut c, 0, 30);
    assert!(wait_all(&sink, 3000), "3000 events through TLS (A) -> TLS + shared key (B) -> sink");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.total(), 3000, "exactly once");
    let (_, _, la) = a.stop();
    let (_, _, lb) = b.stop();
    assert!(!la.contains("failed") && !lb.contains("failed"), "no failures:\n{la}\n{lb}");
    sink.stop();
}

#[test]
fn client_certificates_plain_clients_and_stalled_handshakes() {
    let dir = tempdir::Dir::new("tls-auth");
    let p = pki(dir.path());
    let conf = format!(
        "{}<match **>\n  @type null\n</match>\n",
        tls_source(&p, &format!("    client_cert_auth true\n    ca_path {}\n", p.ca))
    )
    .replace("  <transport tls>", "  handshake_timeout 1s\n  <transport tls>");
    let s = Spate::start("tls-auth", &conf, Stdio::null());
    // Without a client certificate: refused.
    let r = tls_client(s.addr(), &p.ca, None).and_then(|mut c| {
        c.write_all(&frame(0, 1, "x"))?;
        let mut b = [0u8; 16];
        c.read(&mut b)
    });
    assert!(!matches!(r, Ok(n) if n > 0), "no ack without a client certificate: {r:?}");
    // A plain-TCP Forward client on the TLS port: closed, nothing acked.
    let mut plain = Client::connect(s.addr());
    plain.send(&frame(0, 1, "plain")).unwrap();
    assert!(plain.read_ack().is_err(), "plain TCP gets no ack on a TLS port");
    // A client that connects and says nothing: dropped after handshake_timeout.
    let mut idle = TcpStream::connect(s.addr()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut b = [0u8; 1];
    let _ = idle.read(&mut b);
    let waited = t0.elapsed();
    // With a certificate signed by the CA: served.
    let mut c = tls_client(s.addr(), &p.ca, Some((&p.client_cert, &p.client_key))).expect("client cert accepted");
    send_acked(&mut c, 0, 5);
    drop(c);
    let (_, _, log) = s.stop();
    assert!(waited < Duration::from_secs(4), "the idle connection was closed by handshake_timeout ({waited:?})");
    assert!(log.matches("TLS handshake with 127.0.0.1").count() >= 3, "each refusal is logged:\n{log}");
}

#[test]
fn out_forward_refuses_a_server_its_ca_did_not_sign() {
    let dir = tempdir::Dir::new("tls-wrongca");
    let p = pki(dir.path());
    let b = Spate::start(
        "tls-wrongca-b",
        &format!("{}<match **>\n  @type null\n</match>\n", tls_source(&p, "")),
        Stdio::null(),
    );
    let a = Spate::start(
        "tls-wrongca-a",
        &format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match **>\n  @type forward\n  transport tls\n  tls_ca_cert_path {}\n  heartbeat_type none\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 50ms\n    retry_wait 100ms\n    flush_at_shutdown false\n  </buffer>\n</match>\n",
            p.other_ca, b.port
        ),
        Stdio::null(),
    );
    let mut c = Client::connect(a.addr());
    c.send(&frame(0, 10, "w")).unwrap();
    // A's flushes retry every 100 ms; the logs are read at the stop.
    std::thread::sleep(Duration::from_millis(2000));
    let (_, _, la) = a.stop();
    let (_, _, lb) = b.stop();
    assert!(la.contains("TLS") && la.contains("failed to flush"), "A does not send to an unverified server:\n{la}");
    assert!(lb.contains("TLS handshake with 127.0.0.1"), "B saw the aborted handshake:\n{lb}");
}

#[test]
fn tls_config_errors_name_the_line() {
    let dir = tempdir::Dir::new("tls-conf");
    let p = pki(dir.path());
    // A PKCS#8 encrypted key's armour (its contents are never read).
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(&encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n")
        .unwrap();
    // A passphrase for a key that is not encrypted is not needed, as with OpenSSL.
    let f = dir.path().join("ok.conf");
    std::fs::write(
        &f,
        format!("<source>\n  @type forward\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n    private_key_passphrase x\n  </transport>\n</source>\n", p.server_cert, p.server_key),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["--dry-run", "-c", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cases = [
        (format!("<source>\n  @type forward\n  <transport tls>\n    private_key_path {}\n  </transport>\n</source>\n", p.server_key), "cert_path and private_key_path go together"),
        (format!("<source>\n  @type forward\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n    version TLSv1_1\n  </transport>\n</source>\n", p.server_cert, p.server_key), "TLS version TLSv1_1 is not supported"),
        (format!("<source>\n  @type forward\n  <transport tls>\n    cert_path /nonexistent.pem\n    private_key_path {}\n  </transport>\n</source>\n", p.server_key), "cert_path /nonexistent.pem"),
        (format!("<source>\n  @type forward\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n    private_key_passphrase x\n  </transport>\n</source>\n", p.server_cert, encrypted.display()), "encrypted private keys are not supported"),
        ("<match **>\n  @type forward\n  transport tls\n  tls_ca_cert_path /nonexistent.pem\n  <server>\n    host 127.0.0.1\n  </server>\n</match>\n".to_string(), "tls_ca_cert_path /nonexistent.pem"),
    ];
    for (conf, want) in cases {
        let f = dir.path().join("bad.conf");
        std::fs::write(&f, &conf).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["--dry-run", "-c", f.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{conf}");
        assert!(err.contains(want) && err.contains("bad.conf:"), "{want}: {err}");
    }
}

/// Ruby fluentd with TLS on both sides of spate: fluentd out_forward (TLS) -> spate
/// (TLS in, TLS out) -> fluentd in_forward (TLS) -> out_forward -> sink. fluentd's
/// side checks the CA but not the host name: Ruby 3.1's OpenSSL hostname check raises
/// NoMethodError for an IP address against a certificate with DNS names.
#[test]
fn interop_with_ruby_fluentd_over_tls() {
    let Some(fluentd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    let dir = tempdir::Dir::new("tls-fluentd");
    let p = pki(dir.path());
    let sink_port = free_port();
    let mut sink = FixedSink::new(sink_port);
    sink.start();
    // Downstream fluentd: TLS in_forward -> plain forward to the sink.
    let (down_port, up_port) = (free_port(), free_port());
    let down = dir.path().join("down.conf");
    std::fs::write(
        &down,
        format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {down_port}\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n  </transport>\n</source>\n<match tls.**>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n",
            p.server_cert, p.server_key
        ),
    )
    .unwrap();
    let down_peer = Proc::start_peer("fluentd-down", &fluentd, &down, down_port);
    // spate in the middle: TLS both ways.
    let spate = Spate::start(
        "tls-mid",
        &format!(
            "{}<match **>\n  @type forward\n  transport tls\n  tls_ca_cert_path {}\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {down_port}\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n",
            tls_source(&p, ""),
            p.ca
        ),
        Stdio::null(),
    );
    // Upstream fluentd: plain in_forward -> TLS out_forward to spate.
    let up = dir.path().join("up.conf");
    std::fs::write(
        &up,
        format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {up_port}\n</source>\n<match tls.**>\n  @type forward\n  transport tls\n  tls_cert_path {}\n  tls_verify_hostname false\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n",
            p.ca, spate.port
        ),
    )
    .unwrap();
    let up_peer = Proc::start_peer("fluentd-up", &fluentd, &up, up_port);
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], up_port)));
    for i in 0..20u64 {
        let id = format!("f{i}");
        c.send(&frame(i * 100, 100, &id)).unwrap();
        assert_eq!(c.read_ack().unwrap(), id.as_bytes());
    }
    let ok = wait_all(&sink, 2000);
    let (_, _, log) = spate.stop();
    drop(up_peer);
    drop(down_peer);
    sink.stop();
    assert!(ok, "2000 events: fluentd -TLS-> spate -TLS-> fluentd -> sink; spate log:\n{log}");
}

/// fluentd's own examples in_forward_tls.conf / out_forward_tls.conf: a server with no
/// certificate (a self-signed one is generated) and a client in `tls_insecure_mode`.
#[test]
fn self_signed_server_and_insecure_client_as_in_fluentd_examples() {
    let b = Spate::start(
        "tls-selfsigned",
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n  <transport tls>\n    insecure true\n  </transport>\n</source>\n<match test>\n  @type stdout\n</match>\n",
        Stdio::piped(),
    );
    let a = Spate::start(
        "tls-insecure",
        &format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match test>\n  @type forward\n  transport tls\n  tls_insecure_mode true\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 0\n  </buffer>\n</match>\n",
            b.port
        ),
        Stdio::null(),
    );
    let mut c = Client::connect(a.addr());
    c.send(&kv_frame(b"test", 42..43, EventTime::new(T0, 0), "s1")).unwrap();
    assert_eq!(c.read_ack().unwrap(), b"s1");
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, la) = a.stop();
    let (_, out, lb) = b.stop();
    assert!(out.contains("test: {\"k\":42,\"msg\":\"event 42\"}"), "delivered over TLS:\n{out}\n{la}\n{lb}");
    assert!(lb.contains("self-signed certificate generated at start"), "{lb}");
    assert!(la.contains("tls_insecure_mode true"), "{la}");
}

/// spate-loadgen with TLS (and TLS + shared key) against spate: every event acked.
#[test]
fn loadgen_over_tls() {
    use spate_loadgen::generator::{run, Auth, RunConfig};
    use spate_loadgen::tls::TlsConf;
    let dir = tempdir::Dir::new("tls-loadgen");
    let p = pki(dir.path());
    let s = Spate::start(
        "tls-loadgen",
        &format!(
            "{}<match **>\n  @type null\n</match>\n",
            tls_source(&p, "")
                .replace("</source>\n", "<security>\n  self_hostname srv\n  shared_key k3y\n</security>\n</source>\n")
        ),
        Stdio::null(),
    );
    let tls = TlsConf::new(Some(Path::new(&p.ca)), None, false, None).unwrap();
    let cfg = RunConfig {
        targets: vec![s.addr()],
        connections: 2,
        batch: 500,
        ack: true,
        events: Some(50_000),
        quiet: true,
        tls: Some(tls),
        auth: Some(Auth {
            self_hostname: "lg".into(),
            shared_key: "k3y".into(),
            username: String::new(),
            password: String::new(),
        }),
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert_eq!((r.events_sent, r.events_acked, r.errors), (50_000, 50_000, 0));
    // The wrong CA: the generator refuses the server and counts errors.
    let bad = TlsConf::new(Some(Path::new(&p.other_ca)), None, false, None).unwrap();
    let cfg = RunConfig {
        targets: vec![s.addr()],
        ack: true,
        events: Some(1000),
        duration: Some(Duration::from_secs(1)),
        quiet: true,
        tls: Some(bad),
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert_eq!(r.events_acked, 0);
    assert!(r.errors > 0, "TLS failures are counted");
    s.stop();
}
