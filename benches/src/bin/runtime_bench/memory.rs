//! The memory case: resident memory per idle, sleeping task.
//!
//! Each measurement runs in a fresh child process (`runtime_bench --child mem-<kind> --count N`)
//! so earlier cases' heaps and pooled stacks do not blur it. The child starts its runtime, reads
//! its RSS from `/proc/self/statm`, starts `N` tasks that each bump a counter and then sleep for an
//! hour, waits until all are asleep, reads RSS again and prints
//! `RSS_BYTES_PER_TASK <(after - before) / N>`; then it exits without waiting for the sleepers.
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cases::may_go;

/// The stack size given to OS threads and may coroutines: Spindle's small stack.
pub fn small_stack_bytes() -> usize {
    spindle_runtime::flags::runtime_flags::STACK_SIZE_SMALL.get()
}

/// What a child measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Spindle fibers on small stacks.
    Spindle,
    /// tokio tasks.
    Tokio,
    /// may coroutines with a small stack.
    May,
    /// OS threads with a small stack.
    Thread,
}

impl Kind {
    /// The `--child` argument.
    pub fn child_arg(self) -> &'static str {
        match self {
            Kind::Spindle => "mem-spindle",
            Kind::Tokio => "mem-tokio",
            Kind::May => "mem-may",
            Kind::Thread => "mem-thread",
        }
    }

    /// Parses a `--child` argument.
    pub fn from_child_arg(s: &str) -> Option<Kind> {
        [Kind::Spindle, Kind::Tokio, Kind::May, Kind::Thread]
            .into_iter()
            .find(|k| k.child_arg() == s)
    }
}

/// Resident set size of this process in bytes.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    resident * spindle_runtime::flags::runtime_flags::page_size()
}

/// Waits until `counter` reaches `n` (all tasks asleep), then a little longer for the last ones
/// to settle into their sleep.
fn wait_for(counter: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "tasks did not start in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
}

const LONG: Duration = Duration::from_secs(3600);

/// Runs in the child process: measures and prints, then exits.
pub fn child(kind: Kind, count: usize, workers: usize) -> ! {
    let started = Arc::new(AtomicUsize::new(0));
    let per_task = match kind {
        Kind::Spindle => {
            // Start the runtime (workers, pools) before the baseline.
            spindle_runtime::spawn(|| {}).join().unwrap();
            let before = rss_bytes();
            for _ in 0..count {
                let started = started.clone();
                // Dropping the handle detaches the fiber.
                drop(
                    spindle_runtime::Builder::new()
                        .stack_size(spindle_runtime::StackSize::Small)
                        .spawn(move || {
                            started.fetch_add(1, Ordering::Release);
                            spindle_runtime::sleep(LONG);
                        }),
                );
            }
            wait_for(&started, count);
            (rss_bytes() as f64 - before as f64) / count as f64
        }
        Kind::Tokio => {
            let rt = crate::tokio_runtime(workers);
            rt.block_on(async {});
            let before = rss_bytes();
            for _ in 0..count {
                let started = started.clone();
                rt.spawn(async move {
                    started.fetch_add(1, Ordering::Release);
                    tokio::time::sleep(LONG).await;
                });
            }
            wait_for(&started, count);
            let per = (rss_bytes() as f64 - before as f64) / count as f64;
            std::mem::forget(rt); // exit without shutting the sleepers down
            per
        }
        Kind::May => {
            may::config().set_stack_size(small_stack_bytes() / std::mem::size_of::<usize>());
            may_go(|| {}).join().unwrap();
            let before = rss_bytes();
            for _ in 0..count {
                let started = started.clone();
                drop(may_go(move || {
                    started.fetch_add(1, Ordering::Release);
                    may::coroutine::sleep(LONG);
                }));
            }
            wait_for(&started, count);
            (rss_bytes() as f64 - before as f64) / count as f64
        }
        Kind::Thread => {
            let before = rss_bytes();
            for _ in 0..count {
                let started = started.clone();
                std::thread::Builder::new()
                    .stack_size(small_stack_bytes())
                    .spawn(move || {
                        started.fetch_add(1, Ordering::Release);
                        std::thread::sleep(LONG);
                    })
                    .expect("spawn thread");
            }
            wait_for(&started, count);
            (rss_bytes() as f64 - before as f64) / count as f64
        }
    };
    println!("RSS_BYTES_PER_TASK {per_task}");
    std::process::exit(0)
}

/// Runs one child and returns its bytes per task.
pub fn measure(kind: Kind, count: usize, workers: usize) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(["--child", kind.child_arg(), "--count", &count.to_string()])
        .args(["--workers", &workers.to_string()])
        .output()
        .map_err(|e| format!("starting the {} child: {e}", kind.child_arg()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} child failed ({}): {}{}",
            kind.child_arg(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RSS_BYTES_PER_TASK ")?.trim().parse().ok())
        .ok_or_else(|| format!("{} child printed no figure: {stdout}", kind.child_arg()))
}
