//! Spawning fibers and the calls a fiber makes about itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::task_group::{current_group, current_task_meta, suspend};
use super::{control, task_group::TaskGroup};
use crate::butex::{Butex, WaitError};
use crate::fiber::join::{JoinHandle, Packet};
use crate::fiber::stack::StackSize;
use crate::fiber::task::{Suspend, TaskId, TaskMeta, TaskRef};

/// Options for a new fiber. `Builder::new().stack_size(StackSize::Small).spawn(f)`.
#[derive(Clone, Debug)]
pub struct Builder {
    stack: StackSize,
    name: Option<String>,
    tag: Option<usize>,
    signal: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default options: normal stack, no name, the caller's tag (tag 0 from a plain thread),
    /// signal an idle worker.
    pub fn new() -> Self {
        Builder {
            stack: StackSize::Normal,
            name: None,
            tag: None,
            signal: true,
        }
    }

    /// Stack size class of the fiber.
    pub fn stack_size(mut self, s: StackSize) -> Self {
        self.stack = s;
        self
    }

    /// A name, readable from the fiber with [`crate::current_task_name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs the fiber on the workers of tag `t` only (see `Config::task_group_ntags`).
    /// Spawning panics if `t` is not below `task_group_ntags`.
    pub fn tag(mut self, t: usize) -> Self {
        self.tag = Some(t);
        self
    }

    /// Queues the fiber where other workers can steal it, without waking an idle worker; the
    /// signal is owed until [`flush`]. For batches (the RPC input messenger's
    /// n−1 messages): spawn them this way, then flush once.
    pub fn no_signal(mut self) -> Self {
        self.signal = false;
        self
    }

    /// Starts `f` in a new fiber in the background.
    pub fn spawn<F, T>(self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(f, false)
    }

    /// Starts `f` in a new fiber and switches to it at once on this worker; the caller is put on
    /// the local deque, where an idle worker may steal it. From a plain thread, or for another
    /// tag, it behaves like [`Builder::spawn`].
    pub fn spawn_urgent<F, T>(self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(f, true)
    }

    #[cfg_attr(miri, allow(unreachable_code))]
    fn spawn_inner<F, T>(self, f: F, urgent: bool) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        #[cfg(miri)]
        {
            let _ = urgent;
            return spawn_on_thread_under_miri(f);
        }
        let control = control();
        let g = current_group();
        // SAFETY: a non-null group is this thread's live worker; the reference is not used after
        // the switch below.
        let group: Option<&TaskGroup> = unsafe { g.as_ref() };
        let tag = self.tag.unwrap_or(group.map_or(0, |g| g.tag));
        assert!(
            tag < control.tags.len(),
            "spindle: fiber tag {tag} does not exist: task_group_ntags={}",
            control.tags.len()
        );
        let packet = Packet::new(f);
        let mut meta = group
            .and_then(TaskGroup::alloc_meta)
            .unwrap_or_else(TaskMeta::new);
        let id = match group {
            Some(g) => {
                g.count_created();
                g.next_id()
            }
            None => {
                control
                    .external_created
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                control.next_external_id()
            }
        };
        meta.id = TaskId(id);
        meta.tag = tag;
        meta.stack_size = self.stack;
        meta.name = self.name;
        meta.entry = Some(packet.clone());
        let task = TaskRef::from_box(meta);
        let handle = JoinHandle::new(packet as Arc<_>, TaskId(id));
        match group {
            Some(g) if g.tag == tag => {
                if urgent && !g.current().is_null() {
                    suspend(Suspend::Urgent(task));
                    // We may be on another worker now: `g` is not used past this point.
                } else {
                    if self.signal {
                        g.push_local(task, true);
                    } else {
                        // A batch for other workers: stealable at once, signalled by `flush`.
                        g.push_stealable(task, false);
                    };
                }
            }
            _ => control.push_remote(tag, task, self.signal),
        }
        handle
    }
}

/// Miri cannot run the stack-switching core (inline assembly, `mmap`ed stacks with guard pages,
/// the overflow signal handler). Under miri each spawned body runs on an OS thread instead, with
/// the same `Packet`/`JoinHandle` and butex-based join, so the data structures built above the
/// scheduler (ExecutionQueue, FiberId, the sync primitives) are still checked by miri. Code that
/// asks "am I in a fiber?" sees a plain thread, which every primitive supports.
#[cfg(miri)]
fn spawn_on_thread_under_miri<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    use crate::fiber::join::Runnable;
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let packet = Packet::new(f);
    let runner = packet.clone();
    std::thread::spawn(move || {
        runner.run_body();
        runner.publish();
    });
    JoinHandle::new(packet as Arc<_>, TaskId(id))
}

/// Starts `f` in a new fiber in the background.
///
/// From a fiber, the new fiber becomes the next to run on this worker (a one-task LIFO slot, as
/// in tokio: spawn-then-join never leaves the core), and whatever it displaces from that slot
/// goes to the stealable deque with an idle worker signalled. The slot itself is not stealable:
/// if the caller keeps its worker busy without switching, the new fiber waits for the caller's
/// next switch. For fan-out that must spread to other workers at once, spawn with
/// [`Builder::no_signal`] and call [`flush`], or use [`spawn_urgent`]. From a plain thread the
/// fiber goes to a worker's remote queue and a worker is signalled.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f)
}

/// Starts `f` in a new fiber and runs it now on this worker; the caller goes back on the local
/// deque (and may be stolen). From a plain thread it behaves like [`spawn`].
pub fn spawn_urgent<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn_urgent(f)
}

/// Starts `f` in a new fiber without waking a worker; call [`flush`] after the batch.
pub fn spawn_no_signal<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().no_signal().spawn(f)
}

/// Wakes idle workers for the no-signal spawns made so far: one per queued fiber, but at most 2
/// per tag (brpc's cap; the woken steal, the spawning worker runs the rest). Cheap when nothing
/// is owed. The owed signals are counted per tag, so a fiber that moved to another worker since
/// its spawns still pays them.
pub fn flush() {
    if let Some(c) = super::try_control() {
        c.flush_pending();
    }
}

/// Like [`flush`], for a batch of short fibers: the signals owed by [`spawn_no_signal`] are paid
/// only if some of the batch still waits on this worker's deque `delay` from now, which the
/// worker checks each time it picks its next fiber. Until then the fibers run here, one after
/// the other, or on workers that are awake anyway and steal them: no sleeping worker is woken
/// for work this one finishes sooner than a wake-up pays off. On a plain thread, or with a zero
/// `delay`, it is [`flush`].
///
/// The worker checks between fibers. When a fiber holds it for long (computing, or blocking the
/// thread in a system call or a `std` lock), a watchdog on the timer thread pays the signals
/// instead, so a deferred fiber waits at most about `delay` plus 1 ms for a worker to take it
/// (see `scheduler/deferred_flush.rs`).
///
/// Call it from the fiber that spawned the batch, before it switches out: it pays for the spawns
/// made on its current worker. Signals owed by spawns on other workers are left to their own
/// flushes.
pub fn flush_deferred(delay: Duration) {
    let Some(c) = super::try_control() else {
        return;
    };
    let g = current_group();
    if g.is_null() || delay.is_zero() {
        c.flush_pending();
        return;
    }
    // SAFETY: a non-null group is the live worker of this thread; it is used before any switch.
    unsafe { (*g).defer_pending(delay) };
}

/// Runs `f`; the fibers it wakes (butex wakes: a result handed to a parked caller, a mutex
/// passed on) that land on the caller's worker owe their signal to the idle workers instead
/// of sending it, as [`spawn_no_signal`] does: the caller's next [`flush`] or
/// [`flush_deferred`] pays. For a fiber that wakes many others in a row (a connection's
/// reader completing a burst of calls): each wake would otherwise push the previously woken
/// fiber out of the worker's next-to-run slot and wake a sleeping worker for it. On a plain
/// thread it just runs `f`.
pub fn defer_wake_signals<R>(f: impl FnOnce() -> R) -> R {
    /// Clears the flag when `f` returns or unwinds (the meta is the fiber's own: still the
    /// right one if the fiber moved to another worker meanwhile).
    struct Reset(*mut crate::fiber::task::TaskMeta);
    impl Drop for Reset {
        fn drop(&mut self) {
            // SAFETY: the meta of the running fiber outlives this frame on its stack.
            unsafe { (*self.0).defer_wake_signals = false };
        }
    }
    let me = current_task_meta();
    if me.is_null() {
        return f();
    }
    // SAFETY: the meta of the running fiber; only the fiber touches the flag.
    let nested = unsafe { std::mem::replace(&mut (*me).defer_wake_signals, true) };
    if nested {
        return f(); // the outer call clears it
    }
    let _reset = Reset(me);
    f()
}

/// Yields the current fiber (or thread) to let others run.
pub fn yield_now() {
    if current_task_meta().is_null() {
        std::thread::yield_now();
    } else {
        suspend(Suspend::Yield);
    }
}

/// Parks the current fiber (or thread) for at least `d`. A fiber parks on a butex with a
/// deadline (the timer thread wakes it); a plain thread sleeps.
pub fn sleep(d: Duration) {
    if current_task_meta().is_null() {
        std::thread::sleep(d);
        return;
    }
    let Some(deadline) = Instant::now().checked_add(d) else {
        // Forever, for all practical purposes.
        let b = Butex::new(0);
        loop {
            let _ = b.wait(0, None);
        }
    };
    let b = Butex::new(0);
    while Instant::now() < deadline {
        if let Err(WaitError::TimedOut) = b.wait(0, Some(deadline)) {
            break;
        }
    }
}

/// Id of the fiber calling this, `None` on a plain thread.
pub fn current_task() -> Option<TaskId> {
    let p = current_task_meta();
    // SAFETY: a non-null meta is the running fiber's own.
    (!p.is_null()).then(|| unsafe { (*p).id })
}

/// Name of the fiber calling this (see [`Builder::name`]), `None` if unnamed or on a plain thread.
pub fn current_task_name() -> Option<String> {
    let p = current_task_meta();
    // SAFETY: a non-null meta is the running fiber's own; `name` is not changed while it runs.
    unsafe { p.as_ref() }.and_then(|m| m.name.clone())
}
