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
                batch.format.append_packed(&mut out, &entries[a..b]);
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
mod tests;
