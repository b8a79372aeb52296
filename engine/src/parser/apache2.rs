//! `parser_apache2`: Apache's combined log format with fluentd's own field handling
//! (`parser_apache2.rb`): `-` host/user/referer/agent become nil, `code` and `size`
//! are integers (nil for `-` or 0), the time is `%d/%b/%Y:%H:%M:%S %z`, `keep_time_key`
//! adds the time text as `time`. Like fluentd's, it applies no `types` or null
//! settings. Also holds the old `apache` parser's expression.

use std::sync::OnceLock;

use super::record::{Common, Ctx, Rec};
use super::time::{ruby_to_i, TimeConf, TimeParser};
use super::{emit, ParseError, Sink};

/// fluentd's `Apache2Parser::REGEXP`, verbatim.
const EXPRESSION: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\")*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\")*)" "(?<agent>(?:[^\"]|\\")*)")?$"#;

/// fluentd's `parser_apache.rb` default expression (with `time_format` as nginx's).
pub const APACHE_EXPRESSION: &str = r#"/^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$/"#;

const TIME_FORMAT: &str = "%d/%b/%Y:%H:%M:%S %z";

fn regex() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // The pattern only uses syntax both engines read alike; ^/$ at line bounds as Ruby.
        regex::bytes::RegexBuilder::new(EXPRESSION)
            .multi_line(true)
            .build()
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

/// The captures of [`EXPRESSION`] (in [`FIELDS`] order), read directly from an ASCII line
/// without backslashes or control characters: there every class of the expression
/// splits at a single byte and its choices never backtrack (the request ends at the first
/// `"` when the method is followed by a blank, the path before the last blank-separated
/// word). None sends the line to the
/// regexp (which may still match it).
fn fast_fields(t: &[u8]) -> Option<[Option<&[u8]>; 9]> {
    if !t.iter().all(|&b| (b' '..=b'~').contains(&b) && b != b'\\') {
        return None;
    }
    let mut f: [Option<&[u8]>; 9] = [None; 9];
    let word = |at: usize| -> Option<(&[u8], usize)> {
        let n = memchr::memchr(b' ', t.get(at..)?)?;
        Some((&t[at..at + n], at + n + 1))
    };
    let (host, at) = word(0)?;
    let (_ident, at) = word(at)?;
    let (user, at) = word(at)?;
    if t.get(at) != Some(&b'[') {
        return None;
    }
    let close = at + 1 + memchr::memchr(b']', &t[at + 1..])?;
    let time = &t[at + 1..close];
    if t.get(close + 1..close + 3) != Some(b" \"") {
        return None;
    }
    let rs = close + 3;
    let re = rs + memchr::memchr(b'"', &t[rs..])?;
    let req = &t[rs..re];
    let (method, path) = match memchr::memchr(b' ', req) {
        // `\S+` would take the closing quote too and look for a later one: the regexp
        // decides.
        None => return None,
        Some(sp) => {
            let mut p = sp;
            while req.get(p) == Some(&b' ') {
                p += 1;
            }
            let rest = &req[p..];
            // The path ends where the last run of blanks starts (that run and the word
            // after it are the protocol); a rest without blanks is all path.
            let end = match rest.iter().rposition(|&b| b != b' ') {
                None => 0,
                Some(last) => match rest[..=last].iter().rposition(|&b| b == b' ') {
                    None => last + 1,
                    Some(lsp) => rest[..=lsp].iter().rposition(|&b| b != b' ').map_or(0, |x| x + 1),
                },
            };
            (&req[..sp], Some(&rest[..end]))
        }
    };
    if method.is_empty() {
        return None;
    }
    // ` code size`, then nothing or ` "referer" "agent"`.
    if t.get(re + 1) != Some(&b' ') {
        return None;
    }
    let (code, at) = word(re + 2)?;
    let tail = &t[at..];
    let (size, refagent) = match memchr::memchr(b' ', tail) {
        None => (tail, None),
        Some(n) => (&tail[..n], Some(&tail[n..])),
    };
    if let Some(ra) = refagent {
        let ra = ra.strip_prefix(b" \"")?.strip_suffix(b"\"")?;
        let q = memchr::memchr(b'"', ra)?;
        let agent = ra[q..].strip_prefix(b"\" \"")?;
        if memchr::memchr(b'"', agent).is_some() {
            return None;
        }
        f[7] = Some(&ra[..q]);
        f[8] = Some(agent);
    }
    f[0] = Some(host);
    f[1] = Some(user);
    f[2] = Some(time);
    f[3] = Some(method);
    f[4] = path;
    f[5] = Some(code);
    f[6] = Some(size);
    Some(f)
}

#[derive(Debug)]
pub struct Apache2Parser {
    time: TimeParser,
    locs: regex::bytes::CaptureLocations,
    idx: [usize; 9],
}

const FIELDS: [&str; 9] = ["host", "user", "time", "method", "path", "code", "size", "referer", "agent"];

impl Apache2Parser {
    pub fn new(common: &Common) -> Self {
        let re = regex();
        let mut idx = [0usize; 9];
        for (i, name) in re.capture_names().enumerate() {
            if let Some(j) = name.and_then(|n| FIELDS.iter().position(|f| *f == n)) {
                idx[j] = i;
            }
        }
        let conf = TimeConf::with_format(TIME_FORMAT, common.time.zone())
            .unwrap_or_else(|e| unreachable!("static format: {e}"));
        Apache2Parser { time: TimeParser::new(conf), locs: re.capture_locations(), idx }
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let fast = fast_fields(text);
        if fast.is_none() && regex().captures_read(&mut self.locs, text).is_none() {
            sink.error(ParseError::NoMatch);
            return;
        }
        let locs = &self.locs;
        let get = |j: usize| match &fast {
            Some(f) => f[j],
            None => locs.get(self.idx[j]).map(|(s, e)| &text[s..e]),
        };
        let time_text = get(2).unwrap_or_default();
        let time = &mut self.time;
        emit(out, sink, |out| {
            let t = time.parse_str(time_text)?;
            let mut r = Rec::begin(out, None);
            let dash_nil = |r: &mut Rec<'_>, key: &[u8], v: Option<&[u8]>| match v {
                Some(v) if v != b"-" => r.plain_str(key, v),
                _ => r.nil(key),
            };
            dash_nil(&mut r, b"host", get(0));
            dash_nil(&mut r, b"user", get(1));
            match get(3) {
                Some(m) => r.plain_str(b"method", m),
                None => r.nil(b"method"),
            }
            match get(4) {
                Some(p) => r.plain_str(b"path", p),
                None => r.nil(b"path"),
            }
            match get(5).map(ruby_to_i) {
                Some(c) if c != 0 => r.int(b"code", c as i64),
                _ => r.nil(b"code"),
            }
            match get(6) {
                Some(s) if s != b"-" => r.int(b"size", ruby_to_i(s).clamp(i64::MIN as i128, i64::MAX as i128) as i64),
                _ => r.nil(b"size"),
            }
            dash_nil(&mut r, b"referer", get(7));
            dash_nil(&mut r, b"agent", get(8));
            if ctx.common.keep_time_key {
                r.plain_str(b"time", time_text);
            }
            Ok(r.finish_with(Some(t)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct reading equals the regexp on every line it accepts.
    #[test]
    fn fast_fields_match_the_regexp() {
        let re = regex();
        let names: Vec<Option<&str>> = re.capture_names().collect();
        let hosts = ["192.168.0.1", "-", ""];
        let users = ["-", "frank", ""];
        let times = ["28/Feb/2013:12:00:00 +0900", "", "x]y"];
        let reqs = [
            "GET / HTTP/1.1",
            "GET",
            "GET ",
            "GET  /a b  HTTP/1.0",
            "GET /a  ",
            "POST /x?y=z",
            "",
            " /",
            "GET /a\"b HTTP/1.1",
            "GET /p H x",
        ];
        let codes = ["200", "-", ""];
        let sizes = ["777", "-", ""];
        let tails = [
            "",
            " \"-\" \"Opera/12.0\"",
            " \"http://r/\" \"a b\"",
            " \"x\"",
            " \"a\" \"b\" extra",
            " \"\" \"\"",
            "  \"a\" \"b\"",
        ];
        let mut n = 0;
        for h in hosts {
            for u in users {
                for tm in times {
                    for r in reqs {
                        for c in codes {
                            for sz in sizes {
                                for tl in tails {
                                    let line = format!("{h} - {u} [{tm}] \"{r}\" {c} {sz}{tl}");
                                    let t = line.as_bytes();
                                    let Some(fast) = fast_fields(t) else { continue };
                                    n += 1;
                                    let caps =
                                        re.captures(t).unwrap_or_else(|| panic!("regexp does not match {line:?}"));
                                    for (j, field) in FIELDS.iter().enumerate() {
                                        let i = names.iter().position(|x| *x == Some(*field)).unwrap();
                                        assert_eq!(fast[j], caps.get(i).map(|m| m.as_bytes()), "{field} of {line:?}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 1000, "{n}");
    }
}
