//! Sockets (brpc's `socket`): connections addressed by versioned [`SocketId`]s.
//!
//! - [`socket_id`]: the versioned id map ([`SocketMap<T>`]).
//! - [`socket`](mod@socket): the [`Socket`] itself (fd, read state, counters) in the global
//!   [`SOCKET_MAP`], its life cycle and failure.
//! - [`write`](mod@write): the lock-free write path (`Socket::write`) and the "keep writing"
//!   fiber, over `write_queue` (the ownership protocol, loom-checked).

//! - [`transport`](mod@transport): TCP until the RDMA handshake switches a socket to an
//!   RDMA endpoint.

pub(crate) mod rdma_api;
pub(crate) mod sockaddr;
#[allow(clippy::module_inception)]
pub mod socket;
pub mod socket_id;
pub mod transport;
pub mod write;
mod write_queue;

pub use socket::{
    address, InputHandler, ReadState, Socket, SocketHandle, SocketStats, SOCKET_MAP,
    SOCKET_RECV_BUFFER_SIZE, SOCKET_SEND_BUFFER_SIZE,
};
pub use socket_id::{AlreadyFailed, MapFull, SocketId, SocketMap, SocketRef, DEFAULT_MAX_CHUNKS};
pub use transport::{Transport, TransportState};
pub use write::SOCKET_MAX_UNWRITTEN_BYTES;
