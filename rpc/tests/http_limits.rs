//! Header and body limits of the HTTP server: 431 (head over `http_max_header_size` or too many
//! headers) closes the connection; 413 for a declared body over `max_body_size` keeps it (the
//! body is discarded as it arrives); 413 for a chunked body over the limit closes it.
//! A file of its own: the limits are process-wide flags.

mod http_common;

use http_common::{http_server, Conn};
use spindle_rpc::input_messenger::MAX_BODY_SIZE;
use spindle_rpc::policy::http::HTTP_MAX_HEADER_SIZE;
use std::sync::Once;

fn small_limits() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        HTTP_MAX_HEADER_SIZE.set(2048).unwrap();
        MAX_BODY_SIZE.set(4096).unwrap();
    });
}

#[test]
fn head_over_the_limit_gets_431_and_close() {
    small_limits();
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    let mut req = b"GET /info/a HTTP/1.1\r\n".to_vec();
    while req.len() < 3000 {
        req.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    let r = c.response();
    assert_eq!(r.status, 431);
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_eof();

    let mut c = Conn::new(server.local_addr().unwrap());
    let mut req = b"GET /info/a HTTP/1.1\r\n".to_vec();
    for i in 0..80 {
        req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    assert_eq!(c.response().status, 431);
    c.expect_eof();
}

#[test]
fn declared_body_over_the_limit_gets_413_and_the_connection_survives() {
    small_limits();
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"POST /echo HTTP/1.1\r\nContent-Length: 10000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), None);
    // The body still comes; it is discarded, and the next request is served.
    for _ in 0..10 {
        c.send(&[b'z'; 1000]);
    }
    c.send(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nafter");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
    // A body at the limit is fine.
    let body = vec![b'b'; 4096];
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert_eq!(c.response().body, body);
}

#[test]
fn chunked_body_over_the_limit_gets_413_and_close() {
    small_limits();
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        c.send(format!("400\r\n{}\r\n", "y".repeat(0x400)).as_bytes());
    }
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_eof();
}
