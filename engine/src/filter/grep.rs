//! `filter_grep` with fluentd's semantics (`lib/fluent/plugin/filter_grep.rb`). The Ruby
//! pieces it relies on (record accessors, `to_s` of values, Ruby regexps) live in
//! [`crate::ruby`].
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

use spate_protocol::{EntriesFormat, EventBatch, RecordRef, ValueRef};

pub use super::error::FilterError;
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Filter, FilterPlan, Kind as PluginKind, PlanCtx, Registration, ShardCtx,
};
use crate::ruby::accessor::{Accessor, Dug, Step};
use crate::ruby::value::write_to_s;

/// Transition re-export: other branches import the Ruby regexp from here; new code uses
/// [`crate::ruby::regex::RubyRegex`].
#[allow(unused_imports)]
pub(crate) use crate::ruby::regex::RubyRegex;

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
    use spate_protocol::{EventTime, Mode, Options};

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
    fn bad_accessor_is_a_config_error() {
        let e = err(&regexps(&[("$.", "x")]));
        assert_eq!(e, r#"invalid record accessor "$.": empty keys in dot notation"#);
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
