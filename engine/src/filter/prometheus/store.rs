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
use crate::metrics::{Histogram, Merge, Value, Visitor};
use crate::ruby::accessor::{array_len, ruby_index, Dug};
use crate::ruby::value::write_to_s;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use spate_protocol::encode::TimeFormat;
    use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

    use super::*;
    use crate::config::ConfigError;
    use crate::metrics::{Category, PluginSnapshot, Sample};
    use crate::plugin::PlanCtx;

    fn defs_in(pc: &mut PlanCtx<'_>, conf: &str) -> Result<Arc<Defs>, ConfigError> {
        let ctx = crate::config::EvalContext::from_process();
        let root = crate::config::parse_str(conf, "t.conf", std::path::Path::new("."), &ctx)?;
        Defs::parse(&root.elements[0], pc).map(Arc::new)
    }

    fn ctx() -> PlanCtx<'static> {
        PlanCtx::new(crate::registry::PLUGINS, crate::output::buffered::plan, vec![String::new()], "host1", 2)
    }

    fn defs(conf: &str) -> Arc<Defs> {
        defs_in(&mut ctx(), conf).expect("valid metrics")
    }

    fn batch(tag: &str, records: &[&str]) -> EventBatch {
        let mut entries = Vec::new();
        for r in records {
            let rec = spate_protocol::json::to_msgpack(r.as_bytes()).unwrap();
            spate_protocol::encode::entry(&mut entries, EventTime { sec: 1, nsec: 0 }, TimeFormat::EventTime, &rec);
        }
        EventBatch::from_entries(
            Bytes::from(tag.to_string()),
            Bytes::from(entries),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn samples(s: &Store) -> Vec<Sample> {
        let mut p = PluginSnapshot::new("p", Category::Filter, "prometheus");
        s.visit(&mut p);
        let mut u = p.user;
        u.sort_by(|a, b| (&a.name, &a.labels).partial_cmp(&(&b.name, &b.labels)).unwrap());
        u
    }

    fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
        l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn counts_per_tag_and_record_fields() {
        let d = defs(
            r#"<filter **>
  @type prometheus
  <labels>
    host ${hostname}
  </labels>
  <metric>
    name records_total
    type counter
    desc per tag
    <labels>
      tag ${tag}
      first ${tag_parts[0]}
      last ${tag_parts[-1]}
      prefix ${tag_prefix[1]}
      suffix ${tag_suffix[0]}
      worker ${worker_id}
    </labels>
  </metric>
  <metric>
    name bytes_total
    type counter
    desc bytes by level
    key size
    <labels>
      level $.level
      code ${code}
      first_arr ${arr[0]}
      k ${m["k"]}
      missing ${nope}
    </labels>
  </metric>
</filter>"#,
        );
        let s = Store::new(d, "p", "host1", 3);
        let b = batch(
            "app.web.x",
            &[
                r#"{"level":"info","code":200,"size":10,"arr":["a","b"],"m":{"k":"v"}}"#,
                r#"{"level":"info","code":200,"size":5.5,"arr":["a"],"m":{"k":"v"}}"#,
                r#"{"level":"warn","code":500,"size":"x"}"#,
                r#"{"level":"warn","size":-1}"#,
            ],
        );
        assert_eq!(s.instrument(&b), 2, "a string and a negative increment are errors");
        let got = samples(&s);
        let rec = got.iter().find(|x| x.name == "records_total").unwrap();
        assert_eq!(
            rec.labels,
            labels(&[
                ("host", "host1"),
                ("tag", "app.web.x"),
                ("first", "app"),
                ("last", "x"),
                ("prefix", "app.web"),
                ("suffix", "x"),
                ("worker", "3")
            ])
        );
        assert_eq!(rec.value, Value::Counter(4.0));
        let bytes: Vec<&Sample> = got.iter().filter(|x| x.name == "bytes_total").collect();
        assert_eq!(bytes.len(), 1);
        assert_eq!(
            bytes[0].labels,
            labels(&[
                ("host", "host1"),
                ("level", "info"),
                ("code", "200"),
                ("first_arr", "a"),
                ("k", "v"),
                ("missing", "${nope}")
            ])
        );
        assert_eq!(bytes[0].value, Value::Counter(15.5));
        assert_eq!(s.errors.get(), 2);
    }

    #[test]
    fn gauge_summary_histogram() {
        let d = defs(
            r#"<filter **>
  @type prometheus
  <metric>
    name temp
    type gauge
    desc last value
    key $.v.t
  </metric>
  <metric>
    name lat_seconds
    type histogram
    desc latency
    key lat
    buckets 0.1, 1, 10
  </metric>
  <metric>
    name lat_summary
    type summary
    desc latency summary
    key lat
  </metric>
</filter>"#,
        );
        let s = Store::new(d, "p", "h", 0);
        s.instrument(&batch("t", &[r#"{"v":{"t":3},"lat":0.05}"#, r#"{"v":{"t":7},"lat":5}"#, r#"{"lat":null}"#]));
        let got = samples(&s);
        assert_eq!(got.iter().find(|x| x.name == "temp").unwrap().value, Value::Gauge(7.0, Merge::Sum));
        let Value::Histogram(h) = &got.iter().find(|x| x.name == "lat_seconds").unwrap().value else { panic!() };
        assert_eq!(h.bounds, vec![0.1, 1.0, 10.0]);
        assert_eq!(h.counts, vec![1, 0, 1, 0]);
        assert_eq!(h.count, 2);
        assert_eq!(got.iter().find(|x| x.name == "lat_summary").unwrap().value, Value::Summary { sum: 5.05, count: 2 });
    }

    #[test]
    fn initialized_series_exist_before_any_event() {
        let d = defs(
            r#"<filter **>
  @type prometheus
  <metric>
    name status_total
    type counter
    desc by status
    initialized true
    <labels>
      status $.status
      worker ${worker_id}
      fixed x
    </labels>
    <initlabels>
      status 200
    </initlabels>
    <initlabels>
      status 500
    </initlabels>
  </metric>
</filter>"#,
        );
        let s = Store::new(d, "p", "h", 1);
        let got = samples(&s);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels, labels(&[("status", "200"), ("worker", "1"), ("fixed", "x")]));
        assert_eq!(got[0].value, Value::Counter(0.0));
    }

    #[test]
    fn configuration_errors_are_the_plugins() {
        let bad = |m: &str| {
            defs_in(&mut ctx(), &format!("<filter **>\n@type prometheus\n<metric>\n{m}\n</metric>\n</filter>"))
                .unwrap_err()
                .msg
        };
        assert!(bad("type counter\ndesc d").contains("metric requires 'name' option"));
        assert!(bad("name x\ntype counter").contains("metric requires 'desc' option"));
        assert!(bad("name x\ndesc d").contains("type option must be 'counter', 'gauge', 'summary' or 'histogram'"));
        assert!(bad("name x\ndesc d\ntype gauge").contains("gauge metric requires 'key' option"));
        assert!(bad("name 1x\ndesc d\ntype counter").contains("must match"));
        assert!(bad("name x\ndesc d\ntype histogram\nkey v\nbuckets 5,1").contains("sorted"));
        assert!(!bad("name x\ndesc d\ntype counter\n<labels>\na $['x'\n</labels>").is_empty(), "a broken accessor");
        assert!(bad("name x\ndesc d\ntype counter\ninitialized true\n<labels>\na $.a\n</labels>")
            .contains("has not been set in a <initlabels>"));
        assert!(bad("name x\ndesc d\ntype counter\ninitialized true\n<labels>\na b\n</labels>\n<initlabels>\na c\n</initlabels>")
            .contains("Cannot set <initlabels> on non RecordAccessor/Placeholder key a"));
        // One registry per process: a name registered with another type is refused.
        let mut pc = ctx();
        defs_in(&mut pc, "<filter **>\n@type prometheus\n<metric>\nname x\ndesc d\ntype counter\n</metric>\n</filter>")
            .unwrap();
        let e = defs_in(
            &mut pc,
            "<filter **>\n@type prometheus\n<metric>\nname x\ndesc d\ntype gauge\nkey v\n</metric>\n</filter>",
        )
        .unwrap_err();
        assert!(e.msg.contains("already been registered"), "{}", e.msg);
    }

    #[test]
    fn label_sets_are_bounded() {
        let d = defs("<filter **>\n@type prometheus\n<metric>\nname n_total\ndesc d\ntype counter\n<labels>\nid $.id\n</labels>\n</metric>\n</filter>");
        let s = Store::new(d, "p", "h", 0);
        let recs: Vec<String> = (0..MAX_SERIES + 50).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
        let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
        s.instrument(&batch("t", &refs));
        assert_eq!(samples(&s).len(), MAX_SERIES);
    }
}
