//! `flush_deferred`: every fiber of a deferred batch runs, and when the batch is still queued
//! after the delay, the worker that deferred it wakes another one to share it. Also
//! `defer_wake_signals`: fibers woken under it wait for their waker's worker (or its flush).
//!
//! Alone in its process: it starts the runtime with two workers, both idle before each test.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spindle_runtime::{flush_deferred, init, spawn, spawn_no_signal, Config};

/// The tests run one at a time: each needs both workers idle when it starts.
static SERIAL: Mutex<()> = Mutex::new(());

fn two_workers() -> std::sync::MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        init(Config {
            fiber_concurrency: 2,
            ..Config::default()
        })
        .unwrap()
    });
    serial
}

/// Keeps the worker busy without switching out.
fn compute_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn a_deferred_batch_runs_and_is_shared_once_due() {
    let _serial = two_workers();
    // Each fiber computes for 2 ms, so the batch (20 of them) is still queued long after the
    // 200 µs delay: the first check between two fibers must wake the sleeping worker.
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let ran = Arc::new(AtomicUsize::new(0));
    let (t2, r2) = (threads.clone(), ran.clone());
    spawn(move || {
        // Both workers go to sleep; the timer's wake-up then wakes one of them for this fiber.
        spindle_runtime::sleep(Duration::from_millis(20));
        let batch: Vec<_> = (0..20)
            .map(|_| {
                let (t, r) = (t2.clone(), r2.clone());
                spawn_no_signal(move || {
                    compute_for(Duration::from_millis(2));
                    t.lock().unwrap().insert(std::thread::current().id());
                    r.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        flush_deferred(Duration::from_micros(200));
        for h in batch {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 20);
    assert_eq!(
        threads.lock().unwrap().len(),
        2,
        "the second worker never took part: the deferred signal was not paid"
    );
}

#[test]
fn the_watchdog_shares_the_batch_of_a_worker_held_by_a_long_fiber() {
    let _serial = two_workers();
    // The deferring fiber then computes for 300 ms without switching out: its worker never
    // checks the deferral, so only the watchdog can wake the other (sleeping) worker, which must
    // run the whole batch while the computation goes on.
    let computing = Arc::new(AtomicBool::new(true));
    let ran_meanwhile = Arc::new(AtomicUsize::new(0));
    let (c2, r2) = (computing.clone(), ran_meanwhile.clone());
    spawn(move || {
        spindle_runtime::sleep(Duration::from_millis(20));
        let batch: Vec<_> = (0..4)
            .map(|_| {
                let (c, r) = (c2.clone(), r2.clone());
                spawn_no_signal(move || {
                    if c.load(Ordering::SeqCst) {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        flush_deferred(Duration::from_micros(200));
        compute_for(Duration::from_millis(300));
        c2.store(false, Ordering::SeqCst);
        for h in batch {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(
        ran_meanwhile.load(Ordering::SeqCst),
        4,
        "the batch waited for the long fiber: the watchdog did not wake a worker"
    );
}

#[test]
fn short_deferred_batches_all_run() {
    let _serial = two_workers();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    spawn(move || {
        for _ in 0..200 {
            let batch: Vec<_> = (0..16)
                .map(|_| {
                    let r = r2.clone();
                    spawn_no_signal(move || {
                        r.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            flush_deferred(Duration::from_millis(5));
            for h in batch {
                h.join().unwrap();
            }
        }
    })
    .join()
    .unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 200 * 16);
}

#[test]
fn on_a_plain_thread_it_is_a_flush() {
    let _serial = two_workers();
    let ran = Arc::new(AtomicUsize::new(0));
    let batch: Vec<_> = (0..8)
        .map(|_| {
            let r = ran.clone();
            spawn_no_signal(move || {
                r.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    flush_deferred(Duration::from_secs(3600));
    for h in batch {
        h.join().unwrap();
    }
    assert_eq!(ran.load(Ordering::Relaxed), 8);
}

/// Parks `n` fibers on `gate` until it opens, then wakes them all from one fiber (under
/// `defer_wake_signals` when `defer`) and computes for 100 ms without switching out. Returns
/// how many woken fibers ran during that computation (only the idle worker can run them).
fn woken_during_computation(n: usize, defer: bool) -> usize {
    use spindle_runtime::butex::Butex;
    let gate = Arc::new(Butex::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let (g, r) = (gate.clone(), ran.clone());
            spawn(move || {
                while g.value().load(Ordering::Acquire) == 0 {
                    let _ = g.wait(0, None);
                }
                r.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    let (g, r) = (gate.clone(), ran.clone());
    let meanwhile = spawn(move || {
        // Every waiter parks and both workers go to sleep; the timer wakes one for this fiber.
        spindle_runtime::sleep(Duration::from_millis(20));
        let open = || {
            g.value().store(1, Ordering::Release);
            g.wake_all();
        };
        if defer {
            spindle_runtime::defer_wake_signals(open);
        } else {
            open();
        }
        compute_for(Duration::from_millis(100));
        let meanwhile = r.load(Ordering::Relaxed);
        spindle_runtime::flush();
        meanwhile
    })
    .join()
    .unwrap();
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(ran.load(Ordering::Relaxed), n, "a woken fiber never ran");
    meanwhile
}

#[test]
fn wakes_under_defer_wake_signals_leave_the_idle_worker_asleep() {
    let _serial = two_workers();
    // Without the deferral each wake signals, and the idle worker runs woken fibers while the
    // waker computes (this checks the test's premise).
    assert!(
        woken_during_computation(8, false) > 0,
        "plain wakes did not wake the idle worker"
    );
    // With it, the woken fibers wait for the waker's worker (or its flush).
    assert_eq!(
        woken_during_computation(8, true),
        0,
        "a wake under defer_wake_signals woke the idle worker"
    );
}
