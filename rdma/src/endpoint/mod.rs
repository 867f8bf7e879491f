//! The RDMA endpoint (brpc's `RdmaEndpoint`): one RDMA connection over a reliable-connected
//! queue pair, with brpc's flow control ([`window`]), receive buffers from registered block
//! pools, zero-copy send of registered IOBuf pieces and zero-copy receive above
//! `rdma_zerocopy_min_size`.
//!
//! - [`EndpointConfig`]: the per-connection flags.
//! - [`RdmaContext`]: the process's device, protection domain and block pools.
//! - [`PreparedEndpoint`] → (handshake) → [`RdmaEndpoint`]: see [`rdma_endpoint`].
//! - [`Window`]: the windows-and-credits state machine the endpoint drives.

mod config;
mod context;
mod error;
pub mod rdma_endpoint;
pub mod window;

pub use config::EndpointConfig;
pub use context::RdmaContext;
pub use error::EndpointError;
pub use rdma_endpoint::{EndpointStats, PollOutcome, PreparedEndpoint, RdmaEndpoint};
pub use window::{SendPlan, Window, WindowError, RESERVED_WR_NUM};
