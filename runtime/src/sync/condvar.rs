//! Fiber condition variable (brpc's `bthread_cond_t`) paired with [`Mutex`].
//!
//! # Algorithm
//!
//! `seq` is a butex whose word is a notification counter; `broadcasts` counts `notify_all`s.
//!
//! - **wait**: with the mutex held, read `broadcasts` (`b0`) and `seq` (`s0`); unlock; sleep on
//!   `seq` expecting `s0`; then, if `broadcasts` moved to `b != b0` and nobody has requeued for
//!   `b` yet (`requeued.swap(b) != b`), call `seq.requeue(mutex butex)`; finally re-lock with
//!   the *contended* path (`RawMutex::lock_contended`).
//! - **notify_one**: bump `seq`, `wake_one`.
//! - **notify_all**: bump `broadcasts` and `seq`, `wake_one`. The single woken waiter does the
//!   requeue on behalf of the broadcaster: it wakes one more waiter and moves the rest onto the
//!   mutex's butex, where each is woken by an unlock, one at a time, instead of all of them
//!   stampeding for the mutex (no thundering herd).
//!
//! Why the *waiter* requeues rather than the notifier: the waiter holds a borrow of the mutex,
//! so the mutex butex is certainly alive; a notifier has no such proof (the condvar may outlive
//! the mutex), and requeueing onto a freed butex would be use-after-free.
//!
//! # Invariants
//!
//! 1. A notification changes `seq` *before* waking, and a waiter reads `s0` while holding the
//!    mutex, so a notify issued after the waiter released the mutex either makes its `wait` return
//!    `WouldBlock` or wakes it: no lost wake-up.
//! 2. Every waiter moved onto the mutex butex is woken by a later unlock: the requeuer re-locks
//!    with `swap(CONTENDED)` after the move (mutex invariant 3), so the word is `CONTENDED` while
//!    any moved waiter sleeps, and each woken waiter sets it again.
//! 3. A condvar is bound to the first mutex it waits with; waiting with another mutex panics,
//!    because a waiter of mutex B moved onto mutex A's butex would break invariant 2 for A.
//!
//! Skipping a requeue is always safe (whoever recorded `b` in `requeued` did one after the
//! broadcast, and then re-locks contended), and an extra requeue only causes spurious wake-ups.
//!
//! Spurious wake-ups are possible (a waiter that started after a broadcast may be requeued too,
//! and the butex itself allows them), so always wait in a loop or use [`Condvar::wait_while`].
use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{self, Relaxed, SeqCst};
use std::time::Instant;

use super::mutex::{LockWord, MutexGuard, RawMutex};
use crate::butex::{Butex, WaitError};

/// A condition variable for fibers and threads, used with [`super::Mutex`].
///
/// ```
/// use spindle_runtime::sync::{Condvar, Mutex};
/// use std::sync::Arc;
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let p2 = pair.clone();
/// let h = spindle_runtime::spawn(move || {
///     *p2.0.lock() = true;
///     p2.1.notify_one();
/// });
/// let (lock, cv) = &*pair;
/// let mut ready = lock.lock();
/// while !*ready {
///     cv.wait(&mut ready);
/// }
/// drop(ready);
/// h.join().unwrap();
/// ```
pub struct Condvar {
    /// The algorithm, over the real butex.
    core: CondCore<Butex>,
}

/// What the condvar needs from its `seq` butex on top of [`LockWord`]. Implemented by the real
/// [`Butex`]; the `loom_*` model implements it with a butex model whose `requeue` really moves
/// waiters, so the production algorithm below is what loom checks.
pub(crate) trait CondWord: LockWord {
    /// `value().fetch_add`.
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    /// [`Butex::requeue`].
    fn requeue(&self, to: &Self) -> usize;
}

impl CondWord for Butex {
    #[inline]
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.value().fetch_add(v, order)
    }
    #[inline]
    fn requeue(&self, to: &Self) -> usize {
        Butex::requeue(self, to)
    }
}

/// The condition-variable algorithm (module doc), generic over the butex so loom can check it.
pub(crate) struct CondCore<B> {
    /// Notification counter; waiters sleep on it.
    seq: B,
    /// Number of `notify_all` calls; a waiter that sees it change requeues the others.
    broadcasts: AtomicU32,
    /// The last `broadcasts` value some waiter requeued for, so one broadcast causes one requeue
    /// (not one per requeued waiter as each of them wakes up).
    requeued: AtomicU32,
    /// Address of the mutex this condvar is bound to (0 = not yet bound). Never dereferenced.
    mutex_addr: AtomicUsize,
}

impl CondCore<Butex> {
    /// No waiters, not bound.
    const fn new() -> Self {
        CondCore {
            seq: Butex::new(0),
            broadcasts: AtomicU32::new(0),
            requeued: AtomicU32::new(0),
            mutex_addr: AtomicUsize::new(0),
        }
    }
}

impl<B: CondWord> CondCore<B> {
    /// A core over a caller-supplied `seq` word (starting at 0), for models.
    #[cfg(all(test, loom))]
    pub(crate) fn with_seq(seq: B) -> Self {
        CondCore {
            seq,
            broadcasts: AtomicU32::new(0),
            requeued: AtomicU32::new(0),
            mutex_addr: AtomicUsize::new(0),
        }
    }

    /// Unlocks `raw` (held by the caller), sleeps until notified or `deadline`, re-locks `raw`.
    /// Returns whether the deadline passed.
    pub(crate) fn wait(&self, raw: &RawMutex<B>, deadline: Option<Instant>) -> bool {
        self.bind(raw as *const _ as usize);
        let b0 = self.broadcasts.load(SeqCst);
        let s0 = self.seq.load(SeqCst);
        raw.unlock();
        let r = self.seq.wait(s0, deadline);
        let b = self.broadcasts.load(SeqCst);
        if b != b0 && self.requeued.swap(b, SeqCst) != b {
            // We borrow the mutex, so its butex is certainly alive (see the module doc).
            self.seq.requeue(raw.butex());
        }
        raw.lock_contended(None);
        matches!(r, Err(WaitError::TimedOut))
    }

    /// Bump `seq`, wake one.
    pub(crate) fn notify_one(&self) {
        self.seq.fetch_add(1, SeqCst);
        self.seq.wake_one();
    }

    /// Bump `broadcasts` and `seq`, wake one (which requeues the rest).
    pub(crate) fn notify_all(&self) {
        self.broadcasts.fetch_add(1, SeqCst);
        self.seq.fetch_add(1, SeqCst);
        self.seq.wake_one();
    }

    /// Binds to the mutex at `addr` on first use; panics on a different one (invariant 3).
    fn bind(&self, addr: usize) {
        if self.mutex_addr.load(Relaxed) == addr {
            return;
        }
        match self.mutex_addr.compare_exchange(0, addr, Relaxed, Relaxed) {
            Ok(_) => {}
            Err(bound) if bound == addr => {}
            Err(_) => panic!(
                "spindle Condvar used with two different mutexes; bind one condvar to one mutex"
            ),
        }
    }
}

impl Condvar {
    /// A condition variable with no waiters, bound to no mutex yet.
    pub const fn new() -> Self {
        Condvar {
            core: CondCore::new(),
        }
    }

    /// Atomically unlocks the guard's mutex and parks until notified, then re-locks before
    /// returning. May wake spuriously.
    ///
    /// # Panics
    /// If this condvar was used with a different mutex before.
    pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        self.wait_inner(guard, None);
    }

    /// Like [`Condvar::wait`] but gives up at `deadline`; returns `true` if it returned because
    /// the deadline passed (the mutex is re-locked either way).
    ///
    /// ```
    /// use spindle_runtime::sync::{Condvar, Mutex};
    /// use std::time::{Duration, Instant};
    ///
    /// let (m, cv) = (Mutex::new(()), Condvar::new());
    /// let mut g = m.lock();
    /// assert!(cv.wait_until(&mut g, Instant::now() + Duration::from_millis(5)));
    /// ```
    pub fn wait_until<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> bool {
        self.wait_inner(guard, Some(deadline))
    }

    /// Waits while `condition` returns `true`, handling spurious wake-ups.
    pub fn wait_while<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) {
        while condition(&mut **guard) {
            self.wait(guard);
        }
    }

    /// Waits while `condition` returns `true` or until `deadline`; returns `true` if it gave up
    /// because of the deadline with the condition still true.
    pub fn wait_while_until<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Instant,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> bool {
        while condition(&mut **guard) {
            if self.wait_until(guard, deadline) {
                return condition(&mut **guard);
            }
        }
        false
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        self.core.notify_one();
    }

    /// Wakes every current waiter: one is woken, and it moves the rest onto the mutex so they
    /// acquire it one after another.
    pub fn notify_all(&self) {
        self.core.notify_all();
    }

    /// Shared body of the waits; returns whether the deadline passed.
    fn wait_inner<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<Instant>,
    ) -> bool {
        self.core.wait(guard.mutex().raw(), deadline)
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Mutex;
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn notify_all_wakes_every_waiter() {
        let n = 6;
        let state = Arc::new((Mutex::new((0u32, false)), Condvar::new()));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let state = state.clone();
                crate::spawn(move || {
                    let (m, cv) = &*state;
                    let mut g = m.lock();
                    g.0 += 1;
                    cv.wait_while(&mut g, |s| !s.1);
                })
            })
            .collect();
        let (m, cv) = &*state;
        loop {
            let mut g = m.lock();
            if g.0 == n {
                g.1 = true;
                cv.notify_all();
                break;
            }
            drop(g);
            crate::sleep(Duration::from_millis(1));
        }
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn wait_while_until_reports_timeout_only_if_condition_still_holds() {
        let (m, cv) = (Mutex::new(0), Condvar::new());
        let mut g = m.lock();
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(cv.wait_while_until(&mut g, soon, |v| *v == 0));
        *g = 1;
        assert!(!cv.wait_while_until(&mut g, soon, |v| *v == 0));
    }

    #[test]
    #[should_panic(expected = "two different mutexes")]
    fn two_mutexes_panic() {
        let (a, b, cv) = (Mutex::new(()), Mutex::new(()), Condvar::new());
        let mut ga = a.lock();
        cv.wait_until(&mut ga, Instant::now());
        let mut gb = b.lock();
        cv.wait_until(&mut gb, Instant::now());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The real condvar algorithm (`CondCore`) and mutex over the butex model whose `requeue`
    //! really moves waiters onto the mutex: no lost wake-up (loom reports a deadlock) and the
    //! protected data is never raced (loom reports a race).
    use super::super::model_butex::{world, ModelButex};
    use super::super::mutex::RawMutex;
    use super::*;
    use crate::loom::{thread, Arc, UnsafeCell};

    /// A mutex, a condvar and the value they protect.
    struct Shared {
        raw: RawMutex<ModelButex>,
        cv: CondCore<ModelButex>,
        value: UnsafeCell<u32>,
    }

    // SAFETY: `value` is only accessed with `raw` held (checked by loom).
    unsafe impl Sync for Shared {}
    // SAFETY: as above.
    unsafe impl Send for Shared {}

    impl Shared {
        fn new() -> Arc<Self> {
            let w = world();
            Arc::new(Shared {
                raw: RawMutex::with_word(ModelButex::new(&w, 0)),
                cv: CondCore::with_seq(ModelButex::new(&w, 0)),
                value: UnsafeCell::new(0),
            })
        }
        /// Reads the value; caller holds `raw`.
        fn get(&self) -> u32 {
            // SAFETY: the caller holds `raw`.
            self.value.with(|p| unsafe { *p })
        }
        /// Writes the value; caller holds `raw`.
        fn set(&self, v: u32) {
            // SAFETY: the caller holds `raw`.
            self.value.with_mut(|p| unsafe { *p = v })
        }
    }

    /// `waiters` waiters wait for the value to become non-zero; the main thread sets it and
    /// broadcasts, with or without holding the mutex while notifying. With three waiters, one
    /// of them is really moved onto the mutex's queue (requeue wakes one, moves the rest).
    fn broadcast_model(waiters: usize, notify_under_lock: bool) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(move || {
            let s = Shared::new();
            let hs: Vec<_> = (0..waiters)
                .map(|_| {
                    let s = s.clone();
                    thread::spawn(move || {
                        s.raw.lock();
                        while s.get() == 0 {
                            s.cv.wait(&s.raw, None);
                        }
                        s.raw.unlock();
                    })
                })
                .collect();
            s.raw.lock();
            s.set(1);
            if notify_under_lock {
                s.cv.notify_all();
                s.raw.unlock();
            } else {
                s.raw.unlock();
                s.cv.notify_all();
            }
            for h in hs {
                h.join().unwrap();
            }
        });
    }

    #[test]
    fn loom_condvar_notify_all_under_lock_requeues_without_losing_waiters() {
        broadcast_model(2, true);
    }

    #[test]
    fn loom_condvar_notify_all_three_waiters_chain_through_the_mutex() {
        broadcast_model(3, true);
    }

    #[test]
    fn loom_condvar_notify_all_after_unlock_requeues_without_losing_waiters() {
        broadcast_model(2, false);
    }

    #[test]
    fn loom_condvar_notify_one_hands_each_token_to_a_waiter() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let s = Shared::new();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    thread::spawn(move || {
                        s.raw.lock();
                        while s.get() == 0 {
                            s.cv.wait(&s.raw, None);
                        }
                        s.set(s.get() - 1);
                        s.raw.unlock();
                    })
                })
                .collect();
            for _ in 0..2 {
                s.raw.lock();
                s.set(s.get() + 1);
                s.cv.notify_one();
                s.raw.unlock();
            }
            for h in hs {
                h.join().unwrap();
            }
            s.raw.lock();
            assert_eq!(s.get(), 0);
            s.raw.unlock();
        });
    }
}
