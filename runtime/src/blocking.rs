//! The blocking escape hatch: run a function that blocks its OS thread (file I/O, a C library
//! call, a `std::sync` lock held for long, a DNS lookup) on a plain thread pool, while the calling
//! fiber parks on a butex and its worker runs other fibers.
//!
//! When to use it: any call that may block for more than a few microseconds *without* going
//! through a spindle primitive. Blocking a worker thread directly stalls every fiber queued on it
//! (and, if all workers block, the whole runtime). Do not use it for short CPU work (the hand-off
//! costs two thread switches) or for code that already uses fiber primitives.
//!
//! The pool grows on demand up to `Config::blocking_max_threads` threads; idle threads exit after
//! a while. Beyond the cap, calls queue.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::fiber::join::{JoinError, JoinHandle, Packet, Runnable};
use crate::fiber::task::TaskId;

/// How long an idle pool thread waits for work before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(10);

struct Pool {
    state: Mutex<PoolState>,
    cond: Condvar,
    max: usize,
}

struct PoolState {
    queue: VecDeque<Arc<dyn Runnable>>,
    threads: usize,
    idle: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState {
            queue: VecDeque::new(),
            threads: 0,
            idle: 0,
        }),
        cond: Condvar::new(),
        max: crate::scheduler::config().blocking_max_threads,
    })
}

impl Pool {
    fn submit(&'static self, job: Arc<dyn Runnable>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push_back(job);
        if st.idle > 0 {
            self.cond.notify_one();
        } else if st.threads < self.max {
            st.threads += 1;
            let spawned = std::thread::Builder::new()
                .name("spindle-blocking".into())
                .spawn(move || self.thread_main());
            if spawned.is_err() {
                st.threads -= 1;
                assert!(
                    st.threads > 0,
                    "spindle: cannot start a blocking-pool thread"
                );
            }
        }
    }

    fn thread_main(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job.run_body();
                job.publish();
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.idle += 1;
            let (g, to) = self
                .cond
                .wait_timeout(st, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            st.idle -= 1;
            if to.timed_out() && st.queue.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

/// Runs `f` on a thread of the blocking pool and returns its result. The calling fiber parks
/// (its worker keeps running other fibers); a plain thread blocks. A panic in `f` is resumed in
/// the caller.
pub fn spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let packet = Packet::new(f);
    pool().submit(packet.clone());
    match JoinHandle::new(packet, TaskId(0)).join() {
        Ok(v) => v,
        Err(JoinError::Panicked(p)) => std::panic::resume_unwind(p),
    }
}
