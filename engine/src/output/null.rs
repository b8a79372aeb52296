//! `out_null`: accepts and discards events (counting them). As in fluentd, it is not
//! buffered unless it has a `<buffer>` (then chunks are buffered and discarded when
//! flushed), it can be a `<secondary>` (chunks whose retries ran out are discarded
//! without an error line), and `never_flush true` makes every emit or write fail
//! ("failed to flush"), which fluentd's examples use to show a buffer filling up.

use std::rc::Rc;

use spate_protocol::EventBatch;

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, ChunkVars, EmitError, Emitter, Kind, LocalFuture, Output, OutputMetrics, OutputPlan, PlanCtx,
    Registration, ShardCtx, WriteError, Writer, WriterPlan, WriterSetup,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "null",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Either { output: plan, writer: plan_writer },
    params: "accepts and discards events (counted); `never_flush` (false: true fails every emit, or every chunk's write when buffered, as fluentd's does); `<buffer>` defaults: chunk keys `tag`, `chunk_limit_size` 10k, `flush_at_shutdown` true",
};

/// fluentd's message when `never_flush` is set.
const NEVER: &str = "failed to flush (never_flush true)";

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let never_flush = e.bool("never_flush")?.unwrap_or(false);
    Ok(Box::new(NullPlan { id: ctx.id(e, "null"), never_flush }))
}

fn plan_writer(
    e: &Element,
    _ctx: &mut PlanCtx<'_>,
    setup: &mut WriterSetup,
) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let never_flush = e.bool("never_flush")?.unwrap_or(false);
    if setup.primary_buffer().is_none() {
        // out_null.rb's <buffer> defaults.
        let defaults = BufferDefaults {
            keys: &["tag"],
            chunk_limit_size: Some(10 << 10),
            flush_at_shutdown: Some(true),
            ..Default::default()
        };
        setup.buffer(e, &defaults)?;
    }
    Ok(Box::new(NullWriterPlan { never_flush }))
}

#[derive(Debug)]
struct NullPlan {
    id: String,
    never_flush: bool,
}

impl OutputPlan for NullPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "null"
    }
    fn describe(&self, _labels: &[String]) -> String {
        match self.never_flush {
            true => format!("null {} (never_flush: every emit fails)", self.id),
            false => format!("null {}", self.id),
        }
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(NullOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            never_flush: self.never_flush,
        }))
    }
}

pub struct NullOutput {
    pub id: String,
    pub metrics: OutputMetrics,
    never_flush: bool,
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
        if self.never_flush {
            return Err(EmitError::Write { id: self.id.clone(), reason: NEVER.into() });
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[derive(Debug)]
struct NullWriterPlan {
    never_flush: bool,
}

impl WriterPlan for NullWriterPlan {
    fn type_name(&self) -> &'static str {
        "null"
    }
    fn describe(&self) -> String {
        match self.never_flush {
            true => "discarded (never_flush: every write fails)".into(),
            false => "discarded".into(),
        }
    }
    fn build(&self, _id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(NullWriter { never_flush: self.never_flush }))
    }
    fn concurrent_writes(&self) -> bool {
        true
    }
}

struct NullWriter {
    never_flush: bool,
}

impl Writer for NullWriter {
    fn type_name(&self) -> &'static str {
        "null"
    }
    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            match self.never_flush {
                true => Err(WriteError::Retry(NEVER.into())),
                false => Ok(chunk.data.len()),
            }
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
