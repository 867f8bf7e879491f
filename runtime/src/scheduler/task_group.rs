//! One worker (brpc's `TaskGroup`): its deque, its pools, and the loop that runs fibers.
//!
//! The worker loop is the *parent* of every coroutine it resumes (corosensei is asymmetric): a
//! fiber runs until it switches out with a [`Suspend`] request, and the loop carries the request
//! out after the switch, when the fiber's context is saved. That ordering is what makes parking
//! safe: a fiber is published to a wait list only by code that runs after it stopped running, so
//! nobody can resume it while it is still on its stack.
//!
//! Run queue, brpc's shape plus tokio's slot: a work-stealing deque that is LIFO for its owner
//! (pushed and popped at the bottom) and FIFO for thieves (they steal the oldest, from the top),
//! a one-task LIFO slot, and a FIFO yield queue.
//! - A spawned or woken fiber goes into the slot and runs next (warm caches: spawn+join and
//!   ping-pong never leave the core); the task it displaces goes to the bottom of the deque,
//!   where idle workers can steal it. The slot is not stealable, so an idle worker is signalled
//!   only when a task lands in the deque; and at most `LIFO_LIMIT` slot tasks run in a row before
//!   the deque gets a turn, so two fibers waking each other cannot starve the rest.
//! - Newest-first makes recursive fan-out (spawn children, join them) run depth-first: a worker
//!   keeps about one root-to-leaf path of started fibers (each holding a stack) plus their queued
//!   siblings, while thieves take the oldest, biggest subtrees. A FIFO owner expanded such a tree
//!   breadth-first, with one live stack per started node: thousands of stacks mapped, touched
//!   and unmapped per tree (the `fanout_tree` benchmark spent most of its time in the kernel).
//! - A yielding fiber goes to the yield queue, behind everything ready, not to the deque's
//!   bottom, where it would run again at once; yielders therefore take turns round-robin.
//!   Thieves steal from the yield queue's front too.
//! - The trade-off: newest-first is unfair to the oldest local tasks. So every
//!   `FAIR_CHECK_INTERVAL`-th look takes the *oldest* local task instead (alternately the yield
//!   queue's front and the deque's top): a fiber that keeps spawning delays what was queued
//!   before it by at most about `FAIR_CHECK_INTERVAL` looks per task ahead of it, never forever
//!   (idle workers, which steal the oldest first, usually take it sooner). The price is that
//!   each such pick opens one more subtree of a running fan-out, so its live fibers grow slowly
//!   with its length (a 2-million-node tree on 2 workers peaks at a few thousand live fibers,
//!   against about 80 without the check and about a million breadth-first).
//!
//! Where the loop looks for work, in order: LIFO slot, own deque (newest), own yield queue, own
//! remote queue, then the other workers of its tag (random start, prime stride; their deques'
//! oldest, their yield queues, then their remote queues), then it reads its parking lot's state,
//! looks once more everywhere, and parks only if that last look failed (see `parking_lot.rs`).
//! Every `REMOTE_CHECK_INTERVAL`-th look starts with the remote queue, so fibers handed over by
//! other threads (every timer wake-up among them) cannot be starved by a worker whose own queue
//! never runs dry; every `FAIR_CHECK_INTERVAL`-th look starts with the oldest local task.
//!
//! Thread-local hazard (DESIGN.md §2): a fiber can resume on another worker thread, and the
//! compiler may keep a thread-local's address across the switch. The runtime reads its
//! thread-locals only through the `#[inline(never)]` accessors below, fenced by compiler
//! barriers, and never keeps a reference obtained from them across a switch: code that switches
//! (`suspend`) re-reads the current group afterwards.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering};
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use crossbeam_deque::{Steal, Worker};

use super::stats::bump;
use super::task_control::{TaskControl, WorkerShared, ID_BLOCK};
use crate::fiber::overflow;
use crate::fiber::stack_pool::LocalStackPool;
use crate::fiber::task::{Suspend, TaskMeta, TaskRef};

thread_local! {
    /// The worker this thread runs, null on other threads.
    static TLS_GROUP: Cell<*const TaskGroup> = const { Cell::new(ptr::null()) };
    /// State of this thread's `fast_rand`.
    static TLS_RAND: Cell<u64> = const { Cell::new(0) };
}

/// The worker running on this thread, or null. Never cache the result across a switch.
#[inline(never)]
pub(crate) fn current_group() -> *const TaskGroup {
    compiler_fence(Ordering::SeqCst);
    let g = TLS_GROUP.with(Cell::get);
    compiler_fence(Ordering::SeqCst);
    g
}

/// A fast thread-local pseudo-random number (xorshift64*), for victim and queue selection.
#[inline(never)]
pub(crate) fn fast_rand() -> u64 {
    compiler_fence(Ordering::SeqCst);
    let r = TLS_RAND.with(|c| {
        let mut x = c.get();
        if x == 0 {
            // Seed from the address of the cell and the clock: distinct per thread.
            x = (c as *const Cell<u64> as u64)
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    compiler_fence(Ordering::SeqCst);
    r
}

/// Strides for victim selection: primes larger than any worker count, hence coprime with it, so
/// a walk `start + k * stride (mod n)` visits every worker once.
const STRIDES: [usize; 8] = [1031, 1033, 1039, 1049, 1051, 1061, 1063, 1069];

/// How often (in looks for work) a worker checks its remote queue before its own deque. A prime,
/// as in tokio's global-queue interval: small enough that remote work waits at most a few dozen
/// fibers, large enough that the lock-free local path dominates.
const REMOTE_CHECK_INTERVAL: u32 = 61;

/// How often (in looks for work) a worker takes its oldest local task instead of its newest.
/// A prime, so it rarely coincides with `REMOTE_CHECK_INTERVAL`. The bound on starvation (a
/// task `k` places from the oldest end runs within about `k * FAIR_CHECK_INTERVAL` looks, a
/// look being one fiber run: tens of microseconds to a few milliseconds per place) against the
/// depth-first shape of fan-out (each check opens one more subtree of a running tree). Measured
/// on a 2-million-node spawn+join tree, 2 workers: peak live fibers about 15,000 at 127, 2,300
/// at 1021, 80 without the check; time per node the same.
const FAIR_CHECK_INTERVAL: u32 = 1021;

/// Slot tasks run in a row before the deque gets a turn (tokio uses 3).
const LIFO_LIMIT: u32 = 4;

/// While a deferred flush is outstanding, the worker reads the clock to see whether it fell due
/// every this many looks for work.
const DEFERRED_CLOCK_EVERY: u32 = 8;

/// Task metas a worker keeps for reuse.
const META_POOL_CAP: usize = 1024;

/// One worker. Lives on its thread's stack for the life of the process; reached by fibers
/// through [`current_group`]. All fields are touched only by its own thread.
pub(crate) struct TaskGroup {
    /// The runtime.
    pub(crate) control: &'static TaskControl,
    /// Global worker index.
    pub(crate) index: usize,
    /// The tag this worker serves.
    pub(crate) tag: usize,
    /// Own run queue (LIFO for the owner): pushed and popped at the bottom here, stolen from
    /// the top (oldest first) by others.
    deque: Worker<TaskRef>,
    /// Fibers that yielded (FIFO): they run after what is ready; stealable from the front.
    yielded: Worker<TaskRef>,
    /// The task to run next (not stealable).
    lifo: Cell<Option<TaskRef>>,
    /// Slot tasks run in a row.
    lifo_streak: Cell<u32>,
    /// The fiber running now, null between fibers.
    current: Cell<*mut TaskMeta>,
    /// Free stacks.
    stacks: UnsafeCell<LocalStackPool>,
    /// Free task metas. Boxed on purpose: a `TaskRef` is the box's address, which must not
    /// move while the task lives.
    #[allow(clippy::vec_box)]
    metas: UnsafeCell<Vec<Box<TaskMeta>>>,
    /// Looks for work so far (drives the remote-queue fairness check).
    tick: Cell<u32>,
    /// Next task id of the current block, and its end.
    next_id: Cell<u64>,
    id_end: Cell<u64>,
    /// No-signal spawns made on this worker since its last deferred flush (its share of the
    /// tag's `pending_signals`).
    owed: Cell<usize>,
    /// Signals owed by deferred flushes on this worker (0: none), and when they fall due.
    deferred: Cell<usize>,
    deferred_due: Cell<Option<Instant>>,
    /// Looks for work while a deferral was outstanding (the clock is read every
    /// `DEFERRED_CLOCK_EVERY`-th).
    deferred_looks: Cell<u32>,
}

/// Entry of a worker thread.
pub(crate) fn worker_main(
    control: &'static TaskControl,
    index: usize,
    tag: usize,
    deque: Worker<TaskRef>,
    yielded: Worker<TaskRef>,
) {
    overflow::ensure_altstack();
    let group = TaskGroup {
        control,
        index,
        tag,
        deque,
        yielded,
        lifo: Cell::new(None),
        lifo_streak: Cell::new(0),
        current: Cell::new(ptr::null_mut()),
        stacks: UnsafeCell::new(LocalStackPool::default()),
        metas: UnsafeCell::new(Vec::new()),
        tick: Cell::new(0),
        next_id: Cell::new(0),
        id_end: Cell::new(0),
        owed: Cell::new(0),
        deferred: Cell::new(0),
        deferred_due: Cell::new(None),
        deferred_looks: Cell::new(0),
    };
    TLS_GROUP.with(|c| c.set(&group));
    // User panics are caught at the fiber boundary, so a panic here is a runtime failure (a stack
    // that cannot be mapped, a broken invariant). A dead worker would strand its queued fibers
    // and hang their joiners silently: abort loudly instead.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
        let task = group.wait_task();
        group.run(task);
    }));
    if let Err(p) = r {
        let msg = p
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string payload>");
        eprintln!("spindle: worker {index} failed: {msg}; aborting");
        std::process::abort();
    }
}

impl TaskGroup {
    fn shared(&self) -> &'static WorkerShared {
        &self.control.workers[self.index]
    }

    /// The fiber running on this worker, or null.
    pub(crate) fn current(&self) -> *mut TaskMeta {
        self.current.get()
    }

    /// A task id from this worker's block.
    pub(crate) fn next_id(&self) -> u64 {
        if self.next_id.get() == self.id_end.get() {
            let start = self.control.next_id.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.next_id.set(start);
            self.id_end.set(start + ID_BLOCK);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A recycled meta, if any.
    pub(crate) fn alloc_meta(&self) -> Option<Box<TaskMeta>> {
        // SAFETY: `metas` is only touched by this worker's thread, never re-entrantly.
        unsafe { (*self.metas.get()).pop() }
    }

    /// Counts a spawn made on this worker.
    pub(crate) fn count_created(&self) {
        bump(&self.shared().stats.created);
    }

    /// Whether other fibers are ready to run here (the LIFO slot or the deque; yielders not
    /// counted).
    pub(crate) fn has_ready(&self) -> bool {
        let slot = self.lifo.take();
        let occupied = slot.is_some();
        self.lifo.set(slot);
        occupied || !self.deque.is_empty()
    }

    /// Makes `task` the next to run here (LIFO slot); the task it displaces goes to the deque and
    /// an idle worker is signalled for it, unless `signal` is false (then the signal is owed
    /// until [`crate::flush`]).
    pub(crate) fn push_local(&self, task: TaskRef, signal: bool) {
        if let Some(old) = self.lifo.replace(Some(task)) {
            self.push_stealable(old, signal);
        }
    }

    /// Pushes `task` at the back of the deque and signals, or owes a signal to the tag (paid by
    /// [`crate::flush`], from whichever worker the spawning fiber runs on by then).
    pub(crate) fn push_stealable(&self, task: TaskRef, signal: bool) {
        self.deque.push(task);
        if signal {
            self.control.signal_task(self.tag, 1, self.shared().lot + 1);
        } else {
            self.control.tags[self.tag]
                .pending_signals
                .fetch_add(1, Ordering::Relaxed);
            self.owed.set(self.owed.get() + 1);
        }
    }

    /// Slot, own deque (newest first), own yield queue, own remote queue, then stealing. Every
    /// `REMOTE_CHECK_INTERVAL`-th call looks at the remote queue first, so fibers handed over by
    /// other threads (including every timer wake-up) are not starved by a worker whose own deque
    /// never runs dry; every `FAIR_CHECK_INTERVAL`-th call takes the *oldest* local task first
    /// (alternately the yield queue's front and the deque's top), so a fiber that keeps
    /// spawning cannot starve what was queued before it.
    fn find_task(&self) -> Option<TaskRef> {
        if self.deferred.get() != 0 {
            self.pay_deferred();
        }
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % REMOTE_CHECK_INTERVAL == 0 {
            #[cfg(not(loom))]
            if self.tag == 0 {
                if let Some(hook) = super::idle_hook::hook() {
                    // Ready I/O must not wait for a worker to go idle (idle_hook.rs).
                    hook.poll_now();
                }
            }
            if let Some(t) = self.shared().remote.pop() {
                return Some(t);
            }
        }
        if tick % FAIR_CHECK_INTERVAL == 0 {
            if let Some(t) = self.pop_oldest(tick / FAIR_CHECK_INTERVAL % 2 == 0) {
                return Some(t);
            }
        }
        if self.lifo_streak.get() < LIFO_LIMIT {
            if let Some(t) = self.lifo.take() {
                self.lifo_streak.set(self.lifo_streak.get() + 1);
                return Some(t);
            }
        }
        self.lifo_streak.set(0);
        if let Some(t) = self.deque.pop() {
            return Some(t);
        }
        if let Some(t) = self.lifo.take() {
            return Some(t);
        }
        if let Some(t) = self.yielded.pop() {
            return Some(t);
        }
        if let Some(t) = self.shared().remote.pop() {
            return Some(t);
        }
        self.steal()
    }

    /// Takes over the signals owed by the no-signal spawns made on this worker, to be paid only if
    /// its deque still holds fibers after `delay` (see
    /// [`flush_deferred`](super::builder::flush_deferred)).
    pub(crate) fn defer_pending(&self, delay: Duration) {
        // Only the signals owed by spawns made on this worker: those of other workers' batches
        // stay in the tag's count for their own flushes.
        let mine = self.owed.replace(0);
        let taken = self.control.tags[self.tag].pending_signals.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |p| Some(p.saturating_sub(mine)),
        );
        let n = taken.map_or(0, |p| p.min(mine));
        if n == 0 {
            return;
        }
        let due = Instant::now() + delay;
        // Several deferrals: the earliest deadline holds for all of them.
        let earliest = self.deferred_due.get().map_or(due, |d| d.min(due));
        self.deferred_due.set(Some(earliest));
        self.deferred.set(self.deferred.get() + n);
        // Always: the watchdog may have taken (and paid) an earlier one meanwhile.
        super::deferred_flush::publish(self.control, self.index, earliest);
    }

    /// Settles deferred signals: forgotten once the deque is empty (this worker ran the fibers,
    /// or awake workers stole them), paid once due.
    #[cold]
    fn pay_deferred(&self) {
        let empty = self.deque.is_empty();
        if !empty {
            // The clock only every few looks (a look is one fiber, microseconds apart).
            let looks = self.deferred_looks.get().wrapping_add(1);
            self.deferred_looks.set(looks);
            if looks % DEFERRED_CLOCK_EVERY != 0
                || self
                    .deferred_due
                    .get()
                    .is_some_and(|due| Instant::now() < due)
            {
                return;
            }
        }
        let n = self.deferred.replace(0);
        self.deferred_due.set(None);
        super::deferred_flush::withdraw(self.control, self.index);
        if !empty {
            self.control.signal_task(self.tag, n, self.shared().lot + 1);
        }
    }

    /// The oldest local task: the yield queue's front or the deque's top (taken through the
    /// worker's own stealer), in the order `yield_first` says.
    fn pop_oldest(&self, yield_first: bool) -> Option<TaskRef> {
        let top = || loop {
            match self.shared().stealer.steal() {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        };
        if yield_first {
            self.yielded.pop().or_else(top)
        } else {
            top().or_else(|| self.yielded.pop())
        }
    }

    /// Steals from the other workers of the tag (random start, prime stride): from each, half of
    /// its deque's oldest tasks, else its yield queue's front, else its remote queue's front.
    fn steal(&self) -> Option<TaskRef> {
        let tag = &self.control.tags[self.tag];
        let n = tag.count;
        if n <= 1 {
            return None;
        }
        let r = fast_rand() as usize;
        let start = r % n;
        let stride = STRIDES[(r >> 32) % STRIDES.len()];
        for k in 0..n {
            let i = tag.first + (start + k * stride) % n;
            if i == self.index {
                continue;
            }
            let victim = &self.control.workers[i];
            loop {
                match victim.stealer.steal_batch_and_pop(&self.deque) {
                    Steal::Success(t) => {
                        bump(&self.shared().stats.steals);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
            loop {
                match victim.yield_stealer.steal() {
                    Steal::Success(t) => {
                        bump(&self.shared().stats.steals);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
            if let Some(t) = victim.remote.pop() {
                bump(&self.shared().stats.steals);
                return Some(t);
            }
        }
        None
    }

    /// Finds a task, parking on the lot until one shows up.
    fn wait_task(&self) -> TaskRef {
        let lot = &self.control.tags[self.tag].lots[self.shared().lot];
        loop {
            if let Some(t) = self.find_task() {
                return t;
            }
            // The state is read before the last look; see parking_lot.rs.
            let st = lot.get_state();
            if let Some(t) = self.find_task() {
                return t;
            }
            bump(&self.shared().stats.parks);
            #[cfg(not(loom))]
            if self.tag == 0 {
                if let Some(hook) = super::idle_hook::hook() {
                    if lot.park_in_hook(st, hook) {
                        continue;
                    }
                }
            }
            lot.wait(st);
        }
    }

    /// Runs `task` and whatever its switch-outs lead to directly (urgent spawns, immediate
    /// resumption after a failed park), until this worker has nothing in hand.
    fn run(&self, mut task: TaskRef) {
        loop {
            let p = task.as_ptr();
            // SAFETY: this worker owns `task` (it came from a queue or a switch-out) so it may
            // touch the meta; the coroutine field is borrowed only for the resume call, while
            // the fiber touches other fields (yielder, locals) through its own pointer.
            let result = unsafe {
                let co = &mut *ptr::addr_of_mut!((*p).coroutine);
                if co.is_none() {
                    let spec = &self.control.stack_spec;
                    let stack = (*self.stacks.get()).get(
                        spec,
                        &self.control.shared_stacks,
                        (*p).stack_size,
                    );
                    (*p).guard = stack.guard_range();
                    let meta = p as usize;
                    *co = Some(Coroutine::with_stack(stack, move |y, ()| {
                        fiber_main(y, meta as *mut TaskMeta)
                    }));
                }
                overflow::set_current_guard(self.index, (*p).guard);
                self.current.set(p);
                bump(&self.shared().stats.switches);
                let r = co.as_mut().expect("coroutine").resume(());
                self.current.set(ptr::null_mut());
                // The stack may be recycled or unmapped from now on: stop claiming its guard.
                overflow::set_current_guard(self.index, (0, 0));
                r
            };
            match result {
                CoroutineResult::Return(()) => {
                    self.finish(task);
                    return;
                }
                CoroutineResult::Yield(Suspend::Yield) => {
                    // Pick the next task before queueing the yielder, so that it runs only
                    // after what was ready when it yielded.
                    let next = self.find_task();
                    self.yielded.push(task);
                    match next {
                        Some(t) => task = t,
                        None => return,
                    }
                }
                CoroutineResult::Yield(Suspend::Park(action)) => {
                    // SAFETY: the fiber is switched out and its stack (where `data` points) stays
                    // put until the action publishes it; the action's contract covers the rest.
                    match unsafe { (action.f)(action.data, task) } {
                        Some(t) => task = t,
                        None => return,
                    }
                }
                CoroutineResult::Yield(Suspend::Urgent(new)) => {
                    // The caller goes where idle workers can steal it; the new fiber runs now.
                    self.push_stealable(task, true);
                    task = new;
                }
            }
        }
    }

    /// Recycles the stack and meta of a finished task.
    fn finish(&self, task: TaskRef) {
        let mut meta = task.into_box();
        if let Some(co) = meta.coroutine.take() {
            let stack = co.into_stack();
            // SAFETY: the pool is only touched by this worker's thread, never re-entrantly.
            unsafe {
                (*self.stacks.get()).put(
                    &self.control.stack_spec,
                    &self.control.shared_stacks,
                    stack,
                )
            };
        }
        meta.entry = None;
        meta.name = None;
        meta.yielder = ptr::null();
        meta.guard = (0, 0);
        meta.locals = Default::default();
        bump(&self.shared().stats.finished);
        // SAFETY: as above.
        let metas = unsafe { &mut *self.metas.get() };
        if metas.len() < META_POOL_CAP {
            metas.push(meta);
        }
    }
}

/// Body of every fiber: runs the user function, drops fiber-locals, then publishes the result.
fn fiber_main(y: &Yielder<(), Suspend>, p: *mut TaskMeta) {
    // SAFETY: `p` is this fiber's own meta, alive until the worker recycles it after we return;
    // the fiber touches only `yielder`, `entry` and `locals`, which the worker leaves alone while
    // the fiber runs.
    let entry = unsafe {
        (*p).yielder = y;
        (*p).entry.take()
    };
    let Some(entry) = entry else { return };
    entry.run_body();
    // SAFETY: as above.
    let locals = unsafe { std::mem::take(&mut (*p).locals) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(locals)));
    entry.publish();
}

/// Switches the current fiber out with `req`. Must be called on a fiber.
///
/// On return the fiber may be on another worker: callers re-read [`current_group`].
pub(crate) fn suspend(req: Suspend) {
    let g = current_group();
    debug_assert!(!g.is_null(), "suspend outside a fiber");
    // SAFETY: on a fiber, the current group is live and its `current` is this fiber's meta,
    // whose `yielder` was set when the fiber started and points into this fiber's stack.
    unsafe {
        let p = (*g).current();
        let y = (*p).yielder;
        (*y).suspend(req);
    }
}

/// The meta of the fiber calling this, or null on a plain thread.
#[inline]
pub(crate) fn current_task_meta() -> *mut TaskMeta {
    let g = current_group();
    if g.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a non-null group is the live worker of this thread.
    unsafe { (*g).current() }
}
