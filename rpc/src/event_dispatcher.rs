//! Event dispatchers (brpc's `EventDispatcher`): edge-triggered epoll loops that turn readiness
//! into reader fibers and writer wake-ups.
//!
//! # Threading model, and why seed 004 cannot happen
//!
//! brpc runs each dispatcher as a bthread that blocks in `epoll_wait`, pinning a worker. With
//! `event_dispatcher_num` (+ RDMA pollers) ≥ workers, no worker is left to run the fibers that
//! read sockets or answer handshakes: connections stall and fail ("Got EOF", seed 004).
//!
//! Spindle runs **each dispatcher loop on a dedicated OS thread** (`spindle-epoll-<i>`), never
//! on a fiber worker. The only thing a dispatcher does with the fiber runtime is
//! [`spindle_runtime::spawn`] (from a non-worker thread that pushes to a worker's remote queue
//! and signals it) and butex wakes — both non-blocking. So the number of workers available to
//! fibers is `fiber_concurrency` whatever `event_dispatcher_num` is: a configuration with 2
//! workers and 4 dispatchers works (test `tests/dispatcher_starvation.rs`). The cost is one
//! cross-thread hand-off per input burst (brpc's `spawn_urgent` keeps the reader on the core
//! that saw the event); it is paid once per burst, not per message, since a reader drains its
//! fd until `EAGAIN`.
//!
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
use std::sync::atomic::Ordering;
use std::sync::LazyLock;

define_flag!(
    /// Number of epoll loops.
    pub static EVENT_DISPATCHER_NUM: usize = 1,
    "number of event dispatchers (epoll loops), each on an OS thread of its own; 1..=64",
    validator = |v| if (1..=64).contains(v) { Ok(()) } else { Err("must be in 1..=64".into()) }
);

/// Events of a registered socket without `EPOLLOUT`.
const BASE_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32;

/// Events per `epoll_wait`.
const MAX_EVENTS: usize = 64;

/// One epoll loop.
#[derive(Debug)]
struct Dispatcher {
    /// The epoll fd (never closed: dispatchers live as long as the process).
    epfd: RawFd,
}

/// All dispatchers, started on first use; `event_dispatcher_num` is frozen then.
static DISPATCHERS: LazyLock<Vec<Dispatcher>> = LazyLock::new(start_dispatchers);

fn start_dispatchers() -> Vec<Dispatcher> {
    // Writing to a socket the peer closed must fail with EPIPE, not kill the process.
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let n = EVENT_DISPATCHER_NUM.freeze("the event dispatchers");
    (0..n)
        .map(|i| {
            // SAFETY: plain syscall, no pointers.
            let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            assert!(
                epfd >= 0,
                "epoll_create1 failed for event dispatcher {i}: {}",
                io::Error::last_os_error()
            );
            std::thread::Builder::new()
                .name(format!("spindle-epoll-{i}"))
                .spawn(move || run(epfd))
                .unwrap_or_else(|e| panic!("cannot start event dispatcher thread {i}: {e}"));
            Dispatcher { epfd }
        })
        .collect()
}

/// Number of dispatchers (starting them if needed).
pub fn dispatcher_count() -> usize {
    DISPATCHERS.len()
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

/// One dispatcher loop, on its own OS thread, forever.
fn run(epfd: RawFd) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    loop {
        // SAFETY: `events` has room for MAX_EVENTS entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), MAX_EVENTS as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("spindle-rpc: epoll_wait failed: {e}; event dispatcher stops");
            return;
        }
        for ev in &events[..n as usize] {
            let flags = ev.events;
            let id = SocketId::from_u64(ev.u64);
            let input = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let output = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & output != 0 {
                if let Some(s) = socket::address(id) {
                    s.write.wake_writers();
                }
            }
            if flags & input != 0 {
                start_input_event(id);
            }
        }
    }
}

/// Counts an input event on `id` and spawns its reader on the 0→1 transition.
pub(crate) fn start_input_event(id: SocketId) {
    let Some(s) = socket::address(id) else {
        return;
    };
    if s.nevent.fetch_add(1, Ordering::AcqRel) == 0 {
        drop(s);
        spindle_runtime::spawn(move || process_input_events(id));
    }
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
