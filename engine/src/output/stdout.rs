//! `out_stdout`: prints each event as fluentd does:
//! `2026-11-24 10:00:00.123456789 +0000 tag: {"json":"record"}` (local time, nanoseconds).
//! One write per batch; the line prefix for a second is formatted once.

use std::cell::RefCell;
use std::io::Write;

use spate_protocol::EventBatch;

use super::{EmitError, OutputMetrics};

pub struct StdoutOutput {
    pub id: String,
    pub metrics: OutputMetrics,
    scratch: RefCell<Scratch>,
}

#[derive(Default)]
struct Scratch {
    out: Vec<u8>,
    /// Cached "YYYY-mm-dd HH:MM:SS" and " +zzzz" for `sec`.
    sec: Option<u32>,
    date: Vec<u8>,
    zone: Vec<u8>,
}

impl StdoutOutput {
    pub fn new(id: String) -> Self {
        StdoutOutput { id, metrics: OutputMetrics::default(), scratch: RefCell::new(Scratch::default()) }
    }

    /// Renders a batch into `out` (exposed for tests).
    pub fn render(&self, batch: &EventBatch, out: &mut Vec<u8>) {
        let mut s = self.scratch.borrow_mut();
        for ev in batch.events() {
            if s.sec != Some(ev.time.sec) {
                let mut full = Vec::with_capacity(32);
                crate::log::format_time(&mut full, ev.time.sec as i64, 0, 0);
                // "YYYY-mm-dd HH:MM:SS +zzzz": split at the last space.
                let cut = full.iter().rposition(|&b| b == b' ').unwrap_or(full.len());
                s.date = full[..cut].to_vec();
                s.zone = full[cut..].to_vec();
                s.sec = Some(ev.time.sec);
            }
            out.extend_from_slice(&s.date);
            let _ = write!(out, ".{:09}", ev.time.nsec);
            out.extend_from_slice(&s.zone);
            out.push(b' ');
            out.extend_from_slice(&batch.tag);
            out.extend_from_slice(b": ");
            ev.record.write_json(out);
            out.push(b'\n');
        }
    }

    pub fn emit(&self, batch: &EventBatch) -> Result<(), EmitError> {
        let mut out = std::mem::take(&mut self.scratch.borrow_mut().out);
        out.clear();
        self.render(batch, &mut out);
        // One locked write per batch (stdout is a debugging output, not a hot path).
        let r = std::io::stdout().lock().write_all(&out);
        self.scratch.borrow_mut().out = out;
        r.map_err(|e| EmitError::Write { id: self.id.clone(), reason: e.to_string() })
    }
}
