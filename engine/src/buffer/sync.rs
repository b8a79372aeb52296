//! The shard's group commit for file buffers, and the one-shot [`Notify`] the flush
//! tasks sleep on.
//!
//! Every append to a file buffer bumps the shard's `written` epoch and wakes the commit
//! task. The task takes every chunk's unwritten entries (from all file buffers of the
//! shard), writes and fdatasyncs them on glommio's blocking pool, and then marks every
//! epoch up to the one it started with as durable (or failed). Appends that arrive
//! while a commit runs wait for the next one, so one fsync per file covers all writes
//! since the previous commit. in_forward waits for [`Syncer::wait`] before it sends
//! acks; with no file buffer the epochs never move and nothing waits.
//!
//! A commit can also carry what must become durable *after* its events and never
//! before them ([`Follower`]: in_forward's log of acked frame ids, see
//! `input/forward/dedup`). The blocking part runs in this order: every buffer writes its
//! segments (page cache), then the followers write (only if every event write
//! succeeded), then every buffer fdatasyncs, then the followers seal (a mark and their
//! own fdatasync when the events are durable; take back what they wrote when not).
//! So a follower's record is never on disk without its events after a `kill -9` (the
//! page cache keeps write order), and after a power loss only sealed records count.
//! The other way round (events on disk without the follower's record, a `kill -9`
//! between the two writes) is closed by [`super::journal`]: a journaling follower
//! writes a begin record before the buffers write, their segments carry the commit's
//! tag, and a restart cuts the segments of a commit that began and did not end.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A one-shot wake-up for one waiting task.
#[derive(Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for a notification or `dur`, whichever comes first.
    pub async fn wait(&self, dur: Duration) {
        struct W<'a>(&'a Notify);
        impl Future for W<'_> {
            type Output = glommio::Result<(), ()>;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                if self.0.flag.replace(false) {
                    Poll::Ready(Ok(()))
                } else {
                    self.0.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        }
        let _ = glommio::timer::timeout(dur, W(self)).await;
    }
}

/// Group-commit counters (shard-local).
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncStats {
    pub commits: u64,
    pub chunks_written: u64,
    pub bytes_written: u64,
    pub failures: u64,
}

/// What the group commit needs of a file buffer: the blocking work for its dirty
/// chunks, and a place to apply the outcome. The file buffer's queue implements it;
/// this file knows nothing of chunks or files.
pub trait CommitSource {
    /// Takes the buffer's unwritten entries as blocking work (`None`: nothing dirty).
    /// `tag`: the commit's identity when a follower journals it (see
    /// [`super::journal`]); the segments written carry it.
    fn prepare(&mut self, tag: Option<super::journal::CommitTag>) -> Option<Box<dyn CommitWork>>;
    /// Applies the finished work on the shard. `Err(reason)`: some of it was not
    /// stored; the events of this commit must not be acked.
    fn finish(&mut self, work: Box<dyn CommitWork>) -> Result<(), String>;
}

/// The blocking part of one buffer's share of a commit (writes and fdatasyncs).
pub trait CommitWork: Send {
    /// Writes (page cache). Runs on the blocking pool.
    fn write(&mut self);
    /// Makes what [`CommitWork::write`] wrote durable. Runs on the blocking pool after
    /// every buffer's write and the followers' writes.
    fn sync(&mut self);
    /// (chunks written, bytes written, failed writes), for the commit statistics.
    fn written(&self) -> (u64, u64, u64);
    /// For [`CommitSource::finish`] to get its own type back.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// What becomes durable after the events of a commit, never before them (see the
/// module doc). Shard-local, like the buffers.
pub trait Follower {
    /// Takes what waits for the next commit (`None`: nothing). `failed_upto`: the last
    /// epoch of the newest failed commit (0: none yet); whatever followed events
    /// appended at or before it must be dropped, not written.
    fn prepare(&mut self, failed_upto: u64) -> Option<Box<dyn FollowWork>>;
    /// Applies the outcome on the shard: `durable` says whether every event of the
    /// commit is durable.
    fn finish(&mut self, work: Box<dyn FollowWork>, durable: bool);
}

/// The blocking part of a follower's share of a commit.
pub trait FollowWork: Send {
    /// Whether [`FollowWork::begin`] writes a record that brackets the commit (see
    /// [`super::journal`]).
    fn journals(&self) -> bool {
        false
    }
    /// Before any buffer writes: marks commit `tag` as begun.
    fn begin(&mut self, _tag: super::journal::CommitTag) {}
    /// After every buffer wrote its segments; `written`: all of them succeeded (if not,
    /// nothing may be written).
    fn write(&mut self, written: bool);
    /// After every buffer's fdatasync; `durable`: all of them succeeded.
    fn seal(&mut self, durable: bool);
    /// For [`Follower::finish`] to get its own type back.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// A registered file buffer and the flush task to wake after commits.
type Registered = (Weak<RefCell<dyn CommitSource>>, Weak<Notify>);

/// One shard's group commit.
#[derive(Default)]
pub struct Syncer {
    written: Cell<u64>,
    durable: Cell<u64>,
    /// Epoch ranges whose commit failed (newest last; a few are enough: waiters
    /// check right after the commit that covers them).
    failed: RefCell<VecDeque<(u64, u64, String)>>,
    buffers: RefCell<Vec<Registered>>,
    followers: RefCell<Vec<Weak<RefCell<dyn Follower>>>>,
    /// The last epoch of the newest failed commit (0: none).
    failed_upto: Cell<u64>,
    kick: Notify,
    waiters: RefCell<Vec<Waker>>,
    started: Cell<bool>,
    stats: Cell<SyncStats>,
    /// Duration of each group commit.
    pub latency: crate::metrics::Histogram,
    /// This shard's generation in commit tags ([`super::journal`]).
    generation: Cell<u64>,
}

impl Syncer {
    /// The syncer of shard `shard`.
    pub fn for_shard(shard: u32) -> Syncer {
        let s = Syncer::default();
        s.generation.set(super::journal::generation(shard));
        s
    }

    /// An append went to a file buffer: it needs a commit.
    #[inline]
    pub fn written(&self) {
        self.written.set(self.written.get() + 1);
        self.kick.notify();
    }

    /// The epoch the next append will have: an input notes it before routing a frame,
    /// to check later that no commit since then failed ([`Syncer::wait_since`]).
    #[inline]
    pub fn next_epoch(&self) -> u64 {
        self.written.get() + 1
    }

    /// The epoch of the latest append (0: none yet).
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.written.get()
    }

    /// The epoch to wait for if anything written is not durable yet.
    #[inline]
    pub fn pending(&self) -> Option<u64> {
        let w = self.written.get();
        (w > self.durable.get()).then_some(w)
    }

    pub fn stats(&self) -> SyncStats {
        self.stats.get()
    }

    /// The shard values of the group commit (for the metrics endpoints).
    pub fn samples(&self) -> Vec<crate::metrics::Sample> {
        use crate::metrics::{Sample, Value};
        let st = self.stats.get();
        let c = |name: &str, help: &str, v: u64| Sample {
            name: name.into(),
            help: help.into(),
            labels: Vec::new(),
            value: Value::Counter(v as f64),
        };
        vec![
            c("group_commits", "Group commits of file buffers (one fdatasync per file touched).", st.commits),
            c("group_commit_failures", "Chunk writes a group commit could not make durable.", st.failures),
            c("fsync_bytes", "Bytes written and fdatasynced by group commits.", st.bytes_written),
            c("fsync_chunks", "Chunk files written by group commits.", st.chunks_written),
            Sample {
                name: "group_commit_duration_seconds".into(),
                help: "Time of a group commit (write + fdatasync).".into(),
                labels: Vec::new(),
                value: Value::Histogram(self.latency.snapshot()),
            },
        ]
    }

    /// Registers a file buffer and the flush task to wake when its chunks become
    /// durable (again after a reload handed the buffer to a new output: the new flush
    /// task replaces the old); starts the commit task on first use.
    pub fn register(self: &Rc<Self>, buffer: Rc<RefCell<dyn CommitSource>>, flusher: &Rc<Notify>) {
        {
            let mut regs = self.buffers.borrow_mut();
            let same = |b: &Weak<RefCell<dyn CommitSource>>| std::ptr::addr_eq(b.as_ptr(), Rc::as_ptr(&buffer));
            regs.retain(|(b, _)| b.strong_count() > 0 && !same(b));
            regs.push((Rc::downgrade(&buffer), Rc::downgrade(flusher)));
        }
        if !self.started.replace(true) {
            let me = self.clone();
            glommio::spawn_local(async move { me.run().await }).detach();
        }
    }

    /// Registers a follower (see the module doc); starts the commit task on first use.
    pub fn register_follower(self: &Rc<Self>, f: Rc<RefCell<dyn Follower>>) {
        self.followers.borrow_mut().push(Rc::downgrade(&f));
        if !self.started.replace(true) {
            let me = self.clone();
            glommio::spawn_local(async move { me.run().await }).detach();
        }
    }

    /// Waits until everything written up to `epoch` is durable. `Err`: the commit
    /// covering it failed; the events must not be acked.
    pub async fn wait(&self, epoch: u64) -> Result<(), String> {
        self.wait_since(epoch, epoch).await
    }

    /// Waits until everything written up to `epoch` is durable. `Err`: a commit
    /// covering any epoch from `first` to `epoch` failed (a frame routed across several
    /// commits, such as a compressed one inflated a slice at a time, is acked only if
    /// all of them succeeded).
    pub async fn wait_since(&self, first: u64, epoch: u64) -> Result<(), String> {
        struct W<'a>(&'a Syncer, u64);
        impl Future for W<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.0.durable.get() >= self.1 {
                    Poll::Ready(())
                } else {
                    self.0.waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
        W(self, epoch).await;
        for (from, to, why) in self.failed.borrow().iter() {
            if *from <= epoch && *to >= first {
                return Err(why.clone());
            }
        }
        Ok(())
    }

    /// Commits whatever is pending now (shutdown).
    pub async fn sync_now(&self) -> Result<(), String> {
        match self.pending() {
            Some(e) => {
                self.kick.notify();
                self.wait(e).await
            }
            None => Ok(()),
        }
    }

    async fn run(self: Rc<Self>) {
        loop {
            if self.written.get() == self.durable.get() {
                self.kick.wait(Duration::from_secs(1)).await;
                continue;
            }
            let target = self.written.get();
            let t0 = std::time::Instant::now();
            let r = self.commit(target).await;
            self.latency.observe_duration(t0.elapsed());
            let from = self.durable.get() + 1;
            if let Err(why) = r {
                self.failed_upto.set(target);
                let mut f = self.failed.borrow_mut();
                f.push_back((from, target, why));
                while f.len() > 64 {
                    f.pop_front();
                }
            }
            self.durable.set(target);
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// One group commit over every registered buffer, and then its followers.
    /// `target`: the newest epoch it covers (with the generation, its tag).
    async fn commit(&self, target: u64) -> Result<(), String> {
        // Followers first (all of this runs without yielding, so the order changes
        // nothing about what is taken): whether one journals decides the segments' tag.
        let mut follows = Vec::new();
        let mut followers = Vec::new();
        {
            let mut regs = self.followers.borrow_mut();
            regs.retain(|f| f.strong_count() > 0);
            for f in regs.iter().filter_map(Weak::upgrade) {
                let work = f.borrow_mut().prepare(self.failed_upto.get());
                if let Some(w) = work {
                    follows.push(w);
                    followers.push(f);
                }
            }
        }
        let tag = follows.iter().any(|f| f.journals()).then(|| (self.generation.get(), target));
        let mut works = Vec::new();
        let mut owners = Vec::new();
        let mut flushers = Vec::new();
        {
            let mut regs = self.buffers.borrow_mut();
            regs.retain(|(b, _)| b.strong_count() > 0);
            for (b, n) in regs.iter() {
                if let Some(b) = b.upgrade() {
                    let work = b.borrow_mut().prepare(tag);
                    if let Some(w) = work {
                        works.push(w);
                        owners.push(b);
                    }
                    flushers.push(n.clone());
                }
            }
        }
        if works.is_empty() && follows.is_empty() {
            return Ok(());
        }
        let (works, follows, durable) = glommio::executor()
            .spawn_blocking(move || {
                let (mut works, mut follows) = (works, follows);
                if let Some(tag) = tag {
                    for f in follows.iter_mut() {
                        f.begin(tag);
                    }
                }
                for w in works.iter_mut() {
                    w.write();
                }
                let ok = |works: &[Box<dyn CommitWork>]| works.iter().all(|w| w.written().2 == 0);
                let written = ok(&works);
                for f in follows.iter_mut() {
                    f.write(written);
                }
                for w in works.iter_mut() {
                    w.sync();
                }
                let durable = written && ok(&works);
                for f in follows.iter_mut() {
                    f.seal(durable);
                }
                (works, follows, durable)
            })
            .await;
        let mut st = self.stats.get();
        st.commits += 1;
        let mut first_err = None;
        for (w, b) in works.into_iter().zip(owners) {
            let (chunks, bytes, failures) = w.written();
            st.chunks_written += chunks;
            st.bytes_written += bytes;
            st.failures += failures;
            if let Err(e) = b.borrow_mut().finish(w) {
                first_err.get_or_insert(e);
            }
        }
        for (w, f) in follows.into_iter().zip(followers) {
            f.borrow_mut().finish(w, durable && first_err.is_none());
        }
        self.stats.set(st);
        for n in &flushers {
            if let Some(n) = n.upgrade() {
                n.notify();
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
