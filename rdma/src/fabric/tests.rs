//! Fabric semantics, one pair of devices per test (two devices in one process behave as two
//! hosts' ports: separate sockets, key tables and queue-pair tables).

use super::*;
use crate::verbs::*;
use std::sync::Arc;
use std::time::Duration;

/// Generous bound for a completion to show up (never reached when things work).
const WAIT: Duration = Duration::from_secs(10);

/// One side: device, domain, queues, a registered buffer, a queue pair.
struct Side {
    _dev: Arc<FabricDevice>,
    pd: Arc<dyn ProtectionDomain>,
    cq: Arc<dyn CompletionQueue>,
    qp: Arc<dyn QueuePair>,
    buf: Box<[u8]>,
    mr: Box<dyn MemoryRegion>,
}

impl Side {
    fn new(retry: RetryConfig, access: Access) -> Side {
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(256).unwrap();
        let qp = pd
            .create_qp(QpInit {
                send_cq: cq.clone(),
                recv_cq: cq.clone(),
                max_send_wr: 64,
                max_recv_wr: 64,
                max_sge: 4,
                retry,
            })
            .unwrap();
        let mut buf = vec![0u8; 1 << 16].into_boxed_slice();
        // SAFETY: `buf` is heap memory owned by the Side, dropped after `mr` (field order).
        let mr = unsafe { pd.register(buf.as_mut_ptr(), buf.len(), access) }.unwrap();
        Side {
            _dev: dev,
            pd,
            cq,
            qp,
            buf,
            mr,
        }
    }

    fn sge(&self, off: usize, len: usize) -> Sge {
        Sge {
            addr: self.mr.addr() + off as u64,
            length: len as u32,
            lkey: self.mr.lkey(),
        }
    }

    fn post_recv(&self, id: u64, off: usize, len: usize) {
        self.qp
            .post_recv(&RecvWr {
                wr_id: id,
                sg_list: vec![self.sge(off, len)],
            })
            .unwrap();
    }

    fn send(&self, id: u64, off: usize, len: usize, op: SendOp) {
        self.qp
            .post_send(&SendWr {
                wr_id: id,
                sg_list: vec![self.sge(off, len)],
                op,
                signaled: true,
                solicited: false,
            })
            .unwrap();
    }

    /// Posts a signaled send that may race with the pair's failure: `true` if it was queued
    /// (it will then complete, flushed), `false` if the pair had already failed.
    fn send_racing_failure(&self, id: u64) -> bool {
        match self.qp.post_send(&SendWr {
            wr_id: id,
            sg_list: vec![self.sge(0, 4)],
            op: SendOp::Send,
            signaled: true,
            solicited: false,
        }) {
            Ok(()) => true,
            Err(VerbsError::InvalidState(_)) => false,
            Err(e) => panic!("unexpected {e}"),
        }
    }

    /// Waits for `n` completions.
    fn take(&self, n: usize) -> Vec<WorkCompletion> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        while out.len() < n {
            self.cq.arm(false).unwrap();
            let want = n - out.len();
            self.cq.poll(&mut out, want).unwrap();
            if out.len() >= n {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "timed out with {out:?}");
            wait_readable(self.cq.fd(), left).unwrap();
            self.cq.ack_events().unwrap();
        }
        out
    }
}

fn rw() -> Access {
    Access::LOCAL_WRITE | Access::REMOTE_WRITE
}

fn pair(retry: RetryConfig) -> (Side, Side) {
    let a = Side::new(retry, rw());
    let b = Side::new(retry, rw());
    connect(&a, &b);
    (a, b)
}

fn connect(a: &Side, b: &Side) {
    a.qp.connect(&b.qp.address()).unwrap();
    b.qp.connect(&a.qp.address()).unwrap();
    assert_eq!(a.qp.state(), QpState::ReadyToSend);
}

#[test]
fn sends_arrive_in_order_with_immediates() {
    let (mut a, b) = pair(RetryConfig::default());
    for i in 0..32u64 {
        b.post_recv(100 + i, i as usize * 100, 100);
    }
    for i in 0..32u8 {
        let off = i as usize * 10;
        a.buf[off..off + 10].fill(i);
    }
    for i in 0..32u64 {
        let op = if i % 2 == 0 {
            SendOp::SendWithImm(i as u32 * 7)
        } else {
            SendOp::Send
        };
        a.send(i, i as usize * 10, 10, op);
    }
    let sent = a.take(32);
    let got = b.take(32);
    for (i, wc) in sent.iter().enumerate() {
        assert_eq!(
            (wc.wr_id, wc.status, wc.opcode),
            (i as u64, WcStatus::Success, WcOpcode::Send)
        );
        assert_eq!(wc.byte_len, 10);
    }
    for (i, wc) in got.iter().enumerate() {
        assert_eq!(wc.wr_id, 100 + i as u64);
        assert_eq!(wc.status, WcStatus::Success);
        assert_eq!(wc.byte_len, 10);
        assert_eq!(wc.opcode, WcOpcode::Recv);
        let imm = (i % 2 == 0).then_some(i as u32 * 7);
        assert_eq!(wc.imm_data, imm);
        assert_eq!(&b.buf[i * 100..i * 100 + 10], &[i as u8; 10]);
        assert_eq!(wc.qp_num, b.qp.qp_num());
    }
}

#[test]
fn scatter_gather_and_zero_byte_sends() {
    let (mut a, b) = pair(RetryConfig::default());
    a.buf[..6].copy_from_slice(b"hello ");
    a.buf[100..105].copy_from_slice(b"world");
    b.qp.post_recv(&RecvWr {
        wr_id: 1,
        sg_list: vec![b.sge(0, 4), b.sge(1000, 100)],
    })
    .unwrap();
    a.qp.post_send(&SendWr {
        wr_id: 9,
        sg_list: vec![a.sge(0, 6), a.sge(100, 5)],
        op: SendOp::Send,
        signaled: true,
        solicited: true,
    })
    .unwrap();
    let wc = b.take(1)[0];
    assert_eq!(wc.byte_len, 11);
    assert_eq!(&b.buf[..4], b"hell");
    assert_eq!(&b.buf[1000..1007], b"o world");
    // A pure ACK: zero bytes, an immediate, unsignaled (no send completion on success).
    b.post_recv(2, 0, 8);
    a.qp.post_send(&SendWr {
        wr_id: 10,
        sg_list: vec![],
        op: SendOp::SendWithImm(5),
        signaled: false,
        solicited: true,
    })
    .unwrap();
    let wc = b.take(1)[0];
    assert_eq!((wc.wr_id, wc.byte_len, wc.imm_data), (2, 0, Some(5)));
    assert_eq!(a.take(1)[0].wr_id, 9);
    let mut rest = Vec::new();
    assert_eq!(a.cq.poll(&mut rest, 8).unwrap(), 0);
}

#[test]
fn rdma_write_with_immediate() {
    let (mut a, b) = pair(RetryConfig::default());
    a.buf[..5].copy_from_slice(b"abcde");
    b.post_recv(7, 0, 0);
    let target = b.mr.addr() + 4096;
    a.send(
        1,
        0,
        5,
        SendOp::RdmaWrite {
            remote_addr: target,
            rkey: b.mr.rkey(),
        },
    );
    a.send(
        2,
        0,
        3,
        SendOp::RdmaWriteWithImm {
            remote_addr: target + 10,
            rkey: b.mr.rkey(),
            imm: 0xdead,
        },
    );
    let sent = a.take(2);
    assert!(sent
        .iter()
        .all(|w| w.status.is_ok() && w.opcode == WcOpcode::RdmaWrite));
    let wc = b.take(1)[0];
    assert_eq!(wc.opcode, WcOpcode::RecvRdmaWithImm);
    assert_eq!((wc.wr_id, wc.byte_len, wc.imm_data), (7, 3, Some(0xdead)));
    assert_eq!(&b.buf[4096..4101], b"abcde");
    assert_eq!(&b.buf[4106..4109], b"abc");
}

#[test]
fn bad_rkey_or_bounds_fail_both_sides() {
    for case in 0..3 {
        let (a, b) = pair(RetryConfig::default());
        b.post_recv(1, 0, 16);
        b.post_recv(2, 0, 16);
        let (addr, rkey) = match case {
            0 => (b.mr.addr(), b.mr.rkey() + 1000), // unknown key
            1 => (b.mr.addr() + b.mr.len() as u64 - 2, b.mr.rkey()), // runs past the end
            _ => (b.mr.addr() - 1, b.mr.rkey()),    // starts before
        };
        a.send(
            5,
            0,
            4,
            SendOp::RdmaWriteWithImm {
                remote_addr: addr,
                rkey,
                imm: 1,
            },
        );
        let queued = a.send_racing_failure(6);
        let sent = a.take(1 + usize::from(queued));
        assert_eq!(sent[0].status, WcStatus::RemoteAccessError, "case {case}");
        if queued {
            assert_eq!(sent[1].status, WcStatus::WrFlushError);
        }
        let got = b.take(2);
        assert_eq!(got[0].status, WcStatus::LocalAccessError);
        assert_eq!(got[1].status, WcStatus::WrFlushError);
        assert_eq!(a.qp.state(), QpState::Error);
        assert_eq!(b.qp.state(), QpState::Error);
        assert!(a
            .qp
            .post_send(&SendWr {
                wr_id: 0,
                sg_list: vec![],
                op: SendOp::Send,
                signaled: true,
                solicited: false,
            })
            .is_err());
    }
}

#[test]
fn region_without_remote_write_is_refused() {
    let a = Side::new(RetryConfig::default(), rw());
    let b = Side::new(RetryConfig::default(), Access::LOCAL_WRITE);
    connect(&a, &b);
    a.send(
        1,
        0,
        4,
        SendOp::RdmaWrite {
            remote_addr: b.mr.addr(),
            rkey: b.mr.rkey(),
        },
    );
    assert_eq!(a.take(1)[0].status, WcStatus::RemoteAccessError);
}

#[test]
fn local_keys_and_bounds_are_checked_at_post() {
    let (a, _b) = pair(RetryConfig::default());
    let mut bad = a.sge(0, 8);
    bad.lkey ^= 0xffff;
    let e =
        a.qp.post_recv(&RecvWr {
            wr_id: 1,
            sg_list: vec![bad],
        })
        .unwrap_err();
    assert!(matches!(e, VerbsError::LocalProtection(_)), "{e}");
    let past = a.sge(a.buf.len() - 4, 8);
    assert!(a
        .qp
        .post_send(&SendWr {
            wr_id: 1,
            sg_list: vec![past],
            op: SendOp::Send,
            signaled: true,
            solicited: false,
        })
        .is_err());
    let too_many = vec![a.sge(0, 1); 5];
    assert!(matches!(
        a.qp.post_recv(&RecvWr {
            wr_id: 1,
            sg_list: too_many
        }),
        Err(VerbsError::InvalidArgument(_))
    ));
    // A region of another protection domain.
    let other_pd = a._dev.alloc_pd().unwrap();
    let mut mem = vec![0u8; 64];
    // SAFETY: `mem` outlives `mr` (dropped at the end of the scope, after `mr`).
    let mr = unsafe { other_pd.register(mem.as_mut_ptr(), mem.len(), rw()) }.unwrap();
    let e =
        a.qp.post_recv(&RecvWr {
            wr_id: 1,
            sg_list: vec![Sge {
                addr: mr.addr(),
                length: 8,
                lkey: mr.lkey(),
            }],
        })
        .unwrap_err();
    assert!(e.to_string().contains("another protection domain"), "{e}");
    drop(mr);
    // Registering nothing is refused.
    // SAFETY: null/zero-length registration is refused before any use of the pointer.
    assert!(unsafe { a.pd.register(std::ptr::null_mut(), 0, rw()) }.is_err());
}

#[test]
fn receive_not_ready_retries_then_fails() {
    let retry = RetryConfig {
        rnr_retry: 2,
        rnr_timer: Duration::from_millis(1),
    };
    let (a, b) = pair(retry);
    b.post_recv(1, 0, 16);
    a.send(1, 0, 4, SendOp::Send);
    a.send(2, 0, 4, SendOp::Send); // nothing posted for this one
    let queued = a.send_racing_failure(3);
    let sent = a.take(2 + usize::from(queued));
    assert_eq!(sent[0].status, WcStatus::Success);
    assert_eq!(sent[1].status, WcStatus::RnrRetryExceeded);
    if queued {
        assert_eq!(sent[2].status, WcStatus::WrFlushError);
    }
    assert_eq!(a.qp.state(), QpState::Error);
    assert_eq!(b.take(1)[0].status, WcStatus::Success);
}

#[test]
fn receive_posted_late_is_waited_for_with_infinite_rnr_retry() {
    let retry = RetryConfig {
        rnr_retry: 7,
        rnr_timer: Duration::from_millis(1),
    };
    let (a, b) = pair(retry);
    a.send(1, 0, 4, SendOp::SendWithImm(3));
    // However long the receiver takes, the send waits (no timing assumption: infinite retry).
    std::thread::sleep(Duration::from_millis(20));
    b.post_recv(1, 0, 16);
    assert_eq!(a.take(1)[0].status, WcStatus::Success);
    assert_eq!(b.take(1)[0].imm_data, Some(3));
}

#[test]
fn message_longer_than_receive_is_a_length_error() {
    let (a, b) = pair(RetryConfig::default());
    b.post_recv(1, 0, 4);
    a.send(1, 0, 8, SendOp::Send);
    assert_eq!(a.take(1)[0].status, WcStatus::RemoteInvalidRequest);
    assert_eq!(b.take(1)[0].status, WcStatus::LocalLengthError);
}

#[test]
fn broken_peer_flushes_everything() {
    let (a, b) = pair(RetryConfig {
        rnr_retry: 7,
        rnr_timer: Duration::from_millis(1),
    });
    a.post_recv(1, 0, 16);
    a.post_recv(2, 0, 16);
    // Sends that wait for receives b never posts, then b goes away.
    a.send(10, 0, 4, SendOp::Send);
    a.send(11, 0, 4, SendOp::Send);
    drop(b);
    let got = a.take(4);
    let sends: Vec<_> = got.iter().filter(|w| w.opcode == WcOpcode::Send).collect();
    let recvs: Vec<_> = got.iter().filter(|w| w.opcode == WcOpcode::Recv).collect();
    assert_eq!(sends[0].status, WcStatus::RetryExceeded);
    assert_eq!(sends[1].status, WcStatus::WrFlushError);
    assert!(recvs.iter().all(|w| w.status == WcStatus::WrFlushError));
    assert_eq!(a.qp.state(), QpState::Error);
    assert!(matches!(
        a.qp.post_recv(&RecvWr {
            wr_id: 3,
            sg_list: vec![]
        }),
        Err(VerbsError::InvalidState(_))
    ));
}

#[test]
fn queue_limits_and_connect_errors() {
    let a = Side::new(RetryConfig::default(), rw());
    // Sends before connect are refused; receives are allowed.
    assert!(matches!(
        a.qp.post_send(&SendWr {
            wr_id: 0,
            sg_list: vec![],
            op: SendOp::Send,
            signaled: true,
            solicited: false
        }),
        Err(VerbsError::InvalidState(_))
    ));
    for i in 0..64 {
        a.post_recv(i, 0, 8);
    }
    assert!(matches!(
        a.qp.post_recv(&RecvWr {
            wr_id: 64,
            sg_list: vec![]
        }),
        Err(VerbsError::QueueFull {
            queue: "receive",
            depth: 64
        })
    ));
    // No such queue pair at the remote device; no such device.
    let b = Side::new(RetryConfig::default(), rw());
    let mut addr = b.qp.address();
    addr.qp_num += 77;
    assert!(a.qp.connect(&addr).is_err());
    let mut nowhere = b.qp.address();
    nowhere.port.gid[15] ^= 0xff;
    assert!(a.qp.connect(&nowhere).is_err());
    connect(&a, &b);
    assert!(a.qp.connect(&b.qp.address()).is_err());
    // A third party cannot attach to b, which already has a peer.
    let c = Side::new(RetryConfig::default(), rw());
    assert!(c.qp.connect(&b.qp.address()).is_err());
    assert!(is_fabric_gid(&a.qp.address().port.gid));
    assert_eq!(
        QpAddress::from_bytes(&a.qp.address().to_bytes()),
        Some(a.qp.address())
    );
    assert_eq!(QpAddress::from_bytes(&[1, 2]), None);
}

#[test]
fn deregistered_region_stops_working() {
    let (a, mut b) = pair(RetryConfig::default());
    let rkey = b.mr.rkey();
    let addr = b.mr.addr();
    // Replace b's region: the old key is gone.
    // SAFETY: `b.buf` stays alive as long as `b` (and so as the new region).
    b.mr = unsafe { b.pd.register(b.buf.as_mut_ptr(), 16, rw()) }.unwrap();
    a.send(
        1,
        0,
        4,
        SendOp::RdmaWrite {
            remote_addr: addr,
            rkey,
        },
    );
    assert_eq!(a.take(1)[0].status, WcStatus::RemoteAccessError);
}
