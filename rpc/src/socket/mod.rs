//! Sockets (brpc's `socket`): connections addressed by versioned [`SocketId`]s.
//!
//! Only the id map exists so far; the `Socket` type (fd, write queue, `nevent` reader
//! hand-off, health check) plugs into [`SocketMap<T>`] as its `T` with the server work.

pub mod socket_id;

pub use socket_id::{AlreadyFailed, MapFull, SocketId, SocketMap, SocketRef, DEFAULT_MAX_CHUNKS};
