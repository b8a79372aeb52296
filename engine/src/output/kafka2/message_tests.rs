//! Unit tests of out_kafka2's message building (the producer path is tested against a
//! real broker in `engine/tests/kafka.rs`).

use super::*;
use crate::config::{parse_str, EvalContext};
use spate_protocol::encode::{self, raw};
use spate_protocol::{EntriesFormat, EventTime, Events};

fn conf(body: &str) -> MessageConf {
    let text = format!("<match **>\n  @type kafka2\n{body}\n</match>\n");
    let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
    let root = parse_str(&text, "k.conf", std::path::Path::new("/tmp"), &ctx).unwrap();
    let m = root.elements_named("match").next().unwrap().clone();
    MessageConf::parse(&m, "h").unwrap()
}

/// One event whose record is built by `f`.
fn entry(fields: &[(&str, Val)]) -> Vec<u8> {
    let mut rec = Vec::new();
    raw::map_header(&mut rec, fields.len() as u32);
    for (k, v) in fields {
        raw::str(&mut rec, k.as_bytes());
        v.write(&mut rec);
    }
    let mut e = Vec::new();
    encode::entry(&mut e, EventTime::new(1_700_000_000, 250_000_000), encode::TimeFormat::EventTime, &rec);
    e
}

enum Val {
    S(&'static str),
    I(i64),
    Nil,
    M(Vec<(&'static str, Val)>),
}

impl Val {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::S(s) => raw::str(out, s.as_bytes()),
            Val::I(i) => raw::int(out, *i),
            Val::Nil => raw::nil(out),
            Val::M(f) => {
                raw::map_header(out, f.len() as u32);
                for (k, v) in f {
                    raw::str(out, k.as_bytes());
                    v.write(out);
                }
            }
        }
    }
}

/// (payload, key, partition, timestamp) of a built message.
type Built = (Vec<u8>, Option<Vec<u8>>, String, Option<i64>);
type HeaderList = Vec<(String, Option<Vec<u8>>)>;

fn build(c: &MessageConf, data: &[u8]) -> (Result<Built, Skip>, HeaderList) {
    use rdkafka::message::Headers;
    let ev = Events::new(data, EntriesFormat::Packed).next().unwrap();
    let mut s = Scratch::default();
    match c.build(b"app.web", &ev, &mut s) {
        Ok(m) => {
            let hs = m
                .headers
                .as_ref()
                .map(|h| h.iter().map(|x| (x.key.to_string(), x.value.map(|v| v.to_vec()))).collect())
                .unwrap_or_default();
            let part = format!("{:?}", m.partition);
            (Ok((m.payload.to_vec(), m.key.map(|k| k.to_vec()), part, m.timestamp)), hs)
        }
        Err(e) => (Err(e), Vec::new()),
    }
}

fn s(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn json_payload_without_newline_and_no_key() {
    let c = conf("brokers k:1");
    let (r, h) = build(&c, &entry(&[("a", Val::I(1)), ("b", Val::S("x\"y"))]));
    let (payload, key, part, ts) = r.unwrap();
    assert_eq!(s(&payload), r#"{"a":1,"b":"x\"y"}"#);
    assert_eq!((key, part.as_str(), ts), (None, "Any", None));
    assert!(h.is_empty());
}

#[test]
fn topics() {
    let id = [0u8; 16];
    let vars = vec![("topic".to_string(), "from-record".to_string())];
    let empty = vec![("topic".to_string(), String::new())];
    let c = conf("brokers k:1");
    assert_eq!(c.topic("app.web", None, None, &id, &vars), "from-record");
    assert_eq!(c.topic("app.web", None, None, &id, &empty), "app.web");
    let c = conf("default_topic dflt");
    assert_eq!(c.topic("app.web", None, None, &id, &empty), "dflt");
    assert_eq!(c.topic("app.web", None, None, &id, &vars), "from-record");
    let c = conf("topic logs.${tag[1]}.%Y%m%d");
    assert_eq!(c.topic("app.web", Some(1_700_000_000), Some(Zone::Utc), &id, &[]), "logs.web.20231114");
    // Without a time chunk key, strftime is not applied (fluentd's extract_placeholders).
    assert_eq!(c.topic("app.web", None, None, &id, &[]), "logs.web.%Y%m%d");
}

#[test]
fn keys_partitions_and_exclusions() {
    let rec = entry(&[
        ("message_key", Val::S("user-1")),
        ("partition_key", Val::I(42)),
        ("partition", Val::I(3)),
        ("topic", Val::S("t")),
        ("msg", Val::S("hi")),
    ]);
    let c = conf("brokers k:1");
    let (payload, key, part, _) = build(&c, &rec).0.unwrap();
    assert_eq!(key.as_deref(), Some(&b"user-1"[..]));
    assert_eq!(part, "Given(3)");
    assert_eq!(s(&payload), r#"{"message_key":"user-1","partition_key":42,"partition":3,"topic":"t","msg":"hi"}"#);
    let c =
        conf("exclude_message_key true\n exclude_partition_key true\n exclude_partition true\n exclude_topic_key true");
    let (payload, key, part, _) = build(&c, &rec).0.unwrap();
    assert_eq!(s(&payload), r#"{"msg":"hi"}"#);
    assert_eq!(key.as_deref(), Some(&b"user-1"[..]));
    assert_eq!(part, "Given(3)");
    // Without an explicit partition, the partition key (as Ruby's to_s) is hashed.
    let rec = entry(&[("partition_key", Val::I(42)), ("msg", Val::S("hi"))]);
    let (_, _, part, _) = build(&c, &rec).0.unwrap();
    assert_eq!(part, r#"Hash([52, 50])"#);
    // Defaults when the record has none (nil counts as none).
    let c = conf("default_message_key dk\n default_partition_key dpk\n default_partition 1");
    let (_, key, part, _) = build(&c, &entry(&[("message_key", Val::Nil)])).0.unwrap();
    assert_eq!((key.as_deref(), part.as_str()), (Some(&b"dk"[..]), "Given(1)"));
    let c = conf("default_partition_key dpk");
    assert_eq!(build(&c, &entry(&[])).0.unwrap().2, "Hash([100, 112, 107])");
}

#[test]
fn headers_exclude_fields_and_record_key() {
    let rec = entry(&[
        ("k", Val::M(vec![("ns", Val::S("prod")), ("pod", Val::S("p1"))])),
        ("message_key", Val::S("mk")),
        ("n", Val::I(7)),
    ]);
    let c = conf(
        "headers {\"env\":\"dev\"}\n headers_from_record {\"ns\":\"$.k.ns\",\"n\":\"n\",\"mk\":\"message_key\",\"none\":\"$.x\"}\n \
         exclude_fields $.k.pod,n\n exclude_message_key true\n use_event_time true",
    );
    let (r, h) = build(&c, &rec);
    let (payload, key, _, ts) = r.unwrap();
    assert_eq!(s(&payload), r#"{"k":{"ns":"prod"}}"#);
    assert_eq!(key.as_deref(), Some(&b"mk"[..]));
    assert_eq!(ts, Some(1_700_000_000_250));
    let h: Vec<(String, Option<String>)> =
        h.into_iter().map(|(k, v)| (k, v.map(|v| String::from_utf8(v).unwrap()))).collect();
    assert_eq!(
        h,
        vec![
            ("env".into(), Some("dev".into())),
            ("ns".into(), Some("prod".into())),
            ("n".into(), Some("7".into())),
            // Excluded before headers are taken, as in fluent-plugin-kafka.
            ("mk".into(), None),
            ("none".into(), None),
        ]
    );
    let c = conf("record_key $.k");
    assert_eq!(s(&build(&c, &rec).0.unwrap().0), r#"{"ns":"prod","pod":"p1"}"#);
    let c = conf("record_key n");
    assert_eq!(s(&build(&c, &rec).0.unwrap().0), "7");
    let c = conf("record_key nothing");
    assert_eq!(build(&c, &rec).0.unwrap_err(), Skip::Unformattable);
}

#[test]
fn formats_and_size_limit() {
    let rec = entry(&[("message", Val::S("plain text"))]);
    let c = conf("<format>\n @type single_value\n </format>");
    assert_eq!(s(&build(&c, &rec).0.unwrap().0), "plain text\n");
    let c = conf("max_send_limit_bytes 10");
    assert_eq!(build(&c, &rec).0.unwrap_err(), Skip::TooLarge(24));
    let c = conf("<inject>\n tag_key tag\n </inject>");
    assert_eq!(s(&build(&c, &rec).0.unwrap().0), r#"{"message":"plain text","tag":"app.web"}"#);
    // Injected before the key is read (fluent-plugin-kafka): messages keyed by tag.
    let c = conf("message_key_key tag\n <inject>\n tag_key tag\n </inject>");
    assert_eq!(build(&c, &rec).0.unwrap().1.as_deref(), Some(&b"app.web"[..]));
}

#[test]
fn partitioners_match_ruby_kafka_and_java() {
    // Kafka's Java murmur2 test vectors (as unsigned).
    for (k, h) in [
        ("21", 3321034988u32),
        ("foobar", 3504634814),
        ("a-little-bit-long-string", 3308985760),
        ("a-little-bit-longer-string", 2808662467),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 4236069325),
        ("abc", 479470107),
        ("", 275646681),
    ] {
        assert_eq!(murmur2(k.as_bytes()), h, "{k}");
    }
    assert_eq!(HashFn::Crc32.partition(b"user-1", 4), (2116437524u32 % 4) as i32);
    assert_eq!(HashFn::Murmur2.partition(b"21", 4), ((3321034988u32 & 0x7fff_ffff) % 4) as i32);
    assert_eq!(HashFn::Crc32.partition(b"x", 0), 0);
}

#[test]
fn config_errors() {
    let parse = |body: &str| {
        let text = format!("<match **>\n  @type kafka2\n{body}\n</match>\n");
        let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
        let root = parse_str(&text, "k.conf", std::path::Path::new("/tmp"), &ctx).unwrap();
        let m = root.elements_named("match").next().unwrap().clone();
        MessageConf::parse(&m, "h").map(|_| ()).unwrap_err().to_string()
    };
    assert!(parse("partitioner_hash_function md5").contains("crc32 or murmur2"));
    assert!(parse("exclude_fields $.a[0]").contains("array indexes"));
    assert!(parse("default_partition -1").contains("partition number"));
}
