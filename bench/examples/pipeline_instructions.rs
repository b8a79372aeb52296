//! The per-read pipeline (decode -> route -> out_null) in process, with or without a
//! prometheus filter counting records per tag (what S1M adds to S1's data path), N
//! times, for instruction counts that machine noise does not move:
//!
//! ```sh
//! cargo build --release -p spate-bench --example pipeline_instructions
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions null 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions prom 200
//! ```

use bytes::BytesMut;
use spate_bench::{frame, Shape, Wire};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::input::forward::{ForwardInput, Peer};
use spate_engine::plan::{build_shard, plan};
use spate_protocol::FrameDecoder;
use std::path::Path;
/// `pipeline_instructions null|prom [N]`: N R1 PackedForward frames of 1000 events.
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).and_then(|x| x.parse().ok()).unwrap_or(20000);
    let filter = if which == "prom" {
        "<filter **>\n@type prometheus\n<metric>\nname records_total\ntype counter\ndesc d\n<labels>\ntag ${tag}\n</labels>\n</metric>\n</filter>\n"
    } else {
        ""
    };
    let conf = format!("<source>\n@type forward\nport 0\n</source>\n{filter}<match **>\n@type null\n</match>\n");
    let ctx = EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&conf, "bench.conf", Path::new("."), &ctx).unwrap();
    let shard = build_shard(&plan(&root, Some(1), "bench").unwrap(), 0).unwrap();
    let input = shard.inputs[0].as_any().downcast_ref::<ForwardInput>().unwrap();
    let bytes = frame(Wire::PackedStr, Shape::R1, 1000);
    let mut acks = Vec::new();
    let peer = Peer::named("bench");
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Default::default());
        acks.clear();
        let _ = input.process(&mut dec, &mut buf, &peer, &mut acks);
    }
    eprintln!("{which}: {:?} per batch", t.elapsed() / n as u32);
}
