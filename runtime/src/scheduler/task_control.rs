//! All workers of the runtime (brpc's `TaskControl`): their shared halves (stealer, remote queue,
//! counters), the tags that partition them, and the parking lots of each tag.
//!
//! Invariants:
//! - Workers `tags[t].first .. tags[t].first + tags[t].count` belong to tag `t`; a fiber of tag
//!   `t` only ever runs on them (spawns, wake-ups and steals never cross tags).
//! - A task is handed to another worker only by pushing it into a queue *and then* signalling a
//!   parking lot of the task's tag (see `parking_lot.rs`), so no idle worker sleeps beside it.
//! - The `TaskControl` is leaked at start and lives for the rest of the process; workers never
//!   exit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_deque::{Stealer, Worker};

use super::parking_lot::ParkingLot;
use super::remote_task_queue::RemoteTaskQueue;
use super::stats::{Stats, WorkerStats};
use super::task_group;
use crate::config::Config;
use crate::fiber::stack_pool::{SharedStackPool, StackSpec};
use crate::fiber::task::TaskRef;

/// The part of a worker other threads see.
pub(crate) struct WorkerShared {
    /// Steals from the top (oldest end) of the worker's deque.
    pub(crate) stealer: Stealer<TaskRef>,
    /// Steals from the front of the worker's yield queue.
    pub(crate) yield_stealer: Stealer<TaskRef>,
    /// Tasks handed to this worker by threads that are not workers of its tag.
    pub(crate) remote: RemoteTaskQueue<TaskRef>,
    /// The worker's counters.
    pub(crate) stats: WorkerStats,
    /// Index of the lot (within its tag) the worker parks on.
    pub(crate) lot: usize,
    /// The tag the worker serves.
    pub(crate) tag: usize,
    /// When the worker's deferred flush falls due ([`TaskControl::clock_ns`]; 0: none), for
    /// the watchdog of `deferred_flush.rs`.
    pub(crate) deferred_due: AtomicU64,
}

/// One tag: a contiguous range of workers and their parking lots.
pub(crate) struct TagControl {
    /// Global index of the tag's first worker.
    pub(crate) first: usize,
    /// Number of workers of the tag.
    pub(crate) count: usize,
    /// Where the tag's idle workers sleep.
    pub(crate) lots: Box<[ParkingLot]>,
    /// Spawns made without a signal, not flushed yet.
    pub(crate) pending_signals: AtomicUsize,
}

/// Most idle workers one signal wakes (brpc caps `signal_task` at 2 as well). A burst of
/// queued fibers does not wake every sleeping worker at once: the ones woken steal, and the
/// queue's owner runs the rest; waking more mostly buys futex calls and context switches
/// for workers that find nothing left to steal.
const MAX_SIGNALLED: usize = 2;

/// The runtime: every worker, every tag.
pub(crate) struct TaskControl {
    /// The configuration the runtime started with.
    pub(crate) config: Config,
    /// Stack sizes and pool caps.
    pub(crate) stack_spec: StackSpec,
    /// Stacks that overflowed a worker's pool.
    pub(crate) shared_stacks: SharedStackPool,
    /// All workers, by global index.
    pub(crate) workers: Box<[WorkerShared]>,
    /// The tags.
    pub(crate) tags: Box<[TagControl]>,
    /// Fibers created by threads that are not workers.
    pub(crate) external_created: AtomicU64,
    /// Next block of task ids to hand out.
    pub(crate) next_id: AtomicU64,
    /// Origin of [`TaskControl::clock_ns`].
    pub(crate) epoch: Instant,
    /// Whether the deferred-flush watchdog is scheduled (`deferred_flush.rs`).
    pub(crate) watchdog: super::deferred_flush::Arming,
}

/// Task ids a worker takes from the global counter at a time.
pub(crate) const ID_BLOCK: u64 = 1024;

impl TaskControl {
    /// Starts the workers described by `config` (already validated) and returns the runtime.
    pub(crate) fn start(config: Config) -> &'static TaskControl {
        crate::fiber::overflow::install_handler();
        let per_tag = config.workers_per_tag();
        let ntags = config.task_group_ntags;
        let nlots = config.parking_lot_num.min(per_tag).max(1);
        let mut deques = Vec::new();
        let mut workers = Vec::new();
        let mut tags = Vec::new();
        for t in 0..ntags {
            tags.push(TagControl {
                first: t * per_tag,
                count: per_tag,
                lots: (0..nlots).map(|_| ParkingLot::new()).collect(),
                pending_signals: AtomicUsize::new(0),
            });
            for i in 0..per_tag {
                // The owner pops the newest task, thieves take the oldest (brpc's shape; see
                // the run-queue section of task_group.rs).
                let deque = Worker::new_lifo();
                let yielded = Worker::new_fifo();
                workers.push(WorkerShared {
                    stealer: deque.stealer(),
                    yield_stealer: yielded.stealer(),
                    remote: RemoteTaskQueue::new(),
                    stats: WorkerStats::default(),
                    lot: i % nlots,
                    tag: t,
                    deferred_due: AtomicU64::new(0),
                });
                deques.push((t, deque, yielded));
            }
        }
        let control: &'static TaskControl = Box::leak(Box::new(TaskControl {
            stack_spec: StackSpec::from_config(&config),
            config,
            shared_stacks: SharedStackPool::new(),
            workers: workers.into_boxed_slice(),
            tags: tags.into_boxed_slice(),
            external_created: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
            watchdog: super::deferred_flush::Arming::new(),
        }));
        for (index, (tag, deque, yielded)) in deques.into_iter().enumerate() {
            std::thread::Builder::new()
                .name(format!("spindle-worker-{tag}-{index}"))
                .spawn(move || task_group::worker_main(control, index, tag, deque, yielded))
                .expect("spindle: cannot start a worker thread");
        }
        control
    }

    /// Wakes up to `n` idle workers of `tag` (at most [`MAX_SIGNALLED`]), starting with lot
    /// `hint` and moving on to the next lots while nobody was woken, so that work never waits
    /// for a busy worker while another one sleeps on a different lot. Call after publishing the
    /// work.
    pub(crate) fn signal_task(&self, tag: usize, n: usize, hint: usize) {
        let t = &self.tags[tag];
        let mut left = n.min(t.count).min(MAX_SIGNALLED);
        let nlots = t.lots.len();
        for i in 0..nlots {
            if left == 0 {
                break;
            }
            let woken = t.lots[(hint + i) % nlots].signal(left as u32);
            left = left.saturating_sub(woken);
        }
    }

    /// Hands `task` to a random worker of `tag` through its remote queue, signalling (or, if
    /// `signal` is false, counting a pending signal for [`crate::flush`]).
    pub(crate) fn push_remote(&self, tag: usize, task: TaskRef, signal: bool) {
        let t = &self.tags[tag];
        let w = t.first + (task_group::fast_rand() as usize % t.count);
        self.workers[w].remote.push(task);
        if signal {
            self.signal_task(tag, 1, self.workers[w].lot);
        } else {
            t.pending_signals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Pays the signals owed by no-signal spawns, in every tag.
    pub(crate) fn flush_pending(&self) {
        for (i, t) in self.tags.iter().enumerate() {
            if t.pending_signals.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let n = t.pending_signals.swap(0, Ordering::Relaxed);
            if n > 0 {
                self.signal_task(i, n, task_group::fast_rand() as usize);
            }
        }
    }

    /// `t` as nanoseconds since the runtime started (0 for instants before it).
    pub(crate) fn clock_ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A fresh id for a task spawned outside any worker.
    pub(crate) fn next_external_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sums the counters.
    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats {
            workers: self.workers.len(),
            ..Stats::default()
        };
        let mut finished = 0;
        s.fibers_created = self.external_created.load(Ordering::Relaxed);
        for w in self.workers.iter() {
            s.fibers_created += w.stats.created.load(Ordering::Relaxed);
            finished += w.stats.finished.load(Ordering::Relaxed);
            s.context_switches += w.stats.switches.load(Ordering::Relaxed);
            s.steals += w.stats.steals.load(Ordering::Relaxed);
            s.parks += w.stats.parks.load(Ordering::Relaxed);
        }
        s.fibers_alive = s.fibers_created.saturating_sub(finished);
        s
    }
}
