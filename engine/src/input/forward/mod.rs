//! `in_forward`: the Forward protocol server. Every shard binds its own listener on the
//! same port (SO_REUSEPORT; the kernel spreads connections), reads into a per-connection
//! `BytesMut`, decodes frames in place with `spate-protocol`, routes each batch, and
//! sends `{"ack": chunk}` only after every matched output accepted the batch. A bad
//! frame closes that connection with a log line naming the peer and the reason;
//! everything else keeps running. Shard 0 also answers fluentd's UDP heartbeat on the
//! same port (one `\0` byte back). Compressed frames are inflated in bounded slices
//! under a per-shard memory budget ([`inflate`]). With `deduplicate`, a frame whose ack
//! id was already stored from the same source is acked without storing it again
//! ([`dedup`]). Message-mode frames of one tag in a read are routed as one batch
//! ([`message_run`]; per frame with `deduplicate`, where each frame has its own claim);
//! those without options (no ack requested: what loggers send by default) are read in
//! place from the connection's buffer (`FrameDecoder::scan`), without a reference-
//! counted slice per event.

pub mod dedup;
mod frame;
mod inflate;
mod message_run;
pub mod secure;
mod wire;

use frame::{inc, Held, Seen};
pub use frame::{InputMetrics, Peer, Step};
use inflate::{FrameInflater, InflateError};
use wire::{add_fields, handshake, heartbeat_loop, read_into};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use spate_protocol::encode;
use spate_protocol::{CompressedFrame, Decoded, EventBatch, Frame, FrameDecoder, Limits, Mode, Scan};

use crate::buffer::sync::Syncer;
use crate::plugin::{BuildError, Emitter, Input, InputPlan, Listening, LocalFuture, ShardCtx};
use crate::tls::Stream;
use dedup::{Claim, ShardDedup};
use message_run::MessageRun;

pub mod conf;

pub use conf::{ForwardInConf, PLUGIN};

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
    /// `deduplicate`: this shard's side of the input's shared window.
    dedup: Option<ShardDedup>,
}

impl ForwardInput {
    pub fn new(
        conf: ForwardInConf,
        router: Rc<dyn Emitter>,
        syncer: Rc<Syncer>,
        dedup: Option<ShardDedup>,
    ) -> Rc<Self> {
        Rc::new(ForwardInput {
            dedup,
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

    async fn serve(&self, tcp: TcpStream, addr: Option<SocketAddr>) {
        let mut peer = Peer::at(addr);
        self.serve_peer(tcp, &mut peer).await;
    }

    async fn serve_peer(&self, tcp: TcpStream, peer: &mut Peer) {
        self.tune(&tcp);
        let peer_s = peer.name.clone();
        let mut stream = match Stream::accept_if(tcp, self.conf.tls.as_ref(), self.conf.handshake_timeout).await {
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
        };
        let mut dec = FrameDecoder::new(self.conf.limits());
        // Reads start small and grow while they come back full: an idle connection
        // holds 512 bytes, a bulk sender reads 256 KiB at a time after a few reads; a
        // connection whose reads turn small again shrinks back (see below).
        let mut want = READ_MIN;
        let mut buf = BytesMut::with_capacity(READ_MIN);
        let mut acks: Vec<u8> = Vec::new();
        if let Some(sec) = &self.conf.security {
            let ip = peer.ip_addr();
            let hs_timeout = self.conf.handshake_timeout;
            let r = glommio::timer::timeout(hs_timeout, async {
                Ok(handshake(&mut stream, &mut buf, sec, ip, !self.conf.deny_keepalive).await)
            })
            .await;
            let reason = match r {
                Ok(Ok(user)) => {
                    // An authenticated user is the source of its frames' ack ids.
                    if let Some(u) = user {
                        peer.source = dedup::source(Some(&u), None);
                    }
                    None
                }
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
        let peer = &*peer;
        let mut logged = (0, 0);
        let mut turn = Instant::now();
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
            // Every append this read causes has an epoch from here on: the acks go out
            // only if no commit covering any of them failed.
            let first = self.syncer.next_epoch();
            let mut close = false;
            loop {
                match self.process(&mut dec, &mut buf, peer, &mut acks) {
                    Step::More => break,
                    Step::Close => {
                        close = true;
                        break;
                    }
                    step => {
                        let limits = *dec.limits();
                        // Boxed: its state would otherwise be part of every connection's
                        // task, idle or not.
                        if !Box::pin(self.finish_step(step, &limits, peer, &mut acks)).await {
                            close = true;
                            break;
                        }
                    }
                }
            }
            let resent = peer.resent.get();
            if resent != logged {
                // Resends come in bursts (after a sender's reconnect): one line per read.
                crate::info!(
                    "{}: {} frames ({} events) from {peer_s} were resends of frames already stored: acked without storing them again (deduplicate)",
                    self.conf.id,
                    resent.0 - logged.0,
                    resent.1 - logged.1
                );
                logged = resent;
            }
            if !acks.is_empty() {
                // A file buffer's events are acked only once the shard's group commit
                // has made them durable.
                if let Some(epoch) = self.syncer.pending() {
                    if let Err(e) = self.syncer.wait_since(first, epoch).await {
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
            // Fairness between the shard's connections.
            crate::input::net::take_turns(&mut turn, read_at).await;
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

    /// Finishes a step that has to wait (a compressed frame, a full buffer under
    /// `overflow_action block`, a resend whose first copy is still being committed).
    /// `true`: go on with the rest of the read; `false`: close the connection.
    async fn finish_step(&self, mut step: Step, limits: &Limits, peer: &Peer, acks: &mut Vec<u8>) -> bool {
        loop {
            let ok = match step {
                Step::More => true,
                Step::Close => false,
                Step::Inflate(frame, json) => self.inflate_frame(*frame, limits, peer, json, acks).await,
                Step::Blocked(held) => self.wait_for_room(*held, peer, acks).await,
                Step::Repeat(batch, json) => {
                    if !self.wait_settled(peer, batch.option.chunk.as_ref()).await {
                        return false;
                    }
                    step = self.handle(*batch, peer, json, acks);
                    continue;
                }
            };
            return ok && !self.conf.deny_keepalive;
        }
    }

    /// Inflates and routes one compressed frame a slice at a time ([`inflate`]),
    /// appending its ack to `acks` once every slice was accepted. `false`: the
    /// connection must be closed (logged here, one line per frame).
    async fn inflate_frame(
        &self,
        frame: CompressedFrame,
        limits: &Limits,
        peer: &Peer,
        json: bool,
        acks: &mut Vec<u8>,
    ) -> bool {
        let chunk = frame.option.chunk.as_ref();
        let claim = loop {
            match self.seen(peer, chunk, frame.option.size.unwrap_or(0)) {
                Seen::Store(claim) => break claim,
                Seen::Again => {
                    self.ack(chunk, json, acks);
                    return true;
                }
                Seen::Wait => {
                    if !self.wait_settled(peer, chunk).await {
                        return false;
                    }
                }
            }
        };
        let mut held = Held {
            batch: None,
            chunk: chunk.cloned(),
            run: Vec::new(),
            json,
            claim,
            first: self.syncer.next_epoch(),
            wrote: false,
        };
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
                let batch = self.rewrite(frame.batch(slice), peer.ip.as_ref());
                match self.route(batch.clone(), &mut held.wrote) {
                    Ok(()) => {}
                    Err(e) if e.is_block() => {
                        if !self.block_until_room(&batch, &mut held.wrote, &peer.name).await {
                            return Err(InflateError::Blocked);
                        }
                    }
                    Err(e) => return Err(InflateError::Rejected(e.to_string())),
                }
            }
        }
        .await;
        if let Err(e) = r {
            self.not_stored(&held);
            match e {
                InflateError::Rejected(_) | InflateError::Blocked => inc(&self.metrics.rejected_batches, 1),
                _ => inc(&self.metrics.bad_frames, 1),
            }
            crate::warn!(
                "{}: closing connection from {}: compressed ({}) frame at stream byte {} ({} bytes) not accepted after inflating {inflated} bytes ({count} events routed, no ack sent): {e}",
                self.conf.id,
                peer.name,
                frame.kind.name(),
                frame.offset,
                frame.wire_len,
            );
            return false;
        }
        if let Some(w) = self.conf.chunk_size_warn_limit {
            if inflated > w as u64 {
                crate::warn!(
                    "{}: Input chunk size is larger than 'chunk_size_warn_limit': tag=\"{}\" host=\"{}\" limit={w} size={inflated}",
                    self.conf.id,
                    String::from_utf8_lossy(&frame.tag),
                    peer.name,
                );
            }
        }
        if invalid > 0 && self.conf.skip_invalid_event {
            crate::warn!(
                "{}: skip invalid event: {invalid} entries without a valid time or record, tag=\"{}\" host=\"{}\"",
                self.conf.id,
                String::from_utf8_lossy(&frame.tag),
                peer.name
            );
        }
        self.stored(&held, acks);
        true
    }

    /// Retries a frame an output refused with `overflow_action block` until it is
    /// accepted (true: acked) or the input stops or it fails otherwise (false).
    async fn wait_for_room(&self, mut held: Held, peer: &Peer, acks: &mut Vec<u8>) -> bool {
        let Some(batch) = held.batch.take() else { return false };
        if self.block_until_room(&batch, &mut held.wrote, &peer.name).await {
            self.stored(&held, acks);
            true
        } else {
            self.not_stored(&held);
            false
        }
    }

    /// Routes `batch` again and again while an output with `overflow_action block` is
    /// full; true once it is accepted.
    async fn block_until_room(&self, batch: &EventBatch, wrote: &mut bool, peer: &str) -> bool {
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
            match self.route(batch.clone(), wrote) {
                Ok(()) => return true,
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

    /// Routes a batch, noting whether a file buffer took any of it (the shard's epoch
    /// moved: `emit` is synchronous, so no other append can come in between).
    fn route(&self, batch: EventBatch, wrote: &mut bool) -> Result<(), crate::plugin::EmitError> {
        let before = self.syncer.epoch();
        let r = self.router.emit(self.conf.label, batch);
        *wrote |= self.syncer.epoch() > before;
        r
    }

    /// Whether a frame with ack id `chunk` from `peer` is to be stored (see [`dedup`]).
    fn seen(&self, peer: &Peer, chunk: Option<&Bytes>, events: u64) -> Seen {
        let (Some(d), Some(c)) = (&self.dedup, chunk) else { return Seen::Store(None) };
        let key = dedup::key(&peer.source, c);
        match d.claim(&key) {
            Claim::New(seq) => Seen::Store(Some((key, seq))),
            Claim::Pending => Seen::Wait,
            Claim::Durable => {
                inc(&self.metrics.resent_frames, 1);
                inc(&self.metrics.resent_events, events);
                let (f, e) = peer.resent.get();
                peer.resent.set((f + 1, e + events));
                Seen::Again
            }
        }
    }

    /// Waits while another copy of the frame with ack id `chunk` is being stored (its
    /// group commit decides whether this one is a duplicate). `false`: the input stops.
    async fn wait_settled(&self, peer: &Peer, chunk: Option<&Bytes>) -> bool {
        let (Some(d), Some(c)) = (&self.dedup, chunk) else { return true };
        let key = dedup::key(&peer.source, c);
        while d.is_pending(&key) {
            if self.stopping.get() {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Every output accepted the frame: its id counts (after the commit, for a file
    /// buffer) and its ack is queued.
    fn stored(&self, held: &Held, acks: &mut Vec<u8>) {
        if let (Some(d), Some((key, seq))) = (&self.dedup, held.claim) {
            d.accepted(key, seq, held.first, held.wrote);
        }
        self.ack(held.chunk.as_ref(), held.json, acks);
        for c in &held.run {
            self.ack(Some(c), false, acks);
        }
    }

    /// The frame was not accepted (no ack): its resend must be stored.
    fn not_stored(&self, held: &Held) {
        if let (Some(d), Some((key, seq))) = (&self.dedup, held.claim) {
            d.release(key, seq);
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

    /// Decodes and routes every complete frame in `buf`, appending acks to `acks`.
    /// Stops at a frame an output wants to block on, and when the connection must be
    /// closed (bad frame, rejected batch, deny_keepalive). This is the whole per-read
    /// data path, without I/O.
    pub fn process(&self, dec: &mut FrameDecoder, buf: &mut BytesMut, peer: &Peer, acks: &mut Vec<u8>) -> Step {
        let mut run = MessageRun::default();
        // Routes what the run holds before anything else happens on the connection.
        macro_rules! flush_run {
            () => {
                if let Some((batch, chunks)) = run.take() {
                    match self.handle_run(batch, peer, chunks, acks) {
                        Step::More => {}
                        other => return other,
                    }
                }
            };
        }
        // Message-mode frames may be read in place (no slice per event) when they can
        // join a run; JSON streams, deduplication and deny_keepalive take the decoder's
        // usual path.
        let in_place = !self.conf.deny_keepalive && self.dedup.is_none();
        loop {
            let decoded = if in_place && !dec.is_json() {
                match dec.scan(buf) {
                    Ok(Scan::Message { tag, entry, valid, len }) => {
                        if !run.accepts_tag(tag) {
                            if let Some((batch, chunks)) = run.take() {
                                match self.handle_run(batch, peer, chunks, acks) {
                                    Step::More => {}
                                    other => {
                                        // The frame stays in `buf` for after the wait.
                                        dec.unscan();
                                        return other;
                                    }
                                }
                            }
                        }
                        inc(&self.metrics.frames, 1);
                        self.warn_size(tag, entry.len(), &peer.name);
                        run.push_in_place(tag, entry, valid, len);
                        buf.advance(len);
                        continue;
                    }
                    Ok(Scan::Other { len }) => {
                        let raw = buf.split_to(len).freeze();
                        let d = dec.parse_scanned(raw.clone());
                        // A frame that does not join the run has the run routed first;
                        // if that blocks, the frame goes back to the front of `buf`
                        // (unrouted, uncounted) for after the wait.
                        let joins = match &d {
                            Ok(Decoded::Frame(Frame::Events(b))) => b.mode == Mode::Message && run.accepts(b),
                            Ok(Decoded::Frame(Frame::Heartbeat)) => true,
                            _ => false,
                        };
                        if !joins {
                            if let Some((batch, chunks)) = run.take() {
                                match self.handle_run(batch, peer, chunks, acks) {
                                    Step::More => {}
                                    other => {
                                        dec.unscan();
                                        let mut back = BytesMut::with_capacity(raw.len() + buf.len());
                                        back.extend_from_slice(&raw);
                                        back.extend_from_slice(buf);
                                        *buf = back;
                                        return other;
                                    }
                                }
                            }
                        }
                        d.map(Some)
                    }
                    Ok(Scan::Partial) => Ok(None),
                    Ok(Scan::Json) => continue,
                    Err(e) => Err(e),
                }
            } else {
                dec.decode_deferred(buf)
            };
            match decoded {
                Ok(Some(Decoded::Compressed(frame))) => {
                    flush_run!();
                    inc(&self.metrics.frames, 1);
                    return Step::Inflate(Box::new(frame), dec.is_json());
                }
                Ok(Some(Decoded::Frame(Frame::Events(batch)))) => {
                    inc(&self.metrics.frames, 1);
                    let json = dec.is_json();
                    // Message-mode frames of one tag in this read become one batch
                    // (not with deduplicate: each frame needs its own claim).
                    if batch.mode == Mode::Message && !json && !self.conf.deny_keepalive && self.dedup.is_none() {
                        self.warn_size(&batch.tag, batch.entries.len(), &peer.name);
                        if !run.accepts(&batch) {
                            flush_run!();
                        }
                        run.push(batch);
                        continue;
                    }
                    flush_run!();
                    match self.handle(batch, peer, json, acks) {
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
                        "{}: closing connection from {}: {e} (stream bytes seen: {})",
                        self.conf.id,
                        peer.name,
                        dec.consumed() + buf.len() as u64
                    );
                    return Step::Close;
                }
            }
        }
    }

    /// Routes one batch; appends its ack if accepted. `Close`: the batch was rejected
    /// (the client must resend); `Blocked`: an output asks the input to wait for room;
    /// `Repeat`: another copy of this frame is being stored right now (`deduplicate`).
    fn handle(&self, batch: EventBatch, peer: &Peer, json: bool, acks: &mut Vec<u8>) -> Step {
        let claim = match self.seen(peer, batch.option.chunk.as_ref(), batch.count as u64) {
            Seen::Store(claim) => claim,
            Seen::Again => {
                self.ack(batch.option.chunk.as_ref(), json, acks);
                return Step::More;
            }
            Seen::Wait => return Step::Repeat(Box::new(batch), json),
        };
        self.warn_size(&batch.tag, batch.entries.len(), &peer.name);
        let chunk = batch.option.chunk.clone();
        let held =
            Held { batch: None, chunk, run: Vec::new(), json, claim, first: self.syncer.next_epoch(), wrote: false };
        self.route_held(batch, peer, held, acks)
    }

    /// Routes a Message-mode run ([`MessageRun`]) with the ack ids of its frames.
    fn handle_run(&self, batch: EventBatch, peer: &Peer, run: Vec<Bytes>, acks: &mut Vec<u8>) -> Step {
        let held = Held {
            batch: None,
            chunk: None,
            run,
            json: false,
            claim: None,
            first: self.syncer.next_epoch(),
            wrote: false,
        };
        self.route_held(batch, peer, held, acks)
    }

    fn warn_size(&self, tag: &[u8], size: usize, host: &str) {
        if let Some(w) = self.conf.chunk_size_warn_limit {
            if size > w {
                crate::warn!(
                    "{}: Input chunk size is larger than 'chunk_size_warn_limit': tag=\"{}\" host=\"{host}\" limit={w} size={size}",
                    self.conf.id,
                    String::from_utf8_lossy(tag),
                );
            }
        }
    }

    /// Routes a frame (or a run) that is to be stored; acks it once accepted.
    fn route_held(&self, batch: EventBatch, peer: &Peer, mut held: Held, acks: &mut Vec<u8>) -> Step {
        let host = &peer.name;
        if batch.invalid > 0 {
            inc(&self.metrics.invalid_events, batch.invalid as u64);
            if self.conf.skip_invalid_event {
                crate::warn!(
                    "{}: skip invalid event: {} entries without a valid time or record, tag=\"{}\" host=\"{host}\"",
                    self.conf.id,
                    batch.invalid,
                    String::from_utf8_lossy(&batch.tag)
                );
            }
        }
        inc(&self.metrics.events, batch.count as u64);
        let batch = self.rewrite(batch, peer.ip.as_ref());
        // Kept for a retry under overflow_action block (a few refcounts, no copy).
        let keep = batch.clone();
        match self.route(batch, &mut held.wrote) {
            Ok(()) => {
                self.stored(&held, acks);
                Step::More
            }
            Err(e) if e.is_block() => {
                held.batch = Some(keep);
                Step::Blocked(Box::new(held))
            }
            Err(e) => {
                self.not_stored(&held);
                inc(&self.metrics.rejected_batches, 1);
                if crate::log::emit_error_allowed() {
                    crate::warn!("{}: events from {host} not accepted, no ack sent, closing the connection so the client retries: {e}", self.conf.id);
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
        if let Some(d) = &self.dedup {
            d.start();
        }
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

const READ_SIZE: usize = 256 << 10;
const READ_MIN: usize = 512;

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
        let dedup = match &self.dedup {
            Some(d) => Some(
                d.for_shard(&self.id, ctx.shard, ctx.workers, &ctx.syncer)
                    .map_err(|e| BuildError::Io { plugin: self.id.clone(), source: std::io::Error::other(e) })?,
            ),
            None => None,
        };
        Ok(ForwardInput::new(self.clone(), emitter, ctx.syncer.clone(), dedup))
    }
}
