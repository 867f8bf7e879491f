//! Spawning, joining, yielding, sleeping, panics, urgent spawns, batches, statistics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::butex::Butex;
use spindle_runtime::{
    current_task, flush, sleep, spawn, spawn_urgent, stats, yield_now, Builder, JoinError,
    StackSize,
};

#[test]
fn spawn_and_join_from_thread() {
    let h = spawn(|| 6 * 7);
    assert_eq!(h.join().unwrap(), 42);
    assert!(current_task().is_none());
}

#[test]
fn join_from_fiber() {
    let outer = spawn(|| {
        assert!(current_task().is_some());
        let inner = spawn(|| current_task().unwrap());
        let id = inner.id();
        assert_eq!(inner.join().unwrap(), id);
        "done"
    });
    assert_eq!(outer.join().unwrap(), "done");
}

#[test]
fn million_short_fibers() {
    // Spawned from fibers in waves, so at most a bounded number are alive at once.
    let total = Arc::new(AtomicUsize::new(0));
    let spawners: Vec<_> = (0..10)
        .map(|_| {
            let total = total.clone();
            spawn(move || {
                for _ in 0..100 {
                    let hs: Vec<_> = (0..1000)
                        .map(|_| {
                            let total = total.clone();
                            Builder::new().stack_size(StackSize::Small).spawn(move || {
                                total.fetch_add(1, Ordering::Relaxed);
                            })
                        })
                        .collect();
                    for h in hs {
                        h.join().unwrap();
                    }
                }
            })
        })
        .collect();
    for s in spawners {
        s.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), 1_000_000);
}

fn tree(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let l = spawn(move || tree(depth - 1));
    let r = spawn(move || tree(depth - 1));
    l.join().unwrap() + r.join().unwrap()
}

#[test]
fn deep_recursive_spawn_tree() {
    assert_eq!(spawn(|| tree(14)).join().unwrap(), 1 << 14);
    // A deep chain: each fiber spawns one child and waits for it.
    fn chain(n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            Builder::new()
                .stack_size(StackSize::Small)
                .spawn(move || chain(n - 1))
                .join()
                .unwrap()
                + 1
        }
    }
    assert_eq!(spawn(|| chain(2000)).join().unwrap(), 2000);
}

#[test]
fn ping_pong_over_butex() {
    const ROUNDS: u32 = 20_000;
    let b = Arc::new(Butex::new(0));
    let b2 = b.clone();
    // The word counts turns: odd = pong's turn, even = ping's turn.
    let pong = spawn(move || {
        for i in 0..ROUNDS {
            let want = 2 * i + 1;
            while b2.value().load(Ordering::Acquire) != want {
                let _ = b2.wait(want - 1, None);
            }
            b2.value().store(want + 1, Ordering::Release);
            b2.wake_one();
        }
    });
    let ping = spawn(move || {
        for i in 0..ROUNDS {
            let mine = 2 * i;
            while b.value().load(Ordering::Acquire) != mine {
                let _ = b.wait(mine.wrapping_sub(1), None);
            }
            b.value().store(mine + 1, Ordering::Release);
            b.wake_one();
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
}

#[test]
fn ping_pong_fiber_and_thread() {
    let b = Arc::new(Butex::new(0));
    let b2 = b.clone();
    let fiber = spawn(move || {
        for i in 0..2000u32 {
            while b2.value().load(Ordering::Acquire) != 2 * i + 1 {
                let _ = b2.wait(2 * i, None);
            }
            b2.value().store(2 * i + 2, Ordering::Release);
            b2.wake_all();
        }
    });
    for i in 0..2000u32 {
        b.value().store(2 * i + 1, Ordering::Release);
        b.wake_all();
        while b.value().load(Ordering::Acquire) != 2 * i + 2 {
            let _ = b.wait(2 * i + 1, None);
        }
    }
    fiber.join().unwrap();
}

#[test]
fn panic_reaches_joiner() {
    let h = spawn(|| -> u32 { panic!("boom {}", 7) });
    match h.join() {
        Err(e @ JoinError::Panicked(_)) => assert_eq!(e.to_string(), "fiber panicked: boom 7"),
        Ok(_) => panic!("expected a panic"),
    }
    // From a fiber too, and the runtime keeps working.
    let r = spawn(|| spawn(|| panic!("inner")).join().is_err())
        .join()
        .unwrap();
    assert!(r);
    assert_eq!(spawn(|| 1).join().unwrap(), 1);
}

#[test]
fn spawn_urgent_runs_child_now_on_this_worker() {
    // The child starts on the caller's worker, at once: the caller is switched out (and may be
    // stolen by another worker, so nothing is asserted about what the caller sees next).
    for _ in 0..100 {
        let (caller, child) = spawn(|| {
            let caller = spindle_runtime::current_worker().unwrap();
            let started_on = Arc::new(AtomicUsize::new(usize::MAX));
            let s2 = started_on.clone();
            let h = spawn_urgent(move || {
                s2.store(spindle_runtime::current_worker().unwrap(), Ordering::SeqCst)
            });
            h.join().unwrap();
            (caller, started_on.load(Ordering::SeqCst))
        })
        .join()
        .unwrap();
        assert_eq!(caller, child);
    }
    // From a plain thread it is a plain spawn.
    assert_eq!(spawn_urgent(|| 5).join().unwrap(), 5);
}

#[test]
fn yield_lets_others_run() {
    let r = spawn(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let h = spawn(move || f2.store(true, Ordering::SeqCst));
        let start = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            yield_now();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "spawned fiber never ran"
            );
        }
        h.join().unwrap();
        true
    })
    .join()
    .unwrap();
    assert!(r);
    yield_now(); // on a thread: no-op-ish
}

#[test]
fn sleep_in_fibers_and_threads() {
    let hs: Vec<_> = (0..100)
        .map(|i| {
            spawn(move || {
                let t = Instant::now();
                let d = Duration::from_millis(10 + i % 20);
                sleep(d);
                t.elapsed() >= d
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap());
    }
    let t = Instant::now();
    sleep(Duration::from_millis(5));
    assert!(t.elapsed() >= Duration::from_millis(5));
}

#[test]
fn no_signal_batch_then_flush() {
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    spawn(move || {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let d = d2.clone();
                Builder::new().no_signal().spawn(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        flush();
        for h in hs {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 64);
    // From a plain thread as well.
    let hs: Vec<_> = (0..8)
        .map(|i| spindle_runtime::spawn_no_signal(move || i))
        .collect();
    flush();
    assert_eq!(hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>(), 28);
}

#[test]
fn names_and_stack_sizes() {
    let h = Builder::new()
        .name("worker-x")
        .stack_size(StackSize::Large)
        .spawn(|| {
            // Use a good part of a large stack.
            let buf = [7u8; 2 * 1024 * 1024];
            (
                spindle_runtime::current_task_name(),
                std::hint::black_box(&buf)[12345],
            )
        });
    assert_eq!(h.join().unwrap(), (Some("worker-x".to_string()), 7));
}

#[test]
fn stats_counters_move() {
    let before = stats();
    let hs: Vec<_> = (0..100).map(|_| spawn(yield_now)).collect();
    for h in hs {
        h.join().unwrap();
    }
    let after = stats();
    assert!(after.workers >= 1);
    assert!(after.fibers_created >= before.fibers_created + 100);
    assert!(after.context_switches >= before.context_switches + 200);
}

#[test]
fn remote_spawns_from_many_threads_all_run() {
    // Non-worker threads hand fibers over through remote queues while workers go idle and park
    // in between: every fiber must run (a lost wake-up would hang this test).
    let ran = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ran = ran.clone();
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let ran = ran.clone();
                    let h = spawn(move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                    if (i + t) % 97 == 0 {
                        std::thread::sleep(Duration::from_micros(300)); // let workers park
                    }
                    if i % 2 == 0 {
                        h.join().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let start = Instant::now();
    while ran.load(Ordering::SeqCst) < 8000 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "detached fibers never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn idle_workers_steal_and_park() {
    if stats().workers < 2 {
        return;
    }
    // One fiber spawns busy children; they spin until the children have been seen on two
    // workers, which needs a steal (bounded: fails after 30 s).
    let seen = Arc::new(parking_lot::Mutex::new(std::collections::HashSet::new()));
    let before = stats();
    let s2 = seen.clone();
    spawn(move || {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let seen = s2.clone();
                spawn(move || {
                    let start = Instant::now();
                    loop {
                        let n = {
                            let mut s = seen.lock();
                            s.insert(spindle_runtime::current_worker().unwrap());
                            s.len()
                        };
                        if n >= 2 || start.elapsed() > Duration::from_secs(30) {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    assert!(
        seen.lock().len() >= 2,
        "children never ran on a second worker"
    );
    assert!(stats().steals > before.steals, "no steal was counted");
    // Idle workers park; wait (bounded) until the counter shows it.
    let start = Instant::now();
    while stats().parks == before.parks {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "workers never parked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn has_ready_fibers_sees_the_lifo_slot_and_is_false_on_threads() {
    assert!(
        !spindle_runtime::has_ready_fibers(),
        "a plain thread has no worker"
    );
    let seen = spindle_runtime::spawn(|| {
        // The child lands in this worker's LIFO slot, which nobody can steal: it is ready
        // here until this fiber switches out.
        let child = spindle_runtime::spawn(|| 7);
        let ready = spindle_runtime::has_ready_fibers();
        assert_eq!(child.join().unwrap(), 7);
        ready
    })
    .join()
    .unwrap();
    assert!(seen);
}
