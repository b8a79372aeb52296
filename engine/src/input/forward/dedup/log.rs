//! The per-shard log of acked frame ids: how the window survives a restart, and the
//! order that keeps it from ever naming a frame whose events are not durable.
//!
//! Each shard appends to its own segment files `<deduplicate_path>/shard-<N>-<t>.ids`
//! (no lock between shards on disk). An id is written as part of the shard's group
//! commit ([`crate::buffer::sync`]): after every file buffer wrote the commit's events
//! and only if they all succeeded, and sealed (a seal record) after the events'
//! fdatasync. So:
//!
//! - `kill -9`: the page cache keeps write order, so an id that reached the file has
//!   its events in their chunk files too. A restart in the same boot (the boot id in
//!   each segment's header) trusts every complete record, sealed or not, after one
//!   `sync(2)` that makes those events durable before anything relies on them.
//! - power loss: writeback may have stored an id before its events, so after a reboot
//!   only ids before a seal record count; an unsealed tail only means a resend is
//!   stored again (a duplicate).
//! - a commit whose events failed (disk full, I/O error): its ids are cut off the
//!   segment again (the cut synced; or the segment is deleted) and forgotten by the
//!   window; the segment is not appended to again.
//!
//! The log itself is never fsynced: a second fdatasync per commit, after the events',
//! would put its latency on every ack (measured: ack p50 1.8 ms -> 3.1 ms and a third
//! less throughput for clients that wait for each ack). Without it, a power loss can
//! only make the receiver forget the ids the kernel had not written back yet (seconds:
//! `vm.dirty_expire_centisecs`), so the resend of a frame acked just before the power
//! went is stored again: a duplicate, never a loss. `kill -9` loses nothing of it.
//!
//! The other order (events on disk, the id not: a `kill -9` between the buffers' writes
//! and this log's) would make the unacked frame's resend a duplicate. So each commit is
//! also bracketed here: a *begin* record before any event is written and an *end*
//! record written with the ids; the commit's chunk segments carry the same tag. A
//! restart in the same boot cuts the segments of a commit that began and did not end,
//! and drops its ids (see [`crate::buffer::journal`]).
//!
//! Formats (little endian):
//!
//! ```text
//! header (32): "SPATEIDS" | version u32 = 1 | boot id (16) | crc32 u32 (of all before)
//! record (40): kind u8 (1 id, 2 seal, 3 begin, 4 end) | 0 0 0 | crc32 u32 (of the other 36 bytes) | seq u64 | unix secs u64 | key (16)
//! ```
//!
//! Begin and end records hold the commit's tag (generation, epoch) in `seq` and `secs`.
//!
//! A segment is closed after `seg_limit` ids and deleted once the window evicted every
//! id in it (count or age), so the disk holds about the window and one segment per shard.
//! Memory-only mode (no `deduplicate_path`) runs the same commit steps without files,
//! so an id still only counts once its events are durable.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::buffer::journal::CommitTag;
use crate::buffer::sync::{FollowWork, Follower};

use super::window::{now_secs, Key, Window};

const MAGIC: &[u8; 8] = b"SPATEIDS";
const VERSION: u32 = 1;
pub(crate) const HEADER: usize = 32;
pub(crate) const RECORD: usize = 40;
const KIND_ID: u8 = 1;
const KIND_SEAL: u8 = 2;
const KIND_BEGIN: u8 = 3;
const KIND_END: u8 = 4;
const SUFFIX: &str = ".ids";

fn header(boot: &[u8; 16]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..28].copy_from_slice(boot);
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record(kind: u8, seq: u64, secs: u64, key: &Key) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind;
    r[8..16].copy_from_slice(&seq.to_le_bytes());
    r[16..24].copy_from_slice(&secs.to_le_bytes());
    r[24..40].copy_from_slice(key);
    let crc = record_crc(&r);
    r[4..8].copy_from_slice(&crc.to_le_bytes());
    r
}

fn record_crc(r: &[u8; RECORD]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&r[..4]);
    c.update(&r[8..]);
    c.finalize()
}

/// A segment file and the newest id in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub max_seq: u64,
    pub max_secs: u64,
}

/// What one segment file holds, read back at start.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// `(key, seq, secs)` of the ids that count (see the module doc).
    pub ids: Vec<(Key, u64, u64)>,
    /// Ids past the last seal that count only because the file is from this boot.
    pub unsealed: usize,
    /// Ids that do not count (unsealed, from another boot).
    pub dropped: usize,
    /// Why reading stopped early (damage other than a torn last record), if it did.
    pub damage: Option<String>,
    /// Commits whose end is here, and the range of `ids` each wrote.
    pub finished: Vec<(CommitTag, std::ops::Range<usize>)>,
    /// Commits begun and not ended, in a segment of this boot (their ids are left out).
    pub unfinished: Vec<CommitTag>,
}

/// Reads one segment. `boot`: this boot's id (`None`: unknown, so nothing unsealed counts).
pub(crate) fn read_segment(raw: &[u8], boot: Option<&[u8; 16]>) -> Read {
    let mut out = Read::default();
    let Some(h) = raw.get(..HEADER) else {
        out.damage = (!raw.is_empty()).then(|| "no complete header".to_string());
        return out;
    };
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if &h[..8] != MAGIC || crc32fast::hash(&h[..28]) != crc {
        out.damage = Some("bad header".into());
        return out;
    }
    if u32::from_le_bytes([h[8], h[9], h[10], h[11]]) != VERSION {
        out.damage = Some("unknown version".into());
        return out;
    }
    let same_boot = boot.is_some_and(|b| b[..] == h[12..28]);
    let mut ids = Vec::new();
    let mut sealed = 0;
    let mut pos = HEADER;
    // The commit begun and not yet ended, and where its ids start.
    let mut open: Option<(CommitTag, usize)> = None;
    while let Some(r) = raw.get(pos..pos + RECORD) {
        let mut rec = [0u8; RECORD];
        rec.copy_from_slice(r);
        let crc = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
        if record_crc(&rec) != crc || !(KIND_ID..=KIND_END).contains(&rec[0]) {
            if pos + RECORD < raw.len() {
                out.damage = Some(format!("bad record at offset {pos}"));
            }
            break;
        }
        let seq = u64::from_le_bytes(rec[8..16].try_into().unwrap_or([0; 8]));
        let secs = u64::from_le_bytes(rec[16..24].try_into().unwrap_or([0; 8]));
        match rec[0] {
            KIND_SEAL => sealed = ids.len(),
            KIND_BEGIN => {
                // A begin while another is open: that one never ended (its end write
                // failed and so did taking its begin back).
                if let Some((t, at)) = open.take() {
                    ids.truncate(at);
                    sealed = sealed.min(at);
                    out.unfinished.push(t);
                }
                open = Some(((seq, secs), ids.len()));
            }
            KIND_END => match open.take() {
                Some((t, at)) if t == (seq, secs) => out.finished.push((t, at..ids.len())),
                other => open = other,
            },
            _ => {
                let mut key = [0u8; 16];
                key.copy_from_slice(&rec[24..40]);
                ids.push((key, seq, secs));
            }
        }
        pos += RECORD;
    }
    if let Some((t, at)) = open {
        // Begun, not ended: a crash came between its events and its ids.
        ids.truncate(at);
        sealed = sealed.min(at);
        out.unfinished.push(t);
    }
    if !same_boot {
        // Only the page cache of this boot keeps the order the cut relies on.
        out.unfinished.clear();
    }
    let tail = ids.len() - sealed;
    if same_boot {
        out.unsealed = tail;
    } else {
        out.dropped = tail;
        ids.truncate(sealed);
    }
    out.ids = ids;
    out
}

/// The commits that began and did not end in the segments of `dir` written in this
/// boot (see [`crate::buffer::journal`]). Unreadable files name none.
pub fn unfinished_commits(dir: &Path) -> Vec<CommitTag> {
    let boot = crate::sys::boot_id();
    let Ok(files) = segment_files(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for p in files {
        if let Ok(raw) = std::fs::read(&p) {
            out.extend(read_segment(&raw, boot.as_ref()).unfinished);
        }
    }
    out
}

/// The shard number in a segment's file name (`shard-<N>-<t>.ids`).
pub(crate) fn shard_of(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    name.strip_prefix("shard-")?.split('-').next()?.parse().ok()
}

/// Every segment file in `dir`.
pub(crate) fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(SUFFIX)))
        .collect();
    v.sort();
    Ok(v)
}

/// A frame stored on this shard whose id waits for the group commit.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    key: Key,
    seq: u64,
    secs: u64,
    /// The epoch before its first append: if a commit covering it failed, some of its
    /// events may be missing, so the id is forgotten.
    first: u64,
}

/// This shard's segment files.
#[derive(Debug)]
struct Store {
    dir: PathBuf,
    shard: usize,
    boot: [u8; 16],
    seg_limit: usize,
    /// The segment being appended to.
    current: Option<(Arc<File>, Segment)>,
    len: u64,
    records: usize,
    /// Closed segments (this run's and the previous runs'), oldest first.
    old: VecDeque<Segment>,
    errors: u64,
}

/// One shard's id log: the [`Follower`] the shard's group commit runs after its events.
#[derive(Debug)]
pub struct IdLog {
    window: Arc<Window>,
    waiting: Vec<Waiting>,
    store: Option<Store>,
    id: String,
}

impl IdLog {
    /// A log for `shard` in `dir` (`None`: memory only), taking over `adopted` segments
    /// from previous runs for deletion once the window no longer needs them.
    pub fn new(
        id: &str,
        window: Arc<Window>,
        dir: Option<&Path>,
        shard: usize,
        seg_limit: usize,
        adopted: Vec<Segment>,
    ) -> Self {
        let store = dir.map(|d| Store {
            dir: d.to_path_buf(),
            shard,
            boot: crate::sys::boot_id().unwrap_or([0; 16]),
            seg_limit: seg_limit.max(1),
            current: None,
            len: 0,
            records: 0,
            old: adopted.into(),
            errors: 0,
        });
        IdLog { window, waiting: Vec::new(), store, id: id.to_string() }
    }

    /// A frame with claim `(key, seq)` was appended to a file buffer at epochs from
    /// `first` on: its id becomes durable with the next group commit.
    pub fn push(&mut self, key: Key, seq: u64, first: u64) {
        self.waiting.push(Waiting { key, seq, secs: now_secs(), first });
    }

    /// Ids waiting for a commit (tests).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The blocking part of one commit of the id log.
pub struct Work {
    ids: Vec<(Key, u64)>,
    records: Vec<u8>,
    max_seq: u64,
    max_secs: u64,
    disk: Option<Disk>,
}

struct Disk {
    /// The open segment, or the one to create (`file` None, `header` Some).
    file: Option<Arc<File>>,
    path: PathBuf,
    header: Option<[u8; HEADER]>,
    /// Where this commit's records start.
    offset: u64,
    /// Where the next of them goes (after the begin record, once written).
    at: u64,
    /// The commit's tag, once its begin record is written.
    begun: Option<CommitTag>,
    /// Segments to delete (outside the window).
    delete: Vec<PathBuf>,
    wrote: bool,
    sealed: bool,
    /// The file may hold records that must not count (a failed cut): not used again.
    abandon: bool,
    err: Option<String>,
}

impl Follower for IdLog {
    fn prepare(&mut self, failed_upto: u64) -> Option<Box<dyn FollowWork>> {
        if self.waiting.is_empty() {
            return None;
        }
        let (keep, lost): (Vec<Waiting>, Vec<Waiting>) = self.waiting.drain(..).partition(|w| w.first > failed_upto);
        if !lost.is_empty() {
            // Some of their events were in a commit that failed (not acked either).
            self.window.settle(lost.iter().map(|w| (w.key, w.seq)), false);
        }
        if keep.is_empty() {
            return None;
        }
        let mut records = Vec::new();
        let (mut max_seq, mut max_secs) = (0, 0);
        for w in &keep {
            max_seq = max_seq.max(w.seq);
            max_secs = max_secs.max(w.secs);
        }
        let disk = self.store.as_mut().map(|s| {
            records.reserve(keep.len() * RECORD + RECORD);
            for w in &keep {
                records.extend_from_slice(&record(KIND_ID, w.seq, w.secs, &w.key));
            }
            records.extend_from_slice(&record(KIND_SEAL, max_seq, max_secs, &[0; 16]));
            if s.records >= s.seg_limit {
                if let Some((_, seg)) = s.current.take() {
                    s.old.push_back(seg);
                }
            }
            let now = now_secs();
            let mut delete = Vec::new();
            s.old.retain(|seg| {
                let dead = self.window.outlived(seg.max_seq, seg.max_secs, now);
                if dead {
                    delete.push(seg.path.clone());
                }
                !dead
            });
            match &s.current {
                Some((f, seg)) => Disk {
                    file: Some(f.clone()),
                    path: seg.path.clone(),
                    header: None,
                    offset: s.len,
                    at: s.len,
                    begun: None,
                    delete,
                    wrote: false,
                    sealed: false,
                    abandon: false,
                    err: None,
                },
                None => {
                    let t =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                    Disk {
                        file: None,
                        path: s.dir.join(format!("shard-{}-{t:032x}{SUFFIX}", s.shard)),
                        header: Some(header(&s.boot)),
                        offset: HEADER as u64,
                        at: HEADER as u64,
                        begun: None,
                        delete,
                        wrote: false,
                        sealed: false,
                        abandon: false,
                        err: None,
                    }
                }
            }
        });
        let ids = keep.iter().map(|w| (w.key, w.seq)).collect();
        Some(Box::new(Work { ids, records, max_seq, max_secs, disk }))
    }

    fn finish(&mut self, work: Box<dyn FollowWork>, durable: bool) {
        let Ok(w) = work.into_any().downcast::<Work>() else { return };
        // The events are durable: the ids count from now on, in memory even if the
        // log could not be written (then a resend after a restart is stored again).
        self.window.settle(w.ids.iter().copied(), durable);
        let (Some(s), Some(d)) = (self.store.as_mut(), w.disk) else { return };
        if let Some(e) = &d.err {
            s.errors += 1;
            if s.errors == 1 || s.errors.is_multiple_of(1000) {
                crate::warn!(
                    "{}: deduplicate_path: {e} ({} times so far); the ids of the frames just acked are kept in memory only, so after a restart their resends are stored again",
                    self.id,
                    s.errors
                );
            }
        }
        if d.abandon {
            // Whatever the file holds names only durable events: it stays until the
            // window lets its ids go. New ids go to a new segment.
            let mut seg = match s.current.take() {
                Some((_, cur)) => cur,
                None => Segment { path: d.path.clone(), max_seq: 0, max_secs: 0 },
            };
            seg.max_seq = seg.max_seq.max(w.max_seq);
            seg.max_secs = seg.max_secs.max(w.max_secs);
            if d.file.is_some() {
                s.old.push_back(seg);
            }
            (s.len, s.records) = (0, 0);
            return;
        }
        let Some(f) = d.file else { return };
        if s.current.is_none() {
            s.current = Some((f, Segment { path: d.path, max_seq: 0, max_secs: 0 }));
            s.records = 0;
        }
        if d.sealed {
            s.len = d.at;
            s.records += w.ids.len();
            if let Some((_, cur)) = &mut s.current {
                cur.max_seq = cur.max_seq.max(w.max_seq);
                cur.max_secs = cur.max_secs.max(w.max_secs);
            }
        } else {
            // Cut back (the events are not durable) or never written.
            s.len = d.offset;
        }
    }
}

impl Disk {
    /// The open segment file, created with its header the first time.
    fn file(&mut self) -> std::io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let mut f = OpenOptions::new().write(true).create_new(true).open(&self.path)?;
        f.write_all(self.header.as_ref().map_or(&[][..], |h| &h[..]))?;
        let f = Arc::new(f);
        self.file = Some(f.clone());
        Ok(f)
    }
}

impl FollowWork for Work {
    fn journals(&self) -> bool {
        self.disk.is_some()
    }

    fn begin(&mut self, tag: CommitTag) {
        let Some(d) = self.disk.as_mut() else { return };
        let r = d.file().and_then(|f| f.write_all_at(&record(KIND_BEGIN, tag.0, tag.1, &[0; 16]), d.offset));
        match r {
            Ok(()) => {
                d.begun = Some(tag);
                d.at = d.offset + RECORD as u64;
            }
            Err(e) => {
                // Without its begin the commit is not journaled: a crash before its
                // ids makes a resend a duplicate, as without the journal.
                d.err = Some(format!("writing {}: {e}", d.path.display()));
                cut(d);
            }
        }
    }

    fn write(&mut self, written: bool) {
        let Some(d) = self.disk.as_mut() else { return };
        if !written || d.abandon {
            return;
        }
        // The ids and the end record in one write; the seal waits for the events'
        // fdatasync.
        let ids = self.records.len() - RECORD;
        let mut buf = Vec::with_capacity(ids + RECORD);
        buf.extend_from_slice(&self.records[..ids]);
        if let Some(tag) = d.begun {
            buf.extend_from_slice(&record(KIND_END, tag.0, tag.1, &[0; 16]));
        }
        let r = d.file().and_then(|f| f.write_all_at(&buf, d.at));
        match r {
            Ok(()) => {
                d.wrote = true;
                d.at += buf.len() as u64;
            }
            Err(e) => {
                d.err = Some(format!("writing {}: {e}", d.path.display()));
                cut(d);
            }
        }
    }

    fn seal(&mut self, durable: bool) {
        let Some(d) = self.disk.as_mut() else { return };
        if (d.wrote || d.begun.is_some()) && !durable {
            // The events are not durable: take the ids back.
            cut(d);
        } else if d.wrote {
            // No fsync of its own (see the module doc): the seal follows the events'
            // fdatasync, so whenever writeback stores it, the events are on disk.
            let ids = self.records.len() - RECORD;
            let r = d
                .file
                .as_ref()
                .ok_or_else(|| std::io::Error::other("no file"))
                .and_then(|f| f.write_all_at(&self.records[ids..], d.at));
            match r {
                Ok(()) => {
                    d.sealed = true;
                    d.at += RECORD as u64;
                }
                // The ids name durable events, so they may stay (unsealed, they count
                // in this boot only), but nothing is appended after a failed write.
                Err(e) => {
                    d.err = Some(format!("writing {}: {e}", d.path.display()));
                    d.abandon = true;
                }
            }
        }
        for p in d.delete.drain(..) {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    d.err.get_or_insert_with(|| format!("deleting {}: {e}", p.display()));
                }
            }
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// Takes back what this commit wrote to the segment: cut the file where the commit
/// began and make the cut durable, so neither a restart nor writeback after a power
/// loss can bring those ids back; the segment is not appended to again (its sealed
/// ids still count). If the cut fails, the segment is deleted (its ids are forgotten:
/// duplicates at worst). If even that fails, the error is reported and the file is
/// left; a restart in this boot would trust its tail, so the log line says so.
fn cut(d: &mut Disk) {
    d.abandon = true;
    d.wrote = false;
    d.begun = None;
    let Some(f) = &d.file else { return };
    if f.set_len(d.offset).and_then(|()| f.sync_data()).is_ok() {
        return;
    }
    if std::fs::remove_file(&d.path).is_ok() {
        d.file = None;
        return;
    }
    d.err = Some(format!(
        "cannot take back ids whose events were not stored from {}; delete that file before restarting spate",
        d.path.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Key {
        [i; 16]
    }

    #[test]
    fn sealed_ids_count_after_a_reboot_unsealed_only_in_the_same_boot() {
        let boot = [7u8; 16];
        let mut raw = header(&boot).to_vec();
        raw.extend_from_slice(&record(KIND_ID, 1, 100, &key(1)));
        raw.extend_from_slice(&record(KIND_ID, 2, 100, &key(2)));
        raw.extend_from_slice(&record(KIND_SEAL, 2, 100, &[0; 16]));
        raw.extend_from_slice(&record(KIND_ID, 3, 101, &key(3)));
        let same = read_segment(&raw, Some(&boot));
        assert_eq!(same.ids.len(), 3);
        assert_eq!((same.unsealed, same.dropped), (1, 0));
        let other = read_segment(&raw, Some(&[8u8; 16]));
        assert_eq!(other.ids, vec![(key(1), 1, 100), (key(2), 2, 100)]);
        assert_eq!(other.dropped, 1);
        assert_eq!(read_segment(&raw, None).ids.len(), 2, "an unknown boot trusts only seals");
        // A torn last record is just the end; damage before the end is reported.
        let torn = &raw[..raw.len() - 5];
        let r = read_segment(torn, Some(&boot));
        assert_eq!((r.ids.len(), r.damage.is_none()), (2, true));
        let mut bad = raw.clone();
        bad[HEADER + 10] ^= 1;
        let r = read_segment(&bad, Some(&boot));
        assert!(r.ids.is_empty() && r.damage.is_some());
        assert!(read_segment(b"junk", Some(&boot)).damage.is_some());
    }

    #[test]
    fn a_commit_begun_and_not_ended_is_named_and_its_ids_left_out() {
        let boot = [7u8; 16];
        let (a, b) = ((5u64 << 32, 10u64), (5u64 << 32, 11u64));
        let mut raw = header(&boot).to_vec();
        raw.extend_from_slice(&record(KIND_ID, 1, 100, &key(1))); // before journaling
        raw.extend_from_slice(&record(KIND_BEGIN, a.0, a.1, &[0; 16]));
        raw.extend_from_slice(&record(KIND_ID, 2, 100, &key(2)));
        raw.extend_from_slice(&record(KIND_END, a.0, a.1, &[0; 16]));
        raw.extend_from_slice(&record(KIND_SEAL, 2, 100, &[0; 16]));
        let whole = raw.len();
        raw.extend_from_slice(&record(KIND_BEGIN, b.0, b.1, &[0; 16]));
        raw.extend_from_slice(&record(KIND_ID, 3, 101, &key(3))); // killed before its end
        let r = read_segment(&raw, Some(&boot));
        assert_eq!(r.ids.iter().map(|i| i.1).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(r.finished, vec![(a, 1..2)]);
        assert_eq!(r.unfinished, vec![b], "same boot: the interrupted commit is named for the cut");
        let other = read_segment(&raw, Some(&[8u8; 16]));
        assert!(other.unfinished.is_empty(), "after a reboot nothing is cut (the log was not fsynced)");
        assert_eq!(other.ids.len(), 2);
        // A finished commit is not named; a torn end record is no end.
        assert!(read_segment(&raw[..whole], Some(&boot)).unfinished.is_empty());
        let mut torn = raw[..whole - RECORD].to_vec(); // without the seal
        torn.truncate(torn.len() - 3); // the end record torn
        let r = read_segment(&torn, Some(&boot));
        assert_eq!((r.unfinished.clone(), r.ids.len()), (vec![a], 1));
    }

    #[test]
    fn file_names_carry_the_shard() {
        assert_eq!(shard_of(Path::new("/x/shard-3-00ff.ids")), Some(3));
        assert_eq!(shard_of(Path::new("/x/other.ids")), None);
    }
}
