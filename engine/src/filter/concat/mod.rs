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
//! The docker/CRI partial-message modes, as the plugin's `process_partial*`:
//! - `partial_key`/`partial_value`: events whose `partial_key` equals `partial_value`
//!   are held; the next event that does not is joined with them. Events without
//!   `partial_key` pass through. `buffer_overflow_method` (`ignore`, `truncate`, `drop`,
//!   `new`) decides what a stream past `buffer_limit_size` does (the plugin's own byte
//!   count: keys plus values' `to_s`).
//! - `use_partial_metadata` (Docker's fluentd or journald log driver,
//!   `partial_metadata_format`): each partial message is its own stream (its
//!   `partial_id`), joined in `partial_ordinal` order when `partial_last` is `"true"`;
//!   events without the format's indicator field pass through; the metadata fields are
//!   removed unless `keep_partial_metadata`.
//! - `use_partial_cri_logtag`: CRI lines are held until one whose
//!   `partial_cri_logtag_key` starts with `F`; that key (unless `keep_partial_key`) and
//!   `partial_cri_stream_key` are removed from the joined event.
//!
//! Bounds (spate's, since lines come from clients): a stream holds at most
//! `buffer_limit_size` bytes of records (default 500 KiB; beyond it the held lines are
//! emitted joined, as if the multi-line event had ended; in `partial_key` mode this is
//! what `buffer_overflow_method ignore` does here, where the plugin holds without bound)
//! and at most 65536 streams are held per shard (an event of a new stream beyond that
//! passes through unjoined, with a warning).

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
use crate::ruby::accessor::{delete_nest, Step};
use crate::ruby::regex::RubyRegex;
use crate::ruby::value::write_to_s;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "concat",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "`key`, `separator`, `n_lines`, `multiline_start_regexp`, `multiline_end_regexp`, `continuous_line_regexp`, `stream_identity_key`, `flush_interval`, `timeout_label`, `use_first_timestamp`, `buffer_limit_size`, `partial_key`/`partial_value`/`keep_partial_key`, `buffer_overflow_method`, `use_partial_metadata`/`partial_metadata_format`/`keep_partial_metadata`, `use_partial_cri_logtag`/`partial_cri_logtag_key`/`partial_cri_stream_key` (held lines are in memory, as in fluentd)",
};

/// Streams held per shard.
const MAX_STREAMS: usize = 65536;

#[derive(Debug)]
enum Mode {
    Lines(usize),
    Regexp { start: Option<RubyRegex>, end: Option<RubyRegex>, cont: Option<RubyRegex> },
    Partial { key: Vec<u8>, value: Vec<u8>, keep: bool, overflow: Overflow },
    PartialMeta { fields: MetaFields, keep: bool },
    PartialCri { logtag_key: Option<Vec<u8>>, stream_key: Vec<u8>, keep: bool },
}

/// `buffer_overflow_method` (partial_key mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Ignore,
    Truncate,
    Drop,
    New,
}

/// The field names of a `partial_metadata_format`.
#[derive(Debug)]
struct MetaFields {
    message: &'static [u8],
    id: &'static [u8],
    ordinal: &'static [u8],
    last: &'static [u8],
    /// The field whose presence marks a partial message.
    indicator: &'static [u8],
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
    let n_lines = e.int("n_lines")?;
    let (start, end) = (slashed(e, "multiline_start_regexp")?, slashed(e, "multiline_end_regexp")?);
    let cont = slashed(e, "continuous_line_regexp")?;
    let partial_key = e.str("partial_key");
    let use_meta = e.bool("use_partial_metadata")?.unwrap_or(false);
    let use_cri = e.bool("use_partial_cri_logtag")?.unwrap_or(false);
    let regexp = start.is_some() || end.is_some();
    // The plugin's configure checks, in its order and words.
    let exclusive = [
        (n_lines.is_some() && regexp, "n_lines and multiline_start_regexp/multiline_end_regexp are exclusive"),
        (partial_key.is_some() && n_lines.is_some(), "partial_key and n_lines are exclusive"),
        (partial_key.is_some() && regexp, "partial_key and multiline_start_regexp/multiline_end_regexp are exclusive"),
        (
            partial_key.is_some() && e.str("partial_value").is_none(),
            "partial_value is required when partial_key is specified",
        ),
        (use_meta && n_lines.is_some(), "use_partial_metadata and n_lines are exclusive"),
        (use_meta && regexp, "use_partial_metadata and multiline_start_regexp/multiline_end_regexp are exclusive"),
        (use_meta && partial_key.is_some(), "use_partial_metadata and partial_key are exclusive"),
        (use_cri && n_lines.is_some(), "use_partial_cri_logtag and n_lines are exclusive"),
        (use_cri && regexp, "use_partial_cri_logtag and multiline_start_regexp/multiline_end_regexp are exclusive"),
        (use_cri && partial_key.is_some(), "use_partial_cri_logtag and partial_key are exclusive"),
    ];
    if n_lines.is_none() && !regexp && partial_key.is_none() && !use_meta && !use_cri {
        return Err(e.error(
            "Either n_lines, multiline_start_regexp, multiline_end_regexp, partial_key, use_partial_metadata or \
             use_partial_cri_logtag is required",
        ));
    }
    if let Some((_, m)) = exclusive.iter().find(|(bad, _)| *bad) {
        return Err(e.error(*m));
    }
    let overflow = match e.enum_of("buffer_overflow_method", &["ignore", "truncate", "drop", "new"])?.as_deref() {
        Some("truncate") => Overflow::Truncate,
        Some("drop") => Overflow::Drop,
        Some("new") => Overflow::New,
        _ => Overflow::Ignore,
    };
    let format =
        e.enum_of("partial_metadata_format", &["docker-fluentd", "docker-journald", "docker-journald-lowercase"])?;
    let keep = e.bool("keep_partial_key")?.unwrap_or(false);
    let mode = match n_lines {
        Some(n) if n >= 1 => Mode::Lines(n as usize),
        Some(n) => return Err(e.error(format!("n_lines must be at least 1, got {n}"))),
        None if partial_key.is_some() => Mode::Partial {
            key: partial_key.unwrap_or_default().as_bytes().to_vec(),
            value: e.str("partial_value").unwrap_or_default().as_bytes().to_vec(),
            keep,
            overflow,
        },
        None if use_meta => Mode::PartialMeta {
            fields: match format.as_deref() {
                Some("docker-journald") => MetaFields {
                    message: b"CONTAINER_PARTIAL_MESSAGE",
                    id: b"CONTAINER_PARTIAL_ID",
                    ordinal: b"CONTAINER_PARTIAL_ORDINAL",
                    last: b"CONTAINER_PARTIAL_LAST",
                    // The journald driver leaves CONTAINER_PARTIAL_MESSAGE off the last part.
                    indicator: b"CONTAINER_PARTIAL_ID",
                },
                Some("docker-journald-lowercase") => MetaFields {
                    message: b"container_partial_message",
                    id: b"container_partial_id",
                    ordinal: b"container_partial_ordinal",
                    last: b"container_partial_last",
                    indicator: b"container_partial_id",
                },
                _ => MetaFields {
                    message: b"partial_message",
                    id: b"partial_id",
                    ordinal: b"partial_ordinal",
                    last: b"partial_last",
                    indicator: b"partial_message",
                },
            },
            keep: e.bool("keep_partial_metadata")?.unwrap_or(false),
        },
        None if use_cri => Mode::PartialCri {
            logtag_key: e.str("partial_cri_logtag_key").map(|k| k.as_bytes().to_vec()),
            stream_key: e.str("partial_cri_stream_key").unwrap_or("stream").as_bytes().to_vec(),
            keep,
        },
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
    /// The plugin's `@buffer_size` (partial_key mode's overflow count).
    psize: usize,
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
enum NotText {
    #[error("concat: the value of {key:?} is {class}, not a String (Ruby raises TypeError in Regexp#match?)")]
    Class { key: String, class: &'static str },
    #[error("concat: the record has no String {0:?} (the CRI logtag; Ruby raises NoMethodError on its split)")]
    NoLogtag(String),
    #[error("concat: the partial buffer overflowed and held nothing to flush (the plugin raises on the empty buffer)")]
    EmptyFlush,
}

/// `rec` without `key` (Ruby's `Hash#delete`, through the record accessor's delete).
fn without(rec: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rec.len());
    match ValueRef::new(rec) {
        Some(v) if delete_nest(v, &[Step::Key(key.to_vec())], &mut out) => out,
        _ => rec.to_vec(),
    }
}

/// The plugin's `record_bytesize`: keys' bytes plus values' `to_s` bytes.
fn record_bytesize(rec: RecordRef<'_>, scratch: &mut Vec<u8>) -> usize {
    rec.fields()
        .map(|(k, v)| {
            scratch.clear();
            write_to_s(k, scratch);
            let kl = scratch.len();
            scratch.clear();
            write_to_s(v, scratch);
            kl + scratch.len()
        })
        .sum()
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
        // partial_metadata: the parts in `partial_ordinal.to_i` order.
        let mut order: Vec<&Held> = events.iter().collect();
        if let Mode::PartialMeta { fields, .. } = &self.conf.mode {
            let mut t = Vec::new();
            order.sort_by_key(|h| {
                t.clear();
                if let Some(v) = RecordRef::new(&h.record).and_then(|r| r.get(fields.ordinal)) {
                    write_to_s(v, &mut t);
                }
                crate::ruby::value::ruby_to_i(&t)
            });
        }
        for (i, h) in order.iter().enumerate() {
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
            None if !matches!(self.conf.mode, Mode::PartialMeta { .. }) => out.extend_from_slice(b"default"),
            None => {}
        }
        // partial_metadata: `"#{tag}:#{record[stream_identity_key]}#{record[partial_id]}"`.
        if let Mode::PartialMeta { fields, .. } = &self.conf.mode {
            if let Some(v) = rec.get(fields.id) {
                write_to_s(v, out);
            }
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
                None => Err(NotText::Class {
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
        // spate's memory bound: a stream never holds more than buffer_limit_size (in
        // partial_key mode, buffer_overflow_method other than ignore bounds it as the
        // plugin does).
        let plugin_bound = matches!(&c.mode, Mode::Partial { overflow, .. } if *overflow != Overflow::Ignore);
        if !plugin_bound && !s.events.is_empty() && s.bytes + rec.as_bytes().len() > c.buffer_limit {
            flush(s, outs);
        }
        // The partial modes drop their marker key from the joined record before the
        // plugin merges it into the completing record (`new_record.delete(...)`).
        let flush_without = |s: &mut Stream, outs: &mut Vec<Out>, key: Option<&[u8]>| {
            if let Some((t, r)) = self.join(&s.events) {
                let r = key.map_or(r.clone(), |k| without(&r, k));
                outs.push(Out::Joined(pick(t), r));
            }
            s.events.clear();
            s.bytes = 0;
            s.psize = 0;
        };
        match &c.mode {
            Mode::Partial { key, value, overflow, .. } => {
                let mut scratch = Vec::new();
                let size = record_bytesize(rec, &mut scratch);
                // `overflow?`: the count restarts when it would pass the limit.
                let over = if s.psize + size > c.buffer_limit {
                    s.psize = 0;
                    true
                } else {
                    s.psize += size;
                    false
                };
                let mut force = false;
                if over {
                    match overflow {
                        Overflow::Ignore => hold(s),
                        Overflow::Truncate | Overflow::New => force = true,
                        Overflow::Drop => {
                            s.events.clear();
                            s.bytes = 0;
                        }
                    }
                } else {
                    hold(s);
                }
                let is_partial = rec.get(key).and_then(|v| v.as_str()) == Some(&value[..]);
                if force || !is_partial {
                    if s.events.is_empty() {
                        return Err(NotText::EmptyFlush);
                    }
                    flush_without(s, outs, Some(key));
                }
                if force && *overflow == Overflow::New {
                    hold(s);
                    s.psize = size;
                    if !is_partial {
                        flush_without(s, outs, Some(key));
                    }
                }
            }
            Mode::PartialMeta { fields, .. } => {
                hold(s);
                if rec.get(fields.last).and_then(|v| v.as_str()) == Some(b"true") {
                    flush_without(s, outs, None);
                }
            }
            Mode::PartialCri { logtag_key, .. } => {
                // The plugin holds the record before it reads the logtag (and raises).
                hold(s);
                let tag = logtag_key.as_deref().and_then(|k| rec.get(k)).and_then(|v| v.as_str());
                let Some(tag) = tag else {
                    return Err(NotText::NoLogtag(
                        logtag_key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                    ));
                };
                if tag.split(|&b| b == b':').next() == Some(b"F") {
                    flush_without(s, outs, logtag_key.as_deref());
                }
            }
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
            // Events without `key` (and, in the partial modes, without their marker)
            // pass through.
            let marker: Option<&[u8]> = match &self.conf.mode {
                Mode::Partial { key, .. } => Some(key),
                Mode::PartialMeta { fields, .. } => Some(fields.indicator),
                _ => None,
            };
            if ev.record.get(&self.conf.key).is_none() || marker.is_some_and(|k| ev.record.get(k).is_none()) {
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
                m.insert(
                    ident.clone(),
                    Stream { tag: batch.tag.clone(), events: Vec::new(), bytes: 0, psize: 0, last: now },
                );
            }
            let Some(s) = m.get_mut(&ident) else { continue };
            s.last = now;
            outs.clear();
            changed = true;
            let r = self.process(s, ev.time, ev.record, &mut outs);
            // partial_metadata streams are one message each: forget them once joined.
            if matches!(self.conf.mode, Mode::PartialMeta { .. }) && s.events.is_empty() {
                m.remove(&ident);
            }
            // What `process` produced before failing (a size-bound flush) still goes out.
            if let Err(e) = r {
                errors += 1;
                first_err.get_or_insert(e);
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
                        // The partial modes' markers, from the merged record.
                        match &self.conf.mode {
                            Mode::Partial { key, keep: false, .. } => merged = without(&merged, key),
                            Mode::PartialMeta { fields, keep: false } => {
                                for k in [fields.message, fields.id, fields.ordinal, fields.last] {
                                    merged = without(&merged, k);
                                }
                            }
                            Mode::PartialCri { logtag_key, stream_key, keep } => {
                                if let (Some(k), false) = (logtag_key, keep) {
                                    merged = without(&merged, k);
                                }
                                merged = without(&merged, stream_key);
                            }
                            _ => {}
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
