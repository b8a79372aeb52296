//! `spate-loadgen sink`: a Forward server that acks when asked, counts events and bytes
//! per tag, and builds an end-to-end latency histogram from the generator's send stamp
//! (a nanosecond timestamp in `--stamp-field`). `--raw` only counts bytes (the loopback
//! ceiling); `--record FILE` writes every frame with its arrival time (`capture.rs`).
//!
//! A PackedForward frame that carries the `size` option is counted by it without its
//! events being walked (`FrameDecoder::decode_sized`); one frame in `sample_every`,
//! drawn at random, is decoded whole, which samples its stamps and checks its `size`
//! (mismatches are reported). A large frame not sampled (entries of 64 KiB or more, once
//! a walked frame showed the sender sends `size`) is not even kept: its header is read,
//! its entries are read into a reused scratch buffer and dropped, and its options give
//! its count (`FrameDecoder::skip_entries_head`); a relay's 8 MiB chunks then cost the
//! sink the kernel's copy into a buffer that stays in cache, not fresh memory for every
//! chunk. While it skips, the socket's SO_RCVLOWAT asks the kernel to wake the sink only
//! once up to 1 MiB of those entries arrived: an idle sink woken for every 64 KiB segment
//! put a wakeup per segment on the sending system's CPU (11% of spate's cycles in the
//! S4 relay on a VM, perf), a cost of the sink, not of the system measured.
//!
//! An acceptor thread hands connections round-robin to a few worker threads, each an
//! epoll loop (mio) over its share: thousands of connections cost no threads, and a few
//! fast ones spread over the cores. Counters are merged per read, per-tag counts every
//! 20 ms, histograms every half second.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Buf;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use spate_protocol::{
    encode, packed_frame_len, parse_frame, EventBatch, Frame, FrameDecoder, Limits, PackedLen, SkippedHead,
};

use crate::capture::Recorder;
use crate::report::{new_hist, Latency, SinkReport, TagCount};
use crate::stats::{raise_nofile, wall_ns};

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub bind: SocketAddr,
    pub stamp_field: String,
    /// Count bytes only: no decoding, no acks.
    pub raw: bool,
    /// Never send acks (for testing clients' ack timeouts).
    pub no_ack: bool,
    /// Read the send stamps of one frame in N only, drawn at random (1: every frame),
    /// and walk only those frames when the others carry `size` (large frames: one a
    /// second, see `Tally::sample_next`). Sampling keeps the sink much faster than what
    /// it measures; the histogram stays representative.
    pub sample_every: u32,
    /// Worker threads (0: one per CPU).
    pub threads: u32,
    /// Write every received frame here, with its arrival time.
    pub record: Option<PathBuf>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            stamp_field: "_spate_ts".into(),
            raw: false,
            no_ack: false,
            sample_every: 1,
            threads: 0,
            record: None,
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
    size_mismatches: AtomicU64,
    /// CPU time of the worker threads, in ns (published with the per-tag counts).
    cpu_ns: AtomicU64,
    by_tag: Mutex<HashMap<Vec<u8>, TagCount>>,
    hist: Mutex<Option<Histogram<u64>>>,
    recorder: Mutex<Option<Recorder>>,
    recorded: AtomicU64,
}

/// A running sink.
pub struct SinkHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
}

const WAKE: Token = Token(usize::MAX);
const LISTEN: Token = Token(usize::MAX - 1);

/// Starts a sink; returns once it listens.
pub fn start(cfg: SinkConfig) -> io::Result<SinkHandle> {
    raise_nofile(32_768);
    let std_l = std::net::TcpListener::bind(cfg.bind)?;
    // A fleet connects thousands at once: a deeper accept queue than std's default.
    // SAFETY: listen(2) again on our own listening socket only changes its backlog.
    unsafe {
        libc::listen(std_l.as_raw_fd(), 4096);
    }
    std_l.set_nonblocking(true)?;
    let addr = std_l.local_addr()?;
    let mut listener = TcpListener::from_std(std_l);
    let shared = Arc::new(Shared { hist: Mutex::new(Some(new_hist())), ..Default::default() });
    if let Some(p) = &cfg.record {
        let r = Recorder::create(p, wall_ns()).map_err(|e| io::Error::other(e.to_string()))?;
        *shared.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let n = if cfg.threads == 0 { cpus } else { cfg.threads }.max(1);
    let mut threads = Vec::new();
    let mut wakers = Vec::new();
    let mut senders: Vec<Sender<std::net::TcpStream>> = Vec::new();
    for w in 0..n {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, rx) = channel();
        senders.push(tx);
        wakers.push(waker);
        let (sh, cfg2) = (shared.clone(), cfg.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("sink-{w}"))
                .spawn(move || Worker::new(poll, rx, sh, cfg2).run())?,
        );
    }
    let apoll = Poll::new()?;
    apoll.registry().register(&mut listener, LISTEN, Interest::READABLE)?;
    let (sh, wk) = (shared.clone(), wakers.clone());
    threads.push(
        std::thread::Builder::new()
            .name("sink-accept".into())
            .spawn(move || accept_loop(apoll, listener, senders, wk, sh))?,
    );
    Ok(SinkHandle { addr, shared, started: Instant::now(), threads, wakers })
}

fn accept_loop(
    mut poll: Poll,
    l: TcpListener,
    to: Vec<Sender<std::net::TcpStream>>,
    wakers: Vec<Arc<Waker>>,
    sh: Arc<Shared>,
) {
    let mut events = Events::with_capacity(16);
    let mut next = 0usize;
    let mut warned = false;
    while !sh.stop.load(Ordering::Relaxed) {
        if poll.poll(&mut events, Some(Duration::from_millis(100))).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    sh.connections.fetch_add(1, Ordering::Relaxed);
                    // mio streams convert to std and back without changing the socket.
                    let fd: std::net::TcpStream = s.into();
                    let w = next % to.len();
                    next = next.wrapping_add(1);
                    if to[w].send(fd).is_ok() {
                        let _ = wakers[w].wake();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Out of descriptors or a connection reset before accept: try again soon.
                Err(e) => {
                    if !warned {
                        warned = true;
                        eprintln!("spate-loadgen sink: accept: {e} (open-file limit {})", raise_nofile(0));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    break;
                }
            }
        }
    }
}

struct SConn {
    sock: TcpStream,
    id: u64,
    buf: BytesMut,
    dec: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    writable: bool,
    /// A large frame not sampled whose entries are being discarded unread
    /// (`FrameDecoder::skip_entries_head`): its header, and the entries' bytes still to
    /// come off the socket (read into scratch, never kept).
    skipping: Option<SkippedHead>,
    skip_left: usize,
    /// The socket's SO_RCVLOWAT: while entries are skipped, the kernel wakes this worker
    /// only once enough of them arrived (see [`SConn::set_lowat`]).
    lowat: usize,
}

impl SConn {
    /// While a large frame's entries are skipped, nothing can be done with a part of
    /// them: ask the kernel (SO_RCVLOWAT) to report the socket readable only once
    /// `LOWAT_MAX` bytes (or the rest of the entries) are there, not at every segment.
    /// An idle sink woken per 64 KiB segment puts a wakeup (an IPI on a VM) on the
    /// *sender's* CPU for each one: the sink would tax the system it measures. Never
    /// above what is left of the frame, so no wait depends on bytes a sender holds back
    /// for an ack.
    fn set_lowat(&mut self) {
        let want = if self.skip_left >= SKIP_MIN { self.skip_left.min(LOWAT_MAX) } else { 1 };
        // Raised only when a skip starts; lowered as soon as the rest is smaller.
        let change = want < self.lowat || (want > self.lowat && self.lowat == 1);
        if !change {
            return;
        }
        let v = want as libc::c_int;
        // SAFETY: a valid socket fd, a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            self.lowat = want;
        }
    }
}

struct Worker {
    poll: Poll,
    rx: Receiver<std::net::TcpStream>,
    sh: Arc<Shared>,
    cfg: SinkConfig,
    conns: Vec<Option<SConn>>,
    free: Vec<usize>,
    tmp: Vec<u8>,
    /// Closed connections' read buffers, for the next ones.
    spare: Vec<BytesMut>,
    /// This thread's CPU time when last published.
    cpu_ns: u64,
    st: Tally,
    last_tags: Instant,
    last_merge: Instant,
    stamp: Vec<u8>,
}

/// A worker's counts between merges into [`Shared`].
struct Tally {
    /// End-to-end latencies sampled since the last merge.
    local: Histogram<u64>,
    /// Events and bytes per tag since the last publish.
    tags: HashMap<Vec<u8>, TagCount>,
    /// Whether the frame under way is sampled, once drawn (a frame not complete yet
    /// keeps its draw; None again after each frame).
    draw: Option<bool>,
    /// xorshift64 state: frames are sampled at random, one in `sample_every` on average,
    /// per worker rather than per connection (a relay that connects per chunk, as
    /// fluentd's out_forward does by default, would have every first frame sampled;
    /// a fixed stride over round-robin connections can keep hitting one connection).
    rng: u64,
    /// When a frame was last sampled (ns, the read's wall clock): a frame is also
    /// sampled when none was for [`SAMPLE_GAP_NS`], so a relay that sends a few large
    /// chunks (fluentd's out_forward: 7 frames for 350 k events) still gets latencies.
    last_sample_ns: u64,
    /// The last frame walked carried `size`: the next large ones may be counted by it
    /// without being kept. Per worker, not per connection: a relay may connect per chunk.
    /// (A skipped frame without `size` counts as a size mismatch: the run is invalid.)
    sized: bool,
}

/// Longest time without a sampled frame (100 ms).
const SAMPLE_GAP_NS: u64 = 100_000_000;

/// Longest time without a sampled large frame (1 s): one holds thousands of stamps, and
/// walking one stalls the sink's reading for milliseconds, which the relay it measures
/// feels.
const SAMPLE_GAP_LARGE_NS: u64 = 1_000_000_000;

impl Tally {
    /// Whether the frame under way is sampled; `at`: when its last bytes were read.
    /// `large`: its entries are [`SKIP_MIN`] bytes or more (a relay's chunk): such a
    /// frame holds thousands of stamps, and is sampled only when none was for
    /// [`SAMPLE_GAP_LARGE_NS`].
    fn sample_next(&mut self, every: u64, at: u64, large: bool) -> bool {
        if every <= 1 {
            return true;
        }
        if let Some(sampled) = self.draw {
            return sampled;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let since = at.saturating_sub(self.last_sample_ns);
        let sampled =
            if large { since >= SAMPLE_GAP_LARGE_NS } else { self.rng.is_multiple_of(every) || since >= SAMPLE_GAP_NS };
        if sampled {
            self.last_sample_ns = at;
        }
        self.draw = Some(sampled);
        sampled
    }
}

static CONN_IDS: AtomicUsize = AtomicUsize::new(0);

impl Worker {
    fn new(poll: Poll, rx: Receiver<std::net::TcpStream>, sh: Arc<Shared>, cfg: SinkConfig) -> Worker {
        Worker {
            poll,
            rx,
            sh,
            stamp: cfg.stamp_field.as_bytes().to_vec(),
            tmp: vec![0; READ],
            cfg,
            conns: Vec::new(),
            free: Vec::new(),
            spare: Vec::new(),
            cpu_ns: thread_cpu_ns(),
            st: Tally {
                local: new_hist(),
                tags: HashMap::new(),
                draw: None,
                // Any odd seed will do; the clock makes workers differ.
                rng: wall_ns() | 1,
                last_sample_ns: 0,
                sized: false,
            },
            last_tags: Instant::now(),
            last_merge: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.sh.stop.load(Ordering::Relaxed) {
            let timeout = if self.st.tags.is_empty() { Duration::from_millis(100) } else { Duration::from_millis(20) };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKE => self.adopt(),
                    Token(i) => {
                        if ev.is_writable() && self.flush(i).is_err() {
                            self.drop_conn(i);
                            continue;
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(i, ev.is_read_closed() || ev.is_error());
                        }
                    }
                }
            }
            if self.last_tags.elapsed() >= Duration::from_millis(20) {
                self.flush_tags();
            }
            if self.last_merge.elapsed() >= Duration::from_millis(500) {
                self.merge();
            }
        }
        self.flush_tags();
        self.merge();
    }

    fn adopt(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            let _ = s.set_nodelay(true);
            let mut sock = TcpStream::from_std(s);
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if self.poll.registry().register(&mut sock, Token(i), Interest::READABLE).is_err() {
                self.free.push(i);
                continue;
            }
            let id = CONN_IDS.fetch_add(1, Ordering::Relaxed) as u64;
            self.conns[i] = Some(SConn {
                sock,
                id,
                buf: self.spare.pop().unwrap_or_default(),
                dec: FrameDecoder::new(Limits::default()),
                out: Vec::new(),
                out_pos: 0,
                writable: false,
                skipping: None,
                skip_left: 0,
                lowat: 1,
            });
            // Data may have arrived before registration; edge-triggered polls would
            // not report it.
            self.on_readable(i, false);
        }
    }

    fn drop_conn(&mut self, i: usize) {
        if let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.free.push(i);
            // Keep the read buffer for a later connection: a relay that
            // connects per chunk would otherwise fault in fresh pages for every chunk.
            // (Its capacity may show only the tail past the last frame taken; the next
            // reserve reclaims the whole block, which nothing else holds by then.) A
            // few are kept: the next connection often opens before this one closed.
            if self.spare.len() < SPARE_BUFFERS {
                c.buf.clear();
                self.spare.push(c.buf);
            }
        }
    }

    /// Reads until the socket is empty (the poll is edge-triggered), decoding as it goes.
    /// `closed`: the peer has closed (or the socket failed): read on to the end of the
    /// stream, since a short read may have taken the last data and no edge follows.
    fn on_readable(&mut self, i: usize, closed: bool) {
        loop {
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else { return };
            // Decoding reads the connection's buffer; raw counting only needs the bytes
            // gone, so it reads into scratch.
            let res = if self.cfg.raw {
                c.sock.read(&mut self.tmp).map(|n| (n, self.tmp.len()))
            } else if c.skip_left > 0 {
                let want = c.skip_left.min(self.tmp.len());
                c.sock.read(&mut self.tmp[..want]).map(|n| (n, want))
            } else {
                // A frame is reserved whole only up to what the decoder accepts anyway.
                read_into(&c.sock, &mut c.buf, READ, MAX_HINT.min(c.dec.limits().max_frame_size))
            };
            let (n, asked) = match res {
                Ok((0, _)) => {
                    self.drop_conn(i);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(i);
                    return;
                }
            };
            self.sh.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if self.cfg.raw {
                continue;
            }
            if let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) {
                if c.skip_left > 0 {
                    c.skip_left -= n;
                    c.set_lowat();
                    if n < asked && !closed {
                        return;
                    }
                    continue;
                }
            }
            let at = wall_ns();
            let ok = {
                let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else { return };
                decode_all(c, &self.sh, &self.cfg, &self.stamp, &mut self.st, at)
            };
            if !ok {
                self.drop_conn(i);
                return;
            }
            if self.flush(i).is_err() {
                self.drop_conn(i);
                return;
            }
            // A short read drained the socket; later data raises a new edge (Linux wakes
            // epoll on every arrival): skip the read that would only say WouldBlock.
            if n < asked && !closed {
                return;
            }
        }
    }

    /// Writes pending acks; asks for writability while some remain.
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else { return Ok(()) };
        while c.out_pos < c.out.len() {
            match c.sock.write(&c.out[c.out_pos..]) {
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
        let want = !c.out.is_empty();
        if want != c.writable {
            c.writable = want;
            let int = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            self.poll.registry().reregister(&mut c.sock, Token(i), int)?;
        }
        Ok(())
    }

    /// Publishes this worker's per-tag counts (and the event total) and its CPU time to
    /// the shared view.
    fn flush_tags(&mut self) {
        self.last_tags = Instant::now();
        let cpu = thread_cpu_ns();
        self.sh.cpu_ns.fetch_add(cpu.saturating_sub(self.cpu_ns), Ordering::Relaxed);
        self.cpu_ns = cpu;
        if self.st.tags.is_empty() {
            return;
        }
        let mut n = 0;
        if let Ok(mut t) = self.sh.by_tag.lock() {
            for (k, v) in self.st.tags.drain() {
                let e = t.entry(k).or_default();
                e.events += v.events;
                e.bytes += v.bytes;
                n += v.events;
            }
        }
        self.sh.events.fetch_add(n, Ordering::Relaxed);
    }

    fn merge(&mut self) {
        self.last_merge = Instant::now();
        if let Ok(mut h) = self.sh.hist.lock() {
            if let Some(h) = h.as_mut() {
                let _ = h.add(&self.st.local);
            }
        }
        self.st.local.reset();
    }
}

/// Decodes every complete frame in the connection's buffer: counts, samples stamps,
/// queues acks, records. False: a bad frame (the connection is closed, as fluentd does).
fn decode_all(c: &mut SConn, sh: &Shared, cfg: &SinkConfig, stamp: &[u8], st: &mut Tally, at: u64) -> bool {
    let every = cfg.sample_every.max(1) as u64;
    let recording = cfg.record.is_some();
    loop {
        if let Some(head) = &c.skipping {
            // The entries are gone: count the frame by the `size` in its options.
            match c.dec.finish_skipped(head, &mut c.buf) {
                Ok(Some(f)) => {
                    c.skipping = None;
                    st.draw = None;
                    if f.option.size.is_none() {
                        st.sized = false;
                        sh.size_mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                    let events = f.option.size.unwrap_or(0);
                    count(st, sh, &f.tag, events, f.wire_len);
                    if let Some(ch) = &f.option.chunk {
                        ack(c, sh, cfg, ch);
                    }
                    continue;
                }
                Ok(None) => return true,
                Err(_) => {
                    sh.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
        // Frames whose stamps are sampled are also walked whole: their `size` option,
        // trusted for the others, is checked against their entries.
        // Draw only once the frame's header is here: it tells a large frame.
        let large = match packed_frame_len(&c.buf) {
            PackedLen::Incomplete => return true,
            PackedLen::Len(n) => n >= SKIP_MIN,
            PackedLen::Other => false,
        };
        let sampled = st.sample_next(every, at, large);
        if !sampled && !recording && st.sized {
            if let Some(head) = c.dec.skip_entries_head(&mut c.buf, SKIP_MIN) {
                // Discard the entries already read; the rest is read into scratch.
                let here = head.entries_len.min(c.buf.len());
                c.buf.advance(here);
                c.skip_left = head.entries_len - here;
                c.skipping = Some(head);
                c.set_lowat();
                if c.skip_left > 0 {
                    return true;
                }
                continue;
            }
        }
        let frame = if recording {
            match c.dec.next_value(&mut c.buf) {
                Ok(Some(raw)) => {
                    if let Ok(mut r) = sh.recorder.lock() {
                        if let Some(r) = r.as_mut() {
                            if r.write(at, c.id, &raw).is_ok() {
                                sh.recorded.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    let len = raw.len();
                    parse_frame(raw, c.dec.limits()).map(|mut f| {
                        if let Frame::Events(b) = &mut f {
                            b.wire_len = len;
                        }
                        Some(f)
                    })
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        } else if sampled {
            c.dec.decode(&mut c.buf)
        } else {
            c.dec.decode_sized(&mut c.buf)
        };
        match frame {
            Ok(Some(Frame::Events(b))) => {
                st.sized = b.option.size.is_some();
                if sampled {
                    sample(&b, stamp, &mut st.local);
                    // Trusted frames count `size`, which would include invalid entries:
                    // any invalid entry makes the counts suspect too.
                    if b.option.size.is_some_and(|n| n != u64::from(b.count) || b.invalid > 0) {
                        sh.size_mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                }
                st.draw = None;
                count(st, sh, &b.tag, b.count as u64, b.wire_len);
                if let Some(ch) = &b.option.chunk {
                    ack(c, sh, cfg, ch);
                }
            }
            Ok(Some(Frame::Heartbeat)) => {}
            Ok(None) => return true,
            Err(_) => {
                sh.bad_frames.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
    }
}

/// Adds a frame's events and bytes to its tag's counts.
fn count(st: &mut Tally, sh: &Shared, tag: &[u8], events: u64, wire_len: usize) {
    match st.tags.get_mut(tag) {
        Some(t) => {
            t.events += events;
            t.bytes += wire_len as u64;
        }
        None => {
            st.tags.insert(tag.to_vec(), TagCount { events, bytes: wire_len as u64 });
        }
    }
    sh.frames.fetch_add(1, Ordering::Relaxed);
}

/// Queues the ack a frame's `chunk` option asks for (unless `--no-ack`).
fn ack(c: &mut SConn, sh: &Shared, cfg: &SinkConfig, chunk: &[u8]) {
    if cfg.no_ack {
        return;
    }
    if c.dec.is_json() {
        encode::ack_json(&mut c.out, chunk);
    } else {
        encode::ack(&mut c.out, chunk);
    }
    sh.acks.fetch_add(1, Ordering::Relaxed);
}

/// Entries at least this large, in a frame not sampled, are discarded unread rather than
/// kept in the connection's buffer: a relay's multi-megabyte chunks would otherwise be
/// written to fresh memory and walked by nobody.
const SKIP_MIN: usize = 64 << 10;
/// The most SO_RCVLOWAT asks for while skipping (`SConn::set_lowat`).
const LOWAT_MAX: usize = 1 << 20;

/// The calling thread's CPU time (user and system), in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Read buffers kept for new connections.
const SPARE_BUFFERS: usize = 4;

/// Bytes asked for per read.
const READ: usize = 256 << 10;

/// Reads up to `want` bytes from `sock` straight into the free room of `buf` (grown if
/// need be), so the bytes are not copied again from a scratch buffer. Returns the bytes
/// read and the bytes asked for: fewer read than asked means the socket is drained.
fn read_into(sock: &TcpStream, buf: &mut BytesMut, want: usize, max_hint: usize) -> io::Result<(usize, usize)> {
    // Room for the whole frame under way when its header tells its size: a relay's
    // multi-megabyte chunk would otherwise be copied again at every doubling.
    // While that frame is incomplete, read no further than its end (plus room for its
    // options): asking for a full `want` near its end would copy it all to a new block.
    let frame = match packed_frame_len(buf) {
        PackedLen::Len(n) => n.min(max_hint),
        _ => 0,
    };
    if frame > buf.len() {
        buf.reserve(frame - buf.len() + 256);
    } else {
        buf.reserve(want);
    }
    let room = buf.spare_capacity_mut();
    let len = room.len().min(want);
    // SAFETY: `room` is writable memory of at least `len` bytes owned by `buf`; recv
    // writes at most `len` bytes into it and says how many, and only those are then
    // marked as initialised.
    let n = unsafe { libc::recv(sock.as_raw_fd(), room.as_mut_ptr().cast(), len, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok((n, len))
}

/// The most [`packed_frame_len`] may make a read reserve.
const MAX_HINT: usize = 64 << 20;

fn sample(b: &EventBatch, stamp: &[u8], local: &mut Histogram<u64>) {
    let now = wall_ns();
    for e in b.events() {
        if let Some(ts) = e.record.get(stamp).and_then(|v| v.as_i64()) {
            let _ = local.record((now.saturating_sub(ts as u64) / 1000).max(1));
        }
    }
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

    /// Pushes the recording's buffered frames to its file.
    pub fn flush_record(&self) {
        if let Ok(mut r) = self.shared.recorder.lock() {
            if let Some(r) = r.as_mut() {
                let _ = r.flush();
            }
        }
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
            size_mismatches: sh.size_mismatches.load(Ordering::Relaxed),
            worker_cpu_s: sh.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            duration_s: secs,
            events_per_sec: events as f64 / secs,
            e2e_latency_us: lat,
            by_tag,
            frames_recorded: sh.recorded.load(Ordering::Relaxed),
        }
    }

    /// Stops (closing every connection within ~100 ms), ends the recording, and returns
    /// the final report.
    pub fn stop(mut self) -> SinkReport {
        self.shutdown();
        self.report()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(r) = self.shared.recorder.lock().ok().and_then(|mut r| r.take()) {
            if let Err(e) = r.finish() {
                eprintln!("spate-loadgen sink: recording: {e}");
            }
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
