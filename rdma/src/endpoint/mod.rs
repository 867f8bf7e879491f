//! The RDMA endpoint (brpc's `RdmaEndpoint`): so far its flow control, [`window`], as a pure
//! state machine the transport will drive from its write path and completion handler.

pub mod window;

pub use window::{SendPlan, Window, WindowError, RESERVED_WR_NUM};
