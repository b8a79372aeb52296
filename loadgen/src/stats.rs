//! What the generator measures, shared by its two I/O paths (threads and event loops):
//! counters, the `--events` budget, per-connection counts (fairness), and the ack and
//! connect latency histograms, overall and per second. Threads record into a
//! [`LocalHist`] and merge it into the shared one every half second, so no lock is taken
//! per ack.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::report::new_hist;

pub fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A monotonic instant and the wall-clock time at that instant, read back to back (again
/// if the thread was preempted in between): intended send times are wall-clock
/// nanoseconds derived from the monotonic schedule, and an offset here would shift every
/// latency.
pub fn clock_pair() -> (Instant, u64) {
    let mut best = (Instant::now(), wall_ns(), Duration::MAX);
    for _ in 0..20 {
        let a = Instant::now();
        let w = wall_ns();
        let took = a.elapsed();
        if took < best.2 {
            best = (a, w, took);
        }
        if took < Duration::from_micros(5) {
            break;
        }
    }
    (best.0, best.1)
}

#[derive(Default)]
pub struct Counters {
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
    pub sent_events: AtomicU64,
    pub sent_total: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub sent_frames: AtomicU64,
    pub acked_events: AtomicU64,
    pub acked_total: AtomicU64,
    pub errors: AtomicU64,
    pub ack_timeouts: AtomicU64,
    pub reconnects: AtomicU64,
    pub connects: AtomicU64,
    /// Connects that failed or timed out before ready (TCP, TLS or handshake).
    pub connect_failures: AtomicU64,
    pub warned: AtomicBool,
    pub churned: AtomicU64,
}

impl Counters {
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes up to `want` events from a connection's share of `--events` (`left`: None
    /// when unbounded); returns how many to send (0: this connection is done). Shares
    /// only count in the measured phase. Each connection's last frame is short, so
    /// exactly `--events` are sent whatever the batch size and number of connections.
    pub fn take(&self, left: &mut Option<u64>, want: u64) -> u64 {
        match left {
            Some(n) if self.measuring() => {
                let take = (*n).min(want);
                *n -= take;
                take
            }
            _ => want,
        }
    }

    /// Counts a failed connect; the first one is explained on stderr.
    pub fn connect_failed(&self, quiet: bool, what: std::fmt::Arguments<'_>) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        if !quiet && !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!("spate-loadgen: {what} (retrying; counted in connect_failures)");
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
}

/// Everything the generator threads share.
pub struct Shared {
    pub c: Counters,
    /// Events acked (with acks) or sent (without) per connection slot, measured phase.
    pub per_conn: Vec<AtomicU64>,
    pub ack: Mutex<Histogram<u64>>,
    pub connect: Mutex<Histogram<u64>>,
    /// Ack latency per second of the measured phase (by the second the ack arrived).
    pub seconds: Mutex<Vec<Histogram<u64>>>,
    /// When the measured phase starts (start + warmup).
    pub m_start: Instant,
}

impl Shared {
    pub fn new(connections: u32, m_start: Instant) -> Shared {
        Shared {
            c: Counters::default(),
            per_conn: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            ack: Mutex::new(new_hist()),
            connect: Mutex::new(new_hist()),
            seconds: Mutex::new(Vec::new()),
            m_start,
        }
    }

    /// Counts `n` events for connection slot `slot` (fairness).
    pub fn per_conn_add(&self, slot: u32, n: u64) {
        if let Some(a) = self.per_conn.get(slot as usize) {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn record_connect(&self, took: Duration) {
        self.c.add(&self.c.connects, 1);
        if let Ok(mut h) = self.connect.lock() {
            let _ = h.record((took.as_micros() as u64).max(1));
        }
    }
}

/// A thread's own ack latency histograms (overall and for the current second).
pub struct LocalHist {
    total: Histogram<u64>,
    sec: Histogram<u64>,
    sec_idx: usize,
    last_flush: Instant,
}

impl Default for LocalHist {
    fn default() -> Self {
        LocalHist { total: new_hist(), sec: new_hist(), sec_idx: 0, last_flush: Instant::now() }
    }
}

impl LocalHist {
    /// Records one measured ack's latency, arriving now.
    pub fn record(&mut self, sh: &Shared, us: u64) {
        let idx = Instant::now().saturating_duration_since(sh.m_start).as_secs() as usize;
        if idx != self.sec_idx {
            self.flush_sec(sh);
            self.sec_idx = idx;
        }
        let v = us.max(1);
        let _ = self.total.record(v);
        let _ = self.sec.record(v);
    }

    fn flush_sec(&mut self, sh: &Shared) {
        if self.sec.is_empty() {
            return;
        }
        if let Ok(mut s) = sh.seconds.lock() {
            // Bounded by the run's length in seconds.
            while s.len() <= self.sec_idx {
                s.push(new_hist());
            }
            let _ = s[self.sec_idx].add(&self.sec);
        }
        self.sec.reset();
    }

    /// Merges into the shared histograms every half second (or now, with `force`).
    pub fn maybe_flush(&mut self, sh: &Shared, force: bool) {
        if !force && self.last_flush.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last_flush = Instant::now();
        if !self.total.is_empty() {
            if let Ok(mut h) = sh.ack.lock() {
                let _ = h.add(&self.total);
            }
            self.total.reset();
        }
        self.flush_sec(sh);
    }
}

/// Connection `slot`'s share of `--events` (the remainder goes to the first slots):
/// each connection sends its own share, as each forwarder has its own log volume, so a
/// slow ramp to thousands of connections still gives every one of them its events.
pub fn share(events: Option<u64>, slot: u32, connections: u32) -> Option<u64> {
    let (n, c, s) = (events?, connections.max(1) as u64, slot as u64);
    Some(n / c + u64::from(s < n % c))
}

/// Rates per connection slot: `--rate` spread evenly, each connection's share varied by
/// up to `jitter` (0.1: ±10%) and rescaled so they add up to the total. The variation is
/// a fixed function of the slot, so runs are repeatable.
pub fn conn_rates(total: f64, connections: u32, jitter: f64) -> Vec<f64> {
    let n = connections.max(1) as usize;
    let j = jitter.clamp(0.0, 0.99);
    let raw: Vec<f64> = (0..n).map(|i| 1.0 + j * (unit(i as u64, 1) * 2.0 - 1.0)).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|r| total * r / sum).collect()
}

/// A repeatable uniform number in [0, 1) for (`i`, `salt`) (splitmix64).
pub fn unit(i: u64, salt: u64) -> f64 {
    let mut z = i.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Raises this process's open-file limit to what `want` descriptors need (up to the hard
/// limit; root may raise the hard limit too). Returns the limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur >= want {
            return r.rlim_cur;
        }
        if r.rlim_max < want {
            let up = libc::rlimit { rlim_cur: want, rlim_max: want };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                return want;
            }
        }
        let cur = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &cur) == 0 {
            return r.rlim_max;
        }
        r.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_end_with_a_short_batch() {
        let c = Counters::default();
        c.measuring.store(true, Ordering::Relaxed);
        let mut total = 0;
        for slot in 0..3 {
            let mut left = share(Some(20_000), slot, 3);
            while let n @ 1.. = c.take(&mut left, 64) {
                total += n;
            }
        }
        assert_eq!(total, 20_000);
        assert_eq!((share(Some(7), 0, 3), share(Some(7), 2, 3), share(None, 0, 3)), (Some(3), Some(2), None));
    }

    #[test]
    fn rates_add_up_and_vary() {
        let r = conn_rates(1000.0, 100, 0.1);
        assert!((r.iter().sum::<f64>() - 1000.0).abs() < 1e-6);
        let (lo, hi) = r.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(lo > 8.0 && hi < 12.0 && hi - lo > 1.0, "{lo} {hi}");
        assert_eq!(conn_rates(1000.0, 4, 0.0), vec![250.0; 4]);
    }
}
