//! `parser_syslog`: RFC 3164 and RFC 5424 messages (`message_format rfc3164|rfc5424|
//! auto`), with or without the `<PRI>` prefix (`with_priority`), following fluentd's
//! `parser_syslog.rb` for both of its engines: `parser_engine regexp` (the default:
//! the time by counting blanks, the rest by fluentd's regexps) and `parser_engine
//! string` (fluentd's hand-written splitter, with `support_colonless_ident`).
//!
//! Fields: `pri` (with_priority), `host`, `ident`, `pid`, `message` (3164); `host`,
//! `ident`, `pid`, `msgid`, `extradata`, `message` (5424), in fluentd's order for each
//! engine; `keep_time_key` adds the time text as `time`. Times: `time_format` (default
//! `%b %d %H:%M:%S`, this year), RFC 5424's `rfc5424_time_format` (default
//! `%Y-%m-%dT%H:%M:%S.%L%z`, falling back to no fraction). Like fluentd's, this parser
//! applies no `types` or null settings. One deliberate difference: where fluentd's
//! unanchored 5424 regexp would find a match further into an over-long field (a host
//! over 255 characters), spate reports "pattern not matched".

use super::record::{Common, Ctx, Rec};
use super::time::{ruby_to_i, TimeConf, TimeParser};
use super::{emit, ParseError, Sink};
use crate::config::{ConfigError, Element};
use crate::ruby::regex::RubyRegex;

pub const RFC3164_TIME_FORMAT: &str = "%b %d %H:%M:%S";
const RFC5424_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S.%L%z";
const RFC5424_NO_SUBSEC: &str = "%Y-%m-%dT%H:%M:%S%z";

/// fluentd's RFC3164_WITHOUT_TIME_AND_PRI_REGEXP.
const RFC3164_REST: &str = r"(?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc3164,
    Rfc5424,
    Auto,
}

#[derive(Debug, Clone)]
pub struct Conf {
    pub format: Format,
    pub with_priority: bool,
    string_engine: bool,
    colonless_ident: bool,
    time3164: TimeConf,
    time5424: TimeConf,
    /// `time_format` squeezed: the number of blank-separated words of a 3164 time.
    space_count_3164: usize,
    space_count_5424: usize,
    /// The string engine's fixed 15-character 3164 time.
    skip_space_3164: bool,
    skip_space_5424: bool,
}

fn space_count(fmt: &str) -> usize {
    let mut n = 0;
    let mut prev = false;
    for b in fmt.bytes() {
        if b == b' ' {
            if !prev {
                n += 1;
            }
            prev = true;
        } else {
            prev = false;
        }
    }
    n + 1
}

impl Conf {
    pub fn from_element(e: &Element, common: &Common) -> Result<Conf, ConfigError> {
        let format = match e.enum_of("message_format", &["rfc3164", "rfc5424", "auto"])?.as_deref() {
            Some("rfc5424") => Format::Rfc5424,
            Some("auto") => Format::Auto,
            _ => Format::Rfc3164,
        };
        let engine =
            e.enum_of("parser_engine", &["regexp", "string"])?.or(e.enum_of("parser_type", &["regexp", "string"])?);
        let user_format = e.str("time_format");
        let f5424_param = e.string_or("rfc5424_time_format", RFC5424_TIME_FORMAT);
        let (f3164, f5424) = match format {
            // rfc5424: time_format, when given, is the 5424 format.
            Format::Rfc5424 => (RFC3164_TIME_FORMAT.to_string(), user_format.map_or(f5424_param, str::to_string)),
            _ => (user_format.unwrap_or(RFC3164_TIME_FORMAT).to_string(), f5424_param),
        };
        let zone = common.time.zone();
        let at = |k: &str| e.get(k).map_or(e.pos.clone(), |a| a.pos.clone());
        let time3164 = TimeConf::with_format(&f3164, zone).map_err(|m| ConfigError::at(&at("time_format"), m))?;
        let time5424 =
            TimeConf::with_format(&f5424, zone).map_err(|m| ConfigError::at(&at("rfc5424_time_format"), m))?;
        Ok(Conf {
            format,
            with_priority: e.bool("with_priority")?.unwrap_or(false),
            string_engine: engine.as_deref() == Some("string"),
            colonless_ident: e.bool("support_colonless_ident")?.unwrap_or(true),
            space_count_3164: space_count(&f3164),
            space_count_5424: space_count(&f5424),
            skip_space_3164: f3164 == "%b %d %H:%M:%S" || f3164 == "%b %d %H:%M:%S.%N",
            skip_space_5424: !f5424.contains(' '),
            time3164,
            time5424,
        })
    }
}

#[derive(Debug)]
pub struct SyslogParser {
    conf: Conf,
    t3164: TimeParser,
    t5424: TimeParser,
    t5424_nosub: TimeParser,
    re3164: RubyRegex,
    locs: Option<regex::bytes::CaptureLocations>,
    /// Group indexes of host, ident, pid, message in `re3164`.
    idx: [usize; 4],
    squeezed: Vec<u8>,
    /// in_syslog takes `pri` out of the record (fluentd: `record.delete('pri')`).
    pub(crate) pri_out: bool,
    pub(crate) last_pri: Option<i64>,
}

/// `^<(\d{1,3})>`: the priority and the index after `>`.
fn pri_3164(text: &[u8]) -> Option<(i64, usize)> {
    if text.first() != Some(&b'<') {
        return None;
    }
    let n = text[1..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&n) || text.get(1 + n) != Some(&b'>') {
        return None;
    }
    Some((ruby_to_i(&text[1..1 + n]) as i64, 2 + n))
}

/// `^<(\d{1,3})>\d\d{0,2}\s`: the priority and the index after the blank.
fn pri_5424(text: &[u8]) -> Option<(i64, usize)> {
    let (pri, at) = pri_3164(text)?;
    let n = text[at..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || !text.get(at + n).is_some_and(|b| b.is_ascii_whitespace() || *b == 0x0b) {
        return None;
    }
    Some((pri, at + n + 1))
}

/// fluentd's REGEXP_DETECT_RFC5424: `^<\d{1,3}>[1-9]\d{0,2}`.
fn looks_5424(text: &[u8]) -> bool {
    pri_3164(text).is_some_and(|(_, at)| matches!(text.get(at), Some(b'1'..=b'9')))
}

/// Ruby's `chomp`: one trailing `\r\n`, `\n` or `\r`.
fn chomp(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r\n").or_else(|| s.strip_suffix(b"\n")).or_else(|| s.strip_suffix(b"\r")).unwrap_or(s)
}

/// fluentd's blank-counting: skips `count` words starting at `idx`; returns the end of
/// the time text (the index of the blank after it) and whether blanks were doubled.
fn time_end(text: &[u8], idx: usize, count: usize) -> Option<(usize, bool)> {
    let mut i = idx as isize - 1;
    let mut sq = false;
    for _ in 0..count {
        while text.get((i + 1) as usize) == Some(&b' ') {
            sq = true;
            i += 1;
        }
        let from = (i + 1) as usize;
        i = (from + memchr::memchr(b' ', text.get(from..)?)?) as isize;
    }
    Some((i as usize, sq))
}

/// `text[a..b]`, squeezed into `buf` when needed (runs of blanks to one).
fn time_text<'a>(text: &'a [u8], a: usize, b: usize, sq: bool, buf: &'a mut Vec<u8>) -> &'a [u8] {
    let t = &text[a..b];
    if !sq {
        return t;
    }
    buf.clear();
    for &c in t {
        if !(c == b' ' && buf.last() == Some(&b' ')) {
            buf.push(c);
        }
    }
    buf
}

/// The fields fluentd's RFC3164_WITHOUT_TIME_AND_PRI_REGEXP captures.
#[derive(Debug, PartialEq, Eq)]
struct Rest3164<'a> {
    host: &'a [u8],
    ident: &'a [u8],
    pid: Option<&'a [u8]>,
    message: &'a [u8],
}

/// What `(?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$`
/// captures from `at`, computed directly for a single line of valid UTF-8 (where the
/// regexp's greedy choices never backtrack); None sends the text to the regexp.
fn rest_3164(text: &[u8], at: usize) -> Option<Rest3164<'_>> {
    let t = text.get(at..)?;
    // Multi-line texts and invalid UTF-8 (which the regexp's classes do not match) take
    // the regexp.
    if memchr::memchr2(b'\n', b'\r', t).is_some() || std::str::from_utf8(t).is_err() {
        return None;
    }
    let sp = memchr::memchr(b' ', t)?;
    let host = &t[..sp];
    let mut i = sp + 1;
    let ident_len = t[i..].iter().position(|&b| b == b' ' || b == b':' || b == b'[').unwrap_or(t.len() - i);
    let ident = &t[i..i + ident_len];
    i += ident_len;
    let mut pid = None;
    if t.get(i) == Some(&b'[') {
        let digits = t[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && t.get(i + 1 + digits) == Some(&b']') {
            pid = Some(&t[i + 1..i + 1 + digits]);
            i += digits + 2;
        }
    }
    // `(?:[^:]*:)?`: up to and past the first colon, if there is one.
    if let Some(c) = memchr::memchr(b':', &t[i..]) {
        i += c + 1;
    }
    while t.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(Rest3164 { host, ident, pid, message: &t[i..] })
}

/// `ident[pid]` followed by `tail` characters (`]:` or `]`).
fn split_pid(w: &[u8], tail: usize) -> (Option<&[u8]>, Option<&[u8]>) {
    match memchr::memchr(b'[', w) {
        Some(lb) if w.len() >= lb + 1 + tail => (Some(&w[..lb]), Some(&w[lb + 1..w.len() - tail])),
        _ => (Some(w), None),
    }
}

/// `[!-~]{1,max}` then a blank: the field's end.
fn printable(text: &[u8], at: usize, max: usize) -> Option<usize> {
    let n = text.get(at..)?.iter().take(max + 1).take_while(|b| (b'!'..=b'~').contains(*b)).count();
    if n == 0 || n > max || text.get(at + n) != Some(&b' ') {
        return None;
    }
    Some(at + n)
}

impl SyslogParser {
    pub fn new(conf: Conf) -> Self {
        let re3164 = RubyRegex::new(RFC3164_REST, false, false).unwrap_or_else(|e| unreachable!("static regex: {e}"));
        let mut idx = [0; 4];
        let locs = match &re3164 {
            RubyRegex::Fast { re, .. } => {
                for (i, n) in re.capture_names().enumerate() {
                    if let Some(j) = n.and_then(|n| ["host", "ident", "pid", "message"].iter().position(|f| *f == n)) {
                        idx[j] = i;
                    }
                }
                Some(re.capture_locations())
            }
            RubyRegex::Fancy(_) => None,
        };
        let zone = conf.time5424.zone();
        let nosub =
            TimeConf::with_format(RFC5424_NO_SUBSEC, zone).unwrap_or_else(|e| unreachable!("static format: {e}"));
        SyslogParser {
            t3164: TimeParser::new(conf.time3164.clone()),
            t5424: TimeParser::new(conf.time5424.clone()),
            t5424_nosub: TimeParser::new(nosub),
            conf,
            re3164,
            locs,
            idx,
            squeezed: Vec::new(),
            pri_out: false,
            last_pri: None,
        }
    }

    pub fn with_priority(&self) -> bool {
        self.conf.with_priority
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        self.last_pri = None;
        let r5424 = match self.conf.format {
            Format::Rfc3164 => false,
            Format::Rfc5424 => true,
            Format::Auto => looks_5424(text),
        };
        match (r5424, self.conf.string_engine) {
            (false, false) => self.rfc3164_regexp(ctx, text, out, sink),
            (false, true) => self.rfc3164_string(ctx, text, out, sink),
            (true, false) => self.rfc5424(ctx, text, out, sink, false),
            (true, true) => self.rfc5424(ctx, text, out, sink, true),
        }
    }

    fn rfc3164_regexp<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let (pri, idx) = if self.conf.with_priority {
            match pri_3164(text) {
                Some((p, at)) => (Some(p), at),
                None => return sink.error(ParseError::NoMatch),
            }
        } else {
            (None, 0)
        };
        let Some((i, sq)) = time_end(text, idx, self.conf.space_count_3164) else {
            return sink.error(ParseError::NoMatch);
        };
        let ts = time_text(text, idx, i, sq, &mut self.squeezed);
        let time = match self.t3164.parse_str(ts) {
            Ok(t) => t,
            Err(e) => return sink.error(e.into()),
        };
        let keep = ctx.common.keep_time_key;
        let pri_out = self.pri_out;
        self.last_pri = pri;
        if let Some(f) = rest_3164(text, i + 1) {
            emit(out, sink, |out| {
                let mut r = Rec::begin(out, None);
                if let Some(p) = pri.filter(|_| !pri_out) {
                    r.int(b"pri", p);
                }
                if keep {
                    r.plain_str(b"time", ts);
                }
                r.plain_str(b"host", f.host);
                r.plain_str(b"ident", f.ident);
                if let Some(p) = f.pid {
                    r.plain_str(b"pid", p);
                }
                r.plain_str(b"message", f.message);
                Ok(r.finish_with(Some(time)))
            });
            return;
        }
        let (RubyRegex::Fast { re, .. }, Some(locs)) = (&self.re3164, self.locs.as_mut()) else {
            return sink.error(ParseError::NoMatch);
        };
        if re.captures_read_at(locs, text, i + 1).is_none() {
            return sink.error(ParseError::NoMatch);
        }
        let idxs = self.idx;
        emit(out, sink, |out| {
            let mut r = Rec::begin(out, None);
            if let Some(p) = pri.filter(|_| !pri_out) {
                r.int(b"pri", p);
            }
            if keep {
                r.plain_str(b"time", ts);
            }
            for (j, name) in [&b"host"[..], b"ident", b"pid", b"message"].into_iter().enumerate() {
                if let Some((s, e)) = locs.get(idxs[j]) {
                    let v = &text[s..e];
                    r.plain_str(name, if j == 3 { chomp(v) } else { v });
                }
            }
            Ok(r.finish_with(Some(time)))
        });
    }

    fn rfc3164_string<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let mut cursor = 0;
        let mut pri = None;
        if self.conf.with_priority {
            match pri_3164(text) {
                Some((p, at)) => {
                    pri = Some(p);
                    cursor = at;
                }
                None => return sink.error(ParseError::NoMatch),
            }
        }
        let (ts_start, ts_end, sq);
        if self.conf.skip_space_3164 {
            match text.get(cursor + 15) {
                Some(b' ') => {
                    (ts_start, ts_end, sq) = (cursor, cursor + 15, false);
                    cursor += 16;
                }
                Some(b'.') => {
                    // Sub-second times: up to the next blank (fluentd searches from 15).
                    let Some(i) = text.get(15..).and_then(|r| memchr::memchr(b' ', r)).map(|i| i + 15) else {
                        return sink.error(ParseError::NoMatch);
                    };
                    if i < cursor {
                        return sink.error(ParseError::NoMatch);
                    }
                    (ts_start, ts_end, sq) = (cursor, i, false);
                    cursor = i + 1;
                }
                _ => return sink.error(ParseError::NoMatch),
            }
        } else {
            let Some((i, s)) = time_end(text, cursor, self.conf.space_count_3164) else {
                return sink.error(ParseError::NoMatch);
            };
            (ts_start, ts_end, sq) = (cursor, i, s);
            cursor = i + 1;
        }
        let Some(hlen) = text.get(cursor..).and_then(|r| memchr::memchr(b' ', r)) else {
            return sink.error(ParseError::NoMatch);
        };
        let host = &text[cursor..cursor + hlen];
        cursor += hlen + 1;
        let rest = text.get(cursor..).unwrap_or_default();
        let mut ident: Option<&[u8]> = None;
        let mut pid: Option<&[u8]> = None;
        let msg: &[u8] = match memchr::memchr(b' ', rest) {
            None => rest,
            Some(i) => {
                let word = &rest[..i];
                let after = &rest[i + 1..];
                if word.ends_with(b":") {
                    if word.ends_with(b"]:") {
                        (ident, pid) = split_pid(word, 2);
                    } else {
                        ident = Some(&word[..word.len() - 1]);
                    }
                    after
                } else if self.conf.colonless_ident {
                    if word.ends_with(b"]") {
                        (ident, pid) = split_pid(word, 1);
                    } else {
                        ident = Some(word);
                    }
                    after
                } else {
                    rest
                }
            }
        };
        let ts = time_text(text, ts_start, ts_end, sq, &mut self.squeezed);
        let keep = ctx.common.keep_time_key;
        let pri_out = self.pri_out;
        self.last_pri = pri;
        let t3164 = &mut self.t3164;
        emit(out, sink, |out| {
            let time = t3164.parse_str(ts)?;
            let mut r = Rec::begin(out, None);
            r.plain_str(b"host", host);
            if let Some(p) = pri.filter(|_| !pri_out) {
                r.int(b"pri", p);
            }
            if let Some(i) = ident {
                r.plain_str(b"ident", i);
            }
            if let Some(p) = pid {
                r.plain_str(b"pid", p);
            }
            r.plain_str(b"message", chomp(msg));
            if keep {
                r.plain_str(b"time", ts);
            }
            Ok(r.finish_with(Some(time)))
        });
    }

    fn rfc5424<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S, string: bool) {
        let (pri, mut cursor) = if self.conf.with_priority {
            match pri_5424(text) {
                Some((p, at)) => (Some(p), at),
                None => return sink.error(ParseError::NoMatch),
            }
        } else {
            (None, 0)
        };
        let (ts_start, ts_end, sq) = if self.conf.skip_space_5424 {
            match text.get(cursor..).and_then(|r| memchr::memchr(b' ', r)) {
                Some(i) => (cursor, cursor + i, false),
                None => return sink.error(ParseError::NoMatch),
            }
        } else {
            match time_end(text, cursor, self.conf.space_count_5424) {
                Some((i, s)) => (cursor, i, s),
                None => return sink.error(ParseError::NoMatch),
            }
        };
        cursor = ts_end + 1;
        // HOSTNAME APP-NAME PROCID MSGID, then STRUCTURED-DATA and MSG.
        let mut fields: [&[u8]; 4] = [b""; 4];
        for (j, max) in [255usize, 48, 128, 32].into_iter().enumerate() {
            let end = if string {
                text.get(cursor..).and_then(|r| memchr::memchr(b' ', r)).map(|i| cursor + i)
            } else {
                printable(text, cursor, max)
            };
            let Some(end) = end else { return sink.error(ParseError::NoMatch) };
            fields[j] = &text[cursor..end];
            cursor = end + 1;
        }
        let rest = text.get(cursor..).unwrap_or_default();
        let (extradata, msg): (&[u8], Option<&[u8]>) = if rest.first() == Some(&b'-') {
            let after = &rest[1..];
            if after.is_empty() {
                (&rest[..1], None)
            } else if string {
                (&rest[..1], Some(&after[1.min(after.len())..]))
            } else if after.len() >= 2 && after[0] == b' ' {
                (&rest[..1], Some(&after[1..]))
            } else {
                return sink.error(ParseError::NoMatch);
            }
        } else if string {
            match memchr::memmem::find(rest, b"] ") {
                Some(i) => (&rest[..i + 1], Some(&rest[i + 2..])),
                None => (rest, None),
            }
        } else {
            // `\[.*?(?<!\\)\]` followed by ` message` or the end.
            if rest.first() != Some(&b'[') {
                return sink.error(ParseError::NoMatch);
            }
            let mut found = None;
            for i in memchr::memchr_iter(b']', rest) {
                if i >= 2 && rest[i - 1] == b'\\' {
                    continue;
                }
                if i == 0 {
                    continue;
                }
                match rest.get(i + 1) {
                    None => {
                        found = Some((i + 1, None));
                        break;
                    }
                    Some(b' ') if rest.len() > i + 2 => {
                        found = Some((i + 1, Some(&rest[i + 2..])));
                        break;
                    }
                    _ => {}
                }
            }
            match found {
                Some((e, m)) => (&rest[..e], m),
                None => return sink.error(ParseError::NoMatch),
            }
        };
        let ts = time_text(text, ts_start, ts_end, sq, &mut self.squeezed);
        let keep = ctx.common.keep_time_key;
        let pri_out = self.pri_out;
        self.last_pri = pri;
        let (t5424, nosub) = (&mut self.t5424, &mut self.t5424_nosub);
        emit(out, sink, |out| {
            let time = match t5424.parse_str(ts) {
                Ok(t) => t,
                Err(_) => nosub.parse_str(ts)?,
            };
            let mut r = Rec::begin(out, None);
            if !string {
                if let Some(p) = pri.filter(|_| !pri_out) {
                    r.int(b"pri", p);
                }
                if keep {
                    r.plain_str(b"time", ts);
                }
            }
            r.plain_str(b"host", fields[0]);
            r.plain_str(b"ident", fields[1]);
            r.plain_str(b"pid", fields[2]);
            r.plain_str(b"msgid", fields[3]);
            if string {
                if let Some(p) = pri.filter(|_| !pri_out) {
                    r.int(b"pri", p);
                }
            }
            if string {
                // The string engine drops backslashes from the structured data.
                r.plain_str_without(b"extradata", extradata, b'\\');
            } else {
                r.plain_str(b"extradata", extradata);
            }
            if let Some(m) = msg {
                r.plain_str(b"message", chomp(m));
            }
            if string && keep {
                r.plain_str(b"time", ts);
            }
            Ok(r.finish_with(Some(time)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct reading equals fluentd's regexp on every line it accepts.
    #[test]
    fn rest_3164_matches_the_regexp() {
        let re = match RubyRegex::new(RFC3164_REST, false, false) {
            Ok(RubyRegex::Fast { re, .. }) => re,
            _ => panic!("static regex"),
        };
        let parts: [&[u8]; 12] =
            [b"host", b" ", b"app", b"[123]", b"[x]", b":", b"  ", b"msg", b"a:b", b"[", b"]", b"\xff"];
        let mut n = 0;
        // Every sequence of up to 5 parts.
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for prefix in &stack {
                for p in parts {
                    let mut t = prefix.clone();
                    t.extend_from_slice(p);
                    next.push(t);
                }
            }
            for t in &next {
                let fast = rest_3164(t, 0);
                let slow = re.captures(t).map(|c| Rest3164 {
                    host: c.name("host").map_or(&b""[..], |m| m.as_bytes()),
                    ident: c.name("ident").map_or(&b""[..], |m| m.as_bytes()),
                    pid: c.name("pid").map(|m| m.as_bytes()),
                    message: c.name("message").map_or(&b""[..], |m| m.as_bytes()),
                });
                if let Some(f) = fast {
                    // The regexp search starts at the first position it can match from.
                    assert_eq!(Some(f), slow, "{:?}", String::from_utf8_lossy(t));
                    n += 1;
                }
            }
            stack = next;
        }
        assert!(n > 100_000, "{n}");
    }
}
