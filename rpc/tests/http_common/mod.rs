//! Shared by the HTTP end-to-end tests: a raw HTTP/1.1 client over `std::net::TcpStream`
//! (so the server is checked against bytes, not against Spindle's own client) and a server
//! with test handlers.
#![allow(dead_code)]

use spindle_rpc::policy::http::{HttpRequest, HttpResponse};
use spindle_rpc::server::{Server, ServerOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response read off a raw connection.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw connection with a read buffer.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).expect("read (timed out?)");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads exactly the next `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "EOF before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one response (Content-Length, chunked, or no body for 1xx/204/304/`head_only`).
    pub fn response_to(&mut self, head_only: bool) -> Raw {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf).unwrap() {
                httparse::Status::Complete(head_len) => {
                    let status = r.code.unwrap();
                    let hs: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..head_len);
                    let mut raw = Raw {
                        status,
                        headers: hs,
                        body: Vec::new(),
                    };
                    let no_body =
                        head_only || (100..200).contains(&status) || status == 204 || status == 304;
                    if no_body {
                        return raw;
                    }
                    if raw
                        .header("transfer-encoding")
                        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
                    {
                        raw.body = self.read_chunked();
                    } else {
                        let n: usize = raw
                            .header("content-length")
                            .expect("a response without Content-Length")
                            .parse()
                            .unwrap();
                        raw.body = self.read_exact_bytes(n);
                    }
                    return raw;
                }
                httparse::Status::Partial => {
                    assert!(self.fill() > 0, "EOF inside a response head");
                }
            }
        }
    }

    pub fn response(&mut self) -> Raw {
        self.response_to(false)
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill() > 0, "EOF inside a chunked body");
        }
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(self.line().split(';').next().unwrap(), 16).unwrap();
            if size == 0 {
                while !self.line().is_empty() {}
                return body;
            }
            body.extend(self.read_exact_bytes(size));
            assert_eq!(self.read_exact_bytes(2), b"\r\n");
        }
    }

    /// Asserts the server closes the connection (EOF, or a reset) with no more bytes.
    pub fn expect_eof(&mut self) {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected EOF, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

/// Test handlers: `/echo` (any method: the body back, with the request's content type),
/// `/delay?ms=N&id=X` (sleeps N ms in the fiber, answers X), `/chunked?n=K` (K pieces,
/// chunked), `/info` (method, path, query and a header, as text).
pub fn add_test_handlers(server: &mut Server) {
    server
        .add_http_handler("*", "/echo", |req: &HttpRequest| {
            HttpResponse::new(200)
                .with_header(
                    "Content-Type",
                    req.header("content-type")
                        .unwrap_or("application/octet-stream"),
                )
                .with_body(req.body.clone())
        })
        .unwrap();
    server
        .add_http_handler("GET", "/delay", |req: &HttpRequest| {
            let ms: u64 = req
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            spindle_runtime::sleep(Duration::from_millis(ms));
            HttpResponse::text(200, req.query_param("id").unwrap_or_default())
        })
        .unwrap();
    server
        .add_http_handler("GET", "/chunked", |req: &HttpRequest| {
            let n: usize = req
                .query_param("n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3);
            let mut body = spindle_rpc::protocol::IOBuf::new();
            for i in 0..n {
                // Separate IOBufs appended by reference: one chunk each.
                body.append_owned(spindle_rpc::protocol::IOBuf::from(
                    format!("piece{i};").as_bytes(),
                ));
            }
            HttpResponse::new(200).with_body(body).with_chunked()
        })
        .unwrap();
    server
        .add_http_handler("*", "/info/*", |req: &HttpRequest| {
            HttpResponse::text(
                200,
                format!(
                    "{} {} q={} x={}",
                    req.method(),
                    req.path(),
                    req.query_param("q").unwrap_or_default(),
                    req.header("x-test").unwrap_or("-")
                ),
            )
        })
        .unwrap();
}

/// A started server with the echo service and the test handlers.
pub fn http_server() -> Server {
    http_server_with(ServerOptions::default())
}

/// [`http_server`] with `options`.
pub fn http_server_with(options: ServerOptions) -> Server {
    let mut server = Server::new(options);
    server
        .add_service(spindle_rpc::proto::example::EchoServiceServer(
            super_echo::Echo,
        ))
        .unwrap();
    add_test_handlers(&mut server);
    server.start("127.0.0.1:0").unwrap();
    server
}

/// brpc's echo: the message back; `fail` answers EINTERNAL.
pub mod super_echo {
    use spindle_rpc::errors::{ErrorCode, RpcError};
    use spindle_rpc::proto::example::{EchoRequest, EchoResponse, EchoService};
    use spindle_rpc::service::CallContext;

    pub struct Echo;
    impl EchoService for Echo {
        fn echo(&self, _: &mut CallContext, r: EchoRequest) -> Result<EchoResponse, RpcError> {
            if r.message == "fail" {
                return Err(RpcError::new(ErrorCode::Internal, "asked to fail"));
            }
            Ok(EchoResponse { message: r.message })
        }
    }
}
