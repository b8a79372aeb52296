//! concat's tests: the "lines", "regexp", "use first timestamp", "partial_key", "partial
//! meta" and "CRI-O format log" cases of the plugin's
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
    assert!(plan_err(&conf("  key m\n  partial_key p\n")).contains("partial_value is required when partial_key"));
    assert!(plan_err(&conf("  key m\n  partial_key p\n  partial_value t\n  n_lines 2\n"))
        .contains("partial_key and n_lines are exclusive"));
    assert!(plan_err(&conf("  key m\n  use_partial_metadata true\n  partial_key p\n  partial_value t\n"))
        .contains("use_partial_metadata and partial_key are exclusive"));
    assert!(plan_err(&conf("  key m\n  use_partial_cri_logtag true\n  multiline_end_regexp /x/\n"))
        .contains("use_partial_cri_logtag and multiline_start_regexp/multiline_end_regexp are exclusive"));
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

fn docker(m: &str, partial: Option<&str>) -> String {
    match partial {
        Some(p) => format!(r#"{{"container_id":"1","message":"{m}","partial_message":"{p}"}}"#),
        None => format!(r#"{{"container_id":"1","message":"{m}"}}"#),
    }
}

#[test]
fn partial_key() {
    let cfg = "  key message\n  partial_key partial_message\n  partial_value true\n";
    let parts = |end: &str| -> Vec<String> {
        ["start", " message 1", " message 2"]
            .iter()
            .map(|m| docker(m, Some("true")))
            .chain([docker(end, Some("false"))])
            .collect()
    };
    let mut v = parts("end");
    v.push(docker("single line", None));
    v.extend(parts("end"));
    assert_eq!(
        run(cfg, &strs(&v)),
        [
            docker("start\\n message 1\\n message 2\\nend", None),
            docker("single line", None),
            docker("start\\n message 1\\n message 2\\nend", None)
        ]
    );
    // keep_partial_key: the completing event's value stays.
    assert_eq!(
        run(&format!("{cfg}  keep_partial_key true\n"), &strs(&parts("end"))),
        [docker("start\\n message 1\\n message 2\\nend", Some("false"))]
    );
    // containerd/CRI flags parsed into a field.
    let cri: Vec<String> = ["P", "P", "F"]
        .iter()
        .enumerate()
        .map(|(i, f)| format!(r#"{{"container_id":"1","message":"m{i}","flag":"{f}"}}"#))
        .collect();
    assert_eq!(
        run("  key message\n  partial_key flag\n  partial_value P\n", &strs(&cri)),
        [r#"{"container_id":"1","message":"m0\nm1\nm2"}"#]
    );
    // buffer_overflow_method new: the overflowing part starts the next event (the
    // plugin's count: keys and values, 44 + 49 + 49 bytes passes 100).
    let small = format!("{cfg}  buffer_limit_size 100\n  buffer_overflow_method new\n");
    assert_eq!(
        run(&small, &strs(&parts("end"))),
        [docker("start\\n message 1", None), docker(" message 2\\nend", None)]
    );
    // drop: the held parts and the overflowing one are thrown away.
    let drop = format!("{cfg}  buffer_limit_size 100\n  buffer_overflow_method drop\n");
    assert_eq!(run(&drop, &strs(&parts("end"))), [docker("end", None)]);
}

fn meta(fields: [&str; 4], m: &str, id: &str, ord: u32, last: bool) -> String {
    format!(
        r#"{{"container_id":"1","message":"{m}","{}":"true","{}":"{id}","{}":"{ord}","{}":"{last}"}}"#,
        fields[0], fields[1], fields[2], fields[3]
    )
}

#[test]
fn partial_metadata() {
    for (format, fields) in [
        ("docker-fluentd", ["partial_message", "partial_id", "partial_ordinal", "partial_last"]),
        (
            "docker-journald",
            [
                "CONTAINER_PARTIAL_MESSAGE",
                "CONTAINER_PARTIAL_ID",
                "CONTAINER_PARTIAL_ORDINAL",
                "CONTAINER_PARTIAL_LAST",
            ],
        ),
        (
            "docker-journald-lowercase",
            [
                "container_partial_message",
                "container_partial_id",
                "container_partial_ordinal",
                "container_partial_last",
            ],
        ),
    ] {
        let cfg = format!("  key message\n  use_partial_metadata true\n  partial_metadata_format {format}\n");
        // Two interleaved messages, parts out of order: joined by ordinal.
        let v = [
            meta(fields, "b1", "p2", 1, false),
            meta(fields, " a2", "p1", 2, false),
            meta(fields, "a1", "p1", 1, false),
            r#"{"container_id":"1","message":"whole"}"#.to_string(),
            meta(fields, " a3", "p1", 3, true),
            meta(fields, " b2", "p2", 2, true),
        ];
        assert_eq!(
            run(&cfg, &strs(&v)),
            [
                r#"{"container_id":"1","message":"whole"}"#.to_string(),
                r#"{"container_id":"1","message":"a1\n a2\n a3"}"#.to_string(),
                r#"{"container_id":"1","message":"b1\n b2"}"#.to_string(),
            ],
            "{format}"
        );
    }
}

#[test]
fn partial_cri_logtag() {
    let cfg = "  key message\n  use_partial_cri_logtag true\n  partial_cri_logtag_key logtag\n";
    let v = [
        r#"{"stream":"stdout","logtag":"F","message":"The content of the log entry 1"}"#,
        r#"{"stream":"stdout","logtag":"P","message":"First line of log entry 2"}"#,
        r#"{"stream":"stdout","logtag":"P","message":"Second line of the log entry 2"}"#,
        r#"{"stream":"stderr","logtag":"F","message":"Last line of the log entry 2"}"#,
    ];
    assert_eq!(
        run(cfg, &v),
        [
            r#"{"message":"The content of the log entry 1"}"#,
            r#"{"message":"First line of log entry 2\nSecond line of the log entry 2\nLast line of the log entry 2"}"#
        ]
    );
}

#[test]
fn a_failing_event_does_not_lose_a_size_bound_flush() {
    // The second event overflows the bound (the held line goes out joined) and then
    // fails the regexp (an Integer): the held line must still come out.
    let cfg = "  key message\n  multiline_start_regexp /^s/\n  buffer_limit_size 40\n";
    let v = [host("s1"), r#"{"host":"example.com","message":123}"#.to_string()];
    assert_eq!(run(cfg, &strs(&v)), [host("s1")]);
}
