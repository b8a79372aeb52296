//! With a counting global allocator: decoding a frame and iterating all its events
//! (time, a field lookup) allocates the same small constant for 10 and 1000 events, in
//! PackedForward, Forward and Message modes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{EventTime, Frame, FrameDecoder, Limits};

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    COUNT.with(|c| c.get())
}

fn r1(i: u32) -> Vec<u8> {
    let mut r = Vec::new();
    raw::map_header(&mut r, 4);
    raw::str(&mut r, b"host");
    raw::str(&mut r, b"web-01");
    raw::str(&mut r, b"level");
    raw::str(&mut r, b"info");
    raw::str(&mut r, b"status");
    raw::uint(&mut r, 200);
    raw::str(&mut r, b"message");
    raw::str(
        &mut r,
        format!("GET /api/v1/items/{i} HTTP/1.1 200 {} bytes in {} ms from 10.0.{}.{}", i * 7, i % 13, i % 255, i % 7)
            .as_bytes(),
    );
    r
}

fn frame(mode: &str, n: u32) -> Vec<u8> {
    let mut e = Vec::new();
    for i in 0..n {
        encode::entry(&mut e, EventTime::new(1_700_000_000 + i, i), TimeFormat::EventTime, &r1(i));
    }
    let opt = OptionsOut { chunk: Some(b"abc"), ..Default::default() };
    let mut f = Vec::new();
    match mode {
        "packed" => encode::packed_forward(&mut f, b"tag", &e, EntriesType::Bin, &opt),
        "forward" => encode::forward(&mut f, b"tag", &e, n, &opt),
        _ => encode::message(&mut f, b"tag", EventTime::new(1, 2), TimeFormat::EventTime, &r1(0), &opt),
    }
    f
}

/// Allocations made by decode + iterate of one frame (the input buffer is built first).
fn measure(mode: &str, n: u32) -> (u64, u64) {
    let bytes = frame(mode, n);
    let mut buf = BytesMut::with_capacity(bytes.len());
    buf.extend_from_slice(&bytes);
    let mut dec = FrameDecoder::new(Limits::default());
    let before = allocs();
    let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() else { panic!() };
    let mut seen = 0u64;
    let mut bytes_seen = 0usize;
    for ev in b.events() {
        seen += ev.time.sec as u64 & 1;
        bytes_seen += ev.record.get(b"message").and_then(|v| v.as_str()).map_or(0, <[u8]>::len);
    }
    let used = allocs() - before;
    assert!(bytes_seen > 0 && seen <= n as u64);
    (used, b.count as u64)
}

#[test]
fn decode_and_iterate_allocations_do_not_depend_on_event_count() {
    for mode in ["packed", "forward"] {
        let (a10, c10) = measure(mode, 10);
        let (a1000, c1000) = measure(mode, 1000);
        assert_eq!((c10, c1000), (10, 1000));
        eprintln!("{mode}: 10 events {a10} allocations, 1000 events {a1000}");
        assert_eq!(a10, a1000, "{mode}");
        assert!(a10 <= 2, "{mode}: a small constant, got {a10}");
    }
    let (a, c) = measure("message", 1);
    assert_eq!(c, 1);
    assert!(a <= 2, "message: {a}");
}
