//! Deferred flushes ([`flush_deferred`](super::builder::flush_deferred)): the signals owed by a
//! batch of no-signal spawns are paid only if the batch is still queued after a delay.
//!
//! Two parties pay an overdue deferral:
//! - **The worker that deferred it**, each time it picks its next fiber (`TaskGroup::find_task`):
//!   an empty deque forgets the deferral (the batch ran here, or awake workers stole it); a
//!   deque still holding fibers past the due time pays the signals. This is the common case,
//!   and it costs no system call.
//! - **The watchdog**, for a worker that does not get there: one that runs a long fiber, or
//!   whose fiber blocks its thread (a system call, a `std` lock). Each worker publishes its
//!   earliest due time in [`WorkerShared::deferred_due`]; while any is set, a timer on the
//!   timer thread runs every [`WATCHDOG_PERIOD`] and, for each worker overdue with fibers still
//!   in its deque, signals one sleeping worker, which steals from that deque. So a deferred
//!   batch never waits for good: at most its delay plus one period when its worker is stuck.
//!   The watchdog stops re-arming once no deferral is outstanding.
//!
//! Arming races ([`Arming`]): a worker publishes its due time, then counts the publication and
//! arms the watchdog in one read-modify-write, scheduling it if it was not armed. A watchdog run
//! snapshots that word before it looks at the due times, and disarms only if the word is still
//! the snapshot. So a due time published during a run either is seen by the run, or makes its
//! disarming fail (the run schedules the next one), or finds the watchdog disarmed (the worker
//! schedules it). Checked by the loom model `loom_deferred_flush_publish_races_disarm`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::task_control::TaskControl;
use crate::loom::atomic::{AtomicU64, Ordering as ModelledOrdering};

/// How often the watchdog looks while deferrals are outstanding.
pub(crate) const WATCHDOG_PERIOD: Duration = Duration::from_millis(1);

/// Publishes `due` as worker `index`'s earliest deferral and makes sure the watchdog runs.
pub(crate) fn publish(control: &'static TaskControl, index: usize, due: Instant) {
    let ns = control.clock_ns(due).max(1);
    control.workers[index]
        .deferred_due
        .store(ns, Ordering::SeqCst);
    arm(control);
}

/// Withdraws worker `index`'s deferral (paid, or its batch is gone).
pub(crate) fn withdraw(control: &TaskControl, index: usize) {
    control.workers[index]
        .deferred_due
        .store(0, Ordering::Relaxed);
}

fn arm(control: &'static TaskControl) {
    if control.watchdog.claim() {
        schedule(control);
    }
}

/// Whether the watchdog is scheduled: the arming protocol of the module doc, alone so that loom
/// can check it (`loom_deferred_flush_*`). One word: bit 0 says armed, the rest counts
/// publications. Every change is a read-modify-write of that word, so publishers and the
/// watchdog are totally ordered without any `SeqCst` reasoning (which loom cannot check).
pub(crate) struct Arming {
    state: AtomicU64,
}

/// Bit 0 of [`Arming::state`].
const ARMED: u64 = 1;
/// One publication, in [`Arming::state`]'s units.
const PUBLISHED: u64 = 2;

impl Arming {
    pub(crate) fn new() -> Arming {
        Arming {
            state: AtomicU64::new(0),
        }
    }

    /// Called after publishing a due time (with a release store): counts the publication and
    /// arms. True if the caller must schedule the watchdog (this call armed it).
    pub(crate) fn claim(&self) -> bool {
        let prev = self
            .state
            .fetch_update(ModelledOrdering::AcqRel, ModelledOrdering::Acquire, |s| {
                Some(s.wrapping_add(PUBLISHED) | ARMED)
            })
            .unwrap_or_else(|s| s);
        prev & ARMED == 0
    }

    /// Starts a watchdog run: a snapshot to give [`Arming::disarm`]. Taken before the run
    /// looks at the due times, so it sees every due time published before the snapshot.
    pub(crate) fn begin_run(&self) -> u64 {
        self.state.load(ModelledOrdering::Acquire)
    }

    /// Called by a watchdog run that found nothing outstanding: disarms unless something was
    /// published since `snapshot`. True if the watchdog must run again.
    pub(crate) fn disarm(&self, snapshot: u64) -> bool {
        self.state
            .compare_exchange(
                snapshot,
                snapshot & !ARMED,
                ModelledOrdering::AcqRel,
                ModelledOrdering::Acquire,
            )
            .is_err()
    }
}

fn schedule(control: &'static TaskControl) {
    drop(crate::timer_thread::schedule(
        Instant::now() + WATCHDOG_PERIOD,
        move || watchdog(control),
    ));
}

/// Runs on the timer thread: pays overdue deferrals of stuck workers, re-arms while any remain.
fn watchdog(control: &'static TaskControl) {
    let snapshot = control.watchdog.begin_run();
    let now = control.clock_ns(Instant::now());
    let mut outstanding = false;
    for w in control.workers.iter() {
        let due = w.deferred_due.load(Ordering::SeqCst);
        if due == 0 {
            continue;
        }
        if due > now {
            outstanding = true;
            continue;
        }
        // Overdue: the worker has not looked since. Whoever clears the due time pays.
        if w.deferred_due
            .compare_exchange(due, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && !w.stealer.is_empty()
        {
            control.signal_task(w.tag, 1, w.lot);
        }
    }
    if outstanding {
        schedule(control);
        return;
    }
    if control.watchdog.disarm(snapshot) {
        schedule(control);
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::Arming;
    use crate::loom::atomic::{AtomicU64, AtomicUsize, Ordering};
    use crate::loom::{thread, Arc};

    /// A worker publishes a due time while a watchdog run, which saw nothing outstanding, is
    /// disarming: exactly one of them schedules the next run, so the due time is never left
    /// without a watchdog (and no second chain of runs starts).
    #[test]
    fn loom_deferred_flush_publish_races_disarm() {
        loom::model(|| {
            let arming = Arc::new(Arming::new());
            assert!(arming.claim(), "the first claim arms");
            let due = Arc::new(AtomicU64::new(0));
            let scheduled = Arc::new(AtomicUsize::new(0));
            let (a2, d2, s2) = (arming.clone(), due.clone(), scheduled.clone());
            let worker = thread::spawn(move || {
                d2.store(7, Ordering::Release);
                if a2.claim() {
                    s2.fetch_add(1, Ordering::Relaxed);
                }
            });
            // The watchdog run: snapshot, scan, then disarming if nothing was outstanding.
            let snapshot = arming.begin_run();
            if due.load(Ordering::Acquire) != 0 || arming.disarm(snapshot) {
                scheduled.fetch_add(1, Ordering::Relaxed);
            }
            worker.join().unwrap();
            assert_eq!(scheduled.load(Ordering::Relaxed), 1);
        });
    }
}
