//! Mutex / Condvar / RwLock under contention, from fibers (`spindle_runtime::spawn`, thread
//! stand-ins until the scheduler lands) and from plain OS threads.
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::sync::{Condvar, Mutex, RwLock, TimedOut};
use spindle_runtime::{spawn, yield_now};

const WORKERS: usize = 8;
const ITERS: usize = 2_000;

#[test]
fn mutex_fibers_and_threads_never_overlap() {
    let m = Arc::new(Mutex::new(0usize));
    let inside = Arc::new(AtomicBool::new(false));
    let body = {
        let (m, inside) = (m.clone(), inside.clone());
        move || {
            for i in 0..ITERS {
                let mut g = m.lock();
                assert!(!inside.swap(true, SeqCst), "double entry");
                *g += 1;
                if i % 100 == 0 {
                    yield_now(); // hold across a yield now and then
                }
                inside.store(false, SeqCst);
            }
        }
    };
    let fibers: Vec<_> = (0..WORKERS).map(|_| spawn(body.clone())).collect();
    let threads: Vec<_> = (0..2).map(|_| std::thread::spawn(body.clone())).collect();
    for f in fibers {
        f.join().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), (WORKERS + 2) * ITERS);
}

#[test]
fn mutex_guard_can_move_to_another_thread() {
    let m = Arc::new(Mutex::new(1));
    let g = m.lock();
    // A fiber can resume on another worker holding the guard: unlocking elsewhere is allowed.
    std::thread::scope(|s| {
        s.spawn(move || drop(g));
    });
    assert_eq!(*m.try_lock().unwrap(), 1);
}

#[test]
fn mutex_lock_timeout_fires_once_per_call_and_succeeds_when_released() {
    let m = Arc::new(Mutex::new(()));
    let held = m.lock();
    let timeouts = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (m, timeouts) = (m.clone(), timeouts.clone());
            spawn(move || {
                let r = m.lock_timeout(Instant::now() + Duration::from_millis(20));
                assert_eq!(r.err(), Some(TimedOut));
                timeouts.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(timeouts.load(SeqCst), 4);
    // A waiter with a generous deadline gets the lock once it is released.
    let m2 = m.clone();
    let waiter = spawn(move || {
        m2.lock_timeout(Instant::now() + Duration::from_secs(30))
            .is_ok()
    });
    std::thread::sleep(Duration::from_millis(5));
    drop(held);
    assert!(waiter.join().unwrap());
}

#[test]
fn condvar_ping_pong_loses_no_wakeup() {
    // Strict alternation: each side waits for its turn; a lost notify would hang the test.
    let rounds = 2_000;
    let state = Arc::new((Mutex::new(0usize), Condvar::new()));
    let s2 = state.clone();
    let other = spawn(move || {
        let (m, cv) = &*s2;
        for i in 0..rounds {
            let mut turn = m.lock();
            cv.wait_while(&mut turn, |t| *t != 2 * i + 1);
            *turn += 1;
            cv.notify_one();
        }
    });
    let (m, cv) = &*state;
    for i in 0..rounds {
        let mut turn = m.lock();
        cv.wait_while(&mut turn, |t| *t != 2 * i);
        *turn += 1;
        cv.notify_one();
    }
    other.join().unwrap();
    assert_eq!(*m.lock(), 2 * rounds);
}

#[test]
fn condvar_notify_all_releases_every_generation() {
    let waiters = 8;
    let generations = 50;
    // (generation, waiters parked in this generation)
    let state = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new(), Condvar::new()));
    let hs: Vec<_> = (0..waiters)
        .map(|_| {
            let state = state.clone();
            spawn(move || {
                let (m, cv, arrived) = &*state;
                for g in 0..generations {
                    let mut s = m.lock();
                    s.1 += 1;
                    arrived.notify_one();
                    cv.wait_while(&mut s, |s| s.0 == g);
                }
            })
        })
        .collect();
    let (m, cv, arrived) = &*state;
    for _ in 0..generations {
        let mut s = m.lock();
        arrived.wait_while(&mut s, |s| s.1 < waiters);
        s.1 = 0;
        s.0 += 1;
        cv.notify_all();
    }
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn condvar_wait_until_times_out_and_relocks() {
    let m = Arc::new(Mutex::new(5));
    let cv = Condvar::new();
    let mut g = m.lock();
    let deadline = Instant::now() + Duration::from_millis(10);
    assert!(cv.wait_until(&mut g, deadline));
    assert!(Instant::now() >= deadline);
    // Still locked by us after the timeout.
    let m2 = m.clone();
    assert!(std::thread::spawn(move || m2.try_lock().is_none())
        .join()
        .unwrap());
    *g += 1;
    drop(g);
    assert_eq!(*m.lock(), 6);
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let lock = Arc::new(RwLock::new(0usize));
    let inside = Arc::new(AtomicI32::new(0)); // >0 readers, -1 writer
    let max_readers = Arc::new(AtomicI32::new(0));
    let hs: Vec<_> = (0..WORKERS)
        .map(|i| {
            let (lock, inside, max_readers) = (lock.clone(), inside.clone(), max_readers.clone());
            spawn(move || {
                for _ in 0..ITERS / 2 {
                    if i % 4 == 0 {
                        let mut g = lock.write();
                        assert_eq!(inside.swap(-1, SeqCst), 0, "writer entered while occupied");
                        *g += 1;
                        assert_eq!(inside.swap(0, SeqCst), -1);
                    } else {
                        let _g = lock.read();
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        assert!(now > 0, "reader entered while a writer was inside");
                        max_readers.fetch_max(now, SeqCst);
                        yield_now();
                        inside.fetch_sub(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*lock.read(), 2 * ITERS / 2);
}

#[test]
fn rwlock_writer_not_starved_by_overlapping_readers() {
    // Readers keep the lock continuously busy (their holds overlap) until the writer got in.
    let lock = Arc::new(RwLock::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (lock, stop) = (lock.clone(), stop.clone());
            spawn(move || {
                let mut reads = 0u64;
                while !stop.load(SeqCst) {
                    let g = lock.read();
                    if *g {
                        break;
                    }
                    yield_now();
                    drop(g);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    *lock.write() = true; // must get in although readers never all leave at once on their own
    stop.store(true, SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    assert!(*lock.read());
}

#[test]
fn rwlock_try_variants() {
    let lock = RwLock::new(1);
    let r = lock.try_read().unwrap();
    assert!(lock.try_write().is_none());
    assert!(lock.try_read().is_some());
    drop(r);
    let w = lock.try_write().unwrap();
    assert!(lock.try_read().is_none());
    assert!(lock.try_write().is_none());
    drop(w);
    assert_eq!(lock.into_inner(), 1);
}
