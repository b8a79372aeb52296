//! `sink --record` then `run --replay`: the replayed traffic is the recorded traffic
//! (the same frames on as many connections, so the same events, tags, modes and
//! options), with the same timing (each frame within 5% of the recording's span of
//! where it was); `--retime` re-stamps event times and keeps everything else; `--speed`
//! and `--loop` repeat it faster. Also: `--records FILE` sends every line of the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use spate_loadgen::capture::{Reader, Recorded};
use spate_loadgen::generator::{run, run_replay, RunConfig};
use spate_loadgen::records::{RecordSource, SendMode};
use spate_loadgen::replay::ReplayConfig;
use spate_loadgen::sink::{self, SinkConfig};
use spate_protocol::{parse_frame, Frame, Limits, Mode};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lg-replay-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_all(p: &Path) -> Vec<Recorded> {
    let mut r = Reader::open(p).unwrap();
    let mut v = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        v.push(f);
    }
    v
}

/// Frames per connection, connections numbered by first appearance.
fn by_conn(frames: &[Recorded]) -> Vec<Vec<&Recorded>> {
    let mut order: HashMap<u64, usize> = HashMap::new();
    let mut out: Vec<Vec<&Recorded>> = Vec::new();
    for f in frames {
        let n = order.len();
        let i = *order.entry(f.conn).or_insert(n);
        if i == out.len() {
            out.push(Vec::new());
        }
        out[i].push(f);
    }
    out
}

/// (tag, mode, events) of every frame, in order.
fn describe(frames: &[&Recorded]) -> Vec<(Bytes, Mode, u32)> {
    frames
        .iter()
        .map(|f| match parse_frame(Bytes::from(f.frame.clone()), &Limits::default()).unwrap() {
            Frame::Events(b) => (b.tag, b.mode, b.count),
            Frame::Heartbeat => panic!("heartbeat recorded"),
        })
        .collect()
}

/// Records a few generators at fixed rates, in several modes and tags, for ~2 s.
fn record_traffic(file: &Path) -> (u64, u64) {
    let a = sink::start(SinkConfig { record: Some(file.to_path_buf()), ..Default::default() }).unwrap();
    let addr = a.addr();
    let gens = [
        ("t.packed", SendMode::Packed, 2, 20, 1000.0, 2000, true),
        ("t.message", SendMode::Message, 1, 1, 100.0, 200, false),
        ("t.gzip", SendMode::Compressed, 1, 50, 500.0, 1000, true),
        ("t.forward", SendMode::Forward, 1, 10, 250.0, 500, false),
    ];
    let hs: Vec<_> = gens
        .iter()
        .map(|&(tag, mode, connections, batch, rate, events, ack)| {
            std::thread::spawn(move || {
                let r = run(RunConfig {
                    targets: vec![addr],
                    tag: tag.into(),
                    mode,
                    connections,
                    batch,
                    rate: Some(rate),
                    rate_jitter: 0.0,
                    events: Some(events),
                    ack,
                    quiet: true,
                    ..Default::default()
                })
                .unwrap();
                assert_eq!((r.events_sent, r.errors), (events, 0), "{tag}");
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let total: u64 = gens.iter().map(|g| g.5).sum();
    let acked: u64 = gens.iter().filter(|g| g.6).map(|g| g.5).sum();
    assert!(a.wait_for(total, Duration::from_secs(10)));
    let rep = a.stop();
    assert_eq!(rep.frames_recorded, rep.frames_received);
    (total, acked)
}

#[test]
fn replay_sends_the_recorded_frames_with_the_recorded_timing() {
    let dir = tmpdir("timing");
    let (rec_a, rec_b) = (dir.join("a.rec"), dir.join("b.rec"));
    let (total, acked) = record_traffic(&rec_a);

    let b = sink::start(SinkConfig { record: Some(rec_b.clone()), ..Default::default() }).unwrap();
    let cfg = RunConfig { targets: vec![b.addr()], quiet: true, ..Default::default() };
    let rc = ReplayConfig { file: rec_a.clone(), speed: 1.0, looped: false, retime: false };
    let r = run_replay(cfg, rc).unwrap();
    assert_eq!((r.events_sent, r.events_acked, r.errors), (total, acked, 0));
    assert_eq!(r.connections, 5);
    assert!(b.wait_for(total, Duration::from_secs(10)));
    b.stop();

    let (fa, fb) = (read_all(&rec_a), read_all(&rec_b));
    let (ca, cb) = (by_conn(&fa), by_conn(&fb));
    assert_eq!(ca.len(), cb.len(), "one replay connection per recorded connection");
    // Connections are matched by their first frame's tag (they started in any order).
    let key = |c: &Vec<&Recorded>| describe(&c[..1])[0].0.clone();
    let mut tags_b: BTreeMap<Bytes, Vec<&Vec<&Recorded>>> = BTreeMap::new();
    for c in &cb {
        tags_b.entry(key(c)).or_default().push(c);
    }
    let t0a = fa.iter().map(|f| f.at_ns).min().unwrap();
    let t0b = fb.iter().map(|f| f.at_ns).min().unwrap();
    let span = fa.iter().map(|f| f.at_ns).max().unwrap() - t0a;
    let span_b = fb.iter().map(|f| f.at_ns).max().unwrap() - t0b;
    assert!(span > 1_500_000_000, "the recording spans {span} ns");
    let tolerance = span / 20;
    assert!(span.abs_diff(span_b) <= tolerance, "span {span} ns recorded, {span_b} ns replayed");
    for c in &ca {
        let candidates = tags_b.get(&key(c)).unwrap();
        // Same frames, byte for byte (so the same events, tags, modes and options).
        let m =
            candidates.iter().find(|d| d.len() == c.len() && d.iter().zip(c.iter()).all(|(x, y)| x.frame == y.frame));
        let Some(d) = m else { panic!("no replayed connection carries the frames of {:?}", key(c)) };
        assert_eq!(describe(c), describe(d));
        for (x, y) in c.iter().zip(d.iter()) {
            let (oa, ob) = (x.at_ns - t0a, y.at_ns - t0b);
            assert!(oa.abs_diff(ob) <= tolerance, "frame at {oa} ns recorded, {ob} ns replayed (span {span})");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retime_speed_and_loop() {
    let dir = tmpdir("retime");
    let (rec_a, rec_c) = (dir.join("a.rec"), dir.join("c.rec"));
    let (total, _) = record_traffic(&rec_a);
    let before = spate_protocol::EventTime::now();
    let c = sink::start(SinkConfig { record: Some(rec_c.clone()), ..Default::default() }).unwrap();
    let cfg = RunConfig { targets: vec![c.addr()], quiet: true, ..Default::default() };
    let rc = ReplayConfig { file: rec_a.clone(), speed: 4.0, looped: false, retime: true };
    let r = run_replay(cfg, rc).unwrap();
    assert_eq!((r.events_sent, r.errors), (total, 0));
    // Four times faster: about half a second instead of two.
    assert!(r.duration_s < 1.5, "{}", r.duration_s);
    assert!(c.wait_for(total, Duration::from_secs(10)));
    c.stop();
    let (fa, fc) = (read_all(&rec_a), read_all(&rec_c));
    let events = |fs: &[Recorded]| {
        let mut v: Vec<(Bytes, u8, Vec<u8>, u32)> = Vec::new();
        for f in fs {
            let Frame::Events(b) = parse_frame(Bytes::from(f.frame.clone()), &Limits::default()).unwrap() else {
                continue;
            };
            for e in b.events() {
                v.push((b.tag.clone(), b.mode as u8, e.record.as_bytes().to_vec(), e.time.sec));
            }
        }
        v.sort();
        v
    };
    let (ea, ec) = (events(&fa), events(&fc));
    assert_eq!(ea.len(), ec.len());
    for (x, y) in ea.iter().zip(&ec) {
        assert_eq!((&x.0, x.1, &x.2), (&y.0, y.1, &y.2), "same tag, mode and record");
        assert!(y.3 >= before.sec, "re-stamped: {} < {}", y.3, before.sec);
    }
    // --loop repeats the recording until --duration.
    let d = sink::start(SinkConfig::default()).unwrap();
    let cfg = RunConfig {
        targets: vec![d.addr()],
        duration: Some(Duration::from_millis(1500)),
        quiet: true,
        ..Default::default()
    };
    let rc = ReplayConfig { file: rec_a.clone(), speed: 4.0, looped: true, retime: false };
    let r = run_replay(cfg, rc).unwrap();
    assert!(r.events_sent > total, "{} events in 1.5 s at 4x", r.events_sent);
    assert_eq!(r.errors, 0);
    assert!(d.wait_for(r.events_sent_total, Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_file_lines_are_all_sent_in_their_sizes() {
    let dir = tmpdir("records");
    let lines = dir.join("mine.jsonl");
    let text: String =
        (0..5).map(|i| format!("{{\"id\": {i}, \"pad\": \"{}\"}}\n", "x".repeat(10 + 300 * i))).collect();
    std::fs::write(&lines, text).unwrap();
    let rec = dir.join("s.rec");
    let s = sink::start(SinkConfig { record: Some(rec.clone()), ..Default::default() }).unwrap();
    let r = run(RunConfig {
        targets: vec![s.addr()],
        batch: 2,
        events: Some(20),
        record: RecordSource::File(lines.clone()),
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.events_sent, 20);
    assert!(s.wait_for(20, Duration::from_secs(10)));
    s.stop();
    let mut ids = BTreeMap::new();
    for f in read_all(&rec) {
        let Frame::Events(b) = parse_frame(Bytes::from(f.frame), &Limits::default()).unwrap() else { continue };
        for e in b.events() {
            let id = e.record.get(b"id").and_then(|v| v.as_i64()).unwrap();
            let pad = e.record.get(b"pad").and_then(|v| v.as_str()).unwrap().len();
            *ids.entry((id, pad)).or_insert(0) += 1;
        }
    }
    let want: BTreeMap<(i64, usize), i32> = (0..5).map(|i| ((i as i64, 10 + 300 * i), 4)).collect();
    assert_eq!(ids, want, "every line, in its own size, cycled evenly");
    let _ = std::fs::remove_dir_all(&dir);
}
