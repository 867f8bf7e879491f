//! Two endpoints in one process, connected through their hellos over the software fabric:
//! many messages echoed byte-exact and in order, in event mode.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::handshake::Hello;
use spindle_rdma::{EndpointConfig, EndpointError, PreparedEndpoint};

/// A stream of framed messages of varied sizes (4-byte length + bytes) echoed back.
#[test]
fn echo_of_many_messages_is_byte_exact_and_in_order() {
    let (a, b) = pair();
    let mut expected = Vec::new();
    let mut a_out = IOBuf::new();
    for i in 0..2000u64 {
        let len = [1usize, 7, 100, 511, 512, 4000, 8160, 9000, 20_000][i as usize % 9];
        let body = pattern(len, i);
        a_out.append(&(len as u32).to_be_bytes());
        a_out.append(&body);
        expected.extend_from_slice(&(len as u32).to_be_bytes());
        expected.extend_from_slice(&body);
    }
    let total = expected.len();
    let a_in = echo(&a, &b, &mut a_out, total);
    assert_eq!(a_in.len(), total);
    assert!(a_in.equals(&expected), "echo differs");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.bytes_sent, total as u64);
    assert_eq!(sb.bytes_received, total as u64);
    assert!(sa.messages_sent >= (total / 8160) as u64);
    assert!(a.describe().starts_with("rdma "), "{}", a.describe());
}

/// Different queue sizes and block sizes on the two sides: each sends messages of at most the
/// other's block size, and the windows follow the smaller queues.
#[test]
fn echo_between_different_configurations() {
    let small = EndpointConfig {
        sq_size: 16,
        rq_size: 24,
        recv_block_size: 1024,
        ..EndpointConfig::default()
    };
    let large = EndpointConfig {
        recv_block_size: 65504,
        ..EndpointConfig::default()
    };
    let (a, b) = pair_with(&context(), &small, &context(), &large);
    assert_eq!(a.remote_hello().block_size, 65504);
    assert_eq!(b.remote_hello().block_size, 1024);
    assert_eq!(a.window().local_capacity(), 16 - 3);
    assert_eq!(b.window().local_capacity(), 24 - 3);
    let payload = pattern(300_000, 7);
    let mut a_out = IOBuf::new();
    a_out.append(&payload);
    let a_in = echo(&a, &b, &mut a_out, payload.len());
    assert!(a_in.equals(&payload));
    // a sent at most 65504 bytes per message, b at most 1024.
    assert!(a.stats().messages_sent >= (payload.len() / 65504) as u64);
    assert!(b.stats().messages_sent >= (payload.len() / 1024) as u64);
}

/// A hello brpc would refuse is an error naming the field, not a connection.
#[test]
fn refused_hellos() {
    let ctx = context();
    let cfg = EndpointConfig::default();
    let pool = ctx.pool(cfg.pool_block_size()).unwrap();
    let in_use = || pool.total_blocks() - pool.free_blocks();
    let good = PreparedEndpoint::new(&ctx, &cfg).unwrap().local_hello();
    assert_eq!(
        in_use(),
        0,
        "a dropped prepared endpoint gives its receive blocks back"
    );
    for (bad, field) in [
        (
            Hello {
                block_size: 512,
                ..good
            },
            "block_size=512",
        ),
        (Hello { sq_size: 8, ..good }, "sq_size=8"),
        (Hello { qp_num: 0, ..good }, "qp_num=0"),
        (Hello::refusal(), "block_size=0"),
    ] {
        let p = PreparedEndpoint::new(&ctx, &cfg).unwrap();
        let e = p.connect(&bad).unwrap_err();
        assert!(matches!(e, EndpointError::BadHello(_)), "{e:?}");
        assert!(e.to_string().contains(field), "{e}");
    }
    assert_eq!(in_use(), 0);
    let bad_cfg = EndpointConfig { sq_size: 4, ..cfg };
    let e = PreparedEndpoint::new(&ctx, &bad_cfg).unwrap_err();
    assert!(e.to_string().contains("rdma_sq_size"), "{e}");
}

/// `rdma_recv_block_type=huge`: 2 MiB receive blocks; a message gathers up to 16 entries, so
/// copied pieces (8 KiB copy blocks) make messages of up to 128 KiB.
#[test]
fn echo_with_huge_receive_blocks() {
    let cfg = EndpointConfig {
        sq_size: 16,
        rq_size: 16,
        recv_block_size: 2 * 1024 * 1024 - 32,
        ..EndpointConfig::default()
    };
    assert_eq!(cfg.pool_block_size(), 2 << 20);
    let (a, b) = pair_with(&context(), &cfg, &context(), &cfg);
    let payload = pattern(3 << 20, 11);
    let mut out = IOBuf::new();
    out.append(&payload);
    let back = echo(&a, &b, &mut out, payload.len());
    assert!(back.equals(&payload));
    let sa = a.stats();
    assert!(sa.messages_sent >= 24 && sa.messages_sent < 100, "{sa:?}");
}
