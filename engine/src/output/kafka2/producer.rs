//! out_kafka2's producer: one thread per output and shard owning a librdkafka producer.
//! The shard hands it one chunk at a time through a bounded channel and awaits the
//! answer; the thread builds the chunk's messages, enqueues them, and answers only when
//! librdkafka reported every message delivered with the configured `acks` (or failed,
//! or the delivery timeout passed). Nothing of librdkafka runs on a shard.
//!
//! A chunk that fails is retried by the buffered output; messages of it that the broker
//! already acknowledged are remembered by chunk id (for up to 256 chunks) and not sent
//! again, so a retry after a partial failure does not duplicate them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use spate_protocol::{EntriesFormat, Events};

use super::message::{MessageConf, Part, Scratch, Skip};
use crate::kafka::{ClientConf, Logger};

/// The producer settings (besides the messages).
#[derive(Debug, Clone)]
pub struct ProducerConf {
    pub client: ClientConf,
    pub required_acks: i32,
    pub ack_timeout: Duration,
    pub max_send_retries: u32,
    pub compression: Option<String>,
    pub idempotent: bool,
    pub discard_delivery_failed: bool,
    pub use_default_for_unknown_topic: bool,
    pub message: MessageConf,
    /// librdkafka properties set last, over the ones above (out_rdkafka2's
    /// `rdkafka_*` parameters and `rdkafka_options`).
    pub extra: Vec<(String, String)>,
}

impl ProducerConf {
    /// How long a chunk's messages may take to be delivered before the chunk fails
    /// (librdkafka's `message.timeout.ms`): every retry's ack timeout plus backoff.
    pub fn delivery_timeout(&self) -> Duration {
        (self.ack_timeout + Duration::from_secs(1)) * (self.max_send_retries + 1) + Duration::from_secs(5)
    }

    pub fn rdkafka(&self) -> rdkafka::ClientConfig {
        let mut c = self.client.rdkafka();
        c.set("acks", if self.required_acks < 0 { "all".to_string() } else { self.required_acks.to_string() });
        c.set("request.timeout.ms", self.ack_timeout.as_millis().to_string());
        c.set("message.send.max.retries", self.max_send_retries.to_string());
        c.set("message.timeout.ms", self.delivery_timeout().as_millis().to_string());
        c.set("compression.codec", self.compression.as_deref().unwrap_or("none"));
        c.set("enable.idempotence", if self.idempotent { "true" } else { "false" });
        c.set("partitioner", self.message.hash.rdkafka_partitioner());
        // A chunk is sent at once: a short linger lets librdkafka batch it.
        c.set("linger.ms", "5");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// One chunk to produce.
pub struct Job {
    pub chunk_id: [u8; 16],
    pub tag: Bytes,
    pub topic: String,
    pub entries: Vec<u8>,
    pub reply: flume::Sender<Result<Report, ProduceError>>,
}

/// What happened to a chunk that was delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages acknowledged in this attempt.
    pub sent: usize,
    /// Messages acknowledged in an earlier attempt (not sent again).
    pub already: usize,
    /// Events skipped (over max_send_limit_bytes, or nothing to format).
    pub skipped: usize,
    /// Messages whose delivery failed and were dropped (discard_kafka_delivery_failed).
    pub discarded: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Client(String),
    #[error("cannot read the partition count of topic {topic}: {reason}")]
    Metadata { topic: String, reason: String },
    #[error("{failed} of {total} messages to topic {topic} were not acknowledged: {first}")]
    Delivery { topic: String, failed: usize, total: usize, first: String },
    #[error("the Kafka producer thread is gone")]
    Gone,
}

/// What one pass over a chunk gave: messages acknowledged, failures (event index and
/// error), and the events that failed because the topic does not exist.
type Pass = (usize, Vec<(usize, String)>, Vec<usize>);

/// Delivery reports of the job in flight, written by librdkafka's callbacks (on the
/// producer thread, inside `poll`).
#[derive(Default)]
struct JobState {
    seq: u64,
    outstanding: usize,
    acked: Vec<u64>,
    failed: Vec<(usize, String)>,
    unknown_topic: Vec<usize>,
}

impl JobState {
    fn set(bits: &mut [u64], i: usize) {
        if let Some(w) = bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

fn get(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

struct Ctx {
    log: Logger,
    state: Mutex<JobState>,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.log(level, fac, msg)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

/// The opaque of a message: the job's sequence number and the event's index in it.
fn opaque(seq: u64, i: usize) -> usize {
    (((seq & 0xffff_ffff) << 32) | (i as u64 & 0xffff_ffff)) as usize
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, op: usize) {
        let Ok(mut st) = self.state.lock() else { return };
        let (seq, i) = ((op as u64) >> 32, (op as u64 & 0xffff_ffff) as usize);
        if seq != st.seq & 0xffff_ffff {
            // A report for an earlier chunk that timed out: that chunk is retried anyway.
            return;
        }
        st.outstanding = st.outstanding.saturating_sub(1);
        match r {
            Ok(_) => JobState::set(&mut st.acked, i),
            Err((e, _)) => {
                let code = e.rdkafka_error_code();
                if matches!(code, Some(RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition)) {
                    st.unknown_topic.push(i);
                }
                st.failed.push((i, e.to_string()));
            }
        }
    }
}

/// The shard's handle on its producer thread.
pub struct Producer {
    tx: std::cell::RefCell<Option<flume::Sender<Job>>>,
}

impl Producer {
    /// Starts the thread (which creates the librdkafka producer).
    pub fn start(id: &str, shard: usize, conf: Arc<ProducerConf>) -> std::io::Result<Producer> {
        let (tx, rx) = flume::bounded::<Job>(1);
        let id = id.to_string();
        std::thread::Builder::new().name(format!("kafka2-{shard}")).spawn(move || run(&id, &conf, &rx))?;
        Ok(Producer { tx: std::cell::RefCell::new(Some(tx)) })
    }

    /// Produces one chunk; resolves once every message was acknowledged (or failed).
    pub async fn produce(
        &self,
        chunk_id: [u8; 16],
        tag: Bytes,
        topic: String,
        entries: Vec<u8>,
    ) -> Result<Report, ProduceError> {
        let Some(tx) = self.tx.borrow().clone() else { return Err(ProduceError::Gone) };
        let (reply, answer) = flume::bounded(1);
        tx.send_async(Job { chunk_id, tag, topic, entries, reply }).await.map_err(|_| ProduceError::Gone)?;
        answer.recv_async().await.map_err(|_| ProduceError::Gone)?
    }

    /// Lets the thread finish (it flushes what is in flight and exits).
    pub fn stop(&self) {
        self.tx.borrow_mut().take();
    }
}

/// Chunks whose messages were partly acknowledged, by chunk id (oldest first).
struct Acked {
    map: HashMap<[u8; 16], Vec<u64>>,
    order: VecDeque<[u8; 16]>,
}

const ACKED_CHUNKS: usize = 256;

impl Acked {
    fn remember(&mut self, id: [u8; 16], bits: Vec<u64>) {
        if self.map.insert(id, bits).is_none() {
            self.order.push_back(id);
            while self.order.len() > ACKED_CHUNKS {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn forget(&mut self, id: &[u8; 16]) {
        if self.map.remove(id).is_some() {
            self.order.retain(|x| x != id);
        }
    }
}

fn run(id: &str, conf: &ProducerConf, rx: &flume::Receiver<Job>) {
    let ctx = Ctx { log: Logger::new(id, conf.client.client_log), state: Mutex::new(JobState::default()) };
    let producer: BaseProducer<Ctx> = match conf.rdkafka().create_with_context(ctx) {
        Ok(p) => p,
        Err(e) => {
            crate::error!("{id}: cannot create the Kafka producer: {e}");
            while let Ok(job) = rx.recv() {
                let _ = job.reply.send(Err(ProduceError::Client(e.to_string())));
            }
            return;
        }
    };
    let mut w = Worker {
        id,
        conf,
        producer: &producer,
        scratch: Scratch::default(),
        partitions: HashMap::new(),
        acked: Acked { map: HashMap::new(), order: VecDeque::new() },
        seq: 0,
    };
    while let Ok(job) = rx.recv() {
        let r = w.job(&job);
        let _ = job.reply.send(r);
    }
    // Shutdown: whatever librdkafka still holds gets its chance (a chunk whose answer
    // was not Ok stays in the buffer anyway).
    let _ = producer.flush(Duration::from_secs(5));
}

struct Worker<'a> {
    id: &'a str,
    conf: &'a ProducerConf,
    producer: &'a BaseProducer<Ctx>,
    scratch: Scratch,
    partitions: HashMap<String, (i32, Instant)>,
    acked: Acked,
    seq: u64,
}

/// How long a topic's partition count is trusted.
const PARTITIONS_TTL: Duration = Duration::from_secs(60);

/// A topic's partition count, from a metadata request (cached for a minute).
fn partition_count(
    producer: &BaseProducer<Ctx>,
    cache: &mut HashMap<String, (i32, Instant)>,
    topic: &str,
) -> Result<i32, ProduceError> {
    if let Some((n, at)) = cache.get(topic) {
        if at.elapsed() < PARTITIONS_TTL {
            return Ok(*n);
        }
    }
    let err = |reason: String| ProduceError::Metadata { topic: topic.to_string(), reason };
    let md = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| err(e.to_string()))?;
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| err("not in the metadata".into()))?;
    if let Some(e) = t.error() {
        return Err(err(format!("{:?}", RDKafkaErrorCode::from(e))));
    }
    let n = t.partitions().len() as i32;
    if n == 0 {
        return Err(err("no partitions".into()));
    }
    cache.insert(topic.to_string(), (n, Instant::now()));
    Ok(n)
}

impl Worker<'_> {
    fn job(&mut self, job: &Job) -> Result<Report, ProduceError> {
        let n = Events::new(&job.entries, EntriesFormat::Packed).count();
        let words = n.div_ceil(64);
        let before = self.acked.map.get(&job.chunk_id).cloned().unwrap_or_else(|| vec![0; words]);
        let mut report = Report { already: (0..n).filter(|&i| get(&before, i)).count(), ..Default::default() };
        let mut done = before;
        done.resize(words, 0);
        let (sent, failed, unknown) = self.pass(job, &job.topic, &mut done, None, &mut report)?;
        let (sent2, failed, topic) = match (&self.conf.message.default_topic, unknown.is_empty()) {
            (Some(d), false) if self.conf.use_default_for_unknown_topic && *d != job.topic => {
                crate::warn!("{}: '{}' topic not found. Retry with '{d}' topic", self.id, job.topic);
                let retry: Vec<usize> = unknown;
                let (s, f, _) = self.pass(job, d, &mut done, Some(&retry), &mut report)?;
                (s, f, d.clone())
            }
            _ => (0, failed, job.topic.clone()),
        };
        report.sent = sent + sent2;
        if failed.is_empty() {
            self.acked.forget(&job.chunk_id);
            return Ok(report);
        }
        if self.conf.discard_delivery_failed {
            crate::warn!(
                "{}: DeliveryFailed occurred. Discard broken event: {} messages to {topic} ({})",
                self.id,
                failed.len(),
                failed[0].1
            );
            report.discarded = failed.len();
            self.acked.forget(&job.chunk_id);
            return Ok(report);
        }
        self.acked.remember(job.chunk_id, done);
        Err(ProduceError::Delivery { topic, failed: failed.len(), total: n, first: failed[0].1.clone() })
    }

    /// Sends the chunk's events not yet in `done` (only `only` when given) to `topic`
    /// and waits for their reports. Returns (acknowledged, failed, failed for an unknown
    /// topic).
    fn pass(
        &mut self,
        job: &Job,
        topic: &str,
        done: &mut [u64],
        only: Option<&[usize]>,
        report: &mut Report,
    ) -> Result<Pass, ProduceError> {
        self.seq += 1;
        let seq = self.seq;
        let words = done.len();
        if let Ok(mut st) = self.producer.context().state.lock() {
            *st =
                JobState { seq, outstanding: 0, acked: vec![0; words], failed: Vec::new(), unknown_topic: Vec::new() };
        }
        let mut immediate: Vec<(usize, String)> = Vec::new();
        let mut sent = 0usize;
        let mut skipped_large = 0usize;
        for (i, ev) in Events::new(&job.entries, EntriesFormat::Packed).enumerate() {
            if get(done, i) || only.is_some_and(|o| !o.contains(&i)) {
                continue;
            }
            let msg = match self.conf.message.build(&job.tag, &ev, &mut self.scratch) {
                Ok(m) => m,
                Err(skip) => {
                    if let Skip::TooLarge(_) = skip {
                        skipped_large += 1;
                    }
                    report.skipped += 1;
                    // Skipped for good: a retry does not look at it again.
                    JobState::set(done, i);
                    continue;
                }
            };
            let partition = match msg.partition {
                Part::Given(p) => Some(p),
                Part::Hash(k) => {
                    let n = partition_count(self.producer, &mut self.partitions, topic)?;
                    Some(self.conf.message.hash.partition(k, n))
                }
                Part::Any => None,
            };
            let mut rec = BaseRecord::with_opaque_to(topic, opaque(seq, i)).payload(msg.payload);
            if let Some(k) = msg.key {
                rec = rec.key(k);
            }
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            if let Some(t) = msg.timestamp {
                rec = rec.timestamp(t);
            }
            if let Some(h) = msg.headers {
                rec = rec.headers(h);
            }
            if let Ok(mut st) = self.producer.context().state.lock() {
                st.outstanding += 1;
            }
            loop {
                match self.producer.send(rec) {
                    Ok(()) => {
                        sent += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        self.producer.poll(Duration::from_millis(20));
                    }
                    Err((e, _)) => {
                        if let Ok(mut st) = self.producer.context().state.lock() {
                            st.outstanding = st.outstanding.saturating_sub(1);
                        }
                        immediate.push((i, e.to_string()));
                        break;
                    }
                }
            }
            if sent.is_multiple_of(1024) {
                self.producer.poll(Duration::ZERO);
            }
        }
        if skipped_large > 0 {
            crate::warn!("{}: {skipped_large} records exceed max_send_limit_bytes; skipped those events", self.id);
        }
        let deadline = Instant::now() + self.conf.delivery_timeout() + Duration::from_secs(5);
        loop {
            let outstanding = self.producer.context().state.lock().map_or(0, |s| s.outstanding);
            if outstanding == 0 || Instant::now() > deadline {
                break;
            }
            self.producer.poll(Duration::from_millis(50));
        }
        let Ok(mut st) = self.producer.context().state.lock() else {
            return Ok((0, immediate, Vec::new()));
        };
        for (w, a) in done.iter_mut().zip(st.acked.iter()) {
            *w |= *a;
        }
        let acked = st.acked.iter().map(|w| w.count_ones() as usize).sum();
        let mut failed = std::mem::take(&mut st.failed);
        failed.extend(immediate);
        if st.outstanding > 0 {
            failed.push((
                usize::MAX,
                format!("{} messages not acknowledged within {:?}", st.outstanding, self.conf.delivery_timeout()),
            ));
        }
        // Reports after this point belong to no job.
        st.seq = u64::MAX;
        Ok((acked, failed, std::mem::take(&mut st.unknown_topic)))
    }
}
