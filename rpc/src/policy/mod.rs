//! Wire protocols, one folder per protocol (brpc's `policy/`).
//!
//! - [`baidu_std`]: brpc's native protocol, `"PRPC"` frames with a protobuf meta.
//! - [`http`]: HTTP/1.1 (plain handlers, and protobuf methods with JSON or binary bodies).

pub mod baidu_std;
pub mod http;
