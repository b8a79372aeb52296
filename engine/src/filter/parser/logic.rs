//! filter_parser's logic (fluentd's `filter_parser.rb`) over an [`EventBatch`], without
//! the plugin plumbing (see `mod.rs`): each
//! event's `key_name` field (a record accessor) is parsed with the `<parse>` section;
//! the parsed records are written as packed `[time, record]` entries into the caller's
//! buffer and the events that failed are reported ([`Failure`]), to go to `@ERROR`
//! (fluentd's `emit_invalid_record_to_error`) or a rate-limited warning.
//!
//! Parameters: `key_name`, `reserve_data` (merge the parsed fields into the original
//! record), `reserve_time` (keep the event's time), `remove_key_name_field`,
//! `replace_invalid_sequence` (scrub invalid UTF-8 with `?` and parse again),
//! `inject_key_prefix`, `hash_value_field`, `emit_invalid_record_to_error`. As in
//! fluentd, a parsed record without a time takes the event's time, and a parser with
//! `estimate_current_event` (the default) gives the current time to texts without one.
//! `remove_key_name_field` with a nested `key_name` (`$.a.b`) is a config error (spate
//! only removes top-level keys).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Range;

use spate_protocol::encode::raw;
use spate_protocol::{EventBatch, EventTime, RecordRef};

use crate::config::{ConfigError, Element};
use crate::parser::{ParseError, Parser, ParserConf, Sink};
use crate::ruby::accessor::{Accessor, Dug};
use crate::ruby::value::scrub;

/// Why an event was not parsed (the error fluentd attaches to the error event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterParserError {
    #[error("{0} does not exist")]
    KeyMissing(String),
    #[error("pattern not matched with data '{0}'")]
    NotMatched(String),
    #[error("invalid byte sequence in UTF-8")]
    InvalidUtf8,
    #[error("parse failed: {0}")]
    Parse(ParseError),
    #[error("parse failed: the value of {0} is not a string")]
    NotString(String),
}

/// The validated filter_parser section.
#[derive(Debug, Clone)]
pub struct FilterParserConf {
    pub key_name: String,
    accessor: Accessor,
    pub reserve_data: bool,
    pub reserve_time: bool,
    pub remove_key_name_field: bool,
    pub replace_invalid_sequence: bool,
    inject_key_prefix: Option<Box<[u8]>>,
    hash_value_field: Option<Box<[u8]>>,
    pub emit_invalid_record_to_error: bool,
    pub parser: ParserConf,
}

impl FilterParserConf {
    /// `<filter> @type parser` with its `<parse>` (or v0.12's `format` parameter).
    pub fn from_element(e: &Element) -> Result<FilterParserConf, ConfigError> {
        let at = |k: &str| e.get(k).map_or(e.pos.clone(), |a| a.pos.clone());
        let key_name =
            e.str("key_name").ok_or_else(|| ConfigError::at(&e.pos, "'key_name' parameter is required"))?.to_string();
        let accessor = Accessor::parse(&key_name).map_err(|m| ConfigError::at(&at("key_name"), m.to_string()))?;
        // Or the <parse> fluentd's compat layer makes of v0.12's flat `format`, ...
        let v012 = crate::parser::v012_section(e)?;
        let parser = match e.elements_named("parse").next().or(v012.as_ref()) {
            Some(p) => ParserConf::from_element(p)?,
            None => return Err(ConfigError::at(&e.pos, "<parse> section is required")),
        };
        let remove = e.bool("remove_key_name_field")?.unwrap_or(false);
        if remove && accessor.simple_key().is_none() {
            return Err(ConfigError::at(
                &at("remove_key_name_field"),
                format!(
                    "remove_key_name_field with a nested key_name ({key_name}) is not supported; use a top-level key"
                ),
            ));
        }
        Ok(FilterParserConf {
            key_name,
            accessor,
            reserve_data: e.bool("reserve_data")?.unwrap_or(false),
            reserve_time: e.bool("reserve_time")?.unwrap_or(false),
            remove_key_name_field: remove,
            replace_invalid_sequence: e.bool("replace_invalid_sequence")?.unwrap_or(false),
            inject_key_prefix: e.str("inject_key_prefix").map(|s| s.as_bytes().into()),
            hash_value_field: e.str("hash_value_field").map(|s| s.as_bytes().into()),
            emit_invalid_record_to_error: e.bool("emit_invalid_record_to_error")?.unwrap_or(true),
            parser,
        })
    }

    pub fn build(&self) -> FilterParser {
        FilterParser {
            parser: self.parser.build(),
            conf: self.clone(),
            parsed: Vec::new(),
            spans: Vec::new(),
            scrubbed: Vec::new(),
            ws: WriteScratch::default(),
        }
    }
}

/// An event that did not parse: its time, where its record is in `batch.entries`,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub time: EventTime,
    pub record: Range<usize>,
    pub error: FilterParserError,
}

/// Per-shard filter_parser.
#[derive(Debug)]
pub struct FilterParser {
    conf: FilterParserConf,
    parser: Parser,
    /// Parsed records of the current event, back to back.
    parsed: Vec<u8>,
    /// (range in `parsed`, time) of each parsed record, or the error of a failed one.
    spans: Vec<SpanResult>,
    scrubbed: Vec<u8>,
    ws: WriteScratch,
}

/// Reused state of writing one merged record.
#[derive(Debug, Default)]
struct WriteScratch {
    /// A prefixed key being looked up.
    key: Vec<u8>,
    /// Keys of a big parsed record (prefixed), hashed with a random key so crafted
    /// keys cannot collide: hash -> (key range, value range) in the parsed buffer.
    index: HashMap<u64, (Range<usize>, Range<usize>)>,
    /// Keys of a big original record: hash -> key range in the record.
    rindex: HashMap<u64, Range<usize>>,
    hasher: std::collections::hash_map::RandomState,
}

/// A parsed record's bytes and time, or why an element did not parse.
type SpanResult = Result<(Range<usize>, Option<EventTime>), ParseError>;

/// Collects each parsed record's span.
struct Spans<'a> {
    spans: &'a mut Vec<SpanResult>,
    start: usize,
}

impl Sink for Spans<'_> {
    fn begin(&mut self, out: &mut Vec<u8>) {
        self.start = out.len();
    }
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>) {
        self.spans.push(Ok((self.start..out.len(), time)));
    }
    fn error(&mut self, err: ParseError) {
        self.spans.push(Err(err));
    }
}

fn offset_in(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

/// Text of a value for error messages (lossy, bounded).
fn show(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(&v[..v.len().min(1024)]).into_owned();
    if v.len() > 1024 {
        s + "..."
    } else {
        s
    }
}

impl FilterParser {
    /// Filters one batch: appends the resulting entries to `out` and returns how many
    /// it wrote; failed events are pushed to `failures`.
    pub fn filter(&mut self, batch: &EventBatch, out: &mut Vec<u8>, failures: &mut Vec<Failure>) -> u32 {
        let mut count = 0;
        for ev in batch.events() {
            let rec_range = offset_in(&batch.entries, ev.record.as_bytes());
            let emit_errors = self.conf.emit_invalid_record_to_error;
            let mut fail = |error: FilterParserError| {
                if emit_errors {
                    failures.push(Failure { time: ev.time, record: rec_range.clone(), error });
                }
            };
            let raw_value = match self.conf.accessor.dig(ev.record) {
                Dug::Value(v) if v.is_nil() => None,
                Dug::Value(v) => Some(v),
                Dug::Nil => None,
                Dug::TypeError => {
                    fail(FilterParserError::KeyMissing(self.conf.key_name.clone()));
                    continue;
                }
            };
            let Some(value) = raw_value else {
                if self.conf.reserve_data {
                    count += write_entry(&self.conf, &mut self.ws, out, ev.record, ev.time, None, &self.parsed);
                }
                fail(FilterParserError::KeyMissing(self.conf.key_name.clone()));
                continue;
            };
            let Some(text) = value.as_str() else {
                fail(FilterParserError::NotString(self.conf.key_name.clone()));
                continue;
            };
            // Ruby's regexps raise on invalid UTF-8 in a UTF-8 string.
            let mut text = text;
            if self.parser.is_regexp_based() && std::str::from_utf8(text).is_err() {
                if !self.conf.replace_invalid_sequence {
                    fail(FilterParserError::InvalidUtf8);
                    continue;
                }
                scrub(text, &mut self.scrubbed);
                text = &self.scrubbed;
            }
            self.parsed.clear();
            self.spans.clear();
            let mut sink = Spans { spans: &mut self.spans, start: 0 };
            self.parser.parse(text, &mut self.parsed, &mut sink);
            let spans = std::mem::take(&mut self.spans);
            let mut hard_error = None;
            for s in &spans {
                if let Err(e) = s {
                    if !e.is_no_match() {
                        hard_error = Some(e.clone());
                    }
                }
            }
            if let Some(e) = hard_error {
                // fluentd: a ParserError aborts the event (no output, even with reserve_data).
                fail(FilterParserError::Parse(e));
                self.spans = spans;
                continue;
            }
            for s in &spans {
                match s {
                    Ok((range, t)) => {
                        let t = if self.conf.reserve_time { ev.time } else { t.unwrap_or(ev.time) };
                        count +=
                            write_entry(&self.conf, &mut self.ws, out, ev.record, t, Some(range.clone()), &self.parsed);
                    }
                    Err(_) => {
                        fail(FilterParserError::NotMatched(show(text)));
                        if self.conf.reserve_data {
                            count += write_entry(
                                &self.conf,
                                &mut self.ws,
                                out,
                                ev.record,
                                ev.time,
                                Some(0..0),
                                &self.parsed,
                            );
                        }
                    }
                }
            }
            self.spans = spans;
        }
        count
    }
}

/// One output entry: `[t, record]` where record is the parsed map (with
/// `inject_key_prefix` / `hash_value_field`), merged into the original with `reserve_data`.
fn write_entry(
    conf: &FilterParserConf,
    ws: &mut WriteScratch,
    out: &mut Vec<u8>,
    record: RecordRef<'_>,
    t: EventTime,
    parsed: Option<Range<usize>>,
    buf: &[u8],
) -> u32 {
    {
        out.push(0x92);
        raw::event_time(out, t);
        let parsed_map = match &parsed {
            Some(r) if !r.is_empty() => buf.get(r.clone()).and_then(RecordRef::new),
            _ => None,
        };
        let prefix = conf.inject_key_prefix.as_deref().unwrap_or_default();
        // The new top-level fields.
        let hvf = conf.hash_value_field.as_deref();
        let remove = if conf.remove_key_name_field && parsed_map.is_some() { conf.accessor.simple_key() } else { None };
        if !conf.reserve_data {
            match hvf {
                Some(h) => {
                    raw::map_header(out, 1);
                    raw::str(out, h);
                    write_prefixed(out, parsed_map, prefix);
                }
                None => write_prefixed(out, parsed_map, prefix),
            }
            return 1;
        }
        // reserve_data: record.merge(new), the record's keys first.
        let new_keys = match (hvf, parsed_map) {
            (Some(_), _) => 1,
            (None, Some(m)) => m.len(),
            (None, None) => 0,
        };
        ws.index_new(parsed_map, prefix, hvf, buf);
        let mut n = 0u32;
        let mut replaced = 0usize;
        for (k, _) in record.fields() {
            if remove.is_some_and(|r| k.as_str() == Some(r)) {
                continue;
            }
            n += 1;
            if k.as_str().is_some_and(|k| ws.new_value(k, parsed_map, prefix, hvf, buf).is_some()) {
                replaced += 1;
            }
        }
        n += (new_keys - replaced.min(new_keys)) as u32;
        raw::map_header(out, n);
        for (k, v) in record.fields() {
            if remove.is_some_and(|r| k.as_str() == Some(r)) {
                continue;
            }
            out.extend_from_slice(k.as_bytes());
            match k.as_str().and_then(|ks| ws.new_value(ks, parsed_map, prefix, hvf, buf)) {
                Some(NewValue::Parsed(v)) => out.extend_from_slice(v),
                Some(NewValue::Hash) => write_prefixed(out, parsed_map, prefix),
                None => out.extend_from_slice(v.as_bytes()),
            }
        }
        // New keys the record does not have, in the parsed order.
        ws.index_record(record);
        match (hvf, parsed_map) {
            (Some(h), _) => {
                if !ws.in_record(record, h, remove) {
                    raw::str(out, h);
                    write_prefixed(out, parsed_map, prefix);
                }
            }
            (None, Some(m)) => {
                for (k, v) in m.fields() {
                    let Some(ks) = k.as_str() else { continue };
                    ws.key.clear();
                    ws.key.extend_from_slice(prefix);
                    ws.key.extend_from_slice(ks);
                    if !ws.in_record(record, &ws.key, remove) {
                        raw::str(out, &ws.key);
                        out.extend_from_slice(v.as_bytes());
                    }
                }
            }
            (None, None) => {}
        }
        1
    }
}

impl WriteScratch {
    /// Hashes the parsed keys when the record is big (lookups stay linear otherwise).
    fn index_new(&mut self, parsed: Option<RecordRef<'_>>, prefix: &[u8], hvf: Option<&[u8]>, buf: &[u8]) {
        self.index.clear();
        let (Some(m), None) = (parsed, hvf) else { return };
        if m.len() < 16 {
            return;
        }
        for (k, v) in m.fields() {
            if let Some(ks) = k.as_str() {
                self.key.clear();
                self.key.extend_from_slice(prefix);
                self.key.extend_from_slice(ks);
                let h = self.hasher.hash_one(&self.key[..]);
                let kr = offset_in(buf, ks);
                let vr = offset_in(buf, v.as_bytes());
                // The last of equal keys wins (a Ruby Hash).
                self.index.insert(h, (kr, vr));
            }
        }
    }

    /// Hashes the original record's keys when it is big.
    fn index_record(&mut self, record: RecordRef<'_>) {
        self.rindex.clear();
        if record.len() < 16 {
            return;
        }
        let base = record.as_bytes();
        for (k, _) in record.fields() {
            if let Some(ks) = k.as_str() {
                self.rindex.insert(self.hasher.hash_one(ks), offset_in(base, ks));
            }
        }
    }

    /// Whether the record has `key` (other than the removed one).
    fn in_record(&self, record: RecordRef<'_>, key: &[u8], remove: Option<&[u8]>) -> bool {
        if Some(key) == remove {
            return false;
        }
        if self.rindex.is_empty() {
            return record.fields().any(|(k, _)| k.as_str() == Some(key));
        }
        match self.rindex.get(&self.hasher.hash_one(key)) {
            Some(r) => record.as_bytes().get(r.clone()) == Some(key),
            None => false,
        }
    }

    /// The new value for an existing key of the record, if the parse gave one.
    fn new_value<'p>(
        &self,
        key: &[u8],
        parsed: Option<RecordRef<'p>>,
        prefix: &[u8],
        hvf: Option<&[u8]>,
        buf: &'p [u8],
    ) -> Option<NewValue<'p>> {
        if let Some(h) = hvf {
            return (key == h).then_some(NewValue::Hash);
        }
        let m = parsed?;
        let bare = key.strip_prefix(prefix)?;
        if !self.index.is_empty() {
            let (kr, vr) = self.index.get(&self.hasher.hash_one(key))?;
            return (buf.get(kr.clone()) == Some(bare)).then(|| buf.get(vr.clone()).map(NewValue::Parsed)).flatten();
        }
        m.get(bare).map(|v| NewValue::Parsed(v.as_bytes()))
    }
}

enum NewValue<'a> {
    Parsed(&'a [u8]),
    Hash,
}

/// The parsed map with `prefix` on each key (an empty map when there is none).
fn write_prefixed(out: &mut Vec<u8>, parsed: Option<RecordRef<'_>>, prefix: &[u8]) {
    let Some(m) = parsed else {
        raw::map_header(out, 0);
        return;
    };
    if prefix.is_empty() {
        out.extend_from_slice(m.as_bytes());
        return;
    }
    raw::map_header(out, m.len() as u32);
    for (k, v) in m.fields() {
        match k.as_str() {
            Some(ks) => {
                raw::str_header(out, prefix.len() + ks.len());
                out.extend_from_slice(prefix);
                out.extend_from_slice(ks);
            }
            None => out.extend_from_slice(k.as_bytes()),
        }
        out.extend_from_slice(v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    //! test_filter_parser.rb's cases, ported.
    use std::path::Path;

    use bytes::Bytes;
    use serde_json::{json, Value};
    use spate_protocol::{encode, EntriesFormat, EventBatch, Mode, Options, ValueRef};

    use super::*;
    use crate::config::{parse_str_with_warnings, EvalContext};

    fn conf(body: &str) -> Result<FilterParserConf, ConfigError> {
        let text = format!("<filter **>\n@type parser\n{body}\n</filter>\n");
        let ctx = EvalContext::with_env("h", None, Default::default());
        let (root, _) = parse_str_with_warnings(&text, "t.conf", Path::new("."), &ctx).unwrap();
        FilterParserConf::from_element(&root.elements[0])
    }

    fn batch(events: &[(u32, Value)]) -> EventBatch {
        let mut entries = Vec::new();
        for (t, rec) in events {
            let rec = spate_protocol::json::to_msgpack(rec.to_string().as_bytes()).unwrap();
            encode::entry(&mut entries, EventTime::new(*t, 0), encode::TimeFormat::EventTime, &rec);
        }
        EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(entries),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn to_json(v: ValueRef<'_>) -> Value {
        let mut out = Vec::new();
        v.write_json(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    /// Runs the filter: the output events as (time, record) and the failures.
    fn run(body: &str, events: &[(u32, Value)]) -> (Vec<(EventTime, Value)>, Vec<Failure>) {
        let mut f = conf(body).unwrap().build();
        let b = batch(events);
        let mut out = Vec::new();
        let mut failures = Vec::new();
        let n = f.filter(&b, &mut out, &mut failures);
        let got: Vec<(EventTime, Value)> = spate_protocol::Events::new(&out, EntriesFormat::Packed)
            .map(|e| (e.time, to_json(ValueRef::new(e.record.as_bytes()).unwrap())))
            .collect();
        assert_eq!(got.len() as u32, n);
        (got, failures)
    }

    const T: u32 = 1333390859; // 2012-04-02 18:20:59 UTC

    #[test]
    fn regexp_with_time_and_reserve_data() {
        let body = "key_name message\nreserve_data true\n<parse>\n@type regexp\nexpression /^(?<x>.)(?<y>.) (?<time>.+)$/\ntime_format %Y%m%d%H%M%S\nutc true\n</parse>";
        let (got, fails) = run(
            body,
            &[
                (1, json!({"message": "12 20120402182059"})),
                (1, json!({"message": "34 20120402182100"})),
                (1, json!({"message": "56 20120402182100"})),
                (1, json!({"message": "78 20120402182101"})),
                (1, json!({"message": "90 20120402182100"})),
            ],
        );
        assert!(fails.is_empty());
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], (EventTime::new(T, 0), json!({"message": "12 20120402182059", "x": "1", "y": "2"})));
        assert_eq!(got[3].0, EventTime::new(T + 2, 0));
        // Without reserve_data: only the parsed fields.
        let (got, _) = run(&body.replace("reserve_data true", ""), &[(1, json!({"message": "12 20120402182059"}))]);
        assert_eq!(got[0].1, json!({"x": "1", "y": "2"}));
    }

    #[test]
    fn reserve_time_and_missing_time() {
        let body = "key_name data\nreserve_time true\n<parse>\n@type regexp\nexpression /^(?<x>\\d)(?<y>\\d) (?<t>.+)$/\n</parse>";
        let (got, _) = run(body, &[(7, json!({"data": "12 20120402182059"}))]);
        assert_eq!(got[0], (EventTime::new(7, 0), json!({"x": "1", "y": "2", "t": "20120402182059"})));
        // No time in the text and estimate_current_event false: the event's time.
        let body =
            "key_name data\n<parse>\n@type regexp\nexpression /^(?<x>\\d)$/\nestimate_current_event false\n</parse>";
        let (got, _) = run(body, &[(7, json!({"data": "1"}))]);
        assert_eq!(got[0].0, EventTime::new(7, 0));
        // With estimate_current_event (the default) fluentd gives the current time.
        let (got, _) = run(&body.replace("estimate_current_event false", ""), &[(7, json!({"data": "1"}))]);
        assert!(got[0].0.sec > 1_700_000_000);
    }

    #[test]
    fn json_arrays_give_one_event_per_object() {
        let body = "key_name data\n<parse>\n@type json\n</parse>";
        let (got, fails) = run(
            body,
            &[(
                1,
                json!({"data": "[{\"xxx_1\":\"first\",\"yyy\":\"second\"}, {\"xxx_2\":\"first\", \"yyy_2\":\"second\"}]"}),
            )],
        );
        assert!(fails.is_empty());
        assert_eq!(
            got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(),
            vec![json!({"xxx_1":"first","yyy":"second"}), json!({"xxx_2":"first","yyy_2":"second"})]
        );
    }

    #[test]
    fn reserve_data_with_and_without_remove_key_name_field() {
        for remove in [false, true] {
            let body = format!(
                "key_name data\nreserve_data yes\nremove_key_name_field {remove}\n<parse>\n@type json\n</parse>"
            );
            let (got, fails) = run(
                &body,
                &[
                    (1, json!({"data": "{\"xxx\":\"first\",\"yyy\":\"second\"}", "xxx": "x", "yyy": "y"})),
                    (1, json!({"data": "foobar", "xxx": "x", "yyy": "y"})),
                ],
            );
            let first = if remove {
                json!({"xxx":"first","yyy":"second"})
            } else {
                json!({"data":"{\"xxx\":\"first\",\"yyy\":\"second\"}","xxx":"first","yyy":"second"})
            };
            assert_eq!(got[0].1, first);
            // Not JSON: the record is kept as is (reserve_data), and an error event.
            assert_eq!(got[1].1, json!({"data":"foobar","xxx":"x","yyy":"y"}));
            assert_eq!(fails.len(), 1);
            assert_eq!(fails[0].error, FilterParserError::NotMatched("foobar".into()));
        }
    }

    #[test]
    fn missing_key_and_error_events() {
        let body = "key_name data\n<parse>\n@type json\n</parse>";
        let (got, fails) = run(body, &[(1, json!({"other": 1})), (2, json!({"data": null}))]);
        assert!(got.is_empty());
        assert_eq!(fails.len(), 2);
        assert_eq!(fails[0].error.to_string(), "data does not exist");
        assert_eq!(fails[1].time, EventTime::new(2, 0));
        // reserve_data keeps the event as is.
        let (got, fails) = run(&format!("{body}\nreserve_data true"), &[(1, json!({"other": 1}))]);
        assert_eq!((got[0].1.clone(), fails.len()), (json!({"other": 1}), 1));
        // emit_invalid_record_to_error false: no failures reported.
        let (_, fails) = run(&format!("{body}\nemit_invalid_record_to_error false"), &[(1, json!({"other": 1}))]);
        assert!(fails.is_empty());
        // A time parse error drops the event, even with reserve_data.
        let body = "key_name data\nreserve_data true\n<parse>\n@type json\ntime_format %Y\n</parse>";
        let (got, fails) = run(body, &[(1, json!({"data": "{\"time\":\"x\"}"}))]);
        assert!(got.is_empty());
        assert!(matches!(fails[0].error, FilterParserError::Parse(ParseError::Time(_))));
        // The failure points at the original record.
        let b = batch(&[(1, json!({"data": 5}))]);
        let mut f = conf("key_name data\n<parse>\n@type json\n</parse>").unwrap().build();
        let mut fails = Vec::new();
        f.filter(&b, &mut Vec::new(), &mut fails);
        let rec = RecordRef::new(&b.entries[fails[0].record.clone()]).unwrap();
        assert_eq!(rec.get(b"data").and_then(|v| v.as_i64()), Some(5));
        assert_eq!(fails[0].error.to_string(), "parse failed: the value of data is not a string");
    }

    #[test]
    fn ltsv_tsv_csv_and_nested_key() {
        let (got, _) = run(
            "key_name data\n<parse>\n@type ltsv\ntypes i:integer,s:string,f:float,b:bool\n</parse>",
            &[(1, json!({"data": "i:1\ts:2\tf:3\tb:true\tx:123"}))],
        );
        assert_eq!(got[0].1, json!({"i":1,"s":"2","f":3.0,"b":true,"x":"123"}));
        let (got, _) = run(
            "key_name data\n<parse>\n@type tsv\nkeys key1,key2,key3\n</parse>",
            &[(1, json!({"data": "value1\tvalue2\tvalueThree", "xxx": "x"}))],
        );
        assert_eq!(got[0].1, json!({"key1":"value1","key2":"value2","key3":"valueThree"}));
        let csv = "<parse>\n@type csv\nkeys key1,key2,key3\n</parse>";
        let (got, _) =
            run(&format!("key_name data\n{csv}"), &[(1, json!({"data": "value1,\"value2\",\"value\"\"ThreeYes!\""}))]);
        assert_eq!(got[0].1, json!({"key1":"value1","key2":"value2","key3":"value\"ThreeYes!"}));
        let (got, _) = run(
            &format!("key_name $.data.log\n{csv}"),
            &[(1, json!({"data": {"log": "value1,\"value2\",\"value\"\"ThreeYes!\""}}))],
        );
        assert_eq!(got[0].1["key3"], json!("value\"ThreeYes!"));
        assert!(conf(&format!("key_name $.data.log\nremove_key_name_field true\n{csv}"))
            .unwrap_err()
            .to_string()
            .contains("nested"));
    }

    #[test]
    fn hash_value_field_and_inject_key_prefix() {
        let data = json!({"data": "{\"xxx\":\"first\",\"yyy\":\"second\"}", "xxx": "x", "yyy": "y"});
        let json = "key_name data\n<parse>\n@type json\n</parse>";
        let (got, _) = run(&format!("{json}\nhash_value_field parsed"), &[(1, data.clone())]);
        assert_eq!(got[0].1, json!({"parsed": {"xxx":"first","yyy":"second"}}));
        let (got, _) = run(&format!("{json}\nhash_value_field parsed\nreserve_data yes"), &[(1, data.clone())]);
        assert_eq!(
            got[0].1,
            json!({"data": data["data"], "xxx": "x", "yyy": "y", "parsed": {"xxx":"first","yyy":"second"}})
        );
        let (got, _) = run(&format!("{json}\nhash_value_field parsed\ninject_key_prefix data."), &[(1, data.clone())]);
        assert_eq!(got[0].1, json!({"parsed": {"data.xxx":"first","data.yyy":"second"}}));
        let (got, _) = run(&format!("{json}\ninject_key_prefix data.\nreserve_data yes"), &[(1, data.clone())]);
        assert_eq!(
            got[0].1,
            json!({"data": data["data"], "xxx": "x", "yyy": "y", "data.xxx":"first","data.yyy":"second"})
        );
        // hash_value_field with a failed parse: an empty hash (reserve_data).
        let (got, _) =
            run(&format!("{json}\nhash_value_field parsed\nreserve_data yes"), &[(1, json!({"data": "nope"}))]);
        assert_eq!(got[0].1, json!({"data": "nope", "parsed": {}}));
    }

    #[test]
    fn invalid_utf8_and_replace_invalid_sequence() {
        let mut entries = Vec::new();
        let mut rec = Vec::new();
        raw::map_header(&mut rec, 1);
        raw::str(&mut rec, b"message");
        raw::str(&mut rec, b"a\xff b");
        encode::entry(&mut entries, EventTime::new(1, 0), encode::TimeFormat::EventTime, &rec);
        let b = EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(entries),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap();
        let re = "key_name message\n<parse>\n@type regexp\nexpression /^(?<a>\\S+) (?<b>\\S+)$/\n</parse>";
        let mut f = conf(re).unwrap().build();
        let (mut out, mut fails) = (Vec::new(), Vec::new());
        assert_eq!(f.filter(&b, &mut out, &mut fails), 0);
        assert_eq!(fails[0].error, FilterParserError::InvalidUtf8);
        let mut f = conf(&format!("{re}\nreplace_invalid_sequence true")).unwrap().build();
        let (mut out, mut fails) = (Vec::new(), Vec::new());
        assert_eq!(f.filter(&b, &mut out, &mut fails), 1);
        let ev = spate_protocol::Events::new(&out, EntriesFormat::Packed).next().unwrap();
        assert_eq!(ev.record.get(b"a").and_then(|v| v.as_str()), Some(&b"a?"[..]));
    }

    #[test]
    fn big_records_merge_in_linear_time() {
        // 20k fields in the record and 20k parsed: the hashed indexes keep this fast.
        let mut rec = serde_json::Map::new();
        let mut inner = serde_json::Map::new();
        for i in 0..20_000 {
            rec.insert(format!("k{i}"), json!(i));
            inner.insert(format!("k{}", i + 10_000), json!("new"));
        }
        rec.insert("data".into(), json!(Value::Object(inner).to_string()));
        let (got, _) =
            run("key_name data\nreserve_data true\n<parse>\n@type json\n</parse>", &[(1, Value::Object(rec))]);
        let out = got[0].1.as_object().unwrap();
        assert_eq!(out.len(), 30_001);
        assert_eq!(out["k0"], json!(0));
        assert_eq!(out["k15000"], json!("new"));
        assert_eq!(out["k29999"], json!("new"));
    }

    #[test]
    fn config_errors() {
        assert!(conf("<parse>\n@type json\n</parse>")
            .unwrap_err()
            .to_string()
            .contains("'key_name' parameter is required"));
        assert!(conf("key_name x").unwrap_err().to_string().contains("<parse> section is required"));
        assert!(conf("key_name x\n<parse>\n@type nope\n</parse>")
            .unwrap_err()
            .to_string()
            .contains("unknown parser type"));
        // v0.12 style `format`.
        assert!(conf("key_name x\nformat json").is_ok());
    }
}
