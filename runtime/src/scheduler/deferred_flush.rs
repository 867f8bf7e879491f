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
//! Arming races: a worker publishes its due time, then arms the watchdog unless it is armed; the
//! watchdog, when it finds nothing outstanding, disarms and then looks once more. Both use
//! `SeqCst`, so either the watchdog's second look sees the due time or the worker sees the
//! watchdog disarmed and arms it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::task_control::TaskControl;

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
    if control.watchdog_armed.load(Ordering::SeqCst)
        || control.watchdog_armed.swap(true, Ordering::SeqCst)
    {
        return;
    }
    schedule(control);
}

fn schedule(control: &'static TaskControl) {
    drop(crate::timer_thread::schedule(
        Instant::now() + WATCHDOG_PERIOD,
        move || watchdog(control),
    ));
}

/// Runs on the timer thread: pays overdue deferrals of stuck workers, re-arms while any remain.
fn watchdog(control: &'static TaskControl) {
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
    control.watchdog_armed.store(false, Ordering::SeqCst);
    let published_meanwhile = control
        .workers
        .iter()
        .any(|w| w.deferred_due.load(Ordering::SeqCst) != 0);
    if published_meanwhile && !control.watchdog_armed.swap(true, Ordering::SeqCst) {
        schedule(control);
    }
}
