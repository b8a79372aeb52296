//! `out_relabel`: the events continue in another `<label>` (`@label`). The router
//! bounds relabel chains, so a configuration loop drops events with an error line
//! instead of recursing forever.

use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration =
    Registration { name: "relabel", aliases: &[], kind: Kind::Output, build: Build::Output(plan), params: "`@label`" };

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "relabel");
    match ctx.label_ref(e)? {
        Some(label) => Ok(Box::new(RelabelPlan { id, label })),
        None => Err(e.error("@type relabel needs @label")),
    }
}

#[derive(Debug)]
struct RelabelPlan {
    id: String,
    label: usize,
}

impl OutputPlan for RelabelPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "relabel"
    }
    fn describe(&self, labels: &[String]) -> String {
        format!("relabel -> {}", labels.get(self.label).map_or("?", String::as_str))
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(RelabelOutput { id: self.id.clone(), metrics: OutputMetrics::default(), label: self.label }))
    }
}

pub struct RelabelOutput {
    id: String,
    metrics: OutputMetrics,
    label: usize,
}

impl Output for RelabelOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "relabel"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        emitter.emit(self.label, batch.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
