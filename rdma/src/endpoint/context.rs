//! The process-wide RDMA context: one device, one protection domain, the registered block
//! pools every endpoint takes receive buffers and copy buffers from.
//!
//! # Pools
//!
//! One [`BlockPool`] per block size, created on first use: 8 KiB (brpc's default receive
//! blocks, copy buffers of the send path, and — when installed with
//! [`RdmaContext::install_iobuf_allocator`] — every IOBuf block of the process), 64 KiB and
//! 2 MiB (`rdma_recv_block_type=large|huge`). Pools only grow; a block is either on its pool's
//! free list or owned by exactly one [`PoolBlock`] (posted as a receive, held by an in-flight
//! send, or handed to an IOBuf whose deleter gives it back).

use super::EndpointError;
use crate::backend;
use crate::block_pool::BlockPool;
use crate::verbs::{Device, ProtectionDomain};
use parking_lot::RwLock;
use spindle_iobuf::{BlockAllocator, BlockMemory, IOBuf};
use std::fmt;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

/// Block size of the pool installed as the IOBuf allocator and used for copy buffers.
pub(crate) const STAGING_BLOCK_SIZE: usize = spindle_iobuf::DEFAULT_BLOCK_SIZE;

/// How big the pools' regions are.
#[derive(Debug, Clone, Copy)]
struct PoolSizing {
    initial_bytes: usize,
    increase_bytes: usize,
    max_regions: usize,
}

/// Process-wide RDMA context; see the module doc.
pub struct RdmaContext {
    /// The opened device.
    device: Arc<dyn Device>,
    /// The one protection domain every region and queue pair belongs to.
    pd: Arc<dyn ProtectionDomain>,
    /// Region sizes of new pools.
    sizing: PoolSizing,
    /// One pool per block size, created on first use (read-mostly: looked up per piece sent).
    pools: RwLock<Vec<Arc<BlockPool>>>,
    /// Set once this context's 8 KiB pool is the process's IOBuf allocator.
    iobuf_pool: OnceLock<Arc<BlockPool>>,
}

impl fmt::Debug for RdmaContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdmaContext")
            .field("device", &self.device.name())
            .field("pools", &self.pools.read().len())
            .field("iobuf_allocator", &self.iobuf_pool.get().is_some())
            .finish()
    }
}

static GLOBAL: OnceLock<Result<Arc<RdmaContext>, EndpointError>> = OnceLock::new();

impl RdmaContext {
    /// The process's context, created on first call from the device the flags choose
    /// ([`backend::open_device`]), with its 8 KiB pool installed as the IOBuf allocator if no
    /// IOBuf block was allocated yet. If no backend opens, every call returns that error (the
    /// caller falls back to TCP).
    pub fn global() -> Result<&'static Arc<RdmaContext>, EndpointError> {
        let r = GLOBAL.get_or_init(|| {
            let device =
                backend::open_device().map_err(|e| EndpointError::NoBackend(e.to_string()))?;
            let ctx = RdmaContext::new(device)?;
            // Too late when IOBufs were already allocated: pieces are then copied when sent.
            let _ = ctx.install_iobuf_allocator();
            Ok(ctx)
        });
        match r {
            Ok(ctx) => Ok(ctx),
            Err(e) => Err(e.clone()),
        }
    }

    /// A context over `device`, its pools sized by `rdma_memory_pool_initial_size_mb`,
    /// `rdma_memory_pool_increase_size_mb` and `rdma_memory_pool_max_regions`.
    pub fn new(device: Arc<dyn Device>) -> Result<Arc<RdmaContext>, EndpointError> {
        use crate::flags::*;
        const MB: usize = 1 << 20;
        RdmaContext::with_pool_sizing(
            device,
            RDMA_MEMORY_POOL_INITIAL_SIZE_MB.get() as usize * MB,
            RDMA_MEMORY_POOL_INCREASE_SIZE_MB.get() as usize * MB,
            RDMA_MEMORY_POOL_MAX_REGIONS.get() as usize,
        )
    }

    /// A context whose pools start with a region of `initial_bytes`, grow by `increase_bytes`,
    /// and have at most `max_regions` regions (each pool; at least one block per region).
    pub fn with_pool_sizing(
        device: Arc<dyn Device>,
        initial_bytes: usize,
        increase_bytes: usize,
        max_regions: usize,
    ) -> Result<Arc<RdmaContext>, EndpointError> {
        if max_regions == 0 {
            return Err(EndpointError::Config(
                "max_regions must be at least 1 (rdma_memory_pool_max_regions)".into(),
            ));
        }
        let pd = device.alloc_pd()?;
        Ok(Arc::new(RdmaContext {
            device,
            pd,
            sizing: PoolSizing {
                initial_bytes,
                increase_bytes,
                max_regions,
            },
            pools: RwLock::new(Vec::new()),
            iobuf_pool: OnceLock::new(),
        }))
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.device
    }

    /// The protection domain of every region and queue pair of this context.
    pub fn protection_domain(&self) -> &Arc<dyn ProtectionDomain> {
        &self.pd
    }

    /// The pool of `block_size`-byte blocks, created on first use.
    pub fn pool(&self, block_size: usize) -> Result<Arc<BlockPool>, EndpointError> {
        if let Some(p) = self
            .pools
            .read()
            .iter()
            .find(|p| p.block_size() == block_size)
        {
            return Ok(p.clone());
        }
        let mut pools = self.pools.write();
        if let Some(p) = pools.iter().find(|p| p.block_size() == block_size) {
            return Ok(p.clone());
        }
        let s = self.sizing;
        let pool = Arc::new(BlockPool::new(
            self.pd.clone(),
            block_size,
            s.initial_bytes.max(block_size),
            s.increase_bytes.max(block_size),
            s.max_regions,
        )?);
        pools.push(pool.clone());
        Ok(pool)
    }

    /// Installs this context's 8 KiB pool as the process's IOBuf block allocator, so IOBuf
    /// pieces are sent without copying. Fails if an allocator is already fixed (any IOBuf block
    /// allocated before): pieces are then copied into registered blocks when sent.
    pub fn install_iobuf_allocator(&self) -> Result<(), EndpointError> {
        let pool = self.pool(STAGING_BLOCK_SIZE)?;
        spindle_iobuf::set_block_allocator(Box::new(SharedPool(pool.clone())))
            .map_err(|e| EndpointError::Config(format!("IOBuf allocator: {e}")))?;
        let _ = self.iobuf_pool.set(pool);
        Ok(())
    }

    /// The lkey under which the bytes at `addr` (a piece whose `meta` is `meta`) may be sent by
    /// this context's queue pairs: `Some` only if they lie in one of its pools' regions and that
    /// region's lkey is `meta`.
    pub(crate) fn registered_lkey(&self, addr: *const u8, meta: u64) -> Option<u32> {
        let lkey = u32::try_from(meta).ok().filter(|k| *k != 0)?;
        self.pools
            .read()
            .iter()
            .any(|p| p.lkey_of(addr) == Some(lkey))
            .then_some(lkey)
    }
}

/// A pool shared between a context and the IOBuf allocator hook.
struct SharedPool(Arc<BlockPool>);

// SAFETY: every call forwards to the same `BlockPool`, which upholds the contract (blocks of a
// constant size, handed out once until given back, deallocation from any thread).
unsafe impl BlockAllocator for SharedPool {
    fn block_size(&self) -> usize {
        self.0.block_size()
    }

    fn allocate(&self) -> Option<BlockMemory> {
        self.0.allocate()
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        // SAFETY: forwarded from the caller: `mem` came from this pool's `allocate`.
        unsafe { self.0.deallocate(mem) }
    }
}

/// One block taken from a pool; given back when dropped.
pub(crate) struct PoolBlock {
    pool: Arc<BlockPool>,
    mem: BlockMemory,
}

// SAFETY: the block is memory owned by the pool and, while this value lives, by nobody else;
// it is plain bytes usable from any thread, and the pool takes blocks back from any thread.
unsafe impl Send for PoolBlock {}
// SAFETY: `&PoolBlock` only exposes the address and key, never the bytes.
unsafe impl Sync for PoolBlock {}

impl PoolBlock {
    /// A block from `pool`, `None` when the pool is exhausted.
    pub(crate) fn alloc(pool: &Arc<BlockPool>) -> Option<PoolBlock> {
        let mem = pool.allocate()?;
        Some(PoolBlock {
            pool: pool.clone(),
            mem,
        })
    }

    /// Start of the block.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.mem.ptr
    }

    /// The lkey of the region holding it.
    pub(crate) fn lkey(&self) -> u32 {
        self.mem.meta as u32
    }

    /// Bytes in the block.
    pub(crate) fn capacity(&self) -> usize {
        self.pool.block_size()
    }

    /// Appends the first `len` bytes of the block to `dst` without copying; the block goes back
    /// to its pool when the last IOBuf reference to them drops. Pieces report the lkey as meta,
    /// so they can be sent again without copying.
    ///
    /// The caller must have stopped the device from writing the block (its receive completed).
    pub(crate) fn into_iobuf(self, len: usize, dst: &mut IOBuf) {
        let len = len.min(self.capacity());
        let (ptr, meta) = (self.ptr(), u64::from(self.lkey()));
        // SAFETY: `ptr` is valid for `capacity() >= len` bytes while the block is not given back,
        // which happens only when the deleter drops `self`; nobody writes the block meanwhile
        // (it is no longer posted, and this IOBuf only reads).
        unsafe { dst.append_user_data_raw(ptr, len, meta, move || drop(self)) };
    }
}

impl Drop for PoolBlock {
    fn drop(&mut self) {
        // SAFETY: `mem` came from this pool's `allocate` and is not used after this.
        unsafe { self.pool.deallocate(self.mem) };
    }
}
