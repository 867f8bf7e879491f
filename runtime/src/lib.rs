//! spindle-runtime: an M:N work-stealing runtime of stackful fibers (brpc's bthread).
//!
//! `fiber_concurrency` worker threads run fibers: cheap tasks with their own (pooled, lazily
//! committed, guard-paged) stacks that can block on fiber primitives without blocking their
//! worker. Spawn with [`spawn`] (background) or [`spawn_urgent`] (run now, caller re-queued),
//! or configure with [`Builder`]; batch with [`Builder::no_signal`] + [`flush`].
//! Everything blocks on a [`butex::Butex`]; the [`timer_thread`] wakes timeouts.
//!
//! The runtime starts on first use with [`Config::load`], or explicitly with [`init`].
//!
//! # Rules for fiber code
//!
//! - A fiber may resume on another thread after any call that may switch (`join`, `sleep`,
//!   `yield_now`, a butex or fiber-mutex wait, a synchronous RPC). Keep per-task state in a
//!   [`fiber_local::FiberLocal`], not a `thread_local!`; if you must read a thread-local, do it
//!   through an `#[inline(never)]` function and never hold a reference into it across such a
//!   call (the compiler may cache a thread-local's address across the switch).
//! - Do not hold a `std::sync` lock guard, an `Rc` or other `!Send` value across a switching
//!   call: the fiber may finish the critical section on another thread.
//! - Do not block the worker thread for long (blocking syscalls, `std::thread::sleep`, busy
//!   loops): use [`blocking::spawn_blocking`] or fiber primitives.
//! - Fibers have fixed stacks (1 MiB by default); overflowing one aborts the process with
//!   "fiber stack overflow". Use [`StackSize::Large`] for deep recursion.

// Under loom only the modelled pieces run; the rest of the runtime is compiled but unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

pub mod blocking;
pub mod butex;
pub mod config;
pub mod execution_queue;
pub mod fiber_id;
pub mod fiber_local;
pub mod flags;
pub mod sync;
pub mod timer_thread;

mod fiber;
mod loom;
mod scheduler;

pub use config::Config;
pub use fiber::join::{JoinError, JoinHandle};
pub use fiber::stack::StackSize;
pub use fiber::task::TaskId;
pub use scheduler::builder::{
    current_task, current_task_name, defer_wake_signals, flush, flush_deferred, sleep, spawn,
    spawn_no_signal, spawn_urgent, yield_now, Builder,
};
pub use scheduler::idle_hook::{set_idle_hook, IdleHook};
pub use scheduler::stats::Stats;
pub use scheduler::{
    config, current_tag, current_worker, has_ready_fibers, init, stats, InitError,
};

/// The examples of the README and of the runtime guides compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[doc = include_str!("../../docs/getting-started.md")]
#[doc = include_str!("../../docs/runtime-primitives.md")]
pub struct GuideDoctests;
