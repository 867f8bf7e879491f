//! Wire protocols, one folder per protocol (brpc's `policy/`).
//!
//! - [`baidu_std`]: brpc's native protocol, `"PRPC"` frames with a protobuf meta.

pub mod baidu_std;
