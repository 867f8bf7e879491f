//! Versioned socket ids: weak 64-bit handles that can never reach a recycled object (brpc's
//! `SocketId` over `ResourcePool<Socket>`).
//!
//! # Layout
//!
//! A [`SocketId`] is `version << 32 | slot`. `slot` indexes a table of [`SocketMap`] slots;
//! `version` is the generation of that slot the id was issued for. Each slot holds one 64-bit
//! word `vref = version << 32 | nref` and storage for one value.
//!
//! The table is a fixed array of chunk pointers; a chunk of `CHUNK_SLOTS` slots is allocated
//! when the first of its slots is handed out and is freed only when the map is dropped, so a
//! slot never moves and a `&Slot` obtained from a live map stays valid for the map's lifetime.
//!
//! # Invariants
//!
//! 1. **`nref > 0` ⇔ the slot's value is initialised.** `insert` writes the value before it
//!    publishes `nref = 1` (Release); the holder whose decrement takes `nref` from 1 to 0 drops
//!    the value and only then returns the slot to the free list.
//! 2. **A live value is reachable only through its own id.** `insert` issues the id with the
//!    slot's current version `v` and sets `vref = (v, 1)`. The `1` is the map's own reference
//!    ("the id's reference"): the value lives at least until `set_failed`.
//! 3. **`set_failed(id)` bumps the version** `v → v + 1` with a CAS that keeps `nref`, then drops
//!    the map's reference. From then on no `address(id)` can succeed: the version no longer
//!    matches. Existing strong handles keep the value alive and can observe
//!    [`SocketRef::is_failed`].
//! 4. **`address(id)` increments `nref` with a CAS whose expected value carries `id`'s version**,
//!    so the increment happens only if, at that instant, the slot still belongs to `id`'s
//!    generation and the value is alive (`nref > 0`). A reader with a stale id never touches the
//!    count, so it can neither resurrect a value being dropped nor reach the value of a later
//!    generation.
//! 5. **A recycled slot keeps the bumped version** (`v + 1`, `nref = 0`); the next `insert` into
//!    it issues ids with version `v + 1`. Versions wrap after 2^32 generations of one slot; an id
//!    kept that long could alias, as in brpc.
//!
//! Reads (`address`, handle clone/drop) are lock-free. `insert` and recycling take one mutex
//! that guards the free list and chunk allocation; sockets are created and destroyed far less
//! often than they are addressed.

use crate::loom::atomic::{fence, AtomicPtr, AtomicU64, Ordering};
use crate::loom::{Mutex, UnsafeCell};
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;

/// Slots per chunk. A chunk is allocated whole; 256 keeps a chunk of small values within a few
/// pages while making growth rare. Loom models use 2 so that they exercise chunk growth.
const CHUNK_SLOTS: usize = if cfg!(loom) { 2 } else { 256 };

/// Default number of chunk pointers: 16384 × 256 = 4 Mi slots, a 128 KiB pointer table.
pub const DEFAULT_MAX_CHUNKS: usize = 16384;

const NREF_MASK: u64 = 0xffff_ffff;

fn make_vref(version: u32, nref: u32) -> u64 {
    (u64::from(version) << 32) | u64::from(nref)
}

fn version_of(vref: u64) -> u32 {
    (vref >> 32) as u32
}

fn nref_of(vref: u64) -> u32 {
    (vref & NREF_MASK) as u32
}

/// A weak, versioned handle to an object in a [`SocketMap`]: `version << 32 | slot`.
///
/// Copying an id is free and never keeps the object alive; [`SocketMap::address`] turns it into
/// a strong handle while the object is alive and not failed. Epoll data carries this value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

impl SocketId {
    /// An id that no map ever issues (its slot is beyond any table).
    pub const INVALID: SocketId = SocketId(u64::MAX);

    /// Builds the id of `slot` at `version`.
    pub const fn new(slot: u32, version: u32) -> SocketId {
        SocketId(((version as u64) << 32) | slot as u64)
    }

    /// Reconstructs an id from [`SocketId::as_u64`] (e.g. read back from epoll data).
    pub const fn from_u64(raw: u64) -> SocketId {
        SocketId(raw)
    }

    /// The raw 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The slot index (low 32 bits).
    pub const fn slot(self) -> u32 {
        self.0 as u32
    }

    /// The generation of the slot this id was issued for (high 32 bits).
    pub const fn version(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl Default for SocketId {
    /// [`SocketId::INVALID`].
    fn default() -> Self {
        SocketId::INVALID
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({}@v{})", self.slot(), self.version())
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why [`SocketMap::insert`] gave the value back.
pub struct MapFull<T> {
    /// The value that was not inserted.
    pub value: T,
    /// The number of slots the map can hold.
    pub capacity: usize,
}

impl<T> fmt::Display for MapFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket map is full ({} slots in use)", self.capacity)
    }
}

impl<T> fmt::Debug for MapFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapFull")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> std::error::Error for MapFull<T> {}

/// Why [`SocketMap::set_failed`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyFailed(pub SocketId);

impl fmt::Display for AlreadyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} was already failed or recycled", self.0)
    }
}

impl std::error::Error for AlreadyFailed {}

/// One entry of the table.
struct Slot<T> {
    /// `version << 32 | nref`; see the module invariants.
    vref: AtomicU64,
    /// Initialised exactly while `nref > 0` (invariant 1).
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A fixed run of slots; never moves once published.
struct Chunk<T> {
    /// `CHUNK_SLOTS` slots.
    slots: Box<[Slot<T>]>,
}

impl<T> Chunk<T> {
    fn new() -> Chunk<T> {
        let slots = (0..CHUNK_SLOTS)
            .map(|_| Slot {
                vref: AtomicU64::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Chunk { slots }
    }
}

/// Free list and growth state, under one mutex.
struct AllocState {
    /// Recycled slots, reused last-in first-out.
    free: Vec<u32>,
    /// Slots ever handed out; slot `next_unused` is the next fresh one.
    next_unused: usize,
}

/// A table of values addressed by versioned [`SocketId`]s (brpc's socket pool).
///
/// Generic over the stored type so the socket type plugs in later; a process-wide socket map is
/// meant to live in a `static`, which makes every [`SocketRef`] `'static`.
pub struct SocketMap<T> {
    /// Chunk pointers; null until the chunk's first slot is handed out.
    chunks: Box<[AtomicPtr<Chunk<T>>]>,
    /// Free list and fresh-slot cursor.
    alloc: Mutex<AllocState>,
}

// SAFETY: the map hands out `&T` to many threads (needs `T: Sync`) and drops values on whichever
// thread releases the last reference (needs `T: Send`). All shared state is atomics or behind
// the mutex.
unsafe impl<T: Send + Sync> Sync for SocketMap<T> {}
// SAFETY: moving the map moves ownership of its values; `T: Send` suffices.
unsafe impl<T: Send> Send for SocketMap<T> {}

impl<T> Default for SocketMap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SocketMap<T> {
    /// A map holding up to `DEFAULT_MAX_CHUNKS × 256` values.
    pub fn new() -> SocketMap<T> {
        Self::with_max_chunks(DEFAULT_MAX_CHUNKS)
    }

    /// A map holding up to `max_chunks` chunks of slots. `max_chunks` is clamped so that every
    /// slot index fits in 32 bits and never equals `u32::MAX` ([`SocketId::INVALID`]'s slot).
    pub fn with_max_chunks(max_chunks: usize) -> SocketMap<T> {
        let limit = (u32::MAX as usize) / CHUNK_SLOTS;
        let n = max_chunks.clamp(1, limit);
        let chunks = (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect();
        SocketMap {
            chunks,
            alloc: Mutex::new(AllocState {
                free: Vec::new(),
                next_unused: 0,
            }),
        }
    }

    /// How many values the map can hold at once.
    pub fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK_SLOTS
    }

    fn lock_alloc(&self) -> crate::loom::MutexGuard<'_, AllocState> {
        // A panic while the lock is held cannot leave `AllocState` inconsistent (every update is
        // a single push/pop/increment), so a poisoned lock is still usable.
        self.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks up the slot of `slot_index`, if its chunk exists.
    fn slot(&self, slot_index: u32) -> Option<&Slot<T>> {
        let index = slot_index as usize;
        let chunk = self
            .chunks
            .get(index / CHUNK_SLOTS)?
            .load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer was published (Release, paired with the Acquire
        // above) after the chunk was fully built, and chunks are freed only in `Drop`, which
        // cannot run while `&self` is borrowed.
        let chunk = unsafe { &*chunk };
        chunk.slots.get(index % CHUNK_SLOTS)
    }

    /// Stores `value` and returns its id, with one reference held by the map itself until
    /// [`set_failed`](Self::set_failed). Fails, giving the value back, when every slot is in use.
    pub fn insert(&self, value: T) -> Result<SocketId, MapFull<T>> {
        let slot_index = {
            let mut st = self.lock_alloc();
            match st.free.pop() {
                Some(s) => s,
                None => {
                    let s = st.next_unused;
                    let chunk_index = s / CHUNK_SLOTS;
                    if chunk_index >= self.chunks.len() {
                        return Err(MapFull {
                            value,
                            capacity: self.capacity(),
                        });
                    }
                    if s % CHUNK_SLOTS == 0 {
                        let chunk = Box::into_raw(Box::new(Chunk::new()));
                        self.chunks[chunk_index].store(chunk, Ordering::Release);
                    }
                    st.next_unused = s + 1;
                    s as u32
                }
            }
        };
        let slot = match self.slot(slot_index) {
            Some(slot) => slot,
            // Unreachable by construction: the chunk was published above or when the slot was
            // first handed out. Give the value back rather than panic.
            None => {
                return Err(MapFull {
                    value,
                    capacity: self.capacity(),
                })
            }
        };
        // The slot came from the free list or is fresh: nobody else holds it, nref == 0. The
        // mutex orders this load after the recycler's last store.
        let version = version_of(slot.vref.load(Ordering::Relaxed));
        slot.value.with_mut(|p| {
            // SAFETY: `nref == 0`, so the storage is uninitialised and no handle or `address`
            // call can touch it (invariant 4 refuses nref == 0); we own the slot exclusively.
            unsafe { (*p).write(value) };
        });
        // Publish: the value write happens-before any `address` that observes this store.
        slot.vref.store(make_vref(version, 1), Ordering::Release);
        Ok(SocketId::new(slot_index, version))
    }

    /// Returns a strong handle to the value of `id`, or `None` if `id` was never issued, was
    /// failed ([`set_failed`](Self::set_failed)) or its slot was recycled. Lock-free.
    pub fn address(&self, id: SocketId) -> Option<SocketRef<'_, T>> {
        let slot = self.slot(id.slot())?;
        let mut cur = slot.vref.load(Ordering::Acquire);
        loop {
            if version_of(cur) != id.version() || nref_of(cur) == 0 {
                return None;
            }
            if nref_of(cur) == u32::MAX {
                // 2^32 - 1 live handles: refuse rather than overflow into the version bits.
                return None;
            }
            match slot.vref.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(SocketRef {
                        map: self,
                        slot,
                        id,
                    })
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Makes `id` unreachable: bumps the slot's version so every later `address(id)` fails, and
    /// drops the map's own reference. The value is dropped and its slot recycled when the last
    /// strong handle goes. Returns [`AlreadyFailed`] if `id` is not the slot's live generation.
    pub fn set_failed(&self, id: SocketId) -> Result<(), AlreadyFailed> {
        let slot = self.slot(id.slot()).ok_or(AlreadyFailed(id))?;
        let mut cur = slot.vref.load(Ordering::Relaxed);
        loop {
            if version_of(cur) != id.version() || nref_of(cur) == 0 {
                return Err(AlreadyFailed(id));
            }
            let bumped = make_vref(id.version().wrapping_add(1), nref_of(cur));
            match slot
                .vref
                .compare_exchange_weak(cur, bumped, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        // The map's reference (invariant 2) is ours to release: only the one successful version
        // bump for this generation gets here.
        self.release(id.slot(), slot);
        Ok(())
    }

    /// Calls `f` with a strong handle to every live (not failed) value, in slot order (the
    /// `/connections` page). Read-only and lock-free per slot: each slot is reached through
    /// [`address`](Self::address) with the version it holds now, so a value failed or
    /// recycled meanwhile is skipped, never resurrected. Values inserted during the walk may
    /// be missed.
    pub fn for_each_live(&self, mut f: impl FnMut(SocketRef<'_, T>)) {
        let used = self.lock_alloc().next_unused;
        for slot_index in 0..used as u32 {
            let Some(slot) = self.slot(slot_index) else {
                continue;
            };
            let vref = slot.vref.load(Ordering::Acquire);
            if nref_of(vref) == 0 {
                continue;
            }
            if let Some(handle) = self.address(SocketId::new(slot_index, version_of(vref))) {
                f(handle);
            }
        }
    }

    /// Drops one reference; the last one drops the value and recycles the slot.
    fn release(&self, slot_index: u32, slot: &Slot<T>) {
        let prev = slot.vref.fetch_sub(1, Ordering::Release);
        if nref_of(prev) != 1 {
            return;
        }
        // Pair with the Release decrements of the other holders: their uses of the value
        // happen-before the drop below.
        fence(Ordering::Acquire);
        slot.value.with_mut(|p| {
            // SAFETY: nref went 1 → 0 in our decrement, so the value was initialised
            // (invariant 1) and no other handle exists. The version was bumped before the map's
            // reference was released (invariant 3), so no `address` can increment from 0.
            unsafe { (*p).assume_init_drop() };
        });
        self.lock_alloc().free.push(slot_index);
    }
}

impl<T> Drop for SocketMap<T> {
    fn drop(&mut self) {
        for chunk in self.chunks.iter() {
            let chunk = chunk.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: `chunk` came from `Box::into_raw` in `insert` and is freed only here;
            // `&mut self` means no handle (each borrows the map) is alive.
            let chunk = unsafe { Box::from_raw(chunk) };
            for slot in chunk.slots.iter() {
                if nref_of(slot.vref.load(Ordering::Acquire)) > 0 {
                    slot.value.with_mut(|p| {
                        // SAFETY: nref > 0 means initialised (invariant 1); no handle is alive,
                        // so the map's own reference is the only one left.
                        unsafe { (*p).assume_init_drop() };
                    });
                }
            }
        }
    }
}

impl<T> fmt::Debug for SocketMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketMap")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// A strong handle to a value of a [`SocketMap`] (brpc's `SocketUniquePtr`): the value stays
/// alive, and its slot unrecycled, while any handle exists — even after `set_failed`.
pub struct SocketRef<'a, T> {
    /// The owning map (for releasing the reference).
    map: &'a SocketMap<T>,
    /// The slot, which holds one reference on our behalf.
    slot: &'a Slot<T>,
    /// The id this handle was addressed with.
    id: SocketId,
}

// SAFETY: a handle gives `&T` (needs `T: Sync`) and may drop the value on the thread where it
// is released (needs `T: Send`).
unsafe impl<T: Send + Sync> Send for SocketRef<'_, T> {}
// SAFETY: sharing `&SocketRef` only shares `&T`.
unsafe impl<T: Send + Sync> Sync for SocketRef<'_, T> {}

impl<T> SocketRef<'_, T> {
    /// The id this handle was addressed with.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// True once `set_failed` was called on this handle's id (the value itself is still alive).
    pub fn is_failed(&self) -> bool {
        version_of(self.slot.vref.load(Ordering::Acquire)) != self.id.version()
    }

    /// `map.set_failed(self.id())`.
    pub fn set_failed(&self) -> Result<(), AlreadyFailed> {
        self.map.set_failed(self.id)
    }
}

impl<T> std::ops::Deref for SocketRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.slot.value.with(|p| {
            // SAFETY: this handle holds a reference, so nref > 0 and the value is initialised
            // (invariant 1) and is not dropped before the handle is.
            unsafe { (*p).assume_init_ref() }
        })
    }
}

impl<T> Clone for SocketRef<'_, T> {
    fn clone(&self) -> Self {
        // Like `Arc::clone`: we already hold a reference, so the value cannot go away, and
        // Relaxed suffices for the increment.
        let prev = self.slot.vref.fetch_add(1, Ordering::Relaxed);
        if nref_of(prev) == u32::MAX {
            // The count would carry into the version bits; the process cannot continue soundly.
            std::process::abort();
        }
        SocketRef {
            map: self.map,
            slot: self.slot,
            id: self.id,
        }
    }
}

impl<T> Drop for SocketRef<'_, T> {
    fn drop(&mut self) {
        self.map.release(self.id.slot(), self.slot);
    }
}

impl<T: fmt::Debug> fmt::Debug for SocketRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketRef")
            .field("id", &self.id)
            .field("value", &**self)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts drops so tests can check each value is dropped exactly once.
    #[derive(Debug)]
    struct Tracked {
        tag: u64,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn tracked(tag: u64, drops: &Arc<AtomicUsize>) -> Tracked {
        Tracked {
            tag,
            drops: drops.clone(),
        }
    }

    fn drops(d: &Arc<AtomicUsize>) -> usize {
        d.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn socket_id_layout() {
        let id = SocketId::new(7, 3);
        assert_eq!(id.slot(), 7);
        assert_eq!(id.version(), 3);
        assert_eq!(id.as_u64(), (3 << 32) | 7);
        assert_eq!(SocketId::from_u64(id.as_u64()), id);
        assert_eq!(format!("{id:?}"), "SocketId(7@v3)");
    }

    #[test]
    fn socket_id_for_each_live_skips_failed() {
        let d = Arc::new(AtomicUsize::new(0));
        let map = SocketMap::new();
        let a = map.insert(tracked(1, &d)).unwrap();
        let b = map.insert(tracked(2, &d)).unwrap();
        let c = map.insert(tracked(3, &d)).unwrap();
        map.set_failed(b).unwrap();
        let mut seen = Vec::new();
        map.for_each_live(|h| seen.push((h.id(), h.tag)));
        assert_eq!(seen, vec![(a, 1), (c, 3)]);
        assert_eq!(drops(&d), 1);
    }

    #[test]
    fn socket_id_address_until_failed() {
        let d = Arc::new(AtomicUsize::new(0));
        let map = SocketMap::new();
        let id = map.insert(tracked(1, &d)).unwrap();
        {
            let r = map.address(id).expect("live id addresses");
            assert_eq!(r.tag, 1);
            assert_eq!(r.id(), id);
            assert!(!r.is_failed());
        }
        assert_eq!(
            drops(&d),
            0,
            "the map's own reference keeps the value alive"
        );
        map.set_failed(id).unwrap();
        assert!(map.address(id).is_none());
        assert_eq!(drops(&d), 1);
        assert_eq!(map.set_failed(id), Err(AlreadyFailed(id)));
    }

    #[test]
    fn socket_id_handle_outlives_set_failed() {
        let d = Arc::new(AtomicUsize::new(0));
        let map = SocketMap::new();
        let id = map.insert(tracked(5, &d)).unwrap();
        let r = map.address(id).unwrap();
        let r2 = r.clone();
        r.set_failed().unwrap();
        assert!(r.is_failed());
        assert!(map.address(id).is_none(), "failed ids are unreachable");
        assert_eq!(r2.tag, 5, "existing handles still see the value");
        drop(r);
        assert_eq!(drops(&d), 0);
        // The slot is not recycled while a handle lives: a new insert takes a fresh slot.
        let other = map.insert(tracked(6, &d)).unwrap();
        assert_ne!(other.slot(), id.slot());
        drop(r2);
        assert_eq!(drops(&d), 1);
        drop(map);
        assert_eq!(drops(&d), 2, "dropping the map drops live values");
    }

    #[test]
    fn socket_id_recycled_slot_has_new_version() {
        let d = Arc::new(AtomicUsize::new(0));
        let map = SocketMap::new();
        let old = map.insert(tracked(1, &d)).unwrap();
        map.set_failed(old).unwrap();
        let new = map.insert(tracked(2, &d)).unwrap();
        assert_eq!(new.slot(), old.slot(), "the free list reuses the slot");
        assert_ne!(new.version(), old.version());
        assert!(
            map.address(old).is_none(),
            "a stale id never reaches the new value"
        );
        assert_eq!(map.address(new).unwrap().tag, 2);
        assert!(map.set_failed(old).is_err());
        assert!(
            map.address(new).is_some(),
            "failing a stale id leaves the new one alone"
        );
    }

    #[test]
    fn socket_id_invalid_and_unissued_ids() {
        let map: SocketMap<u32> = SocketMap::new();
        assert!(map.address(SocketId::INVALID).is_none());
        assert!(map.address(SocketId::new(0, 0)).is_none(), "no chunk yet");
        let id = map.insert(9).unwrap();
        assert!(
            map.address(SocketId::new(id.slot() + 1, 0)).is_none(),
            "unissued slot"
        );
        assert!(map
            .address(SocketId::new(id.slot(), id.version() + 1))
            .is_none());
        assert!(map.set_failed(SocketId::INVALID).is_err());
    }

    #[test]
    fn socket_id_grows_in_chunks_and_reports_full() {
        let map = SocketMap::with_max_chunks(2);
        let ids: Vec<_> = (0..map.capacity() as u64)
            .map(|i| map.insert(i).unwrap())
            .collect();
        let err = map.insert(u64::MAX).unwrap_err();
        assert_eq!(err.value, u64::MAX);
        assert!(err.to_string().contains("full"));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*map.address(*id).unwrap(), i as u64, "values did not move");
        }
        map.set_failed(ids[3]).unwrap();
        assert_eq!(map.insert(77).unwrap().slot(), ids[3].slot());
    }

    #[test]
    fn socket_id_threads_share_handles() {
        let d = Arc::new(AtomicUsize::new(0));
        let map = SocketMap::new();
        let id = map.insert(tracked(3, &d)).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if let Some(r) = map.address(id) {
                            assert_eq!(r.tag, 3);
                        }
                    }
                });
            }
            s.spawn(|| map.set_failed(id));
        });
        assert!(map.address(id).is_none());
        assert_eq!(drops(&d), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{thread, Arc};

    /// A value whose drop marks it dead, so a use-after-drop is caught by the assertions.
    struct Tagged {
        tag: u64,
    }

    impl Drop for Tagged {
        fn drop(&mut self) {
            self.tag = u64::MAX;
        }
    }

    /// `address` racing `set_failed`: either the reader gets a handle to the live value (and it
    /// stays valid until dropped) or it gets nothing; afterwards the slot is recycled exactly
    /// once and the stale id never reaches the next value.
    #[test]
    fn loom_address_vs_set_failed() {
        loom::model(|| {
            let map = Arc::new(SocketMap::with_max_chunks(2));
            let id = map.insert(Tagged { tag: 1 }).unwrap();
            let m = map.clone();
            let reader = thread::spawn(move || match m.address(id) {
                Some(r) => {
                    assert_eq!(r.tag, 1);
                    true
                }
                None => false,
            });
            map.set_failed(id).unwrap();
            reader.join().unwrap();
            assert!(map.address(id).is_none());
            let next = map.insert(Tagged { tag: 2 }).unwrap();
            assert_eq!(
                next.slot(),
                id.slot(),
                "slot recycled once all handles dropped"
            );
            assert!(map.address(id).is_none());
            assert_eq!(map.address(next).unwrap().tag, 2);
        });
    }

    /// A stale reader racing the recycle-and-reinsert of its slot: the last handle is dropped on
    /// one thread (recycling the slot), a new value is inserted, and a reader with the old id
    /// must never see the new value.
    #[test]
    fn loom_stale_address_vs_recycle() {
        loom::model(|| {
            let map = Arc::new(SocketMap::with_max_chunks(2));
            let old = map.insert(Tagged { tag: 1 }).unwrap();
            let m1 = map.clone();
            let recycler = thread::spawn(move || {
                m1.set_failed(old).unwrap();
                let new = m1.insert(Tagged { tag: 2 }).unwrap();
                assert_eq!(m1.address(new).unwrap().tag, 2);
            });
            let m2 = map.clone();
            let stale = thread::spawn(move || {
                if let Some(r) = m2.address(old) {
                    assert_eq!(r.tag, 1, "a stale id reached another generation");
                }
            });
            recycler.join().unwrap();
            stale.join().unwrap();
            assert!(map.address(old).is_none());
        });
    }

    /// Two handles released on two threads after `set_failed`: exactly one of them drops the
    /// value and recycles the slot; concurrent inserts grow the table safely.
    #[test]
    fn loom_last_release_recycles_once() {
        loom::model(|| {
            let map = Arc::new(SocketMap::with_max_chunks(2));
            let id = map.insert(Tagged { tag: 7 }).unwrap();
            let a = map.clone();
            let t1 = thread::spawn(move || {
                if let Some(r) = a.address(id) {
                    assert_eq!(r.tag, 7);
                }
                a.insert(Tagged { tag: 8 }).unwrap()
            });
            let b = map.clone();
            let t2 = thread::spawn(move || {
                let _ = b.set_failed(id);
            });
            let other = t1.join().unwrap();
            t2.join().unwrap();
            assert!(map.address(id).is_none());
            assert_eq!(map.address(other).unwrap().tag, 8);
            let again = map.insert(Tagged { tag: 9 }).unwrap();
            assert_ne!(again, other);
            assert_eq!(map.address(again).unwrap().tag, 9);
        });
    }
}
