//! `filter_record_transformer` with fluentd's semantics
//! (`lib/fluent/plugin/filter_record_transformer.rb`): `<record>` fields with
//! placeholders, `remove_keys` (record accessors, nested too), `keep_keys`,
//! `renew_record`, `renew_time_key`, `auto_typecast` and `enable_ruby` (the Ruby subset of
//! [`crate::ruby::expr`]; an expression outside it is a config error, one that raises
//! drops the event with a warning, as fluentd turns it into an error event).
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
//!
//! The same machinery serves out_record_reformer ([`RecordTransformer::reform`], set up by
//! `RecordTransformerConf::reformer_tag`): a tag template per event, bare `${field}`
//! placeholders, and that plugin's rules (see `crate::output::record_reformer`).
//!
//! Files: this one holds the parameters and the filter (per-batch and per-event flow);
//! `template.rs` compiles and renders `<record>` values; `record.rs` holds
//! `renew_time_key`'s conversion; `tests.rs` the tests.

use std::cell::RefCell;
use std::rc::Rc;

use spate_protocol::encode::raw;
use spate_protocol::{EventBatch, EventTime, RecordRef, ValueRef};

pub use super::error::FilterError;
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Filter, FilterPlan, Kind as PluginKind, PlanCtx, Registration, ShardCtx,
};
use crate::ruby::accessor::{ruby_index, Accessor, Dug};

mod record;
mod template;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ruby;

use crate::ruby::accessor::delete_nest;
use record::renew_time;
use template::{parts_are_lit, BatchPh, Compiler, Ctx, Event, ExpandError, Part, TimeText, Tpl};

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
    /// record_reformer (the output in [`crate::output::record_reformer`]): its new `tag`
    /// (a template); set only there.
    pub reformer_tag: Option<String>,
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
            reformer_tag: None,
        }
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
    time_text: TimeText,
    /// record_reformer: the current event's new tag.
    tag: Vec<u8>,
    /// record_reformer: values whose Ruby raised (they become nil), and the first error.
    nil_values: u32,
    first_nil: Option<ExpandError>,
}

/// record_reformer's events of one new tag (see [`RecordTransformer::reform`]).
#[derive(Debug, Default)]
pub struct TagGroup {
    pub tag: Vec<u8>,
    /// Packed entries, in the order of the events.
    pub entries: Vec<u8>,
    pub count: u32,
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
    /// `enable_ruby`: the Ruby expressions the templates refer to.
    exprs: Vec<crate::ruby::expr::Program>,
    /// Nothing can change a record: every batch passes as is.
    noop: bool,
    /// Only `remove_keys`: records without those keys pass without re-encoding.
    remove_only: bool,
    /// record_reformer: the compiled `tag`; also switches its semantics on (a value whose
    /// Ruby raises is nil, `renew_time_key` is `to_i`, `remove_keys` are top-level keys).
    reformer_tag: Option<Vec<Part>>,
    /// Boxed: keeps `Filter` variants of similar size.
    work: RefCell<Box<Work>>,
}

impl std::fmt::Debug for RecordTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTransformer").field("fields", &self.map.len()).finish_non_exhaustive()
    }
}

/// Ruby's `tag.split('.')` (trailing empty parts dropped).
pub(super) fn tag_parts(tag: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = tag.split(|&b| b == b'.').collect();
    while v.last().is_some_and(|p| p.is_empty()) {
        v.pop();
    }
    v
}

impl RecordTransformer {
    pub fn new(conf: &RecordTransformerConf) -> Result<Self, FilterError> {
        if !conf.keep_keys.is_empty() && !conf.renew_record {
            return Err(FilterError::Config("`renew_record` must be true to use `keep_keys`".into()));
        }
        let any = regex::Regex::new(r"\$\{[^}]+\}|__[A-Z_]+__")
            .map_err(|e| FilterError::Config(format!("record_transformer: internal regexp: {e}")))?;
        let mut c = Compiler {
            any,
            auto_typecast: conf.auto_typecast,
            batch: Vec::new(),
            unknown: Vec::new(),
            ruby: conf.enable_ruby.then(|| conf.hostname.clone()),
            exprs: Vec::new(),
            error: None,
            reformer: conf.reformer_tag.is_some(),
        };
        let plugin = if conf.reformer_tag.is_some() { "record_reformer" } else { "record_transformer" };
        let mut map: Vec<(Vec<Part>, Tpl)> = Vec::new();
        for (k, v) in &conf.record {
            let key = c.parts(k);
            let tpl = c.value(v);
            if let Some(error) = c.error.take() {
                return Err(FilterError::Ruby { key: k.clone(), error });
            }
            // A repeated key: the last value, at the first position (Ruby Hash).
            match map.iter_mut().find(|(mk, _)| *mk == key) {
                Some(slot) => slot.1 = tpl,
                None => map.push((key, tpl)),
            }
        }
        let reformer_tag = match &conf.reformer_tag {
            Some(t) => {
                let parts = c.parts(t);
                if let Some(error) = c.error.take() {
                    return Err(FilterError::Ruby { key: "tag".into(), error });
                }
                Some(parts)
            }
            None => None,
        };
        for u in &c.unknown {
            crate::warn!(
                "{plugin}: unknown placeholder `{u}` found; it expands to nil (spate supports \
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
            if reformer_tag.is_some() {
                // record_reformer's `new_record.delete(k)`: a top-level key as written.
                remove_top.push(k.as_bytes().to_vec());
                continue;
            }
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
            exprs: c.exprs,
            noop,
            remove_only: map_empty && !conf.renew_record && conf.renew_time_key.is_none(),
            reformer_tag,
            work: RefCell::new(Box::default()),
        })
    }

    fn resolve<'t>(&self, tag: &'t [u8]) -> Ctx<'t> {
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
        Ctx { vals, tag, parts }
    }

    /// Fills `w.keybuf` / `w.keys` with the effective `<record>` entries for one event.
    fn event_keys(&self, w: &mut Work, ev: &Event<'_, '_>) -> Result<(), ExpandError> {
        w.keybuf.clear();
        w.keys.clear();
        for (i, (k, _)) in self.map.iter().enumerate() {
            let start = w.keybuf.len();
            template::expand(k, ev, &mut w.time_text, &mut w.keybuf)?;
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
        Ok(())
    }

    /// Transforms one record into `w.rec`. Returns the renewed time (`Some(Err)` when
    /// `renew_time_key` holds a value Ruby cannot turn into a time); `Err` when a Ruby
    /// expression raised.
    #[allow(clippy::type_complexity)]
    fn transform(
        &self,
        w: &mut Work,
        ctx: &Ctx<'_>,
        rec: RecordRef<'_>,
        t: EventTime,
    ) -> Result<Option<Result<EventTime, ()>>, ExpandError> {
        let ev = Event { ctx, exprs: &self.exprs, rec, t };
        if self.static_keys.is_none() {
            self.event_keys(w, &ev)?;
        }
        let Work { fields, rec: rec_out, alt, tmp, keybuf, keys, matched, time_text, nil_values, first_nil, .. } = w;
        let reformer = self.reformer_tag.is_some();
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
        let mut emit = |key_enc: Option<&[u8]>,
                        key: Option<&[u8]>,
                        val: Val<'_>,
                        fields: &mut Vec<u8>,
                        tmp: &mut Vec<u8>|
         -> Result<(), ExpandError> {
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
                        if let Err(e) = template::write_tpl(tpl, &ev, time_text, tmp, fields) {
                            if !reformer {
                                return Err(e);
                            }
                            // record_reformer's expander rescues: the field is nil.
                            fields.truncate(vstart);
                            raw::nil(fields);
                            *nil_values += 1;
                            first_nil.get_or_insert(e);
                        }
                    }
                }
            }
            let Some(key) = key else {
                n += 1;
                return Ok(());
            };
            if self.renew_time_key.as_deref() == Some(key) {
                let t = renew_time(&fields[vstart..]);
                // record_reformer: `record[key].to_i`, whole seconds.
                renew = Some(if reformer { t.map(|t| EventTime::new(t.sec, 0)) } else { t });
            }
            if self.remove_top.iter().any(|r| r == key) {
                fields.truncate(start);
            } else {
                n += 1;
            }
            Ok(())
        };

        if self.renew_record {
            for k in &self.keep_keys {
                // record_transformer keeps the keys the record has; record_reformer's
                // `new_record[k] = record[k]` sets a missing one to nil.
                let v = match rec.get(k) {
                    Some(v) => v.as_bytes(),
                    None if reformer => &[0xc0][..],
                    None => continue,
                };
                match find(k) {
                    Some(j) => {
                        matched[j] = true;
                        emit(None, Some(k), Val::Tpl(keys[j].2), fields, tmp)?;
                    }
                    None => emit(None, Some(k), Val::Raw(v), fields, tmp)?,
                }
            }
        } else {
            for (k, v) in rec.fields() {
                match k.as_str() {
                    Some(ks) => match find(ks) {
                        Some(j) => {
                            if !matched[j] {
                                matched[j] = true;
                                emit(Some(k.as_bytes()), Some(ks), Val::Tpl(keys[j].2), fields, tmp)?;
                            }
                        }
                        None => emit(Some(k.as_bytes()), Some(ks), Val::Raw(v.as_bytes()), fields, tmp)?,
                    },
                    // Non-string keys are never `<record>` keys, never removed.
                    None => emit(Some(k.as_bytes()), None, Val::Raw(v.as_bytes()), fields, tmp)?,
                }
            }
        }
        for (j, &(s, e, i)) in keys.iter().enumerate() {
            if !matched[j] {
                emit(None, Some(&keybuf[s..e]), Val::Tpl(i), fields, tmp)?;
            }
        }

        rec_out.clear();
        raw::map_header(rec_out, n);
        rec_out.extend_from_slice(fields);
        for a in &self.remove_nested {
            alt.clear();
            let changed = ValueRef::new(rec_out).is_some_and(|v| delete_nest(v, &a.steps, alt));
            if changed {
                std::mem::swap(rec_out, alt);
            }
        }
        Ok(renew)
    }

    /// Fills `w.keybuf` / `w.keys` once per batch when no `<record>` key has placeholders.
    fn static_event_keys(&self, w: &mut Work) {
        if let Some(sk) = &self.static_keys {
            w.keybuf.clear();
            w.keys.clear();
            for (k, i) in sk {
                let start = w.keybuf.len();
                w.keybuf.extend_from_slice(k);
                w.keys.push((start, w.keybuf.len(), *i));
            }
        }
    }

    /// record_reformer's `process`: every event of `batch` gets its new tag and record;
    /// `groups` receives one [`TagGroup`] per distinct new tag, events in their order.
    /// An event whose tag's Ruby raised is dropped (the plugin skips a nil tag); a value
    /// whose Ruby raised is nil; both are logged once per batch.
    pub fn reform(&self, batch: &EventBatch, groups: &mut Vec<TagGroup>) {
        let Some(tag_tpl) = &self.reformer_tag else { return };
        let mut guard = self.work.borrow_mut();
        let w = &mut *guard;
        let ctx = self.resolve(&batch.tag);
        self.static_event_keys(w);
        w.nil_values = 0;
        w.first_nil = None;
        let (mut dropped, mut bad_time) = (0u32, 0u32);
        let mut first_drop: Option<ExpandError> = None;
        for ev in batch.events() {
            w.tag.clear();
            let expanded = {
                let e = Event { ctx: &ctx, exprs: &self.exprs, rec: ev.record, t: ev.time };
                template::expand(tag_tpl, &e, &mut w.time_text, &mut w.tag)
            };
            let renew = expanded.and_then(|()| self.transform(w, &ctx, ev.record, ev.time));
            let time = match renew {
                Ok(None) => None,
                Ok(Some(Ok(t))) => Some(t),
                Ok(Some(Err(()))) => {
                    bad_time += 1;
                    continue;
                }
                Err(e) => {
                    dropped += 1;
                    first_drop.get_or_insert(e);
                    continue;
                }
            };
            let g = match groups.iter().position(|g| g.tag == w.tag) {
                Some(g) => g,
                None => {
                    let entries = Vec::with_capacity(batch.entries.len() / 2 + 64);
                    groups.push(TagGroup { tag: w.tag.clone(), entries, count: 0 });
                    groups.len() - 1
                }
            };
            let TagGroup { entries: out, count: n, .. } = &mut groups[g];
            out.push(0x92);
            match time {
                Some(t) => raw::event_time(out, t),
                None => out.extend_from_slice(ev.time_raw),
            }
            out.extend_from_slice(&w.rec);
            *n += 1;
        }
        let tag = String::from_utf8_lossy(&batch.tag);
        if let Some(e) = &w.first_nil {
            crate::warn!("record_reformer: {} value(s) of tag {tag} set to nil: {e}", w.nil_values);
        }
        if let Some(e) = first_drop {
            crate::warn!("record_reformer: dropped {dropped} event(s) of tag {tag}: {e}");
        }
        if bad_time > 0 {
            crate::warn!(
                "record_reformer: dropped {bad_time} event(s) of tag {tag}: renew_time_key {} holds a value \
                 without `to_i` (the plugin logs the error and emits nothing more of that batch)",
                String::from_utf8_lossy(self.renew_time_key.as_deref().unwrap_or_default())
            );
        }
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
        self.static_event_keys(w);
        // `out` stays empty (unallocated) while every event comes out unchanged.
        let mut out: Vec<u8> = Vec::new();
        let (mut count, mut errors, mut started) = (0u32, 0u32, false);
        let mut ruby_errors = 0u32;
        let mut first_ruby_error: Option<ExpandError> = None;
        for (i, ev) in batch.events().enumerate() {
            if self.remove_only && !self.touches(ev.record) {
                if started {
                    batch.format.append_packed(&mut out, ev.raw);
                }
                count += 1;
                continue;
            }
            let renew = self.transform(w, &ctx, ev.record, ev.time);
            let (time, dropped) = match renew {
                Ok(None) => (None, false),
                Ok(Some(Ok(t))) => (Some(t), false),
                Ok(Some(Err(()))) => {
                    errors += 1;
                    (None, true)
                }
                Err(e) => {
                    ruby_errors += 1;
                    first_ruby_error.get_or_insert(e);
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
                    batch.format.append_packed(&mut out, prev.raw);
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
        if let Some(e) = first_ruby_error {
            crate::warn!(
                "record_transformer: dropped {ruby_errors} event(s) of tag {}: {e} (fluentd emits these as error \
                 events)",
                String::from_utf8_lossy(&batch.tag)
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
    params: "`<record>` with `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}`, `${hostname}`, `${time}`, `${record[\"key\"]}`, JSON values; `enable_ruby` (the Ruby subset below); `remove_keys` (nested accessors too), `keep_keys`, `renew_record`, `renew_time_key`, `auto_typecast`",
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
        reformer_tag: None,
    };
    for r in e.elements_named("record") {
        r.mark_all_used();
        for a in &r.attrs {
            c.record.push((a.key.clone(), a.value.clone()));
        }
    }
    Ok(c)
}
