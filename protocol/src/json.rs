//! JSON on the Forward port, as fluentd's in_forward accepts it: a connection whose first
//! byte is `{` or `[` carries a stream of JSON values instead of msgpack. This module
//! finds value boundaries incrementally (resumable, one pass) and converts a complete
//! value to msgpack so the same frame parser handles both.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::encode::raw;
use crate::error::{DecodeError, ErrorKind, Result};
use crate::msgpack::{self, Head, MAX_DEPTH};

/// Resumable scanner for the end of one top-level JSON array or object.
#[derive(Debug, Default, Clone)]
pub struct JsonScanner {
    pos: usize,
    depth: usize,
    in_str: bool,
    esc: bool,
}

impl JsonScanner {
    /// Number of leading whitespace bytes (between values) to discard.
    pub fn leading_ws(buf: &[u8]) -> usize {
        buf.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).count()
    }

    /// Bytes of the current value scanned so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Continues scanning `buf` (starting at the value's first byte). Returns the
    /// value's length once complete. A value longer than `limit` is an error, whether
    /// it arrives in pieces or in one read; nothing past `limit + 1` bytes is scanned.
    pub fn advance(&mut self, buf: &[u8], limit: usize) -> Result<Option<usize>> {
        if self.pos == 0 {
            match buf.first() {
                None => return Ok(None),
                Some(b'[' | b'{') => {}
                Some(&b) => {
                    return Err(DecodeError::new(
                        0,
                        ErrorKind::Json(format!("expected '[' or '{{' to start a message, found byte 0x{b:02x}")),
                    ))
                }
            }
        }
        let end = buf.len().min(limit.saturating_add(1));
        while self.pos < end {
            let b = buf[self.pos];
            self.pos += 1;
            if self.in_str {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_str = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(DecodeError::new(self.pos - 1, ErrorKind::TooDeep { limit: MAX_DEPTH }));
                    }
                }
                b']' | b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        if self.pos > limit {
            return Err(DecodeError::new(0, ErrorKind::FrameTooLarge { size: self.pos as u64, limit: limit as u64 }));
        }
        if self.depth == 0 && self.pos > 0 {
            let len = self.pos;
            *self = JsonScanner::default();
            return Ok(Some(len));
        }
        Ok(None)
    }
}

/// Parses one complete JSON value and re-encodes it as msgpack (smallest encodings, as
/// msgpack-ruby writes them; object keys keep their order, duplicates included).
///
/// The conversion streams: no value tree is built, so memory is the output (at most a
/// few times the JSON's size, e.g. `0.5` becomes a 9-byte float64) plus a constant.
/// Errors carry the byte offset in `json`.
pub fn to_msgpack(json: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    to_msgpack_into(json, &mut out)?;
    Ok(out)
}

/// [`to_msgpack`], appending to `out` (a buffer reused across calls). On error `out`
/// is left as it was.
pub fn to_msgpack_into(json: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    let mut de = serde_json::Deserializer::from_slice(json);
    let res = ToMsgpack { out: &mut *out }.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = res {
        out.truncate(start);
        return Err(DecodeError::new(byte_offset(json, e.line(), e.column()), ErrorKind::Json(e.to_string())));
    }
    canonicalize(out, start);
    Ok(())
}

/// serde_json reports 1-based line and column; turn them into a byte offset.
fn byte_offset(json: &[u8], line: usize, column: usize) -> usize {
    let line_start =
        if line <= 1 { 0 } else { memchr::memchr_iter(b'\n', json).nth(line - 2).map_or(json.len(), |i| i + 1) };
    (line_start + column.saturating_sub(1)).min(json.len())
}

/// Writes each visited JSON value as msgpack. Containers get a 5-byte array32/map32
/// header whose count is patched when the container ends ([`canonicalize`] shrinks them).
struct ToMsgpack<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for ToMsgpack<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToMsgpack<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        raw::nil(self.out);
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<(), E> {
        raw::bool(self.out, v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<(), E> {
        raw::uint(self.out, v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<(), E> {
        raw::int(self.out, v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<(), E> {
        raw::f64(self.out, v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        raw::str(self.out, v.as_bytes());
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let at = self.out.len();
        self.out.extend_from_slice(&[0xdd, 0, 0, 0, 0]);
        let mut n = 0u32;
        while seq.next_element_seed(ToMsgpack { out: &mut *self.out })?.is_some() {
            n = n.saturating_add(1);
        }
        self.out[at + 1..at + 5].copy_from_slice(&n.to_be_bytes());
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let at = self.out.len();
        self.out.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
        let mut n = 0u32;
        while map.next_key_seed(ToMsgpack { out: &mut *self.out })?.is_some() {
            map.next_value_seed(ToMsgpack { out: &mut *self.out })?;
            n = n.saturating_add(1);
        }
        self.out[at + 1..at + 5].copy_from_slice(&n.to_be_bytes());
        Ok(())
    }
}

/// Rewrites the array32/map32 headers [`ToMsgpack`] wrote with the smallest header for
/// their count, in place, in one pass (a smaller header never overtakes the reader).
fn canonicalize(buf: &mut Vec<u8>, start: usize) {
    let (mut r, mut w) = (start, start);
    while r < buf.len() {
        match msgpack::head(&buf[r..]) {
            Ok(Some(Head::Array { hdr, n })) | Ok(Some(Head::Map { hdr, n })) => {
                let map = buf[r] == 0xdf;
                let mut h = [0u8; 5];
                let len = match (n, map) {
                    (0..=15, false) => {
                        h[0] = 0x90 | n as u8;
                        1
                    }
                    (0..=15, true) => {
                        h[0] = 0x80 | n as u8;
                        1
                    }
                    (16..=0xffff, _) => {
                        h[0] = if map { 0xde } else { 0xdc };
                        h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
                        3
                    }
                    _ => {
                        h[0] = if map { 0xdf } else { 0xdd };
                        h[1..5].copy_from_slice(&n.to_be_bytes());
                        5
                    }
                };
                buf[w..w + len].copy_from_slice(&h[..len]);
                r += hdr;
                w += len;
            }
            Ok(Some(Head::Scalar { len, .. })) => {
                let len = len as usize;
                buf.copy_within(r..r + len, w);
                r += len;
                w += len;
            }
            // Cannot happen: the buffer holds complete values written by raw::*.
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_ends_across_reads() {
        let s = br#"["tag", 1, {"k": "a]\"}"}]"#;
        let mut sc = JsonScanner::default();
        for i in 0..s.len() {
            assert_eq!(sc.advance(&s[..i], 1000).unwrap(), None);
        }
        assert_eq!(sc.advance(s, 1000).unwrap(), Some(s.len()));
    }

    #[test]
    fn converts_to_canonical_msgpack() {
        let m = to_msgpack(br#"["t", 5, {"a": [1, -2, 1.5, null, true, "\u00e9\n"]}, []]"#).unwrap();
        let mut want = vec![0x94, 0xa1, b't', 0x05, 0x81, 0xa1, b'a', 0x96, 0x01, 0xfe, 0xcb];
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.extend_from_slice(&[0xc0, 0xc3, 0xa3, 0xc3, 0xa9, b'\n', 0x90]);
        assert_eq!(m, want);
        // 16 and 65536 elements: array16 and array32 headers; maps alike.
        let j = format!("[{}]", vec!["0"; 16].join(","));
        assert_eq!(to_msgpack(j.as_bytes()).unwrap()[..3], [0xdc, 0, 16]);
        let j = format!("[{}]", vec!["{}"; 65536].join(","));
        let m = to_msgpack(j.as_bytes()).unwrap();
        assert_eq!((m[..5].to_vec(), m.len()), (vec![0xdd, 0, 1, 0, 0], 5 + 65536));
        let j = format!("{{{}}}", (0..16).map(|i| format!("\"{i}\":{i}")).collect::<Vec<_>>().join(","));
        assert_eq!(to_msgpack(j.as_bytes()).unwrap()[..3], [0xde, 0, 16]);
        // Integers past u64 become floats, as serde_json (and Ruby's JSON into msgpack) do.
        assert_eq!(to_msgpack(b"[18446744073709551616]").unwrap()[1], 0xcb);
        assert_eq!(to_msgpack(b"[-9223372036854775808]").unwrap()[1], 0xd3);
    }

    #[test]
    fn errors_carry_byte_offsets() {
        // serde_json points at the last byte it read: the offending one, or the last
        // byte of a truncated value.
        let e = to_msgpack(b"[1,").unwrap_err();
        assert_eq!(e.offset, 2);
        let e = to_msgpack(b"[1,\n  2,\n  x]").unwrap_err();
        assert_eq!(e.offset, 11);
        let e = to_msgpack(b"[1] 2").unwrap_err();
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn scanner_enforces_the_limit_in_one_read() {
        let s = br#"["tag", 1, {"k": "v"}]"#;
        let mut sc = JsonScanner::default();
        assert_eq!(sc.advance(s, s.len()).unwrap(), Some(s.len()));
        let e = JsonScanner::default().advance(s, s.len() - 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FrameTooLarge { size: s.len() as u64, limit: s.len() as u64 - 1 });
        // Nothing past limit + 1 is scanned, however much is buffered.
        let mut big = s.to_vec();
        big.extend(std::iter::repeat_n(b' ', 1000));
        let mut sc = JsonScanner::default();
        assert!(sc.advance(&big[..5], 4).is_err());
    }
}
