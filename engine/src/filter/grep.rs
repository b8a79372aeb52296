//! `filter_grep` with fluentd's semantics (`filter_grep.rb`): `<regexp>`s are ANDed,
//! `<exclude>`s ORed; `<and>` / `<or>` groups; the old `regexpN` / `excludeN` form; keys
//! may be record accessors (`$.a.b`, `$['a']['b']`). A value is matched as text (Ruby
//! `to_s`; a missing key is ""), in place on the record's bytes: no record decode, no
//! allocation for string fields. A batch whose events all pass is returned unchanged.

use std::cell::RefCell;

use regex::bytes::Regex;
use spate_protocol::{EntriesFormat, EventBatch, RecordRef, ValueRef};

use crate::config::{ConfigError, Element};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("invalid record accessor {0:?}: expected a key, $.a.b or $['a']['b']")]
    BadKey(String),
    #[error("{0}")]
    Conf(String),
}

/// One `key` / `pattern` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub key: String,
    pub pattern: String,
}

/// filter_grep parameters, grouped as fluentd evaluates them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrepConf {
    /// Every one must match (top-level `<regexp>`, `regexpN`, `<and><regexp>`).
    pub regexp_and: Vec<Cond>,
    /// At least one must match (`<or><regexp>`).
    pub regexp_or: Vec<Cond>,
    /// Dropped if all match (`<and><exclude>`).
    pub exclude_and: Vec<Cond>,
    /// Dropped if any matches (top-level `<exclude>`, `excludeN`, `<or><exclude>`).
    pub exclude_or: Vec<Cond>,
}

/// A step of a record accessor path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Parses a record accessor (`key`, `$.a.b`, `$['a'][0]`).
pub fn parse_accessor(k: &str) -> Result<Vec<Step>, FilterError> {
    let bad = || FilterError::BadKey(k.to_string());
    let Some(rest) = k.strip_prefix('$') else { return Ok(vec![Step::Key(k.to_string())]) };
    let b = rest.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let st = i + 1;
                let mut j = st;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j == st {
                    return Err(bad());
                }
                steps.push(Step::Key(rest[st..j].to_string()));
                i = j;
            }
            b'[' => {
                let end = rest[i..].find(']').map(|e| i + e).ok_or_else(bad)?;
                let inner = rest[i + 1..end].trim();
                if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Key(q.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().map_err(|_| bad())?));
                }
                i = end + 1;
            }
            _ => return Err(bad()),
        }
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

/// Follows an accessor path in a record.
pub fn lookup<'a>(rec: RecordRef<'a>, path: &[Step]) -> Option<ValueRef<'a>> {
    let mut cur: Option<ValueRef<'a>> = None;
    for (n, s) in path.iter().enumerate() {
        cur = match s {
            Step::Key(k) => {
                let m = if n == 0 { rec } else { cur?.as_map()? };
                m.get(k.as_bytes())
            }
            Step::Index(i) => {
                if n == 0 {
                    return None;
                }
                cur?.as_array()?.nth(*i)
            }
        };
        cur?;
    }
    cur
}

/// Compiles a fluentd regexp value: `/pattern/flags` (i, m) or a bare pattern, with the
/// common Ruby-only syntax translated (`\Z`, `\h`).
pub fn compile_ruby_regex(p: &str) -> Result<Regex, FilterError> {
    let (body, flags) = match p.strip_prefix('/') {
        Some(rest) => match rest.rfind('/') {
            Some(end) if rest.len() - end <= 3 => (&rest[..end], &rest[end + 1..]),
            _ => return Err(FilterError::BadPattern { pattern: p.into(), reason: "missing right slash".into() }),
        },
        None => (p, ""),
    };
    let mut src = String::new();
    if flags.contains('i') {
        src.push_str("(?i)");
    }
    if flags.contains('m') {
        // Ruby's /m makes '.' match newlines.
        src.push_str("(?s)");
    }
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('Z') => src.push_str(r"\n?\z"),
                Some('h') => src.push_str("[0-9a-fA-F]"),
                Some('H') => src.push_str("[^0-9a-fA-F]"),
                Some(n) => {
                    src.push('\\');
                    src.push(n);
                }
                None => src.push('\\'),
            }
        } else {
            src.push(c);
        }
    }
    Regex::new(&src).map_err(|e| FilterError::BadPattern {
        pattern: p.into(),
        reason: e.to_string().lines().last().unwrap_or("").trim().to_string(),
    })
}

#[derive(Debug)]
struct Expr {
    path: Vec<Step>,
    re: Regex,
}

/// The compiled filter (one per shard).
#[derive(Debug)]
pub struct GrepFilter {
    regexp_and: Vec<Expr>,
    regexp_or: Vec<Expr>,
    exclude_and: Vec<Expr>,
    exclude_or: Vec<Expr>,
    scratch: RefCell<Vec<u8>>,
}

fn compile(v: &[Cond]) -> Result<Vec<Expr>, FilterError> {
    v.iter().map(|c| Ok(Expr { path: parse_accessor(&c.key)?, re: compile_ruby_regex(&c.pattern)? })).collect()
}

impl GrepFilter {
    pub fn new(conf: &GrepConf) -> Result<GrepFilter, FilterError> {
        Ok(GrepFilter {
            regexp_and: compile(&conf.regexp_and)?,
            regexp_or: compile(&conf.regexp_or)?,
            exclude_and: compile(&conf.exclude_and)?,
            exclude_or: compile(&conf.exclude_or)?,
            scratch: RefCell::new(Vec::new()),
        })
    }

    #[inline]
    fn matches(&self, e: &Expr, rec: RecordRef<'_>) -> bool {
        match lookup(rec, &e.path) {
            None => e.re.is_match(b""),
            Some(v) => match v.as_str() {
                Some(s) => e.re.is_match(s),
                None => {
                    let mut s = self.scratch.borrow_mut();
                    s.clear();
                    v.write_text(&mut s);
                    e.re.is_match(&s)
                }
            },
        }
    }

    /// Whether an event's record passes.
    pub fn keep(&self, rec: RecordRef<'_>) -> bool {
        if self.regexp_and.iter().any(|e| !self.matches(e, rec)) {
            return false;
        }
        if !self.regexp_or.is_empty() && !self.regexp_or.iter().any(|e| self.matches(e, rec)) {
            return false;
        }
        if !self.exclude_and.is_empty() && self.exclude_and.iter().all(|e| self.matches(e, rec)) {
            return false;
        }
        !self.exclude_or.iter().any(|e| self.matches(e, rec))
    }

    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        // First pass: is anything dropped? (The common cases, all or nothing, need no copy.)
        let mut first_drop = None;
        for (i, ev) in batch.events().enumerate() {
            if !self.keep(ev.record) {
                first_drop = Some(i);
                break;
            }
        }
        let Some(first_drop) = first_drop else { return Some(batch) };
        let mut out = Vec::with_capacity(batch.entries.len() / 2);
        let mut count = 0;
        for (i, ev) in batch.events().enumerate() {
            if i == first_drop || (i > first_drop && !self.keep(ev.record)) {
                continue;
            }
            if batch.format == EntriesFormat::Message {
                out.push(0x92);
            }
            out.extend_from_slice(ev.raw);
            count += 1;
        }
        super::rebuild(&batch, out, count)
    }
}

fn cond(e: &Element) -> Result<Cond, ConfigError> {
    let key = e.str("key").ok_or_else(|| ConfigError::at(&e.pos, format!("<{}> needs key", e.name)))?.to_string();
    let pattern =
        e.str("pattern").ok_or_else(|| ConfigError::at(&e.pos, format!("<{}> needs pattern", e.name)))?.to_string();
    Ok(Cond { key, pattern })
}

/// Reads filter_grep's parameters from its `<filter>` element.
pub fn conf_from_element(e: &Element) -> Result<GrepConf, ConfigError> {
    let mut c = GrepConf::default();
    for i in 1..=20 {
        for (name, list) in [("regexp", &mut c.regexp_and), ("exclude", &mut c.exclude_or)] {
            if let Some(a) = e.get(&format!("{name}{i}")) {
                let (k, p) = a
                    .value
                    .split_once(' ')
                    .ok_or_else(|| ConfigError::at(&a.pos, format!("{name}{i} does not contain 2 parameters")))?;
                list.push(Cond { key: k.to_string(), pattern: p.to_string() });
            }
        }
    }
    for r in e.elements_named("regexp") {
        c.regexp_and.push(cond(r)?);
    }
    for x in e.elements_named("exclude") {
        c.exclude_or.push(cond(x)?);
    }
    for (group, is_and) in e.elements_named("and").map(|g| (g, true)).chain(e.elements_named("or").map(|g| (g, false)))
    {
        let rs: Vec<_> = group.elements_named("regexp").collect();
        let xs: Vec<_> = group.elements_named("exclude").collect();
        if !rs.is_empty() && !xs.is_empty() {
            return Err(ConfigError::at(
                &group.pos,
                format!("Do not specify both <regexp> and <exclude> in <{}>", group.name),
            ));
        }
        for r in rs {
            if is_and {
                c.regexp_and.push(cond(r)?)
            } else {
                c.regexp_or.push(cond(r)?)
            }
        }
        for x in xs {
            if is_and {
                c.exclude_and.push(cond(x)?)
            } else {
                c.exclude_or.push(cond(x)?)
            }
        }
    }
    for (list, what) in [
        (&c.regexp_and, "<regexp>"),
        (&c.exclude_or, "<exclude>"),
        (&c.regexp_or, "<or><regexp>"),
        (&c.exclude_and, "<and><exclude>"),
    ] {
        for (i, a) in list.iter().enumerate() {
            if list[..i].iter().any(|b| b.key == a.key) {
                return Err(ConfigError::at(&e.pos, format!("Duplicate key in {what}: {}", a.key)));
            }
        }
    }
    GrepFilter::new(&c).map_err(|x| ConfigError::at(&e.pos, x.to_string()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_protocol::encode::{self, raw};
    use spate_protocol::{EventTime, Mode, Options};

    fn rec(fields: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut r = Vec::new();
        raw::map_header(&mut r, fields.len() as u32);
        for (k, v) in fields {
            raw::str(&mut r, k.as_bytes());
            match v {
                Some(v) => raw::str(&mut r, v.as_bytes()),
                None => raw::uint(&mut r, 404),
            }
        }
        r
    }

    fn batch(recs: &[Vec<u8>]) -> EventBatch {
        let mut e = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            encode::entry(&mut e, EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, r);
        }
        EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn conds(v: &[(&str, &str)]) -> Vec<Cond> {
        v.iter().map(|(k, p)| Cond { key: k.to_string(), pattern: p.to_string() }).collect()
    }

    fn kept(f: &GrepFilter, recs: &[Vec<u8>]) -> Vec<u32> {
        match f.filter(batch(recs)) {
            None => vec![],
            Some(b) => b.events().map(|e| e.time.sec).collect(),
        }
    }

    // From fluentd's test_filter_grep.rb: messages and hosts.
    fn messages() -> Vec<Vec<u8>> {
        [
            "2013/01/13T07:02:11.124202 INFO GET /ping",
            "2013/01/13T07:02:13.232645 WARN POST /auth",
            "2013/01/13T07:02:21.542145 WARN GET /favicon.ico",
            "2013/01/13T07:02:43.632145 WARN POST /login",
        ]
        .iter()
        .map(|m| rec(&[("foo", Some("bar")), ("message", Some(m))]))
        .collect()
    }

    #[test]
    fn empty_config_keeps_everything_unchanged() {
        let f = GrepFilter::new(&GrepConf::default()).unwrap();
        let b = batch(&messages());
        let ptr = b.entries.as_ptr();
        let out = f.filter(b).unwrap();
        assert_eq!(out.entries.as_ptr(), ptr, "pass-through returns the same bytes");
        assert_eq!(out.count, 4);
    }

    #[test]
    fn regexp_and_exclude() {
        let f = GrepFilter::new(&GrepConf {
            regexp_and: conds(&[("message", "WARN")]),
            exclude_or: conds(&[("message", "favicon")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(kept(&f, &messages()), vec![1, 3]);
    }

    #[test]
    fn or_and_groups() {
        let recs = messages();
        let f = GrepFilter::new(&GrepConf {
            regexp_or: conds(&[("message", "INFO"), ("message2", "nope")]),
            ..Default::default()
        });
        // Same key twice in one <or> is a config error in fluentd; test distinct keys.
        let f = f.unwrap();
        assert_eq!(kept(&f, &recs), vec![0]);
        let f = GrepFilter::new(&GrepConf {
            exclude_and: conds(&[("message", "WARN"), ("foo", "bar")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(kept(&f, &recs), vec![0]);
        let f = GrepFilter::new(&GrepConf {
            exclude_and: conds(&[("message", "WARN"), ("foo", "nomatch")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(kept(&f, &recs), vec![0, 1, 2, 3]);
    }

    #[test]
    fn missing_keys_match_as_empty_and_numbers_as_text() {
        let recs = vec![rec(&[("a", Some("x"))]), rec(&[("status", None)])];
        let f = GrepFilter::new(&GrepConf { regexp_and: conds(&[("status", "^404$")]), ..Default::default() }).unwrap();
        assert_eq!(kept(&f, &recs), vec![1]);
        let f = GrepFilter::new(&GrepConf { regexp_and: conds(&[("status", "^$")]), ..Default::default() }).unwrap();
        assert_eq!(kept(&f, &recs), vec![0]);
        let f = GrepFilter::new(&GrepConf { exclude_or: conds(&[("nokey", "x")]), ..Default::default() }).unwrap();
        assert_eq!(kept(&f, &recs), vec![0, 1]);
    }

    #[test]
    fn all_dropped_is_none() {
        let f =
            GrepFilter::new(&GrepConf { regexp_and: conds(&[("message", "ERROR")]), ..Default::default() }).unwrap();
        assert!(f.filter(batch(&messages())).is_none());
    }

    #[test]
    fn record_accessor_and_ruby_regex() {
        let mut r = Vec::new();
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"k8s");
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"ns");
        raw::str(&mut r, b"Prod");
        let f = GrepFilter::new(&GrepConf { regexp_and: conds(&[("$.k8s.ns", "/^prod$/i")]), ..Default::default() })
            .unwrap();
        assert_eq!(kept(&f, &[r.clone()]), vec![0]);
        let f =
            GrepFilter::new(&GrepConf { regexp_and: conds(&[("$['k8s']['ns']", "Prod\\Z")]), ..Default::default() })
                .unwrap();
        assert_eq!(kept(&f, &[r]), vec![0]);
        assert!(GrepFilter::new(&GrepConf { regexp_and: conds(&[("a", "(?<=x)y")]), ..Default::default() }).is_err());
        assert!(parse_accessor("$.").is_err());
        assert_eq!(parse_accessor("$.a[0]").unwrap(), vec![Step::Key("a".into()), Step::Index(0)]);
    }
}
