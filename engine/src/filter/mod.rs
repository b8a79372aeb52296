//! Filters: applied in config order to the events of matching tags before the first
//! matching `<match>`. A filter takes a batch and returns the batch to pass on (the same
//! one when nothing changed, so pass-through stays zero-copy), or `None` when every
//! event was dropped.

pub mod error;
pub mod grep;
pub mod record_transformer;
pub mod stdout;

use spate_protocol::EventBatch;

pub enum Filter {
    Grep(grep::GrepFilter),
    RecordTransformer(record_transformer::RecordTransformer),
    Stdout(stdout::StdoutFilter),
}

impl Filter {
    #[inline]
    pub fn filter(&self, batch: EventBatch) -> Option<EventBatch> {
        match self {
            Filter::Grep(f) => f.filter(batch),
            Filter::RecordTransformer(f) => f.filter(batch),
            Filter::Stdout(f) => f.filter(batch),
        }
    }
}

/// Builds a batch from selected raw entries (used by filters that drop or rewrite
/// events). `entries` holds packed `[time, record]` arrays.
pub fn rebuild(batch: &EventBatch, entries: Vec<u8>, count: u32) -> Option<EventBatch> {
    if count == 0 {
        return None;
    }
    Some(EventBatch {
        tag: batch.tag.clone(),
        entries: bytes::Bytes::from(entries),
        format: spate_protocol::EntriesFormat::Packed,
        count,
        invalid: 0,
        mode: batch.mode,
        option: batch.option.clone(),
        wire_len: batch.wire_len,
    })
}
