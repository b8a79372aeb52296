//! out_loki (fluent-plugin-grafana-loki's `@type loki`) through a live spate, against a
//! test server standing in for Loki's push API (Grafana Loki is not packaged for
//! Debian, PyPI or crates.io; see the README): the JSON push body as the Ruby plugin
//! builds it (labels from `<label>` accessors, Kubernetes labels, `extra_labels`,
//! `remove_keys`, key_value and json lines, `drop_single_key`, time in nanoseconds),
//! the tenant header with `${tag}`, basic auth and gzip; 5xx and 429 retried, other
//! errors dropped with a warning.

mod common;

use std::process::Stdio;

use common::http_server::*;
use common::*;
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;
const BUF: &str = "<buffer>\n    flush_mode interval\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

/// Sends `records` (JSON) as one acked PackedForward frame, times T+i (with `nsec`).
fn send(spate: &Spate, tag: &str, records: &[&str], id: &str) {
    send_json(spate, tag, EventTime::new(T, 5), records, id)
}

fn ns(i: u32) -> String {
    format!("{}000000005", T + i)
}

#[test]
fn push_body_labels_lines_tenant_auth_and_gzip() {
    let (port, got) = server(vec![]);
    let conf = format!(
        "{SRC}<match k8s.**>\n  @type loki\n  url http://127.0.0.1:{port}\n  username u\n  password p\n  tenant team-${{tag}}\n  compress gzip\n  \
         extra_labels {{\"job\":\"spate\",\"app\":\"extra-wins\"}}\n  extract_kubernetes_labels true\n  remove_keys stream,$.kubernetes.pod_id\n  \
         <label>\n    namespace $.kubernetes.namespace_name\n    app\n    level.name level\n  </label>\n  {BUF}</match>\n"
    );
    let spate = Spate::start("loki-labels", &conf, Stdio::null());
    send(
        &spate,
        "k8s.a",
        &[
            r#"{"log":"b said \"hi\"","app":"web","level":"warn","stream":"stdout","kubernetes":{"namespace_name":"prod","pod_id":"p1","labels":{"app.kubernetes.io/name":"shop","n":1}}}"#,
            r#"{"log":"a=1","app":"web","level":"warn","kubernetes":{"namespace_name":"prod","labels":{"app.kubernetes.io/name":"shop"}}}"#,
            r#"{"log":"x","level":"info","count":3,"ok":true,"none":null,"kubernetes":{"namespace_name":"dev"}}"#,
        ],
        "l1",
    );
    let reqs = wait(&got, 1);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/loki/api/v1/push"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("authorization"), Some("Basic dTpw"));
    assert_eq!(r.header("x-scope-orgid"), Some("team-k8s.a"));
    let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let want = serde_json::json!({"streams": [
        {
            // <label> first (accessor order), then Kubernetes labels (sanitized names,
            // strings only), then extra_labels, which win over a record's `app`.
            "stream": {"namespace": "prod", "app": "extra-wins", "level_name": "warn", "app_kubernetes_io_name": "shop", "job": "spate"},
            "values": [
                // key_value lines: labels and remove_keys gone; a value with a space or
                // `=` quoted, `"` and `\` escaped; a hash as Ruby's to_s
                // (`inspect`, Ruby 3.4's ` => `, as spate's other Ruby output).
                [ns(0), r#"log="b said \"hi\"" kubernetes="{\"labels\" => {\"app.kubernetes.io/name\" => \"shop\", \"n\" => 1}}""#],
                [ns(1), r#"log="a=1" kubernetes="{\"labels\" => {\"app.kubernetes.io/name\" => \"shop\"}}""#]
            ]
        },
        {
            "stream": {"namespace": "dev", "level_name": "info", "job": "spate", "app": "extra-wins"},
            "values": [[ns(2), "log=x count=3 ok=true none= kubernetes={}"]]
        }
    ]});
    assert_eq!(body, want, "{}", r.text());
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn json_lines_drop_single_key_and_thread_label() {
    let (port, got) = server(vec![]);
    let conf = format!(
        "{SRC}<match j>\n  @type loki\n  url http://127.0.0.1:{port}/\n  line_format json\n  drop_single_key true\n  extra_labels {{\"job\":\"j\"}}\n  {}</match>\n",
        BUF.replace("</buffer>", "  flush_thread_count 2\n  </buffer>")
    );
    let spate = Spate::start("loki-json", &conf, Stdio::null());
    send(&spate, "j", &[r#"{"message":"only key"}"#, r#"{"a":1,"b":"x/y"}"#], "j1");
    let reqs = wait(&got, 1);
    let body: serde_json::Value = serde_json::from_str(&reqs[0].text()).unwrap();
    assert_eq!(
        body,
        // Two flush threads: include_thread_label (default) adds `fluentd_thread`.
        serde_json::json!({"streams": [{"stream": {"job": "j", "fluentd_thread": "flush_thread_0"}, "values": [[ns(0), "only key"], [ns(1), "{\"a\":1,\"b\":\"x/y\"}"]]}]}),
        "{}",
        reqs[0].text()
    );
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn server_errors_are_retried_client_errors_dropped() {
    // 500 and 429 retried, then 200; the next chunk gets a 400: dropped, logged.
    let (port, got) = server(vec![500, 429, 200, 400]);
    let conf = format!("{SRC}<match r>\n  @type loki\n  url http://127.0.0.1:{port}\n  {BUF}</match>\n");
    let spate = Spate::start("loki-retry", &conf, Stdio::null());
    send(&spate, "r", &[r#"{"m":"one"}"#], "r1");
    let reqs = wait(&got, 3);
    assert_eq!(reqs.len(), 3, "two retries, then accepted");
    assert!(reqs.iter().all(|r| r.body == reqs[0].body), "the same chunk each time");
    send(&spate, "r", &[r#"{"m":"two"}"#], "r2");
    let reqs = wait(&got, 4);
    assert_eq!(reqs.len(), 4);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(got.lock().unwrap().len(), 4, "a 400 is not retried");
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("failed to write post to") && err.contains("400"), "{err}");
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want) in [
        ("url ftp://x\n", "URL parameter must have HTTP/HTTPS scheme"),
        ("ciphers TLS1_2\n", "ciphers is not supported"),
        ("password p\n", "password without username"),
        ("bearer_token_file /nonexistent/token\n", "bearer_token_file /nonexistent/token not found"),
        ("line_format xml\n", "line_format"),
    ] {
        let (ok, err) = dry_run(&format!("<match x>\n  @type loki\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:3"), "{body}: {err}");
    }
}
