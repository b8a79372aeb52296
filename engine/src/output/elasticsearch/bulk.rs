//! The Bulk API body encoder: a chunk's packed `[time, record]` entries straight to
//! NDJSON (`action\nsource\n` per document), as fluent-plugin-elasticsearch's
//! `write`/`process_message`/`append_record_to_messages` build it, without an
//! intermediate value per event: records are rendered from their msgpack bytes with
//! the plugin's changes (`@timestamp`, `tag_key`, `<metadata>` chunk id, removed keys,
//! `target_index_key`) applied while writing.
//!
//! Documents are grouped into one request per target index (fluentd's `RequestInfo`
//! key), in order of first appearance, and split when a request passes
//! `bulk_message_request_threshold`. Every action remembers the chunk entry it came
//! from, so a response's failed items can be retried or sent to the error path alone.
//!
//! Record changes follow Ruby Hash semantics: setting an existing key keeps its
//! position, a new key is appended, deleting and setting again appends. The changes are
//! a fixed list of operations known at configuration time ([`Ops`]), evaluated per key.
//!
//! Over 800 lines because the encoder and the item-to-entry bookkeeping the response
//! handling reads are one data structure; the response side is in its own file.

use std::ops::Range;

use spate_protocol::{EntriesFormat, EventTime, Events, RecordRef, ValueRef};

use super::conf::{DocConf, Flavor, WriteOp};
use super::timeparse::{parse_value, DateTime};
use crate::format::{strftime, Zone};

/// The chunk being encoded.
#[derive(Debug, Clone, Copy)]
pub struct ChunkCtx<'a> {
    pub tag: &'a [u8],
    /// Start of the chunk's time slice when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// Zone of the buffer's time slices (`timekey_use_utc`, `timekey_zone`).
    pub timekey_zone: Zone,
    /// Record-field chunk keys by name.
    pub vars: &'a [(String, String)],
    pub chunk_id: &'a [u8; 16],
}

impl<'a> ChunkCtx<'a> {
    /// The placeholder context of `chunk` (every HTTP-based output expands its
    /// `${tag}`/`${key}`/`%Y` placeholders from the same fields).
    pub fn of(chunk: &'a crate::buffer::chunk::Chunk, timekey_zone: Zone, vars: &'a [(String, String)]) -> Self {
        ChunkCtx { tag: &chunk.tag, timekey: chunk.timekey, timekey_zone, vars, chunk_id: &chunk.id }
    }
}

/// One bulk request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// `POST /<index>/_bulk` (`include_index_in_url`, data streams); `None`: `/_bulk`.
    pub index: Option<String>,
    pub body: Vec<u8>,
    /// Per action, in order: the chunk entry it encodes (byte range in the chunk data).
    pub items: Vec<Range<usize>>,
}

/// An event for the error path (`@ERROR`, `<secondary>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEvent {
    pub tag: Vec<u8>,
    pub time: EventTime,
    /// The record, msgpack.
    pub record: Vec<u8>,
    pub reason: String,
}

/// The result of encoding a chunk (or a subset of its entries).
#[derive(Debug, Default)]
pub struct Encoded {
    pub requests: Vec<Request>,
    /// Chunk events that could not be turned into documents, with why.
    pub failed: Vec<ErrorEvent>,
    /// The chunk entries of `failed` (byte ranges), in the same order.
    pub error_entries: Vec<Range<usize>>,
    /// New error events about documents that were still sent (an unparsable time:
    /// fluentd's `time_parse_error_tag` event).
    pub reports: Vec<ErrorEvent>,
    /// Records dropped because `write_operation` needs an `_id` they lack (fluentd
    /// drops them too, logging at debug level).
    pub missing_id: u64,
    pub events: u64,
}

/// `_type` in the action line.
#[derive(Debug, Clone, PartialEq)]
enum TypeField {
    Omit,
    Null,
    Str(String),
}

/// Placeholders expanded once per chunk.
#[derive(Debug, Clone)]
struct Expanded {
    index_name: String,
    logstash_prefix: String,
    logstash_dateformat: String,
    type_field: TypeField,
    pipeline: Option<String>,
    chunk_id_hex: [u8; 32],
    data_stream: Option<String>,
    /// Capacity for the chunk's first request body.
    body_hint: usize,
}

/// Expands fluentd's output placeholders (`extract_placeholders`): strftime directives
/// with the chunk's time slice (when `time` is a chunk key), `${tag}`, `${tag[N]}`,
/// `${chunk_id}` and record-field chunk keys.
pub fn expand(s: &str, ctx: &ChunkCtx<'_>) -> String {
    let timed = match ctx.timekey {
        Some(t) if s.contains('%') => {
            let mut o = Vec::new();
            strftime(&mut o, s, t, 0, ctx.timekey_zone);
            String::from_utf8_lossy(&o).into_owned()
        }
        _ => s.to_string(),
    };
    if !timed.contains("${") {
        return timed;
    }
    let id = hex(ctx.chunk_id);
    crate::buffer::placeholders::expand(
        &timed,
        &String::from_utf8_lossy(ctx.tag),
        std::str::from_utf8(&id).unwrap_or(""),
        ctx.vars,
    )
}

fn hex(id: &[u8; 16]) -> [u8; 32] {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut o = [0u8; 32];
    for (i, b) in id.iter().enumerate() {
        o[2 * i] = H[(b >> 4) as usize];
        o[2 * i + 1] = H[(b & 15) as usize];
    }
    o
}

/// The kinds of record changes, in the order fluent-plugin-elasticsearch applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OpKind {
    /// `<metadata> include_chunk_id`: `record[chunk_id_key] = chunk_id`.
    ChunkId,
    /// `record["@timestamp"] = ...` (logstash_format / include_timestamp).
    Timestamp,
    /// `record.delete(target_index_key)` (a top-level key).
    TargetIndex,
    /// `record[tag_key] = tag` (include_tag_key).
    Tag,
    /// `remove_keys`.
    Remove,
    /// update/upsert: `record.delete(remove_keys_on_update_key)`.
    RemoveOnUpdateKey,
}

/// The record changes a configuration makes, grouped by key.
#[derive(Debug, Clone, Default)]
pub struct Ops {
    /// Distinct keys the operations touch, with the indices (into `seq`) of the
    /// operations on each, in order.
    keys: Vec<(Vec<u8>, Vec<usize>)>,
    seq: Vec<OpKind>,
}

impl Ops {
    pub fn new(conf: &DocConf) -> Ops {
        let mut o = Ops::default();
        let mut add = |key: &[u8], kind: OpKind| {
            let i = o.seq.len();
            o.seq.push(kind);
            match o.keys.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => v.push(i),
                None => o.keys.push((key.to_vec(), vec![i])),
            }
        };
        if conf.data_stream.is_some() {
            // out_elasticsearch_data_stream#write: tag, then @timestamp, then remove_keys.
            if conf.include_tag_key {
                add(conf.tag_key.as_bytes(), OpKind::Tag);
            }
            add(b"@timestamp", OpKind::Timestamp);
            for k in &conf.remove_keys {
                add(k.as_bytes(), OpKind::Remove);
            }
            return o;
        }
        if let Some(k) = &conf.chunk_id_key {
            add(k.as_bytes(), OpKind::ChunkId);
        }
        if conf.logstash_format || conf.include_timestamp {
            add(b"@timestamp", OpKind::Timestamp);
        }
        if let Some([k]) = conf.target_index_key.as_deref() {
            add(k.as_bytes(), OpKind::TargetIndex);
        }
        if conf.include_tag_key {
            add(conf.tag_key.as_bytes(), OpKind::Tag);
        }
        for k in &conf.remove_keys {
            add(k.as_bytes(), OpKind::Remove);
        }
        if matches!(conf.write_operation, WriteOp::Update | WriteOp::Upsert) {
            if let Some(k) = &conf.remove_keys_on_update_key {
                add(k.as_bytes(), OpKind::RemoveOnUpdateKey);
            }
        }
        o
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|(k, _)| k == key)
    }
}

/// Which operations apply to this event.
#[derive(Debug, Clone, Copy, Default)]
struct Active {
    timestamp: bool,
    target_index: bool,
}

/// Where a key ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Replace(OpKind),
    Drop,
    /// Appended by the operation at this position in `Ops::seq`.
    Append(OpKind, usize),
}

impl Ops {
    /// The fate of key `ki`, starting present (a record key) or absent, applying the
    /// operations before `stop` (an `OpKind` that ends the simulation, exclusive).
    fn fate(&self, ki: usize, present: bool, act: Active, stop: Option<OpKind>) -> Fate {
        let mut f = if present { Fate::Keep } else { Fate::Drop };
        for &i in &self.keys[ki].1 {
            let kind = self.seq[i];
            if Some(kind) == stop || (stop == Some(OpKind::Remove) && kind == OpKind::RemoveOnUpdateKey) {
                break;
            }
            let applies = match kind {
                OpKind::Timestamp => act.timestamp,
                OpKind::TargetIndex => act.target_index,
                _ => true,
            };
            if !applies {
                continue;
            }
            f = match kind {
                OpKind::TargetIndex | OpKind::Remove | OpKind::RemoveOnUpdateKey => Fate::Drop,
                set => match f {
                    Fate::Keep | Fate::Replace(_) => Fate::Replace(set),
                    Fate::Drop | Fate::Append(..) => Fate::Append(set, i),
                },
            };
        }
        f
    }
}

/// Per-encoder scratch space, reused across events and chunks.
#[derive(Debug, Default)]
pub struct Scratch {
    ts: Vec<u8>,
    index: Vec<u8>,
    flat: Vec<u8>,
    tmp: Vec<u8>,
    /// The second (and zone) `ts_head`/`ts_zone` hold: the `@timestamp` text up to the
    /// seconds and its offset, reused while events share a second.
    ts_key: Option<(i64, Zone)>,
    ts_head: Vec<u8>,
    ts_zone: Vec<u8>,
    /// The second (and zone) `index_text` was made for (logstash index names).
    index_key: Option<(i64, Zone)>,
    index_text: Vec<u8>,
    render: RenderScratch,
}

#[derive(Debug, Default)]
struct RenderScratch {
    seen: Vec<bool>,
    appended: Vec<(usize, usize, OpKind)>,
}

/// A chunk encoder for one configuration and cluster version.
pub struct Encoder<'c> {
    pub conf: &'c DocConf,
    pub ops: &'c Ops,
    /// The cluster's major version (detected, or `default_elasticsearch_version`).
    pub major: u32,
}

struct Group {
    index: Vec<u8>,
    req: Request,
}

/// Values the record changes write.
struct Vals<'a> {
    tag: &'a [u8],
    chunk_id: &'a [u8],
    ts: &'a [u8],
}

impl Vals<'_> {
    fn of(&self, k: OpKind) -> &[u8] {
        match k {
            OpKind::Tag => self.tag,
            OpKind::ChunkId => self.chunk_id,
            _ => self.ts,
        }
    }
}

impl Encoder<'_> {
    /// The chunk's expanded placeholders; `data_len`: its entries' bytes.
    fn expanded(&self, ctx: &ChunkCtx<'_>, data_len: usize) -> Expanded {
        let c = self.conf;
        let type_field = match c.flavor {
            Flavor::OpenSearch => {
                if c.suppress_type_name || self.major >= 2 {
                    TypeField::Omit
                } else {
                    TypeField::Str("_doc".into())
                }
            }
            Flavor::Elasticsearch => {
                let configured = c.type_name.as_deref().map(|t| expand(t, ctx));
                if self.major >= 8 {
                    TypeField::Omit
                } else if c.suppress_type_name && self.major == 7 {
                    TypeField::Null
                } else if self.major == 7 {
                    TypeField::Str("_doc".into())
                } else {
                    configured.map_or(TypeField::Null, TypeField::Str)
                }
            }
        };
        Expanded {
            index_name: expand(&c.index_name, ctx),
            logstash_prefix: expand(&c.logstash_prefix, ctx),
            logstash_dateformat: expand(&c.logstash_dateformat, ctx),
            type_field,
            pipeline: c.pipeline.as_deref().map(|p| expand(p, ctx)),
            chunk_id_hex: hex(ctx.chunk_id),
            data_stream: c.data_stream.as_ref().map(|d| expand(&d.name, ctx)),
            // Untouched capacity costs no memory: 2x the msgpack covers JSON plus the
            // action lines for usual records (a bigger body grows as any Vec).
            body_hint: data_len.saturating_mul(2).min(256 << 20),
        }
    }

    /// Encodes the entries of `data` (packed `[time, record]`); with `only`, just the
    /// entries whose byte ranges are listed (a retry of failed items).
    pub fn encode(&self, ctx: &ChunkCtx<'_>, data: &[u8], only: Option<&[Range<usize>]>, s: &mut Scratch) -> Encoded {
        let x = self.expanded(ctx, data.len());
        let mut out = Encoded::default();
        let mut groups: Vec<Group> = Vec::new();
        let base = data.as_ptr() as usize;
        let mut next_only = 0usize;
        for ev in Events::new(data, EntriesFormat::Packed) {
            let start = ev.raw.as_ptr() as usize - base;
            let range = start..start + ev.raw.len();
            if let Some(list) = only {
                // `only` is sorted (failed items keep their order in the chunk).
                while next_only < list.len() && list[next_only].start < range.start {
                    next_only += 1;
                }
                if list.get(next_only) != Some(&range) {
                    continue;
                }
            }
            out.events += 1;
            if let Err(reason) = self.event(ctx, &x, ev.time, ev.record, range.clone(), s, &mut groups, &mut out) {
                out.failed.push(ErrorEvent {
                    tag: ctx.tag.to_vec(),
                    time: ev.time,
                    record: ev.record.as_bytes().to_vec(),
                    reason,
                });
                out.error_entries.push(range);
            }
        }
        for g in groups {
            if !g.req.items.is_empty() {
                out.requests.push(g.req);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        ctx: &ChunkCtx<'_>,
        x: &Expanded,
        time: EventTime,
        rec: RecordRef<'_>,
        range: Range<usize>,
        s: &mut Scratch,
        groups: &mut Vec<Group>,
        out: &mut Encoded,
    ) -> Result<(), String> {
        let c = self.conf;
        let mut flat = std::mem::take(&mut s.flat);
        let rec = match &c.flatten_hashes {
            Some(sep) if c.data_stream.is_none() => {
                flat.clear();
                flatten(rec, sep.as_bytes(), &mut flat, &mut s.tmp);
                match RecordRef::new(&flat) {
                    Some(r) => r,
                    None => rec,
                }
            }
            _ => rec,
        };
        let r = self.event_in(ctx, x, time, rec, range, s, groups, out);
        s.flat = flat;
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn event_in(
        &self,
        ctx: &ChunkCtx<'_>,
        x: &Expanded,
        time: EventTime,
        rec: RecordRef<'_>,
        range: Range<usize>,
        s: &mut Scratch,
        groups: &mut Vec<Group>,
        out: &mut Encoded,
    ) -> Result<(), String> {
        let c = self.conf;
        let mut act = Active::default();
        s.ts.clear();
        s.index.clear();
        let event_dt = || DateTime { sec: time.sec as i64, nsec: time.nsec, zone: Zone::Local };
        if let Some(ds) = &x.data_stream {
            // Data streams: @timestamp from the event time unless the record has one.
            if rec.get(b"@timestamp").is_none() {
                act.timestamp = true;
                self.timestamp(event_dt(), s);
            }
            s.index.extend_from_slice(ds.as_bytes());
        } else {
            let mut dt = None;
            if c.logstash_format || c.include_timestamp {
                let ts_val = rec.get(b"@timestamp");
                let tk_val = match (&c.time_key, ts_val) {
                    (Some(k), None) => rec.get(k.as_bytes()),
                    _ => None,
                };
                let parsed = match ts_val.or(tk_val) {
                    Some(v) => Some(match parse_value(v, c.time_key_format.as_ref(), &mut s.tmp) {
                        Some(d) => d,
                        None => {
                            out.reports.push(self.time_error(ctx, time, v));
                            event_dt()
                        }
                    }),
                    None => None,
                };
                let d = parsed.unwrap_or_else(event_dt);
                if ts_val.is_none() && (tk_val.is_none() || !c.time_key_exclude_timestamp) {
                    act.timestamp = true;
                    self.timestamp(d, s);
                }
                dt = Some(d);
            }
            // target_index_key: the record's value, removed from the record.
            let mut from_record = false;
            if let Some(path) = &c.target_index_key {
                if let Some(v) = target_value(rec, path) {
                    let Some(t) = v.as_str() else {
                        return Err(format!("target_index_key {}: the value is not a string", path.join(".")));
                    };
                    downcase_into(t, &mut s.index);
                    from_record = true;
                    act.target_index = true;
                }
            }
            if !from_record {
                if c.logstash_format {
                    let d = dt.unwrap_or_else(event_dt);
                    let d = if c.utc_index { d.utc() } else { d };
                    self.logstash_index(x, d, s);
                } else {
                    downcase_into(x.index_name.as_bytes(), &mut s.index);
                }
            }
        }
        let vals = Vals { tag: ctx.tag, chunk_id: &x.chunk_id_hex, ts: &s.ts };
        // Metadata from record accessors, evaluated before remove_keys.
        let id = c.id_key.as_ref().and_then(|a| self.meta_value(a, rec, act));
        let parent = c.parent_key.as_ref().and_then(|a| self.meta_value(a, rec, act));
        let routing = c.routing_key.as_ref().and_then(|a| self.meta_value(a, rec, act));
        let op = if c.data_stream.is_some() { WriteOp::Create } else { c.write_operation };
        let needs_id = c.data_stream.is_none() && op != WriteOp::Index;
        if needs_id && id.is_none() {
            if c.emit_error_for_missing_id {
                return Err(format!("Missing '_id' field. Write operation is {}", op.name()));
            }
            out.missing_id += 1;
            return Ok(());
        }
        // remove_keys_on_update: keys from the record (an array) or the configuration.
        let doc_keys = if matches!(op, WriteOp::Update | WriteOp::Upsert) {
            match c.remove_keys_on_update_key.as_deref().and_then(|k| rec.get(k.as_bytes())) {
                Some(v) if !v.is_nil() => match v.as_array() {
                    Some(_) => DocKeys::Rec(v),
                    None => return Err("remove_keys_on_update_key: the value is not an array".to_string()),
                },
                _ => DocKeys::Conf(&c.remove_keys_on_update),
            }
        } else {
            DocKeys::Conf(&[])
        };
        // The request this document goes to.
        let gi = match groups.iter().position(|g| g.index == s.index) {
            Some(i) => i,
            None => {
                let url_index = if c.include_index_in_url || c.data_stream.is_some() {
                    Some(String::from_utf8_lossy(&s.index).into_owned())
                } else {
                    None
                };
                // The first request gets room for about the whole chunk as JSON
                // (`body_hint`), so its body is not copied at every doubling.
                let body = if groups.is_empty() { Vec::with_capacity(x.body_hint) } else { Vec::new() };
                groups.push(Group {
                    index: s.index.clone(),
                    req: Request { index: url_index, body, ..Default::default() },
                });
                groups.len() - 1
            }
        };
        if let Some(limit) = c.bulk_message_request_threshold {
            if groups[gi].req.body.len() > limit {
                // fluentd sends every pending request when one passes the threshold.
                for g in groups.iter_mut() {
                    if !g.req.items.is_empty() {
                        let index = g.req.index.clone();
                        out.requests.push(std::mem::replace(&mut g.req, Request { index, ..Default::default() }));
                    }
                }
            }
        }
        let req = &mut groups[gi].req;
        let b = &mut req.body;
        // Action line.
        b.extend_from_slice(b"{\"");
        b.extend_from_slice(op.action().as_bytes());
        b.extend_from_slice(b"\":{");
        let mut first = true;
        let mut key = |b: &mut Vec<u8>, k: &str| {
            if !first {
                b.push(b',');
            }
            first = false;
            b.push(b'"');
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(b"\":");
        };
        if c.data_stream.is_none() {
            if !c.include_index_in_url {
                key(b, "_index");
                spate_protocol::event::write_json_str(&s.index, b);
            }
            match &x.type_field {
                TypeField::Omit => {}
                TypeField::Null => {
                    key(b, "_type");
                    b.extend_from_slice(b"null");
                }
                TypeField::Str(t) => {
                    key(b, "_type");
                    spate_protocol::event::write_json_str(t.as_bytes(), b);
                }
            }
            if let Some(p) = &x.pipeline {
                key(b, "pipeline");
                spate_protocol::event::write_json_str(p.as_bytes(), b);
            }
        }
        if let Some(v) = id {
            key(b, "_id");
            v.write_json(b, &vals);
        }
        if c.data_stream.is_none() {
            if let Some(v) = parent {
                key(b, "_parent");
                v.write_json(b, &vals);
            }
            if let Some(v) = routing {
                key(b, self.routing_name());
                v.write_json(b, &vals);
            }
        }
        b.extend_from_slice(b"}}\n");
        // Source line.
        let nested = match (&c.target_index_key, act.target_index) {
            (Some(p), true) if p.len() > 1 => Some(p.as_slice()),
            _ => None,
        };
        let r = Render { ops: self.ops, act, vals: &vals, nested };
        match op {
            WriteOp::Index | WriteOp::Create => r.record(b, rec, DocKeys::Conf(&[]), &mut s.render),
            WriteOp::Update | WriteOp::Upsert => {
                let removes_some = doc_keys.any(|k| r.present(rec, k));
                if c.suppress_doc_wrap {
                    r.record(b, rec, doc_keys, &mut s.render);
                } else {
                    b.extend_from_slice(b"{\"doc\":");
                    r.record(b, rec, doc_keys, &mut s.render);
                    if op == WriteOp::Upsert {
                        if removes_some {
                            b.extend_from_slice(b",\"upsert\":");
                            r.record(b, rec, DocKeys::Conf(&[]), &mut s.render);
                        } else {
                            b.extend_from_slice(b",\"doc_as_upsert\":true");
                        }
                    }
                    b.push(b'}');
                }
            }
        }
        b.push(b'\n');
        req.items.push(range);
        Ok(())
    }

    fn routing_name(&self) -> &'static str {
        match self.conf.flavor {
            Flavor::Elasticsearch if self.major < 7 => "_routing",
            _ => "routing",
        }
    }

    /// `@timestamp`: `dt.iso8601(time_precision)`, cached per second.
    fn timestamp(&self, dt: DateTime, s: &mut Scratch) {
        let p = self.conf.time_precision;
        if s.ts_key != Some((dt.sec, dt.zone)) {
            s.ts_head.clear();
            strftime(&mut s.ts_head, "%Y-%m-%dT%H:%M:%S", dt.sec, 0, dt.zone);
            s.ts_zone.clear();
            strftime(&mut s.ts_zone, "%:z", dt.sec, 0, dt.zone);
            s.ts_key = Some((dt.sec, dt.zone));
        }
        s.ts.extend_from_slice(&s.ts_head);
        if p > 0 {
            let mut frac = [b'0'; 9];
            let mut n = dt.nsec;
            for d in frac.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            s.ts.push(b'.');
            s.ts.extend_from_slice(&frac[..p.min(9) as usize]);
            s.ts.extend(std::iter::repeat_n(b'0', p.saturating_sub(9) as usize));
        }
        s.ts.extend_from_slice(&s.ts_zone);
    }

    /// `"#{logstash_prefix}#{separator}#{dt.strftime(logstash_dateformat)}"`, lowercase,
    /// cached per second.
    fn logstash_index(&self, x: &Expanded, dt: DateTime, s: &mut Scratch) {
        if s.index_key != Some((dt.sec, dt.zone)) {
            s.tmp.clear();
            s.tmp.extend_from_slice(x.logstash_prefix.as_bytes());
            s.tmp.extend_from_slice(self.conf.logstash_prefix_separator.as_bytes());
            strftime(&mut s.tmp, &x.logstash_dateformat, dt.sec, dt.nsec, dt.zone);
            s.index_text.clear();
            downcase_into(&s.tmp, &mut s.index_text);
            s.index_key = Some((dt.sec, dt.zone));
        }
        s.index.extend_from_slice(&s.index_text);
    }

    fn time_error(&self, ctx: &ChunkCtx<'_>, time: EventTime, v: ValueRef<'_>) -> ErrorEvent {
        use spate_protocol::encode::raw;
        let c = self.conf;
        let mut r = Vec::new();
        raw::map_header(&mut r, 4);
        raw::str(&mut r, b"tag");
        raw::str(&mut r, ctx.tag);
        raw::str(&mut r, b"time");
        raw::event_time(&mut r, time);
        raw::str(&mut r, b"format");
        match &c.time_key_format {
            Some(p) => raw::str(&mut r, p.format.as_bytes()),
            None => raw::nil(&mut r),
        }
        raw::str(&mut r, b"value");
        r.extend_from_slice(v.as_bytes());
        let mut text = Vec::new();
        v.write_json(&mut text);
        ErrorEvent {
            tag: c.time_parse_error_tag.as_bytes().to_vec(),
            time: EventTime::now(),
            record: r,
            reason: format!("invalid time {}: not parsable", String::from_utf8_lossy(&text)),
        }
    }

    /// `record_accessor.call(record)` on the changed record (before remove_keys);
    /// `None` for nil or false.
    fn meta_value<'r>(
        &self,
        a: &crate::ruby::accessor::Accessor,
        rec: RecordRef<'r>,
        act: Active,
    ) -> Option<MetaVal<'r>> {
        use crate::ruby::accessor::{Dug, Step};
        if let Some(Step::Key(k)) = a.steps.first() {
            if let Some(ki) = self.ops.find(k) {
                let present = rec.get(k).is_some();
                match self.ops.fate(ki, present, act, Some(OpKind::Remove)) {
                    Fate::Keep => {}
                    Fate::Drop => return None,
                    // A string set by the plugin: nothing below it.
                    Fate::Replace(kind) | Fate::Append(kind, _) => {
                        return (a.steps.len() == 1).then_some(MetaVal::Set(kind));
                    }
                }
            }
        }
        match self.conf.data_stream {
            // The data stream plugin reads `record[id_key]` (a plain key).
            Some(_) => {
                let k = match a.steps.as_slice() {
                    [Step::Key(k)] => k,
                    _ => return None,
                };
                rec.get(k).filter(|v| truthy(*v)).map(MetaVal::Rec)
            }
            None => match a.dig(rec) {
                Dug::Value(v) if truthy(v) => Some(MetaVal::Rec(v)),
                _ => None,
            },
        }
    }
}

fn truthy(v: ValueRef<'_>) -> bool {
    !v.is_nil() && v.as_bool() != Some(false)
}

#[derive(Debug, Clone, Copy)]
enum MetaVal<'a> {
    Rec(ValueRef<'a>),
    Set(OpKind),
}

impl MetaVal<'_> {
    fn write_json(&self, b: &mut Vec<u8>, vals: &Vals<'_>) {
        match self {
            MetaVal::Rec(v) => v.write_json(b),
            MetaVal::Set(k) => spate_protocol::event::write_json_str(vals.of(*k), b),
        }
    }
}

/// `get_parent_of(record, path)` then `parent[child]` when truthy.
fn target_value<'a>(rec: RecordRef<'a>, path: &[String]) -> Option<ValueRef<'a>> {
    let (child, parents) = path.split_last()?;
    let mut cur = rec;
    for p in parents {
        cur = cur.get(p.as_bytes())?.as_map()?;
    }
    cur.get(child.as_bytes()).filter(|v| truthy(*v))
}

/// Ruby's `String#downcase` (Unicode), ASCII fast path.
fn downcase_into(s: &[u8], out: &mut Vec<u8>) {
    if s.is_ascii() {
        out.extend(s.iter().map(u8::to_ascii_lowercase));
    } else {
        out.extend_from_slice(String::from_utf8_lossy(s).to_lowercase().as_bytes());
    }
}

/// Keys `remove_keys_on_update` drops from `doc`.
#[derive(Debug, Clone, Copy)]
enum DocKeys<'a> {
    Conf(&'a [String]),
    Rec(ValueRef<'a>),
}

impl DocKeys<'_> {
    fn contains(&self, k: &[u8]) -> bool {
        match self {
            DocKeys::Conf(l) => l.iter().any(|x| x.as_bytes() == k),
            DocKeys::Rec(v) => v.as_array().is_some_and(|mut it| it.any(|x| x.as_str() == Some(k))),
        }
    }
    fn any(&self, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            DocKeys::Conf(l) => l.iter().any(|x| f(x.as_bytes())),
            DocKeys::Rec(v) => v.as_array().is_some_and(|mut it| it.any(|x| x.as_str().is_some_and(&mut f))),
        }
    }
}

/// Writes a record with the configuration's changes applied.
struct Render<'a> {
    ops: &'a Ops,
    act: Active,
    vals: &'a Vals<'a>,
    /// `target_index_key` path to remove inside a nested map.
    nested: Option<&'a [String]>,
}

impl Render<'_> {
    /// Whether `key` is in the record once every change is applied.
    fn present(&self, rec: RecordRef<'_>, key: &[u8]) -> bool {
        let in_rec = rec.get(key).is_some();
        match self.ops.find(key) {
            None => in_rec,
            Some(ki) => !matches!(self.ops.fate(ki, in_rec, self.act, None), Fate::Drop),
        }
    }

    fn record(&self, b: &mut Vec<u8>, rec: RecordRef<'_>, doc: DocKeys<'_>, s: &mut RenderScratch) {
        let no_doc = matches!(doc, DocKeys::Conf(l) if l.is_empty());
        if self.ops.keys.is_empty() && self.nested.is_none() && no_doc {
            rec.write_json(b);
            return;
        }
        s.seen.clear();
        s.seen.resize(self.ops.keys.len(), false);
        s.appended.clear();
        b.push(b'{');
        let mut first = true;
        for (k, v) in rec.fields() {
            let ks = k.as_str();
            if ks.is_some_and(|ks| doc.contains(ks)) {
                continue;
            }
            let ki = ks.and_then(|ks| self.ops.find(ks));
            let fate = match ki {
                Some(ki) => {
                    s.seen[ki] = true;
                    self.ops.fate(ki, true, self.act, None)
                }
                None => Fate::Keep,
            };
            match fate {
                Fate::Drop => continue,
                Fate::Append(kind, seq) => {
                    // Deleted and set again: it moves to the end (once).
                    if let Some(ki) = ki {
                        if !s.appended.iter().any(|a| a.1 == ki) {
                            s.appended.push((seq, ki, kind));
                        }
                    }
                    continue;
                }
                Fate::Keep | Fate::Replace(_) => {}
            }
            if !first {
                b.push(b',');
            }
            first = false;
            match ks {
                Some(t) => spate_protocol::event::write_json_str(t, b),
                None => {
                    let mut t = Vec::new();
                    k.write_json(&mut t);
                    spate_protocol::event::write_json_str(&t, b);
                }
            }
            b.push(b':');
            match fate {
                Fate::Replace(kind) => spate_protocol::event::write_json_str(self.vals.of(kind), b),
                _ => match self.nested {
                    Some([head, rest @ ..]) if ks == Some(head.as_bytes()) => write_without(b, v, rest),
                    _ => v.write_json(b),
                },
            }
        }
        for (ki, seen) in s.seen.iter().enumerate() {
            if !*seen {
                if let Fate::Append(kind, seq) = self.ops.fate(ki, false, self.act, None) {
                    s.appended.push((seq, ki, kind));
                }
            }
        }
        s.appended.sort_unstable();
        for &(_, ki, kind) in s.appended.iter() {
            let k = &self.ops.keys[ki].0;
            if doc.contains(k) {
                continue;
            }
            if !first {
                b.push(b',');
            }
            first = false;
            spate_protocol::event::write_json_str(k, b);
            b.push(b':');
            spate_protocol::event::write_json_str(self.vals.of(kind), b);
        }
        b.push(b'}');
    }
}

/// A value as JSON without the key at `path` (which exists: the caller checked).
fn write_without(b: &mut Vec<u8>, v: ValueRef<'_>, path: &[String]) {
    let (Some(m), Some((head, rest))) = (v.as_map(), path.split_first()) else {
        v.write_json(b);
        return;
    };
    // Ruby's Hash#[] sees the last of duplicate keys: only that one is the target.
    let last = m.fields().enumerate().filter(|(_, (k, _))| k.as_str() == Some(head.as_bytes())).last().map(|(i, _)| i);
    b.push(b'{');
    let mut first = true;
    for (i, (k, val)) in m.fields().enumerate() {
        let target = Some(i) == last;
        if target && rest.is_empty() {
            continue;
        }
        if !first {
            b.push(b',');
        }
        first = false;
        match k.as_str() {
            Some(t) => spate_protocol::event::write_json_str(t, b),
            None => {
                let mut t = Vec::new();
                k.write_json(&mut t);
                spate_protocol::event::write_json_str(&t, b);
            }
        }
        b.push(b':');
        if target {
            write_without(b, val, rest);
        } else {
            val.write_json(b);
        }
    }
    b.push(b'}');
}

/// fluent-plugin-elasticsearch's `flatten_record`: nested maps become `a<sep>b` keys;
/// arrays and scalars are kept. Writes a msgpack map into `out`.
fn flatten(rec: RecordRef<'_>, sep: &[u8], out: &mut Vec<u8>, prefix: &mut Vec<u8>) {
    // Header patched after counting: map32.
    let at = out.len();
    out.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
    prefix.clear();
    let mut n = 0u32;
    flatten_into(rec, sep, out, prefix, &mut n, 0);
    out[at + 1..at + 5].copy_from_slice(&n.to_be_bytes());
}

fn flatten_into(m: RecordRef<'_>, sep: &[u8], out: &mut Vec<u8>, prefix: &mut Vec<u8>, n: &mut u32, depth: usize) {
    use spate_protocol::encode::raw;
    for (k, v) in m.fields() {
        let keep = prefix.len();
        if keep > 0 {
            prefix.extend_from_slice(sep);
        }
        match k.as_str() {
            Some(s) => prefix.extend_from_slice(s),
            None => crate::ruby::value::write_to_s(k, prefix),
        }
        match v.as_map() {
            Some(inner) if depth < 64 => flatten_into(inner, sep, out, prefix, n, depth + 1),
            _ => {
                raw::str(out, prefix);
                out.extend_from_slice(v.as_bytes());
                *n += 1;
            }
        }
        prefix.truncate(keep);
    }
}

impl WriteOp {
    /// The bulk action (`upsert` is an `update` with `doc_as_upsert`/`upsert`).
    pub fn action(self) -> &'static str {
        match self {
            WriteOp::Index => "index",
            WriteOp::Create => "create",
            WriteOp::Update | WriteOp::Upsert => "update",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            WriteOp::Index => "index",
            WriteOp::Create => "create",
            WriteOp::Update => "update",
            WriteOp::Upsert => "upsert",
        }
    }
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
