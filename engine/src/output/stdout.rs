//! `out_stdout`: prints each event as fluentd does:
//! `2026-11-24 10:00:00.123456789 +0000 tag: {"json":"record"}` (local time, nanoseconds;
//! see [`crate::format::stdout`]). One write per batch.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::config::{ConfigError, Element};
use crate::format::stdout::StdoutLines;
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "stdout",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluentd's line format `2026-11-24 10:00:00.123456789 +0000 tag: {json}` (`output_type json`, `<format>` `stdout`/`json`)",
};

/// Checks the parameters fluentd's stdout output and filter share (`output_type`,
/// `<format>`, an ignored `<buffer>`): only the json line format is implemented.
pub fn check_stdout_params(e: &Element, what: &str) -> Result<(), ConfigError> {
    match e.str("output_type") {
        None | Some("json") => {}
        Some(o) => return Err(e.error(format!("{what} output_type {o} is not supported yet; supported: json"))),
    }
    for f in e.elements_named("format") {
        match f.plugin_type() {
            None | Some("stdout") | Some("json") => f.mark_all_used(),
            Some(other) => {
                return Err(
                    f.error(format!("<format @type {other}> is not supported by {what} yet; supported: stdout, json"))
                )
            }
        }
    }
    Ok(())
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    check_stdout_params(e, "out_stdout")?;
    for b in e.elements_named("buffer") {
        b.mark_all_used();
    }
    Ok(Box::new(StdoutPlan { id: ctx.id(e, "stdout") }))
}

#[derive(Debug)]
struct StdoutPlan {
    id: String,
}

impl OutputPlan for StdoutPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "stdout"
    }
    fn describe(&self, _labels: &[String]) -> String {
        format!("stdout {}", self.id)
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(StdoutOutput::new(self.id.clone())))
    }
}

pub struct StdoutOutput {
    pub id: String,
    pub metrics: OutputMetrics,
    lines: RefCell<StdoutLines>,
    out: RefCell<Vec<u8>>,
}

impl StdoutOutput {
    pub fn new(id: String) -> Self {
        StdoutOutput {
            id,
            metrics: OutputMetrics::default(),
            lines: RefCell::new(StdoutLines::default()),
            out: RefCell::new(Vec::new()),
        }
    }

    /// Renders a batch into `out` (exposed for tests).
    pub fn render(&self, batch: &EventBatch, out: &mut Vec<u8>) {
        self.lines.borrow_mut().render(batch, out);
    }

    /// Prints a batch: one locked write per batch (stdout is a debugging output, not a
    /// hot path).
    pub fn print(&self, batch: &EventBatch) -> Result<(), EmitError> {
        let mut out = std::mem::take(&mut *self.out.borrow_mut());
        out.clear();
        self.render(batch, &mut out);
        let r = std::io::stdout().lock().write_all(&out);
        *self.out.borrow_mut() = out;
        r.map_err(|e| EmitError::Write { id: self.id.clone(), reason: e.to_string() })
    }
}

impl Output for StdoutOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "stdout"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        self.print(batch)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
