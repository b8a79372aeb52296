//! The window of acked frame ids one in_forward shares between its shards: which ids
//! were stored (and are durable), which are being stored right now, bounded by count
//! and age.
//!
//! Shared, not per shard: a sender that reconnects after a crash lands on whichever
//! shard the kernel hashes its new connection to (SO_REUSEPORT), so every shard must
//! see every shard's ids. It is touched once or twice per *frame* (claim, then settle
//! at the end of the group commit), never per event: a frame from spate's out_forward
//! carries up to 16 KiB of events, so a mutex per frame costs nothing next to routing
//! them. (A Message-mode client that asks for an ack per event pays it per event: that
//! is the price of its one-event frames anyway.)
//!
//! Keys are [`Key`]s: the first 16 bytes of SHA-256 over the source and the frame's ack
//! id (see `super::key`), so an entry is a fixed 16 bytes whatever the client sent, and
//! no client can steer two ids onto one key. Eviction is first-in first-out: an id
//! leaves the window once `size` newer ids arrived (from all sources together) or it is
//! older than `age`; a resend after that is stored again (a duplicate, never a loss).
//! Memory: about 70 bytes per id held (the map entry and the FIFO slot), so the
//! default 100,000 ids take about 7 MB once full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// A frame's identity in the window.
pub type Key = [u8; 16];

/// What [`Window::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not in the window: the caller stores the frame; `seq` names this claim (for
    /// [`Window::settle`]).
    New(u64),
    /// Another copy of this frame is being stored right now (its group commit has not
    /// finished): wait, then claim again.
    Pending,
    /// Stored and durable: ack without storing again.
    Durable,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    durable: bool,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Slot>,
    /// (key, seq, unix seconds) in claim order; an entry whose key now maps to another
    /// seq (released and claimed again) is stale and only counts until it is popped.
    fifo: VecDeque<(Key, u64, u64)>,
    next_seq: u64,
}

impl Inner {
    fn evict(&mut self, size: usize, oldest: u64) {
        while let Some(&(k, seq, secs)) = self.fifo.front() {
            if self.fifo.len() <= size && secs >= oldest {
                break;
            }
            self.fifo.pop_front();
            if self.map.get(&k).is_some_and(|s| s.seq == seq) {
                self.map.remove(&k);
            }
        }
    }
}

/// The shared window (see the module doc).
#[derive(Debug)]
pub struct Window {
    inner: Mutex<Inner>,
    size: usize,
    age_secs: u64,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Window {
    /// A window of at most `size` ids, none older than `age_secs`.
    pub fn new(size: usize, age_secs: u64) -> Self {
        Window { inner: Mutex::new(Inner { next_seq: 1, ..Inner::default() }), size: size.max(1), age_secs }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (every update
        // is a few map/deque operations); keep going rather than spread the panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn oldest(&self, now: u64) -> u64 {
        now.saturating_sub(self.age_secs)
    }

    /// Looks `key` up and, when it is not there, claims it for the caller (pending
    /// until [`Window::settle`]). Atomic: of two copies of a frame arriving on two
    /// shards at once, one is stored and the other waits.
    pub fn claim(&self, key: &Key, now: u64) -> Claim {
        let mut g = self.lock();
        g.evict(self.size, self.oldest(now));
        if let Some(s) = g.map.get(key) {
            return if s.durable { Claim::Durable } else { Claim::Pending };
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.map.insert(*key, Slot { seq, durable: false });
        g.fifo.push_back((*key, seq, now));
        g.evict(self.size, self.oldest(now));
        Claim::New(seq)
    }

    /// Ends claims: `durable` makes them dedup hits from now on; otherwise they are
    /// forgotten (the frame was not stored; its resend must be stored). A claim evicted
    /// meanwhile is left out.
    pub fn settle(&self, claims: impl IntoIterator<Item = (Key, u64)>, durable: bool) {
        let mut g = self.lock();
        for (k, seq) in claims {
            match g.map.get_mut(&k) {
                Some(s) if s.seq == seq => {
                    if durable {
                        s.durable = true;
                    } else {
                        g.map.remove(&k);
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether a frame with `key` is being stored right now.
    pub fn is_pending(&self, key: &Key) -> bool {
        self.lock().map.get(key).is_some_and(|s| !s.durable)
    }

    /// The lowest sequence number still in the window (ids below it were evicted): a
    /// log segment whose newest id is below it can be deleted.
    pub fn horizon(&self, now: u64) -> u64 {
        let mut g = self.lock();
        g.evict(self.size, self.oldest(now));
        g.fifo.front().map_or(g.next_seq, |e| e.1)
    }

    /// Whether a log segment whose newest id has `max_seq` and was claimed at
    /// `max_secs` holds nothing the window still needs.
    pub fn outlived(&self, max_seq: u64, max_secs: u64, now: u64) -> bool {
        max_seq < self.horizon(now) || max_secs < self.oldest(now)
    }

    /// Fills the window with durable ids read back from the logs at start, `(key, seq,
    /// unix seconds)` in any order: the newest `size` within `age` are kept, and new
    /// claims number on after the highest seq.
    pub fn load(&self, mut ids: Vec<(Key, u64, u64)>, now: u64) -> usize {
        ids.sort_unstable_by_key(|e| e.1);
        let mut g = self.lock();
        let oldest = self.oldest(now);
        let skip = ids.len().saturating_sub(self.size);
        for &(k, seq, secs) in ids.iter().skip(skip).filter(|e| e.2 >= oldest) {
            g.map.insert(k, Slot { seq, durable: true });
            g.fifo.push_back((k, seq, secs));
        }
        if let Some(last) = ids.last() {
            g.next_seq = g.next_seq.max(last.1 + 1);
        }
        g.map.len()
    }

    /// Ids held (durable or pending).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u8) -> Key {
        [i; 16]
    }

    #[test]
    fn claim_settle_and_release() {
        let w = Window::new(10, 3600);
        let Claim::New(s1) = w.claim(&k(1), 100) else { panic!("new") };
        assert_eq!(w.claim(&k(1), 100), Claim::Pending, "a second copy waits while the first is stored");
        assert!(w.is_pending(&k(1)));
        w.settle([(k(1), s1)], true);
        assert_eq!(w.claim(&k(1), 101), Claim::Durable);
        // A failed store forgets the claim: the resend is stored.
        let Claim::New(s2) = w.claim(&k(2), 101) else { panic!("new") };
        w.settle([(k(2), s2)], false);
        assert!(matches!(w.claim(&k(2), 102), Claim::New(_)));
        // A stale settle (another claim of the same key since) changes nothing.
        w.settle([(k(2), s2)], true);
        assert_eq!(w.claim(&k(2), 102), Claim::Pending);
    }

    #[test]
    fn bounded_by_count_then_stored_again() {
        let w = Window::new(3, 3600);
        for i in 0..5u8 {
            let Claim::New(s) = w.claim(&k(i), 100) else { panic!() };
            w.settle([(k(i), s)], true);
        }
        assert_eq!(w.len(), 3, "only the newest 3 ids are held");
        assert!(matches!(w.claim(&k(0), 100), Claim::New(_)), "an evicted id is stored again");
        assert_eq!(w.claim(&k(4), 100), Claim::Durable);
        // Evicting a pending claim: its settle is ignored, the key is simply unknown.
        let w = Window::new(1, 3600);
        let Claim::New(s) = w.claim(&k(7), 100) else { panic!() };
        let _ = w.claim(&k(8), 100);
        w.settle([(k(7), s)], true);
        assert!(matches!(w.claim(&k(7), 100), Claim::New(_)));
    }

    #[test]
    fn bounded_by_age() {
        let w = Window::new(100, 60);
        let Claim::New(s) = w.claim(&k(1), 1_000) else { panic!() };
        w.settle([(k(1), s)], true);
        assert_eq!(w.claim(&k(1), 1_059), Claim::Durable);
        assert!(matches!(w.claim(&k(1), 1_061), Claim::New(_)), "older than the window: stored again");
        assert!(w.outlived(s, 1_000, 1_061));
    }

    #[test]
    fn load_keeps_the_newest_and_numbers_on() {
        let w = Window::new(2, 3600);
        let n = w.load(vec![(k(3), 30, 1_000), (k(1), 10, 1_000), (k(2), 20, 1_000)], 1_000);
        assert_eq!(n, 2);
        assert_eq!(w.claim(&k(2), 1_000), Claim::Durable);
        assert_eq!(w.claim(&k(3), 1_000), Claim::Durable);
        assert!(matches!(w.claim(&k(1), 1_000), Claim::New(31)), "seqs continue after the loaded ones");
        // Ids older than the window are not loaded.
        let w = Window::new(10, 60);
        assert_eq!(w.load(vec![(k(1), 1, 100), (k(2), 2, 1_000)], 1_000), 1);
    }
}
