//! Generator -> sink over loopback: exact counts in every mode, with and without acks,
//! at a fixed rate and at max rate; the stamp survives; latency histograms are filled
//! and ordered; missing acks and dropped connections are counted; the binary's JSON
//! report has the documented keys.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use spate_loadgen::generator::{run, IoMode, RunConfig};
use spate_loadgen::records::{RecordSource, SendMode};
use spate_loadgen::report::Latency;
use spate_loadgen::sink::{self, SinkConfig};
use spate_testkit::process::Proc;
use spate_testkit::{free_port, tempdir};

fn ordered(l: &Latency) {
    assert!(l.count > 0, "histogram is empty");
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, "{l:?}");
}

#[test]
fn exact_counts_every_mode_split_and_io_path() {
    // (events, connections, batch): splits that divide evenly and ones that do not (the
    // issue's case: message mode, batch 500 -> 64 frames per write, 2 connections, 20000).
    let splits = [(20_000u64, 2u32, 500u32), (5_003, 3, 100), (1_001, 4, 7)];
    for mode in [SendMode::Message, SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
        for (events, connections, batch) in splits {
            for (ack, io) in
                [(false, IoMode::Threads), (true, IoMode::Threads), (false, IoMode::Loop), (true, IoMode::Loop)]
            {
                let what =
                    format!("{mode:?} events={events} connections={connections} batch={batch} ack={ack} io={io:?}");
                let s = sink::start(SinkConfig::default()).unwrap();
                let cfg = RunConfig {
                    targets: vec![s.addr()],
                    connections,
                    mode,
                    batch,
                    ack,
                    io,
                    events: Some(events),
                    quiet: true,
                    ..Default::default()
                };
                let r = run(cfg).unwrap();
                assert_eq!(r.events_sent, events, "{what}");
                assert_eq!(r.errors, 0, "{what}");
                if ack {
                    assert_eq!(r.events_acked, events, "{what}");
                    ordered(&r.ack_latency_us);
                }
                assert!(s.wait_for(events, Duration::from_secs(10)), "{what}: sink got {}", s.events());
                std::thread::sleep(Duration::from_millis(30));
                let rep = s.stop();
                assert_eq!(rep.events_received, events, "{what}: exactly, no duplicates");
                assert_eq!(rep.by_tag.get("spate.loadgen").map(|t| t.events), Some(events));
                // The stamp survived the trip: every event gave an end-to-end sample.
                assert_eq!(rep.e2e_latency_us.count, events, "{what}");
                ordered(&rep.e2e_latency_us);
                // Fairness covers every connection and adds up.
                assert_eq!(r.fairness.connections, connections as u64, "{what}");
                assert!(r.fairness.min <= r.fairness.p50 && r.fairness.p50 <= r.fairness.max, "{what}");
            }
        }
    }
}

#[test]
fn fixed_rate_is_open_loop_and_reaches_the_offered_rate() {
    let s = sink::start(SinkConfig::default()).unwrap();
    let cfg = RunConfig {
        targets: vec![s.addr()],
        connections: 2,
        batch: 100,
        ack: true,
        rate: Some(20_000.0),
        duration: Some(Duration::from_secs(2)),
        quiet: true,
        ..Default::default()
    };
    let t = Instant::now();
    let r = run(cfg).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?} {r:?}", t.elapsed());
    assert_eq!(r.offered_rate, Some(20_000.0));
    let ratio = r.achieved_rate / 20_000.0;
    assert!((0.9..1.1).contains(&ratio), "achieved {} of 20000", r.achieved_rate);
    assert_eq!(r.events_acked, r.events_sent);
    ordered(&r.ack_latency_us);
    assert!(s.wait_for(r.events_sent, Duration::from_secs(5)));
}

#[test]
fn max_rate_with_r2_and_a_template_file() {
    let dir = tempdir::Dir::new("lg");
    let f = dir.path().join("recs.jsonl");
    std::fs::write(&f, "{\"a\": 1, \"msg\": \"one\"}\n{\"b\": [1, 2], \"msg\": \"two\"}\n").unwrap();
    for record in [RecordSource::R2, RecordSource::File(f.clone())] {
        let s = sink::start(SinkConfig::default()).unwrap();
        let cfg = RunConfig {
            targets: vec![s.addr()],
            connections: 2,
            batch: 50,
            ack: true,
            record,
            duration: Some(Duration::from_millis(500)),
            quiet: true,
            ..Default::default()
        };
        let r = run(cfg).unwrap();
        assert!(r.events_sent > 0 && r.events_acked == r.events_sent && r.errors == 0, "{r:?}");
        assert!(s.wait_for(r.events_sent_total, Duration::from_secs(5)));
    }
}

#[test]
fn missing_acks_are_errors_and_the_run_still_ends() {
    let s = sink::start(SinkConfig { no_ack: true, ..Default::default() }).unwrap();
    let cfg = RunConfig {
        targets: vec![s.addr()],
        batch: 10,
        ack: true,
        inflight: 2,
        ack_timeout: Duration::from_millis(300),
        duration: Some(Duration::from_millis(500)),
        quiet: true,
        ..Default::default()
    };
    let t = Instant::now();
    let r = run(cfg).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "bounded: {:?}", t.elapsed());
    assert_eq!(r.events_acked, 0);
    assert!(r.errors > 0 && r.ack_timeouts > 0, "{r:?}");
}

#[test]
fn dropped_connections_are_reconnected_and_counted() {
    // A server that closes every connection after reading a little.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(50) {
            let Ok(mut s) = s else { break };
            let mut b = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut b);
        }
    });
    let cfg = RunConfig {
        targets: vec![addr],
        batch: 10,
        ack: true,
        ack_timeout: Duration::from_millis(500),
        duration: Some(Duration::from_millis(800)),
        quiet: true,
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    assert!(r.reconnects > 0, "{r:?}");
    assert!(r.errors > 0);
}

#[test]
fn binary_writes_the_documented_json_report() {
    let dir = tempdir::Dir::new("lg-bin");
    let bin = env!("CARGO_BIN_EXE_spate-loadgen");
    let port = free_port();
    let sink_report = dir.path().join("sink.json");
    let mut sink = Proc::spawn(
        "spate-loadgen sink",
        std::process::Command::new(bin).args([
            "sink",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--expect",
            "3000",
            "--timeout",
            "20s",
            "--quiet",
            "--report",
            sink_report.to_str().unwrap(),
        ]),
    );
    sink.wait_listening(port, Duration::from_secs(20));
    let gen_report = dir.path().join("gen.json");
    let st = std::process::Command::new(bin)
        .args([
            "run",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--connections",
            "3",
            "--mode",
            "forward",
            "--batch",
            "100",
            "--ack",
            "--events",
            "3000",
            "--quiet",
            "--report",
            gen_report.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(sink.child_mut().wait().unwrap().success(), "sink saw all 3000 events");
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&gen_report).unwrap()).unwrap();
    for k in [
        "events_sent",
        "events_acked",
        "errors",
        "reconnects",
        "duration_s",
        "events_per_sec",
        "bytes_per_sec",
        "offered_rate",
        "ack_latency_us",
    ] {
        assert!(g.get(k).is_some(), "generator report lacks {k}: {g}");
    }
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(g["ack_latency_us"].get(k).is_some());
    }
    assert_eq!(g["events_sent"], 3000);
    assert_eq!(g["events_acked"], 3000);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sink_report).unwrap()).unwrap();
    assert_eq!(s["events_received"], 3000);
    assert_eq!(s["by_tag"]["spate.loadgen"]["events"], 3000);
    assert!(s["e2e_latency_us"]["p99"].as_u64().is_some());
}

#[test]
fn frames_with_size_are_counted_exactly_and_sampled_frames_check_it() {
    for mode in [SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
        let s = sink::start(SinkConfig { sample_every: 8, ..Default::default() }).unwrap();
        let events = 50_000;
        let cfg = RunConfig {
            targets: vec![s.addr()],
            connections: 3,
            mode,
            batch: 100,
            ack: true,
            size_option: true,
            events: Some(events),
            quiet: true,
            ..Default::default()
        };
        let r = run(cfg).unwrap();
        assert_eq!(r.events_acked, events, "{mode:?}");
        assert!(s.wait_for(events, Duration::from_secs(10)), "{mode:?}: sink got {}", s.events());
        std::thread::sleep(Duration::from_millis(30));
        let rep = s.stop();
        assert_eq!(rep.events_received, events, "{mode:?}");
        assert_eq!(rep.size_mismatches, 0, "{mode:?}");
        // The workers' CPU time is reported (what the sink's capacity is computed from).
        assert!(rep.worker_cpu_s > 0.0 && rep.worker_cpu_s < 60.0, "{mode:?}: {}", rep.worker_cpu_s);
        // About one frame in 8 is sampled (each connection's last frame is short).
        let n = rep.e2e_latency_us.count;
        assert!(n > events / 16 && n < events / 4, "{mode:?}: {n} samples");
    }
}

/// A PackedForward frame (str 32 entries, as out_forward sends) of `n` events that
/// claims `size`.
fn packed(n: u32, size: u64) -> Vec<u8> {
    use spate_protocol::encode::{self, EntriesType, OptionsOut, TimeFormat};
    use spate_protocol::EventTime;
    let mut rec = Vec::new();
    encode::raw::map_header(&mut rec, 1);
    encode::raw::str(&mut rec, b"message");
    encode::raw::str(&mut rec, &[b'x'; 200]);
    let mut entries = Vec::new();
    for i in 0..n {
        encode::entry(&mut entries, EventTime::new(i, 0), TimeFormat::EventTime, &rec);
    }
    let mut f = Vec::new();
    let opt = OptionsOut { size: Some(size), ..Default::default() };
    encode::packed_forward(&mut f, b"relay", &entries, EntriesType::Str32, &opt);
    f
}

#[test]
fn a_size_that_lies_is_reported_by_the_sampled_frames() {
    use std::io::Write;
    // 40 frames that claim 5 of their 3 events, about half of them walked (one in 2,
    // at random): each walked frame counts 3 and a mismatch, each other frame 5.
    let s = sink::start(SinkConfig { sample_every: 2, ..Default::default() }).unwrap();
    let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
    for _ in 0..40 {
        c.write_all(&packed(3, 5)).unwrap();
    }
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.report().frames_received < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(30));
    let rep = s.stop();
    assert_eq!(rep.frames_received, 40);
    let m = rep.size_mismatches;
    assert!((1..40).contains(&m), "{m} of 40 walked");
    assert_eq!(rep.events_received, 3 * m + 5 * (40 - m));
}

#[test]
fn multi_megabyte_frames_arriving_in_pieces_over_fresh_connections_are_counted() {
    use std::io::Write;
    // What a relay sends: one ~3 MB frame per connection (fluentd's out_forward
    // connects per chunk), written in pieces with pauses, so the sink sees the frame's
    // header first and reserves it whole. Sampled and trusted frames both.
    for sample_every in [1, 1000] {
        let s = sink::start(SinkConfig { sample_every, ..Default::default() }).unwrap();
        let n = 15_000u32;
        let frame = packed(n, u64::from(n));
        assert!(frame.len() > 3 << 20);
        for conn in 0..3 {
            let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
            for (i, piece) in frame.chunks(300_007).enumerate() {
                c.write_all(piece).unwrap();
                if i % 3 == conn {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // A second frame right behind the first on the last connection.
            if conn == 2 {
                c.write_all(&frame).unwrap();
            }
        }
        let want = 4 * u64::from(n);
        assert!(s.wait_for(want, Duration::from_secs(10)), "sample {sample_every}: sink got {}", s.events());
        std::thread::sleep(Duration::from_millis(30));
        let rep = s.stop();
        assert_eq!(rep.events_received, want, "sample {sample_every}");
        assert_eq!(rep.frames_received, 4);
        assert_eq!(rep.size_mismatches, 0);
    }
}

#[test]
fn an_invalid_entry_in_a_sized_frame_counts_as_a_mismatch() {
    use spate_protocol::encode::{self, EntriesType, OptionsOut};
    use std::io::Write;
    // size 2, two entries, one of them invalid (its time is a string): walked, it counts
    // 1 event; taken on trust it would have counted 2, so the counts are suspect.
    let mut entries = Vec::new();
    encode::entry(&mut entries, spate_protocol::EventTime::new(1, 0), encode::TimeFormat::EventTime, &[0x80]);
    entries.extend_from_slice(&[0x92, 0xa1, b'x', 0x80]);
    let mut f = Vec::new();
    encode::packed_forward(
        &mut f,
        b"t",
        &entries,
        EntriesType::Str32,
        &OptionsOut { size: Some(2), ..Default::default() },
    );
    let s = sink::start(SinkConfig { sample_every: 1, ..Default::default() }).unwrap();
    let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
    c.write_all(&f).unwrap();
    assert!(s.wait_for(1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(30));
    let rep = s.stop();
    assert_eq!((rep.events_received, rep.size_mismatches, rep.bad_frames), (1, 1, 0));
}

#[test]
fn large_frames_not_sampled_are_counted_by_size_unread_acked_and_a_missing_size_is_reported() {
    use spate_protocol::encode::{self, EntriesType, OptionsOut, TimeFormat};
    use std::io::{Read, Write};
    // A relay's chunks: ~1 MB frames, most of them discarded unread (their `size` counts
    // them); their `chunk` ids are acked all the same. The first one is walked (it shows
    // the sender sends `size`); the last lacks `size` and must be reported.
    let mut rec = Vec::new();
    encode::raw::map_header(&mut rec, 1);
    encode::raw::str(&mut rec, b"message");
    encode::raw::str(&mut rec, &[b'x'; 200]);
    let n = 5_000u32;
    let mut entries = Vec::new();
    for i in 0..n {
        encode::entry(&mut entries, spate_protocol::EventTime::new(i, 0), TimeFormat::EventTime, &rec);
    }
    let frame = |id: &str, size: Option<u64>| {
        let mut f = Vec::new();
        let opt = OptionsOut { chunk: Some(id.as_bytes()), size, ..Default::default() };
        encode::packed_forward(&mut f, b"relay", &entries, EntriesType::Str32, &opt);
        f
    };
    let s = sink::start(SinkConfig { sample_every: 1000, ..Default::default() }).unwrap();
    let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut acks = Vec::new();
    let mut wait_ack = |c: &mut std::net::TcpStream, id: &str| {
        while !acks.windows(id.len()).any(|w| w == id.as_bytes()) {
            let mut b = [0u8; 4096];
            let k = c.read(&mut b).unwrap();
            assert!(k > 0, "closed before the ack of {id}");
            acks.extend_from_slice(&b[..k]);
        }
    };
    for i in 0..8 {
        let id = format!("chunk-{i:02}");
        // In pieces, so the sink sees the header before the entries.
        for piece in frame(&id, Some(u64::from(n))).chunks(100_003) {
            c.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_ack(&mut c, &id);
    }
    c.write_all(&frame("chunk-nosize", None)).unwrap();
    wait_ack(&mut c, "chunk-nosize");
    std::thread::sleep(Duration::from_millis(30));
    let rep = s.stop();
    assert_eq!(rep.events_received, 8 * u64::from(n));
    assert_eq!((rep.frames_received, rep.acks_sent, rep.size_mismatches, rep.bad_frames), (9, 9, 1, 0));
    // Had the frame without `size` been walked, it would have counted its 5,000 events
    // and no mismatch. Every byte is counted, read or not.
    assert_eq!(
        rep.bytes_received,
        8 * frame("chunk-00", Some(u64::from(n))).len() as u64 + frame("chunk-nosize", None).len() as u64
    );
}
