//! Test harness shared by the engine's integration tests: start the `spate` binary on a
//! config, a Forward test sink that records every event it receives (acking when asked),
//! and a small blocking Forward client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spate_protocol::{encode, EventTime, Frame, FrameDecoder, Limits, RecordRef};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub struct Spate {
    pub child: Child,
    pub port: u16,
    pub dir: tempdir::Dir,
}

pub mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("spate-test-{name}-{}-{}", std::process::id(), super::nanos()));
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

impl Spate {
    /// Starts spate on `config` (with `{PORT}` replaced by a free port) and waits until
    /// it accepts connections.
    pub fn start(name: &str, config: &str, stdout: Stdio) -> Spate {
        Self::start_bin(std::path::Path::new(env!("CARGO_BIN_EXE_spate")), name, config, stdout)
    }

    /// The release binary named by `SPATE_RELEASE_BIN` (set by `.ci/run` after its
    /// release build), for tests whose figures only mean something optimized.
    pub fn release_bin() -> Option<std::path::PathBuf> {
        let p = std::path::PathBuf::from(std::env::var_os("SPATE_RELEASE_BIN")?);
        p.is_file().then_some(p)
    }

    /// [`Spate::start`] with another build of the binary.
    pub fn start_bin(bin: &std::path::Path, name: &str, config: &str, stdout: Stdio) -> Spate {
        let port = free_port();
        let dir = tempdir::Dir::new(name);
        let path = dir.path().join("fluent.conf");
        std::fs::write(&path, config.replace("{PORT}", &port.to_string())).unwrap();
        let child = Command::new(bin)
            .args(["-c", path.to_str().unwrap(), "--workers", "2"])
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spate");
        let s = Spate { child, port, dir };
        s.wait_listening();
        s
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_listening(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("spate did not listen on {}", self.addr());
    }

    /// SIGTERM, then waits for exit; returns (exit status, stdout, stderr).
    pub fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = self.child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (st, out, err);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("spate did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

/// One event as a sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub tag: Vec<u8>,
    pub time: EventTime,
    pub record: Vec<u8>,
}

/// A Forward server that records events and acks when asked.
pub struct Sink {
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<Received>>>,
    pub acks_sent: Arc<Mutex<u64>>,
}

impl Sink {
    pub fn start() -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let acks_sent = Arc::new(Mutex::new(0));
        let (ev, ac) = (events.clone(), acks_sent.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (ev, ac) = (ev.clone(), ac.clone());
                std::thread::spawn(move || {
                    serve_acking(s, |b| {
                        let mut g = ev.lock().unwrap();
                        for e in b.events() {
                            g.push(Received {
                                tag: b.tag.to_vec(),
                                time: e.time,
                                record: e.record.as_bytes().to_vec(),
                            });
                        }
                        drop(g);
                        if b.option.chunk.is_some() {
                            *ac.lock().unwrap() += 1;
                        }
                    })
                });
            }
        });
        Sink { addr, events, acks_sent }
    }

    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let end = Instant::now() + within;
        loop {
            let g = self.events.lock().unwrap();
            if g.len() >= n || Instant::now() > end {
                return g.clone();
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A blocking Forward client for tests.
pub struct Client {
    pub s: TcpStream,
    pub buf: BytesMut,
}

impl Client {
    /// A placeholder to fill with `Client { s, ..Client::connect_unused() }`.
    pub fn connect_unused() -> Client {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: BytesMut::new() }
    }

    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: BytesMut::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Reads one ack and returns its chunk id, or an error (timeout, closed).
    pub fn read_ack(&mut self) -> std::io::Result<Vec<u8>> {
        let mut tmp = [0u8; 4096];
        loop {
            let mut sk = spate_protocol::msgpack::Skipper::new();
            if let Ok(Some(n)) = sk.advance(&self.buf, 1 << 20, 8) {
                let v = self.buf.split_to(n);
                return encode::parse_ack(&v).map(|c| c.to_vec()).map_err(|e| std::io::Error::other(e.to_string()));
            }
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// `{"k": <i>, "msg": "event <i>"}`
pub fn record(i: u64) -> Vec<u8> {
    let mut r = Vec::new();
    encode::raw::map_header(&mut r, 2);
    encode::raw::str(&mut r, b"k");
    encode::raw::uint(&mut r, i);
    encode::raw::str(&mut r, b"msg");
    encode::raw::str(&mut r, format!("event {i}").as_bytes());
    r
}

pub fn packed_entries(n: u64, base: u64) -> Vec<u8> {
    let mut e = Vec::new();
    for i in base..base + n {
        encode::entry(
            &mut e,
            EventTime::new(1_700_000_000 + i as u32, i as u32 * 7),
            encode::TimeFormat::EventTime,
            &record(i),
        );
    }
    e
}

/// Python with the given modules, or a skip reason (a failure when SPATE_REQUIRE_PY=1).
pub fn python_with(modules: &[&str]) -> Option<String> {
    let script = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some("python3".into());
    }
    let why = format!("python3 with {modules:?} not available (pip install fluent-logger msgpack)");
    if std::env::var("SPATE_REQUIRE_PY").as_deref() == Ok("1") {
        panic!("{why}, and SPATE_REQUIRE_PY=1");
    }
    eprintln!("skipped: {why}");
    None
}

/// A peer (fluentd, fluent-bit) found via `$ENV` or on PATH.
pub fn find_peer(env: &str, bin: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(std::path::PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}

/// A running peer process, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Peer(pub Child);

impl Peer {
    /// Starts `cmd -c conf`, waits until it listens on `port`, then lets fluentd's
    /// worker finish booting.
    pub fn start(name: &str, cmd: &std::path::Path, conf: &std::path::Path, port: u16) -> Peer {
        let mut p =
            Peer(Command::new(cmd).arg("-c").arg(conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        let end = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end && p.0.try_wait().unwrap().is_none(), "{name} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        p
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Events of the load generator's tag at a spate-loadgen sink (peers also route their
/// own `fluent.*` logs to `**`, so counting by tag keeps the totals exact).
pub fn ours(s: &spate_loadgen::sink::SinkHandle) -> u64 {
    s.report().by_tag.get("spate.loadgen").map_or(0, |t| t.events)
}

/// Waits up to 30 s for `n` of our events; returns how many arrived.
pub fn wait_ours(s: &spate_loadgen::sink::SinkHandle, n: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(30);
    while ours(s) < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    ours(s)
}

/// A Forward sink on a fixed port that can be stopped and started again; it records
/// the `k` field of every event and acks every chunk.
pub struct FixedSink {
    pub port: u16,
    /// How many times each `k` arrived.
    pub seen: Arc<Mutex<HashMap<u64, u32>>>,
    /// Microseconds the sink spends per event received (0: as fast as it can), so a
    /// test can make it slower than the load.
    pub micros_per_event: Arc<std::sync::atomic::AtomicU64>,
    run: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixedSink {
    pub fn new(port: u16) -> FixedSink {
        FixedSink {
            port,
            seen: Arc::new(Mutex::new(HashMap::new())),
            micros_per_event: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            run: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            thread: None,
        }
    }

    pub fn start(&mut self) {
        let l = TcpListener::bind(("127.0.0.1", self.port)).expect("sink port");
        l.set_nonblocking(true).unwrap();
        self.run.store(true, Ordering::SeqCst);
        let (run, seen, conns) = (self.run.clone(), self.seen.clone(), self.conns.clone());
        let slow = self.micros_per_event.clone();
        self.thread = Some(std::thread::spawn(move || {
            while run.load(Ordering::SeqCst) {
                let s = match l.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                s.set_nonblocking(false).unwrap();
                let _ = s.set_nodelay(true);
                conns.lock().unwrap().push(s.try_clone().unwrap());
                let (seen, slow) = (seen.clone(), slow.clone());
                std::thread::spawn(move || serve_fixed(s, seen, slow));
            }
        }));
    }

    pub fn stop(&mut self) {
        self.run.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve_fixed(s: TcpStream, seen: Arc<Mutex<HashMap<u64, u32>>>, slow: Arc<std::sync::atomic::AtomicU64>) {
    serve_acking(s, |b| {
        let us = slow.load(Ordering::Relaxed);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us * u64::from(b.count)));
        }
        let mut g = seen.lock().unwrap();
        for e in b.events() {
            if let Some(k) = RecordRef::new(e.record.as_bytes()).and_then(|r| r.get(b"k")).and_then(|v| v.as_i64()) {
                *g.entry(k as u64).or_default() += 1;
            }
        }
    })
}

/// Decodes Forward frames from `s`, hands each batch to `on` and then acks it (when the
/// client asked), until the connection closes.
pub fn serve_acking(mut s: TcpStream, mut on: impl FnMut(&spate_protocol::EventBatch)) {
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        let n = match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if let Frame::Events(b) = f {
                on(&b);
                if let Some(c) = &b.option.chunk {
                    let mut a = Vec::new();
                    encode::ack(&mut a, c);
                    if s.write_all(&a).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl FixedSink {
    /// Events received (with duplicates).
    pub fn total(&self) -> u64 {
        self.seen.lock().unwrap().values().map(|&n| u64::from(n)).sum()
    }
}

// ---- a well-behaved acking client and process probes (hostile.rs, bombs.rs) ----

pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0)
}

pub fn raise_fd_limit() {
    // 1000 idle connections plus everything else need file descriptors on both sides.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(16384);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

pub fn good_frame(seq: u64) -> (Vec<u8>, String) {
    let id = format!("good-{seq}");
    let opt = encode::OptionsOut { chunk: Some(id.as_bytes()), size: None, compressed: None };
    let mut f = Vec::new();
    encode::packed_forward(&mut f, b"good", &packed_entries(100, seq * 100), encode::EntriesType::Bin, &opt);
    (f, id)
}

/// Sends acked frames until `stop`, recording each frame's send -> ack time.
pub fn good_client(addr: SocketAddr, stop: Arc<AtomicBool>, waits: Arc<Mutex<Vec<Duration>>>) -> Result<u64, String> {
    let mut c = Client::connect(addr);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (f, id) = good_frame(seq);
        let t0 = Instant::now();
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
