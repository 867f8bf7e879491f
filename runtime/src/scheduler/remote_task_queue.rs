//! The queue through which threads that are not workers of a tag hand fibers to one of its
//! workers (brpc's `RemoteTaskQueue`).
//!
//! A mutex-protected FIFO plus a length hint. The hint is written under the lock after every
//! change (`Release`) and read without it (`Acquire`), so the owner and thieves can skip the lock
//! when the queue is empty, which is the common case. Missing an item because the hint was read
//! just before a push is harmless: the pusher signals a parking lot afterwards, and the parking
//! protocol (see `parking_lot.rs`) makes the reader look again. `loom_remote_queue_*` checks it.

use std::collections::VecDeque;

use crate::loom::atomic::{AtomicUsize, Ordering};
use crate::loom::Mutex;

/// A FIFO of `T` fed by any thread, drained by the owner worker and by thieves.
pub(crate) struct RemoteTaskQueue<T> {
    /// The items.
    queue: Mutex<VecDeque<T>>,
    /// Number of items, as of the last change (a hint read without the lock).
    len: AtomicUsize,
}

impl<T> RemoteTaskQueue<T> {
    pub(crate) fn new() -> Self {
        RemoteTaskQueue {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Appends `item`. The caller signals a parking lot afterwards.
    pub(crate) fn push(&self, item: T) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(item);
        self.len.store(q.len(), Ordering::Release);
    }

    /// Takes the oldest item, if the hint says there is one.
    pub(crate) fn pop(&self) -> Option<T> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let item = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        item
    }

    /// Items queued, as of the last change.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    /// Explores interleavings with at most three preemptions (the classic bound: almost all
    /// real concurrency bugs need fewer), so the model finishes in seconds.
    fn bounded_model(f: impl Fn() + Send + Sync + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    use crate::loom::{thread, Arc};
    use crate::scheduler::parking_lot::ParkingLot;

    /// A remote producer pushes and signals; the owner looks, reads the lot state, looks again,
    /// parks. Every pushed item is consumed exactly once, in FIFO order.
    #[test]
    fn loom_remote_queue_push_signal_pop() {
        bounded_model(|| {
            let q = Arc::new(RemoteTaskQueue::new());
            let lot = Arc::new(ParkingLot::new());
            let (q2, lot2) = (q.clone(), lot.clone());
            let producer = thread::spawn(move || {
                q2.push(1u32);
                lot2.signal(1);
                q2.push(2u32);
                lot2.signal(1);
            });
            let mut got = Vec::new();
            while got.len() < 2 {
                if let Some(v) = q.pop() {
                    got.push(v);
                    continue;
                }
                let st = lot.get_state();
                if let Some(v) = q.pop() {
                    got.push(v);
                    continue;
                }
                lot.wait(st);
            }
            assert_eq!(got, vec![1, 2]);
            producer.join().unwrap();
        });
    }
}
