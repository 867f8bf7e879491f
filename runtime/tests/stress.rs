//! A mixed stress load on an oversubscribed runtime (8 workers, whatever the core count): spawn
//! trees, timed waits racing wakes, requeues, urgent spawns, sleeps and yields all at once.
//! Bounded by iteration counts, not by time.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::butex::Butex;
use spindle_runtime::{init, sleep, spawn, spawn_urgent, yield_now, Builder, Config, StackSize};

fn tree(depth: u32) -> u32 {
    if depth == 0 {
        yield_now();
        return 1;
    }
    let l = Builder::new()
        .stack_size(StackSize::Small)
        .spawn(move || tree(depth - 1));
    let r = spawn_urgent(move || tree(depth - 1));
    l.join().unwrap() + r.join().unwrap()
}

#[test]
fn mixed_load_on_oversubscribed_runtime() {
    init(Config {
        fiber_concurrency: 8,
        ..Config::default()
    })
    .unwrap();
    let mut hs = Vec::new();
    // Spawn trees with urgent spawns.
    for _ in 0..4 {
        hs.push(spawn(|| {
            for _ in 0..20 {
                assert_eq!(tree(7), 128);
            }
        }));
    }
    // Timed waits racing wakes and requeues.
    for round in 0..8u32 {
        hs.push(spawn(move || {
            for k in 0..50u32 {
                let a = Arc::new(Butex::new(0));
                let to = Arc::new(Butex::new(0));
                let done = Arc::new(AtomicUsize::new(0));
                let waiters: Vec<_> = (0..8)
                    .map(|i| {
                        let (a, done) = (a.clone(), done.clone());
                        spawn(move || {
                            let d = Instant::now() + Duration::from_micros(50 * (i + k % 7) as u64);
                            let _ = a.wait(0, if i % 2 == 0 { Some(d) } else { None });
                            done.fetch_add(1, Ordering::SeqCst);
                        })
                    })
                    .collect();
                if (round + k) % 3 == 0 {
                    sleep(Duration::from_micros(100));
                } else {
                    yield_now();
                }
                a.value().store(1, Ordering::SeqCst);
                a.requeue(&to);
                to.wake_all();
                // Waiters that were not yet queued see the changed word; the rest were woken.
                // Keep waking until all are out (requeue moved some onto `to`).
                while done.load(Ordering::SeqCst) < 8 {
                    a.wake_all();
                    to.wake_all();
                    yield_now();
                }
                for w in waiters {
                    w.join().unwrap();
                }
            }
        }));
    }
    // Ping-pong between a fiber and a plain thread, with timeouts on the thread side.
    let b = Arc::new(Butex::new(0));
    let b2 = b.clone();
    hs.push(spawn(move || {
        for i in 0..3000u32 {
            while b2.value().load(Ordering::Acquire) != 2 * i + 1 {
                let _ = b2.wait(2 * i, Some(Instant::now() + Duration::from_millis(1)));
            }
            b2.value().store(2 * i + 2, Ordering::Release);
            b2.wake_one();
        }
    }));
    let counter = Arc::new(AtomicU32::new(0));
    let t = {
        let counter = counter.clone();
        std::thread::spawn(move || {
            for i in 0..3000u32 {
                b.value().store(2 * i + 1, Ordering::Release);
                b.wake_one();
                while b.value().load(Ordering::Acquire) != 2 * i + 2 {
                    let _ = b.wait(2 * i + 1, Some(Instant::now() + Duration::from_millis(1)));
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    t.join().unwrap();
    assert_eq!(counter.load(Ordering::Relaxed), 3000);
    let s = spindle_runtime::stats();
    assert_eq!(s.workers, 8);
}
