//! Filters: applied in config order to the events of matching tags before the first
//! matching `<match>`, one module per plugin with its registry row (`PLUGIN`). A
//! filter takes a batch and returns the batch to pass on (the same one when nothing
//! changed, so pass-through stays zero-copy), or `None` when every event was dropped;
//! see [`crate::plugin::Filter`].

pub mod concat;
pub mod error;
pub mod grep;
pub mod parser;
pub mod prometheus;
pub mod record_modifier;
pub mod record_transformer;
pub mod stdout;
