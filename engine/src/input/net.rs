//! Sockets shared by the network inputs: every shard binds its own listener on the same
//! port (SO_REUSEPORT), so the kernel spreads connections over shards.

use std::net::SocketAddr;

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
