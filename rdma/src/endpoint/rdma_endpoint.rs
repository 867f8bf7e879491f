//! One RDMA connection (brpc's `RdmaEndpoint`): a queue pair whose receive buffers come from
//! the context's pool, driven by the [`Window`] accounting.
//!
//! # Lifecycle
//!
//! 1. [`PreparedEndpoint::new`]: completion queue, queue pair in INIT, `rq_size` receive buffers
//!    posted (before the peer is known, as the handshake needs our address first).
//! 2. [`PreparedEndpoint::connect`] with the peer's hello: windows sized from both hellos, queue
//!    pair connected, completion queue armed.
//! 3. [`RdmaEndpoint`]: the write path ([`RdmaEndpoint::cut_from_iobufs`]) and the completion path
//!    ([`RdmaEndpoint::poll`] in event mode, [`RdmaEndpoint::on_completions`] +
//!    [`RdmaEndpoint::take_received`] in polling mode).
//! 4. [`RdmaEndpoint::shutdown`] or drop: queue pair to error; blocks return to the pool.
//!
//! # Wire (compatible with brpc)
//!
//! Every data message is a send with immediate of at most the peer's `block_size` bytes whose
//! immediate is the credits (receives re-posted) being returned; a pure ACK is a zero-byte send
//! with immediate. Signaled and solicited flags follow [`Window::prepare_send`].
//!
//! # Concurrency
//!
//! All mutable state sits behind one mutex: one writer, one reader and a poller may call in
//! concurrently; each call holds the lock for its whole batch. The completion queue has one
//! owner at a time (the reader in event mode, the poller in polling mode).
//!
//! # Invariants
//!
//! - `recv_slots[i]` holds the block posted with `wr_id = i`, for every receive outstanding; a
//!   receive is re-posted (same or fresh block) before its credit is counted.
//! - `in_flight` holds one entry per posted data send not yet covered by a signaled completion,
//!   oldest first; an entry keeps the send's bytes alive (IOBuf references and copy blocks)
//!   until the device is done with them.
//! - Once `broken` is set, every call fails with it and nothing more is posted.

use super::context::{PoolBlock, RdmaContext, STAGING_BLOCK_SIZE};
use super::{EndpointConfig, EndpointError, Window};
use crate::block_pool::BlockPool;
use crate::handshake::{Hello, MIN_BLOCK_SIZE};
use crate::verbs::{
    CompletionQueue, PortAddress, QpAddress, QpInit, QueuePair, RecvWr, RetryConfig, SendOp,
    SendWr, Sge, WcOpcode, WorkCompletion,
};
use parking_lot::Mutex;
use spindle_iobuf::IOBuf;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// `wr_id` of pure ACKs. Data sends carry the number of sends their completion covers.
const ACK_WR_ID: u64 = u64::MAX;

/// Scatter/gather entries per send when `rdma_max_sge` is 0: within every NIC's limit (mlx5
/// allows 30), and enough for a 64 KiB message of 8 KiB pieces with misaligned ends.
const DEFAULT_MAX_SGE: u32 = 16;

/// Largest message sent (the fabric's frame limit; hardware allows 2 GiB): caps a peer's
/// announced block size.
const MAX_MESSAGE: usize = 1 << 30;

/// What one poll or batch of completions did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Bytes of data received (appended to the caller's buffer or queued).
    pub bytes_received: usize,
    /// The writer got `WouldBlock` and may now send again.
    pub window_opened: bool,
    /// Completions handled.
    pub completions: usize,
}

/// Counters of one endpoint (for tests and `/connections`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStats {
    /// Data messages posted.
    pub messages_sent: u64,
    /// Bytes posted.
    pub bytes_sent: u64,
    /// Scatter/gather entries sent straight from registered IOBuf pieces.
    pub zerocopy_sges: u64,
    /// Bytes copied into registered blocks before sending.
    pub bytes_copied_out: u64,
    /// Data messages received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Received blocks handed over without copying.
    pub zerocopy_blocks: u64,
    /// Received messages copied (below the threshold, or the pool was exhausted).
    pub copied_messages: u64,
    /// Pure ACKs posted.
    pub pure_acks_sent: u64,
}

/// Resources allocated before the peer is known; see the module doc.
pub struct PreparedEndpoint {
    ctx: Arc<RdmaContext>,
    cfg: EndpointConfig,
    cq: Arc<dyn CompletionQueue>,
    qp: Arc<dyn QueuePair>,
    recv_pool: Arc<BlockPool>,
    recv_slots: Vec<Option<PoolBlock>>,
    max_sge: u32,
    /// The resources moved into an [`RdmaEndpoint`] (dropping this must not fail the pair).
    handed_over: bool,
}

impl std::fmt::Debug for PreparedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedEndpoint")
            .field("qp_num", &self.qp.qp_num())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PreparedEndpoint {
    /// Allocates the completion queue and the queue pair (INIT) and posts `rq_size` receive
    /// buffers of `recv_block_size` bytes from the context's pool.
    pub fn new(
        ctx: &Arc<RdmaContext>,
        cfg: &EndpointConfig,
    ) -> Result<PreparedEndpoint, EndpointError> {
        cfg.validate()?;
        let recv_pool = ctx.pool(cfg.pool_block_size())?;
        let (sq, rq) = (u32::from(cfg.sq_size), u32::from(cfg.rq_size));
        // Every outstanding work request completes at most once: sq + rq entries suffice.
        let cq = ctx.device().create_cq(sq + rq)?;
        let max_sge = match crate::flags::RDMA_MAX_SGE.get() {
            0 => DEFAULT_MAX_SGE,
            n => n,
        };
        let qp = ctx.protection_domain().create_qp(QpInit {
            send_cq: cq.clone(),
            recv_cq: cq.clone(),
            max_send_wr: sq,
            max_recv_wr: rq,
            max_sge,
            // brpc allows no RNR: the window guarantees a posted receive for every message.
            retry: RetryConfig {
                rnr_retry: 0,
                rnr_timer: Duration::from_millis(1),
            },
        })?;
        let mut prepared = PreparedEndpoint {
            ctx: ctx.clone(),
            cfg: *cfg,
            cq,
            qp,
            recv_pool,
            recv_slots: (0..cfg.rq_size).map(|_| None).collect(),
            max_sge,
            handed_over: false,
        };
        for slot in 0..prepared.recv_slots.len() {
            let block = PoolBlock::alloc(&prepared.recv_pool).ok_or_else(|| {
                EndpointError::OutOfMemory(format!(
                    "no {}-byte block for receive buffer {slot} (rdma_memory_pool_*)",
                    cfg.pool_block_size()
                ))
            })?;
            post_recv(
                &*prepared.qp,
                &mut prepared.recv_slots,
                slot,
                block,
                cfg.recv_block_size,
            )?;
        }
        Ok(prepared)
    }

    /// What this side announces in its handshake hello.
    pub fn local_hello(&self) -> Hello {
        let addr = self.qp.address();
        Hello {
            block_size: self.cfg.recv_block_size as u32,
            sq_size: self.cfg.sq_size,
            rq_size: self.cfg.rq_size,
            lid: addr.port.lid,
            gid: addr.port.gid,
            qp_num: addr.qp_num,
            ece: None,
        }
    }

    /// Connects the queue pair to the peer its hello describes and builds the windows. A hello
    /// brpc would refuse (block size, queue sizes, `qp_num` 0) is [`EndpointError::BadHello`].
    pub fn connect(mut self, remote: &Hello) -> Result<RdmaEndpoint, EndpointError> {
        if !remote.is_negotiable() {
            return Err(EndpointError::BadHello(format!(
                "block_size={} (at least {MIN_BLOCK_SIZE}), sq_size={}, rq_size={} (at least {}), \
                 qp_num={} (non-zero)",
                remote.block_size,
                remote.sq_size,
                remote.rq_size,
                crate::handshake::MIN_QP_SIZE,
                remote.qp_num
            )));
        }
        let window = Window::new(
            self.cfg.sq_size,
            self.cfg.rq_size,
            remote.sq_size,
            remote.rq_size,
        )?;
        self.qp.connect(&QpAddress {
            port: PortAddress {
                gid: remote.gid,
                lid: remote.lid,
            },
            qp_num: remote.qp_num,
        })?;
        // One notification for the first completion (event mode); later ones are re-armed by
        // `poll`.
        self.cq.arm(false)?;
        let staging_pool = self.ctx.pool(STAGING_BLOCK_SIZE)?;
        self.handed_over = true;
        Ok(RdmaEndpoint {
            remote: *remote,
            max_message: (remote.block_size as usize).min(MAX_MESSAGE),
            max_sge: self.max_sge as usize,
            ctx: self.ctx.clone(),
            cfg: self.cfg,
            cq: self.cq.clone(),
            qp: self.qp.clone(),
            recv_pool: self.recv_pool.clone(),
            staging_pool,
            state: Mutex::new(State {
                window,
                in_flight: VecDeque::new(),
                recv_slots: std::mem::take(&mut self.recv_slots),
                received: IOBuf::new(),
                writer_blocked: false,
                broken: None,
                scratch: Vec::new(),
                stats: EndpointStats::default(),
            }),
        })
    }
}

impl Drop for PreparedEndpoint {
    fn drop(&mut self) {
        // Stop the device from writing the posted buffers before they go back to the pool.
        if !self.handed_over {
            self.qp.set_error();
        }
    }
}

/// One data send the device may still read.
struct InFlight {
    /// The IOBuf bytes of the message (keeps registered pieces alive).
    _data: IOBuf,
    /// Registered blocks unregistered pieces were copied into.
    _copies: Vec<PoolBlock>,
}

/// Everything the writer, the reader and the poller share.
struct State {
    /// Windows and credits.
    window: Window,
    /// Data sends not yet covered by a signaled completion, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The block posted under each receive `wr_id`.
    recv_slots: Vec<Option<PoolBlock>>,
    /// Bytes received in polling mode, until `take_received`.
    received: IOBuf,
    /// The writer got `WouldBlock` and waits for `window_opened`.
    writer_blocked: bool,
    /// Why the connection is broken, once it is.
    broken: Option<EndpointError>,
    /// Completions of the current poll.
    scratch: Vec<WorkCompletion>,
    /// Counters.
    stats: EndpointStats,
}

/// One connected RDMA connection; see the module doc.
pub struct RdmaEndpoint {
    ctx: Arc<RdmaContext>,
    cfg: EndpointConfig,
    cq: Arc<dyn CompletionQueue>,
    qp: Arc<dyn QueuePair>,
    recv_pool: Arc<BlockPool>,
    staging_pool: Arc<BlockPool>,
    /// The peer's hello.
    remote: Hello,
    /// Largest data message: the peer's receive block size.
    max_message: usize,
    /// Scatter/gather entries per send.
    max_sge: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for RdmaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where the bytes of one scatter/gather entry come from.
enum Slot {
    /// Straight from a registered piece.
    Registered(Sge),
    /// Copied from unregistered pieces (`parts[first..first + count]`) into a fresh block.
    Copy {
        first: usize,
        count: usize,
        len: usize,
    },
}

/// One message to post: its entries and length.
struct MessagePlan {
    slots: Vec<Slot>,
    /// Unregistered ranges to copy, in order.
    parts: Vec<(*const u8, usize)>,
    len: usize,
}

fn post_recv(
    qp: &dyn QueuePair,
    slots: &mut [Option<PoolBlock>],
    slot: usize,
    block: PoolBlock,
    len: usize,
) -> Result<(), EndpointError> {
    qp.post_recv(&RecvWr {
        wr_id: slot as u64,
        sg_list: vec![Sge {
            addr: block.ptr().as_ptr() as u64,
            length: len.min(block.capacity()) as u32,
            lkey: block.lkey(),
        }],
    })?;
    slots[slot] = Some(block);
    Ok(())
}

impl RdmaEndpoint {
    /// Posts as much of `bufs` (front first) as the windows allow, as send-with-immediate
    /// messages of at most the peer's block size, and cuts exactly the bytes posted. `Ok(n > 0)`
    /// bytes posted (or `Ok(0)` if `bufs` are empty); `Err(WouldBlock)` when no window is open
    /// (a later poll reports [`PollOutcome::window_opened`]); other errors: the connection is
    /// broken.
    pub fn cut_from_iobufs(&self, bufs: &mut [&mut IOBuf]) -> io::Result<usize> {
        let mut st = self.state.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone().into());
        }
        let mut remaining: usize = bufs.iter().map(|b| b.len()).sum();
        let mut total = 0;
        while remaining > 0 {
            if !st.window.can_send() {
                if total == 0 {
                    st.writer_blocked = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                break;
            }
            let plan = self.plan_message(bufs);
            if plan.len == 0 {
                break;
            }
            let n = match self.post_message(&mut st, bufs, plan, remaining) {
                Ok(n) => n,
                // Out of copy blocks: send the rest later (blocks come back as sends complete).
                Err(EndpointError::OutOfMemory(_)) if total > 0 => break,
                // Nothing posted yet, but completions will free copy blocks: wait for them.
                Err(EndpointError::OutOfMemory(_)) if !st.in_flight.is_empty() => {
                    st.writer_blocked = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(e) => return Err(self.fail(&mut st, e).into()),
            };
            remaining -= n;
            total += n;
        }
        Ok(total)
    }

    /// Chooses the bytes of the next message: registered pieces become entries of their own
    /// (adjacent ones merged), runs of unregistered pieces share a copy block; stops at the
    /// peer's block size or the entry limit.
    fn plan_message(&self, bufs: &[&mut IOBuf]) -> MessagePlan {
        let mut plan = MessagePlan {
            slots: Vec::new(),
            parts: Vec::new(),
            len: 0,
        };
        'pieces: for piece in bufs.iter().flat_map(|b| b.pieces()) {
            let bytes = piece.as_slice();
            let lkey = self.ctx.registered_lkey(bytes.as_ptr(), piece.meta());
            let mut off = 0;
            while off < bytes.len() {
                let room = self.max_message - plan.len;
                if room == 0 {
                    break 'pieces;
                }
                let at = bytes[off..].as_ptr();
                let n = match lkey {
                    Some(lkey) => {
                        let n = (bytes.len() - off).min(room).min(u32::MAX as usize);
                        match plan.slots.last_mut() {
                            Some(Slot::Registered(s))
                                if s.lkey == lkey
                                    && s.addr + u64::from(s.length) == at as u64
                                    && s.length as usize + n <= u32::MAX as usize =>
                            {
                                s.length += n as u32;
                            }
                            _ => {
                                if plan.slots.len() == self.max_sge {
                                    break 'pieces;
                                }
                                plan.slots.push(Slot::Registered(Sge {
                                    addr: at as u64,
                                    length: n as u32,
                                    lkey,
                                }));
                            }
                        }
                        n
                    }
                    None => {
                        let parts_len = plan.parts.len();
                        let copy_room = match plan.slots.last() {
                            Some(Slot::Copy { len, .. }) => STAGING_BLOCK_SIZE - len,
                            _ => 0,
                        };
                        if copy_room == 0 {
                            if plan.slots.len() == self.max_sge {
                                break 'pieces;
                            }
                            plan.slots.push(Slot::Copy {
                                first: parts_len,
                                count: 0,
                                len: 0,
                            });
                        }
                        let Some(Slot::Copy { count, len, .. }) = plan.slots.last_mut() else {
                            unreachable!("a copy slot was just ensured");
                        };
                        let n = (bytes.len() - off).min(room).min(STAGING_BLOCK_SIZE - *len);
                        *count += 1;
                        *len += n;
                        plan.parts.push((at, n));
                        n
                    }
                };
                off += n;
                plan.len += n;
            }
        }
        plan
    }

    /// Posts one planned message and cuts its bytes from `bufs` into the in-flight queue;
    /// returns its length.
    fn post_message(
        &self,
        st: &mut State,
        bufs: &mut [&mut IOBuf],
        plan: MessagePlan,
        remaining: usize,
    ) -> Result<usize, EndpointError> {
        // Copy blocks first: running out leaves `bufs` untouched.
        let mut copies = Vec::new();
        for s in &plan.slots {
            if let Slot::Copy { .. } = s {
                copies.push(PoolBlock::alloc(&self.staging_pool).ok_or_else(|| {
                    EndpointError::OutOfMemory(format!(
                        "no {STAGING_BLOCK_SIZE}-byte block to copy unregistered bytes into"
                    ))
                })?);
            }
        }
        // The bytes move into `data`; blocks are shared, so the planned addresses stay valid
        // while `data` lives.
        let mut data = IOBuf::new();
        let mut left = plan.len;
        for b in bufs.iter_mut() {
            if left == 0 {
                break;
            }
            left -= b.cutn(&mut data, left);
        }
        let mut sg_list = Vec::with_capacity(plan.slots.len());
        let mut copy_blocks = copies.iter();
        for s in &plan.slots {
            match s {
                Slot::Registered(sge) => {
                    sg_list.push(*sge);
                    st.stats.zerocopy_sges += 1;
                }
                Slot::Copy { first, count, len } => {
                    let block = copy_blocks.next().expect("one block per copy slot");
                    let mut at = 0;
                    for &(src, n) in &plan.parts[*first..*first + *count] {
                        // SAFETY: `src..src + n` lies in a piece now referenced by `data` (alive,
                        // and not written by anyone); the block is ours, `len <= block size`
                        // bytes, and the two cannot overlap (a block is owned by one user).
                        unsafe {
                            std::ptr::copy_nonoverlapping(src, block.ptr().as_ptr().add(at), n)
                        };
                        at += n;
                    }
                    sg_list.push(Sge {
                        addr: block.ptr().as_ptr() as u64,
                        length: *len as u32,
                        lkey: block.lkey(),
                    });
                    st.stats.bytes_copied_out += *len as u64;
                }
            }
        }
        let last = remaining == plan.len;
        let send = st
            .window
            .prepare_send(plan.len as u32, last)
            .expect("the caller checked can_send");
        self.qp.post_send(&SendWr {
            wr_id: u64::from(send.signaled.unwrap_or(0)),
            sg_list,
            op: SendOp::SendWithImm(send.imm),
            signaled: send.signaled.is_some(),
            solicited: send.solicited,
        })?;
        st.stats.messages_sent += 1;
        st.stats.bytes_sent += plan.len as u64;
        st.in_flight.push_back(InFlight {
            _data: data,
            _copies: copies,
        });
        Ok(plan.len)
    }

    /// Event mode: the completion queue's readiness fd (edge-triggered, read side).
    pub fn completion_fd(&self) -> RawFd {
        self.cq.fd()
    }

    /// Event mode, after a readiness event: acks the events, polls completions until none is
    /// left (at most `cqe_poll_once` per batch), re-arms, polls once more. Received bytes are
    /// appended to `dst` (also any queued by [`RdmaEndpoint::on_completions`]).
    pub fn poll(&self, dst: &mut IOBuf) -> Result<PollOutcome, EndpointError> {
        let mut st = self.state.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        let mut outcome = PollOutcome::default();
        if !st.received.is_empty() {
            outcome.bytes_received += st.received.len();
            dst.append_owned(std::mem::take(&mut st.received));
        }
        if let Err(e) = self.cq.ack_events() {
            return Err(self.fail(&mut st, e.into()));
        }
        let mut armed = false;
        loop {
            let mut wcs = std::mem::take(&mut st.scratch);
            wcs.clear();
            let polled = self.cq.poll(&mut wcs, self.cfg.cqe_poll_once);
            let result = match polled {
                Ok(0) => Ok(()),
                Ok(_) => self.handle(&mut st, &wcs, dst, &mut outcome),
                Err(e) => Err(e.into()),
            };
            let found = !wcs.is_empty();
            st.scratch = wcs;
            if let Err(e) = result {
                return Err(self.fail(&mut st, e));
            }
            if found {
                continue;
            }
            if armed {
                break;
            }
            // No lost completion: one that arrived before the arm is found by the next poll.
            if let Err(e) = self.cq.arm(false) {
                return Err(self.fail(&mut st, e.into()));
            }
            armed = true;
        }
        Ok(outcome)
    }

    /// Polling mode: handles a batch a poller took from [`RdmaEndpoint::completion_queue`];
    /// received bytes are queued for [`RdmaEndpoint::take_received`].
    pub fn on_completions(&self, wcs: &[WorkCompletion]) -> Result<PollOutcome, EndpointError> {
        let mut st = self.state.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        let mut outcome = PollOutcome::default();
        let mut received = std::mem::take(&mut st.received);
        let result = self.handle(&mut st, wcs, &mut received, &mut outcome);
        st.received = received;
        match result {
            Ok(()) => Ok(outcome),
            Err(e) => Err(self.fail(&mut st, e)),
        }
    }

    /// Moves the bytes queued by [`RdmaEndpoint::on_completions`] to the end of `dst`; returns
    /// how many.
    pub fn take_received(&self, dst: &mut IOBuf) -> usize {
        let mut st = self.state.lock();
        let n = st.received.len();
        if n > 0 {
            dst.append_owned(std::mem::take(&mut st.received));
        }
        n
    }

    /// The completion queue (send and receive completions), for a poller in polling mode.
    pub fn completion_queue(&self) -> &Arc<dyn CompletionQueue> {
        &self.cq
    }

    /// Moves the queue pair to the error state (everything outstanding is flushed); later calls
    /// fail with [`EndpointError::Shutdown`]. Idempotent.
    pub fn shutdown(&self) {
        let mut st = self.state.lock();
        if st.broken.is_none() {
            st.broken = Some(EndpointError::Shutdown);
        }
        self.qp.set_error();
    }

    /// One line for `/connections`.
    pub fn describe(&self) -> String {
        let st = self.state.lock();
        let w = &st.window;
        let mut s = format!(
            "rdma qp={} sq_window={}/{} rq_window={}/{} credits={} in_flight={}",
            self.qp.qp_num(),
            w.sq_window(),
            w.local_capacity(),
            w.remote_rq_window(),
            w.local_capacity(),
            w.pending_credits(),
            st.in_flight.len(),
        );
        if let Some(e) = &st.broken {
            s.push_str(&format!(" broken=\"{e}\""));
        }
        s
    }

    /// A snapshot of the windows and credits.
    pub fn window(&self) -> Window {
        self.state.lock().window.clone()
    }

    /// The peer's hello, as given to [`PreparedEndpoint::connect`].
    pub fn remote_hello(&self) -> &Hello {
        &self.remote
    }

    /// Counters so far.
    pub fn stats(&self) -> EndpointStats {
        self.state.lock().stats
    }

    /// The context this endpoint belongs to.
    pub fn context(&self) -> &Arc<RdmaContext> {
        &self.ctx
    }

    /// Marks the connection broken (first error wins), fails the queue pair, returns the error.
    fn fail(&self, st: &mut State, e: EndpointError) -> EndpointError {
        let e = st.broken.get_or_insert(e).clone();
        self.qp.set_error();
        e
    }

    /// Handles completions (the shared part of `poll` and `on_completions`).
    fn handle(
        &self,
        st: &mut State,
        wcs: &[WorkCompletion],
        dst: &mut IOBuf,
        outcome: &mut PollOutcome,
    ) -> Result<(), EndpointError> {
        for wc in wcs {
            outcome.completions += 1;
            if !wc.status.is_ok() {
                return Err(EndpointError::Completion {
                    status: wc.status,
                    opcode: wc.opcode,
                });
            }
            match wc.opcode {
                WcOpcode::Send if wc.wr_id == ACK_WR_ID => {
                    if let Some(credits) = st.window.on_ack_completed()? {
                        self.post_pure_ack(st, credits)?;
                    }
                }
                WcOpcode::Send => {
                    let covered = u32::try_from(wc.wr_id)
                        .ok()
                        .filter(|n| *n > 0 && *n as usize <= st.in_flight.len())
                        .ok_or_else(|| {
                            EndpointError::Protocol(format!(
                                "send completion covers {} sends, {} in flight",
                                wc.wr_id,
                                st.in_flight.len()
                            ))
                        })?;
                    st.window.on_send_completed(covered)?;
                    st.in_flight.drain(..covered as usize);
                }
                WcOpcode::Recv => {
                    outcome.bytes_received += self.on_recv(st, wc, dst)?;
                }
                other => {
                    return Err(EndpointError::Protocol(format!(
                        "unexpected {other:?} completion"
                    )))
                }
            }
        }
        if st.writer_blocked && st.window.can_send() {
            st.writer_blocked = false;
            outcome.window_opened = true;
        }
        Ok(())
    }

    /// One receive completed: hands its bytes to `dst` (without copying at or above the
    /// threshold), re-posts a buffer, counts the credit; returns the bytes received.
    fn on_recv(
        &self,
        st: &mut State,
        wc: &WorkCompletion,
        dst: &mut IOBuf,
    ) -> Result<usize, EndpointError> {
        let slot = wc.wr_id as usize;
        let block = st
            .recv_slots
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| {
                EndpointError::Protocol(format!("receive completion for unposted wr_id {slot}"))
            })?;
        let len = wc.byte_len as usize;
        if len > self.cfg.recv_block_size {
            return Err(EndpointError::Protocol(format!(
                "received {len} bytes into a {}-byte buffer",
                self.cfg.recv_block_size
            )));
        }
        let repost = if len == 0 {
            block
        } else {
            st.stats.messages_received += 1;
            st.stats.bytes_received += len as u64;
            let fresh = (self.cfg.recv_zerocopy && len >= self.cfg.zerocopy_min_size)
                .then(|| PoolBlock::alloc(&self.recv_pool))
                .flatten();
            match fresh {
                Some(fresh) => {
                    block.into_iobuf(len, dst);
                    st.stats.zerocopy_blocks += 1;
                    fresh
                }
                None => {
                    // SAFETY: the receive completed, so the device wrote `len` bytes (checked
                    // against the buffer size above) and no longer touches the block, which is
                    // ours until re-posted below.
                    let bytes = unsafe { std::slice::from_raw_parts(block.ptr().as_ptr(), len) };
                    dst.append(bytes);
                    st.stats.copied_messages += 1;
                    block
                }
            }
        };
        post_recv(
            &*self.qp,
            &mut st.recv_slots,
            slot,
            repost,
            self.cfg.recv_block_size,
        )?;
        if let Some(credits) = st.window.on_recv(wc.byte_len, wc.imm_data)? {
            self.post_pure_ack(st, credits)?;
        }
        Ok(len)
    }

    /// Posts a pure ACK (zero-byte send with immediate) returning `credits`.
    fn post_pure_ack(&self, st: &mut State, credits: u32) -> Result<(), EndpointError> {
        self.qp.post_send(&SendWr {
            wr_id: ACK_WR_ID,
            sg_list: Vec::new(),
            op: SendOp::SendWithImm(credits),
            signaled: true,
            solicited: true,
        })?;
        st.stats.pure_acks_sent += 1;
        Ok(())
    }
}

impl Drop for RdmaEndpoint {
    fn drop(&mut self) {
        // Stop the device from touching posted buffers before they return to the pool.
        self.qp.set_error();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn endpoint_is_send_and_sync() {
        assert_send_sync::<RdmaEndpoint>();
        assert_send_sync::<PreparedEndpoint>();
    }
}
