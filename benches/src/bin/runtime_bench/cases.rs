//! The timed cases, each written three times: Spindle fibers, tokio tasks, may coroutines. Every
//! function runs one repetition and returns its wall time; the caller divides by the number of
//! operations and keeps the best of the runs.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_runtime::butex::Butex;

use spindle_runtime::sync::Mutex as SpindleMutex;

/// Starts a may coroutine.
pub fn may_go<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: may's spawn is unsafe because a coroutine that keeps a thread-local reference across
    // a yield may resume on another thread. The closures in this benchmark use no thread-locals
    // and block only through may's own primitives (or not at all).
    unsafe { may::coroutine::spawn(f) }
}

// ---------------------------------------------------------------------------------------------
// spawn + join: one task spawns `n` empty tasks, then joins them all.

pub fn spawn_join_spindle(n: usize) -> Duration {
    let t = Instant::now();
    spindle_runtime::spawn(move || {
        let hs: Vec<_> = (0..n).map(|_| spindle_runtime::spawn(|| {})).collect();
        for h in hs {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    t.elapsed()
}

pub fn spawn_join_tokio(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    let t = Instant::now();
    rt.block_on(async move {
        tokio::spawn(async move {
            let hs: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
            for h in hs {
                h.await.unwrap();
            }
        })
        .await
        .unwrap();
    });
    t.elapsed()
}

pub fn spawn_join_may(n: usize) -> Duration {
    let t = Instant::now();
    may_go(move || {
        let hs: Vec<_> = (0..n).map(|_| may_go(|| {})).collect();
        for h in hs {
            h.join().unwrap();
        }
    })
    .join()
    .unwrap();
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// ping-pong: `n` round trips between two tasks.

pub fn ping_pong_spindle(n: u32) -> Duration {
    // Each side owns one butex; its word counts the messages sent so far.
    let ping = Arc::new(Butex::new(0));
    let pong = Arc::new(Butex::new(0));
    let t = Instant::now();
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let ponger = spindle_runtime::spawn(move || {
        for i in 0..n {
            while ping2.value().load(Ordering::Acquire) == i {
                let _ = ping2.wait(i, None);
            }
            pong2.value().store(i + 1, Ordering::Release);
            pong2.wake_one();
        }
    });
    let pinger = spindle_runtime::spawn(move || {
        for i in 0..n {
            ping.value().store(i + 1, Ordering::Release);
            ping.wake_one();
            while pong.value().load(Ordering::Acquire) == i {
                let _ = pong.wait(i, None);
            }
        }
    });
    pinger.join().unwrap();
    ponger.join().unwrap();
    t.elapsed()
}

pub fn ping_pong_tokio(rt: &tokio::runtime::Runtime, n: u32) -> Duration {
    let t = Instant::now();
    rt.block_on(async move {
        // `Notify` keeps one permit, so a notify before the wait is not lost (like a butex word).
        let ping = Arc::new(tokio::sync::Notify::new());
        let pong = Arc::new(tokio::sync::Notify::new());
        let (ping2, pong2) = (ping.clone(), pong.clone());
        let ponger = tokio::spawn(async move {
            for _ in 0..n {
                ping2.notified().await;
                pong2.notify_one();
            }
        });
        let pinger = tokio::spawn(async move {
            for _ in 0..n {
                ping.notify_one();
                pong.notified().await;
            }
        });
        pinger.await.unwrap();
        ponger.await.unwrap();
    });
    t.elapsed()
}

pub fn ping_pong_may(n: u32) -> Duration {
    let ping = Arc::new(may::sync::Semphore::new(0));
    let pong = Arc::new(may::sync::Semphore::new(0));
    let t = Instant::now();
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let ponger = may_go(move || {
        for _ in 0..n {
            ping2.wait();
            pong2.post();
        }
    });
    let pinger = may_go(move || {
        for _ in 0..n {
            ping.post();
            pong.wait();
        }
    });
    pinger.join().unwrap();
    ponger.join().unwrap();
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// yield loop: `fibers` tasks each yield `times` times.

pub fn yield_spindle(fibers: usize, times: usize) -> Duration {
    let t = Instant::now();
    let hs: Vec<_> = (0..fibers)
        .map(|_| {
            spindle_runtime::spawn(move || {
                for _ in 0..times {
                    spindle_runtime::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed()
}

pub fn yield_tokio(rt: &tokio::runtime::Runtime, fibers: usize, times: usize) -> Duration {
    let t = Instant::now();
    rt.block_on(async move {
        let hs: Vec<_> = (0..fibers)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..times {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    t.elapsed()
}

pub fn yield_may(fibers: usize, times: usize) -> Duration {
    let t = Instant::now();
    let hs: Vec<_> = (0..fibers)
        .map(|_| {
            may_go(move || {
                for _ in 0..times {
                    may::coroutine::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// mutex contention: `fibers` tasks share `total` increments of one locked counter.

pub fn mutex_spindle(fibers: usize, total: usize) -> Duration {
    let m = Arc::new(SpindleMutex::new(0u64));
    let each = total / fibers;
    let t = Instant::now();
    let hs: Vec<_> = (0..fibers)
        .map(|_| {
            let m = m.clone();
            spindle_runtime::spawn(move || {
                for _ in 0..each {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(*m.lock(), (each * fibers) as u64);
    d
}

pub fn mutex_tokio(rt: &tokio::runtime::Runtime, fibers: usize, total: usize) -> Duration {
    let each = total / fibers;
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let m2 = m.clone();
    let t = Instant::now();
    rt.block_on(async move {
        let hs: Vec<_> = (0..fibers)
            .map(|_| {
                let m = m2.clone();
                tokio::spawn(async move {
                    for _ in 0..each {
                        *m.lock().await += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    let d = t.elapsed();
    assert_eq!(*m.blocking_lock(), (each * fibers) as u64);
    d
}

pub fn mutex_may(fibers: usize, total: usize) -> Duration {
    let each = total / fibers;
    let m = Arc::new(may::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..fibers)
        .map(|_| {
            let m = m.clone();
            may_go(move || {
                for _ in 0..each {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(*m.lock().unwrap(), (each * fibers) as u64);
    d
}

// ---------------------------------------------------------------------------------------------
// fan-out / fan-in: a binary tree of depth `d`; every node spawns both children and joins them.
// Tasks: 2^(d+1) - 1 (the root included).

/// Number of tasks in a tree of depth `depth`.
pub fn tree_tasks(depth: u32) -> u64 {
    (1u64 << (depth + 1)) - 1
}

fn tree_node_spindle(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let a = spindle_runtime::spawn(move || tree_node_spindle(depth - 1));
    let b = spindle_runtime::spawn(move || tree_node_spindle(depth - 1));
    1 + a.join().unwrap() + b.join().unwrap()
}

pub fn tree_spindle(depth: u32) -> Duration {
    let t = Instant::now();
    let n = spindle_runtime::spawn(move || tree_node_spindle(depth))
        .join()
        .unwrap();
    let d = t.elapsed();
    assert_eq!(n, tree_tasks(depth));
    d
}

fn tree_node_tokio(depth: u32) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if depth == 0 {
            return 1;
        }
        let a = tokio::spawn(tree_node_tokio(depth - 1));
        let b = tokio::spawn(tree_node_tokio(depth - 1));
        1 + a.await.unwrap() + b.await.unwrap()
    })
}

pub fn tree_tokio(rt: &tokio::runtime::Runtime, depth: u32) -> Duration {
    let t = Instant::now();
    let n = rt.block_on(async move { tokio::spawn(tree_node_tokio(depth)).await.unwrap() });
    let d = t.elapsed();
    assert_eq!(n, tree_tasks(depth));
    d
}

fn tree_node_may(depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let a = may_go(move || tree_node_may(depth - 1));
    let b = may_go(move || tree_node_may(depth - 1));
    1 + a.join().unwrap() + b.join().unwrap()
}

pub fn tree_may(depth: u32) -> Duration {
    let t = Instant::now();
    let n = may_go(move || tree_node_may(depth)).join().unwrap();
    let d = t.elapsed();
    assert_eq!(n, tree_tasks(depth));
    d
}
