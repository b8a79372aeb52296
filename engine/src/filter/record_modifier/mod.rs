//! `filter_record_modifier` (fluent-plugin-record-modifier): sets `<record>` fields,
//! then `remove_keys` (record accessors, nested too) or `whitelist_keys`, then the
//! `<replace>`s, then `char_encoding`, as the plugin's `filter` does.
//!
//! A `<record>` value with `${...}` is Ruby, as the plugin's `DynamicExpander` builds it:
//! exactly one `${code}` spanning the value keeps the type of its result; anything else
//! is a Ruby double-quoted string with `${` read as `#{`. The expressions are
//! [`crate::ruby::expr`] programs with the locals `record`, `tag`, `time` (an EventTime:
//! `to_s` is the seconds) and `tag_parts`. A value without `${` is kept as it is. They
//! see the record as it arrived (the plugin's see fields set by earlier `<record>` lines:
//! a deliberate difference). `whitelist_keys` (spate also accepts `allowlist_keys`)
//! keeps the listed keys and the `<record>` keys, in that order. `<replace>` runs Ruby's
//! `gsub` on a string field its `expression` matches. `char_encoding X` marks strings
//! as X (UTF-8 and other text encodings: msgpack str; `ascii-8bit`/`binary`: bin);
//! `X:Y` between two different encodings is a config error (spate has no transcoding
//! tables). `prepare_value` is Ruby code run at startup: rejected. An expression that
//! raises, or a `<replace>` on a field that is not a string, drops that event with a
//! warning (fluentd emits it as an error event).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use spate_protocol::encode::raw;
use spate_protocol::msgpack::{self, Head, Kind as MsgKind};
use spate_protocol::{EventBatch, RecordRef, ValueRef};

use crate::config::{ConfigError, Element};
use crate::plugin::{Build, BuildError, Emitter, Filter, FilterPlan, Kind, PlanCtx, Registration, ShardCtx};
use crate::ruby::accessor::{delete_nest, Accessor};
use crate::ruby::expr::{CompileCx, Local, Program, Re, Scope};
use crate::ruby::regex::RubyRegex;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "record_modifier",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "`<record>` (values with `${...}` are Ruby: the subset below, locals `record`, `tag`, `time`, `tag_parts`), `remove_keys` (nested accessors too), `whitelist_keys` (`allowlist_keys`), `<replace>` (`key`, `expression`, `replace`), `char_encoding` (marking, not transcoding); `prepare_value` is rejected (Ruby code)",
};

#[derive(Debug)]
enum Value {
    /// msgpack-encoded string.
    Lit(Vec<u8>),
    Expr(Program),
}

#[derive(Debug)]
struct Replace {
    key: Vec<u8>,
    re: Re,
    repl: Vec<u8>,
}

/// `char_encoding`: which msgpack string type strings become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Str,
    Bin,
}

#[derive(Debug)]
struct Conf {
    record: Vec<(Vec<u8>, Value)>,
    remove_top: Vec<Vec<u8>>,
    remove_nested: Vec<Accessor>,
    /// `whitelist_keys` plus the `<record>` keys (uniq, in that order).
    whitelist: Option<Vec<Vec<u8>>>,
    replaces: Vec<Replace>,
    charset: Option<Charset>,
}

#[derive(Debug)]
struct RecordModifierPlan {
    id: String,
    conf: Arc<Conf>,
}

fn charset_of(name: &str) -> Charset {
    match name.to_ascii_lowercase().as_str() {
        "ascii-8bit" | "binary" => Charset::Bin,
        _ => Charset::Str,
    }
}

fn is_utf8(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
}

fn compile(key: &str, v: &str, e: &Element) -> Result<Value, ConfigError> {
    if !v.contains("${") {
        let mut b = Vec::new();
        raw::str(&mut b, v.as_bytes());
        return Ok(Value::Lit(b));
    }
    // DynamicExpander#parse_parameter.
    let code = if v.matches("${").count() == 1 && v.starts_with("${") && v.ends_with('}') {
        v[2..v.len() - 1].to_string()
    } else {
        format!("\"{}\"", v.replace("${", "#{"))
    };
    let env = |k: &str| std::env::var(k).ok();
    let locals = [Local::Record, Local::Tag, Local::EventTime, Local::TagParts];
    Program::compile(&code, &CompileCx { locals: &locals, env: &env, hostname: "" })
        .map(Value::Expr)
        .map_err(|x| e.error(format!("<record> {key}: {x}")))
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "record_modifier");
    if e.str("prepare_value").is_some() {
        return Err(e.error(
            "prepare_value is Ruby code run at startup: spate does not run Ruby; put constant values in <record> instead",
        ));
    }
    let mut record: Vec<(Vec<u8>, Value)> = Vec::new();
    for r in e.elements_named("record") {
        r.mark_all_used();
        for a in &r.attrs {
            let v = compile(&a.key, &a.value, r)?;
            match record.iter_mut().find(|(k, _)| k == a.key.as_bytes()) {
                Some(slot) => slot.1 = v,
                None => record.push((a.key.as_bytes().to_vec(), v)),
            }
        }
    }
    let remove = e.array("remove_keys")?;
    let white = match (e.str("whitelist_keys"), e.str("allowlist_keys")) {
        (Some(_), Some(_)) => return Err(e.error("whitelist_keys and allowlist_keys are the same parameter: use one")),
        (w, a) => w.or(a),
    };
    if remove.is_some() && white.is_some() {
        return Err(e.error("remove_keys and whitelist_keys are exclusive with each other."));
    }
    let (mut remove_top, mut remove_nested) = (Vec::new(), Vec::new());
    for k in remove.unwrap_or_default() {
        let a = Accessor::parse(&k).map_err(|x| e.error(x.to_string()))?;
        match a.simple_key() {
            Some(s) => remove_top.push(s.to_vec()),
            None => remove_nested.push(a),
        }
    }
    let whitelist = white.map(|w| {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for k in w.split(',').map(str::trim).map(|k| k.as_bytes().to_vec()).chain(record.iter().map(|(k, _)| k.clone()))
        {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    });
    let mut replaces = Vec::new();
    for r in e.elements_named("replace") {
        let key = r.str("key").ok_or_else(|| r.error("'key' parameter is required in <replace>"))?;
        let expr = r.str("expression").ok_or_else(|| r.error("'expression' parameter is required in <replace>"))?;
        let repl = r.str("replace").ok_or_else(|| r.error("'replace' parameter is required in <replace>"))?;
        // The plugin: `/re/` is compiled without its slashes (no flags); anything else
        // as it is, with a warning.
        let body = match expr.strip_prefix('/').and_then(|x| x.strip_suffix('/')) {
            Some(b) if expr.len() >= 2 => b,
            _ => {
                crate::warn!("{}: You should use \"pattern /{expr}/\" instead of \"pattern {expr}\"", r.pos);
                expr
            }
        };
        let re = RubyRegex::new(body, false, false).map_err(|x| r.error(format!("expression {expr:?}: {x}")))?;
        replaces.push(Replace {
            key: key.as_bytes().to_vec(),
            re: Re { re, src: body.to_string(), flags: String::new() },
            repl: repl.as_bytes().to_vec(),
        });
        r.warn_unused();
    }
    let charset = match e.str("char_encoding") {
        None => None,
        Some(c) => match c.split_once(':') {
            None => Some(charset_of(c)),
            Some((from, to)) if from.eq_ignore_ascii_case(to) || (is_utf8(from) && is_utf8(to)) => Some(charset_of(to)),
            Some((from, to)) => {
                return Err(e.error(format!(
                    "char_encoding {from}:{to}: transcoding between encodings is not supported (spate has no \
                     encoding tables); use `char_encoding {from}` to mark strings, or convert before spate"
                )))
            }
        },
    };
    let conf = Conf { record, remove_top, remove_nested, whitelist, replaces, charset };
    Ok(Box::new(RecordModifierPlan { id, conf: Arc::new(conf) }))
}

impl FilterPlan for RecordModifierPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "record_modifier"
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        Ok(Box::new(RecordModifier { conf: self.conf.clone(), work: RefCell::new(Work::default()) }))
    }
}

/// Scratch buffers reused across events.
#[derive(Default)]
struct Work {
    /// The `<record>` values of the current event, msgpack, at `spans`.
    vals: Vec<u8>,
    spans: Vec<(usize, usize)>,
    matched: Vec<bool>,
    fields: Vec<u8>,
    rec: Vec<u8>,
    alt: Vec<u8>,
}

/// The filter on one shard.
pub struct RecordModifier {
    conf: Arc<Conf>,
    work: RefCell<Work>,
}

/// Why an event failed (fluentd makes it an error event).
#[derive(Debug, thiserror::Error)]
enum EventError {
    #[error("<record> {key}: failed to evaluate `{code}`: {err}")]
    Ruby { key: String, code: String, err: crate::ruby::expr::RubyError },
    #[error("<replace> {key}: {msg}")]
    Replace { key: String, msg: String },
}

/// Rewrites the string types of a msgpack value (and everything in it) into `out`.
fn recode(v: ValueRef<'_>, cs: Charset, out: &mut Vec<u8>, depth: usize) {
    match v.kind() {
        MsgKind::Str | MsgKind::Bin if depth < 128 => {
            let s = v.as_str().unwrap_or_default();
            match cs {
                Charset::Str => raw::str(out, s),
                Charset::Bin => raw::bin(out, s),
            }
        }
        MsgKind::Array if depth < 128 => {
            let (Some(n), Some(items)) = (crate::ruby::accessor::array_len(v), v.as_array()) else {
                return out.extend_from_slice(v.as_bytes());
            };
            raw::array_header(out, n as u32);
            for x in items {
                recode(x, cs, out, depth + 1);
            }
        }
        MsgKind::Map if depth < 128 => {
            let Some(m) = v.as_map() else { return out.extend_from_slice(v.as_bytes()) };
            raw::map_header(out, m.len() as u32);
            for (k, x) in m.fields() {
                recode(k, cs, out, depth + 1);
                recode(x, cs, out, depth + 1);
            }
        }
        _ => out.extend_from_slice(v.as_bytes()),
    }
}

/// `record[key] = value` on an encoded map: the value replaced in place.
fn set_field(rec: &[u8], key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let Some(r) = RecordRef::new(rec) else { return out.extend_from_slice(rec) };
    match msgpack::head(rec) {
        Ok(Some(Head::Map { n, .. })) => raw::map_header(out, n),
        _ => return out.extend_from_slice(rec),
    }
    for (k, v) in r.fields() {
        out.extend_from_slice(k.as_bytes());
        if k.as_str() == Some(key) {
            out.extend_from_slice(value);
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
}

impl RecordModifier {
    /// The new record of one event into `w.rec`.
    fn modify(&self, w: &mut Work, scope: &Scope<'_>) -> Result<(), EventError> {
        let c = &*self.conf;
        let rec = scope.record;
        w.vals.clear();
        w.spans.clear();
        for (k, v) in &c.record {
            let start = w.vals.len();
            match v {
                Value::Lit(b) => w.vals.extend_from_slice(b),
                Value::Expr(p) => match p.eval(scope) {
                    Ok(x) => x.write_msgpack(&mut w.vals),
                    Err(err) => {
                        return Err(EventError::Ruby {
                            key: String::from_utf8_lossy(k).into_owned(),
                            code: p.source().to_string(),
                            err,
                        })
                    }
                },
            }
            w.spans.push((start, w.vals.len()));
        }
        let Work { vals, spans, matched, fields, .. } = &mut *w;
        let find = |k: &[u8]| c.record.iter().position(|(mk, _)| mk == k);
        let val = |j: usize| -> &[u8] { &vals[spans[j].0..spans[j].1] };
        fields.clear();
        matched.clear();
        matched.resize(c.record.len(), false);
        let mut n = 0u32;
        if let Some(white) = &c.whitelist {
            // A new Hash in whitelist order, from the record with <record> applied.
            for key in white {
                match find(key) {
                    Some(j) => {
                        raw::str(fields, key);
                        fields.extend_from_slice(val(j));
                        n += 1;
                    }
                    None => {
                        if let Some(v) = rec.get(key) {
                            raw::str(fields, key);
                            fields.extend_from_slice(v.as_bytes());
                            n += 1;
                        }
                    }
                }
            }
        } else {
            for (k, v) in rec.fields() {
                let ks = k.as_str();
                let removed = ks.is_some_and(|s| c.remove_top.iter().any(|r| r == s));
                if let Some(j) = ks.and_then(find) {
                    if !matched[j] {
                        matched[j] = true;
                        if !removed {
                            fields.extend_from_slice(k.as_bytes());
                            fields.extend_from_slice(val(j));
                            n += 1;
                        }
                    }
                    continue;
                }
                if removed {
                    continue;
                }
                fields.extend_from_slice(k.as_bytes());
                fields.extend_from_slice(v.as_bytes());
                n += 1;
            }
            for (j, (key, _)) in c.record.iter().enumerate() {
                if !matched[j] && !c.remove_top.contains(key) {
                    raw::str(fields, key);
                    fields.extend_from_slice(val(j));
                    n += 1;
                }
            }
        }
        w.rec.clear();
        raw::map_header(&mut w.rec, n);
        w.rec.extend_from_slice(&w.fields);
        for a in &c.remove_nested {
            w.alt.clear();
            if ValueRef::new(&w.rec).is_some_and(|v| delete_nest(v, &a.steps, &mut w.alt)) {
                std::mem::swap(&mut w.rec, &mut w.alt);
            }
        }
        for r in &c.replaces {
            let Some(cur) = RecordRef::new(&w.rec).and_then(|m| m.get(&r.key)) else { continue };
            let Some(s) = cur.as_str() else {
                return Err(EventError::Replace {
                    key: String::from_utf8_lossy(&r.key).into_owned(),
                    msg: "the field is not a string (Ruby raises: no implicit conversion into String)".into(),
                });
            };
            let Ok(text) = std::str::from_utf8(s) else {
                return Err(EventError::Replace {
                    key: String::from_utf8_lossy(&r.key).into_owned(),
                    msg: "invalid byte sequence in UTF-8".into(),
                });
            };
            if r.re.re.captures_at(text, 0).is_none() {
                continue;
            }
            let new = crate::ruby::expr::gsub(s, &r.re, &r.repl).map_err(|e| EventError::Replace {
                key: String::from_utf8_lossy(&r.key).into_owned(),
                msg: e.to_string(),
            })?;
            let mut enc = Vec::with_capacity(new.len() + 5);
            raw::str(&mut enc, &new);
            w.alt.clear();
            set_field(&w.rec, &r.key, &enc, &mut w.alt);
            std::mem::swap(&mut w.rec, &mut w.alt);
        }
        if let Some(cs) = c.charset {
            w.alt.clear();
            if let Some(v) = ValueRef::new(&w.rec) {
                recode(v, cs, &mut w.alt, 0);
                std::mem::swap(&mut w.rec, &mut w.alt);
            }
        }
        Ok(())
    }
}

impl Filter for RecordModifier {
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        let mut guard = self.work.borrow_mut();
        let w = &mut *guard;
        let mut parts: Vec<&[u8]> = batch.tag.split(|&b| b == b'.').collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        let mut out: Vec<u8> = Vec::new();
        let (mut count, mut errors, mut started) = (0u32, 0u32, false);
        let mut first_err: Option<EventError> = None;
        for (i, ev) in batch.events().enumerate() {
            let scope = Scope { record: ev.record, tag: &batch.tag, tag_parts: &parts, time: ev.time };
            let r = self.modify(w, &scope);
            let dropped = r.is_err();
            if let Err(e) = r {
                errors += 1;
                first_err.get_or_insert(e);
            }
            if !started {
                if !dropped && w.rec[..] == *ev.record.as_bytes() {
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
            out.extend_from_slice(ev.time_raw);
            out.extend_from_slice(&w.rec);
            count += 1;
        }
        if let Some(e) = first_err {
            crate::warn!(
                "record_modifier: dropped {errors} event(s) of tag {}: {e} (fluentd emits these as error events)",
                String::from_utf8_lossy(&batch.tag)
            );
        }
        if !started {
            return Some(batch);
        }
        batch.with_packed_entries(bytes::Bytes::from(out), count)
    }
}

#[cfg(test)]
mod tests;
