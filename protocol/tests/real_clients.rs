//! Frames produced by clients nobody here wrote, decoded with [`FrameDecoder`]:
//!
//! - PyPI `fluent-logger` captured off a socket: `FluentSender` in Message mode with and
//!   without `nanosecond_precision` (EventTime, integer and float times), its asyncio-free
//!   `asyncsender`, and the `logging` handler.
//! - PyPI `msgpack` building Forward (fixarray and array16), PackedForward with bin and
//!   str entries (`use_bin_type=False`, up to str32/bin32), CompressedPackedForward with
//!   several gzip members back to back (python's `gzip`, one member with a file name in
//!   its header), invalid entries, msgpack's own Timestamp (ext -1), fluent-bit's
//!   `[[time, meta], record]`, heartbeats and fluentd-style chunk ids.
//! - PyPI `zstandard` (optional) for zstd CompressedPackedForward.
//! - Ruby's `msgpack` and `json` gems (optional): `RecordRef::write_json` renders
//!   records exactly as `JSON.generate` does in fluentd.
//!
//! Needs `pip install fluent-logger msgpack`; without them these tests print
//! "skipped: <reason>" and pass, unless `SPATE_REQUIRE_PY=1` (then they fail). The
//! zstandard and Ruby parts are always optional.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use spate_protocol::msgpack::Kind;
use spate_protocol::{Compression, EventBatch, EventTime, Frame, FrameDecoder, Limits, Mode, RecordRef};
use spate_testkit::process::{python, skip};
use spate_testkit::wire::{batches, decode_all};

fn run_py(script: &str) -> Vec<u8> {
    let o = Command::new("python3").args(["-c", script]).output().expect("run python3");
    assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

const END: &[u8] = b"__END_OF_CAPTURE__";

/// Runs a fluent-logger script against a listener on 127.0.0.1:0 and returns every byte
/// the script sent, connection after connection, in order. The script's senders run one
/// after another, so connections are read one at a time to their end; a last connection
/// from the test carrying [`END`] says the script is done.
fn capture(script_for_port: impl Fn(u16) -> String) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for s in l.incoming() {
            let mut s = s.expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("read a client connection to its end");
            if buf == END {
                break;
            }
            all.extend_from_slice(&buf);
        }
        all
    });
    run_py(&script_for_port(port));
    TcpStream::connect(("127.0.0.1", port)).unwrap().write_all(END).unwrap();
    reader.join().unwrap()
}

fn json(r: RecordRef<'_>) -> String {
    let mut o = Vec::new();
    r.write_json(&mut o);
    String::from_utf8(o).unwrap()
}

fn jsons(b: &EventBatch) -> Vec<String> {
    b.events().map(|e| json(e.record)).collect()
}

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32
}

#[test]
fn fluent_logger_sender_message_mode_with_and_without_nanoseconds() {
    if !python(&["fluent.sender", "msgpack"], true) {
        return;
    }
    let t0 = now();
    let bytes = capture(|port| {
        format!(
            r#"
from fluent import sender
rec = {{
    'msg': 'h\u00e9llo \u2603 \U0001F600 \u65e5\u672c\u8a9e', 'n': 1, 'neg': -5, 'big': 2**64 - 1,
    'small': -2**63, 'f': 2.5, 'tiny': 1e-7, 'huge': 1e20, 'ok': True, 'no': False, 'none': None,
    'nested': {{'a': [1, 'x', {{'b': None}}], 'c': {{}}}}, 'bytes': b'\x00\xff', 'long': 'x' * 300,
    'list': [1.5, [], 'y'], 7: 'int key',
}}
ns = sender.FluentSender('app', host='127.0.0.1', port={port}, nanosecond_precision=True)
assert ns.emit_with_time('nano', 1700000000.25, rec), ns.last_error
assert ns.emit_with_time('nano', sender.EventTime(1700000000, 123456789), {{'seq': 2}}), ns.last_error
assert ns.emit('now', {{'seq': 3}}), ns.last_error
ns.close()
s = sender.FluentSender('app', host='127.0.0.1', port={port})
assert s.emit_with_time('sec', 1700000001, {{'k': 'v', 'seq': 4}}), s.last_error
assert s.emit_with_time('float', 1700000002.5, {{'seq': 5}}), s.last_error
assert s.emit('now', {{'seq': 6}}), s.last_error
s.close()
"#
        )
    });
    let t1 = now();
    let b = batches(decode_all(&bytes));
    let tags: Vec<&[u8]> = b.iter().map(|b| &b.tag[..]).collect();
    let want_tags: [&[u8]; 6] = [b"app.nano", b"app.nano", b"app.now", b"app.sec", b"app.float", b"app.now"];
    assert_eq!(tags, want_tags);
    for (i, x) in b.iter().enumerate() {
        assert_eq!((x.mode, x.count, x.invalid), (Mode::Message, 1, 0), "event {i}");
        assert_eq!(x.option.chunk, None, "fluent-logger never asks for acks");
        assert_eq!(x.wire_len, x.entries.len() + 2 + x.tag.len(), "[tag, time, record] with a fixstr tag");
        if i > 0 {
            assert_eq!(x.events().next().unwrap().record.get(b"seq").unwrap().as_i64(), Some(i as i64 + 1));
        }
    }
    let ev: Vec<_> = b.iter().map(|b| b.events().next().unwrap()).collect();

    // nanosecond_precision=True: EventTime (fixext8, type 0) with the float's fraction...
    assert_eq!(&ev[0].time_raw[..2], &[0xd7, 0x00]);
    assert_eq!(ev[0].time, EventTime::new(1_700_000_000, 250_000_000));
    // ...or the nanoseconds given, or time.time_ns().
    assert_eq!(ev[1].time, EventTime::new(1_700_000_000, 123_456_789));
    assert_eq!(ev[2].time_raw[0], 0xd7);
    assert!((t0..=t1).contains(&ev[2].time.sec), "{:?} not in {t0}..={t1}", ev[2].time);
    // Without it: integer seconds, or the float exactly as given (fluentd would reject a
    // float time; spate accepts it).
    assert_eq!(ev[3].time, EventTime::new(1_700_000_001, 0));
    assert_eq!(ev[3].time_raw, &[0xce, 0x65, 0x53, 0xf1, 0x01]);
    assert_eq!(ev[4].time_raw[0], 0xcb, "float64 time on the wire");
    assert_eq!(ev[4].time, EventTime::new(1_700_000_002, 500_000_000));
    assert_eq!(ev[5].time.nsec, 0);
    assert!((t0..=t1).contains(&ev[5].time.sec));

    // Every field of the rich record, read in place.
    let r = ev[0].record;
    assert_eq!(r.len(), 16);
    let get = |k: &str| r.get(k.as_bytes()).unwrap_or_else(|| panic!("no {k}"));
    assert_eq!(get("msg").as_str(), Some("héllo ☃ 😀 日本語".as_bytes()));
    assert_eq!(get("msg").kind(), Kind::Str);
    assert_eq!(get("n").as_i64(), Some(1));
    assert_eq!(get("neg").as_i64(), Some(-5));
    assert_eq!((get("big").kind(), get("big").as_i64()), (Kind::UInt, None), "2^64-1 does not fit i64");
    assert_eq!(get("big").as_bytes(), &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(get("small").as_i64(), Some(i64::MIN));
    assert_eq!(get("f").as_f64(), Some(2.5));
    assert_eq!(get("tiny").as_f64(), Some(1e-7));
    assert_eq!((get("ok").as_bool(), get("no").as_bool()), (Some(true), Some(false)));
    assert!(get("none").is_nil());
    let nested = get("nested").as_map().unwrap();
    let a: Vec<_> = nested.get(b"a").unwrap().as_array().unwrap().collect();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].as_i64(), Some(1));
    assert_eq!(a[1].as_str(), Some(&b"x"[..]));
    assert!(a[2].as_map().unwrap().get(b"b").unwrap().is_nil());
    assert!(nested.get(b"c").unwrap().as_map().unwrap().is_empty());
    assert_eq!((get("bytes").kind(), get("bytes").as_str()), (Kind::Bin, Some(&b"\x00\xff"[..])));
    assert_eq!(get("long").as_str(), Some(&[b'x'; 300][..]));
    assert_eq!(get("long").as_bytes()[0], 0xda, "str16");
    assert!(r.get(b"7").is_none(), "an integer key is not the string \"7\"");
    let int_key = r.fields().find(|(k, _)| k.as_i64() == Some(7)).unwrap();
    assert_eq!(int_key.1.as_str(), Some(&b"int key"[..]));
    assert_eq!(
        json(r),
        concat!(
            r#"{"msg":"héllo ☃ 😀 日本語","n":1,"neg":-5,"big":18446744073709551615,"small":-9223372036854775808,"#,
            r#""f":2.5,"tiny":1.0e-07,"huge":1.0e+20,"ok":true,"no":false,"none":null,"#,
            r#""nested":{"a":[1,"x",{"b":null}],"c":{}},"bytes":"\u0000�","long":""#,
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            r#"","list":[1.5,[],"y"],"7":"int key"}"#
        )
    );
    assert_eq!(jsons(&b[3]), vec![r#"{"k":"v","seq":4}"#]);
}

#[test]
fn fluent_logger_async_sender_and_logging_handler() {
    if !python(&["fluent.sender", "fluent.asyncsender", "fluent.handler", "msgpack"], true) {
        return;
    }
    let t0 = now();
    let bytes = capture(|port| {
        format!(
            r#"
import logging
from fluent import asyncsender, handler
a = asyncsender.FluentSender('async', host='127.0.0.1', port={port}, nanosecond_precision=True)
for i in range(50):
    a.emit('batch', {{'i': i, 'pad': 'p' * i}})
a.close()
h = handler.FluentHandler('pylog', host='127.0.0.1', port={port})
h.setFormatter(handler.FluentRecordFormatter())
log = logging.getLogger('spate.test')
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(h)
log.info('hello %s', 'world')
log.warning({{'event': 'as a dict', 'n': 3}})
h.close()
"#
        )
    });
    let t1 = now();
    let b = batches(decode_all(&bytes));
    assert_eq!(b.len(), 52);
    for (i, x) in b[..50].iter().enumerate() {
        assert_eq!((&x.tag[..], x.mode, x.count), (&b"async.batch"[..], Mode::Message, 1));
        let ev = x.events().next().unwrap();
        assert_eq!(ev.time_raw[0], 0xd7);
        assert!((t0..=t1).contains(&ev.time.sec));
        assert_eq!(ev.record.get(b"i").unwrap().as_i64(), Some(i as i64), "in order");
        assert_eq!(ev.record.get(b"pad").unwrap().as_str().unwrap().len(), i);
    }
    let host = {
        let o = Command::new("python3").args(["-c", "import socket; print(socket.gethostname())"]).output().unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    for x in &b[50..] {
        assert_eq!((&x.tag[..], x.mode), (&b"pylog"[..], Mode::Message));
        let ev = x.events().next().unwrap();
        assert_eq!(ev.time_raw[0], 0xce, "integer seconds: a uint32");
        assert!((t0..=t1).contains(&ev.time.sec));
    }
    assert_eq!(
        jsons(&b[50]),
        vec![format!(
            r#"{{"sys_host":"{host}","sys_name":"spate.test","sys_module":"<string>","message":"hello world"}}"#
        )]
    );
    assert_eq!(
        jsons(&b[51]),
        vec![format!(
            r#"{{"sys_host":"{host}","sys_name":"spate.test","sys_module":"<string>","event":"as a dict","n":3}}"#
        )]
    );
}

/// Python that builds frames with the `msgpack` package and writes them to stdout.
const BUILD: &str = r#"
import base64, gzip, io, msgpack, struct, sys

def et(s, ns):
    return msgpack.ExtType(0, struct.pack('>II', s, ns))

def entries(n, base=1700000000):
    return [[et(base + i, i * 1000), {'i': i, 'msg': 'event %d' % i, 'u': '\u00fc' * (i % 3)}] for i in range(n)]

def packed(es, bin=True):
    return b''.join(msgpack.packb(e, use_bin_type=bin) for e in es)

def gz_with_name(data):
    b = io.BytesIO()
    with gzip.GzipFile(filename='chunk.msgpack', mode='wb', fileobj=b, mtime=1700000000) as f:
        f.write(data)
    return b.getvalue()

five, big = entries(5), entries(2000)
p5, pbig = packed(five), packed(big)
assert len(pbig) > 65535
fluentd_chunk = base64.encodebytes(bytes(range(16))).decode()   # Base64.encode64: ends in "\n"
out = []
# 0: Forward, fixarray of entries, chunk id
out.append(msgpack.packb(['fwd', five, {'chunk': 'c1'}], use_bin_type=True))
# 1: Forward, array16 of entries
out.append(msgpack.packb(['fwd.many', entries(20)], use_bin_type=True))
# 2: PackedForward, bin8/16, chunk and size
out.append(msgpack.packb(['packed.bin', p5, {'chunk': 'c2', 'size': 5}], use_bin_type=True))
# 3: PackedForward, bin32
out.append(msgpack.packb(['packed.bin32', pbig, {'size': 2000}], use_bin_type=True))
# 4: PackedForward, entries as str (the old spec: what fluentd's out_forward sends)
out.append(msgpack.packb(['packed.str', p5], use_bin_type=False))
# 5: ...as str32, with a fluentd-style chunk id
out.append(msgpack.packb(['packed.str32', pbig, {'chunk': fluentd_chunk, 'size': 2000}], use_bin_type=False))
# 6: CompressedPackedForward: four gzip members back to back, one empty, one with a
#    file name and mtime in its header
cuts = [0, len(packed(five[:1])), len(packed(five[:3])), len(p5)]
z = gzip.compress(p5[cuts[0]:cuts[1]]) + gzip.compress(b'') + gzip.compress(p5[cuts[1]:cuts[2]], compresslevel=1) \
    + gz_with_name(p5[cuts[2]:cuts[3]])
out.append(msgpack.packb(['gz', z, {'compressed': 'gzip', 'chunk': 'c3', 'size': 5}], use_bin_type=True))
# 7: heartbeat
out.append(msgpack.packb(None))
# 8: Forward with integer times
out.append(msgpack.packb(['ints', [[1700000000, {'a': 1}], [1700000001, {'a': 2}]]], use_bin_type=True))
# 9: Forward with invalid entries among valid ones
out.append(msgpack.packb(['mixed', [
    [et(1, 2), {'ok': 1}],
    [msgpack.Timestamp(1700000000, 5), {'why': 'msgpack Timestamp (ext -1) is not an EventTime'}],
    [1.5, {'float': 1}],
    ['1700000000', {'why': 'a string time'}],
    [et(3, 4), 'not a map'],
    [[et(5, 6), {'meta': 1}], {'fluent-bit': 1}],
    [-1, {'why': 'negative time'}],
    5,
    [et(7, 8)],
]], use_bin_type=True))
# 10: CompressedPackedForward with compressed 'text': not compressed
out.append(msgpack.packb(['text', p5, {'compressed': 'text'}], use_bin_type=True))
sys.stdout.buffer.write(b''.join(out))
"#;

fn five_times() -> Vec<EventTime> {
    (0..5).map(|i| EventTime::new(1_700_000_000 + i, i * 1000)).collect()
}

fn check_entries(b: &EventBatch, n: u32) {
    assert_eq!((b.count, b.invalid), (n, 0), "{:?}", b.tag);
    for (i, ev) in b.events().enumerate() {
        assert_eq!(ev.time, EventTime::new(1_700_000_000 + i as u32, i as u32 * 1000));
        assert_eq!(ev.record.get(b"i").unwrap().as_i64(), Some(i as i64));
        assert_eq!(ev.record.get(b"msg").unwrap().as_str(), Some(format!("event {i}").as_bytes()));
        assert_eq!(ev.record.get(b"u").unwrap().as_str(), Some("ü".repeat(i % 3).as_bytes()));
    }
    assert_eq!(b.events().count(), n as usize);
}

#[test]
fn msgpack_built_forward_packed_and_gzip_frames() {
    if !python(&["msgpack"], true) {
        return;
    }
    let bytes = run_py(BUILD);
    let frames = decode_all(&bytes);
    assert_eq!(frames[7], Frame::Heartbeat);
    let b = batches(frames);
    let tags: Vec<String> = b.iter().map(|b| String::from_utf8(b.tag.to_vec()).unwrap()).collect();
    assert_eq!(
        tags,
        ["fwd", "fwd.many", "packed.bin", "packed.bin32", "packed.str", "packed.str32", "gz", "ints", "mixed", "text"]
    );
    let modes: Vec<Mode> = b.iter().map(|b| b.mode).collect();
    use Mode::*;
    assert_eq!(
        modes,
        [
            Forward,
            Forward,
            PackedForward,
            PackedForward,
            PackedForward,
            PackedForward,
            CompressedPackedForward,
            Forward,
            Forward,
            PackedForward
        ]
    );
    for (i, n) in [(0, 5), (1, 20), (2, 5), (3, 2000), (4, 5), (5, 2000), (6, 5), (9, 5)] {
        check_entries(&b[i], n);
    }
    // The entries are the same bytes however they travelled.
    for i in [4, 6, 9] {
        assert_eq!(b[i].entries, b[2].entries, "{}", tags[i]);
    }
    assert_eq!(b[5].entries, b[3].entries);
    assert_eq!(b[0].entries[..], b[2].entries[..], "Forward's array body is the packed entries");
    // The big frames really used the 32-bit encodings: bin32 and str32 headers, and
    // Forward's entries an array16.
    let len32 = (b[3].entries.len() as u32).to_be_bytes();
    for marker in [0xc6, 0xdb] {
        let hdr = [marker, len32[0], len32[1], len32[2], len32[3]];
        assert!(bytes.windows(5).any(|w| w == hdr), "no header {hdr:02x?}");
    }
    assert!(bytes.windows(11).any(|w| w == b"fwd.many\xdc\x00\x14"));
    // Options.
    assert_eq!(b[0].option.chunk.as_deref(), Some(&b"c1"[..]));
    assert_eq!((b[2].option.chunk.as_deref(), b[2].option.size), (Some(&b"c2"[..]), Some(5)));
    assert_eq!(b[3].option.size, Some(2000));
    assert_eq!(b[5].option.chunk.as_deref(), Some(&b"AAECAwQFBgcICQoLDA0ODw==\n"[..]));
    assert_eq!(b[6].option.compressed, Some(Compression::Gzip));
    assert_eq!(b[6].option.chunk.as_deref(), Some(&b"c3"[..]));
    assert_eq!(b[9].option.compressed, Some(Compression::Text));
    // Integer times.
    assert_eq!(b[7].events().map(|e| e.time.sec).collect::<Vec<_>>(), [1_700_000_000, 1_700_000_001]);
    assert_eq!(jsons(&b[7]), [r#"{"a":1}"#, r#"{"a":2}"#]);
    // Invalid entries are counted and skipped; a float time and fluent-bit's
    // [[time, meta], record] are valid.
    let m = &b[8];
    assert_eq!((m.count, m.invalid), (3, 6));
    let times: Vec<EventTime> = m.events().map(|e| e.time).collect();
    assert_eq!(times, [EventTime::new(1, 2), EventTime::new(1, 500_000_000), EventTime::new(5, 6)]);
    assert_eq!(jsons(m), [r#"{"ok":1}"#, r#"{"float":1}"#, r#"{"fluent-bit":1}"#]);
    assert_eq!(five_times(), b[6].events().map(|e| e.time).collect::<Vec<_>>());
}

#[test]
fn msgpack_built_frames_decode_the_same_in_any_pieces() {
    if !python(&["msgpack"], true) {
        return;
    }
    let bytes = run_py(BUILD);
    let whole = decode_all(&bytes);
    // One byte at a time, then in reads of a few odd sizes.
    for piece in [1, 7, 4096, 65537] {
        let mut buf = BytesMut::new();
        let mut dec = FrameDecoder::new(Limits::default());
        let mut got = Vec::new();
        for p in bytes.chunks(piece) {
            buf.extend_from_slice(p);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, whole, "pieces of {piece}");
    }
}

#[test]
fn zstandard_built_compressed_frames() {
    // Optional even in CI: zstandard is not one of the required modules.
    if !python(&["msgpack", "zstandard"], false) {
        return;
    }
    let bytes = run_py(
        r#"
import msgpack, struct, sys, zstandard
es = [[msgpack.ExtType(0, struct.pack('>II', 1700000000 + i, i)), {'i': i, 'msg': 'z' * i}] for i in range(300)]
p = b''.join(msgpack.packb(e) for e in es)
a, b, c = p[:1000], p[1000:5000], p[5000:]
# Three frames back to back: one with its content size, one without, one streamed at a
# high level (a window larger than its content, size unknown).
z = zstandard.ZstdCompressor().compress(a) + zstandard.ZstdCompressor(write_content_size=False).compress(b)
o = zstandard.ZstdCompressor(level=19).compressobj()
z += o.compress(c) + o.flush()
sys.stdout.buffer.write(msgpack.packb(['zstd', z, {'compressed': 'zstd', 'chunk': 'z1'}]))
sys.stdout.buffer.write(msgpack.packb(['plain', p]))
"#,
    );
    let b = batches(decode_all(&bytes));
    assert_eq!(b[0].mode, Mode::CompressedPackedForward);
    assert_eq!(b[0].option.compressed, Some(Compression::Zstd));
    assert_eq!((b[0].count, b[0].invalid), (300, 0));
    assert_eq!(b[0].entries, b[1].entries);
    let ev = b[0].events().nth(299).unwrap();
    assert_eq!(ev.time, EventTime::new(1_700_000_299, 299));
    assert_eq!(ev.record.get(b"msg").unwrap().as_str().unwrap().len(), 299);
    // A small inflate limit still decodes these ordinary frames (the window bound never
    // goes below zstd's streaming default), and refuses more output than the limit.
    let mut buf = BytesMut::from(&bytes[..]);
    let small = Limits { max_inflated_size: 64 << 10, ..Limits::default() };
    assert!(FrameDecoder::new(small).decode(&mut buf).is_ok());
    let mut buf = BytesMut::from(&bytes[..]);
    let tiny = Limits { max_inflated_size: 1000, ..Limits::default() };
    let e = FrameDecoder::new(tiny).decode(&mut buf).unwrap_err();
    assert!(matches!(e.kind, spate_protocol::ErrorKind::InflateTooLarge { limit: 1000 }), "{e}");
}

/// True if `ruby` with the msgpack and json gems runs.
fn ruby() -> bool {
    let ok = Command::new("ruby")
        .args(["-rmsgpack", "-rjson", "-e", "exit 0"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("ruby with the msgpack and json gems is not available");
    }
    ok
}

#[test]
fn records_render_as_rubys_json_generate() {
    // fluentd decodes records with msgpack-ruby and formats them with JSON.generate: our
    // write_json must produce the same text from the same bytes.
    if !ruby() {
        return;
    }
    let script = r#"
records = [
  {"s" => "plain", "u" => "h\u00e9llo \u2603 \u{1F600}", "esc" => "q\"b\\s/\n\r\t\b\f\u0001\u001f\u007f"},
  {"i" => [0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, 2**31, 2**32, 2**63 - 1, -2**63, 2**64 - 1]},
  {"f" => [0.0, -0.0, 1.0, 2.5, 100.0, 0.1, 1.0 / 3, 1e-4, 1.5e-4, 1e-5, 2.5e-7, 123456789012345.0,
           999999999999999.9, 1e15, 1234567890123456.5, 1e16, 1.0000000000000002e16, 1e20, 1e300, -1e-300,
           5e-324, 1.7976931348623157e308, 3.14159, -2.0]},
  {"nil" => nil, "t" => true, "f" => false, "empty" => {}, "ea" => [], "nested" => {"a" => [{"b" => [[[]]]}]}},
  {1 => "int key", "dup" => 1, "dup" => 2},
]
out = "".b
records.each do |r|
  m = MessagePack.pack(r)
  j = JSON.generate(r)
  out << [m.bytesize].pack("N") << m << [j.bytesize].pack("N") << j.b
end
STDOUT.binmode
STDOUT.write(out)
"#;
    let o = Command::new("ruby").args(["-rmsgpack", "-rjson", "-e", script]).output().unwrap();
    assert!(o.status.success(), "ruby failed: {}", String::from_utf8_lossy(&o.stderr));
    fn take(rest: &mut &[u8]) -> Vec<u8> {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let v = rest[4..4 + n].to_vec();
        *rest = &rest[4 + n..];
        v
    }
    let mut rest = &o.stdout[..];
    let mut n = 0;
    while !rest.is_empty() {
        let m = take(&mut rest);
        let j = String::from_utf8(take(&mut rest)).unwrap();
        let r = RecordRef::new(&m).expect("a map");
        assert_eq!(json(r), j, "record {n}");
        n += 1;
    }
    assert_eq!(n, 5);
}
