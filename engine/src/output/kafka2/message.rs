//! out_kafka2's messages, built from a chunk's events exactly as fluent-plugin-kafka's
//! `Kafka2Output#write` builds them:
//!
//! - topic (once per chunk): `topic` with placeholders (`${tag}`, chunk keys, time
//!   formats with a time chunk key), else the chunk's `topic_key` chunk-key value, else
//!   `default_topic`, else the tag;
//! - per event: `partition` from the record's `partition_key` field (or
//!   `default_partition`), a partition key from `partition_key_key` (or
//!   `default_partition_key`), the message key from `message_key_key` (or
//!   `default_message_key`), each removed from the record when its `exclude_*` flag is
//!   set; `headers` plus `headers_from_record` (record accessors); `exclude_fields`
//!   removed; `record_key` picks the part of the record that is sent; then `<format>`
//!   (json by default, without a newline as fluent-plugin-kafka writes it);
//! - a payload over `max_send_limit_bytes` is skipped with a warning.
//!
//! Partitioning follows ruby-kafka's partitioner: an explicit partition wins, else the
//! partition key's hash (crc32, or murmur2 with `partitioner_hash_function murmur2`)
//! modulo the partition count, else the message key's (librdkafka's `consistent_random`
//! and `murmur2_random` partitioners compute the same), else a random partition.
//!
//! Building runs on the producer thread, into reused scratch buffers (librdkafka copies
//! what it is given).

use rdkafka::message::{Header, OwnedHeaders};
use spate_protocol::encode::raw;
use spate_protocol::{Event, RecordRef};

use crate::config::{ConfigError, Element};
use crate::format::{strftime, FormatConf, Formatter, Zone};
use crate::ruby::accessor::{Accessor, Dug, Step};
use crate::ruby::value::write_to_s;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    Crc32,
    Murmur2,
}

impl HashFn {
    /// ruby-kafka's partition for a key (Zlib.crc32, or Java-compatible murmur2).
    pub fn partition(self, key: &[u8], count: i32) -> i32 {
        if count <= 0 {
            return 0;
        }
        match self {
            HashFn::Crc32 => (crc32fast::hash(key) % count as u32) as i32,
            HashFn::Murmur2 => ((murmur2(key) & 0x7fff_ffff) % count as u32) as i32,
        }
    }

    /// The librdkafka partitioner computing the same for message keys.
    pub fn rdkafka_partitioner(self) -> &'static str {
        match self {
            HashFn::Crc32 => "consistent_random",
            HashFn::Murmur2 => "murmur2_random",
        }
    }
}

/// Kafka's (Java client's) murmur2, seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let r = chunks.remainder();
    if r.len() >= 3 {
        h ^= (r[2] as u32) << 16;
    }
    if r.len() >= 2 {
        h ^= (r[1] as u32) << 8;
    }
    if !r.is_empty() {
        h ^= r[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// out_kafka2's message parameters.
#[derive(Debug, Clone)]
pub struct MessageConf {
    pub topic: Option<String>,
    pub topic_key: String,
    pub default_topic: Option<String>,
    pub message_key_key: String,
    pub default_message_key: Option<String>,
    pub partition_key_key: String,
    pub default_partition_key: Option<String>,
    pub partition_key: String,
    pub default_partition: Option<i32>,
    pub hash: HashFn,
    pub(crate) record_key: Option<Accessor>,
    pub exclude_topic_key: bool,
    pub exclude_partition_key: bool,
    pub exclude_partition: bool,
    pub exclude_message_key: bool,
    pub(crate) exclude_fields: Vec<Accessor>,
    pub use_event_time: bool,
    pub headers: Vec<(String, String)>,
    pub(crate) headers_from_record: Vec<(String, Accessor)>,
    pub max_send_limit_bytes: Option<usize>,
    /// `<format>`, without `<inject>`: injection is done first (below).
    pub format: FormatConf,
    /// `<inject>` as a msgpack "formatter": fluent-plugin-kafka injects before it reads
    /// the topic, partition and key fields, so `tag_key` can key messages by tag.
    pub inject: Option<FormatConf>,
}

fn accessor(e: &Element, param: &str, v: &str) -> Result<Accessor, ConfigError> {
    Accessor::parse(v).map_err(|err| e.error(format!("{param} {v:?}: {err}")))
}

impl MessageConf {
    pub fn parse(e: &Element, hostname: &str) -> Result<MessageConf, ConfigError> {
        let format = crate::format::format_conf(e, "json", hostname)?;
        MessageConf::parse_with(e, format)
    }

    /// [`MessageConf::parse`] with the formatting (and `<inject>`) decided by the caller
    /// (kafka_buffered's `output_data_type`).
    pub fn parse_with(e: &Element, mut format: FormatConf) -> Result<MessageConf, ConfigError> {
        let hash = match e.str("partitioner_hash_function") {
            None | Some("crc32") => HashFn::Crc32,
            Some("murmur2") => HashFn::Murmur2,
            Some(o) => return Err(e.error(format!("partitioner_hash_function {o:?}: expected crc32 or murmur2"))),
        };
        let default_partition = match e.int("default_partition")? {
            None => None,
            Some(p) if (0..=i32::MAX as i64).contains(&p) => Some(p as i32),
            Some(p) => return Err(e.error(format!("default_partition {p}: expected a partition number"))),
        };
        let mut exclude_fields = Vec::new();
        for f in e.array("exclude_fields")?.unwrap_or_default() {
            let a = accessor(e, "exclude_fields", &f)?;
            if a.steps.iter().any(|s| matches!(s, Step::Index(_))) {
                return Err(e.error(format!("exclude_fields {f:?}: array indexes are not supported by spate")));
            }
            exclude_fields.push(a);
        }
        let mut headers_from_record = Vec::new();
        for (k, v) in e.hash("headers_from_record")?.unwrap_or_default() {
            headers_from_record.push((k, accessor(e, "headers_from_record", &v)?));
        }
        // fluent-plugin-kafka serializes json and ltsv itself (Oj.dump, LTSV.dump): no
        // newline. Other formatters keep theirs (formatter_create).
        if matches!(format.formatter, Formatter::Json | Formatter::Ltsv(_)) {
            format.newline = "";
        }
        let max_send_limit_bytes = e.size("max_send_limit_bytes")?.map(|v| v as usize);
        let inject = (!format.inject.is_empty()).then(|| FormatConf {
            formatter: Formatter::Msgpack,
            newline: "",
            inject: format.inject.clone(),
        });
        format.inject = crate::format::Inject::default();
        Ok(MessageConf {
            topic: e.str("topic").map(str::to_string),
            topic_key: e.str("topic_key").unwrap_or("topic").to_string(),
            default_topic: e.str("default_topic").map(str::to_string),
            message_key_key: e.str("message_key_key").unwrap_or("message_key").to_string(),
            default_message_key: e.str("default_message_key").map(str::to_string),
            partition_key_key: e.str("partition_key_key").unwrap_or("partition_key").to_string(),
            default_partition_key: e.str("default_partition_key").map(str::to_string),
            partition_key: e.str("partition_key").unwrap_or("partition").to_string(),
            default_partition,
            hash,
            record_key: e.str("record_key").map(|v| accessor(e, "record_key", v)).transpose()?,
            exclude_topic_key: e.bool("exclude_topic_key")?.unwrap_or(false),
            exclude_partition_key: e.bool("exclude_partition_key")?.unwrap_or(false),
            exclude_partition: e.bool("exclude_partition")?.unwrap_or(false),
            exclude_message_key: e.bool("exclude_message_key")?.unwrap_or(false),
            exclude_fields,
            use_event_time: e.bool("use_event_time")?.unwrap_or(false),
            headers: e.hash("headers")?.unwrap_or_default(),
            headers_from_record,
            max_send_limit_bytes,
            format,
            inject,
        })
    }

    /// The topic of a chunk. `time_zone` is the buffer's timekey zone when `time` is a
    /// chunk key (then `topic` goes through strftime at the chunk's timekey, as
    /// fluentd's `extract_placeholders` does).
    pub fn topic(
        &self,
        tag: &str,
        timekey: Option<i64>,
        time_zone: Option<Zone>,
        chunk_id: &[u8; 16],
        vars: &[(String, String)],
    ) -> String {
        if let Some(t) = &self.topic {
            let s = match (timekey, time_zone) {
                (Some(tk), Some(z)) => {
                    let mut out = Vec::new();
                    strftime(&mut out, t, tk, 0, z);
                    String::from_utf8_lossy(&out).into_owned()
                }
                _ => t.clone(),
            };
            return crate::buffer::placeholders::expand(&s, tag, &spate_protocol::hex(chunk_id), vars);
        }
        if let Some((_, v)) = vars.iter().find(|(k, v)| *k == self.topic_key && !v.is_empty()) {
            return v.clone();
        }
        self.default_topic.clone().unwrap_or_else(|| tag.to_string())
    }

    /// Whether a record needs re-encoding before formatting (something is removed).
    fn removes(&self) -> bool {
        self.exclude_topic_key
            || self.exclude_partition_key
            || self.exclude_partition
            || self.exclude_message_key
            || !self.exclude_fields.is_empty()
    }

    /// A top-level key removed by an `exclude_*` flag.
    fn excluded_key(&self, k: &[u8]) -> bool {
        (self.exclude_topic_key && k == self.topic_key.as_bytes())
            || (self.exclude_partition_key && k == self.partition_key_key.as_bytes())
            || (self.exclude_partition && k == self.partition_key.as_bytes())
            || (self.exclude_message_key && k == self.message_key_key.as_bytes())
    }

    /// Builds one event's message into `s`. `Err` is why the event is skipped.
    pub fn build<'s>(&self, tag: &[u8], ev: &Event<'_>, s: &'s mut Scratch) -> Result<Msg<'s>, Skip> {
        let rec = match &self.inject {
            None => ev.record,
            Some(inj) => {
                s.injected.clear();
                inj.format(&mut s.injected, tag, ev.time, ev.record.as_bytes());
                RecordRef::new(&s.injected).ok_or(Skip::Unformattable)?
            }
        };
        // Partition, partition key and message key come from the record as received.
        let partition = match rec.get(self.partition_key.as_bytes()) {
            Some(v) if !v.is_nil() => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|t| std::str::from_utf8(t).ok()?.trim().parse().ok()))
                .and_then(|p| i32::try_from(p).ok())
                .or(self.default_partition),
            _ => self.default_partition,
        };
        s.pkey.clear();
        let has_pkey = text_of(rec, &self.partition_key_key, self.default_partition_key.as_deref(), &mut s.pkey);
        s.key.clear();
        let has_key = text_of(rec, &self.message_key_key, self.default_message_key.as_deref(), &mut s.key);
        let headers = if self.headers.is_empty() && self.headers_from_record.is_empty() {
            None
        } else {
            let mut h = OwnedHeaders::new_with_capacity(self.headers.len() + self.headers_from_record.len());
            for (k, v) in &self.headers {
                h = h.insert(Header { key: k, value: Some(v.as_bytes()) });
            }
            for (k, a) in &self.headers_from_record {
                s.hval.clear();
                let excluded = a.simple_key().is_some_and(|k| self.excluded_key(k));
                match a.dig(rec) {
                    Dug::Value(v) if !excluded && !v.is_nil() => {
                        write_to_s(v, &mut s.hval);
                        h = h.insert(Header { key: k, value: Some(&s.hval[..]) });
                    }
                    _ => h = h.insert(Header::<&[u8]> { key: k, value: None }),
                }
            }
            Some(h)
        };
        // The record as it is formatted: with the excluded fields removed.
        let rec = if self.removes() {
            s.rec.clear();
            self.copy_without(rec, &mut s.rec);
            RecordRef::new(&s.rec).ok_or(Skip::Unformattable)?
        } else {
            rec
        };
        s.payload.clear();
        match &self.record_key {
            None => self.format.format(&mut s.payload, tag, ev.time, rec.as_bytes()),
            Some(a) => match a.dig(rec) {
                Dug::Value(v) => match v.as_map() {
                    Some(m) => self.format.format(&mut s.payload, tag, ev.time, m.as_bytes()),
                    None if self.format.formatter == Formatter::Json => v.write_json(&mut s.payload),
                    None => return Err(Skip::Unformattable),
                },
                _ => return Err(Skip::Unformattable),
            },
        }
        if self.max_send_limit_bytes.is_some_and(|m| s.payload.len() > m) {
            return Err(Skip::TooLarge(s.payload.len()));
        }
        let timestamp = self.use_event_time.then(|| ev.time.sec as i64 * 1000 + (ev.time.nsec / 1_000_000) as i64);
        Ok(Msg {
            payload: &s.payload,
            key: has_key.then_some(&s.key[..]),
            partition: match partition {
                Some(p) => Part::Given(p),
                None if has_pkey => Part::Hash(&s.pkey),
                None => Part::Any,
            },
            timestamp,
            headers,
        })
    }

    /// Copies the map `rec` into `out` without the excluded keys and paths.
    fn copy_without(&self, rec: RecordRef<'_>, out: &mut Vec<u8>) {
        let paths: Vec<&[Step]> = self.exclude_fields.iter().map(|a| &a.steps[..]).collect();
        copy_map(rec, &paths, Some(self), out);
    }
}

/// Copies map `m` minus top-level keys excluded by `conf` and the `paths` (key steps
/// only: checked at config time).
fn copy_map(m: RecordRef<'_>, paths: &[&[Step]], conf: Option<&MessageConf>, out: &mut Vec<u8>) {
    let mut kept = 0u32;
    let at = out.len();
    // A map32 header (5 bytes), its count patched below.
    raw::map_header(out, u32::MAX);
    for (k, v) in m.fields() {
        let name = k.as_str();
        if name.is_some_and(|n| conf.is_some_and(|c| c.excluded_key(n))) {
            continue;
        }
        if paths.iter().any(|p| p.len() == 1 && step_key(&p[0]).is_some() && step_key(&p[0]) == name) {
            continue;
        }
        let deeper: Vec<&[Step]> = paths
            .iter()
            .filter(|p| p.len() > 1 && step_key(&p[0]).is_some() && step_key(&p[0]) == name)
            .map(|p| &p[1..])
            .collect();
        out.extend_from_slice(k.as_bytes());
        match (deeper.is_empty(), v.as_map()) {
            (false, Some(inner)) => copy_map(inner, &deeper, None, out),
            _ => out.extend_from_slice(v.as_bytes()),
        }
        kept += 1;
    }
    // map32: 0xdf and the big-endian count.
    out[at] = 0xdf;
    out[at + 1..at + 5].copy_from_slice(&kept.to_be_bytes());
}

fn step_key(s: &Step) -> Option<&[u8]> {
    match s {
        Step::Key(k) => Some(k.as_slice()),
        Step::Index(_) => None,
    }
}

/// `record[key]` as Ruby's `to_s` into `out` (true), else the default (true), else false.
fn text_of(rec: RecordRef<'_>, key: &str, default: Option<&str>, out: &mut Vec<u8>) -> bool {
    match rec.get(key.as_bytes()) {
        Some(v) if !v.is_nil() => {
            write_to_s(v, out);
            true
        }
        _ => match default {
            Some(d) => {
                out.extend_from_slice(d.as_bytes());
                true
            }
            None => false,
        },
    }
}

/// Buffers reused from message to message.
#[derive(Default)]
pub struct Scratch {
    injected: Vec<u8>,
    rec: Vec<u8>,
    payload: Vec<u8>,
    key: Vec<u8>,
    pkey: Vec<u8>,
    hval: Vec<u8>,
}

/// Where a message goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Part<'a> {
    Given(i32),
    /// Hash of the partition key modulo the partition count.
    Hash(&'a [u8]),
    /// librdkafka's partitioner (message key hash, or random without a key).
    Any,
}

/// One message, borrowing the scratch buffers.
pub struct Msg<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub partition: Part<'a>,
    /// Milliseconds since the epoch (`use_event_time`); librdkafka's clock otherwise.
    pub timestamp: Option<i64>,
    pub headers: Option<OwnedHeaders>,
}

/// Why an event was not sent (fluent-plugin-kafka logs and skips these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The formatted record is over `max_send_limit_bytes`.
    TooLarge(usize),
    /// `record_key` points at nothing, or at a value the formatter cannot write.
    Unformattable,
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
