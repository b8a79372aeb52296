//! spate-protocol: the Fluentd Forward protocol v1, sans-IO and zero-copy.
//!
//! Bytes in, frames out ([`FrameDecoder`]); frames in, bytes out ([`encode`]). This crate
//! owns the wire format: msgpack reading in place, the four Forward modes, EventTime,
//! options and acks, gzip/zstd inflation with limits (whole, or streamed in bounded
//! slices by [`Inflater`]), JSON on the same port, and the
//! HELO/PING/PONG handshake. It never does I/O, never spawns, and never panics or
//! allocates without a bound on untrusted input: decoded tags, entries and records are
//! `Bytes` slices of the caller's receive buffer, and iterating events allocates nothing.
//! A batch's packed entries are checked against the layout of the entry before them
//! (`shape.rs`) when they share it, instead of being walked value by value.
//!
//! ```
//! use bytes::BytesMut;
//! use spate_protocol::{encode, EventTime, Frame, FrameDecoder, Limits};
//!
//! let mut wire = Vec::new();
//! let record = [0x81, 0xa1, b'k', 0xa1, b'v']; // {"k": "v"}
//! encode::message(&mut wire, b"app.log", EventTime::new(1, 2), encode::TimeFormat::EventTime, &record, &Default::default());
//!
//! let mut buf = BytesMut::from(&wire[..]);
//! let mut dec = FrameDecoder::new(Limits::default());
//! let Some(Frame::Events(batch)) = dec.decode(&mut buf).unwrap() else { panic!() };
//! let ev = batch.events().next().unwrap();
//! assert_eq!(&batch.tag[..], b"app.log");
//! assert_eq!(ev.record.get(b"k").unwrap().as_str(), Some(&b"v"[..]));
//! ```

#![warn(missing_docs)]

pub mod compress;
pub mod encode;
pub mod error;
pub mod event;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod handshake;
pub mod hex;
pub mod inflate;
pub mod json;
pub mod msgpack;
mod shape;

pub use compress::Compression;
pub use error::{DecodeError, ErrorKind, Result};
pub use event::{EntriesFormat, Event, EventTime, Events, RecordRef, ValueRef};
pub use frame::{
    packed_frame_len, parse_frame, CompressedFrame, Decoded, EventBatch, Frame, FrameDecoder, Limits, Mode, Options,
    PackedLen, Scan, SkippedFrame, SkippedHead,
};
pub use hex::hex;
pub use inflate::{Inflater, Slice};
