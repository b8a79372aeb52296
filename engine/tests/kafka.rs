//! out_kafka2 and in_kafka_group against a real Kafka-protocol broker (tansu, with its
//! sqlite store, started by each test on a free port), with an independent client
//! (Python confluent-kafka) on the other side:
//!
//! - what spate writes is read back by Python exactly: JSON intact, keys, headers and
//!   partitions as configured, gzip / lz4 / zstd batches;
//! - what Python writes is read by spate's in_kafka_group as fluent-plugin-kafka does;
//! - scale-out: edge spate -> topic with 4 partitions -> two spate processes in one
//!   consumer group -> sink; one consumer is killed with SIGKILL mid-stream, the other
//!   takes its partitions, and every acked event reaches the sink;
//! - the broker is down for 10 s under load: nothing acked is lost.
//!
//! tansu's limits the tests are built around: each test uses fresh topic and group
//! names (a group several librdkafka members left may never admit a new one), and
//! Snappy is covered by unit tests only (a Snappy batch makes a tansu 0.6 partition
//! unreadable).

mod common;
mod stores;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const READ: &str = r#"
import sys, json, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
port, topic, parts, expect, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
conf = {"bootstrap.servers": "127.0.0.1:" + port, "group.id": "py-reader-%d" % time.time_ns(),
        "enable.auto.commit": False, "auto.offset.reset": "earliest"}
if len(sys.argv) > 7:
    conf.update({"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-512",
                 "sasl.username": sys.argv[6], "sasl.password": sys.argv[7]})
c = Consumer(conf)
c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(parts)])
out = []
end = time.time() + timeout
idle_until = None
while time.time() < end:
    m = c.poll(0.5)
    if m is None:
        if len(out) >= expect:
            if idle_until is None:
                idle_until = time.time() + 2
            elif time.time() > idle_until:
                break
        continue
    if m.error():
        sys.stderr.write("consume: %s\n" % m.error())
        continue
    idle_until = None
    hs = [[k, None if v is None else v.decode()] for k, v in (m.headers() or [])]
    out.append({"p": m.partition(), "key": None if m.key() is None else m.key().decode(), "headers": hs,
                "value": m.value().decode()})
c.close()
print(json.dumps(out))
"#;

const PRODUCE: &str = r#"
import sys, json
from confluent_kafka import Producer
port, topic, parts, n, fmt = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = Producer({"bootstrap.servers": "127.0.0.1:" + port, "acks": "all"})
failed = []
def report(err, msg):
    if err is not None:
        failed.append(str(err))
for i in range(n):
    rec = {"k": i, "msg": "event %d" % i}
    if fmt == "json":
        value = json.dumps(rec)
    elif fmt == "msgpack":
        import msgpack
        value = msgpack.packb(rec)
    else:
        value = "line %d" % i
    p.produce(topic, value=value, key="key-%d" % i, partition=i % parts, headers=[("h", b"v%d" % i)],
              on_delivery=report)
    p.poll(0)
p.flush(60)
assert not failed, failed
print(n)
"#;

fn need_peers() -> Option<PathBuf> {
    let bin = stores::tansu_bin()?;
    stores::python_with(&["confluent_kafka", "msgpack"], "SPATE_REQUIRE_KAFKA")?;
    Some(bin)
}

struct Broker {
    bin: PathBuf,
    dir: tempdir::Dir,
    server: Option<stores::Server>,
    port: u16,
}

impl Broker {
    fn start(bin: &Path, name: &str) -> Broker {
        let dir = tempdir::Dir::new(name);
        let port = free_port();
        let server = stores::start_tansu(bin, dir.path(), port);
        Broker { bin: bin.to_path_buf(), dir, server: Some(server), port }
    }

    fn topic(&self, name: &str, partitions: u32) {
        stores::create_topic(&self.bin, self.port, name, partitions);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    fn restart(&mut self) {
        self.server = Some(stores::start_tansu(&self.bin, self.dir.path(), self.port));
    }

    /// Every message of `topic` (read by Python from the beginning of each partition).
    fn read(&self, topic: &str, partitions: u32, expect: usize) -> Vec<serde_json::Value> {
        self.read_as(topic, partitions, expect, &[])
    }

    /// [`Broker::read`] with SCRAM credentials (`[user, password]`).
    fn read_as(&self, topic: &str, partitions: u32, expect: usize, auth: &[&str]) -> Vec<serde_json::Value> {
        let (port, parts, n) = (self.port.to_string(), partitions.to_string(), expect.to_string());
        let mut args = vec![port.as_str(), topic, &parts, &n, "90"];
        args.extend_from_slice(auth);
        let out = stores::python(READ, &args);
        serde_json::from_str::<serde_json::Value>(&out).expect("reader output").as_array().cloned().unwrap_or_default()
    }
}

/// Sends `n` events (`k` from `base`) in acked frames of 100 on `tag`; returns once
/// every frame was acked.
fn send_acked(addr: SocketAddr, tag: &str, base: u64, n: u64) {
    let mut c = Client::connect(addr);
    let mut k = base;
    while k < base + n {
        let m = (base + n - k).min(100);
        let chunk = format!("c{k}");
        c.send(&kv_frame(tag.as_bytes(), k..k + m, kv_time(k), &chunk)).unwrap();
        let ack = c.read_ack().unwrap();
        assert!(String::from_utf8_lossy(&ack).contains(&chunk), "ack for {chunk}");
        k += m;
    }
}

fn record_of(v: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(v["value"].as_str().unwrap()).unwrap()
}

#[test]
fn out_kafka2_records_read_by_an_independent_consumer() {
    let Some(bin) = need_peers() else { return };
    let broker = Broker::start(&bin, "kafka-out");
    for (t, p) in [("out-gzip", 1), ("out-lz4", 1), ("out-zstd", 4)] {
        broker.topic(t, p);
    }
    let b = broker.addr();
    let conf = format!(
        r#"{SRC}<match gz.**>
  @type kafka2
  brokers {b}
  default_topic out-gzip
  compression_codec gzip
  message_key_key msg
  headers {{"env":"test"}}
  headers_from_record {{"msg":"$.msg"}}
  <buffer topic>
    flush_interval 0.5s
  </buffer>
</match>
<match lz4.**>
  @type kafka2
  brokers {b}
  topic out-${{tag[0]}}
  compression_codec lz4
  exclude_topic_key true
  <inject>
    tag_key tag
  </inject>
  <buffer tag>
    flush_interval 0.5s
  </buffer>
</match>
<match zstd.**>
  @type kafka2
  brokers {b}
  default_topic out-zstd
  compression_codec zstd
  partition_key_key msg
  required_acks 1
  <format>
    @type single_value
    message_key msg
    add_newline false
  </format>
  <buffer>
    @type file
    path {{DIR}}/zstd-buffer
    flush_interval 0.5s
  </buffer>
</match>
"#
    );
    let dir = tempdir::Dir::new("kafka-out-spate");
    let spate = Spate::start("kafka-out", &conf.replace("{DIR}", &dir.path().display().to_string()), Stdio::null());
    let n = 300u64;
    send_acked(spate.addr(), "gz.app", 0, n);
    send_acked(spate.addr(), "lz4.app", 1000, n);
    send_acked(spate.addr(), "zstd.app", 2000, n);

    let gz = broker.read("out-gzip", 1, n as usize);
    assert_eq!(gz.len(), n as usize, "gzip topic");
    for (i, m) in gz.iter().enumerate() {
        let k = i as u64;
        assert_eq!(record_of(m), serde_json::json!({"k": k, "msg": format!("event {k}")}));
        assert_eq!(m["key"], format!("event {k}"));
        assert_eq!(m["headers"], serde_json::json!([["env", "test"], ["msg", format!("event {k}")]]));
    }
    let lz = broker.read("out-lz4", 1, n as usize);
    assert_eq!(lz.len(), n as usize, "lz4 topic");
    for (i, m) in lz.iter().enumerate() {
        let k = 1000 + i as u64;
        assert_eq!(record_of(m), serde_json::json!({"k": k, "msg": format!("event {k}"), "tag": "lz4.app"}));
        assert!(m["key"].is_null() && m["headers"].as_array().unwrap().is_empty());
    }
    let zs = broker.read("out-zstd", 4, n as usize);
    assert_eq!(zs.len(), n as usize, "zstd topic");
    let mut seen = HashSet::new();
    for m in &zs {
        let v = m["value"].as_str().unwrap();
        seen.insert(v.to_string());
        // ruby-kafka's partitioner: crc32(partition key) % partitions.
        let p = crc32fast::hash(v.as_bytes()) % 4;
        assert_eq!(m["p"], p, "{v}");
    }
    assert_eq!(seen.len(), n as usize);
    assert!(seen.contains("event 2000") && seen.contains("event 2299"));
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn in_kafka_group_reads_what_python_produced() {
    let Some(bin) = need_peers() else { return };
    let broker = Broker::start(&bin, "kafka-in");
    broker.topic("in-json", 2);
    broker.topic("in-mp", 1);
    let n = 200u64;
    for (t, p, f) in [("in-json", "2", "json"), ("in-mp", "1", "msgpack")] {
        stores::python(PRODUCE, &[&broker.port.to_string(), t, p, &n.to_string(), f]);
    }
    let sink = Sink::start();
    let conf = format!(
        r#"{SRC}<source>
  @type kafka_group
  brokers {b}
  consumer_group spate-in-{g}
  topics in-json
  format json
  kafka_message_key kafka_key
  add_headers true
  add_prefix kafka
  offset_commit_interval 1
</source>
<source>
  @type kafka_group
  brokers {b}
  consumer_group spate-in-mp-{g}
  topics /^in-m./
  format msgpack
  time_source kafka
</source>
<match kafka.** in-mp>
  @type forward
  <server>
    host 127.0.0.1
    port {sp}
  </server>
  <buffer>
    flush_interval 0.2s
  </buffer>
</match>
"#,
        b = broker.addr(),
        g = nanos(),
        sp = sink.addr.port()
    );
    let spate = Spate::start("kafka-in", &conf, Stdio::null());
    let got = sink.wait_for(2 * n as usize, Duration::from_secs(60));
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert_eq!(got.len(), 2 * n as usize, "{err}");
    let mut json_ks = HashSet::new();
    let mut mp_ks = HashSet::new();
    for e in &got {
        let mut j = Vec::new();
        spate_protocol::RecordRef::new(&e.record).unwrap().write_json(&mut j);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        let k = v["k"].as_u64().unwrap();
        match e.tag.as_slice() {
            b"kafka.in-json" => {
                assert_eq!(
                    v,
                    serde_json::json!({"k": k, "msg": format!("event {k}"), "kafka_key": format!("key-{k}"), "h": format!("v{k}")})
                );
                json_ks.insert(k);
            }
            b"in-mp" => {
                assert_eq!(v, serde_json::json!({"k": k, "msg": format!("event {k}")}));
                // time_source kafka: the producer's timestamp, close to now.
                assert!(e.time.sec > 1_700_000_000);
                mp_ks.insert(k);
            }
            t => panic!("unexpected tag {}", String::from_utf8_lossy(t)),
        }
    }
    assert_eq!((json_ks.len(), mp_ks.len()), (n as usize, n as usize));
}

/// A client sending acked frames of 100 events, round-robin over 16 tags, until told
/// to stop; every acked `k` is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, frames_per_sec: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (st, ac) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut k = 0u64;
            let mut c: Option<Client> = None;
            let start = Instant::now();
            let mut frames = 0u64;
            while !st.load(Ordering::Relaxed) {
                let due = start + Duration::from_secs_f64(frames as f64 / frames_per_sec as f64);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                let cl = c.get_or_insert_with(|| Client::connect(addr));
                let tag = format!("app.t{}", frames % 16);
                let chunk = format!("c{k}");
                let ok = cl.send(&kv_frame(tag.as_bytes(), k..k + 100, kv_time(k), &chunk)).is_ok()
                    && cl.read_ack().is_ok_and(|a| String::from_utf8_lossy(&a).contains(&chunk));
                if ok {
                    ac.lock().unwrap().extend(k..k + 100);
                    k += 100;
                } else {
                    // Not acked: resend the same events on a new connection.
                    c = None;
                    std::thread::sleep(Duration::from_millis(100));
                }
                frames += 1;
            }
        });
        Load { stop, acked, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

fn edge_conf(brokers: &str, topic: &str, buffer_dir: &Path) -> String {
    format!(
        r#"{SRC}<match app.**>
  @type kafka2
  brokers {brokers}
  default_topic {topic}
  message_key_key tag
  ack_timeout 2s
  max_send_retries 1
  <inject>
    tag_key tag
  </inject>
  <buffer tag>
    @type file
    path {}
    flush_interval 0.2s
    retry_wait 0.5s
    retry_max_interval 2s
    retry_forever true
  </buffer>
</match>
"#,
        buffer_dir.display()
    )
}

fn consumer_conf(brokers: &str, topic: &str, group: &str, sink_port: u16, buffer_dir: &Path) -> String {
    format!(
        r#"<source>
  @type kafka_group
  brokers {brokers}
  consumer_group {group}
  topics {topic}
  session_timeout 6
  offset_commit_interval 1
</source>
<match {topic}>
  @type forward
  require_ack_response true
  <server>
    host 127.0.0.1
    port {sink_port}
  </server>
  <buffer tag>
    @type file
    path {}
    flush_interval 0.2s
    retry_wait 0.5s
    retry_max_interval 2s
  </buffer>
</match>
"#,
        buffer_dir.display()
    )
}

/// A spate without a listening port (a pure consumer), started on a config.
fn start_consumer(name: &str, conf: &str, dir: &Path) -> Proc {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc::spawn(name, spate_cmd(&path, 1).stdout(Stdio::null()).stderr(log))
}

fn wait_delivered(sink: &FixedSink, acked: &[u64], within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let seen = sink.seen.lock().unwrap();
        if acked.iter().all(|k| seen.contains_key(k)) {
            return;
        }
        drop(seen);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (delivered distinct, lost, duplicates) of `acked` at the sink.
fn tally(seen: &HashMap<u64, u32>, acked: &[u64]) -> (usize, usize, u64) {
    let lost = acked.iter().filter(|k| !seen.contains_key(k)).count();
    let dups = seen.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    (seen.len(), lost, dups)
}

/// The scale-out test. With a real Kafka, the surviving consumer takes the killed one's
/// partitions after its session times out. tansu 0.6 does not re-form the group when a
/// member expires (its heartbeat handler drops the member without a new generation, so
/// the survivor's re-join gets its old assignment back; see README), so the killed
/// consumer is restarted after 8 s, on its own file buffer (what it had stored and not
/// yet forwarded is only there), and the group re-forms when it joins. The partitions
/// of the killed consumer are read again from the last committed offsets: what it
/// consumed and did not store is read twice (duplicates), never lost.
#[test]
fn scale_out_through_kafka_survives_a_killed_consumer() {
    let Some(bin) = need_peers() else { return };
    let broker = Broker::start(&bin, "kafka-scale");
    let topic = format!("scale-{}", nanos() % 1_000_000);
    broker.topic(&topic, 4);
    let dir = tempdir::Dir::new("kafka-scale-spates");
    let mut sink = FixedSink::new(free_port());
    sink.start();
    let group = format!("spate-scale-{}", nanos());
    let conf_a = consumer_conf(&broker.addr(), &topic, &group, sink.port, &dir.path().join("buf-a"));
    let mut a = start_consumer("consumer-a", &conf_a, dir.path());
    let _b = start_consumer(
        "consumer-b",
        &consumer_conf(&broker.addr(), &topic, &group, sink.port, &dir.path().join("buf-b")),
        dir.path(),
    );
    let edge =
        Spate::start("kafka-edge", &edge_conf(&broker.addr(), &topic, &dir.path().join("buf-edge")), Stdio::null());
    let load = Load::start(edge.addr(), 40);
    // Both consumers are in the group and delivering: then kill one mid-stream.
    std::thread::sleep(Duration::from_secs(8));
    let before_kill = sink.total();
    a.signal(libc::SIGKILL);
    let _ = a.kill();
    std::thread::sleep(Duration::from_secs(8));
    let _a2 = start_consumer("consumer-a-restarted", &conf_a, dir.path());
    std::thread::sleep(Duration::from_secs(8));
    let acked = load.finish();
    wait_delivered(&sink, &acked, Duration::from_secs(120));
    let seen = sink.seen.lock().unwrap().clone();
    let (delivered, lost, dups) = tally(&seen, &acked);
    let log = |n: &str| std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default();
    let (log_a, log_b, log_a2) = (log("consumer-a"), log("consumer-b"), log("consumer-a-restarted"));
    eprintln!(
        "scale-out: acked {}, delivered {delivered} distinct ({before_kill} before the kill), lost {lost}, duplicates {dups}",
        acked.len()
    );
    let logs = format!("A:\n{log_a}\nB:\n{log_b}\nA restarted:\n{log_a2}");
    assert!(log_a.contains("partitions assigned") && log_b.contains("partitions assigned"), "{logs}");
    assert!(before_kill > 0, "nothing delivered before the kill\n{logs}");
    assert_eq!(lost, 0, "acked events lost\n{logs}");
    assert!(acked.len() > 10_000, "load too small: {}", acked.len());
    drop(edge);
    sink.stop();
}

#[test]
fn broker_down_for_10s_under_load_loses_nothing_acked() {
    let Some(bin) = need_peers() else { return };
    let mut broker = Broker::start(&bin, "kafka-down");
    let topic = format!("down-{}", nanos() % 1_000_000);
    broker.topic(&topic, 2);
    let dir = tempdir::Dir::new("kafka-down-spate");
    let edge = Spate::start("kafka-down", &edge_conf(&broker.addr(), &topic, &dir.path().join("buf")), Stdio::null());
    let load = Load::start(edge.addr(), 40);
    std::thread::sleep(Duration::from_secs(4));
    broker.stop();
    std::thread::sleep(Duration::from_secs(10));
    broker.restart();
    std::thread::sleep(Duration::from_secs(6));
    let acked = load.finish();
    // Everything acked ends up in the topic (read by Python).
    let msgs = broker.read(&topic, 2, acked.len());
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for m in &msgs {
        let k = record_of(m)["k"].as_u64().unwrap();
        *seen.entry(k).or_default() += 1;
    }
    let (delivered, lost, dups) = tally(&seen, &acked);
    eprintln!("broker down 10 s: acked {}, in Kafka {delivered} distinct, lost {lost}, duplicates {dups}", acked.len());
    assert_eq!(lost, 0);
    let (st, _, err) = edge.stop();
    assert!(st.success(), "{err}");
}

/// SASL SCRAM-SHA-512 (tansu 0.6 authenticates over plaintext; its TLS listener cannot be
/// configured: `--cert` and `--key` are mutually exclusive in its CLI): out_kafka2 and
/// in_kafka_group with fluent-plugin-kafka's `username`/`password`/`scram_mechanism` and
/// `sasl_over_ssl false`; a wrong password gets nothing in or out.
#[test]
fn sasl_scram_to_an_authenticating_broker() {
    let Some(bin) = need_peers() else { return };
    let mut broker = Broker::start(&bin, "kafka-sasl");
    broker.topic("sasl-in", 1);
    broker.topic("sasl-out", 1);
    stores::create_user(&bin, broker.port, "alice", "s3cret-pw");
    broker.stop();
    broker.server = Some(stores::start_tansu_with(&bin, broker.dir.path(), broker.port, &["--authentication"]));
    let sink = Sink::start();
    let conf = |pw: &str, group: &str| {
        format!(
            r#"{SRC}<source>
  @type kafka_group
  brokers {b}
  consumer_group {group}
  topics sasl-out
  username alice
  password {pw}
  scram_mechanism sha512
  sasl_over_ssl false
</source>
<match app.**>
  @type kafka2
  brokers {b}
  default_topic sasl-out
  username alice
  password {pw}
  scram_mechanism sha512
  sasl_over_ssl false
  <buffer>
    flush_interval 0.2s
    retry_wait 0.5s
  </buffer>
</match>
<match sasl-out>
  @type forward
  <server>
    host 127.0.0.1
    port {sp}
  </server>
  <buffer>
    flush_interval 0.2s
  </buffer>
</match>
"#,
            b = broker.addr(),
            sp = sink.addr.port()
        )
    };
    // The wrong password first: events are accepted (buffered) but nothing reaches Kafka.
    let bad = Spate::start("kafka-sasl-bad", &conf("wrong", &format!("bad-{}", nanos())), Stdio::null());
    send_acked(bad.addr(), "app.bad", 5000, 100);
    std::thread::sleep(Duration::from_secs(4));
    let mut bad = bad;
    let (_, _, bad_log) = bad.proc.kill().expect("running");
    assert!(bad_log.contains("SASL") || bad_log.contains("uthentication"), "{bad_log}");
    assert!(sink.events.lock().unwrap().is_empty());
    let spate = Spate::start("kafka-sasl", &conf("s3cret-pw", &format!("good-{}", nanos())), Stdio::null());
    send_acked(spate.addr(), "app.web", 0, 200);
    // Round trip: out_kafka2 -> tansu -> in_kafka_group -> the sink.
    let got = sink.wait_for(200, Duration::from_secs(60));
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert_eq!(got.len(), 200, "{err}");
    let msgs = broker.read_as("sasl-out", 1, 200, &["alice", "s3cret-pw"]);
    assert_eq!(msgs.len(), 200);
    assert_eq!(record_of(&msgs[0]), serde_json::json!({"k": 0, "msg": "event 0"}));
}

/// out_rdkafka2 as a real config writes it (`rdkafka_options` carrying librdkafka's
/// SASL settings, a `<format>`) against the authenticating broker: the options reach
/// librdkafka (without them tansu refuses the producer), and what Python reads back is
/// what was sent. Its config checks follow the plugin's.
#[test]
fn rdkafka2_with_rdkafka_options_to_an_authenticating_broker() {
    let (ok, err) = dry_run("<match **>\n  @type rdkafka2\n  brokers 127.0.0.1:9092\n  default_topic t\n</match>\n");
    assert!(!ok && err.contains("fluent.conf:1:1: <format> section is required."), "{err}");
    let (ok, err) = dry_run(
        "<match **>\n  @type rdkafka2\n  default_topic t\n  <format>\n    add_newline false\n  </format>\n</match>\n",
    );
    assert!(!ok && err.contains("format/@type is required."), "{err}");
    let (ok, err) = dry_run("<match **>\n  @type rdkafka2\n  default_topic t\n  max_enqueue_bytes_per_second 1m\n  <format>\n    @type json\n  </format>\n</match>\n");
    assert!(!ok && err.contains("max_enqueue_bytes_per_second: an enqueue rate limit is not implemented"), "{err}");
    let (ok, err) = dry_run("<match **>\n  @type rdkafka2\n  default_topic t\n  rdkafka_options {\"no.such.property\": \"1\"}\n  <format>\n    @type json\n  </format>\n</match>\n");
    assert!(
        !ok && err.contains("rdkafka2:") && err.contains("no.such.property"),
        "librdkafka checks the options: {err}"
    );

    let Some(bin) = need_peers() else { return };
    let mut broker = Broker::start(&bin, "kafka-rdkafka2");
    broker.topic("rd-out", 1);
    stores::create_user(&bin, broker.port, "bob", "rd-pw");
    broker.stop();
    broker.server = Some(stores::start_tansu_with(&bin, broker.dir.path(), broker.port, &["--authentication"]));
    let conf = format!(
        r#"{SRC}<match app.**>
  @type rdkafka2
  brokers {b}
  default_topic rd-out
  <format>
    @type json
  </format>
  <buffer>
    flush_interval 0.2s
    retry_wait 0.5s
  </buffer>
  rdkafka_options {{
    "security.protocol" : "sasl_plaintext",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "bob",
    "sasl.password": "rd-pw"
  }}
  rdkafka_buffering_max_ms 10
</match>
"#,
        b = broker.addr()
    );
    let spate = Spate::start("kafka-rdkafka2", &conf, Stdio::null());
    send_acked(spate.addr(), "app.rd", 0, 150);
    let msgs = broker.read_as("rd-out", 1, 150, &["bob", "rd-pw"]);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    assert_eq!(msgs.len(), 150, "{err}");
    assert_eq!(record_of(&msgs[0]), serde_json::json!({"k": 0, "msg": "event 0"}));
}

/// fluent-plugin-kafka's out_kafka_buffered as fluentd-kubernetes-daemonset's kafka
/// image writes it (v0.12 flat buffer parameters): the topic is the record's `topic`
/// (removed with exclude_topic_key), else `default_topic`; `output_include_time` and
/// `output_include_tag` set `time` (an integer) then `tag` on the record; a formatter
/// named by `output_data_type` takes the output's own parameters. ZooKeeper discovery,
/// `attr:` and `topic` are config errors.
#[test]
fn kafka_buffered_v012_config_to_a_broker() {
    for (extra, want) in [
        ("zookeeper zk:2181\n", "zookeeper: broker discovery through ZooKeeper is not supported"),
        ("output_data_type attr:a,b\n", "output_data_type \"attr:a,b\": attr: is not supported"),
        ("output_data_type yaml\n", "output_data_type \"yaml\": expected json, ltsv, msgpack or a formatter name"),
        ("topic t\n", "topic: kafka_buffered has no `topic` parameter"),
        ("monitoring_list [\"statsd\"]\n", "monitoring_list: ruby-kafka's statsd/datadog monitoring"),
    ] {
        let (ok, err) = dry_run(&format!("<match **>\n  @type kafka_buffered\n  default_topic t\n  {extra}</match>\n"));
        assert!(!ok && err.contains("fluent.conf:") && err.contains(want), "{extra}: {err}");
    }
    let (ok, err) = dry_run("<match **>\n  @type kafka_buffered\n  brokers 127.0.0.1:9092\n  monitoring_list []\n  ack_timeout_ms 3000\n  kafka_agg_max_bytes 8k\n</match>\n");
    assert!(
        ok && err.contains("'ack_timeout_ms' parameter is deprecated") && err.contains("Use kafka2 instead"),
        "{err}"
    );

    let Some(bin) = need_peers() else { return };
    let broker = Broker::start(&bin, "kafka-buffered");
    for t in ["kb-default", "kb-other", "kb-single"] {
        broker.topic(t, 1);
    }
    let conf = format!(
        r#"{SRC}<match kb.**>
  @type kafka_buffered
  @id out_kafka
  brokers {b}
  default_topic kb-default
  output_data_type json
  output_include_tag true
  output_include_time true
  exclude_topic_key true
  exclude_partition_key false
  get_kafka_client_log false
  max_send_retries 1
  required_acks -1
  ack_timeout 5
  kafka_agg_max_messages 2
  discard_kafka_delivery_failed false
  flush_interval 0.5s
  buffer_queue_limit 128
  num_threads 2
</match>
<match single.**>
  @type kafka_buffered
  brokers {b}
  default_topic kb-single
  output_data_type single_value
  message_key msg
  add_newline false
  flush_interval 0.5s
</match>
"#,
        b = broker.addr()
    );
    let spate = Spate::start("kafka-buffered", &conf, Stdio::null());
    let t0 = spate_protocol::EventTime::new(1_700_000_000, 5);
    let recs = [
        r#"{"k":0,"time":"old"}"#,
        r#"{"k":1,"topic":"kb-other"}"#,
        r#"{"k":2}"#,
        r#"{"k":3,"topic":"kb-other","tag":"x"}"#,
        r#"{"k":4}"#,
    ];
    send_json(&spate, "kb.app", t0, &recs, "kb1");
    send_json(&spate, "single.app", t0, &[r#"{"msg":"hello","other":1}"#], "kb2");
    let default = broker.read("kb-default", 1, 3);
    let other = broker.read("kb-other", 1, 2);
    let single = broker.read("kb-single", 1, 1);
    let (st, _, err) = spate.stop();
    assert!(st.success(), "{err}");
    let values = |ms: &[serde_json::Value]| -> Vec<String> {
        let mut v: Vec<String> = ms.iter().map(|m| m["value"].as_str().unwrap_or_default().to_string()).collect();
        v.sort();
        v
    };
    // Raw values: the key order is part of it (an existing key keeps its place).
    assert_eq!(
        values(&default),
        [
            r#"{"k":0,"time":1700000000,"tag":"kb.app"}"#,
            r#"{"k":2,"time":1700000002,"tag":"kb.app"}"#,
            r#"{"k":4,"time":1700000004,"tag":"kb.app"}"#,
        ],
        "{err}"
    );
    assert_eq!(
        values(&other),
        [r#"{"k":1,"time":1700000001,"tag":"kb.app"}"#, r#"{"k":3,"tag":"kb.app","time":1700000003}"#],
        "{err}"
    );
    assert_eq!(values(&single), ["hello"], "{err}");
}
