//! spindle-runtime: an M:N work-stealing runtime of stackful fibers (brpc's bthread).
//!
//! CONTRACT STAGE: the items below define the public API every module codes against.
//! `spawn`, `JoinHandle`, `yield_now`, `sleep` and `butex::Butex` currently have thread-based
//! stand-in implementations that the real scheduler replaces behind the same signatures.

pub mod butex;
pub mod execution_queue;
pub mod fiber_id;
pub mod flags;
pub mod sync;

mod loom;
mod standin;
pub use standin::{current_task, sleep, spawn, yield_now, JoinError, JoinHandle, TaskId};
