//! out_syslog_rfc5424 against a real syslog server, Debian's rsyslog (imtcp with
//! octet-counted framing, imtcp over TLS with rsyslog-openssl, imudp), installed by
//! `.ci/run`; rsyslog writes what it parsed of each message (input, RFC 5424 fields,
//! time) to a file the test reads. The TLS certificate is made by the openssl CLI.
//! Without rsyslogd (or its openssl driver) the test is skipped with the reason, or
//! fails under SPATE_REQUIRE_TOOLS=1.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn have(cmd: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {cmd} || test -x /usr/sbin/{cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let driver = cmd != "rsyslogd" || std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so").exists();
    if !(ok && driver) {
        assert!(
            std::env::var_os("SPATE_REQUIRE_TOOLS").is_none(),
            "{cmd} is required (SPATE_REQUIRE_TOOLS); apt-get install rsyslog rsyslog-openssl openssl"
        );
        eprintln!("skipped: no {cmd} (or rsyslog's openssl driver): apt-get install rsyslog rsyslog-openssl openssl");
    }
    ok && driver
}

/// Makes, in directory `d`, a CA (`ca.pem`), a server certificate for localhost and
/// 127.0.0.1 it signed (`cert.pem`, `key.pem`) and a client certificate it signed
/// (`client.pem`, `client.key`), with the openssl CLI.
fn certificates(d: &str) {
    let dir = std::path::Path::new(d);
    // A CA, and a server certificate for 127.0.0.1 it signed.
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    // Extensions make it an X.509 v3 certificate (rustls takes no v1 ones).
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for args in [
        format!("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=spate-test-ca -keyout {d}/ca.key -out {d}/ca.pem"),
        format!("req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout {d}/key.pem -out {d}/srv.csr"),
        format!("x509 -req -in {d}/srv.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial -days 2 -extfile {d}/san.ext -out {d}/cert.pem"),
        // A client certificate for mutual TLS, signed by the same CA.
        format!("req -newkey rsa:2048 -nodes -subj /CN=spate-client -keyout {d}/client.key -out {d}/client.csr"),
        format!("x509 -req -in {d}/client.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial -days 2 -extfile {d}/client.ext -out {d}/client.pem"),
    ] {
        let st = Command::new("openssl")
            .args(args.split(' '))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args}");
    }
}

#[test]
fn rfc5424_messages_over_tls_tcp_and_udp_reach_rsyslog() {
    if !have("rsyslogd") || !have("openssl") {
        return;
    }
    let dir = tempdir::Dir::new("rsyslog-out");
    let d = dir.path().display().to_string();
    certificates(&d);
    let (pt, pp, pu) = (free_port(), free_port(), free_port());
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{d}\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" DefaultNetstreamDriverCertFile=\"{d}/cert.pem\" DefaultNetstreamDriverKeyFile=\"{d}/key.pem\")\n\
             module(load=\"imtcp\")\nmodule(load=\"imudp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{pt}\" name=\"tls\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{pp}\" name=\"tcp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{pu}\" name=\"udp\")\n\
             template(name=\"t\" type=\"string\" string=\"%inputname%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%|%timereported:::date-rfc3339%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/out.log\" template=\"t\")\n"
        ),
    )
    .unwrap();
    let rsyslogd = if std::path::Path::new("/usr/sbin/rsyslogd").exists() { "/usr/sbin/rsyslogd" } else { "rsyslogd" };
    let mut server = Proc::spawn(
        "rsyslogd",
        Command::new(rsyslogd)
            .args(["-n", "-f", conf.to_str().unwrap(), "-i", &format!("{d}/rsyslogd.pid")])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    server.wait_listening(pp, Duration::from_secs(20));
    server.wait_listening(pt, Duration::from_secs(20));

    let buf = "<buffer>\n    flush_interval 0.2s\n    retry_wait 0.3s\n  </buffer>\n";
    // What a server refuses stays in the buffer; not flushed at the stop.
    let refused = "<buffer>\n    flush_interval 0.2s\n    retry_wait 0.3s\n    flush_at_shutdown false\n  </buffer>\n";
    let cfg = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match tls.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  trusted_ca_path {d}/ca.pem\n  {buf}</match>\n\
         <match insecure.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  insecure true\n  {buf}</match>\n\
         <match untrusted.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  {refused}</match>\n\
         <match fqdn.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  trusted_ca_path {d}/ca.pem\n  fqdn localhost\n  version TLSv1_2\n  {buf}</match>\n\
         <match wrongname.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  trusted_ca_path {d}/ca.pem\n  fqdn wrong.example\n  {refused}</match>\n\
         <match nofqdn.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pt}\n  trusted_ca_path {d}/ca.pem\n  fqdn wrong.example\n  verify_fqdn false\n  {buf}</match>\n\
         <match tcp.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pp}\n  transport tcp\n  <format>\n    @type syslog_rfc5424\n    app_name_field k8s.app\n    proc_id_field k8s.pod\n  </format>\n  {buf}</match>\n\
         <match udp.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {pu}\n  transport udp\n  <format>\n    rfc6587_message_size false\n  </format>\n  {buf}</match>\n"
    );
    let spate = Spate::start_workers("syslog-rfc5424", &cfg, 1);
    let t0 = spate_protocol::EventTime::new(1362020400, 123_456_789);
    let rec = |log: &str| {
        format!(r#"{{"hostname":"web-1","app_name":"shop","proc_id":"42","message_id":"ID7","log":"{log}"}}"#)
    };
    send_json(&spate, "tls.a", t0, &[rec("over tls"), rec("caf\u{e9} \u{fc}ber tls")], "t1");
    send_json(&spate, "insecure.a", t0, &[rec("insecure tls")], "i1");
    send_json(&spate, "untrusted.a", t0, &[rec("never")], "u0");
    send_json(&spate, "fqdn.a", t0, &[rec("fqdn localhost")], "f1");
    send_json(&spate, "wrongname.a", t0, &[rec("never")], "w0");
    send_json(&spate, "nofqdn.a", t0, &[rec("verify_fqdn false")], "n1");
    send_json(
        &spate,
        "tcp.a",
        t0,
        &[
            r#"{"hostname":"web-2","k8s":{"app":"cart","pod":"cart-7"},"log":"over tcp","structured_data":"[ex@32473 a=\"1\"]"}"#,
        ],
        "c1",
    );
    send_json(&spate, "udp.a", t0, &[rec("over udp")], "d1");

    let out = dir.path().join("out.log");
    let end = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let t = std::fs::read_to_string(&out).unwrap_or_default();
        if t.lines().count() >= 7 {
            std::thread::sleep(Duration::from_millis(500));
            break std::fs::read_to_string(&out).unwrap_or_default();
        }
        if Instant::now() >= end {
            let (_, _, err) = spate.stop();
            panic!("rsyslog got: {t}\nspate: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let time = "2013-02-28T03:00:00.123456+00:00";
    assert_eq!(
        lines,
        vec![
            format!("tcp|web-2|cart|cart-7|-|[ex@32473 a=\"1\"]|over tcp|{time}"),
            // send_json puts record i at i seconds after the first.
            "tls|web-1|shop|42|ID7|-|caf\u{e9} \u{fc}ber tls|2013-02-28T03:00:01.123456+00:00".to_string(),
            format!("tls|web-1|shop|42|ID7|-|fqdn localhost|{time}"),
            format!("tls|web-1|shop|42|ID7|-|insecure tls|{time}"),
            format!("tls|web-1|shop|42|ID7|-|over tls|{time}"),
            format!("tls|web-1|shop|42|ID7|-|verify_fqdn false|{time}"),
            format!("udp|web-1|shop|42|ID7|-|over udp|{time}"),
        ],
        "non-ASCII text framed by its byte count; the untrusted server, the wrong name and the missing client \
         certificate refused"
    );
    let (_, _, err) = spate.stop();
    assert!(err.contains("TLS handshake with 127.0.0.1"), "{err}");
    assert!(err.contains("not valid for name \"wrong.example\""), "the fqdn was checked: {err}");
}

/// Mutual TLS (`client_cert_path`, `private_key_path`) against `openssl s_server`
/// requiring a client certificate (`-Verify`), which prints what it receives (and checks
/// `fqdn`, `enable_system_cert_store false` and `version`). (rsyslog's
/// x509/certvalid input stopped taking messages on its other inputs in this test.)
#[test]
fn client_certificate_to_openssl_s_server() {
    if !have("openssl") {
        return;
    }
    let dir = tempdir::Dir::new("syslog-mtls");
    let d = dir.path().display().to_string();
    certificates(&d);
    let port = free_port();
    let mut server = Proc::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-Verify", "1", "-quiet"])
            .args(["-cert", &format!("{d}/cert.pem"), "-key", &format!("{d}/key.pem")])
            .args(["-CAfile", &format!("{d}/ca.pem")])
            // s_server ends a session when its stdin ends: a pipe kept open.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = server.child_mut().stdout.take().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut b = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut b) {
            g.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    server.wait_listening(port, Duration::from_secs(20));
    let cfg = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match mtls.**>\n  @type syslog_rfc5424\n  host 127.0.0.1\n  port {port}\n  fqdn localhost\n  \
         trusted_ca_path {d}/ca.pem\n  enable_system_cert_store false\n  client_cert_path {d}/client.pem\n  \
         private_key_path {d}/client.key\n  version TLSv1_3\n  <buffer>\n    flush_interval 0.2s\n  </buffer>\n</match>\n"
    );
    let spate = Spate::start_workers("syslog-mtls", &cfg, 1);
    let t0 = spate_protocol::EventTime::new(1362020400, 0);
    send_json(&spate, "mtls.a", t0, &[r#"{"hostname":"web-1","log":"with a client certificate"}"#], "m1");
    let end = Instant::now() + Duration::from_secs(20);
    let want = "1 2013-02-28T03:00:00.000000+00:00 web-1 - - - - with a client certificate";
    loop {
        let text = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
        if text.contains(want) {
            break;
        }
        assert!(Instant::now() < end, "s_server got: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (st, _, _) = spate.stop();
    assert!(st.success());
}
