//! Two processes, one RDMA connection: brpc's handshake over loopback TCP (v2 and v3) brings up
//! an `RdmaEndpoint` on each side over the software fabric, then the client streams framed
//! messages of varied sizes and the server echoes the byte stream back.
//!
//! The test process is the server; it re-executes this binary as the client (environment
//! `SPINDLE_RDMA_EP_CHILD_PORT`, running only `child_client`).

mod common;

use common::child::{child_connect, read_hello, spawn_child, wait_child};
use common::endpoint::{pattern, write_some, DEADLINE};
use spindle_iobuf::IOBuf;
use spindle_rdma::handshake::{self, ack, HelloVersion};
use spindle_rdma::verbs::wait_readable;
use spindle_rdma::{EndpointConfig, PreparedEndpoint, RdmaContext, RdmaEndpoint};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SPINDLE_RDMA_EP_CHILD_PORT";
const VERSION_ENV: &str = "SPINDLE_RDMA_EP_CHILD_HELLO";
const MESSAGES: u64 = 300;

/// The client's stream: framed messages of 1 byte to 100 KB.
fn stream() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..MESSAGES {
        let len = 1 + (i as usize * 7919) % 100_000;
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.extend_from_slice(&pattern(len, i));
    }
    v
}

fn endpoint() -> PreparedEndpoint {
    // The process-wide context over the flags' backend (the fabric here).
    let ctx = RdmaContext::global().unwrap();
    PreparedEndpoint::new(ctx, &EndpointConfig::from_flags()).unwrap()
}

/// Polls `ep` until `done` (after each poll), waiting on its completion fd in between.
fn run(ep: &RdmaEndpoint, what: &str, mut step: impl FnMut(&RdmaEndpoint) -> bool) {
    let start = Instant::now();
    while !step(ep) {
        assert!(start.elapsed() < DEADLINE, "stalled: {what}");
        let _ = wait_readable(ep.completion_fd(), Duration::from_millis(5));
    }
}

/// The client: runs only in the child process.
#[test]
fn child_client() {
    let Some((mut sock, version)) = child_connect(CHILD_ENV, VERSION_ENV, DEADLINE) else {
        return; // not the child: nothing to do
    };
    let prepared = endpoint();
    sock.write_all(&handshake::encode_hello(version, &prepared.local_hello()))
        .unwrap();
    let server = read_hello(&mut sock, Some(version));
    let ep = prepared.connect(&server).unwrap();
    sock.write_all(&ack::encode(true)).unwrap();

    let expected = stream();
    let mut out = IOBuf::new();
    out.append(&expected);
    let mut back = IOBuf::new();
    run(&ep, "client", |ep| {
        write_some(ep, &mut out);
        ep.poll(&mut back).unwrap();
        back.len() >= expected.len()
    });
    assert!(back.equals(&expected), "echo differs");
    // Tell the server it may tear down, and keep the queue pair until it did (leaving first
    // would fail the server's queue pair under it).
    sock.write_all(b"D").unwrap();
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    println!("CHILD OK {}", expected.len());
}

fn serve_one(version: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let child = spawn_child(
        "child_client",
        &[(CHILD_ENV, port.as_str()), (VERSION_ENV, version)],
    );
    let (mut sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let client = read_hello(&mut sock, None);
    let prepared = endpoint();
    let reply = prepared.local_hello();
    let ep = prepared.connect(&client).unwrap();
    let v = if version == "3" {
        HelloVersion::V3
    } else {
        HelloVersion::V2
    };
    sock.write_all(&handshake::encode_hello(v, &reply)).unwrap();
    let mut a = [0u8; 4];
    sock.read_exact(&mut a).unwrap();
    assert_eq!(ack::decode(&a), Ok(true));

    // Echo the byte stream; keep serving (credits, completions) until the client says done.
    let total = stream().len();
    let mut pending = IOBuf::new();
    let mut echoed = 0;
    sock.set_nonblocking(true).unwrap();
    run(&ep, "server", |ep| {
        ep.poll(&mut pending).unwrap();
        let before = pending.len();
        write_some(ep, &mut pending);
        echoed += before - pending.len();
        let mut done = [0u8; 1];
        echoed == total && matches!(sock.read(&mut done), Ok(1))
    });
    // The global context installed its pool as the IOBuf allocator before any IOBuf block was
    // allocated here: blocks handed over and bytes copied out of small messages alike are
    // registered, so the echo copies nothing.
    let stats = ep.stats();
    assert!(stats.zerocopy_blocks > 0, "{stats:?}");
    assert_eq!(stats.bytes_copied_out, 0, "{stats:?}");
    let ctx = RdmaContext::global().unwrap();
    assert!(Arc::ptr_eq(ctx, RdmaContext::global().unwrap()));
    let mut fresh = IOBuf::new();
    fresh.append(b"registered");
    assert!(fresh.pieces().all(|p| p.meta() != 0));
    ep.shutdown();
    drop(sock);
    let out = wait_child(child, DEADLINE);
    assert!(out.contains(&format!("CHILD OK {total}")), "{out}");
}

/// Both hello versions, one client process each.
#[test]
fn cross_process_endpoint_echo() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    serve_one("2");
    serve_one("3");
}
