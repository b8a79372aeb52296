//! Why a buffer did not take a batch.

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
