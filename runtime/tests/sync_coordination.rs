//! Semaphore, CountdownEvent, Barrier and Once from fibers and plain threads.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::sync::{Barrier, CountdownEvent, Once, Semaphore, TimedOut};
use spindle_runtime::{spawn, yield_now};

#[test]
fn semaphore_limits_concurrency() {
    let permits = 3;
    let sem = Arc::new(Semaphore::new(permits));
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10)
        .map(|_| {
            let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
            spawn(move || {
                for _ in 0..300 {
                    sem.acquire();
                    let now = inside.fetch_add(1, SeqCst) + 1;
                    assert!(now <= permits as usize);
                    peak.fetch_max(now, SeqCst);
                    yield_now();
                    inside.fetch_sub(1, SeqCst);
                    sem.release(1);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(peak.load(SeqCst) <= permits as usize);
    assert_eq!(sem.available_permits(), permits);
}

#[test]
fn semaphore_release_n_wakes_n_and_timeout_fires() {
    let sem = Arc::new(Semaphore::new(0));
    assert_eq!(
        sem.acquire_timeout(Instant::now() + Duration::from_millis(5)),
        Err(TimedOut)
    );
    let got = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..5)
        .map(|_| {
            let (sem, got) = (sem.clone(), got.clone());
            spawn(move || {
                sem.acquire();
                got.fetch_add(1, SeqCst);
            })
        })
        .collect();
    sem.release(3);
    sem.release(2);
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(got.load(SeqCst), 5);
    assert_eq!(sem.available_permits(), 0);
}

#[test]
fn countdown_event_wait_timed_wait_reset() {
    let ev = Arc::new(CountdownEvent::new(5));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = ev.clone();
            spawn(move || ev.wait())
        })
        .collect();
    let signallers: Vec<_> = (0..5)
        .map(|_| {
            let ev = ev.clone();
            std::thread::spawn(move || ev.signal(1))
        })
        .collect();
    let zeroed: usize = signallers
        .into_iter()
        .map(|h| usize::from(h.join().unwrap()))
        .sum();
    assert_eq!(zeroed, 1, "exactly one signal brings the count to zero");
    for w in waiters {
        w.join().unwrap();
    }
    ev.reset(2);
    assert_eq!(
        ev.timed_wait(Instant::now() + Duration::from_millis(5)),
        Err(TimedOut)
    );
    ev.add_count(1);
    ev.signal(3);
    assert_eq!(ev.timed_wait(Instant::now()), Ok(()));
}

#[test]
fn barrier_generations_and_one_leader_each() {
    let parties = 5;
    let rounds = 100;
    let barrier = Arc::new(Barrier::new(parties));
    let phase = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..parties)
        .map(|_| {
            let (barrier, phase) = (barrier.clone(), phase.clone());
            spawn(move || {
                let mut leads = 0;
                for r in 0..rounds {
                    assert_eq!(
                        phase.load(SeqCst) / parties as usize,
                        r,
                        "a party ran ahead"
                    );
                    phase.fetch_add(1, SeqCst);
                    barrier.wait();
                    if barrier.wait().is_leader() {
                        leads += 1;
                    }
                }
                leads
            })
        })
        .collect();
    let leads: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(leads, rounds);
}

#[test]
fn once_under_races_runs_once_and_publishes() {
    for _ in 0..20 {
        let once = Arc::new(Once::new());
        let value = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let body = {
            let (once, value, runs) = (once.clone(), value.clone(), runs.clone());
            move || {
                once.call_once(|| {
                    runs.fetch_add(1, SeqCst);
                    yield_now();
                    value.store(42, SeqCst);
                });
                assert_eq!(value.load(SeqCst), 42);
            }
        };
        let fibers: Vec<_> = (0..3).map(|_| spawn(body.clone())).collect();
        let threads: Vec<_> = (0..3).map(|_| std::thread::spawn(body.clone())).collect();
        for f in fibers {
            f.join().unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(runs.load(SeqCst), 1);
        assert!(once.is_completed());
    }
}

#[test]
fn once_retries_after_panicking_initializer_with_waiters() {
    let once = Arc::new(Once::new());
    let o2 = once.clone();
    // The waiter starts only once the first initializer runs (a fixed sleep here let a slow
    // thread start lose the race under load: the waiter then initialised first).
    let inside = Arc::new(AtomicUsize::new(0));
    let i2 = inside.clone();
    let panicker = std::thread::spawn(move || {
        o2.call_once(|| {
            i2.store(1, SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            panic!("first initializer fails");
        })
    });
    while inside.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let o3 = once.clone();
    let waiter = spawn(move || {
        o3.call_once(|| {
            r2.fetch_add(1, SeqCst);
        })
    });
    assert!(panicker.join().is_err());
    waiter.join().unwrap();
    assert_eq!(ran.load(SeqCst), 1);
    assert!(once.is_completed());
}
