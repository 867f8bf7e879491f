//! The join slot of a fiber: one allocation per spawn holding the user's closure, its result and
//! the butex a joiner waits on.
//!
//! Protocol: the fiber takes the closure (exactly once), runs it under `catch_unwind`, writes the
//! result, then stores `DONE` in the butex word (`Release`) and wakes all waiters. A joiner waits
//! while the word is `RUNNING`, then (after an `Acquire` load saw `DONE`) takes the result. The
//! `JoinHandle` is unique, so the result is taken at most once.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::task::TaskId;
use crate::butex::Butex;

const RUNNING: u32 = 0;
const DONE: u32 = 1;

/// Why [`JoinHandle::join`] did not return a value.
#[derive(Debug)]
pub enum JoinError {
    /// The fiber panicked; the payload is the panic value.
    Panicked(Box<dyn Any + Send + 'static>),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Panicked(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()))
                    .unwrap_or("<non-string payload>");
                write!(f, "fiber panicked: {msg}")
            }
        }
    }
}

impl std::error::Error for JoinError {}

/// Something a fiber (or a blocking-pool thread) runs once.
pub(crate) trait Runnable: Send + Sync {
    /// Runs the closure and stores its result (a panic is caught and stored). Never unwinds.
    /// Called at most once.
    fn run_body(&self);
    /// Publishes the stored result and wakes joiners. Called once, after `run_body`; the caller
    /// may do cleanup in between (a fiber drops its fiber-locals there, so joiners see them gone).
    fn publish(&self);
}

/// The joiner's view of a [`Packet`], independent of the closure type.
pub(crate) trait JoinTarget<T>: Send + Sync {
    fn butex(&self) -> &Butex;
    /// Takes the result.
    ///
    /// # Safety
    /// Only after the butex word was seen `DONE` with `Acquire`, and only once.
    unsafe fn take_result(&self) -> std::thread::Result<T>;
}

/// Closure, result and completion butex of one spawned function.
pub(crate) struct Packet<F, T> {
    butex: Butex,
    f: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
}

// SAFETY: `f` is touched only by the single `run` call; `result` is written by `run` before the
// Release store of DONE and read by the unique joiner after an Acquire load of DONE.
unsafe impl<F: Send, T: Send> Sync for Packet<F, T> {}

impl<F, T> Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(f: F) -> Arc<Self> {
        Arc::new(Packet {
            butex: Butex::new(RUNNING),
            f: UnsafeCell::new(Some(f)),
            result: UnsafeCell::new(None),
        })
    }
}

impl<F, T> Runnable for Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run_body(&self) {
        // SAFETY: run_body is called once, by the one fiber (or pool thread) that owns the task.
        let f = unsafe { (*self.f.get()).take() };
        let Some(f) = f else { return };
        let r = catch_unwind(AssertUnwindSafe(f));
        // SAFETY: nobody reads `result` before DONE is published by `publish`.
        unsafe { *self.result.get() = Some(r) };
    }

    fn publish(&self) {
        self.butex.value().store(DONE, Ordering::Release);
        self.butex.wake_all();
    }
}

impl<F, T> JoinTarget<T> for Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn butex(&self) -> &Butex {
        &self.butex
    }

    unsafe fn take_result(&self) -> std::thread::Result<T> {
        (*self.result.get())
            .take()
            .expect("fiber result taken twice")
    }
}

/// Owned permission to join a fiber. Dropping it detaches the fiber (it keeps running).
pub struct JoinHandle<T> {
    packet: Arc<dyn JoinTarget<T>>,
    id: TaskId,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(packet: Arc<dyn JoinTarget<T>>, id: TaskId) -> Self {
        JoinHandle { packet, id }
    }

    /// Waits for the fiber to finish. From a fiber this parks only the fiber (on a butex); from a
    /// plain thread it blocks the thread. A panic in the fiber is returned as
    /// [`JoinError::Panicked`] carrying the panic payload.
    pub fn join(self) -> Result<T, JoinError> {
        let b = self.packet.butex();
        while b.value().load(Ordering::Acquire) == RUNNING {
            let _ = b.wait(RUNNING, None);
        }
        // SAFETY: DONE was observed with Acquire above, and `self` is consumed: at most once.
        unsafe { self.packet.take_result() }.map_err(JoinError::Panicked)
    }

    /// Whether the fiber has finished (then `join` returns without waiting).
    pub fn is_finished(&self) -> bool {
        self.packet.butex().value().load(Ordering::Acquire) == DONE
    }

    /// The id of the fiber.
    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish()
    }
}
