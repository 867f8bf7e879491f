//! Runtime tunables, with brpc's defaults.
//!
//! The runtime reads its configuration in exactly one place: [`Config::load`], called once when
//! the global runtime starts (lazily on first use, or explicitly through [`crate::init`]). The
//! flags registry fills `Config` from the flags of the same names (`fiber_concurrency`,
//! `stack_size_small`, `stack_size_normal`, `stack_size_large`, `guard_page_size`,
//! `task_group_ntags`, `fiber_parking_lots`) and freezes them, so a later attempt to change one
//! is refused with a message saying the scheduler already read it. [`crate::init`] with an explicit
//! `Config` bypasses the flags.

use std::fmt;

/// Largest supported number of workers (all tags together). The stack-overflow handler keeps one
/// slot per worker in a fixed table, so the bound is static.
pub const MAX_WORKERS: usize = 1024;

/// Everything the runtime can be tuned with. Fields are read once, at runtime start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of worker threads over all tags (brpc `bthread_concurrency`; default: the number of
    /// cores; 0 also means the number of cores). Split evenly between tags, at least one worker
    /// per tag.
    pub fiber_concurrency: usize,
    /// Usable bytes of a small stack (brpc `stack_size_small`, 32 KiB).
    pub stack_size_small: usize,
    /// Usable bytes of a normal stack, the default (brpc `stack_size_normal`, 1 MiB).
    pub stack_size_normal: usize,
    /// Usable bytes of a large stack (brpc `stack_size_large`, 8 MiB).
    pub stack_size_large: usize,
    /// Bytes of the `PROT_NONE` guard below every stack (brpc `guard_page_size`, 4 KiB). Rounded up
    /// to the page size. Unlike brpc, 0 still gets one guard page: the guard is what turns a
    /// stack overflow into a clean crash, and corosensei's `Stack` contract requires one.
    pub guard_page_size: usize,
    /// Number of isolated worker pools (brpc `task_group_ntags`, 1).
    pub task_group_ntags: usize,
    /// Parking lots (futex words) per tag (brpc `PARKING_LOT_NUM`, 4). More lots spread the
    /// wake-ups of a busy spawner; fewer lots make a signal more likely to reach an idle worker.
    pub parking_lot_num: usize,
    /// Stacks of each size class a worker keeps for reuse before handing them to the shared pool.
    /// Reuse is what makes spawning cheap: a pooled stack costs no `mmap`.
    pub stack_pool_per_worker: usize,
    /// Hash buckets of the timer thread (brpc `timer_thread` default 13). Scheduling threads hash
    /// to a bucket, so many threads scheduling at once rarely share a lock.
    pub timer_buckets: usize,
    /// Upper bound on threads of the [`crate::blocking`] pool.
    pub blocking_max_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fiber_concurrency: std::thread::available_parallelism().map_or(4, |n| n.get()),
            stack_size_small: 32 * 1024,
            stack_size_normal: 1024 * 1024,
            stack_size_large: 8 * 1024 * 1024,
            guard_page_size: 4096,
            task_group_ntags: 1,
            parking_lot_num: 4,
            stack_pool_per_worker: 64,
            timer_buckets: 13,
            blocking_max_threads: 64,
        }
    }
}

/// A configuration value the runtime refuses; the message names the flag at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The configuration the global runtime starts with when nobody called [`crate::init`]: the
    /// one place where the runtime reads its settings.
    ///
    /// Reads (and freezes) the runtime's flags; the fields that have no flag keep their defaults.
    pub fn load() -> Config {
        use crate::flags::runtime_flags as f;
        const BY: &str = "the fiber scheduler";
        Config {
            fiber_concurrency: f::FIBER_CONCURRENCY.freeze(BY),
            stack_size_small: f::STACK_SIZE_SMALL.freeze(BY),
            stack_size_normal: f::STACK_SIZE_NORMAL.freeze(BY),
            stack_size_large: f::STACK_SIZE_LARGE.freeze(BY),
            guard_page_size: f::GUARD_PAGE_SIZE.freeze(BY),
            task_group_ntags: f::TASK_GROUP_NTAGS.freeze(BY),
            parking_lot_num: f::FIBER_PARKING_LOTS.freeze(BY),
            ..Config::default()
        }
    }

    /// Checks every field; the error names the first flag out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, v: usize, range: &str| {
            Err(ConfigError(format!(
                "{name}={v} is out of range: must be {range}"
            )))
        };
        if self.task_group_ntags == 0 || self.task_group_ntags > MAX_WORKERS {
            return bad("task_group_ntags", self.task_group_ntags, "1..=1024");
        }
        if self.fiber_concurrency > MAX_WORKERS {
            return bad(
                "fiber_concurrency",
                self.fiber_concurrency,
                "0..=1024 (0: one per core)",
            );
        }
        for (name, v) in [
            ("stack_size_small", self.stack_size_small),
            ("stack_size_normal", self.stack_size_normal),
            ("stack_size_large", self.stack_size_large),
        ] {
            if !(16 * 1024..=1 << 30).contains(&v) {
                return bad(name, v, "16 KiB..=1 GiB");
            }
        }
        if self.guard_page_size > 1 << 20 {
            return bad("guard_page_size", self.guard_page_size, "0..=1 MiB");
        }
        if self.parking_lot_num == 0 || self.parking_lot_num > 64 {
            return bad("parking_lot_num", self.parking_lot_num, "1..=64");
        }
        if self.timer_buckets == 0 || self.timer_buckets > 1024 {
            return bad("timer_buckets", self.timer_buckets, "1..=1024");
        }
        if self.blocking_max_threads == 0 {
            return bad("blocking_max_threads", 0, ">= 1");
        }
        Ok(())
    }

    /// `fiber_concurrency`, with 0 resolved to the number of cores.
    pub fn resolved_concurrency(&self) -> usize {
        if self.fiber_concurrency == 0 {
            std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .min(MAX_WORKERS)
        } else {
            self.fiber_concurrency
        }
    }

    /// Workers of each tag: `fiber_concurrency` split evenly, at least one per tag.
    pub(crate) fn workers_per_tag(&self) -> usize {
        (self.resolved_concurrency() / self.task_group_ntags).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_brpcs_and_valid() {
        let c = Config::default();
        assert_eq!(c.stack_size_small, 32768);
        assert_eq!(c.stack_size_normal, 1 << 20);
        assert_eq!(c.stack_size_large, 8 << 20);
        assert_eq!(c.guard_page_size, 4096);
        assert_eq!(c.task_group_ntags, 1);
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_flag() {
        let c = Config {
            fiber_concurrency: 5000,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("fiber_concurrency"));
        let c = Config {
            guard_page_size: 2 << 20,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("guard_page_size"));
        // 0 means "one per core" / "the minimum guard", as the flags define them.
        let c = Config {
            fiber_concurrency: 0,
            guard_page_size: 0,
            ..Config::default()
        };
        c.validate().unwrap();
        assert!(c.resolved_concurrency() >= 1);
    }
}
