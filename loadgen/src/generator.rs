//! `spate-loadgen run`: the generator. One writer thread and one ack-reader thread per
//! connection; frames are encoded once per connection and patched per send (stamp,
//! chunk id). Open-loop `--rate` schedules frames at fixed intervals and measures
//! latency from the *intended* send time (coordinated omission corrected, as wrk2 does);
//! without a rate it sends as fast as the target takes it, bounded by `--inflight`
//! when acks are requested. Every run ends within its duration plus the ack timeout
//! plus a second.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use spate_protocol::encode::{self, TimeFormat};
use spate_protocol::msgpack::Skipper;

use crate::records::{chunk_id, templates, FrameTemplate, RecordSource, SendMode, CHUNK_LEN};
use crate::report::{new_hist, Latency, RunReport};
use crate::tls::{Conn, TlsConf};

/// Generator settings (the CLI maps onto this).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub targets: Vec<SocketAddr>,
    pub connections: u32,
    pub mode: SendMode,
    /// Events per frame (Message mode: frames per write).
    pub batch: u32,
    pub record: RecordSource,
    pub tag: String,
    pub time: TimeFormat,
    /// Events per second in total (open loop); None: as fast as possible.
    pub rate: Option<f64>,
    pub ack: bool,
    pub inflight: u32,
    pub ack_timeout: Duration,
    pub duration: Option<Duration>,
    /// Events to send in the measured phase (exactly, when no duration ends it first).
    pub events: Option<u64>,
    pub warmup: Duration,
    pub stamp_field: String,
    pub quiet: bool,
    pub connect_timeout: Duration,
    /// Authenticate with fluentd's shared-key handshake (and user/password if the
    /// server asks), as out_forward does.
    pub auth: Option<Auth>,
    /// Speak TLS to the targets (before the handshake, as out_forward does).
    pub tls: Option<TlsConf>,
}

/// Credentials for the HELO/PING/PONG handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub self_hostname: String,
    pub shared_key: String,
    pub username: String,
    pub password: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            targets: vec![SocketAddr::from(([127, 0, 0, 1], 24224))],
            connections: 1,
            mode: SendMode::Packed,
            batch: 1000,
            record: RecordSource::R1,
            tag: "spate.loadgen".into(),
            time: TimeFormat::EventTime,
            rate: None,
            ack: false,
            inflight: 8,
            ack_timeout: Duration::from_secs(10),
            duration: None,
            events: None,
            warmup: Duration::ZERO,
            stamp_field: "_spate_ts".into(),
            quiet: false,
            connect_timeout: Duration::from_secs(3),
            auth: None,
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("records: {0}")]
    Records(String),
}

#[derive(Default)]
struct Counters {
    measuring: AtomicBool,
    stop: AtomicBool,
    sent_events: AtomicU64,
    sent_total: AtomicU64,
    sent_bytes: AtomicU64,
    sent_frames: AtomicU64,
    acked_events: AtomicU64,
    acked_total: AtomicU64,
    errors: AtomicU64,
    ack_timeouts: AtomicU64,
    reconnects: AtomicU64,
    /// Remaining measured events to send (`--events`), if bounded.
    budget: AtomicU64,
    bounded: AtomicBool,
}

struct Pending {
    seq: u64,
    intended_ns: u64,
    sent_at: Instant,
    events: u32,
    measured: bool,
}

#[derive(Default)]
struct ConnState {
    pending: Mutex<VecDeque<Pending>>,
    space: Condvar,
    broken: AtomicBool,
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Takes `want` events from the budget; returns how many may be sent (0: done).
fn take_budget(c: &Counters, want: u64) -> u64 {
    if !c.bounded.load(Ordering::Relaxed) || !c.measuring.load(Ordering::Relaxed) {
        return want;
    }
    let mut cur = c.budget.load(Ordering::Relaxed);
    loop {
        if cur < want {
            // Only whole frames are sent: a partial remainder ends the run here.
            return 0;
        }
        match c.budget.compare_exchange(cur, cur - want, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return want,
            Err(v) => cur = v,
        }
    }
}

/// Reads acks for one TCP connection until it closes or the run stops.
fn ack_reader(
    mut s: Conn,
    st: Arc<ConnState>,
    c: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
    ack_timeout: Duration,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    let mut local = new_hist();
    let mut last_merge = Instant::now();
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
                    let Ok(id) = encode::parse_ack(v) else { continue };
                    let seq = std::str::from_utf8(id)
                        .ok()
                        .and_then(|s| s.get(8..))
                        .and_then(|h| u64::from_str_radix(h, 16).ok());
                    let Some(seq) = seq else { continue };
                    let now_ns = wall_ns();
                    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(i) = p.iter().position(|x| x.seq == seq) {
                        if let Some(x) = p.remove(i) {
                            c.acked_total.fetch_add(x.events as u64, Ordering::Relaxed);
                            if x.measured {
                                c.acked_events.fetch_add(x.events as u64, Ordering::Relaxed);
                                let _ = local.record((now_ns.saturating_sub(x.intended_ns) / 1000).max(1));
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
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        c.ack_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        st.space.notify_all();
        if last_merge.elapsed() > Duration::from_millis(500) {
            let _ = hist.lock().map(|mut h| h.add(&local));
            local.reset();
            last_merge = Instant::now();
        }
        // The writer closes the socket when it is done; that ends this loop.
        if st.broken.load(Ordering::Relaxed) {
            break;
        }
    }
    let _ = hist.lock().map(|mut h| h.add(&local));
}

fn connect(addr: SocketAddr, cfg: &RunConfig, c: &Counters) -> Option<Conn> {
    let mut backoff = Duration::from_millis(50);
    while !c.stop.load(Ordering::Relaxed) {
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
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            let _ = s.set_write_timeout(Some(cfg.ack_timeout.max(Duration::from_secs(1))));
            match &cfg.auth {
                None => return Some(s),
                Some(a) => match handshake(&mut s, a, cfg.connect_timeout) {
                    Ok(()) => return Some(s),
                    Err(e) => {
                        if !cfg.quiet {
                            eprintln!("spate-loadgen: handshake with {addr} failed: {e}");
                        }
                        c.errors.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    None
}

/// Reads one complete msgpack value (a handshake message).
fn read_value(s: &mut Conn, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut tmp = [0u8; 1024];
    loop {
        let mut sk = Skipper::new();
        match sk.advance(buf, 1 << 16, 8) {
            Ok(Some(n)) => return Ok(buf.drain(..n).collect()),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match s.read(&mut tmp) {
            Ok(0) => return Err("connection closed during the handshake".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// fluentd's client handshake: HELO in, PING out, PONG in and verified.
fn handshake(s: &mut Conn, a: &Auth, timeout: Duration) -> Result<(), String> {
    use spate_protocol::handshake as hs;
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = Vec::new();
    let helo_raw = read_value(s, &mut buf)?;
    let helo = hs::parse_helo(&helo_raw).map_err(|e| format!("invalid HELO: {e}"))?;
    let salt = format!("{:032x}", wall_ns() as u128 ^ ((std::process::id() as u128) << 64));
    let mut ping = Vec::new();
    hs::encode_ping(
        &mut ping,
        &helo,
        a.self_hostname.as_bytes(),
        salt.as_bytes(),
        a.shared_key.as_bytes(),
        Some((a.username.as_bytes(), a.password.as_bytes())),
    );
    s.write_all(&ping).map_err(|e| e.to_string())?;
    let pong_raw = read_value(s, &mut buf)?;
    let pong = hs::parse_pong(&pong_raw).map_err(|e| format!("invalid PONG: {e}"))?;
    if !pong.ok {
        return Err(format!("authentication failed: {}", String::from_utf8_lossy(pong.reason)));
    }
    let want = hs::shared_key_digest(salt.as_bytes(), pong.hostname, helo.nonce, a.shared_key.as_bytes());
    if !hs::digest_eq(pong.shared_key_digest, want.as_bytes()) {
        return Err("the server's shared key digest does not match".into());
    }
    let _ = s.set_read_timeout(None);
    Ok(())
}

/// Fails every pending frame of a broken connection.
fn fail_pending(st: &ConnState, c: &Counters) {
    let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
    for x in p.drain(..) {
        if x.measured {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    st.space.notify_all();
}

#[allow(clippy::too_many_arguments)]
fn connection(
    id: u32,
    addr: SocketAddr,
    cfg: Arc<RunConfig>,
    tpls: Arc<Vec<crate::records::Template>>,
    c: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
    start: Instant,
    start_wall: u64,
) {
    let batch = if cfg.mode == SendMode::Message { cfg.batch.clamp(1, 64) } else { cfg.batch.max(1) };
    let mut ft = FrameTemplate::new(
        cfg.mode,
        cfg.tag.as_bytes(),
        &tpls,
        id as usize * 7,
        batch,
        cfg.time,
        cfg.stamp_field.as_bytes(),
        cfg.ack,
    );
    let frames = ft.frames;
    // Per connection share of the rate, in frames (writes) per second.
    let interval = cfg.rate.map(|r| Duration::from_secs_f64(batch as f64 / (r / cfg.connections as f64).max(1e-9)));
    let mut next_due = start;
    let mut seq: u64 = 0;
    let mut scratch = Vec::new();
    let mut ids: Vec<[u8; CHUNK_LEN]> = Vec::with_capacity(frames as usize);
    let mut first = true;
    'outer: while !c.stop.load(Ordering::Relaxed) {
        let Some(mut s) = connect(addr, &cfg, &c) else { break };
        if !first {
            c.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let st = Arc::new(ConnState::default());
        let reader = if cfg.ack {
            let (st2, c2, h2, r) = (st.clone(), c.clone(), hist.clone(), s.try_clone());
            let to = cfg.ack_timeout;
            r.ok().map(|r| std::thread::spawn(move || ack_reader(r, st2, c2, h2, to)))
        } else {
            None
        };
        let mut finished = false;
        loop {
            if c.stop.load(Ordering::Relaxed) {
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
                while p.len() + frames as usize > (cfg.inflight.max(1) as usize).max(frames as usize) {
                    if c.stop.load(Ordering::Relaxed) || st.broken.load(Ordering::Relaxed) {
                        break;
                    }
                    p = st
                        .space
                        .wait_timeout(p, Duration::from_millis(50))
                        .map(|x| x.0)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
            if take_budget(&c, batch as u64) == 0 {
                finished = true;
                break;
            }
            let measured = c.measuring.load(Ordering::Relaxed);
            let intended_ns = start_wall + intended.duration_since(start).as_nanos() as u64;
            ids.clear();
            for i in 0..frames as u64 {
                ids.push(chunk_id(id, seq + i));
            }
            if cfg.ack {
                let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
                let per = batch / frames;
                for i in 0..frames as u64 {
                    p.push_back(Pending { seq: seq + i, intended_ns, sent_at: Instant::now(), events: per, measured });
                }
            }
            seq += frames as u64;
            let bytes = ft.render(intended_ns, &ids, &mut scratch);
            let n = bytes.len() as u64;
            if s.write_all(bytes).is_err() {
                if measured {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            c.sent_total.fetch_add(batch as u64, Ordering::Relaxed);
            if measured {
                c.sent_events.fetch_add(batch as u64, Ordering::Relaxed);
                c.sent_bytes.fetch_add(n, Ordering::Relaxed);
                c.sent_frames.fetch_add(frames as u64, Ordering::Relaxed);
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
        fail_pending(&st, &c);
        if let Some(r) = reader {
            let _ = r.join();
        }
        if finished {
            break 'outer;
        }
    }
}

/// Runs the generator to completion and returns its report.
pub fn run(cfg: RunConfig) -> Result<RunReport, Error> {
    if cfg.targets.is_empty() || cfg.connections == 0 {
        return Err(Error::Config("need at least one --target and one connection".into()));
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Config("--rate must be a positive number of events per second".into()));
    }
    let tpls = Arc::new(templates(&cfg.record).map_err(Error::Records)?);
    let duration = match (cfg.duration, cfg.events) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let c = Arc::new(Counters::default());
    if let Some(n) = cfg.events {
        c.budget.store(n, Ordering::Relaxed);
        c.bounded.store(true, Ordering::Relaxed);
    }
    let hist = Arc::new(Mutex::new(new_hist()));
    // Without a warmup every event counts, from the first frame.
    c.measuring.store(cfg.warmup.is_zero(), Ordering::Relaxed);
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let start_wall = wall_ns();
    let mut threads = Vec::new();
    for i in 0..cfg.connections {
        let addr = cfg.targets[i as usize % cfg.targets.len()];
        let (cfg2, t2, c2, h2) = (cfg.clone(), tpls.clone(), c.clone(), hist.clone());
        threads.push(std::thread::spawn(move || connection(i, addr, cfg2, t2, c2, h2, start, start_wall)));
    }
    if !cfg.warmup.is_zero() {
        std::thread::sleep(cfg.warmup);
    }
    c.measuring.store(true, Ordering::Relaxed);
    let m_start = Instant::now();
    let mut rate_per_sec = Vec::new();
    let mut last_sent = 0;
    let mut next_tick = m_start + Duration::from_secs(1);
    loop {
        let done_by_time = duration.is_some_and(|d| m_start.elapsed() >= d);
        let all_done = threads.iter().all(|t| t.is_finished());
        if done_by_time || all_done {
            break;
        }
        let until_tick = next_tick.saturating_duration_since(Instant::now());
        let until_end = duration.map_or(until_tick, |d| (m_start + d).saturating_duration_since(Instant::now()));
        std::thread::sleep(until_tick.min(until_end).min(Duration::from_millis(50)));
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let sent = c.sent_events.load(Ordering::Relaxed);
            rate_per_sec.push(sent - last_sent);
            if !cfg.quiet {
                let l = hist.lock().map(|h| Latency::from_hist(&h)).unwrap_or_default();
                eprintln!(
                    "[{:>3}s] sent {:>10} ev/s{} acked {:>10} errors {} reconnects {}{}",
                    rate_per_sec.len(),
                    sent - last_sent,
                    cfg.rate.map_or(String::new(), |r| format!(" (offered {r:.0})")),
                    c.acked_events.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                    c.reconnects.load(Ordering::Relaxed),
                    if cfg.ack { format!(" ack p50 {}us p99 {}us", l.p50, l.p99) } else { String::new() }
                );
            }
            last_sent = sent;
        }
    }
    let measured = m_start.elapsed();
    c.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = measured.as_secs_f64().max(1e-9);
    let sent = c.sent_events.load(Ordering::Relaxed);
    let acked = c.acked_events.load(Ordering::Relaxed);
    let bytes = c.sent_bytes.load(Ordering::Relaxed);
    let lat = hist.lock().map(|h| Latency::from_hist(&h)).unwrap_or_default();
    Ok(RunReport {
        events_sent: sent,
        events_acked: acked,
        errors: c.errors.load(Ordering::Relaxed),
        ack_timeouts: c.ack_timeouts.load(Ordering::Relaxed),
        reconnects: c.reconnects.load(Ordering::Relaxed),
        duration_s: secs,
        events_per_sec: if cfg.ack { acked as f64 / secs } else { sent as f64 / secs },
        bytes_per_sec: bytes as f64 / secs,
        bytes_sent: bytes,
        frames_sent: c.sent_frames.load(Ordering::Relaxed),
        offered_rate: cfg.rate,
        achieved_rate: sent as f64 / secs,
        ack_latency_us: lat,
        events_sent_total: c.sent_total.load(Ordering::Relaxed),
        events_acked_total: c.acked_total.load(Ordering::Relaxed),
        rate_per_sec,
        mode: format!("{:?}", cfg.mode).to_lowercase(),
        connections: cfg.connections,
        batch: cfg.batch,
        inflight: cfg.inflight,
        ack: cfg.ack,
        targets: cfg.targets.iter().map(|t| t.to_string()).collect(),
    })
}
