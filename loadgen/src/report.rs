//! The JSON reports (a stable interface, documented in loadgen/README.md), latency
//! summaries from HDR histograms (microseconds), the histograms' serialized form carried
//! in a report (base64 of HdrHistogram's V2 deflate format, readable by every HdrHistogram
//! implementation), and `merge`: several generator reports read as one.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// A histogram for latencies from 1 µs to 1 hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// A histogram of counts (events per connection): any value, 3 significant digits.
pub fn new_count_hist() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant digits are valid");
    h.auto(true);
    h
}

/// Serializes a histogram for a report: base64 of the V2 deflate format ("" if empty).
pub fn hist_to_string(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return String::new();
    }
    let mut v = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut v) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(v),
        Err(_) => String::new(),
    }
}

/// Reads a histogram written by [`hist_to_string`] ("" is an empty histogram).
pub fn hist_from_str(s: &str) -> Result<Histogram<u64>, ReportError> {
    if s.is_empty() {
        return Ok(new_hist());
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| ReportError::Hist(e.to_string()))?;
    Deserializer::new().deserialize(&mut &raw[..]).map_err(|e| ReportError::Hist(format!("{e:?}")))
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid serialized histogram: {0}")]
    Hist(String),
    #[error("{0}: {1}")]
    Read(String, String),
    #[error("nothing to merge")]
    Empty,
}

/// Spread of events per connection (acked with `--ack`, else sent), over connection
/// slots (a churned connection's successors count in its slot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fairness {
    pub connections: u64,
    pub min: u64,
    pub p50: u64,
    pub max: u64,
    /// `events_acked` or `events_sent`.
    pub counts: String,
}

impl Fairness {
    pub fn from_hist(h: &Histogram<u64>, counts: &str) -> Fairness {
        if h.is_empty() {
            return Fairness { counts: counts.into(), ..Default::default() };
        }
        Fairness {
            connections: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            max: h.max(),
            counts: counts.into(),
        }
    }
}

/// One second of the measured phase (the last row may be a part of a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Second {
    /// How long this row lasted: 1.0, or less for the run's last part-second.
    pub secs: f64,
    pub events_sent: u64,
    pub events_acked: u64,
    /// Acks received in this second, by latency (µs).
    pub ack_p50: u64,
    pub ack_p99: u64,
    pub ack_max: u64,
    pub ack_hdr: String,
}

/// One service level objective and how the run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SloResult {
    pub objective: String,
    pub measured: f64,
    pub ok: bool,
}

/// The generator's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReport {
    pub events_sent: u64,
    pub events_acked: u64,
    pub errors: u64,
    pub ack_timeouts: u64,
    pub reconnects: u64,
    pub duration_s: f64,
    pub events_per_sec: f64,
    pub bytes_per_sec: f64,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    /// Requested rate (events/s), or null for max rate.
    pub offered_rate: Option<f64>,
    /// Events sent per second during the measured phase.
    pub achieved_rate: f64,
    pub ack_latency_us: Latency,
    /// The ack latency histogram itself (µs), serialized ([`hist_to_string`]).
    pub ack_latency_hdr: String,
    /// Connections established (first connects, reconnects and churn), and how long each
    /// took from `connect()` to ready (TLS and the shared-key handshake included).
    pub connects: u64,
    pub connect_failures: u64,
    pub connect_latency_us: Latency,
    pub connect_latency_hdr: String,
    /// Connections closed and reopened by `--churn`.
    pub churned: u64,
    pub fairness: Fairness,
    pub fairness_hdr: String,
    /// Events sent including the warmup.
    pub events_sent_total: u64,
    /// Events acked including the warmup.
    pub events_acked_total: u64,
    /// Events sent in each second of the measured phase.
    pub rate_per_sec: Vec<u64>,
    pub per_second: Vec<Second>,
    pub mode: String,
    pub connections: u32,
    pub batch: u32,
    pub inflight: u32,
    pub ack: bool,
    pub targets: Vec<String>,
    /// `threads` (a writer and an ack reader per connection) or `loop` (epoll loops).
    pub io: String,
    /// Generator processes merged into this report (1 for one run).
    pub generators: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slo: Vec<SloResult>,
}

fn add_hist(into: &mut Histogram<u64>, s: &str) -> Result<(), ReportError> {
    let h = hist_from_str(s)?;
    into.add(&h).map_err(|e| ReportError::Hist(format!("{e:?}")))
}

/// Merges reports of generators that ran at the same time against the same system:
/// counts and rates are summed, histograms merged (so percentiles are exact, not
/// averaged), per-second rows added second by second, the duration is the longest.
pub fn merge(reports: &[RunReport]) -> Result<RunReport, ReportError> {
    let first = reports.first().ok_or(ReportError::Empty)?;
    let mut m = RunReport {
        mode: first.mode.clone(),
        batch: first.batch,
        inflight: first.inflight,
        ack: first.ack,
        io: first.io.clone(),
        offered_rate: Some(0.0),
        ..Default::default()
    };
    let (mut ack, mut conn, mut fair) = (new_hist(), new_hist(), new_count_hist());
    let mut secs: Vec<(Second, Histogram<u64>)> = Vec::new();
    for r in reports {
        m.events_sent += r.events_sent;
        m.events_acked += r.events_acked;
        m.errors += r.errors;
        m.ack_timeouts += r.ack_timeouts;
        m.reconnects += r.reconnects;
        m.duration_s = m.duration_s.max(r.duration_s);
        m.events_per_sec += r.events_per_sec;
        m.bytes_per_sec += r.bytes_per_sec;
        m.bytes_sent += r.bytes_sent;
        m.frames_sent += r.frames_sent;
        m.offered_rate = match (m.offered_rate, r.offered_rate) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        m.achieved_rate += r.achieved_rate;
        m.connects += r.connects;
        m.connect_failures += r.connect_failures;
        m.churned += r.churned;
        m.events_sent_total += r.events_sent_total;
        m.events_acked_total += r.events_acked_total;
        m.connections += r.connections;
        m.generators += r.generators.max(1);
        for t in &r.targets {
            if !m.targets.contains(t) {
                m.targets.push(t.clone());
            }
        }
        if m.mode != r.mode {
            m.mode = "mixed".into();
        }
        if m.batch != r.batch {
            m.batch = 0;
        }
        if m.io != r.io {
            m.io = "mixed".into();
        }
        m.ack |= r.ack;
        add_hist(&mut ack, &r.ack_latency_hdr)?;
        add_hist(&mut conn, &r.connect_latency_hdr)?;
        if !r.fairness_hdr.is_empty() {
            fair.add(hist_from_str(&r.fairness_hdr)?).map_err(|e| ReportError::Hist(format!("{e:?}")))?;
        }
        if m.rate_per_sec.len() < r.rate_per_sec.len() {
            m.rate_per_sec.resize(r.rate_per_sec.len(), 0);
        }
        for (a, b) in m.rate_per_sec.iter_mut().zip(&r.rate_per_sec) {
            *a += b;
        }
        while secs.len() < r.per_second.len() {
            secs.push((Second::default(), new_hist()));
        }
        for ((row, h), s) in secs.iter_mut().zip(&r.per_second) {
            row.secs = row.secs.max(s.secs);
            row.events_sent += s.events_sent;
            row.events_acked += s.events_acked;
            add_hist(h, &s.ack_hdr)?;
        }
    }
    m.ack_latency_us = Latency::from_hist(&ack);
    m.ack_latency_hdr = hist_to_string(&ack);
    m.connect_latency_us = Latency::from_hist(&conn);
    m.connect_latency_hdr = hist_to_string(&conn);
    m.fairness = Fairness::from_hist(&fair, &first.fairness.counts);
    m.fairness_hdr = if fair.is_empty() { String::new() } else { hist_to_string(&fair) };
    m.per_second =
        secs.into_iter().map(|(row, h)| second_row(row.secs, row.events_sent, row.events_acked, &h)).collect();
    Ok(m)
}

/// A per-second row from its counts and its latency histogram.
pub fn second_row(secs: f64, sent: u64, acked: u64, h: &Histogram<u64>) -> Second {
    let l = Latency::from_hist(h);
    Second {
        secs,
        events_sent: sent,
        events_acked: acked,
        ack_p50: l.p50,
        ack_p99: l.p99,
        ack_max: l.max,
        ack_hdr: hist_to_string(h),
    }
}

/// The sink's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkReport {
    pub events_received: u64,
    pub bytes_received: u64,
    pub frames_received: u64,
    pub acks_sent: u64,
    pub connections: u64,
    pub bad_frames: u64,
    /// Sampled frames whose `size` option disagreed with their entries, plus large
    /// frames discarded unread that had no `size` (the sink counts unsampled
    /// PackedForward frames by `size`: any mismatch makes its counts suspect).
    #[serde(default)]
    pub size_mismatches: u64,
    /// CPU seconds the sink's worker threads used (published every 20 ms while busy):
    /// `events_received / worker_cpu_s` is what the sink can take on one CPU.
    #[serde(default)]
    pub worker_cpu_s: f64,
    pub duration_s: f64,
    pub events_per_sec: f64,
    pub e2e_latency_us: Latency,
    /// Events and bytes per tag.
    pub by_tag: std::collections::BTreeMap<String, TagCount>,
    /// Frames written to `--record` (0 without it).
    pub frames_recorded: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub events: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lat: &[u64], per_conn: &[u64], events: u64) -> RunReport {
        let mut h = new_hist();
        let mut f = new_count_hist();
        for &l in lat {
            h.record(l).unwrap();
        }
        for &c in per_conn {
            f.record(c).unwrap();
        }
        RunReport {
            events_sent: events,
            events_acked: events,
            events_per_sec: events as f64,
            duration_s: 1.0,
            connections: per_conn.len() as u32,
            ack_latency_us: Latency::from_hist(&h),
            ack_latency_hdr: hist_to_string(&h),
            fairness: Fairness::from_hist(&f, "events_acked"),
            fairness_hdr: hist_to_string(&f),
            per_second: vec![second_row(1.0, events, events, &h)],
            rate_per_sec: vec![events],
            generators: 1,
            ..Default::default()
        }
    }

    #[test]
    fn histograms_survive_the_round_trip() {
        let mut h = new_hist();
        for v in [1, 5, 900, 12_000, 3_000_000] {
            h.record(v).unwrap();
        }
        let back = hist_from_str(&hist_to_string(&h)).unwrap();
        assert_eq!(Latency::from_hist(&back), Latency::from_hist(&h));
        assert!(hist_from_str("not base64!").is_err());
    }

    #[test]
    fn merging_two_reports_equals_one_report_of_the_same_load() {
        let (a_lat, b_lat) = ([10u64, 20, 30, 4000], [15u64, 25, 9000]);
        let a = report(&a_lat, &[3, 1], 4);
        let b = report(&b_lat, &[3], 3);
        let all: Vec<u64> = a_lat.iter().chain(&b_lat).copied().collect();
        let one = report(&all, &[3, 1, 3], 7);
        let m = merge(&[a, b]).unwrap();
        assert_eq!(m.events_sent, one.events_sent);
        assert_eq!(m.events_acked, one.events_acked);
        assert_eq!(m.ack_latency_us, one.ack_latency_us);
        assert_eq!(m.fairness, one.fairness);
        assert_eq!(m.per_second, one.per_second);
        assert_eq!(m.rate_per_sec, one.rate_per_sec);
        assert_eq!(m.connections, 3);
        assert_eq!(m.generators, 2);
        assert!((m.events_per_sec - 7.0).abs() < 1e-9);
    }
}
