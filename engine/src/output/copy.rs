//! `out_copy`: every `<store>` gets the events. Each store is an output of its own
//! (buffered or not, with its own id and metrics). A store that fails does not keep
//! the others from getting the batch, but the first error is returned so the input
//! does not ack (fluentd's `ignore_error` on a store is read; the batch still is not
//! acked when a store refused it, which is the durability promise).

use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    emit_counted, Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx,
    Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "copy",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "`<store>` (any output, buffered or not), `copy_mode` (every mode gives each store its own events, as `deep` does), `deep_copy`, `ignore_error`",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "copy");
    // fluentd's copy_mode says how much of the event stream each store gets to itself
    // (`deep_copy true` was `shallow`). spate's stores share one immutable batch, and a
    // store that changes events (relabel into filters) changes its own copy: whatever
    // the mode, a store never sees another's changes, which is what `deep` gives.
    match e.str("copy_mode") {
        None | Some("no_copy" | "shallow" | "deep" | "marshal") => {}
        Some(o) => {
            let pos = e.get("copy_mode").map_or(&e.pos, |a| &a.pos);
            return Err(ConfigError::at(pos, format!("copy_mode {o:?}: expected no_copy, shallow, deep or marshal")));
        }
    }
    let _ = e.bool("deep_copy")?;
    let mut stores = Vec::new();
    for s in e.elements_named("store") {
        let _ = s.bool("ignore_error")?;
        stores.push(ctx.output(s)?);
    }
    if stores.is_empty() {
        return Err(e.error("@type copy needs at least one <store>"));
    }
    Ok(Box::new(CopyPlan { id, stores }))
}

#[derive(Debug)]
struct CopyPlan {
    id: String,
    stores: Vec<Box<dyn OutputPlan>>,
}

impl OutputPlan for CopyPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "copy"
    }
    fn describe(&self, labels: &[String]) -> String {
        format!("copy [{}]", self.stores.iter().map(|x| x.describe(labels)).collect::<Vec<_>>().join("; "))
    }
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        let stores = self.stores.iter().map(|s| ctx.build_output(&**s)).collect::<Result<Vec<_>, _>>()?;
        Ok(Rc::new(CopyOutput { id: self.id.clone(), metrics: OutputMetrics::default(), stores }))
    }
}

pub struct CopyOutput {
    id: String,
    metrics: OutputMetrics,
    stores: Vec<Rc<dyn Output>>,
}

impl Output for CopyOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "copy"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, emitter: &dyn Emitter) -> Result<(), EmitError> {
        let mut first_err = None;
        for s in &self.stores {
            if let Err(e) = emit_counted(&**s, batch, emitter) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn has_room(&self, bytes: usize) -> bool {
        self.stores.iter().all(|s| s.has_room(bytes))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
