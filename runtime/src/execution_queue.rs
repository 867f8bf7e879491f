//! `ExecutionQueue<T>` (brpc's `bthread::ExecutionQueue`): many producers submit tasks
//! wait-free; one consumer fiber, started on demand, runs them in submit order and in batches.
//!
//! # The lock-free core: `TaskList`
//!
//! A Vyukov-style intrusive MPSC list. `head` points to the *newest* node, or is null when the
//! queue is idle (no consumer). Each node's `next` points to the node pushed just before it
//! (newer → older); `UNCONNECTED` (a sentinel address no node can have) means "its producer has
//! swapped it in but not linked it yet".
//!
//! **Push** (producer, wait-free): `node.next = UNCONNECTED; prev = head.swap(node)`. If `prev`
//! is null the queue was idle and *this producer must start the consumer* with `node` as its
//! first task; otherwise it stores `node.next = prev` and returns. A producer never dereferences
//! any node but its own.
//!
//! **Consume** (one consumer at a time): the consumer owns a forward chain of nodes that ends at
//! its *anchor*, the newest node it knows of. After running the chain it tries
//! `head.compare_exchange(anchor → null)`:
//! - success: nothing was pushed since; the queue is idle again and the consumer exits (the next
//!   push will see null and start a new consumer);
//! - failure returns the newest node; the consumer walks `next` from it back to the anchor,
//!   waiting briefly on `UNCONNECTED` links (a producer between its swap and its link store),
//!   reversing the links so they point forward (older → newer). That reversed run is the next
//!   batch and its newest node the next anchor.
//!
//! # Invariants (checked by the `loom_*` models below)
//!
//! 1. **At most one consumer.** A consumer is started only by the push that swapped `head` away
//!    from null, and exits only after its CAS set `head` back to null; between those two points
//!    `head` is never null, so no other push can see null.
//! 2. **No lost task.** A node is either the anchor of the running consumer, or reachable from
//!    `head` through `next` links down to the anchor, so the consumer's CAS fails while any node it
//!    has not run exists; and a push onto an idle queue starts a consumer.
//! 3. **Submit order.** One producer's pushes are ordered by its swaps; reversal preserves the
//!    swap order, so tasks run in the order their `execute` calls linearised.
//! 4. **Memory.** Nodes are freed only by the consumer, and the anchor is kept alive until the
//!    CAS has failed or succeeded, so the address compared can never be a recycled one (no ABA).
//!    Producers never dereference `prev`, so freeing a node that `head` no longer names is safe.
//!
//! # Stop and join
//!
//! `state` counts producers inside `execute` plus a `STOPPED` bit and a `MARKER_PUSHED` bit.
//! `execute` increments the count, refuses the task if `STOPPED` is set, pushes, decrements.
//! `stop` sets `STOPPED` while counting itself as a producer. Whoever decrements the count to
//! zero with `STOPPED` set (and wins the CAS that sets `MARKER_PUSHED`) pushes the *stop marker*,
//! a node without task. So the marker follows every accepted task, and nothing follows it. When
//! the consumer reaches the marker it calls the callback a last time with an empty batch whose
//! [`TaskIter::is_stopped`] is `true`, sets `done` and wakes joiners. `stop` stays wait-free.
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::butex::Butex;
use crate::loom::atomic::{AtomicPtr, AtomicUsize, Ordering};
use crate::loom::UnsafeCell;

/// Most tasks handed to one callback invocation. Bounds how long a consumer runs user code
/// between checks of the list (and how long a flood of tasks delays `is_stopped` delivery);
/// large enough that per-batch overhead (one CAS, one callback call) is amortised.
const MAX_BATCH: usize = 256;
/// `state` bit: `stop` was called.
const STOPPED: usize = 1 << (usize::BITS - 1);
/// `state` bit: the stop marker has been (or is being) pushed.
const MARKER_PUSHED: usize = 1 << (usize::BITS - 2);
/// `state` mask: number of producers inside `execute` (plus a `stop` in progress).
const COUNT_MASK: usize = MARKER_PUSHED - 1;

/// One submitted task, or the stop marker (`item == None`).
pub(crate) struct Node<T> {
    /// Older node (while pushed) or newer node (after the consumer reversed the run).
    next: AtomicPtr<Node<T>>,
    /// The task; `None` for the stop marker. Written by the producer before publication, taken
    /// by the consumer.
    item: UnsafeCell<Option<T>>,
}

/// Sentinel for "pushed but not linked yet". Never the address of a real node: a dangling,
/// well-aligned address (the alignment of `Node<T>`) that no allocation can start at.
fn unconnected<T>() -> *mut Node<T> {
    NonNull::dangling().as_ptr()
}

impl<T> Node<T> {
    /// Allocates an unlinked node.
    pub(crate) fn alloc(item: Option<T>) -> NonNull<Node<T>> {
        let b = Box::new(Node {
            next: AtomicPtr::new(unconnected()),
            item: UnsafeCell::new(item),
        });
        NonNull::from(Box::leak(b))
    }

    /// Frees a node the consumer owns and returns its item.
    ///
    /// # Safety
    /// `node` came from [`Node::alloc`], is owned by the caller and is not used afterwards.
    pub(crate) unsafe fn free(node: NonNull<Node<T>>) -> Option<T> {
        // SAFETY: per the contract, we own the allocation made by `Box::leak` in `alloc`.
        let b = unsafe { Box::from_raw(node.as_ptr()) };
        b.item.with_mut(|p| {
            // SAFETY: exclusive ownership of the node (contract), so nobody else touches the cell.
            unsafe { (*p).take() }
        })
    }
}

/// The lock-free submit/consume handoff (see the module doc). Separate from the fiber plumbing
/// so loom can check it.
pub(crate) struct TaskList<T> {
    /// Newest node, or null when idle.
    head: AtomicPtr<Node<T>>,
}

// SAFETY: the list hands nodes (and the `T`s inside) from producers to the consumer, possibly on
// another thread, so `T: Send` is required and sufficient; nodes are never shared by two owners
// (invariant 4).
unsafe impl<T: Send> Send for TaskList<T> {}
// SAFETY: as above; all shared access goes through the atomic `head` and per-node `next`.
unsafe impl<T: Send> Sync for TaskList<T> {}

impl<T> TaskList<T> {
    /// An idle list.
    pub(crate) fn new() -> Self {
        TaskList {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Publishes `node` (fresh from [`Node::alloc`], ownership passes to the list). Returns
    /// `true` if the list was idle: the caller must then start the consumer with `node` as its
    /// first node (and anchor). Wait-free: one swap and one store.
    pub(crate) fn push(&self, node: NonNull<Node<T>>) -> bool {
        let prev = self.head.swap(node.as_ptr(), Ordering::AcqRel);
        if prev.is_null() {
            return true;
        }
        // SAFETY: `node` is still allocated: the consumer frees a node only after reading a
        // linked `next` from it or after it became the anchor, neither of which can happen before
        // this store (the consumer waits on `UNCONNECTED`).
        unsafe { node.as_ref() }.next.store(prev, Ordering::Release);
        false
    }

    /// Called by the consumer once every node up to and including `anchor` has been run.
    /// Returns `None` if the list is idle again (the caller must exit without touching the list
    /// again), or the oldest node of the next batch; the chain from it is linked forward through
    /// `next` and ends (`next == null`) at the new anchor. Frees `anchor` in both cases.
    ///
    /// # Safety
    /// The caller is the consumer and `anchor` is its anchor: the newest node it has taken from
    /// the list, with every node of its chain already consumed (freed except `anchor`).
    pub(crate) unsafe fn next_batch(&self, anchor: NonNull<Node<T>>) -> Option<NonNull<Node<T>>> {
        let newest = match self.head.compare_exchange(
            anchor.as_ptr(),
            ptr::null_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // SAFETY: the consumer owns its anchor; after the CAS no producer can reach it.
                drop(unsafe { Node::free(anchor) });
                return None;
            }
            Err(newest) => newest,
        };
        let mut forward: *mut Node<T> = ptr::null_mut();
        let mut p = newest;
        while p != anchor.as_ptr() {
            // SAFETY: `p` is a node pushed after `anchor`, not yet consumed, so still allocated
            // and owned by the list (invariant 2); only this consumer reads its link.
            let node = unsafe { &*p };
            let older = loop {
                let n = node.next.load(Ordering::Acquire);
                if n != unconnected() {
                    break n;
                }
                // Its producer is between the swap and the link store: a few instructions.
                crate::loom::thread::yield_now();
            };
            node.next.store(forward, Ordering::Relaxed);
            forward = p;
            p = older;
        }
        // SAFETY: `head` has moved past `anchor` and every newer node now links forward without
        // it, so nothing references the anchor any more and the consumer owns it.
        drop(unsafe { Node::free(anchor) });
        // SAFETY: `newest != anchor` (the CAS failed), so the loop ran at least once.
        Some(unsafe { NonNull::new_unchecked(forward) })
    }
}

/// Admission control of `execute` / `stop` (module doc, "Stop and join"): a count of callers
/// inside `execute` plus the `STOPPED` and `MARKER_PUSHED` bits. Lock-free; loom-checked.
pub(crate) struct StopGate {
    /// Producers inside `execute` (and a `stop` in progress) + `STOPPED` + `MARKER_PUSHED`.
    state: AtomicUsize,
}

impl StopGate {
    /// Open, nobody inside.
    pub(crate) fn new() -> Self {
        StopGate {
            state: AtomicUsize::new(0),
        }
    }

    /// Enters as a producer. Returns `false` if the queue is stopped (the task must be refused).
    /// Either way the caller must call [`StopGate::leave`] afterwards (after pushing, if `true`).
    pub(crate) fn enter(&self) -> bool {
        let s = self.state.fetch_add(1, Ordering::Acquire);
        debug_assert!(
            s & COUNT_MASK < COUNT_MASK,
            "execute: producer count overflow"
        );
        s & STOPPED == 0
    }

    /// Closes the gate. Returns `false` if it was already closed; on `true` the caller counts as
    /// inside and must call [`StopGate::leave`].
    pub(crate) fn stop(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & STOPPED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                (s + 1) | STOPPED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Leaves. Returns `true` for exactly one caller: the last one out after the gate closed,
    /// which must push the stop marker (every accepted push happened before this returns).
    pub(crate) fn leave(&self) -> bool {
        let after = self.state.fetch_sub(1, Ordering::AcqRel) - 1;
        after == STOPPED
            && self
                .state
                .compare_exchange(
                    STOPPED,
                    STOPPED | MARKER_PUSHED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether the gate was closed.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state.load(Ordering::Acquire) & STOPPED != 0
    }
}

/// The consumer callback, boxed so `ExecutionQueue<T>` is one type whatever the closure.
type Callback<T> = Box<dyn FnMut(&mut TaskIter<'_, T>) + Send>;

/// State shared by the queue handles and the running consumer.
struct Inner<T> {
    /// The lock-free list.
    list: TaskList<T>,
    /// Admission control for `execute` / `stop`.
    gate: StopGate,
    /// The user's consumer; only the (single, invariant 1) running consumer touches it.
    callback: std::cell::UnsafeCell<Callback<T>>,
    /// Set while a consumer may touch `callback`; asserts invariant 1 at run time.
    consuming: std::sync::atomic::AtomicBool,
    /// 0 until the consumer has handled the stop marker, then 1; joiners wait on it.
    done: Butex,
}

// SAFETY: `callback` is only used by the running consumer, and there is at most one
// (invariant 1, asserted through `consuming`, whose SeqCst swaps also order one consumer's use
// before the next one's); the callback is `Send`. Everything else is atomics, `TaskList` (sound
// for `T: Send`) or the `Sync` butex.
unsafe impl<T: Send> Sync for Inner<T> {}

/// Why [`ExecutionQueue::execute`] refused a task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExecuteError<T> {
    /// [`ExecutionQueue::stop`] was called before; the task is returned unrun.
    Stopped(T),
}

impl<T> ExecuteError<T> {
    /// The refused task.
    pub fn into_inner(self) -> T {
        match self {
            ExecuteError::Stopped(t) => t,
        }
    }
}

impl<T> fmt::Debug for ExecuteError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopped(..)")
    }
}

impl<T> fmt::Display for ExecuteError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("execution queue was stopped; task refused")
    }
}

impl<T> std::error::Error for ExecuteError<T> {}

/// Many-producer, single-consumer task queue with an on-demand consumer fiber (brpc's
/// `bthread::ExecutionQueue`). Cloning gives another handle to the same queue.
///
/// - [`execute`](Self::execute) is wait-free (a few atomic instructions) and never blocks.
/// - The consumer callback runs in a fiber started by the `execute` that found the queue idle; it
///   receives the tasks as a [`TaskIter`] batch, in submit order, never two batches at once; the
///   fiber exits when the queue is empty again.
/// - [`stop`](Self::stop) refuses later `execute`s; [`join`](Self::join) waits until every
///   accepted task was handed to the callback and the final `is_stopped()` call returned.
///
/// Tasks the callback does not take from the iterator are dropped. A panic in the callback is
/// caught: the rest of that batch is dropped and the queue goes on with the next batch.
///
/// ```
/// use spindle_runtime::execution_queue::ExecutionQueue;
/// use spindle_runtime::sync::Mutex;
/// use std::sync::Arc;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let q = ExecutionQueue::start(move |batch| {
///     for task in batch {
///         s.lock().push(task);
///     }
/// });
/// for i in 0..10 {
///     q.execute(i).unwrap();
/// }
/// q.stop();
/// assert!(q.execute(10).is_err());
/// q.join();
/// assert_eq!(*seen.lock(), (0..10).collect::<Vec<_>>());
/// ```
pub struct ExecutionQueue<T> {
    /// Shared state.
    inner: Arc<Inner<T>>,
}

impl<T> Clone for ExecutionQueue<T> {
    fn clone(&self) -> Self {
        ExecutionQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for ExecutionQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionQueue")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl<T> ExecutionQueue<T> {
    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.gate.is_stopped()
    }

    /// Parks the caller (fiber or thread) until the queue was stopped and the consumer has
    /// handled every accepted task and the final `is_stopped()` batch. Returns at once if that
    /// already happened; blocks until someone calls `stop` otherwise.
    pub fn join(&self) {
        while self.inner.done.value().load(Ordering::Acquire) == 0 {
            let _ = self.inner.done.wait(0, None);
        }
    }
}

impl<T: Send + 'static> ExecutionQueue<T> {
    /// Creates a queue whose tasks are handed to `consumer` in batches. No fiber runs until the
    /// first `execute`.
    pub fn start<F>(consumer: F) -> Self
    where
        F: FnMut(&mut TaskIter<'_, T>) + Send + 'static,
    {
        ExecutionQueue {
            inner: Arc::new(Inner {
                list: TaskList::new(),
                gate: StopGate::new(),
                callback: std::cell::UnsafeCell::new(Box::new(consumer)),
                consuming: std::sync::atomic::AtomicBool::new(false),
                done: Butex::new(0),
            }),
        }
    }

    /// Submits `task`; wait-free. Starts the consumer fiber if the queue was idle.
    /// `Err(ExecuteError::Stopped(task))` after [`stop`](Self::stop).
    pub fn execute(&self, task: T) -> Result<(), ExecuteError<T>> {
        if !self.inner.gate.enter() {
            self.leave();
            return Err(ExecuteError::Stopped(task));
        }
        self.push(Some(task));
        self.leave();
        Ok(())
    }

    /// Refuses every later `execute`; tasks accepted before still run. Idempotent, never
    /// blocks. Call [`join`](Self::join) to wait for the consumer to finish.
    pub fn stop(&self) {
        if self.inner.gate.stop() {
            self.leave();
        }
    }

    /// Leaves the gate; the last one out after stop pushes the stop marker.
    fn leave(&self) {
        if self.inner.gate.leave() {
            self.push(None);
        }
    }

    /// Pushes a task (or the marker) and starts a consumer if the list was idle.
    fn push(&self, item: Option<T>) {
        let node = Node::alloc(item);
        if self.inner.list.push(node) {
            let inner = self.inner.clone();
            let first = SendNode(node);
            drop(crate::spawn(move || {
                let first = first;
                consume(&inner, first.0)
            }));
        }
    }
}

/// Moves the first node into the consumer fiber.
struct SendNode<T>(NonNull<Node<T>>);
// SAFETY: the node (and its `T: Send`) is owned by whoever holds this wrapper: the push that
// returned `true` hands it to exactly one consumer.
unsafe impl<T: Send> Send for SendNode<T> {}

/// The consumer fiber's body: runs batches until the list goes idle or the stop marker is seen.
fn consume<T: Send + 'static>(inner: &Inner<T>, first: NonNull<Node<T>>) {
    use std::sync::atomic::Ordering::SeqCst;
    let enter = || {
        let twice = inner.consuming.swap(true, SeqCst);
        assert!(
            !twice,
            "ExecutionQueue invariant broken: two consumers at once"
        );
    };
    enter();
    // SAFETY: we are the only consumer (asserted just above), so nobody else uses the callback
    // until `consuming` is cleared before the hand-off CAS.
    let callback = unsafe { &mut *inner.callback.get() };
    // SAFETY: `first` came from a push that returned `true`, so this consumer owns it; its
    // `next` is not read by anybody else (producers only write their own node).
    unsafe { first.as_ref() }
        .next
        .store(ptr::null_mut(), Ordering::Relaxed);
    let mut cur = first.as_ptr();
    loop {
        // Run the chain from `cur` to its end (the anchor) in batches of at most MAX_BATCH.
        let (anchor, stopped) = loop {
            let mut iter = TaskIter::new(cur, false);
            // Documented behaviour: a panicking batch is cut short and the queue goes on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&mut iter)));
            iter.drain_batch();
            if let Some(anchor) = NonNull::new(iter.anchor) {
                break (anchor, iter.stop_seen);
            }
            cur = iter.cur;
        };
        if stopped {
            let mut last = TaskIter::new(ptr::null_mut(), true);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&mut last)));
            inner.consuming.store(false, SeqCst);
            // SAFETY: we are the consumer and `anchor` (the marker) is our consumed anchor.
            let more = unsafe { inner.list.next_batch(anchor) };
            debug_assert!(more.is_none(), "a task was pushed after the stop marker");
            inner.done.value().store(1, Ordering::Release);
            inner.done.wake_all();
            return;
        }
        // From here until `next_batch` fails, another consumer may start: stop using `callback`.
        inner.consuming.store(false, SeqCst);
        // SAFETY: as above: every node of the chain was consumed and `anchor` is the last one.
        match unsafe { inner.list.next_batch(anchor) } {
            None => return,
            Some(n) => {
                enter();
                cur = n.as_ptr();
            }
        }
    }
}

/// One batch of tasks for the consumer callback: an iterator yielding them in submit order
/// (at most an internal batch limit per call; the callback is called again for the rest).
///
/// Tasks not taken before the callback returns are dropped.
pub struct TaskIter<'a, T> {
    /// Next node whose task has not been taken, or null when the chain (or batch) is exhausted.
    cur: *mut Node<T>,
    /// The chain's last node (the anchor) once its task was taken; kept for `next_batch`.
    anchor: *mut Node<T>,
    /// Tasks yielded in this batch.
    taken: usize,
    /// The anchor was the stop marker.
    stop_seen: bool,
    /// This is the final, empty batch after stop.
    is_stop_call: bool,
    /// Ties the iterator to the consumer's borrow; also makes it `!Send`.
    _own: PhantomData<&'a mut Node<T>>,
}

impl<T> TaskIter<'_, T> {
    /// A batch starting at `cur` (null for the final stop call).
    fn new(cur: *mut Node<T>, is_stop_call: bool) -> Self {
        TaskIter {
            cur,
            anchor: ptr::null_mut(),
            taken: 0,
            stop_seen: false,
            is_stop_call,
            _own: PhantomData,
        }
    }

    /// `true` only for the final call after [`ExecutionQueue::stop`]: every accepted task has
    /// already been handed over; the batch is empty. Flush here.
    pub fn is_stopped(&self) -> bool {
        self.is_stop_call
    }

    /// Drops what the callback left in this batch (up to the batch limit).
    fn drain_batch(&mut self) {
        for t in self.by_ref() {
            drop(t);
        }
    }
}

impl<T> Iterator for TaskIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.cur.is_null() || self.taken == MAX_BATCH {
            return None;
        }
        // SAFETY: `cur` is a node of the consumer's chain, owned by the consumer.
        let node = unsafe { &*self.cur };
        // SAFETY: only the consumer touches a published node's item.
        let item = node.item.with_mut(|p| unsafe { (*p).take() });
        let next = node.next.load(Ordering::Relaxed);
        if next.is_null() {
            // The anchor: keep it allocated for `next_batch`.
            self.anchor = self.cur;
            self.cur = ptr::null_mut();
            self.stop_seen = item.is_none();
        } else {
            debug_assert!(item.is_some(), "the stop marker is always the last node");
            // SAFETY: the consumer owns this node and will not use it again (moved to `next`).
            drop(unsafe { Node::free(NonNull::new_unchecked(self.cur)) });
            self.cur = next;
        }
        self.taken += usize::from(item.is_some());
        item
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::Mutex;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;

    /// Sizes small under miri, bigger natively.
    const N: usize = if cfg!(miri) { 40 } else { 5_000 };

    #[test]
    fn single_producer_order_batches_and_stop_join() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let stopped_calls = Arc::new(StdAtomicUsize::new(0));
        let (s, b, sc) = (seen.clone(), batches.clone(), stopped_calls.clone());
        let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, usize>| {
            if it.is_stopped() {
                sc.fetch_add(1, SeqCst);
                assert!(it.next().is_none());
                return;
            }
            let batch: Vec<usize> = it.collect();
            assert!(!batch.is_empty() && batch.len() <= MAX_BATCH);
            b.lock().push(batch.len());
            s.lock().extend(batch);
        });
        for i in 0..N {
            q.execute(i).unwrap();
        }
        q.stop();
        q.stop(); // idempotent
        assert_eq!(q.execute(N).unwrap_err().into_inner(), N);
        q.join();
        q.join(); // returns at once the second time
        assert_eq!(*seen.lock(), (0..N).collect::<Vec<_>>());
        assert_eq!(batches.lock().iter().sum::<usize>(), N);
        assert_eq!(stopped_calls.load(SeqCst), 1);
    }

    #[test]
    fn many_producers_keep_their_own_order() {
        let producers = 4;
        let next = Arc::new(Mutex::new(vec![0usize; producers]));
        let n2 = next.clone();
        let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, (usize, usize)>| {
            let mut next = n2.lock();
            for (p, i) in it {
                assert_eq!(next[p], i, "producer {p} reordered");
                next[p] += 1;
            }
        });
        let hs: Vec<_> = (0..producers)
            .map(|p| {
                let q = q.clone();
                crate::spawn(move || {
                    for i in 0..N / producers {
                        q.execute((p, i)).unwrap();
                        if i % 64 == 0 {
                            crate::yield_now(); // let the queue go idle now and then
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        q.stop();
        q.join();
        assert_eq!(*next.lock(), vec![N / producers; producers]);
    }

    #[test]
    fn stop_racing_with_producers_loses_no_accepted_task() {
        let accepted = Arc::new(StdAtomicUsize::new(0));
        let consumed = Arc::new(StdAtomicUsize::new(0));
        let c2 = consumed.clone();
        let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, ()>| {
            c2.fetch_add(it.count(), SeqCst);
        });
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (q, accepted) = (q.clone(), accepted.clone());
                crate::spawn(move || {
                    for _ in 0..N {
                        if q.execute(()).is_err() {
                            break;
                        }
                        accepted.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        crate::yield_now();
        q.stop();
        q.join();
        let consumed_at_join = consumed.load(SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(consumed_at_join, accepted.load(SeqCst));
    }

    #[test]
    fn panicking_callback_does_not_wedge_the_queue() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, u32>| {
            for t in it {
                if t == 3 {
                    panic!("task 3 fails");
                }
                s.lock().push(t);
            }
        });
        q.execute(3).unwrap();
        q.stop();
        q.join();
        let q2 = ExecutionQueue::start({
            let s = seen.clone();
            move |it: &mut TaskIter<'_, u32>| s.lock().extend(it)
        });
        q2.execute(7).unwrap();
        q2.stop();
        q2.join();
        assert_eq!(*seen.lock(), vec![7]);
    }

    #[test]
    fn dropping_handles_without_stop_runs_everything() {
        let done = Arc::new(crate::sync::CountdownEvent::new(10));
        let d = done.clone();
        let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, Box<u32>>| {
            for _ in it {
                d.signal(1);
            }
        });
        for i in 0..10 {
            q.execute(Box::new(i)).unwrap();
        }
        drop(q);
        done.wait();
    }

    #[test]
    fn unconsumed_tasks_are_dropped() {
        let drops = Arc::new(StdAtomicUsize::new(0));
        struct D(Arc<StdAtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let q = ExecutionQueue::start(|_it: &mut TaskIter<'_, D>| {});
        for _ in 0..5 {
            q.execute(D(drops.clone())).unwrap();
        }
        q.stop();
        q.join();
        assert_eq!(drops.load(SeqCst), 5);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    // Bookkeeping of the model itself, deliberately *not* loom types: loom runs one thread at a
    // time, so these see program order, and they add no interleavings to explore.
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Mutex;

    type Item = (usize, usize);

    /// The consumer loop of `consume`, minus the fiber plumbing: runs a chain and hands off.
    fn consume_model<I>(
        list: &TaskList<I>,
        first: NonNull<Node<I>>,
        out: &Mutex<Vec<I>>,
        active: &AtomicBool,
    ) {
        assert!(!active.swap(true, SeqCst), "two consumers at once");
        // SAFETY: the push that returned `true` handed `first` to us.
        unsafe { first.as_ref() }
            .next
            .store(ptr::null_mut(), Ordering::Relaxed);
        let mut cur = first.as_ptr();
        loop {
            let anchor = loop {
                // SAFETY: `cur` is a node of our chain.
                let node = unsafe { &*cur };
                // SAFETY: only the consumer touches the item of a published node.
                let item = node.item.with_mut(|p| unsafe { (*p).take() });
                out.lock().unwrap().push(item.expect("task consumed twice"));
                let next = node.next.load(Ordering::Relaxed);
                if next.is_null() {
                    break NonNull::new(cur).unwrap();
                }
                // SAFETY: consumed, not the anchor, never used again.
                let _ = unsafe { Node::free(NonNull::new_unchecked(cur)) };
                cur = next;
            };
            active.store(false, SeqCst);
            // SAFETY: we are the consumer and `anchor` is our consumed anchor.
            match unsafe { list.next_batch(anchor) } {
                None => return,
                Some(n) => {
                    assert!(!active.swap(true, SeqCst), "two consumers at once");
                    cur = n.as_ptr();
                }
            }
        }
    }

    /// Producers push concurrently; whoever finds the list idle consumes inline. Every task is
    /// consumed exactly once, per-producer order holds, and consumers never overlap.
    fn run_model(producers: usize, per_producer: usize) {
        let mut builder = loom::model::Builder::new();
        // Bounded preemptions keep the 3-thread model tractable (about half a minute in release);
        // 4 forced preemptions reach every interleaving of one push's swap / link store with the
        // consumer's CAS / link walk that we could construct by hand, and more.
        builder.preemption_bound = Some(4);
        builder.check(move || {
            let list = Arc::new(TaskList::<Item>::new());
            let out = Arc::new(Mutex::new(Vec::new()));
            let active = Arc::new(AtomicBool::new(false));
            let hs: Vec<_> = (0..producers)
                .map(|p| {
                    let (list, out, active) = (list.clone(), out.clone(), active.clone());
                    loom::thread::spawn(move || {
                        for i in 0..per_producer {
                            let node = Node::alloc(Some((p, i)));
                            if list.push(node) {
                                consume_model(&list, node, &out, &active);
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert!(
                list.head.load(SeqCst).is_null(),
                "queue not idle after all consumers exit"
            );
            let out = out.lock().unwrap();
            assert_eq!(
                out.len(),
                producers * per_producer,
                "lost or duplicated task: {out:?}"
            );
            for p in 0..producers {
                let mine: Vec<usize> = out.iter().filter(|t| t.0 == p).map(|t| t.1).collect();
                assert_eq!(mine, (0..per_producer).collect::<Vec<_>>());
            }
        });
    }

    /// A producer races `stop`: every accepted task is consumed before the single stop marker,
    /// which comes last; refused tasks are never consumed.
    #[test]
    fn loom_execution_queue_stop_races_execute() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let list = Arc::new(TaskList::<Option<usize>>::new());
            let gate = Arc::new(StopGate::new());
            let out = Arc::new(Mutex::new(Vec::new()));
            let active = Arc::new(AtomicBool::new(false));
            let accepted = Arc::new(Mutex::new(Vec::new()));
            let push = {
                let (list, out, active) = (list.clone(), out.clone(), active.clone());
                move |item: Option<usize>| {
                    let node = Node::alloc(Some(item));
                    if list.push(node) {
                        consume_model(&list, node, &out, &active);
                    }
                }
            };
            let producer = {
                let (gate, accepted, push) = (gate.clone(), accepted.clone(), push.clone());
                loom::thread::spawn(move || {
                    for i in 0..2 {
                        if gate.enter() {
                            push(Some(i));
                            accepted.lock().unwrap().push(i);
                        }
                        if gate.leave() {
                            push(None);
                        }
                    }
                })
            };
            if gate.stop() && gate.leave() {
                push(None);
            }
            assert!(!gate.stop(), "stop is idempotent");
            producer.join().unwrap();
            let out = out.lock().unwrap();
            let accepted = accepted.lock().unwrap();
            assert_eq!(
                out.last(),
                Some(&None),
                "stop marker must come last: {out:?}"
            );
            assert_eq!(
                out.iter().filter(|t| t.is_none()).count(),
                1,
                "one marker: {out:?}"
            );
            let consumed: Vec<usize> = out.iter().flatten().copied().collect();
            assert_eq!(
                consumed, *accepted,
                "accepted tasks, in order, before the marker"
            );
        });
    }

    #[test]
    fn loom_execution_queue_two_producers_two_tasks_each() {
        run_model(2, 2);
    }

    #[test]
    fn loom_execution_queue_three_producers_one_task_each() {
        run_model(3, 1);
    }
}
