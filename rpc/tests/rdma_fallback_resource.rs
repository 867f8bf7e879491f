//! Resource failure: no RDMA context can be opened (here `--rdma_backend=ibverbs` in a build
//! without the `ibverbs` feature). A server with `rdma` answers hellos with a refusal, a
//! channel with `use_rdma` sends no hello at all; both serve over TCP.
//!
//! A test binary of its own: the process's RDMA context is created once.

mod common;
mod rdma_common;

use common::{echo, echo_server, opts, stub};
use rdma_common::{http_health, raw, read_n, transports_of};
use spindle_rdma::endpoint::RdmaContext;
use spindle_rdma::handshake::{ack, encode_hello, parse_hello_expect, Hello, HelloVersion};
use spindle_rpc::channel::ChannelOptions;
use spindle_rpc::server::ServerOptions;
use std::io::Write;

fn no_backend() {
    spindle_runtime::flags::set("rdma_backend", "ibverbs").unwrap();
    assert!(
        RdmaContext::global().is_err(),
        "this test needs a build without the ibverbs feature"
    );
}

#[test]
fn no_context_means_refusal_and_tcp() {
    no_backend();
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let port = server.local_addr().unwrap().port();
    // A client that asks: nothing to ask with, plain TCP.
    let s = stub(
        &server,
        ChannelOptions {
            use_rdma: true,
            ..opts()
        },
    );
    assert_eq!(echo(&s, "tcp").unwrap(), "tcp");
    let t = transports_of(port);
    assert!(!t.is_empty() && t.iter().all(|t| t == "tcp"), "{t:?}");
    // A raw client with a plausible hello: the server cannot make an endpoint and refuses.
    let mut c = raw(server.local_addr().unwrap());
    let hello = Hello {
        block_size: 8160,
        sq_size: 128,
        rq_size: 128,
        qp_num: 77,
        gid: [1; 16],
        ..Hello::default()
    };
    c.write_all(&encode_hello(HelloVersion::V2, &hello))
        .unwrap();
    let reply = read_n(&mut c, 40);
    let d = parse_hello_expect(&reply, HelloVersion::V2).unwrap();
    assert!(!d.hello.is_negotiable(), "a refusal: {d:?}");
    c.write_all(&ack::encode(false)).unwrap();
    assert!(http_health(&mut c).starts_with("HTTP/1.1 200"));
}
