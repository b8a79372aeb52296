//! The on-disk chunk format of the file buffer, both directions: writing (the blocking
//! write + fdatasync jobs of the shard's group commit) and reading (recovery on start,
//! loading a chunk for sending).
//!
//! A chunk file is a header, then segments, one per group commit that had entries for
//! the chunk:
//!
//! ```text
//! header:  "SPATECK2" | id (16) | timekey i64 LE (i64::MIN: none) | tag_len u16 LE | tag | vars_len u16 LE | vars | crc32 u32 LE (of all before)
//! segment: "SEG1" | len u32 LE | count u32 LE | crc32 u32 LE (of len, count, data) | data (packed [time, record] entries)
//!      or: "SEG2" | len u32 LE | count u32 LE | crc32 u32 LE (of len, count, tag, data) | tag: generation u64 LE, epoch u64 LE | data
//! ```
//!
//! `SEG2` is written by a commit that in_forward's `deduplicate` journals (see
//! [`super::journal`]): a restart cuts the segments of a commit that a `kill -9`
//! interrupted after its events and before its frame ids were written.
//!
//! A torn write (kill -9 or power loss during a commit) leaves a short or corrupt last
//! segment: recovery cuts the file at the last good segment and says so in the log.
//! Events in a cut segment were never acked: in_forward acks only after the commit that
//! wrote them returned.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::chunk::{recovered_chunk, Chunk, ChunkDisk};
use super::journal::CommitTag;
use super::sync::CommitWork;
use std::collections::HashSet;

pub(crate) const MAGIC: &[u8; 8] = b"SPATECK2";
const SEG_MAGIC: &[u8; 4] = b"SEG1";
const SEG2_MAGIC: &[u8; 4] = b"SEG2";
pub(crate) const SEG_HEADER: usize = 16;
/// A `SEG2` header: [`SEG_HEADER`] and the commit tag.
pub(crate) const SEG2_HEADER: usize = 32;
pub(crate) const SUFFIX: &str = ".chunk";
/// A segment longer than this is corrupt whatever its checksum says.
const MAX_SEGMENT: u32 = 1 << 30;

pub(crate) fn header_bytes(id: &[u8; 16], tag: &[u8], timekey: Option<i64>, vars: &[u8]) -> Vec<u8> {
    let tag = &tag[..tag.len().min(u16::MAX as usize)];
    let vars = &vars[..vars.len().min(u16::MAX as usize)];
    let mut h = Vec::with_capacity(42 + tag.len() + vars.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(id);
    h.extend_from_slice(&timekey.unwrap_or(i64::MIN).to_le_bytes());
    h.extend_from_slice(&(tag.len() as u16).to_le_bytes());
    h.extend_from_slice(tag);
    h.extend_from_slice(&(vars.len() as u16).to_le_bytes());
    h.extend_from_slice(vars);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

pub(crate) fn segment_header(data: &[u8], count: u32) -> [u8; SEG_HEADER] {
    let mut h = [0u8; SEG_HEADER];
    h[..4].copy_from_slice(SEG_MAGIC);
    h[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&count.to_le_bytes());
    let mut c = crc32fast::Hasher::new();
    c.update(&h[4..12]);
    c.update(data);
    h[12..16].copy_from_slice(&c.finalize().to_le_bytes());
    h
}

/// A segment header with its commit tag (`SEG2`).
pub(crate) fn segment_header_tagged(data: &[u8], count: u32, tag: CommitTag) -> [u8; SEG2_HEADER] {
    let mut h = [0u8; SEG2_HEADER];
    h[..4].copy_from_slice(SEG2_MAGIC);
    h[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&count.to_le_bytes());
    h[16..24].copy_from_slice(&tag.0.to_le_bytes());
    h[24..32].copy_from_slice(&tag.1.to_le_bytes());
    let mut c = crc32fast::Hasher::new();
    c.update(&h[4..12]);
    c.update(&h[16..32]);
    c.update(data);
    h[12..16].copy_from_slice(&c.finalize().to_le_bytes());
    h
}

/// What a segment header says: (header length, data length, count, crc, tag, the
/// header bytes the crc covers besides the data). `None`: not a segment marker.
fn parse_segment_header(h: &[u8; SEG2_HEADER], have: usize) -> Option<SegHead> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    let (hlen, tag) = match &h[..4] {
        m if m == SEG_MAGIC => (SEG_HEADER, None),
        m if m == SEG2_MAGIC && have >= SEG2_HEADER => (SEG2_HEADER, Some((u64_at(16), u64_at(24)))),
        _ => return None,
    };
    Some(SegHead { hlen, len: u32_at(4), count: u32_at(8), crc: u32_at(12), tag })
}

struct SegHead {
    hlen: usize,
    len: u32,
    count: u32,
    crc: u32,
    tag: Option<CommitTag>,
}

impl SegHead {
    /// A crc over the header fields it covers; the data is added by the caller.
    fn hasher(&self, h: &[u8; SEG2_HEADER]) -> crc32fast::Hasher {
        let mut c = crc32fast::Hasher::new();
        c.update(&h[4..12]);
        if self.hlen == SEG2_HEADER {
            c.update(&h[16..32]);
        }
        c
    }
}

/// Reads a chunk file: header, then segments until the end or the first bad one, which
/// is cut off (logged). `Ok(None)`: nothing recoverable in it (deleted).
pub(crate) fn recover(p: &Path) -> Result<Option<Chunk>, String> {
    recover_cutting(p, super::journal::cuts())
}

/// [`recover`], also cutting a tail of segments written by the interrupted commits
/// `cuts` (see [`super::journal`]).
pub(crate) fn recover_cutting(p: &Path, cuts: &HashSet<CommitTag>) -> Result<Option<Chunk>, String> {
    let mut f = OpenOptions::new().read(true).write(true).open(p).map_err(|e| e.to_string())?;
    let file_len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 34];
    if f.read_exact(&mut head).is_err() {
        // Killed before its first commit finished: nothing in it was acked.
        crate::warn!("file buffer: chunk {} has no complete header ({file_len} bytes); deleted", p.display());
        let _ = std::fs::remove_file(p);
        return Ok(None);
    }
    if &head[..8] != MAGIC {
        return Err("not a spate chunk file (bad magic)".into());
    }
    let tag_len = u16::from_le_bytes([head[32], head[33]]) as usize;
    let torn = || {
        crate::warn!("file buffer: chunk {} has a torn header; deleted", p.display());
        let _ = std::fs::remove_file(p);
        Ok(None)
    };
    let mut tag_and_len = vec![0u8; tag_len + 2];
    if f.read_exact(&mut tag_and_len).is_err() {
        return torn();
    }
    let vars_len = u16::from_le_bytes([tag_and_len[tag_len], tag_and_len[tag_len + 1]]) as usize;
    let mut vars_and_crc = vec![0u8; vars_len + 4];
    if f.read_exact(&mut vars_and_crc).is_err() {
        return torn();
    }
    let mut all = head.to_vec();
    all.extend_from_slice(&tag_and_len);
    all.extend_from_slice(&vars_and_crc[..vars_len]);
    let crc = u32::from_le_bytes(vars_and_crc[vars_len..].try_into().unwrap_or([0; 4]));
    if crc32fast::hash(&all) != crc {
        return Err("header checksum mismatch".into());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&head[8..24]);
    let tk = i64::from_le_bytes(head[24..32].try_into().unwrap_or([0; 8]));
    let timekey = (tk != i64::MIN).then_some(tk);
    let tag = Bytes::copy_from_slice(&tag_and_len[..tag_len]);
    let vars = Bytes::copy_from_slice(&vars_and_crc[..vars_len]);
    let header_len = (34 + tag_len + 2 + vars_len + 4) as u64;

    let mut pos = header_len;
    let (mut count, mut size) = (0u32, 0usize);
    let mut buf = vec![0u8; 64 << 10];
    // Where a run of segments of interrupted commits began, and the counts before it.
    let mut interrupted: Option<(u64, u32, usize)> = None;
    let cut_reason = loop {
        if pos == file_len {
            break None;
        }
        let mut sh = [0u8; SEG2_HEADER];
        if f.read_exact(&mut sh[..SEG_HEADER]).is_err() {
            break Some(format!("incomplete segment header at offset {pos}"));
        }
        let mut have = SEG_HEADER;
        if &sh[..4] == SEG2_MAGIC {
            if f.read_exact(&mut sh[SEG_HEADER..]).is_err() {
                break Some(format!("incomplete segment header at offset {pos}"));
            }
            have = SEG2_HEADER;
        }
        let Some(head) = parse_segment_header(&sh, have) else {
            break Some(format!("bad segment marker at offset {pos}"));
        };
        let (len, n, want) = (head.len, head.count, head.crc);
        if len > MAX_SEGMENT || pos + head.hlen as u64 + len as u64 > file_len {
            break Some(format!("segment at offset {pos} declares {len} bytes past the end of the file"));
        }
        let mut c = head.hasher(&sh);
        let mut left = len as usize;
        let mut ok = true;
        while left > 0 {
            let k = left.min(buf.len());
            if f.read_exact(&mut buf[..k]).is_err() {
                ok = false;
                break;
            }
            c.update(&buf[..k]);
            left -= k;
        }
        if !ok || c.finalize() != want {
            break Some(format!("segment checksum mismatch at offset {pos}"));
        }
        // Only a tail of them is cut: a commit interrupted by the crash is the last
        // one, so its segments end their files. One followed by segments of other
        // commits is left (a duplicate at worst, never a loss).
        if head.tag.is_some_and(|t| cuts.contains(&t)) {
            interrupted.get_or_insert((pos, count, size));
        } else {
            interrupted = None;
        }
        count = count.saturating_add(n);
        size += len as usize;
        pos += head.hlen as u64 + len as u64;
    };
    if let Some(reason) = cut_reason {
        crate::warn!(
            "file buffer: chunk {}: {reason}; cutting the file from {} to {pos} bytes ({} bytes of a torn write; those events were never acked)",
            p.display(),
            file_len,
            file_len - pos
        );
        f.set_len(pos).map_err(|e| format!("cannot cut the torn tail: {e}"))?;
        let _ = f.sync_data();
    }
    if let Some((at, c0, s0)) = interrupted {
        crate::warn!(
            "file buffer: chunk {}: cutting {} events ({} bytes) written by a group commit that a crash interrupted before it recorded their frames' ids (never acked: their senders resend them; deduplicate)",
            p.display(),
            count - c0,
            pos - at
        );
        f.set_len(at).map_err(|e| format!("cannot cut an interrupted commit's segments: {e}"))?;
        let _ = f.sync_data();
        (pos, count, size) = (at, c0, s0);
    }
    if count == 0 {
        let _ = std::fs::remove_file(p);
        super::progress::remove(p);
        return Ok(None);
    }
    let _ = f.seek(SeekFrom::Start(0));
    let disk = ChunkDisk { path: p.to_path_buf(), file: Some(Arc::new(f)), len: pos, pending_count: 0, syncing: false };
    let mut c = recovered_chunk(id, tag, timekey, count, size, disk);
    c.vars = vars;
    let acked = super::progress::read(p, size, count);
    if acked.bytes > 0 {
        crate::info!(
            "file buffer: chunk {}: {} of its {count} events were acknowledged downstream before the restart; sending the rest",
            p.display(),
            acked.events
        );
        c.record_acked(acked);
    }
    Ok(Some(c))
}

/// Reads a durable chunk's entries (segments joined, checksums verified). Runs on the
/// blocking pool: a chunk can be large.
pub fn load_blocking(path: &Path, file: Option<&Arc<File>>, len: u64) -> Result<Vec<u8>, String> {
    let owned;
    let f = match file {
        Some(f) => &**f,
        None => {
            owned = File::open(path).map_err(|e| e.to_string())?;
            &owned
        }
    };
    let mut raw = vec![0u8; len as usize];
    f.read_exact_at(&mut raw, 0).map_err(|e| format!("{}: {e}", path.display()))?;
    if raw.len() < 34 {
        return Err(format!("{}: truncated header", path.display()));
    }
    let tag_len = u16::from_le_bytes([raw[32], raw[33]]) as usize;
    let vl = raw.get(34 + tag_len..36 + tag_len).ok_or_else(|| format!("{}: truncated header", path.display()))?;
    let vars_len = u16::from_le_bytes([vl[0], vl[1]]) as usize;
    let mut pos = 34 + tag_len + 2 + vars_len + 4;
    let mut out = Vec::with_capacity(raw.len().saturating_sub(pos));
    while pos < raw.len() {
        let short = || format!("{}: short segment", path.display());
        let mut sh = [0u8; SEG2_HEADER];
        let have = (raw.len() - pos).min(SEG2_HEADER);
        sh[..have].copy_from_slice(&raw[pos..pos + have]);
        if have < SEG_HEADER {
            return Err(short());
        }
        let head = parse_segment_header(&sh, have)
            .ok_or_else(|| format!("{}: bad segment marker at offset {pos}", path.display()))?;
        let n = head.len as usize;
        let data = raw
            .get(pos + head.hlen..pos + head.hlen + n)
            .ok_or_else(|| format!("{}: segment past the end", path.display()))?;
        let mut c = head.hasher(&sh);
        c.update(data);
        if c.finalize() != head.crc {
            return Err(format!("{}: segment checksum mismatch at offset {pos}", path.display()));
        }
        out.extend_from_slice(data);
        pos += head.hlen + n;
    }
    Ok(out)
}

/// Loads a taken file chunk's entries into `chunk.data`.
pub async fn load(chunk: &mut Chunk) -> Result<(), String> {
    let Some(d) = &chunk.disk else { return Ok(()) };
    if !chunk.data.is_empty() {
        return Ok(());
    }
    let (path, file, len) = (d.path.clone(), d.file.clone(), d.len);
    let data = glommio::executor().spawn_blocking(move || load_blocking(&path, file.as_ref(), len)).await?;
    chunk.data = data;
    Ok(())
}

/// One chunk's share of a group commit.
pub(crate) struct Job {
    pub id: [u8; 16],
    path: PathBuf,
    file: Option<Arc<File>>,
    header: Option<Vec<u8>>,
    offset: u64,
    data: Vec<u8>,
    pub count: u32,
    /// The commit's tag when it is journaled (`SEG2`).
    tag: Option<CommitTag>,
}

/// What a job did.
pub(crate) struct Done {
    pub id: [u8; 16],
    pub path: PathBuf,
    pub file: Option<Arc<File>>,
    /// Where the job's segment starts (the file is cut back here if it fails).
    pub start: u64,
    pub len: u64,
    pub count: u32,
    pub bytes: usize,
    pub err: Option<String>,
    pub created: bool,
}

/// Takes a chunk's unwritten entries for a commit (marks the chunk as syncing).
pub(crate) fn job_for(c: &mut Chunk, tag: Option<CommitTag>) -> Option<Job> {
    let d = c.disk.as_mut()?;
    if d.syncing || c.data.is_empty() {
        return None;
    }
    d.syncing = true;
    let header = d.file.is_none().then(|| header_bytes(&c.id, &c.tag, c.timekey, &c.vars));
    let count = std::mem::take(&mut d.pending_count);
    Some(Job {
        id: c.id,
        path: d.path.clone(),
        file: d.file.clone(),
        header,
        offset: d.len,
        data: std::mem::take(&mut c.data),
        count,
        tag,
    })
}

/// Applies a job's outcome to its chunk. Returns false if the chunk is gone.
pub(crate) fn apply(c: &mut Chunk, done: &Done) {
    let Some(d) = c.disk.as_mut() else { return };
    d.syncing = false;
    if done.err.is_none() {
        d.file = done.file.clone();
        d.len = done.len;
    } else {
        if done.file.is_some() && d.file.is_none() {
            d.file = done.file.clone();
            d.len = done.len;
        }
        c.count = c.count.saturating_sub(done.count);
        c.size = c.size.saturating_sub(done.bytes);
    }
}

/// One buffer's share of a group commit: its jobs, then what they did.
pub(crate) struct Jobs {
    pub jobs: Vec<Job>,
    pub done: Vec<Done>,
    /// Directories that got a new file (synced with the files).
    pub dirs: Vec<PathBuf>,
}

impl Jobs {
    pub(crate) fn new(jobs: Vec<Job>) -> Self {
        Jobs { jobs, done: Vec::new(), dirs: Vec::new() }
    }
}

impl CommitWork for Jobs {
    fn write(&mut self) {
        self.done = write_jobs(std::mem::take(&mut self.jobs), &mut self.dirs);
    }

    fn sync(&mut self) {
        sync_jobs(&mut self.done, &self.dirs);
    }

    fn written(&self) -> (u64, u64, u64) {
        let bytes = self.done.iter().map(|d| d.bytes as u64).sum();
        let failures = self.done.iter().filter(|d| d.err.is_some()).count() as u64;
        (self.done.len() as u64, bytes, failures)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// Runs a group commit's jobs: [`write_jobs`], then [`sync_jobs`]. Blocking.
#[cfg(test)]
pub(crate) fn run_jobs(jobs: Vec<Job>) -> Vec<Done> {
    let mut dirs = Vec::new();
    let mut done = write_jobs(jobs, &mut dirs);
    sync_jobs(&mut done, &dirs);
    done
}

/// The first half of a commit: writes every job's segment (creating new chunk files
/// with their header) into the page cache. Nothing is synced yet: the shard's group
/// commit writes every buffer's segments first and syncs them after (see
/// [`super::sync`]), so what must follow the events (in_forward's ids of acked frames)
/// can be written between the two. Blocking: runs on glommio's blocking pool.
pub(crate) fn write_jobs(jobs: Vec<Job>, dirs: &mut Vec<PathBuf>) -> Vec<Done> {
    let mut done = Vec::with_capacity(jobs.len());
    for j in jobs {
        let bytes = j.data.len();
        let mut created = false;
        let mut file = j.file.clone();
        let mut offset = j.offset;
        let r = (|| -> std::io::Result<usize> {
            if file.is_none() {
                let mut f = OpenOptions::new().write(true).read(true).create_new(true).open(&j.path)?;
                let h = j.header.as_deref().unwrap_or(&[]);
                f.write_all(h)?;
                offset = h.len() as u64;
                file = Some(Arc::new(f));
                created = true;
                if let Some(parent) = j.path.parent() {
                    if !dirs.iter().any(|d| d == parent) {
                        dirs.push(parent.to_path_buf());
                    }
                }
            }
            let f = file.as_ref().ok_or_else(|| std::io::Error::other("no file"))?;
            let hlen = match j.tag {
                Some(tag) => {
                    f.write_all_at(&segment_header_tagged(&j.data, j.count, tag), offset)?;
                    SEG2_HEADER
                }
                None => {
                    f.write_all_at(&segment_header(&j.data, j.count), offset)?;
                    SEG_HEADER
                }
            };
            f.write_all_at(&j.data, offset + hlen as u64)?;
            Ok(hlen)
        })();
        let (len, err) = match r {
            Ok(hlen) => (offset + (hlen + bytes) as u64, None),
            Err(e) => {
                // Cut whatever part of the segment made it, so the file stays valid.
                if let Some(f) = &file {
                    let _ = f.set_len(offset);
                }
                (offset, Some(format!("{}: {e}", j.path.display())))
            }
        };
        done.push(Done { id: j.id, path: j.path, file, start: offset, len, count: j.count, bytes, err, created });
    }
    done
}

/// The second half: one fdatasync per file written, then one fsync per directory that
/// got a new file. A file whose sync fails is cut back to before its segment (its
/// events are not acked). Blocking.
pub(crate) fn sync_jobs(done: &mut [Done], dirs: &[PathBuf]) {
    for d in done.iter_mut().filter(|d| d.err.is_none()) {
        let Some(f) = &d.file else { continue };
        if let Err(e) = f.sync_data() {
            let _ = f.set_len(d.start);
            d.len = d.start;
            d.err = Some(format!("{}: {e}", d.path.display()));
        }
    }
    for d in dirs {
        // A new file's name is durable only once its directory is synced.
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}
