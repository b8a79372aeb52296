//! out_loggly and out_loggly_buffered (fluent-plugin-loggly) through a live spate,
//! against a test server standing in for Loggly (a hosted service: nothing to install;
//! see the README): one JSON POST per record to the URL's path, the bulk flavour's
//! newline-joined chunk, retries that resume after what was posted, refused records
//! dropped with an error line, and the configuration errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::http_server::*;
use common::*;
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;

fn conf(ty: &str, port: u16, extra: &str) -> String {
    format!(
        "{SRC}<match app.**>\n  @type {ty}\n  loggly_url http://127.0.0.1:{port}/inputs/tok-1/tag/fluentd/?dropped=1\n  {extra}</match>\n"
    )
}

const RETRY: &str = "<buffer>\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

#[test]
fn one_post_per_record_resuming_after_a_retry() {
    // The second record's first POST is answered 503: it is posted again, and the
    // first is not.
    let (port, got) = server(vec![200, 503]);
    let spate = Spate::start("loggly-each", &conf("loggly", port, RETRY), Stdio::null());
    send_json(&spate, "app.web", EventTime::new(T, 0), &[r#"{"n":1}"#, r#"{"n":2,"s":"é"}"#, r#"{"n":3}"#], "e1");
    let reqs = wait(&got, 4);
    let bodies: Vec<String> = reqs.iter().map(Got::text).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2,"s":"é"}"#, r#"{"n":2,"s":"é"}"#, r#"{"n":3}"#]);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/inputs/tok-1/tag/fluentd/"),
            "the query is not sent"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got.lock().unwrap().len(), 4, "nothing is posted twice once delivered");
}

#[test]
fn a_refused_record_is_dropped_with_an_error_and_the_rest_go_on() {
    // No <buffer>: flushed at once, as the plugin posts from emit (else the first
    // flush would come after fluentd's default 60 s).
    let (port, got) = server(vec![403]);
    let spate = Spate::start("loggly-403", &conf("loggly", port, ""), Stdio::null());
    send_json(&spate, "app.x", EventTime::new(T, 0), &[r#"{"bad":1}"#, r#"{"good":2}"#], "d1");
    let reqs = wait(&got, 2);
    assert_eq!(reqs.iter().map(Got::text).collect::<Vec<_>>(), [r#"{"bad":1}"#, r#"{"good":2}"#]);
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, err) = spate.stop();
    assert_eq!(got.lock().unwrap().len(), 2, "403 is not retried");
    assert!(err.contains("record dropped: Loggly answered 403"), "{err}");
}

#[test]
fn bulk_posts_the_chunk_as_lines_with_timestamps() {
    let (port, got) = server(vec![500]);
    let extra = "time_precision_digits 3\n  <buffer>\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";
    let spate = Spate::start("loggly-bulk", &conf("loggly_buffered", port, extra), Stdio::null());
    send_json(
        &spate,
        "app",
        EventTime::new(T, 250_000_000),
        &[r#"{"a":1}"#, r#"{"timestamp":"kept"}"#, r#"{"timestamp":null,"b":2}"#],
        "b1",
    );
    let reqs = wait(&got, 2);
    assert_eq!(reqs.len(), 2, "the 500 is retried");
    assert_eq!(reqs[0].body, reqs[1].body);
    let r = &reqs[1];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/inputs/tok-1/tag/fluentd/"));
    assert_eq!(r.header("content-type"), Some("text"));
    let text = r.text();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1], r#"{"timestamp":"kept"}"#);
    // The local zone's ISO 8601 with 3 digits: the shape, whatever the zone.
    for (line, prefix, suffix, frac) in
        [(lines[0], r#"{"a":1,"timestamp":""#, "\"}", ".250"), (lines[2], r#"{"timestamp":""#, r#"","b":2}"#, ".250")]
    {
        let stamp = line.strip_prefix(prefix).and_then(|l| l.strip_suffix(suffix)).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(stamp.len(), "2023-11-14T22:13:20.250+00:00".len(), "{stamp}");
        assert_eq!(&stamp[19..23], frac, "{stamp}");
        assert!(stamp[23..].starts_with(['+', '-']) && &stamp[26..27] == ":", "{stamp}");
    }
    drop(spate);
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want) in [
        ("@type loggly\n", "'loggly_url' parameter is required"),
        ("@type loggly\n  loggly_url logs-01.loggly.com/inputs/x\n", "expected scheme://host"),
        ("@type loggly\n  loggly_url https://logs-01.loggly.com\n", "has no path"),
        ("@type loggly_buffered\n  loggly_url http://h/bulk/x\n  time_precision_digits 12\n", "expected 0 to 9"),
    ] {
        let (ok, err) = dry_run(&format!("<match **>\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:"), "{body}: {err}");
    }
}
