//! Butex: a 32-bit atomic word with a wait list — the one blocking primitive every other
//! synchronisation type is built on (brpc's `butex`).
//!
//! CONTRACT (the real, fiber-aware implementation must keep exactly these semantics):
//! - `wait(expected, deadline)`: atomically with respect to `wake*`, checks that the word still
//!   equals `expected`; if not returns `Err(WaitError::WouldBlock)` at once. Otherwise the caller
//!   (a fiber: only the fiber parks; a plain thread: the thread blocks) sleeps until woken
//!   (`Ok(())`) or until `deadline` passes (`Err(WaitError::TimedOut)`). Spurious `Ok(())`
//!   returns are allowed, so callers re-check their condition in a loop.
//! - `wake_one` / `wake(n)` / `wake_all`: wake up to 1 / n / all waiters, FIFO; return how many.
//!   A wake that finds no waiter does nothing (callers change the word *before* waking).
//! - `requeue(to)`: wakes one waiter and moves the rest onto `to` without waking them
//!   (condition variables use it to avoid a thundering herd); returns how many were woken.
//! - All methods take `&self`; a `Butex` is `Send + Sync` and may live in an `Arc` or a field.
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Why [`Butex::wait`] returned without being woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The word did not equal `expected` when the wait began.
    WouldBlock,
    /// The deadline passed before a wake.
    TimedOut,
}

/// A 32-bit atomic word with a wait list (stand-in: threads only).
pub struct Butex {
    value: AtomicU32,
    lock: Mutex<u64>,
    cond: Condvar,
}

impl Butex {
    /// A butex whose word starts at `value`.
    pub const fn new(value: u32) -> Self {
        Butex { value: AtomicU32::new(value), lock: Mutex::new(0), cond: Condvar::new() }
    }

    /// The word itself; change it before waking.
    pub fn value(&self) -> &AtomicU32 {
        &self.value
    }

    /// See the module contract.
    pub fn wait(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut g = self.lock.lock();
        if self.value.load(Ordering::SeqCst) != expected {
            return Err(WaitError::WouldBlock);
        }
        let _ = &mut *g;
        match deadline {
            None => {
                self.cond.wait(&mut g);
                Ok(())
            }
            Some(d) => {
                if self.cond.wait_until(&mut g, d).timed_out() {
                    Err(WaitError::TimedOut)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Wakes at most one waiter.
    pub fn wake_one(&self) -> usize {
        let _g = self.lock.lock();
        usize::from(self.cond.notify_one())
    }

    /// Wakes at most `n` waiters.
    pub fn wake(&self, n: usize) -> usize {
        let _g = self.lock.lock();
        (0..n).take_while(|_| self.cond.notify_one()).count()
    }

    /// Wakes every waiter.
    pub fn wake_all(&self) -> usize {
        let _g = self.lock.lock();
        self.cond.notify_all()
    }

    /// Wakes one waiter and moves the others to `to` (stand-in: wakes all).
    pub fn requeue(&self, _to: &Butex) -> usize {
        self.wake_all()
    }
}
