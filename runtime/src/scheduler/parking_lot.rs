//! Parking lots: where idle workers sleep (brpc's `ParkingLot`).
//!
//! A lot is a futex word counting signals plus a count of sleepers. The protocol that makes
//! wake-ups impossible to lose:
//!
//! 1. An idle worker reads the lot's [`State`] *before* its last attempt to find work.
//! 2. If that attempt fails it calls [`ParkingLot::wait`] with the state it read; the futex puts
//!    it to sleep only if the word is still unchanged.
//! 3. A producer makes work visible (deque push, remote queue push) *then* calls
//!    [`ParkingLot::signal`], which bumps the word.
//!
//! If the producer's bump came after the worker's read, the worker's wait sees a changed word and
//! returns at once; if it came before, the worker's last attempt (which follows the read, and the
//! bump synchronises-with it) sees the work. Either way nothing sleeps beside available work.
//!
//! The sleeper count only saves the `futex_wake` syscall when nobody sleeps. It is a Dekker pair
//! with the word: the sleeper increments `sleepers` then re-checks the word (inside the futex),
//! the signaller bumps the word then reads `sleepers`, both `SeqCst`; so at least one of them
//! sees the other and no signal is dropped. `loom_parking_lot_*` model-checks this file.

use crate::loom::atomic::{AtomicU32, Ordering};

use super::futex::Futex;

/// A snapshot of a lot, taken before the last look for work (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State(u32);

/// One parking lot. See the module doc for the protocol.
pub(crate) struct ParkingLot {
    /// Signal counter (the futex word); every signal adds one.
    futex: Futex,
    /// Workers inside `wait` (or about to be).
    sleepers: AtomicU32,
}

impl ParkingLot {
    pub(crate) fn new() -> Self {
        ParkingLot {
            futex: Futex::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Reads the state; take it before the last attempt to find work.
    pub(crate) fn get_state(&self) -> State {
        State(self.futex.word.load(Ordering::SeqCst))
    }

    /// Wakes up to `n` workers sleeping here, and makes any worker that read the state before this
    /// call skip its next sleep. Call it *after* making the work visible. Returns how many
    /// sleepers were woken (0 when nobody slept here).
    pub(crate) fn signal(&self, n: u32) -> usize {
        self.futex.word.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.futex.wake(n)
        } else {
            0
        }
    }

    /// Sleeps unless a signal arrived since `st` was read. May return spuriously.
    pub(crate) fn wait(&self, st: State) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        self.futex.wait(st.0, None);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
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
        loom::model(|| {
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
