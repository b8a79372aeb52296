//! `filter_stdout`: prints every event like `out_stdout` and passes the batch on
//! unchanged.

use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::output::stdout::{check_stdout_params, StdoutOutput};
use crate::plugin::{Build, BuildError, Emitter, Filter, FilterPlan, Kind, PlanCtx, Registration, ShardCtx};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "stdout",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "prints and passes events on (`output_type json`)",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    check_stdout_params(e, "filter_stdout")?;
    Ok(Box::new(StdoutFilterPlan { id: ctx.id(e, "stdout") }))
}

#[derive(Debug)]
struct StdoutFilterPlan {
    id: String,
}

impl FilterPlan for StdoutFilterPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "stdout"
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        Ok(Box::new(StdoutFilter { printer: StdoutOutput::new(self.id.clone()) }))
    }
}

pub struct StdoutFilter {
    printer: StdoutOutput,
}

impl Filter for StdoutFilter {
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        if let Err(e) = self.printer.print(&batch) {
            crate::warn!("{e}");
        }
        Some(batch)
    }
}
