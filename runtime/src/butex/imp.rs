// The butex implementation, included twice by `butex.rs`: once over std (the real `Butex`, with
// a `const fn new`) and, for loom models only, once over the loom shim. The including module
// provides: the sync imports, `MODELLED`, `OrderTag`, `park_timeout`, `Butex::new` and
// `Butex::order_key`.

/// A 32-bit atomic word with a wait list. See the module contract.
pub struct Butex {
    value: AtomicU32,
    waiters: Mutex<WaitList>,
    /// Waiters in `waiters`, plus any waiter between its registration and its check of the
    /// word (both under the lock). Changed only under the lock, with read-modify-writes, so a
    /// waker's own read-modify-write of it (after it changed the word) either sees a waiter
    /// coming or is seen by it: a waiter whose increment comes later in the counter's order
    /// acquires the waker's release, and its check of the word then sees the new value. A
    /// waker that reads 0 has nobody to wake and skips the lock (the usual case: most wakes,
    /// like a fiber's completion or a call id's destruction, find no waiter).
    queued: AtomicU32,
    /// What orders the locking of two butexes in `requeue` (see `order_key`).
    order: OrderTag,
}

/// Head and tail of the intrusive FIFO.
struct WaitList {
    head: *const Waiter,
    tail: *const Waiter,
}

// SAFETY: the list only holds pointers to nodes whose owners wait for removal; it is accessed
// under the butex mutex only.
unsafe impl Send for WaitList {}

const OUTCOME_NONE: u8 = 0;
const OUTCOME_WOKEN: u8 = 1;
const OUTCOME_TIMED_OUT: u8 = 2;
const OUTCOME_WOULD_BLOCK: u8 = 3;

/// A waiting fiber or thread; lives on its stack for the duration of the wait.
struct Waiter {
    /// Neighbours in the list; guarded by the container's lock.
    prev: Cell<*const Waiter>,
    next: Cell<*const Waiter>,
    /// The butex whose list holds this node, null when in none.
    container: AtomicPtr<Butex>,
    /// How the wait ended; written by the remover under the lock.
    outcome: Cell<u8>,
    /// Who to wake.
    kind: WaiterKind,
}

enum WaiterKind {
    /// A parked fiber: its task, put here by its worker when it parked.
    Fiber {
        task: Cell<Option<crate::fiber::task::TaskRef>>,
        timer: Cell<Option<crate::timer_thread::TimerId>>,
    },
    /// A blocked thread.
    Thread(ThreadParker),
}

/// What a waker takes out of the list, to act on after unlocking.
enum Wakeup {
    Fiber(crate::fiber::task::TaskRef),
    Thread(Unpark),
}

impl Wakeup {
    fn wake(self) {
        match self {
            Wakeup::Fiber(t) => crate::scheduler::ready_to_run(t),
            Wakeup::Thread(u) => u.unpark(),
        }
    }
}

/// Blocks a thread until a waker sets its flag. The waker clones the `Thread` handle under the
/// butex lock, then (after unlocking) sets the flag and unparks through its own clone, so it never
/// touches the parker after the flag is set — by then the waiter may have returned.
struct ThreadParker {
    thread: thread::Thread,
    notified: AtomicBool,
}

impl ThreadParker {
    fn new() -> Self {
        ThreadParker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        }
    }

    /// Waits for the flag or the deadline; returns whether the flag was set.
    fn park(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.notified.load(Ordering::Acquire) {
                return true;
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    park_timeout(d - now);
                }
            }
        }
    }
}

/// A pending unpark: the flag to set and the thread to unpark.
struct Unpark {
    flag: *const AtomicBool,
    thread: thread::Thread,
}

impl Unpark {
    fn unpark(self) {
        // SAFETY: the waiting thread does not return before it sees this flag set, so the flag
        // is alive here; after the store we only use our own clone of the `Thread`.
        unsafe { (*self.flag).store(true, Ordering::Release) };
        self.thread.unpark();
    }
}

impl WaitList {
    /// Appends `w`. Caller holds the lock and `w` is in no list.
    unsafe fn push_back(&mut self, w: *const Waiter) {
        (*w).prev.set(self.tail);
        (*w).next.set(ptr::null());
        if self.tail.is_null() {
            self.head = w;
        } else {
            (*self.tail).next.set(w);
        }
        self.tail = w;
    }

    /// Removes and returns the first node. Caller holds the lock.
    unsafe fn pop_front(&mut self) -> Option<*const Waiter> {
        let w = self.head;
        if w.is_null() {
            return None;
        }
        self.remove(w);
        Some(w)
    }

    /// Unlinks `w`, which is in this list. Caller holds the lock.
    unsafe fn remove(&mut self, w: *const Waiter) {
        let (p, n) = ((*w).prev.get(), (*w).next.get());
        if p.is_null() {
            self.head = n;
        } else {
            (*p).next.set(n);
        }
        if n.is_null() {
            self.tail = p;
        } else {
            (*n).prev.set(p);
        }
        (*w).prev.set(ptr::null());
        (*w).next.set(ptr::null());
    }
}

impl Waiter {
    fn new(kind: WaiterKind) -> Self {
        Waiter {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            container: AtomicPtr::new(ptr::null_mut()),
            outcome: Cell::new(OUTCOME_NONE),
            kind,
        }
    }

    /// Marks a node just removed under its container's lock and takes what to wake.
    ///
    /// # Safety
    /// The caller holds the lock of the butex whose list held `w`, and just removed it.
    unsafe fn take_wakeup(w: *const Waiter, outcome: u8) -> Option<Wakeup> {
        (*w).container.store(ptr::null_mut(), Ordering::Release);
        (*w).outcome.set(outcome);
        match &(*w).kind {
            WaiterKind::Fiber { task, .. } => task.take().map(Wakeup::Fiber),
            WaiterKind::Thread(p) => Some(Wakeup::Thread(Unpark {
                flag: &p.notified,
                thread: p.thread.clone(),
            })),
        }
    }
}

/// Removes `w` from whichever butex holds it (following requeues). Returns what to wake if this
/// call removed it, `None` if it was no longer in any list.
///
/// # Safety
/// `w` must be alive, and so must any butex it may be in.
unsafe fn erase_from_butex(w: *const Waiter, outcome: u8) -> Option<Wakeup> {
    loop {
        let b = (*w).container.load(Ordering::Acquire);
        if b.is_null() {
            return None;
        }
        let mut list = (*b).lock();
        if (*w).container.load(Ordering::Relaxed) != b {
            continue; // requeued meanwhile: chase it
        }
        list.remove(w);
        (*b).queued.fetch_sub(1, Ordering::Relaxed);
        return Waiter::take_wakeup(w, outcome);
    }
}

/// Everything the worker needs to park a fiber on a butex (lives on the fiber's stack).
struct ParkRequest {
    butex: *const Butex,
    waiter: *const Waiter,
    expected: u32,
    deadline: Option<Instant>,
}

/// The `Park` action of a fiber wait; runs on the worker after the fiber switched out.
///
/// # Safety
/// `data` points to a live `ParkRequest` on the parked fiber's stack, and `task` is that fiber.
unsafe fn park_on_butex(
    data: *const (),
    task: crate::fiber::task::TaskRef,
) -> Option<crate::fiber::task::TaskRef> {
    let req = &*(data as *const ParkRequest);
    let (b, w, expected, deadline) = (req.butex, req.waiter, req.expected, req.deadline);
    let mut list = (*b).lock();
    // Registered before the check of the word (see `queued`).
    (*b).queued.fetch_add(1, Ordering::AcqRel);
    if (*b).value.load(Ordering::SeqCst) != expected {
        (*b).queued.fetch_sub(1, Ordering::Relaxed);
        (*w).outcome.set(OUTCOME_WOULD_BLOCK);
        return Some(task);
    }
    let WaiterKind::Fiber { task: slot, timer } = &(*w).kind else {
        unreachable!("fiber wait with a thread waiter")
    };
    slot.set(Some(task));
    (*w).container.store(b as *mut Butex, Ordering::Release);
    list.push_back(w);
    if let Some(d) = deadline {
        let wp = w as usize;
        timer.set(Some(crate::timer_thread::schedule(d, move || {
            // SAFETY: the waiter stays alive until its fiber resumes and unschedules this
            // callback, which waits for the callback to return.
            if let Some(wk) = unsafe { erase_from_butex(wp as *const Waiter, OUTCOME_TIMED_OUT) } {
                wk.wake();
            }
        })));
    }
    drop(list);
    // From here on the fiber may run elsewhere: `req` and `w` are not touched again.
    None
}

impl Butex {
    /// The word itself; change it before waking.
    pub fn value(&self) -> &AtomicU32 {
        &self.value
    }

    fn lock(&self) -> MutexGuard<'_, WaitList> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps while the word equals `expected`, until woken or `deadline`. See the module
    /// contract. From a fiber only the fiber parks; from a plain thread the thread blocks.
    pub fn wait(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        if self.value.load(Ordering::SeqCst) != expected {
            return Err(WaitError::WouldBlock);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError::TimedOut);
        }
        if !MODELLED && !crate::scheduler::task_group::current_task_meta().is_null() {
            return self.wait_fiber(expected, deadline);
        }
        self.wait_thread(expected, deadline)
    }

    fn wait_fiber(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        use crate::fiber::task::{ParkAction, Suspend};
        let w = Waiter::new(WaiterKind::Fiber {
            task: Cell::new(None),
            timer: Cell::new(None),
        });
        let req = ParkRequest {
            butex: self,
            waiter: &w,
            expected,
            deadline,
        };
        crate::scheduler::task_group::suspend(Suspend::Park(ParkAction {
            data: &req as *const ParkRequest as *const (),
            f: park_on_butex,
        }));
        // Resumed, possibly on another worker; whoever woke us removed `w` from its list.
        if let WaiterKind::Fiber { timer, .. } = &w.kind {
            if let Some(t) = timer.take() {
                crate::timer_thread::unschedule(&t);
            }
        }
        match w.outcome.get() {
            OUTCOME_WOULD_BLOCK => Err(WaitError::WouldBlock),
            OUTCOME_TIMED_OUT => Err(WaitError::TimedOut),
            _ => Ok(()),
        }
    }

    fn wait_thread(&self, expected: u32, deadline: Option<Instant>) -> Result<(), WaitError> {
        let w = Waiter::new(WaiterKind::Thread(ThreadParker::new()));
        {
            let mut list = self.lock();
            // Registered before the check of the word (see `queued`).
            self.queued.fetch_add(1, Ordering::AcqRel);
            if self.value.load(Ordering::SeqCst) != expected {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(WaitError::WouldBlock);
            }
            w.container
                .store(self as *const Butex as *mut Butex, Ordering::Release);
            // SAFETY: lock held; `w` is in no list and outlives its membership (we do not
            // return before it is removed).
            unsafe { list.push_back(&w) };
        }
        let WaiterKind::Thread(parker) = &w.kind else {
            unreachable!()
        };
        if parker.park(deadline) {
            return Ok(());
        }
        // Timed out: take ourselves off the list, unless a waker got there first.
        // SAFETY: `w` is alive, and any butex it is in outlives the wait (contract).
        if unsafe { erase_from_butex(&w, OUTCOME_TIMED_OUT) }.is_some() {
            return Err(WaitError::TimedOut);
        }
        // A waker removed us and will unpark us: wait for it, so it never touches a dead node.
        parker.park(None);
        Ok(())
    }

    /// Wakes at most one waiter. Returns how many were woken.
    pub fn wake_one(&self) -> usize {
        self.wake(1)
    }

    /// Wakes at most `n` waiters, FIFO. Returns how many were woken.
    pub fn wake(&self, n: usize) -> usize {
        const CHUNK: usize = 16;
        // A read-modify-write, not a load: it must be ordered after this waker's change of the
        // word against a waiter's registration (see `queued`).
        if self.queued.fetch_add(0, Ordering::AcqRel) == 0 {
            return 0;
        }
        let mut woken = 0;
        while woken < n {
            // Taken under the lock, woken after it. Inline and filled only as far as used: the
            // usual wake-up (one waiter) costs no set-up or drop of unused slots.
            let mut batch: SmallVec<[Wakeup; CHUNK]> = SmallVec::new();
            let mut k = 0;
            {
                let mut list = self.lock();
                while k < CHUNK && woken + k < n {
                    // SAFETY: lock held; a removed node is marked and its wakeup taken at once.
                    match unsafe { list.pop_front() } {
                        Some(w) => {
                            if let Some(wk) = unsafe { Waiter::take_wakeup(w, OUTCOME_WOKEN) } {
                                batch.push(wk);
                            }
                            k += 1;
                        }
                        None => break,
                    }
                }
                self.queued.fetch_sub(k as u32, Ordering::Relaxed);
            }
            // Drained in place: moving the batch into an iterator would copy all its slots.
            for wk in batch.drain(..) {
                wk.wake();
            }
            woken += k;
            if k < CHUNK {
                break;
            }
        }
        woken
    }

    /// Wakes every waiter. Returns how many were woken.
    pub fn wake_all(&self) -> usize {
        self.wake(usize::MAX)
    }

    /// Wakes one waiter and moves the others onto `to` without waking them. Returns how many
    /// were woken (0 or 1). `to` must outlive the waiters moved onto it.
    pub fn requeue(&self, to: &Butex) -> usize {
        if ptr::eq(self, to) {
            return self.wake_one();
        }
        let first;
        {
            // Lock in address order so two opposite requeues cannot deadlock.
            let (mut mine, mut theirs);
            if self.order_key() < to.order_key() {
                mine = self.lock();
                theirs = to.lock();
            } else {
                theirs = to.lock();
                mine = self.lock();
            }
            // SAFETY: both locks held; every node moved gets its container updated under them.
            unsafe {
                let head = mine.pop_front();
                first = head.and_then(|w| Waiter::take_wakeup(w, OUTCOME_WOKEN));
                let mut moved = 0;
                while let Some(w) = mine.pop_front() {
                    (*w).container
                        .store(to as *const Butex as *mut Butex, Ordering::Release);
                    theirs.push_back(w);
                    moved += 1;
                }
                // Both counts change under both locks, like the lists.
                let popped = moved + u32::from(head.is_some());
                self.queued.fetch_sub(popped, Ordering::Relaxed);
                to.queued.fetch_add(moved, Ordering::AcqRel);
            }
        }
        match first {
            Some(wk) => {
                wk.wake();
                1
            }
            None => 0,
        }
    }
}

impl Default for Butex {
    fn default() -> Self {
        Butex::new(0)
    }
}

impl std::fmt::Debug for Butex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Butex")
            .field("value", &self.value.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    /// The contract: `const fn new` (usable in statics), `Send + Sync`.
    static STATIC_BUTEX: Butex = Butex::new(3);
    const _: fn() = || {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Butex>();
    };

    #[test]
    fn usable_as_static() {
        assert_eq!(STATIC_BUTEX.value().load(Ordering::Relaxed), 3);
        assert_eq!(STATIC_BUTEX.wake_all(), 0);
    }

    #[test]
    fn would_block_and_timeout_on_threads() {
        let b = Butex::new(1);
        assert_eq!(b.wait(0, None), Err(WaitError::WouldBlock));
        let d = Instant::now() + Duration::from_millis(20);
        assert_eq!(b.wait(1, Some(d)), Err(WaitError::TimedOut));
        assert!(Instant::now() >= d);
        assert_eq!(b.wake_all(), 0);
    }

    #[test]
    fn wake_and_requeue_threads() {
        let a = Arc::new(Butex::new(0));
        let b = Arc::new(Butex::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    while a.value().load(Ordering::SeqCst) == 0 {
                        let _ = a.wait(0, None);
                    }
                })
            })
            .collect();
        // Wait until all three are queued.
        while a.lock().head.is_null() || count(&a) < 3 {
            std::thread::yield_now();
        }
        a.value().store(1, Ordering::SeqCst);
        assert_eq!(a.requeue(&b), 1);
        assert_eq!(count(&b), 2);
        assert_eq!(b.wake_all(), 2);
        for h in hs {
            h.join().unwrap();
        }
    }

    fn count(b: &Butex) -> usize {
        let l = b.lock();
        let mut n = 0;
        let mut p = l.head;
        while !p.is_null() {
            n += 1;
            // SAFETY: lock held; nodes in the list are alive.
            p = unsafe { (*p).next.get() };
        }
        n
    }
}
