//! The buffer proper: one staged chunk per chunk key (appended to by emits), a queue of
//! chunks waiting for the output, and byte accounting against `total_limit_size`
//! (in-flight chunks count until they are committed).
//!
//! Appending copies a batch's entries once into the staged chunk (one memcpy per batch,
//! never per event) so the receive buffer is released right away. With a file store
//! (`<buffer @type file>`), a chunk's `data` holds only the entries not yet written to
//! its file; the shard's group commit ([`super::sync`]) moves them to disk, and a chunk
//! is handed to the output only once everything in it is durable.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch};

use super::chunk::Chunk;
use super::chunk_file;
use super::conf::{BufferConf, FlushMode, OverflowAction};
use super::error::BufferError;
use super::file::FileStore;
use super::sync::{CommitSource, CommitWork};
use crate::ruby::accessor::{Accessor, Dug, Step};

pub struct Buffer {
    conf: BufferConf,
    staged: HashMap<Bytes, Chunk>,
    queue: VecDeque<Chunk>,
    /// Bytes held: staged + queued + in flight.
    bytes: usize,
    /// Bytes in the chunk queued last: a new chunk reserves that much (up to
    /// `chunk_limit_size`), so a busy key's chunks are not copied at every doubling
    /// as they fill (perf put 9% of a relay's cycles in those copies).
    recent_chunk: usize,
    seq: u64,
    shard: u32,
    /// Chunk-key scratch (tag + time slice + record-field values) so lookups do not
    /// allocate; the values start at `vars_at` (usize::MAX: none).
    key: Vec<u8>,
    vars_at: usize,
    /// The record-field chunk keys (`conf.vars`) as record accessors.
    var_accessors: Vec<Accessor>,
    /// Chunks dropped by `drop_oldest_chunk` or given up after retries.
    pub dropped_chunks: u64,
    pub dropped_events: u64,
    /// Of those, dropped by `overflow_action drop_oldest_chunk`.
    pub dropped_oldest: u64,
    /// The id of the output this buffer belongs to (log lines name it).
    owner: String,
    pub(crate) store: Option<FileStore>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("bytes", &self.bytes)
            .field("staged", &self.staged.len())
            .field("queued", &self.queue.len())
            .field("file", &self.store.as_ref().map(|s| s.dir.display().to_string()))
            .finish()
    }
}

/// Staged chunks beyond which a new chunk reserves only what its first batch needs
/// (see `Buffer::recent_chunk`).
const RESERVING_KEYS: usize = 16;

/// Encoded size of a batch once appended as packed entries.
fn packed_size(batch: &EventBatch) -> usize {
    match batch.format {
        EntriesFormat::Packed => batch.entries.len(),
        EntriesFormat::Message => batch.entries.len() + 1,
    }
}

impl Buffer {
    /// A memory buffer.
    pub fn new(conf: BufferConf, shard: u32) -> Self {
        let var_accessors = conf.vars.iter().map(|v| var_accessor(v)).collect();
        Buffer {
            conf,
            var_accessors,
            staged: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            recent_chunk: 0,
            seq: 0,
            shard,
            key: Vec::new(),
            vars_at: usize::MAX,
            dropped_chunks: 0,
            dropped_events: 0,
            dropped_oldest: 0,
            owner: String::from("file buffer"),
            store: None,
        }
    }

    /// A file buffer over `store`, with the chunks a previous run left queued first.
    pub(crate) fn with_store(conf: BufferConf, shard: u32, store: FileStore, recovered: Vec<Chunk>) -> Self {
        let mut b = Buffer::new(conf, shard);
        for c in recovered {
            b.bytes += c.size;
            b.queue.push_back(c);
        }
        b.store = Some(store);
        b
    }

    pub fn conf(&self) -> &BufferConf {
        &self.conf
    }

    pub fn is_file(&self) -> bool {
        self.store.is_some()
    }

    /// Bytes held (staged, queued and in flight).
    pub fn total_bytes(&self) -> usize {
        self.bytes
    }

    pub fn queued_chunks(&self) -> usize {
        self.queue.len()
    }

    pub fn staged_chunks(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.staged.is_empty()
    }

    /// Bytes in queued chunks (fluentd's queue_byte_size).
    pub fn queued_bytes(&self) -> usize {
        self.queue.iter().map(|c| c.size).sum()
    }

    /// Bytes in staged chunks (fluentd's stage_byte_size).
    pub fn staged_bytes(&self) -> usize {
        self.staged.values().map(|c| c.size).sum()
    }

    /// The time slices of staged and queued chunks (fluentd's `timekeys`).
    pub fn timekeys(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.staged.values().chain(self.queue.iter()).filter_map(|c| c.timekey).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Names the output this buffer belongs to (its log lines start with it).
    pub fn set_owner(&mut self, id: &str) {
        self.owner = id.to_string();
    }

    /// A reload handed this buffer to a new output with `conf`. When the chunk keys
    /// changed (time slice or record-field keys), the staged chunks are queued as they
    /// are (their record-field values re-ordered for the new keys by name, missing ones
    /// empty) so every new append starts a chunk under the new keys.
    pub fn reconfigure(&mut self, conf: BufferConf) {
        let old_keys = (self.conf.timekey.as_ref().map(|k| (k.secs, k.utc_offset)), self.conf.vars.clone());
        let new_keys = (conf.timekey.as_ref().map(|k| (k.secs, k.utc_offset)), conf.vars.clone());
        if old_keys != new_keys {
            let staged: Vec<Chunk> = self.staged.drain().map(|(_, c)| c).collect();
            for c in staged {
                self.push_queue(c);
            }
            if self.conf.vars != conf.vars {
                let old = self.conf.vars.clone();
                for c in self.queue.iter_mut() {
                    let mut v = Vec::new();
                    for name in &conf.vars {
                        let val = old.iter().position(|o| o == name).and_then(|i| c.var(i)).unwrap_or(b"");
                        v.extend_from_slice(&(val.len() as u32).to_le_bytes());
                        v.extend_from_slice(val);
                    }
                    c.vars = Bytes::from(v);
                }
            }
        }
        self.conf = conf;
    }

    /// Whether `add` more bytes fit.
    pub fn has_room(&self, add: usize) -> bool {
        self.bytes + add <= self.conf.total_limit_size
    }

    fn next_id(&mut self) -> [u8; 16] {
        self.seq += 1;
        // Creation time first, so file names sort in creation order on recovery.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(now.as_nanos() as u64).to_be_bytes());
        id[8..12].copy_from_slice(&self.shard.to_be_bytes());
        id[12..].copy_from_slice(&(self.seq as u32).to_be_bytes());
        id
    }

    /// Whether `add` more bytes fit, applying `drop_oldest_chunk` if configured.
    fn make_room(&mut self, add: usize) -> Result<(), BufferError> {
        let limit = self.conf.total_limit_size;
        while self.bytes + add > limit {
            if self.conf.overflow_action == OverflowAction::DropOldestChunk {
                // A chunk whose tail is still being written stays (its file is in use).
                if let Some(pos) = self.queue.iter().position(Chunk::ready) {
                    if let Some(old) = self.queue.remove(pos) {
                        self.dropped_chunks += 1;
                        self.dropped_oldest += 1;
                        self.dropped_events += old.count as u64;
                        crate::warn!(
                            "buffer full: dropping oldest chunk tag={:?} events={} (overflow_action drop_oldest_chunk; {} chunks / {} events dropped so far)",
                            String::from_utf8_lossy(&old.tag),
                            old.count,
                            self.dropped_chunks,
                            self.dropped_events
                        );
                        self.release(old);
                        continue;
                    }
                }
            }
            return Err(BufferError::Overflow { limit, block: self.conf.overflow_action == OverflowAction::Block });
        }
        Ok(())
    }

    /// Appends a batch's valid events under its chunk key. All or nothing: on error
    /// nothing was appended.
    pub fn append(&mut self, batch: &EventBatch) -> Result<(), BufferError> {
        if batch.count == 0 {
            return Ok(());
        }
        let add = packed_size(batch);
        self.make_room(add)?;
        let limit = self.conf.chunk_limit_size;
        let rec_limit = self.conf.chunk_limit_records.unwrap_or(u32::MAX);
        let clean = batch.invalid == 0
            && batch.format == EntriesFormat::Packed
            && self.conf.timekey.is_none()
            && self.conf.vars.is_empty();
        if clean && add <= limit && batch.count <= rec_limit {
            self.set_key(&batch.tag, None);
            let chunk = self.staged_for(&batch.tag, None, add);
            if chunk.count > 0 && (chunk.size + add > limit || chunk.count.saturating_add(batch.count) > rec_limit) {
                self.rotate_key();
            }
            let streaming = self.store.is_none();
            let chunk = self.staged_for(&batch.tag, None, add);
            if streaming {
                // Not read again until the chunk is sent: past the cache (see stream_copy).
                super::stream_copy::extend_streaming(&mut chunk.data, &batch.entries);
            } else {
                // The group commit writes it to the file within milliseconds.
                chunk.data.extend_from_slice(&batch.entries);
            }
            chunk.count += batch.count;
            chunk.size += add;
            if let Some(d) = &mut chunk.disk {
                d.pending_count += batch.count;
            }
        } else {
            // Slow path: per event (invalid entries to skip, Message-mode layout, time
            // slices, or a batch larger than one chunk that must be split).
            let tk = self.conf.timekey.clone();
            for ev in batch.events() {
                let len = ev.raw.len() + usize::from(batch.format == EntriesFormat::Message);
                let slice = tk.as_ref().map(|k| k.of(ev.time.sec as i64));
                self.set_key(&batch.tag, slice);
                if !self.conf.vars.is_empty() {
                    self.push_vars(ev.record.as_bytes());
                }
                let chunk = self.staged_for(&batch.tag, slice, len);
                if chunk.count > 0 && (chunk.size + len > limit || chunk.count >= rec_limit) {
                    self.rotate_key();
                }
                let chunk = self.staged_for(&batch.tag, slice, len);
                batch.format.append_packed(&mut chunk.data, ev.raw);
                chunk.count += 1;
                chunk.size += len;
                if let Some(d) = &mut chunk.disk {
                    d.pending_count += 1;
                }
            }
        }
        self.bytes += add;
        if let Some(s) = &self.store {
            s.syncer.written();
        }
        if self.conf.effective_flush_mode() == FlushMode::Immediate {
            self.set_key(&batch.tag, None);
            if self.conf.timekey.is_none() {
                self.rotate_key();
            } else {
                self.enqueue_due(Instant::now(), true);
            }
        }
        Ok(())
    }

    /// Sets the chunk-key scratch: the tag, then `\xff` and the slice for time keys.
    #[inline]
    fn set_key(&mut self, tag: &[u8], slice: Option<i64>) {
        self.vars_at = usize::MAX;
        self.key.clear();
        self.key.extend_from_slice(tag);
        if let Some(s) = slice {
            self.key.push(0xff);
            self.key.extend_from_slice(&s.to_be_bytes());
        }
    }

    /// Appends the record-field chunk key values of `record` to the key scratch, each as
    /// u32 LE length + text (missing keys are empty, as a nil renders in fluentd).
    fn push_vars(&mut self, record: &[u8]) {
        self.key.push(0xfe);
        self.vars_at = self.key.len();
        let rec = spate_protocol::RecordRef::new(record);
        for a in &self.var_accessors {
            let at = self.key.len();
            self.key.extend_from_slice(&[0, 0, 0, 0]);
            if let Some(Dug::Value(v)) = rec.map(|r| a.dig(r)) {
                v.write_text(&mut self.key);
            }
            let n = (self.key.len() - at - 4) as u32;
            self.key[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
    }

    /// The staged chunk for the key in the scratch (created if missing).
    fn staged_for(&mut self, tag: &Bytes, slice: Option<i64>, hint: usize) -> &mut Chunk {
        if !self.staged.contains_key(&self.key[..]) {
            let id = self.next_id();
            // Own the tag so the chunk does not pin the receive buffer.
            let owned = Bytes::copy_from_slice(tag);
            // Many keys staged at once (a tag per client, say) get no reservation: only
            // a few chunks reserve room they may not fill.
            // With a quarter more: a chunk that fills up ends at a different length each
            // time, and one that outgrows the last one's length by a single batch would
            // double its storage, copying all it holds into fresh pages. Room reserved
            // and never written costs address space, not memory.
            let recent = if self.staged.len() < RESERVING_KEYS { self.recent_chunk.saturating_mul(5) / 4 } else { 0 };
            let cap = hint.max(4096).max(recent).min(self.conf.chunk_limit_size);
            let mut c = Chunk::new(id, owned, slice, cap);
            if let Some(v) = self.key.get(self.vars_at..) {
                // Copied once per chunk, for path placeholders and the file header.
                c.vars = Bytes::copy_from_slice(v);
            }
            if let Some(s) = &self.store {
                c.disk = Some(s.new_chunk(&id));
            }
            self.staged.insert(Bytes::copy_from_slice(&self.key), c);
        }
        // Present: inserted above if it was missing.
        self.staged.get_mut(&self.key[..]).expect("staged chunk present")
    }

    /// Moves the staged chunk of the key in the scratch to the queue.
    fn rotate_key(&mut self) {
        if let Some(c) = self.staged.remove(&self.key[..]) {
            self.push_queue(c);
        }
    }

    fn push_queue(&mut self, c: Chunk) {
        self.recent_chunk = c.data.len();
        if c.count > 0 {
            self.queue.push_back(c);
        } else {
            self.release(c);
        }
    }

    /// Queues staged chunks that are due: older than `flush_interval` (interval mode),
    /// past their slice's end plus `timekey_wait` (time keys), or all of them when
    /// `force` (flush now, shutdown).
    pub fn enqueue_due(&mut self, now: Instant, force: bool) {
        if self.staged.is_empty() {
            return;
        }
        let interval = self.conf.flush_interval;
        let mode = self.conf.effective_flush_mode();
        let wall = unix_now();
        let tk = self.conf.timekey.clone();
        let due: Vec<Bytes> = self
            .staged
            .iter()
            .filter(|(_, c)| {
                force
                    || match mode {
                        FlushMode::Lazy => match (&tk, c.timekey) {
                            (Some(k), Some(s)) => wall >= s + k.secs + k.wait.as_secs() as i64,
                            _ => false,
                        },
                        _ => now.duration_since(c.created) >= interval,
                    }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(c) = self.staged.remove(&k) {
                self.push_queue(c);
            }
        }
    }

    /// Time until the oldest staged chunk becomes due.
    pub fn next_due(&self, now: Instant) -> Option<std::time::Duration> {
        match self.conf.effective_flush_mode() {
            FlushMode::Lazy => {
                let k = self.conf.timekey.as_ref()?;
                let wall = unix_now();
                self.staged
                    .values()
                    .filter_map(|c| c.timekey)
                    .map(
                        |s| std::time::Duration::from_secs((s + k.secs + k.wait.as_secs() as i64 - wall).max(0) as u64),
                    )
                    .min()
            }
            _ => self
                .staged
                .values()
                .map(|c| (c.created + self.conf.flush_interval).saturating_duration_since(now))
                .min(),
        }
    }

    /// Takes the next queued chunk for sending; its bytes stay accounted until
    /// [`Buffer::commit`] or [`Buffer::requeue`]. A file chunk whose tail is not durable
    /// yet is not handed out (the queue keeps its order); a file chunk comes with empty
    /// `data`: load it with [`super::chunk_file::load`].
    pub fn take(&mut self) -> Option<Chunk> {
        if self.queue.front().is_some_and(Chunk::ready) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Whether the queue holds a chunk that waits only for the group commit.
    pub fn waiting_for_sync(&self) -> bool {
        self.queue.front().is_some_and(|c| !c.ready())
    }

    /// The chunk was delivered: release its bytes (and its file).
    pub fn commit(&mut self, chunk: Chunk) {
        self.release(chunk);
    }

    fn release(&mut self, mut chunk: Chunk) {
        self.bytes = self.bytes.saturating_sub(chunk.size);
        if let Some(d) = chunk.disk.take() {
            d.remove();
        }
    }

    /// The chunk failed: put it back at the front to retry. Loaded file data is
    /// dropped (it is on disk) so a long outage does not hold it in memory, unless the
    /// chunk is partial (only its remaining entries are in memory).
    pub fn requeue(&mut self, mut chunk: Chunk) {
        if chunk.disk.is_some() && !chunk.partial {
            chunk.data = Vec::new();
        }
        self.queue.push_front(chunk);
    }

    /// Gives up on a chunk (retry limit reached): release it and count the loss.
    pub fn discard(&mut self, chunk: Chunk) {
        self.dropped_chunks += 1;
        self.dropped_events += chunk.count as u64;
        self.release(chunk);
    }

    /// Forgets `bytes` that a failed write took out of a chunk.
    fn unaccount(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

impl CommitSource for Buffer {
    fn prepare(&mut self, tag: Option<super::journal::CommitTag>) -> Option<Box<dyn CommitWork>> {
        let jobs: Vec<_> =
            self.staged.values_mut().chain(self.queue.iter_mut()).filter_map(|c| chunk_file::job_for(c, tag)).collect();
        (!jobs.is_empty()).then(|| Box::new(chunk_file::Jobs::new(jobs)) as Box<dyn CommitWork>)
    }

    fn finish(&mut self, work: Box<dyn CommitWork>) -> Result<(), String> {
        let Ok(jobs) = work.into_any().downcast::<chunk_file::Jobs>() else {
            return Err("group commit: foreign work handed to a file buffer".into());
        };
        let mut first_err = None;
        for d in &jobs.done {
            match self.staged.values_mut().chain(self.queue.iter_mut()).find(|c| c.id == d.id) {
                Some(c) => chunk_file::apply(c, d),
                None => {
                    // The chunk was dropped meanwhile: its file goes too.
                    if d.created || d.file.is_some() {
                        let _ = std::fs::remove_file(&d.path);
                    }
                }
            }
            if let Some(e) = &d.err {
                self.unaccount(d.bytes);
                // Named by its output's id: a log line of that output (so a file buffer
                // that carries spate's own log events does not log into itself).
                crate::error!(
                    "{}: file buffer: writing {} events to disk failed: {e}; they are not acked (clients resend)",
                    self.owner,
                    d.count
                );
                first_err.get_or_insert_with(|| e.clone());
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// A chunk key as fluentd reads it (`Accessor.new(key)`): `name`, or a `$.a.b` path. The
/// plan only passes keys that parse; anything else is taken as one plain key.
fn var_accessor(key: &str) -> Accessor {
    Accessor::parse(key).unwrap_or_else(|_| Accessor { steps: vec![Step::Key(key.as_bytes().to_vec())] })
}

/// Wall-clock seconds (time slices are wall-clock based, as in fluentd).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::{encode, EventTime, Mode, Options};

    pub(crate) fn batch_at(tag: &str, n: u32, t0: u32) -> EventBatch {
        let mut e = Vec::new();
        for i in 0..n {
            encode::entry(&mut e, EventTime::new(t0 + i, 0), encode::TimeFormat::EventTime, &[0x81, 0xa1, b'k', 0x01]);
        }
        EventBatch::from_entries(
            Bytes::copy_from_slice(tag.as_bytes()),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap()
    }

    fn batch(tag: &str, n: u32) -> EventBatch {
        batch_at(tag, n, 0)
    }

    #[test]
    fn appends_rotate_and_account() {
        let conf = BufferConf { chunk_limit_size: 100, total_limit_size: 1000, ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        let one = batch("a", 5); // 5 * 15 = 75 bytes
        b.append(&one).unwrap();
        b.append(&one).unwrap(); // does not fit: first chunk queued
        assert_eq!(b.queued_chunks(), 1);
        assert_eq!(b.total_bytes(), 150);
        b.enqueue_due(Instant::now(), true);
        assert_eq!(b.queued_chunks(), 2);
        let c = b.take().unwrap();
        assert_eq!(c.count, 5);
        assert_eq!(c.size, 75);
        b.commit(c);
        assert_eq!(b.total_bytes(), 75);
    }

    #[test]
    fn a_new_chunk_reserves_what_the_last_one_held() {
        // 15-byte events, 1 MB chunks: the first chunk grows as it fills; the next one
        // starts with the room the last one needed (not copied at every doubling), and
        // never more than chunk_limit_size.
        let conf = BufferConf { chunk_limit_size: 1 << 20, total_limit_size: 64 << 20, ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        for _ in 0..100 {
            b.append(&batch("a", 100)).unwrap();
        }
        b.enqueue_due(Instant::now(), true);
        let held = b.take().unwrap().data.len();
        assert_eq!(held, 150_000);
        b.append(&batch("a", 1)).unwrap();
        let cap = b.staged.values().next().unwrap().data.capacity();
        // With room to spare: a chunk a batch longer than the last is not copied.
        assert!(cap >= held * 5 / 4, "{cap} < {held} * 1.25");
        // 699 batches of 1500 bytes fill a chunk (1,048,500 bytes); the 700th starts the
        // next, which reserves that much: at most chunk_limit_size.
        for _ in 0..700 {
            b.append(&batch("a", 100)).unwrap();
        }
        assert_eq!(b.queued_chunks(), 1);
        let cap = b.staged.values().next().unwrap().data.capacity();
        assert!((1_048_500..=1 << 20).contains(&cap), "{cap}");
        // With many keys staged, new chunks reserve only their first batch's room.
        for k in 0..RESERVING_KEYS {
            b.append(&batch(&format!("k{k}"), 1)).unwrap();
        }
        let cap = b.staged.get(&b"k15"[..]).unwrap().data.capacity();
        assert!(cap < 8192, "{cap}");
    }

    #[test]
    fn overflow_rejects_whole_batch() {
        let conf = BufferConf { chunk_limit_size: 100, total_limit_size: 100, ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        b.append(&batch("a", 5)).unwrap();
        assert_eq!(b.append(&batch("a", 5)), Err(BufferError::Overflow { limit: 100, block: false }));
        assert_eq!(b.total_bytes(), 75);
    }

    #[test]
    fn block_is_reported() {
        let conf = BufferConf {
            chunk_limit_size: 100,
            total_limit_size: 100,
            overflow_action: OverflowAction::Block,
            ..Default::default()
        };
        let mut b = Buffer::new(conf, 0);
        b.append(&batch("a", 5)).unwrap();
        assert!(b.append(&batch("a", 5)).unwrap_err().is_block());
    }

    #[test]
    fn drop_oldest_makes_room() {
        let conf = BufferConf {
            chunk_limit_size: 75,
            total_limit_size: 150,
            overflow_action: OverflowAction::DropOldestChunk,
            ..Default::default()
        };
        let mut b = Buffer::new(conf, 0);
        for _ in 0..3 {
            b.append(&batch("a", 5)).unwrap();
        }
        assert_eq!(b.dropped_chunks, 1);
        assert_eq!(b.dropped_events, 5);
        assert_eq!(b.total_bytes(), 150);
    }

    #[test]
    fn oversized_batch_is_split() {
        let conf = BufferConf { chunk_limit_size: 30, ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        b.append(&batch("a", 5)).unwrap();
        b.enqueue_due(Instant::now(), true);
        let mut total = 0;
        while let Some(c) = b.take() {
            assert!(c.data.len() <= 30);
            total += c.count;
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn record_field_chunk_keys_split_chunks() {
        use spate_protocol::encode::raw;
        let conf = BufferConf { vars: vec!["ns".into(), "$.k.app".into()], ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        let mut e = Vec::new();
        for (ns, app) in [("a", "x"), ("b", "x"), ("a", "x"), ("a", "y")] {
            let mut r = Vec::new();
            raw::map_header(&mut r, 2);
            raw::str(&mut r, b"ns");
            raw::str(&mut r, ns.as_bytes());
            raw::str(&mut r, b"k");
            raw::map_header(&mut r, 1);
            raw::str(&mut r, b"app");
            raw::str(&mut r, app.as_bytes());
            encode::entry(&mut e, EventTime::new(1, 0), encode::TimeFormat::EventTime, &r);
        }
        let batch = EventBatch::from_entries(
            Bytes::from_static(b"t"),
            Bytes::from(e),
            EntriesFormat::Packed,
            Mode::PackedForward,
            Options::default(),
            100,
        )
        .unwrap();
        b.append(&batch).unwrap();
        b.enqueue_due(Instant::now(), true);
        let mut got = Vec::new();
        while let Some(c) = b.take() {
            got.push((
                String::from_utf8_lossy(c.var(0).unwrap()).to_string(),
                String::from_utf8_lossy(c.var(1).unwrap()).to_string(),
                c.count,
            ));
        }
        got.sort();
        assert_eq!(got, vec![("a".into(), "x".into(), 2), ("a".into(), "y".into(), 1), ("b".into(), "x".into(), 1)]);
    }

    #[test]
    fn time_key_splits_by_slice_and_waits() {
        let tk = super::super::conf::TimeKey { secs: 10, wait: std::time::Duration::ZERO, utc_offset: 0 };
        let conf = BufferConf { timekey: Some(tk), ..Default::default() };
        let mut b = Buffer::new(conf, 0);
        // Times 5..=14 span slices 0 and 10; both are long past, so lazy mode flushes them.
        b.append(&batch_at("a", 10, 5)).unwrap();
        assert_eq!(b.staged_chunks(), 2);
        b.enqueue_due(Instant::now(), false);
        let mut got = Vec::new();
        while let Some(c) = b.take() {
            got.push((c.timekey, c.count));
        }
        got.sort();
        assert_eq!(got, vec![(Some(0), 5), (Some(10), 5)]);
        // A slice in the future stays staged.
        let now = unix_now() as u32;
        b.append(&batch_at("a", 1, now + 100)).unwrap();
        b.enqueue_due(Instant::now(), false);
        assert!(b.take().is_none());
        assert_eq!(b.staged_chunks(), 1);
    }
}
