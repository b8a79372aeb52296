//! Criterion: protocol decode + iterate per mode and record shape (throughput in bytes
//! and in events), encode, and record field lookup.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate_bench::{frame, packed_entries, record, FrameMode, Shape};
use spate_protocol::encode::{self, EntriesType, OptionsOut};
use spate_protocol::{Frame, FrameDecoder, Limits, RecordRef};

const N: u64 = 1000;

/// Decodes every frame in `bytes` and touches every event (time + one field).
fn decode_iterate(bytes: &[u8]) -> u64 {
    let mut buf = BytesMut::from(bytes);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut acc = 0u64;
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        if let Frame::Events(b) = f {
            for ev in b.events() {
                acc = acc.wrapping_add(ev.time.nsec as u64);
                acc = acc.wrapping_add(ev.record.get(b"status").and_then(|v| v.as_i64()).unwrap_or(0) as u64);
            }
        }
    }
    acc
}

fn decode(c: &mut Criterion) {
    for (unit, group_name) in [("bytes", "decode_bytes"), ("events", "decode_events")] {
        let mut g = c.benchmark_group(group_name);
        for shape in [Shape::R1, Shape::R2] {
            for mode in [FrameMode::Message, FrameMode::Forward, FrameMode::Packed, FrameMode::Compressed] {
                let bytes = frame(mode, shape, N);
                g.throughput(if unit == "bytes" {
                    Throughput::Bytes(bytes.len() as u64)
                } else {
                    Throughput::Elements(N)
                });
                g.bench_with_input(BenchmarkId::new(format!("{mode:?}"), format!("{shape:?}")), &bytes, |b, bytes| {
                    b.iter(|| decode_iterate(black_box(bytes)))
                });
            }
        }
        g.finish();
    }
}

fn encode_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let entries = packed_entries(Shape::R1, N);
    g.throughput(Throughput::Bytes(entries.len() as u64));
    let mut out = Vec::with_capacity(entries.len() + 256);
    g.bench_function("packed_forward_R1_1000", |b| {
        b.iter(|| {
            out.clear();
            encode::packed_forward(
                &mut out,
                b"bench.r",
                black_box(&entries),
                EntriesType::Bin,
                &OptionsOut { chunk: Some(b"id"), ..Default::default() },
            );
            out.len()
        })
    });
    let recs: Vec<Vec<u8>> = (0..N).map(|i| record(Shape::R1, i)).collect();
    g.throughput(Throughput::Elements(N));
    g.bench_function("entries_R1_1000", |b| {
        b.iter(|| {
            out.clear();
            for (i, r) in recs.iter().enumerate() {
                encode::entry(&mut out, spate_protocol::EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, r);
            }
            out.len()
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_lookup");
    for shape in [Shape::R1, Shape::R2] {
        let r = record(shape, 7);
        g.throughput(Throughput::Bytes(r.len() as u64));
        g.bench_function(format!("get_message_{shape:?}"), |b| {
            b.iter(|| RecordRef::new(black_box(&r)).and_then(|rr| rr.get(b"message")).map_or(0, |v| v.as_bytes().len()))
        });
        g.bench_function(format!("json_{shape:?}"), |b| {
            let mut out = Vec::with_capacity(2048);
            b.iter(|| {
                out.clear();
                if let Some(rr) = RecordRef::new(black_box(&r)) {
                    rr.write_json(&mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode_bench, lookup);
criterion_main!(benches);
