//! out_tdlog (fluent-plugin-td's `@type tdlog`) through a live spate, against a test
//! server standing in for Treasure Data's import and REST APIs (a hosted service:
//! nothing to install; see the README): the gzipped msgpack upload with the chunk id,
//! `time` set in each record, the table and database created on a 404, 5xx retried
//! with the same id, other 4xx unrecoverable, and the plugin's configuration rules.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http_server::*;
use common::*;
use spate_protocol::EventTime;

const T: u32 = 1_700_000_000;
const BUF: &str = "<buffer>\n    @type memory\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

fn conf(port: u16, extra: &str) -> String {
    format!(
        "{SRC}<match td.*.*>\n  @type tdlog\n  apikey k-123\n  endpoint http://127.0.0.1:{port}\n  api_endpoint http://127.0.0.1:{port}\n  {extra}{BUF}</match>\n"
    )
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
    out
}

fn msgpack(json: &[&str]) -> Vec<u8> {
    json.iter().flat_map(|j| spate_protocol::json::to_msgpack(j.as_bytes()).unwrap()).collect()
}

#[test]
fn upload_creates_database_and_table_on_404() {
    // import 404 -> create table 404 -> create database -> create table -> import.
    let (port, got) = server(vec![404, 404, 200, 200, 200]);
    let spate = Spate::start("tdlog-create", &conf(port, ""), Stdio::null());
    send_json(&spate, "td.Web-DB.access", EventTime::new(T, 5), &[r#"{"a":1}"#, r#"{"time":"x","b":"y"}"#], "t1");
    let reqs = wait(&got, 5);
    let calls: Vec<(String, String)> = reqs.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    let import = &calls[0].1;
    let id = import
        .strip_prefix("/v3/table/import_with_id/web_db/access/")
        .and_then(|r| r.strip_suffix("/msgpack.gz"))
        .unwrap_or_else(|| panic!("{import}"));
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        calls,
        vec![
            ("PUT".into(), import.clone()),
            ("POST".into(), "/v3/table/create/web_db/access/log".into()),
            ("POST".into(), "/v3/database/create/web_db".into()),
            ("POST".into(), "/v3/table/create/web_db/access/log".into()),
            ("PUT".into(), import.clone()),
        ]
    );
    let up = &reqs[4];
    assert_eq!(up.header("authorization"), Some("TD1 k-123"));
    assert_eq!(up.header("content-type"), Some("application/octet-stream"));
    assert!(up.header("date").is_some_and(|d| d.ends_with("+0000")), "{:?}", up.header("date"));
    assert_eq!(reqs[1].header("authorization"), Some("TD1 k-123"));
    // Records with `time` set: in place when the record had one, else appended.
    assert_eq!(gunzip(&up.body), msgpack(&[r#"{"a":1,"time":1700000000}"#, r#"{"time":1700000001,"b":"y"}"#]));
}

#[test]
fn server_errors_retry_with_the_same_id_and_client_errors_are_unrecoverable() {
    let (port, got) = server(vec![503, 200]);
    let spate = Spate::start("tdlog-retry", &conf(port, "database my_db\n  table my_table\n  "), Stdio::null());
    send_json(&spate, "td.x.y", EventTime::new(T, 0), &[r#"{"m":1}"#], "r1");
    let reqs = wait(&got, 2);
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].path.starts_with("/v3/table/import_with_id/my_db/my_table/"), "{}", reqs[0].path);
    assert_eq!(reqs[0].path, reqs[1].path, "a retry uploads with the same unique id");
    drop(spate);

    let (port, got) = server(vec![401]);
    let spate = Spate::start("tdlog-401", &conf(port, ""), Stdio::null());
    send_json(&spate, "td.db1.t1", EventTime::new(T, 0), &[r#"{"m":1}"#], "u1");
    let until = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, err) = spate.stop();
    assert_eq!(got.lock().unwrap().len(), 1, "401 is not retried");
    assert!(err.contains("Import failed: 401"), "{err}");
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want, line) in [
        ("database d\n", "'apikey' parameter is required", 1),
        (
            "apikey k\n  database a\n  table good_table\n",
            "Invalid database name \"a\": Database name must be between 3 and 255 characters long. Got 1 character.",
            4,
        ),
        ("apikey k\n  database good\n  table Bad-Table\n", "Invalid table name \"Bad-Table\"", 5),
        (
            "apikey k\n  <buffer time>\n    @type memory\n    timekey 60\n  </buffer>\n",
            "'tag' must be included in <buffer ARG> when database and table are not specified",
            1,
        ),
        ("apikey k\n  http_proxy http://proxy:3128\n", "http_proxy is not supported", 4),
        ("apikey k\n", "<buffer @type file> needs path", 1),
    ] {
        let (ok, err) = dry_run(&format!("<match td.*.*>\n  @type tdlog\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains(&format!("fluent.conf:{line}")), "{body}: {err}");
    }
    // td-agent 2's default block: v0.12 buffer parameters on the output.
    let (ok, err) = dry_run(
        "<match td.*.*>\n  type tdlog\n  apikey k\n  auto_create_table\n  buffer_type file\n  buffer_path {DIR}/td\n</match>\n",
    );
    assert!(ok, "{err}");
}
