//! Tests of `output/forward/mod.rs`.

use super::*;

#[test]
fn frames_are_whole_entries_up_to_the_size() {
    let mut data = Vec::new();
    for i in 0..100u32 {
        encode::entry(
            &mut data,
            spate_protocol::EventTime::new(i, 0),
            encode::TimeFormat::EventTime,
            &[0x81, 0xa1, b'k', 0xa1, b'v'],
        );
    }
    let one = data.len() / 100;
    let (mut pos, mut n_all, mut frames) = (0, 0, 0);
    while pos < data.len() {
        let (end, n) = frame_end(&data, pos, 10 * one + one / 2);
        assert!(n >= 1 && end - pos <= 10 * one + one / 2);
        n_all += n;
        frames += 1;
        pos = end;
    }
    assert_eq!((n_all, frames, pos), (100, 10, data.len()));
    // An entry larger than the frame size is a frame alone.
    assert_eq!(frame_end(&data, 0, 1), (one, 1));
}

#[test]
fn the_window_covers_the_round_trip_and_no_more() {
    // A far server (50 ms) that takes whatever is sent: the window grows until it
    // reaches the largest.
    let t0 = Instant::now();
    let mut w = Window::new();
    let mut now = t0;
    for _ in 0..200 {
        // One round trip: the whole window goes out and comes back acked.
        let sent = now;
        let then = w.delivered;
        now += Duration::from_millis(50);
        let frames = w.bytes / FRAME_BYTES;
        for _ in 0..frames {
            w.on_ack_at(sent, then, FRAME_BYTES, now);
        }
    }
    assert_eq!(w.bytes, MAX_WINDOW, "a far, fast server gets the largest window");
    // A slow server: 16 ms per frame, frames queue behind each other.
    let mut w = Window::new();
    let mut now = t0;
    let mut sent = std::collections::VecDeque::from([(now, 0u64), (now, 0u64)]);
    for _ in 0..200 {
        now += Duration::from_millis(16);
        let (s, d) = sent.pop_front().unwrap();
        w.on_ack_at(s, d, FRAME_BYTES, now);
        while sent.len() * FRAME_BYTES < w.bytes {
            sent.push_back((now, w.delivered));
        }
    }
    assert!(w.bytes <= MIN_WINDOW + FRAME_BYTES, "a slow server keeps the window small: {}", w.bytes);
}

fn server(name: &str, weight: u32, standby: bool) -> ServerConf {
    ServerConf {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: 1,
        weight,
        standby,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 1))],
        cred: None,
    }
}

#[test]
fn weights_and_standby() {
    let conf = ForwardConf {
        servers: vec![server("a", 60, false), server("b", 30, false), server("s", 60, true)],
        ..Default::default()
    };
    let s = ForwardSender::new("f".into(), conf);
    // gcd 30: a twice, b once, standby not used.
    let mut w = s.weights.borrow().clone();
    w.sort();
    assert_eq!(w, vec![0, 0, 1]);
    s.nodes.borrow_mut()[0].available = false;
    s.rebuild_weights();
    let mut w = s.weights.borrow().clone();
    w.sort();
    w.dedup();
    // As in fluentd, a detached node stays in the array (skipped when chosen) and
    // the standby joins it.
    assert_eq!(w, vec![0, 1, 2]);
}

#[test]
fn names_resolve_when_connecting_not_at_startup() {
    // A name that does not resolve is accepted at config time (fluentd resolves
    // lazily; Kubernetes headless-service names appear later).
    let ctx = crate::config::EvalContext::with_env("h", None, Default::default());
    let text = "<match **>\n  @type forward\n  <server>\n    host fluentd-0.fluentd-headless.default.svc.invalid\n  </server>\n  <server>\n    host localhost\n    port 24299\n  </server>\n  <server>\n    host 10.1.2.3\n  </server>\n</match>\n";
    let (root, _) = crate::config::parse_str_with_warnings(text, "t.conf", std::path::Path::new("."), &ctx).unwrap();
    let conf = conf::from_element(&root.elements[0]).unwrap();
    assert!(conf.servers[0].addrs.is_empty() && conf.servers[1].addrs.is_empty());
    assert_eq!(conf.servers[2].addrs, vec![SocketAddr::from(([10, 1, 2, 3], 24224))]);
    let (bad, local) = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let s = ForwardSender::new("f".into(), conf);
            let bad = s.addrs(0).await;
            let local = s.addrs(1).await;
            (bad.map_err(|e| e.to_string()), local.map_err(|e| e.to_string()))
        })
        .unwrap()
        .join()
        .unwrap();
    let e = bad.unwrap_err();
    assert!(e.starts_with("cannot resolve fluentd-0.fluentd-headless.default.svc.invalid: "), "{e}");
    let local = local.unwrap();
    assert!(!local.is_empty() && local.iter().all(|a| a.port() == 24299 && a.ip().is_loopback()), "{local:?}");
}
