//! Tests of `filter/grep.rs`.

use super::*;
use bytes::Bytes;
use spate_protocol::encode::{self, raw};
use spate_protocol::{EventTime, Mode, Options};

/// A record from JSON (key order kept).
fn rec(json: &str) -> Vec<u8> {
    spate_protocol::json::to_msgpack(json.as_bytes()).unwrap()
}

fn batch_of(recs: &[Vec<u8>]) -> EventBatch {
    let mut e = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        encode::entry(&mut e, EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, r);
    }
    EventBatch::from_entries(
        Bytes::from_static(b"filter.test"),
        Bytes::from(e),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .unwrap()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, p)| (k.to_string(), p.to_string())).collect()
}

fn regexps(v: &[(&str, &str)]) -> GrepConf {
    GrepConf { regexps: pairs(v), ..Default::default() }
}

fn excludes(v: &[(&str, &str)]) -> GrepConf {
    GrepConf { excludes: pairs(v), ..Default::default() }
}

fn group(re: &[(&str, &str)], ex: &[(&str, &str)]) -> GrepGroup {
    GrepGroup { regexps: pairs(re), excludes: pairs(ex) }
}

/// Indices (event times) of the kept events.
fn kept(conf: &GrepConf, recs: &[Vec<u8>]) -> Vec<u32> {
    let f = GrepFilter::new(conf).unwrap();
    match f.filter(batch_of(recs)) {
        None => vec![],
        Some(b) => {
            assert_eq!(b.count as usize, b.events().count());
            b.events().map(|e| e.time.sec).collect()
        }
    }
}

fn messages() -> Vec<Vec<u8>> {
    [
        "2013/01/13T07:02:11.124202 INFO GET /ping",
        "2013/01/13T07:02:13.232645 WARN POST /auth",
        "2013/01/13T07:02:21.542145 WARN GET /favicon.ico",
        "2013/01/13T07:02:43.632145 WARN POST /login",
    ]
    .iter()
    .map(|m| rec(&format!(r#"{{"foo":"bar","message":"{m}"}}"#)))
    .collect()
}

fn records() -> Vec<Vec<u8>> {
    [
        ("2013/01/13T07:02:11.124202", "INFO", "GET", "/ping"),
        ("2013/01/13T07:02:13.232645", "WARN", "POST", "/auth"),
        ("2013/01/13T07:02:21.542145", "WARN", "GET", "/favicon.ico"),
        ("2013/01/13T07:02:43.632145", "WARN", "POST", "/login"),
        ("2013/01/13T07:02:44.959307", "ERROR", "POST", "/login"),
        ("2013/01/13T07:02:45.444992", "ERROR", "GET", "/ping"),
        ("2013/01/13T07:02:51.247941", "WARN", "GET", "/info"),
        ("2013/01/13T07:02:53.108366", "WARN", "POST", "/ban"),
    ]
    .iter()
    .map(|(t, l, m, p)| rec(&format!(r#"{{"time":"{t}","level":"{l}","method":"{m}","path":"{p}"}}"#)))
    .collect()
}

fn err(conf: &GrepConf) -> String {
    GrepFilter::new(conf).unwrap_err().to_string()
}

// --- configure (test_filter_grep.rb "configure") ---

#[test]
fn legacy_regexp_n_keeps_the_space_after_the_key() {
    let conf = GrepConf { regexp_n: vec![(1, "message  foo".into())], ..Default::default() };
    assert_eq!(kept(&conf, &[rec(r#"{"message":"a foo"}"#), rec(r#"{"message":"afoo"}"#)]), vec![0]);
    let conf = GrepConf { exclude_n: vec![(1, "message  foo".into())], ..Default::default() };
    assert_eq!(kept(&conf, &[rec(r#"{"message":"a foo"}"#), rec(r#"{"message":"afoo"}"#)]), vec![1]);
    let conf = GrepConf { regexp_n: vec![(3, "message".into())], ..Default::default() };
    assert_eq!(err(&conf), "regexp3 does not contain 2 parameters");
}

#[test]
fn legacy_patterns_are_bare_regexps() {
    // Regexp.compile("/x/") matches a literal "/x/".
    let conf = GrepConf { regexp_n: vec![(1, "path /x/".into())], ..Default::default() };
    assert_eq!(kept(&conf, &[rec(r#"{"path":"/x/"}"#), rec(r#"{"path":"x"}"#)]), vec![0]);
}

#[test]
fn duplicate_keys_are_config_errors() {
    let flat =
        GrepConf { regexp_n: vec![(1, "message test".into()), (2, "message test2".into())], ..Default::default() };
    assert_eq!(err(&flat), "regexp2 contains a duplicated key, message");
    assert_eq!(err(&regexps(&[("message", "test"), ("message", "test2")])), "Duplicate key: message");
    let mix = GrepConf { regexp_n: vec![(1, "message test".into())], ..regexps(&[("message", "test")]) };
    assert_eq!(err(&mix), "Duplicate key: message");
    let and = GrepConf { and: vec![group(&[("message", "test"), ("message", "test")], &[])], ..Default::default() };
    assert_eq!(err(&and), "Duplicate key in <and>: message");
    let and2 = GrepConf {
        and: vec![group(&[("message", "test")], &[]), group(&[("message", "test")], &[])],
        ..Default::default()
    };
    assert_eq!(err(&and2), "Duplicate key in <and>: message");
    let top_and = GrepConf { and: vec![group(&[("message", "test")], &[])], ..regexps(&[("message", "test")]) };
    assert_eq!(err(&top_and), "Duplicate key in <and>: message");
    let and_ex = GrepConf { and: vec![group(&[], &[("message", "test"), ("message", "test")])], ..Default::default() };
    assert_eq!(err(&and_ex), "Duplicate key in <and>: message");
    let and_ex2 = GrepConf {
        and: vec![group(&[], &[("message", "test")]), group(&[], &[("message", "test")])],
        ..Default::default()
    };
    assert_eq!(err(&and_ex2), "Duplicate key in <and>: message");
    let ex_or = GrepConf { or: vec![group(&[], &[("message", "test")])], ..excludes(&[("message", "test")]) };
    assert_eq!(err(&ex_or), "Duplicate key in <or>: message");
    // Different pools may share a key.
    let ok = GrepConf { exclude_n: vec![(1, "message x".into())], ..regexps(&[("message", "test")]) };
    assert!(GrepFilter::new(&ok).is_ok());
}

#[test]
fn groups_cannot_mix_regexp_and_exclude() {
    let and = GrepConf { and: vec![group(&[("message", "/test/")], &[("level", "/debug/")])], ..Default::default() };
    assert_eq!(err(&and), "Do not specify both <regexp> and <exclude> in <and>");
    let or = GrepConf { or: vec![group(&[("message", "/test/")], &[("level", "/debug/")])], ..Default::default() };
    assert_eq!(err(&or), "Do not specify both <regexp> and <exclude> in <or>");
}

#[test]
fn patterns_with_slashes_and_character_classes() {
    let conf = GrepConf {
        regexps: pairs(&[("message", "/[a-z]test/")]),
        excludes: pairs(&[("message", "/[A-Z]test/")]),
        ..Default::default()
    };
    let recs = [rec(r#"{"message":"xtest"}"#), rec(r#"{"message":"Xtest"}"#), rec(r#"{"message":"xtest Atest"}"#)];
    assert_eq!(kept(&conf, &recs), vec![0]);
    assert!(err(&regexps(&[("message", "/abc")])).contains("missing right slash"));
}

// --- filter_stream ---

#[test]
fn empty_config_passes_the_same_batch() {
    let f = GrepFilter::new(&GrepConf::default()).unwrap();
    let b = batch_of(&messages());
    let ptr = b.entries.as_ptr();
    let out = f.filter(b).unwrap();
    assert_eq!(out.entries.as_ptr(), ptr, "pass-through returns the same bytes");
    assert_eq!(out.count, 4);
}

#[test]
fn all_pass_returns_the_same_batch() {
    let f = GrepFilter::new(&regexps(&[("foo", "bar")])).unwrap();
    let b = batch_of(&messages());
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
}

#[test]
fn regexp_n_and_exclude_n() {
    let conf = GrepConf { regexp_n: vec![(1, "message WARN".into())], ..Default::default() };
    assert_eq!(kept(&conf, &messages()), vec![1, 2, 3]);
    let conf = GrepConf { exclude_n: vec![(1, "message favicon".into())], ..Default::default() };
    assert_eq!(kept(&conf, &messages()), vec![0, 1, 3]);
}

#[test]
fn regexp_and_exclude_sections() {
    assert_eq!(kept(&regexps(&[("message", "WARN")]), &messages()), vec![1, 2, 3]);
    assert_eq!(kept(&excludes(&[("message", "favicon")]), &messages()), vec![0, 1, 3]);
    let both = GrepConf { excludes: pairs(&[("message", "favicon")]), ..regexps(&[("message", "WARN")]) };
    assert_eq!(kept(&both, &messages()), vec![1, 3]);
}

#[test]
fn all_dropped_is_none() {
    let f = GrepFilter::new(&regexps(&[("message", "ERROR")])).unwrap();
    assert!(f.filter(batch_of(&messages())).is_none());
}

#[test]
fn many_keys_fall_back_to_lookups_per_expression() {
    for n in [SLOTS, SLOTS + 1] {
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let conf =
            GrepConf { excludes: keys.iter().map(|k| (k.clone(), "^x$".to_string())).collect(), ..Default::default() };
        let last = keys.last().unwrap();
        let recs = [rec(r#"{"a":"x"}"#), rec(&format!(r#"{{"{last}":"x"}}"#)), rec(&format!(r#"{{"{last}":"y"}}"#))];
        assert_eq!(kept(&conf, &recs), vec![0, 2], "{n} keys");
    }
}

#[test]
fn invalid_entries_are_not_copied() {
    let msgs = messages();
    let entry = |i: usize| {
        let mut e = Vec::new();
        encode::entry(&mut e, EventTime::new(i as u32, 0), encode::TimeFormat::EventTime, &msgs[i]);
        e
    };
    let mut e = entry(0);
    e.extend_from_slice(&[0x92, 0x01, 0xa1, b'x']); // [1, "x"]: not a record
    e.extend_from_slice(&entry(1));
    e.extend_from_slice(&entry(2));
    let b = EventBatch::from_entries(
        Bytes::from_static(b"t"),
        Bytes::from(e),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .unwrap();
    assert_eq!((b.count, b.invalid), (3, 1));
    let f = GrepFilter::new(&excludes(&[("message", "favicon")])).unwrap();
    let out = f.filter(b).unwrap();
    assert_eq!((out.count, out.invalid), (2, 0));
    assert_eq!(out.entries[..], [entry(0), entry(1)].concat()[..]);
}

#[test]
fn kept_records_are_byte_identical() {
    let f = GrepFilter::new(&excludes(&[("message", "favicon|auth")])).unwrap();
    let msgs = messages();
    let out = f.filter(batch_of(&msgs)).unwrap();
    let got: Vec<&[u8]> = out.events().map(|e| e.record.as_bytes()).collect();
    assert_eq!(got, vec![&msgs[0][..], &msgs[3][..]]);
    let mut json = Vec::new();
    out.events().next().unwrap().record.write_json(&mut json);
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"foo":"bar","message":"2013/01/13T07:02:11.124202 INFO GET /ping"}"#
    );
}

#[test]
fn invalid_utf8_is_scrubbed_and_retried() {
    let mut r = Vec::new();
    raw::map_header(&mut r, 1);
    raw::str(&mut r, b"message");
    raw::str(&mut r, b"\xff WARN");
    assert_eq!(kept(&regexps(&[("message", "WARN")]), &[r.clone()]), vec![0]);
    // Ruby matches the scrubbed text "? WARN": `.` matches the replacement.
    assert_eq!(kept(&regexps(&[("message", r"^. WARN$")]), &[r.clone()]), vec![0]);
    assert_eq!(kept(&regexps(&[("message", r"^\? WARN$")]), &[r]), vec![0]);
}

#[test]
fn and_or_sections() {
    let and = GrepConf { and: vec![group(&[("level", "^INFO$"), ("method", "^GET$")], &[])], ..Default::default() };
    assert_eq!(kept(&and, &records()[..4]), vec![0]);
    let or_ex = GrepConf { or: vec![group(&[], &[("level", "^INFO$"), ("method", "^GET$")])], ..Default::default() };
    assert_eq!(kept(&or_ex, &records()[..4]), vec![1, 3]);
    let or_re = GrepConf { or: vec![group(&[("level", "^INFO$"), ("method", "^GET$")], &[])], ..Default::default() };
    assert_eq!(kept(&or_re, &records()[..4]), vec![0, 2]);
    let and_ex = GrepConf { and: vec![group(&[], &[("level", "^INFO$"), ("method", "^GET$")])], ..Default::default() };
    assert_eq!(kept(&and_ex, &records()[..4]), vec![1, 2, 3]);
}

#[test]
fn and_or_combos() {
    let and_re = || group(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")], &[]);
    let or_re = || group(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")], &[]);
    let ex = || group(&[], &[("level", "^WARN$"), ("method", "^GET$")]);
    let r = records();
    let c = GrepConf { and: vec![and_re()], or: vec![ex()], ..Default::default() };
    assert_eq!(kept(&c, &r), vec![4]);
    let c = GrepConf { and: vec![and_re(), ex()], ..Default::default() };
    assert_eq!(kept(&c, &r), vec![1, 3, 4, 5, 7]);
    let c = GrepConf { or: vec![or_re()], and: vec![ex()], ..Default::default() };
    assert_eq!(kept(&c, &r), vec![0, 1, 3, 4, 5, 7]);
    let c = GrepConf { or: vec![or_re(), ex()], ..Default::default() };
    assert_eq!(kept(&c, &r), vec![4]);
    let c = GrepConf { and: vec![and_re()], ..regexps(&[("path", "^/login$")]) };
    assert_eq!(kept(&c, &r), vec![3, 4]);
    let top = || regexps(&[("level", "^ERROR|WARN$"), ("method", "^GET|POST$")]);
    let c = GrepConf { or: vec![ex()], ..top() };
    assert_eq!(kept(&c, &r), vec![4]);
    let c = GrepConf { and: vec![ex()], ..top() };
    assert_eq!(kept(&c, &r), vec![1, 3, 4, 5, 7]);
}

#[test]
fn nested_keys() {
    let msgs: Vec<Vec<u8>> = ["INFO", "WARN", "WARN"]
        .iter()
        .map(|l| rec(&format!(r#"{{"foo":"bar","message":{{"nest1":{{"nest2":"{l}"}}}}}}"#)))
        .collect();
    assert_eq!(kept(&regexps(&[("$.message.nest1.nest2", "WARN")]), &msgs), vec![1, 2]);
    assert_eq!(kept(&excludes(&[("$.message.nest1.nest2", "WARN")]), &msgs), vec![0]);
    assert_eq!(kept(&regexps(&[("$['message']['nest1']['nest2']", "INFO")]), &msgs), vec![0]);
    let arr = [rec(r#"{"a":[{"b":"x"},{"b":"y"}]}"#)];
    assert_eq!(kept(&regexps(&[("$.a[1].b", "^y$")]), &arr), vec![0]);
    assert_eq!(kept(&regexps(&[("$.a[-2].b", "^x$")]), &arr), vec![0]);
    assert_eq!(kept(&regexps(&[("$['a'][0]['b']", "^y$")]), &arr), Vec::<u32>::new());
}

#[test]
fn non_string_values_match_as_ruby_to_s() {
    // test_filter_grep.rb "grep non-string jsonable values".
    for v in [r#"["0"]"#, r#"{"0":"0"}"#, "0", "0.1"] {
        let r = rec(&format!(r#"{{"foo":"bar","message":{v}}}"#));
        let conf = GrepConf { regexp_n: vec![(1, "message 0".into())], ..Default::default() };
        assert_eq!(kept(&conf, &[r]), vec![0], "{v}");
    }
    let r = rec(r#"{"foo":"bar","message":true}"#);
    let conf = GrepConf { regexp_n: vec![(1, "message true".into())], ..Default::default() };
    assert_eq!(kept(&conf, &[r]), vec![0]);
    // Exact Ruby text for containers and floats.
    let r = rec(r#"{"m":{"a":[1,"x",null,true,1.5]},"f":1e20,"g":100.0}"#);
    assert_eq!(
        kept(&regexps(&[("m", r#"^\{"a" => \[1, "x", nil, true, 1\.5\]\}$"#)]), std::slice::from_ref(&r)),
        vec![0]
    );
    assert_eq!(kept(&regexps(&[("f", r"^1\.0e\+20$")]), std::slice::from_ref(&r)), vec![0]);
    assert_eq!(kept(&regexps(&[("g", r"^100\.0$")]), &[r]), vec![0]);
}

#[test]
fn missing_keys_and_nil_match_as_empty_string() {
    let recs = [rec(r#"{"a":"x"}"#), rec(r#"{"status":404}"#), rec(r#"{"status":null}"#)];
    assert_eq!(kept(&regexps(&[("status", "^404$")]), &recs), vec![1]);
    // fluentd matches `record[key].to_s`: a missing key is "".
    assert_eq!(kept(&regexps(&[("status", "^$")]), &recs), vec![0, 2]);
    assert_eq!(kept(&excludes(&[("nokey", "x")]), &recs), vec![0, 1, 2]);
    assert_eq!(kept(&excludes(&[("nokey", ".*")]), &recs), Vec::<u32>::new());
    assert_eq!(kept(&regexps(&[("$.no.such", "^$")]), &recs), vec![0, 1, 2]);
}

#[test]
fn digging_through_a_scalar_keeps_the_event_like_fluentd() {
    // `record.dig("a", "b")` on {"a": "str"} raises in Ruby; fluentd's rescue keeps it.
    let recs = [rec(r#"{"a":"str"}"#), rec(r#"{"a":{"b":"no"}}"#), rec(r#"{"a":[1]}"#)];
    assert_eq!(kept(&regexps(&[("$.a.b", "^yes$")]), &recs), vec![0, 2]);
}

#[test]
fn ruby_regexp_syntax() {
    let recs = [rec(r#"{"m":"Line one\nline TWO\n"}"#), rec(r#"{"m":"ab12 {\"k\":1}"}"#), rec(r#"{"m":"١٢"}"#)];
    let k = |p: &str| kept(&regexps(&[("m", p)]), &recs);
    assert_eq!(k("^line"), vec![0], "^ matches at line starts");
    assert_eq!(k(r"\Aline"), Vec::<u32>::new());
    assert_eq!(k(r"TWO$"), vec![0]);
    assert_eq!(k(r"TWO\Z"), vec![0]);
    assert_eq!(k(r"TWO\z"), Vec::<u32>::new());
    assert_eq!(k("/^LINE ONE$/i"), vec![0]);
    assert_eq!(k("/one.line/"), Vec::<u32>::new());
    assert_eq!(k("/one.line/m"), vec![0], "Ruby's m is dot-all");
    assert_eq!(k("(?m:one.line)"), vec![0]);
    assert_eq!(k(r#"\{"k":1\}"#), vec![1]);
    assert_eq!(k(r#"{"k":1}"#), vec![1], "literal braces as in Ruby");
    assert_eq!(k(r"^ab\d{,2} "), vec![1]);
    assert_eq!(k(r"\d"), vec![1], r"\d is ASCII-only in Ruby");
    assert_eq!(k(r"\h\h"), vec![1]);
    assert_eq!(k(r"(?<word>[a-z]+)\d"), vec![1]);
    assert_eq!(k(r"(?'w'ab)"), vec![1]);
    assert_eq!(k(r"a(?#comment)b"), vec![1]);
    assert_eq!(k(r"\/"), Vec::<u32>::new());
    // Look-around and backreferences (fancy-regex).
    assert_eq!(k(r"^(?!Line)"), vec![0, 1, 2]);
    assert_eq!(k(r"\A(?!Line)"), vec![1, 2]);
    assert_eq!(k(r"(?<=ab)12"), vec![1]);
    assert_eq!(k(r"(\d)\1"), Vec::<u32>::new());
    assert_eq!(k(r"([a-z])\1"), Vec::<u32>::new());
    assert_eq!(k(r"(n)e \1"), Vec::<u32>::new());
    let e = err(&regexps(&[("m", "(unclosed")]));
    assert!(e.starts_with(r#"invalid regexp "(unclosed" for key "m": "#), "{e}");
    let e = err(&regexps(&[("m", "[a-")]));
    assert!(e.contains("[a-"), "{e}");
}

#[test]
fn bad_accessor_is_a_config_error() {
    let e = err(&regexps(&[("$.", "x")]));
    assert_eq!(e, r#"invalid record accessor "$.": empty keys in dot notation"#);
}

#[test]
fn message_mode_batches() {
    let r = rec(r#"{"message":"WARN x"}"#);
    let mut e = Vec::new();
    encode::time(&mut e, EventTime::new(7, 0), encode::TimeFormat::Integer);
    e.extend_from_slice(&r);
    let mk = || {
        EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(e.clone()),
            EntriesFormat::Message,
            Mode::Message,
            Options::default(),
            100,
        )
        .unwrap()
    };
    let f = GrepFilter::new(&regexps(&[("message", "WARN")])).unwrap();
    let b = mk();
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b).unwrap().entries.as_ptr(), ptr);
    let f = GrepFilter::new(&excludes(&[("message", "WARN")])).unwrap();
    assert!(f.filter(mk()).is_none());
}
