//! Bad input gives errors with the byte offset and an actionable message: wrong types,
//! wrong arity, truncation, limits (frame size, inflated size, nesting), reserved
//! markers, unknown compression; plus heartbeats, JSON streams, fluent-bit's time form.

use bytes::BytesMut;
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{ErrorKind, EventTime, Frame, FrameDecoder, Limits, Mode};

fn decode(bytes: &[u8], limits: Limits) -> Result<Option<Frame>, spate_protocol::DecodeError> {
    let mut buf = BytesMut::from(bytes);
    FrameDecoder::new(limits).decode(&mut buf)
}

fn rec() -> Vec<u8> {
    let mut r = Vec::new();
    raw::map_header(&mut r, 1);
    raw::str(&mut r, b"k");
    raw::str(&mut r, b"v");
    r
}

#[test]
fn tag_must_be_a_string() {
    let e = decode(&[0x93, 0x05, 0x01, 0x80], Limits::default()).unwrap_err();
    assert_eq!(e.offset, 1);
    assert!(matches!(e.kind, ErrorKind::WrongType { expected: "the tag (a string)", found: "integer" }));
    assert_eq!(e.to_string(), "expected the tag (a string), found integer (at byte 1)");
}

#[test]
fn arity_and_first_byte() {
    let e = decode(&[0x95, 0xa1, b't', 1, 0x80, 0xc0, 0xc0], Limits::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadArity(5)));
    let e = decode(b"GET / HTTP/1.1\r\n", Limits::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadFirstByte(b'G')));
    let e = decode(&[0x91, 0xa1, b't'], Limits::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadArity(1)));
}

#[test]
fn truncated_is_partial_not_an_error() {
    let mut f = Vec::new();
    encode::message(&mut f, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &rec(), &OptionsOut::default());
    for cut in 0..f.len() {
        assert!(decode(&f[..cut], Limits::default()).unwrap().is_none(), "cut {cut}");
    }
}

#[test]
fn frame_size_limit_fails_on_the_declared_length() {
    let mut f = vec![0x92, 0xa1, b't', 0xc6];
    f.extend_from_slice(&(1u32 << 30).to_be_bytes());
    let e = decode(&f, Limits { max_frame_size: 1 << 20, ..Limits::default() }).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::FrameTooLarge { limit: 1048576, .. }), "{e}");
    assert!(e.to_string().contains("chunk_size_limit"));
    // The default accepts a 256 MiB chunk (fluentd's file buffer default) with its header.
    let mut f = vec![0x92, 0xa1, b't', 0xc6];
    f.extend_from_slice(&(256u32 << 20).to_be_bytes());
    assert!(decode(&f, Limits::default()).unwrap().is_none());
}

#[test]
fn gzip_and_zstd_bombs_stop_at_the_inflate_limit() {
    let zeros = vec![0u8; 8 << 20];
    let limits = Limits { max_inflated_size: 1 << 20, ..Limits::default() };
    let mut f = Vec::new();
    encode::compressed_packed_forward(&mut f, b"t", &zeros, &OptionsOut::default());
    let e = decode(&f, limits).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InflateTooLarge { limit: 1048576 }), "{e}");
    let z = spate_protocol::compress::zstd_compress(&zeros, 3);
    let mut f = Vec::new();
    encode::packed_forward(
        &mut f,
        b"t",
        &z,
        EntriesType::Bin,
        &OptionsOut { compressed: Some(spate_protocol::Compression::Zstd), ..Default::default() },
    );
    let e = decode(&f, limits).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InflateTooLarge { .. }), "{e}");
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    let mut r = vec![0x81, 0xa1, b'k'];
    r.extend(std::iter::repeat_n(0x91, 100_000));
    r.push(0xc0);
    let mut f = Vec::new();
    encode::message(&mut f, b"t", EventTime::new(1, 0), TimeFormat::EventTime, &r, &OptionsOut::default());
    let e = decode(&f, Limits::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooDeep { limit: 100 }), "{e}");
}

#[test]
fn reserved_marker_and_unknown_compression() {
    let e = decode(&[0x93, 0xa1, b't', 0xc1, 0x80], Limits::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ReservedMarker(0xc1)));
    assert_eq!(e.offset, 3);
    let mut f = Vec::new();
    f.push(0x93);
    raw::str(&mut f, b"t");
    raw::bin(&mut f, b"");
    raw::map_header(&mut f, 1);
    raw::str(&mut f, b"compressed");
    raw::str(&mut f, b"lz4");
    let e = decode(&f, Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string().split(" (at").next().unwrap(),
        "unsupported compression \"lz4\" in option.compressed (supported: gzip, zstd, text)"
    );
}

#[test]
fn heartbeat_json_and_fluent_bit_time() {
    assert_eq!(decode(&[0xc0], Limits::default()).unwrap(), Some(Frame::Heartbeat));
    // JSON stream: first byte '[' (and '{' switches too).
    let Some(Frame::Events(b)) =
        decode(br#"["j", 1700000000, {"a": [1, 2.5, "x"]}, {"chunk": "q"}]"#, Limits::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!((b.mode, b.count), (Mode::Message, 1));
    assert_eq!(b.option.chunk.as_deref(), Some(&b"q"[..]));
    let mut ack = Vec::new();
    encode::ack_json(&mut ack, b"q");
    assert_eq!(ack, br#"{"ack":"q"}"#);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"{\"not\": \"a frame\"}"[..]);
    assert!(dec.decode(&mut buf).is_err());
    assert!(dec.is_json());
    // fluent-bit: [[EventTime, {metadata}], record]
    let mut e = Vec::new();
    e.push(0x92);
    e.push(0x92);
    raw::event_time(&mut e, EventTime::new(5, 6));
    raw::map_header(&mut e, 0);
    e.extend_from_slice(&rec());
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"fb", &e, EntriesType::Bin, &OptionsOut::default());
    let Some(Frame::Events(b)) = decode(&f, Limits::default()).unwrap() else { panic!() };
    assert_eq!(b.events().next().unwrap().time, EventTime::new(5, 6));
}

#[test]
fn chunk_ids_are_echoed_byte_for_byte() {
    let id = b"Y2h1bmstaWQtMTIz\n";
    let mut f = Vec::new();
    encode::message(
        &mut f,
        b"t",
        EventTime::new(1, 0),
        TimeFormat::Integer,
        &rec(),
        &OptionsOut { chunk: Some(id), ..Default::default() },
    );
    let Some(Frame::Events(b)) = decode(&f, Limits::default()).unwrap() else { panic!() };
    let chunk = b.option.chunk.unwrap();
    assert_eq!(&chunk[..], id);
    let mut a = Vec::new();
    encode::ack(&mut a, &chunk);
    assert_eq!(encode::parse_ack(&a).unwrap(), id);
}

#[test]
fn float_times_are_accepted() {
    let mut f = vec![0x93];
    raw::str(&mut f, b"t");
    raw::f64(&mut f, 1.5);
    f.extend_from_slice(&rec());
    let Some(Frame::Events(b)) = decode(&f, Limits::default()).unwrap() else { panic!() };
    assert_eq!(b.events().next().unwrap().time, EventTime::new(1, 500_000_000));
}

#[test]
fn entries_encoded_as_array32_are_valid_like_fluent_bit_sends_them() {
    // fluent-bit 4.2's out_forward: [tag, [ [0xdd 00000002 time record], ... ]]
    let mut f = vec![0x92];
    raw::str(&mut f, b"fb");
    f.push(0x91);
    f.extend_from_slice(&[0xdd, 0, 0, 0, 2]);
    raw::event_time(&mut f, EventTime::new(9, 9));
    f.extend_from_slice(&rec());
    let Some(Frame::Events(b)) = decode(&f, Limits::default()).unwrap() else { panic!() };
    assert_eq!((b.count, b.invalid), (1, 0));
    assert_eq!(b.events().next().unwrap().time, EventTime::new(9, 9));
}
