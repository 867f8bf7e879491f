//! Runtime benchmark: Spindle fibers side by side with tokio tasks and may coroutines (and, for
//! memory, OS threads), on the same worker count, in one run.
//!
//! ```text
//! cargo run --release -p spindle-benches --bin runtime_bench             # full sizes
//! cargo run --release -p spindle-benches --bin runtime_bench -- --quick  # under a minute
//! cargo run --release -p spindle-benches --bin runtime_bench -- --help   # every option
//! ```
//!
//! Cases (full size; `--quick` uses the smaller figure; `--scale` multiplies counts):
//! - `spawn_join`: one task spawns 1,000,000 (20,000) empty tasks, then joins them; ns/task.
//! - `ping_pong`: 1,000,000 (20,000) round trips between two tasks (Spindle: a butex each way;
//!   tokio: `Notify`; may: `Semphore`); ns/round_trip.
//! - `yield`: 1,000 (100) tasks each yield 1,000 (200) times; ns/yield.
//! - `mutex`: 8 tasks share 1,000,000 (100,000) increments under one lock (Spindle's fiber
//!   mutex, `tokio::sync::Mutex`, `may::sync::Mutex`); ns/increment.
//! - `fanout_tree`: binary tree of depth 20 (12), every node spawns both children and joins
//!   them, 2^(depth+1)-1 tasks; ns/task.
//! - `memory_idle`: RSS per idle sleeping task, 100,000 (5,000) tasks on small stacks, and 2,000
//!   (500) OS threads with the same stack size, each kind in a fresh child process; bytes/task.
//!
//! Every time figure is the best (lowest) of `--runs` repetitions (default 3), the runtimes
//! interleaved within each repetition so they share the machine's noise; memory is also the
//! lowest of its runs. Each case prints a table row, then one line per peer:
//! `RESULT <case> spindle=<v> <peer>=<v> ratio=<spindle/peer> unit=<unit> better=lower`.
//!
//! Worker count: `--workers` (default: number of cores) for all three: Spindle through the
//! `fiber_concurrency` flag (set before the first spawn), tokio through `worker_threads`, may
//! through `may::config().set_workers`. `SPINDLE_*` environment variables are applied first
//! (e.g. `SPINDLE_STACK_SIZE_SMALL`); `--workers` then overrides `fiber_concurrency`.
use std::time::Duration;

use clap::Parser;

// The case code lives beside this file (a binary's root resolves modules from `src/bin/`).
#[path = "runtime_bench/cases.rs"]
mod cases;
#[path = "runtime_bench/memory.rs"]
mod memory;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Spindle vs tokio vs may: spawn, ping-pong, yield, mutex, fan-out, memory")]
struct Args {
    /// Smaller sizes: the whole run takes under a minute.
    #[arg(long)]
    quick: bool,
    /// Multiply every count by this factor (tree depth changes by log2 of it).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Worker threads for every runtime (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Leave may out (it cannot hold a million live coroutines, or a depth-20 tree, within the
    /// default `vm.max_map_count`: it aborts with "failed to alloc sys stack").
    #[arg(long)]
    no_may: bool,
    /// Repetitions per case; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Cases to run, comma separated: spawn_join, ping_pong, yield, mutex, fanout_tree,
    /// memory_idle (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// spawn_join: tasks spawned.
    #[arg(long)]
    spawn_tasks: Option<usize>,
    /// ping_pong: round trips.
    #[arg(long)]
    pingpong_rounds: Option<u32>,
    /// yield: tasks.
    #[arg(long)]
    yield_tasks: Option<usize>,
    /// yield: yields per task.
    #[arg(long)]
    yield_times: Option<usize>,
    /// mutex: tasks contending.
    #[arg(long, default_value_t = 8)]
    mutex_tasks: usize,
    /// mutex: total increments.
    #[arg(long)]
    mutex_increments: Option<usize>,
    /// fanout_tree: depth.
    #[arg(long)]
    tree_depth: Option<u32>,
    /// memory_idle: sleeping tasks (Spindle, tokio, may).
    #[arg(long)]
    mem_tasks: Option<usize>,
    /// memory_idle: sleeping OS threads.
    #[arg(long)]
    mem_threads: Option<usize>,
    /// Internal: run one memory measurement (mem-spindle, mem-tokio, mem-may, mem-thread).
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the child's task count.
    #[arg(long, hide = true, default_value_t = 0)]
    count: usize,
}

/// Every case, in run order.
const CASES: [&str; 6] = [
    "spawn_join",
    "ping_pong",
    "yield",
    "mutex",
    "fanout_tree",
    "memory_idle",
];

/// The sizes of one run.
#[derive(Debug)]
struct Sizes {
    /// spawn_join: tasks spawned by the one spawner.
    spawn_tasks: usize,
    /// ping_pong: round trips.
    pingpong_rounds: u32,
    /// yield: tasks.
    yield_tasks: usize,
    /// yield: yields per task.
    yield_times: usize,
    /// mutex: tasks contending for the lock.
    mutex_tasks: usize,
    /// mutex: increments in total (split evenly).
    mutex_increments: usize,
    /// fanout_tree: depth of the binary tree.
    tree_depth: u32,
    /// memory_idle: sleeping Spindle fibers / tokio tasks / may coroutines.
    mem_tasks: usize,
    /// memory_idle: sleeping OS threads.
    mem_threads: usize,
}

impl Sizes {
    fn from_args(a: &Args) -> Sizes {
        let q = |full: usize, quick: usize| if a.quick { quick } else { full };
        let s = |n: usize| ((n as f64 * a.scale).round() as usize).max(1);
        let depth_shift = a.scale.log2().round() as i64;
        let depth = (q(20, 12) as i64 + depth_shift).clamp(1, 30) as u32;
        Sizes {
            spawn_tasks: a.spawn_tasks.unwrap_or_else(|| s(q(1_000_000, 20_000))),
            pingpong_rounds: a
                .pingpong_rounds
                .unwrap_or_else(|| s(q(1_000_000, 20_000)) as u32),
            yield_tasks: a.yield_tasks.unwrap_or_else(|| s(q(1_000, 100))),
            yield_times: a.yield_times.unwrap_or_else(|| q(1_000, 200)),
            mutex_tasks: a.mutex_tasks.max(1),
            mutex_increments: a
                .mutex_increments
                .unwrap_or_else(|| s(q(1_000_000, 100_000))),
            tree_depth: a.tree_depth.unwrap_or(depth),
            mem_tasks: a.mem_tasks.unwrap_or_else(|| s(q(100_000, 5_000))),
            mem_threads: a.mem_threads.unwrap_or_else(|| s(q(2_000, 500))),
        }
    }
}

/// A tokio multi-thread runtime with `workers` workers.
pub fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("build tokio runtime")
}

/// Prints the table header.
fn print_header() {
    println!(
        "{:<12} {:>14} {:>14} {:>14} {:>14}  unit",
        "case", "spindle", "tokio", "may", "os_thread"
    );
}

/// Set by `--no-may`: may's cases are not run and its columns stay empty.
static NO_MAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a case's table row and its `RESULT` lines. `peers` are `(name, value)`; a peer whose
/// value is NaN was not run.
fn report(case: &str, unit: &str, spindle: f64, peers: &[(&str, f64)]) {
    let peers: Vec<(&str, f64)> = peers.iter().copied().filter(|(_, v)| !v.is_nan()).collect();
    let col = |name: &str| {
        peers
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("-".to_string(), |(_, v)| format!("{v:.1}"))
    };
    println!(
        "{:<12} {:>14.1} {:>14} {:>14} {:>14}  {unit}",
        case,
        spindle,
        col("tokio"),
        col("may"),
        col("os_thread")
    );
    for (peer, v) in &peers {
        let ratio = if *v > 0.0 { spindle / v } else { f64::NAN };
        println!(
            "RESULT {case} spindle={spindle:.1} {peer}={v:.1} ratio={ratio:.3} unit={unit} better=lower"
        );
    }
}

/// Best (lowest) ns per op of three runtimes over `runs` interleaved repetitions.
fn best_ns(
    runs: usize,
    ops: u64,
    mut spindle: impl FnMut() -> Duration,
    mut tokio: impl FnMut() -> Duration,
    mut may: impl FnMut() -> Duration,
) -> (f64, f64, f64) {
    let ns = |d: Duration| d.as_nanos() as f64 / ops as f64;
    let mut best = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..runs.max(1) {
        best.0 = best.0.min(ns(spindle()));
        best.1 = best.1.min(ns(tokio()));
        if NO_MAY.load(std::sync::atomic::Ordering::Relaxed) {
            best.2 = f64::NAN;
        } else {
            best.2 = best.2.min(ns(may()));
        }
    }
    best
}

fn main() {
    let args = Args::parse();
    NO_MAY.store(args.no_may, std::sync::atomic::Ordering::Relaxed);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    // Spindle's worker count: environment first, then --workers, before the first spawn.
    if let Err(e) = spindle_runtime::flags::init_from_env() {
        eprintln!("runtime_bench: {e}");
        std::process::exit(2);
    }
    if let Err(e) = spindle_runtime::flags::runtime_flags::FIBER_CONCURRENCY.set(workers) {
        eprintln!("runtime_bench: --workers: {e}");
        std::process::exit(2);
    }
    may::config().set_workers(workers);

    if let Some(child) = &args.child {
        let Some(kind) = memory::Kind::from_child_arg(child) else {
            eprintln!("runtime_bench: unknown --child {child}");
            std::process::exit(2);
        };
        memory::child(kind, args.count.max(1), workers);
    }

    let selected: Vec<&str> = if args.cases.is_empty() {
        CASES.to_vec()
    } else {
        for c in &args.cases {
            if !CASES.contains(&c.as_str()) {
                eprintln!(
                    "runtime_bench: unknown case {c:?}; cases: {}",
                    CASES.join(", ")
                );
                std::process::exit(2);
            }
        }
        CASES
            .iter()
            .copied()
            .filter(|c| args.cases.iter().any(|a| a == c))
            .collect()
    };
    let sz = Sizes::from_args(&args);
    let rt = tokio_runtime(workers);
    println!(
        "runtime_bench: workers={workers} runs={} (best of runs) quick={} scale={}",
        args.runs, args.quick, args.scale
    );
    println!("sizes: {sz:?}");
    print_header();

    for case in selected {
        match case {
            "spawn_join" => {
                let n = sz.spawn_tasks;
                let (s, t, m) = best_ns(
                    args.runs,
                    n as u64,
                    || cases::spawn_join_spindle(n),
                    || cases::spawn_join_tokio(&rt, n),
                    || cases::spawn_join_may(n),
                );
                report(case, "ns/task", s, &[("tokio", t), ("may", m)]);
            }
            "ping_pong" => {
                let n = sz.pingpong_rounds;
                let (s, t, m) = best_ns(
                    args.runs,
                    u64::from(n),
                    || cases::ping_pong_spindle(n),
                    || cases::ping_pong_tokio(&rt, n),
                    || cases::ping_pong_may(n),
                );
                report(case, "ns/round_trip", s, &[("tokio", t), ("may", m)]);
            }
            "yield" => {
                let (f, y) = (sz.yield_tasks, sz.yield_times);
                let (s, t, m) = best_ns(
                    args.runs,
                    (f * y) as u64,
                    || cases::yield_spindle(f, y),
                    || cases::yield_tokio(&rt, f, y),
                    || cases::yield_may(f, y),
                );
                report(case, "ns/yield", s, &[("tokio", t), ("may", m)]);
            }
            "mutex" => {
                let (f, total) = (sz.mutex_tasks, sz.mutex_increments.max(sz.mutex_tasks));
                let ops = (total / f * f) as u64;
                let (s, t, m) = best_ns(
                    args.runs,
                    ops,
                    || cases::mutex_spindle(f, total),
                    || cases::mutex_tokio(&rt, f, total),
                    || cases::mutex_may(f, total),
                );
                report(case, "ns/increment", s, &[("tokio", t), ("may", m)]);
            }
            "fanout_tree" => {
                let d = sz.tree_depth;
                let (s, t, m) = best_ns(
                    args.runs,
                    cases::tree_tasks(d),
                    || cases::tree_spindle(d),
                    || cases::tree_tokio(&rt, d),
                    || cases::tree_may(d),
                );
                report(case, "ns/task", s, &[("tokio", t), ("may", m)]);
            }
            "memory_idle" => {
                use memory::Kind;
                let mut best = [f64::INFINITY; 4];
                let kinds = [Kind::Spindle, Kind::Tokio, Kind::May, Kind::Thread];
                for _ in 0..args.runs.max(1) {
                    for (i, kind) in kinds.into_iter().enumerate() {
                        if kind == Kind::May && args.no_may {
                            best[i] = f64::NAN;
                            continue;
                        }
                        let count = if kind == Kind::Thread {
                            sz.mem_threads
                        } else {
                            sz.mem_tasks
                        };
                        match memory::measure(kind, count, workers) {
                            Ok(v) => best[i] = best[i].min(v),
                            Err(e) => {
                                eprintln!("runtime_bench: memory_idle: {e}");
                                std::process::exit(1);
                            }
                        }
                    }
                }
                report(
                    case,
                    "bytes/task",
                    best[0],
                    &[("tokio", best[1]), ("may", best[2]), ("os_thread", best[3])],
                );
            }
            _ => unreachable!("cases are checked above"),
        }
    }
}
