//! JSON on the Forward port, as fluentd's in_forward accepts it: a connection whose first
//! byte is `{` or `[` carries a stream of JSON values instead of msgpack. This module
//! finds value boundaries incrementally (resumable, one pass) and converts a complete
//! value to msgpack so the same frame parser handles both.

use crate::encode::raw;
use crate::error::{DecodeError, ErrorKind, Result};
use crate::msgpack::MAX_DEPTH;

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

    /// Continues scanning `buf` (starting at the value's first byte). Returns the
    /// value's length once complete.
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
        while self.pos < buf.len() {
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
                        let len = self.pos;
                        *self = JsonScanner::default();
                        return Ok(Some(len));
                    }
                }
                _ => {}
            }
        }
        if self.pos > limit {
            return Err(DecodeError::new(0, ErrorKind::FrameTooLarge { size: self.pos as u64, limit: limit as u64 }));
        }
        Ok(None)
    }
}

/// Parses one complete JSON value and re-encodes it as msgpack.
pub fn to_msgpack(json: &[u8]) -> Result<Vec<u8>> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| DecodeError::new(e.column(), ErrorKind::Json(e.to_string())))?;
    let mut out = Vec::with_capacity(json.len());
    write_value(&v, &mut out);
    Ok(out)
}

fn write_value(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Null => raw::nil(out),
        Value::Bool(b) => raw::bool(out, *b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                raw::uint(out, u)
            } else if let Some(i) = n.as_i64() {
                raw::int(out, i)
            } else {
                raw::f64(out, n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => raw::str(out, s.as_bytes()),
        Value::Array(a) => {
            raw::array_header(out, a.len() as u32);
            for e in a {
                write_value(e, out);
            }
        }
        Value::Object(m) => {
            raw::map_header(out, m.len() as u32);
            for (k, e) in m {
                raw::str(out, k.as_bytes());
                write_value(e, out);
            }
        }
    }
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
    fn converts_to_msgpack() {
        let m = to_msgpack(br#"["t", 5, {"a": [1, -2, 1.5, null, true]}]"#).unwrap();
        assert_eq!(m[0], 0x93);
        assert!(to_msgpack(b"[1,").is_err());
    }
}
