//! The software fabric: reliable-connected queue pairs emulated between processes on one host,
//! the default backend when no RDMA device is present.
//!
//! # What it emulates
//!
//! | verbs behaviour | here |
//! |---|---|
//! | device, GID | [`FabricDevice`]: a listening Unix socket in the abstract namespace, named after a 16-byte GID (`"SPFB"` + pid + instance), so a [`QpAddress`](crate::verbs::QpAddress) (GID + QPN) found in a handshake hello is all a peer needs to connect, from any process of the host |
//! | memory registration | a key table per device: lkey = rkey; local entries and remote writes are checked for key, protection domain, access and bounds |
//! | RC connection | two streams per pair, one per direction, carrying framed work requests ([`wire`]); in-order delivery |
//! | send / send with immediate | copied into the oldest posted receive; completion with `byte_len` and the immediate |
//! | RDMA write (with immediate) | copied into the peer's registered memory after the rkey check; with immediate, also consumes a receive |
//! | receiver not ready | the responder waits for a receive, `rnr_retry` times `rnr_timer` (7 = forever), then answers RNR NAK: the sender completes with `RnrRetryExceeded` |
//! | access violation | the sender completes with `RemoteAccessError`; the responder fails too (a consumed receive completes with `LocalAccessError`, the rest flush) |
//! | message longer than the receive | receiver `LocalLengthError`, sender `RemoteInvalidRequest` |
//! | broken peer | EOF on either stream fails the pair: the oldest send completes with `RetryExceeded`, everything else with `WrFlushError` |
//! | completion channel | [`FabricCq`]'s eventfd; arm / solicited-only arm / ack as `ibv_req_notify_cq` / `ibv_get_cq_event` + `ibv_ack_cq_events` |
//!
//! Differences from hardware, none of which the transport relies on: bytes of a send are copied
//! when it is posted (hardware reads them any time before the completion); `post_send` may block
//! while the socket buffer is full; a pair delivers what arrives even before its own `connect`
//! (hardware would drop packets to a pair in INIT); `connect` fails at once when the remote pair
//! does not exist (hardware would time out on the first send).
//!
//! # How the transport will drive it
//!
//! Event mode: the completion queue's [`fd`](crate::verbs::CompletionQueue::fd) goes into an
//! event dispatcher's epoll (edge-triggered); on readiness the reader calls `ack_events`, polls
//! until empty, re-arms, and polls once more (a completion that landed between the last poll and
//! the arm does not notify). Polling mode: `rdma_poller_num` poller threads call `poll` on their
//! share of the queues (`rdma_cqe_poll_once` at a time) and never arm, so the fabric makes no
//! eventfd syscall for them.

mod cq;
mod device;
mod qp;
pub mod wire;

pub use cq::FabricCq;
pub use device::{is_fabric_gid, FabricDevice, FabricMr, FabricPd, GID_PREFIX};
pub use qp::FabricQp;

#[cfg(test)]
mod tests;
