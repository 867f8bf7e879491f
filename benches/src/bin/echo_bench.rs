//! RPC echo benchmark: Spindle (baidu_std, spindle-rpc `Server` + `Channel`) side by side with
//! tonic (gRPC on tokio) and a raw epoll echo with the same 12-byte framing (the limit), in one
//! run, on the same machine.
//!
//! ```text
//! cargo run --release -p spindle-benches --bin echo_bench             # full run (~4 min)
//! cargo run --release -p spindle-benches --bin echo_bench -- --quick  # under a minute
//! cargo run --release -p spindle-benches --bin echo_bench -- --help   # every option
//! ```
//!
//! Cases (connections × requests in flight per connection, message bytes, attachment bytes):
//! `c1_d1_16B`, `c1_d64_16B`, `c1_d1_4KiB`, `c1_d64_4KiB`, `c16_d4_16B`, `c16_d4_4KiB`
//! (16 connections, 64 in flight in total), `c1_d1_1MiB` (16-byte message + 1 MiB attachment;
//! tonic: a `bytes` field; raw: a 1 MiB body). Each case runs `--rounds` rounds (default 4);
//! in each round the systems take turns (Spindle, tonic, raw), each connecting afresh, warming
//! up for `--warmup` s and measuring for `--measure` s (default 0.5 + 2), closed loop: every
//! lane sends its next request when its previous answer arrives. A system's figures merge its
//! rounds (histograms, calls, time, CPU), so all three see the same mix of a shared machine's
//! load.
//!
//! Allocator: every system runs in this one process, on mimalloc by default (the `mimalloc`
//! feature; `--no-default-features` for the system allocator). A multi-threaded RPC stack
//! frees on one thread what another allocated; glibc's per-thread arenas serialize that on an
//! arena lock, which production deployments avoid with such an allocator (brpc's benchmarks
//! link tcmalloc).
//!
//! Threads (`--workers W`, default: number of cores), so that every system has W threads for
//! the server and W for the client:
//! - Spindle: one runtime shared by server and client, `fiber_concurrency = 2W` (or
//!   `--spindle-workers`), plus its `event_dispatcher_num` (default 1) epoll thread(s) and the
//!   timer thread;
//! - tonic: a server tokio runtime of W workers and a client tokio runtime of W workers;
//! - raw: W server threads and W client threads, each with its own epoll.
//!
//! Figures: QPS (answers per second during the measurement), latency (hdrhistogram, per call,
//! from just before the request is sent to the answer: mean, p50, p99, p99.9 and the share of
//! calls that took 1 ms or more) and CPU µs per call (the whole
//! process's user + system time during the measurement over the calls completed: client and
//! server work per call, which the load of a shared machine disturbs less than QPS). Errors and lanes that did not stop
//! within `--grace` are counted and printed; nothing waits longer than that. Each case prints
//! its rows, then `RESULT` lines (DESIGN.md §6):
//! `RESULT <case>.qps spindle=<v> tonic=<v> ratio=<spindle/tonic> unit=qps better=higher`,
//! the same against `raw`, `RESULT <case>.p99 ...` with `unit=us better=lower` and
//! `RESULT <case>.cpu ...` with `unit=us_cpu/call better=lower`.

use clap::Parser;
use std::time::Duration;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator every system of this run uses (printed in the header).
const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system (glibc malloc)"
};

#[path = "echo_bench/measure.rs"]
mod measure;
#[path = "echo_bench/raw_side.rs"]
mod raw_side;
#[path = "echo_bench/spindle_side.rs"]
mod spindle_side;
#[path = "echo_bench/tonic_side.rs"]
mod tonic_side;

use measure::{Case, Outcome, Timing};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Spindle vs tonic vs raw epoll: RPC echo QPS and p99 latency")]
struct Args {
    /// Short cases: the whole run takes under a minute.
    #[arg(long)]
    quick: bool,
    /// Server threads per system, and client threads per system (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Spindle's fiber workers, shared by its server and client (default: 2 × `--workers`).
    #[arg(long)]
    spindle_workers: Option<usize>,
    /// Seconds each system runs before each measured round (default 0.5; --quick 0.2).
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds each system is measured per round (default 2; --quick 0.6).
    #[arg(long)]
    measure: Option<f64>,
    /// Rounds per case; the systems take turns round by round (default 4; --quick 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds lanes get to stop after the measurement before they are reported stuck.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Per-call timeout in ms (Spindle and tonic): a lost answer is an error, not a hang.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: i64,
    /// Cases to run, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Spindle's client lanes: `sync` (a fiber per lane making synchronous calls) or `async`
    /// (chains of asynchronous calls with completion callbacks).
    #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
    spindle_client: String,
    /// Also print, per system and case, how many calls took 1–2, 2–4, …, 64–128 ms.
    #[arg(long)]
    stall_buckets: bool,
    /// Also print, for Spindle, what its fiber runtime did per call: fibers spawned, switches
    /// into fibers, steals between workers, worker parks, and the socket events seen by workers
    /// and by the event dispatchers' own threads.
    #[arg(long)]
    runtime_stats: bool,
    /// Systems to run, comma separated: spindle, tonic, raw (default: all).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
}

/// The cases of issue #4: one connection with 1 and 64 in flight, 16 connections, 16 B and
/// 4 KiB messages, a 1 MiB attachment.
fn cases() -> Vec<Case> {
    let case = |connections, depth, payload, attachment, size: &str| Case {
        name: format!("c{connections}_d{depth}_{size}"),
        connections,
        depth,
        payload,
        attachment,
    };
    vec![
        case(1, 1, 16, 0, "16B"),
        case(1, 64, 16, 0, "16B"),
        case(1, 1, 4096, 0, "4KiB"),
        case(1, 64, 4096, 0, "4KiB"),
        case(16, 4, 16, 0, "16B"),
        case(16, 4, 4096, 0, "4KiB"),
        case(1, 1, 16, 1 << 20, "1MiB"),
    ]
}

/// The systems, in the order they run within a case.
const SYSTEMS: [&str; 3] = ["spindle", "tonic", "raw"];

fn fail(msg: &str) -> ! {
    eprintln!("echo_bench: {msg}");
    std::process::exit(2);
}

fn main() {
    let args = Args::parse();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let secs = |v: Option<f64>, full: f64, quick: f64| {
        Duration::from_secs_f64(v.unwrap_or(if args.quick { quick } else { full }).max(0.0))
    };
    let timing = Timing {
        warmup: secs(args.warmup, 0.5, 0.2),
        measure: secs(args.measure, 2.0, 0.6),
        grace: Duration::from_secs_f64(args.grace.max(0.1)),
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 2 } else { 4 }).max(1);
    let all = cases();
    let selected: Vec<Case> = if args.cases.is_empty() {
        all
    } else {
        for c in &args.cases {
            if !all.iter().any(|k| &k.name == c) {
                let names: Vec<_> = all.iter().map(|k| k.name.as_str()).collect();
                fail(&format!("unknown case {c:?}; cases: {}", names.join(", ")));
            }
        }
        all.into_iter()
            .filter(|k| args.cases.contains(&k.name))
            .collect()
    };
    for s in &args.systems {
        if !SYSTEMS.contains(&s.as_str()) {
            fail(&format!(
                "unknown system {s:?}; systems: {}",
                SYSTEMS.join(", ")
            ));
        }
    }
    let async_lanes = args.spindle_client == "async";
    let wants = |s: &str| args.systems.is_empty() || args.systems.iter().any(|x| x == s);

    // Spindle's runtime: environment first (SPINDLE_*), then 2W workers, before first use.
    if let Err(e) = spindle_runtime::flags::init_from_env() {
        fail(&e.to_string());
    }
    let spindle_workers = args.spindle_workers.unwrap_or(2 * workers);
    if let Err(e) = spindle_runtime::flags::runtime_flags::FIBER_CONCURRENCY.set(spindle_workers) {
        fail(&format!("--spindle-workers / --workers: {e}"));
    }
    let dispatchers = spindle_runtime::flags::get("event_dispatcher_num").unwrap_or_default();
    println!(
        "echo_bench: {} cases; per case {rounds} rounds of (warmup {:.1}s + measure {:.1}s) per \
         system, the systems taking turns",
        selected.len(),
        timing.warmup.as_secs_f64(),
        timing.measure.as_secs_f64()
    );
    println!(
        "threads: spindle {} fiber workers shared by server and client + {dispatchers} epoll \
         dispatcher(s) + timer, {} client lanes; tonic {workers} server + {workers} client tokio workers; \
         raw {workers} server + {workers} client threads; allocator {ALLOCATOR_NAME}",
        spindle_workers,
        args.spindle_client
    );

    let spindle = if wants("spindle") {
        Some(spindle_side::SpindleServer::start().unwrap_or_else(|e| fail(&e)))
    } else {
        None
    };
    let tonic = if wants("tonic") {
        Some(tonic_side::TonicSide::start(workers).unwrap_or_else(|e| fail(&e)))
    } else {
        None
    };

    println!();
    println!(
        "| case | system | QPS | mean µs | p50 µs | p99 µs | p99.9 µs | ≥1ms % | CPU µs/call \
         | errors | stuck |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut summary = Vec::new();
    for case in &selected {
        // Rounds interleave the systems (spindle, tonic, raw, spindle, ...) so that each sees
        // the same share of the shared machine's load; each round reconnects and warms up.
        let (mut s, mut t, mut r) = (None::<Outcome>, None::<Outcome>, None::<Outcome>);
        let add = |acc: &mut Option<Outcome>, o: Outcome| match acc {
            Some(a) => a.merge(o),
            None => *acc = Some(o),
        };
        for _ in 0..rounds {
            if let Some(sp) = &spindle {
                add(&mut s, sp.run(case, timing, args.timeout_ms, async_lanes));
            }
            if let Some(tn) = &tonic {
                add(&mut t, tn.run(case, timing, args.timeout_ms));
            }
            if wants("raw") {
                add(&mut r, raw_side::run(case, timing, workers));
            }
        }
        for (system, o) in [("spindle", &s), ("tonic", &t), ("raw", &r)] {
            let Some(o) = o else { continue };
            println!(
                "| {} | {system} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} |",
                case.name,
                o.qps(),
                o.mean_us(),
                o.us(0.50),
                o.us(0.99),
                o.us(0.999),
                o.slow_pct(),
                o.cpu_us_per_call(),
                o.errors,
                o.stuck
            );
            if args.stall_buckets {
                let mut line = format!("|   | {system} calls ≥ 1 ms by length:");
                let mut lo = 1_000_000u64;
                while lo < 128_000_000 {
                    let n = o.hist.count_between(lo, 2 * lo - 1);
                    line += &format!(" {}–{} ms: {n};", lo / 1_000_000, 2 * lo / 1_000_000);
                    lo *= 2;
                }
                println!("{line} | | | | | | | | |");
            }
            if args.runtime_stats && system == "spindle" {
                let calls = o.hist.len().max(1) as f64;
                let r = &o.runtime;
                println!(
                    "|   | spindle runtime per call: {:.2} fibers spawned, {:.2} switches, {:.3} \
                     steals, {:.3} parks, {:.3} socket events seen by workers, {:.3} by \
                     dispatcher threads | | | | | | | | |",
                    r.created as f64 / calls,
                    r.switches as f64 / calls,
                    r.steals as f64 / calls,
                    r.parks as f64 / calls,
                    r.worker_events as f64 / calls,
                    r.thread_events as f64 / calls
                );
            }
            if let Some(n) = &o.note {
                println!("|   | {system} note: {n} | | | | | | | | | |");
            }
        }
        summary.push((case.name.clone(), s, t, r));
    }

    println!();
    println!(
        "| case | spindle/tonic QPS | spindle/tonic p99 | spindle/tonic CPU/call \
         | spindle/raw QPS | spindle/raw p99 | spindle/raw CPU/call |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    for (name, s, t, r) in &summary {
        let cell = |peer: &Option<Outcome>, f: fn(&Outcome) -> f64| match (s, peer) {
            (Some(s), Some(p)) => format!("{:.2}", ratio(f(s), f(p))),
            _ => "–".to_owned(),
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(t, Outcome::qps),
            cell(t, |o| o.us(0.99)),
            cell(t, Outcome::cpu_us_per_call),
            cell(r, Outcome::qps),
            cell(r, |o| o.us(0.99)),
            cell(r, Outcome::cpu_us_per_call)
        );
    }
    println!();
    for (name, s, t, r) in &summary {
        let Some(s) = s else { continue };
        for (peer, p) in [("tonic", t), ("raw", r)] {
            let Some(p) = p else { continue };
            println!(
                "RESULT {name}.qps spindle={:.1} {peer}={:.1} ratio={:.3} unit=qps better=higher",
                s.qps(),
                p.qps(),
                ratio(s.qps(), p.qps())
            );
            println!(
                "RESULT {name}.p99 spindle={:.1} {peer}={:.1} ratio={:.3} unit=us better=lower",
                s.us(0.99),
                p.us(0.99),
                ratio(s.us(0.99), p.us(0.99))
            );
            println!(
                "RESULT {name}.cpu spindle={:.2} {peer}={:.2} ratio={:.3} unit=us_cpu/call \
                 better=lower",
                s.cpu_us_per_call(),
                p.cpu_us_per_call(),
                ratio(s.cpu_us_per_call(), p.cpu_us_per_call())
            );
        }
    }
    // Lanes reported stuck may still hold a connection; do not wait for them.
    let stuck = summary.iter().any(|(_, s, t, r)| {
        [s, t, r]
            .iter()
            .any(|o| o.as_ref().is_some_and(|o| o.stuck > 0))
    });
    if stuck {
        eprintln!(
            "echo_bench: some lanes were stuck (see the table); exiting without joining them"
        );
        std::process::exit(1);
    }
    // The servers stop when dropped: Spindle's joins in-flight requests, tonic's runtimes shut
    // down.
    drop(spindle);
    if let Some(t) = tonic {
        t.shutdown();
    }
}
