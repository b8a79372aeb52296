//! The JSON reports (a stable interface, documented in loadgen/README.md) and latency
//! summaries from HDR histograms (microseconds).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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

/// The generator's report.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// Events sent including the warmup.
    pub events_sent_total: u64,
    /// Events acked including the warmup.
    pub events_acked_total: u64,
    /// Events sent in each second of the measured phase.
    pub rate_per_sec: Vec<u64>,
    pub mode: String,
    pub connections: u32,
    pub batch: u32,
    pub inflight: u32,
    pub ack: bool,
    pub targets: Vec<String>,
}

/// The sink's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkReport {
    pub events_received: u64,
    pub bytes_received: u64,
    pub frames_received: u64,
    pub acks_sent: u64,
    pub connections: u64,
    pub bad_frames: u64,
    pub duration_s: f64,
    pub events_per_sec: f64,
    pub e2e_latency_us: Latency,
    /// Events and bytes per tag.
    pub by_tag: std::collections::BTreeMap<String, TagCount>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TagCount {
    pub events: u64,
    pub bytes: u64,
}
