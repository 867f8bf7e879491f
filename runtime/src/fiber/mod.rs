//! Fibers: their metadata, stacks, join slots, and the stack-overflow guard.
//!
//! - `task.rs`: `TaskMeta` / `TaskRef`, the unit the scheduler moves around, and the `Suspend`
//!   requests a fiber makes of its worker when it switches out.
//! - `stack.rs` / `stack_pool.rs`: lazily committed stacks with guard pages, pooled per worker.
//! - `overflow.rs`: the `SIGSEGV` handler that reports a fiber stack overflow and aborts.
//! - `join.rs`: `JoinHandle` and the per-spawn packet (closure + result + completion butex).

pub(crate) mod join;
pub(crate) mod overflow;
pub(crate) mod stack;
pub(crate) mod stack_pool;
pub(crate) mod task;
