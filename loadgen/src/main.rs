//! `spate-loadgen`: CLI over the `spate_loadgen` library (`run` generator for Forward
//! and the other inputs' protocols, and replay,
//! `sink`, `merge` of reports).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use argh::FromArgs;
use spate_loadgen::generator::{self, IoMode, RunConfig};
use spate_loadgen::lines::{Format, Protocol};
use spate_loadgen::records::{RecordSource, SendMode};
use spate_loadgen::replay::ReplayConfig;
use spate_loadgen::report::RunReport;
use spate_loadgen::{parse_duration, sink};
use spate_protocol::encode::TimeFormat;

/// spate-loadgen: Forward protocol load generator and sink for fluentd, fluent-bit,
/// Vector and spate.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    cmd: Sub,
}

// Parsed once at start; the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Run(RunArgs),
    Sink(SinkArgs),
    Merge(MergeArgs),
}

/// merge generator reports (JSON) from several processes or machines into one, on stdout
#[derive(FromArgs)]
#[argh(subcommand, name = "merge")]
struct MergeArgs {
    /// report files written by `run --report`
    #[argh(positional)]
    reports: Vec<PathBuf>,
    /// also draw the merged run as an SVG chart
    #[argh(option)]
    report_svg: Option<PathBuf>,
}

/// generate load against one or more Forward servers (or in_http, in_tcp, in_udp,
/// in_syslog inputs with --protocol)
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// target HOST:PORT (repeatable: connections are spread over targets)
    #[argh(option)]
    target: Vec<String>,
    /// connections (default 1)
    #[argh(option, default = "1")]
    connections: u32,
    /// forward (default: fluentd's Forward protocol), http, tcp, udp or syslog
    #[argh(option, default = "Protocol::Forward")]
    protocol: Protocol,
    /// events as json, msgpack, ltsv, apache2, syslog3164 or syslog5424 (non-forward
    /// protocols; default json, syslog: syslog3164)
    #[argh(option)]
    format: Option<Format>,
    /// message, forward, packed or compressed (default packed; forward protocol)
    #[argh(option)]
    mode: Option<SendMode>,
    /// events per frame (default 1000; message mode: frames per write)
    #[argh(option, default = "1000")]
    batch: u32,
    /// r1, r2, or a file of JSON lines used as templates (default r1)
    #[argh(option, default = "RecordSource::R1")]
    record: RecordSource,
    /// sample records from this file of JSON lines (cycled; same as --record FILE)
    #[argh(option)]
    records: Option<PathBuf>,
    /// tag (default spate.loadgen)
    #[argh(option, default = "String::from(\"spate.loadgen\")")]
    tag: String,
    /// eventtime (nanoseconds, default) or int (forward protocol)
    #[argh(option)]
    time: Option<String>,
    /// open-loop rate in events/s (default: as fast as the target takes it)
    #[argh(option)]
    rate: Option<f64>,
    /// vary each connection's share of --rate by up to this fraction (default 0.1)
    #[argh(option, default = "0.1")]
    rate_jitter: f64,
    /// connections closed and reopened per second (fresh TCP, TLS and handshake)
    #[argh(option)]
    churn: Option<f64>,
    /// auto (default), threads (two per connection) or loop (epoll event loops)
    #[argh(option, default = "IoMode::Auto")]
    io: IoMode,
    /// event-loop threads with --io loop (default: one per CPU)
    #[argh(option, default = "0")]
    threads: u32,
    /// objectives checked at the end, e.g. 'ack_p99<=5ms,errors==0' (exit 3 if one fails)
    #[argh(option)]
    slo: Option<String>,
    /// draw events/s and ack latency per second as an SVG chart here
    #[argh(option)]
    report_svg: Option<PathBuf>,
    /// replay a `sink --record` file instead of generating events
    #[argh(option)]
    replay: Option<PathBuf>,
    /// replay speed factor (default 1: as recorded)
    #[argh(option, default = "1.0")]
    speed: f64,
    /// replay the recording again and again until --duration (default 10s)
    #[argh(switch, long = "loop")]
    looped: bool,
    /// replay with event times re-stamped to the time of sending
    #[argh(switch)]
    retime: bool,
    /// request an ack per frame
    #[argh(switch)]
    ack: bool,
    /// announce each frame's event count in its `size` option, as fluentd's
    /// out_forward does (forward, packed and compressed modes)
    #[argh(switch)]
    size: bool,
    /// frames in flight per connection when acking (default 8)
    #[argh(option, default = "8")]
    inflight: u32,
    /// an ack missing after this long is an error (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    ack_timeout: String,
    /// measured duration, e.g. 30s (default 10s unless --events)
    #[argh(option)]
    duration: Option<String>,
    /// events to send in the measured phase
    #[argh(option)]
    events: Option<u64>,
    /// warmup before measuring, not counted (default 0s)
    #[argh(option, default = "String::from(\"0s\")")]
    warmup: String,
    /// record field carrying the send time in ns (default _spate_ts; forward protocol)
    #[argh(option)]
    stamp_field: Option<String>,
    /// no live line on stderr
    #[argh(switch)]
    quiet: bool,
    /// write the JSON report here
    #[argh(option)]
    report: Option<PathBuf>,
    /// authenticate with this shared key (fluentd's <security> handshake)
    #[argh(option)]
    shared_key: Option<String>,
    /// username for user_auth servers (with --shared-key)
    #[argh(option, default = "String::new()")]
    username: String,
    /// password for user_auth servers (with --shared-key)
    #[argh(option, default = "String::new()")]
    password: String,
    /// hostname sent in the handshake (default spate-loadgen)
    #[argh(option, default = "String::from(\"spate-loadgen\")")]
    self_hostname: String,
    /// speak TLS (implied by the other --tls-* options)
    #[argh(switch)]
    tls: bool,
    /// CA certificate(s) (PEM) to verify the server with (default: the system bundle)
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// client certificate (PEM), for servers with client_cert_auth
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// client private key (PEM, unencrypted), with --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// do not verify the server's certificate
    #[argh(switch)]
    tls_insecure: bool,
    /// name to verify and send as SNI (default: the target's IP address)
    #[argh(option)]
    tls_server_name: Option<String>,
}

/// receive Forward traffic: ack, count, measure end-to-end latency
#[derive(FromArgs)]
#[argh(subcommand, name = "sink")]
struct SinkArgs {
    /// listen address (default 127.0.0.1:24224)
    #[argh(option, default = "String::from(\"127.0.0.1:24224\")")]
    bind: String,
    /// exit 0 once this many events arrived
    #[argh(option)]
    expect: Option<u64>,
    /// give up (exit 1) after this long, e.g. 60s
    #[argh(option)]
    timeout: Option<String>,
    /// record field carrying the send time in ns (default _spate_ts)
    #[argh(option, default = "String::from(\"_spate_ts\")")]
    stamp_field: String,
    /// count bytes only (no decoding, no acks): the loopback ceiling
    #[argh(switch)]
    raw: bool,
    /// never send acks
    #[argh(switch)]
    no_ack: bool,
    /// read send stamps in one frame in N only, drawn at random, and count the others by their size option when they carry one (default 1: all)
    #[argh(option, default = "1")]
    sample: u32,
    /// worker threads (default: one per CPU)
    #[argh(option, default = "0")]
    threads: u32,
    /// write every received frame with its arrival time to this file (for run --replay)
    #[argh(option)]
    record: Option<PathBuf>,
    /// no line per second
    #[argh(switch)]
    quiet: bool,
    /// write the JSON report here
    #[argh(option)]
    report: Option<PathBuf>,
}

fn resolve(t: &str) -> Result<SocketAddr, String> {
    t.to_socket_addrs()
        .map_err(|e| format!("--target {t}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {t}: no address"))
}

fn write_report<T: serde::Serialize>(path: &Option<PathBuf>, r: &T) -> Result<(), String> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
        std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

fn summary(r: &RunReport) {
    eprintln!("events sent     {:>14}", r.events_sent);
    eprintln!("events acked    {:>14}", r.events_acked);
    eprintln!("errors          {:>14}  (ack timeouts {})", r.errors, r.ack_timeouts);
    eprintln!("reconnects      {:>14}", r.reconnects);
    eprintln!("duration        {:>14.2} s", r.duration_s);
    eprintln!("events/s        {:>14.0}", r.events_per_sec);
    eprintln!("bytes/s         {:>14.0}", r.bytes_per_sec);
    if let Some(o) = r.offered_rate {
        eprintln!("offered/achieved {:>13.0} / {:.0} events/s", o, r.achieved_rate);
    }
    if r.ack {
        let l = r.ack_latency_us;
        eprintln!("ack latency us  p50 {} p90 {} p99 {} p99.9 {} max {}", l.p50, l.p90, l.p99, l.p999, l.max);
    }
    let c = r.connect_latency_us;
    eprintln!(
        "connects        {:>14}  (failed {}, churned {}; connect us p50 {} p99 {} max {})",
        r.connects, r.connect_failures, r.churned, c.p50, c.p99, c.max
    );
    let f = &r.fairness;
    eprintln!("per connection  {:>14}  ({} min {} p50 {} max {})", f.connections, f.counts, f.min, f.p50, f.max);
}

/// SIGINT/SIGTERM end a sink cleanly (its recording finished, its report written).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn run_cmd(a: RunArgs) -> ExitCode {
    let go = || -> Result<RunReport, String> {
        if a.target.is_empty() {
            return Err("at least one --target HOST:PORT is required".into());
        }
        let targets = a.target.iter().map(|t| resolve(t)).collect::<Result<Vec<_>, _>>()?;
        if a.protocol != Protocol::Forward {
            let forward_only = [
                (a.mode.is_some(), "--mode"),
                (a.time.is_some(), "--time"),
                (a.stamp_field.is_some(), "--stamp-field"),
                (a.replay.is_some(), "--replay"),
            ];
            if let Some((_, o)) = forward_only.iter().find(|(on, _)| *on) {
                return Err(format!("{o} goes with --protocol forward, not {}", a.protocol.name()));
            }
        }
        let time = match a.time.as_deref().unwrap_or("eventtime") {
            "eventtime" => TimeFormat::EventTime,
            "int" => TimeFormat::Integer,
            o => return Err(format!("--time {o:?}: expected eventtime or int")),
        };
        let slo = a.slo.as_deref().map(spate_loadgen::slo::parse).transpose().map_err(|e| e.to_string())?;
        if !(0.0..1.0).contains(&a.rate_jitter) {
            return Err("--rate-jitter must be at least 0 and below 1".into());
        }
        let record = match &a.records {
            Some(p) => RecordSource::File(p.clone()),
            None => a.record.clone(),
        };
        let cfg = RunConfig {
            targets,
            connections: a.connections,
            mode: a.mode.unwrap_or(SendMode::Packed),
            batch: a.batch.max(1),
            record,
            tag: a.tag.clone(),
            time,
            rate: a.rate,
            rate_jitter: a.rate_jitter,
            ack: a.ack,
            size_option: a.size,
            inflight: a.inflight.max(1),
            ack_timeout: parse_duration(&a.ack_timeout)?,
            duration: a.duration.as_deref().map(parse_duration).transpose()?,
            events: a.events,
            warmup: parse_duration(&a.warmup)?,
            stamp_field: a.stamp_field.clone().unwrap_or_else(|| "_spate_ts".into()),
            quiet: a.quiet,
            connect_timeout: Duration::from_secs(3),
            auth: a.shared_key.clone().map(|k| generator::Auth {
                self_hostname: a.self_hostname.clone(),
                shared_key: k,
                username: a.username.clone(),
                password: a.password.clone(),
            }),
            tls: if a.tls || a.tls_ca.is_some() || a.tls_cert.is_some() || a.tls_insecure || a.tls_server_name.is_some()
            {
                let ck = match (&a.tls_cert, &a.tls_key) {
                    (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                    (None, None) => None,
                    _ => return Err("--tls-cert and --tls-key go together".to_string()),
                };
                Some(spate_loadgen::tls::TlsConf::new(
                    a.tls_ca.as_deref(),
                    ck,
                    a.tls_insecure,
                    a.tls_server_name.clone(),
                )?)
            } else {
                None
            },
            churn: a.churn,
            io: a.io,
            threads: a.threads,
            protocol: a.protocol,
            format: a.format,
        };
        let mut r = match &a.replay {
            Some(file) => {
                let rc = ReplayConfig { file: file.clone(), speed: a.speed, looped: a.looped, retime: a.retime };
                generator::run_replay(cfg, rc).map_err(|e| e.to_string())?
            }
            None => {
                if a.looped || a.retime || a.speed != 1.0 {
                    return Err("--loop, --retime and --speed go with --replay FILE".into());
                }
                generator::run(cfg).map_err(|e| e.to_string())?
            }
        };
        if let Some(objs) = &slo {
            r.slo = spate_loadgen::slo::check(objs, &r);
        }
        write_report(&a.report, &r)?;
        if let Some(p) = &a.report_svg {
            let title = format!("spate-loadgen run against {}", r.targets.join(", "));
            std::fs::write(p, spate_loadgen::svg::render(&r, &title)).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(r)
    };
    match go() {
        Ok(r) => {
            summary(&r);
            let failed: Vec<_> = r.slo.iter().filter(|s| !s.ok).collect();
            for s in &failed {
                eprintln!("{}", spate_loadgen::slo::reason(s));
            }
            if !failed.is_empty() {
                ExitCode::from(3)
            } else if r.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("spate-loadgen run: {e}");
            ExitCode::from(2)
        }
    }
}

fn merge_cmd(a: MergeArgs) -> ExitCode {
    let go = || -> Result<RunReport, String> {
        if a.reports.is_empty() {
            return Err("give the report files to merge".into());
        }
        let mut rs = Vec::new();
        for p in &a.reports {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let r: RunReport = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            rs.push(r);
        }
        let m = spate_loadgen::report::merge(&rs).map_err(|e| e.to_string())?;
        if let Some(p) = &a.report_svg {
            let title = format!("spate-loadgen: {} generators merged", m.generators);
            std::fs::write(p, spate_loadgen::svg::render(&m, &title)).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(m)
    };
    match go().and_then(|m| serde_json::to_string_pretty(&m).map_err(|e| e.to_string())) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spate-loadgen merge: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    match cli.cmd {
        Sub::Run(a) => run_cmd(a),
        Sub::Merge(a) => merge_cmd(a),
        Sub::Sink(a) => {
            let bind = match resolve(&a.bind) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("spate-loadgen sink: {e}");
                    return ExitCode::from(2);
                }
            };
            let timeout = match a.timeout.as_deref().map(parse_duration).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("spate-loadgen sink: --timeout: {e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = sink::SinkConfig {
                bind,
                stamp_field: a.stamp_field.clone(),
                raw: a.raw,
                no_ack: a.no_ack,
                sample_every: a.sample,
                threads: a.threads,
                record: a.record.clone(),
            };
            let h = match sink::start(cfg) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("spate-loadgen sink: cannot listen on {bind}: {e}");
                    return ExitCode::from(2);
                }
            };
            // SAFETY: the handler only stores to an atomic.
            unsafe {
                libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
                libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            }
            eprintln!("listening on {}", h.addr());
            let start = Instant::now();
            let mut last = (0u64, 0u64);
            let mut next = start + Duration::from_secs(1);
            let ok = loop {
                if a.expect.is_some_and(|n| h.events() >= n) {
                    break true;
                }
                if timeout.is_some_and(|t| start.elapsed() >= t) || STOP.load(Ordering::Relaxed) {
                    break a.expect.is_none();
                }
                std::thread::sleep(Duration::from_millis(5));
                if Instant::now() >= next {
                    next += Duration::from_secs(1);
                    let (e, b) = (h.events(), h.bytes());
                    h.flush_record();
                    if !a.quiet {
                        let r = h.report();
                        eprintln!(
                            "[{:>3}s] received {:>10} ev/s (total {:>11}) {:>12} B/s | e2e p50 {} us p99 {} us",
                            start.elapsed().as_secs(),
                            e - last.0,
                            e,
                            b - last.1,
                            r.e2e_latency_us.p50,
                            r.e2e_latency_us.p99
                        );
                    }
                    last = (e, b);
                }
            };
            let r = h.stop();
            if let Err(e) = write_report(&a.report, &r) {
                eprintln!("spate-loadgen sink: {e}");
            }
            eprintln!(
                "events received {} ({} bytes, {} frames recorded), e2e p50 {}us p99 {}us",
                r.events_received, r.bytes_received, r.frames_recorded, r.e2e_latency_us.p50, r.e2e_latency_us.p99
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("spate-loadgen sink: timeout before {} events arrived", a.expect.unwrap_or(0));
                ExitCode::from(1)
            }
        }
    }
}
