//! `in_tcp`: lines (or `delimiter`-separated messages) over TCP, each parsed with the
//! `<parse>` section, as fluentd's `in_tcp.rb`. Also the TCP and UDP text servers
//! in_udp and in_syslog run on ([`TextServer`]): every shard binds its own SO_REUSEPORT
//! socket, a connection's messages are parsed and routed after each read, before the
//! next one (so what was read is in the buffer before more is read: TCP's only
//! guarantee here, there are no acks), and memory per connection stays bounded by the
//! read size plus `message_length_limit`.
//!
//! Bad input (over-long messages, text that does not parse, frames that lie) is
//! counted and logged with the peer, at most once every 10 s per kind with the count
//! since; the connection (or, for UDP, the socket) keeps serving.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use spate_protocol::EventBatch;

use super::text::{Batcher, Dropped, OctetCounter, SourceKeys, Splitter, TagMode};
use crate::config::{ConfigError, Element};
use crate::parser::ParserConf;
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};
use crate::tls::Stream;

pub const PLUGIN: Registration = Registration {
    name: "tcp",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`tag` (required), `bind`, `port` (5170), `delimiter` (`\\n`), `message_length_limit` (default: spate caps a message at 64 MiB), `source_address_key`, `source_hostname_key` (the peer address: no reverse DNS), `send_keepalive_packet`, `<transport tls>` (in_forward's TLS parameters), `<parse>` (required; every parser below)",
};

/// Without `message_length_limit`, fluentd buffers a message without bound; spate
/// stops at this many bytes (the message is dropped with a log line).
pub const HARD_LIMIT: usize = 64 << 20;

/// How a stream is cut into messages.
#[derive(Debug, Clone)]
pub enum Framing {
    Delimiter {
        delimiter: Box<[u8]>,
        limit: Option<usize>,
    },
    /// RFC 6587 octet counting (in_syslog `frame_type octet_count`).
    OctetCount {
        limit: usize,
    },
}

/// The configuration of a text server (in_tcp, in_udp, in_syslog).
#[derive(Debug, Clone)]
pub struct ServerConf {
    pub id: String,
    pub type_name: &'static str,
    pub addr: SocketAddr,
    pub udp: bool,
    pub framing: Framing,
    /// UDP: the largest datagram read (fluentd's `message_length_limit`).
    pub udp_max: usize,
    /// in_udp's `remove_newline` (and in_syslog's `chomp` of datagrams).
    pub chomp: bool,
    pub keys: SourceKeys,
    pub send_keepalive_packet: bool,
    /// UDP: SO_RCVBUF (in_udp's `receive_buffer_size`).
    pub recv_buffer: Option<usize>,
    pub label: usize,
    pub tag: TagMode,
    pub parser: ParserConf,
    /// `<transport tls>` (TCP only): rustls with in_forward's TLS parameters.
    pub tls: Option<crate::tls::ServerTls>,
}

/// Reads the shared parameters: `bind`, `port`, the source keys, `<parse>`.
pub fn parse_addr(e: &Element, default_port: u16) -> Result<SocketAddr, ConfigError> {
    let port = match e.int("port")? {
        Some(p) => u16::try_from(p).map_err(|_| e.error(format!("port {p} is out of range (0-65535)")))?,
        None => default_port,
    };
    let bind = e.str("bind").unwrap_or("0.0.0.0");
    let ip: std::net::IpAddr = match bind {
        "" | "*" => std::net::Ipv4Addr::UNSPECIFIED.into(),
        s => s
            .parse()
            .map_err(|_| e.error(format!("bind {s:?} is not an IP address (spate does not resolve bind names)")))?,
    };
    Ok(SocketAddr::new(ip, port))
}

pub fn source_keys(e: &Element) -> SourceKeys {
    let host = e.str("source_hostname_key").or_else(|| e.str("source_host_key"));
    SourceKeys {
        address_key: e.str("source_address_key").map(|s| s.as_bytes().into()),
        hostname_key: host.map(|s| s.as_bytes().into()),
    }
}

/// `<parse>` (required), or the one fluentd's compat layer makes of v0.12's flat
/// `format` (`/regexp/` or a type), `time_format`, ... parameters.
pub fn parse_section(e: &Element, default: Option<&str>) -> Result<ParserConf, ConfigError> {
    let v012 = crate::parser::v012_section(e)?;
    if let Some(p) = e.single("parse")?.or(v012.as_ref()) {
        let conf = match (p.plugin_type(), default) {
            (None, Some(d)) => ParserConf::with_type(p, d)?,
            _ => ParserConf::from_element(p)?,
        };
        p.warn_unused();
        return Ok(conf);
    }
    match default {
        Some(d) => ParserConf::with_type(e, d),
        None => Err(e.error("<parse> section is required.")),
    }
}

fn size_param(e: &Element, key: &str) -> Result<Option<usize>, ConfigError> {
    Ok(e.size(key)?.map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let tag = e.str("tag").ok_or_else(|| e.error("'tag' parameter is required"))?;
    let limit = size_param(e, "message_length_limit")?;
    let delimiter = e.string_or("delimiter", "\n");
    if delimiter.is_empty() {
        return Err(e.error("delimiter must not be empty"));
    }
    let mut tls = None;
    if let Some(t) = e.single("transport")? {
        // server_tls reports unused parameters of a tls section itself.
        tls = crate::tls::server_tls(t)?;
        if tls.is_none() {
            t.warn_unused();
        }
    }
    if e.single("security")?.is_some() {
        return Err(e.error("<security> in in_tcp is not supported yet (use a firewall, or in_forward's <security>)"));
    }
    Ok(Box::new(ServerConf {
        id: ctx.id(e, "tcp"),
        type_name: "tcp",
        addr: parse_addr(e, 5170)?,
        udp: false,
        framing: Framing::Delimiter {
            delimiter: delimiter.into_bytes().into(),
            limit: Some(limit.unwrap_or(HARD_LIMIT)),
        },
        udp_max: 0,
        chomp: false,
        keys: source_keys(e),
        send_keepalive_packet: e.bool("send_keepalive_packet")?.unwrap_or(false),
        recv_buffer: None,
        label: ctx.label_ref(e)?.unwrap_or(0),
        tag: TagMode::Fixed(Bytes::copy_from_slice(tag.as_bytes())),
        parser: parse_section(e, None)?,
        tls,
    }))
}

impl InputPlan for ServerConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        format!("{}{} @type {}", if self.udp { "udp " } else { "" }, self.addr, self.parser.type_name)
    }
    fn build(&self, _ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(TextServer::new(self.clone(), emitter))
    }
}

/// Counters of a text server (shard-local).
#[derive(Debug, Default)]
pub struct TextMetrics {
    pub connections: Cell<u64>,
    pub active: Cell<u64>,
    pub bytes: Cell<u64>,
    pub events: Cell<u64>,
    /// Messages over message_length_limit (and octet-count frames that lied).
    pub dropped_messages: Cell<u64>,
    pub parse_failures: Cell<u64>,
    /// Events an output refused (no ack exists to make the sender retry: lost).
    pub dropped_events: Cell<u64>,
    pub bad_frames: Cell<u64>,
}

fn inc(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// A text server on one shard.
pub struct TextServer {
    pub conf: ServerConf,
    pub metrics: TextMetrics,
    router: Rc<dyn Emitter>,
    batcher: RefCell<Batcher>,
    conns: RefCell<HashMap<u64, JoinHandle<()>>>,
    next_conn: Cell<u64>,
    stopping: Cell<bool>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// When each kind of warning was last logged, and how many were not logged since.
    warned: RefCell<HashMap<&'static str, (Instant, u64)>>,
}

const WARN_EVERY: Duration = Duration::from_secs(10);
const READ: usize = 64 << 10;

impl TextServer {
    pub fn new(conf: ServerConf, router: Rc<dyn Emitter>) -> Rc<Self> {
        let batcher = Batcher::new(&conf.parser, conf.tag.clone(), conf.keys.clone());
        Rc::new(TextServer {
            conf,
            metrics: TextMetrics::default(),
            router,
            batcher: RefCell::new(batcher),
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            stopping: Cell::new(false),
            tasks: RefCell::new(Vec::new()),
            warned: RefCell::new(HashMap::new()),
        })
    }

    /// Logs a warning of `kind` at most once every 10 s, with the count since.
    fn warn(&self, kind: &'static str, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut w = self.warned.borrow_mut();
        let e = w.entry(kind).or_insert((now - WARN_EVERY * 2, 0));
        e.1 += 1;
        if now.duration_since(e.0) >= WARN_EVERY {
            let n = e.1;
            *e = (now, 0);
            drop(w);
            crate::warn!(
                "{}: {}{}",
                self.conf.id,
                msg(),
                if n > 1 { format!(" ({n} such since the last report)") } else { String::new() }
            );
        }
    }

    /// Emits the batches of the messages handled so far; waits while a buffer with
    /// `overflow_action block` is full.
    async fn flush(&self, peer: &str) {
        let mut batches: Vec<EventBatch> = Vec::new();
        {
            let mut b = self.batcher.borrow_mut();
            b.take_batches(|batch| batches.push(batch));
            if let Some((n, last)) = b.take_failures() {
                inc(&self.metrics.parse_failures, n);
                let text = String::from_utf8_lossy(last).into_owned();
                let err = b.sink.last_error.take().map_or_else(String::new, |e| format!(" ({e})"));
                drop(b);
                self.warn("parse", || {
                    format!("pattern not matched{err}: {n} message(s) from {peer}, the last: {text:?}")
                });
            }
        }
        for batch in batches {
            let n = batch.count as u64;
            let mut pause = Duration::from_millis(5);
            loop {
                match self.router.emit(self.conf.label, batch.clone()) {
                    Ok(()) => {
                        inc(&self.metrics.events, n);
                        break;
                    }
                    Err(e) if e.is_block() && !self.stopping.get() => {
                        glommio::timer::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    Err(e) => {
                        inc(&self.metrics.dropped_events, n);
                        self.warn("emit", || format!("{n} events from {peer} dropped: {e}"));
                        break;
                    }
                }
            }
        }
    }

    fn note_drop(&self, d: Dropped, head: &[u8], peer: &str) {
        inc(&self.metrics.dropped_messages, 1);
        let limit = match &self.conf.framing {
            Framing::Delimiter { limit, .. } => limit.unwrap_or(0),
            Framing::OctetCount { limit } => *limit,
        };
        let head = String::from_utf8_lossy(&head[..head.len().min(32)]).into_owned();
        match d {
            Dropped::TooLong(n) => self.warn("too_long", || {
                format!("a message from {peer} is larger than message_length_limit {limit}, dropped: size {n}, head {head:?}")
            }),
            Dropped::Overflow(n) => self.warn("overflow", || {
                format!("the buffer of {peer} exceeds message_length_limit {limit} without a delimiter, cleared ({n} bytes) and the rest of that message discarded: head {head:?}")
            }),
        }
    }

    fn start_tcp(self: &Rc<Self>, l: super::net::Listener) {
        let me = self.clone();
        let t = glommio::spawn_local(async move { me.accept_loop(l).await }).detach();
        self.tasks.borrow_mut().push(t);
    }

    /// The listener is pooled per shard (it survives a reload): accept errors are the
    /// pool's, and a stopping input hands back what it took.
    async fn accept_loop(self: Rc<Self>, l: super::net::Listener) {
        loop {
            let stream = l.accept().await;
            if self.stopping.get() {
                l.give_back(stream);
                break;
            }
            let id = self.next_conn.get();
            self.next_conn.set(id + 1);
            inc(&self.metrics.connections, 1);
            inc(&self.metrics.active, 1);
            let me = self.clone();
            let h = glommio::spawn_local(async move {
                me.keepalive(&stream);
                let peer = stream.peer_addr().ok();
                match Stream::accept_if(stream, me.conf.tls.as_ref(), crate::tls::HANDSHAKE_TIMEOUT).await {
                    Ok(s) => me.serve(s, peer).await,
                    // Closed before a ClientHello: a TCP health check (as in_forward).
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        crate::debug!("{}: {peer:?} closed the connection before a TLS handshake", me.conf.id);
                    }
                    Err(e) => {
                        inc(&me.metrics.bad_frames, 1);
                        // Rate-limited: a client can fail handshakes in a loop.
                        me.warn("tls", || {
                            let p = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
                            format!("TLS handshake with {p} failed: {e}")
                        });
                    }
                }
                me.metrics.active.set(me.metrics.active.get().saturating_sub(1));
                me.conns.borrow_mut().remove(&id);
            })
            .detach();
            self.conns.borrow_mut().insert(id, h);
        }
    }

    /// `send_keepalive_packet`: SO_KEEPALIVE on the accepted socket.
    fn keepalive(&self, stream: &TcpStream) {
        use std::os::fd::AsRawFd;
        if self.conf.send_keepalive_packet {
            // SAFETY: the fd stays open for the duration of this borrow (we hold `stream`).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            let _ = socket2::SockRef::from(&fd).set_keepalive(true);
        }
    }

    async fn serve(&self, mut stream: Stream, peer: Option<SocketAddr>) {
        let peer_s = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        let peer_ip = peer.map_or_else(String::new, |p| p.ip().to_string());
        let (mut splitter, mut counter) = match &self.conf.framing {
            Framing::Delimiter { delimiter, limit } => (Some(Splitter::new(delimiter, *limit)), None),
            Framing::OctetCount { limit } => (None, Some(OctetCounter::new(*limit))),
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut turn = Instant::now();
        loop {
            let start = buf.len();
            // What is waiting is taken without zero-filling the window first (plain
            // TCP: TLS records go through rustls).
            buf.reserve(READ);
            let waiting = stream.plain_fd().and_then(|fd| crate::sys::recv_waiting(fd, &mut buf, READ));
            let read = match waiting {
                Some(r) => r,
                None => {
                    buf.resize(start + READ, 0);
                    let r = stream.read(&mut buf[start..]).await;
                    buf.truncate(start + *r.as_ref().unwrap_or(&0));
                    r
                }
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    crate::debug!("{}: read from {peer_s} failed: {e}", self.conf.id);
                    0
                }
            };
            if n == 0 {
                if !buf.is_empty() {
                    self.warn("unterminated", || {
                        format!("{peer_s} closed the connection in the middle of a message ({} bytes without a delimiter dropped)", buf.len())
                    });
                }
                return;
            }
            inc(&self.metrics.bytes, n as u64);
            let mut drops: Vec<(Dropped, Vec<u8>)> = Vec::new();
            let step = {
                let mut b = self.batcher.borrow_mut();
                b.set_peer(peer_ip.as_bytes());
                if let Some(s) = splitter.as_mut() {
                    Ok(s.split(&buf, |m| b.message(m), |d, m| drops.push((d, m[..m.len().min(32)].to_vec()))))
                } else if let Some(oc) = counter.as_mut() {
                    oc.split(&buf, |m| b.message(m))
                } else {
                    Ok(0)
                }
            };
            for (d, head) in drops {
                self.note_drop(d, &head, &peer_s);
            }
            let consumed = match step {
                Ok(c) => c,
                Err(e) => {
                    inc(&self.metrics.bad_frames, 1);
                    crate::warn!("{}: closing the connection from {peer_s}: {e}", self.conf.id);
                    self.flush(&peer_s).await;
                    return;
                }
            };
            buf.drain(..consumed);
            self.flush(&peer_s).await;
            if self.stopping.get() {
                return;
            }
            // Fairness between the shard's connections.
            crate::input::net::take_turns(&mut turn, Instant::now()).await;
        }
    }

    fn start_udp(self: &Rc<Self>, sock: std::net::UdpSocket) {
        // SAFETY: the fd comes from a bound, non-blocking socket we own.
        let s = unsafe { glommio::net::UdpSocket::from_raw_fd(sock.into_raw_fd()) };
        let me = self.clone();
        let t = glommio::spawn_local(async move { me.udp_loop(s).await }).detach();
        self.tasks.borrow_mut().push(t);
    }

    async fn udp_loop(self: Rc<Self>, sock: glommio::net::UdpSocket) {
        // One byte more than the limit tells an over-long datagram from one that fits.
        let mut buf = vec![0u8; self.conf.udp_max.saturating_add(1).min(65536)];
        loop {
            let (n, peer) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    crate::warn!("{}: UDP receive failed: {e}", self.conf.id);
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            inc(&self.metrics.bytes, n as u64);
            let peer_s = peer.to_string();
            if n > self.conf.udp_max {
                // fluentd reads max_bytes and parses the truncated datagram; spate drops it.
                self.note_drop(Dropped::TooLong(n), &buf[..n.min(32)], &peer_s);
            } else {
                let mut msg = &buf[..n];
                if self.conf.chomp {
                    msg = msg.strip_suffix(b"\r\n").or_else(|| msg.strip_suffix(b"\n")).unwrap_or(msg);
                }
                let mut b = self.batcher.borrow_mut();
                b.set_peer(peer.ip().to_string().as_bytes());
                b.message(msg);
            }
            self.flush(&peer_s).await;
            if self.stopping.get() {
                return;
            }
        }
    }
}

/// Binds a UDP socket with SO_REUSEPORT (every shard binds the same port).
pub fn bind_udp(addr: SocketAddr, recv_buffer: Option<usize>) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if let Some(n) = recv_buffer {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Input for TextServer {
    fn start(self: Rc<Self>, _first: bool) -> std::io::Result<Vec<Listening>> {
        let local = if self.conf.udp {
            let s = bind_udp(self.conf.addr, self.conf.recv_buffer)?;
            let local = s.local_addr()?;
            self.start_udp(s);
            local
        } else {
            let l = super::net::listen(self.conf.addr, None)?;
            let local = l.local_addr();
            self.start_tcp(l);
            local
        };
        Ok(vec![Listening { addr: local, what: self.conf.type_name }])
    }

    fn stop(&self, grace: Duration) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.set(true);
            for t in self.tasks.borrow_mut().drain(..) {
                t.cancel();
            }
            let end = Instant::now() + grace;
            while !self.conns.borrow().is_empty() && Instant::now() < end {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            for (_, h) in self.conns.borrow_mut().drain() {
                h.cancel();
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
