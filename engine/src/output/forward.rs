//! `out_forward` (first version): a memory buffer flushed to `<server>`s as
//! PackedForward frames (or CompressedPackedForward with `compress gzip`), weighted
//! round-robin over primary servers with standby servers as fallback, and with
//! `require_ack_response` a chunk leaves the buffer only after the server acked it;
//! unacked chunks are resent after `ack_response_timeout` (at least once).
//!
//! Pass-through: a chunk's entries are the received entries copied once into the
//! buffer, and are written to the socket as they are: records are never re-encoded.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_protocol::encode::{self, EntriesType, OptionsOut};
use spate_protocol::msgpack::Skipper;
use spate_protocol::{Compression, EntriesFormat, EventBatch, Events};

use super::{EmitError, OutputMetrics};
use crate::buffer::{BufferConf, Chunk, MemoryBuffer};

/// One `<server>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConf {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub standby: bool,
    /// Resolved when the configuration was loaded.
    pub addrs: Vec<SocketAddr>,
    /// Shared-key/user credentials when out_forward has `<security>`.
    pub cred: Option<crate::security::ClientCredentials>,
}

/// out_forward parameters (fluentd defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConf {
    pub servers: Vec<ServerConf>,
    pub require_ack_response: bool,
    pub ack_response_timeout: Duration,
    pub compress_gzip: bool,
    pub send_timeout: Duration,
    pub connect_timeout: Duration,
    pub time_as_integer: bool,
    pub buffer: BufferConf,
}

impl Default for ForwardConf {
    fn default() -> Self {
        ForwardConf {
            servers: Vec::new(),
            require_ack_response: false,
            ack_response_timeout: Duration::from_secs(190),
            compress_gzip: false,
            send_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(60),
            time_as_integer: false,
            buffer: BufferConf::default(),
        }
    }
}

/// A one-shot wake-up for the flush task.
#[derive(Default)]
struct Notify {
    flag: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
    /// Waits for a notification or `dur`, whichever comes first.
    async fn wait(&self, dur: Duration) {
        struct W<'a>(&'a Notify);
        impl Future for W<'_> {
            type Output = glommio::Result<(), ()>;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                if self.0.flag.replace(false) {
                    Poll::Ready(Ok(()))
                } else {
                    self.0.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        }
        let _ = glommio::timer::timeout(dur, W(self)).await;
    }
}

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
}

pub struct ForwardOutput {
    pub id: String,
    pub metrics: OutputMetrics,
    conf: ForwardConf,
    buffer: RefCell<MemoryBuffer>,
    notify: Notify,
    force: Cell<bool>,
    stopping: Cell<bool>,
    done: Cell<bool>,
    /// Weighted schedule of primary server indexes.
    schedule: Vec<usize>,
    seq: Cell<u64>,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, String),
    #[error("write to {0} failed: {1}")]
    Write(SocketAddr, String),
    #[error("no ack from {0} within {1:?}")]
    AckTimeout(SocketAddr, Duration),
    #[error("connection to {0} closed while waiting for an ack")]
    Closed(SocketAddr),
    #[error("bad ack from {0}: {1}")]
    BadAck(SocketAddr, String),
    #[error("no server has an address")]
    NoServer,
    #[error("handshake with {0} failed: {1}")]
    Handshake(SocketAddr, String),
}

impl ForwardOutput {
    pub fn new(id: String, conf: ForwardConf, shard: u32) -> Self {
        let mut schedule = Vec::new();
        // Interleave by weight so consecutive chunks spread across servers.
        let max_w = conf.servers.iter().filter(|s| !s.standby).map(|s| s.weight).max().unwrap_or(0);
        for round in 0..max_w.min(1000) {
            for (i, s) in conf.servers.iter().enumerate() {
                if !s.standby && s.weight > round {
                    schedule.push(i);
                }
            }
        }
        let buffer = RefCell::new(MemoryBuffer::new(conf.buffer.clone(), shard));
        ForwardOutput {
            id,
            metrics: OutputMetrics::default(),
            conf,
            buffer,
            notify: Notify::default(),
            force: Cell::new(false),
            stopping: Cell::new(false),
            done: Cell::new(false),
            schedule,
            seq: Cell::new(0),
        }
    }

    pub fn conf(&self) -> &ForwardConf {
        &self.conf
    }

    pub fn emit(&self, batch: &EventBatch) -> Result<(), EmitError> {
        if self.stopping.get() && self.done.get() {
            return Err(EmitError::Write { id: self.id.clone(), reason: "output is shut down".into() });
        }
        let (queued_before, staged_before) = {
            let b = self.buffer.borrow();
            (b.queued_chunks(), b.staged_chunks())
        };
        self.buffer.borrow_mut().append(batch).map_err(|source| EmitError::Buffer { id: self.id.clone(), source })?;
        // Wake the flusher when a chunk is ready, or when a new chunk starts (so it
        // schedules that chunk's flush_interval instead of sleeping its idle second).
        let b = self.buffer.borrow();
        if b.queued_chunks() > queued_before || b.staged_chunks() > staged_before {
            drop(b);
            self.notify.notify();
        }
        Ok(())
    }

    pub fn has_room(&self, bytes: usize) -> bool {
        let b = self.buffer.borrow();
        b.total_bytes() + bytes <= b.conf().total_limit_size
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer.borrow().total_bytes()
    }

    pub fn flush_now(&self) {
        self.force.set(true);
        self.notify.notify();
    }

    pub async fn shutdown(&self, deadline: Instant) {
        self.stopping.set(true);
        self.notify.notify();
        while !self.done.get() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let b = self.buffer.borrow();
        if !b.is_empty() {
            crate::warn!(
                "{}: shutdown deadline reached with {} bytes still buffered (in {} queued chunks); they are lost with this memory buffer",
                self.id,
                b.total_bytes(),
                b.queued_chunks()
            );
        }
    }

    /// The flush loop: runs until shutdown has flushed everything.
    pub async fn run(&self) {
        let mut conns: Vec<Option<Conn>> = (0..self.conf.servers.len()).map(|_| None).collect();
        let mut rr = 0usize;
        loop {
            let now = Instant::now();
            let stopping = self.stopping.get();
            let force = self.force.replace(false) || (stopping && self.conf.buffer.flush_at_shutdown);
            self.buffer.borrow_mut().enqueue_due(now, force);
            let next = self.buffer.borrow_mut().take();
            let Some(mut chunk) = next else {
                if stopping {
                    break;
                }
                let wait =
                    self.buffer.borrow().next_due(now).unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
                self.notify.wait(wait.max(Duration::from_millis(1))).await;
                continue;
            };
            match self.send(&mut conns, &mut rr, &chunk).await {
                Ok(bytes) => {
                    OutputMetrics::add(&self.metrics.write_count, 1);
                    OutputMetrics::add(&self.metrics.write_records, chunk.count as u64);
                    OutputMetrics::add(&self.metrics.write_bytes, bytes as u64);
                    self.buffer.borrow_mut().commit(chunk);
                }
                Err(e) => {
                    let now = Instant::now();
                    let first = *chunk.first_failure.get_or_insert(now);
                    let bc = &self.conf.buffer;
                    let over_times = bc.retry_max_times.is_some_and(|m| chunk.retries >= m);
                    let over_time = now.duration_since(first) >= bc.retry_timeout;
                    OutputMetrics::add(&self.metrics.retry_count, 1);
                    if !bc.retry_forever && (over_times || over_time) {
                        crate::error!(
                            "{}: failed to flush the buffer, and hit limit for retries. dropping all chunks in the buffer queue. retry_times={} chunk_id={} events={} error=\"{}\"",
                            self.id,
                            chunk.retries,
                            hex(&chunk.id),
                            chunk.count,
                            e
                        );
                        OutputMetrics::add(&self.metrics.dropped_records, chunk.count as u64);
                        self.buffer.borrow_mut().discard(chunk);
                        continue;
                    }
                    let jitter = (self.next_seq() % 1000) as f64 / 1000.0;
                    let delay = bc.retry_delay(chunk.retries, jitter);
                    crate::warn!(
                        "{}: failed to flush the buffer. retry_times={} next_retry_in={:.1}s chunk={} error=\"{}\"",
                        self.id,
                        chunk.retries,
                        delay.as_secs_f64(),
                        hex(&chunk.id),
                        e
                    );
                    chunk.retries += 1;
                    self.buffer.borrow_mut().requeue(chunk);
                    if stopping && self.conf.buffer.flush_at_shutdown {
                        // Keep trying until the shutdown deadline, more briskly.
                        glommio::timer::sleep(delay.min(Duration::from_millis(200))).await;
                    } else {
                        self.notify.wait(delay).await;
                        // A notification here is not a reason to retry early.
                    }
                }
            }
        }
        self.done.set(true);
    }

    fn next_seq(&self) -> u64 {
        let s = self.seq.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seq.set(s);
        s >> 11
    }

    /// Server order for this attempt: primaries by weighted round-robin, then standbys.
    fn order(&self, rr: usize) -> Vec<usize> {
        let mut v = Vec::with_capacity(self.conf.servers.len());
        if !self.schedule.is_empty() {
            for k in 0..self.schedule.len() {
                let i = self.schedule[(rr + k) % self.schedule.len()];
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        for (i, s) in self.conf.servers.iter().enumerate() {
            if s.standby {
                v.push(i);
            }
        }
        v
    }

    async fn send(&self, conns: &mut [Option<Conn>], rr: &mut usize, chunk: &Chunk) -> Result<usize, SendError> {
        let order = self.order(*rr);
        *rr = rr.wrapping_add(1);
        let mut last = SendError::NoServer;
        for i in order {
            match self.send_to(i, &mut conns[i], chunk).await {
                Ok(n) => return Ok(n),
                Err(e) => {
                    conns[i] = None;
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn connect(&self, i: usize) -> Result<Conn, SendError> {
        let s = &self.conf.servers[i];
        let mut last = SendError::NoServer;
        for &addr in &s.addrs {
            match TcpStream::connect_timeout(addr, self.conf.connect_timeout).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let mut conn = Conn { stream, rbuf: BytesMut::with_capacity(256) };
                    if let Some(cred) = &s.cred {
                        let hs = glommio::timer::timeout(self.conf.connect_timeout, async {
                            Ok(handshake(&mut conn, cred).await)
                        })
                        .await;
                        match hs {
                            Ok(Ok(())) => {}
                            Ok(Err(reason)) => {
                                last = SendError::Handshake(addr, reason);
                                continue;
                            }
                            Err(_) => {
                                last = SendError::Handshake(addr, "timed out".into());
                                continue;
                            }
                        }
                    }
                    return Ok(conn);
                }
                Err(e) => last = SendError::Connect(addr, e.to_string()),
            }
        }
        Err(last)
    }

    async fn send_to(&self, i: usize, slot: &mut Option<Conn>, chunk: &Chunk) -> Result<usize, SendError> {
        if slot.is_none() {
            *slot = Some(self.connect(i).await?);
        }
        let Some(conn) = slot.as_mut() else { return Err(SendError::NoServer) };
        let addr = conn.stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));

        let converted;
        let mut entries: &[u8] = &chunk.data;
        if self.conf.time_as_integer {
            converted = to_integer_times(entries);
            entries = &converted;
        }
        let compressed;
        if self.conf.compress_gzip {
            compressed = spate_protocol::compress::gzip(entries, 6);
            entries = &compressed;
        }
        let ack_id = hex(&chunk.id);
        let opt = OptionsOut {
            chunk: self.conf.require_ack_response.then_some(ack_id.as_bytes()),
            size: Some(chunk.count as u64),
            compressed: self.conf.compress_gzip.then_some(Compression::Gzip),
        };
        let mut head = Vec::with_capacity(64 + chunk.tag.len());
        encode::packed_forward_header(&mut head, &chunk.tag, entries.len(), EntriesType::Str32, &opt);
        let mut tail = Vec::with_capacity(64);
        encode::packed_forward_trailer(&mut tail, &opt);

        let write = async {
            conn.stream.write_all(&head).await?;
            conn.stream.write_all(entries).await?;
            conn.stream.write_all(&tail).await?;
            conn.stream.flush().await?;
            Ok::<(), std::io::Error>(())
        };
        match glommio::timer::timeout(self.conf.send_timeout, async {
            write.await.map_err(glommio::GlommioError::from)
        })
        .await
        {
            Ok(()) => {}
            Err(e) => return Err(SendError::Write(addr, e.to_string())),
        }
        let total = head.len() + entries.len() + tail.len();
        if !self.conf.require_ack_response {
            return Ok(total);
        }
        let want = ack_id.as_bytes();
        let wait = async {
            loop {
                let v = read_value(conn).await.map_err(|e| match e {
                    ReadError::Closed => SendError::Closed(addr),
                    ReadError::Io(m) => SendError::Write(addr, m),
                    ReadError::Malformed(m) => SendError::BadAck(addr, m),
                })?;
                match encode::parse_ack(&v) {
                    Ok(id) if id == want => return Ok(()),
                    Ok(_) => continue, // a stale ack for an earlier attempt
                    Err(e) => return Err(SendError::BadAck(addr, e.to_string())),
                }
            }
        };
        let timeout = self.conf.ack_response_timeout;
        match glommio::timer::timeout(timeout, async { Ok(wait.await) }).await {
            Ok(r) => r.map(|()| total),
            Err(_) => Err(SendError::AckTimeout(addr, timeout)),
        }
    }
}

/// Reads one complete msgpack value from the connection (handshake messages).
async fn read_value(conn: &mut Conn) -> Result<bytes::Bytes, ReadError> {
    loop {
        let mut sk = Skipper::new();
        match sk.advance(&conn.rbuf, 1 << 16, 8) {
            Ok(Some(n)) => return Ok(conn.rbuf.split_to(n).freeze()),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        }
        let mut tmp = [0u8; 1024];
        match conn.stream.read(&mut tmp).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => conn.rbuf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(ReadError::Io(e.to_string())),
        }
    }
}

/// Why reading a message from the server (ack, HELO, PONG) failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(String),
    #[error("malformed msgpack: {0}")]
    Malformed(String),
}

/// HELO -> PING -> PONG as fluentd's out_forward does it.
async fn handshake(conn: &mut Conn, cred: &crate::security::ClientCredentials) -> Result<(), String> {
    let helo = read_value(conn).await.map_err(|e| format!("reading HELO: {e}"))?;
    let mut ping = Vec::new();
    let hs = crate::security::ClientHandshake::ping(cred, &helo, &mut ping)?;
    conn.stream.write_all(&ping).await.map_err(|e| e.to_string())?;
    let pong = read_value(conn).await.map_err(|e| format!("reading PONG: {e}"))?;
    hs.verify(cred, &pong)
}

/// Re-encodes packed entries with integer-second times (`time_as_integer true`).
fn to_integer_times(entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len());
    for ev in Events::new(entries, EntriesFormat::Packed) {
        encode::entry(&mut out, ev.time, encode::TimeFormat::Integer, ev.record.as_bytes());
    }
    out
}

pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(b"0123456789abcdef"[(x >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
    }
    s
}
