//! fluent-plugin-parser's `out_parser` (a v0.12 plugin that fluentd v1 runs through its
//! compat layer; filter_parser replaced it): parses one field of each event
//! (`key_name`) and emits the result under a new tag (`tag`, or `remove_prefix` /
//! `add_prefix` applied to the event's), routed again in the label the `<match>` is in.
//!
//! The parsing is filter_parser's ([`FilterParser`]) with the plugin's differences:
//! - a parsed record without a time keeps the event's (the plugin turns
//!   `estimate_current_event` off), and `time_parse false` leaves the time field in
//!   the record;
//! - events that fail are warnings (not `@ERROR` events): a missing `key_name` unless
//!   `ignore_key_not_exist`, the others unless `suppress_parse_error_log`; with
//!   `reserve_data` the event goes on unparsed, as the plugin's `handle_parsed(..., {})`.
//!   The plugin logs each failure; spate logs the first and then one line per 10 s
//!   with the count, as its filter_parser does;
//! - the parser comes from v0.12's flat `format`, `time_format`... (the `<parse>` fluentd's
//!   compat layer would make) or a `<parse>`.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::filter::parser::{Failure, FailureLog, FilterParser, FilterParserConf, FilterParserError};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "parser",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluent-plugin-parser's output: `key_name` (required), `tag` or `remove_prefix`/`add_prefix`, `reserve_data`, `inject_key_prefix`, `hash_value_field`, `replace_invalid_sequence`, `time_parse` (true), `suppress_parse_error_log`, `ignore_key_not_exist`, v0.12's flat `format`/`time_format`/... or `<parse>`; re-emits in its label. A parsed record without a time keeps the event's",
};

/// How the new tag is made.
#[derive(Debug, Clone)]
enum Retag {
    Fixed(Bytes),
    /// `remove_prefix` (with its dot) and `add_prefix` (with its dot).
    Prefix {
        remove: Option<String>,
        add: Option<String>,
    },
}

impl Retag {
    /// out_parser.rb's `emit`: `remove_prefix` comes off a tag that starts with it and a
    /// dot (and is longer) or equals it; `add_prefix` goes before a non-empty rest, or
    /// is the tag.
    fn apply(&self, tag: &[u8]) -> Bytes {
        match self {
            Retag::Fixed(t) => t.clone(),
            Retag::Prefix { remove, add } => {
                let mut rest: &[u8] = tag;
                if let Some(r) = remove {
                    let bare = &r.as_bytes()[..r.len() - 1];
                    if tag.starts_with(r.as_bytes()) && tag.len() > r.len() {
                        rest = &tag[r.len()..];
                    } else if tag == bare {
                        rest = b"";
                    }
                }
                match add {
                    Some(a) if rest.is_empty() => Bytes::copy_from_slice(&a.as_bytes()[..a.len() - 1]),
                    Some(a) => Bytes::from([a.as_bytes(), rest].concat()),
                    None => Bytes::copy_from_slice(rest),
                }
            }
        }
    }
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "parser");
    let (tag, remove, add) = (e.str("tag"), e.str("remove_prefix"), e.str("add_prefix"));
    let retag = match (tag, remove, add) {
        (None, None, None) => return Err(e.error("missing both of remove_prefix and add_prefix")),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(e.error("both of tag and remove_prefix/add_prefix must not be specified"))
        }
        (Some(t), None, None) => Retag::Fixed(Bytes::copy_from_slice(t.as_bytes())),
        (None, r, a) => Retag::Prefix { remove: r.map(|r| format!("{r}.")), add: a.map(|a| format!("{a}.")) },
    };
    if e.get("key_name").is_none() {
        return Err(e.error("'key_name' parameter is required"));
    }
    // filter_parser's parameters that out_parser does not have.
    for k in ["reserve_time", "remove_key_name_field", "emit_invalid_record_to_error"] {
        if let Some(a) = e.get(k) {
            crate::warn!(
                "{}: parameter '{k}' in {} is not used (out_parser has no such parameter).",
                a.pos,
                e.header()
            );
        }
    }
    let mut conf = FilterParserConf::from_element(e)?;
    conf.reserve_time = false;
    conf.remove_key_name_field = false;
    conf.emit_invalid_record_to_error = true;
    conf.parser.set_estimate_current_event(e.bool("estimate_current_event")?.unwrap_or(false));
    if !e.bool("time_parse")?.unwrap_or(true) {
        conf.parser.without_time_key();
    }
    if let Some(p) = e.elements_named("parse").next() {
        p.warn_unused();
    }
    Ok(Box::new(ParserPlan {
        id,
        conf,
        retag,
        label: ctx.current_label(),
        suppress_parse_error_log: e.bool("suppress_parse_error_log")?.unwrap_or(false),
        ignore_key_not_exist: e.bool("ignore_key_not_exist")?.unwrap_or(false),
    }))
}

#[derive(Debug)]
struct ParserPlan {
    id: String,
    conf: FilterParserConf,
    retag: Retag,
    label: usize,
    suppress_parse_error_log: bool,
    ignore_key_not_exist: bool,
}

impl OutputPlan for ParserPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "parser"
    }
    fn describe(&self, labels: &[String]) -> String {
        let to = match &self.retag {
            Retag::Fixed(t) => format!("tag {}", String::from_utf8_lossy(t)),
            Retag::Prefix { remove, add } => format!(
                "remove_prefix {} add_prefix {}",
                remove.as_deref().map_or("-", |r| r.trim_end_matches('.')),
                add.as_deref().map_or("-", |a| a.trim_end_matches('.'))
            ),
        };
        format!(
            "parser key_name {} @type {} -> {to} in {}",
            self.conf.key_name,
            self.conf.parser.type_name,
            labels.get(self.label).map_or("?", String::as_str)
        )
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(ParserOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            inner: RefCell::new(self.conf.build()),
            failures: RefCell::new(Vec::new()),
            retag: self.retag.clone(),
            label: self.label,
            suppress_parse_error_log: self.suppress_parse_error_log,
            ignore_key_not_exist: self.ignore_key_not_exist,
            log: FailureLog::default(),
        }))
    }
}

pub struct ParserOutput {
    id: String,
    metrics: OutputMetrics,
    inner: RefCell<FilterParser>,
    failures: RefCell<Vec<Failure>>,
    retag: Retag,
    label: usize,
    suppress_parse_error_log: bool,
    ignore_key_not_exist: bool,
    log: FailureLog,
}

impl ParserOutput {
    fn report(&self, batch: &EventBatch, failures: &[Failure]) {
        let logged = |f: &&Failure| match f.error {
            FilterParserError::KeyMissing(_) => !self.ignore_key_not_exist,
            _ => !self.suppress_parse_error_log,
        };
        let mut shown = failures.iter().filter(logged);
        let Some(first) = shown.next() else { return };
        let Some(n) = self.log.note(1 + shown.count() as u64) else { return };
        crate::warn!(
            "{}: {} (tag \"{}\"; {n} such events since the last report)",
            self.id,
            first.error,
            String::from_utf8_lossy(&batch.tag),
        );
    }
}

impl Output for ParserOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "parser"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let mut out = Vec::with_capacity(batch.entries.len());
        let mut failures = self.failures.borrow_mut();
        failures.clear();
        let n = self.inner.borrow_mut().filter(batch, &mut out, &mut failures);
        if !failures.is_empty() {
            self.report(batch, &failures);
        }
        drop(failures);
        match batch.with_packed_entries(Bytes::from(out), n) {
            Some(mut b) => {
                b.tag = self.retag.apply(&batch.tag);
                emitter.emit(self.label, b)
            }
            None => Ok(()),
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retag_as_out_parser_rb() {
        let p = |r: Option<&str>, a: Option<&str>| Retag::Prefix {
            remove: r.map(|r| format!("{r}.")),
            add: a.map(|a| format!("{a}.")),
        };
        let t = |r: &Retag, tag: &str| String::from_utf8(r.apply(tag.as_bytes()).to_vec()).unwrap();
        assert_eq!(t(&p(None, Some("parsed")), "fwg001.x"), "parsed.fwg001.x");
        assert_eq!(t(&p(Some("raw"), None), "raw.app.x"), "app.x");
        assert_eq!(t(&p(Some("raw"), None), "rawer.app"), "rawer.app");
        assert_eq!(t(&p(Some("raw"), Some("p")), "raw"), "p", "the tag is the prefix: add_prefix alone");
        assert_eq!(t(&p(Some("raw"), None), "raw."), "raw.", "not longer than the prefix");
        assert_eq!(t(&p(Some("raw"), Some("p")), "raw.a"), "p.a");
        assert_eq!(t(&Retag::Fixed(Bytes::from_static(b"fixed")), "any.tag"), "fixed");
    }
}
