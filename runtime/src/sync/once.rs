//! One-time initialisation (brpc's `bthread_once`).
//!
//! # Algorithm
//!
//! The butex word is the state: `INCOMPLETE` → `RUNNING` (one caller won the CAS and runs the
//! initializer) → `COMPLETE`. A caller that finds `RUNNING` CASes it to `RUNNING_WAITERS` and
//! sleeps expecting `RUNNING_WAITERS`; the runner publishes with `swap(COMPLETE)` and wakes all
//! only if the old value was `RUNNING_WAITERS`, so the uncontended path never touches the wait
//! list and the completed fast path is one `Acquire` load.
//!
//! # Panics in the initializer: retry, not poison
//!
//! If the initializer panics, the state goes back to `INCOMPLETE` and sleepers are woken; the
//! next caller (a woken sleeper or a newcomer) runs *its* initializer. The `Once` is never
//! poisoned. This suits lazily-built runtime singletons where a failed attempt (e.g. a resource
//! temporarily unavailable) should be retried by the next user.
use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::butex::Butex;

/// Nobody has run (successfully) yet.
const INCOMPLETE: u32 = 0;
/// An initializer is running; nobody sleeps.
const RUNNING: u32 = 1;
/// An initializer is running and somebody may sleep on the butex.
const RUNNING_WAITERS: u32 = 2;
/// An initializer returned normally.
const COMPLETE: u32 = 3;

/// Runs an initializer exactly once (successfully) across fibers and threads.
///
/// ```
/// use spindle_runtime::sync::Once;
///
/// static INIT: Once = Once::new();
/// let mut runs = 0;
/// INIT.call_once(|| runs += 1);
/// INIT.call_once(|| runs += 1);
/// assert_eq!(runs, 1);
/// assert!(INIT.is_completed());
/// ```
pub struct Once {
    /// The state word; callers wait on it while another runs the initializer.
    state: Butex,
}

/// Restores `INCOMPLETE` and wakes sleepers if the initializer unwinds.
struct ResetOnUnwind<'a> {
    /// The `Once` being initialised.
    once: &'a Once,
}

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        if self.once.state.value().swap(INCOMPLETE, Release) == RUNNING_WAITERS {
            self.once.state.wake_all();
        }
    }
}

impl Once {
    /// A `Once` that has not run. `const`, for statics.
    pub const fn new() -> Self {
        Once {
            state: Butex::new(INCOMPLETE),
        }
    }

    /// Runs `f` if no call has completed yet; otherwise does nothing. Concurrent callers park
    /// until the running initializer finishes. When this returns normally, an initializer has
    /// completed and its effects are visible. If `f` panics, the panic propagates to this caller
    /// and the `Once` stays incomplete (another caller retries; see the module doc). Calling
    /// `call_once` on the same `Once` from inside its own initializer deadlocks.
    pub fn call_once(&self, f: impl FnOnce()) {
        if self.is_completed() {
            return;
        }
        self.call_once_slow(f);
    }

    /// Whether an initializer has completed.
    pub fn is_completed(&self) -> bool {
        self.state.value().load(Acquire) == COMPLETE
    }

    /// The contended / first-time path.
    #[cold]
    fn call_once_slow(&self, f: impl FnOnce()) {
        let word = self.state.value();
        let mut f = Some(f);
        loop {
            match word.load(Acquire) {
                COMPLETE => return,
                INCOMPLETE => {
                    if word
                        .compare_exchange(INCOMPLETE, RUNNING, Acquire, Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let reset = ResetOnUnwind { once: self };
                    (f.take().expect("initializer taken once"))();
                    std::mem::forget(reset);
                    if word.swap(COMPLETE, Release) == RUNNING_WAITERS {
                        self.state.wake_all();
                    }
                    return;
                }
                s => {
                    if s == RUNNING
                        && word
                            .compare_exchange(RUNNING, RUNNING_WAITERS, Relaxed, Relaxed)
                            .is_err()
                    {
                        continue;
                    }
                    let _ = self.state.wait(RUNNING_WAITERS, None);
                }
            }
        }
    }
}

impl Default for Once {
    fn default() -> Self {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("completed", &self.is_completed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn racing_callers_run_once_and_all_see_result() {
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let (once, runs) = (once.clone(), runs.clone());
                crate::spawn(move || {
                    once.call_once(|| {
                        crate::sleep(std::time::Duration::from_millis(2));
                        runs.fetch_add(1, SeqCst);
                    });
                    assert_eq!(runs.load(SeqCst), 1);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn panic_allows_retry() {
        let once = Once::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            once.call_once(|| panic!("boom"))
        }));
        assert!(r.is_err());
        assert!(!once.is_completed());
        let mut ran = false;
        once.call_once(|| ran = true);
        assert!(ran && once.is_completed());
    }
}
