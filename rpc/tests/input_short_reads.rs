//! The input messenger ends a read round on a short read (one that filled less than it
//! offered) instead of reading again until `EAGAIN`. These tests check the two ways that could
//! lose input: a FIN that arrives with the last bytes (no later edge announces it) and bytes
//! that arrive in many small pieces (each must raise an edge that restarts the reader).

mod http_common;

use http_common::{http_server, Conn};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Sends `request`, then closes the write side after `gap` (none: in the same instant, so the
/// FIN usually lands in the same epoll event as the bytes), and reads until the server closes.
fn request_then_fin(addr: std::net::SocketAddr, request: &[u8], gap: Option<Duration>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(request).unwrap();
    if let Some(gap) = gap {
        std::thread::sleep(gap);
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    // A server that missed the FIN keeps the connection open: the read times out and fails.
    s.read_to_end(&mut out)
        .expect("the server closes the connection after the peer's FIN");
    String::from_utf8(out).unwrap()
}

#[test]
fn a_fin_with_the_last_request_is_answered_and_closes_the_connection() {
    let server = http_server();
    let addr = server.local_addr().unwrap();
    for i in 0..200 {
        let body = format!("fin-{i}");
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let got = request_then_fin(addr, req.as_bytes(), None);
        assert!(got.starts_with("HTTP/1.1 200"), "round {i}: {got:?}");
        assert!(got.ends_with(&body), "round {i}: {got:?}");
    }
}

#[test]
fn a_fin_after_the_request_was_read_closes_the_connection() {
    let server = http_server();
    let addr = server.local_addr().unwrap();
    for i in 0..20 {
        let req = b"GET /info/late HTTP/1.1\r\nHost: x\r\n\r\n";
        let got = request_then_fin(addr, req, Some(Duration::from_millis(5)));
        assert!(got.starts_with("HTTP/1.1 200"), "round {i}: {got:?}");
        assert!(got.ends_with("GET /info/late q= x=-"), "round {i}: {got:?}");
    }
}

#[test]
fn a_body_arriving_in_many_small_pieces_is_read_whole() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    for round in 0..3 {
        c.send(
            format!(
                "POST /echo HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        // Pieces of 1 B to ~20 KiB, with a pause now and then, so the server sees many short
        // reads separated by new edges.
        let mut off = 0;
        let mut step = 1usize;
        while off < body.len() {
            let n = step.min(body.len() - off);
            c.send(&body[off..off + n]);
            off += n;
            step = (step * 7 + round) % 20_000 + 1;
            if off % 7 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let r = c.response();
        assert_eq!(r.status, 200);
        assert!(r.body == body, "round {round}: the echoed body differs");
    }
}
