//! The ownership protocol of the write path as a generic queue, so loom can check the real
//! code (`loom_*` tests): many producers exchange nodes into `head`; the producer that found
//! it empty becomes the single owner and consumes; ownership is released by a CAS.
//!
//! # Protocol and invariants
//!
//! - [`WriteQueue::push`]: the node is created with `next = UNCONNECTED`; `prev =
//!   head.swap(node)`. If `prev` is non-null, store `node.next = prev` (Release) and return
//!   `None`: the current owner will consume the item. Otherwise set `next = null` and return
//!   the owner's [`Batch`] holding the node.
//! - The owner consumes items front to back (FIFO). [`Batch::pop_done`] frees consumed
//!   nodes except `last` (the newest node taken, the back of the batch).
//! - [`WriteQueue::try_release`] (everything consumed): `head.CAS(last → null)`. Success ends
//!   ownership (frees `last`). Failure: newer nodes were pushed; load `head`, walk `next`
//!   from it back to `last` (waiting out `UNCONNECTED`), append them oldest-first, and
//!   `last = head`. [`WriteQueue::gather`] does the same walk without trying to release, so
//!   an owner can take what was pushed meanwhile before it consumes (one `writev` for all).
//!
//! 1. At most one owner at a time: ownership is gained only by swapping a null out of `head`
//!    and lost only by the owner's successful CAS to null.
//! 2. `last` is freed only after the CAS took `head` off it (else an address reused by a new
//!    node would make the CAS succeed wrongly: ABA).
//! 3. Every pushed item is consumed exactly once, in push order per producer: the walk from
//!    `head` reaches `last` through every node pushed after it.

use crate::loom::atomic::{AtomicPtr, Ordering};
use smallvec::{smallvec, SmallVec};
use std::ptr::{self, NonNull};

/// A node: one item and the previous head.
struct Node<T> {
    item: T,
    next: AtomicPtr<Node<T>>,
}

/// The sentinel of a node whose `next` is not stored yet; no allocation lives at it.
fn unconnected<T>() -> *mut Node<T> {
    NonNull::dangling().as_ptr()
}

/// Gives the pusher that sits between its swap and its store a chance to run.
fn backoff(spins: &mut u32) {
    *spins += 1;
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        spindle_runtime::yield_now();
    }
}

/// A multi-producer queue with a single, dynamically chosen owner.
#[derive(Debug)]
pub(crate) struct WriteQueue<T> {
    /// Newest node; null = no owner.
    head: AtomicPtr<Node<T>>,
}

// SAFETY: items move between threads (producer → owner); nodes are reached only by the owner.
unsafe impl<T: Send> Send for WriteQueue<T> {}
// SAFETY: as above; shared access only performs atomic operations on `head`.
unsafe impl<T: Send> Sync for WriteQueue<T> {}

/// The nodes an owner holds, oldest first: `fifo[start..]` (`last` is the back). Inline for
/// the usual few nodes, so becoming the owner allocates nothing; consumed nodes are skipped by
/// `start` and compacted away now and then.
pub(crate) struct Batch<T> {
    fifo: SmallVec<[*mut Node<T>; 8]>,
    start: usize,
    last: *mut Node<T>,
}

// SAFETY: the nodes of a batch are reachable only by the batch's holder (invariant 1), so
// moving the batch moves exclusive ownership of its items.
unsafe impl<T: Send> Send for Batch<T> {}

impl<T> WriteQueue<T> {
    /// An empty queue without owner.
    pub(crate) fn new() -> WriteQueue<T> {
        WriteQueue {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Whether nobody owns the queue (a snapshot).
    #[allow(dead_code)]
    pub(crate) fn is_idle(&self) -> bool {
        self.head.load(Ordering::Acquire).is_null()
    }

    /// Pushes `item`; `Some(batch)` if the caller became the owner (the batch holds `item`).
    pub(crate) fn push(&self, item: T) -> Option<Batch<T>> {
        let node = Box::into_raw(Box::new(Node {
            item,
            next: AtomicPtr::new(unconnected()),
        }));
        let prev = self.head.swap(node, Ordering::AcqRel);
        if !prev.is_null() {
            // SAFETY: `node` stays alive: the owner frees it only after reaching it through
            // `next`, which needs this very store first.
            unsafe { (*node).next.store(prev, Ordering::Release) };
            return None;
        }
        // SAFETY: we own the queue (head was null), so `node` is ours alone.
        unsafe { (*node).next.store(ptr::null_mut(), Ordering::Relaxed) };
        Some(Batch {
            fifo: smallvec![node],
            start: 0,
            last: node,
        })
    }

    /// The owner consumed everything in `b`: releases ownership (`true`, `b` is then empty)
    /// or takes the items pushed meanwhile into `b` (`false`).
    pub(crate) fn try_release(&self, b: &mut Batch<T>) -> bool {
        if self
            .head
            .compare_exchange(b.last, ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            for n in b.fifo.drain(b.start..) {
                // SAFETY: nodes of the batch are ours; after the CAS nobody compares against
                // `last` any more (invariant 2); each is freed once.
                drop(unsafe { Box::from_raw(n) });
            }
            b.fifo.clear(); // the consumed prefix: freed already
            b.start = 0;
            return true;
        }
        self.gather(b);
        false
    }

    /// Takes the items pushed since the owner last looked into the back of `b` (oldest
    /// first), so that one consumption round covers them too. Cheap when nothing is new: one
    /// load of `head`.
    pub(crate) fn gather(&self, b: &mut Batch<T>) {
        let new_head = self.head.load(Ordering::Acquire);
        if new_head == b.last {
            return;
        }
        let first_new = b.fifo.len();
        let mut p = new_head;
        let mut spins = 0;
        while p != b.last && !p.is_null() {
            // SAFETY: `p` was pushed after `last` and not taken by anyone yet: alive.
            let next = unsafe { (*p).next.load(Ordering::Acquire) };
            if next == unconnected() {
                backoff(&mut spins);
                continue;
            }
            b.fifo.push(p);
            p = next;
        }
        // The walk went newest to oldest; the batch is oldest first.
        b.fifo[first_new..].reverse();
        b.last = new_head;
    }
}

impl<T> Drop for WriteQueue<T> {
    fn drop(&mut self) {
        // A queue is dropped only without owner (the owner holds a handle keeping it alive).
        debug_assert!(self.head.load(Ordering::Relaxed).is_null());
    }
}

impl<T> Batch<T> {
    /// The items, oldest first.
    pub(crate) fn items_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        // SAFETY: the nodes are owned by this batch (alive, touched by nobody else) and
        // distinct, so the mutable references do not alias.
        self.fifo[self.start..]
            .iter()
            .map(|&n| unsafe { &mut (*n).item })
    }

    /// Frees consumed items (`done(item)`) at the front, keeping `last` (invariant 2).
    pub(crate) fn pop_done(&mut self, mut done: impl FnMut(&mut T) -> bool) {
        while self.fifo.len() - self.start > 1 {
            let front = self.fifo[self.start];
            // SAFETY: `front` is owned by this batch.
            if !done(unsafe { &mut (*front).item }) {
                break;
            }
            self.start += 1;
            // SAFETY: removed from the batch above and not `last`: freed exactly once.
            drop(unsafe { Box::from_raw(front) });
        }
        // Compact once the skipped prefix is most of the vector (amortised O(1) per node).
        if self.start > 8 && self.start * 2 > self.fifo.len() {
            self.fifo.drain(..self.start);
            self.start = 0;
        }
    }
}

/// An owner as the write path drives one, for the tests: gathers, consumes every item into
/// `seen`, and loops until ownership is released.
#[cfg(test)]
fn own_for_test(
    q: &WriteQueue<Option<u32>>,
    mut b: Batch<Option<u32>>,
    seen: &crate::loom::Mutex<Vec<u32>>,
) {
    loop {
        q.gather(&mut b);
        for it in b.items_mut() {
            if let Some(v) = it.take() {
                seen.lock().unwrap().push(v);
            }
        }
        b.pop_done(|it| it.is_none());
        if q.try_release(&mut b) {
            return;
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::own_for_test as own;
    use super::*;
    use crate::loom::{thread, Arc, Mutex};

    /// Two producers race (one pushing twice, so a push can meet an owner, an idle queue, or
    /// its own ownership): every item is consumed exactly once, per-producer order holds,
    /// and the queue ends without owner. Preemption-bounded to keep the model tractable.
    #[test]
    fn loom_write_queue_exchange_and_handoff() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let q = Arc::new(WriteQueue::<Option<u32>>::new());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let producer = {
                let (q, seen) = (q.clone(), seen.clone());
                thread::spawn(move || {
                    for k in 0..2u32 {
                        if let Some(b) = q.push(Some(k)) {
                            own(&q, b, &seen);
                        }
                    }
                })
            };
            if let Some(b) = q.push(Some(100)) {
                own(&q, b, &seen);
            }
            producer.join().unwrap();
            assert!(q.is_idle());
            let mut v = seen.lock().unwrap().clone();
            let order: Vec<_> = v.iter().filter(|x| **x < 100).copied().collect();
            assert_eq!(order, vec![0, 1]);
            v.sort_unstable();
            assert_eq!(v, vec![0, 1, 100]);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::own_for_test as own;
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An owner that gathers sees the items pushed after it became the owner, oldest first,
    /// in its first round; nothing is left over and every node is freed (miri checks the
    /// frees).
    #[test]
    fn gather_takes_newer_items_oldest_first() {
        let q = WriteQueue::new();
        let mut b = q
            .push(0u32)
            .expect("an idle queue makes the pusher the owner");
        for i in 1..5 {
            assert!(q.push(i).is_none());
        }
        q.gather(&mut b);
        let items: Vec<u32> = b.items_mut().map(|x| *x).collect();
        assert_eq!(items, [0, 1, 2, 3, 4]);
        // Nothing new: gathering again changes nothing.
        q.gather(&mut b);
        assert_eq!(b.items_mut().count(), 5);
        b.pop_done(|_| true);
        assert_eq!(b.items_mut().count(), 1, "`last` stays until the release");
        assert!(q.try_release(&mut b));
        assert!(q.is_idle());
    }

    /// Threads push while the owner of the moment gathers and consumes: every item is
    /// consumed once, each producer's items in its order.
    #[test]
    fn producers_and_gathering_owners_lose_nothing() {
        const THREADS: u32 = 3;
        const PER_THREAD: u32 = if cfg!(miri) { 20 } else { 2000 };
        let q = Arc::new(WriteQueue::<Option<u32>>::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (q, seen) = (q.clone(), seen.clone());
                std::thread::spawn(move || {
                    for k in 0..PER_THREAD {
                        if let Some(b) = q.push(Some(t * PER_THREAD + k)) {
                            own(&q, b, &seen);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(q.is_idle());
        let seen = seen.lock().unwrap();
        for t in 0..THREADS {
            let mine: Vec<u32> = seen
                .iter()
                .copied()
                .filter(|v| v / PER_THREAD == t)
                .collect();
            let expected: Vec<u32> = (t * PER_THREAD..(t + 1) * PER_THREAD).collect();
            assert_eq!(mine, expected, "producer {t}");
        }
    }
}
