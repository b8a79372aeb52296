//! Configuration reload under acked load: spate-loadgen sends acked frames on the
//! main Forward port the whole time, and an independent client connects, sends one
//! acked frame and disconnects, over and over. spate (2 shards) is reloaded 5 times:
//! a valid change (SIGHUP), an invalid configuration (SIGUSR2; it keeps running the old
//! one and logs file:line), a changed route (SIGHUP: events go to the other sink), a
//! changed port of a second source (SIGHUP) and a valid change through the RPC
//! endpoint (`/api/config.gracefulReload`). After each valid reload, marker events must
//! take the new route. At the end nothing acked is missing from the sinks and no
//! connection to the unchanged listener was refused.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http;
use common::*;
use spate_loadgen::sink::{SinkConfig, SinkHandle};

fn sink() -> SinkHandle {
    spate_loadgen::sink::start(SinkConfig::default()).expect("a loadgen sink")
}

fn count(s: &SinkHandle, tag: &str) -> u64 {
    s.report().by_tag.get(tag).map_or(0, |t| t.events)
}

struct Conf {
    port: u16,
    port2: u16,
    route: u16,
    rpc: u16,
    flush: &'static str,
    extra: &'static str,
}

impl Conf {
    fn text(&self) -> String {
        format!(
            r#"<system>
  rpc_endpoint 127.0.0.1:{rpc}
</system>
<source>
  @type forward
  @id main
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type forward
  @id second
  bind 127.0.0.1
  port {port2}
</source>
{extra}
<match app.** spate.**>
  @type forward
  @id route
  require_ack_response true
  <server>
    host 127.0.0.1
    port {route}
  </server>
  <buffer>
    flush_interval {flush}
  </buffer>
</match>
<match fluent.**>
  @type null
</match>
"#,
            rpc = self.rpc,
            port = self.port,
            port2 = self.port2,
            route = self.route,
            flush = self.flush,
            extra = self.extra
        )
    }
}

/// One acked frame of `n` events on a new connection. `Err`: the connection was refused
/// (or the frame was not acked).
fn one_frame(addr: SocketAddr, tag: &[u8], n: u64, id: &str) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    let mut c = Client::new(s);
    c.send(&acked_frame(tag, &packed_entries(n, 0), n, id)).map_err(|e| format!("send: {e}"))?;
    let ack = c.read_ack().map_err(|e| format!("ack: {e}"))?;
    if ack != id.as_bytes() {
        return Err(format!("wrong ack {ack:?}"));
    }
    Ok(())
}

fn wait_log(path: &std::path::Path, needle: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        if t.contains(needle) {
            return t;
        }
        assert!(Instant::now() < end, "spate never logged {needle:?}:\n{t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn five_reloads_under_acked_load_lose_nothing_and_refuse_nothing() {
    let (a, b) = (sink(), sink());
    let mut conf = Conf {
        port: free_port(),
        port2: free_port(),
        route: a.addr().port(),
        rpc: free_port(),
        flush: "100ms",
        extra: "",
    };
    let dir = tempdir::Dir::new("reload");
    let path = dir.path().join("fluent.conf");
    let log = dir.path().join("spate.log");
    std::fs::write(&path, conf.text()).unwrap();
    let mut spate = Proc::spawn(
        "spate",
        spate_cmd(&path, 2).stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap()),
    );
    spate.wait_listening(conf.port, Duration::from_secs(20));
    let main = loopback(conf.port);

    // Load: spate-loadgen with acks, and an independent connect-send-close client.
    let load = std::thread::spawn(move || {
        spate_loadgen::generator::run(spate_loadgen::generator::RunConfig {
            targets: vec![main],
            connections: 2,
            batch: 100,
            rate: Some(20_000.0),
            ack: true,
            duration: Some(Duration::from_secs(14)),
            quiet: true,
            ..Default::default()
        })
        .expect("loadgen")
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, refused, attempts) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let indep = {
        let (stop, acked, refused, attempts) = (stop.clone(), acked.clone(), refused.clone(), attempts.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                attempts.fetch_add(1, Ordering::Relaxed);
                match one_frame(main, b"app.indep", 10, &format!("i{i}")) {
                    Ok(()) => {
                        acked.fetch_add(10, Ordering::Relaxed);
                    }
                    Err(e) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        errors.push(e);
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            errors
        })
    };

    let markers = |step: u32, via: SocketAddr, to: &SinkHandle, other: &SinkHandle| {
        let tag = format!("app.marker.{step}");
        for i in 0..5 {
            one_frame(via, tag.as_bytes(), 2, &format!("m{step}-{i}")).unwrap_or_else(|e| panic!("marker {step}: {e}"));
        }
        let end = Instant::now() + Duration::from_secs(15);
        while count(to, &tag) < 10 {
            assert!(Instant::now() < end, "step {step}: markers did not reach the expected sink");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(other, &tag), 0, "step {step}: markers took the old route");
    };
    std::thread::sleep(Duration::from_secs(1));
    markers(0, main, &a, &b);

    // 1. A valid change (a filter added), by SIGHUP.
    conf.extra = "<filter app.indep>\n  @type record_transformer\n  <record>\n    step one\n  </record>\n</filter>";
    std::fs::write(&path, conf.text()).unwrap();
    spate.signal(libc::SIGHUP);
    wait_log(&log, "configuration generation 1 is running", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    markers(1, main, &a, &b);

    // 2. An invalid configuration, by SIGUSR2: refused with file:line, the old one runs.
    std::fs::write(&path, conf.text().replace("@type null", "@type no_such_output")).unwrap();
    spate.signal(libc::SIGUSR2);
    let text = wait_log(&log, "configuration reload failed", Duration::from_secs(10));
    let conf_name = path.display().to_string();
    assert!(
        text.lines().any(|l| l.contains("configuration reload failed")
            && l.contains(&format!("{conf_name}:"))
            && l.contains("no_such_output")),
        "the error names file:line:\n{text}"
    );
    markers(2, main, &a, &b);

    // 3. A changed route: sink b from now on.
    conf.route = b.addr().port();
    std::fs::write(&path, conf.text()).unwrap();
    spate.signal(libc::SIGHUP);
    wait_log(&log, "configuration generation 2 is running", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    markers(3, main, &b, &a);

    // 4. The second source moves to another port; the main one stays.
    let old2 = conf.port2;
    conf.port2 = free_port();
    std::fs::write(&path, conf.text()).unwrap();
    spate.signal(libc::SIGHUP);
    wait_log(&log, "configuration generation 3 is running", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    markers(4, loopback(conf.port2), &b, &a);
    assert!(TcpStream::connect(loopback(old2)).is_err(), "the old port of the second source is closed");

    // 5. A valid change through fluentd's RPC API.
    conf.flush = "200ms";
    std::fs::write(&path, conf.text()).unwrap();
    let r = http::get(loopback(conf.rpc), "/api/config.gracefulReload");
    assert_eq!((r.status, r.text()), (200, r#"{"ok":true}"#.to_string()));
    wait_log(&log, "configuration generation 4 is running", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    markers(5, main, &b, &a);

    let report = load.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let errors = indep.join().unwrap();
    let (st, _, _) = spate.stop(Duration::from_secs(60));
    assert!(st.success());

    let (indep_acked, refusals, tries) =
        (acked.load(Ordering::Relaxed), refused.load(Ordering::Relaxed), attempts.load(Ordering::Relaxed));
    // The loadgen sink publishes its per-tag counts periodically (after it acked): wait
    // for them to catch up before comparing.
    let both = |tag: &str| count(&a, tag) + count(&b, tag);
    let end = Instant::now() + Duration::from_secs(10);
    while (both("spate.loadgen") < report.events_acked_total || both("app.indep") < indep_acked) && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let loadgen_received = both("spate.loadgen");
    let indep_received = both("app.indep");
    println!(
        "reload: 5 reloads; spate-loadgen {} events acked, {} received ({} lost, {} duplicates), errors {}; \
         independent client {tries} connections, {refusals} refused, {indep_acked} events acked, {indep_received} received",
        report.events_acked_total,
        loadgen_received,
        report.events_acked_total.saturating_sub(loadgen_received),
        loadgen_received.saturating_sub(report.events_acked_total),
        report.errors
    );
    assert!(report.events_acked_total > 0);
    assert_eq!(report.errors, 0, "spate-loadgen saw errors");
    assert!(loadgen_received >= report.events_acked_total, "acked events lost");
    assert_eq!(refusals, 0, "refused or failed connections on the unchanged listener: {errors:?}");
    assert!(indep_received >= indep_acked, "acked events of the independent client lost");
}

/// A file buffer holding acked events for a dead destination is handed to the output of
/// the new configuration (same path), which delivers them: nothing is re-read, lost or
/// left on disk.
#[test]
fn a_reload_hands_the_file_buffer_to_the_new_output() {
    let live = sink();
    let dead = free_port();
    let dir = tempdir::Dir::new("reload-file");
    let buf = dir.path().join("buf");
    let conf = |server: u16| {
        format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match app.**>\n  @type forward\n  @id out\n  <server>\n    host 127.0.0.1\n    port {server}\n  </server>\n  <buffer>\n    @type file\n    path {}\n    flush_interval 100ms\n    retry_wait 200ms\n    retry_max_interval 500ms\n  </buffer>\n</match>\n<match fluent.**>\n  @type null\n</match>\n",
            buf.display()
        )
    };
    let port = free_port();
    let path = dir.path().join("fluent.conf");
    let log = dir.path().join("spate.log");
    std::fs::write(&path, conf(dead).replace("{PORT}", &port.to_string())).unwrap();
    let mut spate = Proc::spawn(
        "spate",
        spate_cmd(&path, 2).stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap()),
    );
    spate.wait_listening(port, Duration::from_secs(20));
    for i in 0..5 {
        one_frame(loopback(port), b"app.file", 100, &format!("f{i}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&live, "app.file"), 0);
    std::fs::write(&path, conf(live.addr().port()).replace("{PORT}", &port.to_string())).unwrap();
    spate.signal(libc::SIGHUP);
    wait_log(&log, "configuration generation 1 is running", Duration::from_secs(10));
    let end = Instant::now() + Duration::from_secs(30);
    while count(&live, "app.file") < 500 {
        assert!(
            Instant::now() < end,
            "the buffered events were not delivered after the reload: {}",
            count(&live, "app.file")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, _, _) = spate.stop(Duration::from_secs(30));
    assert!(st.success());
    assert_eq!(count(&live, "app.file"), 500, "each acked event once");
    let left: Vec<_> = walk(&buf).into_iter().filter(|p| p.extension().is_some_and(|x| x == "chunk")).collect();
    assert!(left.is_empty(), "chunks left on disk: {left:?}");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let q = e.path();
        if q.is_dir() {
            out.extend(walk(&q));
        } else {
            out.push(q);
        }
    }
    out
}

/// A reload that adds a `<label>` before existing ones renumbers them: the inputs,
/// relabel outputs and flowcounters kept from the running generation must still reach
/// the labels they name, not whatever label now has their old position.
#[test]
fn a_label_added_before_others_leaves_kept_plugins_on_their_labels() {
    let (b, a) = (sink(), sink());
    let dir = tempdir::Dir::new("reload-labels");
    let (port, port2) = (free_port(), free_port());
    let out = |p: u16| {
        format!(
            "  <match **>\n    @type forward\n    <server>\n      host 127.0.0.1\n      port {p}\n    </server>\n    <buffer>\n      flush_interval 100ms\n    </buffer>\n  </match>\n"
        )
    };
    let conf = |extra: &str| {
        format!(
            "<source>\n  @type forward\n  @id labelled\n  bind 127.0.0.1\n  port {port}\n  @label @B\n</source>\n<source>\n  @type forward\n  @id top\n  bind 127.0.0.1\n  port {port2}\n</source>\n<match relay.**>\n  @type relabel\n  @label @B\n</match>\n<match fluent.**>\n  @type null\n</match>\n{extra}<label @B>\n{}</label>\n",
            out(b.addr().port())
        )
    };
    let path = dir.path().join("fluent.conf");
    let log = dir.path().join("spate.log");
    std::fs::write(&path, conf("")).unwrap();
    let mut spate = Proc::spawn(
        "spate",
        spate_cmd(&path, 2).stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap()),
    );
    spate.wait_listening(port, Duration::from_secs(20));
    spate.wait_listening(port2, Duration::from_secs(20));
    one_frame(loopback(port), b"direct.before", 10, "d0").unwrap();
    one_frame(loopback(port2), b"relay.before", 10, "r0").unwrap();
    // @A now comes first: @B moves from the first label to the second.
    std::fs::write(&path, conf(&format!("<label @A>\n{}</label>\n", out(a.addr().port())))).unwrap();
    spate.signal(libc::SIGHUP);
    wait_log(&log, "configuration generation 1 is running", Duration::from_secs(10));
    one_frame(loopback(port), b"direct.after", 10, "d1").unwrap();
    one_frame(loopback(port2), b"relay.after", 10, "r1").unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let want = ["direct.before", "relay.before", "direct.after", "relay.after"];
    while want.iter().any(|t| count(&b, t) < 10) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (st, _, _) = spate.stop(Duration::from_secs(30));
    assert!(st.success());
    for t in want {
        assert_eq!((t, count(&b, t), count(&a, t)), (t, 10, 0), "{}", std::fs::read_to_string(&log).unwrap());
    }
}
