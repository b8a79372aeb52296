//! in_kafka_group's messages -> events, as fluent-plugin-kafka's `KafkaGroupInput`
//! makes them: the value parsed by `format` (`json`, `msgpack`, `text` into
//! `message_key`, `ltsv`), then `kafka_message_key` (the message key) and `add_headers`
//! (each header as a field) set in the record, the time from `time_source` (`now`,
//! `kafka`: the message timestamp, `record`: `record_time_key`), and the tag from the
//! topic (or the record's `record_tag_key` with `tag_source record`) with `add_prefix`
//! / `add_suffix`. A message that cannot be parsed is skipped with a warning naming
//! its topic, partition and offset (fluent-plugin-kafka's "parser error").
//!
//! Runs on the consumer thread; the message bytes are untrusted: every length is
//! checked and nothing here can panic on them.

use spate_protocol::encode::{self, raw};
use spate_protocol::{EventTime, RecordRef, ValueRef};

/// `format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json,
    Msgpack,
    Text { message_key: String },
    Ltsv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSource {
    Now,
    Kafka,
    Record,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSource {
    Topic,
    Record(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeConf {
    pub format: Format,
    pub time_source: TimeSource,
    pub record_time_key: String,
    /// `time_format`: the record time is parsed with Ruby's strptime rules.
    pub time_format: Option<String>,
    pub tag_source: TagSource,
    pub add_prefix: Option<String>,
    pub add_suffix: Option<String>,
    pub kafka_message_key: Option<String>,
    pub add_headers: bool,
}

/// One Kafka message, as the decoder needs it.
pub struct Message<'a> {
    pub topic: &'a str,
    pub value: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
    /// Header names and values.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Why a message was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("not a msgpack map")]
    NotMap,
    #[error("record has no usable time in '{0}'")]
    Time(String),
    #[error("record has no string tag in '{0}'")]
    Tag(String),
}

/// Reused buffers.
#[derive(Default)]
pub struct Scratch {
    rec: Vec<u8>,
    out: Vec<u8>,
    pub tag: Vec<u8>,
}

impl DecodeConf {
    /// Decodes `m` and appends its `[time, record]` entry to `entries`; the tag is left
    /// in `s.tag`.
    pub fn decode(
        &self,
        m: &Message<'_>,
        now: EventTime,
        s: &mut Scratch,
        entries: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        s.rec.clear();
        match &self.format {
            Format::Json => {
                let mp = spate_protocol::json::to_msgpack(m.value).map_err(|e| DecodeError::Json(e.to_string()))?;
                RecordRef::new(&mp).ok_or(DecodeError::NotObject)?;
                s.rec.extend_from_slice(&mp);
            }
            Format::Msgpack => {
                RecordRef::new(m.value).ok_or(DecodeError::NotMap)?;
                s.rec.extend_from_slice(m.value);
            }
            Format::Text { message_key } => {
                raw::map_header(&mut s.rec, 1);
                raw::str(&mut s.rec, message_key.as_bytes());
                raw::str(&mut s.rec, m.value);
            }
            Format::Ltsv => ltsv(m.value, &mut s.rec),
        }
        // Fields set on the record: the message key, then the headers (a later one wins).
        let mut set: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        if let Some(k) = &self.kafka_message_key {
            set.push((k.as_bytes(), m.key));
        }
        if self.add_headers {
            for (k, v) in m.headers {
                set.push((k.as_bytes(), *v));
            }
        }
        if !set.is_empty() {
            s.out.clear();
            set_fields(&s.rec, &set, &mut s.out);
            std::mem::swap(&mut s.rec, &mut s.out);
        }
        let rec = RecordRef::new(&s.rec).ok_or(DecodeError::NotMap)?;
        let time = match self.time_source {
            TimeSource::Now => now,
            TimeSource::Kafka => m.timestamp_ms.filter(|t| *t >= 0).map_or(now, |t| {
                EventTime::new((t / 1000).min(u32::MAX as i64) as u32, ((t % 1000) * 1_000_000) as u32)
            }),
            TimeSource::Record => rec
                .get(self.record_time_key.as_bytes())
                .and_then(|v| match &self.time_format {
                    // fluent-plugin-kafka: `@time_parser.parse(record_time.to_s)`.
                    Some(f) => {
                        let mut text = Vec::new();
                        crate::ruby::value::write_to_s(v, &mut text);
                        let p = crate::ruby::strptime::strptime(std::str::from_utf8(&text).ok()?, f)?;
                        Some(EventTime::new(u32::try_from(p.sec).ok()?, p.nsec))
                    }
                    None => time_of(v),
                })
                .ok_or_else(|| DecodeError::Time(self.record_time_key.clone()))?,
        };
        s.tag.clear();
        if let Some(p) = &self.add_prefix {
            s.tag.extend_from_slice(p.as_bytes());
            s.tag.push(b'.');
        }
        match &self.tag_source {
            TagSource::Topic => s.tag.extend_from_slice(m.topic.as_bytes()),
            TagSource::Record(k) => {
                let t = rec.get(k.as_bytes()).and_then(|v| v.as_str()).ok_or_else(|| DecodeError::Tag(k.clone()))?;
                s.tag.extend_from_slice(t);
            }
        }
        if let Some(x) = &self.add_suffix {
            s.tag.push(b'.');
            s.tag.extend_from_slice(x.as_bytes());
        }
        encode::entry(entries, time, encode::TimeFormat::EventTime, rec.as_bytes());
        Ok(())
    }
}

/// A record time: an integer or float (seconds), an EventTime, or a numeric string.
fn time_of(v: ValueRef<'_>) -> Option<EventTime> {
    if let Some(t) = EventTime::from_msgpack(v.as_bytes()) {
        return Some(t);
    }
    let f = v.as_f64().or_else(|| std::str::from_utf8(v.as_str()?).ok()?.trim().parse::<f64>().ok())?;
    if !(0.0..4_294_967_296.0).contains(&f) {
        return None;
    }
    let sec = f.floor();
    Some(EventTime::new(sec as u32, ((f - sec) * 1e9).round().min(999_999_999.0) as u32))
}

/// The `ltsv` gem's `LTSV.parse(value).first`: the first line's `label:value` fields
/// separated by tabs; an empty value is nil; `\t`, `\n`, `\r` and `\\` are unescaped.
fn ltsv(v: &[u8], out: &mut Vec<u8>) {
    let line = v.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').filter(|f| !f.is_empty()).collect();
    raw::map_header(out, fields.len() as u32);
    let mut val = Vec::new();
    for f in fields {
        let (k, v) = match f.iter().position(|&b| b == b':') {
            Some(i) => (&f[..i], Some(&f[i + 1..])),
            None => (f, None),
        };
        raw::str(out, k);
        match v {
            Some(v) if !v.is_empty() => {
                val.clear();
                let mut i = 0;
                while i < v.len() {
                    match (v[i], v.get(i + 1)) {
                        (b'\\', Some(b't')) => val.push(b'\t'),
                        (b'\\', Some(b'n')) => val.push(b'\n'),
                        (b'\\', Some(b'r')) => val.push(b'\r'),
                        (b'\\', Some(b'\\')) => val.push(b'\\'),
                        (c, _) => {
                            val.push(c);
                            i += 1;
                            continue;
                        }
                    }
                    i += 2;
                }
                raw::str(out, &val);
            }
            _ => raw::nil(out),
        }
    }
}

/// Copies map `rec` with `set` applied (`record[k] = v`; `None` is nil; existing keys
/// are replaced, new ones appended, as Ruby's Hash keeps insertion order).
fn set_fields(rec: &[u8], set: &[(&[u8], Option<&[u8]>)], out: &mut Vec<u8>) {
    let Some(r) = RecordRef::new(rec) else {
        out.extend_from_slice(rec);
        return;
    };
    // Each key once, the last value winning.
    let last = |k: &[u8]| set.iter().rev().find(|(x, _)| *x == k).map(|(_, v)| *v);
    let mut n = 0u32;
    let at = out.len();
    raw::map_header(out, u32::MAX);
    let mut written: Vec<&[u8]> = Vec::new();
    for (k, v) in r.fields() {
        match k.as_str().and_then(|ks| last(ks).map(|nv| (ks, nv))) {
            Some((ks, nv)) => {
                if written.contains(&ks) {
                    continue;
                }
                written.push(ks);
                raw::str(out, ks);
                value(out, nv);
            }
            None => {
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        }
        n += 1;
    }
    for (k, _) in set {
        if written.contains(k) {
            continue;
        }
        written.push(k);
        raw::str(out, k);
        value(out, last(k).flatten());
        n += 1;
    }
    out[at] = 0xdf;
    out[at + 1..at + 5].copy_from_slice(&n.to_be_bytes());
}

fn value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => raw::str(out, b),
        None => raw::nil(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::{EntriesFormat, Events};

    fn conf(format: Format) -> DecodeConf {
        DecodeConf {
            format,
            time_source: TimeSource::Now,
            record_time_key: "time".into(),
            time_format: None,
            tag_source: TagSource::Topic,
            add_prefix: None,
            add_suffix: None,
            kafka_message_key: None,
            add_headers: false,
        }
    }

    fn run(c: &DecodeConf, m: &Message<'_>) -> Result<(String, EventTime, String), DecodeError> {
        let mut s = Scratch::default();
        let mut e = Vec::new();
        c.decode(m, EventTime::new(5, 6), &mut s, &mut e)?;
        let ev = Events::new(&e, EntriesFormat::Packed).next().unwrap();
        let mut j = Vec::new();
        ev.record.write_json(&mut j);
        Ok((String::from_utf8(s.tag.clone()).unwrap(), ev.time, String::from_utf8(j).unwrap()))
    }

    fn msg<'a>(value: &'a [u8], headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Message<'a> {
        Message { topic: "logs", value, key: Some(b"k1"), timestamp_ms: Some(1_700_000_000_123), headers }
    }

    #[test]
    fn formats() {
        let (tag, t, j) = run(&conf(Format::Json), &msg(br#"{"a":1,"b":"x"}"#, &[])).unwrap();
        assert_eq!((tag.as_str(), t, j.as_str()), ("logs", EventTime::new(5, 6), r#"{"a":1,"b":"x"}"#));
        assert_eq!(run(&conf(Format::Json), &msg(b"[1]", &[])).unwrap_err(), DecodeError::NotObject);
        assert!(matches!(run(&conf(Format::Json), &msg(b"{", &[])).unwrap_err(), DecodeError::Json(_)));
        let (_, _, j) = run(&conf(Format::Text { message_key: "message".into() }), &msg(b"plain \"x\"", &[])).unwrap();
        assert_eq!(j, r#"{"message":"plain \"x\""}"#);
        let (_, _, j) = run(&conf(Format::Ltsv), &msg(b"a:1\tb:x\\ty\tc:\tnocolon\nnext:line", &[])).unwrap();
        assert_eq!(j, r#"{"a":"1","b":"x\ty","c":null,"nocolon":null}"#);
        let mut mp = Vec::new();
        raw::map_header(&mut mp, 1);
        raw::str(&mut mp, b"m");
        raw::int(&mut mp, 7);
        assert_eq!(run(&conf(Format::Msgpack), &msg(&mp, &[])).unwrap().2, r#"{"m":7}"#);
        assert_eq!(run(&conf(Format::Msgpack), &msg(&mp[..3], &[])).unwrap_err(), DecodeError::NotMap);
        assert_eq!(run(&conf(Format::Msgpack), &msg(b"\x01", &[])).unwrap_err(), DecodeError::NotMap);
    }

    #[test]
    fn key_headers_time_and_tag() {
        let mut c = conf(Format::Json);
        c.kafka_message_key = Some("kafka_key".into());
        c.add_headers = true;
        c.time_source = TimeSource::Kafka;
        c.add_prefix = Some("kafka".into());
        c.add_suffix = Some("in".into());
        let hs: [(&str, Option<&[u8]>); 2] = [("a", Some(b"replaced")), ("h", None)];
        let (tag, t, j) = run(&c, &msg(br#"{"a":1,"b":2}"#, &hs)).unwrap();
        assert_eq!(tag, "kafka.logs.in");
        assert_eq!(t, EventTime::new(1_700_000_000, 123_000_000));
        assert_eq!(j, r#"{"a":"replaced","b":2,"kafka_key":"k1","h":null}"#);
        c.time_source = TimeSource::Record;
        c.tag_source = TagSource::Record("tag".into());
        c.add_prefix = None;
        c.add_suffix = None;
        let (tag, t, _) = run(&c, &msg(br#"{"time":1700000001.5,"tag":"from.rec"}"#, &[])).unwrap();
        assert_eq!((tag.as_str(), t), ("from.rec", EventTime::new(1_700_000_001, 500_000_000)));
        let (_, t, _) = run(&c, &msg(br#"{"time":"42","tag":"t"}"#, &[])).unwrap();
        assert_eq!(t, EventTime::new(42, 0));
        assert_eq!(run(&c, &msg(br#"{"tag":"t"}"#, &[])).unwrap_err(), DecodeError::Time("time".into()));
        assert_eq!(run(&c, &msg(br#"{"time":1}"#, &[])).unwrap_err(), DecodeError::Tag("tag".into()));
        assert!(run(&c, &msg(br#"{"time":-1,"tag":"t"}"#, &[])).is_err());
        c.time_format = Some("%Y-%m-%d %H:%M:%S %z".into());
        let (_, t, _) = run(&c, &msg(br#"{"time":"2023-11-14 22:13:20 +0000","tag":"t"}"#, &[])).unwrap();
        assert_eq!(t, EventTime::new(1_700_000_000, 0));
        assert!(run(&c, &msg(br#"{"time":"yesterday","tag":"t"}"#, &[])).is_err());
    }
}
