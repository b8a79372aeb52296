//! `out_prometheus` (fluent-plugin-prometheus): counts every event it receives into the
//! `<metric>`s it defines (shared with the filter: `filter::prometheus::metric`) and
//! keeps nothing else. The metrics are served by `<source> @type prometheus`.

use std::rc::Rc;
use std::sync::Arc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::filter::prometheus::{Defs, Store};
use crate::metrics::Visitor;
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "prometheus",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluent-plugin-prometheus: `<labels>` and `<metric>` as `filter_prometheus`; the events end here",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "prometheus");
    let defs = Defs::parse(e, ctx)?;
    Ok(Box::new(PrometheusPlan { id, defs: Arc::new(defs) }))
}

#[derive(Debug)]
struct PrometheusPlan {
    id: String,
    defs: Arc<Defs>,
}

impl OutputPlan for PrometheusPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "prometheus"
    }
    fn describe(&self, _labels: &[String]) -> String {
        format!("prometheus {} (metrics {})", self.id, self.defs.names().join(", "))
    }
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(PrometheusOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            store: Store::new(self.defs.clone(), &self.id, &ctx.hostname, ctx.shard),
        }))
    }
}

/// One shard's prometheus output.
pub struct PrometheusOutput {
    id: String,
    metrics: OutputMetrics,
    pub store: Store,
}

impl Output for PrometheusOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "prometheus"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        self.store.instrument(batch);
        Ok(())
    }
    fn visit_metrics(&self, m: &mut dyn Visitor) {
        self.metrics.visit(m, false);
        self.store.visit(m);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
