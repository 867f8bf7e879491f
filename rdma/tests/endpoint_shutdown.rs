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
