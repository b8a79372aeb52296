//! Durability: acked clients -> spate (file buffer, out_forward with acks) -> a sink
//! that can go away. spate is killed with SIGKILL during load and restarted on the same
//! port and buffer directory; the sink is stopped for a while and restarted. At the end
//! every event a client saw acked must have reached the sink at least once; duplicates
//! and the time to deliver everything after the last restart are printed. Under kill -9
//! (with a fast sink, and with one slower than the load, so chunks grow large)
//! duplicates must stay under 1% of the acked events: out_forward records each acked
//! frame of a chunk, and a restart resends only the rest. With `SPATE_RELEASE_BIN` set,
//! the release binary is the one killed.
//!
//! Also: a truncated and a corrupted chunk file on start (recovered / cut / set aside
//! with log lines), and `overflow_action` with a stalled downstream.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::EventTime;

fn conf(port: u16, sink: u16, buf: &std::path::Path, extra: &str) -> String {
    format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match **>\n  @type forward\n  require_ack_response true\n  ack_response_timeout 5s\n  heartbeat_type none\n  keepalive true\n\
         <server>\n    host 127.0.0.1\n    port {sink}\n  </server>\n\
         <buffer>\n    @type file\n    path {}\n    flush_interval 100ms\n    retry_wait 100ms\n    retry_max_interval 500ms\n    retry_forever true\n{extra}  </buffer>\n</match>\n",
        buf.display()
    )
}

struct Outcome {
    acked: usize,
    lost: usize,
    dups: u64,
    deliver_secs: f64,
}

impl Outcome {
    fn print(&self, what: &str) {
        println!(
            "{what}: {} events acked, {} lost, {} duplicates ({:.3}% of acked), all delivered {:.2}s after the load stopped",
            self.acked,
            self.lost,
            self.dups,
            100.0 * self.dups as f64 / self.acked.max(1) as f64,
            self.deliver_secs
        );
    }
}

/// Runs load from two clients while `chaos` disturbs spate and the sink, then waits
/// for every acked event at the sink.
fn run_chaos(
    name: &str,
    load: Duration,
    sink_micros_per_event: u64,
    chaos: impl FnOnce(&mut Restartable, &mut FixedSink, &AtomicU64),
) -> (Outcome, String) {
    let dir = tempdir::Dir::new(&name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let (port, sink_port) = (free_port(), free_port());
    let buf = dir.path().join("buffer");
    let cf = dir.path().join("fluent.conf");
    std::fs::write(&cf, conf(port, sink_port, &buf, "")).unwrap();
    let mut sink = FixedSink::new(sink_port);
    sink.micros_per_event.store(sink_micros_per_event, Ordering::Relaxed);
    sink.start();
    let mut spate = Restartable::new(cf, port, dir.path().join("spate.log"));
    spate.start();
    let addr = loopback(port);
    let stop = Arc::new(AtomicBool::new(false));
    let acked_n = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..2u64)
        .map(|t| {
            let (stop, n) = (stop.clone(), acked_n.clone());
            std::thread::spawn(move || at_least_once_client(addr, t * 1_000_000_000, 100, stop, n))
        })
        .collect();
    let t0 = Instant::now();
    chaos(&mut spate, &mut sink, &acked_n);
    if let Some(rest) = load.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.join().unwrap());
    }
    let last = Instant::now();
    // The sink catches up at full speed.
    sink.micros_per_event.store(0, Ordering::Relaxed);
    let deadline = last + Duration::from_secs(60);
    let lost = loop {
        // Checking every acked key holds the sink's lock for a while (a million lookups):
        // only do it once the sink has seen at least as many distinct keys, so the
        // check does not starve the sink it waits for.
        let distinct = sink.seen.lock().unwrap().len();
        let timed_out = Instant::now() > deadline;
        if distinct >= acked.len() || timed_out {
            let g = sink.seen.lock().unwrap();
            let lost = acked.iter().filter(|k| !g.contains_key(k)).count();
            drop(g);
            if lost == 0 || timed_out {
                break lost;
            }
        }
        if std::env::var_os("SPATE_TEST_TRACE").is_some() {
            eprintln!("{:?} after the load: {} of {} delivered", last.elapsed(), distinct, acked.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let deliver_secs = last.elapsed().as_secs_f64();
    let g = sink.seen.lock().unwrap();
    let dups: u64 = g.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    drop(g);
    spate.term();
    sink.stop();
    let log = spate.log();
    if let Some(p) = std::env::var_os("SPATE_TEST_TRACE") {
        let _ = std::fs::write(p, &log);
    }
    (Outcome { acked: acked.len(), lost, dups, deliver_secs }, log)
}

fn kill_9_three_times(name: &str, sink_micros_per_event: u64) -> (Outcome, String) {
    let (o, log) = run_chaos(name, Duration::from_secs(12), sink_micros_per_event, |spate, _sink, acked| {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(3));
            let before = acked.load(Ordering::Relaxed);
            spate.kill9();
            std::thread::sleep(Duration::from_millis(200));
            spate.start();
            assert!(before > 0, "load was flowing before the kill");
        }
    });
    o.print(name);
    assert!(o.acked > 10_000, "enough load to mean something: {}", o.acked);
    assert_eq!(o.lost, 0, "acked events lost after kill -9; spate log:\n{log}");
    assert!(log.contains("recovered"), "restarts recovered chunks from disk:\n{log}");
    (o, log)
}

/// Each crash resends at most the frames in flight (and each client its one unacked
/// frame of 100 events), not whole chunks.
fn assert_few_duplicates(o: &Outcome) {
    assert!((o.dups as f64) < 0.01 * o.acked as f64, "{} duplicates of {} acked events (bound: 1%)", o.dups, o.acked);
}

#[test]
fn kill_9_three_times_under_acked_load_loses_nothing() {
    let (o, _) = kill_9_three_times("kill -9 x3, fast sink", 0);
    assert_few_duplicates(&o);
}

#[test]
fn kill_9_with_a_sink_slower_than_the_load_resends_only_unacked_frames() {
    // 20 us per event: at most 50k events/s, slower than the two clients, so chunks
    // queue up and grow to tens of thousands of events before they are sent.
    let (o, log) = kill_9_three_times("kill -9 x3, slow sink", 20);
    assert_few_duplicates(&o);
    assert!(
        log.contains("acknowledged downstream before the restart"),
        "a restart resumed a partly acked chunk:\n{log}"
    );
}

#[test]
fn sink_down_for_a_while_loses_nothing() {
    let (o, log) = run_chaos("chaos-sink", Duration::from_secs(8), 0, |_spate, sink, _| {
        std::thread::sleep(Duration::from_secs(2));
        sink.stop();
        std::thread::sleep(Duration::from_secs(3));
        sink.start();
    });
    o.print("sink down 3s");
    assert!(o.acked > 10_000, "enough load: {}", o.acked);
    assert_eq!(o.lost, 0, "acked events lost while the sink was down; spate log:\n{log}");
    assert!(log.contains("failed to flush the buffer"), "the outage was seen and retried:\n{log}");
}

/// A frame of `n` events with `k` from `k0`, acked under `id`.
fn frame(tag: &[u8], k0: u64, n: u64, id: &str) -> Vec<u8> {
    kv_frame(tag, k0..k0 + n, EventTime::new(T0, 0), id)
}

/// The chunk files under `buf` whose header holds `tag`.
fn chunk_files(buf: &std::path::Path, tag: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(buf).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let raw = std::fs::read(f.path()).unwrap();
            let n = raw.len().min(34 + tag.len());
            if raw.len() >= 34 && u16::from_le_bytes([raw[32], raw[33]]) as usize == tag.len() && &raw[34..n] == tag {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn recovery_cuts_a_torn_chunk_and_sets_a_corrupt_one_aside() {
    let dir = tempdir::Dir::new("recovery");
    let (port, sink_port) = (free_port(), free_port());
    let buf = dir.path().join("buffer");
    let cf = dir.path().join("fluent.conf");
    // Chunks stay staged (flush_interval 1h), so they are on disk when spate dies.
    std::fs::write(
        &cf,
        conf(port, sink_port, &buf, "    flush_interval 1h\n").replace("    flush_interval 100ms\n", ""),
    )
    .unwrap();
    let mut spate = Restartable::new(cf, port, dir.path().join("spate.log"));
    spate.start();
    let mut c = Client::connect(loopback(port));
    // torn: two commits (two segments); corrupt: one; intact: one.
    for (tag, k0, id) in
        [(&b"torn"[..], 0, "t1"), (b"torn", 100, "t2"), (b"corrupt", 200, "c1"), (b"intact", 300, "i1")]
    {
        c.send(&frame(tag, k0, 100, id)).unwrap();
        assert_eq!(c.read_ack().unwrap(), id.as_bytes(), "acked once durable");
    }
    spate.kill9();
    let torn = chunk_files(&buf, b"torn");
    let corrupt = chunk_files(&buf, b"corrupt");
    assert_eq!((torn.len(), corrupt.len(), chunk_files(&buf, b"intact").len()), (1, 1, 1));
    // A torn write: the last segment loses its tail.
    let len = std::fs::metadata(&torn[0]).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&torn[0]).unwrap().set_len(len - 10).unwrap();
    // A corrupt header (a flipped bit in the tag).
    let mut raw = std::fs::read(&corrupt[0]).unwrap();
    raw[35] ^= 0x01;
    std::fs::write(&corrupt[0], &raw).unwrap();

    let mut sink = FixedSink::new(sink_port);
    sink.start();
    spate.start();
    let end = Instant::now() + Duration::from_secs(20);
    let want: Vec<u64> = (0..100).chain(300..400).collect();
    loop {
        let g = sink.seen.lock().unwrap();
        if want.iter().all(|k| g.contains_key(k)) || Instant::now() > end {
            break;
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    spate.term();
    sink.stop();
    let log = spate.log();
    if let Some(p) = std::env::var_os("SPATE_TEST_TRACE") {
        let _ = std::fs::write(p, &log);
    }
    let g = sink.seen.lock().unwrap();
    for k in &want {
        assert_eq!(g.get(k), Some(&1), "event {k} from an intact segment delivered once; log:\n{log}");
    }
    assert!((100..300).all(|k| !g.contains_key(&k)), "the cut segment and the corrupt chunk are not sent");
    assert!(log.contains("cutting the file"), "the torn tail is cut with a log line:\n{log}");
    assert!(log.contains("cannot be recovered (header checksum mismatch); moved aside"), "{log}");
    assert!(corrupt[0].with_extension("corrupt").exists(), "the corrupt chunk is kept aside for inspection");
}

/// A downstream that accepts connections and never reads (so never acks).
fn stalled_sink() -> (u16, Arc<Mutex<Vec<TcpStream>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    (port, held)
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends 1000-event frames for `dur` (one connection, acks, reconnecting), returns
/// (acked frames, frames without an ack within `wait` or refused by a close).
fn push_for(addr: SocketAddr, dur: Duration, wait: Duration) -> (u64, u64) {
    let end = Instant::now() + dur;
    let (mut acked, mut refused) = (0, 0);
    let mut seq = 0u64;
    while Instant::now() < end {
        let Ok(s) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        s.set_read_timeout(Some(wait)).unwrap();
        s.set_write_timeout(Some(wait)).unwrap();
        let mut c = Client::new(s);
        while Instant::now() < end {
            seq += 1;
            let id = format!("f{seq}");
            if c.send(&frame(b"flood", seq * 1000, 1000, &id)).is_err() {
                refused += 1;
                break;
            }
            match c.read_ack() {
                Ok(_) => acked += 1,
                Err(_) => {
                    refused += 1;
                    break;
                }
            }
        }
    }
    (acked, refused)
}

#[test]
fn stalled_downstream_each_overflow_action_keeps_memory_bounded() {
    for action in ["throw_exception", "block", "drop_oldest_chunk"] {
        let (sink_port, _held) = stalled_sink();
        let cfg = format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n\
             <match **>\n  @type forward\n  heartbeat_type none\n  require_ack_response true\n  ack_response_timeout 60s\n\
             <server>\n    host 127.0.0.1\n    port {sink_port}\n  </server>\n\
             <buffer>\n    flush_interval 50ms\n    chunk_limit_size 1m\n    total_limit_size 8m\n    overflow_action {action}\n    retry_forever true\n  </buffer>\n</match>\n"
        );
        let spate = common::Spate::start(&format!("overflow-{action}"), &cfg, Stdio::null());
        let pid = spate.pid();
        // ~70 MB of events at a downstream that takes none of them.
        // `block` is seen as acks that do not come; the others refuse by closing, so
        // they get a wait no scheduling stall of a loaded CI machine comes near.
        let wait = Duration::from_millis(if action == "block" { 500 } else { 5000 });
        let (acked, refused) = push_for(spate.addr(), Duration::from_secs(4), wait);
        let hwm = vm_hwm_kb(pid);
        // The downstream never acks, so a graceful stop would wait out its deadline.
        let mut spate = spate;
        let (_, _, log) = spate.proc.kill().expect("spate was running");
        println!("overflow_action {action}: {acked} frames acked, {refused} not acked, spate peak RSS {hwm} kB");
        // 2 shards x 8 MiB of buffer, plus the process itself (debug build) and read buffers.
        assert!(hwm < 80 * 1024, "{action}: peak RSS {hwm} kB is beyond the buffer limits");
        match action {
            "throw_exception" => {
                assert!(refused > 0, "a full buffer refuses batches");
                assert!(log.contains("not accepted, no ack sent"), "{log}");
            }
            "block" => {
                assert!(refused > 0, "the client waits (no ack) while the input is blocked");
                assert!(log.contains("not reading from"), "{log}");
            }
            _ => {
                assert_eq!(refused, 0, "drop_oldest_chunk keeps accepting");
                assert!(acked > 100);
                assert!(log.contains("dropping oldest chunk"), "{log}");
            }
        }
    }
}

/// A disk that refuses writes (here: a file-size limit, `ulimit -f`, so the test needs
/// no privileges): batches that cannot be stored get no ack and the connection is
/// closed; everything acked before is delivered after a restart without the limit.
#[test]
fn a_refusing_disk_means_no_ack_and_nothing_acked_is_lost() {
    use std::os::unix::process::CommandExt;
    let dir = tempdir::Dir::new("diskfull");
    let (port, sink_port) = (free_port(), free_port());
    let buf = dir.path().join("buffer");
    let cf = dir.path().join("fluent.conf");
    std::fs::write(
        &cf,
        conf(port, sink_port, &buf, "    flush_interval 1h\n").replace("    flush_interval 100ms\n", ""),
    )
    .unwrap();
    let log_path = dir.path().join("spate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut limited = spate_cmd(&cf, 1);
    limited.stdout(Stdio::null()).stderr(Stdio::from(log));
    // SAFETY: setrlimit in the child before exec.
    unsafe {
        limited.pre_exec(|| {
            let l = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &l);
            Ok(())
        });
    }
    let mut limited = Proc::spawn("spate", &mut limited);
    limited.wait_listening(port, Duration::from_secs(20));
    let addr = loopback(port);
    let mut acked = Vec::new();
    let mut refused = 0;
    let mut c = Client::connect(addr);
    for i in 0..60u64 {
        let id = format!("d{i}");
        if c.send(&frame(b"disk", i * 50, 50, &id)).is_err() {
            refused += 1;
            c = Client::connect(addr);
            continue;
        }
        match c.read_ack() {
            Ok(got) if got == id.as_bytes() => acked.extend(i * 50..i * 50 + 50),
            _ => {
                refused += 1;
                c = Client::connect(addr);
            }
        }
    }
    limited.kill();
    let first_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !acked.is_empty() && refused > 0,
        "some batches fit, later ones did not: {} acked, {refused} refused",
        acked.len()
    );
    assert!(first_log.contains("writing") && first_log.contains("failed"), "the refused write is logged:\n{first_log}");
    assert!(first_log.contains("could not be stored"), "the client is told by a missing ack:\n{first_log}");

    let mut sink = FixedSink::new(sink_port);
    sink.start();
    let mut spate = Restartable::new(cf, port, dir.path().join("spate2.log"));
    spate.start();
    let end = Instant::now() + Duration::from_secs(20);
    while !acked.iter().all(|k| sink.seen.lock().unwrap().contains_key(k)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    spate.term();
    sink.stop();
    let g = sink.seen.lock().unwrap();
    let lost = acked.iter().filter(|k| !g.contains_key(k)).count();
    println!("disk refusing writes: {} events acked, {refused} frames refused, {lost} acked events lost", acked.len());
    assert_eq!(lost, 0, "every acked event was on disk and is delivered");
}
