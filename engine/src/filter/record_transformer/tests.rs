//! record_transformer's tests, ported from fluentd's test/plugin/test_filter_record_transformer.rb
//! (expected values derived from that file) plus spate's own edge cases.

use super::*;
use bytes::Bytes;
use spate_protocol::encode;
use spate_protocol::{EntriesFormat, Mode, Options};

pub(super) const HOST: &str = "myhost";
/// 2010-05-04 03:02:01 UTC, as in test_filter_record_transformer.rb.
pub(super) const T: EventTime = EventTime::new(1_272_942_121, 0);

pub(super) fn rec(json: &str) -> Vec<u8> {
    spate_protocol::json::to_msgpack(json.as_bytes()).unwrap()
}

pub(super) fn batch_of(tag: &'static str, recs: &[Vec<u8>]) -> EventBatch {
    let mut e = Vec::new();
    for r in recs {
        encode::entry(&mut e, T, encode::TimeFormat::EventTime, r);
    }
    EventBatch::from_entries(
        Bytes::from_static(tag.as_bytes()),
        Bytes::from(e),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .unwrap()
}

pub(super) fn conf(record: &[(&str, &str)]) -> RecordTransformerConf {
    RecordTransformerConf {
        record: record.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        hostname: HOST.into(),
        ..Default::default()
    }
}

pub(super) fn json_of(r: RecordRef<'_>) -> String {
    let mut out = Vec::new();
    r.write_json(&mut out);
    String::from_utf8(out).unwrap()
}

/// Output (time, record JSON) of each event.
pub(super) fn run_tag(c: &RecordTransformerConf, tag: &'static str, recs: &[&str]) -> Vec<(EventTime, String)> {
    let f = RecordTransformer::new(c).unwrap();
    let recs: Vec<Vec<u8>> = recs.iter().map(|r| rec(r)).collect();
    match f.filter(batch_of(tag, &recs)) {
        None => vec![],
        Some(b) => {
            assert_eq!(b.count as usize, b.events().count());
            b.events().map(|e| (e.time, json_of(e.record))).collect()
        }
    }
}

pub(super) fn run(c: &RecordTransformerConf, recs: &[&str]) -> Vec<String> {
    run_tag(c, "test.tag", recs).into_iter().map(|(_, j)| j).collect()
}

pub(super) fn one(c: &RecordTransformerConf, r: &str) -> String {
    run(c, &[r]).pop().unwrap()
}

pub(super) fn time_text(t: EventTime) -> String {
    let mut o = Vec::new();
    crate::log::format_time(&mut o, t.sec as i64, 0, 0);
    String::from_utf8(o).unwrap()
}

pub(super) const BASE: &str = r#"{"foo":"bar","message":"1","nest":{"k1":"v1","k2":"v2"}}"#;

pub(super) fn typical() -> RecordTransformerConf {
    conf(&[
        ("hostname", "${hostname}"),
        ("tag", "${tag}"),
        ("time", "${time}"),
        ("message", "${hostname} ${tag_parts[-1]} ${record[\"message\"]}"),
    ])
}

// --- configure ---

#[test]
fn default_config_passes_batches_unchanged() {
    let f = RecordTransformer::new(&RecordTransformerConf::default()).unwrap();
    let b = batch_of("t", &[rec(BASE)]);
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
}

#[test]
fn keep_keys_needs_renew_record() {
    let c = RecordTransformerConf { keep_keys: vec!["a".into()], ..Default::default() };
    let e = RecordTransformer::new(&c).unwrap_err().to_string();
    assert_eq!(e, "`renew_record` must be true to use `keep_keys`");
}

#[test]
fn bad_remove_key_accessor_is_an_error() {
    let c = RecordTransformerConf { remove_keys: vec!["$.a b".into()], ..Default::default() };
    assert!(RecordTransformer::new(&c).unwrap_err().to_string().contains("whitespace"));
}

// --- options ---

#[test]
fn typical_usage() {
    let out = run(&typical(), &[BASE, &BASE.replace(r#""1""#, r#""2""#)]);
    let t = time_text(T);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(
            *o,
            format!(
                r#"{{"foo":"bar","message":"myhost tag {}","nest":{{"k1":"v1","k2":"v2"}},"hostname":"myhost","tag":"test.tag","time":"{t}"}}"#,
                i + 1
            )
        );
    }
}

#[test]
fn remove_keys() {
    let c = RecordTransformerConf { remove_keys: vec!["foo".into(), "message".into()], ..typical() };
    let t = time_text(T);
    assert_eq!(
        one(&c, BASE),
        format!(r#"{{"nest":{{"k1":"v1","k2":"v2"}},"hostname":"myhost","tag":"test.tag","time":"{t}"}}"#)
    );
}

#[test]
fn remove_keys_with_nested_key() {
    let c = RecordTransformerConf { remove_keys: vec!["$.nest.k1".into()], ..conf(&[]) };
    assert_eq!(one(&c, BASE), r#"{"foo":"bar","message":"1","nest":{"k2":"v2"}}"#);
    // Array elements (delete_at, applied in order), missing paths, paths through scalars.
    let c = RecordTransformerConf {
        remove_keys: vec![
            "$.a[0]".into(),
            "$.a[0]".into(),
            "$.foo.x".into(),
            "$.no.x".into(),
            "$['nest']['k2']".into(),
        ],
        ..conf(&[])
    };
    assert_eq!(
        one(&c, r#"{"foo":"bar","a":[1,2,3],"nest":{"k1":"v1","k2":"v2"}}"#),
        r#"{"foo":"bar","a":[3],"nest":{"k1":"v1"}}"#
    );
    let c = RecordTransformerConf { remove_keys: vec!["$.a[-1].b".into()], ..conf(&[]) };
    assert_eq!(one(&c, r#"{"a":[{"b":1},{"b":2,"c":3}]}"#), r#"{"a":[{"b":1},{"c":3}]}"#);
}

#[test]
fn renew_record() {
    let c = RecordTransformerConf { renew_record: true, ..typical() };
    let t = time_text(T);
    assert_eq!(
        one(&c, BASE),
        format!(r#"{{"hostname":"myhost","tag":"test.tag","time":"{t}","message":"myhost tag 1"}}"#)
    );
}

#[test]
fn renew_time_key() {
    let c = RecordTransformerConf { renew_time_key: Some("message".into()), ..conf(&[]) };
    let out = run_tag(&c, "t", &[r#"{"message":"1272942123.0"}"#, r#"{"message":"1272942124.5"}"#]);
    assert_eq!(out[0], (EventTime::new(1_272_942_123, 0), r#"{"message":"1272942123.0"}"#.to_string()));
    assert_eq!(out[1].0, EventTime::new(1_272_942_124, 500_000_000));
}

#[test]
fn renew_time_key_and_remove_keys() {
    let c = RecordTransformerConf {
        renew_time_key: Some("event_time_key".into()),
        remove_keys: vec!["event_time_key".into()],
        ..conf(&[("event_time_key", "${record[\"message\"]}")])
    };
    let out = run_tag(&c, "t", &[r#"{"foo":"bar","message":"1272942123.0"}"#]);
    assert_eq!(out, vec![(EventTime::new(1_272_942_123, 0), r#"{"foo":"bar","message":"1272942123.0"}"#.to_string())]);
}

#[test]
fn renew_time_key_follows_ruby_to_f_and_time_at() {
    let c = RecordTransformerConf { renew_time_key: Some("t".into()), ..conf(&[]) };
    let times: Vec<EventTime> = run_tag(
        &c,
        "x",
        &[
            r#"{"t":0.3}"#,
            r#"{"t":1272942123}"#,
            r#"{"t":" 12_5.25abc"}"#,
            r#"{"t":"junk"}"#,
            r#"{"t":null}"#,
            r#"{"t":-1.5}"#,
        ],
    )
    .into_iter()
    .map(|(t, _)| t)
    .collect();
    assert_eq!(
        times,
        vec![
            EventTime::new(0, 299_999_999), // Time.at(0.3).nsec
            EventTime::new(1_272_942_123, 0),
            EventTime::new(125, 250_000_000),
            EventTime::new(0, 0),
            EventTime::new(0, 0),
            EventTime::new(u32::MAX - 1, 500_000_000), // -2 wrapped as EventTime packs it
        ]
    );
    // Values without to_f raise in Ruby: the event becomes an error event (dropped).
    let out = run_tag(&c, "x", &[r#"{"t":{"a":1}}"#, r#"{"t":"5"}"#, r#"{"t":true}"#]);
    assert_eq!(out, vec![(EventTime::new(5, 0), r#"{"t":"5"}"#.to_string())]);
}

#[test]
fn keep_keys() {
    let c = RecordTransformerConf {
        renew_record: true,
        keep_keys: vec!["foo".into(), "bar".into(), "baz".into(), "message".into()],
        ..conf(&[])
    };
    let out = run(&c, &[BASE, r#"{"foo":"bar","message":null}"#]);
    assert_eq!(out, vec![r#"{"foo":"bar","message":"1"}"#, r#"{"foo":"bar","message":null}"#]);
}

#[test]
fn json_values() {
    let c = conf(&[
        ("hash_field", r#"{"k1":100, "k2":"foobar"}"#),
        ("array_field", "[1, 2, 3]"),
        ("mixed_field", r#"{"hello":[1,2,3], "world":{"foo":"bar"}}"#),
        ("float", "[1.0, -2, null, true]"),
        ("bad", "[1, 2"),
    ]);
    assert_eq!(
        one(&c, r#"{}"#),
        r#"{"hash_field":{"k1":100,"k2":"foobar"},"array_field":[1,2,3],"mixed_field":{"hello":[1,2,3],"world":{"foo":"bar"}},"float":[1.0,-2,null,true],"bad":"[1, 2"}"#
    );
    // fluentd parses these with allow_comments.
    let c = conf(&[("c", "{\n  \"a\": 1, // one\n  /* two */ \"b\": \"//x\"\n}")]);
    assert_eq!(one(&c, "{}"), r#"{"c":{"a":1,"b":"//x"}}"#);
}

// --- placeholders ---

#[test]
fn hostname_tag_and_tag_parts() {
    assert_eq!(one(&conf(&[("message", "${hostname}")]), "{}"), r#"{"message":"myhost"}"#);
    assert_eq!(one(&conf(&[("message", "${tag}")]), "{}"), r#"{"message":"test.tag"}"#);
    assert_eq!(one(&conf(&[("message", "${tag_parts[0]} ${tag_parts[-1]}")]), "{}"), r#"{"message":"test tag"}"#);
    let c = conf(&[("message", "${tag_prefix[1]} ${tag_prefix[-2]} ${tag_suffix[2]} ${tag_suffix[-3]}")]);
    let out = run_tag(&c, "prefix.test.tag.suffix", &["{}"]);
    assert_eq!(out[0].1, r#"{"message":"prefix.test prefix.test.tag tag.suffix test.tag.suffix"}"#);
    // Out of range: nil (typed) or "" (in a string); non-canonical indexes are unknown.
    let c = conf(&[("a", "${tag_parts[2]}"), ("b", "x${tag_parts[-3]}y"), ("c", "${tag_parts[01]}")]);
    assert_eq!(one(&c, "{}"), r#"{"a":null,"b":"xy","c":null}"#);
}

#[test]
fn time_placeholder() {
    assert_eq!(one(&conf(&[("message", "${time}")]), "{}"), format!(r#"{{"message":"{}"}}"#, time_text(T)));
}

#[test]
fn record_keys() {
    let c = RecordTransformerConf {
        remove_keys: vec!["eventType0".into()],
        ..conf(&[("message", "bar ${record[\"message\"]}"), ("eventtype", "${record[\"eventType0\"]}")])
    };
    let out = run(&c, &[r#"{"eventType0":"bar","message":"1"}"#, r#"{"eventType0":"bar","message":"2"}"#]);
    assert_eq!(out, vec![r#"{"message":"bar 1","eventtype":"bar"}"#, r#"{"message":"bar 2","eventtype":"bar"}"#]);
    // Single quotes (what enable_ruby configs use) work too.
    assert_eq!(one(&conf(&[("m", "${record['a']}!")]), r#"{"a":"x"}"#), r#"{"a":"x","m":"x!"}"#);
    // Keys starting with @.
    assert_eq!(
        one(&conf(&[("foo", "${record[\"@timestamp\"]}")]), r#"{"@timestamp":"foo"}"#),
        r#"{"@timestamp":"foo","foo":"foo"}"#
    );
}

#[test]
fn reserved_keys_are_not_confused() {
    let c = conf(&[("new_tag", "${tag}"), ("new_record_tag", "${record[\"tag\"]}")]);
    assert_eq!(
        one(&c, r#"{"tag":"tag","time":"time"}"#),
        r#"{"tag":"tag","time":"time","new_tag":"test.tag","new_record_tag":"tag"}"#
    );
}

#[test]
fn json_values_with_placeholders() {
    let c = conf(&[("hash_field", "{\n  \"hostname\":\"${hostname}\",\n  \"tag\":\"${tag}\",\n  \"${tag}\":100\n}")]);
    assert_eq!(one(&c, "{}"), r#"{"hash_field":{"hostname":"myhost","tag":"test.tag","test.tag":100}}"#);
    let c = conf(&[("array_field", r#"["${hostname}", "${tag}"]"#)]);
    assert_eq!(one(&c, "{}"), r#"{"array_field":["myhost","test.tag"]}"#);
    let c = conf(&[("mixed_field", r#"[{"tag":"${tag}"}]"#)]);
    assert_eq!(one(&c, "{}"), r#"{"mixed_field":[{"tag":"test.tag"}]}"#);
    // Nested strings are typecast too; keys never are.
    let c = conf(&[("h", r#"{"n":"${record[\"n\"]}","${record[\"n\"]}":"k"}"#)]);
    assert_eq!(one(&c, r#"{"n":5}"#), r#"{"n":5,"h":{"n":5,"5":"k"}}"#);
}

#[test]
fn keys_with_placeholders() {
    let c = RecordTransformerConf { renew_record: true, ..conf(&[("${hostname}", "hostname"), ("foo.${tag}", "tag")]) };
    assert_eq!(run(&c, &[BASE, BASE]), vec![r#"{"myhost":"hostname","foo.test.tag":"tag"}"#; 2]);
    // An expanded key that exists in the record overwrites it in place; two keys
    // expanding to the same name: the last value at the first position.
    let c = conf(&[("${record[\"k\"]}", "1"), ("b", "2"), ("${tag_parts[0]}", "3"), ("x${tag_parts[9]}", "4")]);
    assert_eq!(one(&c, r#"{"a":0,"k":"test","x":0}"#), r#"{"a":0,"k":"test","x":"4","test":"3","b":"2"}"#);
}

pub(super) const SOURCES: [&str; 5] = [r#""string""#, "123", "[1,2]", r#"{"a":1,"b":2}"#, "null"];

pub(super) fn typecast_conf(auto: bool) -> RecordTransformerConf {
    RecordTransformerConf {
        auto_typecast: auto,
        ..conf(&[
            ("single", "${record[\"source\"]}"),
            ("multiple", "${record[\"source\"]}${record[\"source\"]}"),
            ("with_prefix", "prefix-${record[\"source\"]}"),
            ("with_suffix", "${record[\"source\"]}-suffix"),
            ("with_quote", "record[\"source\"][\"\"]"),
        ])
    }
}

#[test]
fn disabled_typecasting() {
    let recs: Vec<String> = SOURCES.iter().map(|s| format!(r#"{{"source":{s}}}"#)).collect();
    let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
    let out = run(&typecast_conf(false), &recs);
    // Ruby's to_s: Array/Hash#inspect (Ruby 3.4 hash style), nil -> "".
    let texts = ["string", "123", "[1, 2]", r#"{\"a\" => 1, \"b\" => 2}"#, ""];
    for ((o, s), t) in out.iter().zip(SOURCES).zip(texts) {
        assert_eq!(
            *o,
            format!(
                r#"{{"source":{s},"single":"{t}","multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
            )
        );
    }
}

#[test]
fn enabled_typecasting() {
    let recs: Vec<String> = SOURCES.iter().map(|s| format!(r#"{{"source":{s}}}"#)).collect();
    let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
    let out = run(&typecast_conf(true), &recs);
    let texts = ["string", "123", "[1, 2]", r#"{\"a\" => 1, \"b\" => 2}"#, ""];
    for ((o, s), t) in out.iter().zip(SOURCES).zip(texts) {
        assert_eq!(
            *o,
            format!(
                r#"{{"source":{s},"single":{s},"multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
            )
        );
    }
}

#[test]
fn unknown_placeholders_expand_to_nil() {
    let c =
        conf(&[("message", "${unknown}"), ("m2", "a ${unknown} b __OLD_STYLE__!"), ("m3", "${record[\"missing\"]}")]);
    assert_eq!(one(&c, "{}"), r#"{"message":null,"m2":"a  b !","m3":null}"#);
}

#[test]
fn unchanged_batches_pass_through() {
    let c = RecordTransformerConf { remove_keys: vec!["absent".into(), "$.nest.absent".into()], ..conf(&[]) };
    let f = RecordTransformer::new(&c).unwrap();
    let b = batch_of("t", &[rec(BASE), rec(BASE)]);
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
    // Re-setting a field to its own value changes nothing either.
    let f = RecordTransformer::new(&conf(&[("foo", "bar")])).unwrap();
    let b = batch_of("t", &[rec(BASE)]);
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
    // remove_keys only: untouched records are copied as they are around touched ones.
    let c = RecordTransformerConf { remove_keys: vec!["b".into(), "$.n.x".into()], ..conf(&[]) };
    let f = RecordTransformer::new(&c).unwrap();
    let recs = [r#"{"a":1}"#, r#"{"a":2,"b":3}"#, r#"{"n":{"x":null,"y":1}}"#, r#"{"n":"x"}"#];
    let out = f.filter(batch_of("t", &recs.map(rec))).unwrap();
    let got: Vec<String> = out.events().map(|e| json_of(e.record)).collect();
    assert_eq!(got, vec![r#"{"a":1}"#, r#"{"a":2}"#, r#"{"n":{"y":1}}"#, r#"{"n":"x"}"#]);
    // Unchanged events around a changed one are all kept, in order.
    let f = RecordTransformer::new(&conf(&[("a", "${record[\"b\"]}")])).unwrap();
    let recs = [r#"{"a":"x","b":"x"}"#, r#"{"a":"x","b":"y"}"#, r#"{"a":"z","b":"z"}"#];
    let out = f.filter(batch_of("t", &recs.map(rec))).unwrap();
    let got: Vec<String> = out.events().map(|e| json_of(e.record)).collect();
    assert_eq!(got, vec![recs[0], r#"{"a":"y","b":"y"}"#, recs[2]]);
    // A change rebuilds the batch; the time is kept as received.
    let f = RecordTransformer::new(&conf(&[("foo", "baz")])).unwrap();
    let b = batch_of("t", &[rec(BASE)]);
    let ptr = b.entries.as_ptr();
    let out = f.filter(b).unwrap();
    assert_ne!(out.entries.as_ptr(), ptr);
    assert_eq!(out.events().next().unwrap().time, T);
}

#[test]
fn duplicate_and_non_string_keys() {
    // {"a":1,"a":2,1:"int","b":3}: an overwritten duplicate is written once, at its
    // first position; a non-string key passes through.
    let mut r = Vec::new();
    raw::map_header(&mut r, 4);
    for (k, v) in [("a", 1u64), ("a", 2)] {
        raw::str(&mut r, k.as_bytes());
        raw::uint(&mut r, v);
    }
    raw::uint(&mut r, 1);
    raw::str(&mut r, b"int");
    raw::str(&mut r, b"b");
    raw::uint(&mut r, 3);
    let c = RecordTransformerConf {
        remove_keys: vec!["b".into()],
        ..conf(&[("a", "${record[\"a\"]}"), ("i", "${record[\"1\"]}")])
    };
    let f = RecordTransformer::new(&c).unwrap();
    let out = f.filter(batch_of("t", &[r])).unwrap();
    assert_eq!(json_of(out.events().next().unwrap().record), r#"{"a":2,"1":"int","i":"int"}"#);
}

#[test]
fn message_mode_batches_become_packed() {
    let r = rec(r#"{"a":1}"#);
    let mut e = Vec::new();
    encode::time(&mut e, EventTime::new(9, 0), encode::TimeFormat::Integer);
    e.extend_from_slice(&r);
    let b = EventBatch::from_entries(
        Bytes::from_static(b"m.t"),
        Bytes::from(e),
        EntriesFormat::Message,
        Mode::Message,
        Options::default(),
        100,
    )
    .unwrap();
    let f = RecordTransformer::new(&conf(&[("t", "${tag_parts[1]}")])).unwrap();
    let out = f.filter(b).unwrap();
    assert_eq!(out.format, EntriesFormat::Packed);
    let ev = out.events().next().unwrap();
    assert_eq!(ev.time, EventTime::new(9, 0));
    assert_eq!(json_of(ev.record), r#"{"a":1,"t":"t"}"#);
}
