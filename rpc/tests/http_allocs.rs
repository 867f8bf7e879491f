//! Heap allocations per HTTP request on the server's path (parse, route, handler, response,
//! write), counted by a global allocator while one keep-alive connection sends requests back
//! to back. A regression guard with a generous bound (background threads allocate now and
//! then); the figure is printed (`--nocapture`) and quoted in `docs/benchmarks.md`.

mod http_common;

use spindle_rpc::policy::http::{HttpRequest, HttpResponse};
use spindle_rpc::server::{Server, ServerOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The request of `http_bench` (wrk's, with a 64-byte body).
fn request() -> Vec<u8> {
    let mut r = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
Content-Length: 64\r\n\r\n"
        .to_vec();
    r.extend_from_slice(&[b'x'; 64]);
    r
}

/// Sends `n` requests one at a time and reads each response (the client allocates nothing:
/// fixed buffers).
fn exchange(s: &mut TcpStream, request: &[u8], n: usize, response_len: usize) {
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        s.write_all(request).unwrap();
        let mut got = 0;
        while got < response_len {
            let k = s.read(&mut buf[got..]).unwrap();
            assert!(k > 0, "EOF");
            got += k;
        }
        assert_eq!(
            got,
            response_len,
            "{}",
            String::from_utf8_lossy(&buf[..got])
        );
    }
}

#[test]
fn allocations_per_request() {
    let mut server = Server::new(ServerOptions::default());
    server
        .add_http_handler("POST", "/echo", |req: &HttpRequest| {
            HttpResponse::new(200)
                .with_header("Content-Type", "text/plain")
                .with_body(req.body.clone())
        })
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    let mut s = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = request();
    // The response's length, from a first exchange.
    s.write_all(&request).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let response_len = loop {
        got += s.read(&mut buf[got..]).unwrap();
        if let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
            if got >= end + 4 + 64 {
                break got;
            }
        }
    };
    exchange(&mut s, &request, 200, response_len); // warm: caches, pools, lazily made state
    let n = 2000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    exchange(&mut s, &request, n, response_len);
    let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("allocations per HTTP request: {per_request:.2}");
    assert!(
        per_request < 20.0,
        "{per_request:.2} allocations per request"
    );
}
