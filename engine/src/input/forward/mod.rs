//! `in_forward`: the Forward protocol server. Every shard binds its own listener on the
//! same port (SO_REUSEPORT; the kernel spreads connections), reads into a per-connection
//! `BytesMut`, decodes frames in place with `spate-protocol`, routes each batch, and
//! sends `{"ack": chunk}` only after every matched output accepted the batch. A bad
//! frame closes that connection with a log line naming the peer and the reason;
//! everything else keeps running. Shard 0 also answers fluentd's UDP heartbeat on the
//! same port (one `\0` byte back). Compressed frames are inflated in bounded slices
//! under a per-shard memory budget ([`inflate`]).

mod inflate;

use inflate::{FrameInflater, InflateError};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use spate_protocol::encode;
use spate_protocol::{CompressedFrame, Decoded, EventBatch, Frame, FrameDecoder, Limits, Mode};

use message_run::MessageRun;

use crate::buffer::sync::Syncer;
use crate::plugin::{BuildError, Emitter, Input, InputPlan, Listening, LocalFuture, ShardCtx};
use crate::tls::Stream;

pub mod conf;
mod message_run;

pub use conf::{ForwardInConf, PLUGIN};

/// Per-input counters (shard-local).
#[derive(Debug, Default)]
pub struct InputMetrics {
    pub connections: Cell<u64>,
    pub active: Cell<u64>,
    pub frames: Cell<u64>,
    pub events: Cell<u64>,
    pub bytes: Cell<u64>,
    pub invalid_events: Cell<u64>,
    pub bad_frames: Cell<u64>,
    pub rejected_batches: Cell<u64>,
    /// Times a full buffer with `overflow_action block` paused reading.
    pub blocked: Cell<u64>,
    pub acks: Cell<u64>,
    pub auth_failures: Cell<u64>,
    /// TLS handshakes that failed (no TLS, wrong CA, no client certificate, timeout).
    pub tls_failures: Cell<u64>,
    pub refused_connections: Cell<u64>,
    pub idle_closed: Cell<u64>,
    /// From the read that completed a frame to its ack written.
    pub ack_latency: crate::metrics::Histogram,
}

impl InputMetrics {
    /// Reports the counters under spate's names (see `metrics::prom`).
    pub fn visit(&self, m: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Merge;
        m.counter("batches_in", "Frames received.", self.frames.get());
        m.counter("events_in", "Events received.", self.events.get());
        m.counter("bytes_in", "Bytes read from connections.", self.bytes.get());
        m.counter("decode_errors", "Frames that could not be decoded (connection closed).", self.bad_frames.get());
        m.counter("invalid_events", "Entries that were not [time, record] (dropped).", self.invalid_events.get());
        m.counter(
            "rejected_batches",
            "Batches the outputs refused (no ack, connection closed).",
            self.rejected_batches.get(),
        );
        m.counter("blocked", "Times a full buffer (overflow_action block) paused reading.", self.blocked.get());
        m.counter("acks_sent", "Acks sent.", self.acks.get());
        m.counter("auth_failures", "Shared-key or user authentication failures.", self.auth_failures.get());
        m.counter("tls_failures", "Failed TLS handshakes.", self.tls_failures.get());
        m.counter("connections_accepted", "Connections accepted.", self.connections.get());
        m.counter("connections_refused", "Connections refused (max_connections).", self.refused_connections.get());
        m.counter("connections_idle_closed", "Connections closed after idle_timeout.", self.idle_closed.get());
        m.gauge("connections_open", "Connections open.", self.active.get() as f64, Merge::Sum);
        m.histogram(
            "ack_latency_seconds",
            "From the read that completed a frame to its ack written (per ack).",
            &self.ack_latency,
        );
    }
}

fn inc(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// One in_forward instance on one shard.
pub struct ForwardInput {
    pub conf: ForwardInConf,
    pub metrics: InputMetrics,
    router: Rc<dyn Emitter>,
    /// The shard's group commit: acks wait until what they cover is durable.
    syncer: Rc<Syncer>,
    conns: RefCell<HashMap<u64, JoinHandle<()>>>,
    next_conn: Cell<u64>,
    stopping: Cell<bool>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    inflate_budget: inflate::InflateBudget,
}

impl ForwardInput {
    pub fn new(conf: ForwardInConf, router: Rc<dyn Emitter>, syncer: Rc<Syncer>) -> Rc<Self> {
        Rc::new(ForwardInput {
            inflate_budget: inflate::InflateBudget::new(conf.inflate_memory_limit),
            conf,
            metrics: InputMetrics::default(),
            router,
            syncer,
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            stopping: Cell::new(false),
            tasks: RefCell::new(Vec::new()),
        })
    }

    /// Starts accepting on this shard. `udp` binds the heartbeat socket (one shard).
    pub fn start(self: &Rc<Self>, l: crate::input::net::Listener, udp: bool) -> std::io::Result<SocketAddr> {
        let local = l.local_addr();
        let me = self.clone();
        let t = glommio::spawn_local(async move { me.accept_loop(l).await }).detach();
        self.tasks.borrow_mut().push(t);
        if udp {
            match glommio::net::UdpSocket::bind(local) {
                Ok(sock) => {
                    let t = glommio::spawn_local(heartbeat_loop(sock)).detach();
                    self.tasks.borrow_mut().push(t);
                }
                Err(e) => crate::warn!("{}: UDP heartbeat socket on {local} not bound: {e}", self.conf.id),
            }
        }
        Ok(local)
    }

    async fn accept_loop(self: Rc<Self>, l: crate::input::net::Listener) {
        loop {
            // The listener is pooled (it survives a reload): accept errors are handled
            // by the pool, and a stopping input hands back what it took.
            let stream = l.accept().await;
            if self.stopping.get() {
                l.give_back(stream);
                break;
            }
            if self.metrics.active.get() as usize >= self.conf.max_connections {
                let n = self.metrics.refused_connections.get() + 1;
                self.metrics.refused_connections.set(n);
                // Log the first refusal and then every 1000th: a flood must not flood the log.
                if n == 1 || n.is_multiple_of(1000) {
                    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |p| p.to_string());
                    crate::warn!("{}: refusing connection from {peer}: max_connections {} reached on this shard ({n} refused so far)", self.conf.id, self.conf.max_connections);
                }
                drop(stream);
                continue;
            }
            let id = self.next_conn.get();
            self.next_conn.set(id + 1);
            inc(&self.metrics.connections, 1);
            inc(&self.metrics.active, 1);
            let me = self.clone();
            let h = glommio::spawn_local(async move {
                let peer = stream.peer_addr().ok();
                me.serve(stream, peer).await;
                me.metrics.active.set(me.metrics.active.get().saturating_sub(1));
                me.conns.borrow_mut().remove(&id);
            })
            .detach();
            self.conns.borrow_mut().insert(id, h);
        }
    }

    /// Stops accepting, lets connections finish what they are reading for `grace`,
    /// then closes the rest.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.set(true);
        for t in self.tasks.borrow_mut().drain(..) {
            t.cancel();
        }
        let end = std::time::Instant::now() + grace;
        while !self.conns.borrow().is_empty() && std::time::Instant::now() < end {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        for (_, h) in self.conns.borrow_mut().drain() {
            h.cancel();
        }
    }

    fn tune(&self, stream: &TcpStream) {
        use std::os::fd::AsRawFd;
        // SAFETY: the fd stays open for the duration of this borrow (we hold `stream`).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let s = socket2::SockRef::from(&fd);
        let _ = s.set_nodelay(true);
        if self.conf.send_keepalive_packet {
            let _ = s.set_keepalive(true);
        }
        if !self.conf.linger_timeout.is_zero() {
            let _ = s.set_linger(Some(self.conf.linger_timeout));
        }
    }

    async fn serve(&self, tcp: TcpStream, peer: Option<SocketAddr>) {
        self.tune(&tcp);
        let peer_s = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        let mut stream = match &self.conf.tls {
            None => Stream::Plain(tcp),
            Some(tls) => match Stream::accept(tcp, tls, self.conf.handshake_timeout).await {
                Ok(s) => s,
                // Closed before a ClientHello: a TCP health check, not a TLS failure.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    crate::debug!("{}: {peer_s} closed the connection before a TLS handshake", self.conf.id);
                    return;
                }
                Err(e) => {
                    inc(&self.metrics.tls_failures, 1);
                    crate::warn!("{}: TLS handshake with {peer_s} failed, closing the connection: {e}", self.conf.id);
                    return;
                }
            },
        };
        let mut dec = FrameDecoder::new(self.conf.limits());
        // Reads start small and grow while they come back full: an idle connection
        // holds 512 bytes, a bulk sender reads 256 KiB at a time after a few reads; a
        // connection whose reads turn small again shrinks back (see below).
        let mut want = READ_MIN;
        let mut buf = BytesMut::with_capacity(READ_MIN);
        let mut acks: Vec<u8> = Vec::new();
        let source_ip: Option<Bytes> = peer.map(|p| Bytes::from(p.ip().to_string()));
        if let Some(sec) = &self.conf.security {
            let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), crate::security::peer_ip);
            let hs_timeout = self.conf.handshake_timeout;
            let r =
                glommio::timer::timeout(hs_timeout, async { Ok(self.handshake(&mut stream, &mut buf, sec, ip).await) })
                    .await;
            let reason = match r {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(_) => Some(format!("no PING within {hs_timeout:?} (handshake_timeout)")),
            };
            if let Some(reason) = reason {
                inc(&self.metrics.auth_failures, 1);
                crate::warn!("{}: authentication of {peer_s} failed, closing the connection: {reason}", self.conf.id);
                let _ = stream.close().await;
                return;
            }
        }
        loop {
            if buf.capacity() - buf.len() < want / 2 {
                buf.reserve(want);
            }
            let read = match self.conf.idle_timeout {
                None => read_into(&mut stream, &mut buf, want).await,
                Some(t) => match glommio::timer::timeout(t, async {
                    read_into(&mut stream, &mut buf, want).await.map_err(glommio::GlommioError::from)
                })
                .await
                {
                    Ok(n) => Ok(n),
                    Err(glommio::GlommioError::TimedOut(_)) => {
                        inc(&self.metrics.idle_closed, 1);
                        crate::info!("{}: closing connection from {peer_s}: idle for {t:?}", self.conf.id);
                        return;
                    }
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                },
            };
            let n = match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        crate::warn!(
                            "{}: connection from {peer_s} closed with {} bytes of an incomplete frame",
                            self.conf.id,
                            buf.len()
                        );
                    }
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    crate::debug!("{}: read from {peer_s} failed: {e}", self.conf.id);
                    return;
                }
            };
            inc(&self.metrics.bytes, n as u64);
            let (read_at, acks_before) = (Instant::now(), self.metrics.acks.get());
            let small_read = n < want / 8;
            if n >= want / 2 {
                want = (want * 2).min(READ_SIZE);
            }
            let mut close = false;
            loop {
                match self.process(&mut dec, &mut buf, &peer_s, source_ip.as_ref(), &mut acks) {
                    Step::More => break,
                    Step::Close => {
                        close = true;
                        break;
                    }
                    Step::Inflate(frame, json) => {
                        // A compressed frame: inflated a slice at a time, yielding to
                        // the shard's other connections in between.
                        let limits = *dec.limits();
                        // Boxed: its state would otherwise be part of every connection's
                        // task, idle or not.
                        let inflated =
                            Box::pin(self.inflate_frame(*frame, &limits, &peer_s, source_ip.as_ref(), json, &mut acks));
                        if !inflated.await {
                            close = true;
                            break;
                        }
                        if self.conf.deny_keepalive {
                            close = true;
                            break;
                        }
                    }
                    Step::Blocked(batch, chunks, json) => {
                        // overflow_action block: stop reading (TCP back-pressure) until
                        // the buffer has room, then retry the batch.
                        if !self.wait_for_room(batch, chunks, json, &peer_s, &mut acks).await {
                            close = true;
                            break;
                        }
                        if self.conf.deny_keepalive {
                            close = true;
                            break;
                        }
                    }
                }
            }
            if !acks.is_empty() {
                // A file buffer's events are acked only once the shard's group commit
                // has made them durable.
                if let Some(epoch) = self.syncer.pending() {
                    if let Err(e) = self.syncer.wait(epoch).await {
                        inc(&self.metrics.rejected_batches, 1);
                        crate::warn!(
                            "{}: events from {peer_s} could not be stored ({e}); no ack sent, closing the connection so the client retries",
                            self.conf.id
                        );
                        let _ = stream.close().await;
                        return;
                    }
                }
                let w = stream.write_all(&acks).await;
                acks.clear();
                let n = self.metrics.acks.get() - acks_before;
                self.metrics.ack_latency.observe_n(read_at.elapsed().as_secs_f64(), n);
                if let Err(e) = w {
                    crate::debug!("{}: writing acks to {peer_s} failed: {e}", self.conf.id);
                    return;
                }
            }
            if close || (self.stopping.get() && buf.is_empty()) {
                let _ = stream.close().await;
                return;
            }
            // A burst is over (reads come back small and nothing is pending): give the
            // large read buffer back, so a fleet of mostly quiet connections stays small.
            if small_read && want > READ_MIN {
                want = (want / 2).max(READ_MIN);
                if buf.is_empty() && buf.capacity() > 2 * want {
                    buf = BytesMut::with_capacity(want);
                }
            }
        }
    }

    /// Inflates and routes one compressed frame a slice at a time ([`inflate`]),
    /// appending its ack to `acks` once every slice was accepted. `false`: the
    /// connection must be closed (logged here, one line per frame).
    async fn inflate_frame(
        &self,
        frame: CompressedFrame,
        limits: &Limits,
        peer: &str,
        source_ip: Option<&Bytes>,
        json: bool,
        acks: &mut Vec<u8>,
    ) -> bool {
        let (mut count, mut invalid, mut inflated) = (0u64, 0u64, 0u64);
        let r: Result<(), InflateError> = async {
            let mut fi = FrameInflater::new(&frame, limits, &self.inflate_budget)?;
            loop {
                let next = fi.next().await;
                inflated = fi.inflated();
                let Some(slice) = next? else { return Ok(()) };
                inc(&self.metrics.invalid_events, slice.invalid as u64);
                invalid += slice.invalid as u64;
                if slice.count == 0 {
                    continue;
                }
                count += slice.count as u64;
                inc(&self.metrics.events, slice.count as u64);
                let batch = self.rewrite(frame.batch(slice), source_ip);
                match self.router.emit(self.conf.label, batch.clone()) {
                    Ok(()) => {}
                    // No chunk id: the frame's ack is sent once, after its last slice.
                    Err(e) if e.is_block() => {
                        if !self.wait_for_room(Box::new(batch), Vec::new(), json, peer, acks).await {
                            return Err(InflateError::Blocked);
                        }
                    }
                    Err(e) => return Err(InflateError::Rejected(e.to_string())),
                }
            }
        }
        .await;
        if let Err(e) = r {
            match e {
                InflateError::Rejected(_) | InflateError::Blocked => inc(&self.metrics.rejected_batches, 1),
                _ => inc(&self.metrics.bad_frames, 1),
            }
            crate::warn!(
                "{}: closing connection from {peer}: compressed ({}) frame at stream byte {} ({} bytes) not accepted after inflating {inflated} bytes ({count} events routed, no ack sent): {e}",
                self.conf.id,
                frame.kind.name(),
                frame.offset,
                frame.wire_len,
            );
            return false;
        }
        if let Some(w) = self.conf.chunk_size_warn_limit {
            if inflated > w as u64 {
                crate::warn!(
                    "{}: Input chunk size is larger than 'chunk_size_warn_limit': tag=\"{}\" host=\"{peer}\" limit={w} size={inflated}",
                    self.conf.id,
                    String::from_utf8_lossy(&frame.tag),
                );
            }
        }
        if invalid > 0 && self.conf.skip_invalid_event {
            crate::warn!(
                "{}: skip invalid event: {invalid} entries without a valid time or record, tag=\"{}\" host=\"{peer}\"",
                self.conf.id,
                String::from_utf8_lossy(&frame.tag)
            );
        }
        self.ack(frame.option.chunk.as_ref(), json, acks);
        true
    }

    /// Retries a batch an output refused with `overflow_action block` until it is
    /// accepted (true) or the input stops or it fails otherwise (false).
    async fn wait_for_room(
        &self,
        batch: Box<EventBatch>,
        chunks: Vec<Bytes>,
        json: bool,
        peer: &str,
        acks: &mut Vec<u8>,
    ) -> bool {
        inc(&self.metrics.blocked, 1);
        crate::warn!(
            "{}: buffer full, not reading from {peer} until it has room (overflow_action block)",
            self.conf.id
        );
        let mut pause = Duration::from_millis(5);
        loop {
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            if self.stopping.get() {
                return false;
            }
            match self.router.emit(self.conf.label, (*batch).clone()) {
                Ok(()) => {
                    for c in &chunks {
                        self.ack(Some(c), json, acks);
                    }
                    return true;
                }
                Err(e) if e.is_block() => continue,
                Err(e) => {
                    inc(&self.metrics.rejected_batches, 1);
                    if crate::log::emit_error_allowed() {
                        crate::warn!("{}: events from {peer} not accepted, no ack sent, closing the connection so the client retries: {e}", self.conf.id);
                    }
                    return false;
                }
            }
        }
    }

    fn ack(&self, chunk: Option<&Bytes>, json: bool, acks: &mut Vec<u8>) {
        if let Some(c) = chunk {
            if json {
                encode::ack_json(acks, c);
            } else {
                encode::ack(acks, c);
            }
            inc(&self.metrics.acks, 1);
        }
    }

    /// The server side of the handshake: HELO, read the PING, answer PONG. Bytes after
    /// the PING stay in `buf` for the frame decoder.
    async fn handshake(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        sec: &crate::security::ServerSecurity,
        ip: std::net::IpAddr,
    ) -> Result<(), String> {
        let hs = crate::security::ServerHandshake::new();
        let mut out = Vec::new();
        hs.helo(!self.conf.deny_keepalive, &mut out);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut dec = FrameDecoder::new(Limits { max_frame_size: 64 << 10, ..Limits::default() });
        let ping = loop {
            match dec.next_value(buf) {
                Ok(Some(v)) => break v,
                Ok(None) => {}
                Err(e) => return Err(format!("invalid ping message: {e}")),
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            match read_into(stream, buf, 4096).await {
                Ok(0) => return Err("connection closed before PING".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        };
        out.clear();
        let r = hs.check(sec, &ping, ip, &mut out);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        r
    }

    /// Decodes and routes every complete frame in `buf`, appending acks to `acks`.
    /// Stops at a frame an output wants to block on, and when the connection must be
    /// closed (bad frame, rejected batch, deny_keepalive). This is the whole per-read
    /// data path, without I/O.
    pub fn process(
        &self,
        dec: &mut FrameDecoder,
        buf: &mut BytesMut,
        peer: &str,
        source_ip: Option<&Bytes>,
        acks: &mut Vec<u8>,
    ) -> Step {
        let mut run = MessageRun::default();
        // Routes what the run holds before anything else happens on the connection.
        macro_rules! flush_run {
            () => {
                if let Some((batch, chunks)) = run.take() {
                    match self.handle(batch, peer, source_ip, false, &chunks, acks) {
                        Step::More => {}
                        other => return other,
                    }
                }
            };
        }
        loop {
            match dec.decode_deferred(buf) {
                Ok(Some(Decoded::Compressed(frame))) => {
                    flush_run!();
                    inc(&self.metrics.frames, 1);
                    return Step::Inflate(Box::new(frame), dec.is_json());
                }
                Ok(Some(Decoded::Frame(Frame::Events(batch)))) => {
                    inc(&self.metrics.frames, 1);
                    let json = dec.is_json();
                    // Message-mode frames of one tag in this read become one batch.
                    if batch.mode == Mode::Message && !json && !self.conf.deny_keepalive {
                        self.warn_size(&batch, peer);
                        if !run.accepts(&batch) {
                            flush_run!();
                        }
                        run.push(batch);
                        continue;
                    }
                    flush_run!();
                    let chunk = batch.option.chunk.clone();
                    match self.handle(batch, peer, source_ip, json, chunk.as_slice(), acks) {
                        Step::More if !self.conf.deny_keepalive => {}
                        Step::More => return Step::Close,
                        other => return other,
                    }
                }
                Ok(Some(Decoded::Frame(Frame::Heartbeat))) => {}
                Ok(None) => {
                    flush_run!();
                    return Step::More;
                }
                Err(e) => {
                    // The frames before the bad one are routed (and acked) first.
                    flush_run!();
                    inc(&self.metrics.bad_frames, 1);
                    crate::warn!(
                        "{}: closing connection from {peer}: {e} (stream bytes seen: {})",
                        self.conf.id,
                        dec.consumed() + buf.len() as u64
                    );
                    return Step::Close;
                }
            }
        }
    }

    fn warn_size(&self, batch: &EventBatch, peer: &str) {
        if let Some(w) = self.conf.chunk_size_warn_limit {
            if batch.entries.len() > w {
                crate::warn!(
                    "{}: Input chunk size is larger than 'chunk_size_warn_limit': tag=\"{}\" host=\"{peer}\" limit={w} size={}",
                    self.conf.id,
                    String::from_utf8_lossy(&batch.tag),
                    batch.entries.len()
                );
            }
        }
    }

    /// Routes one batch; appends its ack if accepted. `Close`: the batch was rejected
    /// (the client must resend); `Blocked`: an output asks the input to wait for room.
    /// `chunks` are the ack ids of the frames in `batch` (one, or a Message-mode run's).
    fn handle(
        &self,
        batch: EventBatch,
        peer: &str,
        source_ip: Option<&Bytes>,
        json: bool,
        chunks: &[Bytes],
        acks: &mut Vec<u8>,
    ) -> Step {
        if batch.mode != Mode::Message {
            self.warn_size(&batch, peer);
        }
        if batch.invalid > 0 {
            inc(&self.metrics.invalid_events, batch.invalid as u64);
            if self.conf.skip_invalid_event {
                crate::warn!(
                    "{}: skip invalid event: {} entries without a valid time or record, tag=\"{}\" host=\"{peer}\"",
                    self.conf.id,
                    batch.invalid,
                    String::from_utf8_lossy(&batch.tag)
                );
            }
        }
        inc(&self.metrics.events, batch.count as u64);
        let batch = self.rewrite(batch, source_ip);
        // Kept for a retry under overflow_action block (a few refcounts, no copy).
        let keep = batch.clone();
        match self.router.emit(self.conf.label, batch) {
            Ok(()) => {
                for c in chunks {
                    self.ack(Some(c), json, acks);
                }
                Step::More
            }
            Err(e) if e.is_block() => Step::Blocked(Box::new(keep), chunks.to_vec(), json),
            Err(e) => {
                inc(&self.metrics.rejected_batches, 1);
                if crate::log::emit_error_allowed() {
                    crate::warn!("{}: events from {peer} not accepted, no ack sent, closing the connection so the client retries: {e}", self.conf.id);
                }
                Step::Close
            }
        }
    }

    /// Applies `tag`, `add_tag_prefix` and the source keys to a batch about to be routed.
    fn rewrite(&self, mut batch: EventBatch, source_ip: Option<&Bytes>) -> EventBatch {
        if let Some(t) = &self.conf.tag {
            batch.tag = Bytes::copy_from_slice(t.as_bytes());
        }
        if let Some(p) = &self.conf.add_tag_prefix {
            let mut t = Vec::with_capacity(p.len() + 1 + batch.tag.len());
            t.extend_from_slice(p.as_bytes());
            t.push(b'.');
            t.extend_from_slice(&batch.tag);
            batch.tag = Bytes::from(t);
        }
        let mut extra: Vec<(&[u8], &[u8])> = Vec::new();
        if let (Some(k), Some(ip)) = (&self.conf.source_address_key, source_ip) {
            extra.push((k.as_bytes(), ip));
        }
        if let (Some(k), Some(ip)) = (&self.conf.source_hostname_key, source_ip) {
            // resolve_hostname would need a blocking DNS lookup; the address is used.
            extra.push((k.as_bytes(), ip));
        }
        if !extra.is_empty() {
            batch = add_fields(&batch, &extra);
        }
        batch
    }
}

impl Input for ForwardInput {
    fn start(self: Rc<Self>, first: bool) -> std::io::Result<Vec<Listening>> {
        let addr = self.conf.addr().map_err(std::io::Error::other)?;
        let l = crate::input::net::listen(addr, self.conf.backlog)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: cannot listen on {addr}: {e}", self.conf.id)))?;
        // One shard answers the UDP heartbeat on the same port.
        let a = ForwardInput::start(&self, l, first)?;
        Ok(vec![Listening { addr: a, what: "forward" }])
    }

    fn stop(&self, grace: Duration) -> LocalFuture<'_, ()> {
        Box::pin(ForwardInput::stop(self, grace))
    }

    fn visit_metrics(&self, m: &mut dyn crate::metrics::Visitor) {
        self.metrics.visit(m);
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// What [`ForwardInput::process`] did with the bytes it had.
pub enum Step {
    /// Everything complete was handled: read more.
    More,
    /// Close the connection.
    Close,
    /// An output is full with `overflow_action block`: wait for room, retry this batch
    /// (with its ack chunk id and JSON flag), then process the rest.
    Blocked(Box<EventBatch>, Vec<Bytes>, bool),
    /// A compressed frame (with the connection's JSON flag): inflate and route it a
    /// slice at a time, then process the rest.
    Inflate(Box<CompressedFrame>, bool),
}

const READ_SIZE: usize = 256 << 10;
const READ_MIN: usize = 512;

/// Reads up to `max` bytes into the spare capacity of `buf` (zero-filled once per read,
/// which is cheap next to the syscall and keeps this free of `unsafe`).
async fn read_into(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
    let len = buf.len();
    let spare = (buf.capacity() - len).min(max);
    buf.resize(len + spare, 0);
    let r = stream.read(&mut buf[len..]).await;
    let n = *r.as_ref().unwrap_or(&0);
    buf.truncate(len + n);
    r
}

/// Adds string fields to every record (source_address_key and friends): re-encodes the
/// records, so it is only done when configured.
fn add_fields(batch: &EventBatch, fields: &[(&[u8], &[u8])]) -> EventBatch {
    use spate_protocol::encode::raw;
    let mut out = Vec::with_capacity(batch.entries.len() + batch.count as usize * 32);
    for ev in batch.events() {
        out.push(0x92);
        out.extend_from_slice(ev.time_raw);
        raw::map_header(&mut out, (ev.record.len() + fields.len()) as u32);
        for (k, v) in ev.record.fields() {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        for (k, v) in fields {
            raw::str(&mut out, k);
            raw::str(&mut out, v);
        }
    }
    // An empty batch (nothing valid to extend) stays as it is.
    batch.with_packed_entries(bytes::Bytes::from(out), batch.count).unwrap_or_else(|| batch.clone())
}

/// fluentd's UDP heartbeat: answer every datagram with one `\0` byte.
async fn heartbeat_loop(sock: glommio::net::UdpSocket) {
    let mut buf = [0u8; 128];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((_, from)) => {
                let _ = sock.send_to(b"\0", from).await;
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(50)).await,
        }
    }
}
impl InputPlan for ForwardInConf {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "forward"
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        format!("{}:{}", self.bind, self.port)
    }
    fn build(&self, ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(ForwardInput::new(self.clone(), emitter, ctx.syncer.clone()))
    }
}
