//! fluent-plugin-record-reformer's `out_record_reformer` (sonots; `core.rb`): re-emits each
//! event under a new `tag` (a template, so one batch may fan out to several tags) with a
//! reformed record, routed again in the label the `<match>` is in.
//!
//! The record work is filter_record_transformer's ([`RecordTransformer`]) with the
//! plugin's differences, from its source:
//! - every parameter that is not one of the plugin's own is a record field (`<record>`
//!   too, after them); values starting with `{` or `[` are JSON;
//! - `enable_ruby` defaults to **true** and `auto_typecast` to false;
//! - placeholders also read a record field by its bare name: `${field}` (any name but
//!   `tag`, `tags`, `tag_parts`, `tag_prefix`, `tag_suffix`, `hostname`, `time`,
//!   `record`), and with Ruby a bare `field` (its `method_missing`: NameError when the
//!   record has no such field); `${tags[N]}` / `tags` are `tag_parts`;
//! - a value whose Ruby raises is nil (the expander rescues and logs); an event whose
//!   *tag* raises is not emitted;
//! - `remove_keys` and `keep_keys` are comma-separated top-level keys (no record
//!   accessors); `keep_keys` sets a key the record lacks to nil;
//! - `renew_time_key`: the field's `to_i`, whole seconds.
//!
//! Deliberate difference: where the plugin's `process` raises (a `renew_time_key` value
//! without `to_i`), it logs and emits nothing more of that batch; spate drops only the
//! event, with a warning.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::filter::record_transformer::{RecordTransformer, RecordTransformerConf, TagGroup};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "record_reformer",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluent-plugin-record-reformer: `tag` (required; `output_tag` deprecated) with record_transformer's placeholders plus `${field}` / `${tags[N]}`, record fields as flat parameters and `<record>`, `enable_ruby` (true: the Ruby subset, bare names are record fields), `auto_typecast` (false), `renew_record`, `keep_keys`, `remove_keys` (comma-separated top-level keys), `renew_time_key` (whole seconds); re-emits in its label",
};

/// The plugin's own parameters (`BUILTIN_CONFIGURATIONS`): every other one is a field.
const BUILTIN: [&str; 12] = [
    "@id",
    "@type",
    "@label",
    "type",
    "tag",
    "output_tag",
    "remove_keys",
    "renew_record",
    "keep_keys",
    "enable_ruby",
    "renew_time_key",
    "auto_typecast",
];

/// Ruby's `split(',')`: empty pieces inside are kept, trailing ones dropped.
fn split_commas(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(',').map(str::to_string).collect();
    while v.last().is_some_and(String::is_empty) {
        v.pop();
    }
    v
}

/// Reads the plugin's parameters into record_transformer's.
fn conf_from_element(e: &Element, hostname: &str) -> Result<RecordTransformerConf, ConfigError> {
    let tag = match (e.str("tag"), e.get("output_tag")) {
        (Some(t), _) => t.to_string(),
        (None, Some(a)) => {
            crate::warn!("{}: out_record_reformer: `output_tag` is deprecated. Use `tag` option instead.", a.pos);
            a.value.clone()
        }
        (None, None) => return Err(e.error("out_record_reformer: `tag` must be specified")),
    };
    let renew_record = e.bool("renew_record")?.unwrap_or(false);
    let keep_keys = e.str("keep_keys").map(split_commas).unwrap_or_default();
    if !keep_keys.is_empty() && !renew_record {
        return Err(e.error("out_record_reformer: `renew_record` must be true to use `keep_keys`"));
    }
    let mut conf = RecordTransformerConf {
        remove_keys: e.str("remove_keys").map(split_commas).unwrap_or_default(),
        keep_keys,
        renew_record,
        renew_time_key: e.str("renew_time_key").map(str::to_string),
        enable_ruby: e.bool("enable_ruby")?.unwrap_or(true),
        auto_typecast: e.bool("auto_typecast")?.unwrap_or(false),
        hostname: hostname.to_string(),
        record: Vec::new(),
        reformer_tag: Some(tag),
    };
    for a in e.attrs.iter().filter(|a| !BUILTIN.contains(&a.key.as_str())) {
        conf.record.push((a.key.clone(), a.value.clone()));
    }
    e.mark_all_used();
    for r in e.elements_named("record") {
        r.mark_all_used();
        for a in &r.attrs {
            conf.record.push((a.key.clone(), a.value.clone()));
        }
    }
    if let Some(other) = e.elements.iter().find(|x| x.name != "record") {
        return Err(other.error(format!(
            "out_record_reformer has no <{}> section (it is not a buffered output); it takes <record>",
            other.name
        )));
    }
    Ok(conf)
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "record_reformer");
    let conf = conf_from_element(e, &ctx.hostname)?;
    // Compile once here so a bad template is a config error with file:line.
    RecordTransformer::new(&conf).map_err(|x| e.error(x.to_string()))?;
    Ok(Box::new(ReformerPlan { id, conf, label: ctx.current_label() }))
}

#[derive(Debug)]
struct ReformerPlan {
    id: String,
    conf: RecordTransformerConf,
    label: usize,
}

impl OutputPlan for ReformerPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "record_reformer"
    }
    fn describe(&self, labels: &[String]) -> String {
        format!(
            "record_reformer -> tag {} in {}",
            self.conf.reformer_tag.as_deref().unwrap_or_default(),
            labels.get(self.label).map_or("?", String::as_str)
        )
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        // Validated by plan(): compiling the same templates again cannot fail.
        let inner = RecordTransformer::new(&self.conf)
            .map_err(|e| BuildError::Io { plugin: self.id.clone(), source: std::io::Error::other(e.to_string()) })?;
        Ok(Rc::new(ReformerOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            inner,
            groups: RefCell::new(Vec::new()),
            label: self.label,
        }))
    }
}

pub struct ReformerOutput {
    id: String,
    metrics: OutputMetrics,
    inner: RecordTransformer,
    /// One per new tag of the current batch.
    groups: RefCell<Vec<TagGroup>>,
    label: usize,
}

impl Output for ReformerOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "record_reformer"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let mut groups = self.groups.borrow_mut();
        groups.clear();
        self.inner.reform(batch, &mut groups);
        for g in groups.drain(..) {
            if let Some(mut b) = batch.with_packed_entries(Bytes::from(g.entries), g.count) {
                b.tag = Bytes::from(g.tag);
                emitter.emit(self.label, b)?;
            }
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;
