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
use spindle_iobuf::{BlockAllocator, BlockMemory, HeapAllocator, IOBuf};
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
    /// User memory registered by [`RdmaContext::register_user_data`] and still referenced:
    /// `(start, len, lkey)`.
    user_regions: RwLock<Vec<(u64, usize, u32)>>,
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
            user_regions: RwLock::new(Vec::new()),
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
        let allocator = SharedPool {
            heap: HeapAllocator::new(pool.block_size()),
            pool: pool.clone(),
        };
        spindle_iobuf::set_block_allocator(Box::new(allocator))
            .map_err(|e| EndpointError::Config(format!("IOBuf allocator: {e}")))?;
        let _ = self.iobuf_pool.set(pool);
        Ok(())
    }

    /// The lkey under which the bytes at `addr` (a piece whose `meta` is `meta`) may be sent by
    /// this context's queue pairs: `Some` only if they lie in one of its pools' regions or in
    /// registered user memory, and that region's lkey is `meta`.
    pub(crate) fn registered_lkey(&self, addr: *const u8, meta: u64) -> Option<u32> {
        let lkey = u32::try_from(meta).ok().filter(|k| *k != 0)?;
        let in_pool = self
            .pools
            .read()
            .iter()
            .any(|p| p.lkey_of(addr) == Some(lkey));
        let a = addr as u64;
        let found = in_pool
            || self
                .user_regions
                .read()
                .iter()
                .any(|&(start, len, key)| key == lkey && a >= start && a - start < len as u64);
        found.then_some(lkey)
    }

    /// Registers the bytes of `owner` with this context's protection domain and returns them as
    /// an IOBuf (a user block whose meta is the lkey), so this context's endpoints send them
    /// without copying. The registration lives as long as the bytes are referenced (by this
    /// IOBuf, pieces cut from it, or a send in flight); when the last reference drops, the
    /// region is deregistered and then `owner` dropped. An empty `owner` gives an empty IOBuf.
    pub fn register_user_data<T>(self: &Arc<Self>, owner: T) -> Result<IOBuf, EndpointError>
    where
        T: AsRef<[u8]> + Send + 'static,
    {
        let owner = Box::new(owner);
        let bytes: &[u8] = (*owner).as_ref();
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        let mut buf = IOBuf::new();
        if len == 0 {
            return Ok(buf);
        }
        // SAFETY: the bytes live in the boxed owner, which is dropped only after the region
        // (in the deleter below, or right here on failure); with no access rights beyond local
        // reads the device never writes them.
        let mr = unsafe {
            self.pd
                .register(ptr.cast_mut(), len, crate::verbs::Access::empty())
        }?;
        let (start, lkey) = (mr.addr(), mr.lkey());
        self.user_regions.write().push((start, len, lkey));
        let ctx = self.clone();
        let deleter = move || {
            // No new send may take the region, then it goes, then the memory.
            ctx.user_regions
                .write()
                .retain(|&(s, _, k)| !(s == start && k == lkey));
            drop(mr);
            drop(owner);
        };
        // SAFETY: `ptr` is valid for `len` bytes until the deleter drops `owner` (a boxed value
        // does not move), and nobody writes them: `T` only gives shared access and we keep the
        // only box.
        unsafe {
            buf.append_user_data_raw(
                NonNull::new(ptr.cast_mut()).expect("non-empty slices are not null"),
                len,
                u64::from(lkey),
                deleter,
            )
        };
        Ok(buf)
    }

    /// User memory regions still registered (see [`RdmaContext::register_user_data`]).
    pub fn user_regions(&self) -> usize {
        self.user_regions.read().len()
    }
}

/// A pool shared between a context and the IOBuf allocator hook. When the pool cannot grow
/// (`rdma_memory_pool_max_regions` reached), blocks come from the heap instead of failing
/// every IOBuf of the process; their meta is 0, so they are copied when sent.
struct SharedPool {
    pool: Arc<BlockPool>,
    heap: HeapAllocator,
}

// SAFETY: blocks come from `pool` or `heap`, both sound allocators of the same constant block
// size; a block goes back to the one that owns its address (the pool knows its regions, which
// it never releases while blocks are out), so each allocator only sees its own blocks.
unsafe impl BlockAllocator for SharedPool {
    fn block_size(&self) -> usize {
        self.pool.block_size()
    }

    fn allocate(&self) -> Option<BlockMemory> {
        self.pool.allocate().or_else(|| {
            self.heap.allocate().map(|m| BlockMemory {
                ptr: m.ptr,
                meta: 0,
            })
        })
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        if self.pool.lkey_of(mem.ptr.as_ptr()).is_some() {
            // SAFETY: forwarded from the caller; the address lies in the pool's regions, so
            // `mem` came from the pool's `allocate`.
            unsafe { self.pool.deallocate(mem) }
        } else {
            // SAFETY: forwarded from the caller; not the pool's, so the heap handed it out (with
            // meta 0, which the heap allocator also uses).
            unsafe { self.heap.deallocate(mem) }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::FabricDevice;

    #[test]
    fn iobuf_allocator_falls_back_to_the_heap_when_the_pool_is_full() {
        let dev: Arc<dyn Device> = FabricDevice::open().unwrap();
        let ctx = RdmaContext::with_pool_sizing(dev, 4 * 8192, 8192, 1).unwrap();
        let pool = ctx.pool(STAGING_BLOCK_SIZE).unwrap();
        let shared = SharedPool {
            heap: HeapAllocator::new(STAGING_BLOCK_SIZE),
            pool: pool.clone(),
        };
        let blocks: Vec<BlockMemory> = (0..6).map(|_| shared.allocate().unwrap()).collect();
        let keyed = blocks.iter().filter(|b| b.meta != 0).count();
        assert_eq!(keyed, 4, "the pool's blocks carry their lkey");
        for b in &blocks {
            let lkey = ctx.registered_lkey(b.ptr.as_ptr(), b.meta);
            assert_eq!(lkey.is_some(), b.meta != 0);
        }
        assert_eq!(pool.free_blocks(), 0);
        for b in blocks {
            // SAFETY: each block came from `shared` and is not used afterwards.
            unsafe { shared.deallocate(b) };
        }
        assert_eq!(pool.free_blocks(), 4);
        // A made-up key, or a real key for an address outside the region, is not trusted.
        assert!(ctx.registered_lkey(std::ptr::null(), 1).is_none());
    }

    #[test]
    fn pools_are_per_block_size_and_shared() {
        let dev: Arc<dyn Device> = FabricDevice::open().unwrap();
        let ctx = RdmaContext::with_pool_sizing(dev, 1 << 20, 1 << 20, 2).unwrap();
        let a = ctx.pool(8192).unwrap();
        let b = ctx.pool(65536).unwrap();
        assert!(Arc::ptr_eq(&a, &ctx.pool(8192).unwrap()));
        assert_eq!((a.block_size(), b.block_size()), (8192, 65536));
        assert!(ctx.device().name().starts_with("spindle-fabric"));
        assert!(format!("{ctx:?}").contains("pools: 2"));
        let dev: Arc<dyn Device> = FabricDevice::open().unwrap();
        assert!(RdmaContext::with_pool_sizing(dev, 1 << 20, 1 << 20, 0).is_err());
    }
}
