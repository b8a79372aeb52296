//! Forward peers for tests: a blocking client that sends frames and reads acks, a sink
//! that records every event it receives ([`Sink`]), one on a fixed port that can be
//! stopped and restarted and counts events by their `k` field ([`FixedSink`]), and
//! counters for a `spate_loadgen` sink.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spate_protocol::{encode, EventBatch, EventTime, Frame, FrameDecoder, Limits, RecordRef};

/// A blocking Forward client over any byte stream (TCP, TLS).
pub struct Client<S = TcpStream> {
    /// The connection.
    pub s: S,
    /// Bytes read and not yet parsed.
    pub buf: BytesMut,
}

impl Client<TcpStream> {
    /// Connects to `addr`, with a 10 s read timeout so a missing ack fails the test.
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
        Client::new(s)
    }
}

impl<S: Read + Write> Client<S> {
    /// A client on an open connection.
    pub fn new(s: S) -> Client<S> {
        Client { s, buf: BytesMut::new() }
    }

    /// Writes `bytes` (and flushes: a TLS stream sends its records).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    /// Reads one ack and returns its chunk id, or an error (timeout, closed, not an ack).
    pub fn read_ack(&mut self) -> std::io::Result<Vec<u8>> {
        let v = self.read_value()?;
        encode::parse_ack(&v).map(<[u8]>::to_vec).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Reads one whole msgpack value (an ack, a HELO, a PONG) and returns its bytes.
    pub fn read_value(&mut self) -> std::io::Result<Vec<u8>> {
        let mut tmp = [0u8; 4096];
        loop {
            let mut sk = spate_protocol::msgpack::Skipper::new();
            if let Ok(Some(n)) = sk.advance(&self.buf, 1 << 20, 8) {
                return Ok(self.buf.split_to(n).to_vec());
            }
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// One event as a sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The batch's tag.
    pub tag: Vec<u8>,
    /// The event's time.
    pub time: EventTime,
    /// The record's msgpack bytes.
    pub record: Vec<u8>,
}

/// A Forward server on a free loopback port that records every event and acks when
/// asked.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every event received, in arrival order, except the server's own log events.
    pub events: Arc<Mutex<Vec<Received>>>,
    /// The server's own log events (tags `fluent.*`: fluentd and spate route their log
    /// lines to a top-level `<match **>` too), kept apart so counts stay exact.
    pub logs: Arc<Mutex<Vec<Received>>>,
    /// Acks sent.
    pub acks_sent: Arc<Mutex<u64>>,
}

impl Sink {
    /// Starts the sink (threads that live as long as the test process).
    pub fn start() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback sink");
        let addr = l.local_addr().expect("the sink's address");
        let events = Arc::new(Mutex::new(Vec::new()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let acks_sent = Arc::new(Mutex::new(0));
        let (ev, lg, ac) = (events.clone(), logs.clone(), acks_sent.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (ev, lg, ac) = (ev.clone(), lg.clone(), ac.clone());
                std::thread::spawn(move || {
                    serve_acking(s, |b| {
                        let mut g = if b.tag.starts_with(b"fluent.") { lg.lock().unwrap() } else { ev.lock().unwrap() };
                        for e in b.events() {
                            g.push(Received {
                                tag: b.tag.to_vec(),
                                time: e.time,
                                record: e.record.as_bytes().to_vec(),
                            });
                        }
                        drop(g);
                        if b.option.chunk.is_some() {
                            *ac.lock().unwrap() += 1;
                        }
                    })
                });
            }
        });
        Sink { addr, events, logs, acks_sent }
    }

    /// Waits until `n` events arrived or `within` passed; returns the events so far.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let end = Instant::now() + within;
        loop {
            let g = self.events.lock().unwrap();
            if g.len() >= n || Instant::now() > end {
                return g.clone();
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A Forward sink on a fixed port that can be stopped and started again; it records
/// the `k` field of every event and acks every chunk.
pub struct FixedSink {
    /// Its port.
    pub port: u16,
    /// How many times each `k` arrived.
    pub seen: Arc<Mutex<HashMap<u64, u32>>>,
    /// Microseconds the sink spends per event received (0: as fast as it can), so a
    /// test can make it slower than the load.
    pub micros_per_event: Arc<std::sync::atomic::AtomicU64>,
    /// When set, the sink checks ack ids as spate's in_forward `deduplicate` does: a
    /// frame whose ack id it already counted is acked without counting its events
    /// again (the resends of its own sender), and counted in `repeats`.
    pub dedup_ids: Arc<AtomicBool>,
    /// (frames, events) acked without counting them, under `dedup_ids`.
    pub repeats: Arc<Mutex<(u64, u64)>>,
    ids: Arc<Mutex<std::collections::HashSet<Vec<u8>>>>,
    run: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixedSink {
    /// A sink for `port`, not listening yet.
    pub fn new(port: u16) -> FixedSink {
        FixedSink {
            port,
            seen: Arc::new(Mutex::new(HashMap::new())),
            micros_per_event: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            dedup_ids: Arc::new(AtomicBool::new(false)),
            repeats: Arc::new(Mutex::new((0, 0))),
            ids: Arc::new(Mutex::new(std::collections::HashSet::new())),
            run: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            thread: None,
        }
    }

    /// Starts listening (again).
    pub fn start(&mut self) {
        let l = TcpListener::bind(("127.0.0.1", self.port)).expect("sink port");
        l.set_nonblocking(true).expect("a non-blocking listener");
        self.run.store(true, Ordering::SeqCst);
        let (run, seen, conns) = (self.run.clone(), self.seen.clone(), self.conns.clone());
        let slow = self.micros_per_event.clone();
        let dedup = Dedup { on: self.dedup_ids.clone(), ids: self.ids.clone(), repeats: self.repeats.clone() };
        self.thread = Some(std::thread::spawn(move || {
            while run.load(Ordering::SeqCst) {
                let s = match l.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                s.set_nonblocking(false).expect("a blocking connection");
                // Acks go out at once (a sender with several frames in flight would
                // otherwise wait for Nagle and delayed ACKs).
                let _ = s.set_nodelay(true);
                if let Ok(c) = s.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                let (seen, slow, dedup) = (seen.clone(), slow.clone(), dedup.clone());
                std::thread::spawn(move || serve_counting(s, seen, slow, dedup));
            }
        }));
    }

    /// Stops listening and closes every connection.
    pub fn stop(&mut self) {
        self.run.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Events received (with duplicates).
    pub fn total(&self) -> u64 {
        self.seen.lock().unwrap().values().map(|&n| u64::from(n)).sum()
    }
}

/// A [`FixedSink`]'s ack-id check (see `dedup_ids`).
#[derive(Clone)]
struct Dedup {
    on: Arc<AtomicBool>,
    ids: Arc<Mutex<std::collections::HashSet<Vec<u8>>>>,
    repeats: Arc<Mutex<(u64, u64)>>,
}

fn serve_counting(
    s: TcpStream,
    seen: Arc<Mutex<HashMap<u64, u32>>>,
    slow: Arc<std::sync::atomic::AtomicU64>,
    dedup: Dedup,
) {
    serve_acking(s, |b| {
        let us = slow.load(Ordering::Relaxed);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us * u64::from(b.count)));
        }
        if let (true, Some(c)) = (dedup.on.load(Ordering::Relaxed), &b.option.chunk) {
            if !dedup.ids.lock().unwrap().insert(c.to_vec()) {
                let mut r = dedup.repeats.lock().unwrap();
                r.0 += 1;
                r.1 += u64::from(b.count);
                return;
            }
        }
        let mut g = seen.lock().unwrap();
        for e in b.events() {
            if let Some(k) = RecordRef::new(e.record.as_bytes()).and_then(|r| r.get(b"k")).and_then(|v| v.as_i64()) {
                *g.entry(k as u64).or_default() += 1;
            }
        }
    })
}

/// Decodes Forward frames from `s`, hands each batch to `on` and then acks it (when the
/// client asked), until the connection closes or sends something undecodable.
pub fn serve_acking(mut s: TcpStream, mut on: impl FnMut(&EventBatch)) {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        let n = match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if let Frame::Events(b) = f {
                on(&b);
                if let Some(c) = &b.option.chunk {
                    let mut a = Vec::new();
                    encode::ack(&mut a, c);
                    if s.write_all(&a).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Events of the load generator's tag (`spate.loadgen`) at a spate-loadgen sink. Peers
/// also route their own `fluent.*` logs to `**`, so counting by tag keeps totals exact.
pub fn loadgen_events(s: &spate_loadgen::sink::SinkHandle) -> u64 {
    s.report().by_tag.get("spate.loadgen").map_or(0, |t| t.events)
}

/// Waits up to 10 s for the sink to hold `n` end-to-end latency samples (it merges its
/// threads' histograms every 500 ms, later than it counts events); returns how many.
pub fn wait_e2e_samples(s: &spate_loadgen::sink::SinkHandle, n: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(10);
    while s.report().e2e_latency_us.count < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    s.report().e2e_latency_us.count
}

/// Waits up to 30 s for `n` [`loadgen_events`]; returns how many arrived.
pub fn wait_loadgen_events(s: &spate_loadgen::sink::SinkHandle, n: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(30);
    while loadgen_events(s) < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    loadgen_events(s)
}
