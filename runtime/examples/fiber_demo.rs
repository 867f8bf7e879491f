//! The runtime demo: starts the fiber runtime, runs a mixed load for a while (10 s by default,
//! `--seconds N`), prints live figures every second, then a few quick timings, and exits.
//!
//! Load: spawn trees (spawn + join, depth 8), butex ping-pong pairs, sleepers, and fibers
//! contending on a small mutex built directly on the butex.
//!
//! `cargo run --release -p spindle-runtime --example fiber_demo -- --seconds 5`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::butex::Butex;
use spindle_runtime::{sleep, spawn, stats, Builder, StackSize};

/// A three-state futex mutex (0 free, 1 locked, 2 locked with waiters) on a butex.
struct DemoMutex {
    b: Butex,
    value: std::cell::UnsafeCell<u64>,
}

// SAFETY: `value` is only touched while the butex word says locked, by the one holder.
unsafe impl Sync for DemoMutex {}

impl DemoMutex {
    fn add(&self, n: u64) {
        let w = self.b.value();
        if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while w.swap(2, Ordering::Acquire) != 0 {
                let _ = self.b.wait(2, None);
            }
        }
        // SAFETY: we hold the lock.
        unsafe { *self.value.get() += n };
        if w.swap(0, Ordering::Release) == 2 {
            self.b.wake_one();
        }
    }
}

fn tree(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let l = Builder::new()
        .stack_size(StackSize::Small)
        .spawn(move || tree(depth - 1));
    let r = tree(depth - 1);
    l.join().unwrap() + r
}

fn main() {
    let mut seconds = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N");
            }
            s if s.starts_with("--seconds=") => {
                seconds = s["--seconds=".len()..].parse().expect("--seconds=N");
            }
            "-h" | "--help" => {
                println!("usage: demo [--seconds N]   (default 10)");
                return;
            }
            other => panic!("unknown argument {other:?}; usage: demo [--seconds N]"),
        }
    }
    spindle_runtime::init(spindle_runtime::Config::load()).expect("runtime start");
    let cfg = spindle_runtime::config();
    println!(
        "spindle demo: {} workers, {} tag(s), stacks {}/{}/{} KiB; running {seconds} s",
        spindle_runtime::stats().workers,
        cfg.task_group_ntags,
        cfg.stack_size_small / 1024,
        cfg.stack_size_normal / 1024,
        cfg.stack_size_large / 1024
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pings = Arc::new(AtomicU64::new(0));
    let trees = Arc::new(AtomicU64::new(0));
    let sleeps = Arc::new(AtomicU64::new(0));
    let mutex = Arc::new(DemoMutex {
        b: Butex::new(0),
        value: 0.into(),
    });
    let mut load = Vec::new();

    // Spawn trees.
    for _ in 0..2 {
        let (stop, trees) = (stop.clone(), trees.clone());
        load.push(spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(tree(8), 256);
                trees.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Ping-pong pairs: the word counts turns; each side waits for its parity.
    for _ in 0..2 {
        let b = Arc::new(Butex::new(0));
        for side in 0..2u32 {
            let (stop, pings, b) = (stop.clone(), pings.clone(), b.clone());
            load.push(spawn(move || loop {
                let v = b.value().load(Ordering::Acquire);
                if v == u32::MAX {
                    return;
                }
                if v % 2 != side {
                    let _ = b.wait(v, None);
                    continue;
                }
                if stop.load(Ordering::Relaxed) {
                    b.value().store(u32::MAX, Ordering::Release);
                    b.wake_all();
                    return;
                }
                b.value()
                    .store(v.wrapping_add(1) % (u32::MAX - 1), Ordering::Release);
                b.wake_one();
                pings.fetch_add(1, Ordering::Relaxed);
            }));
        }
    }
    // Sleepers.
    for i in 0..200u64 {
        let (stop, sleeps) = (stop.clone(), sleeps.clone());
        load.push(Builder::new().stack_size(StackSize::Small).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sleep(Duration::from_millis(1 + i % 10));
                sleeps.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Mutex contenders.
    for _ in 0..8 {
        let (stop, mutex) = (stop.clone(), mutex.clone());
        load.push(spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100 {
                    mutex.add(1);
                }
                spindle_runtime::yield_now();
            }
        }));
    }

    let start = Instant::now();
    let mut last = stats();
    let (mut last_p, mut last_t, mut last_s) = (0, 0, 0);
    println!(
        "{:>4} {:>11} {:>12} {:>9} {:>8} {:>7} {:>10} {:>8} {:>9}",
        "sec",
        "fibers/s",
        "switches/s",
        "steals/s",
        "parks/s",
        "alive",
        "pingpong/s",
        "trees/s",
        "sleeps/s"
    );
    for sec in 1..=seconds {
        let target = start + Duration::from_secs(sec);
        std::thread::sleep(target.saturating_duration_since(Instant::now()));
        let s = stats();
        let (p, t, sl) = (
            pings.load(Ordering::Relaxed),
            trees.load(Ordering::Relaxed),
            sleeps.load(Ordering::Relaxed),
        );
        println!(
            "{:>4} {:>11} {:>12} {:>9} {:>8} {:>7} {:>10} {:>8} {:>9}",
            sec,
            s.fibers_created - last.fibers_created,
            s.context_switches - last.context_switches,
            s.steals - last.steals,
            s.parks - last.parks,
            s.fibers_alive,
            p - last_p,
            t - last_t,
            sl - last_s
        );
        last = s;
        (last_p, last_t, last_s) = (p, t, sl);
    }
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.join().unwrap();
    }
    // SAFETY: every contender has been joined; nobody holds the lock.
    let total = unsafe { *mutex.value.get() };
    println!(
        "load stopped: mutex counter {total}, {} fibers alive",
        stats().fibers_alive
    );

    // Quick timings (sanity checks, not benchmarks: see benches/ for those).
    const N: u32 = 100_000;
    let spawn_join = spawn(|| {
        let t = Instant::now();
        for _ in 0..N {
            spawn(|| ()).join().unwrap();
        }
        t.elapsed() / N
    })
    .join()
    .unwrap();
    let b = Arc::new(Butex::new(0));
    let b2 = b.clone();
    let pong = spawn(move || {
        for i in 0..N {
            while b2.value().load(Ordering::Acquire) != 2 * i + 1 {
                let _ = b2.wait(2 * i, None);
            }
            b2.value().store(2 * i + 2, Ordering::Release);
            b2.wake_one();
        }
    });
    let round_trip = spawn(move || {
        let t = Instant::now();
        for i in 0..N {
            b.value().store(2 * i + 1, Ordering::Release);
            b.wake_one();
            while b.value().load(Ordering::Acquire) != 2 * i + 2 {
                let _ = b.wait(2 * i + 1, None);
            }
        }
        t.elapsed() / N
    })
    .join()
    .unwrap();
    pong.join().unwrap();
    println!("spawn+join from a fiber: {spawn_join:?} per fiber; butex ping-pong: {round_trip:?} per round trip");
    let s = stats();
    println!(
        "totals: {} fibers created, {} switches, {} steals, {} parks",
        s.fibers_created, s.context_switches, s.steals, s.parks
    );
}
