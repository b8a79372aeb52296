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
        kind: Kind,
        hdr: usize,
        len: u64,
    },
    Array {
        hdr: usize,
        n: u32,
    },
    Map {
        hdr: usize,
        n: u32,
    },
}

/// Kind of a scalar value, for type checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nil,
    Bool,
    UInt,
    NegInt,
    F32,
    F64,
    Str,
    Bin,
    Ext,
    Array,
    Map,
}

impl Kind {
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
    pub fn kind(&self) -> Kind {
        match *self {
            Head::Scalar { kind, .. } => kind,
            Head::Array { .. } => Kind::Array,
            Head::Map { .. } => Kind::Map,
        }
    }
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
#[inline]
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
    /// Value headers examined over the skipper's life (a measure of work done).
    steps: u64,
    /// Remaining child values of each open container.
    stack: [u64; MAX_DEPTH],
}

impl Default for Skipper {
    fn default() -> Self {
        Skipper { pos: 0, depth: 0, steps: 0, stack: [0; MAX_DEPTH] }
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes scanned so far of the current value.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Value headers examined since the skipper was made, over all values: at most one
    /// per value plus one per [`Skipper::advance`] call that ran out of bytes.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Forgets the current value (the step count is kept).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.depth = 0;
    }

    /// Continues scanning `buf` (which always starts at the value's first byte). Returns
    /// `Ok(Some(len))` once the value is complete, `Ok(None)` if more bytes are needed.
    /// `limit` bounds the value's total size: declared lengths beyond it fail at once.
    pub fn advance(&mut self, buf: &[u8], limit: usize, max_depth: usize) -> Result<Option<usize>> {
        let max_depth = max_depth.min(MAX_DEPTH);
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
                    self.pos = body_start;
                    if count > 0 {
                        if self.depth >= max_depth {
                            return Err(DecodeError::new(self.pos, ErrorKind::TooDeep { limit: max_depth }));
                        }
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
    match skip_at(buf, 0, 0, max_depth.min(MAX_DEPTH)) {
        Ok(end) => Ok(end),
        Err((at, kind)) => Err(DecodeError::new(at, kind)),
    }
}

/// Recursive skipper for complete buffers: returns the end offset of the value at
/// `pos`. Recursion is bounded by `max_depth` (at most [`MAX_DEPTH`] frames), and the
/// common small types are decoded inline: this is the per-event hot path.
#[inline]
fn skip_at(buf: &[u8], pos: usize, depth: usize, max_depth: usize) -> std::result::Result<usize, (usize, ErrorKind)> {
    let truncated = |need: u64| (pos, ErrorKind::Truncated { missing: need });
    let Some(&m) = buf.get(pos) else { return Err(truncated(1)) };
    let end = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => pos + 1,
        0xa0..=0xbf => pos + 1 + (m & 0x1f) as usize,
        0x80..=0x9f => {
            let n = (m & 0x0f) as usize * if m < 0x90 { 2 } else { 1 };
            if n > 0 && depth >= max_depth {
                return Err((pos, ErrorKind::TooDeep { limit: max_depth }));
            }
            let mut p = pos + 1;
            for _ in 0..n {
                p = skip_at(buf, p, depth + 1, max_depth)?;
            }
            return Ok(p);
        }
        _ => match head(&buf[pos..]) {
            Ok(Some(Head::Scalar { len, .. })) => {
                let end = pos as u64 + len;
                if end > buf.len() as u64 {
                    return Err(truncated(end - buf.len() as u64));
                }
                end as usize
            }
            Ok(Some(Head::Array { hdr, n }) | Some(Head::Map { hdr, n })) => {
                let count = if m == 0xde || m == 0xdf { 2 * n as u64 } else { n as u64 };
                // Every child takes at least one byte.
                if count > (buf.len() - pos - hdr) as u64 {
                    return Err(truncated(count));
                }
                if count > 0 && depth >= max_depth {
                    return Err((pos, ErrorKind::TooDeep { limit: max_depth }));
                }
                let mut p = pos + hdr;
                for _ in 0..count {
                    p = skip_at(buf, p, depth + 1, max_depth)?;
                }
                return Ok(p);
            }
            Ok(None) => return Err(truncated(1)),
            Err(k) => return Err((pos, k)),
        },
    };
    if end > buf.len() {
        return Err(truncated((end - buf.len()) as u64));
    }
    Ok(end)
}

/// Unchecked-depth variant used on data already validated (depth was checked on decode).
#[inline]
pub(crate) fn skip(buf: &[u8]) -> Result<usize> {
    value_len(buf, MAX_DEPTH)
}

/// A bounds-checked cursor over a borrowed msgpack slice.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

fn wrong(pos: usize, expected: &'static str, found: Kind) -> DecodeError {
    DecodeError::new(pos, ErrorKind::WrongType { expected, found: found.name() })
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub fn peek(&self) -> Result<Head> {
        match head(self.rest()) {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(DecodeError::new(self.pos, ErrorKind::Truncated { missing: 1 })),
            Err(k) => Err(DecodeError::new(self.pos, k)),
        }
    }

    /// Skips one whole value and returns its bytes.
    pub fn value(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        let n = skip(self.rest()).map_err(|e| e.at(start))?;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    pub fn array_len(&mut self) -> Result<u32> {
        match self.peek()? {
            Head::Array { hdr, n } => {
                self.pos += hdr;
                Ok(n)
            }
            h => Err(wrong(self.pos, "array", h.kind())),
        }
    }

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
    pub fn bytes(&mut self, expected: &'static str) -> Result<&'a [u8]> {
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
mod tests {
    use super::*;

    #[test]
    fn skipper_handles_nested_and_resumes() {
        // [1, {"a": [2, 3]}, "xyz"]
        let v: &[u8] = &[0x93, 0x01, 0x81, 0xa1, b'a', 0x92, 0x02, 0x03, 0xa3, b'x', b'y', b'z'];
        assert_eq!(value_len(v, 10).unwrap(), v.len());
        let mut sk = Skipper::new();
        for i in 0..v.len() {
            assert_eq!(sk.advance(&v[..i], 1000, 10).unwrap(), None, "prefix {i}");
        }
        assert_eq!(sk.advance(v, 1000, 10).unwrap(), Some(v.len()));
    }

    #[test]
    fn depth_limit_is_enforced() {
        let mut v = vec![0x91u8; 200];
        v.push(0xc0);
        let e = value_len(&v, MAX_DEPTH).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::TooDeep { .. }));
    }

    #[test]
    fn huge_declared_lengths_fail_early() {
        let v = [0xc6, 0xff, 0xff, 0xff, 0xff];
        let mut sk = Skipper::new();
        assert!(matches!(sk.advance(&v, 1 << 20, 10).unwrap_err().kind, ErrorKind::FrameTooLarge { .. }));
        let v = [0xdd, 0xff, 0xff, 0xff, 0xff];
        let mut sk = Skipper::new();
        assert!(matches!(sk.advance(&v, 1 << 20, 10).unwrap_err().kind, ErrorKind::CountTooLarge { .. }));
    }

    #[test]
    fn reserved_marker_is_an_error() {
        assert!(matches!(value_len(&[0xc1], 10).unwrap_err().kind, ErrorKind::ReservedMarker(0xc1)));
    }

    #[test]
    fn ints_of_every_width() {
        assert_eq!(read_int(&[0x05]), Some(5));
        assert_eq!(read_int(&[0xff]), Some(-1));
        assert_eq!(read_int(&[0xcd, 0x01, 0x00]), Some(256));
        assert_eq!(read_int(&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]), Some(-2));
        assert_eq!(read_int(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Some(u64::MAX as i128));
        assert_eq!(read_int(&[0xcd, 0x01]), None);
    }
}
