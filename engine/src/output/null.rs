//! `out_null`: accepts and discards events (counting them).

use spate_protocol::EventBatch;

use super::{EmitError, OutputMetrics};

pub struct NullOutput {
    pub id: String,
    pub metrics: OutputMetrics,
}

impl NullOutput {
    pub fn new(id: String) -> Self {
        NullOutput { id, metrics: OutputMetrics::default() }
    }

    #[inline]
    pub fn emit(&self, _batch: &EventBatch) -> Result<(), EmitError> {
        Ok(())
    }
}
