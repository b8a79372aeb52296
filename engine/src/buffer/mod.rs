//! Output buffering: chunks of packed `[time, record]` entries per chunk key (tag, and
//! the time slice when `time` is a chunk key), staged until they are due, then queued
//! for the output's flush task. One buffer per output per shard; nothing here is shared
//! between shards.
//!
//! [`Buffer`] is both of fluentd's buffer types: `memory` keeps chunk bytes in memory;
//! `file` (see [`file`]) writes every append through to a chunk file, made durable by
//! the shard's group commit ([`sync`]) before in_forward acks it, and keeps only the
//! not-yet-written tail of each chunk in memory.

pub mod conf;
pub mod file;
pub mod memory;
pub mod placeholders;
pub mod progress;
pub mod sync;

pub use memory::{Buffer, Chunk};

/// The memory buffer is a [`Buffer`] without a file store (name kept for callers).
pub type MemoryBuffer = Buffer;

pub use conf::{
    BufferConf, BufferDefaults, FlushMode, OverflowAction, RetryType, TimeKey, FILE_CHUNK_LIMIT_SIZE,
    FILE_TOTAL_LIMIT_SIZE,
};

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
