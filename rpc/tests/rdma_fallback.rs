//! RDMA handshake fallbacks: every way the handshake can fail leaves the connection on TCP
//! (or, for corrupt bytes, closes it), never a failed call.

mod common;
mod rdma_common;

use common::{echo, echo_server, opts, stub};
use rdma_common::{http_health, raw, read_n, read_to_close, transports_of};
use spindle_rdma::endpoint::{EndpointConfig, PreparedEndpoint, RdmaContext};
use spindle_rdma::handshake::{
    ack, encode_hello, parse_hello, parse_hello_expect, Hello, HelloVersion,
};
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::proto::example::EchoServiceStub;
use spindle_rpc::server::ServerOptions;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn rdma_opts() -> ChannelOptions {
    ChannelOptions {
        use_rdma: true,
        ..opts()
    }
}

/// A server without RDMA answers the hello with a refusal; the channel's calls go over TCP on
/// the same connection.
#[test]
fn tcp_only_server_refuses_and_calls_go_over_tcp() {
    let server = echo_server(ServerOptions::default());
    let port = server.local_addr().unwrap().port();
    let s = stub(&server, rdma_opts());
    for i in 0..20 {
        assert_eq!(echo(&s, &format!("m{i}")).unwrap(), format!("m{i}"));
    }
    let t = transports_of(port);
    assert!(!t.is_empty() && t.iter().all(|t| t == "tcp"), "{t:?}");
}

/// An RDMA server and a channel that does not ask: plain TCP.
#[test]
fn rdma_server_client_not_asking_stays_tcp() {
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let port = server.local_addr().unwrap().port();
    let s = stub(&server, opts());
    assert_eq!(echo(&s, "hi").unwrap(), "hi");
    let t = transports_of(port);
    assert!(!t.is_empty() && t.iter().all(|t| t == "tcp"), "{t:?}");
}

/// A hello brpc would not accept (queues below the minimum): the server refuses, the client's
/// ACK without OK keeps the connection on TCP, and the next request is served over TCP.
#[test]
fn non_negotiable_hello_gets_refusal_then_tcp() {
    for version in [HelloVersion::V2, HelloVersion::V3] {
        let server = echo_server(ServerOptions {
            rdma: true,
            ..Default::default()
        });
        let mut c = raw(server.local_addr().unwrap());
        let bad = Hello {
            block_size: 8192,
            sq_size: 2,
            rq_size: 2,
            qp_num: 7,
            ..Hello::default()
        };
        c.write_all(&encode_hello(version, &bad)).unwrap();
        let head = read_n(&mut c, 8);
        let total = match parse_hello_expect(&head, version) {
            Ok(d) => d.consumed,
            Err(_) => {
                // v2: msg_len at bytes 4..6; v3: pb_size at 4..8.
                if version == HelloVersion::V2 {
                    usize::from(u16::from_be_bytes([head[4], head[5]]))
                } else {
                    8 + u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize
                }
            }
        };
        let mut reply = head.clone();
        reply.extend(read_n(&mut c, total - head.len()));
        let d = parse_hello_expect(&reply, version).unwrap();
        assert!(!d.hello.is_negotiable(), "a refusal: {d:?}");
        c.write_all(&ack::encode(false)).unwrap();
        let r = http_health(&mut c);
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
}

/// A hello whose magic matches but whose body is corrupt closes the connection.
#[test]
fn corrupt_hello_closes_the_connection() {
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let mut c = raw(server.local_addr().unwrap());
    // v2 msg_len = 2: below the 40-byte minimum.
    let mut bytes = b"RDMA".to_vec();
    bytes.extend_from_slice(&2u16.to_be_bytes());
    bytes.extend_from_slice(&[0u8; 34]);
    assert!(parse_hello(&bytes).is_err());
    c.write_all(&bytes).unwrap();
    assert!(read_to_close(&mut c).is_empty());
}

/// A client that acknowledges RDMA after a refusal is a protocol error: closed.
#[test]
fn ok_ack_after_refusal_closes() {
    let server = echo_server(ServerOptions::default());
    let mut c = raw(server.local_addr().unwrap());
    let bad = Hello::default();
    c.write_all(&encode_hello(HelloVersion::V2, &bad)).unwrap();
    let reply = read_n(&mut c, 40);
    assert!(!parse_hello(&reply).unwrap().negotiable);
    c.write_all(&ack::encode(true)).unwrap();
    assert!(read_to_close(&mut c).is_empty());
}

/// The server accepts (its hello is negotiable), the client answers an ACK without OK: the
/// server drops its endpoint and the connection goes on over TCP.
#[test]
fn ack_without_ok_stays_tcp() {
    rdma_common::setup_small_pools();
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let port = server.local_addr().unwrap().port();
    let ctx = RdmaContext::global().unwrap();
    let prepared = PreparedEndpoint::new(ctx, &EndpointConfig::from_flags()).unwrap();
    let mut c = raw(server.local_addr().unwrap());
    c.write_all(&encode_hello(HelloVersion::V2, &prepared.local_hello()))
        .unwrap();
    let reply = read_n(&mut c, 40);
    let d = parse_hello_expect(&reply, HelloVersion::V2).unwrap();
    assert!(d.negotiable && d.hello.is_negotiable(), "{d:?}");
    c.write_all(&ack::encode(false)).unwrap();
    let r = http_health(&mut c);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let t = transports_of(port);
    assert!(t.iter().all(|t| t == "tcp"), "{t:?}");
}

/// A server whose answer is a hello of the other version (or garbage): the client sends the
/// ACK without OK and its calls go over TCP on the same connection (here through a proxy that
/// plays the bad server for the handshake, then forwards to a real TCP server).
#[test]
fn bad_server_hello_client_falls_back() {
    // A v3 hello where a v2 one is expected.
    let answer = Hello {
        block_size: 8192,
        sq_size: 128,
        rq_size: 128,
        qp_num: 9,
        ..Hello::default()
    };
    proxied_fallback(
        Some(encode_hello(HelloVersion::V3, &answer)),
        opts().connect_timeout_ms,
    );
}

/// A server that never answers the hello: after the connect deadline the client sends the ACK
/// without OK and goes on over TCP.
#[test]
fn no_server_answer_client_falls_back_after_the_deadline() {
    proxied_fallback(None, 300);
}

/// Runs a channel with `use_rdma` through a proxy that answers the hello with `answer` (or
/// not at all), checks the ACK says no, then forwards to a TCP-only echo server.
fn proxied_fallback(answer: Option<Vec<u8>>, connect_timeout_ms: i64) {
    rdma_common::setup_small_pools();
    let real = echo_server(ServerOptions::default());
    let real_addr = real.local_addr().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let proxy = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let hello = read_n(&mut c, 40);
        assert_eq!(&hello[..4], b"RDMA");
        if let Some(answer) = answer {
            c.write_all(&answer).unwrap();
        }
        let ackb = read_n(&mut c, 4);
        assert!(!ack::decode(&ackb).unwrap(), "the client must not say OK");
        c.set_read_timeout(None).unwrap();
        let up = TcpStream::connect(real_addr).unwrap();
        let (mut a, mut b) = (c.try_clone().unwrap(), up.try_clone().unwrap());
        let t = std::thread::spawn(move || {
            let _ = std::io::copy(&mut b, &mut a);
        });
        let (mut c2, mut up2) = (c, up);
        let _ = std::io::copy(&mut c2, &mut up2);
        let _ = up2.shutdown(std::net::Shutdown::Both);
        t.join().unwrap();
    });
    let ch = Channel::new(
        &proxy_addr.to_string(),
        ChannelOptions {
            connect_timeout_ms,
            ..rdma_opts()
        },
    )
    .unwrap();
    let s = EchoServiceStub::new(ch);
    for i in 0..10 {
        assert_eq!(echo(&s, &format!("p{i}")).unwrap(), format!("p{i}"));
    }
    let t = transports_of(proxy_addr.port());
    assert!(!t.is_empty() && t.iter().all(|t| t == "tcp"), "{t:?}");
    drop(s);
    proxy.join().unwrap();
}
