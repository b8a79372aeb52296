//! `filter_parser` as a plugin: the registry row, the plan, and the shard filter around
//! [`logic::FilterParser`] (which holds fluentd's semantics). Events
//! that fail go to the `@ERROR` label when the configuration has one (as fluentd's
//! `emit_error_event`), with their original time and record; otherwise a warning is
//! logged for the first failure and then at most once every 10 s with the count since
//! (fluentd logs each one: "dump an error event").

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode;
use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
pub mod logic;

pub use self::logic::{Failure, FilterParser, FilterParserConf, FilterParserError};
use crate::plugin::{Build, BuildError, Emitter, Filter, FilterPlan, Kind, PlanCtx, Registration, ShardCtx};

pub const PLUGIN: Registration = Registration {
    name: "parser",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "`key_name` (record accessor), `reserve_data`, `reserve_time`, `remove_key_name_field`, `replace_invalid_sequence`, `inject_key_prefix`, `hash_value_field`, `emit_invalid_record_to_error` (failed events go to `@ERROR` when it exists, else a rate-limited warning), `<parse>` (every parser below)",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "parser");
    let conf = FilterParserConf::from_element(e)?;
    if let Some(p) = e.elements_named("parse").next() {
        p.warn_unused();
    }
    Ok(Box::new(ParserPlan { id, conf, error_label: ctx.label_named("@ERROR") }))
}

#[derive(Debug)]
struct ParserPlan {
    id: String,
    conf: FilterParserConf,
    error_label: Option<usize>,
}

impl FilterPlan for ParserPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "parser"
    }
    fn describe(&self) -> String {
        format!("key_name {} @type {}", self.conf.key_name, self.conf.parser.type_name)
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        Ok(Box::new(ParserFilter {
            id: self.id.clone(),
            inner: RefCell::new(self.conf.build()),
            failures: RefCell::new(Vec::new()),
            error_label: self.error_label,
            log: FailureLog::default(),
        }))
    }
}

/// filter_parser on one shard.
pub struct ParserFilter {
    id: String,
    inner: RefCell<FilterParser>,
    failures: RefCell<Vec<Failure>>,
    error_label: Option<usize>,
    log: FailureLog,
}

/// Failures reported in a warning at most once every 10 s, with the count since the
/// last one (filter_parser and out_parser; fluentd logs each one).
#[derive(Default)]
pub struct FailureLog {
    /// Failures not yet reported in a warning.
    unlogged: Cell<u64>,
    last: Cell<Option<Instant>>,
}

impl FailureLog {
    /// Counts `n` failures; the count to report now (and resets it), or None while
    /// the last report is less than 10 s old.
    pub fn note(&self, n: u64) -> Option<u64> {
        self.unlogged.set(self.unlogged.get() + n);
        let now = Instant::now();
        if self.last.get().is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return None;
        }
        self.last.set(Some(now));
        Some(self.unlogged.replace(0))
    }
}

impl ParserFilter {
    fn report(&self, batch: &EventBatch, failures: &[Failure], emitter: &dyn Emitter) {
        if let Some(label) = self.error_label {
            let mut entries = Vec::new();
            for f in failures {
                if let Some(rec) = batch.entries.get(f.record.clone()) {
                    encode::entry(&mut entries, f.time, encode::TimeFormat::EventTime, rec);
                }
            }
            if let Some(b) = batch.with_packed_entries(Bytes::from(entries), failures.len() as u32) {
                if let Err(e) = emitter.emit(label, b) {
                    crate::warn!("{}: could not emit {} error events to @ERROR: {e}", self.id, failures.len());
                }
            }
            return;
        }
        let Some(n) = self.log.note(failures.len() as u64) else { return };
        let first = &failures[0];
        crate::warn!(
            "{}: dump an error event: error_class=Fluent::Plugin::Parser::ParserError error=\"{}\" tag=\"{}\" ({n} failed events since the last report; add a <label @ERROR> to route them)",
            self.id,
            first.error,
            String::from_utf8_lossy(&batch.tag),
        );
    }
}

impl Filter for ParserFilter {
    fn filter(&self, batch: EventBatch, emitter: &dyn Emitter) -> Option<EventBatch> {
        let mut out = Vec::with_capacity(batch.entries.len());
        let mut failures = self.failures.borrow_mut();
        failures.clear();
        let n = self.inner.borrow_mut().filter(&batch, &mut out, &mut failures);
        if !failures.is_empty() {
            self.report(&batch, &failures, emitter);
        }
        batch.with_packed_entries(Bytes::from(out), n)
    }
}
