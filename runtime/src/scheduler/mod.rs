//! The M:N scheduler: worker threads running fibers, with work stealing (brpc's bthread core).
//!
//! - `task_control.rs`: all workers, tags, signalling (brpc `TaskControl`).
//! - `task_group.rs`: one worker and its loop (brpc `TaskGroup`).
//! - `parking_lot.rs` / `futex.rs`: where idle workers sleep, without lost wake-ups.
//! - `remote_task_queue.rs`: how non-workers hand fibers to workers.
//! - `builder.rs`: spawning (`spawn`, `spawn_urgent`, `Builder`, `flush`) and the fiber calls
//!   (`yield_now`, `sleep`, `current_task`).
//! - `stats.rs`: counters.
//! - `idle_hook.rs`: lets an I/O layer's poller host idle workers (the RPC dispatchers).
//!
//! The global runtime starts on first use with [`crate::config::Config::load`], or explicitly
//! with [`init`]; it runs until the process exits.

pub(crate) mod builder;
pub(crate) mod deferred_flush;
pub(crate) mod futex;
pub(crate) mod idle_hook;
pub(crate) mod parking_lot;
pub(crate) mod remote_task_queue;
pub(crate) mod stats;
pub(crate) mod task_control;
pub(crate) mod task_group;

use std::fmt;
use std::sync::OnceLock;

use crate::config::{Config, ConfigError};
use task_control::TaskControl;

static RUNTIME: OnceLock<&'static TaskControl> = OnceLock::new();

/// Why [`init`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitError {
    /// The runtime is already running (started by an earlier `init` or by first use).
    AlreadyStarted,
    /// A configuration value is out of range; the message names the flag.
    Invalid(ConfigError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyStarted => f.write_str("the spindle runtime is already running"),
            InitError::Invalid(e) => write!(f, "invalid runtime configuration: {e}"),
        }
    }
}

impl std::error::Error for InitError {}

/// Starts the global runtime with `config`. Call it before anything else uses the runtime;
/// without it, the runtime starts on first use with [`Config::load`].
pub fn init(config: Config) -> Result<(), InitError> {
    config.validate().map_err(InitError::Invalid)?;
    let mut started = false;
    RUNTIME.get_or_init(|| {
        started = true;
        TaskControl::start(config)
    });
    if started {
        Ok(())
    } else {
        Err(InitError::AlreadyStarted)
    }
}

/// The global runtime, started on first use.
pub(crate) fn control() -> &'static TaskControl {
    RUNTIME.get_or_init(|| {
        let config = Config::load();
        if let Err(e) = config.validate() {
            panic!("spindle: cannot start the runtime: {e}");
        }
        TaskControl::start(config)
    })
}

/// The global runtime if it has started.
pub(crate) fn try_control() -> Option<&'static TaskControl> {
    RUNTIME.get().copied()
}

/// The configuration the runtime runs with (starting it if needed).
pub fn config() -> &'static Config {
    &control().config
}

/// A snapshot of the runtime's counters; all zero before the runtime starts. Cheap: sums one
/// set of counters per worker.
pub fn stats() -> stats::Stats {
    try_control().map_or_else(stats::Stats::default, TaskControl::stats)
}

/// Global index of the worker running the caller, `None` on a plain thread. A fiber may migrate
/// between any two calls, so the answer is only a hint of where it ran just now.
pub fn current_worker() -> Option<usize> {
    let g = task_group::current_group();
    // SAFETY: a non-null group is the live worker of this thread.
    (!g.is_null()).then(|| unsafe { (*g).index })
}

/// Whether the worker running the calling fiber has other fibers ready to run (not counting
/// fibers that yielded); `false` on a plain thread. A hint for batching: a fiber about to make
/// a syscall that others may want to join (a socket write) can [`yield_now`](crate::yield_now)
/// first, so they run and add to it. Like every such query, the answer may be stale by the
/// time the caller acts on it.
pub fn has_ready_fibers() -> bool {
    let g = task_group::current_group();
    // SAFETY: a non-null group is the live worker of this thread; not kept across a switch.
    !g.is_null() && !task_group::current_task_meta().is_null() && unsafe { (*g).has_ready() }
}

/// Tag of the worker running the caller, `None` on a plain thread.
pub fn current_tag() -> Option<usize> {
    let g = task_group::current_group();
    // SAFETY: a non-null group is the live worker of this thread.
    (!g.is_null()).then(|| unsafe { (*g).tag })
}

/// Makes `task` runnable again (after a butex wake or a timeout), from any thread: on the local
/// deque if the caller is a worker of the task's tag, else through a remote queue.
pub(crate) fn ready_to_run(task: crate::fiber::task::TaskRef) {
    let g = task_group::current_group();
    if !g.is_null() {
        // SAFETY: a non-null group is the live worker of this thread; not kept across a switch.
        let g = unsafe { &*g };
        if g.tag == task.tag() {
            let me = task_group::current_task_meta();
            // SAFETY: a non-null meta is the fiber running on this thread, and only that fiber
            // touches the flag.
            let signal = me.is_null() || !unsafe { (*me).defer_wake_signals };
            g.push_local(task, signal);
            return;
        }
    }
    control().push_remote(task.tag(), task, true);
}
