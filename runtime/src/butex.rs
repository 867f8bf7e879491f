//! Butex: a 32-bit atomic word with a wait list — the one blocking primitive every other
//! synchronisation type is built on (brpc's `butex`).
//!
//! CONTRACT:
//! - `wait(expected, deadline)`: atomically with respect to `wake*`, checks that the word still
//!   equals `expected`; if not returns `Err(WaitError::WouldBlock)` at once. Otherwise the caller
//!   (a fiber: only the fiber parks; a plain thread: the thread blocks) sleeps until woken
//!   (`Ok(())`) or until `deadline` passes (`Err(WaitError::TimedOut)`). Spurious `Ok(())`
//!   returns are allowed, so callers re-check their condition in a loop.
//! - `wake_one` / `wake(n)` / `wake_all`: wake up to 1 / n / all waiters, FIFO; return how many.
//!   A wake that finds no waiter does nothing (callers change the word *before* waking).
//! - `requeue(to)`: wakes one waiter and moves the rest onto `to` without waking them
//!   (condition variables use it to avoid a thundering herd); returns how many were woken.
//!   The butex `to` must outlive the waiters moved onto it.
//! - All methods take `&self`; a `Butex` is `Send + Sync` and may live in an `Arc` or a field.
//!
//! IMPLEMENTATION. The wait list is an intrusive FIFO of `Waiter` nodes that live on the
//! waiters' own stacks (no allocation per wait), protected by the butex's mutex. Invariants:
//! - A node is in at most one list; its `container` points to the butex whose list holds it and
//!   is changed only under that butex's lock (set on insert and requeue, nulled on removal).
//! - Whoever removes a node under the lock owns waking it, exactly once: a waker, the timer
//!   callback of a timed fiber wait, or the timing-out thread itself.
//! - The value check and the insertion happen under the lock, and wakers change the word before
//!   taking the lock, so a wake is never missed.
//! - A *fiber* is inserted by its worker after it switched out (a `Park` request), never before,
//!   so it cannot be resumed while still running. Its timeout is scheduled under the same lock,
//!   and after it resumes it unschedules the timer, which waits out a running callback: the
//!   callback never touches a waiter that has returned.
//! - A *thread* parks (std `park`) until a flag in its node is set; wakers clone its `Thread`
//!   handle under the lock and set the flag and unpark after releasing it; the thread returns
//!   only after it saw the flag, so the waker never touches a dead node.
//!
//! The implementation (`butex/imp.rs`) is compiled twice: over std, as the real `Butex` (whose
//! `new` is a `const fn` in every build, loom included), and under `cfg(loom)` over the loom shim,
//! where `loom_butex_*` model-checks the wait/wake and requeue protocols on the thread path.

/// Why [`Butex::wait`] returned without being woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The word did not equal `expected` when the wait began.
    WouldBlock,
    /// The deadline passed before a wake.
    TimedOut,
}

pub use real::Butex;

/// `Butex::new` must stay a `const fn` in every build, loom included: the primitives built on it
/// have `const` constructors.
#[allow(dead_code)]
static CONST_NEW_IN_EVERY_BUILD: Butex = Butex::new(0);

/// The real butex: std primitives, so that `Butex::new` is a `const fn` in every build.
mod real {
    use smallvec::SmallVec;
    use std::cell::Cell;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
    use std::sync::{Mutex, MutexGuard};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::WaitError;

    /// Not the loom copy: fibers may park on this butex.
    const MODELLED: bool = false;

    /// Requeue orders its two locks by address.
    struct OrderTag;

    fn park_timeout(d: Duration) {
        thread::park_timeout(d);
    }

    impl Butex {
        /// A butex whose word starts at `value`.
        pub const fn new(value: u32) -> Self {
            Butex {
                value: AtomicU32::new(value),
                waiters: Mutex::new(WaitList {
                    head: ptr::null(),
                    tail: ptr::null(),
                }),
                queued: AtomicU32::new(0),
                order: OrderTag,
            }
        }

        /// Key that orders the locking of two butexes (requeue): the address.
        fn order_key(&self) -> usize {
            let _ = &self.order;
            self as *const Butex as usize
        }
    }

    include!("butex/imp.rs");
}

/// The same code over the loom shim, for the `loom_butex_*` models (thread waiters only).
#[cfg(all(test, loom))]
mod modelled {
    use std::cell::Cell;
    use std::ptr;
    use std::time::{Duration, Instant};

    use crate::loom::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
    use crate::loom::{thread, Mutex, MutexGuard};
    use smallvec::SmallVec;

    use super::WaitError;

    /// The loom copy: only threads wait here (no fibers run inside loom models).
    const MODELLED: bool = true;

    /// Requeue orders its two locks by creation order: addresses change between loom
    /// iterations, and loom needs every iteration to make the same choices.
    struct OrderTag(usize);

    static NEXT_ORDER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn park_timeout(_: Duration) {
        unimplemented!("loom models use no deadlines")
    }

    impl Butex {
        /// A butex whose word starts at `value`.
        pub fn new(value: u32) -> Self {
            Butex {
                value: AtomicU32::new(value),
                waiters: Mutex::new(WaitList {
                    head: ptr::null(),
                    tail: ptr::null(),
                }),
                queued: AtomicU32::new(0),
                order: OrderTag(NEXT_ORDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            }
        }

        /// Key that orders the locking of two butexes (requeue): the creation counter.
        fn order_key(&self) -> usize {
            self.order.0
        }
    }

    include!("butex/imp.rs");
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::modelled::Butex;
    use crate::loom::atomic::Ordering;
    use crate::loom::{thread, Arc};

    /// A waiter and a waker racing: the waiter always ends (no lost wake-up).
    #[test]
    fn loom_butex_wait_wake() {
        loom::model(|| {
            let b = Arc::new(Butex::new(0));
            let b2 = b.clone();
            let waker = thread::spawn(move || {
                b2.value().store(1, Ordering::SeqCst);
                b2.wake_one();
            });
            while b.value().load(Ordering::SeqCst) == 0 {
                let _ = b.wait(0, None);
            }
            waker.join().unwrap();
        });
    }

    /// A waker that finds no waiter registered skips the lock; a waiter registering at the same
    /// time must still see the new word, even when the waker stored it `Relaxed` (the waker's
    /// read-modify-write of `queued` is what orders the store before the waiter's check).
    #[test]
    fn loom_butex_wake_skipping_the_lock_loses_no_waiter() {
        loom::model(|| {
            let b = Arc::new(Butex::new(0));
            let b2 = b.clone();
            let waker = thread::spawn(move || {
                b2.value().store(1, Ordering::Relaxed);
                b2.wake_all();
            });
            while b.value().load(Ordering::Relaxed) == 0 {
                let _ = b.wait(0, None);
            }
            waker.join().unwrap();
        });
    }

    /// Requeue moves a waiter that a later wake on the target releases.
    #[test]
    fn loom_butex_requeue() {
        loom::model(|| {
            let a = Arc::new(Butex::new(0));
            let to = Arc::new(Butex::new(0));
            let (a2, to2) = (a.clone(), to.clone());
            let waker = thread::spawn(move || {
                a2.value().store(1, Ordering::SeqCst);
                to2.value().store(1, Ordering::SeqCst);
                a2.requeue(&to2);
                to2.wake_all();
            });
            while a.value().load(Ordering::SeqCst) == 0 {
                let _ = a.wait(0, None);
            }
            waker.join().unwrap();
        });
    }

    /// Two waiters, one requeued onto the target: both get out.
    #[test]
    fn loom_butex_requeue_two_waiters() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let a = Arc::new(Butex::new(0));
            let to = Arc::new(Butex::new(0));
            let other = {
                let a = a.clone();
                thread::spawn(move || {
                    while a.value().load(Ordering::SeqCst) == 0 {
                        let _ = a.wait(0, None);
                    }
                })
            };
            let (a2, to2) = (a.clone(), to.clone());
            let waker = thread::spawn(move || {
                a2.value().store(1, Ordering::SeqCst);
                a2.requeue(&to2);
                to2.wake_all();
            });
            while a.value().load(Ordering::SeqCst) == 0 {
                let _ = a.wait(0, None);
            }
            waker.join().unwrap();
            other.join().unwrap();
        });
    }
}
