//! Criterion: the protocol crate.
//!
//! - `decode_bytes` / `decode_events`: decode every frame of a read buffer and touch
//!   every event (time and one field), per mode (Message, Forward, PackedForward,
//!   CompressedPackedForward gzip) and record shape (R1, R2 of bench/README.md), 1000
//!   events per frame (Message mode: 1000 one-event frames in the buffer). The same
//!   runs reported as bytes/s (wire bytes) and as events/s. The read buffer is filled
//!   outside the timed part, as a socket read would.
//! - `decode_only`: the same without iterating events (the decoder's own validation).
//! - `encode`: PackedForward and Message frames, entries, gzip CompressedPackedForward.
//! - `record_lookup`: `RecordRef::get(b"message")` in place, and JSON rendering.
//!
//! Run: `cargo bench -p spate-bench --bench protocol -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use spate_bench::{frame, packed_entries, record, Shape, Wire};
use spate_protocol::encode::{self, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{EventTime, Frame, FrameDecoder, Limits, RecordRef};

const N: u64 = 1000;
/// Message, Forward, PackedForward (str32 entries) and CompressedPackedForward (gzip).
const MODES: [Wire; 4] = [Wire::Message, Wire::Forward, Wire::PackedStr, Wire::Gzip];

/// Decodes every frame in `buf` and touches every event (time and the `status` field).
/// Returns a checksum and the number of events.
fn decode_iterate(buf: &mut BytesMut) -> (u64, u64) {
    let mut dec = FrameDecoder::new(Limits::default());
    let (mut acc, mut n) = (0u64, 0u64);
    while let Some(f) = dec.decode(buf).expect("valid frames") {
        if let Frame::Events(b) = f {
            for ev in b.events() {
                n += 1;
                acc = acc.wrapping_add(ev.time.nsec as u64);
                acc = acc.wrapping_add(ev.record.get(b"status").and_then(|v| v.as_i64()).unwrap_or(0) as u64);
            }
        }
    }
    (acc, n)
}

/// Decodes every frame in `buf` (which validates every entry) without iterating.
fn decode_only(buf: &mut BytesMut) -> u64 {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut n = 0u64;
    while let Some(f) = dec.decode(buf).expect("valid frames") {
        if let Frame::Events(b) = f {
            n += b.count as u64;
        }
    }
    n
}

fn fill(bytes: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(bytes.len());
    b.extend_from_slice(bytes);
    b
}

fn decode(c: &mut Criterion) {
    for (unit, group_name) in [("bytes", "decode_bytes"), ("events", "decode_events")] {
        let mut g = c.benchmark_group(group_name);
        for shape in [Shape::R1, Shape::R2] {
            for mode in MODES {
                let bytes = frame(mode, shape, N);
                assert_eq!(decode_iterate(&mut fill(&bytes)).1, N, "{mode:?} {shape:?}");
                g.throughput(if unit == "bytes" {
                    Throughput::Bytes(bytes.len() as u64)
                } else {
                    Throughput::Elements(N)
                });
                g.bench_with_input(BenchmarkId::new(format!("{mode:?}"), format!("{shape:?}")), &bytes, |b, bytes| {
                    b.iter_batched_ref(|| fill(bytes), |buf| decode_iterate(black_box(buf)), BatchSize::SmallInput)
                });
            }
        }
        g.finish();
    }
    let mut g = c.benchmark_group("decode_only");
    for shape in [Shape::R1, Shape::R2] {
        for mode in [Wire::Forward, Wire::PackedStr] {
            let bytes = frame(mode, shape, N);
            g.throughput(Throughput::Elements(N));
            g.bench_with_input(BenchmarkId::new(format!("{mode:?}"), format!("{shape:?}")), &bytes, |b, bytes| {
                b.iter_batched_ref(|| fill(bytes), |buf| decode_only(black_box(buf)), BatchSize::SmallInput)
            });
        }
    }
    g.finish();
}

fn encode_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let entries = packed_entries(Shape::R1, N);
    let recs: Vec<Vec<u8>> = (0..N).map(|i| record(Shape::R1, i)).collect();
    let mut out = Vec::with_capacity(4 * entries.len());
    let opt = OptionsOut { chunk: Some(b"Y2h1bmstMDAwMQ==\n"), size: Some(N), ..Default::default() };
    // Each routine ends with `black_box(&out)`: the bytes must really be written.

    // A PackedForward frame around entries already held (pass-through): header, one
    // copy of the entries, options.
    g.throughput(Throughput::Bytes(entries.len() as u64));
    g.bench_function("packed_forward/R1", |b| {
        b.iter(|| {
            out.clear();
            encode::packed_forward(&mut out, b"bench.r", black_box(&entries), EntriesType::Str32, &opt);
            black_box(&out).len()
        })
    });
    // Packing 1000 [time, record] entries from encoded records.
    g.throughput(Throughput::Elements(N));
    g.bench_function("entries/R1", |b| {
        b.iter(|| {
            out.clear();
            for (i, r) in recs.iter().enumerate() {
                encode::entry(&mut out, EventTime::new(i as u32, i as u32), TimeFormat::EventTime, black_box(r));
            }
            black_box(&out).len()
        })
    });
    // 1000 Message-mode frames with a chunk id each.
    g.bench_function("message/R1", |b| {
        b.iter(|| {
            out.clear();
            for (i, r) in recs.iter().enumerate() {
                let t = EventTime::new(i as u32, i as u32);
                encode::message(&mut out, b"bench.r", t, TimeFormat::EventTime, black_box(r), &opt);
            }
            black_box(&out).len()
        })
    });
    // gzip (level 6, as fluentd) of 1000 entries into a CompressedPackedForward frame.
    g.throughput(Throughput::Bytes(entries.len() as u64));
    g.bench_function("compressed_gzip/R1", |b| {
        b.iter(|| {
            out.clear();
            encode::compressed_packed_forward(&mut out, b"bench.r", black_box(&entries), &opt);
            black_box(&out).len()
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_lookup");
    for shape in [Shape::R1, Shape::R2] {
        let r = record(shape, 7);
        let rr = RecordRef::new(&r).expect("a record");
        assert!(rr.get(b"message").is_some());
        g.throughput(Throughput::Bytes(r.len() as u64));
        g.bench_function(format!("get_message/{shape:?}"), |b| {
            b.iter(|| black_box(rr).get(b"message").map_or(0, |v| v.as_bytes().len()))
        });
        g.bench_function(format!("get_missing/{shape:?}"), |b| {
            b.iter(|| black_box(rr).get(b"absent").map_or(0, |v| v.as_bytes().len()))
        });
        let mut out = Vec::with_capacity(4096);
        g.bench_function(format!("json/{shape:?}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(rr).write_json(&mut out);
                black_box(&out).len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode_bench, lookup);
criterion_main!(benches);
