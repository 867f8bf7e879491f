//! Per-thread combiners (bvar's `AgentCombiner`): contention-free updates, combined on read.
//!
//! A [`Combiner`] gives every thread that updates it a private *cell* (an "agent"). An update
//! touches only the calling thread's cell, so threads never write the same cache line and an
//! update costs a thread-local lookup plus one or two plain atomic operations, whatever the number
//! of threads. A reader locks the combiner and combines the *global* value (what threads that
//! exited left behind) with every live cell.
//!
//! # How a thread finds its cell
//!
//! Every combiner owns a small *index* (recycled when the combiner drops) and a *serial* that is
//! never reused. Each thread keeps a vector of slots indexed by combiner index; a slot remembers
//! the serial of the combiner it was made for and a pointer to that combiner's cell. The fast path
//! is: read the slot vector's pointer and length from a destructor-free thread-local (`FAST`, so
//! no liveness check), compare serials, use the cell. Everything else — a first update, a stale
//! slot (its combiner dropped and the index was handed to a new one), a thread whose slots are
//! already destroyed — takes the cold path, which owns the vector (`SLOTS`, whose destructor
//! folds the cells) and republishes `FAST` after every change. A cell is never used for the wrong
//! combiner because serials are never reused.
//!
//! # Invariants
//!
//! - A cell is reachable from exactly one thread's slot vector; the combiner's agent list holds a
//!   second reference for readers. Cells are shared through `Arc`, so a cell outlives whichever of
//!   the two drops first.
//! - Fields of a cell that only the owning thread writes may be updated with a relaxed load and a
//!   store (no locked instruction); fields that readers also reset are updated with atomic
//!   read-modify-write operations. Each cell type documents which is which.
//! - On thread exit, the thread-local destructor folds each live cell into its combiner's global
//!   value and unlinks it, under the combiner's lock, so readers see every update exactly once.
//!   Updates made after the destructor ran (from other thread-local destructors) go to a
//!   temporary cell that is folded at once.
//!
//! # Fibers
//!
//! Spindle fibers migrate between worker threads at every switching call. An update is one
//! non-yielding call: [`Combiner::update`] is `#[inline(never)]`, so the thread-local address is
//! computed afresh on every call and never cached by the compiler across a yield in the caller,
//! and the closure that touches the cell runs to completion on the thread whose cell it is. The
//! closure must not yield (it only performs atomic operations).

use parking_lot::{Mutex, MutexGuard};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The cell and global types of one kind of combiner, and how a cell folds into the global.
pub(crate) trait CellOps: Send + Sync + 'static {
    /// One thread's private accumulator.
    type Cell: Default + Send + Sync + 'static;
    /// What exited threads left behind.
    type Global: Default + Send + 'static;
    /// Adds `cell` into `global`; called under the combiner lock by the cell's owning thread
    /// as it exits (or for a temporary cell).
    fn fold(global: &mut Self::Global, cell: &Self::Cell);
}

/// Serial numbers of combiners; 0 marks an empty slot.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Recycled combiner indices, so a thread's slot vector stays as short as the number of live
/// combiners.
static FREE_INDICES: Mutex<IndexPool> = Mutex::new(IndexPool {
    next: 0,
    free: Vec::new(),
});

/// Allocator of small combiner indices.
struct IndexPool {
    /// First index never handed out.
    next: usize,
    /// Indices returned by dropped combiners.
    free: Vec<usize>,
}

/// A per-thread combiner of `O::Cell`s (see the module docs).
pub(crate) struct Combiner<O: CellOps> {
    /// Copy of `shared.index`, one pointer hop closer to the update path.
    index: usize,
    /// Copy of `shared.serial`.
    serial: u64,
    /// Shared with the agents (weakly), so exiting threads can fold into it.
    shared: Arc<Shared<O>>,
}

/// The part of a combiner that agents point back to.
struct Shared<O: CellOps> {
    /// Index into every thread's slot vector.
    index: usize,
    /// Never-reused identity; a slot with another serial is stale.
    serial: u64,
    /// Global value and live agents.
    state: Mutex<State<O>>,
}

/// What a combiner's lock protects.
pub(crate) struct State<O: CellOps> {
    /// Accumulated cells of exited threads.
    pub(crate) global: O::Global,
    /// Cells of live threads that updated this combiner.
    agents: Vec<Arc<Agent<O>>>,
}

impl<O: CellOps> State<O> {
    /// The live threads' cells.
    pub(crate) fn cells(&self) -> impl Iterator<Item = &O::Cell> {
        self.agents.iter().map(|a| &a.cell)
    }
}

/// One thread's cell of one combiner, alone on its cache lines (128 bytes: two lines, as
/// adjacent-line prefetchers pair them) so two threads' cells never share one.
#[repr(align(128))]
struct Agent<O: CellOps> {
    /// The accumulator.
    cell: O::Cell,
    /// The combiner to fold into on thread exit.
    owner: Weak<Shared<O>>,
}

/// Type-erased thread-exit hook of an agent.
trait AgentExit {
    /// Folds the cell into its combiner and unlinks it (no-op if the combiner is gone).
    fn thread_exit(&self);
}

impl<O: CellOps> AgentExit for Agent<O> {
    fn thread_exit(&self) {
        if let Some(shared) = self.owner.upgrade() {
            let mut st = shared.state.lock();
            O::fold(&mut st.global, &self.cell);
            let me: *const Agent<O> = self;
            st.agents.retain(|a| !std::ptr::eq(Arc::as_ptr(a), me));
        }
    }
}

/// One entry of a thread's slot vector.
struct Slot {
    /// Serial of the combiner this slot serves (0: empty).
    serial: u64,
    /// The cell inside `agent`, type-erased.
    cell: *const (),
    /// Keeps the cell alive and folds it on thread exit.
    agent: Option<Arc<dyn AgentExit>>,
}

/// A thread's slots; folds every live cell when the thread exits.
struct Slots(UnsafeCell<Vec<Slot>>);

impl Drop for Slots {
    fn drop(&mut self) {
        // From now on updates take the slow path, which sees `SLOTS` destroyed.
        let _ = FAST.try_with(|f| f.publish(std::ptr::null(), 0));
        for slot in self.0.get_mut().drain(..) {
            if let Some(agent) = slot.agent {
                agent.thread_exit();
            }
        }
    }
}

/// Where the fast path finds the thread's slots: a copy of the slot vector's pointer and length,
/// in a thread-local without a destructor (so reading it needs no liveness check). Rewritten
/// by the slow path whenever the vector changes, and emptied when the vector is destroyed.
struct Fast {
    /// First slot.
    ptr: Cell<*const Slot>,
    /// Number of slots.
    len: Cell<usize>,
}

impl Fast {
    fn publish(&self, ptr: *const Slot, len: usize) {
        self.ptr.set(ptr);
        self.len.set(len);
    }
}

thread_local! {
    static SLOTS: Slots = const { Slots(UnsafeCell::new(Vec::new())) };
    static FAST: Fast = const {
        Fast {
            ptr: Cell::new(std::ptr::null()),
            len: Cell::new(0),
        }
    };
}

impl<O: CellOps> Combiner<O> {
    /// A combiner with no cells.
    pub(crate) fn new() -> Self {
        let index = {
            let mut pool = FREE_INDICES.lock();
            match pool.free.pop() {
                Some(i) => i,
                None => {
                    pool.next += 1;
                    pool.next - 1
                }
            }
        };
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        Combiner {
            index,
            serial,
            shared: Arc::new(Shared {
                index,
                serial,
                state: Mutex::new(State {
                    global: O::Global::default(),
                    agents: Vec::new(),
                }),
            }),
        }
    }

    /// Runs `f` on the calling thread's cell (created on first use). `f` must not yield or
    /// block; it runs on the thread that owns the cell.
    ///
    /// Never inlined: the thread-local address is computed on every call (see "Fibers" in the
    /// module docs).
    #[inline(never)]
    pub(crate) fn update<F: FnOnce(&O::Cell)>(&self, f: F) {
        let (ptr, len) = FAST
            .try_with(|fast| (fast.ptr.get(), fast.len.get()))
            .unwrap_or((std::ptr::null(), 0));
        if self.index < len {
            // SAFETY: `ptr` and `len` describe this thread's live slot vector: the slow path
            // republishes them after every change to the vector, and the vector's destructor
            // empties them before freeing it; nothing changes the vector while this runs.
            let slot = unsafe { &*ptr.add(self.index) };
            if slot.serial == self.serial {
                // SAFETY: the pointer was made from an `Arc<Agent<O>>` held by this slot, whose
                // serial proves the cell type is `O::Cell`; the slot cannot be replaced or
                // dropped before `f` returns because only this thread changes it and `f` does
                // not call back into the combiner.
                return f(unsafe { &*(slot.cell as *const O::Cell) });
            }
        }
        self.update_slow(f)
    }

    /// `update` when the thread has no cell for this combiner yet, or its slots are destroyed.
    #[cold]
    #[inline(never)]
    fn update_slow<F: FnOnce(&O::Cell)>(&self, f: F) {
        let cell = SLOTS.try_with(|slots| {
            // SAFETY: the slot vector is only touched by its own thread, here, in `register` and
            // in its destructor, none of which runs user code or re-enters another, so this is
            // the only reference to it while it lives.
            let slots = unsafe { &mut *slots.0.get() };
            let cell = match slots.get(self.index) {
                Some(slot) if slot.serial == self.serial => slot.cell,
                _ => self.register(slots),
            };
            let _ = FAST.try_with(|f| f.publish(slots.as_ptr(), slots.len()));
            cell
        });
        match cell {
            Ok(cell) => {
                // SAFETY: the cell belongs to an `Arc<Agent<O>>` that this thread's slot holds
                // (the serial proves its type); only this thread could drop it, and `f` does not
                // call back into the combiner.
                f(unsafe { &*(cell as *const O::Cell) })
            }
            Err(_) => {
                // The thread's slots are already destroyed (we are in a late thread-local
                // destructor): account the update through a temporary cell.
                let tmp = O::Cell::default();
                f(&tmp);
                O::fold(&mut self.shared.state.lock().global, &tmp);
            }
        }
    }

    /// Slow path: makes this thread's cell for this combiner and returns it.
    #[cold]
    fn register(&self, slots: &mut Vec<Slot>) -> *const () {
        let agent = Arc::new(Agent::<O> {
            cell: O::Cell::default(),
            owner: Arc::downgrade(&self.shared),
        });
        let cell: *const O::Cell = &agent.cell;
        self.shared.state.lock().agents.push(agent.clone());
        if slots.len() <= self.shared.index {
            slots.resize_with(self.shared.index + 1, || Slot {
                serial: 0,
                cell: std::ptr::null(),
                agent: None,
            });
        }
        let old = std::mem::replace(
            &mut slots[self.shared.index],
            Slot {
                serial: self.shared.serial,
                cell: cell.cast(),
                agent: Some(agent),
            },
        );
        // A stale slot's combiner is gone; dropping its agent only frees memory.
        drop(old);
        cell.cast()
    }

    /// Locks the combiner: the global value and all live cells, consistent with thread exits.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<O>> {
        self.shared.state.lock()
    }
}

impl<O: CellOps> Drop for Shared<O> {
    fn drop(&mut self) {
        FREE_INDICES.lock().free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    struct Sum;
    impl CellOps for Sum {
        type Cell = AtomicI64;
        type Global = i64;
        fn fold(global: &mut i64, cell: &AtomicI64) {
            *global += cell.load(Ordering::Relaxed);
        }
    }

    fn total(c: &Combiner<Sum>) -> i64 {
        let st = c.lock();
        st.global + st.cells().map(|x| x.load(Ordering::Relaxed)).sum::<i64>()
    }

    fn add(c: &Combiner<Sum>, v: i64) {
        c.update(|x| x.store(x.load(Ordering::Relaxed) + v, Ordering::Relaxed));
    }

    #[test]
    fn exited_threads_fold_into_global() {
        let c = Arc::new(Combiner::<Sum>::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| add(&c, 1)))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        add(&c, 5);
        assert_eq!(total(&c), 4005);
        assert_eq!(c.lock().global, 4000);
        assert_eq!(c.lock().cells().count(), 1);
    }

    #[test]
    fn updates_from_thread_local_destructors_are_kept() {
        struct AddOnDrop(Arc<Combiner<Sum>>);
        impl Drop for AddOnDrop {
            fn drop(&mut self) {
                // Runs during thread exit, before or after the slots' destructor.
                add(&self.0, 10);
            }
        }
        thread_local! {
            static GUARD: std::cell::RefCell<Option<AddOnDrop>> =
                const { std::cell::RefCell::new(None) };
        }
        let c = Arc::new(Combiner::<Sum>::new());
        let c2 = c.clone();
        std::thread::spawn(move || {
            add(&c2, 1);
            GUARD.with(|g| *g.borrow_mut() = Some(AddOnDrop(c2)));
        })
        .join()
        .unwrap();
        assert_eq!(total(&c), 11);
    }

    #[test]
    fn recycled_index_never_reuses_a_stale_cell() {
        let a = Combiner::<Sum>::new();
        add(&a, 7);
        drop(a);
        // Likely gets the same index; the serial check must give it a fresh cell.
        let b = Combiner::<Sum>::new();
        add(&b, 1);
        assert_eq!(total(&b), 1);
    }
}
