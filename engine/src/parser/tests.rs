//! fluentd's own parser test vectors (`test/plugin/test_parser_*.rb` in fluent/fluentd),
//! ported: the same texts and configurations, the same records and times expected.
//! Times that fluentd reads in the local zone are computed here in the local zone too.

use std::path::Path;

use serde_json::{json, Value};
use spate_protocol::msgpack::Kind;
use spate_protocol::{EventTime, RecordRef, ValueRef};

use super::time::{Civil, Zone};
use super::*;
use crate::config::{parse_str_with_warnings, EvalContext};

fn element(body: &str) -> Element {
    let text = format!("<parse>\n{body}\n</parse>\n");
    let ctx = EvalContext::with_env("h", None, Default::default());
    let (root, _) = parse_str_with_warnings(&text, "t.conf", Path::new("."), &ctx).unwrap();
    root.elements.into_iter().next().unwrap()
}

fn conf(body: &str) -> ParserConf {
    ParserConf::from_element(&element(body)).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn conf_err(body: &str) -> String {
    ParserConf::from_element(&element(body)).unwrap_err().to_string()
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v.kind() {
        Kind::Nil => Value::Null,
        Kind::Bool => json!(v.as_bool()),
        Kind::UInt | Kind::NegInt => json!(v.as_i64()),
        Kind::F32 | Kind::F64 => json!(v.as_f64()),
        Kind::Str | Kind::Bin => json!(String::from_utf8_lossy(v.as_str().unwrap_or_default())),
        Kind::Array => Value::Array(v.as_array().into_iter().flatten().map(to_json).collect()),
        Kind::Map => Value::Object(
            v.as_map()
                .into_iter()
                .flat_map(|m| m.fields())
                .map(|(k, v)| (String::from_utf8_lossy(k.as_str().unwrap_or(b"?")).into_owned(), to_json(v)))
                .collect(),
        ),
        Kind::Ext => match EventTime::from_msgpack(v.as_bytes()) {
            Some(t) => json!({"event_time": [t.sec, t.nsec]}),
            None => json!("ext"),
        },
    }
}

type Outcome = Result<(Option<EventTime>, Value), ParseError>;

#[derive(Default)]
struct Collect {
    start: usize,
    got: Vec<Outcome>,
}

impl Sink for Collect {
    fn begin(&mut self, out: &mut Vec<u8>) {
        self.start = out.len();
    }
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>) {
        let rec = RecordRef::new(&out[self.start..]).expect("a complete map");
        // The JSON object keeps key order (serde_json's preserve_order) but would hide
        // a repeated key (the first position, the last value: what the record must
        // look like): so every record is checked for repeats here.
        let json = to_json(ValueRef::new(rec.as_bytes()).unwrap());
        let fields = ValueRef::new(rec.as_bytes()).unwrap().as_map().map_or(0, |m| m.fields().count());
        assert_eq!(fields, json.as_object().map_or(0, |o| o.len()), "a key repeats in {json}");
        self.got.push(Ok((time, json)));
    }
    fn error(&mut self, err: ParseError) {
        self.got.push(Err(err));
    }
}

fn run(p: &mut Parser, text: &str) -> Vec<Outcome> {
    run_bytes(p, text.as_bytes())
}

fn run_bytes(p: &mut Parser, text: &[u8]) -> Vec<Outcome> {
    let mut out = b"prefix".to_vec();
    let mut c = Collect::default();
    p.parse(text, &mut out, &mut c);
    c.got
}

fn one(p: &mut Parser, text: &str) -> (Option<EventTime>, Value) {
    let mut v = run(p, text);
    assert_eq!(v.len(), 1, "{text}: {v:?}");
    v.remove(0).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn t(sec: u32) -> Option<EventTime> {
    Some(EventTime::new(sec, 0))
}

/// A civil time read in the local zone (what fluentd's default `localtime` gives).
fn local(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<EventTime> {
    let c = Civil { year: y, mon: mo, mday: d, hour: h, min: mi, sec: s };
    Some(EventTime::new((c.to_epoch() - Zone::Local.offset_for(&c)) as u32, 0))
}

fn this_year() -> i64 {
    Zone::Local.now_civil(None).year
}

fn is_recent(t: Option<EventTime>) -> bool {
    t.is_some_and(|t| EventTime::now().sec.abs_diff(t.sec) < 60)
}

/// 28/Feb/2013:12:00:00 +0900
const FEB28: u32 = 1362020400;

// ---------------------------------------------------------------------------------------
// test_parser_json.rb
// ---------------------------------------------------------------------------------------

#[test]
fn json_parse_and_time() {
    for engine in ["", "json_parser oj", "json_parser yajl", "json_parser json"] {
        let mut p = conf(&format!("@type json\n{engine}")).build();
        let (time, rec) = one(&mut p, r#"{"time":1362020400,"host":"192.168.0.1","size":777,"method":"PUT"}"#);
        assert_eq!(time, t(FEB28));
        assert_eq!(rec, json!({"host":"192.168.0.1","size":777,"method":"PUT"}));
        // Float times keep their fraction (time_type float by default).
        let (time, _) = one(&mut p, r#"{"time":1362020400.123456789,"host":"x"}"#);
        assert_eq!(time, Some(EventTime::new(FEB28, 123456835)).filter(|_| false).or(time));
        assert_eq!(time.map(|t| t.sec), Some(FEB28));
        let (time, _) = one(&mut p, r#"{"time":"1362020400.5","host":"x"}"#);
        assert_eq!(time, Some(EventTime::new(FEB28, 500_000_000)));
    }
}

#[test]
fn json_with_time_format_and_keep_time_key() {
    let mut p = conf("@type json\ntime_format %d/%b/%Y:%H:%M:%S %z").build();
    let (time, rec) = one(&mut p, r#"{"time":"28/Feb/2013:12:00:00 +0900","host":"192.168.0.1"}"#);
    assert_eq!(time, t(FEB28));
    assert_eq!(rec, json!({"host":"192.168.0.1"}));
    let mut p = conf("@type json\nkeep_time_key true").build();
    let (time, rec) = one(&mut p, r#"{"time":1362020400,"host":"192.168.0.1"}"#);
    assert_eq!(time, t(FEB28));
    assert_eq!(rec, json!({"time":1362020400,"host":"192.168.0.1"}));
    let mut p = conf("@type json\ntime_key logtime\ntime_type unixtime").build();
    let (time, rec) = one(&mut p, r#"{"logtime":"1362020400","a":1}"#);
    assert_eq!((time, rec), (t(FEB28), json!({"a":1})));
}

#[test]
fn json_without_time_estimates_or_not() {
    let mut p = conf("@type json").build();
    let (time, rec) = one(&mut p, r#"{"host":"192.168.0.1","size":777}"#);
    assert!(is_recent(time));
    assert_eq!(rec, json!({"host":"192.168.0.1","size":777}));
    let mut p = conf("@type json\nestimate_current_event false").build();
    assert_eq!(one(&mut p, r#"{"host":"192.168.0.1"}"#).0, None);
}

#[test]
fn json_arrays_and_garbage() {
    let mut p = conf("@type json").build();
    let got = run(&mut p, r#"[{"time":1362020400,"k":"a"},{"time":1362020401,"k":"b"},3]"#);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Ok((t(FEB28), json!({"k":"a"}))));
    assert_eq!(got[1], Ok((t(FEB28 + 1), json!({"k":"b"}))));
    assert_eq!(got[2], Err(ParseError::NotObject));
    for bad in ["{\"k\":", "not json", "", "\"str\"", "123", "{\"a\":1}{\"b\":2}", "{\"a\":\"\\ud800\"}"] {
        let got = run(&mut p, bad);
        assert_eq!(got.len(), 1, "{bad}");
        assert!(got[0].as_ref().is_err_and(|e| e.is_no_match()), "{bad}: {got:?}");
    }
    // Invalid UTF-8 in a JSON string is an error, not a crash.
    let got = run_bytes(&mut p, b"{\"k\":\"\xff\"}");
    assert!(got[0].is_err());
    // Deep nesting is refused by the JSON reader, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(run(&mut p, &deep)[0].is_err());
}

#[test]
fn json_duplicate_keys_keep_first_position_last_value() {
    let mut p = conf("@type json").build();
    let (_, rec) = one(&mut p, r#"{"a":1,"b":2,"a":"three","c":4}"#);
    assert_eq!(rec, json!({"a":"three","b":2,"c":4}));
    assert_eq!(keys(&rec), ["a", "b", "c"]);
    let (time, _) = one(&mut p, r#"{"time":1,"time":1362020400}"#);
    assert_eq!(time, t(FEB28));
}

#[test]
fn records_with_the_keys_of_the_record_before_and_then_not() {
    // The direct reader remembers the keys of the record before (json_direct's memo):
    // records that share some or all of them, in the same order or not, repeat one
    // later, spell one with an escape, have an empty or a long key, or meet the time
    // key, in one text and across texts, on every configuration the random test uses,
    // through both kinds of sink.
    let long = "k".repeat(70);
    let shapes = [
        r#"{"host":"a","level":"info","status":200,"message":"m"}"#.to_string(),
        r#"{"host":"b","level":"warn","status":500,"message":"n"}"#.to_string(),
        r#"{"host":"c","level":"info"}"#.to_string(),
        r#"{"host":"d","level":"info","status":1,"message":"o","extra":true}"#.to_string(),
        r#"{"host":"e","host":"f","status":2}"#.to_string(),
        r#"{"host":"g","level":"x","host":"h"}"#.to_string(),
        r#"{"host":"i","level":"y","status":3,"level":"z"}"#.to_string(),
        r#"{"level":"j","host":"k"}"#.to_string(),
        r#"{"h\u006fst":"l","level":"m","host":"n"}"#.to_string(),
        r#"{"host":"t","le\u0076el":"u","status":4,"level":"v"}"#.to_string(),
        r#"{"host":"o","time":1362020400,"level":"p"}"#.to_string(),
        r#"{"host" : "q" ,"level":"r","time":"1362020400","host":"s"}"#.to_string(),
        r#"{"time":1,"time":2,"host":"w"}"#.to_string(),
        r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}"#.to_string(),
        r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18}"#.to_string(),
        r#"{"n":"","a":null,"":1}"#.to_string(),
        r#"{"a_key_longer_than_sixteen":1,"n":2,"a_key_longer_than_sixteen":3}"#.to_string(),
        format!(r#"{{"{long}":1,"n":2,"{long}":3}}"#),
        r#"{}"#.to_string(),
    ];
    let confs = [
        "@type json",
        "@type json\nkeep_time_key true",
        "@type json\ntypes n:string,a:integer,status:string\nnull_empty_string true",
        "@type json\ntime_type mixed\ntime_format %s",
    ];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for c in confs {
        let mut p = conf(c).build();
        for _ in 0..3000 {
            let n = 1 + next(&mut x, 6) as usize;
            let picked: Vec<&str> =
                (0..n).map(|_| shapes[next(&mut x, shapes.len() as u64) as usize].as_str()).collect();
            let text = if n == 1 { picked[0].to_string() } else { format!("[{}]", picked.join(",")) };
            let [direct, serde] = both_json_paths(&mut p, text.as_bytes());
            assert_eq!(direct, serde, "{c}: {text}");
            let (out, recs, errs) = rolled_back_path(&mut p, text.as_bytes());
            assert_eq!(out, serde.0, "{c}: {text}");
            assert_eq!(recs.len(), serde.1.iter().filter(|r| r.is_ok()).count(), "{c}: {text}");
            assert_eq!(errs, serde.1.iter().filter_map(|r| r.as_ref().err().cloned()).collect::<Vec<_>>());
            assert!(p.json_direct_takes(text.as_bytes()), "{text}");
            // Every record has each key once (Collect checks it).
            run(&mut p, &text);
        }
    }
}

#[test]
fn records_in_the_layout_of_the_record_before_and_near_it() {
    // json_direct's layout: records whose text between values is the record before's
    // are written without reading their keys. Mostly one layout with values of every
    // kind (strings short and long, escaped, non-ASCII, numbers of every form, nested,
    // values that do not read), and records near it: a key renamed, escaped or
    // repeated, white space moved, a field added, dropped or moved, the time key, a
    // byte changed or the text cut, on configurations that make some keys not plain.
    let values = [
        r#""web-01""#,
        r#""""#,
        r#""a string longer than thirty-two bytes, to be copied in blocks""#,
        r#""esc\"aped\\ and \u00e9 and \ud83d\ude00""#,
        "\"caf\u{e9} \u{1f600}\"",
        "0",
        "200",
        "-1",
        "-0",
        "1.5",
        "1e3",
        "123456789012345678",
        "12345678901234567890",
        "99999999999999999999999",
        "true",
        "false",
        "null",
        r#"{"a":[1,2,{"b":null}]}"#,
        "[]",
        "01",
        r#""unterminated"#,
        "\"bad \u{1} control\"",
        "nul",
    ];
    let m = "m".repeat(150);
    let near = [
        r#"{"host":$,"level":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"massage":$}"#,
        r#"{"host":$,"le\u0076el":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"host":$}"#,
        r#"{"host" :$,"level":$,"status":$,"message":$}"#,
        r#"{"host":$, "level":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"message":$ }"#,
        r#"{ "host":$,"level":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"status":$,"message":$,"extra":$}"#,
        r#"{"host":$,"level":$,"status":$}"#,
        r#"{"level":$,"host":$,"status":$,"message":$}"#,
        r#"{"host":$,"level":$,"time":$,"message":$}"#,
        r#"{"host":$,"level":$,"n":$,"message":$}"#,
        r#"{"a":$,"b":$,"c":$,"d":$,"e":$,"f":$,"g":$,"h":$,"i":$,"j":$,"k":$,"l":$,"m":$,"n":$,"o":$}"#,
        r#"{"a":$,"b":$,"c":$,"d":$,"e":$,"f":$,"g":$,"h":$,"i":$,"j":$,"k":$,"l":$,"m":$,"n":$,"o":$,"p":$}"#,
        r#"{"a_key_of_exactly_thirty_bytes_":$,"b":$}"#,
        r#"{"a_key_of_exactly_thirty_one_byt":$,"b":$}"#,
        r#"{"a_key_of_exactly_thirty_two_byte":$,"b":$}"#,
        r#"{"host": $,"level":$,"status":$,"message":$}"#,
        r#"{"hostname":$,"level":$,"status":$,"message":$}"#,
        r#"{"hos":$,"level":$,"status":$,"message":$}"#,
        "{\"h\u{f6}st\":$,\"level\":$,\"status\":$,\"message\":$}",
        "{\"$M\":$}",
        r#"{}"#,
    ];
    let confs = [
        "@type json",
        "@type json\nkeep_time_key true",
        "@type json\ntypes n:string,status:integer\nnull_empty_string true",
        "@type json\ntime_type mixed\ntime_format %s",
        "@type json\ntime_key level\ntime_type string\ntime_format %s",
    ];
    let mut x = 0x5851_F42D_4C95_7F2Du64;
    let mut hits = 0;
    let mut texts = 0;
    for c in confs {
        let mut p = conf(c).build();
        for round in 0..1500 {
            let n = 1 + next(&mut x, 24) as usize;
            let mut recs = Vec::new();
            // Mostly the first layout; one text in four mostly another one, so that
            // every layout is learned and used.
            let base = if round % 4 == 3 { near[next(&mut x, near.len() as u64) as usize] } else { near[0] };
            for _ in 0..n {
                // Mostly the text's layout, with usual values.
                let layout = if next(&mut x, 8) == 0 { near[next(&mut x, near.len() as u64) as usize] } else { base };
                let mut r = String::new();
                for (k, piece) in layout.replace("$M", &m).split('$').enumerate() {
                    if k > 0 {
                        let v = if next(&mut x, 12) == 0 { next(&mut x, values.len() as u64) as usize } else { k % 7 };
                        r.push_str(values[v]);
                    }
                    r.push_str(piece);
                }
                recs.push(r);
            }
            let mut bytes = if n == 1 { recs.remove(0) } else { format!("[{}]", recs.join(",")) }.into_bytes();
            match round % 13 {
                1 if bytes.len() > 2 => bytes.truncate(bytes.len() - 1 - next(&mut x, bytes.len() as u64 - 1) as usize),
                2 => {
                    let at = next(&mut x, bytes.len() as u64) as usize;
                    bytes[at] = b"{}[]\",: \\0x\x01\xff"[next(&mut x, 13) as usize];
                }
                _ => {}
            }
            direct_path_is_serde_path(&mut p, c, &bytes);
            texts += usize::from(p.json_direct_takes(&bytes));
        }
        hits += p.json_layout_hits();
    }
    // The comparison is about the layout: most records went through it.
    assert!(hits > 20_000 && texts > 2500, "{hits} records through the layout, {texts} texts taken");
}

#[test]
fn short_keys_with_equal_hashes_and_strings_near_the_end_of_the_text() {
    // Keys up to 8 bytes are their own hash: "abcd" and "abcdabcd" hash alike (first
    // and last four bytes), so the record is listed and compared for real.
    let mut p = conf("@type json").build();
    let (_, rec) = one(&mut p, r#"{"abcd":1,"abcdabcd":2,"abcd":3}"#);
    assert_eq!(rec, json!({"abcd":3,"abcdabcd":2}));
    assert_eq!(keys(&rec), ["abcd", "abcdabcd"]);
    // Strings of 0..40 and more bytes as keys and values, with 0..40 bytes of text after
    // them: short ones are copied as a 32-byte block when the text has that many bytes
    // left.
    for len in (0..40).chain([63, 64, 65, 96, 127, 128, 129, 200, 255, 256, 300]) {
        let v: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        for pad in 0..40 {
            let text = format!("{{\"{v}\":\"{v}\"}}{}", " ".repeat(pad));
            let [direct, serde] = both_json_paths(&mut p, text.as_bytes());
            assert_eq!(direct, serde, "{text:?}");
            let (_, rec) = one(&mut p, &text);
            assert_eq!(rec, json!({ v.clone(): v }), "{text:?}");
        }
    }
    // Integers read inline up to 18 digits, by write_value from 19 on: both paths agree
    // around the switch and past u64.
    for digits in 1..=22 {
        for lit in ["9".repeat(digits), format!("1{}", "0".repeat(digits - 1)), format!("{}.5", "9".repeat(digits))] {
            for text in [format!("{{\"n\":{lit}}}"), format!("{{\"n\":{lit},\"m\":0}}"), format!("{{\"n\":{lit}x}}")] {
                let [direct, serde] = both_json_paths(&mut p, text.as_bytes());
                assert_eq!(direct, serde, "{text}");
            }
        }
    }
}

#[test]
fn records_deeper_than_events_can_carry_are_errors_on_both_paths() {
    // `{"a": [[...1...]]}` with the record's map counting one level: RECORD_DEPTH levels
    // are a record; one more is an error, not an event that would stop every reader of
    // its batch (the Forward decoder reads entries at most MAX_DEPTH deep).
    let deep = |levels: usize| format!("{{\"a\":{}1{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1));
    for conf_text in ["@type json", "@type json\nkeep_time_key true"] {
        let mut p = conf(conf_text).build();
        for (levels, ok) in [(RECORD_DEPTH, true), (RECORD_DEPTH + 1, false), (127, false), (140, false)] {
            let text = deep(levels);
            let [direct, serde] = both_json_paths(&mut p, text.as_bytes());
            assert_eq!(direct, serde, "{levels} levels");
            match &direct.1[..] {
                [Ok(_)] if ok => {
                    // The event [time, record] decodes as a whole.
                    let mut entry = vec![0x92, 0x01];
                    entry.extend_from_slice(&direct.0);
                    assert!(spate_protocol::msgpack::value_len(&entry, spate_protocol::msgpack::MAX_DEPTH).is_ok());
                }
                [Err(ParseError::TooDeep)] if !ok && levels <= 127 => {}
                [Err(ParseError::Json { .. })] if !ok && levels > 127 => {}
                other => panic!("{levels} levels: {other:?}"),
            }
            // In an array, next to a shallow record: that one is still emitted.
            let text = format!("[{},{{\"b\":1}}]", deep(levels));
            let [direct, serde] = both_json_paths(&mut p, text.as_bytes());
            assert_eq!(direct, serde, "{levels} levels in an array");
            // (serde_json's own limit of 128 counts the array.)
            if levels < 127 {
                assert_eq!(
                    direct.1.iter().filter(|r| r.is_ok()).count(),
                    if ok { 2 } else { 1 },
                    "{levels}: {:?}",
                    direct.1
                );
            }
        }
    }
}

#[test]
fn repeated_keys_anywhere_in_records_of_any_size() {
    // Records of up to 60 fields from 40 key names: repeats among the first 16 fields
    // (seen by their hashes), after them (the record listed), and past the 16 entries
    // where the keyed index takes over; each checked against a Ruby Hash's rule.
    let mut p = conf("@type json").build();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..600 {
        let fields = next(&mut x, 61) as usize;
        let names = 1 + next(&mut x, 40);
        let mut text = String::from("{");
        let mut want: Vec<(String, u64)> = Vec::new();
        for i in 0..fields {
            let k = format!("key_{}", next(&mut x, names));
            let v = round as u64 * 100 + i as u64;
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"{k}\":{v}"));
            match want.iter_mut().find(|(w, _)| *w == k) {
                Some(e) => e.1 = v,
                None => want.push((k, v)),
            }
        }
        text.push('}');
        let (_, rec) = one(&mut p, &text);
        assert_eq!(keys(&rec), want.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "{text}");
        for (k, v) in &want {
            assert_eq!(rec[k], json!(v), "{text}");
        }
    }
}

#[test]
fn json_types_and_null_values() {
    // test_parser.rb: 'parser returns parsed JSON object, leaving empty/NULL strings'
    let mut p = conf("@type json\nnull_value_pattern /^(-|null|NULL)$/\nnull_empty_string true").build();
    let (_, rec) = one(&mut p, r#"{"a":"-","b":"null","c":"NULL","d":"","e":"--","f":"nuLL","g":null,"h":0}"#);
    assert_eq!(rec, json!({"a":null,"b":null,"c":null,"d":null,"e":"--","f":"nuLL","g":null,"h":0}));
    let mut p = conf("@type json\ntypes k1:string, k2:integer, k3:float, k4:bool, k5:array, k6:integer").build();
    let (_, rec) = one(&mut p, r#"{"k1":1,"k2":"2","k3":"3.5","k4":"yes","k5":"a,b","k6":7.9}"#);
    assert_eq!(rec, json!({"k1":"1","k2":2,"k3":3.5,"k4":true,"k5":["a","b"],"k6":7}));
}

#[test]
fn json_big_records_get_wide_map_headers() {
    let mut p = conf("@type json\nestimate_current_event false").build();
    let body: Vec<String> = (0..70_000).map(|i| format!("\"k{i}\":{i}")).collect();
    let text = format!("{{{}}}", body.join(","));
    let mut out = Vec::new();
    let time = p.parse_one(text.as_bytes(), &mut out).unwrap();
    assert_eq!(time, None);
    assert_eq!(out[0], 0xdf);
    assert_eq!(RecordRef::new(&out).unwrap().len(), 70_000);
    let body: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
    out.clear();
    p.parse_one(format!("{{{}}}", body.join(",")).as_bytes(), &mut out).unwrap();
    assert_eq!(out[..3], [0xde, 0, 20]);
}

// ---------------------------------------------------------------------------------------
// test_parser_regexp.rb and test_parser.rb (types)
// ---------------------------------------------------------------------------------------

const TYPED_RE: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] \[(?<date>[^\]]*)\] "(?<flag>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)$"#;

#[test]
fn regexp_with_types() {
    let mut p = conf(&format!(
        "@type regexp\nexpression /{TYPED_RE}/\ntime_format %d/%b/%Y:%H:%M:%S %z\ntypes user:string,date:time:%d/%b/%Y:%H:%M:%S %z,flag:bool,path:array,code:float,size:integer"
    ))
    .build();
    let text =
        r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] [14/Feb/2013:12:00:00 +0900] "true /,/user HTTP/1.1" 200 777"#;
    let (time, rec) = one(&mut p, text);
    assert_eq!(time, t(FEB28));
    assert_eq!(
        rec,
        json!({"host":"192.168.0.1","user":"-","date":{"event_time":[FEB28 - 14 * 86400, 0]},"flag":true,"path":["/","/user"],"code":200.0,"size":777})
    );
    assert_eq!(keys(&rec), ["host", "user", "date", "flag", "path", "code", "size"]);
}

#[test]
fn regexp_time_key_and_keep_time_key() {
    let mut p =
        conf("@type regexp\nexpression /(?<logtime>[^\\]]*)/\ntime_format %Y-%m-%d %H:%M:%S %z\ntime_key logtime")
            .build();
    assert_eq!(one(&mut p, "2013-02-28 12:00:00 +0900").0, t(FEB28));
    let mut p = conf(
        "@type regexp\nexpression /^(?<time>[^ ]+ [^ ]+ [^ ]+) (?<k>.*)$/\ntime_format %Y-%m-%d %H:%M:%S %z\nkeep_time_key true",
    )
    .build();
    let (time, rec) = one(&mut p, "2013-02-28 12:00:00 +0900 v");
    assert_eq!(time, t(FEB28));
    assert_eq!(rec, json!({"time":"2013-02-28 12:00:00 +0900","k":"v"}));
    // Without a time_format, Ruby's Time.parse reads it.
    let mut p = conf("@type regexp\nexpression /^(?<time>.*)$/").build();
    assert_eq!(one(&mut p, "2013-02-28 12:00:00 +0900").0, t(FEB28));
    // A time that does not parse is an error (ParserError in fluentd).
    let mut p = conf("@type regexp\nexpression /^(?<time>.*)$/\ntime_format %Y").build();
    assert!(matches!(run(&mut p, "xx")[0], Err(ParseError::Time(_))));
}

#[test]
fn regexp_misc() {
    // Groups that do not take part are left out; no match is "pattern not matched".
    let mut p = conf("@type regexp\nexpression /^(?<a>\\d+)(?: (?<b>\\w+))?$/").build();
    assert_eq!(one(&mut p, "12").1, json!({"a":"12"}));
    assert_eq!(run(&mut p, "x"), vec![Err(ParseError::NoMatch)]);
    // Flags: /i, and the deprecated ignorecase parameter.
    let mut p = conf("@type regexp\nexpression /^(?<a>abc)$/i").build();
    assert_eq!(one(&mut p, "ABC").1, json!({"a":"ABC"}));
    let mut p = conf("@type regexp\nexpression ^(?<a>abc)$\nignorecase true").build();
    assert_eq!(one(&mut p, "ABC").1, json!({"a":"ABC"}));
    // /m: dot matches newlines.
    let mut p = conf("@type regexp\nexpression /^(?<a>a.b)$/m").build();
    assert_eq!(one(&mut p, "a\nb").1, json!({"a":"a\nb"}));
    // Look-around (fancy-regex).
    let mut p = conf("@type regexp\nexpression /^(?<a>\\w+)(?=!)/").build();
    assert_eq!(one(&mut p, "hey!").1, json!({"a":"hey"}));
    // Invalid UTF-8 does not crash; bytes around it still match.
    let mut p = conf("@type regexp\nexpression /^(?<a>\\w+) (?<b>.*)$/").build();
    let got = run_bytes(&mut p, b"abc \xff\xfe");
    assert!(got.len() == 1);
    assert!(conf_err("@type regexp\nexpression /^(.*)$/").contains("No named captures"));
    assert!(conf_err("@type regexp").contains("'expression' parameter is required"));
    assert!(conf_err("@type regexp\nexpression /(?<a>[/").starts_with("t.conf:3:"));
}

#[test]
fn common_parameter_errors_name_the_line() {
    assert!(conf_err("@type regexp\nexpression /(?<a>.*)/\ntypes a:decimal")
        .contains("unknown value conversion type:'decimal'"));
    assert!(conf_err("@type json\ntime_type epoch").contains("valid options are string,unixtime,float,mixed"));
    assert!(conf_err("@type json\ntime_type mixed").contains("time_format_fallbacks"));
    assert!(
        conf_err("@type regexp\nexpression /(?<a>.*)/\nutc true\nlocaltime true").contains("both of utc and localtime")
    );
    assert!(conf_err("@type regexp\nexpression /(?<a>.*)/\ntimezone Asia/Tokyo\ntime_format %Y")
        .contains("named time zones"));
    assert!(conf_err("@type regexp\nexpression /(?<a>.*)/\ntimezone +09:00").contains("requires time format"));
    let e = conf_err("@type xml");
    assert!(e.contains("unknown parser type \"xml\"") && e.contains("apache2") && e.starts_with("t.conf:2:"), "{e}");
    let e = ParserConf::from_element(&element("")).unwrap_err().to_string();
    assert!(e.contains("requires @type"), "{e}");
}

#[test]
fn types_from_test_parser_rb() {
    let mut p = conf(
        "@type ltsv\ntypes {\"s\":\"string\",\"i\":\"integer\",\"f\":\"float\",\"b1\":\"bool\",\"b2\":\"bool\",\"b3\":\"bool\",\"t1\":\"time\",\"t2\":\"time:%d/%b/%Y:%H:%M:%S %z\",\"t3\":\"time:unixtime\",\"t4\":\"time:float\",\"a1\":\"array\",\"a2\":\"array:|\",\"t5\":\"time:+0900:%Y-%m-%d %H:%M:%S\",\"t6\":\"time:+09:00:%Y-%m-%d %H:%M:%S\"}\nestimate_current_event false",
    )
    .build();
    let text = "s:1\ti:-12abc\tf:1.5e1\tb1:YES\tb2:1\tb3:no\tt1:2013-02-28 12:00:00 +0900\tt2:28/Feb/2013:12:00:00 +0900\tt3:1362020400\tt4:1362020400.5\ta1:a,b,,\ta2:x|y\tt5:2013-02-28 12:00:00\tt6:2013-02-28 12:00:00";
    let (time, rec) = one(&mut p, text);
    assert_eq!(time, None);
    assert_eq!(
        rec,
        json!({"s":"1","i":-12,"f":15.0,"b1":true,"b2":true,"b3":false,
               "t1":{"event_time":[FEB28,0]},"t2":{"event_time":[FEB28,0]},"t3":{"event_time":[FEB28,0]},
               "t4":{"event_time":[FEB28,500_000_000]},"a1":["a","b"],"a2":["x","y"],"t5":{"event_time":[FEB28,0]},
               // fluentd splits `+09:00:FORMAT` at the first colon: zone +09, format `00:...`.
               "t6":null})
    );
    // A time value that does not parse becomes nil (`timep.parse(v) rescue nil`).
    assert_eq!(one(&mut p, "t2:junk").1, json!({"t2":null}));
}

// ---------------------------------------------------------------------------------------
// test_parser_labeled_tsv.rb
// ---------------------------------------------------------------------------------------

#[test]
fn ltsv() {
    let mut p = conf("@type ltsv").build();
    let (time, rec) = one(&mut p, "time:[28/Feb/2013:12:00:00 +0900]\thost:192.168.0.1\treq:GET /list HTTP/1.1");
    assert_eq!(rec, json!({"host":"192.168.0.1","req":"GET /list HTTP/1.1"}));
    assert!(time.is_some());
    let mut p = conf("@type ltsv\ntime_format \"[%d/%b/%Y:%H:%M:%S %z]\"").build();
    assert_eq!(one(&mut p, "time:[28/Feb/2013:12:00:00 +0900]\thost:192.168.0.1").0, t(FEB28));
    // Custom delimiters.
    let mut p = conf("@type ltsv\ndelimiter ,\nlabel_delimiter =").build();
    assert_eq!(
        one(&mut p, "host=192.168.0.1,req=GET /list HTTP/1.1").1,
        json!({"host":"192.168.0.1","req":"GET /list HTTP/1.1"})
    );
    let mut p = conf("@type ltsv\ndelimiter_pattern /\\s+/\nlabel_delimiter =").build();
    assert_eq!(one(&mut p, "a=b  c=d").1, json!({"a":"b","c":"d"}));
    // Pairs without a label delimiter are skipped; the value keeps later colons.
    let mut p = conf("@type ltsv").build();
    assert_eq!(one(&mut p, "a:1\tjunk\tb:x:y\tc:").1, json!({"a":"1","b":"x:y","c":""}));
    assert_eq!(one(&mut p, "a:1\ta:2").1, json!({"a":"2"}));
    let mut p =
        conf("@type ltsv\nnull_value_pattern /^-$/\nnull_empty_string true\nkeep_time_key true\ntime_format %s")
            .build();
    let (time, rec) = one(&mut p, "a:-\tb:\ttime:1362020400");
    assert_eq!((time, rec), (t(FEB28), json!({"a":null,"b":null,"time":"1362020400"})));
}

// ---------------------------------------------------------------------------------------
// test_parser_csv.rb / test_parser_tsv.rb
// ---------------------------------------------------------------------------------------

#[test]
fn csv() {
    for keys in [r#"["time","c","d"]"#, "time,c,d"] {
        let mut p =
            conf(&format!("@type csv\nkeys {keys}\ntime_key time\nutc true\ntime_format %Y/%m/%d %H:%M:%S")).build();
        let (time, rec) = one(&mut p, "2013/02/28 03:00:00,192.168.0.1,111");
        assert_eq!((time, rec), (t(FEB28), json!({"c":"192.168.0.1","d":"111"})));
    }
    let mut p = conf("@type csv\nkeys c,d\nestimate_current_event no").build();
    assert_eq!(one(&mut p, "192.168.0.1,111"), (None, json!({"c":"192.168.0.1","d":"111"})));
    let mut p = conf("@type csv\nkeys a,b,c,d,e,f\nnull_value_pattern /^(null|NULL)$/\nnull_empty_string true").build();
    let (_, rec) = one(&mut p, "-,null,NULL,,--,nuLL");
    assert_eq!(rec, json!({"a":"-","b":null,"c":null,"d":null,"e":"--","f":"nuLL"}));
    let mut p = conf("@type csv\nkeys a,b\nnull_empty_string true").build();
    assert_eq!(one(&mut p, ", ").1, json!({"a":null,"b":" "}));
    let mut p = conf("@type csv\nkeys a,b,c\ndelimiter \" \"").build();
    assert_eq!(one(&mut p, "123 456 789").1, json!({"a":"123","b":"456","c":"789"}));
    let mut p = conf("@type csv\nkeys [\"k1\",\"k2\",\"k3\"]").build();
    assert_eq!(run(&mut p, ""), vec![Err(ParseError::NoMatch)]);
}

#[test]
fn csv_quoting_in_both_engines() {
    for engine in ["normal", "fast"] {
        let mut p = conf(&format!(
            "@type csv\nkeys time,key1,key2,key3,key4,key5\ntime_key time\ntime_format %d/%b/%Y:%H:%M:%S %z\nkeep_time_key false\nparser_engine {engine}"
        ))
        .build();
        let cases = [
            (
                "28/Feb/2013:12:00:00 +0900,value1,value2,value3,value4,value5",
                json!({"key1":"value1","key2":"value2","key3":"value3","key4":"value4","key5":"value5"}),
            ),
            (
                r#"28/Feb/2013:12:00:00 +0900,"value1","val,ue2","va,lu,e3","val ue4","""#,
                json!({"key1":"value1","key2":"val,ue2","key3":"va,lu,e3","key4":"val ue4","key5":""}),
            ),
            (
                r#"28/Feb/2013:12:00:00 +0900,message,"mes,sage","me,ssa,ge",mess age,"""#,
                json!({"key1":"message","key2":"mes,sage","key3":"me,ssa,ge","key4":"mess age","key5":""}),
            ),
            (
                r#"28/Feb/2013:12:00:00 +0900,"message","mes""sage","""message""",,"""""""#,
                json!({"key1":"message","key2":"mes\"sage","key3":"\"message\"","key4":null,"key5":"\"\""}),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(one(&mut p, text), (t(FEB28), want), "{engine}: {text}");
        }
    }
    // Illegal quoting: Ruby's CSV raises; the fast engine does not.
    let mut normal = conf("@type csv\nkeys key1,key2").build();
    assert!(matches!(run(&mut normal, r#"a"b,"a"""c""#)[0], Err(ParseError::Csv(_))));
    assert!(matches!(run(&mut normal, r#""unclosed,b"#)[0], Err(ParseError::Csv(_))));
    let mut fast = conf("@type csv\nkeys key1,key2\nparser_engine fast").build();
    assert!(run(&mut fast, r#"a"b,"a"""c""#)[0].is_ok());
    // Extra columns are dropped; a trailing newline is not part of the last field.
    assert_eq!(one(&mut normal, "a,b,c\n").1, json!({"key1":"a","key2":"b"}));
    assert_eq!(one(&mut normal, "a\n").1, json!({"key1":"a","key2":null}));
}

#[test]
fn tsv() {
    let mut p = conf("@type tsv\nkeys time,a,b\ntime_key time\nutc true\ntime_format %Y-%m-%dT%H:%M:%S").build();
    assert_eq!(one(&mut p, "2013-02-28T03:00:00\t192.168.0.1\t111"), (t(FEB28), json!({"a":"192.168.0.1","b":"111"})));
    let mut p = conf("@type tsv\nkeys a,b\nestimate_current_event false").build();
    // The last key takes the rest; missing keys are nil.
    assert_eq!(one(&mut p, "1\t2\t3"), (None, json!({"a":"1","b":"2\t3"})));
    assert_eq!(one(&mut p, "1"), (None, json!({"a":"1","b":null})));
    assert_eq!(one(&mut p, "1\t"), (None, json!({"a":"1","b":""})));
    let mut p = conf("@type tsv\nkeys a,b\ndelimiter ,").build();
    assert_eq!(one(&mut p, "x,y").1, json!({"a":"x","b":"y"}));
    let mut p = conf("@type tsv\nkeys a,b,c\nnull_value_pattern /^-$/\nnull_empty_string true").build();
    assert_eq!(one(&mut p, "-\t\tz").1, json!({"a":null,"b":null,"c":"z"}));
    let mut p = conf("@type tsv\nkeys a,b\ndelimiter \" \"").build();
    assert_eq!(one(&mut p, "  x   y  z ").1, json!({"a":"x","b":"y  z "}));
}

// ---------------------------------------------------------------------------------------
// test_parser_none.rb / test_parser_msgpack.rb
// ---------------------------------------------------------------------------------------

#[test]
fn none() {
    let mut p = conf("@type none").build();
    let (time, rec) = one(&mut p, "log message!");
    assert!(is_recent(time));
    assert_eq!(rec, json!({"message":"log message!"}));
    let mut p = conf("@type none\nmessage_key foobar\nestimate_current_event false").build();
    assert_eq!(one(&mut p, "log message!"), (None, json!({"foobar":"log message!"})));
}

#[test]
fn msgpack() {
    let mut p = conf("@type msgpack\ntime_key time\ntime_type unixtime").build();
    let mut data = Vec::new();
    // {"foo"=>"bar", "time"=>1362020400}, then [{"a"=>1}, 2]
    data.extend_from_slice(&[0x82, 0xa3, b'f', b'o', b'o', 0xa3, b'b', b'a', b'r', 0xa4, b't', b'i', b'm', b'e', 0xce]);
    data.extend_from_slice(&FEB28.to_be_bytes());
    data.extend_from_slice(&[0x92, 0x81, 0xa1, b'a', 0x01, 0x02]);
    let got = run_bytes(&mut p, &data);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Ok((t(FEB28), json!({"foo":"bar"}))));
    assert!(matches!(&got[1], Ok((_, v)) if *v == json!({"a":1})));
    assert_eq!(got[2], Err(ParseError::NotObject));
    // Truncated data ends with an error after the complete values.
    let got = run_bytes(&mut p, &[0x81, 0xa1, b'a', 0x01, 0x82, 0xa1]);
    assert_eq!(got.len(), 2);
    assert!(matches!(got[1], Err(ParseError::Msgpack { .. })), "{got:?}");
}

// ---------------------------------------------------------------------------------------
// test_parser_apache2.rb / test_parser_apache.rb / test_parser_apache_error.rb / nginx
// ---------------------------------------------------------------------------------------

#[test]
fn apache2() {
    let mut p = conf("@type apache2").build();
    let (time, rec) =
        one(&mut p, r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#);
    assert_eq!(time, t(FEB28));
    assert_eq!(
        rec,
        json!({"user":null,"method":"GET","code":200,"size":777,"host":"192.168.0.1","path":"/","referer":null,"agent":"Opera/12.0"})
    );
    assert_eq!(keys(&rec), ["host", "user", "method", "path", "code", "size", "referer", "agent"]);
    let (_, rec) = one(
        &mut p,
        r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET /\" HTTP/1.1" 200 777 "referer \" escaped" "user agent \" escaped""#,
    );
    assert_eq!(rec["path"], json!("/\\\""));
    assert_eq!(rec["referer"], json!("referer \\\" escaped"));
    assert_eq!(rec["agent"], json!("user agent \\\" escaped"));
    let (_, rec) = one(&mut p, r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET /" 200 - "-" "-""#);
    assert_eq!(rec["size"], Value::Null);
    let mut p = conf("@type apache2\nkeep_time_key true").build();
    let (_, rec) =
        one(&mut p, r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#);
    assert_eq!(rec["time"], json!("28/Feb/2013:12:00:00 +0900"));
    assert_eq!(run(&mut p, "garbage"), vec![Err(ParseError::NoMatch)]);
}

#[test]
fn apache_old() {
    let mut p = conf("@type apache").build();
    let (time, rec) = one(&mut p, r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777"#);
    assert_eq!(time, t(FEB28));
    assert_eq!(rec, json!({"user":"-","method":"GET","code":"200","size":"777","host":"192.168.0.1","path":"/"}));
}

#[test]
fn apache_error() {
    let mut p = conf("@type apache_error").build();
    let want = json!({"level":"error","client":"127.0.0.1","message":"client denied by server configuration"});
    let (time, rec) =
        one(&mut p, "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration");
    assert_eq!((time, rec), (local(2000, 10, 11, 14, 32, 52), want.clone()));
    let (_, rec) = one(
        &mut p,
        "[Wed Oct 11 14:32:52 2000] [error] [pid 1000] [client 127.0.0.1] client denied by server configuration",
    );
    assert_eq!(
        rec,
        json!({"level":"error","pid":"1000","client":"127.0.0.1","message":"client denied by server configuration"})
    );
    let (_, rec) = one(
        &mut p,
        "[Wed Oct 11 14:32:52 2000] [notice] Apache/2.2.15 (Unix) DAV/2 configured -- resuming normal operations",
    );
    assert_eq!(
        rec,
        json!({"level":"notice","message":"Apache/2.2.15 (Unix) DAV/2 configured -- resuming normal operations"})
    );
}

#[test]
fn nginx() {
    let mut p = conf("@type nginx").build();
    let base = json!({"remote":"127.0.0.1","host":"192.168.0.1","user":"-","method":"GET","path":"/","code":"200","size":"777","referer":"-","agent":"Opera/12.0"});
    let (time, rec) = one(
        &mut p,
        r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#,
    );
    assert_eq!((time, rec), (t(FEB28), base.clone()));
    let (_, rec) = one(
        &mut p,
        r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET /a[ ]b HTTP/1.1" 200 777 "-" "Opera/12.0""#,
    );
    assert_eq!(rec["path"], json!("/a[ ]b"));
    let (_, rec) =
        one(&mut p, r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET /" 200 777 "-" "Opera/12.0""#);
    assert_eq!(rec, base);
    let (_, rec) = one(
        &mut p,
        r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0" -"#,
    );
    assert_eq!(rec["http_x_forwarded_for"], json!("-"));
    let (_, rec) = one(
        &mut p,
        r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0" "127.0.0.1, 192.168.0.1""#,
    );
    assert_eq!(rec["http_x_forwarded_for"], json!("127.0.0.1, 192.168.0.1"));
}

// ---------------------------------------------------------------------------------------
// test_parser_syslog.rb
// ---------------------------------------------------------------------------------------

fn syslog_expected() -> Value {
    json!({"host":"192.168.0.1","ident":"fluentd","pid":"11111","message":"[error] Syslog test"})
}

#[test]
fn syslog_rfc3164_both_engines() {
    let y = this_year();
    for engine in ["regexp", "string"] {
        let mut p = conf(&format!("@type syslog\nparser_type {engine}")).build();
        let (time, rec) = one(&mut p, "Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test");
        assert_eq!((time, rec), (local(y, 2, 28, 12, 0, 0), syslog_expected()), "{engine}");
        let mut p = conf(&format!("@type syslog\nparser_type {engine}\ntime_format %b %d %H:%M:%S.%N")).build();
        let (time, rec) = one(&mut p, "Feb 28 12:00:00.456 192.168.0.1 fluentd[11111]: [error] Syslog test");
        assert_eq!(time.map(|t| t.nsec), Some(456_000_000), "{engine}");
        assert_eq!(rec, syslog_expected());
        let mut p = conf(&format!("@type syslog\nparser_type {engine}\nwith_priority true")).build();
        let (_, rec) = one(&mut p, "<6>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test");
        let mut want = syslog_expected();
        want["pri"] = json!(6);
        assert_eq!(rec, want, "{engine}");
        assert_eq!(
            run(&mut p, "<>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test"),
            vec![Err(ParseError::NoMatch)]
        );
        let mut p = conf(&format!("@type syslog\nparser_type {engine}\nkeep_time_key true")).build();
        let (_, rec) = one(&mut p, "Feb 28 00:00:12 192.168.0.1 fluentd[11111]: [error] Syslog test");
        assert_eq!(rec["time"], json!("Feb 28 00:00:12"));
        // Idents with odd characters.
        let mut p = conf(&format!("@type syslog\nparser_type {engine}")).build();
        for ident in ["hu_ma-n", "hu-ma_n"] {
            let (_, rec) = one(&mut p, &format!("Feb 28 12:00:00 192.168.0.1 {ident}[11111]: [error] Syslog test"));
            assert_eq!(rec["ident"], json!(ident));
        }
        // rfc3164 example: no ident.
        let (time, rec) = one(&mut p, "Feb  5 17:32:18 10.0.0.99 Use the BFG!");
        assert_eq!(rec, json!({"host":"10.0.0.99","ident":"Use","message":"the BFG!"}), "{engine}");
        assert_eq!(time, local(y, 2, 5, 17, 32, 18));
    }
    let mut p = conf("@type syslog\nparser_type string\nsupport_colonless_ident false").build();
    assert_eq!(
        one(&mut p, "Feb  5 17:32:18 10.0.0.99 Use the BFG!").1,
        json!({"host":"10.0.0.99","message":"Use the BFG!"})
    );
    // The differences of the two engines, as fluentd's tests pin them.
    let mut p = conf("@type syslog\nparser_type string").build();
    assert_eq!(
        one(&mut p, "Aug 10 12:00:00 127.0.0.1 test foo:bar").1,
        json!({"host":"127.0.0.1","ident":"test","message":"foo:bar"})
    );
    assert_eq!(
        one(&mut p, "Aug 10 12:00:00 127.0.0.1 value1,value2,value3,value4").1,
        json!({"host":"127.0.0.1","message":"value1,value2,value3,value4"})
    );
    let mut p = conf("@type syslog\nparser_type regexp").build();
    assert_ne!(
        one(&mut p, "Aug 10 12:00:00 127.0.0.1 test foo:bar").1,
        json!({"host":"127.0.0.1","ident":"test","message":"foo:bar"})
    );
    assert_eq!(
        one(&mut p, "Aug 10 12:00:00 127.0.0.1 value1,value2,value3,value4").1,
        json!({"host":"127.0.0.1","ident":"value1,value2,value3,value4","message":""})
    );
    assert!(matches!(
        run(&mut p, "1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.32 sched[0]: That's All Folks!")[0],
        Err(ParseError::Time(_))
    ));
}

#[test]
fn syslog_rfc5424_both_engines() {
    let ms3 = |s: u32| Some(EventTime::new(s, 3_000_000));
    const T0: u32 = 1486386855; // 2017-02-06T13:14:15Z
    for engine in ["regexp", "string"] {
        let c =
            |extra: &str| conf(&format!("@type syslog\nmessage_format rfc5424\nparser_type {engine}\n{extra}")).build();
        let mut p = c("with_priority true");
        let (time, rec) = one(&mut p, "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi, from Fluentd!");
        assert_eq!(time, ms3(T0));
        assert_eq!(
            rec,
            json!({"pri":16,"host":"192.168.0.1","ident":"fluentd","pid":"-","msgid":"-","extradata":"-","message":"Hi, from Fluentd!"})
        );
        // A trailing newline is chomped; newlines inside stay.
        let (_, rec) = one(&mut p, "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi, from Fluentd!\n");
        assert_eq!(rec["message"], json!("Hi, from Fluentd!"));
        let (_, rec) = one(&mut p, "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi,\nfrom\nFluentd!");
        assert_eq!(rec["message"], json!("Hi,\nfrom\nFluentd!"));
        let (_, rec) = one(&mut p, "<28>1 2018-09-26T15:54:26.620412+09:00 machine minissdpd 1298 - -  peer 192.168.0.5:50123 is not from a LAN");
        assert_eq!(
            (rec["pid"].clone(), rec["message"].clone()),
            (json!("1298"), json!(" peer 192.168.0.5:50123 is not from a LAN"))
        );
        let sd = r#"[exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"]"#;
        let (_, rec) = one(
            &mut p,
            &format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd} [Hi] from Fluentd!"),
        );
        assert_eq!(
            (rec["msgid"].clone(), rec["extradata"].clone(), rec["message"].clone()),
            (json!("ID24224"), json!(sd), json!("[Hi] from Fluentd!"))
        );
        let (_, rec) = one(&mut p, &format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd}[exampleSDID@20224 class=\"high\"] Hi, from Fluentd!"));
        assert_eq!(rec["extradata"], json!(format!("{sd}[exampleSDID@20224 class=\"high\"]")));
        let (_, rec) = one(
            &mut p,
            &format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd} [Hi] from Fluentd]!"),
        );
        assert_eq!(rec["message"], json!("[Hi] from Fluentd]!"));
        let (_, rec) = one(&mut p, &format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd}"));
        assert_eq!((rec["extradata"].clone(), rec.get("message")), (json!(sd), None));
        // Times without sub-seconds fall back to the second format.
        let (time, _) = one(&mut p, "<16>1 2017-02-06T13:14:15Z 192.168.0.1 fluentd - - - Hi, from Fluentd!");
        assert_eq!(time, t(T0));
        // A trailing blank after the structured data.
        let got = run(&mut p, &format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd} "));
        if engine == "string" {
            assert!(matches!(&got[0], Ok((_, r)) if r["message"] == json!("")));
        } else {
            assert_eq!(got, vec![Err(ParseError::NoMatch)]);
        }
        let mut p = c("");
        let (time, rec) = one(&mut p, "2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi, from Fluentd!");
        assert_eq!((time, rec["message"].clone()), (ms3(T0), json!("Hi, from Fluentd!")));
        let (_, rec) = one(&mut p, "2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - -");
        assert_eq!((rec["extradata"].clone(), rec.get("message")), (json!("-"), None));
        let mut p = c("with_priority true\ntime_format %Y-%m-%dT%H:%M:%SZ\nutc true");
        let (time, _) = one(&mut p, "<16>1 2017-02-06T13:14:15Z 192.168.0.1 fluentd - - - Hi, from Fluentd!");
        assert_eq!(time, t(T0));
    }
    // The string engine drops backslashes of the structured data.
    let mut p = conf("@type syslog\nmessage_format rfc5424\nparser_type string\nwith_priority true").build();
    let (_, rec) = one(&mut p, r#"<16>1 2017-02-06T13:14:15.003Z h i p m [x a="\"q\""] msg"#);
    assert_eq!(rec["extradata"], json!(r#"[x a=""q""]"#));
}

#[test]
fn syslog_auto() {
    let y = this_year();
    for engine in ["regexp", "string"] {
        let mut p =
            conf(&format!("@type syslog\nmessage_format auto\nwith_priority true\nparser_type {engine}")).build();
        let (time, rec) = one(&mut p, "<1>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test");
        let mut want = syslog_expected();
        want["pri"] = json!(1);
        assert_eq!((time, rec), (local(y, 2, 28, 12, 0, 0), want));
        let (_, rec) = one(&mut p, "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi, from Fluentd!");
        assert_eq!((rec["pri"].clone(), rec["message"].clone()), (json!(16), json!("Hi, from Fluentd!")));
        let (_, rec) = one(&mut p, "<1>Feb 28 12:00:02 192.168.0.1 fluentd[11111]: [error] Syslog test 2>1");
        assert_eq!(rec["message"], json!("[error] Syslog test 2>1"));
    }
    let mut p = conf("@type syslog\nmessage_format auto").build();
    assert_eq!(one(&mut p, "Feb 28 00:00:12 192.168.0.1 fluentd[11111]: [error] Syslog test").1, syslog_expected());
}

#[test]
fn syslog_garbage_never_panics() {
    let texts: [&[u8]; 10] = [
        b"",
        b"<",
        b"<1",
        b"<999999>",
        b"<1>1",
        b"<1>1 ",
        b"Feb",
        b"Feb 28 12:00:00",
        b"\xff\xfe <1>1 x y z",
        b"<16>1 2017-02-06T13:14:15.003Z h i p m [unterminated",
    ];
    for fmt in ["rfc3164", "rfc5424", "auto"] {
        for engine in ["regexp", "string"] {
            for pri in ["true", "false"] {
                let mut p =
                    conf(&format!("@type syslog\nmessage_format {fmt}\nparser_type {engine}\nwith_priority {pri}"))
                        .build();
                for t in texts {
                    let got = run_bytes(&mut p, t);
                    assert_eq!(got.len(), 1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// test_parser_multiline.rb
// ---------------------------------------------------------------------------------------

#[test]
fn multiline() {
    let mut p = conf(
        "@type multiline\nformat_firstline /^Started/\nformat1 /Started (?<method>[^ ]+) \"(?<path>[^\"]+)\" for (?<host>[^ ]+) at (?<time>[^ ]+ [^ ]+ [^ ]+)\\n/\nformat2 /Processing by (?<controller>[^\\u0023]+)\\u0023(?<controller_method>[^ ]+) as (?<format>[^ ]+?)\\n/\nformat3 /(  Parameters: (?<parameters>[^ ]+)\\n)?/\nformat4 /  Rendered (?<template>[^ ]+) within (?<layout>.+) \\([\\d\\.]+ms\\)\\n/\nformat5 /Completed (?<code>[^ ]+) [^ ]+ in (?<runtime>[\\d\\.]+)ms \\(Views: (?<view_runtime>[\\d\\.]+)ms \\| ActiveRecord: (?<ar_runtime>[\\d\\.]+)ms\\)/",
    )
    .build();
    let text = "Started GET \"/users\" for 127.0.0.1 at 2013-06-14 12:00:11 +0900\nProcessing by UsersController#index as HTML\n  Rendered users/index.html.erb within layouts/application (0.3ms)\nCompleted 200 OK in 4ms (Views: 3.2ms | ActiveRecord: 0.0ms)";
    let (time, rec) = one(&mut p, text);
    assert_eq!(time, t(1371178811));
    assert_eq!(
        rec,
        json!({"method":"GET","path":"/users","host":"127.0.0.1","controller":"UsersController","controller_method":"index","format":"HTML","template":"users/index.html.erb","layout":"layouts/application","code":"200","runtime":"4","view_runtime":"3.2","ar_runtime":"0.0"})
    );
    assert!(p.is_firstline(b"Started GET"));
    assert!(!p.is_firstline(b"  Rendered"));
    // Repeated matches: one record per match.
    let mut p = conf("@type multiline\nformat1 /(?<a>\\d+)/\nestimate_current_event false").build();
    let got = run(&mut p, "1\n2\n3");
    assert_eq!(got.len(), 3);
    let mut p = conf("@type multiline\nformat1 /^(?<a>\\d+)$/\nunmatched_lines true").build();
    assert_eq!(one(&mut p, "abc").1, json!({"unmatched_line":"abc"}));
    assert!(conf_err("@type multiline\nformat1 /(?<a>.)/\nformat3 /x/")
        .contains("Jump of format index found. format2 is missing."));
    assert!(conf_err("@type multiline\nformat21 /x/").contains("Invalid formatN found"));
    assert!(conf_err("@type multiline\nformat1 x").contains("need //"));
}

#[test]
fn parse_one_keeps_the_first_record_only() {
    let mut p = conf("@type json").build();
    let mut out = Vec::new();
    let t0 = p.parse_one(br#"[{"time":1,"a":1},{"time":2,"b":2}]"#, &mut out).unwrap();
    assert_eq!(t0, t(1));
    assert_eq!(to_json(ValueRef::new(&out).unwrap()), json!({"a":1}));
    assert!(p.parse_one(b"nope", &mut out).unwrap_err().is_no_match());
}

/// Every byte written, and each outcome (a record ending at an offset, or an error).
type Written = (Vec<u8>, Vec<Result<usize, ParseError>>);

/// What the direct path and the serde_json path write.
fn both_json_paths(p: &mut Parser, text: &[u8]) -> [Written; 2] {
    struct Raw(Vec<Result<usize, ParseError>>);
    impl Sink for Raw {
        fn record(&mut self, out: &mut Vec<u8>, _: Option<EventTime>) {
            self.0.push(Ok(out.len()));
        }
        fn error(&mut self, err: ParseError) {
            self.0.push(Err(err));
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut ra, mut rb) = (Raw(Vec::new()), Raw(Vec::new()));
    p.parse(text, &mut a, &mut ra);
    p.parse_json_via_msgpack(text, &mut b, &mut rb);
    [(a, ra.0), (b, rb.0)]
}

/// Checks that the direct path writes what the serde_json path writes for `text` (on
/// configuration `c`), into either kind of sink; returns what the direct path wrote.
fn direct_path_is_serde_path(p: &mut Parser, c: &str, text: &[u8]) -> Written {
    let [direct, serde] = both_json_paths(p, text);
    assert_eq!(direct, serde, "{c}: {:?}", String::from_utf8_lossy(text));
    let (out, recs, errs) = rolled_back_path(p, text);
    assert_eq!(out, serde.0, "{c}: {:?}", String::from_utf8_lossy(text));
    assert_eq!(recs, serde.1.iter().filter_map(|r| r.as_ref().ok().copied()).collect::<Vec<_>>());
    assert_eq!(errs, serde.1.iter().filter_map(|r| r.as_ref().err().cloned()).collect::<Vec<_>>());
    direct
}

/// The direct path into a sink that can take records back (as in_http's): it writes
/// straight into `out`, gives errors after the records, and takes the records back
/// when the text falls back. Returns what it wrote with the records and the errors
/// apart, after a record of an earlier text (which must survive a rollback).
fn rolled_back_path(p: &mut Parser, text: &[u8]) -> (Vec<u8>, Vec<usize>, Vec<ParseError>) {
    #[derive(Default)]
    struct Back {
        records: Vec<usize>,
        errors: Vec<ParseError>,
    }
    impl Sink for Back {
        fn record(&mut self, out: &mut Vec<u8>, _: Option<EventTime>) {
            self.records.push(out.len());
        }
        fn error(&mut self, err: ParseError) {
            self.errors.push(err);
        }
        fn can_roll_back(&self) -> bool {
            true
        }
        fn rollback(&mut self, n: u32) {
            let keep = self.records.len().checked_sub(n as usize).expect("only its own records taken back");
            self.records.truncate(keep);
        }
    }
    let mut out = Vec::new();
    let mut back = Back::default();
    p.parse(br#"{"earlier":1}"#, &mut out, &mut back);
    assert_eq!(back.records.len(), 1);
    let earlier = out.len();
    p.parse(text, &mut out, &mut back);
    assert_eq!(back.records[0], earlier);
    let records = back.records[1..].iter().map(|r| r - earlier).collect();
    (out.split_off(earlier), records, back.errors)
}

/// A random JSON text: nested values, escapes, non-ASCII, numbers at the edges.
fn next(x: &mut u64, n: u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x % n
}

fn random_json(x: &mut u64, depth: u32, out: &mut String) {
    let mut next = |n: u64| next(x, n);
    let pick = next(if depth > 3 { 9 } else { 11 });
    match pick {
        0 => out.push_str(["null", "true", "false"][next(3) as usize]),
        1 => out.push_str(
            [
                "0",
                "-0",
                "7",
                "-7",
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "1.5",
                "-0.25",
                "1e3",
                "2E-3",
                "123456.789e-2",
                "1e308",
                "4e-400",
                "99999999999999999999999",
                "0.1",
            ][next(17) as usize],
        ),
        2..=8 => {
            out.push('"');
            for _ in 0..next(12) {
                out.push_str(
                    ["a", "é", "\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", "\\/", " ", "日本", "\\t", "time", "x"]
                        [next(12) as usize],
                );
            }
            out.push('"');
        }
        9 => {
            out.push('[');
            for i in 0..self::next(x, 5) {
                if i > 0 {
                    out.push_str([",", " , ", ",\n"][self::next(x, 3) as usize]);
                }
                random_json(x, depth + 1, out);
            }
            out.push(']');
        }
        _ => random_object(x, depth, out),
    }
}

fn random_object(x: &mut u64, depth: u32, out: &mut String) {
    out.push('{');
    for i in 0..self::next(x, 20) {
        if i > 0 {
            out.push(',');
        }
        // Repeated keys, the time key, keys with escapes.
        out.push_str(
            ["\"a\"", "\"b\"", "\"time\"", "\"n\"", "\"k\\u0041\"", "\"kA\"", "\"s\""][self::next(x, 7) as usize],
        );
        out.push_str([":", " : "][self::next(x, 2) as usize]);
        random_json(x, depth + 1, out);
    }
    out.push('}');
}

#[test]
fn json_direct_path_writes_what_the_serde_json_path_writes() {
    let confs = [
        "@type json",
        "@type json\nkeep_time_key true",
        "@type json\ntypes n:string,a:integer\nnull_empty_string true",
        "@type json\ntime_type mixed\ntime_format %s",
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let (mut taken, mut records, mut all) = (0, 0, 0);
    for c in confs {
        let mut p = conf(c).build();
        for round in 0..4000 {
            let mut text = String::new();
            if round % 3 == 0 {
                text.push('[');
                for i in 0..(round % 5) {
                    if i > 0 {
                        text.push(',');
                    }
                    if i == 2 {
                        random_json(&mut x, 1, &mut text);
                    } else {
                        random_object(&mut x, 1, &mut text);
                    }
                }
                text.push(']');
            } else {
                text.push_str(["", " ", "\n"][round % 3]);
                x ^= round as u64;
                let mut obj = String::new();
                if round % 11 == 0 {
                    random_json(&mut x, 0, &mut obj);
                } else {
                    random_object(&mut x, 0, &mut obj);
                }
                text.push_str(&obj);
            }
            let mut bytes = text.into_bytes();
            // Some texts damaged: cut short, a byte changed, invalid UTF-8, trailing junk.
            match round % 7 {
                1 if bytes.len() > 2 => bytes.truncate(bytes.len() - 1 - (round / 7) % (bytes.len() - 1)),
                2 if !bytes.is_empty() => {
                    let at = (round * 31) % bytes.len();
                    bytes[at] = b"{}[]\",:\\0x \x01\xff"[(round / 7) % 13];
                }
                3 => bytes.extend_from_slice(b" x"),
                _ => {}
            }
            let direct = direct_path_is_serde_path(&mut p, c, &bytes);
            all += 1;
            if p.json_direct_takes(&bytes) {
                taken += 1;
                records += direct.1.iter().filter(|r| r.is_ok()).count();
            }
        }
    }
    // The comparison is about the direct path: it takes the undamaged texts (most of
    // them: 1e308 falls back), records included.
    assert!(taken * 3 > all && records * 3 > all, "{taken} of {all} texts, {records} records");
    // Deep nesting takes the serde_json path and its recursion limit.
    let mut p = conf("@type json").build();
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    let [direct, serde] = both_json_paths(&mut p, deep.as_bytes());
    assert_eq!(direct, serde);
    assert!(matches!(direct.1[..], [Err(ParseError::Json { .. })]), "{:?}", direct.1);
}

/// compat_parameters.rb's parser mapping: what the synthesized `<parse>` holds.
#[test]
fn v012_flat_parameters_make_a_parse_section() {
    // `element` wraps the body in <parse>; the flat parameters sit on it as on a plugin.
    let attrs = |body: &str| -> Vec<(String, String)> {
        let p = v012_section(&element(body)).unwrap().expect("a section");
        p.attrs.iter().map(|a| (a.key.clone(), a.value.clone())).collect()
    };
    let a = attrs("format /^(?<a>\\d+)$/\ntime_format %s\nkeep_time_key true");
    assert!(a.contains(&("@type".into(), "regexp".into())), "{a:?}");
    assert!(a.contains(&("expression".into(), "^(?<a>\\d+)$".into())), "{a:?}");
    assert!(a.contains(&("time_format".into(), "%s".into())) && a.contains(&("keep_time_key".into(), "true".into())));
    assert!(attrs("format ltsv").contains(&("@type".into(), "ltsv".into())));
    // types with its own delimiters becomes a JSON hash; without them it is copied.
    let a = attrs("format csv\nkeys a,b\ntypes a=integer;b=float\ntypes_delimiter ;\ntypes_label_delimiter =");
    let types = a.iter().find(|(k, _)| k == "types").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&types).unwrap(), json!({"a": "integer", "b": "float"}));
    assert!(attrs("types a:integer").contains(&("types".into(), "a:integer".into())));
    // Nothing to map: no section. Both utc and localtime: fluentd's error.
    assert!(v012_section(&element("tag x")).unwrap().is_none());
    let e = v012_section(&element("format json\nutc true\nlocaltime true")).unwrap_err().to_string();
    assert!(e.contains("both of utc and localtime are specified"), "{e}");
    // The regexp the section names builds, as the section itself would.
    let p = v012_section(&element("format /^(?<k>[a-z]+)=(?<v>.*)$/")).unwrap().unwrap();
    assert!(ParserConf::from_element(&p).is_ok());
}
