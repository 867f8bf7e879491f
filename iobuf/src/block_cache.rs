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

/// Most free blocks one thread keeps (64 × 8 KiB = 512 KiB with default blocks): enough for one
/// large `readv` (the input messenger reads up to 512 KiB) without going to the allocator.
const MAX_CACHED_BLOCKS: usize = 64;

/// The per-thread state.
struct ThreadCache {
    /// Free blocks, `refs == 1`, `size == 0`.
    free: Vec<Block>,
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        for b in self.free.drain(..) {
            b.destroy();
        }
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const { RefCell::new(ThreadCache { free: Vec::new() }) };
}

/// A block with `refs == 1`, `size == 0`: from this thread's cache, or the allocator.
#[inline(never)]
pub(crate) fn take() -> Block {
    let cached = CACHE
        .try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.free.pop()))
        .ok()
        .flatten();
    match cached {
        Some(b) => b,
        None => Block::allocate(),
    }
}

/// Returns a free pooled block (`refs == 1`, `size == 0`) to this thread's cache, or to the
/// allocator when the cache is full or gone.
#[inline(never)]
pub(crate) fn recycle(block: Block) {
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

/// Number of free blocks cached by the calling thread (for tests and diagnostics).
#[inline(never)]
pub fn cached_blocks() -> usize {
    CACHE
        .try_with(|c| c.try_borrow().map(|c| c.free.len()).unwrap_or(0))
        .unwrap_or(0)
}
