//! Criterion: the Elasticsearch bulk encoder (a chunk's msgpack entries to the NDJSON
//! bulk body) on 1000-event chunks of the R1 and R2 record shapes, for the default
//! configuration (records copied through) and a logstash one (@timestamp, tag_key,
//! id_key, remove_keys: records rendered with changes). Reported in events/s and in
//! bytes/s of entries read.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spate_bench::{packed_entries, Shape};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::format::Zone;
use spate_engine::output::elasticsearch::bulk::{ChunkCtx, Encoder, Ops, Scratch};
use spate_engine::output::elasticsearch::conf::{DocConf, Flavor};

fn conf(body: &str) -> DocConf {
    let ctx = EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&format!("<match x>\n{body}\n</match>\n"), "b.conf", Path::new("."), &ctx).unwrap();
    DocConf::from_element(&root.elements[0], Flavor::Elasticsearch, false).unwrap()
}

fn bulk(c: &mut Criterion) {
    let configs = [
        ("default", conf("")),
        ("logstash", conf("logstash_format true\ninclude_tag_key true\nid_key id\nremove_keys host")),
    ];
    let id = [7u8; 16];
    let cx = ChunkCtx { tag: b"app.web", timekey: None, timekey_zone: Zone::Utc, vars: &[], chunk_id: &id };
    for (shape, sname) in [(Shape::R1, "r1"), (Shape::R2, "r2")] {
        let data = packed_entries(shape, 1000);
        for (unit, tp) in [("events", Throughput::Elements(1000)), ("bytes", Throughput::Bytes(data.len() as u64))] {
            let mut g = c.benchmark_group(format!("es_bulk_{unit}"));
            g.throughput(tp);
            for (cname, dc) in &configs {
                let ops = Ops::new(dc);
                let enc = Encoder { conf: dc, ops: &ops, major: 8 };
                let mut s = Scratch::default();
                g.bench_function(format!("{sname}_{cname}"), |b| {
                    b.iter(|| {
                        let e = enc.encode(&cx, black_box(&data), None, &mut s);
                        black_box(e.requests.len())
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bulk);
criterion_main!(benches);
