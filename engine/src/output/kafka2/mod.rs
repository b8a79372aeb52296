//! `out_kafka2` (fluent-plugin-kafka's out_kafka2.rb): a buffered output writing each
//! chunk's events as Kafka messages, with fluent-plugin-kafka's parameters
//! ([`message`] builds the messages, [`producer`] sends them on a librdkafka thread).
//!
//! The durability promise: `write` returns Ok only when every message of the chunk was
//! acknowledged by the broker with `required_acks` (default -1, all in-sync replicas);
//! otherwise the chunk stays in the buffer and is retried (or goes to `<secondary>`).
//! The default chunk key is `topic` (the record field), as in fluent-plugin-kafka.
//!
//! `rdkafka2` (out_rdkafka2.rb, the plugin's librdkafka-based output) is the same
//! writer with that plugin's parameters: `<format>` required, librdkafka properties
//! from `rdkafka_options` and the `rdkafka_*` parameters, SASL PLAIN from
//! `username`/`password`.

pub mod message;
pub mod producer;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::Zone;
use crate::kafka::ClientConf;
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use message::MessageConf;
use producer::{Producer, ProducerConf};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "kafka2",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`brokers`, `topic` (placeholders), `topic_key`, `default_topic`, `use_default_for_unknown_topic`, `message_key_key`, `default_message_key`, `partition_key_key`, `default_partition_key`, `partition_key`, `default_partition`, `partitioner_hash_function` (`crc32`, `murmur2`), `exclude_topic_key`, `exclude_partition_key`, `exclude_partition`, `exclude_message_key`, `exclude_fields`, `record_key`, `headers`, `headers_from_record`, `use_event_time`, `required_acks` (default -1), `ack_timeout`, `max_send_retries`, `compression_codec` (`gzip`, `snappy`, `lz4`, `zstd`), `max_send_limit_bytes`, `discard_kafka_delivery_failed`, `idempotent`, `client_id`, `connect_timeout`, `socket_timeout`, `get_kafka_client_log`, SSL (`ssl_ca_cert`, `ssl_client_cert`, `ssl_client_cert_key`, `ssl_client_cert_key_password`, `ssl_ca_certs_from_system`, `ssl_verify_hostname`), SASL (`username`, `password`, `scram_mechanism`, `sasl_over_ssl`), `<format>` (default `json`), `<inject>`; default `<buffer topic>`, `${topic}`/`${tag}` placeholders in `topic`. A chunk leaves the buffer only when the broker acknowledged every message with `required_acks`",
};

/// The registry row of out_rdkafka2 (fluent-plugin-kafka's librdkafka-based output):
/// the same writer, with that plugin's parameters.
pub const PLUGIN_RDKAFKA2: Registration = Registration {
    name: "rdkafka2",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_rdkafka2),
    params: "fluent-plugin-kafka's out_rdkafka2: as `out_kafka2` (the same writer and delivery promise), with `<format>` required (with `@type`), `rdkafka_options` (any librdkafka property, set last), `rdkafka_buffering_max_ms`, `rdkafka_buffering_max_messages`, `rdkafka_message_max_bytes`, `rdkafka_message_max_num`, `service_name`; `username`/`password` are SASL PLAIN (`security.protocol` from the SSL settings); `ack_timeout` defaults to librdkafka's 30 s. `rdkafka_delivery_handle_poll_timeout`, `max_enqueue_retries`, `enqueue_retry_backoff` have no effect. Not supported (config error): `max_enqueue_bytes_per_second`, `discard_kafka_delivery_failed_regex`, `unrecoverable_error_codes`, `use_default_for_unknown_partition_error true`, `principal`/`keytab` (Kerberos)",
};

/// The registry row of fluent-plugin-kafka's out_kafka_buffered (its v0.12-API output,
/// still what fluentd-kubernetes-daemonset's kafka image configures): the same writer,
/// with that plugin's parameters.
pub const PLUGIN_KAFKA_BUFFERED: Registration = Registration {
    name: "kafka_buffered",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan_kafka_buffered),
    params: "fluent-plugin-kafka's out_kafka_buffered: as `out_kafka2` (the same writer and delivery promise) without `topic`, `<format>` and `<inject>`: `output_data_type` (`json` default, `ltsv`, `msgpack` or a formatter name, configured by the output's own parameters), `output_include_tag` and `output_include_time` (`time` before `tag`, an integer or `time_format` in local time), `ack_timeout_ms` (deprecated), `kafka_agg_max_bytes` and `kafka_agg_max_messages` (librdkafka's `batch.size` and `batch.num.messages`), v0.12 buffer parameters (`flush_interval`, `buffer_queue_limit`, `num_threads`, `buffer_type`...); chunks per tag and record topic (the topic is the record's `topic_key`, else `default_topic`, else the tag). Not supported (config error): `zookeeper` (set `brokers`), `output_data_type attr:...`, `monitoring_list`",
};

/// out_kafka_buffered's parameters spate rejects (with the reason).
const BUFFERED_UNSUPPORTED: &[(&str, &str)] = &[
    ("zookeeper", "broker discovery through ZooKeeper is not supported; list the brokers in `brokers`"),
    (
        "monitoring_list",
        "ruby-kafka's statsd/datadog monitoring does not exist in spate; see spate's metrics endpoints",
    ),
];

/// Which of fluent-plugin-kafka's outputs a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Kafka2,
    Rdkafka2,
    Buffered,
}

/// out_rdkafka2's parameters spate rejects (with the reason).
const RDKAFKA2_UNSUPPORTED: &[(&str, &str)] = &[
    ("max_enqueue_bytes_per_second", "an enqueue rate limit is not implemented; use the buffer's flush settings"),
    ("discard_kafka_delivery_failed_regex", "not implemented; discard_kafka_delivery_failed discards every failure"),
    ("unrecoverable_error_codes", "not implemented: every delivery error is retried with the buffer's retry policy"),
    ("principal", "Kerberos (GSSAPI) is not supported; use SASL PLAIN or SCRAM (rdkafka_options)"),
    ("keytab", "Kerberos (GSSAPI) is not supported; use SASL PLAIN or SCRAM (rdkafka_options)"),
];

/// fluent-plugin-kafka parameters spate rejects (with the reason).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("ignore_exceptions", "Ruby exception classes do not exist in spate; use <secondary> for chunks that keep failing"),
    ("exception_backup", "Ruby exception classes do not exist in spate; use <secondary> for chunks that keep failing"),
    ("active_support_notification_regex", "ActiveSupport notifications do not exist in spate"),
];

#[derive(Debug)]
pub struct Kafka2Plan {
    /// `kafka2`, `rdkafka2` or `kafka_buffered`.
    name: &'static str,
    conf: Arc<ProducerConf>,
    /// The zone of the buffer's time chunk key, for time formats in `topic`.
    time_zone: Option<Zone>,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan_flavour(e, ctx, setup, Flavour::Kafka2)
}

fn plan_kafka_buffered(
    e: &Element,
    ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan_flavour(e, ctx, setup, Flavour::Buffered)
}

/// out_kafka_buffered's formatting: `output_data_type`, and `output_include_time` /
/// `output_include_tag` (set on the record before formatting, time first).
fn buffered_format(e: &Element) -> Result<crate::format::FormatConf, ConfigError> {
    let ty = e.str("output_data_type").unwrap_or("json");
    if ty.starts_with("attr:") {
        return Err(e.error(format!(
            "output_data_type {ty:?}: attr: is not supported by spate; use json, ltsv, msgpack or a formatter name ({})",
            crate::format::FORMAT_TYPES.join(", ")
        )));
    }
    if !crate::format::FORMAT_TYPES.contains(&ty) {
        return Err(e.error(format!(
            "output_data_type {ty:?}: expected json, ltsv, msgpack or a formatter name ({})",
            crate::format::FORMAT_TYPES.join(", ")
        )));
    }
    // A formatter plugin gets the output's own parameters (formatter.configure(conf)).
    let (formatter, newline) = crate::format::formatter_of(e, ty)?;
    let mut inject = crate::format::Inject { time_first: true, ..Default::default() };
    if e.bool("output_include_time")?.unwrap_or(false) {
        inject.time_key = Some("time".to_string());
        // v0.12 chunks hold integer times; with time_format, Time.at(time).strftime in
        // the process's zone.
        match e.str("time_format") {
            Some(f) => {
                inject.time_type = Some(crate::format::TimeType::String);
                inject.time = Some(crate::format::TimeFormat { format: Some(f.to_string()), zone: Zone::Local });
            }
            None => inject.time_type = Some(crate::format::TimeType::Unixtime),
        }
    } else if matches!(ty, "json" | "ltsv" | "msgpack") && e.str("time_format").is_some() {
        // (A formatter named by output_data_type may read time_format itself.)
        crate::warn!("{}: time_format has no effect without output_include_time true", e.pos);
    }
    if e.bool("output_include_tag")?.unwrap_or(false) {
        inject.tag_key = Some("tag".to_string());
    }
    Ok(crate::format::FormatConf { formatter, newline, inject })
}

/// out_kafka_buffered's own parameters: librdkafka properties.
fn buffered_properties(e: &Element) -> Result<Vec<(String, String)>, ConfigError> {
    let mut props = Vec::new();
    // ruby-kafka delivered a chunk's messages in batches of these; librdkafka batches
    // by the same measures.
    if let Some(b) = e.size("kafka_agg_max_bytes")? {
        props.push(("batch.size".to_string(), b.max(1).to_string()));
    }
    if let Some(n) = e.int("kafka_agg_max_messages")? {
        props.push(("batch.num.messages".to_string(), n.max(1).to_string()));
    }
    Ok(props)
}

fn plan_rdkafka2(
    e: &Element,
    ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    plan_flavour(e, ctx, setup, Flavour::Rdkafka2)
}

/// out_rdkafka2's own parameters: the librdkafka properties they set, in the plugin's
/// order (`rdkafka_options` last).
fn rdkafka2_properties(e: &Element) -> Result<Vec<(String, String)>, ConfigError> {
    for (p, why) in RDKAFKA2_UNSUPPORTED {
        if let Some(a) = e.get(p) {
            return Err(ConfigError::at(&a.pos, format!("{p}: {why}")));
        }
    }
    if e.bool("use_default_for_unknown_partition_error")?.unwrap_or(false) {
        return Err(
            e.error("use_default_for_unknown_partition_error: not implemented (unknown partitions are retried)")
        );
    }
    // The plugin: "<format> section is required." / "format/@type is required."
    let f = e.single("format")?.ok_or_else(|| e.error("<format> section is required."))?;
    if f.plugin_type().is_none() {
        return Err(f.error("format/@type is required."));
    }
    for p in ["rdkafka_delivery_handle_poll_timeout", "max_enqueue_retries", "enqueue_retry_backoff"] {
        if let Some(a) = e.get(p) {
            crate::warn!(
                "{}: {p} {} has no effect: spate hands librdkafka a whole chunk and waits for its delivery reports (no enqueue loop to pace)",
                a.pos,
                a.value
            );
        }
    }
    let mut props = Vec::new();
    for (p, prop) in [
        ("rdkafka_buffering_max_ms", "queue.buffering.max.ms"),
        ("rdkafka_buffering_max_messages", "queue.buffering.max.messages"),
        ("rdkafka_message_max_bytes", "message.max.bytes"),
        ("rdkafka_message_max_num", "batch.num.messages"),
    ] {
        if let Some(v) = e.int(p)? {
            props.push((prop.to_string(), v.to_string()));
        }
    }
    if let Some(s) = e.str("service_name") {
        props.push(("sasl.kerberos.service.name".to_string(), s.to_string()));
    }
    props.extend(e.hash("rdkafka_options")?.unwrap_or_default());
    Ok(props)
}

fn plan_flavour(
    e: &Element,
    ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
    flavour: Flavour,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let rdkafka2 = flavour == Flavour::Rdkafka2;
    let buffered = flavour == Flavour::Buffered;
    let unsupported = UNSUPPORTED.iter().chain(if buffered { BUFFERED_UNSUPPORTED } else { &[] });
    for (p, why) in unsupported {
        if let Some(a) = e.get(p) {
            // monitoring_list's default is [], which asks for nothing.
            if *p == "monitoring_list" && matches!(e.array(p)?.as_deref(), Some([])) {
                continue;
            }
            return Err(ConfigError::at(&a.pos, format!("{p}: {why}")));
        }
    }
    let name = match flavour {
        Flavour::Kafka2 => "kafka2",
        Flavour::Rdkafka2 => "rdkafka2",
        Flavour::Buffered => "kafka_buffered",
    };
    let extra = match flavour {
        Flavour::Kafka2 => Vec::new(),
        Flavour::Rdkafka2 => rdkafka2_properties(e)?,
        Flavour::Buffered => buffered_properties(e)?,
    };
    let client = ClientConf::parse_with(e, if rdkafka2 { "rdkafka" } else { "fluentd" }, "localhost:9092", rdkafka2)?;
    let message = if buffered {
        if let Some(a) = e.get("topic") {
            return Err(ConfigError::at(
                &a.pos,
                "topic: kafka_buffered has no `topic` parameter (use default_topic, or kafka2's topic)",
            ));
        }
        crate::warn!(
            "{}: kafka_buffered: Support of fluentd v0.12 has ended. Use kafka2 instead. kafka_buffered will be an alias of kafka2",
            e.pos
        );
        let _ = e.str("zookeeper_path");
        MessageConf::parse_with(e, buffered_format(e)?)?
    } else {
        MessageConf::parse(e, &ctx.hostname)?
    };
    let required_acks = e.int("required_acks")?.unwrap_or(-1);
    if !(-1..=1).contains(&required_acks) {
        return Err(e.error(format!("required_acks {required_acks}: expected -1 (all in-sync replicas), 0 or 1")));
    }
    let idempotent = e.bool("idempotent")?.unwrap_or(false);
    if idempotent && required_acks != -1 {
        return Err(e.error("idempotent true needs required_acks -1"));
    }
    let compression = match e.str("compression_codec") {
        None => None,
        Some(c @ ("gzip" | "snappy" | "lz4" | "zstd")) => Some(c.to_string()),
        Some(o) => return Err(e.error(format!("compression_codec {o:?}: expected gzip, snappy, lz4 or zstd"))),
    };
    let max_send_retries = e.int("max_send_retries")?.unwrap_or(2);
    if !(0..=1_000_000).contains(&max_send_retries) {
        return Err(e.error("max_send_retries must be within 0..1000000"));
    }
    // ruby-kafka's default ack timeout (out_rdkafka2 leaves librdkafka's 30 s).
    let default_ack = Duration::from_secs(if rdkafka2 { 30 } else { 5 });
    let mut ack_timeout = e.time("ack_timeout")?.unwrap_or(default_ack).max(Duration::from_millis(1));
    if buffered {
        if let Some(ms) = e.int("ack_timeout_ms")? {
            crate::warn!("{}: 'ack_timeout_ms' parameter is deprecated. Use second unit 'ack_timeout' instead", e.pos);
            // out_kafka_buffered: `ack_timeout_ms.to_i / 1000` whole seconds.
            ack_timeout = Duration::from_secs((ms.max(0) / 1000) as u64).max(Duration::from_millis(1));
        }
    }
    let use_default_for_unknown_topic = e.bool("use_default_for_unknown_topic")?.unwrap_or(false);
    if use_default_for_unknown_topic && message.default_topic.is_none() {
        return Err(e.error("default_topic must be set when use_default_for_unknown_topic is true"));
    }
    // librdkafka resolves every address of a broker host name by itself.
    let _ = e.bool("resolve_seed_brokers")?;
    if e.bool("share_producer")?.is_some() {
        crate::warn!("{}: share_producer is ignored: spate uses one producer per shard for this output", e.pos);
    }
    let time_zone = match setup.primary_buffer() {
        Some(b) => b.timekey.as_ref().map(|k| Zone::Fixed(k.utc_offset)),
        None => {
            // kafka_buffered's chunks are per tag (a v0.12 BufferedOutput), its topic
            // per record: keyed by both, each chunk has one topic.
            let buffered_keys = ["tag", message.topic_key.as_str()];
            let keys: &[&str] = if buffered { &buffered_keys } else { &["topic"] };
            let defaults = BufferDefaults { keys, ..Default::default() };
            setup.buffer(e, &defaults)?.and_then(|b| b.timekey).map(|k| Zone::Fixed(k.utc_offset))
        }
    };
    let conf = ProducerConf {
        client,
        required_acks: required_acks as i32,
        ack_timeout,
        max_send_retries: max_send_retries as u32,
        compression,
        idempotent,
        discard_delivery_failed: e.bool("discard_kafka_delivery_failed")?.unwrap_or(false),
        use_default_for_unknown_topic,
        message,
        extra,
    };
    // librdkafka checks each property: a bad value fails here, not at start.
    conf.rdkafka().create_native_config().map_err(|x| e.error(format!("{name}: {x}")))?;
    Ok(Box::new(Kafka2Plan { name, conf: Arc::new(conf), time_zone }))
}

impl WriterPlan for Kafka2Plan {
    fn type_name(&self) -> &'static str {
        self.name
    }

    fn describe(&self) -> String {
        let topic = match (&self.conf.message.topic, &self.conf.message.default_topic) {
            (Some(t), _) => format!("topic {t}"),
            (None, Some(d)) => format!("topic from '{}' or {d}", self.conf.message.topic_key),
            (None, None) => format!("topic from '{}' or the tag", self.conf.message.topic_key),
        };
        format!("{} {topic} acks {}", self.conf.client.brokers.join(","), self.conf.required_acks)
    }

    fn build(&self, id: &str, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        let producer = Producer::start(id, ctx.shard, self.conf.clone())
            .map_err(|source| BuildError::Io { plugin: id.to_string(), source })?;
        Ok(Rc::new(Kafka2Writer {
            name: self.name,
            id: id.to_string(),
            conf: self.conf.clone(),
            time_zone: self.time_zone,
            producer,
        }))
    }
}

pub struct Kafka2Writer {
    name: &'static str,
    id: String,
    conf: Arc<ProducerConf>,
    time_zone: Option<Zone>,
    producer: Producer,
}

impl Writer for Kafka2Writer {
    fn type_name(&self) -> &'static str {
        self.name
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            let tag = String::from_utf8_lossy(&chunk.tag);
            let topic = self.conf.message.topic(&tag, chunk.timekey, self.time_zone, &chunk.id, vars);
            let n = chunk.data.len();
            match self.producer.produce(chunk.id, chunk.tag.clone(), topic.clone(), chunk.data.clone()).await {
                Ok(r) => {
                    crate::debug!(
                        "{}: {} messages to {topic} acknowledged ({} in an earlier attempt, {} skipped)",
                        self.id,
                        r.sent,
                        r.already,
                        r.skipped
                    );
                    Ok(n)
                }
                Err(e) => Err(WriteError::Retry(e.to_string())),
            }
        })
    }

    fn stop(&self) {
        self.producer.stop();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
