//! The idle-hook protocol (scheduler/idle_hook.rs): idle workers park in a registered hook
//! instead of their futex, and every signal still reaches them. A lost wake-up shows up as a
//! join that never returns, so every wait here is bounded and fails loudly.

use spindle_runtime::IdleHook;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A poller with one seat, like a dispatcher: the worker that holds it blocks in `poll(2)` on
/// an eventfd that `unpark` writes.
struct EventfdHook {
    fd: i32,
    seat: AtomicBool,
    parks: AtomicU64,
    unparks: AtomicU64,
    polls_now: AtomicU64,
    /// `after_park` calls that followed a park on the same thread, and those that did not.
    after_parks: AtomicU64,
    stray_after_parks: AtomicU64,
}

thread_local! {
    /// Set by `park` on the parking thread, consumed by `after_park`.
    static JUST_PARKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl EventfdHook {
    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl IdleHook for EventfdHook {
    fn park(&self, still_idle: &dyn Fn() -> bool) -> bool {
        if self
            .seat
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        self.parks.fetch_add(1, Ordering::Relaxed);
        if still_idle() {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd. A bounded wait keeps a protocol bug from hanging the
            // test binary forever, but the test below fails long before it matters.
            unsafe { libc::poll(&mut pfd, 1, 10_000) };
            self.drain();
        }
        self.seat.store(false, Ordering::Release);
        JUST_PARKED.set(true);
        true
    }

    fn after_park(&self) {
        if JUST_PARKED.replace(false) {
            self.after_parks.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stray_after_parks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unpark(&self) -> usize {
        if !self.seat.load(Ordering::SeqCst) {
            return 0;
        }
        self.unparks.fetch_add(1, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
        1
    }

    fn poll_now(&self) {
        self.polls_now.fetch_add(1, Ordering::Relaxed);
    }
}

fn hook() -> &'static EventfdHook {
    static HOOK: std::sync::OnceLock<&'static EventfdHook> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        let h: &'static EventfdHook = Box::leak(Box::new(EventfdHook {
            fd,
            seat: AtomicBool::new(false),
            parks: AtomicU64::new(0),
            unparks: AtomicU64::new(0),
            polls_now: AtomicU64::new(0),
            after_parks: AtomicU64::new(0),
            stray_after_parks: AtomicU64::new(0),
        }));
        assert!(spindle_runtime::set_idle_hook(h));
        assert!(!spindle_runtime::set_idle_hook(h), "the hook is set once");
        h
    })
}

/// Runs `f` on a helper thread and fails if it does not finish in `limit`.
fn bounded(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit)
        .expect("a fiber was not woken: lost wake-up with an idle hook");
}

#[test]
fn idle_hook_parks_idle_workers_and_loses_no_wakeup() {
    let h = hook();
    bounded(Duration::from_secs(60), || {
        // Plain-thread spawns: each must wake a worker that may be parked in the hook. Pauses
        // between some spawns let the workers go idle (and into the hook) in between.
        for i in 0..20_000u32 {
            let done = spindle_runtime::spawn(move || i).join().unwrap();
            assert_eq!(done, i);
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Fibers that sleep are woken by the timer thread, another non-worker signaller.
        let hs: Vec<_> = (0..64)
            .map(|_| spindle_runtime::spawn(|| spindle_runtime::sleep(Duration::from_millis(3))))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert!(
        h.parks.load(Ordering::Relaxed) > 0,
        "idle workers of tag 0 park in the hook"
    );
    assert!(
        h.after_parks.load(Ordering::Relaxed) > 0,
        "a worker calls after_park after a park that returned true"
    );
    assert_eq!(
        h.stray_after_parks.load(Ordering::Relaxed),
        0,
        "after_park runs only on the thread that just parked, right after its park"
    );
}

#[test]
fn busy_workers_poll_the_hook_between_fibers() {
    let h = hook();
    let before = h.polls_now.load(Ordering::Relaxed);
    bounded(Duration::from_secs(60), || {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                spindle_runtime::spawn(|| {
                    for _ in 0..2_000 {
                        spindle_runtime::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert!(h.polls_now.load(Ordering::Relaxed) > before);
}
