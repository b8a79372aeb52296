//! A buffered output: a [`Buffer`] (memory or file) plus the flush task that hands its
//! chunks to a [`Writer`] (out_forward, out_file, secondary_file), with fluentd's
//! retry rules (`retry_type`, `retry_wait`, `retry_max_interval`, `retry_timeout`,
//! `retry_max_times`, `retry_forever`) and `<secondary>`: a chunk whose retries run out
//! (or pass `retry_secondary_threshold` of `retry_timeout`) goes to the secondary
//! writer instead of being dropped.
//!
//! A chunk leaves the buffer only when a writer returned Ok for it (for out_forward
//! with `require_ack_response`: after the server's ack), so delivery is at least once.
//!
//! On a reload, a new buffered output with the same `@id` (same buffer type) or the
//! same file-buffer path takes over the previous one's [`Buffer`] as it is: the old
//! flush task finishes the chunk it is writing (committing or re-queueing it into the
//! shared buffer) and stops; nothing is flushed, closed or re-read.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use spate_protocol::{hex, EventBatch};

use crate::buffer::sync::{Notify, Syncer};
use crate::buffer::{Buffer, BufferConf, Chunk};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    BuildError, EmitError, Emitter, LocalFuture, Output, OutputMetrics, OutputPlan, PlanCtx, ShardCtx, WriteError,
    Writer, WriterBuilder, WriterPlan, WriterSetup,
};

pub struct BufferedOutput {
    pub id: String,
    pub metrics: OutputMetrics,
    buffer: Rc<RefCell<Buffer>>,
    notify: Rc<Notify>,
    force: Cell<bool>,
    stopping: Cell<bool>,
    done: Cell<bool>,
    writer: Rc<dyn Writer>,
    secondary: Option<Rc<dyn Writer>>,
    seq: Cell<u64>,
    syncer: Rc<Syncer>,
    /// A reload gave the buffer to a new output: stop after the write in progress.
    retired: Cell<bool>,
    /// Flush everything before exiting, whatever `flush_at_shutdown` says (RPC
    /// flushBuffersAndKillWorkers).
    drain: Cell<bool>,
    /// The buffer was taken over from the previous generation: its new configuration,
    /// applied when this output starts.
    adopted_conf: RefCell<Option<BufferConf>>,
    /// `slow_flush_log_threshold`.
    slow_flush: Duration,
    /// fluentd's retry state while a chunk is being retried.
    retry: Cell<Option<crate::metrics::RetryState>>,
    /// The shard's context, for the `@ERROR` label (weak: the shard owns this output).
    errors: Option<std::rc::Weak<ShardCtx>>,
    /// Chunks written at once: `flush_thread_count` when the writer allows it, else 1.
    threads: u32,
    /// Writes in flight.
    writing: Cell<u32>,
    /// After a failed write, no chunk is taken before this (fluentd's retry wait is the
    /// output's, not the chunk's): the time, and when the write failed.
    retry_at: Cell<Option<(Instant, Instant)>>,
}

impl BufferedOutput {
    pub fn new(
        id: String,
        buffer: Buffer,
        writer: Rc<dyn Writer>,
        secondary: Option<Rc<dyn Writer>>,
        syncer: Rc<Syncer>,
    ) -> Self {
        BufferedOutput {
            id,
            metrics: OutputMetrics::default(),
            buffer: Rc::new(RefCell::new(buffer)),
            notify: Rc::new(Notify::default()),
            force: Cell::new(false),
            stopping: Cell::new(false),
            done: Cell::new(false),
            writer,
            secondary,
            seq: Cell::new(0),
            syncer,
            retired: Cell::new(false),
            drain: Cell::new(false),
            adopted_conf: RefCell::new(None),
            slow_flush: Duration::from_secs(20),
            retry: Cell::new(None),
            errors: None,
            threads: 1,
            writing: Cell::new(0),
            retry_at: Cell::new(None),
        }
    }

    /// Writes up to `n` chunks at once (`flush_thread_count`).
    pub fn with_threads(mut self, n: u32) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Routes rejected events to the shard's `@ERROR` label (when it has one).
    pub fn with_error_route(mut self, ctx: &Rc<ShardCtx>) -> Self {
        self.errors = Some(Rc::downgrade(ctx));
        self
    }

    /// Takes over `buffer` (a reload), to be reconfigured with `conf` at start.
    fn adopting(mut self, buffer: Rc<RefCell<Buffer>>, conf: BufferConf) -> Self {
        self.buffer = buffer;
        *self.adopted_conf.borrow_mut() = Some(conf);
        self
    }

    fn shares_buffer_with(&self, o: &BufferedOutput) -> bool {
        Rc::ptr_eq(&self.buffer, &o.buffer)
    }

    pub fn writer(&self) -> &dyn Writer {
        &*self.writer
    }

    pub fn type_name(&self) -> &'static str {
        self.writer.type_name()
    }

    pub fn buffer(&self) -> std::cell::Ref<'_, Buffer> {
        self.buffer.borrow()
    }

    pub fn emit(&self, batch: &EventBatch) -> Result<(), EmitError> {
        if self.stopping.get() && self.done.get() {
            return Err(EmitError::Write { id: self.id.clone(), reason: "output is shut down".into() });
        }
        let (queued_before, staged_before) = {
            let b = self.buffer.borrow();
            (b.queued_chunks(), b.staged_chunks())
        };
        self.buffer.borrow_mut().append(batch).map_err(|source| EmitError::Buffer { id: self.id.clone(), source })?;
        // Wake the flusher when a chunk is ready, or when a new chunk starts (so it
        // schedules that chunk's flush_interval instead of sleeping its idle second).
        let b = self.buffer.borrow();
        if b.queued_chunks() > queued_before || b.staged_chunks() > staged_before {
            drop(b);
            self.notify.notify();
        }
        Ok(())
    }

    pub fn has_room(&self, bytes: usize) -> bool {
        self.buffer.borrow().has_room(bytes)
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffer.borrow().total_bytes()
    }

    pub fn flush_now(&self) {
        self.force.set(true);
        self.notify.notify();
    }

    /// Registers with the shard's group commit and starts the writer's own tasks
    /// (heartbeats); the caller spawns [`BufferedOutput::run`].
    fn register(&self) {
        if let Some(conf) = self.adopted_conf.borrow_mut().take() {
            self.buffer.borrow_mut().reconfigure(conf);
        }
        if self.buffer.borrow().is_file() {
            self.buffer.borrow_mut().set_owner(&self.id);
            self.syncer.register(self.buffer.clone(), &self.notify);
        }
        self.writer.clone().start();
    }

    pub async fn shutdown(&self, deadline: Instant) {
        self.stopping.set(true);
        self.notify.notify();
        while !self.done.get() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        self.writer.stop();
        let file = self.buffer.borrow().is_file();
        if file {
            // Whatever was appended but not written yet goes to disk for the next run.
            if let Err(e) = self.syncer.sync_now().await {
                crate::error!("{}: final write of the file buffer failed: {e}", self.id);
            }
        }
        let b = self.buffer.borrow();
        if !b.is_empty() {
            if file {
                crate::info!(
                    "{}: {} bytes stay in the file buffer ({} queued chunks); they are sent after the next start",
                    self.id,
                    b.total_bytes(),
                    b.queued_chunks() + b.staged_chunks()
                );
            } else {
                crate::warn!(
                    "{}: shutdown deadline reached with {} bytes still buffered (in {} queued chunks); they are lost with this memory buffer",
                    self.id,
                    b.total_bytes(),
                    b.queued_chunks()
                );
            }
        }
    }

    fn jitter(&self) -> f64 {
        let s = self.seq.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seq.set(s);
        ((s >> 11) % 1000) as f64 / 1000.0
    }

    /// The flush loop: runs until shutdown has flushed what it should. It takes the
    /// queued chunks in order and writes up to `threads` of them at once (one: in the
    /// loop itself; more: each in its own task).
    async fn run(self: Rc<Self>) {
        loop {
            if self.retired.get() {
                break;
            }
            let now = Instant::now();
            let stopping = self.stopping.get();
            let flush_at_shutdown = self.buffer.borrow().conf().flush_at_shutdown || self.drain.get();
            if stopping && !flush_at_shutdown {
                break;
            }
            if let Some((at, failed)) = self.retry_at.get() {
                // A notification is no reason to retry early; a shutdown shortens the
                // wait to 200 ms after the failure (it keeps trying until its deadline).
                let at = if stopping { at.min(failed + Duration::from_millis(200)) } else { at };
                if now < at {
                    self.notify.wait(at - now).await;
                    continue;
                }
                self.retry_at.set(None);
            }
            if self.writing.get() >= self.threads {
                // A finishing write notifies.
                self.notify.wait(Duration::from_secs(1)).await;
                continue;
            }
            let force = self.force.replace(false) || (stopping && flush_at_shutdown);
            self.buffer.borrow_mut().enqueue_due(now, force);
            let next = self.buffer.borrow_mut().take();
            let Some(mut chunk) = next else {
                let (waiting, empty) = {
                    let b = self.buffer.borrow();
                    (b.waiting_for_sync(), b.is_empty())
                };
                if stopping && self.writing.get() == 0 && (empty || !waiting) {
                    break;
                }
                let wait =
                    self.buffer.borrow().next_due(now).unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
                self.notify.wait(wait.max(Duration::from_millis(1))).await;
                continue;
            };
            if chunk.on_disk() {
                if let Err(e) = crate::buffer::chunk_file::load(&mut chunk).await {
                    crate::error!("{}: cannot read chunk {}: {e}; it is set aside", self.id, hex(&chunk.id));
                    OutputMetrics::add(&self.metrics.dropped_records, chunk.count as u64);
                    self.buffer.borrow_mut().discard(chunk);
                    continue;
                }
            }
            if self.retired.get() {
                // The buffer belongs to the new output now: give the chunk back to it.
                self.buffer.borrow_mut().requeue(chunk);
                break;
            }
            if self.threads == 1 {
                self.write(chunk, stopping).await;
            } else {
                self.writing.set(self.writing.get() + 1);
                let me = self.clone();
                glommio::spawn_local(async move {
                    me.write(chunk, stopping).await;
                    me.writing.set(me.writing.get() - 1);
                    me.notify.notify();
                })
                .detach();
            }
        }
        // Writes in flight finish (commit or requeue) before the writer stops.
        while self.writing.get() > 0 {
            self.notify.wait(Duration::from_millis(100)).await;
        }
        self.done.set(true);
        if self.retired.get() {
            self.writer.stop();
        }
    }

    /// Writes one chunk, then commits it, or requeues it for a retry.
    async fn write(&self, chunk: Chunk, stopping: bool) {
        let vars = self.vars_of(&chunk);
        let started = Instant::now();
        let result = self.writer.write(&chunk, &vars).await;
        self.timed(started);
        match result {
            Ok(bytes) => {
                OutputMetrics::add(&self.metrics.write_count, 1);
                OutputMetrics::add(&self.metrics.write_records, chunk.count as u64);
                OutputMetrics::add(&self.metrics.write_bytes, bytes as u64);
                self.retry.set(None);
                self.buffer.borrow_mut().commit(chunk);
            }
            Err(e @ WriteError::Rollback(_)) => {
                // fluentd's rollback without a retry count (ack timeout): resend now,
                // to another server if this one was detached.
                OutputMetrics::add(&self.metrics.rollback_count, 1);
                crate::warn!("{}: {e}; resending chunk {}", self.id, hex(&chunk.id));
                self.buffer.borrow_mut().requeue(chunk);
                self.wait_before_retry(Duration::from_millis(10));
            }
            Err(WriteError::Partial { retry, retry_count, rejected, rejected_count, reason }) => {
                self.partial(chunk, (retry, retry_count), (rejected, rejected_count), reason, stopping, &vars).await
            }
            Err(e) => self.failed(chunk, e, stopping, &vars).await,
        }
    }

    /// No chunk is taken for `delay` from now (the flush loop waits).
    fn wait_before_retry(&self, delay: Duration) {
        let now = Instant::now();
        let at = now + delay;
        // Several writes may fail at once: the latest retry time holds.
        let at = self.retry_at.get().map_or(at, |(a, _)| a.max(at));
        self.retry_at.set(Some((at, now)));
    }

    /// fluentd's `check_slow_flush`: flush time in milliseconds, and a warning plus a
    /// count when a write took longer than `slow_flush_log_threshold`.
    fn timed(&self, started: Instant) {
        let took = started.elapsed();
        self.metrics.flush_latency.observe_duration(took);
        OutputMetrics::add(&self.metrics.flush_time_count, took.as_millis() as u64);
        if took > self.slow_flush {
            OutputMetrics::add(&self.metrics.slow_flush_count, 1);
            crate::warn!(
                "{}: buffer flush took longer time than slow_flush_log_threshold: elapsed_time={:.3} slow_flush_log_threshold={:.1} plugin_id=\"{}\"",
                self.id,
                took.as_secs_f64(),
                self.slow_flush.as_secs_f64(),
                self.id
            );
        }
    }

    /// A writer confirmed part of a chunk: the rejected entries go to the error path,
    /// the chunk keeps the entries to retry (or leaves the buffer when none are left).
    async fn partial(
        &self,
        mut chunk: Chunk,
        (mut retry, mut retry_count): (Vec<u8>, u32),
        (rejected, rejected_count): (Vec<u8>, u32),
        reason: String,
        stopping: bool,
        vars: &[(String, String)],
    ) {
        let before = chunk.count;
        if rejected_count > 0 && !self.error_path(&chunk, &rejected, rejected_count, vars).await {
            // Nowhere to put them now: keep them, they are tried again with the rest.
            retry.extend_from_slice(&rejected);
            retry_count += rejected_count;
        }
        let done = before.saturating_sub(retry_count);
        OutputMetrics::add(&self.metrics.write_records, done as u64);
        if retry_count == 0 {
            OutputMetrics::add(&self.metrics.write_count, 1);
            self.buffer.borrow_mut().commit(chunk);
            return;
        }
        chunk.data = retry;
        chunk.count = retry_count;
        chunk.partial = true;
        self.failed(chunk, WriteError::Retry(reason), stopping, vars).await;
    }

    /// Sends events that can never be written to the error path: the `@ERROR` label
    /// when the configuration has one, else `<secondary>`, else they are dropped (the
    /// writer logged why). Returns false when they could not be handed on.
    async fn error_path(&self, chunk: &Chunk, entries: &[u8], count: u32, vars: &[(String, String)]) -> bool {
        let batch = EventBatch {
            tag: chunk.tag.clone(),
            entries: bytes::Bytes::copy_from_slice(entries),
            format: spate_protocol::EntriesFormat::Packed,
            count,
            invalid: 0,
            mode: spate_protocol::Mode::PackedForward,
            option: Default::default(),
            wire_len: entries.len(),
        };
        if let Some(r) = self.ctx_error(batch) {
            return match r {
                Ok(()) => true,
                Err(e) => {
                    crate::error!("{}: @ERROR did not take {count} rejected events: {e}", self.id);
                    false
                }
            };
        }
        if let Some(sec) = &self.secondary {
            let mut sub = Chunk::new(chunk.id, chunk.tag.clone(), chunk.timekey, entries.len());
            sub.vars = chunk.vars.clone();
            sub.data.extend_from_slice(entries);
            sub.count = count;
            sub.size = entries.len();
            return match sec.write(&sub, vars).await {
                Ok(_) => {
                    crate::warn!("{}: {count} rejected events written to <secondary> {}", self.id, sec.type_name());
                    true
                }
                Err(e) => {
                    crate::error!(
                        "{}: <secondary> {} did not take {count} rejected events: {e}",
                        self.id,
                        sec.type_name()
                    );
                    false
                }
            };
        }
        crate::warn!("{}: {count} rejected events dropped (no @ERROR label, no <secondary>)", self.id);
        OutputMetrics::add(&self.metrics.dropped_records, count as u64);
        true
    }

    fn ctx_error(&self, batch: EventBatch) -> Option<Result<(), EmitError>> {
        self.errors.as_ref().and_then(std::rc::Weak::upgrade).and_then(|c| c.emit_error(batch))
    }

    /// The chunk's record-field chunk keys by name.
    fn vars_of(&self, chunk: &Chunk) -> Vec<(String, String)> {
        let b = self.buffer.borrow();
        b.conf()
            .vars
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), String::from_utf8_lossy(chunk.var(i).unwrap_or(b"")).to_string()))
            .collect()
    }

    async fn failed(&self, mut chunk: Chunk, e: WriteError, stopping: bool, vars: &[(String, String)]) {
        let now = Instant::now();
        let first = *chunk.first_failure.get_or_insert(now);
        let bc = self.buffer.borrow().conf().clone();
        OutputMetrics::add(&self.metrics.retry_count, 1);
        // An unrecoverable error skips the retries: secondary at once, or drop.
        let fatal = matches!(e, WriteError::Fatal(_));
        let over_times = fatal || bc.retry_max_times.is_some_and(|m| chunk.retries >= m);
        let elapsed = now.duration_since(first);
        let over_time = elapsed >= bc.retry_timeout;
        let to_secondary = self.secondary.is_some()
            && (fatal || !bc.retry_forever)
            && (over_times || elapsed.as_secs_f64() >= bc.retry_timeout.as_secs_f64() * bc.retry_secondary_threshold);
        if to_secondary {
            if let Some(sec) = &self.secondary {
                match sec.write(&chunk, vars).await {
                    Ok(_) => {
                        OutputMetrics::add(&self.metrics.write_secondary_count, 1);
                        self.retry.set(None);
                        crate::warn!(
                            "{}: retries exhausted for chunk {} ({} events; last error: {e}); written to <secondary> {}",
                            self.id,
                            hex(&chunk.id),
                            chunk.count,
                            sec.type_name()
                        );
                        self.buffer.borrow_mut().commit(chunk);
                        return;
                    }
                    Err(se) => {
                        crate::error!("{}: <secondary> {} failed too: {se}", self.id, sec.type_name());
                    }
                }
            }
        }
        if fatal || (!bc.retry_forever && (over_times || over_time)) {
            crate::error!(
                "{}: failed to flush the buffer, and hit limit for retries. dropping the chunk. retry_times={} chunk_id={} events={} error=\"{}\"",
                self.id,
                chunk.retries,
                hex(&chunk.id),
                chunk.count,
                e
            );
            OutputMetrics::add(&self.metrics.dropped_records, chunk.count as u64);
            self.retry.set(None);
            self.buffer.borrow_mut().discard(chunk);
            return;
        }
        let mut delay = bc.retry_delay(chunk.retries, self.jitter());
        if stopping {
            // Keep trying until the shutdown deadline, more briskly (and say so in the log).
            delay = delay.min(Duration::from_millis(200));
        }
        let wall = |t: Instant| {
            let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            since.as_secs_f64() - Instant::now().saturating_duration_since(t).as_secs_f64()
        };
        self.retry.set(Some(crate::metrics::RetryState {
            start: wall(first),
            steps: chunk.retries,
            next_time: wall(Instant::now()) + delay.as_secs_f64(),
        }));
        crate::warn!(
            "{}: failed to flush the buffer. retry_times={} next_retry_in={:.1}s chunk={} error=\"{}\"",
            self.id,
            chunk.retries,
            delay.as_secs_f64(),
            hex(&chunk.id),
            e
        );
        chunk.retries += 1;
        self.buffer.borrow_mut().requeue(chunk);
        self.wait_before_retry(delay);
    }
}

impl Output for BufferedOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &'static str {
        self.writer.type_name()
    }

    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    fn emit(&self, batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        BufferedOutput::emit(self, batch)
    }

    fn start(self: Rc<Self>) {
        self.register();
        glommio::spawn_local(async move { self.run().await }).detach();
    }

    fn flush_now(&self) {
        BufferedOutput::flush_now(self)
    }

    fn shutdown(&self, deadline: Instant) -> LocalFuture<'_, ()> {
        Box::pin(BufferedOutput::shutdown(self, deadline))
    }

    fn has_room(&self, bytes: usize) -> bool {
        BufferedOutput::has_room(self, bytes)
    }

    fn visit_metrics(&self, m: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::names::*;
        use crate::metrics::Merge;
        let b = self.buffer.borrow();
        // The buffer counts what it dropped (drop_oldest_chunk, retries exhausted).
        self.metrics.drop_oldest_chunk_count.set(b.dropped_oldest);
        self.metrics.dropped_chunks.set(b.dropped_chunks);
        self.metrics.dropped_records.set(b.dropped_events);
        self.metrics.visit(m, true);
        m.gauge(BUFFER_QUEUE_LENGTH, "Chunks queued for writing.", b.queued_chunks() as f64, Merge::Sum);
        m.gauge(BUFFER_STAGE_LENGTH, "Chunks being filled.", b.staged_chunks() as f64, Merge::Sum);
        m.gauge(BUFFER_QUEUE_BYTE_SIZE, "Bytes in queued chunks.", b.queued_bytes() as f64, Merge::Sum);
        m.gauge(BUFFER_STAGE_BYTE_SIZE, "Bytes in chunks being filled.", b.staged_bytes() as f64, Merge::Sum);
        m.gauge("buffer_bytes", "Bytes held (staged, queued and being written).", b.total_bytes() as f64, Merge::Sum);
        m.gauge(
            BUFFER_TOTAL_LIMIT_SIZE,
            "total_limit_size (per shard, summed).",
            b.conf().total_limit_size as f64,
            Merge::Sum,
        );
        let keys = b.timekeys();
        m.timekeys(&mut keys.iter().copied());
        if let (Some(min), Some(max)) = (keys.first(), keys.last()) {
            m.gauge(BUFFER_OLDEST_TIMEKEY, "Oldest time slice in the buffer (Unix seconds).", *min as f64, Merge::Min);
            m.gauge(BUFFER_NEWEST_TIMEKEY, "Newest time slice in the buffer (Unix seconds).", *max as f64, Merge::Max);
        }
        if let Some(r) = self.retry.get() {
            m.retry(r);
        }
    }

    fn retire(&self) {
        self.retired.set(true);
        self.notify.notify();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Whether two outputs are buffered outputs sharing one buffer (a reload handed it
/// over).
pub fn shares_buffer(a: &dyn Output, b: &dyn Output) -> bool {
    match (a.as_any().downcast_ref::<BufferedOutput>(), b.as_any().downcast_ref::<BufferedOutput>()) {
        (Some(x), Some(y)) => x.shares_buffer_with(y),
        _ => false,
    }
}

/// Makes every buffered output flush everything before it exits (RPC
/// `flushBuffersAndKillWorkers`), whatever its `flush_at_shutdown`.
pub fn drain_on_shutdown(o: &dyn Output) {
    if let Some(b) = o.as_any().downcast_ref::<BufferedOutput>() {
        b.drain.set(true);
        b.flush_now();
    }
}

/// A buffered output's plan: its writer, `<buffer>` and `<secondary>`.
#[derive(Debug)]
pub struct BufferedPlan {
    pub id: String,
    /// The id was written (`@id`), not counted (`type#n`): only a written id names the
    /// same output across a reload (a counted one moves when an output is added before).
    pub explicit_id: bool,
    pub type_name: &'static str,
    pub writer: Box<dyn WriterPlan>,
    pub buffer: BufferConf,
    pub secondary: Option<Box<dyn WriterPlan>>,
    /// fluentd's `slow_flush_log_threshold` (20 s).
    pub slow_flush: Duration,
}

/// Plans a buffered output of registered type `name` whose writer `f` builds: the
/// writer reads its own parameters (and its `<buffer>` through [`WriterSetup`], with its
/// defaults); then the buffer's directory is claimed and `<secondary>` planned.
pub fn plan(
    e: &Element,
    ctx: &mut PlanCtx<'_>,
    name: &'static str,
    f: WriterBuilder,
) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, name);
    let explicit_id = e.get("@id").is_some();
    let mut setup = WriterSetup::primary();
    let writer = f(e, ctx, &mut setup)?;
    let buffer = match setup.take_buffer() {
        Some(b) => b,
        None => crate::buffer::conf::from_output(e, &Default::default())?,
    };
    ctx.claim_path(e, &buffer)?;
    if buffer.flush_thread_count > 1 && !writer.concurrent_writes() {
        crate::warn!(
            "{}: flush_thread_count {}: out_{name} writes one chunk at a time (its writes must not overlap), so each shard flushes with one task",
            e.pos,
            buffer.flush_thread_count
        );
    }
    let secondary = match e.single("secondary")? {
        Some(s) => Some(ctx.secondary(s, name, &buffer)?),
        None => None,
    };
    let slow_flush = match e.float("slow_flush_log_threshold")? {
        Some(f) if f >= 0.0 => Duration::from_secs_f64(f),
        Some(f) => return Err(e.error(format!("slow_flush_log_threshold {f} must not be negative"))),
        None => Duration::from_secs(20),
    };
    Ok(Box::new(BufferedPlan { id, explicit_id, type_name: name, writer, buffer, secondary, slow_flush }))
}

impl BufferedPlan {
    /// Chunks written at once by each shard.
    fn threads(&self) -> u32 {
        if self.writer.concurrent_writes() {
            self.buffer.flush_thread_count
        } else {
            1
        }
    }
}

impl OutputPlan for BufferedPlan {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn describe(&self, _labels: &[String]) -> String {
        let buf = match &self.buffer.path {
            Some(path) => format!("file buffer {}", path.display()),
            None => "memory buffer".to_string(),
        };
        let mut sec = self.secondary.as_ref().map_or(String::new(), |w| format!(", secondary {}", w.type_name()));
        if self.threads() > 1 {
            sec.push_str(&format!(", {} chunks at once", self.threads()));
        }
        format!(
            "{} {} -> {} ({buf}, flush {:?} every {:?}{sec})",
            self.writer.type_name(),
            self.id,
            self.writer.describe(),
            self.buffer.effective_flush_mode(),
            self.buffer.flush_interval
        )
    }

    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        let shard = ctx.shard as u32;
        // A reload: take over the previous generation's buffer of the same written @id
        // (and buffer type) or the same file path, as it is.
        let adopted = ctx.previous_outputs().into_iter().find_map(|o| {
            let b = o.as_any().downcast_ref::<BufferedOutput>()?;
            let old = b.buffer.borrow();
            let same_path = self.buffer.path.is_some() && old.conf().path == self.buffer.path;
            let same_id =
                self.explicit_id && b.id == self.id && old.conf().path.is_none() && self.buffer.path.is_none();
            (same_path || same_id).then(|| b.buffer.clone())
        });
        if let Some(buf) = adopted {
            let writer = self.writer.build(&self.id, ctx)?;
            let secondary = match &self.secondary {
                Some(w) => Some(w.build(&format!("{}.secondary", self.id), ctx)?),
                None => None,
            };
            let placeholder = Buffer::new(self.buffer.clone(), shard);
            let mut o = BufferedOutput::new(self.id.clone(), placeholder, writer, secondary, ctx.syncer.clone())
                .with_error_route(ctx)
                .adopting(buf, self.buffer.clone());
            o.slow_flush = self.slow_flush;
            return Ok(Rc::new(o.with_threads(self.threads())));
        }
        let buffer = match &self.buffer.path {
            None => Buffer::new(self.buffer.clone(), shard),
            Some(path) => {
                let (store, recovered) =
                    crate::buffer::file::FileStore::open(path, shard, ctx.workers as u32, ctx.syncer.clone())?;
                Buffer::with_store(self.buffer.clone(), shard, store, recovered)
            }
        };
        let writer = self.writer.build(&self.id, ctx)?;
        let secondary = match &self.secondary {
            Some(w) => Some(w.build(&format!("{}.secondary", self.id), ctx)?),
            None => None,
        };
        let mut o =
            BufferedOutput::new(self.id.clone(), buffer, writer, secondary, ctx.syncer.clone()).with_error_route(ctx);
        o.slow_flush = self.slow_flush;
        Ok(Rc::new(o.with_threads(self.threads())))
    }
}
