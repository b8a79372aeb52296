//! Frames produced by clients nobody here wrote: PyPI `fluent-logger` captured off a
//! socket (Message mode, with and without nanosecond precision), and PyPI `msgpack`
//! building Forward, PackedForward (bin and str) and gzip CompressedPackedForward frames
//! with several gzip members back to back. Needs `pip install fluent-logger msgpack`;
//! skipped with a reason otherwise (a failure when SPATE_REQUIRE_PY=1).

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use spate_protocol::{EventBatch, EventTime, Frame, FrameDecoder, Limits, Mode};

fn python(modules: &[&str]) -> bool {
    let script = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = Command::new("python3").args(["-c", &script]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        let why = format!("python3 with {modules:?} is not available (pip install fluent-logger msgpack)");
        if std::env::var("SPATE_REQUIRE_PY").as_deref() == Ok("1") {
            panic!("{why}, and SPATE_REQUIRE_PY=1");
        }
        eprintln!("skipped: {why}");
    }
    ok
}

fn run_py(script: &str) -> Vec<u8> {
    let o = Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Runs a fluent-logger script against a local socket and returns the bytes it sent.
fn capture(script_for_port: impl Fn(u16) -> String) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut all = Vec::new();
        // fluent-logger may reconnect per emit; read every connection until the script ends.
        l.set_nonblocking(false).unwrap();
        for s in l.incoming().take(3) {
            let Ok(mut s) = s else { break };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            let done = buf.ends_with(b"__END__") || buf.is_empty();
            all.extend_from_slice(&buf);
            if done {
                break;
            }
        }
        all
    });
    run_py(&script_for_port(port));
    // A final raw connection tells the reader the script is done.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"__END__").unwrap();
    }
    let mut all = t.join().unwrap();
    if all.ends_with(b"__END__") {
        all.truncate(all.len() - 7);
    }
    all
}

fn decode_all(bytes: &[u8]) -> Vec<EventBatch> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        if let Frame::Events(b) = f {
            out.push(b);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

fn json(b: &EventBatch) -> Vec<String> {
    b.events()
        .map(|e| {
            let mut o = Vec::new();
            e.record.write_json(&mut o);
            String::from_utf8(o).unwrap()
        })
        .collect()
}

#[test]
fn fluent_logger_message_mode_with_and_without_nanoseconds() {
    if !python(&["fluent.sender"]) {
        return;
    }
    let bytes = capture(|port| {
        format!(
            r#"
from fluent import sender
ns = sender.FluentSender('app', host='127.0.0.1', port={port}, nanosecond_precision=True)
assert ns.emit_with_time('nano', 1700000000.25, {{'msg': 'h\u00e9llo', 'n': 1, 'f': 2.5, 'ok': True, 'none': None, 'nested': {{'a': [1, 'x']}}}}), ns.last_error
ns.close()
s = sender.FluentSender('app', host='127.0.0.1', port={port})
assert s.emit_with_time('sec', 1700000001, {{'k': 'v'}}), s.last_error
s.close()
"#
        )
    });
    let batches = decode_all(&bytes);
    assert_eq!(batches.len(), 2);
    let (a, b) = (&batches[0], &batches[1]);
    assert_eq!(a.mode, Mode::Message);
    assert_eq!(&a.tag[..], b"app.nano");
    let ev = a.events().next().unwrap();
    assert_eq!(ev.time, EventTime::new(1_700_000_000, 250_000_000), "EventTime with nanoseconds");
    assert_eq!(ev.time_raw[0], 0xd7, "fixext8 EventTime");
    assert_eq!(json(a), vec![r#"{"msg":"héllo","n":1,"f":2.5,"ok":true,"none":null,"nested":{"a":[1,"x"]}}"#]);
    assert_eq!(ev.record.get(b"msg").unwrap().as_str(), Some("héllo".as_bytes()));
    assert_eq!(&b.tag[..], b"app.sec");
    let ev = b.events().next().unwrap();
    assert_eq!(ev.time, EventTime::new(1_700_000_001, 0), "integer seconds");
    assert_eq!(json(b), vec![r#"{"k":"v"}"#]);
}

/// Python that builds frames with the `msgpack` package and writes them to stdout.
const BUILD: &str = r#"
import msgpack, gzip, sys, struct
def et(s, ns):
    return msgpack.ExtType(0, struct.pack('>II', s, ns))
entries = [[et(1700000000 + i, i * 1000), {'i': i, 'msg': 'event %d' % i}] for i in range(5)]
packed = b''.join(msgpack.packb(e, use_bin_type=True) for e in entries)
out = b''
# Forward
out += msgpack.packb(['fwd', entries, {'chunk': 'c1'}], use_bin_type=True)
# PackedForward, entries as bin
out += msgpack.packb(['packed.bin', packed, {'chunk': 'c2', 'size': 5}], use_bin_type=True)
# PackedForward, entries as str (old msgpack spec, what fluentd's out_forward sends)
out += msgpack.packb(['packed.str', packed.decode('latin-1').encode('latin-1')], use_bin_type=False)
# CompressedPackedForward: two gzip members back to back
half = len(packed) // 2
cut = 0
pos = 0
for e in entries[:2]:
    pos += len(msgpack.packb(e, use_bin_type=True))
z = gzip.compress(packed[:pos]) + gzip.compress(packed[pos:])
out += msgpack.packb(['gz', z, {'compressed': 'gzip', 'chunk': 'c3'}], use_bin_type=True)
# Forward with integer times and a heartbeat (nil) between frames
out += msgpack.packb(None)
out += msgpack.packb(['ints', [[1700000000, {'a': 1}], [1700000001, {'a': 2}]]], use_bin_type=True)
sys.stdout.buffer.write(out)
"#;

#[test]
fn msgpack_built_forward_packed_and_gzip_frames() {
    if !python(&["msgpack"]) {
        return;
    }
    let bytes = run_py(BUILD);
    let batches = decode_all(&bytes);
    let modes: Vec<Mode> = batches.iter().map(|b| b.mode).collect();
    assert_eq!(
        modes,
        vec![Mode::Forward, Mode::PackedForward, Mode::PackedForward, Mode::CompressedPackedForward, Mode::Forward]
    );
    for b in &batches[..4] {
        assert_eq!(b.count, 5, "{:?}", b.tag);
        let times: Vec<EventTime> = b.events().map(|e| e.time).collect();
        assert_eq!(times, (0..5).map(|i| EventTime::new(1_700_000_000 + i, i * 1000)).collect::<Vec<_>>());
        assert_eq!(json(b)[3], r#"{"i":3,"msg":"event 3"}"#);
    }
    assert_eq!(batches[0].option.chunk.as_deref(), Some(&b"c1"[..]));
    assert_eq!(batches[1].option.size, Some(5));
    assert_eq!(&batches[2].tag[..], b"packed.str");
    assert_eq!(batches[3].option.chunk.as_deref(), Some(&b"c3"[..]));
    // The inflated entries equal the uncompressed ones byte for byte.
    assert_eq!(batches[3].entries, batches[1].entries);
    assert_eq!(json(&batches[4]), vec![r#"{"a":1}"#, r#"{"a":2}"#]);
}

#[test]
fn byte_at_a_time_decoding_of_real_frames_matches_whole() {
    if !python(&["msgpack"]) {
        return;
    }
    let bytes = run_py(BUILD);
    let whole = decode_all(&bytes);
    let mut buf = BytesMut::new();
    let mut dec = FrameDecoder::new(Limits::default());
    let mut pieces = Vec::new();
    for b in &bytes {
        buf.extend_from_slice(std::slice::from_ref(b));
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            if let Frame::Events(b) = f {
                pieces.push(b);
            }
        }
    }
    assert_eq!(pieces.len(), whole.len());
    for (a, b) in pieces.iter().zip(&whole) {
        assert_eq!((&a.tag, &a.entries, a.count, a.mode, &a.option), (&b.tag, &b.entries, b.count, b.mode, &b.option));
    }
}
