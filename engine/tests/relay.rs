//! spate-loadgen -> spate -> sink with exact counts in every mode; and real peers on
//! either side when installed: fluentd's and fluent-bit's out_forward sending into
//! spate (generator -> peer -> spate -> sink). Peers are found via `$FLUENTD` /
//! `$FLUENT_BIT` or PATH; otherwise those tests print why they were skipped.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use spate_loadgen::generator::{run, RunConfig};
use spate_loadgen::records::SendMode;
use spate_loadgen::sink::{self, SinkConfig};

/// in_forward -> out_forward (acks on both hops) -> the sink on `sink_port`.
fn relay_conf(sink_port: u16) -> String {
    relay_conf_with(sink_port, "  require_ack_response true\n", "")
}

/// in_forward -> out_forward with `params` (lines of the `<match>`) and `buffer` (lines of
/// its `<buffer>`, after `flush_interval 50ms`) -> the sink on `sink_port`.
fn relay_conf_with(sink_port: u16, params: &str, buffer: &str) -> String {
    format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match **>\n  @type forward\n{params}  <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n  <buffer>\n    flush_interval 50ms\n{buffer}  </buffer>\n</match>\n")
}

#[test]
fn loadgen_through_spate_exact_counts_every_mode() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start("lg-relay", &relay_conf(s.addr().port()), Stdio::null());
    let mut total = 0;
    for mode in [SendMode::Message, SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
        for ack in [true, false] {
            let batch = if mode == SendMode::Message { 20 } else { 500 };
            let cfg = RunConfig {
                targets: vec![spate.addr()],
                connections: 4,
                mode,
                batch,
                ack,
                events: Some(20_000),
                quiet: true,
                ..Default::default()
            };
            let r = run(cfg).unwrap();
            assert_eq!(r.events_sent, 20_000, "{mode:?} ack={ack}");
            assert_eq!(r.errors, 0);
            if ack {
                assert_eq!(r.events_acked, 20_000, "{mode:?}");
            }
            total += 20_000;
            assert_eq!(wait_loadgen_events(&s, total), total, "{mode:?} ack={ack}: exactly once at the sink");
        }
    }
    assert_eq!(wait_e2e_samples(&s, total), total, "every record kept its send stamp through spate");
    let (st, _, _) = spate.stop();
    assert!(st.success());
}

/// generator -> peer (its out_forward, acks on) -> spate -> sink.
fn peer_into_spate(name: &str, cmd: PathBuf, conf_name: &str, conf: impl Fn(u16, u16) -> String) {
    let s = sink::start(SinkConfig::default()).unwrap();
    let spate = Spate::start(&format!("peer-{name}"), &relay_conf(s.addr().port()), Stdio::null());
    let p = free_port();
    let dir = tempdir::Dir::new(name);
    let cf = dir.path().join(conf_name);
    std::fs::write(&cf, conf(p, spate.port)).unwrap();
    let peer = Proc::start_peer(name, &cmd, &cf, p);
    let cfg = RunConfig {
        targets: vec![format!("127.0.0.1:{p}").parse().unwrap()],
        connections: 2,
        batch: 100,
        ack: true,
        events: Some(5000),
        quiet: true,
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert_eq!((r.events_acked, r.errors), (5000, 0), "{name} accepted everything");
    assert_eq!(wait_loadgen_events(&s, 5000), 5000, "{name} -> spate -> sink");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(loadgen_events(&s), 5000, "no duplicates");
    drop(peer);
    spate.stop();
}

#[test]
fn ruby_fluentd_out_forward_into_spate() {
    let Some(cmd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    peer_into_spate("fluentd", cmd, "fluent.conf", |p, sp| {
        format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {p}\n</source>\n<match spate.**>\n  @type forward\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {sp}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n")
    });
}

#[test]
fn fluent_bit_out_forward_into_spate() {
    let Some(cmd) = peer_or_skip("FLUENT_BIT", "fluent-bit") else { return };
    peer_into_spate("fluent-bit", cmd, "fluent-bit.conf", |p, sp| {
        format!("[SERVICE]\n    Flush 1\n    Log_Level warn\n\n[INPUT]\n    Name forward\n    Listen 127.0.0.1\n    Port {p}\n\n[OUTPUT]\n    Name forward\n    Match *\n    Host 127.0.0.1\n    Port {sp}\n    Require_ack_response true\n")
    });
}

/// Frames of 1000 events relayed by out_forward without acks (a chunk is one frame):
/// every event arrives once and intact, in every mode, also when the entries are
/// rewritten on the way out (`time_as_integer`, `compress gzip`).
#[test]
fn large_frames_relayed_without_acks_arrive_intact() {
    for extra in ["", "  time_as_integer true\n", "  compress gzip\n"] {
        let s = sink::start(SinkConfig::default()).unwrap();
        let conf = relay_conf_with(s.addr().port(), extra, "    chunk_limit_size 1m\n");
        let spate = Spate::start("lg-relay-noack", &conf, Stdio::null());
        let mut total = 0;
        for mode in [SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
            let cfg = RunConfig {
                targets: vec![spate.addr()],
                connections: 2,
                mode,
                batch: 1000,
                ack: true,
                events: Some(30_000),
                quiet: true,
                ..Default::default()
            };
            let r = run(cfg).unwrap();
            assert_eq!((r.events_acked, r.errors), (30_000, 0), "{mode:?} {extra}");
            total += 30_000;
            assert_eq!(wait_loadgen_events(&s, total), total, "{mode:?} {extra}: exactly once at the sink");
        }
        assert_eq!(wait_e2e_samples(&s, total), total, "{extra}: every record kept its send stamp");
        let (st, _, _) = spate.stop();
        assert!(st.success());
    }
}
