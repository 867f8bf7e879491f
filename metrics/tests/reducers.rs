//! Exact results of the per-thread reducers under many threads, thread-exit folding, and updates
//! from migrating fibers.

use spindle_metrics::{Adder, FloatAdder, IntRecorder, Maxer, Miner};
use std::sync::{Arc, Barrier};

const THREADS: usize = 16;
const PER_THREAD: i64 = 20_000;

/// Runs `f(thread_index)` on `THREADS` threads started together and joins them.
fn on_threads(f: impl Fn(usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(THREADS));
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f(t)
            })
        })
        .collect();
    for h in hs {
        h.join().expect("worker thread panicked");
    }
}

#[test]
fn adder_sums_exactly_after_join() {
    let a = Arc::new(Adder::new());
    let a2 = a.clone();
    on_threads(move |t| {
        for i in 0..PER_THREAD {
            a2.add(i + t as i64);
        }
    });
    let per_thread: i64 = (0..PER_THREAD).sum();
    let offsets: i64 = (0..THREADS as i64).map(|t| t * PER_THREAD).sum();
    assert_eq!(a.value(), per_thread * THREADS as i64 + offsets);
}

#[test]
fn readers_see_live_threads_and_exited_ones() {
    let a = Arc::new(Adder::new());
    let (added, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let h = {
        let (a, added, release) = (a.clone(), added.clone(), release.clone());
        std::thread::spawn(move || {
            a.add(40);
            added.wait(); // the main thread reads while this thread is alive
            release.wait();
            a.add(2);
        })
    };
    added.wait();
    assert_eq!(a.value(), 40, "a live thread's cell is read");
    release.wait();
    h.join().unwrap();
    assert_eq!(a.value(), 42, "an exited thread's cell is folded in");
    // Many short-lived threads: every one folds on exit.
    for _ in 0..50 {
        let a = a.clone();
        std::thread::spawn(move || a.add(1)).join().unwrap();
    }
    assert_eq!(a.value(), 92);
}

#[test]
fn float_adder_and_int_recorder() {
    let f = Arc::new(FloatAdder::new());
    let r = Arc::new(IntRecorder::new());
    let (f2, r2) = (f.clone(), r.clone());
    on_threads(move |t| {
        for _ in 0..1000 {
            f2.add(0.5);
            r2.record(t as i64);
        }
    });
    assert_eq!(f.value(), 0.5 * 1000.0 * THREADS as f64);
    let (sum, count) = r.totals();
    assert_eq!(count, 1000 * THREADS as u64);
    assert_eq!(sum, 1000 * (0..THREADS as i64).sum::<i64>());
    assert_eq!(r.average(), (THREADS as f64 - 1.0) / 2.0);
    assert_eq!(IntRecorder::new().average(), 0.0);
}

#[test]
fn maxer_and_miner_are_exact() {
    let mx = Arc::new(Maxer::new());
    let mn = Arc::new(Miner::new());
    assert_eq!(mx.value(), i64::MIN);
    assert_eq!(mn.value(), i64::MAX);
    let (mx2, mn2) = (mx.clone(), mn.clone());
    on_threads(move |t| {
        for i in 0..PER_THREAD {
            let v = (i * 7919 + t as i64 * 104_729) % 1_000_003 - 500_000;
            mx2.record(v);
            mn2.record(v);
        }
    });
    let all = (0..THREADS as i64)
        .flat_map(|t| (0..PER_THREAD).map(move |i| (i * 7919 + t * 104_729) % 1_000_003 - 500_000));
    let (want_max, want_min) = all.fold((i64::MIN, i64::MAX), |(a, b), v| (a.max(v), b.min(v)));
    assert_eq!(mx.value(), want_max);
    assert_eq!(mn.value(), want_min);
}

#[test]
fn fibers_update_the_cell_of_the_thread_they_run_on() {
    let a = Arc::new(Adder::new());
    let hs: Vec<_> = (0..64)
        .map(|_| {
            let a = a.clone();
            spindle_runtime::spawn(move || {
                for _ in 0..100 {
                    a.add(1);
                    // Migrate between updates: the next add must use the new thread's cell.
                    spindle_runtime::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("fiber panicked");
    }
    assert_eq!(a.value(), 6400);
}
