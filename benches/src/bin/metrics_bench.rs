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
//! Each case runs in short batches; all threads leave a spinning barrier together, and a batch's
//! time is from the first start to the last end. A case's figure is its fastest batch divided by
//! the updates per thread: on a shared, busy machine most batches are stretched by other
//! tenants, and the fastest is the one where both threads really ran at once (which is also
//! when the shared counter really contends). Prints a table, then one `RESULT` line
//! per case.

use spindle_metrics::{Adder, IntRecorder, LatencyRecorder, Maxer};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Config {
    /// Batches per case and side; the fastest counts.
    batches: usize,
    /// Updates per thread per batch.
    per_batch: u64,
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
    /// Mean CPU ns per update (Spindle, shared `fetch_add`).
    cpu: (f64, f64),
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
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == gen {
                spins += 1;
                if spins & 1023 == 0 {
                    // Let a descheduled peer run on a busy machine.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// Runs `body` in `cfg.batches` batches on `threads` threads released together; a batch's time
/// is from the first thread's start to the last thread's end. Returns the fastest batch's ns
/// per update: on a shared machine most batches are stretched by other tenants, and the
/// fastest is the one where all threads really ran at once, undisturbed. Also returns the mean
/// CPU time per update over all batches (spinning in the barrier excluded only approximately:
/// it is outside the timed loop but inside the thread's CPU time, so this is an upper bound).
fn timed(cfg: &Config, threads: usize, body: Body) -> (f64, f64) {
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
                let cpu0 = thread_cpu_ns();
                let spans = (0..batches)
                    .map(|_| {
                        barrier.wait();
                        let start = Instant::now();
                        body(t, per_batch);
                        (start, Instant::now())
                    })
                    .collect::<Vec<_>>();
                (spans, thread_cpu_ns() - cpu0)
            })
        })
        .collect();
    let (spans, cpu): (Vec<Vec<(Instant, Instant)>>, Vec<u64>) = hs
        .into_iter()
        .map(|h| h.join().expect("bench thread panicked"))
        .unzip();
    let updates = batches as f64 * per_batch as f64 * threads as f64;
    let cpu_per_update = cpu.iter().sum::<u64>() as f64 / updates;
    let best = (0..batches)
        .map(|b| {
            let first = spans.iter().map(|s| s[b].0).min();
            let last = spans.iter().map(|s| s[b].1).max();
            match (first, last) {
                (Some(f), Some(l)) => l.duration_since(f),
                _ => Duration::MAX,
            }
        })
        .min()
        .unwrap_or(Duration::MAX);
    (best.as_nanos() as f64 / per_batch as f64, cpu_per_update)
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// ns per update of `spindle` and of a shared `fetch_add` on the same threads.
fn measure(cfg: &Config, name: &'static str, threads: usize, spindle: Body) -> Case {
    let shared = Arc::new(AtomicU64::new(0));
    let atomic: Body = Arc::new(move |_, n| {
        for _ in 0..n {
            black_box(&*shared).fetch_add(1, Ordering::Relaxed);
        }
    });
    let s = timed(cfg, threads, spindle);
    let a = timed(cfg, threads, atomic);
    Case {
        name,
        threads,
        spindle: s.0,
        atomic: a.0,
        cpu: (s.1, a.1),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        Config {
            batches: 1_500,
            per_batch: 10_000,
        }
    } else {
        Config {
            batches: 15_000,
            per_batch: 10_000,
        }
    };
    println!(
        "metrics_bench{} — fastest of {} batches of {} updates per thread",
        if quick { " --quick" } else { "" },
        cfg.batches,
        cfg.per_batch
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
    // Keep the results observable (and check nothing was lost).
    let want = (cfg.batches as u64) * cfg.per_batch * 3;
    if adder.value() as u64 != want {
        eprintln!("error: Adder lost updates: {} != {want}", adder.value());
        std::process::exit(1);
    }
    black_box((maxer.value(), rec.average(), lat.count()));

    println!(
        "{:<16} {:>7} {:>10} {:>10} {:>7}   {:>9} {:>9} {:>7}",
        "case", "threads", "spindle", "atomic", "ratio", "cpu spdl", "cpu atom", "ratio"
    );
    for c in &cases {
        println!(
            "{:<16} {:>7} {:>10.2} {:>10.2} {:>7.3}   {:>9.2} {:>9.2} {:>7.3}",
            c.name,
            c.threads,
            c.spindle,
            c.atomic,
            c.spindle / c.atomic,
            c.cpu.0,
            c.cpu.1,
            c.cpu.0 / c.cpu.1
        );
    }
    println!(
        "(ns per update; wall = fastest batch, cpu = mean thread CPU time incl. barrier spin)"
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
