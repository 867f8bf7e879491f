//! Default variables: the process (bvar's `default_variables`) and the fiber runtime.
//!
//! [`expose_default_variables`] exposes them once, in the global registry:
//!
//! | name | what |
//! |---|---|
//! | `process_cpu_usage` | CPU cores used (user + system time per second, 10 s window) |
//! | `process_memory_resident` | resident set size, bytes |
//! | `process_fd_count` | open file descriptors |
//! | `process_thread_count` | OS threads |
//! | `process_uptime` | seconds since the process started |
//! | `fiber_worker_count` | worker threads of the fiber runtime |
//! | `fiber_count` | fibers alive (queued, running or parked) |
//! | `fiber_created_count` | fibers created since start |
//! | `fiber_switch_second` | switches into fibers per second (10 s window) |
//! | `fiber_steal_count` | tasks taken from other workers' queues |
//! | `fiber_park_count` | times a worker went to sleep for lack of work |
//!
//! Values come from `/proc` and `getrusage` when read; where `/proc` is missing they read 0.
//! Reading the fiber statistics never starts the runtime.

use crate::passive::PassiveStatus;
use crate::registry::ExposeError;
use crate::window::PerSecond;
use crate::Exposable;
use parking_lot::Mutex;
use std::time::Instant;

/// Window of the per-second default variables, in seconds.
const RATE_WINDOW_SECS: usize = 10;

/// The exposed default variables, kept alive (hidden if dropped).
struct Defaults {
    /// CPU seconds, source of `process_cpu_usage`.
    _cpu_seconds: PassiveStatus<f64>,
    /// `process_cpu_usage`.
    _cpu_usage: PerSecond<PassiveStatus<f64>>,
    /// Context switches, source of `fiber_switch_second`.
    _switches: PassiveStatus<i64>,
    /// `fiber_switch_second`.
    _switch_second: PerSecond<PassiveStatus<i64>>,
    /// The plain passive values.
    _passive: Vec<PassiveStatus<i64>>,
    /// `process_uptime`.
    _uptime: PassiveStatus<f64>,
}

/// Set once the defaults are exposed.
static DEFAULTS: Mutex<Option<Defaults>> = Mutex::new(None);

/// Exposes the default variables (table in the module docs) in the global registry; calling it
/// again does nothing. Fails if one of the names is taken by another variable (then none is
/// exposed, and a later call may try again).
pub fn expose_default_variables() -> Result<(), ExposeError> {
    let mut slot = DEFAULTS.lock();
    if slot.is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let cpu_seconds = PassiveStatus::new(cpu_seconds);
    let cpu_usage = PerSecond::new(&cpu_seconds, RATE_WINDOW_SECS);
    let switches = PassiveStatus::new(|| spindle_runtime::stats().context_switches as i64);
    let switch_second = PerSecond::new(&switches, RATE_WINDOW_SECS);
    let uptime = PassiveStatus::new(move || {
        process_uptime().unwrap_or_else(|| started.elapsed().as_secs_f64())
    });
    let passive: Vec<(&str, PassiveStatus<i64>)> = vec![
        (
            "process_memory_resident",
            PassiveStatus::new(resident_bytes),
        ),
        ("process_fd_count", PassiveStatus::new(fd_count)),
        ("process_thread_count", PassiveStatus::new(thread_count)),
        (
            "fiber_worker_count",
            PassiveStatus::new(|| spindle_runtime::stats().workers as i64),
        ),
        (
            "fiber_count",
            PassiveStatus::new(|| spindle_runtime::stats().fibers_alive as i64),
        ),
        (
            "fiber_created_count",
            PassiveStatus::new(|| spindle_runtime::stats().fibers_created as i64),
        ),
        (
            "fiber_steal_count",
            PassiveStatus::new(|| spindle_runtime::stats().steals as i64),
        ),
        (
            "fiber_park_count",
            PassiveStatus::new(|| spindle_runtime::stats().parks as i64),
        ),
    ];
    // Any error drops everything exposed so far, which hides it again.
    cpu_usage.expose("process_cpu_usage")?;
    switch_second.expose("fiber_switch_second")?;
    uptime.expose("process_uptime")?;
    for (name, var) in &passive {
        var.expose(name)?;
    }
    *slot = Some(Defaults {
        _cpu_seconds: cpu_seconds,
        _cpu_usage: cpu_usage,
        _switches: switches,
        _switch_second: switch_second,
        _passive: passive.into_iter().map(|p| p.1).collect(),
        _uptime: uptime,
    });
    Ok(())
}

/// User + system CPU time of the process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: `rusage` is plain data, valid when zeroed; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The fields of `/proc/self/stat` after the command name; index 0 is field 3 (`state`).
fn stat_fields() -> Option<Vec<String>> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field `n` (1-based, as in `proc(5)`) of `/proc/self/stat`, parsed.
fn stat_field(n: usize) -> Option<i64> {
    stat_fields()?.get(n.checked_sub(3)?)?.parse().ok()
}

/// Resident set size in bytes.
fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(page.max(0) as i64)
}

/// Open file descriptors (not counting the one used to list them).
fn fd_count() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| (d.count() as i64 - 1).max(0))
        .unwrap_or(0)
}

/// OS threads of the process.
fn thread_count() -> i64 {
    stat_field(20).unwrap_or(0)
}

/// Seconds since the process started, from `/proc`.
fn process_uptime() -> Option<f64> {
    let start_ticks = stat_field(22)? as f64;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let boot_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    (hz > 0.0).then(|| (boot_uptime - start_ticks / hz).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readers_answer() {
        assert!(cpu_seconds() >= 0.0);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(resident_bytes() > 0);
            assert!(fd_count() >= 3);
            assert!(thread_count() >= 1);
            assert!(process_uptime().is_some_and(|u| u >= 0.0));
        }
    }
}
