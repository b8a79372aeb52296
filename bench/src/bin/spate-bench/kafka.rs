//! S10's Kafka side: a tansu broker (a Kafka-protocol broker from crates.io, sqlite store:
//! its memory engine loses messages) started per run on the load generator's CPU with a
//! one-partition topic, each system's out_kafka2 / `out_kafka` config (acks=all), and
//! the delivered count read from the broker itself: the sum of the topic's high
//! watermarks (rdkafka `fetch_watermarks`; Kafka gives every record its own offset), so
//! what S10 reports as delivered is what the broker stored, not what a system says it sent.
//! A sampler thread reads the count while the generator runs, so the delivered rate of
//! the measured period is known even when the systems' buffers absorb the ingest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use spate_testkit::free_port;
use spate_testkit::net::wait_listening;

pub const TOPIC: &str = "spate-bench";
const PARTITIONS: i32 = 1;

/// Where the tansu binary is: `$SPATE_TANSU` (as the engine's tests and `.ci/run`), the
/// `.ci/run` cache, or `PATH`.
pub fn tansu_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SPATE_TANSU") {
        return Ok(PathBuf::from(p));
    }
    if let Some(h) = std::env::var_os("HOME") {
        let p = Path::new(&h).join(".cache/spate-ci/tansu/bin/tansu");
        if p.is_file() {
            return Ok(p);
        }
    }
    spate_testkit::process::on_path("tansu").ok_or_else(|| {
        "skipped: tansu not found: set $SPATE_TANSU (cargo install --locked tansu --version '^0.6' --features dynostore,libsql)"
            .to_string()
    })
}

/// A running broker with the bench topic.
pub struct Broker {
    child: Child,
    pub port: u16,
    consumer: BaseConsumer,
}

impl Broker {
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Broker, String> {
        let bin = tansu_bin()?;
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let dir = dir.join(format!("tansu-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("tansu.log")).map_err(|e| e.to_string())?;
        // tansu 0.6 takes the sqlite path relative to its working directory.
        let mut child = crate::pinned(cpu, &bin)
            .current_dir(&dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        if let Err(e) = wait_listening(port, &mut child, Duration::from_secs(30)) {
            crate::stop(&mut child);
            return Err(format!("tansu: {e}"));
        }
        let o = Command::new(&bin)
            .args(["topic", "create", TOPIC, "--broker", &url, "--partitions", &PARTITIONS.to_string()])
            .output()
            .map_err(|e| e.to_string());
        let created = match o {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("tansu topic create: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(format!("tansu topic create: {e}")),
        };
        let consumer = created.and_then(|()| {
            ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{port}"))
                .set("group.id", "spate-bench-watermarks")
                .set("log_level", "3")
                .create::<BaseConsumer>()
                .map_err(|e| format!("rdkafka: {e}"))
        });
        match consumer {
            Ok(consumer) => Ok(Broker { child, port, consumer }),
            Err(e) => {
                crate::stop(&mut child);
                Err(e)
            }
        }
    }

    /// Records stored in the topic (sum of high minus low watermarks), or None when the
    /// broker did not answer.
    pub fn count(&self) -> Option<u64> {
        let mut n = 0u64;
        for p in 0..PARTITIONS {
            let (lo, hi) = self.consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)).ok()?;
            n += (hi - lo).max(0) as u64;
        }
        Some(n)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        crate::stop(&mut self.child);
    }
}

/// Reads the broker's count every 100 ms while the generator runs.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(broker: Arc<Broker>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(n) = broker.count() {
                    if let Ok(mut v) = v.lock() {
                        v.push((Instant::now(), n));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler { stop, samples, thread: Some(thread) }
    }

    /// Stops sampling; returns the delivered events/s between `from` and `to` (linear
    /// interpolation between the samples around each instant).
    pub fn rate(mut self, from: Instant, to: Instant) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let v = self.samples.lock().ok()?.clone();
        let at = |t: Instant| -> Option<f64> {
            let after = v.iter().position(|s| s.0 >= t)?;
            if after == 0 {
                return Some(v[0].1 as f64);
            }
            let (t0, n0) = v[after - 1];
            let (t1, n1) = v[after];
            let span = (t1 - t0).as_secs_f64();
            let x = if span > 0.0 { (t - t0).as_secs_f64() / span } else { 1.0 };
            Some(n0 as f64 + (n1 as f64 - n0 as f64) * x)
        };
        let secs = (to - from).as_secs_f64();
        (secs > 0.0).then_some(())?;
        Some((at(to)? - at(from)?) / secs)
    }
}

/// The `<match>` for spate and fluentd (fluent-plugin-kafka's out_kafka2): acks=all,
/// JSON records, a bounded buffer so a slow broker pushes back instead of the buffer
/// absorbing the whole run. fluentd's own log events (fluent.*) are dropped.
pub fn fluent_match(broker_port: u16) -> String {
    format!(
        "<match fluent.**>\n  @type null\n</match>\n<match **>\n  @type kafka2\n  brokers 127.0.0.1:{broker_port}\n  default_topic {TOPIC}\n  required_acks -1\n  <format>\n    @type json\n  </format>\n  <buffer>\n    flush_interval 0.1s\n    chunk_limit_size 2m\n    total_limit_size 16m\n  </buffer>\n</match>\n"
    )
}

/// fluent-bit's `out_kafka` (librdkafka), acks=all, JSON.
pub fn fluent_bit_output(broker_port: u16) -> String {
    format!(
        "[OUTPUT]\n    Name kafka\n    Match *\n    Brokers 127.0.0.1:{broker_port}\n    Topics {TOPIC}\n    Format json\n    rdkafka.request.required.acks -1\n"
    )
}

/// Bounds fluent-bit's input buffer as the others' `total_limit_size` is bounded
/// (`Mem_Buf_Limit 16M` pauses the forward input), so that all three push back on the
/// generator when the broker is slower than the ingest, instead of buffering the run.
pub fn bound_fluent_bit(dir: &Path, port: u16) -> std::io::Result<()> {
    let p = dir.join("fluent-bit.conf");
    let c = std::fs::read_to_string(&p)?;
    let at = format!("    Port {port}\n");
    std::fs::write(&p, c.replacen(&at, &format!("{at}    Mem_Buf_Limit 16M\n"), 1))
}

/// Why a system cannot run S10, if it cannot: fluent-bit built without `out_kafka`.
pub fn unsupported(kind: crate::systems::Kind, cmd: &Path) -> Option<String> {
    if kind != crate::systems::Kind::FluentBit {
        return None;
    }
    let o = Command::new(cmd).args(["-o", "kafka", "--help"]).output().ok()?;
    (!o.status.success()).then(|| "skipped: fluent-bit not built with out_kafka".to_string())
}
