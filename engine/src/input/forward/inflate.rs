//! in_forward's CompressedPackedForward inflation: a compressed frame is inflated a
//! slice at a time ([`spate_protocol::Inflater`]) and each slice's complete entries are routed as
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
//! in_forward (mod.rs) routes each slice and sends the frame's ack after its last
//! slice was accepted. A frame that fails half way (over `decompression_size_limit`,
//! corrupt data) closes the connection unacked; the slices routed before the failure
//! stay routed (an at-least-once client resends the frame: duplicates, never loss).

use std::rc::Rc;
use std::time::Duration;

use glommio::sync::Semaphore;
use spate_protocol::inflate::DEFAULT_SLICE;
use spate_protocol::{CompressedFrame, Inflater, Limits, Slice};

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
pub enum InflateError {
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

/// One compressed frame being inflated: [`FrameInflater::next`] reserves the memory
/// of the next slice from the budget (waiting for it when the budget is taken),
/// inflates it, and hands back its complete entries; between slices it yields to the
/// reactor, so the shard's other connections get their reads and acks in between.
pub struct FrameInflater {
    inf: Inflater,
    res: Reservation,
    total: u64,
    first: bool,
}

impl FrameInflater {
    pub fn new(frame: &CompressedFrame, limits: &Limits, budget: &InflateBudget) -> Result<Self, InflateError> {
        Ok(FrameInflater {
            inf: frame.inflater(limits)?,
            res: Reservation { sem: budget.sem.clone(), held: 0 },
            total: budget.total,
            first: true,
        })
    }

    /// Bytes inflated so far.
    pub fn inflated(&self) -> u64 {
        self.inf.inflated()
    }

    /// The next slice's entries (possibly none, while one entry spans slices);
    /// `Ok(None)`: the frame is done.
    pub async fn next(&mut self) -> Result<Option<Slice>, InflateError> {
        if self.inf.is_done() {
            return Ok(None);
        }
        if !self.first {
            // Let the reactor run: other connections' reads and acks go between
            // slices. (A zero sleep would return at once; a task that only yields
            // stays in the run queue ahead of the reactor.)
            glommio::timer::sleep(Duration::from_micros(1)).await;
        }
        self.first = false;
        self.res.ensure(self.inf.memory(DEFAULT_SLICE) as u64, self.total).await?;
        Ok(self.inf.next_slice(DEFAULT_SLICE)?)
    }
}
