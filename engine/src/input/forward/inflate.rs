//! in_forward's CompressedPackedForward path: a compressed frame is inflated a slice at
//! a time ([`spate_protocol::Inflater`]) and each slice's complete entries are routed as
//! a batch of their own, so a connection holds at most the decoder's state, one slice
//! and the one entry that spans slices, whatever the compression ratio.
//!
//! Two things keep a shard serving while compression bombs arrive:
//! - a budget of inflation memory per in_forward per shard (`inflate_memory_limit`):
//!   before each slice a connection reserves what [`Inflater::memory`] says the slice
//!   may hold; when the budget is taken, it waits (and reads nothing more meanwhile:
//!   TCP back-pressure), nothing is allocated past it;
//! - a yield to the executor's reactor after every slice, so the shard's other
//!   connections get their reads and acks in between.
//!
//! The frame's ack is sent after its last slice was accepted. A frame that fails half
//! way (over `decompression_size_limit`, corrupt data) closes the connection unacked;
//! the slices routed before the failure stay routed (an at-least-once client resends the
//! frame: duplicates, never loss).

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use spate_protocol::inflate::DEFAULT_SLICE;
use spate_protocol::{CompressedFrame, Inflater, Limits};

use super::{inc, ForwardInput};

/// How long a connection whose frame needs more memory in the middle of an entry waits
/// for other connections to release theirs before it gives up (two connections that
/// each hold half the budget and wait for more would otherwise wait forever).
const GROW_WAIT: Duration = Duration::from_secs(5);

/// Inflation memory of one in_forward on one shard.
pub struct InflateBudget {
    sem: Rc<Semaphore>,
    total: u64,
}

impl InflateBudget {
    pub fn new(total: usize) -> Self {
        let total = total as u64;
        InflateBudget { sem: Rc::new(Semaphore::new(total)), total }
    }
}

/// Memory reserved from a budget; given back when dropped (also when the connection's
/// task is cancelled mid-frame).
struct Reservation {
    sem: Rc<Semaphore>,
    held: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.sem.signal(self.held);
        }
    }
}

/// Why a compressed frame was not accepted.
#[derive(Debug, thiserror::Error)]
enum InflateError {
    #[error("{0}")]
    Decode(#[from] spate_protocol::DecodeError),
    #[error("{0}")]
    Setup(#[from] spate_protocol::ErrorKind),
    #[error("inflating it needs {need} bytes of memory at once, more than this input's inflate_memory_limit ({total} bytes per shard)")]
    OverBudget { need: u64, total: u64 },
    #[error("inflating it needs {need} bytes of memory at once and other connections held this shard's inflate_memory_limit ({total} bytes) for {GROW_WAIT:?}")]
    BudgetBusy { need: u64, total: u64 },
    #[error("events not accepted: {0}")]
    Rejected(String),
    /// `overflow_action block` waited for room until the input stopped, or the output
    /// refused the events (logged where it happened).
    #[error("the buffer had no room for them before the input stopped, or refused them")]
    Blocked,
}

impl Reservation {
    /// Holds at least `need` bytes: waits in line for the first reservation, and at
    /// most [`GROW_WAIT`] for more once some is held.
    async fn ensure(&mut self, need: u64, total: u64) -> Result<(), InflateError> {
        if need <= self.held {
            return Ok(());
        }
        if need > total {
            return Err(InflateError::OverBudget { need, total });
        }
        let more = need - self.held;
        if self.held == 0 {
            self.sem.acquire(more).await.map_err(|_| InflateError::Blocked)?;
        } else if !self.sem.try_acquire(more).unwrap_or(false) {
            let sem = self.sem.clone();
            let got = glommio::timer::timeout(GROW_WAIT, async move {
                sem.acquire(more).await?;
                Ok(())
            })
            .await;
            if got.is_err() {
                return Err(InflateError::BudgetBusy { need, total });
            }
        }
        self.held = need;
        Ok(())
    }
}

impl ForwardInput {
    /// Inflates and routes one compressed frame, appending its ack to `acks` once every
    /// slice was accepted. `false`: the connection must be closed (logged here).
    pub(super) async fn inflate_frame(
        &self,
        frame: CompressedFrame,
        limits: &Limits,
        peer: &str,
        source_ip: Option<&Bytes>,
        json: bool,
        acks: &mut Vec<u8>,
    ) -> bool {
        let (mut count, mut invalid) = (0u64, 0u64);
        let mut inflated = 0u64;
        let r = self
            .inflate_inner(&frame, limits, peer, source_ip, json, acks, &mut count, &mut invalid, &mut inflated)
            .await;
        if let Err(e) = r {
            match e {
                InflateError::Rejected(_) | InflateError::Blocked => inc(&self.metrics.rejected_batches, 1),
                _ => inc(&self.metrics.bad_frames, 1),
            }
            crate::warn!(
                "{}: closing connection from {peer}: compressed ({}) frame at stream byte {} ({} bytes) not accepted after inflating {inflated} bytes ({count} events routed, no ack sent): {e}",
                self.conf.id,
                frame.kind.name(),
                frame.offset,
                frame.wire_len,
            );
            return false;
        }
        if let Some(w) = self.conf.chunk_size_warn_limit {
            if inflated > w as u64 {
                crate::warn!(
                    "{}: Input chunk size is larger than 'chunk_size_warn_limit': tag=\"{}\" host=\"{peer}\" limit={w} size={inflated}",
                    self.conf.id,
                    String::from_utf8_lossy(&frame.tag),
                );
            }
        }
        if invalid > 0 && self.conf.skip_invalid_event {
            crate::warn!(
                "{}: skip invalid event: {invalid} entries without a valid time or record, tag=\"{}\" host=\"{peer}\"",
                self.conf.id,
                String::from_utf8_lossy(&frame.tag)
            );
        }
        self.ack(frame.option.chunk.as_ref(), json, acks);
        true
    }

    #[allow(clippy::too_many_arguments)]
    async fn inflate_inner(
        &self,
        frame: &CompressedFrame,
        limits: &Limits,
        peer: &str,
        source_ip: Option<&Bytes>,
        json: bool,
        acks: &mut Vec<u8>,
        count: &mut u64,
        invalid: &mut u64,
        inflated: &mut u64,
    ) -> Result<(), InflateError> {
        let mut inf: Inflater = frame.inflater(limits)?;
        let budget = &self.inflate_budget;
        let mut res = Reservation { sem: budget.sem.clone(), held: 0 };
        loop {
            res.ensure(inf.memory(DEFAULT_SLICE) as u64, budget.total).await?;
            let slice = inf.next_slice(DEFAULT_SLICE);
            *inflated = inf.inflated();
            let Some(slice) = slice? else { return Ok(()) };
            inc(&self.metrics.invalid_events, slice.invalid as u64);
            *invalid += slice.invalid as u64;
            if slice.count > 0 {
                *count += slice.count as u64;
                inc(&self.metrics.events, slice.count as u64);
                let batch = self.rewrite(frame.batch(slice), source_ip);
                match self.router.emit(self.conf.label, batch.clone()) {
                    Ok(()) => {}
                    Err(e) if e.is_block() => {
                        // No chunk: the ack is sent once, after the last slice.
                        if !self.wait_for_room(Box::new(batch), None, json, peer, acks).await {
                            return Err(InflateError::Blocked);
                        }
                    }
                    Err(e) => return Err(InflateError::Rejected(e.to_string())),
                }
            }
            if inf.is_done() {
                return Ok(());
            }
            // Let the reactor run: other connections' reads and acks go between slices.
            // (A zero sleep would return at once; a task that only yields stays in the
            // run queue ahead of the reactor.)
            glommio::timer::sleep(Duration::from_micros(1)).await;
        }
    }
}
