//! Outputs: where a `<match>` sends events. Each shard owns its own instances
//! (`Rc`, no locks). `emit` is synchronous: it either accepts the batch (stored in the
//! output's buffer, or written, for unbuffered outputs) or rejects it, and in_forward
//! acks only what every matched output accepted (for a file buffer: once the shard's
//! group commit made it durable).
//!
//! Unbuffered outputs (`null`, `stdout`) have a file each; buffered ones are a
//! [`buffered::BufferedOutput`] (buffer + flush task) around a [`buffered::Writer`]:
//! `forward`, `file`, `secondary_file`.

pub mod buffered;
pub mod file;
pub mod forward;
pub mod null;
pub mod secondary_file;
pub mod stdout;

use std::cell::Cell;
use std::rc::Rc;

use spate_protocol::EventBatch;

/// Why an output did not accept a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("{id}: {source}")]
    Buffer { id: String, source: crate::buffer::BufferError },
    #[error("{id}: write failed: {reason}")]
    Write { id: String, reason: String },
}

impl EmitError {
    /// A buffer with `overflow_action block` is full: the input should wait and retry.
    pub fn is_block(&self) -> bool {
        matches!(self, EmitError::Buffer { source, .. } if source.is_block())
    }
}

/// Per-output counters (shard-local; summed across shards when read).
#[derive(Debug, Default)]
pub struct OutputMetrics {
    pub emit_records: Cell<u64>,
    pub emit_count: Cell<u64>,
    pub emit_errors: Cell<u64>,
    pub write_count: Cell<u64>,
    pub write_records: Cell<u64>,
    pub write_bytes: Cell<u64>,
    pub retry_count: Cell<u64>,
    pub dropped_records: Cell<u64>,
}

impl OutputMetrics {
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

// Outputs are built once per shard and held in an Rc: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    Null(null::NullOutput),
    Stdout(stdout::StdoutOutput),
    Buffered(buffered::BufferedOutput),
}

impl Output {
    /// The plugin id (`@id`, or `type#n`).
    pub fn id(&self) -> &str {
        match self {
            Output::Null(o) => &o.id,
            Output::Stdout(o) => &o.id,
            Output::Buffered(o) => &o.id,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Output::Null(_) => "null",
            Output::Stdout(_) => "stdout",
            Output::Buffered(o) => o.type_name(),
        }
    }

    pub fn metrics(&self) -> &OutputMetrics {
        match self {
            Output::Null(o) => &o.metrics,
            Output::Stdout(o) => &o.metrics,
            Output::Buffered(o) => &o.metrics,
        }
    }

    #[inline]
    pub fn emit(&self, batch: &EventBatch) -> Result<(), EmitError> {
        let m = self.metrics();
        let r = match self {
            Output::Null(o) => o.emit(batch),
            Output::Stdout(o) => o.emit(batch),
            Output::Buffered(o) => o.emit(batch),
        };
        match r {
            Ok(()) => {
                OutputMetrics::add(&m.emit_records, batch.count as u64);
                OutputMetrics::add(&m.emit_count, 1);
            }
            Err(_) => OutputMetrics::add(&m.emit_errors, 1),
        }
        r
    }

    /// Starts background tasks (flushers) on the current executor.
    pub fn start(self: &Rc<Self>) {
        if let Output::Buffered(o) = &**self {
            o.register();
            let me = self.clone();
            glommio::spawn_local(async move {
                if let Output::Buffered(o) = &*me {
                    o.run().await;
                }
            })
            .detach();
        }
    }

    /// Flush buffers now (SIGUSR1).
    pub fn flush_now(&self) {
        if let Output::Buffered(o) = self {
            o.flush_now();
        }
    }

    /// Stops accepting, flushes what the buffer holds (if `flush_at_shutdown`), and
    /// returns once done or `deadline` passed.
    pub async fn shutdown(&self, deadline: std::time::Instant) {
        if let Output::Buffered(o) = self {
            o.shutdown(deadline).await;
        }
    }

    /// Whether a blocked input may retry (buffer has room again).
    pub fn has_room(&self, bytes: usize) -> bool {
        match self {
            Output::Buffered(o) => o.has_room(bytes),
            _ => true,
        }
    }
}
