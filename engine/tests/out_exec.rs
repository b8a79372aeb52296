//! out_exec (fluentd core) through a live spate with real commands run by /bin/sh: the
//! chunk formatted into a file whose path is the command's last argument (`<format>`
//! default tsv, `<inject>` time as a UTC string), a failing command retried until it
//! succeeds (each event delivered once), and the configuration errors; out_exec_filter
//! piping chunks through real filter processes (sed, cat, head) and routing their output.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;
const BUF: &str = "<buffer>\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

fn wait_for(path: &std::path::Path, lines: usize) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.lines().count() >= lines || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_formatted_chunk_goes_to_the_command() {
    let dir = tempdir::Dir::new("exec-out");
    let out = dir.path().join("got.tsv");
    let paths = dir.path().join("paths");
    let script = dir.path().join("rec.sh");
    // Appends the file it is given, and remembers its path.
    std::fs::write(&script, format!("cat \"$1\" >> {}\necho \"$1\" >> {}\n", out.display(), paths.display())).unwrap();
    let conf = format!(
        "{SRC}<match app.**>\n  @type exec\n  command sh {}\n  <format>\n    @type tsv\n    keys a,t,tag,missing\n  </format>\n  <inject>\n    time_key t\n    tag_key tag\n  </inject>\n  {BUF}</match>\n",
        script.display()
    );
    let spate = Spate::start("exec-tsv", &conf, Stdio::null());
    send_json(&spate, "app.x", EventTime::new(T, 500_000_000), &[r#"{"a":1,"b":"x"}"#, r#"{"a":"é"}"#], "x1");
    // Ruby fluentd 1.19.3 wrote the same lines for these events (out_exec, tsv).
    let got = wait_for(&out, 2);
    assert_eq!(got, "1\t2023-11-14T22:13:20Z\tapp.x\t\né\t2023-11-14T22:13:21Z\tapp.x\t\n");
    drop(spate);
    let files = std::fs::read_to_string(&paths).unwrap();
    for f in files.lines() {
        assert!(f.contains("fluent-plugin-out-exec-"), "{f}");
        assert!(!std::path::Path::new(f).exists(), "{f} was not removed");
    }
}

#[test]
fn a_failing_command_is_retried_and_each_event_arrives_once() {
    let dir = tempdir::Dir::new("exec-retry");
    let out = dir.path().join("got.json");
    let mark = dir.path().join("failed-once");
    let script = dir.path().join("cmd.sh");
    // Fails the first time (exit 3), then appends the file it is given.
    std::fs::write(
        &script,
        format!(
            "if [ ! -e {m} ]; then touch {m}; exit 3; fi\ncat \"$1\" >> {o}\n",
            m = mark.display(),
            o = out.display()
        ),
    )
    .unwrap();
    let conf = format!(
        "{SRC}<match app.**>\n  @type exec\n  command sh {}\n  <format>\n    @type json\n  </format>\n  {BUF}</match>\n",
        script.display()
    );
    let spate = Spate::start("exec-retry", &conf, Stdio::null());
    send_json(&spate, "app.y", EventTime::new(T, 0), &[r#"{"n":1}"#, r#"{"n":2}"#], "r1");
    let got = wait_for(&out, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, err) = spate.stop();
    assert!(mark.exists());
    assert_eq!(got, "{\"n\":1}\n{\"n\":2}\n");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), got, "delivered once");
    assert!(err.contains("command exits with error code") && err.contains("status=3"), "{err}");
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want) in [
        ("<format>\n    @type json\n  </format>\n", "'command' parameter is required"),
        ("command cat\n", "keys"),
        ("command cat\n  command_timeout x\n", "command_timeout"),
    ] {
        let (ok, err) = dry_run(&format!("<match **>\n  @type exec\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:"), "{body}: {err}");
    }
}

/// out_exec_filter (fluentd core) with real filters run by /bin/sh: sed appends a
/// column to each tsv line (two children, taking chunks in turn), `cat` echoes JSON
/// whose `<extract>` tag and time route the result, and a child that exits after one
/// line (`head -n 1`) is respawned (`child_respawn inf`) for the next chunk. The
/// results go through the router to a Forward sink.
#[test]
fn exec_filter_pipes_chunks_through_children_and_routes_their_output() {
    let sink = Sink::start();
    let s = sink.addr.port();
    let fwd = |pattern: &str| {
        format!("<match {pattern}>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {s}\n  </server>\n  <buffer>\n    flush_interval 0.1s\n  </buffer>\n</match>\n")
    };
    let conf = format!(
        "{SRC}<match tsv.**>\n  @type exec_filter\n  command sed -u -e 's/$/\\tok/'\n  tag filtered.tsv\n  num_children 2\n  <format>\n    @type tsv\n    keys msg,n\n  </format>\n  <parse>\n    @type tsv\n    keys msg,n,status\n  </parse>\n  {BUF}</match>\n\
         <match json.**>\n  @type exec_filter\n  command cat\n  <format>\n    @type json\n  </format>\n  <parse>\n    @type json\n  </parse>\n  <extract>\n    tag_key t\n    time_key at\n  </extract>\n  {BUF}</match>\n\
         <match long.**>\n  @type exec_filter\n  command sh -c \"head -c 1100000 /dev/zero | tr '\\\\000' x; echo; exec cat\"\n  tag filtered.long\n  <format>\n    @type tsv\n    keys msg\n  </format>\n  <parse>\n    @type tsv\n    keys msg\n  </parse>\n  {BUF}</match>\n\
         <match once.**>\n  @type exec_filter\n  command head -n 1\n  tag filtered.once\n  child_respawn inf\n  <format>\n    @type tsv\n    keys msg\n  </format>\n  <parse>\n    @type tsv\n    keys msg\n  </parse>\n  {BUF}</match>\n{}{}",
        fwd("filtered.**"),
        fwd("from.**")
    );
    let spate = Spate::start_workers("exec-filter", &conf, 1);
    let t0 = EventTime::new(T, 0);
    send_json(&spate, "tsv.a", t0, &[r#"{"msg":"one","n":1}"#, r#"{"msg":"two","n":2}"#], "t1");
    send_json(&spate, "tsv.a", t0, &[r#"{"msg":"three","n":3}"#], "t2");
    send_json(&spate, "json.a", t0, &[r#"{"t":"from.child","at":1362020400,"v":1}"#], "j1");
    send_json(&spate, "once.a", t0, &[r#"{"msg":"first"}"#], "o1");
    // A child whose first line is 1.1 MB: that line is dropped, the next ones go on.
    send_json(&spate, "long.a", t0, &[r#"{"msg":"after the long line"}"#], "l1");
    let got = sink.wait_for(6, Duration::from_secs(20));
    // The respawned child takes the next chunk.
    std::thread::sleep(Duration::from_millis(500));
    send_json(&spate, "once.a", t0, &[r#"{"msg":"second"}"#], "o2");
    let got = if got.len() >= 6 { sink.wait_for(7, Duration::from_secs(20)) } else { got };
    let (_, _, err) = spate.stop();
    let recs: Vec<(String, serde_json::Value, u32)> = got
        .iter()
        .map(|r| {
            let mut j = Vec::new();
            spate_protocol::ValueRef::new(&r.record).unwrap().write_json(&mut j);
            (String::from_utf8_lossy(&r.tag).into_owned(), serde_json::from_slice(&j).unwrap(), r.time.sec)
        })
        .collect();
    assert_eq!(recs.len(), 7, "{recs:?}\n{err}");
    let long: Vec<_> = recs.iter().filter(|(t, _, _)| t == "filtered.long").map(|(_, r, _)| r).collect();
    assert_eq!(long, vec![&serde_json::json!({"msg": "after the long line"})], "{err}");
    assert!(err.contains("a line of the command's output over 1 MiB was dropped"), "{err}");
    let tsv: Vec<&serde_json::Value> = recs.iter().filter(|(t, _, _)| t == "filtered.tsv").map(|(_, r, _)| r).collect();
    assert_eq!(tsv.len(), 3, "{recs:?}");
    assert!(tsv.contains(&&serde_json::json!({"msg": "one", "n": "1", "status": "ok"})), "{recs:?}");
    assert!(tsv.contains(&&serde_json::json!({"msg": "three", "n": "3", "status": "ok"})), "{recs:?}");
    let j: Vec<_> = recs.iter().filter(|(t, _, _)| t == "from.child").collect();
    assert_eq!(j.len(), 1, "{recs:?}");
    assert_eq!((&j[0].1, j[0].2), (&serde_json::json!({"v": 1}), 1362020400), "tag and time extracted, keys removed");
    let once: Vec<&serde_json::Value> =
        recs.iter().filter(|(t, _, _)| t == "filtered.once").map(|(_, r, _)| r).collect();
    assert_eq!(once, vec![&serde_json::json!({"msg": "first"}), &serde_json::json!({"msg": "second"})], "{err}");
    assert!(err.contains("respawning child process 0"), "{err}");
}

/// A record of the child's output that cannot be emitted (it has no tag, or its
/// output's buffer is full) is logged as fluentd logs it, "exec_filter failed to emit"
/// with the record, at most once per `suppress_error_log_interval`; one refused by a full
/// buffer goes to `@ERROR` (fluentd's `router.emit_error_event`); the records after it
/// still go on. `read_block_size` (fluentd's msgpack reader) says it has no effect.
#[test]
fn exec_filter_failed_emits_are_logged_once_per_suppress_interval() {
    let sink = Sink::start();
    let s = sink.addr.port();
    let conf = format!(
        "{SRC}<match json.**>\n  @type exec_filter\n  command cat\n  suppress_error_log_interval 60\n  read_block_size 64k\n  <format>\n    @type json\n  </format>\n  <parse>\n    @type json\n  </parse>\n  <extract>\n    tag_key t\n  </extract>\n  {BUF}</match>\n\
         <match out.**>\n  @type forward\n  <server>\n    host 127.0.0.1\n    port {s}\n  </server>\n  <buffer>\n    flush_interval 0.1s\n  </buffer>\n</match>\n\
         <match full.**>\n  @type null\n  never_flush true\n  <buffer>\n    chunk_limit_size 100\n    total_limit_size 100\n    flush_at_shutdown false\n  </buffer>\n</match>\n\
         <label @ERROR>\n  <match **>\n    @type forward\n    <server>\n      host 127.0.0.1\n      port {s}\n    </server>\n    <buffer>\n      flush_interval 0.1s\n    </buffer>\n  </match>\n</label>\n",
    );
    let spate = Spate::start_workers("exec-filter-errors", &conf, 1);
    let t0 = EventTime::new(T, 0);
    let pad = "x".repeat(60);
    let recs = [
        r#"{"n":1}"#.to_string(),
        r#"{"n":2}"#.to_string(),
        r#"{"t":"out.a","n":3}"#.to_string(),
        r#"{"n":4}"#.to_string(),
        format!(r#"{{"t":"full.a","n":5,"pad":"{pad}"}}"#),
        format!(r#"{{"t":"full.a","n":6,"pad":"{pad}"}}"#),
    ];
    send_json(&spate, "json.a", t0, &recs, "e1");
    let got = sink.wait_for(2, Duration::from_secs(20));
    // The record after the third has been through the child too (cat keeps order).
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, err) = spate.stop();
    assert_eq!(got.len(), 2, "{err}");
    // Two outputs flush on their own timers, so the sink may see either first.
    let tags: Vec<&[u8]> = got.iter().map(|e| e.tag.as_slice()).collect();
    assert!(tags.contains(&&b"out.a"[..]), "{tags:?}");
    // n 5 filled full.a's buffer; n 6 was refused and went to @ERROR, tag and all.
    let refused = got.iter().find(|e| e.tag == b"full.a").expect("full.a through @ERROR");
    let mut j = Vec::new();
    spate_protocol::ValueRef::new(&refused.record).unwrap().write_json(&mut j);
    assert!(String::from_utf8_lossy(&j).contains(r#""n":6"#), "{}", String::from_utf8_lossy(&j));
    let failed: Vec<&str> = err.lines().filter(|l| l.contains("exec_filter failed to emit")).collect();
    assert_eq!(failed.len(), 1, "{err}");
    assert!(failed[0].contains("[error]") && failed[0].contains(r#"record: {"n":1}"#), "{err}");
    assert!(err.contains("read_block_size 65536 has no effect"), "{err}");
}
