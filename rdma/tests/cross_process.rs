//! Cross-process echo over the software fabric, brought up by brpc's handshake over TCP.
//!
//! The test process is the server: it listens on loopback TCP and re-executes this test binary
//! as the client (environment `SPINDLE_RDMA_CHILD_PORT`, running only `child_client`). The
//! client sends a hello (v2 and v3 in turn), the server answers with its own, the client ACKs
//! with RDMA OK; then the client sends messages with send-with-immediate over the queue pair
//! and the server echoes each back with the immediate plus one.

mod common;

use common::child::{child_connect, read_hello, spawn_child, wait_child};
use common::qp_side::{QpShape, QpSide};
use spindle_rdma::handshake::{self, ack, HelloVersion};
use spindle_rdma::verbs::*;
use std::io::{Read, Write};
use std::net::TcpListener;

use std::time::Duration;

const CHILD_ENV: &str = "SPINDLE_RDMA_CHILD_PORT";
const VERSION_ENV: &str = "SPINDLE_RDMA_CHILD_HELLO";
const MESSAGES: u64 = 200;
const BLOCK: usize = 1024;
const DEPTH: u32 = 32;
/// Bound on every wait (never reached when things work).
const WAIT: Duration = Duration::from_secs(20);

/// A side of the echo: `DEPTH` receive blocks, `DEPTH` send blocks, RNR retried forever.
fn side() -> QpSide {
    QpSide::new(QpShape {
        sq: DEPTH,
        rq: DEPTH,
        send_blocks: DEPTH,
        block: BLOCK,
        cq: 4 * DEPTH,
        retry: RetryConfig {
            rnr_retry: 7,
            rnr_timer: Duration::from_millis(1),
        },
    })
}

/// The client: runs only in the child process.
#[test]
fn child_client() {
    let Some((mut sock, version)) = child_connect(CHILD_ENV, VERSION_ENV, WAIT) else {
        return; // not the child: nothing to do
    };
    let ep = side();
    sock.write_all(&handshake::encode_hello(
        version,
        &ep.hello(BLOCK as u32 * 8),
    ))
    .unwrap();
    let server = read_hello(&mut sock, Some(version));
    ep.connect_to(&server);
    sock.write_all(&ack::encode(true)).unwrap();

    // Keep at most DEPTH/2 messages in flight; the server re-posts a receive per message.
    let mut next_reply = 0u64;
    let mut sent = 0u64;
    let mut send_done = 0u64;
    while next_reply < MESSAGES {
        while sent < MESSAGES
            && sent - next_reply < u64::from(DEPTH / 2)
            && sent - send_done < u64::from(DEPTH)
        {
            let msg = format!("message {sent} from pid {}", std::process::id());
            ep.send(sent, sent, msg.as_bytes(), sent as u32, true, true);
            sent += 1;
        }
        let wc = ep.next(WAIT);
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        match wc.opcode {
            WcOpcode::Send => send_done += 1,
            WcOpcode::Recv => {
                // Echoes come back in order, with the immediate plus one.
                assert_eq!(wc.imm_data, Some(next_reply as u32 + 1));
                let expected = format!("message {next_reply} from pid {}", std::process::id());
                assert_eq!(ep.received(&wc), expected.as_bytes());
                ep.post_recv(wc.wr_id);
                next_reply += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    println!("CHILD OK {MESSAGES}");
}

fn serve_one(version: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = spawn_child(
        "child_client",
        &[(CHILD_ENV, &port.to_string()), (VERSION_ENV, version)],
    );

    let (mut sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let ep = side();
    let client = read_hello(&mut sock, None);
    let expect = if version == "3" {
        HelloVersion::V3
    } else {
        HelloVersion::V2
    };
    ep.connect_to(&client);
    sock.write_all(&handshake::encode_hello(
        expect,
        &ep.hello(BLOCK as u32 * 8),
    ))
    .unwrap();
    let mut a = [0u8; 4];
    sock.read_exact(&mut a).unwrap();
    assert_eq!(ack::decode(&a), Ok(true));

    // Echo every message back with the immediate plus one.
    // Echoes wait in `backlog` while the send queue is full (send completions lag receives).
    let mut backlog: std::collections::VecDeque<(Vec<u8>, u32)> = Default::default();
    let mut echoed = 0u64;
    let mut acked = 0u64;
    while acked < MESSAGES {
        while echoed - acked < u64::from(DEPTH) {
            let Some((data, imm)) = backlog.pop_front() else {
                break;
            };
            ep.send(echoed, echoed, &data, imm, true, true);
            echoed += 1;
        }
        let wc = ep.next(WAIT);
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        match wc.opcode {
            WcOpcode::Recv => {
                backlog.push_back((ep.received(&wc), wc.imm_data.unwrap() + 1));
                ep.post_recv(wc.wr_id);
            }
            WcOpcode::Send => acked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }

    let out = wait_child(child, WAIT);
    assert!(out.contains(&format!("CHILD OK {MESSAGES}")), "{out}");
}

#[test]
fn cross_process_echo_v2() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    serve_one("2");
}

#[test]
fn cross_process_echo_v3() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    serve_one("3");
}
