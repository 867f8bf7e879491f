//! Parking lots: where idle workers sleep (brpc's `ParkingLot`).
//!
//! A lot is one futex word holding a signal counter (high bits) and the number of sleepers (low
//! bits). The protocol that makes wake-ups impossible to lose:
//!
//! 1. An idle worker reads the lot's [`State`] (the signal counter) *before* its last attempt
//!    to find work.
//! 2. If that attempt fails it calls [`ParkingLot::wait`] with that state: it adds itself to the
//!    sleepers with a read-modify-write, and sleeps only while the signal counter is unchanged.
//! 3. A producer makes work visible (deque push, remote queue push) *then* calls
//!    [`ParkingLot::signal`], which bumps the counter with a read-modify-write and wakes
//!    sleepers if the value it replaced counted any.
//!
//! Both sides modify the same word, so their read-modify-writes are totally ordered. If the
//! signal comes first, the sleeper's increment sees the new counter and it does not sleep (and
//! the futex refuses to sleep on a changed word anyway). If the sleeper's increment comes first,
//! the signal sees a sleeper and issues the wake. And a signal before the worker's state read
//! synchronises-with that read, so the worker's last look sees the work. No `SeqCst` reasoning
//! is needed, which is also why loom (which models `SeqCst` accesses only as acquire/release)
//! can check this file completely: see `loom_parking_lot_*`.

use crate::loom::atomic::Ordering;

use super::futex::Futex;

/// Bits of the word that count sleepers (enough for `MAX_WORKERS`).
const SLEEPER_BITS: u32 = 11;
const SLEEPER_MASK: u32 = (1 << SLEEPER_BITS) - 1;
/// One signal, in the counter's units. The counter wraps after 2^21 signals; a worker would
/// have to see exactly that many signals between its state read and its sleep to miss one.
const ONE_SIGNAL: u32 = 1 << SLEEPER_BITS;

/// A snapshot of a lot's signal counter, taken before the last look for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State(u32);

/// One parking lot. See the module doc for the protocol.
pub(crate) struct ParkingLot {
    /// Signal counter (high bits) and sleepers (low bits).
    futex: Futex,
}

impl ParkingLot {
    pub(crate) fn new() -> Self {
        ParkingLot {
            futex: Futex::new(0),
        }
    }

    /// Reads the state; take it before the last attempt to find work.
    pub(crate) fn get_state(&self) -> State {
        State(self.futex.word.load(Ordering::Acquire) & !SLEEPER_MASK)
    }

    /// Wakes up to `n` workers sleeping here, and makes any worker that read the state before this
    /// call skip its next sleep. Call it *after* making the work visible. Returns how many
    /// sleepers were woken (0 when nobody slept here).
    pub(crate) fn signal(&self, n: u32) -> usize {
        let prev = self.futex.word.fetch_add(ONE_SIGNAL, Ordering::AcqRel);
        if prev & SLEEPER_MASK != 0 {
            let woken = self.futex.wake(n);
            #[cfg(not(loom))]
            if woken < n as usize {
                // Some sleepers may be parked in the idle hook's poller (idle_hook.rs).
                if let Some(hook) = super::idle_hook::hook() {
                    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                    return woken + hook.unpark();
                }
            }
            woken
        } else {
            0
        }
    }

    /// Parks in the idle hook instead of the futex (see `idle_hook.rs`): registers as a
    /// sleeper, so signals see this worker, and lets `hook` block unless a signal arrived since
    /// `st` was read; after a park, unregisters and then calls the hook's `after_park`. Returns
    /// `false` when the hook declined (the caller then calls [`ParkingLot::wait`]), `true`
    /// otherwise (the caller looks for work again).
    #[cfg(not(loom))]
    pub(crate) fn park_in_hook(&self, st: State, hook: &dyn super::idle_hook::IdleHook) -> bool {
        let cur = self.futex.word.fetch_add(1, Ordering::AcqRel) + 1;
        // `None`: a signal arrived since `st`, the hook was not asked.
        let hook_parked = if cur & !SLEEPER_MASK == st.0 {
            let still_idle = || {
                // Pairs with the fence in `signal`: the hook published its ownership of the
                // poller before this, the signaller its counter bump before reading that.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                self.futex.word.load(Ordering::Acquire) & !SLEEPER_MASK == st.0
            };
            Some(hook.park(&still_idle))
        } else {
            None
        };
        self.futex.word.fetch_sub(1, Ordering::AcqRel);
        if hook_parked == Some(true) {
            // No longer a sleeper: what the hook spawns now signals only real sleepers.
            hook.after_park();
        }
        hook_parked.unwrap_or(true)
    }

    /// Sleeps unless a signal arrived since `st` was read. May return spuriously.
    pub(crate) fn wait(&self, st: State) {
        let mut cur = self.futex.word.fetch_add(1, Ordering::AcqRel) + 1;
        while cur & !SLEEPER_MASK == st.0 {
            self.futex.wait(cur, None);
            cur = self.futex.word.load(Ordering::Acquire);
        }
        self.futex.word.fetch_sub(1, Ordering::AcqRel);
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

    use crate::loom::atomic::AtomicU32;
    use crate::loom::{atomic::AtomicBool, thread, Arc};

    /// A worker that finds no work parks; a producer publishes work then signals. The worker must
    /// always end up seeing the work (a lost wake-up shows as a loom deadlock).
    #[test]
    fn loom_parking_lot_no_lost_wakeup() {
        loom::model(|| {
            let lot = Arc::new(ParkingLot::new());
            let work = Arc::new(AtomicBool::new(false));
            let (l2, w2) = (lot.clone(), work.clone());
            let producer = thread::spawn(move || {
                w2.store(true, Ordering::Release);
                l2.signal(1);
            });
            loop {
                if work.load(Ordering::Acquire) {
                    break;
                }
                let st = lot.get_state();
                if work.load(Ordering::Acquire) {
                    break;
                }
                lot.wait(st);
            }
            producer.join().unwrap();
        });
    }

    /// Two idle workers, two items, each signal wakes one: both items get taken.
    #[test]
    fn loom_parking_lot_two_workers() {
        bounded_model(|| {
            let lot = Arc::new(ParkingLot::new());
            let items = Arc::new(AtomicU32::new(0));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (lot, items) = (lot.clone(), items.clone());
                    thread::spawn(move || loop {
                        let take = |items: &AtomicU32| {
                            let mut cur = items.load(Ordering::Acquire);
                            while cur > 0 {
                                match items.compare_exchange(
                                    cur,
                                    cur - 1,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                ) {
                                    Ok(_) => return true,
                                    Err(v) => cur = v,
                                }
                            }
                            false
                        };
                        if take(&items) {
                            return;
                        }
                        let st = lot.get_state();
                        if take(&items) {
                            return;
                        }
                        lot.wait(st);
                    })
                })
                .collect();
            for _ in 0..2 {
                items.fetch_add(1, Ordering::Release);
                lot.signal(1);
            }
            for w in workers {
                w.join().unwrap();
            }
        });
    }
}
