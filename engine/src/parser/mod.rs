//! `<parse>` plugins, as fluentd's `lib/fluent/plugin/parser_*.rb`: `none`, `json`,
//! `regexp`, `ltsv`, `csv`, `tsv`, `syslog`, `apache`, `apache2`, `apache_error`,
//! `nginx`, `msgpack`, `multiline`. This module owns the common part: [`ParserConf`]
//! (built once from a `<parse>` element, `Send + Sync + Clone`), the per-shard
//! [`Parser`] (an enum: one `match` per text, the per-field work statically
//! dispatched), [`ParseError`], and the [`Sink`] a caller gets each record through.
//!
//! A parser appends each record as a msgpack map straight into the caller's `Vec<u8>`
//! (no Hash, no String per event; scratch buffers live in the parser and are reused).
//! Common parameters are in `record.rs`, time parsing in `time.rs` / `strptime.rs` /
//! `loose.rs`. filter_parser (which uses these parsers) is in `crate::filter::parser`.

pub mod apache2;
pub mod apache_error;
pub mod civil;
pub mod csv;
pub mod json;
mod json_direct;
mod loose;
pub mod ltsv;
pub mod msgpack;
pub mod multiline;
pub mod nginx;
pub mod none;
pub mod record;
pub mod regexp;
pub mod strptime;
pub mod syslog;
pub mod time;
pub mod tsv;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use spate_protocol::EventTime;

use crate::config::{Attr, ConfigError, Element};
use crate::ruby::regex::RubyRegex;
use record::{Common, Conv, Ctx};
use time::{TimeConf, TimeError, TimeSettings};

/// The parser types spate supports, in the order error messages list them.
pub const SUPPORTED: &[&str] = &[
    "apache",
    "apache2",
    "apache_error",
    "csv",
    "json",
    "ltsv",
    "msgpack",
    "multiline",
    "nginx",
    "none",
    "regexp",
    "syslog",
    "tsv",
];

/// Why a text (or one element of a JSON/msgpack array) gave no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The pattern did not match (fluentd yields `nil, nil`: "pattern not matched").
    #[error("pattern not matched")]
    NoMatch,
    /// Not JSON (fluentd yields `nil, nil` for it too).
    #[error("invalid JSON at byte {offset}: {reason}")]
    Json { offset: usize, reason: Box<str> },
    /// A JSON/msgpack value that is not an object (nor an array of objects).
    #[error("the value is not an object")]
    NotObject,
    /// Not msgpack.
    #[error("invalid msgpack at byte {offset}")]
    Msgpack { offset: usize },
    /// Malformed CSV (Ruby's CSV raises MalformedCSVError).
    #[error("malformed CSV: {0}")]
    Csv(&'static str),
    /// The time field did not parse (fluentd raises ParserError).
    #[error("invalid time: {0}")]
    Time(#[from] TimeError),
    /// A record nested deeper than spate's events can carry.
    #[error("the record is nested deeper than {RECORD_DEPTH} levels")]
    TooDeep,
}

/// The deepest record a parser emits, counting the record's map as one level: an event
/// `[time, record]` must stay within the Forward decoder's depth limit
/// (`msgpack::MAX_DEPTH`) with a level to spare for filter_parser's `hash_value_field`.
/// A deeper record would make every reader of the batch stop at it (and drop the
/// events after it), so it is a parse error instead.
pub const RECORD_DEPTH: usize = spate_protocol::msgpack::MAX_DEPTH - 4;

impl ParseError {
    /// Whether fluentd's parser yields `nil, nil` for this (no match) rather than
    /// raising. filter_parser keeps the record for `reserve_data` only in that case.
    pub fn is_no_match(&self) -> bool {
        matches!(
            self,
            ParseError::NoMatch
                | ParseError::Json { .. }
                | ParseError::NotObject
                | ParseError::Msgpack { .. }
                | ParseError::TooDeep
        )
    }
}

/// Where a parser delivers records. The parser calls `begin` before writing a record's
/// map into `out` (so the sink can write a prefix, e.g. an entry header), then either
/// `record` (the map is complete) or, after cutting `out` back to where it was before
/// `begin`, `error`.
pub trait Sink {
    #[inline]
    fn begin(&mut self, _out: &mut Vec<u8>) {}
    /// A complete record; `time` is the record's time, the current time
    /// (`estimate_current_event`), or None.
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>);
    fn error(&mut self, err: ParseError);
    /// Whether [`Sink::rollback`] can take back records: then a parser that must
    /// emit all of a text or nothing (JSON) writes straight into `out` instead of
    /// staging the records and copying them.
    #[inline]
    fn can_roll_back(&self) -> bool {
        false
    }
    /// Takes back the last `records` records (`out` is cut back by the caller). Only
    /// called when [`Sink::can_roll_back`] says so.
    #[inline]
    fn rollback(&mut self, _records: u32) {}
}

/// Runs `f` to write one record between the sink's `begin` and `record`/`error`.
#[inline]
pub(crate) fn emit<S: Sink>(
    out: &mut Vec<u8>,
    sink: &mut S,
    f: impl FnOnce(&mut Vec<u8>) -> Result<Option<EventTime>, ParseError>,
) {
    let mark = out.len();
    sink.begin(out);
    match f(out) {
        Ok(t) => sink.record(out, t),
        Err(e) => {
            out.truncate(mark);
            sink.error(e);
        }
    }
}

/// The type-specific configuration.
#[derive(Debug, Clone)]
enum KindConf {
    None(none::Conf),
    Json(json::Conf),
    Regexp(regexp::Conf),
    Ltsv(ltsv::Conf),
    Csv(csv::Conf),
    Tsv(tsv::Conf),
    Syslog(syslog::Conf),
    Apache2,
    Msgpack,
    Multiline(multiline::Conf),
}

/// A `<parse>` section, validated (shared by every shard).
#[derive(Debug, Clone)]
pub struct ParserConf {
    pub type_name: String,
    common: Common,
    kind: KindConf,
}

/// The per-type defaults of the common parameters.
struct Defaults {
    time_key: Option<&'static str>,
    time_type: &'static str,
    time_format: Option<&'static str>,
}

fn cerr(e: &Element, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(&e.pos, msg)
}

/// Reads a `:regexp` parameter (`/re/flags` or a bare pattern).
pub(crate) fn regexp_param(e: &Element, key: &str) -> Result<Option<Arc<RubyRegex>>, ConfigError> {
    match e.get(key) {
        None => Ok(None),
        Some(a) => RubyRegex::from_config(&a.value)
            .map(|r| Some(Arc::new(r)))
            .map_err(|m| ConfigError::at(&a.pos, format!("{key} {:?}: invalid regexp: {m}", a.value))),
    }
}

/// fluentd v0.12's flat parser parameters that fluentd v1's compat layer copies into
/// `<parse>` under the same name (`plugin_helper/compat_parameters.rb`, PARSER_PARAMS;
/// `format`, `types`, `localtime` and `utc` are handled apart).
const V012_PARSER_PARAMS: [&str; 14] = [
    "keys",
    "time_key",
    "time_format",
    "delimiter",
    "keep_time_key",
    "null_empty_string",
    "null_value_pattern",
    "json_parser",
    "label_delimiter",
    "format_firstline",
    "message_key",
    "with_priority",
    "message_format",
    "rfc5424_time_format",
];

/// The `<parse>` fluentd v1's compat layer makes of a plugin's v0.12 flat parser
/// parameters (in_tcp, in_udp, in_syslog, in_http, filter_parser call it): None when
/// the plugin has a `<parse>` or none of them. `format /re/` is `@type regexp` with that
/// expression, another `format` is the `@type`; `types` with `types_delimiter` /
/// `types_label_delimiter` becomes a JSON hash. The section's parameters count as used
/// (fluentd reads them all off the plugin's own section, which some also use, such as
/// in_tcp's `delimiter`): what the parser ignores is not warned about, as in fluentd.
pub fn v012_section(e: &Element) -> Result<Option<Element>, ConfigError> {
    if e.single("parse")?.is_some() {
        return Ok(None);
    }
    let mut attrs = Vec::new();
    for k in V012_PARSER_PARAMS {
        if let Some(a) = e.get(k) {
            attrs.push(a.clone());
        }
    }
    if let Some(f) = e.get("format") {
        let v = f.value.as_str();
        match v.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(re) if v.len() >= 2 => {
                attrs.push(Attr { key: "@type".into(), value: "regexp".into(), pos: f.pos.clone() });
                attrs.push(Attr { key: "expression".into(), value: re.to_string(), pos: f.pos.clone() });
            }
            _ => attrs.push(Attr { key: "@type".into(), value: v.to_string(), pos: f.pos.clone() }),
        }
    }
    let (td, tld) = (e.get("types_delimiter").cloned(), e.get("types_label_delimiter").cloned());
    if let Some(t) = e.get("types") {
        let value = if td.is_some() || tld.is_some() {
            let (d, l) =
                (td.as_ref().map_or(",", |a| a.value.as_str()), tld.as_ref().map_or(":", |a| a.value.as_str()));
            let mut m = serde_json::Map::new();
            for pair in t.value.split(d) {
                let (k, v) = pair.split_once(l).unwrap_or((pair, ""));
                m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            serde_json::Value::Object(m).to_string()
        } else {
            t.value.clone()
        };
        attrs.push(Attr { key: "types".into(), value, pos: t.pos.clone() });
    }
    match (e.get("localtime").cloned(), e.get("utc").cloned()) {
        (Some(_), Some(u)) => {
            return Err(ConfigError::at(&u.pos, "both of utc and localtime are specified, use only one of them"))
        }
        (Some(a), None) | (None, Some(a)) => attrs.push(a),
        (None, None) => {}
    }
    if attrs.is_empty() && td.is_none() && tld.is_none() {
        return Ok(None);
    }
    let p = Element::new("parse".into(), String::new(), attrs, Vec::new(), e.pos.clone());
    p.mark_all_used();
    Ok(Some(p))
}

impl ParserConf {
    /// Builds the configuration from a `<parse>` element (`@type` required).
    pub fn from_element(e: &Element) -> Result<ParserConf, ConfigError> {
        let ty = e
            .plugin_type()
            .ok_or_else(|| cerr(e, format!("<{}> requires @type (supported: {})", e.name, SUPPORTED.join(", "))))?;
        Self::with_type(e, ty)
    }

    /// Builds a parser of type `ty` from `e`'s parameters (also for the v0.12 flat
    /// `format` parameter, where the parameters sit on the owner).
    pub fn with_type(e: &Element, ty: &str) -> Result<ParserConf, ConfigError> {
        let d = match ty {
            "json" => Defaults { time_key: Some("time"), time_type: "float", time_format: None },
            "regexp" | "ltsv" | "apache_error" | "multiline" => {
                Defaults { time_key: Some("time"), time_type: "string", time_format: None }
            }
            "nginx" | "apache" => {
                Defaults { time_key: Some("time"), time_type: "string", time_format: Some(nginx::TIME_FORMAT) }
            }
            "syslog" => {
                Defaults { time_key: None, time_type: "string", time_format: Some(syslog::RFC3164_TIME_FORMAT) }
            }
            "none" | "csv" | "tsv" | "msgpack" | "apache2" => {
                Defaults { time_key: None, time_type: "string", time_format: None }
            }
            other => {
                let pos = e.get("@type").map_or(&e.pos, |a| &a.pos);
                return Err(ConfigError::at(
                    pos,
                    format!("unknown parser type {other:?} (supported: {})", SUPPORTED.join(", ")),
                ));
            }
        };
        let common = common_conf(e, &d, ty)?;
        let kind = match ty {
            "none" => KindConf::None(none::Conf::from_element(e)?),
            "json" => KindConf::Json(json::Conf::from_element(e)?),
            "regexp" => KindConf::Regexp(regexp::Conf::from_element(e, &common, None)?),
            "apache" => KindConf::Regexp(regexp::Conf::from_element(e, &common, Some(apache2::APACHE_EXPRESSION))?),
            "apache_error" => KindConf::Regexp(regexp::Conf::from_element(e, &common, Some(apache_error::EXPRESSION))?),
            "nginx" => KindConf::Regexp(regexp::Conf::from_element(e, &common, Some(nginx::EXPRESSION))?),
            "ltsv" => KindConf::Ltsv(ltsv::Conf::from_element(e)?),
            "csv" => KindConf::Csv(csv::Conf::from_element(e, &common)?),
            "tsv" => KindConf::Tsv(tsv::Conf::from_element(e, &common)?),
            "syslog" => KindConf::Syslog(syslog::Conf::from_element(e, &common)?),
            "apache2" => KindConf::Apache2,
            "msgpack" => KindConf::Msgpack,
            "multiline" => KindConf::Multiline(multiline::Conf::from_element(e, &common)?),
            _ => unreachable!("checked above"),
        };
        Ok(ParserConf { type_name: ty.to_string(), common, kind })
    }

    /// A parser for one shard.
    pub fn build(&self) -> Parser {
        let kind = match &self.kind {
            KindConf::None(c) => Kind::None(none::NoneParser::new(c.clone())),
            KindConf::Json(_) => Kind::Json(json::JsonParser::default()),
            KindConf::Regexp(c) => Kind::Regexp(regexp::RegexpParser::new(c.clone())),
            KindConf::Ltsv(c) => Kind::Ltsv(ltsv::LtsvParser::new(c.clone())),
            KindConf::Csv(c) => Kind::Csv(csv::CsvParser::new(c.clone())),
            KindConf::Tsv(c) => Kind::Tsv(tsv::TsvParser::new(c.clone())),
            KindConf::Syslog(c) => Kind::Syslog(Box::new(syslog::SyslogParser::new(c.clone()))),
            KindConf::Apache2 => Kind::Apache2(apache2::Apache2Parser::new(&self.common)),
            KindConf::Msgpack => Kind::Msgpack(msgpack::MsgpackParser),
            KindConf::Multiline(c) => Kind::Multiline(multiline::MultilineParser::new(c.clone())),
        };
        Parser { ctx: Ctx::new(self.common.clone()), kind, dedup: record::Dedup::default() }
    }

    /// No time taken from the record (fluent-plugin-parser's `time_parse false`: the
    /// time field stays in the record).
    pub fn without_time_key(&mut self) {
        self.common.time_key = None;
    }

    /// Whether a record without a time gets the current time (`true`, fluentd's
    /// default) or none, so the caller keeps the event's.
    pub fn set_estimate_current_event(&mut self, on: bool) {
        self.common.estimate_current_event = on;
    }

    /// Whether the parser takes binary input (msgpack) rather than text.
    pub fn is_binary(&self) -> bool {
        matches!(self.kind, KindConf::Msgpack)
    }

    /// For `multiline`: whether `format_firstline` is set (in_tail's grouping).
    pub fn has_firstline(&self) -> bool {
        matches!(&self.kind, KindConf::Multiline(c) if c.firstline.is_some())
    }
}

/// The common parameters (fluentd's Parser base class and TimeMixin::Parser).
fn common_conf(e: &Element, d: &Defaults, ty: &str) -> Result<Common, ConfigError> {
    let time_key = match e.get("time_key") {
        Some(a) => Some(a.value.clone()),
        None => d.time_key.map(str::to_string),
    };
    let time_format = e.str("time_format").or(d.time_format);
    // parser_json: a time_format without time_type means string times.
    let time_type = match e.enum_of("time_type", &["string", "unixtime", "float", "mixed"])? {
        Some(t) => t,
        None if ty == "json" && e.get("time_format").is_some() => "string".to_string(),
        None => d.time_type.to_string(),
    };
    let fallbacks = e.array("time_format_fallbacks")?.unwrap_or_default();
    let settings = TimeSettings {
        time_type: Some(&time_type),
        time_format,
        fallbacks,
        localtime: e.bool("localtime")?,
        utc: e.bool("utc")?,
        timezone: e.str("timezone"),
    };
    let at = |key: &str| e.get(key).map_or(e.pos.clone(), |a| a.pos.clone());
    let time = TimeConf::new(&settings).map_err(|m| {
        let key = ["time_format", "timezone", "time_type", "utc", "localtime"].into_iter().find(|k| e.get(k).is_some());
        ConfigError::at(&key.map_or(e.pos.clone(), at), m)
    })?;
    let mut types = Vec::new();
    if let Some(pairs) = e.hash("types")? {
        for (k, def) in pairs {
            let conv = Conv::parse(&def, time.zone())
                .map_err(|m| ConfigError::at(&at("types"), format!("types: key {k:?}: {m}")))?;
            types.push((k.into_bytes().into_boxed_slice(), conv));
        }
    }
    if let Some(a) = e.get("timeout") {
        crate::warn!(
            "{}: timeout {}: ignored; spate's regexps run in linear time (look-around patterns have a backtracking limit), so a parse cannot hang",
            a.pos,
            a.value
        );
    }
    Ok(Common {
        time_key: time_key.map(|k| k.into_bytes().into_boxed_slice()),
        keep_time_key: e.bool("keep_time_key")?.unwrap_or(false),
        estimate_current_event: e.bool("estimate_current_event")?.unwrap_or(true),
        null_pattern: regexp_param(e, "null_value_pattern")?,
        null_empty_string: e.bool("null_empty_string")?.unwrap_or(false),
        types,
        time,
    })
}

/// The type-specific per-shard state.
#[derive(Debug)]
enum Kind {
    None(none::NoneParser),
    Json(json::JsonParser),
    Regexp(regexp::RegexpParser),
    Ltsv(ltsv::LtsvParser),
    Csv(csv::CsvParser),
    Tsv(tsv::TsvParser),
    /// Boxed: by far the biggest state (three time parsers and a regexp).
    Syslog(Box<syslog::SyslogParser>),
    Apache2(apache2::Apache2Parser),
    Msgpack(msgpack::MsgpackParser),
    Multiline(multiline::MultilineParser),
}

/// A parser instance for one shard (not shared; `&mut self` per call).
#[derive(Debug)]
pub struct Parser {
    ctx: Ctx,
    kind: Kind,
    dedup: record::Dedup,
}

impl Parser {
    /// Parses one text (one line, one message, one body), delivering each record it
    /// holds through `sink` (JSON and msgpack texts may hold several).
    pub fn parse<S: Sink>(&mut self, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let ctx = &mut self.ctx;
        ctx.new_text();
        match &mut self.kind {
            Kind::None(p) => p.parse(ctx, text, out, sink),
            Kind::Json(p) => p.parse(ctx, &mut self.dedup, text, out, sink),
            Kind::Regexp(p) => p.parse(ctx, text, out, sink),
            Kind::Ltsv(p) => p.parse(ctx, &mut self.dedup, text, out, sink),
            Kind::Csv(p) => p.parse(ctx, text, out, sink),
            Kind::Tsv(p) => p.parse(ctx, text, out, sink),
            Kind::Syslog(p) => p.parse(ctx, text, out, sink),
            Kind::Apache2(p) => p.parse(ctx, text, out, sink),
            Kind::Msgpack(p) => p.parse(ctx, &mut self.dedup, text, out, sink),
            Kind::Multiline(p) => p.parse(ctx, text, out, sink),
        }
    }

    /// parser_json's serde_json path alone (the tests compare it with the direct path).
    #[cfg(test)]
    pub(crate) fn parse_json_via_msgpack<S: Sink>(&mut self, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        if let Kind::Json(p) = &mut self.kind {
            p.parse_via_msgpack(&mut self.ctx, &mut self.dedup, text, out, sink);
        }
    }

    /// Records parser_json's direct path wrote through its layout so far.
    #[cfg(test)]
    pub(crate) fn json_layout_hits(&self) -> usize {
        match &self.kind {
            Kind::Json(p) => p.direct.layout_hits(),
            _ => 0,
        }
    }

    /// Whether parser_json's direct path takes `text` (the tests check it is the one
    /// being compared).
    #[cfg(test)]
    pub(crate) fn json_direct_takes(&mut self, text: &[u8]) -> bool {
        struct Nothing;
        impl Sink for Nothing {
            fn record(&mut self, _: &mut Vec<u8>, _: Option<EventTime>) {}
            fn error(&mut self, _: ParseError) {}
        }
        match &mut self.kind {
            Kind::Json(p) => {
                p.direct.parse(&mut self.ctx, &mut self.dedup, text, &mut Vec::new(), &mut Nothing).is_ok()
            }
            _ => false,
        }
    }

    /// Parses a text that holds one record: appends its map to `out` and returns its
    /// time. Further records of a JSON/msgpack array are dropped; use [`Parser::parse`]
    /// for those.
    pub fn parse_one(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<Option<EventTime>, ParseError> {
        let mut s = First { res: None, end: None };
        self.parse(text, out, &mut s);
        if let Some(end) = s.end {
            out.truncate(end);
        }
        s.res.unwrap_or(Err(ParseError::NoMatch))
    }

    /// For in_syslog: the syslog parser keeps `pri` out of the records and reports it
    /// through [`Parser::syslog_pri`] instead. False if this is not a syslog parser.
    pub fn take_syslog_pri(&mut self) -> bool {
        match &mut self.kind {
            Kind::Syslog(p) => {
                p.pri_out = true;
                true
            }
            _ => false,
        }
    }

    /// The priority of the last text the syslog parser read (with `with_priority`).
    pub fn syslog_pri(&self) -> Option<i64> {
        match &self.kind {
            Kind::Syslog(p) => p.last_pri,
            _ => None,
        }
    }

    /// Whether this is a syslog parser with `with_priority`.
    pub fn syslog_with_priority(&self) -> bool {
        matches!(&self.kind, Kind::Syslog(p) if p.with_priority())
    }

    /// For `multiline` with `format_firstline`: whether `line` starts a new event.
    pub fn is_firstline(&mut self, line: &[u8]) -> bool {
        match &mut self.kind {
            Kind::Multiline(p) => p.is_firstline(line),
            _ => true,
        }
    }

    /// Whether the type's regexps need valid UTF-8 to match as Ruby does (Ruby raises
    /// "invalid byte sequence" on them; filter_parser scrubs or reports).
    pub fn is_regexp_based(&self) -> bool {
        matches!(self.kind, Kind::Regexp(_) | Kind::Syslog(_) | Kind::Apache2(_) | Kind::Multiline(_))
    }
}

/// Keeps the first record's outcome, drops the rest.
struct First {
    res: Option<Result<Option<EventTime>, ParseError>>,
    /// The end of the first record in `out`.
    end: Option<usize>,
}

impl Sink for First {
    fn record(&mut self, out: &mut Vec<u8>, time: Option<EventTime>) {
        if self.res.is_none() {
            self.res = Some(Ok(time));
            self.end = Some(out.len());
        }
    }
    fn error(&mut self, err: ParseError) {
        if self.res.is_none() {
            self.res = Some(Err(err));
        }
    }
}
