//! The timer thread: runs callbacks at deadlines (sleeps, timed butex waits, RPC timeouts).
//!
//! Design (brpc's `TimerThread`):
//! - [`schedule`] appends the task to one of several hashed buckets (a bucket per group of
//!   calling threads), so many threads scheduling at once rarely share a lock. It takes the one
//!   global lock only when the new deadline is earlier than the earliest one the timer thread
//!   sleeps towards (`nearest`), and then bumps a futex word to wake it. Before a full bucket
//!   grows, the scheduler sweeps the tasks cancelled in it meanwhile (the timer thread may not
//!   pull it for a whole timeout), so cancelled timers do not pile up there.
//! - Each bucket knows the earliest deadline it holds (never later than the true one: a task
//!   cancelled since may have set it). The timer thread, each round: resets `nearest` to
//!   "never", pulls into its private heap only the buckets whose earliest deadline is due (the
//!   others stay where they are), runs what is due, then under the global lock re-checks that
//!   nobody scheduled something earlier than its next deadline (the heap's first or a bucket's
//!   earliest) meanwhile (if so it goes round again), publishes that deadline as `nearest`,
//!   remembers the futex word and sleeps on it until that deadline. A schedule that lands after
//!   the scan either sees `nearest` = "never" or the published deadline; if earlier, it bumps
//!   the word, so the sleep is cut short: no timeout is ever slept through.
//! - Pulling lazily matters for RPC deadlines: nearly all of them are cancelled (the answer came
//!   in time) long before they are due, and a bucket that is not due is not looked at when the
//!   thread wakes for something else (a sleep, the deferred-flush watchdog every millisecond).
//!   Such timers are dropped by the sweep of a full bucket (above) or when their bucket comes due,
//!   without ever entering the heap.
//! - Each task has a state: PENDING → RUNNING → DONE, or PENDING → CANCELLED. The state machine
//!   makes a callback run at most once, and [`unschedule`] cancel it only if it has not started.
//!   If it is running, `unschedule` waits until it returns (unless called from the callback
//!   itself), so after `unschedule` returns the callback no longer touches anything: this is
//!   what lets a timed butex waiter return and free its stack.
//!
//! Callbacks run on the timer thread, one at a time: keep them short (wake something, set a
//! flag). A panicking callback is caught and reported, and the timer thread carries on.
//!
//! The timer thread starts on first use, and starts the runtime with it (its bucket count comes
//! from the runtime's [`crate::Config`]): call [`crate::init`] first if you configure the runtime.

use std::cell::{Cell, UnsafeCell};
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::scheduler::futex::Futex;

const PENDING: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;

/// One scheduled callback, in one allocation with its state (`S` is the callback's
/// [`CallbackSlot`]; handles see it as `dyn CallbackSlot`).
struct TimerTask<S: ?Sized = dyn CallbackSlot> {
    /// When to run.
    deadline: Instant,
    /// `deadline` as nanoseconds since the timer thread's `base`.
    ns: u64,
    /// PENDING / RUNNING / DONE / CANCELLED.
    state: AtomicU8,
    /// Set by the timer thread when it moves the task into its heap: only a cancelled task
    /// that is there counts towards the heap's purge ([`TimerThread::cancelled`]).
    in_heap: AtomicBool,
    /// The callback, taken by whoever wins the transition out of PENDING.
    slot: S,
}

/// Where a task keeps its callback until it runs or is cancelled.
trait CallbackSlot: Send + Sync {
    /// Takes the callback out and runs it, catching a panic; returns whether it panicked.
    ///
    /// # Safety
    /// Only the single winner of the CAS out of PENDING may call it.
    unsafe fn take_and_run(&self) -> bool;

    /// Takes the callback out and drops it.
    ///
    /// # Safety
    /// As for `take_and_run`.
    unsafe fn take_and_drop(&self);
}

/// The callback of a task, stored inline.
struct Slot<F>(UnsafeCell<Option<F>>);

// SAFETY: the callback is touched only by the single winner of the CAS out of PENDING (the
// methods' contract), and it is `Send`, so that winner may be any thread.
unsafe impl<F: Send> Sync for Slot<F> {}

impl<F: FnOnce() + Send> CallbackSlot for Slot<F> {
    unsafe fn take_and_run(&self) -> bool {
        // SAFETY: the caller won the transition out of PENDING: the callback is ours alone.
        match unsafe { (*self.0.get()).take() } {
            Some(cb) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(cb)).is_err(),
            None => false,
        }
    }

    unsafe fn take_and_drop(&self) {
        // SAFETY: as above.
        drop(unsafe { (*self.0.get()).take() });
    }
}

/// Handle of a scheduled callback, for [`unschedule`]. Cheap to clone.
#[derive(Clone)]
pub struct TimerId(Arc<TimerTask>);

impl std::fmt::Debug for TimerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerId")
            .field("deadline", &self.0.deadline)
            .finish()
    }
}

/// Heap entry ordered by deadline, earliest first.
struct Entry(Arc<TimerTask>);

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.0.deadline == o.0.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        o.0.deadline.cmp(&self.0.deadline)
    }
}

/// The timer thread's shared state.
struct TimerThread {
    /// Newly scheduled tasks, hashed by scheduling thread.
    buckets: Box<[Mutex<Bucket>]>,
    /// Earliest deadline the thread sleeps towards, as nanoseconds since `base` (u64::MAX:
    /// never). Written under `wake_lock`; read without it as a hint.
    nearest: AtomicU64,
    /// Serialises changes of `nearest` with the thread's decision to sleep.
    wake_lock: Mutex<()>,
    /// Bumped to cut the thread's sleep short.
    nsignals: Futex,
    /// Origin of the nanosecond clock.
    base: Instant,
    /// Tasks cancelled in the heap since the last purge (they linger there until their
    /// deadline). Tasks cancelled while still in a bucket are not counted: that is nearly every
    /// RPC deadline, and counting them would purge a large heap every round (and make every
    /// `unschedule` write this shared word).
    cancelled: AtomicUsize,
}

/// Tasks scheduled from a group of threads and not yet pulled by the timer thread.
struct Bucket {
    tasks: Vec<Arc<TimerTask>>,
    /// No later than the earliest deadline in `tasks`, as nanoseconds since `base` (u64::MAX
    /// when empty). It may be earlier: a task cancelled after it set it.
    earliest: u64,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        tasks: Vec::new(),
        earliest: u64::MAX,
    };
}

/// The heap is purged of cancelled tasks when it holds more than this many entries and at least
/// half of them are cancelled: cancelled long timeouts (a wait woken early, an RPC answered in
/// time) would otherwise pile up until their deadlines.
const PURGE_MIN_HEAP: usize = 4096;

/// Smallest bucket [`schedule`] sweeps of cancelled tasks before growing it.
const SWEEP_MIN: usize = 64;

static TIMER: OnceLock<&'static TimerThread> = OnceLock::new();
static NEXT_BUCKET: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's bucket (usize::MAX until first use).
    static TLS_BUCKET: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Whether this thread is the timer thread.
    static TLS_IS_TIMER: Cell<bool> = const { Cell::new(false) };
}

#[inline(never)]
fn my_bucket(n: usize) -> usize {
    compiler_fence(Ordering::SeqCst);
    let b = TLS_BUCKET.with(|c| {
        if c.get() == usize::MAX {
            c.set(NEXT_BUCKET.fetch_add(1, Ordering::Relaxed));
        }
        c.get()
    });
    compiler_fence(Ordering::SeqCst);
    b % n
}

#[inline(never)]
fn on_timer_thread() -> bool {
    compiler_fence(Ordering::SeqCst);
    let r = TLS_IS_TIMER.with(Cell::get);
    compiler_fence(Ordering::SeqCst);
    r
}

fn timer() -> &'static TimerThread {
    TIMER.get_or_init(|| {
        let n = crate::scheduler::config().timer_buckets;
        let t: &'static TimerThread = Box::leak(Box::new(TimerThread {
            buckets: (0..n).map(|_| Mutex::new(Bucket::EMPTY)).collect(),
            nearest: AtomicU64::new(u64::MAX),
            wake_lock: Mutex::new(()),
            nsignals: Futex::new(0),
            base: Instant::now(),
            cancelled: AtomicUsize::new(0),
        }));
        std::thread::Builder::new()
            .name("spindle-timer".into())
            .spawn(move || t.run())
            .expect("spindle: cannot start the timer thread");
        t
    })
}

/// Runs `f` on the timer thread at (or soon after) `deadline`; a deadline in the past runs it as
/// soon as possible. Returns a handle for [`unschedule`]. Never runs `f` more than once.
pub fn schedule<F>(deadline: Instant, f: F) -> TimerId
where
    F: FnOnce() + Send + 'static,
{
    let t = timer();
    let task: Arc<TimerTask> = Arc::new(TimerTask {
        deadline,
        ns: t.ns(deadline),
        state: AtomicU8::new(PENDING),
        in_heap: AtomicBool::new(false),
        slot: Slot(UnsafeCell::new(Some(f))),
    });
    let ns = task.ns;
    let bucket = &t.buckets[my_bucket(t.buckets.len())];
    {
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        if b.tasks.len() == b.tasks.capacity() && b.tasks.len() >= SWEEP_MIN {
            // Full: drop the tasks cancelled since the timer thread last pulled this bucket
            // before growing it. The timer thread pulls a bucket only when it comes due, so
            // without this a bucket holds every timer scheduled meanwhile: with a 2 s RPC
            // timeout, two seconds of calls whose timers were cancelled long ago.
            let mut earliest = u64::MAX;
            b.tasks.retain(|t| {
                let keep = t.state.load(Ordering::Relaxed) == PENDING;
                if keep {
                    earliest = earliest.min(t.ns);
                }
                keep
            });
            b.earliest = earliest;
            // Mostly live timers (long sleeps): grow now, so the next sweep comes only after
            // as many more schedules as are live (each sweep stays amortised O(1)).
            let live = b.tasks.len();
            if live * 2 > b.tasks.capacity() {
                b.tasks.reserve(live);
            }
        }
        b.tasks.push(task.clone());
        b.earliest = b.earliest.min(ns);
    }
    if ns < t.nearest.load(Ordering::SeqCst) {
        let _g = t.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        if ns < t.nearest.load(Ordering::SeqCst) {
            t.nearest.store(ns, Ordering::SeqCst);
            t.nsignals.word.fetch_add(1, Ordering::SeqCst);
            // The timer thread itself (a callback scheduling, like the deferred-flush watchdog
            // re-arming) is not asleep: it sees the lowered `nearest` before it sleeps again.
            if !on_timer_thread() {
                t.nsignals.wake(1);
            }
        }
    }
    TimerId(task)
}

/// Cancels a scheduled callback. Returns true if it was cancelled before it started (it will
/// never run; it is dropped here). Returns false if it already ran, was already cancelled, or is
/// running now, in which case this waits until it has returned (except when called from the
/// callback itself). So after `unschedule` returns, the callback is not running.
pub fn unschedule(id: &TimerId) -> bool {
    let task = &id.0;
    match task
        .state
        .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            // SAFETY: we won the transition out of PENDING: the callback is ours alone.
            unsafe { task.slot.take_and_drop() };
            // A task moved into the heap just after this load is not counted: it is dropped
            // by the next purge all the same, or when its deadline comes.
            if task.in_heap.load(Ordering::Relaxed) {
                if let Some(t) = TIMER.get() {
                    t.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
            true
        }
        Err(RUNNING) => {
            if !on_timer_thread() {
                let mut spins = 0u32;
                while task.state.load(Ordering::Acquire) == RUNNING {
                    spins += 1;
                    if spins < 100 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
            false
        }
        Err(_) => false,
    }
}

impl TimerThread {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    fn run(&self) {
        TLS_IS_TIMER.with(|c| c.set(true));
        let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
        let mut spare: Vec<Arc<TimerTask>> = Vec::new();
        loop {
            {
                let _g = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
                self.nearest.store(u64::MAX, Ordering::SeqCst);
            }
            // The earliest deadline left in the buckets not pulled this round.
            let mut unpulled = u64::MAX;
            let now_ns = self.ns(Instant::now());
            for b in self.buckets.iter() {
                {
                    let mut g = b.lock().unwrap_or_else(|e| e.into_inner());
                    if g.earliest > now_ns {
                        unpulled = unpulled.min(g.earliest);
                        continue;
                    }
                    // Swap in the (empty) vector drained last time: a bucket keeps its
                    // capacity, so a busy scheduler does not regrow it, page by fresh page.
                    std::mem::swap(&mut g.tasks, &mut spare);
                    g.earliest = u64::MAX;
                }
                for t in spare.drain(..) {
                    if t.state.load(Ordering::Relaxed) == PENDING {
                        t.in_heap.store(true, Ordering::Relaxed);
                        heap.push(Entry(t));
                    }
                }
            }
            if heap.len() > PURGE_MIN_HEAP
                && self.cancelled.load(Ordering::Relaxed) * 2 > heap.len()
            {
                self.cancelled.store(0, Ordering::Relaxed);
                heap.retain(|e| e.0.state.load(Ordering::Relaxed) == PENDING);
            }
            let now = Instant::now();
            while heap.peek().is_some_and(|e| e.0.deadline <= now) {
                let Entry(t) = heap.pop().expect("peeked");
                Self::fire(&t);
            }
            let next_ns = heap.peek().map_or(u64::MAX, |e| e.0.ns).min(unpulled);
            let expected;
            {
                let _g = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
                if next_ns > self.nearest.load(Ordering::SeqCst) {
                    continue; // something earlier was scheduled meanwhile
                }
                self.nearest.store(next_ns, Ordering::SeqCst);
                expected = self.nsignals.word.load(Ordering::SeqCst);
            }
            let timeout = (next_ns != u64::MAX)
                .then(|| Duration::from_nanos(next_ns.saturating_sub(self.ns(Instant::now()))));
            if timeout != Some(Duration::ZERO) {
                self.nsignals.wait(expected, timeout);
            }
        }
    }

    fn fire(t: &TimerTask) {
        if t.state
            .compare_exchange(PENDING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: we won the transition out of PENDING: the callback is ours alone.
            if unsafe { t.slot.take_and_run() } {
                eprintln!("spindle: a timer callback panicked (ignored)");
            }
            t.state.store(DONE, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    /// The tests below count or fill the process-wide buckets: one at a time.
    static BUCKET_TESTS: Mutex<()> = Mutex::new(());

    /// Timers cancelled before the timer thread pulls their bucket do not pile up there: a
    /// full bucket is swept before it grows. Far-future deadlines never wake the timer thread,
    /// so only the sweep can keep the bucket short.
    #[test]
    fn cancelled_timers_do_not_pile_up_in_a_bucket() {
        let _serial = BUCKET_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        const N: usize = 20_000;
        let far = Instant::now() + Duration::from_secs(3600);
        // The timer thread may pull the bucket once when the first far deadline becomes its
        // nearest; the loop still leaves at most one full bucket of cancelled tasks.
        for _ in 0..N {
            let id = schedule(far, || {});
            assert!(unschedule(&id));
        }
        let t = timer();
        let queued: usize = t
            .buckets
            .iter()
            .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).tasks.len())
            .sum();
        assert!(
            queued < N / 4,
            "{queued} cancelled timers still queued after {N} schedule/unschedule pairs"
        );
    }

    /// Schedules a timer `after` from now on this thread and waits (at most 10 s) until it ran.
    fn schedule_and_wait(after: Duration) {
        let fired = Arc::new(AtomicU8::new(0));
        let f = fired.clone();
        let started = Instant::now();
        schedule(started + after, move || f.store(1, Ordering::Release));
        while fired.load(Ordering::Acquire) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a {after:?} timer did not fire within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Only tasks cancelled in the heap count towards its purge: deadlines cancelled while still
    /// in their bucket (nearly every RPC's) leave the count alone, or a large heap of live
    /// timers would be purged every round.
    #[test]
    fn only_cancellations_in_the_heap_count_towards_the_purge() {
        let _serial = BUCKET_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let t = timer();
        let far = Instant::now() + Duration::from_secs(3600);
        let count = || t.cancelled.load(Ordering::Relaxed);
        let before = count();
        for _ in 0..1000 {
            let id = schedule(far, || {});
            assert!(unschedule(&id));
        }
        let in_bucket = count().wrapping_sub(before);
        // A near timer from this thread makes its bucket due: the timer thread moves the far
        // ones scheduled before it into the heap.
        let ids: Vec<TimerId> = (0..100).map(|_| schedule(far, || {})).collect();
        schedule_and_wait(Duration::from_millis(5));
        assert!(ids.iter().all(|id| id.0.in_heap.load(Ordering::Relaxed)));
        let before = count();
        for id in &ids {
            assert!(unschedule(id));
        }
        let in_heap = count().wrapping_sub(before);
        assert!(
            in_bucket < 10,
            "{in_bucket} of 1000 bucket-only cancellations counted"
        );
        assert_eq!(in_heap, 100, "cancellations in the heap not counted");
    }

    /// Buckets are pulled only when due: a near timer fires on time while a thousand far
    /// ones (scheduled from another thread, so in another bucket, and from this one) wait in
    /// their buckets, and every far one is still pending afterwards.
    #[test]
    fn near_timer_fires_while_far_ones_wait_in_buckets() {
        let _serial = BUCKET_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        const FAR: usize = 500;
        let far = Instant::now() + Duration::from_secs(3600);
        let mut far_ids: Vec<TimerId> = (0..FAR).map(|_| schedule(far, || {})).collect();
        far_ids.extend(
            std::thread::spawn(move || (0..FAR).map(|_| schedule(far, || {})).collect::<Vec<_>>())
                .join()
                .expect("scheduling thread"),
        );
        schedule_and_wait(Duration::from_millis(20));
        for id in &far_ids {
            assert!(unschedule(id), "a far timer ran or was lost");
        }
    }
}
