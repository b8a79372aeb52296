//! The per-read pipeline (decode -> route -> out_null) in process, N times, for
//! instruction counts that machine noise does not move: `null` (S1's path, PackedForward),
//! `prom` (a prometheus filter counting records per tag: what S1M adds), `grep` (S3's
//! `<regexp> key message pattern /error/`), `message` (one event per Message-mode
//! frame with an ack request, 1000 frames per read), `message-noack` (the same without
//! options: S2's frames), `http` (S8: in_http's handler on one POST of a JSON
//! array of 1000 R1 records, without the socket):
//!
//! ```sh
//! cargo build --release -p spate-bench --example pipeline_instructions
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions null 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions prom 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions grep 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions message 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions message-noack 200
//! valgrind --tool=callgrind target/release/examples/pipeline_instructions http 200
//! ```
//!
//! Instructions per event: callgrind's total over (N x 1000), minus the set-up (run with
//! N = 0 for it).

use bytes::BytesMut;
use spate_bench::{frame, frame_without_options, record, Shape, Wire};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::input::forward::{ForwardInput, Peer};
use spate_engine::input::http::{parse_head, Handler, HttpInput};
use spate_engine::plan::{build_shard, plan};
use spate_protocol::FrameDecoder;
use spate_protocol::RecordRef;
use std::path::Path;
/// `pipeline_instructions null|prom|grep|message|http [N]`: N reads of 1000 R1 events.
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).and_then(|x| x.parse().ok()).unwrap_or(20000);
    if which == "http" {
        return http(n);
    }
    let filter = match which.as_str() {
        "prom" => "<filter **>\n@type prometheus\n<metric>\nname records_total\ntype counter\ndesc d\n<labels>\ntag ${tag}\n</labels>\n</metric>\n</filter>\n",
        "grep" => "<filter **>\n@type grep\n<regexp>\nkey message\npattern /error/\n</regexp>\n</filter>\n",
        _ => "",
    };
    let conf = format!("<source>\n@type forward\nport 0\n</source>\n{filter}<match **>\n@type null\n</match>\n");
    let ctx = EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&conf, "bench.conf", Path::new("."), &ctx).unwrap();
    let shard = build_shard(&plan(&root, Some(1), "bench").unwrap(), 0).unwrap();
    let input = shard.inputs[0].as_any().downcast_ref::<ForwardInput>().unwrap();
    let bytes = match which.as_str() {
        "message" => frame(Wire::Message, Shape::R1, 1000),
        "message-noack" => frame_without_options(Wire::Message, Shape::R1, 1000),
        _ => frame(Wire::PackedStr, Shape::R1, 1000),
    };
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

/// S8's request handling: head parse, JSON body to records, the batch (no socket, no
/// router: `null` measures what routing to out_null adds).
fn http(n: usize) {
    let conf = "<source>\n@type http\nport 0\n</source>\n<match **>\n@type null\n</match>\n";
    let ctx = EvalContext { hostname: "bench".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(conf, "bench.conf", Path::new("."), &ctx).unwrap();
    let shard = build_shard(&plan(&root, Some(1), "bench").unwrap(), 0).unwrap();
    let input = shard.inputs[0].as_any().downcast_ref::<HttpInput>().unwrap();
    let mut handler = Handler::new(input.conf());
    let mut body = vec![b'['];
    for i in 0..1000 {
        if i > 0 {
            body.push(b',');
        }
        RecordRef::new(&record(Shape::R1, i)).unwrap().write_json(&mut body);
    }
    body.push(b']');
    let mut req = format!(
        "POST /spate.loadgen HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let t = std::time::Instant::now();
    let mut events = 0usize;
    for _ in 0..n {
        let head = parse_head(&req).unwrap().unwrap();
        let (_, batch) = handler.handle(&head, &req[head.head_len..], None);
        events += batch.map_or(0, |b| b.count as usize);
    }
    assert_eq!(events, n * 1000);
    eprintln!("http: {:?} per request of 1000 events", t.elapsed() / n.max(1) as u32);
}
