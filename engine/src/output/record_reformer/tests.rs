//! record_reformer's tests: cases of the plugin's test/test_out_record_reformer.rb
//! (expected values from that file), with and without `enable_ruby`.

use crate::test_support::{batch, match_output, plan_err, Collect};

fn conf(body: &str) -> String {
    format!("<match test.** prefix.**>\n  @type record_reformer\n{body}</match>\n")
}

/// (tag, records as JSON) of every re-emitted batch.
fn run(body: &str, tag: &str, recs: &[&str]) -> Vec<(String, Vec<String>)> {
    let out = match_output(&conf(body), 0);
    let c = Collect::default();
    out.emit(&batch(tag, recs), &c).unwrap();
    c.0.into_inner()
        .into_iter()
        .map(|(l, t, r)| {
            assert_eq!(l, 0, "re-emitted in the match's label");
            (t, r)
        })
        .collect()
}

fn one(body: &str, rec: &str) -> (String, String) {
    let mut v = run(body, "test.tag", &[rec]);
    assert_eq!(v.len(), 1, "{v:?}");
    let (t, mut r) = v.remove(0);
    (t, r.remove(0))
}

const HOST: &str = "myhost.example.com";

#[test]
fn configure_errors() {
    assert!(plan_err(&conf("")).contains("`tag` must be specified"));
    assert!(plan_err(&conf("  tag x\n  keep_keys a\n")).contains("`renew_record` must be true to use `keep_keys`"));
    let e = plan_err(&conf("  tag x\n  <buffer>\n  </buffer>\n"));
    assert!(e.contains("out_record_reformer has no <buffer> section"), "{e}");
    let e = plan_err(&conf("  tag x\n  y ${foo(1)}\n"));
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn typical_usage_flat_parameters_are_fields() {
    for ruby in ["yes", "no"] {
        let body = format!(
            "  tag reformed.${{tag}}\n  enable_ruby {ruby}\n  hostname ${{hostname}}\n  input_tag ${{tag}}\n  message ${{hostname}} ${{tag_parts[-1]}} ${{message}}\n"
        );
        let v =
            run(&body, "test.tag", &[r#"{"eventType0":"bar","message":"1"}"#, r#"{"eventType0":"bar","message":"2"}"#]);
        assert_eq!(v.len(), 1, "one tag, one batch");
        assert_eq!(v[0].0, "reformed.test.tag");
        assert_eq!(
            v[0].1,
            [
                format!(
                    r#"{{"eventType0":"bar","message":"{HOST} tag 1","hostname":"{HOST}","input_tag":"test.tag"}}"#
                ),
                format!(
                    r#"{{"eventType0":"bar","message":"{HOST} tag 2","hostname":"{HOST}","input_tag":"test.tag"}}"#
                ),
            ],
            "enable_ruby {ruby}"
        );
    }
}

#[test]
fn output_tag_and_record_directive() {
    let (t, _) = one("  output_tag reformed.${tag}\n", r#"{"a":1}"#);
    assert_eq!(t, "reformed.test.tag");
    let (t, r) = one(
        "  tag t\n  <record>\n    tag ${tag}\n    m ${tag_parts.last} ${message}\n  </record>\n",
        r#"{"message":"1"}"#,
    );
    assert_eq!(t, "t");
    assert_eq!(r, r#"{"message":"1","tag":"test.tag","m":"tag 1"}"#);
}

#[test]
fn tag_from_record_fans_out_in_order() {
    // github/141's `tag ${container_name_short}` (bare field), with and without Ruby.
    for ruby in ["true", "false"] {
        let body = format!("  tag app.${{name}}\n  enable_ruby {ruby}\n");
        let v = run(&body, "docker.x", &[r#"{"name":"a","n":1}"#, r#"{"name":"b","n":2}"#, r#"{"name":"a","n":3}"#]);
        let got: Vec<(&str, usize)> = v.iter().map(|(t, r)| (t.as_str(), r.len())).collect();
        assert_eq!(got, [("app.a", 2), ("app.b", 1)], "enable_ruby {ruby}");
        assert_eq!(v[0].1, [r#"{"name":"a","n":1}"#, r#"{"name":"a","n":3}"#]);
    }
}

#[test]
fn placeholders_with_and_without_ruby() {
    for ruby in ["yes", "no"] {
        let c = |m: &str| format!("  tag tag\n  enable_ruby {ruby}\n  <record>\n    message {m}\n  </record>\n");
        let msg = |m: &str, tag: &str| {
            let v = run(&c(m), tag, &[r#"{"eventType0":"bar"}"#]);
            let r: serde_json::Value = serde_json::from_str(&v[0].1[0]).unwrap();
            r["message"].as_str().unwrap_or_default().to_string()
        };
        assert_eq!(msg("${hostname}", "test.tag"), HOST);
        assert_eq!(msg("${tag}", "test.tag"), "test.tag");
        assert_eq!(msg("${tag_parts[0]} ${tag_parts[-1]}", "test.tag"), "test tag");
        assert_eq!(msg("${tags[0]} ${tags[-1]}", "test.tag"), "test tag", "(obsolete) tags, enable_ruby {ruby}");
        assert_eq!(
            msg("${tag_prefix[1]} ${tag_prefix[-2]} ${tag_suffix[2]} ${tag_suffix[-3]}", "prefix.test.tag.suffix"),
            "prefix.test prefix.test.tag tag.suffix test.tag.suffix"
        );
        assert_eq!(msg("x${eventType0}y", "test.tag"), "xbary", "bare field, enable_ruby {ruby}");
    }
}

#[test]
fn reserved_keys_are_not_overwritten_by_the_record() {
    for ruby in ["yes", "no"] {
        let body = format!(
            "  tag tag\n  enable_ruby {ruby}\n  <record>\n    new_tag ${{tag}}\n    new_record_tag ${{record[\"tag\"]}}\n  </record>\n"
        );
        let (_, r) = one(&body, r#"{"tag":"tag","time":"time"}"#);
        assert_eq!(r, r#"{"tag":"tag","time":"time","new_tag":"test.tag","new_record_tag":"tag"}"#, "{ruby}");
    }
}

#[test]
fn remove_keep_renew() {
    let (_, r) =
        one("  tag t\n  remove_keys eventType0,message\n  x 1\n", r#"{"eventType0":"bar","message":"m","k":2}"#);
    assert_eq!(r, r#"{"k":2,"x":"1"}"#, "flat values are strings (auto_typecast false)");
    let (_, r) = one("  tag t\n  renew_record true\n  x ${message}\n", r#"{"eventType0":"bar","message":"m"}"#);
    assert_eq!(r, r#"{"x":"m"}"#);
    let (_, r) = one(
        "  tag t\n  renew_record true\n  keep_keys eventType0,message,missing\n",
        r#"{"eventType0":"bar","message":"m"}"#,
    );
    assert_eq!(r, r#"{"eventType0":"bar","message":"m","missing":null}"#, "a missing keep key is nil");
    // `$.a` is a key as written, not a record accessor.
    let (_, r) = one("  tag t\n  remove_keys $.a\n", r#"{"a":{"b":1},"$.a":2}"#);
    assert_eq!(r, r#"{"a":{"b":1}}"#);
}

#[test]
fn renew_time_key_is_whole_seconds() {
    let body = "  tag t\n  renew_time_key tk\n  remove_keys tk\n  auto_typecast true\n  <record>\n    tk ${record[\"ts\"]}\n  </record>\n";
    let out = match_output(&conf(body), 0);
    let c = crate::test_support::Collect::default();
    struct Times(std::cell::RefCell<Vec<(u32, u32)>>);
    impl crate::plugin::Emitter for Times {
        fn emit(&self, _: usize, b: spate_protocol::EventBatch) -> Result<(), crate::plugin::EmitError> {
            self.0.borrow_mut().extend(b.events().map(|e| (e.time.sec, e.time.nsec)));
            Ok(())
        }
    }
    let t = Times(Default::default());
    let b = batch("test.tag", &[r#"{"ts":1273028522.75}"#, r#"{"ts":"1273028523"}"#]);
    out.emit(&b, &t).unwrap();
    assert_eq!(t.0.into_inner(), [(1273028522, 0), (1273028523, 0)]);
    out.emit(&b, &c).unwrap();
    assert_eq!(c.0.borrow()[0].2, [r#"{"ts":1273028522.75}"#, r#"{"ts":"1273028523"}"#], "renewed, then removed");
}

#[test]
fn ruby_errors() {
    // A value whose Ruby raises is nil; a bare name the record lacks is NameError.
    let (_, r) = one("  tag t\n  x ${nosuch}\n  y ${message.upcase}\n", r#"{"message":"m"}"#);
    assert_eq!(r, r#"{"message":"m","x":null,"y":"M"}"#);
    // A tag whose Ruby raises: the event is not emitted.
    let v = run("  tag t.${name.upcase}\n", "test.tag", &[r#"{"name":"a"}"#, r#"{"other":1}"#]);
    assert_eq!(v, [("t.A".to_string(), vec![r#"{"name":"a"}"#.to_string()])]);
    // Without Ruby, an unknown bare field is "" in a string.
    let (t, _) = one("  tag t.${nosuch}\n  enable_ruby false\n", r#"{"a":1}"#);
    assert_eq!(t, "t.");
}

#[test]
fn json_values_and_keys_with_placeholders() {
    for ruby in ["yes", "no"] {
        let body = format!(
            "  tag tag\n  enable_ruby {ruby}\n  renew_record true\n  <record>\n    h {{\"hostname\":\"${{hostname}}\", \"${{tag}}\":100}}\n    a [\"${{tag}}\"]\n    foo.${{tag}} tag\n  </record>\n"
        );
        let (_, r) = one(&body, r#"{"m":1}"#);
        assert_eq!(
            r,
            format!(r#"{{"h":{{"hostname":"{HOST}","test.tag":100}},"a":["test.tag"],"foo.test.tag":"tag"}}"#)
        );
    }
}
