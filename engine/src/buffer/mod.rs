//! Output buffering: chunks of packed `[time, record]` entries per chunk key (tag, and
//! the time slice when `time` is a chunk key), staged until they are due, then queued
//! for the output's flush task. One buffer per output per shard; nothing here is shared
//! between shards.
//!
//! [`Buffer`] is both of fluentd's buffer types: `memory` keeps chunk bytes in memory;
//! `file` (see [`file`]) writes every append through to a chunk file, made durable by
//! the shard's group commit ([`sync`]) before in_forward acks it, and keeps only the
//! not-yet-written tail of each chunk in memory.

pub mod file;
pub mod memory;
pub mod sync;

use std::path::PathBuf;
use std::time::Duration;

pub use memory::{Buffer, Chunk};

/// The memory buffer is a [`Buffer`] without a file store (name kept for callers).
pub type MemoryBuffer = Buffer;

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

/// `time` as a chunk key: events are split into chunks per time slice.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeKey {
    /// Slice length in seconds (`timekey`).
    pub secs: i64,
    /// `timekey_wait`: a slice's chunk is flushed this long after the slice ends.
    pub wait: Duration,
    /// Offset of the time zone slices are aligned to (0 with `timekey_use_utc`).
    pub utc_offset: i64,
}

impl TimeKey {
    /// Start of the slice holding `t` (fluentd's `calculate_timekey`).
    #[inline]
    pub fn of(&self, t: i64) -> i64 {
        t - (t + self.utc_offset).rem_euclid(self.secs.max(1))
    }
}

/// `<buffer>` parameters. `Default` gives fluentd's memory-buffer defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConf {
    /// `Some(dir)`: a file buffer with its chunk files under `dir`.
    pub path: Option<PathBuf>,
    pub timekey: Option<TimeKey>,
    /// Chunk keys naming record fields (`name` or `$.a.b`), in `<buffer>` order.
    pub vars: Vec<String>,
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
    /// `retry_secondary_threshold`: share of `retry_timeout` after which a chunk goes to
    /// `<secondary>` (fluentd: 0.8).
    pub retry_secondary_threshold: f64,
}

impl Default for BufferConf {
    fn default() -> Self {
        BufferConf {
            path: None,
            timekey: None,
            vars: Vec::new(),
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
            retry_secondary_threshold: 0.8,
        }
    }
}

/// fluentd's file-buffer defaults (buf_file.rb): 256 MiB chunks, 64 GiB in all.
pub const FILE_CHUNK_LIMIT_SIZE: usize = 256 << 20;
pub const FILE_TOTAL_LIMIT_SIZE: usize = 64 << 30;

impl BufferConf {
    /// The effective flush mode (`default` resolved as fluentd does).
    pub fn effective_flush_mode(&self) -> FlushMode {
        match self.flush_mode {
            FlushMode::Default if self.timekey.is_some() => FlushMode::Lazy,
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
    Overflow { limit: usize, block: bool },
    #[error("file buffer {path}: {reason}")]
    Io { path: String, reason: String },
}

impl BufferError {
    /// The input should wait for room and retry instead of rejecting (`overflow_action block`).
    pub fn is_block(&self) -> bool {
        matches!(self, BufferError::Overflow { block: true, .. })
    }
}
