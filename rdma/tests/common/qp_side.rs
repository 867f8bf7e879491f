//! One side of a raw fabric queue-pair test: a device, a completion queue, a queue pair and
//! one registered buffer cut into equal blocks — receive blocks first (slot `i` is block `i`,
//! all posted at creation), then send blocks.

use spindle_rdma::fabric::FabricDevice;
use spindle_rdma::handshake::Hello;
use spindle_rdma::verbs::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shape of a [`QpSide`].
#[derive(Debug, Clone, Copy)]
pub struct QpShape {
    /// Send queue depth.
    pub sq: u32,
    /// Receive queue depth, and receive blocks posted.
    pub rq: u32,
    /// Send blocks after the receive blocks.
    pub send_blocks: u32,
    /// Bytes per block.
    pub block: usize,
    /// Completion queue entries.
    pub cq: u32,
    /// RNR behaviour.
    pub retry: RetryConfig,
}

/// See the module doc. Field order matters: the region is deregistered before its memory goes.
pub struct QpSide {
    _dev: Arc<FabricDevice>,
    pub cq: Arc<dyn CompletionQueue>,
    pub qp: Arc<dyn QueuePair>,
    _mr: Box<dyn MemoryRegion>,
    lkey: u32,
    base: u64,
    _mem: Box<[u8]>,
    pub shape: QpShape,
}

impl QpSide {
    pub fn new(shape: QpShape) -> QpSide {
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(shape.cq).unwrap();
        let qp = pd
            .create_qp(QpInit {
                send_cq: cq.clone(),
                recv_cq: cq.clone(),
                max_send_wr: shape.sq,
                max_recv_wr: shape.rq,
                max_sge: 1,
                retry: shape.retry,
            })
            .unwrap();
        let blocks = (shape.rq + shape.send_blocks) as usize;
        let mut mem = vec![0u8; blocks * shape.block].into_boxed_slice();
        // SAFETY: `mem` lives in the side and is dropped after `_mr` (field order).
        let mr = unsafe { pd.register(mem.as_mut_ptr(), mem.len(), Access::LOCAL_WRITE) }.unwrap();
        let (lkey, base) = (mr.lkey(), mr.addr());
        let side = QpSide {
            _dev: dev,
            cq,
            qp,
            _mr: mr,
            lkey,
            base,
            _mem: mem,
            shape,
        };
        for slot in 0..u64::from(shape.rq) {
            side.post_recv(slot);
        }
        side
    }

    /// Address of block `i`.
    pub fn block(&self, i: u64) -> u64 {
        self.base + i * self.shape.block as u64
    }

    /// The first `len` bytes of block `i`.
    pub fn sge(&self, i: u64, len: usize) -> Sge {
        Sge {
            addr: self.block(i),
            length: len as u32,
            lkey: self.lkey,
        }
    }

    /// Posts receive slot `slot` (block `slot`).
    pub fn post_recv(&self, slot: u64) {
        self.qp
            .post_recv(&RecvWr {
                wr_id: slot,
                sg_list: vec![self.sge(slot, self.shape.block)],
            })
            .unwrap();
    }

    /// Copies `data` into send block `send_slot` (block `rq + send_slot % send_blocks`) and
    /// sends it with `imm`; returns nothing, completes with `wr_id`.
    ///
    /// The caller reuses a send block only after the send that used it completed.
    pub fn send(
        &self,
        wr_id: u64,
        send_slot: u64,
        data: &[u8],
        imm: u32,
        signaled: bool,
        solicited: bool,
    ) {
        let block = u64::from(self.shape.rq) + send_slot % u64::from(self.shape.send_blocks);
        assert!(data.len() <= self.shape.block);
        // SAFETY: the block lies in the registered buffer and is at least `data.len()` bytes;
        // no posted request targets it (the caller's contract above).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.block(block) as *mut u8, data.len())
        };
        self.qp
            .post_send(&SendWr {
                wr_id,
                sg_list: vec![self.sge(block, data.len())],
                op: SendOp::SendWithImm(imm),
                signaled,
                solicited,
            })
            .unwrap();
    }

    /// A zero-byte send with immediate `credits`, signaled with `wr_id` 0.
    pub fn pure_ack(&self, credits: u32) {
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

    /// Up to `max` completions, all successful.
    pub fn poll(&self, max: usize) -> Vec<WorkCompletion> {
        let mut out = Vec::new();
        self.cq.poll(&mut out, max).unwrap();
        for wc in &out {
            assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        }
        out
    }

    /// The next completion (event mode: poll, arm, poll, wait on the fd), within `wait`.
    pub fn next(&self, wait: Duration) -> WorkCompletion {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            if self.cq.poll(&mut out, 1).unwrap() == 1 {
                return out[0];
            }
            self.cq.arm(false).unwrap();
            if self.cq.poll(&mut out, 1).unwrap() == 1 {
                return out[0];
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no completion within {wait:?}");
            wait_readable(self.cq.fd(), left).unwrap();
            self.cq.ack_events().unwrap();
        }
    }

    /// Bytes of the completed receive `wc` (in block `wc.wr_id`).
    pub fn received(&self, wc: &WorkCompletion) -> Vec<u8> {
        let len = wc.byte_len as usize;
        assert!(len <= self.shape.block);
        let mut v = vec![0u8; len];
        // SAFETY: the receive completed, so the device no longer writes its block, which lies in
        // the registered buffer and holds at least `len` bytes (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(self.block(wc.wr_id) as *const u8, v.as_mut_ptr(), len)
        };
        v
    }

    /// The hello announcing this queue pair, with `block_size` as the receive block size.
    pub fn hello(&self, block_size: u32) -> Hello {
        let addr = self.qp.address();
        Hello {
            block_size,
            sq_size: self.shape.sq as u16,
            rq_size: self.shape.rq as u16,
            lid: addr.port.lid,
            gid: addr.port.gid,
            qp_num: addr.qp_num,
            ece: None,
        }
    }

    /// Connects to the queue pair `peer` announces.
    pub fn connect_to(&self, peer: &Hello) {
        self.qp
            .connect(&QpAddress {
                port: PortAddress {
                    gid: peer.gid,
                    lid: peer.lid,
                },
                qp_num: peer.qp_num,
            })
            .unwrap();
    }
}
