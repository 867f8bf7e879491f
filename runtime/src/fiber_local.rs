//! Fiber-local storage: a value per fiber, like a thread-local but following the fiber.
//!
//! **Why this exists.** A fiber can resume on a different worker thread after any call that may
//! switch (a butex wait, a fiber mutex, `sleep`, `yield_now`, `join`, a synchronous RPC). A
//! `thread_local!` read before such a call and used after it may then belong to *another* thread,
//! and worse, the compiler is allowed to keep a thread-local's address in a register across the
//! call, so even a fresh-looking second read can return the old thread's slot. The rules:
//!
//! 1. In fiber code, keep per-task state in a [`FiberLocal`], not a `thread_local!`.
//! 2. If you must use a thread-local (a per-thread cache, say), read it through a function marked
//!    `#[inline(never)]`, and never hold a reference into it across a call that may switch.
//!
//! On a plain thread (not a fiber) a `FiberLocal` falls back to per-thread storage.
//!
//! Values are created lazily by the key's `init` function, per fiber, and dropped when the fiber's
//! function returns (before its joiner is woken), or at thread exit for the thread fallback.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};

use crate::scheduler::task_group::current_task_meta;

/// Keys handed out so far (a key is an index into every fiber's slot table).
static NEXT_KEY: AtomicUsize = AtomicUsize::new(0);

/// One value and how many `with` calls currently borrow it.
struct Slot {
    value: Box<dyn Any + Send>,
    borrows: Cell<usize>,
}

/// The fiber-local values of one fiber (or thread). Slots are boxed so that a slot (its value
/// and its borrow counter) stays put while the table grows, e.g. when `init` of another key runs
/// inside a `with`.
#[derive(Default)]
pub(crate) struct LocalSlots {
    slots: Vec<Option<Box<Slot>>>,
}

thread_local! {
    /// Fallback storage for plain threads.
    static THREAD_SLOTS: UnsafeCell<LocalSlots> = UnsafeCell::new(LocalSlots::default());
}

/// The slot table of the running fiber, or of this thread.
#[inline(never)]
fn current_slots() -> *mut LocalSlots {
    compiler_fence(Ordering::SeqCst);
    let meta = current_task_meta();
    let r = if meta.is_null() {
        THREAD_SLOTS.with(|s| s.get())
    } else {
        // SAFETY: the running fiber's meta is alive while it runs; `locals` is touched only by
        // the fiber itself.
        unsafe { std::ptr::addr_of_mut!((*meta).locals) }
    };
    compiler_fence(Ordering::SeqCst);
    r
}

/// A key for a fiber-local value of type `T`; declare it in a `static`:
///
/// ```
/// use spindle_runtime::fiber_local::FiberLocal;
/// static REQUEST_ID: FiberLocal<u64> = FiberLocal::new(|| 0);
/// REQUEST_ID.set(42);
/// assert_eq!(REQUEST_ID.get(), 42);
/// ```
pub struct FiberLocal<T: Send + 'static> {
    /// Assigned on first use: index + 1 (0: not yet).
    key: AtomicUsize,
    /// Makes the value of a fiber that has none yet.
    init: fn() -> T,
    _t: PhantomData<fn() -> T>,
}

impl<T: Send + 'static> FiberLocal<T> {
    /// A key whose per-fiber value starts as `init()`.
    pub const fn new(init: fn() -> T) -> Self {
        FiberLocal {
            key: AtomicUsize::new(0),
            init,
            _t: PhantomData,
        }
    }

    fn key(&self) -> usize {
        let k = self.key.load(Ordering::Acquire);
        if k != 0 {
            return k - 1;
        }
        let fresh = NEXT_KEY.fetch_add(1, Ordering::Relaxed) + 1;
        match self
            .key
            .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh - 1,
            Err(k) => k - 1,
        }
    }

    /// Makes sure the current fiber's slot exists; returns the key.
    fn ensure(&self) -> usize {
        let key = self.key();
        // SAFETY: the slot table of the running fiber/thread, used without switching.
        let present = unsafe {
            let slots: &Vec<Option<Box<Slot>>> = &(*current_slots()).slots;
            slots.get(key).is_some_and(Option::is_some)
        };
        if !present {
            // `init` may itself use fiber-locals (and grow the table): call it first.
            let value = (self.init)();
            // SAFETY: as above; re-read after `init`.
            let slots = unsafe { &mut (*current_slots()).slots };
            if slots.len() <= key {
                slots.resize_with(key + 1, || None);
            }
            if slots[key].is_none() {
                slots[key] = Some(Box::new(Slot {
                    value: Box::new(value),
                    borrows: Cell::new(0),
                }));
            }
        }
        key
    }

    /// Calls `f` with a reference to this fiber's value (created by `init` if absent). `f` may
    /// switch (the value belongs to the fiber, not the thread). Calling [`FiberLocal::set`] on
    /// the same key from inside `f` panics.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self.ensure();
        // SAFETY: the slot exists (ensure) and is boxed, so neither it nor its value moves when
        // the table grows; the value cannot be replaced while `borrows` > 0 (set checks it) and
        // the table is only dropped when the fiber ends, which cannot happen inside `f`.
        let (value, borrows): (*const T, *const Cell<usize>) = unsafe {
            let slots: &Vec<Option<Box<Slot>>> = &(*current_slots()).slots;
            let slot = slots[key].as_ref().expect("slot");
            let v = slot.value.downcast_ref::<T>().expect("fiber-local type") as *const T;
            (v, &slot.borrows as *const Cell<usize>)
        };
        struct Release(*const Cell<usize>);
        impl Drop for Release {
            fn drop(&mut self) {
                // SAFETY: the counter lives in the same Slot as the value, kept alive above.
                unsafe { (*self.0).set((*self.0).get() - 1) };
            }
        }
        // SAFETY: see above.
        unsafe { (*borrows).set((*borrows).get() + 1) };
        let _release = Release(borrows);
        // SAFETY: see above.
        f(unsafe { &*value })
    }

    /// Replaces this fiber's value with `v` (the old one is dropped). Panics if called while a
    /// [`FiberLocal::with`] on the same key is in progress in this fiber.
    pub fn set(&'static self, v: T) {
        let key = self.ensure();
        // SAFETY: the slot table of the running fiber/thread, used without switching.
        let old = unsafe {
            let slots: &mut Vec<Option<Box<Slot>>> = &mut (*current_slots()).slots;
            let slot = slots[key].as_mut().expect("slot");
            assert!(
                slot.borrows.get() == 0,
                "FiberLocal::set while the value is borrowed by with"
            );
            std::mem::replace(&mut slot.value, Box::new(v))
        };
        drop(old);
    }

    /// A copy of this fiber's value.
    pub fn get(&'static self) -> T
    where
        T: Clone,
    {
        self.with(T::clone)
    }
}

impl<T: Send + 'static> std::fmt::Debug for FiberLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiberLocal")
            .field("key", &self.key.load(Ordering::Relaxed))
            .finish()
    }
}
