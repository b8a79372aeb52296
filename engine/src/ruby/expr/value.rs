//! The values an expression computes ([`Val`]): Ruby's nil, booleans, Integer, Float,
//! String, Symbol, Array, Hash, Time, MatchData and Regexp, where strings and containers
//! read from the record stay borrowed msgpack ([`Val::Raw`] / [`Val::Str`] with
//! `Cow::Borrowed`). Also how a value is written back (msgpack into a record; `to_s`,
//! `inspect` and `to_json` text), Ruby's `==`, `eql?` and `<=>`, and the argument
//! conversions every method uses.

use std::borrow::Cow;
use std::io::Write;

use spate_protocol::encode::raw;
use spate_protocol::msgpack::Kind;
use spate_protocol::{EventTime, ValueRef};

use std::cmp::Ordering;

use super::method::MethodDef;
use super::{Re, RubyError};
use crate::ruby::time::Zone;
use crate::ruby::value::{inspect_str, write_inspect, write_ruby_float, write_to_s};

/// A Ruby Time: seconds, nanoseconds and whether it is in UTC (else local time). With
/// `event`, it is a `Fluent::EventTime` (record_modifier's `time`): `to_s` is the
/// seconds and it goes into a record as msgpack's EventTime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RTime {
    pub sec: i64,
    pub nsec: u32,
    pub utc: bool,
    pub event: bool,
    /// A fixed UTC offset in seconds (`Time.parse("... +09:00")`); None: local time.
    pub offset: Option<i64>,
}

impl RTime {
    pub fn from_event(t: EventTime) -> RTime {
        RTime { sec: t.sec as i64, nsec: t.nsec, utc: false, event: false, offset: None }
    }

    pub fn now() -> RTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        RTime { sec: d.as_secs() as i64, nsec: d.subsec_nanos(), utc: false, event: false, offset: None }
    }

    pub fn zone(&self) -> Zone {
        match (self.utc, self.offset) {
            (true, _) => Zone::Utc,
            (false, Some(o)) => Zone::Fixed(o),
            (false, None) => Zone::Local,
        }
    }

    /// `Time#to_s`: `2010-05-04 03:02:01 +0000`, or `... UTC` for a UTC time; the
    /// seconds for an EventTime.
    pub fn write_to_s(&self, out: &mut Vec<u8>) {
        if self.event {
            let _ = write!(out, "{}", self.sec);
            return;
        }
        let fmt = if self.utc { "%Y-%m-%d %H:%M:%S UTC" } else { "%Y-%m-%d %H:%M:%S %z" };
        crate::ruby::time::strftime(out, fmt, self.sec, self.nsec, self.zone());
    }

    pub fn to_f(&self) -> f64 {
        self.sec as f64 + self.nsec as f64 / 1e9
    }
}

/// MatchData: the subject and the byte spans of the groups (0: the whole match).
#[derive(Debug, Clone)]
pub struct MatchData<'a> {
    pub subject: Cow<'a, [u8]>,
    pub groups: Vec<Option<(usize, usize)>>,
    pub names: Vec<(String, usize)>,
}

impl<'a> MatchData<'a> {
    pub fn group(&self, i: usize) -> Option<Val<'a>> {
        let (s, e) = (*self.groups.get(i)?)?;
        Some(Val::Str(Cow::Owned(self.subject.get(s..e)?.to_vec())))
    }

    pub fn named(&self, name: &str) -> Option<Option<Val<'a>>> {
        // With duplicate names Ruby returns the last group that matched.
        let mut found = None;
        for (n, i) in &self.names {
            if n == name {
                found = Some(self.group(*i));
                if matches!(found, Some(Some(_))) {
                    continue;
                }
            }
        }
        found
    }
}

/// A Ruby value.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, [u8]>),
    Sym(Cow<'a, str>),
    /// An array or map (or extension / integer beyond i64) straight from the record.
    Raw(ValueRef<'a>),
    Array(Vec<Val<'a>>),
    Hash(Vec<(Val<'a>, Val<'a>)>),
    Time(RTime),
    Match(Box<MatchData<'a>>),
    Regex(&'a Re),
    /// `a..b` / `a...b` (only as an index).
    Range(i64, Option<i64>, bool),
    /// A class constant (`String`...), for `is_a?`.
    Class(&'static str),
}

impl<'a> Val<'a> {
    /// A record value as Ruby sees it after msgpack decoding.
    pub fn from_ref(v: ValueRef<'a>) -> Val<'a> {
        match v.kind() {
            Kind::Nil => Val::Nil,
            Kind::Bool => Val::Bool(v.as_bool() == Some(true)),
            Kind::Str | Kind::Bin => Val::Str(Cow::Borrowed(v.as_str().unwrap_or_default())),
            Kind::UInt | Kind::NegInt => v.as_i64().map_or(Val::Raw(v), Val::Int),
            Kind::F32 | Kind::F64 => Val::Float(v.as_f64().unwrap_or(f64::NAN)),
            Kind::Array | Kind::Map | Kind::Ext => Val::Raw(v),
        }
    }

    pub fn str(s: impl Into<Cow<'a, [u8]>>) -> Val<'a> {
        Val::Str(s.into())
    }

    pub fn truthy(&self) -> bool {
        !matches!(self, Val::Nil | Val::Bool(false))
    }

    pub fn is_map(&self) -> bool {
        matches!(self, Val::Hash(_)) || matches!(self, Val::Raw(v) if v.kind() == Kind::Map)
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Val::Array(_)) || matches!(self, Val::Raw(v) if v.kind() == Kind::Array)
    }

    /// Ruby's class name (for messages).
    pub fn class(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(true) => "true",
            Val::Bool(false) => "false",
            Val::Int(_) => "an instance of Integer",
            Val::Float(_) => "an instance of Float",
            Val::Str(_) => "an instance of String",
            Val::Sym(_) => "an instance of Symbol",
            Val::Raw(v) => match v.kind() {
                Kind::Array => "an instance of Array",
                Kind::Map => "an instance of Hash",
                Kind::Ext => "an instance of Fluent::EventTime",
                _ => "an instance of Integer",
            },
            Val::Array(_) => "an instance of Array",
            Val::Hash(_) => "an instance of Hash",
            Val::Time(_) => "an instance of Time",
            Val::Match(_) => "an instance of MatchData",
            Val::Regex(_) => "an instance of Regexp",
            Val::Range(..) => "an instance of Range",
            Val::Class(_) => "an instance of Class",
        }
    }

    /// Short class name for conversion errors (`no implicit conversion of X into String`).
    pub fn class_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(true) => "true",
            Val::Bool(false) => "false",
            other => other.class().trim_start_matches("an instance of "),
        }
    }

    /// Elements of an array value.
    pub fn elements(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Array(a) => Some(a.clone()),
            Val::Raw(v) if v.kind() == Kind::Array => Some(v.as_array()?.map(Val::from_ref).collect()),
            _ => None,
        }
    }

    /// Pairs of a hash value.
    pub fn pairs(&self) -> Option<Vec<(Val<'a>, Val<'a>)>> {
        match self {
            Val::Hash(h) => Some(h.clone()),
            Val::Raw(v) if v.kind() == Kind::Map => {
                // Duplicate keys: one entry, the last value, at the first position.
                let mut out: Vec<(Val<'a>, Val<'a>)> = Vec::new();
                for (k, x) in v.as_map()?.fields() {
                    let k = Val::from_ref(k);
                    match out.iter_mut().find(|(o, _)| ruby_eql(o, &k)) {
                        Some(slot) => slot.1 = Val::from_ref(x),
                        None => out.push((k, Val::from_ref(x))),
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// Writes the value into a record (msgpack). Ruby objects msgpack cannot carry are
    /// written as their `to_s` (a Time, MatchData, Regexp, Range), which is what fluentd's
    /// JSON formatters print for them.
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        match self {
            Val::Nil => raw::nil(out),
            Val::Bool(b) => raw::bool(out, *b),
            Val::Int(i) => raw::int(out, *i),
            Val::Float(f) => raw::f64(out, *f),
            Val::Str(s) => raw::str(out, s),
            Val::Sym(s) => raw::str(out, s.as_bytes()),
            Val::Raw(v) => out.extend_from_slice(v.as_bytes()),
            Val::Array(a) => {
                raw::array_header(out, a.len() as u32);
                for x in a {
                    x.write_msgpack(out);
                }
            }
            Val::Hash(h) => {
                raw::map_header(out, h.len() as u32);
                for (k, x) in h {
                    k.write_msgpack(out);
                    x.write_msgpack(out);
                }
            }
            Val::Time(t) if t.event => {
                raw::event_time(out, EventTime::new(t.sec.rem_euclid(1 << 32) as u32, t.nsec));
            }
            Val::Time(_) | Val::Match(_) | Val::Regex(_) | Val::Range(..) | Val::Class(_) => {
                let mut s = Vec::new();
                self.write_to_s(&mut s);
                raw::str(out, &s);
            }
        }
    }

    /// Ruby's `to_s`.
    pub fn write_to_s(&self, out: &mut Vec<u8>) {
        match self {
            Val::Nil => {}
            Val::Str(s) => out.extend_from_slice(s),
            Val::Sym(s) => out.extend_from_slice(s.as_bytes()),
            Val::Raw(v) => write_to_s(*v, out),
            Val::Time(t) => t.write_to_s(out),
            Val::Match(m) => {
                if let Some(Val::Str(s)) = m.group(0) {
                    out.extend_from_slice(&s);
                }
            }
            Val::Regex(r) => {
                let on: String = "mix".chars().filter(|c| r.flags.contains(*c)).collect();
                let off: String = "mix".chars().filter(|c| !r.flags.contains(*c)).collect();
                let dash = if off.is_empty() { "" } else { "-" };
                let _ = write!(out, "(?{on}{dash}{off}:{})", r.src);
            }
            _ => self.write_inspect(out),
        }
    }

    /// Ruby's `inspect` (Ruby >= 3.4 hash style, as [`crate::ruby::value`]).
    pub fn write_inspect(&self, out: &mut Vec<u8>) {
        match self {
            Val::Nil => out.extend_from_slice(b"nil"),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Float(f) => write_ruby_float(*f, out),
            Val::Str(s) => inspect_str(s, true, out),
            Val::Sym(s) => {
                out.push(b':');
                out.extend_from_slice(s.as_bytes());
            }
            Val::Raw(v) => write_inspect(*v, out),
            Val::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    x.write_inspect(out);
                }
                out.push(b']');
            }
            Val::Hash(h) => {
                out.push(b'{');
                for (i, (k, x)) in h.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    if let Val::Sym(s) = k {
                        // Ruby 3.4: `{a: 1}`.
                        out.extend_from_slice(s.as_bytes());
                        out.extend_from_slice(b": ");
                    } else {
                        k.write_inspect(out);
                        out.extend_from_slice(b" => ");
                    }
                    x.write_inspect(out);
                }
                out.push(b'}');
            }
            Val::Time(t) => t.write_to_s(out),
            Val::Match(m) => {
                out.extend_from_slice(b"#<MatchData ");
                m.group(0).unwrap_or(Val::Nil).write_inspect(out);
                out.push(b'>');
            }
            Val::Regex(r) => {
                let _ = write!(out, "/{}/{}", r.src, r.flags);
            }
            Val::Range(a, b, excl) => {
                let _ = write!(out, "{a}{}", if *excl { "..." } else { ".." });
                if let Some(b) = b {
                    let _ = write!(out, "{b}");
                }
            }
            Val::Class(c) => out.extend_from_slice(c.as_bytes()),
        }
    }

    /// Ruby's `to_json` (the json gem's generator: compact, strings as UTF-8).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Val::Nil => out.extend_from_slice(b"null"),
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Float(f) if f.is_finite() => write_ruby_float(*f, out),
            Val::Float(_) => out.extend_from_slice(b"null"),
            Val::Str(s) => spate_protocol::event::write_json_str(s, out),
            Val::Sym(s) => spate_protocol::event::write_json_str(s.as_bytes(), out),
            Val::Raw(v) => v.write_json(out),
            Val::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    x.write_json(out);
                }
                out.push(b']');
            }
            Val::Hash(h) => {
                out.push(b'{');
                for (i, (k, x)) in h.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let mut ks = Vec::new();
                    k.write_to_s(&mut ks);
                    spate_protocol::event::write_json_str(&ks, out);
                    out.push(b':');
                    x.write_json(out);
                }
                out.push(b'}');
            }
            other => {
                let mut s = Vec::new();
                other.write_to_s(&mut s);
                spate_protocol::event::write_json_str(&s, out);
            }
        }
    }
}

pub(super) type R<'a> = Result<Val<'a>, RubyError>;

pub(super) fn no_method(d: &MethodDef, v: &Val<'_>) -> RubyError {
    RubyError::NoMethod { method: d.name, recv: v.class() }
}

pub(super) fn type_err(v: &Val<'_>, into: &str) -> RubyError {
    RubyError::Type(format!("no implicit conversion of {} into {into}", v.class_name()))
}

pub(super) fn int_arg(v: &Val<'_>) -> Result<i64, RubyError> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Float(f) if f.is_finite() => Ok(f.trunc() as i64),
        other => Err(type_err(other, "Integer")),
    }
}

pub(super) fn str_arg<'v>(v: &'v Val<'_>) -> Result<&'v [u8], RubyError> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(type_err(other, "String")),
    }
}

pub(super) fn num(v: &Val<'_>) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::Float(f) => Some(*f),
        _ => None,
    }
}

/// Ruby's `==`.
pub(super) fn ruby_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => num(a) == num(b),
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Sym(x), Val::Sym(y)) => x == y,
        (Val::Nil, Val::Nil) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Time(x), Val::Time(y)) => x.sec == y.sec && x.nsec == y.nsec,
        (Val::Regex(x), Val::Regex(y)) => x.src == y.src && x.flags == y.flags,
        (Val::Class(x), Val::Class(y)) => x == y,
        (Val::Raw(x), Val::Raw(y)) if x.kind() == Kind::Ext || y.kind() == Kind::Ext => x.as_bytes() == y.as_bytes(),
        _ if a.is_array() && b.is_array() => match (a.elements(), b.elements()) {
            (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| ruby_eq(p, q)),
            _ => false,
        },
        _ if a.is_map() && b.is_map() => match (a.pairs(), b.pairs()) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.iter().any(|(k2, v2)| ruby_eql(k, k2) && ruby_eq(v, v2)))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Ruby's `eql?` (Hash keys: `1` and `1.0` differ).
pub(super) fn ruby_eql(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Int(_), Val::Float(_)) | (Val::Float(_), Val::Int(_)) => false,
        (Val::Float(x), Val::Float(y)) => x == y,
        _ => ruby_eq(a, b),
    }
}

/// `<=>` for the comparable types; `ArgumentError` otherwise, as Ruby's.
pub(super) fn compare(a: &Val<'_>, b: &Val<'_>) -> Result<Ordering, RubyError> {
    let fail = || RubyError::Argument(format!("comparison of {} with {} failed", a.class_name(), b.class_name()));
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Ok(x.cmp(y)),
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
            num(a).zip(num(b)).and_then(|(x, y)| x.partial_cmp(&y)).ok_or_else(fail)
        }
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) => Ok((x.sec, x.nsec).cmp(&(y.sec, y.nsec))),
        _ => Err(fail()),
    }
}
