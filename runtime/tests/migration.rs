//! Thread-local safety under migration: fibers that switch many times and resume on other
//! workers must see the *current* thread's state through the runtime's accessors, never the
//! state of the thread they ran on before the switch.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spindle_runtime::{current_worker, init, sleep, spawn, yield_now, Config};

thread_local! {
    /// The identity of the OS thread, as a plain thread-local (what user code might cache).
    static THREAD_TAG: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A fresh read of the thread's identity, the way the runtime docs tell users to do it.
#[inline(never)]
fn thread_tag() -> usize {
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    THREAD_TAG.with(|t| {
        if t.get() == usize::MAX {
            t.set(t as *const Cell<usize> as usize);
        }
        t.get()
    })
}

#[test]
fn fibers_migrate_and_see_fresh_thread_state() {
    init(Config {
        fiber_concurrency: 4,
        ..Config::default()
    })
    .unwrap();
    let migrations = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..64)
        .map(|i| {
            let migrations = migrations.clone();
            spawn(move || {
                // worker -> thread tag, learned on the way; must stay consistent.
                let mut map = std::collections::HashMap::new();
                for k in 0..200 {
                    let before_worker = current_worker().unwrap();
                    let before_tag = thread_tag();
                    if (i + k) % 10 == 0 {
                        sleep(Duration::from_micros(200));
                    } else {
                        yield_now();
                    }
                    let after_worker = current_worker().unwrap();
                    let after_tag = thread_tag();
                    if after_worker != before_worker {
                        migrations.fetch_add(1, Ordering::Relaxed);
                        assert_ne!(
                            after_tag, before_tag,
                            "a stale thread-local after migration"
                        );
                    } else {
                        assert_eq!(after_tag, before_tag);
                    }
                    // The runtime's worker identity agrees with the thread's identity.
                    let known = *map.entry(after_worker).or_insert(after_tag);
                    assert_eq!(
                        known, after_tag,
                        "worker {after_worker} seen on two threads"
                    );
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let m = migrations.load(Ordering::Relaxed);
    println!("migrations observed: {m}");
    assert!(m > 0, "no fiber ever migrated: the test proved nothing");
}
