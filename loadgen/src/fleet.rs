//! The generator's event-loop path (`--io loop`, the default past 16 connections or with
//! `--churn`): a few threads, each an epoll loop (mio) driving its share of the
//! connections as state machines: connect, TLS (rustls, non-blocking), the shared-key
//! handshake, then sending on each connection's own schedule (`--rate` spread over the
//! connections, each with its own fixed rate) and reading its acks. No thread per
//! connection, so one process drives tens of thousands of forwarders.
//!
//! `--churn R` closes R connections per second (each first waits for its acks, so churn
//! loses nothing) and opens them again with a fresh handshake; every connect's latency,
//! from `connect()` to ready (TLS and shared key included), goes into the connect
//! histogram. This file is over 800 lines because the connection state machine, its
//! timers and the churn logic are one unit; splitting them would spread one `match`
//! over several files.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use spate_protocol::msgpack::Skipper;

use crate::generator::Ctx;
use crate::handshake::{ClientHandshake, Step};
use crate::records::{chunk_id, FrameSet, SendMode, CHUNK_LEN};
use crate::stats::{unit, wall_ns, LocalHist};
use crate::threaded::{ack_seq, Pending};

/// Connects in progress per loop: a burst of SYNs beyond the server's backlog would only
/// be dropped and retried a second later.
const MAX_CONNECTING: usize = 128;
/// Writes one max-rate connection makes before the others get their turn.
const WRITES_PER_TURN: u32 = 4;
/// Acks, handshake messages: anything larger is not a Forward server talking.
const MAX_INBUF: usize = 1 << 20;

/// Starts the event loops; each returns when its connections are done.
pub(crate) fn spawn(ctx: Arc<Ctx>) -> io::Result<Vec<JoinHandle<()>>> {
    let cfg = &ctx.cfg;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let n = if cfg.threads == 0 { cpus } else { cfg.threads }.clamp(1, cfg.connections.max(1));
    let mut out = Vec::new();
    for t in 0..n {
        let poll = Poll::new()?;
        let slots: Vec<u32> = (t..cfg.connections).step_by(n as usize).collect();
        let ctx2 = ctx.clone();
        out.push(
            std::thread::Builder::new()
                .name(format!("loadgen-loop-{t}"))
                .spawn(move || Loop::new(ctx2, poll, slots, n).run())?,
        );
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// In the connect queue (or waiting for its retry time).
    Queued,
    Connecting,
    Tls,
    Auth,
    Ready,
    /// Churn: no new frames; closed and reopened once its acks are in.
    Draining,
    /// The run is over for it: no new frames; closed once its acks are in.
    Finishing,
    Done,
}

struct Conn {
    slot: u32,
    addr: SocketAddr,
    st: St,
    sock: Option<TcpStream>,
    tls: Option<Box<ClientConnection>>,
    hs: Option<Box<ClientHandshake>>,
    /// Plaintext received and not yet parsed (acks, handshake messages).
    inbuf: Vec<u8>,
    /// Wire bytes not yet written (plain TCP; TLS buffers inside rustls).
    out: Vec<u8>,
    out_pos: usize,
    writable: bool,
    pending: VecDeque<Pending>,
    seq: u64,
    next_due: Instant,
    interval: Option<Duration>,
    scheduled: bool,
    runnable: bool,
    t_connect: Instant,
    retry_at: Instant,
    backoff: Duration,
    ever_ready: bool,
    /// Set when this connection was closed on purpose (churn): not a reconnect.
    churning: bool,
    /// What is left of this connection's share of `--events`.
    left: Option<u64>,
}

struct Loop {
    ctx: Arc<Ctx>,
    poll: Poll,
    conns: Vec<Conn>,
    fs: FrameSet,
    queue: VecDeque<usize>,
    connecting: usize,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    runnable: VecDeque<usize>,
    local: LocalHist,
    scratch: Vec<u8>,
    ids: Vec<[u8; CHUNK_LEN]>,
    tmp: Vec<u8>,
    churn_every: Option<Duration>,
    next_churn: Instant,
    churn_cursor: usize,
    finishing: bool,
    final_deadline: Option<Instant>,
    open: usize,
}

impl Loop {
    fn new(ctx: Arc<Ctx>, poll: Poll, slots: Vec<u32>, loops: u32) -> Loop {
        let cfg = &ctx.cfg;
        let fs =
            FrameSet::new(ctx.frame_params(), &ctx.tpls, slots.first().copied().unwrap_or(0) as usize * 7, cfg.batch);
        let batch = fs.batch();
        let now = Instant::now();
        let conns: Vec<Conn> = slots
            .iter()
            .map(|&slot| {
                let interval = ctx.rate_of(slot).map(|r| Duration::from_secs_f64(batch as f64 / r.max(1e-9)));
                Conn {
                    slot,
                    addr: cfg.targets[slot as usize % cfg.targets.len()],
                    st: St::Queued,
                    sock: None,
                    tls: None,
                    hs: None,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    out_pos: 0,
                    writable: false,
                    pending: VecDeque::new(),
                    seq: 0,
                    next_due: now,
                    interval,
                    scheduled: false,
                    runnable: false,
                    t_connect: now,
                    retry_at: now,
                    backoff: Duration::from_millis(50),
                    ever_ready: false,
                    churning: false,
                    left: crate::stats::share(cfg.events, slot, cfg.connections),
                }
            })
            .collect();
        let churn_every = cfg.churn.map(|r| Duration::from_secs_f64(loops as f64 / r));
        let open = conns.len();
        Loop {
            queue: (0..conns.len()).collect(),
            conns,
            fs,
            poll,
            connecting: 0,
            timers: BinaryHeap::new(),
            runnable: VecDeque::new(),
            local: LocalHist::default(),
            scratch: Vec::new(),
            ids: Vec::with_capacity(64),
            tmp: vec![0; 64 << 10],
            churn_every,
            next_churn: now + churn_every.unwrap_or_default(),
            churn_cursor: 0,
            finishing: false,
            final_deadline: None,
            open,
            ctx,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_scan = Instant::now();
        loop {
            let now = Instant::now();
            if !self.finishing && self.ctx.sh.c.stopping() {
                self.finish_all(now);
            }
            if self.open == 0 {
                break;
            }
            if self.final_deadline.is_some_and(|d| now >= d) {
                for i in 0..self.conns.len() {
                    self.close(i, St::Done);
                }
                break;
            }
            self.start_connects(now);
            self.fire_timers(now);
            self.run_runnable();
            if let Some(every) = self.churn_every {
                if !self.finishing && now >= self.next_churn {
                    self.next_churn += every;
                    self.churn_one();
                }
            }
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("spate-loadgen: event loop: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if i < self.conns.len() {
                    self.on_event(i, ev.is_readable() || ev.is_read_closed(), ev.is_writable(), ev.is_error());
                }
            }
            if last_scan.elapsed() >= Duration::from_millis(100) {
                last_scan = Instant::now();
                self.scan(last_scan);
            }
            self.local.maybe_flush(&self.ctx.sh, false);
        }
        self.local.maybe_flush(&self.ctx.sh, true);
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.runnable.is_empty() {
            return Duration::ZERO;
        }
        let mut t = Duration::from_millis(100);
        if let Some(Reverse((due, _))) = self.timers.peek() {
            t = t.min(due.saturating_duration_since(now));
        }
        if self.churn_every.is_some() && !self.finishing {
            t = t.min(self.next_churn.saturating_duration_since(now));
        }
        if !self.queue.is_empty() && self.connecting < MAX_CONNECTING {
            t = Duration::ZERO;
        }
        t
    }

    /// The run is over: no new frames anywhere; wait for acks up to the ack timeout.
    fn finish_all(&mut self, now: Instant) {
        self.finishing = true;
        let cfg = &self.ctx.cfg;
        self.final_deadline = Some(now + if cfg.ack { cfg.ack_timeout } else { Duration::from_millis(500) });
        for i in 0..self.conns.len() {
            match self.conns[i].st {
                St::Ready | St::Draining => {
                    self.conns[i].st = St::Finishing;
                    self.maybe_close_finished(i);
                }
                St::Done | St::Finishing => {}
                _ => self.close(i, St::Done),
            }
        }
        self.queue.clear();
    }

    /// Starts queued connects, at most MAX_CONNECTING at a time. The queue only holds
    /// connections due now: a retry waits in the timer heap until its backoff is over.
    fn start_connects(&mut self, now: Instant) {
        while self.connecting < MAX_CONNECTING {
            let Some(i) = self.queue.pop_front() else { break };
            // A stale or duplicate entry, or one whose retry is not due (its timer will
            // queue it again).
            if self.conns[i].st != St::Queued || self.conns[i].retry_at > now {
                continue;
            }
            if self.conns[i].left == Some(0) && self.ctx.sh.c.measuring() {
                self.close(i, St::Done);
                continue;
            }
            self.connect(i, now);
        }
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.t_connect = now;
        let nth = c.slot / self.ctx.cfg.targets.len().max(1) as u32;
        match crate::sockets::connect(c.addr, crate::sockets::source_for(nth, c.addr)) {
            Ok(mut s) => {
                if self.poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE).is_err() {
                    self.retry(i, false);
                    return;
                }
                c.sock = Some(s);
                c.st = St::Connecting;
                c.writable = true;
                self.connecting += 1;
            }
            Err(e) => {
                self.ctx.sh.c.connect_failed(self.ctx.cfg.quiet, format_args!("connect to {}: {e}", c.addr));
                self.retry(i, false)
            }
        }
    }

    /// Drops the socket and queues the connection again after its backoff. `counted`:
    /// the failure is an error (a refused TLS or shared-key handshake, as the threaded
    /// path counts it).
    fn retry(&mut self, i: usize, counted: bool) {
        let sh = &self.ctx.sh;
        if counted {
            sh.c.add(&sh.c.errors, 1);
        }
        let was = self.conns[i].st;
        self.drop_socket(i);
        let c = &mut self.conns[i];
        if matches!(was, St::Connecting | St::Tls | St::Auth) {
            self.connecting = self.connecting.saturating_sub(1);
        }
        if self.finishing {
            c.st = St::Done;
            self.open -= 1;
            return;
        }
        c.st = St::Queued;
        c.retry_at = Instant::now() + c.backoff;
        c.backoff = (c.backoff * 2).min(Duration::from_secs(1));
        self.timers.push(Reverse((c.retry_at, i)));
    }

    fn drop_socket(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        c.tls = None;
        c.hs = None;
        c.inbuf = Vec::new();
        c.out = Vec::new();
        c.out_pos = 0;
        c.writable = false;
        // Frames in flight on a closed connection are lost to us: errors, not resent.
        let sh = &self.ctx.sh;
        for p in c.pending.drain(..) {
            if p.measured {
                sh.c.add(&sh.c.errors, 1);
            }
        }
    }

    /// Closes a connection that was established (broken, churned or finished).
    fn close(&mut self, i: usize, then: St) {
        let was = self.conns[i].st;
        if was == St::Done {
            return;
        }
        if matches!(was, St::Connecting | St::Tls | St::Auth) {
            self.connecting = self.connecting.saturating_sub(1);
        }
        self.drop_socket(i);
        self.conns[i].st = then;
        match then {
            St::Done => self.open -= 1,
            _ => {
                self.conns[i].retry_at = Instant::now();
                self.queue.push_back(i);
            }
        }
    }

    /// A connection broke while established: reconnect (counted), unless the run is over.
    fn broken(&mut self, i: usize) {
        if self.finishing || self.conns[i].st == St::Finishing {
            self.close(i, St::Done);
            return;
        }
        let was = self.conns[i].st;
        if matches!(was, St::Connecting | St::Tls | St::Auth) {
            let counted = was != St::Connecting;
            self.retry(i, counted);
            return;
        }
        self.close(i, St::Queued);
        let c = &mut self.conns[i];
        c.retry_at = Instant::now() + c.backoff;
        c.backoff = (c.backoff * 2).min(Duration::from_secs(1));
        // The queue entry close() made is skipped until this timer queues it again.
        self.timers.push(Reverse((c.retry_at, i)));
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool, error: bool) {
        match self.conns[i].st {
            St::Queued | St::Done => {}
            St::Connecting => {
                let Some(s) = self.conns[i].sock.as_ref() else { return };
                let err = match s.take_error() {
                    Ok(Some(e)) | Err(e) => Some(e.to_string()),
                    Ok(None) if error => Some("socket error".into()),
                    Ok(None) => None,
                };
                if let Some(e) = err {
                    let c = &self.conns[i];
                    self.ctx.sh.c.connect_failed(self.ctx.cfg.quiet, format_args!("connect to {}: {e}", c.addr));
                    self.retry(i, false);
                    return;
                }
                match s.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(_) => {
                        self.retry(i, false);
                        return;
                    }
                }
                let _ = s.set_nodelay(true);
                self.after_tcp(i);
            }
            St::Tls => {
                if self.tls_io(i).is_err() {
                    self.retry(i, true);
                    return;
                }
                let done = self.conns[i].tls.as_ref().is_some_and(|t| !t.is_handshaking());
                if done {
                    self.after_tls(i);
                }
            }
            St::Auth => {
                if self.read_in(i).is_err() {
                    self.retry(i, true);
                    return;
                }
                self.auth_step(i);
            }
            St::Ready | St::Draining | St::Finishing => {
                if writable && self.flush(i).is_err() {
                    self.broken(i);
                    return;
                }
                if readable || error {
                    let r = self.read_in(i);
                    self.parse_acks(i);
                    if r.is_err() {
                        self.broken(i);
                        return;
                    }
                }
                self.after_io(i);
            }
        }
    }

    /// What a connection does after I/O: send more, or close once drained.
    fn after_io(&mut self, i: usize) {
        match self.conns[i].st {
            St::Ready => self.try_send(i),
            St::Draining | St::Finishing => self.maybe_close_finished(i),
            _ => {}
        }
    }

    fn after_tcp(&mut self, i: usize) {
        let cfg = &self.ctx.cfg;
        if let Some(t) = &cfg.tls {
            let c = &mut self.conns[i];
            let name = t.server_name.clone().unwrap_or_else(|| c.addr.ip().to_string());
            let conn = ServerName::try_from(name).ok().and_then(|sn| ClientConnection::new(t.config.clone(), sn).ok());
            let Some(mut conn) = conn else {
                self.retry(i, true);
                return;
            };
            conn.set_buffer_limit(None);
            c.tls = Some(Box::new(conn));
            c.st = St::Tls;
            if self.tls_io(i).is_err() {
                self.retry(i, true);
            }
            return;
        }
        self.after_tls(i);
    }

    fn after_tls(&mut self, i: usize) {
        if self.ctx.cfg.auth.is_some() {
            self.conns[i].st = St::Auth;
            self.conns[i].hs = Some(Box::new(ClientHandshake::new()));
            // The HELO may have arrived with the last TLS handshake record.
            self.auth_step(i);
        } else {
            self.ready(i);
        }
    }

    fn auth_step(&mut self, i: usize) {
        let Some(a) = self.ctx.cfg.auth.clone() else { return };
        loop {
            let c = &mut self.conns[i];
            let Some(hs) = c.hs.as_mut() else { return };
            match hs.on_data(&a, &mut c.inbuf) {
                Ok(Step::More) => return,
                Ok(Step::Send(b)) => {
                    if self.write_plain(i, &b).is_err() {
                        self.retry(i, true);
                        return;
                    }
                }
                Ok(Step::Done) => {
                    self.conns[i].hs = None;
                    self.ready(i);
                    return;
                }
                Err(e) => {
                    if !self.ctx.cfg.quiet {
                        eprintln!("spate-loadgen: handshake with {} failed: {e}", self.conns[i].addr);
                    }
                    self.retry(i, true);
                    return;
                }
            }
        }
    }

    fn ready(&mut self, i: usize) {
        let sh = &self.ctx.sh;
        let now = Instant::now();
        self.connecting = self.connecting.saturating_sub(1);
        let c = &mut self.conns[i];
        sh.record_connect(now.duration_since(c.t_connect));
        if c.ever_ready && !c.churning {
            sh.c.add(&sh.c.reconnects, 1);
        }
        if !c.ever_ready {
            // Each connection starts at its own phase of its interval, so a fleet's
            // frames are spread over time rather than sent in step.
            if let Some(iv) = c.interval {
                c.next_due = now + iv.mul_f64(unit(c.slot as u64, 7));
            }
        }
        c.ever_ready = true;
        c.churning = false;
        c.backoff = Duration::from_millis(50);
        c.st = St::Ready;
        self.try_send(i);
    }

    /// Closes a draining or finishing connection once nothing is in flight.
    fn maybe_close_finished(&mut self, i: usize) {
        let c = &self.conns[i];
        let unsent = c.out_pos < c.out.len() || c.tls.as_ref().is_some_and(|t| t.wants_write());
        if !c.pending.is_empty() || unsent {
            return;
        }
        if c.st == St::Draining {
            let sh = &self.ctx.sh;
            sh.c.add(&sh.c.churned, 1);
            self.conns[i].churning = true;
            self.close(i, St::Queued);
        } else {
            self.close(i, St::Done);
        }
    }

    fn churn_one(&mut self) {
        let n = self.conns.len();
        for k in 0..n {
            let i = (self.churn_cursor + k) % n;
            if self.conns[i].st == St::Ready {
                self.churn_cursor = i + 1;
                self.conns[i].st = St::Draining;
                self.maybe_close_finished(i);
                return;
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((due, i))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            match self.conns[i].st {
                St::Ready => {
                    self.conns[i].scheduled = false;
                    self.try_send(i);
                }
                St::Queued if self.conns[i].retry_at <= now => self.queue.push_back(i),
                _ => self.conns[i].scheduled = false,
            }
        }
    }

    fn run_runnable(&mut self) {
        for _ in 0..self.runnable.len() {
            let Some(i) = self.runnable.pop_front() else { break };
            self.conns[i].runnable = false;
            if self.conns[i].st == St::Ready {
                self.try_send(i);
            }
        }
    }

    /// Sends what is due on a ready connection, within its inflight window.
    fn try_send(&mut self, i: usize) {
        let frames_per_write = if self.ctx.cfg.mode == SendMode::Message { self.fs.batch() as usize } else { 1 };
        let mut writes = 0;
        loop {
            let cfg = &self.ctx.cfg;
            let c = &mut self.conns[i];
            if c.st != St::Ready {
                return;
            }
            if c.out_pos < c.out.len() || c.tls.as_ref().is_some_and(|t| t.wants_write()) {
                return; // wait for writable
            }
            let now = Instant::now();
            if c.interval.is_some() && c.next_due > now {
                if !c.scheduled {
                    c.scheduled = true;
                    self.timers.push(Reverse((c.next_due, i)));
                }
                return;
            }
            if cfg.ack && c.pending.len() + frames_per_write > (cfg.inflight.max(1) as usize).max(frames_per_write) {
                return; // an ack makes room
            }
            if writes >= WRITES_PER_TURN {
                if !c.runnable {
                    c.runnable = true;
                    self.runnable.push_back(i);
                }
                return;
            }
            if self.send_one(i, now).is_err() {
                self.broken(i);
                return;
            }
            writes += 1;
        }
    }

    fn send_one(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let ctx = self.ctx.clone();
        let (cfg, sh) = (&ctx.cfg, &ctx.sh);
        let batch = self.fs.batch();
        let events = sh.c.take(&mut self.conns[i].left, batch as u64) as u32;
        if events == 0 {
            self.conns[i].st = St::Finishing;
            self.maybe_close_finished(i);
            return Ok(());
        }
        let c = &mut self.conns[i];
        let intended = match c.interval {
            Some(iv) => {
                let t = c.next_due;
                c.next_due += iv;
                t
            }
            None => now,
        };
        let measured = sh.c.measuring();
        let intended_ns = ctx.start_wall + intended.saturating_duration_since(ctx.start).as_nanos() as u64;
        let ft = self.fs.take(&ctx.tpls, events);
        let frames = ft.frames;
        // Ids only when acks are asked for: without acks the frames carry none.
        self.ids.clear();
        if cfg.ack {
            for k in 0..frames as u64 {
                self.ids.push(chunk_id(c.slot, c.seq + k));
            }
        }
        if cfg.ack {
            let per = events / frames.max(1);
            for k in 0..frames as u64 {
                c.pending.push_back(Pending { seq: c.seq + k, intended_ns, sent_at: now, events: per, measured });
            }
        }
        c.seq += frames as u64;
        let bytes = ft.render(intended_ns, &self.ids, &mut self.scratch);
        let n = bytes.len() as u64;
        sh.c.add(&sh.c.sent_total, events as u64);
        if measured {
            sh.c.add(&sh.c.sent_events, events as u64);
            sh.c.add(&sh.c.sent_bytes, n);
            sh.c.add(&sh.c.sent_frames, frames as u64);
            if !cfg.ack {
                sh.per_conn_add(c.slot, events as u64);
            }
        }
        write_plain(c, self.poll.registry(), i, bytes)
    }

    fn write_plain(&mut self, i: usize, b: &[u8]) -> io::Result<()> {
        write_plain(&mut self.conns[i], self.poll.registry(), i, b)
    }

    fn flush(&mut self, i: usize) -> io::Result<()> {
        flush(&mut self.conns[i], self.poll.registry(), i)
    }

    /// Drives the TLS handshake (and takes any application data after it).
    fn tls_io(&mut self, i: usize) -> io::Result<()> {
        self.read_in(i)?;
        self.flush(i)
    }

    /// Reads what the socket has into `inbuf` (through TLS when there is TLS). An error
    /// means the connection is over (closed by the peer, reset, bad TLS, too much input).
    fn read_in(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        let Some(s) = c.sock.as_mut() else { return Err(io::ErrorKind::NotConnected.into()) };
        let mut eof = false;
        match c.tls.as_mut() {
            Some(t) => {
                loop {
                    match t.read_tls(s) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    if let Err(e) = t.process_new_packets() {
                        // Send the alert before giving up.
                        let _ = t.write_tls(s);
                        return Err(io::Error::other(e));
                    }
                }
                if let Err(e) = t.process_new_packets() {
                    let _ = t.write_tls(s);
                    return Err(io::Error::other(e));
                }
                loop {
                    match t.reader().read(&mut self.tmp) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => c.inbuf.extend_from_slice(&self.tmp[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            None => loop {
                match s.read(&mut self.tmp) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    // A short read drained the socket: data arriving later raises a new
                    // edge (Linux wakes epoll on every arrival), so skip the read that
                    // would only say WouldBlock: one syscall less per ack.
                    Ok(n) if n < self.tmp.len() => {
                        c.inbuf.extend_from_slice(&self.tmp[..n]);
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&self.tmp[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
        if c.inbuf.len() > MAX_INBUF {
            return Err(io::Error::other("the server sent more than acks"));
        }
        if eof {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn parse_acks(&mut self, i: usize) {
        let sh = &self.ctx.sh;
        let c = &mut self.conns[i];
        let mut used = 0;
        let now_ns = wall_ns();
        let mut bad = false;
        loop {
            let mut sk = Skipper::new();
            match sk.advance(&c.inbuf[used..], 1 << 16, 8) {
                Ok(Some(n)) => {
                    let v = &c.inbuf[used..used + n];
                    used += n;
                    let Some(seq) = ack_seq(v) else { continue };
                    let Some(k) = c.pending.iter().position(|x| x.seq == seq) else { continue };
                    if let Some(x) = c.pending.remove(k) {
                        sh.c.add(&sh.c.acked_total, x.events as u64);
                        if x.measured {
                            sh.c.add(&sh.c.acked_events, x.events as u64);
                            sh.per_conn_add(c.slot, x.events as u64);
                            self.local.record(sh, now_ns.saturating_sub(x.intended_ns) / 1000);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            c.inbuf.clear();
        } else {
            c.inbuf.drain(..used);
        }
    }

    /// Every 100 ms: ack timeouts, and connects or handshakes that take too long.
    fn scan(&mut self, now: Instant) {
        let ctx = self.ctx.clone();
        let (cfg, sh) = (&ctx.cfg, &ctx.sh);
        // Connects in progress are also asked directly (belt and braces: a connect that
        // completed without its writable edge being seen would otherwise time out).
        let mut check = Vec::new();
        let mut slow = Vec::new();
        let mut room = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            let mut freed = false;
            while c.pending.front().is_some_and(|x| now.saturating_duration_since(x.sent_at) > cfg.ack_timeout) {
                if let Some(x) = c.pending.pop_front() {
                    freed = true;
                    if x.measured {
                        sh.c.add(&sh.c.errors, 1);
                        sh.c.add(&sh.c.ack_timeouts, 1);
                    }
                }
            }
            match c.st {
                St::Connecting | St::Tls | St::Auth => {
                    if now.saturating_duration_since(c.t_connect) > cfg.connect_timeout {
                        sh.c.connect_failed(cfg.quiet, format_args!("connect to {} timed out ({:?})", c.addr, c.st));
                        slow.push((i, c.st != St::Connecting));
                    } else if c.st == St::Connecting {
                        check.push(i);
                    }
                }
                // Timed-out frames made room in the window, or the connection waits to close.
                St::Ready if freed => room.push(i),
                St::Draining | St::Finishing => room.push(i),
                _ => {}
            }
        }
        for i in check {
            self.on_event(i, false, true, false);
        }
        for (i, counted) in slow {
            self.retry(i, counted);
        }
        for i in room {
            self.after_io(i);
        }
    }
}

/// Writes plaintext: through TLS, or straight to the socket (the rest buffered).
fn write_plain(c: &mut Conn, reg: &mio::Registry, i: usize, b: &[u8]) -> io::Result<()> {
    if let Some(t) = c.tls.as_mut() {
        t.writer().write_all(b)?;
    } else if c.out_pos >= c.out.len() {
        let Some(s) = c.sock.as_mut() else { return Err(io::ErrorKind::NotConnected.into()) };
        let mut at = 0;
        while at < b.len() {
            match s.write(&b[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        c.out.extend_from_slice(&b[at..]);
    } else {
        c.out.extend_from_slice(b);
    }
    flush(c, reg, i)
}

/// Writes buffered bytes; asks for writability while some remain.
fn flush(c: &mut Conn, reg: &mio::Registry, i: usize) -> io::Result<()> {
    let Some(s) = c.sock.as_mut() else { return Ok(()) };
    if let Some(t) = c.tls.as_mut() {
        while t.wants_write() {
            match t.write_tls(s) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    } else {
        while c.out_pos < c.out.len() {
            match s.write(&c.out[c.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if c.out_pos >= c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
    }
    let want = c.out_pos < c.out.len() || c.tls.as_ref().is_some_and(|t| t.wants_write());
    if want != c.writable {
        c.writable = want;
        let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        reg.reregister(s, Token(i), interest)?;
    }
    Ok(())
}
