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
    let mut v = Vec::new();
    SOCKET_MAP.for_each_live(|s| {
        if s.remote().map(|a| a.port()) == Some(port) {
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
