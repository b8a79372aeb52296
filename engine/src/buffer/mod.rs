//! Output buffering: chunks of packed `[time, record]` entries per chunk key (tag, and
//! the time slice when `time` is a chunk key), staged until they are due, then queued
//! for the output's flush task. One buffer per output per shard; nothing here is shared
//! between shards.
//!
//! [`Buffer`] is both of fluentd's buffer types: `memory` keeps chunk bytes in memory;
//! `file` (see [`file`]) writes every append through to a chunk file, made durable by
//! the shard's group commit ([`sync`]) before in_forward acks it, and keeps only the
//! not-yet-written tail of each chunk in memory.

pub mod chunk;
pub mod chunk_file;
pub mod conf;
pub mod error;
pub mod file;
pub mod fluentd_import;
pub mod journal;
pub mod placeholders;
pub mod progress;
pub mod queue;
pub mod stream_copy;
pub mod sync;

pub use chunk::Chunk;
pub use error::BufferError;
pub use queue::Buffer;

/// The memory buffer is a [`Buffer`] without a file store (name kept for callers).
pub type MemoryBuffer = Buffer;

pub use conf::{
    BufferConf, BufferDefaults, FlushMode, OverflowAction, RetryType, TimeKey, FILE_CHUNK_LIMIT_SIZE,
    FILE_TOTAL_LIMIT_SIZE,
};
