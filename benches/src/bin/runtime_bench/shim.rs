//! SHIMS — REMOVE AT MERGE. Stand-ins for runtime APIs that are being written in parallel and are
//! not in this tree yet. Each item says what replaces it; the cases call only these two items, so
//! the merge is: delete this file, change the two `use` lines in `cases.rs` / `memory.rs`.
//!
//! 1. [`Mutex`] → `spindle_runtime::sync::Mutex<T>` (same shape: `new`, `lock()` returning a guard
//!    that derefs to `T`).
//! 2. [`spawn_small_stack`] → `spindle_runtime::Builder::new().stack_size(StackSize::Small)
//!    .spawn(f)` (whatever the final spelling; it must start a fiber on a `stack_size_small` stack).
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use spindle_runtime::butex::Butex;

/// SHIM (remove at merge): a fiber mutex on a [`Butex`], Drepper's three-state futex mutex.
/// Word: 0 unlocked, 1 locked, 2 locked and maybe waited on.
pub struct Mutex<T> {
    /// The lock word and its wait list.
    state: Butex,
    /// The protected value; accessed only through a guard.
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one guard at a time exclusive access to `value`, so sharing the mutex
// between threads only ever moves `T` between them (hence `T: Send`).
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Mutex {
            state: Butex::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Locks, parking the fiber (or thread) while another holds the lock.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let word = self.state.value();
        if word
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Mark contended; whoever unlocks will wake one waiter.
            while word.swap(2, Ordering::Acquire) != 0 {
                let _ = self.state.wait(2, None);
            }
        }
        MutexGuard { mutex: self }
    }
}

/// SHIM (remove at merge): the guard of [`Mutex`]; unlocks on drop.
pub struct MutexGuard<'a, T> {
    /// The locked mutex.
    mutex: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread/fiber holds the lock.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference from the guard.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.mutex.state.value().swap(0, Ordering::Release) == 2 {
            self.mutex.state.wake_one();
        }
    }
}

/// SHIM (remove at merge): starts `f` in a fiber with the *small* stack class
/// (`stack_size_small`). Today it is plain `spawn` (a thread stand-in).
pub fn spawn_small_stack<F, T>(f: F) -> spindle_runtime::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spindle_runtime::spawn(f)
}
