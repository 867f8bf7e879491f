//! Runtime statistics: cheap per-worker counters, summed when read.
//!
//! Each counter of a worker is written only by that worker (a relaxed load and store, no locked
//! instruction on the hot path) and read by anyone; a sum is therefore a slightly stale but never
//! torn view.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one worker; only the owning worker writes them.
#[derive(Default)]
pub(crate) struct WorkerStats {
    /// Fibers spawned by fibers running on this worker.
    pub(crate) created: AtomicU64,
    /// Fibers that finished on this worker.
    pub(crate) finished: AtomicU64,
    /// Switches into a fiber.
    pub(crate) switches: AtomicU64,
    /// Tasks taken from other workers' queues.
    pub(crate) steals: AtomicU64,
    /// Times the worker went to sleep on its parking lot.
    pub(crate) parks: AtomicU64,
}

/// Adds one to a counter that only the calling worker writes.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// A snapshot of the runtime's counters (see [`crate::stats`]). Counters are totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads over all tags (0 before the runtime starts).
    pub workers: usize,
    /// Fibers created and not finished yet (queued, running or parked).
    pub fibers_alive: u64,
    /// Fibers created.
    pub fibers_created: u64,
    /// Switches into fibers.
    pub context_switches: u64,
    /// Tasks a worker took from another worker's queues.
    pub steals: u64,
    /// Times a worker went to sleep for lack of work.
    pub parks: u64,
}
