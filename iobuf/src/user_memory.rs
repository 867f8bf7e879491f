//! User memory: appending a caller's buffer to an IOBuf without copying it.
//!
//! The buffer becomes a *user block*: fully written (nobody appends into it), referenced like any
//! other block, and released when the last reference drops — at which point its deleter runs,
//! exactly once, on whichever thread dropped that reference. The block carries a `u64` of
//! metadata (e.g. an RDMA memory key) that [`crate::Piece::meta`] reports for every piece cut
//! from it.
//!
//! Pieces are at most `u32::MAX` bytes, so a larger buffer becomes several user blocks that share
//! one deleter through an `Arc`; the deleter still runs once, after the last of them is dropped.

use crate::block::{Block, BlockRef, Deleter};
use crate::iobuf::IOBuf;
use std::ptr::NonNull;
use std::sync::Arc;

/// Largest user block: offsets and lengths inside a block are `u32`.
const MAX_USER_BLOCK: usize = 1 << 31;

/// Runs a deleter when dropped (shared by the blocks of a split buffer).
struct RunOnDrop(Option<Deleter>);

// SAFETY: the deleter is only reached through `&mut self` in `drop`, never through `&self`, so
// sharing `&RunOnDrop` between threads exposes nothing.
unsafe impl Sync for RunOnDrop {}

impl Drop for RunOnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            d();
        }
    }
}

/// A raw pointer to a boxed owner, sendable because the owner is `Send`.
struct OwnerPtr<T>(*mut T);

// SAFETY: the pointer is the unique owner of a `T: Send` (from `Box::into_raw`); moving it to
// another thread moves the `T`.
unsafe impl<T: Send> Send for OwnerPtr<T> {}

impl IOBuf {
    /// Appends the bytes of `owner` without copying them. `owner` is kept alive (and never
    /// mutated) until the last reference to these bytes drops, then dropped exactly once, on the
    /// thread that dropped that reference. `meta` is reported by [`crate::Piece::meta`] for every
    /// piece of this memory. An empty buffer is dropped at once and appends nothing.
    pub fn append_user_data<T>(&mut self, owner: T, meta: u64)
    where
        T: AsRef<[u8]> + Send + 'static,
    {
        // The owner goes to the heap and is reached through a raw pointer from here on, so moving
        // the box around cannot invalidate the slice we take from it.
        let raw = OwnerPtr(Box::into_raw(Box::new(owner)));
        // SAFETY: `raw.0` is valid (just leaked) and only read until the deleter reclaims it.
        let data: &[u8] = unsafe { (*raw.0).as_ref() };
        let (ptr, len) = (data.as_ptr(), data.len());
        let deleter = move || {
            let raw = raw;
            // SAFETY: `raw.0` came from `Box::into_raw` and the deleter runs once.
            drop(unsafe { Box::from_raw(raw.0) });
        };
        // SAFETY: `ptr` is valid for `len` bytes while the owner lives, the owner lives until the
        // deleter runs, and nobody mutates it (we hold the only pointer and never write).
        unsafe {
            self.append_user_data_raw(
                NonNull::new(ptr as *mut u8).unwrap_or(NonNull::dangling()),
                len,
                meta,
                deleter,
            )
        }
    }

    /// Appends `len` bytes at `data` without copying them; `deleter` runs exactly once, on any
    /// thread, when the last reference to them drops (at once if `len == 0`). `meta` is reported
    /// by [`crate::Piece::meta`] for every piece of this memory.
    ///
    /// # Safety
    ///
    /// `data` must be valid for reads of `len` bytes, and nobody may write them, until `deleter`
    /// starts.
    pub unsafe fn append_user_data_raw<F>(
        &mut self,
        data: NonNull<u8>,
        len: usize,
        meta: u64,
        deleter: F,
    ) where
        F: FnOnce() + Send + 'static,
    {
        if len == 0 {
            deleter();
            return;
        }
        if len <= MAX_USER_BLOCK {
            // SAFETY: forwarded from the caller's contract.
            let block = unsafe { Block::user(data, len, meta, Box::new(deleter)) };
            self.push_back_ref(BlockRef {
                block,
                offset: 0,
                len: len as u32,
            });
            return;
        }
        let shared = Arc::new(RunOnDrop(Some(Box::new(deleter))));
        let mut off = 0;
        while off < len {
            let n = (len - off).min(MAX_USER_BLOCK);
            let guard = shared.clone();
            // SAFETY: `data + off .. + n` is inside the caller's buffer, valid until the shared
            // deleter runs, which happens after every block's guard is dropped.
            let block = unsafe {
                Block::user(
                    NonNull::new_unchecked(data.as_ptr().add(off)),
                    n,
                    meta,
                    Box::new(move || drop(guard)),
                )
            };
            self.push_back_ref(BlockRef {
                block,
                offset: 0,
                len: n as u32,
            });
            off += n;
        }
    }
}
