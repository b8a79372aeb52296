//! `parser_json`: a JSON object is one record; an array of objects is one record per
//! object (an element that is not an object, or a text that is not JSON, is a
//! "pattern not matched", never a crash). Defaults as fluentd's: `time_key time`,
//! `time_type float` (`string` when `time_format` is given).
//!
//! `json_parser` (oj/yajl/json) is accepted and ignored with a note: spate has one JSON
//! reader (`json_direct`, straight into records; serde_json for what it does not take
//! and for the error messages), and the three Ruby engines give the same records for
//! valid JSON.

use spate_protocol::msgpack::{self, Head};
use spate_protocol::{RecordRef, ValueRef};

use super::record::{Ctx, Dedup, Rec};
use super::{emit, ParseError, Sink};
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone)]
pub struct Conf;

impl Conf {
    pub fn from_element(e: &Element) -> Result<Conf, ConfigError> {
        if let Some(p) = e.enum_of("json_parser", &["oj", "yajl", "json"])? {
            crate::info!(
                "{}: json_parser {p}: spate parses JSON with its own reader (the same records as Ruby's engines give)",
                e.get("json_parser").map_or(e.pos.clone(), |a| a.pos.clone())
            );
        }
        // Only used by fluentd's parse_io (in_exec/in_tail streaming); nothing to size here.
        e.int("stream_buffer_size")?;
        Ok(Conf)
    }
}

#[derive(Debug, Default)]
pub struct JsonParser {
    /// The text converted to msgpack (reused).
    scratch: Vec<u8>,
    /// The direct reader (the parser tests call it alone).
    pub(super) direct: super::json_direct::Direct,
}

/// Writes the fields of one msgpack map as a record.
pub(crate) fn map_record<S: Sink>(
    ctx: &mut Ctx,
    dedup: &mut Dedup,
    map: RecordRef<'_>,
    out: &mut Vec<u8>,
    sink: &mut S,
) {
    emit(out, sink, |out| {
        let mut r = Rec::begin(out, Some(dedup));
        for (k, v) in map.fields() {
            match k.as_str() {
                Some(key) => r.value(ctx, key, v),
                // Non-string keys (msgpack only): kept as Ruby keeps them; they can
                // be neither the time key nor typed.
                None => r.raw_field(k.as_bytes(), v.as_bytes()),
            }
        }
        Ok(r.finish(ctx)?)
    });
}

/// One decoded msgpack value: a map is a record, an array is one record per map. A
/// record nested deeper than [`super::RECORD_DEPTH`] is an error, not a record.
pub(crate) fn value_records<S: Sink>(ctx: &mut Ctx, dedup: &mut Dedup, v: &[u8], out: &mut Vec<u8>, sink: &mut S) {
    let record = |ctx: &mut Ctx, dedup: &mut Dedup, m: &[u8], out: &mut Vec<u8>, sink: &mut S| match msgpack::value_len(
        m,
        super::RECORD_DEPTH,
    )
    .ok()
    .and_then(|_| RecordRef::new(m))
    {
        Some(m) => map_record(ctx, dedup, m, out, sink),
        None => sink.error(ParseError::TooDeep),
    };
    match msgpack::head(v) {
        Ok(Some(Head::Map { .. })) => record(ctx, dedup, v, out, sink),
        Ok(Some(Head::Array { .. })) => match ValueRef::new(v).and_then(|a| a.as_array()) {
            Some(elements) => {
                for el in elements {
                    match el.kind() {
                        msgpack::Kind::Map => record(ctx, dedup, el.as_bytes(), out, sink),
                        _ => sink.error(ParseError::NotObject),
                    }
                }
            }
            None => sink.error(ParseError::TooDeep),
        },
        _ => sink.error(ParseError::NotObject),
    }
}

impl JsonParser {
    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, dedup: &mut Dedup, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        if self.direct.parse(ctx, dedup, text, out, sink).is_ok() {
            return;
        }
        self.parse_via_msgpack(ctx, dedup, text, out, sink);
    }

    /// The serde_json path: the text converted to msgpack, then read as records. It
    /// takes what the direct path does not, and says what is wrong with bad JSON.
    pub(crate) fn parse_via_msgpack<S: Sink>(
        &mut self,
        ctx: &mut Ctx,
        dedup: &mut Dedup,
        text: &[u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        self.scratch.clear();
        if let Err(e) = spate_protocol::json::to_msgpack_into(text, &mut self.scratch) {
            let reason = match e.kind {
                spate_protocol::ErrorKind::Json(m) => m.into_boxed_str(),
                other => other.to_string().into_boxed_str(),
            };
            sink.error(ParseError::Json { offset: e.offset as usize, reason });
            return;
        }
        value_records(ctx, dedup, &self.scratch, out, sink);
    }
}
