//! Output buffering: chunks of packed `[time, record]` entries per tag, staged until
//! they are due, then queued for the output's flush task. One buffer per output per
//! shard; nothing here is shared between shards.

pub mod memory;

use std::time::Duration;

pub use memory::{Chunk, MemoryBuffer};

/// What to do when a buffer is full (fluentd's `overflow_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    /// Reject the batch: the input does not ack it and the client retries.
    ThrowException,
    /// Stop reading from the input until space frees up (TCP back-pressure).
    Block,
    /// Drop the oldest queued chunk to make room (counted and logged).
    DropOldestChunk,
}

/// When staged chunks are flushed (fluentd's `flush_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// `default`: `lazy` when `time` is a chunk key, else `interval`.
    Default,
    /// Every `flush_interval`.
    Interval,
    /// As soon as a batch is appended.
    Immediate,
    /// When a chunk is full (or its timekey ends).
    Lazy,
}

/// fluentd's retry backoff (`retry_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    ExponentialBackoff,
    Periodic,
}

/// `<buffer>` parameters with fluentd's defaults for a memory buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConf {
    pub chunk_limit_size: usize,
    pub chunk_limit_records: Option<u32>,
    pub total_limit_size: usize,
    pub flush_mode: FlushMode,
    pub flush_interval: Duration,
    pub flush_at_shutdown: bool,
    pub overflow_action: OverflowAction,
    pub retry_type: RetryType,
    pub retry_wait: Duration,
    pub retry_exponential_backoff_base: f64,
    pub retry_max_interval: Option<Duration>,
    pub retry_timeout: Duration,
    pub retry_max_times: Option<u32>,
    pub retry_forever: bool,
    pub retry_randomize: bool,
}

impl Default for BufferConf {
    fn default() -> Self {
        BufferConf {
            chunk_limit_size: 8 << 20,
            chunk_limit_records: None,
            total_limit_size: 512 << 20,
            flush_mode: FlushMode::Default,
            flush_interval: Duration::from_secs(60),
            flush_at_shutdown: true,
            overflow_action: OverflowAction::ThrowException,
            retry_type: RetryType::ExponentialBackoff,
            retry_wait: Duration::from_secs(1),
            retry_exponential_backoff_base: 2.0,
            retry_max_interval: None,
            retry_timeout: Duration::from_secs(72 * 3600),
            retry_max_times: None,
            retry_forever: false,
            retry_randomize: true,
        }
    }
}

impl BufferConf {
    /// The effective flush mode (`default` resolved as fluentd does, without time keys).
    pub fn effective_flush_mode(&self) -> FlushMode {
        match self.flush_mode {
            FlushMode::Default => FlushMode::Interval,
            m => m,
        }
    }

    /// Wait before retry number `n` (0-based), before jitter and the max interval.
    pub fn retry_delay(&self, n: u32, jitter: f64) -> Duration {
        let base = match self.retry_type {
            RetryType::Periodic => self.retry_wait.as_secs_f64(),
            RetryType::ExponentialBackoff => {
                self.retry_wait.as_secs_f64() * self.retry_exponential_backoff_base.powi(n.min(64) as i32)
            }
        };
        let mut d = base;
        if let Some(max) = self.retry_max_interval {
            d = d.min(max.as_secs_f64());
        }
        if self.retry_randomize {
            // fluentd randomizes within [d * 0.875, d * 1.125].
            d *= 0.875 + 0.25 * jitter.clamp(0.0, 1.0);
        }
        Duration::from_secs_f64(d.min(1e9))
    }
}

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("buffer space has too many data (total_limit_size {limit} bytes reached)")]
    Overflow { limit: usize },
}
