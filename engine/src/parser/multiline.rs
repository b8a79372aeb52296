//! `parser_multiline`: `format1`..`format20` (each `/regexp/`) joined into one regexp in
//! multiline mode (`.` matches newlines), matched repeatedly over the text: each match
//! is a record, the text after it (less one newline) is matched again, as fluentd's
//! `parser_multiline.rb`. `format_firstline` (`/regexp/`) tells in_tail where an event
//! starts ([`MultilineParser::is_firstline`]); a parser fed whole messages (in_tcp,
//! filter_parser) does not need it, as in fluentd. `unmatched_lines` turns a text that
//! does not match into `{"unmatched_line": text}` with the current time.

use super::record::{Common, Ctx, Rec};
use super::regexp::{Conf as RegexpConf, RegexpParser};
use super::{emit, ParseError, Sink};
use crate::config::{ConfigError, Element};
use crate::ruby::regex::RubyRegex;

use std::sync::Arc;

const FORMAT_MAX_NUM: u32 = 20;

#[derive(Debug, Clone)]
pub struct Conf {
    regexp: RegexpConf,
    pub(crate) firstline: Option<Arc<RubyRegex>>,
    unmatched_lines: bool,
}

/// `/body/` -> body (fluentd's check_format_regexp).
fn slashed<'a>(e: &Element, key: &str, v: &'a str) -> Result<&'a str, ConfigError> {
    let pos = e.get(key).map_or(e.pos.clone(), |a| a.pos.clone());
    match v.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
        Some(body) => {
            RubyRegex::new(body, false, true)
                .map_err(|m| ConfigError::at(&pos, format!("Invalid regexp in {key}: {m}")))?;
            Ok(body)
        }
        None => Err(ConfigError::at(&pos, format!("format should be Regexp, need //, in {key}: '{v}'"))),
    }
}

impl Conf {
    pub fn from_element(e: &Element, common: &Common) -> Result<Conf, ConfigError> {
        let bad: Vec<&str> = e
            .attrs
            .iter()
            .filter_map(|a| {
                let n: u32 = a.key.strip_prefix("format")?.parse().ok()?;
                (!(1..=FORMAT_MAX_NUM).contains(&n)).then_some(a.key.as_str())
            })
            .collect();
        if !bad.is_empty() {
            return Err(ConfigError::at(
                &e.pos,
                format!("Invalid formatN found. N should be 1 - {FORMAT_MAX_NUM}: {}", bad.join(",")),
            ));
        }
        let mut joined = String::new();
        let mut prev_missing = false;
        for i in 1..=FORMAT_MAX_NUM {
            let key = format!("format{i}");
            match e.str(&key) {
                Some(v) => {
                    if i > 1 && prev_missing {
                        return Err(ConfigError::at(
                            &e.pos,
                            format!("Jump of format index found. format{} is missing.", i - 1),
                        ));
                    }
                    joined.push_str(slashed(e, &key, v)?);
                    prev_missing = false;
                }
                None => prev_missing = true,
            }
        }
        let re = RubyRegex::new(&joined, false, true)
            .map_err(|m| ConfigError::at(&e.pos, format!("Invalid regexp '{joined}': {m}")))?;
        let regexp = RegexpConf::from_regex(re, common)
            .map_err(|_| ConfigError::at(&e.pos, format!("Invalid regexp '{joined}': No named captures")))?;
        let firstline = match e.str("format_firstline") {
            Some(v) => {
                let body = slashed(e, "format_firstline", v)?;
                Some(Arc::new(RubyRegex::new(body, false, false).map_err(|m| ConfigError::at(&e.pos, m))?))
            }
            None => None,
        };
        Ok(Conf { regexp, firstline, unmatched_lines: e.get("unmatched_lines").is_some() })
    }
}

#[derive(Debug)]
pub struct MultilineParser {
    inner: RegexpParser,
    firstline: Option<Arc<RubyRegex>>,
    unmatched_lines: bool,
    scratch: Vec<u8>,
}

/// Records the outcome of one inner match while passing records on.
struct Track<'s, S: Sink> {
    sink: &'s mut S,
    failed: Option<ParseError>,
    unmatched: bool,
}

impl<S: Sink> Sink for Track<'_, S> {
    fn begin(&mut self, out: &mut Vec<u8>) {
        self.sink.begin(out);
    }
    fn record(&mut self, out: &mut Vec<u8>, time: Option<spate_protocol::EventTime>) {
        self.sink.record(out, time);
    }
    fn error(&mut self, err: ParseError) {
        if self.unmatched && err == ParseError::NoMatch {
            self.failed = Some(err);
        } else {
            self.sink.error(err);
        }
    }
}

impl MultilineParser {
    pub fn new(conf: Conf) -> Self {
        MultilineParser {
            inner: RegexpParser::new(conf.regexp),
            firstline: conf.firstline,
            unmatched_lines: conf.unmatched_lines,
            scratch: Vec::new(),
        }
    }

    pub fn is_firstline(&mut self, line: &[u8]) -> bool {
        match &self.firstline {
            Some(re) => re.is_match(line, &mut self.scratch),
            None => true,
        }
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let mut rest = text;
        loop {
            let mut track = Track { sink: &mut *sink, failed: None, unmatched: self.unmatched_lines };
            let end = self.inner.parse_at(ctx, rest, 0, out, &mut track);
            if track.failed.is_some() {
                emit(out, sink, |out| {
                    let mut r = Rec::begin(out, None);
                    r.plain_str(b"unmatched_line", rest);
                    Ok(r.finish_with(Some(spate_protocol::EventTime::now())))
                });
                return;
            }
            let Some(end) = end.filter(|&e| e > 0) else { return };
            rest = &rest[end..];
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
            if rest.is_empty() {
                return;
            }
        }
    }
}
