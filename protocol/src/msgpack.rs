//! In-place msgpack reading: value headers, a bounds-checked cursor over a borrowed slice,
//! and a resumable, allocation-free value skipper with a nesting limit.
//!
//! Nothing here copies payloads: strings, binaries and whole values are returned as
//! sub-slices of the input. Malformed or truncated input is an error, never a panic.

use crate::error::{DecodeError, ErrorKind, Result};

/// Deepest nesting of arrays/maps accepted anywhere (records included). Bounded so that
/// recursive consumers (JSON rendering) cannot overflow the stack.
pub const MAX_DEPTH: usize = 100;

/// The header of one msgpack value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A value without children; `len` is its whole encoded size (header + payload).
    Scalar {
        /// Its kind.
        kind: Kind,
        /// Header bytes (marker and length).
        hdr: usize,
        /// Header plus payload bytes.
        len: u64,
    },
    /// An array header; the elements follow.
    Array {
        /// Header bytes.
        hdr: usize,
        /// Number of elements.
        n: u32,
    },
    /// A map header; the key/value pairs follow.
    Map {
        /// Header bytes.
        hdr: usize,
        /// Number of key/value pairs.
        n: u32,
    },
}

/// Kind of a scalar value, for type checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool,
    /// A non-negative integer (positive fixint, uint8..64).
    UInt,
    /// A negative fixint or int8..64.
    NegInt,
    /// float32.
    F32,
    /// float64.
    F64,
    /// A string (fixstr, str8..32).
    Str,
    /// A binary (bin8..32).
    Bin,
    /// An extension (fixext, ext8..32), e.g. EventTime.
    Ext,
    /// An array.
    Array,
    /// A map.
    Map,
}

impl Kind {
    /// A name for messages (`integer`, `string`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nil => "nil",
            Kind::Bool => "boolean",
            Kind::UInt | Kind::NegInt => "integer",
            Kind::F32 | Kind::F64 => "float",
            Kind::Str => "string",
            Kind::Bin => "binary",
            Kind::Ext => "extension",
            Kind::Array => "array",
            Kind::Map => "map",
        }
    }
}

impl Head {
    /// The value's kind.
    pub fn kind(&self) -> Kind {
        match *self {
            Head::Scalar { kind, .. } => kind,
            Head::Array { .. } => Kind::Array,
            Head::Map { .. } => Kind::Map,
        }
    }
    /// Header bytes.
    pub fn hdr(&self) -> usize {
        match *self {
            Head::Scalar { hdr, .. } | Head::Array { hdr, .. } | Head::Map { hdr, .. } => hdr,
        }
    }
}

#[inline]
fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
#[inline]
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}

/// Reads the header of the value starting at `buf[0]`. `Ok(None)` means more bytes are
/// needed to read the header itself (payloads are not required to be present).
#[inline(always)]
pub fn head(buf: &[u8]) -> std::result::Result<Option<Head>, ErrorKind> {
    let Some(&m) = buf.first() else { return Ok(None) };
    // Header sizes first, so the slice reads below are always in bounds.
    let need = match m {
        0xc4 | 0xc7 | 0xcc | 0xd0 | 0xd9 | 0xd4..=0xd8 => 2,
        0xc5 | 0xcd | 0xd1 | 0xda | 0xdc | 0xde => 3,
        0xc8 => 4,
        0xc6 | 0xca | 0xce | 0xd2 | 0xdb | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcb | 0xcf | 0xd3 => 9,
        _ => 1,
    };
    if buf.len() < need {
        return Ok(None);
    }
    let s = |kind, hdr: usize, payload: u64| Head::Scalar { kind, hdr, len: hdr as u64 + payload };
    Ok(Some(match m {
        0x00..=0x7f => s(Kind::UInt, 1, 0),
        0x80..=0x8f => Head::Map { hdr: 1, n: (m & 0x0f) as u32 },
        0x90..=0x9f => Head::Array { hdr: 1, n: (m & 0x0f) as u32 },
        0xa0..=0xbf => s(Kind::Str, 1, (m & 0x1f) as u64),
        0xc0 => s(Kind::Nil, 1, 0),
        0xc1 => return Err(ErrorKind::ReservedMarker(m)),
        0xc2 | 0xc3 => s(Kind::Bool, 1, 0),
        0xc4 => s(Kind::Bin, 2, buf[1] as u64),
        0xc5 => s(Kind::Bin, 3, be16(&buf[1..])),
        0xc6 => s(Kind::Bin, 5, be32(&buf[1..])),
        0xc7 => s(Kind::Ext, 3, buf[1] as u64),
        0xc8 => s(Kind::Ext, 4, be16(&buf[1..])),
        0xc9 => s(Kind::Ext, 6, be32(&buf[1..])),
        0xca => s(Kind::F32, 5, 0),
        0xcb => s(Kind::F64, 9, 0),
        0xcc => s(Kind::UInt, 2, 0),
        0xcd => s(Kind::UInt, 3, 0),
        0xce => s(Kind::UInt, 5, 0),
        0xcf => s(Kind::UInt, 9, 0),
        0xd0 => s(Kind::NegInt, 2, 0),
        0xd1 => s(Kind::NegInt, 3, 0),
        0xd2 => s(Kind::NegInt, 5, 0),
        0xd3 => s(Kind::NegInt, 9, 0),
        0xd4 => s(Kind::Ext, 2, 1),
        0xd5 => s(Kind::Ext, 2, 2),
        0xd6 => s(Kind::Ext, 2, 4),
        0xd7 => s(Kind::Ext, 2, 8),
        0xd8 => s(Kind::Ext, 2, 16),
        0xd9 => s(Kind::Str, 2, buf[1] as u64),
        0xda => s(Kind::Str, 3, be16(&buf[1..])),
        0xdb => s(Kind::Str, 5, be32(&buf[1..])),
        0xdc => Head::Array { hdr: 3, n: be16(&buf[1..]) as u32 },
        0xdd => Head::Array { hdr: 5, n: be32(&buf[1..]) as u32 },
        0xde => Head::Map { hdr: 3, n: be16(&buf[1..]) as u32 },
        0xdf => Head::Map { hdr: 5, n: be32(&buf[1..]) as u32 },
        0xe0..=0xff => s(Kind::NegInt, 1, 0),
    }))
}

/// Resumable skipper: finds where one complete msgpack value ends without recursion and
/// without allocation. State survives between calls, so a value arriving over many reads
/// is scanned once in total (no quadratic rescans).
#[derive(Clone)]
pub struct Skipper {
    pos: usize,
    depth: usize,
    /// The one-pass walk was tried on the current value and found it incomplete.
    walked: bool,
    /// Value headers examined over the skipper's life (a measure of work done).
    steps: u64,
    /// Remaining child values of each open container.
    stack: [u64; MAX_DEPTH],
    /// The last value found was a fixarray of scalars and flat maps ([`flat_array_end`]):
    /// where its first four elements end.
    flat: Option<[usize; 4]>,
}

impl Default for Skipper {
    fn default() -> Self {
        Skipper { pos: 0, depth: 0, walked: false, steps: 0, stack: [0; MAX_DEPTH], flat: None }
    }
}

impl std::fmt::Debug for Skipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skipper")
            .field("pos", &self.pos)
            .field("depth", &self.depth)
            .field("steps", &self.steps)
            .finish()
    }
}

impl Skipper {
    /// A skipper at the start of a value.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes scanned so far of the current value.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Value headers examined since the skipper was made, over all values. A value that
    /// arrives whole takes one step per value in it; one that arrives in pieces, at most
    /// two per value (a first one-pass walk that ran out of bytes, then the resumable
    /// walk) plus one per [`Skipper::advance`] call.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// When the value [`Skipper::advance`] last completed is a fixarray whose elements
    /// are all scalars or flat maps (a Forward frame): where its first four elements end
    /// (0 past its last). Frame parsing then needs not walk a record map again.
    pub fn last_flat_ends(&self) -> Option<[usize; 4]> {
        self.flat
    }

    /// Forgets the current value (the step count is kept).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.depth = 0;
        self.walked = false;
    }

    /// Continues scanning `buf` (which always starts at the value's first byte). Returns
    /// `Ok(Some(len))` once the value is complete, `Ok(None)` if more bytes are needed.
    /// `limit` bounds the value's total size: declared lengths beyond it fail at once.
    pub fn advance(&mut self, buf: &[u8], limit: usize, max_depth: usize) -> Result<Option<usize>> {
        let max_depth = max_depth.min(MAX_DEPTH);
        // Nothing buffered: keep the one-pass attempt below for when the value arrives
        // (a server scans its emptied buffer after every read).
        if buf.is_empty() {
            return Ok(None);
        }
        // Usually the whole value is already buffered: find its end in one recursive
        // pass (several times faster than the resumable walk below). Tried once per
        // value, from its start, over at most `limit` bytes (so a value it finds is
        // within the limit). If the value is incomplete, too large or malformed, the
        // resumable walk takes over and gives the same answer as if this had not run.
        if self.pos == 0 && !self.walked {
            self.walked = true;
            self.flat = None;
            let window = &buf[..buf.len().min(limit)];
            // Flat frames (Message, PackedForward) first: no recursion at all.
            let mut ends = [0; 4];
            if let (true, Some((len, values))) = (max_depth >= 2, flat_array_end(window, &mut ends)) {
                self.steps += values;
                self.reset();
                self.flat = Some(ends);
                return Ok(Some(len));
            }
            if let Some(len) = skip_at(&buf[..buf.len().min(limit)], 0, 0, max_depth, &mut self.steps, &mut ()) {
                self.reset();
                return Ok(Some(len));
            }
        }
        loop {
            self.steps += 1;
            let h = match head(&buf[self.pos.min(buf.len())..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(k) => return Err(DecodeError::new(self.pos, k)),
            };
            match h {
                Head::Scalar { len, .. } => {
                    let end = self.pos as u64 + len;
                    if end > limit as u64 {
                        return Err(DecodeError::new(
                            self.pos,
                            ErrorKind::FrameTooLarge { size: end, limit: limit as u64 },
                        ));
                    }
                    if end > buf.len() as u64 {
                        return Ok(None);
                    }
                    self.pos = end as usize;
                }
                Head::Array { hdr, n } | Head::Map { hdr, n } => {
                    let count = if matches!(h, Head::Map { .. }) { 2 * n as u64 } else { n as u64 };
                    let body_start = self.pos + hdr;
                    // Every child takes at least one byte.
                    if body_start as u64 + count > limit as u64 {
                        let what = if matches!(h, Head::Map { .. }) { "map" } else { "array" };
                        return Err(DecodeError::new(self.pos, ErrorKind::CountTooLarge { what, count: n as u64 }));
                    }
                    if count > 0 && self.depth >= max_depth {
                        return Err(DecodeError::new(self.pos, ErrorKind::TooDeep { limit: max_depth }));
                    }
                    self.pos = body_start;
                    if count > 0 {
                        self.stack[self.depth] = count;
                        self.depth += 1;
                        continue;
                    }
                }
            }
            // A value completed: pop every container it completes.
            loop {
                if self.depth == 0 {
                    let len = self.pos;
                    self.reset();
                    return Ok(Some(len));
                }
                let top = &mut self.stack[self.depth - 1];
                *top -= 1;
                if *top == 0 {
                    self.depth -= 1;
                } else {
                    break;
                }
            }
        }
    }
}

/// Length of the complete value at the start of `buf`, or an error if it is malformed,
/// truncated or nested deeper than `max_depth`.
#[inline]
pub fn value_len(buf: &[u8], max_depth: usize) -> Result<usize> {
    value_end(buf, 0, 0, max_depth)
}

/// Recursive skipper for complete buffers: returns the end offset of the value at
/// `pos`, or `None` after telling `err` what is wrong and where. Recursion is bounded by
/// `max_depth` (at most [`MAX_DEPTH`] frames). Every marker is decoded inline, without
/// building a [`Head`]: this is the per-event hot path (validation on decode,
/// iteration, field lookup), so it returns a plain `Option` (two registers) and leaves
/// building errors to a sink that the fast paths make a no-op.
#[inline]
fn skip_at<T: Tally, E: ErrSink>(
    buf: &[u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
    tally: &mut T,
    err: &mut E,
) -> Option<usize> {
    tally.add();
    let Some(&m) = buf.get(pos) else {
        err.set(pos, || ErrorKind::Truncated { missing: 1 });
        return None;
    };
    let (body, count) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Some(pos + 1),
        0xa0..=0xbf => return scalar_end(buf, pos, 1 + (m & 0x1f) as usize, err),
        0xcc | 0xd0 => return scalar_end(buf, pos, 2, err),
        0xcd | 0xd1 => return scalar_end(buf, pos, 3, err),
        0xd4 => return scalar_end(buf, pos, 3, err),
        0xd5 => return scalar_end(buf, pos, 4, err),
        0xca | 0xce | 0xd2 => return scalar_end(buf, pos, 5, err),
        0xd6 => return scalar_end(buf, pos, 6, err),
        0xcb | 0xcf | 0xd3 => return scalar_end(buf, pos, 9, err),
        0xd7 => return scalar_end(buf, pos, 10, err),
        0xd8 => return scalar_end(buf, pos, 18, err),
        0xc4 | 0xd9 => return scalar_end(buf, pos, len_at(buf, pos, 1, err)?.saturating_add(2), err),
        0xc5 | 0xda => return scalar_end(buf, pos, len_at(buf, pos, 2, err)?.saturating_add(3), err),
        0xc6 | 0xdb => return scalar_end(buf, pos, len_at(buf, pos, 4, err)?.saturating_add(5), err),
        0xc7 => return scalar_end(buf, pos, len_at(buf, pos, 1, err)?.saturating_add(3), err),
        0xc8 => return scalar_end(buf, pos, len_at(buf, pos, 2, err)?.saturating_add(4), err),
        0xc9 => return scalar_end(buf, pos, len_at(buf, pos, 4, err)?.saturating_add(6), err),
        0x80..=0x8f => (pos + 1, 2 * (m & 0x0f) as usize),
        0x90..=0x9f => (pos + 1, (m & 0x0f) as usize),
        0xdc..=0xdf => {
            let wide = matches!(m, 0xdd | 0xdf);
            let n = len_at(buf, pos, if wide { 4 } else { 2 }, err)?;
            let body = pos + if wide { 5 } else { 3 };
            let count = if matches!(m, 0xde | 0xdf) { n.saturating_mul(2) } else { n };
            // Every child takes at least one byte.
            if count > buf.len() - body {
                err.set(pos, || ErrorKind::Truncated { missing: count as u64 });
                return None;
            }
            (body, count)
        }
        0xc1 => {
            err.set(pos, || ErrorKind::ReservedMarker(m));
            return None;
        }
    };
    if count > 0 && depth >= max_depth {
        err.set(pos, || ErrorKind::TooDeep { limit: max_depth });
        return None;
    }
    let mut p = body;
    for _ in 0..count {
        p = skip_at(buf, p, depth + 1, max_depth, tally, err)?;
    }
    Some(p)
}

/// A big-endian length of `n` (1, 2 or 4) bytes after the marker at `pos`.
#[inline(always)]
fn len_at<E: ErrSink>(buf: &[u8], pos: usize, n: usize, err: &mut E) -> Option<usize> {
    let Some(b) = buf.get(pos + 1..pos + 1 + n) else {
        err.set(pos, || ErrorKind::Truncated { missing: (pos + 1 + n - buf.len()) as u64 });
        return None;
    };
    Some(match n {
        1 => b[0] as usize,
        2 => u16::from_be_bytes([b[0], b[1]]) as usize,
        _ => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
    })
}

/// The end of a scalar of `len` encoded bytes at `pos`, if it fits in `buf`.
#[inline(always)]
fn scalar_end<E: ErrSink>(buf: &[u8], pos: usize, len: usize, err: &mut E) -> Option<usize> {
    let end = pos.saturating_add(len);
    if end > buf.len() {
        err.set(pos, || ErrorKind::Truncated { missing: (end - buf.len()) as u64 });
        return None;
    }
    Some(end)
}

/// Counts the values [`skip_at`] visits, or not: `()` counts nothing and costs nothing.
trait Tally {
    fn add(&mut self);
}

impl Tally for () {
    #[inline(always)]
    fn add(&mut self) {}
}

impl Tally for u64 {
    #[inline(always)]
    fn add(&mut self) {
        *self += 1;
    }
}

/// Where [`skip_at`] reports what went wrong: `()` drops it (fast paths, which walk
/// again with a real sink to explain a failure), `Option<(offset, kind)>` keeps it.
trait ErrSink {
    fn set(&mut self, at: usize, kind: impl FnOnce() -> ErrorKind);
}

impl ErrSink for () {
    #[inline(always)]
    fn set(&mut self, _: usize, _: impl FnOnce() -> ErrorKind) {}
}

impl ErrSink for Option<(usize, ErrorKind)> {
    #[cold]
    fn set(&mut self, at: usize, kind: impl FnOnce() -> ErrorKind) {
        *self = Some((at, kind()));
    }
}

/// End offset of the complete value at `buf[pos..]`, nested at `depth` (containers
/// deeper than `max_depth` are an error). Error offsets are positions in `buf`.
#[inline]
pub(crate) fn value_end(buf: &[u8], pos: usize, depth: usize, max_depth: usize) -> Result<usize> {
    let max_depth = max_depth.min(MAX_DEPTH);
    match skip_at(buf, pos, depth, max_depth, &mut (), &mut ()) {
        Some(end) => Ok(end),
        None => Err(explain(buf, pos, depth, max_depth)),
    }
}

/// Walks a value known to be bad again, this time recording why.
#[cold]
#[inline(never)]
fn explain(buf: &[u8], pos: usize, depth: usize, max_depth: usize) -> DecodeError {
    let mut err = None;
    let _ = skip_at(buf, pos, depth, max_depth, &mut (), &mut err);
    let (at, kind) = err.unwrap_or((pos, ErrorKind::Truncated { missing: 1 }));
    DecodeError::new(at, kind)
}

/// End offset of the complete value at `buf[pos..]`, or `None` if it is malformed or
/// truncated. For walking values already validated (nesting bounded by [`MAX_DEPTH`]).
#[inline]
pub(crate) fn skip_from(buf: &[u8], pos: usize) -> Option<usize> {
    skip_at(buf, pos, 0, MAX_DEPTH, &mut (), &mut ())
}

/// The end of the scalar (nil, boolean, number, string, bin, ext) at `buf[pos]`, or
/// `None` when the value there is a container, the reserved marker, or runs past the
/// end. The per-value step of the flat fast paths below: no recursion, no error
/// bookkeeping (a `None` sends the caller to the general walk, which explains errors).
#[inline(always)]
pub(crate) fn scalar_end_fast(buf: &[u8], pos: usize) -> Option<usize> {
    let m = *buf.get(pos)?;
    // A fixstr (most keys and many values) takes its length from the marker with an
    // AND instead of the table: the walk is one dependent chain of loads, and the
    // table's load was half of each step's latency.
    if m & 0xe0 == 0xa0 {
        let end = pos + 1 + (m & 0x1f) as usize;
        return (end <= buf.len()).then_some(end);
    }
    let fixed = SCALAR_LEN[m as usize];
    let end = if fixed != 0 {
        pos + fixed as usize
    } else {
        let len8 = |at: usize| buf.get(at).map(|&b| b as usize);
        let len16 = |at: usize| buf.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
        let len32 = |at: usize| buf.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        match m {
            0xc4 | 0xd9 => (pos + 2).saturating_add(len8(pos + 1)?),
            0xc5 | 0xda => (pos + 3).saturating_add(len16(pos + 1)?),
            0xc6 | 0xdb => (pos + 5).saturating_add(len32(pos + 1)?),
            0xc7 => (pos + 3).saturating_add(len8(pos + 1)?),
            0xc8 => (pos + 4).saturating_add(len16(pos + 1)?),
            0xc9 => (pos + 6).saturating_add(len32(pos + 1)?),
            // Containers (0x80..=0x9f, 0xdc..=0xdf) and 0xc1.
            _ => return None,
        }
    };
    (end <= buf.len()).then_some(end)
}

/// The encoded length of a scalar known from its marker alone (fixint, nil, booleans,
/// fixstr, numbers, fixext); 0 for markers whose length follows them (str8/16/32,
/// bin, ext8/16/32), containers and 0xc1. One load per value in the fast paths.
static SCALAR_LEN: [u8; 256] = scalar_len_table();

const fn scalar_len_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let m = i as u8;
        t[i] = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
            0xa0..=0xbf => 1 + (m & 0x1f),
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 | 0xd4 => 3,
            0xd5 => 4,
            0xca | 0xce | 0xd2 => 5,
            0xd6 => 6,
            0xcb | 0xcf | 0xd3 => 9,
            0xd7 => 10,
            0xd8 => 18,
            _ => 0,
        };
        i += 1;
    }
    t
}

/// The end of the map at `buf[pos]` when every key and value in it is a scalar (the
/// usual log record), or `None` when it holds a container, is not a map, or is
/// truncated: the caller then takes the general walk. A flat map is within any nesting
/// limit, so no depth is tracked.
#[inline]
pub(crate) fn flat_map_end(buf: &[u8], pos: usize) -> Option<usize> {
    flat_map_end_counted(buf, pos).map(|(end, _)| end)
}

/// The fixmap or map16 header at `buf[pos]`: where its first key starts and how many
/// keys and values follow. None for anything else (map32, which a log record does not
/// need, included) or a truncated header. What the flat fast paths take.
#[inline(always)]
pub(crate) fn small_map_head(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let m = *buf.get(pos)?;
    match m {
        0x80..=0x8f => Some((pos + 1, 2 * (m & 0x0f) as usize)),
        0xde => {
            let b = buf.get(pos + 1..pos + 3)?;
            Some((pos + 3, 2 * u16::from_be_bytes([b[0], b[1]]) as usize))
        }
        _ => None,
    }
}

/// [`flat_map_end`], with the number of values walked (the map and its keys and values).
#[inline]
fn flat_map_end_counted(buf: &[u8], pos: usize) -> Option<(usize, u64)> {
    let (mut p, n) = small_map_head(buf, pos)?;
    for _ in 0..n {
        p = scalar_end_fast(buf, p)?;
    }
    Some((p, 1 + n as u64))
}

/// The end of a fixarray (a Forward frame: tag, time or entries, record or options)
/// whose elements are scalars or flat maps, with the number of values walked; `None`
/// when it holds anything else or is incomplete (the general walk decides). Message and
/// PackedForward frames take this path; it visits each value once, without recursion.
#[inline]
pub(crate) fn flat_array_end(buf: &[u8], ends: &mut [usize; 4]) -> Option<(usize, u64)> {
    let m = *buf.first()?;
    let n = match m {
        0x90..=0x9f => (m & 0x0f) as usize,
        _ => return None,
    };
    let (mut p, mut values) = (1, 1u64);
    for i in 0..n {
        match *buf.get(p)? {
            0x80..=0x8f | 0xde => {
                let (end, v) = flat_map_end_counted(buf, p)?;
                p = end;
                values += v;
            }
            _ => {
                p = scalar_end_fast(buf, p)?;
                values += 1;
            }
        }
        if let Some(e) = ends.get_mut(i) {
            *e = p;
        }
    }
    Some((p, values))
}

/// Unchecked-depth variant used on data already validated (depth was checked on decode).
#[inline]
pub(crate) fn skip(buf: &[u8]) -> Result<usize> {
    value_len(buf, MAX_DEPTH)
}

/// A bounds-checked cursor over a borrowed msgpack slice.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    /// The bytes read.
    pub buf: &'a [u8],
    /// The offset of the next value in `buf`.
    pub pos: usize,
}

fn wrong(pos: usize, expected: &'static str, found: Kind) -> DecodeError {
    DecodeError::new(pos, ErrorKind::WrongType { expected, found: found.name() })
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    /// True when every byte was read.
    #[inline]
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    /// The bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    /// The next value's header, without moving.
    #[inline]
    pub fn peek(&self) -> Result<Head> {
        match head(self.rest()) {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(DecodeError::new(self.pos, ErrorKind::Truncated { missing: 1 })),
            Err(k) => Err(DecodeError::new(self.pos, k)),
        }
    }

    /// Skips one whole value and returns its bytes.
    #[inline]
    pub fn value(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        let n = skip(self.rest()).map_err(|e| e.at(start))?;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    /// Reads an array header and returns its length (the elements come next).
    #[inline]
    pub fn array_len(&mut self) -> Result<u32> {
        match self.peek()? {
            Head::Array { hdr, n } => {
                self.pos += hdr;
                Ok(n)
            }
            h => Err(wrong(self.pos, "array", h.kind())),
        }
    }

    /// Reads a map header and returns its number of pairs.
    #[inline]
    pub fn map_len(&mut self) -> Result<u32> {
        match self.peek()? {
            Head::Map { hdr, n } => {
                self.pos += hdr;
                Ok(n)
            }
            h => Err(wrong(self.pos, "map", h.kind())),
        }
    }

    /// A str or bin payload, borrowed.
    #[inline]
    pub fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8]> {
        // Tags, option keys and chunk ids are usually fixstr.
        if let Some(&m @ 0xa0..=0xbf) = self.buf.get(self.pos) {
            let end = self.pos + 1 + (m & 0x1f) as usize;
            if let Some(s) = self.buf.get(self.pos + 1..end) {
                self.pos = end;
                return Ok(s);
            }
        }
        self.bytes_slow(expected)
    }

    fn bytes_slow(&mut self, expected: &'static str) -> Result<&'a [u8]> {
        match self.peek()? {
            Head::Scalar { kind: Kind::Str | Kind::Bin, hdr, len } => {
                let start = self.pos;
                let end = start as u64 + len;
                if end > self.buf.len() as u64 {
                    return Err(DecodeError::new(start, ErrorKind::Truncated { missing: end - self.buf.len() as u64 }));
                }
                self.pos = end as usize;
                Ok(&self.buf[start + hdr..self.pos])
            }
            h => Err(wrong(self.pos, expected, h.kind())),
        }
    }

    /// Reads a boolean.
    pub fn bool(&mut self) -> Result<bool> {
        match self.rest().first() {
            Some(0xc2) => {
                self.pos += 1;
                Ok(false)
            }
            Some(0xc3) => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(wrong(self.pos, "boolean", self.peek()?.kind())),
        }
    }

    /// Reads an integer of any width and sign.
    pub fn int(&mut self) -> Result<i128> {
        let start = self.pos;
        let v = read_int(self.value()?).ok_or_else(|| {
            let k = head(&self.buf[start..]).ok().flatten().map(|h| h.kind()).unwrap_or(Kind::Nil);
            wrong(start, "integer", k)
        })?;
        Ok(v)
    }
}

/// Reads an integer value (any width, signed or not) from its complete encoding.
#[inline]
pub fn read_int(v: &[u8]) -> Option<i128> {
    let m = *v.first()?;
    let b = &v[1..];
    let get = |n: usize| -> Option<&[u8]> { b.get(..n) };
    Some(match m {
        0x00..=0x7f => m as i128,
        0xe0..=0xff => (m as i8) as i128,
        0xcc => get(1)?[0] as i128,
        0xcd => u16::from_be_bytes(get(2)?.try_into().ok()?) as i128,
        0xce => u32::from_be_bytes(get(4)?.try_into().ok()?) as i128,
        0xcf => u64::from_be_bytes(get(8)?.try_into().ok()?) as i128,
        0xd0 => (get(1)?[0] as i8) as i128,
        0xd1 => i16::from_be_bytes(get(2)?.try_into().ok()?) as i128,
        0xd2 => i32::from_be_bytes(get(4)?.try_into().ok()?) as i128,
        0xd3 => i64::from_be_bytes(get(8)?.try_into().ok()?) as i128,
        _ => return None,
    })
}

/// Reads a float32/float64 value.
#[inline]
pub fn read_float(v: &[u8]) -> Option<f64> {
    match *v.first()? {
        0xca => Some(f32::from_be_bytes(v.get(1..5)?.try_into().ok()?) as f64),
        0xcb => Some(f64::from_be_bytes(v.get(1..9)?.try_into().ok()?)),
        _ => None,
    }
}

/// Reads an ext value: (type, payload).
#[inline]
pub fn read_ext(v: &[u8]) -> Option<(i8, &[u8])> {
    match head(v).ok()?? {
        Head::Scalar { kind: Kind::Ext, hdr, len } => {
            let ty = v.get(hdr - 1).copied()? as i8;
            Some((ty, v.get(hdr..len as usize)?))
        }
        _ => None,
    }
}

/// Reads a str or bin payload from a complete value.
#[inline]
pub fn read_bytes(v: &[u8]) -> Option<&[u8]> {
    match head(v).ok()?? {
        Head::Scalar { kind: Kind::Str | Kind::Bin, hdr, len } => v.get(hdr..len as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
