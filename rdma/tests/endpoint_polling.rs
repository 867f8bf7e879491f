//! Polling mode: a `PollerGroup` takes each endpoint's completions and hands them to
//! `on_completions`; readers collect bytes with `take_received`, woken through a channel.

mod common;

use common::endpoint::*;
use spindle_iobuf::IOBuf;
use spindle_rdma::poller::PollerGroup;
use spindle_rdma::verbs::WorkCompletion;
use spindle_rdma::RdmaEndpoint;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers `ep` with `group`; events (bytes, window opened) go to the returned receiver.
fn register(
    group: &PollerGroup,
    ep: &Arc<RdmaEndpoint>,
) -> (spindle_rdma::poller::PollerRegistration, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let me = ep.clone();
    let reg = group.add(
        ep.completion_queue().clone(),
        Box::new(move |wcs: &[WorkCompletion]| {
            let out = me.on_completions(wcs).expect("completions");
            if out.bytes_received > 0 || out.window_opened {
                let _ = tx.send(());
            }
        }),
    );
    (reg, rx)
}

#[test]
fn pollers_feed_the_endpoints() {
    // 2 pollers, yielding (the machine has 2 cores), over 2 endpoints.
    let group = PollerGroup::start(2, true, 32).unwrap();
    let (a, b) = pair();
    let (reg_a, rx_a) = register(&group, &a);
    let (reg_b, rx_b) = register(&group, &b);

    let payload = pattern(2_000_000, 3);
    // b echoes on its own thread: take_received, then write back (WouldBlock: wait for an event).
    let echo = {
        let b = b.clone();
        let total = payload.len();
        std::thread::spawn(move || {
            let mut pending = IOBuf::new();
            let mut echoed = 0;
            let start = Instant::now();
            while echoed < total {
                check_deadline(start, "echo");
                b.take_received(&mut pending);
                if !pending.is_empty() {
                    match b.cut_from_iobufs(&mut [&mut pending]) {
                        Ok(n) => {
                            echoed += n;
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                let _ = rx_b.recv_timeout(Duration::from_millis(50));
            }
        })
    };
    let mut out = IOBuf::new();
    out.append(&payload);
    let mut back = IOBuf::new();
    let start = Instant::now();
    while back.len() < payload.len() {
        check_deadline(start, &format!("a got {} of {}", back.len(), payload.len()));
        if !out.is_empty() {
            match a.cut_from_iobufs(&mut [&mut out]) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let _ = rx_a.recv_timeout(Duration::from_millis(50));
        a.take_received(&mut back);
    }
    echo.join().unwrap();
    assert!(back.equals(&payload));
    drop((reg_a, reg_b));
    assert_eq!(a.take_received(&mut back), 0);
}
