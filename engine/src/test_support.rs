//! Test helpers for plugin tests (test builds only; outside the layers, since they plan
//! whole configs): plan a config, build one shard, emit JSON records through its router
//! or straight into one output or filter, and see which events came out where (a
//! [`Collect`] emitter records them; `out_null`'s counters say how many reached each null
//! output).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::{encode, EntriesFormat, EventBatch, EventTime, Mode, Options};

use crate::config::{parse_str_with_warnings, EvalContext};
pub use crate::plan::ShardGraph;
use crate::plan::{build_shard, plan, Plan, RulePlan};
use crate::plugin::{EmitError, Emitter, Filter, Output, ShardCtx};

pub const T0: EventTime = EventTime::new(1_700_000_000, 0);

pub fn plan_of(conf: &str) -> Result<Plan, String> {
    let ctx = EvalContext::with_env("myhost.example.com", None, Default::default());
    let (root, _) = parse_str_with_warnings(conf, "t.conf", Path::new("."), &ctx).map_err(|e| e.to_string())?;
    plan(&root, Some(1), "myhost.example.com").map_err(|e| e.to_string())
}

pub fn plan_err(conf: &str) -> String {
    plan_of(conf).err().unwrap_or_else(|| panic!("accepted:\n{conf}"))
}

pub fn shard(conf: &str) -> ShardGraph {
    let p = plan_of(conf).unwrap_or_else(|e| panic!("{e}\n{conf}"));
    // The plan is shared read-only by shards; a leak keeps the test simple.
    let p: &'static Plan = Box::leak(Box::new(p));
    build_shard(p, 0).unwrap()
}

/// The first `<match>` output of label `label` (0: top level), built on a shard.
pub fn match_output(conf: &str, label: usize) -> Rc<dyn Output> {
    let p = plan_of(conf).unwrap_or_else(|e| panic!("{e}\n{conf}"));
    let ctx = ShardCtx::new(0, 1, "myhost.example.com");
    for r in &p.labels[label].rules {
        if let RulePlan::Match { plan, .. } = r {
            return ctx.build_output(&**plan).unwrap();
        }
    }
    panic!("no <match> in label {label}")
}

/// The first `<filter>` of the top level, built on a shard.
pub fn first_filter(conf: &str) -> Box<dyn Filter> {
    let p = plan_of(conf).unwrap_or_else(|e| panic!("{e}\n{conf}"));
    let ctx = ShardCtx::new(0, 1, "myhost.example.com");
    for r in &p.labels[0].rules {
        if let RulePlan::Filter { plan, .. } = r {
            return plan.build(&ctx).unwrap();
        }
    }
    panic!("no <filter> at the top level")
}

/// A batch of `tag` holding the JSON records, at T0, T0+1...
pub fn batch(tag: &str, records: &[&str]) -> EventBatch {
    let mut e = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let rec = spate_protocol::json::to_msgpack(r.as_bytes()).unwrap();
        encode::entry(&mut e, EventTime::new(T0.sec + i as u32, 0), encode::TimeFormat::EventTime, &rec);
    }
    EventBatch::from_entries(
        Bytes::copy_from_slice(tag.as_bytes()),
        Bytes::from(e),
        EntriesFormat::Packed,
        Mode::PackedForward,
        Options::default(),
        100,
    )
    .unwrap()
}

/// The records of a batch as JSON.
pub fn records(b: &EventBatch) -> Vec<String> {
    b.events()
        .map(|e| {
            let mut o = Vec::new();
            e.record.write_json(&mut o);
            String::from_utf8(o).unwrap()
        })
        .collect()
}

/// Records what is emitted: (label, tag, records as JSON).
#[derive(Default)]
pub struct Collect(pub RefCell<Vec<(usize, String, Vec<String>)>>);

impl Emitter for Collect {
    fn emit(&self, label: usize, batch: EventBatch) -> Result<(), EmitError> {
        self.0.borrow_mut().push((label, String::from_utf8_lossy(&batch.tag).into_owned(), records(&batch)));
        Ok(())
    }
}

impl Collect {
    /// (label, tag, number of records) per emitted batch.
    pub fn shape(&self) -> Vec<(usize, String, usize)> {
        self.0.borrow().iter().map(|(l, t, r)| (*l, t.clone(), r.len())).collect()
    }
    /// Tags of every record, in emit order.
    pub fn tags(&self) -> Vec<String> {
        self.0.borrow().iter().flat_map(|(_, t, r)| std::iter::repeat_n(t.clone(), r.len())).collect()
    }
}

/// Events each `out_null` (by `@id`) received.
pub fn null_counts(g: &ShardGraph) -> Vec<(String, u64)> {
    g.outputs()
        .iter()
        .filter(|o| o.type_name() == "null")
        .map(|o| (o.id().to_string(), o.metrics().emit_records.get()))
        .collect()
}
