//! Counting semaphore on a [`Butex`].
//!
//! # Algorithm
//!
//! The butex word *is* the number of available permits. `acquire` decrements it with a CAS when
//! it is positive; otherwise the caller registers in `waiters` and sleeps on the butex expecting
//! `0`. `release(n)` adds `n` to the word and, only if `waiters` is non-zero, wakes up to `n`.
//!
//! # Invariants
//!
//! 1. No lost wake-up: the sleeper does `waiters += 1` then re-reads the word; the releaser does
//!    `word += n` then reads `waiters` (all `SeqCst`). Either the sleeper sees the permits and
//!    does not sleep, or the releaser sees the sleeper and wakes it; and the butex's wait checks
//!    the word atomically with respect to the wake.
//! 2. The word never goes below zero (a CAS from `p > 0` to `p - 1`), and never overflows
//!    (`release` panics rather than wrap).
//!
//! Not FIFO-fair: a newly arriving `acquire` can take a permit before a woken sleeper does.
use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Instant;

use super::TimedOut;
use crate::butex::{Butex, WaitError};

/// A counting semaphore for fibers and threads.
///
/// ```
/// use spindle_runtime::sync::Semaphore;
///
/// let sem = Semaphore::new(2);
/// sem.acquire();
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire()); // both permits taken
/// sem.release(2);
/// assert_eq!(sem.available_permits(), 2);
/// ```
pub struct Semaphore {
    /// Available permits; sleepers wait on it while it is 0.
    permits: Butex,
    /// Number of callers asleep (or about to sleep) on `permits`.
    waiters: AtomicU32,
}

impl Semaphore {
    /// A semaphore with `permits` permits available.
    pub const fn new(permits: u32) -> Self {
        Semaphore {
            permits: Butex::new(permits),
            waiters: AtomicU32::new(0),
        }
    }

    /// Takes one permit, parking the caller (fiber or thread) until one is available.
    pub fn acquire(&self) {
        let ok = self.acquire_inner(None);
        debug_assert!(ok);
    }

    /// Takes one permit if one is available now; never blocks.
    pub fn try_acquire(&self) -> bool {
        let mut p = self.permits.value().load(Relaxed);
        while p > 0 {
            match self
                .permits
                .value()
                .compare_exchange_weak(p, p - 1, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => p = now,
            }
        }
        false
    }

    /// Takes one permit, waiting at most until `deadline`; `Err(TimedOut)` if none came.
    ///
    /// ```
    /// use spindle_runtime::sync::{Semaphore, TimedOut};
    /// use std::time::{Duration, Instant};
    ///
    /// let sem = Semaphore::new(0);
    /// assert_eq!(sem.acquire_timeout(Instant::now() + Duration::from_millis(5)), Err(TimedOut));
    /// ```
    pub fn acquire_timeout(&self, deadline: Instant) -> Result<(), TimedOut> {
        if self.acquire_inner(Some(deadline)) {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }

    /// Returns `n` permits and wakes up to `n` sleepers.
    ///
    /// # Panics
    /// If the permit count would exceed `u32::MAX`.
    pub fn release(&self, n: u32) {
        if n == 0 {
            return;
        }
        let mut prev = self.permits.value().load(Relaxed);
        loop {
            let Some(next) = prev.checked_add(n) else {
                panic!("Semaphore::release({n}) overflows the permit count ({prev} available)");
            };
            match self
                .permits
                .value()
                .compare_exchange_weak(prev, next, SeqCst, Relaxed)
            {
                Ok(_) => break,
                Err(now) => prev = now,
            }
        }
        let w = self.waiters.load(SeqCst);
        if w > 0 {
            self.permits.wake(n.min(w) as usize);
        }
    }

    /// Permits available right now (a snapshot).
    pub fn available_permits(&self) -> u32 {
        self.permits.value().load(Relaxed)
    }

    /// The acquire loop; returns `false` only when `deadline` passed without a permit.
    fn acquire_inner(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            self.waiters.fetch_add(1, SeqCst);
            let r = if self.permits.value().load(SeqCst) == 0 {
                self.permits.wait(0, deadline)
            } else {
                Ok(())
            };
            self.waiters.fetch_sub(1, SeqCst);
            if let Err(WaitError::TimedOut) = r {
                return self.try_acquire();
            }
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn never_more_than_permits_inside() {
        let iters = if cfg!(miri) { 10 } else { 500 };
        let sem = Arc::new(Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                crate::spawn(move || {
                    for _ in 0..iters {
                        sem.acquire();
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        assert!(now <= 3, "{now} holders of 3 permits");
                        crate::yield_now();
                        inside.fetch_sub(1, SeqCst);
                        sem.release(1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(sem.available_permits(), 3);
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn release_overflow_panics() {
        Semaphore::new(u32::MAX).release(1);
    }
}
