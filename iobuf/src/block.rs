//! Blocks: shared, ref-counted, fixed-size byte regions that IOBufs point into.
//!
//! A block is a header ([`BlockInner`]) plus a data region of `cap` bytes. It is either *pooled*
//! (data from the process-wide [`crate::BlockAllocator`], header and data recycled together
//! through the per-thread cache) or *user* memory (a caller's buffer with a deleter).
//!
//! # Invariants
//!
//! 1. **Reference count.** `refs` counts the [`Block`] handles alive (every [`BlockRef`] holds one).
//!    A handle may be cloned only through an existing handle, so when a thread sees `refs == 1`
//!    while holding a handle, no other handle exists and none can appear: that thread has
//!    exclusive access to the header. Dropping the last handle releases the block exactly once
//!    (pooled: back to the cache; user: the deleter runs, then the header is freed).
//! 2. **Written prefix and reservations.** `size` splits the data region: bytes `[0, size)` are
//!    written or reserved by a writer, bytes `[size, cap)` belong to nobody. A writer that wants to
//!    write `[from, from + n)` first moves `size` from `from` to `from + n` (a compare-exchange, or a
//!    plain store when it holds the only handle); only the winner may write that range. So no two
//!    writers ever touch the same byte.
//! 3. **Immutability of referenced bytes.** A [`BlockRef`] only covers bytes its creator finished
//!    writing before creating it; nobody writes inside `[0, size)` except the reserving writer,
//!    inside its own reservation, before it hands out a reference. Readers therefore only ever see
//!    immutable bytes, and the happens-before edge from writer to reader is the one that moved the
//!    IOBuf between threads (channel, lock, join...).
//! 4. Data is only ever accessed through raw pointers derived from `data`, never through a
//!    `&mut [u8]` covering the whole region, so shared slices of written ranges and writes into
//!    reserved ranges of the same block do not alias.

use crate::allocator::{block_allocator, BlockMemory};
use crate::block_cache;
use crate::loom::atomic::{fence, AtomicUsize, Ordering};
use std::ptr::NonNull;

/// The deleter of a user block: runs once, when the last reference drops.
pub(crate) type Deleter = Box<dyn FnOnce() + Send + 'static>;

/// Where a block's memory comes from.
enum Kind {
    /// From the process-wide block allocator; recycled through the per-thread cache.
    Pooled,
    /// A caller's buffer; the deleter runs exactly once when the block is released.
    User(Deleter),
}

/// Header of a block. Only reached through [`Block`].
pub(crate) struct BlockInner {
    /// Number of live [`Block`] handles (invariant 1).
    refs: AtomicUsize,
    /// End of the written-or-reserved prefix of `data` (invariant 2).
    size: AtomicUsize,
    /// Capacity of the data region in bytes (<= `u32::MAX` for pooled blocks).
    cap: usize,
    /// Start of the data region.
    data: NonNull<u8>,
    /// Opaque value carried for RDMA (memory key) and reported per piece.
    meta: u64,
    /// Origin of the memory.
    kind: Kind,
}

/// A strong, counted handle to one block.
pub(crate) struct Block {
    /// The header; valid while this handle lives (invariant 1).
    ptr: NonNull<BlockInner>,
}

// SAFETY: the header is shared only through atomics (`refs`, `size`) and immutable fields; the
// data region is written only inside reservations (invariant 2) and read only inside written
// ranges (invariant 3); the deleter is `Send` and runs on whichever thread releases the block,
// with exclusive access (invariant 1).
unsafe impl Send for Block {}
// SAFETY: see `Send`; `&Block` only allows reading immutable fields, cloning (atomic increment)
// and atomic reservations.
unsafe impl Sync for Block {}

/// Largest reference count before we abort, like `Arc` (an overflow would free live memory).
const MAX_REFS: usize = isize::MAX as usize;

impl Block {
    /// A fresh pooled block straight from the allocator: `refs == 1`, `size == 0`.
    pub(crate) fn allocate() -> Block {
        let allocator = block_allocator();
        let cap = allocator.block_size();
        let Some(mem) = allocator.allocate() else {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(cap, 1).expect("block layout"),
            );
        };
        Block::from_parts(mem.ptr, cap, mem.meta, Kind::Pooled, 0)
    }

    /// A user block over `len` bytes at `data`, fully written (`size == cap == len`), whose
    /// `deleter` runs when the last reference drops.
    ///
    /// # Safety
    ///
    /// `data` must be valid for reads of `len` bytes and not written by anyone until `deleter`
    /// runs.
    pub(crate) unsafe fn user(data: NonNull<u8>, len: usize, meta: u64, deleter: Deleter) -> Block {
        Block::from_parts(data, len, meta, Kind::User(deleter), len)
    }

    /// Allocates a header for `cap` bytes at `data`.
    fn from_parts(data: NonNull<u8>, cap: usize, meta: u64, kind: Kind, size: usize) -> Block {
        let inner = Box::new(BlockInner {
            refs: AtomicUsize::new(1),
            size: AtomicUsize::new(size),
            cap,
            data,
            meta,
            kind,
        });
        Block {
            ptr: NonNull::from(Box::leak(inner)),
        }
    }

    #[inline]
    fn inner(&self) -> &BlockInner {
        // SAFETY: the header lives while any handle does (invariant 1) and we are one.
        unsafe { self.ptr.as_ref() }
    }

    /// Start of the data region. Only read written ranges and write reserved ranges through it.
    #[inline]
    pub(crate) fn data(&self) -> *mut u8 {
        self.inner().data.as_ptr()
    }

    /// Capacity of the data region in bytes.
    #[inline]
    pub(crate) fn cap(&self) -> usize {
        self.inner().cap
    }

    /// The block's metadata (allocator-provided or user-provided).
    #[inline]
    pub(crate) fn meta(&self) -> u64 {
        self.inner().meta
    }

    /// Whether this is user memory (appended with a deleter).
    #[inline]
    pub(crate) fn is_user(&self) -> bool {
        matches!(self.inner().kind, Kind::User(_))
    }

    /// Address of the header: identifies the block.
    #[inline]
    pub(crate) fn id(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether `self` and `other` are handles to the same block.
    #[inline]
    pub(crate) fn same(&self, other: &Block) -> bool {
        self.ptr == other.ptr
    }

    /// Whether this handle is the only one (invariant 1: then it stays the only one until cloned).
    #[inline]
    pub(crate) fn is_unique(&self) -> bool {
        self.inner().refs.load(Ordering::Acquire) == 1
    }

    /// Current end of the written-or-reserved prefix.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.inner().size.load(Ordering::Acquire)
    }

    /// Tries to reserve `[from, from + n)` for writing (invariant 2). Succeeds only if `size` is
    /// exactly `from` and the range fits; on success the caller may write that range.
    #[inline]
    pub(crate) fn try_reserve(&self, from: usize, n: usize) -> bool {
        let inner = self.inner();
        let Some(to) = from.checked_add(n) else {
            return false;
        };
        if to > inner.cap {
            return false;
        }
        if self.is_unique() {
            // Only handle: nobody else can reserve concurrently (invariant 1).
            if inner.size.load(Ordering::Relaxed) != from {
                return false;
            }
            inner.size.store(to, Ordering::Relaxed);
            true
        } else {
            inner
                .size
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// Gives back the end of a reservation: `size` becomes `to`.
    ///
    /// # Safety
    ///
    /// The caller holds the reservation that ends at the current `size` and starts at or before
    /// `to` (so nobody else can move `size` meanwhile), and has handed out no reference to bytes
    /// at or after `to`.
    #[inline]
    pub(crate) unsafe fn shrink_reservation(&self, to: usize) {
        self.inner().size.store(to, Ordering::Release);
    }

    /// Shared view of `[off, off + len)`.
    ///
    /// # Safety
    ///
    /// The range must be written (covered by a reference's creator, invariant 3) and lie in
    /// `[0, cap)`.
    #[inline]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: the caller guarantees the range is inside the region and immutable for the
        // lifetime of this handle borrow (invariant 3).
        unsafe { std::slice::from_raw_parts(self.data().add(off), len) }
    }

    /// Resets a pooled block that just lost its last reference so it can be handed out again:
    /// `refs = 1`, `size = 0`. Returns the block as a fresh handle.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the header (the count reached zero).
    unsafe fn revive(ptr: NonNull<BlockInner>) -> Block {
        // SAFETY: exclusive access per the caller's contract.
        let inner = unsafe { ptr.as_ref() };
        inner.size.store(0, Ordering::Relaxed);
        inner.refs.store(1, Ordering::Relaxed);
        Block { ptr }
    }

    /// Frees a pooled block for good: data back to the allocator, header freed. Consumes the
    /// handle without running `Drop`.
    pub(crate) fn destroy(self) {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: we consumed the only handle of a block that is not referenced elsewhere (the
        // cache only holds blocks with refs == 1, and `release` hands us exclusive ones), so we
        // own the header allocated by `Box::leak` in `from_parts`.
        let inner = unsafe { Box::from_raw(ptr.as_ptr()) };
        match inner.kind {
            Kind::Pooled => {
                let mem = BlockMemory {
                    ptr: inner.data,
                    meta: inner.meta,
                };
                // SAFETY: pooled data came from the process-wide allocator, which never changes
                // once fixed, and is not referenced any more.
                unsafe { block_allocator().deallocate(mem) }
            }
            Kind::User(deleter) => deleter(),
        }
    }

    /// Gives up this handle like `drop`, except that when it was the last handle of a pooled
    /// block the block is returned reset (`refs == 1`, `size == 0`) instead of going back to the
    /// cache, so the caller can return many blocks to the cache in one access. A user block whose
    /// last handle this was is released (its deleter runs) and `None` returned.
    #[inline]
    pub(crate) fn into_free(self) -> Option<Block> {
        let ptr = self.ptr;
        let refs = &self.inner().refs;
        // As in `drop`: the only handle needs no read-modify-write (invariant 1).
        let last = refs.load(Ordering::Acquire) == 1 || {
            let last = refs.fetch_sub(1, Ordering::Release) == 1;
            if last {
                fence(Ordering::Acquire);
            }
            last
        };
        // The count is settled above: this handle must not run `Drop` any more.
        std::mem::forget(self);
        if !last {
            return None;
        }
        // SAFETY: this was the last handle, so we have exclusive access to the live header.
        let pooled = matches!(unsafe { &ptr.as_ref().kind }, Kind::Pooled);
        if pooled {
            // SAFETY: exclusive access (last handle).
            Some(unsafe { Block::revive(ptr) })
        } else {
            Block::release(ptr);
            None
        }
    }

    /// Called when the count reached zero: recycle (pooled) or run the deleter (user).
    #[cold]
    fn release(ptr: NonNull<BlockInner>) {
        // SAFETY: the count reached zero, so we have exclusive access to the live header.
        let pooled = matches!(unsafe { &ptr.as_ref().kind }, Kind::Pooled);
        // SAFETY: exclusive access (count reached zero).
        let block = unsafe { Block::revive(ptr) };
        if pooled {
            block_cache::recycle(block);
        } else {
            block.destroy();
        }
    }
}

impl Clone for Block {
    #[inline]
    fn clone(&self) -> Block {
        // Relaxed is enough for an increment: the new handle is created from an existing one, so
        // the count cannot reach zero meanwhile (same argument as `Arc`).
        let old = self.inner().refs.fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFS {
            std::process::abort();
        }
        Block { ptr: self.ptr }
    }
}

impl Drop for Block {
    #[inline]
    fn drop(&mut self) {
        let refs = &self.inner().refs;
        // Fast path: the only handle needs no read-modify-write (invariant 1). Acquire pairs with
        // the Release decrements of handles dropped before, so their accesses happen-before ours.
        if refs.load(Ordering::Acquire) == 1 {
            Block::release(self.ptr);
            return;
        }
        if refs.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            Block::release(self.ptr);
        }
    }
}

/// A reference to the written bytes `[offset, offset + len)` of a block: one piece of an IOBuf.
///
/// Invariants: `len > 0` inside an IOBuf chain; `offset + len <= block.cap()`; the range is
/// written (block invariant 3).
pub(crate) struct BlockRef {
    /// The block, kept alive by this reference.
    pub(crate) block: Block,
    /// First byte of the piece inside the block.
    pub(crate) offset: u32,
    /// Length of the piece.
    pub(crate) len: u32,
}

impl BlockRef {
    /// The bytes of this piece.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: BlockRef invariant: the range is written and inside the block.
        unsafe { self.block.slice(self.offset as usize, self.len as usize) }
    }

    /// One past the last byte of the piece, as an offset in the block.
    #[inline]
    pub(crate) fn end(&self) -> usize {
        self.offset as usize + self.len as usize
    }
}

impl Clone for BlockRef {
    #[inline]
    fn clone(&self) -> Self {
        BlockRef {
            block: self.block.clone(),
            offset: self.offset,
            len: self.len,
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::sync::Arc;

    /// A user block whose deleter counts its runs.
    fn counted_block(runs: &Arc<StdAtomicUsize>) -> Block {
        let data: &'static [u8] = b"0123456789";
        let r = runs.clone();
        // SAFETY: static data, never written.
        unsafe {
            Block::user(
                NonNull::from(data).cast(),
                data.len(),
                0,
                Box::new(move || {
                    r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }),
            )
        }
    }

    #[test]
    fn loom_last_reference_releases_exactly_once() {
        loom::model(|| {
            let runs = Arc::new(StdAtomicUsize::new(0));
            let b = counted_block(&runs);
            let c = b.clone();
            let d = b.clone();
            let t1 = loom::thread::spawn(move || drop(c));
            let t2 = loom::thread::spawn(move || drop(d));
            drop(b);
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_clone_racing_a_drop_keeps_the_count() {
        // A clone on one thread races the drop of another handle on another thread (whose
        // last-handle check may see either count): the block is released exactly once, after
        // every handle is gone.
        loom::model(|| {
            let runs = Arc::new(StdAtomicUsize::new(0));
            let a = counted_block(&runs);
            let b = a.clone();
            let t = loom::thread::spawn(move || drop(b));
            let c = a.clone();
            drop(a);
            assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
            t.join().unwrap();
            assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
            drop(c);
            assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn loom_competing_reservations_have_one_winner() {
        loom::model(|| {
            let b = Block::allocate();
            let c = b.clone();
            let t = loom::thread::spawn(move || {
                let won = c.try_reserve(0, 8);
                drop(c);
                won
            });
            // Races with the other thread's reservation and with its drop (which can make this
            // handle unique midway, switching to the plain-store path).
            let mine = b.try_reserve(0, 8);
            let theirs = t.join().unwrap();
            assert!(mine ^ theirs, "exactly one writer owns [0, 8)");
            assert_eq!(b.size(), 8);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn user_block_deleter_runs_once_after_last_clone() {
        let runs = Arc::new(AtomicUsize::new(0));
        let data: &'static [u8] = b"hello";
        let r = runs.clone();
        // SAFETY: static data is valid forever and never written.
        let b = unsafe {
            Block::user(
                NonNull::from(data).cast(),
                data.len(),
                7,
                Box::new(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                }),
            )
        };
        assert!(b.is_user());
        assert_eq!(b.meta(), 7);
        let c = b.clone();
        let t = std::thread::spawn(move || drop(c));
        drop(b);
        t.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn reservations_are_exclusive() {
        let b = Block::allocate();
        assert!(b.is_unique());
        assert!(b.try_reserve(0, 10));
        assert!(!b.try_reserve(0, 10));
        let c = b.clone();
        assert!(!c.is_unique());
        assert!(c.try_reserve(10, 5));
        assert!(!b.try_reserve(10, 5));
        assert!(!b.try_reserve(15, b.cap()));
        assert!(!b.try_reserve(usize::MAX, 2));
        assert_eq!(b.size(), 15);
    }
}
