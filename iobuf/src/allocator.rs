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
use std::ptr::NonNull;
use std::sync::OnceLock;

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

/// The default allocator: blocks from the global heap, 64-byte aligned.
#[derive(Debug, Clone, Copy)]
pub struct HeapAllocator {
    /// Layout of every block (size = block size, align 64).
    layout: Layout,
}

impl HeapAllocator {
    /// An allocator of `block_size`-byte heap blocks. The size is validated when installed with
    /// [`set_block_allocator`].
    pub fn new(block_size: usize) -> Self {
        let size = block_size.clamp(1, MAX_BLOCK_SIZE);
        HeapAllocator {
            // align 64 is a power of two and size <= 2^31, so the layout is valid.
            layout: Layout::from_size_align(size, 64).expect("valid block layout"),
        }
    }
}

impl Default for HeapAllocator {
    fn default() -> Self {
        HeapAllocator::new(DEFAULT_BLOCK_SIZE)
    }
}

// SAFETY: blocks come from the global allocator with `self.layout` (size = block_size()), are
// exclusively owned until deallocated, and are freed with the same layout.
unsafe impl BlockAllocator for HeapAllocator {
    fn block_size(&self) -> usize {
        self.layout.size()
    }

    fn allocate(&self) -> Option<BlockMemory> {
        // SAFETY: the layout has a non-zero size (clamped to >= 1).
        let ptr = unsafe { alloc::alloc(self.layout) };
        NonNull::new(ptr).map(|ptr| BlockMemory { ptr, meta: 0 })
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        // SAFETY: the caller guarantees `mem` came from `allocate`, i.e. from `alloc` with
        // `self.layout`.
        unsafe { alloc::dealloc(mem.ptr.as_ptr(), self.layout) }
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
