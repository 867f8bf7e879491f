//! Shared setup of spindle-rdma's integration tests (each test file uses a part).
#![allow(dead_code)]

pub mod child;
pub mod endpoint;
pub mod qp_side;
