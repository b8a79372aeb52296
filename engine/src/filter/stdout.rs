//! `filter_stdout`: prints every event like `out_stdout` and passes the batch on
//! unchanged.

use spate_protocol::EventBatch;

use crate::output::stdout::StdoutOutput;

pub struct StdoutFilter {
    printer: StdoutOutput,
}

impl StdoutFilter {
    pub fn new(id: String) -> Self {
        StdoutFilter { printer: StdoutOutput::new(id) }
    }

    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        if let Err(e) = self.printer.emit(&batch) {
            crate::warn!("{e}");
        }
        Some(batch)
    }
}
