//! `filter_grep` with fluentd's semantics (`lib/fluent/plugin/filter_grep.rb`), plus the
//! Ruby-compatible pieces it shares with `filter_record_transformer`: record accessors
//! (`$.a.b`, `$['a'][0]`), Ruby's `to_s` / `inspect` of record values, and Ruby (Onigmo)
//! regexps translated to the `regex` crate.
//!
//! Conditions are pooled as fluentd pools them: top-level `<regexp>`s, `regexpN` and
//! `<and><regexp>` must all match; at least one `<or><regexp>` must match; the event is
//! dropped when every `<and><exclude>` matches or any top-level `<exclude>`, `excludeN` or
//! `<or><exclude>` matches. A value is matched as Ruby's `record[key].to_s`: strings as
//! they are (in place, no copy), other values as Ruby prints them, a missing key or nil as
//! `""` (so `^$` matches it). A key path through a scalar (`$.a.b` with `a` a string)
//! raises in Ruby and fluentd then keeps the event; so does spate. A batch whose events
//! all pass is returned as is; otherwise the kept entries are copied byte for byte.

use std::cell::RefCell;
use std::rc::Rc;

use spate_protocol::msgpack::{self, Head, Kind};
use spate_protocol::{EntriesFormat, EventBatch, EventTime, RecordRef, ValueRef};

pub use super::error::FilterError;
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Filter, FilterPlan, Kind as PluginKind, PlanCtx, Registration, ShardCtx,
};

/// The sections of one `<and>` or `<or>`: `(key, pattern)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrepGroup {
    pub regexps: Vec<(String, String)>,
    pub excludes: Vec<(String, String)>,
}

/// filter_grep's parameters, shaped like the config. Patterns of sections are fluentd
/// `:regexp` values (`/re/flags` with `i` / `m`, or a bare regexp); keys are record
/// accessors. [`GrepFilter::new`] applies fluentd's checks (duplicate keys, both
/// `<regexp>` and `<exclude>` in one group, malformed `regexpN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrepConf {
    /// The old `regexpN "key pattern"` parameters (N in 1..=20), as `(N, value)`. The value
    /// is split at its first space; the pattern is compiled bare (fluentd's
    /// `Regexp.compile`: slashes are literal).
    pub regexp_n: Vec<(u32, String)>,
    /// The old `excludeN "key pattern"` parameters.
    pub exclude_n: Vec<(u32, String)>,
    /// Top-level `<regexp>` sections: `(key, pattern)`.
    pub regexps: Vec<(String, String)>,
    /// Top-level `<exclude>` sections.
    pub excludes: Vec<(String, String)>,
    pub and: Vec<GrepGroup>,
    pub or: Vec<GrepGroup>,
}

// ---------------------------------------------------------------------------------------
// Record accessors (fluentd's plugin_helper/record_accessor.rb)
// ---------------------------------------------------------------------------------------

/// One step of a record accessor: a map key, or an integer (an array index, or an integer
/// map key, as Ruby's `dig` treats it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(Vec<u8>),
    Index(i64),
}

/// A parsed record accessor: `name` (one key, taken as is), `$.a.b[0]` or `$['a']['b']`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accessor {
    /// Never empty.
    pub(crate) steps: Vec<Step>,
}

/// The result of `record.dig(*keys)`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dug<'a> {
    Value(ValueRef<'a>),
    /// Missing (or an intermediate value is nil).
    Nil,
    /// Ruby would raise: digging with a string into an array, or into a scalar.
    TypeError,
}

fn accessor_err(key: &str, reason: impl Into<String>) -> FilterError {
    FilterError::Accessor { key: key.to_string(), reason: reason.into() }
}

/// Ruby's `Integer(str)`: surrounding whitespace, a sign, `0x`/`0b`/`0o`/`0` prefixes and
/// `_` between digits.
fn ruby_integer(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string())
    } else if let Some(r) = lower.strip_prefix("0d") {
        (10, r.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let v = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if neg { -v } else { v })
}

impl Accessor {
    /// Parses a record accessor exactly as fluentd's `Accessor.parse_parameter` does,
    /// including its error cases.
    pub(crate) fn parse(param: &str) -> Result<Accessor, FilterError> {
        let steps = if let Some(rest) = param.strip_prefix("$.") {
            Self::parse_dot(param, rest)?
        } else if param.starts_with("$[") {
            Self::parse_bracket(param)?
        } else {
            vec![Step::Key(param.as_bytes().to_vec())]
        };
        Ok(Accessor { steps })
    }

    fn parse_dot(param: &str, rest: &str) -> Result<Vec<Step>, FilterError> {
        let mut parts: Vec<&str> = rest.split('.').collect();
        // Ruby's String#split drops trailing empty fields.
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        let mut steps = Vec::new();
        for key in parts {
            let Some(start) = key.find('[') else {
                if key.chars().any(|c| c.is_ascii_whitespace() || c == '\x0b') {
                    return Err(accessor_err(
                        param,
                        format!("whitespace character is not allowed in dot notation. Use bracket notation: {key}"),
                    ));
                }
                steps.push(Step::Key(key.as_bytes().to_vec()));
                continue;
            };
            if start > 0 {
                let k = &key[..start];
                if k.chars().any(|c| c.is_ascii_whitespace() || c == '\x0b') {
                    return Err(accessor_err(
                        param,
                        format!("whitespace character is not allowed in dot notation. Use bracket notation: {k}"),
                    ));
                }
                steps.push(Step::Key(k.as_bytes().to_vec()));
            }
            let mut k = &key[start + 1..];
            let mut in_bracket = true;
            while !k.is_empty() {
                if in_bracket {
                    let Some(i) = k.find(']') else {
                        return Err(accessor_err(param, "'[' found but ']' not found"));
                    };
                    let idx = if i == 0 { k } else { &k[..i] };
                    if idx == "]" {
                        return Err(accessor_err(param, "missing array index in '[]'"));
                    }
                    let n =
                        ruby_integer(idx).ok_or_else(|| accessor_err(param, format!("invalid array index {idx:?}")))?;
                    steps.push(Step::Index(n));
                    k = &k[i + 1..];
                    in_bracket = false;
                } else {
                    let Some(i) = k.find('[') else {
                        return Err(accessor_err(param, "found more characters after ']'"));
                    };
                    k = &k[i + 1..];
                    in_bracket = true;
                }
            }
        }
        if steps.is_empty() {
            return Err(accessor_err(param, "empty keys in dot notation"));
        }
        Ok(steps)
    }

    fn parse_bracket(param: &str) -> Result<Vec<Step>, FilterError> {
        let mut p = &param[1..];
        let mut in_bracket = false;
        let mut steps = Vec::new();
        while !p.is_empty() {
            if in_bracket {
                let q = p.as_bytes()[0];
                if q == b'\'' || q == b'"' {
                    let Some(i) = p.find("']").or_else(|| p.find("\"]")) else {
                        return Err(accessor_err(param, "incomplete bracket"));
                    };
                    if p.as_bytes()[i] != q {
                        return Err(accessor_err(param, "mismatched quotes"));
                    }
                    // Ruby's p[1..i-1]; with i == 0 that is p[1..-1] (the rest).
                    let key = if i == 0 { &p[1..] } else { &p[1..i] };
                    steps.push(Step::Key(key.as_bytes().to_vec()));
                    p = p.get(i + 2..).unwrap_or("");
                } else {
                    let Some(i) = p.find(']') else {
                        return Err(accessor_err(param, "'[' found but ']' not found"));
                    };
                    let idx = if i == 0 { p } else { &p[..i] };
                    if idx == "]" {
                        return Err(accessor_err(param, "missing array index in '[]'"));
                    }
                    let n =
                        ruby_integer(idx).ok_or_else(|| accessor_err(param, format!("invalid array index {idx:?}")))?;
                    steps.push(Step::Index(n));
                    p = &p[i + 1..];
                }
                in_bracket = false;
            } else {
                let Some(i) = p.find('[') else {
                    return Err(accessor_err(param, "found more characters after ']'"));
                };
                p = &p[i + 1..];
                in_bracket = true;
            }
        }
        if steps.is_empty() {
            return Err(accessor_err(param, "empty keys in bracket notation"));
        }
        Ok(steps)
    }

    /// The key when this accessor is a single top-level string key.
    pub(crate) fn simple_key(&self) -> Option<&[u8]> {
        match self.steps.as_slice() {
            [Step::Key(k)] => Some(k),
            _ => None,
        }
    }

    /// `record[key]` / `record.dig(*keys)`.
    #[inline]
    pub(crate) fn dig<'a>(&self, rec: RecordRef<'a>) -> Dug<'a> {
        let Some(first) = self.steps.first() else { return Dug::Nil };
        self.dig_from(map_get(rec, first))
    }

    /// Continues [`Accessor::dig`] from the value the first step found.
    #[inline]
    pub(crate) fn dig_from<'a>(&self, first: Option<ValueRef<'a>>) -> Dug<'a> {
        let Some(mut cur) = first else { return Dug::Nil };
        for s in self.steps.iter().skip(1) {
            cur = match cur.kind() {
                Kind::Nil => return Dug::Nil,
                Kind::Map => match cur.as_map().and_then(|m| map_get(m, s)) {
                    Some(v) => v,
                    None => return Dug::Nil,
                },
                Kind::Array => match s {
                    Step::Index(i) => match array_get(cur, *i) {
                        Some(v) => v,
                        None => return Dug::Nil,
                    },
                    Step::Key(_) => return Dug::TypeError,
                },
                _ => return Dug::TypeError,
            };
        }
        Dug::Value(cur)
    }
}

/// Whether a map key equals an accessor step (string keys by bytes, integer keys by value).
#[inline]
pub(crate) fn key_is(k: ValueRef<'_>, step: &Step) -> bool {
    match step {
        Step::Key(s) => k.as_str() == Some(s.as_slice()),
        Step::Index(i) => {
            matches!(k.kind(), Kind::UInt | Kind::NegInt) && msgpack::read_int(k.as_bytes()) == Some(*i as i128)
        }
    }
}

/// `hash[step]` on a decoded map: with duplicate keys the last one wins.
#[inline]
fn map_get<'a>(m: RecordRef<'a>, step: &Step) -> Option<ValueRef<'a>> {
    match step {
        Step::Key(k) => m.get(k),
        Step::Index(_) => {
            let mut found = None;
            for (k, v) in m.fields() {
                if key_is(k, step) {
                    found = Some(v);
                }
            }
            found
        }
    }
}

/// Number of elements of an array value.
pub(crate) fn array_len(v: ValueRef<'_>) -> Option<usize> {
    match msgpack::head(v.as_bytes()) {
        Ok(Some(Head::Array { n, .. })) => Some(n as usize),
        _ => None,
    }
}

/// Ruby's array index (negative counts from the end) to a position.
pub(crate) fn ruby_index(len: usize, i: i64) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&idx).then_some(idx as usize)
}

fn array_get(v: ValueRef<'_>, i: i64) -> Option<ValueRef<'_>> {
    let pos = ruby_index(array_len(v)?, i)?;
    v.as_array()?.nth(pos)
}

// ---------------------------------------------------------------------------------------
// Ruby's to_s / inspect of record values
// ---------------------------------------------------------------------------------------

fn write_int(v: ValueRef<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    if let Some(i) = msgpack::read_int(v.as_bytes()) {
        let _ = write!(out, "{i}");
    }
}

/// Ruby's `Float#to_s` (shortest round-trip digits; exponent form below 1e-4 and from
/// 1e16 on: `1.0e+16`, `1.0e-05`).
pub(crate) fn write_ruby_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    if f == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: Vec<u8> = mant.bytes().filter(|b| b.is_ascii_digit()).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let decpt = exp + 1; // value = 0.DIGITS * 10^decpt
    let nd = digits.len() as i32;
    if decpt > 0 && decpt < 16 {
        if nd <= decpt {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', (decpt - nd) as usize));
            out.extend_from_slice(b".0");
        } else {
            out.extend_from_slice(&digits[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&digits[decpt as usize..]);
        }
    } else if decpt <= 0 && decpt > -4 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if nd > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        out.extend_from_slice(format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()).as_bytes());
    }
}

fn write_ext(v: ValueRef<'_>, out: &mut Vec<u8>, inspect: bool) {
    use std::io::Write;
    if let Some(t) = EventTime::from_msgpack(v.as_bytes()) {
        if inspect {
            // Fluent::EventTime#inspect: local time with nanoseconds.
            crate::log::format_time(out, t.sec as i64, t.nsec, 9);
        } else {
            let _ = write!(out, "{}", t.sec);
        }
    } else if let Some((ty, payload)) = msgpack::read_ext(v.as_bytes()) {
        let _ = write!(out, "#<struct MessagePack::ExtensionValue type={ty}, payload=");
        inspect_str(payload, false, out);
        out.push(b'>');
    }
}

/// Ruby's `String#inspect`: `utf8` for msgpack str (UTF-8 strings; invalid bytes as
/// `\xNN`), not for bin (ASCII-8BIT: every non-ASCII byte as `\xNN`).
pub(crate) fn inspect_str(s: &[u8], utf8: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b >= 0x80 {
            if utf8 {
                let end = (i + 4).min(s.len());
                let n = match std::str::from_utf8(&s[i..end]) {
                    Ok(t) => t.chars().next().map_or(1, char::len_utf8),
                    Err(e) if e.valid_up_to() > 0 => std::str::from_utf8(&s[i..i + e.valid_up_to()])
                        .ok()
                        .and_then(|t| t.chars().next())
                        .map_or(1, char::len_utf8),
                    Err(_) => 0,
                };
                if n > 0 {
                    out.extend_from_slice(&s[i..i + n]);
                    i += n;
                    continue;
                }
            }
            let _ = write!(out, "\\x{b:02X}");
            i += 1;
            continue;
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x1b => out.extend_from_slice(b"\\e"),
            b'#' if matches!(s.get(i + 1), Some(b'{' | b'$' | b'@')) => out.extend_from_slice(b"\\#"),
            0x00..=0x1f | 0x7f => {
                let _ = if utf8 { write!(out, "\\u{:04X}", b) } else { write!(out, "\\x{b:02X}") };
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.push(b'"');
}

/// Ruby's `inspect` of a record value (Ruby >= 3.4 hash style: `{"k" => 1}`).
pub(crate) fn write_inspect(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v.kind() {
        Kind::Str => inspect_str(v.as_str().unwrap_or_default(), true, out),
        Kind::Bin => inspect_str(v.as_str().unwrap_or_default(), false, out),
        Kind::Nil => out.extend_from_slice(b"nil"),
        Kind::Array => {
            out.push(b'[');
            for (i, e) in v.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_inspect(e, out);
            }
            out.push(b']');
        }
        Kind::Map => {
            out.push(b'{');
            for (i, (k, e)) in v.as_map().map(|m| m.fields()).into_iter().flatten().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_inspect(k, out);
                out.extend_from_slice(b" => ");
                write_inspect(e, out);
            }
            out.push(b'}');
        }
        Kind::Ext => write_ext(v, out, true),
        _ => write_to_s(v, out),
    }
}

/// Ruby's `to_s` of a record value as fluentd sees it after msgpack decoding: strings as
/// they are, nil as "", numbers and booleans as Ruby prints them, arrays and maps as
/// `inspect`, an EventTime as its seconds.
pub(crate) fn write_to_s(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v.kind() {
        Kind::Str | Kind::Bin => out.extend_from_slice(v.as_str().unwrap_or_default()),
        Kind::Nil => {}
        Kind::Bool => out.extend_from_slice(if v.as_bool() == Some(true) { b"true" } else { b"false" }),
        Kind::UInt | Kind::NegInt => write_int(v, out),
        Kind::F32 | Kind::F64 => write_ruby_float(v.as_f64().unwrap_or(f64::NAN), out),
        Kind::Ext => write_ext(v, out, false),
        Kind::Array | Kind::Map => write_inspect(v, out),
    }
}

/// Ruby's `String#scrub('?')`: each invalid UTF-8 sequence becomes one `?`.
pub(crate) fn scrub(s: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut rest = s;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => {
                out.extend_from_slice(rest);
                return;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(good);
                out.push(b'?');
                rest = &bad[e.error_len().unwrap_or(bad.len())..];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ruby regexps
// ---------------------------------------------------------------------------------------

/// A Ruby regexp compiled for matching record bytes. Most patterns compile to
/// `regex::bytes` (linear time, matched in place); patterns that need backtracking
/// (look-around, backreferences, atomic groups) use `fancy-regex` on text, as the router
/// does for `/regex/` tag patterns.
#[derive(Debug)]
pub(crate) enum RubyRegex {
    Fast {
        re: regex::bytes::Regex,
        /// For patterns with `^`: the same pattern with Ruby's exact `^`, which (unlike
        /// the `regex` crate's) does not match at the very end after a final newline.
        /// Only consulted when the one match found starts there.
        strict: Option<Box<fancy_regex::Regex>>,
    },
    Fancy(Box<fancy_regex::Regex>),
}

/// Matches text with a fancy regex, scrubbing invalid UTF-8 first.
fn fancy_match(re: &fancy_regex::Regex, s: &[u8], scratch: &mut Vec<u8>) -> bool {
    let text = match std::str::from_utf8(s) {
        Ok(t) => t,
        Err(_) => {
            scrub(s, scratch);
            match std::str::from_utf8(scratch) {
                Ok(t) => t,
                Err(_) => return false,
            }
        }
    };
    // Exceeding the backtrack limit counts as no match.
    re.is_match(text).unwrap_or(false)
}

#[inline]
fn fast_match(re: &regex::bytes::Regex, strict: Option<&fancy_regex::Regex>, s: &[u8]) -> bool {
    if !re.is_match(s) {
        return false;
    }
    match strict {
        Some(strict) if s.last() == Some(&b'\n') && re.find(s).is_some_and(|m| m.start() == s.len()) => {
            // Text is valid UTF-8 here or already scrubbed.
            std::str::from_utf8(s).is_ok_and(|t| strict.is_match(t).unwrap_or(false))
        }
        _ => true,
    }
}

impl RubyRegex {
    /// A fluentd `:regexp` config value: `/body/flags` (`i` ignore case, `m` dot matches
    /// newline; other flag letters ignored) or a bare body. Mirrors `Config.regexp_value`.
    pub(crate) fn from_config(p: &str) -> Result<RubyRegex, String> {
        let Some(rest) = p.strip_prefix('/') else { return RubyRegex::new(p, false, false) };
        let right = rest.rfind('/').map_or(0, |i| i + 1); // index in `p`
        if right + 3 < p.len() {
            return Err(format!("invalid regexp: missing right slash: {p}"));
        }
        let flags = &p[right + 1..];
        let body = if right == 0 { "" } else { &p[1..right] };
        RubyRegex::new(body, flags.contains('i'), flags.contains('m'))
    }

    /// Compiles a Ruby regexp body (`Regexp.compile(body, flags)`).
    pub(crate) fn new(body: &str, ignore_case: bool, multiline: bool) -> Result<RubyRegex, String> {
        let mut src = String::new();
        if ignore_case {
            src.push_str("(?i)");
        }
        if multiline {
            src.push_str("(?s)");
        }
        let prefix = src.clone();
        let has_caret = translate(body, &mut src, false)?;
        let strict_src = if has_caret {
            let mut s = prefix;
            translate(body, &mut s, true)?;
            Some(format!("(?m){s}"))
        } else {
            None
        };
        // Ruby's ^ and $ always match at line boundaries.
        match regex::bytes::RegexBuilder::new(&src).multi_line(true).build() {
            Ok(re) => {
                let strict = strict_src.and_then(|s| fancy_regex::Regex::new(&s).ok()).map(Box::new);
                Ok(RubyRegex::Fast { re, strict })
            }
            Err(fast_err) => match fancy_regex::Regex::new(&strict_src.unwrap_or_else(|| format!("(?m){src}"))) {
                Ok(r) => Ok(RubyRegex::Fancy(Box::new(r))),
                Err(fancy_err) => {
                    let first = fast_err.to_string();
                    let last = first.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                    let last = last.strip_prefix("error: ").unwrap_or(last);
                    if last.contains("look-around") || last.contains("backreferences") {
                        Err(fancy_err.to_string())
                    } else {
                        Err(last.to_string())
                    }
                }
            },
        }
    }

    /// Ruby's `regexp.match(string)` with fluentd's retry on invalid UTF-8 (the string is
    /// scrubbed with `?` and matched again). `scratch` is clobbered.
    #[inline]
    pub(crate) fn is_match(&self, s: &[u8], scratch: &mut Vec<u8>) -> bool {
        match self {
            RubyRegex::Fast { re, strict } => {
                let strict = strict.as_deref();
                // The common outcomes need no UTF-8 check: a match not at a final "\n".
                if re.is_match(s) && (strict.is_none() || s.last() != Some(&b'\n')) {
                    return true;
                }
                if std::str::from_utf8(s).is_ok() {
                    return fast_match(re, strict, s);
                }
                scrub(s, scratch);
                fast_match(re, strict, scratch)
            }
            RubyRegex::Fancy(re) => fancy_match(re, s, scratch),
        }
    }
}

/// Copies `c[from..]` up to and including the first `close`; returns the index after it.
fn copy_until(c: &[char], from: usize, close: char, out: &mut String) -> Option<usize> {
    let end = c[from..].iter().position(|&x| x == close)? + from;
    out.extend(&c[from..=end]);
    Some(end + 1)
}

/// One escape sequence at `c[i] == '\\'`; returns the index after it.
fn translate_escape(c: &[char], i: usize, in_class: bool, out: &mut String) -> Result<usize, String> {
    let Some(&e) = c.get(i + 1) else { return Err("too short escape sequence".into()) };
    let mut next = i + 2;
    let hexval = |d: &[char]| u32::from_str_radix(&d.iter().collect::<String>(), 16).ok();
    match e {
        // Ruby's \d \w \s \h are ASCII-only.
        'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
        'D' => out.push_str("[^0-9]"),
        'w' => out.push_str(if in_class { "0-9A-Za-z_" } else { "[0-9A-Za-z_]" }),
        'W' => out.push_str("[^0-9A-Za-z_]"),
        's' => out.push_str(if in_class { r"\t\n\x0B\x0C\r " } else { r"[\t\n\x0B\x0C\r ]" }),
        'S' => out.push_str(r"[^\t\n\x0B\x0C\r ]"),
        'h' => out.push_str(if in_class { "0-9a-fA-F" } else { "[0-9a-fA-F]" }),
        'H' => out.push_str("[^0-9a-fA-F]"),
        'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
        'R' if !in_class => out.push_str(r"(?:\r\n|[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}])"),
        'b' if in_class => out.push_str(r"\x08"),
        'e' => out.push_str(r"\x1B"),
        'a' => out.push_str(r"\x07"),
        '0' => {
            let digits: Vec<char> = c[next..].iter().take(2).take_while(|d| ('0'..='7').contains(d)).copied().collect();
            next += digits.len();
            let v = u32::from_str_radix(&format!("0{}", digits.iter().collect::<String>()), 8).unwrap_or(0);
            out.push_str(&format!(r"\x{{{v:X}}}"));
        }
        'x' => {
            let digits: Vec<char> = c[next..].iter().take(2).take_while(|d| d.is_ascii_hexdigit()).copied().collect();
            if digits.is_empty() {
                return Err("invalid hex escape".into());
            }
            next += digits.len();
            out.push_str(&format!(r"\x{{{:X}}}", hexval(&digits).unwrap_or(0)));
        }
        'u' if c.get(next) == Some(&'{') => {
            // \u{H..} with one or more space-separated code points.
            let end = c[next..].iter().position(|&x| x == '}').ok_or("invalid Unicode escape")? + next;
            let inner: String = c[next + 1..end].iter().collect();
            let mut any = false;
            for cp in inner.split_ascii_whitespace() {
                let v = u32::from_str_radix(cp, 16).map_err(|_| "invalid Unicode escape")?;
                out.push_str(&format!(r"\x{{{v:X}}}"));
                any = true;
            }
            if !any {
                return Err("invalid Unicode escape".into());
            }
            next = end + 1;
        }
        'u' => {
            let digits: Vec<char> = c[next..].iter().take(4).take_while(|d| d.is_ascii_hexdigit()).copied().collect();
            if digits.len() != 4 {
                return Err("invalid Unicode escape".into());
            }
            next += 4;
            out.push_str(&format!(r"\x{{{:X}}}", hexval(&digits).unwrap_or(0)));
        }
        'c' => {
            let Some(&x) = c.get(next) else { return Err("too short control escape".into()) };
            next += 1;
            out.push_str(&format!(r"\x{{{:X}}}", (x as u32) & 0x1f));
        }
        'p' | 'P' if c.get(next) == Some(&'{') => {
            let negate = c.get(next + 1) == Some(&'^');
            let flip = if negate {
                if e == 'p' {
                    'P'
                } else {
                    'p'
                }
            } else {
                e
            };
            out.push('\\');
            out.push(flip);
            out.push('{');
            let from = if negate { next + 2 } else { next + 1 };
            next = copy_until(c, from, '}', out).ok_or("invalid character property name")?;
        }
        'k' if matches!(c.get(next), Some('<' | '\'')) => {
            let close = if c[next] == '<' { '>' } else { '\'' };
            let end = c[next + 1..].iter().position(|&x| x == close).ok_or("invalid backref")? + next + 1;
            out.push_str(r"\k<");
            out.extend(&c[next + 1..end]);
            out.push('>');
            next = end + 1;
        }
        'g' => return Err(r"subexpression calls (\g<name>) are not supported".into()),
        e if e.is_ascii_alphanumeric() => {
            out.push('\\');
            out.push(e);
        }
        e if e.is_ascii() => out.push_str(&regex::escape(&e.to_string())),
        e => out.push(e),
    }
    Ok(next)
}

/// After a `[` (or nested `[`): a leading `^`, then a `]` right away is a literal.
fn translate_class_start(c: &[char], mut i: usize, out: &mut String) -> usize {
    if c.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if c.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    i
}

/// `(?...)` constructs at `c[i] == '('`.
fn translate_group(c: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    if c.get(i + 1) != Some(&'?') {
        out.push('(');
        return Ok(i + 1);
    }
    let j = i + 2;
    match c.get(j) {
        Some('#') => {
            // (?#comment)
            let end = c[j..].iter().position(|&x| x == ')').ok_or("end pattern in group")? + j;
            Ok(end + 1)
        }
        Some(q @ ('<' | '\'')) if !(*q == '<' && matches!(c.get(j + 1), Some('=' | '!'))) => {
            let close = if *q == '<' { '>' } else { '\'' };
            let end = c[j + 1..].iter().position(|&x| x == close).ok_or("invalid group name")? + j + 1;
            out.push_str("(?P<");
            out.extend(&c[j + 1..end]);
            out.push('>');
            Ok(end + 1)
        }
        Some(f) if "imxadu-".contains(*f) => {
            let (mut on, mut off, mut neg) = (String::new(), String::new(), false);
            let mut k = j;
            loop {
                let Some(&x) = c.get(k) else { return Err("end pattern in group".into()) };
                let flag = match x {
                    'i' => Some('i'),
                    'x' => Some('x'),
                    // Ruby's m is "dot matches newline".
                    'm' => Some('s'),
                    'a' | 'd' | 'u' => None,
                    '-' => {
                        neg = true;
                        None
                    }
                    ':' | ')' => break,
                    _ => return Err(format!("undefined group option {x:?}")),
                };
                if let Some(fl) = flag {
                    if neg {
                        off.push(fl)
                    } else {
                        on.push(fl)
                    }
                }
                k += 1;
            }
            let term = c[k];
            if on.is_empty() && off.is_empty() {
                if term == ':' {
                    out.push_str("(?:");
                }
            } else {
                out.push_str("(?");
                out.push_str(&on);
                if !off.is_empty() {
                    out.push('-');
                    out.push_str(&off);
                }
                out.push(term);
            }
            Ok(k + 1)
        }
        _ => {
            // Look-around, atomic groups, ...: left to fancy-regex.
            out.push_str("(?");
            Ok(j)
        }
    }
}

/// `{n}`, `{n,}`, `{n,m}`, `{,m}` at `c[i] == '{'`; anything else is a literal brace in
/// Ruby.
fn translate_interval(c: &[char], i: usize, out: &mut String) -> Option<usize> {
    let end = c[i + 1..].iter().position(|&x| x == '}')? + i + 1;
    let inner: String = c[i + 1..end].iter().collect();
    let (a, b) = match inner.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (inner.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|d| d.is_ascii_digit());
    let ok = match b {
        None => digits(a),
        Some(b) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
    };
    if !ok || i == 0 {
        return None;
    }
    out.push('{');
    out.push_str(if a.is_empty() { "0" } else { a });
    if let Some(b) = b {
        out.push(',');
        out.push_str(b);
    }
    out.push('}');
    Some(end + 1)
}

/// Rewrites a Ruby regexp body into `regex` crate syntax: ASCII `\d \w \s \h`, `\Z`,
/// `\e`, `\R`, octal/hex/control escapes, `(?'name')`, `(?#...)`, Ruby's inline `m`
/// flag (= `s`), `{,m}`, literal braces, and escaped punctuation such as `\/`. With
/// `strict_caret`, `^` becomes Ruby's exact line start (look-behind: fancy-regex only).
/// Returns whether the pattern has a `^` outside character classes.
fn translate(body: &str, out: &mut String, strict_caret: bool) -> Result<bool, String> {
    let c: Vec<char> = body.chars().collect();
    let mut i = 0;
    let mut class = 0usize;
    let mut caret = false;
    while i < c.len() {
        let ch = c[i];
        if class > 0 {
            match ch {
                '\\' => i = translate_escape(&c, i, true, out)?,
                '[' if c.get(i + 1) == Some(&':') => match copy_until(&c, i, ']', out) {
                    Some(n) => i = n,
                    None => return Err("premature end of char-class".into()),
                },
                '[' => {
                    out.push('[');
                    class += 1;
                    i = translate_class_start(&c, i + 1, out);
                }
                ']' => {
                    out.push(']');
                    class -= 1;
                    i += 1;
                }
                _ => {
                    out.push(ch);
                    i += 1;
                }
            }
            continue;
        }
        match ch {
            '\\' => i = translate_escape(&c, i, false, out)?,
            '[' => {
                out.push('[');
                class = 1;
                i = translate_class_start(&c, i + 1, out);
            }
            '(' => i = translate_group(&c, i, out)?,
            '{' => match translate_interval(&c, i, out) {
                Some(n) => i = n,
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '^' => {
                caret = true;
                out.push_str(if strict_caret { r"(?:\A|(?<=\n)(?!\z))" } else { "^" });
                i += 1;
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    if class > 0 {
        return Err("premature end of char-class".into());
    }
    Ok(caret)
}

// ---------------------------------------------------------------------------------------
// The filter
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Expr {
    /// The key as configured (for messages).
    key: String,
    accessor: Accessor,
    re: RubyRegex,
    /// Whether the pattern matches "" (a missing key or nil).
    matches_empty: bool,
    /// Index into `GrepFilter::slot_keys` of the accessor's first key.
    slot: Option<usize>,
}

/// Up to this many distinct top-level keys are looked up in one pass over a record.
const SLOTS: usize = 8;

#[derive(Debug, Default)]
struct Scratch {
    /// `to_s` of non-string values.
    text: Vec<u8>,
    /// Scrubbed copies of invalid UTF-8.
    scrub: Vec<u8>,
    /// Byte ranges of the kept entries of the current batch.
    runs: Vec<(usize, usize)>,
}

/// The compiled filter (one per shard; not `Sync`: it reuses scratch buffers).
#[derive(Debug)]
pub struct GrepFilter {
    regexp_and: Vec<Expr>,
    regexp_or: Vec<Expr>,
    exclude_and: Vec<Expr>,
    exclude_or: Vec<Expr>,
    /// Distinct first keys of all accessors, found in one pass per record (empty when
    /// there are more than [`SLOTS`]: then each expression looks its key up).
    slot_keys: Vec<Vec<u8>>,
    scratch: RefCell<Scratch>,
}

/// A pool of expressions keyed by the configured key string, in insertion order (Ruby's
/// Hash), with fluentd's duplicate-key errors.
#[derive(Default)]
struct Pool(Vec<Expr>);

impl Pool {
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }
    fn add(&mut self, key: &str, re: RubyRegex) -> Result<(), FilterError> {
        let accessor = Accessor::parse(key)?;
        let mut scratch = Vec::new();
        let matches_empty = re.is_match(b"", &mut scratch);
        self.0.push(Expr { key: key.to_string(), accessor, re, matches_empty, slot: None });
        Ok(())
    }
}

fn section_regex(key: &str, pattern: &str) -> Result<RubyRegex, FilterError> {
    RubyRegex::from_config(pattern).map_err(|reason| FilterError::Regexp {
        key: key.to_string(),
        pattern: pattern.to_string(),
        reason,
    })
}

impl GrepFilter {
    pub fn new(conf: &GrepConf) -> Result<GrepFilter, FilterError> {
        let mut regexp_and = Pool::default();
        let mut regexp_or = Pool::default();
        let mut exclude_and = Pool::default();
        let mut exclude_or = Pool::default();

        for (name, list, pool) in
            [("regexp", &conf.regexp_n, &mut regexp_and), ("exclude", &conf.exclude_n, &mut exclude_or)]
        {
            let mut sorted: Vec<&(u32, String)> = list.iter().collect();
            sorted.sort_by_key(|(n, _)| *n);
            for (n, value) in sorted {
                let Some((key, pattern)) = value.split_once(' ') else {
                    return Err(FilterError::Config(format!("{name}{n} does not contain 2 parameters")));
                };
                if pool.has(key) {
                    return Err(FilterError::Config(format!("{name}{n} contains a duplicated key, {key}")));
                }
                let re = RubyRegex::new(pattern, false, false).map_err(|reason| FilterError::Regexp {
                    key: key.to_string(),
                    pattern: pattern.to_string(),
                    reason,
                })?;
                pool.add(key, re)?;
            }
        }
        for (list, pool) in [(&conf.regexps, &mut regexp_and), (&conf.excludes, &mut exclude_or)] {
            for (key, pattern) in list {
                if pool.has(key) {
                    return Err(FilterError::Config(format!("Duplicate key: {key}")));
                }
                pool.add(key, section_regex(key, pattern)?)?;
            }
        }
        for (name, groups, regexps, excludes) in
            [("and", &conf.and, &mut regexp_and, &mut exclude_and), ("or", &conf.or, &mut regexp_or, &mut exclude_or)]
        {
            for g in groups {
                if !g.regexps.is_empty() && !g.excludes.is_empty() {
                    return Err(FilterError::Config(format!("Do not specify both <regexp> and <exclude> in <{name}>")));
                }
                for (list, pool) in [(&g.regexps, &mut *regexps), (&g.excludes, &mut *excludes)] {
                    for (key, pattern) in list {
                        if pool.has(key) {
                            return Err(FilterError::Config(format!("Duplicate key in <{name}>: {key}")));
                        }
                        pool.add(key, section_regex(key, pattern)?)?;
                    }
                }
            }
        }
        let mut pools = [regexp_and.0, regexp_or.0, exclude_and.0, exclude_or.0];
        let mut slot_keys: Vec<Vec<u8>> = Vec::new();
        for e in pools.iter().flatten() {
            if let Some(Step::Key(k)) = e.accessor.steps.first() {
                if !slot_keys.contains(k) {
                    slot_keys.push(k.clone());
                }
            }
        }
        if slot_keys.len() > SLOTS {
            slot_keys.clear();
        }
        for e in pools.iter_mut().flatten() {
            e.slot = match e.accessor.steps.first() {
                Some(Step::Key(k)) => slot_keys.iter().position(|s| s == k),
                _ => None,
            };
        }
        let [regexp_and, regexp_or, exclude_and, exclude_or] = pools;
        Ok(GrepFilter {
            regexp_and,
            regexp_or,
            exclude_and,
            exclude_or,
            slot_keys,
            scratch: RefCell::new(Scratch::default()),
        })
    }

    /// `Expression#match?`; `Err` when Ruby would raise (digging into a non-container).
    #[inline]
    fn matches(
        e: &Expr,
        rec: RecordRef<'_>,
        slots: &[Option<ValueRef<'_>>; SLOTS],
        s: &mut Scratch,
    ) -> Result<bool, ()> {
        let dug = match e.slot {
            Some(i) => e.accessor.dig_from(slots[i]),
            None => e.accessor.dig(rec),
        };
        match dug {
            Dug::Value(v) => match v.as_str() {
                Some(text) => Ok(e.re.is_match(text, &mut s.scrub)),
                None => {
                    s.text.clear();
                    write_to_s(v, &mut s.text);
                    Ok(e.re.is_match(&s.text, &mut s.scrub))
                }
            },
            Dug::Nil => Ok(e.matches_empty),
            Dug::TypeError => Err(()),
        }
    }

    /// fluentd's `filter`: `Err` means an expression raised, and fluentd then keeps the
    /// record.
    fn keep(&self, rec: RecordRef<'_>, s: &mut Scratch) -> Result<bool, ()> {
        // `record[key]` for every key at once (the last duplicate wins, as in a Hash).
        let mut slots = [None; SLOTS];
        if !self.slot_keys.is_empty() {
            for (k, v) in rec.fields() {
                if let Some(k) = k.as_str() {
                    for (i, key) in self.slot_keys.iter().enumerate() {
                        if key.as_slice() == k {
                            slots[i] = Some(v);
                        }
                    }
                }
            }
        }
        for e in &self.regexp_and {
            if !Self::matches(e, rec, &slots, s)? {
                return Ok(false);
            }
        }
        if !self.regexp_or.is_empty() {
            let mut any = false;
            for e in &self.regexp_or {
                if Self::matches(e, rec, &slots, s)? {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(false);
            }
        }
        if !self.exclude_and.is_empty() {
            let mut all = true;
            for e in &self.exclude_and {
                if !Self::matches(e, rec, &slots, s)? {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(false);
            }
        }
        for e in &self.exclude_or {
            if Self::matches(e, rec, &slots, s)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether one record passes (errors count as passing, as in fluentd).
    pub fn keeps(&self, rec: RecordRef<'_>) -> bool {
        let mut s = self.scratch.borrow_mut();
        self.keep(rec, &mut s).unwrap_or(true)
    }

    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        let mut guard = self.scratch.borrow_mut();
        let s = &mut *guard;
        // Byte ranges of the kept entries, merged when adjacent: the copy below needs no
        // second parse of the batch.
        let mut runs = std::mem::take(&mut s.runs);
        runs.clear();
        let entries = &batch.entries[..];
        let base = entries.as_ptr() as usize;
        let (mut total, mut kept, mut errors) = (0u32, 0u32, 0u32);
        for ev in batch.events() {
            total += 1;
            let k = match self.keep(ev.record, s) {
                Ok(k) => k,
                Err(()) => {
                    errors += 1;
                    true
                }
            };
            if !k {
                continue;
            }
            kept += 1;
            let start = ev.raw.as_ptr() as usize - base;
            let end = start + ev.raw.len();
            match runs.last_mut() {
                Some(last) if last.1 == start && batch.format == EntriesFormat::Packed => last.1 = end,
                _ => runs.push((start, end)),
            }
        }
        if errors > 0 {
            crate::warn!(
                "filter_grep: {errors} event(s) of tag {} have a key path through a non-container value; \
                 kept them (fluentd: \"failed to grep events\")",
                String::from_utf8_lossy(&batch.tag)
            );
        }
        let result = if kept == total {
            Some(batch)
        } else if kept == 0 {
            None
        } else {
            let mut out = Vec::with_capacity(runs.iter().map(|(a, b)| b - a + 1).sum());
            for &(a, b) in &runs {
                if batch.format == EntriesFormat::Message {
                    // A Message entry is `time record` without the array header.
                    out.push(0x92);
                }
                out.extend_from_slice(&entries[a..b]);
            }
            batch.with_packed_entries(bytes::Bytes::from(out), kept)
        };
        s.runs = runs;
        result
    }
}

// ---------------------------------------------------------------------------------------
// Config mapping (kept here until build.rs maps `<filter>` elements itself)
// ---------------------------------------------------------------------------------------

fn key_pattern(e: &Element) -> Result<(String, String), ConfigError> {
    let key =
        e.str("key").ok_or_else(|| ConfigError::at(&e.pos, format!("'key' parameter is required in <{}>", e.name)))?;
    let pattern = e
        .str("pattern")
        .ok_or_else(|| ConfigError::at(&e.pos, format!("'pattern' parameter is required in <{}>", e.name)))?;
    Ok((key.to_string(), pattern.to_string()))
}

fn sections(e: &Element, name: &str) -> Result<Vec<(String, String)>, ConfigError> {
    e.elements_named(name).map(key_pattern).collect()
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "grep",
    aliases: &[],
    kind: PluginKind::Filter,
    build: Build::Filter(plan),
    params: "`<regexp>`/`<exclude>` (`key`, `pattern`), `<and>`/`<or>`, `regexpN`/`excludeN`, record-accessor keys (`$.a.b`, `$['a'][0]`)",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "grep");
    let conf = conf_from_element(e)?;
    // Compile once here so a bad pattern is a config error with file:line.
    GrepFilter::new(&conf).map_err(|x| e.error(x.to_string()))?;
    Ok(Box::new(GrepPlan { id, conf }))
}

#[derive(Debug)]
struct GrepPlan {
    id: String,
    conf: GrepConf,
}

impl FilterPlan for GrepPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "grep"
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        // Validated by plan(): compiling the same patterns again cannot fail.
        GrepFilter::new(&self.conf)
            .map(|f| Box::new(f) as Box<dyn Filter>)
            .map_err(|e| BuildError::Io { plugin: self.id.clone(), source: std::io::Error::other(e.to_string()) })
    }
}

impl Filter for GrepFilter {
    #[inline]
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        GrepFilter::filter(self, batch)
    }
}

/// Reads filter_grep's parameters from its `<filter>` element.
pub fn conf_from_element(e: &Element) -> Result<GrepConf, ConfigError> {
    let mut c = GrepConf::default();
    for n in 1..=20u32 {
        if let Some(v) = e.str(&format!("regexp{n}")) {
            c.regexp_n.push((n, v.to_string()));
        }
        if let Some(v) = e.str(&format!("exclude{n}")) {
            c.exclude_n.push((n, v.to_string()));
        }
    }
    c.regexps = sections(e, "regexp")?;
    c.excludes = sections(e, "exclude")?;
    for (name, groups) in [("and", &mut c.and), ("or", &mut c.or)] {
        for g in e.elements_named(name) {
            groups.push(GrepGroup { regexps: sections(g, "regexp")?, excludes: sections(g, "exclude")? });
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_protocol::encode::{self, raw};
    use spate_protocol::{Mode, Options};

    /// A record from JSON (key order kept).
    fn rec(json: &str) -> Vec<u8> {
        spate_protocol::json::to_msgpack(json.as_bytes()).unwrap()
    }

    fn batch_of(recs: &[Vec<u8>]) -> EventBatch {
        let mut e = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            encode::entry(&mut e, EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, r);
        }
        EventBatch::from_entries(
            Bytes::from_static(b"filter.test"),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, p)| (k.to_string(), p.to_string())).collect()
    }

    fn regexps(v: &[(&str, &str)]) -> GrepConf {
        GrepConf { regexps: pairs(v), ..Default::default() }
    }

    fn excludes(v: &[(&str, &str)]) -> GrepConf {
        GrepConf { excludes: pairs(v), ..Default::default() }
    }

    fn group(re: &[(&str, &str)], ex: &[(&str, &str)]) -> GrepGroup {
        GrepGroup { regexps: pairs(re), excludes: pairs(ex) }
    }

    /// Indices (event times) of the kept events.
    fn kept(conf: &GrepConf, recs: &[Vec<u8>]) -> Vec<u32> {
        let f = GrepFilter::new(conf).unwrap();
        match f.filter(batch_of(recs)) {
            None => vec![],
            Some(b) => {
                assert_eq!(b.count as usize, b.events().count());
                b.events().map(|e| e.time.sec).collect()
            }
        }
    }

    fn messages() -> Vec<Vec<u8>> {
        [
            "2013/01/13T07:02:11.124202 INFO GET /ping",
            "2013/01/13T07:02:13.232645 WARN POST /auth",
            "2013/01/13T07:02:21.542145 WARN GET /favicon.ico",
            "2013/01/13T07:02:43.632145 WARN POST /login",
        ]
        .iter()
        .map(|m| rec(&format!(r#"{{"foo":"bar","message":"{m}"}}"#)))
        .collect()
    }

    fn records() -> Vec<Vec<u8>> {
        [
            ("2013/01/13T07:02:11.124202", "INFO", "GET", "/ping"),
            ("2013/01/13T07:02:13.232645", "WARN", "POST", "/auth"),
            ("2013/01/13T07:02:21.542145", "WARN", "GET", "/favicon.ico"),
            ("2013/01/13T07:02:43.632145", "WARN", "POST", "/login"),
            ("2013/01/13T07:02:44.959307", "ERROR", "POST", "/login"),
            ("2013/01/13T07:02:45.444992", "ERROR", "GET", "/ping"),
            ("2013/01/13T07:02:51.247941", "WARN", "GET", "/info"),
            ("2013/01/13T07:02:53.108366", "WARN", "POST", "/ban"),
        ]
        .iter()
        .map(|(t, l, m, p)| rec(&format!(r#"{{"time":"{t}","level":"{l}","method":"{m}","path":"{p}"}}"#)))
        .collect()
    }

    fn err(conf: &GrepConf) -> String {
        GrepFilter::new(conf).unwrap_err().to_string()
    }

    // --- configure (test_filter_grep.rb "configure") ---

    #[test]
    fn legacy_regexp_n_keeps_the_space_after_the_key() {
        let conf = GrepConf { regexp_n: vec![(1, "message  foo".into())], ..Default::default() };
        assert_eq!(kept(&conf, &[rec(r#"{"message":"a foo"}"#), rec(r#"{"message":"afoo"}"#)]), vec![0]);
        let conf = GrepConf { exclude_n: vec![(1, "message  foo".into())], ..Default::default() };
        assert_eq!(kept(&conf, &[rec(r#"{"message":"a foo"}"#), rec(r#"{"message":"afoo"}"#)]), vec![1]);
        let conf = GrepConf { regexp_n: vec![(3, "message".into())], ..Default::default() };
        assert_eq!(err(&conf), "regexp3 does not contain 2 parameters");
    }

    #[test]
    fn legacy_patterns_are_bare_regexps() {
        // Regexp.compile("/x/") matches a literal "/x/".
        let conf = GrepConf { regexp_n: vec![(1, "path /x/".into())], ..Default::default() };
        assert_eq!(kept(&conf, &[rec(r#"{"path":"/x/"}"#), rec(r#"{"path":"x"}"#)]), vec![0]);
    }

    #[test]
    fn duplicate_keys_are_config_errors() {
        let flat =
            GrepConf { regexp_n: vec![(1, "message test".into()), (2, "message test2".into())], ..Default::default() };
        assert_eq!(err(&flat), "regexp2 contains a duplicated key, message");
        assert_eq!(err(&regexps(&[("message", "test"), ("message", "test2")])), "Duplicate key: message");
        let mix = GrepConf { regexp_n: vec![(1, "message test".into())], ..regexps(&[("message", "test")]) };
        assert_eq!(err(&mix), "Duplicate key: message");
        let and = GrepConf { and: vec![group(&[("message", "test"), ("message", "test")], &[])], ..Default::default() };
        assert_eq!(err(&and), "Duplicate key in <and>: message");
        let and2 = GrepConf {
            and: vec![group(&[("message", "test")], &[]), group(&[("message", "test")], &[])],
            ..Default::default()
        };
        assert_eq!(err(&and2), "Duplicate key in <and>: message");
        let top_and = GrepConf { and: vec![group(&[("message", "test")], &[])], ..regexps(&[("message", "test")]) };
        assert_eq!(err(&top_and), "Duplicate key in <and>: message");
        let and_ex =
            GrepConf { and: vec![group(&[], &[("message", "test"), ("message", "test")])], ..Default::default() };
        assert_eq!(err(&and_ex), "Duplicate key in <and>: message");
        let and_ex2 = GrepConf {
            and: vec![group(&[], &[("message", "test")]), group(&[], &[("message", "test")])],
            ..Default::default()
        };
        assert_eq!(err(&and_ex2), "Duplicate key in <and>: message");
        let ex_or = GrepConf { or: vec![group(&[], &[("message", "test")])], ..excludes(&[("message", "test")]) };
        assert_eq!(err(&ex_or), "Duplicate key in <or>: message");
        // Different pools may share a key.
        let ok = GrepConf { exclude_n: vec![(1, "message x".into())], ..regexps(&[("message", "test")]) };
        assert!(GrepFilter::new(&ok).is_ok());
    }

    #[test]
    fn groups_cannot_mix_regexp_and_exclude() {
        let and =
            GrepConf { and: vec![group(&[("message", "/test/")], &[("level", "/debug/")])], ..Default::default() };
        assert_eq!(err(&and), "Do not specify both <regexp> and <exclude> in <and>");
        let or = GrepConf { or: vec![group(&[("message", "/test/")], &[("level", "/debug/")])], ..Default::default() };
        assert_eq!(err(&or), "Do not specify both <regexp> and <exclude> in <or>");
    }

    #[test]
    fn patterns_with_slashes_and_character_classes() {
        let conf = GrepConf {
            regexps: pairs(&[("message", "/[a-z]test/")]),
            excludes: pairs(&[("message", "/[A-Z]test/")]),
            ..Default::default()
        };
        let recs = [rec(r#"{"message":"xtest"}"#), rec(r#"{"message":"Xtest"}"#), rec(r#"{"message":"xtest Atest"}"#)];
        assert_eq!(kept(&conf, &recs), vec![0]);
        assert!(err(&regexps(&[("message", "/abc")])).contains("missing right slash"));
    }

    // --- filter_stream ---

    #[test]
    fn empty_config_passes_the_same_batch() {
        let f = GrepFilter::new(&GrepConf::default()).unwrap();
        let b = batch_of(&messages());
        let ptr = b.entries.as_ptr();
        let out = f.filter(b).unwrap();
        assert_eq!(out.entries.as_ptr(), ptr, "pass-through returns the same bytes");
        assert_eq!(out.count, 4);
    }

    #[test]
    fn all_pass_returns_the_same_batch() {
        let f = GrepFilter::new(&regexps(&[("foo", "bar")])).unwrap();
        let b = batch_of(&messages());
        let ptr = b.entries.as_ptr();
        assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
    }

    #[test]
    fn regexp_n_and_exclude_n() {
        let conf = GrepConf { regexp_n: vec![(1, "message WARN".into())], ..Default::default() };
        assert_eq!(kept(&conf, &messages()), vec![1, 2, 3]);
        let conf = GrepConf { exclude_n: vec![(1, "message favicon".into())], ..Default::default() };
        assert_eq!(kept(&conf, &messages()), vec![0, 1, 3]);
    }

    #[test]
    fn regexp_and_exclude_sections() {
        assert_eq!(kept(&regexps(&[("message", "WARN")]), &messages()), vec![1, 2, 3]);
        assert_eq!(kept(&excludes(&[("message", "favicon")]), &messages()), vec![0, 1, 3]);
        let both = GrepConf { excludes: pairs(&[("message", "favicon")]), ..regexps(&[("message", "WARN")]) };
        assert_eq!(kept(&both, &messages()), vec![1, 3]);
    }

    #[test]
    fn all_dropped_is_none() {
        let f = GrepFilter::new(&regexps(&[("message", "ERROR")])).unwrap();
        assert!(f.filter(batch_of(&messages())).is_none());
    }

    #[test]
    fn many_keys_fall_back_to_lookups_per_expression() {
        for n in [SLOTS, SLOTS + 1] {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            let conf = GrepConf {
                excludes: keys.iter().map(|k| (k.clone(), "^x$".to_string())).collect(),
                ..Default::default()
            };
            let last = keys.last().unwrap();
            let recs =
                [rec(r#"{"a":"x"}"#), rec(&format!(r#"{{"{last}":"x"}}"#)), rec(&format!(r#"{{"{last}":"y"}}"#))];
            assert_eq!(kept(&conf, &recs), vec![0, 2], "{n} keys");
        }
    }

    #[test]
    fn invalid_entries_are_not_copied() {
        let msgs = messages();
        let entry = |i: usize| {
            let mut e = Vec::new();
            encode::entry(&mut e, EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, &msgs[i]);
            e
        };
        let mut e = entry(0);
        e.extend_from_slice(&[0x92, 0x01, 0xa1, b'x']); // [1, "x"]: not a record
        e.extend_from_slice(&entry(1));
        e.extend_from_slice(&entry(2));
        let b = EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap();
        assert_eq!((b.count, b.invalid), (3, 1));
        let f = GrepFilter::new(&excludes(&[("message", "favicon")])).unwrap();
        let out = f.filter(b).unwrap();
        assert_eq!((out.count, out.invalid), (2, 0));
        assert_eq!(out.entries[..], [entry(0), entry(1)].concat()[..]);
    }

    #[test]
    fn kept_records_are_byte_identical() {
        let f = GrepFilter::new(&excludes(&[("message", "favicon|auth")])).unwrap();
        let msgs = messages();
        let out = f.filter(batch_of(&msgs)).unwrap();
        let got: Vec<&[u8]> = out.events().map(|e| e.record.as_bytes()).collect();
        assert_eq!(got, vec![&msgs[0][..], &msgs[3][..]]);
        let mut json = Vec::new();
        out.events().next().unwrap().record.write_json(&mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"foo":"bar","message":"2013/01/13T07:02:11.124202 INFO GET /ping"}"#
        );
    }

    #[test]
    fn invalid_utf8_is_scrubbed_and_retried() {
        let mut r = Vec::new();
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"message");
        raw::str(&mut r, b"\xff WARN");
        assert_eq!(kept(&regexps(&[("message", "WARN")]), &[r.clone()]), vec![0]);
        // Ruby matches the scrubbed text "? WARN": `.` matches the replacement.
        assert_eq!(kept(&regexps(&[("message", r"^. WARN$")]), &[r.clone()]), vec![0]);
        assert_eq!(kept(&regexps(&[("message", r"^\? WARN$")]), &[r]), vec![0]);
    }

    #[test]
    fn and_or_sections() {
        let and = GrepConf { and: vec![group(&[("level", "^INFO$"), ("method", "^GET$")], &[])], ..Default::default() };
        assert_eq!(kept(&and, &records()[..4]), vec![0]);
        let or_ex =
            GrepConf { or: vec![group(&[], &[("level", "^INFO$"), ("method", "^GET$")])], ..Default::default() };
        assert_eq!(kept(&or_ex, &records()[..4]), vec![1, 3]);
        let or_re =
            GrepConf { or: vec![group(&[("level", "^INFO$"), ("method", "^GET$")], &[])], ..Default::default() };
        assert_eq!(kept(&or_re, &records()[..4]), vec![0, 2]);
        let and_ex =
            GrepConf { and: vec![group(&[], &[("level", "^INFO$"), ("method", "^GET$")])], ..Default::default() };
        assert_eq!(kept(&and_ex, &records()[..4]), vec![1, 2, 3]);
    }

    #[test]
    fn and_or_combos() {
        let and_re = || group(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")], &[]);
        let or_re = || group(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")], &[]);
        let ex = || group(&[], &[("level", "^WARN$"), ("method", "^GET$")]);
        let r = records();
        let c = GrepConf { and: vec![and_re()], or: vec![ex()], ..Default::default() };
        assert_eq!(kept(&c, &r), vec![4]);
        let c = GrepConf { and: vec![and_re(), ex()], ..Default::default() };
        assert_eq!(kept(&c, &r), vec![1, 3, 4, 5, 7]);
        let c = GrepConf { or: vec![or_re()], and: vec![ex()], ..Default::default() };
        assert_eq!(kept(&c, &r), vec![0, 1, 3, 4, 5, 7]);
        let c = GrepConf { or: vec![or_re(), ex()], ..Default::default() };
        assert_eq!(kept(&c, &r), vec![4]);
        let c = GrepConf { and: vec![and_re()], ..regexps(&[("path", "^/login$")]) };
        assert_eq!(kept(&c, &r), vec![3, 4]);
        let top = || regexps(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")]);
        let c = GrepConf { or: vec![ex()], ..top() };
        assert_eq!(kept(&c, &r), vec![4]);
        let c = GrepConf { and: vec![ex()], ..top() };
        assert_eq!(kept(&c, &r), vec![1, 3, 4, 5, 7]);
    }

    #[test]
    fn nested_keys() {
        let msgs: Vec<Vec<u8>> = ["INFO", "WARN", "WARN"]
            .iter()
            .map(|l| rec(&format!(r#"{{"foo":"bar","message":{{"nest1":{{"nest2":"{l}"}}}}}}"#)))
            .collect();
        assert_eq!(kept(&regexps(&[("$.message.nest1.nest2", "WARN")]), &msgs), vec![1, 2]);
        assert_eq!(kept(&excludes(&[("$.message.nest1.nest2", "WARN")]), &msgs), vec![0]);
        assert_eq!(kept(&regexps(&[("$['message']['nest1']['nest2']", "INFO")]), &msgs), vec![0]);
        let arr = [rec(r#"{"a":[{"b":"x"},{"b":"y"}]}"#)];
        assert_eq!(kept(&regexps(&[("$.a[1].b", "^y$")]), &arr), vec![0]);
        assert_eq!(kept(&regexps(&[("$.a[-2].b", "^x$")]), &arr), vec![0]);
        assert_eq!(kept(&regexps(&[("$['a'][0]['b']", "^y$")]), &arr), Vec::<u32>::new());
    }

    #[test]
    fn non_string_values_match_as_ruby_to_s() {
        // test_filter_grep.rb "grep non-string jsonable values".
        for v in [r#"["0"]"#, r#"{"0":"0"}"#, "0", "0.1"] {
            let r = rec(&format!(r#"{{"foo":"bar","message":{v}}}"#));
            let conf = GrepConf { regexp_n: vec![(1, "message 0".into())], ..Default::default() };
            assert_eq!(kept(&conf, &[r]), vec![0], "{v}");
        }
        let r = rec(r#"{"foo":"bar","message":true}"#);
        let conf = GrepConf { regexp_n: vec![(1, "message true".into())], ..Default::default() };
        assert_eq!(kept(&conf, &[r]), vec![0]);
        // Exact Ruby text for containers and floats.
        let r = rec(r#"{"m":{"a":[1,"x",null,true,1.5]},"f":1e20,"g":100.0}"#);
        assert_eq!(
            kept(&regexps(&[("m", r#"^\{"a" => \[1, "x", nil, true, 1\.5\]\}$"#)]), std::slice::from_ref(&r)),
            vec![0]
        );
        assert_eq!(kept(&regexps(&[("f", r"^1\.0e\+20$")]), std::slice::from_ref(&r)), vec![0]);
        assert_eq!(kept(&regexps(&[("g", r"^100\.0$")]), &[r]), vec![0]);
    }

    #[test]
    fn missing_keys_and_nil_match_as_empty_string() {
        let recs = [rec(r#"{"a":"x"}"#), rec(r#"{"status":404}"#), rec(r#"{"status":null}"#)];
        assert_eq!(kept(&regexps(&[("status", "^404$")]), &recs), vec![1]);
        // fluentd matches `record[key].to_s`: a missing key is "".
        assert_eq!(kept(&regexps(&[("status", "^$")]), &recs), vec![0, 2]);
        assert_eq!(kept(&excludes(&[("nokey", "x")]), &recs), vec![0, 1, 2]);
        assert_eq!(kept(&excludes(&[("nokey", ".*")]), &recs), Vec::<u32>::new());
        assert_eq!(kept(&regexps(&[("$.no.such", "^$")]), &recs), vec![0, 1, 2]);
    }

    #[test]
    fn digging_through_a_scalar_keeps_the_event_like_fluentd() {
        // `record.dig("a", "b")` on {"a": "str"} raises in Ruby; fluentd's rescue keeps it.
        let recs = [rec(r#"{"a":"str"}"#), rec(r#"{"a":{"b":"no"}}"#), rec(r#"{"a":[1]}"#)];
        assert_eq!(kept(&regexps(&[("$.a.b", "^yes$")]), &recs), vec![0, 2]);
    }

    #[test]
    fn ruby_regexp_syntax() {
        let recs = [rec(r#"{"m":"Line one\nline TWO\n"}"#), rec(r#"{"m":"ab12 {\"k\":1}"}"#), rec(r#"{"m":"١٢"}"#)];
        let k = |p: &str| kept(&regexps(&[("m", p)]), &recs);
        assert_eq!(k("^line"), vec![0], "^ matches at line starts");
        assert_eq!(k(r"\Aline"), Vec::<u32>::new());
        assert_eq!(k(r"TWO$"), vec![0]);
        assert_eq!(k(r"TWO\Z"), vec![0]);
        assert_eq!(k(r"TWO\z"), Vec::<u32>::new());
        assert_eq!(k("/^LINE ONE$/i"), vec![0]);
        assert_eq!(k("/one.line/"), Vec::<u32>::new());
        assert_eq!(k("/one.line/m"), vec![0], "Ruby's m is dot-all");
        assert_eq!(k("(?m:one.line)"), vec![0]);
        assert_eq!(k(r#"\{"k":1\}"#), vec![1]);
        assert_eq!(k(r#"{"k":1}"#), vec![1], "literal braces as in Ruby");
        assert_eq!(k(r"^ab\d{,2} "), vec![1]);
        assert_eq!(k(r"\d"), vec![1], r"\d is ASCII-only in Ruby");
        assert_eq!(k(r"\h\h"), vec![1]);
        assert_eq!(k(r"(?<word>[a-z]+)\d"), vec![1]);
        assert_eq!(k(r"(?'w'ab)"), vec![1]);
        assert_eq!(k(r"a(?#comment)b"), vec![1]);
        assert_eq!(k(r"\/"), Vec::<u32>::new());
        // Look-around and backreferences (fancy-regex).
        assert_eq!(k(r"^(?!Line)"), vec![0, 1, 2]);
        assert_eq!(k(r"\A(?!Line)"), vec![1, 2]);
        assert_eq!(k(r"(?<=ab)12"), vec![1]);
        assert_eq!(k(r"(\d)\1"), Vec::<u32>::new());
        assert_eq!(k(r"([a-z])\1"), Vec::<u32>::new());
        assert_eq!(k(r"(n)e \1"), Vec::<u32>::new());
        let e = err(&regexps(&[("m", "(unclosed")]));
        assert!(e.starts_with(r#"invalid regexp "(unclosed" for key "m": "#), "{e}");
        let e = err(&regexps(&[("m", "[a-")]));
        assert!(e.contains("[a-"), "{e}");
    }

    #[test]
    fn accessor_parsing() {
        let p = |s: &str| Accessor::parse(s).map(|a| a.steps);
        let k = |s: &str| Step::Key(s.as_bytes().to_vec());
        assert_eq!(p("plain").unwrap(), vec![k("plain")]);
        assert_eq!(p("$plain").unwrap(), vec![k("$plain")]);
        assert_eq!(p("$.a.b").unwrap(), vec![k("a"), k("b")]);
        assert_eq!(p("$.a[0][-1]").unwrap(), vec![k("a"), Step::Index(0), Step::Index(-1)]);
        assert_eq!(p("$.a.").unwrap(), vec![k("a")]);
        assert_eq!(p("$['a b'][\"c\"][2]").unwrap(), vec![k("a b"), k("c"), Step::Index(2)]);
        assert!(p("$.").is_err());
        assert!(p("$.a b").unwrap_err().to_string().contains("whitespace"));
        assert!(p("$.a[x]").is_err());
        assert!(p("$.a[0]b").is_err());
        assert!(p("$['a\"]").unwrap_err().to_string().contains("mismatched quotes"));
        assert!(p("$['a'").is_err());
        assert!(p("$[]").is_err());
        let e = err(&regexps(&[("$.", "x")]));
        assert_eq!(e, r#"invalid record accessor "$.": empty keys in dot notation"#);
    }

    #[test]
    fn ruby_float_and_inspect_text() {
        let f = |x: f64| {
            let mut o = Vec::new();
            write_ruby_float(x, &mut o);
            String::from_utf8(o).unwrap()
        };
        for (x, s) in [
            (1e15, "1.0e+15"),
            (1e16, "1.0e+16"),
            (9007199254740992.0, "9.007199254740992e+15"),
            (999999999999999.0, "999999999999999.0"),
            (123456789012345.0, "123456789012345.0"),
            (1e-4, "0.0001"),
            (1e-5, "1.0e-05"),
            (123_456_789.123_456_79, "123456789.12345679"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (2.5e-10, "2.5e-10"),
            (1e100, "1.0e+100"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(f(x), s);
        }
        let mut o = Vec::new();
        inspect_str(b"a\x01\x7f\"#{x}\x1b\\\xff", true, &mut o);
        assert_eq!(String::from_utf8_lossy(&o), r#""a\u0001\u007F\"\#{x}\e\\\xFF""#);
        let mut o = Vec::new();
        inspect_str("é".as_bytes(), false, &mut o);
        assert_eq!(String::from_utf8_lossy(&o), r#""\xC3\xA9""#);
    }

    #[test]
    fn message_mode_batches() {
        let r = rec(r#"{"message":"WARN x"}"#);
        let mut e = Vec::new();
        encode::time(&mut e, EventTime::new(7, 0), encode::TimeFormat::Integer);
        e.extend_from_slice(&r);
        let mk = || {
            EventBatch::from_entries(
                Bytes::from_static(b"t"),
                Bytes::from(e.clone()),
                EntriesFormat::Message,
                Mode::Message,
                Options::default(),
                100,
            )
            .unwrap()
        };
        let f = GrepFilter::new(&regexps(&[("message", "WARN")])).unwrap();
        let b = mk();
        let ptr = b.entries.as_ptr();
        assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
        let f = GrepFilter::new(&excludes(&[("message", "WARN")])).unwrap();
        assert!(f.filter(mk()).is_none());
    }
}
