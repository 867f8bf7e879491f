//! Polling mode (`rdma_use_polling`): `rdma_poller_num` pollers, each an OS thread of its own
//! (never a fiber worker: see [`threading`](crate::threading)), loop over their share of the
//! completion queues and hand each batch of completions to the queue's handler.
//!
//! # Invariants
//!
//! - A queue belongs to exactly one poller (assigned round-robin when added), so its
//!   completions reach its handler in order and the handler is never run concurrently with
//!   itself.
//! - A poller holds its share's lock while it polls and runs handlers: a handler must not add or
//!   remove queues of the same group (it would wait for itself). Removing (dropping the
//!   [`PollerRegistration`]) from elsewhere waits for the round in progress, so after it returns
//!   the handler never runs again.
//! - Queues are never armed in polling mode: the fabric then makes no eventfd syscall.

use crate::threading::{validate_threading, CompletionMode, ThreadingConfig, ThreadingError};
use crate::verbs::{CompletionQueue, WorkCompletion};
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a handler receives: the completions of one poll of its queue, oldest first.
pub type CompletionHandler = Box<dyn FnMut(&[WorkCompletion]) + Send>;

struct Entry {
    id: u64,
    cq: Arc<dyn CompletionQueue>,
    handler: CompletionHandler,
}

struct Shared {
    stop: AtomicBool,
    shares: Vec<Mutex<Vec<Entry>>>,
    next_share: AtomicUsize,
    next_id: AtomicU64,
    cqe_poll_once: usize,
    yield_between_rounds: bool,
}

/// A group of pollers.
pub struct PollerGroup {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PollerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollerGroup")
            .field("pollers", &self.threads.len())
            .field("yield_between_rounds", &self.shared.yield_between_rounds)
            .finish()
    }
}

/// Why a poller group did not start.
#[derive(Debug)]
pub enum PollerError {
    /// The flags describe no polling configuration that may run.
    Config(ThreadingError),
    /// A thread could not be started.
    Io(io::Error),
}

impl std::fmt::Display for PollerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollerError::Config(e) => write!(f, "{e}"),
            PollerError::Io(e) => write!(f, "cannot start RDMA pollers: {e}"),
        }
    }
}

impl std::error::Error for PollerError {}

impl PollerGroup {
    /// Starts the pollers the flags ask for (`rdma_poller_num`, `rdma_poller_yield`,
    /// `rdma_cqe_poll_once`), after [`validate_threading`]. `Ok(None)` in event mode
    /// (`rdma_use_polling=false`).
    pub fn from_flags() -> Result<Option<PollerGroup>, PollerError> {
        let plan =
            validate_threading(&ThreadingConfig::from_flags()).map_err(PollerError::Config)?;
        match plan.mode {
            CompletionMode::Event => Ok(None),
            CompletionMode::Polling {
                pollers,
                yield_between_rounds,
            } => PollerGroup::start(
                pollers,
                yield_between_rounds,
                crate::flags::RDMA_CQE_POLL_ONCE.get() as usize,
            )
            .map(Some)
            .map_err(PollerError::Io),
        }
    }

    /// Starts `pollers` threads (at least one). Each poll takes at most `cqe_poll_once`
    /// completions (at least one). With `yield_between_rounds` a poller yields the CPU after a
    /// round that found nothing; otherwise it spins.
    pub fn start(
        pollers: usize,
        yield_between_rounds: bool,
        cqe_poll_once: usize,
    ) -> io::Result<PollerGroup> {
        let n = pollers.max(1);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            shares: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            next_share: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            cqe_poll_once: cqe_poll_once.max(1),
            yield_between_rounds,
        });
        let mut group = PollerGroup {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let s = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("spindle-rdma-poller-{i}"))
                .spawn(move || poll_loop(&s, i))?;
            group.threads.push(t);
        }
        Ok(group)
    }

    /// Number of pollers.
    pub fn pollers(&self) -> usize {
        self.threads.len()
    }

    /// Adds `cq`, whose completions go to `handler` (on its poller's thread) until the returned
    /// registration is dropped. Must not be called from a handler of this group.
    pub fn add(
        &self,
        cq: Arc<dyn CompletionQueue>,
        handler: CompletionHandler,
    ) -> PollerRegistration {
        let s = &self.shared;
        let share = s.next_share.fetch_add(1, Ordering::Relaxed) % s.shares.len();
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        s.shares[share].lock().push(Entry { id, cq, handler });
        PollerRegistration {
            shared: s.clone(),
            share,
            id,
        }
    }
}

impl Drop for PollerGroup {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A queue's place in a [`PollerGroup`]; dropping it removes the queue (waiting for a round in
/// progress). Must not be dropped from a handler of the same group.
pub struct PollerRegistration {
    shared: Arc<Shared>,
    share: usize,
    id: u64,
}

impl std::fmt::Debug for PollerRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PollerRegistration(poller {}, #{})", self.share, self.id)
    }
}

impl Drop for PollerRegistration {
    fn drop(&mut self) {
        self.shared.shares[self.share]
            .lock()
            .retain(|e| e.id != self.id);
    }
}

fn poll_loop(s: &Shared, me: usize) {
    let mut batch = Vec::with_capacity(s.cqe_poll_once);
    while !s.stop.load(Ordering::Acquire) {
        let mut found = false;
        {
            let mut entries = s.shares[me].lock();
            for e in entries.iter_mut() {
                batch.clear();
                // A queue in trouble (overrun) reports on its next poll; its handler sees the
                // completions that follow.
                if e.cq.poll(&mut batch, s.cqe_poll_once).unwrap_or(0) > 0 {
                    found = true;
                    (e.handler)(&batch);
                }
            }
        }
        if !found {
            if s.yield_between_rounds {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::FabricDevice;
    use crate::verbs::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Seed 004's shape: 4 pollers (on a 2-core machine, yielding) deliver an echo's completions.
    #[test]
    fn four_pollers_deliver_completions_in_order() {
        let group = PollerGroup::start(4, true, 32).unwrap();
        assert_eq!(group.pollers(), 4);
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let mut mem = vec![0u8; 64 * 64];
        // SAFETY: `mem` outlives `mr` (dropped at the end of the test, after `mr`).
        let mr = unsafe { pd.register(mem.as_mut_ptr(), mem.len(), Access::LOCAL_WRITE) }.unwrap();
        let mk = || {
            let cq = dev.create_cq(128).unwrap();
            let qp = pd
                .create_qp(QpInit {
                    send_cq: cq.clone(),
                    recv_cq: cq.clone(),
                    max_send_wr: 64,
                    max_recv_wr: 64,
                    max_sge: 1,
                    retry: RetryConfig::default(),
                })
                .unwrap();
            (cq, qp)
        };
        let (acq, a) = mk();
        let (bcq, b) = mk();
        a.connect(&b.address()).unwrap();
        b.connect(&a.address()).unwrap();
        let sge = Sge {
            addr: mr.addr(),
            length: 8,
            lkey: mr.lkey(),
        };
        for i in 0..32 {
            b.post_recv(&RecvWr {
                wr_id: i,
                sg_list: vec![sge],
            })
            .unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let _ra = group.add(
            acq,
            Box::new(move |wcs: &[WorkCompletion]| {
                for wc in wcs {
                    let _ = tx.send(('a', *wc));
                }
            }),
        );
        let _rb = group.add(
            bcq,
            Box::new(move |wcs: &[WorkCompletion]| {
                for wc in wcs {
                    let _ = tx2.send(('b', *wc));
                }
            }),
        );
        for i in 0..32u32 {
            a.post_send(&SendWr {
                wr_id: u64::from(i),
                sg_list: vec![sge],
                op: SendOp::SendWithImm(i),
                signaled: true,
                solicited: false,
            })
            .unwrap();
        }
        let (mut sends, mut recvs) = (0u64, 0u32);
        while sends < 32 || recvs < 32 {
            let (side, wc) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("completion");
            assert!(wc.status.is_ok(), "{wc:?}");
            if side == 'a' {
                assert_eq!(wc.wr_id, sends);
                sends += 1;
            } else {
                assert_eq!(wc.imm_data, Some(recvs));
                recvs += 1;
            }
        }
        drop(mr);
    }

    #[test]
    fn event_mode_starts_no_pollers() {
        assert!(PollerGroup::from_flags().unwrap().is_none());
    }
}
