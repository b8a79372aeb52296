//! Sockets shared by the network inputs: every shard binds its own listener on the same
//! port (SO_REUSEPORT), so the kernel spreads connections over shards.
//!
//! [`listen`] keeps each shard's listening sockets in a per-shard pool (a thread-local:
//! one glommio executor per thread), with one accept task per socket feeding a small
//! queue. An input takes connections from the queue; when a reload replaces the input,
//! the socket and its queue stay: connections that arrive during the swap wait in the
//! queue (or the kernel's backlog) for the new input, so nothing is refused. Sockets no
//! input holds any more are closed by [`release_unused`] once a reload is done.
//!
//! [`take_turns`] keeps one busy connection from holding its shard: the connection
//! loops of in_forward and in_tcp call it after each read they handled.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::buffer::sync::Notify;

/// Binds a listening socket with SO_REUSEPORT (every shard binds the same port).
pub fn bind_tcp(addr: SocketAddr, backlog: Option<i32>) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    // fluentd's default backlog is the OS default (SOMAXCONN).
    s.listen(backlog.unwrap_or(libc::SOMAXCONN))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Connections accepted but not yet taken by an input; beyond this the accept task
/// waits and the kernel's backlog holds the rest.
const MAX_QUEUED: usize = 64;

struct Shared {
    local: SocketAddr,
    queue: RefCell<VecDeque<TcpStream>>,
    waiters: RefCell<Vec<Waker>>,
    room: Notify,
    holders: Cell<usize>,
    task: RefCell<Option<JoinHandle<()>>>,
}

impl Shared {
    fn wake(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

thread_local! {
    static POOL: RefCell<HashMap<SocketAddr, Rc<Shared>>> = RefCell::new(HashMap::new());
}

/// A shard's hold on a pooled listening socket. Dropping it releases the hold; the
/// socket stays open until [`release_unused`].
pub struct Listener(Rc<Shared>);

impl Listener {
    /// The bound address (with the real port when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local
    }

    /// The next connection. Cancel-safe: a connection is taken from the queue only
    /// when this returns it.
    pub fn accept(&self) -> impl Future<Output = TcpStream> + '_ {
        struct A<'a>(&'a Shared);
        impl Future for A<'_> {
            type Output = TcpStream;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TcpStream> {
                if let Some(s) = self.0.queue.borrow_mut().pop_front() {
                    self.0.room.notify();
                    return Poll::Ready(s);
                }
                self.0.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        }
        A(&self.0)
    }

    /// Puts back a connection the caller accepted but will not serve (it is stopping):
    /// the next holder gets it.
    pub fn give_back(&self, s: TcpStream) {
        self.0.queue.borrow_mut().push_front(s);
        self.0.wake();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.holders.set(self.0.holders.get().saturating_sub(1));
    }
}

/// A listening socket on `addr` for this shard: the pooled one when this shard already
/// listens there (a reload), else a new SO_REUSEPORT socket. Port 0 always binds a new
/// socket.
pub fn listen(addr: SocketAddr, backlog: Option<i32>) -> std::io::Result<Listener> {
    if addr.port() != 0 {
        if let Some(s) = POOL.with(|p| p.borrow().get(&addr).cloned()) {
            s.holders.set(s.holders.get() + 1);
            return Ok(Listener(s));
        }
    }
    let std_l = bind_tcp(addr, backlog)?;
    let local = std_l.local_addr()?;
    // SAFETY: the fd comes from a listening, non-blocking socket we own.
    let l = unsafe { glommio::net::TcpListener::from_raw_fd(std_l.into_raw_fd()) };
    let shared = Rc::new(Shared {
        local,
        queue: RefCell::new(VecDeque::new()),
        waiters: RefCell::new(Vec::new()),
        room: Notify::default(),
        holders: Cell::new(1),
        task: RefCell::new(None),
    });
    let weak = Rc::downgrade(&shared);
    let task = glommio::spawn_local(async move {
        loop {
            let Some(s) = weak.upgrade() else { return };
            if s.queue.borrow().len() >= MAX_QUEUED {
                s.room.wait(Duration::from_millis(100)).await;
                continue;
            }
            drop(s);
            let r = l.accept().await;
            let Some(s) = weak.upgrade() else { return };
            match r {
                Ok(stream) => {
                    s.queue.borrow_mut().push_back(stream);
                    s.wake();
                }
                Err(e) => {
                    crate::warn!("accept on {} failed: {e}", s.local);
                    drop(s);
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .detach();
    *shared.task.borrow_mut() = Some(task);
    let key = if addr.port() == 0 { local } else { addr };
    POOL.with(|p| p.borrow_mut().insert(key, shared.clone()));
    Ok(Listener(shared))
}

/// Closes this shard's pooled sockets that no input holds (after a reload, at
/// shutdown). Connections still queued on them are closed.
pub fn release_unused() {
    let gone: Vec<Rc<Shared>> = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let keys: Vec<SocketAddr> = p.iter().filter(|(_, s)| s.holders.get() == 0).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| p.remove(&k)).collect()
    });
    for s in gone {
        if let Some(t) = s.task.borrow_mut().take() {
            t.cancel();
        }
        s.queue.borrow_mut().clear();
    }
}

/// How long a connection keeps its shard before letting the shard's other connections
/// run (see [`take_turns`]).
pub(crate) const TURN: Duration = Duration::from_millis(2);

/// Yields to the shard's other tasks once `turn` (when this connection last got the
/// shard) is [`TURN`] old. A connection loop calls it after each read it handled: under
/// load its next read finds data waiting (a non-blocking recv) and never yields, so a
/// sender that keeps data coming kept the shard to itself. In S3 (4 forward
/// connections) some frames waited 1-6 s for their ack and one connection got 3-15x
/// another's events; with 2 ms turns the slowest ack was 110-170 ms and the connections
/// got within 1.2x of each other. Not after every read: that cost S3 15-19% by hand. At
/// overload the turns may still cost some throughput (S4 by hand, 6 alternated pairs:
/// 7.29 M mean without, 6.73 M with; within this VM's noise, 10 ms turns did not
/// measurably differ), which fairness is worth.
pub(crate) async fn take_turns(turn: &mut std::time::Instant, now: std::time::Instant) {
    if now.duration_since(*turn) >= TURN {
        futures_lite::future::yield_now().await;
        *turn = std::time::Instant::now();
    }
}
