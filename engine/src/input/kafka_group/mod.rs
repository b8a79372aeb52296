//! `in_kafka_group` (fluent-plugin-kafka's in_kafka_group.rb): consumes topics as a
//! member of a Kafka consumer group and emits the messages as events. Each shard is
//! one group member with its own consumer thread ([`consumer`]); messages become events
//! as fluent-plugin-kafka makes them ([`decode`]).
//!
//! At least once, end to end: a batch's offsets are committed only after the shard
//! emitted it and every output that matched accepted it (for a file buffer: after the
//! shard's group commit made it durable). A batch an output refuses (buffer full) is
//! emitted again every second, as fluent-plugin-kafka does on BufferOverflowError,
//! while the consumer pauses its partitions.

pub mod consumer;
pub mod decode;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spate_protocol::{EntriesFormat, EventBatch, Mode, Options};

use crate::config::{ConfigError, Element};
use crate::kafka::ClientConf;
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};
use consumer::{ConsumerConf, ConsumerHandle};
use decode::{DecodeConf, Format, TagSource, TimeSource};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "kafka_group",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`brokers`, `consumer_group`, `topics` (names or `/regex/`), `client_id`, `format` (`json`, `msgpack`, `text` with `message_key`, `ltsv`), `add_prefix`, `add_suffix`, `start_from_beginning`, `offset_commit_interval`, `offset_commit_threshold`, `max_bytes`, `max_wait_time` (`max_wait_ms`), `min_bytes`, `session_timeout`, `refresh_topic_interval`, `kafka_message_key`, `add_headers`, `time_source` (`now`, `kafka`, `record`; `use_record_time`), `record_time_key`, `time_format`, `tag_source` (`topic`, `record`), `record_tag_key`, `connect_timeout`, `socket_timeout`, `get_kafka_client_log`, SSL and SASL as out_kafka2, `@label`; one group member per shard; offsets committed only after every matched output stored the events (durably for file buffers)",
};

#[derive(Debug)]
pub struct KafkaGroupPlan {
    id: String,
    label: usize,
    conf: Arc<ConsumerConf>,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, "kafka_group");
    for (p, why) in [
        (
            "retry_emit_limit",
            "spate keeps re-emitting a refused batch until it is stored (fluent-plugin-kafka's default)",
        ),
        ("fetcher_max_queue_size", "librdkafka sizes its fetch queue by bytes; use max_bytes"),
    ] {
        if let Some(a) = e.get(p) {
            return Err(ConfigError::at(&a.pos, format!("{p} is not supported by spate: {why}")));
        }
    }
    if let Some(p) = e.elements_named("parse").next() {
        return Err(
            p.error("in_kafka_group: <parse> is not supported by spate; use format json, msgpack, text or ltsv")
        );
    }
    for p in ["retry_wait_seconds", "retry_limit", "disable_retry_limit"] {
        if e.str(p).is_some() {
            crate::warn!("{}: {p} is ignored: librdkafka reconnects to the brokers by itself", e.pos);
        }
    }
    let client = ClientConf::parse(e, "kafka", "localhost:9092")?;
    let group = e.str("consumer_group").ok_or_else(|| e.error("in_kafka_group needs consumer_group"))?.to_string();
    let topics_s = e.str("topics").ok_or_else(|| e.error("in_kafka_group needs topics"))?;
    let mut topics = Vec::new();
    for t in topics_s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match t.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            // librdkafka: a subscription starting with ^ is a regex, anchored at the start.
            Some(re) if !re.is_empty() => {
                topics.push(if re.starts_with('^') { re.to_string() } else { format!("^.*{re}") })
            }
            _ => topics.push(t.to_string()),
        }
    }
    if topics.is_empty() {
        return Err(e.error(format!("kafka_group: '{topics_s}' is a required parameter")));
    }
    let format = match e.str("format").unwrap_or("json") {
        "json" => Format::Json,
        "msgpack" => Format::Msgpack,
        "text" => Format::Text { message_key: e.str("message_key").unwrap_or("message").to_string() },
        "ltsv" => Format::Ltsv,
        o => {
            return Err(
                e.error(format!("in_kafka_group format {o:?} is not supported; supported: json, msgpack, text, ltsv"))
            )
        }
    };
    let mut time_source = match e.str("time_source").unwrap_or("now") {
        "now" => TimeSource::Now,
        "kafka" => TimeSource::Kafka,
        "record" => TimeSource::Record,
        o => return Err(e.error(format!("time_source {o:?}: expected now, kafka or record"))),
    };
    if e.bool("use_record_time")?.unwrap_or(false) {
        crate::warn!("{}: use_record_time is deprecated. Use 'time_source record' instead.", e.pos);
        time_source = TimeSource::Record;
    }
    let tag_source = match e.str("tag_source").unwrap_or("topic") {
        "topic" => TagSource::Topic,
        "record" => TagSource::Record(e.str("record_tag_key").unwrap_or("tag").to_string()),
        o => return Err(e.error(format!("tag_source {o:?}: expected topic or record"))),
    };
    let decode = DecodeConf {
        format,
        time_source,
        record_time_key: e.str("record_time_key").unwrap_or("time").to_string(),
        time_format: e.str("time_format").map(str::to_string),
        tag_source,
        add_prefix: e.str("add_prefix").map(str::to_string),
        add_suffix: e.str("add_suffix").map(str::to_string),
        kafka_message_key: e.str("kafka_message_key").map(str::to_string),
        add_headers: e.bool("add_headers")?.unwrap_or(false),
    };
    let secs = |p: &str| -> Result<Option<Duration>, ConfigError> {
        match e.int(p)? {
            None => Ok(None),
            Some(s) if s >= 0 => Ok(Some(Duration::from_secs(s as u64))),
            Some(s) => Err(e.error(format!("{p} {s}: must not be negative"))),
        }
    };
    let max_wait = match (secs("max_wait_time")?, e.int("max_wait_ms")?) {
        (Some(t), _) => Some(t),
        (None, Some(ms)) => {
            crate::warn!("{}: 'max_wait_ms' parameter is deprecated. Use second unit 'max_wait_time' instead", e.pos);
            Some(Duration::from_millis(ms.max(0) as u64))
        }
        (None, None) => None,
    };
    let nonneg = |p: &str| -> Result<Option<u64>, ConfigError> {
        match e.int(p)? {
            None => Ok(None),
            Some(v) if v >= 0 => Ok(Some(v as u64)),
            Some(v) => Err(e.error(format!("{p} {v}: must not be negative"))),
        }
    };
    let conf = ConsumerConf {
        client,
        group,
        topics,
        start_from_beginning: e.bool("start_from_beginning")?.unwrap_or(true),
        max_bytes: Some(nonneg("max_bytes")?.unwrap_or(1_048_576)),
        max_wait,
        min_bytes: nonneg("min_bytes")?,
        session_timeout: secs("session_timeout")?,
        // ruby-kafka's defaults: every 10 s, no message threshold.
        commit_interval: secs("offset_commit_interval")?.unwrap_or(Duration::from_secs(10)),
        commit_threshold: nonneg("offset_commit_threshold")?.unwrap_or(0),
        refresh_topic_interval: secs("refresh_topic_interval")?.filter(|d| !d.is_zero()),
        decode,
    };
    conf.rdkafka().create_native_config().map_err(|x| e.error(format!("kafka_group: {x}")))?;
    Ok(Box::new(KafkaGroupPlan { id, label: ctx.label_ref(e)?.unwrap_or(0), conf: Arc::new(conf) }))
}

impl InputPlan for KafkaGroupPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "kafka_group"
    }
    fn label(&self) -> usize {
        self.label
    }
    fn describe(&self) -> String {
        format!(
            "{} topics {} group {}",
            self.conf.client.brokers.join(","),
            self.conf.topics.join(","),
            self.conf.group
        )
    }
    fn build(&self, ctx: &Rc<ShardCtx>, emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(Rc::new(KafkaGroupInput {
            id: self.id.clone(),
            label: self.label,
            conf: self.conf.clone(),
            shard: ctx.clone(),
            emitter,
            handle: std::cell::RefCell::new(None),
            stopping: Cell::new(false),
            done: Rc::new(Cell::new(true)),
        }))
    }
}

pub struct KafkaGroupInput {
    id: String,
    label: usize,
    conf: Arc<ConsumerConf>,
    shard: Rc<ShardCtx>,
    emitter: Rc<dyn Emitter>,
    handle: std::cell::RefCell<Option<Rc<ConsumerHandle>>>,
    stopping: Cell<bool>,
    done: Rc<Cell<bool>>,
}

impl KafkaGroupInput {
    /// Emits `batch` until every matched output stored it (durably for file buffers).
    /// Returns false when the input stops first (the batch is then not answered, and
    /// its offsets are not committed).
    async fn store(&self, batch: &EventBatch) -> bool {
        let mut warned = false;
        loop {
            if self.stopping.get() {
                return false;
            }
            let pause = match self.emitter.emit(self.label, batch.clone()) {
                Ok(()) => match self.shard.syncer.pending() {
                    None => return true,
                    Some(epoch) => match self.shard.syncer.wait(epoch).await {
                        Ok(()) => return true,
                        Err(e) => {
                            // The file buffer cut the write back: emit it again.
                            crate::warn!("{}: events could not be stored ({e}); retrying in 1 s", self.id);
                            Duration::from_secs(1)
                        }
                    },
                },
                Err(e) if e.is_block() => Duration::from_millis(50),
                Err(e) => {
                    if !warned {
                        crate::warn!("{}: events not accepted ({e}); retrying every second until they are", self.id);
                        warned = true;
                    }
                    Duration::from_secs(1)
                }
            };
            glommio::timer::sleep(pause).await;
        }
    }

    async fn run(self: Rc<Self>, h: Rc<ConsumerHandle>) {
        while !self.stopping.get() {
            let next =
                glommio::timer::timeout(Duration::from_millis(200), async { Ok(h.batches.recv_async().await.ok()) })
                    .await;
            let b = match next {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(_) => continue,
            };
            let batch = match EventBatch::from_entries(
                b.tag,
                b.entries,
                EntriesFormat::Packed,
                Mode::PackedForward,
                Options::default(),
                spate_protocol::msgpack::MAX_DEPTH,
            ) {
                Ok(x) => x,
                Err(e) => {
                    // Cannot happen (the thread encoded it); answering skips the batch.
                    crate::error!("{}: dropping a batch the consumer built wrongly: {e}", self.id);
                    let _ = h.answers.send_async(b.seq).await;
                    continue;
                }
            };
            if !self.store(&batch).await {
                break;
            }
            if h.answers.send_async(b.seq).await.is_err() {
                break;
            }
        }
        self.done.set(true);
    }
}

impl Input for KafkaGroupInput {
    fn start(self: Rc<Self>, _first: bool) -> std::io::Result<Vec<Listening>> {
        let h = Rc::new(consumer::start(&self.id, self.shard.shard, self.conf.clone())?);
        *self.handle.borrow_mut() = Some(h.clone());
        self.done.set(false);
        glommio::spawn_local(self.clone().run(h)).detach();
        Ok(Vec::new())
    }

    fn stop(&self, grace: Duration) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.set(true);
            let end = std::time::Instant::now() + grace.min(Duration::from_secs(5));
            while !self.done.get() && std::time::Instant::now() < end {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            // The thread commits what was stored and leaves the group.
            if let Some(h) = self.handle.borrow_mut().take() {
                h.stop.store(true, Ordering::Relaxed);
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
