//! `filter_prometheus` (fluent-plugin-prometheus): counts every event that passes into
//! the `<metric>`s it defines (see [`metric`] and [`store`]) and passes the batch on unchanged. The
//! metrics are served by `<source> @type prometheus`.

pub mod metric;
pub mod store;

use std::rc::Rc;
use std::sync::Arc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::metrics::Visitor;
use crate::plugin::{Build, BuildError, Emitter, Filter, FilterPlan, Kind, PlanCtx, Registration, ShardCtx};

pub use metric::Defs;
pub use store::Store;

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "prometheus",
    aliases: &[],
    kind: Kind::Filter,
    build: Build::Filter(plan),
    params: "fluent-plugin-prometheus: `<labels>` and `<metric>` (`name`, `type` counter/gauge/summary/histogram, `desc`, `key` (field or `$.a.b`), `buckets`, `initialized` + `<initlabels>`, `<labels>` with `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`, `${tag_suffix[N]}`, `${hostname}`, `${worker_id}`, `${field}`, `$.a.b`); events pass unchanged",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn FilterPlan>, ConfigError> {
    let id = ctx.id(e, "prometheus");
    let defs = Defs::parse(e, ctx)?;
    Ok(Box::new(PrometheusPlan { id, defs: Arc::new(defs) }))
}

#[derive(Debug)]
struct PrometheusPlan {
    id: String,
    defs: Arc<Defs>,
}

impl FilterPlan for PrometheusPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "prometheus"
    }
    fn describe(&self) -> String {
        format!("metrics {}", self.defs.names().join(", "))
    }
    fn build(&self, ctx: &Rc<ShardCtx>) -> Result<Box<dyn Filter>, BuildError> {
        Ok(Box::new(PrometheusFilter { store: Store::new(self.defs.clone(), &self.id, &ctx.hostname, ctx.shard) }))
    }
}

/// One shard's prometheus filter.
pub struct PrometheusFilter {
    pub store: Store,
}

impl Filter for PrometheusFilter {
    fn filter(&self, batch: EventBatch, _emitter: &dyn Emitter) -> Option<EventBatch> {
        self.store.instrument(&batch);
        Some(batch)
    }

    fn visit_metrics(&self, m: &mut dyn Visitor) {
        self.store.visit(m);
    }
}
