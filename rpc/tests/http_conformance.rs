//! HTTP/1.1 conformance of the server, checked with raw `TcpStream`s over loopback:
//! keep-alive, pipelining (responses in request order), chunked bodies both ways,
//! `Expect: 100-continue`, HTTP/1.0, HEAD, 400 + close, 404 / 405.

mod http_common;

use http_common::{http_server, Conn};

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    for i in 0..20 {
        c.send(format!("GET /info/a?q={i} HTTP/1.1\r\nHost: x\r\nX-Test: t{i}\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("GET /info/a q={i} x=t{i}"));
        assert_eq!(r.header("connection"), None);
    }
}

#[test]
fn pipelined_responses_come_in_request_order() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    // Earlier requests sleep longer, so their responses are ready last.
    let n = 10;
    let mut all = String::new();
    for i in 0..n {
        all.push_str(&format!(
            "GET /delay?ms={}&id={i} HTTP/1.1\r\nHost: x\r\n\r\n",
            (n - i) * 20
        ));
    }
    all.push_str("POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nlast");
    c.send(all.as_bytes());
    for i in 0..n {
        let r = c.response();
        assert_eq!((r.status, r.text()), (200, i.to_string()));
    }
    assert_eq!(c.response().text(), "last");
}

#[test]
fn chunked_request_body_is_decoded() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/x\r\n\r\n");
    // Sent in pieces, with an extension and a trailer.
    for piece in [
        &b"5;ext=1\r\nhello\r\n"[..],
        b"1\r\n \r\n",
        b"5\r\nworld\r\n",
        b"0\r\nX-Trailer: 1\r\n\r\n",
    ] {
        c.send(piece);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("content-type"), Some("text/x"));
    // The connection goes on.
    c.send(b"GET /info/x HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn chunked_response_for_http_1_1_and_length_for_http_1_0() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /chunked?n=4 HTTP/1.1\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.text(), "piece0;piece1;piece2;piece3;");

    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /chunked?n=2 HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("content-length"), Some("14"));
    assert_eq!(r.text(), "piece0;piece1;");
}

#[test]
fn expect_100_continue() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100);
    c.send(b"payload");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "payload"));
    // A request whose body came with the head gets no 100.
    c.send(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /info/a HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_eof();

    let mut c = Conn::new(server.local_addr().unwrap());
    for _ in 0..3 {
        c.send(b"GET /info/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // HTTP/1.1 with Connection: close.
    c.send(b"GET /info/a HTTP/1.1\r\nConnection: close\r\n\r\nGET /info/b HTTP/1.1\r\n\r\n");
    let r = c.response();
    assert_eq!(r.text(), "GET /info/a q= x=-");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_eof();
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = http_server();
    for bad in [
        &b"GET /\x01 HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ] {
        let mut c = Conn::new(server.local_addr().unwrap());
        c.send(bad);
        let r = c.response();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_eof();
    }
    // Bytes of no protocol at all: closed without an answer.
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"\x00\x01\x02\x03 not http\r\n\r\n");
    c.expect_eof();
    // The server still serves.
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /info/ok HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn head_404_405() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"HEAD /info/a HTTP/1.1\r\n\r\n");
    let r = c.response_to(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("19"));
    c.send(b"GET /nothing/here HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(b"POST /delay HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    // After errors the connection still serves.
    c.send(b"GET /info/z HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);
}
