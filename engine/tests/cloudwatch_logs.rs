//! out_cloudwatch_logs (fluent-plugin-cloudwatch-logs) through a live spate against
//! moto's server (PyPI `moto[server]`, an implementation of the AWS APIs nobody here
//! wrote): groups and streams from placeholders, tags and record keys, created with
//! tags and retention; message_keys; skipped events; web identity credentials
//! exchanged with moto's STS. The EC2 instance metadata and ECS credential endpoints
//! cannot be installed; a stand-in of ours serves them (and records the signed
//! CloudWatch calls, to check which credentials signed them).

mod common;
mod stores;

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http_server::{read_request, Got};
use common::*;
use spate_protocol::EventTime;

const BUF: &str =
    "<buffer tag>\n    flush_interval 100ms\n    retry_wait 0.1s\n    retry_randomize false\n  </buffer>\n";

/// Every group's retention, tags and streams' events, as boto3 reads them from moto.
const DUMP: &str = r#"
import boto3, json, sys
l = boto3.client('logs', region_name='us-east-1', endpoint_url=sys.argv[1], aws_access_key_id='x', aws_secret_access_key='y')
out = {}
for g in l.describe_log_groups()['logGroups']:
    n = g['logGroupName']
    out[n] = {'retention': g.get('retentionInDays'), 'tags': l.list_tags_log_group(logGroupName=n).get('tags', {}), 'streams': {}}
    for s in l.describe_log_streams(logGroupName=n)['logStreams']:
        ev = l.get_log_events(logGroupName=n, logStreamName=s['logStreamName'], startFromHead=True)['events']
        out[n]['streams'][s['logStreamName']] = [[e['timestamp'], e['message']] for e in ev]
print(json.dumps(out))
"#;

const SETUP: &str = r#"
import boto3, sys
l = boto3.client('logs', region_name='us-east-1', endpoint_url=sys.argv[1], aws_access_key_id='x', aws_secret_access_key='y')
l.create_log_group(logGroupName=sys.argv[2])
l.create_log_stream(logGroupName=sys.argv[2], logStreamName=sys.argv[3])
"#;

fn moto() -> Option<stores::Server> {
    let bin = stores::moto_server_bin()?;
    stores::python_with(&["boto3"], "SPATE_REQUIRE_MOTO")?;
    Some(stores::start_moto(&bin, free_port()))
}

fn dump(port: u16) -> serde_json::Value {
    serde_json::from_str(&stores::python(DUMP, &[&format!("http://127.0.0.1:{port}")])).unwrap()
}

/// Polls moto until `f` holds (20 s).
fn wait_dump(port: u16, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dump(port);
        if f(&d) || Instant::now() > end {
            return d;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Now (moto refuses events older than 14 days), as an event time and in ms.
fn now() -> (EventTime, i64) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let t = EventTime::new(d.as_secs() as u32, 250_000_000);
    (t, d.as_secs() as i64 * 1000 + 250)
}

fn events(d: &serde_json::Value, group: &str, stream: &str) -> Vec<(i64, String)> {
    d[group]["streams"][stream]
        .as_array()
        .map(|a| a.iter().map(|e| (e[0].as_i64().unwrap(), e[1].as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

#[test]
fn groups_and_streams_are_created_with_tags_and_retention() {
    let Some(m) = moto() else { return };
    let conf = format!(
        "{SRC}<match app.**>\n  @type cloudwatch_logs\n  aws_key_id AK\n  aws_sec_key SK\n  region us-east-1\n  endpoint http://127.0.0.1:{}\n  log_group_name grp-${{tag[1]}}\n  use_tag_as_stream true\n  auto_create_stream true\n  retention_in_days 7\n  log_group_aws_tags {{\"team\":\"a\"}}\n  {BUF}</match>\n",
        m.port
    );
    let spate = Spate::start("cw-create", &conf, Stdio::null());
    let (t, ms) = now();
    send_json(&spate, "app.web", t, &[r#"{"a":1,"empty":"","s":"é"}"#, r#"{"message":"hi"}"#], "c1");
    send_json(&spate, "app.db", t, &[r#"{"q":"select"}"#], "c2");
    // The dump describes the groups before it reads their events, so one dump can show
    // every event and a group as it was before PutRetentionPolicy: wait for both.
    let d = wait_dump(m.port, |d| {
        events(d, "grp-web", "app.web").len() == 2
            && events(d, "grp-db", "app.db").len() == 1
            && d["grp-web"]["retention"] == 7
    });
    // Keys whose value is "" are dropped; the time is in milliseconds.
    assert_eq!(
        events(&d, "grp-web", "app.web"),
        [(ms, r#"{"a":1,"s":"é"}"#.to_string()), (ms + 1000, r#"{"message":"hi"}"#.to_string())]
    );
    assert_eq!(events(&d, "grp-db", "app.db"), [(ms, r#"{"q":"select"}"#.to_string())]);
    assert_eq!(d["grp-web"]["retention"], 7);
    assert_eq!(d["grp-web"]["tags"]["team"], "a");
}

#[test]
fn record_keys_message_keys_and_skipped_events() {
    let Some(m) = moto() else { return };
    let url = format!("http://127.0.0.1:{}", m.port);
    stores::python(SETUP, &[&url, "exists", "s1"]);
    let conf = format!(
        "{SRC}<match app.**>\n  @type cloudwatch_logs\n  aws_key_id AK\n  aws_sec_key SK\n  region us-east-1\n  endpoint {url}\n  log_group_name_key grp\n  remove_log_group_name_key true\n  log_stream_name_key st\n  message_keys msg,lvl\n  {BUF}</match>\n"
    );
    let spate = Spate::start("cw-keys", &conf, Stdio::null());
    let (t, ms) = now();
    send_json(
        &spate,
        "app.x",
        t,
        &[
            r#"{"grp":"exists","st":"s1","msg":"hello","lvl":"info"}"#,
            r#"{"grp":"exists","st":"s1","msg":"","lvl":""}"#,
            r#"{"grp":"missing","st":"s1","msg":"x"}"#,
            r#"{"grp":"exists","msg":"no stream"}"#,
            r#"{"grp":"exists","st":"s1","lvl":"only-level"}"#,
        ],
        "k1",
    );
    let d = wait_dump(m.port, |d| events(d, "exists", "s1").len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, err) = spate.stop();
    assert_eq!(events(&d, "exists", "s1"), [(ms, "hello info".to_string()), (ms + 4000, "only-level".to_string())]);
    assert!(d.get("missing").is_none(), "no auto_create_stream: the group is not created");
    for w in ["Log group 'missing' does not exist", "stream_name is nil", "do not have non-empty record"] {
        assert!(err.contains(w), "{w}: {err}");
    }
}

#[test]
fn web_identity_credentials_from_the_environment_through_sts() {
    let Some(m) = moto() else { return };
    let dir = tempdir::Dir::new("cw-wi");
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-a-web-identity-token\n").unwrap();
    let url = format!("http://127.0.0.1:{}", m.port);
    let conf = format!(
        "{SRC}<match app.**>\n  @type cloudwatch_logs\n  endpoint {url}\n  log_group_name wi\n  log_stream_name s\n  auto_create_stream true\n  {BUF}</match>\n"
    );
    let home = dir.path().display().to_string();
    let env = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_SHARED_CREDENTIALS_FILE", ""),
        ("AWS_PROFILE", ""),
        ("HOME", home.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/spate"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let spate = Spate::start_env(std::path::Path::new(spate_bin()), "cw-wi", &conf, Stdio::null(), &env);
    let (t, _) = now();
    send_json(&spate, "app.x", t, &[r#"{"via":"sts"}"#], "w1");
    let d = wait_dump(m.port, |d| events(d, "wi", "s").len() == 1);
    let (_, _, err) = spate.stop();
    assert_eq!(events(&d, "wi", "s").len(), 1, "{err}");
}

/// A stand-in for the EC2 instance metadata service, the ECS credentials endpoint and
/// CloudWatch Logs (the group and stream exist): records every request.
fn stand_in() -> (u16, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                while let Some(r) = read_request(&mut s, &mut buf) {
                    let creds = |k: &str| {
                        format!(
                            r#"{{"Code":"Success","AccessKeyId":"{k}","SecretAccessKey":"S","Token":"TOKEN-{k}","Expiration":"2099-01-01T00:00:00Z"}}"#
                        )
                    };
                    let body = match (r.method.as_str(), r.path.as_str(), r.header("x-amz-target")) {
                        ("PUT", "/latest/api/token", _) => "imds-session".to_string(),
                        ("GET", "/latest/meta-data/iam/security-credentials/", _) => "the-role\n".to_string(),
                        ("GET", "/latest/meta-data/iam/security-credentials/the-role", _) => creds("ASIAIMDS"),
                        ("GET", "/ecs-creds", _) => creds("ASIAECS"),
                        (_, _, Some("Logs_20140328.DescribeLogGroups")) => {
                            r#"{"logGroups":[{"logGroupName":"g"}]}"#.into()
                        }
                        (_, _, Some("Logs_20140328.DescribeLogStreams")) => {
                            r#"{"logStreams":[{"logStreamName":"s"}]}"#.into()
                        }
                        (_, _, Some("Logs_20140328.PutLogEvents")) => r#"{"nextSequenceToken":"1"}"#.into(),
                        _ => "{}".into(),
                    };
                    g.lock().unwrap().push(r);
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                }
            });
        }
    });
    (port, got)
}

#[test]
fn instance_metadata_and_ecs_credentials_sign_the_calls() {
    for ecs in [false, true] {
        let (port, got) = stand_in();
        let dir = tempdir::Dir::new("cw-imds");
        let home = dir.path().display().to_string();
        let conf = format!(
            "{SRC}<match app.**>\n  @type cloudwatch_logs\n  region eu-west-1\n  endpoint http://127.0.0.1:{port}\n  log_group_name g\n  log_stream_name s\n  {BUF}</match>\n"
        );
        let imds = format!("http://127.0.0.1:{port}");
        let full = format!("http://127.0.0.1:{port}/ecs-creds");
        // Nothing of the runner's own AWS setup may take part.
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_SHARED_CREDENTIALS_FILE", ""),
            ("AWS_PROFILE", ""),
            ("HOME", home.as_str()),
            ("AWS_ROLE_ARN", ""),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ];
        if ecs {
            env.extend([
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.as_str()),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-tok"),
            ]);
        }
        let spate = Spate::start_env(std::path::Path::new(spate_bin()), "cw-imds", &conf, Stdio::null(), &env);
        let (t, _) = now();
        send_json(&spate, "app.x", t, &[r#"{"m":1}"#], "i1");
        let end = Instant::now() + Duration::from_secs(20);
        let put = loop {
            let g = got.lock().unwrap().clone();
            if let Some(p) = g.iter().find(|r| r.header("x-amz-target") == Some("Logs_20140328.PutLogEvents")) {
                break (p.clone(), g);
            }
            assert!(Instant::now() < end, "no PutLogEvents: {g:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (put, all) = put;
        let key = if ecs { "ASIAECS" } else { "ASIAIMDS" };
        let auth = put.header("authorization").unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={key}/")), "{auth}");
        assert!(auth.contains("/eu-west-1/logs/aws4_request"), "{auth}");
        assert_eq!(put.header("x-amz-security-token"), Some(format!("TOKEN-{key}").as_str()));
        let body: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
        assert_eq!(body["logEvents"][0]["message"], r#"{"m":1}"#);
        if ecs {
            let c = all.iter().find(|r| r.path == "/ecs-creds").unwrap();
            assert_eq!(c.header("authorization"), Some("ecs-tok"));
            assert!(!all.iter().any(|r| r.path.starts_with("/latest/")), "ECS comes before instance metadata");
        } else {
            // IMDSv2: a session token first, then the role and its credentials with it.
            let paths: Vec<(&str, &str)> = all.iter().take(3).map(|r| (r.method.as_str(), r.path.as_str())).collect();
            assert_eq!(
                paths,
                [
                    ("PUT", "/latest/api/token"),
                    ("GET", "/latest/meta-data/iam/security-credentials/"),
                    ("GET", "/latest/meta-data/iam/security-credentials/the-role")
                ]
            );
            assert_eq!(all[0].header("x-aws-ec2-metadata-token-ttl-seconds"), Some("21600"));
            assert_eq!(all[1].header("x-aws-ec2-metadata-token"), Some("imds-session"));
        }
        drop(spate);
    }
}

#[test]
fn config_errors_name_the_parameter() {
    for (body, want) in [
        ("region r\n  log_stream_name s\n", "Set only one of log_group_name, use_tag_as_group and log_group_name_key"),
        (
            "region r\n  log_group_name g\n  use_tag_as_group true\n  log_stream_name s\n",
            "Set only one of log_group_name, use_tag_as_group and log_group_name_key",
        ),
        ("region r\n  log_group_name g\n", "Set only one of log_stream_name, use_tag_as_stream and log_stream_name_key"),
        ("log_group_name g\n  log_stream_name s\n", "no region"),
        ("region r\n  log_group_name g\n  log_stream_name s\n  aws_use_sts true\n", "aws_use_sts is not supported"),
        (
            "region r\n  log_group_name g\n  log_stream_name s\n  retention_in_days 1\n  retention_in_days_key k\n",
            "Set only one of retention_in_days, retention_in_days_key",
        ),
        (
            "region r\n  log_group_name g\n  log_stream_name s\n  <web_identity_credentials>\n    role_arn a\n  </web_identity_credentials>\n",
            "'role_session_name' parameter is required",
        ),
    ] {
        let (ok, err) = dry_run(&format!("<match **>\n  @type cloudwatch_logs\n  {body}</match>\n"));
        assert!(!ok && err.contains(want) && err.contains("fluent.conf:"), "{body}: {err}");
    }
}

/// `<web_identity_credentials>` (the section, not the environment) and out_s3's
/// `sts_endpoint_url`: the exchange goes to the configured STS (moto's), which answers
/// with temporary credentials.
#[test]
fn web_identity_section_and_sts_endpoint() {
    let Some(m) = moto() else { return };
    let dir = tempdir::Dir::new("cw-wi2");
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-another-token").unwrap();
    let url = format!("http://127.0.0.1:{}", m.port);
    // The provider as out_s3 builds it from `sts_endpoint_url`.
    let w = spate_engine::aws::creds::WebIdentity {
        role_arn: "arn:aws:iam::123456789012:role/s3".into(),
        session_name: "spate-test".into(),
        token_file: token.display().to_string(),
        policy: None,
        duration_seconds: Some(900),
        sts_endpoint: Some(url.clone()),
        sts_region: None,
    };
    let c = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            spate_engine::aws::creds::Provider::new(spate_engine::aws::creds::Source::WebIdentity(w), "us-east-1", None)
                .get()
                .await
        })
        .unwrap()
        .join()
        .unwrap()
        .expect("credentials from moto's STS");
    assert!(!c.access_key.is_empty() && c.session_token.is_some(), "{c:?}");
    // The section in a config, with STS found through AWS_ENDPOINT_URL_STS.
    let conf = format!(
        "{SRC}<match app.**>\n  @type cloudwatch_logs\n  region us-east-1\n  endpoint {url}\n  log_group_name wi2\n  log_stream_name s\n  auto_create_stream true\n  aws_key_id ignored-when-the-section-is-there\n  aws_sec_key x\n  <web_identity_credentials>\n    role_arn arn:aws:iam::123456789012:role/cw\n    role_session_name sess\n    web_identity_token_file {}\n  </web_identity_credentials>\n  {BUF}</match>\n",
        token.display()
    );
    let env = [("AWS_ENDPOINT_URL_STS", url.as_str()), ("AWS_EC2_METADATA_DISABLED", "true")];
    let spate = Spate::start_env(std::path::Path::new(spate_bin()), "cw-wi2", &conf, Stdio::null(), &env);
    send_json(&spate, "app.x", now().0, &[r#"{"via":"section"}"#], "w2");
    let d = wait_dump(m.port, |d| events(d, "wi2", "s").len() == 1);
    let (_, _, err) = spate.stop();
    assert_eq!(events(&d, "wi2", "s").len(), 1, "{err}");
}
