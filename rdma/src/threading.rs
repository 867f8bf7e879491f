//! Which threads deliver RDMA completions, and the check that makes seed 004 impossible.
//!
//! # The trap
//!
//! In brpc, event dispatchers and RDMA pollers are bthreads that block in `epoll_wait` or spin
//! over completion queues, each pinning a worker. When `event_dispatcher_num + rdma_poller_num`
//! reaches the worker count, no worker is left to run the handshake fiber and connections fail
//! with "Got EOF".
//!
//! # Spindle's model
//!
//! - Event dispatchers run on OS threads of their own (spindle-rpc's `event_dispatcher`), never on
//!   a fiber worker.
//! - RDMA pollers likewise get OS threads of their own (`spindle-rdma-poller-<i>`); the only
//!   things a poller does with the fiber runtime are non-blocking (spawn a fiber, wake a butex).
//! - In event mode a queue pair's completion-queue fd (an eventfd on the software fabric, the
//!   completion channel's fd on hardware) is registered in an event dispatcher like a socket.
//!
//! So fibers always have all `fiber_concurrency` workers, whatever the dispatcher and poller
//! counts are: no configuration deadlocks. What remains to refuse, with the flags named:
//! - polling mode with no poller (`rdma_poller_num=0` when built by hand: completions would
//!   never be reaped);
//! - event mode with no dispatcher to watch completion fds;
//! - busy pollers (`rdma_poller_yield=false`) that would occupy every core of the machine,
//!   leaving the workers only what the OS preempts from spinning threads.

use spindle_runtime::flags;
use std::fmt;

/// The settings that decide where completions are reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadingConfig {
    /// `fiber_concurrency` (0 = number of cores).
    pub fiber_concurrency: usize,
    /// `event_dispatcher_num` (spindle-rpc's flag).
    pub event_dispatcher_num: usize,
    /// `rdma_use_polling`.
    pub rdma_use_polling: bool,
    /// `rdma_poller_num`.
    pub rdma_poller_num: usize,
    /// `rdma_poller_yield`.
    pub rdma_poller_yield: bool,
    /// Cores of the machine (`available_parallelism`).
    pub available_cores: usize,
}

impl ThreadingConfig {
    /// The current flag values. `event_dispatcher_num` is read by name (it belongs to
    /// spindle-rpc, which depends on this crate); if no linked crate defines it, brpc's default 1.
    pub fn from_flags() -> ThreadingConfig {
        let dispatchers = flags::get("event_dispatcher_num")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        ThreadingConfig {
            fiber_concurrency: flags::runtime_flags::FIBER_CONCURRENCY.get(),
            event_dispatcher_num: dispatchers,
            rdma_use_polling: crate::flags::RDMA_USE_POLLING.get(),
            rdma_poller_num: crate::flags::RDMA_POLLER_NUM.get(),
            rdma_poller_yield: crate::flags::RDMA_POLLER_YIELD.get(),
            available_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How completions will be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionMode {
    /// Completion fds in the event dispatchers.
    Event,
    /// Pollers loop over the completion queues.
    Polling {
        /// OS threads that poll.
        pollers: usize,
        /// Whether they yield between rounds.
        yield_between_rounds: bool,
    },
}

/// A configuration that passed [`validate_threading`]: the threads it will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadingPlan {
    /// Fiber workers (all of them free for fibers: nothing below pins one).
    pub fiber_workers: usize,
    /// Dispatcher OS threads.
    pub dispatcher_threads: usize,
    /// How completions are reaped.
    pub mode: CompletionMode,
}

/// A refused configuration; the message names the flags and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadingError {
    /// The flags at fault, as written on the command line (without `--`).
    pub flags: Vec<&'static str>,
    /// What is wrong and what to change.
    pub reason: String,
}

impl fmt::Display for ThreadingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.flags.iter().map(|n| format!("--{n}")).collect();
        write!(
            f,
            "refused RDMA threading configuration ({}): {}",
            names.join(", "),
            self.reason
        )
    }
}

impl std::error::Error for ThreadingError {}

/// Checks `cfg` (see the module doc) and says which threads will run. Never panics.
pub fn validate_threading(cfg: &ThreadingConfig) -> Result<ThreadingPlan, ThreadingError> {
    let cores = cfg.available_cores.max(1);
    let workers = if cfg.fiber_concurrency == 0 {
        cores
    } else {
        cfg.fiber_concurrency
    };
    if cfg.event_dispatcher_num == 0 {
        return Err(ThreadingError {
            flags: vec!["event_dispatcher_num"],
            reason: "event_dispatcher_num=0: no dispatcher would read handshakes or watch \
                     completion fds; use at least 1"
                .into(),
        });
    }
    if !cfg.rdma_use_polling {
        return Ok(ThreadingPlan {
            fiber_workers: workers,
            dispatcher_threads: cfg.event_dispatcher_num,
            mode: CompletionMode::Event,
        });
    }
    if cfg.rdma_poller_num == 0 {
        return Err(ThreadingError {
            flags: vec!["rdma_use_polling", "rdma_poller_num"],
            reason: "rdma_use_polling=true with rdma_poller_num=0: no thread would reap \
                     completions; set rdma_poller_num>=1 or rdma_use_polling=false"
                .into(),
        });
    }
    if !cfg.rdma_poller_yield && cfg.rdma_poller_num >= cores {
        return Err(ThreadingError {
            flags: vec![
                "rdma_poller_num",
                "rdma_poller_yield",
                "rdma_use_polling",
                "fiber_concurrency",
            ],
            reason: format!(
                "rdma_poller_num={} busy-polling threads (rdma_use_polling=true, \
                 rdma_poller_yield=false) would spin on all {cores} cores, starving the \
                 fiber_concurrency={workers} workers; set rdma_poller_yield=true, lower \
                 rdma_poller_num below {cores}, or use event mode (rdma_use_polling=false)",
                cfg.rdma_poller_num
            ),
        });
    }
    Ok(ThreadingPlan {
        fiber_workers: workers,
        dispatcher_threads: cfg.event_dispatcher_num,
        mode: CompletionMode::Polling {
            pollers: cfg.rdma_poller_num,
            yield_between_rounds: cfg.rdma_poller_yield,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(workers: usize, dispatchers: usize, polling: bool, pollers: usize) -> ThreadingConfig {
        ThreadingConfig {
            fiber_concurrency: workers,
            event_dispatcher_num: dispatchers,
            rdma_use_polling: polling,
            rdma_poller_num: pollers,
            rdma_poller_yield: false,
            available_cores: 2,
        }
    }

    #[test]
    fn seed_004_configurations_are_served() {
        // 2 workers, 4 dispatchers, 4 pollers: brpc starves; here every worker stays free.
        let plan = validate_threading(&cfg(2, 4, false, 4)).unwrap();
        assert_eq!(plan.fiber_workers, 2);
        assert_eq!(plan.dispatcher_threads, 4);
        assert_eq!(plan.mode, CompletionMode::Event);
        let mut yielding = cfg(2, 4, true, 4);
        yielding.rdma_poller_yield = true;
        let plan = validate_threading(&yielding).unwrap();
        assert_eq!(
            plan.mode,
            CompletionMode::Polling {
                pollers: 4,
                yield_between_rounds: true
            }
        );
        // 1 worker, 12 dispatchers (the reported case).
        assert!(validate_threading(&cfg(1, 12, false, 1)).is_ok());
        // A busy poller on a 2-core machine leaves a core.
        assert!(validate_threading(&cfg(2, 1, true, 1)).is_ok());
        // 0 workers = number of cores.
        assert_eq!(
            validate_threading(&cfg(0, 1, false, 1))
                .unwrap()
                .fiber_workers,
            2
        );
    }

    #[test]
    fn refusals_name_the_flags() {
        let e = validate_threading(&cfg(2, 4, true, 4)).unwrap_err();
        assert!(e.flags.contains(&"rdma_poller_num") && e.flags.contains(&"rdma_poller_yield"));
        let text = e.to_string();
        assert!(text.contains("--rdma_poller_num") && text.contains("--fiber_concurrency"));
        assert!(text.contains("rdma_poller_yield=true"), "{text}");
        let e = validate_threading(&cfg(2, 1, true, 0)).unwrap_err();
        assert_eq!(e.flags, ["rdma_use_polling", "rdma_poller_num"]);
        let e = validate_threading(&cfg(2, 0, false, 1)).unwrap_err();
        assert!(e.to_string().contains("--event_dispatcher_num"));
    }

    #[test]
    fn from_flags_reads_defaults() {
        let c = ThreadingConfig::from_flags();
        assert!(!c.rdma_use_polling);
        assert_eq!(c.rdma_poller_num, 1);
        assert_eq!(c.event_dispatcher_num, 1);
        assert!(validate_threading(&c).is_ok());
    }
}
