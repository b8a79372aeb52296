//! `out_kafka2` (fluent-plugin-kafka's out_kafka2.rb): a buffered output writing each
//! chunk's events as Kafka messages, with fluent-plugin-kafka's parameters
//! ([`message`] builds the messages, [`producer`] sends them on a librdkafka thread).
//!
//! The durability promise: `write` returns Ok only when every message of the chunk was
//! acknowledged by the broker with `required_acks` (default -1, all in-sync replicas);
//! otherwise the chunk stays in the buffer and is retried (or goes to `<secondary>`).
//! The default chunk key is `topic` (the record field), as in fluent-plugin-kafka.

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

/// fluent-plugin-kafka parameters spate rejects (with the reason).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("ignore_exceptions", "Ruby exception classes do not exist in spate; use <secondary> for chunks that keep failing"),
    ("exception_backup", "Ruby exception classes do not exist in spate; use <secondary> for chunks that keep failing"),
    ("active_support_notification_regex", "ActiveSupport notifications do not exist in spate"),
];

#[derive(Debug)]
pub struct Kafka2Plan {
    conf: Arc<ProducerConf>,
    /// The zone of the buffer's time chunk key, for time formats in `topic`.
    time_zone: Option<Zone>,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    for (p, why) in UNSUPPORTED {
        if let Some(a) = e.get(p) {
            return Err(ConfigError::at(&a.pos, format!("{p}: {why}")));
        }
    }
    let client = ClientConf::parse(e, "fluentd", "localhost:9092")?;
    let message = MessageConf::parse(e, &ctx.hostname)?;
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
    // ruby-kafka's default ack timeout.
    let ack_timeout = e.time("ack_timeout")?.unwrap_or(Duration::from_secs(5)).max(Duration::from_millis(1));
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
            let defaults = BufferDefaults { keys: &["topic"], ..Default::default() };
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
    };
    // librdkafka checks each property: a bad value fails here, not at start.
    conf.rdkafka().create_native_config().map_err(|x| e.error(format!("kafka2: {x}")))?;
    Ok(Box::new(Kafka2Plan { conf: Arc::new(conf), time_zone }))
}

impl WriterPlan for Kafka2Plan {
    fn type_name(&self) -> &'static str {
        "kafka2"
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
        Ok(Rc::new(Kafka2Writer { id: id.to_string(), conf: self.conf.clone(), time_zone: self.time_zone, producer }))
    }
}

pub struct Kafka2Writer {
    id: String,
    conf: Arc<ProducerConf>,
    time_zone: Option<Zone>,
    producer: Producer,
}

impl Writer for Kafka2Writer {
    fn type_name(&self) -> &'static str {
        "kafka2"
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
