//! Writer-preferring reader-writer lock for fibers and threads (brpc's `bthread_rwlock_t`).
//!
//! # Algorithm
//!
//! Writers are serialised by a [`RawMutex`]; readers never touch it. `readers` counts active
//! readers; a writer announces itself by subtracting `MAX_READERS`, which makes `readers`
//! negative so arriving readers know a writer is pending and go to sleep on `reader_sem`:
//!
//! - **read lock**: `readers += 1`; if the result is negative a writer is pending or active:
//!   `reader_sem.acquire()` (the writer's unlock releases exactly the readers that queued).
//! - **read unlock**: `readers -= 1`; if the result is negative a writer waits for departing
//!   readers: `departing -= 1`, and the reader that brings it to 0 releases `writer_sem`.
//! - **write lock**: lock the writer mutex; `r = readers; readers -= MAX_READERS` (one atomic
//!   add); if `r` readers were active, `departing += r` and unless that made it 0 (they all left
//!   already) `writer_sem.acquire()`.
//! - **write unlock**: `readers += MAX_READERS`; the result `q` is the number of readers that
//!   queued meanwhile: `reader_sem.release(q)`; unlock the writer mutex.
//!
//! # Invariants
//!
//! 1. `readers >= 0` ⇔ no writer pending or active; then `readers` = active readers.
//! 2. While a writer is pending, no new reader enters (they see a negative count), so a stream
//!    of readers cannot starve a writer; and a writer's unlock admits every reader that queued
//!    before the next writer can announce itself, so writers cannot starve readers either.
//! 3. Permits are conserved: `writer_sem` gets exactly one release per writer that had to wait;
//!    `reader_sem` gets exactly one release per reader that counted itself while negative.
//!
//! `try_read` / `try_write` only succeed from states where they need not wait (CAS on
//! `readers`), so they never disturb the counts above.
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::mutex::RawMutex;
use super::Semaphore;

/// Subtracted from `readers` by a pending writer. Also the maximum number of concurrent readers.
const MAX_READERS: i32 = 1 << 30;

/// A reader-writer lock: many readers or one writer; writers are preferred (a pending writer
/// blocks new readers), so neither side starves.
///
/// ```
/// use spindle_runtime::sync::RwLock;
///
/// let lock = RwLock::new(5);
/// {
///     let r1 = lock.read();
///     let r2 = lock.read();
///     assert_eq!(*r1 + *r2, 10);
///     assert!(lock.try_write().is_none());
/// }
/// *lock.write() += 1;
/// assert_eq!(*lock.read(), 6);
/// ```
pub struct RwLock<T: ?Sized> {
    /// Serialises writers.
    writer: RawMutex,
    /// Active readers, minus `MAX_READERS` while a writer is pending/active.
    readers: AtomicI32,
    /// Readers a pending writer still waits for.
    departing: AtomicI32,
    /// Readers queued behind a writer sleep here.
    reader_sem: Semaphore,
    /// A pending writer sleeps here until the last active reader leaves.
    writer_sem: Semaphore,
    /// The protected value.
    data: UnsafeCell<T>,
}

// SAFETY: like `std::sync::RwLock`: the lock hands out `&mut T` to one writer (needs `T: Send`
// to move between threads) or `&T` to many readers at once (needs `T: Sync`).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: see above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        RwLock {
            writer: RawMutex::new(),
            readers: AtomicI32::new(0),
            departing: AtomicI32::new(0),
            reader_sem: Semaphore::new(0),
            writer_sem: Semaphore::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access; parks while a writer holds or waits for the lock.
    ///
    /// # Panics
    /// If more than 2^30 readers hold the lock at once.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let r = self.readers.fetch_add(1, SeqCst) + 1;
        assert!(r != MAX_READERS, "RwLock: too many concurrent readers");
        if r < 0 {
            self.reader_sem.acquire();
        }
        RwLockReadGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Shared access if no writer holds or waits for the lock; never blocks.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut r = self.readers.load(Relaxed);
        while (0..MAX_READERS - 1).contains(&r) {
            match self
                .readers
                .compare_exchange_weak(r, r + 1, SeqCst, Relaxed)
            {
                Ok(_) => {
                    return Some(RwLockReadGuard {
                        lock: self,
                        _not_auto: PhantomData,
                    })
                }
                Err(now) => r = now,
            }
        }
        None
    }

    /// Exclusive access; parks until current readers and writers leave.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.writer.lock();
        let active = self.readers.fetch_sub(MAX_READERS, SeqCst);
        if active != 0 && self.departing.fetch_add(active, SeqCst) + active != 0 {
            self.writer_sem.acquire();
        }
        RwLockWriteGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Exclusive access if nobody holds the lock; never blocks.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if !self.writer.try_lock() {
            return None;
        }
        if self
            .readers
            .compare_exchange(0, -MAX_READERS, SeqCst, Relaxed)
            .is_ok()
        {
            Some(RwLockWriteGuard {
                lock: self,
                _not_auto: PhantomData,
            })
        } else {
            self.writer.unlock();
            None
        }
    }

    /// Mutable access without locking (`&mut self` proves exclusivity).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Releases one read hold.
    fn read_unlock(&self) {
        let r = self.readers.fetch_sub(1, SeqCst) - 1;
        if r < 0 && self.departing.fetch_sub(1, SeqCst) - 1 == 0 {
            self.writer_sem.release(1);
        }
    }

    /// Releases the write hold.
    fn write_unlock(&self) {
        let queued = self.readers.fetch_add(MAX_READERS, SeqCst) + MAX_READERS;
        if queued > 0 {
            self.reader_sem.release(queued as u32);
        }
        self.writer.unlock();
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(g) => f.debug_struct("RwLock").field("data", &&*g).finish(),
            None => f
                .debug_struct("RwLock")
                .field("data", &format_args!("<locked>"))
                .finish(),
        }
    }
}

/// Shared hold on a [`RwLock`]; released on drop. `Send` (fibers migrate) when `T: Sync`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    /// The held lock.
    lock: &'a RwLock<T>,
    /// Opts out of auto traits; implemented below.
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: a read guard grants `&T` only; sending or sharing it is sound when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read hold excludes writers (invariant 1), so no `&mut T` exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

/// Exclusive hold on a [`RwLock`]; released on drop. `Send` (fibers migrate) when `T: Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    /// The held lock.
    lock: &'a RwLock<T>,
    /// Opts out of auto traits; implemented below.
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: grants `&mut T`; moving that access to another thread needs `T: Send`. The lock has
// no owner-thread requirement.
unsafe impl<T: ?Sized + Send> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: sharing the guard grants `&T`, which needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write hold is exclusive: no reader or other writer is inside.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;
    use std::sync::Arc;

    #[test]
    fn readers_and_writers_exclude_correctly() {
        let iters = if cfg!(miri) { 10 } else { 1_000 };
        let lock = Arc::new(RwLock::new(0u64));
        // > 0: readers inside; -1: a writer inside.
        let inside = Arc::new(AtomicI32::new(0));
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let (lock, inside) = (lock.clone(), inside.clone());
                crate::spawn(move || {
                    for _ in 0..iters {
                        if i % 3 == 0 {
                            let mut g = lock.write();
                            assert_eq!(inside.swap(-1, SeqCst), 0);
                            *g += 1;
                            assert_eq!(inside.swap(0, SeqCst), -1);
                        } else {
                            let _g = lock.read();
                            assert!(inside.fetch_add(1, SeqCst) >= 0);
                            inside.fetch_sub(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*lock.read(), 2 * iters);
    }

    #[test]
    fn pending_writer_blocks_new_readers() {
        let lock = Arc::new(RwLock::new(()));
        let r = lock.read();
        let l2 = lock.clone();
        let w = crate::spawn(move || drop(l2.write()));
        while lock.readers.load(SeqCst) >= 0 {
            crate::yield_now();
        }
        assert!(
            lock.try_read().is_none(),
            "a pending writer must block new readers"
        );
        drop(r);
        w.join().unwrap();
        assert!(lock.try_read().is_some());
        assert!(lock.try_write().is_some());
    }
}
