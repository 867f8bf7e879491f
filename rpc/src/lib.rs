//! spindle-rpc: the RPC stack of Spindle, laid out like brpc's `src/brpc`.
//!
//! - [`socket`]: versioned [`SocketId`](socket::SocketId)s over a slot table (brpc's
//!   `SocketId` + `ResourcePool`).
//! - [`errors`]: brpc's RPC error codes (same numbers).

pub mod compress;
pub mod errors;
mod loom;
pub mod socket;
