//! How a metrics reader reaches every shard: one small mailbox per shard. A reader (an
//! HTTP handler on some shard, or a monitor's timer) posts a [`Request`] to each
//! shard's mailbox; each shard answers from its control loop (it polls the mailbox
//! every [`POLL`]) with a [`ShardSnapshot`] built by visiting its own plugins, and the
//! reader sums the answers. Nothing is read across shards and nothing is computed when
//! nobody asks: the data path only bumps its shard's `Cell`s.
//!
//! Chosen over periodic per-shard snapshots because it costs nothing between requests
//! and every answer is current; a scrape waits at most one poll interval per shard
//! (they answer in parallel).

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::prom::{add_family, Family};
use super::{merge, Merged, ShardSnapshot};

/// How often a shard's control loop looks at its mailbox.
pub const POLL: Duration = Duration::from_millis(20);

/// What a reader asks a shard for.
pub enum Request {
    Snapshot(mpsc::Sender<ShardSnapshot>),
}

/// Why collecting failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("shard {0} did not answer within {1:?}")]
    Timeout(usize, Duration),
    #[error("the engine is shutting down")]
    Closed,
}

/// The shards' mailboxes (one process-wide hub per running engine), and the families
/// the Prometheus monitors (prometheus_monitor, ...) published at their last interval.
pub struct Hub {
    senders: Mutex<Vec<mpsc::Sender<Request>>>,
    exports: Mutex<Vec<(String, Vec<Family>)>>,
    /// The configuration file (monitor_agent's `/api/config.json`).
    pub config_path: Option<String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub for `shards` shards and each shard's receiving end, by shard.
    pub fn new(shards: usize, config_path: Option<String>) -> (std::sync::Arc<Hub>, Vec<mpsc::Receiver<Request>>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel()).unzip();
        (std::sync::Arc::new(Hub { senders: Mutex::new(tx), exports: Mutex::new(Vec::new()), config_path }), rx)
    }

    /// A monitor's families as of its last interval (replacing its previous ones).
    pub fn publish(&self, owner: &str, families: Vec<Family>) {
        if let Ok(mut e) = self.exports.lock() {
            match e.iter_mut().find(|(o, _)| o == owner) {
                Some(slot) => slot.1 = families,
                None => e.push((owner.to_string(), families)),
            }
        }
    }

    /// A monitor stopped (reload, shutdown): its families go.
    pub fn unpublish(&self, owner: &str) {
        if let Ok(mut e) = self.exports.lock() {
            e.retain(|(o, _)| o != owner);
        }
    }

    /// Every monitor's families, merged by name.
    pub fn exported(&self) -> Vec<Family> {
        let mut all = Vec::new();
        if let Ok(e) = self.exports.lock() {
            for (_, fams) in e.iter() {
                for f in fams {
                    add_family(&mut all, f.clone());
                }
            }
        }
        all
    }

    pub fn shards(&self) -> usize {
        self.senders.lock().map_or(0, |s| s.len())
    }

    /// Asks every shard for its snapshot and sums them. Waits on the current glommio
    /// executor (never blocks it) for at most `timeout`.
    pub async fn collect(&self, timeout: Duration) -> Result<Merged, HubError> {
        let (tx, rx) = mpsc::channel();
        let n = {
            let senders = self.senders.lock().map_err(|_| HubError::Closed)?;
            for s in senders.iter() {
                s.send(Request::Snapshot(tx.clone())).map_err(|_| HubError::Closed)?;
            }
            senders.len()
        };
        drop(tx);
        let end = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match rx.try_recv() {
                Ok(s) => got.push(s),
                Err(mpsc::TryRecvError::Empty) => {
                    if Instant::now() >= end {
                        let missing = (0..n).find(|i| !got.iter().any(|s: &ShardSnapshot| s.shard == *i)).unwrap_or(0);
                        return Err(HubError::Timeout(missing, timeout));
                    }
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => return Err(HubError::Closed),
            }
        }
        merge(got).ok_or(HubError::Closed)
    }
}
