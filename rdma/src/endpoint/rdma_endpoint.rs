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
//!
//! # Known limits
//!
//! - `poll` returns only once the queue is empty after re-arming (a one-shot notification
//!   gives no other safe place to stop); a peer sending as fast as this loop returns credits
//!   keeps it going, with `dst` growing meanwhile (as brpc's `PollCq`).
//! - One completion queue carries sends and receives and is armed for every completion;
//!   brpc's separate receive queue armed for solicited completions only would wake the reader
//!   less often on hardware.
//! - If copy blocks run out with nothing posted, the writer gets `WouldBlock` and is woken by
//!   the next completion batch; a send not yet covered by a signaled completion keeps its copy
//!   blocks until one comes.

mod recv;
mod send;

use super::context::{PoolBlock, RdmaContext, STAGING_BLOCK_SIZE};
use super::{EndpointConfig, EndpointError, Window};
use crate::block_pool::BlockPool;
use crate::handshake::{Hello, MIN_BLOCK_SIZE};
use crate::verbs::{
    CompletionQueue, PortAddress, QpAddress, QpInit, QueuePair, RetryConfig, WcOpcode,
    WorkCompletion,
};
use parking_lot::Mutex;
use recv::post_recv;
use spindle_iobuf::IOBuf;
use std::collections::VecDeque;
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
    /// The context the resources come from.
    ctx: Arc<RdmaContext>,
    /// The settings.
    cfg: EndpointConfig,
    /// Send and receive completions.
    cq: Arc<dyn CompletionQueue>,
    /// The queue pair, in INIT.
    qp: Arc<dyn QueuePair>,
    /// Where receive blocks come from.
    recv_pool: Arc<BlockPool>,
    /// The block posted under each receive `wr_id`.
    recv_slots: Vec<Option<PoolBlock>>,
    /// Scatter/gather entries per send (`rdma_max_sge`).
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
    /// The context the resources come from.
    ctx: Arc<RdmaContext>,
    /// The settings.
    cfg: EndpointConfig,
    /// Send and receive completions.
    cq: Arc<dyn CompletionQueue>,
    /// The connected queue pair.
    qp: Arc<dyn QueuePair>,
    /// Where receive blocks come from.
    recv_pool: Arc<BlockPool>,
    /// Where copy blocks of the write path come from (8 KiB).
    staging_pool: Arc<BlockPool>,
    /// The peer's hello.
    remote: Hello,
    /// Largest data message: the peer's receive block size.
    max_message: usize,
    /// Scatter/gather entries per send.
    max_sge: usize,
    /// Windows, in-flight sends, receive slots, queued bytes: see [`State`].
    state: Mutex<State>,
}

impl std::fmt::Debug for RdmaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RdmaEndpoint {
    /// Event mode: the completion queue's readiness fd (edge-triggered, read side).
    pub fn completion_fd(&self) -> RawFd {
        self.cq.fd()
    }

    /// Event mode, after a readiness event: acks the events, polls completions until none is
    /// left (at most `cqe_poll_once` per batch), re-arms, polls once more. Received bytes are
    /// appended to `dst` (also any queued by [`RdmaEndpoint::on_completions`]).
    ///
    /// On an error, bytes that arrived before it are still appended to `dst` (a peer that sent
    /// its last message and closed looks like data followed by a failed completion): handle
    /// them, then close.
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
    /// how many. Works after the connection broke too (bytes that arrived before the error).
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
