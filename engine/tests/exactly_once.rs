//! Exactly once between spate hops: acked clients -> spate A -> spate B -> a sink,
//! every hop with acks and a file buffer, both spates with in_forward's `deduplicate`.
//! Under load, A and B are killed with SIGKILL in turn and restarted on the same port
//! and directories. At the end every event a client saw acked must be at the sink, and
//! none twice.
//!
//! The last hop (B -> sink) is not a spate hop: B resends what the sink received but B
//! did not see acked, as any at-least-once sender does. The sink here checks ack ids as
//! a deduplicating receiver would (`FixedSink::dedup_ids`) and reports those resends
//! separately; an event that reaches the sink in two *different* frames was stored
//! twice by a spate hop, and is what "duplicates" counts (must be 0).
//!
//! Scaled for CI (12 s, four kills); `SPATE_EXACTLY_ONCE_SECS` and
//! `SPATE_EXACTLY_ONCE_KILLS` make it longer. With `SPATE_RELEASE_BIN` set, the
//! release binary is the one killed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A spate hop: in_forward with `deduplicate` on `port`, out_forward with acks and a
/// file buffer to `next`.
fn hop(port: u16, next: u16, dir: &std::path::Path) -> String {
    format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n  deduplicate true\n  deduplicate_path {ids}\n</source>\n\
         <match **>\n  @type forward\n  require_ack_response true\n  ack_response_timeout 5s\n  heartbeat_type none\n  keepalive true\n\
         <server>\n    host 127.0.0.1\n    port {next}\n  </server>\n\
         <buffer>\n    @type file\n    path {buf}\n    flush_interval 100ms\n    retry_wait 100ms\n    retry_max_interval 500ms\n    retry_forever true\n  </buffer>\n</match>\n",
        ids = dir.join("ids").display(),
        buf = dir.join("buffer").display()
    )
}

#[test]
fn spate_to_spate_under_kill_9_of_each_hop_delivers_every_acked_event_once() {
    let secs = env_u64("SPATE_EXACTLY_ONCE_SECS", 12);
    let kills = env_u64("SPATE_EXACTLY_ONCE_KILLS", 4);
    let dir = tempdir::Dir::new("exactly-once");
    let (pa, pb, ps) = (free_port(), free_port(), free_port());
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(da.join("fluent.conf"), hop(pa, pb, &da)).unwrap();
    std::fs::write(db.join("fluent.conf"), hop(pb, ps, &db)).unwrap();

    let mut sink = FixedSink::new(ps);
    sink.dedup_ids.store(true, Ordering::SeqCst);
    sink.start();
    let mut b = Restartable::new(db.join("fluent.conf"), pb, db.join("spate.log"));
    b.start();
    let mut a = Restartable::new(da.join("fluent.conf"), pa, da.join("spate.log"));
    a.start();

    let stop = Arc::new(AtomicBool::new(false));
    let acked_n = Arc::new(AtomicU64::new(0));
    let addr = loopback(pa);
    let clients: Vec<_> = (0..2u64)
        .map(|t| {
            let (stop, n) = (stop.clone(), acked_n.clone());
            std::thread::spawn(move || at_least_once_client(addr, t * 1_000_000_000, 100, stop, n))
        })
        .collect();

    // Kills spread over the run, A and B in turn, each restarted 200 ms later.
    let t0 = Instant::now();
    let every = Duration::from_secs(secs) / (kills as u32 + 1);
    for i in 0..kills {
        std::thread::sleep(every.saturating_sub(Duration::from_millis(200)));
        let before = acked_n.load(Ordering::Relaxed);
        let hop = if i % 2 == 0 { &mut a } else { &mut b };
        hop.kill9();
        std::thread::sleep(Duration::from_millis(200));
        hop.start();
        assert!(before > 0, "load was flowing before kill {i}");
    }
    if let Some(rest) = Duration::from_secs(secs).checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::SeqCst);
    let mut acked: Vec<u64> = Vec::new();
    for c in clients {
        acked.extend(c.join().unwrap());
    }
    let last = Instant::now();

    let deadline = last + Duration::from_secs(90);
    let lost = loop {
        let distinct = sink.seen.lock().unwrap().len();
        let timed_out = Instant::now() > deadline;
        if distinct >= acked.len() || timed_out {
            let g = sink.seen.lock().unwrap();
            let lost = acked.iter().filter(|k| !g.contains_key(k)).count();
            drop(g);
            if lost == 0 || timed_out {
                break lost;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let deliver_secs = last.elapsed().as_secs_f64();
    // Give late resends a moment to show up as duplicates, then stop both hops.
    std::thread::sleep(Duration::from_millis(500));
    a.term();
    b.term();
    sink.stop();
    let g = sink.seen.lock().unwrap();
    let delivered = g.len();
    let dups: u64 = g.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    drop(g);
    let (repeat_frames, repeat_events) = *sink.repeats.lock().unwrap();
    let (la, lb) = (a.log(), b.log());
    let resent = |log: &str| -> (u64, u64) {
        // "<id>: F frames (E events) from ... were resends of frames already stored"
        log.lines().filter(|l| l.contains("were resends of frames already stored")).fold((0, 0), |(f, e), l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "frames").unwrap_or(0);
            let n = |i: usize| {
                words.get(i).map_or(0, |w| w.trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0))
            };
            (f + n(at.saturating_sub(1)), e + n(at + 1))
        })
    };
    let (ra, rb) = (resent(&la), resent(&lb));
    // Kills that landed between a commit's events and its ids (rare: microseconds per
    // commit), whose segments the restart cut.
    let cut =
        |log: &str| log.lines().filter(|l| l.contains("written by a group commit that a crash interrupted")).count();
    println!(
        "spate -> spate, kill -9 x{kills} (A and B in turn) in {secs}s: {} events acked, {delivered} delivered, {lost} lost, {dups} duplicates; \
         resends acked without storing: A {} frames ({} events), B {} frames ({} events); last hop (B -> sink) resent {repeat_frames} frames ({repeat_events} events), dropped by the sink's id check; \
         chunk files cut back to before an interrupted commit: A {}, B {}; all delivered {deliver_secs:.2}s after the load stopped",
        acked.len(),
        ra.0,
        ra.1,
        rb.0,
        rb.1,
        cut(&la),
        cut(&lb)
    );
    if let Some(p) = std::env::var_os("SPATE_TEST_TRACE") {
        let _ = std::fs::write(&p, format!("== A\n{la}\n== B\n{lb}"));
    }
    assert!(acked.len() > 10_000, "enough load to mean something: {}", acked.len());
    assert_eq!(lost, 0, "acked events lost; A log:\n{la}\nB log:\n{lb}");
    assert_eq!(dups, 0, "events stored twice by a spate hop; A log:\n{la}\nB log:\n{lb}");
    assert!(
        ra.0 + rb.0 > 0,
        "the kills made senders resend frames that were already stored; A log:\n{la}\nB log:\n{lb}"
    );
    assert!(lb.contains("acked frame ids loaded"), "B read its ids back after its restart:\n{lb}");
}
