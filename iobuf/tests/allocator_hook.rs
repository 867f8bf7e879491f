//! The process-wide block allocator hook. Its own test binary: the hook can be set only once per
//! process, before the first block is allocated, so everything runs in one test function.

use spindle_iobuf::{
    block_size, set_block_allocator, AllocatorError, BlockAllocator, BlockMemory, HeapAllocator,
    IOBuf, IOPortal,
};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

/// A "registered memory" allocator: 4 KiB heap blocks tagged with a fake memory key.
struct KeyedAllocator {
    inner: HeapAllocator,
}

const KEY: u64 = 0x5eed_0000_0000_0001;

// SAFETY: forwards to HeapAllocator, which upholds the contract.
unsafe impl BlockAllocator for KeyedAllocator {
    fn block_size(&self) -> usize {
        self.inner.block_size()
    }

    fn allocate(&self) -> Option<BlockMemory> {
        ALLOCATED.fetch_add(1, Ordering::SeqCst);
        self.inner
            .allocate()
            .map(|m| BlockMemory { ptr: m.ptr, meta: KEY })
    }

    unsafe fn deallocate(&self, mem: BlockMemory) {
        assert_eq!(mem.meta, KEY, "block handed back to the allocator that made it");
        FREED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded contract.
        unsafe { self.inner.deallocate(mem) }
    }
}

#[test]
fn allocator_hook() {
    // Invalid sizes are refused and install nothing.
    let e = set_block_allocator(Box::new(HeapAllocator::new(16))).unwrap_err();
    assert!(matches!(e, AllocatorError::InvalidBlockSize { size: 16, .. }));
    assert!(e.to_string().contains("block_size() = 16"));

    // Install before first use.
    set_block_allocator(Box::new(KeyedAllocator {
        inner: HeapAllocator::new(4096),
    }))
    .unwrap();
    assert_eq!(block_size(), 4096);

    // Every pooled block now comes from it and carries its key.
    let mut b = IOBuf::new();
    b.append(&vec![7u8; 10_000]);
    assert_eq!(b.backing_block_num(), 3, "4 KiB blocks");
    assert!(b.pieces().all(|p| p.meta() == KEY && !p.is_user_data()));
    assert!(ALLOCATED.load(Ordering::SeqCst) >= 3);
    let mut p = IOPortal::new();
    p.append(b"x");
    assert_eq!(p.pieces().next().unwrap().meta(), KEY);

    // User memory keeps its own metadata next to allocator blocks.
    b.append_user_data(vec![1u8; 10], 99);
    let metas: Vec<u64> = b.pieces().map(|p| p.meta()).collect();
    assert_eq!(metas, [KEY, KEY, KEY, 99]);

    // Setting again after use fails and keeps the allocator in place.
    assert_eq!(
        set_block_allocator(Box::new(HeapAllocator::default())),
        Err(AllocatorError::AlreadyInitialized)
    );
    assert_eq!(block_size(), 4096);

    // Blocks released on another thread go back (through that thread's cache, freed at its
    // exit) to the same allocator.
    let before = FREED.load(Ordering::SeqCst);
    std::thread::spawn(move || drop(b)).join().unwrap();
    assert!(FREED.load(Ordering::SeqCst) >= before + 3);
}
