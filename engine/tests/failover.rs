//! out_forward's server selection with heartbeats, as fluentd does it: a primary that
//! stops answering heartbeats is detached (hard_timeout), the standby takes over, and
//! the primary is used again once it has answered `recover_wait` worth of heartbeats.
//! No acked event is lost on the way.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::EventTime;

fn send_acked(addr: SocketAddr, k0: u64, n: u64) {
    let mut c = Client::connect(addr);
    for (i, k) in (k0..k0 + n).step_by(100).enumerate() {
        let id = format!("fo-{k0}-{i}");
        let f = kv_frame(b"failover", k..(k + 100).min(k0 + n), EventTime::new(T0, 0), &id);
        c.send(&f).unwrap();
        assert_eq!(c.read_ack().unwrap(), id.as_bytes());
    }
}

/// Waits until `sink` holds every k in `k0..k0+n`; returns whether it did.
fn arrived(sink: &FixedSink, k0: u64, n: u64, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if (k0..k0 + n).all(|k| sink.seen.lock().unwrap().contains_key(&k)) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn standby_takes_over_while_the_primary_is_detached() {
    let (pp, sp) = (free_port(), free_port());
    let mut primary = FixedSink::new(pp);
    let mut standby = FixedSink::new(sp);
    primary.start();
    standby.start();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match **>\n  @type forward\n  require_ack_response true\n  heartbeat_interval 200ms\n  hard_timeout 1s\n  recover_wait 1s\n  connect_timeout 1s\n\
         <server>\n    name primary\n    host 127.0.0.1\n    port {pp}\n  </server>\n\
         <server>\n    name backup\n    host 127.0.0.1\n    port {sp}\n    standby true\n  </server>\n\
         <buffer>\n    flush_interval 50ms\n    retry_wait 100ms\n    retry_max_interval 200ms\n    retry_forever true\n  </buffer>\n</match>\n"
    );
    let spate = Spate::start("failover", &conf, Stdio::null());

    send_acked(spate.addr(), 0, 1000);
    assert!(arrived(&primary, 0, 1000, Duration::from_secs(10)), "all at the primary first");
    assert_eq!(standby.total(), 0, "the standby is not used while the primary is up");

    primary.stop();
    // Heartbeats fail; after hard_timeout (1 s) the primary is detached.
    std::thread::sleep(Duration::from_millis(1800));
    send_acked(spate.addr(), 1000, 1000);
    assert!(arrived(&standby, 1000, 1000, Duration::from_secs(10)), "the standby took over");

    primary.start();
    // recover_wait 1 s of good heartbeats at 200 ms (with a margin for a loaded machine:
    // a batch sent before the primary is back would go to the standby for good).
    std::thread::sleep(Duration::from_millis(3500));
    let before = standby.total();
    send_acked(spate.addr(), 2000, 1000);
    assert!(arrived(&primary, 2000, 1000, Duration::from_secs(10)), "the primary is used again");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(standby.total(), before, "the standby left the rotation");
    let (_, _, log) = spate.stop();
    for line in ["detached forwarding server 'primary'", "using standby node", "recovered forwarding server 'primary'"]
    {
        assert!(log.contains(line), "log says {line:?}:\n{log}");
    }
    primary.stop();
    standby.stop();
}

#[test]
fn udp_heartbeats_keep_a_live_spate_attached_and_detach_a_dead_one() {
    let (pp, sp) = (free_port(), free_port());
    let mut downstream = FixedSink::new(pp);
    let mut standby = FixedSink::new(sp);
    downstream.start();
    standby.start();
    // B: a spate in_forward (which answers UDP heartbeats) relaying to `downstream`.
    let b_conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match **>\n  @type forward\n  require_ack_response true\n  heartbeat_type none\n  <server>\n    host 127.0.0.1\n    port {pp}\n  </server>\n  <buffer>\n    flush_interval 50ms\n  </buffer>\n</match>\n"
    );
    let b = Spate::start("udp-hb-b", &b_conf, Stdio::null());
    // C: the standby, also a spate (UDP heartbeats need an in_forward to answer them).
    let c = Spate::start("udp-hb-c", &b_conf.replace(&format!("port {pp}\n"), &format!("port {sp}\n")), Stdio::null());
    let a_conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
         <match **>\n  @type forward\n  require_ack_response true\n  heartbeat_type udp\n  heartbeat_interval 200ms\n  hard_timeout 2s\n  connect_timeout 1s\n\
         <server>\n    name b\n    host 127.0.0.1\n    port {}\n  </server>\n\
         <server>\n    name backup\n    host 127.0.0.1\n    port {}\n    standby true\n  </server>\n\
         <buffer>\n    flush_interval 50ms\n    retry_wait 100ms\n    retry_max_interval 200ms\n    retry_forever true\n  </buffer>\n</match>\n",
        b.port, c.port
    );
    let a = Spate::start("udp-hb-a", &a_conf, Stdio::null());
    // Several heartbeat intervals: B answers, so it stays attached.
    std::thread::sleep(Duration::from_millis(1500));
    send_acked(a.addr(), 0, 500);
    assert!(arrived(&downstream, 0, 500, Duration::from_secs(10)), "A -> B -> downstream");
    assert_eq!(standby.total(), 0, "B answered its UDP heartbeats: the standby stayed out");
    b.stop();
    std::thread::sleep(Duration::from_millis(3000));
    send_acked(a.addr(), 500, 500);
    let ok = arrived(&standby, 500, 500, Duration::from_secs(10));
    let (_, _, log) = a.stop();
    assert!(ok, "B stopped answering: detached, standby used; A's log:\n{log}");
    assert!(log.contains("detached forwarding server 'b'"), "{log}");
    assert!(!log.contains("detached forwarding server 'backup'"), "the standby answers its heartbeats: {log}");
    c.stop();
    downstream.stop();
    standby.stop();
}
