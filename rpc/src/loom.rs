//! Synchronisation types used by lock-free code, imported through this shim so the production
//! code itself runs under the loom model checker (`RUSTFLAGS="--cfg loom"`, tests named `loom_*`).
//!
//! Only code that a loom model exercises imports from here; everything else uses `std`.
#![allow(unused_imports)]

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{atomic, Arc, Mutex, MutexGuard},
    thread,
};

#[cfg(not(loom))]
pub(crate) use std::{
    sync::{atomic, Arc, Mutex, MutexGuard},
    thread,
};

/// `UnsafeCell` with loom's closure API, so the same code compiles under both.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
