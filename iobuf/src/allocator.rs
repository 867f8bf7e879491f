//! The process-wide block allocator hook.
//!
//! Every pooled block's memory comes from one [`BlockAllocator`], fixed for the life of the
//! process. RDMA installs an allocator that serves blocks from registered memory (and puts the
//! memory key in [`BlockMemory::meta`]); everyone else gets [`HeapAllocator`] with 8 KiB blocks.
//!
//! Invariants:
//! - The allocator is chosen exactly once, by a [`OnceLock`]: either by [`set_block_allocator`]
//!   or, on the first block allocation, by installing the default. Afterwards it never changes,
//!   so a block allocated by it can always be handed back to the same allocator, from any thread.
//! - Blocks are cached per thread (see `block_cache`); the allocator itself only sees cache
//!   misses and overflow, so it may be slower (e.g. take a lock).

use crate::error::AllocatorError;
use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

/// brpc's default block size: 8 KiB.
pub const DEFAULT_BLOCK_SIZE: usize = 8192;
/// Smallest block size an allocator may report. Smaller blocks make chains too long to be useful.
pub const MIN_BLOCK_SIZE: usize = 64;
/// Largest block size an allocator may report: offsets inside a block are stored as `u32`.
pub const MAX_BLOCK_SIZE: usize = 1 << 31;

/// One block of memory handed out by a [`BlockAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMemory {
    /// Start of `block_size()` writable bytes, valid until given back with `deallocate`.
    pub ptr: NonNull<u8>,
    /// Opaque per-block value reported by [`crate::Piece::meta`] (e.g. an RDMA memory key).
    pub meta: u64,
}

/// Source of block memory for every IOBuf in the process.
///
/// # Safety
///
/// Implementors promise that `allocate` returns memory valid for reads and writes of
/// `block_size()` bytes, not aliased by anything else, until that exact `BlockMemory` is passed to
/// `deallocate`. `block_size()` must always return the same value. `deallocate` may be called from
/// any thread.
pub unsafe trait BlockAllocator: Send + Sync + 'static {
    /// Size in bytes of every block this allocator returns (constant).
    fn block_size(&self) -> usize;

    /// Returns a fresh block, or `None` when memory is exhausted (IOBuf then reports the failure
    /// through `std::alloc::handle_alloc_error`, like a `Vec` would).
    fn allocate(&self) -> Option<BlockMemory>;

    /// Takes back a block returned by `allocate`.
    ///
    /// # Safety
    ///
    /// `mem` came from `self.allocate()` and is not used afterwards.
    unsafe fn deallocate(&self, mem: BlockMemory);
}

/// Alignment of [`HeapAllocator`] slabs (and so of every block of the default size): a page.
///
/// The kernel copies socket data between user memory and page-sized buffers; in a socketpair test
/// separately allocated page-aligned 8 KiB blocks were copied slightly faster than 64-byte-aligned
/// ones.
const SLAB_ALIGN: usize = 4096;

/// Target size of one [`HeapAllocator`] slab: 32 blocks of 8 KiB. Blocks carved from one slab
/// are adjacent in memory, so a `readv` / `writev` over blocks handed out in address order passes
/// one long iovec instead of one per block: the kernel copies a few long runs instead of
/// restarting its copy loop at every 8 KiB iovec boundary. Blocks of this size or more get a slab
/// each.
const SLAB_BYTES: usize = 256 * 1024;

/// Empty slabs a [`HeapAllocator`] keeps instead of freeing, in bytes (4 slabs of 256 KiB; none
/// when a slab is larger). Freeing the last slab as soon as its blocks come back (a thread that
/// exits and drops its block cache, a burst that ends) and allocating a new one for the next
/// burst costs a fresh mapping and a page fault per 4 KiB page touched again; a few kept slabs
/// absorb that churn.
const KEEP_EMPTY_SLAB_BYTES: usize = 1 << 20;

/// The default allocator: blocks from the global heap, carved from page-aligned slabs of
/// adjacent blocks (256 KiB, or one block when blocks are larger).
///
/// A slab is freed when its last block comes back, except that up to 1 MiB of empty slabs is
/// kept for reuse. Returned blocks are handed out again before a new slab is carved. Blocks normally live in
/// the per-thread caches, so the allocator (a mutex) only sees cache misses and overflow.
pub struct HeapAllocator {
    /// Layout of one block (size = block size).
    block: Layout,
    /// Layout of one slab (`per_slab` blocks, page-aligned).
    slab: Layout,
    /// Blocks per slab (>= 1).
    per_slab: usize,
    /// Empty slabs kept instead of freed (`KEEP_EMPTY_SLAB_BYTES / slab size`).
    keep_empty: usize,
    /// Slab bookkeeping.
    slabs: Mutex<Slabs>,
}

/// Bookkeeping of a [`HeapAllocator`]'s slabs.
///
/// Invariants: every slab in `live` was allocated with the allocator's slab layout; `in_use`
/// counts its blocks handed out and not returned; `free` holds returned blocks of slabs that
/// still have blocks in use, are being carved or are kept empty, each once; `carving` is `(slab
/// start, next block index)` of the slab new blocks are cut from, which is in `live`; `empty`
/// counts the slabs of `live` with no block in use other than the carving one (at most
/// `keep_empty`).
struct Slabs {
    /// Slab start address -> (slab start, blocks in use).
    live: BTreeMap<usize, (NonNull<u8>, usize)>,
    /// Returned blocks, handed out again first (most recent first).
    free: Vec<NonNull<u8>>,
    /// Slab being carved and its next block index.
    carving: Option<(NonNull<u8>, usize)>,
    /// Kept empty slabs (not carving, no block in use).
    empty: usize,
}

// SAFETY: the raw pointers are addresses of heap memory owned by the allocator, not tied to a
// thread; they are only touched under the mutex.
unsafe impl Send for Slabs {}

impl HeapAllocator {
    /// An allocator of `block_size`-byte heap blocks. The size is validated when installed with
    /// [`set_block_allocator`].
    pub fn new(block_size: usize) -> Self {
        let size = block_size.clamp(1, MAX_BLOCK_SIZE);
        let per_slab = (SLAB_BYTES / size).max(1);
        HeapAllocator {
            // Alignment 1 is valid and size <= 2^31 does not overflow `isize`.
            block: Layout::from_size_align(size, 1).expect("valid block layout"),
            // per_slab * size <= max(SLAB_BYTES, 2^31): no overflow; the alignment is a power of
            // two.
            slab: Layout::from_size_align(per_slab * size, SLAB_ALIGN).expect("valid slab layout"),
            per_slab,
            keep_empty: KEEP_EMPTY_SLAB_BYTES / (per_slab * size),
            slabs: Mutex::new(Slabs {
                live: BTreeMap::new(),
                free: Vec::new(),
                carving: None,
                empty: 0,
            }),
        }
    }

    /// The bookkeeping, even if a thread panicked while holding it (every update below is
    /// complete before anything can panic).
    fn slabs(&self) -> std::sync::MutexGuard<'_, Slabs> {
        self.slabs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for HeapAllocator {
    fn default() -> Self {
        HeapAllocator::new(DEFAULT_BLOCK_SIZE)
    }
}

impl Clone for HeapAllocator {
    /// A new allocator with the same block size (slabs are not shared).
    fn clone(&self) -> Self {
        HeapAllocator::new(self.block.size())
    }
}

impl std::fmt::Debug for HeapAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapAllocator")
            .field("block_size", &self.block.size())
            .field("blocks_per_slab", &self.per_slab)
            .finish()
    }
}

impl Drop for HeapAllocator {
    /// Frees the slabs with no block in use. Slabs with blocks still in use are left alone (their
    /// blocks must stay valid); with the process-wide allocator this never happens, as it is
    /// never dropped.
    fn drop(&mut self) {
        let slabs = self.slabs.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, (base, in_use)) in std::mem::take(&mut slabs.live) {
            if in_use == 0 {
                // SAFETY: allocated with `self.slab` and no block of it is in use.
                unsafe { alloc::dealloc(base.as_ptr(), self.slab) };
            }
        }
    }
}

// SAFETY: every block is a distinct `block_size()` range inside a live slab allocated with
// `self.slab` (block `i` at `i * block_size`, `i < per_slab`), handed out once until returned;
// a slab is freed only when none of its blocks is in use.
unsafe impl BlockAllocator for HeapAllocator {
    fn block_size(&self) -> usize {
        self.block.size()
    }

    fn allocate(&self) -> Option<BlockMemory> {
        let mut s = self.slabs();
        let (ptr, reused) = match s.free.pop() {
            Some(p) => (p, true),
            None => {
                let (base, next) = match s.carving {
                    Some(c) => c,
                    None => {
                        // SAFETY: the slab layout has a non-zero size.
                        let base = NonNull::new(unsafe { alloc::alloc(self.slab) })?;
                        s.live.insert(base.as_ptr() as usize, (base, 0));
                        (base, 0)
                    }
                };
                s.carving = (next + 1 < self.per_slab).then_some((base, next + 1));
                // SAFETY: next < per_slab, so the block lies inside the slab.
                (unsafe { base.add(next * self.block.size()) }, false)
            }
        };
        let carving = s.carving.map(|(b, _)| b);
        let entry = s
            .live
            .range_mut(..=ptr.as_ptr() as usize)
            .next_back()
            .map(|(_, e)| e)?;
        // A returned block of an empty slab that is not being carved: a kept slab is in use again.
        let was_kept = reused && entry.1 == 0 && carving != Some(entry.0);
        entry.1 += 1;
        if was_kept {
            s.empty -= 1;
        }
        Some(BlockMemory { ptr, meta: 0 })
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        let mut s = self.slabs();
        let addr = mem.ptr.as_ptr() as usize;
        let Some((&start, entry)) = s.live.range_mut(..=addr).next_back() else {
            return;
        };
        entry.1 -= 1;
        let (base, in_use) = *entry;
        let carving = s.carving.is_some_and(|(b, _)| b == base);
        if in_use > 0 || carving {
            s.free.push(mem.ptr);
            return;
        }
        if s.empty < self.keep_empty {
            // Keep the empty slab (its pages stay mapped) for the next burst.
            s.empty += 1;
            s.free.push(mem.ptr);
            return;
        }
        // Last block of a finished slab: forget its other returned blocks and free it.
        let end = start + self.slab.size();
        s.free
            .retain(|p| !(start..end).contains(&(p.as_ptr() as usize)));
        s.live.remove(&start);
        drop(s);
        // SAFETY: allocated with `self.slab`; none of its blocks is in use or listed as free.
        unsafe { alloc::dealloc(base.as_ptr(), self.slab) }
    }
}

/// The allocator every pooled block comes from; fixed on first use.
static ALLOCATOR: OnceLock<Box<dyn BlockAllocator>> = OnceLock::new();

/// Installs the process-wide block allocator.
///
/// Must be called before the first block is allocated (any IOBuf append, fd read, ...), and at
/// most once. Returns [`AllocatorError::AlreadyInitialized`] otherwise (the allocator in place is
/// kept), or [`AllocatorError::InvalidBlockSize`] if `block_size()` is outside
/// [`MIN_BLOCK_SIZE`]`..=`[`MAX_BLOCK_SIZE`] (nothing is installed then).
pub fn set_block_allocator(allocator: Box<dyn BlockAllocator>) -> Result<(), AllocatorError> {
    let size = allocator.block_size();
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) {
        return Err(AllocatorError::InvalidBlockSize {
            size,
            min: MIN_BLOCK_SIZE,
            max: MAX_BLOCK_SIZE,
        });
    }
    ALLOCATOR
        .set(allocator)
        .map_err(|_| AllocatorError::AlreadyInitialized)
}

/// The process-wide allocator, installing the default [`HeapAllocator`] on first use.
#[inline]
pub fn block_allocator() -> &'static dyn BlockAllocator {
    ALLOCATOR
        .get_or_init(|| Box::new(HeapAllocator::default()))
        .as_ref()
}

/// Block size of the process-wide allocator (fixes the allocator if not yet fixed).
#[inline]
pub fn block_size() -> usize {
    block_allocator().block_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_blocks_are_carved_adjacent_reused_and_slabs_freed() {
        let a = HeapAllocator::new(4096);
        assert_eq!(a.per_slab, SLAB_BYTES / 4096);
        let n = a.per_slab + 3;
        let blocks: Vec<BlockMemory> = (0..n).map(|_| a.allocate().expect("memory")).collect();
        for (i, b) in blocks.iter().enumerate() {
            // SAFETY: each block is valid for 4096 bytes of writes.
            unsafe {
                b.ptr.as_ptr().write(i as u8);
                b.ptr.as_ptr().add(4095).write(i as u8);
            }
            assert_eq!(b.meta, 0);
        }
        // One slab: consecutive blocks are adjacent; the first is page-aligned.
        assert_eq!(blocks[0].ptr.as_ptr() as usize % SLAB_ALIGN, 0);
        for w in blocks[..a.per_slab].windows(2) {
            assert_eq!(
                w[0].ptr.as_ptr() as usize + 4096,
                w[1].ptr.as_ptr() as usize
            );
        }
        for (i, b) in blocks.iter().enumerate() {
            // SAFETY: written above, nobody else wrote these blocks.
            assert_eq!(unsafe { b.ptr.as_ptr().add(4095).read() }, i as u8);
        }
        // A block returned while its slab is in use is handed out again first.
        let (first, rest) = blocks.split_first().expect("blocks");
        // SAFETY: came from `a.allocate()`, not used afterwards.
        unsafe { a.deallocate(*first) };
        let again = a.allocate().expect("memory");
        assert_eq!(again.ptr, first.ptr);
        // Returning everything keeps the first (fully carved) slab empty for reuse; the
        // second is still being carved.
        for b in std::iter::once(&again).chain(rest) {
            // SAFETY: came from `a.allocate()`, not used afterwards.
            unsafe { a.deallocate(*b) };
        }
        assert_eq!(a.slabs().live.len(), 2, "the empty slab is kept");
        let s = a.slabs();
        assert_eq!((s.free.len(), s.empty), (n, 1));
        drop(s);
        // Its blocks are handed out again before anything new is carved.
        let reused: Vec<BlockMemory> = (0..n).map(|_| a.allocate().expect("memory")).collect();
        let s = a.slabs();
        assert_eq!((s.live.len(), s.empty), (2, 0));
        drop(s);
        for b in &reused {
            // SAFETY: came from `a.allocate()`, not used afterwards.
            unsafe { a.deallocate(*b) };
        }
        // At most `keep_empty` empty slabs are kept; the others are freed.
        let many = a.per_slab * (a.keep_empty + 3);
        let blocks: Vec<BlockMemory> = (0..many).map(|_| a.allocate().expect("memory")).collect();
        for b in &blocks {
            // SAFETY: came from `a.allocate()`, not used afterwards.
            unsafe { a.deallocate(*b) };
        }
        let s = a.slabs();
        assert_eq!(s.empty, a.keep_empty);
        assert!(
            s.live.len() <= a.keep_empty + 1,
            "kept slabs + the one being carved"
        );
        let in_use: usize = s.live.values().map(|e| e.1).sum();
        assert_eq!(in_use, 0);
        drop(s);
        let big = HeapAllocator::new(KEEP_EMPTY_SLAB_BYTES * 2);
        assert_eq!(
            (big.per_slab, big.keep_empty),
            (1, 0),
            "big slabs are never kept"
        );
        let b = big.allocate().expect("memory");
        // SAFETY: came from `big.allocate()`, not used afterwards.
        unsafe { big.deallocate(b) };
        assert!(big.slabs().live.is_empty());
        assert!(format!("{:?}", a.clone()).contains("block_size: 4096"));
    }
}
