//! Bad input against a live server: garbage, a truncated frame, an oversized frame, a
//! gzip bomb and a slow client, while a well-behaved client keeps getting acks on its
//! own connection throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::encode::{self, EntriesType, OptionsOut};

const CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {PORT}
  chunk_size_limit 1m
  decompression_size_limit 1m
</source>
<match **>
  @type forward
  require_ack_response true
  <server>
    host 127.0.0.1
    port SINKPORT
  </server>
  <buffer>
    flush_interval 50ms
  </buffer>
</match>
"#;

/// The good client sends one acked frame and must get its ack quickly.
fn good_round(c: &mut Client, i: u64) {
    let chunk = format!("good-{i}");
    let f = acked_frame(b"good", &packed_entries(5, i * 5), 5, &chunk);
    let t = Instant::now();
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), chunk.as_bytes());
    assert!(t.elapsed() < Duration::from_secs(5), "ack took {:?}", t.elapsed());
}

/// Sends `bytes` on a fresh connection and expects the server to close it.
fn expect_closed(spate: &Spate, bytes: &[u8], what: &str) {
    let mut s = TcpStream::connect(spate.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the server to close the connection, got {other:?}"),
    }
}

#[test]
fn hostile_connections_are_dropped_and_a_good_client_is_served_throughout() {
    let sink = Sink::start();
    let spate = Spate::start("hostile", &CONFIG.replace("SINKPORT", &sink.addr.port().to_string()), Stdio::null());
    let mut good = Client::connect(spate.addr());
    let mut round = 0;
    good_round(&mut good, round);

    // Garbage: not msgpack at all (first byte neither array nor JSON).
    expect_closed(&spate, b"GET / HTTP/1.1\r\n\r\n", "garbage");
    round += 1;
    good_round(&mut good, round);

    // Malformed msgpack inside a frame (reserved marker 0xc1).
    expect_closed(&spate, &[0x93, 0xa1, b't', 0xc1, 0x80], "reserved marker");
    round += 1;
    good_round(&mut good, round);

    // Wrong types: tag is an integer.
    expect_closed(&spate, &[0x93, 0x05, 0x01, 0x80], "integer tag");
    round += 1;
    good_round(&mut good, round);

    // Oversized: declares a 100 MB bin (chunk_size_limit 1m) and sends only the header.
    let mut big = vec![0x92, 0xa1, b't', 0xc6];
    big.extend_from_slice(&(100u32 << 20).to_be_bytes());
    expect_closed(&spate, &big, "oversized frame");
    round += 1;
    good_round(&mut good, round);

    // Gzip bomb: 64 MiB of zeros compressed to ~64 KiB (decompression_size_limit 1m).
    let zeros = vec![0u8; 64 << 20];
    let bomb = spate_protocol::compress::gzip(&zeros, 9);
    let mut f = Vec::new();
    let o =
        OptionsOut { compressed: Some(spate_protocol::Compression::Gzip), chunk: Some(b"bomb"), ..Default::default() };
    encode::packed_forward(&mut f, b"bomb", &bomb, EntriesType::Bin, &o);
    expect_closed(&spate, &f, "gzip bomb");
    round += 1;
    good_round(&mut good, round);

    // Truncated frame, then the client goes away.
    {
        let f = acked_frame(b"trunc", &packed_entries(10, 0), 10, "t");
        let mut s = TcpStream::connect(spate.addr()).unwrap();
        s.write_all(&f[..f.len() / 2]).unwrap();
    }
    round += 1;
    good_round(&mut good, round);

    // Slow client: one byte every 20 ms; the good client is served meanwhile, and the
    // slow frame is still accepted in the end.
    let addr = spate.addr();
    let slow = std::thread::spawn(move || {
        let f = acked_frame(b"slow", &packed_entries(2, 1000), 2, "slow");
        let mut c = Client::connect(addr);
        for b in &f {
            c.send(std::slice::from_ref(b)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        c.read_ack().unwrap()
    });
    for _ in 0..5 {
        round += 1;
        good_round(&mut good, round);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(slow.join().unwrap(), b"slow");

    let expected = (round as usize + 1) * 5 + 2;
    let got = sink.wait_for(expected, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        expected,
        "every acked good event (and the slow frame) arrived; nothing from hostile connections"
    );
    assert!(got.iter().all(|r| r.tag == b"good" || r.tag == b"slow"));
    let (st, _, err) = spate.stop();
    assert!(st.success());
    assert!(err.contains("closing connection from 127.0.0.1:"), "bad frames are logged with the peer: {err}");
}

#[test]
fn connection_limit_per_shard_and_idle_timeout() {
    let sink = Sink::start();
    let conf = CONFIG
        .replace("SINKPORT", &sink.addr.port().to_string())
        .replace("  chunk_size_limit 1m\n", "  chunk_size_limit 1m\n  max_connections 5\n  idle_timeout 2s\n");
    let spate = Spate::start("limits", &conf, Stdio::null());
    // 40 idle connections against 2 shards x 5: most are refused at once.
    let conns: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(spate.addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(150));
    let mut open = 0;
    for mut c in conns.iter() {
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 8];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                open += 1
            }
            _ => {}
        }
    }
    assert!((1..=10).contains(&open), "{open} connections stayed open; the limit is 5 per shard on 2 shards");
    // The idle ones are closed after idle_timeout, which frees the slots. (2 s: the
    // count above must be done before the accepted ones are idle, on a loaded machine.)
    std::thread::sleep(Duration::from_millis(2400));
    for mut c in conns.iter() {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 8];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "idle connection closed");
    }
    drop(conns);
    // A client that keeps talking is not idle, and is served.
    // (2.4 s of rounds 200 ms apart: longer than idle_timeout.)
    let mut good = Client::connect(spate.addr());
    for i in 0..12 {
        good_round(&mut good, i);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (st, _, err) = spate.stop();
    assert!(st.success());
    assert!(err.contains("max_connections 5 reached"), "{err}");
}
