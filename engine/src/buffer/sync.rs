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

use super::file;
use super::Buffer;

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

/// A registered file buffer, the flush task to wake after commits, and the output's id
/// (error lines name it).
type Registered = (Weak<RefCell<Buffer>>, Weak<Notify>, String);

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
    /// Duration of each group commit that wrote something.
    pub latency: crate::metrics::Histogram,
}

thread_local! {
    static SHARD: Rc<Syncer> = Rc::new(Syncer::default());
}

/// This shard's (thread's) group commit.
pub fn shard() -> Rc<Syncer> {
    SHARD.with(Rc::clone)
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

    /// Registers a file buffer of output `id` and the flush task to wake when its
    /// chunks become durable (again after a reload handed the buffer to a new output:
    /// the new flush task replaces the old); starts the commit task on first use.
    pub fn register(self: &Rc<Self>, buffer: &Rc<RefCell<Buffer>>, flusher: &Rc<Notify>, id: &str) {
        {
            let mut regs = self.buffers.borrow_mut();
            regs.retain(|(b, _, _)| b.strong_count() > 0 && !std::ptr::eq(b.as_ptr(), Rc::as_ptr(buffer)));
            regs.push((Rc::downgrade(buffer), Rc::downgrade(flusher), id.to_string()));
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
        let mut jobs = Vec::new();
        let mut live = Vec::new();
        {
            let mut regs = self.buffers.borrow_mut();
            regs.retain(|(b, _, _)| b.strong_count() > 0);
            for (i, (b, n, id)) in regs.iter().enumerate() {
                if let Some(b) = b.upgrade() {
                    for c in b.borrow_mut().dirty_chunks() {
                        if let Some(j) = file::job_for(i, c) {
                            jobs.push(j);
                        }
                    }
                    live.push((i, b, n.clone(), id.clone()));
                }
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let done = glommio::executor().spawn_blocking(move || file::run_jobs(jobs)).await;
        let mut st = self.stats.get();
        st.commits += 1;
        let mut first_err = None;
        for d in &done {
            st.chunks_written += 1;
            st.bytes_written += d.bytes as u64;
            let Some((_, b, _, id)) = live.iter().find(|(i, _, _, _)| *i == d.buffer) else { continue };
            let mut b = b.borrow_mut();
            match b.chunk_mut(&d.id) {
                Some(c) => file::apply(c, d),
                None => {
                    // The chunk was dropped meanwhile: its file goes too.
                    if d.created || d.file.is_some() {
                        if let Some(p) =
                            b.store.as_ref().map(|s| s.dir.join(format!("{}.chunk", spate_protocol::hex(&d.id))))
                        {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                }
            }
            if let Some(e) = &d.err {
                st.failures += 1;
                b.unaccount(d.bytes);
                crate::error!(
                    "{id}: file buffer: writing {} events to disk failed: {e}; they are not acked (clients resend)",
                    d.count
                );
                first_err.get_or_insert_with(|| e.clone());
            }
        }
        self.stats.set(st);
        for (_, _, n, _) in &live {
            if let Some(n) = n.upgrade() {
                n.notify();
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
