//! Loom model of the [`crate::butex::Butex`] contract, for the `loom_*` models of the mutex and
//! condition variable (test-only, `cfg(loom)`).
//!
//! All model butexes of one model share a *world*: one loom mutex over every wait queue, so that
//! `requeue` can move waiters from one butex's queue to another's atomically, exactly as the
//! contract says (the thread stand-in cannot: its `requeue` wakes everybody). A waiter enqueues
//! its ticket and sleeps until a wake marks the ticket; a moved ticket is woken by a later wake
//! of the butex it was moved to. With a deadline, `wait` times out at once (a legal outcome that
//! makes every timed path reachable).
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::condvar::CondWord;
use super::mutex::LockWord;
use crate::butex::WaitError;
use crate::loom::atomic::AtomicU32;
use crate::loom::{Arc, Condvar, Mutex};

/// Wait queues of every model butex of one model.
#[derive(Default)]
pub(crate) struct Queues {
    /// Per butex id: tickets of sleepers, FIFO.
    queues: Vec<VecDeque<usize>>,
    /// Per ticket: woken yet?
    woken: Vec<bool>,
}

/// The shared world: queues plus the condvar sleepers block on.
pub(crate) type World = Arc<(Mutex<Queues>, Condvar)>;

/// A fresh world (create one per model iteration).
pub(crate) fn world() -> World {
    Arc::new((Mutex::new(Queues::default()), Condvar::new()))
}

/// A butex in a [`World`].
pub(crate) struct ModelButex {
    /// Index of this butex's queue in the world.
    id: usize,
    /// The word.
    word: AtomicU32,
    /// Queues shared with the other butexes of the model.
    world: World,
}

impl ModelButex {
    /// A butex of `world` whose word starts at `value`.
    pub(crate) fn new(world: &World, value: u32) -> Self {
        let mut q = world.0.lock().unwrap();
        q.queues.push(VecDeque::new());
        ModelButex {
            id: q.queues.len() - 1,
            word: AtomicU32::new(value),
            world: world.clone(),
        }
    }

    /// Wakes the first sleeper of `q`'s queue `id`, if any.
    fn wake_first(&self, q: &mut Queues) -> usize {
        match q.queues[self.id].pop_front() {
            Some(t) => {
                q.woken[t] = true;
                self.world.1.notify_all();
                1
            }
            None => 0,
        }
    }
}

impl LockWord for ModelButex {
    fn load(&self, order: Ordering) -> u32 {
        self.word.load(order)
    }
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        self.word.swap(v, order)
    }
    fn compare_exchange(&self, c: u32, n: u32, s: Ordering, f: Ordering) -> Result<u32, u32> {
        self.word.compare_exchange(c, n, s, f)
    }
    fn wait(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut q = self.world.0.lock().unwrap();
        if self.word.load(Ordering::SeqCst) != expected {
            return Err(WaitError::WouldBlock);
        }
        if deadline.is_some() {
            return Err(WaitError::TimedOut);
        }
        let ticket = q.woken.len();
        q.woken.push(false);
        q.queues[self.id].push_back(ticket);
        while !q.woken[ticket] {
            q = self.world.1.wait(q).unwrap();
        }
        Ok(())
    }
    fn wake_one(&self) -> usize {
        let mut q = self.world.0.lock().unwrap();
        self.wake_first(&mut q)
    }
}

impl CondWord for ModelButex {
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.word.fetch_add(v, order)
    }
    fn requeue(&self, to: &Self) -> usize {
        let mut q = self.world.0.lock().unwrap();
        let woken = self.wake_first(&mut q);
        let rest = std::mem::take(&mut q.queues[self.id]);
        q.queues[to.id].extend(rest);
        woken
    }
}
