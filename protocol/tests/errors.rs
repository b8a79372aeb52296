//! Bad and unusual input: errors carry the byte offset and a message a user can act on
//! (wrong types, wrong arity, truncation, frame size, inflate size, nesting, reserved
//! markers, unknown compression, bad JSON); and the odd-but-valid things real clients
//! send are accepted (heartbeats, JSON streams with JSON acks, fluent-bit's
//! `[[time, meta], record]` and array32 entries, float times, nil options), with invalid
//! events counted and skipped, and chunk ids echoed byte for byte.

use bytes::BytesMut;
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{
    Compression, DecodeError, EntriesFormat, ErrorKind, EventTime, Frame, FrameDecoder, Limits, Mode,
};

fn decode(bytes: &[u8], limits: Limits) -> Result<Option<Frame>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    FrameDecoder::new(limits).decode(&mut buf)
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    decode(bytes, Limits::default()).expect_err("an error")
}

fn batch(bytes: &[u8]) -> spate_protocol::EventBatch {
    match decode(bytes, Limits::default()).unwrap() {
        Some(Frame::Events(b)) => b,
        other => panic!("{other:?}"),
    }
}

/// The message without the " (at byte N)" suffix.
fn message(e: &DecodeError) -> String {
    let s = e.to_string();
    let suffix = format!(" (at byte {})", e.offset);
    assert!(s.ends_with(&suffix), "{s}");
    s[..s.len() - suffix.len()].to_owned()
}

fn rec() -> Vec<u8> {
    let mut r = Vec::new();
    raw::map_header(&mut r, 1);
    raw::str(&mut r, b"k");
    raw::str(&mut r, b"v");
    r
}

fn entry(t: EventTime) -> Vec<u8> {
    let mut e = Vec::new();
    encode::entry(&mut e, t, TimeFormat::EventTime, &rec());
    e
}

#[test]
fn tag_must_be_a_string() {
    let e = decode_err(&[0x93, 0x05, 0x01, 0x80]);
    assert_eq!(e.offset, 1);
    assert_eq!(e.kind, ErrorKind::WrongType { expected: "the tag (a string)", found: "integer" });
    assert_eq!(e.to_string(), "expected the tag (a string), found integer (at byte 1)");
    let e = decode_err(&[0x92, 0xc0, 0x90]);
    assert_eq!((e.offset, message(&e)), (1, "expected the tag (a string), found nil".into()));
}

#[test]
fn arity_and_shape() {
    let e = decode_err(&[0x95, 0xa1, b't', 1, 0x80, 0xc0, 0xc0]);
    assert_eq!((e.offset, &e.kind), (0, &ErrorKind::BadArity(5)));
    assert_eq!(
        message(&e),
        "a Forward frame must be an array of 2 to 4 elements (or nil for a heartbeat), found an array of 5"
    );
    assert_eq!(decode_err(&[0x91, 0xa1, b't']).kind, ErrorKind::BadArity(1));
    assert_eq!(decode_err(&[0x90]).kind, ErrorKind::BadArity(0));
    // Forward and PackedForward take one option map at most.
    assert_eq!(decode_err(&[0x94, 0xa1, b't', 0x90, 0x80, 0x80]).kind, ErrorKind::BadArity(4));
    assert_eq!(decode_err(&[0x94, 0xa1, b't', 0xc4, 0x00, 0x80, 0x80]).kind, ErrorKind::BadArity(4));
    // Message mode needs a record after the time.
    let e = decode_err(&[0x92, 0xa1, b't', 0x05]);
    assert_eq!((e.offset, message(&e)), (3, "invalid Message-mode frame: it needs a time and a record".into()));
    // The option must be a map (or nil).
    let e = decode_err(&[0x93, 0xa1, b't', 0x90, 0x05]);
    assert_eq!((e.offset, message(&e)), (4, "expected map, found integer".into()));
    assert_eq!(batch(&[0x93, 0xa1, b't', 0x90, 0xc0]).option, spate_protocol::Options::default());
}

#[test]
fn the_first_byte_decides_msgpack_or_json() {
    for (bytes, byte) in [(&b"GET / HTTP/1.1\r\n"[..], b'G'), (&[0x81, 0xa1, b'k', 0x01][..], 0x81), (&[0x05][..], 5)] {
        let e = decode_err(bytes);
        assert_eq!((e.offset, &e.kind), (0, &ErrorKind::BadFirstByte(byte)));
    }
    assert_eq!(
        message(&decode_err(b"\x16\x03\x01")),
        "the connection's first byte 0x16 starts neither a msgpack array/nil nor a JSON array/object"
    );
}

#[test]
fn truncated_frames_are_partial_not_errors() {
    let mut f = Vec::new();
    let opt = OptionsOut { chunk: Some(b"c"), size: Some(1), ..Default::default() };
    encode::message(&mut f, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &rec(), &opt);
    let first = f.len();
    encode::packed_forward(&mut f, b"t", &entry(EventTime::new(1, 0)), EntriesType::Str32, &opt);
    for cut in 0..=f.len() {
        let mut buf = BytesMut::from(&f[..cut]);
        let mut dec = FrameDecoder::new(Limits::default());
        let mut frames = 0;
        while dec.decode(&mut buf).unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(frames, (cut >= first) as usize + (cut == f.len()) as usize, "cut {cut}");
        assert_eq!(dec.consumed() + buf.len() as u64, cut as u64, "an incomplete frame stays in the buffer");
    }
}

#[test]
fn truncated_values_inside_a_complete_frame_are_errors_at_their_offset() {
    // A PackedForward bin holding a second entry cut short: the frame is complete, its
    // entries are not. The offset points at the cut entry, counted from the stream start.
    let mut entries = entry(EventTime::new(1, 0));
    let first = entries.len();
    let second = entry(EventTime::new(2, 0));
    entries.extend_from_slice(&second[..second.len() - 3]);
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"t", &entries, EntriesType::Bin, &OptionsOut::default());
    let header = 1 + 2 + 2; // array, tag "t", bin8 header
    let e = decode_err(&f);
    // [time, {"k": "v"}] lost its last 3 bytes: the key "k" (0xa1 'k') is one short.
    assert_eq!(e.kind, ErrorKind::Truncated { missing: 1 });
    assert_eq!(e.offset as usize, header + first + 1 + 10 + 1);
    assert_eq!(message(&e), "msgpack value is truncated: it ends 1 bytes short of its declared length");

    // The same frame after a good one: offsets count from the start of the stream, and
    // the bad frame is consumed so the caller may go on.
    let mut good = Vec::new();
    encode::message(&mut good, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &rec(), &OptionsOut::default());
    let stream = [&good[..], &f[..], &good[..]].concat();
    let mut buf = BytesMut::from(&stream[..]);
    let mut dec = FrameDecoder::new(Limits::default());
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let e2 = dec.decode(&mut buf).unwrap_err();
    assert_eq!(e2.offset, e.offset + good.len() as u64);
    assert_eq!(dec.consumed(), (good.len() + f.len()) as u64);
    assert!(matches!(dec.decode(&mut buf).unwrap(), Some(Frame::Events(_))));
}

#[test]
fn frame_size_limit_fails_on_the_declared_length() {
    // A bin32 declaring 1 GiB fails on its 8 header bytes: nothing is buffered first.
    let mut f = vec![0x92, 0xa1, b't', 0xc6];
    f.extend_from_slice(&(1u32 << 30).to_be_bytes());
    let e = decode(&f, Limits { max_frame_size: 1 << 20, ..Limits::default() }).unwrap_err();
    assert_eq!(e.offset, 3);
    assert_eq!(e.kind, ErrorKind::FrameTooLarge { size: 3 + 5 + (1 << 30), limit: 1 << 20 });
    assert_eq!(
        message(&e),
        "frame is larger than the limit of 1048576 bytes (declared or received so far: 1073741832); \
         raise chunk_size_limit if this client is trusted"
    );
    // So does an array32 declaring more elements than bytes allowed.
    let mut f = vec![0x92, 0xa1, b't', 0xdd];
    f.extend_from_slice(&u32::MAX.to_be_bytes());
    let e = decode(&f, Limits { max_frame_size: 1 << 20, ..Limits::default() }).unwrap_err();
    assert_eq!((e.offset, &e.kind), (3, &ErrorKind::CountTooLarge { what: "array", count: u32::MAX as u64 }));
    // The default accepts a 256 MiB chunk (fluentd's file buffer default) with its header.
    let mut f = vec![0x92, 0xa1, b't', 0xc6];
    f.extend_from_slice(&(256u32 << 20).to_be_bytes());
    assert!(decode(&f, Limits::default()).unwrap().is_none());
    // A frame exactly at the limit passes; one byte more fails.
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"t", &entry(EventTime::new(1, 0)), EntriesType::Bin, &OptionsOut::default());
    assert!(decode(&f, Limits { max_frame_size: f.len(), ..Limits::default() }).unwrap().is_some());
    let e = decode(&f, Limits { max_frame_size: f.len() - 1, ..Limits::default() }).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::FrameTooLarge { .. }), "{e}");
}

#[test]
fn gzip_and_zstd_bombs_stop_at_the_inflate_limit() {
    let zeros = vec![0u8; 8 << 20];
    let limits = Limits { max_inflated_size: 1 << 20, ..Limits::default() };
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &zeros, &OptionsOut::default());
    let e = decode(&f, limits).unwrap_err();
    assert_eq!((e.offset, &e.kind), (3, &ErrorKind::InflateTooLarge { limit: 1 << 20 }));
    assert_eq!(message(&e), "decompressed data exceeds the limit of 1048576 bytes (decompression_size_limit)");
    let z = spate_protocol::compress::zstd_compress(&zeros, 3);
    let mut f = Vec::new();
    let opt = OptionsOut { compressed: Some(Compression::Zstd), ..Default::default() };
    encode::packed_forward(&mut f, b"t", &z, EntriesType::Bin, &opt);
    assert_eq!(decode(&f, limits).unwrap_err().kind, ErrorKind::InflateTooLarge { limit: 1 << 20 });
    // Exactly at the limit is fine.
    let e = entry(EventTime::new(1, 0));
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &e, &OptionsOut::default());
    assert!(decode(&f, Limits { max_inflated_size: e.len(), ..Limits::default() }).unwrap().is_some());
    assert!(decode(&f, Limits { max_inflated_size: e.len() - 1, ..Limits::default() }).is_err());
}

#[test]
fn zstd_frames_declaring_huge_windows_are_refused_before_allocating() {
    // A 9-byte zstd frame can ask the decoder for a 64 MiB window (zstd's own default
    // accepts up to 128 MiB). With a 1 MiB inflate limit the largest window allowed is
    // 8 MiB: refused at the header, before anything is allocated.
    // Frame: magic, descriptor 0x00 (no content size, not single-segment), window
    // descriptor exponent << 3 (window 2^(10 + exponent): 0x80 is 2^26 = 64 MiB), then
    // an empty last raw block.
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x80, 0x01, 0x00, 0x00];
    let mut f = Vec::new();
    let opt = OptionsOut { compressed: Some(Compression::Zstd), ..Default::default() };
    encode::packed_forward(&mut f, b"t", &frame, EntriesType::Bin, &opt);
    let e = decode(&f, Limits { max_inflated_size: 1 << 20, ..Limits::default() }).unwrap_err();
    assert!(matches!(&e.kind, ErrorKind::Inflate(m) if m.contains("Frame requires too much memory")), "{e}");
    // The same frame with an 8 MiB window (0x68) decodes, to nothing.
    let small = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x68, 0x01, 0x00, 0x00];
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"t", &small, EntriesType::Bin, &opt);
    let Some(Frame::Events(b)) = decode(&f, Limits { max_inflated_size: 1 << 20, ..Limits::default() }).unwrap() else {
        panic!()
    };
    assert_eq!((b.count, b.entries.len()), (0, 0));
}

#[test]
fn broken_compressed_data_is_an_error() {
    let e = entry(EventTime::new(1, 0));
    let g = spate_protocol::compress::gzip(&e, 6);
    let opt = OptionsOut { compressed: Some(Compression::Gzip), ..Default::default() };
    let bads: [Vec<u8>; 4] =
        [g[..g.len() - 1].to_vec(), g[..g.len() / 2].to_vec(), [&g[..], b"junk"].concat(), b"not gzip at all".to_vec()];
    for bad in &bads {
        let mut f = Vec::new();
        encode::packed_forward(&mut f, b"t", bad, EntriesType::Bin, &opt);
        let e = decode_err(&f);
        assert_eq!(e.offset, 3, "{e}");
        assert!(matches!(e.kind, ErrorKind::Inflate(_)), "{e}");
        assert!(message(&e).starts_with("decompression failed: "));
    }
    // Inflated entries that are not msgpack: offsets count within the inflated entries.
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &[0x92, 0xc1], &OptionsOut::default());
    let e = decode_err(&f);
    assert_eq!((e.offset, &e.kind), (1, &ErrorKind::ReservedMarker(0xc1)));
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    let mut r = vec![0x81, 0xa1, b'k'];
    r.extend(std::iter::repeat_n(0x91, 100_000));
    r.push(0xc0);
    let mut f = Vec::new();
    encode::message(&mut f, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &r, &OptionsOut::default());
    let e = decode_err(&f);
    assert_eq!(e.kind, ErrorKind::TooDeep { limit: 100 });
    assert_eq!(message(&e), "nesting deeper than 100 levels");
    // The frame array is level 1, the record 2: a lower limit counts the same way.
    let e = decode(&f, Limits { max_depth: 5, ..Limits::default() }).unwrap_err();
    assert_eq!((e.offset, &e.kind), (3 + 10 + 3 + 3, &ErrorKind::TooDeep { limit: 5 }));
    // In packed entries, depth counts from the entry.
    let mut e = vec![0x92];
    raw::event_time(&mut e, EventTime::new(1, 0));
    e.extend_from_slice(&[0x81, 0xa1, b'k', 0x91, 0x91, 0x91, 0xc0]);
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"t", &e, EntriesType::Bin, &OptionsOut::default());
    assert!(decode(&f, Limits { max_depth: 5, ..Limits::default() }).unwrap().is_some());
    let err = decode(&f, Limits { max_depth: 4, ..Limits::default() }).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooDeep { limit: 4 });
    // JSON too.
    let json = format!(r#"["t", 1, {{"k": {}1{}}}]"#, "[".repeat(200), "]".repeat(200));
    assert_eq!(decode_err(json.as_bytes()).kind, ErrorKind::TooDeep { limit: 100 });
}

#[test]
fn reserved_marker_0xc1() {
    let e = decode_err(&[0x93, 0xa1, b't', 0xc1, 0x80]);
    assert_eq!((e.offset, &e.kind), (3, &ErrorKind::ReservedMarker(0xc1)));
    assert_eq!(message(&e), "invalid msgpack: marker byte 0xc1 is never used");
    // Inside a record inside PackedForward entries: found when the entries are checked.
    let mut e = vec![0x92];
    raw::event_time(&mut e, EventTime::new(1, 0));
    e.extend_from_slice(&[0x81, 0xa1, b'k', 0xc1]);
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"t", &e, EntriesType::Bin, &OptionsOut::default());
    let err = decode_err(&f);
    assert_eq!((err.offset, &err.kind), (5 + 14, &ErrorKind::ReservedMarker(0xc1)));
}

#[test]
fn unknown_compression() {
    let mut f = vec![0x93];
    raw::str(&mut f, b"t");
    raw::bin(&mut f, b"");
    raw::map_header(&mut f, 1);
    raw::str(&mut f, b"compressed");
    let at = f.len();
    raw::str(&mut f, b"lz4");
    let e = decode_err(&f);
    assert_eq!(e.offset, at as u64);
    assert_eq!(e.kind, ErrorKind::UnsupportedCompression("lz4".into()));
    assert_eq!(message(&e), "unsupported compression \"lz4\" in option.compressed (supported: gzip, zstd, text)");
}

#[test]
fn heartbeats_between_frames() {
    assert_eq!(decode(&[0xc0], Limits::default()).unwrap(), Some(Frame::Heartbeat));
    let mut s = vec![0xc0, 0xc0];
    encode::message(&mut s, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &rec(), &OptionsOut::default());
    s.push(0xc0);
    let mut buf = BytesMut::from(&s[..]);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut got = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        got.push(matches!(f, Frame::Heartbeat));
    }
    assert_eq!(got, [true, true, false, true]);
}

#[test]
fn json_streams_starting_with_bracket_and_brace() {
    // '[' : a JSON stream of frames, with whitespace between them; acks go back as JSON.
    let s = br#"  ["j", 1700000000, {"a": [1, 2.5, "x\n"], "b": null}, {"chunk": "q\"1"}]
    ["j.fwd", [[1700000001, {"n": 1}], [1700000002.5, {"n": 2}]]]"#;
    let mut buf = BytesMut::from(&s[..]);
    let mut dec = FrameDecoder::new(Limits::default());
    // Leading whitespace before the first '[' is not JSON: the first byte decides.
    assert_eq!(dec.decode(&mut buf).unwrap_err().kind, ErrorKind::BadFirstByte(b' '));
    let mut buf = BytesMut::from(&s[2..]);
    let mut dec = FrameDecoder::new(Limits::default());
    let Some(Frame::Events(a)) = dec.decode(&mut buf).unwrap() else { panic!() };
    assert!(dec.is_json());
    assert_eq!((a.mode, a.count, &a.tag[..]), (Mode::Message, 1, &b"j"[..]));
    let ev = a.events().next().unwrap();
    assert_eq!(ev.time, EventTime::new(1_700_000_000, 0));
    let mut out = Vec::new();
    ev.record.write_json(&mut out);
    assert_eq!(out, br#"{"a":[1,2.5,"x\n"],"b":null}"#);
    let chunk = a.option.chunk.clone().unwrap();
    assert_eq!(&chunk[..], b"q\"1");
    let mut ack = Vec::new();
    encode::ack_json(&mut ack, &chunk);
    assert_eq!(ack, br#"{"ack":"q\"1"}"#);
    let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() else { panic!() };
    assert_eq!((b.mode, b.count, &b.tag[..]), (Mode::Forward, 2, &b"j.fwd"[..]));
    let times: Vec<EventTime> = b.events().map(|e| e.time).collect();
    assert_eq!(times, [EventTime::new(1_700_000_001, 0), EventTime::new(1_700_000_002, 500_000_000)]);
    assert!(buf.is_empty() && dec.decode(&mut buf).unwrap().is_none());
    assert_eq!(dec.consumed(), s.len() as u64 - 2);

    // '{' : also JSON, but an object is not a frame.
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&br#"{"not": "a frame"}"#[..]);
    let e = dec.decode(&mut buf).unwrap_err();
    assert!(dec.is_json());
    assert_eq!((e.offset, message(&e)), (0, "expected a frame array, found map".into()));
}

#[test]
fn json_errors_point_at_the_byte() {
    let s = b"[\"t\",\n1,\n{\"k\": x}]";
    let e = decode_err(s);
    assert_eq!(e.offset, s.iter().position(|&b| b == b'x').unwrap() as u64);
    assert!(matches!(&e.kind, ErrorKind::Json(m) if m.contains("line 3")), "{e}");
    // A second value that starts with neither '[' nor '{'.
    let mut buf = BytesMut::from(&b"[\"t\", 1, {}] 5"[..]);
    let mut dec = FrameDecoder::new(Limits::default());
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(e.offset, 13);
    assert_eq!(message(&e), "invalid JSON: expected '[' or '{' to start a message, found byte 0x35");
    // A frame error in a JSON frame points at the start of that JSON value.
    let mut buf = BytesMut::from(&b"[\"t\", 1, {}]\n[5, 1, {}]"[..]);
    let mut dec = FrameDecoder::new(Limits::default());
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!((e.offset, message(&e)), (13, "expected the tag (a string), found integer".into()));
}

#[test]
fn json_frames_obey_the_frame_size_limit_in_one_read_too() {
    let j = br#"["t", 1, {"k": "a long value, longer than the limit"}]"#;
    let limits = Limits { max_frame_size: 32, ..Limits::default() };
    let e = decode(j, limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FrameTooLarge { size: 33, limit: 32 });
    // In pieces: the same.
    let mut dec = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut res = Ok(None);
    for b in j {
        buf.extend_from_slice(&[*b]);
        res = dec.decode(&mut buf);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res.unwrap_err().kind, ErrorKind::FrameTooLarge { size: 33, limit: 32 });
    assert!(decode(j, Limits { max_frame_size: j.len(), ..Limits::default() }).unwrap().is_some());
}

#[test]
fn fluent_bit_time_with_metadata_and_array32_entries() {
    // fluent-bit >= 2.1: [[EventTime, {metadata}], record]
    let mut e = vec![0x92, 0x92];
    raw::event_time(&mut e, EventTime::new(5, 6));
    raw::map_header(&mut e, 1);
    raw::str(&mut e, b"otlp");
    raw::bool(&mut e, true);
    e.extend_from_slice(&rec());
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"fb", &e, EntriesType::Bin, &OptionsOut::default());
    let b = batch(&f);
    assert_eq!((b.count, b.invalid), (1, 0));
    let ev = b.events().next().unwrap();
    assert_eq!(ev.time, EventTime::new(5, 6));
    assert_eq!(ev.time_raw[0], 0x92, "the raw time keeps the metadata");
    assert_eq!(ev.record.get(b"k").unwrap().as_str(), Some(&b"v"[..]));
    // fluent-bit's out_forward in Forward mode encodes each entry as an array32.
    let mut f = vec![0x92];
    raw::str(&mut f, b"fb");
    f.push(0x91);
    f.extend_from_slice(&[0xdd, 0, 0, 0, 2]);
    raw::event_time(&mut f, EventTime::new(9, 9));
    f.extend_from_slice(&rec());
    let b = batch(&f);
    assert_eq!((b.count, b.invalid), (1, 0));
    assert_eq!(b.events().next().unwrap().time, EventTime::new(9, 9));
    // Only one level of [time, meta].
    let mut e = vec![0x92, 0x92, 0x92];
    raw::event_time(&mut e, EventTime::new(5, 6));
    e.push(0x80);
    e.push(0x80);
    e.extend_from_slice(&rec());
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"fb", &e, EntriesType::Bin, &OptionsOut::default());
    assert_eq!((batch(&f).count, batch(&f).invalid), (0, 1));
}

#[test]
fn time_forms() {
    let msg = |time: &[u8]| {
        let mut f = vec![0x93];
        raw::str(&mut f, b"t");
        f.extend_from_slice(time);
        f.extend_from_slice(&rec());
        let b = batch(&f);
        assert_eq!(b.count + b.invalid, 1);
        b.events().next().map(|e| e.time)
    };
    let f64_time = |f: f64| [&[0xcb][..], &f.to_be_bytes()].concat();
    let f32_time = |f: f32| [&[0xca][..], &f.to_be_bytes()].concat();
    // EventTime as fixext8 and as ext8; integers of every width; floats (fluentd rejects
    // them, spate takes them: the nanoseconds are rounded).
    assert_eq!(msg(&[0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 8]), Some(EventTime::new(7, 8)));
    assert_eq!(msg(&[0xc7, 8, 0, 0, 0, 0, 7, 0, 0, 0, 8]), Some(EventTime::new(7, 8)));
    assert_eq!(msg(&[0x07]), Some(EventTime::new(7, 0)));
    assert_eq!(msg(&[0xcd, 1, 0]), Some(EventTime::new(256, 0)));
    assert_eq!(msg(&[0xd3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), Some(EventTime::new(u32::MAX, 0)));
    assert_eq!(msg(&f64_time(1.5)), Some(EventTime::new(1, 500_000_000)));
    assert_eq!(msg(&f64_time(1_700_000_000.123_456_7)), Some(EventTime::new(1_700_000_000, 123_456_717)));
    assert_eq!(msg(&f32_time(2.25)), Some(EventTime::new(2, 250_000_000)));
    // Invalid: negative, past 2106, NaN, EventTime of another ext type or size,
    // msgpack's Timestamp (ext -1), nil, a string.
    for bad in [
        &[0xff][..],
        &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0],
        &f64_time(-1.0),
        &f64_time(f64::NAN),
        &f64_time(5e9),
        &[0xd7, 1, 0, 0, 0, 7, 0, 0, 0, 8],
        &[0xd6, 0, 0, 0, 0, 7],
        &[0xd7, 0xff, 0, 0, 0, 7, 0, 0, 0, 8],
        &[0xc0],
        &[0xa1, b'7'],
    ] {
        assert_eq!(msg(bad), None, "{bad:02x?}");
    }
}

#[test]
fn invalid_events_are_counted_and_skipped() {
    // Forward and PackedForward: the bad entries are counted in `invalid`, the good
    // ones iterate in order.
    let mut e = entry(EventTime::new(1, 0));
    e.extend_from_slice(&[0x92, 0xa1, b'x', 0x80]); // ["x", {}]: a string time
    e.extend_from_slice(&entry(EventTime::new(2, 0)));
    e.extend_from_slice(&[0x92, 0x01, 0xa1, b'y']); // [1, "y"]: not a map
    e.extend_from_slice(&[0x93, 0x01, 0x80, 0x80]); // [1, {}, {}]: three elements
    e.push(0x07); // not an array
    e.extend_from_slice(&entry(EventTime::new(3, 0)));
    for m in [0, 1] {
        let mut f = Vec::new();
        if m == 0 {
            encode::forward(&mut f, b"t", &e, 7, &OptionsOut::default());
        } else {
            encode::packed_forward(&mut f, b"t", &e, EntriesType::Bin, &OptionsOut::default());
        }
        let b = batch(&f);
        assert_eq!((b.count, b.invalid), (3, 4));
        let secs: Vec<u32> = b.events().map(|e| e.time.sec).collect();
        assert_eq!(secs, [1, 2, 3]);
        assert_eq!(&b.entries[..], &e[..], "entries are kept as received, invalid ones too");
    }
    // Message mode: a record that is not a map.
    let mut f = vec![0x93];
    raw::str(&mut f, b"t");
    raw::uint(&mut f, 1);
    raw::str(&mut f, b"not a map");
    let b = batch(&f);
    assert_eq!((b.count, b.invalid, b.events().count()), (0, 1, 0));
    assert_eq!(b.format, EntriesFormat::Message);
}

#[test]
fn nil_and_odd_options_are_ignored_like_fluentd() {
    let frame = |opt: &[u8]| {
        let mut f = vec![0x93];
        raw::str(&mut f, b"t");
        raw::bin(&mut f, &entry(EventTime::new(1, 0)));
        f.extend_from_slice(opt);
        batch(&f)
    };
    // {"chunk": nil, "compressed": nil, "size": "5", "fluent_signal": 1.5, 7: 8, "x": [1]}
    let mut o = Vec::new();
    raw::map_header(&mut o, 6);
    let odd: [(&str, &[u8]); 4] =
        [("chunk", &[0xc0]), ("compressed", &[0xc0]), ("size", &[0xa1, b'5']), ("fluent_signal", &[0xca, 0, 0, 0, 0])];
    for (k, v) in odd {
        raw::str(&mut o, k.as_bytes());
        o.extend_from_slice(v);
    }
    o.extend_from_slice(&[0x07, 0x08, 0xa1, b'x', 0x91, 0x01]);
    let b = frame(&o);
    assert_eq!(b.option, Default::default());
    assert_eq!((b.mode, b.count), (Mode::PackedForward, 1));
    // With duplicate keys the last one wins, as in a Ruby Hash.
    let mut o = Vec::new();
    raw::map_header(&mut o, 3);
    raw::str(&mut o, b"chunk");
    raw::str(&mut o, b"first");
    raw::str(&mut o, b"size");
    raw::uint(&mut o, 1);
    raw::str(&mut o, b"chunk");
    raw::nil(&mut o);
    let b = frame(&o);
    assert_eq!((b.option.chunk, b.option.size), (None, Some(1)));
    // fluent-bit's options.
    let mut o = Vec::new();
    raw::map_header(&mut o, 2);
    raw::str(&mut o, b"fluent_signal");
    raw::uint(&mut o, 2);
    raw::str(&mut o, b"metadata");
    o.extend_from_slice(&[0x81, 0xa1, b'm', 0x01]);
    let b = frame(&o);
    assert_eq!(b.option.fluent_signal, Some(2));
    assert_eq!(b.option.metadata.as_deref(), Some(&[0x81, 0xa1, b'm', 0x01][..]));
    // A chunk that is not a string is still an error: there is nothing to ack with.
    let mut o = Vec::new();
    raw::map_header(&mut o, 1);
    raw::str(&mut o, b"chunk");
    raw::uint(&mut o, 5);
    let mut f = vec![0x93];
    raw::str(&mut f, b"t");
    raw::bin(&mut f, &entry(EventTime::new(1, 0)));
    f.extend_from_slice(&o);
    assert_eq!(message(&decode_err(&f)), "expected option.chunk (a string), found integer");
}

#[test]
fn chunk_ids_are_echoed_byte_for_byte() {
    // fluentd's out_forward sends Base64.encode64(unique_id): base64 ending in "\n".
    // Any bytes come back unchanged, in str or bin, in msgpack acks.
    for id in [&b"Y2h1bmstaWQtMTIz\n"[..], b"", b"\x00\xff\xfe not utf-8", "ünï".as_bytes()] {
        let mut f = Vec::new();
        let opt = OptionsOut { chunk: Some(id), ..Default::default() };
        encode::message(&mut f, b"t", EventTime::new(1, 0), TimeFormat::Integer, &rec(), &opt);
        let chunk = batch(&f).option.chunk.unwrap();
        assert_eq!(&chunk[..], id);
        let mut a = Vec::new();
        encode::ack(&mut a, &chunk);
        assert_eq!(encode::parse_ack(&a).unwrap(), id);
        // The ack is {"ack": <str>}: what fluentd's out_forward reads.
        assert_eq!(a[..5], [0x81, 0xa3, b'a', b'c', b'k']);
    }
    // A chunk sent as bin is echoed with the same bytes.
    let mut f = vec![0x93];
    raw::str(&mut f, b"t");
    raw::bin(&mut f, &entry(EventTime::new(1, 0)));
    raw::map_header(&mut f, 1);
    raw::str(&mut f, b"chunk");
    raw::bin(&mut f, b"\x01\x02");
    assert_eq!(batch(&f).option.chunk.as_deref(), Some(&b"\x01\x02"[..]));
    // JSON acks escape what JSON needs and keep the rest.
    let mut a = Vec::new();
    encode::ack_json(&mut a, "tab\t\"ü\"\n".as_bytes());
    assert_eq!(a, "{\"ack\":\"tab\\t\\\"ü\\\"\\n\"}".as_bytes());
    assert_eq!(
        encode::parse_ack(&[0x81, 0xa1, b'x', 0x01]).unwrap_err().to_string(),
        "invalid ack response: no \"ack\" key (at byte 0)"
    );
}

#[test]
fn decode_sized_counts_packed_forward_by_its_size_option_and_nothing_else() {
    let entries: Vec<u8> = (0..3).flat_map(|i| entry(EventTime::new(i, 0))).collect();
    let sized = |size: Option<u64>, compressed: bool| {
        let mut f = Vec::new();
        let opt = OptionsOut { size, ..Default::default() };
        if compressed {
            let z = spate_protocol::compress::gzip(&entries, 1);
            let opt = OptionsOut { compressed: Some(Compression::Gzip), ..opt };
            encode::packed_forward(&mut f, b"t", &z, EntriesType::Bin, &opt);
        } else {
            encode::packed_forward(&mut f, b"t", &entries, EntriesType::Str32, &opt);
        }
        f
    };
    let both = |f: &[u8]| {
        let full = batch(f);
        let mut buf = BytesMut::from(f);
        let trusted = match FrameDecoder::new(Limits::default()).decode_sized(&mut buf).unwrap() {
            Some(Frame::Events(b)) => b,
            other => panic!("{other:?}"),
        };
        assert!(buf.is_empty());
        ((full.count, full.invalid), (trusted.count, trusted.invalid))
    };
    // A size that says 5 where there are 3: decode walks and finds 3, decode_sized
    // takes the sender's word.
    assert_eq!(both(&sized(Some(5), false)), ((3, 0), (5, 0)));
    assert_eq!(both(&sized(Some(3), false)), ((3, 0), (3, 0)));
    // Without size, or compressed, or a size beyond u32: walked as by decode.
    assert_eq!(both(&sized(None, false)), ((3, 0), (3, 0)));
    assert_eq!(both(&sized(Some(5), true)), ((3, 0), (3, 0)));
    assert_eq!(both(&sized(Some(u64::MAX), false)), ((3, 0), (3, 0)));
    // Message and Forward frames never take size on trust.
    let mut m = Vec::new();
    encode::message(
        &mut m,
        b"t",
        EventTime::new(1, 0),
        TimeFormat::EventTime,
        &rec(),
        &OptionsOut { size: Some(9), ..Default::default() },
    );
    assert_eq!(both(&m), ((1, 0), (1, 0)));
    let mut fw = Vec::new();
    encode::forward(&mut fw, b"t", &entries, 3, &OptionsOut { size: Some(9), ..Default::default() });
    assert_eq!(both(&fw), ((3, 0), (3, 0)));
    // Truncated: partial either way.
    let f = sized(Some(3), false);
    let mut buf = BytesMut::from(&f[..f.len() - 2]);
    assert!(FrameDecoder::new(Limits::default()).decode_sized(&mut buf).unwrap().is_none());
}

#[test]
fn skipped_entries_frames_are_counted_by_their_options_byte_for_byte() {
    use bytes::Buf;
    let entries: Vec<u8> = (0..200).flat_map(|i| entry(EventTime::new(i, 0))).collect();
    let opt = OptionsOut { chunk: Some(b"c1"), size: Some(200), ..Default::default() };
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"relay.tag", &entries, EntriesType::Str32, &opt);
    // Two frames back to back, fed a byte at a time: the header is taken only once
    // complete, the entries are dropped by the caller, the options end the frame.
    let stream = [f.clone(), f.clone()].concat();
    let mut dec = FrameDecoder::new(Limits::default());
    let (mut buf, mut fed, mut head, mut skip, mut frames) = (BytesMut::new(), 0, None, 0usize, Vec::new());
    while fed < stream.len() {
        buf.extend_from_slice(&stream[fed..fed + 1]);
        fed += 1;
        if skip > 0 {
            let n = skip.min(buf.len());
            buf.advance(n);
            skip -= n;
            continue;
        }
        match &head {
            None => {
                if let Some(h) = dec.skip_entries_head(&mut buf, 64) {
                    assert_eq!((&h.tag[..], h.entries_len), (&b"relay.tag"[..], entries.len()));
                    assert!(buf.is_empty());
                    skip = h.entries_len;
                    head = Some(h);
                }
            }
            Some(h) => {
                if let Some(done) = dec.finish_skipped(h, &mut buf).unwrap() {
                    frames.push(done);
                    head = None;
                }
            }
        }
    }
    assert_eq!(frames.len(), 2);
    for fr in &frames {
        assert_eq!((&fr.tag[..], fr.option.size, fr.wire_len), (&b"relay.tag"[..], Some(200), f.len()));
        assert_eq!(fr.option.chunk.as_deref(), Some(&b"c1"[..]));
    }
    assert_eq!(dec.consumed(), stream.len() as u64);
    // Entries below the threshold, another layout, or a frame over the limit: left to
    // decode (nothing taken off the buffer).
    let mut buf = BytesMut::from(&f[..]);
    assert!(FrameDecoder::new(Limits::default()).skip_entries_head(&mut buf, entries.len() + 1).is_none());
    let small = Limits { max_frame_size: f.len() - opt_len(&f, entries.len()) - 1, ..Limits::default() };
    assert!(FrameDecoder::new(small).skip_entries_head(&mut buf, 64).is_none());
    let mut fw = Vec::new();
    encode::forward(&mut fw, b"t", &entries, 200, &opt);
    let mut fwb = BytesMut::from(&fw[..]);
    assert!(FrameDecoder::new(Limits::default()).skip_entries_head(&mut fwb, 64).is_none());
    assert_eq!((buf.len(), fwb.len()), (f.len(), fw.len()));
    // Options that are not a map: an error with the stream offset of the options.
    let mut bad = f[..f.len() - opt_len(&f, entries.len())].to_vec();
    bad.push(0x01);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&bad[..]);
    let h = dec.skip_entries_head(&mut buf, 64).unwrap();
    buf.advance(h.entries_len);
    let e = dec.finish_skipped(&h, &mut buf).unwrap_err();
    assert_eq!(e.offset, (bad.len() - 1) as u64, "{e}");
    // Options that take the frame past the limit: refused as decode refuses the frame.
    let tight = Limits { max_frame_size: f.len() - 1, ..Limits::default() };
    let mut dec = FrameDecoder::new(tight);
    let mut buf = BytesMut::from(&f[..]);
    let h = dec.skip_entries_head(&mut buf, 64).unwrap();
    buf.advance(h.entries_len);
    let e = dec.finish_skipped(&h, &mut buf).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::FrameTooLarge { .. }), "{e}");
    assert!(FrameDecoder::new(tight).decode(&mut BytesMut::from(&f[..])).is_err());
}

/// Bytes of the options at the end of a `[tag (fixstr), entries (str 32), options]` frame.
fn opt_len(f: &[u8], entries: usize) -> usize {
    let tag = (f[1] & 0x1f) as usize;
    f.len() - (2 + tag + 5 + entries)
}
