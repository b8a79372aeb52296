//! `parser_ltsv`: Labeled Tab-Separated Values (`label:value` pairs), as fluentd's
//! `parser_ltsv.rb`: pairs split at `delimiter` (default TAB; or `delimiter_pattern`,
//! a regexp), each pair at its first `label_delimiter` (default `:`); a pair without
//! one is skipped; a repeated label keeps its first position and its last value.

use std::sync::Arc;

use super::record::{split_raw, Ctx, Dedup, Rec};
use super::{emit, regexp_param, Sink};
use crate::config::{ConfigError, Element};
use crate::ruby::regex::RubyRegex;

#[derive(Debug, Clone)]
pub struct Conf {
    delimiter: Box<[u8]>,
    pattern: Option<Arc<RubyRegex>>,
    label_delimiter: Box<[u8]>,
}

impl Conf {
    pub fn from_element(e: &Element) -> Result<Conf, ConfigError> {
        Ok(Conf {
            delimiter: e.string_or("delimiter", "\t").into_bytes().into(),
            pattern: regexp_param(e, "delimiter_pattern")?,
            label_delimiter: e.string_or("label_delimiter", ":").into_bytes().into(),
        })
    }
}

#[derive(Debug)]
pub struct LtsvParser {
    conf: Conf,
}

/// One pair: `key<label_delimiter>value`, or nothing without the delimiter.
#[inline]
fn pair<'a>(p: &'a [u8], ld: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if ld.len() == 1 {
        let i = memchr::memchr(ld[0], p)?;
        return Some((&p[..i], &p[i + 1..]));
    }
    let i = memchr::memmem::find(p, ld)?;
    Some((&p[..i], &p[i + ld.len()..]))
}

impl LtsvParser {
    pub fn new(conf: Conf) -> Self {
        LtsvParser { conf }
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, dedup: &mut Dedup, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let conf = &self.conf;
        emit(out, sink, |out| {
            let mut r = Rec::begin(out, Some(dedup));
            let mut field = |r: &mut Rec<'_>, p: &[u8]| {
                if let Some((k, v)) = pair(p, &conf.label_delimiter) {
                    let role = ctx.common.role(k);
                    r.str(ctx, k, role, v);
                }
            };
            match conf.pattern.as_deref() {
                Some(RubyRegex::Fast { re, .. }) => {
                    let mut at = 0;
                    for m in re.find_iter(text) {
                        if m.end() == 0 {
                            continue;
                        }
                        field(&mut r, &text[at..m.start()]);
                        at = m.end();
                    }
                    field(&mut r, &text[at..]);
                }
                Some(RubyRegex::Fancy(re)) => {
                    let t = String::from_utf8_lossy(text);
                    let mut at = 0;
                    for m in re.find_iter(&t).flatten() {
                        field(&mut r, &t.as_bytes()[at..m.start()]);
                        at = m.end();
                    }
                    field(&mut r, &t.as_bytes()[at..]);
                }
                None => {
                    for p in split_raw(text, &conf.delimiter) {
                        field(&mut r, p);
                    }
                }
            }
            Ok(r.finish(ctx)?)
        });
    }
}
