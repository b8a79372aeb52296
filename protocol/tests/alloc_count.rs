//! With a counting global allocator (its own test binary, so nothing else is counted):
//!
//! - decoding a frame and iterating all its events (time and a record field) allocates
//!   the same small constant for 10 and for 1000 events, in PackedForward and Forward
//!   mode, and for a stream of 10 or 1000 Message-mode frames;
//! - CompressedPackedForward allocates a handful of buffers, not one per event;
//! - memory stays within the limits: a gzip bomb costs at most the inflate limit plus
//!   the inflater's state, and a JSON frame's conversion no more than a few times its
//!   size (no value tree).
//!
//! The allocator is `spate_testkit::alloc::Counting`: counts per thread (tests run in
//! parallel threads) covering `alloc` and `realloc`, and live bytes with their peak.

use bytes::BytesMut;
use spate_protocol::encode::{self, OptionsOut, TimeFormat};
use spate_protocol::{ErrorKind, EventTime, Frame, FrameDecoder, Limits, Mode};
use spate_testkit::alloc::{allocs, peak, reset_peak, Counting};
use spate_testkit::wire::{self, r1, Wire};

#[global_allocator]
static A: Counting = Counting;

/// `n` R1 events (bench/README.md) in `wire` mode (Message: `n` frames back to back).
fn stream(wire: Wire, n: u32) -> Vec<u8> {
    let opt = OptionsOut { chunk: Some(b"abc"), size: Some(n as u64), ..Default::default() };
    let events = (0..n).map(|i| (EventTime::new(1_700_000_000 + i, i), TimeFormat::EventTime, r1(u64::from(i))));
    wire::frame(wire, b"tag", events, &opt)
}

/// Allocations made by decoding every frame of `stream(mode, n)` (already in the receive
/// buffer) and reading every event's time and message; returns them with the number
/// of events seen.
fn measure(mode: Wire, n: u32) -> (u64, u32) {
    let bytes = stream(mode, n);
    let mut buf = BytesMut::with_capacity(bytes.len());
    buf.extend_from_slice(&bytes);
    let mut dec = FrameDecoder::new(Limits::default());
    let before = allocs();
    let (mut events, mut nsec, mut msg_bytes) = (0u32, 0u64, 0usize);
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        let Frame::Events(b) = f else { panic!("a heartbeat") };
        for ev in b.events() {
            events += 1;
            nsec += ev.time.nsec as u64;
            msg_bytes += ev.record.get(b"message").and_then(|v| v.as_str()).map_or(0, <[u8]>::len);
        }
    }
    let used = allocs() - before;
    assert!(buf.is_empty());
    assert!(msg_bytes > 50 * n as usize);
    assert_eq!(nsec, (0..n as u64).sum::<u64>());
    (used, events)
}

#[test]
fn decode_and_iterate_allocations_do_not_depend_on_event_count() {
    for mode in [Wire::PackedBin, Wire::Forward, Wire::Message] {
        let (a10, e10) = measure(mode, 10);
        let (a1000, e1000) = measure(mode, 1000);
        assert_eq!((e10, e1000), (10, 1000));
        eprintln!("{mode:?}: 10 events {a10} allocations, 1000 events {a1000}");
        assert_eq!(a10, a1000, "{mode:?}");
        // Splitting the first frame off the read buffer makes it shared (one
        // allocation); nothing else allocates.
        assert!(a10 <= 1, "{mode:?}: a small constant, got {a10}");
    }
}

#[test]
fn compressed_frames_allocate_buffers_not_events() {
    // The inflater's state and the inflated entries (grown by doubling): a few
    // allocations whatever the event count, and never one per event.
    let (a10, _) = measure(Wire::Gzip, 10);
    let (a1000, e) = measure(Wire::Gzip, 1000);
    assert_eq!(e, 1000);
    eprintln!("Gzip: 10 events {a10} allocations, 1000 events {a1000}");
    assert!(a10 <= 8 && a1000 <= 8, "{a10} and {a1000}");
}

#[test]
fn a_gzip_bomb_costs_at_most_the_inflate_limit() {
    let limit = 1 << 20;
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &vec![0u8; 64 << 20], &OptionsOut::default());
    assert!(f.len() < 100 << 10, "64 MiB of zeros compress to {} bytes", f.len());
    let mut buf = BytesMut::from(&f[..]);
    let mut dec = FrameDecoder::new(Limits { max_inflated_size: limit, ..Limits::default() });
    let base = reset_peak();
    let e = dec.decode(&mut buf).unwrap_err();
    let used = peak() - base;
    assert!(matches!(e.kind, ErrorKind::InflateTooLarge { .. }), "{e}");
    eprintln!("gzip bomb: peak {used} bytes for a limit of {limit}");
    // The output buffer stops at limit + 1 bytes; the inflater's state is ~40 KiB.
    assert!(used <= limit as i64 + (128 << 10), "peak {used} bytes");
    assert!(used > limit as i64, "the output really reached the limit");
}

#[test]
fn inflating_just_under_the_limit_does_not_overshoot_it() {
    // Real entries inflating to 3/4 of the limit: the output buffer grows by doubling
    // but is capped at the limit, never at twice what arrived.
    let limit: usize = 4 << 20;
    let mut e = Vec::new();
    let mut i = 0;
    while e.len() < limit * 3 / 4 {
        encode::entry(&mut e, EventTime::new(i, 0), TimeFormat::EventTime, &r1(u64::from(i)));
        i += 1;
    }
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &e, &OptionsOut::default());
    let mut buf = BytesMut::from(&f[..]);
    let mut dec = FrameDecoder::new(Limits { max_inflated_size: limit, ..Limits::default() });
    let base = reset_peak();
    let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() else { panic!() };
    let used = peak() - base;
    assert_eq!((b.mode, b.count), (Mode::CompressedPackedForward, i));
    eprintln!("{} bytes inflated: peak {used} bytes for a limit of {limit}", e.len());
    assert!(used <= limit as i64 + (128 << 10), "peak {used} bytes");
}

#[test]
fn json_frames_convert_without_a_value_tree() {
    // 600 KB of JSON made of small values: a serde_json::Value tree would take 16-32
    // bytes per 2-byte element (more than 5 MB); streaming conversion writes msgpack
    // (one byte per small integer) and nothing else.
    let mut j = String::from(r#"["json", [[1700000000, {"n": ["#);
    for i in 0..300_000 {
        if i > 0 {
            j.push(',');
        }
        j.push(char::from(b'0' + (i % 10) as u8));
    }
    j += r#"]}]]]"#;
    let mut buf = BytesMut::from(j.as_bytes());
    let mut dec = FrameDecoder::new(Limits::default());
    let base = reset_peak();
    let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() else { panic!() };
    let used = peak() - base;
    assert_eq!(b.count, 1);
    assert_eq!(b.wire_len, j.len());
    eprintln!("{} bytes of JSON: peak {used} bytes", j.len());
    assert!(used <= j.len() as i64 + (64 << 10), "peak {used} bytes for {} bytes of JSON", j.len());
}
