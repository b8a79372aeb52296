//! spate's own log lines as events, as fluentd routes its logs: a line at level L
//! becomes an event tagged `fluent.L` with fluentd's record shape (`message`, plus the
//! `key=value` pairs the line ends with as fields), routed into `<label @FLUENT_LOG>`
//! when the configuration has one, else into the top level (where `<match fluent.**>`
//! or `<match **>` catches it). Only tags a `<match>` of that label matches are
//! emitted, so unmatched log tags never produce "no patterns matched" warnings.
//!
//! Each shard queues the lines written on its thread (a bounded queue, and at most
//! [`RATE`] events per second with a burst of [`BURST`]: beyond that they are dropped
//! and counted) and a task routes them every [`DRAIN`]; shard 0 also routes the lines
//! of other threads. A line written while log events are being routed, or by an output
//! that has received log events, is not an event (see `log`), so an output that fails
//! cannot feed its own failures back to itself.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::TimeFormat;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::buffer::sync::Notify;
use crate::log::{Level, LogEvent};
use crate::metrics::{Merge, Sample, Value};
use crate::plan::RouterSlot;
use crate::router::Router;

/// fluentd's log event label.
pub const LABEL: &str = "@FLUENT_LOG";
/// How often queued lines are routed.
pub const DRAIN: Duration = Duration::from_millis(100);
/// Sustained log events per second per shard.
pub const RATE: f64 = 1000.0;
/// Burst of log events per shard.
pub const BURST: f64 = 5000.0;
const QUEUE_MAX: usize = 10_000;
/// Events routed between two yields to the executor.
const SLICE: usize = 128;

/// fluentd's log record, as msgpack: the `key=value` fields the line ends with, then
/// `message`.
fn record(message: &str, out: &mut Vec<u8>) {
    use spate_protocol::encode::raw;
    out.clear();
    let mut fields = crate::log::fields_of(message);
    fields.retain(|(k, _)| k != "message");
    raw::map_header(out, fields.len() as u32 + 1);
    for (k, v) in &fields {
        raw::str(out, k.as_bytes());
        match v {
            serde_json::Value::Bool(b) => raw::bool(out, *b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => raw::int(out, i),
                (None, Some(f)) => raw::f64(out, f),
                _ => raw::nil(out),
            },
            serde_json::Value::String(s) => raw::str(out, s.as_bytes()),
            _ => raw::nil(out),
        }
    }
    raw::str(out, b"message");
    raw::str(out, message.as_bytes());
}

/// Where log events go in a router: the label and which `fluent.<level>` tags match.
/// `None`: nothing routes them (fluentd then does not emit log events at all).
pub fn targets(r: &Router) -> Option<(usize, Vec<Level>)> {
    let labels = r.labels();
    let label = labels.iter().position(|l| l.name == LABEL).unwrap_or(0);
    let rules = &labels.get(label)?.rules;
    let levels: Vec<Level> = Level::ALL
        .into_iter()
        .filter(|l| {
            let tag = format!("fluent.{}", l.name());
            rules.iter().any(
                |rule| matches!(rule, crate::router::Rule::Match { pattern, .. } if pattern.matches(tag.as_bytes())),
            )
        })
        .collect();
    (!levels.is_empty()).then_some((label, levels))
}

/// One shard's log-event queue and its counters.
pub struct LogEvents {
    queue: RefCell<VecDeque<LogEvent>>,
    notify: Notify,
    tokens: Cell<f64>,
    last: Cell<Instant>,
    pub emitted: Cell<u64>,
    pub dropped: Cell<u64>,
    drop_warned: Cell<bool>,
}

impl LogEvents {
    /// Installs this thread's sink; the caller spawns [`LogEvents::run`].
    pub fn install() -> Rc<LogEvents> {
        let me = Rc::new(LogEvents {
            queue: RefCell::new(VecDeque::new()),
            notify: Notify::default(),
            tokens: Cell::new(BURST),
            last: Cell::new(Instant::now()),
            emitted: Cell::new(0),
            dropped: Cell::new(0),
            drop_warned: Cell::new(false),
        });
        let weak = Rc::downgrade(&me);
        crate::log::set_thread_sink(Some(Rc::new(move |ev| {
            if let Some(me) = weak.upgrade() {
                me.push(ev);
            }
        })));
        me
    }

    fn push(&self, ev: LogEvent) {
        let now = Instant::now();
        let t = (self.tokens.get() + now.duration_since(self.last.get()).as_secs_f64() * RATE).min(BURST);
        self.last.set(now);
        if t < 1.0 || self.queue.borrow().len() >= QUEUE_MAX {
            self.tokens.set(t);
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        self.tokens.set(t - 1.0);
        self.queue.borrow_mut().push_back(ev);
        self.notify.notify();
    }

    /// Routes queued lines until the shard stops. `global`: also the lines of threads
    /// that are not shards (shard 0).
    pub async fn run(self: Rc<Self>, slot: Rc<RouterSlot>, global: bool) {
        loop {
            self.notify.wait(DRAIN).await;
            glommio::timer::sleep(Duration::from_millis(1)).await;
            self.route_queued(&slot, global).await;
        }
    }

    /// Routes what is queued now. Also called at shutdown, before the outputs stop
    /// (the drain task is cancelled first, so it cannot race their shutdown).
    pub async fn route_queued(&self, slot: &RouterSlot, global: bool) {
        let mut evs: Vec<LogEvent> = self.queue.borrow_mut().drain(..).collect();
        if global {
            evs.extend(crate::log::take_global_events());
        }
        if evs.is_empty() {
            return;
        }
        let router = slot.get();
        let Some((label, levels)) = targets(&router) else { return };
        let _guard = crate::log::EmittingEvents::begin();
        for level in levels {
            // In slices, yielding between them: a burst of log lines must not hold
            // the shard away from its connections.
            let mine: Vec<&LogEvent> = evs.iter().filter(|e| e.level == level).collect();
            for slice in mine.chunks(SLICE) {
                self.emit(&router, label, level, slice);
                futures_lite::future::yield_now().await;
            }
        }
    }

    fn emit(&self, router: &Router, label: usize, level: Level, evs: &[&LogEvent]) {
        let mut entries = Vec::with_capacity(evs.len() * 128);
        let mut rec = Vec::with_capacity(256);
        for ev in evs {
            record(&ev.message, &mut rec);
            let t = EventTime { sec: ev.sec.max(0) as u32, nsec: ev.nsec };
            spate_protocol::encode::entry(&mut entries, t, TimeFormat::EventTime, &rec);
        }
        let n = evs.len() as u32;
        let tag = format!("fluent.{}", level.name());
        let Ok(batch) = EventBatch::from_entries(
            Bytes::from(tag),
            Bytes::from(entries),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        ) else {
            return;
        };
        match crate::plugin::Emitter::emit(router, label, batch) {
            Ok(()) => self.emitted.set(self.emitted.get() + n as u64),
            Err(e) => {
                self.dropped.set(self.dropped.get() + n as u64);
                if !self.drop_warned.replace(true) {
                    // Written while emitting: on stderr only, never an event.
                    crate::warn!("spate's own log events were not accepted ({e}); dropped (counted in spate_log_events_dropped_total)");
                }
            }
        }
    }

    /// The shard values: events routed and dropped.
    pub fn samples(&self) -> Vec<Sample> {
        vec![
            Sample {
                name: "log_events".into(),
                help: "spate's own log lines routed as fluent.* events.".into(),
                labels: Vec::new(),
                value: Value::Counter(self.emitted.get() as f64),
            },
            Sample {
                name: "log_events_dropped".into(),
                help: "Log events dropped (rate limit, full queue, or not accepted).".into(),
                labels: Vec::new(),
                value: Value::Counter(self.dropped.get() as f64),
            },
            Sample {
                name: "log_events_queued".into(),
                help: "Log events waiting to be routed.".into(),
                labels: Vec::new(),
                value: Value::Gauge(self.queue.borrow().len() as f64, Merge::Sum),
            },
        ]
    }
}

impl Drop for LogEvents {
    fn drop(&mut self) {
        crate::log::set_thread_sink(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_fluentds_shape() {
        let mut out = Vec::new();
        record("out: failed to flush the buffer. retry_times=2 error=\"x y\"", &mut out);
        let r = spate_protocol::RecordRef::new(&out).unwrap();
        let mut j = Vec::new();
        r.write_json(&mut j);
        assert_eq!(
            String::from_utf8(j).unwrap(),
            r#"{"retry_times":2,"error":"x y","message":"out: failed to flush the buffer. retry_times=2 error=\"x y\""}"#
        );
        record("spate is ready", &mut out);
        let mut j = Vec::new();
        spate_protocol::RecordRef::new(&out).unwrap().write_json(&mut j);
        assert_eq!(String::from_utf8(j).unwrap(), r#"{"message":"spate is ready"}"#);
    }
}
