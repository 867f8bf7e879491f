//! Recursive fan-out runs depth-first: the owner of a deque pops its newest task, thieves take the
//! oldest. A binary tree of spawn + join therefore keeps only a few root-to-leaf paths alive per
//! worker, instead of expanding breadth-first with one stack per queued node.
//!
//! Alone in its process so that the runtime's counters see only this tree.

use std::sync::atomic::{AtomicU64, Ordering};

use spindle_runtime::{spawn, stats};

/// Highest `fibers_alive` any leaf saw.
static PEAK_ALIVE: AtomicU64 = AtomicU64::new(0);

fn node(depth: u32) -> u64 {
    if depth == 0 {
        // Live fibers peak when a path reaches a leaf: sample there.
        PEAK_ALIVE.fetch_max(stats().fibers_alive, Ordering::Relaxed);
        return 1;
    }
    let a = spawn(move || node(depth - 1));
    let b = spawn(move || node(depth - 1));
    1 + a.join().unwrap() + b.join().unwrap()
}

#[test]
fn fanout_tree_live_fibers_stay_bounded_by_workers_times_depth() {
    const DEPTH: u32 = 12;
    for _ in 0..3 {
        PEAK_ALIVE.store(0, Ordering::Relaxed);
        let n = spawn(|| node(DEPTH)).join().unwrap();
        assert_eq!(n, (1 << (DEPTH + 1)) - 1);
        // At least 2: on one worker the oldest-first picks alone open a few subtrees.
        let workers = (stats().workers as u64).max(2);
        let peak = PEAK_ALIVE.load(Ordering::Relaxed);
        // Depth-first: per worker about one path of started nodes plus their queued siblings
        // (2 * depth), a few more paths opened by steals and by the periodic oldest-first pick.
        // A breadth-first expansion of this tree keeps thousands alive (8,191 nodes).
        let bound = 8 * workers * (u64::from(DEPTH) + 1);
        assert!(
            peak <= bound,
            "peak live fibers {peak} > {bound} (workers {workers}, depth {DEPTH})"
        );
    }
}
