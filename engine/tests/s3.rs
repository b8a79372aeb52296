//! out_s3 against a real S3-compatible server (s3s-fs, started by the test on a free
//! port), read back with an independent client (Python boto3): bucket created, keys as
//! fluent-plugin-s3 names them, gzip/zstd/json bodies intact, and a server that is down
//! fails the upload (so the chunk stays buffered) until it is back.

mod common;
mod stores;

use std::path::Path;

use bytes::Bytes;
use common::SRC;
use spate_engine::buffer::{BufferConf, TimeKey};
use spate_engine::config::{parse_str, EvalContext};
use spate_engine::s3::client::{Request, Response, Transport, TransportError};
use spate_engine::s3::{S3Conf, S3Error, S3Out, UploadChunk};
use spate_protocol::{encode, EventTime};

/// The blocking test client as an out_s3 transport.
struct TestHttp;

impl Transport for TestHttp {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        let host = req.host.trim_start_matches('[').trim_end_matches(']').to_string();
        stores::http(&host, req.port, req.method, &req.target, &req.headers, &req.body)
            .map(|(status, body)| Response { status, body })
            .map_err(|e| TransportError(e.to_string()))
    }
}

fn conf(port: u16, extra: &str) -> S3Conf {
    let text = format!(
        "<match **>\n @type s3\n aws_key_id AKTEST\n aws_sec_key SKTEST/secret\n s3_bucket spate-archive\n \
         s3_endpoint http://127.0.0.1:{port}\n force_path_style true\n path logs/${{tag}}/\n{extra}\n</match>\n"
    );
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&text, "s3.conf", Path::new("/tmp"), &ctx).unwrap();
    let m = root.elements_named("match").next().unwrap();
    let buffer = BufferConf {
        timekey: Some(TimeKey { secs: 3600, wait: std::time::Duration::ZERO, utc_offset: 0 }),
        ..Default::default()
    };
    S3Conf::parse(m, &buffer, "h", &|_| None).unwrap()
}

fn entries(n: u32) -> Vec<u8> {
    let mut e = Vec::new();
    for i in 0..n {
        let mut rec = Vec::new();
        encode::raw::map_header(&mut rec, 2);
        encode::raw::str(&mut rec, b"i");
        encode::raw::int(&mut rec, i as i64);
        encode::raw::str(&mut rec, b"msg");
        encode::raw::str(&mut rec, format!("line \"{i}\" é").as_bytes());
        encode::entry(&mut e, EventTime::new(1_795_575_600 + i, 0), encode::TimeFormat::EventTime, &rec);
    }
    e
}

const READ_BACK: &str = r#"
import sys, json, gzip, boto3
from botocore.config import Config
port = sys.argv[1]
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:" + port, aws_access_key_id="AKTEST",
                  aws_secret_access_key="SKTEST/secret", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
out = []
for o in s3.list_objects(Bucket="spate-archive").get("Contents", []):
    obj = s3.get_object(Bucket="spate-archive", Key=o["Key"])
    body = obj["Body"].read()
    if o["Key"].endswith(".gz"):
        body = gzip.decompress(body)
    elif o["Key"].endswith(".zst"):
        import zstandard
        body = zstandard.ZstdDecompressor().decompress(body)
    out.append({"key": o["Key"], "type": obj["ContentType"], "lines": body.decode().splitlines()})
print(json.dumps(out))
"#;

#[test]
fn archives_chunks_readable_by_boto3() {
    let Some(bin) = stores::s3s_fs_bin() else { return };
    let Some(_) = stores::python_with(&["boto3"], "SPATE_REQUIRE_S3") else { return };
    let dir = common::tempdir::Dir::new("s3");
    let port = common::free_port();
    let mut server = stores::start_s3s(&bin, dir.path(), port, "AKTEST", "SKTEST/secret");

    let out = S3Out::new("s3#0".into(), conf(port, ""));
    let id = [7u8; 16];
    let data = entries(3);
    let body = S3Out::body(&out.conf.format, out.conf.store, b"app.web", &data).unwrap();
    let chunk = UploadChunk { id: &id, tag: "app.web", timekey: Some(1_795_575_600), vars: &[] };
    let run = |b: Vec<u8>| futures_lite::future::block_on(out.upload(&TestHttp, &chunk, Bytes::from(b)));
    // Bucket created on the first upload; the second chunk of the slice gets index 1.
    assert_eq!(run(body.clone()).unwrap(), "logs/app.web/2026112503_0.gz");
    assert_eq!(run(body.clone()).unwrap(), "logs/app.web/2026112503_1.gz");

    // Server down: the upload fails (the chunk stays in the buffer and is retried) ...
    server.kill();
    let e = run(body.clone()).unwrap_err();
    assert!(matches!(e, S3Error::Transport { .. }), "{e}");
    // ... and succeeds once it is back, with the next free index.
    let _server = stores::start_s3s(&bin, dir.path(), port, "AKTEST", "SKTEST/secret");
    assert_eq!(run(body).unwrap(), "logs/app.web/2026112503_2.gz");

    // A wrong secret is refused by the server (the signature is really checked).
    let mut bad = conf(port, "");
    bad.client.creds.secret_key = "wrong".into();
    let e = futures_lite::future::block_on(S3Out::new("s3#1".into(), bad).upload(&TestHttp, &chunk, Bytes::new()))
        .unwrap_err();
    assert!(matches!(e, S3Error::Status { status: 403, .. }), "{e}");

    let listed: serde_json::Value = serde_json::from_str(&stores::python(READ_BACK, &[&port.to_string()])).unwrap();
    let objs = listed.as_array().unwrap();
    assert_eq!(objs.len(), 3, "{listed}");
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(o["key"], format!("logs/app.web/2026112503_{i}.gz"));
        assert_eq!(o["type"], "application/x-gzip");
        let lines: Vec<&str> = o["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert_eq!(lines.len(), 3);
        // out_file format: time, tag, JSON record; the JSON is intact.
        let cols: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(cols[1], "app.web");
        let rec: serde_json::Value = serde_json::from_str(cols[2]).unwrap();
        assert_eq!(rec, serde_json::json!({"i": 1, "msg": "line \"1\" é"}));
    }
}

#[test]
fn json_and_zstd_bodies() {
    let Some(bin) = stores::s3s_fs_bin() else { return };
    let Some(_) = stores::python_with(&["boto3"], "SPATE_REQUIRE_S3") else { return };
    let zstd_py = stores::python_with(&["zstandard"], "SPATE_REQUIRE_S3").is_some();
    let dir = common::tempdir::Dir::new("s3b");
    let port = common::free_port();
    let _server = stores::start_s3s(&bin, dir.path(), port, "AKTEST", "SKTEST/secret");
    let id = [9u8; 16];
    let chunk = UploadChunk { id: &id, tag: "t", timekey: Some(1_795_575_600), vars: &[] };
    let mut stores_as = vec![("json", "application/json", "json")];
    if zstd_py {
        stores_as.push(("zstd", "application/x-zst", "zst"));
    }
    for (store_as, _, _) in &stores_as {
        let c = conf(
            port,
            &format!(
                " store_as {store_as}\n s3_object_key_format %{{path}}%{{time_slice}}-%{{hex_random}}-%{{index}}.%{{file_extension}}\n <format>\n @type json\n </format>"
            ),
        );
        let out = S3Out::new("s3#0".into(), c);
        let body = S3Out::body(&out.conf.format, out.conf.store, b"t", &entries(2)).unwrap();
        futures_lite::future::block_on(out.upload(&TestHttp, &chunk, Bytes::from(body))).unwrap();
    }
    let listed: serde_json::Value = serde_json::from_str(&stores::python(READ_BACK, &[&port.to_string()])).unwrap();
    let objs = listed.as_array().unwrap();
    assert_eq!(objs.len(), stores_as.len(), "{listed}");
    for (store_as, ctype, ext) in &stores_as {
        let o = objs.iter().find(|o| o["key"].as_str().unwrap().ends_with(&format!(".{ext}"))).unwrap();
        assert_eq!(o["type"], *ctype, "{store_as}");
        let key = o["key"].as_str().unwrap();
        assert!(key.starts_with("logs/t/2026112503-") && key.ends_with(&format!("-0.{ext}")), "{key}");
        let lines: Vec<serde_json::Value> =
            o["lines"].as_array().unwrap().iter().map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                serde_json::json!({"i": 0, "msg": "line \"0\" é"}),
                serde_json::json!({"i": 1, "msg": "line \"1\" é"})
            ]
        );
    }
}

const LIST_LINES: &str = r#"
import sys, json, gzip, boto3
from botocore.config import Config
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:" + port, aws_access_key_id="AKTEST",
                  aws_secret_access_key="SKTEST/secret", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
out = {}
try:
    for o in s3.list_objects(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        out[o["Key"]] = gzip.decompress(body).decode().splitlines()
except s3.exceptions.NoSuchBucket:
    pass
print(json.dumps(out))
"#;

/// Every object of `bucket` with its (gunzipped) lines.
fn objects(port: u16, bucket: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    serde_json::from_str(&stores::python(LIST_LINES, &[&port.to_string(), bucket])).unwrap()
}

fn wait_lines(port: u16, bucket: &str, n: usize) -> std::collections::BTreeMap<String, Vec<String>> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = objects(port, bucket);
        if o.values().map(Vec::len).sum::<usize>() >= n || std::time::Instant::now() > end {
            return o;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// spate end to end: in_forward (acked) -> out_s3 (file buffer) -> s3s-fs, read back by
/// boto3; the server is killed and comes back: what was acked meanwhile is delivered.
#[test]
fn spate_archives_to_s3_and_survives_the_server_being_down() {
    let Some(bin) = stores::s3s_fs_bin() else { return };
    let Some(_) = stores::python_with(&["boto3"], "SPATE_REQUIRE_S3") else { return };
    let data = common::tempdir::Dir::new("s3-e2e-data");
    let port = common::free_port();
    let mut server = stores::start_s3s(&bin, data.path(), port, "AKTEST", "SKTEST/secret");
    let buf = common::tempdir::Dir::new("s3-e2e-buf");
    let conf = format!(
        r#"{SRC}<match app.**>
  @type s3
  aws_key_id AKTEST
  aws_sec_key SKTEST/secret
  s3_bucket spate-e2e
  s3_endpoint http://127.0.0.1:{port}
  force_path_style true
  path logs/
  s3_object_key_format %{{path}}${{tag}}/%{{time_slice}}_%{{index}}.%{{file_extension}}
  time_slice_format %Y%m%d%H
  <buffer tag,time>
    @type file
    path {}
    timekey 3600
    timekey_wait 0s
    timekey_use_utc true
    flush_mode interval
    flush_interval 1s
    retry_wait 0.5s
    retry_max_interval 1s
  </buffer>
</match>
"#,
        buf.path().display()
    );
    let spate = common::Spate::start("s3-e2e", &conf, std::process::Stdio::null());
    let send = |base: u64, n: u64| {
        let mut c = common::Client::connect(spate.addr());
        for k in (base..base + n).step_by(100) {
            let chunk = format!("c{k}");
            c.send(&common::kv_frame(b"app.web", k..k + 100, common::kv_time(0), &chunk)).unwrap();
            assert!(String::from_utf8_lossy(&c.read_ack().unwrap()).contains(&chunk));
        }
    };
    send(0, 300);
    let first = wait_lines(port, "spate-e2e", 300);
    assert_eq!(first.values().map(Vec::len).sum::<usize>(), 300, "{first:?}");
    // The server goes away: new events are acked (file buffer) and wait.
    server.kill();
    send(300, 200);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _server = stores::start_s3s(&bin, data.path(), port, "AKTEST", "SKTEST/secret");
    let all = wait_lines(port, "spate-e2e", 500);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    // Keys as fluent-plugin-s3 names them: the time slice of kv_time(0) (2023-11-14 22h
    // UTC) and the first free index.
    let keys: Vec<&String> = all.keys().collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(**k, format!("logs/app.web/2023111422_{i}.gz"), "{keys:?}");
    }
    let mut seen = std::collections::HashMap::new();
    for line in all.values().flatten() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols[0].starts_with("2023-11-1") && cols[1] == "app.web", "{line}");
        let rec: serde_json::Value = serde_json::from_str(cols[2]).unwrap();
        *seen.entry(rec["k"].as_u64().unwrap()).or_insert(0u32) += 1;
    }
    assert!((0..500).all(|k| seen.contains_key(&k)), "events missing: {} of 500 seen", seen.len());
    let dups: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "s3 server down: 500 acked, {} delivered distinct, {dups} duplicates, {} objects",
        seen.len(),
        keys.len()
    );
}

/// A stand-in for the EC2 instance metadata service (it cannot be installed): IMDSv2's
/// session token, one role, and the given keys for it.
fn imds(access: &'static str, secret: &'static str) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = Vec::new();
            while let Some(r) = common::http_server::read_request(&mut s, &mut buf) {
                let body = match (r.method.as_str(), r.path.as_str()) {
                    ("PUT", "/latest/api/token") => "sess".to_string(),
                    (_, "/latest/meta-data/iam/security-credentials/") => "role-a".to_string(),
                    (_, "/latest/meta-data/iam/security-credentials/role-a") => format!(
                        r#"{{"Code":"Success","AccessKeyId":"{access}","SecretAccessKey":"{secret}","Token":"session-tok","Expiration":"2099-01-01T00:00:00Z"}}"#
                    ),
                    _ => String::new(),
                };
                s2.lock().unwrap().push(format!("{} {}", r.method, r.path));
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        }
    });
    (port, seen)
}

/// No keys in the config: `<instance_profile_credentials>` fetches them from the
/// instance metadata, and s3s-fs (which checks every signature) accepts the uploads.
#[test]
fn spate_signs_with_instance_metadata_credentials() {
    let Some(bin) = stores::s3s_fs_bin() else { return };
    let Some(_) = stores::python_with(&["boto3"], "SPATE_REQUIRE_S3") else { return };
    let data = common::tempdir::Dir::new("s3-imds-data");
    let port = common::free_port();
    let _server = stores::start_s3s(&bin, data.path(), port, "AKTEST", "SKTEST/secret");
    let (md, seen) = imds("AKTEST", "SKTEST/secret");
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {{PORT}}\n</source>\n<match app.**>\n  @type s3\n  s3_bucket spate-imds\n  s3_endpoint http://127.0.0.1:{port}\n  force_path_style true\n  path logs/\n  <instance_profile_credentials>\n    ip_address 127.0.0.1\n    port {md}\n  </instance_profile_credentials>\n  <buffer>\n    flush_interval 100ms\n    retry_wait 0.2s\n  </buffer>\n</match>\n"
    );
    let spate = common::Spate::start("s3-imds", &conf, std::process::Stdio::null());
    common::send_json(
        &spate,
        "app.x",
        spate_protocol::EventTime::new(1_700_000_000, 0),
        &[r#"{"m":1}"#, r#"{"m":2}"#],
        "m1",
    );
    let got = wait_lines(port, "spate-imds", 2);
    let (_, _, err) = spate.stop();
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 2, "{got:?}\n{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[..3],
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/role-a"
        ],
        "the credentials are fetched once and kept until they expire"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
}
