//! Countdown event (brpc's `bthread::CountdownEvent`): waiters sleep until a counter reaches 0.
//!
//! # Algorithm and invariants
//!
//! The butex word is the count. `signal(n)` decrements it (saturating at 0) with a CAS loop and,
//! on the transition to 0, calls `wake_all`. `wait` reads the count `c`; if `c == 0` it returns,
//! otherwise it sleeps on the butex expecting `c`. Any change of the count makes that wait return
//! `WouldBlock` (the butex compares atomically), so the waiter re-reads: a transition to 0 is never
//! missed, and the `wake_all` covers waiters already asleep on the old value.
//!
//! `add_count` and `reset` may raise the count again; waiters that already saw 0 have returned,
//! waiters that did not keep waiting for the new count.
use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::Instant;

use super::TimedOut;
use crate::butex::{Butex, WaitError};

/// Lets fibers and threads wait until `count` signals have arrived.
///
/// ```
/// use spindle_runtime::sync::CountdownEvent;
/// use std::sync::Arc;
///
/// let done = Arc::new(CountdownEvent::new(3));
/// for _ in 0..3 {
///     let done = done.clone();
///     spindle_runtime::spawn(move || {
///         done.signal(1);
///     });
/// }
/// done.wait();
/// assert_eq!(done.count(), 0);
/// ```
pub struct CountdownEvent {
    /// The remaining count; waiters sleep on it.
    count: Butex,
}

impl CountdownEvent {
    /// An event that fires after `count` signals (`0`: already fired).
    pub const fn new(count: u32) -> Self {
        CountdownEvent {
            count: Butex::new(count),
        }
    }

    /// Decrements the count by `n` (saturating at 0); wakes all waiters when it reaches 0.
    /// Returns `true` if this call brought the count to 0.
    pub fn signal(&self, n: u32) -> bool {
        let word = self.count.value();
        let mut c = word.load(Relaxed);
        loop {
            if c == 0 {
                return false;
            }
            let next = c.saturating_sub(n);
            match word.compare_exchange_weak(c, next, AcqRel, Relaxed) {
                Ok(_) => {
                    if next == 0 {
                        self.count.wake_all();
                        return true;
                    }
                    return false;
                }
                Err(now) => c = now,
            }
        }
    }

    /// Raises the count by `n` (more signals are now needed).
    ///
    /// # Panics
    /// If the count would overflow `u32`.
    pub fn add_count(&self, n: u32) {
        let word = self.count.value();
        let mut c = word.load(Relaxed);
        loop {
            let Some(next) = c.checked_add(n) else {
                panic!("CountdownEvent::add_count({n}) overflows the count {c}");
            };
            match word.compare_exchange_weak(c, next, AcqRel, Relaxed) {
                Ok(_) => return,
                Err(now) => c = now,
            }
        }
    }

    /// Sets the count to `count`; with `0` it fires (wakes all waiters).
    pub fn reset(&self, count: u32) {
        self.count.value().store(count, Release);
        if count == 0 {
            self.count.wake_all();
        }
    }

    /// The current count (a snapshot).
    pub fn count(&self) -> u32 {
        self.count.value().load(Acquire)
    }

    /// Parks the caller until the count is 0.
    pub fn wait(&self) {
        let r = self.wait_inner(None);
        debug_assert!(r.is_ok());
    }

    /// Parks the caller until the count is 0 or `deadline` passes (`Err(TimedOut)`).
    ///
    /// ```
    /// use spindle_runtime::sync::{CountdownEvent, TimedOut};
    /// use std::time::{Duration, Instant};
    ///
    /// let ev = CountdownEvent::new(1);
    /// assert_eq!(ev.timed_wait(Instant::now() + Duration::from_millis(5)), Err(TimedOut));
    /// ev.signal(1);
    /// assert_eq!(ev.timed_wait(Instant::now()), Ok(()));
    /// ```
    pub fn timed_wait(&self, deadline: Instant) -> Result<(), TimedOut> {
        self.wait_inner(Some(deadline))
    }

    /// Shared wait loop.
    fn wait_inner(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        loop {
            let c = self.count.value().load(Acquire);
            if c == 0 {
                return Ok(());
            }
            if let Err(WaitError::TimedOut) = self.count.wait(c, deadline) {
                return if self.count() == 0 {
                    Ok(())
                } else {
                    Err(TimedOut)
                };
            }
        }
    }
}

impl fmt::Debug for CountdownEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountdownEvent")
            .field("count", &self.count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn signal_saturates_and_reports_zero_once() {
        let ev = CountdownEvent::new(2);
        assert!(!ev.signal(1));
        assert!(ev.signal(5));
        assert!(!ev.signal(1));
        assert_eq!(ev.count(), 0);
        ev.add_count(2);
        assert_eq!(ev.count(), 2);
        ev.reset(0);
        ev.wait();
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn add_count_overflow_panics_without_wrapping() {
        CountdownEvent::new(u32::MAX).add_count(1);
    }

    #[test]
    fn many_waiters_released_together() {
        let ev = Arc::new(CountdownEvent::new(4));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let ev = ev.clone();
                crate::spawn(move || ev.wait())
            })
            .collect();
        let signallers: Vec<_> = (0..4)
            .map(|_| {
                let ev = ev.clone();
                crate::spawn(move || {
                    ev.signal(1);
                })
            })
            .collect();
        for h in waiters.into_iter().chain(signallers) {
            h.join().unwrap();
        }
    }
}
