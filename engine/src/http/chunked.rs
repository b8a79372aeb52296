//! Incremental `Transfer-Encoding: chunked` decoding (RFC 9112 7.1): sizes in hex,
//! extensions and trailers skipped, the decoded body bounded.

/// The error text for a body over the limit (the caller maps it to `TooLarge`).
pub const TOO_LARGE: &str = "chunked body over the limit";

#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// Bytes of chunk data left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailer,
    Done,
}

/// Longest size or trailer line accepted.
const MAX_LINE: usize = 8 << 10;

fn line(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    match memchr::memchr(b'\n', buf) {
        Some(i) => Ok(Some(i)),
        None if buf.len() > MAX_LINE => Err("chunk size line too long"),
        None => Ok(None),
    }
}

impl Decoder {
    /// Consumes what it can of `buf` into `out`; `Ok(true)` when the body is complete
    /// (bytes after it stay in `buf`).
    pub fn feed(&mut self, buf: &mut Vec<u8>, out: &mut Vec<u8>, max: usize) -> Result<bool, &'static str> {
        let mut pos = 0;
        let r = loop {
            let rest = &buf[pos..];
            match self.state {
                State::Done => break Ok(true),
                State::Size => {
                    let Some(i) = line(rest)? else { break Ok(false) };
                    let l = &rest[..i];
                    let hex_end = l.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(l.len());
                    if hex_end == 0 || hex_end > 15 {
                        break Err("bad chunk size");
                    }
                    let n = usize::from_str_radix(std::str::from_utf8(&l[..hex_end]).unwrap_or("x"), 16)
                        .map_err(|_| "bad chunk size")?;
                    pos += i + 1;
                    self.state = if n == 0 { State::Trailer } else { State::Data(n) };
                    if n > max.saturating_sub(out.len()) {
                        break Err(TOO_LARGE);
                    }
                }
                State::Data(n) => {
                    if rest.is_empty() {
                        break Ok(false);
                    }
                    let take = n.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take == n { State::DataEnd } else { State::Data(n - take) };
                }
                State::DataEnd => {
                    let Some(i) = line(rest)? else { break Ok(false) };
                    if rest[..i].iter().any(|b| *b != b'\r') {
                        break Err("missing CRLF after chunk data");
                    }
                    pos += i + 1;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(i) = line(rest)? else { break Ok(false) };
                    let empty = rest[..i].iter().all(|b| *b == b'\r');
                    pos += i + 1;
                    if empty {
                        self.state = State::Done;
                    }
                }
            }
        };
        buf.drain(..pos);
        r
    }
}
