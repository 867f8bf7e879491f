//! A pool of IOBuf blocks carved out of registered memory (brpc's `rdma/block_pool`), installed
//! as spindle-iobuf's process-wide [`BlockAllocator`]: every IOBuf block is then RDMA-ready, and
//! a piece's [`meta`](spindle_iobuf::Piece::meta) is the lkey of the region holding it, so an
//! IOBuf is posted as a scatter/gather list without copying.
//!
//! # Shape and invariants
//!
//! - Memory comes in regions of `region_bytes` (the first) and `increase_bytes` (each later
//!   one, at most `max_regions` in all: brpc's `rdma_memory_pool_*` flags), page-aligned, each
//!   registered once with local-write access (receives land in pool blocks).
//! - A region is cut into `block_size` blocks; free blocks sit on one locked free list (the
//!   iobuf thread caches absorb most traffic, so the lock sees only misses).
//! - A block is either on the free list or owned by exactly one IOBuf block; regions are never
//!   returned while the pool lives. Dropping a pool with blocks still out leaks its regions
//!   (memory and registration) instead of freeing memory that may still be in use.

use crate::verbs::{Access, MemoryRegion, ProtectionDomain, VerbsError};
use parking_lot::Mutex;
use spindle_iobuf::{BlockAllocator, BlockMemory};
use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of regions (a page: what registration pins anyway).
const REGION_ALIGN: usize = 4096;

/// One registered region.
struct Region {
    mem: NonNull<u8>,
    layout: Layout,
    mr: Box<dyn MemoryRegion>,
}

struct State {
    regions: Vec<Region>,
    free: Vec<(NonNull<u8>, u32)>,
    total_blocks: usize,
}

/// A registered block pool; see the module doc.
pub struct BlockPool {
    pd: Arc<dyn ProtectionDomain>,
    block_size: usize,
    increase_bytes: usize,
    max_regions: usize,
    state: Mutex<State>,
}

// SAFETY: the raw pointers name memory the pool owns; they are only handed out (as blocks) or
// taken back under the `state` lock, and the memory itself is plain bytes usable from any thread.
unsafe impl Send for BlockPool {}
// SAFETY: as above: all mutation goes through the lock.
unsafe impl Sync for BlockPool {}

impl fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("BlockPool")
            .field("block_size", &self.block_size)
            .field("regions", &s.regions.len())
            .field("free", &s.free.len())
            .field("total_blocks", &s.total_blocks)
            .finish()
    }
}

impl BlockPool {
    /// A pool of `block_size`-byte blocks registered with `pd`: a first region of
    /// `initial_bytes`, then regions of `increase_bytes`, at most `max_regions` regions.
    pub fn new(
        pd: Arc<dyn ProtectionDomain>,
        block_size: usize,
        initial_bytes: usize,
        increase_bytes: usize,
        max_regions: usize,
    ) -> Result<BlockPool, VerbsError> {
        let sizes_ok = (spindle_iobuf::MIN_BLOCK_SIZE..=spindle_iobuf::MAX_BLOCK_SIZE)
            .contains(&block_size)
            && initial_bytes >= block_size
            && increase_bytes >= block_size
            && max_regions >= 1;
        if !sizes_ok {
            return Err(VerbsError::InvalidArgument(format!(
                "block pool: block_size={block_size} (must be {}..={}), initial_bytes={initial_bytes} \
                 and increase_bytes={increase_bytes} (each at least one block), \
                 max_regions={max_regions} (at least 1)",
                spindle_iobuf::MIN_BLOCK_SIZE,
                spindle_iobuf::MAX_BLOCK_SIZE
            )));
        }
        let pool = BlockPool {
            pd,
            block_size,
            increase_bytes,
            max_regions,
            state: Mutex::new(State {
                regions: Vec::new(),
                free: Vec::new(),
                total_blocks: 0,
            }),
        };
        pool.grow(&mut pool.state.lock(), initial_bytes)?;
        Ok(pool)
    }

    /// A pool of brpc's default 8 KiB blocks sized by `rdma_memory_pool_initial_size_mb`,
    /// `rdma_memory_pool_increase_size_mb` and `rdma_memory_pool_max_regions`.
    pub fn from_flags(pd: Arc<dyn ProtectionDomain>) -> Result<BlockPool, VerbsError> {
        use crate::flags::*;
        const MB: usize = 1 << 20;
        BlockPool::new(
            pd,
            spindle_iobuf::DEFAULT_BLOCK_SIZE,
            RDMA_MEMORY_POOL_INITIAL_SIZE_MB.get() as usize * MB,
            RDMA_MEMORY_POOL_INCREASE_SIZE_MB.get() as usize * MB,
            RDMA_MEMORY_POOL_MAX_REGIONS.get() as usize,
        )
    }

    /// Adds a region of about `bytes` (rounded down to whole blocks).
    fn grow(&self, s: &mut State, bytes: usize) -> Result<(), VerbsError> {
        if s.regions.len() >= self.max_regions {
            return Err(VerbsError::InvalidState(format!(
                "block pool has its maximum of {} regions (rdma_memory_pool_max_regions)",
                self.max_regions
            )));
        }
        let blocks = bytes / self.block_size;
        let len = blocks * self.block_size;
        let layout = Layout::from_size_align(len, REGION_ALIGN)
            .map_err(|e| VerbsError::InvalidArgument(format!("region of {len} bytes: {e}")))?;
        // SAFETY: `len` >= block_size >= MIN_BLOCK_SIZE > 0.
        let mem = NonNull::new(unsafe { alloc::alloc(layout) })
            .ok_or_else(|| VerbsError::InvalidState(format!("out of memory for {len} bytes")))?;
        // SAFETY: `mem` is `len` bytes we own; it stays allocated while the region is registered
        // (deregistration happens before deallocation, in Drop).
        let mr = match unsafe { self.pd.register(mem.as_ptr(), len, Access::LOCAL_WRITE) } {
            Ok(mr) => mr,
            Err(e) => {
                // SAFETY: allocated just above with `layout`, never handed out.
                unsafe { alloc::dealloc(mem.as_ptr(), layout) };
                return Err(e);
            }
        };
        let lkey = mr.lkey();
        for i in (0..blocks).rev() {
            // SAFETY: i * block_size < len: inside the allocation.
            let p = unsafe { NonNull::new_unchecked(mem.as_ptr().add(i * self.block_size)) };
            s.free.push((p, lkey));
        }
        s.total_blocks += blocks;
        s.regions.push(Region { mem, layout, mr });
        Ok(())
    }

    /// The lkey of the region holding `addr`, if the pool owns it (brpc's `GetRegionId`).
    pub fn lkey_of(&self, addr: *const u8) -> Option<u32> {
        let a = addr as u64;
        let s = self.state.lock();
        s.regions
            .iter()
            .find(|r| a >= r.mr.addr() && a < r.mr.addr() + r.mr.len() as u64)
            .map(|r| r.mr.lkey())
    }

    /// Blocks on the free list.
    pub fn free_blocks(&self) -> usize {
        self.state.lock().free.len()
    }

    /// Blocks in all regions.
    pub fn total_blocks(&self) -> usize {
        self.state.lock().total_blocks
    }
}

// SAFETY: every block handed out is `block_size` bytes inside a region we own, taken off the
// free list under the lock (so never handed out twice) and not freed while the pool lives;
// `block_size` is constant; `deallocate` only pushes back onto the locked list.
unsafe impl BlockAllocator for BlockPool {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn allocate(&self) -> Option<BlockMemory> {
        let mut s = self.state.lock();
        if s.free.is_empty() {
            self.grow(&mut s, self.increase_bytes).ok()?;
        }
        let (ptr, lkey) = s.free.pop()?;
        Some(BlockMemory {
            ptr,
            meta: u64::from(lkey),
        })
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        // The meta is the lkey we put there.
        self.state.lock().free.push((mem.ptr, mem.meta as u32));
    }
}

impl Drop for BlockPool {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        if s.free.len() != s.total_blocks {
            // Blocks are still in use: keep their memory (and registration) alive for good.
            std::mem::forget(std::mem::take(&mut s.regions));
            return;
        }
        for r in s.regions.drain(..) {
            drop(r.mr);
            // SAFETY: allocated in `grow` with `r.layout`; deregistered just above; no block is
            // out (every block is back on the free list).
            unsafe { alloc::dealloc(r.mem.as_ptr(), r.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::FabricDevice;
    use crate::verbs::Device;

    #[test]
    fn hands_out_registered_blocks_and_grows_to_the_limit() {
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let pool = BlockPool::new(pd.clone(), 8192, 4 * 8192, 2 * 8192, 2).unwrap();
        assert_eq!((pool.total_blocks(), pool.free_blocks()), (4, 4));
        let blocks: Vec<BlockMemory> = (0..6).map(|_| pool.allocate().unwrap()).collect();
        assert_eq!(pool.total_blocks(), 6);
        assert!(pool.allocate().is_none(), "max_regions reached");
        for b in &blocks {
            assert_eq!(pool.lkey_of(b.ptr.as_ptr()), Some(b.meta as u32));
        }
        let mut addrs: Vec<usize> = blocks.iter().map(|b| b.ptr.as_ptr() as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 6);
        for b in blocks {
            // SAFETY: each block came from this pool and is not used afterwards.
            unsafe { pool.deallocate(b) };
        }
        assert_eq!(pool.free_blocks(), 6);
        assert!(pool.lkey_of(std::ptr::null()).is_none());
        assert!(BlockPool::new(pd, 8, 8192, 8192, 1).is_err());
    }
}
