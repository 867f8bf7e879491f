//! Turning a fiber stack overflow into a clean crash.
//!
//! Each worker publishes the guard region of the fiber it is about to run in a fixed table
//! (one slot per worker, plain atomics: readable from a signal handler). A `SIGSEGV`/`SIGBUS`
//! handler, running on an alternate signal stack (the faulting stack is exhausted), checks whether
//! the fault address lies in a published guard region; if so it writes "fiber stack overflow" to
//! stderr and aborts. Any other fault is handed to the handler that was installed before ours
//! (Rust's own thread-overflow reporter, or the default action), so nothing else changes.
//!
//! Only async-signal-safe operations run in the handler: atomic loads, `write(2)`, `abort(3)`,
//! `sigaction(2)`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::config::MAX_WORKERS;

/// Guard region `[lo, hi)` of the fiber each worker runs (0, 0 when none).
static GUARDS: [(AtomicUsize, AtomicUsize); MAX_WORKERS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_WORKERS];

/// The actions that were installed before ours, to chain to (index 0: SIGSEGV, 1: SIGBUS).
static mut PREVIOUS: [std::mem::MaybeUninit<libc::sigaction>; 2] = [
    std::mem::MaybeUninit::zeroed(),
    std::mem::MaybeUninit::zeroed(),
];

static INSTALL: Once = Once::new();

/// Publishes the guard region of the fiber that `worker` is about to run.
#[inline]
pub(crate) fn set_current_guard(worker: usize, range: (usize, usize)) {
    let slot = &GUARDS[worker];
    slot.0.store(range.0, Ordering::Relaxed);
    slot.1.store(range.1, Ordering::Relaxed);
}

/// Installs the process-wide handler (once).
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
            // SAFETY: a zeroed sigaction is a valid starting value; the handler has the
            // SA_SIGINFO signature; PREVIOUS is written here only, inside call_once, before any
            // handler of ours can run (it is installed by this very call).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                let prev = std::ptr::addr_of_mut!(PREVIOUS[i]).cast::<libc::sigaction>();
                libc::sigaction(sig, &sa, prev);
            }
        }
    });
}

/// Gives the calling thread an alternate signal stack if it has none (workers call it at start).
pub(crate) fn ensure_altstack() {
    const ALT_SIZE: usize = 64 * 1024;
    // SAFETY: querying the current alternate stack into a zeroed stack_t.
    unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) == 0
            && cur.ss_flags & libc::SS_DISABLE == 0
        {
            return; // Rust's runtime already gave this thread one.
        }
    }
    // SAFETY: a fresh anonymous mapping; it is leaked on purpose (workers live as long as the
    // process), so the alternate stack never dangles.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            ALT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return;
        }
        let st = libc::stack_t {
            ss_sp: p,
            ss_flags: 0,
            ss_size: ALT_SIZE,
        };
        libc::sigaltstack(&st, std::ptr::null_mut());
    }
}

fn write_stderr(msg: &[u8]) {
    // SAFETY: write(2) on fd 2 with a valid buffer is async-signal-safe.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for (lo, hi) in GUARDS.iter() {
        let (lo, hi) = (lo.load(Ordering::Relaxed), hi.load(Ordering::Relaxed));
        if lo <= addr && addr < hi {
            write_stderr(
                b"\nspindle: fiber stack overflow (the fault hit the guard page of a fiber stack); \
                  aborting. Spawn deep recursions with a larger stack \
                  (Builder::stack_size(StackSize::Large)) or raise stack_size_normal.\n",
            );
            // SAFETY: abort is async-signal-safe and never returns.
            unsafe { libc::abort() };
        }
    }
    // Not ours: chain to the previous action.
    let i = usize::from(sig == libc::SIGBUS);
    // SAFETY: PREVIOUS[i] was filled by sigaction before this handler was installed and is never
    // written again. Calling the previous SA_SIGINFO handler with our arguments is what it
    // expects; for SIG_DFL / SIG_IGN we restore it and return, so the fault repeats and takes the
    // default action.
    unsafe {
        let prev = &*std::ptr::addr_of!(PREVIOUS[i]).cast::<libc::sigaction>();
        let h = prev.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            libc::sigaction(sig, prev, std::ptr::null_mut());
        } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}
