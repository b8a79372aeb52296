//! Which group commits a `kill -9` interrupted, so that recovery can take their events
//! back out of the chunk files (spate's own; only with in_forward's `deduplicate_path`).
//!
//! Why: with `deduplicate`, a frame's events and its id must survive a crash together.
//! The group commit writes the events first and the id after them ([`super::sync`]), so
//! a `kill -9` between the two left the events in their chunk files without the id: the
//! frame was not acked, its sender resent it, and it was stored twice. Now each commit
//! that carries ids is bracketed in the id log: a *begin* record before any event is
//! written, an *end* record after the ids (one write with them). The commit's chunk
//! segments carry its [`CommitTag`] (`SEG2`, see [`super::chunk_file`]). At the next
//! start, a begin without its end (in a log of this boot: the page cache kept every
//! write in order) names a commit that did not finish: its segments are cut from the
//! chunk files and its ids are not loaded, so the resend is stored once. Nothing of
//! such a commit was acked (acks wait for the commit), so the cut loses nothing acked;
//! unacked events that shared the commit (other inputs, frames without an ack id) go
//! with it, as they would with a kill a moment earlier.
//!
//! After a reboot nothing is cut: the id log is not fsynced, so an end record may be
//! missing for a commit whose events were fsynced and acked.
//!
//! The set is computed once per process, at the first buffer or log opened (before any
//! commit of this process), from every `deduplicate_path` the configuration named.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// A group commit's identity: (the shard's generation, the commit's epoch). The
/// generation is unique per shard per process ([`generation`]), the epoch per commit.
pub type CommitTag = (u64, u64);

/// Reads the commits begun and not ended from an id log directory (the id log's format
/// belongs to in_forward, a layer above: it hands its reader in).
pub type Scan = fn(&Path) -> Vec<CommitTag>;

/// Directories of id logs (`deduplicate_path`) and their readers, registered as the
/// configuration is read.
static DIRS: Mutex<Vec<(PathBuf, Scan)>> = Mutex::new(Vec::new());
static CUTS: OnceLock<HashSet<CommitTag>> = OnceLock::new();

/// The high 32 bits of every generation of this process.
fn run_id() -> u64 {
    static RUN: OnceLock<u64> = OnceLock::new();
    *RUN.get_or_init(|| {
        let mut b = [0u8; 4];
        let r = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        let n = if r.is_ok() {
            u32::from_le_bytes(b)
        } else {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            (t as u32) ^ std::process::id().rotate_left(16)
        };
        u64::from(n.max(1)) << 32
    })
}

/// A new generation for a shard's group commit (unique in this process, and with a
/// random run id, across runs).
pub fn generation(shard: u32) -> u64 {
    run_id() | u64::from(shard)
}

/// Notes an id log directory (the configuration names it) and how to read it.
pub fn register_dir(dir: PathBuf, scan: Scan) {
    let mut d = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if !d.iter().any(|(p, _)| *p == dir) {
        d.push((dir, scan));
    }
}

/// The commits a previous run of this boot began and did not finish (see the module
/// doc). Read once; this process's own commits are never in it.
pub fn cuts() -> &'static HashSet<CommitTag> {
    CUTS.get_or_init(|| {
        let dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut set = HashSet::new();
        for (d, scan) in dirs {
            set.extend(scan(&d));
        }
        set.retain(|t| t.0 & !0xffff_ffff != run_id());
        if !set.is_empty() {
            crate::info!(
                "deduplicate: {} group commit(s) were interrupted by a crash; their events come out of the chunk files (never acked: their senders resend them)",
                set.len()
            );
        }
        set
    })
}
