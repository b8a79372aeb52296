//! A fleet of forwarders against one spate: many concurrent Message-mode connections,
//! each sending 20 acked events/s, plus connections that connect and disconnect in a
//! loop (spate-loadgen's event-loop generator, `--churn`), through spate (2 shards,
//! out_forward with a memory buffer) into a spate-loadgen sink.
//!
//! Asserted: every acked event reaches the sink, no ack times out, and spate's memory
//! per connection is bounded (anonymous RSS, so the binary's own pages do not count):
//! an idle connection (measured with raw sockets before the load) at most 8 KiB, an
//! active one (peak during the load over the baseline) at most 64 KiB. Printed: ack
//! p50/p99/max, RSS per idle and per active connection. A second spate with a low
//! `max_connections` refuses the excess and logs and counts the refusals.
//!
//! Size: 1000 connections for 10 s with the debug binary; with the release binary
//! (`SPATE_RELEASE_BIN`, set by `.ci/run`) the full 5,000 connections (100k events/s)
//! for 30 s, with 200 churning connections. The generator runs in-process (a debug
//! build in `cargo test`, which cannot offer 100k acked events/s) unless
//! `SPATE_LOADGEN_BIN` names a spate-loadgen binary (`.ci/run`: the release one).

mod common;

use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spate_loadgen::generator::{self, IoMode, RunConfig};
use spate_loadgen::records::SendMode;
use spate_loadgen::sink::{self, SinkConfig};

/// What the test reads from a generator's report.
struct Gen {
    events_acked_total: u64,
    ack_timeouts: u64,
    churned: u64,
    achieved_rate: f64,
    p50: u64,
    p99: u64,
    max: u64,
}

/// Runs the generator: the spate-loadgen binary named by `SPATE_LOADGEN_BIN` (its
/// JSON report), or the library in this process.
fn run_generator(cfg: RunConfig) -> Gen {
    if let Some(bin) = std::env::var_os("SPATE_LOADGEN_BIN") {
        let report = std::env::temp_dir().join(format!("spate-fleet-{}-{}.json", std::process::id(), cfg.tag));
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["run", "--target", &cfg.targets[0].to_string(), "--mode", "message", "--batch", "1", "--ack"])
            .args(["--connections", &cfg.connections.to_string(), "--inflight", &cfg.inflight.to_string()])
            .args(["--rate", &cfg.rate.unwrap_or(0.0).to_string(), "--io", "loop", "--tag", &cfg.tag, "--quiet"])
            .args(["--duration", &format!("{}s", cfg.duration.map_or(10, |d| d.as_secs()))])
            .arg("--report")
            .arg(&report);
        if let Some(c) = cfg.churn {
            cmd.args(["--churn", &c.to_string()]);
        }
        let st = cmd.status().expect("run spate-loadgen");
        assert!(st.success(), "spate-loadgen {cmd:?} failed: {st}");
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let _ = std::fs::remove_file(&report);
        let u = |k: &str| j[k].as_u64().unwrap_or(0);
        let lat = |k: &str| j["ack_latency_us"][k].as_u64().unwrap_or(0);
        return Gen {
            events_acked_total: u("events_acked_total"),
            ack_timeouts: u("ack_timeouts"),
            churned: u("churned"),
            achieved_rate: j["achieved_rate"].as_f64().unwrap_or(0.0),
            p50: lat("p50"),
            p99: lat("p99"),
            max: lat("max"),
        };
    }
    let r = generator::run(cfg).expect("the generator ran");
    Gen {
        events_acked_total: r.events_acked_total,
        ack_timeouts: r.ack_timeouts,
        churned: r.churned,
        achieved_rate: r.achieved_rate,
        p50: r.ack_latency_us.p50,
        p99: r.ack_latency_us.p99,
        max: r.ack_latency_us.max,
    }
}

/// Anonymous resident memory of `pid` (kB): what connections cost, without the binary's
/// file-backed pages (which spate pages out after start-up, at a moment of its own).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0)
}

#[test]
fn a_fleet_of_acked_message_mode_clients_with_churn() {
    raise_fd_limit();
    let release = Spate::release_bin();
    let (conns, secs, churners) = if release.is_some() { (5000u32, 30u64, 200u32) } else { (1000, 10, 50) };
    let s = sink::start(SinkConfig::default()).unwrap();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match **>\n  @type forward\n  heartbeat_type none\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n\
         <buffer>\n    flush_interval 100ms\n  </buffer>\n</match>\n",
        s.addr().port()
    );
    let spate = match &release {
        Some(bin) => Spate::start_bin(bin, "fleet", &conf, Stdio::null()),
        None => Spate::start("fleet", &conf, Stdio::null()),
    };
    let (addr, pid) = (spate.addr(), spate.pid());

    // Idle connections: what each costs once accepted.
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kb(pid);
    let idle: Vec<TcpStream> = (0..conns).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    assert_eq!(idle.len(), conns as usize);
    std::thread::sleep(Duration::from_millis(1000));
    let with_idle = rss_kb(pid);
    drop(idle);
    let idle_per_conn = (with_idle.saturating_sub(before) as f64 * 1024.0) / conns as f64;
    std::thread::sleep(Duration::from_millis(500));

    // The fleet: 20 events/s each, Message mode, an ack per event.
    let fleet_cfg = RunConfig {
        targets: vec![addr],
        connections: conns,
        mode: SendMode::Message,
        batch: 1,
        rate: Some(20.0 * conns as f64),
        ack: true,
        inflight: 1,
        duration: Some(Duration::from_secs(secs)),
        quiet: true,
        io: IoMode::Loop,
        ..RunConfig::default()
    };
    let churn_cfg = RunConfig {
        connections: churners,
        rate: Some(20.0 * churners as f64),
        churn: Some(churners as f64),
        tag: "spate.churn".into(),
        ..fleet_cfg.clone()
    };
    let fleet = std::thread::spawn(move || run_generator(fleet_cfg));
    let churn = std::thread::spawn(move || run_generator(churn_cfg));
    // Sample spate's RSS while the fleet runs.
    let t0 = Instant::now();
    let mut peak_active = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        peak_active = peak_active.max(rss_kb(pid));
    }
    let f = fleet.join().unwrap();
    let c = churn.join().unwrap();
    let active_per_conn = (peak_active.saturating_sub(before) as f64 * 1024.0) / (conns + churners) as f64;

    let acked = f.events_acked_total + c.events_acked_total;
    // Wait for each tag's acked events (spate flushes every 100 ms), then read them.
    let delivered = wait_loadgen_events(&s, f.events_acked_total);
    let churn_events = || s.report().by_tag.get("spate.churn").map_or(0, |t| t.events);
    let end = Instant::now() + Duration::from_secs(30);
    while churn_events() < c.events_acked_total && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let churn_delivered = churn_events();
    let (st, _, log) = spate.stop();
    println!(
        "fleet ({} binary): {conns} connections x 20 events/s for {secs}s + {churners} churning ({} reconnects): {} events acked ({:.0}/s), {} at the sink; ack p50 {} us, p99 {} us, max {} us; spate anonymous RSS: {before} kB before, {with_idle} kB with {conns} idle connections ({idle_per_conn:.0} B each), peak {peak_active} kB under load ({active_per_conn:.0} B per connection)",
        if release.is_some() { "release" } else { "debug" },
        c.churned,
        acked,
        f.achieved_rate + c.achieved_rate,
        delivered + churn_delivered,
        f.p50,
        f.p99,
        f.max,
    );
    assert!(st.success(), "clean exit:\n{log}");
    assert_eq!(f.ack_timeouts + c.ack_timeouts, 0, "no ack timed out");
    assert!(f.events_acked_total > 0 && c.churned > 0, "the fleet and the churners ran");
    assert!(
        delivered >= f.events_acked_total,
        "every acked event at the sink: {delivered} of {}",
        f.events_acked_total
    );
    assert!(churn_delivered >= c.events_acked_total, "every churner's acked event at the sink");
    assert!(idle_per_conn <= 8.0 * 1024.0, "an idle connection costs {idle_per_conn:.0} B (bound 8 KiB)");
    assert!(active_per_conn <= 64.0 * 1024.0, "an active connection costs {active_per_conn:.0} B (bound 64 KiB)");
}

#[test]
fn connections_over_max_connections_are_refused_logged_and_counted() {
    raise_fd_limit();
    let conf = "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n  max_connections 20\n</source>\n<match **>\n  @type null\n</match>\n";
    let spate = Spate::start("fleet-max", conf, Stdio::null());
    let addr = spate.addr();
    // 2 shards x 20 accepted; the rest closed at once.
    let conns: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for c in &conns {
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 1];
        // Refused: closed at once (EOF or reset); accepted: the read times out.
        match std::io::Read::read(&mut &*c, &mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    drop(conns);
    let (_, _, log) = spate.stop();
    println!("max_connections 20 per shard: {closed} of 200 connections refused");
    assert!(closed >= 150, "connections over 2 x 20 are closed: {closed}");
    assert!(log.contains("max_connections 20 reached"), "refusals are logged:\n{log}");
    assert!(log.contains("refused so far"), "and counted:\n{log}");
}
