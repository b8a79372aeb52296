//! Property tests: encode -> decode round trips for every mode; arbitrary bytes and
//! mutated frames never panic; a stream split anywhere decodes to exactly the frames of
//! the whole stream; a large frame arriving in small reads is scanned once.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{Compression, EventBatch, EventTime, Frame, FrameDecoder, Limits, Mode};

#[derive(Debug, Clone)]
enum V {
    Nil,
    Bool(bool),
    Int(i64),
    F(f64),
    Str(String),
    Bin(Vec<u8>),
    Arr(Vec<V>),
    Map(Vec<(String, V)>),
}

fn write(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Nil => raw::nil(out),
        V::Bool(b) => raw::bool(out, *b),
        V::Int(i) => raw::int(out, *i),
        V::F(f) => raw::f64(out, *f),
        V::Str(s) => raw::str(out, s.as_bytes()),
        V::Bin(b) => raw::bin(out, b),
        V::Arr(a) => {
            raw::array_header(out, a.len() as u32);
            a.iter().for_each(|x| write(x, out));
        }
        V::Map(m) => {
            raw::map_header(out, m.len() as u32);
            for (k, x) in m {
                raw::str(out, k.as_bytes());
                write(x, out);
            }
        }
    }
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Bool),
        any::<i64>().prop_map(V::Int),
        any::<f64>().prop_map(V::F),
        ".{0,40}".prop_map(V::Str),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(V::Bin),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Arr),
            proptest::collection::vec(("[a-z]{1,8}", inner), 0..6).prop_map(V::Map),
        ]
    })
}

fn record() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(("[a-z_]{1,10}", value()), 0..8).prop_map(|m| {
        let mut out = Vec::new();
        write(&V::Map(m), &mut out);
        out
    })
}

fn time() -> impl Strategy<Value = (EventTime, TimeFormat)> {
    (any::<u32>(), 0u32..1_000_000_000, any::<bool>()).prop_map(|(s, n, et)| {
        if et {
            (EventTime::new(s, n), TimeFormat::EventTime)
        } else {
            (EventTime::new(s, 0), TimeFormat::Integer)
        }
    })
}

#[derive(Debug, Clone, Copy)]
enum M {
    Message,
    Forward,
    PackedBin,
    PackedStr,
    Gzip,
}

fn mode() -> impl Strategy<Value = M> {
    prop_oneof![Just(M::Message), Just(M::Forward), Just(M::PackedBin), Just(M::PackedStr), Just(M::Gzip)]
}

/// Encodes a frame and returns it with the events it carries.
fn build(m: M, tag: &str, events: &[((EventTime, TimeFormat), Vec<u8>)], chunk: Option<&str>) -> Vec<u8> {
    let opt = OptionsOut { chunk: chunk.map(str::as_bytes), ..Default::default() };
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for ((t, f), r) in events {
        encode::entry(&mut entries, *t, *f, r);
    }
    match m {
        M::Message => {
            let ((t, f), r) = &events[0];
            encode::message(&mut out, tag.as_bytes(), *t, *f, r, &opt);
        }
        M::Forward => encode::forward(&mut out, tag.as_bytes(), &entries, events.len() as u32, &opt),
        M::PackedBin => encode::packed_forward(&mut out, tag.as_bytes(), &entries, EntriesType::Bin, &opt),
        M::PackedStr => encode::packed_forward(&mut out, tag.as_bytes(), &entries, EntriesType::Str32, &opt),
        M::Gzip => encode::compressed_packed_forward(&mut out, tag.as_bytes(), &entries, &opt),
    }
    out
}

fn decode_stream(bytes: &[u8], pieces: &[usize]) -> Result<Vec<Frame>, spate_protocol::DecodeError> {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut cuts: Vec<usize> = pieces.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort();
    cuts.push(bytes.len());
    for c in cuts {
        if c < pos {
            continue;
        }
        buf.extend_from_slice(&bytes[pos..c]);
        pos = c;
        while let Some(f) = dec.decode(&mut buf)? {
            out.push(f);
        }
    }
    Ok(out)
}

fn key(f: &Frame) -> Option<(Bytes, Bytes, u32, Mode, Option<Bytes>)> {
    match f {
        Frame::Events(b) => Some((b.tag.clone(), b.entries.clone(), b.count, b.mode, b.option.chunk.clone())),
        Frame::Heartbeat => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_every_mode(m in mode(), tag in "[a-z.]{1,20}", events in proptest::collection::vec((time(), record()), 1..8), chunk in proptest::option::of("[A-Za-z0-9+/=\n]{1,24}")) {
        let events = if matches!(m, M::Message) { events[..1].to_vec() } else { events };
        let bytes = build(m, &tag, &events, chunk.as_deref());
        let frames = decode_stream(&bytes, &[]).unwrap();
        prop_assert_eq!(frames.len(), 1);
        let Frame::Events(b) = &frames[0] else { panic!("heartbeat") };
        prop_assert_eq!(&b.tag[..], tag.as_bytes());
        prop_assert_eq!(b.count as usize, events.len());
        prop_assert_eq!(b.invalid, 0);
        prop_assert_eq!(b.option.chunk.as_deref(), chunk.as_deref().map(str::as_bytes));
        let want_mode = match m { M::Message => Mode::Message, M::Forward => Mode::Forward, M::PackedBin | M::PackedStr => Mode::PackedForward, M::Gzip => Mode::CompressedPackedForward };
        prop_assert_eq!(b.mode, want_mode);
        if matches!(m, M::Gzip) {
            prop_assert_eq!(b.option.compressed, Some(Compression::Gzip));
        }
        for (ev, ((t, _), r)) in b.events().zip(&events) {
            prop_assert_eq!(ev.time, *t);
            prop_assert_eq!(ev.record.as_bytes(), &r[..]);
        }
    }

    #[test]
    fn split_anywhere_equals_whole(frames in proptest::collection::vec((mode(), "[a-z]{1,6}", proptest::collection::vec((time(), record()), 1..4)), 1..5), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let mut stream = Vec::new();
        for (m, tag, evs) in &frames {
            let evs = if matches!(m, M::Message) { evs[..1].to_vec() } else { evs.clone() };
            stream.extend(build(*m, tag, &evs, Some("c")));
            stream.push(0xc0); // heartbeat between frames
        }
        let whole: Vec<_> = decode_stream(&stream, &[]).unwrap().iter().map(key).collect();
        let split: Vec<_> = decode_stream(&stream, &cuts).unwrap().iter().map(key).collect();
        prop_assert_eq!(whole.len(), frames.len() * 2);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), cuts in proptest::collection::vec(any::<usize>(), 0..4)) {
        let limits = Limits { max_frame_size: 4096, max_inflated_size: 4096, max_depth: 16 };
        let mut dec = FrameDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut pos = 0;
        let mut cs: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cs.sort();
        cs.push(bytes.len());
        'outer: for c in cs {
            if c < pos { continue; }
            buf.extend_from_slice(&bytes[pos..c]);
            pos = c;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(Frame::Events(b))) => { for e in b.events() { let mut o = Vec::new(); e.record.write_json(&mut o); } }
                    Ok(Some(Frame::Heartbeat)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        // Never holds more than the limit plus one read of unconsumed bytes.
        prop_assert!(dec.pending() <= 4096);
    }

    #[test]
    fn mutated_valid_frames_never_panic(m in mode(), events in proptest::collection::vec((time(), record()), 1..4), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let events = if matches!(m, M::Message) { events[..1].to_vec() } else { events };
        let mut bytes = build(m, "t", &events, Some("c"));
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        let n = bytes.len();
        bytes.truncate(cut % (n + 1));
        let limits = Limits { max_frame_size: 1 << 16, max_inflated_size: 1 << 16, max_depth: 16 };
        let mut dec = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if let Frame::Events(b) = f {
                for e in b.events() { let mut o = Vec::new(); e.record.write_json(&mut o); let _ = e.record.get(b"x"); }
            }
        }
    }
}

#[test]
fn every_byte_boundary_of_a_mixed_stream() {
    let mut stream = Vec::new();
    let r = {
        let mut r = Vec::new();
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"k");
        raw::str(&mut r, b"v");
        r
    };
    let evs = vec![
        ((EventTime::new(1, 2), TimeFormat::EventTime), r.clone()),
        ((EventTime::new(3, 0), TimeFormat::Integer), r),
    ];
    for m in [M::Message, M::Forward, M::PackedBin, M::PackedStr, M::Gzip] {
        let e = if matches!(m, M::Message) { evs[..1].to_vec() } else { evs.clone() };
        stream.extend(build(m, "tag.x", &e, Some("id\n")));
    }
    let whole: Vec<_> = decode_stream(&stream, &[]).unwrap().iter().map(key).collect();
    assert_eq!(whole.len(), 5);
    for cut in 0..=stream.len() {
        let split: Vec<_> = decode_stream(&stream, &[cut]).unwrap().iter().map(key).collect();
        assert_eq!(split, whole, "split at {cut}");
    }
    // And one byte at a time.
    let all: Vec<usize> = (0..stream.len()).collect();
    let split: Vec<_> = decode_stream(&stream, &all).unwrap().iter().map(key).collect();
    assert_eq!(split, whole);
}

#[test]
fn large_frame_in_small_reads_is_scanned_once() {
    // ~8 MiB PackedForward frame fed in 4 KiB reads: the decoder's scan position only
    // moves forward (no rescans from the frame start), and each call does work
    // proportional to the new bytes.
    let mut entries = Vec::new();
    let mut r = Vec::new();
    raw::map_header(&mut r, 1);
    raw::str(&mut r, b"message");
    raw::str(&mut r, &[b'x'; 100]);
    let mut n = 0u32;
    while entries.len() < 8 << 20 {
        encode::entry(&mut entries, EventTime::new(n, 0), TimeFormat::EventTime, &r);
        n += 1;
    }
    // Forward mode: the decoder must walk every entry (PackedForward is one length jump).
    let mut frame = Vec::new();
    encode::forward(&mut frame, b"big", &entries, n, &OptionsOut::default());
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut last = 0;
    let mut got = None;
    for chunk in frame.chunks(4096) {
        buf.extend_from_slice(chunk);
        match dec.decode(&mut buf).unwrap() {
            None => {
                let p = dec.pending();
                assert!(p >= last, "scan position went back: {p} < {last}");
                assert!(p <= buf.len(), "scanned past the data");
                // Scanning stops at most one entry short of the received data.
                assert!(buf.len() - p < 4096 + 200, "scan lagging behind: {} of {}", p, buf.len());
                last = p;
            }
            Some(f) => got = Some(f),
        }
    }
    let Some(Frame::Events(b)) = got else { panic!("no frame") };
    assert_eq!(b.count, n);
}

#[test]
fn batch_from_entries_counts_invalid_events() {
    let mut e = Vec::new();
    let mut r = Vec::new();
    raw::map_header(&mut r, 0);
    encode::entry(&mut e, EventTime::new(1, 0), TimeFormat::EventTime, &r);
    // [ "not a time", {} ]
    e.push(0x92);
    raw::str(&mut e, b"x");
    e.extend_from_slice(&r);
    // [ 5, "not a map" ]
    e.push(0x92);
    raw::uint(&mut e, 5);
    raw::str(&mut e, b"y");
    // a lone integer, not an entry
    raw::uint(&mut e, 7);
    let b = EventBatch::from_entries(
        Bytes::from_static(b"t"),
        Bytes::from(e),
        spate_protocol::EntriesFormat::Packed,
        Mode::PackedForward,
        Default::default(),
        100,
    )
    .unwrap();
    assert_eq!((b.count, b.invalid), (1, 3));
    assert_eq!(b.events().count(), 1);
}
