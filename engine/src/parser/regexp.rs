//! `parser_regexp` (and the parsers that are a regexp with defaults: `apache`,
//! `apache_error`, `nginx`): fluentd's Ruby named-capture syntax `(?<name>...)`,
//! translated by filter_grep's `RubyRegex` (ASCII `\d \w \s`, `\A \Z`, `/re/im`, ...).
//! Each named group that took part in the match becomes a field (in the order the
//! groups are written); `time_key` (default `time`) gives the time. Capture positions
//! live in a per-shard `CaptureLocations`, so a line costs no allocation.

use std::sync::Arc;

use super::record::{Common, Ctx, Rec, Role};
use super::{emit, ParseError, Sink};
use crate::config::{ConfigError, Element};
use crate::ruby::regex::RubyRegex;
use crate::ruby::value::scrub;

/// (group index, name, role) of a named group.
type NamedGroup = (usize, Box<[u8]>, Role);

#[derive(Debug, Clone)]
pub struct Conf {
    pub(crate) re: Arc<RubyRegex>,
    /// (group index, name, role) of each named group.
    names: Arc<[NamedGroup]>,
}

fn group_names(re: &RubyRegex) -> Vec<(usize, String)> {
    let names: Vec<Option<String>> = match re {
        RubyRegex::Fast { re, .. } => re.capture_names().map(|n| n.map(str::to_string)).collect(),
        RubyRegex::Fancy(re) => re.capture_names().map(|n| n.map(str::to_string)).collect(),
    };
    names.into_iter().enumerate().filter_map(|(i, n)| n.map(|n| (i, n))).collect()
}

impl Conf {
    /// `expression` (required unless the type has a default), and the deprecated
    /// `ignorecase` / `multiline` flags fluentd still applies.
    pub fn from_element(e: &Element, common: &Common, default: Option<&str>) -> Result<Conf, ConfigError> {
        let attr = e.get("expression");
        let (src, pos) = match (attr, default) {
            (Some(a), _) => (a.value.as_str(), a.pos.clone()),
            (None, Some(d)) => (d, e.pos.clone()),
            (None, None) => return Err(ConfigError::at(&e.pos, "'expression' parameter is required")),
        };
        let ic = e.bool("ignorecase")?.unwrap_or(false);
        let ml = e.bool("multiline")?.unwrap_or(false);
        let re = Self::compile(src, ic, ml)
            .map_err(|m| ConfigError::at(&pos, format!("expression {src:?}: invalid regexp: {m}")))?;
        Self::from_regex(re, common).map_err(|m| ConfigError::at(&pos, m))
    }

    /// A `/body/flags` or bare expression, with extra flags.
    pub(crate) fn compile(src: &str, ic: bool, ml: bool) -> Result<RubyRegex, String> {
        if !ic && !ml {
            return RubyRegex::from_config(src);
        }
        match src.strip_prefix('/').and_then(|r| r.rfind('/').map(|i| (&r[..i], &r[i + 1..]))) {
            Some((body, flags)) => RubyRegex::new(body, ic || flags.contains('i'), ml || flags.contains('m')),
            None => RubyRegex::new(src, ic, ml),
        }
    }

    pub(crate) fn from_regex(re: RubyRegex, common: &Common) -> Result<Conf, String> {
        let names: Vec<(usize, Box<[u8]>, Role)> = group_names(&re)
            .into_iter()
            .map(|(i, n)| {
                let role = common.role(n.as_bytes());
                (i, n.into_bytes().into_boxed_slice(), role)
            })
            .collect();
        if names.is_empty() {
            return Err(
                "No named captures in 'expression' parameter. The regexp must have at least one named capture".into()
            );
        }
        Ok(Conf { re: Arc::new(re), names: names.into() })
    }
}

#[derive(Debug)]
pub struct RegexpParser {
    conf: Conf,
    locs: Option<regex::bytes::CaptureLocations>,
    scratch: Vec<u8>,
}

impl RegexpParser {
    pub fn new(conf: Conf) -> Self {
        let locs = match &*conf.re {
            RubyRegex::Fast { re, .. } => Some(re.capture_locations()),
            RubyRegex::Fancy(_) => None,
        };
        RegexpParser { conf, locs, scratch: Vec::new() }
    }

    /// Matches at the start of `text[from..]`-or-later; writes the record and returns
    /// the end of the match (for multiline's repeated matching).
    pub(crate) fn parse_at<S: Sink>(
        &mut self,
        ctx: &mut Ctx,
        text: &[u8],
        from: usize,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) -> Option<usize> {
        let mut end = None;
        let conf = &self.conf;
        match (&*conf.re, self.locs.as_mut()) {
            (RubyRegex::Fast { re, strict, .. }, Some(locs)) => {
                let m = re.captures_read_at(locs, text, from);
                // Ruby's `^` does not match after a final newline; the regex crate's does.
                let caret_at_end =
                    strict.is_some() && m.is_some_and(|m| m.start() == text.len() && text.ends_with(b"\n"));
                match m {
                    Some(m) if !caret_at_end => {
                        end = Some(m.end());
                        emit(out, sink, |out| {
                            let mut r = Rec::begin(out, None);
                            for (i, name, role) in conf.names.iter() {
                                if let Some((s, e)) = locs.get(*i) {
                                    r.str(ctx, name, *role, &text[s..e]);
                                }
                            }
                            Ok(r.finish(ctx)?)
                        });
                    }
                    _ => sink.error(ParseError::NoMatch),
                }
            }
            (RubyRegex::Fancy(re), _) => {
                // fancy-regex matches text: invalid UTF-8 is scrubbed first, as grep does.
                let t: &str = match std::str::from_utf8(text) {
                    Ok(t) => t,
                    Err(_) => {
                        scrub(text, &mut self.scratch);
                        std::str::from_utf8(&self.scratch).unwrap_or("")
                    }
                };
                match re.captures_from_pos(t, from.min(t.len())) {
                    Ok(Some(c)) => {
                        end = c.get(0).map(|m| m.end());
                        emit(out, sink, |out| {
                            let mut r = Rec::begin(out, None);
                            for (i, name, role) in conf.names.iter() {
                                if let Some(m) = c.get(*i) {
                                    r.str(ctx, name, *role, m.as_str().as_bytes());
                                }
                            }
                            Ok(r.finish(ctx)?)
                        });
                    }
                    _ => sink.error(ParseError::NoMatch),
                }
            }
            _ => sink.error(ParseError::NoMatch),
        }
        end
    }

    #[inline]
    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        self.parse_at(ctx, text, 0, out, sink);
    }
}
