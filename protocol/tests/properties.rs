//! Property tests of the decoder:
//!
//! - encode -> decode round trips for every mode (Message, Forward, PackedForward with
//!   bin and str32 entries, CompressedPackedForward with gzip and zstd) with arbitrary
//!   tags, records, times, chunk ids and sizes;
//! - arbitrary bytes, and arbitrary mutations of valid frames, decoded with small limits
//!   return `Ok` or `Err` and never panic, and the decoder never holds more than its
//!   limits;
//! - a stream of several frames split anywhere (every byte boundary, random cuts, one
//!   byte at a time) decodes to exactly the frames of the whole stream, for msgpack and
//!   for JSON streams;
//! - a compressed frame inflated a slice at a time ([`FrameDecoder::decode_deferred`] and
//!   an `Inflater`), whatever the slice size and however its bytes are damaged, gives
//!   the same entries and counts as inflating it whole, or fails where that fails;
//! - a large frame arriving in 4 KiB reads is scanned once: `pending()` only grows, and
//!   the decoder's scanning work (`scan_steps()`) is linear in the frame's size.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{
    Compression, DecodeError, Decoded, EntriesFormat, EventBatch, EventTime, Frame, FrameDecoder, Limits, Mode, Scan,
};
use spate_testkit::wire::{self, Wire};

/// A msgpack value to generate records from.
#[derive(Debug, Clone)]
enum V {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
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
        V::UInt(u) => raw::uint(out, *u),
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
        any::<u64>().prop_map(V::UInt),
        any::<f64>().prop_map(V::F),
        "\\PC{0,40}".prop_map(V::Str),
        ".{250,300}".prop_map(V::Str),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(V::Bin),
    ];
    // Containers up to 18 elements, so array16/map16 headers appear too.
    leaf.prop_recursive(3, 24, 18, |inner| {
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 0..4).prop_map(V::Arr),
            3 => proptest::collection::vec(("[a-z]{1,8}", inner.clone()), 0..4).prop_map(V::Map),
            1 => proptest::collection::vec(inner, 16..18).prop_map(V::Arr),
        ]
    })
}

/// An encoded map: the record of an event.
fn record() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(("\\PC{1,10}", value()), 0..8).prop_map(|m| {
        let mut out = Vec::new();
        write(&V::Map(m), &mut out);
        out
    })
}

/// Tags: short ASCII ones like real tags, and arbitrary text up to str16 lengths.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9_.]{0,30}", "\\PC{0,40}", "\\PC{200,300}"]
}

/// Chunk ids: fluentd's are base64 with a trailing newline; anything must round-trip.
fn chunk() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof!["[A-Za-z0-9+/]{22}==\n", "\\PC{0,64}"])
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

type Events = Vec<((EventTime, TimeFormat), Vec<u8>)>;

fn mode() -> impl Strategy<Value = Wire> {
    proptest::sample::select(&Wire::ALL[..])
}

/// Encodes one frame of `events` (callers pass one event for Message mode).
fn build(m: Wire, tag: &str, events: &[((EventTime, TimeFormat), Vec<u8>)], opt: OptionsOut<'_>) -> Vec<u8> {
    wire::frame(m, tag.as_bytes(), events.iter().map(|((t, f), r)| (*t, *f, r)), &opt)
}

/// Decodes `bytes` fed in pieces cut at `cuts` (any order, any values: taken modulo the
/// length), draining every complete frame after each piece.
fn decode_stream(bytes: &[u8], cuts: &[usize], limits: Limits) -> Result<Vec<Frame>, DecodeError> {
    let mut dec = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut pos = 0;
    for c in cuts {
        buf.extend_from_slice(&bytes[pos..c.max(pos)]);
        pos = c.max(pos);
        while let Some(f) = dec.decode(&mut buf)? {
            out.push(f);
        }
    }
    assert!(buf.is_empty(), "{} bytes of an incomplete frame left", buf.len());
    assert_eq!(dec.consumed(), bytes.len() as u64);
    Ok(out)
}

fn whole(bytes: &[u8]) -> Vec<Frame> {
    decode_stream(bytes, &[], Limits::default()).unwrap()
}

fn one_batch(frames: &[Frame]) -> &EventBatch {
    assert_eq!(frames.len(), 1);
    match &frames[0] {
        Frame::Events(b) => b,
        Frame::Heartbeat => panic!("a heartbeat"),
    }
}

/// Decodes and uses everything a frame offers, as an output would.
fn touch(f: &Frame) {
    if let Frame::Events(b) = f {
        let mut o = Vec::new();
        for e in b.events() {
            e.record.write_json(&mut o);
            let _ = e.record.get(b"k");
            for (k, v) in e.record.fields() {
                let _ = (k.as_str(), v.kind(), v.as_f64(), v.as_array().map(Iterator::count));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_every_mode(
        m in mode(),
        tag in tag(),
        events in proptest::collection::vec((time(), record()), 1..20),
        chunk in chunk(),
        size in proptest::option::of(any::<u64>()),
    ) {
        let events: Events = if m == Wire::Message { events[..1].to_vec() } else { events };
        let opt = OptionsOut { chunk: chunk.as_deref().map(str::as_bytes), size, ..Default::default() };
        let bytes = build(m, &tag, &events, opt);
        let frames = whole(&bytes);
        let b = one_batch(&frames);
        prop_assert_eq!(&b.tag[..], tag.as_bytes());
        prop_assert_eq!((b.count as usize, b.invalid), (events.len(), 0));
        prop_assert_eq!(b.option.chunk.as_deref(), chunk.as_deref().map(str::as_bytes));
        prop_assert_eq!(b.option.size, size);
        prop_assert_eq!(b.wire_len, bytes.len());
        let (want_mode, want_compressed) = match m {
            Wire::Message => (Mode::Message, None),
            Wire::Forward => (Mode::Forward, None),
            Wire::PackedBin | Wire::PackedStr => (Mode::PackedForward, None),
            Wire::Gzip => (Mode::CompressedPackedForward, Some(Compression::Gzip)),
            Wire::Zstd => (Mode::CompressedPackedForward, Some(Compression::Zstd)),
        };
        prop_assert_eq!(b.mode, want_mode);
        prop_assert_eq!(b.option.compressed, want_compressed);
        let got: Vec<_> = b.events().map(|e| (e.time, e.record.as_bytes().to_vec())).collect();
        let want: Vec<_> = events.iter().map(|((t, _), r)| (*t, r.clone())).collect();
        prop_assert_eq!(got, want);
        // Entries are the encoded [time, record] pairs byte for byte (Message mode: time
        // then record), so pass-through can forward them unchanged.
        let mut entries = Vec::new();
        for ((t, f), r) in &events {
            if m == Wire::Message {
                encode::time(&mut entries, *t, *f);
                entries.extend_from_slice(r);
            } else {
                encode::entry(&mut entries, *t, *f, r);
            }
        }
        prop_assert_eq!(&b.entries[..], &entries[..]);
        // The ack echoes the chunk id byte for byte.
        if let Some(c) = &b.option.chunk {
            let mut ack = Vec::new();
            encode::ack(&mut ack, c);
            prop_assert_eq!(encode::parse_ack(&ack).unwrap(), chunk.as_deref().unwrap().as_bytes());
        }
    }

    #[test]
    fn record_lookup_matches_a_linear_scan(
        fields in proptest::collection::vec((prop_oneof!["[ab]", "k{31,33}", "\\PC{0,12}"], value()), 0..20),
        probe in prop_oneof!["[ab]", "k{31,33}", "\\PC{0,12}"],
    ) {
        // Short keys repeat (the last one wins, as in fluentd's Ruby Hash); 31 to 33
        // bytes cross from fixstr to str8.
        let mut r = Vec::new();
        write(&V::Map(fields.clone()), &mut r);
        let rr = spate_protocol::RecordRef::new(&r).expect("a record");
        prop_assert_eq!(rr.len(), fields.len());
        let scan = rr.fields().filter(|(k, _)| k.as_str() == Some(probe.as_bytes())).last().map(|(_, v)| v);
        prop_assert_eq!(rr.get(probe.as_bytes()), scan);
        let want = fields.iter().rev().find(|(k, _)| *k == probe).map(|(_, v)| {
            let mut b = Vec::new();
            write(v, &mut b);
            b
        });
        prop_assert_eq!(rr.get(probe.as_bytes()).map(|v| v.as_bytes().to_vec()), want);
    }

    #[test]
    fn split_anywhere_equals_whole(
        frames in proptest::collection::vec((mode(), tag(), proptest::collection::vec((time(), record()), 1..4), chunk()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut stream = Vec::new();
        for (i, (m, tag, evs, chunk)) in frames.iter().enumerate() {
            let evs = if *m == Wire::Message { evs[..1].to_vec() } else { evs.clone() };
            let opt = OptionsOut { chunk: chunk.as_deref().map(str::as_bytes), ..Default::default() };
            stream.extend(build(*m, tag, &evs, opt));
            if i % 2 == 0 {
                stream.push(0xc0); // a heartbeat between frames
            }
        }
        let whole = whole(&stream);
        prop_assert_eq!(whole.len(), frames.len() + frames.len().div_ceil(2));
        let split = decode_stream(&stream, &cuts, Limits::default()).unwrap();
        prop_assert_eq!(&split, &whole);
        // Scanned (Message frames read in place), split the same way.
        let (scanned, _) = scan_stream(&stream, &cuts);
        prop_assert_eq!(&scanned.unwrap(), &whole);
        // And a few single cuts, spread over the stream.
        for k in 1..8 {
            let split = decode_stream(&stream, &[stream.len() * k / 8], Limits::default()).unwrap();
            prop_assert_eq!(&split, &whole);
        }
    }

    #[test]
    fn json_streams_split_anywhere_equal_whole(
        frames in proptest::collection::vec(("[a-z.]{1,10}", 0u32..2_000_000_000, "\\PC{0,20}", "[ \\n\\r\\t]{0,3}", any::<bool>()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        // fluentd's in_forward takes JSON arrays on the same port: Message and Forward
        // frames, with whitespace between them.
        let mut stream = String::new();
        for (i, (tag, t, msg, ws, forward)) in frames.iter().enumerate() {
            let msg = serde_json::to_string(msg).unwrap();
            if *forward {
                stream += &format!(r#"["{tag}",[[{t},{{"msg":{msg}}}],[{t},{{"n":{i}}}]],{{"chunk":"c{i}"}}]"#);
            } else {
                stream += &format!(r#"["{tag}", {t}, {{"msg": {msg}, "n": [{i}, 1.5, null, true]}}]"#);
            }
            stream += ws;
        }
        let bytes = stream.as_bytes();
        let whole = whole(bytes);
        prop_assert_eq!(whole.len(), frames.len());
        for (f, (tag, t, msg, _, forward)) in whole.iter().zip(&frames) {
            let Frame::Events(b) = f else { panic!() };
            prop_assert_eq!(&b.tag[..], tag.as_bytes());
            prop_assert_eq!(b.mode, if *forward { Mode::Forward } else { Mode::Message });
            let ev = b.events().next().unwrap();
            prop_assert_eq!(ev.time, EventTime::new(*t, 0));
            prop_assert_eq!(ev.record.get(b"msg").unwrap().as_str(), Some(msg.as_bytes()));
        }
        prop_assert_eq!(decode_stream(bytes, &cuts, Limits::default()).unwrap(), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop_oneof![Just(vec![]), Just(vec![0x92]), Just(vec![0x93, 0xa1, b't']), Just(b"[\"t\",".to_vec()), Just(vec![0xdd])],
        body in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let bytes = [prefix, body].concat();
        let limits = Limits { max_frame_size: 256, max_inflated_size: 512, max_depth: 8 };
        let mut dec = FrameDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut cs: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cs.sort_unstable();
        cs.push(bytes.len());
        let mut pos = 0;
        'feed: for c in cs {
            buf.extend_from_slice(&bytes[pos..c.max(pos)]);
            pos = c.max(pos);
            loop {
                let before = dec.consumed();
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => {
                        touch(&f);
                        let Frame::Events(b) = f else { continue };
                        // What a frame holds is bounded by the limits (JSON converted
                        // to msgpack may grow: "0.5" becomes a 9-byte float).
                        prop_assert!(b.wire_len <= 256);
                        let max_entries = if dec.is_json() { 3 * 256 } else { 512 };
                        prop_assert!(b.entries.len() <= max_entries);
                        prop_assert!(dec.consumed() - before >= b.wire_len as u64);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(!e.to_string().is_empty());
                        break 'feed;
                    }
                }
                // An incomplete frame is never scanned past the frame size limit.
                prop_assert!(dec.pending() <= 256);
            }
            prop_assert!(dec.pending() <= 256);
        }
        prop_assert_eq!(dec.consumed() + buf.len() as u64, pos as u64);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        m in mode(),
        events in proptest::collection::vec((time(), record()), 1..4),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        insert in proptest::option::of((any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))),
        cut in any::<usize>(),
        split in any::<usize>(),
    ) {
        let events = if m == Wire::Message { events[..1].to_vec() } else { events };
        let mut bytes = build(m, "t", &events, OptionsOut { chunk: Some(b"c"), ..Default::default() });
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        if let Some((at, ins)) = insert {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, ins);
        }
        let n = bytes.len();
        bytes.truncate(cut % (n + 1));
        let limits = Limits { max_frame_size: 1 << 14, max_inflated_size: 1 << 14, max_depth: 16 };
        // Whole and in two pieces: the same outcome, and no panic either way.
        let a = decode_stream_lossy(&bytes, &[], limits);
        let b = decode_stream_lossy(&bytes, &[split], limits);
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sliced_inflation_equals_whole_inflation(
        zstd in any::<bool>(),
        events in proptest::collection::vec((time(), record()), 1..40),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        slice in prop_oneof![1usize..64, 64usize..5000],
        limit in prop_oneof![Just(1usize << 20), 16usize..2000],
    ) {
        let m = if zstd { Wire::Zstd } else { Wire::Gzip };
        let mut bytes = build(m, "t", &events, OptionsOut { chunk: Some(b"c"), ..Default::default() });
        // Damage only the compressed payload (the frame's last bytes before the options).
        let n = bytes.len();
        for (i, b) in flips {
            let at = n / 2 + i % (n / 2);
            bytes[at] = b;
        }
        let limits = Limits { max_inflated_size: limit, ..Limits::default() };
        let whole = FrameDecoder::new(limits).decode(&mut BytesMut::from(&bytes[..]));
        let deferred = FrameDecoder::new(limits).decode_deferred(&mut BytesMut::from(&bytes[..]));
        let streamed: Result<(Vec<u8>, u32, u32), String> = match deferred {
            Ok(Some(Decoded::Compressed(c))) => {
                prop_assert_eq!(c.wire_len, bytes.len());
                match c.inflater(&limits) {
                    Err(e) => Err(e.to_string()),
                    Ok(mut inf) => {
                        let (mut all, mut count, mut invalid) = (Vec::new(), 0, 0);
                        loop {
                            // Never more than the state, one slice and one carried entry.
                            prop_assert!(inf.memory(slice) <= (8 << 20) + (256 << 10) + slice + limit);
                            match inf.next_slice(slice) {
                                Ok(Some(s)) => {
                                    let b = c.batch(s);
                                    prop_assert_eq!(b.events().count(), b.count as usize);
                                    all.extend_from_slice(&b.entries);
                                    count += b.count;
                                    invalid += b.invalid;
                                }
                                Ok(None) => break Ok((all, count, invalid)),
                                Err(e) => break Err(e.to_string()),
                            }
                        }
                    }
                }
            }
            Ok(Some(Decoded::Frame(f))) => match f {
                Frame::Events(b) => Ok((b.entries.to_vec(), b.count, b.invalid)),
                Frame::Heartbeat => Err("heartbeat".into()),
            },
            Ok(None) => Err("incomplete".into()),
            Err(e) => Err(e.to_string()),
        };
        match whole {
            Ok(Some(Frame::Events(b))) => {
                prop_assert_eq!(streamed, Ok((b.entries.to_vec(), b.count, b.invalid)));
            }
            _ => prop_assert!(streamed.is_err(), "whole failed, streamed gave {:?}", streamed),
        }
    }
}

/// Like [`decode_stream`], but stops at the first error (returned with the frames
/// before it) and tolerates an incomplete frame at the end.
fn decode_stream_lossy(bytes: &[u8], cuts: &[usize], limits: Limits) -> (Vec<Frame>, Option<DecodeError>) {
    let mut dec = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut pos = 0;
    for c in cuts {
        buf.extend_from_slice(&bytes[pos..c.max(pos)]);
        pos = c.max(pos);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    touch(&f);
                    out.push(f);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn kv(k: &[u8], v: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    raw::map_header(&mut r, 1);
    raw::str(&mut r, k);
    raw::str(&mut r, v);
    r
}

#[test]
fn every_byte_boundary_of_a_mixed_stream() {
    let evs = vec![
        ((EventTime::new(1, 2), TimeFormat::EventTime), kv(b"k", b"v")),
        ((EventTime::new(3, 0), TimeFormat::Integer), kv(b"message", &[b'm'; 300])),
    ];
    let mut stream = Vec::new();
    for m in Wire::ALL {
        let e = if m == Wire::Message { evs[..1].to_vec() } else { evs.clone() };
        stream.extend(build(m, "tag.x", &e, OptionsOut { chunk: Some(b"id\n"), size: Some(2), compressed: None }));
        stream.push(0xc0);
    }
    let whole = whole(&stream);
    assert_eq!(whole.len(), 2 * Wire::ALL.len());
    for cut in 0..=stream.len() {
        assert_eq!(decode_stream(&stream, &[cut], Limits::default()).unwrap(), whole, "split at {cut}");
    }
    let every: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(decode_stream(&stream, &every, Limits::default()).unwrap(), whole, "one byte at a time");
}

#[test]
fn every_byte_boundary_of_a_json_stream() {
    let stream = br#"["a", 1, {"k": "v\"]}"}] ["b", [[2, {"x": [1, {"y": null}]}], [3, {}]], {"chunk": "q"}]
{"not": "a frame"}"#;
    let full = decode_stream_lossy(stream, &[], Limits::default());
    assert_eq!(full.0.len(), 2);
    assert!(full.1.is_some(), "the object is not a frame");
    for cut in 0..=stream.len() {
        assert_eq!(decode_stream_lossy(stream, &[cut], Limits::default()), full, "split at {cut}");
    }
}

/// Feeds `frame` in 4 KiB reads, checking after each that the scan only moved forward
/// and kept up with the data (it stops at most `max_lag` bytes short of what arrived).
/// Returns the frame, the total scanning steps and the number of reads.
fn feed_in_reads(frame: &[u8], max_lag: usize) -> (EventBatch, u64, u64) {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let (mut last, mut calls, mut got) = (0, 0u64, None);
    for chunk in frame.chunks(4096) {
        buf.extend_from_slice(chunk);
        calls += 1;
        match dec.decode(&mut buf).unwrap() {
            None => {
                let p = dec.pending();
                assert!(p >= last, "the scan went back: {p} < {last}");
                assert!(p <= buf.len(), "scanned past the data");
                assert!(buf.len() - p <= max_lag, "the scan lags: at {p} of {}", buf.len());
                last = p;
            }
            Some(Frame::Events(b)) => got = Some(b),
            Some(f) => panic!("{f:?}"),
        }
    }
    assert!(buf.is_empty());
    (got.expect("the frame"), dec.scan_steps(), calls)
}

#[test]
fn large_frames_in_small_reads_are_scanned_once() {
    // ~8 MiB of entries with 140-byte records.
    let r = kv(b"message", &[b'x'; 128]);
    let mut entries = Vec::new();
    let mut n = 0u32;
    while entries.len() < 8 << 20 {
        encode::entry(&mut entries, EventTime::new(n, 0), TimeFormat::EventTime, &r);
        n += 1;
    }

    // Forward mode: finding the frame's end walks every value (array, entry, time,
    // map, key, value: 5 headers per event, after the frame's array, tag and entries
    // array). Whole, the frame is walked once, in one pass.
    let mut frame = Vec::new();
    encode::forward(&mut frame, b"big", &entries, n, &OptionsOut::default());
    let values = 3 + 5 * n as u64;
    let mut dec = FrameDecoder::new(Limits::default());
    assert!(dec.decode(&mut BytesMut::from(&frame[..])).unwrap().is_some());
    assert_eq!(dec.scan_steps(), values, "a whole frame is walked once");
    // In 4 KiB reads: the one-pass walk runs out of bytes in the first read (at most
    // 4096 values), then the resumable walk examines each header once, plus at most
    // one per read for a value cut by the read's end.
    let (b, steps, calls) = feed_in_reads(&frame, r.len() + 16);
    assert_eq!(b.count, n);
    assert!(steps <= values + calls + 4096, "{steps} steps for {values} values in {calls} reads: rescanned");
    assert!(steps >= values);

    // PackedForward: the entries are one str32 value, skipped by its length; the scan
    // sits at its header until the last read, one step per read.
    let mut frame = Vec::new();
    encode::packed_forward(&mut frame, b"big", &entries, EntriesType::Str32, &OptionsOut::default());
    let (b, packed_steps, calls) = feed_in_reads(&frame, frame.len());
    assert_eq!(b.count, n);
    assert!(packed_steps <= 3 + 3 + calls, "{packed_steps} steps in {calls} reads");

    // (A decoder that rescanned from the frame's start on every read would take about
    // calls * values / 2 steps for the Forward frame: hundreds of times more.)
    assert!(calls * values / 2 > 100 * steps);
}

#[test]
fn large_json_frame_in_small_reads_is_scanned_once() {
    let mut s = String::from(r#"["big", ["#);
    for i in 0..40_000 {
        if i > 0 {
            s.push(',');
        }
        s += &format!(r#"[{i}, {{"message": "{}"}}]"#, "y".repeat(100));
    }
    s += "]]";
    let (b, steps, _) = feed_in_reads(s.as_bytes(), 0);
    assert_eq!(b.count, 40_000);
    assert_eq!(steps, s.len() as u64, "each JSON byte is scanned exactly once");
}

#[test]
fn batch_from_entries_counts_invalid_events() {
    let mut e = Vec::new();
    let empty = {
        let mut r = Vec::new();
        raw::map_header(&mut r, 0);
        r
    };
    encode::entry(&mut e, EventTime::new(1, 0), TimeFormat::EventTime, &empty);
    // [ "not a time", {} ]
    e.push(0x92);
    raw::str(&mut e, b"x");
    e.extend_from_slice(&empty);
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

/// [`FrameDecoder::scan`] over a stream cut at `cuts`, each frame it reads in place
/// turned into the batch `decode` gives for it, the others parsed with
/// `parse_scanned`; also returns how many it read in place.
fn scan_stream(bytes: &[u8], cuts: &[usize]) -> (Result<Vec<Frame>, DecodeError>, usize) {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let (mut out, mut in_place) = (Vec::new(), 0);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut pos = 0;
    for c in cuts {
        buf.extend_from_slice(&bytes[pos..c.max(pos)]);
        pos = c.max(pos);
        loop {
            match dec.scan(&buf) {
                Ok(Scan::Message { tag, entry, valid, len }) => {
                    out.push(Frame::Events(EventBatch {
                        tag: Bytes::copy_from_slice(tag),
                        entries: Bytes::copy_from_slice(entry),
                        format: EntriesFormat::Message,
                        count: valid as u32,
                        invalid: !valid as u32,
                        mode: Mode::Message,
                        option: Default::default(),
                        wire_len: len,
                    }));
                    in_place += 1;
                    let _ = buf.split_to(len);
                }
                Ok(Scan::Other { len }) => {
                    let raw = buf.split_to(len).freeze();
                    match dec.parse_scanned(raw.clone()) {
                        Ok(Decoded::Frame(f)) => out.push(f),
                        // Left compressed, as decode_deferred leaves it: inflated whole
                        // here to compare with decode.
                        Ok(Decoded::Compressed(_)) => {
                            out.push(spate_protocol::parse_frame(raw, &Limits::default()).unwrap())
                        }
                        Err(e) => return (Err(e), in_place),
                    }
                }
                Ok(Scan::Partial) => break,
                Ok(Scan::Json) => panic!("a msgpack stream"),
                Err(e) => return (Err(e), in_place),
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes of an incomplete frame left", buf.len());
    (Ok(out), in_place)
}

/// Message-mode frames the stream decoder takes its flat shortcut on (`[tag, time,
/// record]` whose record is the last element) decode as `parse_frame` decodes them
/// alone: valid and invalid records, every time format, with and without options.
#[test]
fn message_frames_decode_alike_in_a_stream_and_alone() {
    let rec = |extra: &[u8]| {
        let mut r = vec![0x82];
        for (k, v) in [(&b"a"[..], &b"1"[..]), (b"b", extra)] {
            raw::str(&mut r, k);
            raw::str(&mut r, v);
        }
        r
    };
    let times: [&[u8]; 4] = [
        &[0xce, 0x5f, 0x00, 0x00, 0x00],
        &[0xd7, 0x00, 0x5f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
        &[0xcb, 0x41, 0xd7, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0xa1, b'x'],
    ];
    let records: Vec<Vec<u8>> = vec![
        rec(b"v"),
        vec![0x80],
        vec![0x2a],
        vec![0xa3, b'a', b'b', b'c'],
        vec![0x81, 0xa1, b'k', 0x91, 0x01],
        vec![0xdf, 0, 0, 0, 1, 0xa1, b'k', 0x01],
    ];
    for t in times {
        for r in &records {
            for option in [None, Some(vec![0x81, 0xa4, b's', b'i', b'z', b'e', 0x01])] {
                let mut f = vec![if option.is_some() { 0x94 } else { 0x93 }, 0xa3, b't', b'a', b'g'];
                f.extend_from_slice(t);
                f.extend_from_slice(r);
                if let Some(o) = &option {
                    f.extend_from_slice(o);
                }
                let alone = spate_protocol::parse_frame(Bytes::from(f.clone()), &Limits::default());
                let streamed = decode_stream(&f, &[], Limits::default()).map(|mut v| v.remove(0));
                match (&alone, &streamed) {
                    (Ok(a), Ok(s)) => assert_eq!(a, s, "{f:02x?}"),
                    (Err(a), Err(s)) => assert_eq!(a.kind, s.kind, "{f:02x?}"),
                    _ => panic!("{f:02x?}: alone {alone:?}, streamed {streamed:?}"),
                }
                // Read in place (or parsed after the scan): the same frame.
                let (scanned, in_place) = scan_stream(&f, &[]);
                match (&streamed, scanned.map(|mut v| v.remove(0))) {
                    (Ok(s), Ok(sc)) => assert_eq!(s, &sc, "{f:02x?}"),
                    (Err(s), Err(sc)) => assert_eq!(s.kind, sc.kind, "{f:02x?}"),
                    (s, sc) => panic!("{f:02x?}: streamed {s:?}, scanned {sc:?}"),
                }
                // Frames loggers send, `[tag, time, flat map]` without options, are
                // the ones read in place.
                // (A scalar record too, as an invalid event; a string where the time
                // goes makes it a PackedForward frame; the scan calls fixmaps flat,
                // not map32s.)
                let message = t[0] != 0xa1 && r != &records[4] && r != &records[5];
                assert_eq!(in_place == 1, option.is_none() && message, "{f:02x?}");
            }
        }
    }
}

/// A frame the server puts back (`unscan`, its bytes left in or returned to the front
/// of the buffer, as in_forward does when routing the run before it has to wait) is
/// found again, and its bytes count once; an emptied buffer scanned between reads does
/// not cost the next frame its in-place reading.
#[test]
fn unscanned_frames_are_found_again_and_counted_once() {
    let mut msg = Vec::new();
    let rec = [0x81, 0xa1, b'k', 0x01];
    encode::message(&mut msg, b"tag", EventTime::new(1, 0), TimeFormat::EventTime, &rec, &OptionsOut::default());
    let mut other = Vec::new();
    encode::forward(
        &mut other,
        b"tag",
        &{
            let mut e = vec![0x92];
            raw::event_time(&mut e, EventTime::new(2, 0));
            e.extend_from_slice(&rec);
            e
        },
        1,
        &OptionsOut::default(),
    );
    let mut stream = msg.clone();
    stream.extend_from_slice(&other);
    let mut dec = FrameDecoder::new(Limits::default());
    // An empty buffer first, as after every read.
    assert_eq!(dec.scan(&[]), Ok(Scan::Partial));
    let mut buf = BytesMut::from(&stream[..]);
    for _ in 0..2 {
        match dec.scan(&buf) {
            Ok(Scan::Message { tag, len, valid: true, .. }) => assert_eq!((tag, len), (&b"tag"[..], msg.len())),
            r => panic!("{r:?}"),
        }
        dec.unscan();
        assert_eq!(dec.consumed(), 0);
    }
    let Ok(Scan::Message { len, .. }) = dec.scan(&buf) else { panic!() };
    let _ = buf.split_to(len);
    let Ok(Scan::Other { len }) = dec.scan(&buf) else { panic!() };
    let raw = buf.split_to(len).freeze();
    let first = dec.parse_scanned(raw.clone()).unwrap();
    // Returned to the buffer and found again.
    dec.unscan();
    let mut back = BytesMut::from(&raw[..]);
    back.extend_from_slice(&buf);
    let Ok(Scan::Other { len }) = dec.scan(&back) else { panic!() };
    assert_eq!(dec.parse_scanned(back.split_to(len).freeze()).unwrap(), first);
    assert_eq!(dec.consumed(), stream.len() as u64);
    assert_eq!(dec.scan(&back), Ok(Scan::Partial));
}
