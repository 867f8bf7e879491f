//! Protobuf services over HTTP (JSON and binary bodies, error mapping), Spindle's HTTP client
//! (pooled and short connections, stubs, JSON, plain requests), and one port serving
//! baidu_std and HTTP at once.

mod common;
mod http_common;

use common::Token;
use http_common::{http_server, http_server_with, Conn};
use prost::Message;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::errors::ErrorCode;
use spindle_rpc::policy::http::HttpRequest;
use spindle_rpc::proto::example::{EchoRequest, EchoResponse, EchoServiceStub};
use spindle_rpc::protocol::ConnectionType;
use spindle_rpc::service::CallContext;

fn post(c: &mut Conn, path: &str, content_type: &str, body: &[u8]) -> http_common::Raw {
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(body);
    c.response()
}

#[test]
fn json_and_proto_bodies_round_trip() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    for path in ["/example.EchoService/Echo", "/EchoService/Echo"] {
        let r = post(
            &mut c,
            path,
            "application/json",
            br#"{"message":"hi \u00e9"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), "{\"message\":\"hi \u{e9}\"}");
    }
    // No content type: JSON, as brpc.
    c.send(b"POST /example.EchoService/Echo HTTP/1.1\r\nContent-Length: 16\r\n\r\n{\"message\":\"nc\"}");
    assert_eq!(c.response().text(), r#"{"message":"nc"}"#);
    // Binary protobuf.
    let body = EchoRequest {
        message: "bin".into(),
    }
    .encode_to_vec();
    let r = post(
        &mut c,
        "/example.EchoService/Echo",
        "application/proto",
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/proto"));
    assert_eq!(EchoResponse::decode(&r.body[..]).unwrap().message, "bin");
}

#[test]
fn errors_map_to_statuses_with_brpc_codes() {
    let server = http_server();
    let mut c = Conn::new(server.local_addr().unwrap());
    let cases: [(&str, &[u8], u16, &str, &str); 5] = [
        ("/example.EchoService/Nope", b"{}", 404, "1002", "no method"),
        ("/example.Missing/Echo", b"{}", 404, "1001", "no service"),
        (
            "/example.EchoService/Echo",
            b"{\"message\":",
            400,
            "1003",
            "example.EchoRequest",
        ),
        (
            "/example.EchoService/Echo",
            b"{\"nosuch\":1}",
            400,
            "1003",
            "nosuch",
        ),
        (
            "/example.EchoService/Echo",
            b"{\"message\":\"fail\"}",
            500,
            "2001",
            "asked to fail",
        ),
    ];
    for (path, body, status, code, text) in cases {
        let r = post(&mut c, path, "application/json", body);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.header("x-bd-error-code"), Some(code), "{path}");
        assert!(r.text().contains(text), "{path}: {}", r.text());
    }
    // Undecodable binary body.
    let r = post(
        &mut c,
        "/example.EchoService/Echo",
        "application/proto",
        b"\xff\xff\xff",
    );
    assert_eq!((r.status, r.header("x-bd-error-code")), (400, Some("1003")));
}

fn http_channel(server: &spindle_rpc::server::Server, ty: ConnectionType) -> Channel {
    let options = ChannelOptions {
        protocol: "http".into(),
        connection_type: Some(ty),
        timeout_ms: 10_000,
        connect_timeout_ms: 2_000,
        ..ChannelOptions::default()
    };
    Channel::new(&server.local_addr().unwrap().to_string(), options).unwrap()
}

#[test]
fn client_over_pooled_and_short_connections() {
    let server = http_server();
    // Single is refused: HTTP/1.1 has no correlation id.
    let single = ChannelOptions {
        protocol: "http".into(),
        connection_type: Some(ConnectionType::Single),
        ..ChannelOptions::default()
    };
    let e = Channel::new(&server.local_addr().unwrap().to_string(), single).unwrap_err();
    assert!(e.text.contains("not supported by protocol http"), "{e}");

    for ty in [ConnectionType::Pooled, ConnectionType::Short] {
        let ch = http_channel(&server, ty);
        assert_eq!(ch.connection_type(), ty);
        // Generated stub, binary protobuf body.
        let stub = EchoServiceStub::new(ch.clone());
        for i in 0..5 {
            let r = stub
                .echo(
                    &mut CallContext::default(),
                    &EchoRequest {
                        message: format!("m{i}"),
                    },
                )
                .unwrap();
            assert_eq!(r.message, format!("m{i}"));
        }
        let e = stub
            .echo(
                &mut CallContext::default(),
                &EchoRequest {
                    message: "fail".into(),
                },
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.text.contains("asked to fail"), "{e}");
        // JSON.
        let out = ch
            .call_json("example.EchoService", "Echo", r#"{"message":"j"}"#)
            .unwrap();
        assert_eq!(out, r#"{"message":"j"}"#);
        let e = ch.call_json("EchoService", "Nope", "{}").unwrap_err();
        assert_eq!(e.code, ErrorCode::NoMethod);
        let e = ch.call_json("EchoService", "Echo", "[").unwrap_err();
        assert_eq!(e.code, ErrorCode::Request);
        // Plain requests.
        let r = ch
            .http_call(&HttpRequest::new("GET", "/info/p?q=a%20b").with_header("X-Test", "v"))
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body_text(), "GET /info/p q=a b x=v");
        let r = ch
            .http_call(&HttpRequest::new("POST", "/echo").with_body(&vec![7u8; 100_000][..]))
            .unwrap();
        assert_eq!(r.body.len(), 100_000);
        let r = ch
            .http_call(&HttpRequest::new("GET", "/chunked?n=3"))
            .unwrap();
        assert!(r.chunked);
        assert_eq!(r.body_text(), "piece0;piece1;piece2;");
        let e = ch
            .http_call(&HttpRequest::new("GET", "/missing"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Http);
        assert!(e.text.starts_with("HTTP 404 Not Found"), "{e}");
    }
}

#[test]
fn one_port_serves_baidu_std_and_http_at_once() {
    let server = http_server();
    let addr = server.local_addr().unwrap().to_string();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let options = if t % 2 == 0 {
                    ChannelOptions {
                        timeout_ms: 10_000,
                        ..ChannelOptions::default()
                    }
                } else {
                    ChannelOptions {
                        protocol: "http".into(),
                        timeout_ms: 10_000,
                        ..ChannelOptions::default()
                    }
                };
                let ch = Channel::new(&addr, options).unwrap();
                let stub = EchoServiceStub::new(ch.clone());
                for i in 0..200 {
                    let msg = format!("t{t}-{i}");
                    let r = stub
                        .echo(
                            &mut CallContext::default(),
                            &EchoRequest {
                                message: msg.clone(),
                            },
                        )
                        .unwrap();
                    assert_eq!(r.message, msg);
                    if t % 2 == 1 && i % 10 == 0 {
                        let r = ch.http_call(&HttpRequest::new("GET", "/info/x")).unwrap();
                        assert_eq!(r.status, 200);
                    }
                }
            })
        })
        .collect();
    // Raw HTTP on the same port meanwhile.
    let mut c = Conn::new(server.local_addr().unwrap());
    for _ in 0..50 {
        c.send(b"GET /info/raw HTTP/1.1\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn authorization_header_is_the_credential() {
    use std::sync::Arc;
    let server = http_server_with(spindle_rpc::server::ServerOptions {
        authenticator: Some(Arc::new(Token("secret"))),
        ..Default::default()
    });
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /info/a HTTP/1.1\r\n\r\n");
    c.expect_eof();
    let mut c = Conn::new(server.local_addr().unwrap());
    c.send(b"GET /info/a HTTP/1.1\r\nAuthorization: secret\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // Later requests of a verified connection need no credential.
    c.send(b"GET /info/b HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);

    let options = |token| ChannelOptions {
        protocol: "http".into(),
        timeout_ms: 10_000,
        max_retry: 0,
        authenticator: Some(Arc::new(Token(token))),
        ..ChannelOptions::default()
    };
    let addr = server.local_addr().unwrap().to_string();
    let ch = Channel::new(&addr, options("secret")).unwrap();
    assert_eq!(
        ch.http_call(&HttpRequest::new("GET", "/info/c"))
            .unwrap()
            .status,
        200
    );
    let stub = EchoServiceStub::new(ch);
    let r = stub
        .echo(
            &mut CallContext::default(),
            &EchoRequest {
                message: "a".into(),
            },
        )
        .unwrap();
    assert_eq!(r.message, "a");
    let ch = Channel::new(&addr, options("guess")).unwrap();
    assert!(ch.http_call(&HttpRequest::new("GET", "/info/c")).is_err());
}

/// Against a raw server: `Connection: close` retires a pooled connection (the next call opens
/// a new one, no retry needed), and a body delimited by the close is read whole.
#[test]
fn client_follows_connection_close() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for i in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&b[..n]);
            }
            if i < 2 {
                s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
                kept.push(s); // not closed: the client must not wait for EOF
            } else {
                s.write_all(b"HTTP/1.0 200 OK\r\n\r\nbody until close")
                    .unwrap();
            }
        }
    });
    let ch = Channel::new(
        &addr.to_string(),
        ChannelOptions {
            protocol: "http".into(),
            timeout_ms: 10_000,
            max_retry: 0,
            ..ChannelOptions::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        let r = ch.http_call(&HttpRequest::new("GET", "/")).unwrap();
        assert_eq!(r.body_text(), "ok");
    }
    let r = ch.http_call(&HttpRequest::new("GET", "/")).unwrap();
    assert_eq!(r.body_text(), "body until close");
    server.join().unwrap();
}

/// A done-handle method answering later, from another fiber or thread, answers over HTTP too.
#[test]
fn done_handle_methods_answer_over_http() {
    use spindle_rpc::proto::example::{EchoServiceAsync, EchoServiceAsyncServer};
    use spindle_rpc::service::Done;
    struct Later;
    impl EchoServiceAsync for Later {
        fn echo(&self, request: EchoRequest, done: Done<EchoResponse>) {
            let on_thread = request.message == "thread";
            let reply = move || {
                done.send(Ok(EchoResponse {
                    message: request.message,
                }))
            };
            if on_thread {
                std::thread::spawn(reply);
            } else {
                spindle_runtime::spawn(move || {
                    spindle_runtime::sleep(std::time::Duration::from_millis(10));
                    reply();
                });
            }
        }
    }
    let mut server = spindle_rpc::server::Server::new(Default::default());
    server.add_service(EchoServiceAsyncServer(Later)).unwrap();
    server.start("127.0.0.1:0").unwrap();
    let mut c = Conn::new(server.local_addr().unwrap());
    for m in ["fiber", "thread"] {
        let r = post(
            &mut c,
            "/example.EchoService/Echo",
            "application/json",
            format!("{{\"message\":\"{m}\"}}").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("{{\"message\":\"{m}\"}}"));
    }
}
