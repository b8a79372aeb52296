//! `spate-loadgen sink`: a Forward server that acks when asked, counts events and bytes
//! per tag, and builds an end-to-end latency histogram from the generator's send stamp
//! (a nanosecond timestamp in `--stamp-field`). `--raw` only counts bytes (the loopback
//! ceiling). One thread per connection; counters are merged per frame, histograms every
//! half second.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use spate_protocol::{encode, Frame, FrameDecoder, Limits};

use crate::report::{new_hist, Latency, SinkReport, TagCount};

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub bind: SocketAddr,
    pub stamp_field: String,
    /// Count bytes only: no decoding, no acks.
    pub raw: bool,
    /// Never send acks (for testing clients' ack timeouts).
    pub no_ack: bool,
    /// Read the send stamps of every Nth frame only (1: every frame). Sampling keeps the
    /// sink much faster than what it measures; the histogram stays representative.
    pub sample_every: u32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            stamp_field: "_spate_ts".into(),
            raw: false,
            no_ack: false,
            sample_every: 1,
        }
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    events: AtomicU64,
    bytes: AtomicU64,
    frames: AtomicU64,
    acks: AtomicU64,
    connections: AtomicU64,
    bad_frames: AtomicU64,
    by_tag: Mutex<HashMap<Vec<u8>, TagCount>>,
    hist: Mutex<Option<Histogram<u64>>>,
}

/// A running sink.
pub struct SinkHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    started: Instant,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Starts a sink; returns once it listens.
pub fn start(cfg: SinkConfig) -> std::io::Result<SinkHandle> {
    let l = TcpListener::bind(cfg.bind)?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    let shared = Arc::new(Shared { hist: Mutex::new(Some(new_hist())), ..Default::default() });
    let sh = shared.clone();
    let acceptor = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !sh.stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    sh.connections.fetch_add(1, Ordering::Relaxed);
                    let (sh2, cfg2) = (sh.clone(), cfg.clone());
                    conns.push(std::thread::spawn(move || serve(s, sh2, cfg2)));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
            conns.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
        }
        for t in conns {
            let _ = t.join();
        }
    });
    Ok(SinkHandle { addr, shared, started: Instant::now(), acceptor: Some(acceptor) })
}

fn serve(mut s: TcpStream, sh: Arc<Shared>, cfg: SinkConfig) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut tmp = vec![0u8; 256 << 10];
    let mut buf = BytesMut::with_capacity(256 << 10);
    let mut dec = FrameDecoder::new(Limits::default());
    let mut local = new_hist();
    let mut last_merge = Instant::now();
    let mut acks = Vec::new();
    let stamp = cfg.stamp_field.as_bytes().to_vec();
    let every = cfg.sample_every.max(1) as u64;
    let mut nframe = 0u64;
    let mut tags: HashMap<Vec<u8>, TagCount> = HashMap::new();
    let mut last_tags = Instant::now();
    while !sh.stop.load(Ordering::Relaxed) {
        if last_merge.elapsed() > Duration::from_millis(500) {
            merge(&sh, &mut local);
            last_merge = Instant::now();
        }
        let n = match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                flush_tags(&sh, &mut tags);
                continue;
            }
            Err(_) => break,
        };
        sh.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if cfg.raw {
            continue;
        }
        buf.extend_from_slice(&tmp[..n]);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Frame::Events(b))) => {
                    if nframe.is_multiple_of(every) {
                        let now = wall_ns();
                        for e in b.events() {
                            if let Some(ts) = e.record.get(&stamp).and_then(|v| v.as_i64()) {
                                let _ = local.record((now.saturating_sub(ts as u64) / 1000).max(1));
                            }
                        }
                    }
                    nframe += 1;
                    // Per-tag counts are published before the events counter, so a
                    // reader that sees N events also sees their tags.
                    match tags.get_mut(&b.tag[..]) {
                        Some(t) => {
                            t.events += b.count as u64;
                            t.bytes += b.wire_len as u64;
                        }
                        None => {
                            tags.insert(b.tag.to_vec(), TagCount { events: b.count as u64, bytes: b.wire_len as u64 });
                        }
                    }
                    if last_tags.elapsed() > Duration::from_millis(20) {
                        flush_tags(&sh, &mut tags);
                        last_tags = Instant::now();
                    }
                    sh.frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(c) = &b.option.chunk {
                        if !cfg.no_ack {
                            if dec.is_json() {
                                encode::ack_json(&mut acks, c);
                            } else {
                                encode::ack(&mut acks, c);
                            }
                        }
                    }
                }
                Ok(Some(Frame::Heartbeat)) => {}
                Ok(None) => break,
                Err(_) => {
                    sh.bad_frames.fetch_add(1, Ordering::Relaxed);
                    flush_tags(&sh, &mut tags);
                    merge(&sh, &mut local);
                    return;
                }
            }
        }
        if !acks.is_empty() {
            if s.write_all(&acks).is_err() {
                break;
            }
            sh.acks.fetch_add(1, Ordering::Relaxed);
            acks.clear();
        }
    }
    flush_tags(&sh, &mut tags);
    merge(&sh, &mut local);
}

/// Publishes this connection's per-tag counts (and the event total) to the shared view.
fn flush_tags(sh: &Shared, tags: &mut HashMap<Vec<u8>, TagCount>) {
    if tags.is_empty() {
        return;
    }
    let mut n = 0;
    if let Ok(mut t) = sh.by_tag.lock() {
        for (k, v) in tags.drain() {
            let e = t.entry(k).or_default();
            e.events += v.events;
            e.bytes += v.bytes;
            n += v.events;
        }
    }
    sh.events.fetch_add(n, Ordering::Relaxed);
}

fn merge(sh: &Shared, local: &mut Histogram<u64>) {
    if let Ok(mut h) = sh.hist.lock() {
        if let Some(h) = h.as_mut() {
            let _ = h.add(&*local);
        }
    }
    local.reset();
}

impl SinkHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn events(&self) -> u64 {
        self.shared.events.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Waits until `n` events arrived or `timeout` passed; true if they arrived.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.events() < n {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// A report of what arrived so far.
    pub fn report(&self) -> SinkReport {
        let sh = &self.shared;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let events = sh.events.load(Ordering::Relaxed);
        let lat = sh.hist.lock().ok().and_then(|h| h.as_ref().map(Latency::from_hist)).unwrap_or_default();
        let by_tag: BTreeMap<String, TagCount> = sh
            .by_tag
            .lock()
            .map(|t| t.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v)).collect())
            .unwrap_or_default();
        SinkReport {
            events_received: events,
            bytes_received: sh.bytes.load(Ordering::Relaxed),
            frames_received: sh.frames.load(Ordering::Relaxed),
            acks_sent: sh.acks.load(Ordering::Relaxed),
            connections: sh.connections.load(Ordering::Relaxed),
            bad_frames: sh.bad_frames.load(Ordering::Relaxed),
            duration_s: secs,
            events_per_sec: events as f64 / secs,
            e2e_latency_us: lat,
            by_tag,
        }
    }

    /// Stops (closing every connection within ~100 ms) and returns the final report.
    pub fn stop(mut self) -> SinkReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.report()
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
