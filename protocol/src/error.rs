//! Decoding errors: every error carries the byte offset where it was found (relative to
//! the start of the frame, or of the connection stream for framing errors) and a message
//! a user can act on.

use std::fmt;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("invalid msgpack: marker byte 0x{0:02x} is never used")]
    ReservedMarker(u8),
    #[error("frame is larger than the limit of {limit} bytes (declared or received so far: {size}); raise chunk_size_limit if this client is trusted")]
    FrameTooLarge { size: u64, limit: u64 },
    #[error("{what} declares {count} elements, more than the frame size limit allows")]
    CountTooLarge { what: &'static str, count: u64 },
    #[error("nesting deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("msgpack value is truncated: it ends {missing} bytes short of its declared length")]
    Truncated { missing: u64 },
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: &'static str },
    #[error("a Forward frame must be an array of 2 to 4 elements (or nil for a heartbeat), found an array of {0}")]
    BadArity(u32),
    #[error("unsupported compression {0:?} in option.compressed (supported: gzip, zstd, text)")]
    UnsupportedCompression(String),
    #[error("decompressed data exceeds the limit of {limit} bytes (decompression_size_limit)")]
    InflateTooLarge { limit: u64 },
    #[error("decompression failed: {0}")]
    Inflate(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("the connection's first byte 0x{0:02x} starts neither a msgpack array/nil nor a JSON array/object")]
    BadFirstByte(u8),
    #[error("trailing bytes after the entries of a Message-mode event")]
    Trailing,
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: &'static str },
}

/// A decoding error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the problem, relative to the start of the frame being decoded.
    pub offset: u64,
    pub kind: ErrorKind,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: ErrorKind) -> Self {
        DecodeError { offset: offset as u64, kind }
    }
    pub(crate) fn at(mut self, base: usize) -> Self {
        self.offset += base as u64;
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.offset)
    }
}

impl std::error::Error for DecodeError {}

pub type Result<T> = std::result::Result<T, DecodeError>;
