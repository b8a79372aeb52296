//! `out_forward`'s sender: hands buffered chunks to `<server>`s as PackedForward frames
//! (CompressedPackedForward with `compress gzip`), as fluentd does:
//!
//! - servers are chosen round-robin over a weight array (`weight`); `standby` servers
//!   enter the array only while regular servers are detached;
//! - heartbeats (`heartbeat_type transport`, the default: a TCP connect, plus the
//!   shared-key handshake when `<security>` is set; or `udp`: a `\0` datagram that
//!   in_forward answers; every `heartbeat_interval`) feed a
//!   phi accrual failure detector (`phi_threshold`, `phi_failure_detector`) and
//!   `hard_timeout`; a detached server is used again after `recover_wait` of good
//!   heartbeats. `heartbeat_type none` keeps every server available;
//! - with `require_ack_response` a chunk leaves the buffer only after the server acked
//!   it; no ack within `ack_response_timeout` detaches the server and resends the chunk
//!   at once (fluentd's rollback), to another server when there is one. The chunk goes
//!   out as frames of at most 16 KiB, each with its own ack id, with a window of
//!   unacked bytes that follows the bandwidth-delay product ([`Window`]); every ack is recorded in the
//!   chunk (and for a file buffer in a side file), so a retry or a restart after
//!   `kill -9` resends only the frames that were not acked;
//! - `keepalive` keeps connections open (`keepalive_timeout` closes idle ones); without
//!   it each chunk gets its own connection, as in fluentd;
//! - host names are resolved when connecting, off the shard thread (fluentd resolves
//!   lazily too), and again when `expire_dns_cache` says so; a name that does not resolve
//!   is an error of that attempt (logged, retried), never a startup failure.
//!
//! Pass-through: a chunk's entries are the received entries copied once into the
//! buffer, and are written to the socket as they are: records are never re-encoded.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_protocol::encode::{self, EntriesType, OptionsOut};
use spate_protocol::msgpack::Skipper;
use spate_protocol::{Compression, EntriesFormat, Events};

use crate::buffer::progress::Progress;
use crate::buffer::Chunk;
use crate::plugin::{BuildError, ChunkVars, LocalFuture, ShardCtx, WriteError, Writer, WriterPlan};

pub mod conf;
pub mod phi;

pub use conf::{ForwardConf, HeartbeatType, ServerConf, PLUGIN};
pub use phi::FailureDetector;
use spate_protocol::hex;

struct Conn {
    stream: crate::tls::Stream,
    addr: SocketAddr,
    rbuf: BytesMut,
    last_used: Instant,
    /// Bytes of acked frames allowed in flight (see [`Window`]).
    window: Window,
}

/// How many bytes of a chunk may be sent before their acks: enough to cover the
/// bandwidth-delay product of the connection (a far, fast server needs a large window
/// for throughput), and little more (everything in flight is sent again after a
/// crash). Estimated as BBR does: each ack gives a delivery-rate sample (bytes acked
/// during that frame's round trip / the round trip); the window is 1.25 x the best rate
/// of the last 8 samples x the smallest round trip of the last 10 s, plus one frame.
/// A server slower than the sender keeps the window near two frames (more in flight
/// would only queue there); a window-limited fast path grows by 1.25x per round trip.
#[derive(Debug, Clone, Copy)]
struct Window {
    bytes: usize,
    /// Bytes acked on this connection so far.
    delivered: u64,
    min_rtt: Option<(Duration, Instant)>,
    rates: [f64; 8],
    next: usize,
}

impl Window {
    fn new() -> Self {
        Window { bytes: MIN_WINDOW, delivered: 0, min_rtt: None, rates: [0.0; 8], next: 0 }
    }

    /// An ack for a frame of `len` bytes sent at `sent`, when `delivered_then` bytes
    /// had been acked.
    fn on_ack(&mut self, sent: Instant, delivered_then: u64, len: usize) {
        self.on_ack_at(sent, delivered_then, len, Instant::now())
    }

    fn on_ack_at(&mut self, sent: Instant, delivered_then: u64, len: usize, now: Instant) {
        self.delivered += len as u64;
        let rtt = now.saturating_duration_since(sent).max(Duration::from_micros(1));
        match self.min_rtt {
            Some((m, at)) if m <= rtt && now.saturating_duration_since(at) < Duration::from_secs(10) => {}
            _ => self.min_rtt = Some((rtt, now)),
        }
        self.rates[self.next % self.rates.len()] = (self.delivered - delivered_then) as f64 / rtt.as_secs_f64();
        self.next = self.next.wrapping_add(1);
        let rate = self.rates.iter().copied().fold(0.0, f64::max);
        let min_rtt = self.min_rtt.map_or(rtt, |(m, _)| m).as_secs_f64();
        let bdp = (1.25 * rate * min_rtt).min(MAX_WINDOW as f64) as usize;
        self.bytes = (bdp + FRAME_BYTES).clamp(MIN_WINDOW, MAX_WINDOW);
    }
}

fn now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

struct Node {
    available: bool,
    failure: FailureDetector,
    addrs: Vec<SocketAddr>,
    resolved_at: Option<Instant>,
    /// Kept-alive connections (`keepalive true`): one per chunk being written at
    /// once (`flush_thread_count`), the most recently used last.
    conns: Vec<Conn>,
}

pub struct ForwardSender {
    pub id: String,
    conf: ForwardConf,
    nodes: RefCell<Vec<Node>>,
    /// Weighted order of node indexes (rebuilt when availability changes).
    weights: RefCell<Vec<usize>>,
    rr: Cell<usize>,
    stopping: Cell<bool>,
    recover_samples: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
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
    #[error("no nodes are available")]
    NoNodes,
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("handshake with {0} failed: {1}")]
    Handshake(SocketAddr, String),
}

impl ForwardSender {
    pub fn new(id: String, conf: ForwardConf) -> Self {
        let now = now_f64();
        let hb = conf.heartbeat_interval.as_secs_f64().max(1e-3);
        let nodes = conf
            .servers
            .iter()
            .map(|s| Node {
                available: true,
                failure: FailureDetector::new(hb, conf.hard_timeout.as_secs_f64(), now),
                addrs: s.addrs.clone(),
                // A name is resolved on first use (and again per expire_dns_cache).
                resolved_at: (!s.addrs.is_empty()).then(Instant::now),
                conns: Vec::new(),
            })
            .collect();
        let recover_samples = (conf.recover_wait.as_secs_f64() / hb) as usize;
        let s = ForwardSender {
            id,
            conf,
            nodes: RefCell::new(nodes),
            weights: RefCell::new(Vec::new()),
            rr: Cell::new(0),
            stopping: Cell::new(false),
            recover_samples,
        };
        s.rebuild_weights();
        s
    }

    pub fn conf(&self) -> &ForwardConf {
        &self.conf
    }

    pub fn stop(&self) {
        self.stopping.set(true);
        for n in self.nodes.borrow_mut().iter_mut() {
            n.conns.clear();
        }
    }

    /// Whether server `i` is in use (not detached).
    pub fn available(&self, i: usize) -> bool {
        self.nodes.borrow().get(i).is_some_and(|n| n.available)
    }

    /// fluentd's LoadBalancer#rebuild_weight_array: regular servers by weight (reduced
    /// by their gcd), standbys added while regular weight is lost.
    fn rebuild_weights(&self) {
        let nodes = self.nodes.borrow();
        let servers = &self.conf.servers;
        let mut regular: Vec<usize> =
            (0..servers.len()).filter(|&i| servers[i].weight > 0 && !servers[i].standby).collect();
        let mut lost: i64 = regular.iter().filter(|&&i| !nodes[i].available).map(|&i| servers[i].weight as i64).sum();
        if lost > 0 {
            for i in (0..servers.len()).filter(|&i| servers[i].weight > 0 && servers[i].standby) {
                if nodes[i].available {
                    crate::warn!(
                        "{}: using standby node {}:{} weight={}",
                        self.id,
                        servers[i].host,
                        servers[i].port,
                        servers[i].weight
                    );
                    regular.push(i);
                    lost -= servers[i].weight as i64;
                    if lost <= 0 {
                        break;
                    }
                }
            }
        }
        let mut w = Vec::new();
        if regular.is_empty() {
            crate::warn!("{}: No nodes are available", self.id);
        } else {
            let g = regular.iter().fold(0u32, |g, &i| gcd(g, servers[i].weight)).max(1);
            // Interleave by weight so consecutive chunks spread across servers.
            let max = regular.iter().map(|&i| servers[i].weight / g).max().unwrap_or(0).min(10_000);
            for round in 0..max {
                for &i in &regular {
                    if servers[i].weight / g > round {
                        w.push(i);
                    }
                }
            }
        }
        drop(nodes);
        *self.weights.borrow_mut() = w;
    }

    /// The heartbeat task: every `heartbeat_interval`, a heartbeat to each server, then
    /// fluentd's Node#tick (phi / hard_timeout). Ends when the output stops.
    pub async fn heartbeat_loop(&self) {
        if self.conf.heartbeat_type == HeartbeatType::None {
            return;
        }
        let udp = match self.conf.heartbeat_type {
            HeartbeatType::Udp => match glommio::net::UdpSocket::bind("0.0.0.0:0") {
                Ok(s) => Some(s),
                Err(e) => {
                    crate::error!("{}: cannot open the UDP heartbeat socket: {e}; heartbeats are off", self.id);
                    return;
                }
            },
            _ => None,
        };
        while !self.stopping.get() {
            let alive = match &udp {
                None => {
                    glommio::timer::sleep(self.conf.heartbeat_interval).await;
                    let mut alive = vec![false; self.conf.servers.len()];
                    for (i, a) in alive.iter_mut().enumerate() {
                        if self.stopping.get() {
                            return;
                        }
                        let t = self.conf.heartbeat_interval.max(Duration::from_millis(100));
                        *a = glommio::timer::timeout(t, async { Ok(self.connect(i).await.is_ok()) })
                            .await
                            .unwrap_or(false);
                    }
                    alive
                }
                Some(sock) => self.udp_round(sock).await,
            };
            let now = now_f64();
            let mut rebuild = false;
            for (i, ok) in alive.into_iter().enumerate() {
                let mut nodes = self.nodes.borrow_mut();
                let n = &mut nodes[i];
                if ok {
                    n.failure.add(now);
                    if !n.available && n.failure.sample_size() > self.recover_samples {
                        n.available = true;
                        crate::warn!("{}: recovered forwarding server '{}'", self.id, self.conf.servers[i].name);
                        rebuild = true;
                    }
                }
                // Node#tick
                if !n.available {
                    if n.failure.hard_timeout(now) {
                        n.failure.clear();
                    }
                    continue;
                }
                if n.failure.hard_timeout(now) {
                    crate::warn!(
                        "{}: detached forwarding server '{}' hard_timeout=true",
                        self.id,
                        self.conf.servers[i].name
                    );
                    self.detach(n);
                    rebuild = true;
                } else if self.conf.phi_failure_detector {
                    let phi = n.failure.phi(now);
                    if phi > self.conf.phi_threshold {
                        crate::warn!(
                            "{}: detached forwarding server '{}' phi={phi:.2} phi_threshold={}",
                            self.id,
                            self.conf.servers[i].name,
                            self.conf.phi_threshold
                        );
                        self.detach(n);
                        rebuild = true;
                    }
                }
            }
            if rebuild {
                self.rebuild_weights();
            }
        }
    }

    /// `heartbeat_type udp`: a `\0` to every server's port, then one interval of
    /// listening for in_forward's `\0` replies (matched by source address).
    async fn udp_round(&self, sock: &glommio::net::UdpSocket) -> Vec<bool> {
        let mut alive = vec![false; self.conf.servers.len()];
        let mut targets = Vec::new();
        for i in 0..self.conf.servers.len() {
            if let Ok(a) = self.addrs(i).await {
                for addr in a {
                    let _ = sock.send_to(&[0u8], addr).await;
                    targets.push((addr, i));
                }
            }
        }
        let end = Instant::now() + self.conf.heartbeat_interval;
        let mut buf = [0u8; 64];
        while !self.stopping.get() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let r = glommio::timer::timeout(left, async { sock.recv_from(&mut buf).await }).await;
            match r {
                Ok((_, from)) => {
                    for (addr, i) in &targets {
                        if *addr == from
                            || (addr.port() == from.port() && addr.ip().is_loopback() && from.ip().is_loopback())
                        {
                            alive[*i] = true;
                        }
                    }
                }
                Err(_) => {
                    // A timeout, or an ICMP error surfacing as a failed receive: either
                    // way, wait out the interval (never spin on an erroring socket).
                    glommio::timer::sleep(end.saturating_duration_since(Instant::now())).await;
                    break;
                }
            }
        }
        alive
    }

    fn detach(&self, n: &mut Node) {
        n.available = false;
        n.conns.clear();
        n.failure.clear();
        if self.conf.expire_dns_cache.is_some() {
            n.resolved_at = None;
        }
    }

    /// Sends one chunk to the next available server in the weight array, trying the
    /// others in turn (fluentd's select_healthy_node).
    pub async fn write(&self, chunk: &Chunk) -> Result<usize, SendError> {
        let order: Vec<usize> = {
            let w = self.weights.borrow();
            let len = w.len();
            let start = self.rr.get();
            self.rr.set(start.wrapping_add(1));
            (0..len).map(|k| w[(start + k) % len]).collect()
        };
        let mut last = None;
        let mut tried: Vec<usize> = Vec::new();
        for i in order {
            if tried.contains(&i) || !self.available(i) {
                continue;
            }
            tried.push(i);
            match self.send_to(i, chunk).await {
                Ok(n) => return Ok(n),
                Err(e) => {
                    if let SendError::AckTimeout(..) = e {
                        if self.conf.heartbeat_type != HeartbeatType::None {
                            let mut nodes = self.nodes.borrow_mut();
                            self.detach(&mut nodes[i]);
                            drop(nodes);
                            crate::warn!(
                                "{}: no response from node {}. regard it as unavailable.",
                                self.id,
                                self.conf.servers[i].name
                            );
                            self.rebuild_weights();
                        }
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(SendError::NoNodes))
    }

    /// The server's addresses, re-resolved when `expire_dns_cache` says so.
    async fn addrs(&self, i: usize) -> Result<Vec<SocketAddr>, SendError> {
        let s = &self.conf.servers[i];
        let fresh = {
            let nodes = self.nodes.borrow();
            let n = &nodes[i];
            match (self.conf.expire_dns_cache, n.resolved_at) {
                (None, Some(_)) => true,
                (Some(ttl), Some(at)) => !ttl.is_zero() && at.elapsed() < ttl,
                (_, None) => false,
            }
        };
        if !fresh {
            let (host, port) = (s.host.clone(), s.port);
            let r = glommio::executor()
                .spawn_blocking(move || (host.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
                .await;
            match r {
                Ok(a) if !a.is_empty() => {
                    let mut nodes = self.nodes.borrow_mut();
                    nodes[i].addrs = a;
                    nodes[i].resolved_at = Some(Instant::now());
                }
                Ok(_) => return Err(SendError::Resolve(s.host.clone(), "no addresses".into())),
                Err(e) => return Err(SendError::Resolve(s.host.clone(), e.to_string())),
            }
        }
        let mut a = self.nodes.borrow()[i].addrs.clone();
        if self.conf.dns_round_robin && a.len() > 1 {
            let k = self.rr.get() % a.len();
            a.rotate_left(k);
        }
        Ok(a)
    }

    async fn connect(&self, i: usize) -> Result<Conn, SendError> {
        let s = &self.conf.servers[i];
        let mut last = SendError::NoNodes;
        for addr in self.addrs(i).await? {
            match TcpStream::connect_timeout(addr, self.conf.connect_timeout).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let stream = match &self.conf.tls {
                        None => crate::tls::Stream::Plain(tcp),
                        Some(tls) => {
                            match crate::tls::Stream::connect(tcp, tls, &s.host, self.conf.connect_timeout).await {
                                Ok(st) => st,
                                Err(e) => {
                                    last = SendError::Handshake(addr, format!("TLS: {e}"));
                                    continue;
                                }
                            }
                        }
                    };
                    let mut conn = Conn {
                        stream,
                        addr,
                        rbuf: BytesMut::with_capacity(256),
                        last_used: Instant::now(),
                        window: Window::new(),
                    };
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

    async fn send_to(&self, i: usize, chunk: &Chunk) -> Result<usize, SendError> {
        // A kept-alive connection, unless it idled past keepalive_timeout.
        let kept = {
            let mut nodes = self.nodes.borrow_mut();
            let conns = &mut nodes[i].conns;
            conns.retain(|c| self.conf.keepalive_timeout.is_none_or(|t| c.last_used.elapsed() < t));
            conns.pop()
        };
        let mut conn = match kept {
            Some(c) => c,
            None => self.connect(i).await?,
        };
        let r = self.send_on(&mut conn, chunk).await;
        if r.is_ok() && self.conf.keepalive && !self.stopping.get() {
            conn.last_used = Instant::now();
            let mut nodes = self.nodes.borrow_mut();
            // At most one kept connection per write that can be in flight.
            if nodes[i].conns.len() < MAX_KEPT {
                nodes[i].conns.push(conn);
            }
        }
        r
    }

    async fn send_on(&self, conn: &mut Conn, chunk: &Chunk) -> Result<usize, SendError> {
        if !self.conf.require_ack_response {
            // No acks, no progress to track: the whole chunk in one frame, as fluentd.
            return self.send_frame(conn, chunk, &chunk.data, chunk.count, None).await;
        }
        // Frames of at most FRAME_BYTES, each with its own ack id, at most the
        // connection's window of them unacknowledged; every ack is recorded in the
        // chunk (and its side file), so a retry or a restarted spate resends only what
        // was not acked.
        let base = hex(&chunk.id);
        let mut pos = chunk.acked().bytes.min(chunk.data.len());
        let mut in_flight: std::collections::VecDeque<(String, Progress, Instant, u64, usize)> =
            std::collections::VecDeque::new();
        let (mut total, mut flying) = (0, 0);
        let mut next = chunk.acked();
        // The next frame to send (its end and event count), found once.
        let mut upcoming: Option<(usize, u32)> = None;
        while pos < chunk.data.len() || !in_flight.is_empty() {
            if pos < chunk.data.len() {
                let (end, n) = *upcoming.get_or_insert_with(|| frame_end(&chunk.data, pos, FRAME_BYTES));
                if in_flight.is_empty() || flying + (end - pos) <= conn.window.bytes {
                    upcoming = None;
                    // The id names the chunk and the frame's offset: a resend after a
                    // restart splits the rest of the chunk the same way.
                    let id = format!("{base}-{pos:x}");
                    total += self.send_frame(conn, chunk, &chunk.data[pos..end], n, Some(&id)).await?;
                    next = Progress { bytes: end, events: next.events.saturating_add(n) };
                    in_flight.push_back((id, next, Instant::now(), conn.window.delivered, end - pos));
                    flying += end - pos;
                    pos = end;
                    continue;
                }
            }
            let Some((id, p, sent, delivered_then, len)) = in_flight.pop_front() else { break };
            self.wait_ack(conn, &id).await?;
            conn.window.on_ack(sent, delivered_then, len);
            flying -= len;
            chunk.record_acked(p);
        }
        Ok(total)
    }

    /// Writes one PackedForward frame of `entries` (`n` events) with ack id `ack`.
    async fn send_frame(
        &self,
        conn: &mut Conn,
        chunk: &Chunk,
        entries: &[u8],
        n: u32,
        ack: Option<&str>,
    ) -> Result<usize, SendError> {
        let addr = conn.addr;
        let converted;
        let mut entries = entries;
        if self.conf.time_as_integer {
            converted = to_integer_times(entries);
            entries = &converted;
        }
        let compressed;
        if self.conf.compress_gzip {
            compressed = spate_protocol::compress::gzip(entries, 6);
            entries = &compressed;
        }
        let opt = OptionsOut {
            chunk: ack.map(str::as_bytes),
            size: Some(n as u64),
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
            Ok(()) => Ok(head.len() + entries.len() + tail.len()),
            Err(e) => Err(SendError::Write(addr, e.to_string())),
        }
    }

    /// Waits up to `ack_response_timeout` for the ack of frame `want`.
    async fn wait_ack(&self, conn: &mut Conn, want: &str) -> Result<(), SendError> {
        let addr = conn.addr;
        let want = want.as_bytes();
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
            Ok(r) => r,
            Err(_) => Err(SendError::AckTimeout(addr, timeout)),
        }
    }
}

/// Kept-alive connections per server, at most (`flush_thread_count` writes each hold
/// one while they run).
const MAX_KEPT: usize = crate::buffer::conf::MAX_FLUSH_THREADS as usize;

/// Largest frame out_forward sends with `require_ack_response` (a chunk is split into
/// frames of whole entries up to this size; an entry larger than this is a frame alone).
pub const FRAME_BYTES: usize = 16 << 10;
/// Bytes in flight (sent, not yet acked) at first and at least: two frames, so the
/// server always has the next frame while it acks one.
pub const MIN_WINDOW: usize = 2 * FRAME_BYTES;
/// Bytes in flight at most (a far, fast server): what a crash may send again.
pub const MAX_WINDOW: usize = 4 << 20;

/// End of the frame starting at `pos`: whole entries up to `max` bytes (at least one),
/// and their count. Entries in a chunk were validated when they were received.
fn frame_end(data: &[u8], pos: usize, max: usize) -> (usize, u32) {
    let (mut end, mut n) = (pos, 0u32);
    while end < data.len() {
        let Ok(len) = spate_protocol::msgpack::value_len(&data[end..], spate_protocol::msgpack::MAX_DEPTH) else {
            // Not expected in a buffer; send the rest as it is.
            return (data.len(), n.max(1));
        };
        if n > 0 && end + len - pos > max {
            break;
        }
        end += len;
        n += 1;
    }
    (end, n)
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

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Writer for ForwardSender {
    fn type_name(&self) -> &'static str {
        "forward"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            ForwardSender::write(self, chunk).await.map_err(|e| match e {
                // fluentd's rollback: resend at once (to another server when there is one).
                SendError::AckTimeout(..) => WriteError::Rollback(e.to_string()),
                e => WriteError::Retry(e.to_string()),
            })
        })
    }

    fn start(self: Rc<Self>) {
        glommio::spawn_local(async move { self.heartbeat_loop().await }).detach();
    }

    fn stop(&self) {
        ForwardSender::stop(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl WriterPlan for ForwardConf {
    fn concurrent_writes(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "forward"
    }

    fn describe(&self) -> String {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}:{}{}", s.host, s.port, if s.standby { " (standby)" } else { "" }))
            .collect();
        format!("{}{}", servers.join(", "), if self.require_ack_response { ", acks" } else { "" })
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(ForwardSender::new(id.to_string(), self.clone())))
    }
}

#[cfg(test)]
mod tests;
