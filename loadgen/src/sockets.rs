//! Non-blocking connects for the event loops, with a chosen source address when many
//! connections go to one loopback target. Linux picks a connect()'s source port by
//! scanning its ephemeral range for a free (source, destination) pair, even ports first:
//! past ~14,000 connections to one destination every connect scans the used half (and
//! took a second per batch of 128 connects on this machine). Spreading connections over
//! source addresses 127.0.0.1, 127.0.0.2, ... (all local on Linux) gives each its own
//! range, so 20,000 connections to one loopback port connect as fast as the first ones.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;

/// Connections per source address before the next one is used.
pub const PER_SOURCE: u32 = 10_000;

/// The source address for the `nth` connection to `dst` (None: let the kernel choose).
pub fn source_for(nth: u32, dst: SocketAddr) -> Option<Ipv4Addr> {
    match dst {
        SocketAddr::V4(d) if d.ip().is_loopback() && nth >= PER_SOURCE => {
            let k = (nth / PER_SOURCE).min(250) as u8;
            Some(Ipv4Addr::new(127, 0, 0, 1 + k))
        }
        _ => None,
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    }
}

/// Starts a non-blocking connect to `dst`, from `src` if given.
pub fn connect(dst: SocketAddr, src: Option<Ipv4Addr>) -> io::Result<mio::net::TcpStream> {
    let (Some(src), SocketAddr::V4(d)) = (src, dst) else { return mio::net::TcpStream::connect(dst) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns (wrapped in a
    // TcpStream right away, so it is closed on every error path); the addresses are
    // valid sockaddr_in values of the length passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let s = std::net::TcpStream::from_raw_fd(fd);
        // The port is chosen at connect(), for the full 4-tuple, not at bind().
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = sockaddr(src, 0);
        if libc::bind(fd, &sa as *const libc::sockaddr_in as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let da = sockaddr(*d.ip(), d.port());
        if libc::connect(fd, &da as *const libc::sockaddr_in as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(mio::net::TcpStream::from_std(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_past_the_first_ten_thousand_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:24224".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:24224".parse().unwrap();
        assert_eq!(source_for(9_999, lo), None);
        assert_eq!(source_for(10_000, lo), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(25_000, lo), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(source_for(25_000, remote), None);
        // A connect from 127.0.0.2 reaches a listener on 127.0.0.1.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = connect(l.local_addr().unwrap(), Some(Ipv4Addr::new(127, 0, 0, 2))).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        drop(s);
    }
}
