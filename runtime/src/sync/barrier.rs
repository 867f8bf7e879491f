//! Barrier: `n` parties meet, then all proceed; reusable across generations.
//!
//! # Algorithm and invariants
//!
//! A [`Mutex`] guards `(arrived, generation)`; the butex word mirrors `generation`. A party that
//! is not the last records the generation `g`, unlocks and sleeps on the butex expecting `g`
//! until the word changes. The last party resets `arrived` to 0, bumps the generation (under the
//! mutex, so every earlier party of this generation recorded the old value), stores it in the
//! word and calls `wake_all`. Parties of the next generation record the new value, so a fast
//! party re-entering the barrier cannot release the slow ones of the next round early.
use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Release};

use super::Mutex;
use crate::butex::Butex;

/// Synchronises a fixed number of fibers/threads at a meeting point, generation after generation.
///
/// ```
/// use spindle_runtime::sync::Barrier;
/// use std::sync::Arc;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let hs: Vec<_> = (0..3)
///     .map(|_| {
///         let b = barrier.clone();
///         spindle_runtime::spawn(move || b.wait().is_leader())
///     })
///     .collect();
/// let leaders = hs.into_iter().map(|h| h.join().unwrap()).filter(|l| *l).count();
/// assert_eq!(leaders, 1);
/// ```
pub struct Barrier {
    /// Number of parties per generation.
    parties: u32,
    /// `(arrived in this generation, generation number)`.
    state: Mutex<(u32, u32)>,
    /// Word = current generation; parties sleep on it.
    generation: Butex,
}

/// What [`Barrier::wait`] tells a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    /// Whether this party was the last to arrive (exactly one per generation).
    leader: bool,
}

impl BarrierWaitResult {
    /// `true` for exactly one party per generation: the one whose arrival released the others.
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

impl Barrier {
    /// A barrier for `parties` parties (`0` is treated as `1`: `wait` never blocks).
    pub const fn new(parties: u32) -> Self {
        Barrier {
            parties: if parties == 0 { 1 } else { parties },
            state: Mutex::new((0, 0)),
            generation: Butex::new(0),
        }
    }

    /// Parks the caller until `parties` callers (including it) have called `wait` in this
    /// generation; then all return and the barrier is ready for the next generation.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut st = self.state.lock();
        st.0 += 1;
        if st.0 == self.parties {
            st.0 = 0;
            st.1 = st.1.wrapping_add(1);
            self.generation.value().store(st.1, Release);
            drop(st);
            self.generation.wake_all();
            return BarrierWaitResult { leader: true };
        }
        let g = st.1;
        drop(st);
        while self.generation.value().load(Acquire) == g {
            let _ = self.generation.wait(g, None);
        }
        BarrierWaitResult { leader: false }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn generations_do_not_overlap() {
        let parties = 4;
        let rounds = if cfg!(miri) { 3 } else { 50 };
        let b = Arc::new(Barrier::new(parties));
        let arrived = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..parties)
            .map(|_| {
                let (b, arrived) = (b.clone(), arrived.clone());
                crate::spawn(move || {
                    let mut leaders = 0;
                    for round in 0..rounds {
                        arrived.fetch_add(1, SeqCst);
                        leaders += u32::from(b.wait().is_leader());
                        // Everybody of this round arrived before anybody left it.
                        assert!(arrived.load(SeqCst) >= (round + 1) * parties);
                        b.wait();
                    }
                    leaders
                })
            })
            .collect();
        let leaders: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(leaders, rounds);
    }
}
