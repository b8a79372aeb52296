//! The counters every output keeps ([`OutputMetrics`]: fluentd's emit/write/retry
//! counts and spate's flush latency), shard-local in `Cell`s, and how they are
//! reported through the metrics [`Visitor`].

use std::cell::Cell;

use super::{Histogram, Visitor};

/// Per-output counters (shard-local; summed across shards when read).
#[derive(Debug)]
pub struct OutputMetrics {
    pub emit_records: Cell<u64>,
    /// Bytes of the entries emitted (fluentd's emit_size).
    pub emit_size: Cell<u64>,
    pub emit_count: Cell<u64>,
    pub emit_errors: Cell<u64>,
    pub write_count: Cell<u64>,
    pub write_records: Cell<u64>,
    pub write_bytes: Cell<u64>,
    pub write_secondary_count: Cell<u64>,
    pub retry_count: Cell<u64>,
    pub rollback_count: Cell<u64>,
    pub dropped_records: Cell<u64>,
    pub dropped_chunks: Cell<u64>,
    pub drop_oldest_chunk_count: Cell<u64>,
    /// Writes slower than `slow_flush_log_threshold`.
    pub slow_flush_count: Cell<u64>,
    /// Milliseconds spent writing chunks (fluentd's flush_time_count).
    pub flush_time_count: Cell<u64>,
    /// Seconds per chunk write.
    pub flush_latency: Histogram,
}

impl Default for OutputMetrics {
    fn default() -> Self {
        let z = || Cell::new(0);
        OutputMetrics {
            emit_records: z(),
            emit_size: z(),
            emit_count: z(),
            emit_errors: z(),
            write_count: z(),
            write_records: z(),
            write_bytes: z(),
            write_secondary_count: z(),
            retry_count: z(),
            rollback_count: z(),
            dropped_records: z(),
            dropped_chunks: z(),
            drop_oldest_chunk_count: z(),
            slow_flush_count: z(),
            flush_time_count: z(),
            flush_latency: Histogram::latency(),
        }
    }
}

impl OutputMetrics {
    #[inline]
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }

    /// Reports the counters every output has (buffered outputs add their buffer's).
    pub fn visit(&self, m: &mut dyn Visitor, buffered: bool) {
        use crate::metrics::names::*;
        m.counter(EMIT_RECORDS, "Events emitted into the output.", self.emit_records.get());
        m.counter(EMIT_SIZE, "Bytes of events emitted into the output.", self.emit_size.get());
        m.counter(EMIT_COUNT, "Batches emitted into the output.", self.emit_count.get());
        m.counter("emit_errors", "Batches the output refused.", self.emit_errors.get());
        m.counter(RETRY_COUNT, "Failed writes (fluentd's num_errors).", self.retry_count.get());
        if buffered {
            m.counter(WRITE_COUNT, "Chunks written.", self.write_count.get());
            m.counter("write_records", "Events in the chunks written.", self.write_records.get());
            m.counter("write_bytes", "Bytes written.", self.write_bytes.get());
            m.counter(WRITE_SECONDARY_COUNT, "Chunks written to <secondary>.", self.write_secondary_count.get());
            m.counter(ROLLBACK_COUNT, "Chunks resent without a retry (ack timeout).", self.rollback_count.get());
            m.counter(SLOW_FLUSH_COUNT, "Writes slower than slow_flush_log_threshold.", self.slow_flush_count.get());
            m.counter(FLUSH_TIME_COUNT, "Milliseconds spent writing chunks.", self.flush_time_count.get());
            m.counter(
                DROP_OLDEST_CHUNK_COUNT,
                "Chunks dropped by overflow_action drop_oldest_chunk.",
                self.drop_oldest_chunk_count.get(),
            );
            m.counter(
                "dropped_chunks",
                "Chunks dropped (retries exhausted, unreadable, drop_oldest_chunk).",
                self.dropped_chunks.get(),
            );
            m.counter("dropped_events", "Events in dropped chunks.", self.dropped_records.get());
            m.histogram("flush_duration_seconds", "Time to write one chunk.", &self.flush_latency);
        } else {
            m.counter(WRITE_COUNT, "Batches written.", self.write_count.get());
            m.counter(ROLLBACK_COUNT, "Rollbacks (none without a buffer).", self.rollback_count.get());
            m.counter(SLOW_FLUSH_COUNT, "Slow flushes (none without a buffer).", self.slow_flush_count.get());
            m.counter(FLUSH_TIME_COUNT, "Milliseconds spent flushing.", self.flush_time_count.get());
            m.counter(WRITE_SECONDARY_COUNT, "Writes to <secondary> (none without a buffer).", 0);
            m.counter(DROP_OLDEST_CHUNK_COUNT, "Chunks dropped (none without a buffer).", 0);
        }
    }
}
