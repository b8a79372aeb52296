//! concat's tests: the "lines", "regexp" and "use first timestamp" cases of the plugin's
//! test/plugin/test_filter_concat.rb (expected records from that file; Ruby fluentd is not
//! installed here), timeouts and shutdown through the filter hooks.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::test_support::{batch, first_filter, plan_err, records, Collect, T0};

const CONFIG: &str = "  key message\n  n_lines 3\n";

fn conf(body: &str) -> String {
    format!("<filter **>\n  @type concat\n{body}</filter>\n<match **>\n  @type null\n</match>\n<label @ERROR>\n  <match **>\n    @type null\n  </match>\n</label>\n<label @TIMEOUT>\n  <match **>\n    @type null\n  </match>\n</label>\n")
}

/// The records that come out of one batch of `msgs` (tag "test").
fn run(body: &str, msgs: &[&str]) -> Vec<String> {
    let f = first_filter(&conf(body));
    f.filter(batch("test", msgs), &Collect::default()).map(|b| records(&b)).unwrap_or_default()
}

fn host(m: &str) -> String {
    format!(r#"{{"host":"example.com","message":"{m}"}}"#)
}

fn cid(c: &str, m: &str) -> String {
    format!(r#"{{"container_id":"{c}","message":"{m}"}}"#)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn config_errors() {
    assert!(plan_err(&conf("")).contains("'key' parameter is required"));
    assert!(plan_err(&conf("  key message\n")).contains("Either n_lines, multiline_start_regexp"));
    assert!(plan_err(&conf("  key m\n  n_lines 3\n  multiline_start_regexp /^s/\n")).contains("exclusive"));
    assert!(plan_err(&conf("  key m\n  partial_key p\n  partial_value true\n"))
        .contains("partial-message modes are not supported"));
    assert!(plan_err(&conf("  key m\n  multiline_start_regexp ^s\n")).contains("expected /regexp/"));
    assert!(
        plan_err(&conf("  key m\n  n_lines 2\n  timeout_label @NOPE\n")).contains("timeout_label @NOPE refers to no")
    );
}

#[test]
fn lines() {
    let m: Vec<String> = (1..=7).map(|i| host(&format!("message {i}"))).collect();
    assert_eq!(run(CONFIG, &strs(&m[..3])), [host("message 1\\nmessage 2\\nmessage 3")]);
    // filter excess: the 4th waits for more.
    assert_eq!(run(CONFIG, &strs(&m[..4])), [host("message 1\\nmessage 2\\nmessage 3")]);
    // filter 2 groups; missing keys pass through in place.
    let mut v = m[..6].to_vec();
    v.push(r#"{"host":"example.com","somekey":"message 7"}"#.to_string());
    assert_eq!(
        run(CONFIG, &strs(&v)),
        [
            host("message 1\\nmessage 2\\nmessage 3"),
            host("message 4\\nmessage 5\\nmessage 6"),
            r#"{"host":"example.com","somekey":"message 7"}"#.to_string()
        ]
    );
    // stream identity.
    let v: Vec<String> = (1..=6).map(|i| cid(if i % 2 == 1 { "1" } else { "2" }, &format!("message {i}"))).collect();
    assert_eq!(
        run(&format!("{CONFIG}  stream_identity_key container_id\n"), &strs(&v)),
        [cid("1", "message 1\\nmessage 3\\nmessage 5"), cid("2", "message 2\\nmessage 4\\nmessage 6")]
    );
}

#[test]
fn regexp() {
    let start = "  key message\n  multiline_start_regexp /^start/\n";
    let v: Vec<String> = ["start", "  message 1", "  message 2", "start", "  message 3", "  message 4", "start"]
        .iter()
        .map(|m| host(m))
        .collect();
    assert_eq!(
        run(start, &strs(&v)),
        [host("start\\n  message 1\\n  message 2"), host("start\\n  message 3\\n  message 4")]
    );
    // multiline_end_regexp with stream identity.
    let body = "  key message\n  stream_identity_key container_id\n  multiline_start_regexp /^start/\n  multiline_end_regexp /^end/\n";
    let v: Vec<String> = [
        ("1", "single1"),
        ("2", "single2"),
        ("1", "start"),
        ("2", "start"),
        ("1", "  message 1"),
        ("2", "  message 3"),
        ("1", "  message 2"),
        ("2", "  message 4"),
        ("1", "end"),
        ("2", "end"),
        ("1", "single3"),
        ("2", "single4"),
    ]
    .iter()
    .map(|(c, m)| cid(c, m))
    .collect();
    assert_eq!(
        run(body, &strs(&v)),
        [
            cid("1", "single1"),
            cid("2", "single2"),
            cid("1", "start\\n  message 1\\n  message 2\\nend"),
            cid("2", "start\\n  message 3\\n  message 4\\nend"),
            cid("1", "single3"),
            cid("2", "single4"),
        ]
    );
    // #14: start and end regexps on one line.
    let body = "  key message\n  stream_identity_key container_id\n  multiline_start_regexp /^start/\n  multiline_end_regexp /end$/\n";
    let v: Vec<String> =
        ["start message1 end", "start", " message3", "start message2 end", "start", " message4", "end"]
            .iter()
            .map(|m| cid("1", m))
            .collect();
    assert_eq!(
        run(body, &strs(&v)),
        [
            cid("1", "start message1 end"),
            cid("1", "start\\n message3"),
            cid("1", "start message2 end"),
            cid("1", "start\\n message4\\nend"),
        ]
    );
    // multiline_end_regexp only.
    let body = "  key message\n  multiline_end_regexp /x$/\n";
    assert_eq!(run(body, &strs(&["ax", "b", "cx"].map(host))), [host("ax"), host("b\\ncx")]);
    // continuous_line_regexp, a nil value and a missing key.
    let body = "  key message\n  multiline_start_regexp /^start/\n  continuous_line_regexp /^ /\n";
    let mut v: Vec<String> = ["start", "  message 1", "  message 2"].iter().map(|m| cid("1", m)).collect();
    v.push(r#"{"container_id":"1","message":null}"#.into());
    v.push(r#"{"container_id":"2","nomessage":"x"}"#.into());
    v.push(cid("1", "single line message 1"));
    assert_eq!(
        run(body, &strs(&v)),
        [
            cid("1", "start\\n  message 1\\n  message 2"),
            r#"{"container_id":"1","message":null}"#.to_string(),
            r#"{"container_id":"2","nomessage":"x"}"#.to_string(),
            cid("1", "single line message 1"),
        ]
    );
    // A non-string value: Ruby's Regexp#match? raises; the event is dropped.
    assert_eq!(run(start, &[r#"{"message":5}"#, &host("start")]), Vec::<String>::new());
}

#[test]
fn use_first_timestamp_and_merge() {
    let f = first_filter(&conf(&format!("{CONFIG}  use_first_timestamp true\n")));
    let b = f.filter(
        batch("test", &strs(&(1..=3).map(|i| host(&format!("m{i}"))).collect::<Vec<_>>())),
        &Collect::default(),
    );
    assert_eq!(b.unwrap().events().next().unwrap().time, T0);
    let f = first_filter(&conf(CONFIG));
    let b = f.filter(
        batch("test", &strs(&(1..=3).map(|i| host(&format!("m{i}"))).collect::<Vec<_>>())),
        &Collect::default(),
    );
    assert_eq!(b.unwrap().events().next().unwrap().time.sec, T0.sec + 2, "the completing event's time");
    // The joined record is the first's, merged into the completing event's record.
    let out = run("  key message\n  n_lines 2\n", &[r#"{"a":1,"message":"x"}"#, r#"{"b":2,"message":"y"}"#]);
    assert_eq!(out, [r#"{"b":2,"message":"x\ny","a":1}"#]);
}

#[test]
fn shutdown_flushes_to_timeout_label_or_error() {
    for (extra, label) in [("  timeout_label @TIMEOUT\n", 2), ("", 1)] {
        let f: Rc<dyn crate::plugin::Filter> = Rc::from(first_filter(&conf(&format!("{CONFIG}{extra}"))));
        assert!(f.filter(batch("test", &[&host("m1"), &host("m2")]), &Collect::default()).is_none());
        let c = Collect::default();
        f.shutdown(&c);
        assert_eq!(c.0.borrow().clone(), [(label, "test".to_string(), vec![host("m1\\nm2")])]);
    }
}

#[test]
fn timeout_flushes_quiet_streams() {
    // The filter's own timer (1 s ticks), on an executor; waits for it without timing
    // assertions.
    let got = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(|| async {
            let f: Rc<dyn crate::plugin::Filter> = Rc::from(first_filter(&conf(
                "  key message\n  multiline_start_regexp /^start/\n  flush_interval 0.2\n",
            )));
            let c = Rc::new(Collect::default());
            f.clone().start(c.clone());
            let b = f.filter(batch("test", &[&cid("1", "start"), &cid("1", "  message 1")]), &Collect::default());
            assert!(b.is_none());
            let start = Instant::now();
            while c.0.borrow().is_empty() && start.elapsed() < Duration::from_secs(20) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            f.shutdown(&*c);
            let got = c.0.borrow().clone();
            got
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, [(1, "test".to_string(), vec![cid("1", "start\\n  message 1")])]);
}

#[test]
fn fluent_tags_pass_and_bounds_hold() {
    let f = first_filter(&conf(CONFIG));
    let b = batch("fluent.info", &[&host("a")]);
    let ptr = b.entries.as_ptr();
    assert_eq!(f.filter(b, &Collect::default()).unwrap().entries.as_ptr(), ptr);
    // buffer_limit_size: the held lines are emitted before the stream grows past it.
    let out =
        run("  key message\n  n_lines 100\n  buffer_limit_size 60\n", &[&host("aaaa"), &host("bbbb"), &host("cccc")]);
    assert_eq!(out, [host("aaaa"), host("bbbb")], "each record is ~31 bytes: two never fit in 60");
}
