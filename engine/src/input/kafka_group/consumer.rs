//! in_kafka_group's consumer thread: one librdkafka group member per shard. It polls
//! messages, decodes them into batches (one batch per partition and tag, so a batch's
//! offsets are one contiguous range of one partition) and hands the batches to the
//! shard through a bounded channel; the shard answers with the batch's sequence number
//! once the events are in the buffer of every output that matched (durably, for file
//! buffers). Offsets are committed only for what the shard answered:
//!
//! - per partition, the committed offset is the first offset of the oldest batch not
//!   yet answered (or, with none, the end of the newest answered one), and it only moves
//!   forward: nothing is ever committed past an event that is not stored;
//! - commits happen every `offset_commit_interval` (ruby-kafka's default: 10 s) or after
//!   `offset_commit_threshold` messages, and before partitions are revoked in a
//!   rebalance: the thread first waits (up to 10 s) for the shard to answer the batches
//!   of those partitions, so the next owner starts where this member really stopped;
//!   batches of revoked partitions not yet handed over are dropped (the next owner reads
//!   them again);
//! - when the shard is slow (buffers full), the thread pauses its partitions and keeps
//!   polling (so group membership and rebalances go on) until the channel has room.
//!
//! At least once end to end: a member killed with uncommitted offsets makes the next
//! owner read those messages again (duplicates, never losses).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use spate_protocol::EventTime;

use super::decode::{DecodeConf, Message, Scratch};
use crate::kafka::{ClientConf, Logger};

/// The consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConf {
    pub client: ClientConf,
    pub group: String,
    /// Topic names; `^regex` for fluent-plugin-kafka's `/regex/` topics.
    pub topics: Vec<String>,
    pub start_from_beginning: bool,
    pub max_bytes: Option<u64>,
    pub max_wait: Option<Duration>,
    pub min_bytes: Option<u64>,
    pub session_timeout: Option<Duration>,
    pub commit_interval: Duration,
    pub commit_threshold: u64,
    pub refresh_topic_interval: Option<Duration>,
    pub decode: DecodeConf,
}

impl ConsumerConf {
    pub fn rdkafka(&self) -> rdkafka::ClientConfig {
        let mut c = self.client.rdkafka();
        c.set("group.id", &self.group);
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("auto.offset.reset", if self.start_from_beginning { "earliest" } else { "latest" });
        if let Some(b) = self.max_bytes {
            c.set("max.partition.fetch.bytes", b.to_string());
        }
        if let Some(t) = self.max_wait {
            c.set("fetch.wait.max.ms", t.as_millis().to_string());
        }
        if let Some(b) = self.min_bytes {
            c.set("fetch.min.bytes", b.to_string());
        }
        if let Some(t) = self.session_timeout {
            c.set("session.timeout.ms", t.as_millis().to_string());
            // librdkafka wants heartbeats well inside the session timeout.
            c.set("heartbeat.interval.ms", (t.as_millis() / 3).max(100).to_string());
        }
        if let Some(t) = self.refresh_topic_interval {
            c.set("topic.metadata.refresh.interval.ms", t.as_millis().to_string());
        }
        c
    }
}

/// A batch for the shard: events of one tag from one partition.
pub struct Batch {
    pub seq: u64,
    pub tag: Bytes,
    pub entries: Bytes,
    pub count: u32,
}

/// Largest batch handed to the shard.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_EVENTS: u32 = 10_000;
/// Batches waiting in the thread before it pauses its partitions.
const OUTBOX: usize = 4;
/// How long a revocation waits for the shard to store what it was handed.
const REVOKE_WAIT: Duration = Duration::from_secs(10);

type Tp = (String, i32);

/// Offsets of a batch: partition, first offset, offset after the last.
#[derive(Debug, Clone)]
struct Range {
    tp: Tp,
    first: i64,
    next: i64,
}

struct Building {
    range: Range,
    tag: Vec<u8>,
    entries: Vec<u8>,
    count: u32,
}

/// Where the consumer is, shared with the rebalance callback (same thread).
#[derive(Default)]
struct Book {
    seq: u64,
    building: Vec<Building>,
    outbox: VecDeque<(Range, Batch)>,
    inflight: VecDeque<(u64, Range)>,
    /// Per partition: the end of the newest answered batch, and the last commit.
    watermark: HashMap<Tp, i64>,
    committed: HashMap<Tp, i64>,
    since_commit: u64,
    last_commit: Option<Instant>,
}

impl Book {
    /// Moves every batch being built to the outbox.
    fn seal(&mut self) {
        for b in self.building.drain(..) {
            self.seq += 1;
            let batch =
                Batch { seq: self.seq, tag: Bytes::from(b.tag), entries: Bytes::from(b.entries), count: b.count };
            self.outbox.push_back((b.range, batch));
        }
    }

    /// The shard stored batch `seq` (answers come in order, but any order works).
    fn answered(&mut self, seq: u64) {
        if let Some(i) = self.inflight.iter().position(|(s, _)| *s == seq) {
            if let Some((_, r)) = self.inflight.remove(i) {
                let w = self.watermark.entry(r.tp).or_insert(-1);
                *w = (*w).max(r.next);
            }
        }
    }

    /// Offsets that may be committed now (only those that moved), restricted to `only`.
    fn committable(&self, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, w) in &self.watermark {
            if only.is_some_and(|o| !o.contains(tp)) {
                continue;
            }
            let low = self
                .building
                .iter()
                .map(|b| &b.range)
                .chain(self.outbox.iter().map(|(r, _)| r))
                .chain(self.inflight.iter().map(|(_, r)| r))
                .filter(|r| r.tp == *tp)
                .map(|r| r.first)
                .min();
            let at = low.unwrap_or(*w);
            if at > *self.committed.get(tp).unwrap_or(&-1) {
                out.push((tp.clone(), at));
            }
        }
        out
    }

    /// Forgets everything of `tps` (revoked): batches not handed over are dropped
    /// (the next owner reads them again); unanswered ones are no longer tracked.
    fn forget(&mut self, tps: &[Tp]) -> usize {
        let before = self.inflight.len();
        self.building.retain(|b| !tps.contains(&b.range.tp));
        self.outbox.retain(|(r, _)| !tps.contains(&r.tp));
        self.inflight.retain(|(_, r)| !tps.contains(&r.tp));
        for tp in tps {
            self.watermark.remove(tp);
            self.committed.remove(tp);
        }
        before - self.inflight.len()
    }
}

struct Ctx {
    log: Logger,
    book: Mutex<Book>,
    answers: flume::Receiver<u64>,
    stop: Arc<AtomicBool>,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.log(level, fac, msg)
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl Ctx {
    fn drain_answers(&self) {
        let Ok(mut b) = self.book.lock() else { return };
        while let Ok(seq) = self.answers.try_recv() {
            b.answered(seq);
        }
    }

    /// Commits what may be committed (of `only`, when given).
    fn commit(&self, c: &BaseConsumer<Ctx>, only: Option<&[Tp]>, mode: CommitMode) {
        let Ok(mut b) = self.book.lock() else { return };
        let offsets = b.committable(only);
        b.since_commit = 0;
        b.last_commit = Some(Instant::now());
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &offsets {
            if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        drop(b);
        match c.commit(&tpl, mode) {
            Ok(()) => {
                if let Ok(mut b) = self.book.lock() {
                    for (tp, o) in offsets {
                        b.committed.insert(tp, o);
                    }
                }
            }
            Err(e) => crate::warn!("{}: offset commit failed (it is retried): {e}", self.log.id),
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = r else { return };
        let tps: Vec<Tp> = tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        if !self.stop.load(Ordering::Relaxed) {
            // Let the shard store what it was handed for these partitions, then commit it.
            let end = Instant::now() + REVOKE_WAIT;
            loop {
                self.drain_answers();
                let waiting =
                    self.book.lock().map_or(0, |b| b.inflight.iter().filter(|(_, r)| tps.contains(&r.tp)).count());
                if waiting == 0 || Instant::now() > end {
                    break;
                }
                if let Ok(seq) = self.answers.recv_timeout(Duration::from_millis(50)) {
                    if let Ok(mut b) = self.book.lock() {
                        b.answered(seq);
                    }
                }
            }
        }
        self.commit(c, Some(&tps), CommitMode::Sync);
        let lost = self.book.lock().map_or(0, |mut b| b.forget(&tps));
        crate::info!(
            "{}: partitions revoked: {}{}",
            self.log.id,
            tps.iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>().join(", "),
            if lost > 0 {
                format!(" ({lost} batches still being stored will be read again by the next owner)")
            } else {
                String::new()
            }
        );
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => crate::info!(
                "{}: partitions assigned: {}",
                self.log.id,
                tpl.elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Rebalance::Error(e) => crate::warn!("{}: rebalance error: {e}", self.log.id),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            crate::warn!("{}: offset commit failed (it is retried): {e}", self.log.id);
        }
    }
}

/// The shard's side of the consumer thread.
pub struct ConsumerHandle {
    pub batches: flume::Receiver<Batch>,
    pub answers: flume::Sender<u64>,
    pub stop: Arc<AtomicBool>,
}

/// Starts the consumer thread for one shard.
pub fn start(id: &str, shard: usize, conf: Arc<ConsumerConf>) -> std::io::Result<ConsumerHandle> {
    let (btx, brx) = flume::bounded::<Batch>(2);
    // Answers are bounded by the batches in flight (channel + outbox + one being stored).
    let (atx, arx) = flume::bounded::<u64>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let id = id.to_string();
    std::thread::Builder::new().name(format!("kafka-group-{shard}")).spawn(move || run(&id, &conf, btx, arx, st))?;
    Ok(ConsumerHandle { batches: brx, answers: atx, stop })
}

fn run(id: &str, conf: &ConsumerConf, out: flume::Sender<Batch>, answers: flume::Receiver<u64>, stop: Arc<AtomicBool>) {
    let ctx = Ctx {
        log: Logger::new(id, conf.client.client_log),
        book: Mutex::new(Book::default()),
        answers,
        stop: stop.clone(),
    };
    let consumer: BaseConsumer<Ctx> = match conf.rdkafka().create_with_context(ctx) {
        Ok(c) => c,
        Err(e) => {
            crate::error!("{id}: cannot create the Kafka consumer: {e}");
            return;
        }
    };
    let topics: Vec<&str> = conf.topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        crate::error!("{id}: cannot subscribe to {}: {e}", conf.topics.join(","));
        return;
    }
    crate::info!("{id}: consuming {} as group {}", conf.topics.join(","), conf.group);
    let ctx = consumer.context().clone();
    let mut scratch = Scratch::default();
    let mut entry = Vec::new();
    let mut paused = false;
    let mut got = false;
    let mut skipped = 0u64;
    let mut last_skip_log = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        ctx.drain_answers();
        // Hand over what is ready.
        let backlog = match ctx.book.lock() {
            Ok(mut b) => {
                while let Some((r, batch)) = b.outbox.pop_front() {
                    let seq = batch.seq;
                    match out.try_send(batch) {
                        Ok(()) => b.inflight.push_back((seq, r)),
                        Err(flume::TrySendError::Full(batch)) => {
                            b.outbox.push_front((r, batch));
                            break;
                        }
                        Err(flume::TrySendError::Disconnected(_)) => return,
                    }
                }
                b.outbox.len()
            }
            Err(_) => return,
        };
        let due = ctx.book.lock().is_ok_and(|b| {
            b.last_commit.is_none_or(|t| t.elapsed() >= conf.commit_interval)
                || (conf.commit_threshold > 0 && b.since_commit >= conf.commit_threshold)
        });
        if due {
            ctx.commit(&consumer, None, CommitMode::Async);
        }
        // Back-pressure: stop fetching while the shard cannot keep up; keep polling so
        // the group (heartbeats, rebalances) goes on.
        // (Partitions assigned meanwhile are not paused: pause again if they deliver.)
        if backlog >= OUTBOX && (!paused || got) {
            if let Ok(a) = consumer.assignment() {
                paused = consumer.pause(&a).is_ok();
            }
        } else if backlog == 0 && paused {
            if let Ok(a) = consumer.assignment() {
                let _ = consumer.resume(&a);
            }
            paused = false;
        }
        got = false;
        let building = ctx.book.lock().is_ok_and(|b| !b.building.is_empty());
        let wait = if building { Duration::ZERO } else { Duration::from_millis(100) };
        match consumer.poll(wait) {
            None => {
                // Nothing more right now: hand over what was built.
                if let Ok(mut b) = ctx.book.lock() {
                    b.seal();
                }
                if backlog > 0 {
                    // Wait for the shard a little (answers or room in the channel).
                    if let Ok(seq) = ctx.answers.recv_timeout(Duration::from_millis(20)) {
                        if let Ok(mut b) = ctx.book.lock() {
                            b.answered(seq);
                        }
                    }
                }
            }
            Some(Err(e)) => crate::debug!("{id}: consume: {e}"),
            Some(Ok(m)) => {
                got = true;
                if let Err(e) = add(&ctx, conf, &m, &mut scratch, &mut entry) {
                    skipped += 1;
                    if last_skip_log.elapsed() > Duration::from_secs(5) || skipped == 1 {
                        crate::warn!(
                            "{id}: parser error in {}/{} at offset {}: {e} ({skipped} messages skipped so far)",
                            m.topic(),
                            m.partition(),
                            m.offset()
                        );
                        last_skip_log = Instant::now();
                    }
                }
            }
        }
    }
    // Stopping: commit what the shard stored, then leave the group (dropping the
    // consumer closes it; the revocation then commits without waiting).
    ctx.drain_answers();
    ctx.commit(&consumer, None, CommitMode::Sync);
    drop(consumer);
    crate::debug!("{id}: consumer closed");
}

/// Decodes one message into the batch of its partition and tag.
fn add(
    ctx: &Ctx,
    conf: &ConsumerConf,
    m: &BorrowedMessage<'_>,
    s: &mut Scratch,
    entry: &mut Vec<u8>,
) -> Result<(), super::decode::DecodeError> {
    let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
    if conf.decode.add_headers {
        if let Some(h) = m.headers() {
            for x in h.iter() {
                headers.push((x.key, x.value));
            }
        }
    }
    let msg = Message {
        topic: m.topic(),
        value: m.payload().unwrap_or_default(),
        key: m.key(),
        timestamp_ms: m.timestamp().to_millis(),
        headers: &headers,
    };
    let Ok(mut b) = ctx.book.lock() else { return Ok(()) };
    b.since_commit += 1;
    let tp = (m.topic().to_string(), m.partition());
    // Decode into a scratch entry first: the tag decides the batch.
    entry.clear();
    conf.decode.decode(&msg, EventTime::now(), s, entry)?;
    let i = match b.building.iter().position(|x| x.range.tp == tp && x.tag == s.tag) {
        Some(i) => i,
        None => {
            b.building.push(Building {
                range: Range { tp, first: m.offset(), next: m.offset() + 1 },
                tag: s.tag.clone(),
                entries: Vec::with_capacity(64 << 10),
                count: 0,
            });
            b.building.len() - 1
        }
    };
    let full = {
        let x = &mut b.building[i];
        x.entries.extend_from_slice(entry);
        x.count += 1;
        x.range.next = m.offset() + 1;
        x.entries.len() >= BATCH_BYTES || x.count >= BATCH_EVENTS
    };
    if full {
        let x = b.building.remove(i);
        b.seq += 1;
        let seq = b.seq;
        b.outbox.push_back((
            x.range,
            Batch { seq, tag: Bytes::from(x.tag), entries: Bytes::from(x.entries), count: x.count },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: i32, first: i64, next: i64) -> Range {
        Range { tp: ("t".into(), p), first, next }
    }

    fn batch(seq: u64) -> Batch {
        Batch { seq, tag: Bytes::new(), entries: Bytes::new(), count: 0 }
    }

    #[test]
    fn commits_stop_at_the_oldest_unanswered_batch() {
        let mut b = Book::default();
        b.inflight.push_back((1, r(0, 0, 10)));
        b.inflight.push_back((2, r(0, 10, 20)));
        b.inflight.push_back((3, r(1, 5, 7)));
        assert!(b.committable(None).is_empty());
        // Batch 2 answered before 1: nothing past offset 0 of partition 0 yet.
        b.answered(2);
        assert_eq!(b.committable(None), vec![(("t".into(), 0), 0)]);
        b.committed.insert(("t".into(), 0), 0);
        assert!(b.committable(Some(&[("t".into(), 0)])).is_empty());
        b.answered(1);
        assert_eq!(b.committable(Some(&[("t".into(), 0)])), vec![(("t".into(), 0), 20)]);
        // A batch still being built holds the commit back too.
        b.building.push(Building { range: r(0, 20, 25), tag: Vec::new(), entries: Vec::new(), count: 0 });
        b.answered(3);
        let mut c = b.committable(None);
        c.sort();
        assert_eq!(c, vec![(("t".into(), 0), 20), (("t".into(), 1), 7)]);
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut b = Book::default();
        b.inflight.push_back((1, r(0, 0, 10)));
        b.outbox.push_back((r(0, 10, 20), batch(2)));
        b.inflight.push_back((3, r(1, 0, 5)));
        b.answered(3);
        assert_eq!(b.forget(&[("t".into(), 0)]), 1);
        assert!(b.outbox.is_empty() && b.inflight.is_empty());
        assert_eq!(b.committable(None), vec![(("t".into(), 1), 5)]);
    }
}
