//! The series of a prometheus filter's or output's `<metric>`s on one shard.
//!
//! Per event and metric, the label values are written into one reused scratch buffer
//! and looked up in the metric's series map by those bytes: no allocation unless the
//! event opens a new series. A counter without `key` whose labels depend only on the
//! tag is counted once per batch. Label values come from records (untrusted), so each
//! metric holds at most [`MAX_SERIES`] series per shard; events that would open more
//! are not counted (with one warning). A value that is not a number (or a negative
//! counter increment, or an accessor digging into a scalar) is not counted either: the
//! plugin logs "failed to instrument a metric" for those; here the first and every
//! 10,000th are logged and all are counted (`instrument_errors`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use spate_protocol::msgpack::Kind as MKind;
use spate_protocol::{EventBatch, RecordRef, ValueRef};

use super::metric::{template_text, Defs, LabelDef, MetricDef, MetricKind, Piece};
use crate::filter::grep::{array_len, ruby_index, write_to_s, Dug};
use crate::metrics::{Histogram, Merge, Value, Visitor};

/// Series per metric per shard, beyond which new label sets are not counted.
pub const MAX_SERIES: usize = 10_000;

enum SeriesVal {
    Counter(Cell<f64>),
    Gauge(Cell<f64>),
    Summary(Cell<f64>, Cell<u64>),
    Histogram(Histogram),
}

impl SeriesVal {
    fn new(d: &MetricDef, buckets: &Rc<[f64]>) -> SeriesVal {
        match d.kind {
            MetricKind::Counter => SeriesVal::Counter(Cell::new(0.0)),
            MetricKind::Gauge => SeriesVal::Gauge(Cell::new(0.0)),
            MetricKind::Summary => SeriesVal::Summary(Cell::new(0.0), Cell::new(0)),
            MetricKind::Histogram => SeriesVal::Histogram(Histogram::new(buckets.clone())),
        }
    }

    fn value(&self) -> Value {
        match self {
            SeriesVal::Counter(c) => Value::Counter(c.get()),
            SeriesVal::Gauge(c) => Value::Gauge(c.get(), Merge::Sum),
            SeriesVal::Summary(s, n) => Value::Summary { sum: s.get(), count: n.get() },
            SeriesVal::Histogram(h) => Value::Histogram(h.snapshot()),
        }
    }
}

struct State {
    series: RefCell<HashMap<Box<[u8]>, SeriesVal>>,
    buckets: Rc<[f64]>,
    full_warned: Cell<bool>,
    unknown_warned: Cell<bool>,
}

/// Why an event was not counted by a metric (fluentd logs "prometheus: failed to
/// instrument a metric." for these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// The value is nil (or false, for gauges, summaries and histograms): not counted,
    /// silently, as the plugin does.
    Nil,
    Error(&'static str),
}

/// One shard's series of a plugin's metrics.
pub struct Store {
    defs: std::sync::Arc<Defs>,
    states: Vec<State>,
    hostname: String,
    worker_id: String,
    scratch: RefCell<Vec<u8>>,
    parts: RefCell<Vec<(usize, usize)>>,
    /// Events a metric could not count (bad value type, negative counter increment,
    /// failed record accessor); reported as `instrument_errors`.
    pub errors: Cell<u64>,
    pub id: String,
}

impl Store {
    pub fn new(defs: std::sync::Arc<Defs>, id: &str, hostname: &str, shard: usize) -> Store {
        let states = defs
            .defs
            .iter()
            .map(|d| State {
                series: RefCell::new(HashMap::new()),
                buckets: Rc::from(d.buckets.as_slice()),
                full_warned: Cell::new(false),
                unknown_warned: Cell::new(false),
            })
            .collect();
        let s = Store {
            defs,
            states,
            hostname: hostname.to_string(),
            worker_id: shard.to_string(),
            scratch: RefCell::new(Vec::new()),
            parts: RefCell::new(Vec::new()),
            errors: Cell::new(0),
            id: id.to_string(),
        };
        s.init_series();
        s
    }

    fn init_series(&self) {
        let mut key = Vec::new();
        for (d, st) in self.defs.defs.iter().zip(&self.states) {
            for set in &d.init {
                key.clear();
                for p in set {
                    let at = begin_value(&mut key);
                    match p {
                        Piece::Lit(s) => key.extend_from_slice(s.as_bytes()),
                        Piece::Hostname => key.extend_from_slice(self.hostname.as_bytes()),
                        Piece::WorkerId => key.extend_from_slice(self.worker_id.as_bytes()),
                        other => key.extend_from_slice(template_text(other).as_bytes()),
                    }
                    end_value(&mut key, at);
                }
                st.series
                    .borrow_mut()
                    .entry(key.clone().into_boxed_slice())
                    .or_insert_with(|| SeriesVal::new(d, &st.buckets));
            }
        }
    }

    /// Counts a batch into every metric. Returns how many (event, metric) pairs failed.
    pub fn instrument(&self, batch: &EventBatch) -> u64 {
        let tag = &batch.tag[..];
        {
            let mut parts = self.parts.borrow_mut();
            parts.clear();
            let mut start = 0;
            for (i, b) in tag.iter().enumerate() {
                if *b == b'.' {
                    parts.push((start, i));
                    start = i + 1;
                }
            }
            parts.push((start, tag.len()));
        }
        let mut errors = 0u64;
        let mut scratch = self.scratch.borrow_mut();
        let mut per_event = false;
        for (d, st) in self.defs.defs.iter().zip(&self.states) {
            if d.tag_only && d.kind == MetricKind::Counter && d.key.is_none() {
                scratch.clear();
                self.render_labels(d, st, tag, None, &mut scratch);
                self.update(d, st, &scratch, batch.count as f64);
            } else {
                per_event = true;
            }
        }
        if per_event {
            for ev in batch.events() {
                for (d, st) in self.defs.defs.iter().zip(&self.states) {
                    if d.tag_only && d.kind == MetricKind::Counter && d.key.is_none() {
                        continue;
                    }
                    let v = match value_of(d, ev.record) {
                        Ok(v) => v,
                        Err(Skip::Nil) => continue,
                        Err(Skip::Error(why)) => {
                            errors += 1;
                            self.note_error(d, why);
                            continue;
                        }
                    };
                    scratch.clear();
                    if !self.render_labels(d, st, tag, Some(ev.record), &mut scratch) {
                        errors += 1;
                        self.note_error(d, "a label's record accessor failed (digging into a non-container)");
                        continue;
                    }
                    self.update(d, st, &scratch, v);
                }
            }
        }
        self.errors.set(self.errors.get() + errors);
        errors
    }

    fn note_error(&self, d: &MetricDef, why: &str) {
        let n = self.errors.get() + 1;
        if n == 1 || n.is_multiple_of(10_000) {
            crate::warn!(
                "{}: prometheus: failed to instrument a metric. name=\"{}\" error=\"{why}\" ({n} so far)",
                self.id,
                d.name
            );
        }
    }

    fn update(&self, d: &MetricDef, st: &State, key: &[u8], v: f64) {
        let mut map = st.series.borrow_mut();
        let s = match map.get(key) {
            Some(s) => s,
            None => {
                if map.len() >= MAX_SERIES {
                    if !st.full_warned.replace(true) {
                        crate::warn!(
                            "{}: prometheus metric {} has {MAX_SERIES} label sets on this shard; events with new label values are not counted",
                            self.id,
                            d.name
                        );
                    }
                    return;
                }
                map.entry(key.to_vec().into_boxed_slice()).or_insert_with(|| SeriesVal::new(d, &st.buckets))
            }
        };
        match s {
            SeriesVal::Counter(c) => c.set(c.get() + v),
            SeriesVal::Gauge(c) => c.set(v),
            SeriesVal::Summary(sum, n) => {
                sum.set(sum.get() + v);
                n.set(n.get() + 1);
            }
            SeriesVal::Histogram(h) => h.observe(v),
        }
    }

    /// Writes the label values (length-prefixed) into `out`. `false`: an accessor failed.
    fn render_labels(
        &self,
        d: &MetricDef,
        st: &State,
        tag: &[u8],
        rec: Option<RecordRef<'_>>,
        out: &mut Vec<u8>,
    ) -> bool {
        for (_, _, def) in &d.labels.0 {
            let at = begin_value(out);
            match def {
                LabelDef::Accessor(a) => match rec.map(|r| a.dig(r)) {
                    Some(Dug::Value(v)) => write_to_s(v, out),
                    Some(Dug::Nil) | None => {}
                    Some(Dug::TypeError) => return false,
                },
                LabelDef::Template(pieces) => {
                    for p in pieces {
                        if !self.expand(p, tag, rec, out) {
                            let text = template_text(p);
                            if !st.unknown_warned.replace(true) {
                                crate::warn!(
                                    "{}: prometheus: unknown placeholder `{text}` found (metric {})",
                                    self.id,
                                    d.name
                                );
                            }
                            out.extend_from_slice(text.as_bytes());
                        }
                    }
                }
            }
            end_value(out, at);
        }
        true
    }

    fn expand(&self, p: &Piece, tag: &[u8], rec: Option<RecordRef<'_>>, out: &mut Vec<u8>) -> bool {
        let parts = self.parts.borrow();
        let n = parts.len();
        match p {
            Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
            Piece::Unknown(_) => return false,
            Piece::Tag => out.extend_from_slice(tag),
            Piece::TagParts(i) => match ruby_index(n, *i).and_then(|i| parts.get(i)) {
                Some((a, b)) => out.extend_from_slice(&tag[*a..*b]),
                None => return false,
            },
            Piece::TagPrefix(i) => match parts.get(*i as usize) {
                Some((_, b)) => out.extend_from_slice(&tag[..*b]),
                None => return false,
            },
            Piece::TagSuffix(i) => match n.checked_sub(1 + *i as usize).and_then(|j| parts.get(j)) {
                Some((a, _)) => out.extend_from_slice(&tag[*a..]),
                None => return false,
            },
            Piece::Hostname => out.extend_from_slice(self.hostname.as_bytes()),
            Piece::WorkerId => out.extend_from_slice(self.worker_id.as_bytes()),
            Piece::Field(k) => match rec.and_then(|r| r.get(k)) {
                Some(v) if !matches!(v.kind(), MKind::Array | MKind::Map) => write_to_s(v, out),
                _ => return false,
            },
            Piece::FieldIndex(k, i) => {
                let Some(v) = rec.and_then(|r| r.get(k)).filter(|v| v.kind() == MKind::Array) else { return false };
                let Some(pos) = array_len(v).and_then(|len| ruby_index(len, *i)) else { return false };
                match v.as_array().and_then(|mut a| a.nth(pos)) {
                    Some(x) => write_to_s(x, out),
                    None => return false,
                }
            }
            Piece::FieldKey(k, x) => {
                let Some(m) = rec.and_then(|r| r.get(k)).and_then(|v| v.as_map()) else { return false };
                match m.get(x) {
                    Some(v) => write_to_s(v, out),
                    None => return false,
                }
            }
        }
        true
    }

    /// Reports every series to `v` under the metric's own name.
    pub fn visit(&self, v: &mut dyn Visitor) {
        let mut owned: Vec<(String, String)> = Vec::new();
        for (d, st) in self.defs.defs.iter().zip(&self.states) {
            for (key, s) in st.series.borrow().iter() {
                owned.clear();
                let mut rest = &key[..];
                for (name, _, _) in &d.labels.0 {
                    let (val, r) = take_value(rest);
                    rest = r;
                    owned.push((name.clone(), String::from_utf8_lossy(val).into_owned()));
                }
                let labels: Vec<(&str, &str)> = owned.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                v.user(&d.name, &d.desc, &labels, s.value());
            }
        }
        v.counter("instrument_errors", "Events a <metric> could not count (bad value or accessor).", self.errors.get());
    }
}

fn begin_value(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    at
}

fn end_value(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

fn take_value(b: &[u8]) -> (&[u8], &[u8]) {
    let Some(len) = b.get(..4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize) else {
        return (&[], &[]);
    };
    match b.get(4..4 + len) {
        Some(v) => (v, &b[4 + len..]),
        None => (&[], &[]),
    }
}

/// The value a metric counts for a record (prometheus-client-ruby's checks).
fn value_of(d: &MetricDef, rec: RecordRef<'_>) -> Result<f64, Skip> {
    let Some(key) = &d.key else { return Ok(1.0) };
    let v: ValueRef<'_> = match key.dig(rec) {
        Dug::Value(v) => v,
        Dug::Nil => return Err(Skip::Nil),
        Dug::TypeError => return Err(Skip::Error("the key's record accessor digs into a non-container")),
    };
    let num = match v.kind() {
        MKind::Nil => return Err(Skip::Nil),
        MKind::Bool if v.as_bool() == Some(false) && d.kind != MetricKind::Counter => return Err(Skip::Nil),
        MKind::UInt | MKind::NegInt => v.as_i64().map(|x| x as f64).or_else(|| v.as_f64()),
        MKind::F32 | MKind::F64 => v.as_f64(),
        _ => None,
    };
    let Some(num) = num else { return Err(Skip::Error("the value is not a number")) };
    if d.kind == MetricKind::Counter && num < 0.0 {
        return Err(Skip::Error("increment must be a non-negative number"));
    }
    Ok(num)
}
