//! FiberId races: late / duplicate error and lock after destroy, contended lock, join from
//! threads, errors queued while locked, an error racing a response.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle_runtime::fiber_id::{FiberId, FiberIdError};
use spindle_runtime::spawn;

#[test]
fn late_and_duplicate_error_and_lock_after_destroy_are_stale() {
    let id = FiberId::create_ranged(7u32, 4);
    let data = id.offset(2).lock().unwrap().unlock_and_destroy();
    assert_eq!(data, 7);
    for k in 0..4 {
        assert_eq!(id.offset(k).lock().err(), Some(FiberIdError::Stale));
        assert_eq!(id.offset(k).error(1008), Err(FiberIdError::Stale));
        assert_eq!(id.offset(k).error(1008), Err(FiberIdError::Stale));
        id.offset(k).join();
    }
}

#[test]
fn many_threads_contend_one_id() {
    let id = FiberId::create(0u64);
    let inside = Arc::new(AtomicBool::new(false));
    let per = 1_000;
    let body = {
        let inside = inside.clone();
        move || {
            for _ in 0..per {
                let mut g = id.lock().unwrap();
                assert!(!inside.swap(true, SeqCst), "two holders of one id");
                *g += 1;
                inside.store(false, SeqCst);
            }
        }
    };
    let fibers: Vec<_> = (0..4).map(|_| spawn(body.clone())).collect();
    let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(body.clone())).collect();
    for f in fibers {
        f.join().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(id.lock().unwrap().unlock_and_destroy(), 8 * per);
}

#[test]
fn join_from_threads_returns_on_destroy() {
    let id = FiberId::create(());
    let returned = Arc::new(AtomicUsize::new(0));
    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let returned = returned.clone();
            std::thread::spawn(move || {
                id.join();
                returned.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let fiber_joiner = spawn(move || id.join());
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(returned.load(SeqCst), 0, "join returned before destroy");
    id.lock().unwrap().unlock_and_destroy();
    for j in joiners {
        j.join().unwrap();
    }
    fiber_joiner.join().unwrap();
    assert_eq!(returned.load(SeqCst), 4);
}

#[test]
fn errors_while_locked_run_at_unlock_in_order() {
    let id = FiberId::create_with_on_error(Vec::<(u64, i32)>::new(), 2, |mut g, code| {
        let raw = g.id().as_raw();
        g.push((raw, code));
    });
    let g = id.lock().unwrap();
    id.error(1).unwrap();
    id.offset(1).error(2).unwrap();
    assert!(
        g.is_empty(),
        "handler must not run while the holder has the lock"
    );
    drop(g);
    let g = id.lock().unwrap();
    assert_eq!(*g, vec![(id.as_raw(), 1), (id.offset(1).as_raw(), 2)]);
    let _ = g.unlock_and_destroy();
}

#[test]
fn timeout_error_races_response_exactly_one_wins() {
    // The RPC pattern: a response (lock + destroy) races a timeout (error → handler destroys).
    // Exactly one of them must end the call; the other must see Stale (or be dropped as a
    // pending error of a destroyed id).
    for _ in 0..200 {
        let ended = Arc::new(AtomicUsize::new(0));
        let e2 = ended.clone();
        let id = FiberId::create_with_on_error((), 1, move |g, _code| {
            e2.fetch_add(1, SeqCst);
            g.unlock_and_destroy();
        });
        let e3 = ended.clone();
        let response = std::thread::spawn(move || {
            if let Ok(g) = id.lock() {
                e3.fetch_add(1, SeqCst);
                g.unlock_and_destroy();
            }
        });
        let timeout = spawn(move || {
            let _ = id.error(1008);
        });
        response.join().unwrap();
        timeout.join().unwrap();
        id.join();
        assert_eq!(ended.load(SeqCst), 1);
        assert_eq!(id.lock().err(), Some(FiberIdError::Stale));
    }
}

#[test]
fn slots_are_recycled_with_new_versions() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..100u32 {
        let id = FiberId::create(i);
        assert!(seen.insert(id.as_raw()), "an id value was reused");
        assert_eq!(id.lock().unwrap().unlock_and_destroy(), i);
    }
}

#[test]
fn error_storm_every_accepted_error_is_handled_once_under_the_lock() {
    let handled = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicBool::new(false));
    let (h2, i2) = (handled.clone(), inside.clone());
    let id = FiberId::create_with_on_error(0u32, 1, move |mut g, _code| {
        assert!(!i2.swap(true, SeqCst), "handler ran without exclusive lock");
        *g += 1;
        h2.fetch_add(1, SeqCst);
        i2.store(false, SeqCst);
    });
    let per = 200;
    let reporters: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for code in 0..per {
                    id.error(code).unwrap();
                }
            })
        })
        .collect();
    let locker = spawn(move || {
        for _ in 0..per {
            let g = id.lock().unwrap();
            spindle_runtime::yield_now(); // let errors queue up behind us
            drop(g);
        }
    });
    for r in reporters {
        r.join().unwrap();
    }
    locker.join().unwrap();
    let g = id.lock().unwrap();
    assert_eq!(*g as usize, 4 * per as usize);
    assert_eq!(handled.load(SeqCst), 4 * per as usize);
    assert_eq!(g.unlock_and_destroy(), 4 * per as u32);
}
