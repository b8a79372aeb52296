//! The memory buffer: one staged chunk per tag (appended to by emits), a queue of
//! chunks waiting for the output, and byte accounting against `total_limit_size`
//! (in-flight chunks count until they are committed).
//!
//! Appending copies a batch's entries once into the staged chunk (one memcpy per batch,
//! never per event) so the receive buffer is released right away.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch};

use super::{BufferConf, BufferError, OverflowAction};

/// A chunk of packed `[time, record]` entries of one tag.
#[derive(Debug)]
pub struct Chunk {
    pub id: [u8; 16],
    pub tag: Bytes,
    pub data: Vec<u8>,
    pub count: u32,
    pub created: Instant,
    /// Failed send attempts so far.
    pub retries: u32,
    pub first_failure: Option<Instant>,
}

impl Chunk {
    fn new(id: [u8; 16], tag: Bytes, cap: usize) -> Self {
        Chunk {
            id,
            tag,
            data: Vec::with_capacity(cap),
            count: 0,
            created: Instant::now(),
            retries: 0,
            first_failure: None,
        }
    }
}

#[derive(Debug)]
pub struct MemoryBuffer {
    conf: BufferConf,
    staged: HashMap<Bytes, Chunk>,
    queue: VecDeque<Chunk>,
    /// Bytes held: staged + queued + in flight.
    bytes: usize,
    seq: u64,
    shard: u32,
    /// Chunks dropped by `drop_oldest_chunk`.
    pub dropped_chunks: u64,
    pub dropped_events: u64,
}

/// Encoded size of a batch once appended as packed entries.
fn packed_size(batch: &EventBatch) -> usize {
    match batch.format {
        EntriesFormat::Packed => batch.entries.len(),
        EntriesFormat::Message => batch.entries.len() + 1,
    }
}

impl MemoryBuffer {
    pub fn new(conf: BufferConf, shard: u32) -> Self {
        MemoryBuffer {
            conf,
            staged: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            seq: 0,
            shard,
            dropped_chunks: 0,
            dropped_events: 0,
        }
    }

    pub fn conf(&self) -> &BufferConf {
        &self.conf
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

    fn next_id(&mut self) -> [u8; 16] {
        self.seq += 1;
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&self.shard.to_be_bytes());
        id[4..12].copy_from_slice(&self.seq.to_be_bytes());
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        id[12..].copy_from_slice(&nanos.to_be_bytes());
        id
    }

    /// Whether `add` more bytes fit, applying `drop_oldest_chunk` if configured.
    fn make_room(&mut self, add: usize) -> Result<(), BufferError> {
        let limit = self.conf.total_limit_size;
        while self.bytes + add > limit {
            if self.conf.overflow_action == OverflowAction::DropOldestChunk {
                if let Some(old) = self.queue.pop_front() {
                    self.bytes -= old.data.len();
                    self.dropped_chunks += 1;
                    self.dropped_events += old.count as u64;
                    crate::warn!(
                        "buffer full: dropping oldest chunk tag={:?} events={} (overflow_action drop_oldest_chunk)",
                        String::from_utf8_lossy(&old.tag),
                        old.count
                    );
                    continue;
                }
            }
            return Err(BufferError::Overflow { limit });
        }
        Ok(())
    }

    /// Appends a batch's valid events under its tag. All or nothing: on error nothing
    /// was appended.
    pub fn append(&mut self, batch: &EventBatch) -> Result<(), BufferError> {
        if batch.count == 0 {
            return Ok(());
        }
        let add = packed_size(batch);
        self.make_room(add)?;
        let limit = self.conf.chunk_limit_size;
        let rec_limit = self.conf.chunk_limit_records.unwrap_or(u32::MAX);
        let clean = batch.invalid == 0 && batch.format == EntriesFormat::Packed;
        if clean && add <= limit && batch.count <= rec_limit {
            let chunk = self.staged_for(&batch.tag, add);
            if !chunk.data.is_empty()
                && (chunk.data.len() + add > limit || chunk.count.saturating_add(batch.count) > rec_limit)
            {
                self.rotate(&batch.tag);
            }
            let chunk = self.staged_for(&batch.tag, add);
            chunk.data.extend_from_slice(&batch.entries);
            chunk.count += batch.count;
        } else {
            // Slow path: per event (invalid entries to skip, Message-mode layout, or a
            // batch larger than one chunk that must be split).
            for ev in batch.events() {
                let len = ev.raw.len() + usize::from(batch.format == EntriesFormat::Message);
                let chunk = self.staged_for(&batch.tag, len);
                if !chunk.data.is_empty() && (chunk.data.len() + len > limit || chunk.count >= rec_limit) {
                    self.rotate(&batch.tag);
                }
                let chunk = self.staged_for(&batch.tag, len);
                if batch.format == EntriesFormat::Message {
                    chunk.data.push(0x92);
                }
                chunk.data.extend_from_slice(ev.raw);
                chunk.count += 1;
            }
        }
        self.bytes += add;
        if self.conf.effective_flush_mode() == super::FlushMode::Immediate {
            self.rotate(&batch.tag);
        }
        Ok(())
    }

    fn staged_for(&mut self, tag: &Bytes, hint: usize) -> &mut Chunk {
        if !self.staged.contains_key(&tag[..]) {
            let id = self.next_id();
            // Own the tag so the chunk does not pin the receive buffer.
            let owned = Bytes::copy_from_slice(tag);
            let cap = hint.max(4096).min(self.conf.chunk_limit_size);
            self.staged.insert(owned.clone(), Chunk::new(id, owned, cap));
        }
        // Present: inserted above if it was missing.
        self.staged.get_mut(&tag[..]).expect("staged chunk present")
    }

    /// Moves the staged chunk of `tag` to the queue.
    fn rotate(&mut self, tag: &[u8]) {
        if let Some(c) = self.staged.remove(tag) {
            if c.count > 0 {
                self.queue.push_back(c);
            }
        }
    }

    /// Queues staged chunks that are due: older than `flush_interval` (interval mode),
    /// or all of them when `force` (flush now, shutdown).
    pub fn enqueue_due(&mut self, now: Instant, force: bool) {
        let interval = self.conf.flush_interval;
        let lazy = self.conf.effective_flush_mode() == super::FlushMode::Lazy;
        let due: Vec<Bytes> = self
            .staged
            .iter()
            .filter(|(_, c)| force || (!lazy && now.duration_since(c.created) >= interval))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.rotate(&k);
        }
    }

    /// Time until the oldest staged chunk becomes due (interval mode).
    pub fn next_due(&self, now: Instant) -> Option<std::time::Duration> {
        if self.conf.effective_flush_mode() == super::FlushMode::Lazy {
            return None;
        }
        self.staged.values().map(|c| (c.created + self.conf.flush_interval).saturating_duration_since(now)).min()
    }

    /// Takes the next queued chunk for sending; its bytes stay accounted until
    /// [`MemoryBuffer::commit`] or [`MemoryBuffer::requeue`].
    pub fn take(&mut self) -> Option<Chunk> {
        self.queue.pop_front()
    }

    /// The chunk was delivered: release its bytes.
    pub fn commit(&mut self, chunk: Chunk) {
        self.bytes = self.bytes.saturating_sub(chunk.data.len());
    }

    /// The chunk failed: put it back at the front to retry.
    pub fn requeue(&mut self, chunk: Chunk) {
        self.queue.push_front(chunk);
    }

    /// Gives up on a chunk (retry limit reached): release it and count the loss.
    pub fn discard(&mut self, chunk: Chunk) {
        self.dropped_chunks += 1;
        self.dropped_events += chunk.count as u64;
        self.commit(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::{encode, EventTime, Mode, Options};

    fn batch(tag: &str, n: u32) -> EventBatch {
        let mut e = Vec::new();
        for i in 0..n {
            encode::entry(&mut e, EventTime::new(i, 0), encode::TimeFormat::EventTime, &[0x81, 0xa1, b'k', 0x01]);
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

    #[test]
    fn appends_rotate_and_account() {
        let conf = BufferConf { chunk_limit_size: 100, total_limit_size: 1000, ..Default::default() };
        let mut b = MemoryBuffer::new(conf, 0);
        let one = batch("a", 5); // 5 * 15 = 75 bytes
        b.append(&one).unwrap();
        b.append(&one).unwrap(); // does not fit: first chunk queued
        assert_eq!(b.queued_chunks(), 1);
        assert_eq!(b.total_bytes(), 150);
        b.enqueue_due(Instant::now(), true);
        assert_eq!(b.queued_chunks(), 2);
        let c = b.take().unwrap();
        assert_eq!(c.count, 5);
        b.commit(c);
        assert_eq!(b.total_bytes(), 75);
    }

    #[test]
    fn overflow_rejects_whole_batch() {
        let conf = BufferConf { chunk_limit_size: 100, total_limit_size: 100, ..Default::default() };
        let mut b = MemoryBuffer::new(conf, 0);
        b.append(&batch("a", 5)).unwrap();
        assert_eq!(b.append(&batch("a", 5)), Err(BufferError::Overflow { limit: 100 }));
        assert_eq!(b.total_bytes(), 75);
    }

    #[test]
    fn drop_oldest_makes_room() {
        let conf = BufferConf {
            chunk_limit_size: 75,
            total_limit_size: 150,
            overflow_action: OverflowAction::DropOldestChunk,
            ..Default::default()
        };
        let mut b = MemoryBuffer::new(conf, 0);
        for _ in 0..3 {
            b.append(&batch("a", 5)).unwrap();
        }
        assert_eq!(b.dropped_chunks, 1);
        assert_eq!(b.total_bytes(), 150);
    }

    #[test]
    fn oversized_batch_is_split() {
        let conf = BufferConf { chunk_limit_size: 30, ..Default::default() };
        let mut b = MemoryBuffer::new(conf, 0);
        b.append(&batch("a", 5)).unwrap();
        b.enqueue_due(Instant::now(), true);
        let mut total = 0;
        while let Some(c) = b.take() {
            assert!(c.data.len() <= 30);
            total += c.count;
        }
        assert_eq!(total, 5);
    }
}
