//! Fiber mutex (brpc's `bthread_mutex_t`): a three-state word on a [`Butex`].
//!
//! # Algorithm
//!
//! The butex word is the whole lock state:
//!
//! | word          | meaning                                              |
//! |---------------|------------------------------------------------------|
//! | `UNLOCKED`  0 | free                                                 |
//! | `LOCKED`    1 | held, and nobody has gone to sleep on the butex      |
//! | `CONTENDED` 2 | held, and a waiter may be asleep on the butex        |
//!
//! - **lock, fast path**: one `compare_exchange(UNLOCKED → LOCKED)`; nothing else.
//! - **lock, slow path**: `swap(CONTENDED)`; if the old value was `UNLOCKED` we own the lock (with
//!   the word pessimistically at `CONTENDED`), otherwise `Butex::wait(CONTENDED)` and retry.
//! - **unlock**: `swap(UNLOCKED)`; only if the old value was `CONTENDED` call `wake_one`. So an
//!   uncontended lock/unlock pair is two atomic instructions and never touches the wait list.
//!
//! # Invariants
//!
//! 1. Only the owner stores `UNLOCKED`; every other transition is a CAS/swap by a locker.
//! 2. A waiter sleeps only while the word is `CONTENDED` (it passes `CONTENDED` as `expected`,
//!    and the butex checks it atomically with respect to wakes), so the owner's unlock sees
//!    `CONTENDED` and wakes someone: no lost wake-up.
//! 3. A woken waiter always re-locks with `swap(CONTENDED)` (never the fast CAS), so if other
//!    waiters remain asleep the word stays `CONTENDED` and the chain of wakes continues. This is
//!    also what makes [`Condvar`](super::Condvar)'s requeue onto this butex sound: a waiter moved
//!    here is woken by the next unlock of a `CONTENDED` word, and the requeuer itself locks with
//!    `swap(CONTENDED)` after moving them.
//!
//! The mutex is not tied to an OS thread: a fiber holding a guard may resume on another worker
//! and unlock there, so the guard is `Send` (unlike `std::sync::MutexGuard`). There is no
//! poisoning: a panic while holding the guard simply unlocks (as in `parking_lot`).
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};
use std::time::Instant;

use super::TimedOut;
use crate::butex::{Butex, WaitError};

/// Word value: free.
const UNLOCKED: u32 = 0;
/// Word value: held, no sleeper.
const LOCKED: u32 = 1;
/// Word value: held, sleepers possible.
const CONTENDED: u32 = 2;
/// How many times a locker re-reads a `LOCKED` (not yet contended) word before going to sleep.
/// Critical sections guarded by fiber mutexes are usually a few hundred nanoseconds; a short spin
/// avoids a park/unpark round trip (microseconds) in that common case, and is cheap when it fails.
/// Under loom the spin is cut to one round: it only multiplies the states to explore.
const SPIN_LIMIT: u32 = if cfg!(loom) { 1 } else { 64 };

/// What [`RawMutex`] needs from its butex: the word's atomic operations plus `wait`/`wake_one`.
/// Implemented by the real [`Butex`]; the `loom_*` models implement it with loom primitives so
/// the production state machine below is what loom checks.
pub(crate) trait LockWord {
    /// `value().load`.
    fn load(&self, order: Ordering) -> u32;
    /// `value().swap`.
    fn swap(&self, v: u32, order: Ordering) -> u32;
    /// `value().compare_exchange`.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// [`Butex::wait`].
    fn wait(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError>;
    /// [`Butex::wake_one`].
    fn wake_one(&self) -> usize;
}

impl LockWord for Butex {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        self.value().load(order)
    }
    #[inline]
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        self.value().swap(v, order)
    }
    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.value()
            .compare_exchange(current, new, success, failure)
    }
    #[inline]
    fn wait(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        Butex::wait(self, expected, deadline)
    }
    #[inline]
    fn wake_one(&self) -> usize {
        Butex::wake_one(self)
    }
}

/// The lock without data: a three-state butex word. Shared by [`Mutex`], [`super::RwLock`] and
/// [`super::Condvar`].
pub(crate) struct RawMutex<B: LockWord = Butex> {
    /// The lock word (`UNLOCKED` / `LOCKED` / `CONTENDED`) and the wait list of sleepers.
    butex: B,
}

impl RawMutex<Butex> {
    /// An unlocked mutex.
    pub(crate) const fn new() -> Self {
        RawMutex {
            butex: Butex::new(UNLOCKED),
        }
    }
}

impl<B: LockWord> RawMutex<B> {
    /// The butex sleepers wait on (condition variables requeue onto it).
    pub(crate) fn butex(&self) -> &B {
        &self.butex
    }

    /// A mutex over a caller-supplied word (which must start `UNLOCKED`), for models.
    #[cfg(all(test, loom))]
    pub(crate) fn with_word(butex: B) -> Self {
        RawMutex { butex }
    }

    /// Takes the lock if it is free: one CAS, never blocks.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.butex
            .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            .is_ok()
    }

    /// Takes the lock, parking the caller while it is held elsewhere.
    #[inline]
    pub(crate) fn lock(&self) {
        if !self.try_lock() {
            self.lock_slow(None);
        }
    }

    /// Takes the lock unless `deadline` passes first; returns whether it was taken.
    #[inline]
    pub(crate) fn lock_until(&self, deadline: Instant) -> bool {
        self.try_lock() || self.lock_slow(Some(deadline))
    }

    /// Spins briefly, then falls back to [`RawMutex::lock_contended`].
    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> bool {
        for _ in 0..SPIN_LIMIT {
            match self.butex.load(Relaxed) {
                UNLOCKED => {
                    if self.try_lock() {
                        return true;
                    }
                }
                LOCKED => std::hint::spin_loop(),
                _ => break, // somebody already sleeps: join them rather than burn CPU
            }
        }
        self.lock_contended(deadline)
    }

    /// The sleeping path: always leaves the word at `CONTENDED` when it returns `true`
    /// (invariant 3). Used directly by waiters woken from a condition variable.
    pub(crate) fn lock_contended(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.butex.swap(CONTENDED, Acquire) == UNLOCKED {
                return true;
            }
            if let Err(WaitError::TimedOut) = self.butex.wait(CONTENDED, deadline) {
                // One last attempt so a wake racing with the timeout is not wasted.
                return self
                    .butex
                    .compare_exchange(UNLOCKED, CONTENDED, Acquire, Relaxed)
                    .is_ok();
            }
        }
    }

    /// Releases the lock; wakes one sleeper if the word said there might be one.
    ///
    /// The caller must own the lock.
    #[inline]
    pub(crate) fn unlock(&self) {
        if self.butex.swap(UNLOCKED, Release) == CONTENDED {
            self.butex.wake_one();
        }
    }
}

/// A mutual-exclusion lock for fibers and threads (brpc's `bthread_mutex_t`).
///
/// Contended `lock` parks only the calling fiber (a plain thread blocks); the worker thread goes
/// on running other fibers. The uncontended `lock`/`unlock` pair is one CAS plus one swap and
/// never wakes anybody. Not reentrant: locking twice from the same fiber deadlocks. No
/// poisoning: a panic while the guard is held unlocks it. Not FIFO-fair: like brpc's mutex, a
/// running locker may take the lock before a woken sleeper does (throughput over fairness).
///
/// ```
/// use spindle_runtime::sync::Mutex;
/// use std::sync::Arc;
///
/// let total = Arc::new(Mutex::new(0u32));
/// let handles: Vec<_> = (0..4)
///     .map(|_| {
///         let total = total.clone();
///         spindle_runtime::spawn(move || *total.lock() += 1)
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*total.lock(), 4);
/// ```
pub struct Mutex<T: ?Sized> {
    /// The lock word.
    raw: RawMutex,
    /// The protected value; accessed only through a guard.
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out `&mut T` to one guard at a time, so sharing it across threads
// only requires that `T` can be sent between them (same bounds as `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: see above; access to `data` is serialised by `raw`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`. `const`, so it can initialise a `static`.
    pub const fn new(value: T) -> Self {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the caller (fiber or thread) while another holder has it. Returns the
    /// guard; the lock is released when the guard drops.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock();
        MutexGuard::new(self)
    }

    /// Locks if free right now; `None` if it is held. Never blocks.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.raw.try_lock() {
            Some(MutexGuard::new(self))
        } else {
            None
        }
    }

    /// Locks, waiting at most until `deadline`. `Err(TimedOut)` if the deadline passed first
    /// (a deadline already in the past still succeeds when the lock is free).
    ///
    /// ```
    /// use spindle_runtime::sync::{Mutex, TimedOut};
    /// use std::time::{Duration, Instant};
    ///
    /// let m = Mutex::new(());
    /// let _held = m.lock();
    /// let again = m.lock_timeout(Instant::now() + Duration::from_millis(5));
    /// assert_eq!(again.err(), Some(TimedOut));
    /// ```
    pub fn lock_timeout(&self, deadline: Instant) -> Result<MutexGuard<'_, T>, TimedOut> {
        if self.raw.lock_until(deadline) {
            Ok(MutexGuard::new(self))
        } else {
            Err(TimedOut)
        }
    }

    /// Mutable access without locking: `&mut self` proves nobody else can hold the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The lock word, for [`super::Condvar`].
    pub(crate) fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Mutex").field("data", &&*g).finish(),
            None => f
                .debug_struct("Mutex")
                .field("data", &format_args!("<locked>"))
                .finish(),
        }
    }
}

/// Proof of holding a [`Mutex`]; derefs to the value and unlocks on drop.
///
/// Unlike `std`'s guard it is `Send` (for `T: Send`): a fiber may resume on another OS thread
/// while holding it, and the fiber mutex may be released from any thread.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    /// The locked mutex.
    mutex: &'a Mutex<T>,
    /// Opts out of the auto traits; `Send`/`Sync` are implemented below with the right bounds.
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: the guard grants `&mut T`; moving it to another thread moves that access, which is
// sound when `T: Send`. The fiber mutex has no owner-thread requirement (unlock is a swap).
unsafe impl<T: ?Sized + Send> Send for MutexGuard<'_, T> {}
// SAFETY: a shared guard only grants `&T`, which is shareable when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Wraps a mutex the caller has just locked.
    fn new(mutex: &'a Mutex<T>) -> Self {
        MutexGuard {
            mutex,
            _not_auto: PhantomData,
        }
    }

    /// The mutex this guard holds (for condition variables).
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `raw` is held by it, so no `&mut T` exists elsewhere.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively and `&mut self` makes this the only access.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn uncontended_lock_leaves_word_locked_not_contended() {
        let m = Mutex::new(1);
        {
            let mut g = m.lock();
            *g += 1;
            assert_eq!(m.raw.butex().value().load(Relaxed), LOCKED);
            assert!(m.try_lock().is_none());
        }
        assert_eq!(m.raw.butex().value().load(Relaxed), UNLOCKED);
        assert_eq!(*m.lock(), 2);
    }

    #[test]
    fn contended_counter_and_inside_flag() {
        let iters = if cfg!(miri) { 20 } else { 2_000 };
        let m = Arc::new(Mutex::new(0u64));
        let inside = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                crate::spawn(move || {
                    for _ in 0..iters {
                        let mut g = m.lock();
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                        *g += 1;
                        inside.store(false, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 4 * iters);
    }

    #[test]
    fn lock_timeout_fires_then_succeeds_after_release() {
        let m = Arc::new(Mutex::new(()));
        let g = m.lock();
        let start = Instant::now();
        assert!(m.lock_timeout(start + Duration::from_millis(10)).is_err());
        assert!(Instant::now() >= start + Duration::from_millis(10));
        drop(g);
        assert!(m.lock_timeout(Instant::now()).is_ok());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The real `RawMutex` state machine over the loom model of the butex contract
    //! (`super::super::model_butex`).
    use super::super::model_butex::{world, ModelButex};
    use super::*;
    use crate::loom::{thread, Arc, UnsafeCell};

    /// Data guarded by the model mutex; loom flags any unsynchronised access.
    struct Guarded {
        raw: RawMutex<ModelButex>,
        count: UnsafeCell<u32>,
    }

    // SAFETY: `count` is only touched while `raw` is held (that is what the model checks).
    unsafe impl Sync for Guarded {}
    // SAFETY: as above.
    unsafe impl Send for Guarded {}

    fn guarded() -> Arc<Guarded> {
        let w = world();
        Arc::new(Guarded {
            raw: RawMutex::with_word(ModelButex::new(&w, UNLOCKED)),
            count: UnsafeCell::new(0),
        })
    }

    fn critical_section(g: &Guarded) {
        // SAFETY: the caller holds `g.raw`; loom reports a race if the mutex failed to exclude.
        g.count.with_mut(|p| unsafe { *p += 1 });
    }

    #[test]
    fn loom_mutex_excludes_and_never_loses_a_wakeup() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let g = guarded();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let g = g.clone();
                    thread::spawn(move || {
                        g.raw.lock();
                        critical_section(&g);
                        g.raw.unlock();
                    })
                })
                .collect();
            g.raw.lock();
            critical_section(&g);
            g.raw.unlock();
            for h in hs {
                h.join().unwrap();
            }
            // A lost wake-up shows up as a loom deadlock; a double entry as a loom race.
            // SAFETY: every other thread has been joined.
            assert_eq!(g.count.with(|p| unsafe { *p }), 3);
            assert_eq!(g.raw.butex.load(Ordering::SeqCst), UNLOCKED);
        });
    }

    #[test]
    fn loom_mutex_timed_lock_gives_up_cleanly() {
        loom::model(|| {
            let g = guarded();
            let g2 = g.clone();
            let t = thread::spawn(move || {
                // The model's deadline may expire at once: either we get the lock or give up,
                // and giving up must not strand the other locker.
                if g2.raw.lock_until(Instant::now()) {
                    critical_section(&g2);
                    g2.raw.unlock();
                }
            });
            g.raw.lock();
            critical_section(&g);
            g.raw.unlock();
            t.join().unwrap();
            g.raw.lock();
            g.raw.unlock();
        });
    }
}
