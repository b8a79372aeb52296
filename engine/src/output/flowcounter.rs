//! `out_flowcounter` (fluent-plugin-flowcounter 1.3): counts the events (and bytes) it
//! receives, per tag or in all, and emits the counts and rates every `unit` under
//! `tag` (`flowcount`), into its `@label` when it has one, as the plugin does.
//!
//! - `output_style joined` (default): one event, `<name>_count`, `<name>_bytes` and
//!   their `_rate`s per tag (or `count`/`bytes` with `aggregate all`); `tagged`: one
//!   event per tag, `count`, `bytes`, their rates and `tag`.
//! - Bytes are counted with `count_keys`: `*` is the record's msgpack size, named keys
//!   the byte size of their string values (missing keys count 0).
//! - Rates are per second over the interval really elapsed, floored to two decimals;
//!   `timestamp_counting` aligns intervals to the clock (the event time is the
//!   boundary that ends the counted interval) and divides by the unit.
//! - Tags seen once keep being reported with 0 until `delete_idle`.
//!
//! Each shard counts what it receives and emits its own counts, as each fluentd worker
//! does. Difference: a named count key whose value is not a string counts the bytes of
//! its text (the plugin raises NoMethodError on `bytesize` and drops the events).

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::raw;
use spate_protocol::{EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::buffer::queue::unix_now;
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

pub const PLUGIN: Registration = Registration {
    name: "flowcounter",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluent-plugin-flowcounter: `unit` (second, minute (default), hour, day), `aggregate` (tag (default), all), `output_style` (joined (default), tagged), `tag` (flowcount), `input_tag_remove_prefix`, `count_keys` (`*`: the record's msgpack size; else those keys' string bytes), `delimiter` (`_`), `delete_idle`, `timestamp_counting` (with `timestamp_timezone` for `unit day`), `@label`",
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum CountBytes {
    No,
    All,
    Keys,
}

#[derive(Debug, Clone)]
pub struct FlowPlan {
    id: String,
    tick: u64,
    all: bool,
    tagged: bool,
    tag: String,
    remove_prefix: Option<String>,
    count_keys: Vec<String>,
    bytes: CountBytes,
    delimiter: String,
    delete_idle: bool,
    /// `timestamp_counting`: the zone offset (seconds) the intervals align to.
    aligned: Option<i64>,
    label: usize,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "flowcounter");
    let unit = e.enum_of("unit", &["second", "minute", "hour", "day"])?;
    let tick = match unit.as_deref() {
        Some("second") => 1,
        Some("hour") => 3600,
        Some("day") => 86400,
        _ => 60,
    };
    let all = e.enum_of("aggregate", &["tag", "all"])?.as_deref() == Some("all");
    let tagged = e.enum_of("output_style", &["joined", "tagged"])?.as_deref() == Some("tagged");
    if tagged && all {
        return Err(e.error("flowcounter aggregate must be 'tag' when output_style is 'tagged'"));
    }
    let count_keys = e.array("count_keys")?.unwrap_or_default();
    let bytes = match count_keys.as_slice() {
        [] => CountBytes::No,
        [k] if k == "*" => CountBytes::All,
        _ => CountBytes::Keys,
    };
    let aligned = if e.bool("timestamp_counting")?.unwrap_or(false) {
        match tick {
            1 => return Err(e.error("timestamp_counting cannot be enabled with unit: second")),
            86400 => {
                let z = e.str("timestamp_timezone").ok_or_else(|| {
                    e.error("timestamp_counting requires timestamp_timezone to be configured (e.g., '-0700') if unit is day")
                })?;
                Some(crate::format::parse_fixed_zone(z).ok_or_else(|| {
                    e.error_at("timestamp_timezone", "invalid timestamp_timezone value (specify like '-0700')")
                })?)
            }
            _ => {
                let _ = e.str("timestamp_timezone");
                Some(0)
            }
        }
    } else {
        let _ = e.str("timestamp_timezone");
        None
    };
    Ok(Box::new(FlowPlan {
        id,
        tick,
        all,
        tagged,
        tag: e.str("tag").unwrap_or("flowcount").to_string(),
        remove_prefix: e.str("input_tag_remove_prefix").map(str::to_string),
        count_keys,
        bytes,
        delimiter: e.str("delimiter").unwrap_or("_").to_string(),
        delete_idle: e.bool("delete_idle")?.unwrap_or(false),
        aligned,
        // Without @label, fluentd's `router` is the one of the label the plugin is in.
        label: ctx.label_ref(e)?.unwrap_or_else(|| ctx.current_label()),
    }))
}

impl OutputPlan for FlowPlan {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &'static str {
        "flowcounter"
    }

    fn describe(&self, labels: &[String]) -> String {
        let to = if self.label == 0 { "" } else { labels.get(self.label).map_or("?", String::as_str) };
        format!("flowcounter every {}s -> {} {to}", self.tick, self.tag)
    }

    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(FlowCounter {
            plan: self.clone(),
            metrics: OutputMetrics::default(),
            counts: RefCell::new(Vec::new()),
            index: RefCell::new(std::collections::HashMap::new()),
            ctx: Rc::downgrade(ctx),
            timer: RefCell::new(None),
        }))
    }
}

/// One name's counts, in first-seen order (the plugin's Hash keeps insertion order).
#[derive(Debug, Clone, PartialEq)]
struct Count {
    name: String,
    count: u64,
    bytes: u64,
}

pub struct FlowCounter {
    plan: FlowPlan,
    metrics: OutputMetrics,
    counts: RefCell<Vec<Count>>,
    /// Where each name is in `counts` (tags come from input: no linear search).
    index: RefCell<std::collections::HashMap<String, usize>>,
    ctx: Weak<ShardCtx>,
    timer: RefCell<Option<glommio::task::JoinHandle<()>>>,
}

/// `((n * 100.0) / step).floor / 100.0`.
fn rate(n: u64, step: f64) -> f64 {
    ((n as f64 * 100.0) / step).floor() / 100.0
}

impl FlowCounter {
    /// The name a tag is counted under (`input_tag_remove_prefix`).
    fn name<'a>(&self, tag: &'a str) -> &'a str {
        match &self.plan.remove_prefix {
            Some(p) if tag == p => "",
            Some(p) => match tag.strip_prefix(p.as_str()).and_then(|r| r.strip_prefix('.')) {
                Some(rest) if !rest.is_empty() => rest,
                _ => tag,
            },
            None => tag,
        }
    }

    /// The records this interval produced, and resets the counts.
    fn records(&self, step: f64) -> Vec<(String, Vec<u8>)> {
        let p = &self.plan;
        let flushed = {
            let mut c = self.counts.borrow_mut();
            let out = c.clone();
            if p.delete_idle {
                c.clear();
                self.index.borrow_mut().clear();
            } else {
                for x in c.iter_mut() {
                    x.count = 0;
                    x.bytes = 0;
                }
            }
            out
        };
        let with_bytes = p.bytes != CountBytes::No;
        let mut out = Vec::new();
        if p.tagged {
            for c in &flushed {
                let mut r = Vec::new();
                raw::map_header(&mut r, if with_bytes { 5 } else { 3 });
                raw::str(&mut r, b"count");
                raw::int(&mut r, c.count as i64);
                if with_bytes {
                    raw::str(&mut r, b"bytes");
                    raw::int(&mut r, c.bytes as i64);
                }
                raw::str(&mut r, b"count_rate");
                raw::f64(&mut r, rate(c.count, step));
                if with_bytes {
                    raw::str(&mut r, b"bytes_rate");
                    raw::f64(&mut r, rate(c.bytes, step));
                }
                raw::str(&mut r, b"tag");
                raw::str(&mut r, c.name.as_bytes());
                out.push((c.name.clone(), r));
            }
            return out;
        }
        // Joined: the counts, then a rate for each.
        let mut keys: Vec<(String, u64)> = Vec::new();
        if p.all {
            let (n, b) = flushed.iter().fold((0, 0), |(n, b), c| (n + c.count, b + c.bytes));
            keys.push(("count".into(), n));
            if with_bytes {
                keys.push(("bytes".into(), b));
            }
        } else {
            for c in &flushed {
                keys.push((format!("{}{}count", c.name, p.delimiter), c.count));
                if with_bytes {
                    keys.push((format!("{}{}bytes", c.name, p.delimiter), c.bytes));
                }
            }
        }
        let mut r = Vec::new();
        raw::map_header(&mut r, keys.len() as u32 * 2);
        for (k, v) in &keys {
            raw::str(&mut r, k.as_bytes());
            raw::int(&mut r, *v as i64);
        }
        for (k, v) in &keys {
            raw::str(&mut r, format!("{k}_rate").as_bytes());
            raw::f64(&mut r, rate(*v, step));
        }
        out.push((String::new(), r));
        out
    }

    fn emit_counts(&self, time: EventTime, step: f64) {
        let Some(ctx) = self.ctx.upgrade() else { return };
        let mut entries = Vec::new();
        let mut n = 0u32;
        for (_, rec) in self.records(step) {
            spate_protocol::encode::entry(&mut entries, time, spate_protocol::encode::TimeFormat::EventTime, &rec);
            n += 1;
        }
        if n == 0 {
            return;
        }
        let batch = EventBatch::from_entries(
            Bytes::from(self.plan.tag.clone()),
            Bytes::from(entries),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            spate_protocol::msgpack::MAX_DEPTH,
        );
        match batch.map(|b| ctx.emit_to(self.plan.label, b)) {
            Ok(Some(Ok(()))) | Ok(None) => {}
            Ok(Some(Err(e))) => crate::warn!("{}: emitting the counts failed: {e}", self.plan.id),
            Err(e) => crate::warn!("{}: building the counts event failed: {e}", self.plan.id),
        }
    }

    /// The plugin's 0.5 s watcher.
    async fn watch(self: Rc<Self>) {
        let tick = self.plan.tick as i64;
        match self.plan.aligned {
            None => {
                let mut last = Instant::now();
                loop {
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                    let now = Instant::now();
                    if now.duration_since(last) >= Duration::from_secs(self.plan.tick) {
                        let step = now.duration_since(last).as_secs_f64();
                        last = now;
                        self.emit_counts(EventTime::now(), step);
                    }
                }
            }
            Some(offset) => {
                let now = unix_now();
                let mut last = now - now.rem_euclid(tick) - offset;
                loop {
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                    if unix_now() - last >= tick {
                        last += tick;
                        self.emit_counts(EventTime::new(last as u32, 0), tick as f64);
                    }
                }
            }
        }
    }
}

impl Output for FlowCounter {
    fn id(&self) -> &str {
        &self.plan.id
    }

    fn type_name(&self) -> &'static str {
        "flowcounter"
    }

    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }

    fn emit(&self, batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        let p = &self.plan;
        let tag = String::from_utf8_lossy(&batch.tag);
        let name = self.name(&tag);
        let mut bytes = 0u64;
        if p.bytes != CountBytes::No {
            let mut text = Vec::new();
            for ev in batch.events() {
                if p.bytes == CountBytes::All {
                    bytes += ev.record.as_bytes().len() as u64;
                    continue;
                }
                for k in &p.count_keys {
                    if let Some(v) = ev.record.get(k.as_bytes()) {
                        text.clear();
                        v.write_text(&mut text);
                        bytes += text.len() as u64;
                    }
                }
            }
        }
        let mut c = self.counts.borrow_mut();
        let mut index = self.index.borrow_mut();
        let key = if p.all { "" } else { name };
        match index.get(key) {
            Some(&i) => {
                c[i].count += u64::from(batch.count);
                c[i].bytes += bytes;
            }
            None => {
                index.insert(key.to_string(), c.len());
                c.push(Count { name: key.to_string(), count: u64::from(batch.count), bytes });
            }
        }
        Ok(())
    }

    fn start(self: Rc<Self>) {
        let me = self.clone();
        *self.timer.borrow_mut() = Some(glommio::spawn_local(async move { me.watch().await }).detach());
    }

    fn shutdown(&self, _deadline: Instant) -> crate::plugin::LocalFuture<'_, ()> {
        if let Some(t) = self.timer.borrow_mut().take() {
            t.cancel();
        }
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_floor_to_two_decimals() {
        assert_eq!(rate(100, 60.0), 1.66);
        assert_eq!(rate(1, 3.0), 0.33);
        assert_eq!(rate(0, 60.0), 0.0);
    }
}
