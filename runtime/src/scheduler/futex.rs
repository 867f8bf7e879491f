//! A 32-bit futex word: `wait(expected)` sleeps only while the word still equals `expected`
//! (checked atomically by the kernel against `wake`), `wake(n)` wakes up to `n` sleepers.
//!
//! Under loom the kernel is emulated by a mutex and a condition variable: `wait` checks the word
//! and sleeps under the mutex, `wake` notifies under it, which is exactly the atomicity the
//! kernel gives, so models of code built on `Futex` check the real protocol.

use crate::loom::atomic::AtomicU32;
#[cfg(not(loom))]
use std::time::Duration;

/// A futex word. See the module doc.
pub(crate) struct Futex {
    /// The word; callers change it with ordinary atomic operations.
    pub(crate) word: AtomicU32,
    #[cfg(loom)]
    lock: crate::loom::Mutex<()>,
    #[cfg(loom)]
    cond: crate::loom::Condvar,
}

impl Futex {
    #[cfg(not(loom))]
    pub(crate) const fn new(v: u32) -> Self {
        Futex {
            word: AtomicU32::new(v),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(v: u32) -> Self {
        Futex {
            word: AtomicU32::new(v),
            lock: crate::loom::Mutex::new(()),
            cond: crate::loom::Condvar::new(),
        }
    }

    /// Sleeps while the word equals `expected`, at most `timeout`. May return spuriously.
    #[cfg(not(loom))]
    pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
        let ts;
        let ts_ptr = match timeout {
            Some(d) => {
                ts = libc::timespec {
                    tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                };
                &ts as *const libc::timespec
            }
            None => std::ptr::null(),
        };
        // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of the call; the
        // kernel only reads it. A null or valid timespec pointer is what FUTEX_WAIT expects.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
            );
        }
    }

    /// Wakes up to `n` sleepers; returns how many were woken.
    #[cfg(not(loom))]
    pub(crate) fn wake(&self, n: u32) -> usize {
        let n = n.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: as in `wait`; FUTEX_WAKE does not dereference the word beyond hashing it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                n,
            )
        };
        r.max(0) as usize
    }

    /// Loom emulation of `wait` (no timeout: models never need one).
    #[cfg(loom)]
    pub(crate) fn wait(&self, expected: u32, _timeout: Option<std::time::Duration>) {
        use crate::loom::atomic::Ordering;
        let g = self.lock.lock().unwrap();
        if self.word.load(Ordering::SeqCst) == expected {
            drop(self.cond.wait(g).unwrap());
        }
    }

    /// Loom emulation of `wake` (wakes everyone: spurious wake-ups are allowed).
    #[cfg(loom)]
    pub(crate) fn wake(&self, _n: u32) -> usize {
        let _g = self.lock.lock().unwrap();
        self.cond.notify_all();
        0
    }
}
