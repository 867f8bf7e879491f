//! spindle-rdma: RDMA for Spindle (DESIGN.md §5).
//!
//! - [`verbs`]: a verbs-like trait layer (device, protection domain, memory region, completion
//!   queue with a readiness fd, reliable-connected queue pair, work completions).
//! - [`fabric`]: the software fabric, the default backend: RC queue pairs emulated between
//!   processes on one host over Unix-domain stream sockets.
//! - `ibverbs` (cargo feature `ibverbs`): the hardware backend over libibverbs.
//! - [`handshake`]: brpc's v2/v3 hello and ACK as pure encode/decode functions.
//! - [`backend`]: picks the backend from the flags (the fabric when no device is present).
//! - [`block_pool`]: registered memory cut into IOBuf blocks (the iobuf allocator hook), so
//!   IOBuf pieces can be sent without copying (each piece's `meta` is its region's lkey).
//! - [`endpoint`]: the RDMA connection ([`RdmaEndpoint`]): flow control (windows and credits),
//!   receive buffers from the block pools, zero-copy send and receive, event and polling modes.
//! - [`poller`]: polling mode's pollers (OS threads over the completion queues).
//! - [`flags`]: brpc's RDMA flags; [`threading`]: the seed-004 configuration check.
//!
//! spindle-rpc uses it as a socket transport (`ServerOptions::rdma`, `ChannelOptions::use_rdma`);
//! see docs/rdma.md.

pub mod backend;
pub mod block_pool;
pub mod endpoint;
pub mod fabric;
pub mod flags;
pub mod handshake;
#[cfg(feature = "ibverbs")]
pub mod ibverbs_backend;
pub mod poller;
pub mod threading;
pub mod verbs;

pub use endpoint::{
    EndpointConfig, EndpointError, EndpointStats, PollOutcome, PreparedEndpoint, RdmaContext,
    RdmaEndpoint,
};
