//! Unit tests of out_s3's configuration and upload loop (with an in-memory transport);
//! the real-server tests are in `engine/tests/s3.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::buffer::TimeKey;
use crate::config::{parse_str, EvalContext};

fn elem(body: &str) -> Element {
    let text = format!("<match **>\n  @type s3\n{body}\n</match>\n");
    let ctx = EvalContext { hostname: "h1".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&text, "t.conf", Path::new("/tmp"), &ctx).unwrap();
    let m = root.elements_named("match").next().unwrap().clone();
    m
}

fn daily() -> BufferConf {
    BufferConf { timekey: Some(TimeKey { secs: 86400, wait: Duration::ZERO, utc_offset: 0 }), ..Default::default() }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(body: &str) -> Result<S3Conf, ConfigError> {
    S3Conf::parse(&elem(body), &daily(), "h1", &no_env)
}

const KEYS: &str = "aws_key_id AK\n aws_sec_key SK\n s3_bucket b\n";

#[test]
fn defaults_follow_fluent_plugin_s3() {
    let c = parse(KEYS).unwrap();
    assert_eq!(c.key.format, "%{path}%{time_slice}_%{index}.%{file_extension}");
    assert_eq!(c.key.time_slice_format, "%Y%m%d");
    assert_eq!(c.store, StoreAs::Gzip);
    assert_eq!(c.key.ext, "gz");
    assert_eq!(c.client.region, "us-east-1");
    assert_eq!(c.client.endpoint.host, "s3.us-east-1.amazonaws.com");
    assert!(!c.client.path_style && c.check_bucket && c.auto_create_bucket && c.key.check_object);
    assert!(matches!(c.format.formatter, crate::format::Formatter::OutFile { .. }));
    assert_eq!(c.put_headers[0], ("Content-Type".into(), "application/x-gzip".into()));
}

#[test]
fn parameters() {
    let c = parse(&format!(
        "{KEYS} s3_endpoint http://127.0.0.1:9000\n force_path_style true\n path logs/\n store_as json\n \
         s3_object_key_format %{{path}}%{{hostname}}/%{{time_slice}}_%{{index}}.%{{file_extension}}\n \
         time_slice_format %Y/%m/%d\n index_format %03d\n storage_class STANDARD_IA\n acl private\n \
         s3_metadata {{\"Owner\":\"ops\"}}"
    ))
    .unwrap();
    assert_eq!(c.key.format, "%{path}h1/%{time_slice}_%{index}.%{file_extension}");
    assert_eq!(c.key.time_slice_format, "%Y/%m/%d");
    assert_eq!((c.client.endpoint.port, c.client.path_style), (9000, true));
    assert_eq!(c.key.ext, "json");
    assert!(c.put_headers.contains(&("x-amz-storage-class".into(), "STANDARD_IA".into())));
    assert!(c.put_headers.contains(&("x-amz-acl".into(), "private".into())));
    assert!(c.put_headers.contains(&("x-amz-meta-owner".into(), "ops".into())));
    let c = parse(&format!("{KEYS} check_object false")).unwrap();
    assert_eq!(c.key.format, "%{path}/%{time_slice}_%{hms_slice}.%{file_extension}");
    let c = parse(&format!("{KEYS} store_as zstd\n <compress>\n level 9\n </compress>")).unwrap();
    assert_eq!(c.store, StoreAs::Zstd { level: 9 });
}

#[test]
fn credentials_from_the_environment() {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("EK".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("ES".to_string()),
        "AWS_SESSION_TOKEN" => Some("ET".to_string()),
        "AWS_REGION" => Some("eu-west-1".to_string()),
        _ => None,
    };
    let c = S3Conf::parse(&elem("s3_bucket b"), &daily(), "h", &env).unwrap();
    assert_eq!(c.client.creds.access_key, "EK");
    assert_eq!(c.client.creds.session_token.as_deref(), Some("ET"));
    assert_eq!(c.client.region, "eu-west-1");
    // No keys anywhere: the SDK's default chain, asked when an upload needs it.
    use crate::aws::creds::Source;
    let c = S3Conf::parse(&elem("s3_bucket b"), &daily(), "h", &no_env).unwrap();
    assert!(matches!(c.source, Source::Chain), "{:?}", c.source);
    let c = S3Conf::parse(
        &elem("s3_bucket b\n<instance_profile_credentials>\n ip_address 10.0.0.1\n port 8080\n</instance_profile_credentials>"),
        &daily(),
        "h",
        &no_env,
    )
    .unwrap();
    assert!(matches!(&c.source, Source::Imds(Some(u)) if u == "http://10.0.0.1:8080"), "{:?}", c.source);
    let c = S3Conf::parse(
        &elem("s3_bucket b\n<web_identity_credentials>\n role_arn r\n role_session_name s\n web_identity_token_file /t\n sts_endpoint_url http://sts\n</web_identity_credentials>"),
        &daily(),
        "h",
        &no_env,
    )
    .unwrap();
    assert!(matches!(&c.source, Source::WebIdentity(w) if w.sts_endpoint.as_deref() == Some("http://sts")));
    let c = S3Conf::parse(
        &elem("s3_bucket b\n<shared_credentials>\n path /c\n profile_name p\n</shared_credentials>"),
        &daily(),
        "h",
        &no_env,
    )
    .unwrap();
    assert!(matches!(&c.source, Source::SharedFile(Some(f), Some(p)) if f == "/c" && p == "p"));
    let e = S3Conf::parse(
        &elem("s3_bucket b\n<assume_role_credentials>\n role_arn r\n</assume_role_credentials>"),
        &daily(),
        "h",
        &no_env,
    )
    .unwrap_err();
    assert!(e.to_string().contains("assume_role_credentials"), "{e}");
}

#[test]
fn errors_name_the_line() {
    for (body, msg) in [
        ("aws_key_id AK\n aws_sec_key SK", "needs s3_bucket"),
        (
            &format!("{KEYS} s3_object_key_format %{{uuid}}.gz") as &str,
            "%{uuid} placeholder in s3_object_key_format is removed",
        ),
        (&format!("{KEYS} hex_random_length 17"), "less than or equal to 16"),
        (&format!("{KEYS} index_format %5d"), "index_format"),
        (&format!("{KEYS} store_as lzo"), "not supported"),
        (&format!("{KEYS} s3_endpoint https://s3.amazonaws.com"), "use s3_region instead"),
        (&format!("{KEYS} aws_profile p"), "'aws_profile' is not supported"),
        (&format!("{KEYS} <assume_role_credentials>\n role_arn x\n </assume_role_credentials>"), "not supported"),
        (&format!("{KEYS} signature_version s3"), "only v4"),
    ] {
        let e = parse(body).unwrap_err().to_string();
        assert!(e.contains(msg) && e.contains("t.conf:"), "{body}: {e}");
    }
}

/// An S3 in a map: answers HEAD/PUT on bucket and keys, records the requests.
#[derive(Default)]
struct FakeS3 {
    buckets: RefCell<Vec<String>>,
    objects: RefCell<HashMap<String, Vec<u8>>>,
    log: RefCell<Vec<String>>,
}

impl Transport for FakeS3 {
    async fn send(&self, req: client::Request) -> Result<client::Response, client::TransportError> {
        let path = req.target.split('?').next().unwrap_or("").trim_start_matches('/').to_string();
        self.log.borrow_mut().push(format!("{} {}", req.method, req.target));
        let (bucket, key) = match path.split_once('/') {
            Some((b, k)) => (b.to_string(), Some(k.to_string())),
            None => (path.clone(), None),
        };
        let has_bucket = self.buckets.borrow().contains(&bucket);
        let status = match (req.method, key) {
            ("GET", None) => 200,
            ("HEAD", None) if has_bucket => 200,
            ("HEAD", None) => 404,
            ("PUT", None) => {
                self.buckets.borrow_mut().push(bucket);
                200
            }
            ("HEAD", Some(k)) if self.objects.borrow().contains_key(&k) => 200,
            ("HEAD", Some(_)) => 404,
            ("PUT", Some(k)) if has_bucket => {
                self.objects.borrow_mut().insert(k, req.body.to_vec());
                200
            }
            _ => 404,
        };
        Ok(client::Response { status, body: Vec::new() })
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

#[test]
fn upload_creates_the_bucket_and_counts_up_the_index() {
    let c = parse(&format!("{KEYS} s3_endpoint http://127.0.0.1:1\n force_path_style true\n path p/")).unwrap();
    let out = S3Out::new("s3#0".into(), c);
    let s3 = FakeS3::default();
    let id = [1u8; 16];
    let ch = UploadChunk { id: &id, tag: "t", timekey: Some(1_795_575_600), vars: &[] };
    let k0 = run(out.upload(&s3, &ch, Bytes::from_static(b"a"))).unwrap();
    let k1 = run(out.upload(&s3, &ch, Bytes::from_static(b"b"))).unwrap();
    assert_eq!((k0.as_str(), k1.as_str()), ("p/20261125_0.gz", "p/20261125_1.gz"));
    let log = s3.log.borrow();
    assert_eq!(log[0], "GET /b?max-keys=1&prefix=p%2F");
    assert_eq!(log[1], "HEAD /b");
    assert_eq!(log[2], "PUT /b");
    assert!(log.iter().filter(|l| l.starts_with("HEAD /b/p/20261125_0.gz")).count() == 2);
    assert_eq!(s3.objects.borrow()["p/20261125_1.gz"], b"b");
}

#[test]
fn a_key_without_index_fails_or_overwrites() {
    let body = format!("{KEYS} s3_endpoint http://127.0.0.1:1\n force_path_style true\n s3_object_key_format fixed.gz");
    let s3 = FakeS3::default();
    let id = [1u8; 16];
    let ch = UploadChunk { id: &id, tag: "t", timekey: None, vars: &[] };
    let out = S3Out::new("s3#0".into(), parse(&body).unwrap());
    run(out.upload(&s3, &ch, Bytes::from_static(b"a"))).unwrap();
    let e = run(out.upload(&s3, &ch, Bytes::from_static(b"b"))).unwrap_err();
    assert!(matches!(e, S3Error::DuplicatePath(ref p) if p == "fixed.gz"), "{e}");
    let out = S3Out::new("s3#0".into(), parse(&format!("{body}\n overwrite true")).unwrap());
    run(out.upload(&s3, &ch, Bytes::from_static(b"c"))).unwrap();
    assert_eq!(s3.objects.borrow()["fixed.gz"], b"c");
}

#[test]
fn no_bucket_without_auto_create() {
    let c = parse(&format!("{KEYS} s3_endpoint http://127.0.0.1:1\n force_path_style true\n auto_create_bucket false"))
        .unwrap();
    let out = S3Out::new("s3#0".into(), c);
    let id = [1u8; 16];
    let ch = UploadChunk { id: &id, tag: "t", timekey: None, vars: &[] };
    let e = run(out.upload(&FakeS3::default(), &ch, Bytes::new())).unwrap_err();
    assert_eq!(e, S3Error::NoBucket("b".into()));
}
