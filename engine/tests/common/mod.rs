//! The engine's integration-test harness: starting the `spate` binary (its path,
//! `CARGO_BIN_EXE_spate`, exists only inside this crate's tests) on a config. Everything
//! generic — ports, temp dirs, peer processes, Forward clients and sinks, frame builders
//! — comes from `spate-testkit` and is re-exported here for the tests' `use common::*`.
#![allow(dead_code, unused_imports)]

pub mod http;
pub mod http_server;

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// An in_forward source on the port spate picks (`{PORT}`): the input most tests feed.
pub const SRC: &str = "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n</source>\n";

pub use spate_testkit::forward::{
    loadgen_events, serve_acking, wait_e2e_samples, wait_loadgen_events, Client, FixedSink, Received, Sink,
};
pub use spate_testkit::net::loopback;
pub use spate_testkit::process::{find_peer, peer_or_skip, python, skip, skip_unless_required, Proc};
pub use spate_testkit::wire::{self, acked_frame, kv_events, kv_frame, kv_record, kv_time, packed_entries, Wire, T0};
pub use spate_testkit::{free_port, nanos, tempdir};

/// The `spate` binary under test.
pub fn spate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_spate")
}

/// `spate -c <conf> --workers <workers>`.
pub fn spate_cmd(conf: &std::path::Path, workers: u32) -> Command {
    let mut c = Command::new(spate_bin());
    c.arg("-c").arg(conf).args(["--workers", &workers.to_string()]);
    c
}

/// A running spate on a free port, with its config in its own temp dir. Dropping it
/// stops the process.
pub struct Spate {
    /// The process (dropped before `dir`, so the directory outlives it).
    pub proc: Proc,
    /// The in_forward port (`{PORT}` in the config).
    pub port: u16,
    /// Holds `fluent.conf`; removed on drop.
    pub dir: tempdir::Dir,
}

impl Spate {
    /// Starts spate with 2 workers on `config` (with `{PORT}` replaced by a free port)
    /// and waits until it accepts connections. stderr is piped (returned by `stop`).
    pub fn start(name: &str, config: &str, stdout: Stdio) -> Spate {
        Self::start_bin(std::path::Path::new(spate_bin()), name, config, stdout)
    }

    /// The release binary named by `SPATE_RELEASE_BIN` (set by `.ci/run` after its
    /// release build), for tests whose figures only mean something optimized.
    pub fn release_bin() -> Option<std::path::PathBuf> {
        let p = std::path::PathBuf::from(std::env::var_os("SPATE_RELEASE_BIN")?);
        p.is_file().then_some(p)
    }

    /// [`Spate::start`] with another build of the binary.
    pub fn start_bin(bin: &std::path::Path, name: &str, config: &str, stdout: Stdio) -> Spate {
        Self::start_env(bin, name, config, stdout, &[])
    }

    /// [`Spate::start_bin`] with extra environment variables (`""` removes one).
    pub fn start_env(bin: &std::path::Path, name: &str, config: &str, stdout: Stdio, env: &[(&str, &str)]) -> Spate {
        Self::launch(bin, name, config, stdout, env, 2)
    }

    /// [`Spate::start`] with `workers` workers (shards) and stdout discarded.
    pub fn start_workers(name: &str, config: &str, workers: u32) -> Spate {
        Self::launch(std::path::Path::new(spate_bin()), name, config, Stdio::null(), &[], workers)
    }

    fn launch(
        bin: &std::path::Path,
        name: &str,
        config: &str,
        stdout: Stdio,
        env: &[(&str, &str)],
        workers: u32,
    ) -> Spate {
        let port = free_port();
        let dir = tempdir::Dir::new(name);
        let path = dir.path().join("fluent.conf");
        std::fs::write(&path, config.replace("{PORT}", &port.to_string())).expect("write fluent.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&path).args(["--workers", &workers.to_string()]);
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut proc = Proc::spawn("spate", cmd.stdout(stdout).stderr(Stdio::piped()));
        proc.wait_listening(port, Duration::from_secs(20));
        Spate { proc, port, dir }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM, then waits (30 s) for the exit; returns (exit status, stdout, stderr).
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        self.proc.stop(Duration::from_secs(30))
    }

    /// Sends a signal (SIGUSR1, SIGHUP, ...).
    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }
}

// ---- spate that a test kills and restarts (durability.rs, exactly_once.rs) ----

/// spate (2 workers; the release binary when `SPATE_RELEASE_BIN` is set) on a fixed
/// port and config, logging to a file; restartable.
pub struct Restartable {
    conf: std::path::PathBuf,
    port: u16,
    proc: Option<Proc>,
    log: std::path::PathBuf,
    pub starts: u32,
}

impl Restartable {
    pub fn new(conf: std::path::PathBuf, port: u16, log: std::path::PathBuf) -> Restartable {
        Restartable { conf, port, proc: None, log, starts: 0 }
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match Spate::release_bin() {
            Some(bin) => {
                let mut c = std::process::Command::new(bin);
                c.arg("-c").arg(&self.conf).args(["--workers", "2"]);
                c
            }
            None => spate_cmd(&self.conf, 2),
        };
        let mut p = Proc::spawn("spate", cmd.stdout(Stdio::null()).stderr(Stdio::from(log)));
        p.wait_listening(self.port, Duration::from_secs(20));
        self.proc = Some(p);
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn term(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(60));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An at-least-once client: frames of `batch` events with unique `k`, each resent
/// (same chunk id) until acked, reconnecting as needed. Returns the acked `k`s.
pub fn at_least_once_client(
    addr: SocketAddr,
    base: u64,
    batch: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked_n: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut seq = 0u64;
    let mut conn: Option<Client> = None;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let k0 = base + seq * batch;
        let id = format!("c{base}-{seq}");
        let frame = kv_frame(b"chaos", k0..k0 + batch, spate_protocol::EventTime::new(T0, 0), &id);
        // Until acked (the client's promise: it resends what was not acked).
        loop {
            if conn.is_none() {
                match std::net::TcpStream::connect(addr) {
                    Ok(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                        conn = Some(Client::new(s));
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            if c.send(&frame).is_err() {
                conn = None;
                continue;
            }
            match c.read_ack() {
                Ok(got) if got == id.as_bytes() => break,
                _ => conn = None,
            }
        }
        acked.extend(k0..k0 + batch);
        acked_n.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
        seq += 1;
    }
    acked
}

// ---- a well-behaved acking client and process probes (hostile.rs, bombs.rs) ----

/// Peak RSS (VmHWM) of process `pid`, in kB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0)
}

/// 1000 idle connections plus everything else need file descriptors on both sides.
/// Sends `records` (JSON objects) to `spate` as one PackedForward frame with ack id
/// `id`, record `i` at `first` + `i` seconds (same nanoseconds), and waits for the ack:
/// once it returns, the events are in spate's buffers.
pub fn send_json<S: AsRef<str>>(spate: &Spate, tag: &str, first: spate_protocol::EventTime, records: &[S], id: &str) {
    let events = records.iter().enumerate().map(|(i, r)| {
        let m = spate_protocol::json::to_msgpack(r.as_ref().as_bytes()).expect("test records are JSON");
        let t = spate_protocol::EventTime::new(first.sec + i as u32, first.nsec);
        (t, spate_protocol::encode::TimeFormat::EventTime, m)
    });
    let f = acked_frame(tag.as_bytes(), &wire::entries(events), records.len() as u64, id);
    let mut c = Client::connect(spate.addr());
    c.send(&f).unwrap();
    assert_eq!(c.read_ack().unwrap(), id.as_bytes());
}

/// `spate --dry-run` on `config` (`{DIR}` replaced by a temp dir, written there as
/// `fluent.conf`, so errors read `fluent.conf:<line>`): whether it was accepted, and
/// its stderr.
pub fn dry_run(config: &str) -> (bool, String) {
    let out = dry_run_output(config);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// [`dry_run`]'s whole output: the plan it prints goes to stdout.
pub fn dry_run_output(config: &str) -> std::process::Output {
    let dir = tempdir::Dir::new("dry-run");
    let p = dir.path().join("fluent.conf");
    std::fs::write(&p, config.replace("{DIR}", &dir.path().display().to_string())).unwrap();
    spate_cmd(&p, 1).arg("--dry-run").output().unwrap()
}

pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a live local rlimit.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(16384);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

pub fn good_frame(seq: u64) -> (Vec<u8>, String) {
    let id = format!("good-{seq}");
    (acked_frame(b"good", &packed_entries(100, seq * 100), 100, &id), id)
}

/// Sends acked frames until `stop`, recording each frame's send -> ack time.
pub fn good_client(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    waits: std::sync::Arc<std::sync::Mutex<Vec<Duration>>>,
) -> Result<u64, String> {
    use std::sync::atomic::Ordering;
    let mut c = Client::connect(addr);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (f, id) = good_frame(seq);
        let t0 = std::time::Instant::now();
        c.send(&f).map_err(|e| format!("good client: send failed: {e}"))?;
        let got = c.read_ack().map_err(|e| format!("good client: no ack for frame {seq}: {e}"))?;
        let dt = t0.elapsed();
        if got != id.as_bytes() {
            return Err(format!("good client: ack {got:?} for {id}"));
        }
        waits.lock().unwrap().push(dt);
        seq += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(seq)
}

/// PEM files of a test CA, a server certificate it signed for localhost / 127.0.0.1
/// (with its key) and a client certificate it signed (with its key), in a directory.
pub struct TestPki {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// Makes a [`TestPki`] in `dir` (rcgen).
pub fn test_pki(dir: &std::path::Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    cp.distinguished_name.push(DnType::CommonName, "spate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = cp.self_signed(&ca_key).unwrap();
    let sk = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&sk, &ca, &ca_key)
        .unwrap();
    let mut clp = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    clp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ck = KeyPair::generate().unwrap();
    let client = clp.signed_by(&ck, &ca, &ca_key).unwrap();
    let w = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    TestPki {
        ca: w("ca.pem", ca.pem()),
        cert: w("server.pem", server.pem()),
        key: w("server.key", sk.serialize_pem()),
        client_cert: w("client.pem", client.pem()),
        client_key: w("client.key", ck.serialize_pem()),
    }
}
