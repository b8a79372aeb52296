//! `out_null`: accepts and discards events (counting them).

use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "null",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "accepts and discards events (counted)",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    // fluentd's out_null is buffered (for tests); nothing to flush here.
    for b in e.elements_named("buffer") {
        b.mark_all_used();
    }
    Ok(Box::new(NullPlan { id: ctx.id(e, "null") }))
}

#[derive(Debug)]
struct NullPlan {
    id: String,
}

impl OutputPlan for NullPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "null"
    }
    fn describe(&self, _labels: &[String]) -> String {
        format!("null {}", self.id)
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(NullOutput { id: self.id.clone(), metrics: OutputMetrics::default() }))
    }
}

pub struct NullOutput {
    pub id: String,
    pub metrics: OutputMetrics,
}

impl Output for NullOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "null"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    #[inline]
    fn emit(&self, _batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
