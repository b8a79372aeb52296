//! fluentd's stdout line format (formatter_stdout with the json sub-formatter):
//! `2026-11-24 10:00:00.123456789 +0000 tag: {"json":"record"}` (local time,
//! nanoseconds), shared by `out_stdout` and `filter_stdout`. The date and zone of a
//! second are formatted once and reused for the events of that second.

use std::io::Write;

use spate_protocol::EventBatch;

/// Renders batches as stdout lines, caching the formatted second.
#[derive(Default)]
pub struct StdoutLines {
    /// Cached "YYYY-mm-dd HH:MM:SS" and " +zzzz" for `sec`.
    sec: Option<u32>,
    date: Vec<u8>,
    zone: Vec<u8>,
}

impl StdoutLines {
    /// Appends one line per event of `batch` to `out`.
    pub fn render(&mut self, batch: &EventBatch, out: &mut Vec<u8>) {
        for ev in batch.events() {
            if self.sec != Some(ev.time.sec) {
                let mut full = Vec::with_capacity(32);
                crate::log::format_time(&mut full, ev.time.sec as i64, 0, 0);
                // "YYYY-mm-dd HH:MM:SS +zzzz": split at the last space.
                let cut = full.iter().rposition(|&b| b == b' ').unwrap_or(full.len());
                self.date = full[..cut].to_vec();
                self.zone = full[cut..].to_vec();
                self.sec = Some(ev.time.sec);
            }
            out.extend_from_slice(&self.date);
            let _ = write!(out, ".{:09}", ev.time.nsec);
            out.extend_from_slice(&self.zone);
            out.push(b' ');
            out.extend_from_slice(&batch.tag);
            out.extend_from_slice(b": ");
            ev.record.write_json(out);
            out.push(b'\n');
        }
    }
}
