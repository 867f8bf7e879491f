//! `FiberId` (brpc's `bthread_id_t`): a versioned 64-bit id naming pooled state with a lock,
//! an error handler and a join point. An RPC's correlation id is one: a late or duplicate
//! response, a timeout and a retry race safely, and a stale id is refused in O(1).
//!
//! # Layout
//!
//! `id = slot index << 32 | version`. Slots live in a global pool of fixed chunks that are never
//! freed (so a slot address is valid forever and any 64-bit value can be checked safely); a
//! slot is recycled for a new id with fresh versions. Free slots wait in the freeing thread's
//! cache (up to 64, reused last-freed-first while the slot is still in that core's cache) and
//! move to and from the shared free list in batches of 32, as brpc's `ResourcePool` does;
//! a thread's cache goes back to the shared list when the thread exits. Each slot has
//! - `meta` (a short internal mutex, never held across a wait or user code): the valid version
//!   range `[first_ver, first_ver + range)`, `locked`, the number of lock waiters, the queue of
//!   pending error codes, the type-erased on-error handler and the data's `TypeId`;
//! - `data`: the user's value, touched only by the holder of the id's lock;
//! - `lock_butex`: word bumped on every unlock / destroy; lockers sleep on it;
//! - `join_butex`: word bumped on every destroy; joiners sleep on it.
//!
//! # Protocol
//!
//! - `create(data, range)`: take a free slot, store `data`, set a fresh version range (just
//!   after the slot's previous one), unlocked. The id names version `first_ver`; `id + k`
//!   (`k < range`) names the same state, so a call with retries can use one id per attempt.
//! - `lock(id)`: under `meta`: if the version is outside the range, `Err(Stale)` (O(1)); if
//!   unlocked, mark locked and return a guard; else record the `lock_butex` word, count itself
//!   as a waiter, release `meta`, sleep on `lock_butex`, and retry.
//! - unlock (guard drop): under `meta`: if an error is pending, keep the lock and run the
//!   handler with it (the handler gets the guard); else clear `locked`, bump `lock_butex`, and
//!   `wake_one` if somebody waits.
//! - `error(id, code)`: stale → `Err(Stale)`; unlocked → lock and run the handler right away on
//!   the caller; locked → queue `(id, code)` for the holder's unlock (brpc semantics).
//! - `unlock_and_destroy(guard)`: take the data out, then under `meta` set `range = 0` (no
//!   version is valid), drop pending errors, bump both butexes; then `wake_all` lockers and
//!   joiners and return the slot to the free list. Every later `lock`/`error`/`join` on any id of
//!   the range fails fast (or returns) because its version is no longer in range.
//! - `join(id)`: while the version is in range, sleep on `join_butex` (word read under `meta`).
//!
//! # Invariants
//!
//! 1. At most one holder: `locked` is set only under `meta` when it was clear (or kept set when
//!    the lock passes to an error handler), and only a holder clears it.
//! 2. `data` is accessed only by the holder; the `meta` mutex orders one holder's accesses before
//!    the next holder's. `create` writes it while the slot is unreachable (`range == 0`).
//! 3. Versions of a slot only move forward: a destroyed range is never valid again (until the
//!    32-bit version space of that one slot wraps, after ~4 billion ids on it).
//! 4. No lost wake-up: lockers and joiners read the butex word under `meta` while the condition
//!    holds, and every change of the condition bumps the word under `meta` before waking.
//!
//! The on-error handler runs on the thread/fiber that called `error` (or that unlocked with
//! errors pending) with the lock held; it must unlock or destroy (dropping the guard unlocks),
//! and may also keep the guard and unlock later from elsewhere. Pending errors are run one after
//! another by a loop (`run_handlers`), not by nesting, so a long queue of errors cannot overflow
//! a small fiber stack: each handler call gets a fresh `runner` token, carried by the guard it
//! receives; if that guard is dropped while its runner is still inside the call *and* errors are
//! pending, the lock is handed back to the runner (`handed_back`), which runs the next handler
//! after the current one returns. Without pending errors the drop simply unlocks. `epoch`
//! (bumped by create and destroy) tells a runner that the id was destroyed under it.
//! Consequence: a handler must not lock its own id again after dropping its guard while other
//! errors are pending (the lock then belongs to the runner waiting for this very handler).
use std::any::{Any, TypeId};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::Arc;

use crate::butex::Butex;

/// log2 of the slots per chunk.
const CHUNK_BITS: u32 = 10;
/// Slots per chunk: 1024 slots (~100 KiB) per allocation keeps growth rare and cheap.
const CHUNK_SLOTS: usize = 1 << CHUNK_BITS;
/// Chunks in the pool: 4096 × 1024 ≈ 4 million ids alive at once, far above what a process
/// with in-flight RPCs needs, for a fixed 32 KiB table.
const MAX_CHUNKS: usize = 4096;
/// Largest version range of one id (brpc's limit).
pub const MAX_RANGE: u32 = 1024;

/// Type-erased on-error handler: `(raw id the error names, code)`, called with the lock held.
/// The third argument is the runner token the guard carries.
#[derive(Clone)]
enum ErasedHandler {
    /// A handler without state (a function, a closure capturing nothing): a plain function
    /// pointer, so creating an id allocates nothing for it.
    Stateless(fn(u64, i32, u64)),
    /// A handler with captured state.
    Shared(Arc<dyn Fn(u64, i32, u64) + Send + Sync>),
}

impl ErasedHandler {
    fn call(&self, raw: u64, code: i32, token: u64) {
        match self {
            ErasedHandler::Stateless(f) => f(raw, code, token),
            ErasedHandler::Shared(f) => f(raw, code, token),
        }
    }
}

/// Calls the stateless handler type `F` for `raw` (see [`ErasedHandler::Stateless`]).
fn call_stateless<D, F>(raw: u64, code: i32, token: u64)
where
    D: Send + 'static,
    F: Fn(FiberIdGuard<D>, i32) + Send + Sync + 'static,
{
    // Only referenced for such `F` (by `create_with_on_error`), checked again here.
    assert!(size_of::<F>() == 0 && !std::mem::needs_drop::<F>());
    // SAFETY: `F` is zero-sized with no drop glue (asserted), and inhabited (the creator passed
    // a value of it): a value conjured from no bytes is the same handler.
    let f: F = unsafe { std::mem::zeroed() };
    // SAFETY: only called by a holder handing over the lock of `raw`'s slot, whose data is a `D`
    // (type checked when the id was locked or errored).
    f(unsafe { FiberIdGuard::adopt(raw, token) }, code)
}

/// Why an operation on a [`FiberId`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FiberIdError {
    /// The id was destroyed (its versions moved on), was never created, or names data of another
    /// type.
    Stale,
}

impl fmt::Display for FiberIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fiber id is stale: destroyed, never created, or of another data type")
    }
}

impl std::error::Error for FiberIdError {}

/// Slot state guarded by `Slot::meta`.
struct Meta {
    /// First valid version.
    first_ver: u32,
    /// Number of valid versions; 0 while the slot is free (nothing valid).
    range: u32,
    /// First version the next `create` on this slot may use.
    next_ver: u32,
    /// Whether a holder has the lock.
    locked: bool,
    /// Lockers asleep (or about to sleep) on `lock_butex`.
    lock_waiters: u32,
    /// Errors that arrived while locked: `(raw id, code)`, handled one per unlock.
    pending: VecDeque<(u64, i32)>,
    /// Bumped by every create and destroy, so a handler runner can tell whether the id it ran
    /// handlers for still exists.
    epoch: u64,
    /// Token of the `run_handlers` call currently inside a handler call (0: none).
    runner: u64,
    /// Token of the runner the lock was handed back to (0: none).
    handed_back: u64,
    /// Source of runner tokens (never 0).
    next_token: u64,
    /// The on-error handler of the current id.
    on_error: Option<ErasedHandler>,
    /// Type of `data` for the current id.
    type_id: Option<TypeId>,
}

impl Meta {
    /// O(1): whether `ver` names the live id of this slot and the data is a `D`-typed one.
    fn valid(&self, ver: u32, ty: TypeId) -> bool {
        self.range != 0 && ver.wrapping_sub(self.first_ver) < self.range && self.type_id == Some(ty)
    }
}

/// One pooled id.
struct Slot {
    /// Short internal lock for the id's bookkeeping.
    meta: parking_lot::Mutex<Meta>,
    /// The user's data; only the id's lock holder touches it (invariant 2).
    data: UnsafeCell<Option<Box<dyn Any + Send>>>,
    /// Bumped on every unlock and destroy; lockers sleep on it.
    lock_butex: Butex,
    /// Bumped on every destroy; joiners sleep on it.
    join_butex: Butex,
}

// SAFETY: `data` is accessed only by the holder of the id's lock (invariant 2), with the `meta`
// mutex ordering successive holders; everything else is atomics or behind `meta`. The data is
// `Send`, so handing it between holders on different threads is sound.
unsafe impl Sync for Slot {}

impl Slot {
    /// A free slot.
    fn new() -> Self {
        Slot {
            meta: parking_lot::Mutex::new(Meta {
                first_ver: 0,
                range: 0,
                next_ver: 1,
                locked: false,
                lock_waiters: 0,
                pending: VecDeque::new(),
                epoch: 0,
                runner: 0,
                handed_back: 0,
                next_token: 0,
                on_error: None,
                type_id: None,
            }),
            data: UnsafeCell::new(None),
            lock_butex: Butex::new(0),
            join_butex: Butex::new(0),
        }
    }
}

/// Allocation bookkeeping of the pool.
struct Alloc {
    /// Freed slot indices beyond the threads' caches, reused LIFO (warm caches).
    free: Vec<u32>,
    /// Slots handed out so far (the next never-used index).
    used: u32,
}

/// The global slot pool: a fixed table of lazily allocated, never freed chunks.
struct Pool {
    /// Chunk `i` holds slots `i * CHUNK_SLOTS ..`; null until allocated.
    chunks: [AtomicPtr<Slot>; MAX_CHUNKS],
    /// Free list and high-water mark.
    alloc: parking_lot::Mutex<Alloc>,
}

/// The process-wide pool.
static POOL: Pool = Pool {
    chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS],
    alloc: parking_lot::const_mutex(Alloc {
        free: Vec::new(),
        used: 0,
    }),
};

impl Pool {
    /// The slot at `index`, if its chunk exists. O(1), lock-free.
    fn slot(&self, index: u32) -> Option<&'static Slot> {
        let chunk = (index >> CHUNK_BITS) as usize;
        let p = self.chunks.get(chunk)?.load(Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer is a leaked `[Slot; CHUNK_SLOTS]` that is never freed
        // (published with `Release` after initialisation), and the offset is below CHUNK_SLOTS.
        Some(unsafe { &*p.add(index as usize & (CHUNK_SLOTS - 1)) })
    }

    /// Takes a free slot index: from this thread's cache, else a batch from the shared free
    /// list, else a never-used slot (growing the pool).
    ///
    /// # Panics
    /// If all `MAX_CHUNKS * CHUNK_SLOTS` ids are alive at once.
    fn take(&self) -> u32 {
        // One access to the thread-local, no switch inside it (the caller may be a fiber).
        let cached = LOCAL_FREE
            .try_with(|c| c.try_borrow_mut().ok().and_then(|mut v| v.0.pop()))
            .ok()
            .flatten();
        if let Some(i) = cached {
            return i;
        }
        let mut a = self.alloc.lock();
        if let Some(i) = a.free.pop() {
            // Refill this thread's cache with a batch, so the next takes skip the lock.
            let n = a.free.len().min(LOCAL_FREE_BATCH);
            if n > 0 {
                let at = a.free.len() - n;
                let _ = LOCAL_FREE.try_with(|c| {
                    if let Ok(mut v) = c.try_borrow_mut() {
                        v.0.extend(a.free.drain(at..));
                    }
                });
            }
            return i;
        }
        let i = a.used;
        let chunk = (i >> CHUNK_BITS) as usize;
        assert!(
            chunk < MAX_CHUNKS,
            "FiberId pool exhausted: {} ids alive",
            a.used
        );
        if i as usize & (CHUNK_SLOTS - 1) == 0 {
            let slots: Box<[Slot]> = (0..CHUNK_SLOTS).map(|_| Slot::new()).collect();
            let p = Box::leak(slots).as_mut_ptr();
            self.chunks[chunk].store(p, Release);
        }
        a.used += 1;
        i
    }

    /// Returns a destroyed slot for reuse: to this thread's cache (reused LIFO, while its lines
    /// are still in this core's cache); a full cache hands a batch to the shared list.
    fn give_back(&self, index: u32) {
        let cached = LOCAL_FREE
            .try_with(|c| {
                let Ok(mut v) = c.try_borrow_mut() else {
                    return false;
                };
                v.0.push(index);
                if v.0.len() > 2 * LOCAL_FREE_BATCH {
                    let at = v.0.len() - LOCAL_FREE_BATCH;
                    self.alloc.lock().free.extend(v.0.drain(at..));
                }
                true
            })
            .unwrap_or(false);
        if !cached {
            self.give_back_batch(&[index]);
        }
    }

    /// Returns slots to the shared free list.
    fn give_back_batch(&self, batch: &[u32]) {
        self.alloc.lock().free.extend_from_slice(batch);
    }
}

/// How many free slot indices a thread moves to or from the shared list at once; a thread
/// caches at most twice as many.
const LOCAL_FREE_BATCH: usize = 32;

/// A thread's cache of free slot indices; what is left goes back to the shared list when the
/// thread exits.
struct LocalFree(Vec<u32>);

impl Drop for LocalFree {
    fn drop(&mut self) {
        POOL.give_back_batch(&self.0);
    }
}

thread_local! {
    /// This thread's free slot indices (see [`Pool::take`]). Accessed once per take or give-back,
    /// never across a context switch.
    static LOCAL_FREE: std::cell::RefCell<LocalFree> =
        const { std::cell::RefCell::new(LocalFree(Vec::new())) };
}

/// A versioned 64-bit id naming pooled state of type `D` with a lock, an error handler and a
/// join point (brpc's `bthread_id_t`). `Copy`; holding one keeps nothing alive: every operation
/// checks in O(1) that the id is still current.
///
/// ```
/// use spindle_runtime::fiber_id::{FiberId, FiberIdError};
///
/// let id = FiberId::create(String::from("call state"));
/// let mut guard = id.lock().unwrap();
/// guard.push_str(" (attempt 1)");
/// let data = guard.unlock_and_destroy(); // the data comes back; every id of the range is stale
/// assert_eq!(data, "call state (attempt 1)");
/// assert_eq!(id.lock().err(), Some(FiberIdError::Stale));
/// id.join(); // already destroyed: returns at once
/// ```
pub struct FiberId<D> {
    /// `slot << 32 | version`.
    raw: u64,
    /// The data type; `fn() -> D` keeps the id `Copy + Send + Sync` whatever `D` is.
    _data: PhantomData<fn() -> D>,
}

impl<D> Clone for FiberId<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for FiberId<D> {}

impl<D> PartialEq for FiberId<D> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<D> Eq for FiberId<D> {}

impl<D> std::hash::Hash for FiberId<D> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state)
    }
}

impl<D> fmt::Debug for FiberId<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FiberId({:#x})", self.raw)
    }
}

impl<D> FiberId<D> {
    /// The 64-bit value (e.g. for an RPC's correlation id on the wire).
    pub fn as_raw(self) -> u64 {
        self.raw
    }

    /// An id from a 64-bit value. Any value is safe: unknown or stale ones are refused by every
    /// operation with [`FiberIdError::Stale`].
    pub fn from_raw(raw: u64) -> Self {
        FiberId {
            raw,
            _data: PhantomData,
        }
    }

    /// The id `k` versions after this one (`id + k`): the same state while `k` is inside the
    /// range given to [`FiberId::create_ranged`], stale otherwise.
    pub fn offset(self, k: u32) -> Self {
        let ver = (self.raw as u32).wrapping_add(k);
        FiberId::from_raw((self.raw & !0xffff_ffff) | u64::from(ver))
    }

    /// Slot index and version.
    fn split(self) -> (u32, u32) {
        ((self.raw >> 32) as u32, self.raw as u32)
    }
}

impl<D: Send + 'static> FiberId<D> {
    /// Creates an id owning `data`, with a range of one version. Its on-error handler destroys
    /// it (dropping the data), like brpc's default.
    pub fn create(data: D) -> Self {
        Self::create_ranged(data, 1)
    }

    /// Creates an id owning `data` whose versions `id .. id + range` all name it (see
    /// [`FiberId::offset`]); on error it is destroyed.
    ///
    /// # Panics
    /// If `range` is 0 or above [`MAX_RANGE`].
    pub fn create_ranged(data: D, range: u32) -> Self {
        Self::create_with_on_error(data, range, |guard: FiberIdGuard<D>, _code| {
            drop(guard.unlock_and_destroy());
        })
    }

    /// Creates an id with an on-error handler: [`FiberId::error`] runs `on_error(guard, code)`
    /// with the id locked (`guard.id()` is the id the error named). The handler must unlock
    /// (drop the guard) or destroy.
    ///
    /// # Panics
    /// If `range` is 0 or above [`MAX_RANGE`].
    ///
    /// ```
    /// use spindle_runtime::fiber_id::FiberId;
    ///
    /// let id = FiberId::create_with_on_error(Vec::new(), 1, |mut guard, code| {
    ///     guard.push(code); // e.g. record the failure, schedule a retry, …
    /// });
    /// id.error(1008).unwrap(); // unlocked: runs now
    /// let g = id.lock().unwrap();
    /// id.error(1009).unwrap(); // locked: queued until the holder unlocks
    /// assert_eq!(*g, vec![1008]);
    /// drop(g); // runs the queued handler
    /// assert_eq!(*id.lock().unwrap(), vec![1008, 1009]);
    /// ```
    pub fn create_with_on_error<F>(data: D, range: u32, on_error: F) -> Self
    where
        F: Fn(FiberIdGuard<D>, i32) + Send + Sync + 'static,
    {
        assert!(
            (1..=MAX_RANGE).contains(&range),
            "FiberId range {range} not in 1..={MAX_RANGE}"
        );
        let index = POOL.take();
        let slot = POOL.slot(index).expect("taken slot exists");
        // SAFETY: the slot is free (`range == 0`), so nobody can lock it or reach `data`; the
        // previous holder took its data out before the slot was given back (invariant 2).
        unsafe { *slot.data.get() = Some(Box::new(data)) };
        let handler = if size_of::<F>() == 0 && !std::mem::needs_drop::<F>() {
            std::mem::forget(on_error); // no bytes, no drop: `call_stateless` conjures it
            ErasedHandler::Stateless(call_stateless::<D, F>)
        } else {
            ErasedHandler::Shared(Arc::new(move |raw, code, token| {
                // SAFETY: the erased handler is only called by a holder handing over the lock
                // of `raw`'s slot, whose data is a `D` (type checked when it was locked or
                // errored).
                on_error(unsafe { FiberIdGuard::adopt(raw, token) }, code)
            }))
        };
        let mut m = slot.meta.lock();
        if m.next_ver.checked_add(range).is_none() {
            m.next_ver = 1; // version space of this slot wrapped (invariant 3)
        }
        m.first_ver = m.next_ver;
        m.next_ver += range;
        m.range = range;
        m.locked = false;
        m.pending.clear();
        m.epoch += 1;
        m.runner = 0;
        m.handed_back = 0;
        m.on_error = Some(handler);
        m.type_id = Some(TypeId::of::<D>());
        FiberId::from_raw(u64::from(index) << 32 | u64::from(m.first_ver))
    }

    /// Whether the id is current (not destroyed); O(1), a snapshot.
    pub fn is_valid(self) -> bool {
        let (index, ver) = self.split();
        POOL.slot(index)
            .is_some_and(|s| s.meta.lock().valid(ver, TypeId::of::<D>()))
    }

    /// Locks the id, parking the caller (fiber or thread) while another holder has it. Returns
    /// a guard giving `&mut D`, or `Err(Stale)` — at once if the id is stale, or as soon as it is
    /// destroyed while waiting. Not reentrant: locking an id you hold deadlocks.
    pub fn lock(self) -> Result<FiberIdGuard<D>, FiberIdError> {
        let (index, ver) = self.split();
        let slot = POOL.slot(index).ok_or(FiberIdError::Stale)?;
        let ty = TypeId::of::<D>();
        let mut m = slot.meta.lock();
        loop {
            if !m.valid(ver, ty) {
                return Err(FiberIdError::Stale);
            }
            if !m.locked {
                m.locked = true;
                drop(m);
                // SAFETY: we just took the lock of this id, whose data is a `D`.
                return Ok(unsafe { FiberIdGuard::adopt(self.raw, 0) });
            }
            let word = slot.lock_butex.value().load(Acquire);
            m.lock_waiters += 1;
            drop(m);
            let _ = slot.lock_butex.wait(word, None);
            m = slot.meta.lock();
            m.lock_waiters -= 1;
        }
    }

    /// Reports error `code` on the id: if unlocked, locks it and runs the on-error handler now,
    /// on this caller; if locked, queues the error for when the holder unlocks. `Err(Stale)` if
    /// the id was destroyed.
    pub fn error(self, code: i32) -> Result<(), FiberIdError> {
        let (index, ver) = self.split();
        let slot = POOL.slot(index).ok_or(FiberIdError::Stale)?;
        let mut m = slot.meta.lock();
        if !m.valid(ver, TypeId::of::<D>()) {
            return Err(FiberIdError::Stale);
        }
        if m.locked {
            m.pending.push_back((self.raw, code));
            return Ok(());
        }
        m.locked = true;
        drop(m);
        run_handlers(slot, (self.raw, code));
        Ok(())
    }

    /// Parks the caller until the id is destroyed; returns at once if it already is (or never
    /// existed).
    pub fn join(self) {
        let (index, ver) = self.split();
        let Some(slot) = POOL.slot(index) else { return };
        let ty = TypeId::of::<D>();
        loop {
            let m = slot.meta.lock();
            if !m.valid(ver, ty) {
                return;
            }
            let word = slot.join_butex.value().load(Acquire);
            drop(m);
            let _ = slot.join_butex.wait(word, None);
        }
    }
}

/// The lock of a [`FiberId`]: derefs to the id's data. Dropping it unlocks (running a queued
/// error handler first, if any); [`FiberIdGuard::unlock_and_destroy`] ends the id.
///
/// `Send` when `D: Send`: a fiber may resume on another thread, and brpc code often unlocks an
/// id from another fiber than the one that locked it.
#[must_use = "the id is unlocked as soon as the guard is dropped"]
pub struct FiberIdGuard<D> {
    /// The id that was locked (the version used).
    raw: u64,
    /// Its slot.
    slot: &'static Slot,
    /// The data, inside the slot's box (stable while locked).
    data: NonNull<D>,
    /// Runner token if this guard was handed to an on-error handler by `run_handlers`, else 0.
    token: u64,
}

// SAFETY: the guard is the exclusive right to the id's `D`; moving it to another thread moves
// that right, which needs `D: Send`. Unlocking has no owner-thread requirement.
unsafe impl<D: Send> Send for FiberIdGuard<D> {}
// SAFETY: a shared guard only grants `&D`.
unsafe impl<D: Sync> Sync for FiberIdGuard<D> {}

impl<D: 'static> FiberIdGuard<D> {
    /// Wraps the lock of `raw` that the caller holds.
    ///
    /// # Safety
    /// The caller holds the lock of `raw`'s (existing) slot, and its data is a `D`.
    unsafe fn adopt(raw: u64, token: u64) -> Self {
        let slot = POOL.slot((raw >> 32) as u32).expect("locked slot exists");
        // SAFETY: we hold the lock, so we alone access `data` (invariant 2).
        let boxed = unsafe { &mut *slot.data.get() }
            .as_mut()
            .expect("live id has data");
        let data = NonNull::from(boxed.downcast_mut::<D>().expect("type checked by caller"));
        FiberIdGuard {
            raw,
            slot,
            data,
            token,
        }
    }

    /// The id this guard locked.
    pub fn id(&self) -> FiberId<D> {
        FiberId::from_raw(self.raw)
    }

    /// Unlocks (same as dropping the guard).
    pub fn unlock(self) {}

    /// Destroys the id and returns its data: every id of its range becomes stale at once (later
    /// `lock`/`error` fail with `Stale`, lockers waiting now wake with `Stale`, joiners return),
    /// pending errors are dropped, and the slot is recycled with new versions.
    pub fn unlock_and_destroy(self) -> D {
        *self.unlock_and_destroy_boxed()
    }

    /// [`FiberIdGuard::unlock_and_destroy`], returning the data in the box it was kept in: a
    /// large `D` is not copied out of it.
    pub fn unlock_and_destroy_boxed(self) -> Box<D> {
        let this = ManuallyDrop::new(self);
        let slot = this.slot;
        // SAFETY: we hold the lock, so we alone access `data` (invariant 2).
        let boxed = unsafe { (*slot.data.get()).take() }.expect("live id has data");
        let data = boxed
            .downcast::<D>()
            .unwrap_or_else(|_| unreachable!("type checked at lock"));
        let mut m = slot.meta.lock();
        m.range = 0;
        m.locked = false;
        m.epoch += 1;
        m.runner = 0;
        m.handed_back = 0;
        let pending = std::mem::take(&mut m.pending);
        let handler = m.on_error.take();
        m.type_id = None;
        slot.lock_butex.value().fetch_add(1, AcqRel);
        slot.join_butex.value().fetch_add(1, AcqRel);
        drop(m);
        slot.lock_butex.wake_all();
        slot.join_butex.wake_all();
        drop((pending, handler));
        POOL.give_back((this.raw >> 32) as u32);
        data
    }
}

impl<D> Deref for FiberIdGuard<D> {
    type Target = D;
    fn deref(&self) -> &D {
        // SAFETY: the data lives in the slot's box until destroy, and the guard's lock makes
        // this the only access (invariant 2).
        unsafe { self.data.as_ref() }
    }
}

impl<D> DerefMut for FiberIdGuard<D> {
    fn deref_mut(&mut self) -> &mut D {
        // SAFETY: as in `deref`; `&mut self` makes it exclusive within this holder too.
        unsafe { self.data.as_mut() }
    }
}

impl<D> Drop for FiberIdGuard<D> {
    fn drop(&mut self) {
        let mut m = self.slot.meta.lock();
        debug_assert!(m.locked, "guard of an unlocked id");
        if self.token != 0 && m.runner == self.token && !m.pending.is_empty() {
            // Our handler's runner is still inside the call: give the lock back to it rather
            // than run the next handler from inside this drop (no nesting).
            m.handed_back = self.token;
            return;
        }
        if let Some(next) = m.pending.pop_front() {
            drop(m);
            run_handlers(self.slot, next); // the lock passes straight to the handlers
            return;
        }
        unlock_locked(self.slot, m);
    }
}

/// Releases the lock of `slot` (whose `meta` the caller has locked, with `locked` set and no
/// error pending) and wakes one locker.
fn unlock_locked(slot: &Slot, mut m: parking_lot::MutexGuard<'_, Meta>) {
    m.locked = false;
    let waiters = m.lock_waiters;
    slot.lock_butex.value().fetch_add(1, AcqRel);
    drop(m);
    if waiters > 0 {
        slot.lock_butex.wake_one();
    }
}

/// Runs the on-error handler for `first` and then for every error queued meanwhile, with the
/// lock of `slot` held throughout (the caller holds it). Iterative, so a long queue of errors
/// does not nest handler calls on the (possibly small) fiber stack: a handler whose guard is
/// dropped before it returns, while errors are pending, hands the lock back here
/// (`handed_back`) and the loop goes on. If the guard simply unlocked (nothing pending), lives
/// on elsewhere (moved to another fiber) or the id was destroyed, the loop stops; whoever drops
/// a guard later handles the queue.
fn run_handlers(slot: &'static Slot, first: (u64, i32)) {
    let mut next = first;
    loop {
        let (handler, epoch, token) = {
            let mut m = slot.meta.lock();
            m.next_token += 1;
            let token = m.next_token;
            m.runner = token;
            (
                m.on_error.clone().expect("live id has a handler"),
                m.epoch,
                token,
            )
        };
        handler.call(next.0, next.1, token);
        let mut m = slot.meta.lock();
        if m.epoch != epoch {
            return; // destroyed inside the handler (and maybe already recycled): not ours
        }
        if m.runner == token {
            m.runner = 0;
        }
        if m.handed_back != token {
            return; // unlocked, or the guard lives on elsewhere: its drop handles the queue
        }
        m.handed_back = 0;
        match m.pending.pop_front() {
            Some(err) => next = err,
            None => return unlock_locked(slot, m),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    #[test]
    fn stale_after_destroy_and_slot_recycled_with_new_version() {
        let id = FiberId::create(1u32);
        assert!(id.is_valid());
        assert_eq!(id.lock().unwrap().unlock_and_destroy(), 1);
        assert!(!id.is_valid());
        assert_eq!(id.lock().err(), Some(FiberIdError::Stale));
        assert_eq!(id.error(5), Err(FiberIdError::Stale));
        let again = FiberId::create(2u32);
        assert_ne!(again, id, "a recycled slot must get a new version");
        assert_eq!(id.lock().err(), Some(FiberIdError::Stale));
        assert_eq!(*again.lock().unwrap(), 2);
        let _ = again.lock().unwrap().unlock_and_destroy();
    }

    #[test]
    fn a_thread_reuses_the_slot_it_freed_last() {
        // A fresh thread: its cache holds only what it frees itself.
        std::thread::spawn(|| {
            let a = FiberId::create(1u32);
            let b = FiberId::create(2u32);
            let _ = b.lock().unwrap().unlock_and_destroy();
            let _ = a.lock().unwrap().unlock_and_destroy();
            let c = FiberId::create(3u32);
            assert_eq!(
                c.as_raw() >> 32,
                a.as_raw() >> 32,
                "LIFO: the last freed slot"
            );
            assert_ne!(c, a, "with a new version");
            let d = FiberId::create(4u32);
            assert_eq!(d.as_raw() >> 32, b.as_raw() >> 32);
            let _ = c.lock().unwrap().unlock_and_destroy();
            let _ = d.lock().unwrap().unlock_and_destroy();
        })
        .join()
        .unwrap();
    }

    #[test]
    // 5,000 ids on 50 threads take miri about ten minutes; the code under test is safe Rust.
    #[cfg_attr(miri, ignore)]
    fn slots_cached_by_a_thread_go_back_when_it_exits() {
        // Each round, a thread holds 100 ids at once, frees them (its cache keeps up to 64) and
        // exits. If the cache were lost at exit, every round would leave 33..=64 slots unusable
        // and the pool would grow by at least 1,650 slots over 50 rounds.
        let used_before = POOL.alloc.lock().used;
        for _ in 0..50 {
            std::thread::spawn(|| {
                let ids: Vec<_> = (0..100u32).map(FiberId::create).collect();
                for id in ids {
                    let _ = id.lock().unwrap().unlock_and_destroy();
                }
            })
            .join()
            .unwrap();
        }
        let grown = POOL.alloc.lock().used - used_before;
        // Other tests of this binary may hold some ids meanwhile: allow for them.
        assert!(grown < 800, "the pool grew by {grown} slots");
    }

    #[test]
    fn range_versions_share_state_and_die_together() {
        let id = FiberId::create_ranged(0u32, 3);
        *id.offset(2).lock().unwrap() += 1;
        *id.offset(1).lock().unwrap() += 1;
        assert_eq!(id.offset(3).lock().err(), Some(FiberIdError::Stale));
        assert_eq!(*id.lock().unwrap(), 2);
        let _ = id.offset(1).lock().unwrap().unlock_and_destroy();
        for k in 0..3 {
            assert_eq!(id.offset(k).lock().err(), Some(FiberIdError::Stale));
        }
    }

    #[test]
    fn wrong_type_and_garbage_ids_are_stale() {
        let id = FiberId::create(1u8);
        assert_eq!(
            FiberId::<u16>::from_raw(id.as_raw()).lock().err(),
            Some(FiberIdError::Stale)
        );
        assert_eq!(
            FiberId::<u8>::from_raw(u64::MAX).lock().err(),
            Some(FiberIdError::Stale)
        );
        assert_eq!(
            FiberId::<u8>::from_raw(0).error(1),
            Err(FiberIdError::Stale)
        );
        FiberId::<u8>::from_raw(u64::MAX).join();
        let _ = id.lock().unwrap().unlock_and_destroy();
    }

    /// The boxed form hands back the very data (no copy needed) and destroys the id like the
    /// plain one: every version of its range is stale.
    #[test]
    fn destroy_boxed_returns_the_data_and_makes_every_version_stale() {
        let id = FiberId::create_ranged([7u64; 32], 3);
        let data = id.offset(1).lock().unwrap().unlock_and_destroy_boxed();
        assert_eq!(*data, [7u64; 32]);
        for k in 0..3 {
            assert!(!id.offset(k).is_valid());
            assert!(matches!(id.offset(k).lock(), Err(FiberIdError::Stale)));
        }
    }

    #[test]
    fn default_on_error_destroys() {
        let id = FiberId::create(String::from("x"));
        id.error(1008).unwrap();
        assert!(!id.is_valid());
        id.join();
    }

    /// A function item and a capture-less closure are stored as function pointers
    /// (`ErasedHandler::Stateless`), a capturing closure behind an `Arc`; all three run with
    /// the guard and the code, and the captures are dropped with the id.
    #[test]
    fn stateless_and_capturing_handlers_both_run() {
        fn record(mut g: FiberIdGuard<Vec<i32>>, code: i32) {
            g.push(code);
        }
        let id = FiberId::create_with_on_error(Vec::new(), 1, record);
        id.error(7).unwrap();
        assert_eq!(*id.lock().unwrap(), vec![7]);

        let id =
            FiberId::create_with_on_error(Vec::new(), 1, |mut g: FiberIdGuard<Vec<i32>>, c| {
                g.push(c + 1)
            });
        id.error(7).unwrap();
        assert_eq!(*id.lock().unwrap(), vec![8]);

        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let id = FiberId::create_with_on_error(0u32, 1, move |g: FiberIdGuard<u32>, c| {
            s.store(c as usize, SeqCst);
            g.unlock_and_destroy();
        });
        id.error(9).unwrap();
        assert_eq!(seen.load(SeqCst), 9);
        assert!(!id.is_valid());
        assert_eq!(Arc::strong_count(&seen), 1, "the handler went with the id");
    }

    #[test]
    fn long_error_queue_runs_iteratively_on_a_small_stack() {
        let n = if cfg!(miri) { 50 } else { 20_000 };
        let t = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let id = FiberId::create_with_on_error(0u32, 1, |mut g, _| *g += 1);
                let g = id.lock().unwrap();
                for code in 0..n {
                    id.error(code).unwrap();
                }
                drop(g); // runs all n handlers; nesting them would overflow 64 KiB
                assert_eq!(id.lock().unwrap().unlock_and_destroy(), n as u32);
            })
            .unwrap();
        t.join().unwrap();
    }

    #[test]
    fn handler_may_keep_the_guard_and_unlock_later() {
        let kept = Arc::new(parking_lot::Mutex::new(None));
        let k2 = kept.clone();
        let id = FiberId::create_with_on_error(
            Vec::new(),
            1,
            move |mut g: FiberIdGuard<Vec<i32>>, code| {
                g.push(code);
                *k2.lock() = Some(g); // keep the lock past the handler
            },
        );
        id.error(1).unwrap();
        id.error(2).unwrap(); // queued: the kept guard still holds the lock
        let g = kept.lock().take().unwrap();
        assert_eq!(*g, vec![1]);
        drop(g); // runs handler for 2, which keeps the guard again
        let g = kept.lock().take().unwrap();
        assert_eq!(*g, vec![1, 2]);
        let _ = g.unlock_and_destroy();
    }

    #[test]
    fn handler_without_pending_errors_may_relock_after_unlocking() {
        let id = FiberId::create_with_on_error(0u32, 1, |g: FiberIdGuard<u32>, _| {
            let id = g.id();
            drop(g);
            *id.lock().unwrap() += 1; // plain unlock above, so this does not deadlock
        });
        id.error(7).unwrap();
        assert_eq!(id.lock().unwrap().unlock_and_destroy(), 1);
    }

    #[test]
    fn lockers_exclude_each_other_and_wake_stale_on_destroy() {
        let iters = if cfg!(miri) { 10 } else { 500 };
        let id = FiberId::create(0usize);
        let inside = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let inside = inside.clone();
                crate::spawn(move || {
                    for _ in 0..iters {
                        let mut g = id.lock().unwrap();
                        assert!(!inside.swap(true, SeqCst));
                        *g += 1;
                        inside.store(false, SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Now block lockers behind a holder and destroy: they must all see Stale.
        let g = id.lock().unwrap();
        assert_eq!(*g, 4 * iters);
        let stale = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let stale = stale.clone();
                crate::spawn(move || {
                    if id.lock().is_err() {
                        stale.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        crate::sleep(std::time::Duration::from_millis(5));
        let _ = g.unlock_and_destroy();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(stale.load(SeqCst), 3);
    }
}
