//! `spate-loadgen run`: the generator's configuration, its two Forward I/O paths
//! (threads per connection for a few fast connections, `threaded.rs`; epoll loops for
//! fleets of thousands, `fleet.rs`), the senders for the other inputs' protocols
//! (`plain.rs`, threads), the live line, and the report. Every run ends within its
//! duration plus the ack timeout plus a second.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spate_protocol::encode::TimeFormat;

pub use crate::handshake::Auth;
use crate::lines::{Format, Protocol};
use crate::records::{templates, FrameParams, RecordSource, SendMode, Template};
use crate::report::{hist_to_string, new_count_hist, second_row, Fairness, Latency, RunReport};
use crate::stats::{clock_pair, conn_rates, raise_nofile, Shared};
use crate::tls::TlsConf;

/// How connections are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// Threads for up to 16 connections without churn, event loops otherwise.
    Auto,
    /// A writer and an ack-reader thread per connection.
    Threads,
    /// Event loops (epoll), `threads` of them, each driving a share of the connections.
    Loop,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "threads" => Ok(IoMode::Threads),
            "loop" => Ok(IoMode::Loop),
            o => Err(format!("unknown --io {o:?}; expected auto, threads or loop")),
        }
    }
}

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
    /// Each connection's share of `rate` varies by up to this fraction (0.1: ±10%).
    pub rate_jitter: f64,
    pub ack: bool,
    /// Announce each frame's event count in its `size` option (Forward and
    /// PackedForward frames), as fluentd's out_forward does.
    pub size_option: bool,
    pub inflight: u32,
    pub ack_timeout: Duration,
    pub duration: Option<Duration>,
    /// Events to send in the measured phase: exactly this many, when no duration ends
    /// the run first, each connection its share (its last frame is short).
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
    /// Connections closed and reopened per second (each waits for its acks first).
    pub churn: Option<f64>,
    pub io: IoMode,
    /// Event-loop threads with `--io loop` (0: one per CPU).
    pub threads: u32,
    /// Forward (every `mode`), or one of the other inputs' protocols (`plain.rs`).
    pub protocol: Protocol,
    /// How events are written for the non-Forward protocols (None: the protocol's
    /// default, [`Protocol::default_format`]).
    pub format: Option<Format>,
}

impl RunConfig {
    /// The format events are written in (non-Forward protocols).
    pub fn format(&self) -> Format {
        self.format.unwrap_or(self.protocol.default_format())
    }
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
            rate_jitter: 0.1,
            ack: false,
            size_option: false,
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
            churn: None,
            io: IoMode::Auto,
            threads: 0,
            protocol: Protocol::Forward,
            format: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("records: {0}")]
    Records(String),
    #[error("cannot start the event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// What every sender of a run shares.
pub(crate) struct Ctx {
    pub cfg: RunConfig,
    pub tpls: Vec<Template>,
    pub sh: Shared,
    pub start: Instant,
    pub start_wall: u64,
    /// Per-connection rates (events/s) with `--rate`.
    pub rates: Option<Vec<f64>>,
}

impl Ctx {
    pub fn frame_params(&self) -> FrameParams {
        FrameParams {
            mode: self.cfg.mode,
            tag: self.cfg.tag.as_bytes().to_vec(),
            time: self.cfg.time,
            stamp_field: self.cfg.stamp_field.as_bytes().to_vec(),
            ack: self.cfg.ack,
            size: self.cfg.size_option,
        }
    }

    pub fn rate_of(&self, slot: u32) -> Option<f64> {
        self.rates.as_ref().and_then(|r| r.get(slot as usize).copied())
    }
}

/// Whether this configuration runs on the event loops.
pub fn uses_loop(cfg: &RunConfig) -> bool {
    match cfg.io {
        IoMode::Threads => false,
        IoMode::Loop => true,
        IoMode::Auto => cfg.connections > 16 || cfg.churn.is_some(),
    }
}

/// Rejects what the non-Forward protocols cannot do, and marks HTTP runs as acked
/// (every request is confirmed by its response).
fn check_protocol(cfg: &mut RunConfig) -> Result<(), Error> {
    if cfg.protocol == Protocol::Forward {
        if cfg.format.is_some() {
            return Err(Error::Config("--format goes with --protocol http, tcp, udp or syslog".into()));
        }
        return Ok(());
    }
    let p = cfg.protocol.name();
    crate::lines::check(cfg.protocol, cfg.format()).map_err(Error::Config)?;
    let unsupported = [
        (cfg.ack, "--ack (HTTP requests are always confirmed by their response; tcp, udp and syslog have no acks)"),
        (cfg.tls.is_some(), "--tls"),
        (cfg.auth.is_some(), "--shared-key"),
        (cfg.churn.is_some(), "--churn"),
        (cfg.io == IoMode::Loop, "--io loop"),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(Error::Config(format!("--protocol {p} does not support {what}")));
    }
    cfg.io = IoMode::Threads;
    cfg.ack = cfg.protocol == Protocol::Http;
    cfg.inflight = 1;
    Ok(())
}

/// Runs the generator to completion and returns its report.
pub fn run(mut cfg: RunConfig) -> Result<RunReport, Error> {
    check_protocol(&mut cfg)?;
    if cfg.targets.is_empty() || cfg.connections == 0 {
        return Err(Error::Config("need at least one --target and one connection".into()));
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Config("--rate must be a positive number of events per second".into()));
    }
    if cfg.churn.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Config("--churn must be a positive number of connections per second".into()));
    }
    let looped = uses_loop(&cfg);
    if cfg.churn.is_some() && !looped {
        return Err(Error::Config("--churn needs --io loop (or auto)".into()));
    }
    // Each connection costs a descriptor (three with the threaded TLS bridge), plus a few
    // for the process itself.
    let per = if cfg.tls.is_some() && !looped { 3 } else { 1 };
    let want = cfg.connections as u64 * per + 64;
    let limit = raise_nofile(want);
    if limit < want {
        return Err(Error::Config(format!(
            "--connections {} needs {want} open files and this process may open {limit} (the hard limit of \
             ulimit -n): run several generators with fewer connections each and merge their reports",
            cfg.connections
        )));
    }
    let tpls = templates(&cfg.record).map_err(Error::Records)?;
    let duration = match (cfg.duration, cfg.events) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let (start, start_wall) = clock_pair();
    let sh = Shared::new(cfg.connections, start + cfg.warmup);
    // Without a warmup every event counts, from the first frame.
    sh.c.measuring.store(cfg.warmup.is_zero(), Ordering::Relaxed);
    let rates = cfg.rate.map(|r| conn_rates(r, cfg.connections, cfg.rate_jitter));
    let ctx = Arc::new(Ctx { cfg, tpls, sh, start, start_wall, rates });
    let cfg = &ctx.cfg;
    let threads: Vec<std::thread::JoinHandle<()>> = if looped {
        crate::fleet::spawn(ctx.clone())?
    } else {
        (0..cfg.connections)
            .map(|i| {
                let addr = cfg.targets[i as usize % cfg.targets.len()];
                let c2 = ctx.clone();
                if c2.cfg.protocol == Protocol::Forward {
                    std::thread::spawn(move || crate::threaded::connection(i, addr, c2))
                } else {
                    std::thread::spawn(move || crate::plain::connection(i, addr, c2))
                }
            })
            .collect()
    };
    let rows = monitor(&ctx, threads, duration);
    let io = if looped { "loop" } else { "threads" };
    Ok(build_report(&ctx, rows, io, cfg.connections as usize))
}

/// Replays a `sink --record` capture (`--replay`) and returns the run's report.
pub fn run_replay(cfg: RunConfig, rc: crate::replay::ReplayConfig) -> Result<RunReport, Error> {
    if cfg.targets.is_empty() {
        return Err(Error::Config("need at least one --target".into()));
    }
    if cfg.protocol != Protocol::Forward {
        return Err(Error::Config("--replay sends Forward recordings: it goes with --protocol forward".into()));
    }
    if cfg.events.is_some() || cfg.rate.is_some() || cfg.churn.is_some() {
        return Err(Error::Config("--replay sends the recording as it was: no --events, --rate or --churn".into()));
    }
    if !(rc.speed > 0.0 && rc.speed.is_finite()) {
        return Err(Error::Config("--speed must be a positive number".into()));
    }
    let slots = crate::replay::count_connections(&rc.file)?;
    raise_nofile(slots as u64 * 3 + 256);
    let duration = match (cfg.duration, rc.looped) {
        (Some(d), _) => Some(d),
        (None, true) => Some(Duration::from_secs(10)),
        (None, false) => None,
    };
    let (start, start_wall) = clock_pair();
    let sh = Shared::new(slots as u32, start + cfg.warmup);
    sh.c.measuring.store(cfg.warmup.is_zero(), Ordering::Relaxed);
    let ctx = Arc::new(Ctx { cfg, tpls: Vec::new(), sh, start, start_wall, rates: None });
    let c2 = ctx.clone();
    let t = std::thread::spawn(move || crate::replay::send(c2, rc));
    let rows = monitor(&ctx, vec![t], duration);
    let mut r = build_report(&ctx, rows, "replay", slots);
    r.connections = slots as u32;
    r.mode = "replay".into();
    Ok(r)
}

/// What the monitor saw: the measured time, events sent and acked per second, and how
/// long the last row lasted (a part-second at the end).
struct Rows {
    measured: Duration,
    sent: Vec<u64>,
    acked: Vec<u64>,
    last_secs: f64,
}

/// Flips to the measured phase after the warmup, prints a line per second, stops the
/// senders at the end of the duration (or when they are done) and waits for them.
fn monitor(ctx: &Arc<Ctx>, threads: Vec<std::thread::JoinHandle<()>>, duration: Option<Duration>) -> Rows {
    let (cfg, c) = (&ctx.cfg, &ctx.sh.c);
    if !cfg.warmup.is_zero() {
        std::thread::sleep(cfg.warmup.saturating_sub(ctx.start.elapsed()));
    }
    c.measuring.store(true, Ordering::Relaxed);
    let m_start = Instant::now();
    let mut rate_per_sec = Vec::new();
    let mut acked_per_sec = Vec::new();
    let (mut last_sent, mut last_acked) = (0, 0);
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
            let acked = c.acked_events.load(Ordering::Relaxed);
            rate_per_sec.push(sent - last_sent);
            acked_per_sec.push(acked - last_acked);
            if !cfg.quiet {
                live_line(ctx, rate_per_sec.len(), (sent - last_sent, sent), (acked - last_acked, acked));
            }
            (last_sent, last_acked) = (sent, acked);
        }
    }
    let measured = m_start.elapsed();
    c.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // The part-second at the end is a row too (the chart and merge see every event).
    let (sent, acked) = (c.sent_events.load(Ordering::Relaxed), c.acked_events.load(Ordering::Relaxed));
    let mut last_secs = 1.0;
    if sent > last_sent || acked > last_acked || rate_per_sec.is_empty() {
        last_secs = (measured.as_secs_f64() - rate_per_sec.len() as f64).clamp(0.0, 1.0);
        rate_per_sec.push(sent - last_sent);
        acked_per_sec.push(acked - last_acked);
    }
    Rows { measured, sent: rate_per_sec, acked: acked_per_sec, last_secs }
}

/// One line per second on stderr: each column says what it counts, rates and totals
/// side by side.
fn live_line(ctx: &Ctx, sec: usize, sent: (u64, u64), acked: (u64, u64)) {
    let (cfg, sh) = (&ctx.cfg, &ctx.sh);
    let c = &sh.c;
    let mut line = format!("[{sec:>3}s] sent {:>10} ev/s (total {:>11})", sent.0, sent.1);
    if let Some(r) = cfg.rate {
        line += &format!(" offered {r:.0} ev/s");
    }
    if cfg.ack {
        let l = sh.ack.lock().map(|h| Latency::from_hist(&h)).unwrap_or_default();
        line +=
            &format!(" | acked {:>10} ev/s (total {:>11}) | ack p50 {} us p99 {} us", acked.0, acked.1, l.p50, l.p99);
    }
    line +=
        &format!(" | errors {} reconnects {}", c.errors.load(Ordering::Relaxed), c.reconnects.load(Ordering::Relaxed));
    if cfg.churn.is_some() {
        let l = sh.connect.lock().map(|h| Latency::from_hist(&h)).unwrap_or_default();
        line += &format!(" | churned {} connect p99 {} us", c.churned.load(Ordering::Relaxed), l.p99);
    }
    eprintln!("{line}");
}

fn build_report(ctx: &Ctx, rows: Rows, io: &str, slots: usize) -> RunReport {
    let Rows { measured, sent: rate_per_sec, acked: acked_per_sec, last_secs } = rows;
    let (cfg, sh) = (&ctx.cfg, &ctx.sh);
    let c = &sh.c;
    let secs = measured.as_secs_f64().max(1e-9);
    let sent = c.sent_events.load(Ordering::Relaxed);
    let acked = c.acked_events.load(Ordering::Relaxed);
    let bytes = c.sent_bytes.load(Ordering::Relaxed);
    let ack_h = sh.ack.lock().map(|h| h.clone()).unwrap_or_else(|_| crate::report::new_hist());
    let conn_h = sh.connect.lock().map(|h| h.clone()).unwrap_or_else(|_| crate::report::new_hist());
    let mut fair = new_count_hist();
    for a in sh.per_conn.iter().take(slots) {
        let _ = fair.record(a.load(Ordering::Relaxed));
    }
    let counts = if cfg.ack { "events_acked" } else { "events_sent" };
    let seconds = sh.seconds.lock().map(|s| s.clone()).unwrap_or_default();
    let per_second = rate_per_sec
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let empty = crate::report::new_hist();
            let secs = if i + 1 == rate_per_sec.len() { last_secs } else { 1.0 };
            second_row(secs, s, acked_per_sec.get(i).copied().unwrap_or(0), seconds.get(i).unwrap_or(&empty))
        })
        .collect();
    RunReport {
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
        ack_latency_us: Latency::from_hist(&ack_h),
        ack_latency_hdr: hist_to_string(&ack_h),
        connects: c.connects.load(Ordering::Relaxed),
        connect_failures: c.connect_failures.load(Ordering::Relaxed),
        connect_latency_us: Latency::from_hist(&conn_h),
        connect_latency_hdr: hist_to_string(&conn_h),
        churned: c.churned.load(Ordering::Relaxed),
        fairness: Fairness::from_hist(&fair, counts),
        fairness_hdr: hist_to_string(&fair),
        events_sent_total: c.sent_total.load(Ordering::Relaxed),
        events_acked_total: c.acked_total.load(Ordering::Relaxed),
        rate_per_sec,
        per_second,
        mode: match cfg.protocol {
            Protocol::Forward => format!("{:?}", cfg.mode).to_lowercase(),
            p => format!("{}/{}", p.name(), cfg.format().name()),
        },
        connections: cfg.connections,
        batch: cfg.batch,
        inflight: cfg.inflight,
        ack: cfg.ack,
        targets: cfg.targets.iter().map(|t| t.to_string()).collect(),
        io: io.into(),
        generators: 1,
        slo: Vec::new(),
    }
}
