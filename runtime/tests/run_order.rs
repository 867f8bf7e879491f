//! Run-queue fairness on one worker, where no thief can rescue a starved fiber: the owner pops its
//! deque newest-first, yet a fiber queued before an endless spawning storm still runs soon, and
//! yielding fibers take turns round-robin.
//!
//! Alone in its process: it starts the runtime with a single worker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use spindle_runtime::{init, spawn, yield_now, Config};

fn one_worker() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        init(Config {
            fiber_concurrency: 1,
            ..Config::default()
        })
        .unwrap()
    });
}

/// Storm nodes spawned so far.
static STORM: AtomicU64 = AtomicU64::new(0);
/// Set by the old fiber when it finally runs.
static OLD_RAN: AtomicBool = AtomicBool::new(false);
/// The storm stops on its own past this many nodes, so a starving scheduler fails the test
/// instead of hanging it.
const STORM_CAP: u64 = 200_000;

/// Spawns two more of itself (detached) until the old fiber ran: the deque never drains.
fn storm_node() {
    if OLD_RAN.load(Ordering::Relaxed) || STORM.fetch_add(2, Ordering::Relaxed) >= STORM_CAP {
        return;
    }
    drop(spawn(storm_node));
    drop(spawn(storm_node));
}

#[test]
fn queued_fiber_is_not_starved_by_a_spawning_storm() {
    one_worker();
    let seen = spawn(|| {
        let old = spawn(|| {
            OLD_RAN.store(true, Ordering::Relaxed);
            STORM.load(Ordering::Relaxed)
        });
        drop(spawn(storm_node));
        old.join().unwrap()
    })
    .join()
    .unwrap();
    // Newest-first alone would run the old fiber only after the storm died out at the cap; the
    // periodic oldest-first pick runs it after a few thousand storm nodes at most.
    assert!(
        seen < STORM_CAP / 4,
        "the old fiber ran only after {seen} storm spawns"
    );
}

#[test]
fn yielding_fibers_take_turns() {
    one_worker();
    const FIBERS: usize = 4;
    const ROUNDS: usize = 50;
    let log = Arc::new(Mutex::new(Vec::new()));
    spawn({
        let log = log.clone();
        move || {
            let hs: Vec<_> = (0..FIBERS)
                .map(|i| {
                    let log = log.clone();
                    spawn(move || {
                        for _ in 0..ROUNDS {
                            log.lock().unwrap().push(i);
                            yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    })
    .join()
    .unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), FIBERS * ROUNDS);
    // A yielder goes behind every other ready fiber: the log is a sequence of rounds in which
    // every fiber has exactly one turn.
    for (r, round) in log.chunks(FIBERS).enumerate() {
        let mut seen = [false; FIBERS];
        for &i in round {
            seen[i] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "round {r} is {round:?}, not one turn each: {log:?}"
        );
    }
}
