//! Pipelined responses that are ready before their turn leave together: four requests sent
//! back to back, the first held by the test until the other three were answered (and so
//! parked), come back in request order in fewer writes than responses (`msgs_out` of the
//! connection on `/connections` counts the server's writes).

mod http_common;

use http_common::Conn;
use spindle_rpc::policy::http::{HttpRequest, HttpResponse};
use spindle_rpc::server::{Server, ServerOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `msgs_out` of the connection whose remote side is `peer`, from `/connections` (columns
/// found by name).
fn msgs_out(server: SocketAddr, peer: SocketAddr) -> u64 {
    let mut c = Conn::new(server);
    c.send(b"GET /connections HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = c.response().text();
    let cols = |l: &str| {
        l.split('|')
            .map(|x| x.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let header = text
        .lines()
        .find(|l| l.contains("msgs_out"))
        .expect("a header line");
    let names = cols(header);
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let (remote, out) = (at("remote"), at("msgs_out"));
    text.lines()
        .map(cols)
        .find(|c| c.get(remote).is_some_and(|r| *r == peer.to_string()))
        .and_then(|c| c.get(out).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no connection from {peer} in:\n{text}"))
}

#[test]
fn parked_pipelined_responses_leave_in_one_write() {
    let answered = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let mut server = Server::new(ServerOptions::default());
    let (a, r) = (answered.clone(), release.clone());
    server
        .add_http_handler("GET", "/hold", move |_: &HttpRequest| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !r.load(Ordering::SeqCst) && Instant::now() < deadline {
                spindle_runtime::sleep(Duration::from_millis(1));
            }
            HttpResponse::text(200, "held")
        })
        .unwrap();
    server
        .add_http_handler("GET", "/now", move |req: &HttpRequest| {
            a.fetch_add(1, Ordering::SeqCst);
            HttpResponse::text(200, req.query_param("id").unwrap_or_default())
        })
        .unwrap();
    server.start("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();

    let mut c = Conn::new(addr);
    let peer = c.stream.local_addr().unwrap();
    let mut burst = b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    for id in ["b", "c", "d"] {
        burst.extend_from_slice(format!("GET /now?id={id} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&burst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the pipelined requests were not processed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the last handler's response reach its parking place (a bounded wait; the assertion
    // below tolerates one response written on its own).
    std::thread::sleep(Duration::from_millis(20));
    release.store(true, Ordering::SeqCst);
    let bodies: Vec<String> = (0..4).map(|_| c.response().text()).collect();
    assert_eq!(bodies, ["held", "b", "c", "d"]);
    let writes = msgs_out(addr, peer);
    assert!(writes <= 2, "4 responses took {writes} writes");
}
