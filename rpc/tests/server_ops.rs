//! Operability of a server under pressure: builtin pages answer while `max_concurrency` is
//! reached, and `idle_timeout_sec` closes idle and slow (slowloris) connections but not busy
//! ones. Loopback only; every wait is bounded.

mod common;
mod http_common;

use common::{echo, opts, Gate};
use http_common::{Conn, Raw};
use spindle_rpc::channel::Channel;
use spindle_rpc::errors::ErrorCode;
use spindle_rpc::policy::http::{HttpRequest, HttpResponse};
use spindle_rpc::proto::example::{EchoServiceServer, EchoServiceStub};
use spindle_rpc::server::{Server, ServerOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn get(addr: SocketAddr, path: &str) -> Raw {
    let mut c = Conn::new(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.response()
}

/// A server with `max_concurrency = 1` whose only slot is held by a blocked handler still
/// answers its builtin pages; a second RPC and a user's plain handler get `ELIMIT`.
#[test]
fn builtin_pages_answer_at_max_concurrency() {
    let gate = Gate::default();
    let (held, release) = (gate.received.clone(), gate.release.clone());
    let mut server = Server::new(ServerOptions {
        max_concurrency: 1,
        ..ServerOptions::default()
    });
    server.add_service(EchoServiceServer(gate)).unwrap();
    server
        .add_http_handler("GET", "/mine", |_: &HttpRequest| {
            HttpResponse::text(200, "mine\n")
        })
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let ch = |_| EchoServiceStub::new(Channel::new(&addr.to_string(), opts()).unwrap());
    let (a, b) = (ch(0), ch(1));

    // Before the slot is taken, the user's handler answers.
    assert_eq!(get(addr, "/mine").status, 200);
    let slow = std::thread::spawn(move || echo(&a, "hold"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the holding call never started");
        std::thread::sleep(Duration::from_millis(1));
    }

    for page in ["/status", "/health", "/vars", "/flags", "/connections", "/"] {
        let r = get(addr, page);
        assert_eq!(r.status, 200, "{page} at the limit: {}", r.text());
    }
    let status = get(addr, "/status").text();
    assert!(status.contains("max_concurrency: 1"), "{status}");
    let e = echo(&b, "second").unwrap_err();
    assert_eq!(e.code, ErrorCode::Limit, "{e}");
    let mine = get(addr, "/mine");
    assert_eq!(mine.status, 503, "{}", mine.text());
    assert_eq!(mine.header("x-bd-error-code"), Some("2004"));
    assert!(mine.text().contains("max_concurrency=1"), "{}", mine.text());

    release.store(true, Ordering::SeqCst);
    assert_eq!(slow.join().unwrap().unwrap(), "hold");
    assert_eq!(echo(&b, "third").unwrap(), "third");
    assert_eq!(get(addr, "/mine").status, 200);
}

/// A started HTTP test server with `idle_timeout_sec`.
fn idle_server(secs: i32) -> Server {
    http_common::http_server_with(ServerOptions {
        idle_timeout_sec: secs,
        ..ServerOptions::default()
    })
}

/// Whether the server closed `s` (EOF or reset) — polls for at most `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true, // reset
    }
}

/// The value of `rpc_server_<port>_idle_closed_connections` on `/vars`.
fn idle_closed(addr: SocketAddr) -> u64 {
    let name = format!("rpc_server_{}_idle_closed_connections", addr.port());
    let r = get(addr, &format!("/vars/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} : ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {}", r.text()))
}

#[test]
fn idle_connection_is_closed() {
    let server = idle_server(1);
    let addr = server.local_addr().unwrap();
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(15)),
        "an idle connection was not closed"
    );
    // Never before the timeout (a lower bound only: the sweep may be late on a busy machine).
    assert!(start.elapsed() >= Duration::from_millis(900));

    // A connection that served a request and then went quiet is closed too.
    let mut c = Conn::new(addr);
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.response().body, b"hi");
    assert!(closed_within(&mut c.stream, Duration::from_secs(15)));
    assert!(idle_closed(addr) >= 2);
}

#[test]
fn busy_connection_stays_open() {
    let server = idle_server(1);
    let addr = server.local_addr().unwrap();
    let mut c = Conn::new(addr);
    // 3 s of requests 200 ms apart: three timeouts' worth, never idle for one.
    for i in 0..15 {
        c.send(
            format!(
                "GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n{}",
                i % 10
            )
            .as_bytes(),
        );
        assert_eq!(c.response().status, 200, "request {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A request processed for longer than the timeout keeps its connection too.
    c.send(b"GET /delay?ms=2500&id=late HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().body, b"late");
    assert_eq!(idle_closed(addr), 0);
}

#[test]
fn slowloris_is_closed() {
    let server = idle_server(1);
    let addr = server.local_addr().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let head = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut closed = false;
    // One byte every 200 ms (the read timeout paces it); 70+ bytes would take 14 s.
    for b in head.iter() {
        if s.write_all(&[*b]).is_err() || closed_within(&mut s, Duration::from_millis(200)) {
            closed = true;
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15));
    }
    assert!(closed, "a client trickling its head was never closed");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(idle_closed(addr) >= 1);
}

#[test]
fn idle_timeout_off_by_default() {
    let server = http_common::http_server();
    let addr = server.local_addr().unwrap();
    let mut c = Conn::new(addr);
    assert!(!closed_within(&mut c.stream, Duration::from_millis(1500)));
    c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(c.response().body, b"ok");
}
