//! Synchronisation primitives for fibers *and* plain threads, all built on [`crate::butex::Butex`]
//! (brpc's `bthread_mutex_t`, `bthread_cond_t`, `bthread_rwlock_t`, `bthread::CountdownEvent`, …).
//!
//! Blocking in any of them parks only the calling fiber — its worker thread goes on running other
//! fibers — and blocks the OS thread when called from a plain thread. They never rely on
//! thread-locals or thread identity across a wait (a fiber may resume on another worker), so
//! guards are `Send`.
//!
//! Which one to use: see `docs/runtime-primitives.md`.
use std::fmt;

mod barrier;
pub mod channel;
mod condvar;
mod countdown_event;
#[cfg(all(test, loom))]
mod model_butex;
mod mutex;
mod once;
mod rwlock;
mod semaphore;

pub use barrier::{Barrier, BarrierWaitResult};
pub use channel as mpsc;
pub use condvar::Condvar;
pub use countdown_event::CountdownEvent;
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::Semaphore;

/// A deadline passed before the operation could complete (returned by the `*_timeout` /
/// `timed_*` methods of this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline passed before the operation completed")
    }
}

impl std::error::Error for TimedOut {}
