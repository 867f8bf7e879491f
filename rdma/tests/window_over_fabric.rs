//! The window accounting driving real queue pairs of the software fabric: a fast sender, a slow
//! receiver that handles at most one receive per round, queue pairs with no RNR tolerance
//! (`rnr_retry = 0`: a message that finds no posted receive fails the connection). Credits come
//! back only in pure ACKs (the receiver sends no data). Every message must arrive once, in order.

mod common;

use common::qp_side::{QpShape, QpSide};
use spindle_rdma::endpoint::Window;
use spindle_rdma::verbs::*;
use std::time::{Duration, Instant};

const SQ: u16 = 16;
const RQ: u16 = 16;
const BLOCK: usize = 64;
const MESSAGES: u64 = 1500;
/// Bound on the whole run (never reached when things work).
const DEADLINE: Duration = Duration::from_secs(60);

/// A raw queue pair side and its window.
struct Side {
    q: QpSide,
    w: Window,
}

impl Side {
    fn new() -> Side {
        Side {
            q: QpSide::new(QpShape {
                sq: u32::from(SQ),
                rq: u32::from(RQ),
                send_blocks: u32::from(SQ),
                block: BLOCK,
                cq: 256,
                retry: RetryConfig {
                    rnr_retry: 0,
                    rnr_timer: Duration::from_millis(1),
                },
            }),
            w: Window::new(SQ, RQ, SQ, RQ).unwrap(),
        }
    }
}

#[test]
fn slow_receiver_never_overrun_and_order_kept() {
    let mut a = Side::new();
    let mut b = Side::new();
    a.q.qp.connect(&b.q.qp.address()).unwrap();
    b.q.qp.connect(&a.q.qp.address()).unwrap();
    let start = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    let ring = u64::from(a.w.local_capacity());
    while received < MESSAGES {
        assert!(
            start.elapsed() < DEADLINE,
            "stalled at {sent} sent, {received} received"
        );
        // Sender: as much as the windows allow.
        while sent < MESSAGES {
            let last = sent + 1 == MESSAGES;
            let Some(plan) = a.w.prepare_send(8, last) else {
                break;
            };
            // The send block is free: the window allows at most `ring` uncovered sends.
            a.q.send(
                u64::from(plan.signaled.unwrap_or(0)),
                sent % ring,
                &sent.to_be_bytes(),
                plan.imm,
                plan.signaled.is_some(),
                plan.solicited,
            );
            sent += 1;
        }
        for wc in a.q.poll(64) {
            match (wc.opcode, wc.wr_id) {
                (WcOpcode::Send, 0) => {
                    if let Some(c) = a.w.on_ack_completed().unwrap() {
                        a.q.pure_ack(c);
                    }
                }
                (WcOpcode::Send, n) => a.w.on_send_completed(n as u32).unwrap(),
                (WcOpcode::Recv, slot) => {
                    // Pure ACKs from b: re-post, take the credits.
                    assert_eq!(wc.byte_len, 0);
                    a.q.post_recv(slot);
                    assert!(a.w.on_recv(0, wc.imm_data).unwrap().is_none());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Slow receiver: one completion per round.
        for wc in b.q.poll(1) {
            match (wc.opcode, wc.wr_id) {
                (WcOpcode::Send, 0) => {
                    if let Some(c) = b.w.on_ack_completed().unwrap() {
                        b.q.pure_ack(c);
                    }
                }
                (WcOpcode::Recv, slot) => {
                    let seq = u64::from_be_bytes(b.q.received(&wc).try_into().unwrap());
                    assert_eq!(seq, received, "lost, duplicated or reordered");
                    received += 1;
                    b.q.post_recv(slot);
                    if let Some(c) = b.w.on_recv(wc.byte_len, wc.imm_data).unwrap() {
                        b.q.pure_ack(c);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if !a.w.can_send() || sent == MESSAGES {
            // Nothing to do until completions arrive: wait briefly on b's queue.
            b.q.cq.arm(false).unwrap();
            let _ = wait_readable(b.q.cq.fd(), Duration::from_millis(1));
            b.q.cq.ack_events().unwrap();
        }
    }
    assert_eq!(a.q.qp.state(), QpState::ReadyToSend);
    assert_eq!(b.q.qp.state(), QpState::ReadyToSend);
}
