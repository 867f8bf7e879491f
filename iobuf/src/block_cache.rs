//! Per-thread cache of free pooled blocks, so taking and returning a block is a `Vec` push/pop.
//!
//! # Invariants and hazards
//!
//! - Blocks in the cache have `refs == 1` and `size == 0`: nobody else references them.
//! - Fibers migrate between threads, and a compiler may keep a thread-local's address in a
//!   register across a context switch. So the cache is only touched inside the
//!   `#[inline(never)]` functions below, each short and self-contained: no callback, no blocking,
//!   no context switch while the cache is borrowed. A block taken on one thread and released on
//!   another simply lands in the other thread's cache.
//! - Re-entrancy (a drop inside a borrow, or use during thread-local destruction) falls back to
//!   the allocator instead of panicking: `try_with` + `try_borrow_mut`.

use crate::block::Block;
use std::cell::RefCell;

/// Most free blocks one thread keeps (128 × 8 KiB = 1 MiB with default blocks): a reading thread
/// prepares up to 64 blocks per `readv` while up to as many may still hold unconsumed data; with
/// a 64-block cache such a thread would hand blocks back and forth to the allocator on every read.
pub(crate) const MAX_CACHED_BLOCKS: usize = 128;

/// The per-thread state.
struct ThreadCache {
    /// Free blocks, `refs == 1`, `size == 0`.
    free: Vec<Block>,
    /// The thread's *share block*: small buffers take their bytes from it (each reserving
    /// exactly what it writes), so a thousand 100-byte messages use 13 blocks, not a thousand.
    share: Option<Block>,
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        for b in self.free.drain(..) {
            b.destroy();
        }
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const {
        RefCell::new(ThreadCache { free: Vec::new(), share: None })
    };
}

/// A block with `refs == 1`, `size == 0`: from this thread's cache, or the allocator.
#[inline(never)]
pub(crate) fn take() -> Block {
    // Under loom, blocks must not outlive one model execution: no cache.
    if cfg!(loom) {
        return Block::allocate();
    }
    let cached = CACHE
        .try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.free.pop()))
        .ok()
        .flatten();
    match cached {
        Some(b) => b,
        None => Block::allocate(),
    }
}

/// Fills every `None` slot of `out` with a block (`refs == 1`, `size == 0`): from this thread's
/// cache in a single borrow, the rest from the allocator. One thread-local access for a whole
/// `readv` batch instead of one per block.
///
/// The cached blocks are handed out in the order they were returned (oldest of the taken ones
/// first), not popped in reverse: blocks a reader released front to back, in address order,
/// come back in that order, so adjacent blocks stay adjacent in the next `readv` and share an
/// iovec.
#[inline(never)]
pub(crate) fn take_many(out: &mut [Option<Block>]) {
    if !cfg!(loom) {
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                let wanted = out.iter().filter(|s| s.is_none()).count();
                let from = c.free.len().saturating_sub(wanted);
                let mut taken = c.free.drain(from..);
                for slot in out.iter_mut().filter(|s| s.is_none()) {
                    match taken.next() {
                        Some(b) => *slot = Some(b),
                        None => break,
                    }
                }
            }
        });
    }
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        *slot = Some(Block::allocate());
    }
}

/// Returns the free pooled blocks (`refs == 1`, `size == 0`) of `blocks` to this thread's cache
/// in a single borrow, in the order given; those that do not fit (or when the cache is gone) go
/// to the allocator.
#[inline(never)]
pub(crate) fn recycle_many(blocks: impl IntoIterator<Item = Block>) {
    let mut blocks = blocks.into_iter();
    if !cfg!(loom) {
        // As in `recycle`, a block that does not fit stays outside the closure, so none is
        // dropped inside the borrow.
        let mut spare = None;
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                if c.free.capacity() == 0 {
                    c.free.reserve_exact(MAX_CACHED_BLOCKS);
                }
                for b in blocks.by_ref() {
                    if c.free.len() == MAX_CACHED_BLOCKS {
                        spare = Some(b);
                        break;
                    }
                    c.free.push(b);
                }
            }
        });
        if let Some(b) = spare {
            b.destroy();
        }
    }
    for b in blocks {
        b.destroy();
    }
}

/// Returns a free pooled block (`refs == 1`, `size == 0`) to this thread's cache, or to the
/// allocator when the cache is full or gone.
#[inline(never)]
pub(crate) fn recycle(block: Block) {
    if cfg!(loom) {
        block.destroy();
        return;
    }
    // The block stays outside the closure: if the key is already destroyed, `try_with` does not
    // run the closure and we must not drop the handle (that would recurse into `recycle`).
    let mut slot = Some(block);
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if c.free.len() < MAX_CACHED_BLOCKS {
                if c.free.capacity() == 0 {
                    c.free.reserve_exact(MAX_CACHED_BLOCKS);
                }
                if let Some(b) = slot.take() {
                    c.free.push(b);
                }
            }
        }
    });
    if let Some(b) = slot {
        b.destroy();
    }
}

/// Reserves `n` bytes of this thread's share block and returns a handle to it with the offset of
/// the reserved range (the caller writes it, then references it). Replaces a share block that
/// has no room left. `None` if `n` does not fit in a block or the cache is unavailable.
#[inline(never)]
pub(crate) fn share_reserve(n: usize) -> Option<(Block, usize)> {
    if cfg!(loom) {
        return None;
    }
    // Old share blocks are dropped after the borrow ends, so their release can use the cache.
    let mut retired: Option<Block> = None;
    let got = CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            for _ in 0..2 {
                if c.share.is_none() {
                    let fresh = c.free.pop().unwrap_or_else(Block::allocate);
                    c.share = Some(fresh);
                }
                let b = c.share.as_ref()?;
                if n > b.cap() {
                    return None;
                }
                let size = b.size();
                // Another thread may append in place behind one of its pieces of this block,
                // so the reservation is a compare-exchange (block invariant 2).
                if size + n <= b.cap() && b.try_reserve(size, n) {
                    return Some((b.clone(), size));
                }
                retired = c.share.take();
            }
            None
        })
        .ok()
        .flatten();
    drop(retired);
    got
}

/// Number of free blocks cached by the calling thread (for tests and diagnostics).
#[inline(never)]
pub fn cached_blocks() -> usize {
    CACHE
        .try_with(|c| c.try_borrow().map(|c| c.free.len()).unwrap_or(0))
        .unwrap_or(0)
}
