//! Idle hooks: letting an I/O layer put idle workers to sleep in its poller.
//!
//! A worker with nothing to run normally sleeps on its parking lot's futex. An I/O layer (the
//! RPC stack's event dispatchers) can register an [`IdleHook`] so that an idle worker of tag 0
//! sleeps in the layer's poller (`epoll_wait`) instead. When I/O becomes ready, the worker that
//! wakes is the one that runs the reader fiber: no hand-off from a poller thread to a worker,
//! one thread wake-up per event instead of two. This is tokio's "the parked worker drives the
//! reactor" and brpc's "the epoll bthread runs the reader with `spawn_urgent`", without
//! pinning a worker in `epoll_wait` (seed 004): only a worker that is idle anyway polls.
//!
//! # Wake-ups cannot be lost
//!
//! A hook-parked worker is counted as a sleeper of its lot, like a futex sleeper, so a
//! producer's [`ParkingLot::signal`](super::parking_lot::ParkingLot::signal) sees it. When the
//! futex wake woke fewer workers than wanted, the signal calls [`IdleHook::unpark`], which
//! interrupts every worker blocked in the hook's poller. The remaining race (the worker is
//! between registering and blocking) is closed by the `still_idle` check the hook runs after
//! it made itself visible to `unpark` and before it blocks: both sides write their own
//! location and then read the other's, with a `SeqCst` fence in between, so at least one of
//! them sees the other.
//!
//! Busy workers call [`IdleHook::poll_now`] every few dozen fibers (tokio's `event_interval`),
//! so ready I/O is not left waiting while every worker is busy and none is parked.

use std::sync::OnceLock;

/// An I/O poller idle workers may sleep in. See the module doc for the protocol.
///
/// Implementations must be cheap when they have nothing to do: `poll_now` runs on busy workers
/// every few dozen fibers.
pub trait IdleHook: Send + Sync + 'static {
    /// Called by an idle worker instead of sleeping on its futex. Returns `false` at once if
    /// the hook cannot take this worker (another worker already polls); the worker then sleeps
    /// on its futex as usual. Otherwise the hook makes the worker visible to [`unpark`]
    /// (e.g. takes its poller's ownership), calls `still_idle`, and blocks only if that returned
    /// `true`, until I/O is ready or `unpark` is called, and returns `true`. The ready I/O is
    /// best handled in [`after_park`](IdleHook::after_park), which the worker calls next.
    ///
    /// [`unpark`]: IdleHook::unpark
    fn park(&self, still_idle: &dyn Fn() -> bool) -> bool;

    /// Called by the worker right after a [`park`](IdleHook::park) that returned `true`, once
    /// the worker no longer counts as a sleeper of its lot: the place to handle the I/O the
    /// park saw (typically by spawning fibers, which land on this worker). Fibers spawned
    /// inside `park` would signal the parked worker itself as a sleeper, a wasted futex wake
    /// and poller interrupt per spawn. The default does nothing.
    fn after_park(&self) {}

    /// Interrupts the workers blocked in [`park`](IdleHook::park); returns how many were
    /// interrupted (an upper bound is fine). Called from any thread, including non-workers.
    fn unpark(&self) -> usize;

    /// Called by a busy worker between fibers: handles ready I/O without blocking, if no other
    /// thread is polling.
    fn poll_now(&self);
}

static HOOK: OnceLock<&'static dyn IdleHook> = OnceLock::new();

/// Registers the process's idle hook (once; later calls return `false` and change nothing).
/// Workers of tag 0 use it from their next idle moment on.
pub fn set_idle_hook(hook: &'static dyn IdleHook) -> bool {
    HOOK.set(hook).is_ok()
}

/// The registered hook, if any.
#[inline]
pub(crate) fn hook() -> Option<&'static dyn IdleHook> {
    HOOK.get().copied()
}
