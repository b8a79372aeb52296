//! Records, packed entries and Forward frames built by hand with the protocol crate's
//! encoders: one set of builders for every test and benchmark.
//!
//! - [`kv_record`] / [`kv_time`] / [`packed_entries`]: the small `{"k", "msg"}` records
//!   the end-to-end tests count by `k`;
//! - [`r1`] / [`r2`]: the benchmark shapes, from `spate_loadgen::records` (the single
//!   source of R1/R2, see bench/README.md);
//! - [`entries`] / [`batch`]: packed entries, and a batch of them as the router gets it;
//! - [`frame`] / [`frame_of_entries`]: one frame in any [`Wire`] mode;
//! - [`decode_all`] / [`batches`]: a whole stream back into frames and batches;
//! - [`acked_frame`] / [`kv_frame`]: the PackedForward frame with a chunk id most tests
//!   send, with the `size` and `chunk` options fluentd's out_forward sends.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{Compression, EntriesFormat, EventBatch, EventTime, Frame, FrameDecoder, Limits, Mode, Options};

pub use spate_loadgen::records::{r1_record as r1, r2_record as r2};

/// The seconds of the first test event: 2023-11-14T22:13:20Z.
pub const T0: u32 = 1_700_000_000;

/// `{"k": <k>, "msg": "event <k>"}`.
pub fn kv_record(k: u64) -> Vec<u8> {
    let mut r = Vec::new();
    raw::map_header(&mut r, 2);
    raw::str(&mut r, b"k");
    raw::uint(&mut r, k);
    raw::str(&mut r, b"msg");
    raw::str(&mut r, format!("event {k}").as_bytes());
    r
}

/// The time [`packed_entries`] gives event `k`: `T0 + k` seconds and `7 k` nanoseconds,
/// so every event's time is distinct down to the nanosecond.
pub fn kv_time(k: u64) -> EventTime {
    EventTime::new(T0.wrapping_add(k as u32), (k as u32).wrapping_mul(7))
}

/// `(kv_time(k), EventTime format, kv_record(k))` for every `k` in `ks`: events for
/// [`frame`] and [`entries`].
pub fn kv_events(ks: Range<u64>) -> impl Iterator<Item = (EventTime, TimeFormat, Vec<u8>)> {
    ks.map(|k| (kv_time(k), TimeFormat::EventTime, kv_record(k)))
}

/// Packed `[EventTime, record]` entries of `kv_record(k)` at `kv_time(k)` for `k` in
/// `base..base + n`.
pub fn packed_entries(n: u64, base: u64) -> Vec<u8> {
    entries(kv_events(base..base + n))
}

/// Packed `[time, record]` entries of `events`.
pub fn entries<R: AsRef<[u8]>>(events: impl IntoIterator<Item = (EventTime, TimeFormat, R)>) -> Vec<u8> {
    let mut e = Vec::new();
    for (t, f, r) in events {
        encode::entry(&mut e, t, f, r.as_ref());
    }
    e
}

/// A batch of packed `entries` under `tag`, as in_forward hands a PackedForward frame to
/// the router (no options). Panics when `entries` are not msgpack.
pub fn batch(tag: &[u8], entries: Vec<u8>) -> EventBatch {
    EventBatch::from_entries(
        Bytes::copy_from_slice(tag),
        Bytes::from(entries),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .expect("well-formed entries")
}

/// The ways a client can put events on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `[tag, time, record, option?]`, one frame per event.
    Message,
    /// `[tag, [[time, record], ...], option?]`.
    Forward,
    /// PackedForward with the entries as a msgpack bin.
    PackedBin,
    /// PackedForward with the entries as a str32 (what fluentd's out_forward writes).
    PackedStr,
    /// CompressedPackedForward, gzip (level 6, as fluentd).
    Gzip,
    /// CompressedPackedForward, zstd (fluentd >= 1.17 `compress zstd`).
    Zstd,
}

impl Wire {
    /// Every mode.
    pub const ALL: [Wire; 6] = [Wire::Message, Wire::Forward, Wire::PackedBin, Wire::PackedStr, Wire::Gzip, Wire::Zstd];

    /// A short name (`message`, `forward`, `packed-bin`, `packed-str`, `gzip`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Wire::Message => "message",
            Wire::Forward => "forward",
            Wire::PackedBin => "packed-bin",
            Wire::PackedStr => "packed-str",
            Wire::Gzip => "gzip",
            Wire::Zstd => "zstd",
        }
    }

    /// The mode the decoder reports for frames built in this way.
    pub fn mode(self) -> Mode {
        match self {
            Wire::Message => Mode::Message,
            Wire::Forward => Mode::Forward,
            Wire::PackedBin | Wire::PackedStr => Mode::PackedForward,
            Wire::Gzip | Wire::Zstd => Mode::CompressedPackedForward,
        }
    }

    /// The `compressed` option the decoder reports.
    pub fn compression(self) -> Option<Compression> {
        match self {
            Wire::Gzip => Some(Compression::Gzip),
            Wire::Zstd => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// One frame of `events` in `wire` mode with options `opt` (Message mode: one frame per
/// event, back to back, each with `opt`).
pub fn frame<R: AsRef<[u8]>>(
    wire: Wire,
    tag: &[u8],
    events: impl IntoIterator<Item = (EventTime, TimeFormat, R)>,
    opt: &OptionsOut<'_>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if wire == Wire::Message {
        for (t, f, r) in events {
            encode::message(&mut out, tag, t, f, r.as_ref(), opt);
        }
        return out;
    }
    let mut e = Vec::new();
    let mut n = 0u32;
    for (t, f, r) in events {
        encode::entry(&mut e, t, f, r.as_ref());
        n += 1;
    }
    frame_of_entries(wire, tag, &e, n, opt)
}

/// One frame around `count` packed entries already encoded. Panics for
/// [`Wire::Message`], which has no entries (use [`frame`]).
pub fn frame_of_entries(wire: Wire, tag: &[u8], entries: &[u8], count: u32, opt: &OptionsOut<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match wire {
        Wire::Message => panic!("Message mode has no entries; build it with wire::frame"),
        Wire::Forward => encode::forward(&mut out, tag, entries, count, opt),
        Wire::PackedBin => encode::packed_forward(&mut out, tag, entries, EntriesType::Bin, opt),
        Wire::PackedStr => encode::packed_forward(&mut out, tag, entries, EntriesType::Str32, opt),
        Wire::Gzip => encode::compressed_packed_forward(&mut out, tag, entries, opt),
        Wire::Zstd => {
            let z = spate_protocol::compress::zstd_compress(entries, 3);
            let opt = OptionsOut { compressed: Some(Compression::Zstd), ..*opt };
            encode::packed_forward(&mut out, tag, &z, EntriesType::Bin, &opt)
        }
    }
    out
}

/// A PackedForward frame (bin entries) of `count` entries asking for an ack under
/// `chunk`, with the `size` option set too (fluentd's out_forward sends both).
pub fn acked_frame(tag: &[u8], entries: &[u8], count: u64, chunk: &str) -> Vec<u8> {
    let opt = OptionsOut { chunk: Some(chunk.as_bytes()), size: Some(count), compressed: None };
    let mut f = Vec::new();
    encode::packed_forward(&mut f, tag, entries, EntriesType::Bin, &opt);
    f
}

/// [`acked_frame`] of `kv_record(k)` for every `k` in `ks`, all at `time`.
pub fn kv_frame(tag: &[u8], ks: Range<u64>, time: EventTime, chunk: &str) -> Vec<u8> {
    let n = ks.end.saturating_sub(ks.start);
    acked_frame(tag, &entries(ks.map(|k| (time, TimeFormat::EventTime, kv_record(k)))), n, chunk)
}

/// Decodes every frame of `bytes` with default limits; panics on a decode error or when
/// bytes are left over (the stream must be whole frames).
pub fn decode_all(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap_or_else(|e| panic!("decode: {e}")) {
        out.push(f);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(dec.consumed(), bytes.len() as u64);
    out
}

/// The event batches among `frames` (heartbeats dropped).
pub fn batches(frames: Vec<Frame>) -> Vec<EventBatch> {
    frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::Events(b) => Some(b),
            Frame::Heartbeat => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_decodes_to_the_events_it_was_built_from() {
        for w in Wire::ALL {
            let opt = OptionsOut { chunk: Some(b"c1"), ..Default::default() };
            let f = frame(w, b"t", kv_events(0..3), &opt);
            let mut buf = BytesMut::from(&f[..]);
            let mut dec = FrameDecoder::new(Limits::default());
            let mut got = Vec::new();
            while let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() {
                assert_eq!((b.mode, b.option.compressed), (w.mode(), w.compression()), "{w:?}");
                assert_eq!(b.option.chunk.as_deref(), Some(&b"c1"[..]));
                got.extend(b.events().map(|e| (e.time, e.record.as_bytes().to_vec())));
            }
            let want: Vec<_> = (0..3).map(|k| (kv_time(k), kv_record(k))).collect();
            assert_eq!(got, want, "{w:?}");
        }
    }

    #[test]
    fn kv_frames_carry_size_and_chunk() {
        let f = kv_frame(b"t", 5..8, EventTime::new(T0, 1), "id-1");
        let mut buf = BytesMut::from(&f[..]);
        let Some(Frame::Events(b)) = FrameDecoder::new(Limits::default()).decode(&mut buf).unwrap() else {
            panic!("one batch")
        };
        assert_eq!((b.count, b.option.size, b.option.chunk.as_deref()), (3, Some(3), Some(&b"id-1"[..])));
        let ks: Vec<_> = b.events().filter_map(|e| e.record.get(b"k").and_then(|v| v.as_i64())).collect();
        assert_eq!(ks, [5, 6, 7]);
    }
}
