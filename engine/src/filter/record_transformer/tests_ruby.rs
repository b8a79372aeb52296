//! record_transformer with `enable_ruby`: every enable_ruby case of fluentd's
//! test/plugin/test_filter_record_transformer.rb (the `%w[yes no]` loops run both ways
//! here too), with the expected values taken from that file. Ruby fluentd is not
//! installed on this machine, so outputs could not be compared with a live fluentd; where
//! the Ruby test checks an in-memory Ruby object (a Time, a Hash with symbol keys) the
//! expectation is what that object becomes once the record is serialized (see each case).

use super::tests::{conf, json_of, one, rec, run, run_tag, time_text, typecast_conf, BASE, HOST, SOURCES, T};
use super::*;

fn both(c: &RecordTransformerConf) -> [RecordTransformerConf; 2] {
    [
        RecordTransformerConf { enable_ruby: false, ..c.clone() },
        RecordTransformerConf { enable_ruby: true, ..c.clone() },
    ]
}

fn ruby(record: &[(&str, &str)]) -> RecordTransformerConf {
    RecordTransformerConf { enable_ruby: true, ..conf(record) }
}

fn err(c: &RecordTransformerConf) -> String {
    RecordTransformer::new(c).unwrap_err().to_string()
}

/// test 'enable_ruby' (the "test options" records).
#[test]
fn enable_ruby() {
    let c = ruby(&[("message", "${hostname} ${tag_parts.last} ${\"'\" + record[\"message\"] + \"'\"}")]);
    let out = run(&c, &[BASE, &BASE.replace(r#""1""#, r#""2""#)]);
    for (i, o) in out.iter().enumerate() {
        assert!(o.contains(&format!(r#""message":"{HOST} tag '{}'""#, i + 1)), "{o}");
    }
}

#[test]
fn hostname_tag_tag_parts_prefix_suffix_both_ways() {
    for c in both(&conf(&[("message", "${hostname}")])) {
        assert_eq!(one(&c, "{}"), r#"{"message":"myhost"}"#);
    }
    for c in both(&conf(&[("message", "${tag}")])) {
        assert_eq!(one(&c, "{}"), r#"{"message":"test.tag"}"#);
    }
    for c in both(&conf(&[("message", "${tag_parts[0]} ${tag_parts[-1]}")])) {
        assert_eq!(one(&c, "{}"), r#"{"message":"test tag"}"#);
    }
    for c in both(&conf(&[("message", "${tag_prefix[1]} ${tag_prefix[-2]} ${tag_suffix[2]} ${tag_suffix[-3]}")])) {
        let out = run_tag(&c, "prefix.test.tag.suffix", &["{}"]);
        assert_eq!(out[0].1, r#"{"message":"prefix.test prefix.test.tag tag.suffix test.tag.suffix"}"#);
    }
}

/// "time with enable_ruby yes": the Ruby test compares the in-memory value with
/// `Time.at(@time).localtime`. A Time cannot be packed into a msgpack record; spate writes
/// it as `Time#to_s`, which is what fluentd's JSON formatters print for it.
#[test]
fn time_both_ways() {
    for c in both(&conf(&[("message", "${time}")])) {
        assert_eq!(one(&c, "{}"), format!(r#"{{"message":"{}"}}"#, time_text(T)));
    }
    assert_eq!(one(&ruby(&[("t", "${time.to_i}")]), "{}"), r#"{"t":1272942121}"#);
    assert_eq!(one(&ruby(&[("t", "${time.utc.strftime('%Y-%m-%d')}")]), "{}"), r#"{"t":"2010-05-04"}"#);
}

#[test]
fn record_keys_both_ways() {
    for c in both(&RecordTransformerConf {
        remove_keys: vec!["eventType0".into()],
        ..conf(&[("message", "bar ${record[\"message\"]}"), ("eventtype", "${record[\"eventType0\"]}")])
    }) {
        let out = run(&c, &[r#"{"eventType0":"bar","message":"1"}"#, r#"{"eventType0":"bar","message":"2"}"#]);
        assert_eq!(out, vec![r#"{"message":"bar 1","eventtype":"bar"}"#, r#"{"message":"bar 2","eventtype":"bar"}"#]);
    }
}

#[test]
fn reserved_keys_both_ways() {
    for c in both(&conf(&[("new_tag", "${tag}"), ("new_record_tag", "${record[\"tag\"]}")])) {
        assert_eq!(
            one(&c, r#"{"tag":"tag","time":"time"}"#),
            r#"{"tag":"tag","time":"time","new_tag":"test.tag","new_record_tag":"tag"}"#
        );
    }
}

#[test]
fn hash_and_array_values_both_ways() {
    for c in
        both(&conf(&[("hash_field", "{\n  \"hostname\":\"${hostname}\",\n  \"tag\":\"${tag}\",\n  \"${tag}\":100\n}")]))
    {
        assert_eq!(one(&c, "{}"), r#"{"hash_field":{"hostname":"myhost","tag":"test.tag","test.tag":100}}"#);
    }
    for c in both(&conf(&[("array_field", r#"["${hostname}", "${tag}"]"#)])) {
        assert_eq!(one(&c, "{}"), r#"{"array_field":["myhost","test.tag"]}"#);
    }
    for c in both(&conf(&[("mixed_field", r#"[{"tag":"${tag}"}]"#)])) {
        assert_eq!(one(&c, "{}"), r#"{"mixed_field":[{"tag":"test.tag"}]}"#);
    }
}

#[test]
fn keys_with_placeholders_both_ways() {
    for c in both(&RecordTransformerConf {
        renew_record: true,
        ..conf(&[("${hostname}", "hostname"), ("foo.${tag}", "tag")])
    }) {
        assert_eq!(run(&c, &[BASE, BASE]), vec![r#"{"myhost":"hostname","foo.test.tag":"tag"}"#; 2]);
    }
}

/// "disabled/enabled typecasting of values with enable_ruby yes". The Ruby test feeds
/// `{a:1, b:2}` (symbol keys) straight into the filter; after msgpack the keys are
/// strings, so `to_s` is `{"a" => 1, "b" => 2}` (Ruby 3.4 `inspect`).
#[test]
fn typecasting_both_ways() {
    let recs: Vec<String> = SOURCES.iter().map(|s| format!(r#"{{"source":{s}}}"#)).collect();
    let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
    let texts = ["string", "123", "[1, 2]", r#"{\"a\" => 1, \"b\" => 2}"#, ""];
    for c in both(&typecast_conf(false)) {
        for ((o, s), t) in run(&c, &recs).iter().zip(SOURCES).zip(texts) {
            assert_eq!(
                *o,
                format!(
                    r#"{{"source":{s},"single":"{t}","multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
                ),
                "enable_ruby {}",
                c.enable_ruby
            );
        }
    }
    for c in both(&typecast_conf(true)) {
        for ((o, s), t) in run(&c, &recs).iter().zip(SOURCES).zip(texts) {
            assert_eq!(
                *o,
                format!(
                    r#"{{"source":{s},"single":{s},"multiple":"{t}{t}","with_prefix":"prefix-{t}","with_suffix":"{t}-suffix","with_quote":"record[\"source\"][\"\"]"}}"#
                ),
                "enable_ruby {}",
                c.enable_ruby
            );
        }
    }
}

/// 'auto_typecast placeholder containing {} (enable_ruby yes)': the `{}` of the block is
/// balanced inside `${}`.
#[test]
fn placeholder_containing_braces() {
    assert_eq!(
        one(&ruby(&[("foo", "${record.map{|k,v|v}}")]), r#"{"@timestamp":"foo"}"#),
        r#"{"@timestamp":"foo","foo":["foo"]}"#
    );
    // A construct outside the subset is a config error naming it.
    let e = err(&ruby(&[("foo", "${record.each_with_index{|k|k}}")]));
    assert!(
        e.starts_with("<record> foo: Ruby expression `record.each_with_index{|k|k}`: not supported: a block"),
        "{e}"
    );
}

/// 'CGI.escape / CGI.unescape'.
#[test]
fn cgi_escape_unescape() {
    let c = ruby(&[
        ("encoded_url", "${CGI.escape(record[\"url\"])}"),
        ("decoded_text", "${CGI.unescape(record[\"quoted\"])}"),
    ]);
    let out = one(&c, r#"{"url":"http://example.com/?q=ruby & cgi","quoted":"hello%21"}"#);
    assert!(
        out.ends_with(r#""encoded_url":"http%3A%2F%2Fexample.com%2F%3Fq%3Druby+%26+cgi","decoded_text":"hello!"}"#),
        "{out}"
    );
}

/// 'invalid record for placeholders': `record["unknown"]["key"]` raises NoMethodError;
/// fluentd emits the event as an error event, so it leaves the stream.
#[test]
fn a_raising_expression_drops_the_event() {
    let c = ruby(&[("foo", "${record[\"unknown\"][\"key\"]}")]);
    assert_eq!(run(&c, &[r#"{"key":"value"}"#]), Vec::<String>::new());
    // Only the failing events go; the others pass in order.
    let c = ruby(&[("n", "${record[\"a\"].upcase}")]);
    assert_eq!(
        run(&c, &[r#"{"a":"x"}"#, r#"{"b":1}"#, r#"{"a":"y"}"#]),
        vec![r#"{"a":"x","n":"X"}"#, r#"{"a":"y","n":"Y"}"#]
    );
}

#[test]
fn ruby_mode_strings_are_percent_q() {
    // `#{...}` in an unquoted value is Ruby too (fluentd-kubernetes-daemonset's
    // `hostname #{ENV['FLUENT_HOSTNAME']}-${record[...]}`), and escapes apply.
    let c = ruby(&[("h", "#{1 + 1}-${record[\"k\"][\"ns\"]}"), ("t", "a\\tb"), ("q", "[x] ${tag}")]);
    assert_eq!(
        one(&c, r#"{"k":{"ns":"default"}}"#),
        r#"{"k":{"ns":"default"},"h":"2-default","t":"a\tb","q":"[x] test.tag"}"#
    );
    // An unbalanced `]` ends %Q[...] early: a syntax error in Ruby, a config error here.
    let e = err(&ruby(&[("q", "x] ${tag}")]));
    assert!(e.contains("unbalanced ']'"), "{e}");
    // Typed results with auto_typecast; strings otherwise.
    let c = ruby(&[
        ("n", "${record[\"total\"] / record[\"count\"]}"),
        ("s", "avg ${record[\"total\"] / record[\"count\"]}"),
    ]);
    assert_eq!(one(&c, r#"{"total":100,"count":10}"#), r#"{"total":100,"count":10,"n":10,"s":"avg 10"}"#);
    let c =
        RecordTransformerConf { auto_typecast: false, ..ruby(&[("n", "${record[\"total\"] / record[\"count\"]}")]) };
    assert_eq!(one(&c, r#"{"total":100,"count":10}"#), r#"{"total":100,"count":10,"n":"10"}"#);
}

#[test]
fn ruby_errors_name_the_key_and_the_expression() {
    let e = err(&ruby(&[("name", "${sFLN}")]));
    assert!(e.starts_with("<record> name: Ruby expression `sFLN`: undefined local variable or method `sFLN`"), "{e}");
    let e = err(&ruby(&[("${Time.iso8601(x)}", "v")]));
    assert!(e.contains("`Time.iso8601`"), "{e}");
    // Unknown placeholders of the non-Ruby mode are fine there.
    assert!(RecordTransformer::new(&conf(&[("name", "${sFLN}")])).is_ok());
}

#[test]
fn batches_without_changes_pass_through_in_ruby_mode() {
    let f = RecordTransformer::new(&ruby(&[("foo", "${record[\"foo\"]}")])).unwrap();
    let b = super::tests::batch_of("t", &[rec(BASE)]);
    let ptr = b.entries.as_ptr();
    let out = f.filter(b).unwrap();
    assert_eq!(out.entries.as_ptr(), ptr);
    assert_eq!(json_of(out.events().next().unwrap().record), BASE);
}
