//! `filter_record_transformer` with fluentd's semantics
//! (`lib/fluent/plugin/filter_record_transformer.rb`, `enable_ruby false`): `<record>`
//! fields with placeholders, `remove_keys` (record accessors, nested too), `keep_keys`,
//! `renew_record`, `renew_time_key` and `auto_typecast`.
//!
//! Placeholders are fluentd's `PlaceholderExpander` ones, matched as exact strings:
//! `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}` (N may be negative),
//! `${hostname}`, `${time}` (`Time.at(time).to_s`: local time, `2010-05-04 03:02:01 +0000`)
//! and `${record["key"]}` (top-level keys; `${record['key']}` is accepted too). Any other
//! `${...}` or `__UPPER__` is unknown: nil, or "" inside a string. With `auto_typecast`
//! (the default) a value that is exactly one placeholder keeps the type of what it refers
//! to. Values starting with `{` or `[` are JSON whose strings are expanded.
//!
//! New fields overwrite existing ones in place and are otherwise appended, as Ruby's
//! `Hash#merge!` does. Each record is re-encoded once into a buffer reused across the
//! batch; a batch that comes out byte-identical is returned as is.

use std::cell::RefCell;
use std::rc::Rc;

use spate_protocol::encode::raw;
use spate_protocol::msgpack::{self, Head, Kind};
use spate_protocol::{EntriesFormat, EventBatch, EventTime, RecordRef, ValueRef};

pub use super::error::FilterError;
use super::grep::{array_len, key_is, ruby_index, write_to_s, Accessor, Dug, Step};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Filter, FilterPlan, Kind as PluginKind, PlanCtx, Registration, ShardCtx,
};

/// filter_record_transformer's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTransformerConf {
    /// `<record>` fields in config order (several `<record>` sections concatenated).
    pub record: Vec<(String, String)>,
    pub remove_keys: Vec<String>,
    pub keep_keys: Vec<String>,
    pub renew_record: bool,
    pub renew_time_key: Option<String>,
    /// Must be false: spate does not run Ruby.
    pub enable_ruby: bool,
    /// fluentd's default is true.
    pub auto_typecast: bool,
    /// The value of `${hostname}` (fluentd: `Socket.gethostname`).
    pub hostname: String,
}

impl Default for RecordTransformerConf {
    fn default() -> Self {
        RecordTransformerConf {
            record: Vec::new(),
            remove_keys: Vec::new(),
            keep_keys: Vec::new(),
            renew_record: false,
            renew_time_key: None,
            enable_ruby: false,
            auto_typecast: true,
            hostname: String::new(),
        }
    }
}

/// A value computed once per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BatchPh {
    Tag,
    Hostname,
    Part(i64),
    Prefix(i64),
    Suffix(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ph {
    /// Index into the batch's resolved [`BatchPh`] values.
    Batch(usize),
    Time,
    Record(Vec<u8>),
    /// An unknown placeholder: nil.
    Nil,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Vec<u8>),
    Ph(Ph),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tpl {
    /// A value without placeholders, msgpack-encoded.
    Const(Vec<u8>),
    /// Exactly one placeholder with auto_typecast: the value keeps its type.
    Single(Ph),
    /// A string with placeholders.
    Str(Vec<Part>),
    Map(Vec<(Vec<Part>, Tpl)>),
    Array(Vec<Tpl>),
}

impl Tpl {
    fn as_const(&self) -> Option<&[u8]> {
        match self {
            Tpl::Const(b) => Some(b),
            _ => None,
        }
    }
}

fn parts_are_lit(p: &[Part]) -> Option<Vec<u8>> {
    let mut s = Vec::new();
    for x in p {
        match x {
            Part::Lit(l) => s.extend_from_slice(l),
            Part::Ph(_) => return None,
        }
    }
    Some(s)
}

/// Builds templates from config strings.
struct Compiler {
    any: regex::Regex,
    auto_typecast: bool,
    batch: Vec<BatchPh>,
    unknown: Vec<String>,
}

/// `name[N]` with N written as Ruby prints an integer (`${tag_parts[01]}` is unknown in
/// fluentd too).
fn indexed(inner: &str, name: &str) -> Option<i64> {
    let n = inner.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')?;
    let v: i64 = n.parse().ok()?;
    (v.to_string() == n).then_some(v)
}

/// Removes `//` and `/* */` comments outside strings (fluentd parses `<record>` JSON
/// with `allow_comments: true`).
fn strip_json_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut in_str, mut esc) = (0, false, false);
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            out.push_str(&s[last..i]);
            i = s[i..].find('\n').map_or(b.len(), |e| i + e);
            last = i;
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            out.push_str(&s[last..i]);
            i = s[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            out.push(' ');
            last = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[last..]);
    out
}

impl Compiler {
    fn batch_ph(&mut self, p: BatchPh) -> Ph {
        let i = match self.batch.iter().position(|x| *x == p) {
            Some(i) => i,
            None => {
                self.batch.push(p);
                self.batch.len() - 1
            }
        };
        Ph::Batch(i)
    }

    /// One placeholder, given as the whole matched text.
    fn placeholder(&mut self, text: &str) -> Ph {
        let ph = match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
            Some("tag") => self.batch_ph(BatchPh::Tag),
            Some("hostname") => self.batch_ph(BatchPh::Hostname),
            Some("time") => Ph::Time,
            Some(inner) => {
                if let Some(n) = indexed(inner, "tag_parts") {
                    self.batch_ph(BatchPh::Part(n))
                } else if let Some(n) = indexed(inner, "tag_prefix") {
                    self.batch_ph(BatchPh::Prefix(n))
                } else if let Some(n) = indexed(inner, "tag_suffix") {
                    self.batch_ph(BatchPh::Suffix(n))
                } else if let Some(k) = inner
                    .strip_prefix("record[\"")
                    .and_then(|r| r.strip_suffix("\"]"))
                    .or_else(|| inner.strip_prefix("record['").and_then(|r| r.strip_suffix("']")))
                {
                    Ph::Record(k.as_bytes().to_vec())
                } else {
                    Ph::Nil
                }
            }
            None => Ph::Nil,
        };
        if ph == Ph::Nil && !self.unknown.iter().any(|u| u == text) {
            self.unknown.push(text.to_string());
        }
        ph
    }

    fn parts(&mut self, s: &str) -> Vec<Part> {
        let mut out = Vec::new();
        let mut last = 0;
        let found: Vec<(usize, usize)> = self.any.find_iter(s).map(|m| (m.start(), m.end())).collect();
        for (start, end) in found {
            if start > last {
                out.push(Part::Lit(s.as_bytes()[last..start].to_vec()));
            }
            let ph = self.placeholder(&s[start..end]);
            out.push(Part::Ph(ph));
            last = end;
        }
        if last < s.len() {
            out.push(Part::Lit(s.as_bytes()[last..].to_vec()));
        }
        out
    }

    fn string(&mut self, s: &str) -> Tpl {
        let p = self.parts(s);
        if let [Part::Ph(ph)] = p.as_slice() {
            if self.auto_typecast {
                return Tpl::Single(ph.clone());
            }
        }
        if let Some(lit) = parts_are_lit(&p) {
            let mut b = Vec::new();
            raw::str(&mut b, &lit);
            return Tpl::Const(b);
        }
        Tpl::Str(p)
    }

    fn json(&mut self, v: &serde_json::Value) -> Tpl {
        use serde_json::Value;
        let mut b = Vec::new();
        match v {
            Value::String(s) => return self.string(s),
            Value::Null => raw::nil(&mut b),
            Value::Bool(x) => raw::bool(&mut b, *x),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    raw::uint(&mut b, u)
                } else if let Some(i) = n.as_i64() {
                    raw::int(&mut b, i)
                } else {
                    raw::f64(&mut b, n.as_f64().unwrap_or(0.0))
                }
            }
            Value::Array(a) => {
                let items: Vec<Tpl> = a.iter().map(|x| self.json(x)).collect();
                if items.iter().all(|t| t.as_const().is_some()) {
                    raw::array_header(&mut b, items.len() as u32);
                    for t in &items {
                        b.extend_from_slice(t.as_const().unwrap_or_default());
                    }
                } else {
                    return Tpl::Array(items);
                }
            }
            Value::Object(m) => {
                let kvs: Vec<(Vec<Part>, Tpl)> = m.iter().map(|(k, x)| (self.parts(k), self.json(x))).collect();
                if kvs.iter().all(|(k, t)| parts_are_lit(k).is_some() && t.as_const().is_some()) {
                    raw::map_header(&mut b, kvs.len() as u32);
                    for (k, t) in &kvs {
                        raw::str(&mut b, &parts_are_lit(k).unwrap_or_default());
                        b.extend_from_slice(t.as_const().unwrap_or_default());
                    }
                } else {
                    return Tpl::Map(kvs);
                }
            }
        }
        Tpl::Const(b)
    }

    /// A `<record>` value (fluentd's `parse_value`).
    fn value(&mut self, s: &str) -> Tpl {
        if s.starts_with('{') || s.starts_with('[') {
            match serde_json::from_str::<serde_json::Value>(&strip_json_comments(s)) {
                Ok(v) => return self.json(&v),
                Err(e) => crate::warn!(
                    "record_transformer: failed to parse {s} as json. Assuming {s} is a string error=\"{e}\""
                ),
            }
        }
        self.string(s)
    }
}

/// Scratch buffers reused across events and batches.
#[derive(Debug, Default)]
struct Work {
    fields: Vec<u8>,
    rec: Vec<u8>,
    alt: Vec<u8>,
    tmp: Vec<u8>,
    keybuf: Vec<u8>,
    /// Effective `<record>` entries of the current event: key span in `keybuf`, template.
    keys: Vec<(usize, usize, usize)>,
    matched: Vec<bool>,
    time_sec: Option<u32>,
    time_text: Vec<u8>,
}

/// Per-batch placeholder values.
struct Ctx {
    vals: Vec<Option<Vec<u8>>>,
}

/// Ruby's `String#to_f`: the longest numeric prefix after whitespace, `_` between digits.
fn ruby_str_to_f(s: &[u8]) -> f64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut buf = String::new();
    if i < s.len() && matches!(s[i], b'+' | b'-') {
        buf.push(s[i] as char);
        i += 1;
    }
    fn digits(s: &[u8], mut i: usize, buf: &mut String) -> (usize, bool) {
        let mut any = false;
        while i < s.len() {
            if s[i].is_ascii_digit() {
                buf.push(s[i] as char);
                any = true;
                i += 1;
            } else if s[i] == b'_' && any && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        (i, any)
    }
    let (j, int) = digits(s, i, &mut buf);
    i = j;
    let mut frac = false;
    if s.get(i) == Some(&b'.') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        if !int {
            buf.push('0');
        }
        buf.push('.');
        let (j, f) = digits(s, i + 1, &mut buf);
        i = j;
        frac = f;
    }
    if !int && !frac {
        return 0.0;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        let mut exp = String::from("e");
        if matches!(s.get(j), Some(b'+' | b'-')) {
            exp.push(s[j] as char);
            j += 1;
        }
        let (_, any) = digits(s, j, &mut exp);
        if any {
            buf.push_str(&exp);
        }
    }
    buf.parse().unwrap_or(0.0)
}

/// `floor(frac * 1e9)` computed exactly for `0 <= frac < 1`, as Ruby's `Time.at(float)`
/// does with the float's exact rational value.
fn exact_nsec(frac: f64) -> u32 {
    if frac <= 0.0 {
        return 0;
    }
    let bits = frac.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mant = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (mant, -1074) } else { (mant | (1u64 << 52), exp - 1075) };
    let shift = -e;
    if shift <= 0 {
        return 0;
    }
    if shift >= 128 {
        return 0;
    }
    (((m as u128) * 1_000_000_000u128) >> shift).min(999_999_999) as u32
}

/// `Fluent::EventTime.from_time(Time.at(value.to_f))`; `Err` where Ruby raises (no `to_f`,
/// or a NaN/infinite time).
fn renew_time(v: &[u8]) -> Result<EventTime, ()> {
    let kind = msgpack::head(v).ok().flatten().map(|h| h.kind()).ok_or(())?;
    let f = match kind {
        Kind::Nil => 0.0,
        Kind::UInt | Kind::NegInt => msgpack::read_int(v).ok_or(())? as f64,
        Kind::F32 | Kind::F64 => msgpack::read_float(v).ok_or(())?,
        Kind::Str | Kind::Bin => ruby_str_to_f(msgpack::read_bytes(v).ok_or(())?),
        Kind::Ext => {
            let t = EventTime::from_msgpack(v).ok_or(())?;
            t.sec as f64 + t.nsec as f64 / 1e9
        }
        Kind::Bool | Kind::Array | Kind::Map => return Err(()),
    };
    if !f.is_finite() {
        return Err(());
    }
    let fl = f.floor();
    let nsec = exact_nsec(f - fl);
    // EventTime packs seconds as 32 bits ('N'): out-of-range values wrap.
    let sec = fl.rem_euclid(4_294_967_296.0) as u32;
    Ok(EventTime::new(sec, nsec))
}

/// `record["key"]` as fluentd's placeholder table sees it: keys compared by their `to_s`,
/// the last duplicate winning.
fn record_get<'a>(rec: RecordRef<'a>, key: &[u8]) -> Option<ValueRef<'a>> {
    let mut found = None;
    let mut text = Vec::new();
    for (k, v) in rec.fields() {
        let hit = match k.as_str() {
            Some(s) => s == key,
            None => {
                text.clear();
                write_to_s(k, &mut text);
                text == key
            }
        };
        if hit {
            found = Some(v);
        }
    }
    found
}

/// Deletes the element at `steps` (dig keys, then the key to delete) inside the container
/// `v`, appending the new encoding of `v` to `out`. Returns false when nothing is deleted
/// (then `out` holds garbage). Mirrors fluentd's `Accessor#delete_nest`: a missing path or
/// a path through a scalar deletes nothing.
fn delete_in(v: ValueRef<'_>, steps: &[Step], out: &mut Vec<u8>) -> bool {
    let Some((first, rest)) = steps.split_first() else { return false };
    match msgpack::head(v.as_bytes()) {
        Ok(Some(Head::Map { n, .. })) => {
            let Some(m) = v.as_map() else { return false };
            if rest.is_empty() {
                let hits = m.fields().filter(|(k, _)| key_is(*k, first)).count() as u32;
                if hits == 0 {
                    return false;
                }
                raw::map_header(out, n - hits);
                for (k, x) in m.fields().filter(|(k, _)| !key_is(*k, first)) {
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(x.as_bytes());
                }
                return true;
            }
            // `dig` follows the last duplicate.
            let Some(target) = m.fields().enumerate().filter(|(_, (k, _))| key_is(*k, first)).map(|(i, _)| i).last()
            else {
                return false;
            };
            raw::map_header(out, n);
            for (i, (k, x)) in m.fields().enumerate() {
                out.extend_from_slice(k.as_bytes());
                if i == target {
                    if !delete_in(x, rest, out) {
                        return false;
                    }
                } else {
                    out.extend_from_slice(x.as_bytes());
                }
            }
            true
        }
        Ok(Some(Head::Array { n, .. })) => {
            let Step::Index(i) = first else { return false };
            let Some(pos) = array_len(v).and_then(|len| ruby_index(len, *i)) else { return false };
            let Some(items) = v.as_array() else { return false };
            raw::array_header(out, if rest.is_empty() { n - 1 } else { n });
            for (j, x) in items.enumerate() {
                if j != pos {
                    out.extend_from_slice(x.as_bytes());
                } else if !rest.is_empty() && !delete_in(x, rest, out) {
                    return false;
                }
            }
            true
        }
        _ => false,
    }
}

/// Where a field's value comes from.
#[derive(Clone, Copy)]
enum Val<'a> {
    Raw(&'a [u8]),
    Tpl(usize),
}

/// The compiled filter (one per shard; not `Sync`: it reuses scratch buffers).
pub struct RecordTransformer {
    /// `<record>` keys (expanded per event when they hold placeholders) and values.
    map: Vec<(Vec<Part>, Tpl)>,
    /// The deduplicated entries when no key has placeholders: key, index into `map`.
    static_keys: Option<Vec<(Vec<u8>, usize)>>,
    batch_phs: Vec<BatchPh>,
    keep_keys: Vec<Vec<u8>>,
    renew_record: bool,
    renew_time_key: Option<Vec<u8>>,
    remove_top: Vec<Vec<u8>>,
    remove_nested: Vec<Accessor>,
    hostname: Vec<u8>,
    /// Nothing can change a record: every batch passes as is.
    noop: bool,
    /// Only `remove_keys`: records without those keys pass without re-encoding.
    remove_only: bool,
    /// Boxed: keeps `Filter` variants of similar size.
    work: RefCell<Box<Work>>,
}

impl std::fmt::Debug for RecordTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTransformer").field("fields", &self.map.len()).finish_non_exhaustive()
    }
}

/// Ruby's `tag.split('.')` (trailing empty parts dropped).
fn tag_parts(tag: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = tag.split(|&b| b == b'.').collect();
    while v.last().is_some_and(|p| p.is_empty()) {
        v.pop();
    }
    v
}

impl RecordTransformer {
    pub fn new(conf: &RecordTransformerConf) -> Result<Self, FilterError> {
        if conf.enable_ruby {
            return Err(FilterError::EnableRuby);
        }
        if !conf.keep_keys.is_empty() && !conf.renew_record {
            return Err(FilterError::Config("`renew_record` must be true to use `keep_keys`".into()));
        }
        let any = regex::Regex::new(r"\$\{[^}]+\}|__[A-Z_]+__")
            .map_err(|e| FilterError::Config(format!("record_transformer: internal regexp: {e}")))?;
        let mut c = Compiler { any, auto_typecast: conf.auto_typecast, batch: Vec::new(), unknown: Vec::new() };
        let mut map: Vec<(Vec<Part>, Tpl)> = Vec::new();
        for (k, v) in &conf.record {
            let key = c.parts(k);
            let tpl = c.value(v);
            // A repeated key: the last value, at the first position (Ruby Hash).
            match map.iter_mut().find(|(mk, _)| *mk == key) {
                Some(slot) => slot.1 = tpl,
                None => map.push((key, tpl)),
            }
        }
        for u in &c.unknown {
            crate::warn!(
                "record_transformer: unknown placeholder `{u}` found; it expands to nil (spate supports \
                 ${{tag}}, ${{tag_parts[N]}}, ${{tag_prefix[N]}}, ${{tag_suffix[N]}}, ${{hostname}}, ${{time}}, \
                 ${{record[\"key\"]}})"
            );
        }
        let static_keys =
            map.iter().enumerate().map(|(i, (k, _))| parts_are_lit(k).map(|k| (k, i))).collect::<Option<Vec<_>>>();
        let mut keep_keys: Vec<Vec<u8>> = Vec::new();
        for k in &conf.keep_keys {
            if !keep_keys.iter().any(|x| x == k.as_bytes()) {
                keep_keys.push(k.as_bytes().to_vec());
            }
        }
        let (mut remove_top, mut remove_nested) = (Vec::new(), Vec::new());
        for k in &conf.remove_keys {
            let a = Accessor::parse(k)?;
            match a.simple_key() {
                Some(s) => remove_top.push(s.to_vec()),
                None => remove_nested.push(a),
            }
        }
        let map_empty = map.is_empty();
        let noop = map.is_empty()
            && !conf.renew_record
            && conf.renew_time_key.is_none()
            && remove_top.is_empty()
            && remove_nested.is_empty();
        Ok(RecordTransformer {
            map,
            static_keys,
            batch_phs: c.batch,
            keep_keys,
            renew_record: conf.renew_record,
            renew_time_key: conf.renew_time_key.as_ref().map(|k| k.as_bytes().to_vec()),
            remove_top,
            remove_nested,
            hostname: conf.hostname.as_bytes().to_vec(),
            noop,
            remove_only: map_empty && !conf.renew_record && conf.renew_time_key.is_none(),
            work: RefCell::new(Box::default()),
        })
    }

    fn resolve(&self, tag: &[u8]) -> Ctx {
        let parts = tag_parts(tag);
        let join = |p: &[&[u8]]| p.join(&b'.');
        let vals = self
            .batch_phs
            .iter()
            .map(|p| match p {
                BatchPh::Tag => Some(tag.to_vec()),
                BatchPh::Hostname => Some(self.hostname.clone()),
                BatchPh::Part(n) => ruby_index(parts.len(), *n).map(|i| parts[i].to_vec()),
                BatchPh::Prefix(n) => ruby_index(parts.len(), *n).map(|i| join(&parts[..=i])),
                BatchPh::Suffix(n) => ruby_index(parts.len(), *n).map(|i| join(&parts[i..])),
            })
            .collect();
        Ctx { vals }
    }

    fn time_text<'w>(sec: &mut Option<u32>, text: &'w mut Vec<u8>, t: EventTime) -> &'w [u8] {
        if *sec != Some(t.sec) {
            text.clear();
            crate::log::format_time(text, t.sec as i64, 0, 0);
            *sec = Some(t.sec);
        }
        text
    }

    /// Appends the text of `parts` (Ruby's `gsub` with `to_s` of each value).
    #[allow(clippy::too_many_arguments)]
    fn expand(
        parts: &[Part],
        ctx: &Ctx,
        rec: RecordRef<'_>,
        t: EventTime,
        time_sec: &mut Option<u32>,
        time_text: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        for p in parts {
            match p {
                Part::Lit(l) => out.extend_from_slice(l),
                Part::Ph(Ph::Batch(i)) => {
                    if let Some(Some(v)) = ctx.vals.get(*i) {
                        out.extend_from_slice(v);
                    }
                }
                Part::Ph(Ph::Time) => out.extend_from_slice(Self::time_text(time_sec, time_text, t)),
                Part::Ph(Ph::Record(k)) => {
                    if let Some(v) = record_get(rec, k) {
                        write_to_s(v, out);
                    }
                }
                Part::Ph(Ph::Nil) => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_tpl(
        tpl: &Tpl,
        ctx: &Ctx,
        rec: RecordRef<'_>,
        t: EventTime,
        time_sec: &mut Option<u32>,
        time_text: &mut Vec<u8>,
        tmp: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        match tpl {
            Tpl::Const(b) => out.extend_from_slice(b),
            Tpl::Single(ph) => match ph {
                Ph::Batch(i) => match ctx.vals.get(*i) {
                    Some(Some(v)) => raw::str(out, v),
                    _ => raw::nil(out),
                },
                Ph::Time => raw::str(out, Self::time_text(time_sec, time_text, t)),
                Ph::Record(k) => match record_get(rec, k) {
                    Some(v) => out.extend_from_slice(v.as_bytes()),
                    None => raw::nil(out),
                },
                Ph::Nil => raw::nil(out),
            },
            Tpl::Str(parts) => {
                tmp.clear();
                Self::expand(parts, ctx, rec, t, time_sec, time_text, tmp);
                raw::str(out, tmp);
            }
            Tpl::Map(kvs) => {
                raw::map_header(out, kvs.len() as u32);
                for (k, v) in kvs {
                    tmp.clear();
                    Self::expand(k, ctx, rec, t, time_sec, time_text, tmp);
                    raw::str(out, tmp);
                    Self::write_tpl(v, ctx, rec, t, time_sec, time_text, tmp, out);
                }
            }
            Tpl::Array(items) => {
                raw::array_header(out, items.len() as u32);
                for v in items {
                    Self::write_tpl(v, ctx, rec, t, time_sec, time_text, tmp, out);
                }
            }
        }
    }

    /// Fills `w.keybuf` / `w.keys` with the effective `<record>` entries for one event.
    fn event_keys(&self, w: &mut Work, ctx: &Ctx, rec: RecordRef<'_>, t: EventTime) {
        w.keybuf.clear();
        w.keys.clear();
        for (i, (k, _)) in self.map.iter().enumerate() {
            let start = w.keybuf.len();
            Self::expand(k, ctx, rec, t, &mut w.time_sec, &mut w.time_text, &mut w.keybuf);
            let end = w.keybuf.len();
            let dup = w.keys.iter().position(|&(s, e, _)| w.keybuf[s..e] == w.keybuf[start..end]);
            match dup {
                Some(j) => {
                    w.keys[j].2 = i;
                    w.keybuf.truncate(start);
                }
                None => w.keys.push((start, end, i)),
            }
        }
    }

    /// Transforms one record into `w.rec`. Returns the renewed time (`Some(Err)` when
    /// `renew_time_key` holds a value Ruby cannot turn into a time).
    fn transform(&self, w: &mut Work, ctx: &Ctx, rec: RecordRef<'_>, t: EventTime) -> Option<Result<EventTime, ()>> {
        if self.static_keys.is_none() {
            self.event_keys(w, ctx, rec, t);
        }
        let Work { fields, rec: rec_out, alt, tmp, keybuf, keys, matched, time_sec, time_text } = w;
        fields.clear();
        matched.clear();
        matched.resize(keys.len(), false);
        let mut n: u32 = 0;
        let mut renew = None;
        let keybuf: &[u8] = keybuf;
        let keys: &[(usize, usize, usize)] = keys;
        let find = |k: &[u8]| keys.iter().position(|&(s, e, _)| &keybuf[s..e] == k);

        // Writes one field unless it is removed. `key_enc` is the key's original encoding
        // (None: encode `key` as a str); `key` is None for a non-string key.
        let mut emit =
            |key_enc: Option<&[u8]>, key: Option<&[u8]>, val: Val<'_>, fields: &mut Vec<u8>, tmp: &mut Vec<u8>| {
                let start = fields.len();
                match key_enc {
                    Some(k) => fields.extend_from_slice(k),
                    None => raw::str(fields, key.unwrap_or_default()),
                }
                let vstart = fields.len();
                match val {
                    Val::Raw(b) => fields.extend_from_slice(b),
                    Val::Tpl(i) => {
                        if let Some((_, tpl)) = self.map.get(i) {
                            Self::write_tpl(tpl, ctx, rec, t, time_sec, time_text, tmp, fields);
                        }
                    }
                }
                let Some(key) = key else {
                    n += 1;
                    return;
                };
                if self.renew_time_key.as_deref() == Some(key) {
                    renew = Some(renew_time(&fields[vstart..]));
                }
                if self.remove_top.iter().any(|r| r == key) {
                    fields.truncate(start);
                } else {
                    n += 1;
                }
            };

        if self.renew_record {
            for k in &self.keep_keys {
                let Some(v) = rec.get(k) else { continue };
                match find(k) {
                    Some(j) => {
                        matched[j] = true;
                        emit(None, Some(k), Val::Tpl(keys[j].2), fields, tmp);
                    }
                    None => emit(None, Some(k), Val::Raw(v.as_bytes()), fields, tmp),
                }
            }
        } else {
            for (k, v) in rec.fields() {
                match k.as_str() {
                    Some(ks) => match find(ks) {
                        Some(j) => {
                            if !matched[j] {
                                matched[j] = true;
                                emit(Some(k.as_bytes()), Some(ks), Val::Tpl(keys[j].2), fields, tmp);
                            }
                        }
                        None => emit(Some(k.as_bytes()), Some(ks), Val::Raw(v.as_bytes()), fields, tmp),
                    },
                    // Non-string keys are never `<record>` keys, never removed.
                    None => emit(Some(k.as_bytes()), None, Val::Raw(v.as_bytes()), fields, tmp),
                }
            }
        }
        for (j, &(s, e, i)) in keys.iter().enumerate() {
            if !matched[j] {
                emit(None, Some(&keybuf[s..e]), Val::Tpl(i), fields, tmp);
            }
        }

        rec_out.clear();
        raw::map_header(rec_out, n);
        rec_out.extend_from_slice(fields);
        for a in &self.remove_nested {
            alt.clear();
            let changed = ValueRef::new(rec_out).is_some_and(|v| delete_in(v, &a.steps, alt));
            if changed {
                std::mem::swap(rec_out, alt);
            }
        }
        renew
    }

    /// Whether `remove_keys` deletes anything from this record.
    fn touches(&self, rec: RecordRef<'_>) -> bool {
        rec.fields().any(|(k, _)| k.as_str().is_some_and(|k| self.remove_top.iter().any(|r| r == k)))
            || self.remove_nested.iter().any(|a| matches!(a.dig(rec), Dug::Value(_)))
    }

    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        if self.noop {
            return Some(batch);
        }
        let mut guard = self.work.borrow_mut();
        let w = &mut *guard;
        let ctx = self.resolve(&batch.tag);
        if let Some(sk) = &self.static_keys {
            w.keybuf.clear();
            w.keys.clear();
            for (k, i) in sk {
                let start = w.keybuf.len();
                w.keybuf.extend_from_slice(k);
                w.keys.push((start, w.keybuf.len(), *i));
            }
        }
        // `out` stays empty (unallocated) while every event comes out unchanged.
        let mut out: Vec<u8> = Vec::new();
        let (mut count, mut errors, mut started) = (0u32, 0u32, false);
        for (i, ev) in batch.events().enumerate() {
            if self.remove_only && !self.touches(ev.record) {
                if started {
                    if batch.format == EntriesFormat::Message {
                        out.push(0x92);
                    }
                    out.extend_from_slice(ev.raw);
                }
                count += 1;
                continue;
            }
            let renew = self.transform(w, &ctx, ev.record, ev.time);
            let (time, dropped) = match renew {
                None => (None, false),
                Some(Ok(t)) => (Some(t), false),
                Some(Err(())) => {
                    errors += 1;
                    (None, true)
                }
            };
            if !started {
                if !dropped && time.is_none() && w.rec[..] == *ev.record.as_bytes() {
                    count += 1;
                    continue;
                }
                // First change: copy the unchanged events before this one as they are.
                started = true;
                out.reserve(batch.entries.len() + batch.entries.len() / 4 + 64);
                for prev in batch.events().take(i) {
                    if batch.format == EntriesFormat::Message {
                        out.push(0x92);
                    }
                    out.extend_from_slice(prev.raw);
                }
            }
            if dropped {
                continue;
            }
            out.push(0x92);
            match time {
                Some(t) => raw::event_time(&mut out, t),
                None => out.extend_from_slice(ev.time_raw),
            }
            out.extend_from_slice(&w.rec);
            count += 1;
        }
        if errors > 0 {
            crate::warn!(
                "record_transformer: dropped {errors} event(s) of tag {}: renew_time_key {} holds a value that is \
                 not a time (fluentd emits these as error events)",
                String::from_utf8_lossy(&batch.tag),
                String::from_utf8_lossy(self.renew_time_key.as_deref().unwrap_or_default())
            );
        }
        if !started {
            return Some(batch);
        }
        batch.with_packed_entries(bytes::Bytes::from(out), count)
    }
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "record_transformer",
    aliases: &[],
    kind: PluginKind::Filter,
    build: Build::Filter(plan),
    params: "`<record>` with `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}`, `${hostname}`, `${time}`, `${record[\"key\"]}`, JSON values; `remove_keys` (nested accessors too), `keep_keys`, `renew_record`, `renew_time_key`, `auto_typecast`",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "record_transformer");
    let conf = conf_from_element(e, &ctx.hostname)?;
    // Compile once here so a bad template is a config error with file:line.
    RecordTransformer::new(&conf).map_err(|x| e.error(x.to_string()))?;
    Ok(Box::new(RecordTransformerPlan { id, conf }))
}

#[derive(Debug)]
struct RecordTransformerPlan {
    id: String,
    conf: RecordTransformerConf,
}

impl FilterPlan for RecordTransformerPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "record_transformer"
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        // Validated by plan(): compiling the same templates again cannot fail.
        RecordTransformer::new(&self.conf)
            .map(|f| Box::new(f) as Box<dyn Filter>)
            .map_err(|e| BuildError::Io { plugin: self.id.clone(), source: std::io::Error::other(e.to_string()) })
    }
}

impl Filter for RecordTransformer {
    #[inline]
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        RecordTransformer::filter(self, batch)
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
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_protocol::encode;
    use spate_protocol::{EntriesFormat, Mode, Options};

    const HOST: &str = "myhost";
    /// 2010-05-04 03:02:01 UTC, as in test_filter_record_transformer.rb.
    const T: EventTime = EventTime::new(1_272_942_121, 0);

    fn rec(json: &str) -> Vec<u8> {
        spate_protocol::json::to_msgpack(json.as_bytes()).unwrap()
    }

    fn batch_of(tag: &'static str, recs: &[Vec<u8>]) -> EventBatch {
        let mut e = Vec::new();
        for r in recs {
            encode::entry(&mut e, T, encode::TimeFormat::EventTime, r);
        }
        EventBatch::from_entries(
            Bytes::from_static(tag.as_bytes()),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn conf(record: &[(&str, &str)]) -> RecordTransformerConf {
        RecordTransformerConf {
            record: record.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            hostname: HOST.into(),
            ..Default::default()
        }
    }

    fn json_of(r: RecordRef<'_>) -> String {
        let mut out = Vec::new();
        r.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Output (time, record JSON) of each event.
    fn run_tag(c: &RecordTransformerConf, tag: &'static str, recs: &[&str]) -> Vec<(EventTime, String)> {
        let f = RecordTransformer::new(c).unwrap();
        let recs: Vec<Vec<u8>> = recs.iter().map(|r| rec(r)).collect();
        match f.filter(batch_of(tag, &recs)) {
            None => vec![],
            Some(b) => {
                assert_eq!(b.count as usize, b.events().count());
                b.events().map(|e| (e.time, json_of(e.record))).collect()
            }
        }
    }

    fn run(c: &RecordTransformerConf, recs: &[&str]) -> Vec<String> {
        run_tag(c, "test.tag", recs).into_iter().map(|(_, j)| j).collect()
    }

    fn one(c: &RecordTransformerConf, r: &str) -> String {
        run(c, &[r]).pop().unwrap()
    }

    fn time_text(t: EventTime) -> String {
        let mut o = Vec::new();
        crate::log::format_time(&mut o, t.sec as i64, 0, 0);
        String::from_utf8(o).unwrap()
    }

    const BASE: &str = r#"{"foo":"bar","message":"1","nest":{"k1":"v1","k2":"v2"}}"#;

    fn typical() -> RecordTransformerConf {
        conf(&[
            ("hostname", "${hostname}"),
            ("tag", "${tag}"),
            ("time", "${time}"),
            ("message", "${hostname} ${tag_parts[-1]} ${record[\"message\"]}"),
        ])
    }

    // --- configure ---

    #[test]
    fn default_config_passes_batches_unchanged() {
        let f = RecordTransformer::new(&RecordTransformerConf::default()).unwrap();
        let b = batch_of("t", &[rec(BASE)]);
        let ptr = b.entries.as_ptr();
        assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
    }

    #[test]
    fn keep_keys_needs_renew_record() {
        let c = RecordTransformerConf { keep_keys: vec!["a".into()], ..Default::default() };
        let e = RecordTransformer::new(&c).unwrap_err().to_string();
        assert_eq!(e, "`renew_record` must be true to use `keep_keys`");
    }

    #[test]
    fn enable_ruby_is_rejected() {
        let c = RecordTransformerConf { enable_ruby: true, ..typical() };
        let e = RecordTransformer::new(&c).unwrap_err().to_string();
        assert!(e.starts_with("enable_ruby is not supported: spate does not run Ruby"), "{e}");
    }

    #[test]
    fn bad_remove_key_accessor_is_an_error() {
        let c = RecordTransformerConf { remove_keys: vec!["$.a b".into()], ..Default::default() };
        assert!(RecordTransformer::new(&c).unwrap_err().to_string().contains("whitespace"));
    }

    // --- options ---

    #[test]
    fn typical_usage() {
        let out = run(&typical(), &[BASE, &BASE.replace(r#""1""#, r#""2""#)]);
        let t = time_text(T);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(
                *o,
                format!(
                    r#"{{"foo":"bar","message":"myhost tag {}","nest":{{"k1":"v1","k2":"v2"}},"hostname":"myhost","tag":"test.tag","time":"{t}"}}"#,
                    i + 1
                )
            );
        }
    }

    #[test]
    fn remove_keys() {
        let c = RecordTransformerConf { remove_keys: vec!["foo".into(), "message".into()], ..typical() };
        let t = time_text(T);
        assert_eq!(
            one(&c, BASE),
            format!(r#"{{"nest":{{"k1":"v1","k2":"v2"}},"hostname":"myhost","tag":"test.tag","time":"{t}"}}"#)
        );
    }

    #[test]
    fn remove_keys_with_nested_key() {
        let c = RecordTransformerConf { remove_keys: vec!["$.nest.k1".into()], ..conf(&[]) };
        assert_eq!(one(&c, BASE), r#"{"foo":"bar","message":"1","nest":{"k2":"v2"}}"#);
        // Array elements (delete_at, applied in order), missing paths, paths through scalars.
        let c = RecordTransformerConf {
            remove_keys: vec![
                "$.a[0]".into(),
                "$.a[0]".into(),
                "$.foo.x".into(),
                "$.no.x".into(),
                "$['nest']['k2']".into(),
            ],
            ..conf(&[])
        };
        assert_eq!(
            one(&c, r#"{"foo":"bar","a":[1,2,3],"nest":{"k1":"v1","k2":"v2"}}"#),
            r#"{"foo":"bar","a":[3],"nest":{"k1":"v1"}}"#
        );
        let c = RecordTransformerConf { remove_keys: vec!["$.a[-1].b".into()], ..conf(&[]) };
        assert_eq!(one(&c, r#"{"a":[{"b":1},{"b":2,"c":3}]}"#), r#"{"a":[{"b":1},{"c":3}]}"#);
    }

    #[test]
    fn renew_record() {
        let c = RecordTransformerConf { renew_record: true, ..typical() };
        let t = time_text(T);
        assert_eq!(
            one(&c, BASE),
            format!(r#"{{"hostname":"myhost","tag":"test.tag","time":"{t}","message":"myhost tag 1"}}"#)
        );
    }

    #[test]
    fn renew_time_key() {
        let c = RecordTransformerConf { renew_time_key: Some("message".into()), ..conf(&[]) };
        let out = run_tag(&c, "t", &[r#"{"message":"1272942123.0"}"#, r#"{"message":"1272942124.5"}"#]);
        assert_eq!(out[0], (EventTime::new(1_272_942_123, 0), r#"{"message":"1272942123.0"}"#.to_string()));
        assert_eq!(out[1].0, EventTime::new(1_272_942_124, 500_000_000));
    }

    #[test]
    fn renew_time_key_and_remove_keys() {
        let c = RecordTransformerConf {
            renew_time_key: Some("event_time_key".into()),
            remove_keys: vec!["event_time_key".into()],
            ..conf(&[("event_time_key", "${record[\"message\"]}")])
        };
        let out = run_tag(&c, "t", &[r#"{"foo":"bar","message":"1272942123.0"}"#]);
        assert_eq!(
            out,
            vec![(EventTime::new(1_272_942_123, 0), r#"{"foo":"bar","message":"1272942123.0"}"#.to_string())]
        );
    }

    #[test]
    fn renew_time_key_follows_ruby_to_f_and_time_at() {
        let c = RecordTransformerConf { renew_time_key: Some("t".into()), ..conf(&[]) };
        let times: Vec<EventTime> = run_tag(
            &c,
            "x",
            &[
                r#"{"t":0.3}"#,
                r#"{"t":1272942123}"#,
                r#"{"t":" 12_5.25abc"}"#,
                r#"{"t":"junk"}"#,
                r#"{"t":null}"#,
                r#"{"t":-1.5}"#,
            ],
        )
        .into_iter()
        .map(|(t, _)| t)
        .collect();
        assert_eq!(
            times,
            vec![
                EventTime::new(0, 299_999_999), // Time.at(0.3).nsec
                EventTime::new(1_272_942_123, 0),
                EventTime::new(125, 250_000_000),
                EventTime::new(0, 0),
                EventTime::new(0, 0),
                EventTime::new(u32::MAX - 1, 500_000_000), // -2 wrapped as EventTime packs it
            ]
        );
        // Values without to_f raise in Ruby: the event becomes an error event (dropped).
        let out = run_tag(&c, "x", &[r#"{"t":{"a":1}}"#, r#"{"t":"5"}"#, r#"{"t":true}"#]);
        assert_eq!(out, vec![(EventTime::new(5, 0), r#"{"t":"5"}"#.to_string())]);
    }

    #[test]
    fn ruby_string_to_f() {
        for (s, f) in [
            ("1_000.5", 1000.5),
            (" 12abc", 12.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e5x", 100000.0),
            ("-1.5e-3", -0.0015),
            ("_1", 0.0),
            ("1__0", 1.0),
            ("0x10", 0.0),
            ("1e", 1.0),
            ("\n3", 3.0),
            ("+.5e1", 5.0),
            ("1.e3", 1.0),
            ("Infinity", 0.0),
            ("12_3_4", 1234.0),
        ] {
            assert_eq!(ruby_str_to_f(s.as_bytes()), f, "{s:?}");
        }
        assert!(ruby_str_to_f(b"1e400").is_infinite());
    }

    #[test]
    fn keep_keys() {
        let c = RecordTransformerConf {
            renew_record: true,
            keep_keys: vec!["foo".into(), "bar".into(), "baz".into(), "message".into()],
            ..conf(&[])
        };
        let out = run(&c, &[BASE, r#"{"foo":"bar","message":null}"#]);
        assert_eq!(out, vec![r#"{"foo":"bar","message":"1"}"#, r#"{"foo":"bar","message":null}"#]);
    }

    #[test]
    fn json_values() {
        let c = conf(&[
            ("hash_field", r#"{"k1":100, "k2":"foobar"}"#),
            ("array_field", "[1, 2, 3]"),
            ("mixed_field", r#"{"hello":[1,2,3], "world":{"foo":"bar"}}"#),
            ("float", "[1.0, -2, null, true]"),
            ("bad", "[1, 2"),
        ]);
        assert_eq!(
            one(&c, r#"{}"#),
            r#"{"hash_field":{"k1":100,"k2":"foobar"},"array_field":[1,2,3],"mixed_field":{"hello":[1,2,3],"world":{"foo":"bar"}},"float":[1.0,-2,null,true],"bad":"[1, 2"}"#
        );
        // fluentd parses these with allow_comments.
        let c = conf(&[("c", "{\n  \"a\": 1, // one\n  /* two */ \"b\": \"//x\"\n}")]);
        assert_eq!(one(&c, "{}"), r#"{"c":{"a":1,"b":"//x"}}"#);
    }

    // --- placeholders ---

    #[test]
    fn hostname_tag_and_tag_parts() {
        assert_eq!(one(&conf(&[("message", "${hostname}")]), "{}"), r#"{"message":"myhost"}"#);
        assert_eq!(one(&conf(&[("message", "${tag}")]), "{}"), r#"{"message":"test.tag"}"#);
        assert_eq!(one(&conf(&[("message", "${tag_parts[0]} ${tag_parts[-1]}")]), "{}"), r#"{"message":"test tag"}"#);
        let c = conf(&[("message", "${tag_prefix[1]} ${tag_prefix[-2]} ${tag_suffix[2]} ${tag_suffix[-3]}")]);
        let out = run_tag(&c, "prefix.test.tag.suffix", &["{}"]);
        assert_eq!(out[0].1, r#"{"message":"prefix.test prefix.test.tag tag.suffix test.tag.suffix"}"#);
        // Out of range: nil (typed) or "" (in a string); non-canonical indexes are unknown.
        let c = conf(&[("a", "${tag_parts[2]}"), ("b", "x${tag_parts[-3]}y"), ("c", "${tag_parts[01]}")]);
        assert_eq!(one(&c, "{}"), r#"{"a":null,"b":"xy","c":null}"#);
    }

    #[test]
    fn time_placeholder() {
        assert_eq!(one(&conf(&[("message", "${time}")]), "{}"), format!(r#"{{"message":"{}"}}"#, time_text(T)));
    }

    #[test]
    fn record_keys() {
        let c = RecordTransformerConf {
            remove_keys: vec!["eventType0".into()],
            ..conf(&[("message", "bar ${record[\"message\"]}"), ("eventtype", "${record[\"eventType0\"]}")])
        };
        let out = run(&c, &[r#"{"eventType0":"bar","message":"1"}"#, r#"{"eventType0":"bar","message":"2"}"#]);
        assert_eq!(out, vec![r#"{"message":"bar 1","eventtype":"bar"}"#, r#"{"message":"bar 2","eventtype":"bar"}"#]);
        // Single quotes (what enable_ruby configs use) work too.
        assert_eq!(one(&conf(&[("m", "${record['a']}!")]), r#"{"a":"x"}"#), r#"{"a":"x","m":"x!"}"#);
        // Keys starting with @.
        assert_eq!(
            one(&conf(&[("foo", "${record[\"@timestamp\"]}")]), r#"{"@timestamp":"foo"}"#),
            r#"{"@timestamp":"foo","foo":"foo"}"#
        );
    }

    #[test]
    fn reserved_keys_are_not_confused() {
        let c = conf(&[("new_tag", "${tag}"), ("new_record_tag", "${record[\"tag\"]}")]);
        assert_eq!(
            one(&c, r#"{"tag":"tag","time":"time"}"#),
            r#"{"tag":"tag","time":"time","new_tag":"test.tag","new_record_tag":"tag"}"#
        );
    }

    #[test]
    fn json_values_with_placeholders() {
        let c =
            conf(&[("hash_field", "{\n  \"hostname\":\"${hostname}\",\n  \"tag\":\"${tag}\",\n  \"${tag}\":100\n}")]);
        assert_eq!(one(&c, "{}"), r#"{"hash_field":{"hostname":"myhost","tag":"test.tag","test.tag":100}}"#);
        let c = conf(&[("array_field", r#"["${hostname}", "${tag}"]"#)]);
        assert_eq!(one(&c, "{}"), r#"{"array_field":["myhost","test.tag"]}"#);
        let c = conf(&[("mixed_field", r#"[{"tag":"${tag}"}]"#)]);
        assert_eq!(one(&c, "{}"), r#"{"mixed_field":[{"tag":"test.tag"}]}"#);
        // Nested strings are typecast too; keys never are.
        let c = conf(&[("h", r#"{"n":"${record[\"n\"]}","${record[\"n\"]}":"k"}"#)]);
        assert_eq!(one(&c, r#"{"n":5}"#), r#"{"n":5,"h":{"n":5,"5":"k"}}"#);
    }

    #[test]
    fn keys_with_placeholders() {
        let c =
            RecordTransformerConf { renew_record: true, ..conf(&[("${hostname}", "hostname"), ("foo.${tag}", "tag")]) };
        assert_eq!(run(&c, &[BASE, BASE]), vec![r#"{"myhost":"hostname","foo.test.tag":"tag"}"#; 2]);
        // An expanded key that exists in the record overwrites it in place; two keys
        // expanding to the same name: the last value at the first position.
        let c = conf(&[("${record[\"k\"]}", "1"), ("b", "2"), ("${tag_parts[0]}", "3"), ("x${tag_parts[9]}", "4")]);
        assert_eq!(one(&c, r#"{"a":0,"k":"test","x":0}"#), r#"{"a":0,"k":"test","x":"4","test":"3","b":"2"}"#);
    }

    const SOURCES: [&str; 5] = [r#""string""#, "123", "[1,2]", r#"{"a":1,"b":2}"#, "null"];

    fn typecast_conf(auto: bool) -> RecordTransformerConf {
        RecordTransformerConf {
            auto_typecast: auto,
            ..conf(&[
                ("single", "${record[\"source\"]}"),
                ("multiple", "${record[\"source\"]}${record[\"source\"]}"),
                ("with_prefix", "prefix-${record[\"source\"]}"),
                ("with_suffix", "${record[\"source\"]}-suffix"),
                ("with_quote", "record[\"source\"][\"\"]"),
            ])
        }
    }

    #[test]
    fn disabled_typecasting() {
        let recs: Vec<String> = SOURCES.iter().map(|s| format!(r#"{{"source":{s}}}"#)).collect();
        let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
        let out = run(&typecast_conf(false), &recs);
        // Ruby's to_s: Array/Hash#inspect (Ruby 3.4 hash style), nil -> "".
        let texts = ["string", "123", "[1, 2]", r#"{\"a\" => 1, \"b\" => 2}"#, ""];
        for ((o, s), t) in out.iter().zip(SOURCES).zip(texts) {
            assert_eq!(
                *o,
                format!(
                    r#"{{"source":{s},"single":"{t}","multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
                )
            );
        }
    }

    #[test]
    fn enabled_typecasting() {
        let recs: Vec<String> = SOURCES.iter().map(|s| format!(r#"{{"source":{s}}}"#)).collect();
        let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
        let out = run(&typecast_conf(true), &recs);
        let texts = ["string", "123", "[1, 2]", r#"{\"a\" => 1, \"b\" => 2}"#, ""];
        for ((o, s), t) in out.iter().zip(SOURCES).zip(texts) {
            assert_eq!(
                *o,
                format!(
                    r#"{{"source":{s},"single":{s},"multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
                )
            );
        }
    }

    #[test]
    fn unknown_placeholders_expand_to_nil() {
        let c = conf(&[
            ("message", "${unknown}"),
            ("m2", "a ${unknown} b __OLD_STYLE__!"),
            ("m3", "${record[\"missing\"]}"),
        ]);
        assert_eq!(one(&c, "{}"), r#"{"message":null,"m2":"a  b !","m3":null}"#);
    }

    #[test]
    fn unchanged_batches_pass_through() {
        let c = RecordTransformerConf { remove_keys: vec!["absent".into(), "$.nest.absent".into()], ..conf(&[]) };
        let f = RecordTransformer::new(&c).unwrap();
        let b = batch_of("t", &[rec(BASE), rec(BASE)]);
        let ptr = b.entries.as_ptr();
        assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
        // Re-setting a field to its own value changes nothing either.
        let f = RecordTransformer::new(&conf(&[("foo", "bar")])).unwrap();
        let b = batch_of("t", &[rec(BASE)]);
        let ptr = b.entries.as_ptr();
        assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
        // remove_keys only: untouched records are copied as they are around touched ones.
        let c = RecordTransformerConf { remove_keys: vec!["b".into(), "$.n.x".into()], ..conf(&[]) };
        let f = RecordTransformer::new(&c).unwrap();
        let recs = [r#"{"a":1}"#, r#"{"a":2,"b":3}"#, r#"{"n":{"x":null,"y":1}}"#, r#"{"n":"x"}"#];
        let out = f.filter(batch_of("t", &recs.map(rec))).unwrap();
        let got: Vec<String> = out.events().map(|e| json_of(e.record)).collect();
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"a":2}"#, r#"{"n":{"y":1}}"#, r#"{"n":"x"}"#]);
        // Unchanged events around a changed one are all kept, in order.
        let f = RecordTransformer::new(&conf(&[("a", "${record[\"b\"]}")])).unwrap();
        let recs = [r#"{"a":"x","b":"x"}"#, r#"{"a":"x","b":"y"}"#, r#"{"a":"z","b":"z"}"#];
        let out = f.filter(batch_of("t", &recs.map(rec))).unwrap();
        let got: Vec<String> = out.events().map(|e| json_of(e.record)).collect();
        assert_eq!(got, vec![recs[0], r#"{"a":"y","b":"y"}"#, recs[2]]);
        // A change rebuilds the batch; the time is kept as received.
        let f = RecordTransformer::new(&conf(&[("foo", "baz")])).unwrap();
        let b = batch_of("t", &[rec(BASE)]);
        let ptr = b.entries.as_ptr();
        let out = f.filter(b).unwrap();
        assert_ne!(out.entries.as_ptr(), ptr);
        assert_eq!(out.events().next().unwrap().time, T);
    }

    #[test]
    fn duplicate_and_non_string_keys() {
        // {"a":1,"a":2,1:"int","b":3}: an overwritten duplicate is written once, at its
        // first position; a non-string key passes through.
        let mut r = Vec::new();
        raw::map_header(&mut r, 4);
        for (k, v) in [("a", 1u64), ("a", 2)] {
            raw::str(&mut r, k.as_bytes());
            raw::uint(&mut r, v);
        }
        raw::uint(&mut r, 1);
        raw::str(&mut r, b"int");
        raw::str(&mut r, b"b");
        raw::uint(&mut r, 3);
        let c = RecordTransformerConf {
            remove_keys: vec!["b".into()],
            ..conf(&[("a", "${record[\"a\"]}"), ("i", "${record[\"1\"]}")])
        };
        let f = RecordTransformer::new(&c).unwrap();
        let out = f.filter(batch_of("t", &[r])).unwrap();
        assert_eq!(json_of(out.events().next().unwrap().record), r#"{"a":2,"1":"int","i":"int"}"#);
    }

    #[test]
    fn message_mode_batches_become_packed() {
        let r = rec(r#"{"a":1}"#);
        let mut e = Vec::new();
        encode::time(&mut e, EventTime::new(9, 0), encode::TimeFormat::Integer);
        e.extend_from_slice(&r);
        let b = EventBatch::from_entries(
            Bytes::from_static(b"m.t"),
            Bytes::from(e),
            EntriesFormat::Message,
            Mode::Message,
            Options::default(),
            100,
        )
        .unwrap();
        let f = RecordTransformer::new(&conf(&[("t", "${tag_parts[1]}")])).unwrap();
        let out = f.filter(b).unwrap();
        assert_eq!(out.format, EntriesFormat::Packed);
        let ev = out.events().next().unwrap();
        assert_eq!(ev.time, EventTime::new(9, 0));
        assert_eq!(json_of(ev.record), r#"{"a":1,"t":"t"}"#);
    }
}
