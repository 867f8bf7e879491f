//! Event dispatchers (brpc's `EventDispatcher`): edge-triggered epoll loops that turn readiness
//! into reader fibers and writer wake-ups.
//!
//! # Who polls, and why seed 004 cannot happen
//!
//! brpc runs each dispatcher as a bthread that blocks in `epoll_wait`, pinning a worker. With
//! `event_dispatcher_num` (+ RDMA pollers) ≥ workers, no worker is left to run the fibers that
//! read sockets or answer handshakes: connections stall and fail ("Got EOF", seed 004).
//!
//! Spindle never pins a worker. A dispatcher has one poller at a time (the `owner` word; only
//! the owner calls `epoll_wait` and drains the wake-up eventfd, before it releases the
//! dispatcher, so a write to the eventfd reaches the owner of the moment or the next one, never
//! nobody):
//!
//! - **An idle worker** (the fast path). The dispatchers register a runtime
//!   [`IdleHook`](spindle_runtime::IdleHook): a worker of tag 0 with nothing to run takes a free
//!   dispatcher and sleeps in its `epoll_wait` instead of on its futex. When a socket becomes
//!   readable, that worker wakes, releases the dispatcher and runs the reader fiber itself
//!   (spawned onto its own LIFO slot: brpc's `spawn_urgent` without the pinned epoll fiber).
//!   One thread wake-up per event, as in brpc and tokio. New fibers for the worker (a spawn,
//!   a butex wake, a timer) interrupt it through the eventfd: the runtime's signal path calls
//!   the hook's `unpark` when its futex wake did not reach enough workers.
//! - **A busy worker** between fibers: every few dozen fibers a worker polls a free dispatcher
//!   without blocking (tokio's `event_interval`), so I/O is picked up under full load.
//! - **The dispatcher's own OS thread** (`spindle-epoll-<i>`), the safety net. While workers
//!   poll it sleeps (an interval doubling from 1 to 4 ms). When no worker polled during a whole
//!   interval and none is parked in the dispatcher (every worker busy in long fibers or
//!   blocked, the runtime not started yet, more dispatchers than idle workers), it polls
//!   itself — blocking in `epoll_wait` one interval at a time, so such a dispatcher has no gap
//!   in coverage — and hands the readers to workers through their remote queues. An idle
//!   worker that wants the dispatcher back flags `worker_wanted` and writes the eventfd; the
//!   thread releases it at once and wakes a worker with a no-op fiber.
//!
//! Whatever `fiber_concurrency` and `event_dispatcher_num` are, every dispatcher is polled (by
//! its thread if by nobody else), and fibers only ever wait for a worker, never for a
//! dispatcher: a configuration with 2 workers and 4 dispatchers works (test
//! `tests/dispatcher_starvation.rs`). [`stats`] tells how many events workers handled
//! themselves and how many went through the threads.

//! # The `nevent` protocol (one reader per fd, no locks)
//!
//! On `EPOLLIN`/`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR` the dispatcher does
//! `nevent.fetch_add(1)`; only the caller that saw 0 spawns a reader fiber
//! (`process_input_events`). The reader remembers the count it saw, reads until `EAGAIN`
//! (through the socket's [`InputHandler`](crate::socket::InputHandler)), then tries
//! `CAS(nevent: seen → 0)`. If events arrived meanwhile the CAS fails, it takes the new count
//! and reads again; if it succeeds, the next event spawns a new reader. Hence at most one
//! reader per socket at any time, and no event is lost: an event counted after the reader's
//! last `EAGAIN` makes its CAS fail.
//!
//! A TCP read that fills less than it offered ends the round like `EAGAIN` (tokio does the
//! same): the kernel had nothing more queued when it copied, and bytes queued after that raise
//! a new edge, hence a new count. This saves a `readv` per event for request/response traffic.
//! The exception is the end of the stream: a FIN that arrives with the last bytes raises no
//! later edge, so an event carrying `EPOLLRDHUP` / `EPOLLHUP` / `EPOLLERR` first sets the
//! socket's sticky `input_hup` flag (before its count, which the reader acquires), and from
//! then on the reader reads until EOF or `EAGAIN`.
//!
//! On `EPOLLOUT` the dispatcher bumps the socket's write butex and wakes the keep-write fiber
//! or the connecting caller. `EPOLLOUT` is in the interest set only on demand (connect, blocked
//! writes: `arm_epollout`).
//!
//! Epoll data is the [`SocketId`]'s 64 bits: an event for a socket that failed meanwhile finds
//! a stale id and is dropped; a pointer could dangle.

use crate::socket::{self, SocketId};
use spindle_runtime::define_flag;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

define_flag!(
    /// Number of epoll loops.
    pub static EVENT_DISPATCHER_NUM: usize = 1,
    "number of event dispatchers (epoll loops; polled by idle workers, each with an OS thread as a fallback); 1..=64",
    validator = |v| if (1..=64).contains(v) { Ok(()) } else { Err("must be in 1..=64".into()) }
);

/// Events of a registered socket without `EPOLLOUT`.
const BASE_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32;

/// Events per `epoll_wait`.
const MAX_EVENTS: usize = 64;

/// Epoll data of a dispatcher's wake-up eventfd: an id no socket ever has.
const WAKE_DATA: u64 = SocketId::INVALID.as_u64();

/// Who may poll a dispatcher (the `owner` word): nobody,
const FREE: u32 = 0;
/// an idle or busy worker (in the idle hook),
const WORKER: u32 = 1;
/// the dispatcher's own thread, for one non-blocking look.
const THREAD: u32 = 2;

/// The dispatcher thread's first wait before it polls for workers that stopped polling.
const THREAD_MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The longest such wait (the back-off while workers keep polling), and the longest a
/// dispatcher nobody polls waits for the thread to step in.
const THREAD_MAX_INTERVAL: Duration = Duration::from_millis(4);

/// One epoll loop.
#[derive(Debug)]
struct Dispatcher {
    /// The epoll fd (never closed: dispatchers live as long as the process).
    epfd: RawFd,
    /// An eventfd in `epfd` (level-triggered, data [`WAKE_DATA`]): writing it interrupts
    /// whoever polls.
    wake_fd: RawFd,
    /// Who polls: `FREE`, `WORKER` or `THREAD`. Only the owner calls `epoll_wait`, so a write to
    /// `wake_fd` reaches the owner and nobody else.
    owner: AtomicU32,
    /// A worker found the thread polling and went to sleep on its futex; the thread wakes a
    /// worker when it releases the dispatcher.
    worker_wanted: AtomicBool,
    /// Polls by workers so far (the dispatcher thread watches it to know when to step in).
    worker_polls: AtomicU64,
    /// Events handled by workers (idle or between fibers).
    worker_events: AtomicU64,
    /// Events handled by the dispatcher thread.
    thread_events: AtomicU64,
}

/// Counters of the event dispatchers, summed over all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Times a worker polled (parked in `epoll_wait` when idle, or checked between fibers).
    pub worker_polls: u64,
    /// Socket events handled by workers: the reader fiber ran where the event was seen.
    pub worker_events: u64,
    /// Socket events handled by the dispatcher threads: the reader was handed to a worker.
    pub thread_events: u64,
}

/// All dispatchers, started on first use; `event_dispatcher_num` is frozen then.
static DISPATCHERS: LazyLock<Vec<Dispatcher>> = LazyLock::new(start_dispatchers);

/// The idle hook the dispatchers give the runtime.
static IDLE_HOOK: DispatcherHook = DispatcherHook;

fn start_dispatchers() -> Vec<Dispatcher> {
    // Writing to a socket the peer closed must fail with EPIPE, not kill the process.
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let n = EVENT_DISPATCHER_NUM.freeze("the event dispatchers");
    let dispatchers: Vec<Dispatcher> = (0..n).map(Dispatcher::new).collect();
    for i in 0..n {
        std::thread::Builder::new()
            .name(format!("spindle-epoll-{i}"))
            .spawn(move || run_thread(&DISPATCHERS[i]))
            .unwrap_or_else(|e| panic!("cannot start event dispatcher thread {i}: {e}"));
    }
    // The threads and the hook reach the dispatchers through DISPATCHERS, which they can only
    // read once this initializer has returned.
    spindle_runtime::set_idle_hook(&IDLE_HOOK);
    dispatchers
}

/// Number of dispatchers (starting them if needed).
pub fn dispatcher_count() -> usize {
    DISPATCHERS.len()
}

/// The dispatchers' counters (starting them if needed).
pub fn stats() -> DispatcherStats {
    let mut s = DispatcherStats::default();
    for d in DISPATCHERS.iter() {
        s.worker_polls += d.worker_polls.load(Ordering::Relaxed);
        s.worker_events += d.worker_events.load(Ordering::Relaxed);
        s.thread_events += d.thread_events.load(Ordering::Relaxed);
    }
    s
}

/// The dispatcher of socket `id` (fixed by its slot).
fn epfd_of(id: SocketId) -> RawFd {
    let d = &*DISPATCHERS;
    d[id.slot() as usize % d.len()].epfd
}

fn ctl(op: i32, fd: RawFd, id: SocketId, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: id.as_u64(),
    };
    // SAFETY: `ev` is a live epoll_event; epoll copies it.
    let rc = unsafe { libc::epoll_ctl(epfd_of(id), op, fd, &mut ev) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Adds `fd` (socket `id`) for input, and for output when `want_out`.
pub(crate) fn register(fd: RawFd, id: SocketId, want_out: bool) -> io::Result<()> {
    let out = if want_out { libc::EPOLLOUT as u32 } else { 0 };
    ctl(libc::EPOLL_CTL_ADD, fd, id, BASE_EVENTS | out)
}

/// Adds `EPOLLOUT` to the interest set of `fd`; as `MOD` re-arms the edge, a writable fd
/// reports `EPOLLOUT` at once.
pub(crate) fn arm_epollout(fd: RawFd, id: SocketId) -> io::Result<()> {
    ctl(
        libc::EPOLL_CTL_MOD,
        fd,
        id,
        BASE_EVENTS | libc::EPOLLOUT as u32,
    )
}

/// Removes `fd` from its dispatcher (errors ignored: the fd may never have been added).
pub(crate) fn deregister(fd: RawFd, id: SocketId) {
    let _ = ctl(libc::EPOLL_CTL_DEL, fd, id, 0);
}

type Events = [libc::epoll_event; MAX_EVENTS];

const NO_EVENT: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };

impl Dispatcher {
    /// Dispatcher `i`: an epoll fd watching its wake-up eventfd. No thread yet.
    fn new(i: usize) -> Dispatcher {
        // SAFETY: plain syscalls, no pointers.
        let (epfd, wake_fd) = unsafe {
            (
                libc::epoll_create1(libc::EPOLL_CLOEXEC),
                libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC),
            )
        };
        assert!(
            epfd >= 0 && wake_fd >= 0,
            "cannot create the epoll fd or eventfd of event dispatcher {i}: {}",
            io::Error::last_os_error()
        );
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_DATA,
        };
        // SAFETY: both fds are open; `ev` is a live epoll_event that epoll copies.
        let rc = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wake_fd, &mut ev) };
        assert!(
            rc == 0,
            "cannot add the eventfd of event dispatcher {i}: {}",
            io::Error::last_os_error()
        );
        Dispatcher {
            epfd,
            wake_fd,
            owner: AtomicU32::new(FREE),
            worker_wanted: AtomicBool::new(false),
            worker_polls: AtomicU64::new(0),
            worker_events: AtomicU64::new(0),
            thread_events: AtomicU64::new(0),
        }
    }

    /// One `epoll_wait` (`timeout_ms` -1: until something happens); the number of events.
    fn wait(&self, events: &mut Events, timeout_ms: i32) -> usize {
        // SAFETY: `events` has room for MAX_EVENTS entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd,
                events.as_mut_ptr(),
                MAX_EVENTS as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("spindle-rpc: epoll_wait failed: {e}");
                // Do not spin on a persistent failure.
                std::thread::sleep(THREAD_MIN_INTERVAL);
            }
            return 0;
        }
        let n = n as usize;
        if events[..n].iter().any(|ev| ev.u64 == WAKE_DATA) {
            // Drained here, while the caller still owns the dispatcher: a kick is meant for
            // whoever owns it when it is written. Reading the eventfd after releasing the
            // dispatcher could swallow the kick `unpark` just wrote for the next owner, which
            // would then sleep in `epoll_wait` with a woken task waiting for it.
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
            unsafe { libc::read(self.wake_fd, (&mut count as *mut u64).cast(), 8) };
        }
        n
    }

    /// Interrupts the owner's `epoll_wait`.
    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A full counter (EAGAIN)
        // means a wake-up is pending anyway.
        unsafe { libc::write(self.wake_fd, (&one as *const u64).cast(), 8) };
    }

    /// Handles what `wait` returned: wake-ups, writable sockets, readable sockets (reader
    /// fibers start where this runs: on a worker, the fiber runs next on it).
    fn handle(&self, events: &[libc::epoll_event], by_worker: bool) {
        let mut sockets = 0;
        // The newest socket that needs a reader (spawned last, so it runs next on a worker),
        // and whether earlier ones were spawned without a wake-up.
        let mut last_reader: Option<SocketId> = None;
        let mut owed = false;
        for ev in events {
            let flags = ev.events;
            if ev.u64 == WAKE_DATA {
                continue; // drained by `wait`
            }
            sockets += 1;
            let id = SocketId::from_u64(ev.u64);
            let input = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let output = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & output != 0 {
                if let Some(s) = socket::address(id) {
                    s.write.wake_writers();
                }
            }
            let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & input != 0 && count_input_event(id, flags & hup != 0) {
                if let Some(earlier) = last_reader.replace(id) {
                    spindle_runtime::spawn_no_signal(move || process_input_events(earlier));
                    owed = true;
                }
            }
        }
        if let Some(id) = last_reader {
            // On a worker the last reader takes the LIFO slot and runs next right here, with no
            // wake-up; the earlier ones wait, stealable, for the workers that one `flush` (one
            // futex call for the batch) wakes. From the thread they all go to remote queues.
            spindle_runtime::spawn(move || process_input_events(id));
        }
        if owed {
            spindle_runtime::flush();
        }
        if sockets > 0 {
            let counter = if by_worker {
                &self.worker_events
            } else {
                &self.thread_events
            };
            counter.fetch_add(sockets, Ordering::Relaxed);
        }
    }

    /// An idle worker that took the poller: block until I/O or an unpark. What it saw is kept
    /// for [`DispatcherHook::after_park`], which handles it once the worker no longer counts as
    /// a sleeper.
    fn park_worker(&self, index: usize, still_idle: &dyn Fn() -> bool) {
        self.worker_polls.fetch_add(1, Ordering::Relaxed);
        if !still_idle() {
            self.owner.store(FREE, Ordering::Release);
            return;
        }
        PARKED.with_borrow_mut(|p| {
            p.n = self.wait(&mut p.events, -1);
            p.dispatcher = index;
        });
        // Released before handling: another idle worker may poll while this one runs readers.
        self.owner.store(FREE, Ordering::Release);
    }
}

/// What a worker's park saw, handled by `after_park` on the same thread (the scheduler's own
/// context, between the two calls: no fiber runs and nothing migrates).
struct Parked {
    /// Index of the dispatcher polled.
    dispatcher: usize,
    /// Events in `events` not yet handled.
    n: usize,
    events: Events,
}

thread_local! {
    static PARKED: std::cell::RefCell<Parked> = const {
        std::cell::RefCell::new(Parked {
            dispatcher: 0,
            n: 0,
            events: [NO_EVENT; MAX_EVENTS],
        })
    };
}

/// The dispatcher thread, the safety net. While workers poll (one is parked in the dispatcher,
/// or workers took it during the last interval) it sleeps, its interval doubling from 1 ms to
/// 4 ms. When no worker polled during a whole interval (every worker busy in long fibers or
/// blocked, none started yet, or more dispatchers than idle workers) it polls itself, blocking
/// in `epoll_wait` for at most one interval at a time, and hands the readers to workers through
/// their remote queues; an idle worker that wants the dispatcher back flags `worker_wanted` and
/// writes the eventfd, and the thread releases it at once and wakes a worker.
fn run_thread(d: &Dispatcher) {
    let mut events: Events = [NO_EVENT; MAX_EVENTS];
    let mut interval = THREAD_MIN_INTERVAL;
    let mut seen = d.worker_polls.load(Ordering::Relaxed);
    let mut polled_last_round = false;
    loop {
        if !polled_last_round {
            std::thread::sleep(interval);
        }
        let polls = d.worker_polls.load(Ordering::Relaxed);
        let stepped_in = polls == seen
            && d.owner
                .compare_exchange(FREE, THREAD, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if !stepped_in {
            // Workers polled meanwhile, or one is parked in epoll_wait right now: back off.
            seen = polls;
            interval = (interval * 2).min(THREAD_MAX_INTERVAL);
            polled_last_round = false;
            continue;
        }
        let timeout_ms = interval.as_millis().clamp(1, i32::MAX as u128) as i32;
        let n = d.wait(&mut events, timeout_ms);
        d.owner.store(FREE, Ordering::SeqCst);
        // Pairs with the worker's `worker_wanted` store then `owner` CAS in `park`.
        let wanted = d.worker_wanted.swap(false, Ordering::SeqCst);
        if wanted {
            // A worker wanted to poll while this thread did, and sleeps on its futex: a no-op
            // fiber wakes an idle worker, which then finds the dispatcher free.
            drop(spindle_runtime::spawn(|| {}));
        }
        d.handle(&events[..n], false);
        interval = if n > 0 {
            THREAD_MIN_INTERVAL
        } else {
            (interval * 2).min(THREAD_MAX_INTERVAL)
        };
        seen = d.worker_polls.load(Ordering::Relaxed);
        // Still nobody else polling: look again at once (no gap in coverage), unless a worker
        // is coming for the dispatcher.
        polled_last_round = !wanted;
    }
}

/// The runtime's idle hook: idle workers of tag 0 sleep in a dispatcher's `epoll_wait`.
struct DispatcherHook;

impl spindle_runtime::IdleHook for DispatcherHook {
    fn park(&self, still_idle: &dyn Fn() -> bool) -> bool {
        let ds = &*DISPATCHERS;
        let start = spindle_runtime::current_worker().unwrap_or(0) % ds.len();
        for k in 0..ds.len() {
            let d = &ds[(start + k) % ds.len()];
            if d.owner
                .compare_exchange(FREE, WORKER, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                d.park_worker((start + k) % ds.len(), still_idle);
                return true;
            }
        }
        // Every dispatcher is taken. One the thread is looking at is free again within
        // microseconds: flag the wish, and take it if the look already ended; otherwise the
        // thread wakes a worker when it releases the dispatcher.
        for k in 0..ds.len() {
            let d = &ds[(start + k) % ds.len()];
            if d.owner.load(Ordering::SeqCst) != THREAD {
                continue;
            }
            d.worker_wanted.store(true, Ordering::SeqCst);
            if d.owner
                .compare_exchange(FREE, WORKER, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                d.park_worker((start + k) % ds.len(), still_idle);
                return true;
            }
            // The thread blocks in epoll_wait: interrupt it, it releases the dispatcher and
            // wakes a worker.
            d.kick();
            break;
        }
        false
    }

    fn after_park(&self) {
        PARKED.with_borrow_mut(|p| {
            let n = std::mem::take(&mut p.n);
            if n > 0 {
                DISPATCHERS[p.dispatcher].handle(&p.events[..n], true);
            }
        });
    }

    fn unpark(&self) -> usize {
        let mut n = 0;
        for d in DISPATCHERS.iter() {
            if d.owner.load(Ordering::SeqCst) == WORKER {
                d.kick();
                n += 1;
            }
        }
        n
    }

    fn poll_now(&self) {
        for d in DISPATCHERS.iter() {
            if d.owner.load(Ordering::Relaxed) != FREE
                || d.owner
                    .compare_exchange(FREE, WORKER, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            d.worker_polls.fetch_add(1, Ordering::Relaxed);
            let mut events: Events = [NO_EVENT; MAX_EVENTS];
            let n = d.wait(&mut events, 0);
            d.owner.store(FREE, Ordering::Release);
            d.handle(&events[..n], true);
        }
    }
}

/// Counts an input event on `id` and spawns its reader on the 0→1 transition.
pub(crate) fn start_input_event(id: SocketId) {
    if count_input_event(id, false) {
        spindle_runtime::spawn(move || process_input_events(id));
    }
}

/// Counts an input event on `id`; `true` on the 0→1 transition, when the caller must spawn
/// the reader. `hup`: the event carried `EPOLLRDHUP`, `EPOLLHUP` or `EPOLLERR`. That is
/// recorded on the socket *before* the count, so the reader that consumes this count sees it
/// and reads to the end instead of stopping after a short read.
fn count_input_event(id: SocketId, hup: bool) -> bool {
    let Some(s) = socket::address(id) else {
        return false;
    };
    if hup {
        s.input_hup.store(true, Ordering::Release);
    }
    s.nevent.fetch_add(1, Ordering::AcqRel) == 0
}

/// The reader fiber of socket `id` (module doc, "The `nevent` protocol").
pub(crate) fn process_input_events(id: SocketId) {
    let Some(s) = socket::address(id) else {
        return;
    };
    let mut seen = s.nevent.load(Ordering::Acquire);
    loop {
        let handler = s.handler.clone();
        handler.on_input(&s);
        if s.failed() {
            return;
        }
        match s
            .nevent
            .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(now) => seen = now,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The lost wake-up of 2026-11-23: an owner that saw a kick released the dispatcher, the
    /// next owner blocked in `epoll_wait` and was kicked by `unpark` (a fiber was queued for
    /// it), then the first owner handled its events and read the eventfd, swallowing that kick:
    /// the fiber waited until an unrelated event (a 3 s call timeout in `rpc_examples`).
    #[test]
    fn a_kick_for_the_next_owner_survives_the_previous_owners_handling() {
        let d = Dispatcher::new(0);
        let mut seen: Events = [NO_EVENT; MAX_EVENTS];
        d.kick();
        let n = d.wait(&mut seen, 0);
        assert_eq!(n, 1, "the first owner sees its kick");
        // It releases the dispatcher; the next owner is kicked before the first one handles
        // what it saw.
        d.kick();
        d.handle(&seen[..n], true);
        let mut next: Events = [NO_EVENT; MAX_EVENTS];
        assert_eq!(
            d.wait(&mut next, 0),
            1,
            "the next owner's kick was swallowed"
        );
        assert_eq!(d.wait(&mut next, 0), 0, "a kick is consumed once");
        // SAFETY: both fds belong to this test's dispatcher, which is not used any more.
        unsafe {
            libc::close(d.wake_fd);
            libc::close(d.epfd);
        }
    }
}
