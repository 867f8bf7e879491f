//! A peer that shuts down or goes away: every call on both sides fails within a bounded time,
//! nothing hangs.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::verbs::wait_readable;
use spindle_rdma::{EndpointError, RdmaEndpoint};
use std::io;
use std::time::{Duration, Instant};

/// Polls and writes on `ep` until both fail; panics past the deadline.
fn until_broken(ep: &RdmaEndpoint) -> EndpointError {
    let start = Instant::now();
    loop {
        check_deadline(start, "the survivor never noticed");
        let mut sink = IOBuf::new();
        if let Err(e) = ep.poll(&mut sink) {
            let mut more = IOBuf::new();
            more.append(b"after the failure");
            let w = ep.cut_from_iobufs(&mut [&mut more]).unwrap_err();
            assert_ne!(w.kind(), io::ErrorKind::WouldBlock);
            assert_eq!(more.len(), 17, "nothing cut");
            return e;
        }
        let mut msg = IOBuf::new();
        msg.append(b"ping");
        match ep.cut_from_iobufs(&mut [&mut msg]) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {} // the poll above reports the cause next round
        }
        let _ = wait_readable(ep.completion_fd(), Duration::from_millis(5));
    }
}

#[test]
fn shutdown_fails_both_sides() {
    let (a, b) = pair();
    let mut msg = IOBuf::new();
    msg.append(b"hello");
    a.cut_from_iobufs(&mut [&mut msg]).unwrap();
    a.shutdown();
    a.shutdown(); // idempotent
    let mut sink = IOBuf::new();
    assert!(matches!(a.poll(&mut sink), Err(EndpointError::Shutdown)));
    let mut more = IOBuf::new();
    more.append(b"x");
    let e = a.cut_from_iobufs(&mut [&mut more]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    assert!(a.describe().contains("broken"), "{}", a.describe());
    // A failed completion, or a refused re-post if the pair failed first.
    let e = until_broken(&b);
    assert!(
        matches!(
            e,
            EndpointError::Completion { .. } | EndpointError::Verbs(_)
        ),
        "{e:?}"
    );
    assert!(matches!(
        a.on_completions(&[]),
        Err(EndpointError::Shutdown)
    ));
}

#[test]
fn dropped_peer_fails_the_survivor() {
    let (a, b) = pair();
    drop(a);
    let e = until_broken(&b);
    assert!(
        matches!(
            e,
            EndpointError::Completion { .. } | EndpointError::Verbs(_)
        ),
        "{e:?}"
    );
}

/// A writer blocked on a closed window learns of the failure too.
#[test]
fn peer_gone_while_the_window_is_closed() {
    let (a, b) = pair();
    let mut big = IOBuf::new();
    big.append(&pattern(4 << 20, 1));
    let start = Instant::now();
    loop {
        check_deadline(start, "window never closed");
        match a.cut_from_iobufs(&mut [&mut big]) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(b);
    until_broken(&a);
}

/// Completions no correct device produces break the connection with an error naming the
/// violation, never a panic or a negative window.
#[test]
fn impossible_completions_break_the_connection() {
    use spindle_rdma::verbs::{WcOpcode, WcStatus, WorkCompletion};
    let wc = |wr_id, opcode, byte_len, imm_data| WorkCompletion {
        wr_id,
        status: WcStatus::Success,
        opcode,
        byte_len,
        imm_data,
        qp_num: 1,
    };
    let cases = [
        (wc(9999, WcOpcode::Recv, 10, None), "unposted wr_id 9999"),
        (
            wc(5, WcOpcode::Send, 0, None),
            "covers 5 sends, 0 in flight",
        ),
        (wc(0, WcOpcode::Recv, 9000, None), "9000 bytes"),
        (wc(0, WcOpcode::RdmaWrite, 0, None), "unexpected RdmaWrite"),
    ];
    for (bad, what) in cases {
        let (a, _b) = pair();
        let e = a.on_completions(&[bad]).unwrap_err();
        assert!(e.to_string().contains(what), "{e} (expected {what})");
        let mut more = IOBuf::new();
        more.append(b"x");
        assert!(a.cut_from_iobufs(&mut [&mut more]).is_err());
        let w = a.window();
        assert!(w.remote_rq_window() <= w.local_capacity());
    }
}

/// A raw queue pair posing as the peer breaks the protocol: more credits than it could owe,
/// then (on a fresh connection) a message longer than the receive buffers.
#[test]
fn hostile_peer_breaks_the_connection() {
    use common::qp_side::{QpShape, QpSide};
    use spindle_rdma::verbs::RetryConfig;
    use spindle_rdma::{EndpointConfig, PreparedEndpoint};
    let peer = || {
        QpSide::new(QpShape {
            sq: 16,
            rq: 16,
            send_blocks: 4,
            block: 16384,
            cq: 64,
            retry: RetryConfig::default(),
        })
    };
    let ctx = context();
    let connect = |side: &QpSide| {
        let p = PreparedEndpoint::new(&ctx, &EndpointConfig::default()).unwrap();
        side.connect_to(&p.local_hello());
        p.connect(&side.hello(16384)).unwrap()
    };
    // Credits beyond the window (min(128, 16) - 3 = 13).
    let side = peer();
    let ep = connect(&side);
    side.send(1, 0, &[], 1000, true, true);
    let e = until_broken(&ep);
    assert!(e.to_string().contains("credits"), "{e}");
    // A message longer than the 8160-byte receive buffers.
    let side = peer();
    let ep = connect(&side);
    side.send(1, 0, &[7u8; 9000], 0, true, true);
    let e = until_broken(&ep);
    assert!(
        matches!(
            e,
            EndpointError::Completion {
                status: spindle_rdma::verbs::WcStatus::LocalLengthError,
                ..
            }
        ),
        "{e:?}"
    );
}
