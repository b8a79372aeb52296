//! With a counting allocator: a 1000-event PackedForward frame through in_forward ->
//! router -> out_null makes the same small number of allocations as a 10-event frame,
//! with and without `deduplicate` (a claim in the window per frame, nothing per event).

use std::path::Path;

use bytes::BytesMut;
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::input::forward::{ForwardInput, Peer, Step};
use spate_engine::plan::{build_shard, plan};
use spate_protocol::encode::{OptionsOut, TimeFormat};
use spate_protocol::{EventTime, FrameDecoder};
use spate_testkit::alloc::{allocs, Counting};
use spate_testkit::wire::{self, Wire, T0};

#[global_allocator]
static A: Counting = Counting;

/// A PackedForward frame (str32 entries) of `n` R1 events asking for an ack.
fn frame(n: u32, chunk: &[u8]) -> Vec<u8> {
    let events = (0..n).map(|i| (EventTime::new(T0 + i, i), TimeFormat::EventTime, wire::r1(u64::from(i))));
    wire::frame(
        Wire::PackedStr,
        b"app.web",
        events,
        &OptionsOut { chunk: Some(chunk), size: Some(n as u64), ..Default::default() },
    )
}

fn allocations_for(source: &str) -> (u64, u64) {
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    let conf = format!("<source>\n@type forward\nport 0\n{source}</source>\n<match **>\n@type null\n</match>\n");
    let root = parse_str(&conf, "t.conf", Path::new("."), &ctx).unwrap();
    let p = plan(&root, Some(1), "h").unwrap();
    let g = build_shard(&p, 0).expect("shard builds");
    let input = g.inputs[0].as_any().downcast_ref::<ForwardInput>().expect("in_forward");
    let mut acks = Vec::with_capacity(1024);
    let peer = Peer::named("test");
    let mut seq = 0;
    let mut measure = |n: u32| {
        // A new ack id per frame: with deduplicate, a repeated one is acked unstored.
        seq += 1;
        let bytes = frame(n, format!("Y2h1bmstaWQ{seq}=\n").as_bytes());
        let mut buf = BytesMut::with_capacity(bytes.len());
        buf.extend_from_slice(&bytes);
        let mut dec = FrameDecoder::new(Default::default());
        acks.clear();
        let before = allocs();
        assert!(matches!(input.process(&mut dec, &mut buf, &peer, &mut acks), Step::More));
        let used = allocs() - before;
        assert!(!acks.is_empty(), "acked");
        used
    };
    measure(10); // warm the route cache
    let a10 = measure(10);
    let a1000 = measure(1000);
    assert_eq!(input.metrics.events.get(), 1020);
    (a10, a1000)
}

#[test]
fn pipeline_allocations_do_not_grow_with_events() {
    let (a10, a1000) = allocations_for("");
    eprintln!("allocations: 10 events {a10}, 1000 events {a1000}");
    assert_eq!(a10, a1000, "allocations per frame must not depend on the event count");
    assert!(a10 <= 4, "a small constant per frame, got {a10}");
}

#[test]
fn deduplicate_costs_nothing_per_event() {
    let (a10, a1000) = allocations_for("deduplicate true\n");
    eprintln!("allocations with deduplicate: 10 events {a10}, 1000 events {a1000}");
    assert_eq!(a10, a1000, "allocations per frame must not depend on the event count");
    assert!(a10 <= 4, "a small constant per frame, got {a10}");
}
