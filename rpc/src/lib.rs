//! spindle-rpc: the RPC stack of Spindle, laid out like brpc's `src/brpc`.
//!
//! - [`socket`]: versioned [`SocketId`](socket::SocketId)s over a slot table (brpc's
//!   `SocketId` + `ResourcePool`), the [`Socket`](socket::Socket) in the global map and its
//!   lock-free write path.
//! - [`event_dispatcher`]: edge-triggered epoll loops on OS threads of their own (why: seed 004).
//! - [`input_messenger`]: reads connections and cuts messages.
//! - [`server`], [`channel`]: the RPC server and the single-connection client channel
//!   (user guide: `docs/rpc.md`).
//! - [`protocol`]: the [`Protocol`](protocol::Protocol) trait, the registry and the input
//!   messenger's cut loop ([`cut_input_message`](protocol::cut_input_message)).
//! - [`policy`]: one module per wire protocol; [`policy::baidu_std`] so far.
//! - [`compress`]: payload compression (snappy, gzip, zlib) with bounded decompression.
//! - [`errors`]: brpc's RPC error codes, same numbers.
//! - [`builtin`]: the builtin pages (`/status`, `/vars`, `/flags`, ...) and per-method
//!   statistics (user guide: `docs/builtin.md`).
//! - [`service`]: what generated service code targets: descriptors, the `Service` dispatch trait,
//!   the `ClientChannel` trait stubs call through (code generation: `spindle-rpc-build`).
//! - [`proto`]: generated protobuf messages of the wire formats, and brpc's example echo service.
//!
//! Wire formats and the probing order are described in `docs/protocols.md`.

#![warn(missing_docs)]

pub mod builtin;
pub mod channel;
pub mod compress;
pub mod errors;
pub mod event_dispatcher;
pub mod input_messenger;
mod loom;
pub mod policy;
pub mod proto;
pub mod protocol;
pub mod server;
pub mod service;
pub mod socket;
