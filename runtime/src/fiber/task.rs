//! Task metadata: what the scheduler knows about one fiber (brpc's `TaskMeta`).
//!
//! Ownership: a `TaskMeta` is owned by exactly one party at a time, and the [`TaskRef`] that
//! points to it moves with ownership: a run queue, the worker running it, or the wait list of a
//! butex (or a timer callback that took it off that list). Whoever holds the `TaskRef` may touch
//! the meta; the fiber itself touches only its own `yielder` and `locals` while it runs. Metas are
//! recycled through a per-worker pool, so spawning allocates no metadata in the steady state.

use std::ptr::NonNull;
use std::sync::Arc;

use corosensei::{Coroutine, Yielder};

use super::join::Runnable;
use super::stack::{FiberStack, StackSize};
use crate::fiber_local::LocalSlots;

/// Identifier of a fiber (brpc's `bthread_t`). Unique for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// The coroutine type of every fiber: resumed with `()`, suspends with a [`Suspend`] request.
pub(crate) type Fiber = Coroutine<(), Suspend, (), FiberStack>;

/// What a fiber asks of its worker when it switches out. The worker acts on it *after* the
/// switch, once the fiber's context is saved, so nobody can resume the fiber too early.
pub(crate) enum Suspend {
    /// Put me back behind what is ready (the worker's FIFO yield queue).
    Yield,
    /// Run this action with my `TaskRef`; it publishes me somewhere (a butex wait list) or hands
    /// me back to run again at once.
    Park(ParkAction),
    /// Run this new fiber now; put me on the local deque where an idle worker can steal me.
    Urgent(TaskRef),
}

/// A callback the worker runs after a fiber switched out, with the fiber's `TaskRef`.
pub(crate) struct ParkAction {
    /// Argument for `f`: points into the parked fiber's stack.
    pub(crate) data: *const (),
    /// Publishes the task (returns `None`), or gives it back to be resumed at once.
    ///
    /// Safety contract: `f` must read everything it needs from `data` before the moment it
    /// publishes the task, and never touch `data` afterwards: once published, the fiber can be
    /// resumed on another worker and its stack reused.
    pub(crate) f: unsafe fn(*const (), TaskRef) -> Option<TaskRef>,
}

/// One fiber's metadata. See the module doc for who may touch it.
pub(crate) struct TaskMeta {
    /// Public identity.
    pub(crate) id: TaskId,
    /// The worker pool (tag) it runs on.
    pub(crate) tag: usize,
    /// Stack class to use when it first runs.
    pub(crate) stack_size: StackSize,
    /// Name given by `Builder::name`.
    pub(crate) name: Option<String>,
    /// The user function (and its join slot) until the fiber starts.
    pub(crate) entry: Option<Arc<dyn Runnable>>,
    /// The coroutine, created lazily (with a pooled stack) when the fiber first runs.
    pub(crate) coroutine: Option<Fiber>,
    /// Guard region of its stack (valid once the coroutine exists), for the overflow handler.
    pub(crate) guard: (usize, usize),
    /// Set by the fiber itself when it starts; how it switches out.
    pub(crate) yielder: *const Yielder<(), Suspend>,
    /// Fiber-local storage; dropped on the fiber when its function returns.
    pub(crate) locals: LocalSlots,
    /// Set while the fiber runs the closure of [`crate::defer_wake_signals`]: the fibers it
    /// wakes on its worker owe their signal. Only the fiber itself touches it.
    pub(crate) defer_wake_signals: bool,
}

impl TaskMeta {
    pub(crate) fn new() -> Box<TaskMeta> {
        Box::new(TaskMeta {
            id: TaskId(0),
            tag: 0,
            stack_size: StackSize::Normal,
            name: None,
            entry: None,
            coroutine: None,
            guard: (0, 0),
            yielder: std::ptr::null(),
            locals: LocalSlots::default(),
            defer_wake_signals: false,
        })
    }
}

/// An owning pointer to a [`TaskMeta`] that travels through queues. Not `Clone`: there is one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TaskRef(NonNull<TaskMeta>);

// SAFETY: a TaskRef is the unique handle to its meta (see the module doc), so sending it sends
// ownership. The fiber stack it may carry holds whatever the user's `Send` closure put there;
// values held across a switch are the user's responsibility, as with every stackful runtime
// (documented in the crate docs).
unsafe impl Send for TaskRef {}

impl TaskRef {
    pub(crate) fn from_box(b: Box<TaskMeta>) -> TaskRef {
        TaskRef(NonNull::from(Box::leak(b)))
    }

    /// Gives the box back (the task is finished and its coroutine gone).
    pub(crate) fn into_box(self) -> Box<TaskMeta> {
        // SAFETY: the pointer came from Box::leak in from_box and ownership is unique.
        unsafe { Box::from_raw(self.0.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut TaskMeta {
        self.0.as_ptr()
    }

    /// The task's tag.
    pub(crate) fn tag(&self) -> usize {
        // SAFETY: as for `id`.
        unsafe { (*self.0.as_ptr()).tag }
    }
}
