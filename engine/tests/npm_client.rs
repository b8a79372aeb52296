//! A real client nobody here wrote: npm's `fluent-logger` (Node.js) in each of its
//! modes (Message, PackedForward, CompressedPackedForward), with acks and nanosecond
//! EventTime, through spate to a recording sink, checked event by event.
//!
//! Needs `node` and the package: `.ci/run` installs it with npm and sets
//! `SPATE_NODE_MODULES` (and `SPATE_REQUIRE_NODE=1`, which turns a skip into a failure).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn node_modules() -> Option<std::path::PathBuf> {
    let why = match std::env::var_os("SPATE_NODE_MODULES").map(std::path::PathBuf::from) {
        Some(p) if p.join("fluent-logger").is_dir() => {
            if Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
                return Some(p);
            }
            "no `node` on PATH".to_string()
        }
        Some(p) => format!("{} has no fluent-logger", p.display()),
        None => "SPATE_NODE_MODULES is not set (run `npm install --prefix DIR fluent-logger` and point it at DIR/node_modules)".into(),
    };
    skip_unless_required("SPATE_REQUIRE_NODE", &format!("npm fluent-logger unavailable: {why}"));
    None
}

const SCRIPT: &str = r#"
const logger = require(process.env.NODE_MODULES + '/fluent-logger');
const [port, mode, n] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
const sender = logger.createFluentSender('npm', {
  host: '127.0.0.1', port, eventMode: mode, requireAckResponse: true,
  ackResponseTimeout: 10000, flushInterval: 20, reconnectInterval: 100,
});
let acked = 0;
sender.on('error', (e) => { console.error('error', e); process.exit(1); });
for (let i = 0; i < n; i++) {
  const t = new logger.EventTime(1700000000 + i, i * 1000 + 7);
  sender.emit(mode, { k: i, msg: 'npm ' + mode + ' ' + i, nested: { ok: true, list: [1, 'two'] } }, t, (err) => {
    if (err) { console.error('emit failed', err); process.exit(1); }
    if (++acked === n) { console.log('acked ' + acked); sender.end(); }
  });
}
"#;

#[test]
fn npm_fluent_logger_every_mode_with_acks() {
    let Some(modules) = node_modules() else { return };
    let sink = Sink::start();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match **>\n  @type forward\n  require_ack_response true\n  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n",
        sink.addr.port()
    );
    let spate = Spate::start("npm", &conf, Stdio::null());
    let script = spate.dir.path().join("send.js");
    std::fs::write(&script, SCRIPT).unwrap();
    let n = 300u32;
    let modes = ["Message", "PackedForward", "CompressedPackedForward"];
    for mode in modes {
        let out = Command::new("node")
            .arg(&script)
            .args([spate.port.to_string(), mode.to_string(), n.to_string()])
            .env("NODE_MODULES", &modules)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mode}: node failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("acked {n}")), "{mode}: every event acked: {stdout}");
    }
    let got = sink.wait_for(3 * n as usize, Duration::from_secs(20));
    let (_, _, log) = spate.stop();
    assert_eq!(got.len(), 3 * n as usize, "every event reached the sink exactly once; spate log:\n{log}");
    for mode in modes {
        let mut ks: Vec<u32> = Vec::new();
        let tag = format!("npm.{mode}");
        for e in got.iter().filter(|e| e.tag == tag.as_bytes()) {
            let r = spate_protocol::RecordRef::new(&e.record).expect("a map record");
            let k = r.get(b"k").and_then(|v| v.as_i64()).expect("k") as u32;
            assert_eq!(r.get(b"msg").and_then(|v| v.as_str()), Some(format!("npm {mode} {k}").as_bytes()));
            let mut json = Vec::new();
            r.write_json(&mut json);
            assert!(
                String::from_utf8_lossy(&json).contains(r#""nested":{"ok":true,"list":[1,"two"]}"#),
                "nested values kept: {}",
                String::from_utf8_lossy(&json)
            );
            assert_eq!((e.time.sec, e.time.nsec), (1_700_000_000 + k, k * 1000 + 7), "nanosecond EventTime kept");
            ks.push(k);
        }
        ks.sort();
        assert_eq!(ks, (0..n).collect::<Vec<_>>(), "{mode}: all {n} events, once each");
    }
}
