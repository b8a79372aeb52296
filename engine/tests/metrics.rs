//! spate's metrics endpoints against a live spate (2 shards): fluentd's monitor_agent
//! API (keys, types, order, query parameters, LTSV, config, emitted events), the
//! Prometheus endpoint scraped by Debian's real Prometheus server (counters read back
//! through its query API and checked against what was sent; `promtool check metrics`
//! on the exposition), Ruby fluentd's monitor_agent for the same configuration when a
//! `fluentd` is on PATH, and hostile HTTP on the metrics port while a Forward client
//! sends acked frames.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{self, get, get_until};
use common::*;
use serde_json::Value as J;

/// Starts spate on `conf` (`{PORT}` and the other `{NAME}` placeholders replaced) with
/// stderr in a file; returns it with the log path.
fn start(name: &str, conf: &str, workers: u32) -> (Proc, u16, tempdir::Dir) {
    let port = free_port();
    let dir = tempdir::Dir::new(name);
    let path = dir.path().join("fluent.conf");
    std::fs::write(&path, conf.replace("{PORT}", &port.to_string())).unwrap();
    let log = std::fs::File::create(dir.path().join("spate.log")).unwrap();
    let mut p = Proc::spawn("spate", spate_cmd(&path, workers).stdout(Stdio::null()).stderr(log));
    p.wait_listening(port, Duration::from_secs(20));
    (p, port, dir)
}

fn send_acked(addr: SocketAddr, tag: &[u8], n: u64, per_frame: u64, chunk: &str) {
    let mut c = Client::connect(addr);
    let mut sent = 0;
    let mut i = 0;
    while sent < n {
        let k = per_frame.min(n - sent);
        let id = format!("{chunk}-{i}");
        c.send(&acked_frame(tag, &packed_entries(k, sent), k, &id)).unwrap();
        assert_eq!(c.read_ack().unwrap(), id.as_bytes());
        sent += k;
        i += 1;
    }
}

fn plugins(r: &http::Resp) -> Vec<J> {
    r.json()["plugins"].as_array().cloned().unwrap_or_default()
}

fn by_id<'a>(list: &'a [J], id: &str) -> &'a J {
    list.iter().find(|p| p["plugin_id"] == id).unwrap_or_else(|| panic!("no plugin {id} in {list:?}"))
}

#[test]
fn monitor_agent_lists_plugins_with_fluentds_keys_summed_over_shards() {
    let sink = Sink::start();
    let sink2 = Sink::start();
    let mport = free_port();
    let conf = format!(
        r#"<source>
  @type forward
  @id in
  bind 127.0.0.1
  port {{PORT}}
</source>
<source>
  @type monitor_agent
  @id monitor
  bind 127.0.0.1
  port {mport}
  tag monitor.metrics
  emit_interval 1s
  @label @MON
</source>
<filter app.**>
  @type grep
  @id keep
  <exclude>
    key k
    pattern /^never$/
  </exclude>
</filter>
<match app.**>
  @type copy
  @id both
  <store>
    @type forward
    @id fwd
    <server>
      host 127.0.0.1
      port {sport}
    </server>
    <buffer>
      flush_interval 100ms
    </buffer>
  </store>
  <store>
    @type null
    @id discard
  </store>
</match>
<match fluent.**>
  @type null
  @id logs
</match>
<label @MON>
  <match monitor.**>
    @type forward
    @id monfwd
    <server>
      host 127.0.0.1
      port {s2port}
    </server>
    <buffer>
      flush_interval 100ms
    </buffer>
  </match>
</label>
"#,
        sport = sink.addr.port(),
        s2port = sink2.addr.port()
    );
    let (mut p, port, _dir) = start("monitor-agent", &conf, 2);
    let addr = loopback(port);
    let m = loopback(mport);
    // Several connections, so both shards get some (values are summed over shards).
    let threads: Vec<_> =
        (0..4).map(|i| std::thread::spawn(move || send_acked(addr, b"app.web", 300, 100, &format!("c{i}")))).collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sink.wait_for(1200, Duration::from_secs(20)).len(), 1200);

    let r = get_until(m, "/api/plugins.json", Duration::from_secs(10), |r| {
        r.status == 200 && plugins(r).iter().any(|p| p["plugin_id"] == "fwd" && p["write_count"].as_u64() >= Some(1))
    });
    assert_eq!(r.header("content-type"), Some("application/json"));
    let list = plugins(&r);
    let order: Vec<&str> = list.iter().map(|p| p["plugin_id"].as_str().unwrap()).collect();
    // fluentd's order: inputs; per label its outputs (a copy before its stores), then
    // its filters.
    assert_eq!(order, ["in", "monitor", "both", "fwd", "discard", "logs", "keep", "monfwd"]);

    let input = by_id(&list, "in");
    let keys: Vec<&str> = input.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["plugin_id", "plugin_category", "type", "config", "output_plugin", "retry_count", "emit_records", "emit_size"]
    );
    assert_eq!(input["plugin_category"], "input");
    assert_eq!(input["type"], "forward");
    assert_eq!(input["output_plugin"], false);
    assert!(input["retry_count"].is_null());
    assert_eq!(input["emit_records"], 1200, "summed over both shards");
    assert!(input["emit_size"].as_u64().unwrap() > 1200);
    assert_eq!(input["config"]["@id"], "in");
    assert_eq!(input["config"]["port"], port.to_string());

    let fwd = by_id(&list, "fwd");
    assert_eq!(fwd["output_plugin"], true);
    assert_eq!(fwd["emit_records"], 1200);
    assert_eq!(fwd["retry_count"], 0);
    for k in [
        "buffer_queue_length",
        "buffer_total_queued_size",
        "emit_count",
        "emit_size",
        "write_count",
        "rollback_count",
        "slow_flush_count",
        "flush_time_count",
        "buffer_stage_length",
        "buffer_stage_byte_size",
        "buffer_queue_byte_size",
        "write_secondary_count",
        "drop_oldest_chunk_count",
    ] {
        assert!(fwd[k].is_u64(), "{k} is an integer: {fwd}");
    }
    assert!(fwd["buffer_timekeys"].is_array());
    assert!(fwd["buffer_available_buffer_space_ratios"].is_f64());
    assert_eq!(fwd["retry"], serde_json::json!({}), "include_retry: not retrying");
    let discard = by_id(&list, "discard");
    assert_eq!(discard["emit_records"], 1200);
    assert!(discard.get("buffer_queue_length").is_none(), "no buffer keys without a buffer");
    let keep = by_id(&list, "keep");
    assert_eq!((keep["plugin_category"].as_str(), keep["emit_records"].as_u64()), (Some("filter"), Some(1200)));

    // Query parameters, as fluentd 1.19 reads them.
    assert_eq!(plugins(&get(m, "/api/plugins.json?@id=fwd")).len(), 1);
    assert_eq!(plugins(&get(m, "/api/plugins.json?id=keep"))[0]["plugin_id"], "keep");
    let nulls: Vec<J> = plugins(&get(m, "/api/plugins.json?@type=null"));
    assert_eq!(nulls.iter().map(|p| p["plugin_id"].as_str().unwrap()).collect::<Vec<_>>(), ["discard", "logs"]);
    assert_eq!(plugins(&get(m, "/api/plugins.json?tag=app.x"))[0]["plugin_id"], "both");
    assert!(plugins(&get(m, "/api/plugins.json?tag=nothing.matches")).is_empty());
    let plain = plugins(&get(m, "/api/plugins.json?with_config=no&with_retry=no"));
    assert!(by_id(&plain, "fwd").get("config").is_none() && by_id(&plain, "fwd").get("retry").is_none());
    let iv = plugins(&get(m, "/api/plugins.json?with_ivars=id,num_errors"));
    assert_eq!(by_id(&iv, "in")["instance_variables"], serde_json::json!({}));
    assert!(get(m, "/api/plugins.json?debug=1").text().contains('\n'), "debug=1 pretty-prints");
    assert!(!get(m, "/api/plugins.json").text().contains('\n'));

    // LTSV, exactly fluentd's line for an input.
    let ltsv = get(m, "/api/plugins").text();
    let first = ltsv.lines().next().unwrap();
    let size = input["emit_size"].as_u64().unwrap();
    assert_eq!(
        first,
        format!(
            "plugin_id:in\tplugin_category:input\ttype:forward\toutput_plugin:false\tretry_count:\temit_records:1200\temit_size:{size}"
        )
    );
    let cfg = get(m, "/api/config.json").json();
    assert_eq!(cfg["pid"], p.pid());
    for k in ["ppid", "version", "config_path", "pid_file", "plugin_dirs", "log_path"] {
        assert!(cfg.get(k).is_some(), "{k} in {cfg}");
    }
    assert!(get(m, "/api/config").text().starts_with(&format!("pid:{}\tppid:", p.pid())));
    let nf = get(m, "/api/plugins.json/not_found");
    assert_eq!((nf.status, nf.json()["message"].as_str()), (404, Some("Not found")));

    // tag + emit_interval: one record per plugin, routed through @label @MON.
    let ev = sink2.wait_for(8, Duration::from_secs(10));
    assert!(ev.len() >= 8, "monitor events: {}", ev.len());
    assert_eq!(ev[0].tag, b"monitor.metrics");
    let rec = spate_protocol::RecordRef::new(&ev[0].record).unwrap();
    assert_eq!(rec.get(b"plugin_id").and_then(|v| v.as_str()), Some(&b"in"[..]));
    assert!(rec.get(b"config").is_none(), "events carry no config, as fluentd's");
    p.stop(Duration::from_secs(20));
}

const FLUENTD_NAME_LINT: &[&str] = &[
    "fluentd_output_status_emit_count",
    "fluentd_output_status_flush_time_count",
    "fluentd_output_status_retry_count",
    "fluentd_output_status_rollback_count",
    "fluentd_output_status_slow_flush_count",
    "fluentd_output_status_write_count",
    "fluentd_status_retry_count",
];

/// Runs `promtool check metrics` on `text`: (exit code, output).
fn promtool(text: &str) -> (i32, String) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), s)
}

/// A Prometheus query's first sample value.
fn prom_value(prom: SocketAddr, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let r = http::raw(
        prom,
        format!("GET /api/v1/query?query={enc} HTTP/1.1\r\nHost: {prom}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let r = http::parse(&r)?;
    let j: J = serde_json::from_slice(&r.body).ok()?;
    j["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_server_scrapes_spate_and_promtool_accepts_the_exposition() {
    let Some(prometheus) = find_peer("PROMETHEUS", "prometheus") else {
        skip_unless_required(
            "SPATE_REQUIRE_PROMETHEUS",
            "Debian's prometheus is not installed (apt-get install prometheus)",
        );
        return;
    };
    let pport = free_port();
    let conf = format!(
        r#"<source>
  @type forward
  @id in
  bind 127.0.0.1
  port {{PORT}}
</source>
<source>
  @type prometheus
  bind 127.0.0.1
  port {pport}
</source>
<source>
  @type prometheus_monitor
  interval 1s
</source>
<source>
  @type prometheus_output_monitor
  interval 1s
  <labels>
    host ${{hostname}}
  </labels>
</source>
<filter app.**>
  @type prometheus
  <metric>
    name spate_test_events_total
    type counter
    desc Events per tag.
    <labels>
      tag ${{tag}}
    </labels>
  </metric>
  <metric>
    name spate_test_k
    type gauge
    desc The last k.
    key k
  </metric>
</filter>
<match app.**>
  @type null
  @id out
</match>
"#
    );
    let (mut p, port, dir) = start("prometheus", &conf, 2);
    let addr = loopback(port);
    send_acked(addr, b"app.a", 700, 100, "a");
    send_acked(addr, b"app.b", 300, 100, "b");
    send_acked(addr, b"app.a", 500, 250, "a2");

    let web = free_port();
    let pconf = dir.path().join("prometheus.yml");
    std::fs::write(
        &pconf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: spate\n    static_configs:\n      - targets: ['127.0.0.1:{pport}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("prom-data");
    let mut prom = Proc::spawn(
        "prometheus",
        Command::new(prometheus)
            .arg(format!("--config.file={}", pconf.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    prom.wait_listening(web, Duration::from_secs(30));
    let pa = loopback(web);
    let want = [
        ("spate_test_events_total{tag=\"app.a\"}", 1200.0),
        ("spate_test_events_total{tag=\"app.b\"}", 300.0),
        ("sum(spate_input_events_in_total{plugin_id=\"in\"})", 1500.0),
        ("sum(spate_output_events_in_total{plugin_id=\"out\"})", 1500.0),
        ("sum(spate_shard_input_acks_sent_total)", 12.0),
        ("fluentd_output_status_emit_records{plugin_id=\"out\"}", 1500.0),
        ("up{job=\"spate\"}", 1.0),
    ];
    let end = Instant::now() + Duration::from_secs(60);
    for (q, v) in want {
        loop {
            let got = prom_value(pa, q);
            if got == Some(v) {
                println!("prometheus query {q} = {v}");
                break;
            }
            assert!(Instant::now() < end, "prometheus query {q}: {got:?}, want {v}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // The whole answer of one query, for the record.
    let raw = http::raw(
        pa,
        format!("GET /api/v1/query?query=spate_test_events_total HTTP/1.1\r\nHost: {pa}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    println!("prometheus /api/v1/query?query=spate_test_events_total -> {}", http::parse(&raw).unwrap().text());

    // promtool: spate's own families and the <metric>s pass every check; the
    // fluentd_* families only trip the lint on the names fluent-plugin-prometheus chose
    // (dashboards query them by those names).
    let text = get(loopback(pport), "/metrics").text();
    let (code, out) = promtool(&text);
    let complaints: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(code == 0 || code == 3, "promtool failed to parse ({code}): {out}");
    for c in &complaints {
        assert!(FLUENTD_NAME_LINT.iter().any(|n| c.starts_with(&format!("{n} "))), "promtool: {c}");
    }
    let own: String = text.split_inclusive('\n').filter(|l| !l.contains("fluentd_")).collect();
    let (code, out) = promtool(&own);
    assert_eq!(code, 0, "promtool check metrics on spate's own families: {out}");
    let gz = http::raw(loopback(pport), b"GET /aggregated_metrics HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(http::parse(&gz).unwrap().status, 200);
    prom.stop(Duration::from_secs(10));
    p.stop(Duration::from_secs(20));
}

#[test]
fn monitor_agent_matches_ruby_fluentds_fields_and_types() {
    let Some(fluentd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    let conf = "<source>\n  @type forward\n  @id in\n  bind 127.0.0.1\n  port {PORT}\n</source>\n<source>\n  @type monitor_agent\n  @id monitor\n  bind 127.0.0.1\n  port {MPORT}\n</source>\n<match app.**>\n  @type forward\n  @id fwd\n  <server>\n    host 127.0.0.1\n    port {SPORT}\n  </server>\n  <buffer>\n    flush_interval 1s\n  </buffer>\n</match>\n<match **>\n  @type null\n  @id discard\n</match>\n";
    let sink = Sink::start();
    let run = |cmd: Option<&std::path::Path>| -> Vec<J> {
        let mport = free_port();
        let c = conf.replace("{MPORT}", &mport.to_string()).replace("{SPORT}", &sink.addr.port().to_string());
        let (mut proc, port, _dir) = match cmd {
            None => start("monitor-vs-spate", &c, 1),
            Some(f) => {
                let port = free_port();
                let dir = tempdir::Dir::new("monitor-vs-fluentd");
                let path = dir.path().join("fluent.conf");
                std::fs::write(&path, c.replace("{PORT}", &port.to_string())).unwrap();
                let p = Proc::start_peer("fluentd", f, &path, port);
                (p, port, dir)
            }
        };
        send_acked(loopback(port), b"app.web", 100, 100, "x");
        let r = get_until(loopback(mport), "/api/plugins.json", Duration::from_secs(20), |r| r.status == 200);
        proc.stop(Duration::from_secs(20));
        plugins(&r)
    };
    let ours = run(None);
    let theirs = run(Some(&fluentd));
    let kind = |v: &J| match v {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Number(n) if n.is_f64() => "float",
        J::Number(_) => "integer",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    };
    for id in ["in", "monitor", "fwd", "discard"] {
        let (a, b) = (by_id(&ours, id), by_id(&theirs, id));
        for (k, v) in b.as_object().unwrap() {
            // fluentd's own extras that spate has no equivalent for are listed here.
            if k == "instance_variables" {
                continue;
            }
            let mine = a.get(k).unwrap_or_else(|| panic!("{id}: spate has no {k} (fluentd: {v})"));
            assert_eq!(kind(mine), kind(v), "{id}.{k}: spate {mine}, fluentd {v}");
        }
    }
}

#[test]
fn hostile_http_never_disturbs_the_forward_listener() {
    let mport = free_port();
    let pport = free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<source>\n  @type monitor_agent\n  bind 127.0.0.1\n  port {mport}\n</source>\n<source>\n  @type prometheus\n  bind 127.0.0.1\n  port {pport}\n</source>\n<match **>\n  @type null\n</match>\n"
    );
    let (mut p, port, _dir) = start("hostile-http", &conf, 2);
    // `start` waits for the forward port only; the HTTP listeners may bind a moment later
    // (a loaded CI runner once refused the first request below).
    p.wait_listening(mport, Duration::from_secs(20));
    p.wait_listening(pport, Duration::from_secs(20));
    let addr = loopback(port);
    let m = loopback(mport);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    // A well-behaved Forward client acks frames all along.
    let good = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut n = 0u64;
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            let id = format!("g{n}");
            c.send(&acked_frame(b"good", &packed_entries(10, n * 10), 10, &id)).unwrap();
            assert_eq!(c.read_ack().unwrap(), id.as_bytes());
            n += 1;
        }
        n
    });
    let status = |bytes: &[u8]| http::parse(bytes).map(|r| r.status);
    assert_eq!(status(&http::raw(m, b"GARBAGE\r\n\r\n").unwrap()), Some(400));
    let huge = format!("GET /api/plugins.json HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000));
    assert_eq!(status(&http::raw(m, huge.as_bytes()).unwrap()), Some(431));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(status(&http::raw(m, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap()), Some(431));
    assert_eq!(status(&http::raw(m, b"GET /%zz HTTP/1.1\r\n\r\n").unwrap()), Some(400));
    assert_eq!(status(&http::raw(m, b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").unwrap()), Some(413));
    assert_eq!(status(&http::raw(m, b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap()), Some(400));
    assert_eq!(
        status(&http::raw(m, b"POST /api/plugins.json HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap()),
        Some(404)
    );
    assert_eq!(
        status(&http::raw(loopback(pport), b"DELETE /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap()),
        Some(405)
    );
    // Two pipelined requests on one keep-alive connection.
    let two = http::raw(
        m,
        b"GET /api/config.json HTTP/1.1\r\n\r\nGET /api/config.json HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&two).matches("HTTP/1.1 200 OK").count(), 2);
    // Random bytes: a reply or a close, never a crash.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let len = (seed % 300) as usize + 1;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // Half-closed after the junk: a prefix that is still a valid request start
        // ends at EOF instead of waiting for the request timeout.
        if let Ok(mut s) = TcpStream::connect(m) {
            let _ = s.write_all(&junk);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
    // Slow clients: 60 connections sending one header byte now and then, plus idle ones.
    let slow: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut s = TcpStream::connect(m).unwrap();
            s.write_all(b"GET /api/plugins.json HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    for _ in 0..5 {
        for mut s in slow.iter() {
            let _ = s.write_all(b"x");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Beyond the connection limit the server answers 503 at once; an earlier
    // connection keeps working once the slow ones are gone.
    drop(slow);
    let ok = get_until(m, "/api/plugins.json", Duration::from_secs(15), |r| r.status == 200);
    assert!(!plugins(&ok).is_empty());
    // A client that stops mid-request is cut off after the request timeout.
    let mut half = TcpStream::connect(m).unwrap();
    half.write_all(b"GET /api/plugins.json HTTP/1.1\r\n").unwrap();
    half.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let _ = half.read_to_end(&mut buf);
    assert_eq!(status(&buf), Some(408), "{}", String::from_utf8_lossy(&buf));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = good.join().expect("the Forward client got every ack");
    assert!(acked > 0);
    let r = get(m, "/api/plugins.json");
    assert_eq!(r.status, 200);
    let (st, _, _) = p.stop(Duration::from_secs(20));
    assert!(st.success());
}

#[test]
fn own_logs_become_events_without_feeding_a_failing_destination() {
    let sink = Sink::start();
    let dead = free_port();
    let quiet = free_port();
    let conf = format!(
        r#"<system>
  <log>
    format json
    time_format %Y-%m-%dT%H:%M:%S
  </log>
</system>
<source>
  @type forward
  @id in
  bind 127.0.0.1
  port {{PORT}}
</source>
<source>
  @type forward
  @id quiet
  @log_level error
  bind 127.0.0.1
  port {quiet}
</source>
<match **>
  @type null
</match>
<label @FLUENT_LOG>
  <match fluent.**>
    @type copy
    <store>
      @type forward
      @id ship
      <server>
        host 127.0.0.1
        port {sport}
      </server>
      <buffer>
        flush_interval 100ms
      </buffer>
    </store>
    <store>
      @type forward
      @id dead
      <server>
        host 127.0.0.1
        port {dead}
      </server>
      <buffer>
        flush_interval 100ms
        retry_wait 100ms
        retry_max_interval 200ms
        flush_at_shutdown false
      </buffer>
    </store>
  </match>
</label>
"#,
        sport = sink.addr.port()
    );
    let (mut p, port, dir) = start("log-events", &conf, 2);
    // A bad frame: in_forward warns with the peer and the reason.
    let _ = http::raw(loopback(port), &[0xc1, 0xc1, 0xc1]);
    // The same on the input whose @log_level is error: no line, no event.
    let _ = http::raw(loopback(quiet), &[0xc1, 0xc1, 0xc1]);
    let end = Instant::now() + Duration::from_secs(20);
    let warn = loop {
        let logs = sink.logs.lock().unwrap().clone();
        let found = logs.iter().find(|e| {
            e.tag == b"fluent.warn"
                && spate_protocol::RecordRef::new(&e.record)
                    .and_then(|r| r.get(b"message"))
                    .and_then(|v| v.as_str())
                    .is_some_and(|m| m.starts_with(b"in: closing connection from"))
        });
        if let Some(f) = found {
            break f.clone();
        }
        assert!(Instant::now() < end, "no fluent.warn event for the bad frame; got {} log events", logs.len());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(spate_protocol::RecordRef::new(&warn.record).unwrap().get(b"message").is_some());
    // Let `dead` fail and retry for a while: its own failure lines are never routed
    // back into it (nor anywhere else as events).
    std::thread::sleep(Duration::from_secs(3));
    let logs = sink.logs.lock().unwrap().clone();
    let msgs: Vec<String> = logs
        .iter()
        .filter_map(|e| {
            spate_protocol::RecordRef::new(&e.record)?
                .get(b"message")?
                .as_str()
                .map(|m| String::from_utf8_lossy(m).into_owned())
        })
        .collect();
    assert!(
        !msgs.iter().any(|m| m.starts_with("dead")),
        "the failing destination's lines came back as events: {msgs:?}"
    );
    assert!(!msgs.iter().any(|m| m.starts_with("quiet")), "@log_level error let a warning through: {msgs:?}");
    assert!(logs.len() < 50, "log events keep coming: {}", logs.len());
    let (st, _, _) = p.stop(Duration::from_secs(30));
    assert!(st.success());
    // <log> format json with time_format.
    let text = std::fs::read_to_string(dir.path().join("spate.log")).unwrap();
    let line = text.lines().find(|l| l.contains("failed to flush")).expect("dead's failures are on stderr");
    let j: J = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(j["level"], "warn");
    let t = j["time"].as_str().unwrap();
    assert_eq!((t.len(), &t[10..11]), (19, "T"), "time_format %Y-%m-%dT%H:%M:%S: {t}");
    assert!(!text.contains("quiet: closing connection"), "@log_level error");
}

#[test]
fn debug_agent_and_tail_monitor_are_accepted() {
    let dir = tempdir::Dir::new("debug-agent");
    let path = dir.path().join("fluent.conf");
    std::fs::write(
        &path,
        "<source>\n  @type debug_agent\n  bind 127.0.0.1\n  port 24230\n</source>\n<source>\n  @type prometheus_tail_monitor\n</source>\n<match **>\n  @type null\n</match>\n",
    )
    .unwrap();
    let out = Command::new(spate_bin()).arg("--dry-run").arg("-c").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("debug_agent").count(), 1, "one warning line: {err}");
    assert!(err.contains("spate runs no Ruby"), "{err}");
}

/// fluentd's out_null in its three shapes, seen through monitor_agent: unbuffered with
/// `never_flush` (nothing acked), buffered (`<buffer>`: chunks queued, written,
/// emptied), buffered with `never_flush` (acked into the buffer, every write retried),
/// and as a `<secondary>` (out_forward's chunk whose retries ran out is discarded there,
/// not dropped with an error line).
#[test]
fn out_null_buffered_never_flush_and_secondary_as_in_fluentd() {
    let mport = free_port();
    let dead = free_port();
    let conf = format!(
        r#"{SRC}<source>
  @type monitor_agent
  bind 127.0.0.1
  port {mport}
</source>
<match refuse.**>
  @type null
  @id refuse
  never_flush true
</match>
<match buffered.**>
  @type null
  @id buffered
  <buffer>
    flush_mode interval
    flush_interval 100ms
  </buffer>
</match>
<match stuck.**>
  @type null
  @id stuck
  never_flush true
  <buffer>
    flush_mode interval
    flush_interval 100ms
    retry_wait 0.1s
    retry_forever true
  </buffer>
</match>
<match gone.**>
  @type forward
  @id gone
  connect_timeout 1s
  <server>
    host 127.0.0.1
    port {dead}
  </server>
  <buffer>
    flush_interval 100ms
    retry_wait 0.1s
    retry_max_times 1
  </buffer>
  <secondary>
    @type null
    @id gone_null
  </secondary>
</match>
"#
    );
    let (p, port, dir) = start("out-null", &conf, 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let m = SocketAddr::from(([127, 0, 0, 1], mport));
    let _ = get_until(m, "/api/plugins.json", Duration::from_secs(10), |r| r.status == 200);

    // Unbuffered with never_flush: fluentd's process raises, so the frame is not acked.
    let mut c = Client::connect(addr);
    c.send(&acked_frame(b"refuse.a", &packed_entries(5, 0), 5, "r-0")).unwrap();
    assert!(c.read_ack().is_err(), "a frame never_flush refused was acked");

    send_acked(addr, b"buffered.a", 300, 100, "b");
    send_acked(addr, b"stuck.a", 200, 100, "s");
    send_acked(addr, b"gone.a", 50, 50, "g");

    let r = get_until(m, "/api/plugins.json", Duration::from_secs(20), |r| {
        let list = plugins(r);
        let n =
            |id: &str, k: &str| list.iter().find(|p| p["plugin_id"] == id).map_or(0, |p| p[k].as_u64().unwrap_or(0));
        n("buffered", "write_count") > 0
            && n("buffered", "buffer_total_queued_size") == 0
            && n("stuck", "retry_count") >= 3
            && n("gone", "write_secondary_count") > 0
    });
    let list = plugins(&r);
    let (refuse, buffered, stuck) = (by_id(&list, "refuse"), by_id(&list, "buffered"), by_id(&list, "stuck"));
    assert_eq!(refuse["emit_records"], 0, "{refuse}");
    assert!(refuse.get("buffer_queue_length").is_none(), "unbuffered: {refuse}");
    assert_eq!(buffered["emit_records"], 300, "{buffered}");
    assert_eq!(buffered["buffer_total_queued_size"], 0, "{buffered}");
    assert_eq!(stuck["emit_records"], 200, "{stuck}");
    assert!(stuck["buffer_total_queued_size"].as_u64().unwrap_or(0) > 0, "never_flush keeps its chunks: {stuck}");
    assert_eq!(stuck["write_count"], 0, "{stuck}");
    drop(p);
    let log = std::fs::read_to_string(dir.path().join("spate.log")).unwrap_or_default();
    assert!(log.contains("failed to flush (never_flush true)"), "{log}");
    assert!(log.contains("written to <secondary> null"), "{log}");
}

/// An input's @label is resolved by fluentd whether the input emits or not (helm
/// charts put one on in_prometheus): it must name a <label>, and is not "unused".
#[test]
fn label_on_prometheus_inputs_is_checked_not_ignored() {
    for ty in ["prometheus", "prometheus_monitor", "prometheus_output_monitor"] {
        let ok = format!("<source>\n  @type {ty}\n  @label @PROM\n</source>\n<label @PROM>\n  <match **>\n    @type null\n  </match>\n</label>\n");
        let (accepted, err) = dry_run(&ok);
        assert!(accepted && !err.contains("not used"), "{ty}: {err}");
        let (accepted, err) = dry_run(&format!("<source>\n  @type {ty}\n  @label @NOPE\n</source>\n"));
        assert!(
            !accepted && err.contains("fluent.conf:1:1: @label @NOPE refers to no <label @NOPE> section"),
            "{ty}: {err}"
        );
    }
}
