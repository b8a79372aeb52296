//! record_modifier's tests: the cases of the plugin's test/test_filter_record_modifier.rb
//! (expected values from that file; Ruby fluentd is not installed here) and spate's own.

use crate::test_support::{batch, first_filter, plan_err, records, Collect, T0};

/// The records after the first `<filter>` of `conf` (the filter needs a `<match>` to
/// plan: one is appended).
fn run(body: &str, tag: &str, recs: &[&str]) -> Vec<String> {
    let conf = format!("<filter **>\n  @type record_modifier\n{body}</filter>\n<match **>\n  @type null\n</match>\n");
    let f = first_filter(&conf);
    match f.filter(batch(tag, recs), &Collect::default()) {
        Some(b) => records(&b),
        None => Vec::new(),
    }
}

fn err(body: &str) -> String {
    plan_err(&format!("<filter **>\n  @type record_modifier\n{body}</filter>\n<match **>\n  @type null\n</match>\n"))
}

#[test]
fn format() {
    // test_format (gen_host is "#{Socket.gethostname}": the config parser's, tested there).
    let body = "  remove_keys hoge\n  <record>\n    foo bar\n    included_tag ${tag}\n    tag_wrap -${tag_parts[0]}-${tag_parts[1]}-\n  </record>\n";
    assert_eq!(
        run(body, "test.tag", &[r#"{"a":1}"#, r#"{"a":2,"hoge":3}"#]),
        [
            r#"{"a":1,"foo":"bar","included_tag":"test.tag","tag_wrap":"-test-tag-"}"#,
            r#"{"a":2,"foo":"bar","included_tag":"test.tag","tag_wrap":"-test-tag-"}"#
        ]
    );
}

#[test]
fn remove_keys_and_whitelist() {
    assert_eq!(run("  remove_keys k1\n", "t", &[r#"{"k1":"v","k2":"v"}"#]), [r#"{"k2":"v"}"#]);
    assert_eq!(run("  remove_keys k1, k2, k3\n", "t", &[r#"{"k1":"v","k2":"v","k4":"v"}"#]), [r#"{"k4":"v"}"#]);
    assert_eq!(
        run(
            "  remove_keys k1, $.kubernetes.test\n",
            "t",
            &[r#"{"k1":"v","kubernetes":{"test":"v","prod":"v"},"k2":"v"}"#]
        ),
        [r#"{"kubernetes":{"prod":"v"},"k2":"v"}"#]
    );
    assert_eq!(
        run(
            "  <record>\n    foo bar\n  </record>\n  whitelist_keys k1, k2, k3\n",
            "t",
            &[r#"{"k1":"v","k2":"v","k4":"v","k5":"v"}"#]
        ),
        [r#"{"k1":"v","k2":"v","foo":"bar"}"#]
    );
    // Whitelist order, not record order; allowlist_keys is the same.
    assert_eq!(run("  allowlist_keys b, a\n", "t", &[r#"{"a":1,"b":2,"c":3}"#]), [r#"{"b":2,"a":1}"#]);
    assert!(err("  remove_keys a\n  whitelist_keys b\n").contains("exclusive"));
}

#[test]
fn replace_values() {
    let body = "  <replace>\n    key k1\n    expression /^(?<start>.+).{2}(?<end>.+)$/\n    replace \\k<start>ors\\k<end>\n  </replace>\n  <replace>\n    key k2\n    expression /^(.{1}).{2}(.{1})$/\n    replace \\1ors\\2\n  </replace>\n";
    assert_eq!(
        run(body, "t", &[r#"{"k1":"hoge","k2":"hoge","k3":"bar"}"#]),
        [r#"{"k1":"horse","k2":"horse","k3":"bar"}"#]
    );
    // test_does_not_replace.
    let body = "  <replace>\n    key k1\n    expression /^(?<start>.+).{2}(?<end>.+)$/\n    replace \\k<start>ors\\k<end>\n  </replace>\n";
    assert_eq!(run(body, "t", &[r#"{"k1":"hog"}"#]), [r#"{"k1":"hog"}"#]);
    // A non-string field: Ruby raises, the event is dropped.
    let body = "  <replace>\n    key n\n    expression /1/\n    replace x\n  </replace>\n";
    assert_eq!(run(body, "t", &[r#"{"n":1}"#, r#"{"n":"1"}"#]), [r#"{"n":"x"}"#]);
}

#[test]
fn ruby_values_are_typed_or_strings() {
    let body = "  <record>\n    n ${record['a'] + 1}\n    s n=${record['a'] + 1}\n    t ${time.to_i}\n    ts ${time}\n    up ${record['m'].upcase}\n  </record>\n";
    // `${time}` alone is the EventTime itself (JSON shows its seconds).
    let out = run(body, "t", &[r#"{"a":1,"m":"x"}"#]);
    assert_eq!(out, [format!(r#"{{"a":1,"m":"x","n":2,"s":"n=2","t":{0},"ts":{0},"up":"X"}}"#, T0.sec)]);
    // A string without ${ is kept as written (no Ruby escapes).
    assert_eq!(run("  <record>\n    p a\\tb#{x}\n  </record>\n", "t", &["{}"]), [r#"{"p":"a\\tb#{x}"}"#]);
    // Raising drops the event.
    assert_eq!(
        run("  <record>\n    x ${record['nope'].upcase}\n  </record>\n", "t", &[r#"{"a":1}"#]),
        Vec::<String>::new()
    );
    // Unsupported Ruby and prepare_value are config errors.
    assert!(err("  <record>\n    x ${record.each_with_index{|k| k}}\n  </record>\n")
        .contains("<record> x: Ruby expression"));
    assert!(err("  prepare_value @foo = 'foo'\n").contains("prepare_value is Ruby code"));
}

#[test]
fn char_encoding_marks_strings() {
    // test_set_char_encoding: binary strings become UTF-8 (msgpack str).
    let mut rec = Vec::new();
    spate_protocol::encode::raw::map_header(&mut rec, 1);
    spate_protocol::encode::raw::str(&mut rec, b"k");
    spate_protocol::encode::raw::bin(&mut rec, "v\u{30d3}".as_bytes());
    let mut e = Vec::new();
    spate_protocol::encode::entry(&mut e, T0, spate_protocol::encode::TimeFormat::EventTime, &rec);
    let b = spate_protocol::EventBatch::from_entries(
        bytes::Bytes::from_static(b"t"),
        bytes::Bytes::from(e),
        spate_protocol::EntriesFormat::Packed,
        spate_protocol::Mode::PackedForward,
        Default::default(),
        100,
    )
    .unwrap();
    let conf =
        "<filter **>\n  @type record_modifier\n  char_encoding utf-8\n</filter>\n<match **>\n  @type null\n</match>\n";
    let f = first_filter(conf);
    let out = f.filter(b, &Collect::default()).unwrap();
    let ev = out.events().next().unwrap();
    assert_eq!(ev.record.get(b"k").unwrap().kind(), spate_protocol::msgpack::Kind::Str);
    // Transcoding (test_convert_char_encoding: utf-8:cp932) is not supported.
    assert!(err("  char_encoding utf-8:cp932\n").contains("transcoding between encodings is not supported"));
    assert_eq!(run("  char_encoding utf-8:UTF-8\n", "t", &[r#"{"a":"x"}"#]), [r#"{"a":"x"}"#]);
}
