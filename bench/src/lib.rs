//! spate-bench's shared workload: the record shapes of BENCHMARKS.md with deterministic,
//! varied messages, and ready-made frames for every Forward mode. Used by the criterion
//! suites; other tools may reuse [`r1_record`], [`r2_record`] and [`packed_entries`].
//!
//! - R1: `{"host","level","status","message": <80 printable ASCII>}`, 123 bytes of
//!   msgpack (134 per packed entry with its EventTime).
//! - R2: R1's fields plus a nested `kubernetes` map and a 700-byte message, 924 bytes
//!   (935 per entry).

use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::EventTime;

/// Record shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    R1,
    R2,
}

const WORDS: &[&str] = &[
    "GET", "POST", "user", "login", "served", "cache", "miss", "upstream", "timeout", "error", "retry", "db", "query",
    "ok", "slow", "api", "v1", "items", "id", "session", "token", "refresh", "200", "404", "503", "ms", "bytes",
    "from", "to",
];

/// `len` printable ASCII bytes, varied with `i` (about 1 in 8 messages contains "error").
pub fn message(i: u64, len: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(len + 16);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize];
        let w = if w == "error" && !i.is_multiple_of(8) { "event" } else { w };
        s.extend_from_slice(w.as_bytes());
        s.push(b' ');
    }
    s.truncate(len);
    s
}

/// R1: `{"host":"web-01","level":"info","status":200,"message":<80 chars>}`.
pub fn r1_record(i: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(160);
    raw::map_header(&mut r, 4);
    raw::str(&mut r, b"host");
    raw::str(&mut r, b"web-01");
    raw::str(&mut r, b"level");
    raw::str(&mut r, b"info");
    raw::str(&mut r, b"status");
    raw::uint(&mut r, 200);
    raw::str(&mut r, b"message");
    raw::str(&mut r, &message(i, 80));
    r
}

/// R2: R1's fields plus a nested map and a 700-byte message (about 1 KiB).
pub fn r2_record(i: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(1100);
    raw::map_header(&mut r, 5);
    raw::str(&mut r, b"host");
    raw::str(&mut r, b"web-01");
    raw::str(&mut r, b"level");
    raw::str(&mut r, b"info");
    raw::str(&mut r, b"status");
    raw::uint(&mut r, 200);
    raw::str(&mut r, b"kubernetes");
    raw::map_header(&mut r, 6);
    for (k, v) in [
        ("namespace", "production"),
        ("pod", "web-7d9f8c6b5-x2x9q"),
        ("container", "app"),
        ("node", "ip-10-0-12-34.ec2.internal"),
        ("image", "registry.example.com/web:1.42.0"),
        ("labels", "app=web,tier=frontend,team=core"),
    ] {
        raw::str(&mut r, k.as_bytes());
        raw::str(&mut r, v.as_bytes());
    }
    raw::str(&mut r, b"message");
    raw::str(&mut r, &message(i, 700));
    r
}

pub fn record(shape: Shape, i: u64) -> Vec<u8> {
    match shape {
        Shape::R1 => r1_record(i),
        Shape::R2 => r2_record(i),
    }
}

/// `n` packed `[EventTime, record]` entries.
pub fn packed_entries(shape: Shape, n: u64) -> Vec<u8> {
    let mut e = Vec::new();
    for i in 0..n {
        encode::entry(
            &mut e,
            EventTime::new(1_700_000_000 + i as u32, i as u32),
            TimeFormat::EventTime,
            &record(shape, i),
        );
    }
    e
}

/// Forward modes to build frames in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMode {
    Message,
    Forward,
    Packed,
    Compressed,
}

/// One frame of `n` events (Message mode: `n` frames back to back), with a chunk id.
pub fn frame(mode: FrameMode, shape: Shape, n: u64) -> Vec<u8> {
    let opt = OptionsOut { chunk: Some(b"Y2h1bmstMDAwMQ==\n"), size: Some(n), ..Default::default() };
    let mut f = Vec::new();
    match mode {
        FrameMode::Message => {
            for i in 0..n {
                encode::message(
                    &mut f,
                    b"bench.r",
                    EventTime::new(1_700_000_000, i as u32),
                    TimeFormat::EventTime,
                    &record(shape, i),
                    &opt,
                );
            }
        }
        FrameMode::Forward => encode::forward(&mut f, b"bench.r", &packed_entries(shape, n), n as u32, &opt),
        FrameMode::Packed => {
            encode::packed_forward(&mut f, b"bench.r", &packed_entries(shape, n), EntriesType::Str32, &opt)
        }
        FrameMode::Compressed => encode::compressed_packed_forward(&mut f, b"bench.r", &packed_entries(shape, n), &opt),
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_documented_sizes() {
        for i in [0, 3, 1000] {
            assert_eq!(r1_record(i).len(), 123);
            assert_eq!(r2_record(i).len(), 924);
        }
        assert_eq!(packed_entries(Shape::R1, 10).len(), 1340);
        let r2 = r2_record(3);
        assert_ne!(message(1, 80), message(2, 80));
        assert!(spate_protocol::RecordRef::new(&r2).is_some());
    }
}
