//! Wire protocols, one folder per protocol (brpc's `policy/`).
//!
//! - [`baidu_std`]: brpc's native protocol, `"PRPC"` frames with a protobuf meta.
//! - [`http`]: HTTP/1.1 (plain handlers, and protobuf methods with JSON or binary bodies).
//! - [`rdma_handshake`]: the RDMA hello / ACK exchange that switches a connection to RDMA.

pub mod baidu_std;
pub mod http;
pub mod rdma_handshake;
