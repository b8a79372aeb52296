//! record_transformer's `<record>` templates: fluentd's `PlaceholderExpander` placeholders
//! (`${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}`, `${hostname}`,
//! `${time}`, `${record["key"]}`) compiled once into [`Tpl`]s, JSON values, and
//! auto_typecast (a value that is exactly one placeholder keeps the referenced type); then
//! rendered per event straight into msgpack.
//!
//! With `enable_ruby`, values are compiled as fluentd's `RubyPlaceholderExpander` does:
//! a value that is exactly one `${code}` (with auto_typecast) is that Ruby expression,
//! keeping its type; any other string is `%Q[...]` with each `${` turned into `#{` (so
//! `#{...}` in an unquoted value is Ruby too, and `\t` escapes apply); hash keys are
//! always strings. The expressions are [`crate::ruby::expr`] programs.

use spate_protocol::encode::raw;
use spate_protocol::{EventTime, RecordRef, ValueRef};

use crate::ruby::expr::{self, CompileCx, ExprError, Local, Program, RubyError, Scope, Segment};
use crate::ruby::value::write_to_s;

/// A value computed once per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BatchPh {
    Tag,
    Hostname,
    Part(i64),
    Prefix(i64),
    Suffix(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ph {
    /// Index into the batch's resolved [`BatchPh`] values.
    Batch(usize),
    Time,
    Record(Vec<u8>),
    /// An unknown placeholder: nil.
    Nil,
    /// `enable_ruby`: index into the filter's Ruby programs.
    Expr(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Lit(Vec<u8>),
    Ph(Ph),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tpl {
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

pub(super) fn parts_are_lit(p: &[Part]) -> Option<Vec<u8>> {
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
pub(super) struct Compiler {
    pub(super) any: regex::Regex,
    pub(super) auto_typecast: bool,
    pub(super) batch: Vec<BatchPh>,
    pub(super) unknown: Vec<String>,
    /// `enable_ruby`: the host name Ruby's `hostname` gives.
    pub(super) ruby: Option<String>,
    pub(super) exprs: Vec<Program>,
    /// The first Ruby expression that does not compile.
    pub(super) error: Option<ExprError>,
    /// record_reformer's placeholders: `${tags[N]}`, `${field}` for a record field (any
    /// name but the reserved ones), and with `enable_ruby` bare names as record fields.
    pub(super) reformer: bool,
}

/// The names record_reformer's `${name}` never reads from the record.
const REFORMER_RESERVED: [&str; 8] =
    ["tag", "tags", "tag_parts", "tag_prefix", "tag_suffix", "hostname", "time", "record"];

/// A Ruby exception while expanding a value (fluentd: "failed to expand `code` : error =
/// ...", and the event becomes an error event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to expand `{code}` : error = {err}")]
pub(super) struct ExpandError {
    pub code: String,
    pub err: RubyError,
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
                if let Some(n) =
                    indexed(inner, "tag_parts").or_else(|| indexed(inner, "tags").filter(|_| self.reformer))
                {
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
                } else if self.reformer && !REFORMER_RESERVED.contains(&inner) {
                    Ph::Record(inner.as_bytes().to_vec())
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

    fn locals(&self) -> &'static [Local] {
        if self.reformer {
            &Local::REFORMER
        } else {
            &Local::ALL
        }
    }

    fn compile_expr(&mut self, code: &str) -> Option<usize> {
        let host = self.ruby.clone().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok();
        match Program::compile(code, &CompileCx { locals: self.locals(), env: &env, hostname: &host }) {
            Ok(p) => {
                self.exprs.push(p);
                Some(self.exprs.len() - 1)
            }
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// `%Q[...]` of a value, `${` read as `#{`.
    fn ruby_parts(&mut self, s: &str) -> Vec<Part> {
        let host = self.ruby.clone().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok();
        let text = s.replace("${", "#{");
        let cx = CompileCx { locals: self.locals(), env: &env, hostname: &host };
        let segs = match expr::compile_interpolation(&text, &cx) {
            Ok(segs) => segs,
            Err(e) => {
                self.error.get_or_insert(e);
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(segs.len());
        for seg in segs {
            match seg {
                Segment::Lit(l) => out.push(Part::Lit(l)),
                Segment::Code(p) => {
                    self.exprs.push(p);
                    out.push(Part::Ph(Ph::Expr(self.exprs.len() - 1)));
                }
            }
        }
        out
    }

    pub(super) fn parts(&mut self, s: &str) -> Vec<Part> {
        if self.ruby.is_some() {
            return self.ruby_parts(s);
        }
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
        if self.ruby.is_some()
            && self.auto_typecast
            && s.matches("${").count() == 1
            && s.starts_with("${")
            && s.ends_with('}')
        {
            return match self.compile_expr(&s[2..s.len() - 1]) {
                Some(i) => Tpl::Single(Ph::Expr(i)),
                None => Tpl::Const(Vec::new()),
            };
        }
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
    pub(super) fn value(&mut self, s: &str) -> Tpl {
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

/// Per-batch placeholder values.
pub(super) struct Ctx<'t> {
    pub(super) vals: Vec<Option<Vec<u8>>>,
    pub(super) tag: &'t [u8],
    /// `tag.split('.')` (for Ruby expressions).
    pub(super) parts: Vec<&'t [u8]>,
}

/// What rendering one event's templates reads.
pub(super) struct Event<'x, 'a> {
    pub ctx: &'x Ctx<'a>,
    pub exprs: &'a [Program],
    pub rec: RecordRef<'a>,
    pub t: EventTime,
}

impl Event<'_, '_> {
    fn eval(&self, i: usize) -> Result<expr::Val<'_>, ExpandError> {
        let Some(p) = self.exprs.get(i) else { return Ok(expr::Val::Nil) };
        let scope = Scope { record: self.rec, tag: self.ctx.tag, tag_parts: &self.ctx.parts, time: self.t };
        p.eval(&scope).map_err(|err| ExpandError { code: p.source().to_string(), err })
    }
}

/// The `Time#to_s` text of the event time, cached across events of the same second.
#[derive(Debug, Default)]
pub(super) struct TimeText {
    sec: Option<u32>,
    text: Vec<u8>,
}

/// `record["key"]` as fluentd's placeholder table sees it: keys compared by their `to_s`,
/// the last duplicate winning.
pub(super) fn record_get<'a>(rec: RecordRef<'a>, key: &[u8]) -> Option<ValueRef<'a>> {
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

impl TimeText {
    fn get(&mut self, t: EventTime) -> &[u8] {
        if self.sec != Some(t.sec) {
            self.text.clear();
            crate::log::format_time(&mut self.text, t.sec as i64, 0, 0);
            self.sec = Some(t.sec);
        }
        &self.text
    }
}

/// Appends the text of `parts` (Ruby's `gsub` with `to_s` of each value).
pub(super) fn expand(
    parts: &[Part],
    ev: &Event<'_, '_>,
    tt: &mut TimeText,
    out: &mut Vec<u8>,
) -> Result<(), ExpandError> {
    for p in parts {
        match p {
            Part::Lit(l) => out.extend_from_slice(l),
            Part::Ph(Ph::Batch(i)) => {
                if let Some(Some(v)) = ev.ctx.vals.get(*i) {
                    out.extend_from_slice(v);
                }
            }
            Part::Ph(Ph::Time) => out.extend_from_slice(tt.get(ev.t)),
            Part::Ph(Ph::Record(k)) => {
                if let Some(v) = record_get(ev.rec, k) {
                    write_to_s(v, out);
                }
            }
            Part::Ph(Ph::Nil) => {}
            Part::Ph(Ph::Expr(i)) => ev.eval(*i)?.write_to_s(out),
        }
    }
    Ok(())
}

pub(super) fn write_tpl(
    tpl: &Tpl,
    ev: &Event<'_, '_>,
    tt: &mut TimeText,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), ExpandError> {
    match tpl {
        Tpl::Const(b) => out.extend_from_slice(b),
        Tpl::Single(ph) => match ph {
            Ph::Batch(i) => match ev.ctx.vals.get(*i) {
                Some(Some(v)) => raw::str(out, v),
                _ => raw::nil(out),
            },
            Ph::Time => raw::str(out, tt.get(ev.t)),
            Ph::Record(k) => match record_get(ev.rec, k) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => raw::nil(out),
            },
            Ph::Nil => raw::nil(out),
            Ph::Expr(i) => ev.eval(*i)?.write_msgpack(out),
        },
        Tpl::Str(parts) => {
            tmp.clear();
            expand(parts, ev, tt, tmp)?;
            raw::str(out, tmp);
        }
        Tpl::Map(kvs) => {
            raw::map_header(out, kvs.len() as u32);
            for (k, v) in kvs {
                tmp.clear();
                expand(k, ev, tt, tmp)?;
                raw::str(out, tmp);
                write_tpl(v, ev, tt, tmp, out)?;
            }
        }
        Tpl::Array(items) => {
            raw::array_header(out, items.len() as u32);
            for v in items {
                write_tpl(v, ev, tt, tmp, out)?;
            }
        }
    }
    Ok(())
}
