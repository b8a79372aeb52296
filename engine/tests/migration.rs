//! Replacing Ruby fluentd with spate on the same config must not strand the events
//! fluentd acked and still holds in its file buffer: fluentd (real, when installed)
//! buffers acked events for a downstream that is down and is stopped; spate starts on
//! the same config, takes the chunks over, and delivers them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use spate_protocol::EventTime;

#[test]
fn spate_delivers_what_fluentd_left_in_its_file_buffer() {
    let Some(fluentd) = peer_or_skip("FLUENTD", "fluentd") else { return };
    let dir = tempdir::Dir::new("migration");
    let (port, sink_port) = (free_port(), free_port());
    let buf = dir.path().join("buffer");
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match app.**>\n  @type forward\n  require_ack_response true\n\
         <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n\
         <buffer>\n    @type file\n    path {}\n    flush_interval 1h\n    retry_wait 100ms\n  </buffer>\n</match>\n",
        buf.display()
    );
    let cf = dir.path().join("fluent.conf");
    std::fs::write(&cf, &conf).unwrap();
    let peer = Proc::start_peer("fluentd", &fluentd, &cf, port);
    let mut c = Client::connect(loopback(port));
    for (i, tag) in ["app.a", "app.b", "app.a"].iter().enumerate() {
        let id = format!("m{i}");
        let ks = (i as u64 * 100)..(i as u64 + 1) * 100;
        let f = kv_frame(tag.as_bytes(), ks, EventTime::new(T0, 9), &id);
        c.send(&f).unwrap();
        assert_eq!(c.read_ack().unwrap(), id.as_bytes(), "fluentd acked it");
    }
    drop(c);
    // SIGTERM: a file buffer keeps its chunks (flush_at_shutdown false).
    drop(peer);
    let left: Vec<_> = glob::glob(&format!("{}/buffer.*.log", buf.display())).unwrap().flatten().collect();
    assert!(!left.is_empty(), "fluentd left its chunks on disk");

    let mut sink = FixedSink::new(sink_port);
    sink.start();
    let spate =
        Spate::start("migration-spate", &conf.replace(&format!("port {port}\n"), "port {PORT}\n"), Stdio::null());
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while sink.seen.lock().unwrap().len() < 300 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, _, log) = spate.stop();
    sink.stop();
    let seen = sink.seen.lock().unwrap();
    assert!((0..300).all(|k| seen.get(&k) == Some(&1)), "all 300 events fluentd acked arrived once; spate log:\n{log}");
    assert!(log.contains("took over"), "{log}");
    let rest: Vec<_> = glob::glob(&format!("{}/buffer.*", buf.display())).unwrap().flatten().collect();
    assert!(rest.is_empty(), "fluentd's chunk files were taken over: {rest:?}");
}
