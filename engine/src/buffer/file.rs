//! The file buffer's disk side: one file per chunk under `<path>/shard-<N>/`, its
//! format, recovery on start, loading a chunk for sending, and the blocking write +
//! fdatasync jobs the shard's group commit ([`super::sync`]) runs off the shard thread.
//!
//! A chunk file is a header, then segments, one per group commit that had entries for
//! the chunk:
//!
//! ```text
//! header:  "SPATECK2" | id (16) | timekey i64 LE (i64::MIN: none) | tag_len u16 LE | tag | vars_len u16 LE | vars | crc32 u32 LE (of all before)
//! segment: "SEG1" | len u32 LE | count u32 LE | crc32 u32 LE (of len, count, data) | data (packed [time, record] entries)
//! ```
//!
//! A torn write (kill -9 or power loss during a commit) leaves a short or corrupt last
//! segment: recovery cuts the file at the last good segment and says so in the log.
//! Events in a cut segment were never acked: in_forward acks only after the commit that
//! wrote them returned.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::memory::{recovered_chunk, Chunk};
use super::sync::Syncer;

const MAGIC: &[u8; 8] = b"SPATECK2";
const SEG_MAGIC: &[u8; 4] = b"SEG1";
const SEG_HEADER: usize = 16;
const SUFFIX: &str = ".chunk";
/// A segment longer than this is corrupt whatever its checksum says.
const MAX_SEGMENT: u32 = 1 << 30;

/// The file store of one buffer on one shard.
pub struct FileStore {
    /// This shard's chunk directory.
    pub dir: PathBuf,
    pub(crate) syncer: Rc<Syncer>,
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

use spate_protocol::hex;

fn header_bytes(id: &[u8; 16], tag: &[u8], timekey: Option<i64>, vars: &[u8]) -> Vec<u8> {
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

fn segment_header(data: &[u8], count: u32) -> [u8; SEG_HEADER] {
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

impl FileStore {
    /// Opens (creating) `<path>/shard-<shard>` and recovers every chunk a previous run
    /// left under `<path>/shard-<M>` with `M % workers == shard` (so a changed worker
    /// count still recovers everything exactly once). Returns the recovered chunks in
    /// creation order.
    pub fn open(
        path: &Path,
        shard: u32,
        workers: u32,
        syncer: Rc<Syncer>,
    ) -> Result<(FileStore, Vec<Chunk>), super::BufferError> {
        let io = |p: &Path, e: std::io::Error| super::BufferError::Io {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let conf_path = path;
        let owned = spate_dir(path);
        let path = owned.as_path();
        let dir = path.join(format!("shard-{shard}"));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        if shard == 0 {
            import_fluentd(conf_path, &dir);
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|e| io(path, e))?;
        for d in entries.flatten() {
            let name = d.file_name();
            let Some(n) = name.to_str().and_then(|s| s.strip_prefix("shard-")).and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if n % workers.max(1) != shard {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(d.path()) else { continue };
            for f in rd.flatten() {
                let p = f.path();
                if p.to_str().is_some_and(|s| s.ends_with(SUFFIX)) {
                    files.push(p);
                } else if p.extension().is_some_and(|e| e == "acked") && !p.with_extension("chunk").exists() {
                    // The progress of a chunk deleted just before a crash.
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        // Ids start with the creation time: name order is creation order.
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut chunks = Vec::new();
        let (mut events, mut bytes) = (0u64, 0u64);
        for p in files {
            match recover(&p) {
                Ok(Some(c)) => {
                    events += c.count as u64;
                    bytes += c.size as u64;
                    chunks.push(c);
                }
                Ok(None) => {}
                Err(reason) => {
                    let aside = p.with_extension("corrupt");
                    let _ = std::fs::rename(&p, &aside);
                    crate::error!(
                        "file buffer: chunk {} cannot be recovered ({reason}); moved aside to {}",
                        p.display(),
                        aside.display()
                    );
                }
            }
        }
        if !chunks.is_empty() {
            crate::info!(
                "file buffer {}: recovered {} chunks ({events} events, {bytes} bytes) left by a previous run; flushing them first",
                path.display(),
                chunks.len()
            );
        }
        Ok((FileStore { dir, syncer }, chunks))
    }

    /// Disk state for a new chunk (the file is created by its first commit).
    pub(crate) fn new_chunk(&self, id: &[u8; 16]) -> ChunkDisk {
        ChunkDisk {
            path: self.dir.join(format!("{}{SUFFIX}", hex(id))),
            file: None,
            len: 0,
            pending_count: 0,
            syncing: false,
        }
    }
}

/// spate's chunk directory for a configured `path`: the path itself, or for a fluentd
/// file pattern (`/dir/name.*.log`) a directory beside it (`/dir/name.spate.log`).
pub fn spate_dir(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    if s.contains('*') {
        PathBuf::from(s.replace('*', "spate"))
    } else {
        path.to_path_buf()
    }
}

/// Where fluentd's file buffer keeps chunks for a configured `path` (buf_file.rb):
/// `path/buffer.*.log` and `path/worker<N>/buffer.*.log` for a directory, else the
/// pattern itself (`.*` completed with `.log`).
fn fluentd_patterns(path: &Path) -> Vec<String> {
    let s = path.to_string_lossy().to_string();
    if !s.contains(".*") {
        return vec![format!("{s}/buffer.*.log"), format!("{s}/worker*/buffer.*.log"), format!("{s}.*.log")];
    }
    let base = path.file_name().map(|b| b.to_string_lossy().to_string()).unwrap_or_default();
    if base.contains(".*.") {
        vec![s]
    } else if base.ends_with(".*") {
        vec![format!("{s}.log")]
    } else {
        vec![format!("{s}.*.log")]
    }
}

/// Takes over chunks a Ruby fluentd left in its file buffer at the same `path` (when
/// spate replaces fluentd), so events fluentd acked are not stranded: each
/// `*.b<id>.log`/`*.q<id>.log` with its `.meta` whose data is a msgpack stream of
/// `[time, record]` entries (out_forward's chunk format) becomes a spate chunk; the
/// fluentd files are removed once the copy is durable. Chunks in other formats (an
/// out_file buffer holds formatted text) are left in place with a warning.
fn import_fluentd(path: &Path, into: &Path) {
    let mut files = Vec::new();
    for pat in fluentd_patterns(path) {
        if let Ok(g) = glob::glob(&pat) {
            files.extend(g.flatten().filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                !n.ends_with(".meta") && fluentd_chunk_id(&n).is_some()
            }));
        }
    }
    files.sort();
    files.dedup();
    let (mut chunks, mut events) = (0u64, 0u64);
    for p in files {
        match import_one(&p, into) {
            Ok(n) => {
                chunks += 1;
                events += n as u64;
            }
            Err(why) => crate::warn!("file buffer: fluentd chunk {} not taken over: {why}; left in place", p.display()),
        }
    }
    if chunks > 0 {
        crate::info!(
            "file buffer: took over {chunks} chunks ({events} events) that fluentd left under {}",
            path.display()
        );
    }
}

/// The unique id in a fluentd chunk file name (`.b<hex>.` / `.q<hex>.`).
fn fluentd_chunk_id(name: &str) -> Option<Vec<u8>> {
    for part in name.split('.') {
        let Some(hexpart) = part.strip_prefix('b').or_else(|| part.strip_prefix('q')) else { continue };
        if hexpart.len() >= 16 && hexpart.len() % 2 == 0 && hexpart.bytes().all(|c| c.is_ascii_hexdigit()) {
            return (0..hexpart.len()).step_by(2).map(|i| u8::from_str_radix(&hexpart[i..i + 2], 16).ok()).collect();
        }
    }
    None
}

fn import_one(p: &Path, into: &Path) -> Result<u32, String> {
    let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let fid = fluentd_chunk_id(&name).ok_or("no chunk id in the name")?;
    let meta_path = PathBuf::from(format!("{}.meta", p.display()));
    let meta = std::fs::read(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    // fluentd >= 1.4: "\xc1\x00" + u32 BE size + msgpack map; older: the map alone.
    let map = if meta.len() > 6 && meta[..2] == [0xc1, 0x00] {
        let n = u32::from_be_bytes([meta[2], meta[3], meta[4], meta[5]]) as usize;
        meta.get(6..6 + n).ok_or("truncated .meta")?
    } else {
        &meta[..]
    };
    let rec = spate_protocol::RecordRef::new(map).ok_or("the .meta is not a msgpack map")?;
    let tag = rec.get(b"tag").and_then(|v| v.as_str()).ok_or("the .meta has no tag (tag is not a chunk key)")?;
    let timekey = rec.get(b"timekey").and_then(|v| v.as_i64());
    let mut data = std::fs::read(p).map_err(|e| e.to_string())?;
    if data.starts_with(&[0x1f, 0x8b]) {
        data = spate_protocol::compress::inflate(spate_protocol::Compression::Gzip, &data, 4 << 30)
            .map_err(|e| format!("gzip: {e}"))?;
    }
    let batch = spate_protocol::EventBatch::from_entries(
        Bytes::new(),
        Bytes::from(data),
        spate_protocol::EntriesFormat::Packed,
        spate_protocol::Mode::PackedForward,
        spate_protocol::Options::default(),
        100,
    )
    .map_err(|e| format!("not a stream of [time, record] entries: {e}"))?;
    if batch.invalid > 0 {
        return Err(format!("{} entries are not [time, record]", batch.invalid));
    }
    let mut id = [0u8; 16];
    // Keep fluentd's order: its ids start with the creation time too.
    for (d, s) in id.iter_mut().zip(fid.iter()) {
        *d = *s;
    }
    let mut out = header_bytes(&id, tag, timekey, &[]);
    out.extend_from_slice(&segment_header(&batch.entries, batch.count));
    out.extend_from_slice(&batch.entries);
    let dst = into.join(format!("{}{SUFFIX}", hex(&id)));
    let tmp = into.join(format!("{}.import", hex(&id)));
    (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        File::open(into)?.sync_all()
    })()
    .map_err(|e| format!("copying into {}: {e}", into.display()))?;
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_file(&meta_path);
    Ok(batch.count)
}

/// Reads a chunk file: header, then segments until the end or the first bad one, which
/// is cut off (logged). `Ok(None)`: nothing recoverable in it (deleted).
fn recover(p: &Path) -> Result<Option<Chunk>, String> {
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
    let cut_reason = loop {
        if pos == file_len {
            break None;
        }
        let mut sh = [0u8; SEG_HEADER];
        if f.read_exact(&mut sh).is_err() {
            break Some(format!("incomplete segment header at offset {pos}"));
        }
        if &sh[..4] != SEG_MAGIC {
            break Some(format!("bad segment marker at offset {pos}"));
        }
        let len = u32::from_le_bytes(sh[4..8].try_into().unwrap_or([0; 4]));
        let n = u32::from_le_bytes(sh[8..12].try_into().unwrap_or([0; 4]));
        let want = u32::from_le_bytes(sh[12..16].try_into().unwrap_or([0; 4]));
        if len > MAX_SEGMENT || pos + SEG_HEADER as u64 + len as u64 > file_len {
            break Some(format!("segment at offset {pos} declares {len} bytes past the end of the file"));
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&sh[4..12]);
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
        count = count.saturating_add(n);
        size += len as usize;
        pos += SEG_HEADER as u64 + len as u64;
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
        let sh = raw.get(pos..pos + SEG_HEADER).ok_or_else(|| format!("{}: short segment", path.display()))?;
        let n = u32::from_le_bytes(sh[4..8].try_into().unwrap_or([0; 4])) as usize;
        let want = u32::from_le_bytes(sh[12..16].try_into().unwrap_or([0; 4]));
        let data = raw
            .get(pos + SEG_HEADER..pos + SEG_HEADER + n)
            .ok_or_else(|| format!("{}: segment past the end", path.display()))?;
        let mut c = crc32fast::Hasher::new();
        c.update(&sh[4..12]);
        c.update(data);
        if c.finalize() != want {
            return Err(format!("{}: segment checksum mismatch at offset {pos}", path.display()));
        }
        out.extend_from_slice(data);
        pos += SEG_HEADER + n;
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
    pub buffer: usize,
    pub id: [u8; 16],
    path: PathBuf,
    file: Option<Arc<File>>,
    header: Option<Vec<u8>>,
    offset: u64,
    data: Vec<u8>,
    pub count: u32,
}

/// What a job did.
pub(crate) struct Done {
    pub buffer: usize,
    pub id: [u8; 16],
    pub file: Option<Arc<File>>,
    pub len: u64,
    pub count: u32,
    pub bytes: usize,
    pub err: Option<String>,
    pub created: bool,
}

/// Takes a chunk's unwritten entries for a commit (marks the chunk as syncing).
pub(crate) fn job_for(buffer: usize, c: &mut Chunk) -> Option<Job> {
    let d = c.disk.as_mut()?;
    if d.syncing || c.data.is_empty() {
        return None;
    }
    d.syncing = true;
    let header = d.file.is_none().then(|| header_bytes(&c.id, &c.tag, c.timekey, &c.vars));
    let count = std::mem::take(&mut d.pending_count);
    Some(Job {
        buffer,
        id: c.id,
        path: d.path.clone(),
        file: d.file.clone(),
        header,
        offset: d.len,
        data: std::mem::take(&mut c.data),
        count,
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

/// Runs a group commit's writes, then one fdatasync per file touched and one fsync per
/// directory that got a new file. Blocking: runs on glommio's blocking pool.
pub(crate) fn run_jobs(jobs: Vec<Job>) -> Vec<Done> {
    let mut done = Vec::with_capacity(jobs.len());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for j in jobs {
        let bytes = j.data.len();
        let mut created = false;
        let mut file = j.file.clone();
        let mut offset = j.offset;
        let r = (|| -> std::io::Result<()> {
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
            let sh = segment_header(&j.data, j.count);
            f.write_all_at(&sh, offset)?;
            f.write_all_at(&j.data, offset + SEG_HEADER as u64)?;
            f.sync_data()?;
            Ok(())
        })();
        let (len, err) = match r {
            Ok(()) => (offset + (SEG_HEADER + bytes) as u64, None),
            Err(e) => {
                // Cut whatever part of the segment made it, so the file stays valid.
                if let Some(f) = &file {
                    let _ = f.set_len(offset);
                }
                (offset, Some(format!("{}: {e}", j.path.display())))
            }
        };
        done.push(Done { buffer: j.buffer, id: j.id, file, len, count: j.count, bytes, err, created });
    }
    for d in dirs {
        // A new file's name is durable only once its directory is synced.
        if let Ok(f) = File::open(&d) {
            let _ = f.sync_all();
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("spate-fb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn write_chunk(dir: &Path, id: [u8; 16], tag: &[u8], segs: &[(&[u8], u32)]) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(format!("{}{SUFFIX}", hex(&id)));
        let mut f = File::create(&p).unwrap();
        f.write_all(&header_bytes(&id, tag, None, &[])).unwrap();
        for (d, n) in segs {
            f.write_all(&segment_header(d, *n)).unwrap();
            f.write_all(d).unwrap();
        }
        p
    }

    #[test]
    fn recovers_good_chunk_and_cuts_torn_tail() {
        let root = tmp("torn");
        let shard0 = root.join("shard-0");
        let good = write_chunk(&shard0, [1; 16], b"app.a", &[(b"abcdef", 2), (b"ghij", 1)]);
        let torn = write_chunk(&shard0, [2; 16], b"app.b", &[(b"0123456789", 3)]);
        // A second segment whose data was cut short by the kill.
        let mut f = OpenOptions::new().append(true).open(&torn).unwrap();
        f.write_all(&segment_header(b"xxxxxxxx", 4)).unwrap();
        f.write_all(b"xxx").unwrap();
        drop(f);
        let torn_len_before = std::fs::metadata(&torn).unwrap().len();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].count, chunks[0].size, &chunks[0].tag[..]), (3, 10, &b"app.a"[..]));
        assert_eq!((chunks[1].count, chunks[1].size), (3, 10));
        assert!(std::fs::metadata(&torn).unwrap().len() < torn_len_before);
        let d = chunks[0].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&good, d.file.as_ref(), d.len).unwrap(), b"abcdefghij");
        let d = chunks[1].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&torn, d.file.as_ref(), d.len).unwrap(), b"0123456789");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn corrupt_segment_is_cut_and_bad_header_moved_aside() {
        let root = tmp("corrupt");
        let shard0 = root.join("shard-0");
        let p = write_chunk(&shard0, [3; 16], b"t", &[(b"good", 1), (b"evil", 1)]);
        // Flip a byte in the second segment's data.
        let mut raw = std::fs::read(&p).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        std::fs::write(&p, &raw).unwrap();
        let bad = write_chunk(&shard0, [4; 16], b"some.tag", &[(b"data", 1)]);
        let mut raw = std::fs::read(&bad).unwrap();
        raw[36] ^= 0x20; // inside the tag: the header checksum no longer matches
        std::fs::write(&bad, &raw).unwrap();
        let empty = shard0.join(format!("{}{SUFFIX}", hex(&[5; 16])));
        std::fs::write(&empty, b"SPA").unwrap();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].count, chunks[0].size), (1, 4));
        assert!(!bad.exists());
        assert!(bad.with_extension("corrupt").exists());
        assert!(!empty.exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn takes_over_chunks_fluentd_left() {
        use spate_protocol::{encode, EventTime};
        let root = tmp("fluentd");
        std::fs::create_dir_all(&root).unwrap();
        let mut data = Vec::new();
        for i in 0..3u32 {
            encode::entry(
                &mut data,
                EventTime::new(1_700_000_000 + i, 5),
                encode::TimeFormat::EventTime,
                &[0x81, 0xa1, b'k', i as u8],
            );
        }
        let chunk = root.join("buffer.q5e0a1b2c3d4e5f60718293a4b5c6d7e8.log");
        std::fs::write(&chunk, &data).unwrap();
        // fluentd's .meta: header, size, then {"timekey"=>nil, "tag"=>"app.x", ...}.
        let mut m = Vec::new();
        encode::raw::map_header(&mut m, 3);
        encode::raw::str(&mut m, b"timekey");
        m.push(0xc0);
        encode::raw::str(&mut m, b"tag");
        encode::raw::str(&mut m, b"app.x");
        encode::raw::str(&mut m, b"s");
        encode::raw::uint(&mut m, 3);
        let mut meta = vec![0xc1, 0x00];
        meta.extend_from_slice(&(m.len() as u32).to_be_bytes());
        meta.extend_from_slice(&m);
        std::fs::write(root.join("buffer.q5e0a1b2c3d4e5f60718293a4b5c6d7e8.log.meta"), &meta).unwrap();
        // An out_file buffer chunk (formatted text) is left alone.
        let text = root.join("buffer.b5e0a1b2c3d4e5f60718293a4b5c6d7e9.log");
        std::fs::write(&text, b"2026-01-01T00:00:00+00:00\tapp\t{}\n").unwrap();
        std::fs::write(root.join("buffer.b5e0a1b2c3d4e5f60718293a4b5c6d7e9.log.meta"), &meta).unwrap();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!((&chunks[0].tag[..], chunks[0].count, chunks[0].timekey), (&b"app.x"[..], 3, None));
        let d = chunks[0].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&d.path, None, d.len).unwrap(), data);
        assert!(!chunk.exists(), "fluentd's copy is removed once spate's is durable");
        assert!(text.exists(), "a chunk spate cannot read stays for fluentd");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn shards_recover_by_modulo() {
        let root = tmp("modulo");
        write_chunk(&root.join("shard-0"), [6; 16], b"a", &[(b"x", 1)]);
        write_chunk(&root.join("shard-1"), [7; 16], b"b", &[(b"y", 1)]);
        write_chunk(&root.join("shard-2"), [8; 16], b"c", &[(b"z", 1)]);
        // Two workers now: shard 0 takes shard-0 and shard-2, shard 1 takes shard-1.
        let (_, c0) = FileStore::open(&root, 0, 2, Rc::new(Syncer::default())).unwrap();
        let (_, c1) = FileStore::open(&root, 1, 2, Rc::new(Syncer::default())).unwrap();
        assert_eq!(c0.iter().map(|c| &c.tag[..]).collect::<Vec<_>>(), vec![&b"a"[..], &b"c"[..]]);
        assert_eq!(c1.iter().map(|c| &c.tag[..]).collect::<Vec<_>>(), vec![&b"b"[..]]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn jobs_write_segments_that_recover() {
        let root = tmp("jobs");
        let dir = root.join("shard-0");
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileStore { dir: dir.clone(), syncer: Rc::new(Syncer::default()) };
        let id = [9u8; 16];
        let mut c =
            super::super::memory::recovered_chunk(id, Bytes::from_static(b"tag"), None, 0, 0, store.new_chunk(&id));
        c.data.extend_from_slice(b"first");
        c.vars = Bytes::from_static(b"\x02\0\0\0ns");
        c.count = 1;
        c.size = 5;
        c.disk.as_mut().unwrap().pending_count = 1;
        let j = job_for(0, &mut c).unwrap();
        let d = run_jobs(vec![j]);
        assert!(d[0].err.is_none() && d[0].created);
        apply(&mut c, &d[0]);
        c.data.extend_from_slice(b"second");
        c.count += 2;
        c.size += 6;
        c.disk.as_mut().unwrap().pending_count = 2;
        let d = run_jobs(vec![job_for(0, &mut c).unwrap()]);
        apply(&mut c, &d[0]);
        let disk = c.disk.as_ref().unwrap();
        assert_eq!(load_blocking(&disk.path, None, disk.len).unwrap(), b"firstsecond");
        drop(c);
        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!((chunks[0].count, chunks[0].size), (3, 11));
        assert_eq!(chunks[0].var(0), Some(&b"ns"[..]), "record-field chunk keys survive a restart");
        let _ = std::fs::remove_dir_all(&root);
    }
}
