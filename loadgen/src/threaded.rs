//! The generator's threaded I/O path (`--io threads`, the default for a few
//! connections): one writer thread and one ack-reader thread per connection, blocking
//! sockets. Frames are encoded once per connection and patched per send (stamp, chunk
//! id). Open-loop `--rate` schedules frames at fixed intervals and measures latency from
//! the *intended* send time (coordinated omission corrected, as wrk2 does); without a
//! rate it sends as fast as the target takes it, bounded by `--inflight` when acks are
//! requested. For thousands of connections see `fleet.rs`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use spate_protocol::encode;
use spate_protocol::msgpack::Skipper;

use crate::generator::{Ctx, RunConfig};
use crate::handshake::{Auth, ClientHandshake, Step};
use crate::records::{chunk_id, FrameSet, CHUNK_LEN};
use crate::stats::{wall_ns, LocalHist, Shared};
use crate::tls::Conn;

pub(crate) struct Pending {
    pub seq: u64,
    pub intended_ns: u64,
    pub sent_at: Instant,
    pub events: u32,
    pub measured: bool,
}

#[derive(Default)]
struct ConnState {
    pending: Mutex<VecDeque<Pending>>,
    space: Condvar,
    broken: AtomicBool,
}

/// The sequence number in one of our chunk ids (`{conn:08x}{seq:016x}`).
pub(crate) fn ack_seq(v: &[u8]) -> Option<u64> {
    let id = encode::parse_ack(v).ok()?;
    std::str::from_utf8(id).ok().and_then(|s| s.get(8..)).and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// Reads acks for one TCP connection until it closes or the run stops.
fn ack_reader(mut s: Conn, st: Arc<ConnState>, slot: u32, ctx: Arc<Ctx>) {
    let sh = &ctx.sh;
    let c = &sh.c;
    let ack_timeout = ctx.cfg.ack_timeout;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    let mut local = LocalHist::default();
    loop {
        match s.read(&mut tmp) {
            Ok(0) => {
                st.broken.store(true, Ordering::Relaxed);
                break;
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                st.broken.store(true, Ordering::Relaxed);
                break;
            }
        }
        let mut used = 0;
        loop {
            let mut sk = Skipper::new();
            match sk.advance(&buf[used..], 1 << 16, 8) {
                Ok(Some(n)) => {
                    let v = &buf[used..used + n];
                    used += n;
                    let Some(seq) = ack_seq(v) else { continue };
                    let now_ns = wall_ns();
                    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(i) = p.iter().position(|x| x.seq == seq) {
                        if let Some(x) = p.remove(i) {
                            c.add(&c.acked_total, x.events as u64);
                            if x.measured {
                                c.add(&c.acked_events, x.events as u64);
                                sh.per_conn_add(slot, x.events as u64);
                                local.record(sh, now_ns.saturating_sub(x.intended_ns) / 1000);
                            }
                        }
                    }
                    drop(p);
                    st.space.notify_all();
                }
                Ok(None) => break,
                Err(_) => {
                    st.broken.store(true, Ordering::Relaxed);
                    used = buf.len();
                    break;
                }
            }
        }
        buf.drain(..used);
        // Acks that never came.
        {
            let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            while p.front().is_some_and(|x| x.sent_at.elapsed() > ack_timeout) {
                if let Some(x) = p.pop_front() {
                    if x.measured {
                        c.add(&c.errors, 1);
                        c.add(&c.ack_timeouts, 1);
                    }
                }
            }
        }
        st.space.notify_all();
        local.maybe_flush(sh, false);
        // The writer closes the socket when it is done; that ends this loop.
        if st.broken.load(Ordering::Relaxed) {
            break;
        }
    }
    local.maybe_flush(sh, true);
}

/// Connects (TCP, TLS, handshake), retrying with backoff until the run stops.
pub(crate) fn connect(addr: SocketAddr, cfg: &RunConfig, sh: &Shared) -> Option<Conn> {
    let c = &sh.c;
    let mut backoff = Duration::from_millis(50);
    while !c.stopping() {
        let t0 = Instant::now();
        if let Ok(tcp) = TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            let _ = tcp.set_nodelay(true);
            let mut s = match &cfg.tls {
                None => Conn::Tcp(tcp),
                Some(t) => match t.connect(tcp, cfg.connect_timeout) {
                    Ok(s) => s,
                    Err(e) => {
                        if !cfg.quiet {
                            eprintln!("spate-loadgen: TLS handshake with {addr} failed: {e}");
                        }
                        c.add(&c.errors, 1);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            let _ = s.set_write_timeout(Some(cfg.ack_timeout.max(Duration::from_secs(1))));
            match &cfg.auth {
                None => {
                    sh.record_connect(t0.elapsed());
                    return Some(s);
                }
                Some(a) => match handshake(&mut s, a, cfg.connect_timeout) {
                    Ok(()) => {
                        sh.record_connect(t0.elapsed());
                        return Some(s);
                    }
                    Err(e) => {
                        if !cfg.quiet {
                            eprintln!("spate-loadgen: handshake with {addr} failed: {e}");
                        }
                        c.add(&c.errors, 1);
                    }
                },
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    None
}

/// fluentd's client handshake over a blocking connection.
fn handshake(s: &mut Conn, a: &Auth, timeout: Duration) -> Result<(), String> {
    let _ = s.set_read_timeout(Some(timeout));
    let mut hs = ClientHandshake::new();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    loop {
        match hs.on_data(a, &mut buf).map_err(|e| e.to_string())? {
            Step::Done => break,
            Step::Send(b) => s.write_all(&b).map_err(|e| e.to_string())?,
            Step::More => match s.read(&mut tmp) {
                Ok(0) => return Err("connection closed during the handshake".into()),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e.to_string()),
            },
        }
    }
    let _ = s.set_read_timeout(None);
    Ok(())
}

/// Fails every pending frame of a broken connection.
fn fail_pending(st: &ConnState, sh: &Shared) {
    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    for x in p.drain(..) {
        if x.measured {
            sh.c.add(&sh.c.errors, 1);
        }
    }
    st.space.notify_all();
}

/// One connection slot: (re)connects and sends until the run ends.
pub(crate) fn connection(id: u32, addr: SocketAddr, ctx: Arc<Ctx>) {
    let (cfg, sh) = (&ctx.cfg, &ctx.sh);
    let c = &sh.c;
    let mut fs = FrameSet::new(ctx.frame_params(), &ctx.tpls, id as usize * 7, cfg.batch);
    let batch = fs.batch();
    // This connection's share of the rate, in writes per second.
    let interval = ctx.rate_of(id).map(|r| Duration::from_secs_f64(batch as f64 / r.max(1e-9)));
    let mut next_due = ctx.start;
    let mut seq: u64 = 0;
    let mut scratch = Vec::new();
    let mut ids: Vec<[u8; CHUNK_LEN]> = Vec::with_capacity(batch as usize);
    let mut first = true;
    let mut left = crate::stats::share(cfg.events, id, cfg.connections);
    'outer: while !c.stopping() {
        let Some(mut s) = connect(addr, cfg, sh) else { break };
        if !first {
            c.add(&c.reconnects, 1);
        }
        first = false;
        let st = Arc::new(ConnState::default());
        let reader = if cfg.ack {
            let (st2, ctx2, r) = (st.clone(), ctx.clone(), s.try_clone());
            r.ok().map(|r| std::thread::spawn(move || ack_reader(r, st2, id, ctx2)))
        } else {
            None
        };
        let mut finished = false;
        loop {
            if c.stopping() {
                finished = true;
                break;
            }
            if st.broken.load(Ordering::Relaxed) {
                break;
            }
            // Open loop: wait for the intended send time (never skip a slot).
            let intended = match interval {
                Some(iv) => {
                    let now = Instant::now();
                    if next_due > now {
                        std::thread::sleep(next_due - now);
                    }
                    let t = next_due;
                    next_due += iv;
                    t
                }
                None => Instant::now(),
            };
            if cfg.ack {
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                let frames = if cfg.mode == crate::records::SendMode::Message { batch as usize } else { 1 };
                while p.len() + frames > (cfg.inflight.max(1) as usize).max(frames) {
                    if c.stopping() || st.broken.load(Ordering::Relaxed) {
                        break;
                    }
                    p = st
                        .space
                        .wait_timeout(p, Duration::from_millis(50))
                        .map(|x| x.0)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
            let events = c.take(&mut left, batch as u64) as u32;
            if events == 0 {
                finished = true;
                break;
            }
            let measured = c.measuring();
            let intended_ns = ctx.start_wall + intended.duration_since(ctx.start).as_nanos() as u64;
            let ft = fs.take(&ctx.tpls, events);
            let frames = ft.frames;
            // Ids only when acks are asked for: without acks the frames carry none.
            ids.clear();
            if cfg.ack {
                for i in 0..frames as u64 {
                    ids.push(chunk_id(id, seq + i));
                }
            }
            if cfg.ack {
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                let per = events / frames;
                for i in 0..frames as u64 {
                    p.push_back(Pending { seq: seq + i, intended_ns, sent_at: Instant::now(), events: per, measured });
                }
            }
            seq += frames as u64;
            let bytes = ft.render(intended_ns, &ids, &mut scratch);
            let n = bytes.len() as u64;
            if s.write_all(bytes).is_err() {
                if measured {
                    c.add(&c.errors, 1);
                }
                break;
            }
            c.add(&c.sent_total, events as u64);
            if measured {
                c.add(&c.sent_events, events as u64);
                c.add(&c.sent_bytes, n);
                c.add(&c.sent_frames, frames as u64);
                if !cfg.ack {
                    sh.per_conn_add(id, events as u64);
                }
            }
        }
        if finished && cfg.ack {
            // Let the last acks arrive (bounded by the ack timeout).
            let end = Instant::now() + cfg.ack_timeout;
            let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            while !p.is_empty() && Instant::now() < end && !st.broken.load(Ordering::Relaxed) {
                p = st
                    .space
                    .wait_timeout(p, Duration::from_millis(20))
                    .map(|x| x.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        // Unacked frames of this connection are lost to us (counted as errors).
        s.shutdown();
        fail_pending(&st, sh);
        if let Some(r) = reader {
            let _ = r.join();
        }
        if finished {
            break 'outer;
        }
    }
}
