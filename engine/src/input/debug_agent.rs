//! `in_debug_agent`: fluentd's dRuby console into the running Ruby process. spate runs
//! no Ruby, so there is nothing to attach to: the source is accepted (real aggregator
//! configs carry it) with one warning saying so, and does nothing.

use std::rc::Rc;
use std::time::Duration;

use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, Emitter, Input, InputPlan, Kind, Listening, LocalFuture, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "debug_agent",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "accepted with a warning and ignored: fluentd's dRuby console has no meaning in spate (no Ruby process to inspect)",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let id = ctx.id(e, "debug_agent");
    // bind, port, unix_path, unix_perm, object: all about the dRuby server.
    e.mark_all_used();
    crate::warn!(
        "{}: <source> @type debug_agent is fluentd's dRuby console into its Ruby process; spate runs no Ruby, so it is accepted and does nothing",
        e.pos
    );
    Ok(Box::new(DebugAgentPlan { id }))
}

#[derive(Debug)]
struct DebugAgentPlan {
    id: String,
}

impl InputPlan for DebugAgentPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "debug_agent"
    }
    fn label(&self) -> usize {
        0
    }
    fn describe(&self) -> String {
        "(ignored: no Ruby process)".into()
    }
    fn build(&self, _ctx: &Rc<ShardCtx>, _emitter: Rc<dyn Emitter>) -> Result<Rc<dyn Input>, BuildError> {
        Ok(Rc::new(DebugAgent))
    }
}

struct DebugAgent;

impl Input for DebugAgent {
    fn start(self: Rc<Self>, _first: bool) -> std::io::Result<Vec<Listening>> {
        Ok(Vec::new())
    }
    fn stop(&self, _grace: Duration) -> LocalFuture<'_, ()> {
        Box::pin(async {})
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
