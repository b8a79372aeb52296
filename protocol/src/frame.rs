//! The incremental Forward frame decoder: bytes in (a `BytesMut` the caller reads into),
//! frames out. A [`Frame`]'s tag, entries and options are `Bytes` slices of the input
//! buffer: decoding copies nothing except gzip/zstd inflation and JSON conversion.
//!
//! Mode detection follows the spec: the type of the second array element decides between
//! Message (`[tag, time, record(, option)]`), Forward (`[tag, [[time, record]...](, option)]`)
//! and PackedForward (`[tag, bin|str(, option)]`, CompressedPackedForward when
//! `option.compressed` is gzip or zstd). A msgpack `nil` is a heartbeat.

use bytes::{Bytes, BytesMut};

use crate::compress::{self, Compression};
use crate::error::{DecodeError, ErrorKind, Result};
use crate::event::{check_pair, read_entry, EntriesFormat, EntryCheck, Events};
use crate::inflate::{Inflater, Slice};
use crate::json::{self, JsonScanner};
use crate::msgpack::{read_int, Cursor, Head, Kind, Skipper, MAX_DEPTH};
use crate::shape::Shapes;

/// Limits applied while decoding. Defaults match fluentd's defaults where fluentd has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted (fluentd's `chunk_size_limit`, unset by default there).
    /// Default: 256 MiB + 64 KiB, so the largest chunk fluentd's file buffer produces by
    /// default (256 MiB) fits with its header.
    pub max_frame_size: usize,
    /// Largest decompressed entries (fluentd's `decompression_size_limit`, 256 MiB).
    pub max_inflated_size: usize,
    /// Deepest array/map nesting accepted, at most [`MAX_DEPTH`].
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_size: (256 << 20) + (64 << 10), max_inflated_size: 256 << 20, max_depth: MAX_DEPTH }
    }
}

/// Which Forward mode a frame used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `[tag, time, record(, option)]`: one event.
    Message,
    /// `[tag, [[time, record], ...](, option)]`.
    Forward,
    /// `[tag, bin|str of packed entries(, option)]`.
    PackedForward,
    /// PackedForward whose entries are gzip or zstd (`option.compressed`).
    CompressedPackedForward,
}

/// The `option` map of a frame. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `chunk`: the client wants `{"ack": chunk}` back. Kept byte for byte.
    pub chunk: Option<Bytes>,
    /// `size`: the number of events the client says it sent.
    pub size: Option<u64>,
    /// `compressed`: the entries' compression (`text` when given but not compressed).
    pub compressed: Option<Compression>,
    /// fluent-bit's `fluent_signal` (0 logs, 1 metrics, 2 traces).
    pub fluent_signal: Option<i64>,
    /// fluent-bit's `metadata`, raw msgpack.
    pub metadata: Option<Bytes>,
}

/// Events of one tag from one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    /// The frame's tag, as received.
    pub tag: Bytes,
    /// Entries as received (inflated if the frame was compressed); see [`EntriesFormat`].
    pub entries: Bytes,
    /// How `entries` are laid out.
    pub format: EntriesFormat,
    /// Number of valid events.
    pub count: u32,
    /// Entries that are well-formed msgpack but not `[time, record]` with a valid time
    /// and a map record. [`EventBatch::events`] skips them.
    pub invalid: u32,
    /// The mode the frame came in.
    pub mode: Mode,
    /// The frame's options.
    pub option: Options,
    /// Size of the frame on the wire (set by [`FrameDecoder::decode`]; for a JSON frame,
    /// the JSON text's size).
    pub wire_len: usize,
}

impl EventBatch {
    /// Iterates the valid events, borrowing `entries`. Allocation-free.
    pub fn events(&self) -> Events<'_> {
        Events::new(&self.entries, self.format)
    }

    /// A batch with the same tag, mode and options holding other packed `[time, record]`
    /// entries (`count` valid events), for filters that drop or rewrite events. `None`
    /// when `count` is 0: nothing is left to pass on.
    pub fn with_packed_entries(&self, entries: Bytes, count: u32) -> Option<EventBatch> {
        if count == 0 {
            return None;
        }
        Some(EventBatch {
            tag: self.tag.clone(),
            entries,
            format: EntriesFormat::Packed,
            count,
            invalid: 0,
            mode: self.mode,
            option: self.option.clone(),
            wire_len: self.wire_len,
        })
    }

    /// Validates `entries` and builds a batch (used by decoders and by tests/tools that
    /// assemble batches directly).
    pub fn from_entries(
        tag: Bytes,
        entries: Bytes,
        format: EntriesFormat,
        mode: Mode,
        option: Options,
        max_depth: usize,
    ) -> Result<Self> {
        let (count, invalid) = count_entries(&entries, format, max_depth)?;
        Ok(EventBatch { tag, entries, format, count, invalid, mode, option, wire_len: 0 })
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A frame carrying events (possibly zero valid ones).
    Events(EventBatch),
    /// A msgpack `nil`: a keepalive from old clients; nothing to do.
    Heartbeat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Unknown,
    Msgpack,
    Json,
}

/// Incremental decoder for one connection.
///
/// Call [`FrameDecoder::decode`] after every read with the connection's buffer; it
/// returns `Ok(None)` when the buffer holds only part of a frame (nothing is consumed
/// then, and the bytes already scanned are not scanned again on the next call).
///
/// Error offsets from this decoder count from the start of the connection's stream.
/// An error in a complete frame (wrong types, bad entries, failed inflation) consumes
/// that frame, so decoding could go on with the next one; an error in finding a frame's
/// end (malformed msgpack, a limit) leaves the stream unusable: close the connection.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: Limits,
    kind: StreamKind,
    skipper: Skipper,
    json: JsonScanner,
    /// Bytes consumed from the stream so far, for error offsets.
    consumed: u64,
    /// JSON bytes scanned for frame boundaries (see [`FrameDecoder::scan_steps`]).
    json_steps: u64,
    /// Wire size of the last value [`FrameDecoder::next_value`] returned (for JSON, the
    /// JSON text, not the msgpack it became).
    last_wire_len: usize,
}

impl FrameDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder {
            limits,
            kind: StreamKind::Unknown,
            skipper: Skipper::new(),
            json: JsonScanner::default(),
            consumed: 0,
            json_steps: 0,
            last_wire_len: 0,
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True once the connection turned out to speak JSON (acks must then be JSON).
    pub fn is_json(&self) -> bool {
        self.kind == StreamKind::Json
    }

    /// Bytes of the stream consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Bytes of the pending, incomplete frame scanned so far. Between calls it only
    /// grows until the frame completes (nothing already scanned is scanned again).
    pub fn pending(&self) -> usize {
        match self.kind {
            StreamKind::Json => self.json.pos(),
            _ => self.skipper.pos(),
        }
    }

    /// Scanning work done so far on this connection, for tests and diagnostics: msgpack
    /// value headers examined while finding frame boundaries, plus JSON bytes scanned.
    /// A frame that arrives whole costs one step per value in it; one that arrives in
    /// pieces, at most two per value plus one per call (see [`Skipper::steps`]), so this
    /// stays linear in the stream's size however it is split.
    pub fn scan_steps(&self) -> u64 {
        self.skipper.steps() + self.json_steps
    }

    fn detect(&mut self, buf: &[u8]) -> Result<bool> {
        if self.kind != StreamKind::Unknown {
            return Ok(true);
        }
        let Some(&b) = buf.first() else { return Ok(false) };
        self.kind = match b {
            b'{' | b'[' => StreamKind::Json,
            0x90..=0x9f | 0xdc | 0xdd | 0xc0 => StreamKind::Msgpack,
            _ => return Err(DecodeError::new(0, ErrorKind::BadFirstByte(b))),
        };
        Ok(true)
    }

    /// Splits the next complete msgpack value off `buf`, without interpreting it (used
    /// for handshake messages). JSON streams are converted to msgpack.
    pub fn next_value(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        if !self.detect(buf)? {
            return Ok(None);
        }
        if self.kind == StreamKind::Json && self.json_pending_start(buf) {
            return Ok(None);
        }
        let base = self.consumed;
        let rebase = |mut e: DecodeError| {
            e.offset += base;
            e
        };
        match self.kind {
            StreamKind::Json => {
                let before = self.json.pos();
                let res = self.json.advance(buf, self.limits.max_frame_size);
                // The scanner resets to 0 when a value completes.
                self.json_steps += match res {
                    Ok(Some(len)) => len.saturating_sub(before),
                    _ => self.json.pos().saturating_sub(before),
                } as u64;
                match res.map_err(rebase)? {
                    None => Ok(None),
                    Some(len) => {
                        let raw = buf.split_to(len);
                        self.consumed += len as u64;
                        self.last_wire_len = len;
                        Ok(Some(Bytes::from(json::to_msgpack(&raw).map_err(rebase)?)))
                    }
                }
            }
            _ => match self.skipper.advance(buf, self.limits.max_frame_size, self.limits.max_depth).map_err(rebase)? {
                None => Ok(None),
                Some(len) => {
                    self.consumed += len as u64;
                    self.last_wire_len = len;
                    Ok(Some(buf.split_to(len).freeze()))
                }
            },
        }
    }

    /// Drops whitespace between JSON values; returns true if nothing else is buffered.
    fn json_pending_start(&mut self, buf: &mut BytesMut) -> bool {
        let ws = JsonScanner::leading_ws(buf);
        if ws > 0 {
            let _ = buf.split_to(ws);
            self.consumed += ws as u64;
        }
        buf.is_empty()
    }

    /// Finds the next complete frame at the start of `buf` without taking it off: the
    /// Message-mode frames loggers send (`[tag, time, record]` with a flat record, no
    /// options) come back read in place, so a server can gather their entries without
    /// a reference-counted slice per event; take `len` bytes off `buf` afterwards. Any
    /// other frame is [`Scan::Other`]: split its `len` bytes off and hand them to
    /// [`FrameDecoder::parse_scanned`]. JSON streams are [`Scan::Json`]: use
    /// [`FrameDecoder::decode_deferred`] for them.
    pub fn scan<'a>(&mut self, buf: &'a [u8]) -> Result<Scan<'a>> {
        if !self.detect(buf)? {
            return Ok(Scan::Partial);
        }
        if self.kind == StreamKind::Json {
            return Ok(Scan::Json);
        }
        let base = self.consumed;
        let len = match self.skipper.advance(buf, self.limits.max_frame_size, self.limits.max_depth) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(Scan::Partial),
            Err(mut e) => {
                e.offset += base;
                return Err(e);
            }
        };
        self.consumed += len as u64;
        self.last_wire_len = len;
        let raw = &buf[..len];
        // What parse_frame_inner does for such a frame, without building slices: the
        // scan proved the frame is a fixarray of 3 whose record is a flat map, and
        // where the time and the record end.
        if let (Some(0x93), Some([second, tend, rend, _])) = (raw.first(), self.skipper.last_flat_ends()) {
            let mut c = Cursor::new(raw);
            c.pos = 1;
            let second_is_time =
                |b: u8| !matches!(b, 0x90..=0x9f | 0xdc | 0xdd | 0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6);
            if let Ok(tag) = c.bytes("the tag (a string)") {
                if c.pos == second
                    && self.limits.max_depth >= 1
                    && second < tend
                    && tend < rend
                    && rend == len
                    && raw.get(second).is_some_and(|&b| second_is_time(b))
                {
                    let entry = &raw[second..rend];
                    let valid = matches!(check_pair(&raw[second..tend], &raw[tend..rend], entry), EntryCheck::Valid(_));
                    return Ok(Scan::Message { tag, entry, valid, len });
                }
            }
        }
        Ok(Scan::Other { len })
    }

    /// Puts back the frame [`FrameDecoder::scan`] last found, which the caller leaves
    /// in (or returns to) its buffer: the next scan finds it again and counts its bytes
    /// once.
    pub fn unscan(&mut self) {
        self.consumed -= self.last_wire_len as u64;
        self.last_wire_len = 0;
    }

    /// Parses the frame [`FrameDecoder::scan`] found ([`Scan::Other`]), split off the
    /// buffer: what [`FrameDecoder::decode_deferred`] would have returned for it.
    pub fn parse_scanned(&self, raw: Bytes) -> Result<Decoded> {
        self.parse_taken(raw, true, false)
    }

    /// Parses the value just taken off the stream (`raw`, of `last_wire_len` wire
    /// bytes); error offsets count from the start of the stream.
    fn parse_taken(&self, raw: Bytes, defer: bool, trust_size: bool) -> Result<Decoded> {
        let start = self.consumed - self.last_wire_len as u64;
        let json = self.is_json();
        let flat = if json { None } else { self.skipper.last_flat_ends() };
        let mut frame = parse_frame_inner(raw, &self.limits, defer, flat, trust_size).map_err(|mut e| {
            // Offsets into the msgpack a JSON value became mean nothing on the wire:
            // point at the JSON value instead.
            e.offset = if json { start } else { start + e.offset };
            e
        })?;
        match &mut frame {
            Decoded::Frame(Frame::Events(b)) => b.wire_len = self.last_wire_len,
            Decoded::Compressed(c) => {
                c.wire_len = self.last_wire_len;
                c.offset = start;
            }
            Decoded::Frame(Frame::Heartbeat) => {}
        }
        Ok(frame)
    }

    /// Decodes the next frame from `buf`. `Ok(None)`: more bytes needed. Error offsets
    /// count from the start of the stream (for a JSON frame whose content is wrong: the
    /// offset of that JSON value). Compressed entries are inflated whole (bounded by
    /// `max_inflated_size`); a server should use [`FrameDecoder::decode_deferred`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        self.decode_inner(buf, false, false).and_then(undeferred)
    }

    /// Like [`FrameDecoder::decode`], but a CompressedPackedForward frame comes back
    /// still compressed, as [`Decoded::Compressed`]: inflate it with
    /// [`CompressedFrame::inflater`] a slice at a time, so memory does not grow with the
    /// compression ratio.
    pub fn decode_deferred(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>> {
        self.decode_inner(buf, true, false)
    }

    /// Like [`FrameDecoder::decode`], but an uncompressed PackedForward frame whose
    /// options carry `size` is counted by that size: its entries are neither walked
    /// nor checked (`invalid` is 0). For receivers that only count events, such as
    /// the load generator's sink, which checks a sample of frames with
    /// [`FrameDecoder::decode`]. Never for a server that routes what it receives.
    pub fn decode_sized(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        self.decode_inner(buf, false, true).and_then(undeferred)
    }

    /// For receivers that only count, as [`FrameDecoder::decode_sized`], and would rather
    /// not hold a large frame's entries at all: when `buf` starts with the header of a
    /// `[tag, entries (str 32 or bin 32), option]` frame whose entries are at least
    /// `min_entries` bytes, takes the header (array, tag and the entries' own header) off
    /// `buf` and returns it. The caller then discards the next
    /// [`SkippedHead::entries_len`] bytes of the stream itself (the ones already in `buf`
    /// and the rest as they arrive), and finishes the frame with
    /// [`FrameDecoder::finish_skipped`]. `None`: not such a frame, or its header is not
    /// complete yet; decode it as usual. Only between frames (JSON streams never qualify).
    pub fn skip_entries_head(&mut self, buf: &mut BytesMut, min_entries: usize) -> Option<SkippedHead> {
        if self.kind == StreamKind::Json || self.skipper.pos() != 0 || buf.first() != Some(&0x93) {
            return None;
        }
        let HeadScan::Packed(PackedHead { tag_at, tag_len, head_len, entries_len }) = packed_head(buf) else {
            return None;
        };
        // A frame the decoder would refuse is left to it, to be refused the same way.
        if entries_len < min_entries || head_len + entries_len > self.limits.max_frame_size {
            return None;
        }
        self.kind = StreamKind::Msgpack;
        let tag = Bytes::copy_from_slice(&buf[tag_at..tag_at + tag_len]);
        let _ = buf.split_to(head_len);
        self.consumed += (head_len + entries_len) as u64;
        Some(SkippedHead { tag, entries_len, head_len })
    }

    /// Reads the option map that ends a frame begun with
    /// [`FrameDecoder::skip_entries_head`], once the caller has discarded its entries:
    /// `Ok(None)` until the whole map is in `buf`. The frame's events are then counted
    /// by the map's `size` (which the caller should check is there).
    pub fn finish_skipped(&mut self, head: &SkippedHead, buf: &mut BytesMut) -> Result<Option<SkippedFrame>> {
        let base = self.consumed;
        // The frame as a whole stays within the limit, as decode would have it.
        let room = self.limits.max_frame_size.saturating_sub(head.head_len + head.entries_len);
        let len = match self.skipper.advance(buf, room, self.limits.max_depth) {
            Ok(None) => return Ok(None),
            Ok(Some(len)) => len,
            Err(mut e) => {
                e.offset += base;
                return Err(e);
            }
        };
        let raw = buf.split_to(len).freeze();
        self.consumed += len as u64;
        self.last_wire_len = head.head_len + head.entries_len + len;
        let mut c = Cursor::new(&raw);
        let option = parse_options(&mut c, &raw).map_err(|mut e| {
            e.offset += base;
            e
        })?;
        if !c.at_end() {
            return Err(DecodeError { offset: base + c.pos as u64, kind: ErrorKind::Trailing });
        }
        Ok(Some(SkippedFrame { tag: head.tag.clone(), option, wire_len: self.last_wire_len }))
    }

    fn decode_inner(&mut self, buf: &mut BytesMut, defer: bool, trust_size: bool) -> Result<Option<Decoded>> {
        let Some(raw) = self.next_value(buf)? else { return Ok(None) };
        self.parse_taken(raw, defer, trust_size).map(Some)
    }
}

/// Where the parts of a `[tag, entries, ...]` frame's header are.
struct PackedHead {
    tag_at: usize,
    tag_len: usize,
    /// Bytes of the array, tag and entries headers.
    head_len: usize,
    entries_len: usize,
}

/// What the start of a buffer says about a `[tag (fixstr or str 8), entries (str 32 or
/// bin 32), ...]` frame (what relays and fluent-bit send).
enum HeadScan {
    /// Nothing yet, or such a header cut short.
    Cut,
    /// Another kind of frame (or not a frame).
    Other,
    Packed(PackedHead),
}

fn packed_head(buf: &[u8]) -> HeadScan {
    let Some(&first) = buf.first() else { return HeadScan::Cut };
    if !matches!(first, 0x92..=0x94) {
        return HeadScan::Other;
    }
    let (tag_at, tag_len) = match buf.get(1) {
        None => return HeadScan::Cut,
        Some(&m @ 0xa0..=0xbf) => (2, (m & 0x1f) as usize),
        Some(0xd9) => match buf.get(2) {
            None => return HeadScan::Cut,
            Some(&n) => (3, n as usize),
        },
        Some(_) => return HeadScan::Other,
    };
    let at = tag_at + tag_len;
    match buf.get(at) {
        None => return HeadScan::Cut,
        Some(0xdb | 0xc6) => {}
        Some(_) => return HeadScan::Other,
    }
    let Some(n) = buf.get(at + 1..at + 5) else { return HeadScan::Cut };
    HeadScan::Packed(PackedHead {
        tag_at,
        tag_len,
        head_len: at + 5,
        entries_len: u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize,
    })
}

/// The length of the frame at the start of a buffer as far as its header tells
/// ([`packed_frame_len`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedLen {
    /// Nothing yet, or the header of a `[tag, entries (str 32 or bin 32), ...]` frame
    /// cut short: more bytes will tell.
    Incomplete,
    /// Such a frame: its array, tag and entries (not the options that may follow).
    Len(usize),
    /// Another kind of frame: its header does not tell its length.
    Other,
}

/// The length of the frame at the start of `buf` when it is `[tag (fixstr or str 8),
/// entries (str 32 or bin 32), ...]`: what relays send. For a receiver sizing its reads
/// (the header is not checked further).
pub fn packed_frame_len(buf: &[u8]) -> PackedLen {
    match packed_head(buf) {
        HeadScan::Cut => PackedLen::Incomplete,
        HeadScan::Other => PackedLen::Other,
        HeadScan::Packed(h) => PackedLen::Len(h.head_len + h.entries_len),
    }
}

/// The header of a frame whose entries the receiver discards unread
/// ([`FrameDecoder::skip_entries_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedHead {
    /// The frame's tag.
    pub tag: Bytes,
    /// Bytes of entries that follow, to discard.
    pub entries_len: usize,
    /// Bytes of the header taken off the buffer.
    head_len: usize,
}

/// A frame whose entries were discarded unread: its tag, options and wire size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFrame {
    /// The frame's tag.
    pub tag: Bytes,
    /// Its options (`size` counts its events, `chunk` asks for an ack).
    pub option: Options,
    /// Its bytes on the wire, header, entries and options.
    pub wire_len: usize,
}

/// A frame decoded without deferring: a compressed one never comes back deferred.
fn undeferred(d: Option<Decoded>) -> Result<Option<Frame>> {
    match d {
        None => Ok(None),
        Some(Decoded::Frame(f)) => Ok(Some(f)),
        Some(Decoded::Compressed(c)) => {
            Err(DecodeError { offset: c.offset, kind: ErrorKind::Inflate("frame left compressed".into()) })
        }
    }
}

/// What [`FrameDecoder::scan`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<'a> {
    /// No complete frame yet.
    Partial,
    /// The stream is JSON: decode it with [`FrameDecoder::decode_deferred`].
    Json,
    /// A Message-mode frame `[tag, time, record]` (no options).
    Message {
        /// The tag's bytes.
        tag: &'a [u8],
        /// `time, record`, as [`EntriesFormat::Message`] entries are.
        entry: &'a [u8],
        /// Whether the entry is a valid event (else it counts as invalid, as in a
        /// decoded frame).
        valid: bool,
        /// The frame's size.
        len: usize,
    },
    /// Another frame (or a heartbeat).
    Other {
        /// The frame's size.
        len: usize,
    },
}

/// What [`FrameDecoder::decode_deferred`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A frame decoded whole (everything but compressed entries).
    Frame(Frame),
    /// A CompressedPackedForward frame whose entries are still compressed.
    Compressed(CompressedFrame),
}

/// A CompressedPackedForward frame before inflation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedFrame {
    /// The frame's tag.
    pub tag: Bytes,
    /// The compressed entries, as received.
    pub data: Bytes,
    /// `option.compressed`: gzip or zstd.
    pub kind: Compression,
    /// The frame's options.
    pub option: Options,
    /// Size of the frame on the wire.
    pub wire_len: usize,
    /// Offset of the frame in the connection's stream (for error messages).
    pub offset: u64,
}

impl CompressedFrame {
    /// An inflater for the entries, bounded by `limits` (`max_inflated_size` in all,
    /// `max_depth` for nesting).
    pub fn inflater(&self, limits: &Limits) -> std::result::Result<Inflater, ErrorKind> {
        Inflater::new(self.kind, self.data.clone(), limits.max_inflated_size, limits.max_depth)
    }

    /// A batch of the entries one slice produced (tag and options of this frame).
    pub fn batch(&self, slice: Slice) -> EventBatch {
        EventBatch {
            tag: self.tag.clone(),
            entries: slice.entries,
            format: EntriesFormat::Packed,
            count: slice.count,
            invalid: slice.invalid,
            mode: Mode::CompressedPackedForward,
            option: self.option.clone(),
            wire_len: self.wire_len,
        }
    }
}

/// Parses one complete frame. Tag and entries are slices of `raw`. Error offsets count
/// from the start of `raw` (for compressed entries: from the start of the inflated
/// entries).
pub fn parse_frame(raw: Bytes, limits: &Limits) -> Result<Frame> {
    match parse_frame_inner(raw, limits, false, None, false)? {
        Decoded::Frame(f) => Ok(f),
        // Never produced without deferring.
        Decoded::Compressed(_) => Err(DecodeError::new(0, ErrorKind::Inflate("frame left compressed".into()))),
    }
}

/// `flat`: the frame decoder's scan found `raw` to be a fixarray of scalars and flat
/// maps ending where these ends say, so a Message-mode record need not be walked again.
/// `trust_size`: see [`FrameDecoder::decode_sized`].
fn parse_frame_inner(
    raw: Bytes,
    limits: &Limits,
    defer: bool,
    flat: Option<[usize; 4]>,
    trust_size: bool,
) -> Result<Decoded> {
    let wire_len = raw.len();
    let mut c = Cursor::new(&raw);
    // The usual first byte: a fixarray of 2 to 4.
    let n = match raw.first() {
        Some(&m @ 0x92..=0x94) => {
            c.pos = 1;
            (m & 0x0f) as u32
        }
        _ => match c.peek()? {
            Head::Scalar { kind: Kind::Nil, .. } => return Ok(Decoded::Frame(Frame::Heartbeat)),
            Head::Array { n, .. } if (2..=4).contains(&n) => c.array_len()?,
            Head::Array { n, .. } => return Err(DecodeError::new(0, ErrorKind::BadArity(n))),
            h => {
                return Err(DecodeError::new(
                    0,
                    ErrorKind::WrongType { expected: "a frame array", found: h.kind().name() },
                ))
            }
        },
    };
    let tag = raw.slice_ref(c.bytes("the tag (a string)")?);
    let second = c.pos;
    // Forward and Message entries are checked (and counted) as they are walked: one
    // pass over them. PackedForward's are counted below, after inflation if need be.
    let (mode, entries, format, opt_count, counts) = match c.peek()? {
        Head::Array { hdr, n: len } => {
            let body = c.pos + hdr;
            let (mut pos, mut walk) = (body, Walk::default());
            for _ in 0..len {
                pos += walk.entry(&raw, pos, EntriesFormat::Packed, limits.max_depth)?;
            }
            c.pos = pos;
            (Mode::Forward, raw.slice(body..pos), EntriesFormat::Packed, n - 2, Some((walk.valid, walk.invalid)))
        }
        Head::Scalar { kind: Kind::Str | Kind::Bin, .. } => {
            let p = c.bytes("entries")?;
            (Mode::PackedForward, raw.slice_ref(p), EntriesFormat::Packed, n - 2, None)
        }
        _ => {
            if n < 3 {
                return Err(DecodeError::new(
                    second,
                    ErrorKind::Invalid { what: "Message-mode frame", why: "it needs a time and a record" },
                ));
            }
            // `[tag, time, record(, option)]` with a flat record (what loggers send): the
            // scan already found where the time and the record end.
            let known = match flat {
                Some([_, tend, rend, _])
                    if limits.max_depth >= 1 && second < tend && tend < rend && rend <= raw.len() =>
                {
                    Some((check_pair(&raw[second..tend], &raw[tend..rend], &raw[second..rend]), rend - second))
                }
                _ => None,
            };
            let (check, used) = match known {
                Some(k) => k,
                None => {
                    read_entry(&raw[second..], EntriesFormat::Message, limits.max_depth).map_err(|e| e.at(second))?
                }
            };
            c.pos = second + used;
            let counts = match check {
                EntryCheck::Valid(_) => (1, 0),
                EntryCheck::Invalid => (0, 1),
            };
            (Mode::Message, raw.slice(second..c.pos), EntriesFormat::Message, n - 3, Some(counts))
        }
    };
    let mut option = Options::default();
    match opt_count {
        0 => {}
        1 => option = parse_options(&mut c, &raw)?,
        _ => return Err(DecodeError::new(0, ErrorKind::BadArity(n))),
    }
    if !c.at_end() {
        return Err(DecodeError::new(c.pos, ErrorKind::Trailing));
    }
    let (mode, entries) = match option.compressed {
        Some(kind @ (Compression::Gzip | Compression::Zstd)) if mode == Mode::PackedForward && defer => {
            return Ok(Decoded::Compressed(CompressedFrame { tag, data: entries, kind, option, wire_len, offset: 0 }));
        }
        Some(kind @ (Compression::Gzip | Compression::Zstd)) if mode == Mode::PackedForward => {
            let inflated =
                compress::inflate(kind, &entries, limits.max_inflated_size).map_err(|k| DecodeError::new(second, k))?;
            (Mode::CompressedPackedForward, Bytes::from(inflated))
        }
        _ => (mode, entries),
    };
    let sized = match option.size {
        Some(n) if trust_size && mode == Mode::PackedForward => u32::try_from(n).ok(),
        _ => None,
    };
    let (count, invalid) = match (counts, sized) {
        (Some(counts), _) => counts,
        (None, Some(n)) => (n, 0),
        (None, None) => {
            let entries_offset = if mode == Mode::CompressedPackedForward {
                0
            } else {
                (entries.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize)
            };
            count_entries(&entries, format, limits.max_depth).map_err(|e| e.at(entries_offset))?
        }
    };
    Ok(Decoded::Frame(Frame::Events(EventBatch { tag, entries, format, count, invalid, mode, option, wire_len })))
}

/// Walks every entry once: proves the entries are well-formed msgpack within the depth
/// limit, and counts valid and invalid events.
fn count_entries(entries: &[u8], format: EntriesFormat, max_depth: usize) -> Result<(u32, u32)> {
    let (mut pos, mut walk) = (0, Walk::default());
    while pos < entries.len() {
        pos += walk.entry(entries, pos, format, max_depth)?;
        if format == EntriesFormat::Message && pos != entries.len() {
            return Err(DecodeError::new(pos, ErrorKind::Trailing));
        }
    }
    Ok((walk.valid, walk.invalid))
}

/// Entries checked one after another and counted: packed ones against the layout of an
/// entry before them ([`Shapes`]) when they have it, the others walked.
#[derive(Default)]
struct Walk {
    shape: Shapes,
    valid: u32,
    invalid: u32,
}

impl Walk {
    /// Counts the entry at `buf[pos..]` as valid or invalid; returns its length.
    /// Errors only on malformed msgpack (offsets relative to `buf`).
    #[inline(always)]
    fn entry(&mut self, buf: &[u8], pos: usize, format: EntriesFormat, max_depth: usize) -> Result<usize> {
        // The layouts' depth: the entry's array and a flat map in it.
        if format == EntriesFormat::Packed && max_depth >= 2 {
            if let Some((len, _)) = self.shape.entry(buf, pos) {
                self.valid = self.valid.saturating_add(1);
                return Ok(len);
            }
        }
        let (check, used) = read_entry(buf.get(pos..).unwrap_or_default(), format, max_depth).map_err(|e| e.at(pos))?;
        match check {
            EntryCheck::Valid(_) => self.valid = self.valid.saturating_add(1),
            EntryCheck::Invalid => self.invalid = self.invalid.saturating_add(1),
        }
        Ok(used)
    }
}

fn parse_options(c: &mut Cursor<'_>, raw: &Bytes) -> Result<Options> {
    let mut o = Options::default();
    if c.rest().first() == Some(&0xc0) {
        c.pos += 1;
        return Ok(o);
    }
    let n = c.map_len()?;
    for _ in 0..n {
        let key = match c.rest().first() {
            Some(0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6) => c.bytes("an option key")?,
            _ => {
                // Non-string keys are not ours: skip key and value.
                c.value()?;
                c.value()?;
                continue;
            }
        };
        // Like fluentd, a nil option is an absent option, and `size` and
        // `fluent_signal` are advisory: a value of another type is ignored.
        // (With duplicate keys the last one wins, as in the Ruby Hash fluentd decodes.)
        if c.rest().first() == Some(&0xc0) {
            c.pos += 1;
            match key {
                b"chunk" => o.chunk = None,
                b"size" => o.size = None,
                b"compressed" => o.compressed = None,
                b"fluent_signal" => o.fluent_signal = None,
                b"metadata" => o.metadata = None,
                _ => {}
            }
            continue;
        }
        match key {
            b"chunk" => {
                let v = c.bytes("option.chunk (a string)")?;
                o.chunk = Some(raw.slice_ref(v));
            }
            b"size" => {
                o.size = read_int(c.value()?).and_then(|v| u64::try_from(v).ok());
            }
            b"compressed" => {
                let at = c.pos;
                let v = c.bytes("option.compressed (a string)")?;
                o.compressed = Some(Compression::parse(v).map_err(|k| DecodeError::new(at, k))?);
            }
            b"fluent_signal" => {
                o.fluent_signal = read_int(c.value()?).and_then(|v| i64::try_from(v).ok());
            }
            b"metadata" => {
                o.metadata = Some(raw.slice_ref(c.value()?));
            }
            _ => {
                c.value()?;
            }
        }
    }
    Ok(o)
}
