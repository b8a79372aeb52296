//! Generator -> a real peer (Ruby fluentd, fluent-bit) -> sink with exact counts, when
//! the peer is installed (`$FLUENTD` / `$FLUENT_BIT` or on PATH); otherwise the test
//! prints why it was skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use spate_loadgen::generator::{run, RunConfig};
use spate_loadgen::records::SendMode;
use spate_loadgen::sink::{self, SinkConfig};
use spate_testkit::forward::loadgen_events as ours;
use spate_testkit::process::{peer_or_skip, Proc};
use spate_testkit::{free_port, tempdir};

fn through(name: &str, cmd: PathBuf, conf_name: &str, conf: impl Fn(u16, u16) -> String) {
    let s = sink::start(SinkConfig::default()).unwrap();
    let p = free_port();
    let dir = tempdir::Dir::new(&format!("lg-peer-{name}"));
    let cf = dir.path().join(conf_name);
    std::fs::write(&cf, conf(p, s.addr().port())).unwrap();
    // Waits for the port, then for fluentd's worker to finish booting.
    let k = Proc::start_peer(name, &cmd, &cf, p);
    // `ours` counts our tag only: fluentd also routes its own log events (fluent.*) to `**`.
    for mode in [SendMode::Message, SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
        let before = ours(&s);
        let batch = if mode == SendMode::Message { 10 } else { 100 };
        let cfg = RunConfig {
            targets: vec![format!("127.0.0.1:{p}").parse().unwrap()],
            connections: 2,
            mode,
            batch,
            ack: true,
            events: Some(2000),
            quiet: true,
            ..Default::default()
        };
        let r = run(cfg).unwrap();
        assert_eq!((r.events_sent, r.events_acked, r.errors), (2000, 2000, 0), "{name} {mode:?}");
        let end = Instant::now() + Duration::from_secs(30);
        while ours(&s) < before + 2000 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(ours(&s), before + 2000, "{name} {mode:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ours(&s), 8000, "{name}: exact count, no duplicates");
    drop(k);
}

#[test]
fn generator_through_ruby_fluentd_to_sink() {
    let Some(cmd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    through("fluentd", cmd, "fluent.conf", |p, sp| {
        format!("<source>\n  @type forward\n  bind 127.0.0.1\n  port {p}\n</source>\n<match **>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {sp}\n  </server>\n  <buffer>\n    flush_interval 0.1\n  </buffer>\n</match>\n")
    });
}

#[test]
fn generator_through_fluent_bit_to_sink() {
    let Some(cmd) = peer_or_skip("FLUENT_BIT", "fluent-bit") else { return };
    through("fluent-bit", cmd, "fluent-bit.conf", |p, sp| {
        format!("[SERVICE]\n    Flush 1\n    Log_Level warn\n\n[INPUT]\n    Name forward\n    Listen 127.0.0.1\n    Port {p}\n\n[OUTPUT]\n    Name forward\n    Match *\n    Host 127.0.0.1\n    Port {sp}\n")
    });
}
