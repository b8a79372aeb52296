//! Encoders for every Forward mode, the ack response, and msgpack primitives ([`raw`])
//! for tools that build records. All encoders append to a caller's `Vec<u8>` so buffers
//! can be reused across frames.

use crate::compress::{self, Compression};
use crate::event::EventTime;

/// msgpack primitives, smallest encoding first (as msgpack-ruby does).
pub mod raw {
    use crate::event::EventTime;

    /// Appends `nil`.
    #[inline]
    pub fn nil(out: &mut Vec<u8>) {
        out.push(0xc0);
    }
    /// Appends a boolean.
    #[inline]
    pub fn bool(out: &mut Vec<u8>, b: bool) {
        out.push(if b { 0xc3 } else { 0xc2 });
    }
    /// Appends an unsigned integer (positive fixint, uint8/16/32/64).
    #[inline]
    pub fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 128 {
            out.push(v as u8);
        } else if v <= u8::MAX as u64 {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= u16::MAX as u64 {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u32::MAX as u64 {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    /// Appends a signed integer (negative fixint, int8/16/32/64; non-negative values as [`uint`]).
    #[inline]
    pub fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            uint(out, v as u64)
        } else if v >= -32 {
            out.push(v as i8 as u8);
        } else if v >= i8::MIN as i64 {
            out.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= i16::MIN as i64 {
            out.push(0xd1);
            out.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i32::MIN as i64 {
            out.push(0xd2);
            out.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    /// Appends a float64.
    #[inline]
    pub fn f64(out: &mut Vec<u8>, v: f64) {
        out.push(0xcb);
        out.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends the header of a string of `len` bytes (fixstr, str8/16/32).
    #[inline(always)]
    pub fn str_header(out: &mut Vec<u8>, len: usize) {
        if len < 32 {
            out.push(0xa0 | len as u8);
        } else if len <= u8::MAX as usize {
            out.extend_from_slice(&[0xd9, len as u8]);
        } else if len <= u16::MAX as usize {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    /// Appends a string (header and bytes); the bytes are not checked for UTF-8.
    #[inline(always)]
    pub fn str(out: &mut Vec<u8>, s: &[u8]) {
        str_header(out, s.len());
        out.extend_from_slice(s);
    }
    /// Appends the header of a binary of `len` bytes (bin8/16/32).
    #[inline]
    pub fn bin_header(out: &mut Vec<u8>, len: usize) {
        if len <= u8::MAX as usize {
            out.extend_from_slice(&[0xc4, len as u8]);
        } else if len <= u16::MAX as usize {
            out.push(0xc5);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0xc6);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    /// Appends a binary (header and bytes).
    #[inline]
    pub fn bin(out: &mut Vec<u8>, b: &[u8]) {
        bin_header(out, b.len());
        out.extend_from_slice(b);
    }
    /// Appends the header of an array of `n` elements (fixarray, array16/32).
    #[inline]
    pub fn array_header(out: &mut Vec<u8>, n: u32) {
        if n < 16 {
            out.push(0x90 | n as u8);
        } else if n <= u16::MAX as u32 {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xdd);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    /// Sets the one-byte placeholder header at `at` of a container written before its
    /// count was known (a map when `map`, else an array) for `n` elements: in place
    /// below 16, else widened to the 16/32-bit form, moving the elements after it.
    #[inline]
    pub fn patch_header(out: &mut Vec<u8>, at: usize, n: u32, map: bool) {
        if n < 16 {
            out[at] = if map { 0x80 } else { 0x90 } | n as u8;
            return;
        }
        widen_header(out, at, n, map);
    }
    /// [`patch_header`] from 16 elements (not inlined: rare).
    #[inline(never)]
    fn widen_header(out: &mut Vec<u8>, at: usize, n: u32, map: bool) {
        let mut h = [0u8; 5];
        let len = if n <= u16::MAX as u32 {
            h[0] = if map { 0xde } else { 0xdc };
            h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            3
        } else {
            h[0] = if map { 0xdf } else { 0xdd };
            h[1..5].copy_from_slice(&n.to_be_bytes());
            5
        };
        out.splice(at..at + 1, h[..len].iter().copied());
    }
    /// Appends the header of a map of `n` key/value pairs (fixmap, map16/32).
    #[inline]
    pub fn map_header(out: &mut Vec<u8>, n: u32) {
        if n < 16 {
            out.push(0x80 | n as u8);
        } else if n <= u16::MAX as u32 {
            out.push(0xde);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xdf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    /// EventTime as fixext8 type 0.
    #[inline]
    pub fn event_time(out: &mut Vec<u8>, t: EventTime) {
        out.extend_from_slice(&event_time_bytes(t));
    }
    /// An EventTime ext as its 10 bytes (one append instead of three).
    #[inline]
    pub fn event_time_bytes(t: EventTime) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = 0xd7;
        b[2..6].copy_from_slice(&t.sec.to_be_bytes());
        b[6..10].copy_from_slice(&t.nsec.to_be_bytes());
        b
    }
}

/// How to encode an event's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// EventTime ext (nanoseconds kept).
    EventTime,
    /// Integer seconds (what old clients and `time_as_integer true` send).
    Integer,
}

/// Appends an event's time in format `f`.
#[inline]
pub fn time(out: &mut Vec<u8>, t: EventTime, f: TimeFormat) {
    match f {
        TimeFormat::EventTime => raw::event_time(out, t),
        TimeFormat::Integer => raw::uint(out, t.sec as u64),
    }
}

/// Appends one `[time, record]` entry; `record` is an encoded map.
#[inline]
pub fn entry(out: &mut Vec<u8>, t: EventTime, f: TimeFormat, record: &[u8]) {
    out.push(0x92);
    time(out, t, f);
    out.extend_from_slice(record);
}

/// Options to send with a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionsOut<'a> {
    /// Request an ack for this chunk id.
    pub chunk: Option<&'a [u8]>,
    /// Number of events (fluentd sends it with PackedForward).
    pub size: Option<u64>,
    /// `compressed`: how the entries are compressed (CompressedPackedForward).
    pub compressed: Option<Compression>,
}

impl OptionsOut<'_> {
    fn is_empty(&self) -> bool {
        self.chunk.is_none() && self.size.is_none() && self.compressed.is_none()
    }
    fn write(&self, out: &mut Vec<u8>) {
        let n = self.chunk.is_some() as u32 + self.size.is_some() as u32 + self.compressed.is_some() as u32;
        raw::map_header(out, n);
        if let Some(s) = self.size {
            raw::str(out, b"size");
            raw::uint(out, s);
        }
        if let Some(c) = self.chunk {
            raw::str(out, b"chunk");
            raw::str(out, c);
        }
        if let Some(c) = self.compressed {
            raw::str(out, b"compressed");
            raw::str(out, c.name().as_bytes());
        }
    }
}

/// Message mode: `[tag, time, record(, option)]`.
pub fn message(out: &mut Vec<u8>, tag: &[u8], t: EventTime, f: TimeFormat, record: &[u8], opt: &OptionsOut<'_>) {
    out.push(if opt.is_empty() { 0x93 } else { 0x94 });
    raw::str(out, tag);
    time(out, t, f);
    out.extend_from_slice(record);
    if !opt.is_empty() {
        opt.write(out);
    }
}

/// Forward mode: `[tag, [entries...](, option)]`; `entries` holds `count` encoded
/// `[time, record]` arrays back to back.
pub fn forward(out: &mut Vec<u8>, tag: &[u8], entries: &[u8], count: u32, opt: &OptionsOut<'_>) {
    out.push(if opt.is_empty() { 0x92 } else { 0x93 });
    raw::str(out, tag);
    raw::array_header(out, count);
    out.extend_from_slice(entries);
    if !opt.is_empty() {
        opt.write(out);
    }
}

/// How PackedForward carries its entries: msgpack `bin` or `str` (fluentd's out_forward
/// sends str32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntriesType {
    /// msgpack bin (bin8/16/32 by length).
    Bin,
    /// msgpack str32, whatever the length (as fluentd's out_forward writes it).
    Str32,
}

/// The header of a PackedForward frame up to (and including) the entries' length prefix.
/// Write the entries and then [`packed_forward_trailer`] after it: this lets a sender
/// write entries it already holds without copying them into one buffer.
pub fn packed_forward_header(out: &mut Vec<u8>, tag: &[u8], entries_len: usize, ty: EntriesType, opt: &OptionsOut<'_>) {
    out.push(if opt.is_empty() { 0x92 } else { 0x93 });
    raw::str(out, tag);
    match ty {
        EntriesType::Bin => raw::bin_header(out, entries_len),
        EntriesType::Str32 => {
            out.push(0xdb);
            out.extend_from_slice(&(entries_len as u32).to_be_bytes());
        }
    }
}

/// The option map that ends a PackedForward frame (nothing if there are no options).
pub fn packed_forward_trailer(out: &mut Vec<u8>, opt: &OptionsOut<'_>) {
    if !opt.is_empty() {
        opt.write(out);
    }
}

/// PackedForward: `[tag, bin(entries)(, option)]`.
pub fn packed_forward(out: &mut Vec<u8>, tag: &[u8], entries: &[u8], ty: EntriesType, opt: &OptionsOut<'_>) {
    packed_forward_header(out, tag, entries.len(), ty, opt);
    out.extend_from_slice(entries);
    packed_forward_trailer(out, opt);
}

/// CompressedPackedForward with gzip: compresses `entries` and sets
/// `option.compressed = "gzip"`.
pub fn compressed_packed_forward(out: &mut Vec<u8>, tag: &[u8], entries: &[u8], opt: &OptionsOut<'_>) {
    let z = compress::gzip(entries, 6);
    let opt = OptionsOut { compressed: Some(Compression::Gzip), ..*opt };
    packed_forward(out, tag, &z, EntriesType::Bin, &opt);
}

/// The ack response `{"ack": chunk}`, echoing the chunk id byte for byte.
pub fn ack(out: &mut Vec<u8>, chunk: &[u8]) {
    raw::map_header(out, 1);
    raw::str(out, b"ack");
    raw::str(out, chunk);
}

/// The ack response for a JSON connection: `{"ack":"<chunk>"}`.
pub fn ack_json(out: &mut Vec<u8>, chunk: &[u8]) {
    out.extend_from_slice(b"{\"ack\":");
    crate::event::write_json_str(chunk, out);
    out.push(b'}');
}

/// Parses an ack response (`{"ack": chunk}`) and returns the chunk id.
pub fn parse_ack(v: &[u8]) -> crate::Result<&[u8]> {
    let mut c = crate::msgpack::Cursor::new(v);
    let n = c.map_len()?;
    let mut found = None;
    for _ in 0..n {
        let k = c.value()?;
        if crate::msgpack::read_bytes(k) == Some(b"ack") {
            found = Some(c.bytes("the ack id (a string)")?);
        } else {
            c.value()?;
        }
    }
    found.ok_or(crate::DecodeError {
        offset: 0,
        kind: crate::ErrorKind::Invalid { what: "ack response", why: "no \"ack\" key" },
    })
}
