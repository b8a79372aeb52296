//! A buffer chunk: packed `[time, record]` entries of one chunk key (tag, time slice,
//! record-field values), with its counters and, for a file buffer, the state of its
//! chunk file ([`ChunkDisk`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::progress::Progress;

/// A chunk of packed `[time, record]` entries of one tag (and time slice).
#[derive(Debug)]
pub struct Chunk {
    pub id: [u8; 16],
    pub tag: Bytes,
    /// Start of the chunk's time slice when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// Values of the record-field chunk keys, each as u32 LE length + text (see
    /// [`Chunk::var`]).
    pub vars: Bytes,
    /// Memory buffer: all entries. File buffer: entries not yet written to the file
    /// (after [`super::chunk_file::load`], all entries).
    pub data: Vec<u8>,
    pub count: u32,
    /// Entry bytes in the chunk (in memory and on disk).
    pub size: usize,
    pub created: Instant,
    /// Failed send attempts so far.
    pub retries: u32,
    pub first_failure: Option<Instant>,
    /// `data` holds only the entries still to write (a writer confirmed the others);
    /// a file chunk keeps them in memory instead of reloading the whole file.
    pub partial: bool,
    pub(crate) disk: Option<ChunkDisk>,
    /// What the destination acknowledged of `data` so far (see [`super::progress`]).
    acked: std::cell::Cell<Progress>,
}

impl Chunk {
    pub(crate) fn new(id: [u8; 16], tag: Bytes, timekey: Option<i64>, cap: usize) -> Self {
        Chunk {
            id,
            tag,
            timekey,
            vars: Bytes::new(),
            data: Vec::with_capacity(cap),
            count: 0,
            size: 0,
            created: Instant::now(),
            retries: 0,
            first_failure: None,
            partial: false,
            disk: None,
            acked: std::cell::Cell::new(Progress::default()),
        }
    }

    /// Entries (bytes from the start of `data`) and events the destination already
    /// acknowledged: a send resumes after them.
    pub fn acked(&self) -> Progress {
        self.acked.get()
    }

    /// Records that the destination acknowledged everything up to `p`; for a file
    /// chunk also in its side file, so a restart resumes there too.
    pub fn record_acked(&self, p: Progress) {
        self.acked.set(p);
        if let Some(d) = &self.disk {
            if d.file.is_some() {
                if let Err(e) = super::progress::write(&d.path, p) {
                    crate::warn!(
                        "file buffer: cannot record delivery progress of {}: {e} (after a restart the whole chunk is resent)",
                        d.path.display()
                    );
                }
            }
        }
    }

    /// Whether every entry is in `data` or durable on disk (nothing in flight).
    pub(crate) fn ready(&self) -> bool {
        self.disk.as_ref().is_none_or(|d| !d.syncing && self.data.is_empty())
    }

    /// The value of record-field chunk key number `i` (in `<buffer>` order), as text.
    pub fn var(&self, i: usize) -> Option<&[u8]> {
        let mut rest = &self.vars[..];
        let mut k = 0;
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let v = rest.get(4..4 + n)?;
            if k == i {
                return Some(v);
            }
            rest = &rest[4 + n..];
            k += 1;
        }
        None
    }

    /// Whether the chunk lives in a file (its entries must be loaded before sending).
    pub fn on_disk(&self) -> bool {
        self.disk.is_some()
    }
}

/// A chunk's file (created by its first group commit).
#[derive(Debug)]
pub struct ChunkDisk {
    pub path: PathBuf,
    pub(crate) file: Option<Arc<File>>,
    /// Durable length of the file (header and good segments).
    pub(crate) len: u64,
    /// Events in the chunk's `data` not yet written.
    pub(crate) pending_count: u32,
    /// A commit is writing this chunk's tail right now.
    pub(crate) syncing: bool,
}

impl ChunkDisk {
    /// Deletes the chunk file (delivered, dropped, or given up).
    pub(crate) fn remove(self) {
        if self.file.is_some() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                crate::warn!("file buffer: cannot delete delivered chunk {}: {e}", self.path.display());
            }
            super::progress::remove(&self.path);
        }
    }
}

/// A chunk read back from its file on start.
pub(crate) fn recovered_chunk(
    id: [u8; 16],
    tag: Bytes,
    timekey: Option<i64>,
    count: u32,
    size: usize,
    disk: ChunkDisk,
) -> Chunk {
    let mut c = Chunk::new(id, tag, timekey, 0);
    c.count = count;
    c.size = size;
    c.disk = Some(disk);
    c
}
