//! in_http's request reading, without I/O: the head (httparse), chunked bodies,
//! gzip/deflate inflation bounded by `decompression_size_limit`, and the response
//! writer.

use std::io::Read;

/// The largest request head read.
pub const HEAD_LIMIT: usize = 64 << 10;

/// A parsed request head.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub http11: bool,
    /// (name, value) as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub keep_alive: bool,
    pub expect: Option<String>,
    pub content_type: String,
    pub content_encoding: String,
    pub origin: Option<String>,
    pub forwarded_for: Option<String>,
    pub acr_method: Option<String>,
    pub acr_headers: Option<String>,
    pub head_len: usize,
}

/// Why a request could not be read; the connection answers and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request head over {HEAD_LIMIT} bytes")]
    HeadTooLarge,
    #[error("body over body_size_limit {0}")]
    TooLarge(usize),
    #[error("malformed chunked body")]
    BadChunk,
}

/// Parses the head at the start of `buf` (None: incomplete).
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, RequestError> {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut hs);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > HEAD_LIMIT { Err(RequestError::HeadTooLarge) } else { Ok(None) };
        }
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    // An absolute-form target (`http://host/path`): keep the path.
    let path = match path.find("://") {
        Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
        None => path,
    };
    let http11 = req.version == Some(1);
    let mut h = Head {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query,
        http11,
        keep_alive: http11,
        head_len: n,
        ..Head::default()
    };
    for hd in req.headers.iter() {
        let v = hd.value;
        let s = || String::from_utf8_lossy(v).trim().to_string();
        let name = hd.name;
        if name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(v).ok().and_then(|t| t.trim().parse::<usize>().ok());
            match (len, h.content_length) {
                (None, _) => return Err(RequestError::Malformed("invalid Content-Length".into())),
                (Some(a), Some(b)) if a != b => {
                    return Err(RequestError::Malformed("conflicting Content-Length".into()))
                }
                (l, _) => h.content_length = l,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = s().to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            h.content_type = s();
        } else if name.eq_ignore_ascii_case("content-encoding") {
            h.content_encoding = s();
        } else if name.eq_ignore_ascii_case("connection") {
            let c = s().to_ascii_lowercase();
            if c.contains("close") {
                h.keep_alive = false;
            } else if c.contains("keep-alive") {
                h.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            h.expect = Some(s());
        } else if name.eq_ignore_ascii_case("origin") {
            h.origin = Some(s());
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            h.forwarded_for = s().split(',').next().map(|x| x.trim().to_string());
        } else if name.eq_ignore_ascii_case("access-control-request-method") {
            h.acr_method = Some(s());
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            h.acr_headers = Some(s());
        }
        h.headers.push((name.to_string(), v.to_vec()));
    }
    if h.chunked && h.content_length.is_some() {
        // RFC 9112: a request with both is malformed (request smuggling).
        return Err(RequestError::Malformed("both Transfer-Encoding and Content-Length".into()));
    }
    Ok(Some(h))
}

/// Decodes a chunked body at the start of `buf` into `out`; returns the bytes used
/// (None: incomplete). The decoded size is bounded by `limit`.
pub fn dechunk(buf: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<Option<usize>, RequestError> {
    out.clear();
    let mut pos = 0;
    loop {
        let Some(eol) = memchr::memmem::find(&buf[pos..], b"\r\n") else {
            return if buf.len() - pos > 1024 { Err(RequestError::BadChunk) } else { Ok(None) };
        };
        let line = &buf[pos..pos + eol];
        let size_hex = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_s = std::str::from_utf8(size_hex).map_err(|_| RequestError::BadChunk)?.trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| RequestError::BadChunk)?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(e) = memchr::memmem::find(&buf[pos..], b"\r\n") else { return Ok(None) };
                pos += e + 2;
                if e == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if out.len().saturating_add(size) > limit {
            return Err(RequestError::TooLarge(limit));
        }
        let Some(data) = buf.get(pos..pos + size) else { return Ok(None) };
        if buf.get(pos + size..pos + size + 2).is_none() {
            return Ok(None);
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(RequestError::BadChunk);
        }
        out.extend_from_slice(data);
        pos += size + 2;
    }
}

/// Inflates a gzip (`gzip`) or zlib (`deflate`) body, in slices, stopping past `limit`.
pub fn inflate(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    fn read_all(r: &mut dyn Read, limit: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut slice = vec![0u8; 64 << 10];
        loop {
            let n = r.read(&mut slice).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(format!("the inflated body exceeds decompression_size_limit {limit}"));
            }
            out.extend_from_slice(&slice[..n]);
        }
    }
    match encoding {
        "gzip" | "x-gzip" => read_all(&mut flate2::read::MultiGzDecoder::new(body), limit),
        // HTTP's deflate is zlib; raw deflate is accepted too, as browsers do.
        "deflate" => read_all(&mut flate2::read::ZlibDecoder::new(body), limit)
            .or_else(|_| read_all(&mut flate2::read::DeflateDecoder::new(body), limit)),
        other => Err(format!("unsupported Content-Encoding {other:?}")),
    }
}

/// An answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub close: bool,
}

impl Response {
    pub fn new(status: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: Vec::new(), body: body.into(), close: false }
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub fn write(&self, keep_alive: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "HTTP/1.1 {}\r\n", self.status);
        for (k, v) in &self.headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        if !self.headers.iter().any(|(k, _)| *k == "Content-Type") {
            out.extend_from_slice(b"Content-Type: text/plain\r\n");
        }
        if self.status != "204 No Content" {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(if keep_alive && !self.close {
            b"Connection: Keep-Alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let req: &[u8] = b"POST /a/b?time=1&x=y HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n{}";
        let h = parse_head(req).unwrap().unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str(), h.query.as_deref()), ("POST", "/a/b", Some("time=1&x=y")));
        assert_eq!((h.content_length, h.keep_alive, h.forwarded_for.as_deref()), (Some(2), true, Some("10.0.0.1")));
        assert_eq!(h.head_len, req.len() - 2);
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Le").unwrap().is_none());
        let h = parse_head(b"POST / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"POST / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        // A method token that never ends is still a head over the limit.
        assert_eq!(parse_head(&vec![b'a'; HEAD_LIMIT + 1]).unwrap_err(), RequestError::HeadTooLarge);
        let mut long = b"POST / HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', HEAD_LIMIT));
        assert_eq!(parse_head(&long).unwrap_err(), RequestError::HeadTooLarge);
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        assert_eq!(dechunk(b"4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\nNEXT", 100, &mut out), Ok(Some(25)));
        assert_eq!(out, b"abcdef");
        assert_eq!(dechunk(b"4\r\nab", 100, &mut out), Ok(None));
        assert_eq!(dechunk(b"zz\r\n", 100, &mut out), Err(RequestError::BadChunk));
        assert_eq!(dechunk(b"ffffffff\r\n", 100, &mut out), Err(RequestError::TooLarge(100)));
        assert_eq!(dechunk(b"1\r\naXX", 100, &mut out), Err(RequestError::BadChunk));
    }

    #[test]
    fn inflation_is_bounded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(inflate("gzip", &gz, 1 << 20).unwrap().len(), 1 << 20);
        assert!(inflate("gzip", &gz, (1 << 20) - 1).unwrap_err().contains("decompression_size_limit"));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"hello").unwrap();
        assert_eq!(inflate("deflate", &z.finish().unwrap(), 100).unwrap(), b"hello");
        assert!(inflate("gzip", b"not gzip", 100).is_err());
        assert!(inflate("br", b"", 100).is_err());
    }
}
