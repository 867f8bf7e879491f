//! Unit tests and a two-sided model of the accounting: both sides send data to each other over
//! an in-order channel, completions and receive handling are delayed at random (a slow receiver
//! handles its receives rarely). The model checks, at every step, what the hardware would
//! enforce: a message always finds a posted receive (no RNR), a send queue never holds more
//! than its size; and at the end that every message arrived once, in order (no loss,
//! duplication or reordering) and that no configuration deadlocks.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

#[test]
fn capacities_follow_brpc() {
    let w = Window::new(128, 128, 64, 256).unwrap();
    assert_eq!(w.local_capacity(), 128 - 3); // min(local sq 128, remote rq 256) - 3
    assert_eq!(w.remote_capacity(), 64 - 3); // min(local rq 128, remote sq 64) - 3
    assert_eq!(w.remote_rq_window(), 125);
    assert_eq!(w.sq_window(), 125);
    assert_eq!(w.sq_imm_window(), 3);
    let e = Window::new(128, 8, 128, 128).unwrap_err();
    assert_eq!(
        e,
        WindowError::QueueTooSmall {
            which: "local rq",
            size: 8
        }
    );
    assert!(e.to_string().contains("below the minimum 16"));
}

#[test]
fn credits_signals_and_pure_acks() {
    let mut w = Window::new(16, 16, 16, 16).unwrap(); // capacity 13
    let mut signaled = 0;
    for i in 0..13 {
        let p = w.prepare_send(100, false).unwrap();
        assert_eq!(p.imm, 0);
        if let Some(n) = p.signaled {
            assert_eq!(n, 3); // every 13/4 = 3 sends
            signaled += 1;
        }
        // The last one empties both windows: solicited.
        if i == 12 {
            assert!(p.solicited);
        }
    }
    assert_eq!(signaled, 4);
    assert!(!w.can_send());
    assert_eq!(w.prepare_send(1, true), None);
    // Completions give back slots, credits come back in an immediate.
    w.on_send_completed(3).unwrap();
    assert_eq!(w.on_recv(10, Some(5)).unwrap(), None);
    assert_eq!(w.remote_rq_window(), 5);
    assert!(w.can_send());
    // Too many credits: a protocol error, nothing changes.
    assert!(matches!(
        w.on_recv(0, Some(100)),
        Err(WindowError::CreditOverflow { .. })
    ));
    assert!(w.on_send_completed(100).is_err());
    // Credits to return ride on the next send...
    assert_eq!(w.pending_credits(), 1);
    assert_eq!(w.prepare_send(1, true).unwrap().imm, 1);
    // ...or go out as a pure ACK past half the remote window (13 / 2 = 6).
    for _ in 0..6 {
        assert_eq!(w.on_recv(1, None).unwrap(), None);
    }
    assert_eq!(w.on_recv(1, None).unwrap(), Some(7));
    assert_eq!(w.sq_imm_window(), 2);
    assert!(w.on_ack_completed().unwrap().is_none());
    assert!(w.on_ack_completed().is_err()); // more ACK completions than ACKs
}

#[test]
fn pure_ack_waits_for_a_free_reserved_slot() {
    let mut w = Window::new(16, 16, 16, 16).unwrap();
    let mut acks = 0;
    for _ in 0..3 {
        for _ in 0..7 {
            if w.on_recv(1, None).unwrap().is_some() {
                acks += 1;
            }
        }
    }
    assert_eq!((acks, w.sq_imm_window()), (3, 0));
    for _ in 0..7 {
        assert_eq!(w.on_recv(1, None).unwrap(), None);
    }
    // The ACK's completion frees a slot and sends what is pending.
    assert_eq!(w.on_ack_completed().unwrap(), Some(7));
}

/// What travels on the wire.
#[derive(Debug, Clone, Copy)]
enum Packet {
    Data {
        seq: u64,
        imm: u32,
        signaled: Option<u32>,
    },
    Ack {
        imm: u32,
    },
}

/// What a side's send completion queue reports.
#[derive(Debug, Clone, Copy)]
enum SendDone {
    Data(u32),
    Ack,
}

struct Side {
    w: Window,
    sq_size: u32,
    /// Sends in the send queue (data not yet covered by a signaled completion, plus ACKs).
    sq_used: u32,
    /// Receives posted.
    posted: u32,
    /// Arrived, not yet handled: (byte_len, imm).
    recv_cq: VecDeque<(u32, Option<u32>)>,
    send_cq: VecDeque<SendDone>,
    next_seq: u64,
    expect_seq: u64,
}

impl Side {
    fn new(sq: u16, rq: u16, peer_sq: u16, peer_rq: u16) -> Side {
        Side {
            w: Window::new(sq, rq, peer_sq, peer_rq).unwrap(),
            sq_size: u32::from(sq),
            sq_used: 0,
            posted: u32::from(rq),
            recv_cq: VecDeque::new(),
            send_cq: VecDeque::new(),
            next_seq: 0,
            expect_seq: 0,
        }
    }

    fn push_ack(&mut self, imm: u32, out: &mut VecDeque<Packet>) {
        self.sq_used += 1;
        assert!(self.sq_used <= self.sq_size, "send queue overflow (ack)");
        out.push_back(Packet::Ack { imm });
    }
}

struct Model {
    sides: [Side; 2],
    /// wires[i]: packets from side i to side 1 - i, in order.
    wires: [VecDeque<Packet>; 2],
    total: u64,
}

impl Model {
    /// Side `i` sends a data message if it may. Returns whether something happened.
    fn send(&mut self, i: usize) -> bool {
        let s = &mut self.sides[i];
        if s.next_seq >= self.total {
            return false;
        }
        let last = s.next_seq + 1 == self.total;
        let Some(plan) = s.w.prepare_send(64, last) else {
            return false;
        };
        s.sq_used += 1;
        assert!(s.sq_used <= s.sq_size, "send queue overflow");
        self.wires[i].push_back(Packet::Data {
            seq: s.next_seq,
            imm: plan.imm,
            signaled: plan.signaled,
        });
        s.next_seq += 1;
        true
    }

    /// The next packet from side `1 - i` arrives at side `i`.
    fn deliver(&mut self, i: usize) -> bool {
        let Some(p) = self.wires[1 - i].pop_front() else {
            return false;
        };
        let r = &mut self.sides[i];
        assert!(
            r.posted > 0,
            "receiver not ready: {p:?} found no posted receive"
        );
        r.posted -= 1;
        match p {
            Packet::Data { seq, imm, signaled } => {
                assert_eq!(seq, r.expect_seq, "lost, duplicated or reordered");
                r.expect_seq += 1;
                r.recv_cq.push_back((64, Some(imm)));
                // The transport acknowledges on arrival; the sender sees its completion later.
                if let Some(n) = signaled {
                    self.sides[1 - i].send_cq.push_back(SendDone::Data(n));
                }
            }
            Packet::Ack { imm } => {
                r.recv_cq.push_back((0, Some(imm)));
                self.sides[1 - i].send_cq.push_back(SendDone::Ack);
            }
        }
        true
    }

    /// Side `i` handles one receive completion (re-posting its buffer).
    fn handle_recv(&mut self, i: usize) -> bool {
        let s = &mut self.sides[i];
        let Some((len, imm)) = s.recv_cq.pop_front() else {
            return false;
        };
        s.posted += 1;
        if let Some(credits) = s.w.on_recv(len, imm).unwrap() {
            s.push_ack(credits, &mut self.wires[i]);
        }
        true
    }

    /// Side `i` handles one send completion.
    fn handle_send(&mut self, i: usize) -> bool {
        let s = &mut self.sides[i];
        let Some(done) = s.send_cq.pop_front() else {
            return false;
        };
        match done {
            SendDone::Data(n) => {
                s.w.on_send_completed(n).unwrap();
                s.sq_used -= n;
            }
            SendDone::Ack => {
                s.sq_used -= 1;
                if let Some(credits) = s.w.on_ack_completed().unwrap() {
                    s.push_ack(credits, &mut self.wires[i]);
                }
            }
        }
        true
    }

    fn check(&self) {
        for s in &self.sides {
            assert!(s.w.remote_rq_window() <= s.w.local_capacity());
            assert!(s.w.sq_window() <= s.w.local_capacity());
            assert!(s.w.sq_imm_window() <= RESERVED_WR_NUM);
        }
    }

    fn step(&mut self, action: u8) -> bool {
        let i = usize::from(action & 1);
        let done = match action >> 1 {
            0 => self.send(i),
            1 => self.deliver(i),
            2 => self.handle_recv(i),
            _ => self.handle_send(i),
        };
        self.check();
        done
    }

    fn finished(&self) -> bool {
        self.sides
            .iter()
            .all(|s| s.next_seq == self.total && s.expect_seq == self.total)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_rnr_no_overflow_no_loss_no_deadlock(
        a_sq in 16u16..40, a_rq in 16u16..40, b_sq in 16u16..40, b_rq in 16u16..40,
        // Receive handling is rare in the weighted actions: a slow receiver.
        actions in proptest::collection::vec(
            prop_oneof![4 => 0u8..4, 1 => 4u8..6, 2 => 6u8..8], 0..2000),
        total in 1u64..300,
    ) {
        let mut m = Model {
            sides: [Side::new(a_sq, a_rq, b_sq, b_rq), Side::new(b_sq, b_rq, a_sq, a_rq)],
            wires: [VecDeque::new(), VecDeque::new()],
            total,
        };
        for a in actions {
            m.step(a);
        }
        // Drain: keep doing whatever can be done; a step with nothing possible is a deadlock.
        let mut idle_rounds = 0;
        while !m.finished() {
            let progressed = (0..8u8).fold(false, |acc, a| m.step(a) | acc);
            if progressed {
                idle_rounds = 0;
            } else {
                idle_rounds += 1;
                prop_assert!(idle_rounds < 2, "deadlock: {:?}",
                    m.sides.iter().map(|s| (s.next_seq, s.expect_seq, s.w.clone()))
                        .collect::<Vec<_>>());
            }
        }
    }
}
