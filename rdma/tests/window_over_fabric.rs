//! The window accounting driving real queue pairs of the software fabric: a fast sender, a slow
//! receiver that handles at most one receive per round, queue pairs with no RNR tolerance
//! (`rnr_retry = 0`: a message that finds no posted receive fails the connection). Credits come
//! back only in pure ACKs (the receiver sends no data). Every message must arrive once, in order.

use spindle_rdma::endpoint::Window;
use spindle_rdma::fabric::FabricDevice;
use spindle_rdma::verbs::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SQ: u16 = 16;
const RQ: u16 = 16;
const BLOCK: usize = 64;
const MESSAGES: u64 = 1500;
/// Bound on the whole run (never reached when things work).
const DEADLINE: Duration = Duration::from_secs(60);

struct Side {
    _dev: Arc<FabricDevice>,
    cq: Arc<dyn CompletionQueue>,
    qp: Arc<dyn QueuePair>,
    _mr: Box<dyn MemoryRegion>,
    lkey: u32,
    base: u64,
    _mem: Box<[u8]>,
    w: Window,
}

impl Side {
    fn new() -> Side {
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(256).unwrap();
        let qp = pd
            .create_qp(QpInit {
                send_cq: cq.clone(),
                recv_cq: cq.clone(),
                max_send_wr: u32::from(SQ),
                max_recv_wr: u32::from(RQ),
                max_sge: 1,
                retry: RetryConfig {
                    rnr_retry: 0,
                    rnr_timer: Duration::from_millis(1),
                },
            })
            .unwrap();
        // RQ receive blocks, then SQ send blocks.
        let mut mem = vec![0u8; usize::from(RQ + SQ) * BLOCK].into_boxed_slice();
        // SAFETY: `mem` lives in the Side and is dropped after `_mr` (field order).
        let mr = unsafe { pd.register(mem.as_mut_ptr(), mem.len(), Access::LOCAL_WRITE) }.unwrap();
        let (lkey, base) = (mr.lkey(), mr.addr());
        let side = Side {
            _dev: dev,
            cq,
            qp,
            _mr: mr,
            lkey,
            base,
            _mem: mem,
            w: Window::new(SQ, RQ, SQ, RQ).unwrap(),
        };
        for slot in 0..u64::from(RQ) {
            side.post_recv(slot);
        }
        side
    }

    fn sge(&self, block: u64, len: usize) -> Sge {
        Sge {
            addr: self.base + block * BLOCK as u64,
            length: len as u32,
            lkey: self.lkey,
        }
    }

    fn post_recv(&self, slot: u64) {
        self.qp
            .post_recv(&RecvWr {
                wr_id: slot,
                sg_list: vec![self.sge(slot, BLOCK)],
            })
            .unwrap();
    }

    fn pure_ack(&self, credits: u32) {
        self.qp
            .post_send(&SendWr {
                wr_id: 0,
                sg_list: vec![],
                op: SendOp::SendWithImm(credits),
                signaled: true,
                solicited: true,
            })
            .unwrap();
    }

    fn poll(&self, max: usize) -> Vec<WorkCompletion> {
        let mut out = Vec::new();
        self.cq.poll(&mut out, max).unwrap();
        for wc in &out {
            assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        }
        out
    }
}

#[test]
fn slow_receiver_never_overrun_and_order_kept() {
    let mut a = Side::new();
    let mut b = Side::new();
    a.qp.connect(&b.qp.address()).unwrap();
    b.qp.connect(&a.qp.address()).unwrap();
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
            let block = u64::from(RQ) + sent % ring;
            let at = (block as usize) * BLOCK;
            // The block is free: the window allows at most `ring` uncovered sends.
            a._mem[at..at + 8].copy_from_slice(&sent.to_be_bytes());
            a.qp.post_send(&SendWr {
                wr_id: u64::from(plan.signaled.unwrap_or(0)),
                sg_list: vec![a.sge(block, 8)],
                op: SendOp::SendWithImm(plan.imm),
                signaled: plan.signaled.is_some(),
                solicited: plan.solicited,
            })
            .unwrap();
            sent += 1;
        }
        for wc in a.poll(64) {
            match (wc.opcode, wc.wr_id) {
                (WcOpcode::Send, 0) => {
                    if let Some(c) = a.w.on_ack_completed().unwrap() {
                        a.pure_ack(c);
                    }
                }
                (WcOpcode::Send, n) => a.w.on_send_completed(n as u32).unwrap(),
                (WcOpcode::Recv, slot) => {
                    // Pure ACKs from b: re-post, take the credits.
                    assert_eq!(wc.byte_len, 0);
                    a.post_recv(slot);
                    assert!(a.w.on_recv(0, wc.imm_data).unwrap().is_none());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Slow receiver: one completion per round.
        for wc in b.poll(1) {
            match (wc.opcode, wc.wr_id) {
                (WcOpcode::Send, 0) => {
                    if let Some(c) = b.w.on_ack_completed().unwrap() {
                        b.pure_ack(c);
                    }
                }
                (WcOpcode::Recv, slot) => {
                    let at = slot as usize * BLOCK;
                    let seq = u64::from_be_bytes(b._mem[at..at + 8].try_into().unwrap());
                    assert_eq!(seq, received, "lost, duplicated or reordered");
                    received += 1;
                    b.post_recv(slot);
                    if let Some(c) = b.w.on_recv(wc.byte_len, wc.imm_data).unwrap() {
                        b.pure_ack(c);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if !a.w.can_send() || sent == MESSAGES {
            // Nothing to do until completions arrive: wait briefly on b's queue.
            b.cq.arm(false).unwrap();
            let _ = wait_readable(b.cq.fd(), Duration::from_millis(1));
            b.cq.ack_events().unwrap();
        }
    }
    assert_eq!(a.qp.state(), QpState::ReadyToSend);
    assert_eq!(b.qp.state(), QpState::ReadyToSend);
}
