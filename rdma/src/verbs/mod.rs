//! A verbs-like interface (the subset of libibverbs an RC transport needs), implemented by the
//! software [`fabric`](crate::fabric) and, with the `ibverbs` feature, by real NICs.
//!
//! # Objects
//!
//! - [`Device`]: an opened adapter port; gives its address ([`PortAddress`]: GID + LID), allocates
//!   protection domains and completion queues.
//! - [`ProtectionDomain`]: registers memory ([`MemoryRegion`]: `lkey` for local use, `rkey` for
//!   a peer's RDMA writes, checked against the region's bounds and access) and creates queue
//!   pairs.
//! - [`CompletionQueue`]: [`CompletionQueue::poll`] takes [`WorkCompletion`]s. Its
//!   [`CompletionQueue::fd`] becomes readable after [`CompletionQueue::arm`] once a completion
//!   arrives (solicited-only arming waits for a solicited receive or any error); an event loop
//!   watches it like a socket and calls [`CompletionQueue::ack_events`] before re-arming.
//! - [`QueuePair`]: reliable connected. [`QueuePair::connect`] to a peer's [`QpAddress`] (which the
//!   handshake carries as GID + QPN), then post sends ([`SendWr`]: send, send with immediate, RDMA
//!   write, RDMA write with immediate) and receives ([`RecvWr`]).
//!
//! # Reliable-connected semantics both backends follow
//!
//! - Sends complete in posting order; a receive consumes the oldest posted receive buffer.
//! - A send that finds no posted receive is retried (`rnr_retry`, `rnr_timer`) and then fails with
//!   [`WcStatus::RnrRetryExceeded`].
//! - A failed work request moves the queue pair to [`QpState::Error`]; everything outstanding then
//!   completes with [`WcStatus::WrFlushError`], and later posts are refused.
//! - Unsignaled sends produce no completion when they succeed; failures always complete.
//!
//! # Safety contract of memory
//!
//! Registering memory is `unsafe`: the region must stay valid (and not be moved or freed) until
//! the [`MemoryRegion`] is dropped, and bytes under a posted work request must not be touched
//! until its completion (the device reads and writes them asynchronously, as hardware DMA does).

mod error;

pub use error::VerbsError;

use std::any::Any;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// A 128-bit port identifier (raw bytes, as in the hello).
pub type Gid = [u8; 16];

/// Where a port is reachable: what the handshake's `gid` and `lid` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortAddress {
    /// The port's GID.
    pub gid: Gid,
    /// Local identifier (InfiniBand subnets; 0 on RoCE and the software fabric).
    pub lid: u16,
}

/// A queue pair's address: enough for a peer to connect to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QpAddress {
    /// The port it lives on.
    pub port: PortAddress,
    /// Its queue pair number.
    pub qp_num: u32,
}

impl QpAddress {
    /// Encoded length of [`QpAddress::to_bytes`].
    pub const LEN: usize = 22;

    /// Fixed 22-byte form: gid (16), lid (u16 BE), qp_num (u32 BE).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..16].copy_from_slice(&self.port.gid);
        out[16..18].copy_from_slice(&self.port.lid.to_be_bytes());
        out[18..22].copy_from_slice(&self.qp_num.to_be_bytes());
        out
    }

    /// Parses [`QpAddress::to_bytes`]; `None` unless exactly 22 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<QpAddress> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut gid = [0u8; 16];
        gid.copy_from_slice(&b[..16]);
        Some(QpAddress {
            port: PortAddress {
                gid,
                lid: u16::from_be_bytes([b[16], b[17]]),
            },
            qp_num: u32::from_be_bytes([b[18], b[19], b[20], b[21]]),
        })
    }
}

/// Access rights of a memory region (bit set, as `ibv_access_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u32);

impl Access {
    /// The device may write it locally (needed to receive into it).
    pub const LOCAL_WRITE: Access = Access(1);
    /// Peers may RDMA-write into it (with its `rkey`).
    pub const REMOTE_WRITE: Access = Access(2);
    /// Peers may RDMA-read it.
    pub const REMOTE_READ: Access = Access(4);

    /// No rights beyond local reads.
    pub const fn empty() -> Access {
        Access(0)
    }

    /// Whether every right of `other` is in `self`.
    pub const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// One scatter/gather entry: `length` bytes at `addr`, inside the region of `lkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sge {
    /// Start address (in this process).
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the region holding it.
    pub lkey: u32,
}

/// What a send work request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendOp {
    /// Consumes a posted receive at the peer.
    Send,
    /// Consumes a posted receive at the peer, which sees the 32-bit immediate.
    SendWithImm(u32),
    /// Writes into the peer's memory; no receive consumed, no completion at the peer.
    RdmaWrite {
        /// Target address in the peer's process.
        remote_addr: u64,
        /// The peer region's remote key.
        rkey: u32,
    },
    /// Writes into the peer's memory and consumes a posted receive there (with the immediate;
    /// the receive's buffer stays untouched, its completion has `byte_len` of the write).
    RdmaWriteWithImm {
        /// Target address in the peer's process.
        remote_addr: u64,
        /// The peer region's remote key.
        rkey: u32,
        /// The immediate the peer sees.
        imm: u32,
    },
}

/// A send-queue work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// The bytes to send, gathered in order (may be empty: a zero-byte send, e.g. a pure ACK).
    pub sg_list: Vec<Sge>,
    /// The operation.
    pub op: SendOp,
    /// Produce a completion on success (failures always complete).
    pub signaled: bool,
    /// Wake a peer that armed its completion queue for solicited events only.
    pub solicited: bool,
}

/// A receive-queue work request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvWr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// Where incoming bytes go, scattered in order.
    pub sg_list: Vec<Sge>,
}

/// How a work request ended (the `ibv_wc_status` values an RC transport meets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WcStatus {
    /// Done.
    Success,
    /// An incoming message is longer than the receive buffers.
    LocalLengthError,
    /// A local key or range was invalid.
    LocalProtectionError,
    /// A peer's RDMA write with immediate targeted memory this side does not expose (the
    /// responder's view of a remote access error).
    LocalAccessError,
    /// Flushed: the queue pair went to the error state before this request ran.
    WrFlushError,
    /// The peer refused a remote key, range or access right.
    RemoteAccessError,
    /// The peer refused the request (e.g. a message longer than its receive buffer).
    RemoteInvalidRequest,
    /// The peer had no receive posted through every RNR retry.
    RnrRetryExceeded,
    /// The peer stopped answering (broken connection): transport retries exhausted.
    RetryExceeded,
    /// Any other failure.
    GeneralError,
}

impl WcStatus {
    /// Whether this is [`WcStatus::Success`].
    pub fn is_ok(self) -> bool {
        self == WcStatus::Success
    }
}

/// Which operation a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WcOpcode {
    /// A send (with or without immediate).
    Send,
    /// An RDMA write (with or without immediate), at the writer.
    RdmaWrite,
    /// A receive consumed by a send.
    Recv,
    /// A receive consumed by an RDMA write with immediate.
    RecvRdmaWithImm,
}

/// One completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkCompletion {
    /// The work request's `wr_id`.
    pub wr_id: u64,
    /// How it ended.
    pub status: WcStatus,
    /// What it was. For a flushed receive: [`WcOpcode::Recv`].
    pub opcode: WcOpcode,
    /// Bytes received (receives) or sent (sends).
    pub byte_len: u32,
    /// The immediate, for receives consumed by an operation that carried one.
    pub imm_data: Option<u32>,
    /// The queue pair it belongs to.
    pub qp_num: u32,
}

/// Queue pair states (the subset of `ibv_qp_state` the transport observes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QpState {
    /// Created: receives may be posted; sends wait for [`QueuePair::connect`].
    Init,
    /// Connected: ready to send and receive.
    ReadyToSend,
    /// Failed: everything outstanding flushed; posts refused.
    Error,
}

/// Retry behaviour of a reliable-connected queue pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries when the peer has no receive posted; 7 = retry forever (as the verbs define).
    pub rnr_retry: u8,
    /// Wait between RNR retries.
    pub rnr_timer: Duration,
}

impl Default for RetryConfig {
    /// 6 retries 10 ms apart (the ibverbs crate's retry count): a receiver has about 60 ms to
    /// post a buffer.
    fn default() -> Self {
        RetryConfig {
            rnr_retry: 6,
            rnr_timer: Duration::from_millis(10),
        }
    }
}

/// How to create a queue pair.
#[derive(Clone)]
pub struct QpInit {
    /// Completions of sends go here.
    pub send_cq: Arc<dyn CompletionQueue>,
    /// Completions of receives go here (may be the same queue).
    pub recv_cq: Arc<dyn CompletionQueue>,
    /// Send queue depth.
    pub max_send_wr: u32,
    /// Receive queue depth.
    pub max_recv_wr: u32,
    /// Scatter/gather entries per request.
    pub max_sge: u32,
    /// RNR retries.
    pub retry: RetryConfig,
}

impl fmt::Debug for QpInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QpInit")
            .field("max_send_wr", &self.max_send_wr)
            .field("max_recv_wr", &self.max_recv_wr)
            .field("max_sge", &self.max_sge)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Waits until `fd` is readable or `timeout` passes; `Ok(true)` if readable. For tests and
/// simple loops that wait on a [`CompletionQueue::fd`] without an event dispatcher.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Which implementation is behind a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The software fabric.
    Fabric,
    /// libibverbs on a real NIC.
    Ibverbs,
}

/// An opened device port.
pub trait Device: Send + Sync + fmt::Debug {
    /// The device's name (`mlx5_0`, `spindle-fabric`).
    fn name(&self) -> &str;
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// The port's address, as the hello announces it.
    fn port_address(&self) -> PortAddress;
    /// Allocates a protection domain.
    fn alloc_pd(&self) -> Result<Arc<dyn ProtectionDomain>, VerbsError>;
    /// Creates a completion queue of at least `capacity` entries, with its readiness fd.
    fn create_cq(&self, capacity: u32) -> Result<Arc<dyn CompletionQueue>, VerbsError>;
}

/// A protection domain: memory regions and queue pairs of one domain work together.
pub trait ProtectionDomain: Send + Sync + fmt::Debug {
    /// Registers `len` bytes at `addr` with `access`.
    ///
    /// # Safety
    ///
    /// The memory must stay valid, and not be freed or moved, until the returned region is
    /// dropped; the device may read it (and write it, with write access) at any time while a
    /// work request or a peer's RDMA write targets it.
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<Box<dyn MemoryRegion>, VerbsError>;

    /// Creates a reliable-connected queue pair in [`QpState::Init`].
    fn create_qp(&self, init: QpInit) -> Result<Arc<dyn QueuePair>, VerbsError>;
}

/// Registered memory. Dropping it deregisters: its keys stop working.
pub trait MemoryRegion: Send + Sync + fmt::Debug {
    /// Start address.
    fn addr(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Key for local work requests.
    fn lkey(&self) -> u32;
    /// Key a peer uses to RDMA-write here.
    fn rkey(&self) -> u32;
}

/// A completion queue.
pub trait CompletionQueue: Send + Sync + fmt::Debug {
    /// Moves up to `max` completions, oldest first, to the end of `out`; returns how many.
    fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> Result<usize, VerbsError>;
    /// A file descriptor that becomes readable when a completion arrives after [`arm`]; never
    /// read it directly, call [`ack_events`].
    ///
    /// [`arm`]: CompletionQueue::arm
    /// [`ack_events`]: CompletionQueue::ack_events
    fn fd(&self) -> RawFd;
    /// Requests one notification on [`fd`](CompletionQueue::fd) for the next completion (or, if
    /// `solicited_only`, the next solicited receive or error). One arm gives one notification.
    /// Completions already queued do not notify: poll after arming to close that race.
    fn arm(&self, solicited_only: bool) -> Result<(), VerbsError>;
    /// Consumes pending notifications (the fd stops being readable); returns how many.
    fn ack_events(&self) -> Result<u32, VerbsError>;
    /// The backend's concrete type (to check a queue belongs to the same device).
    fn as_any(&self) -> &dyn Any;
}

/// A reliable-connected queue pair.
pub trait QueuePair: Send + Sync + fmt::Debug {
    /// Its number.
    fn qp_num(&self) -> u32;
    /// Its address, for the peer.
    fn address(&self) -> QpAddress;
    /// Its state.
    fn state(&self) -> QpState;
    /// Connects to the peer queue pair at `remote` (INIT → RTR → RTS). Once only.
    fn connect(&self, remote: &QpAddress) -> Result<(), VerbsError>;
    /// Posts a send. Refused (not completed) if the queue is full, the pair is not connected or
    /// in error, or an entry is malformed.
    fn post_send(&self, wr: &SendWr) -> Result<(), VerbsError>;
    /// Posts a receive. Allowed from [`QpState::Init`] on; refused if the queue is full or the
    /// pair is in error.
    fn post_recv(&self, wr: &RecvWr) -> Result<(), VerbsError>;
    /// Moves the pair to [`QpState::Error`] (flushing everything outstanding); used to tear a
    /// connection down.
    fn set_error(&self);
}
