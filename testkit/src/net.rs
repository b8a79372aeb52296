//! Loopback ports: a free one to configure a server with, and waiting until a started
//! process accepts connections on it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free for TCP and UDP a moment ago, and that no other
/// caller in this process got before: tests run in parallel threads, and spate binds
/// with SO_REUSEPORT, so two tests given one port would silently share it (each server
/// getting some of the other's connections).
///
/// It is taken from just below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), not from it: a port the OS picked for a listener
/// and released could be given to an outgoing connection (spate's own out_forward, a
/// test's client) before the server under test binds it, which failed a CI run with
/// "Address already in use". Ports below the range are never picked for connections.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::net::UdpSocket;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // 10,000 ports below the range (fewer if it starts low).
    let from = low.saturating_sub(10_000).max(1024);
    let span = u32::from(low.saturating_sub(from)).max(1);
    // Where to start: differs between processes and calls.
    let mut rng = crate::rng::Rng(
        u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    for _ in 0..100_000 {
        let port = from + rng.below(span as usize) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let set = given.get_or_insert_with(HashSet::new);
        // Never loop for want of ports: forget old ones long before the span runs out.
        if set.len() >= span as usize / 2 {
            set.clear();
        }
        if set.contains(&port) {
            continue;
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            set.insert(port);
            return port;
        }
    }
    // Below the range is full: let the OS pick, as before.
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
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
