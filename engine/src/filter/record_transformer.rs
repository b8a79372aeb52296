//! `filter_record_transformer` without Ruby (fluentd's `PlaceholderExpander`): `<record>`
//! values with `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}`
//! (negative N counts from the end), `${hostname}`, `${time}`, `${record["key"]}`;
//! JSON array/object values expanded recursively; `auto_typecast` (default true: a value
//! that is exactly one placeholder keeps the original type); `remove_keys`,
//! `keep_keys` (with `renew_record`), `renew_record`, `renew_time_key`.
//! `enable_ruby true` is a configuration error: spate does not run Ruby.
//!
//! Records are re-encoded (this filter changes them), one output buffer per batch.

use std::cell::RefCell;

use spate_protocol::encode::raw;
use spate_protocol::{EventBatch, EventTime, RecordRef, ValueRef};

use super::grep::FilterError;
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordTransformerConf {
    /// `<record>` key/value pairs, in order.
    pub record: Vec<(String, String)>,
    pub remove_keys: Vec<String>,
    pub keep_keys: Vec<String>,
    pub renew_record: bool,
    pub renew_time_key: Option<String>,
    pub enable_ruby: bool,
    pub auto_typecast: bool,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Ph {
    Tag,
    TagPart(i64),
    TagPrefix(i64),
    TagSuffix(i64),
    Hostname,
    Time,
    Record(String),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Ph(Ph),
}

#[derive(Debug, Clone, PartialEq)]
enum Tpl {
    /// Exactly one placeholder with auto_typecast: keep the value's type.
    Single(Ph),
    Str(Vec<Part>),
    Map(Vec<(Vec<Part>, Tpl)>),
    Array(Vec<Tpl>),
    /// A JSON scalar that is not a string.
    Json(serde_json::Value),
}

fn parse_ph(inner: &str) -> Ph {
    let idx = |s: &str, name: &str| -> Option<i64> {
        s.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')?.trim().parse().ok()
    };
    match inner {
        "tag" => Ph::Tag,
        "hostname" => Ph::Hostname,
        "time" => Ph::Time,
        s => {
            if let Some(n) = idx(s, "tag_parts") {
                Ph::TagPart(n)
            } else if let Some(n) = idx(s, "tag_prefix") {
                Ph::TagPrefix(n)
            } else if let Some(n) = idx(s, "tag_suffix") {
                Ph::TagSuffix(n)
            } else if let Some(k) = s.strip_prefix("record[\"").and_then(|r| r.strip_suffix("\"]")) {
                Ph::Record(k.to_string())
            } else {
                Ph::Unknown
            }
        }
    }
}

/// Splits a string at `${...}` placeholders (and fluentd's legacy `__UPPER__` ones).
fn parts(s: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            if let Some(end) = after.find('}') {
                if !lit.is_empty() {
                    out.push(Part::Lit(std::mem::take(&mut lit)));
                }
                let ph = parse_ph(&after[..end]);
                if ph == Ph::Unknown {
                    crate::warn!("record_transformer: unknown placeholder `${{{}}}` found", &after[..end]);
                }
                out.push(Part::Ph(ph));
                rest = &after[end + 1..];
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        out.push(Part::Lit(lit));
    }
    out
}

fn compile_str(s: &str, typecast: bool) -> Tpl {
    let p = parts(s);
    if typecast && p.len() == 1 {
        if let Part::Ph(ph) = &p[0] {
            return Tpl::Single(ph.clone());
        }
    }
    Tpl::Str(p)
}

fn compile_json(v: &serde_json::Value, typecast: bool) -> Tpl {
    use serde_json::Value;
    match v {
        Value::String(s) => compile_str(s, typecast),
        Value::Array(a) => Tpl::Array(a.iter().map(|x| compile_json(x, typecast)).collect()),
        Value::Object(m) => Tpl::Map(m.iter().map(|(k, x)| (parts(k), compile_json(x, typecast))).collect()),
        other => Tpl::Json(other.clone()),
    }
}

fn compile_value(s: &str, typecast: bool) -> Tpl {
    if s.starts_with('{') || s.starts_with('[') {
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) => return compile_json(&v, typecast),
            Err(e) => crate::warn!("record_transformer: failed to parse {s} as json ({e}); assuming it is a string"),
        }
    }
    compile_str(s, typecast)
}

/// Per-batch values of the tag placeholders.
struct TagCtx<'a> {
    tag: &'a [u8],
    parts: Vec<&'a [u8]>,
}

impl TagCtx<'_> {
    fn idx(&self, n: i64) -> Option<usize> {
        let len = self.parts.len() as i64;
        let i = if n < 0 { len + n } else { n };
        (0..len).contains(&i).then_some(i as usize)
    }
    /// Writes the text of a tag placeholder; false if it has no value (nil).
    fn text(&self, ph: &Ph, host: &str, time: EventTime, out: &mut Vec<u8>) -> bool {
        match ph {
            Ph::Tag => out.extend_from_slice(self.tag),
            Ph::Hostname => out.extend_from_slice(host.as_bytes()),
            Ph::Time => crate::log::format_time(out, time.sec as i64, 0, 0),
            Ph::TagPart(n) => match self.idx(*n) {
                Some(i) => out.extend_from_slice(self.parts[i]),
                None => return false,
            },
            Ph::TagPrefix(n) => match self.idx(*n) {
                Some(i) => out.extend_from_slice(self.parts[..=i].join(&b'.').as_slice()),
                None => return false,
            },
            Ph::TagSuffix(n) => match self.idx(*n) {
                Some(i) => out.extend_from_slice(self.parts[i..].join(&b'.').as_slice()),
                None => return false,
            },
            Ph::Record(_) | Ph::Unknown => return false,
        }
        true
    }
}

pub struct RecordTransformer {
    conf: RecordTransformerConf,
    map: Vec<(String, Tpl)>,
    scratch: RefCell<Vec<u8>>,
}

impl RecordTransformer {
    pub fn new(conf: &RecordTransformerConf) -> Result<Self, FilterError> {
        if conf.enable_ruby {
            return Err(FilterError::Conf("enable_ruby is not supported: spate does not run Ruby (placeholders ${tag}, ${tag_parts[N]}, ${hostname}, ${time} and ${record[\"key\"]} work without it)".into()));
        }
        if !conf.keep_keys.is_empty() && !conf.renew_record {
            return Err(FilterError::Conf("`renew_record` must be true to use `keep_keys`".into()));
        }
        let map = conf.record.iter().map(|(k, v)| (k.clone(), compile_value(v, conf.auto_typecast))).collect();
        Ok(RecordTransformer { conf: conf.clone(), map, scratch: RefCell::new(Vec::new()) })
    }

    fn write_tpl(&self, t: &Tpl, tc: &TagCtx<'_>, rec: RecordRef<'_>, time: EventTime, out: &mut Vec<u8>) {
        match t {
            Tpl::Single(ph) => match ph {
                Ph::Record(k) => match rec.get(k.as_bytes()) {
                    Some(v) => out.extend_from_slice(v.as_bytes()),
                    None => raw::nil(out),
                },
                other => {
                    let mut s = Vec::new();
                    if tc.text(other, &self.conf.hostname, time, &mut s) {
                        raw::str(out, &s);
                    } else {
                        raw::nil(out);
                    }
                }
            },
            Tpl::Str(parts) => {
                let mut s = self.scratch.borrow_mut();
                s.clear();
                self.expand(parts, tc, rec, time, &mut s);
                raw::str(out, &s);
            }
            Tpl::Map(kvs) => {
                raw::map_header(out, kvs.len() as u32);
                for (k, v) in kvs {
                    let mut s = Vec::new();
                    self.expand(k, tc, rec, time, &mut s);
                    raw::str(out, &s);
                    self.write_tpl(v, tc, rec, time, out);
                }
            }
            Tpl::Array(items) => {
                raw::array_header(out, items.len() as u32);
                for v in items {
                    self.write_tpl(v, tc, rec, time, out);
                }
            }
            Tpl::Json(v) => match v {
                serde_json::Value::Null => raw::nil(out),
                serde_json::Value::Bool(b) => raw::bool(out, *b),
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        raw::int(out, i)
                    } else if let Some(u) = n.as_u64() {
                        raw::uint(out, u)
                    } else {
                        raw::f64(out, n.as_f64().unwrap_or(0.0))
                    }
                }
                other => raw::str(out, other.to_string().as_bytes()),
            },
        }
    }

    fn expand(&self, parts: &[Part], tc: &TagCtx<'_>, rec: RecordRef<'_>, time: EventTime, s: &mut Vec<u8>) {
        for p in parts {
            match p {
                Part::Lit(l) => s.extend_from_slice(l.as_bytes()),
                Part::Ph(Ph::Record(k)) => {
                    if let Some(v) = rec.get(k.as_bytes()) {
                        v.write_text(s);
                    }
                }
                Part::Ph(ph) => {
                    tc.text(ph, &self.conf.hostname, time, s);
                }
            }
        }
    }

    fn removed(&self, k: &[u8]) -> bool {
        self.conf.remove_keys.iter().any(|r| r.as_bytes() == k)
    }

    /// Writes the transformed record; returns the event's (possibly renewed) time.
    fn transform(&self, rec: RecordRef<'_>, tc: &TagCtx<'_>, time: EventTime, out: &mut Vec<u8>) -> EventTime {
        // Kept original fields (in their order; overwritten ones keep their position).
        let mut kept: Vec<(ValueRef<'_>, ValueRef<'_>)> = Vec::new();
        if self.conf.renew_record {
            for k in &self.conf.keep_keys {
                if let Some(v) = rec.get(k.as_bytes()) {
                    for (fk, _) in rec.fields() {
                        if fk.as_str() == Some(k.as_bytes()) {
                            kept.push((fk, v));
                            break;
                        }
                    }
                }
            }
        } else {
            kept.extend(rec.fields());
        }
        let mut n = 0u32;
        for (k, _) in &kept {
            let ks = k.as_str().unwrap_or(b"");
            if !self.removed(ks) {
                n += 1;
            }
        }
        for (mk, _) in &self.map {
            if !kept.iter().any(|(k, _)| k.as_str() == Some(mk.as_bytes())) && !self.removed(mk.as_bytes()) {
                n += 1;
            }
        }
        let mut renewed = time;
        raw::map_header(out, n);
        for (k, v) in &kept {
            let ks = k.as_str().unwrap_or(b"");
            if self.removed(ks) {
                continue;
            }
            out.extend_from_slice(k.as_bytes());
            match self.map.iter().rfind(|(mk, _)| mk.as_bytes() == ks) {
                Some((_, t)) => self.write_tpl(t, tc, rec, time, out),
                None => out.extend_from_slice(v.as_bytes()),
            }
        }
        for (i, (mk, t)) in self.map.iter().enumerate() {
            let dup_later = self.map[i + 1..].iter().any(|(k2, _)| k2 == mk);
            if dup_later || kept.iter().any(|(k, _)| k.as_str() == Some(mk.as_bytes())) || self.removed(mk.as_bytes()) {
                continue;
            }
            raw::str(out, mk.as_bytes());
            self.write_tpl(t, tc, rec, time, out);
        }
        if let Some(key) = &self.conf.renew_time_key {
            // The new value of the field (after transformation) is a Unix time.
            // `out` holds exactly this record (the caller clears it per event).
            if let Some(v) = RecordRef::new(out).and_then(|r| r.get(key.as_bytes())) {
                let f = v
                    .as_f64()
                    .or_else(|| v.as_i64().map(|i| i as f64))
                    .or_else(|| v.as_str().and_then(|s| std::str::from_utf8(s).ok()?.trim().parse().ok()));
                if let Some(f) = f.filter(|f| (0.0..4_294_967_296.0).contains(f)) {
                    renewed = EventTime::new(f.trunc() as u32, ((f - f.trunc()) * 1e9) as u32);
                }
            }
        }
        renewed
    }

    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        let tag = &batch.tag[..];
        let tc = TagCtx { tag, parts: tag.split(|&b| b == b'.').collect() };
        let mut out = Vec::with_capacity(batch.entries.len() + batch.count as usize * 32);
        let mut rec_buf = Vec::with_capacity(256);
        let mut count = 0;
        for ev in batch.events() {
            rec_buf.clear();
            let t = self.transform(ev.record, &tc, ev.time, &mut rec_buf);
            out.push(0x92);
            if t == ev.time {
                out.extend_from_slice(ev.time_raw);
            } else {
                raw::event_time(&mut out, t);
            }
            out.extend_from_slice(&rec_buf);
            count += 1;
        }
        super::rebuild(&batch, out, count)
    }
}

/// Reads record_transformer's parameters from its `<filter>` element.
pub fn conf_from_element(e: &Element, hostname: &str) -> Result<RecordTransformerConf, ConfigError> {
    let mut c = RecordTransformerConf {
        remove_keys: e.array("remove_keys")?.unwrap_or_default(),
        keep_keys: e.array("keep_keys")?.unwrap_or_default(),
        renew_record: e.bool("renew_record")?.unwrap_or(false),
        renew_time_key: e.str("renew_time_key").map(str::to_string),
        enable_ruby: e.bool("enable_ruby")?.unwrap_or(false),
        auto_typecast: e.bool("auto_typecast")?.unwrap_or(true),
        hostname: hostname.to_string(),
        record: Vec::new(),
    };
    for r in e.elements_named("record") {
        r.mark_all_used();
        for a in &r.attrs {
            c.record.push((a.key.clone(), a.value.clone()));
        }
    }
    RecordTransformer::new(&c).map_err(|x| ConfigError::at(&e.pos, x.to_string()))?;
    Ok(c)
}
