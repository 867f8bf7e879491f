//! The part of `spindle_rdma::endpoint` the socket and the handshake use (one place to adapt
//! if the endpoint's API moves).

pub use spindle_rdma::endpoint::{
    EndpointConfig, EndpointError, PollOutcome, PreparedEndpoint, RdmaContext, RdmaEndpoint,
};
