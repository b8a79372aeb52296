//! fluent-plugin-prometheus's `<metric>` sections, shared by `<filter> @type prometheus`
//! and `<match> @type prometheus`: their parsing and validation (the plugin's own rules
//! and error texts: `type`, `name`, `desc`, `key`, `buckets`, `initialized`,
//! `<labels>` with record accessors and `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`,
//! `${tag_suffix[N]}`, `${hostname}`, `${worker_id}` and record-field placeholders,
//! `<initlabels>`), and the per-shard series they count into.
//!
//! Per event and metric, the label values are written into one reused scratch buffer
//! and looked up in the metric's series map by those bytes: no allocation unless the
//! event opens a new series. A counter without `key` whose labels depend only on the
//! tag is counted once per batch. Label values come from records (untrusted), so each
//! metric holds at most [`MAX_SERIES`] series per shard; events that would open more
//! are not counted (with one warning).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use spate_protocol::msgpack::Kind as MKind;
use spate_protocol::{EventBatch, RecordRef, ValueRef};

use crate::config::{ConfigError, Element};
use crate::filter::grep::{array_len, ruby_index, write_to_s, Accessor, Dug};
use crate::metrics::{Histogram, Merge, Value, Visitor};
use crate::plugin::PlanCtx;

/// Series per metric per shard, beyond which new label sets are not counted.
pub const MAX_SERIES: usize = 10_000;

/// prometheus-client-ruby's default histogram buckets.
const DEFAULT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Summary,
    Histogram,
}

impl MetricKind {
    fn word(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One piece of a label template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Tag,
    TagParts(i64),
    TagPrefix(i64),
    TagSuffix(i64),
    /// `${hostname}`, `${worker_id}`: fixed per shard (filled in at build).
    Hostname,
    WorkerId,
    /// `${key}`: a top-level record field (its Ruby `to_s`).
    Field(Vec<u8>),
    /// `${key[N]}`: an element of an array field.
    FieldIndex(Vec<u8>, i64),
    /// `${key["k"]}`: a value of a map field.
    FieldKey(Vec<u8>, Vec<u8>),
    /// A placeholder that can never be expanded (`${tag_prefix[-1]}`...): kept as text.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
enum LabelDef {
    /// `$.a.b` / `$['a']`.
    Accessor(Accessor),
    Template(Vec<Piece>),
}

impl LabelDef {
    fn parse(v: &str) -> LabelDef {
        if v.starts_with("$.") || v.starts_with("$[") {
            if let Ok(a) = Accessor::parse(v) {
                return LabelDef::Accessor(a);
            }
        }
        LabelDef::Template(parse_template(v))
    }

    /// Depends on the record (not only on the tag, host and worker).
    fn uses_record(&self) -> bool {
        match self {
            LabelDef::Accessor(_) => true,
            LabelDef::Template(p) => {
                p.iter().any(|x| matches!(x, Piece::Field(_) | Piece::FieldIndex(..) | Piece::FieldKey(..)))
            }
        }
    }

    fn is_dynamic(&self, raw: &str) -> bool {
        matches!(self, LabelDef::Accessor(_)) || raw.starts_with("${")
    }
}

/// Splits a label value into text and placeholders, as the plugin's
/// `/(\${[^\[}]+(\[[^\]]+\])?})/` finds them.
fn parse_template(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        lit.push_str(&rest[..i]);
        let body = &rest[i + 2..];
        let name_len = body.find(['[', '}']).unwrap_or(body.len());
        let name = &body[..name_len];
        let after = &body[name_len..];
        let (index, tail) = if let Some(a) = after.strip_prefix('[') {
            match a.find(']') {
                Some(j) if j > 0 && a[j + 1..].starts_with('}') => (Some(&a[..j]), &a[j + 2..]),
                _ => (None, ""),
            }
        } else if let Some(t) = after.strip_prefix('}') {
            (None, t)
        } else {
            (None, "")
        };
        let whole_len = rest.len() - i - tail.len();
        let ok = !name.is_empty() && (after.starts_with('}') || index.is_some());
        if !ok {
            // Not a placeholder: keep "${" and go on after it.
            lit.push_str("${");
            rest = body;
            continue;
        }
        let whole = &rest[i..i + whole_len];
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        out.push(placeholder(name, index, whole));
        rest = tail;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn placeholder(name: &str, index: Option<&str>, whole: &str) -> Piece {
    let int = index.and_then(|i| i.parse::<i64>().ok());
    match (name, index) {
        ("tag", None) => Piece::Tag,
        ("tag_parts", Some(_)) => int.map_or(Piece::Unknown(whole.into()), Piece::TagParts),
        // The plugin builds only non-negative prefix/suffix indices.
        ("tag_prefix", Some(_)) => int.filter(|i| *i >= 0).map_or(Piece::Unknown(whole.into()), Piece::TagPrefix),
        ("tag_suffix", Some(_)) => int.filter(|i| *i >= 0).map_or(Piece::Unknown(whole.into()), Piece::TagSuffix),
        ("tag" | "tag_parts" | "tag_prefix" | "tag_suffix", _) => Piece::Unknown(whole.into()),
        ("hostname", None) => Piece::Hostname,
        ("worker_id", None) => Piece::WorkerId,
        ("hostname" | "worker_id", Some(_)) => Piece::Unknown(whole.into()),
        (n, None) => Piece::Field(n.as_bytes().to_vec()),
        (n, Some(i)) => {
            if let Some(k) = i.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Piece::FieldKey(n.as_bytes().to_vec(), k.as_bytes().to_vec())
            } else {
                match int {
                    Some(ix) => Piece::FieldIndex(n.as_bytes().to_vec(), ix),
                    None => Piece::Unknown(whole.into()),
                }
            }
        }
    }
}

/// `<labels>` of a plugin or a metric, in order.
#[derive(Debug, Clone, Default)]
pub struct Labels(Vec<(String, String, LabelDef)>);

impl Labels {
    /// Reads the (at most one) `<labels>` section of `e`.
    pub fn parse(e: &Element) -> Result<Labels, ConfigError> {
        let mut it = e.elements_named("labels");
        let Some(l) = it.next() else { return Ok(Labels::default()) };
        if let Some(second) = it.next() {
            return Err(second.error("labels section must have at most 1"));
        }
        l.mark_all_used();
        let mut out = Vec::new();
        for a in &l.attrs {
            if !crate::metrics::prom::valid_label_name(&a.key) {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("invalid label name {:?} (labels match [a-zA-Z_][a-zA-Z0-9_]*)", a.key),
                ));
            }
            out.push((a.key.clone(), a.value.clone(), LabelDef::parse(&a.value)));
        }
        Ok(Labels(out))
    }

    /// Static labels for the monitors: `${hostname}` and `${worker_id}` expanded, record
    /// accessors refused (as the plugin does).
    pub fn static_values(
        &self,
        e: &Element,
        plugin: &str,
        hostname: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::new();
        for (k, raw, d) in &self.0 {
            let LabelDef::Template(pieces) = d else {
                return Err(e.error(format!("record accessor syntax is not available in {plugin}")));
            };
            let mut v = String::new();
            for p in pieces {
                match p {
                    Piece::Lit(s) | Piece::Unknown(s) => v.push_str(s),
                    Piece::Hostname => v.push_str(hostname),
                    // spate sums its shards: one process, worker 0.
                    Piece::WorkerId => v.push('0'),
                    _ => {
                        let _ = raw;
                        v.push_str(&template_text(p));
                    }
                }
            }
            out.push((k.clone(), v));
        }
        Ok(out)
    }

    fn merged(&self, over: &Labels) -> Labels {
        let mut v = self.0.clone();
        for (k, raw, d) in &over.0 {
            match v.iter_mut().find(|(x, _, _)| x == k) {
                Some(slot) => *slot = (k.clone(), raw.clone(), d.clone()),
                None => v.push((k.clone(), raw.clone(), d.clone())),
            }
        }
        Labels(v)
    }
}

fn template_text(p: &Piece) -> String {
    match p {
        Piece::Lit(s) | Piece::Unknown(s) => s.clone(),
        Piece::Tag => "${tag}".into(),
        Piece::TagParts(i) => format!("${{tag_parts[{i}]}}"),
        Piece::TagPrefix(i) => format!("${{tag_prefix[{i}]}}"),
        Piece::TagSuffix(i) => format!("${{tag_suffix[{i}]}}"),
        Piece::Hostname => "${hostname}".into(),
        Piece::WorkerId => "${worker_id}".into(),
        Piece::Field(k) => format!("${{{}}}", String::from_utf8_lossy(k)),
        Piece::FieldIndex(k, i) => format!("${{{}[{i}]}}", String::from_utf8_lossy(k)),
        Piece::FieldKey(k, x) => format!("${{{}[\"{}\"]}}", String::from_utf8_lossy(k), String::from_utf8_lossy(x)),
    }
}

/// One `<metric>`.
#[derive(Debug)]
pub struct MetricDef {
    pub name: String,
    pub desc: String,
    pub kind: MetricKind,
    key: Option<Accessor>,
    buckets: Vec<f64>,
    labels: Labels,
    /// `initialized true`: label sets created at start with zero values (label values
    /// in `labels` order; `${worker_id}`/`${hostname}` filled in per shard).
    init: Vec<Vec<Piece>>,
    /// Labels depend only on the tag (and host/worker): computed once per batch.
    tag_only: bool,
}

impl MetricDef {
    fn parse(e: &Element, base: &Labels, ctx: &mut PlanCtx<'_>) -> Result<MetricDef, ConfigError> {
        let name = e.str("name").ok_or_else(|| e.error("metric requires 'name' option"))?.to_string();
        let desc = e.str("desc").ok_or_else(|| e.error("metric requires 'desc' option"))?.to_string();
        let kind = match e.str("type") {
            Some("counter") => MetricKind::Counter,
            Some("gauge") => MetricKind::Gauge,
            Some("summary") => MetricKind::Summary,
            Some("histogram") => MetricKind::Histogram,
            _ => return Err(e.error("type option must be 'counter', 'gauge', 'summary' or 'histogram'")),
        };
        if !crate::metrics::prom::valid_metric_name(&name) {
            return Err(e.error(format!("metric name {name:?} must match [a-zA-Z_:][a-zA-Z0-9_:]*")));
        }
        let key = match e.str("key") {
            None => None,
            Some(k) => Some(Accessor::parse(k).map_err(|x| e.error(x.to_string()))?),
        };
        if key.is_none() && kind != MetricKind::Counter {
            return Err(e.error(format!("{} metric requires 'key' option", kind.word())));
        }
        let mut buckets = DEFAULT_BUCKETS.to_vec();
        if let Some(b) = e.str("buckets") {
            if kind != MetricKind::Histogram {
                return Err(e.error("buckets is only for histogram metrics"));
            }
            buckets = b
                .split(',')
                .map(|x| {
                    x.trim().parse::<f64>().map_err(|_| e.error(format!("buckets: {:?} is not a number", x.trim())))
                })
                .collect::<Result<_, _>>()?;
            if buckets.windows(2).any(|w| w[0] >= w[1]) || buckets.iter().any(|x| !x.is_finite()) {
                return Err(e.error("Bucket values must be sorted (ascending, finite)"));
            }
        }
        let initialized = e.str("initialized") == Some("true");
        let labels = base.merged(&Labels::parse(e)?);
        let reserved = match kind {
            MetricKind::Histogram => Some("le"),
            MetricKind::Summary => Some("quantile"),
            _ => None,
        };
        if let Some(r) = reserved {
            if labels.0.iter().any(|(k, _, _)| k == r) {
                return Err(e.error(format!("label '{r}' is reserved for {} metrics", kind.word())));
            }
        }
        let init = if initialized { init_sets(e, &name, &labels)? } else { Vec::new() };
        for i in e.elements_named("initlabels") {
            i.mark_all_used();
        }
        let keys: Vec<&str> = labels.0.iter().map(|(k, _, _)| k.as_str()).collect();
        let signature = format!("{} {:?} {keys:?}", kind.word(), desc);
        if let Err(prev) = ctx.register_name("prometheus metric", &name, &signature) {
            return Err(e.error(format!(
                "{name} has already been registered with a different type, docstring or labels ({prev}; here: {signature})"
            )));
        }
        let tag_only = !labels.0.iter().any(|(_, _, d)| d.uses_record());
        Ok(MetricDef { name, desc, kind, key, buckets, labels, init, tag_only })
    }
}

/// fluent-plugin-prometheus's `parse_initlabels_elements`, with its checks and texts.
fn init_sets(e: &Element, name: &str, labels: &Labels) -> Result<Vec<Vec<Piece>>, ConfigError> {
    let mut sets = Vec::new();
    let mut declared: Vec<String> = Vec::new();
    for block in e.elements_named("initlabels") {
        let mut set: Vec<Option<Piece>> = vec![None; labels.0.len()];
        for a in &block.attrs {
            let Some(pos) = labels.0.iter().position(|(k, _, _)| *k == a.key) else {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("Key {} in <initlabels> is non existent in <labels> for metric {name}", a.key),
                ));
            };
            let v = &a.value;
            if v.starts_with("$.") || v.starts_with("$[") || v.starts_with("${") {
                return Err(ConfigError::at(
                    &a.pos,
                    format!(
                        "Cannot use RecordAccessor or placeholder {v} (key {}) in a <initlabels> in metric {name}",
                        a.key
                    ),
                ));
            }
            let (_, raw, d) = &labels.0[pos];
            if !d.is_dynamic(raw) {
                return Err(ConfigError::at(
                    &a.pos,
                    format!(
                        "Cannot set <initlabels> on non RecordAccessor/Placeholder key {} (value {v}) in metric {name}",
                        a.key
                    ),
                ));
            }
            if raw == "${worker_id}" || raw == "${hostname}" {
                return Err(ConfigError::at(
                    &a.pos,
                    format!("Cannot set <initlabels> on reserved placeholder {raw} for key {} in metric {name}", a.key),
                ));
            }
            set[pos] = Some(Piece::Lit(v.clone()));
            declared.push(a.key.clone());
        }
        for (i, (_, raw, d)) in labels.0.iter().enumerate() {
            if set[i].is_none() && !matches!(d, LabelDef::Accessor(_)) {
                set[i] = Some(match raw.as_str() {
                    "${worker_id}" => Piece::WorkerId,
                    "${hostname}" => Piece::Hostname,
                    r if !r.starts_with("${") => Piece::Lit(r.to_string()),
                    _ => continue,
                });
            }
        }
        if set.iter().any(Option::is_none) {
            let missing = labels
                .0
                .iter()
                .zip(&set)
                .find(|(_, s)| s.is_none())
                .map(|((k, _, _), _)| k.clone())
                .unwrap_or_default();
            return Err(block.error(format!(
                "initlabels for metric {name} must have the same signature than labels (missing {missing})"
            )));
        }
        sets.push(set.into_iter().flatten().collect());
    }
    for (k, raw, d) in &labels.0 {
        if d.is_dynamic(raw) && !declared.contains(k) {
            return Err(e.error(format!("RecordAccessor/Placeholder key {k} with value {raw} has not been set in a <initlabels> for initialized metric {name}")));
        }
    }
    if sets.is_empty() {
        sets.push(labels.0.iter().map(|(_, raw, _)| Piece::Lit(raw.clone())).collect());
    }
    Ok(sets)
}

/// A plugin's `<labels>` and `<metric>`s (the plan half, shared by all shards).
#[derive(Debug)]
pub struct Defs {
    defs: Vec<MetricDef>,
}

impl Defs {
    /// Reads `<labels>` and every `<metric>` of a prometheus filter or output.
    pub fn parse(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Defs, ConfigError> {
        let base = Labels::parse(e)?;
        let mut defs = Vec::new();
        for m in e.elements_named("metric") {
            defs.push(MetricDef::parse(m, &base, ctx)?);
            m.warn_unused();
        }
        Ok(Defs { defs })
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The metric names, for `--dry-run`.
    pub fn names(&self) -> Vec<&str> {
        self.defs.iter().map(|d| d.name.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Shard time.

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
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(parse_template("${tag}"), vec![Piece::Tag]);
        assert_eq!(
            parse_template("a-${tag_parts[-1]}-${foo[\"k\"]}${bar[2]}"),
            vec![
                Piece::Lit("a-".into()),
                Piece::TagParts(-1),
                Piece::Lit("-".into()),
                Piece::FieldKey(b"foo".to_vec(), b"k".to_vec()),
                Piece::FieldIndex(b"bar".to_vec(), 2)
            ]
        );
        assert_eq!(parse_template("${tag_prefix[-1]}"), vec![Piece::Unknown("${tag_prefix[-1]}".into())]);
        assert_eq!(parse_template("x${"), vec![Piece::Lit("x${".into())]);
        assert_eq!(parse_template("${}"), vec![Piece::Lit("${}".into())]);
        assert_eq!(
            parse_template("${hostname}/${worker_id}"),
            vec![Piece::Hostname, Piece::Lit("/".into()), Piece::WorkerId]
        );
    }
}
