//! What the text inputs (in_tcp, in_udp, in_syslog, in_http with `<parse>`) share,
//! without any I/O so it is tested directly:
//!
//! - [`Splitter`]: messages out of a byte stream at a `delimiter`, with
//!   `message_length_limit` as fluentd's in_tcp applies it (a longer message is dropped
//!   with a log line; a buffer that grows past the limit without a delimiter is cleared
//!   and the rest of that message discarded), so memory per connection stays bounded;
//! - [`OctetCounter`]: RFC 6587 octet-counting frames (`LEN SP MSG`), as in_syslog's
//!   `frame_type octet_count`, with the same bound;
//! - [`Entries`]: a parser [`Sink`] that writes `[time, record]` entries for one batch,
//!   filling in the current time when the text had none and adding
//!   `source_address_key` / `source_hostname_key`.

use bytes::Bytes;
use spate_protocol::encode::raw;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::parser::{ParseError, Parser, ParserConf, Sink};

/// What happened to one message while splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// A complete message longer than the limit (its length).
    TooLong(usize),
    /// The buffer held more than the limit without a delimiter: cleared (its length).
    Overflow(usize),
}

/// Splits a stream at a delimiter. Keeps no copy: it tells the caller which ranges of
/// its buffer are messages and how much to drop from the front.
#[derive(Debug, Clone)]
pub struct Splitter {
    delimiter: Box<[u8]>,
    limit: Option<usize>,
    /// After an overflow: skip up to and including the next delimiter.
    discarding: bool,
}

impl Splitter {
    pub fn new(delimiter: &[u8], limit: Option<usize>) -> Splitter {
        Splitter { delimiter: delimiter.into(), limit, discarding: false }
    }

    /// Calls `msg` for every complete message in `buf` and `drop` for each one dropped;
    /// returns how many bytes of `buf` were consumed (the caller removes them).
    pub fn split(&mut self, buf: &[u8], mut msg: impl FnMut(&[u8]), mut drop: impl FnMut(Dropped, &[u8])) -> usize {
        let d = &*self.delimiter;
        let mut pos = 0;
        loop {
            let found =
                if d.len() == 1 { memchr::memchr(d[0], &buf[pos..]) } else { memchr::memmem::find(&buf[pos..], d) };
            let Some(i) = found else { break };
            let m = &buf[pos..pos + i];
            pos += i + d.len();
            if self.discarding {
                self.discarding = false;
                continue;
            }
            match self.limit {
                Some(l) if m.len() > l => drop(Dropped::TooLong(m.len()), m),
                _ => msg(m),
            }
        }
        // What is left can only grow into a message over the limit: clear it now.
        if let Some(l) = self.limit {
            let rest = &buf[pos..];
            if rest.len() > l {
                if !self.discarding {
                    drop(Dropped::Overflow(rest.len()), rest);
                }
                self.discarding = true;
                return buf.len();
            }
        }
        pos
    }
}

/// Why an octet-counted stream cannot go on (the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid octet count {0:?} (expected digits then a space)")]
    BadCount(String),
    #[error("octet count {len} exceeds the frame limit {limit}")]
    TooLong { len: usize, limit: usize },
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
#[derive(Debug, Clone)]
pub struct OctetCounter {
    limit: usize,
}

impl OctetCounter {
    pub fn new(limit: usize) -> OctetCounter {
        OctetCounter { limit }
    }

    /// Calls `msg` for each complete frame; returns the bytes consumed. A count that is
    /// not a number, or larger than the limit, is an error (fluentd raises on the
    /// former and buffers without bound on the latter).
    pub fn split(&mut self, buf: &[u8], mut msg: impl FnMut(&[u8])) -> Result<usize, FrameError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let Some(sp) = memchr::memchr(b' ', &rest[..rest.len().min(12)]) else {
                if rest.len() >= 12 || rest.iter().any(|b| !b.is_ascii_digit()) {
                    return Err(FrameError::BadCount(
                        String::from_utf8_lossy(&rest[..rest.len().min(12)]).into_owned(),
                    ));
                }
                return Ok(pos);
            };
            let digits = &rest[..sp];
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadCount(String::from_utf8_lossy(digits).into_owned()));
            }
            let len: usize = std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
            if len > self.limit {
                return Err(FrameError::TooLong { len, limit: self.limit });
            }
            let Some(m) = rest.get(sp + 1..sp + 1 + len) else { return Ok(pos) };
            msg(m);
            pos += sp + 1 + len;
        }
    }
}

/// The source fields an input adds to each record.
#[derive(Debug, Clone, Default)]
pub struct SourceKeys {
    pub address_key: Option<Box<[u8]>>,
    pub hostname_key: Option<Box<[u8]>>,
}

impl SourceKeys {
    pub fn is_empty(&self) -> bool {
        self.address_key.is_none() && self.hostname_key.is_none()
    }
}

/// Adds `key: value` (a str) to the map that starts at `map` and ends `out`.
pub fn add_field(out: &mut Vec<u8>, map: usize, key: &[u8], value: &[u8]) {
    let Some(&h) = out.get(map) else { return };
    match h {
        0x80..=0x8e => out[map] = h + 1,
        0x8f => {
            // 15 -> 16 fields: map16.
            out.splice(map..map + 1, [0xde, 0x00, 0x10]);
        }
        0xde => {
            let n = u16::from_be_bytes([out[map + 1], out[map + 2]]);
            if n == u16::MAX {
                let mut h = [0xdf, 0, 0, 0, 0];
                h[1..].copy_from_slice(&(n as u32 + 1).to_be_bytes());
                out.splice(map..map + 3, h);
            } else {
                out[map + 1..map + 3].copy_from_slice(&(n + 1).to_be_bytes());
            }
        }
        0xdf => {
            let n = u32::from_be_bytes([out[map + 1], out[map + 2], out[map + 3], out[map + 4]]);
            out[map + 1..map + 5].copy_from_slice(&n.saturating_add(1).to_be_bytes());
        }
        _ => return,
    }
    raw::str(out, key);
    raw::str(out, value);
}

/// A parser sink writing `[time, record]` entries for one batch.
#[derive(Debug, Default)]
pub struct Entries {
    /// Where the current entry's time goes: its EventTime ext (0xd7 header, 10 bytes),
    /// written whole by `record`.
    time_at: usize,
    map_at: usize,
    pub count: u32,
    /// Texts that did not parse since the counter was last read.
    pub failed: u64,
    pub last_error: Option<ParseError>,
    /// The peer's address text (for the source keys).
    pub peer: Vec<u8>,
    pub keys: SourceKeys,
    /// Extra fields for the current message (in_syslog's severity/facility keys).
    pub extra: Vec<(Box<[u8]>, &'static [u8])>,
    /// Records as they were written: (entry start, map start), for callers that add
    /// fields after parsing (in_syslog, in_http).
    pub last_map: Option<usize>,
    /// The time given to records without one: read once per batch (a read, a request),
    /// whose texts arrived together; reset by [`Batcher::take_batches`].
    pub now: Option<EventTime>,
}

impl Sink for Entries {
    #[inline]
    fn begin(&mut self, out: &mut Vec<u8>) {
        // [0x92, time placeholder] in one append; `record` sets the time.
        let mut head = [0x92; 11];
        head[1..].copy_from_slice(&raw::event_time_bytes(EventTime::default()));
        self.time_at = out.len() + 1;
        out.extend_from_slice(&head);
        self.map_at = out.len();
    }

    #[inline]
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>) {
        let t = time.unwrap_or_else(|| *self.now.get_or_insert_with(EventTime::now));
        // Our own offset into our own buffer (written by `begin`), not input.
        out[self.time_at..self.time_at + 10].copy_from_slice(&raw::event_time_bytes(t));
        for (k, v) in &self.extra {
            add_field(out, self.map_at, k, v);
        }
        if let Some(k) = &self.keys.address_key {
            add_field(out, self.map_at, k, &self.peer);
        }
        if let Some(k) = &self.keys.hostname_key {
            add_field(out, self.map_at, k, &self.peer);
        }
        self.last_map = Some(self.map_at);
        self.count += 1;
    }

    fn error(&mut self, err: ParseError) {
        self.failed += 1;
        self.last_error = Some(err);
    }

    #[inline]
    fn can_roll_back(&self) -> bool {
        true
    }

    fn rollback(&mut self, records: u32) {
        self.count -= records;
        // It pointed into what the caller cut off; the records written next set it.
        self.last_map = None;
    }
}

/// fluentd's syslog facility names, by `pri >> 3`.
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "at", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
/// fluentd's syslog severity names, by `pri & 7`.
pub const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"];

/// How a batcher tags its events.
#[derive(Debug, Clone)]
pub enum TagMode {
    /// in_tcp / in_udp / in_http: one tag.
    Fixed(Bytes),
    /// in_syslog: `<prefix>.<facility>.<severity>`, optional severity/facility fields,
    /// and `<prefix>.unmatched` events for texts that do not parse.
    Syslog { prefix: String, severity_key: Option<Box<[u8]>>, facility_key: Option<Box<[u8]>>, emit_unmatched: bool },
}

/// Messages in, batches out: parses each message with the input's parser and groups the
/// entries by tag. Shard-local; no I/O.
#[derive(Debug)]
pub struct Batcher {
    pub parser: Parser,
    mode: TagMode,
    pub sink: Entries,
    /// Entries of the fixed tag, or of the message being parsed (syslog).
    out: Vec<u8>,
    /// Syslog: (tag, entries, count) of this round.
    by_tag: Vec<(Bytes, Vec<u8>, u32)>,
    /// Syslog: the parser reads `<PRI>` itself.
    pri_in_parser: bool,
    /// Texts that failed since the last [`Batcher::take_failures`], and the last one.
    failed: u64,
    last_failed: Vec<u8>,
}

/// fluentd's in_syslog SYSLOG_REGEXP: `^<(\d+)>(.*)`.
fn split_pri(data: &[u8]) -> Option<(i64, &[u8])> {
    let rest = data.strip_prefix(b"<")?;
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || rest.get(n) != Some(&b'>') {
        return None;
    }
    let pri = std::str::from_utf8(&rest[..n]).ok()?.parse::<i64>().unwrap_or(i64::MAX);
    // `.*` stops at a newline.
    let body = &rest[n + 1..];
    let end = memchr::memchr(b'\n', body).unwrap_or(body.len());
    Some((pri, &body[..end]))
}

impl Batcher {
    pub fn new(parser: &ParserConf, mode: TagMode, keys: SourceKeys) -> Batcher {
        let mut parser = parser.build();
        let pri_in_parser =
            matches!(mode, TagMode::Syslog { .. }) && parser.syslog_with_priority() && parser.take_syslog_pri();
        Batcher {
            parser,
            mode,
            sink: Entries { keys, ..Entries::default() },
            out: Vec::new(),
            by_tag: Vec::new(),
            pri_in_parser,
            failed: 0,
            last_failed: Vec::new(),
        }
    }

    /// Sets the peer address text for the source keys of the following messages.
    pub fn set_peer(&mut self, peer: &[u8]) {
        if !self.sink.keys.is_empty() && self.sink.peer != peer {
            self.sink.peer.clear();
            self.sink.peer.extend_from_slice(peer);
        }
    }

    fn failed(&mut self, msg: &[u8]) {
        self.failed += 1;
        self.last_failed.clear();
        self.last_failed.extend_from_slice(&msg[..msg.len().min(256)]);
    }

    /// Texts that did not parse since the last call, and the last of them (at most 256
    /// bytes): for the caller's (rate-limited) warning.
    pub fn take_failures(&mut self) -> Option<(u64, &[u8])> {
        let n = std::mem::take(&mut self.failed);
        (n > 0).then_some((n, &self.last_failed[..]))
    }

    /// Parses one message.
    pub fn message(&mut self, msg: &[u8]) {
        let TagMode::Syslog { .. } = &self.mode else {
            let before = self.sink.failed;
            self.parser.parse(msg, &mut self.out, &mut self.sink);
            if self.sink.failed != before {
                self.failed(msg);
            }
            return;
        };
        self.syslog_message(msg);
    }

    fn syslog_message(&mut self, data: &[u8]) {
        let TagMode::Syslog { prefix, severity_key, facility_key, emit_unmatched } = &self.mode else { return };
        let (pri, text) = if self.pri_in_parser {
            (None, data)
        } else {
            match split_pri(data) {
                Some((p, t)) => (Some(p), t),
                None => {
                    let unmatched = *emit_unmatched;
                    let tag = format!("{prefix}.unmatched");
                    self.unmatched(data, unmatched, tag);
                    return;
                }
            }
        };
        self.out.clear();
        let (count0, failed0) = (self.sink.count, self.sink.failed);
        self.parser.parse(text, &mut self.out, &mut self.sink);
        if self.sink.failed != failed0 || self.sink.count == count0 {
            let unmatched = *emit_unmatched;
            let tag = format!("{prefix}.unmatched");
            self.unmatched(data, unmatched, tag);
            return;
        }
        let Some(pri) = pri.or_else(|| self.parser.syslog_pri()) else {
            self.failed(data);
            return;
        };
        let facility = usize::try_from(pri >> 3).ok().and_then(|f| FACILITIES.get(f)).copied().unwrap_or("");
        let severity = SEVERITIES[(pri & 7) as usize];
        if let Some(map) = self.sink.last_map {
            if let Some(k) = severity_key {
                add_field(&mut self.out, map, k, severity.as_bytes());
            }
            if let Some(k) = facility_key {
                add_field(&mut self.out, map, k, facility.as_bytes());
            }
        }
        let tag_len = prefix.len() + facility.len() + severity.len() + 2;
        let slot = self.by_tag.iter().position(|(t, _, _)| {
            t.len() == tag_len
                && t.ends_with(severity.as_bytes())
                && t.starts_with(prefix.as_bytes())
                && t[prefix.len() + 1..].starts_with(facility.as_bytes())
        });
        let slot = match slot {
            Some(i) => i,
            None => {
                self.by_tag.push((Bytes::from(format!("{prefix}.{facility}.{severity}")), Vec::new(), 0));
                self.by_tag.len() - 1
            }
        };
        let (_, entries, n) = &mut self.by_tag[slot];
        entries.extend_from_slice(&self.out);
        *n += 1;
    }

    fn unmatched(&mut self, data: &[u8], emit: bool, tag: String) {
        self.failed(data);
        if !emit {
            return;
        }
        self.out.clear();
        self.sink.begin(&mut self.out);
        raw::map_header(&mut self.out, 1);
        raw::str(&mut self.out, b"unmatched_line");
        raw::str(&mut self.out, data);
        self.sink.record(&mut self.out, None);
        let slot = match self.by_tag.iter().position(|(t, _, _)| t[..] == *tag.as_bytes()) {
            Some(i) => i,
            None => {
                self.by_tag.push((Bytes::from(tag), Vec::new(), 0));
                self.by_tag.len() - 1
            }
        };
        let (_, entries, n) = &mut self.by_tag[slot];
        entries.extend_from_slice(&self.out);
        *n += 1;
    }

    /// The batches of the messages given since the last call.
    pub fn take_batches(&mut self, mut emit: impl FnMut(EventBatch)) {
        self.sink.now = None;
        let mk = |tag: Bytes, entries: Vec<u8>, count: u32| EventBatch {
            tag,
            wire_len: entries.len(),
            entries: Bytes::from(entries),
            format: EntriesFormat::Packed,
            count,
            invalid: 0,
            mode: Mode::PackedForward,
            option: Options::default(),
        };
        match &self.mode {
            TagMode::Fixed(tag) => {
                let n = std::mem::take(&mut self.sink.count);
                if n > 0 {
                    let entries = std::mem::take(&mut self.out);
                    emit(mk(tag.clone(), entries, n));
                } else {
                    self.out.clear();
                }
            }
            TagMode::Syslog { .. } => {
                self.sink.count = 0;
                for (tag, entries, n) in self.by_tag.drain(..) {
                    if n > 0 {
                        emit(mk(tag, entries, n));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::{EntriesFormat, Events};

    fn split_all(s: &mut Splitter, chunks: &[&[u8]]) -> (Vec<String>, Vec<Dropped>) {
        let (mut msgs, mut drops) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            let n = s.split(&buf, |m| msgs.push(String::from_utf8_lossy(m).into_owned()), |d, _| drops.push(d));
            buf.drain(..n);
        }
        (msgs, drops)
    }

    #[test]
    fn lines_across_reads_and_the_limit() {
        let mut s = Splitter::new(b"\n", Some(5));
        let (m, d) = split_all(&mut s, &[b"ab", b"c\nde", b"f\n\n123456\nok\n"]);
        assert_eq!(m, ["abc", "def", "", "ok"]);
        assert_eq!(d, [Dropped::TooLong(6)]);
        // A message that never ends: cleared as soon as it passes the limit, and the
        // rest of it (up to the next delimiter) discarded.
        let mut s = Splitter::new(b"\n", Some(5));
        let (m, d) = split_all(&mut s, &[b"abcdefgh", b"ijkl", b"mn\nnext\n"]);
        assert_eq!(m, ["next"]);
        assert_eq!(d, [Dropped::Overflow(8)]);
        // Multi-byte delimiters, no limit.
        let mut s = Splitter::new(b"\r\n", None);
        let (m, _) = split_all(&mut s, &[b"a\r", b"\nb\r\n"]);
        assert_eq!(m, ["a", "b"]);
    }

    #[test]
    fn octet_counting() {
        let mut o = OctetCounter::new(100);
        let mut got = Vec::new();
        let data = b"5 hello11 hello world3 ab";
        let n = o.split(data, |m| got.push(m.to_vec())).unwrap();
        assert_eq!(got, [b"hello".to_vec(), b"hello world".to_vec()]);
        assert_eq!(n, 21);
        assert_eq!(o.split(b"12", |_| {}), Ok(0));
        assert!(matches!(o.split(b"x2 ab", |_| {}), Err(FrameError::BadCount(_))));
        assert!(matches!(o.split(b"123456789012345", |_| {}), Err(FrameError::BadCount(_))));
        assert_eq!(o.split(b"101 ", |_| {}), Err(FrameError::TooLong { len: 101, limit: 100 }));
    }

    #[test]
    fn entries_with_source_keys() {
        let conf = crate::parser::ParserConf::from_element(
            &crate::config::parse_str(
                "<parse>\n@type json\n</parse>\n",
                "t.conf",
                std::path::Path::new("."),
                &crate::config::EvalContext::with_env("h", None, Default::default()),
            )
            .unwrap()
            .elements[0],
        )
        .unwrap();
        let mut p = conf.build();
        let mut e = Entries {
            peer: b"127.0.0.1".to_vec(),
            keys: SourceKeys { address_key: Some((*b"addr").into()), hostname_key: Some((*b"host").into()) },
            ..Default::default()
        };
        let mut out = Vec::new();
        p.parse(br#"{"time":5,"a":1}"#, &mut out, &mut e);
        let fields: String = (0..15).map(|i| format!(",\"k{i}\":{i}")).collect();
        p.parse(format!("{{\"x\":0{fields}}}").as_bytes(), &mut out, &mut e);
        p.parse(b"nope", &mut out, &mut e);
        assert_eq!((e.count, e.failed), (2, 1));
        let evs: Vec<_> = Events::new(&out, EntriesFormat::Packed).collect();
        assert_eq!(evs[0].time, EventTime::new(5, 0));
        assert_eq!(evs[0].record.get(b"addr").and_then(|v| v.as_str()), Some(&b"127.0.0.1"[..]));
        assert_eq!(evs[1].record.len(), 18);
        assert_eq!(evs[1].record.get(b"host").and_then(|v| v.as_str()), Some(&b"127.0.0.1"[..]));
        assert!(evs[1].time.sec > 1_700_000_000);
    }
}
