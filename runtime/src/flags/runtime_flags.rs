//! The runtime's own flags, with brpc's names and defaults (brpc's `bthread_concurrency` is
//! `fiber_concurrency` here).
//!
//! None of them is reloadable: the scheduler reads them once when it starts, with
//! [`Flag::freeze`](super::Flag::freeze), so set them before the first fiber is spawned (command
//! line, environment, or [`Flag::set`](super::Flag::set) at the top of `main`).
//!
//! Stack sizes are not checked against each other here (a validator sees one value); the
//! scheduler, which reads all three, may refuse `small > normal` etc. at start.
use std::sync::OnceLock;

use crate::define_flag;

/// The OS page size (`sysconf(_SC_PAGESIZE)`), 4096 if unknown.
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
    })
}

/// Most worker threads `fiber_concurrency` may ask for (brpc's `BTHREAD_MAX_CONCURRENCY`).
pub const MAX_FIBER_CONCURRENCY: usize = 1024;

/// Smallest fiber stack: room for the switch frame, a panic's unwinding and a little user code.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// Largest fiber stack (address space is reserved per stack, even if untouched).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Largest guard region.
pub const MAX_GUARD_PAGE_SIZE: usize = 1 << 20;

fn validate_concurrency(v: &usize) -> Result<(), String> {
    if *v <= MAX_FIBER_CONCURRENCY {
        Ok(())
    } else {
        Err(format!(
            "at most {MAX_FIBER_CONCURRENCY} workers (0 = number of cores)"
        ))
    }
}

fn validate_stack_size(v: &usize) -> Result<(), String> {
    let page = page_size();
    if *v < MIN_STACK_SIZE || *v > MAX_STACK_SIZE {
        Err(format!(
            "must be in {MIN_STACK_SIZE}..={MAX_STACK_SIZE} bytes"
        ))
    } else if v % page != 0 {
        Err(format!(
            "must be a multiple of the page size ({page} bytes)"
        ))
    } else {
        Ok(())
    }
}

fn validate_guard_page_size(v: &usize) -> Result<(), String> {
    let page = page_size();
    if *v > MAX_GUARD_PAGE_SIZE {
        Err(format!("must be at most {MAX_GUARD_PAGE_SIZE} bytes"))
    } else if v % page != 0 {
        Err(format!(
            "must be a multiple of the page size ({page} bytes), or 0 for the minimum (one page)"
        ))
    } else {
        Ok(())
    }
}

define_flag!(
    /// Worker threads of the scheduler (brpc: `bthread_concurrency`).
    pub static FIBER_CONCURRENCY: usize = 0,
    "number of worker threads running fibers, 0 = number of cores",
    validator = validate_concurrency
);

define_flag!(
    /// Stack size of fibers started with the small stack class.
    pub static STACK_SIZE_SMALL: usize = 32768,
    "size of small fiber stacks in bytes (multiple of the page size)",
    validator = validate_stack_size
);

define_flag!(
    /// Stack size of fibers started with the normal (default) stack class.
    pub static STACK_SIZE_NORMAL: usize = 1048576,
    "size of normal fiber stacks in bytes (multiple of the page size)",
    validator = validate_stack_size
);

define_flag!(
    /// Stack size of fibers started with the large stack class.
    pub static STACK_SIZE_LARGE: usize = 8388608,
    "size of large fiber stacks in bytes (multiple of the page size)",
    validator = validate_stack_size
);

define_flag!(
    /// Inaccessible region below each fiber stack that turns an overflow into a fault.
    pub static GUARD_PAGE_SIZE: usize = 4096,
    "size of the guard region below each fiber stack in bytes (rounded up to pages; 0 = one page)",
    validator = validate_guard_page_size
);

define_flag!(
    /// Number of isolated worker pools (brpc's worker tags).
    pub static TASK_GROUP_NTAGS: usize = 1,
    "number of worker tags (isolated worker pools), 1..=128",
    validator = |v| {
        if (1..=128).contains(v) {
            Ok(())
        } else {
            Err("must be in 1..=128".into())
        }
    }
);

define_flag!(
    /// Number of parking lots idle workers sleep on (brpc's `PARKING_LOT_NUM`, a constant there).
    pub static FIBER_PARKING_LOTS: usize = 4,
    "number of parking lots idle workers sleep on, 1..=64",
    validator = |v| {
        if (1..=64).contains(v) {
            Ok(())
        } else {
            Err("must be in 1..=64".into())
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{self, FlagError};

    #[test]
    fn defaults_are_brpcs() {
        assert_eq!(FIBER_CONCURRENCY.get(), 0);
        assert_eq!(STACK_SIZE_SMALL.get(), 32 * 1024);
        assert_eq!(STACK_SIZE_NORMAL.get(), 1024 * 1024);
        assert_eq!(STACK_SIZE_LARGE.get(), 8 * 1024 * 1024);
        assert_eq!(GUARD_PAGE_SIZE.get(), 4096);
        assert_eq!(TASK_GROUP_NTAGS.get(), 1);
        assert_eq!(FIBER_PARKING_LOTS.get(), 4);
        assert_eq!(FIBER_CONCURRENCY.name(), "fiber_concurrency");
        assert!(!FIBER_CONCURRENCY.is_reloadable());
    }

    #[test]
    fn defaults_pass_validators() {
        flags::check_defaults().unwrap();
    }

    #[test]
    fn validators_refuse_bad_values_with_reasons() {
        // Validation happens before the store, so nothing changes.
        let e = STACK_SIZE_SMALL.set(32769).unwrap_err();
        assert!(e.to_string().contains("multiple of the page size"), "{e}");
        assert!(e.to_string().contains("--stack_size_small"), "{e}");
        assert!(STACK_SIZE_LARGE.set(1 << 31).is_err());
        assert!(STACK_SIZE_NORMAL.set(4096).is_err());
        assert!(GUARD_PAGE_SIZE.set(100).is_err());
        assert!(TASK_GROUP_NTAGS.set(0).is_err());
        assert!(TASK_GROUP_NTAGS.set(129).is_err());
        assert!(FIBER_PARKING_LOTS.set(0).is_err());
        let e = flags::set("fiber_concurrency", "abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid value "abc" for flag --fiber_concurrency: expected an unsigned integer"#
        );
        assert!(matches!(
            flags::set("fiber_concurrency", "5000"),
            Err(FlagError::InvalidValue {
                flag: "fiber_concurrency",
                ..
            })
        ));
        assert_eq!(STACK_SIZE_SMALL.get(), 32768);
        assert_eq!(FIBER_CONCURRENCY.get(), 0);
    }

    #[test]
    fn listed_with_crate_and_env_var() {
        let all = flags::list();
        let fc = all.iter().find(|i| i.name == "fiber_concurrency").unwrap();
        assert_eq!(fc.type_name, "usize");
        assert_eq!(fc.default, "0");
        assert_eq!(fc.env_var, "SPINDLE_FIBER_CONCURRENCY");
        assert_eq!(fc.crate_name(), "spindle_runtime");
        assert_eq!(fc.module_path, "spindle_runtime::flags::runtime_flags");
        let names: Vec<_> = all.iter().map(|i| i.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(page_size().is_power_of_two());
    }
}
