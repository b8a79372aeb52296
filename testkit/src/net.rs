//! Loopback ports: a free one to configure a server with, and waiting until a started
//! process accepts connections on it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it), and that no
/// other caller in this process got before: tests run in parallel threads, the OS may
/// hand a released port out again, and spate binds with SO_REUSEPORT, so two tests
/// given one port would silently share it (each server getting some of the other's
/// connections).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let set = given.get_or_insert_with(HashSet::new);
        // Never loop for want of ports: forget old ones long before the range runs out.
        if set.len() >= 8192 {
            set.clear();
        }
        if set.insert(port) {
            return port;
        }
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Why a process never accepted connections.
#[derive(Debug, thiserror::Error)]
pub enum NotListening {
    /// The process ended first.
    #[error("exited before listening: {0}")]
    Exited(ExitStatus),
    /// Nothing accepted connections in time.
    #[error("did not listen on port {port} within {within:?}")]
    Timeout {
        /// The port polled.
        port: u16,
        /// How long it was polled.
        within: Duration,
    },
}

/// Polls until something accepts a TCP connection on `127.0.0.1:port`, giving up after
/// `within` or as soon as `child` (the process expected to listen) exits.
pub fn wait_listening(port: u16, child: &mut Child, within: Duration) -> Result<(), NotListening> {
    let end = Instant::now() + within;
    loop {
        if TcpStream::connect(loopback(port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(NotListening::Exited(st));
        }
        if Instant::now() >= end {
            return Err(NotListening::Timeout { port, within });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
