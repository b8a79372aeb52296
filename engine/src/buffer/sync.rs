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
    fn prepare(&mut self) -> Option<Box<dyn CommitWork>>;
    /// Applies the finished work on the shard. `Err(reason)`: some of it was not
    /// stored; the events of this commit must not be acked.
    fn finish(&mut self, work: Box<dyn CommitWork>) -> Result<(), String>;
}

/// The blocking part of one buffer's share of a commit (writes and fdatasyncs).
pub trait CommitWork: Send {
    /// Runs on the blocking pool.
    fn run(&mut self);
    /// (chunks written, bytes written, failed writes), for the commit statistics.
    fn written(&self) -> (u64, u64, u64);
    /// For [`CommitSource::finish`] to get its own type back.
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
    kick: Notify,
    waiters: RefCell<Vec<Waker>>,
    started: Cell<bool>,
    stats: Cell<SyncStats>,
    /// Duration of each group commit.
    pub latency: crate::metrics::Histogram,
}

impl Syncer {
    /// An append went to a file buffer: it needs a commit.
    #[inline]
    pub fn written(&self) {
        self.written.set(self.written.get() + 1);
        self.kick.notify();
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

    /// Waits until everything written up to `epoch` is durable. `Err`: the commit
    /// covering it failed; the events must not be acked.
    pub async fn wait(&self, epoch: u64) -> Result<(), String> {
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
            if (*from..=*to).contains(&epoch) {
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
            let r = self.commit().await;
            self.latency.observe_duration(t0.elapsed());
            let from = self.durable.get() + 1;
            if let Err(why) = r {
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

    /// One group commit over every registered buffer.
    async fn commit(&self) -> Result<(), String> {
        let mut works = Vec::new();
        let mut owners = Vec::new();
        let mut flushers = Vec::new();
        {
            let mut regs = self.buffers.borrow_mut();
            regs.retain(|(b, _)| b.strong_count() > 0);
            for (b, n) in regs.iter() {
                if let Some(b) = b.upgrade() {
                    let work = b.borrow_mut().prepare();
                    if let Some(w) = work {
                        works.push(w);
                        owners.push(b);
                    }
                    flushers.push(n.clone());
                }
            }
        }
        if works.is_empty() {
            return Ok(());
        }
        let works = glommio::executor()
            .spawn_blocking(move || {
                let mut works = works;
                for w in works.iter_mut() {
                    w.run();
                }
                works
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
        self.stats.set(st);
        for n in &flushers {
            if let Some(n) = n.upgrade() {
                n.notify();
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
