//! `filter_concat` (fluent-plugin-concat): joins the `key` field of consecutive events of
//! a stream (the tag, plus `stream_identity_key`'s value) into one event, with
//! `separator` between the lines: every `n_lines` events, or by regexps
//! (`multiline_start_regexp` starts a new event, `multiline_end_regexp` ends one,
//! `continuous_line_regexp` says which lines continue one).
//!
//! As the plugin's `filter_stream` and `process_*`: events without `key` pass through,
//! `fluent.*` tags are untouched, the joined event is the first event's record with the
//! joined text, merged into the record of the event that completed it, and it takes
//! that event's time (`use_first_timestamp`: the first's). Lines waiting for more are held
//! in memory (as in fluentd: lost on `kill -9`) until their stream has been quiet for
//! `flush_interval` (default 60 s; 0: never): then they go to `timeout_label` as a joined
//! event, or to the `@ERROR` label when there is one (fluentd's error event), else they
//! are logged and dropped. At shutdown every held stream is flushed the same way.
//!
//! Bounds (spate's, since lines come from clients): a stream holds at most
//! `buffer_limit_size` bytes of records (default 500 KiB; beyond it the held lines are
//! emitted joined, as if the multi-line event had ended) and at most 65536 streams are
//! held per shard (an event of a new stream beyond that passes through unjoined, with a
//! warning). The docker/CRI partial-message modes (`partial_key`, `use_partial_metadata`,
//! `use_partial_cri_logtag`) and `buffer_overflow_method` are not supported: config
//! errors.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::raw;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, RecordRef, ValueRef};

use crate::config::{ConfigError, Element};
use crate::plugin::{Build, BuildError, Emitter, Filter, FilterPlan, Kind, PlanCtx, Registration, ShardCtx};
use crate::ruby::regex::RubyRegex;
use crate::ruby::value::write_to_s;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "concat",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "`key`, `separator`, `n_lines`, `multiline_start_regexp`, `multiline_end_regexp`, `continuous_line_regexp`, `stream_identity_key`, `flush_interval`, `timeout_label`, `use_first_timestamp`, `buffer_limit_size` (held lines are in memory, as in fluentd); the partial-message modes are not supported",
};

/// Streams held per shard.
const MAX_STREAMS: usize = 65536;

#[derive(Debug)]
enum Mode {
    Lines(usize),
    Regexp { start: Option<RubyRegex>, end: Option<RubyRegex>, cont: Option<RubyRegex> },
}

#[derive(Debug)]
struct Conf {
    key: Vec<u8>,
    separator: Vec<u8>,
    mode: Mode,
    stream_key: Option<Vec<u8>>,
    flush_interval: Duration,
    use_first_timestamp: bool,
    buffer_limit: usize,
    /// Where timed-out events go: `timeout_label`, else `@ERROR` if it exists.
    timeout_label: Option<usize>,
    error_label: Option<usize>,
}

#[derive(Debug)]
struct ConcatPlan {
    id: String,
    conf: Arc<Conf>,
}

/// `/re/` as the plugin reads it (`value[1..-2]`).
fn slashed(e: &Element, key: &str) -> Result<Option<RubyRegex>, ConfigError> {
    let Some(v) = e.str(key) else { return Ok(None) };
    let body = v.strip_prefix('/').and_then(|b| b.strip_suffix('/')).ok_or_else(|| {
        e.error(format!("{key} {v:?}: expected /regexp/ (the plugin drops the first and last character)"))
    })?;
    RubyRegex::new(body, false, false).map(Some).map_err(|x| e.error(format!("{key} {v:?}: {x}")))
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "concat");
    let key = e.str("key").ok_or_else(|| e.error("'key' parameter is required"))?.as_bytes().to_vec();
    for p in ["partial_key", "use_partial_metadata", "use_partial_cri_logtag", "partial_cri_logtag_key"] {
        if e.str(p).is_some() {
            return Err(e.error(format!(
                "concat {p}: the docker/CRI partial-message modes are not supported yet; supported: n_lines, \
                 multiline_start_regexp, multiline_end_regexp"
            )));
        }
    }
    if e.str("buffer_overflow_method").is_some() {
        return Err(e.error("concat buffer_overflow_method applies to partial_key mode, which spate does not support"));
    }
    let n_lines = e.int("n_lines")?;
    let (start, end) = (slashed(e, "multiline_start_regexp")?, slashed(e, "multiline_end_regexp")?);
    let cont = slashed(e, "continuous_line_regexp")?;
    let mode =
        match n_lines {
            Some(_) if start.is_some() || end.is_some() => {
                return Err(e.error("n_lines and multiline_start_regexp/multiline_end_regexp are exclusive"))
            }
            Some(n) if n >= 1 => Mode::Lines(n as usize),
            Some(n) => return Err(e.error(format!("n_lines must be at least 1, got {n}"))),
            None if start.is_none() && end.is_none() => return Err(e.error(
                "Either n_lines, multiline_start_regexp, multiline_end_regexp, partial_key, use_partial_metadata or \
                 use_partial_cri_logtag is required",
            )),
            None => Mode::Regexp { start, end, cont },
        };
    let timeout_label = match e.str("timeout_label") {
        None => None,
        Some(l) => {
            Some(ctx.label_named(l).ok_or_else(|| e.error(format!("timeout_label {l} refers to no <label {l}>")))?)
        }
    };
    let conf = Conf {
        key,
        separator: e.str("separator").unwrap_or("\n").as_bytes().to_vec(),
        mode,
        stream_key: e.str("stream_identity_key").map(|k| k.as_bytes().to_vec()),
        flush_interval: e.time("flush_interval")?.unwrap_or(Duration::from_secs(60)),
        use_first_timestamp: e.bool("use_first_timestamp")?.unwrap_or(false),
        buffer_limit: e.size("buffer_limit_size")?.unwrap_or(500 * 1024).clamp(1, 1 << 30) as usize,
        timeout_label,
        error_label: ctx.label_named("@ERROR"),
    };
    Ok(Box::new(ConcatPlan { id, conf: Arc::new(conf) }))
}

impl FilterPlan for ConcatPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "concat"
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        Ok(Box::new(Concat {
            id: self.id.clone(),
            conf: self.conf.clone(),
            streams: RefCell::new(HashMap::new()),
            stopped: Cell::new(false),
            warned_full: Cell::new(false),
        }))
    }
}

/// A held event.
struct Held {
    time: EventTime,
    record: Vec<u8>,
}

struct Stream {
    tag: Bytes,
    events: Vec<Held>,
    bytes: usize,
    last: Instant,
}

/// The concat filter on one shard.
pub struct Concat {
    id: String,
    conf: Arc<Conf>,
    streams: RefCell<HashMap<Vec<u8>, Stream>>,
    stopped: Cell<bool>,
    warned_full: Cell<bool>,
}

/// What processing one event produced, in order.
enum Out {
    /// A joined event (record already encoded) at this time.
    Joined(EventTime, Vec<u8>),
    /// The event itself, unchanged.
    Same,
}

/// Why an event failed (fluentd emits it as an error event).
#[derive(Debug, thiserror::Error)]
#[error("concat: the value of {key:?} is {class}, not a String (Ruby raises TypeError in Regexp#match?)")]
struct NotText {
    key: String,
    class: &'static str,
}

/// Ruby's `Hash#merge`: `a`'s keys (values from `b` where `b` has them), then `b`'s
/// other keys.
fn merge(a: RecordRef<'_>, b: RecordRef<'_>, out: &mut Vec<u8>) {
    let mut fields = Vec::with_capacity(a.as_bytes().len() + b.as_bytes().len());
    let mut n = 0u32;
    for (k, v) in a.fields() {
        fields.extend_from_slice(k.as_bytes());
        let over = k.as_str().and_then(|ks| b.get(ks));
        fields.extend_from_slice(over.map_or(v.as_bytes(), |o| o.as_bytes()));
        n += 1;
    }
    for (k, v) in b.fields() {
        let in_a = k.as_str().is_some_and(|ks| a.get(ks).is_some());
        if !in_a {
            fields.extend_from_slice(k.as_bytes());
            fields.extend_from_slice(v.as_bytes());
            n += 1;
        }
    }
    raw::map_header(out, n);
    out.extend_from_slice(&fields);
}

impl Concat {
    /// `flush_buffer`: the first held record with `key` set to the joined lines; the
    /// first event's time.
    fn join(&self, events: &[Held]) -> Option<(EventTime, Vec<u8>)> {
        let first = events.first()?;
        let mut text = Vec::new();
        for (i, h) in events.iter().enumerate() {
            if i > 0 {
                text.extend_from_slice(&self.conf.separator);
            }
            if let Some(v) = RecordRef::new(&h.record).and_then(|r| r.get(&self.conf.key)) {
                write_to_s(v, &mut text);
            }
        }
        let mut val = Vec::with_capacity(text.len() + 5);
        raw::str(&mut val, &text);
        let rec = RecordRef::new(&first.record)?;
        let mut out = Vec::with_capacity(first.record.len() + text.len());
        let mut one = Vec::with_capacity(self.conf.key.len() + val.len() + 6);
        raw::map_header(&mut one, 1);
        raw::str(&mut one, &self.conf.key);
        one.extend_from_slice(&val);
        merge(rec, RecordRef::new(&one)?, &mut out);
        Some((first.time, out))
    }

    fn identity(&self, tag: &[u8], rec: RecordRef<'_>, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(tag);
        out.push(b':');
        match &self.conf.stream_key {
            Some(k) => {
                if let Some(v) = rec.get(k) {
                    write_to_s(v, out);
                }
            }
            None => out.extend_from_slice(b"default"),
        }
    }

    fn matches(
        re: &Option<RubyRegex>,
        v: Option<ValueRef<'_>>,
        key: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<bool, NotText> {
        let Some(re) = re else { return Ok(false) };
        match v {
            None => Ok(false),
            Some(v) if v.is_nil() => Ok(false),
            Some(v) => match v.as_str() {
                Some(s) => Ok(re.is_match(s, scratch)),
                None => Err(NotText {
                    key: String::from_utf8_lossy(key).into_owned(),
                    class: match v.kind() {
                        spate_protocol::msgpack::Kind::UInt | spate_protocol::msgpack::Kind::NegInt => "an Integer",
                        spate_protocol::msgpack::Kind::F32 | spate_protocol::msgpack::Kind::F64 => "a Float",
                        spate_protocol::msgpack::Kind::Bool => "a boolean",
                        spate_protocol::msgpack::Kind::Array => "an Array",
                        spate_protocol::msgpack::Kind::Map => "a Hash",
                        _ => "not a String",
                    },
                }),
            },
        }
    }

    /// `process`: one event of stream `s` (created if new). `time`/`raw` are the event's.
    fn process(&self, s: &mut Stream, time: EventTime, rec: RecordRef<'_>, outs: &mut Vec<Out>) -> Result<(), NotText> {
        let c = &*self.conf;
        let hold = |s: &mut Stream| {
            s.bytes += rec.as_bytes().len();
            s.events.push(Held { time, record: rec.as_bytes().to_vec() });
        };
        // The plugin: `time = new_time if @use_first_timestamp`.
        let pick = |first: EventTime| if c.use_first_timestamp { first } else { time };
        let flush = |s: &mut Stream, outs: &mut Vec<Out>| {
            if let Some((t, r)) = self.join(&s.events) {
                outs.push(Out::Joined(pick(t), r));
            }
            s.events.clear();
            s.bytes = 0;
        };
        // spate's memory bound: a stream never holds more than buffer_limit_size.
        if !s.events.is_empty() && s.bytes + rec.as_bytes().len() > c.buffer_limit {
            flush(s, outs);
        }
        match &c.mode {
            Mode::Lines(n) => {
                hold(s);
                if s.events.len() >= *n {
                    flush(s, outs);
                }
            }
            Mode::Regexp { start, end, cont } => {
                let v = rec.get(&c.key);
                let mut scratch = Vec::new();
                let first = Self::matches(start, v, &c.key, &mut scratch)?;
                let last = Self::matches(end, v, &c.key, &mut scratch)?;
                if first {
                    if s.events.is_empty() {
                        hold(s);
                        if last {
                            flush(s, outs);
                        }
                    } else {
                        flush(s, outs);
                        hold(s);
                        if last {
                            flush(s, outs);
                        }
                    }
                } else if last {
                    hold(s);
                    flush(s, outs);
                } else if s.events.is_empty() {
                    if start.is_none() {
                        hold(s);
                    } else {
                        outs.push(Out::Same);
                    }
                } else {
                    let continues = match cont {
                        Some(_) => Self::matches(cont, v, &c.key, &mut scratch)?,
                        None => true,
                    };
                    if continues {
                        hold(s);
                    } else {
                        flush(s, outs);
                        outs.push(Out::Same);
                    }
                }
            }
        }
        Ok(())
    }

    /// A timed-out or remaining stream: to `timeout_label`, else `@ERROR`, else logged.
    fn emit_timeout(&self, s: &Stream, time: EventTime, record: Vec<u8>, why: &str, emitter: &dyn Emitter) {
        let c = &*self.conf;
        let tag = &s.tag;
        let Some(label) = c.timeout_label.or(c.error_label) else {
            crate::warn!(
                "concat {}: {why}: {} held line(s) of tag {} dropped (no timeout_label and no @ERROR label; fluentd \
                 would log an error event)",
                self.id,
                s.events.len(),
                String::from_utf8_lossy(tag)
            );
            return;
        };
        let mut e = Vec::with_capacity(record.len() + 16);
        e.push(0x92);
        raw::event_time(&mut e, time);
        e.extend_from_slice(&record);
        let b = EventBatch {
            tag: tag.clone(),
            entries: Bytes::from(e),
            format: EntriesFormat::Packed,
            count: 1,
            invalid: 0,
            mode: spate_protocol::Mode::PackedForward,
            option: Default::default(),
            wire_len: 0,
        };
        if let Err(err) = emitter.emit(label, b) {
            crate::warn!(
                "concat {}: {why}: the joined event of tag {} was not accepted: {err}",
                self.id,
                String::from_utf8_lossy(tag)
            );
        }
    }

    /// `flush_timeout_buffer`: streams quiet for `flush_interval` are flushed and forgotten.
    fn flush_timeouts(&self, emitter: &dyn Emitter) {
        let fi = self.conf.flush_interval;
        if fi.is_zero() {
            return;
        }
        let mut expired = Vec::new();
        {
            let mut m = self.streams.borrow_mut();
            let now = Instant::now();
            let keys: Vec<Vec<u8>> =
                m.iter().filter(|(_, s)| now.duration_since(s.last) >= fi).map(|(k, _)| k.clone()).collect();
            for k in keys {
                if let Some(s) = m.remove(&k) {
                    if !s.events.is_empty() {
                        expired.push(s);
                    }
                }
            }
        }
        // Emitted after the borrow ends: the router may call back into this filter.
        for s in expired {
            if let Some((first, rec)) = self.join(&s.events) {
                let t = if self.conf.use_first_timestamp { first } else { EventTime::now() };
                self.emit_timeout(&s, t, rec, "timeout flush", emitter);
            }
        }
    }
}

impl Filter for Concat {
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        let tag = &batch.tag[..];
        if let Some(level) = tag.strip_prefix(b"fluent.") {
            if matches!(level, b"trace" | b"debug" | b"info" | b"warn" | b"error" | b"fatal") {
                return Some(batch);
            }
        }
        let mut out = Vec::with_capacity(batch.entries.len() + 64);
        let mut count = 0u32;
        let mut changed = false;
        let mut ident = Vec::new();
        let mut outs = Vec::new();
        let mut errors = 0u32;
        let mut first_err = None;
        let mut m = self.streams.borrow_mut();
        let now = Instant::now();
        let push_same = |out: &mut Vec<u8>, raw: &[u8]| batch.format.append_packed(out, raw);
        for ev in batch.events() {
            if ev.record.get(&self.conf.key).is_none() {
                push_same(&mut out, ev.raw);
                count += 1;
                continue;
            }
            self.identity(tag, ev.record, &mut ident);
            if !m.contains_key(&ident) && m.len() >= MAX_STREAMS {
                if !self.warned_full.replace(true) {
                    crate::warn!(
                        "concat {}: {MAX_STREAMS} streams are held; events of new streams pass unjoined",
                        self.id
                    );
                }
                push_same(&mut out, ev.raw);
                count += 1;
                continue;
            }
            if !m.contains_key(&ident) {
                m.insert(ident.clone(), Stream { tag: batch.tag.clone(), events: Vec::new(), bytes: 0, last: now });
            }
            let Some(s) = m.get_mut(&ident) else { continue };
            s.last = now;
            outs.clear();
            changed = true;
            if let Err(e) = self.process(s, ev.time, ev.record, &mut outs) {
                errors += 1;
                first_err.get_or_insert(e);
                continue;
            }
            for o in outs.drain(..) {
                match o {
                    Out::Same => push_same(&mut out, ev.raw),
                    Out::Joined(t, rec) => {
                        // `record.merge(new_record)` with the event that completed it.
                        let mut merged = Vec::with_capacity(rec.len() + ev.record.as_bytes().len());
                        match RecordRef::new(&rec) {
                            Some(r) => merge(ev.record, r, &mut merged),
                            None => merged = rec,
                        }
                        out.push(0x92);
                        raw::event_time(&mut out, t);
                        out.extend_from_slice(&merged);
                    }
                }
                count += 1;
            }
        }
        drop(m);
        if let Some(e) = first_err {
            crate::warn!(
                "concat {}: dropped {errors} event(s) of tag {}: {e} (fluentd emits these as error events)",
                self.id,
                String::from_utf8_lossy(tag)
            );
        }
        if !changed {
            return Some(batch);
        }
        batch.with_packed_entries(Bytes::from(out), count)
    }

    fn start(self: Rc<Self>, emitter: Rc<dyn Emitter>) {
        if self.conf.flush_interval.is_zero() {
            return;
        }
        glommio::spawn_local(async move {
            while !self.stopped.get() {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                if !self.stopped.get() {
                    self.flush_timeouts(&*emitter);
                }
            }
        })
        .detach();
    }

    /// `flush_remaining_buffer`: every held stream, joined, at its first event's time.
    fn shutdown(&self, emitter: &dyn Emitter) {
        self.stopped.set(true);
        let streams: Vec<Stream> = self.streams.borrow_mut().drain().map(|(_, s)| s).collect();
        for s in streams {
            if let Some((t, rec)) = self.join(&s.events) {
                self.emit_timeout(&s, t, rec, "flush remaining buffer", emitter);
            }
        }
    }
}

#[cfg(test)]
mod tests;
