//! `spate-bench`: runs the scenarios of bench/README.md side by side against spate, Ruby
//! fluentd and fluent-bit (whichever are found), pinned system-under-test on one CPU and
//! the load generator on the other, and writes results JSON; `report` regenerates
//! `results/README.md` and SVG charts; `compare` guards against regressions.

mod bulk_sink;
mod compare;
mod fleet;
mod inputs;
mod kafka;
mod procstat;
mod relay;
mod report;
mod systems;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde_json::{json, Value};
use spate_testkit::forward::loadgen_events;
use spate_testkit::free_port;
use spate_testkit::net::wait_listening;
use spate_testkit::process::terminate;
use systems::{Kind, Pipeline, System};

/// spate-bench: side-by-side benchmarks of spate, fluentd and fluent-bit.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Run(RunArgs),
    Report(ReportArgs),
    Compare(CompareArgs),
}

/// run scenarios and write a results JSON file
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// scenario: S1..S12 (S8 in_http, S9 syslog, S10 kafka, S11 1,000 connections), S1M
    /// (S1 with every metric source configured and scraped; spate only) or all (default
    /// all: S1..S12)
    #[argh(option, default = "String::from(\"all\")")]
    scenario: String,
    /// systems, comma-separated (default spate,fluentd,fluent-bit); `fluentd:VAR` takes
    /// the binary from $VAR (two fluentd versions in one run)
    #[argh(option, default = "String::from(\"spate,fluentd,fluent-bit\")")]
    systems: String,
    /// short runs (2 s measured) for smoke tests
    #[argh(switch)]
    quick: bool,
    /// runs per scenario and system; the median is reported (default 1)
    #[argh(option, default = "1")]
    runs: usize,
    /// output file (default results/<date>-<scenario>.json)
    #[argh(option)]
    out: Option<PathBuf>,
    /// measured seconds per run (default 10, quick 2)
    #[argh(option)]
    duration: Option<f64>,
}

/// regenerate results/README.md and the SVG charts from results/*.json
#[derive(FromArgs)]
#[argh(subcommand, name = "report")]
struct ReportArgs {
    /// results directory (default results)
    #[argh(option, default = "PathBuf::from(\"results\")")]
    dir: PathBuf,
}

/// compare a new results file against a baseline; non-zero exit on regression
#[derive(FromArgs)]
#[argh(subcommand, name = "compare")]
struct CompareArgs {
    /// baseline results JSON
    #[argh(positional)]
    baseline: PathBuf,
    /// new results JSON
    #[argh(positional)]
    new: PathBuf,
    /// allowed regression, e.g. 10%
    #[argh(option, default = "String::from(\"10%\")")]
    tolerance: String,
}

fn main() {
    // Remember the CPUs we may use before anything pins a thread.
    let _ = initial_cpus();
    let cli: Cli = argh::from_env();
    let code = match cli.cmd {
        Sub::Run(a) => run(a),
        Sub::Report(a) => match report::write(&a.dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("spate-bench report: {e}");
                1
            }
        },
        Sub::Compare(a) => compare::compare(&a.baseline, &a.new, &a.tolerance),
    };
    std::process::exit(code);
}

/// The CPUs this process could use when it started (before any pinning of our own).
fn initial_cpus() -> &'static Vec<usize> {
    static CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CPUS.get_or_init(|| {
        // SAFETY: sched_getaffinity fills the zeroed set we own.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the size passed is `set`'s own; the kernel writes at most that much.
        let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
        let v: Vec<usize> = if ok {
            // SAFETY: c < CPU_SETSIZE, inside the set.
            (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
        } else {
            vec![]
        };
        if v.is_empty() {
            vec![0]
        } else {
            v
        }
    })
}

/// CPU for the system under test and for the load generator.
fn cpus() -> (Option<usize>, Option<usize>) {
    let c = initial_cpus();
    if c.len() >= 2 {
        (Some(c[1]), Some(c[0]))
    } else {
        (None, None)
    }
}

fn pinned(cpu: Option<usize>, cmd: &Path) -> Command {
    match cpu {
        Some(c) if Path::new("/usr/bin/taskset").exists() => {
            let mut k = Command::new("/usr/bin/taskset");
            k.arg("-c").arg(c.to_string()).arg(cmd);
            k
        }
        _ => Command::new(cmd),
    }
}

/// SIGTERM and up to 30 s for the exit (a SIGKILL after that).
fn stop(child: &mut Child) {
    let _ = terminate(child, Duration::from_secs(30));
}

/// Load-generator settings of a scenario.
#[derive(Debug, Clone)]
struct Gen {
    mode: &'static str,
    connections: u32,
    inflight: u32,
    batch: u32,
    ack: bool,
    rate: Option<u64>,
    /// Frames announce their event count (`size` option), as out_forward's do.
    size: bool,
}

impl Gen {
    fn s1() -> Gen {
        Gen { mode: "packed", connections: 4, inflight: 8, batch: 1000, ack: true, rate: None, size: false }
    }
    fn json(&self) -> Value {
        json!({"mode": self.mode, "connections": self.connections, "inflight": self.inflight, "batch": self.batch, "ack": self.ack, "rate": self.rate, "size_option": self.size, "record": "r1", "time": "eventtime"})
    }
}

fn loadgen_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SPATE_LOADGEN") {
        return Ok(PathBuf::from(p));
    }
    systems::sibling("spate-loadgen")
        .ok_or_else(|| "spate-loadgen not found next to spate-bench (cargo build --release -p spate-loadgen)".into())
}

/// Runs the generator against `port`; returns its JSON report.
fn drive(port: u16, g: &Gen, warmup: f64, duration: f64, dir: &Path) -> Result<Value, String> {
    let bin = loadgen_bin()?;
    let report = dir.join(format!("gen-{}.json", free_port()));
    let mut c = pinned(cpus().1, &bin);
    c.arg("run")
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--connections", &g.connections.to_string()])
        .args(inputs::gen_args(g))
        .args(["--batch", &g.batch.to_string()])
        .args(["--record", "r1"])
        .args(["--duration", &format!("{duration}s")])
        .args(["--warmup", &format!("{warmup}s")])
        .args(["--report", &report.display().to_string()])
        .arg("--quiet");
    if let Some(r) = g.rate {
        c.args(["--rate", &r.to_string()]);
    }
    if g.size {
        c.arg("--size");
    }
    let o = c.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| format!("spate-loadgen: {e}"))?;
    let text = std::fs::read_to_string(&report)
        .map_err(|e| format!("spate-loadgen wrote no report ({e}): {}", String::from_utf8_lossy(&o.stderr)))?;
    serde_json::from_str(&text).map_err(|e| format!("spate-loadgen report: {e}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Pins the calling thread (and the threads it starts from now on) to `cpu`, or lets it
/// run anywhere with `None`.
fn pin_current(cpu: Option<usize>) {
    // SAFETY: plain libc calls on a zeroed cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                for &c in initial_cpus() {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts a spate-loadgen sink whose threads run on `cpu`.
fn start_sink(cpu: Option<usize>, raw: bool) -> Result<spate_loadgen::sink::SinkHandle, String> {
    pin_current(cpu);
    // Stamps are read in one frame of 8: the histogram stays representative and the sink
    // stays faster than what it measures.
    let cfg = spate_loadgen::sink::SinkConfig { sample_every: 8, raw, ..Default::default() };
    let s = spate_loadgen::sink::start(cfg).map_err(|e| e.to_string());
    pin_current(None);
    s
}

struct Ctx {
    warmup: f64,
    duration: f64,
    quick: bool,
    dir: PathBuf,
}

/// One measured run of one scenario on one system.
fn run_once(sys: &System, sc: &str, pipeline_kind: &str, g: &Gen, ctx: &Ctx) -> Result<Value, String> {
    let port = free_port();
    // The relay sink shares the load generator's CPU; the system under test has its own.
    let relay = pipeline_kind == "relay" || pipeline_kind == "relay2" || pipeline_kind == "durable";
    let sink = if relay { Some(start_sink(cpus().1, false)?) } else { None };
    let bulk = if pipeline_kind == "elasticsearch" {
        pin_current(cpus().1);
        let b = bulk_sink::BulkSink::start().map_err(|e| e.to_string());
        pin_current(None);
        Some(b?)
    } else {
        None
    };
    let broker = if pipeline_kind == "kafka" {
        if let Some(why) = kafka::unsupported(sys.kind, &sys.cmd) {
            return Err(why);
        }
        Some(std::sync::Arc::new(kafka::Broker::start(&ctx.dir, cpus().1)?))
    } else {
        None
    };
    let pipeline = match (pipeline_kind, &sink) {
        ("grep", _) => Pipeline::GrepNull,
        ("kafka", _) => Pipeline::Kafka { broker_port: broker.as_ref().map_or(0, |b| b.port) },
        ("null-metrics", _) => Pipeline::NullMetrics { monitor_port: free_port(), prometheus_port: free_port() },
        ("elasticsearch", _) => Pipeline::Elasticsearch { bulk_port: bulk.as_ref().map_or(0, |b| b.addr.port()) },
        ("relay" | "relay2", Some(s)) => Pipeline::Relay { sink_port: s.addr().port() },
        ("durable", Some(s)) => Pipeline::DurableRelay { sink_port: s.addr().port() },
        _ => Pipeline::Null,
    };
    let dir = ctx.dir.join(format!("{}-{}-{}", sc, sys.kind.name(), port));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let args = inputs::config(sys.kind, pipeline_kind, port, &dir)
        .unwrap_or_else(|| systems::config(sys.kind, pipeline, port, &dir))
        .map_err(|e| e.to_string())?;
    if pipeline_kind == "relay2" {
        relay::two_workers(sys.kind, &dir).map_err(|e| e.to_string())?;
    }
    if pipeline_kind == "kafka" && sys.kind == Kind::FluentBit {
        kafka::bound_fluent_bit(&dir, port).map_err(|e| e.to_string())?;
    }
    let log = std::fs::File::create(dir.join("system.log")).map_err(|e| e.to_string())?;
    let mut cmd = pinned(cpus().0, &sys.cmd);
    // fluentd finds out_kafka2 (fluent-plugin-kafka + ruby-kafka) on RUBYLIB (peers/README).
    if let (Kind::Fluentd, Some(extra)) = (sys.kind, std::env::var_os("FLUENTD_PLUGIN_RUBYLIB")) {
        let mut v = std::env::var_os("RUBYLIB").unwrap_or_default();
        if !v.is_empty() {
            v.push(":");
        }
        v.push(extra);
        cmd.env("RUBYLIB", v);
    }
    let mut child = cmd
        .args(&args)
        // fluentd writes its config errors to stdout: keep them for the failure message.
        .stdout(log.try_clone().map_or_else(|_| Stdio::null(), Stdio::from))
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", sys.cmd.display()))?;
    let pid = child.id();
    if let Err(e) = wait_listening(port, &mut child, Duration::from_secs(90)) {
        stop(&mut child);
        let log = std::fs::read_to_string(dir.join("system.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        return Err(format!("{e}; log: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | ")));
    }
    // Let fluentd finish booting its worker before measuring.
    std::thread::sleep(Duration::from_millis(if sys.kind == Kind::Fluentd { 2000 } else { 300 }));
    let mut rss_idle = None;
    if sc == "S6" {
        std::thread::sleep(Duration::from_secs(if ctx.quick { 3 } else { 10 }));
        rss_idle = Some(procstat::rss_kb(pid));
    }
    // S1M: scrape both metrics endpoints every second while the load runs, as Prometheus
    // and a monitor_agent consumer would (the scraper shares the generator's CPU).
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let scraper = match pipeline {
        Pipeline::NullMetrics { monitor_port, prometheus_port } => {
            let run = scraping.clone();
            let cpu = cpus().1;
            Some(std::thread::spawn(move || {
                pin_current(cpu);
                let mut n = 0u64;
                while run.load(std::sync::atomic::Ordering::Relaxed) {
                    for (p, path) in [(prometheus_port, "/metrics"), (monitor_port, "/api/plugins.json")] {
                        if http_get(p, path).is_some_and(|b| !b.is_empty()) {
                            n += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                n
            }))
        }
        _ => None,
    };
    let cpu0 = procstat::cpu_seconds(pid);
    let sampler = broker.clone().map(kafka::Sampler::start);
    let t0 = Instant::now();
    let gen = drive(port, g, ctx.warmup, ctx.duration, &ctx.dir);
    let cpu1 = procstat::cpu_seconds(pid);
    // Delivered to the broker per second over the measured period (after the warmup).
    let measured_from = t0 + Duration::from_secs_f64(ctx.warmup);
    let delivered_eps =
        sampler.and_then(|s| s.rate(measured_from, measured_from + Duration::from_secs_f64(ctx.duration)));
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.and_then(|t| t.join().ok());
    let rss_peak = procstat::hwm_kb(pid);
    let rss_end = procstat::rss_kb(pid);
    let gen = match gen {
        Ok(g) => g,
        Err(e) => {
            stop(&mut child);
            return Err(e);
        }
    };
    let sent = f(&gen, "events_sent") as u64;
    let acked = f(&gen, "events_acked") as u64;
    let mut received = None;
    let mut bulk_requests = None;
    let mut e2e = Value::Null;
    // The sink counts frames by their `size` option; sampled frames check it.
    let mut size_mismatches = 0;
    if let Some(s) = sink {
        // Everything acked must reach the sink (flush 100 ms; allow slow systems time).
        // Counted by tag: fluentd also routes its own logs (fluent.*) to `**`.
        let ours = loadgen_events;
        let want = f(&gen, "events_sent_total") as u64;
        let end = Instant::now() + Duration::from_secs(60);
        while ours(&s) < want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let a late duplicate show up, then take the final count.
        std::thread::sleep(Duration::from_millis(600));
        received = Some(ours(&s));
        stop(&mut child);
        let rep = s.stop();
        size_mismatches = rep.size_mismatches;
        e2e = serde_json::to_value(rep.e2e_latency_us).unwrap_or(Value::Null);
    } else if let Some(k) = broker {
        // Every acked event must be stored by the broker: its high watermarks count them.
        let want = f(&gen, "events_acked_total") as u64;
        let end = Instant::now() + Duration::from_secs(120);
        while k.count().unwrap_or(0) < want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(600));
        // A broker that does not answer counts as nothing delivered: never a free pass.
        received = Some(k.count().unwrap_or(0));
        stop(&mut child);
        drop(k);
    } else if let Some(b) = &bulk {
        // Every acked event must reach the bulk endpoint as a document.
        let want = f(&gen, "events_acked_total") as u64;
        let end = Instant::now() + Duration::from_secs(60);
        while b.docs() < want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(600));
        received = Some(b.docs());
        bulk_requests = Some(b.requests.load(std::sync::atomic::Ordering::Relaxed));
        stop(&mut child);
    } else {
        stop(&mut child);
    }
    // Events are counted from the warmup's end by the generator; the server's CPU covers
    // warmup and measurement, so normalise CPU per event over everything sent.
    let mut total_sent = f(&gen, "events_sent_total").max(sent as f64);
    if pipeline_kind == "kafka" {
        // Most of S10's frames are refused while the broker is the bottleneck: its CPU
        // cost is per event delivered to the broker.
        total_sent = received.unwrap_or(0) as f64;
    }
    let cpu = (cpu1 - cpu0).max(0.0);
    // S10's headline is what reached the broker, not what the system took in.
    let eps = delivered_eps.unwrap_or_else(|| f(&gen, "events_per_sec"));
    // What must arrive: every acked event (warmup included, the sink sees it too), or
    // with no acks every event sent.
    let must_arrive = if g.ack { f(&gen, "events_acked_total") as u64 } else { f(&gen, "events_sent_total") as u64 };
    let lost = match received {
        Some(r) => must_arrive.saturating_sub(r) as i64,
        // forward -> null: with acks, an acked event was accepted by the server; an
        // unacked one was refused (the client would resend), so nothing is lost.
        None if g.ack => 0,
        None => -1,
    };
    let errors = f(&gen, "errors") as u64;
    let mut status = if size_mismatches > 0 {
        format!("invalid: {size_mismatches} frames' size option disagreed with their entries or was missing (the sink's counts are not reliable)")
    } else if lost > 0 {
        format!("invalid: lost {lost} acked events")
    } else if lost < 0 {
        "ok (loss not verifiable: no acks and no sink)".into()
    } else if errors > 0 {
        format!("ok ({errors} frames refused or unacked, resendable; nothing acked was lost)")
    } else {
        "ok".into()
    };
    if let Some(note) = fleet::rate_note(g, f(&gen, "events_per_sec")) {
        status.push_str(&note);
    }
    Ok(json!({
        "scenario": sc,
        "system": sys.kind.name(),
        "version": sys.version,
        "settings": sys.settings,
        "status": status,
        "params": g.json(),
        "pipeline": pipeline_kind,
        "events_per_sec": eps,
        "ingest_events_per_sec": f(&gen, "events_per_sec"),
        "bytes_per_sec": f(&gen, "bytes_per_sec"),
        "server_cpu_seconds": cpu,
        "events_per_cpu_second": if cpu > 0.0 { total_sent / cpu } else { 0.0 },
        "cpu_seconds_per_million_events": if total_sent > 0.0 { cpu / total_sent * 1e6 } else { 0.0 },
        "rss_idle_kb": rss_idle,
        "rss_peak_kb": rss_peak,
        "rss_end_kb": rss_end,
        "ack_latency_us": gen.get("ack_latency_us").cloned().unwrap_or(Value::Null),
        "e2e_latency_us": e2e,
        "bulk_requests": bulk_requests,
        "events_sent": sent,
        "events_acked": acked,
        "events_received": received,
        "generator_errors": errors,
        "offered_rate": gen.get("offered_rate").cloned().unwrap_or(Value::Null),
        "metric_scrapes": scrapes,
        "generator": gen,
    }))
}

/// One HTTP GET on loopback (the S1M scraper); the body, if the answer was 200.
fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    out.starts_with(b"HTTP/1.1 200").then(|| out[end + 4..].to_vec())
}

/// Generator -> in-process sink over loopback: the measuring tools' own ceiling.
fn ceiling(ctx: &Ctx) -> Value {
    // The sink takes the CPU the system under test gets in the scenarios.
    let s = match start_sink(cpus().0, false) {
        Ok(s) => s,
        Err(e) => return json!({"error": e}),
    };
    let r = drive(s.addr().port(), &Gen::s1(), ctx.warmup, ctx.duration, &ctx.dir);
    let _ = s.stop();
    // Loopback ceiling: one connection, no acks, into a sink that only counts bytes.
    let raw = start_sink(cpus().0, true).and_then(|s| {
        let g = Gen { connections: 1, ack: false, ..Gen::s1() };
        let r = drive(s.addr().port(), &g, ctx.warmup, ctx.duration, &ctx.dir);
        let _ = s.stop();
        r
    });
    let memcpy = memcpy_bandwidth();
    let loopback = raw.as_ref().map_or(0.0, |g| f(g, "bytes_per_sec"));
    match r {
        Ok(g) => {
            json!({"gen_to_sink_events_per_sec": f(&g, "events_per_sec"), "gen_to_sink_bytes_per_sec": f(&g, "bytes_per_sec"), "loopback_one_connection_bytes_per_sec": loopback, "memcpy_bytes_per_sec": memcpy, "params": Gen::s1().json()})
        }
        Err(e) => {
            json!({"error": e, "loopback_one_connection_bytes_per_sec": loopback, "memcpy_bytes_per_sec": memcpy})
        }
    }
}

fn memcpy_bandwidth() -> f64 {
    let n = 64 << 20;
    let src = vec![7u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best
}

fn run(a: RunArgs) -> i32 {
    let all = ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12"];
    let scenarios: Vec<&str> =
        if a.scenario == "all" { all.to_vec() } else { a.scenario.split(',').map(str::trim).collect() };
    for s in &scenarios {
        if !all.contains(s) && *s != "S1M" {
            eprintln!("spate-bench: unknown scenario {s:?}; expected S1..S12, S1M or all");
            return 2;
        }
    }
    // `fluentd:VAR` is fluentd found at $VAR (e.g. `fluentd:FLUENTD_118` next to
    // `fluentd`: two versions side by side in one run).
    let mut kinds: Vec<(Kind, Option<String>)> = Vec::new();
    for s in a.systems.split(',') {
        let (name, var) = match s.trim().split_once(':') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (s.trim(), None),
        };
        match Kind::parse(name) {
            Some(k) => kinds.push((k, var)),
            None => {
                eprintln!("spate-bench: unknown system {s:?}; expected spate, fluentd, fluent-bit (each optionally :ENV_VAR naming its binary)");
                return 2;
            }
        }
    }
    // S11 opens 1,000 connections: the systems (our children) inherit the raised limit.
    let _ = spate_loadgen::stats::raise_nofile(16_384);
    let duration = a.duration.unwrap_or(if a.quick { 2.0 } else { 10.0 });
    let tmp = std::env::temp_dir().join(format!("spate-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&tmp);
    let ctx = Ctx { warmup: if a.quick { 0.5 } else { 2.0 }, duration, quick: a.quick, dir: tmp.clone() };
    let systems: Vec<(Kind, Result<System, String>)> =
        kinds.iter().map(|(k, var)| (*k, systems::find(*k, var.as_deref()))).collect();
    for (k, s) in &systems {
        match s {
            Ok(s) => eprintln!("{}: {} ({})", k.name(), s.version, s.cmd.display()),
            Err(e) => eprintln!("{}: {e}", k.name()),
        }
    }
    eprintln!("measuring ceilings (generator -> sink, memcpy)...");
    let mut ceil = ceiling(&ctx);
    if scenarios.contains(&"S11") {
        eprintln!("measuring S11's generator ceiling (1,000 connections into the sink)...");
        let c = fleet::gen_ceiling(&ctx);
        if let Some(o) = ceil.as_object_mut() {
            o.insert("fleet_gen_to_sink".into(), c);
        }
    }
    if scenarios.contains(&"S4") {
        eprintln!("measuring the sink's ceiling with 1, 2 and 8 connections...");
        let (by, capacity) = relay::sink_ceilings(&ctx);
        if let Some(o) = ceil.as_object_mut() {
            o.insert("sink_by_connections".into(), by);
            o.insert("sink_capacity_by_connections".into(), capacity);
        }
    }
    eprintln!("ceilings: {ceil}");
    let mut results = Vec::new();
    let mut s4_max: Vec<f64> = Vec::new();
    for sc in &scenarios {
        let (pipeline, g) = match *sc {
            "S1" => ("null", Gen::s1()),
            "S1M" => ("null-metrics", Gen::s1()),
            // One event per frame; the generator writes 64 frames per syscall.
            "S2" => (
                "null",
                Gen { mode: "message", connections: 16, inflight: 1, batch: 64, ack: false, rate: None, size: false },
            ),
            "S3" => ("grep", Gen::s1()),
            "S4" => ("relay", Gen::s1()),
            "S5" => ("durable", Gen::s1()),
            "S6" => ("relay", Gen::s1()),
            // forward -> out_elasticsearch -> a bulk endpoint, S1's load.
            "S12" => ("elasticsearch", Gen::s1()),
            "S8" => inputs::s8(),
            "S9" => inputs::s9(),
            // forward -> out_kafka2 (acks=all) -> tansu, S1's load; delivered = broker's count.
            "S10" => ("kafka", Gen::s1()),
            // 1,000 Message-mode connections with acks at a fixed 200k events/s in total
            // (200 events/s each); the generator's event-loop path drives them.
            "S11" => ("null", fleet::s11()),
            "S7" => (
                "null",
                Gen {
                    mode: "packed",
                    connections: 4,
                    inflight: 8,
                    batch: 100,
                    ack: true,
                    rate: Some(50_000),
                    size: false,
                },
            ),
            _ => continue,
        };
        let mut phases = vec![(sc.to_string(), g.clone(), pipeline)];
        if *sc == "S4" || *sc == "S5" {
            phases.push((format!("{sc}-fixed"), g.clone(), pipeline));
            s4_max.clear();
        }
        if *sc == "S4" {
            // The relay with two sink connections (two workers on the same CPU; relay.rs).
            phases.push(("S4-multi".to_string(), g.clone(), "relay2"));
        }
        for (name, mut g, pipeline) in phases {
            if name.ends_with("-fixed") {
                let slowest = s4_max.iter().cloned().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
                if slowest == f64::MAX {
                    continue;
                }
                g.rate = Some((slowest * 0.5) as u64);
            }
            for (k, s) in &systems {
                if name == "S1M" && *k != Kind::Spate {
                    results.push(json!({"scenario": name, "system": k.name(), "status": "not applicable (spate's metric sources)"}));
                    continue;
                }
                let sys = match s {
                    Ok(s) => s,
                    Err(e) => {
                        results.push(json!({"scenario": name, "system": k.name(), "status": e}));
                        continue;
                    }
                };
                let mut runs = Vec::new();
                for i in 0..a.runs.max(1) {
                    eprintln!("{name} {} run {}/{}...", k.name(), i + 1, a.runs.max(1));
                    match run_once(sys, &name, pipeline, &g, &ctx) {
                        Ok(v) => {
                            eprintln!("  {} events/s, status {}", v["events_per_sec"], v["status"]);
                            runs.push(v)
                        }
                        Err(e) => {
                            eprintln!("  failed: {e}");
                            let status = if e.starts_with("skipped") { e } else { format!("failed: {e}") };
                            runs.push(
                                json!({"scenario": name, "system": k.name(), "version": sys.version, "status": status}),
                            );
                        }
                    }
                }
                let eps: Vec<f64> = runs.iter().map(|r| f(r, "events_per_sec")).collect();
                let med = median(eps.clone());
                let mut chosen = runs
                    .iter()
                    .min_by(|x, y| {
                        (f(x, "events_per_sec") - med).abs().total_cmp(&(f(y, "events_per_sec") - med).abs())
                    })
                    .cloned()
                    .unwrap_or(Value::Null);
                if let Some(o) = chosen.as_object_mut() {
                    o.insert("runs".into(), json!(runs.len()));
                    o.insert("events_per_sec_runs".into(), json!(eps));
                }
                if name == "S4" || name == "S5" {
                    s4_max.push(med);
                }
                results.push(chosen);
            }
        }
    }
    let date = chrono_date();
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "results/{date}-{}.json",
            if a.scenario == "all" { "all".to_string() } else { a.scenario.replace(',', "-") }
        ))
    });
    let doc = json!({
        "date": date,
        "timestamp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": procstat::machine(),
        "pinning": match cpus() { (Some(s), Some(g)) => format!("system under test on CPU {s}, load generator and sink on CPU {g} (taskset)"), _ => "none (single CPU)".into() },
        "quick": a.quick,
        "warmup_s": ctx.warmup,
        "duration_s": ctx.duration,
        "sink_headroom": relay::headroom(&ceil, &results),
        "ceilings": ceil,
        "results": results,
    });
    if let Some(p) = out.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    if let Err(e) = std::fs::write(&out, text + "\n") {
        eprintln!("spate-bench: cannot write {}: {e}", out.display());
        return 1;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("wrote {}", out.display());
    let lost = doc["results"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|x| x["status"].as_str().is_some_and(|s| s.starts_with("invalid"))).count());
    if lost > 0 {
        eprintln!("spate-bench: {lost} run(s) lost events or had generator errors");
        return 1;
    }
    0
}

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
fn chrono_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}
