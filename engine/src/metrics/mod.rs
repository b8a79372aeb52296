//! spate's metrics: what a plugin counts and how those counts are read.
//!
//! Counters live on the shard that counts them, in plain `Cell`s (no atomics, nothing
//! shared across shards on the data path). A plugin exposes them through one trait
//! method, `visit_metrics(&self, &mut dyn Visitor)` on `Input`, `Filter` and `Output`
//! (default: nothing), which reports each value by name. Readers (the monitor_agent and
//! Prometheus endpoints) never touch another shard's cells: they ask every shard for a
//! [`ShardSnapshot`] through the [`hub::Hub`] and sum the answers ([`merge`]).
//!
//! Names reported through the visitor are fluentd's where fluentd has one (the
//! monitor_agent keys: `emit_records`, `write_count`, `buffer_queue_length`...) and
//! spate's own otherwise; [`prom`] turns them into `spate_*` families and
//! fluent-plugin-prometheus's `fluentd_*` families, [`monitor`] into monitor_agent
//! JSON.

pub mod hub;
pub mod monitor;
pub mod output;
pub mod prom;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Bucket upper bounds (seconds) of spate's latency histograms (ack, flush, group
/// commit): 100 µs to 30 s, roughly 1-2.5-5 per decade.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A histogram on one shard: per-bucket counts (not cumulative), sum and count, in
/// `Cell`s. Observing is a short scan of the bounds and three cell updates.
#[derive(Debug)]
pub struct Histogram {
    bounds: Rc<[f64]>,
    /// One per bound, plus the `+Inf` bucket.
    counts: Box<[Cell<u64>]>,
    sum: Cell<f64>,
    count: Cell<u64>,
}

impl Histogram {
    /// A histogram with the given upper bounds (ascending, finite).
    pub fn new(bounds: Rc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| Cell::new(0)).collect();
        Histogram { bounds, counts, sum: Cell::new(0.0), count: Cell::new(0) }
    }

    /// A latency histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Self {
        Histogram::new(Rc::from(LATENCY_BUCKETS))
    }

    #[inline]
    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.set(c.get() + 1);
        }
        self.sum.set(self.sum.get() + v);
        self.count.set(self.count.get() + 1);
    }

    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// `n` observations of the same value (several acks written at once).
    #[inline]
    pub fn observe_n(&self, v: f64, n: u64) {
        if n == 0 {
            return;
        }
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.set(c.get() + n);
        }
        self.sum.set(self.sum.get() + v * n as f64);
        self.count.set(self.count.get() + n);
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }

    pub fn snapshot(&self) -> HistSnap {
        HistSnap {
            bounds: self.bounds.to_vec(),
            counts: self.counts.iter().map(Cell::get).collect(),
            sum: self.sum.get(),
            count: self.count.get(),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::latency()
    }
}

/// A histogram as read from a shard (counts per bucket, `+Inf` last).
#[derive(Debug, Clone, PartialEq)]
pub struct HistSnap {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl HistSnap {
    fn add(&mut self, o: &HistSnap) {
        if self.bounds == o.bounds {
            for (a, b) in self.counts.iter_mut().zip(&o.counts) {
                *a += b;
            }
        } else {
            // Different buckets for one series cannot be summed bucket by bucket; keep
            // sum and count right and put the other's observations in +Inf.
            if let Some(last) = self.counts.last_mut() {
                *last += o.count;
            }
        }
        self.sum += o.sum;
        self.count += o.count;
    }
}

/// How the shards' values of one gauge combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Sum,
    Min,
    Max,
}

/// A value as read from a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64, Merge),
    Histogram(HistSnap),
    /// fluent-plugin-prometheus's summary (prometheus-client-ruby exports only sum and
    /// count).
    Summary {
        sum: f64,
        count: u64,
    },
}

impl Value {
    fn add(&mut self, o: &Value) {
        match (self, o) {
            (Value::Counter(a), Value::Counter(b)) => *a += b,
            (Value::Gauge(a, m), Value::Gauge(b, _)) => match m {
                Merge::Sum => *a += b,
                Merge::Min => *a = a.min(*b),
                Merge::Max => *a = a.max(*b),
            },
            (Value::Histogram(a), Value::Histogram(b)) => a.add(b),
            (Value::Summary { sum, count }, Value::Summary { sum: s2, count: c2 }) => {
                *sum += s2;
                *count += c2;
            }
            _ => {}
        }
    }

    /// The value as a number (histograms and summaries: their count).
    pub fn number(&self) -> f64 {
        match self {
            Value::Counter(v) | Value::Gauge(v, _) => *v,
            Value::Histogram(h) => h.count as f64,
            Value::Summary { count, .. } => *count as f64,
        }
    }
}

/// One named value with its help text and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub help: String,
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

/// The category fluentd's monitor_agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Input,
    Output,
    Filter,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Input => "input",
            Category::Output => "output",
            Category::Filter => "filter",
        }
    }
}

/// fluentd's retry state of a buffered output (monitor_agent's `retry` object).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryState {
    /// When the first failure of the retried chunk happened (Unix seconds).
    pub start: f64,
    /// Retries so far.
    pub steps: u32,
    /// When the next attempt is due (Unix seconds).
    pub next_time: f64,
}

/// What a plugin reports its values to. Implemented by the reader; plugins only call it.
pub trait Visitor {
    /// A monotonic count.
    fn counter(&mut self, name: &'static str, help: &'static str, v: u64);
    /// A current level; `merge` says how shards combine.
    fn gauge(&mut self, name: &'static str, help: &'static str, v: f64, merge: Merge);
    /// A latency or size distribution.
    fn histogram(&mut self, name: &'static str, help: &'static str, h: &Histogram);
    /// A buffered output's time slices in its buffer (monitor_agent's `buffer_timekeys`).
    fn timekeys(&mut self, _keys: &mut dyn Iterator<Item = i64>) {}
    /// A buffered output that is retrying.
    fn retry(&mut self, _r: RetryState) {}
    /// A metric the user defined (fluent-plugin-prometheus's `<metric>`): exported under
    /// its own name, with its own labels.
    fn user(&mut self, _name: &str, _help: &str, _labels: &[(&str, &str)], _v: Value) {}
}

/// One plugin's values from one shard.
#[derive(Debug, Clone)]
pub struct PluginSnapshot {
    pub id: String,
    pub category: Category,
    pub type_name: String,
    pub samples: Vec<Sample>,
    /// A buffered output reported its buffer (monitor_agent shows the buffer keys).
    pub buffered: bool,
    pub timekeys: Vec<i64>,
    pub retry: Option<RetryState>,
    pub user: Vec<Sample>,
}

impl PluginSnapshot {
    pub fn new(id: &str, category: Category, type_name: &str) -> Self {
        PluginSnapshot {
            id: id.to_string(),
            category,
            type_name: type_name.to_string(),
            samples: Vec::new(),
            buffered: false,
            timekeys: Vec::new(),
            retry: None,
            user: Vec::new(),
        }
    }

    /// The value named `name`, if the plugin reported one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.samples.iter().find(|s| s.name == name).map(|s| &s.value)
    }

    fn add(&mut self, o: &PluginSnapshot) {
        for s in &o.samples {
            match self.samples.iter_mut().find(|x| x.name == s.name && x.labels == s.labels) {
                Some(x) => x.value.add(&s.value),
                None => self.samples.push(s.clone()),
            }
        }
        merge_user(&mut self.user, &o.user);
        self.buffered |= o.buffered;
        for k in &o.timekeys {
            if !self.timekeys.contains(k) {
                self.timekeys.push(*k);
            }
        }
        self.retry = match (self.retry, o.retry) {
            (Some(a), Some(b)) => Some(RetryState {
                start: a.start.min(b.start),
                steps: a.steps.max(b.steps),
                next_time: a.next_time.min(b.next_time),
            }),
            (a, b) => a.or(b),
        };
    }
}

fn merge_user(into: &mut Vec<Sample>, from: &[Sample]) {
    for s in from {
        match into.iter_mut().find(|x| x.name == s.name && x.labels == s.labels) {
            Some(x) => x.value.add(&s.value),
            None => into.push(s.clone()),
        }
    }
}

impl Visitor for PluginSnapshot {
    fn counter(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.samples.push(Sample {
            name: name.into(),
            help: help.into(),
            labels: Vec::new(),
            value: Value::Counter(v as f64),
        });
    }
    fn gauge(&mut self, name: &'static str, help: &'static str, v: f64, merge: Merge) {
        self.samples.push(Sample {
            name: name.into(),
            help: help.into(),
            labels: Vec::new(),
            value: Value::Gauge(v, merge),
        });
    }
    fn histogram(&mut self, name: &'static str, help: &'static str, h: &Histogram) {
        self.samples.push(Sample {
            name: name.into(),
            help: help.into(),
            labels: Vec::new(),
            value: Value::Histogram(h.snapshot()),
        });
    }
    fn timekeys(&mut self, keys: &mut dyn Iterator<Item = i64>) {
        self.buffered = true;
        for k in keys {
            if !self.timekeys.contains(&k) {
                self.timekeys.push(k);
            }
        }
    }
    fn retry(&mut self, r: RetryState) {
        self.retry = Some(r);
    }
    fn user(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: Value) {
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match self.user.iter_mut().find(|x| x.name == name && x.labels == labels) {
            Some(x) => x.value.add(&v),
            None => self.user.push(Sample { name: name.into(), help: help.into(), labels, value: v }),
        }
    }
}

/// One configured plugin, as monitor_agent lists it.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub id: String,
    pub category: Category,
    /// `@type` as written (fluentd shows `config['@type']`, so an alias stays an alias).
    pub type_name: String,
    /// The section's parameters (not its subsections), secrets masked.
    pub config: Vec<(String, String)>,
    /// A top-level `<match>`'s pattern (monitor_agent's `?tag=` looks outputs up by it).
    pub pattern: Option<String>,
}

/// The plugins of one configuration generation, in fluentd's monitor_agent order:
/// inputs, then per label (the top level first) its outputs (copy's stores after the
/// copy) and its filters.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Counts reloads: 0 for the configuration spate started with.
    pub generation: u64,
    pub plugins: Vec<PluginInfo>,
}

/// Everything one shard reported for one request.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: usize,
    /// The configuration generation the shard runs (plugin order, configs).
    pub catalog: Arc<Catalog>,
    pub plugins: Vec<PluginSnapshot>,
    /// Values of the shard itself (group commit, log events).
    pub shard_values: Vec<Sample>,
}

/// Every shard's snapshot and their sum per plugin.
#[derive(Debug, Clone)]
pub struct Merged {
    pub catalog: Arc<Catalog>,
    /// Per plugin, summed over shards, in the catalog's plugin order (fluentd's
    /// monitor_agent order), then any plugin the plan does not list.
    pub plugins: Vec<PluginSnapshot>,
    /// Shard values summed over shards.
    pub shard_values: Vec<Sample>,
    /// The shards' own snapshots, by shard.
    pub shards: Vec<ShardSnapshot>,
}

/// Sums shard snapshots. The newest catalog (highest generation) decides the order.
pub fn merge(mut shards: Vec<ShardSnapshot>) -> Option<Merged> {
    shards.sort_by_key(|s| s.shard);
    let catalog = shards.iter().max_by_key(|s| s.catalog.generation)?.catalog.clone();
    let mut plugins: Vec<PluginSnapshot> = Vec::new();
    let mut shard_values: Vec<Sample> = Vec::new();
    for s in &shards {
        for p in &s.plugins {
            match plugins.iter_mut().find(|x| x.id == p.id && x.category == p.category) {
                Some(x) => x.add(p),
                None => plugins.push(p.clone()),
            }
        }
        for v in &s.shard_values {
            match shard_values.iter_mut().find(|x| x.name == v.name && x.labels == v.labels) {
                Some(x) => x.value.add(&v.value),
                None => shard_values.push(v.clone()),
            }
        }
    }
    for p in &mut plugins {
        p.timekeys.sort_unstable();
    }
    let pos = |p: &PluginSnapshot| {
        catalog.plugins.iter().position(|i| i.id == p.id && i.category == p.category).unwrap_or(usize::MAX)
    };
    plugins.sort_by_key(pos);
    Some(Merged { catalog, plugins, shard_values, shards })
}

/// The names plugins report (so readers and plugins agree on spelling).
pub mod names {
    // fluentd's keys (monitor_agent / fluent-plugin-prometheus).
    pub const EMIT_RECORDS: &str = "emit_records";
    pub const EMIT_SIZE: &str = "emit_size";
    pub const EMIT_COUNT: &str = "emit_count";
    pub const WRITE_COUNT: &str = "write_count";
    pub const WRITE_SECONDARY_COUNT: &str = "write_secondary_count";
    pub const ROLLBACK_COUNT: &str = "rollback_count";
    /// fluentd's `num_errors`, which monitor_agent calls `retry_count`.
    pub const RETRY_COUNT: &str = "retry_count";
    pub const SLOW_FLUSH_COUNT: &str = "slow_flush_count";
    pub const FLUSH_TIME_COUNT: &str = "flush_time_count";
    pub const DROP_OLDEST_CHUNK_COUNT: &str = "drop_oldest_chunk_count";
    pub const BUFFER_QUEUE_LENGTH: &str = "buffer_queue_length";
    pub const BUFFER_STAGE_LENGTH: &str = "buffer_stage_length";
    pub const BUFFER_QUEUE_BYTE_SIZE: &str = "buffer_queue_byte_size";
    pub const BUFFER_STAGE_BYTE_SIZE: &str = "buffer_stage_byte_size";
    pub const BUFFER_TOTAL_LIMIT_SIZE: &str = "buffer_total_limit_size";
    pub const BUFFER_NEWEST_TIMEKEY: &str = "buffer_newest_timekey";
    pub const BUFFER_OLDEST_TIMEKEY: &str = "buffer_oldest_timekey";
}

pub use crate::config::dump::is_secret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_merge() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(50));
        h.observe_duration(Duration::from_millis(3));
        h.observe(100.0);
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[5], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(*s.counts.last().unwrap(), 1, "100 s is in +Inf");
        let mut v = Value::Histogram(s.clone());
        v.add(&Value::Histogram(s));
        let Value::Histogram(m) = v else { panic!() };
        assert_eq!(m.count, 6);
        assert_eq!(m.counts[0], 2);
    }

    #[test]
    fn gauges_merge_by_policy() {
        let mut a = Value::Gauge(3.0, Merge::Min);
        a.add(&Value::Gauge(1.0, Merge::Min));
        assert_eq!(a, Value::Gauge(1.0, Merge::Min));
        let mut b = Value::Gauge(3.0, Merge::Max);
        b.add(&Value::Gauge(5.0, Merge::Max));
        assert_eq!(b, Value::Gauge(5.0, Merge::Max));
        let mut c = Value::Gauge(3.0, Merge::Sum);
        c.add(&Value::Gauge(5.0, Merge::Sum));
        assert_eq!(c, Value::Gauge(8.0, Merge::Sum));
    }
}
