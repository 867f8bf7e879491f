//! Shared by the RDMA end-to-end tests: which sockets run on RDMA, raw handshake peers.
#![allow(dead_code)]

use spindle_rpc::socket::SOCKET_MAP;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How many live sockets of the process run on RDMA.
pub fn rdma_sockets() -> usize {
    let mut n = 0;
    SOCKET_MAP.for_each_live(|s| {
        if s.transport.rdma_endpoint().is_some() {
            n += 1;
        }
    });
    n
}

/// The transports of the live sockets whose peer or local port is `port` (both ends of a
/// loopback connection, listener excluded).
pub fn transports_of(port: u16) -> Vec<String> {
    // A server's connections have the client's port as remote: find them by local port.
    let mut v = Vec::new();
    SOCKET_MAP.for_each_live(|s| {
        let local = s.local_addr().map(|a| a.port());
        let listener = s.remote().map(|a| a.port()) == Some(port) && local == Some(port);
        if !listener && (s.remote().map(|a| a.port()) == Some(port) || local == Some(port)) {
            v.push(s.transport.describe());
        }
    });
    v
}

/// A blocking TCP connection with a read timeout, for raw handshake peers.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

/// Reads exactly `n` bytes.
pub fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    c.read_exact(&mut b).unwrap();
    b
}

/// `GET /health` over `c` (the server's builtin page): the connection still speaks TCP.
pub fn http_health(c: &mut TcpStream) -> String {
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until EOF (or a reset); returns the bytes read.
pub fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Registered pools of 64 MiB (the default 1 GiB is a lot for a test machine); before the
/// first RDMA use of the process.
pub fn setup_small_pools() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        spindle_runtime::flags::set("rdma_memory_pool_initial_size_mb", "64").unwrap();
        spindle_runtime::flags::set("rdma_memory_pool_increase_size_mb", "64").unwrap();
    });
}

/// `GET path` on a new connection; the whole response (`Connection: close`).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut c = raw(addr);
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    String::from_utf8_lossy(&read_to_close(&mut c)).into_owned()
}
