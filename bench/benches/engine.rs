//! Criterion: the engine's hot pieces in process: tag routing over 100 patterns (route
//! cache hits and misses), buffer append, gzip inflate, and the whole per-read pipeline
//! (decode -> route -> out_null, and with a prometheus filter counting records per tag).
//! Throughput in bytes where it applies.

use std::path::Path;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spate_bench::{frame, packed_entries, Shape, Wire};
use spate_engine::buffer::{BufferConf, MemoryBuffer};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::input::forward::{ForwardInput, Peer};
use spate_engine::plan::{build_shard, plan};
use spate_engine::router::MatchPattern;
use spate_protocol::compress::{gzip, inflate, Compression};
use spate_protocol::{EventBatch, FrameDecoder};
use spate_testkit::wire;

fn ctx() -> EvalContext {
    EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) }
}

fn patterns_100() -> Vec<String> {
    (0..100)
        .map(|i| match i % 4 {
            0 => format!("app{i}.web.*"),
            1 => format!("svc{i}.**"),
            2 => format!("{{k8s{i},docker{i}}}.var.log.**"),
            _ => format!("**.level{i}"),
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let pats: Vec<MatchPattern> = patterns_100().iter().map(|p| MatchPattern::parse(p).unwrap()).collect();
    let tags: Vec<Vec<u8>> = (0..1000).map(|i| format!("svc{}.a.b{}", i % 120, i).into_bytes()).collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(tags.len() as u64));
    g.bench_function("match_100_patterns_uncached", |b| {
        b.iter(|| tags.iter().filter(|t| pats.iter().any(|p| p.matches(black_box(t)))).count())
    });
    // The router caches the resolved pipeline per tag: the steady state.
    let mut conf = String::from("<source>\n@type forward\nport 0\n</source>\n");
    for p in patterns_100() {
        conf.push_str(&format!("<match {p}>\n@type null\n</match>\n"));
    }
    let root = parse_str(&conf, "bench.conf", Path::new("."), &ctx()).unwrap();
    let shard = build_shard(&plan(&root, Some(1), "bench").unwrap(), 0).unwrap();
    let batches: Vec<EventBatch> = tags.iter().take(100).map(|t| wire::batch(t, Vec::new())).collect();
    g.throughput(Throughput::Elements(batches.len() as u64));
    g.bench_function("router_emit_cached_100_patterns", |b| {
        b.iter(|| {
            for x in &batches {
                let _ = shard.router.emit(0, black_box(x.clone()));
            }
        })
    });
    g.finish();
}

fn buffer_append(c: &mut Criterion) {
    let batch = wire::batch(b"bench.r", packed_entries(Shape::R1, 1000));
    let mut g = c.benchmark_group("buffer");
    g.throughput(Throughput::Bytes(batch.entries.len() as u64));
    g.bench_function("memory_append_R1_1000", |b| {
        let mut buf = MemoryBuffer::new(BufferConf { total_limit_size: 1 << 30, ..Default::default() }, 0);
        b.iter(|| {
            if buf.total_bytes() > 512 << 20 {
                buf = MemoryBuffer::new(BufferConf { total_limit_size: 1 << 30, ..Default::default() }, 0);
            }
            buf.append(black_box(&batch)).unwrap();
        })
    });
    g.finish();
}

fn gzip_inflate(c: &mut Criterion) {
    let entries = packed_entries(Shape::R1, 1000);
    let z = gzip(&entries, 6);
    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Bytes(entries.len() as u64));
    g.bench_function("inflate_R1_1000", |b| {
        b.iter(|| inflate(Compression::Gzip, black_box(&z), 1 << 28).unwrap().len())
    });
    g.finish();
}

/// `<filter **> @type prometheus` counting records per tag: what S1M adds to S1's data
/// path (the metric sources themselves are off it).
const PROMETHEUS_FILTER: &str = "<filter **>\n@type prometheus\n<metric>\nname records_total\ntype counter\ndesc d\n<labels>\ntag ${tag}\n</labels>\n</metric>\n</filter>\n";

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    for (filter, label) in [("", "null"), (PROMETHEUS_FILTER, "prometheus_null")] {
        let conf = format!("<source>\n@type forward\nport 0\n</source>\n{filter}<match **>\n@type null\n</match>\n");
        let root = parse_str(&conf, "bench.conf", Path::new("."), &ctx()).unwrap();
        let shard = build_shard(&plan(&root, Some(1), "bench").unwrap(), 0).unwrap();
        let input = shard.inputs[0].as_any().downcast_ref::<ForwardInput>().expect("in_forward");
        for (name, mode) in [("packed", Wire::PackedStr), ("message", Wire::Message)] {
            if label != "null" && name != "packed" {
                continue;
            }
            let bytes = frame(mode, Shape::R1, 1000);
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            let mut acks = Vec::with_capacity(1 << 16);
            let peer = Peer::named("bench");
            g.bench_function(format!("decode_route_{label}_R1_1000_{name}"), |b| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&bytes[..]);
                    let mut dec = FrameDecoder::new(Default::default());
                    acks.clear();
                    input.process(&mut dec, &mut buf, &peer, &mut acks)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, routing, buffer_append, gzip_inflate, pipeline);
criterion_main!(benches);
