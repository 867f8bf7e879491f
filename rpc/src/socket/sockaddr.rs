//! Conversions between [`SocketAddr`] and the C socket address structs, and the small socket
//! syscalls the server and channel share (listen, accept, connect).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// `addr` as a `sockaddr_storage` and its length.
pub(crate) fn to_c(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut st as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (&mut st as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// The address in `st`, if it is IPv4 or IPv6.
pub(crate) fn from_c(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(st.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new non-blocking, close-on-exec TCP socket for `addr`'s family.
pub(crate) fn tcp_socket(addr: &SocketAddr) -> io::Result<RawFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall.
    cvt(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
}

/// Closes `fd` (for fds not yet owned by a `Socket`).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe { libc::close(fd) };
}

/// A non-blocking listening socket bound to `addr` (`SO_REUSEADDR`), and its bound address.
pub(crate) fn listen(addr: &SocketAddr, backlog: i32) -> io::Result<(RawFd, SocketAddr)> {
    let fd = tcp_socket(addr)?;
    let result = (|| {
        super::socket::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        let (st, len) = to_c(addr);
        // SAFETY: `st` holds a valid address of `len` bytes.
        cvt(unsafe { libc::bind(fd, (&st as *const libc::sockaddr_storage).cast(), len) })?;
        // SAFETY: plain syscall.
        cvt(unsafe { libc::listen(fd, backlog) })?;
        local_addr(fd)
    })();
    match result {
        Ok(a) => Ok((fd, a)),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// `getsockname`.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `st`/`len` describe a writable buffer of `len` bytes.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_c(&st).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

/// Accepts one connection (non-blocking, close-on-exec); `WouldBlock` when none is pending.
pub(crate) fn accept(listen_fd: RawFd) -> io::Result<(RawFd, Option<SocketAddr>)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    loop {
        // SAFETY: `st`/`len` describe a writable buffer of `len` bytes.
        let rc = unsafe {
            libc::accept4(
                listen_fd,
                (&mut st as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        match cvt(rc) {
            Ok(fd) => return Ok((fd, from_c(&st))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Starts a non-blocking connect; `Ok(true)` if already connected, `Ok(false)` if in progress.
pub(crate) fn start_connect(fd: RawFd, addr: &SocketAddr) -> io::Result<bool> {
    let (st, len) = to_c(addr);
    // SAFETY: `st` holds a valid address of `len` bytes.
    let rc = unsafe { libc::connect(fd, (&st as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether `fd` is writable now (a connect finished, successfully or not).
pub(crate) fn poll_writable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one live pollfd, timeout 0 (never blocks).
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc > 0 && p.revents != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:8080", "[::1]:9", "[fe80::1%2]:443", "0.0.0.0:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let (st, _) = to_c(&a);
            assert_eq!(from_c(&st), Some(a));
        }
    }
}
