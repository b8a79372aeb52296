//! `out_stdout`: prints each event as fluentd does:
//! `2026-11-24 10:00:00.123456789 +0000 tag: {"json":"record"}` (local time, nanoseconds;
//! see [`crate::format::stdout`]). One write per batch. As in fluentd, it is not
//! buffered unless it has a `<buffer>` (then each chunk is printed when flushed), and
//! it can be a `<secondary>` (chunks whose retries ran out are printed).

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch, Mode, Options};

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::stdout::StdoutLines;
use crate::plugin::{
    Build, BuildError, ChunkVars, EmitError, Emitter, Kind, LocalFuture, Output, OutputMetrics, OutputPlan, PlanCtx,
    Registration, ShardCtx, WriteError, Writer, WriterPlan, WriterSetup,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "stdout",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Either { output: plan, writer: plan_writer },
    params: "fluentd's line format `2026-11-24 10:00:00.123456789 +0000 tag: {json}` (`output_type json`, `<format>` `stdout`/`json`); buffered with a `<buffer>` (chunk keys `tag` by default), and valid as `<secondary>`",
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
    Ok(Box::new(StdoutPlan { id: ctx.id(e, "stdout") }))
}

fn plan_writer(
    e: &Element,
    _ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    check_stdout_params(e, "out_stdout")?;
    if setup.primary_buffer().is_none() {
        // out_stdout.rb's <buffer>: chunk keys `tag`, flushed at shutdown.
        let defaults = BufferDefaults { keys: &["tag"], flush_at_shutdown: Some(true), ..Default::default() };
        setup.buffer(e, &defaults)?;
    }
    Ok(Box::new(StdoutWriterPlan))
}

#[derive(Debug)]
struct StdoutWriterPlan;

impl WriterPlan for StdoutWriterPlan {
    fn type_name(&self) -> &'static str {
        "stdout"
    }
    fn describe(&self) -> String {
        "stdout".into()
    }
    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(StdoutWriter { out: StdoutOutput::new(id.to_string()) }))
    }
}

/// Prints a chunk's events as the unbuffered output prints a batch.
struct StdoutWriter {
    out: StdoutOutput,
}

impl Writer for StdoutWriter {
    fn type_name(&self) -> &'static str {
        "stdout"
    }
    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            let batch = EventBatch {
                tag: chunk.tag.clone(),
                wire_len: chunk.data.len(),
                entries: Bytes::copy_from_slice(&chunk.data),
                format: EntriesFormat::Packed,
                count: chunk.count,
                invalid: 0,
                mode: Mode::PackedForward,
                option: Options::default(),
            };
            self.out.print(&batch).map_err(|e| WriteError::Retry(e.to_string()))?;
            Ok(chunk.data.len())
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
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
