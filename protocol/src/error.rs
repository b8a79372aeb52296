//! Decoding errors: every error carries the byte offset where it was found (relative to
//! the start of the frame, or of the connection stream for framing errors) and a message
//! a user can act on.

use std::fmt;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The reserved marker byte 0xc1.
    #[error("invalid msgpack: marker byte 0x{0:02x} is never used")]
    ReservedMarker(u8),
    /// A frame over [`Limits::max_frame_size`](crate::Limits::max_frame_size).
    #[error("frame is larger than the limit of {limit} bytes (declared or received so far: {size}); raise chunk_size_limit if this client is trusted")]
    FrameTooLarge {
        /// Declared or received size so far.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An array or map declaring more elements than the frame could hold.
    #[error("{what} declares {count} elements, more than the frame size limit allows")]
    CountTooLarge {
        /// What declared them.
        what: &'static str,
        /// The declared count.
        count: u64,
    },
    /// Arrays/maps nested deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("nesting deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A value inside a complete frame ends before its declared length.
    #[error("msgpack value is truncated: it ends {missing} bytes short of its declared length")]
    Truncated {
        /// Bytes missing.
        missing: u64,
    },
    /// A value of the wrong type at a position the protocol fixes.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the protocol wants there.
        expected: &'static str,
        /// What came (a msgpack kind name).
        found: &'static str,
    },
    /// A frame array with fewer than 2 or more than 4 elements.
    #[error("a Forward frame must be an array of 2 to 4 elements (or nil for a heartbeat), found an array of {0}")]
    BadArity(u32),
    /// `option.compressed` names a compression spate does not decode.
    #[error("unsupported compression {0:?} in option.compressed (supported: gzip, zstd, text)")]
    UnsupportedCompression(String),
    /// Decompressed entries over
    /// [`Limits::max_inflated_size`](crate::Limits::max_inflated_size).
    #[error("decompressed data exceeds the limit of {limit} bytes (decompression_size_limit)")]
    InflateTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Corrupt gzip/zstd data (the decoder's message).
    #[error("decompression failed: {0}")]
    Inflate(String),
    /// A JSON frame that does not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A connection starting with a byte that is neither msgpack array/nil nor JSON.
    #[error("the connection's first byte 0x{0:02x} starts neither a msgpack array/nil nor a JSON array/object")]
    BadFirstByte(u8),
    /// Bytes left inside a frame after its last element or a Message-mode event.
    #[error("trailing bytes after the entries of a Message-mode event")]
    Trailing,
    /// Anything else malformed: handshake messages, ack responses, Message-mode frames.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The element.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A decoding error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the problem, relative to the start of the frame being decoded.
    pub offset: u64,
    /// What went wrong.
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

/// A result with a [`DecodeError`].
pub type Result<T> = std::result::Result<T, DecodeError>;
