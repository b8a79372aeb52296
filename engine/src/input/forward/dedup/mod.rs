//! in_forward's `deduplicate` (spate's own, off by default): a frame whose ack id was
//! already stored is acked again without storing its events twice, so a sender that
//! resends what it did not see acked (spate's out_forward after a reconnect, a timeout
//! or a `kill -9`) gets each event stored once.
//!
//! - [`window`]: the ids, shared by the input's shards (a resend lands on any shard),
//!   bounded by count and age; touched per frame, never per event.
//! - [`log`]: each shard's log of ids, written in the shard's group commit after the
//!   events and sealed after their fsync, loaded by every shard at start.
//!
//! The key of a frame is SHA-256 over its *source* and its ack id (`option.chunk`):
//! the authenticated `<user>` name when `<security>` has `user_auth`, else the peer's
//! IP address. One client cannot make spate drop another client's frames by sending
//! their ids: they key differently. Frames without an ack id are never deduplicated.
//!
//! A frame's id is claimed before it is routed (a copy arriving meanwhile on another
//! shard waits for the outcome), and counts once its events are durable: at the end of
//! the group commit that wrote them, or at once when no file buffer took them (memory
//! buffers: deduplicated for the life of the process, nothing persisted). A frame that
//! was not accepted releases its claim, so its resend is stored.

pub mod log;
#[cfg(test)]
mod tests;
pub mod window;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::buffer::sync::Syncer;

use log::{IdLog, Segment};
pub use window::{Claim, Key, Window};

/// Default `deduplicate_window_size`: ids held (all sources together).
pub const DEFAULT_WINDOW_SIZE: usize = 100_000;
/// Default `deduplicate_window_time`.
pub const DEFAULT_WINDOW_TIME: Duration = Duration::from_secs(3600);

/// The key of a frame: SHA-256 over the source and the ack id, first 16 bytes.
pub fn key(source: &[u8], chunk: &[u8]) -> Key {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(&(source.len() as u64).to_le_bytes());
    c.update(source);
    c.update(chunk);
    let d = c.finish();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    k
}

/// The source part of the key for a connection (see the module doc).
pub fn source(user: Option<&str>, ip: Option<std::net::IpAddr>) -> bytes::Bytes {
    match (user, ip) {
        (Some(u), _) => bytes::Bytes::from(format!("user:{u}")),
        (None, Some(ip)) => bytes::Bytes::from(format!("addr:{ip}")),
        (None, None) => bytes::Bytes::from_static(b"addr:?"),
    }
}

/// The previous runs' segments, read once (by the first shard to build) and handed
/// out to the shards that delete them later.
type Loaded = Result<Mutex<Vec<Segment>>, String>;

/// The configuration and the state one in_forward's shards share (part of its plan).
#[derive(Debug)]
pub struct Dedup {
    pub path: Option<PathBuf>,
    pub size: usize,
    pub time: Duration,
    window: Arc<Window>,
    loaded: OnceLock<Loaded>,
}

impl PartialEq for Dedup {
    fn eq(&self, o: &Self) -> bool {
        (&self.path, self.size, self.time) == (&o.path, o.size, o.time)
    }
}

impl Dedup {
    pub fn new(path: Option<PathBuf>, size: usize, time: Duration) -> Self {
        Dedup { path, size, time, window: Arc::new(Window::new(size, time.as_secs())), loaded: OnceLock::new() }
    }

    /// This shard's side: loads the logs the first time any shard asks (the window is
    /// full before a shard accepts a connection) and adopts the segments of shard
    /// `M % workers == shard` for deletion.
    pub fn for_shard(&self, id: &str, shard: usize, workers: usize, syncer: &Rc<Syncer>) -> Result<ShardDedup, String> {
        let loaded = self.loaded.get_or_init(|| match &self.path {
            Some(p) => load(id, p, &self.window).map(Mutex::new),
            None => Ok(Mutex::new(Vec::new())),
        });
        let segs = loaded.as_ref().map_err(Clone::clone)?;
        let mine = {
            let mut all = segs.lock().unwrap_or_else(|e| e.into_inner());
            let (mine, rest): (Vec<Segment>, Vec<Segment>) =
                all.drain(..).partition(|s| log::shard_of(&s.path).map_or(shard == 0, |m| m % workers.max(1) == shard));
            *all = rest;
            mine
        };
        // A segment per quarter of this shard's share of the window: the disk holds
        // about the window plus one segment per shard.
        let seg_limit = (self.size / workers.max(1) / 4).max(1024);
        let log =
            Rc::new(RefCell::new(IdLog::new(id, self.window.clone(), self.path.as_deref(), shard, seg_limit, mine)));
        Ok(ShardDedup { window: self.window.clone(), log, syncer: syncer.clone() })
    }
}

/// Reads every segment in `dir` (creating it) into `window`; returns the segments.
fn load(id: &str, dir: &Path, window: &Window) -> Result<Vec<Segment>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{id}: deduplicate_path {}: {e}", dir.display()))?;
    let files = log::segment_files(dir).map_err(|e| format!("{id}: deduplicate_path {}: {e}", dir.display()))?;
    let boot = crate::sys::boot_id();
    let (mut all, mut segs) = (Vec::new(), Vec::new());
    let (mut unsealed, mut dropped) = (0, 0);
    for p in files {
        let raw = match std::fs::read(&p) {
            Ok(r) => r,
            Err(e) => {
                crate::warn!(
                    "{id}: cannot read {}: {e}; its ids are not used (their resends are stored again)",
                    p.display()
                );
                continue;
            }
        };
        let mut r = log::read_segment(&raw, boot.as_ref());
        // Ids of a commit another log names unfinished: its events are cut from the
        // chunk files (see `crate::buffer::journal`), so the ids must not count.
        let cuts = crate::buffer::journal::cuts();
        for (tag, range) in r.finished.iter().rev() {
            let end = range.end.min(r.ids.len());
            if cuts.contains(tag) && range.start < end {
                r.ids.drain(range.start..end);
            }
        }
        if let Some(why) = &r.damage {
            crate::warn!(
                "{id}: {}: {why}; the {} ids before it are used, the rest not (their resends are stored again)",
                p.display(),
                r.ids.len()
            );
        }
        unsealed += r.unsealed;
        dropped += r.dropped;
        let max_seq = r.ids.iter().map(|e| e.1).max().unwrap_or(0);
        let max_secs = r.ids.iter().map(|e| e.2).max().unwrap_or(0);
        all.extend(r.ids);
        segs.push(Segment { path: p, max_seq, max_secs });
    }
    if unsealed > 0 {
        // Written by a process killed in this boot before their seal: their events are
        // in the page cache; make them durable before relying on the ids.
        crate::sys::sync_all();
    }
    let n = all.len();
    let held = window.load(all, window::now_secs());
    if n > 0 || dropped > 0 {
        crate::info!(
            "{id}: deduplication window: {held} acked frame ids loaded from {} ({n} read, {dropped} unsealed ones from before a reboot not used)",
            dir.display()
        );
    }
    Ok(segs)
}

/// One shard's use of the window (held by its in_forward instance).
pub struct ShardDedup {
    window: Arc<Window>,
    log: Rc<RefCell<IdLog>>,
    syncer: Rc<Syncer>,
}

impl ShardDedup {
    /// Joins the shard's group commit (on the shard's executor, before the input
    /// accepts connections).
    pub fn start(&self) {
        self.syncer.register_follower(self.log.clone());
    }

    /// Claims `key` (see [`Window::claim`]).
    pub fn claim(&self, key: &Key) -> Claim {
        self.window.claim(key, window::now_secs())
    }

    /// The frame of claim `(key, seq)` was accepted by every output. `first`: the
    /// shard's epoch before its first append; `wrote`: whether a file buffer took
    /// any of it (then the id counts after the group commit; otherwise now).
    pub fn accepted(&self, key: Key, seq: u64, first: u64, wrote: bool) {
        if wrote {
            self.log.borrow_mut().push(key, seq, first);
            // A commit must run for the id even if its events are already durable.
            self.syncer.written();
        } else {
            self.window.settle([(key, seq)], true);
        }
    }

    /// The frame of claim `(key, seq)` was not accepted: its resend must be stored.
    pub fn release(&self, key: Key, seq: u64) {
        self.window.settle([(key, seq)], false);
    }

    /// Whether a copy of the frame with `key` is being stored right now.
    pub fn is_pending(&self, key: &Key) -> bool {
        self.window.is_pending(key)
    }
}
