//! ExecutionQueue end to end: submit order, batching, producers on fibers and threads, stop /
//! join semantics, joiners on several threads.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use spindle_runtime::execution_queue::{ExecuteError, ExecutionQueue, TaskIter};
use spindle_runtime::spawn;
use spindle_runtime::sync::Mutex;

#[test]
fn producers_on_fibers_and_threads_keep_per_producer_order() {
    let producers = 6;
    let per = 3_000;
    let next = Arc::new(Mutex::new(vec![0usize; producers]));
    let batches = Arc::new(AtomicUsize::new(0));
    let (n2, b2) = (next.clone(), batches.clone());
    let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, (usize, usize)>| {
        if it.is_stopped() {
            return;
        }
        b2.fetch_add(1, SeqCst);
        let mut next = n2.lock();
        for (p, i) in it {
            assert_eq!(next[p], i, "producer {p}: got {i}, expected {}", next[p]);
            next[p] += 1;
        }
    });
    let mut fibers = Vec::new();
    let mut threads = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        let body = move || {
            for i in 0..per {
                q.execute((p, i)).unwrap();
            }
        };
        if p % 2 == 0 {
            fibers.push(spawn(body));
        } else {
            threads.push(std::thread::spawn(body));
        }
    }
    for f in fibers {
        f.join().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    q.stop();
    q.join();
    assert_eq!(*next.lock(), vec![per; producers]);
    assert!(batches.load(SeqCst) >= 1);
}

#[test]
fn join_from_many_threads_returns_after_everything_ran() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, u32>| {
        for _ in it {
            spindle_runtime::yield_now();
            r2.fetch_add(1, SeqCst);
        }
    });
    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let (q, ran) = (q.clone(), ran.clone());
            std::thread::spawn(move || {
                q.join();
                ran.load(SeqCst)
            })
        })
        .collect();
    for i in 0..1_000 {
        q.execute(i).unwrap();
    }
    q.stop();
    for j in joiners {
        assert_eq!(
            j.join().unwrap(),
            1_000,
            "join returned before every task ran"
        );
    }
    assert!(matches!(q.execute(1), Err(ExecuteError::Stopped(1))));
}

#[test]
fn stop_on_idle_queue_still_delivers_final_stopped_batch() {
    let stopped_calls = Arc::new(AtomicUsize::new(0));
    let s2 = stopped_calls.clone();
    let q = ExecutionQueue::<()>::start(move |it: &mut TaskIter<'_, ()>| {
        if it.is_stopped() {
            s2.fetch_add(1, SeqCst);
        }
    });
    q.stop();
    q.join();
    assert_eq!(stopped_calls.load(SeqCst), 1);
    assert!(q.is_stopped());
}

#[test]
fn queue_restarts_consumer_after_going_idle() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let q = ExecutionQueue::start(move |it: &mut TaskIter<'_, usize>| {
        for _ in it {
            r2.fetch_add(1, SeqCst);
        }
    });
    for round in 1..=50 {
        q.execute(round).unwrap();
        while ran.load(SeqCst) < round {
            spindle_runtime::yield_now(); // the consumer drains and exits; next execute restarts it
        }
    }
    q.stop();
    q.join();
    assert_eq!(ran.load(SeqCst), 50);
}
