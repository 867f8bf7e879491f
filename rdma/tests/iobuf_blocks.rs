//! The registered block pool installed as the iobuf allocator (its own test binary: the
//! allocator is process-wide and set once). An IOBuf's pieces go out as one scatter/gather
//! send, each entry's lkey taken from the piece's `meta` — no copy into a staging buffer.

use spindle_iobuf::IOBuf;
use spindle_rdma::block_pool::BlockPool;
use spindle_rdma::fabric::FabricDevice;
use spindle_rdma::verbs::*;
use std::time::Duration;

#[test]
fn iobuf_pieces_are_sent_from_registered_blocks() {
    let dev = FabricDevice::open().unwrap();
    let pd = dev.alloc_pd().unwrap();
    let pool = BlockPool::new(pd.clone(), 8192, 64 * 8192, 64 * 8192, 4).unwrap();
    spindle_iobuf::set_block_allocator(Box::new(pool)).unwrap();

    let cq = dev.create_cq(16).unwrap();
    let init = QpInit {
        send_cq: cq.clone(),
        recv_cq: cq.clone(),
        max_send_wr: 4,
        max_recv_wr: 4,
        max_sge: 16,
        retry: RetryConfig::default(),
    };
    let a = pd.create_qp(init.clone()).unwrap();
    let b = pd.create_qp(init).unwrap();
    a.connect(&b.address()).unwrap();
    b.connect(&a.address()).unwrap();

    // A message spanning several blocks.
    let payload: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = IOBuf::new();
    buf.append(&payload);
    let sges: Vec<Sge> = buf
        .pieces()
        .map(|p| {
            assert_ne!(p.meta(), 0, "block not from the registered pool");
            Sge {
                addr: p.as_slice().as_ptr() as u64,
                length: p.as_slice().len() as u32,
                lkey: p.meta() as u32,
            }
        })
        .collect();
    assert!(sges.len() >= 4, "{} pieces", sges.len());

    let mut dst = vec![0u8; 32 * 1024];
    // SAFETY: `dst` outlives `mr` (dropped at the end of the test, after `mr`).
    let mr = unsafe { pd.register(dst.as_mut_ptr(), dst.len(), Access::LOCAL_WRITE) }.unwrap();
    b.post_recv(&RecvWr {
        wr_id: 1,
        sg_list: vec![Sge {
            addr: mr.addr(),
            length: mr.len() as u32,
            lkey: mr.lkey(),
        }],
    })
    .unwrap();
    a.post_send(&SendWr {
        wr_id: 2,
        sg_list: sges,
        op: SendOp::SendWithImm(30_000),
        signaled: true,
        solicited: true,
    })
    .unwrap();

    let mut got = Vec::new();
    for _ in 0..2000 {
        cq.poll(&mut got, 2).unwrap();
        if got.len() == 2 {
            break;
        }
        cq.arm(false).unwrap();
        if cq.poll(&mut got, 2).unwrap() == 0 {
            wait_readable(cq.fd(), Duration::from_millis(10)).unwrap();
            cq.ack_events().unwrap();
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|wc| wc.status.is_ok()));
    let recv = got.iter().find(|wc| wc.opcode == WcOpcode::Recv).unwrap();
    assert_eq!((recv.byte_len, recv.imm_data), (30_000, Some(30_000)));
    drop(mr);
    assert_eq!(&dst[..30_000], &payload[..]);
}
