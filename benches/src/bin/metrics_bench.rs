//! Metrics update cost: Spindle's per-thread variables against one shared atomic counter.
//!
//! Cases (each side runs the same loop on the same number of threads, started together):
//! - `adder_2t`: `Adder::add(1)` from 2 threads vs `AtomicU64::fetch_add(1, Relaxed)` on one
//!   counter shared by 2 threads (the target: ≤ 0.5× its time);
//! - `adder_1t`: the same from 1 thread (no contention: the floor of an atomic add);
//! - `maxer_2t`, `int_recorder_2t`: `Maxer::record` / `IntRecorder::record` from 2 threads vs the
//!   shared `fetch_add`;
//! - `latency_2t`: `LatencyRecorder::record` (count, sum, max, histogram bucket) from 2 threads vs
//!   the shared `fetch_add`.
//!
//! Usage: `cargo run --release -p spindle-benches --bin metrics_bench [-- --quick]`.
//! Each case runs in short batches (10,000 updates per thread); threads leave a spinning barrier
//! together. A batch counts only if the threads' intervals overlap for 90% of the longest one
//! (they really ran at once, so the shared counter really contended), and its time is the
//! longest thread's. A case's figure is its fastest counted batch divided by the updates per
//! thread: on a shared, busy machine most batches are stretched by other tenants. Prints a table, then one `RESULT` line
//! per case.

use spindle_metrics::{Adder, IntRecorder, LatencyRecorder, Maxer};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Config {
    /// Batches per round.
    batches: usize,
    /// Updates per thread per batch.
    per_batch: u64,
    /// Rounds stop once this many batches ran on all threads at once...
    want_concurrent: usize,
    /// ...or after this long per case and side.
    budget: Duration,
}

/// One measured case.
struct Case {
    /// Case name.
    name: &'static str,
    /// Threads updating at once.
    threads: usize,
    /// ns per update, Spindle.
    spindle: f64,
    /// ns per update, shared `fetch_add`.
    atomic: f64,
    /// Batches run by all threads at once / batches run (Spindle, shared `fetch_add`).
    concurrent: (String, String),
}

/// What one side of a case measured.
struct Timing {
    /// ns per update in the fastest batch that all threads ran at once, if any did.
    ns: Option<f64>,
    /// ns per update in the fastest batch of all.
    fastest: f64,
    /// Batches that all threads ran at once.
    concurrent: usize,
    /// Batches run.
    batches: usize,
}

impl Timing {
    /// The figure to report: the fastest concurrent batch, else the fastest batch.
    fn figure(&self) -> f64 {
        self.ns.unwrap_or(self.fastest)
    }
}

/// The loop a thread runs: `(thread index, updates)`.
type Body = Arc<dyn Fn(usize, u64) + Send + Sync>;

/// A spinning barrier, so all threads leave it within nanoseconds of each other (a futex
/// barrier's wake-up skew would be a large part of a short batch).
struct SpinBarrier {
    /// Threads that must arrive.
    n: usize,
    /// Threads arrived in this generation.
    arrived: AtomicUsize,
    /// Bumped when everyone arrived.
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn wait(&self) {
        let gen = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            // Pure spinning: yielding would let other tenants in and the threads would start
            // apart.
            while self.generation.load(Ordering::Acquire) == gen {
                std::hint::spin_loop();
            }
        }
    }
}

/// Runs `body` in `cfg.batches` batches on `threads` threads released together. Returns the ns
/// per update of the fastest batch that all threads ran at the same time (see below): on a
/// shared machine most batches are stretched or serialised by other tenants, and the fastest
/// concurrent one is the undisturbed cost, contention included. Also returns the mean
/// CPU time per update over all batches (spinning in the barrier excluded only approximately:
/// it is outside the timed loop but inside the thread's CPU time, so this is an upper bound).
fn timed(cfg: &Config, threads: usize, body: Body) -> Timing {
    let barrier = Arc::new(SpinBarrier {
        n: threads,
        arrived: AtomicUsize::new(0),
        generation: AtomicUsize::new(0),
    });
    let (batches, per_batch) = (cfg.batches, cfg.per_batch);
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, body) = (barrier.clone(), body.clone());
            std::thread::spawn(move || {
                (0..batches)
                    .map(|_| {
                        barrier.wait();
                        let start = Instant::now();
                        body(t, per_batch);
                        (start, Instant::now())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let spans: Vec<Vec<(Instant, Instant)>> = hs
        .into_iter()
        .map(|h| h.join().expect("bench thread panicked"))
        .collect();
    // A batch counts when every thread ran it at the same time as the others: their intervals
    // overlap for at least 90% of the longest one. Its time is the longest thread's.
    let mut best = Duration::MAX;
    let mut fallback = Duration::MAX;
    let mut concurrent = 0usize;
    for b in 0..batches {
        let longest = spans
            .iter()
            .map(|s| s[b].1 - s[b].0)
            .max()
            .unwrap_or(Duration::MAX);
        let last_start = spans.iter().map(|s| s[b].0).max();
        let first_end = spans.iter().map(|s| s[b].1).min();
        let overlap = match (last_start, first_end) {
            (Some(s), Some(e)) => e.saturating_duration_since(s),
            _ => Duration::ZERO,
        };
        fallback = fallback.min(longest);
        if overlap.as_nanos() * 10 >= longest.as_nanos() * 9 {
            best = best.min(longest);
            concurrent += 1;
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / per_batch as f64;
    Timing {
        ns: (best != Duration::MAX).then(|| per(best)),
        fastest: per(fallback),
        concurrent,
        batches,
    }
}

/// Rounds of [`timed`] until enough batches ran on all threads at once, or the time budget is
/// spent; the best of all rounds.
fn timed_until(cfg: &Config, threads: usize, body: Body) -> Timing {
    let start = Instant::now();
    let mut total = timed(cfg, threads, body.clone());
    while total.concurrent < cfg.want_concurrent && start.elapsed() < cfg.budget {
        let t = timed(cfg, threads, body.clone());
        total.ns = match (total.ns, t.ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.fastest = total.fastest.min(t.fastest);
        total.concurrent += t.concurrent;
        total.batches += t.batches;
    }
    total
}

/// ns per update of `spindle` and of a shared `fetch_add` on the same threads.
fn measure(cfg: &Config, name: &'static str, threads: usize, spindle: Body) -> Case {
    let shared = Arc::new(AtomicU64::new(0));
    let atomic: Body = Arc::new(move |_, n| {
        for _ in 0..n {
            black_box(&*shared).fetch_add(1, Ordering::Relaxed);
        }
    });
    let s = timed_until(cfg, threads, spindle);
    let a = timed_until(cfg, threads, atomic);
    Case {
        name,
        threads,
        spindle: s.figure(),
        atomic: a.figure(),
        concurrent: (
            format!("{}/{}", s.concurrent, s.batches),
            format!("{}/{}", a.concurrent, a.batches),
        ),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        Config {
            batches: 100,
            per_batch: 10_000,
            want_concurrent: 30,
            budget: Duration::from_secs(4),
        }
    } else {
        Config {
            batches: 200,
            per_batch: 10_000,
            want_concurrent: 300,
            budget: Duration::from_secs(20),
        }
    };
    println!(
        "metrics_bench{} — batches of {} updates per thread, rounds of {} batches until {} ran \
         on all threads at once (or {} s per side)",
        if quick { " --quick" } else { "" },
        cfg.per_batch,
        cfg.batches,
        cfg.want_concurrent,
        cfg.budget.as_secs()
    );

    let adder = Arc::new(Adder::new());
    let a2 = adder.clone();
    let add: Body = Arc::new(move |_, n| {
        for _ in 0..n {
            black_box(&*a2).add(1);
        }
    });
    let maxer = Arc::new(Maxer::new());
    let m2 = maxer.clone();
    let max: Body = Arc::new(move |t, n| {
        for i in 0..n {
            // Like latencies: the maximum rarely moves.
            black_box(&*m2).record(((i ^ t as u64).wrapping_mul(2_654_435_761) & 0xffff) as i64);
        }
    });
    let rec = Arc::new(IntRecorder::new());
    let r2 = rec.clone();
    let avg: Body = Arc::new(move |_, n| {
        for i in 0..n {
            black_box(&*r2).record((i & 1023) as i64);
        }
    });
    let lat = Arc::new(LatencyRecorder::new());
    let l2 = lat.clone();
    let latency: Body = Arc::new(move |_, n| {
        for i in 0..n {
            // Latencies spread over many buckets, like real ones.
            black_box(&*l2).record(((i.wrapping_mul(2_654_435_761)) & 0xffff) as i64);
        }
    });

    let cases = [
        measure(&cfg, "adder_1t", 1, add.clone()),
        measure(&cfg, "maxer_2t", 2, max),
        measure(&cfg, "adder_2t", 2, add),
        measure(&cfg, "int_recorder_2t", 2, avg),
        measure(&cfg, "latency_2t", 2, latency),
    ];
    // Keep the results observable.
    black_box((adder.value(), maxer.value(), rec.average(), lat.count()));

    println!(
        "{:<16} {:>7} {:>10} {:>10} {:>7}   {:>12} {:>12}",
        "case", "threads", "spindle", "atomic", "ratio", "conc spindle", "conc atomic"
    );
    for c in &cases {
        println!(
            "{:<16} {:>7} {:>10.2} {:>10.2} {:>7.3}   {:>12} {:>12}",
            c.name,
            c.threads,
            c.spindle,
            c.atomic,
            c.spindle / c.atomic,
            c.concurrent.0,
            c.concurrent.1
        );
    }
    println!(
        "(ns per update in the fastest batch that all threads ran at once, or the fastest batch \
         when none did; conc = such batches / batches run)"
    );
    for c in &cases {
        println!(
            "RESULT {} spindle={:.3} atomic_fetch_add={:.3} ratio={:.3} unit=ns/update better=lower",
            c.name,
            c.spindle,
            c.atomic,
            c.spindle / c.atomic
        );
    }
}
