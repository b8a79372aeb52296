//! out_elasticsearch, out_opensearch and elasticsearch_data_stream through a live spate
//! against the Bulk API test server (bulk_server/): documents as fluent-plugin-elasticsearch
//! writes them, per-document failures (429/5xx retried alone, 400 to `@ERROR` or
//! `<secondary>`), whole-request 503s and timeouts retried, gzip bodies, basic auth,
//! data stream creation. No live Elasticsearch/OpenSearch is involved.

#[path = "bulk_server/mod.rs"]
mod bulk_server;
mod common;

use std::process::Stdio;
use std::time::Duration;

use bulk_server::{Answer, BulkServer};
use common::*;
use serde_json::{json, Value};
use spate_protocol::EventTime;

/// 2023-11-14 22:13:20 UTC.
const T: u32 = 1_700_000_000;

/// Sends JSON records (one PackedForward frame, acked).
fn send(spate: &Spate, tag: &str, recs: &[Value], id: &str) {
    let recs: Vec<String> = recs.iter().map(Value::to_string).collect();
    send_json(spate, tag, EventTime::new(T, 0), &recs, id)
}

fn source() -> &'static str {
    "<source>\n  @type forward\n  bind 127.0.0.1\n  port {PORT}\n</source>\n"
}

const FAST: &str = "<buffer>\n    flush_mode interval\n    flush_interval 100ms\n    retry_wait 0.2s\n    retry_randomize false\n  </buffer>\n";

#[test]
fn logstash_documents_as_fluent_plugin_elasticsearch_writes_them() {
    let es = BulkServer::start("8.11.0", Box::new(|_, _, _, _| Answer::Store));
    es.state.lock().unwrap().auth = Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into());
    let conf = format!(
        "{}<match app.**>\n  @type elasticsearch\n  host 127.0.0.1\n  port {}\n  user elastic\n  password changeme\n  logstash_format true\n  logstash_prefix app-${{tag[1]}}\n  id_key rid\n  include_tag_key true\n  remove_keys junk\n  time_precision 3\n  {FAST}</match>\n",
        source(),
        es.port
    );
    let spate = Spate::start("es-logstash", &conf, Stdio::null());
    let recs: Vec<Value> = (0..20).map(|i| json!({"rid": format!("r{i}"), "n": i, "junk": "x"})).collect();
    send(&spate, "app.web", &recs, "a1");
    let stored = es.wait_stored(20, Duration::from_secs(20));
    assert_eq!(stored.len(), 20, "{:?}", es.violations());
    assert_eq!(es.violations(), Vec::<String>::new());
    let (index, meta, src) = &stored[0];
    assert_eq!(index, "app-web-2023.11.14");
    assert_eq!(meta, &json!({"_index": "app-web-2023.11.14", "_id": "r0"}));
    // The source: record order kept, junk removed, @timestamp (local time, 3 digits) and
    // tag appended, as process_message does.
    let line = es.bulks()[0].body.lines().nth(1).unwrap().to_string();
    assert!(line.starts_with(r#"{"rid":"r0","n":0,"@timestamp":""#), "{line}");
    assert!(line.ends_with(r#","tag":"app.web"}"#), "{line}");
    assert!(src["@timestamp"].as_str().unwrap().contains(".000"), "{src}");
    let b = &es.bulks()[0];
    assert_eq!(b.path, "/_bulk");
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn failed_documents_alone_are_retried_and_rejected_ones_go_to_error_label() {
    // n % 5 == 1: 429 on the first try; n % 5 == 2: 503 on the first try; n % 5 == 3:
    // a mapping error every time; the rest stored at once.
    let es = BulkServer::start(
        "7.17.0",
        Box::new(|_, _, src, seen| match (src["n"].as_u64().unwrap_or(0) % 5, seen) {
            (1, 1) => Answer::TooMany,
            (2, 1) => Answer::Unavailable,
            (3, _) => Answer::Reject,
            _ => Answer::Store,
        }),
    );
    let dir = tempdir::Dir::new("es-errors");
    let d = dir.path().display().to_string();
    let conf = format!(
        "{}<match app.**>\n  @type elasticsearch\n  hosts http://127.0.0.1:{}\n  index_name idx\n  compression_level best_speed\n  {FAST}</match>\n\
         <label @ERROR>\n  <match **>\n    @type file\n    path {d}/err\n    <format>\n      @type json\n    </format>\n    <buffer>\n      flush_mode interval\n      flush_interval 100ms\n    </buffer>\n  </match>\n</label>\n",
        source(),
        es.port
    );
    let spate = Spate::start("es-errors", &conf, Stdio::null());
    let recs: Vec<Value> = (0..50).map(|i| json!({"n": i})).collect();
    send(&spate, "app.x", &recs, "e1");
    let stored = es.wait_stored(40, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let stored_n: Vec<u64> = es.stored().iter().map(|s| s.2["n"].as_u64().unwrap()).collect();
    assert_eq!(stored.len().max(stored_n.len()), 40, "each of the 40 good documents once: {stored_n:?}");
    let mut sorted = stored_n.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 40, "no document stored twice");
    // The retry carried only the 20 documents that got 429/503.
    let bulks = es.bulks();
    assert!(bulks.len() >= 2);
    assert!(bulks.iter().all(|b| b.gzipped));
    let second_docs = bulks[1].body.lines().count() / 2;
    assert_eq!(second_docs, 20, "{}", bulks[1].body);
    // ES 7: _type "_doc".
    assert!(bulks[0].body.starts_with(r#"{"index":{"_index":"idx","_type":"_doc"}}"#));
    // The 10 rejected documents reached <label @ERROR> (once each, then the chunk left).
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    while std::time::Instant::now() < end {
        lines = glob::glob(&format!("{d}/err*"))
            .unwrap()
            .flatten()
            .flat_map(|p| {
                std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        if lines.len() >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut ns: Vec<u64> =
        lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["n"].as_u64().unwrap()).collect();
    ns.sort();
    assert_eq!(ns, (0..50).filter(|n| n % 5 == 3).collect::<Vec<_>>());
    assert_eq!(es.violations(), Vec::<String>::new());
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("400 - mapper_parsing_exception"), "the reason is logged: {err}");
}

#[test]
fn whole_request_failures_and_timeouts_are_retried() {
    let es = BulkServer::start("8.11.0", Box::new(|_, _, _, _| Answer::Store));
    {
        let mut g = es.state.lock().unwrap();
        g.fail_next = 2;
        g.hang_next = 1;
    }
    let conf = format!(
        "{}<match **>\n  @type elasticsearch\n  port {}\n  host 127.0.0.1\n  request_timeout 500ms\n  write_operation create\n  id_key id\n  {FAST}</match>\n",
        source(),
        es.port
    );
    let spate = Spate::start("es-retry", &conf, Stdio::null());
    let recs: Vec<Value> = (0..5).map(|i| json!({"id": i})).collect();
    send(&spate, "t", &recs, "w1");
    let stored = es.wait_stored(5, Duration::from_secs(20));
    assert_eq!(stored.len(), 5);
    assert!(es.bulks().len() >= 4, "two 503s and a timeout before success");
    assert!(es.bulks()[0].body.starts_with(r#"{"create":{"_index":"fluentd","_id":0}}"#));
    assert_eq!(es.violations(), Vec::<String>::new());
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn rejected_documents_go_to_secondary_without_error_label() {
    let es = BulkServer::start(
        "8.11.0",
        Box::new(|_, _, src, _| if src["bad"] == json!(true) { Answer::Reject } else { Answer::Store }),
    );
    let dir = tempdir::Dir::new("es-secondary");
    let d = dir.path().display().to_string();
    let conf = format!(
        "{}<match **>\n  @type opensearch\n  host 127.0.0.1\n  port {}\n  index_name os-${{tag}}\n  {FAST}  <secondary>\n    @type secondary_file\n    directory {d}\n    basename rejected\n  </secondary>\n</match>\n",
        source(),
        es.port
    );
    es.state.lock().unwrap().distribution = Some("opensearch".into());
    es.state.lock().unwrap().version = "2.11.0".into();
    let spate = Spate::start("es-secondary", &conf, Stdio::null());
    send(&spate, "t", &[json!({"bad": false}), json!({"bad": true}), json!({"bad": false})], "s1");
    assert_eq!(es.wait_stored(2, Duration::from_secs(20)).len(), 2);
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let mut files = Vec::new();
    while files.is_empty() && std::time::Instant::now() < end {
        files = glob::glob(&format!("{d}/rejected*")).unwrap().flatten().collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files.len(), 1);
    // secondary_file writes the chunk's msgpack entries: the one rejected record.
    let data = std::fs::read(&files[0]).unwrap();
    let evs: Vec<_> = spate_protocol::Events::new(&data, spate_protocol::EntriesFormat::Packed).collect();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].record.get(b"bad").unwrap().as_bool(), Some(true));
    // OpenSearch 2: no _type.
    assert!(es.bulks()[0].body.starts_with(r#"{"index":{"_index":"os-t"}}"#));
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn data_stream_is_created_then_written() {
    let es = BulkServer::start("8.11.0", Box::new(|_, _, _, _| Answer::Store));
    let conf = format!(
        "{}<match **>\n  @type elasticsearch_data_stream\n  host 127.0.0.1\n  port {}\n  data_stream_name logs-${{tag}}-default\n  {FAST}</match>\n",
        source(),
        es.port
    );
    let spate = Spate::start("es-ds", &conf, Stdio::null());
    send(&spate, "app", &[json!({"m": 1})], "d1");
    let stored = es.wait_stored(1, Duration::from_secs(20));
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "logs-app-default");
    let b = &es.bulks()[0];
    assert_eq!(b.path, "/logs-app-default/_bulk");
    assert!(b.body.starts_with("{\"create\":{}}\n{\"m\":1,\"@timestamp\":\""), "{}", b.body);
    let g = es.state.lock().unwrap();
    let tpl: Value = serde_json::from_str(&g.resources["/_index_template/logs-app-default_template"]).unwrap();
    assert_eq!(
        tpl,
        json!({"index_patterns": ["logs-app-default*"], "data_stream": {}, "template": {"settings": {"index.lifecycle.name": "logs-app-default_policy"}}})
    );
    assert!(g.resources.contains_key("/_ilm/policy/logs-app-default_policy"));
    assert!(g.resources.contains_key("/_data_stream/logs-app-default"));
    assert!(g.violations.is_empty(), "{:?}", g.violations);
    drop(g);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn unsupported_types_and_parameters_are_config_errors() {
    for (body, want) in [
        (
            "@type elasticsearch_dynamic\n  logstash_format true\n  logstash_prefix ${record[\"logType\"] || 'fluentd'}",
            "elasticsearch_dynamic evaluates ${...} as Ruby per record",
        ),
        ("@type aws-elasticsearch-service", "AWS SigV4"),
        ("@type elasticsearch\n  template_file /t.json\n  template_name t", "template_file is not supported"),
        ("@type elasticsearch\n  enable_ilm true", "enable_ilm is not supported"),
    ] {
        let dir = tempdir::Dir::new("es-dry");
        let p = dir.path().join("f.conf");
        std::fs::write(&p, format!("<match **>\n  {body}\n</match>\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["--dry-run", "-c", p.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}");
        assert!(err.contains(want), "{body}: {err}");
        assert!(err.contains("f.conf:"), "file:line in {err}");
    }
}

/// elasticsearch_dynamic without `${...}` (as github configs use it) writes what
/// out_elasticsearch writes, with the plugin's deprecation warning.
#[test]
fn elasticsearch_dynamic_without_expressions_runs_as_elasticsearch() {
    let es = BulkServer::start("8.11.0", Box::new(|_, _, _, _| Answer::Store));
    let conf = format!(
        "{}<match app.**>\n  @type elasticsearch_dynamic\n  hosts 127.0.0.1:{}\n  logstash_format true\n  logstash_prefix fluentd\n  logstash_dateformat %Y%m%d\n  include_tag_key true\n  tag_key @log_name\n  include_timestamp true\n  {FAST}</match>\n",
        source(),
        es.port
    );
    let spate = Spate::start("es-dynamic", &conf, Stdio::null());
    send(&spate, "app.web", &[json!({"n": 1})], "d1");
    let stored = es.wait_stored(1, Duration::from_secs(20));
    assert_eq!(stored.len(), 1, "{:?}", es.violations());
    assert_eq!(stored[0].0, "fluentd-20231114");
    assert_eq!(stored[0].2["@log_name"], json!("app.web"));
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("Elasticsearch dynamic plugin will be deprecated"), "{err}");
}
