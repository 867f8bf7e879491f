//! Atomics of the lock-free block code, imported through this shim so the production code itself
//! runs under the loom model checker: `RUSTFLAGS="--cfg loom" cargo test --release
//! -p spindle-iobuf --lib loom_` (tests named `loom_*`, in `block.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;
