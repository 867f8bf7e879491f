//! Fiber stacks: lazily committed mappings with a guard region at the low end.
//!
//! Layout (stacks grow down):
//!
//! ```text
//! start                start+guard                                  start+len
//!   | PROT_NONE guard   | usable, PROT_READ|PROT_WRITE, MAP_NORESERVE  |
//!   ^ limit()                                                base() ^
//! ```
//!
//! Invariants: the mapping is `MAP_NORESERVE` and anonymous, so only pages a fiber touches cost
//! memory (an idle 1 MiB stack costs a page or two); the guard is `PROT_NONE`, so running off the
//! end faults (Rust emits stack probes for big frames, so the guard cannot be jumped over) and the
//! handler in `overflow.rs` turns that fault into a clean abort with a message.

use std::io;
use std::ptr::NonNull;

use corosensei::stack::{Stack, StackPointer};

/// The three stack size classes of brpc (`stack_size_small` / `_normal` / `_large`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StackSize {
    /// `stack_size_small` (32 KiB): for fibers that do little and must be many.
    Small,
    /// `stack_size_normal` (1 MiB), the default.
    #[default]
    Normal,
    /// `stack_size_large` (8 MiB): deep recursion, big locals.
    Large,
}

impl StackSize {
    /// Index into per-class tables.
    pub(crate) fn index(self) -> usize {
        match self {
            StackSize::Small => 0,
            StackSize::Normal => 1,
            StackSize::Large => 2,
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn round_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

/// One mapped stack. Owns its mapping; unmapped on drop.
pub(crate) struct FiberStack {
    /// Lowest address of the mapping (start of the guard).
    start: NonNull<u8>,
    /// Bytes mapped, guard included.
    len: usize,
    /// Bytes of guard at `start`.
    guard: usize,
    /// Size class it was made for (pools are per class).
    class: StackSize,
}

// SAFETY: a FiberStack is plain owned memory; nothing about it is tied to a thread.
unsafe impl Send for FiberStack {}

impl FiberStack {
    /// Maps `usable` bytes (rounded up to pages) plus `guard` bytes of guard.
    pub(crate) fn new(usable: usize, guard: usize, class: StackSize) -> io::Result<FiberStack> {
        let page = page_size();
        let usable = round_up(usable.max(page), page);
        let guard = round_up(guard.max(1), page);
        let len = usable + guard;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
        // existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: [p, p+guard) lies inside the mapping just created and owned here.
        if unsafe { libc::mprotect(p, guard, libc::PROT_NONE) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping the mapping created above, which nothing else references.
            unsafe { libc::munmap(p, len) };
            return Err(e);
        }
        Ok(FiberStack {
            start: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
            guard,
            class,
        })
    }

    /// `[low, high)` addresses of the guard region.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let lo = self.start.as_ptr() as usize;
        (lo, lo + self.guard)
    }

    /// The size class this stack belongs to.
    pub(crate) fn class(&self) -> StackSize {
        self.class
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by self and no coroutine runs on it any more (a stack is
        // only dropped after its coroutine completed and gave it back).
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

// SAFETY: base and limit delimit a mapping owned by self; the limit includes the guard region,
// which is PROT_NONE, as the trait requires; the usable part is at least one page (>= 4096).
unsafe impl Stack for FiberStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.start.as_ptr() as usize + self.len).expect("non-null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.start.as_ptr() as usize + self.guard).expect("non-null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "miri supports only MAP_PRIVATE|MAP_ANONYMOUS mmap and no mprotect"
    )]
    fn maps_with_guard() {
        let s = FiberStack::new(32 * 1024, 4096, StackSize::Small).unwrap();
        let (lo, hi) = s.guard_range();
        assert_eq!(hi - lo, page_size().max(4096));
        assert_eq!(s.limit().get(), hi);
        assert!(s.base().get() - s.limit().get() >= 32 * 1024);
        // The usable top is writable.
        // SAFETY: the byte below base is inside the writable part of the mapping owned by `s`.
        unsafe { *((s.base().get() - 1) as *mut u8) = 7 };
    }
}
